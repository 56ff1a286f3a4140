"""A serving worker never outlives its supervisor, even when its graceful stop hangs (cds.cli.main.watch_parent)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

# The "supervisor": starts a "worker" that ignores SIGTERM (a stop that hangs), prints its pid, and dies.
PARENT = r"""
import subprocess, sys
child = subprocess.Popen([sys.executable, "-c", sys.argv[1]], stdout=subprocess.PIPE, text=True)
print(child.stdout.readline().strip(), flush=True)
"""
WORKER = r"""
import os, signal, time
from cds.cli.main import watch_parent
watch_parent(os.getppid(), poll_s=0.05, grace_s=float(os.environ["GRACE"]))
signal.signal(signal.SIGTERM, lambda *a: open(os.environ["MARK"], "w").write("term"))
print(os.getpid(), flush=True)
time.sleep(600)
"""


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_a_worker_whose_stop_hangs_exits_after_its_parent_died(tmp_path):
    mark = tmp_path / "sigterm"
    env = {**os.environ, "PYTHONPATH": str(REPO), "GRACE": "0.5", "MARK": str(mark)}
    out = subprocess.run([sys.executable, "-c", PARENT, WORKER], env=env, capture_output=True, text=True, timeout=60)
    pid = int(out.stdout.strip())
    deadline = time.monotonic() + 30
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(pid), "the orphaned worker is still running"
    assert mark.read_text() == "term"          # it was asked to stop gracefully first


def test_a_worker_keeps_running_while_its_parent_lives(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO), "GRACE": "0.5", "MARK": str(tmp_path / "sigterm")}
    worker = subprocess.Popen([sys.executable, "-c", WORKER], env=env, stdout=subprocess.PIPE, text=True)
    try:
        pid = int(worker.stdout.readline())
        time.sleep(1.0)                          # twenty polls of the watch
        assert _alive(pid) and not (tmp_path / "sigterm").exists()
    finally:
        worker.kill()
        worker.wait(10)
