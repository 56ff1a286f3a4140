"""Processes of a benchmark run: subprocess services with log files, readiness, CPU and memory readings
from /proc, machine facts, and one headless locust run turned into a `Scenario` (locust always runs as its
own process; nothing here imports it)."""

from __future__ import annotations

import csv
import importlib.util
import os
import platform
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import orjson

from loadtests.bench_report import Latency, Run, Scenario

HERE = Path(__file__).resolve().parent
PY = sys.executable


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Service:
    """A subprocess with its output in a log file; stopped with SIGTERM (then SIGKILL) by its own pid."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], logdir: Path, *,
                 stop_timeout: float = 15.0) -> None:
        self.name = name
        self.stop_timeout = stop_timeout
        self.killed = False
        self.log_path = logdir / f"{name}.log"
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(argv, env=env, stdout=self._log, stderr=subprocess.STDOUT, cwd=HERE.parent)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def tail(self, n: int = 2000) -> str:
        try:
            return self.log_path.read_bytes()[-n:].decode("utf-8", "replace")
        except OSError:
            return ""

    def stop(self) -> None:
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(self.stop_timeout)
            except subprocess.TimeoutExpired:
                self.killed = True
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()


def wait_http(url: str, svc: Service, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not svc.alive():
            raise RuntimeError(f"{svc.name} exited with {svc.proc.returncode}:\n{svc.tail()}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{svc.name} not ready at {url} within {timeout:.0f} s:\n{svc.tail()}")


def http_json(url: str, data: bytes | None = None, timeout: float = 30) -> Any:
    req = urllib.request.Request(url, data=data, method="POST" if data is not None else "GET")
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return orjson.loads(r.read())


_TICK = os.sysconf("SC_CLK_TCK")


def stat_cpu_s(stat: Path) -> float:
    """User + system CPU seconds from a /proc `stat` file (a process's, or a thread's: task/TID/stat)."""
    fields = stat.read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def cpu_seconds(pid: int) -> float | None:
    """utime + stime of a live process (/proc/<pid>/stat)."""
    try:
        return stat_cpu_s(Path(f"/proc/{pid}/stat"))
    except (OSError, IndexError, ValueError):
        return None


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError):
        pass
    return None


class CpuSampler(threading.Thread):
    """Samples (time, cpu seconds) of some pids every 0.2 s, so CPU use can be cut to locust's test window
    (excluding locust's own start-up and shutdown)."""

    def __init__(self, pids: dict[str, int]) -> None:
        super().__init__(daemon=True)
        self.pids = pids
        self.samples: dict[str, list[tuple[float, float]]] = {k: [] for k in pids}
        self._stop_evt = threading.Event()

    def run(self) -> None:
        while not self._stop_evt.is_set():
            self.sample()
            self._stop_evt.wait(0.2)

    def sample(self) -> None:
        now = time.time()
        for k, pid in self.pids.items():
            c = cpu_seconds(pid)
            if c is not None:
                self.samples[k].append((now, c))

    def stop(self) -> None:
        self._stop_evt.set()
        self.join(2)

    def percent(self, key: str, t0: float, t1: float) -> float | None:
        s = [x for x in self.samples[key] if t0 <= x[0] <= t1]
        if len(s) < 2 or s[-1][0] - s[0][0] < 0.5:
            return None
        return 100 * (s[-1][1] - s[0][1]) / (s[-1][0] - s[0][0])


def machine_info() -> dict[str, str]:
    cpu = "unknown"
    mem = "unknown"
    try:
        cpu = next(l.split(":", 1)[1].strip() for l in Path("/proc/cpuinfo").read_text().splitlines()
                   if l.startswith("model name"))
        kb = next(int(l.split()[1]) for l in Path("/proc/meminfo").read_text().splitlines()
                  if l.startswith("MemTotal"))
        mem = f"{kb / 1024 / 1024:.0f} GB RAM"
    except (OSError, StopIteration, ValueError):
        pass
    return {"nproc": str(os.cpu_count()), "cpu": cpu, "memory": mem, "python": platform.python_version(),
            "os": f"{platform.system()} {platform.release()}"}


def es_pid(url: str) -> int:
    """An Elasticsearch server's pid (its CPU time is read from /proc: the server must run on this machine)."""
    nodes = http_json(f"{url}/_nodes/_local/process?filter_path=nodes.*.process.id")["nodes"]
    return next(iter(nodes.values()))["process"]["id"]


def es_drop_indices(url: str, prefix: str) -> None:
    """Delete the indices `{prefix}-*` (by name: the server refuses wildcard deletes)."""
    names = [row["index"] for row in http_json(f"{url}/_cat/indices/{prefix}-*?format=json&h=index")]
    if names:
        req = urllib.request.Request(f"{url}/{','.join(names)}", method="DELETE")
        urllib.request.urlopen(req, timeout=60).close()


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


# ---------------------------------------------------------------- locust


def locust_available() -> bool:
    return importlib.util.find_spec("locust") is not None


def _csv_aggregate(prefix: Path) -> tuple[int | None, int | None]:
    try:
        with open(f"{prefix}_stats.csv", newline="") as f:
            for row in csv.DictReader(f):
                if row.get("Name") == "Aggregated":
                    return int(row["Request Count"]), int(row["Failure Count"])
    except (OSError, KeyError, ValueError):
        pass
    return None, None


def run_locust(name: str, locustfile: str, host: str, *, target: str, mode: str, users: int, duration: float,
               rate: float, work: Path, server_pid: int, env_extra: dict[str, str]) -> tuple[Scenario, dict]:
    """One headless locust process; returns the scenario summary and the raw record (timings, acks...)."""
    record = work / f"{name}.record.json"
    prefix = work / name
    env = {**os.environ, "LOADTEST_DIR": str(work), "LOADTEST_MODE": mode, "LOADTEST_RATE": str(rate),
           "LOADTEST_RECORD": str(record), **env_extra}
    argv = [PY, "-m", "locust", "-f", str(HERE / locustfile), "--headless", "-u", str(users), "-r", str(users),
            "-t", f"{max(1, round(duration))}s", "--host", host, "--csv", str(prefix), "--only-summary",
            "--loglevel", "WARNING", "--exit-code-on-error", "1"]
    sc = Scenario(name=name, target=target, locustfile=locustfile, mode=mode, users=users, rate_per_user=rate,
                  duration_s=duration)
    with open(work / f"{name}.locust.log", "wb") as log:
        proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=HERE.parent)
        sampler = CpuSampler({"server": server_pid, "client": proc.pid})
        sampler.start()
        try:
            sc.locust_exit = proc.wait(duration + 120)
        except subprocess.TimeoutExpired:
            proc.kill()
            sc.locust_exit = proc.wait()
            sc.notes.append("locust did not stop in time and was killed")
        finally:
            sampler.stop()
    if not record.exists():
        sc.notes.append(f"no timing record: locust failed (see {name}.locust.log): "
                        + (work / f"{name}.locust.log").read_text("utf-8", "replace")[-1500:])
        return sc, {}
    raw = orjson.loads(record.read_bytes())
    t0, t1 = raw["window"]
    sc.window_s = t1 - t0 if t0 else 0.0
    sc.t_start, sc.t_end = t0 or 0.0, t1
    all_ms = [v for vs in raw["timings_ms"].values() for v in vs]
    sc.latency = Latency.of(all_ms)
    sc.by_kind = {k: Latency.of(v) for k, v in raw["timings_ms"].items()}
    sc.statuses = raw["status"]
    sc.requests = len(all_ms)
    sc.non_200 = sum(n for code, n in sc.statuses.items() if code != "200")
    sc.hits = raw.get("hits", {})
    sc.csv_requests, sc.csv_failures = _csv_aggregate(prefix)
    ok = sum(h[1] for h in sc.hits.values()) if mode == "sync" else len(raw.get("tracked", [])) \
        if mode == "async" else sc.requests - sc.non_200
    sc.failures = max(sc.csv_failures or 0, sc.requests - ok)
    sc.rps = ok / sc.window_s if sc.window_s else 0.0
    if t0:
        sc.server_cpu_pct = sampler.percent("server", t0, t1)
        sc.client_cpu_pct = sampler.percent("client", t0, t1)
        if sc.server_cpu_pct is not None and sc.requests:
            sc.server_cpu_ms_per_req = sc.server_cpu_pct / 100 * sc.window_s * 1000 / sc.requests
    return sc, raw


def check_scenario(run: Run, sc: Scenario) -> None:
    if sc.requests == 0:
        run.errors.append(f"{sc.name}: no requests were made ({'; '.join(sc.notes) or 'see its locust log'})")
    if sc.failures or sc.non_200:
        run.errors.append(f"{sc.name}: {sc.failures} failed requests, {sc.non_200} non-200 answers "
                          f"(status counts {sc.statuses})")
    if sc.locust_exit not in (0, None) and not (sc.failures or sc.non_200):
        run.errors.append(f"{sc.name}: locust exited with {sc.locust_exit}")
