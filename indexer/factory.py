"""Pick the storage backend from settings: Elasticsearch when CDS_ES_URL is set, else embedded."""

from __future__ import annotations

from cds.config import Settings
from indexer.storage import Storage


def build_storage(settings: Settings) -> Storage:
    if settings.es_url:
        from indexer.elastic.store import ElasticStorage

        return ElasticStorage(settings)
    from indexer.embedded.store import EmbeddedStorage

    return EmbeddedStorage(settings.data_path / "index")
