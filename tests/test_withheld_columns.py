"""Personal columns withheld by PostgreSQL's column privileges (role.sql -v withhold=…): the
tools live with them (describe_table says which columns are readable, sample_table leaves them
out, SELECT * says what to write instead), and no other path through the server reaches them —
statistics views, whole-row references, functions over the row, the TOAST table. Views and
functions the owner defines to expose them are the owner's decision, and reach them."""

from __future__ import annotations

import json
import secrets

import pytest

from conftest import DB_NAME
from test_analyst_roles import role_sql

GOV = "mcp_gov"
PASSWORD = "gov-pw-" + secrets.token_hex(12)
PHONE = "+254 700 00"  # every phone value starts with it: no answer may contain it


@pytest.fixture(scope="module")
def withheld(pg):
    pg.psql(f"""
        CREATE TABLE fleet.drivers_pii (driver_id int PRIMARY KEY, full_name text NOT NULL, region text NOT NULL,
                                        phone text, national_id text);
        COMMENT ON COLUMN fleet.drivers_pii.phone IS 'Personal: mobile number';
        INSERT INTO fleet.drivers_pii
        SELECT i, 'Driver ' || i, (ARRAY['North', 'Coast', 'Central'])[1 + i % 3], '{PHONE}' || (i % 5),
               'ID-' || repeat(i::text, 800)  -- long enough to be TOASTed
          FROM generate_series(1, 300) AS i;
        CREATE STATISTICS fleet.drivers_pii_region_phone (mcv) ON region, phone FROM fleet.drivers_pii;
        -- foreign keys for find_join_path: one over withheld columns on both sides, one over
        -- readable keys, and a table the role may not read at all (revoked below)
        CREATE TABLE fleet.phone_book (phone text PRIMARY KEY, carrier text NOT NULL);
        INSERT INTO fleet.phone_book SELECT '{PHONE}' || i, 'carrier ' || i FROM generate_series(0, 4) AS i;
        ALTER TABLE fleet.drivers_pii ADD CONSTRAINT drivers_pii_phone_fk FOREIGN KEY (phone) REFERENCES fleet.phone_book;
        CREATE TABLE fleet.driver_shifts (shift_id int PRIMARY KEY, driver_id int NOT NULL REFERENCES fleet.drivers_pii,
                                          vehicle_id int NOT NULL REFERENCES fleet.vehicles);
        CREATE TABLE fleet.driver_payroll (driver_id int PRIMARY KEY REFERENCES fleet.drivers_pii,
                                           vehicle_id int REFERENCES fleet.vehicles, salary int);
        COMMENT ON COLUMN fleet.driver_payroll.salary IS 'Personal: monthly pay';
        ANALYZE fleet.drivers_pii, fleet.phone_book;
        -- the owner's decisions: a view and a security-definer function that expose the phone,
        -- and the safe forms of both
        CREATE VIEW reporting.v_driver_contacts AS SELECT full_name, phone FROM fleet.drivers_pii;
        CREATE VIEW reporting.v_driver_contacts_invoker WITH (security_invoker = true)
            AS SELECT full_name, phone FROM fleet.drivers_pii;
        CREATE FUNCTION reporting.driver_phone_definer(id int) RETURNS text LANGUAGE sql STABLE SECURITY DEFINER
            AS 'SELECT phone FROM fleet.drivers_pii WHERE driver_id = id';
        CREATE FUNCTION reporting.driver_phone(id int) RETURNS text LANGUAGE sql STABLE
            AS 'SELECT phone FROM fleet.drivers_pii WHERE driver_id = id';
    """)
    done = role_sql(pg, ro_role=GOV, ro_pw=PASSWORD, schemas="reporting,fleet", owners="postgres",
                    withhold="fleet.drivers_pii.phone,fleet.drivers_pii.national_id,fleet.phone_book.phone")
    assert done.returncode == 0, done.stderr
    pg.psql(f"REVOKE SELECT ON fleet.driver_payroll FROM {GOV}")
    toast = pg.psql("SELECT reltoastrelid::regclass FROM pg_class WHERE oid = 'fleet.drivers_pii'::regclass")
    yield {"toast": toast}
    pg.psql(f"""
        DROP VIEW reporting.v_driver_contacts, reporting.v_driver_contacts_invoker;
        DROP FUNCTION reporting.driver_phone_definer(int), reporting.driver_phone(int);
        DROP TABLE fleet.driver_shifts, fleet.driver_payroll, fleet.drivers_pii, fleet.phone_book;
        DROP OWNED BY {GOV};
        DROP ROLE {GOV};
    """)


@pytest.fixture(scope="module")
def gov(withheld, pg, server_factory):
    return server_factory(DATABASE_URL=f"postgresql://{GOV}:{PASSWORD}@127.0.0.1:{pg.port}/{DB_NAME}")


def test_describe_table_lists_every_column_with_whether_it_is_readable(gov):
    described = gov.tool("describe_table", {"schema": "fleet", "table": "drivers_pii"})
    assert [(c["name"], c["readable"]) for c in described["columns"]] == [
        ("driver_id", True), ("full_name", True), ("region", True), ("phone", False), ("national_id", False)]
    assert described["columns"][3]["comment"] == "Personal: mobile number"  # the catalog is not secret
    other = gov.tool("describe_table", {"schema": "fleet", "table": "vehicles"})
    assert all(c["readable"] for c in other["columns"])


def test_sample_table_shows_only_readable_columns_and_names_the_others(gov):
    sample = gov.tool("sample_table", {"schema": "fleet", "table": "drivers_pii", "n": 3})
    assert [c["name"] for c in sample["columns"]] == ["driver_id", "full_name", "region"]
    assert sample["withheld_columns"] == ["phone", "national_id"]
    assert sample["row_count"] == 3 and set(sample["rows"][0]) == {"driver_id", "full_name", "region"}
    plain = gov.tool("sample_table", {"schema": "fleet", "table": "vehicles", "n": 1})
    assert "withheld_columns" not in plain


@pytest.mark.parametrize("sql", ["SELECT * FROM fleet.drivers_pii", "TABLE fleet.drivers_pii",
                                 "SELECT d.* FROM fleet.drivers_pii d WHERE region = 'North'"])
def test_select_star_names_the_withheld_columns_and_the_list_to_write(gov, sql):
    text = gov.tool_error("query", {"sql": sql})
    assert text.startswith("permission denied for table drivers_pii: columns phone, national_id of "
                           "fleet.drivers_pii are withheld from this role"), text
    assert "SELECT driver_id, full_name, region FROM fleet.drivers_pii" in text and text.endswith("(42501)")
    rows = gov.query("SELECT driver_id, full_name, region FROM fleet.drivers_pii ORDER BY 1 LIMIT 2")["rows"]
    assert rows == [{"driver_id": 1, "full_name": "Driver 1", "region": "Coast"},
                    {"driver_id": 2, "full_name": "Driver 2", "region": "Central"}]


BYPASSES = [
    "SELECT phone FROM fleet.drivers_pii",
    "SELECT d FROM fleet.drivers_pii d",
    "SELECT row_to_json(d) FROM fleet.drivers_pii d",
    "SELECT to_jsonb(d.*) FROM fleet.drivers_pii d",
    "SELECT md5(d::text) FROM fleet.drivers_pii d",
    "SELECT hashtext(d::text) FROM fleet.drivers_pii AS d",
    "SELECT count(*) FROM fleet.drivers_pii d WHERE d IS NOT NULL",
    "SELECT count(*) FROM fleet.drivers_pii WHERE phone LIKE '+254%'",
    "SELECT full_name FROM fleet.drivers_pii ORDER BY phone LIMIT 1",
    "SELECT region, count(DISTINCT phone) FROM fleet.drivers_pii GROUP BY 1",
    "SELECT (SELECT array_agg(x) FROM fleet.drivers_pii x)",
    "WITH t AS (SELECT * FROM fleet.drivers_pii) SELECT full_name FROM t",
    "SELECT a.full_name FROM fleet.drivers_pii a NATURAL JOIN fleet.drivers_pii b",
    "SELECT reporting.driver_phone(1)",
    "SELECT phone FROM reporting.v_driver_contacts_invoker",
    "SELECT stavalues1::text FROM pg_catalog.pg_statistic",
    "SELECT stxdmcv::text FROM pg_statistic_ext_data",
]


@pytest.mark.parametrize("sql", BYPASSES)
def test_no_other_path_reaches_a_withheld_column(gov, sql):
    text = gov.tool_error("query", {"sql": sql})
    assert "permission denied" in text and "(42501)" in text, text
    assert PHONE not in text


def test_the_toast_table_is_out_of_reach(gov, withheld):
    text = gov.tool_error("query", {"sql": f"SELECT chunk_data FROM {withheld['toast']}"})
    assert "permission denied" in text, text


def test_statistics_views_show_nothing_of_a_withheld_column(gov, pg):
    sql = ("SELECT attname, most_common_vals::text AS mcv, histogram_bounds::text AS hist FROM pg_stats "
           "WHERE schemaname = 'fleet' AND tablename = 'drivers_pii' ORDER BY attname")
    # positive control: the statistics do hold the phone numbers
    assert PHONE in pg.psql(sql.replace("ORDER BY attname", "AND attname = 'phone'"))
    rows = gov.query(sql)["rows"]
    assert [r["attname"] for r in rows] == ["driver_id", "full_name", "region"]
    assert PHONE not in str(rows)
    ext = "SELECT most_common_vals::text AS mcv FROM pg_stats_ext WHERE statistics_name = 'drivers_pii_region_phone'"
    assert PHONE in pg.psql(ext)
    assert gov.query(ext)["rows"] == []


def test_profile_like_aggregates_over_readable_columns_work(gov):
    rows = gov.query("SELECT region, count(*) AS n FROM fleet.drivers_pii GROUP BY 1 ORDER BY 1")["rows"]
    assert rows == [{"region": "Central", "n": 100}, {"region": "Coast", "n": 100}, {"region": "North", "n": 100}]


def test_owner_defined_views_and_definer_functions_expose_it_by_the_owners_decision(gov):
    # Documented: a view runs with its owner's privileges, a SECURITY DEFINER function with its
    # owner's. Whoever creates them decides to hand the column out; the server cannot tell.
    rows = gov.query("SELECT phone FROM reporting.v_driver_contacts ORDER BY 1 LIMIT 1")["rows"]
    assert rows[0]["phone"].startswith(PHONE)
    assert gov.query("SELECT reporting.driver_phone_definer(1) AS p")["rows"][0]["p"].startswith(PHONE)


@pytest.mark.parametrize("fmt", ["arrays", "csv"])
def test_sample_table_formats_leave_withheld_columns_out_too(gov, fmt):
    result = gov.call_tool("sample_table", {"schema": "fleet", "table": "drivers_pii", "n": 2, "format": fmt})
    sample = result["structuredContent"]
    assert [c["name"] for c in sample["columns"]] == ["driver_id", "full_name", "region"]
    assert sample["withheld_columns"] == ["phone", "national_id"]
    assert PHONE not in json.dumps(result, default=str)
    if fmt == "csv":
        assert result["content"][0]["text"].splitlines()[0] == "driver_id,full_name,region"


def test_the_plan_cost_guard_explains_withheld_columns_the_same_way(withheld, pg, start_server):
    srv = start_server(DATABASE_URL=f"postgresql://{GOV}:{PASSWORD}@127.0.0.1:{pg.port}/{DB_NAME}",
                       MCP_MAX_PLAN_COST="1000000")
    text = srv.tool_error("query", {"sql": "SELECT * FROM fleet.drivers_pii"})
    assert "columns phone, national_id of fleet.drivers_pii are withheld" in text, text


# ── the analyst tools (issue 12) under withheld columns ─────────────────────────────────────────

def no_personal_data(answer) -> None:
    text = json.dumps(answer, default=str)
    assert PHONE not in text and "ID-1" not in text, text[:2000]


@pytest.mark.parametrize("sample", [False, True], ids=["statistics", "sample"])
def test_profile_columns_profiles_only_readable_columns_and_says_which_not(gov, pg, sample):
    # positive control: pg_stats does hold the phone numbers (the table was analysed)
    assert PHONE in pg.psql("SELECT most_common_vals::text FROM pg_stats WHERE tablename = 'drivers_pii' "
                            "AND attname = 'phone'")
    result = gov.call_tool("profile_columns", {"schema": "fleet", "table": "drivers_pii", "sample": sample})
    no_personal_data(result)
    columns = {c["name"]: c for c in result["structuredContent"]["columns"]}
    assert [(n, c["readable"]) for n, c in columns.items()] == [
        ("driver_id", True), ("full_name", True), ("region", True), ("phone", False), ("national_id", False)]
    for name in ("phone", "national_id"):
        assert columns[name] == {"name": name, "type": "text", "readable": False, "statistics": False,
                                 "note": "no SELECT privilege on this column: not profiled"}
    region = columns["region"]
    assert region["statistics"] is True and region["estimated_distinct"] == 3
    if sample:
        assert region["sample"]["distinct"] == 3


def test_profile_columns_asked_for_a_withheld_column_by_name_says_it_is_not_profiled(gov):
    result = gov.call_tool("profile_columns", {"schema": "fleet", "table": "drivers_pii",
                                               "columns": ["phone"], "sample": True})
    no_personal_data(result)
    [phone] = result["structuredContent"]["columns"]
    assert phone["readable"] is False and "not profiled" in phone["note"] and "sample" not in phone


def test_search_objects_leaves_withheld_columns_out_and_names_them(gov):
    result = gov.call_tool("search_objects", {"query": "phone"})
    no_personal_data(result)
    found = result["structuredContent"]
    hits = {(h["kind"], h["qualified_name"]) for h in found["hits"]}
    assert ("table", "fleet.phone_book") in hits  # the table is no secret
    assert not {("column", "fleet.drivers_pii.phone"), ("column", "fleet.phone_book.phone")} & hits, hits
    # the owner's view that exposes the column is the owner's decision, and found
    assert ("column", "reporting.v_driver_contacts.phone") in hits
    assert found["withheld_columns"] == ["fleet.drivers_pii.phone", "fleet.phone_book.phone"]
    assert found["total_matches"] == len(found["hits"])
    # found by its comment too; a table the role cannot read at all withholds every column
    by_comment = gov.tool("search_objects", {"query": "personal", "kinds": ["column"]})
    assert by_comment["hits"] == [] and by_comment["total_matches"] == 0
    assert by_comment["withheld_columns"] == ["fleet.driver_payroll.salary", "fleet.drivers_pii.phone"]
    # nothing withheld matches: no field
    plain = gov.tool("search_objects", {"query": "plate"})
    assert plain["hits"] and "withheld_columns" not in plain


@pytest.mark.parametrize("sql", ["SELECT * FROM fleet.drivers_pii", "SELECT d FROM fleet.drivers_pii d"])
def test_explain_of_select_star_names_the_withheld_columns(gov, sql):
    text = gov.tool_error("explain", {"sql": sql})
    assert text.startswith("permission denied for table drivers_pii: columns phone, national_id of "
                           "fleet.drivers_pii are withheld from this role"), text
    assert text.endswith("(42501)")


@pytest.mark.parametrize("analyze", [False, True], ids=["plan", "analyze"])
@pytest.mark.parametrize("sql", [
    "SELECT full_name FROM fleet.drivers_pii WHERE phone = '+254 700 001'",
    "SELECT full_name FROM fleet.drivers_pii ORDER BY phone",
    "SELECT count(*) FROM fleet.drivers_pii d WHERE d IS NOT NULL",
    "SELECT carrier FROM fleet.phone_book WHERE phone LIKE '+254%'",
    "SELECT salary FROM fleet.driver_payroll",
])
def test_explain_cannot_plan_over_a_withheld_column(gov, sql, analyze):
    text = gov.tool_error("explain", {"sql": sql, "analyze": analyze})
    assert "permission denied" in text and "(42501)" in text, text
    assert "+254 700 00" not in text.replace("+254 700 001", "")


def test_explain_of_readable_columns_shows_no_withheld_value(gov):
    result = gov.call_tool("explain", {"sql": "SELECT region, count(*) FROM fleet.drivers_pii GROUP BY 1",
                                       "analyze": True, "buffers": True})
    no_personal_data(result)
    assert result["structuredContent"]["summary"]["actual_rows"] == 3


def test_find_join_path_follows_only_keys_the_role_can_read(gov):
    found = gov.tool("find_join_path", {"from": "fleet.vehicles", "to": "fleet.drivers_pii"})
    joins = [p["join"] for p in found["paths"]]
    assert joins and all("driver_shifts" in j for j in joins), joins
    assert "driver_payroll" not in json.dumps(found)  # a table the role may not read is no hop
    # the only key between them is over withheld columns: no path, and the note says why
    none = gov.tool("find_join_path", {"from": "fleet.drivers_pii", "to": "fleet.phone_book"})
    assert none["paths"] == []
    assert "withheld from this role" in none["note"], none["note"]
    text = gov.tool_error("find_join_path", {"from": "fleet.driver_payroll", "to": "fleet.vehicles"})
    assert text == "permission denied: no column of fleet.driver_payroll is readable by this role (42501)", text


@pytest.mark.parametrize("sample", [False, True], ids=["statistics", "sample"])
def test_profile_columns_of_a_table_the_role_reads_nothing_of(gov, sample):
    args = {"schema": "fleet", "table": "driver_payroll", "sample": sample}
    if sample:
        text = gov.tool_error("profile_columns", args)
        assert text == "permission denied: no column of fleet.driver_payroll is readable by this role (42501)", text
    else:
        columns = gov.tool("profile_columns", args)["columns"]
        assert [(c["name"], c["readable"], c["statistics"]) for c in columns] == [
            ("driver_id", False, False), ("vehicle_id", False, False), ("salary", False, False)]
