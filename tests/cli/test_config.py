"""Settings from CDS_* variables: defaults, parsing, and one clear message per bad value."""

from __future__ import annotations

import pytest

from cds.config import ConfigError, env_names, load_settings
from cds.keys import generate_keypair


def test_defaults_match_design():
    s = load_settings({})
    assert s.domain == "beckn.one:deg:ev-charging"
    assert s.timezone == "Asia/Kolkata"
    assert s.max_results == 100
    assert s.max_discover_bytes == 1 << 20 and s.max_publish_bytes == 16 << 20
    assert s.allow_private_callbacks is False
    assert s.es_url is None and s.redis_url is None
    assert s.registry_type == "lookup"


def test_design_names_are_all_read():
    names = set(env_names())
    for n in ("SUBSCRIBER_ID", "SUBSCRIBER_URL", "KEY_ID", "SIGNING_PRIVATE_KEY", "REGISTRY_URL", "REGISTRY_TYPE",
              "REGISTRY_FILE", "ES_URL", "REDIS_URL", "DATA_DIR", "ALLOW_PRIVATE_CALLBACKS", "FANOUT_TIMEOUT_MS",
              "FANOUT_MAX_BPPS", "DOMAIN", "TIMEZONE", "MAX_RESULTS", "MAX_DISCOVER_BYTES", "MAX_PUBLISH_BYTES"):
        assert "CDS_" + n in names


def test_values_are_parsed():
    seed, _pub = generate_keypair()
    s = load_settings({"CDS_ALLOW_PRIVATE_CALLBACKS": "yes", "CDS_MAX_RESULTS": "7", "CDS_REGISTRY_TYPE": "dedi",
                       "CDS_REGISTRY_URL": "https://registry.example/dedi/", "CDS_SIGNING_PRIVATE_KEY": seed,
                       "CDS_BASE_PATH": "pilot/cds/", "CDS_TIMEZONE": "UTC"})
    assert s.allow_private_callbacks is True and s.max_results == 7 and s.registry_type == "dedi"
    assert s.registry_url == "https://registry.example/dedi"
    assert s.base_path == "/pilot/cds"


def test_every_bad_value_is_reported_at_once():
    with pytest.raises(ConfigError) as e:
        load_settings({"CDS_MAX_RESULTS": "-1", "CDS_TIMEZONE": "Mars/Olympus", "CDS_REGISTRY_TYPE": "ldap",
                       "CDS_SIGNING_PRIVATE_KEY": "not-base64!", "CDS_ES_URL": "localhost:9200",
                       "CDS_ALLOW_PRIVATE_CALLBACKS": "maybe"})
    msg = str(e.value)
    for name in ("CDS_MAX_RESULTS", "CDS_TIMEZONE", "CDS_REGISTRY_TYPE", "CDS_SIGNING_PRIVATE_KEY", "CDS_ES_URL",
                 "CDS_ALLOW_PRIVATE_CALLBACKS"):
        assert name in msg
    assert "not-base64!" not in msg  # key material is never echoed
