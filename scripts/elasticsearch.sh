#!/usr/bin/env bash
# A real Elasticsearch for development, tests and CI: Elastic's integ-test-zip distribution of the
# server from Maven Central (the real server with its core modules; no bundled JDK, no ingest/painless/
# reindex modules, security off). 8.19.x runs on Java 17.
#
#   scripts/elasticsearch.sh fetch                  download + unpack into the cache (idempotent)
#   scripts/elasticsearch.sh start <port> <workdir> start a single-node server on 127.0.0.1:<port>,
#                                                   data/logs/pid under <workdir>; prints the URL when healthy
#   scripts/elasticsearch.sh stop <workdir>         stop the server started with that workdir
#   scripts/elasticsearch.sh status <port>          print cluster health (exit 1 if not reachable)
#
# Environment: CDS_CACHE_DIR (default <repo>/.cache), CDS_ES_VERSION (default 8.19.7), CDS_ES_ZIP (use this
# local zip instead of downloading), ES_JAVA_HOME / JAVA_HOME (else the `java` on PATH), CDS_ES_HEAP
# (default 512m), CDS_ES_START_TIMEOUT (seconds, default 120), CDS_ES_WATCH_PID (stop the server once
# that process exits: test runs that get killed leave no server behind).
#
# Elasticsearch refuses to run as root ("can not run elasticsearch as root"; 8.x has no override). When
# started as root, the server runs as the unprivileged user `nobody` via `setpriv` (util-linux), and the
# workdir is chowned to it; a cache under a private directory is copied once to a world-readable place.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VERSION="${CDS_ES_VERSION:-8.19.7}"
CACHE="${CDS_CACHE_DIR:-$REPO/.cache}"
ES_HOME="$CACHE/elasticsearch-$VERSION"
ZIP_NAME="elasticsearch-$VERSION.zip"
MAVEN_URL="https://repo1.maven.org/maven2/org/elasticsearch/distribution/integ-test-zip/elasticsearch/$VERSION/$ZIP_NAME"
ARTIFACT="org.elasticsearch.distribution.integ-test-zip:elasticsearch:$VERSION:zip"
PINNED_VERSION=8.19.7
PINNED_SHA1=f34c2c606e7a157550c592f2753ebb8fb63b32ec   # sha1 of elasticsearch-8.19.7.zip (integ-test-zip)
PINNED_SIZE="94 MB, 108 MB unpacked"                   # of that zip: said before the download
SIZE_NOTE=""; [[ "$VERSION" == "$PINNED_VERSION" ]] && SIZE_NOTE=" ($PINNED_SIZE)"
RUN_AS_UID=65534   # nobody
RUN_AS_GID=65534   # nogroup

say() { echo "elasticsearch.sh: $*" >&2; }
die() { say "$*"; exit 1; }

find_java_home() {
  local j
  if [[ -n "${ES_JAVA_HOME:-}" && -x "$ES_JAVA_HOME/bin/java" ]]; then echo "$ES_JAVA_HOME"; return; fi
  if [[ -n "${JAVA_HOME:-}" && -x "$JAVA_HOME/bin/java" ]]; then echo "$JAVA_HOME"; return; fi
  j="$(command -v java || true)"
  [[ -n "$j" ]] || die "no Java found (set ES_JAVA_HOME; Elasticsearch $VERSION needs Java 17+)"
  j="$(readlink -f "$j")"
  dirname "$(dirname "$j")"
}

download_zip() {  # $1 = destination file
  local dest="$1" tmp="$1.part.$$"
  if [[ -n "${CDS_ES_ZIP:-}" ]]; then
    [[ -f "$CDS_ES_ZIP" ]] || die "CDS_ES_ZIP=$CDS_ES_ZIP does not exist"
    cp "$CDS_ES_ZIP" "$tmp"
  elif command -v curl >/dev/null; then
    say "downloading the Elasticsearch $VERSION test server$SIZE_NOTE"
    say "  from $MAVEN_URL"
    curl -fsSL --retry 3 -o "$tmp" "$MAVEN_URL" || { rm -f "$tmp"; die "download failed: $MAVEN_URL"; }
    # Checksum: Maven Central's .sha1 when the mirror serves it, else the pinned one for the default version.
    local want got
    want="$(curl -fsSL --retry 2 "$MAVEN_URL.sha1" 2>/dev/null | cut -c1-40 || true)"
    [[ -n "$want" || "$VERSION" != "$PINNED_VERSION" ]] || want="$PINNED_SHA1"
    got="$(sha1sum "$tmp" | cut -c1-40)"
    if [[ -z "$want" ]]; then
      say "WARNING: no checksum available for $ZIP_NAME; relying on the zip's own CRCs"
    elif [[ "$want" != "$got" ]]; then
      rm -f "$tmp"; die "checksum mismatch for $ZIP_NAME (want $want, got $got)"
    fi
    unzip -tq "$tmp" >/dev/null || { rm -f "$tmp"; die "downloaded $ZIP_NAME is corrupt"; }
  elif command -v mvn >/dev/null; then
    say "no curl: downloading $ARTIFACT with mvn$SIZE_NOTE"
    local d; d="$(mktemp -d)"
    mvn -q dependency:copy -Dartifact="$ARTIFACT" -DoutputDirectory="$d" || { rm -rf "$d"; die "mvn download failed"; }
    mv "$d/$ZIP_NAME" "$tmp"; rm -rf "$d"
  else
    die "neither curl nor mvn available to download $ARTIFACT"
  fi
  mv "$tmp" "$dest"
}

cmd_fetch() {
  [[ -x "$ES_HOME/bin/elasticsearch" ]] && { echo "$ES_HOME"; return; }
  mkdir -p "$CACHE"
  # one fetch at a time (parallel test sessions)
  exec 9>"$CACHE/.elasticsearch-$VERSION.lock"
  flock 9
  if [[ ! -x "$ES_HOME/bin/elasticsearch" ]]; then
    [[ -f "$CACHE/$ZIP_NAME" ]] || download_zip "$CACHE/$ZIP_NAME"
    local tmp; tmp="$(mktemp -d "$CACHE/.unpack.XXXXXX")"
    unzip -q "$CACHE/$ZIP_NAME" -d "$tmp" || { rm -rf "$tmp"; rm -f "$CACHE/$ZIP_NAME"; die "bad zip (removed; run again)"; }
    chmod -R a+rX "$tmp"
    rm -rf "$ES_HOME"
    mv "$tmp/elasticsearch-$VERSION" "$ES_HOME"
    rm -rf "$tmp"
    say "cached in $CACHE: $ZIP_NAME ($(du -sh "$CACHE/$ZIP_NAME" | cut -f1)), unpacked $ES_HOME ($(du -sh "$ES_HOME" | cut -f1))"
  fi
  flock -u 9
  echo "$ES_HOME"
}

as_user() { setpriv "--reuid=$RUN_AS_UID" "--regid=$RUN_AS_GID" --clear-groups "$@"; }

health() {  # $1 = port; prints status json, fails when unreachable
  curl -fsS --max-time 2 "http://127.0.0.1:$1/_cluster/health" 2>/dev/null
}

cmd_start() {
  local port="${1:?usage: start <port> <workdir>}" work="${2:?usage: start <port> <workdir>}"
  if health "$port" >/dev/null; then die "port $port already serves an Elasticsearch"; fi
  cmd_fetch >/dev/null
  local java_home; java_home="$(find_java_home)"
  local jv; jv="$("$java_home/bin/java" -version 2>&1 | head -1 | sed -E 's/.*version "([0-9]+).*/\1/')"
  [[ "$jv" =~ ^[0-9]+$ && "$jv" -ge 17 ]] || die "Java 17+ needed, found '$jv' at $java_home"
  mkdir -p "$work"
  work="$(cd "$work" && pwd)"
  mkdir -p "$work/data" "$work/logs" "$work/tmp"
  rm -rf "$work/config"; cp -r "$ES_HOME/config" "$work/config"
  local -a launcher=()
  if [[ "$(id -u)" == 0 ]]; then
    command -v setpriv >/dev/null || die "running as root needs setpriv (util-linux) to drop to an unprivileged user"
    chown -R "$RUN_AS_UID:$RUN_AS_GID" "$work"
    chmod a+x "$work"
    launcher=(setpriv "--reuid=$RUN_AS_UID" "--regid=$RUN_AS_GID" --clear-groups)
    if ! as_user test -r "$ES_HOME/lib/elasticsearch-$VERSION.jar"; then
      # the cache sits under a private directory (e.g. a 0700 home): run from a world-readable copy
      local pub="${TMPDIR:-/tmp}/cds-elasticsearch-$VERSION"
      if [[ ! -x "$pub/bin/elasticsearch" ]]; then
        local tmp; tmp="$(mktemp -d "${TMPDIR:-/tmp}/.cds-es-copy.XXXXXX")"
        cp -a "$ES_HOME/." "$tmp/" && chmod -R a+rX "$tmp" && chmod a+rx "$tmp" && mv -T "$tmp" "$pub" \
          || { rm -rf "$tmp"; [[ -x "$pub/bin/elasticsearch" ]] || die "could not copy $ES_HOME to $pub"; }
      fi
      ES_HOME="$pub"
      as_user test -r "$ES_HOME/lib/elasticsearch-$VERSION.jar" || die "$ES_HOME is not readable by uid $RUN_AS_UID"
    fi
    as_user test -w "$work/data" \
      || die "workdir $work is not reachable by uid $RUN_AS_UID (a parent directory is private); use one under /tmp"
  fi
  echo "starting Elasticsearch $VERSION on 127.0.0.1:$port (workdir $work, java $java_home)" >&2
  # -d: daemonize once started; -p: the server's pid, used by `stop`.
  if ! env HOME="$work" ES_JAVA_HOME="$java_home" ES_PATH_CONF="$work/config" ES_TMPDIR="$work/tmp" \
      ES_JAVA_OPTS="-Xms${CDS_ES_HEAP:-512m} -Xmx${CDS_ES_HEAP:-512m} ${CDS_ES_EXTRA_JAVA_OPTS:-}" \
      "${launcher[@]}" "$ES_HOME/bin/elasticsearch" -d -p "$work/es.pid" \
      -E discovery.type=single-node -E network.host=127.0.0.1 -E "http.port=$port" \
      -E "path.data=$work/data" -E "path.logs=$work/logs" -E xpack.security.enabled=false \
      -E cluster.routing.allocation.disk.threshold_enabled=false \
      >"$work/launcher.log" 2>&1; then
    tail -n 30 "$work/launcher.log" >&2 || true
    tail -n 30 "$work/logs/elasticsearch.log" >&2 2>/dev/null || true
    die "Elasticsearch failed to start (logs in $work)"
  fi
  local deadline=$((SECONDS + ${CDS_ES_START_TIMEOUT:-120})) h
  while (( SECONDS < deadline )); do
    if h="$(health "$port")" && [[ "$h" =~ \"status\":\"(green|yellow)\" ]]; then
      watch_parent "$work"
      echo "http://127.0.0.1:$port"
      return 0
    fi
    sleep 0.5
  done
  tail -n 30 "$work/logs/elasticsearch.log" >&2 2>/dev/null || true
  cmd_stop "$work" || true
  die "Elasticsearch did not become healthy on port $port within ${CDS_ES_START_TIMEOUT:-120}s"
}

watch_parent() {  # CDS_ES_WATCH_PID set: stop the server when that process is gone (a killed test run)
  [[ -n "${CDS_ES_WATCH_PID:-}" && -f "$1/es.pid" ]] || return 0
  local espid; espid="$(cat "$1/es.pid")"
  setsid bash -c "while kill -0 $CDS_ES_WATCH_PID 2>/dev/null && kill -0 $espid 2>/dev/null; do sleep 2; done; \
    kill -TERM $espid 2>/dev/null" </dev/null >/dev/null 2>&1 &
}

cmd_stop() {
  local work="${1:?usage: stop <workdir>}" pid
  [[ -f "$work/es.pid" ]] || { echo "no es.pid in $work (not running?)" >&2; return 0; }
  pid="$(cat "$work/es.pid")"
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid"
    for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    if kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid" || true; fi
  fi
  rm -f "$work/es.pid"
}

cmd_status() {
  local port="${1:?usage: status <port>}"
  health "$port" || { echo "no Elasticsearch on 127.0.0.1:$port" >&2; return 1; }
  echo
}

case "${1:-}" in
  fetch) shift; cmd_fetch "$@" ;;
  start) shift; cmd_start "$@" ;;
  stop) shift; cmd_stop "$@" ;;
  status) shift; cmd_status "$@" ;;
  *) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
