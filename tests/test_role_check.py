"""The start-up privilege self-check: a role that could write or act outside the database is
refused (exit 3, a message naming what is wrong) unless MCP_ALLOW_PRIVILEGED_ROLE=1, which serves
with a loud warning."""

from __future__ import annotations

import subprocess

import pytest

from conftest import DB_NAME, binary_path, clean_env, free_port, stop_process

PASSWORD = "role-check-pw-0123456789"


@pytest.fixture(scope="module")
def risky_roles(pg):
    """Two login roles that must be refused: one can INSERT into a table, one can signal backends."""
    pg.psql(f"""
        DROP TABLE IF EXISTS public.role_check_target;
        CREATE TABLE public.role_check_target (x int);
        DO $$ BEGIN
          IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'role_check_writer') THEN
            DROP OWNED BY role_check_writer;
          END IF;
        END $$;
        DROP ROLE IF EXISTS role_check_writer;
        DROP ROLE IF EXISTS role_check_signaller;
        CREATE ROLE role_check_writer LOGIN PASSWORD '{PASSWORD}';
        CREATE ROLE role_check_signaller LOGIN PASSWORD '{PASSWORD}';
        GRANT CONNECT ON DATABASE {DB_NAME} TO role_check_writer, role_check_signaller;
        GRANT USAGE ON SCHEMA public TO role_check_writer;
        GRANT SELECT, INSERT ON public.role_check_target TO role_check_writer;
        GRANT pg_signal_backend TO role_check_signaller;
    """)
    yield {"writer": "role_check_writer", "signaller": "role_check_signaller"}
    pg.psql("""
        DROP TABLE IF EXISTS public.role_check_target;
        DROP OWNED BY role_check_writer, role_check_signaller;
        DROP ROLE IF EXISTS role_check_writer;
        DROP ROLE IF EXISTS role_check_signaller;
    """)


def dsn(pg, role: str) -> str:
    return f"postgresql://{role}:{PASSWORD}@127.0.0.1:{pg.port}/{DB_NAME}"


def run_until_exit(env: dict[str, str]) -> subprocess.CompletedProcess:
    proc = subprocess.Popen([str(binary_path())], env=clean_env(env), stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        stop_process(proc)
        pytest.fail("the server kept serving with a role that can write")
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


@pytest.mark.parametrize("kind,expected", [("writer", "can write public.role_check_target"),
                                           ("signaller", "member of pg_signal_backend")])
def test_role_that_can_write_or_signal_is_refused(pg, risky_roles, kind, expected):
    done = run_until_exit({"DATABASE_URL": dsn(pg, risky_roles[kind]), "MCP_PORT": str(free_port()),
                           "MCP_AUTH_TOKENS": "alice:x"})
    assert done.returncode == 3, done.stderr
    assert "refusing to serve" in done.stderr and expected in done.stderr, done.stderr
    assert "MCP_ALLOW_PRIVILEGED_ROLE" in done.stderr
    assert PASSWORD not in done.stderr


def test_override_serves_with_a_loud_warning(pg, risky_roles, start_server):
    srv = start_server(DATABASE_URL=dsn(pg, risky_roles["writer"]), MCP_ALLOW_PRIVILEGED_ROLE="1")
    assert srv.query("SELECT 1 AS one")["rows"] == [{"one": 1}]
    warning = srv.wait_for_stderr(lambda t: "MCP_ALLOW_PRIVILEGED_ROLE=1" in t, "the privileged-role warning")
    assert "can write public.role_check_target" in warning
    # the server still never writes: the transaction is read-only whatever the role may do
    text = srv.tool_error("query", {"sql": "SELECT count(*) FROM public.role_check_target FOR SHARE"})
    assert "row locks" in text
