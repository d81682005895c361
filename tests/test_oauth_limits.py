"""OAuth's in-process tables are bounded (issue 11's rule applied to issue 10): a hostile client
pushes each past its cap — many redeemed codes, many sign-ins refreshing, failed sign-ins from
many addresses — and the table stays at its cap, makes room as the README says, and never lets a
code or a refresh token through twice nor forgets a throttled address. Every cap hit is counted
(mcp_oauth_tables_full_total) and logged, at most once a minute per table.

The caps are set tiny (MCP_OAUTH_MAX_*) so the tests are quick; the policy does not depend on
the size. The document cache's cap is tested with the other Client ID Metadata Document tests in
test_oauth_sdk.py (it needs their HTTPS document server).
"""

from __future__ import annotations

import secrets

import pytest

from oauth_lib import OAuthFlow, metric, oauth_env, pkce

CAP = 3


@pytest.fixture(scope="module")
def srv(server_factory, tmp_path_factory):
    env, _ = oauth_env(tmp_path_factory.mktemp("limits-keys"), MCP_OAUTH_MAX_CODES=str(CAP),
                       MCP_OAUTH_MAX_SIGN_INS=str(CAP), MCP_OAUTH_CLIENT_IP_HEADER="X-Forwarded-For")
    server = server_factory(**env)
    server.public_url = env["MCP_PUBLIC_URL"]
    return server


@pytest.fixture(scope="module")
def throttled_srv(server_factory, tmp_path_factory):
    """Its own server: once the shared allowance is spent, new addresses cannot sign in for 10 min."""
    env, _ = oauth_env(tmp_path_factory.mktemp("throttle-keys"), MCP_OAUTH_MAX_ADDRESSES=str(CAP),
                       MCP_OAUTH_CLIENT_IP_HEADER="X-Forwarded-For")
    server = server_factory(**env)
    server.public_url = env["MCP_PUBLIC_URL"]
    return server


def entries(server, table: str) -> float:
    return metric(server, "mcp_oauth_table_entries", f'table="{table}"')


def full(server, table: str) -> float:
    return metric(server, "mcp_oauth_tables_full_total", f'table="{table}"')


def table_full_logs(server, table: str) -> int:
    return server.stderr_text().count(f"the {table} table is full")


def test_redeemed_codes_past_the_cap_never_let_a_code_through_twice(srv):
    flow = OAuthFlow(srv, srv.public_url, client_ip="192.0.2.10")
    client = flow.register()
    token = srv.tokens["alice"]
    held_verifier, held_challenge = pkce()
    held_back = flow.sign_in(client, token, held_challenge)["code"]  # issued first, redeemed last
    redeemed = []
    for _ in range(3 * CAP):
        verifier, challenge = pkce()
        code = flow.sign_in(client, token, challenge)["code"]
        r = flow.exchange(client, code, verifier)
        assert r.status == 200, r.text
        redeemed.append((code, verifier))
        assert entries(srv, "codes") <= CAP
    assert entries(srv, "codes") == CAP
    assert full(srv, "codes") == 3 * CAP - CAP
    assert table_full_logs(srv, "codes") == 1  # six times full, logged once
    # every redeemed code, the ones let go included, is refused a second time: nothing issued
    for code, verifier in redeemed:
        again = flow.exchange(client, code, verifier)
        assert again.status == 400 and again.json()["error"] == "invalid_grant", again.text
        assert "access_token" not in again.text
    let_go = [flow.exchange(client, c, v).json()["error_description"] for c, v in redeemed[:2 * CAP]]
    assert set(let_go) == {"the authorization code is older than this server can check under the current load: "
                           "sign in again"}
    # a code issued before the ones let go was never redeemed, yet it cannot be told apart: refused
    late = flow.exchange(client, held_back, held_verifier)
    assert late.status == 400 and "sign in again" in late.json()["error_description"]
    assert "access_token" not in late.text
    # a fresh sign-in is not affected: it is newer than everything the table let go
    assert flow.call(flow.tokens_for(client, token)["access_token"]).status == 200


def test_sign_ins_past_the_cap_end_the_oldest_and_replays_stay_refused(srv):
    flow = OAuthFlow(srv, srv.public_url, client_ip="192.0.2.11")
    client = flow.register()
    never_refreshed = flow.tokens_for(client, srv.tokens["bob"])  # begun first, never tracked
    sign_ins = []  # (first tokens, tokens after one refresh), oldest first
    for _ in range(CAP + 2):
        first = flow.tokens_for(client, srv.tokens["bob"])
        r = flow.refresh(client, first["refresh_token"])
        assert r.status == 200, r.text
        sign_ins.append((first, r.json()))
        assert entries(srv, "sign_ins") <= CAP
    assert entries(srv, "sign_ins") == CAP
    assert full(srv, "sign_ins") == 2
    assert table_full_logs(srv, "sign_ins") == 1
    # the two oldest tracked sign-ins, and the one begun before them, have ended: refresh and
    # access tokens alike (a record let go can never be replayed or regain access)
    for first, refreshed in sign_ins[:2] + [(never_refreshed, never_refreshed)]:
        for refresh_token in {first["refresh_token"], refreshed["refresh_token"]}:
            r = flow.refresh(client, refresh_token)
            assert r.status == 400 and r.json()["error"] == "invalid_grant" and "access_token" not in r.text
            assert "sign in again" in r.json()["error_description"]
        assert flow.call(refreshed["access_token"]).status == 401
    # the newer ones still work, and a replay among them is still caught and revokes it
    for _, refreshed in sign_ins[2:]:
        assert flow.call(refreshed["access_token"]).status == 200
    first, refreshed = sign_ins[-1]
    replay = flow.refresh(client, first["refresh_token"])
    assert replay.status == 400 and "already used" in replay.json()["error_description"]
    assert flow.call(refreshed["access_token"]).status == 401
    assert flow.refresh(client, refreshed["refresh_token"]).json()["error"] == "invalid_grant"
    _, alive = sign_ins[2]
    assert flow.refresh(client, alive["refresh_token"]).status == 200
    # an analyst signing in now is served
    assert flow.call(flow.tokens_for(client, srv.tokens["bob"])["access_token"]).status == 200


def fail_sign_in(flow: OAuthFlow, page, address: str) -> int:
    return flow.submit(page, "guess-" + secrets.token_hex(4), headers={"X-Forwarded-For": address}).status


def test_throttle_past_the_cap_never_forgets_an_address_and_the_rest_share_one_allowance(throttled_srv):
    srv = throttled_srv
    flow = OAuthFlow(srv, srv.public_url)
    client = flow.register()
    _, challenge = pkce()
    page = flow.open_page(flow.authorize_params(client, challenge), headers={"X-Forwarded-For": "192.0.2.1"})
    token = srv.tokens["alice"]
    # the attacker's first address is throttled: ten failures within the window
    attacker = "192.0.2.66"
    for _ in range(10):
        assert fail_sign_in(flow, page, attacker) == 401
    assert flow.submit(page, token, headers={"X-Forwarded-For": attacker}).status == 429
    # an IPv6 /64 is one address: ten failures spread over ten addresses of it throttle all of it
    for i in range(10):
        assert fail_sign_in(flow, page, f"2001:db8:7:7::{i + 1:x}") == 401
    assert flow.submit(page, token, headers={"X-Forwarded-For": "2001:db8:7:7::beef"}).status == 429
    assert entries(srv, "addresses") == 2
    # one more address fills the table; an analyst there with one typo still signs in afterwards
    analyst = "198.51.100.20"
    assert fail_sign_in(flow, page, analyst) == 401
    assert entries(srv, "addresses") == CAP
    # then a wide attack: failures from addresses the table has no room for share one allowance
    before = metric(srv, "mcp_oauth_sign_ins_total", 'outcome="bad_token"')
    for i in range(10):
        assert fail_sign_in(flow, page, f"203.0.113.{i + 1}") == 401
        assert entries(srv, "addresses") == CAP
    assert metric(srv, "mcp_oauth_sign_ins_total", 'outcome="bad_token"') - before == 10
    assert full(srv, "addresses") == 10
    assert table_full_logs(srv, "addresses") == 1
    # nothing was forgotten: the attacker's first address is still refused, even with the right token
    for address in [attacker, "2001:db8:7:7::1"]:
        blocked = flow.submit(page, token, headers={"X-Forwarded-For": address})
        assert blocked.status == 429 and "Location" not in blocked.headers
    # the shared allowance is spent: any address without room of its own is refused (fail closed) …
    for newcomer in ["203.0.113.200", "2001:db8:99::1"]:
        blocked = flow.submit(page, token, headers={"X-Forwarded-For": newcomer})
        assert blocked.status == 429 and "Too many failed sign-ins" in blocked.text
        assert flow.open_page({"client_id": "unknown"}, headers={"X-Forwarded-For": newcomer}).response.status == 429
    # … while an address the table holds, under its limit, signs in
    r = flow.submit(page, token, headers={"X-Forwarded-For": analyst})
    assert r.status == 303 and "code=" in r.headers.get("Location")
    assert entries(srv, "addresses") == CAP
