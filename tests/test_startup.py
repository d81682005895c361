"""Start-up, configuration errors, --help/--version and the small subcommands."""

from __future__ import annotations

import re
import subprocess

import pytest

from conftest import REPO, binary_path, clean_env, free_port, run_binary, stop_process, wait_until

ISSUE_VARS = {
    "DATABASE_URL": None,
    "MCP_AUTH_TOKENS": None,
    "MCP_HOST": "127.0.0.1",
    "MCP_PORT": "8892",
    "MCP_MAX_ROWS": "10000",
    "MCP_POOL_MAX": "8",
    "MCP_READABLE_SCHEMAS": None,
    "MCP_STATEMENT_TIMEOUT_MS": "30000",
    "MCP_DNS_REBINDING_PROTECTION": None,
    "MCP_ALLOWED_HOSTS": None,
    "MCP_ALLOWED_ORIGINS": None,
}
CONTRACT_VARS = ["MCP_AUTH_TOKENS_FILE", "MCP_POOL_IDLE_S", "MCP_POOL_WAIT_MS", "MCP_MAX_CONNECTIONS",
                 "MCP_MAX_RESULT_BYTES", "MCP_ALLOW_PRIVILEGED_ROLE", "MCP_SHUTDOWN_GRACE_S", "MCP_LOG_FORMAT",
                 "MCP_MAX_BATCH", "MCP_MAX_INFLIGHT_PER_CALLER", "MCP_RATE_PER_CALLER"]


def cargo_version() -> str:
    m = re.search(r'^version\s*=\s*"([^"]+)"', (REPO / "Cargo.toml").read_text(), re.M)
    assert m
    return m.group(1)


def nonempty_lines(s: str) -> list[str]:
    return [line for line in s.splitlines() if line.strip()]


def test_help_lists_every_variable_with_defaults(binary):
    r = run_binary(["--help"])
    assert r.returncode == 0, r.stderr
    out = r.stdout
    for var, default in ISSUE_VARS.items():
        assert var in out, f"--help does not mention {var}"
        if default:
            line = next(ln for ln in out.splitlines() if re.match(rf"\s*{var}\b", ln))
            block = out[out.index(line):out.index(line) + 400]
            assert default in block, f"--help does not show the default {default} of {var}"
    for var in CONTRACT_VARS:
        assert var in out, f"--help does not mention {var}"


def test_version(binary):
    r = run_binary(["--version"])
    assert r.returncode == 0
    assert cargo_version() in r.stdout
    assert "analytics-mcp" in r.stdout
    assert len(nonempty_lines(r.stdout)) == 1


def test_refuses_public_bind_without_tokens(binary, pg):
    r = run_binary([], {"DATABASE_URL": pg.ro_dsn, "MCP_HOST": "0.0.0.0", "MCP_PORT": str(free_port())})
    assert r.returncode != 0
    lines = nonempty_lines(r.stderr)
    assert len(lines) == 1, r.stderr
    assert "MCP_AUTH_TOKENS" in lines[0]
    assert pg.ro_password not in r.stderr + r.stdout


@pytest.mark.parametrize("var,value", [
    ("MCP_PORT", "abc"),
    ("MCP_PORT", "70000"),
    ("MCP_PORT", "-1"),
    ("MCP_MAX_ROWS", "lots"),
    ("MCP_MAX_ROWS", "-5"),
    ("MCP_POOL_MAX", "x"),
    ("MCP_STATEMENT_TIMEOUT_MS", "30s"),
    ("MCP_DNS_REBINDING_PROTECTION", "maybe"),
    ("MCP_AUTH_TOKENS", "alice"),
    ("MCP_AUTH_TOKENS", "alice:"),
    ("MCP_AUTH_TOKENS", ":tok-without-name"),
    ("MCP_LOG_FORMAT", "xml"),
    ("MCP_MAX_BATCH", "0"),
    ("MCP_MAX_BATCH", "many"),
    ("MCP_MAX_INFLIGHT_PER_CALLER", "0"),
    ("MCP_RATE_PER_CALLER", "10/min"),
])
def test_invalid_setting_stops_startup_naming_the_variable(binary, pg, var, value):
    env = {"DATABASE_URL": pg.ro_dsn, "MCP_HOST": "127.0.0.1", "MCP_PORT": str(free_port()),
           "MCP_AUTH_TOKENS": "alice:tok-startup-secret", var: value}
    r = run_binary([], env)
    assert r.returncode != 0
    lines = nonempty_lines(r.stderr)
    assert len(lines) == 1, r.stderr
    assert var in lines[0]
    assert "tok-startup-secret" not in r.stderr
    assert pg.ro_password not in r.stderr


def test_exit_code_for_invalid_config_is_2(binary, pg):
    r = run_binary([], {"DATABASE_URL": pg.ro_dsn, "MCP_PORT": "abc"})
    assert r.returncode == 2


def test_missing_database_url_is_named(binary):
    r = run_binary([], {"MCP_PORT": str(free_port())})
    assert r.returncode != 0
    lines = nonempty_lines(r.stderr)
    assert len(lines) == 1 and "DATABASE_URL" in lines[0], r.stderr


def test_invalid_token_is_not_echoed(binary, pg):
    r = run_binary([], {"DATABASE_URL": pg.ro_dsn, "MCP_AUTH_TOKENS": "alice:good-secret-1,bob"})
    assert r.returncode != 0
    assert "good-secret-1" not in r.stderr + r.stdout


def test_sigterm_stops_the_server_cleanly(server_factory):
    srv = server_factory()
    assert srv.get("/healthz").status == 200
    stop_process(srv.proc)
    assert srv.proc.returncode == 0, srv.stderr_text()


def test_sigterm_lets_an_in_flight_query_finish(server_factory, pg):
    import signal
    import threading
    srv = server_factory()
    marker = "drain_" + __import__("secrets").token_hex(6)
    result = {}

    def call():
        result["res"] = srv.query(f"SELECT pg_sleep(1.5) IS NULL AS slept, '{marker}' AS m")

    t = threading.Thread(target=call)
    t.start()
    # wait until PostgreSQL is actually running it, then ask the server to stop
    wait_until(lambda: pg.psql("SELECT count(*) FROM pg_stat_activity WHERE query LIKE "
                               f"'%{marker}%' AND pid <> pg_backend_pid()") != "0",
               30, "the query to be running")
    srv.proc.send_signal(signal.SIGTERM)
    t.join(timeout=60)
    assert not t.is_alive()
    assert result["res"]["rows"] == [{"slept": False, "m": marker}]
    srv.proc.wait(timeout=60)
    assert srv.proc.returncode == 0


def test_healthcheck_subcommand(server, binary):
    ok = run_binary(["healthcheck"], {"MCP_HOST": "127.0.0.1", "MCP_PORT": str(server.port),
                                      "DATABASE_URL": "postgresql://unused@127.0.0.1:1/x"})
    assert ok.returncode == 0, ok.stderr
    down = run_binary(["healthcheck"], {"MCP_HOST": "127.0.0.1", "MCP_PORT": str(free_port()),
                                        "DATABASE_URL": "postgresql://unused@127.0.0.1:1/x"})
    assert down.returncode == 1


@pytest.mark.parametrize("sql,allowed", [
    ("SELECT 1", True),
    ("WITH x AS (SELECT 1) SELECT * FROM x", True),
    ("SELECT 'please delete' AS note", True),
    ("SELECT 1; DROP TABLE x", False),
    ("DELETE FROM x", False),
    ("WITH d AS (DELETE FROM x RETURNING *) SELECT * FROM d", False),
])
def test_check_sql_subcommand(binary, sql, allowed):
    r = run_binary(["check-sql", sql])
    if allowed:
        assert r.returncode == 0 and r.stdout.strip() == "ALLOW", (r.stdout, r.stderr)
    else:
        assert r.returncode == 1 and r.stdout.strip().startswith("REJECT:"), (r.stdout, r.stderr)


def test_starts_while_database_is_down_and_reports_it(start_server, pg):
    dead = f"postgresql://mcp_ro:{pg.ro_password}@127.0.0.1:{free_port()}/analytics_test"
    srv = start_server(DATABASE_URL=dead, MCP_POOL_WAIT_MS="2000")
    assert srv.get("/healthz").json() == {"ok": True}
    r = srv.get("/readyz")
    # without a token: a reason code only, no host names or addresses
    assert r.status == 503 and r.json() == {"ok": False, "database": "down", "reason": "unreachable"}
    # with a token: the operator's message too
    r = srv.get("/readyz", headers=srv.auth_headers())
    assert r.status == 503 and r.json()["reason"] == "unreachable"
    assert "error connecting to server" in r.json()["error"] and pg.ro_password not in r.text
    text = srv.tool_error("query", {"sql": "SELECT 1"})
    assert pg.ro_password not in text
    assert pg.ro_password not in srv.stderr_text()


def test_readyz_and_metrics(server):
    r = server.get("/readyz")
    assert r.status == 200 and r.json() == {"ok": True, "database": "up"}
    m = server.get("/metrics")
    assert m.status == 200
    assert m.headers.get("Content-Type", "").startswith("text/plain")
    for tok in server.tokens.values():
        assert tok not in m.text


def test_refuses_superuser_database_role(binary, pg, start_server):
    # the server must not run with a role that can write; the superuser DSN is refused at start
    dsn = f"host={pg.sockdir} port={pg.port} user=postgres dbname=analytics_test"
    port = free_port()
    proc = subprocess.Popen([str(binary_path())], env=clean_env({
        "DATABASE_URL": dsn, "MCP_PORT": str(port), "MCP_AUTH_TOKENS": "alice:x"}),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        try:
            _, err = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            stop_process(proc)
            pytest.fail("server started with a superuser role")
        assert proc.returncode != 0
        assert "MCP_ALLOW_PRIVILEGED_ROLE" in err or "superuser" in err.lower() or "privileged" in err.lower()
    finally:
        stop_process(proc)
