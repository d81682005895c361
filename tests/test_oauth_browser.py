"""The OAuth sign-in pages in a real browser (Debian Chromium through Selenium), as claude.ai's
flow runs: the client registers, sends the analyst to /authorize, the analyst types the personal
token and presses Allow, the browser comes back to the client's redirect URI with the code, the
client exchanges it, calls a tool, refreshes, and is refused once the analyst is removed.
Screenshots of every page are kept as test artefacts (target/test-artifacts/screenshots/oauth-*).
"""

from __future__ import annotations

import secrets
import urllib.parse

import pytest

from browser import chromium, console_errors, screenshot
from conftest import wait_until
from oauth_lib import OAuthFlow, RedirectCatcher, new_key, oauth_env, pkce

DAVE = "tok-d-" + secrets.token_hex(16)


@pytest.fixture(scope="module")
def catcher():
    c = RedirectCatcher()
    yield c
    c.close()


@pytest.fixture(scope="module")
def tokens_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("browser-tokens") / "tokens"
    path.write_text(f"dave:{DAVE}\n")
    return path


@pytest.fixture(scope="module")
def srv(server_factory, tmp_path_factory, tokens_file):
    env, _ = oauth_env(tmp_path_factory.mktemp("browser-keys"), key=new_key(), MCP_AUTH_TOKENS_FILE=str(tokens_file))
    server = server_factory(**env)
    server.public_url = env["MCP_PUBLIC_URL"]
    return server


@pytest.fixture(scope="module")
def driver():
    with chromium() as d:
        yield d


def authorize_url(flow, client, challenge, state):
    return f"{flow.url}/authorize?" + urllib.parse.urlencode(flow.authorize_params(client, challenge, state))


def test_browser_sign_in_code_token_tool_refresh_revocation(srv, catcher, driver, tokens_file):
    from selenium.webdriver.common.by import By

    flow = OAuthFlow(srv, srv.public_url)
    client = flow.register([catcher.url], name="Claude")
    verifier, challenge = pkce()
    state = secrets.token_urlsafe(16)
    driver.get(authorize_url(flow, client, challenge, state))
    heading = driver.find_element(By.TAG_NAME, "h1").text
    assert heading == "Claude wants to read the analytics_test database as you"
    assert "127.0.0.1" in driver.find_element(By.CLASS_NAME, "facts").text
    screenshot(driver, "oauth-sign-in")

    token_field = driver.find_element(By.ID, "token")
    token_field.send_keys("not-my-token")
    driver.find_element(By.ID, "allow").click()
    problem = driver.find_element(By.CLASS_NAME, "problem").text
    assert "That token is not valid here" in problem
    screenshot(driver, "oauth-sign-in-wrong-token")
    assert catcher.received.empty()

    catcher.drain()
    driver.find_element(By.ID, "token").send_keys(DAVE)
    driver.find_element(By.ID, "allow").click()
    back = catcher.next()
    wait_until(lambda: driver.current_url.startswith(catcher.url), 10, "the browser to reach the redirect URI")
    screenshot(driver, "oauth-back-in-the-app")
    assert back["state"] == state and back["iss"] == srv.public_url and back["code"]
    blocked = [e for e in console_errors(driver) if "Refused to" in e or "Content Security Policy" in e]
    assert blocked == []  # no CSP violation: the stylesheet loaded, the form was allowed to redirect

    tokens = flow.exchange(client, back["code"], verifier).json()
    r = flow.call(tokens["access_token"], "SELECT count(*) AS n FROM fleet.vehicles")
    assert r.status == 200 and r.json()["result"]["structuredContent"]["rows"][0]["n"] > 0
    refreshed = flow.refresh(client, tokens["refresh_token"]).json()
    assert flow.call(refreshed["access_token"]).status == 200

    tokens_file.write_text("# dave's access was removed\n")
    wait_until(lambda: flow.call(refreshed["access_token"]).status == 401, 10, "dave to be refused after removal")
    assert flow.refresh(client, refreshed["refresh_token"]).json()["error"] == "invalid_grant"
    tokens_file.write_text(f"dave:{DAVE}\n")


def test_browser_deny_goes_back_with_access_denied(srv, catcher, driver):
    from selenium.webdriver.common.by import By

    flow = OAuthFlow(srv, srv.public_url)
    client = flow.register([catcher.url], name="Claude")
    _, challenge = pkce()
    catcher.drain()
    driver.get(authorize_url(flow, client, challenge, "deny-1"))
    driver.find_element(By.ID, "deny").click()  # no token typed: Deny needs none
    back = catcher.next()
    assert back["error"] == "access_denied" and back["state"] == "deny-1" and "code" not in back


def test_browser_error_pages_stay_on_the_server(srv, catcher, driver):
    from selenium.webdriver.common.by import By

    flow = OAuthFlow(srv, srv.public_url)
    client = flow.register([catcher.url], name="Claude")
    _, challenge = pkce()
    catcher.drain()
    params = flow.authorize_params(client, challenge, "e-1", redirect_uri="https://evil.example.net/steal")
    driver.get(f"{flow.url}/authorize?" + urllib.parse.urlencode(params))
    assert driver.current_url.startswith(srv.public_url)
    assert driver.find_element(By.TAG_NAME, "h1").text == "This sign-in link points somewhere unexpected"
    screenshot(driver, "oauth-error-unregistered-redirect")
    driver.get(f"{flow.url}/authorize?client_id=not-registered&redirect_uri={catcher.url}")
    assert driver.find_element(By.TAG_NAME, "h1").text == "This app is not registered here"
    screenshot(driver, "oauth-error-unknown-client")
    assert catcher.received.empty()


def test_page_refuses_to_be_framed(srv, driver, tmp_path):
    """A clickjacking page that frames the sign-in page gets nothing: frame-ancestors 'none'."""
    flow = OAuthFlow(srv, srv.public_url)
    client = flow.register(["http://127.0.0.1:1/cb"], name="Claude")
    _, challenge = pkce()
    target = authorize_url(flow, client, challenge, "f")
    evil = tmp_path / "evil.html"
    evil.write_text(f'<!doctype html><iframe id="f" src="{target}" width="600" height="400"></iframe>')
    driver.get(evil.as_uri())
    driver.switch_to.frame("f")
    try:
        assert "wants to read" not in driver.page_source
    finally:
        driver.switch_to.default_content()
