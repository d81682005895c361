"""OAuth 2.1 (issue 10) over plain HTTP: metadata, challenges, registration, the sign-in page,
the token endpoint, and every hostile input the issue names — each gets the RFC's error and
nothing is issued. The server is the real binary; tokens are checked by using them on /mcp.

One OAuth server (MCP_OAUTH=token, a key file the test holds, X-Forwarded-For as the client
address so throttling tests do not lock each other out) is shared by the module.
"""

from __future__ import annotations

import base64
import html
import json
import re
import secrets
import time
import urllib.parse

import pytest

from conftest import run_binary, wait_until
from conftest import free_port
from oauth_lib import (CLAUDE_CALLBACKS, LOOPBACK_REDIRECT, Client, OAuthFlow, grant_fingerprint, metric, mint,
                       new_key, oauth_env, pkce, redirect_query, unsigned, write_key_file)

CAROL = "tok-c-" + secrets.token_hex(16)


@pytest.fixture(scope="module")
def key():
    return new_key()


@pytest.fixture(scope="module")
def tokens_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("oauth-tokens") / "tokens"
    path.write_text(f"carol:{CAROL}\n")
    return path


@pytest.fixture(scope="module")
def srv(server_factory, tmp_path_factory, key, tokens_file):
    env, port = oauth_env(tmp_path_factory.mktemp("oauth-keys"), key=key,
                          MCP_AUTH_TOKENS_FILE=str(tokens_file), MCP_OAUTH_CLIENT_IP_HEADER="X-Forwarded-For")
    server = server_factory(**env)
    server.public_url = env["MCP_PUBLIC_URL"]
    return server


def fresh_ip() -> str:
    """An address of its own /64 (the throttle counts an IPv6 /64 as one address)."""
    return f"2001:db8:{secrets.token_hex(2)}:{secrets.token_hex(2)}::1"


@pytest.fixture
def flow(srv):
    return OAuthFlow(srv, srv.public_url, client_ip=fresh_ip())


def challenge_params(header: str) -> dict:
    return dict(re.findall(r'(\w+)="([^"]*)"', header))


# ── off means today's behaviour ────────────────────────────────────────────────────────────────

def test_oauth_off_keeps_todays_401_and_has_no_oauth_endpoints(server):
    r = server.rpc_raw("ping", caller=None)
    assert r.status == 401
    assert r.headers.get("WWW-Authenticate") == "Bearer"  # no resource_metadata: no doomed OAuth flow
    for path in ["/.well-known/oauth-protected-resource", "/.well-known/oauth-protected-resource/mcp",
                 "/.well-known/oauth-authorization-server", "/.well-known/openid-configuration",
                 "/authorize", "/oauth/callback"]:
        assert server.get(path).status == 404, path
    for path in ["/token", "/register", "/authorize"]:
        assert server.request("POST", path, b"x=1").status == 404, path
    assert "mcp_oauth_" not in server.get("/metrics").text


@pytest.mark.parametrize("env, message", [
    ({"MCP_OAUTH": "yes"}, "MCP_OAUTH must be off, token or oidc"),
    ({"MCP_OAUTH": "token"}, "MCP_PUBLIC_URL is required"),
    ({"MCP_OAUTH": "token", "MCP_PUBLIC_URL": "http://analytics.example.org"}, "must be https"),
    ({"MCP_OAUTH": "token", "MCP_PUBLIC_URL": "https://analytics.example.org/mcp"}, "without a path"),
    ({"MCP_OAUTH": "token", "MCP_PUBLIC_URL": "ftp://x"}, "not an http(s) URL"),
    ({"MCP_OAUTH": "token", "MCP_PUBLIC_URL": "https://a.example.org", "MCP_OAUTH_ACCESS_TTL_S": "7200"},
     "MCP_OAUTH_ACCESS_TTL_S must be a whole number from 60 to 3600"),
    ({"MCP_OAUTH": "token", "MCP_PUBLIC_URL": "https://a.example.org", "MCP_OAUTH_KEY_FILE": "/nonexistent/keys"},
     "MCP_OAUTH_KEY_FILE: cannot read"),
    ({"MCP_OAUTH": "token", "MCP_PUBLIC_URL": "https://a.example.org", "MCP_OAUTH_CA_FILE": "/etc/passwd"},
     "MCP_OAUTH_CA_FILE: /etc/passwd holds no PEM certificate"),
    # no system trust store and no CA file: outbound HTTPS could trust no one
    ({"MCP_OAUTH": "token", "MCP_PUBLIC_URL": "https://a.example.org", "SSL_CERT_FILE": "/nonexistent/ca.pem",
      "SSL_CERT_DIR": "/nonexistent/certs"}, "no trusted certificates found in the system trust store"),
    ({"MCP_OAUTH": "oidc", "MCP_PUBLIC_URL": "https://a.example.org"}, "MCP_OIDC_ISSUER is required"),
    ({"MCP_OAUTH": "oidc", "MCP_PUBLIC_URL": "https://a.example.org", "MCP_OIDC_ISSUER": "http://idp.example.org"},
     "MCP_OIDC_ISSUER must be an https URL"),
])
def test_oauth_configuration_errors_name_the_variable(pg, env, message):
    r = run_binary([], {"DATABASE_URL": pg.ro_dsn, "MCP_AUTH_TOKENS": "a:b", **env})
    assert r.returncode == 2, r.stderr
    assert message in r.stderr, r.stderr


def test_oauth_key_file_and_token_mode_checks(pg, tmp_path):
    short = tmp_path / "short"
    short.write_text(base64.urlsafe_b64encode(b"x" * 16).decode() + "\n")
    r = run_binary([], {"DATABASE_URL": pg.ro_dsn, "MCP_AUTH_TOKENS": "a:b", "MCP_OAUTH": "token",
                        "MCP_PUBLIC_URL": "https://a.example.org", "MCP_OAUTH_KEY_FILE": str(short)})
    assert r.returncode == 2 and "at least 32 random bytes" in r.stderr, r.stderr
    r = run_binary([], {"DATABASE_URL": pg.ro_dsn, "MCP_OAUTH": "token", "MCP_PUBLIC_URL": "https://a.example.org"})
    assert r.returncode == 2 and "MCP_OAUTH=token signs analysts in with their personal tokens" in r.stderr
    secret = tmp_path / "secret"
    secret.write_text("s3cret\n")
    r = run_binary([], {"DATABASE_URL": pg.ro_dsn, "MCP_OAUTH": "oidc", "MCP_PUBLIC_URL": "https://a.example.org",
                        "MCP_OIDC_ISSUER": "https://idp.example.org", "MCP_OIDC_CLIENT_ID": "c",
                        "MCP_OIDC_CLIENT_SECRET_FILE": str(secret)})
    assert r.returncode == 2 and "needs MCP_OIDC_ALLOWED_DOMAINS" in r.stderr, r.stderr
    key_line = run_binary(["oauth-key"]).stdout.strip()
    assert len(base64.urlsafe_b64decode(key_line + "=")) == 32
    assert "MCP_OAUTH_KEY_FILE" in run_binary(["--help"]).stdout


# ── metadata and challenges ────────────────────────────────────────────────────────────────────

def test_metadata_documents(srv):
    url = srv.public_url
    prm = srv.get("/.well-known/oauth-protected-resource/mcp")
    assert prm.status == 200 and prm.headers.get("Access-Control-Allow-Origin") == "*"
    assert prm.json() == {"resource": f"{url}/mcp", "authorization_servers": [url], "scopes_supported": ["mcp"],
                          "bearer_methods_supported": ["header"], "resource_name": "Analytics (read-only PostgreSQL)"}
    assert srv.get("/.well-known/oauth-protected-resource").json()["resource"] == url
    asm = srv.get("/.well-known/oauth-authorization-server").json()
    assert asm == srv.get("/.well-known/openid-configuration").json()
    assert asm["issuer"] == url
    assert asm["authorization_endpoint"] == f"{url}/authorize"
    assert asm["token_endpoint"] == f"{url}/token" and asm["registration_endpoint"] == f"{url}/register"
    assert asm["code_challenge_methods_supported"] == ["S256"]
    assert asm["authorization_response_iss_parameter_supported"] is True
    assert asm["client_id_metadata_document_supported"] is True
    assert set(asm["token_endpoint_auth_methods_supported"]) == {"none", "client_secret_post", "client_secret_basic"}
    pre = srv.request("OPTIONS", "/token", None, {"Origin": "https://app.example.com",
                                                  "Access-Control-Request-Method": "POST"})
    assert pre.status == 204 and "POST" in pre.headers.get("Access-Control-Allow-Methods")
    assert srv.request("POST", "/.well-known/oauth-authorization-server", b"").status == 405


def test_401_points_at_the_metadata_and_static_tokens_still_work(srv):
    r = srv.rpc_raw("ping", caller=None)
    assert r.status == 401
    challenge = r.headers.get("WWW-Authenticate")
    assert challenge.startswith("Bearer ") and "error=" not in challenge
    assert challenge_params(challenge) == {
        "resource_metadata": f"{srv.public_url}/.well-known/oauth-protected-resource/mcp", "scope": "mcp"}
    root = srv.rpc_raw("ping", caller=None, path="/")
    assert challenge_params(root.headers.get("WWW-Authenticate"))["resource_metadata"] == \
        f"{srv.public_url}/.well-known/oauth-protected-resource"
    # the static bearer path is unchanged (Claude Code --header, scripts)
    assert srv.query("SELECT 1 AS one")["rows"] == [{"one": 1}]
    wrong = srv.rpc_raw("ping", headers={"Authorization": "Bearer not-a-token"}, caller=None)
    assert wrong.status == 401
    assert challenge_params(wrong.headers.get("WWW-Authenticate"))["error"] == "invalid_token"


# ── registration ───────────────────────────────────────────────────────────────────────────────

def test_claude_callbacks_and_loopback_clients_register(flow):
    client = flow.register(CLAUDE_CALLBACKS, name="Claude")
    assert client.raw["redirect_uris"] == CLAUDE_CALLBACKS and client.raw["token_endpoint_auth_method"] == "none"
    assert "client_secret" not in client.raw
    assert client.raw["grant_types"] == ["authorization_code", "refresh_token"]
    # the page for claude.ai's callback names it; the redirect is where Claude's servers pick the code up
    verifier, challenge = pkce()
    for callback in CLAUDE_CALLBACKS:
        page = flow.open_page(flow.authorize_params(Client(client.client_id, callback), challenge))
        assert page.response.status == 200, page.response.text
        assert "Claude" in page.response.text and urllib.parse.urlsplit(callback).hostname in page.response.text
    confidential = flow.register(["https://app.example.com/cb"], name="Reports", method="client_secret_post")
    assert confidential.secret and confidential.raw["client_secret_expires_at"] == 0


@pytest.mark.parametrize("metadata, error", [
    (b"not json", "invalid_client_metadata"),
    (b"[1,2]", "invalid_client_metadata"),
    ({"client_name": "x"}, "invalid_redirect_uri"),
    ({"redirect_uris": []}, "invalid_redirect_uri"),
    ({"redirect_uris": ["http://app.example.com/cb"]}, "invalid_redirect_uri"),  # http off loopback
    ({"redirect_uris": ["https://app.example.com/cb#frag"]}, "invalid_redirect_uri"),
    ({"redirect_uris": ["javascript:alert(1)"]}, "invalid_redirect_uri"),
    ({"redirect_uris": ["https://user@app.example.com/cb"]}, "invalid_redirect_uri"),
    ({"redirect_uris": ["https://app.example.com/cb"] * 11}, "invalid_redirect_uri"),
    ({"redirect_uris": ["https://app.example.com/" + "a" * 3000]}, "invalid_redirect_uri"),
    ({"redirect_uris": ["https://app.example.com/cb"], "grant_types": ["client_credentials"]}, "invalid_client_metadata"),
    ({"redirect_uris": ["https://app.example.com/cb"], "grant_types": ["refresh_token"]}, "invalid_client_metadata"),
    ({"redirect_uris": ["https://app.example.com/cb"], "response_types": ["token"]}, "invalid_client_metadata"),
    ({"redirect_uris": ["https://app.example.com/cb"], "token_endpoint_auth_method": "private_key_jwt"}, "invalid_client_metadata"),
    ({"redirect_uris": ["https://app.example.com/cb"], "client_name": "n" * 101}, "invalid_client_metadata"),
    ({"redirect_uris": ["https://app.example.com/cb"], "padding": "x" * 17000}, "invalid_client_metadata"),
])
def test_bad_registrations_are_refused(flow, metadata, error):
    r = flow.register_raw(metadata)
    assert r.status == 400, r.text
    assert r.json()["error"] == error and r.json()["error_description"]
    assert "client_id" not in r.json()


# ── the whole flow over HTTP ───────────────────────────────────────────────────────────────────

def test_token_sign_in_code_token_tools_refresh(flow, srv):
    client = flow.register()
    verifier, challenge = pkce()
    page = flow.open_page(flow.authorize_params(client, challenge, state="xyz"))
    r = page.response
    assert r.status == 200 and r.headers.get("Content-Type").startswith("text/html")
    csp = r.headers.get("Content-Security-Policy")
    assert "frame-ancestors 'none'" in csp and "default-src 'none'" in csp and "script-src" not in csp
    assert r.headers.get("X-Frame-Options") == "DENY"
    assert "<script" not in r.text and "https://" not in r.text.split("<body>")[0].replace(srv.public_url, "")
    assert "Claude</strong> wants to read the <strong>analytics_test</strong> database as you" in r.text
    assert page.cookie and "HttpOnly" in r.headers.get("Set-Cookie") and "SameSite=Lax" in r.headers.get("Set-Cookie")
    done = flow.submit(page, srv.tokens["alice"])
    assert done.status == 303
    query = redirect_query(done, client.redirect_uri)
    assert query["state"] == "xyz" and query["iss"] == srv.public_url and query["code"]
    answer = flow.exchange(client, query["code"], verifier)
    assert answer.status == 200, answer.text
    tokens = answer.json()
    assert tokens["token_type"] == "Bearer" and tokens["expires_in"] == 3600 and tokens["scope"] == "mcp"
    assert answer.headers.get("Cache-Control") == "no-store"
    claims = json.loads(base64.urlsafe_b64decode(tokens["access_token"].split(".")[1] + "=="))
    assert claims["aud"] == f"{srv.public_url}/mcp" and claims["iss"] == srv.public_url
    assert claims["sub"] == "alice" and claims["client_id"] == client.client_id and claims["exp"] - claims["iat"] == 3600
    called = flow.call(tokens["access_token"], "SELECT current_user AS u")
    assert called.status == 200 and called.json()["result"]["structuredContent"]["rows"] == [{"u": "mcp_ro"}]
    srv.wait_for_stderr(lambda t: re.search(r"audit caller=alice via=oauth tool=query .*client=Claude", t),
                        "an audit line with via=oauth and the client")
    refreshed = flow.refresh(client, tokens["refresh_token"])
    assert refreshed.status == 200, refreshed.text
    new = refreshed.json()
    assert new["refresh_token"] != tokens["refresh_token"] and new["access_token"] != tokens["access_token"]
    assert flow.call(new["access_token"]).status == 200
    assert metric(srv, "mcp_oauth_tokens_issued_total", 'grant="refresh_token"') >= 1
    assert metric(srv, "mcp_oauth_sign_ins_total", 'outcome="ok"') >= 1


def test_confidential_clients_post_and_basic(flow, srv):
    for method in ["client_secret_post", "client_secret_basic"]:
        client = flow.register(method=method)
        verifier, challenge = pkce()
        code = flow.sign_in(client, srv.tokens["bob"], challenge)["code"]
        base = {"grant_type": "authorization_code", "code": code, "redirect_uri": client.redirect_uri,
                "code_verifier": verifier}
        wrong = flow.token_raw({**base, "client_id": client.client_id, "client_secret": "wrong"})
        assert wrong.status == 401 and wrong.json()["error"] == "invalid_client"
        missing = flow.token_raw({**base, "client_id": client.client_id})
        assert missing.status == 401 and missing.json()["error"] == "invalid_client"
        if method == "client_secret_post":
            r = flow.token_raw({**base, "client_id": client.client_id, "client_secret": client.secret})
        else:
            basic = base64.b64encode(f"{urllib.parse.quote(client.client_id)}:{client.secret}".encode()).decode()
            r = flow.token_raw(base, headers={"Authorization": f"Basic {basic}"})
        # the wrong-secret attempts above did not burn the code: client authentication comes first
        assert r.status == 200, r.text
        assert flow.call(r.json()["access_token"]).status == 200


# ── hostile inputs at /authorize ───────────────────────────────────────────────────────────────

def test_unregistered_redirect_uri_gets_an_error_page_never_a_redirect(flow):
    client = flow.register(["https://app.example.com/cb"])
    _, challenge = pkce()
    for uri in ["https://evil.example.net/cb", "https://app.example.com/cb/../x", "https://app.example.com/cb?x=1",
                "https://app.example.com/CB", "http://app.example.com/cb", ""]:
        page = flow.open_page(flow.authorize_params(client, challenge, redirect_uri=uri))
        assert page.response.status == 400, uri
        assert "Location" not in page.response.headers
        assert "not one the app registered" in page.response.text
        assert page.state_field is None


def test_loopback_redirects_match_on_any_port_only(flow):
    client = flow.register(["http://127.0.0.1/callback", "http://localhost:8080/cb"])
    _, challenge = pkce()
    ok = flow.open_page(flow.authorize_params(client, challenge, redirect_uri="http://127.0.0.1:61234/callback"))
    assert ok.response.status == 200
    ok = flow.open_page(flow.authorize_params(client, challenge, redirect_uri="http://localhost:9/cb"))
    assert ok.response.status == 200
    for uri in ["http://127.0.0.1:61234/other", "http://[::1]:61234/callback", "http://127.0.0.2:80/callback"]:
        assert flow.open_page(flow.authorize_params(client, challenge, redirect_uri=uri)).response.status == 400, uri


def test_unknown_or_forged_client_ids(flow, srv, key):
    _, challenge = pkce()
    forged = mint(new_key(), "client", {"iss": srv.public_url, "aud": srv.public_url, "exp": 2**33,
                                       "n": "Claude", "r": [LOOPBACK_REDIRECT], "m": "none", "rt": True})
    for client_id in ["no-such-client", forged, unsigned({"n": "x", "r": [LOOPBACK_REDIRECT], "m": "none"})]:
        params = {"response_type": "code", "client_id": client_id, "redirect_uri": LOOPBACK_REDIRECT,
                  "code_challenge": challenge, "code_challenge_method": "S256", "state": "s"}
        page = flow.open_page(params)
        assert page.response.status == 400 and "Location" not in page.response.headers
        assert "add it again" in page.response.text
        r = flow.token_raw({"grant_type": "authorization_code", "code": "x", "client_id": client_id,
                            "redirect_uri": LOOPBACK_REDIRECT, "code_verifier": "v" * 43})
        assert r.status == 401 and r.json()["error"] == "invalid_client", r.text
    assert flow.open_page({"response_type": "code"}).response.status == 400


@pytest.mark.parametrize("change, error", [
    ({"code_challenge_method": "plain"}, "invalid_request"),
    ({"code_challenge_method": None}, "invalid_request"),
    ({"code_challenge": None}, "invalid_request"),
    ({"code_challenge": "short"}, "invalid_request"),
    ({"response_type": "token"}, "unsupported_response_type"),
    ({"resource": "https://other.example.com/mcp"}, "invalid_target"),
    ({"scope": "admin"}, "invalid_scope"),
])
def test_bad_authorization_requests_get_the_rfc_error_on_a_page_not_a_redirect(flow, change, error):
    """Not bounced automatically (anyone can register a redirect URI: no open redirector); the
    page links back to the registered redirect URI with the RFC 6749 error, state and iss."""
    client = flow.register()
    _, challenge = pkce()
    page = flow.open_page(flow.authorize_params(client, challenge, state="s-9", **change))
    assert page.response.status == 400 and "Location" not in page.response.headers, page.response.text
    assert page.state_field is None  # no sign-in form
    href = html.unescape(re.search(r'<a id="back" href="([^"]+)"', page.response.text).group(1))
    assert href.startswith(client.redirect_uri + "?")
    query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(href).query))
    assert query["error"] == error and query["state"] == "s-9" and query["iss"] == flow.url
    assert "code" not in query


def test_csrf_missing_or_wrong_refuses_and_issues_nothing(flow, srv):
    client = flow.register()
    _, challenge = pkce()
    page = flow.open_page(flow.authorize_params(client, challenge))
    name = page.cookie.split("=")[0]
    for cookie in [None, f"{name}={'0' * 32}", f"other={page.cookie.split('=')[1]}"]:
        r = flow.submit(page, srv.tokens["alice"], cookie=cookie, headers={"X-Forwarded-For": fresh_ip()})
        assert r.status == 403 and "Location" not in r.headers, cookie
        assert "security check" in r.text
    # out of order: a POST with no page state, or with a tampered one
    for state in ["", page.state_field[:-3] + "abc", "x.y.z"]:
        r = flow.submit(type(page)(page.response, state, page.cookie), srv.tokens["alice"])
        assert r.status == 400 and "Location" not in r.headers and "no longer valid" in r.text
    assert metric(srv, "mcp_oauth_sign_ins_total", 'outcome="csrf"') >= 3


def test_wrong_token_rerenders_the_page_and_deny_goes_back(flow, srv):
    client = flow.register()
    _, challenge = pkce()
    page = flow.open_page(flow.authorize_params(client, challenge, state="d1"))
    ip = {"X-Forwarded-For": fresh_ip()}
    for wrong in ["wrong-token", "", " "]:
        r = flow.submit(page, wrong, headers=ip)
        assert r.status == 401 and "Location" not in r.headers
        assert "That token is not valid here" in r.text and 'name="token"' in r.text
    denied = flow.submit(page, None, action="deny", headers=ip)
    assert denied.status == 303
    query = redirect_query(denied, client.redirect_uri)
    assert query == {"error": "access_denied", "error_description": "the analyst denied access", "state": "d1",
                     "iss": flow.url}


def test_failed_sign_ins_are_throttled_per_address_and_counted(flow, srv):
    client = flow.register()
    _, challenge = pkce()
    page = flow.open_page(flow.authorize_params(client, challenge))
    attacker, other = {"X-Forwarded-For": fresh_ip()}, {"X-Forwarded-For": "203.0.113.7, " + fresh_ip()}
    # a page the server must refuse counts too (a client id URL makes it fetch a document)
    assert flow.open_page({"client_id": "unknown"}, headers=attacker).response.status == 400
    before = metric(srv, "mcp_oauth_sign_ins_total", 'outcome="bad_token"')
    for _ in range(9):
        assert flow.submit(page, "guess-" + secrets.token_hex(4), headers=attacker).status == 401
    blocked = flow.submit(page, srv.tokens["alice"], headers=attacker)  # even the right token now
    assert blocked.status == 429 and blocked.headers.get("Retry-After") == "600" and "Location" not in blocked.headers
    assert "Too many failed sign-ins" in blocked.text
    assert flow.open_page({"client_id": "unknown"}, headers=attacker).response.status == 429
    assert flow.submit(page, srv.tokens["alice"], headers=other).status == 303  # another address is not affected
    assert metric(srv, "mcp_oauth_sign_ins_total", 'outcome="bad_token"') - before == 9
    assert metric(srv, "mcp_oauth_sign_ins_total", 'outcome="throttled"') >= 1


# ── hostile inputs at /token ───────────────────────────────────────────────────────────────────

def test_pkce_verifier_wrong_or_missing(flow, srv):
    client = flow.register()
    verifier, challenge = pkce()
    code = flow.sign_in(client, srv.tokens["alice"], challenge)["code"]
    missing = flow.exchange(client, code, None)
    assert missing.status == 400 and missing.json()["error"] == "invalid_request"
    other_verifier, _ = pkce()
    wrong = flow.exchange(client, code, other_verifier)
    assert wrong.status == 400 and wrong.json()["error"] == "invalid_grant"
    # the code is single-use even after a failed attempt: the right verifier is now too late
    late = flow.exchange(client, code, verifier)
    assert late.status == 400 and late.json()["error"] == "invalid_grant"
    assert "access_token" not in late.text


def test_code_reuse_redirect_mismatch_and_other_client(flow, srv):
    client = flow.register()
    verifier, challenge = pkce()
    code = flow.sign_in(client, srv.tokens["alice"], challenge)["code"]
    assert flow.exchange(client, code, verifier).status == 200
    again = flow.exchange(client, code, verifier)
    assert again.status == 400 and again.json() == {"error": "invalid_grant",
                                                     "error_description": "the authorization code was already used"}
    verifier, challenge = pkce()
    code = flow.sign_in(client, srv.tokens["alice"], challenge)["code"]
    r = flow.exchange(client, code, verifier, redirect_uri="http://127.0.0.1:33418/other")
    assert r.status == 400 and r.json()["error"] == "invalid_grant"
    verifier, challenge = pkce()
    code = flow.sign_in(client, srv.tokens["alice"], challenge)["code"]
    thief = flow.register()
    r = flow.exchange(thief, code, verifier)
    assert r.status == 400 and r.json()["error"] == "invalid_grant"
    verifier, challenge = pkce()
    code = flow.sign_in(client, srv.tokens["alice"], challenge)["code"]
    r = flow.exchange(client, code, verifier, resource="https://other.example.com/mcp")
    assert r.status == 400 and r.json()["error"] == "invalid_target"


def test_expired_and_forged_codes(flow, srv, key):
    client = flow.register()
    verifier, challenge = pkce()
    claims = {"iss": srv.public_url, "aud": srv.public_url, "jti": secrets.token_hex(8), "sub": "alice",
              "g": "t:" + grant_fingerprint(srv.tokens["alice"]), "client_id": client.client_id,
              "redirect_uri": client.redirect_uri, "code_challenge": challenge, "scope": "mcp",
              "resource": f"{srv.public_url}/mcp"}
    good = mint(key, "code", {**claims, "exp": int(time.time()) + 60})
    assert flow.exchange(client, good, verifier).status == 200  # the minting is faithful …
    for code in [mint(key, "code", {**claims, "jti": "e1", "exp": int(time.time()) - 1}),   # … so expiry is what fails
                 mint(new_key(), "code", {**claims, "jti": "e2", "exp": int(time.time()) + 60}),
                 mint(key, "access", {**claims, "jti": "e3", "exp": int(time.time()) + 60}),  # another purpose
                 unsigned({**claims, "jti": "e4", "use": "code", "exp": int(time.time()) + 60})]:
        r = flow.exchange(client, code, verifier)
        assert r.status == 400 and r.json()["error"] == "invalid_grant", r.text


def test_unsupported_grant_and_malformed_requests(flow):
    client = flow.register()
    r = flow.token_raw({"grant_type": "client_credentials", "client_id": client.client_id})
    assert r.status == 400 and r.json()["error"] == "unsupported_grant_type"
    r = flow.token_raw({"grant_type": "password", "username": "a", "password": "b", "client_id": client.client_id})
    assert r.json()["error"] == "unsupported_grant_type"
    r = flow.token_raw({"client_id": client.client_id})
    assert r.status == 400 and r.json()["error"] == "invalid_request"
    r = flow.server.request("POST", "/token", b"grant_type=authorization_code&grant_type=refresh_token&client_id=x",
                            {"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status == 400 and r.json()["error"] == "invalid_request"
    r = flow.server.request("POST", "/token", b"client_id=%zz", {"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status == 400 and r.json()["error"] == "invalid_request"
    assert flow.server.get("/token").status == 405


def test_refresh_replay_after_rotation_revokes_the_sign_in(flow, srv):
    client = flow.register()
    first = flow.tokens_for(client, srv.tokens["alice"])
    second = flow.refresh(client, first["refresh_token"]).json()
    assert flow.call(second["access_token"]).status == 200
    replay = flow.refresh(client, first["refresh_token"])
    assert replay.status == 400 and replay.json()["error"] == "invalid_grant" and "access_token" not in replay.text
    # the whole family is gone: the rotated refresh token and its access token too
    assert flow.refresh(client, second["refresh_token"]).json()["error"] == "invalid_grant"
    refused = flow.call(second["access_token"])
    assert refused.status == 401
    assert challenge_params(refused.headers.get("WWW-Authenticate"))["error"] == "invalid_token"
    # other sign-ins of the same analyst are untouched
    other = flow.tokens_for(client, srv.tokens["alice"])
    assert flow.call(other["access_token"]).status == 200


def test_refresh_token_is_bound_to_its_client_and_cannot_widen_scope(flow, srv):
    client, other = flow.register(), flow.register()
    tokens = flow.tokens_for(client, srv.tokens["bob"])
    r = flow.refresh(other, tokens["refresh_token"])
    assert r.status == 400 and r.json()["error"] == "invalid_grant"
    r = flow.refresh(client, tokens["refresh_token"], scope="mcp offline_access")
    assert r.status == 400 and r.json()["error"] == "invalid_scope"
    r = flow.refresh(client, tokens["access_token"])  # an access token is not a refresh token
    assert r.status == 400 and r.json()["error"] == "invalid_grant"
    no_refresh = flow.register(grants=["authorization_code"])
    assert "refresh_token" not in flow.tokens_for(no_refresh, srv.tokens["bob"])


# ── hostile access tokens at /mcp ──────────────────────────────────────────────────────────────

@pytest.mark.filterwarnings("ignore:The HMAC key")
def test_forged_expired_wrong_audience_and_cross_purpose_tokens(flow, srv, key):
    client = flow.register()
    now = int(time.time())
    base = {"iss": srv.public_url, "aud": f"{srv.public_url}/mcp", "sub": "alice", "client_id": client.client_id,
            "cn": "Claude", "scope": "mcp", "g": "t:" + grant_fingerprint(srv.tokens["alice"]), "fid": "f1",
            "jti": "j1", "exp": now + 600}
    good = mint(key, "access", base)
    assert flow.call(good).status == 200  # the minting is faithful, so each variation below is what fails
    cases = {
        "expired": mint(key, "access", {**base, "exp": now - 1}),
        "wrong key": mint(new_key(), "access", base),
        "alg none": unsigned({**base, "use": "access"},
                             {"kid": json.loads(base64.urlsafe_b64decode(good.split(".")[0] + "=="))["kid"]}),
        "wrong audience": mint(key, "access", {**base, "aud": "https://other.example.com/mcp"}),
        "wrong issuer": mint(key, "access", {**base, "iss": "https://other.example.com"}),
        "refresh as access": mint(key, "refresh", {**base, "aud": f"{srv.public_url}/mcp"}),
        "code as access": mint(key, "code", base),
        "tampered": good.split(".")[0] + "." + base64.urlsafe_b64encode(
            json.dumps({**base, "sub": "bob", "use": "access"}).encode()).rstrip(b"=").decode() + "." + good.split(".")[2],
        "HS384 confusion": mint(key, "access", base, alg="HS384"),
        "removed analyst": mint(key, "access", {**base, "sub": "mallory"}),
        "replaced token": mint(key, "access", {**base, "g": "t:0000000000000000"}),
        "no grant": mint(key, "access", {k: v for k, v in base.items() if k != "g"}),
    }
    for what, token in cases.items():
        r = flow.call(token)
        assert r.status == 401, what
        assert challenge_params(r.headers.get("WWW-Authenticate"))["error"] == "invalid_token", what
        assert "result" not in r.text, what


def test_token_without_mcp_scope_gets_403_insufficient_scope(flow, srv):
    client = flow.register()
    tokens = flow.tokens_for(client, srv.tokens["alice"], scope="offline_access")
    assert tokens["scope"] == "offline_access"
    r = flow.call(tokens["access_token"])
    assert r.status == 403
    params = challenge_params(r.headers.get("WWW-Authenticate"))
    assert params["error"] == "insufficient_scope" and params["scope"] == "mcp"


# ── revocation that bites ─────────────────────────────────────────────────────────────────────

def test_removing_an_analyst_from_the_token_file_ends_their_oauth_access(flow, srv, tokens_file):
    client = flow.register()
    tokens = flow.tokens_for(client, CAROL)
    assert flow.call(tokens["access_token"]).status == 200
    new_carol = "tok-c2-" + secrets.token_hex(16)
    tmp = tokens_file.with_suffix(".new")
    tmp.write_text(f"carol:{new_carol}\n")  # carol's token replaced: grants made with the old one end
    tmp.replace(tokens_file)
    wait_until(lambda: flow.call(tokens["access_token"]).status == 401, 10, "the old grant to be refused")
    assert flow.refresh(client, tokens["refresh_token"]).json()["error"] == "invalid_grant"
    again = flow.tokens_for(client, new_carol)
    assert flow.call(again["access_token"]).status == 200
    tmp.write_text("# carol left\n")
    tmp.replace(tokens_file)
    wait_until(lambda: flow.call(again["access_token"]).status == 401, 10, "carol to be refused once removed")
    r = flow.call(again["access_token"])
    assert challenge_params(r.headers.get("WWW-Authenticate"))["error_description"] == \
        "the analyst is no longer allowed on this server"
    tmp.write_text(f"carol:{CAROL}\n")
    tmp.replace(tokens_file)


# ── replicas and key rotation ─────────────────────────────────────────────────────────────────

def test_two_replicas_sharing_a_key_file_accept_each_others_tokens(start_server, tmp_path):
    key = new_key()
    tokens = {"alice": "tok-a-" + secrets.token_hex(16)}
    public = f"http://127.0.0.1:{free_port()}"
    keys = write_key_file(tmp_path / "keys", key)
    a = start_server(tokens=tokens, MCP_OAUTH="token", MCP_PUBLIC_URL=public, MCP_OAUTH_KEY_FILE=str(keys))
    b = start_server(tokens=tokens, MCP_OAUTH="token", MCP_PUBLIC_URL=public, MCP_OAUTH_KEY_FILE=str(keys))
    on_a, on_b = OAuthFlow(a, public), OAuthFlow(b, public)
    client = on_a.register()                      # registered on A …
    verifier, challenge = pkce()
    code = on_b.sign_in(client, tokens["alice"], challenge)["code"]   # … signed in on B …
    issued = on_a.exchange(client, code, verifier).json()             # … code redeemed on A
    assert on_b.call(issued["access_token"]).status == 200            # … used on B
    refreshed = on_b.refresh(client, issued["refresh_token"]).json()
    assert on_a.call(refreshed["access_token"]).status == 200
    # rotation: a replica whose file has a new first key still accepts tokens signed with the old one
    rotated = write_key_file(tmp_path / "rotated", new_key(), key)
    c = start_server(tokens=tokens, MCP_OAUTH="token", MCP_PUBLIC_URL=public, MCP_OAUTH_KEY_FILE=str(rotated))
    assert OAuthFlow(c, public).call(refreshed["access_token"]).status == 200
    newer = OAuthFlow(c, public).refresh(client, refreshed["refresh_token"]).json()
    assert OAuthFlow(c, public).call(newer["access_token"]).status == 200
    # a replica with a different key accepts none of them, and says so
    d = start_server(tokens=tokens, MCP_OAUTH="token", MCP_PUBLIC_URL=public)
    assert OAuthFlow(d, public).call(newer["access_token"]).status == 401
    assert "tokens die with the process" in d.stderr_text()


def test_every_oauth_variable_is_in_help_and_the_readme_table():
    from conftest import REPO
    help_text = run_binary(["--help"]).stdout
    readme = (REPO / "README.md").read_text()
    names = re.findall(r"^  (MCP_(?:OAUTH|OIDC|PUBLIC)\w*)", help_text, re.M)
    assert len(names) >= 16, names
    for name in names:
        assert f"| `{name}` |" in readme, f"{name} is missing from the README configuration table"


def test_key_file_is_reread_so_keys_rotate_without_a_restart(start_server, tmp_path):
    old, new = new_key(), new_key()
    tokens = {"alice": "tok-a-" + secrets.token_hex(16)}
    public = f"http://127.0.0.1:{free_port()}"
    keys = write_key_file(tmp_path / "keys", old)
    srv = start_server(tokens=tokens, MCP_OAUTH="token", MCP_PUBLIC_URL=public, MCP_OAUTH_KEY_FILE=str(keys))
    flow = OAuthFlow(srv, public)
    client = flow.register()
    before = flow.tokens_for(client, tokens["alice"])
    kid = lambda token: json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))["kid"]  # noqa: E731
    tmp = tmp_path / "keys.new"
    write_key_file(tmp, new, old)  # a new first key; the old one still verifies
    tmp.replace(keys)
    srv.wait_for_stderr(lambda t: t.count("oauth keys loaded") >= 1, "the key file to be re-read")
    after = flow.refresh(client, before["refresh_token"]).json()
    assert kid(after["access_token"]) != kid(before["access_token"])
    assert flow.call(before["access_token"]).status == 200 and flow.call(after["access_token"]).status == 200
    write_key_file(tmp, new)  # the old key retired: what it signed (and the client id) is refused
    tmp.replace(keys)
    srv.wait_for_stderr(lambda t: t.count("oauth keys loaded") >= 2, "the key file to be re-read again")
    assert flow.call(before["access_token"]).status == 401
    assert flow.call(after["access_token"]).status == 200
    tmp.write_text("not a key\n")  # a broken file keeps the keys in use
    tmp.replace(keys)
    srv.wait_for_stderr(lambda t: "oauth key file not reloaded" in t, "the broken key file to be refused")
    assert flow.call(after["access_token"]).status == 200
