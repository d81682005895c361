"""MCP over JSON-RPC on the handshake-era wire (2025-03-26 / 2025-06-18 / 2025-11-25)."""

from __future__ import annotations

import json
import re

import pytest

from conftest import run_binary

HANDSHAKE_VERSIONS = ["2025-03-26", "2025-06-18", "2025-11-25"]
LATEST_HANDSHAKE = "2025-11-25"
TOOL_NAMES = {"query", "list_schemas", "list_tables", "describe_table", "list_functions", "sample_table",
              "explain", "profile_columns", "find_join_path", "search_objects", "list_databases"}
ANNOTATIONS = {"readOnlyHint": True, "destructiveHint": False, "idempotentHint": True, "openWorldHint": False}


def init_params(version):
    return {"protocolVersion": version, "capabilities": {"roots": {"listChanged": True}},
            "clientInfo": {"name": "e2e-tests", "version": "1.0.0"}}


# ── initialize ─────────────────────────────────────────────────────────────────

@pytest.mark.parametrize("version", HANDSHAKE_VERSIONS)
def test_initialize_echoes_a_supported_version(server, version):
    # real clients send initialize without an MCP-Protocol-Version header
    env = server.rpc("initialize", init_params(version), version_header=None)
    assert env["result"]["protocolVersion"] == version


def test_initialize_also_accepted_with_a_version_header(server):
    # the conformance suite sends the header on initialize too
    env = server.rpc("initialize", init_params(LATEST_HANDSHAKE), version_header=LATEST_HANDSHAKE)
    assert env["result"]["protocolVersion"] == LATEST_HANDSHAKE


@pytest.mark.parametrize("requested", ["2024-11-05", "1999-01-01", "2099-12-31", "not-a-version"])
def test_initialize_with_unsupported_version_answers_latest(server, requested):
    env = server.rpc("initialize", init_params(requested), version_header=None)
    assert "error" not in env, env
    assert env["result"]["protocolVersion"] == LATEST_HANDSHAKE


def test_initialize_result_describes_the_server(server):
    result = server.rpc("initialize", init_params(LATEST_HANDSHAKE), version_header=None)["result"]
    info = result["serverInfo"]
    assert info["name"] == "analytics-mcp"
    assert isinstance(info.get("title"), str) and info["title"].strip()
    version = run_binary(["--version"]).stdout
    assert info["version"] and info["version"] in version
    assert isinstance(result["capabilities"].get("tools"), dict)
    # instructions tell the model what this is and how to use it
    instructions = result.get("instructions")
    assert isinstance(instructions, str) and len(instructions) > 40
    assert "query" in instructions
    assert re.search(r"read[- ]only|SELECT", instructions, re.I)
    # stateless server: no session id minted
    r = server.rpc_raw("initialize", init_params(LATEST_HANDSHAKE), version_header=None)
    assert r.headers.get("Mcp-Session-Id") is None


def test_full_claude_code_style_handshake(server):
    # the exact shapes Claude Code sends: no jsonrpc-first key order, no params on tools/list
    r = server.post("/mcp", '{"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":'
                            '{"roots":{"listChanged":true},"elicitation":{}},"clientInfo":{"name":"claude-code",'
                            '"version":"2.1.330"}},"jsonrpc":"2.0","id":0}', headers={"MCP-Protocol-Version": None})
    assert r.status == 200
    assert r.json()["id"] == 0
    assert r.json()["result"]["protocolVersion"] == "2025-11-25"
    r = server.post("/mcp", {"jsonrpc": "2.0", "method": "notifications/initialized"},
                    headers={"MCP-Protocol-Version": "2025-11-25"})
    assert r.status == 202
    assert r.body == b""
    r = server.post("/mcp", '{"method":"tools/list","jsonrpc":"2.0","id":1}',
                    headers={"MCP-Protocol-Version": "2025-11-25"})
    assert r.status == 200
    assert {t["name"] for t in r.json()["result"]["tools"]} == TOOL_NAMES


# ── MCP-Protocol-Version header ────────────────────────────────────────────────

def test_no_version_header_works_as_2025_03_26(server):
    env = server.rpc("tools/list", version_header=None)
    assert {t["name"] for t in env["result"]["tools"]} == TOOL_NAMES
    res = server.call_tool("query", {"sql": "SELECT 1 AS one"}, version_header=None)
    assert res["structuredContent"]["rows"] == [{"one": 1}]


@pytest.mark.parametrize("version", HANDSHAKE_VERSIONS)
def test_each_supported_version_header_is_served(server, version):
    env = server.rpc("tools/list", version_header=version)
    assert len(env["result"]["tools"]) == len(TOOL_NAMES)


@pytest.mark.parametrize("bad", ["2099-01-01", "2024-11-05", "garbage", ""])
def test_unsupported_version_header_is_400(server, bad):
    r = server.rpc_raw("tools/list", id=5, version_header=bad)
    assert r.status == 400, r.text
    body = r.json()
    assert body["jsonrpc"] == "2.0"
    assert "error" in body and "result" not in body
    assert isinstance(body["error"]["code"], int)


def test_unsupported_version_header_runs_no_tool(server, pg):
    r = server.rpc_raw("tools/call", {"name": "query", "arguments": {"sql": "SELECT 1"}}, version_header="2099-01-01")
    assert r.status == 400
    assert "structuredContent" not in r.text


# ── batches ────────────────────────────────────────────────────────────────────

def batch_body():
    return [{"jsonrpc": "2.0", "id": 1, "method": "ping"},
            {"jsonrpc": "2.0", "method": "notifications/initialized"},
            {"jsonrpc": "2.0", "id": "two", "method": "tools/call",
             "params": {"name": "query", "arguments": {"sql": "SELECT 2 AS two"}}}]


def test_batch_accepted_without_version_header(server):
    r = server.post("/mcp", batch_body(), headers={"MCP-Protocol-Version": None})
    assert r.status == 200, r.text
    replies = r.json()
    assert isinstance(replies, list)
    by_id = {m["id"]: m for m in replies}
    assert set(by_id) == {1, "two"}  # no reply for the notification
    assert by_id[1]["result"] == {}
    assert by_id["two"]["result"]["structuredContent"]["rows"] == [{"two": 2}]


def test_batch_accepted_with_2025_03_26_header(server):
    r = server.post("/mcp", batch_body()[:1], headers={"MCP-Protocol-Version": "2025-03-26"})
    assert r.status == 200
    assert r.json() == [{"jsonrpc": "2.0", "id": 1, "result": {}}]


@pytest.mark.parametrize("version", ["2025-06-18", "2025-11-25"])
def test_batch_rejected_from_2025_06_18(server, version):
    r = server.post("/mcp", batch_body(), headers={"MCP-Protocol-Version": version})
    assert "structuredContent" not in r.text, "no batched call may run"
    if r.status == 200:
        body = r.json()
        assert isinstance(body, dict) and body["error"]["code"] == -32600, body
    else:
        assert r.status == 400, r.text


def test_batch_of_only_notifications_is_202(server):
    r = server.post("/mcp", [{"jsonrpc": "2.0", "method": "notifications/initialized"}],
                    headers={"MCP-Protocol-Version": None})
    assert r.status == 202
    assert r.body == b""


def test_empty_batch_is_invalid_request(server):
    r = server.post("/mcp", [], headers={"MCP-Protocol-Version": None})
    assert r.status in (200, 400)
    body = r.json()
    assert body["error"]["code"] == -32600
    assert body["id"] is None


# ── JSON-RPC errors ────────────────────────────────────────────────────────────

@pytest.mark.parametrize("body,expected_id", [
    ({"jsonrpc": "1.0", "id": 3, "method": "ping"}, 3),
    ({"id": 4, "method": "ping"}, 4),
    ({"jsonrpc": "2.0", "id": 5}, 5),
    ({"jsonrpc": "2.0", "id": 6, "method": 42}, 6),
    (b'"just a string"', None),
    (b"17", None),
    ({"jsonrpc": "2.0", "id": {"obj": 1}, "method": "ping"}, None),
], ids=["jsonrpc-1.0", "no-jsonrpc", "no-method", "method-not-string", "string", "number", "object-id"])
def test_invalid_request_is_32600(server, body, expected_id):
    r = server.post("/mcp", body)
    assert r.status in (200, 400), r.text
    env = r.json()
    assert env["jsonrpc"] == "2.0"
    assert env["error"]["code"] == -32600, env
    assert env["id"] == expected_id


@pytest.mark.parametrize("method", ["foo/bar", "resources/list", "prompts/list", "tools/delete", "Tools/List"])
def test_unknown_method_is_32601(server, method):
    env = server.rpc(method, {}, id="m-1")
    assert env["error"]["code"] == -32601, env
    assert env["id"] == "m-1"


@pytest.mark.parametrize("id_value", [0, -1, 2 ** 53, "abc", "", "ü🚀"])
def test_request_ids_are_echoed_exactly(server, id_value):
    env = server.rpc("ping", id=id_value)
    assert env["id"] == id_value and type(env["id"]) is type(id_value)


def test_ping_result_is_exactly_empty(server):
    env = server.rpc("ping", id=9)
    assert env == {"jsonrpc": "2.0", "id": 9, "result": {}}


@pytest.mark.parametrize("name,args", [
    ("no_such_tool", {}),
    ("query", {}),
    ("query", {"sql": "SELECT 1", "extra": True}),
    ("query", {"sql": 123}),
    ("query", {"sql": None}),
    ("query", {"sql": "SELECT 1", "max_rows": "10"}),
    ("query", {"sql": "SELECT 1", "max_rows": 1.5}),
    ("query", {"sql": ["SELECT 1"]}),
    ("list_tables", {}),
    ("list_tables", {"schema": 1}),
    ("describe_table", {"schema": "reporting"}),
    ("sample_table", {"table": "canary"}),
    ("sample_table", {"schema": "reporting", "table": "canary", "n": "5"}),
    ("list_schemas", {"schema": "reporting"}),
], ids=lambda v: json.dumps(v) if isinstance(v, dict) else v)
def test_unknown_tool_or_bad_arguments_is_32602(server, name, args):
    env = server.call_tool_envelope(name, args, id="bad")
    assert "error" in env, f"expected JSON-RPC error, got {env}"
    assert env["error"]["code"] == -32602, env
    assert env["id"] == "bad"


def test_arguments_not_an_object_is_32602(server):
    env = server.rpc("tools/call", {"name": "query", "arguments": ["SELECT 1"]})
    assert env["error"]["code"] == -32602


def test_tools_call_without_name_is_32602(server):
    env = server.rpc("tools/call", {"arguments": {"sql": "SELECT 1"}})
    assert env["error"]["code"] == -32602


def test_tool_without_required_args_can_omit_arguments(server):
    res = server.call_tool("list_schemas", None)
    assert "schemas" in res["structuredContent"]


# ── notifications ──────────────────────────────────────────────────────────────

@pytest.mark.parametrize("msg", [
    {"jsonrpc": "2.0", "method": "notifications/initialized"},
    {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 1, "reason": "x"}},
    {"jsonrpc": "2.0", "method": "notifications/roots/list_changed"},
    {"jsonrpc": "2.0", "method": "notifications/whatever"},
    {"jsonrpc": "2.0", "id": 77, "result": {}},  # a client *response* is accepted the same way
], ids=["initialized", "cancelled", "roots", "unknown", "client-response"])
def test_notifications_and_client_responses_are_202_empty(server, msg):
    r = server.post("/mcp", msg)
    assert r.status == 202, r.text
    assert r.body == b""


# ── tools/list ─────────────────────────────────────────────────────────────────

@pytest.fixture(scope="module")
def tools(server):
    env = server.rpc("tools/list", {})
    return {t["name"]: t for t in env["result"]["tools"]}


def test_tools_list_has_exactly_the_ten_tools(tools):
    assert set(tools) == TOOL_NAMES


@pytest.mark.parametrize("name", sorted(TOOL_NAMES))
def test_each_tool_is_fully_described(tools, name):
    t = tools[name]
    assert isinstance(t.get("title"), str) and t["title"].strip()
    assert isinstance(t.get("description"), str) and len(t["description"]) > 20
    schema = t["inputSchema"]
    assert schema["type"] == "object"
    assert schema.get("additionalProperties") is False
    assert isinstance(schema.get("properties", {}), dict)
    out = t["outputSchema"]
    assert out["type"] == "object" and isinstance(out.get("properties"), dict) and out["properties"]
    assert t["annotations"] == {**t["annotations"], **ANNOTATIONS}
    for k, v in ANNOTATIONS.items():
        assert t["annotations"][k] is v


@pytest.mark.parametrize("name,required,optional", [
    # the seed's arguments; query and sample_table gained format (compact results), the catalog
    # listings an optional cursor (paging), every tool but list_databases an optional database
    ("query", {"sql"}, {"max_rows", "format", "database"}),
    ("list_schemas", set(), {"cursor", "database"}),
    ("list_tables", {"schema"}, {"cursor", "database"}),
    ("describe_table", {"schema", "table"}, {"cursor", "database"}),
    ("list_functions", set(), {"schema", "cursor", "database"}),
    ("sample_table", {"schema", "table"}, {"n", "format", "database"}),
    ("explain", {"sql"}, {"analyze", "buffers", "database"}),
    ("profile_columns", {"schema", "table"}, {"columns", "sample", "cursor", "database"}),
    ("find_join_path", {"from", "to"}, {"max_hops", "database"}),
    ("search_objects", {"query"}, {"kinds", "schema", "limit", "cursor", "database"}),
    ("list_databases", set(), set()),
])
def test_tool_arguments_match_the_seed(tools, name, required, optional):
    schema = tools[name]["inputSchema"]
    assert set(schema.get("required", [])) == required
    assert set(schema.get("properties", {})) == required | optional


def test_tool_defaults_match_the_seed(tools):
    assert tools["query"]["inputSchema"]["properties"]["max_rows"].get("default") == 1000
    assert tools["sample_table"]["inputSchema"]["properties"]["n"].get("default") == 20
    assert tools["list_functions"]["inputSchema"]["properties"]["schema"].get("default") == "reporting"


def test_query_output_schema_names_the_result_fields(tools):
    props = tools["query"]["outputSchema"]["properties"]
    assert {"row_count", "truncated", "rows", "columns"} <= set(props)


def test_tools_list_is_deterministic(server):
    a = server.rpc("tools/list")["result"]
    b = server.rpc("tools/list")["result"]
    assert a == b


def test_legacy_results_carry_no_2026_fields(server):
    result = server.rpc("tools/list", version_header=LATEST_HANDSHAKE)["result"]
    assert "resultType" not in result and "ttlMs" not in result and "cacheScope" not in result
