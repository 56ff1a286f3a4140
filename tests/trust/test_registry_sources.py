"""cds.trust.registry_sources: the static registry file is reloaded on change, keeps its last good records on a
broken rewrite, and refuses a bad file at start (the remote sources are tested through the registry,
tests/trust/test_registry.py)."""

from __future__ import annotations

import os

import pytest

from cds.trust.key_cache import MemoryKeyCache
from cds.trust.registry import Registry
from cds.trust.registry_sources import FileSource
from tests.trust.test_registry import PUB1, PUB2, T0, Clock, rec, write


async def test_file_reload_on_change(tmp_path):
    f = tmp_path / "registry.json"
    write(f, [rec("bpp.one", key=PUB1)], mtime=T0)
    src = FileSource(f)
    assert [r.signing_public_key for r in await src.lookup("bpp.one", "k1")] == [PUB1]
    write(f, [rec("bpp.one", key=PUB2)], mtime=T0 + 1)
    assert [r.signing_public_key for r in await src.lookup("bpp.one", "k1")] == [PUB2]
    # a broken rewrite keeps the last good records
    f.write_text("[{")
    os.utime(f, (T0 + 2, T0 + 2))
    assert [r.signing_public_key for r in await src.lookup("bpp.one", "k1")] == [PUB2]
    # through the registry: the new key shows up once the cache entry expired
    clock = Clock()
    write(f, [rec("bpp.one", key=PUB1)], mtime=T0 + 3)
    reg = Registry([src], MemoryKeyCache(clock=clock), clock=clock, ttl_s=60)
    assert (await reg.lookup_key("bpp.one", "k1")).signing_public_key == PUB1
    write(f, [rec("bpp.one", key=PUB2)], mtime=T0 + 4)
    assert (await reg.lookup_key("bpp.one", "k1")).signing_public_key == PUB1
    clock.t += 61
    assert (await reg.lookup_key("bpp.one", "k1")).signing_public_key == PUB2


@pytest.mark.parametrize("content, match", [
    (None, "registry file"),
    ("not json", "not JSON"),
    ('{"a": 1}', "array"),
    ('[{"type": "BPP"}]', "record 0"),
    ('[{"subscriber_id": "x", "valid_until": "tomorrow"}]', "record 0"),
])
def test_file_source_bad_file_at_start(tmp_path, content, match):
    f = tmp_path / "registry.json"
    if content is not None:
        f.write_text(content)
    with pytest.raises(ValueError, match=match):
        FileSource(f)
