"""cds.core.packs: one pack-name rule for published items and discover requests (docs/decisions.md §4)."""

from __future__ import annotations

import copy
import json
from datetime import datetime, timezone
from pathlib import Path

import pytest

from cds.config import Settings
from cds.core import matching
from cds.core.models import DiscoverIntent
from cds.core.normalize import normalize_catalog
from cds.core.packs import pack_name, pack_of_attributes, schema_packs
from cds.core.planner import build_query

FIX = Path(__file__).resolve().parents[1] / "fixtures"
NOW = datetime(2026, 1, 4, 7, 0, tzinfo=timezone.utc).timestamp()
SETTINGS = Settings(max_results=100)
BRANCH = "https://raw.githubusercontent.com/beckn/protocol-specifications-v2/refs/heads/core-v2.0.0-rc/schema"
CORE = f"{BRANCH}/core/v2/context.jsonld"
# Forms a publisher may use for the EV pack's context: other branches and hosts, other version spellings,
# query strings and fragments, padding, and a list with the core context first.
FORMS = [
    f"{BRANCH}/EvChargingService/v1/context.jsonld",
    "https://example.org/other-branch/schema/EvChargingService/v1/context.jsonld",
    f"{BRANCH}/EvChargingService/v1/context.jsonld?x=1",
    f"{BRANCH}/EvChargingService/v1/context.jsonld#top",
    f"  {BRANCH}/EvChargingService/v1/context.jsonld  ",
    f"{BRANCH}/EvChargingService/v2-beta/context.jsonld",
    f"{BRANCH}/EvChargingService/v2.0.1/context.jsonld",
    [CORE, f"{BRANCH}/EvChargingService/v1/context.jsonld"],
]


def _catalog_with(context: object) -> dict:
    doc = json.loads((FIX / "UBC_catalog_publish_ev-charging-catalog-publish.json").read_text("utf-8"))
    catalog = copy.deepcopy(doc["message"]["catalogs"][0])
    for it in catalog["beckn:items"]:
        it["beckn:itemAttributes"]["@context"] = context
    return catalog


@pytest.mark.parametrize("form", FORMS, ids=range(len(FORMS)))
def test_every_form_accepted_at_publish_is_matched_at_discover(form: object) -> None:
    rec, _ = normalize_catalog(_catalog_with(form), publisher_id="bpp.example", publisher_uri=None, dialect="A",
                               settings=SETTINGS, now=NOW)
    assert all(it.pack is not None for it in rec.items)
    # the app names the pack in the same form the publisher used, or in the canonical one
    for asked in {json.dumps(form), json.dumps(FORMS[0] if "v1" in str(form) else form)}:
        urls = json.loads(asked)
        urls = urls if isinstance(urls, list) else [urls]
        q = build_query(DiscoverIntent(schema_context=urls), settings=SETTINGS)
        assert q.packs, urls
        assert len(matching.brute_force(q, [rec], NOW)) == len(rec.items), urls


def test_another_pack_is_not_matched() -> None:
    rec, _ = normalize_catalog(_catalog_with(FORMS[0]), publisher_id="bpp.example", publisher_uri=None,
                               dialect="A", settings=SETTINGS, now=NOW)
    q = build_query(DiscoverIntent(schema_context=[f"{BRANCH}/EvChargingOffer/v1/context.jsonld"]),
                    settings=SETTINGS)
    assert matching.brute_force(q, [rec], NOW) == []


def test_names() -> None:
    assert pack_name(FORMS[2]) == "EvChargingService/v1"
    assert pack_name(FORMS[5]) == "EvChargingService/v2-beta"
    assert pack_name(CORE) is None and pack_name(42) is None and pack_name("x" * 5000) is None
    assert pack_of_attributes({"@context": FORMS[7]}) == "EvChargingService/v1"
    assert pack_of_attributes({"@context": [CORE]}) is None
    assert schema_packs([CORE]) is None and schema_packs("not a list") is None
