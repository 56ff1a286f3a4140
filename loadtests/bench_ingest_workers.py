"""`loadtests.bench_ingest` (embedded backend) against `cds serve --workers N`: publish → searchable when one
ingest process writes the index and N serving workers follow its log (docs/decisions.md §P).

    python -m loadtests.bench_ingest_workers --serve-workers 2 [any bench_ingest flag] [--paced-rate R]

Same workload, phases and table as bench_ingest (never writes BENCHMARKS.md); the CPU rows name each child of
the supervisor (`ingest`, `worker-<k>`). With `--env CDS_BENCH_STAGES_OUT=PATH` every CDS process, the ingest
process included, records `loadtests.stage_trace` timings (PATH.<pid>.json).
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from loadtests import bench_ingest
from loadtests.bench_procs import cpu_seconds, loadavg

_SITE = '''import os
if os.environ.get("CDS_BENCH_STAGES_OUT"):
    from loadtests.stage_trace import install
    install(os.environ["CDS_BENCH_STAGES_OUT"])
'''


def children(pid: int) -> list[tuple[int, str]]:
    """(pid, name) of the processes whose parent is `pid`, named after their command line."""
    out = []
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            stat = (p / "stat").read_text()
            if int(stat.rsplit(")", 1)[1].split()[1]) != pid:
                continue
            cmd = (p / "cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError, IndexError):
            continue
        out.append((int(p.name), "ingest" if b"cds.cli.ingest_process" in cmd else "worker"))
    return sorted(out)


class WorkersBench(bench_ingest.Bench):
    def start(self, name: str, argv: list[str], env: dict[str, str]):   # type: ignore[override]
        if name == "cds":
            k = argv.index("--single-process")      # bench_ingest's one process, made the supervised server
            argv = [*argv[:k], "--workers", str(self.a.serve_workers), *argv[k + 1:]]
            if env.get("CDS_BENCH_STAGES_OUT"):
                site = self.work / "site"
                site.mkdir(exist_ok=True)
                (site / "sitecustomize.py").write_text(_SITE)
                env = {**env, "PYTHONPATH": os.pathsep.join([str(site), str(bench_ingest.REPO),
                                                             env.get("PYTHONPATH", "")])}
        return super().start(name, argv, env)

    def cpu(self) -> dict[str, float]:
        if "cds" in self.pids and not any(k.startswith(("ingest", "worker-")) for k in self.pids):
            workers = 0
            for pid, kind in children(self.pids["cds"]):
                if kind == "worker":
                    kind, workers = f"worker-{workers}", workers + 1
                self.pids[kind] = pid
        return super().cpu()


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    workers = 2
    if "--serve-workers" in argv:
        k = argv.index("--serve-workers")
        workers = int(argv[k + 1])
        del argv[k:k + 2]
    a = bench_ingest.parse_args([*argv, "--no-write", "--backend", "embedded"])
    a.serve_workers = workers
    before = loadavg()
    with tempfile.TemporaryDirectory(prefix="bench-ingest-workers-") as tmp:
        result = WorkersBench(a, Path(tmp)).run()
    command = "python -m loadtests.bench_ingest_workers " + " ".join(sys.argv[1:] if argv is None else argv)
    print(bench_ingest.render(a, result, command.strip(), before, loadavg()).replace(
        "consumed by the API process", f"`cds serve --workers {workers}`: one ingest process, {workers} followers"))
    return 1 if result["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
