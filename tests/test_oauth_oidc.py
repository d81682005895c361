"""Signing in with the company's identity provider (MCP_OAUTH=oidc), against a real OpenID
provider: the npm package oidc-provider (OpenID Certified), pinned in tests/oidc/package-lock.json,
installed with `npm ci` into the cache dir and run with Node 22 (the npm package node@22) on
loopback with TLS from a throwaway CA. A real Chromium walks our page → the provider's login →
its consent → back to our callback → the client's redirect URI.

Covered: allowed domain signs in (and the audit line names the e-mail); another domain, an
unverified e-mail, a wrong Google-style `hd` are refused with a page that says what to do; an
address on the allow-list file signs in and is refused once removed (revocation); the provider
rotates its signing key and sign-in keeps working; forged, replayed and cross-browser callbacks
are refused and nothing is issued.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import subprocess
import urllib.parse
from pathlib import Path

import pytest

from browser import chromium, screenshot
from conftest import REPO, StopWaiting, free_port, stop_process, wait_until
from oauth_lib import OAuthFlow, RedirectCatcher, make_test_ca, metric, new_key, oauth_env, pkce

OIDC_DIR = REPO / "tests" / "oidc"
CLIENT_ID = "analytics-mcp"
ACCOUNTS = {
    "alice@example.com": {"email": "alice@example.com", "email_verified": True, "name": "Alice"},
    "eve@other.org": {"email": "eve@other.org", "email_verified": True, "name": "Eve"},
    "carol@example.com": {"email": "carol@example.com", "email_verified": False, "name": "Carol"},
    "dave@example.com": {"email": "dave@example.com", "email_verified": True, "hd": "other.org"},
    "frank@partner.org": {"email": "frank@partner.org", "email_verified": True, "name": "Frank"},
}


def cache_dir() -> Path:
    return Path(os.environ.get("ANALYTICS_MCP_CACHE", Path.home() / ".cache" / "analytics-mcp"))


@pytest.fixture(scope="session")
def idp_install() -> Path:
    """oidc-provider and Node 22 from npm (tests/oidc/package-lock.json), cached by its hash."""
    target = cache_dir() / "oidc"
    want = hashlib.sha256((OIDC_DIR / "package.json").read_bytes()
                          + (OIDC_DIR / "package-lock.json").read_bytes()).hexdigest()
    stamp = target / ".stamp"
    node = target / "node_modules" / ".bin" / "node"
    if not (stamp.exists() and stamp.read_text() == want and node.exists()):
        npm = shutil.which("npm")
        if npm is None:
            pytest.fail("npm is needed to install the test identity provider (tests/oidc)")
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir(parents=True)
        for name in ("package.json", "package-lock.json"):
            shutil.copy(OIDC_DIR / name, target / name)
        subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=target, check=True,
                       timeout=600, capture_output=True)
        stamp.write_text(want)
    version = subprocess.run([str(node), "--version"], capture_output=True, text=True).stdout
    assert version.startswith("v22."), version
    return target


class IdentityProvider:
    def __init__(self, install: Path, workdir: Path, tls: Path, callback: str, secret: str):
        self.install, self.workdir = install, workdir
        self.port = free_port()
        self.issuer = f"https://127.0.0.1:{self.port}"
        self.config = {
            "port": self.port, "issuer": self.issuer, "cert": str(tls / "host.pem"), "key": str(tls / "host.key"),
            "keystore": str(workdir / "keystore.json"), "kids": ["k1"], "accounts": ACCOUNTS,
            "clients": [{"client_id": CLIENT_ID, "client_secret": secret, "redirect_uris": [callback],
                         "grant_types": ["authorization_code"], "response_types": ["code"],
                         "token_endpoint_auth_method": "client_secret_basic"}],
        }
        self.proc = None

    def start(self, kids: list[str]) -> None:
        self.config["kids"] = kids
        path = self.workdir / "config.json"
        path.write_text(json.dumps(self.config))
        script = self.install / "provider.mjs"  # beside node_modules, where its import resolves
        shutil.copy(OIDC_DIR / "provider.mjs", script)
        log = self.workdir / f"idp-{'-'.join(kids)}.log"
        with open(log, "wb") as out:
            self.proc = subprocess.Popen([str(self.install / "node_modules" / ".bin" / "node"),
                                          str(script), str(path)],
                                         cwd=self.install, stdout=out, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL)

        def ready():
            if self.proc.poll() is not None:
                raise StopWaiting("the identity provider exited:\n" + log.read_text())
            return f"ready {self.port}" in log.read_text()

        wait_until(ready, 30, "the identity provider to listen")

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)


@pytest.fixture(scope="module")
def tls(tmp_path_factory):
    return make_test_ca(tmp_path_factory.mktemp("idp-tls"))


@pytest.fixture(scope="module")
def setup(server_factory, tmp_path_factory, idp_install, tls):
    work = tmp_path_factory.mktemp("idp")
    env, port = oauth_env(work, key=new_key())
    public = env["MCP_PUBLIC_URL"]
    secret = secrets.token_urlsafe(24)
    idp = IdentityProvider(idp_install, work, tls, f"{public}/oauth/callback", secret)
    idp.start(["k1"])
    (work / "client-secret").write_text(secret + "\n")
    allow = work / "allowed"
    allow.write_text("frank@partner.org\n")
    env.update({"MCP_OAUTH": "oidc", "MCP_OIDC_ISSUER": idp.issuer, "MCP_OIDC_CLIENT_ID": CLIENT_ID,
                "MCP_OIDC_CLIENT_SECRET_FILE": str(work / "client-secret"), "MCP_OIDC_ALLOWED_DOMAINS": "example.com",
                "MCP_OIDC_ALLOWED_FILE": str(allow), "MCP_OIDC_PROVIDER_NAME": "Example Corp sign-in",
                "MCP_OAUTH_CA_FILE": str(tls / "ca.pem")})
    srv = server_factory(tokens=None, **env)
    srv.public_url = public
    catcher = RedirectCatcher()
    yield srv, idp, catcher, allow
    catcher.close()
    idp.stop()


@pytest.fixture(scope="module")
def driver():
    # The provider's development login page imports a web font: no name but loopback resolves,
    # so nothing leaves the machine. Its self-signed CA is the test's own, trusted by the server
    # through MCP_OAUTH_CA_FILE; the browser is told to accept it.
    with chromium(extra_flags=["--ignore-certificate-errors",
                               "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1, EXCLUDE localhost"]) as d:
        yield d


def wait_for_login_form(driver):
    from selenium.webdriver.common.by import By
    try:
        wait_until(lambda: driver.find_elements(By.NAME, "login"), 15, "the provider's login form")
    except TimeoutError as e:
        raise AssertionError(f"{e}; the browser is at {driver.current_url}:\n"
                             f"{driver.find_element(By.TAG_NAME, 'body').text[:2000]}") from None


def sign_in_at_provider(driver, srv, catcher, login: str, shots: str | None = None):
    """Our page → Continue → the provider's login → consent → back. Returns (client, verifier,
    what the redirect URI got, or None when the browser ended on one of our error pages)."""
    from selenium.webdriver.common.by import By

    driver.execute_cdp_cmd("Network.clearBrowserCookies", {})
    flow = OAuthFlow(srv, srv.public_url)
    client = flow.register([catcher.url], name="Claude")
    verifier, challenge = pkce()
    catcher.drain()
    driver.get(f"{flow.url}/authorize?" + urllib.parse.urlencode(flow.authorize_params(client, challenge, "o-1")))
    assert "Continue with Example Corp sign-in" in driver.find_element(By.ID, "allow").text
    if shots:
        screenshot(driver, f"{shots}-our-page")
    driver.find_element(By.ID, "allow").click()
    wait_for_login_form(driver)
    if shots:
        screenshot(driver, f"{shots}-provider-login")
    driver.find_element(By.NAME, "login").send_keys(login)
    driver.find_element(By.NAME, "password").send_keys("any password")
    driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()

    def settled():
        if driver.current_url.startswith(catcher.url) or driver.current_url.startswith(srv.public_url):
            return "done"
        buttons = driver.find_elements(By.CSS_SELECTOR, "button[type=submit]")
        if buttons and buttons[0].text.strip() == "Continue":
            buttons[0].click()  # the provider's consent page
        return None

    wait_until(settled, 20, "the browser to come back from the provider")
    if driver.current_url.startswith(catcher.url):
        return client, verifier, catcher.next()
    return client, verifier, None


def test_allowed_domain_signs_in_and_calls_tools(setup, driver):
    from selenium.webdriver.common.by import By

    srv, idp, catcher, _ = setup
    client, verifier, back = sign_in_at_provider(driver, srv, catcher, "alice@example.com", shots="oauth-oidc")
    assert back is not None, driver.find_element(By.TAG_NAME, "body").text
    assert back["state"] == "o-1" and back["iss"] == srv.public_url
    flow = OAuthFlow(srv, srv.public_url)
    tokens = flow.exchange(client, back["code"], verifier).json()
    assert "id_token" not in tokens  # the provider's tokens never reach the client
    r = flow.call(tokens["access_token"], "SELECT 1 AS one")
    assert r.status == 200 and r.json()["result"]["structuredContent"]["rows"] == [{"one": 1}]
    srv.wait_for_stderr(lambda t: "audit caller=alice@example.com via=oauth tool=query" in t, "the OIDC audit line")
    refreshed = flow.refresh(client, tokens["refresh_token"]).json()
    assert flow.call(refreshed["access_token"]).status == 200


@pytest.mark.parametrize("login, title, hint, outcome", [
    ("eve@other.org", "This account may not use this server", "not on this server's list", "not_allowed"),
    ("carol@example.com", "Your e-mail address is not verified", "has not verified carol@example.com", "unverified_email"),
    ("dave@example.com", "This account may not use this server", "not a member of the company's workspace", "not_allowed"),
])
def test_refused_accounts_get_a_page_that_says_what_to_do(setup, driver, login, title, hint, outcome):
    from selenium.webdriver.common.by import By

    srv, _, catcher, _ = setup
    before = metric(srv, "mcp_oauth_sign_ins_total", f'outcome="{outcome}"')
    _, _, back = sign_in_at_provider(driver, srv, catcher, login)
    assert back is None and catcher.received.empty()
    assert driver.find_element(By.TAG_NAME, "h1").text == title
    assert hint in driver.find_element(By.TAG_NAME, "main").text
    screenshot(driver, f"oauth-oidc-refused-{outcome}-{login.split('@')[0]}")
    assert metric(srv, "mcp_oauth_sign_ins_total", f'outcome="{outcome}"') == before + 1


def test_allow_list_file_grants_and_revokes(setup, driver):
    srv, _, catcher, allow = setup
    client, verifier, back = sign_in_at_provider(driver, srv, catcher, "frank@partner.org")
    assert back is not None
    flow = OAuthFlow(srv, srv.public_url)
    tokens = flow.exchange(client, back["code"], verifier).json()
    assert flow.call(tokens["access_token"]).status == 200
    tmp = allow.with_suffix(".new")
    tmp.write_text("# frank's contract ended\n")
    tmp.replace(allow)
    wait_until(lambda: flow.call(tokens["access_token"]).status == 401, 10, "frank to be refused")
    assert flow.refresh(client, tokens["refresh_token"]).json()["error"] == "invalid_grant"
    # a denied address inside an allowed domain is refused too
    tmp.write_text("!alice@example.com\n")
    tmp.replace(allow)
    wait_until(lambda: srv.stderr_text().count("oidc allow-list loaded") >= 3, 10, "the allow-list reload")
    _, _, back = sign_in_at_provider(driver, srv, catcher, "alice@example.com")
    assert back is None
    tmp.write_text("frank@partner.org\n")
    tmp.replace(allow)
    wait_until(lambda: srv.stderr_text().count("oidc allow-list loaded") >= 4, 10, "the allow-list reload")


def test_provider_key_rotation_is_followed(setup, driver):
    srv, idp, catcher, _ = setup
    assert sign_in_at_provider(driver, srv, catcher, "alice@example.com")[2] is not None  # JWKS cached: k1
    idp.stop()
    idp.start(["k2", "k1"])  # the provider rotates: k2 signs now
    client, verifier, back = sign_in_at_provider(driver, srv, catcher, "alice@example.com")
    assert back is not None, "an ID token signed with the provider's new key must be accepted"
    assert OAuthFlow(srv, srv.public_url).exchange(client, back["code"], verifier).status == 200
    idp.stop()
    idp.start(["k3"])  # old keys withdrawn altogether
    assert sign_in_at_provider(driver, srv, catcher, "alice@example.com")[2] is not None


def test_forged_and_replayed_callbacks_issue_nothing(setup):
    srv, _, catcher, _ = setup
    catcher.drain()
    for query in ["", "state=forged&code=x", "state=a.b.c&code=x"]:
        r = srv.get("/oauth/callback?" + query)
        assert r.status == 400 and "Location" not in r.headers and "no longer valid" in r.text
    # a genuine round trip started over HTTP: our page, Continue → the provider's URL with our state
    flow = OAuthFlow(srv, srv.public_url)
    client = flow.register([catcher.url], name="Claude")
    _, challenge = pkce()
    page = flow.open_page(flow.authorize_params(client, challenge, "o-3"))
    to_provider = flow.submit(page, None)
    assert to_provider.status == 303
    sent = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(to_provider.headers.get("Location")).query))
    assert sent["code_challenge_method"] == "S256" and sent["nonce"] and sent["scope"] == "openid email profile"
    assert sent["redirect_uri"] == f"{srv.public_url}/oauth/callback" and sent["client_id"] == CLIENT_ID
    callback = "/oauth/callback?" + urllib.parse.urlencode({"state": sent["state"], "code": "forged-code"})
    # replayed into another browser (no CSRF cookie): refused before the provider is asked
    r = srv.get(callback)
    assert r.status == 403 and "Location" not in r.headers and "security check" in r.text
    # the right browser but a code the provider never issued: the provider refuses to redeem it
    r = srv.get(callback, headers={"Cookie": page.cookie})
    assert r.status == 403 and "Location" not in r.headers and "did not complete" in r.text
    # an answer claiming to come from another issuer (mix-up, RFC 9207)
    r = srv.get(callback + "&iss=https%3A%2F%2Fevil.example.net", headers={"Cookie": page.cookie})
    assert r.status == 400 and "wrong identity provider" in r.text
    # the provider reports the analyst declined: back to the client with access_denied, no code
    r = srv.get("/oauth/callback?" + urllib.parse.urlencode({"state": sent["state"], "error": "access_denied"}),
                headers={"Cookie": page.cookie})
    assert r.status == 303
    back = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(r.headers.get("Location")).query))
    assert back["error"] == "access_denied" and back["state"] == "o-3" and "code" not in back
    assert catcher.received.empty()


def test_outbound_https_trusts_the_system_store_and_refuses_an_unknown_ca(setup, start_server, tmp_path_factory, tls):
    """The provider's CA as the system trust store (SSL_CERT_FILE, as rustls-native-certs finds it)
    is enough without MCP_OAUTH_CA_FILE; a system store without it (and no CA file) is not: the
    sign-in page says the provider is unreachable and nothing goes to the provider."""
    _, idp, catcher, _ = setup
    stranger = make_test_ca(tmp_path_factory.mktemp("stranger-ca"))
    work = tmp_path_factory.mktemp("system-store")
    secret_file = work / "client-secret"
    secret_file.write_text("unused\n")
    for store, reaches in [(tls / "ca.pem", True), (stranger / "ca.pem", False)]:
        env, _ = oauth_env(work, key=new_key())
        env.update({"MCP_OAUTH": "oidc", "MCP_OIDC_ISSUER": idp.issuer, "MCP_OIDC_CLIENT_ID": CLIENT_ID,
                    "MCP_OIDC_CLIENT_SECRET_FILE": str(secret_file), "MCP_OIDC_ALLOWED_DOMAINS": "example.com",
                    "SSL_CERT_FILE": str(store), "SSL_CERT_DIR": str(work)})
        srv = start_server(tokens=None, **env)
        flow = OAuthFlow(srv, env["MCP_PUBLIC_URL"])
        client = flow.register([catcher.url], name="Claude")
        page = flow.open_page(flow.authorize_params(client, pkce()[1], "o-4"))
        r = flow.submit(page, None)
        if reaches:
            assert r.status == 303 and r.headers.get("Location").startswith(idp.issuer + "/"), r.text[:300]
        else:
            assert r.status == 502 and "not reachable" in r.text and "Location" not in r.headers
            log = srv.wait_for_stderr(lambda t: "oidc: provider unavailable" in t, "the refusal logged")
            assert "UnknownIssuer" in log or "certificate" in log.lower(), log[-800:]
        srv.stop()
