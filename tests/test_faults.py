"""Issue 4: never poisoned, never a 500 — pool faults, concurrency, graceful shutdown, /metrics.

Real PostgreSQL, real faults. The tests that kill backends, restart or stop PostgreSQL run against a
throwaway cluster of their own (``own_pg``, one per module), never the session cluster other test
files share. Nothing sleeps for synchronisation: every wait polls observable state (pg_stat_activity,
pg_isready, /readyz, the server's socket, its exit status) with a deadline. ``time.sleep`` appears
only as pacing inside the once-a-second backend killer and the polling helpers.
"""

from __future__ import annotations

import secrets
import selectors
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest

from conftest import DB_NAME, RO_ROLE, Postgres, _pg_bindir, _unprivileged_user, free_port, wait_until
from helpers_net import (McpClient, Outcome, ResponseReader, mcp_headers, metric_sum, parse_prometheus,
                         raise_nofile, raw_request, tool_call_body)

raise_nofile(4096)  # before any server starts: children inherit the limit

APP = "analytics-mcp"
NUMBERS_SQL = "SELECT count(*) AS n, sum(n) AS total FROM reporting.numbers"
NUMBERS_RESULT = [{"n": 100, "total": 5050}]
UNAVAILABLE = "database unavailable: "

SCHEMA_SQL = """
CREATE SCHEMA reporting;
CREATE TABLE reporting.numbers (n integer PRIMARY KEY);
INSERT INTO reporting.numbers SELECT generate_series(1, 100);
CREATE ROLE {role} LOGIN PASSWORD '{pw}' NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS;
GRANT CONNECT ON DATABASE {db} TO {role};
GRANT USAGE ON SCHEMA reporting TO {role};
GRANT SELECT ON ALL TABLES IN SCHEMA reporting TO {role};
ALTER ROLE {role} SET default_transaction_read_only = on;
"""


# ── a throwaway cluster we may stop, restart and kill backends on ─────────────

class OwnPostgres(Postgres):
    """conftest's Postgres plus pg_ctl stop/start/restart (the postmaster pg_ctl starts is not our
    Popen child, so every lifecycle operation after the first start goes through pg_ctl)."""

    def pg_ctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        r = subprocess.run(self._as_pg_user([str(self.bindir / "pg_ctl"), "-D", str(self.datadir), *args]),
                           cwd=self.root, env=self._pg_env(), capture_output=True, text=True, timeout=60)
        if check and r.returncode != 0:
            raise RuntimeError(f"pg_ctl {' '.join(args)} failed ({r.returncode}): {r.stdout}{r.stderr}")
        return r

    def server_options(self) -> str:
        return (f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={self.sockdir} "
                "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c timezone=UTC "
                "-c max_connections=100 -c shared_buffers=32MB")

    def is_ready(self) -> bool:
        r = subprocess.run([str(self.bindir / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port),
                            "-U", self.superuser, "-d", "postgres"], capture_output=True)
        return r.returncode == 0

    def stop_fast(self) -> None:
        self.pg_ctl("stop", "-m", "fast", "-w")
        wait_until(lambda: not self.is_ready(), 30, "PostgreSQL to refuse connections")

    def start_again(self) -> None:
        self.pg_ctl("start", "-w", "-l", str(self.root / "pg_ctl.log"), "-o", self.server_options())
        wait_until(self.is_ready, 30, "PostgreSQL to accept connections again")

    def restart_fast(self) -> None:
        # pg_ctl restart re-uses postmaster.opts, i.e. the original command line (port, sockets, …)
        self.pg_ctl("restart", "-m", "fast", "-w", "-l", str(self.root / "pg_ctl.log"))

    def ensure_up(self) -> None:
        if not self.is_ready():
            self.start_again()

    def teardown(self) -> None:
        self.pg_ctl("stop", "-m", "immediate", "-w", check=False)
        super().stop()

    # -- observations as the superuser --
    def app_backends(self, extra_where: str = "") -> int:
        return int(self.psql(f"SELECT count(*) FROM pg_stat_activity WHERE application_name = '{APP}' "
                             f"{extra_where}"))

    def active_query_running(self, fragment: str) -> bool:
        return self.app_backends(f"AND state = 'active' AND query LIKE '%{fragment}%'") > 0

    def terminate_app_backends(self) -> int:
        out = self.psql(f"SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity "
                        f"WHERE application_name = '{APP}' AND pid <> pg_backend_pid()")
        return int(out or 0)


@pytest.fixture(scope="module")
def own_pg():
    root = Path(tempfile.mkdtemp(prefix="amcp-faults-pg-"))
    db = OwnPostgres(bindir=_pg_bindir(), root=root, port=free_port(),
                     ro_password="ro-" + secrets.token_hex(12), os_user=_unprivileged_user())
    try:
        db.init_and_start()
        db.psql(f"CREATE DATABASE {DB_NAME}", db="postgres")
        db.psql(SCHEMA_SQL.format(role=RO_ROLE, pw=db.ro_password, db=DB_NAME))
        yield db
    finally:
        db.teardown()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def db(own_pg):
    """The throwaway cluster, guaranteed up when a test starts and when it ends."""
    own_pg.ensure_up()
    yield own_pg
    own_pg.ensure_up()


# ── load generation ────────────────────────────────────────────────────────────

class Load:
    """``n`` client threads, each on its own keep-alive connection, calling ``sql`` until stopped."""

    def __init__(self, server, n: int, sql: str, timeout: float = 15.0):
        self.server, self.sql, self.timeout = server, sql, timeout
        self.stop_event = threading.Event()
        self.outcomes: list[list[Outcome]] = [[] for _ in range(n)]
        self.threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(n)]

    def _run(self, i: int) -> None:
        client = McpClient(self.server, timeout=self.timeout)
        try:
            while not self.stop_event.is_set():
                self.outcomes[i].append(client.query(self.sql))
        finally:
            client.close()

    def __enter__(self) -> "Load":
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> None:
        self.stop_event.set()
        for t in self.threads:
            t.join(timeout=self.timeout + 5)
        assert not any(t.is_alive() for t in self.threads), "a client thread hung past its HTTP timeout"

    def all(self) -> list[Outcome]:
        return [o for per in self.outcomes for o in list(per)]

    def count(self, predicate=lambda o: True) -> int:
        return sum(1 for o in self.all() if predicate(o))


def summarize(outcomes: list[Outcome], limit: int = 10) -> str:
    bad = [o for o in outcomes if not o.ok]
    return f"{len(bad)} failed of {len(outcomes)}; first: " + "; ".join(
        f"[{o.kind}] {o.detail}" for o in bad[:limit])


def metrics(server) -> dict:
    r = server.get("/metrics")
    assert r.status == 200, r.text
    assert r.headers.get("Content-Type", "").startswith("text/plain"), r.headers
    return parse_prometheus(r.text)


def assert_same_process(srv, pid: int) -> None:
    assert srv.proc.poll() is None, f"server exited ({srv.proc.returncode}):\n{srv.stderr_text()[-3000:]}"
    assert srv.proc.pid == pid


# ── backends killed under load ─────────────────────────────────────────────────

def test_killing_every_backend_each_second_under_load_fails_no_call(db, start_server):
    srv = start_server(DATABASE_URL=db.ro_dsn, MCP_POOL_MAX="8")
    assert srv.query(NUMBERS_SQL)["rows"] == NUMBERS_RESULT
    before = metrics(srv)
    killed = []

    with Load(srv, 8, NUMBERS_SQL) as load:
        wait_until(lambda: load.count() >= 16, 15, "the 8 clients to get going")
        end = time.monotonic() + 20
        while time.monotonic() < end:
            killed.append(db.terminate_app_backends())
            time.sleep(1.0)  # pacing of the fault injector, not synchronisation
    outcomes = load.all()

    failures = [o for o in outcomes if not o.ok]
    assert sum(killed) > 0, "the killer never found a backend to terminate"
    if failures:
        lines = srv.stderr_text().splitlines()
        bad = [i for i, l in enumerate(lines) if "audit" in l and "status=ok" not in l]
        context = "\n".join(lines[max(0, bad[0] - 12): bad[0] + 2]) if bad else ""
        hint = ""
        if all(o.elapsed > 1.0 for o in failures):
            hint = ("\nevery failed call lasted > 1 s, i.e. spanned two kill sweeps: its one retry's fresh "
                    "connection was killed too (reconnecting took > 1 s — slow SCRAM in an unoptimised build "
                    "and/or a contended CPU)")
        raise AssertionError(summarize(outcomes) + f"\n(elapsed {[round(o.elapsed, 3) for o in failures]} s)" + hint
                             + "\nserver stderr around the first failure:\n" + context)
    wrong = [o.result for o in outcomes if o.result["rows"] != NUMBERS_RESULT]
    assert not wrong, wrong[:3]
    after = metrics(srv)
    retries = metric_sum(after, "mcp_db_retries_total") - metric_sum(before, "mcp_db_retries_total")
    assert retries > 0, "the retries that covered the kills must show in mcp_db_retries_total"
    assert metric_sum(after, "mcp_db_disconnects_total") > metric_sum(before, "mcp_db_disconnects_total")
    calls = (metric_sum(after, "mcp_tool_calls_total", tool="query")
             - metric_sum(before, "mcp_tool_calls_total", tool="query"))
    assert calls == len(outcomes), (calls, len(outcomes))
    assert "retrying once on a fresh connection" in srv.stderr_text()
    print(f"\nkill test: {len(outcomes)} calls, {sum(killed)} backends killed, {retries:.0f} retries")


# ── PostgreSQL restarted / stopped under load ─────────────────────────────────

def _check_gap_outcomes(load: Load, ready_at: float) -> list[Outcome]:
    """Every outcome is a success or a clear 'database unavailable' tool error; calls started ≥ 1 s
    after the database accepted connections again all succeeded. Returns the tool errors."""
    outcomes = load.all()
    unclear = [o for o in outcomes if not o.ok and not (o.kind == "is_error" and o.detail.startswith(UNAVAILABLE))]
    assert not unclear, "only successes and 'database unavailable: …' tool errors allowed: " + summarize(unclear)
    late = [o for o in outcomes if o.started >= ready_at + 1.0]
    assert late, "no call started after the database came back"
    assert all(o.ok for o in late), "calls 1 s after the database is back must succeed: " + summarize(late)
    return [o for o in outcomes if not o.ok]


def _wait_for_late_calls(load: Load, ready_at: float, per_client: int = 3) -> None:
    def enough():
        return all(sum(1 for o in list(per) if o.started >= ready_at + 1.0) >= per_client
                   for per in load.outcomes)
    wait_until(enough, 20, f"{per_client} calls per client started 1 s after the database came back")


def test_pg_ctl_restart_fast_under_load(db, start_server):
    srv = start_server(DATABASE_URL=db.ro_dsn, MCP_POOL_MAX="4")
    pid = srv.proc.pid
    with Load(srv, 4, NUMBERS_SQL, timeout=10.0) as load:
        wait_until(lambda: load.count(lambda o: o.ok) >= 20, 15, "successful calls before the restart")
        db.restart_fast()
        wait_until(db.is_ready, 30, "PostgreSQL to accept connections after the restart")
        ready_at = time.monotonic()
        _wait_for_late_calls(load, ready_at)
    errors = _check_gap_outcomes(load, ready_at)
    assert_same_process(srv, pid)
    assert srv.get("/readyz").status == 200
    print(f"\nrestart: {len(load.all())} calls, {len(errors)} 'database unavailable' during the gap"
          + (f" e.g. {errors[0].detail!r}" if errors else ""))


def test_database_stopped_under_load_fails_fast_then_recovers(db, start_server):
    """The gap held open until it is observed: every call in it is a quick isError, never 5xx/hang."""
    srv = start_server(DATABASE_URL=db.ro_dsn, MCP_POOL_MAX="4")
    pid = srv.proc.pid
    with Load(srv, 4, NUMBERS_SQL, timeout=10.0) as load:
        wait_until(lambda: load.count(lambda o: o.ok) >= 20, 15, "successful calls before the stop")
        db.stop_fast()
        stopped_at = time.monotonic()
        wait_until(lambda: load.count(lambda o: o.started > stopped_at and o.kind == "is_error") >= 20, 30,
                   "clients to see 'database unavailable' errors while PostgreSQL is down")
        r = srv.get("/readyz")
        assert r.status == 503 and r.json()["ok"] is False and r.json()["database"] == "down"
        assert r.json()["reason"] in ("unreachable", "refused"), r.json()
        assert srv.get("/healthz").status == 200
        db.start_again()
        ready_at = time.monotonic()
        _wait_for_late_calls(load, ready_at)
    errors = _check_gap_outcomes(load, ready_at)
    assert errors, "the stop must have produced tool errors"
    assert_same_process(srv, pid)
    r = srv.get("/readyz")
    assert (r.status, r.json()) == (200, {"ok": True, "database": "up"})
    print(f"\nstop/start: e.g. {errors[0].detail!r}")


def test_server_starts_with_the_database_down_and_serves_once_it_is_up(db, start_server):
    db.stop_fast()
    srv = start_server(DATABASE_URL=db.ro_dsn)  # waits for /healthz 200: start-up did not block
    pid = srv.proc.pid
    assert srv.get("/healthz").status == 200
    r = srv.get("/readyz")
    assert r.status == 503 and r.json()["ok"] is False and r.json()["database"] == "down"
    assert r.json()["reason"] in ("unreachable", "refused"), r.json()
    err = srv.tool_error("query", {"sql": NUMBERS_SQL})
    assert err.startswith(UNAVAILABLE), err
    assert len(err) > len(UNAVAILABLE), "the reason must follow"

    db.start_again()
    assert srv.query(NUMBERS_SQL)["rows"] == NUMBERS_RESULT  # the very first call after it is up
    r = srv.get("/readyz")
    assert (r.status, r.json()) == (200, {"ok": True, "database": "up"})
    assert_same_process(srv, pid)
    assert "database role checked" in srv.stderr_text()  # the deferred role check ran on first connect


def test_server_starts_against_a_closed_port(start_server):
    dead = f"postgresql://{RO_ROLE}:x@127.0.0.1:{free_port()}/{DB_NAME}"
    srv = start_server(DATABASE_URL=dead)
    assert srv.get("/healthz").status == 200
    r = srv.get("/readyz")
    assert r.status == 503 and r.json()["ok"] is False and r.json()["database"] == "down"
    assert r.json()["reason"] in ("unreachable", "refused"), r.json()
    for _ in range(3):  # repeatedly, and the process stays up
        err = srv.tool_error("query", {"sql": "SELECT 1"})
        assert err.startswith(UNAVAILABLE) and len(err) > len(UNAVAILABLE), err
    assert srv.proc.poll() is None


# ── concurrency: pool queueing and the connection cap ──────────────────────────

def test_200_concurrent_clients_queue_on_a_pool_of_4(db, start_server):
    srv = start_server(DATABASE_URL=db.ro_dsn, MCP_POOL_MAX="4")
    n = 200
    barrier = threading.Barrier(n)
    results: list[Outcome | None] = [None] * n
    peak = {"backends": 0, "in_use": 0, "waiters": 0}
    done = threading.Event()

    def client(i: int) -> None:
        c = McpClient(srv, timeout=30)
        try:
            barrier.wait(timeout=30)
            results[i] = c.query(f"SELECT pg_sleep(0.05), {i} AS i")
        finally:
            c.close()

    def monitor() -> None:
        while not done.is_set():
            peak["backends"] = max(peak["backends"], db.app_backends())
            fams = metrics(srv)
            peak["in_use"] = max(peak["in_use"], metric_sum(fams, "mcp_pool_in_use"))
            peak["waiters"] = max(peak["waiters"], metric_sum(fams, "mcp_pool_waiters"))
            time.sleep(0.05)  # sampling pace

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(n)]
    mon = threading.Thread(target=monitor, daemon=True)
    mon.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    done.set()
    mon.join(timeout=30)
    assert not any(t.is_alive() for t in threads), "a client hung"
    outcomes = [r for r in results if r is not None]
    assert len(outcomes) == n
    assert all(o.ok for o in outcomes), summarize(outcomes)
    assert sorted(o.result["rows"][0]["i"] for o in outcomes) == list(range(n))
    assert peak["backends"] <= 4, f"pool must bound backends to MCP_POOL_MAX=4, saw {peak['backends']}"
    assert peak["in_use"] <= 4, peak
    print(f"\npool of 4: peak {peak}")


def test_pool_wait_limit_gives_server_busy(db, start_server):
    srv = start_server(DATABASE_URL=db.ro_dsn, MCP_POOL_MAX="1", MCP_POOL_WAIT_MS="300")
    tag = "busy_" + secrets.token_hex(4)
    holder: list[Outcome] = []
    t = threading.Thread(target=lambda: holder.append(McpClient(srv).query(f"SELECT pg_sleep(3), '{tag}' AS tag")),
                         daemon=True)
    t.start()
    wait_until(lambda: db.active_query_running(tag), 10, "the 3 s query to hold the only connection")
    # another analyst: the holder's own second call would wait for its own share instead (test_limits)
    r = srv.post("/mcp", tool_call_body("SELECT 1 AS one"), headers={"MCP-Protocol-Version": "2025-11-25"},
                 caller="bob")
    assert r.status == 200, r.text
    result = r.json()["result"]
    assert result["isError"] is True
    assert result["content"][0]["text"].startswith("server busy"), result
    t.join(timeout=30)
    assert holder and holder[0].ok, holder
    assert srv.query("SELECT 1 AS one")["rows"] == [{"one": 1}]


def test_300_clients_against_256_connections(db, start_server):
    cap, n = 256, 300
    srv = start_server(DATABASE_URL=db.ro_dsn, MCP_MAX_CONNECTIONS=str(cap))
    assert srv.query("SELECT 1 AS one")["rows"] == [{"one": 1}]
    socks: list[socket.socket] = []
    try:
        for _ in range(n):  # each holds its connection open, sending nothing yet
            socks.append(socket.create_connection(("127.0.0.1", srv.port), timeout=10))
        readers = {s: ResponseReader(s) for s in socks}

        # The connections over the cap are answered at once, without sending anything.
        sel = selectors.DefaultSelector()
        for s in socks:
            sel.register(s, selectors.EVENT_READ)
        readable: set[socket.socket] = set()

        def enough_rejected():
            for key, _ in sel.select(timeout=0.1):
                readable.add(key.fileobj)
                sel.unregister(key.fileobj)
            return len(readable) >= n - cap
        wait_until(enough_rejected, 10, f"{n - cap} connections over the cap to be answered")
        sel.close()
        early = {s: readers[s].read_response(deadline_s=5) for s in readable}
        for s, resp in early.items():
            assert resp is not None and resp.status == 503, resp
            assert resp.headers.get("retry-after"), resp.headers
            assert "server busy" in resp.body.decode()

        # The held ones now send a real tool call each and are all answered.
        rest = [s for s in socks if s not in readable]
        body = tool_call_body("SELECT 1 AS one")
        req = raw_request("POST", "/mcp", mcp_headers(srv, len(body)), body)
        for s in rest:
            s.sendall(req)
        late = {s: readers[s].read_response(deadline_s=30) for s in rest}
    finally:
        for s in socks:
            s.close()
    statuses = [r.status if r else None for r in late.values()]
    served = [r for r in late.values() if r is not None and r.status == 200]
    late_503 = [r for r in late.values() if r is not None and r.status == 503]
    assert set(statuses) <= {200, 503}, statuses  # none hang, none closed silently, never 500
    for r in served:
        assert r.json()["result"]["structuredContent"]["rows"] == [{"one": 1}], r.body[:300]
    rejected = len(early) + len(late_503)
    # exactly n - cap in principle; a slot still held by the start-up probe can add one or two
    assert n - cap <= rejected <= n - cap + 2, (len(early), len(late_503))
    assert len(served) + rejected == n
    assert srv.query("SELECT 1 AS one")["rows"] == [{"one": 1}]
    print(f"\n300 vs 256: {len(served)} served, {rejected} got 503")


# ── a query error the session survives keeps its connection ───────────────────

def test_statement_timeout_keeps_the_connection_in_the_pool(db, start_server):
    srv = start_server(DATABASE_URL=db.ro_dsn, MCP_POOL_MAX="1", MCP_STATEMENT_TIMEOUT_MS="200")
    pid_before = srv.query("SELECT pg_backend_pid() AS pid")["rows"][0]["pid"]
    err = srv.tool_error("query", {"sql": "SELECT count(*) FROM generate_series(1, 100000000)"})
    assert "57014" in err, err
    assert "timeout" in err, err
    pid_after = srv.query("SELECT pg_backend_pid() AS pid")["rows"][0]["pid"]
    assert pid_after == pid_before, "a statement timeout must not cost the pooled connection"
    assert srv.query(NUMBERS_SQL)["rows"] == NUMBERS_RESULT


# ── graceful shutdown ──────────────────────────────────────────────────────────

def test_sigterm_delivers_the_in_flight_answer_then_exits_0(db, server_factory):
    srv = server_factory(DATABASE_URL=db.ro_dsn, MCP_SHUTDOWN_GRACE_S="30")
    tag = "drain_" + secrets.token_hex(4)
    # an idle keep-alive connection must not hold the drain up
    idle = McpClient(srv)
    assert idle.get("/healthz") == (200, b'{"ok":true}')
    box: dict = {}

    def slow_call():
        try:
            box["response"] = srv.post("/mcp", tool_call_body(f"SELECT pg_sleep(2), '{tag}' AS tag"),
                                       headers={"MCP-Protocol-Version": "2025-11-25"})
        except Exception as exc:  # noqa: BLE001
            box["error"] = exc

    t = threading.Thread(target=slow_call, daemon=True)
    t.start()
    wait_until(lambda: db.active_query_running(tag), 10, "the 2 s query to be running")
    srv.proc.send_signal(signal.SIGTERM)

    def refused():
        try:
            socket.create_connection(("127.0.0.1", srv.port), timeout=2).close()
            return False
        except ConnectionRefusedError:
            return True
    wait_until(refused, 5, "new connections to be refused after SIGTERM")
    in_flight_when_refused = t.is_alive()

    t.join(timeout=30)
    assert "error" not in box, f"the in-flight request failed: {box.get('error')!r}"
    r = box["response"]
    assert r.status == 200, r.text
    result = r.json()["result"]
    assert not result.get("isError"), (result, srv.stderr_text()[-2000:])
    assert result["structuredContent"]["rows"][0]["tag"] == tag
    assert result["structuredContent"]["row_count"] == 1
    assert srv.proc.wait(timeout=15) == 0, srv.stderr_text()[-3000:]
    assert in_flight_when_refused, "the listener must close while the in-flight request is still running"
    err = srv.stderr_text()
    assert "shutting down" in err and "stopped" in err, err[-2000:]
    idle.close()


# ── /metrics ───────────────────────────────────────────────────────────────────

def test_metrics_parse_and_move(db, start_server):
    srv = start_server(DATABASE_URL=db.ro_dsn, MCP_POOL_MAX="3")
    m0 = metrics(srv)
    for fam in ("mcp_tool_calls_total", "mcp_db_retries_total", "mcp_db_disconnects_total",
                "mcp_http_requests_total", "mcp_tool_duration_seconds"):
        assert fam in m0, f"missing family {fam}"
    for gauge in ("mcp_pool_max", "mcp_pool_open", "mcp_pool_idle", "mcp_pool_in_use", "mcp_pool_waiters"):
        assert m0[gauge]["type"] == "gauge", gauge
    assert metric_sum(m0, "mcp_pool_max") == 3
    assert m0["mcp_tool_calls_total"]["type"] == "counter"
    assert m0["mcp_tool_duration_seconds"]["type"] == "histogram"

    assert srv.query(NUMBERS_SQL)["rows"] == NUMBERS_RESULT
    srv.tool_error("query", {"sql": "SELECT * FROM reporting.no_such_table"})
    m1 = metrics(srv)
    assert (metric_sum(m1, "mcp_tool_calls_total", tool="query")
            == metric_sum(m0, "mcp_tool_calls_total", tool="query") + 2)
    assert metric_sum(m1, "mcp_pool_open") >= 1 and metric_sum(m1, "mcp_pool_idle") >= 1
    assert metric_sum(m1, "mcp_pool_in_use") == 0
    assert metric_sum(m1, "mcp_db_errors_total", **{"class": "42"}) >= 1
    assert metric_sum(m1, "mcp_tool_duration_seconds_count", tool="query") >= 2

    # kill the idle pooled backend: the next call retries once, invisibly, and the counter moves
    assert db.terminate_app_backends() >= 1
    wait_until(lambda: db.app_backends() == 0, 10, "the terminated backend to be gone")
    assert srv.query(NUMBERS_SQL)["rows"] == NUMBERS_RESULT
    m2 = metrics(srv)
    assert metric_sum(m2, "mcp_db_retries_total") == metric_sum(m1, "mcp_db_retries_total") + 1
    assert metric_sum(m2, "mcp_db_disconnects_total") >= metric_sum(m1, "mcp_db_disconnects_total") + 1
    # no secrets or SQL in the exposition
    text = srv.get("/metrics").text
    assert srv.tokens and "SELECT" not in text and not any(tok in text for tok in srv.tokens.values())


def test_sigint_drains_and_exits_0_too(db, server_factory):
    srv = server_factory(DATABASE_URL=db.ro_dsn)
    assert srv.query(NUMBERS_SQL)["rows"] == NUMBERS_RESULT
    srv.proc.send_signal(signal.SIGINT)
    assert srv.proc.wait(timeout=15) == 0, srv.stderr_text()[-2000:]


def test_shutdown_grace_period_bounds_the_drain(db, server_factory):
    """A query outliving MCP_SHUTDOWN_GRACE_S does not keep the process: it exits 0 and the backend's
    query is cancelled rather than left running."""
    srv = server_factory(DATABASE_URL=db.ro_dsn, MCP_SHUTDOWN_GRACE_S="1")
    tag = "grace_" + secrets.token_hex(4)
    t = threading.Thread(target=lambda: McpClient(srv, timeout=30).query(f"SELECT pg_sleep(20), '{tag}' AS tag"),
                         daemon=True)
    t.start()
    wait_until(lambda: db.active_query_running(tag), 10, "the 20 s query to be running")
    srv.proc.send_signal(signal.SIGTERM)
    assert srv.proc.wait(timeout=15) == 0, srv.stderr_text()[-2000:]
    wait_until(lambda: not db.active_query_running(tag), 8, "the abandoned query to be cancelled")
    assert "grace period" in srv.stderr_text(), \
        "the drain should have let the query run for its grace period, then cancelled it:\n" + srv.stderr_text()[-1500:]
    t.join(timeout=30)


# ── the pool's own hygiene ─────────────────────────────────────────────────────

def test_idle_connections_are_closed_after_mcp_pool_idle_s(db, start_server):
    srv = start_server(DATABASE_URL=db.ro_dsn, MCP_POOL_IDLE_S="1")
    wait_until(lambda: db.app_backends() == 0, 15, "earlier servers' backends to be gone")
    assert srv.query(NUMBERS_SQL)["rows"] == NUMBERS_RESULT
    assert db.app_backends() >= 1  # (the start-up probe may have opened a second one)
    wait_until(lambda: db.app_backends() == 0, 15, "the idle pooled connection to be closed by the pool")
    assert metric_sum(metrics(srv), "mcp_pool_open") == 0
    assert srv.query(NUMBERS_SQL)["rows"] == NUMBERS_RESULT  # and a new one opens on demand


def test_idle_session_timeout_reaping_is_survived_transparently(db, start_server):
    db.psql(f"ALTER ROLE {RO_ROLE} SET idle_session_timeout = '300ms'")
    try:
        srv = start_server(DATABASE_URL=db.ro_dsn, MCP_POOL_MAX="2")
        assert srv.query(NUMBERS_SQL)["rows"] == NUMBERS_RESULT
        wait_until(lambda: db.app_backends() == 0, 15, "PostgreSQL to reap the idle session")
        before = metric_sum(metrics(srv), "mcp_db_retries_total")
        assert srv.query(NUMBERS_SQL)["rows"] == NUMBERS_RESULT
        assert metric_sum(metrics(srv), "mcp_db_retries_total") <= before + 1
    finally:
        db.psql(f"ALTER ROLE {RO_ROLE} RESET idle_session_timeout")


def test_session_settings_do_not_depend_on_server_defaults(db, start_server):
    db.psql(f"ALTER ROLE {RO_ROLE} IN DATABASE {DB_NAME} SET TimeZone = 'Asia/Tokyo'; "
            f"ALTER ROLE {RO_ROLE} IN DATABASE {DB_NAME} SET DateStyle = 'SQL, DMY'; "
            f"ALTER ROLE {RO_ROLE} IN DATABASE {DB_NAME} SET IntervalStyle = 'postgres_verbose'")
    try:
        srv = start_server(DATABASE_URL=db.ro_dsn)
        row = srv.query("SELECT current_setting('application_name') AS app, current_setting('TimeZone') AS tz, "
                        "current_setting('DateStyle') AS ds, current_setting('IntervalStyle') AS ist, "
                        "timestamptz '2024-03-01 08:00:00+00' AS ts")["rows"][0]
        assert row["app"] == APP and row["tz"] == "UTC", row
        assert row["ds"].startswith("ISO") and row["ist"] in ("iso_8601", "postgres"), row
        assert row["ts"].startswith("2024-03-01") and row["ts"].rstrip().endswith(("+00", "+00:00", "Z")), row
    finally:
        db.psql(f"ALTER ROLE {RO_ROLE} IN DATABASE {DB_NAME} RESET ALL")
