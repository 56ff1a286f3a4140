"""The registry the settings describe: the static file first (local overrides, pinned targets), then the
remote registry (legacy lookup, or DeDi)."""

from __future__ import annotations

from typing import Any

import aiohttp

from cds.trust.dedi import DediSource
from cds.trust.key_cache import KeyCache, MemoryKeyCache
from cds.trust.registry import Registry
from cds.trust.registry_sources import FileSource, LookupSource, Source


def build_registry(settings: Any, session: aiohttp.ClientSession, cache: KeyCache | None = None) -> Registry:
    """Sources from `cds.config.Settings`: the file first (local overrides), then the remote registry."""
    sources: list[Source] = []
    if settings.registry_file:
        sources.append(FileSource(settings.registry_file))
    if settings.registry_url:
        if settings.registry_type == "dedi":
            sources.append(DediSource(settings.registry_url, session, settings.registry_namespace,
                                      network_namespace=settings.registry_network_namespace,
                                      network_registry=settings.registry_network_registry))
        else:
            sources.append(LookupSource(settings.registry_url, session))
    return Registry(sources, cache if cache is not None else MemoryKeyCache(),
                    ttl_s=settings.key_cache_ttl_s, negative_ttl_s=settings.key_negative_ttl_s)
