# shellcheck shell=bash
# Throwaway PostgreSQL cluster for tests and benchmarks. Source it, then:
#   pg_start DIR [extra postgres -c options...]   -> sets PG_PORT, PG_SOCK, PG_DATA, PG_OSUSER, PG_VERSION
#   pg_psql [psql args...]                        -> psql as the superuser `postgres` over the socket
#   pg_stop                                       -> immediate shutdown (idempotent)
# Runs the server as an unprivileged OS user when we are root (PostgreSQL refuses root):
# the Debian `postgres` user, falling back to `nobody`. Listens on 127.0.0.1 only.
# TCP logins use scram-sha-256 (so the server under test really authenticates), the
# Unix socket is trust (for setup only).

PG_BIN=${PG_BIN:-}
if [[ -z $PG_BIN ]]; then
  for d in /usr/lib/postgresql/15/bin /usr/lib/postgresql/*/bin; do
    if [[ -x $d/initdb ]]; then PG_BIN=$d; break; fi
  done
fi
PG_DATA= PG_SOCK= PG_PORT= PG_OSUSER= PG_VERSION= PG_STARTED=

pg_free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

pg_as_user() {
  if [[ $(id -u) -eq 0 ]]; then
    runuser -u "$PG_OSUSER" -- "$@"
  else
    "$@"
  fi
}

pg_start() {
  local dir=$1; shift
  [[ -n $PG_BIN && -x $PG_BIN/initdb ]] || { echo "pg.sh: PostgreSQL binaries not found (set PG_BIN)" >&2; return 1; }
  if [[ $(id -u) -eq 0 ]]; then
    if id postgres >/dev/null 2>&1; then PG_OSUSER=postgres; else PG_OSUSER=nobody; fi
  else
    PG_OSUSER=$(id -un)
  fi
  mkdir -p "$dir"
  chmod 755 "$dir"
  PG_DATA=$dir/data
  PG_SOCK=$dir/sock
  mkdir -p "$PG_SOCK"
  if [[ $(id -u) -eq 0 ]]; then
    chown "$PG_OSUSER" "$dir" "$PG_SOCK"
    runuser -u "$PG_OSUSER" -- test -w "$dir" \
      || { echo "pg.sh: $PG_OSUSER cannot reach $dir (make its parent directories o+x)" >&2; return 1; }
  fi
  PG_PORT=$(pg_free_port)
  pg_as_user "$PG_BIN/initdb" -D "$PG_DATA" -U postgres -E UTF8 --locale=C.UTF-8 --no-sync \
    --auth-local=trust --auth-host=scram-sha-256 >"$dir/initdb.log" 2>&1 \
    || { cat "$dir/initdb.log" >&2; return 1; }
  local opts="-c listen_addresses=127.0.0.1 -p $PG_PORT -k $PG_SOCK -c logging_collector=off"
  local o
  for o in "$@"; do opts+=" -c $o"; done
  # pg_ctl -w polls until the server accepts connections (bounded by -t).
  pg_as_user "$PG_BIN/pg_ctl" -D "$PG_DATA" -l "$dir/postgres.log" -o "$opts" -w -t 60 start >"$dir/pg_ctl.log" 2>&1 \
    || { cat "$dir/pg_ctl.log" "$dir/postgres.log" >&2; return 1; }
  PG_STARTED=1
  PG_VERSION=$(pg_psql -Atc 'SHOW server_version')
}

pg_psql() {
  "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$PG_SOCK" -p "$PG_PORT" -U postgres "$@"
}

pg_stop() {
  if [[ -n $PG_STARTED ]]; then
    pg_as_user "$PG_BIN/pg_ctl" -D "$PG_DATA" -m immediate -w -t 30 stop >/dev/null 2>&1 || true
    PG_STARTED=
  fi
}
