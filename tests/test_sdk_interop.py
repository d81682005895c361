"""Interop with the official MCP Python SDK (mcp 2.x) over streamable HTTP with a bearer token.

``mode="auto"`` probes ``server/discover`` (2026-07-28) and falls back to ``initialize`` if the server
does not answer it; ``mode="legacy"`` forces the ``initialize`` handshake (2025-11-25). The SDK also
validates every result against the wire schema and every structuredContent against the tool's
outputSchema, so a passing call here means the shapes are right, not just present.
"""

from __future__ import annotations

import anyio
import pytest

mcp = pytest.importorskip("mcp")
from mcp import Client  # noqa: E402
from mcp.client.streamable_http import streamable_http_client  # noqa: E402
from mcp.shared._httpx_utils import create_mcp_http_client  # noqa: E402
from mcp.shared.exceptions import MCPError  # noqa: E402

TOOL_NAMES = {"query", "list_schemas", "list_tables", "describe_table", "list_functions", "sample_table",
              "explain", "profile_columns", "find_join_path", "search_objects", "list_databases"}
EXPECTED_VERSION = {"auto": "2026-07-28", "legacy": "2025-11-25"}


def run(coro_fn, *args):
    return anyio.run(coro_fn, *args)


def make_client(server, mode, token="alice", path="/mcp"):
    headers = {}
    if token is not None:
        headers["Authorization"] = f"Bearer {server.tokens[token] if token in server.tokens else token}"
    http = create_mcp_http_client(headers=headers)
    transport = streamable_http_client(f"http://127.0.0.1:{server.port}{path}", http_client=http,
                                       terminate_on_close=False)
    return Client(transport, mode=mode, raise_exceptions=True, cache=None), http


@pytest.mark.parametrize("mode", ["auto", "legacy"])
def test_sdk_connects_lists_and_calls_every_tool(server, mode):
    async def main():
        client, http = make_client(server, mode)
        async with http, client:
            assert client.protocol_version == EXPECTED_VERSION[mode]
            assert client.server_info is not None and client.server_info.name == "analytics-mcp"
            assert client.server_capabilities.tools is not None
            assert client.instructions

            listed = await client.list_tools()
            tools = {t.name: t for t in listed.tools}
            assert set(tools) == TOOL_NAMES
            for t in tools.values():
                assert t.annotations is not None and t.annotations.read_only_hint is True
                assert t.annotations.destructive_hint is False
                assert t.output_schema is not None

            res = await client.call_tool("query", {"sql": "SELECT plate FROM fleet.vehicles ORDER BY 1",
                                                   "max_rows": 2})
            assert not res.is_error
            sc = res.structured_content
            assert sc["row_count"] == 2 and sc["truncated"] is True
            assert sc["rows"] == [{"plate": "KAA 001A"}, {"plate": "KAB 002B"}]
            assert res.content[0].type == "text"

            sc = (await client.call_tool("list_schemas", {})).structured_content
            assert {"reporting", "fleet"} <= {s["schema"] for s in sc["schemas"]}

            sc = (await client.call_tool("list_tables", {"schema": "reporting"})).structured_content
            kinds = {t["name"]: t["kind"] for t in sc["tables"]}
            assert kinds["mv_daily_distance"] == "materialized view"

            sc = (await client.call_tool("describe_table", {"schema": "fleet", "table": "trips"})).structured_content
            assert sc["primary_key"] == ["trip_id", "leg"]

            sc = (await client.call_tool("list_functions", {})).structured_content
            assert "fn_trip_count" in {f["name"] for f in sc["functions"]}

            sc = (await client.call_tool("sample_table", {"schema": "reporting", "table": 'weird"name',
                                                          "n": 5})).structured_content
            assert sc["row_count"] == 2

            bad = await client.call_tool("query", {"sql": "DELETE FROM reporting.canary"})
            assert bad.is_error is True

            with pytest.raises(MCPError) as exc:
                await client.call_tool("no_such_tool", {})
            assert exc.value.error.code == -32602

    run(main)


@pytest.mark.parametrize("mode", ["auto", "legacy"])
def test_sdk_exact_values_survive(server, mode):
    async def main():
        client, http = make_client(server, mode)
        async with http, client:
            res = await client.call_tool("query", {"sql": "SELECT big, blob, tags FROM reporting.awkward "
                                                          "WHERE id = 1"})
            row = res.structured_content["rows"][0]
            assert row == {"big": 9223372036854775807, "blob": "\\x00ff10",
                           "tags": ["x", None, 'with "quote"', "comma,inside"]}

    run(main)


@pytest.mark.parametrize("mode", ["auto", "legacy"])
def test_sdk_on_bare_root_url(server, mode):
    async def main():
        client, http = make_client(server, mode, path="/")
        async with http, client:
            assert len((await client.list_tools()).tools) == len(TOOL_NAMES)

    run(main)


@pytest.mark.parametrize("mode", ["auto", "legacy"])
def test_sdk_without_token_fails_to_connect(server, mode):
    async def main():
        client, http = make_client(server, mode, token=None)
        async with http:
            with pytest.raises(Exception):
                async with client:
                    pass

    run(main)


def test_sdk_as_bob(server):
    async def main():
        client, http = make_client(server, "legacy", token="bob")
        async with http, client:
            res = await client.call_tool("query", {"sql": "SELECT 1 AS one"})
            assert res.structured_content["rows"] == [{"one": 1}]

    run(main)
