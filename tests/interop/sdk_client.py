#!/usr/bin/env python3
"""Drive analytics-mcp with the official Python MCP SDK (mcp 2.x) and call every tool.

Usage: sdk_client.py URL TOKEN MODE      (MODE: auto | legacy)
Expects the interop fixture schema `reporting` (tests/interop/fixture.sql).
Prints one line per check; exits 1 on the first failed expectation with what the
server returned, 2 if the client could not connect at all.
"""
import asyncio
import json
import sys
import traceback

from mcp.client.client import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp.shared.exceptions import MCPError

TOOLS = {"query", "list_schemas", "list_tables", "describe_table", "list_functions", "sample_table",
         "explain", "profile_columns", "find_join_path", "search_objects", "list_databases"}


class Fail(Exception):
    pass


def expect(cond, what, got=None):
    if not cond:
        raise Fail(f"{what}; got: {got!r}"[:4000])


def payload(res, tool):
    """structuredContent (checked against content[0].text) of a successful tool result."""
    expect(not res.is_error, f"{tool}: isError must be false", res.content)
    expect(res.content and res.content[0].type == "text", f"{tool}: content[0] must be text", res.content)
    text = json.loads(res.content[0].text)
    sc = res.structured_content
    expect(sc is not None, f"{tool}: structuredContent missing", res)
    expect(sc == text, f"{tool}: structuredContent must equal content[0].text", (sc, text))
    return sc, res.content[0].text


async def run(url, token, mode):
    headers = {"Authorization": f"Bearer {token}"}
    async with create_mcp_http_client(headers=headers) as http:
        async with Client(streamable_http_client(url, http_client=http), mode=mode) as c:
            sess = c.session
            print(f"ok: connected mode={mode} protocol_version={sess.protocol_version}")
            if mode == "legacy":
                await sess.send_ping()
                print("ok: ping")

            tools = await c.list_tools()
            names = {t.name for t in tools.tools}
            expect(names == TOOLS, "tools/list must return exactly the eleven tools", sorted(names))
            for t in tools.tools:
                expect(t.description, f"tool {t.name}: description must be non-empty", t)
                expect(t.input_schema.get("type") == "object", f"tool {t.name}: inputSchema.type", t.input_schema)
            print(f"ok: tools/list -> {sorted(names)}")

            # query: typed values, exact int8 and numeric, jsonb, arrays, timestamps
            sql = ("SELECT id, name, active, meta, tags, created_at, 9007199254740993::int8 AS big, "
                   "1.50::numeric AS num FROM reporting.vehicles ORDER BY id")
            sc, text = payload(await c.call_tool("query", {"sql": sql}), "query")
            expect(sc["row_count"] == 3 and len(sc["rows"]) == 3, "query: 3 rows", sc)
            expect(sc["truncated"] is False, "query: truncated false", sc)
            expect([col["name"] for col in sc["columns"]] ==
                   ["id", "name", "active", "meta", "tags", "created_at", "big", "num"], "query: column names", sc["columns"])
            r0 = sc["rows"][0]
            expect(r0["id"] == 1 and r0["name"] == "Van 1" and r0["active"] is True, "query: row 0 scalars", r0)
            expect(r0["meta"] == {"seats": 3, "ev": False}, "query: jsonb as JSON", r0)
            expect(r0["tags"] == ["north", "cold"], "query: text[] as JSON array", r0)
            expect(isinstance(r0["created_at"], str) and r0["created_at"].startswith("2024-01-01"), "query: timestamptz string", r0)
            expect(r0["big"] == 9007199254740993, "query: int8 exact", r0)
            expect("1.50" in text, "query: numeric exact in text (1.50)", text[:400])
            print("ok: tools/call query (typed values)")

            sc, _ = payload(await c.call_tool("query", {"sql": "SELECT g FROM generate_series(1,10) g", "max_rows": 2}), "query")
            expect(sc["row_count"] == 2 and sc["truncated"] is True and sc["truncated_reason"] == "max_rows",
                   "query max_rows=2: truncated", sc)
            print("ok: tools/call query max_rows truncation")

            res = await c.call_tool("query", {"sql": "DELETE FROM reporting.vehicles"})
            expect(res.is_error, "query DELETE must come back as isError:true", res)
            print(f"ok: tools/call query DELETE rejected: {res.content[0].text[:120]!r}")

            sc, _ = payload(await c.call_tool("list_schemas", {}), "list_schemas")
            schemas = {s["schema"]: s for s in sc["schemas"]}
            expect("reporting" in schemas, "list_schemas: reporting", sc)
            expect(schemas["reporting"]["tables"] == 2 and schemas["reporting"]["views"] == 1,
                   "list_schemas: reporting counts (2 tables, 1 view)", schemas["reporting"])
            print("ok: tools/call list_schemas")

            sc, _ = payload(await c.call_tool("list_tables", {"schema": "reporting"}), "list_tables")
            kinds = {t["name"]: t["kind"] for t in sc["tables"]}
            expect(kinds == {"vehicles": "table", "trips": "table", "active_vehicles": "view"}, "list_tables kinds", kinds)
            print("ok: tools/call list_tables")

            sc, _ = payload(await c.call_tool("describe_table", {"schema": "reporting", "table": "trips"}), "describe_table")
            expect(sc["primary_key"] == ["id"], "describe_table: primary_key", sc)
            fks = sc["foreign_keys"]
            expect(len(fks) == 1 and fks[0]["references"]["table"] == "vehicles" and fks[0]["columns"] == ["vehicle_id"],
                   "describe_table: foreign key to vehicles", fks)
            expect([col["name"] for col in sc["columns"]][:3] == ["id", "vehicle_id", "started_at"], "describe_table: columns", sc["columns"])
            expect(sc["comment"] == "One row per trip", "describe_table: comment", sc)
            print("ok: tools/call describe_table")

            sc, _ = payload(await c.call_tool("list_functions", {"schema": "reporting"}), "list_functions")
            fnames = [f["name"] for f in sc["functions"]]
            expect("trip_count" in fnames, "list_functions: trip_count", sc)
            sc2, _ = payload(await c.call_tool("list_functions", {}), "list_functions(default)")
            expect(sc2["schema"] == "reporting", "list_functions default schema is reporting", sc2)
            print("ok: tools/call list_functions")

            sc, _ = payload(await c.call_tool("sample_table", {"schema": "reporting", "table": "vehicles", "n": 2}), "sample_table")
            expect(sc["row_count"] == 2 and len(sc["rows"]) == 2, "sample_table n=2", sc)
            print("ok: tools/call sample_table")

            try:
                res = await c.call_tool("no_such_tool", {})
            except MCPError as e:
                expect(e.code == -32602, "unknown tool: JSON-RPC -32602", (e.code, str(e)))
            else:
                raise Fail(f"unknown tool must be a JSON-RPC error -32602; got result {res!r}")
            print("ok: unknown tool -> -32602")

    # a wrong token must not connect
    async with create_mcp_http_client(headers={"Authorization": "Bearer wrong-token"}) as http:
        try:
            async with Client(streamable_http_client(url, http_client=http), mode=mode) as c:
                await c.list_tools()
        except Exception as e:  # noqa: BLE001 - any refusal is fine, it must not succeed
            print(f"ok: wrong token refused ({type(e).__name__})")
        else:
            raise Fail("a wrong bearer token must be refused")


def main():
    url, token, mode = sys.argv[1], sys.argv[2], sys.argv[3]
    try:
        asyncio.run(run(url, token, mode))
    except Fail as e:
        print(f"FAIL: {e}")
        sys.exit(1)
    except BaseException:  # noqa: BLE001
        traceback.print_exc()
        sys.exit(2)
    print("all ok")


if __name__ == "__main__":
    main()
