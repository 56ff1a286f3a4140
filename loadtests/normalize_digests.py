"""Differential check of the normaliser: one digest per catalog of a fixed corpus, to compare two checkouts.

    python -m loadtests.normalize_digests --corpus /tmp/corpus.pkl --out /tmp/digests-a.txt [--fuzz 4000]
    (cd OTHER_CHECKOUT && python -m loadtests.normalize_digests --corpus /tmp/corpus.pkl --out /tmp/digests-b.txt)
    cmp /tmp/digests-a.txt /tmp/digests-b.txt

The corpus is built once (when `--corpus` does not exist yet) and read as is afterwards, so both checkouts
normalise the same catalogs: station-sized catalogs of the generated network (as `loadtests.bench_ingest`
publishes them), the catalogs of tests/fixtures, `--fuzz` catalogs drawn from `loadtests.fuzz_strategies`
(derandomised) and mutations of all three (keys dropped, values of another type, prefixed spellings, list
entries repeated or removed). A digest covers the documents and warnings, or the error, of one catalog.
A normaliser change that must not change any answer (a faster path, a split) leaves every digest equal.
"""

from __future__ import annotations

import argparse
import copy
import glob
import hashlib
import json
import pickle
import random
from pathlib import Path
from typing import Any, Iterator

import msgspec
import orjson

REPO = Path(__file__).resolve().parents[1]
VALUES = [None, 1, 1.5, True, "x", [], {}, [1, "a"], "  ", -1e308, "2026-01-01T00:00:00Z"]


def _fixture_catalogs(v: Any) -> Iterator[dict]:
    if isinstance(v, dict):
        if isinstance(v.get("catalogs"), list):
            yield from (c for c in v["catalogs"] if isinstance(c, dict))
        for x in v.values():
            yield from _fixture_catalogs(x)
    elif isinstance(v, list):
        for x in v:
            yield from _fixture_catalogs(x)


def _mutate(v: Any, rnd: random.Random) -> None:
    if isinstance(v, dict) and v:
        k = rnd.choice(list(v))
        r = rnd.random()
        if r < 0.2:
            del v[k]
        elif r < 0.4:
            v[k] = copy.deepcopy(rnd.choice(VALUES))
        elif r < 0.5:
            v["beckn:" + k.split(":")[-1]] = v[k]
        else:
            _mutate(v[k], rnd)
    elif isinstance(v, list) and v:
        i = rnd.randrange(len(v))
        r = rnd.random()
        if r < 0.15:
            del v[i]
        elif r < 0.3:
            v.append(copy.deepcopy(v[i]))
        elif r < 0.4:
            v[i] = rnd.choice([None, 2, "s", {}])
        else:
            _mutate(v[i], rnd)


def build_corpus(fuzz: int, seed: int, connectors: int = 20000) -> list[Any]:
    from hypothesis import HealthCheck, given, settings
    from loadtests import fuzz_strategies
    from loadtests.bench_ingest import station_catalogs

    _net, work = station_catalogs(connectors, 20, seed)
    generated = [orjson.loads(cat) for _who, cat, _n in work]
    fixtures: list[dict] = []
    for f in sorted(glob.glob(str(REPO / "tests/fixtures/**/*.json"), recursive=True)):
        try:
            fixtures += _fixture_catalogs(json.loads(Path(f).read_bytes()))
        except ValueError:
            continue
    fuzzed: list[Any] = []

    @settings(max_examples=fuzz, database=None, derandomize=True, deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(fuzz_strategies.catalogs())
    def draw(catalog: Any) -> None:
        fuzzed.append(catalog)

    if fuzz:
        draw()
    rnd = random.Random(seed)
    mutated = []
    for src in generated[:800] + fixtures * 20 + fuzzed[:1000]:
        c = copy.deepcopy(src)
        for _ in range(rnd.randint(1, 6)):
            _mutate(c, rnd)
        mutated.append(c)
    print(f"corpus: {len(generated)} generated, {len(fixtures)} fixture, {len(fuzzed)} fuzzed, {len(mutated)} mutated")
    return generated + fixtures + fuzzed + mutated


def digests(corpus: list[Any]) -> list[str]:
    from cds.config import Settings
    from cds.core.errors import BecknError
    from cds.core.normalize import normalize_catalog

    settings, enc, out = Settings(), msgspec.msgpack.Encoder(), []
    for i, catalog in enumerate(corpus):
        try:
            record, warnings = normalize_catalog(copy.deepcopy(catalog), publisher_id="bpp", publisher_uri=None,
                                                 dialect="A", settings=settings, now=1_780_000_000.0, index=i % 3)
            blob = enc.encode([record, warnings])
        except BecknError as e:
            blob = enc.encode(["error", e.code, e.message, e.paths])
        out.append(hashlib.sha256(blob).hexdigest())
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m loadtests.normalize_digests", description=__doc__.splitlines()[0])
    p.add_argument("--corpus", required=True, help="pickle of the corpus: built when missing, else read")
    p.add_argument("--out", required=True)
    p.add_argument("--fuzz", type=int, default=4000)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--connectors", type=int, default=20000, help="of the generated network")
    a = p.parse_args(argv)
    path = Path(a.corpus)
    if not path.exists():
        path.write_bytes(pickle.dumps(build_corpus(a.fuzz, a.seed, a.connectors)))
    corpus = pickle.loads(path.read_bytes())     # a file this command wrote: trusted input
    got = digests(corpus)
    Path(a.out).write_text("\n".join(got) + "\n")
    print(f"{len(got)} catalogs, {len(set(got))} distinct results -> {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
