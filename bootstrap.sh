#!/usr/bin/env bash
# bootstrap.sh — set up the read-only database role for analytics-mcp, or run a local demo.
#
#   bootstrap.sh role ...   create/refresh the least-privilege role (role.sql) on a real DB
#   bootstrap.sh demo ...   one-command local demo: throwaway PostgreSQL + fixtures + server
#
# Run `bootstrap.sh --help` for the details. Both commands are safe to re-run.
#
# Secrets:
#   * The role password lives in a 0600 file and is reused on later runs. It is never put on
#     a command line, which `ps` would show. psql gets it on stdin as `\set ro_pw '...'`,
#     ahead of role.sql, and role.sql keeps it out of echo and statement logs.
#   * Nothing here prints the password. DATABASE_URL is shown masked.
#   * The admin DSN you pass with --dsn is visible in `ps` like any psql argument. Keep the
#     admin password in ~/.pgpass or PGPASSWORD rather than in the DSN.
set -euo pipefail
umask 077

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PROG="${0##*/}"
readonly SCRIPT_DIR PROG
ROLE_SQL="${SCRIPT_DIR}/role.sql"
DEMO_SQL="${SCRIPT_DIR}/fixtures/demo.sql"

# ------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------
say()  { printf '%s\n' "$*" >&2; }
die()  { printf '%s: error: %s\n' "$PROG" "$*" >&2; exit 1; }
usage_error() { printf '%s: %s (see %s --help)\n' "$PROG" "$*" "$PROG" >&2; exit 2; }

usage() {
  cat <<EOF
Usage:
  $PROG role  [connection] --schemas LIST [options]
  $PROG demo  [--port 8892] [--pg-port N]
  $PROG --help

role: create or refresh the least-privilege PostgreSQL role that analytics-mcp connects as
  Applies role.sql (next to this script) as an admin user. Idempotent: re-running converges
  grants and default privileges and re-applies the password from the password file.

  Connection (pick one):
    --dsn DSN              admin libpq DSN or URL, e.g. "host=/var/run/postgresql dbname=app
                           user=postgres". Defaults to \$ADMIN_DSN. Keep the admin password in
                           ~/.pgpass or PGPASSWORD: anything in the DSN is visible in ps.
    --container NAME       run psql inside a Docker container (docker exec -i NAME psql ...)
      --db DB              database inside the container (default: postgres)
      --admin-user USER    admin user inside the container (default: postgres)

  What to grant:
    --schemas a,b          (required) schemas analysts may read: USAGE, SELECT on all tables,
                           views and materialized views, and EXECUTE on functions
    --owners x,y           roles that create objects in those schemas. Future objects they
                           create become readable automatically (ALTER DEFAULT PRIVILEGES
                           FOR ROLE x). Missing roles are skipped with a NOTICE. Include
                           every role that runs your migrations, or new tables will not be
                           readable.
    --role NAME            role to create/refresh (default: analytics_ro)
    --conn-limit N         CONNECTION LIMIT (default: 20, must be > MCP_POOL_MAX x instances)
    --revoke-public-temp   also REVOKE TEMPORARY ON DATABASE FROM PUBLIC (affects all roles)
    --revoke-public-create also REVOKE CREATE FROM PUBLIC on the listed schemas and public

  Personal data and per-analyst identities:
    --withhold s.t.c,...   columns analysts must not read (e.g. fleet.drivers.phone): their
                           tables get column-level SELECT on every other column and no
                           table-level SELECT (partitions and children too). Sticky: a later
                           run without --withhold keeps them withheld. Columns added later to
                           such a table are NOT readable until asked (see next option)
    --grant-new-columns    make every column of the --withhold tables readable except the
                           listed ones (the way to let analysts read columns added later)
    --analysts a,b         one NOLOGIN role per analyst (<prefix><name>, e.g. analyst_alice)
                           holding the read grants; the login role becomes a NOINHERIT member
                           with no grants of its own. Serve with MCP_ANALYST_ROLES=analyst_{name}
                           so every call runs as the analyst's role (their own grants and
                           row-level security policies apply). Names: letters, digits . _ - @
    --analyst-prefix P     prefix of the analysts' roles (default: analyst_)

  Password:
    --pw-file PATH         where the role password lives (default: ~/.analytics_ro.pw, or
                           ~/.<role>.pw for another --role). Created on first run with a
                           random 43-character URL-safe password, mode 0600. Reused on later
                           runs. Refused if it is group/world accessible, not owned by you, or
                           a symlink. To use your own password, write it to the file first
                           (characters A-Z a-z 0-9 . _ ~ -, at least 16).
    --rotate               generate a new password, apply it, then replace the file. The
                           server keeps working until it reconnects with the old password,
                           so update DATABASE_URL and restart it (with MCP_DATABASE_PASSWORD_FILE
                           pointing at the password file, no restart is needed).

  For the DATABASE_URL printed at the end (the password is masked):
    --db-host HOST         host the server will use (default: the container name with
                           --container, else the server address psql connected to, else
                           localhost)
    --db-port PORT         port (default: 5432 with --container, else the server's port)
    --db-name NAME         database (default: the database role.sql ran in)

  Example:
    $PROG role --container timescale_db --db fleet --schemas reporting,tracksolid,tickets \\
               --owners tracksolid_owner,postgres
    $PROG role --dsn "host=127.0.0.1 dbname=fleet user=postgres" --schemas reporting

demo: one-command local demo (needs PostgreSQL server binaries, and cargo or a built binary)
  Starts a throwaway PostgreSQL in a temp dir on 127.0.0.1 (as the unprivileged 'postgres' or
  'nobody' OS user when run as root) and loads fixtures/demo.sql (a fictional fleet
  dataset). It then applies role.sql through the 'role' path above (schemas
  fleet,tickets,reporting, owner fleet_owner), builds the server with
  'cargo build --release --locked' unless ANALYTICS_MCP_BIN points to a binary, starts it
  with a random bearer token and prints the 'claude mcp add' line to paste.
  Ctrl-C stops the server and PostgreSQL and deletes the temp dir.
    --port N               MCP port on 127.0.0.1 (default: 8892)
    --pg-port N            PostgreSQL port on 127.0.0.1 (default: first free port from 55432)

  Environment: ANALYTICS_MCP_BIN (server binary to use instead of building), PG_BINDIR
  (directory with initdb/pg_ctl/postgres, default: from PATH or /usr/lib/postgresql/*/bin).

Exit status: 0 success, 1 failure, 2 usage error.
EOF
}

# True if something accepts TCP connections on 127.0.0.1:$1. Uses bash's /dev/tcp so it
# needs no extra tools, with a timeout so a filtered port cannot hang us.
# shellcheck disable=SC2016  # the inner bash expands $0 (the port) on purpose
port_in_use() {
  local port="$1"
  if command -v timeout >/dev/null 2>&1; then
    timeout 2 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$0"' "$port" 2>/dev/null
  else
    bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$0"' "$port" 2>/dev/null
  fi
}

valid_port() { [[ "$1" =~ ^[0-9]+$ ]] && (( 10#$1 >= 1 && 10#$1 <= 65535 )); }

# Comma list of identifiers: letters, digits, _ and $; spaces around commas are dropped.
normalise_list() {
  local s="${1// /}"
  [[ -z "$s" || "$s" =~ ^[A-Za-z_][A-Za-z0-9_\$]*(,[A-Za-z_][A-Za-z0-9_\$]*)*$ ]] || return 1
  printf '%s' "$s"
}

# 32 random bytes, base64url without padding: 43 characters from [A-Za-z0-9_-]. Safe to
# put in a URL without escaping, and in a psql single-quoted string without quoting.
random_secret() {
  local s
  s="$(head -c 32 /dev/urandom | base64 | tr -d '\n=' | tr '+/' '-_')"
  [[ ${#s} -ge 40 ]] || die "could not read /dev/urandom"
  printf '%s' "$s"
}

file_mode() { stat -c '%a' "$1" 2>/dev/null || stat -f '%Lp' "$1"; }

# ------------------------------------------------------------------------------------------
# role
# ------------------------------------------------------------------------------------------
# Options are kept in globals so `demo` can call cmd_role's pieces directly.
R_DSN="${ADMIN_DSN:-}"; R_DSN_GIVEN=0; R_CONTAINER=""; R_DB="postgres"; R_ADMIN_USER="postgres"
R_SCHEMAS=""; R_OWNERS=""; R_ROLE="analytics_ro"; R_PW_FILE=""; R_CONN_LIMIT="20"
R_REVOKE_TEMP="off"; R_REVOKE_CREATE="off"; R_ROTATE=0
R_WITHHOLD=""; R_GRANT_NEW="off"; R_ANALYSTS=""; R_ANALYST_PREFIX="analyst_"
R_DB_HOST=""; R_DB_PORT=""; R_DB_NAME=""
PW_NEW_FILE=""   # temp file of a not-yet-applied password; removed on failure
PW=""            # the password while it is being applied; cleared right after
IN_DEMO=0        # set by cmd_demo: its EXIT trap already covers cleanup_role

# Run psql as the admin (via DSN or inside the container). Extra args are passed through;
# stdin is passed through.
admin_psql() {
  if [[ -n "$R_CONTAINER" ]]; then
    docker exec -i "$R_CONTAINER" psql -X -q -U "$R_ADMIN_USER" -d "$R_DB" "$@"
  else
    psql -X -q -d "$R_DSN" "$@"
  fi
}

# Validate an existing password file. Echo nothing; die with a reason.
check_pw_file() {
  local f="$1" mode
  [[ ! -L "$f" ]] || die "password file $f is a symlink; refusing (replace it with a regular file)"
  [[ -f "$f" ]]   || die "password file $f is not a regular file"
  [[ -O "$f" ]]   || die "password file $f is not owned by $(id -un); refusing"
  mode="$(file_mode "$f")" || die "cannot stat $f"
  if (( (8#$mode & 8#077) != 0 )); then
    die "password file $f has mode $mode; it must not be group/world accessible (chmod 600 $f)"
  fi
}

# Read the password (first line) into the global PW and validate its alphabet, which is
# what lets it sit unescaped in a URL and in psql's single quotes.
read_pw_file() {
  local f="$1"
  PW=""
  IFS= read -r PW <"$f" || [[ -n "$PW" ]] || die "password file $f is empty"
  PW="${PW%$'\r'}"
  if [[ ! "$PW" =~ ^[A-Za-z0-9._~-]{16,}$ ]]; then
    PW=""
    die "password in $f must be >= 16 characters from A-Z a-z 0-9 . _ ~ - (URL-safe); not printing it"
  fi
}

cleanup_role() {
  if [[ -n "$PW_NEW_FILE" && -e "$PW_NEW_FILE" ]]; then rm -f -- "$PW_NEW_FILE"; fi
}

parse_role_args() {
  while (($#)); do
    case "$1" in
      --dsn)            R_DSN="${2-}"; R_DSN_GIVEN=1; shift 2 || usage_error "--dsn needs a value" ;;
      --container)      R_CONTAINER="${2-}"; shift 2 || usage_error "--container needs a value" ;;
      --db)             R_DB="${2-}"; shift 2 || usage_error "--db needs a value" ;;
      --admin-user)     R_ADMIN_USER="${2-}"; shift 2 || usage_error "--admin-user needs a value" ;;
      --schemas)        R_SCHEMAS="${2-}"; shift 2 || usage_error "--schemas needs a value" ;;
      --owners)         R_OWNERS="${2-}"; shift 2 || usage_error "--owners needs a value" ;;
      --role)           R_ROLE="${2-}"; shift 2 || usage_error "--role needs a value" ;;
      --pw-file)        R_PW_FILE="${2-}"; shift 2 || usage_error "--pw-file needs a value" ;;
      --conn-limit)     R_CONN_LIMIT="${2-}"; shift 2 || usage_error "--conn-limit needs a value" ;;
      --db-host)        R_DB_HOST="${2-}"; shift 2 || usage_error "--db-host needs a value" ;;
      --db-port)        R_DB_PORT="${2-}"; shift 2 || usage_error "--db-port needs a value" ;;
      --db-name)        R_DB_NAME="${2-}"; shift 2 || usage_error "--db-name needs a value" ;;
      --withhold)       R_WITHHOLD="${2-}"; shift 2 || usage_error "--withhold needs a value" ;;
      --analysts)       R_ANALYSTS="${2-}"; shift 2 || usage_error "--analysts needs a value" ;;
      --analyst-prefix) R_ANALYST_PREFIX="${2-}"; shift 2 || usage_error "--analyst-prefix needs a value" ;;
      --grant-new-columns)    R_GRANT_NEW=on; shift ;;
      --revoke-public-temp)   R_REVOKE_TEMP=on; shift ;;
      --revoke-public-create) R_REVOKE_CREATE=on; shift ;;
      --rotate)         R_ROTATE=1; shift ;;
      -h|--help)        usage; exit 0 ;;
      *)                usage_error "role: unknown argument '$1'" ;;
    esac
  done
}

validate_role_args() {
  if [[ -n "$R_CONTAINER" && "$R_DSN_GIVEN" == 1 ]]; then
    usage_error "role: give either --dsn or --container, not both"
  fi
  if [[ -n "$R_CONTAINER" ]]; then
    R_DSN=""   # --container wins over an inherited $ADMIN_DSN
    command -v docker >/dev/null 2>&1 || die "docker not found (needed for --container)"
  else
    [[ -n "$R_DSN" ]] || usage_error "role: --dsn DSN (or \$ADMIN_DSN) or --container NAME is required"
    command -v psql >/dev/null 2>&1 || die "psql not found on PATH"
  fi
  [[ -n "$R_SCHEMAS" ]] || usage_error "role: --schemas is required"
  R_SCHEMAS="$(normalise_list "$R_SCHEMAS")" || usage_error "role: --schemas must be a comma list of plain identifiers"
  R_OWNERS="$(normalise_list "$R_OWNERS")"   || usage_error "role: --owners must be a comma list of plain identifiers"
  local ident='[A-Za-z_][A-Za-z0-9_$]*'
  R_WITHHOLD="${R_WITHHOLD// /}"
  [[ -z "$R_WITHHOLD" || "$R_WITHHOLD" =~ ^$ident\.$ident\.$ident(,$ident\.$ident\.$ident)*$ ]] \
    || usage_error "role: --withhold must be a comma list of schema.table.column (plain identifiers)"
  R_ANALYSTS="${R_ANALYSTS// /}"
  [[ -z "$R_ANALYSTS" || "$R_ANALYSTS" =~ ^[A-Za-z0-9._@-]+(,[A-Za-z0-9._@-]+)*$ ]] \
    || usage_error "role: --analysts must be a comma list of names (letters, digits . _ - @)"
  [[ "$R_ANALYST_PREFIX" =~ ^[a-z_][a-z0-9_]{0,30}$ ]] || usage_error "role: --analyst-prefix must match [a-z_][a-z0-9_]*"
  # The role name goes into DATABASE_URL unescaped, so keep it to a plain lowercase identifier.
  [[ "$R_ROLE" =~ ^[a-z_][a-z0-9_]{0,62}$ ]] || usage_error "role: --role must match [a-z_][a-z0-9_]*"
  [[ "$R_CONN_LIMIT" =~ ^(-1|[0-9]+)$ ]]     || usage_error "role: --conn-limit must be an integer >= -1"
  [[ -z "$R_DB_PORT" ]] || valid_port "$R_DB_PORT" || usage_error "role: --db-port must be 1-65535"
  [[ -f "$ROLE_SQL" ]] || die "role.sql not found next to this script ($ROLE_SQL)"
  if [[ -z "$R_PW_FILE" ]]; then
    [[ -n "${HOME:-}" ]] || die "HOME is not set; pass --pw-file"
    R_PW_FILE="$HOME/.${R_ROLE}.pw"
  fi
}

# Apply role.sql with the password from $1 (a file). The password reaches psql only on stdin.
apply_role_sql() {
  local pwfile="$1" rc=0
  read_pw_file "$pwfile"
  # The status is propagated by hand: this runs as `apply_role_sql ... || die`, and in that
  # context `set -e` is off inside the function.
  {
    # ECHO none first, so even a psql configured to echo input never shows the next line.
    # The alphabet was checked by read_pw_file: no quote or backslash can break out.
    printf '\\set ECHO none\n'
    printf "\\\\set ro_pw '%s'\n" "$PW"
    cat -- "$ROLE_SQL"
  } | admin_psql -v ON_ERROR_STOP=1 \
        -v "ro_role=$R_ROLE" -v "schemas=$R_SCHEMAS" -v "owners=$R_OWNERS" \
        -v "conn_limit=$R_CONN_LIMIT" -v "revoke_public_temp=$R_REVOKE_TEMP" \
        -v "revoke_public_create=$R_REVOKE_CREATE" -v "withhold=$R_WITHHOLD" \
        -v "grant_new_columns=$R_GRANT_NEW" -v "analysts=$R_ANALYSTS" \
        -v "analyst_prefix=$R_ANALYST_PREFIX" -f - || rc=$?
  PW=""
  return "$rc"
}

cmd_role() {
  validate_role_args
  ((IN_DEMO)) || trap cleanup_role EXIT
  local pw_dir target secret
  pw_dir="$(dirname -- "$R_PW_FILE")"
  [[ -d "$pw_dir" ]] || die "directory $pw_dir does not exist"

  # A new password is written to a temp file next to the target, applied, and only then
  # moved into place. If applying fails, the old file (and password) stay as they were.
  if [[ -e "$R_PW_FILE" || -L "$R_PW_FILE" ]]; then
    check_pw_file "$R_PW_FILE"
  fi
  if [[ ! -s "$R_PW_FILE" || "$R_ROTATE" == 1 ]]; then
    PW_NEW_FILE="$(mktemp "${R_PW_FILE}.new.XXXXXX")"
    chmod 600 "$PW_NEW_FILE"
    secret="$(random_secret)"   # a failure here stops the script (set -e)
    printf '%s\n' "$secret" >"$PW_NEW_FILE"
    secret=""
    target="$PW_NEW_FILE"
    if [[ "$R_ROTATE" == 1 && -s "$R_PW_FILE" ]]; then
      say "Rotating the password of role $R_ROLE (new password goes to $R_PW_FILE)"
    else
      say "Generating a new password for role $R_ROLE -> $R_PW_FILE (mode 0600)"
    fi
  else
    say "Reusing the existing password for role $R_ROLE from $R_PW_FILE"
    target="$R_PW_FILE"
  fi

  if [[ -n "$R_CONTAINER" ]]; then
    say "Applying role.sql in container $R_CONTAINER (db $R_DB, as $R_ADMIN_USER) ..."
  else
    say "Applying role.sql ..."
  fi
  apply_role_sql "$target" || die "role.sql failed; nothing was changed (it runs in one transaction)"

  if [[ -n "$PW_NEW_FILE" ]]; then
    mv -f -- "$PW_NEW_FILE" "$R_PW_FILE"
    PW_NEW_FILE=""
  fi
  chmod 600 "$R_PW_FILE"

  # Work out host/port/db for the printed URL.
  local info db host port
  info="$(admin_psql -At -F ' ' -c "SELECT current_database(), coalesce(host(inet_server_addr()), ''), current_setting('port')" </dev/null)" \
    || die "role applied, but could not query the connection details"
  read -r db host port <<<"$info"
  if [[ -z "$port" ]]; then port="$host"; host=""; fi   # unix-socket connection: no address
  if [[ -n "$R_CONTAINER" ]]; then host="$R_CONTAINER"; port=5432; fi
  [[ -n "$host" ]] || host=localhost
  if [[ "$host" == *:* && "$host" != \[* ]]; then host="[$host]"; fi   # IPv6 literal
  host="${R_DB_HOST:-$host}"; port="${R_DB_PORT:-$port}"; db="${R_DB_NAME:-$db}"

  say ""
  say "Role $R_ROLE is ready (read-only on: ${R_SCHEMAS//,/, })."
  if [[ -n "$R_WITHHOLD" ]]; then say "Withheld (no analyst can read them): ${R_WITHHOLD//,/, }"; fi
  if [[ -n "$R_ANALYSTS" ]]; then
    say "Analysts read as their own roles (${R_ANALYST_PREFIX}<name>): ${R_ANALYSTS//,/, }"
    say "Serve with: MCP_ANALYST_ROLES=${R_ANALYST_PREFIX}{name}"
  fi
  say "Password file: $R_PW_FILE (mode 0600; never printed)"
  printf 'DATABASE_URL=postgresql://%s:****@%s:%s/%s\n' "$R_ROLE" "$host" "$port" "$db"
  if ((IN_DEMO == 0)); then
    say "Or keep the password out of the environment (read at each connect, so --rotate needs no restart):"
    say "  DATABASE_URL=postgresql://$R_ROLE@$host:$port/$db MCP_DATABASE_PASSWORD_FILE=$R_PW_FILE"
    say "Build the real value without echoing it, e.g.:"
    say "  DATABASE_URL=\"postgresql://$R_ROLE:\$(cat $R_PW_FILE)@$host:$port/$db\""
  fi
  if ((IN_DEMO == 0)); then trap - EXIT; fi
  cleanup_role
}

# ------------------------------------------------------------------------------------------
# demo
# ------------------------------------------------------------------------------------------
D_PORT=8892; D_PG_PORT=""
TMP_ROOT=""; PG_OS_USER=""; PG_DATA=""; PG_SOCK=""; PG_LOG=""; PG_STARTED=0
SERVER_PID=""; TAIL_PID=""; CLEANED=0
PG_BINDIR="${PG_BINDIR:-}"
readonly DEMO_DB=analytics_demo

find_pg_bindir() {
  if [[ -n "$PG_BINDIR" ]]; then
    [[ -x "$PG_BINDIR/initdb" && -x "$PG_BINDIR/pg_ctl" ]] || die "PG_BINDIR=$PG_BINDIR has no initdb/pg_ctl"
    return
  fi
  local d dirs=()
  if command -v pg_ctl >/dev/null 2>&1; then
    d="$(dirname -- "$(readlink -f -- "$(command -v pg_ctl)")")"
    if [[ -x "$d/initdb" && -x "$d/postgres" ]]; then PG_BINDIR="$d"; return; fi
  fi
  # Debian/Ubuntu keep the server binaries off PATH. Pick the newest version.
  mapfile -t dirs < <(printf '%s\n' /usr/lib/postgresql/*/bin | sort -t/ -k4,4 -n -r)
  for d in "${dirs[@]}"; do
    if [[ -x "$d/initdb" && -x "$d/pg_ctl" && -x "$d/postgres" ]]; then PG_BINDIR="$d"; return; fi
  done
  die "PostgreSQL server binaries (initdb, pg_ctl, postgres) not found; install postgresql or set PG_BINDIR"
}

# Run a command as the OS user that owns the cluster. PostgreSQL refuses to run as root,
# so when we are root that user is 'postgres' (or 'nobody').
as_pg() {
  if [[ -z "$PG_OS_USER" ]]; then
    "$@"
  elif command -v runuser >/dev/null 2>&1; then
    runuser -u "$PG_OS_USER" -- "$@"
  else
    su -s /bin/sh "$PG_OS_USER" -c "$(printf '%q ' "$@")"
  fi
}

postmaster_pid() {
  [[ -n "$PG_DATA" && -r "$PG_DATA/postmaster.pid" ]] || return 1
  head -n 1 "$PG_DATA/postmaster.pid"
}

# Stop everything the demo started, each by its own PID, and remove the temp dir. Runs
# exactly once, from the EXIT trap (INT/TERM turn into an exit, which fires it).
cleanup_demo() {
  local rc=$? i pid
  ((CLEANED)) && return
  CLEANED=1
  trap - INT TERM HUP
  if [[ -n "$TAIL_PID" ]]; then kill "$TAIL_PID" 2>/dev/null || true; wait "$TAIL_PID" 2>/dev/null || true; fi
  if [[ -n "$SERVER_PID" ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
    say "Stopping analytics-mcp (pid $SERVER_PID) ..."
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.2; done
    if kill -0 "$SERVER_PID" 2>/dev/null; then kill -KILL "$SERVER_PID" 2>/dev/null || true; fi
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  if ((PG_STARTED)); then
    say "Stopping PostgreSQL ..."
    pid="$(postmaster_pid || true)"
    (cd / && as_pg "$PG_BINDIR/pg_ctl" -D "$PG_DATA" -m fast -w -t 30 stop >/dev/null 2>&1) || true
    if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
      kill -QUIT "$pid" 2>/dev/null || true   # immediate shutdown of our own postmaster
      sleep 1
    fi
  fi
  cleanup_role
  if [[ -n "$TMP_ROOT" && -d "$TMP_ROOT" ]]; then rm -rf -- "$TMP_ROOT"; fi
  say "Demo stopped; nothing left running."
  exit "$rc"
}

server_log_tail() {
  if [[ -s "$TMP_ROOT/server.log" ]]; then
    say "---- last lines of the server log ----"
    tail -n 30 "$TMP_ROOT/server.log" >&2
    say "--------------------------------------"
  fi
}

# GET http://127.0.0.1:$1$2; prints the body and returns 0 for HTTP 200. Uses curl when
# present, otherwise bash's /dev/tcp.
http_get() {
  local port="$1" path="$2" status line body=""
  if command -v curl >/dev/null 2>&1; then
    curl -fsS --max-time 2 "http://127.0.0.1:${port}${path}" 2>/dev/null
    return
  fi
  exec 3<>"/dev/tcp/127.0.0.1/${port}" || return 1
  printf 'GET %s HTTP/1.1\r\nHost: 127.0.0.1:%s\r\nConnection: close\r\n\r\n' "$path" "$port" >&3
  IFS= read -r -t 2 status <&3 || { exec 3<&-; return 1; }
  while IFS= read -r -t 2 line <&3; do [[ "$line" == $'\r' || -z "$line" ]] && break; done
  while IFS= read -r -t 2 line <&3; do body+="$line"; done
  exec 3<&-
  printf '%s' "$body"
  [[ "$status" == "HTTP/1."[01]" 200"* ]]
}

resolve_server_bin() {
  if [[ -n "${ANALYTICS_MCP_BIN:-}" ]]; then
    [[ -x "$ANALYTICS_MCP_BIN" && -f "$ANALYTICS_MCP_BIN" ]] || die "ANALYTICS_MCP_BIN=$ANALYTICS_MCP_BIN is not an executable file"
    SERVER_BIN="$ANALYTICS_MCP_BIN"
    return
  fi
  SERVER_BIN="$SCRIPT_DIR/target/release/analytics-mcp"
  if command -v cargo >/dev/null 2>&1; then
    say "Building analytics-mcp (cargo build --release --locked; fast if up to date) ..."
    (cd "$SCRIPT_DIR" && cargo build --release --locked) || die "cargo build failed"
  elif [[ -x "$SERVER_BIN" ]]; then
    say "cargo not found; using the existing $SERVER_BIN (it may be stale)"
  else
    die "cargo not found and no built binary at $SERVER_BIN; install Rust or set ANALYTICS_MCP_BIN"
  fi
  [[ -x "$SERVER_BIN" ]] || die "build finished but $SERVER_BIN is missing"
}

# First port >= $1 (within 200) that nothing listens on and that is not the MCP port.
next_free_port() {
  local p
  for ((p = $1; p < $1 + 200 && p <= 65535; p++)); do
    [[ "$p" == "$D_PORT" ]] && continue
    if ! port_in_use "$p"; then printf '%s' "$p"; return 0; fi
  done
  return 1
}

cmd_demo() {
  local pg_port_auto=0
  while (($#)); do
    case "$1" in
      --port)    D_PORT="${2-}"; shift 2 || usage_error "--port needs a value" ;;
      --pg-port) D_PG_PORT="${2-}"; shift 2 || usage_error "--pg-port needs a value" ;;
      -h|--help) usage; exit 0 ;;
      *)         usage_error "demo: unknown argument '$1'" ;;
    esac
  done
  valid_port "$D_PORT" || usage_error "demo: --port must be 1-65535"
  [[ -z "$D_PG_PORT" ]] || valid_port "$D_PG_PORT" || usage_error "demo: --pg-port must be 1-65535"
  [[ -f "$DEMO_SQL" ]] || die "fixtures/demo.sql not found next to this script"
  [[ -f "$ROLE_SQL" ]] || die "role.sql not found next to this script"
  command -v psql >/dev/null 2>&1 || die "psql not found on PATH"
  find_pg_bindir

  # Ports first: fail before building or starting anything.
  if port_in_use "$D_PORT"; then
    die "port $D_PORT on 127.0.0.1 is already in use (another analytics-mcp or demo?). Stop it or pass --port N."
  fi
  if [[ -n "$D_PG_PORT" ]]; then
    if port_in_use "$D_PG_PORT"; then
      die "PostgreSQL port $D_PG_PORT on 127.0.0.1 is already in use. Pass another --pg-port, or omit it to pick a free one."
    fi
  else
    pg_port_auto=1
    D_PG_PORT="$(next_free_port 55432)" || die "no free port in 55432-55631 for PostgreSQL; pass --pg-port N"
  fi

  # Build before starting PostgreSQL, so a failing build leaves nothing behind.
  resolve_server_bin

  trap cleanup_demo EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  trap 'exit 129' HUP

  TMP_ROOT="$(mktemp -d "${TMPDIR:-/tmp}/analytics-mcp-demo.XXXXXX")"
  [[ "$TMP_ROOT" != *[[:space:]]* ]] || die "temp dir path contains whitespace: $TMP_ROOT (set TMPDIR)"
  mkdir -m 700 "$TMP_ROOT/secrets"
  mkdir -m 700 "$TMP_ROOT/pg"
  PG_DATA="$TMP_ROOT/pg/data"; PG_SOCK="$TMP_ROOT/pg"; PG_LOG="$TMP_ROOT/pg/postgres.log"
  if [[ "$(id -u)" == 0 ]]; then
    if id postgres >/dev/null 2>&1; then PG_OS_USER=postgres
    elif id nobody >/dev/null 2>&1; then PG_OS_USER=nobody
    else die "running as root, but there is neither a 'postgres' nor a 'nobody' user to run PostgreSQL as"
    fi
    # The cluster user must be able to reach its own directory. The secrets dir stays root-only.
    chmod 711 "$TMP_ROOT"
    chown "$PG_OS_USER" "$TMP_ROOT/pg"
    say "Running as root: PostgreSQL will run as the unprivileged user '$PG_OS_USER'."
  fi

  say "Creating a throwaway PostgreSQL cluster in $TMP_ROOT/pg ($PG_BINDIR) ..."
  if ! (cd "$TMP_ROOT" && as_pg "$PG_BINDIR/initdb" -D "$PG_DATA" -U postgres -E UTF8 --locale=C \
          --auth-local=trust --auth-host=scram-sha-256 -N >"$TMP_ROOT/pg/initdb.log" 2>&1); then
    cat "$TMP_ROOT/pg/initdb.log" >&2 || true
    die "initdb failed"
  fi
  # Loopback TCP only. The unix socket lives in our private temp dir, and `trust` there is
  # reachable only by the cluster user and root. fsync=off because the data is throwaway.
  # If we picked the port ourselves and lose a race for it (another demo or test starting at
  # the same moment), move to the next free port and try again.
  PG_STARTED=1
  local attempt
  for attempt in 1 2 3 4 5; do
    rm -f -- "$PG_LOG"   # pg_ctl (as the cluster user) creates it afresh
    if (cd "$TMP_ROOT" && as_pg "$PG_BINDIR/pg_ctl" -D "$PG_DATA" -l "$PG_LOG" -w -t 60 \
          -o "-c listen_addresses=127.0.0.1 -c port=$D_PG_PORT -c unix_socket_directories=$PG_SOCK -c fsync=off -c full_page_writes=off -c max_connections=60" \
          start >/dev/null 2>&1); then
      break
    fi
    if ((pg_port_auto)) && ((attempt < 5)) && grep -q 'Address already in use' "$PG_LOG" 2>/dev/null; then
      say "Port $D_PG_PORT was taken meanwhile; trying another ..."
      D_PG_PORT="$(next_free_port $((D_PG_PORT + 1)))" || die "no free port for PostgreSQL; pass --pg-port N"
      continue
    fi
    tail -n 20 "$PG_LOG" >&2 2>/dev/null || true
    if grep -q 'Address already in use' "$PG_LOG" 2>/dev/null; then
      die "PostgreSQL port $D_PG_PORT on 127.0.0.1 is already in use; pass another --pg-port"
    fi
    die "PostgreSQL did not start (port $D_PG_PORT; log above)"
  done
  say "PostgreSQL is up on 127.0.0.1:$D_PG_PORT (pid $(postmaster_pid || echo '?'))."

  local admin_dsn="host=$PG_SOCK port=$D_PG_PORT user=postgres"
  psql -X -q -v ON_ERROR_STOP=1 -d "$admin_dsn dbname=postgres" -c "CREATE DATABASE $DEMO_DB" \
    || die "CREATE DATABASE failed"
  say "Loading fixtures/demo.sql (fictional fleet dataset) ..."
  psql -X -q -v ON_ERROR_STOP=1 -d "$admin_dsn dbname=$DEMO_DB" -f "$DEMO_SQL" >/dev/null \
    || die "loading fixtures/demo.sql failed"

  # The same path as `bootstrap.sh role`. The demo DB belongs to the demo, so the
  # PUBLIC-wide hardening is on as well.
  IN_DEMO=1
  R_DSN="$admin_dsn dbname=$DEMO_DB"; R_DSN_GIVEN=1; R_CONTAINER=""
  R_SCHEMAS="fleet,tickets,reporting"; R_OWNERS="fleet_owner"; R_ROLE="analytics_ro"
  R_PW_FILE="$TMP_ROOT/secrets/analytics_ro.pw"; R_CONN_LIMIT=20
  R_REVOKE_TEMP=on; R_REVOKE_CREATE=on; R_ROTATE=0
  R_DB_HOST=127.0.0.1; R_DB_PORT="$D_PG_PORT"; R_DB_NAME="$DEMO_DB"
  cmd_role >/dev/null

  read_pw_file "$R_PW_FILE"
  local ro_pw="$PW"; PW=""
  local token
  token="$(random_secret)"

  # Check that the role can log in over TCP with its password before involving the server.
  # The password goes through a private pgpass file, not the environment or argv.
  printf '127.0.0.1:%s:%s:analytics_ro:%s\n' "$D_PG_PORT" "$DEMO_DB" "$ro_pw" >"$TMP_ROOT/secrets/pgpass"
  chmod 600 "$TMP_ROOT/secrets/pgpass"
  PGPASSFILE="$TMP_ROOT/secrets/pgpass" psql -X -q -At -w \
      -d "host=127.0.0.1 port=$D_PG_PORT dbname=$DEMO_DB user=analytics_ro" \
      -c "SELECT count(*) FROM fleet.vehicles" >/dev/null \
    || die "analytics_ro cannot log in / read fleet.vehicles (see $PG_LOG)"

  say "Starting analytics-mcp on 127.0.0.1:$D_PORT ..."
  : >"$TMP_ROOT/server.log"
  # Secrets go in via the environment of a subshell that execs the server, never via argv.
  (
    export DATABASE_URL="postgresql://analytics_ro:${ro_pw}@127.0.0.1:${D_PG_PORT}/${DEMO_DB}"
    export MCP_AUTH_TOKENS="demo:${token}"
    export MCP_HOST=127.0.0.1 MCP_PORT="$D_PORT"
    export MCP_READABLE_SCHEMAS="fleet,tickets,reporting"
    export MCP_SHUTDOWN_GRACE_S="${MCP_SHUTDOWN_GRACE_S:-5}"
    unset ADMIN_DSN PGPASSWORD PGPASSFILE
    exec "$SERVER_BIN"
  ) >>"$TMP_ROOT/server.log" 2>&1 &
  SERVER_PID=$!
  ro_pw=""

  local deadline=$((SECONDS + 30)) ok=0
  while ((SECONDS < deadline)); do
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then
      server_log_tail
      if grep -qiE 'address (already )?in use|EADDRINUSE' "$TMP_ROOT/server.log" 2>/dev/null; then
        die "port $D_PORT became busy before the server could bind it; pass --port N"
      fi
      die "analytics-mcp exited during startup"
    fi
    if http_get "$D_PORT" /healthz >/dev/null 2>&1; then ok=1; break; fi
    sleep 0.2
  done
  if ((ok == 0)); then
    server_log_tail
    die "analytics-mcp did not answer GET /healthz on 127.0.0.1:$D_PORT within 30 s"
  fi
  local ready
  ready="$(http_get "$D_PORT" /readyz 2>/dev/null || true)"
  [[ "$ready" == *'"database":"up"'* ]] || say "warning: /readyz did not report the database as up yet: ${ready:-no answer}"

  local url="http://127.0.0.1:${D_PORT}/mcp"
  cat <<EOF

================================================================================
analytics-mcp demo is running: $url
  PostgreSQL 127.0.0.1:$D_PG_PORT db $DEMO_DB (role analytics_ro, read-only on fleet, tickets, reporting)
  Throwaway demo token below. It dies with this demo.

Add it to Claude Code (paste this line):

  claude mcp add --transport http analytics-demo $url --header "Authorization: Bearer $token"

Then ask Claude, for example:
  - "Which 5 vehicles drove the most km in October 2026, and what did their fuel cost?"
  - "Open incident tickets by region and SLA status - which cluster breaches SLA most?"
  - "Fuel cost per cost centre per month (reporting.v_fuel_cost_by_cost_centre_month)"
  - "Try to read internal.secrets" (it is refused: the role has no access)

Or poke it with curl:

  curl -s $url -H "Authorization: Bearer $token" \\
    -H 'Content-Type: application/json' -H 'Accept: application/json, text/event-stream' \\
    -d '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"query","arguments":{"sql":"SELECT cost_centre, round(sum(cost),2) AS cost FROM reporting.v_fuel_cost_by_cost_centre_month GROUP BY 1 ORDER BY 2 DESC"}}}'

Press Ctrl-C to stop the server and PostgreSQL and delete $TMP_ROOT.
================================================================================
Server log follows:
EOF
  tail -n +1 -f "$TMP_ROOT/server.log" &
  TAIL_PID=$!

  local rc=0
  wait "$SERVER_PID" || rc=$?
  # Reached only if the server exited on its own (a signal to us runs the trap instead).
  SERVER_PID=""
  say "analytics-mcp exited with status $rc."
  exit "$rc"
}

# ------------------------------------------------------------------------------------------
# main
# ------------------------------------------------------------------------------------------
main() {
  (($#)) || { usage >&2; exit 2; }
  local cmd="$1"; shift
  case "$cmd" in
    role)      parse_role_args "$@"; cmd_role ;;
    demo)      cmd_demo "$@" ;;
    -h|--help|help) usage ;;
    *)         usage_error "unknown command '$cmd'" ;;
  esac
}

main "$@"
