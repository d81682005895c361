"""The guard's function table (DANGEROUS_FUNCTIONS in main.rs), audited against the real catalogs.

Method (the README's security model explains it): in a database with every audited extension
(conftest.AUDITED_EXTENSIONS), list every function an analyst's SELECT could call — PostgreSQL 15's
pg_catalog and every extension's members, minus what SQL cannot call (trigger, handler and
`internal` functions; procedures need CALL, which the guard refuses) — and flag those that
  * carry a side-effect marker: VOLATILE or PARALLEL UNSAFE;
  * take SQL-like text: a text/name argument named like sql, query, expression, table, relation …;
  * EXECUTE one of their own arguments (PL/pgSQL), i.e. run the caller's text as SQL;
  * are written in SQL or PL/pgSQL and call a function the guard refuses.
Each flagged function must be refused by the guard by name, or be on the reviewed allow-list
(tests/guard_audit_allowed.tsv) with a reason — except SQL/PL-pgSQL functions whose only flag is
the marker: their statements run under READ ONLY and they call nothing refused. A function that
runs its own argument as SQL can never be allowed. pg_cron (needs shared_preload_libraries) is
audited from its install scripts, TimescaleDB (not packaged by Debian) from a reviewed list of its
API (tests/guard_audit_timescaledb.tsv).

Plus what refusing by name cannot cover: the per-call cleanup resets hypopg and dblink state a
function the guard cannot see may leave on the pooled connection; SQL injection through PostGIS
raster's table-name arguments is refused; topology edits (C functions writing through SPI) fail
under READ ONLY.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from conftest import RO_ROLE, binary_path, clean_env

HERE = Path(__file__).resolve().parent
ALLOWED_TSV = HERE / "guard_audit_allowed.tsv"
TIMESCALEDB_TSV = HERE / "guard_audit_timescaledb.tsv"
REASONS = {"reads", "transaction", "own-session", "read-only-tx", "bounded"}
UNCALLABLE_RETURN_TYPES = ("trigger", "event_trigger", "internal", "language_handler", "fdw_handler",
                           "index_am_handler", "table_am_handler", "tsm_handler")

AUDIT_SQL = r"""
SELECT coalesce(json_agg(f ORDER BY f.extension, f.function), '[]') FROM (
  SELECT coalesce(e.extname, 'core') AS extension, n.nspname AS schema, p.proname AS function,
         bool_or(p.provolatile = 'v' OR p.proparallel = 'u') AS marked,
         bool_or(EXISTS (SELECT 1 FROM unnest(p.proargnames, p.proargtypes::oid[]) AS a(name, type)
                 WHERE a.type IN ('text'::regtype, 'varchar'::regtype, 'name'::regtype, 'cstring'::regtype)
                   AND a.name ~* '(sql|query|expr|criteria|command|statement|callback|table|relation)')) AS sql_like_argument,
         bool_or(l.lanname = 'plpgsql' AND EXISTS (
                 SELECT 1 FROM unnest(coalesce(p.proargnames, '{}'::text[])) WITH ORDINALITY AS a(name, i)
                 WHERE p.prosrc ~* ('\mEXECUTE\s+\(?\s*(' || CASE WHEN a.name <> '' THEN a.name || '|' ELSE '' END
                                    || '\$' || a.i || ')\M'))) AS executes_argument,
         array_agg(DISTINCT l.lanname) AS languages,
         string_agg(CASE WHEN l.lanname IN ('sql', 'plpgsql') THEN p.prosrc END, ' ') AS body
  FROM pg_proc p
  JOIN pg_namespace n ON n.oid = p.pronamespace
  JOIN pg_language l ON l.oid = p.prolang
  LEFT JOIN pg_depend d ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e'
  LEFT JOIN pg_extension e ON e.oid = d.refobjid
  WHERE (n.nspname = 'pg_catalog' OR e.oid IS NOT NULL)
    AND p.prokind IN ('f', 'a', 'w')
    AND p.prorettype::regtype::text NOT IN (%s)
    AND NOT 'internal'::regtype = ANY (p.proargtypes::oid[])
  GROUP BY 1, 2, 3
) f
""" % ", ".join(f"'{t}'" for t in UNCALLABLE_RETURN_TYPES)


def check_sql_many(statements: list[str]) -> list[str]:
    """The guard's verdict on each statement (one per line), from the real binary."""
    r = subprocess.run([str(binary_path()), "check-sql", "-"], input="".join(s + "\n" for s in statements),
                       capture_output=True, text=True, env=clean_env(), timeout=60)
    assert r.returncode in (0, 1), r.stderr
    lines = r.stdout.splitlines()
    assert len(lines) == len(statements), (len(lines), len(statements), r.stderr)
    return lines


def refused_by_name(verdict: str) -> bool:
    # pg_sleep, repeat, lpad and rpad have argument rules; only "function f() is not allowed: …"
    # is a refusal by name.
    return verdict.startswith("REJECT: function ") and "() is not allowed: " in verdict


def select_call(schema: str | None, function: str) -> str:
    return f'SELECT "{schema}"."{function}"()' if schema else f'SELECT "{function}"()'


def load_allowed() -> dict[tuple[str, str], tuple[str, str]]:
    allowed = {}
    for line in ALLOWED_TSV.read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        fields = line.split("\t")
        assert len(fields) in (3, 4), f"guard_audit_allowed.tsv: malformed line {line!r}"
        key = (fields[0], fields[1])
        assert key not in allowed, f"guard_audit_allowed.tsv: {key} listed twice"
        allowed[key] = (fields[2], fields[3] if len(fields) == 4 else "")
    return allowed


@pytest.fixture(scope="module")
def audit(pg, extension_db):
    """Every flagged function, each with the guard's verdict on a call qualified by its schema and,
    where the schema is on the default search_path, unqualified too."""
    functions = json.loads(pg.psql(AUDIT_SQL, db=extension_db))
    qualified = check_sql_many([select_call(f["schema"], f["function"]) for f in functions])
    plain = check_sql_many([select_call(None, f["function"]) for f in functions])
    callees = [{n.lower() for n in re.findall(r"([A-Za-z_][A-Za-z0-9_$]*)\s*\(", f["body"] or "")}
               for f in functions]
    every_callee = sorted(set().union(*callees))
    refused_callees = {name for name, v in zip(every_callee, check_sql_many(
        [select_call(None, n) for n in every_callee])) if refused_by_name(v)}
    for f, q, u, names in zip(functions, qualified, plain, callees):
        f["refused"] = refused_by_name(q)
        f["refused_unqualified"] = refused_by_name(u)
        f["calls_refused"] = sorted(names & refused_callees - {f["function"]})
        f["flagged"] = f["marked"] or f["sql_like_argument"] or f["executes_argument"] or bool(f["calls_refused"])
    return [f for f in functions if f["flagged"]]


def test_audit_sees_core_and_every_audited_extension(audit, pg, extension_db):
    extensions = {f["extension"] for f in audit}
    # the ones whose functions carry markers (many extensions only add types and operators)
    for expected in ("core", "postgis", "postgis_raster", "postgis_topology", "hypopg", "pg_partman", "pg_repack",
                     "dblink", "pg_stat_statements", "pg_prewarm", "pgstattuple", "pg_visibility", "amcheck",
                     "pg_surgery", "tablefunc", "postgres_fdw", "adminpack", "pageinspect"):
        assert expected in extensions, f"no flagged function of {expected}: did the audit database load it?"
    assert len(audit) > 500, len(audit)


def test_every_flagged_function_is_refused_or_reviewed(audit):
    allowed = load_allowed()
    problems = []
    for f in audit:
        key = (f["extension"], f["function"])
        where = f'{f["extension"]}: {f["schema"]}.{f["function"]}()'
        if f["refused"]:
            if key in allowed:
                problems.append(f"{where} is refused by the guard but still on guard_audit_allowed.tsv")
            continue
        if f["executes_argument"]:
            problems.append(f"{where} runs its own argument as SQL: add it to DANGEROUS_FUNCTIONS")
            continue
        if key in allowed:
            continue
        auto = set(f["languages"]) <= {"sql", "plpgsql"} and not f["sql_like_argument"] and not f["calls_refused"]
        if auto:
            continue
        why = ", ".join(filter(None, [
            "VOLATILE/PARALLEL UNSAFE" if f["marked"] else "",
            "takes SQL-like text" if f["sql_like_argument"] else "",
            f"calls {', '.join(f['calls_refused'])}" if f["calls_refused"] else "",
        ]))
        problems.append(f"{where} ({why}; {'/'.join(f['languages'])}) is neither refused by the guard nor "
                        "reviewed in tests/guard_audit_allowed.tsv")
    assert not problems, "\n".join(problems)


def test_allow_list_is_current(audit, pg, extension_db):
    allowed = load_allowed()
    flagged = {(f["extension"], f["function"]) for f in audit}
    installed = set(pg.psql("SELECT extname FROM pg_extension", db=extension_db).split()) | {"core"}
    stale = [f"{ext}.{fn}" for (ext, fn) in allowed if ext in installed and (ext, fn) not in flagged]
    assert not stale, f"guard_audit_allowed.tsv lists functions the audit does not flag (renamed or gone?): {stale}"
    bad = {k: v for k, v in allowed.items() if v[0] not in REASONS}
    assert not bad, f"unknown reasons (expected one of {sorted(REASONS)}): {bad}"


def test_refusals_hold_without_schema_qualification(audit):
    # A function in public or pg_catalog can be called unqualified; refusing by name must hold then
    # too. (Extension schemas refused as a whole — cron, repack, TimescaleDB's internals — are off
    # the search path: calling them needs the schema.)
    leaks = [f'{f["schema"]}.{f["function"]}' for f in audit
             if f["refused"] and f["schema"] in ("public", "pg_catalog") and not f["refused_unqualified"]]
    assert not leaks, leaks


def test_every_pg_cron_function_is_refused(pg):
    sharedir = Path(pg.psql("SELECT setting FROM pg_config WHERE name = 'SHAREDIR'"))
    scripts = sorted((sharedir / "extension").glob("pg_cron--*.sql"))
    assert scripts, f"pg_cron is not installed under {sharedir} (tests/system-deps.sh installs postgresql-15-cron)"
    names = set()
    for script in scripts:
        names |= {m.lower() for m in re.findall(r"CREATE\s+(?:OR\s+REPLACE\s+)?FUNCTION\s+cron\.(\w+)\s*\(",
                                                script.read_text(), flags=re.I)}
    assert {"schedule", "unschedule", "alter_job"} <= names, names
    verdicts = check_sql_many([select_call("cron", n) for n in sorted(names)])
    allowed = [n for n, v in zip(sorted(names), verdicts) if not refused_by_name(v)]
    assert not allowed, allowed


def test_timescaledb_api_verdicts():
    rows = [line.split("\t") for line in TIMESCALEDB_TSV.read_text().splitlines()
            if line.strip() and not line.startswith("#")]
    assert len(rows) > 200
    verdicts = check_sql_many([select_call(None if schema == "public" else schema, fn) for schema, fn, _, _ in rows])
    wrong = [f"{schema}.{fn}: expected {want}, guard says {v}" for (schema, fn, want, _), v in zip(rows, verdicts)
             if ("refused" if refused_by_name(v) else "allowed") != want]
    assert not wrong, "\n".join(wrong)


# ── what refusing by name cannot cover ─────────────────────────────────────────────────────────

@pytest.fixture(scope="module")
def hygiene_server(pg, extension_db, server_factory):
    """Functions that leave state in the session from inside, where the guard cannot see: a
    hypothetical index (hypopg) and dblink connections, named and unnamed. One pooled connection, so
    consecutive calls share a backend."""
    dsn = f"host=127.0.0.1 port={pg.port} dbname={extension_db} user={RO_ROLE} password={pg.ro_password}"
    pg.psql(f"""
        SET client_min_messages = warning;
        CREATE SCHEMA hygiene;
        CREATE TABLE hygiene.t (a int);
        CREATE FUNCTION hygiene.leave_traces() RETURNS text LANGUAGE sql AS $$
          SELECT (SELECT indexname FROM public.hypopg_create_index('CREATE INDEX ON hygiene.t (a)'))
                 || ' ' || public.dblink_connect('leaked', '{dsn}')
                 || ' ' || public.dblink_connect('{dsn}') $$;
        CREATE FUNCTION hygiene.traces() RETURNS text LANGUAGE plpgsql AS $$
        DECLARE unnamed text := 'closed';
        BEGIN
          BEGIN PERFORM * FROM public.dblink('SELECT 1') AS t(x int); unnamed := 'open';
          EXCEPTION WHEN OTHERS THEN NULL; END;
          RETURN format('hypothetical=%s named=%s unnamed=%s', (SELECT count(*) FROM public.hypopg()),
                        coalesce(array_length(public.dblink_get_connections(), 1), 0), unnamed);
        END $$;
        GRANT USAGE ON SCHEMA hygiene TO {RO_ROLE};
        GRANT SELECT ON hygiene.t TO {RO_ROLE};
        GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA hygiene TO {RO_ROLE};
        CREATE SCHEMA raster_attack;
        CREATE TABLE raster_attack.tiles (rast raster);
        INSERT INTO raster_attack.tiles SELECT st_addband(st_makeemptyraster(2, 2, 0, 0, 1), '8BUI'::text, 1, 0);
        GRANT USAGE ON SCHEMA raster_attack TO {RO_ROLE};
        GRANT SELECT ON raster_attack.tiles TO {RO_ROLE};
        SELECT topology.createtopology('audit_topo', 0);
        GRANT USAGE ON SCHEMA topology, audit_topo TO {RO_ROLE};
        GRANT SELECT ON ALL TABLES IN SCHEMA topology, audit_topo TO {RO_ROLE};
    """, db=extension_db)
    srv = server_factory(DATABASE_URL=pg.ro_dsn_for(extension_db), MCP_POOL_MAX="1")
    yield srv
    srv.stop()


def test_cleanup_resets_hypopg_and_closes_dblink_connections(hygiene_server):
    first = hygiene_server.query("SELECT hygiene.leave_traces() AS made, hygiene.traces() AS seen, "
                                 "pg_backend_pid() AS pid")["rows"][0]
    assert first["seen"] == "hypothetical=1 named=1 unnamed=open", first
    second = hygiene_server.query("SELECT hygiene.traces() AS seen, pg_backend_pid() AS pid")["rows"][0]
    assert second["pid"] == first["pid"], "the test needs both calls on the same pooled connection"
    assert second["seen"] == "hypothetical=0 named=0 unnamed=closed", second


@pytest.mark.parametrize("sql", [
    # the coverage form splices the table name into SQL it runs: an injected advisory lock would
    # outlive the statement (the cleanup releases it, but other refused functions fit the same hole)
    """SELECT * FROM _st_valuecount('raster_attack"."tiles" WHERE pg_advisory_lock(4242) IS NOT NULL --', 'rast', 1, true, NULL, 0)""",
    """SELECT (st_valuecount('raster_attack.tiles', 'rast', 1, 0)).*""",
    """SELECT st_valuepercent('raster_attack.tiles', 'rast', 1, 0)""",
    """SELECT _add_raster_constraint('x', 'SELECT pg_advisory_lock(4242)')""",
    """SELECT st_mapalgebra(rast, 1, NULL, 'pg_advisory_lock(4242)') FROM raster_attack.tiles""",
])
def test_sql_through_postgis_text_arguments_is_refused(hygiene_server, sql):
    text = hygiene_server.tool_error("query", {"sql": sql})
    assert "is not allowed" in text, text


def test_topology_edits_fail_under_read_only(hygiene_server, pg, extension_db):
    text = hygiene_server.tool_error("query", {"sql": "SELECT topology.st_addisonode('audit_topo', 0, 'POINT(1 1)')"})
    assert "25006" in text or "read-only" in text, text
    assert pg.psql("SELECT count(*) FROM audit_topo.node", db=extension_db) == "0"
