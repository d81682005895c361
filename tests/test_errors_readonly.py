"""Errors an analyst can act on, and data that can never change."""

from __future__ import annotations

import re

import pytest


def sqlstate(text: str) -> str | None:
    m = re.search(r"\(([0-9A-Z]{5})\)\s*$", text)
    return m.group(1) if m else None


# ── database errors come back as isError results with the SQLSTATE ────────────

@pytest.mark.parametrize("sql,state,words", [
    ("SELECT * FROM infrastructure.secrets", "42501", "permission denied for schema infrastructure"),
    ("SELECT * FROM infrastructure.canary", "42501", "permission denied"),
    ("SELECT 1 +", "42601", "syntax error"),
    ("SELECT * FROM reporting.no_such_table", "42P01", "no_such_table"),
    ("SELECT no_such_column FROM reporting.canary", "42703", "no_such_column"),
    ("SELECT 1/0", "22012", "division by zero"),
    ("SELECT 'abc'::int", "22P02", "invalid input syntax"),
])
def test_database_errors_are_tool_errors_with_sqlstate(server, sql, state, words):
    text = server.tool_error("query", {"sql": sql})
    assert sqlstate(text) == state, text
    assert words in text, text
    assert "not for analysts" not in text


def test_statement_timeout_is_reported_and_the_server_recovers(start_server):
    srv = start_server(MCP_STATEMENT_TIMEOUT_MS="300")
    heavy = "SELECT count(*) FROM generate_series(1, 100000) a, generate_series(1, 100000) b"
    text = srv.tool_error("query", {"sql": heavy})
    assert sqlstate(text) == "57014", text
    assert "timeout" in text.lower() or "cancel" in text.lower()
    # the pooled connection is still good afterwards
    for _ in range(3):
        assert srv.query("SELECT 1 AS ok")["rows"] == [{"ok": 1}]


def test_errors_do_not_poison_the_pool(server):
    for _ in range(12):
        server.tool_error("query", {"sql": "SELECT 1/0"})
        server.tool_error("query", {"sql": "SELECT * FROM infrastructure.secrets"})
    assert server.query("SELECT count(*) AS n FROM reporting.canary")["rows"] == [{"n": 3}]


# ── guard + read-only transaction + GRANTs: nothing ever changes ───────────────

WRITES = [
    "SELECT 1; DROP TABLE reporting.canary",
    "SELECT 1; DELETE FROM reporting.canary",
    "SELECT 1 /* ; */ ; DELETE FROM reporting.canary",
    "SELECT ';'; DELETE FROM reporting.canary",
    "DELETE FROM reporting.canary",
    "delete from reporting.canary where true",
    "WITH d AS (DELETE FROM reporting.canary RETURNING *) SELECT * FROM d",
    "WITH u AS (UPDATE reporting.canary SET note = 'x' RETURNING *) SELECT count(*) FROM u",
    "WITH i AS (INSERT INTO reporting.canary VALUES (99, 'x') RETURNING *) SELECT * FROM i",
    "UPDATE reporting.canary SET note = 'changed'",
    "INSERT INTO reporting.canary VALUES (99, 'intruder')",
    "DROP TABLE reporting.canary",
    "TRUNCATE reporting.canary",
    "ALTER TABLE reporting.canary ADD COLUMN x int",
    "CREATE TABLE reporting.evil (i int)",
    "SELECT * INTO reporting.canary_copy FROM reporting.canary",
    "COPY reporting.canary TO STDOUT",
    "DO $$ BEGIN DELETE FROM reporting.canary; END $$",
    "SET default_transaction_read_only = off",
    "SELECT set_config('default_transaction_read_only', 'off', false); DELETE FROM reporting.canary",
    "COMMIT; DELETE FROM reporting.canary",
    "BEGIN; DELETE FROM reporting.canary; COMMIT",
    "EXPLAIN ANALYZE DELETE FROM reporting.canary",
    "GRANT ALL ON reporting.canary TO PUBLIC",
    "SELECT reporting.fn_purge_canary()",
    "SELECT * FROM reporting.canary FOR UPDATE",
    "DELETE FROM infrastructure.canary",
    "SELECT 1; SELECT 2",
]


@pytest.mark.parametrize("sql", WRITES)
def test_writes_are_refused_and_canary_is_unchanged(server, canary, pg, sql):
    before = canary()
    text = server.tool_error("query", {"sql": sql})
    assert text.strip()
    assert canary() == before
    assert pg.psql("SELECT count(*) FROM pg_class WHERE relname IN ('evil', 'canary_copy')") == "0"


def test_guard_refusal_explains_itself(server):
    text = server.tool_error("query", {"sql": "SELECT 1; DROP TABLE reporting.canary"})
    assert re.search(r"single|one statement|multiple", text, re.I), text
    text = server.tool_error("query", {"sql": "DELETE FROM reporting.canary"})
    assert re.search(r"SELECT", text), text


def test_write_through_a_function_is_stopped_by_the_read_only_transaction(server, canary):
    before = canary()
    text = server.tool_error("query", {"sql": "SELECT reporting.fn_purge_canary()"})
    assert sqlstate(text) == "25006", text  # read_only_sql_transaction
    assert canary() == before


@pytest.mark.parametrize("sql", ["", "   ", "-- just a comment", "/* nothing */", ";"])
def test_empty_sql_is_refused(server, sql):
    r = server.call_tool_envelope("query", {"sql": sql})
    if "error" in r:
        assert r["error"]["code"] == -32602
    else:
        assert r["result"].get("isError") is True, r


def test_session_state_does_not_leak_between_calls(server):
    # a query cannot leave settings behind for the next caller
    server.tool_error("query", {"sql": "SELECT set_config('statement_timeout', '1', false); SELECT 1"})
    res = server.query("SELECT current_setting('transaction_read_only') AS ro")
    assert res["rows"] == [{"ro": "on"}]
    # a temp table is a write too
    text = server.tool_error("query", {"sql": "CREATE TEMP TABLE t AS SELECT 1"})
    assert text
