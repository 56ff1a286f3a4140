"""Shared by the deployment tests: where the artefacts and the fetched tools are, and how to run a tool.

The tools come from `bash scripts/tools.sh` (into ${CDS_CACHE_DIR:-.cache}/tools); a test whose tool is
missing skips loudly.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy"
CHART = REPO / "helm" / "cds"
_cache = Path(os.environ.get("CDS_CACHE_DIR", ".cache"))
TOOLS = (_cache if _cache.is_absolute() else REPO / _cache) / "tools"
HELM = TOOLS / "bin" / "helm"
KUBE_VALIDATE = TOOLS / "bin" / "kubernetes-validate"
COMPOSE_SCHEMA = TOOLS / "compose-spec.json"
PROMTOOL = TOOLS / "bin" / "promtool"


def need(tool: Path, what: str) -> Path:
    if not tool.exists():
        pytest.skip(f"!!!!! {what} NOT CHECKED: {tool} is missing. Run `bash scripts/tools.sh` first "
                    f"(scripts/test.sh does) !!!!!")
    return tool


def run(*cmd: str | Path, check: bool = True, **kw) -> subprocess.CompletedProcess:
    p = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=300, **kw)
    if check and p.returncode != 0:
        raise AssertionError(f"{cmd} failed ({p.returncode}):\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}")
    return p


def compose() -> dict:
    return yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
