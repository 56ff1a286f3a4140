"""The Makefile helps a newcomer: a bare `make` lists the targets instead of running the 8-minute suite, every
target is phony and described, and README names them all."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TEXT = (ROOT / "Makefile").read_text()
TARGETS = re.findall(r"^([a-z][a-z-]*):(?!=)", TEXT, re.M)


def test_targets_are_phony_described_and_in_the_readme():
    assert {"help", "demo", "test", "bench", "bench-smoke"} <= set(TARGETS)
    phony = set(re.search(r"^\.PHONY:(.*)$", TEXT, re.M).group(1).split())
    assert phony == set(TARGETS)
    described = set(re.findall(r"^([a-z][a-z-]*):.*## \S", TEXT, re.M))
    assert described == set(TARGETS)
    readme = (ROOT / "README.md").read_text()
    assert all(f"`make {t}`" in readme for t in TARGETS if t != "help") and "`make help`" in readme


@pytest.mark.skipif(shutil.which("make") is None, reason="no make on this machine")
def test_a_bare_make_lists_the_targets():
    out = subprocess.run(["make", "-s"], cwd=ROOT, capture_output=True, text=True, timeout=30, check=True).stdout
    assert out.startswith("make targets:")
    assert [line.split()[0] for line in out.splitlines()[1:]] == TARGETS
