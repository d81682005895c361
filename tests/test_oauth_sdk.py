"""The official MCP Python SDK's OAuth client (mcp.client.auth.OAuthClientProvider) against the
server: it gets the 401, discovers our metadata (RFC 9728 → RFC 8414), registers (RFC 7591),
sends the analyst to the sign-in page — its redirect handler drives a real Chromium that types
the token and presses Allow —, exchanges the code (PKCE, resource), calls every tool, and
refreshes when its access token runs out; on each protocol revision the SDK speaks (auto →
2026-07-28, legacy → 2025-11-25). Also the Client ID Metadata Document path: the SDK's https
client_id, whose document a local HTTPS server serves."""

from __future__ import annotations

import json
import ssl
import threading
import time
import http.server
from pathlib import Path

import anyio
import pytest

mcp = pytest.importorskip("mcp")
from mcp import Client  # noqa: E402
from mcp.client.auth import OAuthClientProvider  # noqa: E402
from mcp.client.streamable_http import streamable_http_client  # noqa: E402
from mcp.shared._httpx_utils import create_mcp_http_client  # noqa: E402
from mcp.shared.auth import AuthorizationCodeResult, OAuthClientMetadata  # noqa: E402

from browser import chromium  # noqa: E402
from oauth_lib import RedirectCatcher, browser_sign_in, make_test_ca, metric, new_key, oauth_env  # noqa: E402

TOOLS = {"query", "list_schemas", "list_tables", "describe_table", "list_functions", "sample_table",
         "explain", "profile_columns", "find_join_path", "search_objects", "list_databases"}
EXPECTED_VERSION = {"auto": "2026-07-28", "legacy": "2025-11-25"}


class MemoryStorage:
    def __init__(self):
        self.tokens = None
        self.client_info = None

    async def get_tokens(self):
        return self.tokens

    async def set_tokens(self, tokens):
        self.tokens = tokens

    async def get_client_info(self):
        return self.client_info

    async def set_client_info(self, client_info):
        self.client_info = client_info


@pytest.fixture(scope="module")
def catcher():
    c = RedirectCatcher()
    yield c
    c.close()


@pytest.fixture(scope="module")
def driver():
    with chromium() as d:
        yield d


def make_provider(server_url, catcher, driver, token, storage, opened, client_metadata_url=None):
    async def redirect_handler(url: str) -> None:
        opened.append(url)
        catcher.drain()
        await anyio.to_thread.run_sync(lambda: browser_sign_in(driver, url, token))

    async def callback_handler() -> AuthorizationCodeResult:
        back = await anyio.to_thread.run_sync(catcher.next)
        return AuthorizationCodeResult(code=back["code"], state=back.get("state"), iss=back.get("iss"))

    metadata = OAuthClientMetadata(redirect_uris=[catcher.url], client_name="Python SDK test client",
                                   grant_types=["authorization_code", "refresh_token"], response_types=["code"],
                                   token_endpoint_auth_method="none")
    return OAuthClientProvider(server_url=server_url, client_metadata=metadata, storage=storage,
                               redirect_handler=redirect_handler, callback_handler=callback_handler,
                               client_metadata_url=client_metadata_url)


async def every_tool(client):
    names = {t.name for t in (await client.list_tools()).tools}
    assert names == TOOLS
    sc = (await client.call_tool("query", {"sql": "SELECT plate FROM fleet.vehicles ORDER BY 1", "max_rows": 2})
          ).structured_content
    assert sc["rows"] == [{"plate": "KAA 001A"}, {"plate": "KAB 002B"}]
    assert "fleet" in {s["schema"] for s in (await client.call_tool("list_schemas", {})).structured_content["schemas"]}
    sc = (await client.call_tool("list_tables", {"schema": "reporting"})).structured_content
    assert sc["tables"]
    sc = (await client.call_tool("describe_table", {"schema": "fleet", "table": "trips"})).structured_content
    assert sc["primary_key"] == ["trip_id", "leg"]
    assert (await client.call_tool("list_functions", {})).structured_content["functions"]
    sc = (await client.call_tool("sample_table", {"schema": "fleet", "table": "vehicles", "n": 1})).structured_content
    assert sc["row_count"] == 1
    sc = (await client.call_tool("explain", {"sql": "SELECT count(*) FROM fleet.trips"})).structured_content
    assert sc["summary"]["total_cost"] > 0
    sc = (await client.call_tool("profile_columns", {"schema": "fleet", "table": "vehicles"})).structured_content
    assert sc["columns"]
    sc = (await client.call_tool("find_join_path", {"from": "fleet.trips", "to": "fleet.vehicles"})).structured_content
    assert sc["paths"][0]["hops"] == 1
    sc = (await client.call_tool("search_objects", {"query": "trips"})).structured_content
    assert sc["hits"][0]["qualified_name"] == "fleet.trips"


@pytest.fixture(scope="module")
def srv(server_factory, tmp_path_factory):
    env, _ = oauth_env(tmp_path_factory.mktemp("sdk-keys"), key=new_key(), MCP_OAUTH_CLIENT_IP_HEADER="X-Forwarded-For")
    server = server_factory(**env)
    server.public_url = env["MCP_PUBLIC_URL"]
    return server


@pytest.mark.parametrize("mode", ["auto", "legacy"])
def test_sdk_oauth_discovers_registers_signs_in_calls_every_tool_and_refreshes(srv, catcher, driver, mode):
    storage, opened = MemoryStorage(), []
    provider = make_provider(f"{srv.public_url}/mcp", catcher, driver, srv.tokens["alice"], storage, opened)
    refreshes = metric(srv, "mcp_oauth_tokens_issued_total", 'grant="refresh_token"')

    async def main():
        async with create_mcp_http_client(auth=provider) as http:
            transport = streamable_http_client(f"{srv.public_url}/mcp", http_client=http, terminate_on_close=False)
            async with Client(transport, mode=mode, raise_exceptions=True, cache=None) as client:
                assert client.protocol_version == EXPECTED_VERSION[mode]
                await every_tool(client)
                assert len(opened) == 1  # one sign-in
                # the access token runs out: the SDK refreshes on its own, no second sign-in
                provider.context.token_expiry_time = time.time() - 1
                first_access = storage.tokens.access_token
                await every_tool(client)
                assert storage.tokens.access_token != first_access
                assert len(opened) == 1

    anyio.run(main)
    assert storage.client_info.client_name == "Python SDK test client"
    assert "mcp" in storage.tokens.scope.split()  # plus offline_access: the SDK asks for it to get refresh tokens
    assert "resource=" in opened[0] and "code_challenge_method=S256" in opened[0]
    assert metric(srv, "mcp_oauth_tokens_issued_total", 'grant="refresh_token"') == refreshes + 1
    srv.wait_for_stderr(lambda t: "via=oauth" in t and 'client="Python SDK test client"' in t,
                        "audit lines naming the OAuth client")


# ── Client ID Metadata Documents ──────────────────────────────────────────────────────────────

@pytest.fixture(scope="module")
def tls_files(tmp_path_factory):
    return make_test_ca(tmp_path_factory.mktemp("cimd-tls"))


class DocumentServer:
    """HTTPS on loopback serving client metadata documents at paths a test sets."""

    def __init__(self, tls_dir: Path):
        self.documents: dict[str, bytes] = {}
        docs = self.documents

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                body = docs.get(self.path)
                self.send_response(200 if body is not None else 404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body or b"")))
                self.end_headers()
                self.wfile.write(body or b"")

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(tls_dir / "host.pem", tls_dir / "host.key")
        self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
        self.base = f"https://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def publish(self, path: str, document: dict | bytes) -> str:
        self.documents[path] = document if isinstance(document, bytes) else json.dumps(document).encode()
        return self.base + path

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def documents(tls_files):
    s = DocumentServer(tls_files)
    yield s
    s.close()


@pytest.fixture(scope="module")
def cimd_srv(server_factory, tmp_path_factory, tls_files):
    env, _ = oauth_env(tmp_path_factory.mktemp("cimd-keys"), key=new_key(), MCP_OAUTH_CA_FILE=str(tls_files / "ca.pem"),
                       MCP_OAUTH_ALLOW_PRIVATE_FETCH="1", MCP_OAUTH_CLIENT_IP_HEADER="X-Forwarded-For",
                       MCP_OAUTH_MAX_CLIENT_DOCUMENTS="2")
    server = server_factory(**env)
    server.public_url = env["MCP_PUBLIC_URL"]
    return server


def test_sdk_with_a_client_id_metadata_document(cimd_srv, documents, catcher, driver):
    url = documents.base + "/clients/sdk.json"
    documents.publish("/clients/sdk.json", {
        "client_id": url, "client_name": "SDK via metadata document", "redirect_uris": [catcher.url],
        "grant_types": ["authorization_code", "refresh_token"], "response_types": ["code"],
        "token_endpoint_auth_method": "none"})
    storage, opened = MemoryStorage(), []
    provider = make_provider(f"{cimd_srv.public_url}/mcp", catcher, driver, cimd_srv.tokens["bob"], storage, opened,
                             client_metadata_url=url)

    async def main():
        async with create_mcp_http_client(auth=provider) as http:
            transport = streamable_http_client(f"{cimd_srv.public_url}/mcp", http_client=http, terminate_on_close=False)
            async with Client(transport, mode="auto", raise_exceptions=True, cache=None) as client:
                await every_tool(client)

    anyio.run(main)
    assert storage.client_info.client_id == url  # no registration: the URL is the client id
    assert f"client_id={url.replace(':', '%3A').replace('/', '%2F')}" in opened[0]
    assert metric(cimd_srv, "mcp_oauth_client_documents_total", 'outcome="fetched"') >= 1
    assert metric(cimd_srv, "mcp_oauth_registrations_total", 'outcome="registered"') == 0


def cimd_page(server, client_id, redirect_uri="http://127.0.0.1:9/cb"):
    """The authorization page for a client id URL, from an address of its own /64 (these tests
    fail on purpose, and failures are throttled per address, an IPv6 /64 counting as one)."""
    import secrets
    import urllib.parse
    from oauth_lib import pkce
    _, challenge = pkce()
    query = urllib.parse.urlencode({"response_type": "code", "client_id": client_id, "redirect_uri": redirect_uri,
                                    "code_challenge": challenge, "code_challenge_method": "S256", "state": "s"})
    return server.get("/authorize?" + query, headers={"X-Forwarded-For": f"2001:db8:{secrets.token_hex(2)}:{secrets.token_hex(2)}::1"})


def test_client_documents_on_private_addresses_are_refused_by_default(srv, documents):
    url = documents.publish("/clients/private.json", {"client_id": documents.base + "/clients/private.json",
                                                      "redirect_uris": ["http://127.0.0.1:9/cb"]})
    r = cimd_page(srv, url)
    assert r.status == 400 and "Location" not in r.headers
    assert "resolves only to private, loopback or reserved addresses" in r.text
    assert metric(srv, "mcp_oauth_client_documents_total", 'outcome="failed"') >= 1


@pytest.mark.parametrize("path, document, why", [
    ("/c/mismatch.json", {"client_id": "https://other.example.com/c.json", "redirect_uris": ["http://127.0.0.1:9/cb"]},
     "client_id is not its own URL"),
    ("/c/secret.json", {"client_id": "SELF", "redirect_uris": ["http://127.0.0.1:9/cb"],
                        "token_endpoint_auth_method": "client_secret_post"}, "cannot use a client secret"),
    ("/c/http-redirect.json", {"client_id": "SELF", "redirect_uris": ["http://app.example.com/cb"]}, "is not allowed"),
    ("/c/huge.json", {"client_id": "SELF", "redirect_uris": ["http://127.0.0.1:9/cb"], "pad": "x" * 20000},
     "the client metadata document"),
    ("/c/not-json.json", b"<html>hello</html>", "not a JSON object"),
    ("/c/missing.json", None, "HTTP 404"),
])
def test_bad_client_documents_are_refused(cimd_srv, documents, path, document, why):
    url = documents.base + path
    if document is not None:
        if isinstance(document, dict) and document.get("client_id") == "SELF":
            document = {**document, "client_id": url}
        documents.publish(path, document)
    r = cimd_page(cimd_srv, url)
    assert r.status == 400 and "Location" not in r.headers, r.text
    assert "could not be verified" in r.text and why in r.text, r.text
    t = cimd_srv.request("POST", "/token", f"grant_type=authorization_code&code=x&client_id={url}".encode(),
                         {"Content-Type": "application/x-www-form-urlencoded"})
    assert t.status == 401 and t.json()["error"] == "invalid_client"


def test_client_id_urls_that_are_not_plain_https_are_unknown_clients(cimd_srv, documents):
    for client_id in ["http://127.0.0.1:9/c.json", documents.base, documents.base + "/", documents.base + "/a/../b.json"]:
        r = cimd_page(cimd_srv, client_id)
        assert r.status == 400 and "Location" not in r.headers, client_id


def test_the_document_cache_is_capped_and_a_dropped_document_is_fetched_again(cimd_srv, documents):
    """MCP_OAUTH_MAX_CLIENT_DOCUMENTS=2 on this server: many distinct client id URLs never hold
    more; the entry nearest its expiry makes room, and a client whose document was dropped is
    fetched again (a cache miss, never a refusal)."""
    urls = []
    for i in range(4):
        path = f"/clients/cap-{i}.json"
        urls.append(documents.publish(path, {"client_id": documents.base + path, "client_name": f"cap {i}",
                                             "redirect_uris": ["http://127.0.0.1:9/cb"],
                                             "token_endpoint_auth_method": "none"}))

    def fetched():
        return metric(cimd_srv, "mcp_oauth_client_documents_total", 'outcome="fetched"')

    def cached():
        return metric(cimd_srv, "mcp_oauth_table_entries", 'table="client_documents"')

    before, full_before = fetched(), metric(cimd_srv, "mcp_oauth_tables_full_total", 'table="client_documents"')
    for url in urls:
        r = cimd_page(cimd_srv, url)
        assert r.status == 200 and "cap " in r.text, r.text
        assert cached() <= 2
    assert fetched() - before == 4 and cached() == 2
    assert metric(cimd_srv, "mcp_oauth_tables_full_total", 'table="client_documents"') - full_before >= 2
    assert cimd_page(cimd_srv, urls[-1]).status == 200 and fetched() - before == 4  # from the cache
    assert cimd_page(cimd_srv, urls[0]).status == 200 and fetched() - before == 5   # dropped: fetched again
    # a client id URL longer than any document could name is refused before anything is fetched
    failed = metric(cimd_srv, "mcp_oauth_client_documents_total", 'outcome="failed"')
    r = cimd_page(cimd_srv, documents.base + "/c/" + "a" * 2100 + ".json")
    assert r.status == 400 and "at most 2000 characters" in r.text, r.text
    assert fetched() - before == 5
    assert metric(cimd_srv, "mcp_oauth_client_documents_total", 'outcome="failed"') == failed
