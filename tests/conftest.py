"""End-to-end harness for analytics-mcp: a throwaway PostgreSQL cluster, the real binary, real HTTP.

Nothing is mocked. The session starts a PostgreSQL cluster on 127.0.0.1 (a free port, unix socket
in a temp dir, fsync off), loads tests/fixture.sql as the superuser, creates the read-only login
role ``mcp_ro`` the way role.sql would, and hands tests a ``start_server(**env)`` factory that runs
the built binary against it. Readiness is always polled with a deadline, never slept for.

With ``ANALYTICS_MCP_VIA=pgbouncer`` (tests/run's second pass) the harness also starts Debian's
PgBouncer in ``pool_mode = transaction`` in front of the cluster, with fewer server connections
than the server's pool, and ``pg.ro_dsn`` (what every server gets) points at PgBouncer; the
superuser's assertions still go straight to PostgreSQL.
"""

from __future__ import annotations

import glob
import http.client
import itertools
import json
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
FIXTURE_SQL = Path(__file__).resolve().parent / "fixture.sql"
DB_NAME = "analytics_test"
RO_ROLE = "mcp_ro"
LATEST = "2025-11-25"  # newest handshake-era version
ALL_VERSIONS = ["2025-03-26", "2025-06-18", "2025-11-25", "2026-07-28"]
STARTUP_DEADLINE_S = 30.0
STOP_DEADLINE_S = 10.0


# ── small utilities ────────────────────────────────────────────────────────────

def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class StopWaiting(Exception):
    """Raised by a wait_until predicate when waiting longer cannot help (e.g. the process exited)."""


class PortTaken(StopWaiting):
    """The port free_port() picked was taken by another process before we bound it."""


def wait_until(predicate, deadline_s: float, what: str, interval: float = 0.05):
    """Poll ``predicate`` until it returns a truthy value or the deadline passes. Exceptions from the
    predicate count as "not yet", except StopWaiting, which ends the wait at once."""
    end = time.monotonic() + deadline_s
    last_exc: BaseException | None = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except StopWaiting:
            raise
        except Exception as exc:  # noqa: BLE001 - we re-raise context below
            last_exc = exc
        if time.monotonic() > end:
            raise TimeoutError(f"timed out waiting for {what}" + (f": {last_exc!r}" if last_exc else ""))
        time.sleep(interval)  # polling interval, not synchronisation


def loads_exact(data: bytes | str) -> Any:
    """Parse JSON keeping every number exact (Decimal for non-integers)."""
    return json.loads(data, parse_float=Decimal)


def stop_process(proc: subprocess.Popen, deadline_s: float = STOP_DEADLINE_S) -> None:
    """SIGTERM the process we started, then SIGKILL it if it outlives the deadline."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=deadline_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=deadline_s)


# ── PostgreSQL ─────────────────────────────────────────────────────────────────

def _pg_bindir() -> Path:
    env = os.environ.get("PG_BINDIR")
    if env:
        return Path(env)
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2]))
    preferred = [c for c in candidates if "/15/" in c]
    if preferred:
        return Path(preferred[0])
    if candidates:
        return Path(candidates[-1])
    pg_config = shutil.which("pg_config")
    if pg_config:
        return Path(subprocess.check_output([pg_config, "--bindir"], text=True).strip())
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    raise RuntimeError("PostgreSQL server binaries not found (set PG_BINDIR)")


def _unprivileged_user() -> pwd.struct_passwd | None:
    """PostgreSQL refuses to run as root: pick the OS user to run it as (None = ourselves)."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise RuntimeError("running as root and neither a 'postgres' nor a 'nobody' user exists")


@dataclass
class Postgres:
    bindir: Path
    root: Path
    port: int
    ro_password: str
    os_user: pwd.struct_passwd | None
    proc: subprocess.Popen | None = None
    superuser: str = "postgres"
    client_port: int | None = None  # where the server under test connects (PgBouncer), if not `port`

    @property
    def datadir(self) -> Path:
        return self.root / "data"

    @property
    def sockdir(self) -> Path:
        return self.root / "sock"

    @property
    def log_path(self) -> Path:
        return self.root / "postgres.log"

    @property
    def ro_dsn(self) -> str:
        """URL DSN for the read-only role over TCP on loopback (password auth)."""
        return f"postgresql://{RO_ROLE}:{self.ro_password}@127.0.0.1:{self.client_port or self.port}/{DB_NAME}"

    def ro_dsn_for(self, db: str) -> str:
        """The read-only role's DSN for another database of the cluster."""
        return f"postgresql://{RO_ROLE}:{self.ro_password}@127.0.0.1:{self.port}/{db}"

    @property
    def super_dsn(self) -> str:
        """Superuser DSN (unix socket, trust) for assertions; never given to the server."""
        return f"host={self.sockdir} port={self.port} user={self.superuser} dbname={DB_NAME}"

    def _as_pg_user(self, argv: list[str]) -> list[str]:
        if self.os_user is None:
            return argv
        if shutil.which("setpriv"):  # execs in place: the PID we hold is postgres itself
            return ["setpriv", f"--reuid={self.os_user.pw_uid}", f"--regid={self.os_user.pw_gid}",
                    "--clear-groups", "--"] + argv
        return ["runuser", "-u", self.os_user.pw_name, "--"] + argv

    def _pg_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["LC_ALL"] = "C.UTF-8" if os.path.exists("/usr/lib/locale/C.utf8") else "C"
        env["TZ"] = "UTC"
        return env

    def init_and_start(self) -> None:
        self.sockdir.mkdir(parents=True)
        if self.os_user is not None:
            for p in (self.root, self.sockdir):
                os.chown(p, self.os_user.pw_uid, self.os_user.pw_gid)
        subprocess.run(
            self._as_pg_user([str(self.bindir / "initdb"), "-D", str(self.datadir), "-U", self.superuser,
                              "-E", "UTF8", "--no-locale", "--auth-local=trust", "--auth-host=scram-sha-256",
                              "--no-sync"]),
            cwd=self.root, env=self._pg_env(), check=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )
        for attempt in range(5):
            try:
                self._start_postmaster()
                return
            except PortTaken:
                self.port = free_port()  # somebody took the port after free_port() chose it
        raise RuntimeError("postgres could not bind a free port in 5 attempts")

    def _start_postmaster(self) -> None:
        log_start = self.log_path.stat().st_size if self.log_path.exists() else 0
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            self._as_pg_user([
                str(self.bindir / "postgres"), "-D", str(self.datadir), "-p", str(self.port),
                "-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={self.sockdir}",
                "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
                # TimeZone is deliberately not UTC (UTC+3, no DST): the server must not depend on it
                "-c", "timezone=Africa/Nairobi", "-c", "max_connections=100", "-c", "shared_buffers=32MB",
                # counts the statements each tool call runs (test_scale: no query per table)
                "-c", "shared_preload_libraries=pg_stat_statements",
            ]),
            cwd=self.root, env=self._pg_env(), stdout=log, stderr=subprocess.STDOUT,
        )
        log.close()

        def ready():
            if self.proc.poll() is not None:
                text = self.log_path.read_bytes()[log_start:].decode(errors="replace")
                if "Address already in use" in text:
                    raise PortTaken(text)
                raise StopWaiting("postgres exited:\n" + text)
            r = subprocess.run([str(self.bindir / "pg_isready"), "-h", str(self.sockdir), "-p", str(self.port),
                                "-U", self.superuser, "-d", "postgres"], capture_output=True)
            return r.returncode == 0

        wait_until(ready, STARTUP_DEADLINE_S, "postgres to accept connections")

    def psql(self, sql: str, db: str = DB_NAME, user: str | None = None) -> str:
        """Run SQL as the superuser via psql; return unaligned, tuples-only output."""
        r = subprocess.run(
            [str(self.bindir / "psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
             "-h", str(self.sockdir), "-p", str(self.port), "-U", user or self.superuser, "-d", db],
            input=sql, capture_output=True, text=True, env=self._pg_env(),
        )
        if r.returncode != 0:
            raise RuntimeError(f"psql failed ({r.returncode}): {r.stderr}")
        return r.stdout.rstrip("\n")

    def psql_file(self, path: Path, db: str = DB_NAME) -> None:
        r = subprocess.run(
            [str(self.bindir / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", str(self.sockdir),
             "-p", str(self.port), "-U", self.superuser, "-d", db, "-f", str(path)],
            capture_output=True, text=True, env=self._pg_env(),
        )
        if r.returncode != 0:
            raise RuntimeError(f"loading {path} failed: {r.stderr}")

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # fast shutdown
            try:
                self.proc.wait(timeout=STOP_DEADLINE_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=STOP_DEADLINE_S)


ROLE_SQL = """
CREATE ROLE {role} LOGIN PASSWORD '{pw}' NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS;
GRANT CONNECT ON DATABASE {db} TO {role};
GRANT USAGE  ON SCHEMA reporting, fleet TO {role};
GRANT SELECT ON ALL TABLES IN SCHEMA reporting TO {role};
GRANT SELECT ON ALL TABLES IN SCHEMA fleet TO {role};
GRANT SELECT ON reporting.mv_daily_distance TO {role};
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA reporting TO {role};
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA fleet TO {role};
GRANT USAGE ON SCHEMA "Sales" TO {role};
GRANT SELECT ON ALL TABLES IN SCHEMA "Sales" TO {role};
GRANT SELECT ON "Sales".mv_region_orders TO {role};
REVOKE SELECT ON "Sales"."Customers" FROM {role};
GRANT SELECT ("CustomerID", "Name", region, credit_limit, referred_by, last_order_id) ON "Sales"."Customers" TO {role};
ALTER ROLE {role} SET default_transaction_read_only = on;
ALTER ROLE {role} SET statement_timeout = '30s';
ALTER ROLE {role} SET idle_in_transaction_session_timeout = '60s';
"""


VIA_PGBOUNCER = os.environ.get("ANALYTICS_MCP_VIA") == "pgbouncer"


class PgBouncer:
    """Debian's pgbouncer in transaction pooling mode in front of ``db``, as db's OS user (it refuses
    to run as root). Two server connections for all clients: consecutive transactions of one client
    connection land on different backends, as they do in production."""

    def __init__(self, db: Postgres, pool_size: int = 2, listen: tuple[str, int] | None = None,
                 name: str = "pgbouncer", users: dict[str, str] | None = None):
        self.db = db
        self.dir = db.root / name
        self.dir.mkdir()
        self.address, self.port = listen or ("127.0.0.1", free_port())
        self.log = self.dir / "pgbouncer.log"
        users = users or {RO_ROLE: db.ro_password}
        (self.dir / "userlist.txt").write_text("".join(f'"{u}" "{pw}"\n' for u, pw in users.items()))
        (self.dir / "pgbouncer.ini").write_text(f"""
[databases]
{DB_NAME} = host=127.0.0.1 port={db.port} dbname={DB_NAME}
[pgbouncer]
listen_addr = {self.address}
listen_port = {self.port}
unix_socket_dir =
auth_type = scram-sha-256
auth_file = {self.dir}/userlist.txt
pool_mode = transaction
default_pool_size = {pool_size}
max_client_conn = 500
server_check_delay = 0
logfile = {self.log}
pidfile = {self.dir}/pgbouncer.pid
""")
        if db.os_user is not None:
            for f in (self.dir, *self.dir.iterdir()):
                os.chown(f, db.os_user.pw_uid, db.os_user.pw_gid)
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        binary = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
        self.proc = subprocess.Popen(self.db._as_pg_user([binary, str(self.dir / "pgbouncer.ini")]),
                                     cwd=self.dir, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.STDOUT)

        def listening():
            if self.proc.poll() is not None:
                raise StopWaiting("pgbouncer exited:\n" + (self.log.read_text() if self.log.exists() else ""))
            with socket.socket() as s:
                return s.connect_ex((self.address, self.port)) == 0
        wait_until(listening, STARTUP_DEADLINE_S, "pgbouncer to listen")

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)


# PgBouncer's own tests belong to tests/run's PgBouncer pass only.
collect_ignore = [] if VIA_PGBOUNCER else ["test_pgbouncer.py"]


@pytest.fixture(scope="session")
def pg():
    os_user = _unprivileged_user()
    # when PostgreSQL runs as another OS user, its directory must be reachable by that user:
    # /tmp is, a private $TMPDIR under /root may not be
    root = Path(tempfile.mkdtemp(prefix="amcp-pg-", dir="/tmp" if os_user is not None else None))
    db = Postgres(bindir=_pg_bindir(), root=root, port=free_port(),
                  ro_password="ro-" + secrets.token_hex(12), os_user=os_user)
    try:
        db.init_and_start()
        db.psql(f"CREATE DATABASE {DB_NAME}", db="postgres")
        db.psql_file(FIXTURE_SQL)
        db.psql(ROLE_SQL.format(role=RO_ROLE, pw=db.ro_password, db=DB_NAME))
        if VIA_PGBOUNCER:
            db.pgbouncer = PgBouncer(db)
            db.pgbouncer.start()
            db.client_port = db.pgbouncer.port
        yield db
    finally:
        if getattr(db, "pgbouncer", None) is not None:
            db.pgbouncer.stop()
        db.stop()
        shutil.rmtree(root, ignore_errors=True)


# Every extension Debian ships for PostgreSQL 15 in postgresql-15 (contrib), postgresql-15-postgis-3,
# postgresql-15-hypopg, -partman and -repack (tests/system-deps.sh). pg_cron needs
# shared_preload_libraries, so the guard audit reads its install script instead; address_standardizer_data_us
# holds only tables.
EXT_DB = "analytics_ext"
AUDITED_EXTENSIONS = (
    "address_standardizer", "adminpack", "amcheck", "autoinc", "bloom",
    "btree_gin", "btree_gist", "citext", "cube", "dblink", "dict_int", "dict_xsyn", "earthdistance",
    "file_fdw", "fuzzystrmatch", "hstore", "hypopg", "insert_username", "intagg", "intarray", "isn", "lo",
    "ltree", "moddatetime", "old_snapshot", "pageinspect", "pg_buffercache", "pg_freespacemap",
    "pg_partman", "pg_prewarm", "pg_repack", "pg_stat_statements", "pg_surgery", "pg_trgm",
    "pg_visibility", "pg_walinspect", "pgcrypto", "pgrowlocks", "pgstattuple", "postgis", "postgis_raster",
    "postgis_sfcgal", "postgis_tiger_geocoder", "postgis_topology", "postgres_fdw", "refint", "seg",
    "sslinfo", "tablefunc", "tcn", "tsm_system_rows", "tsm_system_time", "unaccent", "uuid-ossp", "xml2",
)


@pytest.fixture(scope="session")
def extension_db(pg) -> str:
    """A second database of the session cluster with every audited extension (PostGIS included), for
    the spatial tests and the guard audit. analytics_test (and what other tests count there) is
    untouched. Returns the database name; pg.ro_dsn_for(it) is the read-only role's DSN."""
    pg.psql(f"CREATE DATABASE {EXT_DB}", db="postgres")
    creates = "\n".join(
        f'CREATE EXTENSION IF NOT EXISTS "{name}"' + (" SCHEMA partman" if name == "pg_partman" else "") + " CASCADE;"
        for name in AUDITED_EXTENSIONS)
    pg.psql("SET client_min_messages = warning;\nCREATE SCHEMA partman;\n" + creates, db=EXT_DB)
    pg.psql(f"GRANT CONNECT ON DATABASE {EXT_DB} TO {RO_ROLE}", db="postgres")
    return EXT_DB


DEMO_DB = "analytics_demo"
DEMO_SQL = REPO / "fixtures" / "demo.sql"


@pytest.fixture(scope="session")
def demo_db(pg) -> str:
    """The fleet demo (fixtures/demo.sql, what ./bootstrap.sh demo loads) in its own database of the
    session cluster, readable by the read-only role like role.sql would make it. Returns its name."""
    pg.psql(f"CREATE DATABASE {DEMO_DB}", db="postgres")
    pg.psql_file(DEMO_SQL, db=DEMO_DB)
    pg.psql(f"""
        GRANT CONNECT ON DATABASE {DEMO_DB} TO {RO_ROLE};
        GRANT USAGE ON SCHEMA fleet, tickets, reporting TO {RO_ROLE};
        GRANT SELECT ON ALL TABLES IN SCHEMA fleet, tickets, reporting TO {RO_ROLE};
        GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA reporting TO {RO_ROLE};
    """, db=DEMO_DB)
    return DEMO_DB


CANARY_CHECKSUM_SQL = "SELECT md5(string_agg(c::text, '|' ORDER BY id)) || ':' || count(*) FROM {t} c"


@pytest.fixture(scope="session")
def canary(pg):
    """Returns a function giving the current checksums of both canary tables (superuser view)."""
    def checksum() -> tuple[str, str]:
        return (pg.psql(CANARY_CHECKSUM_SQL.format(t="reporting.canary")),
                pg.psql(CANARY_CHECKSUM_SQL.format(t="infrastructure.canary")))
    return checksum


# ── HTTP client ────────────────────────────────────────────────────────────────

class Headers:
    """Case-insensitive view of response headers that keeps repeated headers."""

    def __init__(self, items: list[tuple[str, str]]):
        self.items = items

    def get(self, name: str, default: str | None = None) -> str | None:
        for k, v in self.items:
            if k.lower() == name.lower():
                return v
        return default

    def get_all(self, name: str) -> list[str]:
        return [v for k, v in self.items if k.lower() == name.lower()]

    def __contains__(self, name: str) -> bool:
        return self.get(name) is not None

    def __repr__(self) -> str:
        return f"Headers({self.items!r})"


@dataclass
class Response:
    status: int
    headers: Headers
    body: bytes

    def json(self) -> Any:
        return loads_exact(self.body)

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")


_ids = itertools.count(1000)


@dataclass
class Server:
    proc: subprocess.Popen
    port: int
    host: str
    tokens: dict[str, str]
    stderr_path: Path
    env: dict[str, str]
    default_version: str | None = LATEST
    caller: str | None = "alice"

    # -- raw HTTP --
    def request(self, method: str, path: str, body: bytes | None = None,
                headers: dict[str, str | None] | None = None, timeout: float = 60.0) -> Response:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            hdrs = dict(headers or {})
            custom_host = any(k.lower() == "host" for k in hdrs)
            conn.putrequest(method, path, skip_host=custom_host, skip_accept_encoding=True)
            if body is not None and not any(k.lower() == "content-length" for k in hdrs):
                hdrs["Content-Length"] = str(len(body))
            for k, v in hdrs.items():
                if v is not None:
                    conn.putheader(k, v)
            conn.endheaders()
            if body:
                try:
                    conn.send(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the server may answer (e.g. 413) and close before reading it all
            resp = conn.getresponse()
            data = resp.read()
            return Response(resp.status, Headers(resp.getheaders()), data)
        finally:
            conn.close()

    def auth_headers(self, caller: str | None = "default") -> dict[str, str]:
        caller = self.caller if caller == "default" else caller
        if caller is None or caller not in self.tokens:
            return {}
        return {"Authorization": f"Bearer {self.tokens[caller]}"}

    def post(self, path: str, body: bytes | str | dict | list, headers: dict[str, str | None] | None = None,
             caller: str | None = "default") -> Response:
        """POST ``body`` (bytes/str sent verbatim, objects JSON-encoded). ``headers`` override the defaults;
        a header set to None is omitted."""
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
        elif isinstance(body, str):
            body = body.encode()
        hdrs: dict[str, str | None] = {
            "Content-Type": "application/json",
            "Accept": "application/json, text/event-stream",
            **self.auth_headers(caller),
        }
        for k, v in (headers or {}).items():
            for existing in [e for e in hdrs if e.lower() == k.lower()]:
                del hdrs[existing]
            hdrs[k] = v
        return self.request("POST", path, body, hdrs)

    def get(self, path: str, headers: dict[str, str | None] | None = None) -> Response:
        return self.request("GET", path, None, headers)

    # -- JSON-RPC --
    def rpc_raw(self, method: str, params: dict | None = None, id: Any = "auto",
                version_header: str | None = "default", headers: dict[str, str | None] | None = None,
                path: str = "/mcp", caller: str | None = "default") -> Response:
        msg: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
        if id is not None:
            msg["id"] = next(_ids) if id == "auto" else id
        if params is not None:
            msg["params"] = params
        hdrs: dict[str, str | None] = {}
        version = self.default_version if version_header == "default" else version_header
        if version is not None:
            hdrs["MCP-Protocol-Version"] = version
        hdrs.update(headers or {})
        return self.post(path, msg, hdrs, caller=caller)

    def rpc(self, method: str, params: dict | None = None, id: Any = "auto", **kw) -> dict:
        """Send one request, assert HTTP 200 + a well-formed JSON-RPC envelope; return the envelope."""
        if id == "auto":
            id = next(_ids)
        r = self.rpc_raw(method, params, id=id, **kw)
        assert r.status == 200, f"{method}: HTTP {r.status} {r.text}"
        assert r.headers.get("Content-Type", "").startswith("application/json"), r.headers
        env = r.json()
        assert env.get("jsonrpc") == "2.0", env
        assert env.get("id") == id, env
        return env

    def call_tool_envelope(self, name: str, args: dict | None = None, **kw) -> dict:
        params: dict[str, Any] = {"name": name}
        if args is not None:
            params["arguments"] = args
        return self.rpc("tools/call", params, **kw)

    def call_tool(self, name: str, args: dict | None = None, expect_error: bool = False, **kw) -> dict:
        """Call a tool; assert a JSON-RPC result (not error) whose text block mirrors structuredContent.
        Returns the result object (with ``structuredContent``, ``content``, ``isError``)."""
        env = self.call_tool_envelope(name, args, **kw)
        assert "error" not in env, f"{name}{args}: JSON-RPC error {env['error']}"
        result = env["result"]
        content = result.get("content")
        assert isinstance(content, list) and content, result
        assert content[0]["type"] == "text", content
        is_error = bool(result.get("isError", False))
        if expect_error:
            assert is_error, f"{name}{args}: expected isError, got {result}"
        else:
            assert not is_error, f"{name}{args}: unexpected isError: {content[0]['text']}"
            assert "structuredContent" in result, result
            structured = result["structuredContent"]
            if structured.get("format") in ("csv", "markdown"):
                # the text block is the CSV/Markdown; a second block is the answer without its rows
                assert len(content) == 2 and content[1]["type"] == "text", content
                assert loads_exact(content[1]["text"]) == {k: v for k, v in structured.items() if k != "rows"}
            else:
                assert loads_exact(content[0]["text"]) == structured, \
                    "text block must carry the same JSON as structuredContent"
        return result

    def tool(self, name: str, args: dict | None = None, **kw) -> dict:
        """structuredContent of a successful tool call."""
        return self.call_tool(name, args, **kw)["structuredContent"]

    def tool_error(self, name: str, args: dict | None = None, **kw) -> str:
        """Text of an isError tool result."""
        return self.call_tool(name, args, expect_error=True, **kw)["content"][0]["text"]

    def query(self, sql: str, max_rows: int | None = None, format: str | None = None) -> dict:
        args: dict[str, Any] = {"sql": sql}
        if max_rows is not None:
            args["max_rows"] = max_rows
        if format is not None:
            args["format"] = format
        return self.tool("query", args)

    # -- process --
    def stderr_text(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def wait_for_stderr(self, predicate, what: str, deadline_s: float = 10.0) -> str:
        return wait_until(lambda: (lambda t: t if predicate(t) else None)(self.stderr_text()), deadline_s, what)

    def stop(self) -> None:
        stop_process(self.proc)


def binary_path() -> Path:
    env = os.environ.get("ANALYTICS_MCP_BIN")
    if env:
        return Path(env)
    return REPO / "target" / "debug" / "analytics-mcp"


def clean_env(extra: dict[str, str | None] | None = None) -> dict[str, str]:
    """The parent environment minus anything that could configure the server, plus ``extra``."""
    env = {k: v for k, v in os.environ.items()
           if not (k.startswith("MCP_") or k in ("DATABASE_URL", "RUST_LOG") or k.startswith("PG"))}
    for k, v in (extra or {}).items():
        if v is None:
            env.pop(k, None)
        else:
            env[k] = v
    return env


def run_binary(args: list[str], env: dict[str, str | None] | None = None, timeout: float = 30.0
               ) -> subprocess.CompletedProcess:
    """Run the binary to completion (for --help, --version, refused start-ups)."""
    return subprocess.run([str(binary_path()), *args], env=clean_env(env), capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


@pytest.fixture(scope="session")
def binary() -> Path:
    path = binary_path()
    if not path.exists():
        pytest.fail(f"server binary not found at {path} (run `cargo build` or set ANALYTICS_MCP_BIN)")
    return path


@pytest.fixture(scope="session")
def server_factory(pg, binary, tmp_path_factory):
    """Session-wide launcher; every server it starts is terminated at session end at the latest."""
    started: list[Server] = []
    logdir = tmp_path_factory.mktemp("servers")

    def start(tokens: dict[str, str] | None = "default", wait: bool = True, _attempt: int = 0,
              preexec_fn=None, **env: str | None) -> Server:
        if tokens == "default":
            tokens = {"alice": "tok-a-" + secrets.token_hex(16), "bob": "tok-b-" + secrets.token_hex(16)}
        tokens = tokens or {}
        port = free_port()
        full_env: dict[str, str | None] = {
            "DATABASE_URL": pg.ro_dsn,
            "MCP_HOST": "127.0.0.1",
            "MCP_PORT": str(port),
        }
        if tokens:
            full_env["MCP_AUTH_TOKENS"] = ",".join(f"{n}:{t}" for n, t in tokens.items())
        full_env.update(env)
        if full_env.get("MCP_PORT"):
            try:
                port = int(full_env["MCP_PORT"])  # type: ignore[arg-type]
            except ValueError:
                pass
        stderr_path = logdir / f"server-{len(started)}-{port}.stderr"
        errf = open(stderr_path, "wb")
        proc = subprocess.Popen([str(binary)], env=clean_env(full_env), stdin=subprocess.DEVNULL,
                                stdout=errf, stderr=errf, preexec_fn=preexec_fn)
        errf.close()
        srv = Server(proc=proc, port=port, host=full_env.get("MCP_HOST") or "127.0.0.1", tokens=tokens,
                     stderr_path=stderr_path, env={k: v for k, v in full_env.items() if v is not None},
                     caller=next(iter(tokens), None))
        started.append(srv)
        if wait:
            def healthy():
                if proc.poll() is not None:
                    err = srv.stderr_text()
                    if "Address already in use" in err and "MCP_PORT" not in env:
                        raise PortTaken(err)
                    raise StopWaiting(f"server exited with {proc.returncode}:\n{err}")
                # short timeout: if someone else owns the port, do not hang on their socket
                return srv.request("GET", "/healthz", timeout=2).status == 200
            try:
                wait_until(healthy, STARTUP_DEADLINE_S, "GET /healthz to answer 200")
            except PortTaken:
                if _attempt >= 4:
                    raise
                return start(tokens=tokens, wait=wait, _attempt=_attempt + 1, preexec_fn=preexec_fn, **env)
            except BaseException:
                srv.stop()
                raise
        return srv

    yield start
    for srv in started:
        srv.stop()


@pytest.fixture
def start_server(server_factory):
    """Factory fixture: ``start_server(**env)`` → a running Server, terminated at test teardown."""
    mine: list[Server] = []

    def start(**kw) -> Server:
        srv = server_factory(**kw)
        mine.append(srv)
        return srv

    yield start
    for srv in mine:
        srv.stop()


@pytest.fixture(scope="session")
def server(server_factory) -> Server:
    """The shared default server (tokens alice/bob, default settings)."""
    return server_factory()
