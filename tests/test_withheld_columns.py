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
        ANALYZE fleet.drivers_pii;
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
                    withhold="fleet.drivers_pii.phone,fleet.drivers_pii.national_id")
    assert done.returncode == 0, done.stderr
    toast = pg.psql("SELECT reltoastrelid::regclass FROM pg_class WHERE oid = 'fleet.drivers_pii'::regclass")
    yield {"toast": toast}
    pg.psql(f"""
        DROP VIEW reporting.v_driver_contacts, reporting.v_driver_contacts_invoker;
        DROP FUNCTION reporting.driver_phone_definer(int), reporting.driver_phone(int);
        DROP TABLE fleet.drivers_pii;
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
