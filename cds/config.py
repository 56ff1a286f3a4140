"""Settings from CDS_* environment variables (docs/decisions.md §R), validated at start.

Every bad value is reported with its variable name; `load_settings` raises `ConfigError`
listing all of them at once so an operator fixes the environment in one go.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Mapping
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec

from cds.keys import load_private_key


class ConfigError(ValueError):
    pass


class Settings(msgspec.Struct, kw_only=True, frozen=True):
    subscriber_id: str = "cds.local"
    subscriber_url: str = "http://127.0.0.1:8080/beckn"
    key_id: str = "cds-key-1"
    signing_private_key: str | None = None   # base64 32-byte seed or 64-byte libsodium key
    registry_url: str | None = None
    registry_type: str = "lookup"            # lookup | dedi
    registry_namespace: str = "subscribers.beckn.one"
    # DeDi: the network operator's registry of members, listed for fan-out targets (docs/decisions.md §26)
    registry_network_namespace: str | None = None
    registry_network_registry: str | None = None
    registry_file: str | None = None
    es_url: str | None = None
    es_api_key: str | None = None
    es_username: str | None = None
    es_password: str | None = None
    es_ca_certs: str | None = None
    es_verify_certs: bool = True
    es_index_prefix: str = "cds"
    es_refresh: str = "true"                 # catalog writes: one refresh per batch (true), wait_for, or false
    es_batch_docs: int = 10000               # docs per group-committed write of several catalogs (at least one catalog)
    es_generations_max_age_ms: int = 100     # a search's cached generations list is at most this old
    es_flush_interval_ms: int = 200          # group-committed writes start at most this often (one refresh each)
    redis_url: str | None = None
    data_dir: str = "./data"
    allow_private_callbacks: bool = False    # every non-public range (includes loopback)
    allow_loopback_callbacks: bool = False   # loopback only (what --demo sets)
    fanout_timeout_ms: int = 3000
    fanout_max_bpps: int = 20
    domain: str = "beckn.one:deg:ev-charging"
    timezone: str = "Asia/Kolkata"
    max_results: int = 100
    max_discover_bytes: int = 1 << 20
    max_publish_bytes: int = 16 << 20
    spool_bytes: int = 4 << 20               # larger publish bodies go to a spool file, not the queue (§P)
    max_item_string_bytes: int = 8 << 10     # a published string (docs/decisions.md §27)
    max_item_bytes: int = 64 << 10           # a published item's JSON with its offers; also a catalog header
    base_path: str = "/beckn"
    clock_skew_s: int = 5                    # tolerated future `created` on inbound signatures
    signature_ttl_s: int = 300               # validity window of signatures we create
    key_cache_ttl_s: int = 300               # registry key cache (minutes, never until valid_until)
    key_negative_ttl_s: int = 15
    catalog_max_age_s: int = 7 * 24 * 3600   # a catalog not re-published for this long expires
    status_fresh_s: int = 900                # live status is trusted for this long after publish
    purge_interval_s: int = 60
    callback_timeout_s: float = 5.0
    callback_retries: int = 3
    log_level: str = "INFO"
    # --- slow and vanished clients (docs/decisions.md §28) ---
    read_timeout_s: float = 10.0             # a request's head, then its body, must arrive within this
    keepalive_timeout_s: float = 5.0         # an idle keep-alive connection is closed after this
    max_connections: int = 0                 # open connections per process; 0 = half the open-file limit
    # --- fan-out ---
    fanout_incremental: bool = False         # cached answer first, then one on_discover per BPP reply
    fanout_reserve_ms: int = 200             # kept from context.ttl for merging and delivering the callback
    fanout_late_window_s: float = 120.0      # a finished fan-out is remembered this long: late replies get ACK
    circuit_failures: int = 5                # consecutive failures/timeouts that open a BPP's circuit
    circuit_cooldown_s: float = 30.0         # open circuit: no calls for this long, then one probe
    # --- durable ingest and shared state ---
    rate_limit_rps: float = 0.0              # per-subscriber requests/s (token bucket); 0 = no limit
    rate_limit_burst: int = 0                # bucket size; 0 = two seconds' worth of the rate (at least 1)
    ingest_max_backlog: int = 10000          # queued publishes beyond which publish is a 503 NET_OVERLOADED
    ingest_max_backlog_bytes: int = 512 << 20  # the same bound on their bytes (Redis memory)
    ingest_partitions: int = 16              # sub-streams by publisher (per-publisher order); same everywhere
    ingest_batch: int = 64                   # entries read per partition per XREADGROUP
    ingest_concurrency: int | None = None    # entries indexed at once by one worker; unset: the index's own
                                             # default (embedded 16; Elasticsearch 128, as they share batches)
    ingest_lease_s: float = 10.0             # a worker's hold on a partition (renewed every third of it)
    ingest_claim_idle_s: float = 15.0        # a dead worker's entries are reclaimed after this idle time
    ingest_max_attempts: int = 5             # failures with a healthy index before an entry is dead-lettered
    ingest_max_deliveries: int = 5           # deliveries (worker crashes) before an entry is dead-lettered
    indexer_in_api: str = "auto"             # auto | true | false: API consumes the stream (auto: embedded index)
    indexer_host: str = "0.0.0.0"            # `cds indexer` serves /metrics and /health/* here
    indexer_port: int = 9091                 # 0 = no HTTP endpoint
    # --- operator console (README "Operator console") ---
    console_token: str | None = None         # unset: no console
    console_tile_url: str | None = None      # map tiles {z}/{x}/{y}; unset: the packaged outline only
    workers: int = 0                         # `cds serve` processes on one port; 0 = the number of CPUs
    # --- bounded cost per request (docs/decisions.md §24) ---
    discover_work_ms: int = 500              # CPU time one discover may use (planning + matching); then a 400
    max_geometry_vertices: int = 10000       # per geometry as sent, and the request's geometries as computed
    max_repair_crossings: int = 64           # an invalid polygon is repaired only when it crosses itself this little
    route_simplify_m: float = 1.0            # over the vertex limit: routes simplified with this tolerance (0: never)
    background_answers: int = 1             # discovers answered after their ACK that compute at once (§P)
    max_pending_answers: int = 1024         # per process: ACKed discovers not yet computed; beyond, a POST is a 503
    work_threads: int = 2                    # threads for heavy planning and re-filtering, off the event loop
    json_cache_mb: int = 64                  # per process: unpacked item/offer JSON of recent answers (0 = off)

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def data_path(self) -> Path:
        return Path(self.data_dir)


def _bool(v: str) -> bool:
    s = v.strip().lower()
    if s in ("1", "true", "yes", "on"):
        return True
    if s in ("0", "false", "no", "off", ""):
        return False
    raise ValueError("expected true/false")


def _pos_int(v: str) -> int:
    n = int(v)
    if n <= 0:
        raise ValueError("must be a positive integer")
    return n


def _pos_float(v: str) -> float:
    n = float(v)
    if n <= 0:
        raise ValueError("must be a positive number")
    return n


def _nonneg_float(v: str) -> float:
    n = float(v)
    if not n >= 0 or n == float("inf"):
        raise ValueError("must be a number >= 0")
    return n


def _nonneg_int(v: str) -> int:
    n = int(v)
    if n < 0:
        raise ValueError("must be an integer >= 0")
    return n


def _url(v: str) -> str:
    p = urlsplit(v)
    if p.scheme not in ("http", "https") or not p.netloc:
        raise ValueError("must be an http(s) URL")
    return v.rstrip("/")


def _choice(*options: str) -> Callable[[str], str]:
    def parse(v: str) -> str:
        if v not in options:
            raise ValueError(f"must be one of {', '.join(options)}")
        return v
    return parse


def _tz(v: str) -> str:
    try:
        ZoneInfo(v)
    except (ZoneInfoNotFoundError, ValueError) as e:
        raise ValueError("unknown time zone") from e
    return v


def _key(v: str) -> str:
    load_private_key(v)
    return v


def _path_prefix(v: str) -> str:
    v = "/" + v.strip("/")
    return "" if v == "/" else v


def _str(v: str) -> str:
    if not v.strip():
        raise ValueError("must not be empty")
    return v.strip()


def _token(v: str) -> str:
    v = v.strip()
    if len(v) < 16 or not v.isascii() or not v.isprintable() or " " in v:
        raise ValueError("must be at least 16 printable ASCII characters without spaces (e.g. `openssl rand -hex 16`)")
    return v


def _tile_url(v: str) -> str:
    _url(v.replace("{s}", "a"))
    if not all(k in v for k in ("{z}", "{x}", "{y}")):
        raise ValueError("must be an http(s) URL template with {z}, {x} and {y}")
    return v


# env suffix -> (field, parser)
_FIELDS: dict[str, tuple[str, Callable[[str], object]]] = {
    "SUBSCRIBER_ID": ("subscriber_id", _str),
    "SUBSCRIBER_URL": ("subscriber_url", _url),
    "KEY_ID": ("key_id", _str),
    "SIGNING_PRIVATE_KEY": ("signing_private_key", _key),
    "REGISTRY_URL": ("registry_url", _url),
    "REGISTRY_TYPE": ("registry_type", _choice("lookup", "dedi")),
    "REGISTRY_NAMESPACE": ("registry_namespace", _str),
    "REGISTRY_NETWORK_NAMESPACE": ("registry_network_namespace", _str),
    "REGISTRY_NETWORK_REGISTRY": ("registry_network_registry", _str),
    "REGISTRY_FILE": ("registry_file", _str),
    "ES_URL": ("es_url", _url),
    "ES_API_KEY": ("es_api_key", _str),
    "ES_USERNAME": ("es_username", _str),
    "ES_PASSWORD": ("es_password", str),
    "ES_CA_CERTS": ("es_ca_certs", _str),
    "ES_VERIFY_CERTS": ("es_verify_certs", _bool),
    "ES_INDEX_PREFIX": ("es_index_prefix", _str),
    "ES_REFRESH": ("es_refresh", _choice("wait_for", "true", "false")),
    "ES_BATCH_DOCS": ("es_batch_docs", _pos_int),
    "ES_GENERATIONS_MAX_AGE_MS": ("es_generations_max_age_ms", _nonneg_int),
    "ES_FLUSH_INTERVAL_MS": ("es_flush_interval_ms", _nonneg_int),
    "REDIS_URL": ("redis_url", _str),
    "DATA_DIR": ("data_dir", _str),
    "ALLOW_PRIVATE_CALLBACKS": ("allow_private_callbacks", _bool),
    "ALLOW_LOOPBACK_CALLBACKS": ("allow_loopback_callbacks", _bool),
    "FANOUT_TIMEOUT_MS": ("fanout_timeout_ms", _pos_int),
    "FANOUT_MAX_BPPS": ("fanout_max_bpps", int),
    "DOMAIN": ("domain", _str),
    "TIMEZONE": ("timezone", _tz),
    "MAX_RESULTS": ("max_results", _pos_int),
    "MAX_DISCOVER_BYTES": ("max_discover_bytes", _pos_int),
    "MAX_PUBLISH_BYTES": ("max_publish_bytes", _pos_int),
    "SPOOL_BYTES": ("spool_bytes", _pos_int),
    "MAX_ITEM_STRING_BYTES": ("max_item_string_bytes", _pos_int),
    "MAX_ITEM_BYTES": ("max_item_bytes", _pos_int),
    "BASE_PATH": ("base_path", _path_prefix),
    "CLOCK_SKEW_S": ("clock_skew_s", int),
    "SIGNATURE_TTL_S": ("signature_ttl_s", _pos_int),
    "KEY_CACHE_TTL_S": ("key_cache_ttl_s", _pos_int),
    "KEY_NEGATIVE_TTL_S": ("key_negative_ttl_s", _pos_int),
    "CATALOG_MAX_AGE_S": ("catalog_max_age_s", _pos_int),
    "STATUS_FRESH_S": ("status_fresh_s", _pos_int),
    "PURGE_INTERVAL_S": ("purge_interval_s", _pos_float),
    "CALLBACK_TIMEOUT_S": ("callback_timeout_s", _pos_float),
    "CALLBACK_RETRIES": ("callback_retries", int),
    "LOG_LEVEL": ("log_level", _choice("DEBUG", "INFO", "WARNING", "ERROR")),
    "READ_TIMEOUT_S": ("read_timeout_s", _pos_float),
    "KEEPALIVE_TIMEOUT_S": ("keepalive_timeout_s", _pos_float),
    "MAX_CONNECTIONS": ("max_connections", _nonneg_int),
    # --- fan-out ---
    "FANOUT_INCREMENTAL": ("fanout_incremental", _bool),
    "FANOUT_RESERVE_MS": ("fanout_reserve_ms", _nonneg_int),
    "FANOUT_LATE_WINDOW_S": ("fanout_late_window_s", _pos_float),
    "CIRCUIT_FAILURES": ("circuit_failures", _pos_int),
    "CIRCUIT_COOLDOWN_S": ("circuit_cooldown_s", _pos_float),
    # --- durable ingest and shared state ---
    "RATE_LIMIT_RPS": ("rate_limit_rps", _nonneg_float),
    "RATE_LIMIT_BURST": ("rate_limit_burst", _nonneg_int),
    "INGEST_MAX_BACKLOG": ("ingest_max_backlog", _pos_int),
    "INGEST_MAX_BACKLOG_BYTES": ("ingest_max_backlog_bytes", _pos_int),
    "INGEST_PARTITIONS": ("ingest_partitions", _pos_int),
    "INGEST_BATCH": ("ingest_batch", _pos_int),
    "INGEST_CONCURRENCY": ("ingest_concurrency", _pos_int),
    "INGEST_LEASE_S": ("ingest_lease_s", _pos_float),
    "INGEST_CLAIM_IDLE_S": ("ingest_claim_idle_s", _pos_float),
    "INGEST_MAX_ATTEMPTS": ("ingest_max_attempts", _pos_int),
    "INGEST_MAX_DELIVERIES": ("ingest_max_deliveries", _pos_int),
    "INDEXER_IN_API": ("indexer_in_api", _choice("auto", "true", "false")),
    "INDEXER_HOST": ("indexer_host", _str),
    "INDEXER_PORT": ("indexer_port", _nonneg_int),
    # --- operator console ---
    "CONSOLE_TOKEN": ("console_token", _token),
    "CONSOLE_TILE_URL": ("console_tile_url", _tile_url),
    "WORKERS": ("workers", _pos_int),
    # --- bounded cost per request ---
    "DISCOVER_WORK_MS": ("discover_work_ms", _pos_int),
    "MAX_GEOMETRY_VERTICES": ("max_geometry_vertices", _pos_int),
    "MAX_REPAIR_CROSSINGS": ("max_repair_crossings", _nonneg_int),
    "ROUTE_SIMPLIFY_M": ("route_simplify_m", _nonneg_float),
    "WORK_THREADS": ("work_threads", _pos_int),
    "BACKGROUND_ANSWERS": ("background_answers", _pos_int),
    "MAX_PENDING_ANSWERS": ("max_pending_answers", _pos_int),
    "JSON_CACHE_MB": ("json_cache_mb", _nonneg_int),
}

ENV_PREFIX = "CDS_"


def _secret(suffix: str) -> bool:
    return any(w in suffix for w in ("KEY", "PASSWORD", "TOKEN"))


def env_names() -> list[str]:
    return [ENV_PREFIX + k for k in _FIELDS]


def load_settings(env: Mapping[str, str] | None = None, **overrides: object) -> Settings:
    """Read CDS_* variables; unset or empty ones keep their defaults."""
    env = os.environ if env is None else env
    values: dict[str, object] = {}
    problems: list[str] = []
    for suffix, (name, parse) in _FIELDS.items():
        raw = env.get(ENV_PREFIX + suffix)
        if raw is None or raw == "":
            continue
        try:
            values[name] = parse(raw)
        except Exception as e:  # noqa: BLE001 - every parser error becomes one readable line
            problems.append(f"{ENV_PREFIX}{suffix}={raw if not _secret(suffix) else '***'}: {e}")
    values.update(overrides)
    if problems:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(problems))
    if int(values.get("fanout_max_bpps", 20)) < 0:  # type: ignore[arg-type]
        raise ConfigError("invalid configuration:\n  CDS_FANOUT_MAX_BPPS: must be >= 0")
    if bool(values.get("registry_network_namespace")) != bool(values.get("registry_network_registry")):
        raise ConfigError("invalid configuration:\n  CDS_REGISTRY_NETWORK_NAMESPACE and CDS_REGISTRY_NETWORK_REGISTRY "
                          "name the DeDi registry of members together: set both or neither")
    return Settings(**values)  # type: ignore[arg-type]
