"""Who indexes under the `cds serve` supervisor, whatever the worker count (docs/decisions.md §P): its ingest
process, except with Elasticsearch and an operator's Redis, where `cds indexer` replicas do unless
CDS_INDEXER_IN_API=true."""

from __future__ import annotations

import pytest

from cds.cli.supervisor import ingest_needed
from cds.config import load_settings


@pytest.mark.parametrize("env, local_redis, needed", [
    ({}, True, True),                                                        # embedded, private Redis
    ({"CDS_REDIS_URL": "redis://r:6379/0"}, False, True),                   # embedded, operator's Redis
    ({"CDS_ES_URL": "http://es:9200"}, True, True),                         # Elasticsearch, private Redis
    ({"CDS_ES_URL": "http://es:9200", "CDS_REDIS_URL": "redis://r:6379/0"}, False, False),
    ({"CDS_ES_URL": "http://es:9200", "CDS_REDIS_URL": "redis://r:6379/0", "CDS_INDEXER_IN_API": "false"}, False,
     False),
    ({"CDS_ES_URL": "http://es:9200", "CDS_REDIS_URL": "redis://r:6379/0", "CDS_INDEXER_IN_API": "true"}, False,
     True),
])
def test_the_ingest_process_is_started_unless_cds_indexer_replicas_feed_elasticsearch(tmp_path, env, local_redis,
                                                                                       needed):
    settings = load_settings({"CDS_DATA_DIR": str(tmp_path), **env})
    assert ingest_needed(settings, local_redis) is needed
