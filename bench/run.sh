#!/usr/bin/env bash
# Benchmark analytics-mcp against the physical limit (PostgreSQL itself, via pgbench).
#
#   bench/run.sh                      # defaults: 10 s per cell, c = 1 8 32, 1,000,000 rows
#   BENCH_SECONDS=5 bench/run.sh      # quicker
#
# Environment (all optional):
#   BENCH_SECONDS      duration of every wrk and pgbench cell (default 10)
#   BENCH_CONCURRENCY  space-separated client counts (default "1 8 32")
#   BENCH_ROWS         rows in bench.positions (default 1000000)
#   BENCH_BIN          server binary to measure (default: cargo build --release --locked)
#   BENCH_MUSL         0 to skip the static musl build (default: build it if the target is installed)
#   BENCH_STARTS       exec-to-healthy samples (default 10)
#   BENCH_POOL_MAX     MCP_POOL_MAX for the server (default: the server's default)
#   BENCH_MEMORY_CONNECTIONS  connection counts of the memory cell (default "1 8 32"; "" skips it)
#   BENCH_MEMORY_ROUNDS       times each connection sends each worst-case body (default 3)
#   BENCH_OUT          where to save the Markdown table (default bench/results.md)
#   BENCH_TABLES       tables in the catalog-scaling schema (default 20000)
#   BENCH_SCALE        0 to skip the catalog-scaling cells (default: run them)
#   BENCH_TLS          0 to skip the TLS cost section (default 1)
#
# What it does: starts a throwaway PostgreSQL tuned for benchmarking (fsync off, 256MB shared
# buffers) on 127.0.0.1, loads bench/dataset.sql (deterministic, generate_series only), starts the
# release binary with a bearer token, and for three workloads drives `tools/call query` with wrk
# (keep-alive connections, bench/tools_call.lua) at each concurrency, then runs pgbench -M extended
# with the same statements the server sends per call (BEGIN READ ONLY / set_config LOCAL settings /
# the query wrapped in row_to_json exactly as the server wraps it / ROLLBACK) at the same
# concurrency. Then the memory cell: for each C, a fresh server with MCP_POOL_MAX=C and C connections
# sending every worst-case body of tests/worst_case.py at once (the batch attack at the largest body,
# batches of answers at the budget, the longest SQL, the lexer's worst, the most JSON values, a 1 MiB
# name to echo), for the glibc build and the musl build: the VmHWM growth per connection is the
# per-request bound the README states. Last, the cost of TLS to PostgreSQL: ssl is turned on (a test
# CA and an RSA-2048 server certificate made with openssl, as managed services use), and for
# sslmode=disable and sslmode=verify-full it measures the connect time (`analytics-mcp check-db 50`:
# TCP, TLS handshake, SCRAM) and the `SELECT 1` rate over the pooled connections at c=1 and c=8.
# Then three smaller sections at c=1: a 10,000-row answer in each `format` (objects,
# arrays, csv, markdown; latency and answer size, on a server whose byte budget lets 10,000 rows
# through), the cost of MCP_MAX_PLAN_COST's EXPLAIN round trip (the same calls on a server with and
# one without it), and how many rows of the fleet demo (fixtures/demo.sql) fit the default 150 KB
# budget in each format. Then the catalog-scaling cells: a second database with BENCH_TABLES tables in one
# schema and a table of 1,600 columns (bench/scale.sql); list_schemas, list_tables, describe_table,
# profile_columns and search_objects each driven by wrk at c=1, their answer size recorded, and
# PostgreSQL's own time for the same catalog statements (planning + execution, from
# pg_stat_statements over the same calls) as the reference. Prints the Markdown tables (and the
# machine) and saves them to $BENCH_OUT.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$HERE")
SECS=${BENCH_SECONDS:-10}
CONCURRENCY=${BENCH_CONCURRENCY:-1 8 32}
ROWS=${BENCH_ROWS:-1000000}
STARTS=${BENCH_STARTS:-10}
TABLES=${BENCH_TABLES:-20000}
OUT=${BENCH_OUT:-$HERE/results.md}
MAX_ROWS=1000            # max_rows sent with every call
STATEMENT_TIMEOUT_MS=30000
MAX_RESULT_BYTES=150000  # the server's MCP_MAX_RESULT_BYTES default; part of its wrapper SQL

# shellcheck source=../tests/interop/pg.sh
source "$ROOT/tests/interop/pg.sh"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/analytics-mcp-bench.XXXXXX")
chmod 711 "$WORK"
SERVER_PID=
EXTRA_PIDS=()
cleanup() {
  local rc=$?
  local pid
  for pid in "$SERVER_PID" "${EXTRA_PIDS[@]}"; do
    [[ -n $pid ]] || continue
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  pg_stop
  if [[ -n ${BENCH_KEEP:-} ]]; then echo "bench: kept $WORK" >&2; else rm -rf "$WORK"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

say() { printf 'bench: %s\n' "$*" >&2; }
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
T_START=$SECONDS
die() { printf 'bench: ERROR: %s\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------- tools
if ! command -v wrk >/dev/null; then
  say "installing wrk (Debian package)"
  if [[ $(id -u) -eq 0 ]]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y wrk >"$WORK/apt.log" 2>&1 \
      || { apt-get update >>"$WORK/apt.log" 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y wrk >>"$WORK/apt.log" 2>&1; } \
      || { cat "$WORK/apt.log" >&2; die "apt-get install wrk failed"; }
  else
    die "wrk not found: apt-get install wrk"
  fi
fi
PGBENCH=$(command -v pgbench || true)
[[ -n $PGBENCH ]] || PGBENCH=$PG_BIN/pgbench
[[ -x $PGBENCH ]] || die "pgbench not found"

# ---------------------------------------------------------------- binaries
if [[ -n ${BENCH_BIN:-} ]]; then
  BIN=$BENCH_BIN
  [[ -x $BIN ]] || die "BENCH_BIN=$BIN is not an executable"
else
  say "cargo build --release --locked"
  (cd "$ROOT" && cargo build --release --locked) >"$WORK/cargo-release.log" 2>&1 \
    || { tail -n 60 "$WORK/cargo-release.log" >&2; die "release build failed"; }
  BIN=$ROOT/target/release/analytics-mcp
fi
RELEASE_BYTES=$(stat -c %s "$BIN")

MUSL_TARGET=x86_64-unknown-linux-musl
MUSL_SIZE="n/a (musl target not installed)"
if [[ ${BENCH_MUSL:-1} == 0 ]]; then
  MUSL_SIZE="n/a (skipped: BENCH_MUSL=0)"
elif command -v rustup >/dev/null && rustup target list --installed 2>/dev/null | grep -qx "$MUSL_TARGET"; then
  say "cargo build --release --locked --target $MUSL_TARGET"
  if (cd "$ROOT" && cargo build --release --locked --target "$MUSL_TARGET") >"$WORK/cargo-musl.log" 2>&1; then
    MUSL_BIN=$ROOT/target/$MUSL_TARGET/release/analytics-mcp
    musl_bytes=$(stat -c %s "$MUSL_BIN")
    linkage=$(file -b "$MUSL_BIN" 2>/dev/null | grep -oE 'static(-pie)? linked|statically linked|dynamically linked' | head -n1 || true)
    MUSL_SIZE=$(awk -v b="$musl_bytes" 'BEGIN { printf "%.2f MiB (%d bytes)", b / 1048576, b }')
    [[ -n $linkage ]] && MUSL_SIZE+=", $linkage"
  else
    tail -n 30 "$WORK/cargo-musl.log" >&2
    MUSL_SIZE="n/a (musl build failed, see above)"
  fi
fi

# ---------------------------------------------------------------- PostgreSQL + dataset
say "starting PostgreSQL (tuned for benchmarking)"
# pg_stat_statements is loaded for the scaling cells, and switched off in benchdb (below).
pg_start "$WORK/pg" fsync=off synchronous_commit=off full_page_writes=off shared_buffers=256MB \
  max_connections=200 jit=off shared_preload_libraries=pg_stat_statements
RO_PASSWORD=ro-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')
pg_psql -d postgres -c 'CREATE DATABASE benchdb'
pg_psql -d postgres -q -c 'ALTER DATABASE benchdb SET compute_query_id = off' \
  -c 'ALTER DATABASE benchdb SET pg_stat_statements.track = none'
say "loading $ROWS rows into bench.positions"
t0=$SECONDS
pg_psql -d benchdb -v rows="$ROWS" -v ro_password="$RO_PASSWORD" -f "$HERE/dataset.sql" >"$WORK/dataset.log" 2>&1 \
  || { cat "$WORK/dataset.log" >&2; die "loading bench/dataset.sql failed"; }
say "dataset ready in $((SECONDS - t0)) s"
DB_URL="postgres://bench_ro:$RO_PASSWORD@127.0.0.1:$PG_PORT/benchdb"

# ---------------------------------------------------------------- server
TOKEN=bench-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
# Only our settings: drop any MCP_* the caller's environment carries.
mapfile -t INHERITED_MCP < <(compgen -e | grep '^MCP_' || true)
for v in "${INHERITED_MCP[@]}"; do unset "$v"; done
export DATABASE_URL=$DB_URL MCP_AUTH_TOKENS="bench:$TOKEN" MCP_HOST=127.0.0.1
[[ -n ${BENCH_POOL_MAX:-} ]] && export MCP_POOL_MAX=$BENCH_POOL_MAX
# wrk is one load generator with one token, i.e. one analyst: measure the server, not the fair share
export MCP_MAX_INFLIGHT_PER_CALLER=1000
MCP_PORT=$(pg_free_port)
MCP_PORT=$MCP_PORT "$BIN" >"$WORK/server.log" 2>&1 &
SERVER_PID=$!
end=$((SECONDS + 30))
until curl -fsS -o /dev/null --max-time 2 "http://127.0.0.1:$MCP_PORT/healthz" 2>/dev/null; do
  kill -0 "$SERVER_PID" 2>/dev/null || { cat "$WORK/server.log" >&2; die "the server exited during start-up"; }
  ((SECONDS < end)) || { cat "$WORK/server.log" >&2; die "no healthy /healthz within 30 s"; }
  sleep 0.02  # poll interval; readiness is the condition
done
IDLE_RSS_KB=$(awk '/^VmRSS:/ { print $2 }' "/proc/$SERVER_PID/status")
URL=http://127.0.0.1:$MCP_PORT/mcp
say "server pid $SERVER_PID on $URL, idle RSS ${IDLE_RSS_KB} kB"

# ---------------------------------------------------------------- workloads
# name | SQL the analyst sends | column aliases the server adds when wrapping (its describe step)
DAY_FROM="2024-01-10 00:00:00+00"
DAY_TO="2024-01-11 00:00:00+00"
W_NAMES=("SELECT 1" "1,000-row select" "1-day aggregate")
W_SQL=(
  "SELECT 1"
  "SELECT id, vehicle_id, ts, lat, lon, speed, heading, ignition FROM bench.positions WHERE ts >= '$DAY_FROM' ORDER BY ts LIMIT 1000"
  "SELECT vehicle_id, count(*), avg(speed), max(speed) FROM bench.positions WHERE ts >= '$DAY_FROM' AND ts < '$DAY_TO' GROUP BY 1"
)
W_ALIASES=(
  '("?column?")'
  '("id", "vehicle_id", "ts", "lat", "lon", "speed", "heading", "ignition")'
  '("vehicle_id", "count", "avg", "max")'
)
W_ROWS=(1 1000 200)

# The statements the server sends per tools/call (main.rs, Pool::read_only + Session::run_statement),
# as a pgbench script. The server's own round trips are: [BEGIN READ ONLY; SELECT set_config(...)]
# (simple protocol), [Parse+Describe of the statement], [Parse/Bind/Execute of the wrapped
# statement], [ROLLBACK; SELECT pg_advisory_unlock_all()] (simple protocol) = 4. pgbench -M
# extended cannot put two statements in one command, so this is 4 commands = 4 round trips too:
# BEGIN, the set_config settings, the wrapped statement, ROLLBACK.
pgbench_script() {
  local sql=$1 aliases=$2
  cat <<EOF
BEGIN READ ONLY;
SELECT set_config('statement_timeout', '$STATEMENT_TIMEOUT_MS', true), set_config('TimeZone', 'UTC', true), set_config('DateStyle', 'ISO, YMD', true), set_config('IntervalStyle', 'iso_8601', true), set_config('bytea_output', 'hex', true), set_config('extra_float_digits', '1', true);
SELECT CASE WHEN octet_length(j) <= $MAX_RESULT_BYTES THEN j END FROM (SELECT row_to_json(mcp_row.*)::text AS j FROM ($sql) AS mcp_row$aliases LIMIT $((MAX_ROWS + 1))) AS capped;
ROLLBACK;
EOF
}

body_for() {
  python3 -c 'import json,sys; print(json.dumps({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"query","arguments":{"sql":sys.argv[1],"max_rows":int(sys.argv[2])}}}, separators=(",",":")))' "$1" "$MAX_ROWS"
}

# percentiles (ms) of a pgbench --log run: prints "p50 p99"
pgbench_percentiles() {
  python3 - "$@" <<'EOF'
import sys
lat = []
for path in sys.argv[1:]:
    with open(path) as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 3 and parts[2].isdigit():
                lat.append(int(parts[2]))
lat.sort()
def pct(p):
    return lat[min(len(lat) - 1, int(round(p / 100 * len(lat) + 0.5)) - 1)] / 1000 if lat else float("nan")
print(f"{pct(50):.3f} {pct(99):.3f}")
EOF
}

RESULTS=$WORK/results.tsv
: >"$RESULTS"
PEAK_RSS_KB=0
max_c=0
for c in $CONCURRENCY; do ((c > max_c)) && max_c=$c; done

for i in "${!W_NAMES[@]}"; do
  name=${W_NAMES[$i]} sql=${W_SQL[$i]}
  body_file=$WORK/body-$i.json
  body_for "$sql" >"$body_file"
  pgbench_script "$sql" "${W_ALIASES[$i]}" >"$WORK/pgbench-$i.sql"

  # sanity: the call succeeds and returns the expected rows (else the numbers mean nothing)
  curl -sS -o "$WORK/resp-$i.json" -H 'Content-Type: application/json' -H 'Accept: application/json, text/event-stream' \
    -H "Authorization: Bearer $TOKEN" --data-binary "@$body_file" "$URL" || die "workload '$name': curl failed"
  python3 - "${W_ROWS[$i]}" "$WORK/resp-$i.json" <<'EOF' || die "workload '$name': unexpected response: $(head -c 600 "$WORK/resp-$i.json")"
import json, sys
want, r = int(sys.argv[1]), json.load(open(sys.argv[2]))
res = r["result"]
assert not res.get("isError"), res
assert res["structuredContent"]["row_count"] == want, res["structuredContent"]["row_count"]
EOF
  PGPASSWORD=$RO_PASSWORD "$PGBENCH" -M extended -n -c 1 -j 1 -t 1 -h 127.0.0.1 -p "$PG_PORT" -U bench_ro \
    -f "$WORK/pgbench-$i.sql" benchdb >"$WORK/pgbench-check-$i.log" 2>&1 \
    || { cat "$WORK/pgbench-check-$i.log" >&2; die "workload '$name': the pgbench script fails"; }

  # warm-up: fill the server's connection pool and PostgreSQL's caches
  BENCH_BODY_FILE=$body_file BENCH_TOKEN=$TOKEN wrk -t 2 -c 8 -d 1s -s "$HERE/tools_call.lua" "$URL" >/dev/null 2>&1 || true

  for c in $CONCURRENCY; do
    threads=$((c < 2 ? c : 2))
    say "$name, c=$c: wrk ${SECS}s"
    BENCH_BODY_FILE=$body_file BENCH_TOKEN=$TOKEN timeout -k 5 $((SECS + 60)) \
      wrk -t "$threads" -c "$c" -d "${SECS}s" --timeout 10s --latency -s "$HERE/tools_call.lua" "$URL" \
      >"$WORK/wrk-$i-$c.log" 2>&1 || { cat "$WORK/wrk-$i-$c.log" >&2; die "wrk failed"; }
    line=$(grep '^BENCH ' "$WORK/wrk-$i-$c.log") || { cat "$WORK/wrk-$i-$c.log" >&2; die "no BENCH line from wrk"; }
    declare -A m=()
    for kv in ${line#BENCH }; do m[${kv%%=*}]=${kv#*=}; done
    errors=$((m[non2xx] + m[iserror] + m[rpcerror] + m[sockerr]))
    if ((c == max_c)); then
      hwm=$(awk '/^VmHWM:/ { print $2 }' "/proc/$SERVER_PID/status")
      ((hwm > PEAK_RSS_KB)) && PEAK_RSS_KB=$hwm
    fi

    say "$name, c=$c: pgbench ${SECS}s"
    mkdir -p "$WORK/pgb-$i-$c"
    PGPASSWORD=$RO_PASSWORD timeout -k 5 $((SECS + 60)) "$PGBENCH" -M extended -n -c "$c" -j "$threads" -T "$SECS" \
      -h 127.0.0.1 -p "$PG_PORT" -U bench_ro --log --log-prefix="$WORK/pgb-$i-$c/log" \
      -f "$WORK/pgbench-$i.sql" benchdb >"$WORK/pgbench-$i-$c.log" 2>&1 \
      || { cat "$WORK/pgbench-$i-$c.log" >&2; die "pgbench failed"; }
    tps=$(awk '/^tps = / { print $3 }' "$WORK/pgbench-$i-$c.log" | tail -n1)
    pg_failed=$(awk '/^number of failed transactions:/ { print $5 }' "$WORK/pgbench-$i-$c.log")
    read -r pg_p50 pg_p99 < <(pgbench_percentiles "$WORK/pgb-$i-$c"/log*)
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$c" "${m[rps]}" "${m[p50_us]}" "${m[p99_us]}" \
      "$errors" "${m[requests]}" "$tps" "$pg_p50" "$pg_p99" "${pg_failed:-0}" >>"$RESULTS"
    unset m
  done
done

kill "$SERVER_PID" 2>/dev/null || true
wait "$SERVER_PID" 2>/dev/null || true
SERVER_PID=

# ---------------------------------------------------------------- memory: the worst requests
MEMORY=$WORK/memory.tsv
: >"$MEMORY"
MEM_CONNECTIONS=${BENCH_MEMORY_CONNECTIONS-1 8 32}
MEM_ROUNDS=${BENCH_MEMORY_ROUNDS:-3}
memory_cell() {  # BIN LABEL C: one fresh server, C connections of worst-case requests
  local bin=$1 label=$2 c=$3 port pid idle base line end
  port=$(pg_free_port)
  MCP_PORT=$port MCP_POOL_MAX=$c MCP_MAX_INFLIGHT_PER_CALLER=$c "$bin" >"$WORK/memory-$label-$c.log" 2>&1 &
  pid=$!
  SERVER_PID=$pid
  end=$((SECONDS + 30))
  until curl -fsS -o /dev/null --max-time 2 "http://127.0.0.1:$port/healthz" 2>/dev/null; do
    kill -0 "$pid" 2>/dev/null || { cat "$WORK/memory-$label-$c.log" >&2; die "memory cell: the server exited"; }
    ((SECONDS < end)) || die "memory cell: no healthy /healthz within 30 s"
    sleep 0.02  # poll interval; readiness is the condition
  done
  idle=$(awk '/^VmRSS:/ { print $2 }' "/proc/$pid/status")
  curl -fsS -o /dev/null -H 'Content-Type: application/json' -H "Authorization: Bearer $TOKEN" \
    --data-binary "@$WORK/body-0.json" "http://127.0.0.1:$port/mcp" || die "memory cell: warm-up call failed"
  base=$(awk '/^VmHWM:/ { print $2 }' "/proc/$pid/status")
  say "memory, $label, c=$c: worst-case requests x $MEM_ROUNDS rounds"
  line=$(timeout -k 5 600 python3 "$ROOT/tests/worst_case.py" --port "$port" --token "$TOKEN" \
    --connections "$c" --rounds "$MEM_ROUNDS" --pid "$pid") || die "memory cell: the driver failed"
  grep -q 'attack:400=' <<<"$line" || die "memory cell: the batch attack was not refused: $line"
  if grep -qE ':(5[0-9][0-9])=' <<<"$line"; then die "memory cell: server errors: $line"; fi
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  SERVER_PID=
  line=${line#*hwm_after_kib=}
  printf '%s\t%s\t%s\t%s\t%s\n' "$label" "$c" "$idle" "$base" "${line%% *}" >>"$MEMORY"
}
for c in $MEM_CONNECTIONS; do
  memory_cell "$BIN" glibc "$c"
  if [[ -n ${MUSL_BIN:-} ]]; then memory_cell "$MUSL_BIN" musl "$c"; fi
done

# ---------------------------------------------------------------- TLS cost
TLS_RESULTS=$WORK/tls.tsv
: >"$TLS_RESULTS"
if [[ ${BENCH_TLS:-1} == 1 ]]; then
  say "TLS: certificates and ssl = on"
  CERTS=$WORK/certs
  mkdir -p "$CERTS"
  (
    cd "$CERTS"
    openssl req -x509 -new -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 30 -subj "/CN=bench CA" \
      -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign
    openssl req -new -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj "/CN=127.0.0.1"
    printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n' >server.ext
    openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 30 -sha256 \
      -extfile server.ext -out server.crt
  ) >"$WORK/openssl.log" 2>&1 || { cat "$WORK/openssl.log" >&2; die "openssl failed"; }
  chmod 755 "$CERTS"; chmod 600 "$CERTS/server.key"
  [[ $(id -u) -eq 0 ]] && chown "$PG_OSUSER" "$CERTS/server.key" "$CERTS/server.crt"
  pg_psql -d postgres -c "ALTER SYSTEM SET ssl = on" -c "ALTER SYSTEM SET ssl_cert_file = '$CERTS/server.crt'" \
    -c "ALTER SYSTEM SET ssl_key_file = '$CERTS/server.key'" -c "SELECT pg_reload_conf()" >/dev/null
  TLS_URL="$DB_URL?sslmode=verify-full&sslrootcert=$CERTS/ca.crt"
  end=$((SECONDS + 20))
  until DATABASE_URL=$TLS_URL "$BIN" check-db >/dev/null 2>&1; do
    ((SECONDS < end)) || { DATABASE_URL=$TLS_URL "$BIN" check-db >&2; die "PostgreSQL did not start TLS"; }
    sleep 0.1  # poll interval; the reload is the condition
  done
  select1_body=$WORK/body-0.json
  for mode in disable verify-full; do
    url="$DB_URL?sslmode=$mode"
    [[ $mode == verify-full ]] && url=$TLS_URL
    out=$(DATABASE_URL=$url "$BIN" check-db 50) || die "check-db ($mode) failed: $out"
    connect=$(sed -nE 's/.*connect median ([0-9.]+) ms.*/\1/p' <<<"$out")
    negotiated=$(sed -E 's/^database connection: //; s/; connect median.*//' <<<"$out")
    MCP_PORT=$(pg_free_port)
    DATABASE_URL=$url MCP_PORT=$MCP_PORT "$BIN" >"$WORK/server-$mode.log" 2>&1 &
    SERVER_PID=$!
    end=$((SECONDS + 30))
    until curl -fsS -o /dev/null --max-time 2 "http://127.0.0.1:$MCP_PORT/healthz" 2>/dev/null; do
      kill -0 "$SERVER_PID" 2>/dev/null || { cat "$WORK/server-$mode.log" >&2; die "the server exited"; }
      ((SECONDS < end)) || die "no healthy /healthz within 30 s"
      sleep 0.02
    done
    url_mcp=http://127.0.0.1:$MCP_PORT/mcp
    BENCH_BODY_FILE=$select1_body BENCH_TOKEN=$TOKEN wrk -t 2 -c 8 -d 1s -s "$HERE/tools_call.lua" "$url_mcp" >/dev/null 2>&1 || true
    row="$mode	$negotiated	$connect"
    for c in 1 8; do
      say "TLS: sslmode=$mode, SELECT 1, c=$c: wrk ${SECS}s"
      threads=$((c < 2 ? c : 2))
      BENCH_BODY_FILE=$select1_body BENCH_TOKEN=$TOKEN timeout -k 5 $((SECS + 60)) \
        wrk -t "$threads" -c "$c" -d "${SECS}s" --timeout 10s --latency -s "$HERE/tools_call.lua" "$url_mcp" \
        >"$WORK/wrk-tls-$mode-$c.log" 2>&1 || { cat "$WORK/wrk-tls-$mode-$c.log" >&2; die "wrk failed"; }
      line=$(grep '^BENCH ' "$WORK/wrk-tls-$mode-$c.log") || die "no BENCH line from wrk"
      declare -A m=()
      for kv in ${line#BENCH }; do m[${kv%%=*}]=${kv#*=}; done
      row+="	${m[rps]}	${m[p50_us]}	$((m[non2xx] + m[iserror] + m[rpcerror] + m[sockerr]))"
      unset m
    done
    printf '%s\n' "$row" >>"$TLS_RESULTS"
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=
  done
fi
# ---------------------------------------------------------------- formats, plan cost, demo rows
# start_extra NAME VAR=value…: another server (same token) on a free port; sets EXTRA_URL.
start_extra() {
  local name=$1; shift
  local port pid end
  port=$(pg_free_port)
  env "$@" MCP_PORT="$port" "$BIN" >"$WORK/server-$name.log" 2>&1 &
  pid=$!
  EXTRA_PIDS+=("$pid")
  end=$((SECONDS + 30))
  until curl -fsS -o /dev/null --max-time 2 "http://127.0.0.1:$port/healthz" 2>/dev/null; do
    kill -0 "$pid" 2>/dev/null || { cat "$WORK/server-$name.log" >&2; die "server '$name' exited during start-up"; }
    ((SECONDS < end)) || die "server '$name': no healthy /healthz within 30 s"
    sleep 0.02  # poll interval; readiness is the condition
  done
  EXTRA_URL=http://127.0.0.1:$port/mcp
}

# call_body SQL MAX_ROWS [FORMAT]: the JSON-RPC body of one tools/call query
call_body() {
  python3 -c 'import json,sys; a={"sql":sys.argv[1],"max_rows":int(sys.argv[2])}
if len(sys.argv) > 3: a["format"] = sys.argv[3]
print(json.dumps({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"query","arguments":a}}, separators=(",",":")))' "$@"
}
post() {  # post URL BODY_FILE OUT_FILE
  curl -sS -o "$3" -H 'Content-Type: application/json' -H 'Accept: application/json, text/event-stream' \
    -H "Authorization: Bearer $TOKEN" --data-binary "@$2" "$1" || die "curl $1 failed"
}
# wrk_cell URL BODY_FILE LABEL: c=1 for BENCH_SECONDS; prints "rps p50_us p99_us errors"
wrk_cell() {
  BENCH_BODY_FILE=$2 BENCH_TOKEN=$TOKEN wrk -t 1 -c 1 -d 1s -s "$HERE/tools_call.lua" "$1" >/dev/null 2>&1 || true
  say "$3: wrk ${SECS}s"
  BENCH_BODY_FILE=$2 BENCH_TOKEN=$TOKEN timeout -k 5 $((SECS + 60)) \
    wrk -t 1 -c 1 -d "${SECS}s" --timeout 10s --latency -s "$HERE/tools_call.lua" "$1" >"$WORK/wrk-extra.log" 2>&1 \
    || { cat "$WORK/wrk-extra.log" >&2; die "wrk failed"; }
  local line
  line=$(grep '^BENCH ' "$WORK/wrk-extra.log") || die "no BENCH line from wrk"
  declare -A m=()
  for kv in ${line#BENCH }; do m[${kv%%=*}]=${kv#*=}; done
  echo "${m[rps]} ${m[p50_us]} ${m[p99_us]} $((m[non2xx] + m[iserror] + m[rpcerror] + m[sockerr]))"
}

FORMATS_TSV=$WORK/formats.tsv PLAN_TSV=$WORK/plan.tsv DEMO_TSV=$WORK/demo.tsv
: >"$FORMATS_TSV"; : >"$PLAN_TSV"; : >"$DEMO_TSV"
BIG_SQL="SELECT id, vehicle_id, ts, lat, lon, speed, heading, ignition FROM bench.positions WHERE ts >= '$DAY_FROM' ORDER BY ts LIMIT 10000"
start_extra formats MCP_MAX_RESULT_BYTES=20000000
for fmt in objects arrays csv markdown; do
  call_body "$BIG_SQL" 10000 "$fmt" >"$WORK/body-fmt-$fmt.json"
  post "$EXTRA_URL" "$WORK/body-fmt-$fmt.json" "$WORK/resp-fmt-$fmt.json"
  sizes=$(python3 -c 'import json, os, sys
r = json.load(open(sys.argv[1]))["result"]
assert not r.get("isError"), r
sc = r["structuredContent"]
assert sc["row_count"] == 10000 and not sc["truncated"], (sc["row_count"], sc["truncated_reason"])
print(os.path.getsize(sys.argv[1]), len(r["content"][0]["text"].encode()))' "$WORK/resp-fmt-$fmt.json") \
    || die "format $fmt: unexpected response: $(head -c 400 "$WORK/resp-fmt-$fmt.json")"
  cell=$(wrk_cell "$EXTRA_URL" "$WORK/body-fmt-$fmt.json" "10,000 rows as $fmt")
  printf '%s %s %s\n' "$fmt" "$sizes" "$cell" | tr ' ' '\t' >>"$FORMATS_TSV"
done

start_extra plain
PLAIN_URL=$EXTRA_URL
start_extra capped MCP_MAX_PLAN_COST=1e15
CAPPED_URL=$EXTRA_URL
for i in 0 1 2; do
  for server in plain capped; do
    url=$PLAIN_URL
    [[ $server == capped ]] && url=$CAPPED_URL
    cell=$(wrk_cell "$url" "$WORK/body-$i.json" "${W_NAMES[$i]} ($server)")
    printf '%s\t%s\t%s\n' "${W_NAMES[$i]}" "$server" "${cell// /$'\t'}" >>"$PLAN_TSV"
  done
done

say "loading fixtures/demo.sql (the fleet demo) into demodb"
pg_psql -d postgres -c 'CREATE DATABASE demodb' >/dev/null
pg_psql -d demodb -f "$ROOT/fixtures/demo.sql" >"$WORK/demo.log" 2>&1 || { cat "$WORK/demo.log" >&2; die "loading fixtures/demo.sql failed"; }
pg_psql -d demodb -c 'GRANT USAGE ON SCHEMA fleet, tickets, reporting TO bench_ro' \
  -c 'GRANT SELECT ON ALL TABLES IN SCHEMA fleet, tickets, reporting TO bench_ro' >/dev/null
start_extra demo DATABASE_URL="postgres://bench_ro:$RO_PASSWORD@127.0.0.1:$PG_PORT/demodb"
for table in fleet.positions fleet.trips tickets.inc; do
  for fmt in objects arrays csv markdown; do
    call_body "SELECT * FROM $table ORDER BY 1" 10000 "$fmt" >"$WORK/body-demo.json"
    post "$EXTRA_URL" "$WORK/body-demo.json" "$WORK/resp-demo.json"
    rows=$(python3 -c 'import json, sys
r = json.load(open(sys.argv[1]))["result"]
assert not r.get("isError"), r
sc = r["structuredContent"]
print(sc["row_count"], "cut" if sc["truncated"] else "all")' "$WORK/resp-demo.json") || die "demo $table $fmt: $(head -c 400 "$WORK/resp-demo.json")"
    printf '%s\t%s\t%s\n' "$table" "$fmt" "${rows// /$'\t'}" >>"$DEMO_TSV"
  done
done
for pid in "${EXTRA_PIDS[@]}"; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
EXTRA_PIDS=()

# ---------------------------------------------------------------- catalog scaling
SCALE_RESULTS=$WORK/scale.tsv
: >"$SCALE_RESULTS"
WALK=
if [[ ${BENCH_SCALE:-1} != 0 ]]; then
  say "building the scaling schema: $TABLES tables, one of 1,600 columns"
  t0=$SECONDS
  pg_psql -d postgres -c 'CREATE DATABASE scaledb'
  pg_psql -d scaledb -v tables="$TABLES" -v ro_role=bench_ro -f "$HERE/scale.sql" >"$WORK/scale.log" 2>&1 \
    || { cat "$WORK/scale.log" >&2; die "loading bench/scale.sql failed"; }
  say "scaling schema ready in $((SECONDS - t0)) s"
  pg_psql -d postgres -q -c 'ALTER DATABASE scaledb SET pg_stat_statements.track_planning = on'
  start_extra scale DATABASE_URL="postgres://bench_ro:$RO_PASSWORD@127.0.0.1:$PG_PORT/scaledb?sslmode=disable"
  URL=$EXTRA_URL
  SERVER_PID=${EXTRA_PIDS[-1]}
  # name | tool | arguments
  S_NAMES=("list_schemas" "list_tables, first page" "describe_table, 1,600 columns" "profile_columns, 200 of 1,600 columns"
           "search_objects, one exact name" "search_objects, a word in every table")
  S_TOOLS=(list_schemas list_tables describe_table profile_columns search_objects search_objects)
  S_ARGS=('{}' '{"schema":"wide"}' '{"schema":"wide","table":"very_wide"}' '{"schema":"wide","table":"very_wide"}'
          "{\"query\":\"t_$(printf '%05d' $((TABLES / 2)))\"}" '{"query":"amount"}')
  for i in "${!S_NAMES[@]}"; do
    name=${S_NAMES[$i]}
    body_file=$WORK/scale-body-$i.json
    python3 -c 'import json,sys; print(json.dumps({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":sys.argv[1],"arguments":json.loads(sys.argv[2])}}, separators=(",",":")))' \
      "${S_TOOLS[$i]}" "${S_ARGS[$i]}" >"$body_file"
    curl -sS -o "$WORK/scale-resp-$i.json" -H 'Content-Type: application/json' -H 'Accept: application/json, text/event-stream' \
      -H "Authorization: Bearer $TOKEN" --data-binary "@$body_file" "$URL" || die "scaling cell '$name': curl failed"
    # answer size (structuredContent, compact) and whether it was paged
    size_paged=$(python3 -c '
import json, sys
res = json.load(open(sys.argv[1]))["result"]
assert not res.get("isError"), res
sc = res["structuredContent"]
print(len(json.dumps(sc, separators=(",", ":"), ensure_ascii=False).encode()), sc.get("truncated_reason") or "no")
' "$WORK/scale-resp-$i.json") || die "scaling cell '$name': unexpected response: $(head -c 600 "$WORK/scale-resp-$i.json")"
    read -r size paged <<<"$size_paged"
    response_bytes=$(stat -c %s "$WORK/scale-resp-$i.json")
    BENCH_BODY_FILE=$body_file BENCH_TOKEN=$TOKEN wrk -t 1 -c 1 -d 1s -s "$HERE/tools_call.lua" "$URL" >/dev/null 2>&1 || true
    pg_psql -d scaledb -q -c 'SELECT stats.pg_stat_statements_reset()' >/dev/null
    say "$name: wrk ${SECS}s"
    BENCH_BODY_FILE=$body_file BENCH_TOKEN=$TOKEN timeout -k 5 $((SECS + 60)) \
      wrk -t 1 -c 1 -d "${SECS}s" --timeout 10s --latency -s "$HERE/tools_call.lua" "$URL" \
      >"$WORK/wrk-scale-$i.log" 2>&1 || { cat "$WORK/wrk-scale-$i.log" >&2; die "wrk failed"; }
    line=$(grep '^BENCH ' "$WORK/wrk-scale-$i.log") || { cat "$WORK/wrk-scale-$i.log" >&2; die "no BENCH line from wrk"; }
    declare -A m=()
    for kv in ${line#BENCH }; do m[${kv%%=*}]=${kv#*=}; done
    errors=$((m[non2xx] + m[iserror] + m[rpcerror] + m[sockerr]))
    # PostgreSQL's time for the tool's own statements (not the transaction's BEGIN, settings,
    # cleanup and ROLLBACK), planning included, per call
    pg_ms=$(pg_psql -d scaledb -At -c "SELECT round((sum(total_exec_time + total_plan_time) FILTER (WHERE query !~ '^(BEGIN|ROLLBACK|SELECT set_config|SELECT pg_advisory_unlock_all)')
              / nullif(sum(calls) FILTER (WHERE query ~ '^BEGIN'), 0))::numeric, 3)
              FROM stats.pg_stat_statements WHERE userid = 'bench_ro'::regrole AND dbid = (SELECT oid FROM pg_database WHERE datname = 'scaledb')")
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$size" "$response_bytes" "$paged" "${m[rps]}" "${m[p50_us]}" \
      "${m[p99_us]}" "$errors" "${pg_ms:-nan}" >>"$SCALE_RESULTS"
    unset m
  done
  # every page of list_tables, one after another, as a client paging through would
  WALK=$(python3 -c '
import json, sys, time, urllib.request
url, token = sys.argv[1:]
cursor, pages, tables, size, started = None, 0, 0, 0, time.monotonic()
while True:
    args = {"schema": "wide", **({"cursor": cursor} if cursor else {})}
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                       "params": {"name": "list_tables", "arguments": args}}).encode()
    req = urllib.request.Request(url, body, {"Content-Type": "application/json",
                                             "Accept": "application/json, text/event-stream",
                                             "Authorization": f"Bearer {token}"})
    raw = urllib.request.urlopen(req).read()
    sc = json.loads(raw)["result"]["structuredContent"]
    pages, tables, size = pages + 1, tables + len(sc["tables"]), size + len(raw)
    cursor = sc["next_cursor"]
    if not cursor:
        break
print(f"{pages} {tables} {size} {(time.monotonic() - started) * 1000:.0f}")
' "$URL" "$TOKEN") || die "walking the pages of list_tables failed"
  kill "$SERVER_PID" 2>/dev/null || true
  wait "$SERVER_PID" 2>/dev/null || true
  SERVER_PID=
fi

# ---------------------------------------------------------------- start-up time
say "exec-to-healthy: $STARTS starts"
STARTUP=$(python3 "$HERE/startup.py" "$STARTS" "$BIN") || die "start-up measurement failed: $STARTUP"

# ---------------------------------------------------------------- SQL guard against nesting depth
say "SQL guard: time against nesting depth"
GUARD_SCALING=$(python3 "$HERE/guard_scaling.py" "$BIN") || die "guard scaling measurement failed: $GUARD_SCALING"

# ---------------------------------------------------------------- report
CPU=$(awk -F': *' '/^model name/ { print $2; exit }' /proc/cpuinfo)
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)
CMD="bench/run.sh"
[[ $SECS != 10 ]] && CMD="BENCH_SECONDS=$SECS $CMD"
GUARD_SCALING=$GUARD_SCALING FORMATS_TSV=$FORMATS_TSV PLAN_TSV=$PLAN_TSV DEMO_TSV=$DEMO_TSV python3 - "$RESULTS" "$IDLE_RSS_KB" "$PEAK_RSS_KB" "$max_c" "$RELEASE_BYTES" "$MUSL_SIZE" "$STARTUP" \
  "$(nproc)" "$CPU" "$(uname -r)" "$PG_VERSION" "$(wrk --version 2>&1 | head -n1 | awk '{print $1, $2}')" \
  "$("$BIN" --version 2>/dev/null || echo '?')" "$CMD" "$SECS" "$ROWS" "$(rustc --version 2>/dev/null || echo '?')" \
  "$(date -u +%Y-%m-%d)" "${MCP_POOL_MAX:-default}" "$LOAD_START" "$LOAD_END" "$((SECONDS - T_START))" \
  "$MEMORY" "$MEM_ROUNDS" "$TLS_RESULTS" "$SCALE_RESULTS" "$TABLES" "$WALK" \
  >"$WORK/results.md" <<'EOF'
import os, sys
(res, idle, peak, maxc, rel, musl, startup, ncpu, cpu, kernel, pgv, wrkv, binv, cmd, secs, rows, rustc,
 date, pool, load_start, load_end, elapsed, memory, mem_rounds, tls, scale, tables, walk) = sys.argv[1:]
st = dict(kv.split("=") for kv in startup.split()[1:])
out = []
w = out.append
w(f"Benchmark of `{binv}` — {date}, `{cmd}` ({secs} s per cell, {int(rows):,} rows in bench.positions)")
w("")
w(f"Machine: {ncpu} × {cpu}, Linux {kernel}, PostgreSQL {pgv} (fsync off, shared_buffers 256MB, jit off), "
  f"{wrkv}, {rustc}; server, load generator and PostgreSQL share the machine; server pool MCP_POOL_MAX={pool}. "
  f"Load average before / after: {load_start} / {load_end} (anything well above 0 means other work competed "
  f"for the {ncpu} CPUs and the numbers are noisy). Run took {elapsed} s.")
w("")
w("| workload | c | server req/s | p50 ms | p99 ms | errors | pgbench tx/s | pgbench p50 ms | pgbench p99 ms | server / pgbench |")
w("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for line in open(res):
    name, c, rps, p50, p99, errs, reqs, tps, pp50, pp99, pfail = line.rstrip("\n").split("\t")
    rps_f, tps_f = float(rps), float(tps)
    ratio = f"{100 * rps_f / tps_f:.0f} %" if tps_f > 0 else "n/a"
    err = errs if pfail in ("0", "") else f"{errs} (pgbench failed: {pfail})"
    w(f"| {name} | {c} | {rps_f:,.0f} | {int(p50) / 1000:.2f} | {int(p99) / 1000:.2f} | {err} | {tps_f:,.0f} | "
      f"{float(pp50):.2f} | {float(pp99):.2f} | {ratio} |")
w("")
w("| resource | value |")
w("|---|---|")
w(f"| idle RSS (VmRSS after start) | {int(idle) / 1024:.1f} MiB |")
w(f"| peak RSS (VmHWM, after the c={maxc} runs) | {int(peak) / 1024:.1f} MiB |")
w(f"| release binary (glibc) | {int(rel) / 1048576:.2f} MiB ({int(rel)} bytes) |")
w(f"| static binary (musl) | {musl} |")
w(f"| exec → first healthy /healthz | median {st['median_ms']} ms (min {st['min_ms']}, max {st['max_ms']}, n={st['n']}) |")
g = dict(kv.split("=") for kv in os.environ["GUARD_SCALING"].split())
w(f"| SQL guard, nesting depth {int(g['n']):,} → {8 * int(g['n']):,} (`check-sql`) | {g['small_ms']} ms → "
  f"{g['large_ms']} ms: {g['ratio']}× for 8× the depth (linear ≈ 8×, quadratic ≈ 64×) |")
w("")
cells = [line.rstrip("\n").split("\t") for line in open(memory) if line.strip()]
if cells:
    w("Memory, worst-case requests (`tests/worst_case.py`: the batch attack at the largest body, batches of "
      "answers at the budget, the longest SQL, the lexer's worst, the most JSON values, a 1 MiB name to echo; "
      f"every connection sends each {mem_rounds} times, all at once; fresh server per cell with MCP_POOL_MAX=C):")
    w("")
    w("| build | C | idle VmRSS MiB | VmHWM after one call MiB | VmHWM after the worst case MiB | per request MiB |")
    w("|---|---:|---:|---:|---:|---:|")
    worst = {}
    for label, c, idle_kib, base_kib, hwm_kib in cells:
        per = (int(hwm_kib) - int(base_kib)) / int(c) / 1024
        worst[label] = max(worst.get(label, (0, 0)), (per, int(base_kib) / 1024))
        w(f"| {label} | {c} | {int(idle_kib) / 1024:.1f} | {int(base_kib) / 1024:.1f} | {int(hwm_kib) / 1024:.1f} | {per:.2f} |")
    w("")
    for label, (per, base) in worst.items():
        w(f"{label}: worst case per request in flight **{per:.2f} MiB**; whole server at the defaults "
          f"(256 connections) ≤ {base:.1f} + 256 × {per:.2f} = {base + 256 * per:.0f} MiB.")
    w("")
w("errors = non-2xx responses + JSON results with `\"isError\":true` + JSON-RPC errors + socket errors. "
  "pgbench runs `-M extended -n -c C -j min(C,2) -T secs` with the statements the server sends per call: "
  "`BEGIN READ ONLY`; the `set_config(…, true)` settings; the query wrapped as the server wraps it "
  "(`SELECT CASE WHEN octet_length(j) <= budget THEN j END FROM (SELECT row_to_json(mcp_row.*)::text AS j FROM (<query>) "
  "AS mcp_row(cols) LIMIT max_rows+1) AS capped`); `ROLLBACK` — 4 round trips, as the server's. "
  "Latencies are per call (wrk) and per transaction (pgbench).")
tls_rows = [line.rstrip("\n").split("\t") for line in open(tls) if line.strip()]
if tls_rows:
    w("")
    w("TLS to PostgreSQL (RSA-2048 server certificate from a test CA; `check-db 50` for the connect time: "
      "TCP + TLS handshake + SCRAM; then `SELECT 1` through the pooled connections):")
    w("")
    w("| sslmode | negotiated | connect median ms | SELECT 1 c=1 req/s | p50 ms | SELECT 1 c=8 req/s | p50 ms | errors |")
    w("|---|---|---:|---:|---:|---:|---:|---:|")
    base = None
    for mode, neg, connect, rps1, p501, err1, rps8, p508, err8 in tls_rows:
        w(f"| {mode} | {neg} | {float(connect):.2f} | {float(rps1):,.0f} | {int(p501) / 1000:.2f} | "
          f"{float(rps8):,.0f} | {int(p508) / 1000:.2f} | {int(err1) + int(err8)} |")
        if base is None:
            base = (float(rps1), float(rps8))
        else:
            w("")
            w(f"TLS pool vs plaintext pool: {100 * float(rps1) / base[0]:.0f} % at c=1, "
              f"{100 * float(rps8) / base[1]:.0f} % at c=8.")
w("")
w("A 10,000-row answer in each `format` (the 1,000-row select's columns with `LIMIT 10000`, max_rows 10000, "
  "on a server with MCP_MAX_RESULT_BYTES = 20 MB so all rows come back; c=1). Response: the whole HTTP body "
  "(text blocks and structuredContent). Text: the first text block, what the model reads.")
w("")
w("| format | rows | response bytes | text bytes | text vs objects | req/s | p50 ms | p99 ms | errors |")
w("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
formats = [l.rstrip("\n").split("\t") for l in open(os.environ["FORMATS_TSV"])]
base = next((int(f[2]) for f in formats if f[0] == "objects"), 0)
for fmt, response, text, rps, p50, p99, errs in formats:
    share = f"{100 * int(text) / base:.0f} %" if base else "n/a"
    w(f"| {fmt} | 10,000 | {int(response):,} | {int(text):,} | {share} | {float(rps):,.1f} | "
      f"{int(p50) / 1000:.2f} | {int(p99) / 1000:.2f} | {errs} |")
w("")
w("MCP_MAX_PLAN_COST's extra round trip (an `EXPLAIN` of the statement as it will run): the same calls on a "
  "server without it and on one with MCP_MAX_PLAN_COST = 1e15 (never refuses), c=1.")
w("")
w("| workload | MCP_MAX_PLAN_COST | req/s | p50 ms | p99 ms | errors |")
w("|---|---|---:|---:|---:|---:|")
for name, server, rps, p50, p99, errs in (l.rstrip("\n").split("\t") for l in open(os.environ["PLAN_TSV"])):
    w(f"| {name} | {'off' if server == 'plain' else '1e15'} | {float(rps):,.0f} | {int(p50) / 1000:.2f} | "
      f"{int(p99) / 1000:.2f} | {errs} |")
w("")
w("Rows of the fleet demo (fixtures/demo.sql) in one answer under the default 150 KB budget "
  "(`SELECT * FROM <table> ORDER BY 1`, max_rows 10000):")
w("")
demo = [l.rstrip("\n").split("\t") for l in open(os.environ["DEMO_TSV"])]
w("| table | objects | arrays | csv | markdown |")
w("|---|---:|---:|---:|---:|")
for t in dict.fromkeys(d[0] for d in demo):
    n = {fmt: int(rows) for table, fmt, rows, _ in demo if table == t}
    whole = {fmt for table, fmt, _, cut in demo if table == t and cut == "all"}
    def cell(f):
        ratio = "" if f == "objects" else f" ({n[f] / n['objects']:.2f}×)"
        return f"{n[f]:,}{ratio}" + (" (the whole table)" if f in whole else "")
    cells = [cell(f) for f in ("objects", "arrays", "csv", "markdown")]
    w(f"| {t} | " + " | ".join(cells) + " |")
scale_lines = [line.rstrip("\n").split("\t") for line in open(scale) if line.strip()]
if scale_lines:
    w("")
    w(f"Catalog scaling: {int(tables):,} tables in one schema and a table of 1,600 columns (bench/scale.sql), "
      f"c=1, {secs} s per cell. PostgreSQL ms = planning + execution of the tool's own catalog statements per "
      "call (pg_stat_statements over the same calls; the transaction's BEGIN, settings, cleanup and ROLLBACK "
      "left out): the physical limit of the answer.")
    w("")
    w("| catalog call | answer bytes | response bytes | paged | server req/s | p50 ms | p99 ms | errors | PostgreSQL ms | server p50 / PostgreSQL |")
    w("|---|---:|---:|---|---:|---:|---:|---:|---:|---:|")
    for name, size, resp, paged, rps, p50, p99, errs, pg_ms in scale_lines:
        p50_ms = int(p50) / 1000
        known = pg_ms not in ("", "nan") and float(pg_ms) > 0
        ratio = f"{p50_ms / float(pg_ms):.1f}×" if known else "n/a"
        pg_text = f"{float(pg_ms):.2f}" if known else "n/a"
        w(f"| {name} | {int(size):,} | {int(resp):,} | {paged} | {float(rps):,.0f} | {p50_ms:.2f} | {int(p99) / 1000:.2f} | "
          f"{errs} | {pg_text} | {ratio} |")
    if walk:
        pages, count, size, ms = walk.split()
        w("")
        w(f"Every page of list_tables on that schema, one call after another: {int(pages)} pages, {int(count):,} tables, "
          f"{int(size):,} response bytes in {int(ms):,} ms.")
print("\n".join(out))
EOF
cat "$WORK/results.md"
mkdir -p "$(dirname "$OUT")"
cp "$WORK/results.md" "$OUT"
say "saved $OUT"
