"""Issue 11: bounded work per request, fair share per analyst.

One client can neither exhaust the server's memory (batches refused whole above MCP_MAX_BATCH, a
batch's answers and time bounded, every hostile body within the README's documented per-request
memory, measured as the process's VmHWM) nor starve the other analysts (MCP_MAX_INFLIGHT_PER_CALLER,
fewest-held-first admission, MCP_RATE_PER_CALLER). Slow queries are pg_sleep; every wait polls
observable state (pg_stat_activity, /metrics, the audit log) with a deadline, and fair share is
asserted on the order of completion and on the backend that served a call, never on wall-clock.
"""

from __future__ import annotations

import json
import re
import secrets
import threading

import pytest

import worst_case
from conftest import REPO, RO_ROLE, wait_until
from helpers_net import metric_sum, parse_prometheus

APP = "analytics-mcp"
NOT_RUN = -32000


def call(i, sql: str, name: str = "query") -> dict:
    return {"jsonrpc": "2.0", "id": i, "method": "tools/call",
            "params": {"name": name, "arguments": {"sql": sql}}}


def post_batch(srv, messages: list, caller="default"):
    # no MCP-Protocol-Version header: 2025-03-26, the only revision with batches
    return srv.post("/mcp", messages, headers={"MCP-Protocol-Version": None}, caller=caller)


def audit_lines(srv, tag: str) -> list[str]:
    return [line for line in srv.stderr_text().splitlines() if " audit " in line and tag in line]


def metrics(srv) -> dict:
    return parse_prometheus(srv.get("/metrics").text)


def tool_text(envelope: dict) -> str:
    return envelope["result"]["content"][0]["text"]


def documented_per_request_mib() -> float:
    """The README's worst case of one request in flight (the larger of its glibc and musl figures)."""
    readme = (REPO / "README.md").read_text()
    row = next(line for line in readme.splitlines() if line.startswith("| each request in flight"))
    figures = [float(x) for x in re.findall(r"([\d.]+) MiB", row)]
    assert figures, row
    return max(figures)


@pytest.fixture(scope="module")
def srv(server_factory):
    """Default limits (MCP_MAX_BATCH=20, 150 KB result budget), analysts alice and bob."""
    server = server_factory()
    assert server.query("SELECT 1 AS one")["rows"] == [{"one": 1}]
    return server


# ── batches ────────────────────────────────────────────────────────────────────

def test_the_batch_attack_at_the_largest_body_is_refused_whole(srv):
    tag = "attack_" + secrets.token_hex(4)
    body = worst_case.attack_batch(f"SELECT repeat('x', 140000), '{tag}' AS tag")
    assert len(body) == 1024 * 1024
    messages = len(json.loads(body))
    before = metrics(srv)
    r = srv.post("/mcp", body, headers={"MCP-Protocol-Version": None})
    assert r.status == 400, r.text[:300]
    error = r.json()["error"]
    assert error["code"] == -32600
    assert error["message"].startswith(f"batch of {messages} messages refused: at most 20 per batch "
                                       "(MCP_MAX_BATCH); nothing was run"), error
    assert len(r.body) < 400
    after = metrics(srv)
    assert audit_lines(srv, tag) == [], "nothing may run or be audited"
    assert metric_sum(after, "mcp_tool_calls_total") == metric_sum(before, "mcp_tool_calls_total")
    assert (metric_sum(after, "mcp_limits_hit_total", limit="max_batch")
            == metric_sum(before, "mcp_limits_hit_total", limit="max_batch") + 1)


def test_a_batch_at_the_limit_runs_every_message_in_order(srv):
    tag = "order_" + secrets.token_hex(4)
    messages: list = [call(i, f"SELECT {i} AS i, '{tag}' AS tag") for i in range(17)]
    messages.insert(5, {"jsonrpc": "2.0", "id": "ping", "method": "ping"})
    messages.insert(9, {"jsonrpc": "2.0", "method": "notifications/initialized"})
    messages.append({"jsonrpc": "2.0", "id": "list", "method": "tools/list"})
    assert len(messages) == 20
    r = post_batch(srv, messages)
    assert r.status == 200, r.text[:300]
    replies = r.json()
    want_ids = [m["id"] for m in messages if "id" in m]
    assert [reply["id"] for reply in replies] == want_ids, "one reply per request, in the batch's order"
    for reply in replies:
        if isinstance(reply["id"], int):
            assert reply["result"]["structuredContent"]["rows"] == [{"i": reply["id"], "tag": tag}]
    assert replies[-1]["result"]["tools"]
    assert len(audit_lines(srv, tag)) == 17


def test_a_batch_over_the_limit_runs_nothing(srv):
    tag = "over_" + secrets.token_hex(4)
    r = post_batch(srv, [call(i, f"SELECT {i}, '{tag}' AS tag") for i in range(21)])
    assert r.status == 400
    body = r.json()
    assert body["id"] is None and body["error"]["code"] == -32600
    assert "batch of 21 messages refused: at most 20 per batch (MCP_MAX_BATCH)" in body["error"]["message"]
    assert audit_lines(srv, tag) == [], "the audit log shows no call"
    # and one at the limit from the same client right after works
    assert post_batch(srv, [call(1, "SELECT 1 AS one")]).json()[0]["result"]["structuredContent"]["rows"] \
        == [{"one": 1}]


def test_a_batch_stops_running_once_its_answers_reach_the_bound(srv):
    """20 answers of ~280 KB each: the batch's answers stop at 4 × MCP_MAX_RESULT_BYTES; the rest
    are answered "not run", in order, and never reach the database."""
    tag = "answers_" + secrets.token_hex(4)
    limit = 4 * 150_000
    r = post_batch(srv, [call(i, f"SELECT repeat('x', 140000) AS x, '{tag}' AS tag") for i in range(20)])
    assert r.status == 200
    replies = r.json()
    assert [reply["id"] for reply in replies] == list(range(20))
    ran = [reply for reply in replies if "result" in reply]
    refused = [reply for reply in replies if "error" in reply]
    assert ran and refused and replies[:len(ran)] == ran, "the first ones run, the remaining ones do not"
    assert all(len(reply["result"]["structuredContent"]["rows"][0]["x"]) == 140000 for reply in ran)
    for reply in refused:
        assert reply["error"]["code"] == NOT_RUN
        assert re.match(r"not run: this batch's answers reached \d+ bytes, the most one batch may return "
                        r"\(4 × MCP_MAX_RESULT_BYTES = 600000\)", reply["error"]["message"]), reply
    one_answer = max(len(json.dumps(reply, ensure_ascii=False, default=str)) for reply in ran)
    assert len(r.body) <= limit + one_answer + 200 * len(refused)
    assert len(audit_lines(srv, tag)) == len(ran), "not-run calls never reach the database"


def test_a_batch_shares_one_deadline(start_server):
    """Pool wait 0.9 s + statement timeout 2 s: the batch has 2.9 s. The first 1.5 s sleep runs, the
    second gets what is left (under 1.4 s) as its statement timeout, the ones after it are not run."""
    srv = start_server(MCP_POOL_WAIT_MS="900", MCP_STATEMENT_TIMEOUT_MS="2000")
    tag = "deadline_" + secrets.token_hex(4)
    r = post_batch(srv, [call(1, f"SELECT pg_sleep(1.5), '{tag}-1' AS tag"),
                         call(2, f"SELECT pg_sleep(1.5), '{tag}-2' AS tag"),
                         call(3, f"SELECT 3, '{tag}-3' AS tag"),
                         {"jsonrpc": "2.0", "id": 4, "method": "ping"}])
    assert r.status == 200
    first, second, third, fourth = r.json()
    assert first["result"]["isError"] is False
    assert second["result"]["isError"] is True
    assert re.match(r"statement timeout after \d+ m?s: the batch's shared time ran out", tool_text(second)), second
    assert tool_text(second).endswith("(57014)")
    for late in (third, fourth):
        assert late["error"]["code"] == NOT_RUN
        assert late["error"]["message"].startswith(
            "not run: this batch's time ran out (a batch may take MCP_POOL_WAIT_MS + MCP_STATEMENT_TIMEOUT_MS "
            "= 2900 ms in all)"), late
    statuses = [re.search(r"status=(\w+)", line).group(1) for line in audit_lines(srv, tag)]
    assert statuses == ["ok", "timeout"], statuses
    # a request of its own still gets the whole statement timeout
    assert srv.query("SELECT pg_sleep(1.5) AS slept")["rows"] == [{"slept": ""}]


# ── one request, bounded memory ────────────────────────────────────────────────

def test_hostile_bodies_are_refused_cheaply_and_echo_little(srv):
    values = json.dumps(call(1, "SELECT 1") | {"pad": [0] * 4096})
    r = srv.post("/mcp", values)
    assert r.status == 400 and r.json()["error"]["code"] == -32600
    assert "more than 4096 JSON values" in r.json()["error"]["message"]

    huge_name = srv.rpc("tools/call", {"name": "\u0001" * 150_000})
    assert huge_name["error"]["code"] == -32602 and len(huge_name["error"]["message"]) < 600
    huge_method = srv.rpc("x" * 500_000)
    assert huge_method["error"]["code"] == -32601 and len(huge_method["error"]["message"]) < 200

    # PostgreSQL quotes a bad literal whole; the tool error carries at most 2,000 characters of it
    text = srv.tool_error("query", {"sql": f"SELECT '{'x' * 20000}'::int"})
    assert text.startswith("invalid input syntax for type integer") and len(text) <= 2001 and text.endswith("…")


def test_text_arguments_are_capped_at_the_schema_maxlength(srv):
    tools = {t["name"]: t for t in srv.rpc("tools/list")["result"]["tools"]}
    assert tools["query"]["inputSchema"]["properties"]["sql"]["maxLength"] == 32768
    longest = "SELECT 1 AS one -- " + "é" * (32768 - 19)
    assert len(longest) == 32768
    assert srv.query(longest)["rows"] == [{"one": 1}], "exactly maxLength characters (not bytes) is fine"
    env = srv.call_tool_envelope("query", {"sql": longest + "x"})
    assert env["error"]["code"] == -32602
    assert env["error"]["message"].startswith("query: sql must be at most 32768 characters")


def test_worst_requests_stay_within_the_documented_memory_bound(server_factory):
    """Eight connections send every worst-case body (the batch attack at the largest body, a batch of
    answers at the budget, the longest SQL to the database, the lexer's worst, the most JSON values,
    a 1 MiB name to echo), each starting at a different one, all at once, with a pool of eight so every request may hold a
    database connection at its peak. The process's VmHWM grows by at most 8 × the README's figure."""
    per_request_kib = documented_per_request_mib() * 1024
    c = 8
    srv = server_factory(tokens=None, MCP_POOL_MAX=str(c))  # one anonymous caller: no share cap
    assert srv.query("SELECT 1 AS one")["rows"] == [{"one": 1}]
    base = worst_case.vm_kib(srv.proc.pid)
    seen = worst_case.drive(srv.port, None, c, rounds=1)
    hwm = worst_case.vm_kib(srv.proc.pid)
    print(f"\nworst case, {c} connections: VmHWM {base} → {hwm} KiB, {(hwm - base) / c / 1024:.2f} MiB per "
          f"request (documented {per_request_kib / 1024:.1f} MiB)")
    statuses = {name: status for (name, status) in seen}
    assert statuses == {"attack": 400, "answers": 200, "wide_sql": 200, "lexer": 200, "values": 200,
                        "echo": 200}, seen
    assert sum(seen.values()) == c * 6
    assert hwm - base <= c * per_request_kib, \
        f"VmHWM grew {hwm - base} KiB for {c} worst-case requests: over {c} × {per_request_kib:.0f} KiB"
    assert srv.proc.poll() is None
    assert srv.query("SELECT 2 AS two")["rows"] == [{"two": 2}]


WIDE_CATALOG_SQL = """
CREATE SCHEMA wide;
CREATE TABLE wide.many_columns ({columns});
{tables}
GRANT CONNECT ON DATABASE amcp_limits TO {role};
GRANT USAGE ON SCHEMA wide TO {role};
GRANT SELECT ON ALL TABLES IN SCHEMA wide TO {role};
"""


def test_introspection_answers_over_the_budget_come_in_pages(pg, start_server):
    """A catalog larger than MCP_MAX_RESULT_BYTES (here 4,096): every answer stays within the budget
    and whole, the rest follows with next_cursor (tests/test_scale.py covers thousands of tables);
    smaller answers are unchanged."""
    pg.psql("DROP DATABASE IF EXISTS amcp_limits", db="postgres")
    pg.psql("CREATE DATABASE amcp_limits", db="postgres")
    columns = ", ".join(f"column_number_{i:03} integer" for i in range(80))
    tables = "\n".join(f"CREATE TABLE wide.table_number_{i:03} (id integer);" for i in range(100))
    pg.psql(WIDE_CATALOG_SQL.format(columns=columns, tables=tables, role=RO_ROLE), db="amcp_limits")
    dsn = f"postgresql://{RO_ROLE}:{pg.ro_password}@127.0.0.1:{pg.port}/amcp_limits"
    srv = start_server(DATABASE_URL=dsn, MCP_MAX_RESULT_BYTES="4096")
    for tool, args, key, count in [("describe_table", {"schema": "wide", "table": "many_columns"}, "columns", 80),
                                   ("list_tables", {"schema": "wide"}, "tables", 101)]:
        items, cursor, pages = [], None, 0
        while True:
            page = srv.tool(tool, {**args, **({"cursor": cursor} if cursor else {})})
            assert len(json.dumps(page, separators=(",", ":"))) <= 4096
            items += page[key]
            pages += 1
            cursor = page["next_cursor"]
            if not cursor:
                break
            assert page["truncated_reason"] == "max_bytes"
        assert len(items) == count and len({i["name"] for i in items}) == count and pages > 1
    assert [s["schema"] for s in srv.tool("list_schemas")["schemas"]] == ["public", "wide"]
    assert srv.tool("describe_table", {"schema": "wide", "table": "table_number_007"})["columns"][0]["name"] == "id"
    statuses = re.findall(r"tool=(\w+) status=(\w+) rows=\d+ truncated=(\w+)", srv.stderr_text())
    assert ("describe_table", "ok", "max_bytes") in statuses and ("describe_table", "ok", "no") in statuses


# ── fair share per analyst ─────────────────────────────────────────────────────

class Fired:
    """Calls fired from threads; records the order in which their answers arrived."""

    def __init__(self):
        self.done: list[tuple[str, dict]] = []
        self.lock = threading.Lock()
        self.threads: list[threading.Thread] = []

    def fire(self, srv, who: str, sql: str, label: str | None = None) -> None:
        def run():
            env = srv.call_tool_envelope("query", {"sql": sql}, caller=who)
            with self.lock:
                self.done.append((label or who, env))
        t = threading.Thread(target=run, daemon=True)
        t.start()
        self.threads.append(t)

    def labels(self) -> list[str]:
        with self.lock:
            return [label for label, _ in self.done]

    def result(self, label: str) -> dict:
        with self.lock:
            return next(env for lab, env in self.done if lab == label)["result"]


def active_backends(pg, tag: str) -> list[int]:
    out = pg.psql(f"SELECT pid FROM pg_stat_activity WHERE application_name = '{APP}' AND state = 'active' "
                  f"AND query LIKE '%{tag}%' AND pid <> pg_backend_pid() ORDER BY pid")
    return [int(x) for x in out.split()] if out else []


def cancel_all(pg, fired: Fired, tag: str) -> None:
    """Cancel the slow queries (each waiting call then runs and is cancelled in turn) until every
    fired call has answered."""
    def finished():
        pg.psql(f"SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE application_name = '{APP}' "
                f"AND query LIKE '%{tag}%' AND pid <> pg_backend_pid()")
        return all(not t.is_alive() for t in fired.threads)
    wait_until(finished, 60, "every slow call to be cancelled and answered", interval=0.05)


@pytest.fixture(scope="module")
def shared(server_factory):
    """A pool of 4 (so each analyst's share is 2) and long waits, for three analysts."""
    tokens = {name: f"tok-{name}-" + secrets.token_hex(12) for name in ("alice", "bob", "carol")}
    server = server_factory(tokens=tokens, MCP_POOL_MAX="4", MCP_POOL_WAIT_MS="60000",
                            MCP_SHUTDOWN_GRACE_S="1")
    assert server.query("SELECT 1 AS one")["rows"] == [{"one": 1}]
    return server


def test_an_analyst_flooding_the_pool_leaves_a_free_connection_for_another(shared, pg):
    """Alice fires 4 × the pool size of slow queries; she runs 2 (her share) and the other 14 wait for
    her own calls. Bob's call is served at once, from a connection none of hers holds."""
    tag = "flood_" + secrets.token_hex(4)
    fired = Fired()
    for i in range(16):
        fired.fire(shared, "alice", f"SELECT pg_sleep(20), {i} AS i, '{tag}' AS tag", f"alice-{i}")
    wait_until(lambda: len(active_backends(pg, tag)) == 2 and
               metric_sum(metrics(shared), "mcp_fair_share_waiters") == 14, 20,
               "alice to run her share of 2 and queue 14 behind her own calls")
    busy = active_backends(pg, tag)
    try:
        fired.fire(shared, "bob", f"SELECT pg_backend_pid() AS pid, '{tag}-bob' AS who", "bob")
        wait_until(lambda: "bob" in fired.labels(), 20, "bob's call to be answered")
        assert fired.labels() == ["bob"], "bob is answered before any of alice's calls"
        pid = fired.result("bob")["structuredContent"]["rows"][0]["pid"]
        assert pid not in busy, f"bob's backend {pid} must not be one of alice's busy ones {busy}"
        assert len(active_backends(pg, tag)) == 2, "alice still holds exactly her share"
    finally:
        cancel_all(pg, fired, tag)
    alice = [fired.result(f"alice-{i}") for i in range(16)]
    assert all("canceling statement due to user request" in r["content"][0]["text"] for r in alice)


def test_a_freed_connection_goes_to_the_analyst_holding_fewest(shared, pg):
    """Alice and carol each hold their share of 2 (the pool is full) and queue more; bob then waits
    for the pool. When one of carol's queries ends, the connection it frees serves bob — not carol's
    or alice's next call, which queued earlier."""
    tag = "fewest_" + secrets.token_hex(4)
    fired = Fired()
    for who in ("alice", "carol"):
        for i in range(4):
            fired.fire(shared, who, f"SELECT pg_sleep(20), '{tag}-{who}' AS tag", f"{who}-{i}")
    wait_until(lambda: len(active_backends(pg, tag)) == 4 and
               metric_sum(metrics(shared), "mcp_fair_share_waiters") == 4, 20,
               "alice and carol to hold 2 connections each and queue 2 more each")
    try:
        fired.fire(shared, "bob", f"SELECT pg_backend_pid() AS pid, '{tag}-bob' AS who", "bob")
        wait_until(lambda: metric_sum(metrics(shared), "mcp_pool_waiters") == 5, 20,
                   "bob to wait for the full pool")
        assert metric_sum(metrics(shared), "mcp_fair_share_waiters") == 4, "bob waits for the pool, not his share"
        carols = active_backends(pg, f"{tag}-carol")
        assert len(carols) == 2
        freed = carols[0]
        pg.psql(f"SELECT pg_cancel_backend({freed})")
        wait_until(lambda: "bob" in fired.labels(), 20, "bob's call to be answered")
        others = [label for label in fired.labels() if label != "bob"]
        assert len(others) <= 1 and all(label.startswith("carol") for label in others), \
            f"only the cancelled call of carol's may have ended before bob's: {fired.labels()}"
        assert fired.result("bob")["structuredContent"]["rows"][0]["pid"] == freed, \
            "bob was served by the connection carol's query freed"
    finally:
        cancel_all(pg, fired, tag)


def test_an_analyst_at_the_cap_waits_boundedly_and_gets_a_clear_error(start_server, pg):
    srv = start_server(MCP_POOL_MAX="2", MCP_POOL_WAIT_MS="300", MCP_SHUTDOWN_GRACE_S="1")  # share: 1
    tag = "cap_" + secrets.token_hex(4)
    fired = Fired()
    fired.fire(srv, "alice", f"SELECT pg_sleep(20), '{tag}' AS tag", "slow")
    wait_until(lambda: len(active_backends(pg, tag)) == 1, 20, "alice's slow call to run")
    try:
        before = metrics(srv)
        text = srv.tool_error("query", {"sql": f"SELECT 2, '{tag}-second' AS tag"}, caller="alice")
        assert re.match(r"too many calls at once: you already have 1 database call running "
                        r"\(MCP_MAX_INFLIGHT_PER_CALLER = 1\) and this one waited \d+ ms for one to finish",
                        text), text
        assert srv.tool("query", {"sql": "SELECT 4 AS four"}, caller="bob")["rows"] == [{"four": 4}]
        after = metrics(srv)
        assert (metric_sum(after, "mcp_tool_calls_total", outcome="caller_busy")
                - metric_sum(before, "mcp_tool_calls_total", outcome="caller_busy")) >= 1
        assert metric_sum(after, "mcp_limits_hit_total", limit="caller_share") >= 1
        assert any("status=caller_busy" in line for line in audit_lines(srv, f"{tag}-second"))
    finally:
        cancel_all(pg, fired, tag)


def test_rate_limit_over_it_is_a_tool_error_with_the_retry_time(start_server):
    srv = start_server(MCP_RATE_PER_CALLER="3")
    tag = "rate_" + secrets.token_hex(4)
    under = [srv.query(f"SELECT {i} AS i, '{tag}' AS tag")["rows"] for i in range(3)]
    assert under == [[{"i": i, "tag": tag}] for i in range(3)], "under the limit nothing changes"
    r = srv.rpc_raw("tools/call", {"name": "query", "arguments": {"sql": f"SELECT 4, '{tag}-over' AS tag"}})
    assert r.status == 200, "a tool error, never an HTTP 429"
    result = r.json()["result"]
    assert result["isError"] is True
    m = re.fullmatch(r"rate limit: at most 3 tool calls per minute per analyst \(MCP_RATE_PER_CALLER\); "
                     r"retry in (\d+) s", result["content"][0]["text"])
    assert m and 1 <= int(m.group(1)) <= 20, result
    assert srv.tool("query", {"sql": "SELECT 6 AS six"}, caller="bob")["rows"] == [{"six": 6}], \
        "each analyst has a bucket of their own"
    assert srv.rpc("ping")["result"] == {}, "only tool calls are counted"
    over = audit_lines(srv, f"{tag}-over")
    assert len(over) == 1 and "status=rate_limited" in over[0]
    m2 = metrics(srv)
    assert metric_sum(m2, "mcp_tool_calls_total", outcome="rate_limited") == 1
    assert metric_sum(m2, "mcp_limits_hit_total", limit="caller_rate") == 1
    assert "alice" not in srv.get("/metrics").text, "metrics per outcome, never per name"


def test_per_analyst_state_is_forgotten_once_idle(start_server):
    """30 analysts each make a call: while idle with a full bucket, nobody is remembered."""
    tokens = {f"analyst{i}": f"tok-{i}-" + secrets.token_hex(8) for i in range(30)}
    srv = start_server(tokens=tokens, MCP_RATE_PER_CALLER="6000")  # a bucket refills in 10 ms
    for name in tokens:
        assert srv.tool("query", {"sql": "SELECT 1 AS one"}, caller=name)["rows"] == [{"one": 1}]
    wait_until(lambda: metric_sum(metrics(srv), "mcp_callers_tracked") == 0, 10,
               "per-analyst entries to be evicted")
    assert metric_sum(metrics(srv), "mcp_pool_in_use") == 0
