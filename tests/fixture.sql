-- Test fixture for the analytics-mcp end-to-end suite.
-- Loaded by tests/conftest.py as the cluster superuser into a throwaway database.
-- The read-only login role (mcp_ro) is created by conftest.py afterwards, the way
-- role.sql would: USAGE+SELECT on reporting and fleet only; infrastructure is NOT readable.

\set ON_ERROR_STOP on
SET client_min_messages = warning;

CREATE SCHEMA reporting;
CREATE SCHEMA fleet;
CREATE SCHEMA infrastructure;
COMMENT ON SCHEMA reporting IS 'Curated analytics layer';
COMMENT ON SCHEMA fleet IS 'Raw fleet telemetry';

-- ── fleet: keys, comments, a big table, a partitioned table ──────────────────
CREATE TABLE fleet.vehicles (
    vehicle_id   integer PRIMARY KEY,
    plate        text NOT NULL UNIQUE,
    model        text,
    commissioned date NOT NULL DEFAULT DATE '2020-01-01'
);
COMMENT ON TABLE fleet.vehicles IS 'One row per vehicle in the fleet';
COMMENT ON COLUMN fleet.vehicles.plate IS 'Registration plate';

INSERT INTO fleet.vehicles (vehicle_id, plate, model, commissioned) VALUES
    (1, 'KAA 001A', 'Hilux',   DATE '2019-05-01'),
    (2, 'KAB 002B', 'Land Cruiser', DATE '2021-07-15'),
    (3, 'KAC 003C', NULL,      DATE '2022-11-30');

CREATE TABLE fleet.trips (
    trip_id     bigint NOT NULL,
    leg         integer NOT NULL,
    vehicle_id  integer NOT NULL,
    started_at  timestamptz NOT NULL,
    distance_km numeric(10,2),
    "drop"      text,
    CONSTRAINT trips_pkey PRIMARY KEY (trip_id, leg),
    CONSTRAINT trips_vehicle_fk FOREIGN KEY (vehicle_id) REFERENCES fleet.vehicles (vehicle_id)
);
COMMENT ON TABLE fleet.trips IS 'Trips, one row per leg';
COMMENT ON COLUMN fleet.trips.distance_km IS 'Distance driven in kilometres';

INSERT INTO fleet.trips VALUES
    (100, 1, 1, TIMESTAMPTZ '2024-03-01 08:00:00+00', 12.50, 'a'),
    (100, 2, 1, TIMESTAMPTZ '2024-03-01 09:30:00+00',  3.25, NULL),
    (101, 1, 2, TIMESTAMPTZ '2024-03-02 10:00:00+00', 40.00, 'b'),
    (102, 1, 3, TIMESTAMPTZ '2024-03-03 11:15:00+00',  7.75, NULL);

-- > 2000 rows, for max_rows / truncation tests.
CREATE TABLE fleet.positions (
    position_id integer PRIMARY KEY,
    vehicle_id  integer NOT NULL REFERENCES fleet.vehicles (vehicle_id),
    recorded_at timestamp NOT NULL,
    speed_kmh   integer NOT NULL
);
INSERT INTO fleet.positions
SELECT i, 1 + (i % 3), TIMESTAMP '2024-01-01 00:00:00' + i * INTERVAL '1 minute', i % 120
FROM generate_series(1, 2500) AS i;

CREATE TABLE fleet.events (
    event_id  integer NOT NULL,
    happened  date NOT NULL,
    kind      text NOT NULL
) PARTITION BY RANGE (happened);
COMMENT ON TABLE fleet.events IS 'Vehicle events, partitioned by year';
CREATE TABLE fleet.events_2023 PARTITION OF fleet.events
    FOR VALUES FROM ('2023-01-01') TO ('2024-01-01');
CREATE TABLE fleet.events_2024 PARTITION OF fleet.events
    FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
INSERT INTO fleet.events VALUES
    (1, DATE '2023-06-01', 'ignition_on'),
    (2, DATE '2024-02-02', 'harsh_braking'),
    (3, DATE '2024-08-08', 'ignition_off');

CREATE FUNCTION fleet.fn_fleet_size() RETURNS integer
    LANGUAGE sql STABLE AS $$ SELECT count(*)::integer FROM fleet.vehicles $$;
COMMENT ON FUNCTION fleet.fn_fleet_size() IS 'Number of vehicles';

-- ── reporting: awkward types, views, a matview, functions, the canary ────────
CREATE TABLE reporting.awkward (
    id     integer PRIMARY KEY,
    num    numeric,
    big    bigint,
    ts     timestamp,
    tstz   timestamptz,
    dur    interval,
    uid    uuid,
    doc    jsonb,
    tags   text[],
    nums   integer[],
    blob   bytea,
    addr   inet,
    day    date,
    flag   boolean,
    label  text,
    "drop" text
);
COMMENT ON TABLE reporting.awkward IS 'Every awkward type the server must serialise exactly';

INSERT INTO reporting.awkward VALUES
    (1,
     12345678901234567890.123456789012345678901234567890,
     9223372036854775807,
     'infinity',
     TIMESTAMPTZ '2024-03-01 12:34:56.789+00',
     INTERVAL '1 year 2 mons 3 days 04:05:06.789',
     'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
     '{"a": [1, 2, {"b": null}], "é": "ünïcødé 🚀", "n": 1.50, "big": 123456789012345678901234567890}',
     ARRAY['x', NULL, 'with "quote"', 'comma,inside'],
     ARRAY[1, NULL, 3],
     '\x00ff10'::bytea,
     '192.168.0.1/24',
     DATE '2024-02-29',
     true,
     'café 🚀 שלום עולם',
     'drop me'),
    (2,
     'NaN',
     -9223372036854775808,
     '-infinity',
     TIMESTAMPTZ '1999-12-31 23:59:59.999999+00',
     INTERVAL '-5 days',
     '00000000-0000-0000-0000-000000000000',
     '[]',
     '{}',
     '{{1,2},{3,4}}',
     '\x'::bytea,
     '::1',
     DATE '0001-01-01',
     false,
     '',
     NULL),
    (3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
    (4,
     -0.000000000000000000000000000001,
     0,
     TIMESTAMP '2024-01-02 03:04:05.123456',
     NULL, NULL, NULL,
     '"just a string"',
     ARRAY['line1
line2', 'tab	here', 'back\slash'],
     NULL,
     decode('deadbeef', 'hex'),
     NULL, NULL, NULL,
     E'quote " backslash \\ newline \n end',
     NULL);

CREATE TABLE reporting."weird""name" (
    id    integer PRIMARY KEY,
    "odd ""col""" text
);
INSERT INTO reporting."weird""name" VALUES (1, 'one'), (2, 'two');

CREATE TABLE reporting.canary (
    id   integer PRIMARY KEY,
    note text NOT NULL
);
INSERT INTO reporting.canary VALUES (1, 'do not touch'), (2, 'still here'), (3, 'canary');
-- Same data in a schema the role cannot read.
CREATE TABLE infrastructure.canary (LIKE reporting.canary INCLUDING ALL);
INSERT INTO infrastructure.canary SELECT * FROM reporting.canary;

CREATE TABLE reporting.tickets (
    ticket_id integer PRIMARY KEY,
    summary   text NOT NULL
);
INSERT INTO reporting.tickets VALUES
    (1, 'Customer says: please delete my old address'),
    (2, 'Drop-off point moved'),
    (3, 'All good');

CREATE VIEW reporting.v_trips AS
    SELECT t.trip_id, t.leg, v.plate, t.started_at, t.distance_km
    FROM fleet.trips t JOIN fleet.vehicles v USING (vehicle_id);
COMMENT ON VIEW reporting.v_trips IS 'Trips with the vehicle plate';

CREATE MATERIALIZED VIEW reporting.mv_daily_distance AS
    SELECT started_at::date AS day, sum(distance_km) AS km
    FROM fleet.trips GROUP BY 1;
COMMENT ON MATERIALIZED VIEW reporting.mv_daily_distance IS 'Distance per day';

CREATE FUNCTION reporting.fn_trip_count(p_vehicle integer) RETURNS bigint
    LANGUAGE sql STABLE AS $$ SELECT count(*) FROM fleet.trips WHERE vehicle_id = p_vehicle $$;
COMMENT ON FUNCTION reporting.fn_trip_count(integer) IS 'Trips driven by one vehicle';

CREATE FUNCTION reporting.fn_distance_between(p_from date, p_to date DEFAULT DATE '2100-01-01')
    RETURNS TABLE (vehicle_id integer, km numeric)
    LANGUAGE sql STABLE AS $$
        SELECT vehicle_id, sum(distance_km) FROM fleet.trips
        WHERE started_at::date BETWEEN p_from AND p_to GROUP BY 1 ORDER BY 1
    $$;

-- A function that writes, callable by the read-only role: only the read-only transaction stops it.
CREATE FUNCTION reporting.fn_purge_canary() RETURNS integer
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER AS $$
BEGIN
    DELETE FROM reporting.canary;
    RETURN 0;
END
$$;
COMMENT ON FUNCTION reporting.fn_purge_canary() IS 'Deliberately destructive: must never succeed through the server';

-- A foreign table (file_fdw ships with Debian's postgresql-15). Optional: the suite
-- skips the foreign-table assertions if the extension cannot be created.
DO $$
BEGIN
    CREATE EXTENSION IF NOT EXISTS file_fdw;
    CREATE SERVER fixture_files FOREIGN DATA WRAPPER file_fdw;
    CREATE FOREIGN TABLE reporting.ft_null (line text)
        SERVER fixture_files OPTIONS (filename '/dev/null', format 'text');
EXCEPTION WHEN OTHERS THEN
    RAISE NOTICE 'file_fdw unavailable: %', SQLERRM;
END
$$;

-- ── infrastructure: exists, but the read-only role has no USAGE on it ────────
CREATE TABLE infrastructure.secrets (
    id    integer PRIMARY KEY,
    value text NOT NULL
);
INSERT INTO infrastructure.secrets VALUES (1, 'not for analysts');

ANALYZE;
