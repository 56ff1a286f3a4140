#!/usr/bin/env bash
# Start the CDS with its embedded defaults (index persisted under ./data) and a demo network.
# Usage: scripts/demo.sh [--port 8080]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/cds ]; then
  "$PY" -m venv .venv
  .venv/bin/pip install -q -e .
fi
exec .venv/bin/cds serve --demo "$@"
