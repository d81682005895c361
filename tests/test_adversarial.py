"""Adversarial suite (issue 3): attacks refused, nothing changed, the pooled connection pristine.

* ``tests/attacks.tsv`` is the corpus (format in its header). Every case runs end to end through one
  real server with ``MCP_POOL_MAX=1`` — so every call reuses the same PostgreSQL backend — and after
  each case the suite checks (a) a whole-database fingerprint taken as the superuser and (b) a probe
  query through the server that must see exactly the settings, locks and session objects of the
  start, on the same backend pid. ``analytics-mcp check-sql`` must agree with the layer named in
  the corpus.
* Session hygiene: functions created here (module fixture, schema ``adversarial``, dropped at the
  end) do through the back door what the guard refuses at the front (session set_config, SET,
  advisory locks, PREPARE, cursors, LISTEN, CREATE TEMP TABLE); the next request on the same
  connection must see no trace.
* An end-to-end fuzz: 300 generated strings from a fixed seed through the query tool, each answered
  by a well-formed JSON-RPC result within an overall deadline, the database unchanged at the end.
"""

from __future__ import annotations

import random
import re
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import DB_NAME, RO_ROLE, loads_exact, run_binary, wait_until

CORPUS = Path(__file__).resolve().parent / "attacks.tsv"
STATEMENT_TIMEOUT_MS = "1500"  # short, so the few timeout cases are cheap; pg_sleep(2) is above it
SQLSTATE_SUFFIX = re.compile(r"\(([0-9A-Z]{5})\)$")


# ── corpus ─────────────────────────────────────────────────────────────────────

_ESCAPES = {"\\": "\\", "n": "\n", "r": "\r", "t": "\t", "0": "\0"}


def decode_sql(field: str, lineno: int) -> str:
    out, i = [], 0
    while i < len(field):
        c = field[i]
        if c == "\\":
            nxt = field[i + 1] if i + 1 < len(field) else ""
            if nxt not in _ESCAPES:
                raise ValueError(f"attacks.tsv:{lineno}: unknown escape \\{nxt} (write a backslash as \\\\)")
            out.append(_ESCAPES[nxt])
            i += 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


@dataclass(frozen=True)
class Case:
    lineno: int
    expect: str        # reject | allow
    sql: str
    why: str
    layer: str         # guard | db | "" (allow)
    sqlstate: str | None
    gap: str | None    # "known gap"/"known bug" note: the refusal/acceptance checks xfail while it is open

    @property
    def id(self) -> str:
        return f"L{self.lineno}-{self.expect}"


def load_corpus() -> list[Case]:
    cases = []
    for lineno, line in enumerate(CORPUS.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        fields = line.split("\t")
        assert len(fields) >= 3, f"attacks.tsv:{lineno}: expected expect<TAB>sql<TAB>why[...]"
        expect, raw_sql, why = fields[:3]
        assert expect in ("reject", "allow"), f"attacks.tsv:{lineno}: bad expect {expect!r}"
        assert len(fields) >= 4, f"attacks.tsv:{lineno}: expected expect<TAB>sql<TAB>why<TAB>layer[<TAB>note]"
        layer, _, code = fields[3].partition(":")
        sqlstate = code or None
        if expect == "reject":
            assert layer in ("guard", "db"), f"attacks.tsv:{lineno}: bad layer {fields[3]!r}"
        else:
            assert fields[3] == "-", f"attacks.tsv:{lineno}: an allow case has layer '-'"
            layer = ""
        note = fields[4].strip() if len(fields) >= 5 else ""
        want = "known gap: " if expect == "reject" else "known bug: "
        assert not note or note.startswith(want), f"attacks.tsv:{lineno}: a {expect} note starts with {want!r}"
        gap = note or None
        cases.append(Case(lineno, expect, decode_sql(raw_sql, lineno), why, layer, sqlstate, gap))
    return cases


CASES = load_corpus()


def test_corpus_has_the_required_breadth():
    rejects = [c for c in CASES if c.expect == "reject"]
    allows = [c for c in CASES if c.expect == "allow"]
    assert len(rejects) >= 150 and len(allows) >= 60, (len(rejects), len(allows))
    assert len({c.sql for c in CASES}) == len(CASES), "duplicate SQL in the corpus"


# ── fixtures: extra objects, the database fingerprint, the pristine probe ─────

SETUP_SQL = r"""
SET client_min_messages = warning;
DROP SCHEMA IF EXISTS adversarial CASCADE;
CREATE SCHEMA adversarial;
GRANT USAGE ON SCHEMA adversarial TO mcp_ro;
-- Columns named like keywords that PostgreSQL lets a read use as names.
CREATE TABLE adversarial.assets (
    id integer PRIMARY KEY, cluster text, comment text, load numeric, lock boolean, owner text,
    region text, update_time timestamptz, deleted boolean, "drop" text);
INSERT INTO adversarial.assets VALUES
    (1, 'c1', 'please delete later', 0.5, false, 'ops', 'eu', TIMESTAMPTZ '2024-03-01 00:00+00', false, 'x'),
    (2, 'c1', 'update pending', 1.5, true, 'data', 'us', TIMESTAMPTZ '2024-03-02 00:00+00', true, NULL),
    (3, 'c2', NULL, 2.0, false, 'ops', 'eu', NULL, true, 'y');
GRANT SELECT ON adversarial.assets TO mcp_ro;
CREATE TABLE adversarial.sink (x integer);
-- A sequence the role may use: only the guard and the read-only transaction keep nextval out.
CREATE SEQUENCE adversarial.seq;
SELECT nextval('adversarial.seq');
GRANT USAGE, SELECT ON SEQUENCE adversarial.seq TO mcp_ro;

-- SECURITY DEFINER writers: privileges allow the write, only the read-only transaction stops it.
CREATE FUNCTION adversarial.fn_nextval() RETURNS bigint LANGUAGE sql VOLATILE SECURITY DEFINER
    AS $$ SELECT nextval('adversarial.seq') $$;
CREATE FUNCTION adversarial.fn_insert() RETURNS integer LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    AS $$ BEGIN INSERT INTO adversarial.sink VALUES (1); RETURN 1; END $$;
CREATE FUNCTION adversarial.fn_read_write() RETURNS integer LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    AS $$ BEGIN PERFORM set_config('transaction_read_only', 'off', true); DELETE FROM reporting.canary; RETURN 0; END $$;
-- lo_create is NOT refused by a read-only transaction; only ROLLBACK undoes it.
CREATE FUNCTION adversarial.fn_lo() RETURNS oid LANGUAGE sql VOLATILE SECURITY DEFINER
    AS $$ SELECT lo_create(0) $$;

-- SECURITY INVOKER back doors for the session-hygiene tests: each leaves session state behind
-- unless the server's per-request ROLLBACK + pg_advisory_unlock_all() clears it.
CREATE FUNCTION adversarial.fn_temp() RETURNS text LANGUAGE plpgsql VOLATILE
    AS $$ BEGIN EXECUTE 'CREATE TEMP TABLE adversarial_tmp (x integer)'; RETURN 'created'; END $$;
CREATE FUNCTION adversarial.fn_set_config() RETURNS text LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    PERFORM set_config('search_path', 'adversarial_leak', false);
    PERFORM set_config('work_mem', '77kB', false);
    PERFORM set_config('application_name', 'adversarial_leak', false);
    PERFORM set_config('default_transaction_read_only', 'off', false);
    PERFORM set_config('statement_timeout', '0', false);
    RETURN current_setting('search_path') || ';' || current_setting('work_mem');
END $$;
CREATE FUNCTION adversarial.fn_exec_set() RETURNS text LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    EXECUTE 'SET search_path = adversarial_leak';
    EXECUTE 'SET SESSION work_mem = ''78kB''';
    RETURN current_setting('search_path') || ';' || current_setting('work_mem');
END $$;
CREATE FUNCTION adversarial.fn_lock(k bigint) RETURNS bigint LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    PERFORM pg_advisory_lock(k);
    PERFORM pg_advisory_lock_shared(k + 1);
    PERFORM pg_try_advisory_lock(k + 2);
    PERFORM pg_advisory_lock(k);  -- re-entrant: held twice
    RETURN (SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid());
END $$;
CREATE FUNCTION adversarial.fn_prepare() RETURNS text LANGUAGE plpgsql VOLATILE
    AS $$ BEGIN EXECUTE 'PREPARE adversarial_leak AS SELECT 1'; RETURN 'prepared'; END $$;
CREATE FUNCTION adversarial.fn_cursor() RETURNS bigint LANGUAGE plpgsql VOLATILE AS $$
DECLARE c refcursor := 'adversarial_cur';
BEGIN
    OPEN c FOR SELECT * FROM reporting.canary;
    EXECUTE 'DECLARE adversarial_hold CURSOR WITH HOLD FOR SELECT 1';
    RETURN (SELECT count(*) FROM pg_cursors);
END $$;
CREATE FUNCTION adversarial.fn_listen() RETURNS bigint LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    EXECUTE 'LISTEN adversarial_chan';
    PERFORM pg_notify('adversarial_chan', 'x');
    RETURN (SELECT count(*) FROM pg_listening_channels());
END $$;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA adversarial TO mcp_ro;
"""

# Every cheap signal that something outside one rolled-back transaction changed.
FINGERPRINT_SQL = """
SELECT concat_ws(E'\\n',
  'canary=' || (SELECT md5(string_agg(c::text, '|' ORDER BY id)) || ':' || count(*) FROM reporting.canary c),
  'infra_canary=' || (SELECT md5(string_agg(c::text, '|' ORDER BY id)) || ':' || count(*) FROM infrastructure.canary c),
  'pg_class=' || (SELECT count(*) FROM pg_class),
  'pg_proc=' || (SELECT count(*) FROM pg_proc),
  'pg_namespace=' || (SELECT count(*) FROM pg_namespace),
  'pg_description=' || (SELECT count(*) FROM pg_description),
  'roles=' || (SELECT string_agg(format('%s:%s%s%s%s', rolname, rolsuper, rolcreaterole, rolcreatedb, rolbypassrls),
                                 ',' ORDER BY rolname) FROM pg_roles WHERE rolname !~ '^pg_'),
  'role_settings=' || (SELECT count(*) FROM pg_db_role_setting),
  'auto_conf=' || (SELECT count(*) FROM pg_file_settings),
  'sequences=' || (SELECT coalesce(string_agg(format('%s.%s=%s', schemaname, sequencename, last_value), ','
                                              ORDER BY schemaname, sequencename), '') FROM pg_sequences),
  'large_objects=' || (SELECT count(*) FROM pg_largeobject_metadata),
  'ro_advisory_locks=' || (SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
                           WHERE l.locktype = 'advisory' AND a.usename = '{role}'),
  'ro_idle_in_tx=' || (SELECT count(*) FROM pg_stat_activity
                       WHERE usename = '{role}' AND state LIKE 'idle in transaction%'),
  'slots=' || (SELECT count(*) FROM pg_replication_slots),
  'prepared_xacts=' || (SELECT count(*) FROM pg_prepared_xacts),
  'rows=' || {row_counts}
)
"""

# Through the server: what a request on the pooled connection sees of the session.
PROBE_SQL = """SELECT current_setting('default_transaction_read_only') AS default_read_only,
       current_setting('transaction_read_only') AS read_only,
       current_setting('statement_timeout') AS statement_timeout,
       current_setting('search_path') AS search_path,
       current_setting('role') AS role, current_user::text AS cur_user, session_user::text AS sess_user,
       current_setting('application_name') AS application_name,
       current_setting('work_mem') AS work_mem,
       (SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()) AS advisory_locks,
       (SELECT count(*) FROM pg_prepared_statements) AS prepared_statements,
       (SELECT count(*) FROM pg_cursors) AS cursors,
       (SELECT count(*) FROM pg_listening_channels()) AS listening,
       pg_my_temp_schema()::text AS temp_schema,
       (SELECT count(*) FROM pg_class WHERE relpersistence = 't') AS temp_relations,
       pg_backend_pid() AS pid"""


@pytest.fixture(scope="module")
def adversarial_objects(pg):
    pg.psql(SETUP_SQL)
    yield
    # The module's servers are stopped first (they depend on this fixture); free the schema.
    pg.psql("SET client_min_messages = warning; DROP SCHEMA IF EXISTS adversarial CASCADE")


class PsqlSession:
    """One long-lived superuser psql process: the fingerprint runs after every case, and a fresh psql
    per call would cost more than the case itself."""

    MARK = "__adversarial_done__"

    def __init__(self, pg):
        self.proc = subprocess.Popen(
            [str(pg.bindir / "psql"), "-X", "-q", "-A", "-t", "-h", str(pg.sockdir), "-p", str(pg.port),
             "-U", pg.superuser, "-d", DB_NAME],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            env=pg._pg_env(), bufsize=1)

    def query(self, sql: str) -> str:
        assert self.proc.poll() is None, "the superuser psql session died"
        self.proc.stdin.write(sql.rstrip().rstrip(";") + ";\n\\echo " + self.MARK + "\n")
        self.proc.stdin.flush()
        lines = []
        while True:
            line = self.proc.stdout.readline()
            assert line, "the superuser psql session closed"
            if line.rstrip("\n") == self.MARK:
                return "\n".join(lines)
            lines.append(line.rstrip("\n"))

    def close(self) -> None:
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture(scope="module")
def fingerprint(pg, adversarial_objects):
    tables = pg.psql("""SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c
                        JOIN pg_namespace n ON n.oid = c.relnamespace
                        WHERE c.relkind = 'r' AND n.nspname IN ('reporting', 'fleet', 'infrastructure', 'adversarial')
                        ORDER BY 1""").splitlines()
    counts = "concat_ws(',', " + ", ".join(f"'{t}:' || (SELECT count(*) FROM {t})" for t in tables) + ")"
    sql = FINGERPRINT_SQL.replace("{role}", RO_ROLE).replace("{row_counts}", counts)

    session = PsqlSession(pg)

    def take() -> str:
        return session.query(sql)
    yield take
    session.close()


@dataclass
class Baseline:
    fingerprint: str
    probe: dict


def probe(srv) -> dict:
    res = srv.query(PROBE_SQL)
    assert res["row_count"] == 1
    return res["rows"][0]


@pytest.fixture(scope="module")
def corpus_server(server_factory, adversarial_objects):
    srv = server_factory(MCP_POOL_MAX="1", MCP_STATEMENT_TIMEOUT_MS=STATEMENT_TIMEOUT_MS)
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def baseline(corpus_server, fingerprint) -> Baseline:
    return Baseline(fingerprint(), probe(corpus_server))


def check_sql(sql: str) -> tuple[bool, str]:
    """(allowed, reason) from `analytics-mcp check-sql`, with the corpus server's policy."""
    r = run_binary(["check-sql", sql], env={"MCP_STATEMENT_TIMEOUT_MS": STATEMENT_TIMEOUT_MS})
    out = r.stdout.strip()
    assert r.returncode in (0, 1), (r.returncode, r.stdout, r.stderr)
    if r.returncode == 0:
        assert out == "ALLOW", out
        return True, ""
    assert out.startswith("REJECT: "), out
    return False, out[len("REJECT: "):]


def diff_lines(before: str, after: str) -> str:
    b, a = before.splitlines(), after.splitlines()
    return "; ".join(f"{x!r} -> {y!r}" for x, y in zip(b, a) if x != y) or f"{before!r} -> {after!r}"


def assert_untouched(srv, baseline: Baseline, fingerprint, *, same_pid: bool, what: str) -> None:
    """The database fingerprint and the next request's view of the session equal the baseline.
    On a difference the baseline moves on, so one failure does not cascade into the next cases."""
    after_fp = fingerprint()
    after_probe = probe(srv)  # also proves the server is still answering
    fp_before, probe_before = baseline.fingerprint, baseline.probe
    baseline.fingerprint, baseline.probe = after_fp, after_probe
    assert after_fp == fp_before, f"{what}: database changed: {diff_lines(fp_before, after_fp)}"
    settings_before = {k: v for k, v in probe_before.items() if k != "pid"}
    settings_after = {k: v for k, v in after_probe.items() if k != "pid"}
    assert settings_after == settings_before, f"{what}: session state leaked into the next request"
    if same_pid:
        assert after_probe["pid"] == probe_before["pid"], \
            f"{what}: the pooled connection was replaced (pid {probe_before['pid']} -> {after_probe['pid']})"


def call_query(srv, sql: str) -> tuple[bool, str, dict]:
    """(isError, text, result) of one query call that must be a well-formed tool result either way."""
    env = srv.call_tool_envelope("query", {"sql": sql})
    assert "error" not in env, f"{sql!r}: JSON-RPC error {env['error']}"
    res = env["result"]
    assert isinstance(res.get("content"), list) and res["content"][0]["type"] == "text", res
    text = res["content"][0]["text"]
    is_error = bool(res.get("isError"))
    if not is_error:
        assert loads_exact(text) == res["structuredContent"], "text block must mirror structuredContent"
    return is_error, text, res


# ── the corpus, end to end ─────────────────────────────────────────────────────

@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_corpus_case(case: Case, corpus_server, baseline, fingerprint):
    srv = corpus_server
    is_error, text, res = call_query(srv, case.sql)
    outcome = f"isError={is_error}: {text[:300]}"
    # Hard for every case, known gap or not: nothing changed, the next request sees a pristine session.
    assert_untouched(srv, baseline, fingerprint, same_pid=case.gap is None, what=f"{case.sql!r} ({outcome})")

    cli_ok = "\0" not in case.sql  # argv cannot carry a NUL byte
    if case.expect == "allow":
        if is_error and case.gap:
            pytest.xfail(f"{case.gap} -- got {outcome}")
        assert not is_error, f"legitimate query refused: {outcome}"
        assert res["structuredContent"]["row_count"] >= 0
        if cli_ok:
            allowed, reason = check_sql(case.sql)
            assert allowed, f"check-sql refused a legitimate query: {reason}"
        return

    if case.layer == "db":
        # The database is the layer that refuses today: it must keep doing so.
        m = SQLSTATE_SUFFIX.search(text)
        assert is_error and m, f"expected a database refusal, got {outcome}"
        if case.sqlstate:
            assert m.group(1) == case.sqlstate, f"expected SQLSTATE {case.sqlstate}, got {outcome}"

    allowed, reason = check_sql(case.sql) if cli_ok else (None, None)
    if case.gap:
        if allowed is False and is_error and text == reason:
            return  # the gap is closed: the guard refuses it now
        pytest.xfail(f"{case.gap} -- got {outcome}")

    if case.layer == "guard":
        assert is_error, f"attack was not refused: {outcome}"
        assert not SQLSTATE_SUFFIX.search(text), f"expected the guard to refuse it, the database did: {text}"
        if cli_ok:
            assert allowed is False, "check-sql ALLOWs what the server's guard refused"
            assert text == reason, (text, reason)
    else:
        if cli_ok:
            assert allowed is True, f"corpus says the database refuses this, but check-sql rejects it: {reason}"


# ── size bombs the guard cannot see stay bounded ───────────────────────────────

@pytest.mark.parametrize("sql", [
    "SELECT repeat('x', 1000000) || repeat('x', 1000000) AS two_mb",
    "SELECT repeat('x', 1000 * 1000 * 20) AS twenty_mb",
    "SELECT array_fill(1, ARRAY[1000 * 1000 * 5]) AS five_m_ints",
    "SELECT repeat('x', 900000) FROM generate_series(1, 50)",
])
def test_unguarded_size_bombs_are_cut_before_our_memory(corpus_server, baseline, fingerprint, sql):
    r = corpus_server.call_tool_envelope("query", {"sql": sql})
    assert "result" in r, r
    res = r["result"]
    body = res["content"][0]["text"]
    assert len(body) < 1_200_000, "a result larger than MCP_MAX_RESULT_BYTES reached the client"
    if not res.get("isError"):
        assert res["structuredContent"]["truncated"] is True
        assert res["structuredContent"]["truncated_reason"] == "max_bytes"
    assert_untouched(corpus_server, baseline, fingerprint, same_pid=True, what=sql)


# ── session hygiene: back doors the guard cannot see, cleaned per request ──────

@pytest.fixture
def hygiene_server(start_server, adversarial_objects):
    """A fresh one-connection server per test, so a leak cannot spill into other tests."""
    srv = start_server(MCP_POOL_MAX="1", MCP_STATEMENT_TIMEOUT_MS=STATEMENT_TIMEOUT_MS)
    return srv, probe(srv)


def ro_advisory_locks(pg) -> int:
    return int(pg.psql(f"""SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
                          WHERE l.locktype = 'advisory' AND a.usename = '{RO_ROLE}'"""))


def assert_pristine(srv, before: dict, what: str) -> dict:
    after = probe(srv)
    assert after == before, f"{what} left a trace on the next request: " + \
        ", ".join(f"{k}: {before[k]!r} -> {after[k]!r}" for k in before if before[k] != after.get(k))
    return after


@pytest.mark.parametrize("sql", [
    "SELECT set_config('search_path', 'adversarial_leak', false)",
    "SELECT set_config('default_transaction_read_only', 'off', false)",
    "SELECT set_config('statement_timeout', '0', false)",
])
def test_set_config_is_refused_by_the_guard(hygiene_server, sql):
    srv, before = hygiene_server
    text = srv.tool_error("query", {"sql": sql})
    assert "set_config" in text and not SQLSTATE_SUFFIX.search(text)
    assert_pristine(srv, before, sql)


def test_session_set_config_inside_a_function_does_not_survive_the_request(hygiene_server, pg):
    srv, before = hygiene_server
    res = srv.query("SELECT adversarial.fn_set_config() AS inside")
    assert res["rows"][0]["inside"] == "adversarial_leak;77kB", "the back door did not run"
    after = assert_pristine(srv, before, "set_config(..., false) in a function")
    assert after["search_path"] == before["search_path"] and after["work_mem"] == before["work_mem"]
    assert after["default_read_only"] == "on"
    app = pg.psql(f"SELECT string_agg(DISTINCT application_name, ',') FROM pg_stat_activity WHERE pid = {after['pid']}")
    assert app != "adversarial_leak"


def test_set_inside_a_function_does_not_survive_the_request(hygiene_server):
    srv, before = hygiene_server
    res = srv.query("SELECT adversarial.fn_exec_set() AS inside")
    assert res["rows"][0]["inside"] == "adversarial_leak;78kB"
    assert_pristine(srv, before, "SET in a function")


@pytest.mark.parametrize("sql", [
    "SET search_path = adversarial_leak", "SET SESSION work_mem = '64kB'", "SET LOCAL statement_timeout = 0",
    "SET ROLE postgres", "SET SESSION AUTHORIZATION postgres", "RESET ALL",
    "SET TRANSACTION READ WRITE", "SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE",
])
def test_set_statements_are_refused_and_leave_no_trace(hygiene_server, sql):
    srv, before = hygiene_server
    text = srv.tool_error("query", {"sql": sql})
    assert not SQLSTATE_SUFFIX.search(text), f"the guard should refuse {sql!r}: {text}"
    assert_pristine(srv, before, sql)


def test_advisory_locks_taken_indirectly_are_released_after_the_request(hygiene_server, pg):
    srv, before = hygiene_server
    res = srv.query("SELECT adversarial.fn_lock(42) AS held_inside")
    assert res["rows"][0]["held_inside"] >= 3, "the function did not take the locks it claims"
    # The superuser sees no advisory lock held by any backend of the role...
    assert ro_advisory_locks(pg) == 0
    # ...can take the very same key without waiting...
    assert pg.psql("SELECT pg_try_advisory_lock(42) AND pg_try_advisory_lock(43) AND pg_try_advisory_lock(44)") == "t"
    # ...and the next request on the same connection holds none either.
    assert_pristine(srv, before, "pg_advisory_lock() in a function")


def test_guarded_advisory_lock_is_refused(hygiene_server, pg):
    srv, before = hygiene_server
    text = srv.tool_error("query", {"sql": "SELECT pg_advisory_lock(42)"})
    assert "pg_advisory_lock" in text and "ROLLBACK" in text
    assert ro_advisory_locks(pg) == 0
    assert_pristine(srv, before, "pg_advisory_lock()")


def test_transaction_level_advisory_lock_ends_with_the_request(hygiene_server, pg):
    srv, before = hygiene_server
    res = srv.query("SELECT pg_advisory_xact_lock(7) AS v, (SELECT count(*) FROM pg_locks "
                    "WHERE locktype = 'advisory' AND pid = pg_backend_pid()) AS held")
    assert res["rows"][0]["held"] == 1
    assert ro_advisory_locks(pg) == 0
    assert_pristine(srv, before, "pg_advisory_xact_lock()")


@pytest.mark.parametrize("sql", [
    "PREPARE adversarial_p AS SELECT 1", "EXECUTE adversarial_p", "DEALLOCATE ALL",
    "DECLARE c CURSOR WITH HOLD FOR SELECT 1", "DECLARE c CURSOR FOR SELECT * FROM reporting.canary",
    "FETCH ALL FROM c", "CLOSE ALL",
    "LISTEN adversarial_chan", "UNLISTEN *", "NOTIFY adversarial_chan",
])
def test_session_statements_are_refused_by_the_guard(hygiene_server, sql):
    srv, before = hygiene_server
    text = srv.tool_error("query", {"sql": sql})
    assert not SQLSTATE_SUFFIX.search(text), text  # the guard's words, not a database error
    assert_pristine(srv, before, sql)


def test_prepared_statement_created_inside_a_function_does_not_survive(hygiene_server):
    srv, before = hygiene_server
    assert srv.query("SELECT adversarial.fn_prepare() AS r")["rows"][0]["r"] == "prepared"
    assert_pristine(srv, before, "PREPARE in a function")


def test_cursors_opened_inside_a_function_do_not_survive(hygiene_server):
    srv, before = hygiene_server
    res = srv.query("SELECT adversarial.fn_cursor() AS open_inside")
    assert res["rows"][0]["open_inside"] >= 2, "the function did not open its cursors"
    assert_pristine(srv, before, "OPEN / DECLARE … WITH HOLD in a function")


def test_listen_inside_a_function_does_not_survive(hygiene_server):
    srv, before = hygiene_server
    srv.query("SELECT adversarial.fn_listen() AS n")  # LISTEN takes effect only at COMMIT
    assert_pristine(srv, before, "LISTEN in a function")


@pytest.mark.parametrize("sql", [
    "CREATE TEMP TABLE adversarial_tmp (x integer)", "SELECT 1 AS x INTO TEMP adversarial_tmp",
    "CREATE TEMP TABLE adversarial_tmp AS SELECT 1",
])
def test_temp_table_statements_are_refused_by_the_guard(hygiene_server, sql):
    srv, before = hygiene_server
    text = srv.tool_error("query", {"sql": sql})
    assert not SQLSTATE_SUFFIX.search(text), text
    assert_pristine(srv, before, sql)


def test_temp_table_cannot_exist_because_the_transaction_is_read_only(hygiene_server, pg):
    srv, before = hygiene_server
    text = srv.tool_error("query", {"sql": "SELECT adversarial.fn_temp()"})
    assert text.endswith("(25006)") and "read-only transaction" in text, text
    after = assert_pristine(srv, before, "CREATE TEMP TABLE in a function")
    assert after["temp_schema"] == "0" and after["temp_relations"] == 0
    assert pg.psql("SELECT count(*) FROM pg_class WHERE relname = 'adversarial_tmp'") == "0"


def test_large_object_created_in_the_rolled_back_transaction_is_gone(hygiene_server, pg):
    """lo_create is not stopped by a read-only transaction (the guard refuses lo_* by name); ROLLBACK is."""
    srv, before = hygiene_server
    lo_before = pg.psql("SELECT count(*) FROM pg_largeobject_metadata")
    res = srv.query("SELECT adversarial.fn_lo() AS oid")
    assert res["rows"][0]["oid"] is not None
    assert pg.psql("SELECT count(*) FROM pg_largeobject_metadata") == lo_before
    assert_pristine(srv, before, "lo_create in a function")


def test_write_attempts_keep_the_connection(hygiene_server, canary):
    srv, before = hygiene_server
    checksum = canary()
    for sql in ("SELECT reporting.fn_purge_canary()", "SELECT adversarial.fn_read_write()",
                "SELECT adversarial.fn_nextval()", "SELECT adversarial.fn_insert()"):
        text = srv.tool_error("query", {"sql": sql})
        assert SQLSTATE_SUFFIX.search(text).group(1) in ("25006", "25001"), text
        before = assert_pristine(srv, before, sql)
    assert canary() == checksum


def test_setseed_is_refused_so_no_request_decides_the_next_ones_random(hygiene_server):
    srv, before = hygiene_server
    text = srv.tool_error("query", {"sql": "SELECT setseed(0.25)"})
    assert "setseed" in text, text
    assert_pristine(srv, before, "SELECT setseed(0.25)")


def test_refused_functions_cannot_reach_other_sessions(hygiene_server, pg):
    srv, before = hygiene_server
    victim = subprocess.Popen(
        [str(pg.bindir / "psql"), "-X", "-q", "-A", "-t", pg.ro_dsn, "-c", "SELECT pg_sleep(20)"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        def victim_pid():
            return pg.psql(f"SELECT pid FROM pg_stat_activity WHERE usename = '{RO_ROLE}' "
                           "AND query = 'SELECT pg_sleep(20)' AND state = 'active'")
        pid = int(wait_until(victim_pid, 10, "the victim session to start"))
        for sql in (f"SELECT ({pid}).pg_terminate_backend",
                    f"SELECT * FROM ts_stat('SELECT to_tsvector(pg_terminate_backend({pid})::text)')",
                    f"SELECT 1 --x\r, pg_terminate_backend({pid})"):
            is_error, text, _ = call_query(srv, sql)
            assert victim.poll() is None, f"{sql!r} killed another session of the role ({text[:200]})"
    finally:
        if victim.poll() is None:
            pg.psql(f"SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE usename = '{RO_ROLE}' "
                    "AND query = 'SELECT pg_sleep(20)'")
        victim.wait(timeout=10)


# ── guard cost: linear in the input ────────────────────────────────────────────

@pytest.mark.parametrize("depth", [1000, 10_000])
def test_deeply_nested_sql_gets_a_verdict_not_a_crash(depth):
    # How the guard's time grows with depth (linearly) is measured by bench/guard_scaling.py;
    # here: the deepest input an argument may carry gets an ordinary verdict, no stack overflow.
    sql = "SELECT " + "f(" * depth + "1" + ")" * depth
    allowed, reason = check_sql(sql)
    assert allowed or reason, "a refusal says why"


# ── deterministic end-to-end fuzz ──────────────────────────────────────────────

FUZZ_PIECES = [
    "SELECT", "select", "WITH", "VALUES", "TABLE", " ", "  ", "\n", "\r", "\t", "'", "''", "\"", "\"\"", "$$", "$a$",
    "$1", "--", "/*", "*/", "(", ")", ";", ",", ".", "E'", "\\", "U&\"", "U&'", "UESCAPE", "'!'", "\\0070",
    "with", "as", "for", "update", "share", "into", "delete", "insert", "materialized", "not", "recursive",
    "pg_sleep(0.01)", "pg_sleep", "repeat", "lpad", "1e9", "1000", "0", "-1", "::", "::text", "é", "🚀", "שלום",
    "\u00a0", "\u200b", "\ufeff", "x", "*", "FROM", "WHERE", "fleet.vehicles", "reporting.canary",
    "infrastructure.secrets", "reporting.fn_purge_canary()", "set_config", "pg_advisory_lock", "nextval",
    "ts_stat", "generate_series(1,3)", "1", "ORDER BY 1", "LIMIT 1", "UNION", "COMMIT", "BEGIN", "DROP",
    "FOR UPDATE", "SELECT 1", "doc ->> 'a'", "\"drop\"", "CASE WHEN true THEN 1 END", "= ANY(ARRAY[1])",
]


def fuzz_inputs(n: int = 300, seed: int = 20261122) -> list[str]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        parts = [rng.choice(FUZZ_PIECES) for _ in range(rng.randint(1, 14))]
        if rng.random() < 0.5:
            parts.insert(0, "SELECT ")
        s = "".join(p + (" " if rng.random() < 0.4 else "") for p in parts)
        if rng.random() < 0.1:  # a stray raw byte-ish character
            pos = rng.randrange(len(s) + 1)
            s = s[:pos] + chr(rng.choice([0x1, 0x7f, 0xad, 0x2028, 0xfffd])) + s[pos:]
        out.append(s)
    return out


def test_fuzz_every_input_gets_a_well_formed_answer(server_factory, adversarial_objects, pg, canary, fingerprint):
    srv = server_factory(MCP_POOL_MAX="2", MCP_STATEMENT_TIMEOUT_MS="200")
    try:
        before_canary, before_fp = canary(), fingerprint()
        inputs = fuzz_inputs()
        deadline = time.monotonic() + 60
        outcomes = {"ok": 0, "error": 0}
        for sql in inputs:
            assert time.monotonic() < deadline, "fuzz overran its overall deadline"
            env = srv.call_tool_envelope("query", {"sql": sql})  # asserts HTTP 200 + JSON-RPC envelope
            assert "result" in env, f"{sql!r}: JSON-RPC error {env.get('error')}"
            res = env["result"]
            assert isinstance(res.get("content"), list) and res["content"][0]["type"] == "text", res
            if res.get("isError"):
                outcomes["error"] += 1
                assert res["content"][0]["text"].strip(), sql
            else:
                outcomes["ok"] += 1
                assert isinstance(res["structuredContent"]["rows"], list)
        assert outcomes["ok"] + outcomes["error"] == len(inputs)
        assert srv.proc.poll() is None, "the server died during the fuzz"
        assert srv.query("SELECT 1 AS one")["rows"] == [{"one": 1}]
        assert canary() == before_canary
        assert fingerprint() == before_fp
        assert ro_advisory_locks(pg) == 0
    finally:
        srv.stop()
