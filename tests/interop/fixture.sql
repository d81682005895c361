-- Tiny fixture for tests/interop.sh (run as superuser in database `analytics`).
-- :ro_password is set with psql -v.
CREATE SCHEMA reporting;
COMMENT ON SCHEMA reporting IS 'Reporting views for analysts';

CREATE TABLE reporting.vehicles (
  id         integer PRIMARY KEY,
  name       text NOT NULL,
  active     boolean NOT NULL DEFAULT true,
  meta       jsonb,
  tags       text[],
  created_at timestamptz NOT NULL
);
COMMENT ON TABLE reporting.vehicles IS 'Fleet vehicles';
COMMENT ON COLUMN reporting.vehicles.name IS 'Display name';

CREATE TABLE reporting.trips (
  id          bigint PRIMARY KEY,
  vehicle_id  integer NOT NULL REFERENCES reporting.vehicles(id),
  started_at  timestamptz NOT NULL,
  distance_km numeric(10,3),
  avg_speed   real
);
COMMENT ON TABLE reporting.trips IS 'One row per trip';

CREATE VIEW reporting.active_vehicles AS SELECT id, name FROM reporting.vehicles WHERE active;

CREATE FUNCTION reporting.trip_count(v integer) RETURNS bigint
  LANGUAGE sql STABLE AS $$ SELECT count(*) FROM reporting.trips WHERE vehicle_id = v $$;
COMMENT ON FUNCTION reporting.trip_count(integer) IS 'Trips of one vehicle';

INSERT INTO reporting.vehicles VALUES
  (1, 'Van 1', true,  '{"seats": 3, "ev": false}', ARRAY['north','cold'], '2024-01-01 08:00:00+00'),
  (2, 'Van 2', true,  '{"seats": 2, "ev": true}',  ARRAY['south'],        '2024-01-02 09:30:00+00'),
  (3, 'Truck', false, NULL,                        NULL,                   '2024-01-03 10:45:00+00');
INSERT INTO reporting.trips
  SELECT g, 1 + g % 3, timestamptz '2024-02-01 00:00:00+00' + g * interval '1 hour', g * 1.125, 40 + g % 30
  FROM generate_series(1, 100) g;
ANALYZE;

-- A schema the read-only role cannot see.
CREATE SCHEMA private;
CREATE TABLE private.secrets (k text);

CREATE ROLE mcp_ro LOGIN PASSWORD :'ro_password' NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT;
GRANT CONNECT ON DATABASE analytics TO mcp_ro;
GRANT USAGE ON SCHEMA reporting TO mcp_ro;
GRANT SELECT ON ALL TABLES IN SCHEMA reporting TO mcp_ro;
GRANT EXECUTE ON FUNCTION reporting.trip_count(integer) TO mcp_ro;
ALTER ROLE mcp_ro SET default_transaction_read_only = on;
