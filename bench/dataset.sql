-- Deterministic benchmark dataset (no random()): BENCH_ROWS rows of vehicle positions,
-- 200 vehicles reporting in turn, evenly spread over 30 days from 2024-01-01 00:00 UTC.
-- psql variables: rows (row count), ro_password.
CREATE SCHEMA bench;
CREATE TABLE bench.positions (
  id         bigint PRIMARY KEY,
  vehicle_id integer NOT NULL,
  ts         timestamptz NOT NULL,
  lat        numeric(9,6) NOT NULL,
  lon        numeric(9,6) NOT NULL,
  speed      real NOT NULL,
  heading    smallint NOT NULL,
  ignition   boolean NOT NULL,
  odometer   numeric(12,1) NOT NULL,
  driver_id  integer,
  status     text NOT NULL
);
INSERT INTO bench.positions
SELECT g,
       1 + (g % 200),
       timestamptz '2024-01-01 00:00:00+00' + (g - 1) * (interval '30 days' / :rows),
       52.000000 + ((g * 7919) % 1000000) / 1000000.0,
       13.000000 + ((g * 104729) % 1000000) / 1000000.0,
       ((g * 37) % 1300) / 10.0,
       (g * 13) % 360,
       g % 7 <> 0,
       (g / 200) * 0.4,
       CASE WHEN g % 11 = 0 THEN NULL ELSE 1 + (g % 150) END,
       (ARRAY['moving', 'idle', 'parked', 'moving', 'moving'])[1 + g % 5]
FROM generate_series(1::bigint, :rows) AS g;
CREATE INDEX positions_ts_idx ON bench.positions (ts);
VACUUM (ANALYZE, FREEZE) bench.positions;

CREATE ROLE bench_ro LOGIN PASSWORD :'ro_password' NOSUPERUSER NOCREATEDB NOCREATEROLE;
GRANT USAGE ON SCHEMA bench TO bench_ro;
GRANT SELECT ON ALL TABLES IN SCHEMA bench TO bench_ro;
