"""MCP Apps (io.modelcontextprotocol/ui) on the wire: the result view offered to clients that negotiate
the extension, on every protocol revision the server speaks, and nothing changed for those that do not.

Initialize era (2025-03-26, 2025-06-18, 2025-11-25): the client declares the extension in `initialize`;
the stateless server answers with an ``Mcp-Session-Id`` that says so, and the client's later requests
(which echo it) see the view. 2026-07-28: the extension is read from each request's clientCapabilities.
The view in a real browser is tests/test_result_view.py.
"""

from __future__ import annotations

import re

import pytest

from conftest import ALL_VERSIONS

HANDSHAKE_VERSIONS = ["2025-03-26", "2025-06-18", "2025-11-25"]
MODERN = "2026-07-28"
UI = "io.modelcontextprotocol/ui"
MIME = "text/html;profile=mcp-app"
VIEW_URI = "ui://analytics-mcp/result"
VIEW_TOOLS = {"query", "sample_table"}
UI_CAPS = {"extensions": {UI: {"mimeTypes": [MIME]}}}
VIEW_BUDGET_BYTES = 60 * 1024


# ── clients of both eras, with and without the extension ─────────────────────────────────────

class LegacyClient:
    """An initialize-era client that keeps the session id it is given, as the transport requires."""

    def __init__(self, server, version, capabilities):
        self.server, self.version = server, version
        r = server.rpc_raw("initialize", {"protocolVersion": version, "capabilities": capabilities,
                                          "clientInfo": {"name": "apps-tests", "version": "1"}},
                           version_header=None)
        assert r.status == 200, r.text
        self.init = r.json()["result"]
        self.session = r.headers.get("Mcp-Session-Id")

    def raw(self, method, params=None):
        headers = {"Mcp-Session-Id": self.session} if self.session else {}
        return self.server.rpc_raw(method, params, version_header=self.version, headers=headers)

    def envelope(self, method, params=None):
        r = self.raw(method, params)
        assert r.status == 200, r.text
        return r.json()


class ModernClient:
    """A 2026-07-28 client: capabilities ride in every request's _meta."""

    def __init__(self, server, capabilities):
        self.server, self.capabilities = server, capabilities

    def raw(self, method, params=None):
        params = dict(params or {})
        params["_meta"] = {"io.modelcontextprotocol/protocolVersion": MODERN,
                           "io.modelcontextprotocol/clientInfo": {"name": "apps-tests", "version": "1"},
                           "io.modelcontextprotocol/clientCapabilities": self.capabilities}
        headers = {"MCP-Protocol-Version": MODERN, "Mcp-Method": method}
        if method == "tools/call":
            headers["Mcp-Name"] = params["name"]
        return self.server.post("/mcp", {"jsonrpc": "2.0", "id": 7, "method": method, "params": params},
                                headers=headers)

    def envelope(self, method, params=None):
        r = self.raw(method, params)
        assert r.status == 200, r.text
        return r.json()


# provenance's read_at and db_ms differ from call to call (in structuredContent and, escaped, in
# the text block): the comparisons blank them out and keep every other byte
VOLATILE_PROVENANCE = re.compile(rb'(\\?"read_at\\?":\\?")[^"\\]*(\\?")|(\\?"db_ms\\?":)[0-9.]+')


def result_bytes(response) -> bytes:
    """The response body from its result on, byte for byte (the envelope's id differs per request;
    provenance's time and duration are blanked out)."""
    body = response.body.split(b'"result":', 1)[1]
    return VOLATILE_PROVENANCE.sub(lambda m: (m.group(1) or b"") + (m.group(2) or b"") if m.group(1)
                                   else m.group(3) + b"0", body)


def client(server, version, capabilities):
    if version == MODERN:
        return ModernClient(server, capabilities)
    return LegacyClient(server, version, capabilities)


def with_views(server, version):
    return client(server, version, {**UI_CAPS, "roots": {"listChanged": True}})


def without_views(server, version):
    return client(server, version, {"roots": {"listChanged": True}})


# ── negotiation on ─────────────────────────────────────────────────────────────────────────────

@pytest.mark.parametrize("version", HANDSHAKE_VERSIONS)
def test_initialize_announces_the_extension_and_resources_to_a_negotiating_client(server, version):
    c = with_views(server, version)
    assert c.init["protocolVersion"] == version
    assert c.init["capabilities"]["extensions"] == {UI: {}}
    assert c.init["capabilities"]["resources"] == {}
    assert isinstance(c.init["capabilities"]["tools"], dict)
    # the session id only says "this client renders views": visible ASCII, unique per handshake
    assert re.fullmatch(r"mcp-apps\.[0-9a-f]{32}", c.session), c.session
    assert with_views(server, version).session != c.session


def test_server_discover_announces_the_extension_to_a_negotiating_client(server):
    result = with_views(server, MODERN).envelope("server/discover")["result"]
    assert result["capabilities"]["extensions"] == {UI: {}}
    assert result["capabilities"]["resources"] == {}
    assert result["resultType"] == "complete"


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_query_and_sample_table_name_the_view(server, version):
    tools = {t["name"]: t for t in with_views(server, version).envelope("tools/list")["result"]["tools"]}
    for name, tool in tools.items():
        if name in VIEW_TOOLS:
            assert tool["_meta"]["ui"] == {"resourceUri": VIEW_URI}, tool
            assert tool["_meta"]["ui/resourceUri"] == VIEW_URI  # the deprecated flat key older hosts read
        else:
            assert "_meta" not in tool, f"{name} draws no table, so it names no view"


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_resources_list_has_the_view_with_its_metadata(server, version):
    result = with_views(server, version).envelope("resources/list")["result"]
    assert [r["uri"] for r in result["resources"]] == [VIEW_URI]
    view = result["resources"][0]
    assert view["mimeType"] == MIME
    assert view["name"] and view["title"] and view["description"]
    assert_view_meta(view["_meta"])
    if version == MODERN:
        assert result["cacheScope"] == "public" and result["ttlMs"] > 0
    else:
        assert "ttlMs" not in result
    templates = with_views(server, version).envelope("resources/templates/list")["result"]
    assert templates["resourceTemplates"] == []


def assert_view_meta(meta):
    ui = meta["ui"]
    # nothing external: no connections, no scripts/styles/images/fonts, no frames, no base URIs
    assert ui["csp"] == {"connectDomains": [], "resourceDomains": [], "frameDomains": [], "baseUriDomains": []}
    assert ui["prefersBorder"] is True
    assert ui["permissions"] == {"clipboardWrite": {}}
    assert "domain" not in ui


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_resources_read_serves_the_view(server, version):
    result = with_views(server, version).envelope("resources/read", {"uri": VIEW_URI})["result"]
    [content] = result["contents"]
    assert content["uri"] == VIEW_URI
    assert content["mimeType"] == MIME
    assert_view_meta(content["_meta"])
    html = content["text"]
    assert_self_contained_html(html)
    if version == MODERN:
        assert result["cacheScope"] == "public" and result["ttlMs"] > 0 and result["resultType"] == "complete"


def assert_self_contained_html(html: str):
    assert html.lstrip().lower().startswith("<!doctype html>")
    assert len(html.encode()) <= VIEW_BUDGET_BYTES, f"the view is {len(html.encode())} bytes, budget 60 KB"
    # one document, every script and style inline, nothing loaded from anywhere
    assert not re.search(r"<(script|link|img|iframe|object|embed|source|audio|video)\b[^>]*\b(src|href)\s*=", html, re.I)
    assert not re.search(r"@import|url\(", html, re.I)
    urls = set(re.findall(r"https?://[^\s\"'<>)]+", html))
    assert urls <= {"http://www.w3.org/2000/svg"}, f"the view names external URLs: {urls}"  # SVG namespace only
    assert re.search(r'<meta http-equiv="Content-Security-Policy" content="default-src \'none\';', html)


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_reading_an_unknown_resource_is_resource_not_found(server, version):
    c = with_views(server, version)
    for uri in ["ui://analytics-mcp/other", "file:///etc/passwd", "ui://analytics-mcp/result/../x", ""]:
        error = c.envelope("resources/read", {"uri": uri})["error"]
        assert error["code"] == (-32602 if version == MODERN else -32002), error
        assert error["data"] == {"uri": uri}
        assert VIEW_URI in error["message"]
        assert "<html" not in str(error).lower()
    for params in [{}, {"uri": 42}, {"uri": None}, {"uri": [VIEW_URI]}]:
        assert c.envelope("resources/read", params)["error"]["code"] == -32602


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_tool_answers_are_the_same_with_and_without_the_extension(server, version):
    # the view reads structuredContent and the text block; the model's text stays exactly as it was
    args = {"name": "query", "arguments": {"sql": "SELECT 1.50::numeric AS n, 'x' AS s", "max_rows": 5}}
    on = with_views(server, version).raw("tools/call", args)
    off = without_views(server, version).raw("tools/call", args)
    assert on.status == off.status == 200
    assert result_bytes(on) == result_bytes(off)


# ── negotiation off: exactly today's answers ─────────────────────────────────────────────────

@pytest.mark.parametrize("capabilities", [
    {},
    {"roots": {"listChanged": True}},
    {"extensions": {}},
    {"extensions": {UI: {}}},                                     # mimeTypes is required
    {"extensions": {UI: {"mimeTypes": ["text/html"]}}},           # not our profile
    {"extensions": {UI: {"mimeTypes": "text/html;profile=mcp-app"}}},  # not a list
    {"extensions": {"io.modelcontextprotocol/other": {"mimeTypes": [MIME]}}},
    {"experimental": {UI: {"mimeTypes": [MIME]}}},
], ids=["none", "roots", "empty-extensions", "no-mimetypes", "other-mimetype", "mimetypes-string",
        "other-extension", "experimental"])
@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_clients_without_the_extension_see_no_change(server, version, capabilities):
    c = client(server, version, capabilities)
    reference = client(server, version, {"roots": {"listChanged": True}})
    if version != MODERN:
        assert c.session is None, "no session id for a client that did not negotiate the view"
        assert c.init["capabilities"] == {"tools": {"listChanged": False}}
    else:
        discover = c.envelope("server/discover")["result"]
        assert discover["capabilities"] == {"tools": {"listChanged": False}}
    listed = c.raw("tools/list")
    assert result_bytes(listed) == result_bytes(reference.raw("tools/list"))
    assert all("_meta" not in t for t in listed.json()["result"]["tools"])
    for method in ["resources/list", "resources/read", "resources/templates/list"]:
        r = c.raw(method, {"uri": VIEW_URI})
        assert r.json()["error"]["code"] == -32601, (method, r.text)
        assert r.status == (404 if version == MODERN else 200)


@pytest.mark.parametrize("version", HANDSHAKE_VERSIONS)
def test_session_ids_not_ours_are_ignored(server, version):
    # another server's (or a proxy's) session id, and a near-miss of ours, switch nothing on
    for session in ["3f2c9a0e-7d4b-4c1e-9a6f-2b8d5e1c0a77", "MCP-APPS.0123", "xmcp-apps.0123", "mcp-apps"]:
        r = server.rpc_raw("tools/list", version_header=version, headers={"Mcp-Session-Id": session})
        assert r.status == 200
        assert all("_meta" not in t for t in r.json()["result"]["tools"]), session
        r = server.rpc_raw("resources/list", {}, version_header=version, headers={"Mcp-Session-Id": session})
        assert r.json()["error"]["code"] == -32601


def test_the_session_id_grants_nothing_without_a_token(server):
    c = with_views(server, "2025-11-25")
    r = server.rpc_raw("tools/list", version_header="2025-11-25", headers={"Mcp-Session-Id": c.session},
                       caller=None)
    assert r.status == 401


def test_initialize_in_a_batch_mints_no_session(server):
    init = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {"protocolVersion": "2025-03-26", "capabilities": UI_CAPS,
                       "clientInfo": {"name": "x", "version": "1"}}}
    r = server.post("/mcp", [init], headers={"MCP-Protocol-Version": "2025-03-26"})
    assert r.headers.get("Mcp-Session-Id") is None


def test_a_failed_initialize_mints_no_session(server):
    r = server.rpc_raw("initialize", {"protocolVersion": "2025-11-25", "capabilities": UI_CAPS,
                                      "clientInfo": {"name": "x", "version": "1"}},
                       version_header="2099-01-01")
    assert r.status == 400
    assert r.headers.get("Mcp-Session-Id") is None


def test_delete_of_the_session_is_405_as_before(server):
    c = with_views(server, "2025-11-25")
    r = server.request("DELETE", "/mcp", headers={"Mcp-Session-Id": c.session, **server.auth_headers()})
    assert r.status == 405 and r.headers.get("Allow") == "POST"


def test_the_view_survives_a_server_restart(start_server):
    # nothing is kept: a session id minted by one process works with the next (or another replica)
    first = start_server()
    session = with_views(first, "2025-06-18").session
    first.stop()
    second = start_server(tokens=first.tokens)
    r = second.rpc_raw("tools/list", version_header="2025-06-18", headers={"Mcp-Session-Id": session})
    tools = {t["name"]: t for t in r.json()["result"]["tools"]}
    assert tools["query"]["_meta"]["ui"]["resourceUri"] == VIEW_URI
