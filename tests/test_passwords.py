"""Database passwords out of the environment: MCP_DATABASE_PASSWORD_FILE and libpq's
PGPASSFILE/~/.pgpass. Tested as an operator would notice, and as an attacker would look for the
password: in log lines, errors, /readyz, /metrics and --help, it never appears."""

from __future__ import annotations

import secrets

from conftest import DB_NAME, RO_ROLE, free_port, run_binary


def dsn_without_password(pg) -> str:
    return f"postgresql://{RO_ROLE}@127.0.0.1:{pg.port}/{DB_NAME}"


def assert_nowhere(srv, secret: str) -> None:
    assert secret not in srv.stderr_text()
    assert secret not in srv.get("/metrics").text
    assert secret not in srv.get("/readyz", headers=srv.auth_headers()).text


def test_password_file_with_trailing_newline(pg, start_server, tmp_path):
    secret_file = tmp_path / "db-password"
    secret_file.write_text(pg.ro_password + "\n")  # as `kubectl create secret` and editors leave it
    srv = start_server(DATABASE_URL=dsn_without_password(pg), MCP_DATABASE_PASSWORD_FILE=str(secret_file))
    assert srv.query("SELECT current_user AS me")["rows"] == [{"me": RO_ROLE}]
    assert_nowhere(srv, pg.ro_password)


def test_wrong_password_file_says_where_the_password_came_from_but_not_what_it_is(pg, start_server, tmp_path):
    wrong = "wrong-" + secrets.token_hex(8)
    secret_file = tmp_path / "db-password"
    secret_file.write_text(wrong)
    srv = start_server(DATABASE_URL=dsn_without_password(pg), MCP_DATABASE_PASSWORD_FILE=str(secret_file))
    error = srv.tool_error("query", {"sql": "SELECT 1"})
    assert "password authentication failed" in error and f"MCP_DATABASE_PASSWORD_FILE ({secret_file})" in error
    assert srv.get("/readyz").json()["reason"] == "authentication_failed"
    assert wrong not in error
    assert_nowhere(srv, wrong)
    # the file is read at each connect: fixing it (a rotated Kubernetes secret) heals the server
    secret_file.write_text(pg.ro_password)
    assert srv.query("SELECT 1 AS one")["rows"] == [{"one": 1}]


def test_password_file_problems_stop_start_up(pg, tmp_path):
    empty = tmp_path / "empty"
    empty.write_text("\n")
    for path, needle in ((tmp_path / "missing", "cannot read MCP_DATABASE_PASSWORD_FILE"), (empty, "is empty")):
        r = run_binary([], env={"DATABASE_URL": dsn_without_password(pg), "MCP_DATABASE_PASSWORD_FILE": str(path),
                                "MCP_PORT": str(free_port())})
        assert r.returncode == 2 and needle in r.stderr, r.stderr
    # two sources of one password: refused rather than guessed
    secret_file = tmp_path / "pw"
    secret_file.write_text(pg.ro_password)
    r = run_binary([], env={"DATABASE_URL": pg.ro_dsn, "MCP_DATABASE_PASSWORD_FILE": str(secret_file),
                            "MCP_PORT": str(free_port())})
    assert r.returncode == 2 and "keep one" in r.stderr, r.stderr
    assert pg.ro_password not in r.stderr


def test_pgpass_file(pg, start_server, tmp_path):
    pgpass = tmp_path / "pgpass"
    pgpass.write_text(
        "# host:port:database:user:password\n"
        f"otherhost:*:*:*:not-this-one\n"
        f"127.0.0.1:{pg.port}:{DB_NAME}:{RO_ROLE}:{pg.ro_password.replace(':', chr(92) + ':')}\n")
    pgpass.chmod(0o600)
    srv = start_server(DATABASE_URL=dsn_without_password(pg), PGPASSFILE=str(pgpass))
    assert srv.query("SELECT current_user AS me")["rows"] == [{"me": RO_ROLE}]
    assert_nowhere(srv, pg.ro_password)


def test_home_pgpass_with_wildcards(pg, start_server, tmp_path):
    (tmp_path / ".pgpass").write_text(f"*:*:*:{RO_ROLE}:{pg.ro_password}\n")
    (tmp_path / ".pgpass").chmod(0o600)
    srv = start_server(DATABASE_URL=dsn_without_password(pg), HOME=str(tmp_path))
    assert srv.query("SELECT 1 AS one")["rows"] == [{"one": 1}]


def test_pgpass_readable_by_others_is_ignored_with_a_warning(pg, start_server, tmp_path):
    pgpass = tmp_path / "pgpass"
    pgpass.write_text(f"*:*:*:*:{pg.ro_password}\n")
    pgpass.chmod(0o644)
    srv = start_server(DATABASE_URL=dsn_without_password(pg), PGPASSFILE=str(pgpass))
    srv.wait_for_stderr(lambda t: "has group or world access" in t, "the pgpass warning")
    error = srv.tool_error("query", {"sql": "SELECT 1"})
    assert "password" in error, error  # libpq ignores such a file, so no password was sent
    assert_nowhere(srv, pg.ro_password)


def test_help_and_start_up_errors_never_show_the_password(pg, tmp_path):
    secret_file = tmp_path / "pw"
    secret_file.write_text(pg.ro_password)
    env = {"DATABASE_URL": pg.ro_dsn, "MCP_DATABASE_PASSWORD_FILE": str(secret_file)}
    r = run_binary(["--help"], env=env)
    assert r.returncode == 0 and "MCP_DATABASE_PASSWORD_FILE" in r.stdout and "PGPASSFILE" in r.stdout
    assert pg.ro_password not in r.stdout + r.stderr
    r = run_binary([], env={**env, "MCP_PORT": "not-a-port"})
    assert r.returncode == 2 and pg.ro_password not in r.stdout + r.stderr
