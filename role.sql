-- role.sql — the least-privilege PostgreSQL role that analytics-mcp connects as.
--
-- Usage (run as a superuser, or as an admin that owns/administers the listed objects):
--
--   psql "$ADMIN_DSN" -X -v ON_ERROR_STOP=1 \
--        -v ro_pw="$PW" -v schemas=reporting,tracksolid -v owners=tracksolid_owner,postgres \
--        [-v ro_role=analytics_ro] [-v conn_limit=20] \
--        [-v revoke_public_temp=on] [-v revoke_public_create=on] \
--        [-v withhold=tracksolid.drivers.phone,tracksolid.drivers.home_geom] [-v grant_new_columns=on] \
--        [-v analysts=alice,bob] [-v analyst_prefix=analyst_] \
--        -f role.sql
--
-- `-v ro_pw=...` puts the password on psql's command line, where `ps` can see it. bootstrap.sh
-- avoids that by feeding `\set ro_pw '...'` on stdin ahead of this file (`psql -f -`).
-- Don't run this file with `psql -L <file>`: a session log file records statements after
-- variable interpolation, and nothing inside this file can switch that off.
--
-- Variables
--   ro_pw                 required. Plaintext (>= 16 chars) or a pre-computed SCRAM-SHA-256
--                         verifier. md5 hashes are refused.
--   schemas               required. Comma list of the schemas analysts may read. A schema that
--                         does not exist is an error: a typo would otherwise leave analysts
--                         silently unable to see data.
--   owners                optional. Comma list of the roles that CREATE objects in those
--                         schemas (migration role, postgres, ...). Default privileges are keyed
--                         to the creating role, so a missing owner here means tables it creates
--                         later will NOT be readable. Owners that do not exist are skipped with
--                         a NOTICE.
--   ro_role               optional, default analytics_ro.
--   conn_limit            optional, default 20 (-1 = unlimited). Must be larger than the
--                         server's MCP_POOL_MAX times the number of server instances.
--   revoke_public_temp    optional, default off. on = REVOKE TEMPORARY ON DATABASE FROM PUBLIC.
--                         This affects EVERY role that relied on PUBLIC's TEMP, so it is
--                         opt-in. Leaving it off is safe: the role's sessions are read-only
--                         by default, and the server rolls back every transaction.
--   revoke_public_create  optional, default off. on = REVOKE CREATE FROM PUBLIC on the listed
--                         schemas and on schema public (PostgreSQL <= 14 granted it by default).
--   withhold              optional. Comma list of schema.table.column the readers must not read
--                         (names as stored: lowercase unless created quoted). Such a table gets
--                         column-level SELECT on each of its other columns and no table-level
--                         SELECT, and so do its partitions and inheritance children in the
--                         listed schemas. Withholding is sticky: a later run without the column
--                         in the list does not make it readable again (GRANT SELECT (col) ON ...
--                         does, or grant_new_columns=on below).
--   grant_new_columns     optional, default off. Columns added later to a table that withholds
--                         columns are NOT readable (PostgreSQL column grants do not extend to new
--                         columns, and re-runs keep it so, naming them in a NOTICE). on = grant
--                         SELECT on every column of the tables named in withhold except the
--                         listed ones.
--   analysts              optional. Comma list of analyst names (bearer-token names, OAuth
--                         identities). Each gets a NOLOGIN role <analyst_prefix><name> holding
--                         the read grants (and the withholding) above, and the login role
--                         becomes a NOINHERIT member of those roles with no grants of its own:
--                         alone it can read nothing, and analytics-mcp runs every call as the
--                         analyst's role (MCP_ANALYST_ROLES=analyst_{name}, SET LOCAL ROLE), so
--                         per-analyst grants and row-level security policies apply.
--                         Roles of analysts no longer listed are left as they are (NOTICE).
--   analyst_prefix        optional, default analyst_.
--
-- Properties
--   * Idempotent: every run converges on the same state. Re-running with a new ro_pw rotates
--     the password. Write privileges granted directly to the role are revoked again.
--   * Atomic: everything runs in one transaction. The closing self-check raises an exception
--     if anything is wrong, and that rolls back the whole run, password change included.
--   * The password never appears in this file or in psql's echo. It stays out of the server's
--     statement log too when a superuser runs the file; a non-superuser admin cannot switch
--     logging off and gets a NOTICE saying so (see "password handling" below).
--
-- Why so strict? analytics-mcp is read-only in four layers, and these grants are the only
-- one the analyst cannot switch off. default_transaction_read_only is a session GUC that any
-- role can override with `BEGIN READ WRITE`, and the server's SQL guard and rolled-back
-- transaction are application code. So the grants, and the self-check that proves them, must
-- hold up without the other three layers.

\set ON_ERROR_STOP on
-- Never echo statements: after variable interpolation a statement would show the password.
\set ECHO none
\set ECHO_HIDDEN off
-- Hide command tags (BEGIN, DO, ...). NOTICEs still go to stderr, so the run stays readable.
\set QUIET on

-- ---------------------------------------------------------------------------------------
-- psql variables: defaults and required checks (psql >= 10 for \if / :{?var})
-- ---------------------------------------------------------------------------------------
\if :{?ro_role}
\else
  \set ro_role analytics_ro
\endif
\if :{?conn_limit}
\else
  \set conn_limit 20
\endif
\if :{?owners}
\else
  \set owners ''
\endif
\if :{?revoke_public_temp}
\else
  \set revoke_public_temp off
\endif
\if :{?revoke_public_create}
\else
  \set revoke_public_create off
\endif
\if :{?withhold}
\else
  \set withhold ''
\endif
\if :{?grant_new_columns}
\else
  \set grant_new_columns off
\endif
\if :{?analysts}
\else
  \set analysts ''
\endif
\if :{?analyst_prefix}
\else
  \set analyst_prefix analyst_
\endif
-- Required variables. A missing one becomes '' here and the main block rejects it with a
-- clear message. ON_ERROR_STOP turns that into a non-zero psql exit status (\quit cannot).
\if :{?ro_pw}
\else
  \echo 'role.sql: psql variable ro_pw is required (bootstrap.sh supplies it on stdin)'
  \set ro_pw ''
\endif
\if :{?schemas}
\else
  \echo 'role.sql: psql variable schemas is required, e.g. -v schemas=reporting,tickets'
  \set schemas ''
\endif

BEGIN;

-- ---------------------------------------------------------------------------------------
-- Password handling
-- ---------------------------------------------------------------------------------------
-- Three things could leak the password: psql echo (disabled above), psql's error context
-- (VERBOSITY terse below) and the server's statement log. To keep it out of the log:
--   1. If we are allowed to, switch statement logging off for this transaction only. These
--      are superuser-only settings, so a managed-DB admin just gets a NOTICE.
--   2. Put the password into a transaction-local custom GUC with a SELECT. With
--      log_statement = 'ddl' or 'mod' (common in production) a SELECT is never logged, and
--      pg_stat_statements stores plannable statements with their constants normalised away.
--   3. Run ALTER ROLE ... PASSWORD from PL/pgSQL via EXECUTE. log_statement logs only
--      top-level statements, and the DO text holds no secret. Any error from that EXECUTE is
--      caught and re-raised without the statement text, so it cannot surface as an error
--      CONTEXT line either.
DO $quiet$
DECLARE
  g      text;
  failed text[] := '{}';
BEGIN
  FOREACH g IN ARRAY ARRAY['log_statement=none', 'log_min_duration_statement=-1',
                           'log_min_duration_sample=-1', 'log_min_error_statement=panic',
                           'auto_explain.log_min_duration=-1',
                           'pg_stat_statements.track_utility=off',
                           'pg_stat_statements.track=top'] LOOP
    BEGIN
      PERFORM set_config(split_part(g, '=', 1), split_part(g, '=', 2), true);
    EXCEPTION WHEN insufficient_privilege OR undefined_object OR invalid_parameter_value THEN
      failed := failed || split_part(g, '=', 1);
    END;
  END LOOP;
  IF cardinality(failed) > 0 THEN
    RAISE NOTICE 'role.sql: not allowed to switch off % for this run (not a superuser). '
                 'If this server logs every statement (log_statement=all), its log records the new password.',
                 array_to_string(failed, ', ');
  END IF;
END
$quiet$;

-- Never store an md5 hash, even if the server default is still md5 (PG < 14).
SET LOCAL password_encryption = 'scram-sha-256';

-- Copy the psql variables into transaction-local GUCs. psql does not interpolate variables
-- inside dollar-quoted DO bodies, and custom GUCs are the usual way to hand values to DO
-- blocks. \gset consumes the result row, so nothing is printed.
\set VERBOSITY terse
SELECT set_config('analytics_mcp.ro_pw', :'ro_pw', true) IS NOT NULL AS role_sql_pw_stashed
\gset
\set VERBOSITY default
SELECT set_config('analytics_mcp.ro_role',              :'ro_role',              true) IS NOT NULL AS role_sql_a,
       set_config('analytics_mcp.schemas',              :'schemas',              true) IS NOT NULL AS role_sql_b,
       set_config('analytics_mcp.owners',               :'owners',               true) IS NOT NULL AS role_sql_c,
       set_config('analytics_mcp.conn_limit',           :'conn_limit',           true) IS NOT NULL AS role_sql_d,
       set_config('analytics_mcp.revoke_public_temp',   :'revoke_public_temp',   true) IS NOT NULL AS role_sql_e,
       set_config('analytics_mcp.revoke_public_create', :'revoke_public_create', true) IS NOT NULL AS role_sql_f,
       set_config('analytics_mcp.withhold',             :'withhold',             true) IS NOT NULL AS role_sql_g,
       set_config('analytics_mcp.grant_new_columns',    :'grant_new_columns',    true) IS NOT NULL AS role_sql_h,
       set_config('analytics_mcp.analysts',             :'analysts',             true) IS NOT NULL AS role_sql_i,
       set_config('analytics_mcp.analyst_prefix',       :'analyst_prefix',       true) IS NOT NULL AS role_sql_j
\gset
\unset ro_pw

-- ---------------------------------------------------------------------------------------
-- Create / converge the role and its grants
-- ---------------------------------------------------------------------------------------
DO $main$
DECLARE
  v_role      text := btrim(current_setting('analytics_mcp.ro_role'));
  v_db        text := current_database();
  v_pw        text := current_setting('analytics_mcp.ro_pw');
  v_prefix    text := btrim(current_setting('analytics_mcp.analyst_prefix'));
  v_limit     int;
  v_schemas   text[];
  v_owners    text[];
  v_withhold  text[];
  v_analysts  text[];
  v_readers   text[];          -- the roles that get the read grants: the analysts' roles, or the login role
  v_rtemp     boolean;
  v_rcreate   boolean;
  v_grant_new boolean;
  r           pg_roles%ROWTYPE;
  s           text;
  o           text;
  g           text;
  e           text;
  parts       text[];
  rel_oid     oid;
  rec         record;
  v_attrs     text;
  v_strays    text;
  v_w_rel     oid[]  := '{}';  -- withheld (relation, column) pairs, partitions and children included
  v_w_col     text[] := '{}';
  v_prior     jsonb  := '{}';  -- "reader/oid" -> columns it could read one by one before this run
  v_all       text[];
  v_keep      text[];
  v_drop      text[];
  v_hidden    text[];
BEGIN
  -- Parse the lists: trimmed, de-duplicated, order kept. ('a, b,,a' -> {a,b})
  SELECT coalesce(array_agg(x ORDER BY first_pos), '{}') INTO v_schemas
    FROM (SELECT btrim(x) AS x, min(pos) AS first_pos
            FROM unnest(string_to_array(current_setting('analytics_mcp.schemas'), ','))
                 WITH ORDINALITY AS t(x, pos)
           WHERE btrim(x) <> '' GROUP BY btrim(x)) q;
  SELECT coalesce(array_agg(x ORDER BY first_pos), '{}') INTO v_owners
    FROM (SELECT btrim(x) AS x, min(pos) AS first_pos
            FROM unnest(string_to_array(current_setting('analytics_mcp.owners'), ','))
                 WITH ORDINALITY AS t(x, pos)
           WHERE btrim(x) <> '' GROUP BY btrim(x)) q;
  SELECT coalesce(array_agg(x ORDER BY first_pos), '{}') INTO v_withhold
    FROM (SELECT btrim(x) AS x, min(pos) AS first_pos
            FROM unnest(string_to_array(current_setting('analytics_mcp.withhold'), ','))
                 WITH ORDINALITY AS t(x, pos)
           WHERE btrim(x) <> '' GROUP BY btrim(x)) q;
  SELECT coalesce(array_agg(x ORDER BY first_pos), '{}') INTO v_analysts
    FROM (SELECT btrim(x) AS x, min(pos) AS first_pos
            FROM unnest(string_to_array(current_setting('analytics_mcp.analysts'), ','))
                 WITH ORDINALITY AS t(x, pos)
           WHERE btrim(x) <> '' GROUP BY btrim(x)) q;

  BEGIN
    v_limit     := current_setting('analytics_mcp.conn_limit')::int;
    v_rtemp     := current_setting('analytics_mcp.revoke_public_temp')::boolean;
    v_rcreate   := current_setting('analytics_mcp.revoke_public_create')::boolean;
    v_grant_new := current_setting('analytics_mcp.grant_new_columns')::boolean;
  EXCEPTION WHEN invalid_text_representation OR numeric_value_out_of_range THEN
    RAISE EXCEPTION 'role.sql: conn_limit must be an integer and revoke_public_*, grant_new_columns must be on/off';
  END;

  -- ---- input validation: fail before touching anything -------------------------------
  IF v_role = '' THEN
    RAISE EXCEPTION 'role.sql: ro_role is empty';
  END IF;
  IF v_pw = '' THEN
    RAISE EXCEPTION 'role.sql: ro_pw is required (e.g. \set ro_pw ''...'' before the file, or -v ro_pw=...)';
  END IF;
  IF v_pw ~ '^md5[0-9a-f]{32}$' THEN
    RAISE EXCEPTION 'role.sql: md5 password hashes are refused; pass plaintext or a SCRAM-SHA-256 verifier';
  END IF;
  IF v_pw !~ '^SCRAM-SHA-256\$' AND length(v_pw) < 16 THEN
    RAISE EXCEPTION 'role.sql: ro_pw is too short (need >= 16 characters)';
  END IF;
  IF cardinality(v_schemas) = 0 THEN
    RAISE EXCEPTION 'role.sql: schemas is required (comma list, e.g. -v schemas=reporting,tickets)';
  END IF;
  IF v_limit < -1 THEN
    RAISE EXCEPTION 'role.sql: conn_limit must be >= -1 (got %)', v_limit;
  END IF;
  IF v_role IN (current_user, session_user) OR v_role = ANY (v_owners) THEN
    RAISE EXCEPTION 'role.sql: ro_role "%" is the admin role or one of the owners; refusing to turn it into a read-only role', v_role;
  END IF;

  FOREACH s IN ARRAY v_schemas LOOP
    IF NOT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = s) THEN
      RAISE EXCEPTION 'role.sql: schema "%" does not exist in database "%"', s, v_db;
    END IF;
    IF s IN ('pg_catalog', 'information_schema', 'pg_toast') OR s LIKE 'pg\_temp%' OR s LIKE 'pg\_toast%' THEN
      RAISE EXCEPTION 'role.sql: "%" is a system schema and cannot be listed', s;
    END IF;
  END LOOP;

  -- Analysts: one NOLOGIN role each, named <analyst_prefix><name>. Names follow the server's
  -- caller names (letters, digits, . _ - @), so MCP_ANALYST_ROLES=analyst_{name} maps them.
  IF cardinality(v_analysts) > 0 THEN
    IF v_prefix = '' THEN
      RAISE EXCEPTION 'role.sql: analyst_prefix is empty; the analysts'' roles need a prefix (default analyst_)';
    END IF;
    FOREACH g IN ARRAY v_analysts LOOP
      IF g !~ '^[A-Za-z0-9._@-]+$' THEN
        RAISE EXCEPTION 'role.sql: analyst name "%" may only use letters, digits, . _ - @ (like the server''s caller names)', g;
      END IF;
      IF octet_length(v_prefix || g) > 63 THEN
        RAISE EXCEPTION 'role.sql: analyst role name "%" is longer than 63 bytes', v_prefix || g;
      END IF;
    END LOOP;
    SELECT array_agg(v_prefix || x ORDER BY ord) INTO v_readers FROM unnest(v_analysts) WITH ORDINALITY AS t(x, ord);
  ELSE
    v_readers := ARRAY[v_role];
  END IF;
  FOREACH g IN ARRAY v_readers LOOP
    IF g <> v_role AND (g IN (current_user, session_user, v_role) OR g = ANY (v_owners)) THEN
      RAISE EXCEPTION 'role.sql: analyst role "%" is the admin role, the login role or an owner', g;
    END IF;
  END LOOP;

  -- Withheld columns: each must name an existing column of a relation in a listed schema.
  FOREACH e IN ARRAY v_withhold LOOP
    parts := string_to_array(e, '.');
    IF cardinality(parts) <> 3 OR '' = ANY (parts) THEN
      RAISE EXCEPTION 'role.sql: withhold entry "%" is not schema.table.column', e;
    END IF;
    IF parts[1] <> ALL (v_schemas) THEN
      RAISE EXCEPTION 'role.sql: withhold entry "%": schema % is not in schemas=', e, parts[1];
    END IF;
    SELECT c.oid INTO rel_oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE n.nspname = parts[1] AND c.relname = parts[2] AND c.relkind IN ('r', 'p', 'v', 'm', 'f');
    IF NOT FOUND THEN
      RAISE EXCEPTION 'role.sql: withhold entry "%": no table or view %.% in database "%"', e, parts[1], parts[2], v_db;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = rel_oid AND attname = parts[3] AND attnum > 0 AND NOT attisdropped) THEN
      RAISE EXCEPTION 'role.sql: withhold entry "%": %.% has no column %', e, parts[1], parts[2], parts[3];
    END IF;
    -- A partition or inheritance child can be queried directly: it withholds the column too.
    FOR rec IN WITH RECURSIVE tree(oid) AS (
                 SELECT rel_oid UNION SELECT i.inhrelid FROM pg_inherits i JOIN tree t ON i.inhparent = t.oid)
               SELECT oid FROM tree LOOP
      v_w_rel := v_w_rel || rec.oid;
      v_w_col := v_w_col || parts[3];
    END LOOP;
  END LOOP;

  -- ---- the role itself ---------------------------------------------------------------
  SELECT * INTO r FROM pg_roles WHERE rolname = v_role;
  IF FOUND THEN
    -- A superuser or an object owner is never what this file is meant for. Demoting one
    -- would break whatever depends on it, and an owner keeps full rights on what it owns
    -- anyway, so the read-only promise could not hold.
    IF r.rolsuper THEN
      RAISE EXCEPTION 'role.sql: role "%" exists and is a SUPERUSER; refusing to demote it. Pick another ro_role.', v_role;
    END IF;
    IF EXISTS (SELECT 1 FROM pg_database WHERE datdba = r.oid)
       OR EXISTS (SELECT 1 FROM pg_namespace WHERE nspowner = r.oid)
       OR EXISTS (SELECT 1 FROM pg_class WHERE relowner = r.oid)
       OR EXISTS (SELECT 1 FROM pg_proc WHERE proowner = r.oid) THEN
      RAISE EXCEPTION 'role.sql: role "%" owns objects in database "%"; an owner can always write what it owns. Reassign them or pick another ro_role.', v_role, v_db;
    END IF;
  ELSE
    -- Created NOLOGIN and switched to LOGIN further down in the same transaction, so the
    -- role cannot exist with LOGIN but no password, even briefly.
    EXECUTE format('CREATE ROLE %I NOLOGIN', v_role);
    RAISE NOTICE 'role.sql: created role %', v_role;
    SELECT * INTO r FROM pg_roles WHERE rolname = v_role;
  END IF;

  -- Only name the superuser-only attributes when they need changing. On PostgreSQL <= 15 a
  -- non-superuser admin (managed databases) may not mention them at all, even to turn them
  -- off. A new role already has all of them off. With analysts the login role is NOINHERIT:
  -- it reaches an analyst's privileges only by SET ROLE, never on its own.
  v_attrs := 'LOGIN NOCREATEDB NOCREATEROLE ' || CASE WHEN cardinality(v_analysts) > 0 THEN 'NOINHERIT' ELSE 'INHERIT' END;
  IF r.rolsuper       THEN v_attrs := v_attrs || ' NOSUPERUSER';   END IF;
  IF r.rolreplication THEN v_attrs := v_attrs || ' NOREPLICATION'; END IF;
  IF r.rolbypassrls   THEN v_attrs := v_attrs || ' NOBYPASSRLS';   END IF;
  EXECUTE format('ALTER ROLE %I WITH %s CONNECTION LIMIT %s', v_role, v_attrs, v_limit);

  -- Password: see "password handling" above. Do not let the statement text reach an error.
  BEGIN
    EXECUTE format('ALTER ROLE %I WITH PASSWORD %L', v_role, v_pw);
  EXCEPTION WHEN OTHERS THEN
    RAISE EXCEPTION 'role.sql: setting the password of role % failed: % (SQLSTATE %)', v_role, SQLERRM, SQLSTATE;
  END;
  v_pw := NULL;
  PERFORM set_config('analytics_mcp.ro_pw', '', true);

  -- Per-role session defaults. They back up the server, which sets read-only and a statement
  -- timeout on its own connections: anything else that logs in as this role (a stray psql,
  -- a BI tool) gets the same limits.
  --  * default_transaction_read_only: write attempts fail before the grants are even checked.
  --  * statement_timeout 30s: matches MCP_STATEMENT_TIMEOUT_MS, so a runaway query cannot
  --    hold a backend.
  --  * idle_in_transaction_session_timeout 60s: an abandoned transaction cannot pin old
  --    snapshots, which would block vacuum.
  --  * idle_session_timeout 10min: returns the slots of forgotten idle sessions. It has to be
  --    LONGER than the server's pool idle time (MCP_POOL_IDLE_S = 300 s). Otherwise the DB
  --    would keep killing pooled connections the server still counts as good. The server
  --    retries those once, but that still costs an avoidable reconnect.
  EXECUTE format('ALTER ROLE %I SET default_transaction_read_only = on', v_role);
  EXECUTE format('ALTER ROLE %I SET statement_timeout = %L', v_role, '30s');
  EXECUTE format('ALTER ROLE %I SET idle_in_transaction_session_timeout = %L', v_role, '60s');
  IF current_setting('server_version_num')::int >= 140000 THEN
    EXECUTE format('ALTER ROLE %I SET idle_session_timeout = %L', v_role, '10min');
  ELSE
    RAISE NOTICE 'role.sql: idle_session_timeout needs PostgreSQL 14+; not set';
  END IF;

  -- ---- the analysts' roles -----------------------------------------------------------
  IF cardinality(v_analysts) > 0 THEN
    FOREACH g IN ARRAY v_readers LOOP
      SELECT * INTO r FROM pg_roles WHERE rolname = g;
      IF FOUND THEN
        IF r.rolsuper THEN
          RAISE EXCEPTION 'role.sql: analyst role "%" exists and is a SUPERUSER; refusing to demote it', g;
        END IF;
        IF EXISTS (SELECT 1 FROM pg_database WHERE datdba = r.oid)
           OR EXISTS (SELECT 1 FROM pg_namespace WHERE nspowner = r.oid)
           OR EXISTS (SELECT 1 FROM pg_class WHERE relowner = r.oid)
           OR EXISTS (SELECT 1 FROM pg_proc WHERE proowner = r.oid) THEN
          RAISE EXCEPTION 'role.sql: analyst role "%" owns objects in database "%"; an owner can always write what it owns', g, v_db;
        END IF;
      ELSE
        EXECUTE format('CREATE ROLE %I NOLOGIN', g);
        RAISE NOTICE 'role.sql: created analyst role %', g;
        SELECT * INTO r FROM pg_roles WHERE rolname = g;
      END IF;
      v_attrs := 'NOLOGIN NOCREATEDB NOCREATEROLE INHERIT';
      IF r.rolsuper       THEN v_attrs := v_attrs || ' NOSUPERUSER';   END IF;
      IF r.rolreplication THEN v_attrs := v_attrs || ' NOREPLICATION'; END IF;
      IF r.rolbypassrls   THEN v_attrs := v_attrs || ' NOBYPASSRLS';   END IF;
      EXECUTE format('ALTER ROLE %I WITH %s', g, v_attrs);
      -- The login role may SET ROLE to it (and, being NOINHERIT, has its privileges only then).
      IF NOT EXISTS (SELECT 1 FROM pg_auth_members m JOIN pg_roles a ON a.oid = m.roleid JOIN pg_roles l ON l.oid = m.member
                      WHERE a.rolname = g AND l.rolname = v_role) THEN
        IF current_setting('server_version_num')::int >= 160000 THEN
          EXECUTE format('GRANT %I TO %I WITH INHERIT FALSE, SET TRUE', g, v_role);
        ELSE
          EXECUTE format('GRANT %I TO %I', g, v_role);
        END IF;
      END IF;
    END LOOP;
    SELECT string_agg(a.rolname, ', ' ORDER BY a.rolname) INTO v_strays
      FROM pg_auth_members m JOIN pg_roles a ON a.oid = m.roleid JOIN pg_roles l ON l.oid = m.member
     WHERE l.rolname = v_role AND starts_with(a.rolname, v_prefix) AND a.rolname <> ALL (v_readers);
    IF v_strays IS NOT NULL THEN
      RAISE NOTICE 'role.sql: analyst roles not in analysts= are left as they are (REVOKE them from % or DROP them to remove those analysts): %', v_role, v_strays;
    END IF;
  END IF;

  -- What each reader could read column by column before this run (a table under withholding:
  -- column grants, no table-level SELECT). Remembered because GRANT SELECT ON ALL TABLES below
  -- re-grants table-level SELECT, and revoking that again drops every column grant with it.
  FOREACH g IN ARRAY v_readers LOOP
    FOR rec IN SELECT c.oid, array_agg(a.attname::text ORDER BY a.attnum) AS cols
                 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                 JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
                 JOIN pg_roles gr ON gr.rolname = g
                WHERE n.nspname = ANY (v_schemas) AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
                  AND NOT EXISTS (SELECT 1 FROM aclexplode(c.relacl) x WHERE x.grantee = gr.oid AND x.privilege_type = 'SELECT')
                  AND EXISTS (SELECT 1 FROM aclexplode(a.attacl) x WHERE x.grantee = gr.oid AND x.privilege_type = 'SELECT')
                GROUP BY c.oid LOOP
      v_prior := v_prior || jsonb_build_object(g || '/' || rec.oid, to_jsonb(rec.cols));
    END LOOP;
  END LOOP;

  -- ---- database level ----------------------------------------------------------------
  -- CONNECT is usually granted to PUBLIC already. It is granted explicitly anyway, so that
  -- the role keeps working on databases where an admin revoked it from PUBLIC.
  -- Both statements are skipped when the admin cannot grant on the database (a managed-DB
  -- admin that does not own it). PostgreSQL would only warn "no privileges were granted",
  -- and the self-check still verifies the outcome.
  IF has_database_privilege(current_user, v_db, 'CONNECT WITH GRANT OPTION') THEN
    EXECUTE format('GRANT CONNECT ON DATABASE %I TO %I', v_db, v_role);
  END IF;
  -- A direct CREATE grant would let the role create schemas; take it back if someone gave it.
  IF has_database_privilege(current_user, v_db, 'CREATE WITH GRANT OPTION') THEN
    FOREACH g IN ARRAY array_append(v_readers, v_role) LOOP
      EXECUTE format('REVOKE CREATE ON DATABASE %I FROM %I', v_db, g);
    END LOOP;
  END IF;
  IF v_rtemp THEN
    EXECUTE format('REVOKE TEMPORARY ON DATABASE %I FROM PUBLIC, %I', v_db, v_role);
    FOREACH g IN ARRAY v_readers LOOP
      EXECUTE format('REVOKE TEMPORARY ON DATABASE %I FROM %I', v_db, g);
    END LOOP;
    RAISE NOTICE 'role.sql: revoked TEMPORARY on database % from PUBLIC (roles that need temp tables must now be granted TEMPORARY explicitly)', v_db;
  END IF;

  -- ---- per schema --------------------------------------------------------------------
  FOREACH s IN ARRAY v_schemas LOOP
    IF v_rcreate THEN
      EXECUTE format('REVOKE CREATE ON SCHEMA %I FROM PUBLIC', s);
    END IF;
    -- With analysts the login role holds nothing of its own: alone it can read nothing.
    IF cardinality(v_analysts) > 0 THEN
      EXECUTE format('REVOKE ALL ON ALL TABLES IN SCHEMA %I FROM %I', s, v_role);
      EXECUTE format('REVOKE ALL ON ALL SEQUENCES IN SCHEMA %I FROM %I', s, v_role);
      EXECUTE format('REVOKE ALL ON ALL FUNCTIONS IN SCHEMA %I FROM %I', s, v_role);
      EXECUTE format('REVOKE ALL ON SCHEMA %I FROM %I', s, v_role);
    END IF;
    FOREACH g IN ARRAY v_readers LOOP
      EXECUTE format('GRANT USAGE ON SCHEMA %I TO %I', s, g);
      EXECUTE format('REVOKE CREATE ON SCHEMA %I FROM %I', s, g);
      -- "ALL TABLES" covers tables, partitioned tables, views, foreign tables AND materialized
      -- views. This was checked empirically on PostgreSQL 15 (the seed's comment claiming
      -- otherwise was wrong). The self-check below still asserts that every matview is
      -- readable, so a regression would fail loudly.
      EXECUTE format('GRANT SELECT ON ALL TABLES IN SCHEMA %I TO %I', s, g);
      -- PUBLIC usually has EXECUTE on functions already. The explicit grant keeps the role
      -- working where an admin revoked it. Procedures are deliberately not included
      -- (ALL FUNCTIONS excludes them): CALL exists to do work, and the server blocks it anyway.
      EXECUTE format('GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA %I TO %I', s, g);
      -- Converge: undo write privileges that someone granted DIRECTLY to this role. This only
      -- touches this role's own ACL entries, so nobody else is affected. Grants through PUBLIC
      -- or role membership cannot be undone from here; the self-check reports those.
      EXECUTE format('REVOKE INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER ON ALL TABLES IN SCHEMA %I FROM %I', s, g);
      EXECUTE format('REVOKE ALL ON ALL SEQUENCES IN SCHEMA %I FROM %I', s, g);
    END LOOP;
  END LOOP;
  IF v_rcreate AND 'public' <> ALL (v_schemas) AND EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = 'public') THEN
    EXECUTE 'REVOKE CREATE ON SCHEMA public FROM PUBLIC';
    RAISE NOTICE 'role.sql: revoked CREATE on schema public from PUBLIC';
  END IF;

  -- ---- withheld columns: column-level SELECT on the others, no table-level SELECT ------
  -- Tables named in withhold, and tables an earlier run left under withholding (sticky: a
  -- run that forgets --withhold must not expose them again). Columns that are neither listed
  -- nor readable before (added since, or withheld earlier and no longer listed) stay
  -- unreadable unless grant_new_columns=on, and a NOTICE names them.
  FOREACH g IN ARRAY v_readers LOOP
    FOR rec IN SELECT c.oid, format('%I.%I', n.nspname, c.relname) AS name
                 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                WHERE n.nspname = ANY (v_schemas) AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
                  AND (c.oid = ANY (v_w_rel) OR v_prior ? (g || '/' || c.oid))
                ORDER BY 2 LOOP
      SELECT coalesce(array_agg(DISTINCT v_w_col[i]), '{}') INTO v_drop
        FROM generate_subscripts(v_w_rel, 1) AS i WHERE v_w_rel[i] = rec.oid;
      SELECT array_agg(attname::text ORDER BY attnum) INTO v_all
        FROM pg_attribute WHERE attrelid = rec.oid AND attnum > 0 AND NOT attisdropped;
      IF v_prior ? (g || '/' || rec.oid) AND NOT (v_grant_new AND rec.oid = ANY (v_w_rel)) THEN
        SELECT coalesce(array_agg(x ORDER BY ord), '{}') INTO v_keep
          FROM unnest(v_all) WITH ORDINALITY AS t(x, ord)
         WHERE x <> ALL (v_drop) AND v_prior -> (g || '/' || rec.oid) ? x;
      ELSE
        SELECT coalesce(array_agg(x ORDER BY ord), '{}') INTO v_keep
          FROM unnest(v_all) WITH ORDINALITY AS t(x, ord) WHERE x <> ALL (v_drop);
      END IF;
      IF cardinality(v_keep) = 0 THEN
        RAISE EXCEPTION 'role.sql: withhold leaves no readable column in %; leave the table out of reach instead (REVOKE SELECT ON % FROM %) or withhold fewer columns', rec.name, rec.name, g;
      END IF;
      EXECUTE format('REVOKE SELECT ON %s FROM %I', rec.name, g);
      EXECUTE format('GRANT SELECT (%s) ON %s TO %I',
                     (SELECT string_agg(quote_ident(x), ', ') FROM unnest(v_keep) AS x), rec.name, g);
      SELECT coalesce(array_agg(x ORDER BY ord), '{}') INTO v_hidden
        FROM unnest(v_all) WITH ORDINALITY AS t(x, ord) WHERE x <> ALL (v_drop) AND x <> ALL (v_keep);
      IF cardinality(v_hidden) > 0 THEN
        RAISE NOTICE 'role.sql: % stays unable to read %.% (withheld by an earlier run, or added since). To let it: GRANT SELECT (%) ON % TO %, or re-run with -v grant_new_columns=on (every column of the tables in withhold= except the listed ones)',
          g, rec.name, CASE WHEN cardinality(v_hidden) = 1 THEN v_hidden[1] ELSE '{' || array_to_string(v_hidden, ',') || '}' END,
          array_to_string(v_hidden, ', '), rec.name, g;
      END IF;
    END LOOP;
  END LOOP;

  -- ---- default privileges: objects created later ------------------------------------
  -- ALTER DEFAULT PRIVILEGES applies to objects created BY the named role. So it must name
  -- every role that creates objects in these schemas. The classic mistake is granting for the
  -- migration role while postgres creates the tables; new tables then come up unreadable.
  IF cardinality(v_owners) = 0 THEN
    RAISE NOTICE 'role.sql: no owners given; objects created later will need their own GRANT SELECT';
  END IF;
  FOREACH o IN ARRAY v_owners LOOP
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = o) THEN
      RAISE NOTICE 'role.sql: owner role "%" does not exist; skipping its default privileges', o;
      CONTINUE;
    END IF;
    FOREACH s IN ARRAY v_schemas LOOP
      IF cardinality(v_analysts) > 0 THEN
        EXECUTE format('ALTER DEFAULT PRIVILEGES FOR ROLE %I IN SCHEMA %I REVOKE SELECT ON TABLES FROM %I', o, s, v_role);
        EXECUTE format('ALTER DEFAULT PRIVILEGES FOR ROLE %I IN SCHEMA %I REVOKE EXECUTE ON FUNCTIONS FROM %I', o, s, v_role);
      END IF;
      FOREACH g IN ARRAY v_readers LOOP
        EXECUTE format('ALTER DEFAULT PRIVILEGES FOR ROLE %I IN SCHEMA %I GRANT SELECT ON TABLES TO %I', o, s, g);
        -- In this command FUNCTIONS also covers procedures, unlike GRANT ... ALL FUNCTIONS above.
        -- That matches PostgreSQL's own default (PUBLIC may EXECUTE new routines), and CALL is
        -- blocked by the server anyway.
        EXECUTE format('ALTER DEFAULT PRIVILEGES FOR ROLE %I IN SCHEMA %I GRANT EXECUTE ON FUNCTIONS TO %I', o, s, g);
      END LOOP;
    END LOOP;
  END LOOP;
  -- Help with that mistake: name the roles that own objects in the listed schemas but are not
  -- in owners=.
  SELECT string_agg(DISTINCT format('%s (owns objects in %s)', pg_get_userbyid(c.relowner), n.nspname), ', ')
    INTO v_strays
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
   WHERE n.nspname = ANY (v_schemas) AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
     AND pg_get_userbyid(c.relowner) <> ALL (v_owners);
  IF v_strays IS NOT NULL THEN
    RAISE NOTICE 'role.sql: not in owners=, so their future objects will not be auto-granted: %', v_strays;
  END IF;
END
$main$;

-- ---------------------------------------------------------------------------------------
-- Self-check: prove the result really is least-privilege
-- ---------------------------------------------------------------------------------------
-- This checks effective privileges with has_*_privilege(), which counts grants to PUBLIC and
-- inherited role memberships. Something granted years ago by hand is therefore caught too.
-- Every problem found is listed in one exception, and the exception rolls back the whole run.
DO $check$
DECLARE
  v_role     text := btrim(current_setting('analytics_mcp.ro_role'));
  v_db       text := current_database();
  v_limit    int  := current_setting('analytics_mcp.conn_limit')::int;
  v_rtemp    boolean := current_setting('analytics_mcp.revoke_public_temp')::boolean;
  v_prefix   text := btrim(current_setting('analytics_mcp.analyst_prefix'));
  v_schemas  text[];
  v_withhold text[];
  v_analysts text[];
  v_readers  text[];
  v_bad      text[] := '{}';
  v_warn     text[] := '{}';
  v_privs    text[] := ARRAY['INSERT', 'UPDATE', 'DELETE', 'TRUNCATE', 'REFERENCES', 'TRIGGER'];
  r          pg_roles%ROWTYPE;
  rec        record;
  p          text;
  g          text;
  who        text;
  n_rel      int;
  n_mat      int;
BEGIN
  SELECT coalesce(array_agg(DISTINCT btrim(e)), '{}') INTO v_schemas
    FROM unnest(string_to_array(current_setting('analytics_mcp.schemas'), ',')) AS t(e)
   WHERE btrim(e) <> '';
  SELECT coalesce(array_agg(DISTINCT btrim(e)), '{}') INTO v_withhold
    FROM unnest(string_to_array(current_setting('analytics_mcp.withhold'), ',')) AS t(e)
   WHERE btrim(e) <> '';
  SELECT coalesce(array_agg(btrim(e) ORDER BY ord), '{}') INTO v_analysts
    FROM unnest(string_to_array(current_setting('analytics_mcp.analysts'), ',')) WITH ORDINALITY AS t(e, ord)
   WHERE btrim(e) <> '';
  IF cardinality(v_analysts) > 0 THEN
    SELECT array_agg(DISTINCT v_prefix || x) INTO v_readers FROM unnest(v_analysts) AS x;
  ELSE
    v_readers := ARRAY[v_role];
  END IF;
  -- PostgreSQL 17 added the MAINTAIN privilege (VACUUM / ANALYZE / REFRESH MATERIALIZED VIEW ...).
  IF current_setting('server_version_num')::int >= 170000 THEN
    v_privs := v_privs || 'MAINTAIN';
  END IF;

  -- ---- the login role ----------------------------------------------------------------
  SELECT * INTO r FROM pg_roles WHERE rolname = v_role;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'role.sql self-check: role % does not exist', v_role;
  END IF;
  IF NOT r.rolcanlogin THEN v_bad := v_bad || 'cannot LOGIN'::text;  END IF;
  IF r.rolconnlimit <> v_limit THEN
    v_bad := v_bad || format('connection limit is %s, expected %s', r.rolconnlimit, v_limit);
  END IF;
  IF NOT coalesce('default_transaction_read_only=on' = ANY (r.rolconfig), false) THEN
    v_bad := v_bad || 'default_transaction_read_only=on is not set on the role'::text;
  END IF;
  IF NOT has_database_privilege(v_role, v_db, 'CONNECT') THEN
    v_bad := v_bad || format('lacks CONNECT on database %s', v_db);
  END IF;
  -- Any other membership: privileges could arrive through it. Warn with the names and let
  -- the write checks below decide whether it is actually harmful. The analysts' roles are
  -- expected memberships (the server SET ROLEs to them) and are checked in full below.
  FOR rec IN SELECT g2.rolname FROM pg_auth_members m JOIN pg_roles g2 ON g2.oid = m.roleid
            WHERE m.member = r.oid AND g2.rolname <> ALL (v_readers) LOOP
    v_warn := v_warn || format('is a member of role %s', rec.rolname);
  END LOOP;
  IF cardinality(v_analysts) > 0 THEN
    IF r.rolinherit THEN
      v_bad := v_bad || 'is INHERIT; with analysts the login role must be NOINHERIT (it would hold every analyst''s privileges at once)'::text;
    END IF;
    -- Alone, the login role can read nothing: every read happens as an analyst.
    FOR rec IN SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                WHERE n.nspname = ANY (v_schemas) AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
                  AND has_any_column_privilege(v_role, c.oid, 'SELECT') ORDER BY 1, 2 LIMIT 5 LOOP
      v_bad := v_bad || format('can read %I.%I on its own (with analysts only their roles may read)', rec.nspname, rec.relname);
    END LOOP;
    FOREACH g IN ARRAY v_readers LOOP
      IF NOT pg_has_role(v_role, g, 'MEMBER') THEN
        v_bad := v_bad || format('is not a member of analyst role %s (the server could not SET ROLE to it)', g);
      END IF;
    END LOOP;
  END IF;

  -- ---- every role that reads: the login role, or each analyst's role -------------------
  FOREACH g IN ARRAY (CASE WHEN cardinality(v_analysts) > 0 THEN array_prepend(v_role, v_readers) ELSE v_readers END) LOOP
    who := CASE WHEN g = v_role THEN '' ELSE g || ': ' END;
    SELECT * INTO r FROM pg_roles WHERE rolname = g;
    IF NOT FOUND THEN
      v_bad := v_bad || format('%srole does not exist', who);
      CONTINUE;
    END IF;
    IF r.rolsuper       THEN v_bad := v_bad || format('%sis SUPERUSER', who);   END IF;
    IF r.rolcreaterole  THEN v_bad := v_bad || format('%shas CREATEROLE', who); END IF;
    IF r.rolcreatedb    THEN v_bad := v_bad || format('%shas CREATEDB', who);   END IF;
    IF r.rolreplication THEN v_bad := v_bad || format('%shas REPLICATION', who); END IF;
    IF r.rolbypassrls   THEN v_bad := v_bad || format('%shas BYPASSRLS', who);  END IF;
    IF g <> v_role AND r.rolcanlogin THEN
      v_warn := v_warn || format('%scan LOGIN (analyst roles are meant to be reached by SET ROLE only)', who);
    END IF;

    -- Membership (direct or indirect, inherited or not: SET ROLE reaches it either way) in
    -- predefined roles that reach past the grants: server file access, running programs,
    -- signalling other backends, or reading/writing every table. pg_read_all_data would
    -- silently remove the schema boundary. Only roles that exist on this server are checked.
    FOR rec IN SELECT rolname FROM pg_roles
              WHERE rolname IN ('pg_write_server_files', 'pg_read_server_files',
                                'pg_execute_server_program', 'pg_signal_backend',
                                'pg_write_all_data', 'pg_read_all_data', 'pg_checkpoint',
                                'pg_create_subscription', 'pg_use_reserved_connections',
                                'pg_signal_autovacuum_worker', 'pg_maintain')
    LOOP
      IF pg_has_role(g, rec.rolname, 'MEMBER') THEN
        v_bad := v_bad || format('%sis a member of %s', who, rec.rolname);
      END IF;
    END LOOP;

    -- Ownership means every privilege on the object.
    IF EXISTS (SELECT 1 FROM pg_database WHERE datdba = r.oid)
       OR EXISTS (SELECT 1 FROM pg_namespace WHERE nspowner = r.oid)
       OR EXISTS (SELECT 1 FROM pg_class WHERE relowner = r.oid)
       OR EXISTS (SELECT 1 FROM pg_proc WHERE proowner = r.oid) THEN
      v_bad := v_bad || format('%sowns objects in this database', who);
    END IF;

    -- Database level.
    IF has_database_privilege(g, v_db, 'CREATE') THEN
      v_bad := v_bad || format('%shas CREATE on database %s', who, v_db);
    END IF;
    IF has_database_privilege(g, v_db, 'TEMPORARY') AND v_rtemp THEN
      v_bad := v_bad || format('%sstill has TEMPORARY on database %s (granted to PUBLIC or via membership)', who, v_db);
      -- Without revoke_public_temp this is expected; read-only sessions already block CREATE TEMP TABLE.
    END IF;

    -- Listed schemas: USAGE yes (for the readers), CREATE no.
    FOREACH p IN ARRAY v_schemas LOOP
      IF g = ANY (v_readers) AND NOT has_schema_privilege(g, p, 'USAGE') THEN
        v_bad := v_bad || format('%slacks USAGE on schema %s', who, p);
      END IF;
      IF has_schema_privilege(g, p, 'CREATE') THEN
        v_bad := v_bad || format('%shas CREATE on schema %s (granted to PUBLIC? run with -v revoke_public_create=on, or REVOKE CREATE ON SCHEMA %I FROM PUBLIC)', who, p, p);
      END IF;
    END LOOP;

    -- Every relation in a listed schema must be readable (all of it, or its columns but the
    -- withheld ones) and must not be writable.
    FOR rec IN SELECT c.oid, n.nspname, c.relname, c.relkind
               FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
              WHERE n.nspname = ANY (v_schemas) AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
    LOOP
      IF g = ANY (v_readers) AND NOT has_any_column_privilege(g, rec.oid, 'SELECT') THEN
        v_bad := v_bad || format('%scannot SELECT %I.%I (relkind %s)', who, rec.nspname, rec.relname, rec.relkind);
      END IF;
      FOREACH p IN ARRAY v_privs LOOP
        IF has_table_privilege(g, rec.oid, p) THEN
          v_bad := v_bad || format('%shas %s on %I.%I', who, p, rec.nspname, rec.relname);
        END IF;
      END LOOP;
      -- Column-level grants do not show up in has_table_privilege.
      IF has_any_column_privilege(g, rec.oid, 'INSERT') OR has_any_column_privilege(g, rec.oid, 'UPDATE') THEN
        v_bad := v_bad || format('%shas column-level INSERT/UPDATE on %I.%I', who, rec.nspname, rec.relname);
      END IF;
    END LOOP;

    -- Withheld columns: unreadable, on the table and on every partition or child of it.
    FOR rec IN WITH RECURSIVE w(oid, col) AS (
                 SELECT c.oid, split_part(e, '.', 3) FROM unnest(v_withhold) AS e
                   JOIN pg_namespace n ON n.nspname = split_part(e, '.', 1)
                   JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = split_part(e, '.', 2)
                 UNION SELECT i.inhrelid, w.col FROM pg_inherits i JOIN w ON i.inhparent = w.oid)
               SELECT w.oid, format('%I.%I', n.nspname, c.relname) AS rel, w.col FROM w JOIN pg_class c ON c.oid = w.oid
                JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = ANY (v_schemas)
    LOOP
      IF has_column_privilege(g, rec.oid, rec.col, 'SELECT') THEN
        v_bad := v_bad || format('%scan still read withheld column %s.%s (a table-level or PUBLIC grant, or one through a role membership)', who, rec.rel, rec.col);
      END IF;
    END LOOP;

    -- nextval()/setval() change state that ROLLBACK does not undo. Read-only sessions block
    -- them, but that layer is switchable, so the role must not hold sequence privileges.
    FOR rec IN SELECT c.oid, n.nspname, c.relname
               FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
              WHERE n.nspname = ANY (v_schemas) AND c.relkind = 'S'
    LOOP
      IF has_sequence_privilege(g, rec.oid, 'USAGE') OR has_sequence_privilege(g, rec.oid, 'UPDATE') THEN
        v_bad := v_bad || format('%shas USAGE/UPDATE on sequence %I.%I', who, rec.nspname, rec.relname);
      END IF;
    END LOOP;

    -- Outside the listed schemas: wherever the role can still reach tables (usually schema
    -- public through PUBLIC), writable tables or CREATE are warned about, not fatal. They are
    -- the DBA's PUBLIC grants, and revoking them could break other users.
    FOR rec IN SELECT n.nspname FROM pg_namespace n
              WHERE n.nspname <> ALL (v_schemas)
                AND n.nspname NOT IN ('pg_catalog', 'information_schema')
                AND n.nspname NOT LIKE 'pg\_toast%' AND n.nspname NOT LIKE 'pg\_temp%'
                AND has_schema_privilege(g, n.oid, 'USAGE')
    LOOP
      IF has_schema_privilege(g, rec.nspname, 'CREATE') THEN
        v_warn := v_warn || format('%scan CREATE in unlisted schema %s (REVOKE CREATE ON SCHEMA %I FROM PUBLIC, or -v revoke_public_create=on)', who, rec.nspname, rec.nspname);
      END IF;
      IF EXISTS (SELECT 1 FROM pg_class c
                  WHERE c.relnamespace = (SELECT oid FROM pg_namespace WHERE nspname = rec.nspname)
                    AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
                    AND (has_table_privilege(g, c.oid, 'INSERT') OR has_table_privilege(g, c.oid, 'UPDATE')
                         OR has_table_privilege(g, c.oid, 'DELETE') OR has_table_privilege(g, c.oid, 'TRUNCATE'))) THEN
        v_warn := v_warn || format('%scan write tables in unlisted schema %s', who, rec.nspname);
      END IF;
      IF rec.nspname <> 'public' THEN
        v_warn := v_warn || format('%shas USAGE on unlisted schema %s (left over from an earlier schemas= list? REVOKE USAGE ON SCHEMA %I FROM %I)', who, rec.nspname, rec.nspname, g);
      END IF;
    END LOOP;

    -- SECURITY DEFINER functions run with their owner's rights, so one that writes is a write
    -- path that the grants do not show, and one that reads can hand out withheld columns.
    -- The read-only transaction still stops writes, but that layer can be switched off, so
    -- list them.
    IF g = ANY (v_readers) THEN
      FOR rec IN SELECT n.nspname, p2.proname
                 FROM pg_proc p2 JOIN pg_namespace n ON n.oid = p2.pronamespace
                WHERE n.nspname = ANY (v_schemas) AND p2.prosecdef
                  AND has_function_privilege(g, p2.oid, 'EXECUTE')
      LOOP
        v_warn := v_warn || format('%scan EXECUTE SECURITY DEFINER function %I.%I (review that it cannot write, nor return withheld columns)', who, rec.nspname, rec.proname);
      END LOOP;
    END IF;
  END LOOP;
  -- A function that changes settings with its caller's arguments (a set_config wrapper), or
  -- runs with a role of its own, lets a caller act as another role: with analysts, as another
  -- analyst (the login role may SET ROLE to each of them). The server withholds an answer
  -- when the role is not the analyst's at the end, but cannot see a switch and back inside one
  -- statement. Warn about every such function the readers may call.
  FOR rec IN SELECT n.nspname, p2.proname
               FROM pg_proc p2 JOIN pg_namespace n ON n.oid = p2.pronamespace
              WHERE n.nspname = ANY (v_schemas)
                AND (p2.prosrc ~* '(set_config|\mset\s+(local\s+|session\s+)?role\M|session\s+authorization)'
                     OR EXISTS (SELECT 1 FROM unnest(p2.proconfig) AS c WHERE c ~* '^(role|session_authorization)='))
                AND EXISTS (SELECT 1 FROM unnest(v_readers) AS x WHERE has_function_privilege(x, p2.oid, 'EXECUTE'))
  LOOP
    v_warn := v_warn || format('readers can EXECUTE %I.%I, which changes settings or the role: a caller could act as another role through it (REVOKE EXECUTE on it, or drop it)', rec.nspname, rec.proname);
  END LOOP;
  SELECT count(*), count(*) FILTER (WHERE c.relkind = 'm') INTO n_rel, n_mat
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
   WHERE n.nspname = ANY (v_schemas) AND c.relkind IN ('r', 'p', 'v', 'm', 'f');

  FOREACH p IN ARRAY v_warn LOOP
    RAISE WARNING 'role.sql self-check: % %', v_role, p;
  END LOOP;
  IF cardinality(v_bad) > 0 THEN
    RAISE EXCEPTION 'role.sql self-check FAILED for role % (nothing was applied):%', v_role,
      E'\n  - ' || array_to_string(v_bad, E'\n  - ');
  END IF;
  RAISE NOTICE 'role.sql: role % OK in database %: read-only on % (% relations incl. % materialized views), connection limit %',
    v_role, v_db, array_to_string(v_schemas, ', '), n_rel, n_mat, v_limit;
  IF cardinality(v_withhold) > 0 THEN
    RAISE NOTICE 'role.sql: withheld (checked unreadable by every reader, partitions and children included): %',
      array_to_string(v_withhold, ', ');
  END IF;
  IF cardinality(v_analysts) > 0 THEN
    RAISE NOTICE 'role.sql: analysts % read as % (login role % is a NOINHERIT member, holding no grants of its own); serve with MCP_ANALYST_ROLES=%{name}',
      array_to_string(v_analysts, ', '), array_to_string(v_readers, ', '), v_role, v_prefix;
  END IF;
END
$check$;

COMMIT;
