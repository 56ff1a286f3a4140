"""What held a serving loop while a discover waited (load tests only; cds/ knows nothing of this).

    python -m loadtests.bench_workers ... --trace DIR      # every `cds serve` process writes DIR/<pid>.npz
    python -m loadtests.looptrace DIR [--over-ms 5]        # the attribution report

Installed through `loadtests/looptrace_site/sitecustomize.py` (on PYTHONPATH with $CDS_BENCH_LOOPTRACE_DIR set), so
the serving workers that `cds serve --workers N` starts are traced too. Per process it records:

- every event-loop callback: start (perf_counter), wall and CPU time of the loop thread, and what ran: for a task
  step, where the task was suspended before the step and where it suspended at the end (innermost coroutine
  and line), else the callback's name;
- every garbage collection (start, wall, generation) and every wait in the selector (the loop idle);
- every discover handled: when its connection last received data, when the handler returned, and its method.

The report takes the discovers slower (receive → handler done) than --over-ms and splits the wall time of their
windows (from the start of the loop turn before the one that read them, which is when their bytes may have
arrived, to their reply) into: CPU of each kind of callback, GC, time a callback spent off the CPU (wall − CPU:
the process waited for a core), and idle waits (Redis, sockets). Tracing costs a few µs per callback; its
figures attribute, the benchmark without --trace measures.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import selectors
import sys
import time
from array import array
from collections import defaultdict
from pathlib import Path
from typing import Any

_cb_start, _cb_wall, _cb_cpu, _cb_what = array("d"), array("d"), array("d"), array("l")
_gc_start, _gc_wall, _gc_cpu, _gc_gen = array("d"), array("d"), array("d"), array("l")
_sel_start, _sel_wall = array("d"), array("d")
_req_rx, _req_done, _req_post, _req_conn = array("d"), array("d"), array("b"), array("l")
_conns: dict[Any, int] = {}
_ans_start, _ans_end = array("d"), array("d")
_labels: dict[Any, int] = {}
_rx: dict[Any, float] = {}
MAX_EVENTS = 4_000_000
_clock, _cpu = time.perf_counter, time.thread_time


def traced_env(env: dict[str, str], out_dir: Path) -> dict[str, str]:
    """`env` for a server whose every process traces its loop into `out_dir` (created): this directory's
    `sitecustomize` put first on PYTHONPATH, with $CDS_BENCH_LOOPTRACE_DIR."""
    out_dir.mkdir(parents=True, exist_ok=True)
    site = Path(__file__).resolve().with_name("looptrace_site")
    path = env.get("PYTHONPATH")
    return {**env, "CDS_BENCH_LOOPTRACE_DIR": str(out_dir.resolve()),
            "PYTHONPATH": f"{site}{os.pathsep}{path}" if path else str(site)}


def _label(key: Any) -> int:
    i = _labels.get(key)
    if i is None:
        i = _labels[key] = len(_labels)
    return i


def _where(coro: Any) -> str:
    """The innermost coroutine a task is suspended in (file:line function)."""
    last = None
    while coro is not None and hasattr(coro, "cr_frame"):
        last = coro
        coro = coro.cr_await
    if last is None or last.cr_frame is None:
        return "start" if last is not None else "?"
    code = last.cr_code
    return f"{code.co_filename.rsplit('/', 2)[-1]}:{last.cr_frame.f_lineno} {code.co_name}"


def _task_of(handle: asyncio.Handle) -> Any:
    owner = getattr(handle._callback, "__self__", None)       # noqa: SLF001 - instrumentation
    return owner if isinstance(owner, asyncio.Task) else None


def install(out_dir: str) -> None:
    run = asyncio.events.Handle._run

    def timed(self: asyncio.Handle) -> None:
        task = _task_of(self)
        before = _where(task.get_coro()) if task is not None else None
        t0, c0 = _clock(), _cpu()
        try:
            run(self)
        finally:
            wall, cpu = _clock() - t0, _cpu() - c0
            if len(_cb_start) < MAX_EVENTS:
                if task is not None:
                    after = "done" if task.done() else _where(task.get_coro())
                    key = (before, after)
                else:
                    cb = self._callback                         # noqa: SLF001
                    key = getattr(cb, "__qualname__", None) or type(cb).__name__
                _cb_start.append(t0)
                _cb_wall.append(wall)
                _cb_cpu.append(cpu)
                _cb_what.append(_label(key))

    asyncio.events.Handle._run = timed                          # type: ignore[method-assign]

    select = selectors.EpollSelector.select

    def timed_select(self: selectors.EpollSelector, timeout: float | None = None) -> Any:
        t0 = _clock()
        try:
            return select(self, timeout)
        finally:
            if len(_sel_start) < MAX_EVENTS:
                _sel_start.append(t0)
                _sel_wall.append(_clock() - t0)

    selectors.EpollSelector.select = timed_select               # type: ignore[method-assign]

    gc_t0 = [0.0, 0.0]

    def gc_timer(phase: str, info: dict) -> None:
        if phase == "start":
            gc_t0[0], gc_t0[1] = _clock(), _cpu()
        elif len(_gc_start) < MAX_EVENTS:
            _gc_start.append(gc_t0[0])
            _gc_wall.append(_clock() - gc_t0[0])
            _gc_cpu.append(_cpu() - gc_t0[1])
            _gc_gen.append(info["generation"])

    gc.callbacks.append(gc_timer)

    from aiohttp import web_protocol

    received = web_protocol.RequestHandler.data_received

    def data_received(self: Any, data: bytes) -> None:
        _rx[self] = _clock()
        received(self, data)

    web_protocol.RequestHandler.data_received = data_received   # type: ignore[method-assign]

    from aiohttp import web_app

    handle = web_app.Application._handle

    async def traced(self: Any, request: Any) -> Any:
        if not request.path.endswith("/discover"):
            return await handle(self, request)
        rx = _rx.get(request.protocol, _clock())
        try:
            return await handle(self, request)
        finally:
            _req_rx.append(rx)
            _req_done.append(_clock())
            _req_post.append(request.method == "POST")
            _req_conn.append(_conns.setdefault(request.protocol, len(_conns)))

    web_app.Application._handle = traced                        # type: ignore[method-assign]

    from cds.services.discover import DiscoverService

    # the answer after the ACK (older versions: after their replay check)
    name = "answer_once" if hasattr(DiscoverService, "answer_once") else "answer_and_deliver"
    answer_once = getattr(DiscoverService, name)

    async def answered(self: Any, *args: Any, **kwargs: Any) -> Any:
        t0 = _clock()
        try:
            return await answer_once(self, *args, **kwargs)
        finally:
            _ans_start.append(t0)
            _ans_end.append(_clock())

    setattr(DiscoverService, name, answered)

    import atexit
    import signal

    atexit.register(_dump, Path(out_dir) / f"{os.getpid()}.npz")
    signal.signal(signal.SIGUSR1, lambda *_: _census(Path(out_dir) / f"{os.getpid()}-gc.txt"))


def _census(path: Path) -> None:
    """SIGUSR1: what the collector would walk in a full collection now (objects not frozen, by type)."""
    from collections import Counter

    lines = [f"counts {gc.get_count()} thresholds {gc.get_threshold()} frozen {gc.get_freeze_count()} "
             f"stats {gc.get_stats()}"]
    for gen in (0, 1, 2):
        objs = gc.get_objects(gen)
        top = Counter(type(o).__qualname__ for o in objs).most_common(15)
        lines.append(f"generation {gen}: {len(objs)} objects; {top}")
    path.write_text("\n".join(lines) + "\n")


def _dump(path: Path) -> None:
    import numpy as np

    names = np.array([repr(k) for k, _ in sorted(_labels.items(), key=lambda kv: kv[1])], dtype=object)
    np.savez(path, cb_start=np.array(_cb_start), cb_wall=np.array(_cb_wall), cb_cpu=np.array(_cb_cpu),
             cb_what=np.array(_cb_what), gc_start=np.array(_gc_start), gc_wall=np.array(_gc_wall), gc_cpu=np.array(_gc_cpu),
             gc_gen=np.array(_gc_gen), sel_start=np.array(_sel_start), sel_wall=np.array(_sel_wall),
             req_rx=np.array(_req_rx), req_done=np.array(_req_done), req_post=np.array(_req_post), req_conn=np.array(_req_conn), ans_start=np.array(_ans_start),
             ans_end=np.array(_ans_end),
             names=names)


def _kind(name: str) -> str:
    """Coarse kinds of callbacks for the report (by where the step started and ended)."""
    rules = [("store.py", "search slice"), ("_render", "render"), ("discover.py:1", "background lane"),
             ("outbound.py", "callback send"), ("client", "callback send"), ("connector", "callback send"),
             ("redis", "redis client"), ("web_protocol", "http server"), ("_read_ready", "socket read"),
             ("handlers", "request handler"), ("base.py", "request handler")]
    for needle, kind in rules:
        if needle in name:
            return kind
    return "other"


def _phases(rx: Any, post: Any, conn: Any) -> list[tuple[str, Any]]:
    """The requests split into wrk runs, POSTs and GETs apart (bench_workers: GET warm-up, calibration,
    saturation and paced runs; POST overload runs, then the paced one): a run's connections all open within a
    second, the next run's ones seconds later."""
    import numpy as np

    out = []
    for method, label in ((1, "POST (ACK)"), (0, "GET (sync)")):
        mine = np.nonzero(post == method)[0]
        if not len(mine):
            continue
        first = {c: rx[mine][conn[mine] == c].min() for c in np.unique(conn[mine])}
        starts = sorted(first.values())
        bounds = [t for prev, t in zip(starts, starts[1:]) if t - prev > 1.0]
        run_of = np.searchsorted(bounds, [first[c] for c in conn[mine]], side="right")
        for i in range(len(bounds) + 1):
            sel = np.zeros(len(rx), dtype=bool)
            sel[mine[run_of == i]] = True
            out.append((f"{label} run {i + 1} of {len(bounds) + 1}", sel))
    return out


def _answers(d: Any, cs: Any, cum: Any, since: float = float("-inf"), until: float = float("inf")) -> str | None:
    """ACK → on_discover delivered, for the answers started in [since, until]: wall time and the loop CPU it
    waited through (`cum`: the loop CPU before each callback, `report`)."""
    import numpy as np

    if "ans_start" not in d.files or not len(d["ans_start"]):
        return None
    a0, a1 = d["ans_start"], d["ans_end"]
    m = (a0 >= since) & (a0 <= until)
    if not m.any():
        return None
    a0, a1 = a0[m], a1[m]
    waited = (cum[np.searchsorted(cs, a1)] - cum[np.searchsorted(cs, a0)]) * 1000
    wall = (a1 - a0) * 1000
    return (f"ACK → on_discover delivered (n={len(a0)}): wall p50 {np.percentile(wall, 50):.1f} p90 "
            f"{np.percentile(wall, 90):.1f} p99 {np.percentile(wall, 99):.1f} ms; loop CPU waited through p50 "
            f"{np.percentile(waited, 50):.1f} p90 {np.percentile(waited, 90):.1f} p99 "
            f"{np.percentile(waited, 99):.1f} ms")


def _turn_starts(sel_start: Any, sel_wall: Any, rx: Any) -> Any:
    """For each read at `rx`: when the loop turn before the one that read it began (the bytes may have waited
    in the socket since then)."""
    import numpy as np

    k = np.searchsorted(sel_start + sel_wall, rx) - 1             # the select that returned just before the read
    prev = np.maximum(k - 1, 0)
    return np.where(k >= 1, (sel_start + sel_wall)[prev], rx)


def report(out_dir: Path, over_ms: float, top: int) -> None:
    import numpy as np

    for f in sorted(out_dir.glob("*.npz")):
        d = np.load(f, allow_pickle=True)
        names = list(d["names"])
        rx, done, post = d["req_rx"], d["req_done"], d["req_post"]
        if len(rx) == 0:
            continue
        cs, cw, cc, what = d["cb_start"], d["cb_wall"], d["cb_cpu"], d["cb_what"]
        ss, sw = d["sel_start"], d["sel_wall"]
        gs, gw, gg = d["gc_start"], d["gc_wall"], d["gc_gen"]
        gcc = d["gc_cpu"] if "gc_cpu" in d.files else gw       # traces before CPU was recorded: wall
        live = gs >= rx.min()           # collections while discovers were served (not at start-up)
        print(f"\n## {f.name}: {len(rx)} discovers, {len(cs)} callbacks; GC while serving, per generation: "
              + ", ".join(f"{int((live & (gg == g)).sum())} ({1000 * gcc[live & (gg == g)].sum():.0f} ms CPU, longest "
                          f"{1000 * gcc[live & (gg == g)].max(initial=0):.1f} ms CPU / "
                          f"{1000 * gw[live & (gg == g)].max(initial=0):.1f} wall)" for g in range(3)))
        cum = np.concatenate([[0.0], np.cumsum(cc)])    # the loop CPU before each callback (and after the last)
        answers = _answers(d, cs, cum)
        if answers is not None:
            print(answers + " (every run)")
        conn = d["req_conn"] if "req_conn" in d.files else np.zeros(len(rx), dtype=int)
        for label, sel in _phases(rx, post, conn):
            lat = (done[sel] - rx[sel]) * 1000
            print(f"{label}: n={sel.sum()} server-side p50 {np.percentile(lat, 50):.2f} p90 {np.percentile(lat, 90):.2f} "
                  f"p99 {np.percentile(lat, 99):.2f} max {lat.max():.2f} ms; over {over_ms} ms: {(lat > over_ms).sum()}")
            answers = _answers(d, cs, cum, rx[sel].min(), rx[sel].max()) if label.startswith("POST") else None
            if answers is not None:
                print("  " + answers)
            # The loop CPU each one waited through (its own and others' callbacks): its latency on a machine
            # where the process never waits for a core; "+ turn" adds the loop turn before the one that read it.
            turn_start = _turn_starts(ss, sw, rx[sel])
            own = (cum[np.searchsorted(cs, done[sel])] - cum[np.searchsorted(cs, rx[sel])]) * 1000
            wide = (cum[np.searchsorted(cs, done[sel])] - cum[np.searchsorted(cs, turn_start)]) * 1000
            print("  loop CPU waited through: " + "; ".join(
                f"{name} p50 {np.percentile(v, 50):.2f} p90 {np.percentile(v, 90):.2f} p99 {np.percentile(v, 99):.2f} ms"
                for name, v in (("from the read", own), ("+ turn", wide))))
            t_first, t_last = rx[sel].min(), done[sel].max()
            phase = (cs >= t_first) & (cs <= t_last)
            by: dict[str, list[float]] = defaultdict(list)
            for i in np.nonzero(phase)[0]:
                by[names[what[i]]].append(cc[i])
            busy = sum(sum(v) for v in by.values())
            print(f"  phase {t_last - t_first:.1f} s: loop CPU {busy:.2f} s; longest callbacks (CPU ms) by what ran:")
            rows = sorted(by.items(), key=lambda kv: -max(kv[1]))[:top]
            for name, v in rows:
                a = np.array(v) * 1000
                print(f"    n={len(a):6d} sum {a.sum() / 1000:6.2f} s p50 {np.percentile(a, 50):6.3f} p99 "
                      f"{np.percentile(a, 99):6.3f} max {a.max():6.2f}  {name[:150]}")
            slow = np.nonzero(sel & ((done - rx) * 1000 > over_ms))[0]
            if len(slow) == 0:
                continue
            # the window: from the start of the loop turn before the one that read the request (its bytes may
            # have waited in the socket for that long) to the reply
            split: dict[str, float] = defaultdict(float)
            total = 0.0
            for r, start in zip(slow, _turn_starts(ss, sw, rx[slow])):
                end = done[r]
                total += end - start
                m = (cs >= start) & (cs < end)
                for i in np.nonzero(m)[0]:
                    split["cpu: " + _kind(names[what[i]])] += cc[i]
                    split["off-cpu inside callbacks (waiting for a core)"] += cw[i] - cc[i]
                g = (gs >= start) & (gs < end)
                split["of which GC (wall)"] += gw[g].sum()
                s = (ss >= start) & (ss < end)
                split["idle in select (I/O wait, e.g. Redis)"] += sw[s].sum()
            accounted = sum(v for k, v in split.items() if not k.startswith("of which"))
            split["loop overhead / off-cpu between callbacks"] = total - accounted
            print(f"  {len(slow)} slower than {over_ms} ms; their windows ({1000 * total / len(slow):.2f} ms mean) split:")
            for k, v in sorted(split.items(), key=lambda kv: -kv[1]):
                print(f"    {1000 * v / len(slow):7.3f} ms  {100 * v / total:5.1f} %  {k}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m loadtests.looptrace", description=__doc__.splitlines()[0])
    p.add_argument("dir", type=Path)
    p.add_argument("--over-ms", type=float, default=5.0)
    p.add_argument("--top", type=int, default=25)
    args = p.parse_args(argv)
    report(args.dir, args.over_ms, args.top)
    return 0


if __name__ == "__main__":
    sys.exit(main())
