"""The embedded storage backend (the default): an in-process index persisted under CDS_DATA_DIR."""

__all__ = ["EmbeddedStorage"]


def __getattr__(name: str):
    # Imported when first used: the `cds serve` supervisor needs only the directory lock (persist), not numpy
    # and the index (about 20 MB of its RSS, docs/decisions.md §P).
    if name == "EmbeddedStorage":
        from indexer.embedded.store import EmbeddedStorage

        return EmbeddedStorage
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
