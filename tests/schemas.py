"""Validate wire bodies against the published OpenAPI files (test helper, reused by other tests).

Dialect A: `spec/openapi/beckn-v2-rc-api.yaml`, whose remote `$ref`s point at the rc core attributes and the
v1.1.1 transaction spec; both are served from their local copies (beckn-protocol.md §9.4).
Dialect B: `spec/openapi/beckn-v2.0.0-lts.yaml` (self-contained).
OpenAPI 3.1 schemas are JSON Schema 2020-12. `format` is not asserted: the UBC examples themselves put
date-times into `format: time` fields, and the reference validation (§0) ran the same way.

    validate_on_discover(body, "A")          # raises SchemaError listing every violation
    validate_on_catalog_publish(body, "B")
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

OPENAPI = Path(__file__).parent / "fixtures" / "spec" / "openapi"

RC_API_URI = "urn:cds-test:beckn-v2-rc-api.yaml"
LTS_API_URI = "urn:cds-test:beckn-v2.0.0-lts.yaml"
# Remote documents referenced by the rc API, mapped to their local copies.
_REMOTE = {
    "https://raw.githubusercontent.com/beckn/protocol-specifications-v2/refs/tags/core-2.0.0-rc-eos-release/"
    "schema/core/v2/attributes.yaml": "core-v2-attributes-rc.yaml",
    "https://raw.githubusercontent.com/beckn/protocol-specifications/refs/heads/master/"
    "api/transaction/build/transaction.yaml": "v1-transaction-1.1.1.yaml",
}

_BODY = "/post/requestBody/content/application~1json/schema"
_POINTERS = {
    ("on_discover", "A"): (RC_API_URI, "/paths/~1beckn~1on_discover" + _BODY),
    ("on_catalog_publish", "A"): (RC_API_URI, "/paths/~1beckn~1catalog~1on_publish" + _BODY),
    ("catalog_publish", "A"): (RC_API_URI, "/paths/~1beckn~1catalog~1publish" + _BODY),
    ("on_discover", "B"): (LTS_API_URI, "/paths/~1on_discover" + _BODY),
    ("on_catalog_publish", "B"): (LTS_API_URI, "/paths/~1catalog~1on_publish" + _BODY),
    ("catalog_publish", "B"): (LTS_API_URI, "/paths/~1catalog~1publish" + _BODY),
}


class SchemaError(AssertionError):
    """A body that does not validate; the message lists every violation with its JSON path."""


def _load(name: str) -> Any:
    with open(OPENAPI / name, encoding="utf-8") as f:
        return yaml.safe_load(f)


@lru_cache(maxsize=1)
def _registry() -> Registry:
    docs = {RC_API_URI: "beckn-v2-rc-api.yaml", LTS_API_URI: "beckn-v2.0.0-lts.yaml", **_REMOTE}
    return Registry().with_resources(
        (uri, Resource.from_contents(_load(name), default_specification=DRAFT202012)) for uri, name in docs.items()
    )


@lru_cache(maxsize=None)
def validator(kind: str, dialect: str) -> Draft202012Validator:
    """The compiled validator for a body kind (`on_discover`, `on_catalog_publish`, `catalog_publish`)."""
    uri, pointer = _POINTERS[(kind, dialect)]
    return Draft202012Validator({"$ref": f"{uri}#{pointer}"}, registry=_registry())


def errors(body: Any, kind: str, dialect: str) -> list[str]:
    out = []
    for e in sorted(validator(kind, dialect).iter_errors(body), key=lambda e: list(e.absolute_path)):
        out.append(f"{e.json_path}: {e.message[:300]}")
    return out


def validate(body: Any, kind: str, dialect: str) -> None:
    problems = errors(body, kind, dialect)
    if problems:
        raise SchemaError(f"{kind} (dialect {dialect}) fails its schema:\n  " + "\n  ".join(problems[:40]))


def validate_on_discover(body: Any, dialect: str) -> None:
    validate(body, "on_discover", dialect)


def validate_on_catalog_publish(body: Any, dialect: str) -> None:
    validate(body, "on_catalog_publish", dialect)


def validate_catalog_publish(body: Any, dialect: str) -> None:
    validate(body, "catalog_publish", dialect)
