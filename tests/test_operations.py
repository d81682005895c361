"""Issue 5, operations: token rotation without a restart, hashed tokens, /metrics, JSON logs and
the `healthcheck` subcommand — all against the real binary over real HTTP.

Reloads are observed, never slept for: every wait polls with a deadline (``wait_until``).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import secrets
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

from conftest import binary_path, free_port, run_binary, wait_until

RELOAD_DEADLINE_S = 15.0  # the watcher polls every 0.5 s; this is generous on a loaded CI box
PING = {"jsonrpc": "2.0", "id": 1, "method": "ping"}


# ── helpers ────────────────────────────────────────────────────────────────────

def tok(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(12)}"


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def status_with(srv, token: str | None) -> int:
    """HTTP status of a ping sent with ``Authorization: Bearer <token>`` (or no header)."""
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {"Authorization": None}
    return srv.post("/mcp", PING, headers=headers, caller=None).status


def wait_status(srv, token: str, want: int, what: str) -> None:
    wait_until(lambda: status_with(srv, token) == want, RELOAD_DEADLINE_S, what)


def write_with_mtime(path: Path, text: str, mtime_ns: int) -> None:
    """Atomically replace ``path`` with ``text`` whose mtime is exactly ``mtime_ns`` — so only a
    SIGHUP (not the mtime watcher) can make the server notice the change."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.utime(tmp, ns=(mtime_ns, mtime_ns))
    os.replace(tmp, path)


def write_new_mtime(path: Path, text: str) -> None:
    """Atomically replace ``path`` with a file whose mtime is clearly newer (coarse-mtime
    filesystems too). Atomic, so the watcher never sees a half-written file."""
    old = path.stat().st_mtime_ns if path.exists() else time.time_ns()
    new = max(old + 2_000_000_000, time.time_ns())
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.utime(tmp, ns=(new, new))
    os.replace(tmp, path)


def count_in_stderr(srv, needle: str) -> int:
    return srv.stderr_text().count(needle)


def wait_stderr_count(srv, needle: str, at_least: int, what: str) -> str:
    return srv.wait_for_stderr(lambda t: t.count(needle) >= at_least, what, deadline_s=RELOAD_DEADLINE_S)


def tool_with(srv, token: str, name: str, args: dict | None = None) -> dict:
    params: dict = {"name": name}
    if args is not None:
        params["arguments"] = args
    env = srv.rpc("tools/call", params, headers={"Authorization": f"Bearer {token}"}, caller=None)
    assert "error" not in env, env
    return env["result"]


# ── token file: reload on SIGHUP ─────────────────────────────────────────────

def test_token_file_reloaded_on_sighup_not_only_on_mtime(start_server, tmp_path):
    old, new = tok("old"), tok("new")
    path = tmp_path / "tokens"
    path.write_text(f"# analysts, rotated by ops\ndave:{old}\n")
    srv = start_server(tokens=None, MCP_AUTH_TOKENS_FILE=str(path))
    assert status_with(srv, old) == 200
    assert status_with(srv, new) == 401
    loaded_before = count_in_stderr(srv, "tokens loaded")

    # Same mtime: the watcher cannot see this change; only SIGHUP can.
    write_with_mtime(path, f"dave:{new}\n", path.stat().st_mtime_ns)
    os.kill(srv.proc.pid, signal.SIGHUP)
    wait_status(srv, new, 200, "the new token to be accepted after SIGHUP")
    assert status_with(srv, old) == 401, "the removed token must be refused after SIGHUP"
    text = wait_stderr_count(srv, "tokens loaded", loaded_before + 1, "a 'tokens loaded' line after SIGHUP")
    reload_lines = [l for l in text.splitlines() if "tokens loaded" in l][loaded_before:]
    assert any("SIGHUP" in l for l in reload_lines), reload_lines
    assert srv.proc.poll() is None, "SIGHUP must not stop the server"
    assert old not in text and new not in text, "token values must never be logged"


def test_sighup_without_token_file_is_harmless(start_server):
    srv = start_server()
    os.kill(srv.proc.pid, signal.SIGHUP)
    # a few requests later the server is still there and still authenticating
    for _ in range(5):
        assert status_with(srv, srv.tokens["alice"]) == 200
    assert status_with(srv, "wrong") == 401
    assert srv.proc.poll() is None


# ── token file: reload on mtime change ───────────────────────────────────────

def test_token_file_reloaded_when_mtime_changes(start_server, tmp_path):
    old, new = tok("old"), tok("new")
    path = tmp_path / "tokens"
    path.write_text(f"erin:{old}\n")
    srv = start_server(tokens=None, MCP_AUTH_TOKENS_FILE=str(path))
    assert status_with(srv, old) == 200 and status_with(srv, new) == 401

    # add a token (both valid) ...
    write_new_mtime(path, f"erin:{old}\nerin2:{new}\n")
    wait_status(srv, new, 200, "the added token to be accepted (mtime change)")
    assert status_with(srv, old) == 200
    # ... then remove the old one
    write_new_mtime(path, f"# erin rotated\nerin2:{new}\n")
    wait_status(srv, old, 401, "the removed token to be refused (mtime change)")
    assert status_with(srv, new) == 200
    text = srv.stderr_text()
    assert "file changed" in text, text
    assert old not in text and new not in text


# ── token file: a broken file keeps the previous tokens ──────────────────────

def test_broken_token_file_keeps_previous_tokens_and_logs_why(start_server, tmp_path):
    good, other = tok("good"), tok("other")
    path = tmp_path / "tokens"
    path.write_text(f"frank:{good}\n")
    srv = start_server(tokens=None, MCP_AUTH_TOKENS_FILE=str(path))
    assert status_with(srv, good) == 200
    kept = "keeping previous tokens"

    # 1. a file with one valid new line and one invalid line: rejected as a whole
    write_new_mtime(path, f"frank:{good}\ngrace:{other}\nthis line has no colon\n")
    text = wait_stderr_count(srv, kept, 1, "a warning that the bad file was not loaded")
    line = [l for l in text.splitlines() if kept in l][-1]
    assert "line 3" in line, f"the warning should say which line is wrong: {line}"
    assert str(path) in line, line
    assert status_with(srv, good) == 200, "previous token must still work"
    assert status_with(srv, other) == 401, "nothing from a rejected file may be loaded"

    # 2. a sha256: entry that is not 64 hex digits is invalid too
    write_new_mtime(path, f"frank:{good}\ngrace:sha256:abc123\n")
    text = wait_stderr_count(srv, kept, 2, "a warning about the bad sha256 entry")
    assert "64 hex" in [l for l in text.splitlines() if kept in l][-1]
    assert status_with(srv, good) == 200

    # 3. the file deleted: keeps the tokens, says it cannot read it
    path.unlink()
    text = wait_stderr_count(srv, kept, 3, "a warning that the deleted file cannot be read")
    line = [l for l in text.splitlines() if kept in l][-1]
    assert "cannot read" in line and str(path) in line, line
    assert status_with(srv, good) == 200, "a deleted file must not lock everyone out"

    # 4. an unreadable path (a directory) also keeps them
    path.mkdir()
    os.kill(srv.proc.pid, signal.SIGHUP)
    wait_stderr_count(srv, kept, 4, "a warning that a directory is not a token file")
    assert status_with(srv, good) == 200
    path.rmdir()

    # 5. a good file again is picked up (the watcher survived all of the above)
    write_new_mtime(path, f"grace:{other}\n")
    wait_status(srv, other, 200, "the repaired file to be loaded")
    wait_status(srv, good, 401, "the token dropped from the repaired file to be refused")
    text = srv.stderr_text()
    assert good not in text and other not in text, "token values must never be logged"
    assert srv.proc.poll() is None


def test_invalid_token_file_at_startup_is_refused(tmp_path, pg):
    path = tmp_path / "tokens"
    path.write_text("no-colon-here\n")
    r = run_binary([], {"DATABASE_URL": pg.ro_dsn, "MCP_PORT": str(free_port()),
                        "MCP_AUTH_TOKENS_FILE": str(path)}, timeout=15)
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert "MCP_AUTH_TOKENS_FILE" in r.stderr
    missing = run_binary([], {"DATABASE_URL": pg.ro_dsn, "MCP_PORT": str(free_port()),
                              "MCP_AUTH_TOKENS_FILE": str(tmp_path / "absent")}, timeout=15)
    assert missing.returncode == 2, (missing.returncode, missing.stderr)
    assert "MCP_AUTH_TOKENS_FILE" in missing.stderr


# ── hashed tokens ────────────────────────────────────────────────────────────

def test_sha256_vector_used_for_hashed_tokens():
    # the standard vectors our expectations rely on (hashlib is the reference)
    assert sha256_hex("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert sha256_hex("") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def test_hashed_token_in_file(start_server, tmp_path):
    digest = sha256_hex("s3cret")
    path = tmp_path / "tokens"
    path.write_text(f"# bob's token is stored hashed\nbob:sha256:{digest}\n")
    srv = start_server(tokens=None, MCP_AUTH_TOKENS_FILE=str(path))
    assert status_with(srv, "s3cret") == 200
    assert status_with(srv, digest) == 401, "the stored hex digest must not work as a token"
    assert status_with(srv, f"sha256:{digest}") == 401
    assert status_with(srv, "S3CRET") == 401
    # uppercase hex in the file is the same digest
    write_new_mtime(path, f"bob:sha256:{digest.upper()}\ncarl:sha256:{sha256_hex('other-pw')}\n")
    wait_status(srv, "other-pw", 200, "the second hashed token to be loaded")
    assert status_with(srv, "s3cret") == 200
    # the caller is bob: the audit line names him
    marker = "hashed_" + secrets.token_hex(4)
    tool_with(srv, "s3cret", "query", {"sql": f"SELECT 1 -- {marker}"})
    line = [l for l in srv.wait_for_stderr(lambda t: marker in t, "audit line").splitlines() if marker in l][0]
    assert re.search(r"\bcaller=bob\b", line), line


def test_hashed_token_in_env(start_server):
    digest = sha256_hex("s3cret")
    srv = start_server(tokens=None, MCP_AUTH_TOKENS=f"bob:sha256:{digest}")
    assert status_with(srv, "s3cret") == 200
    assert status_with(srv, digest) == 401


# ── union of MCP_AUTH_TOKENS and the file ────────────────────────────────────

def test_env_and_file_tokens_are_a_union_and_audit_names_file_caller(start_server, tmp_path):
    env_tok, file_tok, file_tok2 = tok("env"), tok("file"), tok("file2")
    path = tmp_path / "tokens"
    path.write_text(f"harriet:{file_tok}\n")
    srv = start_server(tokens={"alice": env_tok}, MCP_AUTH_TOKENS_FILE=str(path))
    assert status_with(srv, env_tok) == 200
    assert status_with(srv, file_tok) == 200
    assert status_with(srv, "neither") == 401
    assert status_with(srv, None) == 401

    marker = "union_" + secrets.token_hex(4)
    tool_with(srv, file_tok, "query", {"sql": f"SELECT 42 AS answer -- {marker}"})
    text = srv.wait_for_stderr(lambda t: marker in t, "the audit line of the file caller's query")
    line = [l for l in text.splitlines() if marker in l][0]
    assert "audit" in line and re.search(r"\bcaller=harriet\b", line), line
    assert file_tok not in text and env_tok not in text

    # rotating the file never touches the env tokens
    write_new_mtime(path, f"ivan:{file_tok2}\n")
    wait_status(srv, file_tok2, 200, "the rotated file token")
    wait_status(srv, file_tok, 401, "the removed file token to be refused")
    assert status_with(srv, env_tok) == 200
    # and an emptied file leaves only the env tokens (an empty file is valid: zero tokens)
    write_new_mtime(path, "# nobody\n")
    wait_status(srv, file_tok2, 401, "the last file token to be refused")
    assert status_with(srv, env_tok) == 200


# ── /metrics ─────────────────────────────────────────────────────────────────

SAMPLE_RE = re.compile(
    r'^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)'
    r'(?:\{(?P<labels>(?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*")(?:,[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*")*,?)?\})?'
    r' (?P<value>[^ ]+)(?: (?P<ts>-?[0-9]+))?$')
LABEL_RE = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\.)*)"')
KINDS = {"counter", "gauge", "histogram", "summary", "untyped"}


class Metrics:
    def __init__(self, text: str):
        self.text = text
        self.types: dict[str, str] = {}
        self.helps: dict[str, str] = {}
        self.samples: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        self.parse()

    def family_of(self, name: str) -> str:
        if name in self.types:
            return name
        for suffix in ("_bucket", "_sum", "_count"):
            base = name[: -len(suffix)]
            if name.endswith(suffix) and self.types.get(base) in ("histogram", "summary"):
                return base
        raise AssertionError(f"sample {name} has no # TYPE line before it")

    def parse(self) -> None:
        assert self.text.endswith("\n"), "exposition must end with a newline"
        for n, line in enumerate(self.text.split("\n")[:-1], 1):
            assert line.strip() == line and line, f"line {n}: blank or padded line {line!r}"
            if line.startswith("# HELP "):
                name, _, help_text = line[7:].partition(" ")
                assert name not in self.helps, f"line {n}: second HELP for {name}"
                assert help_text, f"line {n}: empty HELP"
                self.helps[name] = help_text
            elif line.startswith("# TYPE "):
                name, _, kind = line[7:].partition(" ")
                assert kind in KINDS, f"line {n}: bad TYPE {kind!r}"
                assert name not in self.types, f"line {n}: second TYPE for {name}"
                assert not any(self.family_of_safe(s) == name for s, _ in self.samples), \
                    f"line {n}: TYPE {name} after its samples"
                self.types[name] = kind
            elif line.startswith("#"):
                continue
            else:
                m = SAMPLE_RE.match(line)
                assert m, f"line {n}: not a sample line: {line!r}"
                name = m["name"]
                self.family_of(name)
                labels = tuple(LABEL_RE.findall(m["labels"] or ""))
                key = (name, labels)
                assert key not in self.samples, f"line {n}: duplicate series {line!r}"
                value = float(m["value"])  # also accepts NaN/+Inf
                self.samples[key] = value

    def family_of_safe(self, name: str) -> str | None:
        try:
            return self.family_of(name)
        except AssertionError:
            return None

    def get(self, name: str, **labels: str) -> float:
        """Value of the series ``name{labels}`` (exact label set); 0 when absent (counters)."""
        want = tuple(sorted(labels.items()))
        for (n, ls), v in self.samples.items():
            if n == name and tuple(sorted(ls)) == want:
                return v
        return 0.0

    def series(self, name: str) -> dict[tuple[tuple[str, str], ...], float]:
        return {ls: v for (n, ls), v in self.samples.items() if n == name}


def scrape(srv) -> Metrics:
    r = srv.get("/metrics")
    assert r.status == 200, (r.status, r.text)
    ctype = r.headers.get("Content-Type", "")
    assert ctype.startswith("text/plain"), ctype
    return Metrics(r.text)


def test_metrics_format_and_families(start_server):
    srv = start_server()
    srv.tool("list_schemas")
    m = scrape(srv)
    for name in ("mcp_http_requests_total", "mcp_rpc_requests_total", "mcp_tool_calls_total",
                 "mcp_rows_returned_total", "mcp_result_bytes_total", "mcp_auth_failures_total",
                 "mcp_db_retries_total", "mcp_db_errors_total"):
        assert m.types.get(name) == "counter", (name, m.types.get(name))
        assert name in m.helps, name
    assert m.types.get("mcp_tool_duration_seconds") == "histogram"
    pool_gauges = [n for n, k in m.types.items() if n.startswith("mcp_pool_")]
    assert pool_gauges and all(m.types[n] == "gauge" for n in pool_gauges), m.types
    for n in pool_gauges:
        assert m.series(n), f"gauge {n} has no sample"
        assert all(v >= 0 for v in m.series(n).values())
    # every counter-ish value is a finite non-negative number
    for (name, _), v in m.samples.items():
        assert math.isfinite(v) and v >= 0, (name, v)
    # /metrics needs no auth
    assert srv.get("/metrics", headers={"Authorization": "Bearer wrong"}).status == 200


def test_metrics_counters_move_as_calls_are_made(start_server):
    srv = start_server()
    m0 = scrape(srv)

    r = srv.query("SELECT i FROM generate_series(1, 7) AS i")
    assert r["row_count"] == 7
    srv.tool("list_schemas")
    err = srv.tool_error("query", {"sql": "DELETE FROM reporting.canary"})
    assert err
    assert srv.post("/mcp", PING, headers={"Authorization": "Bearer nope"}, caller=None).status == 401
    assert srv.post("/mcp", PING, caller=None).status == 401
    m1 = scrape(srv)

    def delta(name, **labels):
        return m1.get(name, **labels) - m0.get(name, **labels)

    assert delta("mcp_tool_calls_total", tool="query", outcome="ok") == 1
    assert delta("mcp_tool_calls_total", tool="list_schemas", outcome="ok") == 1
    assert delta("mcp_tool_calls_total", tool="query", outcome="rejected") == 1
    assert delta("mcp_auth_failures_total") == 2
    assert delta("mcp_http_requests_total", method="POST", status="401") == 2
    assert delta("mcp_http_requests_total", method="POST", status="200") == 3
    assert delta("mcp_rpc_requests_total", method="tools/call") == 3
    assert delta("mcp_rows_returned_total") == 7
    assert delta("mcp_result_bytes_total") > 0
    # the /metrics scrape itself is counted as GET 200 (at least the first scrape)
    assert m1.get("mcp_http_requests_total", method="GET", status="200") >= 1

    # the histogram: cumulative buckets, +Inf == count, one observation per call
    buckets = sorted(((float(dict(ls)["le"]), v) for ls, v in m1.series("mcp_tool_duration_seconds_bucket").items()
                      if dict(ls)["tool"] == "query"))
    assert buckets and buckets[-1][0] == math.inf, buckets
    values = [v for _, v in buckets]
    assert values == sorted(values), f"buckets must be cumulative: {buckets}"
    count = m1.get("mcp_tool_duration_seconds_count", tool="query")
    assert values[-1] == count == 2, (values, count)
    assert m1.get("mcp_tool_duration_seconds_sum", tool="query") > 0

    # a database error is counted by SQLSTATE class
    before = scrape(srv)
    srv.tool_error("query", {"sql": "SELECT 1/0"})
    after = scrape(srv)
    assert after.get("mcp_db_errors_total", **{"class": "22"}) - before.get("mcp_db_errors_total", **{"class": "22"}) == 1
    assert after.get("mcp_tool_calls_total", tool="query", outcome="db_error") - \
        before.get("mcp_tool_calls_total", tool="query", outcome="db_error") == 1


def test_metrics_leak_no_token_caller_or_sql(start_server):
    caller, token = "zelda-metrics-caller", tok("metricstok")
    srv = start_server(tokens={caller: token})
    marker = "sqlmarker" + secrets.token_hex(4)
    sql = f"SELECT '{marker}' AS v, i FROM generate_series(1, 3) AS i"
    srv.query(sql)
    srv.tool_error("query", {"sql": f"SELECT 1/0 AS {marker}_err"})
    srv.tool("describe_table", {"schema": "fleet", "table": "vehicles"})
    bad = "wrongtok-" + secrets.token_hex(8)
    assert srv.post("/mcp", PING, headers={"Authorization": f"Bearer {bad}"}, caller=None).status == 401
    body = srv.get("/metrics").text
    m = Metrics(body)
    assert m.get("mcp_rows_returned_total") >= 3
    for secret in (token, bad, caller, "zelda", marker, "generate_series", "SELECT", "vehicles", "fleet"):
        assert secret not in body, f"{secret!r} leaked into /metrics"
    # labels only ever carry these names (sslmode: the configured one, from a closed set)
    label_names = {k for (_, ls) in m.samples for k, _ in ls}
    assert label_names <= {"method", "status", "tool", "outcome", "le", "class", "sslmode"}, label_names
    sslmodes = {v for (name, ls) in m.samples for k, v in ls if k == "sslmode"}
    assert sslmodes == {"prefer"}, sslmodes


# ── JSON logs ────────────────────────────────────────────────────────────────

AUDIT_FIELDS = ("caller", "tool", "status", "rows", "truncated", "ms", "sql")


def json_lines(text: str) -> list[dict]:
    objs = []
    for n, line in enumerate(text.splitlines(), 1):
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise AssertionError(f"stderr line {n} is not JSON ({e}): {line!r}") from None
        assert isinstance(obj, dict), f"line {n} is not a JSON object: {line!r}"
        objs.append(obj)
    return objs


def test_json_logs_every_line_is_an_object(start_server, tmp_path):
    token = tok("jsonlog")
    path = tmp_path / "tokens"
    path.write_text(f"judy:{token}\n")
    srv = start_server(tokens={"alice": tok("a")}, MCP_AUTH_TOKENS_FILE=str(path), MCP_LOG_FORMAT="json")
    marker = "jsonaudit_" + secrets.token_hex(4)
    sql = f'SELECT 1 AS "a ""quoted"" col",\n  \'tab\there\' AS tabbed -- {marker}'
    res = tool_with(srv, token, "query", {"sql": sql})
    assert not res.get("isError"), res
    tool_with(srv, token, "query", {"sql": f"SELECT 1/0 -- {marker}_err"})
    tool_with(srv, token, "list_schemas")
    assert status_with(srv, "bad-token") == 401
    # a reload (ok) and a broken file (warning) produce log lines too
    write_new_mtime(path, f"judy:{token}\nkim:{tok('k')}\n")
    srv.wait_for_stderr(lambda t: t.count("tokens loaded") >= 2, "reload log line", deadline_s=RELOAD_DEADLINE_S)
    write_new_mtime(path, "broken line\n")
    srv.wait_for_stderr(lambda t: "keeping previous tokens" in t, "reload warning", deadline_s=RELOAD_DEADLINE_S)
    srv.wait_for_stderr(lambda t: f"{marker}_err" in t, "the error audit line")
    srv.stop()  # SIGTERM: shutdown lines are logged too
    assert srv.proc.returncode == 0

    objs = json_lines(srv.stderr_text())
    assert len(objs) >= 7, objs
    for o in objs:
        assert {"ts", "level", "msg"} <= o.keys(), o
        assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$", o["ts"]), o["ts"]
        assert o["level"] in ("debug", "info", "warn", "error"), o
    msgs = [o["msg"] for o in objs]
    assert "listening" in msgs and "tokens loaded" in msgs, msgs
    audits = [o for o in objs if o["msg"] == "audit"]
    assert len(audits) == 3, audits
    ok = next(o for o in audits if marker in o.get("sql", "") and "_err" not in o["sql"])
    for field in AUDIT_FIELDS:
        assert field in ok, (field, ok)
    assert ok["caller"] == "judy" and ok["tool"] == "query" and ok["status"] == "ok"
    assert str(ok["rows"]) == "1" and ok["truncated"] in ("no", False, None), ok
    assert float(ok["ms"]) >= 0
    # the JSON line stays one line (checked above); once decoded, the SQL is exactly what was sent
    assert '"a ""quoted"" col",\n' in ok["sql"] and "'tab\there'" in ok["sql"], ok["sql"]
    err = next(o for o in audits if f"{marker}_err" in o.get("sql", ""))
    assert err["status"] == "db_error" and err["caller"] == "judy", err
    ls = next(o for o in audits if o["tool"] == "list_schemas")
    assert ls["caller"] == "judy" and ls["status"] == "ok"
    warn = next(o for o in objs if "keeping previous tokens" in o["msg"])
    assert warn["level"] == "warn" and "line 1" in json.dumps(warn), warn
    text = srv.stderr_text()
    assert token not in text and "bad-token" not in text


def test_json_logs_database_down_lines_are_json(start_server):
    dead = f"postgresql://nobody:pw@127.0.0.1:{free_port()}/nodb"
    srv = start_server(DATABASE_URL=dead, MCP_LOG_FORMAT="json")
    srv.tool_error("query", {"sql": "SELECT 1"})
    # the start-up probe's warning comes from its own thread: on a busy machine after the audit line
    srv.wait_for_stderr(lambda t: '"audit"' in t and '"level":"warn"' in t, "the audit and warning lines")
    srv.stop()
    objs = json_lines(srv.stderr_text())
    assert any(o["level"] == "warn" for o in objs), objs
    assert any(o["msg"] == "audit" and o["status"] == "unavailable" for o in objs), objs


def test_json_logs_bind_failure_is_json(pg):
    """A start-up failure after MCP_LOG_FORMAT=json was read is still one JSON object."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        r = run_binary([], {"DATABASE_URL": pg.ro_dsn, "MCP_PORT": str(port), "MCP_LOG_FORMAT": "json"},
                       timeout=15)
    assert r.returncode == 2, (r.returncode, r.stderr)
    objs = json_lines(r.stderr)
    assert objs and any(str(port) in json.dumps(o) for o in objs), objs


def test_text_log_format_is_the_default(start_server):
    srv = start_server()
    marker = "textaudit_" + secrets.token_hex(4)
    srv.query(f"SELECT 1 -- {marker}")
    line = [l for l in srv.wait_for_stderr(lambda t: marker in t, "audit").splitlines() if marker in l][0]
    assert not line.startswith("{"), line
    assert re.search(r"\bcaller=alice\b", line) and re.search(r"\btool=query\b", line), line


# ── healthcheck subcommand ───────────────────────────────────────────────────

def healthcheck(host: str | None, port: int | str, timeout: float = 20.0) -> subprocess.CompletedProcess:
    env: dict[str, str | None] = {"MCP_PORT": str(port)}
    if host is not None:
        env["MCP_HOST"] = host
    return run_binary(["healthcheck"], env, timeout=timeout)


def test_healthcheck_ok_against_running_server(server):
    r = healthcheck("127.0.0.1", server.port)
    assert r.returncode == 0, (r.returncode, r.stdout, r.stderr)


def test_healthcheck_ok_when_host_is_any_address(start_server):
    srv = start_server(MCP_HOST="0.0.0.0")  # tokens are required off loopback: the default ones
    r = healthcheck("0.0.0.0", srv.port)
    assert r.returncode == 0, (r.returncode, r.stdout, r.stderr)
    # it needs no token (probes /healthz) and no DATABASE_URL
    assert "DATABASE_URL" not in r.stderr


def test_healthcheck_ok_when_database_is_down(start_server):
    """/healthz is liveness: a database outage must not make the container 'unhealthy'."""
    dead = f"postgresql://nobody:pw@127.0.0.1:{free_port()}/nodb"
    srv = start_server(DATABASE_URL=dead)
    r = healthcheck("127.0.0.1", srv.port)
    assert r.returncode == 0, (r.returncode, r.stderr)


def test_healthcheck_fails_on_closed_port():
    port = free_port()
    for host in ("127.0.0.1", "0.0.0.0"):
        r = healthcheck(host, port)
        assert r.returncode == 1, (host, r.returncode, r.stderr)
        assert r.stderr.strip(), "the failure should say why"


def test_healthcheck_fails_on_wrong_answer_and_on_silence():
    """A listener that is not our server (503, or never answering) is unhealthy, within a deadline."""
    def serve(sock: socket.socket, reply: bytes | None, stop: threading.Event):
        sock.settimeout(0.2)
        conns = []
        while not stop.is_set():
            try:
                conn, _ = sock.accept()
            except OSError:
                continue
            conns.append(conn)
            if reply is not None:
                try:
                    conn.recv(4096)
                    conn.sendall(reply)
                finally:
                    conn.close()
        for c in conns:
            c.close()

    for reply in (b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 12\r\nConnection: close\r\n\r\n{\"ok\":false}",
                  None):
        stop = threading.Event()
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            sock.listen(8)
            t = threading.Thread(target=serve, args=(sock, reply, stop), daemon=True)
            t.start()
            started = time.monotonic()
            try:
                r = healthcheck("127.0.0.1", sock.getsockname()[1], timeout=30)
            finally:
                stop.set()
                t.join(5)
            assert r.returncode == 1, (reply, r.returncode, r.stderr)
            assert time.monotonic() - started < 15, "the probe must time out on its own"


def test_healthcheck_defaults_and_ignores_server_config(tmp_path):
    """It needs nothing but MCP_HOST/MCP_PORT: no DATABASE_URL, no tokens, an empty environment."""
    port = free_port()
    r = subprocess.run([str(binary_path()), "healthcheck"], env={"MCP_PORT": str(port)},
                       capture_output=True, text=True, timeout=20)
    assert r.returncode == 1, (r.returncode, r.stderr)
    assert f"127.0.0.1:{port}" in r.stderr, r.stderr
