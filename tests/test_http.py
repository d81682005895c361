"""HTTP surface and auth: what a client (or a browser, or a scanner) sees before MCP even starts."""

from __future__ import annotations

import base64
import http.client
import json
import socket

import pytest

from conftest import wait_until

INIT = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}}
PING = {"jsonrpc": "2.0", "id": 7, "method": "ping"}


def assert_common_headers(r, json_body=True):
    assert r.headers.get("Cache-Control") == "no-store", r.headers
    assert r.headers.get("X-Content-Type-Options") == "nosniff", r.headers
    if json_body:
        assert r.headers.get("Content-Type", "").split(";")[0].strip() == "application/json", r.headers


# ── /healthz ───────────────────────────────────────────────────────────────────

def test_healthz_needs_no_auth_and_says_only_ok(server, pg):
    r = server.get("/healthz")
    assert r.status == 200
    assert r.body == b'{"ok":true}'
    assert_common_headers(r)
    for secret in [*server.tokens.values(), *server.tokens.keys(), pg.ro_password, "mcp_ro", str(pg.port)]:
        assert secret not in r.text


def test_healthz_ignores_a_bad_token(server):
    r = server.get("/healthz", headers={"Authorization": "Bearer nope"})
    assert r.status == 200
    assert r.json() == {"ok": True}


# ── auth ───────────────────────────────────────────────────────────────────────

@pytest.mark.parametrize("auth", [
    None,
    "Bearer wrong-token",
    "Bearer ",
    "Bearer",
    "Basic {basic}",
    "Token {tok}",
    "{tok}",
    "Bearer {tok}x",
    "Bearer {tok_prefix}",
    "Bearer alice",
    "Bearer alice:{tok}",
], ids=["missing", "wrong", "empty", "scheme-only", "basic", "token-scheme", "no-scheme",
        "suffixed", "prefix", "name-as-token", "name-colon-token"])
@pytest.mark.parametrize("path", ["/mcp", "/"])
def test_bad_or_missing_bearer_is_401(server, auth, path):
    tok = server.tokens["alice"]
    if auth is not None:
        auth = auth.format(tok=tok, tok_prefix=tok[:-1],
                           basic=base64.b64encode(f"alice:{tok}".encode()).decode())
    r = server.post(path, INIT, headers={"Authorization": auth}, caller=None)
    assert r.status == 401, r.text
    assert r.json() == {"error": "unauthorized"}
    www = r.headers.get("WWW-Authenticate")
    assert www is not None and www.split()[0].lower() == "bearer", r.headers
    # resource_metadata would send Claude Code into OAuth discovery
    assert "resource_metadata" not in www
    assert_common_headers(r)
    assert tok not in r.text


def test_both_configured_callers_are_accepted(server):
    for caller in ("alice", "bob"):
        r = server.post("/mcp", PING, caller=caller)
        assert r.status == 200, (caller, r.text)
        assert r.json() == {"jsonrpc": "2.0", "id": 7, "result": {}}


def test_bearer_scheme_is_case_insensitive(server):
    # RFC 9110 §11.1: the auth scheme is case-insensitive
    r = server.post("/mcp", PING, headers={"Authorization": f"bearer {server.tokens['bob']}"}, caller=None)
    assert r.status == 200, r.text


def test_one_callers_token_does_not_authenticate_as_a_blend(server):
    # a token made of two valid tokens glued together is not valid
    glued = server.tokens["alice"] + server.tokens["bob"]
    r = server.post("/mcp", PING, headers={"Authorization": f"Bearer {glued}"}, caller=None)
    assert r.status == 401


def test_unauthenticated_tool_call_runs_nothing(server):
    r = server.post("/mcp", {"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                             "params": {"name": "query", "arguments": {"sql": "SELECT 1"}}},
                    caller=None)
    assert r.status == 401
    assert "result" not in r.text


def test_auth_disabled_on_loopback_without_tokens(start_server):
    srv = start_server(tokens=None)
    r = srv.post("/mcp", PING, caller=None)
    assert r.status == 200, r.text
    assert r.json()["result"] == {}


# ── Origin ─────────────────────────────────────────────────────────────────────

@pytest.mark.parametrize("origin", [
    "http://evil.example",
    "https://evil.example",
    "http://localhost.evil.example",
    "http://127.0.0.1.evil.example",
    "http://evil.example:8892",
    "null",
])
def test_foreign_origin_is_403(server, origin):
    r = server.post("/mcp", PING, headers={"Origin": origin})
    assert r.status == 403, r.text
    assert_common_headers(r)
    assert "result" not in r.json()


@pytest.mark.parametrize("origin", [
    "http://localhost:1234",
    "http://localhost",
    "http://127.0.0.1",
    "http://127.0.0.1:8892",
    "http://[::1]:5",
    "http://[::1]",
])
def test_loopback_origins_are_allowed(server, origin):
    r = server.post("/mcp", PING, headers={"Origin": origin})
    assert r.status == 200, (origin, r.text)
    assert r.json()["result"] == {}


def test_configured_extra_origin_is_allowed(start_server):
    srv = start_server(MCP_ALLOWED_ORIGINS="https://claude.example,https://other.example:8443")
    for origin in ("https://claude.example", "https://other.example:8443", "http://localhost:3000"):
        r = srv.post("/mcp", PING, headers={"Origin": origin})
        assert r.status == 200, (origin, r.text)
    for origin in ("https://evil.example", "https://claude.example.evil.example", "http://claude.example"):
        r = srv.post("/mcp", PING, headers={"Origin": origin})
        assert r.status == 403, (origin, r.text)


def test_no_origin_header_is_fine(server):
    # non-browser clients (Claude Code, the SDKs) send no Origin at all
    r = server.post("/mcp", PING, headers={"Origin": None})
    assert r.status == 200


# ── methods and paths ──────────────────────────────────────────────────────────

@pytest.mark.parametrize("method", ["GET", "DELETE"])
@pytest.mark.parametrize("path", ["/mcp", "/"])
def test_get_and_delete_on_the_endpoint_are_405(server, method, path):
    # Claude Code opens GET /mcp with Accept: text/event-stream; a 405 is the documented "no SSE stream".
    r = server.request(method, path, headers={**server.auth_headers(), "Accept": "text/event-stream",
                                              "MCP-Protocol-Version": "2025-11-25"})
    assert r.status == 405, r.text
    allow = r.headers.get("Allow")
    assert allow is not None and [m.strip() for m in allow.split(",")] == ["POST"], r.headers
    assert r.headers.get("Cache-Control") == "no-store"


def test_post_on_bare_root_is_the_mcp_endpoint(server):
    r = server.post("/", PING)
    assert r.status == 200
    assert r.json() == {"jsonrpc": "2.0", "id": 7, "result": {}}


@pytest.mark.parametrize("method,path", [
    ("GET", "/nope"), ("POST", "/nope"), ("GET", "/mcp/extra"), ("POST", "/mcp/extra"),
    ("GET", "/favicon.ico"), ("GET", "/.well-known/oauth-protected-resource"),
    ("GET", "/.well-known/oauth-authorization-server"), ("POST", "/register"),
])
def test_everything_else_is_404(server, method, path):
    body = b"{}" if method == "POST" else None
    hdrs = {**server.auth_headers(), "Content-Type": "application/json"}
    r = server.request(method, path, body, hdrs)
    assert r.status == 404, (method, path, r.status, r.text)
    assert r.headers.get("Cache-Control") == "no-store"


def test_oauth_discovery_paths_are_404_without_auth_too(server):
    # Claude Code probes these on a 401; a 404 tells it "no OAuth here, use the header"
    r = server.get("/.well-known/oauth-protected-resource/mcp")
    assert r.status == 404


# ── bodies ─────────────────────────────────────────────────────────────────────

MIB = 1024 * 1024


def test_body_over_1_mib_is_413(server):
    body = b'{"jsonrpc":"2.0","id":1,"method":"ping","params":{"pad":"' + b"x" * MIB + b'"}}'
    r = server.post("/mcp", body)
    assert r.status == 413, r.status
    assert server.get("/healthz").status == 200


def test_body_just_under_1_mib_is_served(server):
    head = b'{"jsonrpc":"2.0","id":1,"method":"ping"'
    body = head + b" " * (MIB - len(head) - 1) + b"}"
    assert len(body) == MIB
    r = server.post("/mcp", body)
    assert r.status == 200, r.text
    assert r.json()["result"] == {}


def test_absurd_content_length_is_refused_without_harm(server):
    # tiny_http allocated a buffer of the client's Content-Length and aborted; we must just say 413.
    r = server.request("POST", "/mcp", None, {**server.auth_headers(), "Content-Type": "application/json",
                                                "Content-Length": "100000000000"})
    assert r.status == 413
    assert server.get("/healthz").status == 200
    assert server.post("/mcp", PING).status == 200


@pytest.mark.parametrize("ctype", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data"])
def test_non_json_content_type_is_415(server, ctype):
    r = server.post("/mcp", json.dumps(PING), headers={"Content-Type": ctype})
    assert r.status == 415, r.text
    assert_common_headers(r)


def test_json_content_type_with_charset_is_fine(server):
    r = server.post("/mcp", PING, headers={"Content-Type": "application/json; charset=utf-8"})
    assert r.status == 200, r.text


@pytest.mark.parametrize("body", [b"{", b"not json", b'{"jsonrpc":"2.0","id":1,"method":"ping"', b"\xff\xfe"])
def test_malformed_json_is_parse_error(server, body):
    r = server.post("/mcp", body)
    # 200 (JSON-RPC over HTTP) and 400 (streamable-HTTP "cannot accept the input") are both defensible
    assert r.status in (200, 400), r.text
    env = r.json()
    assert env["jsonrpc"] == "2.0"
    assert env["id"] is None
    assert env["error"]["code"] == -32700
    assert env["error"]["message"]
    assert_common_headers(r)


def test_success_response_headers(server):
    r = server.post("/mcp", PING)
    assert r.status == 200
    assert_common_headers(r)


def test_error_responses_carry_security_headers(server):
    for r in (server.post("/mcp", PING, caller=None), server.get("/nope"), server.get("/mcp")):
        assert r.headers.get("Cache-Control") == "no-store", (r.status, r.headers)
        assert r.headers.get("X-Content-Type-Options") == "nosniff", (r.status, r.headers)


def test_keep_alive_serves_several_requests_on_one_connection(server):
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        for i in range(3):
            body = json.dumps({"jsonrpc": "2.0", "id": i, "method": "ping"})
            conn.request("POST", "/mcp", body, {"Content-Type": "application/json", **server.auth_headers()})
            resp = conn.getresponse()
            assert resp.status == 200
            assert json.loads(resp.read())["id"] == i
    finally:
        conn.close()


def test_http_1_0_request_is_answered(server):
    body = json.dumps(PING).encode()
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as s:
        s.sendall(b"POST /mcp HTTP/1.0\r\nContent-Type: application/json\r\n"
                  + f"Authorization: Bearer {server.tokens['alice']}\r\nContent-Length: {len(body)}\r\n\r\n".encode()
                  + body)
        data = b""
        while chunk := s.recv(65536):  # HTTP/1.0 without keep-alive: the server closes when done
            data += chunk
    head, _, payload = data.partition(b"\r\n\r\n")
    assert head.split(b" ")[1] == b"200", head
    assert json.loads(payload)["result"] == {}


def test_garbage_request_line_does_not_kill_the_server(server):
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as s:
        s.sendall(b"\x16\x03\x01\x02\x00 this is not http\r\n\r\n")
        try:
            s.recv(65536)
        except (ConnectionResetError, socket.timeout):
            pass
    assert server.get("/healthz").status == 200


# ── the hand-rolled HTTP layer's limits ────────────────────────────────────────

def raw_exchange(port: int, data: bytes) -> bytes:
    """Send raw bytes, read until the server closes or a full response (head + Content-Length) arrived."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(data)
        buf = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return buf
            buf += chunk
            head, sep, body = buf.partition(b"\r\n\r\n")
            if sep:
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    k, _, v = line.partition(b":")
                    if k.strip().lower() == b"content-length":
                        length = int(v.strip())
                if len(body) >= length:
                    return buf


def status_of(raw: bytes) -> int:
    return int(raw.split(b" ", 2)[1])


def test_chunked_request_body_is_refused(server):
    body = json.dumps(PING).encode()
    raw = raw_exchange(server.port, b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                       + f"Authorization: Bearer {server.tokens['alice']}\r\n".encode()
                       + b"Transfer-Encoding: chunked\r\n\r\n" + b"%x\r\n" % len(body) + body + b"\r\n0\r\n\r\n")
    assert status_of(raw) in (400, 411), raw[:200]
    assert server.get("/healthz").status == 200


def test_content_length_with_transfer_encoding_is_refused(server):
    raw = raw_exchange(server.port, b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                       b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
    assert status_of(raw) in (400, 411), raw[:200]


def test_oversized_request_head_is_refused(server):
    raw = raw_exchange(server.port, b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n")
    assert status_of(raw) in (400, 431), raw[:200]
    assert server.get("/healthz").status == 200


def test_too_many_headers_is_refused(server):
    many = b"".join(b"X-H%d: 1\r\n" % i for i in range(150))
    raw = raw_exchange(server.port, b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n" + many + b"\r\n")
    assert status_of(raw) in (400, 431), raw[:200]


def test_head_request_has_no_body(server):
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as s:
        s.sendall(b"HEAD /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert status_of(head) == 200
    assert body == b""


def test_connection_close_is_honoured(server):
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := s.recv(65536):  # returns once the server closes
            data += chunk
    assert status_of(data) == 200 and data.endswith(b'{"ok":true}')


def test_connection_cap_answers_503_with_retry_after(start_server):
    srv = start_server(MCP_MAX_CONNECTIONS="2")
    held = []
    try:
        def hold_one() -> bool:
            # a keep-alive connection, proven registered by a served request; a 503 here means the
            # start-up probe's connection has not been let go yet (its thread has yet to see EOF)
            c = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=30)
            c.request("GET", "/healthz")
            if c.getresponse().read() == b'{"ok":true}':
                held.append(c)
                return True
            c.close()
            return False

        for _ in range(2):
            wait_until(hold_one, 30, "a connection slot for the held connection")
        r = srv.get("/healthz")
        assert r.status == 503
        assert r.headers.get("Retry-After") is not None
    finally:
        for c in held:
            c.close()
    # capacity comes back once those connections are gone
    wait_until(lambda: srv.get("/healthz").status == 200, 30, "a free connection slot")


def test_burst_of_concurrent_tool_calls_all_answered(start_server):
    from concurrent.futures import ThreadPoolExecutor
    srv = start_server(MCP_POOL_MAX="2")

    def one(i):
        return srv.query(f"SELECT {i} AS i, count(*) AS n FROM fleet.positions")["rows"]

    with ThreadPoolExecutor(max_workers=24) as pool:
        results = list(pool.map(one, range(48)))
    assert results == [[{"i": i, "n": 2500}] for i in range(48)]


# ── DNS-rebinding protection (Host allow-list), off by default ─────────────────

def test_host_header_not_checked_by_default(server):
    r = server.post("/mcp", PING, headers={"Host": "analytics.example"})
    assert r.status == 200


def test_dns_rebinding_protection_checks_host(start_server):
    srv = start_server(MCP_DNS_REBINDING_PROTECTION="1")
    assert srv.post("/mcp", PING, headers={"Host": f"127.0.0.1:{srv.port}"}).status == 200
    assert srv.post("/mcp", PING, headers={"Host": f"localhost:{srv.port}"}).status == 200
    r = srv.post("/mcp", PING, headers={"Host": "evil.example"})
    assert 400 <= r.status < 500 and r.status != 401, r.status
    assert "result" not in r.text


def test_allowed_hosts_extend_the_host_check(start_server):
    srv = start_server(MCP_DNS_REBINDING_PROTECTION="1", MCP_ALLOWED_HOSTS="analytics.example")
    assert srv.post("/mcp", PING, headers={"Host": "analytics.example"}).status == 200
    r = srv.post("/mcp", PING, headers={"Host": "evil.example"})
    assert 400 <= r.status < 500


# ── token formats and reloading ────────────────────────────────────────────────

def test_sha256_tokens(start_server):
    import hashlib
    plain = "plain-" + __import__("secrets").token_hex(8)
    digest = hashlib.sha256(plain.encode()).hexdigest()
    srv = start_server(tokens={"carol": f"sha256:{digest}"})
    assert srv.post("/mcp", PING, headers={"Authorization": f"Bearer {plain}"}, caller=None).status == 200
    # the stored hash is not itself a credential
    assert srv.post("/mcp", PING, headers={"Authorization": f"Bearer sha256:{digest}"}, caller=None).status == 401
    assert srv.post("/mcp", PING, headers={"Authorization": f"Bearer {digest}"}, caller=None).status == 401


def test_tokens_file_is_reloaded_on_sighup(start_server, tmp_path):
    import os
    import secrets as s
    import signal
    from conftest import wait_until
    old, new = "old-" + s.token_hex(8), "new-" + s.token_hex(8)
    path = tmp_path / "tokens"
    path.write_text(f"# analysts\ndave:{old}\n")
    srv = start_server(tokens=None, MCP_AUTH_TOKENS_FILE=str(path))

    def status(tok):
        return srv.post("/mcp", PING, headers={"Authorization": f"Bearer {tok}"}, caller=None).status

    assert status(old) == 200 and status(new) == 401
    path.write_text(f"dave:{new}\n")
    os.kill(srv.proc.pid, signal.SIGHUP)
    wait_until(lambda: status(new) == 200, 30, "the new token to be accepted")
    assert status(old) == 401
    assert srv.proc.poll() is None


@pytest.mark.parametrize("body", [
    b"[" * 100_000,
    b"[" * 200,
    b'{"jsonrpc":"2.0","id":1,"method":"ping","params":{"x":' + b"[" * 120 + b"]" * 120 + b"}}",
    b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"query","arguments":{"sql":"SELECT 1",'
    b'"x":' + b"[" * 120 + b"]" * 120 + b"}}}",
], ids=["100k-open-brackets", "200-open-brackets", "120-deep-params", "120-deep-arguments"])
def test_deeply_nested_json_does_not_crash_the_server(start_server, body):
    # one authenticated request must never take the whole server (every analyst) down
    server = start_server()  # its own process: a crash here must not take other tests with it
    try:
        r = server.post("/mcp", body)
    except (ConnectionError, http.client.HTTPException) as exc:
        pytest.fail(f"no answer ({exc!r}); server exit status {server.proc.wait(timeout=30)}: "
                    f"{server.stderr_text()[-300:]}")
    assert r.status in (200, 400), r.status
    assert "error" in r.json() or "result" in r.json()
    assert server.proc.poll() is None, "the server process died"
    assert server.get("/healthz").status == 200
