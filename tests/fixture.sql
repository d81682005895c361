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

-- ── "Sales": the awkward cases of the analyst tools ───────────────────────────
-- Quoted mixed-case names and no comments anywhere; composite, self-referencing and
-- one-to-one foreign keys; a cycle in the FK graph (orders → Customers → orders); an
-- expression index; a partitioned table with a foreign key; a view and a materialized view;
-- a table big enough (20,000 rows) for explain to call its sequential scan out; a column the
-- read-only role may not SELECT (conftest.py grants "Customers" column by column, without
-- email); a table name (tickets) that also exists in reporting; and, at the end of this file
-- after ANALYZE, a table that is never analysed.
CREATE SCHEMA "Sales";
CREATE TABLE "Sales"."Customers" (
    "CustomerID"  integer PRIMARY KEY,
    "Name"        text NOT NULL,
    email         text,
    region        text NOT NULL,
    credit_limit  numeric(12,2),
    referred_by   integer REFERENCES "Sales"."Customers" ("CustomerID"),
    last_order_id integer
);
CREATE INDEX customers_email_lower_idx ON "Sales"."Customers" (lower(email));
INSERT INTO "Sales"."Customers"
SELECT i, 'Customer ' || i, CASE WHEN i % 4 = 0 THEN NULL ELSE 'c' || i || '@example.com' END,
       (ARRAY['North', 'South', 'East', 'West'])[1 + i % 4], 1000 + (i % 7) * 250.5,
       CASE WHEN i > 10 THEN 1 + i % 10 END, NULL
FROM generate_series(1, 200) AS i;

CREATE TABLE "Sales".orders (
    order_id    integer PRIMARY KEY,
    customer_id integer NOT NULL REFERENCES "Sales"."Customers",
    placed_on   date NOT NULL,
    status      text NOT NULL
);
INSERT INTO "Sales".orders
SELECT i, 1 + i % 200, DATE '2024-01-01' + i % 366, (ARRAY['open', 'paid', 'shipped'])[1 + i % 3]
FROM generate_series(1, 1000) AS i;
ALTER TABLE "Sales"."Customers" ADD CONSTRAINT customers_last_order_fk
    FOREIGN KEY (last_order_id) REFERENCES "Sales".orders;
UPDATE "Sales"."Customers" SET last_order_id = "CustomerID" + 800;

CREATE TABLE "Sales".order_lines (
    order_id     integer REFERENCES "Sales".orders,
    line_no      integer,
    product_code text NOT NULL,
    quantity     integer NOT NULL,
    PRIMARY KEY (order_id, line_no)
);
INSERT INTO "Sales".order_lines
SELECT o, l, 'P-' || ((o * l) % 50), 1 + (o + l) % 9 FROM generate_series(1, 1000) o, generate_series(1, 3) l;

CREATE TABLE "Sales".shipments (
    shipment_id integer PRIMARY KEY,
    order_id    integer NOT NULL,
    line_no     integer NOT NULL,
    shipped_at  timestamptz,
    CONSTRAINT shipments_line_fk FOREIGN KEY (order_id, line_no) REFERENCES "Sales".order_lines
);
INSERT INTO "Sales".shipments
SELECT i, 1 + i % 1000, 1 + i % 3, TIMESTAMPTZ '2024-02-01 00:00:00+00' + i * INTERVAL '1 hour'
FROM generate_series(1, 2000) AS i;

CREATE TABLE "Sales".customer_settings (
    "CustomerID" integer PRIMARY KEY REFERENCES "Sales"."Customers",
    newsletter   boolean NOT NULL
);
INSERT INTO "Sales".customer_settings SELECT i, i % 2 = 0 FROM generate_series(1, 100) AS i;

CREATE TABLE "Sales".tickets (
    ticket_id   integer PRIMARY KEY,
    customer_id integer REFERENCES "Sales"."Customers"
);

CREATE TABLE "Sales".invoices (
    invoice_id integer NOT NULL,
    issued_on  date NOT NULL,
    order_id   integer NOT NULL REFERENCES "Sales".orders,
    amount     numeric(12,2) NOT NULL,
    PRIMARY KEY (invoice_id, issued_on)
) PARTITION BY RANGE (issued_on);
CREATE TABLE "Sales".invoices_2024 PARTITION OF "Sales".invoices FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
CREATE TABLE "Sales".invoices_2025 PARTITION OF "Sales".invoices FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
INSERT INTO "Sales".invoices
SELECT i, DATE '2024-06-01' + (i % 400), i, 10 + i % 90 FROM generate_series(1, 1000) AS i;

CREATE TABLE "Sales".page_views (
    view_id     bigint PRIMARY KEY,
    customer_id integer NOT NULL,
    viewed_at   timestamptz NOT NULL,
    path        text NOT NULL
);
CREATE INDEX page_views_viewed_at_idx ON "Sales".page_views (viewed_at);
CREATE INDEX page_views_path_lower_idx ON "Sales".page_views (lower(path));
INSERT INTO "Sales".page_views
SELECT i, 1 + i % 200, TIMESTAMPTZ '2024-03-01 00:00:00+00' + i * INTERVAL '1 minute', '/page/' || (i % 40)
FROM generate_series(1, 20000) AS i;

CREATE VIEW "Sales".v_order_totals AS
    SELECT o.order_id, o."customer_id", sum(l.quantity) AS items
    FROM "Sales".orders o JOIN "Sales".order_lines l USING (order_id) GROUP BY o.order_id, o.customer_id;
CREATE MATERIALIZED VIEW "Sales".mv_region_orders AS
    SELECT c.region, count(*) AS orders FROM "Sales".orders o JOIN "Sales"."Customers" c ON c."CustomerID" = o.customer_id
    GROUP BY c.region;

-- ── infrastructure: exists, but the read-only role has no USAGE on it ────────
CREATE TABLE infrastructure.secrets (
    id    integer PRIMARY KEY,
    value text NOT NULL
);
INSERT INTO infrastructure.secrets VALUES (1, 'not for analysts');

ANALYZE;

-- Never analysed (created after ANALYZE, autovacuum off so it stays that way, no index, whose
-- build would record a row count): profile_columns has no statistics for it and says so.
CREATE TABLE "Sales".leads (
    lead_id integer NOT NULL,
    source  text,
    score   integer,
    spot    point
) WITH (autovacuum_enabled = false);
INSERT INTO "Sales".leads
SELECT i, CASE WHEN i % 5 = 0 THEN NULL ELSE (ARRAY['web', 'fair', 'referral'])[1 + i % 3] END, i % 101,
       point(i % 10, i % 7)
FROM generate_series(1, 500) AS i;
