"""Helpers for the OAuth tests: PKCE, registration, the sign-in page driven over plain HTTP, the
token endpoint, and tokens signed the way the server signs them (the tests hold the key file, so
they can mint expired, wrong-audience or cross-purpose tokens that only the server could mint)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import json
import re
import secrets
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

import jwt  # PyJWT, pinned in tests/requirements.txt

from conftest import Response, Server, free_port

LOOPBACK_REDIRECT = "http://127.0.0.1:33418/callback"
CLAUDE_CALLBACKS = ["https://claude.ai/api/mcp/auth_callback", "https://claude.com/api/mcp/auth_callback"]


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def pkce() -> tuple[str, str]:
    verifier = b64url(secrets.token_bytes(32))
    return verifier, b64url(hashlib.sha256(verifier.encode()).digest())


def new_key() -> bytes:
    return secrets.token_bytes(32)


def write_key_file(path: Path, *keys: bytes) -> Path:
    path.write_text("# analytics-mcp OAuth keys: the first signs\n" + "".join(b64url(k) + "\n" for k in keys))
    return path


def derived(master: bytes, purpose: str) -> bytes:
    return hmac.new(master, f"analytics-mcp oauth v1 {purpose}".encode(), hashlib.sha256).digest()


def kid(master: bytes) -> str:
    return hashlib.sha256(master).hexdigest()[:12]


def mint(master: bytes, purpose: str, claims: dict, alg: str = "HS256") -> str:
    """A token signed exactly as the server signs its own (key derived per purpose)."""
    body = {"use": purpose, "iat": int(time.time()), **claims}
    return jwt.encode(body, derived(master, purpose), algorithm=alg, headers={"kid": kid(master)})


def unsigned(claims: dict, header: dict | None = None) -> str:
    """An `alg: none` token."""
    h = {"alg": "none", "typ": "JWT", **(header or {})}
    return f"{b64url(json.dumps(h).encode())}.{b64url(json.dumps(claims).encode())}."


def form(data: dict) -> bytes:
    return urllib.parse.urlencode(data).encode()


def grant_fingerprint(token: str) -> str:
    digest = hashlib.sha256(token.encode()).digest()
    return hashlib.sha256(b"analytics-mcp grant " + digest).hexdigest()[:16]


@dataclass
class Client:
    client_id: str
    redirect_uri: str
    secret: str | None = None
    raw: dict | None = None


@dataclass
class Page:
    """A sign-in page as the browser got it: its response, hidden state and CSRF cookie."""
    response: Response
    state_field: str | None
    cookie: str | None


class OAuthFlow:
    """Drives one server's OAuth endpoints over plain HTTP, the way a browser and a client would."""

    def __init__(self, server: Server, public_url: str, client_ip: str | None = None):
        """``client_ip``: sent as X-Forwarded-For (for servers with MCP_OAUTH_CLIENT_IP_HEADER), so
        tests that fail sign-ins on purpose do not throttle each other."""
        self.server = server
        self.url = public_url
        self.browser_headers = {"X-Forwarded-For": client_ip} if client_ip else {}

    # -- registration --
    def register_raw(self, metadata: dict | bytes, headers: dict | None = None) -> Response:
        body = metadata if isinstance(metadata, bytes) else json.dumps(metadata).encode()
        return self.server.request("POST", "/register", body, {"Content-Type": "application/json", **(headers or {})})

    def register(self, redirect_uris: list[str] | None = None, name: str = "Claude", method: str = "none",
                 grants: list[str] | None = None) -> Client:
        redirect_uris = redirect_uris or [LOOPBACK_REDIRECT]
        r = self.register_raw({"redirect_uris": redirect_uris, "client_name": name,
                               "token_endpoint_auth_method": method,
                               "grant_types": grants or ["authorization_code", "refresh_token"],
                               "response_types": ["code"]})
        assert r.status == 201, r.text
        body = r.json()
        return Client(body["client_id"], redirect_uris[0], body.get("client_secret"), body)

    # -- the sign-in page --
    def authorize_params(self, client: Client, challenge: str, state: str = "st-1", **extra) -> dict:
        params = {"response_type": "code", "client_id": client.client_id, "redirect_uri": client.redirect_uri,
                  "code_challenge": challenge, "code_challenge_method": "S256", "state": state,
                  "resource": f"{self.url}/mcp", "scope": "mcp"}
        params.update(extra)
        return {k: v for k, v in params.items() if v is not None}

    def open_page(self, params: dict, cookie: str | None = None, headers: dict | None = None) -> Page:
        hdrs = {**self.browser_headers, **(headers or {})}
        if cookie:
            hdrs["Cookie"] = cookie
        r = self.server.request("GET", "/authorize?" + urllib.parse.urlencode(params), None, hdrs)
        m = re.search(r'name="state" value="([^"]+)"', r.text)
        set_cookie = r.headers.get("Set-Cookie")
        return Page(r, html.unescape(m.group(1)) if m else None,
                    set_cookie.split(";")[0] if set_cookie else cookie)

    def submit(self, page: Page, token: str | None, action: str = "allow", cookie: str | None = "page",
               headers: dict | None = None) -> Response:
        data = {"state": page.state_field or "", "action": action}
        if token is not None:
            data["token"] = token
        hdrs = {"Content-Type": "application/x-www-form-urlencoded", **self.browser_headers, **(headers or {})}
        cookie = page.cookie if cookie == "page" else cookie
        if cookie:
            hdrs["Cookie"] = cookie
        return self.server.request("POST", "/authorize", form(data), hdrs)

    def sign_in(self, client: Client, token: str, challenge: str, state: str = "st-1",
                headers: dict | None = None, **extra) -> dict:
        """The whole page round trip; returns the redirect's query (code, state, iss)."""
        page = self.open_page(self.authorize_params(client, challenge, state, **extra), headers=headers)
        assert page.response.status == 200, page.response.text
        r = self.submit(page, token, headers=headers)
        assert r.status == 303, f"HTTP {r.status}: {r.text[:500]}"
        return redirect_query(r, client.redirect_uri)

    # -- the token endpoint --
    def token_raw(self, data: dict, headers: dict | None = None) -> Response:
        return self.server.request("POST", "/token", form(data),
                                   {"Content-Type": "application/x-www-form-urlencoded", **(headers or {})})

    def exchange(self, client: Client, code: str, verifier: str, **extra) -> Response:
        data = {"grant_type": "authorization_code", "code": code, "redirect_uri": client.redirect_uri,
                "code_verifier": verifier, "client_id": client.client_id, "resource": f"{self.url}/mcp"}
        data.update(extra)
        return self.token_raw({k: v for k, v in data.items() if v is not None})

    def refresh(self, client: Client, refresh_token: str, **extra) -> Response:
        data = {"grant_type": "refresh_token", "refresh_token": refresh_token, "client_id": client.client_id}
        data.update(extra)
        return self.token_raw({k: v for k, v in data.items() if v is not None})

    def tokens_for(self, client: Client, token: str, **extra) -> dict:
        """Sign in with a personal token and exchange the code: the token response."""
        verifier, challenge = pkce()
        query = self.sign_in(client, token, challenge, **extra)
        r = self.exchange(client, query["code"], verifier)
        assert r.status == 200, r.text
        return r.json()

    # -- using the access token --
    def call(self, access_token: str, sql: str = "SELECT 1 AS one", path: str = "/mcp") -> Response:
        return self.server.rpc_raw("tools/call", {"name": "query", "arguments": {"sql": sql}},
                                   headers={"Authorization": f"Bearer {access_token}"}, caller=None, path=path)


def redirect_query(r: Response, redirect_uri: str) -> dict:
    location = r.headers.get("Location") or ""
    assert location.startswith(redirect_uri.split("?")[0].rsplit(":", 1)[0]), (location, redirect_uri)
    return dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(location).query))


def oauth_env(tmp: Path, port: int | None = None, key: bytes | None = None, **extra) -> tuple[dict, int]:
    port = port or free_port()
    env = {"MCP_OAUTH": "token", "MCP_PORT": str(port), "MCP_PUBLIC_URL": f"http://127.0.0.1:{port}"}
    if key is not None:
        env["MCP_OAUTH_KEY_FILE"] = str(write_key_file(tmp / f"keys-{port}", key))
    env.update(extra)
    return env, port


def metric(server: Server, name: str, labels: str = "") -> float:
    text = server.get("/metrics").text
    pattern = re.escape(name) + (r"\{" + re.escape(labels) + r"\}" if labels else "") + r" ([0-9.e+]+)"
    m = re.search(r"^" + pattern + "$", text, re.M)
    return float(m.group(1)) if m else 0.0


# ── a loopback redirect target (what a native client such as Claude Code listens on) ─────────

import http.server  # noqa: E402
import queue  # noqa: E402
import threading  # noqa: E402


class RedirectCatcher:
    """A loopback HTTP server standing in for the client's redirect URI: it records every query
    the browser brings back and shows a small "return to the app" page."""

    def __init__(self):
        self.received: queue.Queue[dict] = queue.Queue()
        catcher = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server's API
                url = urllib.parse.urlsplit(self.path)
                if url.path != "/callback":  # the browser's /favicon.ico and the like
                    self.send_error(404)
                    return
                catcher.received.put(dict(urllib.parse.parse_qsl(url.query)))
                body = b"<!doctype html><title>Back in the app</title><h1>Signed in. You can close this window.</h1>"
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/callback"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def next(self, timeout: float = 20.0) -> dict:
        return self.received.get(timeout=timeout)

    def drain(self) -> None:
        while not self.received.empty():
            self.received.get_nowait()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def browser_sign_in(driver, url: str, token: str, shot: str | None = None) -> None:
    """In the browser: open the sign-in page, type the personal token, press Allow."""
    from selenium.webdriver.common.by import By
    from browser import screenshot

    driver.get(url)
    field = driver.find_element(By.ID, "token")
    field.clear()
    field.send_keys(token)
    if shot:
        screenshot(driver, shot)
    driver.find_element(By.ID, "allow").click()


def make_test_ca(d: Path) -> Path:
    """A throwaway CA (ca.pem) and a certificate it signed for 127.0.0.1 (host.pem, host.key), made
    with Debian's openssl. The server trusts the CA through MCP_OAUTH_CA_FILE."""
    import subprocess

    def run(*argv):
        subprocess.run(argv, cwd=d, check=True, capture_output=True)

    run("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2",
        "-subj", "/CN=analytics-mcp test CA", "-keyout", "ca.key", "-out", "ca.pem",
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign")
    run("openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj", "/CN=127.0.0.1",
        "-keyout", "host.key", "-out", "host.csr")
    (d / "ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n")
    run("openssl", "x509", "-req", "-in", "host.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
        "-days", "2", "-extfile", "ext", "-out", "host.pem")
    return d
