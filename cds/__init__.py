"""UBC Catalog Discovery Service (Beckn v2): signed publish, geo-indexed discover, fan-out."""

__version__ = "0.1.0"
