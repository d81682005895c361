#!/usr/bin/env bash
# tests/test_demo.sh — the README's first command, `./bootstrap.sh demo`, started and stopped cleanly.
#
#   bash tests/test_demo.sh
#
# Runs the demo twice, on free ports, with ANALYTICS_MCP_BIN set (no release build):
#   run 1: waits (deadline) for the printed `claude mcp add --transport http … --header
#          "Authorization: Bearer …"` line, takes URL and token from it, makes real tools/calls
#          (list_schemas, queries on the demo data, a refused read, a wrong token), then sends
#          SIGINT to the demo script alone;
#   run 2: the same start, then SIGINT to the demo's whole process group — what Ctrl-C in a
#          terminal does.
# After each stop it checks (deadline) that the script exited, the server and PostgreSQL ports
# are closed, no process it started (server, postgres, tail) is left, and its temp dir is gone.
# Prints "N passed, N failed" as its last line; exits 1 if anything failed. Everything this test
# starts is killed by PID at exit if it is still there.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT" || exit 1
START_DEADLINE_S="${DEMO_START_DEADLINE_S:-240}"   # initdb + data load + role; no build
STOP_DEADLINE_S=30
WAIT_FILES_S=300   # bootstrap.sh and fixtures/demo.sql may still be in the making

# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

TMP="$(mktemp -d)"
OWN_PIDS=()      # every PID we saw the demo start; killed at exit if still alive
DEMO_PID=""
cleanup() {
  local p
  if [[ -n "$DEMO_PID" ]] && kill -0 "$DEMO_PID" 2>/dev/null; then kill -TERM "$DEMO_PID" 2>/dev/null; sleep 2; fi
  for p in "${OWN_PIDS[@]}" "$DEMO_PID"; do
    [[ -n "$p" ]] && kill -0 "$p" 2>/dev/null && kill -KILL "$p" 2>/dev/null
  done
  rm -rf "$TMP"
}
trap cleanup EXIT

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
descendants() { # all descendant PIDs of $1
  local c
  for c in $(pgrep -P "$1" 2>/dev/null); do echo "$c"; descendants "$c"; done
}
procs_mentioning() { # PIDs whose command line mentions $1 (e.g. the demo's temp dir)
  local d
  for d in /proc/[0-9]*; do
    [[ "${d#/proc/}" == "$$" || "${d#/proc/}" == "$BASHPID" ]] && continue
    if { tr '\0' ' ' <"$d/cmdline"; } 2>/dev/null | grep -qF -- "$1"; then echo "${d#/proc/}"; fi
  done
}

# ── prerequisites ──────────────────────────────────────────────────────────────
end=$((SECONDS + WAIT_FILES_S))
until [[ -x bootstrap.sh && -s fixtures/demo.sql ]] || ((SECONDS >= end)); do sleep 2; done
if [[ -x bootstrap.sh && -s fixtures/demo.sql ]]; then
  pass "bootstrap.sh and fixtures/demo.sql exist"
else
  fail "bootstrap.sh (executable) and fixtures/demo.sql exist (waited ${WAIT_FILES_S}s)"; finish
fi

if [[ -f README.md ]]; then
  first_cmd="$(awk '/^```/ { if (inblock) exit; inblock = 1; next } inblock && NF && $1 !~ /^#/ { print; exit }' README.md)"
  if [[ "$first_cmd" =~ ^\./bootstrap\.sh[[:space:]]+demo([[:space:]]|$) ]]; then
    pass "README's first command is ./bootstrap.sh demo"
  else
    fail "README's first command is ./bootstrap.sh demo" "got: $first_cmd"
  fi
else
  skip "README.md not written yet: first-command check skipped"
fi

help="$(./bootstrap.sh --help 2>&1)"
if grep -q -- '--port' <<<"$help" && grep -q 'demo' <<<"$help"; then pass "bootstrap.sh --help documents demo --port"; else fail "bootstrap.sh --help documents demo --port" "$help"; fi

BIN="${ANALYTICS_MCP_BIN:-target/debug/analytics-mcp}"
if [[ ! -x "$BIN" ]]; then fail "server binary $BIN exists (run cargo build)"; finish; fi
if [[ "$BIN" == "$ROOT/target/debug/analytics-mcp" || "$BIN" == target/debug/analytics-mcp ]] && [[ main.rs -nt "$BIN" ]]; then
  printf 'note: %s is older than main.rs; run cargo build for a current binary\n' "$BIN"
fi

# ── talking MCP with the printed URL and token ─────────────────────────────────
# rpc URL TOKEN JSON → prints "<http status> <body>"
rpc() {
  python3 - "$@" <<'PY'
import json, sys, urllib.request, urllib.error
url, token, body = sys.argv[1], sys.argv[2], sys.argv[3]
req = urllib.request.Request(url, data=body.encode(), method="POST", headers={
    "Content-Type": "application/json", "Accept": "application/json, text/event-stream",
    "Authorization": f"Bearer {token}", "MCP-Protocol-Version": "2025-06-18"})
try:
    with urllib.request.urlopen(req, timeout=30) as r:
        print(r.status, r.read().decode())
except urllib.error.HTTPError as e:
    print(e.code, e.read().decode())
PY
}
tool_call() { # tool_call URL TOKEN NAME ARGS_JSON
  rpc "$1" "$2" "{\"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"tools/call\",\"params\":{\"name\":\"$3\",\"arguments\":$4}}"
}
# check_json DESC "<status> <body>" PYTHON_EXPR   (r = the JSON-RPC result, sc = structuredContent)
check_json() {
  local desc="$1" resp="$2" expr="$3" out
  if out="$(python3 - "$resp" "$expr" 2>&1 <<'PY'
import json, sys
status, _, body = sys.argv[1].partition(" ")
assert status == "200", f"HTTP {status}: {body[:300]}"
env = json.loads(body)
assert "error" not in env, env["error"]
r = env["result"]
sc = r.get("structuredContent")
ok = eval(sys.argv[2])
assert ok, f"{sys.argv[2]} is false for {json.dumps(r)[:600]}"
PY
)"; then pass "$desc"; else fail "$desc" "$out"; fi
}

# ── one demo run ───────────────────────────────────────────────────────────────
# demo_run LABEL MODE   MODE: script (SIGINT to the script) | group (SIGINT to the process group)
demo_run() {
  local label="$1" mode="$2" port log line url token tmp_root pg_port pm_pid rc
  port="$(free_port)"
  log="$TMP/demo-$label.log"
  printf '# %s: ./bootstrap.sh demo --port %s (ANALYTICS_MCP_BIN=%s)\n' "$label" "$port" "$BIN"
  # Started the way a terminal starts a foreground job: its own process group (so "Ctrl-C" can
  # go to the group) and SIGINT at its default disposition. (A plain `cmd &` from a script
  # starts it with SIGINT *ignored*, and bash cannot trap a signal ignored at entry.)
  ANALYTICS_MCP_BIN="$BIN" python3 -c '
import os, signal, sys
signal.signal(signal.SIGINT, signal.SIG_DFL)
signal.signal(signal.SIGQUIT, signal.SIG_DFL)
os.setpgid(0, 0)
os.execvp(sys.argv[1], sys.argv[1:])' ./bootstrap.sh demo --port "$port" </dev/null >"$log" 2>&1 &
  DEMO_PID=$!

  # wait for the claude mcp add line (or the script dying)
  local started=$SECONDS end=$((SECONDS + START_DEADLINE_S))
  line=""
  while ((SECONDS < end)); do
    line="$(grep -E 'claude mcp add --transport http .* --header "Authorization: Bearer [^"]+"' "$log" | head -n 1)"
    [[ -n "$line" ]] && break
    kill -0 "$DEMO_PID" 2>/dev/null || break
    sleep 0.2
  done
  if [[ -z "$line" ]]; then
    fail "$label: demo printed the 'claude mcp add' line within ${START_DEADLINE_S}s" "$(cat "$log")"
    return
  fi
  pass "$label: demo printed the 'claude mcp add' line ($((SECONDS - started)) s)"
  url="$(sed -nE 's/.*claude mcp add --transport http [^ ]+ (https?:[^ ]+) --header.*/\1/p' <<<"$line")"
  token="$(sed -nE 's/.*--header "Authorization: Bearer ([^"]+)".*/\1/p' <<<"$line")"
  if [[ "$url" == "http://127.0.0.1:$port/mcp" ]]; then pass "$label: URL is http://127.0.0.1:$port/mcp"; else fail "$label: URL uses --port" "$line"; fi
  if ((${#token} >= 32)); then pass "$label: token is ${#token} characters"; else fail "$label: token is long enough" "${#token} chars"; fi

  tmp_root="$(grep -oE '/[^ ]*analytics-mcp-demo\.[A-Za-z0-9]+' "$log" | head -n 1)"
  pg_port="$(sed -nE 's/.*PostgreSQL (is up on )?127\.0\.0\.1:([0-9]+).*/\2/p' "$log" | head -n 1)"
  pm_pid="$(head -n 1 "$tmp_root/pg/data/postmaster.pid" 2>/dev/null)"
  if [[ -n "$tmp_root" && -d "$tmp_root" ]]; then pass "$label: temp dir $tmp_root exists while running"; else fail "$label: found the demo's temp dir" "$(cat "$log")"; fi
  if [[ -n "$pg_port" ]] && port_open "$pg_port"; then pass "$label: PostgreSQL listens on 127.0.0.1:$pg_port"; else fail "$label: PostgreSQL port found and open ($pg_port)"; fi
  # remember every process it started, so we can check (and, failing that, clean) them later
  local started_pids=() p
  mapfile -t started_pids < <( { descendants "$DEMO_PID"; [[ -n "$pm_pid" ]] && echo "$pm_pid" && descendants "$pm_pid"; \
                                 [[ -n "$tmp_root" ]] && procs_mentioning "$tmp_root"; } | sort -un)
  OWN_PIDS+=("${started_pids[@]}")
  local server_pid=""
  for p in "${started_pids[@]}"; do
    if [[ "$(readlink -f "/proc/$p/exe" 2>/dev/null)" == "$(readlink -f "$BIN")" ]]; then server_pid="$p"; fi
  done
  if [[ -n "$server_pid" ]]; then pass "$label: analytics-mcp runs (pid $server_pid)"; else fail "$label: found the analytics-mcp process" "$(ps -o pid,args -p "$(IFS=,; echo "${started_pids[*]:-1}")")"; fi
  if [[ -n "$pm_pid" ]] && kill -0 "$pm_pid" 2>/dev/null; then pass "$label: postmaster runs (pid $pm_pid)"; else fail "$label: found the postmaster pid"; fi
  if [[ -n "$server_pid" ]] && tr '\0' '\n' <"/proc/$server_pid/cmdline" | grep -qF -- "$token"; then
    fail "$label: the token is not on the server's command line (ps)"
  else
    pass "$label: the token is not on the server's command line (ps)"
  fi

  if [[ "$mode" == script ]]; then
    # real tool calls with what the line told us
    local r
    r="$(tool_call "$url" "$token" list_schemas '{}')"
    check_json "$label: list_schemas shows fleet, tickets, reporting (not internal)" "$r" \
      '{s["schema"] for s in sc["schemas"]} >= {"fleet","tickets","reporting"} and "internal" not in {s["schema"] for s in sc["schemas"]}'
    r="$(tool_call "$url" "$token" query '{"sql":"SELECT count(*) AS n FROM fleet.vehicles"}')"
    check_json "$label: query counts fleet.vehicles (> 0)" "$r" 'sc["row_count"] == 1 and int(sc["rows"][0]["n"]) > 0'
    r="$(tool_call "$url" "$token" query '{"sql":"SELECT cost_centre, round(sum(cost),2) AS cost FROM reporting.v_fuel_cost_by_cost_centre_month GROUP BY 1 ORDER BY 2 DESC"}')"
    check_json "$label: the README's example query answers" "$r" 'r.get("isError") is not True and sc["row_count"] > 0 and [c["name"] for c in sc["columns"]] == ["cost_centre","cost"]'
    r="$(tool_call "$url" "$token" query '{"sql":"SELECT v.registration, sum(t.distance_km) AS km FROM fleet.vehicles v JOIN fleet.trips t USING (vehicle_id) WHERE t.started_at >= date '"'"'2026-10-01'"'"' AND t.started_at < date '"'"'2026-11-01'"'"' GROUP BY 1 ORDER BY 2 DESC LIMIT 5"}')"
    check_json "$label: a real question (top 5 vehicles by km in October 2026) answers" "$r" \
      'r.get("isError") is not True and sc["row_count"] == 5 and all(float(x["km"]) > 0 for x in sc["rows"])'
    r="$(tool_call "$url" "$token" sample_table '{"schema":"fleet","table":"vehicles","n":3}')"
    check_json "$label: sample_table fleet.vehicles n=3" "$r" 'sc["row_count"] == 3'
    r="$(tool_call "$url" "$token" query '{"sql":"SELECT * FROM internal.secrets"}')"
    check_json "$label: internal.secrets is refused (isError, 42501)" "$r" 'r.get("isError") is True and "42501" in r["content"][0]["text"]'
    r="$(tool_call "$url" "$token" query '{"sql":"DELETE FROM fleet.vehicles"}')"
    check_json "$label: a write is refused" "$r" 'r.get("isError") is True'
    r="$(tool_call "$url" "wrong-$token" list_schemas '{}')"
    if [[ "$r" == 401* ]]; then pass "$label: a wrong token gets 401"; else fail "$label: a wrong token gets 401" "$r"; fi
    if grep -qF -- "$token" <(sed '/claude mcp add/d; /Authorization: Bearer/d' "$log"); then
      fail "$label: the token appears only in the printed connect lines" "$(grep -nF -- "$token" "$log")"
    else
      pass "$label: the token appears only in the printed connect lines"
    fi
    kill -INT "$DEMO_PID"
  else
    # Ctrl-C: SIGINT to the demo's process group — only once it surely is its own group
    local pgid
    pgid="$(ps -o pgid= -p "$DEMO_PID" 2>/dev/null | tr -d ' ')"
    if [[ "$pgid" == "$DEMO_PID" && "$pgid" != "$(ps -o pgid= -p $$ | tr -d ' ')" ]]; then
      kill -INT -- "-$pgid"
    else
      fail "$label: the demo runs in its own process group (pgid=$pgid, pid=$DEMO_PID)"
      kill -INT "$DEMO_PID"
    fi
  fi

  # it stops: script exits, ports close, nothing it started is left, temp dir gone
  local t0=$SECONDS
  end=$((SECONDS + STOP_DEADLINE_S))
  while kill -0 "$DEMO_PID" 2>/dev/null && ((SECONDS < end)); do sleep 0.1; done
  if kill -0 "$DEMO_PID" 2>/dev/null; then
    fail "$label: demo script exited within ${STOP_DEADLINE_S}s of SIGINT" "$(tail -n 20 "$log")"
  else
    wait "$DEMO_PID"; rc=$?
    if ((rc == 130 || rc == 0)); then pass "$label: demo script exited (status $rc) $((SECONDS - t0)) s after SIGINT"
    else fail "$label: demo script exited 130/0 after SIGINT (got $rc)" "$(tail -n 20 "$log")"; fi
  fi
  end=$((SECONDS + STOP_DEADLINE_S))
  while port_open "$port" && ((SECONDS < end)); do sleep 0.1; done
  if port_open "$port"; then fail "$label: server port $port closed"; else pass "$label: server port $port closed"; fi
  if [[ -n "$pg_port" ]]; then
    while port_open "$pg_port" && ((SECONDS < end)); do sleep 0.1; done
    if port_open "$pg_port"; then fail "$label: PostgreSQL port $pg_port closed"; else pass "$label: PostgreSQL port $pg_port closed"; fi
  fi
  local left=()
  end=$((SECONDS + STOP_DEADLINE_S))
  while :; do
    left=()
    for p in "${started_pids[@]}"; do
      if kill -0 "$p" 2>/dev/null && [[ "$(awk '{print $3}' "/proc/$p/stat" 2>/dev/null)" != Z ]]; then left+=("$p"); fi
    done
    [[ -n "$tmp_root" ]] && mapfile -t -O "${#left[@]}" left < <(procs_mentioning "$tmp_root")
    ((${#left[@]} == 0 || SECONDS >= end)) && break
    sleep 0.1
  done
  if ((${#left[@]} == 0)); then
    pass "$label: nothing it started is left running (${#started_pids[@]} processes checked)"
  else
    fail "$label: processes left running" "$(ps -o pid,user,args -p "$(IFS=,; echo "${left[*]}")")"
  fi
  if [[ -n "$tmp_root" && ! -e "$tmp_root" ]]; then pass "$label: temp dir removed"; else fail "$label: temp dir removed" "$(ls -la "$tmp_root" 2>&1)"; fi
  if grep -q 'nothing left running' "$log"; then pass "$label: says it stopped"; else fail "$label: says it stopped" "$(tail -n 10 "$log")"; fi
  DEMO_PID=""
}

demo_run run1 script
demo_run run2 group
finish
