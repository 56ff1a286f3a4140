# Sourced by scripts/demo.sh and scripts/test.sh: install into .venv with one line per package collected,
# instead of ~30 s of silence (pip -q) or pages of pip output. The full pip log stays in .venv/pip-install.log.
#   pip_install <script name> <pip install arguments...>

pip_install() {
  local who="$1"; shift
  local log=.venv/pip-install.log
  if ! .venv/bin/pip install --progress-bar off --disable-pip-version-check "$@" 2>&1 | tee "$log" \
       | sed -un -E -e "s/^Collecting ([A-Za-z0-9_.-]+).*/$who:   \1/p" \
                    -e "s/^Installing collected packages.*/$who: unpacking them into .venv/p" >&2; then
    echo "$who: pip install failed; the end of $log:" >&2
    tail -n 20 "$log" >&2
    return 1
  fi
}
