"""Each analyst's own identity inside PostgreSQL (MCP_ANALYST_ROLES): every call runs as the
analyst's role (SET LOCAL ROLE), set up by role.sql -v analysts=…, so row-level security, column
privileges and current_user are per person; the SQL can never switch back."""

from __future__ import annotations

import concurrent.futures
import secrets
import subprocess

import pytest

from conftest import DB_NAME, REPO, PgBouncer, free_port, run_binary

TEAM = "mcp_team"
PASSWORD = "team-pw-" + secrets.token_hex(12)
ANALYSTS = ("alice", "bob", "mallory")


def role_sql(pg, **variables: str) -> subprocess.CompletedProcess:
    args = [str(pg.bindir / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", str(pg.sockdir), "-p", str(pg.port),
            "-U", pg.superuser, "-d", DB_NAME]
    for name, value in variables.items():
        args += ["-v", f"{name}={value}"]
    return subprocess.run(args + ["-f", str(REPO / "role.sql")], capture_output=True, text=True, env=pg._pg_env())


@pytest.fixture(scope="module")
def team(pg):
    """role.sql with analysts alice, bob, mallory behind the login role mcp_team; a table with a
    row-level-security policy per analyst; and functions an owner might (unwisely) write."""
    pg.psql("""
        CREATE TABLE fleet.region_orders (order_id int PRIMARY KEY, region text NOT NULL, amount int NOT NULL,
                                          customer_phone text);
        INSERT INTO fleet.region_orders VALUES (1, 'North', 10, '+254 1'), (2, 'North', 20, '+254 2'),
            (3, 'North', 30, '+254 3'), (4, 'Coast', 40, '+254 4'), (5, 'Coast', 50, '+254 5'), (6, 'Central', 60, '+254 6');
        ALTER TABLE fleet.region_orders ENABLE ROW LEVEL SECURITY;
    """)
    done = role_sql(pg, ro_role=TEAM, ro_pw=PASSWORD, schemas="reporting,fleet", owners="postgres",
                    analysts=",".join(ANALYSTS), withhold="fleet.region_orders.customer_phone")
    assert done.returncode == 0, done.stderr
    pg.psql("""
        CREATE POLICY north_for_alice ON fleet.region_orders TO analyst_alice USING (region = 'North');
        CREATE POLICY coast_for_bob ON fleet.region_orders TO analyst_bob USING (region = 'Coast');
        -- owner-written functions that try to change the role
        CREATE FUNCTION reporting.set_setting(name text, value text) RETURNS text
            LANGUAGE sql AS 'SELECT set_config(name, value, true)';
        CREATE FUNCTION reporting.definer_drops_role() RETURNS text LANGUAGE plpgsql SECURITY DEFINER
            AS $$ BEGIN PERFORM set_config('role', 'none', true); RETURN current_user; END $$;
        SET check_function_bodies = off;  -- the body is checked as the SET role, which reads nothing
        CREATE FUNCTION reporting.vehicles_as_login_role() RETURNS bigint LANGUAGE sql SET role = 'mcp_team'
            AS 'SELECT count(*) FROM fleet.vehicles';
    """)
    yield
    pg.psql(f"""
        DROP FUNCTION reporting.set_setting(text, text), reporting.definer_drops_role(), reporting.vehicles_as_login_role();
        DROP TABLE fleet.region_orders;
        DROP OWNED BY {TEAM}, {", ".join("analyst_" + a for a in ANALYSTS)};
        DROP ROLE {TEAM}, {", ".join("analyst_" + a for a in ANALYSTS)};
    """)


def team_dsn(pg) -> str:
    return f"postgresql://{TEAM}:{PASSWORD}@127.0.0.1:{pg.port}/{DB_NAME}"


def tokens(*names: str) -> dict[str, str]:
    return {name: f"tok-{name}-" + secrets.token_hex(8) for name in names}


@pytest.fixture(scope="module")
def per_analyst(team, pg, server_factory):
    return server_factory(tokens=tokens(*ANALYSTS, "carol"), DATABASE_URL=team_dsn(pg),
                          MCP_ANALYST_ROLES="analyst_{name}")


def ask(srv, caller: str, sql: str) -> list[dict]:
    return srv.call_tool("query", {"sql": sql}, caller=caller)["structuredContent"]["rows"]


def refused(srv, caller: str, sql: str) -> str:
    return srv.call_tool("query", {"sql": sql}, caller=caller, expect_error=True)["content"][0]["text"]


def test_current_user_names_the_analyst(per_analyst):
    for analyst in ("alice", "bob"):
        rows = ask(per_analyst, analyst, "SELECT current_user::text AS who, session_user::text AS login")
        assert rows == [{"who": f"analyst_{analyst}", "login": TEAM}]


def test_row_level_security_shows_each_analyst_their_region(per_analyst):
    sql = "SELECT region, count(*) AS n FROM fleet.region_orders GROUP BY 1 ORDER BY 1"
    assert ask(per_analyst, "alice", sql) == [{"region": "North", "n": 3}]
    assert ask(per_analyst, "bob", sql) == [{"region": "Coast", "n": 2}]
    assert ask(per_analyst, "mallory", sql) == []  # no policy names her: she sees no row
    # the introspection tools run as the analyst too
    sample = per_analyst.call_tool("sample_table", {"schema": "fleet", "table": "vehicles", "n": 1}, caller="bob")
    assert sample["structuredContent"]["row_count"] == 1


def test_column_privileges_apply_per_analyst(per_analyst, pg):
    pg.psql("GRANT SELECT (customer_phone) ON fleet.region_orders TO analyst_bob")
    try:
        assert ask(per_analyst, "bob", "SELECT customer_phone FROM fleet.region_orders ORDER BY 1") == [
            {"customer_phone": "+254 4"}, {"customer_phone": "+254 5"}]
        text = refused(per_analyst, "alice", "SELECT customer_phone FROM fleet.region_orders")
        assert "permission denied" in text and "42501" in text
    finally:
        pg.psql("REVOKE SELECT (customer_phone) ON fleet.region_orders FROM analyst_bob")


def test_an_analyst_whose_role_does_not_exist_is_refused(per_analyst):
    text = refused(per_analyst, "carol", "SELECT 1")
    assert 'cannot work as database role "analyst_carol" for analyst carol' in text, text
    assert "does not exist" in text and "role.sql" in text


def test_audit_line_names_the_database_role(per_analyst):
    marker = "who_" + secrets.token_hex(4)
    ask(per_analyst, "bob", f"SELECT 1 -- {marker}")
    text = per_analyst.wait_for_stderr(lambda t: marker in t, "the audit line")
    line = next(l for l in text.splitlines() if marker in l)
    assert "caller=bob" in line and "db_role=analyst_bob" in line, line



# ── the analyst tools (issue 12) run as the analyst too ──────────────────────────────────────

def test_explain_analyze_counts_only_the_analysts_rows(per_analyst):
    for analyst, rows in (("alice", 3), ("bob", 2), ("mallory", 0)):
        res = per_analyst.call_tool("explain", {"sql": "SELECT order_id FROM fleet.region_orders", "analyze": True},
                                    caller=analyst)["structuredContent"]
        assert res["summary"]["actual_rows"] == rows, (analyst, res["summary"])
    text = per_analyst.call_tool("explain", {"sql": "SELECT customer_phone FROM fleet.region_orders"},
                                 caller="alice", expect_error=True)["content"][0]["text"]
    assert "permission denied" in text and "+254" not in text


def test_profile_columns_sees_the_analysts_rows_and_columns(per_analyst, pg):
    pg.psql("ANALYZE fleet.region_orders")
    for analyst, region in (("alice", "North"), ("bob", "Coast")):
        res = per_analyst.call_tool("profile_columns", {"schema": "fleet", "table": "region_orders", "sample": True},
                                    caller=analyst)["structuredContent"]
        columns = {c["name"]: c for c in res["columns"]}
        # row-level security hides pg_stats (built from every row) from the analyst
        assert columns["region"]["statistics"] is False and "row-level security" in columns["region"]["note"]
        assert [v["value"] for v in columns["region"]["sample"]["most_common"]] == [region], columns["region"]
        assert columns["customer_phone"]["readable"] is False and "sample" not in columns["customer_phone"]
        assert "+254" not in str(res)


def test_search_objects_and_find_join_path_follow_each_analysts_privileges(per_analyst, pg):
    def search(analyst):
        return per_analyst.call_tool("search_objects", {"query": "customer_phone"}, caller=analyst)["structuredContent"]
    assert search("alice")["withheld_columns"] == ["fleet.region_orders.customer_phone"]
    pg.psql("GRANT SELECT (customer_phone) ON fleet.region_orders TO analyst_bob")
    try:
        found = search("bob")
        assert [h["qualified_name"] for h in found["hits"]] == ["fleet.region_orders.customer_phone"]
        assert "withheld_columns" not in found
        assert search("alice")["hits"] == []
    finally:
        pg.psql("REVOKE SELECT (customer_phone) ON fleet.region_orders FROM analyst_bob")
    text = per_analyst.call_tool("find_join_path", {"from": "fleet.trips", "to": "fleet.vehicles"},
                                 caller="carol", expect_error=True)["content"][0]["text"]
    assert 'cannot work as database role "analyst_carol"' in text, text


# ── the SQL can never switch back ────────────────────────────────────────────────────────────

SWITCH_ATTEMPTS = [
    ("SET ROLE mcp_team", "SELECT"),
    ("RESET ROLE", "SELECT"),
    ("SET ROLE NONE", "SELECT"),
    ("SET LOCAL ROLE analyst_bob", "SELECT"),
    ("SET SESSION AUTHORIZATION mcp_team", "SELECT"),
    ("SELECT set_config('role', 'analyst_bob', true)", "set_config"),
    ("SELECT pg_catalog.set_config('role', 'none', false)", "set_config"),
    ("WITH r AS (SELECT set_config('role', 'analyst_bob', true)) SELECT * FROM r", "set_config"),
    ("DO $$BEGIN SET ROLE NONE; END$$", "SELECT"),
    ("SELECT * FROM query_to_xml('SET ROLE NONE', true, true, '')", "query_to_xml"),
    ("SELECT 1; RESET ROLE", "only a single statement"),
    # security-definer trick: PostgreSQL forbids changing the role inside one
    ("SELECT reporting.definer_drops_role()", "cannot set parameter \"role\" within security-definer function"),
    # an owner-written function that calls set_config with the caller's arguments: the answer
    # computed after the switch is withheld
    ("SELECT reporting.set_setting('role', 'analyst_bob') AS s, (SELECT count(*) FROM fleet.region_orders) AS n",
     "switched the database role"),
    ("SELECT reporting.set_setting('role', 'none') AS s", "switched the database role"),
    # a function that runs as the login role (SET role clause) finds it can read nothing alone
    ("SELECT reporting.vehicles_as_login_role()", "permission denied for schema fleet"),
]


@pytest.mark.parametrize("sql,why", SWITCH_ATTEMPTS, ids=[s for s, _ in SWITCH_ATTEMPTS])
def test_sql_cannot_switch_the_role_back(per_analyst, sql, why):
    text = refused(per_analyst, "alice", sql)
    assert why in text, text
    assert "Coast" not in text and "+254" not in text
    # the next calls (same pooled connections) are alice again, seeing only her rows
    for _ in range(3):
        assert ask(per_analyst, "alice", "SELECT current_user::text AS who, count(*) AS n FROM fleet.region_orders") == [
            {"who": "analyst_alice", "n": 3}]


# ── mapping, unmapped analysts, the self-check of every mapped role ─────────────────────────

def test_explicit_mapping_refuses_unmapped_analysts_by_default(team, pg, start_server):
    srv = start_server(tokens=tokens("alice", "bob"), DATABASE_URL=team_dsn(pg),
                       MCP_ANALYST_ROLES="alice=analyst_alice")
    assert ask(srv, "alice", "SELECT current_user::text AS who") == [{"who": "analyst_alice"}]
    text = refused(srv, "bob", "SELECT 1")
    assert "analyst bob has no database role" in text and "MCP_ANALYST_UNMAPPED=refuse" in text, text
    text = srv.call_tool("list_schemas", {}, caller="bob", expect_error=True)["content"][0]["text"]
    assert "no database role" in text
    assert 'mcp_tool_calls_total{tool="query",outcome="forbidden"} 1' in srv.get("/metrics").text


def test_unmapped_analysts_can_be_served_as_the_login_role_which_reads_nothing(team, pg, start_server):
    srv = start_server(tokens=tokens("alice", "bob"), DATABASE_URL=team_dsn(pg),
                       MCP_ANALYST_ROLES="alice=analyst_alice", MCP_ANALYST_UNMAPPED="base")
    assert ask(srv, "bob", "SELECT current_user::text AS who") == [{"who": TEAM}]
    text = refused(srv, "bob", "SELECT count(*) FROM fleet.vehicles")
    assert "permission denied" in text


def test_a_pattern_role_that_can_write_is_refused_on_first_use(team, pg, start_server):
    pg.psql("CREATE ROLE order_writers NOLOGIN; GRANT INSERT ON fleet.region_orders TO order_writers; "
            "GRANT order_writers TO analyst_mallory")
    try:
        srv = start_server(tokens=tokens("alice", "mallory"), DATABASE_URL=team_dsn(pg),
                           MCP_ANALYST_ROLES="analyst_{name}")
        text = refused(srv, "mallory", "SELECT 1")
        assert 'database role "analyst_mallory" of analyst mallory is not read-only' in text, text
        assert "can write fleet.region_orders" in text
        assert ask(srv, "alice", "SELECT 1 AS one") == [{"one": 1}]
        assert "analyst_mallory" in refused(srv, "mallory", "SELECT 2")  # the verdict stays
        # an explicitly mapped role is checked with the login role at start: the server stops
        done = run_binary([], env={"DATABASE_URL": team_dsn(pg), "MCP_PORT": str(free_port()),
                                   "MCP_AUTH_TOKENS": "alice:x", "MCP_ANALYST_ROLES": "alice=analyst_mallory"})
        assert done.returncode == 3, done.stderr
        assert "analyst_mallory" in done.stderr and "can write fleet.region_orders" in done.stderr
    finally:
        pg.psql("REVOKE order_writers FROM analyst_mallory; DROP OWNED BY order_writers; DROP ROLE order_writers")



def test_an_analyst_signed_in_through_oauth_works_as_their_own_role(team, pg, start_server, tmp_path):
    from oauth_lib import OAuthFlow, new_key, oauth_env
    env, _ = oauth_env(tmp_path, key=new_key(), DATABASE_URL=team_dsn(pg), MCP_ANALYST_ROLES="analyst_{name}")
    srv = start_server(tokens=tokens("alice", "bob"), **env)
    flow = OAuthFlow(srv, env["MCP_PUBLIC_URL"])
    for analyst, region in (("alice", "North"), ("bob", "Coast")):
        access = flow.tokens_for(flow.register(name="Claude"), srv.tokens[analyst])["access_token"]
        r = flow.call(access, "SELECT current_user::text AS who, string_agg(DISTINCT region, ',') AS regions "
                              "FROM fleet.region_orders")
        assert r.status == 200, r.text
        assert r.json()["result"]["structuredContent"]["rows"] == [{"who": f"analyst_{analyst}", "regions": region}]


@pytest.mark.parametrize("value,message", [
    ("alice=", "needs a name and a role"),
    ("=analyst_x", "needs a name and a role"),
    ("alice", "neither name=role nor a pattern"),
    ("a_{name},b_{name}", "second pattern"),
    ("alice=r1,alice=r2", "named before"),
    ("alice=" + "r" * 64, "longer than 63 bytes"),
], ids=["no-role", "no-name", "bare-name", "two-patterns", "twice", "too-long"])
def test_bad_analyst_role_configuration_stops_the_start(pg, value, message):
    done = run_binary([], env={"DATABASE_URL": pg.ro_dsn, "MCP_PORT": str(free_port()), "MCP_ANALYST_ROLES": value})
    assert done.returncode == 2 and message in done.stderr, done.stderr


def test_bad_unmapped_policy_stops_the_start(pg):
    done = run_binary([], env={"DATABASE_URL": pg.ro_dsn, "MCP_PORT": str(free_port()),
                               "MCP_ANALYST_ROLES": "analyst_{name}", "MCP_ANALYST_UNMAPPED": "guest"})
    assert done.returncode == 2 and "refuse or base" in done.stderr, done.stderr


def test_a_long_name_never_truncates_into_another_role(team, pg, start_server):
    long_name = "a" * 60  # analyst_ + 60 > 63 bytes: PostgreSQL would cut it
    srv = start_server(tokens=tokens(long_name), DATABASE_URL=team_dsn(pg), MCP_ANALYST_ROLES="analyst_{name}")
    text = refused(srv, long_name, "SELECT 1")
    assert "not a usable role name" in text, text


def test_each_analysts_role_holds_through_pgbouncer_transaction_pooling(team, pg, start_server):
    """Two server connections behind PgBouncer for the whole pool: consecutive calls land on
    different backends, and every one is still the right analyst with the right rows."""
    bouncer = PgBouncer(pg, pool_size=2, name="pgbouncer-analysts", users={TEAM: PASSWORD})
    bouncer.start()
    try:
        srv = start_server(tokens=tokens("alice", "bob"), MCP_POOL_MAX="4", MCP_ANALYST_ROLES="analyst_{name}",
                           DATABASE_URL=f"postgresql://{TEAM}:{PASSWORD}@127.0.0.1:{bouncer.port}/{DB_NAME}")
        sql = ("SELECT current_user::text AS who, pg_backend_pid() AS pid, "
               "string_agg(DISTINCT region, ',') AS regions FROM fleet.region_orders")
        expected = {"alice": ("analyst_alice", "North"), "bob": ("analyst_bob", "Coast")}
        calls = ["alice", "bob"] * 12

        def one(analyst):
            row = ask(srv, analyst, sql)[0]
            return analyst, row

        with concurrent.futures.ThreadPoolExecutor(max_workers=4) as workers:
            answers = list(workers.map(one, calls))
        for analyst, row in answers:
            assert (row["who"], row["regions"]) == expected[analyst], (analyst, row)
        assert len({row["pid"] for _, row in answers}) == 2, "both PgBouncer server connections served"
        # and nothing of the role stays in the pooled server sessions
        after = pg.psql("SELECT count(*) FROM pg_stat_activity WHERE usename = 'mcp_team' "
                        "AND backend_type = 'client backend' AND state = 'idle in transaction'")
        assert after == "0"
        for analyst in ("bob", "alice"):
            assert ask(srv, analyst, "SELECT current_user::text AS who")[0]["who"] == expected[analyst][0]
    finally:
        bouncer.stop()
