"""explain, profile_columns, find_join_path and search_objects end to end, with the awkward cases:
never-analysed tables, expression indexes, partitioned tables, views and materialized views,
composite / self-referencing / one-to-one foreign keys, a cycle in the FK graph, quoted mixed-case
names, no comments, and a column the role may not SELECT (tests/fixture.sql, schema "Sales")."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

CANARY_VALUES = ("do not touch", "still here", "not for analysts")


def rpc_error(server, tool: str, args: dict) -> str:
    """The message of a JSON-RPC -32602 answer to a tools/call (a bad argument)."""
    env = server.call_tool_envelope(tool, args)
    assert "error" in env, f"{tool}{args}: expected a JSON-RPC error, got {env.get('result')}"
    assert env["error"]["code"] == -32602, env["error"]
    return env["error"]["message"]


def by_name(columns: list[dict]) -> dict[str, dict]:
    return {c["name"]: c for c in columns}


# ── explain ────────────────────────────────────────────────────────────────────

JOIN_SQL = ("SELECT v.plate, sum(t.distance_km) AS km FROM fleet.trips t "
            "JOIN fleet.vehicles v USING (vehicle_id) GROUP BY v.plate")


def test_explain_gives_the_plan_and_a_summary(server):
    res = server.tool("explain", {"sql": JOIN_SQL})
    assert res["analyzed"] is False and res["truncated"] is False and res["truncated_reason"] is None
    plan = res["plan"]
    assert isinstance(plan, list) and plan[0]["Plan"]["Node Type"]
    s = res["summary"]
    assert s["total_cost"] == plan[0]["Plan"]["Total Cost"] and s["total_cost"] > 0
    assert s["estimated_rows"] == plan[0]["Plan"]["Plan Rows"]
    assert 1 <= len(s["most_expensive"]) <= 5
    for node in s["most_expensive"]:
        assert node["node"] and node["self_cost"] >= 0 and 0 <= node["cost_share"] <= 1
        assert "actual_rows" not in node
    assert {"actual_rows", "execution_time_ms", "estimate_misses"}.isdisjoint(s)
    # VERBOSE's per-node output lists are dropped; schemas stay
    assert "Output" not in json.dumps(plan, default=str)
    assert '"Schema": "fleet"' in json.dumps(plan, default=str)


def test_explain_analyze_measures_actual_rows_and_time(server):
    res = server.tool("explain", {"sql": "SELECT * FROM fleet.positions WHERE speed_kmh > 100", "analyze": True})
    s = res["summary"]
    assert res["analyzed"] is True
    assert s["actual_rows"] == 380  # speed_kmh = i % 120 for i in 1..2500: 101..119 twenty times each
    assert s["execution_time_ms"] > 0 and s["planning_time_ms"] >= 0
    scan = s["most_expensive"][0]
    assert scan["node"] == "Seq Scan" and scan["relation"] == "fleet.positions"
    assert scan["actual_rows"] == s["actual_rows"] and scan["loops"] == 1 and scan["self_time_ms"] >= 0
    assert scan["condition"] == "(positions.speed_kmh > 100)"
    assert isinstance(s["estimate_misses"], list)


def test_explain_names_the_worst_estimate_miss(server, pg):
    # two conditions PostgreSQL takes as independent but that hold for the same rows (speed_kmh is
    # position_id % 120): it multiplies their selectivities and expects about one row of 1,250
    sql = "SELECT * FROM fleet.positions WHERE speed_kmh % 2 = 0 AND position_id % 2 = 0"
    actual = int(pg.psql(sql.replace("*", "count(*)", 1)))
    res = server.tool("explain", {"sql": sql, "analyze": True})
    miss = res["summary"]["estimate_misses"][0]
    assert miss["node"] == "Seq Scan" and miss["relation"] == "fleet.positions"
    assert miss["actual_rows"] == actual and miss["estimated_rows"] < actual / 10
    assert miss["direction"] == "underestimate" and miss["factor"] >= 10


def test_explain_buffers(server):
    res = server.tool("explain", {"sql": "SELECT count(*) FROM fleet.positions", "analyze": True, "buffers": True})
    buffers = res["summary"]["buffers"]
    assert buffers["shared_hit"] + buffers["shared_read"] > 0
    assert "Shared Hit Blocks" in json.dumps(res["plan"], default=str)
    res = server.tool("explain", {"sql": "SELECT 1", "buffers": True})  # planning buffers only
    assert res["analyzed"] is False and "buffers" not in res["summary"]


def test_explain_calls_out_sequential_scans_of_big_tables_with_their_indexes(server):
    res = server.tool("explain", {"sql": "SELECT count(*) FROM \"Sales\".page_views WHERE path = '/page/3' "
                                         "AND customer_id IN (SELECT \"CustomerID\" FROM \"Sales\".\"Customers\")"})
    scans = res["summary"]["seq_scans"]
    assert [s["relation"] for s in scans] == ['"Sales".page_views']  # Customers (200 rows) is not big
    scan = scans[0]
    assert scan["relation_rows"] == 20000 and scan["relation_pages"] > 0
    assert scan["filter"] == "(page_views.path = '/page/3'::text)"
    # the expression index is named with its expression: the model can rewrite the filter to use it
    assert scan["indexes"] == ["page_views_path_lower_idx btree (lower(path))", "page_views_pkey btree (view_id)",
                               "page_views_viewed_at_idx btree (viewed_at)"]


@pytest.mark.parametrize("sql", [
    "SELECT * FROM reporting.canary",
    "SELECT note FROM reporting.canary WHERE id > 0 ORDER BY note",
    "SELECT * FROM reporting.v_trips t, reporting.canary c",
    "TABLE reporting.canary",
    "(SELECT note FROM reporting.canary)",
    "WITH c AS MATERIALIZED (SELECT * FROM reporting.canary) SELECT max(note) FROM c",
])
def test_explain_never_returns_row_data(server, sql):
    for analyze in (False, True):
        r = server.rpc_raw("tools/call", {"name": "explain", "arguments": {"sql": sql, "analyze": analyze}})
        assert r.status == 200
        result = r.json()["result"]
        assert not result.get("isError"), result
        assert "rows" not in result["structuredContent"]
        for value in CANARY_VALUES:
            assert value not in r.text


def test_explain_analyze_cannot_write(server, canary):
    before = canary()
    # a callable function that deletes: the read-only transaction stops it
    text = server.tool_error("explain", {"sql": "SELECT reporting.fn_purge_canary()", "analyze": True})
    assert "25006" in text and "read-only transaction" in text
    # writes the guard refuses before anything runs
    for sql in ["DELETE FROM reporting.canary",
                "WITH gone AS (DELETE FROM reporting.canary RETURNING *) SELECT * FROM gone",
                "SELECT 1; DELETE FROM reporting.canary",
                "SELECT nextval('x')",
                "SELECT * INTO reporting.copy FROM reporting.canary",
                "SELECT * FROM reporting.canary FOR UPDATE"]:
        assert server.tool_error("explain", {"sql": sql, "analyze": True})
    assert canary() == before


@pytest.mark.parametrize("sql", [
    "EXPLAIN SELECT 1",
    "explain analyze SELECT 1",
    "EXPLAIN (ANALYZE) DELETE FROM reporting.canary",
])
def test_explain_takes_the_bare_statement(server, canary, sql):
    before = canary()
    text = server.tool_error("explain", {"sql": sql})
    assert "without EXPLAIN" in text and "analyze: true" in text
    assert canary() == before


def test_plain_explain_stays_refused_by_query(server):
    for sql in ["EXPLAIN ANALYZE SELECT 1", "explain select 1", "(EXPLAIN SELECT 1)"]:
        text = server.tool_error("query", {"sql": sql})
        assert "EXPLAIN" in text and "explain tool" in text


def test_explain_analyze_is_bounded_by_the_statement_timeout(start_server):
    srv = start_server(MCP_STATEMENT_TIMEOUT_MS="700")
    text = srv.tool_error("explain", {"sql": "SELECT pg_sleep(0.5) FROM generate_series(1, 4)", "analyze": True})
    assert "57014" in text and "timeout" in text
    srv.wait_for_stderr(lambda t: "tool=explain status=timeout" in t, "the timeout audit line")
    # without analyze nothing runs, so the same statement is planned at once
    assert srv.tool("explain", {"sql": "SELECT pg_sleep(0.5) FROM generate_series(1, 4)"})["analyzed"] is False


def test_explain_plan_larger_than_the_budget_keeps_the_summary(start_server):
    srv = start_server(MCP_MAX_RESULT_BYTES="4096")
    union = " UNION ALL ".join(f"SELECT trip_id FROM fleet.trips WHERE leg = {i}" for i in range(40))
    res = srv.tool("explain", {"sql": union})
    assert res["plan"] is None and res["truncated"] is True and res["truncated_reason"] == "max_bytes"
    assert res["summary"]["total_cost"] > 0 and res["summary"]["most_expensive"]


def test_explain_partitioned_tables_and_views(server):
    res = server.tool("explain", {"sql": "SELECT * FROM fleet.events WHERE happened >= '2024-01-01'",
                                  "analyze": True})
    plan = json.dumps(res["plan"], default=str)
    assert "events_2024" in plan and "events_2023" not in plan  # partition pruning shows
    assert res["summary"]["actual_rows"] == 2
    res = server.tool("explain", {"sql": "SELECT * FROM reporting.v_trips", "analyze": True})
    assert res["summary"]["actual_rows"] == 4
    res = server.tool("explain", {"sql": 'SELECT * FROM "Sales".mv_region_orders'})
    assert "mv_region_orders" in json.dumps(res["plan"], default=str)


def test_explain_errors_carry_the_sqlstate(server):
    assert "42P01" in server.tool_error("explain", {"sql": "SELECT * FROM reporting.nope"})
    assert "42501" in server.tool_error("explain", {"sql": "SELECT * FROM infrastructure.secrets"})
    assert "42601" in server.tool_error("explain", {"sql": "SELECT FROM WHERE"})


def test_explain_is_audited_with_its_sql(server):
    server.tool("explain", {"sql": "SELECT 42 AS audited_explain"})
    server.wait_for_stderr(lambda t: "tool=explain status=ok" in t and "audited_explain" in t, "the audit line")


# ── profile_columns ────────────────────────────────────────────────────────────

def test_profile_from_statistics(server):
    res = server.tool("profile_columns", {"schema": "fleet", "table": "positions"})
    assert res["kind"] == "table" and res["estimated_rows"] == 2500 and res["sample"] is None
    assert res["analyzed_at"] and res["analyzed_at"].endswith("Z")
    assert [c["name"] for c in res["columns"]] == ["position_id", "vehicle_id", "recorded_at", "speed_kmh"]
    cols = by_name(res["columns"])
    speed = cols["speed_kmh"]
    assert speed["readable"] is True and speed["statistics"] is True and speed["type"] == "integer"
    assert speed["null_fraction"] == 0 and speed["estimated_distinct"] == 120
    assert speed["min"] == 0 and speed["max"] == 119
    assert set(speed["quantiles"]) == {"p10", "p25", "p50", "p75", "p90"}
    assert speed["quantiles"]["p10"] <= speed["quantiles"]["p50"] <= speed["quantiles"]["p90"]
    assert speed["average_width"] == 4 and -1 <= speed["correlation"] <= 1
    # three vehicles, a third of the rows each: all most-common values, no histogram
    vehicle = cols["vehicle_id"]
    assert sorted(v["value"] for v in vehicle["most_common"]) == [1, 2, 3]
    assert abs(sum(v["frequency"] for v in vehicle["most_common"]) - 1) < Decimal("0.01")
    assert vehicle["quantiles"] is None and (vehicle["min"], vehicle["max"]) == (1, 3)
    ids = cols["position_id"]
    assert ids["estimated_distinct"] == 2500 and ids["most_common"] is None
    assert (ids["min"], ids["max"]) == (1, 2500)
    assert cols["recorded_at"]["min"] == "2024-01-01T00:01:00"


def test_profile_of_a_never_analysed_table_says_so_and_can_sample(server, pg):
    res = server.tool("profile_columns", {"schema": "Sales", "table": "leads"})
    assert res["estimated_rows"] is None and res["analyzed_at"] is None
    for column in res["columns"]:
        assert column["statistics"] is False and "never been analysed" in column["note"]
        assert "sample" not in column
    res = server.tool("profile_columns", {"schema": "Sales", "table": "leads", "sample": True})
    assert res["sample"]["method"] == "TABLESAMPLE SYSTEM" and res["sample"]["rows"] == 500
    cols = by_name(res["columns"])
    source = cols["source"]["sample"]
    assert source["null_fraction"] == Decimal("0.2") and source["distinct"] == 3
    assert (source["min"], source["max"]) == ("fair", "web")
    counts = pg.psql('SELECT string_agg(source || \'=\' || n, \',\' ORDER BY source) FROM '
                     '(SELECT source, count(*) AS n FROM "Sales".leads WHERE source IS NOT NULL GROUP BY 1) c')
    assert ",".join(f"{v['value']}={v['count']}" for v in sorted(source["most_common"], key=lambda v: v["value"])) == counts
    score = cols["score"]["sample"]
    assert (score["min"], score["max"], score["distinct"]) == (0, 100, 101)
    # point has no ordering: distinct and top values by text, no min/max
    spot = cols["spot"]["sample"]
    assert spot["distinct"] == 70 and spot["min"] is None and spot["max"] is None
    assert spot["most_common"][0]["value"].startswith("(")


def test_profile_respects_column_privileges(server):
    for sample in (False, True):
        res = server.tool("profile_columns", {"schema": "Sales", "table": "Customers", "sample": sample})
        cols = by_name(res["columns"])
        assert list(cols) == ["CustomerID", "Name", "email", "region", "credit_limit", "referred_by", "last_order_id"]
        email = cols["email"]
        assert email["readable"] is False and email["statistics"] is False
        assert "no SELECT privilege" in email["note"]
        assert set(email) == {"name", "type", "readable", "statistics", "note"}
        assert cols["region"]["readable"] is True and cols["region"]["statistics"] is True
        assert sorted(v["value"] for v in cols["region"]["most_common"]) == ["East", "North", "South", "West"]
        assert cols["CustomerID"]["max"] == 200
        if sample:
            assert cols["region"]["sample"]["distinct"] == 4
            assert "@example.com" not in json.dumps(res, default=str)


def test_profile_does_not_mix_in_expression_index_statistics(server):
    res = server.tool("profile_columns", {"schema": "Sales", "table": "Customers"})
    assert "lower" not in [c["name"] for c in res["columns"]]


def test_profile_exact_values_of_awkward_types(server):
    res = server.tool("profile_columns", {"schema": "reporting", "table": "awkward", "sample": True,
                                          "columns": ["flag", "num", "big", "tstz", "uid", "doc", "tags", "blob"]})
    cols = by_name(res["columns"])
    # in the table's order, whatever the order asked for
    assert [c["name"] for c in res["columns"]] == ["num", "big", "tstz", "uid", "doc", "tags", "blob", "flag"]
    num = cols["num"]["sample"]
    assert num["min"] == Decimal("-0.000000000000000000000000000001") and num["max"] == "NaN"
    assert num["null_fraction"] == Decimal("0.25")
    big = cols["big"]
    assert (big["sample"]["min"], big["sample"]["max"]) == (-9223372036854775808, 9223372036854775807)
    assert (big["min"], big["max"]) == (-9223372036854775808, 9223372036854775807)
    assert cols["tstz"]["sample"]["max"] == "2024-03-01T12:34:56.789+00:00"
    assert cols["flag"]["sample"]["min"] is False and cols["flag"]["sample"]["max"] is True
    assert cols["tags"]["sample"]["min"] is None and cols["tags"]["sample"]["distinct"] == 3  # arrays: by text
    assert cols["blob"]["sample"]["max"] == "\\xdeadbeef"


def test_profile_partitioned_table_view_and_materialized_view(server):
    res = server.tool("profile_columns", {"schema": "fleet", "table": "events"})
    assert res["kind"] == "partitioned table" and res["estimated_rows"] == 3
    assert by_name(res["columns"])["kind"]["statistics"] is True  # inherited statistics of the parent
    res = server.tool("profile_columns", {"schema": "fleet", "table": "events", "sample": True})
    assert res["sample"]["rows"] == 3 and by_name(res["columns"])["event_id"]["sample"]["max"] == 3
    res = server.tool("profile_columns", {"schema": "reporting", "table": "v_trips"})
    assert res["kind"] == "view" and all("views have no statistics" in c["note"] for c in res["columns"])
    res = server.tool("profile_columns", {"schema": "reporting", "table": "v_trips", "sample": True})
    assert res["sample"]["method"] == "first rows" and res["sample"]["rows"] == 4
    assert by_name(res["columns"])["plate"]["sample"]["distinct"] == 3
    res = server.tool("profile_columns", {"schema": "reporting", "table": "mv_daily_distance"})
    assert res["kind"] == "materialized view" and by_name(res["columns"])["km"]["statistics"] is True


def test_profile_quoted_names_and_chosen_columns(server):
    res = server.tool("profile_columns", {"schema": "reporting", "table": 'weird"name', "columns": ['odd "col"']})
    assert [c["name"] for c in res["columns"]] == ['odd "col"']
    assert res["columns"][0]["min"] == "one" and res["columns"][0]["max"] == "two"


@pytest.mark.parametrize("args,needle", [
    ({"schema": "fleet", "table": "positions", "columns": ["speed_kmh", "nope"]}, '"nope"'),
    ({"schema": "fleet", "table": "nope"}, "nope"),
    ({"schema": "infrastructure", "table": "secrets"}, "infrastructure"),
])
def test_profile_of_something_missing_is_an_error(server, args, needle):
    text = server.tool_error("profile_columns", args)
    assert needle in text and "not for analysts" not in text


def test_profile_columns_argument_is_checked(server):
    assert "columns must be a list" in rpc_error(server, "profile_columns",
                                                 {"schema": "fleet", "table": "trips", "columns": "trip_id"})


# ── find_join_path ─────────────────────────────────────────────────────────────

def assert_runs(server, path):
    """The join a path offers is valid SQL the role can run."""
    res = server.query(f"SELECT count(*) AS n {path['join']}")
    assert res["rows"][0]["n"] >= 0


def test_join_path_one_hop_each_direction(server):
    res = server.tool("find_join_path", {"from": "fleet.trips", "to": "fleet.vehicles"})
    assert res["from"] == "fleet.trips" and res["to"] == "fleet.vehicles" and res["note"] is None
    [path] = res["paths"]
    assert path["hops"] == 1
    assert path["join"] == "FROM fleet.trips JOIN fleet.vehicles ON vehicles.vehicle_id = trips.vehicle_id"
    assert path["steps"] == [{"from": "fleet.trips", "to": "fleet.vehicles", "constraint": "trips_vehicle_fk",
                              "on": "vehicles.vehicle_id = trips.vehicle_id", "cardinality": "many-to-one"}]
    assert server.query(f"SELECT count(*) AS n {path['join']}")["rows"] == [{"n": 4}]
    back = server.tool("find_join_path", {"from": "fleet.vehicles", "to": "fleet.trips"})
    assert back["paths"][0]["steps"][0]["cardinality"] == "one-to-many"
    assert back["paths"][0]["join"] == "FROM fleet.vehicles JOIN fleet.trips ON trips.vehicle_id = vehicles.vehicle_id"


def test_join_path_through_a_composite_key_and_a_cycle(server):
    res = server.tool("find_join_path", {"from": '"Sales".shipments', "to": '"Sales"."Customers"'})
    paths = res["paths"]
    # orders and Customers reference each other (a cycle): two shortest paths of three hops
    assert [p["hops"] for p in paths] == [3, 3]
    first = paths[0]["steps"]
    assert first[0]["on"] == "order_lines.order_id = shipments.order_id AND order_lines.line_no = shipments.line_no"
    assert first[0]["cardinality"] == "many-to-one" and first[0]["constraint"] == "shipments_line_fk"
    assert {p["steps"][2]["constraint"] for p in paths} == {"orders_customer_id_fkey", "customers_last_order_fk"}
    assert {p["steps"][2]["cardinality"] for p in paths} == {"many-to-one", "one-to-many"}
    for path in paths:
        assert_runs(server, path)
    assert server.tool("find_join_path", {"from": '"Sales".shipments', "to": '"Sales"."Customers"',
                                          "max_hops": 2})["paths"] == []


def test_join_path_self_reference_and_one_to_one(server):
    res = server.tool("find_join_path", {"from": '"Sales"."Customers"', "to": '"Sales"."Customers"'})
    [path] = res["paths"]
    assert path["join"] == ('FROM "Sales"."Customers" JOIN "Sales"."Customers" AS "Customers_2" '
                            'ON "Customers_2"."CustomerID" = "Customers".referred_by')
    assert path["steps"][0]["cardinality"] == "many-to-one"
    assert server.query(f"SELECT count(*) AS n {path['join']}")["rows"] == [{"n": 190}]
    res = server.tool("find_join_path", {"from": '"Sales".customer_settings', "to": '"Sales"."Customers"'})
    assert res["paths"][0]["steps"][0]["cardinality"] == "one-to-one"
    assert_runs(server, res["paths"][0])
    res = server.tool("find_join_path", {"from": "fleet.vehicles", "to": "fleet.vehicles"})
    assert res["paths"] == [] and "no self-referencing foreign key" in res["note"]


def test_join_path_to_a_partitioned_table(server):
    res = server.tool("find_join_path", {"from": '"Sales".invoices', "to": '"Sales"."Customers"'})
    assert res["paths"][0]["hops"] == 2 and res["paths"][0]["steps"][0]["constraint"] == "invoices_order_id_fkey"
    assert_runs(server, res["paths"][0])


def test_join_path_names_bare_quoted_and_exact(server):
    a = server.tool("find_join_path", {"from": "Sales.shipments", "to": '"Sales".orders'})
    b = server.tool("find_join_path", {"from": '"Sales"."shipments"', "to": "orders"})
    assert a == b and a["paths"][0]["hops"] == 2
    text = rpc_error(server, "find_join_path", {"from": "tickets", "to": "fleet.trips"})
    assert "ambiguous" in text and '"Sales".tickets' in text and "reporting.tickets" in text


def test_join_path_when_there_is_none(server):
    res = server.tool("find_join_path", {"from": "reporting.canary", "to": "fleet.trips"})
    assert res["paths"] == [] and "no foreign-key path of at most 3 hops" in res["note"]
    res = server.tool("find_join_path", {"from": "reporting.v_trips", "to": "fleet.trips"})
    assert res["paths"] == [] and "views" in res["note"]


@pytest.mark.parametrize("args,where", [
    ({"from": "infrastructure.secrets", "to": "fleet.trips"}, "error"),
    ({"from": "fleet.trips", "to": "fleet.nope"}, "error"),
    ({"from": "a.b.c", "to": "fleet.trips"}, "rpc"),
    ({"from": '"fleet.trips', "to": "fleet.trips"}, "rpc"),
    ({"from": "fleet.", "to": "fleet.trips"}, "rpc"),
    ({"from": 'fl"eet.trips', "to": "fleet.trips"}, "rpc"),
    ({"from": "fleet.trips", "to": "fleet.trips", "max_hops": 0}, "rpc"),
])
def test_join_path_bad_arguments(server, canary, args, where):
    before = canary()
    text = server.tool_error("find_join_path", args) if where == "error" else rpc_error(server, "find_join_path", args)
    assert "not for analysts" not in text
    assert canary() == before


def test_join_path_never_walks_through_unreadable_schemas(server):
    # infrastructure.canary has no key to readable tables, and is not even resolvable
    assert "infrastructure" in server.tool_error("find_join_path", {"from": "infrastructure.canary",
                                                                    "to": "reporting.canary"})


# ── search_objects ─────────────────────────────────────────────────────────────

def hits(server, **args):
    return server.tool("search_objects", args)


def test_search_ranks_exact_prefix_substring_comment(server):
    res = hits(server, query="trips")
    assert res["query"] == "trips"
    first = res["hits"][0]
    assert (first["kind"], first["qualified_name"], first["match"]) == ("table", "fleet.trips", "exact")
    assert first["estimated_rows"] == 4 and first["comment"] == "Trips, one row per leg"
    matches = [h["match"] for h in res["hits"]]
    order = ["exact", "prefix", "substring", "comment", "some words"]
    assert matches == sorted(matches, key=order.index)
    names = {h["qualified_name"] for h in res["hits"]}
    assert {"reporting.v_trips", "reporting.fn_trip_count(integer)"} <= names
    assert res["total_matches"] == len(res["hits"]) and res["truncated"] is False and res["next_cursor"] is None


def test_search_finds_by_comment_and_reports_column_types(server):
    res = hits(server, query="kilometres")
    [hit] = res["hits"]
    assert hit == {"kind": "column", "schema": "fleet", "table": "trips", "name": "distance_km",
                   "qualified_name": "fleet.trips.distance_km", "type": "numeric(10,2)",
                   "comment": "Distance driven in kilometres", "estimated_rows": 4, "match": "comment"}


def test_search_words_match_plurals_and_partial_matches_come_last(server):
    res = hits(server, query="registration plates")
    assert res["hits"][0]["qualified_name"] == "fleet.vehicles.plate" and res["hits"][0]["match"] == "comment"
    res = hits(server, query="vehicle plate numbers")
    assert res["hits"] and all(h["match"] == "some words" for h in res["hits"])


def test_search_kinds_and_schema_filters(server):
    res = hits(server, query="customer", kinds=["column"], schema="Sales", limit=100)
    assert res["hits"] and {h["kind"] for h in res["hits"]} == {"column"}
    assert {h["schema"] for h in res["hits"]} == {"Sales"}
    assert '"Sales"."Customers"."CustomerID"' in {h["qualified_name"] for h in res["hits"]}
    res = hits(server, query="customers", kinds=["table"], schema="Sales")
    assert [h["qualified_name"] for h in res["hits"]][:1] == ['"Sales"."Customers"']
    res = hits(server, query="events", kinds=["table"])
    assert [(h["qualified_name"], h["kind"]) for h in res["hits"]] == [("fleet.events", "partitioned table")]
    res = hits(server, query="distance", kinds=["materialized view", "function"])
    assert {h["kind"] for h in res["hits"]} == {"materialized view", "function"}
    text = rpc_error(server, "search_objects", {"query": "x", "kinds": ["index"]})
    assert "kinds must be a list of schema, table" in text and '"index"' in text


def test_search_never_shows_unreadable_schemas_or_partitions(server):
    res = hits(server, query="secrets", limit=100)
    assert all(h["schema"] != "infrastructure" for h in res["hits"])
    res = hits(server, query="canary", limit=100)
    assert {h["schema"] for h in res["hits"]} == {"reporting"}
    res = hits(server, query="events_2024", kinds=["table"], limit=100)
    assert [h["qualified_name"] for h in res["hits"]] == ["fleet.events"]  # partitions: through their table
    assert "infrastructure" in server.tool_error("search_objects", {"query": "x", "schema": "infrastructure"})


def test_search_pages_with_a_cursor(server):
    everything = hits(server, query="id", limit=100)
    total = everything["total_matches"]
    assert total > 10
    seen, cursor, pages = [], None, 0
    while True:
        args = {"query": "id", "limit": 4}
        if cursor:
            args["cursor"] = cursor
        page = hits(server, **args)
        pages += 1
        seen += [h["qualified_name"] for h in page["hits"]]
        assert page["total_matches"] == total
        cursor = page["next_cursor"]
        if not cursor:
            assert page["truncated"] is False
            break
        assert page["truncated"] is True and page["truncated_reason"] == "limit" and len(page["hits"]) == 4
    assert seen == [h["qualified_name"] for h in everything["hits"]][:100] and pages == -(-total // 4)


def test_search_cursor_must_come_from_the_same_search(server):
    cursor = hits(server, query="id", limit=2)["next_cursor"]
    assert "another call" in rpc_error(server, "search_objects", {"query": "trip", "cursor": cursor})
    assert "another call" in rpc_error(server, "list_tables", {"schema": "fleet", "cursor": cursor})
    for garbage in ["nope", "!!!", "W10", "eyJ4IjoxfQ", "A" * 5000]:
        assert "cursor" in rpc_error(server, "search_objects", {"query": "id", "cursor": garbage})


@pytest.mark.parametrize("query", ["", "   ", "%", "_", "%%__"])
def test_search_needs_a_word(server, query):
    assert "query must contain a word" in rpc_error(server, "search_objects", {"query": query})


@pytest.mark.parametrize("query", ["'; DROP TABLE reporting.canary; --", "100%", "a\\b", "%trip", 'weird"name', "é🚀"])
def test_search_queries_are_text_not_sql_or_patterns(server, canary, query):
    before = canary()
    res = hits(server, query=query)
    if query == "%trip":
        assert res["hits"] == []  # '%' is a character here, not a LIKE wildcard
    if query == 'weird"name':
        assert res["hits"][0]["qualified_name"] == 'reporting."weird""name"'
    assert canary() == before


def test_search_query_length_is_bounded(server):
    assert "longer than 200" in rpc_error(server, "search_objects", {"query": "x" * 201})


# ── the existing tools keep their answers ──────────────────────────────────────

@pytest.mark.parametrize("tool,args,key", [
    ("list_schemas", {}, "schemas"),
    ("list_tables", {"schema": "fleet"}, "tables"),
    ("describe_table", {"schema": "fleet", "table": "trips"}, "columns"),
    ("list_functions", {}, "functions"),
])
def test_small_answers_only_gain_the_paging_fields(server, tool, args, key):
    res = server.tool(tool, args)
    assert res["truncated"] is False and res["truncated_reason"] is None and res["next_cursor"] is None
    assert res[key]


def test_listing_cursor_is_bound_to_its_arguments(start_server):
    srv = start_server(MCP_MAX_RESULT_BYTES="1024")
    page = srv.tool("describe_table", {"schema": "reporting", "table": "awkward"})
    assert page["truncated"] is True and page["truncated_reason"] == "max_bytes" and page["next_cursor"]
    assert len(json.dumps(page, separators=(",", ":"), default=str)) <= 1024
    text = rpc_error(srv, "describe_table", {"schema": "reporting", "table": "canary", "cursor": page["next_cursor"]})
    assert "another call" in text
    names = [c["name"] for c in page["columns"]]
    while page["next_cursor"]:
        page = srv.tool("describe_table", {"schema": "reporting", "table": "awkward", "cursor": page["next_cursor"]})
        assert page["primary_key"] == ["id"] and page["comment"].startswith("Every awkward type")
        names += [c["name"] for c in page["columns"]]
    assert names == ["id", "num", "big", "ts", "tstz", "dur", "uid", "doc", "tags", "nums", "blob", "addr", "day",
                     "flag", "label", "drop"]


def test_raw_answers_are_compact_json(server):
    r = server.rpc_raw("tools/call", {"name": "list_tables", "arguments": {"schema": "fleet"}})
    assert b'"structuredContent":{"schema":"fleet","tables":[{"name":"events","kind":"partitioned table",' in r.body


def test_instructions_describe_the_flow_with_the_new_tools(server):
    result = server.rpc("initialize", {"protocolVersion": "2025-11-25", "capabilities": {},
                                       "clientInfo": {"name": "t", "version": "1"}})["result"]
    instructions = result["instructions"]
    for tool in ("search_objects", "describe_table", "find_join_path", "profile_columns", "query", "explain",
                 "next_cursor"):
        assert tool in instructions
    assert instructions.index("search_objects") < instructions.index("find_join_path") < instructions.index("query(sql)")


@pytest.mark.parametrize("tool,args", [
    ("explain", {"sql": JOIN_SQL}),
    ("explain", {"sql": JOIN_SQL, "analyze": True, "buffers": True}),
    ("profile_columns", {"schema": "Sales", "table": "Customers", "sample": True}),
    ("profile_columns", {"schema": "Sales", "table": "leads"}),
    ("profile_columns", {"schema": "reporting", "table": "awkward"}),
    ("find_join_path", {"from": '"Sales".shipments', "to": '"Sales"."Customers"'}),
    ("find_join_path", {"from": "reporting.v_trips", "to": "fleet.trips"}),
    ("search_objects", {"query": "trip id", "limit": 100}),
    ("list_tables", {"schema": "Sales"}),
    ("describe_table", {"schema": "Sales", "table": "Customers"}),
    ("list_schemas", {}),
    ("list_functions", {}),
])
def test_answers_match_their_output_schema(server, tool, args):
    import jsonschema
    schemas = {t["name"]: t["outputSchema"] for t in server.rpc("tools/list")["result"]["tools"]}
    r = server.rpc_raw("tools/call", {"name": tool, "arguments": args})
    answer = json.loads(r.body)["result"]["structuredContent"]  # floats as JSON Schema sees them
    jsonschema.validate(answer, schemas[tool])
