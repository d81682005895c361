-- The catalog-scaling schema of bench/run.sh, deterministic: :tables tables in one schema (wide,
-- no comments, never analysed, as a bulk-created schema usually is) and a table of 1,600 columns
-- (PostgreSQL's maximum) with a comment on every column and 1,000 analysed rows.
-- psql variables: tables (table count), ro_role (the read-only role to grant).
SET client_min_messages = warning;
SELECT set_config('bench.tables', :'tables', false);
CREATE SCHEMA wide;
DO $$
BEGIN
  FOR i IN 1..current_setting('bench.tables')::int LOOP
    EXECUTE format('CREATE TABLE wide.%I (id integer, amount integer, day date)', 't_' || lpad(i::text, 5, '0'));
    IF i % 500 = 0 THEN COMMIT; END IF;  -- one transaction would run out of lock slots
  END LOOP;
END
$$;
DO $$
BEGIN
  EXECUTE 'CREATE TABLE wide.very_wide (' || (SELECT string_agg(format('column_%s integer', lpad(i::text, 4, '0')), ', ')
                                              FROM generate_series(1, 1600) i) || ')';
  FOR i IN 1..1600 LOOP
    EXECUTE format('COMMENT ON COLUMN wide.very_wide.%I IS %L', 'column_' || lpad(i::text, 4, '0'),
                   'Generated column ' || i || ' of the widest table PostgreSQL allows');
  END LOOP;
END
$$;
INSERT INTO wide.very_wide (column_0001, column_0002, column_0003)
SELECT g, g % 10, CASE WHEN g % 3 = 0 THEN NULL ELSE g * 7 END FROM generate_series(1, 1000) AS g;
ANALYZE wide.very_wide;
-- What autovacuum does soon after bulk DDL: fresh statistics of the catalogs just filled.
ANALYZE pg_catalog.pg_class, pg_catalog.pg_attribute, pg_catalog.pg_description, pg_catalog.pg_type,
        pg_catalog.pg_namespace, pg_catalog.pg_depend, pg_catalog.pg_constraint, pg_catalog.pg_attrdef;
GRANT USAGE ON SCHEMA wide TO :"ro_role";
GRANT SELECT ON ALL TABLES IN SCHEMA wide TO :"ro_role";
-- PostgreSQL's own time for the server's statements, in a schema the read-only role cannot see.
CREATE SCHEMA stats;
CREATE EXTENSION pg_stat_statements SCHEMA stats;
