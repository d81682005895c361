"""Compact results (format = objects | arrays | csv | markdown), provenance, MCP_SERVER_LABEL and
MCP_MAX_PLAN_COST.

The promise: every format carries exactly the values of the objects answer — parsed back, CSV and
Markdown equal it for the fleet demo and for the awkward-types fixture — and the byte budget counts
the formatted rows, so compact formats fit more of them.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import re
from decimal import Decimal

import pytest

from conftest import DB_NAME, LATEST, loads_exact, run_binary

FORMATS = ("objects", "arrays", "csv", "markdown")
# Types whose JSON rendering is not a string: in CSV and Markdown their cells are JSON text.
JSON_VALUED = {"int2", "int4", "int8", "numeric", "float4", "float8", "oid", "bool", "json", "jsonb",
               # PostGIS types come back as GeoJSON and coordinate objects (or EWKT strings)
               "geometry", "geography", "box2d", "box3d", "raster"}

DEMO_QUERIES = [
    "SELECT * FROM fleet.vehicles ORDER BY vehicle_id",
    "SELECT * FROM fleet.drivers ORDER BY driver_id",
    "SELECT * FROM fleet.trips ORDER BY trip_id LIMIT 400",
    "SELECT * FROM fleet.positions ORDER BY position_id LIMIT 400",
    "SELECT * FROM fleet.fuel_purchases ORDER BY purchase_id",
    "SELECT * FROM tickets.inc ORDER BY inc_id LIMIT 300",
    "SELECT * FROM reporting.v_fuel_cost_by_cost_centre_month ORDER BY 1, 2",
    "SELECT * FROM reporting.v_trips_summary ORDER BY 1, 2",
]


# ── reading the text formats back ──────────────────────────────────────────────────────────────

def parse_csv(text: str) -> list[list[str | None]]:
    """RFC 4180, keeping what the csv module forgets: an unquoted empty field is NULL (None), a
    quoted one the empty string."""
    records: list[list[str | None]] = []
    field, fields, quoted, i = [], [], False, 0
    in_quotes = False
    while i < len(text):
        c = text[i]
        if in_quotes:
            if c == '"' and text[i + 1:i + 2] == '"':
                field.append('"')
                i += 1
            elif c == '"':
                in_quotes = False
            else:
                field.append(c)
        elif c == '"':
            in_quotes = quoted = True
        elif c in ",\n":
            fields.append("".join(field) if field or quoted else None)
            field, quoted = [], False
            if c == "\n":
                records.append(fields)
                fields = []
        else:
            field.append(c)
        i += 1
    assert not in_quotes and not field and not fields, "CSV must end with a complete record"
    # the csv module must read the same values (it cannot tell NULL from the empty string)
    assert list(csv.reader(io.StringIO(text, newline=""))) == [[v or "" for v in r] for r in records]
    return records


def parse_markdown(text: str) -> list[list[str | None]]:
    """The server's Markdown table: header, separator, one row per line; `\\|`, `\\\\`, `\\n`, `\\r`
    and a leading `\\"` are escapes, an empty cell is NULL and `""` the empty string."""
    lines = text.split("\n")
    assert lines[-1] == "", "the table ends with a newline"
    records = []
    for n, line in enumerate(lines[:-1]):
        assert line.startswith("|") and line.endswith("|"), line
        cells, cell, i, raw = [], [], 1, False
        while i < len(line):
            c = line[i]
            if c == "\\":
                nxt = line[i + 1]
                cell.append({"|": "|", "\\": "\\", "n": "\n", "r": "\r", '"': '"'}[nxt])
                raw = True
                i += 2
                continue
            if c == "|":
                text_cell = "".join(cell)
                cells.append(None if not cell else ("" if text_cell == '""' and not raw else text_cell))
                cell, raw = [], False
            else:
                cell.append(c)
            i += 1
        if n == 1:
            assert set(cells) == {"---"}, line
            continue
        records.append(cells)
    return records


def strict_json(text: str):
    """JSON as the server writes it: NaN and Infinity are never bare constants."""
    def refuse(constant):
        raise ValueError(f"not JSON: {constant}")
    return json.loads(text, parse_float=Decimal, parse_constant=refuse)


def cell_value(cell: str | None, column_type: str):
    """What the objects answer holds for a CSV/Markdown cell of this column type."""
    if cell is None:
        return None
    if column_type in JSON_VALUED or column_type.endswith("[]"):
        try:
            return strict_json(cell)
        except ValueError:
            return cell  # numeric NaN and Infinity are JSON strings in the objects answer too
    return cell


def rows_from_text(fmt: str, text: str, columns: list[dict]) -> list[dict]:
    records = parse_csv(text) if fmt == "csv" else parse_markdown(text)
    assert records[0] == [c["name"] for c in columns], "the header names the columns in order"
    return [{c["name"]: cell_value(cell, c["type"]) for c, cell in zip(columns, record)} for record in records[1:]]


def call(server, sql: str, fmt: str, tool: str = "query", **args) -> dict:
    arguments = {"sql": sql, "format": fmt, **args} if tool == "query" else {**args, "format": fmt}
    return server.call_tool(tool, arguments)


def as_objects(result: dict, fmt: str) -> list[dict]:
    """The rows of a result in any format, as the objects answer would hold them."""
    sc = result["structuredContent"]
    names = [c["name"] for c in sc["columns"]]
    if fmt == "objects":
        return sc["rows"]
    from_arrays = [dict(zip(names, row)) for row in sc["rows"]]
    if fmt == "arrays":
        return from_arrays
    from_text = rows_from_text(fmt, result["content"][0]["text"], sc["columns"])
    assert from_text == from_arrays, "the text and structuredContent must carry the same rows"
    return from_text


@pytest.fixture(scope="module")
def demo_server(server_factory, demo_db, pg):
    srv = server_factory(DATABASE_URL=pg.ro_dsn_for(demo_db))
    yield srv
    srv.stop()


# ── round trips ────────────────────────────────────────────────────────────────────────────────

@pytest.mark.parametrize("fmt", ["arrays", "csv", "markdown"])
@pytest.mark.parametrize("sql", DEMO_QUERIES)
def test_fleet_demo_round_trips_exactly(demo_server, sql, fmt):
    objects = call(demo_server, sql, "objects", max_rows=1000)["structuredContent"]
    other = call(demo_server, sql, fmt, max_rows=1000)
    assert objects["row_count"] > 0 and not objects["truncated"]
    assert other["structuredContent"]["columns"] == objects["columns"]
    assert other["structuredContent"]["row_count"] == objects["row_count"]
    assert as_objects(other, fmt) == objects["rows"]


@pytest.mark.parametrize("fmt", ["arrays", "csv", "markdown"])
def test_awkward_types_round_trip_exactly(server, fmt):
    sql = "SELECT * FROM reporting.awkward ORDER BY id"
    objects = server.query(sql)
    result = call(server, sql, fmt)
    assert as_objects(result, fmt) == objects["rows"]
    by_id = {r["id"]: r for r in as_objects(result, fmt)}
    assert by_id[3]["label"] is None and by_id[2]["label"] == ""  # NULL and '' stay apart
    assert str(by_id[1]["num"]) == "12345678901234567890.123456789012345678901234567890"
    assert by_id[1]["big"] == 9223372036854775807 and by_id[2]["big"] == -9223372036854775808
    assert by_id[4]["label"] == 'quote " backslash \\ newline \n end'
    assert by_id[4]["doc"] == "just a string" and by_id[2]["doc"] == []


def test_csv_and_markdown_text_is_what_an_analyst_expects(server):
    sql = ("SELECT 1 AS n, 'plain' AS s, '' AS empty, NULL::text AS nothing, 'a,b \"c\"' AS tricky, "
           "E'two\\nlines' AS multi, 'x|y\\z' AS pipes, 'é 🚀' AS uni, 1.50::numeric AS dec, true AS yes, "
           "'{\"k\": [1, 2]}'::jsonb AS doc, ARRAY[1, NULL] AS arr")
    csv_text = call(server, sql, "csv")["content"][0]["text"]
    assert csv_text == ('n,s,empty,nothing,tricky,multi,pipes,uni,dec,yes,doc,arr\n'
                        '1,plain,"",,"a,b ""c""","two\nlines",x|y\\z,é 🚀,1.50,true,"{""k"": [1, 2]}","[1,null]"\n')
    md = call(server, sql, "markdown")["content"][0]["text"]
    assert md == ('|n|s|empty|nothing|tricky|multi|pipes|uni|dec|yes|doc|arr|\n'
                  '|---|---|---|---|---|---|---|---|---|---|---|---|\n'
                  '|1|plain|""||a,b "c"|two\\nlines|x\\|y\\\\z|é 🚀|1.50|true|{"k": [1, 2]}|[1,null]|\n')


def test_markdown_escapes_a_leading_quote_so_it_never_reads_as_empty(server):
    res = call(server, "SELECT '\"\"' AS two_quotes, '\"q' AS lead, '' AS empty", "markdown")
    assert res["content"][0]["text"].splitlines()[2] == '|\\""|\\"q|""|'
    assert as_objects(res, "markdown") == [{"two_quotes": '""', "lead": '"q', "empty": ""}]


def test_repeated_column_names_keep_distinct_keys_in_every_format(server):
    for fmt in FORMATS:
        res = call(server, "SELECT 1 AS a, 2 AS a", fmt)
        assert [c["name"] for c in res["structuredContent"]["columns"]] == ["a", "a_2"]
        assert as_objects(res, fmt) == [{"a": 1, "a_2": 2}]


def test_no_rows_and_no_columns(server):
    for fmt in FORMATS:
        empty = call(server, "SELECT vehicle_id, plate FROM fleet.vehicles WHERE false", fmt)
        assert empty["structuredContent"]["rows"] == [] and empty["structuredContent"]["row_count"] == 0
        assert as_objects(empty, fmt) == []
        nothing = call(server, "SELECT FROM fleet.vehicles LIMIT 2", fmt)
        assert nothing["structuredContent"]["row_count"] == 2


# ── shapes ─────────────────────────────────────────────────────────────────────────────────────

def test_objects_is_the_default_and_keeps_its_shape(server):
    sql = "SELECT vehicle_id, plate FROM fleet.vehicles ORDER BY 1"
    default = server.call_tool("query", {"sql": sql})
    explicit = call(server, sql, "objects")
    for res in (default, explicit):
        sc = res["structuredContent"]
        assert list(sc) == ["row_count", "truncated", "truncated_reason", "columns", "rows", "provenance"]
        assert sc["rows"][0] == {"vehicle_id": 1, "plate": "KAA 001A"}
        assert len(res["content"]) == 1
    assert default["structuredContent"]["rows"] == explicit["structuredContent"]["rows"]


@pytest.mark.parametrize("fmt", ["arrays", "csv", "markdown"])
def test_compact_shapes(server, fmt):
    res = call(server, "SELECT vehicle_id, plate FROM fleet.vehicles ORDER BY 1", fmt, max_rows=2)
    sc = res["structuredContent"]
    assert list(sc) == ["row_count", "truncated", "truncated_reason", "columns", "rows", "format", "provenance"]
    assert sc["format"] == fmt and sc["rows"] == [[1, "KAA 001A"], [2, "KAB 002B"]]
    assert sc["truncated"] is True and sc["truncated_reason"] == "max_rows"
    if fmt == "arrays":
        assert len(res["content"]) == 1
    else:
        summary = loads_exact(res["content"][1]["text"])
        assert "rows" not in summary and summary["truncated_reason"] == "max_rows" and summary["format"] == fmt


def test_sample_table_takes_the_format_too(server):
    objects = server.tool("sample_table", {"schema": "reporting", "table": "awkward", "n": 10})
    for fmt in ("arrays", "csv", "markdown"):
        res = server.call_tool("sample_table", {"schema": "reporting", "table": "awkward", "n": 10, "format": fmt})
        assert sorted(as_objects(res, fmt), key=lambda r: r["id"]) == sorted(objects["rows"], key=lambda r: r["id"])
        assert res["structuredContent"]["provenance"]["database"] == DB_NAME


@pytest.mark.parametrize("bad", ["json", "CSV", "", 3, ["csv"]])
def test_unknown_format_is_invalid_params(server, bad):
    env = server.call_tool_envelope("query", {"sql": "SELECT 1", "format": bad})
    assert env["error"]["code"] == -32602 and "objects, arrays, csv, markdown" in env["error"]["message"]


def test_tools_list_advertises_format_and_provenance(server):
    tools = {t["name"]: t for t in server.rpc("tools/list")["result"]["tools"]}
    for name in ("query", "sample_table"):
        prop = tools[name]["inputSchema"]["properties"]["format"]
        assert prop["enum"] == list(FORMATS) and prop["default"] == "objects"
        out = tools[name]["outputSchema"]
        assert "provenance" in out["required"] and out["properties"]["rows"]["items"]["type"] == ["object", "array"]


# ── the budget counts the formatted rows ───────────────────────────────────────────────────────

@pytest.fixture(scope="module")
def small_budget(server_factory):
    srv = server_factory(MCP_MAX_RESULT_BYTES="20000")
    yield srv
    srv.stop()


def test_budget_applies_to_the_formatted_size(small_budget):
    sql = "SELECT position_id, vehicle_id, recorded_at, speed_kmh FROM fleet.positions ORDER BY 1"
    counts = {}
    for fmt in FORMATS:
        res = call(small_budget, sql, fmt, max_rows=2500)
        sc = res["structuredContent"]
        assert sc["truncated"] is True and sc["truncated_reason"] == "max_bytes", (fmt, sc["row_count"])
        counts[fmt] = sc["row_count"]
        rows = as_objects(res, fmt)
        assert [r["position_id"] for r in rows] == list(range(1, counts[fmt] + 1)), "no row lost or reordered"
        if fmt in ("csv", "markdown"):
            size = len(res["content"][0]["text"].encode())
        else:
            size = len(json.dumps(sc["rows"], separators=(",", ":"), default=str).encode()) - 2
        assert size <= 20000, (fmt, size)
        average_row = size / counts[fmt]
        assert size + 2 * average_row > 20000, f"{fmt}: the next row would have fitted ({size} bytes)"
    assert counts["csv"] > counts["arrays"] > counts["objects"], counts
    assert counts["markdown"] > counts["objects"], counts


def test_one_large_row_fits_or_not_by_its_formatted_size(small_budget):
    # 19,995 characters: {"pad":"…"} is 20,005 bytes, ["…"] 19,999, CSV 20,000 with its header,
    # Markdown 20,010 with its header: the budget is 20,000.
    fits = {"objects": False, "arrays": True, "csv": True, "markdown": False}
    for fmt, expected in fits.items():
        sc = call(small_budget, "SELECT repeat('x', 19995) AS pad", fmt)["structuredContent"]
        assert (sc["row_count"] == 1) is expected, (fmt, sc["row_count"], sc["truncated_reason"])
        assert sc["truncated_reason"] == (None if expected else "max_bytes"), fmt


# ── provenance ─────────────────────────────────────────────────────────────────────────────────

def parse_utc(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


def test_provenance_says_when_from_where_and_how_long(server):
    before = dt.datetime.now(dt.timezone.utc)
    res = server.query("SELECT now() AS tx_time, current_database() AS db, pg_sleep(0.2)")
    after = dt.datetime.now(dt.timezone.utc)
    prov = res["provenance"]
    assert set(prov) == {"database", "server_label", "read_at", "db_ms"}
    assert prov["database"] == DB_NAME == res["rows"][0]["db"]
    assert prov["server_label"] is None
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", prov["read_at"]), prov["read_at"]
    assert parse_utc(prov["read_at"]) == parse_utc(res["rows"][0]["tx_time"]), "read_at is the transaction time"
    assert before - dt.timedelta(seconds=5) <= parse_utc(prov["read_at"]) <= after + dt.timedelta(seconds=5)
    assert isinstance(prov["db_ms"], Decimal) and prov["db_ms"] >= 200, "the database slept 200 ms"


def test_every_call_reads_a_fresh_transaction(server):
    first = server.query("SELECT 1")["provenance"]["read_at"]
    second = server.query("SELECT 1")["provenance"]["read_at"]
    assert parse_utc(second) > parse_utc(first)


def test_server_label_is_in_answers_and_in_server_info(start_server):
    label = "Fleet production replica — eu-1"
    srv = start_server(MCP_SERVER_LABEL=label)
    assert srv.query("SELECT 1")["provenance"]["server_label"] == label
    assert call(srv, "SELECT 1", "csv")["structuredContent"]["provenance"]["server_label"] == label
    info = srv.rpc("initialize", {"protocolVersion": LATEST, "capabilities": {},
                                  "clientInfo": {"name": "t", "version": "1"}})["result"]["serverInfo"]
    assert info["title"] == f"Analytics (read-only PostgreSQL): {label}"
    modern = srv.rpc("tools/list", {"_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
                                              "io.modelcontextprotocol/clientCapabilities": {}}},
                     version_header="2026-07-28", headers={"Mcp-Method": "tools/list"})
    assert modern["result"]["_meta"]["io.modelcontextprotocol/serverInfo"]["title"].endswith(label)


@pytest.mark.parametrize("env, fragment", [
    ({"MCP_SERVER_LABEL": "two\nlines"}, "MCP_SERVER_LABEL"),
    ({"MCP_SERVER_LABEL": "x" * 101}, "MCP_SERVER_LABEL"),
    ({"MCP_MAX_PLAN_COST": "abc"}, "MCP_MAX_PLAN_COST"),
    ({"MCP_MAX_PLAN_COST": "0"}, "MCP_MAX_PLAN_COST"),
    ({"MCP_MAX_PLAN_COST": "-5"}, "MCP_MAX_PLAN_COST"),
    ({"MCP_MAX_PLAN_COST": "inf"}, "MCP_MAX_PLAN_COST"),
])
def test_invalid_settings_stop_start_up(env, fragment):
    r = run_binary([], env={"DATABASE_URL": "postgresql://u@127.0.0.1:1/db", "MCP_PORT": "1", **env})
    assert r.returncode == 2 and fragment in r.stderr, r.stderr


# ── MCP_MAX_PLAN_COST ──────────────────────────────────────────────────────────────────────────

@pytest.fixture(scope="module")
def cost_capped(server_factory):
    srv = server_factory(MCP_MAX_PLAN_COST="50000")
    yield srv
    srv.stop()


def test_cheap_queries_run_under_the_cost_cap(cost_capped):
    assert cost_capped.query("SELECT count(*) AS n FROM fleet.positions")["rows"] == [{"n": 2500}]
    assert cost_capped.tool("sample_table", {"schema": "fleet", "table": "positions", "n": 3})["row_count"] == 3


def test_a_costly_query_is_refused_before_it_runs(cost_capped):
    # If it ran, it would sleep past the statement timeout; refused, it answers at once.
    sql = ("SELECT count(*) FROM fleet.positions a, fleet.positions b, fleet.positions c "
           "WHERE pg_sleep(29) IS NOT NULL")
    text = cost_capped.tool_error("query", {"sql": sql})
    assert text.startswith("not run: the planner estimates this query at cost "), text
    estimate = int(re.search(r"at cost (\d+)", text).group(1))
    assert estimate > 50000
    assert "MCP_MAX_PLAN_COST" in text and "aggregate" in text and "filter" in text
    cost_capped.wait_for_stderr(lambda t: "status=too_costly" in t, "the audit line")
    metrics = cost_capped.get("/metrics").text
    assert 'mcp_tool_calls_total{tool="query",outcome="too_costly"} 1' in metrics
