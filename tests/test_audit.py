"""Audit: one stderr line per tool call, naming the caller, never a token or a password."""

from __future__ import annotations

import json
import secrets

import pytest


@pytest.fixture(scope="module")
def audited(server_factory):
    return server_factory()


def marker() -> str:
    return "audit_" + secrets.token_hex(6)


def lines_with(srv, needle: str, count: int = 1) -> list[str]:
    text = srv.wait_for_stderr(lambda t: t.count(needle) >= count, f"audit line containing {needle}")
    return [line for line in text.splitlines() if needle in line]


def test_one_line_per_tool_call_with_caller_tool_and_rows(audited):
    m = marker()
    audited.query(f"SELECT i FROM generate_series(1, 3) AS i -- {m}")
    lines = lines_with(audited, m)
    assert len(lines) == 1, lines
    line = lines[0]
    assert "alice" in line and "query" in line
    assert "3" in line  # rows
    assert "SELECT i FROM generate_series" in line


def test_caller_name_is_the_authenticated_one(audited):
    m = marker()
    audited.call_tool("query", {"sql": f"SELECT 1 -- {m}"}, caller="bob")
    line = lines_with(audited, m)[0]
    assert "bob" in line and "alice" not in line


def test_every_tool_is_audited(audited):
    before = audited.stderr_text().count("\n")
    audited.tool("list_schemas", {})
    audited.tool("list_tables", {"schema": "reporting"})
    audited.tool("describe_table", {"schema": "fleet", "table": "trips"})
    audited.tool("list_functions", {})
    audited.tool("sample_table", {"schema": "reporting", "table": "canary", "n": 1})
    names = ("list_schemas", "list_tables", "describe_table", "list_functions", "sample_table")
    text = audited.wait_for_stderr(
        lambda t: all(any(n in ln for ln in t.splitlines()[before:]) for n in names), "five audit lines")
    new = text.splitlines()[before:]
    for name in names:
        assert sum(name in ln for ln in new) == 1, (name, new)


def test_failed_call_is_audited_with_an_error_status(audited):
    m = marker()
    audited.tool_error("query", {"sql": f"SELECT 1/0 -- {m}"})
    line = lines_with(audited, m)[0]
    assert "alice" in line
    assert any(w in line.lower() for w in ("error", "fail", "22012")), line


def test_guard_refusal_is_audited(audited):
    m = marker()
    audited.tool_error("query", {"sql": f"DELETE FROM reporting.canary -- {m}"})
    assert len(lines_with(audited, m)) == 1


def test_sql_newlines_are_escaped(audited):
    m = marker()
    audited.query(f"SELECT 1 AS x\n-- {m}\n, 2 AS y")
    line = lines_with(audited, m)[0]
    assert "SELECT 1 AS x" in line, "the statement must stay on one audit line"
    # escaped once: the reader sees \n where the newline was, not \\n
    assert "SELECT 1 AS x\\n-- " in line, line
    assert "SELECT 1 AS x\\\\n" not in line, line


def test_sql_backslashes_are_escaped_once(audited):
    m = marker()
    bs = "\\"
    audited.query(f"SELECT E'a{bs * 2}b' AS x -- {m}")  # the SQL holds two backslashes
    line = lines_with(audited, m)[0]
    assert f"a{bs * 8}b" not in line, line  # eight would mean escaped twice


def test_sql_is_cut_to_200_chars(audited):
    m = marker()
    tail = "TAIL" + secrets.token_hex(4)
    audited.query(f"SELECT 1 -- {m} {'x' * 400} {tail}")
    line = lines_with(audited, m)[0]
    assert tail not in audited.stderr_text()
    assert len(line) < 200 + 400


def test_tokens_and_password_never_reach_stderr(audited, pg):
    wrong = "wrong-" + secrets.token_hex(8)
    audited.post("/mcp", {"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
                  headers={"Authorization": f"Bearer {wrong}"}, caller=None)
    m = marker()
    audited.query(f"SELECT 1 -- {m}")
    text = "\n".join(lines_with(audited, m)) and audited.stderr_text()
    for secret in [*audited.tokens.values(), wrong, pg.ro_password]:
        assert secret not in text


def test_json_log_format(start_server, pg):
    srv = start_server(MCP_LOG_FORMAT="json")
    m = marker()
    srv.query(f"SELECT 1 -- {m}")
    line = lines_with(srv, m)[0]
    obj = json.loads(line)
    assert "alice" in json.dumps(obj)
    assert m in json.dumps(obj)
    text = srv.stderr_text()
    for secret in [*srv.tokens.values(), pg.ro_password]:
        assert secret not in text
