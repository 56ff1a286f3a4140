"""Elasticsearch storage backend (production): `ElasticStorage(settings)`; indices are created or
migrated by `await storage.init_indices()` (`cds index init`), never at request time."""

from indexer.elastic.store import ElasticStorage, StorageNotReadyError

__all__ = ["ElasticStorage", "StorageNotReadyError"]
