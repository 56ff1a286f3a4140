"""The embedded storage backend (the default): an in-process index persisted under CDS_DATA_DIR."""

from indexer.embedded.store import EmbeddedStorage

__all__ = ["EmbeddedStorage"]
