"""The 2026-07-28 revision, served natively: server/discover, per-request _meta, Mcp-Method/Mcp-Name,
resultType, caching hints. Claude Code probes server/discover first and uses it if answered."""

from __future__ import annotations

import base64
import pytest

from conftest import loads_exact

MODERN = "2026-07-28"
PV = "io.modelcontextprotocol/protocolVersion"
CAPS = "io.modelcontextprotocol/clientCapabilities"
CINFO = "io.modelcontextprotocol/clientInfo"
SINFO = "io.modelcontextprotocol/serverInfo"
HEADER_MISMATCH = -32020
UNSUPPORTED_VERSION = -32022


def meta(version=MODERN, drop=()):
    m = {PV: version, CINFO: {"name": "e2e-tests", "version": "1.0.0"}, CAPS: {}}
    for k in drop:
        m.pop(k)
    return m


def modern(server, method, params=None, id=1, headers=None, version=MODERN, name="auto", with_meta=True):
    """POST a 2026-07-28 request with conformant headers; ``headers`` override/remove (None) them."""
    params = dict(params or {})
    if with_meta:
        params["_meta"] = {**meta(version), **params.get("_meta", {})}
    msg = {"jsonrpc": "2.0", "id": id, "method": method, "params": params}
    hdrs = {"MCP-Protocol-Version": version, "Mcp-Method": method}
    if name == "auto" and method == "tools/call":
        hdrs["Mcp-Name"] = params.get("name")
    elif name not in ("auto", None):
        hdrs["Mcp-Name"] = name
    hdrs.update(headers or {})
    return server.post("/mcp", msg, headers=hdrs)


def ok_result(r, id=1):
    assert r.status == 200, (r.status, r.text)
    env = r.json()
    assert env["jsonrpc"] == "2.0" and env["id"] == id, env
    assert "error" not in env, env
    assert env["result"]["resultType"] == "complete", env["result"]
    return env["result"]


def error_of(r, status, code, id=1):
    assert r.status == status, (r.status, r.text)
    env = r.json()
    assert env["jsonrpc"] == "2.0"
    assert env["id"] == id, "error responses must echo the request id"
    assert env["error"]["code"] == code, env
    assert env["error"]["message"]
    return env["error"]


# ── server/discover ────────────────────────────────────────────────────────────

@pytest.fixture(scope="module")
def discover(server):
    return ok_result(modern(server, "server/discover"))


def test_discover_result(discover):
    assert MODERN in discover["supportedVersions"]
    # dual-era: the handshake versions are still served
    assert "2025-11-25" in discover["supportedVersions"]
    assert isinstance(discover["capabilities"]["tools"], dict)
    assert isinstance(discover["ttlMs"], int) and discover["ttlMs"] >= 0
    assert discover["cacheScope"] in ("public", "private")
    info = discover["_meta"][SINFO]
    assert info["name"] == "analytics-mcp" and info["version"]
    assert isinstance(discover.get("instructions"), str) and discover["instructions"].strip()


def test_discover_with_claude_code_probe_shape(server):
    r = server.post("/mcp", {"jsonrpc": "2.0", "id": "server-discover-probe-1", "method": "server/discover",
                             "params": {"_meta": meta()}},
                    headers={"MCP-Protocol-Version": MODERN, "Mcp-Method": "server/discover"})
    result = ok_result(r, id="server-discover-probe-1")
    assert MODERN in result["supportedVersions"]


def test_discover_needs_auth(server):
    r = server.post("/mcp", {"jsonrpc": "2.0", "id": 1, "method": "server/discover", "params": {"_meta": meta()}},
                    headers={"MCP-Protocol-Version": MODERN, "Mcp-Method": "server/discover"}, caller=None)
    assert r.status == 401
    assert r.json() == {"error": "unauthorized"}


def test_discover_without_client_info_is_fine(server):
    r = server.post("/mcp", {"jsonrpc": "2.0", "id": 1, "method": "server/discover",
                             "params": {"_meta": meta(drop=(CINFO,))}},
                    headers={"MCP-Protocol-Version": MODERN, "Mcp-Method": "server/discover"})
    ok_result(r)


@pytest.mark.parametrize("params", [
    {},
    {"_meta": meta(drop=(PV,))},
    {"_meta": meta(drop=(CAPS,))},
    None,
], ids=["no-meta", "no-protocol-version", "no-capabilities", "no-params"])
def test_missing_required_meta_is_400_invalid_params(server, params):
    msg = {"jsonrpc": "2.0", "id": 1, "method": "server/discover"}
    if params is not None:
        msg["params"] = params
    r = server.post("/mcp", msg, headers={"MCP-Protocol-Version": MODERN, "Mcp-Method": "server/discover"})
    error_of(r, 400, -32602)


# ── version checks ─────────────────────────────────────────────────────────────

def test_header_and_meta_version_mismatch_is_header_mismatch(server):
    r = server.post("/mcp", {"jsonrpc": "2.0", "id": 1, "method": "server/discover",
                             "params": {"_meta": meta("v999.0.0")}},
                    headers={"MCP-Protocol-Version": MODERN, "Mcp-Method": "server/discover"})
    error_of(r, 400, HEADER_MISMATCH)


def test_unsupported_version_lists_supported(server, discover):
    r = modern(server, "server/discover", version="v999.0.0")
    err = error_of(r, 400, UNSUPPORTED_VERSION)
    assert err["data"]["requested"] == "v999.0.0"
    supported = err["data"]["supported"]
    assert supported and set(supported) <= set(discover["supportedVersions"])


def test_meta_says_legacy_version_under_modern_header_is_mismatch(server):
    r = server.post("/mcp", {"jsonrpc": "2.0", "id": 1, "method": "tools/list",
                             "params": {"_meta": meta("2025-11-25")}},
                    headers={"MCP-Protocol-Version": MODERN, "Mcp-Method": "tools/list"})
    error_of(r, 400, HEADER_MISMATCH)


# ── Mcp-Method / Mcp-Name ──────────────────────────────────────────────────────

def test_mcp_method_mismatch(server):
    error_of(modern(server, "tools/list", headers={"Mcp-Method": "prompts/list"}), 400, HEADER_MISMATCH)


def test_mcp_method_missing(server):
    error_of(modern(server, "tools/list", headers={"Mcp-Method": None}), 400, HEADER_MISMATCH)


def test_mcp_method_value_is_case_sensitive(server):
    error_of(modern(server, "tools/list", headers={"Mcp-Method": "TOOLS/LIST"}), 400, HEADER_MISMATCH)


@pytest.mark.parametrize("header_name", ["mcp-method", "MCP-METHOD"])
def test_mcp_method_header_name_is_case_insensitive(server, header_name):
    r = modern(server, "tools/list", headers={"Mcp-Method": None, header_name: "tools/list"})
    assert len(ok_result(r)["tools"]) == 11


def call_params(sql="SELECT 1 AS one"):
    return {"name": "query", "arguments": {"sql": sql}}


def test_mcp_name_mismatch(server, canary):
    before = canary()
    r = modern(server, "tools/call", call_params("SELECT 1"), name="list_schemas")
    error_of(r, 400, HEADER_MISMATCH)
    assert canary() == before


def test_mcp_name_missing_on_tools_call(server):
    error_of(modern(server, "tools/call", call_params(), name=None), 400, HEADER_MISMATCH)


def test_mcp_name_surrounding_whitespace_is_trimmed(server):
    r = modern(server, "tools/call", call_params(), name="  query  ")
    assert ok_result(r)["structuredContent"]["rows"] == [{"one": 1}]


def test_mcp_name_base64_encoded_is_decoded(server):
    enc = "=?base64?" + base64.b64encode(b"query").decode() + "?="
    r = modern(server, "tools/call", call_params(), name=enc)
    assert ok_result(r)["structuredContent"]["rows"] == [{"one": 1}]


def test_header_checks_do_not_apply_to_legacy_requests(server):
    # a handshake-era request with a stray Mcp-Method header still works as before
    env = server.rpc("tools/list", headers={"Mcp-Method": "tools/list"})
    assert len(env["result"]["tools"]) == 11


# ── results ────────────────────────────────────────────────────────────────────

def test_tools_list_is_complete_and_cacheable(server):
    result = ok_result(modern(server, "tools/list"))
    assert {t["name"] for t in result["tools"]} == {
        "query", "list_schemas", "list_tables", "describe_table", "list_functions", "sample_table",
        "explain", "profile_columns", "find_join_path", "search_objects", "list_databases"}
    assert isinstance(result["ttlMs"], int) and not isinstance(result["ttlMs"], bool) and result["ttlMs"] >= 0
    assert result["cacheScope"] in ("public", "private")
    for t in result["tools"]:
        assert t["inputSchema"]["type"] == "object" and t["inputSchema"]["additionalProperties"] is False
        assert t["annotations"]["readOnlyHint"] is True


def test_tools_list_without_params_meta_is_rejected(server):
    r = server.post("/mcp", {"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
                    headers={"MCP-Protocol-Version": MODERN, "Mcp-Method": "tools/list"})
    error_of(r, 400, -32602)


def test_tools_call_result(server):
    result = ok_result(modern(server, "tools/call", call_params("SELECT 41 + 1 AS answer")))
    assert result["structuredContent"]["rows"] == [{"answer": 42}]
    assert result["content"][0]["type"] == "text"
    assert loads_exact(result["content"][0]["text"]) == result["structuredContent"]
    assert result.get("isError", False) is False


def test_tools_call_every_tool(server):
    cases = [("list_schemas", {}), ("list_tables", {"schema": "fleet"}),
             ("describe_table", {"schema": "fleet", "table": "vehicles"}), ("list_functions", {}),
             ("sample_table", {"schema": "fleet", "table": "vehicles", "n": 2})]
    for name, args in cases:
        result = ok_result(modern(server, "tools/call", {"name": name, "arguments": args}))
        assert result["structuredContent"], name


def test_tools_call_error_result_is_complete_with_is_error(server, canary):
    before = canary()
    result = ok_result(modern(server, "tools/call", call_params("DELETE FROM reporting.canary")))
    assert result["isError"] is True
    assert canary() == before


def test_unknown_tool_is_invalid_params(server):
    r = modern(server, "tools/call", {"name": "no_such_tool", "arguments": {}})
    assert r.json()["error"]["code"] == -32602
    assert r.json()["id"] == 1


def test_results_carry_server_info_meta(server):
    result = ok_result(modern(server, "tools/list"))
    assert result.get("_meta", {}).get(SINFO, {}).get("name") == "analytics-mcp"


# ── methods that do not exist in 2026-07-28 ────────────────────────────────────

@pytest.mark.parametrize("method", ["initialize", "ping", "logging/setLevel", "prompts/list", "resources/list",
                                    "resources/subscribe", "unknown/method"])
def test_removed_or_unknown_methods_are_404(server, method):
    params = {"protocolVersion": MODERN, "capabilities": {}, "clientInfo": {"name": "x", "version": "1"}} \
        if method == "initialize" else {}
    error_of(modern(server, method, params, id=601), 404, -32601, id=601)


def test_batch_is_rejected_on_the_modern_wire(server):
    msg = [{"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {"_meta": meta()}}]
    r = server.post("/mcp", msg, headers={"MCP-Protocol-Version": MODERN, "Mcp-Method": "tools/list"})
    assert r.status in (200, 400)
    assert r.json()["error"]["code"] == -32600


def test_notification_on_the_modern_wire_is_202(server):
    r = server.post("/mcp", {"jsonrpc": "2.0", "method": "notifications/cancelled",
                             "params": {"requestId": 1, "_meta": meta()}},
                    headers={"MCP-Protocol-Version": MODERN, "Mcp-Method": "notifications/cancelled"})
    assert r.status == 202 and r.body == b""


def test_stateless_no_discover_needed(start_server):
    # a fresh server answers a tools/call with no prior discover or initialize
    srv = start_server()
    result = ok_result(modern(srv, "tools/call", call_params("SELECT 7 AS seven")))
    assert result["structuredContent"]["rows"] == [{"seven": 7}]


def test_modern_request_on_bare_root(server):
    r = server.post("/", {"jsonrpc": "2.0", "id": 1, "method": "server/discover", "params": {"_meta": meta()}},
                    headers={"MCP-Protocol-Version": MODERN, "Mcp-Method": "server/discover"})
    ok_result(r)
