#!/usr/bin/env bash
# Start the CDS with its embedded defaults (index persisted under ./data) and a demo network.
# The first run creates .venv and installs the CDS with its Python dependencies (about 25 packages: a 26 MB
# download, 155 MB in .venv, 30-90 s); later runs start at once.
# Usage: scripts/demo.sh [--port 8080]
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/pip-progress.sh
PY=${PYTHON:-python3}
say() { echo "demo.sh: $*" >&2; }
if [ ! -x .venv/bin/cds ]; then
  say "first run: creating .venv and installing the CDS with its Python dependencies"
  say "(about 25 packages: a 26 MB download, 155 MB in .venv; 30-90 s, once)"
  start=$SECONDS
  "$PY" -m venv .venv
  pip_install demo.sh -e .
  say "installed in $((SECONDS - start)) s"
fi
say "starting the CDS with a demo network under ./data (JSON logs on stderr; Ctrl-C stops it). Once it logs"
say "'listening on', try from another terminal:"
say "  .venv/bin/cds request tests/fixtures/UBC_discovery-by-QR.json --get"
exec .venv/bin/cds serve --demo "$@"
