"""The tamper-evident audit log (MCP_AUDIT_LOG): one HMAC-chained JSON line per tool call, written
before the answer, continued across restarts and rotation, and `verify-audit` naming the first
line where a real log the server wrote was edited, cut, reordered or thinned out."""

from __future__ import annotations

import hashlib
import json
import os
import resource
import secrets
import shutil
import signal
from pathlib import Path

import pytest

from conftest import free_port, run_binary, stop_process, wait_until


def make_key(directory: Path, name: str = "audit.key") -> Path:
    key = directory / name
    key.write_text(secrets.token_urlsafe(32) + "\n")
    key.chmod(0o600)
    return key


def read_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def verify(key: Path, *files: Path, expect: str | None = None):
    args = ["verify-audit", "--key-file", str(key)]
    if expect:
        args += ["--expect", expect]
    return run_binary(args + [str(f) for f in files])


def wait_for_lines(path: Path, count: int) -> list[dict]:
    return wait_until(lambda: (lambda ls: ls if len(ls) >= count else None)(read_lines(path)),
                      10, f"{count} lines in {path}")


@pytest.fixture(scope="module")
def audit_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("audit")


@pytest.fixture(scope="module")
def logged(server_factory, audit_dir):
    """A server with an audit log, and a log it wrote: five calls of different kinds."""
    key = make_key(audit_dir)
    log = audit_dir / "audit.log"
    srv = server_factory(MCP_AUDIT_LOG=str(log), MCP_AUDIT_KEY_FILE=str(key), MCP_AUDIT_MAX_SQL_BYTES="8192")
    srv.query("SELECT i FROM generate_series(1, 3) AS i")
    srv.tool("list_tables", {"schema": "reporting"})
    srv.tool_error("query", {"sql": "SELECT 1/0"}, caller="bob")
    srv.tool_error("query", {"sql": "DELETE FROM reporting.canary"})
    srv.tool("sample_table", {"schema": "fleet", "table": "vehicles", "n": 2})
    wait_for_lines(log, 6)
    return srv, log, key


def test_each_call_is_one_chained_line_with_who_what_and_how(logged):
    srv, log, key = logged
    lines = read_lines(log)
    start, calls = lines[0], lines[1:6]
    assert start["event"] == "start" and start["seq"] == 1 and start["prev"] == "0" * 64
    assert [c["tool"] for c in calls] == ["query", "list_tables", "query", "query", "sample_table"]
    first = calls[0]
    for field in ("ts", "caller", "via", "tool", "status", "rows", "ms", "sql", "sql_sha256", "prev", "tag"):
        assert field in first, (field, first)
    assert (first["caller"], first["via"], first["status"], first["rows"]) == ("alice", "bearer", "ok", 3)
    assert first["sql"] == "SELECT i FROM generate_series(1, 3) AS i"
    assert first["sql_sha256"] == hashlib.sha256(first["sql"].encode()).hexdigest()
    assert calls[1]["args"] == {"schema": "reporting"} and "sql" not in calls[1]
    assert (calls[2]["caller"], calls[2]["status"]) == ("bob", "db_error")
    assert calls[3]["status"] == "rejected"
    assert (calls[4]["sql"], calls[4]["rows"]) == ("SELECT * FROM fleet.vehicles", 2)
    # the chain: every line names the tag of the one before it, seq counts up by one
    for before, after in zip(lines, lines[1:]):
        assert after["prev"] == before["tag"] and after["seq"] == before["seq"] + 1
    done = verify(key, log)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith("OK:"), done.stdout


def test_stderr_line_is_the_witness_of_the_file_line(logged):
    srv, log, _ = logged
    marker = "witness_" + secrets.token_hex(4)
    srv.query(f"SELECT 1 -- {marker}")
    line = next(l for l in read_lines(log) if marker in l.get("sql", ""))
    text = srv.wait_for_stderr(lambda t: marker in t, "the stderr audit line")
    stderr_line = next(l for l in text.splitlines() if marker in l)
    assert f"audit_seq={line['seq']}" in stderr_line, stderr_line
    assert f"audit_tag={line['tag'][:16]}" in stderr_line, stderr_line


def test_sql_kept_in_full_up_to_the_limit_and_hashed_whole(logged):
    srv, log, _ = logged
    marker = secrets.token_hex(4)
    medium = f"SELECT 1 AS m -- {marker} " + "x" * 5000
    huge = f"SELECT 2 AS h -- {marker} " + "y" * 20_000  # over MCP_AUDIT_MAX_SQL_BYTES
    srv.query(medium)
    srv.query(huge)
    lines = [l for l in read_lines(log) if marker in l.get("sql", "")]
    assert len(lines) == 2
    kept, cut = lines
    assert kept["sql"] == medium and kept["sql_cut"] is False and kept["sql_bytes"] == len(medium)
    assert cut["sql_cut"] is True and cut["sql_bytes"] == len(huge) and len(cut["sql"]) == 8192
    assert huge.startswith(cut["sql"])
    assert cut["sql_sha256"] == hashlib.sha256(huge.encode()).hexdigest()


def test_no_secret_reaches_the_audit_log(logged, pg):
    srv, log, key = logged
    text = log.read_text()
    for secret in [*srv.tokens.values(), pg.ro_password, key.read_text().strip()]:
        assert secret not in text
    assert key.read_text().strip() not in srv.stderr_text()


# ── tampering: each kind of change to a real log is caught at the right line ────────────────

def tampered_copy(log: Path, directory: Path, change) -> Path:
    raw = log.read_bytes().split(b"\n")[:-1]  # the lines, without the final empty piece
    copy = directory / ("tampered-" + secrets.token_hex(4) + ".log")
    copy.write_bytes(change(raw))
    return copy


def joined(lines: list[bytes]) -> bytes:
    return b"".join(line + b"\n" for line in lines)


def edit_rows(lines):
    lines[1] = lines[1].replace(b'"rows":3', b'"rows":4')
    return joined(lines)


def delete_line(lines):
    del lines[2]
    return joined(lines)


def insert_copy(lines):
    return joined(lines[:3] + [lines[1]] + lines[3:])


def insert_forged(lines):
    forged = json.loads(lines[1])
    forged.update(seq=forged["seq"] + 1, prev=forged["tag"], caller="mallory", tag="ab" * 32)
    return joined(lines[:2] + [json.dumps(forged, separators=(",", ":")).encode()] + lines[2:])


def swap_lines(lines):
    lines[2], lines[3] = lines[3], lines[2]
    return joined(lines)


def cut_last_line(lines):
    return joined(lines)[:-25]


def rewrite_whole_line(lines):
    # a new caller with a tag computed under a key the attacker made up
    record = json.loads(lines[1])
    record["caller"] = "mallory"
    return joined(lines[:1] + [json.dumps(record, separators=(",", ":")).encode()] + lines[2:])


@pytest.mark.parametrize("change,line_no,why", [
    (edit_rows, 2, "does not match its content"),
    (rewrite_whole_line, 2, "does not match its content"),
    (delete_line, 3, "deleted"),
    (insert_copy, 4, "reordered or repeated"),
    (insert_forged, 3, "does not match its content"),
    (swap_lines, 3, "deleted"),
    (cut_last_line, None, "cut short"),
], ids=["edited", "edited-and-resealed", "deleted", "duplicated", "inserted", "reordered", "truncated"])
def test_verify_audit_names_the_first_broken_line(logged, tmp_path, change, line_no, why):
    _, log, key = logged
    copy = tampered_copy(log, tmp_path, change)
    done = verify(key, copy)
    assert done.returncode == 1, done.stdout
    assert done.stdout.startswith("BROKEN:"), done.stdout
    if line_no is not None:
        assert f"line {line_no} " in done.stdout or f"line {line_no}:" in done.stdout, done.stdout
    assert why in done.stdout, done.stdout


def test_lines_removed_from_the_end_are_caught_by_the_stderr_witness(logged, tmp_path):
    srv, log, key = logged
    marker = "tail_" + secrets.token_hex(4)
    srv.query(f"SELECT 1 -- {marker}")
    line = next(l for l in read_lines(log) if marker in l.get("sql", ""))
    witness = f"{line['seq']}:{line['tag'][:16]}"
    assert verify(key, log, expect=witness).returncode == 0
    copy = tampered_copy(log, tmp_path, lambda lines: joined(lines[:-2]))
    plain = verify(key, copy)
    assert plain.returncode == 0, "without a witness a clean cut at a line boundary looks whole"
    done = verify(key, copy, expect=witness)
    assert done.returncode == 1 and "removed from the end" in done.stdout, done.stdout


def test_a_wrong_key_breaks_the_first_line(logged, tmp_path):
    _, log, _ = logged
    done = verify(make_key(tmp_path, "other.key"), log)
    assert done.returncode == 1 and "line 1" in done.stdout, done.stdout


def test_verify_audit_usage_errors(logged, tmp_path):
    _, log, key = logged
    assert run_binary(["verify-audit", str(log)]).returncode == 2  # no key
    assert run_binary(["verify-audit", "--key-file", str(key)]).returncode == 2  # no file
    assert run_binary(["verify-audit", "--key-file", str(key), "--expect", "x", str(log)]).returncode == 2
    missing = run_binary(["verify-audit", "--key-file", str(key), str(tmp_path / "nope.log")])
    assert missing.returncode == 1 and "cannot read" in missing.stdout


# ── restarts, crashes, rotation ──────────────────────────────────────────────────────────────

def test_chain_continues_across_a_restart(start_server, tmp_path):
    key, log = make_key(tmp_path), tmp_path / "audit.log"
    env = dict(MCP_AUDIT_LOG=str(log), MCP_AUDIT_KEY_FILE=str(key))
    first = start_server(**env)
    first.query("SELECT 1")
    first.stop()
    second = start_server(**env)
    second.query("SELECT 2")
    lines = wait_for_lines(log, 5)
    assert [l["event"] for l in lines] == ["start", "call", "stop", "start", "call"]
    assert lines[3]["prev"] == lines[2]["tag"] and lines[3]["seq"] == 4
    done = verify(key, log)
    assert done.returncode == 0, done.stdout


def test_an_incomplete_last_line_is_cut_off_and_recorded_at_start(start_server, tmp_path):
    key, log = make_key(tmp_path), tmp_path / "audit.log"
    env = dict(MCP_AUDIT_LOG=str(log), MCP_AUDIT_KEY_FILE=str(key))
    srv = start_server(**env)
    srv.query("SELECT 1")
    srv.proc.kill()  # no stop line
    srv.proc.wait(timeout=10)
    partial = b'{"seq":3,"ts":"2026-01-01T00:00:00.000Z","event":"call","caller":"al'
    with open(log, "ab") as f:
        f.write(partial)
    assert verify(key, log).returncode == 1
    again = start_server(**env)
    again.query("SELECT 2")
    lines = wait_for_lines(log, 4)
    assert lines[2]["event"] == "start" and lines[2]["repaired_bytes"] == len(partial)
    done = verify(key, log)
    assert done.returncode == 0, done.stdout
    assert f"cut an incomplete line of {len(partial)} bytes" in done.stdout


def test_a_tampered_last_line_stops_the_start(start_server, tmp_path):
    key, log = make_key(tmp_path), tmp_path / "audit.log"
    env = dict(MCP_AUDIT_LOG=str(log), MCP_AUDIT_KEY_FILE=str(key))
    srv = start_server(**env)
    srv.query("SELECT 1")
    srv.stop()
    log.write_bytes(log.read_bytes().replace(b'"event":"stop"', b'"event":"stap"'))
    before = log.read_bytes()
    done = run_binary([], env={"DATABASE_URL": srv.env["DATABASE_URL"], "MCP_PORT": str(free_port()),
                               **env}, timeout=30)
    assert done.returncode == 2, done.stderr
    assert "verify-audit" in done.stderr and "does not match its content" in done.stderr, done.stderr
    assert log.read_bytes() == before, "nothing may be appended to a chain in doubt"


def test_rotation_keeps_one_chain_across_files(start_server, tmp_path):
    key, log = make_key(tmp_path), tmp_path / "audit.log"
    env = dict(MCP_AUDIT_LOG=str(log), MCP_AUDIT_KEY_FILE=str(key), MCP_AUDIT_ROTATE_BYTES="1500")
    srv = start_server(**env)
    for i in range(8):
        srv.query(f"SELECT {i} AS n -- " + "r" * 200)
    srv.stop()
    rotated = sorted(tmp_path.glob("audit.log.*"))
    assert len(rotated) >= 2, rotated
    assert all(p.stat().st_size <= 1500 for p in rotated)
    files = rotated + [log]
    first_of_new = read_lines(log)[0]
    assert first_of_new["event"] == "rotate" and first_of_new["previous_file"] == rotated[-1].name
    assert first_of_new["prev"] == read_lines(rotated[-1])[-1]["tag"]
    done = verify(key, *files)
    assert done.returncode == 0, done.stdout
    # a file left out, or the files in the wrong order, is a break
    missing = verify(key, *(files[:1] + files[2:]))
    assert missing.returncode == 1 and "a file is missing" in missing.stdout, missing.stdout
    swapped = verify(key, files[1], files[0], *files[2:])
    assert swapped.returncode == 1, swapped.stdout
    # the current file moved away: a restart continues from the newest rotated file
    log.rename(tmp_path / "archived.log")
    again = start_server(**env)
    again.query("SELECT 1")
    start = wait_for_lines(log, 2)[0]
    assert start["event"] == "start" and start["continues"] == rotated[-1].name
    assert start["prev"] == read_lines(rotated[-1])[-1]["tag"]


def test_two_servers_never_share_one_log(start_server, tmp_path):
    key, log = make_key(tmp_path), tmp_path / "audit.log"
    env = dict(MCP_AUDIT_LOG=str(log), MCP_AUDIT_KEY_FILE=str(key))
    srv = start_server(**env)
    done = run_binary([], env={"DATABASE_URL": srv.env["DATABASE_URL"], "MCP_PORT": str(free_port()), **env})
    assert done.returncode == 2 and "locked by another process" in done.stderr, done.stderr


def test_interval_fsync_writes_every_line_too(start_server, tmp_path):
    key, log = make_key(tmp_path), tmp_path / "audit.log"
    srv = start_server(MCP_AUDIT_LOG=str(log), MCP_AUDIT_KEY_FILE=str(key), MCP_AUDIT_FSYNC="interval")
    srv.query("SELECT 1")
    assert [l["event"] for l in wait_for_lines(log, 2)] == ["start", "call"]


@pytest.mark.parametrize("env,message", [
    ({"MCP_AUDIT_LOG": "{dir}/a.log"}, "MCP_AUDIT_LOG needs MCP_AUDIT_KEY_FILE"),
    ({"MCP_AUDIT_KEY_FILE": "{key}"}, "MCP_AUDIT_LOG is not"),
    ({"MCP_AUDIT_LOG": "{dir}/a.log", "MCP_AUDIT_KEY_FILE": "{short}"}, "at least 32"),
    ({"MCP_AUDIT_LOG": "{dir}/a.log", "MCP_AUDIT_KEY_FILE": "{dir}/none.key"}, "cannot read"),
    ({"MCP_AUDIT_LOG": "{dir}/a.log", "MCP_AUDIT_KEY_FILE": "{key}", "MCP_AUDIT_FSYNC": "never"}, "always or interval"),
    ({"MCP_AUDIT_LOG": "{dir}/a.log", "MCP_AUDIT_KEY_FILE": "{key}", "MCP_AUDIT_ON_FAILURE": "ignore"}, "refuse or serve"),
    ({"MCP_AUDIT_LOG": "{dir}/no/such/dir/a.log", "MCP_AUDIT_KEY_FILE": "{key}"}, "cannot open"),
], ids=["no-key", "no-log", "short-key", "missing-key", "bad-fsync", "bad-on-failure", "unwritable"])
def test_bad_audit_configuration_stops_the_start(pg, tmp_path, env, message):
    key = make_key(tmp_path)
    short = tmp_path / "short.key"
    short.write_text("too-short\n")
    values = {k: v.format(dir=tmp_path, key=key, short=short) for k, v in env.items()}
    done = run_binary([], env={"DATABASE_URL": pg.ro_dsn, "MCP_PORT": str(free_port()), **values})
    assert done.returncode == 2, done.stderr
    assert message in done.stderr, done.stderr
    assert key.read_text().strip() not in done.stderr


# ── a failing audit disk fails the call (or, when configured, is served and logged) ──────────

def file_size_limit(limit: int):
    """preexec_fn: the server may not grow any file past `limit` bytes (the disk refuses: EFBIG)."""
    def apply():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


@pytest.mark.parametrize("policy", ["refuse", "serve"])
def test_a_failing_audit_disk_fails_the_call_unless_told_to_serve(start_server, tmp_path, policy):
    key, log = make_key(tmp_path), tmp_path / "audit.log"
    srv = start_server(MCP_AUDIT_LOG=str(log), MCP_AUDIT_KEY_FILE=str(key), MCP_AUDIT_ON_FAILURE=policy,
                       preexec_fn=file_size_limit(12_000))
    padding = "p" * 4000
    srv.query(f"SELECT 1 AS n -- {padding}")
    srv.query(f"SELECT 2 AS n -- {padding}")
    if policy == "refuse":
        text = srv.tool_error("query", {"sql": f"SELECT 3 AS n -- {padding}"})
        assert "audit log unavailable" in text and "withheld" in text, text
        assert "MCP_AUDIT_ON_FAILURE" in text
        srv.wait_for_stderr(lambda t: "the answer was withheld" in t, "the error line")
    else:
        assert srv.query(f"SELECT 3 AS n -- {padding}")["rows"] == [{"n": 3}]
        srv.wait_for_stderr(lambda t: "answering anyway" in t, "the error line")
    # the failed write left no half line behind: the chain still verifies
    assert log.stat().st_size < 12_000
    done = verify(key, log)
    assert done.returncode == 0, done.stdout
    assert [l["sql"][:13] for l in read_lines(log) if l["event"] == "call"] == ["SELECT 1 AS n", "SELECT 2 AS n"]
    metrics = srv.get("/metrics").text
    if policy == "refuse":
        assert 'mcp_tool_calls_total{tool="query",outcome="unaudited"} 1' in metrics, metrics


def test_an_oauth_call_records_how_the_analyst_signed_in(start_server, tmp_path):
    from oauth_lib import OAuthFlow, new_key, oauth_env
    key, log = make_key(tmp_path), tmp_path / "audit.log"
    env, _ = oauth_env(tmp_path, key=new_key(), MCP_AUDIT_LOG=str(log), MCP_AUDIT_KEY_FILE=str(key))
    srv = start_server(**env)
    flow = OAuthFlow(srv, env["MCP_PUBLIC_URL"])
    tokens = flow.tokens_for(flow.register(name="Claude"), srv.tokens["alice"])
    marker = "oauth_" + secrets.token_hex(4)
    assert flow.call(tokens["access_token"], f"SELECT 1 AS one -- {marker}").status == 200
    line = next(l for l in wait_for_lines(log, 2) if marker in l.get("sql", ""))
    assert (line["caller"], line["via"], line["client"]) == ("alice", "oauth", "Claude")
    assert verify(key, log).returncode == 0


def test_every_audit_analyst_and_databases_variable_is_in_help_and_the_readme_table():
    from conftest import REPO
    import re
    help_text = run_binary(["--help"]).stdout
    readme = (REPO / "README.md").read_text()
    names = re.findall(r"^  (MCP_(?:AUDIT|ANALYST|DATABASES)\w*)", help_text, re.M)
    assert len(names) == 10, names
    for name in names:
        assert f"| `{name}` |" in readme, f"{name} is missing from the README configuration table"
    assert "verify-audit" in help_text
