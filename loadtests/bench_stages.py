"""Where a synchronous discover's CPU goes, stage by stage, in process (docs/decisions.md §G "CPU per discover").

    python -m loadtests.bench_stages --index /tmp/cds-bench-workers/data/index --connectors 100000

Opens an embedded index built for the generated network (`loadtests.bench_workers` builds one: its data
directory's `index`; copy it first when a server may be using it) and runs the generator's 400-request query mix
through the service's steps, timing each with the thread's CPU clock: parse (JSON, context, discover),
plan (`cheap_to_plan` and `build_query`, as `DiscoverService.plan_bounded` plans on the loop), search (`search_now`), assemble (`assemble_catalogs` with splicing and the JSON cache, as
the service runs it) and dump (`build_on_discover` + orjson). The first `--warm` passes fill the JSON cache and
are not counted; the GC is settled and frozen once the index and the mix are loaded, as the server does.
Signature verification and HTTP are not here: `loadtests.bench_workers` measures the whole server. Prints a
markdown table: per kind the mean of every stage (ms), hits and answer bytes.

`--digest FILE` checks that a change leaves every answer byte-identical: the clock is fixed (`--now`, default
midnight UTC today, so two runs the same day agree), each answer's sha256 is written to FILE one line per request
and the sha256 over all of them printed; run it on two checkouts and `diff` the files.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

import orjson

from cds import gcpolicy
from cds.config import Settings
from cds.core.jsoncache import JsonCache
from cds.core.planner import build_query, cheap_to_plan
from cds.core.protocol import parse_context, parse_discover, parse_json
from cds.core.replies import build_on_discover
from cds.demo.generator import generate_network
from cds.services.assemble import assemble_catalogs
from indexer.embedded import EmbeddedStorage
from loadtests.bench_engine import stamped

STAGES = ("parse", "plan", "search", "assemble", "dump")


async def measure(index: Path, connectors: int, seed: int, passes: int, warm: int,
                  fixed_now: float | None = None, digests: list[str] | None = None) -> dict[str, dict[str, list]]:
    settings = Settings(data_dir=str(index.parent))
    storage = EmbeddedStorage(index, fsync=False)
    await storage.open()
    cache = JsonCache(settings.json_cache_mb << 20)
    mix = generate_network(connectors, seed=seed).labeled_query_mix(400, seed=seed)
    bodies = [(kind, stamped(doc, fixed_now)) for kind, doc in mix]
    # as the server does once its index is loaded (cds.api.app): without it, automatic full collections
    # walk the whole index in the middle of requests and the table charges them to whichever stage
    gcpolicy.settle()
    gcpolicy.freeze_promoted()
    res: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    clock = time.thread_time
    for rep in range(warm + passes):
        for kind, body in bodies:
            t0 = clock()
            doc = parse_json(body)
            now = time.time() if fixed_now is None else fixed_now
            ctx = parse_context(doc, expected_actions={"discover"}, now=now, clock_skew_s=settings.clock_skew_s)
            req = parse_discover(doc, ctx)
            t1 = clock()
            cheap_to_plan(req.intent)           # the service asks it first (where to plan: `plan_bounded`)
            query = build_query(req.intent, settings=settings)
            t2 = clock()
            hits = storage.search_now(query, now)
            t3 = clock()
            catalogs = assemble_catalogs(hits, dialect=ctx.dialect, now=now, settings=settings, splice=True,
                                         cache=cache)
            t4 = clock()
            out = orjson.dumps(build_on_discover(ctx, catalogs, settings=settings, now=now))
            t5 = clock()
            if rep < warm:
                continue
            if digests is not None and rep == warm:
                digests.append(f"{kind} {hashlib.sha256(out).hexdigest()}")
            r = res[kind]
            r["hits"].append(len(hits))
            r["bytes"].append(len(out))
            for name, a, b in zip(STAGES, (t0, t1, t2, t3, t4), (t1, t2, t3, t4, t5)):
                r[name].append((b - a) * 1000)
    gcpolicy.freeze_promoted(False)
    await storage.close()
    return res


def report(res: dict[str, dict[str, list]]) -> str:
    lines = ["| kind | queries | hits | answer bytes | " + " | ".join(STAGES) + " | sum |",
             "| --- " * (len(STAGES) + 5) + "|"]
    total: dict[str, float] = defaultdict(float)
    n_all = sum(len(r["hits"]) for r in res.values())
    for kind, r in sorted(res.items()):
        means = {s: statistics.mean(r[s]) for s in STAGES}
        for s in STAGES:
            total[s] += means[s] * len(r["hits"]) / n_all
        lines.append(f"| {kind} | {len(r['hits'])} | {statistics.mean(r['hits']):.1f} | "
                     f"{statistics.mean(r['bytes']):,.0f} | " + " | ".join(f"{means[s]:.3f}" for s in STAGES)
                     + f" | {sum(means.values()):.3f} |")
    lines.append("| all (mean) | | | | " + " | ".join(f"{total[s]:.3f}" for s in STAGES)
                 + f" | {sum(total.values()):.3f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m loadtests.bench_stages", description=__doc__.splitlines()[0])
    p.add_argument("--index", type=Path, required=True, help="an embedded index directory of the generated network")
    p.add_argument("--connectors", type=int, default=100_000)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--passes", type=int, default=3, help="counted passes over the mix")
    p.add_argument("--warm", type=int, default=2, help="uncounted passes first (JSON cache, allocator)")
    p.add_argument("--digest", type=Path, help="write each answer's sha256 here (one line per request), fixed clock")
    p.add_argument("--now", type=float, help="the fixed clock for --digest (epoch s; default midnight UTC today)")
    args = p.parse_args(argv)
    digests: list[str] | None = None
    fixed_now = None
    if args.digest:
        digests = []
        fixed_now = args.now if args.now is not None else float(int(time.time()) // 86400 * 86400)
    res = asyncio.run(measure(args.index, args.connectors, args.seed, args.passes, args.warm, fixed_now, digests))
    if digests is not None:
        args.digest.write_text("\n".join(digests) + "\n")
        whole = hashlib.sha256("\n".join(digests).encode()).hexdigest()
        print(f"Answers: {len(digests)}, now={fixed_now:.0f}, sha256 over all: {whole} (per request: {args.digest})\n")
    print(f"Command: `python -m loadtests.bench_stages {' '.join(argv if argv is not None else sys.argv[1:])}` "
          f"({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}); thread CPU time per request, ms.\n")
    print(report(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
