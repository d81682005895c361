"""Through a real PgBouncer in transaction pooling mode (tests/run's second pass only, see
conftest.py): what transaction pooling breaks in drivers, checked as an analyst would notice it.

PgBouncer 1.18 (Debian's) has no max_prepared_statements: a statement the driver prepares and
caches for the life of its connection (its type lookups for enums, domains, composite and range
types) exists only on the backend it was made on. The server keeps those to one transaction
behind a pooler; these tests make consecutive transactions land on different backends (two
server connections for the whole pool) and check every answer.
"""

from __future__ import annotations

import concurrent.futures
import json
import secrets
import socket

import pytest

from conftest import DB_NAME, RO_ROLE, PgBouncer, wait_until

TYPES_SQL = """
DO $$ BEGIN
  IF to_regtype('reporting.pgb_mood') IS NULL THEN
    CREATE TYPE reporting.pgb_mood AS ENUM ('sad', 'ok', 'happy');
    CREATE DOMAIN reporting.pgb_percent AS numeric CHECK (VALUE BETWEEN 0 AND 100);
    CREATE TYPE reporting.pgb_pair AS (a int, b text);
    CREATE TYPE reporting.pgb_span AS RANGE (subtype = int4);
    CREATE TYPE reporting.pgb_level AS ENUM ('low', 'high');
  END IF;
END $$;
GRANT USAGE ON TYPE reporting.pgb_mood, reporting.pgb_percent, reporting.pgb_pair, reporting.pgb_span,
  reporting.pgb_level TO {role};
"""

CASES = [
    ("SELECT 'happy'::reporting.pgb_mood AS v", "pgb_mood", "happy"),
    ("SELECT ARRAY['ok', 'sad']::reporting.pgb_mood[] AS v", "pgb_mood[]", ["ok", "sad"]),
    ("SELECT ROW(1, 'x')::reporting.pgb_pair AS v", "pgb_pair", {"a": 1, "b": "x"}),
    ("SELECT reporting.pgb_span(1, 5) AS v", "pgb_span", "[1,5)"),
    ("SELECT 'high'::reporting.pgb_level AS v", "pgb_level", "high"),
    ("SELECT 1 AS v", "int4", 1),
]


@pytest.fixture(scope="module")
def custom_types(pg):
    pg.psql(TYPES_SQL.format(role=RO_ROLE))


def check(srv, case) -> None:
    sql, type_name, value = case
    result = srv.query(sql)
    assert result["columns"] == [{"name": "v", "type": type_name}], (sql, result)
    assert result["rows"] == [{"v": value}], (sql, result)


def test_the_pool_really_goes_through_pgbouncer(pg, start_server):
    srv = start_server()
    assert srv.env["DATABASE_URL"].endswith(f":{pg.pgbouncer.port}/{DB_NAME}")
    srv.wait_for_stderr(lambda t: "go through a pooler or proxy" in t, "the pooler to be noticed")
    backends = {srv.query("SELECT pg_backend_pid() AS p")["rows"][0]["p"] for _ in range(30)}
    assert len(backends) <= 2  # PgBouncer's two server connections serve every call


def test_custom_types_across_backends_under_concurrency(custom_types, start_server):
    srv = start_server(MCP_POOL_MAX="6")
    for case in CASES:  # one by one first, then interleaved from six connections at once
        check(srv, case)
    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        list(pool.map(lambda i: check(srv, CASES[i % len(CASES)]), range(120)))
    text = srv.stderr_text()
    assert "does not exist" not in text and "already exists" not in text, text[-2000:]
    # the pooler was known from the first connection: no call needed a second attempt
    retries = [line for line in srv.get("/metrics").text.splitlines() if line.startswith("mcp_db_retries_total ")]
    assert retries == ["mcp_db_retries_total 0"], retries


def test_a_pooler_on_the_same_port_is_noticed_by_its_changing_backends(pg, custom_types, start_server):
    """PgBouncer on another loopback address with PostgreSQL's own port number: the port check at
    connect cannot tell, the backend pid seen by each transaction does."""
    bouncer = PgBouncer(pg, pool_size=2, listen=("127.0.0.2", pg.port), name="pgbouncer-same-port")
    bouncer.start()
    try:
        dsn = f"postgresql://{RO_ROLE}:{pg.ro_password}@127.0.0.2:{pg.port}/{DB_NAME}"
        srv = start_server(DATABASE_URL=dsn, MCP_POOL_MAX="4")
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            list(pool.map(lambda i: check(srv, CASES[i % len(CASES)]), range(80)))
        assert "go through a pooler or proxy" in srv.stderr_text()
    finally:
        bouncer.stop()


def test_lost_server_connections_are_retried(pg, start_server):
    srv = start_server(MCP_POOL_MAX="2")
    assert srv.query("SELECT 1 AS one")["rows"] == [{"one": 1}]
    killed = pg.psql("SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity "
                     f"WHERE usename = '{RO_ROLE}' AND datname = '{DB_NAME}'")
    assert int(killed) >= 1
    for _ in range(5):  # every call answers: PgBouncer reconnects, the server retries what it must
        assert srv.query("SELECT 2 AS two")["rows"] == [{"two": 2}]


def test_an_abandoned_query_is_cancelled_through_pgbouncer(pg, start_server):
    srv = start_server(MCP_STATEMENT_TIMEOUT_MS="60000")
    tag = "pgb_cancel_" + secrets.token_hex(4)
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                       "params": {"name": "query", "arguments": {"sql": f"SELECT pg_sleep(30), '{tag}' AS t"}}})
    sock = socket.create_connection(("127.0.0.1", srv.port))
    sock.sendall((f"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                  f"Accept: application/json, text/event-stream\r\nMCP-Protocol-Version: 2025-11-25\r\n"
                  f"Authorization: Bearer {srv.tokens[srv.caller]}\r\nContent-Length: {len(body)}\r\n\r\n{body}").encode())
    running = (f"SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query LIKE '%{tag}%' "
               "AND query NOT LIKE '%pg_stat_activity%'")
    wait_until(lambda: pg.psql(running) == "1", 15, "the query to run")
    sock.close()
    wait_until(lambda: pg.psql(running) == "0", 10, "the watchdog's cancel to reach PostgreSQL via PgBouncer")
