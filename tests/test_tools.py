"""Every tool's happy path and output shape, against the fixture schema."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

QUERY_KEYS = {"row_count", "truncated", "truncated_reason", "columns", "rows"}


def pairs_rows(server, tool, args):
    """Rows of a successful tool call as lists of (key, value) pairs, in wire order, duplicates kept."""
    r = server.rpc_raw("tools/call", {"name": tool, "arguments": args})
    assert r.status == 200, r.text
    env = json.loads(r.body, object_pairs_hook=lambda p: p, parse_float=Decimal)
    result = dict(dict(env)["result"])
    assert not dict(result).get("isError"), result
    sc = dict(result["structuredContent"])
    return sc["rows"], [dict(c) for c in sc["columns"]]


def assert_query_shape(res):
    assert QUERY_KEYS <= set(res), res.keys()
    assert isinstance(res["row_count"], int) and res["row_count"] == len(res["rows"])
    assert isinstance(res["truncated"], bool)
    assert res["truncated_reason"] in (None, "max_rows", "max_bytes")
    assert (res["truncated_reason"] is not None) == res["truncated"]
    for c in res["columns"]:
        assert set(c) >= {"name", "type"} and isinstance(c["name"], str) and isinstance(c["type"], str) and c["type"]
    for row in res["rows"]:
        assert list(row) == [c["name"] for c in res["columns"]]


# ── query ──────────────────────────────────────────────────────────────────────

def test_query_returns_rows_and_columns_in_order(server):
    res = server.query("SELECT vehicle_id, plate, model FROM fleet.vehicles ORDER BY vehicle_id")
    assert_query_shape(res)
    assert res["row_count"] == 3 and res["truncated"] is False and res["truncated_reason"] is None
    assert [c["name"] for c in res["columns"]] == ["vehicle_id", "plate", "model"]
    assert res["rows"] == [
        {"vehicle_id": 1, "plate": "KAA 001A", "model": "Hilux"},
        {"vehicle_id": 2, "plate": "KAB 002B", "model": "Land Cruiser"},
        {"vehicle_id": 3, "plate": "KAC 003C", "model": None},
    ]
    rows, _ = pairs_rows(server, "query", {"sql": "SELECT plate, vehicle_id, model FROM fleet.vehicles LIMIT 1"})
    assert [k for k, _ in rows[0]] == ["plate", "vehicle_id", "model"]


def test_query_column_types_are_reported(server):
    res = server.query("SELECT 1::int AS i, 2::bigint AS b, 'x'::text AS s, now()::date AS d, 1.5::numeric AS n")
    types = {c["name"]: c["type"].lower() for c in res["columns"]}
    assert types["i"] in ("int4", "integer")
    assert types["b"] in ("int8", "bigint")
    assert types["s"] == "text"
    assert types["d"] == "date"
    assert types["n"] == "numeric"


@pytest.mark.parametrize("name", ["t", "j", "capped", "row_to_json", "x"])
def test_any_column_name_works(server, name):
    # the server's own wrapping of the statement must not collide with the analyst's names
    res = server.query(f'SELECT 1 AS "{name}", 2 AS other')
    assert res["rows"] == [{name: 1, "other": 2}]
    res = server.query(f'SELECT plate AS "{name}" FROM fleet.vehicles ORDER BY 1 LIMIT 1')
    assert res["rows"] == [{name: "KAA 001A"}]


def test_query_with_no_rows_still_has_columns(server):
    res = server.query("SELECT plate, model FROM fleet.vehicles WHERE false")
    assert res["row_count"] == 0 and res["rows"] == [] and res["truncated"] is False
    assert [c["name"] for c in res["columns"]] == ["plate", "model"]


@pytest.mark.parametrize("sql", [
    "SELECT count(*) AS n FROM fleet.trips",
    "select count(*) as n from fleet.trips",
    "   \n\tSELECT count(*) AS n FROM fleet.trips",
    "SELECT count(*) AS n FROM fleet.trips;",
    "SELECT count(*) AS n FROM fleet.trips ;  \n",
    "-- how many trips?\nSELECT count(*) AS n FROM fleet.trips",
    "/* block */ SELECT count(*) AS n /* inline */ FROM fleet.trips -- trailing",
    "WITH t AS (SELECT * FROM fleet.trips) SELECT count(*) AS n FROM t",
    "(SELECT count(*) AS n FROM fleet.trips)",
    "SELECT count(*) AS n FROM fleet.trips ORDER BY 1",
    "SELECT count(*) AS n FROM fleet.trips LIMIT 5",
    "SELECT count(*) AS n FROM fleet.trips LIMIT 5 OFFSET 0",
])
def test_query_accepts_ordinary_select_forms(server, sql):
    res = server.query(sql)
    assert res["rows"] == [{"n": 4}]


def test_query_views_matviews_partitions_and_functions(server):
    assert server.query("SELECT count(*) AS n FROM reporting.v_trips")["rows"] == [{"n": 4}]
    res = server.query("SELECT day, km FROM reporting.mv_daily_distance ORDER BY day")
    assert [r["km"] for r in res["rows"]] == [Decimal("15.75"), Decimal("40.00"), Decimal("7.75")]
    assert server.query("SELECT count(*) AS n FROM fleet.events")["rows"] == [{"n": 3}]
    assert server.query("SELECT reporting.fn_trip_count(1) AS n")["rows"] == [{"n": 2}]
    res = server.query("SELECT * FROM reporting.fn_distance_between('2024-03-02')")
    assert res["rows"] == [{"vehicle_id": 2, "km": Decimal("40.00")}, {"vehicle_id": 3, "km": Decimal("7.75")}]


def test_keywords_inside_literals_do_not_trip_the_guard(server):
    res = server.query("SELECT ticket_id FROM reporting.tickets WHERE summary ILIKE '%please delete%'")
    assert res["rows"] == [{"ticket_id": 1}]
    res = server.query("SELECT 'please delete' AS msg, 'DROP TABLE x; UPDATE y' AS other")
    assert res["rows"] == [{"msg": "please delete", "other": "DROP TABLE x; UPDATE y"}]
    res = server.query('SELECT 1 AS "delete", 2 AS "update" -- drop table canary')
    assert res["rows"] == [{"delete": 1, "update": 2}]
    res = server.query("SELECT $$ insert; delete $$ AS dollar")
    assert res["rows"] == [{"dollar": " insert; delete "}]
    res = server.query("SELECT \"drop\" FROM fleet.trips WHERE \"drop\" IS NOT NULL ORDER BY 1")
    assert res["rows"] == [{"drop": "a"}, {"drop": "b"}]


@pytest.mark.parametrize("sql,values", [
    ("SELECT 1 AS a, 2 AS a, 3 AS b", [1, 2, 3]),
    ("SELECT 1 AS a, 2 AS a, 3 AS a_2", [1, 2, 3]),
    ("SELECT v.plate, w.plate FROM fleet.vehicles v JOIN fleet.vehicles w USING (vehicle_id) "
     "WHERE vehicle_id = 1", ["KAA 001A", "KAA 001A"]),
])
def test_duplicate_column_names_are_not_lost(server, sql, values):
    res = server.query(sql)
    names = [c["name"] for c in res["columns"]]
    # every column is listed, under a distinct name that is also its key in the row
    assert len(names) == len(values) and len(set(names)) == len(names), names
    assert res["rows"] == [dict(zip(names, values))]
    rows, _ = pairs_rows(server, "query", {"sql": sql})
    assert [k for k, _ in rows[0]] == names and [v for _, v in rows[0]] == values
    # the first occurrence keeps its own name
    assert names[0] == ("plate" if "plate" in sql else "a")


# ── max_rows ───────────────────────────────────────────────────────────────────

def test_max_rows_caps_and_flags_truncation(server):
    res = server.query("SELECT position_id FROM fleet.positions ORDER BY position_id", max_rows=10)
    assert res["row_count"] == 10 and res["truncated"] is True and res["truncated_reason"] == "max_rows"
    assert [r["position_id"] for r in res["rows"]] == list(range(1, 11))


def test_inner_limit_larger_than_cap_is_still_capped(server):
    res = server.query("SELECT position_id FROM fleet.positions ORDER BY position_id LIMIT 2000", max_rows=5)
    assert res["row_count"] == 5 and res["truncated"] is True
    res = server.query("SELECT * FROM (SELECT position_id FROM fleet.positions LIMIT 100) s", max_rows=7)
    assert res["row_count"] == 7 and res["truncated"] is True


def test_result_exactly_at_the_cap_is_not_truncated(server):
    res = server.query("SELECT i FROM generate_series(1, 10) AS i", max_rows=10)
    assert res["row_count"] == 10 and res["truncated"] is False and res["truncated_reason"] is None


def test_inner_limit_smaller_than_cap_is_respected(server):
    res = server.query("SELECT position_id FROM fleet.positions ORDER BY 1 LIMIT 3", max_rows=100)
    assert res["row_count"] == 3 and res["truncated"] is False


def test_default_max_rows_is_1000(server):
    res = server.query("SELECT position_id FROM fleet.positions")
    assert res["row_count"] == 1000 and res["truncated"] is True


def test_rows_beyond_the_cap_are_never_computed(server):
    # 1/(i-1500) divides by zero at i = 1500: only a fetch-everything-then-slice server evaluates it
    res = server.query("SELECT i, 1/(i-1500) AS x FROM generate_series(1, 3000) AS i", max_rows=10)
    assert res["row_count"] == 10 and res["truncated"] is True
    assert [r["i"] for r in res["rows"]] == list(range(1, 11))


def test_max_rows_above_server_ceiling_is_clamped(start_server):
    srv = start_server(MCP_MAX_ROWS="50")
    res = srv.query("SELECT position_id FROM fleet.positions ORDER BY 1", max_rows=100000)
    assert res["row_count"] == 50 and res["truncated"] is True
    res = srv.query("SELECT position_id FROM fleet.positions ORDER BY 1")  # default 1000 > 50
    assert res["row_count"] == 50 and res["truncated"] is True
    res = srv.query("SELECT i FROM generate_series(1, 20) AS i", max_rows=100000)
    assert res["row_count"] == 20 and res["truncated"] is False


@pytest.mark.parametrize("huge", [10 ** 6, 2 ** 63, 10 ** 20])
def test_any_huge_max_rows_is_clamped_not_refused(server, huge):
    res = server.query("SELECT i FROM generate_series(1, 5) AS i", max_rows=huge)
    assert res["row_count"] == 5 and res["truncated"] is False


def test_result_byte_cap_truncates_with_reason(start_server):
    srv = start_server(MCP_MAX_RESULT_BYTES="20000")
    res = srv.query("SELECT position_id, repeat('x', 100) AS pad FROM fleet.positions ORDER BY 1", max_rows=2000)
    assert res["truncated"] is True and res["truncated_reason"] == "max_bytes"
    assert 0 < res["row_count"] < 2000
    assert [r["position_id"] for r in res["rows"]] == list(range(1, res["row_count"] + 1))


# ── list_schemas ───────────────────────────────────────────────────────────────

def test_list_schemas(server):
    res = server.tool("list_schemas", {})
    by_name = {s["schema"]: s for s in res["schemas"]}
    assert {"reporting", "fleet"} <= set(by_name)
    for hidden in ("infrastructure", "pg_catalog", "information_schema", "pg_toast"):
        assert hidden not in by_name
    for s in res["schemas"]:
        assert set(s) >= {"schema", "tables", "views", "materialized_views", "functions", "comment"}
    rep = by_name["reporting"]
    assert rep["views"] == 1 and rep["materialized_views"] == 1 and rep["functions"] == 3
    assert rep["tables"] >= 4
    assert rep["comment"] == "Curated analytics layer"
    assert by_name["fleet"]["functions"] == 1 and by_name["fleet"]["tables"] >= 4


def test_list_schemas_honours_readable_schemas_setting(start_server):
    srv = start_server(MCP_READABLE_SCHEMAS="fleet")
    res = srv.tool("list_schemas", {})
    assert [s["schema"] for s in res["schemas"]] == ["fleet"]


# ── list_tables ────────────────────────────────────────────────────────────────

def test_list_tables_reporting_kinds(server, pg):
    res = server.tool("list_tables", {"schema": "reporting"})
    assert res["schema"] == "reporting"
    kinds = {t["name"]: t["kind"] for t in res["tables"]}
    assert kinds["awkward"] == "table"
    assert kinds["canary"] == "table"
    assert kinds['weird"name'] == "table"
    assert kinds["v_trips"] == "view"
    assert kinds["mv_daily_distance"] == "materialized view"
    if pg.psql("SELECT count(*) FROM pg_class WHERE relname = 'ft_null'") == "1":
        assert kinds["ft_null"] == "foreign table"
    for t in res["tables"]:
        assert set(t) >= {"name", "kind", "estimated_rows", "comment"}
        assert t["estimated_rows"] is None or isinstance(t["estimated_rows"], int)
    by_name = {t["name"]: t for t in res["tables"]}
    assert by_name["awkward"]["comment"] == "Every awkward type the server must serialise exactly"
    assert by_name["v_trips"]["comment"] == "Trips with the vehicle plate"
    assert by_name["canary"]["comment"] is None


def test_list_tables_fleet_partitioned_and_estimates(server):
    res = server.tool("list_tables", {"schema": "fleet"})
    by_name = {t["name"]: t for t in res["tables"]}
    assert by_name["events"]["kind"] == "partitioned table"
    assert by_name["events"]["comment"] == "Vehicle events, partitioned by year"
    assert by_name["positions"]["estimated_rows"] == 2500  # ANALYZEd in the fixture
    assert by_name["vehicles"]["comment"] == "One row per vehicle in the fleet"


@pytest.mark.parametrize("schema", ["infrastructure", "no_such_schema", "pg_catalog", "information_schema"])
def test_list_tables_on_unreadable_schema_is_error(server, schema):
    text = server.tool_error("list_tables", {"schema": schema})
    assert schema in text
    assert "not for analysts" not in text


# ── describe_table ─────────────────────────────────────────────────────────────

def test_describe_table_columns_keys_and_comments(server):
    res = server.tool("describe_table", {"schema": "fleet", "table": "trips"})
    assert res["schema"] == "fleet" and res["table"] == "trips" and res["kind"] == "table"
    assert res["comment"] == "Trips, one row per leg"
    cols = res["columns"]
    assert [c["name"] for c in cols] == ["trip_id", "leg", "vehicle_id", "started_at", "distance_km", "drop"]
    by = {c["name"]: c for c in cols}
    for c in cols:
        assert set(c) >= {"name", "type", "nullable", "default", "comment"}
    assert by["trip_id"]["type"] == "bigint" and by["trip_id"]["nullable"] is False
    assert by["started_at"]["type"] == "timestamp with time zone"
    assert by["distance_km"]["type"] == "numeric(10,2)" and by["distance_km"]["nullable"] is True
    assert by["distance_km"]["comment"] == "Distance driven in kilometres"
    assert by["drop"]["comment"] is None and by["drop"]["default"] is None
    assert res["primary_key"] == ["trip_id", "leg"]
    assert res["foreign_keys"] == [{
        "name": "trips_vehicle_fk", "columns": ["vehicle_id"],
        "references": {"schema": "fleet", "table": "vehicles", "columns": ["vehicle_id"]},
    }]


def test_describe_table_defaults(server):
    res = server.tool("describe_table", {"schema": "fleet", "table": "vehicles"})
    by = {c["name"]: c for c in res["columns"]}
    assert "2020-01-01" in by["commissioned"]["default"]
    assert by["plate"]["comment"] == "Registration plate"
    assert res["primary_key"] == ["vehicle_id"] and res["foreign_keys"] == []


@pytest.mark.parametrize("schema,table,kind", [
    ("reporting", "v_trips", "view"),
    ("reporting", "mv_daily_distance", "materialized view"),
    ("fleet", "events", "partitioned table"),
    ("reporting", 'weird"name', "table"),
])
def test_describe_other_kinds(server, schema, table, kind):
    res = server.tool("describe_table", {"schema": schema, "table": table})
    assert res["kind"] == kind and res["columns"]
    if table == 'weird"name':
        assert [c["name"] for c in res["columns"]] == ["id", 'odd "col"']
    if table == "mv_daily_distance":
        assert [c["name"] for c in res["columns"]] == ["day", "km"]
        assert res["comment"] == "Distance per day"


@pytest.mark.parametrize("schema,table", [
    ("reporting", "no_such_table"), ("infrastructure", "secrets"), ("nope", "canary"),
    ("reporting", "canary; DROP TABLE reporting.canary"),
])
def test_describe_missing_or_unreadable_table_is_error(server, canary, schema, table):
    before = canary()
    text = server.tool_error("describe_table", {"schema": schema, "table": table})
    assert text
    assert canary() == before


# ── list_functions ─────────────────────────────────────────────────────────────

def test_list_functions_defaults_to_reporting(server):
    res = server.tool("list_functions", {})
    assert res["schema"] == "reporting"
    fns = {f["name"]: f for f in res["functions"]}
    assert set(fns) == {"fn_trip_count", "fn_distance_between", "fn_purge_canary"}
    f = fns["fn_trip_count"]
    assert set(f) >= {"name", "arguments", "returns", "kind", "comment"}
    assert f["arguments"] == "p_vehicle integer"
    assert f["returns"] == "bigint"
    assert f["kind"] == "function"
    assert f["comment"] == "Trips driven by one vehicle"
    g = fns["fn_distance_between"]
    assert "p_from date" in g["arguments"] and "DEFAULT" in g["arguments"]
    assert g["returns"].startswith("TABLE(")


def test_list_functions_other_schema(server):
    res = server.tool("list_functions", {"schema": "fleet"})
    assert res["schema"] == "fleet"
    assert [f["name"] for f in res["functions"]] == ["fn_fleet_size"]


def test_list_functions_default_falls_back_to_first_readable_schema(start_server):
    srv = start_server(MCP_READABLE_SCHEMAS="fleet")
    res = srv.tool("list_functions", {})
    assert res["schema"] == "fleet"
    assert [f["name"] for f in res["functions"]] == ["fn_fleet_size"]


def test_list_functions_unreadable_schema_is_error(server):
    assert "infrastructure" in server.tool_error("list_functions", {"schema": "infrastructure"})


# ── sample_table ───────────────────────────────────────────────────────────────

def test_sample_table_has_query_shape(server):
    res = server.tool("sample_table", {"schema": "reporting", "table": "canary", "n": 2})
    assert_query_shape(res)
    assert [c["name"] for c in res["columns"]] == ["id", "note"]
    assert res["row_count"] == 2 and res["truncated"] is True


def test_sample_table_default_n_is_20(server):
    res = server.tool("sample_table", {"schema": "fleet", "table": "positions"})
    assert res["row_count"] == 20 and res["truncated"] is True


def test_sample_table_whole_small_table(server):
    res = server.tool("sample_table", {"schema": "reporting", "table": "canary", "n": 20})
    assert res["row_count"] == 3 and res["truncated"] is False
    assert sorted(r["note"] for r in res["rows"]) == ["canary", "do not touch", "still here"]


def test_sample_table_with_double_quote_in_name(server):
    res = server.tool("sample_table", {"schema": "reporting", "table": 'weird"name'})
    assert sorted(r["id"] for r in res["rows"]) == [1, 2]
    assert sorted(r['odd "col"'] for r in res["rows"]) == ["one", "two"]


@pytest.mark.parametrize("schema,table", [
    ("reporting", "v_trips"), ("reporting", "mv_daily_distance"), ("fleet", "events"), ("fleet", "events_2024"),
])
def test_sample_table_views_and_partitions(server, schema, table):
    res = server.tool("sample_table", {"schema": schema, "table": table, "n": 100})
    assert res["row_count"] > 0


@pytest.mark.parametrize("table", [
    'x"; DROP TABLE canary; --',
    'canary"; DROP TABLE reporting.canary; --',
    'canary" WHERE false; --',
    'canary" UNION SELECT 1, value FROM infrastructure.secrets --',
    "canary; DELETE FROM reporting.canary",
    '"canary"',
    "CANARY",
])
def test_sample_table_name_cannot_break_out(server, canary, table):
    before = canary()
    text = server.tool_error("sample_table", {"schema": "reporting", "table": table})
    assert "not for analysts" not in text
    assert canary() == before


def test_sample_table_schema_cannot_break_out(server, canary):
    before = canary()
    text = server.tool_error("sample_table", {"schema": 'reporting"."canary', "table": "canary"})
    assert text
    assert canary() == before


def test_sample_table_unreadable_schema_is_error(server):
    text = server.tool_error("sample_table", {"schema": "infrastructure", "table": "secrets"})
    assert "not for analysts" not in text
