"""Several databases from one server (MCP_DATABASES / MCP_DATABASES_FILE): each with its own pool,
limits and role check; every tool takes an optional `database` (the first is the default);
list_databases; errors, audit lines, metrics and /readyz name the database. DATABASE_URL alone
keeps working as before (the rest of the suite)."""

from __future__ import annotations

import re
import secrets

import pytest

from conftest import DB_NAME, RO_ROLE, free_port, run_binary

FINANCE = "analytics_finance"
WRITER = "dbs_writer"
WRITER_PW = "dbs-writer-" + secrets.token_hex(8)


@pytest.fixture(scope="module")
def finance(pg):
    """A second database on the cluster: ledger.entries, readable by the same read-only role, and a
    login role that could write there (for the role check)."""
    pg.psql(f"CREATE DATABASE {FINANCE}", db="postgres")
    pg.psql(f"""
        CREATE SCHEMA ledger;
        COMMENT ON SCHEMA ledger IS 'General ledger';
        CREATE TABLE ledger.accounts (account text PRIMARY KEY, owner text NOT NULL);
        INSERT INTO ledger.accounts SELECT 'acct-' || i, 'owner ' || i FROM generate_series(0, 3) AS i;
        CREATE TABLE ledger.entries (entry_id int PRIMARY KEY, account text NOT NULL REFERENCES ledger.accounts,
                                     amount numeric(12,2) NOT NULL);
        COMMENT ON COLUMN ledger.entries.amount IS 'Booked amount in the ledger currency';
        INSERT INTO ledger.entries SELECT i, 'acct-' || (i % 4), i * 10.5 FROM generate_series(1, 50) AS i;
        ANALYZE ledger.accounts, ledger.entries;
        CREATE FUNCTION ledger.balance(a text) RETURNS numeric LANGUAGE sql STABLE
            AS 'SELECT sum(amount) FROM ledger.entries WHERE account = a';
        GRANT USAGE ON SCHEMA ledger TO {RO_ROLE};
        GRANT SELECT ON ALL TABLES IN SCHEMA ledger TO {RO_ROLE};
        CREATE ROLE {WRITER} LOGIN PASSWORD '{WRITER_PW}';
        GRANT USAGE ON SCHEMA ledger TO {WRITER};
        GRANT SELECT, INSERT ON ledger.entries TO {WRITER};
    """, db=FINANCE)
    yield FINANCE
    pg.psql(f"DROP DATABASE {FINANCE} WITH (FORCE)", db="postgres")
    pg.psql(f"DROP ROLE {WRITER}", db="postgres")


def dsn(pg, db: str, role: str = RO_ROLE, password: str | None = None) -> str:
    return f"postgresql://{role}:{password or pg.ro_password}@127.0.0.1:{pg.port}/{db}"


@pytest.fixture(scope="module")
def two(finance, pg, server_factory):
    return server_factory(MCP_DATABASES=f"fleet={dsn(pg, DB_NAME)}; finance={dsn(pg, FINANCE)}", DATABASE_URL=None)


def test_the_first_database_is_the_default_and_every_tool_takes_one(two):
    where = "SELECT current_database()::text AS db"
    assert two.query(where)["rows"] == [{"db": DB_NAME}]
    assert two.tool("query", {"sql": where, "database": "finance"})["rows"] == [{"db": FINANCE}]
    assert two.tool("query", {"sql": where, "database": "fleet"})["rows"] == [{"db": DB_NAME}]
    schemas = {s["schema"]: s for s in two.tool("list_schemas", {"database": "finance"})["schemas"]}
    assert schemas["ledger"]["comment"] == "General ledger" and "fleet" not in schemas
    tables = two.tool("list_tables", {"schema": "ledger", "database": "finance"})["tables"]
    assert [t["name"] for t in tables] == ["accounts", "entries"]
    described = two.tool("describe_table", {"schema": "ledger", "table": "entries", "database": "finance"})
    assert [c["name"] for c in described["columns"]] == ["entry_id", "account", "amount"]
    functions = two.tool("list_functions", {"schema": "ledger", "database": "finance"})["functions"]
    assert [f["name"] for f in functions] == ["balance"]
    sample = two.tool("sample_table", {"schema": "ledger", "table": "entries", "n": 2, "database": "finance"})
    assert sample["row_count"] == 2 and sample["provenance"]["database"] == FINANCE
    # the default database does not have the other's tables
    text = two.tool_error("sample_table", {"schema": "ledger", "table": "entries"})
    assert text.startswith("database fleet: schema \"ledger\" does not exist or is not readable"), text



def test_the_analyst_tools_work_in_the_database_named(two):
    finance = {"database": "finance"}
    plan = two.tool("explain", {"sql": "SELECT * FROM ledger.entries WHERE amount > 100", "analyze": True, **finance})
    assert plan["summary"]["actual_rows"] == 41 and '"Schema": "ledger"' in str(plan["plan"]).replace("'", '"')
    profile = two.tool("profile_columns", {"schema": "ledger", "table": "entries", **finance})
    assert {c["name"]: c["estimated_distinct"] for c in profile["columns"]}["account"] == 4
    path = two.tool("find_join_path", {"from": "ledger.entries", "to": "ledger.accounts", **finance})
    assert path["paths"][0]["join"] == ("FROM ledger.entries JOIN ledger.accounts ON accounts.account = entries.account"), path
    found = two.tool("search_objects", {"query": "ledger currency", **finance})
    assert [(h["qualified_name"], h["match"]) for h in found["hits"]][0] == ("ledger.entries.amount", "comment")
    # the default database has none of it, and says which database answered
    assert two.tool("search_objects", {"query": "ledger currency"})["hits"] == []
    for tool, args in [("explain", {"sql": "SELECT * FROM ledger.entries"}),
                       ("profile_columns", {"schema": "ledger", "table": "entries"}),
                       ("find_join_path", {"from": "ledger.entries", "to": "ledger.accounts"})]:
        text = two.tool_error(tool, args)
        assert text.startswith("database fleet: "), (tool, text)


@pytest.mark.parametrize("tool,args", [
    ("explain", {"sql": "SELECT 1"}), ("profile_columns", {"schema": "ledger", "table": "entries"}),
    ("find_join_path", {"from": "ledger.entries", "to": "ledger.accounts"}), ("search_objects", {"query": "ledger"}),
    ("list_schemas", {}), ("sample_table", {"schema": "ledger", "table": "entries"}),
])
def test_every_tool_refuses_an_unknown_database_by_name(two, tool, args):
    for bad in ("payroll", "FINANCE", "", "finance; fleet"):
        env = two.call_tool_envelope(tool, {**args, "database": bad})
        assert env["error"]["code"] == -32602, env
        assert env["error"]["message"].startswith(f"{tool}: unknown database "), env
        assert "(databases: fleet, finance" in env["error"]["message"]


def test_the_analyst_tools_audit_lines_name_the_database(two):
    marker = "expl_" + secrets.token_hex(4)
    two.tool("explain", {"sql": f"SELECT 1 -- {marker}", "database": "finance"})
    line = next(l for l in two.wait_for_stderr(lambda t: marker in t, "the audit line").splitlines() if marker in l)
    assert "tool=explain" in line and "database=finance" in line, line
    two.tool("search_objects", {"query": "entries", "database": "finance"})
    text = two.wait_for_stderr(lambda t: "tool=search_objects" in t, "the search audit line")
    line = [l for l in text.splitlines() if "tool=search_objects" in l][-1]
    assert "database=finance" in line and "status=ok" in line, line


def test_list_databases_names_labels_and_the_default(two):
    listed = two.tool("list_databases", {})
    assert [(d["name"], d["label"], d["default"]) for d in listed["databases"]] == [
        ("fleet", "fleet", True), ("finance", "finance", False)]
    assert listed["databases"][1]["max_rows"] == 10000
    instructions = two.rpc("initialize", {"protocolVersion": "2025-11-25", "capabilities": {},
                                          "clientInfo": {"name": "t", "version": "1"}})["result"]["instructions"]
    assert "list_databases" in instructions and "readable=false" in instructions
    tools = {t["name"]: t for t in two.rpc("tools/list")["result"]["tools"]}
    assert "database" in tools["query"]["inputSchema"]["properties"]
    assert tools["list_databases"]["inputSchema"]["properties"] == {}


def test_an_unknown_database_is_a_bad_argument_naming_the_known_ones(two):
    env = two.call_tool_envelope("query", {"sql": "SELECT 1", "database": "payroll"})
    assert env["error"]["code"] == -32602
    assert 'query: unknown database "payroll" (databases: fleet, finance' in env["error"]["message"]
    env = two.call_tool_envelope("list_databases", {"database": "fleet"})
    assert env["error"]["code"] == -32602 and "unknown argument" in env["error"]["message"]


def test_errors_and_audit_lines_name_the_database(two):
    text = two.tool_error("query", {"sql": "SELECT 1/0", "database": "finance"})
    assert text == "database finance: division by zero (22012)", text
    marker = "where_" + secrets.token_hex(4)
    two.tool("query", {"sql": f"SELECT 1 -- {marker}", "database": "finance"})
    line = next(l for l in two.wait_for_stderr(lambda t: marker in t, "the audit line").splitlines() if marker in l)
    assert "database=finance" in line, line


def test_metrics_name_each_pool(two):
    two.tool("query", {"sql": "SELECT 1", "database": "finance"})
    metrics = two.get("/metrics").text
    assert 'mcp_pool_max{database="fleet"} 8' in metrics and 'mcp_pool_max{database="finance"} 8' in metrics
    assert re.search(r'mcp_pool_open\{database="finance"\} [1-9]', metrics), metrics
    assert re.search(r'mcp_db_tls\{database="finance",sslmode="prefer"\}', metrics), metrics
    assert re.search(r'^mcp_tool_calls_total\{database="finance",tool="query",outcome="ok"\} [1-9]', metrics, re.M)
    two.call_tool_envelope("explain", {"sql": "SELECT 1", "database": "nope"})
    assert 'database="nope"' not in two.get("/metrics").text


def test_readyz_names_each_database(two):
    body = two.get("/readyz").json()
    assert body == {"ok": True, "databases": {"fleet": {"database": "up"}, "finance": {"database": "up"}}}


DATABASES_FILE = """
# the warehouse first: it is the default
[fleet]
url = {fleet}
label = Fleet operations (replica)

[finance]
url = host=127.0.0.1 port={port} dbname={finance} user={role} password={password}
label = Finance ledger
readable_schemas = ledger
max_rows = 3
statement_timeout_ms = 300
pool_max = 1
"""


@pytest.fixture(scope="module")
def from_file(finance, pg, server_factory, tmp_path_factory):
    path = tmp_path_factory.mktemp("databases") / "databases.ini"
    path.write_text(DATABASES_FILE.format(fleet=dsn(pg, DB_NAME), port=pg.port, finance=FINANCE, role=RO_ROLE,
                                          password=pg.ro_password))
    path.chmod(0o600)
    return server_factory(MCP_DATABASES_FILE=str(path), DATABASE_URL=None, MCP_SERVER_LABEL="staging")


def test_each_database_has_its_own_limits(from_file):
    listed = from_file.tool("list_databases", {})
    assert listed["server_label"] == "staging"
    assert [(d["name"], d["label"], d["readable_schemas"], d["max_rows"], d["statement_timeout_ms"])
            for d in listed["databases"]] == [
        ("fleet", "Fleet operations (replica)", None, 10000, 30000),
        ("finance", "Finance ledger", ["ledger"], 3, 300)]
    schemas = from_file.tool("list_schemas", {"database": "finance"})["schemas"]
    assert [s["schema"] for s in schemas] == ["ledger"]  # its own readable_schemas
    rows = "SELECT i FROM generate_series(1, 10) AS i"
    assert from_file.tool("query", {"sql": rows, "database": "finance"})["row_count"] == 3
    assert from_file.tool("query", {"sql": rows})["row_count"] == 10
    text = from_file.tool_error("query", {"sql": "SELECT pg_sleep(2)", "database": "finance"})
    assert text == "database finance: statement timeout after 300 ms (the query ran too long; narrow it or aggregate) (57014)", text
    assert from_file.query("SELECT 1 AS done FROM pg_sleep(0.5)")["rows"] == [{"done": 1}]
    assert 'mcp_pool_max{database="finance"} 1' in from_file.get("/metrics").text


def test_database_label_and_server_label_reach_the_client(from_file):
    init = from_file.rpc("initialize", {"protocolVersion": "2025-11-25", "capabilities": {},
                                        "clientInfo": {"name": "t", "version": "1"}})["result"]
    assert "staging" in init["serverInfo"]["title"]
    answer = from_file.tool("query", {"sql": "SELECT 1 AS one", "database": "finance"})
    assert answer["provenance"]["server_label"] == "staging" and answer["provenance"]["database"] == FINANCE


def test_each_database_checks_its_own_role(finance, pg):
    done = run_binary([], env={"MCP_DATABASES": f"fleet={dsn(pg, DB_NAME)};scratch={dsn(pg, FINANCE, WRITER, WRITER_PW)}",
                               "MCP_PORT": str(free_port()), "MCP_AUTH_TOKENS": "alice:x"}, timeout=30)
    assert done.returncode == 3, done.stderr
    assert "refusing to serve" in done.stderr and "database=scratch" in done.stderr, done.stderr
    assert "can write ledger.entries" in done.stderr
    assert WRITER_PW not in done.stderr and pg.ro_password not in done.stderr


def test_a_database_that_is_down_leaves_the_others_serving(finance, pg, start_server):
    closed = free_port()
    srv = start_server(DATABASE_URL=None, MCP_DATABASES=(
        f"fleet={dsn(pg, DB_NAME)};gone=postgresql://{RO_ROLE}:x@127.0.0.1:{closed}/{DB_NAME}?connect_timeout=2"))
    assert srv.query("SELECT 1 AS one")["rows"] == [{"one": 1}]
    text = srv.tool_error("query", {"sql": "SELECT 1", "database": "gone"})
    assert text.startswith("database gone: database unavailable:"), text
    r = srv.get("/readyz")
    assert r.status == 200, r.text
    body = r.json()
    assert body["ok"] is False and body["databases"]["fleet"] == {"database": "up"}
    assert body["databases"]["gone"]["database"] == "down" and "error" not in body["databases"]["gone"]
    trusted = srv.get("/readyz", headers=srv.auth_headers()).json()
    assert "error" in trusted["databases"]["gone"]


@pytest.mark.parametrize("env,message", [
    ({"DATABASE_URL": "{fleet}", "MCP_DATABASES": "a={fleet}"}, "both set"),
    ({"MCP_DATABASES": "a={fleet}", "MCP_DATABASES_FILE": "/nonexistent"}, "use one"),
    ({"MCP_DATABASES": "a={fleet};a={fleet}"}, "named twice"),
    ({"MCP_DATABASES": "bad name={fleet}"}, "may only use letters"),
    ({"MCP_DATABASES": "justadsn"}, "is not name=DSN"),
    ({"MCP_DATABASES": ";;"}, "names no database"),
    ({"MCP_DATABASES": "a=postgresql://h/db?sslmode=bogus"}, "MCP_DATABASES entry 1"),
    ({"MCP_DATABASES_FILE": "{file}"}, "unknown key \"pool_size\""),
    ({"MCP_DATABASES_FILE": "/nonexistent/databases.ini"}, "cannot read"),
], ids=["both", "inline-and-file", "twice", "bad-name", "no-name", "empty", "bad-dsn", "bad-key", "no-file"])
def test_bad_database_configuration_stops_the_start(pg, tmp_path, env, message):
    bad_file = tmp_path / "databases.ini"
    bad_file.write_text(f"[a]\nurl = {dsn(pg, DB_NAME)}\npool_size = 3\n")
    values = {k: v.format(fleet=dsn(pg, DB_NAME), file=bad_file) for k, v in env.items()}
    done = run_binary([], env={"MCP_PORT": str(free_port()), **values})
    assert done.returncode == 2, done.stderr
    assert message in done.stderr, done.stderr
    assert pg.ro_password not in done.stderr


def test_database_url_alone_is_one_database_named_after_it(server):
    listed = server.tool("list_databases", {})
    assert [(d["name"], d["default"]) for d in listed["databases"]] == [(DB_NAME, True)]
    assert server.tool("query", {"sql": "SELECT 1 AS one", "database": DB_NAME})["rows"] == [{"one": 1}]
    assert server.tool_error("query", {"sql": "SELECT 1/0"}) == "division by zero (22012)"
    assert server.get("/readyz").json() == {"ok": True, "database": "up"}
    assert "mcp_pool_max 8" in server.get("/metrics").text
