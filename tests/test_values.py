"""Exact values: what the analyst gets must be what PostgreSQL holds, digit for digit."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

HUGE = "12345678901234567890.123456789012345678901234567890"
TINY = "-0.000000000000000000000000000001"


@pytest.fixture(scope="module")
def awkward(server):
    res = server.query("SELECT * FROM reporting.awkward ORDER BY id")
    assert res["row_count"] == 4
    return {r["id"]: r for r in res["rows"]}


@pytest.fixture(scope="module")
def awkward_raw(server):
    r = server.rpc_raw("tools/call", {"name": "query", "arguments": {"sql": "SELECT * FROM reporting.awkward ORDER BY id"}})
    assert r.status == 200
    return r.text


def ts(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value)


def test_numeric_keeps_every_digit(awkward, awkward_raw, pg):
    assert isinstance(awkward[1]["num"], Decimal)
    assert str(awkward[1]["num"]) == HUGE
    assert pg.psql("SELECT num FROM reporting.awkward WHERE id = 1") == HUGE
    assert awkward[4]["num"] == Decimal(TINY)
    # the wire carries the digits themselves, not a float rendering
    assert HUGE in awkward_raw
    assert TINY in awkward_raw


def test_numeric_nan_and_infinity_are_strings(awkward, server):
    assert awkward[2]["num"] == "NaN"
    res = server.query("SELECT 'Infinity'::numeric AS p, '-Infinity'::numeric AS m")
    assert res["rows"] == [{"p": "Infinity", "m": "-Infinity"}]


def test_numeric_computed_result_is_exact(server, pg):
    res = server.query("SELECT 2::numeric ^ 200 AS big, 1::numeric / 3 AS third")
    assert str(res["rows"][0]["big"]) == pg.psql("SELECT 2::numeric ^ 200")
    assert str(res["rows"][0]["third"]) == pg.psql("SELECT 1::numeric / 3")


def test_int8_extremes_are_exact_numbers(awkward, awkward_raw):
    assert awkward[1]["big"] == 9223372036854775807 and type(awkward[1]["big"]) is int
    assert awkward[2]["big"] == -9223372036854775808 and type(awkward[2]["big"]) is int
    assert awkward[4]["big"] == 0
    assert "9223372036854775807" in awkward_raw and "-9223372036854775808" in awkward_raw


def test_integers_beyond_2_53_survive(server):
    res = server.query("SELECT 9007199254740993::bigint AS a, 9007199254740993::numeric AS b")
    assert res["rows"] == [{"a": 9007199254740993, "b": 9007199254740993}]


def test_floats_are_not_widened(server):
    # PostgreSQL prints real 1.1 as 1.1; a trip through f64 would give 1.100000023841858
    res = server.query("SELECT 1.1::real AS r, 0.1::float8 + 0.2::float8 AS d, 'NaN'::float8 AS nan, "
                       "'Infinity'::float8 AS inf, '-Infinity'::float4 AS ninf")
    row = res["rows"][0]
    assert row["r"] == Decimal("1.1")
    assert row["d"] == Decimal("0.30000000000000004")
    assert row["nan"] == "NaN" and row["inf"] == "Infinity" and row["ninf"] == "-Infinity"


def test_timestamps(awkward):
    assert awkward[1]["ts"] == "infinity"
    assert awkward[2]["ts"] == "-infinity"
    assert ts(awkward[4]["ts"]) == dt.datetime(2024, 1, 2, 3, 4, 5, 123456)
    assert ts(awkward[1]["tstz"]) == dt.datetime(2024, 3, 1, 12, 34, 56, 789000, tzinfo=dt.timezone.utc)
    assert ts(awkward[2]["tstz"]) == dt.datetime(1999, 12, 31, 23, 59, 59, 999999, tzinfo=dt.timezone.utc)
    assert ts(awkward[1]["tstz"]).tzinfo is not None, "timestamptz must carry its offset"


def test_timestamptz_is_rendered_in_utc(server):
    # the cluster's TimeZone is Africa/Nairobi (UTC+3); the server promises UTC to the model
    res = server.query("SELECT TIMESTAMPTZ '2024-03-01 15:00:00+03' AS at")
    value = res["rows"][0]["at"]
    assert ts(value) == dt.datetime(2024, 3, 1, 12, 0, tzinfo=dt.timezone.utc)
    assert value.endswith(("+00:00", "Z", "+00")), value


def test_infinite_timestamptz_and_date(server):
    res = server.query("SELECT 'infinity'::timestamptz AS a, '-infinity'::date AS b, 'infinity'::date AS c")
    assert res["rows"] == [{"a": "infinity", "b": "-infinity", "c": "infinity"}]


@pytest.mark.parametrize("row_id", [1, 2])
def test_interval_as_postgres_prints_it(awkward, pg, row_id):
    # either IntervalStyle is exact; what matters is that it is PostgreSQL's own rendering
    renderings = {pg.psql(f"SET IntervalStyle = {style}; SELECT dur FROM reporting.awkward WHERE id = {row_id}")
                  for style in ("postgres", "iso_8601")}
    assert awkward[row_id]["dur"] in renderings, (awkward[row_id]["dur"], renderings)


def test_uuid_inet_date_boolean(awkward):
    assert awkward[1]["uid"] == "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"
    assert awkward[2]["uid"] == "00000000-0000-0000-0000-000000000000"
    assert awkward[1]["addr"] == "192.168.0.1/24"
    assert awkward[2]["addr"] == "::1"
    assert awkward[1]["day"] == "2024-02-29"
    assert awkward[2]["day"] == "0001-01-01"
    assert awkward[1]["flag"] is True and awkward[2]["flag"] is False


def test_jsonb_is_json_not_a_string(awkward):
    doc = awkward[1]["doc"]
    assert doc == {"a": [1, 2, {"b": None}], "é": "ünïcødé 🚀", "n": Decimal("1.50"),
                   "big": 123456789012345678901234567890}
    assert str(doc["n"]) == "1.50"
    assert awkward[2]["doc"] == []
    assert awkward[4]["doc"] == "just a string"


def test_json_type_is_json_too(server):
    res = server.query("""SELECT '{"b": 1, "a": [true, null]}'::json AS j, 'null'::jsonb AS n""")
    assert res["rows"][0]["j"] == {"b": 1, "a": [True, None]}
    # a jsonb null and an SQL NULL both reach JSON as null
    assert res["rows"][0]["n"] is None


def test_arrays(awkward):
    assert awkward[1]["tags"] == ["x", None, 'with "quote"', "comma,inside"]
    assert awkward[1]["nums"] == [1, None, 3]
    assert awkward[2]["tags"] == []
    assert awkward[2]["nums"] == [[1, 2], [3, 4]]
    assert awkward[4]["tags"] == ["line1\nline2", "tab\there", "back\\slash"]


def test_bytea_is_hex_and_keeps_every_byte(awkward, pg):
    assert awkward[1]["blob"] == "\\x00ff10"
    assert awkward[1]["blob"] == pg.psql("SELECT blob FROM reporting.awkward WHERE id = 1")
    assert awkward[2]["blob"] == "\\x"
    assert awkward[4]["blob"] == "\\xdeadbeef"


def test_nulls(awkward):
    row = awkward[3]
    assert row["id"] == 3
    assert all(v is None for k, v in row.items() if k != "id"), row
    assert len(row) == 16


def test_unicode_text(awkward):
    assert awkward[1]["label"] == "café 🚀 שלום עולם"
    assert awkward[2]["label"] == ""
    assert awkward[4]["label"] == 'quote " backslash \\ newline \n end'


def test_column_named_drop(awkward):
    assert awkward[1]["drop"] == "drop me"


def test_unicode_and_quoted_column_names(server):
    res = server.query('SELECT 1 AS "naïve 🚀", 2 AS "Mixed Case", 3 AS "with ""quotes"""')
    assert res["rows"] == [{"naïve 🚀": 1, "Mixed Case": 2, 'with "quotes"': 3}]
    assert [c["name"] for c in res["columns"]] == ["naïve 🚀", "Mixed Case", 'with "quotes"']


def test_awkward_column_types_reported(server):
    res = server.query("SELECT * FROM reporting.awkward LIMIT 1")
    types = {c["name"]: c["type"].lower() for c in res["columns"]}
    assert "numeric" in types["num"]
    assert types["big"] in ("int8", "bigint")
    assert types["uid"] == "uuid" and types["jsonb" if "jsonb" in types else "doc"] == "jsonb"
    assert types["blob"] == "bytea" and types["addr"] == "inet"
    assert types["tags"] in ("_text", "text[]") and types["nums"] in ("_int4", "integer[]", "int4[]")


def test_sample_table_serialises_like_query(server, awkward):
    res = server.tool("sample_table", {"schema": "reporting", "table": "awkward", "n": 10})
    by_id = {r["id"]: r for r in res["rows"]}
    assert by_id == awkward
