"""Schemas of any size: the catalog tools stay correct and bounded on a schema of thousands of tables
and a table of 1,600 columns — answers are paged with a cursor (never cut mid-JSON, never over the
result budget), and a call runs the same few statements whatever the size (no query per table).

The database is built once per session in its own database (analytics_scale), so the shared fixture
stays small: 2,000 commented tables (about 210 KB of list_tables at the default 150 KB budget, so two
pages), a 1,600-column table with a comment on every column, and a chain of eight foreign keys.
bench/run.sh measures the same tools on 20,000 tables."""

from __future__ import annotations

import json

import pytest

SCALE_DB = "analytics_scale"
TABLES = 2000
COLUMNS = 1600
BUDGET = 150_000
CHAIN = 8

SCALE_SQL = f"""
CREATE SCHEMA wide;
COMMENT ON SCHEMA wide IS 'Generated for the scale tests';
DO $$
BEGIN
  FOR i IN 1..{TABLES} LOOP
    EXECUTE format('CREATE TABLE wide.%I (id integer, amount integer, day date)', 't_' || lpad(i::text, 5, '0'));
    EXECUTE format('COMMENT ON TABLE wide.%I IS %L', 't_' || lpad(i::text, 5, '0'),
                   'Generated table number ' || i || ' of the scale tests');
    IF i % 500 = 0 THEN COMMIT; END IF;
  END LOOP;
END
$$;
DO $$
BEGIN
  EXECUTE 'CREATE TABLE wide.very_wide (' || (SELECT string_agg(format('column_%s integer', lpad(i::text, 4, '0')), ', ')
                                              FROM generate_series(1, {COLUMNS}) i) || ')';
  FOR i IN 1..{COLUMNS} LOOP
    EXECUTE format('COMMENT ON COLUMN wide.very_wide.%I IS %L', 'column_' || lpad(i::text, 4, '0'),
                   'Generated column ' || i || ' of the widest table PostgreSQL allows');
  END LOOP;
  FOR i IN 1..{CHAIN} LOOP
    EXECUTE format('CREATE TABLE wide.link_%s (id integer PRIMARY KEY, previous_id integer %s)', i,
                   CASE WHEN i > 1 THEN format('REFERENCES wide.link_%s', i - 1) ELSE '' END);
  END LOOP;
END
$$;
INSERT INTO wide.very_wide (column_0001, column_0002) SELECT g, g % 10 FROM generate_series(1, 100) AS g;
ANALYZE wide.very_wide;
GRANT USAGE ON SCHEMA wide TO mcp_ro;
GRANT SELECT ON ALL TABLES IN SCHEMA wide TO mcp_ro;
REVOKE ALL ON SCHEMA public FROM PUBLIC;
CREATE SCHEMA stats;
CREATE EXTENSION pg_stat_statements SCHEMA stats;
"""


@pytest.fixture(scope="module")
def scale(pg, server_factory):
    pg.psql(f"CREATE DATABASE {SCALE_DB}", db="postgres")
    pg.psql(SCALE_SQL, db=SCALE_DB)
    return server_factory(DATABASE_URL=pg.ro_dsn.rsplit("/", 1)[0] + "/" + SCALE_DB)


def compact_size(result: dict) -> int:
    return len(json.dumps(result, separators=(",", ":"), ensure_ascii=False, default=str).encode())


def walk(server, tool: str, args: dict, key: str) -> tuple[list, list[dict]]:
    """Follows next_cursor to the end: (every item, every page)."""
    items, pages, cursor = [], [], None
    while True:
        page = server.tool(tool, {**args, **({"cursor": cursor} if cursor else {})})
        pages.append(page)
        items += page[key]
        cursor = page["next_cursor"]
        assert (cursor is None) == (page["truncated"] is False), page["truncated_reason"]
        if cursor is None:
            return items, pages
        assert len(pages) < 100, "paging does not end"


def test_list_tables_of_a_big_schema_comes_in_pages_within_the_budget(scale):
    tables, pages = walk(scale, "list_tables", {"schema": "wide"}, "tables")
    names = [t["name"] for t in tables]
    expected = sorted([f"t_{i:05d}" for i in range(1, TABLES + 1)] + ["very_wide"] +
                      [f"link_{i}" for i in range(1, CHAIN + 1)])
    assert names == expected  # every table once, in order, none lost between pages
    assert len(pages) == 2
    for page in pages[:-1]:
        assert page["truncated_reason"] == "max_bytes"
        assert BUDGET * 0.9 < compact_size(page) <= BUDGET
    assert tables[names.index("t_00001")]["comment"] == "Generated table number 1 of the scale tests"


def test_describe_table_of_1600_columns_comes_in_pages(scale):
    columns, pages = walk(scale, "describe_table", {"schema": "wide", "table": "very_wide"}, "columns")
    assert [c["name"] for c in columns] == [f"column_{i:04d}" for i in range(1, COLUMNS + 1)]
    assert len(pages) == 2 and all(compact_size(p) <= BUDGET for p in pages)
    for page in pages:  # every page is a whole answer
        assert page["schema"] == "wide" and page["table"] == "very_wide" and page["primary_key"] == []
    assert columns[-1]["comment"] == "Generated column 1600 of the widest table PostgreSQL allows"


def test_profile_of_1600_columns_comes_in_pages(scale):
    columns, pages = walk(scale, "profile_columns", {"schema": "wide", "table": "very_wide"}, "columns")
    assert [c["name"] for c in columns] == [f"column_{i:04d}" for i in range(1, COLUMNS + 1)]
    assert {p["truncated_reason"] for p in pages[:-1]} == {"max_columns"} and len(pages) == COLUMNS // 200
    first, second, empty = columns[0], columns[1], columns[2]
    assert (first["min"], first["max"], first["estimated_distinct"]) == (1, 100, 100)
    assert len(second["most_common"]) == 5 and {v["value"] for v in second["most_common"]} <= set(range(10))
    assert second["estimated_distinct"] == 10
    assert empty["statistics"] is True and empty["null_fraction"] == 1 and empty["min"] is None


def test_profile_sample_of_a_wide_table_stays_bounded(scale):
    page = scale.tool("profile_columns", {"schema": "wide", "table": "very_wide", "sample": True})
    assert page["sample"]["rows"] == 100 and len(page["columns"]) == 200 and compact_size(page) <= BUDGET
    assert page["columns"][0]["sample"]["distinct"] == 100


def test_search_in_a_big_schema(scale):
    res = scale.tool("search_objects", {"query": "t_01999"})
    assert res["hits"][0]["qualified_name"] == "wide.t_01999" and res["hits"][0]["match"] == "exact"
    res = scale.tool("search_objects", {"query": "table number 1234"})
    assert [h["name"] for h in res["hits"] if h["match"] == "comment"] == ["t_01234"]
    res = scale.tool("search_objects", {"query": "t_019", "kinds": ["table"], "limit": 100})
    assert [h["name"] for h in res["hits"]] == [f"t_{i:05d}" for i in range(1900, 2000)]
    assert {h["match"] for h in res["hits"]} == {"prefix"} and res["truncated_reason"] == "limit"
    assert res["total_matches"] > 100  # then the other names holding "019": t_00019, t_00190, …
    more = scale.tool("search_objects", {"query": "t_019", "kinds": ["table"], "limit": 100,
                                         "cursor": res["next_cursor"]})
    assert more["hits"][0]["match"] == "substring" and more["hits"][0]["name"] == "t_00019"


def test_list_schemas_with_a_big_schema(scale):
    res = scale.tool("list_schemas", {})
    [wide] = [s for s in res["schemas"] if s["schema"] == "wide"]
    assert wide["tables"] == TABLES + 1 + CHAIN and wide["comment"] == "Generated for the scale tests"
    assert "stats" not in {s["schema"] for s in res["schemas"]}


def test_join_path_along_a_long_chain(scale):
    res = scale.tool("find_join_path", {"from": "wide.link_1", "to": "wide.link_7", "max_hops": 6})
    [path] = res["paths"]
    assert path["hops"] == 6 and path["join"].startswith("FROM wide.link_1 JOIN wide.link_2 ON link_2.previous_id = link_1.id")
    assert {s["cardinality"] for s in path["steps"]} == {"one-to-many"}
    assert scale.query(f"SELECT count(*) AS n {path['join']}")["rows"] == [{"n": 0}]
    res = scale.tool("find_join_path", {"from": "wide.link_1", "to": "wide.link_8", "max_hops": 9})
    assert res["max_hops"] == 6 and res["paths"] == [] and "at most 6 hops" in res["note"]


@pytest.mark.parametrize("tool,args", [
    ("list_tables", {"schema": "wide"}),
    ("list_schemas", {}),
    ("describe_table", {"schema": "wide", "table": "very_wide"}),
    ("profile_columns", {"schema": "wide", "table": "very_wide"}),
    ("profile_columns", {"schema": "wide", "table": "very_wide", "sample": True}),
    ("search_objects", {"query": "generated column"}),
    ("find_join_path", {"from": "wide.link_1", "to": "wide.link_5"}),
])
def test_a_call_runs_a_few_statements_whatever_the_size(scale, pg, tool, args):
    """Counted by pg_stat_statements: the transaction's own statements plus at most three of the
    tool's, for 2,000 tables or 1,600 columns alike."""
    pg.psql("SELECT stats.pg_stat_statements_reset()", db=SCALE_DB)
    scale.tool(tool, args)
    statements = int(pg.psql(
        "SELECT coalesce(sum(calls), 0) FROM stats.pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid "
        f"WHERE d.datname = '{SCALE_DB}' AND s.userid = 'mcp_ro'::regrole AND s.query !~* 'pg_stat_statements_reset'",
        db=SCALE_DB))
    assert 3 <= statements <= 8, statements
