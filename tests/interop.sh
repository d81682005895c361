#!/usr/bin/env bash
# Interop suite: the real MCP clients against the real analytics-mcp binary.
#
#   tests/interop.sh
#
# Installs pinned clients into ${ANALYTICS_MCP_CACHE:-~/.cache/analytics-mcp}/interop (reused when
# the pins are unchanged): Node 22 (npm package `node`), @modelcontextprotocol/conformance,
# @modelcontextprotocol/inspector, @anthropic-ai/claude-code (tests/interop/package*.json) and the
# Python SDK mcp 2.x in a venv (tests/interop/requirements.txt). Then starts a throwaway PostgreSQL
# with a tiny schema and a read-only role, starts the binary (${ANALYTICS_MCP_BIN:-target/debug/
# analytics-mcp}; built with `cargo build --locked` when missing) with a bearer token and DNS-rebinding
# protection on, and runs:
#   - conformance scenarios server-initialize, ping, tools-list, dns-rebinding-protection
#     (through tests/interop/auth_proxy.py, which adds the Authorization header the CLI cannot send)
#   - the inspector CLI: tools/list (legacy and auto era) and tools/call query
#   - the Python SDK in auto and legacy modes calling every tool (tests/interop/sdk_client.py)
#   - Claude Code's own connection check (`claude mcp add` + `claude mcp list` -> Connected)
#   - OAuth (issue 10): a second server with MCP_OAUTH=token. Claude Code added by URL alone (no
#     header) must report "Needs authentication" — its discovery and registration work on our
#     metadata — where the OAuth-off server gets "Failed to connect"; and the conformance server
#     scenarios pass against it with a static bearer token (OAuth on changes nothing for them).
#     The conformance suite's auth scenarios (auth/*) all test OAuth *clients*, so none applies here.
# Every check runs; the script exits non-zero if any failed, printing what the client printed.
# Last line: `N passed, N failed`.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$HERE")
IDIR=$HERE/interop
CACHE=${ANALYTICS_MCP_CACHE:-${HOME:-/tmp}/.cache/analytics-mcp}/interop
BIN=${ANALYTICS_MCP_BIN:-$ROOT/target/debug/analytics-mcp}
CLIENT_TIMEOUT=${INTEROP_CLIENT_TIMEOUT:-120}

# shellcheck source=interop/pg.sh
source "$IDIR/pg.sh"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/analytics-mcp-interop.XXXXXX")
chmod 711 "$WORK"
mkdir -p "$WORK/logs"
PIDS=()
PASSED=0
FAILED=0
FAILED_NAMES=()

cleanup() {
  local rc=$?
  local pid
  for pid in "${PIDS[@]}"; do
    kill "$pid" 2>/dev/null || true
  done
  for pid in "${PIDS[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
  pg_stop
  if [[ -n ${INTEROP_KEEP:-} ]]; then
    echo "interop: kept $WORK" >&2
  else
    rm -rf "$WORK"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

say() { printf '%s\n' "interop: $*" >&2; }
die() { printf '%s\n' "interop: ERROR: $*" >&2; exit 1; }

# wait_for DESCRIPTION DEADLINE_SECONDS CMD... : poll CMD until it succeeds or the deadline passes.
wait_for() {
  local what=$1 secs=$2; shift 2
  local end=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS >= end)); then return 1; fi
    sleep 0.05  # poll interval, not a synchronisation delay: readiness is the condition above
  done
  return 0
}

# check NAME CMD... : run CMD (a function or program) with output to a log; count the result.
check() {
  local name=$1; shift
  local log=$WORK/logs/${name//[^A-Za-z0-9_.-]/_}.log
  local start=$SECONDS rc=0
  "$@" >"$log" 2>&1 || rc=$?
  if ((rc == 0)); then
    PASSED=$((PASSED + 1))
    printf 'PASS %-40s (%ds)\n' "$name" "$((SECONDS - start))"
  else
    FAILED=$((FAILED + 1))
    FAILED_NAMES+=("$name")
    local why="exit $rc"
    ((rc == 124 || rc == 137)) && why="timed out after ${CLIENT_TIMEOUT} s"
    printf 'FAIL %-40s (%ds, %s) -- the client printed:\n' "$name" "$((SECONDS - start))" "$why"
    sed -e 's/^/    | /' "$log" | tail -n 120
  fi
}

# ---------------------------------------------------------------- installs (cached)
install_npm() {
  local dir=$CACHE/npm
  local want
  want=$(cat "$IDIR/package.json" "$IDIR/package-lock.json" | sha256sum | cut -c1-64)
  if [[ -f $dir/.stamp && $(cat "$dir/.stamp") == "$want" && -x $dir/node_modules/.bin/node ]]; then
    say "npm clients: cached in $dir"
    return 0
  fi
  command -v npm >/dev/null || die "npm not found (needed to install the pinned clients)"
  say "npm clients: installing into $dir (pinned by tests/interop/package-lock.json)"
  rm -rf "$dir"
  mkdir -p "$dir"
  cp "$IDIR/package.json" "$IDIR/package-lock.json" "$dir/"
  if ! (cd "$dir" && timeout -k 10 900 npm ci --no-audit --no-fund --loglevel=error) >"$WORK/logs/npm-ci.log" 2>&1; then
    cat "$WORK/logs/npm-ci.log" >&2
    die "npm ci failed"
  fi
  local v
  v=$("$dir/node_modules/.bin/node" --version 2>&1) || true
  [[ $v == v22.* ]] || { cat "$WORK/logs/npm-ci.log" >&2; die "the npm package node@22 did not install a Node 22 binary (got: $v)"; }
  "$dir/node_modules/.bin/claude" --version >/dev/null 2>&1 \
    || { cat "$WORK/logs/npm-ci.log" >&2; die "@anthropic-ai/claude-code did not install its native binary"; }
  echo "$want" >"$dir/.stamp"
}

install_venv() {
  local dir=$CACHE/venv
  local want
  want=$( (cat "$IDIR/requirements.txt"; python3 --version) | sha256sum | cut -c1-64)
  if [[ -f $dir/.stamp && $(cat "$dir/.stamp") == "$want" && -x $dir/bin/python ]]; then
    say "python SDK: cached in $dir"
    return 0
  fi
  say "python SDK: installing into $dir (pinned by tests/interop/requirements.txt)"
  rm -rf "$dir"
  python3 -m venv "$dir" >"$WORK/logs/venv.log" 2>&1 || { cat "$WORK/logs/venv.log" >&2; die "python3 -m venv failed"; }
  if ! "$dir/bin/pip" install --disable-pip-version-check -q -r "$IDIR/requirements.txt" >>"$WORK/logs/venv.log" 2>&1; then
    cat "$WORK/logs/venv.log" >&2
    die "pip install of the Python SDK failed"
  fi
  "$dir/bin/python" -c 'import mcp.client.client' || die "the mcp package does not import"
  echo "$want" >"$dir/.stamp"
}

mkdir -p "$CACHE"
install_npm
install_venv
# tests/run installs the clients early, in the background, while the other suites run.
if [[ ${1:-} == --install-only ]]; then say "clients installed"; exit 0; fi
NODE_BIN=$CACHE/npm/node_modules/.bin
PY=$CACHE/venv/bin/python
# Node 22 first on PATH: the npm `node` package's binary, used by every JS client below.
export PATH=$NODE_BIN:$PATH
export NO_COLOR=1 FORCE_COLOR=0 npm_config_update_notifier=false
say "node $(node --version), conformance $(conformance --version 2>/dev/null || echo '?'), $(claude --version 2>/dev/null || echo 'claude ?')"

# ---------------------------------------------------------------- binary
if [[ ! -x $BIN ]]; then
  if [[ -n ${ANALYTICS_MCP_BIN:-} ]]; then die "ANALYTICS_MCP_BIN=$BIN is not an executable"; fi
  say "building $BIN (cargo build --locked)"
  (cd "$ROOT" && cargo build --locked) >"$WORK/logs/cargo.log" 2>&1 || { tail -n 60 "$WORK/logs/cargo.log" >&2; die "cargo build failed"; }
fi

# ---------------------------------------------------------------- PostgreSQL
say "starting PostgreSQL"
pg_start "$WORK/pg" fsync=off
RO_PASSWORD=ro-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')
pg_psql -d postgres -c 'CREATE DATABASE analytics'
pg_psql -d analytics -v ro_password="$RO_PASSWORD" -f "$IDIR/fixture.sql" >"$WORK/logs/fixture.log" 2>&1 \
  || { cat "$WORK/logs/fixture.log" >&2; die "loading tests/interop/fixture.sql failed"; }
say "PostgreSQL $PG_VERSION on 127.0.0.1:$PG_PORT"

# ---------------------------------------------------------------- server + proxy
TOKEN=tok-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
MCP_PORT=$(pg_free_port)
URL=http://127.0.0.1:$MCP_PORT/mcp
# Only our settings: drop any MCP_* the caller's environment carries.
mapfile -t INHERITED_MCP < <(compgen -e | grep '^MCP_' || true)
for v in "${INHERITED_MCP[@]}"; do unset "$v"; done
DATABASE_URL="postgres://mcp_ro:$RO_PASSWORD@127.0.0.1:$PG_PORT/analytics" \
MCP_AUTH_TOKENS="ci:$TOKEN" MCP_HOST=127.0.0.1 MCP_PORT=$MCP_PORT MCP_DNS_REBINDING_PROTECTION=1 \
  "$BIN" >"$WORK/logs/server.log" 2>&1 &
SERVER_PID=$!
PIDS+=("$SERVER_PID")
healthy() {
  kill -0 "$SERVER_PID" || return 0  # exited: stop polling, reported below
  curl -fsS -o /dev/null --max-time 2 "http://127.0.0.1:$MCP_PORT/healthz"
}
if ! wait_for "server /healthz" 30 healthy || ! kill -0 "$SERVER_PID" 2>/dev/null; then
  cat "$WORK/logs/server.log" >&2
  die "analytics-mcp did not answer GET /healthz within 30 s (or exited)"
fi
ready() { curl -fsS -o /dev/null --max-time 2 "http://127.0.0.1:$MCP_PORT/readyz"; }
wait_for "server /readyz" 30 ready || { cat "$WORK/logs/server.log" >&2; die "analytics-mcp /readyz did not report the database up"; }
say "analytics-mcp $("$BIN" --version 2>/dev/null || true) on $URL (pid $SERVER_PID)"

OAUTH_PORT=$(pg_free_port)
OAUTH_URL=http://127.0.0.1:$OAUTH_PORT/mcp
DATABASE_URL="postgres://mcp_ro:$RO_PASSWORD@127.0.0.1:$PG_PORT/analytics" \
MCP_AUTH_TOKENS="ci:$TOKEN" MCP_HOST=127.0.0.1 MCP_PORT=$OAUTH_PORT MCP_OAUTH=token \
MCP_PUBLIC_URL=http://127.0.0.1:$OAUTH_PORT "$BIN" >"$WORK/logs/server-oauth.log" 2>&1 &
OAUTH_PID=$!
PIDS+=("$OAUTH_PID")
oauth_healthy() {
  kill -0 "$OAUTH_PID" || return 0
  curl -fsS -o /dev/null --max-time 2 "http://127.0.0.1:$OAUTH_PORT/healthz"
}
if ! wait_for "oauth server /healthz" 30 oauth_healthy || ! kill -0 "$OAUTH_PID" 2>/dev/null; then
  cat "$WORK/logs/server-oauth.log" >&2
  die "analytics-mcp with MCP_OAUTH=token did not answer GET /healthz within 30 s (or exited)"
fi

python3 "$IDIR/auth_proxy.py" 0 "$OAUTH_PORT" "$TOKEN" "$WORK/proxy-oauth.port" >"$WORK/logs/proxy-oauth.log" 2>&1 &
PIDS+=("$!")
python3 "$IDIR/auth_proxy.py" 0 "$MCP_PORT" "$TOKEN" "$WORK/proxy.port" >"$WORK/logs/proxy.log" 2>&1 &
PIDS+=("$!")
wait_for "proxy port file" 15 test -s "$WORK/proxy.port" || { cat "$WORK/logs/proxy.log" >&2; die "auth proxy did not start"; }
PROXY_PORT=$(cat "$WORK/proxy.port")
PROXY_URL=http://127.0.0.1:$PROXY_PORT/mcp
wait_for "oauth proxy port file" 15 test -s "$WORK/proxy-oauth.port" || { cat "$WORK/logs/proxy-oauth.log" >&2; die "auth proxy (oauth) did not start"; }
OAUTH_PROXY_URL=http://127.0.0.1:$(cat "$WORK/proxy-oauth.port")/mcp

# ---------------------------------------------------------------- checks
# Sanity: the proxy really is needed and really works (else the conformance results mean nothing).
check_proxy() {
  local body='{"jsonrpc":"2.0","id":1,"method":"ping"}'
  local direct via
  direct=$(curl -sS -o /dev/null -w '%{http_code}' -H 'Content-Type: application/json' \
    -H 'Accept: application/json, text/event-stream' -d "$body" "$URL")
  via=$(curl -sS -w ' %{http_code}' -H 'Content-Type: application/json' \
    -H 'Accept: application/json, text/event-stream' -d "$body" "$PROXY_URL")
  echo "without token: HTTP $direct; through proxy: $via"
  [[ $direct == 401 && $via == *'"result"'*' 200' ]]
}
check proxy-injects-auth check_proxy

conformance_scenario() {
  local s=$1
  timeout -k 5 "$CLIENT_TIMEOUT" conformance server --url "$PROXY_URL" --scenario "$s" -o "$WORK/conformance"
}
for s in server-initialize ping tools-list dns-rebinding-protection; do
  check "conformance:$s" conformance_scenario "$s"
done
conformance_oauth_server() {
  timeout -k 5 "$CLIENT_TIMEOUT" conformance server --url "$OAUTH_PROXY_URL" --scenario "$1" -o "$WORK/conformance-oauth"
}
for s in server-initialize tools-list; do
  check "conformance:oauth-on:$s" conformance_oauth_server "$s"
done

TOOL_NAMES=(query list_schemas list_tables describe_table list_functions sample_table list_databases)
INSPECTOR_HOME=$WORK/inspector-home
mkdir -p "$INSPECTOR_HOME"
inspector() { HOME=$INSPECTOR_HOME timeout -k 5 "$CLIENT_TIMEOUT" "$NODE_BIN/inspector" "$@"; }
inspector_list() {
  local era=$1 out t
  out=$(inspector --cli "$URL" --transport http --header "Authorization: Bearer $TOKEN" \
    --protocol-era "$era" --method tools/list 2>&1) || { local rc=$?; echo "$out"; return "$rc"; }
  echo "$out"
  for t in "${TOOL_NAMES[@]}"; do
    grep -q "\"$t\"" <<<"$out" || { echo ">>> tool $t missing from the inspector's tools/list output"; return 1; }
  done
}
inspector_call() {
  local out
  out=$(inspector --cli "$URL" --transport http --header "Authorization: Bearer $TOKEN" \
    --method tools/call --tool-name query --tool-arg "sql=SELECT 1 AS one" 2>&1) || { local rc=$?; echo "$out"; return "$rc"; }
  echo "$out"
  if grep -q '"isError": *true' <<<"$out"; then echo ">>> isError:true"; return 1; fi
  grep -Eq 'row_count(\\)?": *1' <<<"$out" || { echo ">>> expected row_count 1 in the result"; return 1; }
}
check inspector:tools/list:legacy inspector_list legacy
check inspector:tools/list:auto inspector_list auto
check inspector:tools/call:query inspector_call

sdk() { timeout -k 5 "$CLIENT_TIMEOUT" "$PY" "$IDIR/sdk_client.py" "$URL" "$TOKEN" "$1"; }
check python-sdk:auto sdk auto
check python-sdk:legacy sdk legacy

claude_check() (
  local home=$WORK/claude-home proj=$WORK/claude-project out
  mkdir -p "$home" "$proj"
  cd "$proj"
  export HOME=$home XDG_CONFIG_HOME=$home/.config CLAUDE_CONFIG_DIR=$home/.claude
  export DISABLE_AUTOUPDATER=1 CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1 DISABLE_TELEMETRY=1 \
    DISABLE_ERROR_REPORTING=1 DISABLE_BUG_COMMAND=1 CI=true
  unset ANTHROPIC_API_KEY CLAUDE_CODE_OAUTH_TOKEN
  echo "\$ claude mcp add --transport http probe $URL --header 'Authorization: Bearer ***'"
  timeout -k 5 "$CLIENT_TIMEOUT" claude mcp add --transport http probe "$URL" \
    --header "Authorization: Bearer $TOKEN" </dev/null 2>&1 | sed "s/$TOKEN/***/g"
  [[ ${PIPESTATUS[0]} -eq 0 ]] || { echo ">>> claude mcp add failed"; return 1; }
  # negative control: the same server with a wrong token must not be reported Connected
  timeout -k 5 "$CLIENT_TIMEOUT" claude mcp add --transport http badtoken "$URL" \
    --header "Authorization: Bearer wrong-$TOKEN" </dev/null >/dev/null 2>&1 || { echo ">>> claude mcp add badtoken failed"; return 1; }
  echo "\$ claude mcp list"
  out=$(timeout -k 5 "$CLIENT_TIMEOUT" claude mcp list </dev/null 2>&1) || { local rc=$?; echo "$out"; echo ">>> claude mcp list failed"; return "$rc"; }
  echo "$out" | sed "s/$TOKEN/***/g"
  grep -E '^probe: ' <<<"$out" | grep -q 'Connected' || { echo ">>> probe is not reported Connected"; return 1; }
  if grep -E '^badtoken: ' <<<"$out" | grep -q '✔ Connected'; then
    echo ">>> a wrong token is reported Connected too: the check proves nothing"; return 1
  fi
  grep -E '^badtoken: ' <<<"$out" | grep -q '401' || { echo ">>> the wrong token did not get HTTP 401"; return 1; }
)
check claude-code:mcp-list claude_check

# Added by URL alone, as an analyst would before signing in: the OAuth server needs
# authentication (Claude Code found our metadata and could register); the OAuth-off one cannot
# even start a flow.
claude_oauth_check() (
  local home=$WORK/claude-oauth-home proj=$WORK/claude-oauth-project out
  mkdir -p "$home" "$proj"
  cd "$proj"
  export HOME=$home XDG_CONFIG_HOME=$home/.config CLAUDE_CONFIG_DIR=$home/.claude
  export DISABLE_AUTOUPDATER=1 CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1 DISABLE_TELEMETRY=1 \
    DISABLE_ERROR_REPORTING=1 DISABLE_BUG_COMMAND=1 CI=true
  unset ANTHROPIC_API_KEY CLAUDE_CODE_OAUTH_TOKEN
  echo "\$ claude mcp add --transport http analytics $OAUTH_URL"
  timeout -k 5 "$CLIENT_TIMEOUT" claude mcp add --transport http analytics "$OAUTH_URL" </dev/null 2>&1 \
    || { echo ">>> claude mcp add failed"; return 1; }
  timeout -k 5 "$CLIENT_TIMEOUT" claude mcp add --transport http nooauth "$URL" </dev/null >/dev/null 2>&1 \
    || { echo ">>> claude mcp add nooauth failed"; return 1; }
  echo "\$ claude mcp list"
  out=$(timeout -k 5 "$CLIENT_TIMEOUT" claude mcp list </dev/null 2>&1) || { local rc=$?; echo "$out"; return "$rc"; }
  echo "$out"
  grep -E '^analytics: ' <<<"$out" | grep -q 'Needs authentication' \
    || { echo ">>> the OAuth server is not reported as needing authentication"; return 1; }
  grep -E '^nooauth: ' <<<"$out" | grep -q 'Needs authentication' \
    && { echo ">>> the OAuth-off server is reported as needing authentication too: the check proves nothing"; return 1; }
  grep -E '^nooauth: ' <<<"$out" | grep -q 'Failed to connect' \
    || { echo ">>> expected the OAuth-off server to fail the connection check"; return 1; }
)
check claude-code:oauth-needs-authentication claude_oauth_check

# ---------------------------------------------------------------- summary
if ! kill -0 "$SERVER_PID" 2>/dev/null; then
  FAILED=$((FAILED + 1)); FAILED_NAMES+=("server-still-running")
  echo "FAIL server-still-running -- analytics-mcp exited during the run; its log:"
  tail -n 60 "$WORK/logs/server.log" | sed -e 's/^/    | /'
fi
if ((FAILED > 0)); then
  echo "interop: failed: ${FAILED_NAMES[*]}"
  echo "interop: server log (last 40 lines):"
  tail -n 40 "$WORK/logs/server.log" | sed -e "s/$TOKEN/***/g" -e 's/^/    | /'
fi
echo "$PASSED passed, $FAILED failed"
((FAILED == 0))
