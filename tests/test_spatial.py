"""PostGIS values an analyst can read, exactly, in query and sample_table and in every format.

Debian's postgresql-15-postgis-3 (tests/system-deps.sh) in the extension database of the session
cluster (conftest.extension_db). geometry has always come back as GeoJSON (PostGIS's json cast, which
row_to_json uses); geography now does too, boxes come back as their exact coordinates, rasters as
their metadata, and whatever GeoJSON cannot say exactly (M coordinates, curves, TIN, triangles,
polyhedral surfaces) as extended WKT with every digit.
"""

from __future__ import annotations

from decimal import Decimal

import pytest

from conftest import RO_ROLE
from test_formats import as_objects

SETUP_SQL = f"""
SET client_min_messages = warning;
CREATE SCHEMA gis;
CREATE DOMAIN gis.site AS geography;
CREATE TABLE gis.places (
    id        integer PRIMARY KEY,
    name      text,
    geom      geometry,
    geog      geography,
    site      gis.site,
    bbox      box2d,
    bbox3     box3d,
    tile      raster,
    route     geography[]
);
INSERT INTO gis.places VALUES
  (1, 'depot', 'SRID=4326;POINT(36.821946 -1.292066)', 'SRID=4326;POINT(36.821946 -1.292066)',
      'SRID=4326;POINT(0.1 0.2)', 'BOX(0.12345678901234566 1,2 3.5)', 'BOX3D(1 2 3,4 5 6.25)',
      st_makeemptyraster(10, 20, 0.5, 0.25, 1, -1, 0, 0, 4326),
      ARRAY['SRID=4326;POINT(1 2)'::geography, NULL, 'SRID=4326;POINT(3 4)']),
  (2, 'nothing', NULL, NULL, NULL, NULL, NULL, NULL, NULL),
  (3, 'line', 'SRID=3857;LINESTRING(0 0,1000.5 2000.25)', 'SRID=4326;LINESTRING(0 0,1 1)',
      NULL, NULL, NULL, NULL, '{{}}'),
  (4, 'curve', 'SRID=4326;CIRCULARSTRING(0 0,1 1,2 0.12345678901234566)', 'SRID=4326;POINTM(1 2 3)',
      NULL, NULL, NULL, NULL, '{{}}'),
  (5, 'solid', 'POLYHEDRALSURFACE Z(((0 0 0,0 0 1,0 1 1,0 0 0)))', NULL, NULL, NULL, NULL, NULL, NULL),
  (6, 'mixed', 'GEOMETRYCOLLECTION(POINT(1 2),TRIANGLE((0 0,0 1,1 1,0 0)))', NULL, NULL, NULL, NULL, NULL, NULL),
  (7, 'fine', 'SRID=4326;POINT(-0.000123456789012345 179.99999999999997)', NULL, NULL, NULL, NULL, NULL, NULL);
GRANT USAGE ON SCHEMA gis TO {RO_ROLE};
GRANT SELECT ON ALL TABLES IN SCHEMA gis TO {RO_ROLE};
"""

CRS_4326 = {"type": "name", "properties": {"name": "EPSG:4326"}}


@pytest.fixture(scope="module")
def gis(pg, extension_db, server_factory):
    pg.psql(SETUP_SQL, db=extension_db)
    srv = server_factory(DATABASE_URL=pg.ro_dsn_for(extension_db))
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def places(gis):
    res = gis.query("SELECT * FROM gis.places ORDER BY id")
    types = {c["name"]: c["type"] for c in res["columns"]}
    assert types["geog"] == "geography" and types["bbox"] == "box2d" and types["route"] == "geography[]"
    return {r["id"]: r for r in res["rows"]}


def test_geography_is_geojson_like_geometry(places):
    depot = places[1]
    point = {"type": "Point", "crs": CRS_4326, "coordinates": [Decimal("36.821946"), Decimal("-1.292066")]}
    assert depot["geom"] == point
    assert depot["geog"] == point
    assert places[3]["geog"] == {"type": "LineString", "crs": CRS_4326, "coordinates": [[0, 0], [1, 1]]}


def test_geometry_keeps_its_srid_and_coordinates(places):
    assert places[3]["geom"] == {"type": "LineString", "crs": {"type": "name", "properties": {"name": "EPSG:3857"}},
                                 "coordinates": [[0, 0], [Decimal("1000.5"), Decimal("2000.25")]]}
    # every digit: PostGIS's json cast would round the first to -0.000123456789012
    assert places[7]["geom"]["coordinates"] == [Decimal("-0.000123456789012345"), Decimal("179.99999999999997")]


def test_a_domain_over_geography_reads_like_geography(places):
    assert places[1]["site"] == {"type": "Point", "crs": CRS_4326, "coordinates": [Decimal("0.1"), Decimal("0.2")]}


def test_boxes_are_exact_coordinates(places, pg, extension_db):
    assert places[1]["bbox"] == {"xmin": Decimal("0.12345678901234566"), "ymin": 1, "xmax": 2, "ymax": Decimal("3.5")}
    assert places[1]["bbox3"] == {"xmin": 1, "ymin": 2, "zmin": 3, "xmax": 4, "ymax": 5, "zmax": Decimal("6.25")}
    # every digit PostgreSQL has for the double (box2d's own text output rounds to 15 digits)
    exact = pg.psql("SET extra_float_digits = 1; SELECT st_xmin(bbox) FROM gis.places WHERE id = 1", db=extension_db)
    assert str(places[1]["bbox"]["xmin"]) == exact
    assert places[2]["bbox"] is None and places[2]["bbox3"] is None


def test_raster_is_its_metadata(places):
    assert places[1]["tile"] == {"upperleftx": Decimal("0.5"), "upperlefty": Decimal("0.25"), "width": 10,
                                 "height": 20, "scalex": 1, "scaley": -1, "skewx": 0, "skewy": 0, "srid": 4326,
                                 "numbands": 0}
    assert places[2]["tile"] is None


def test_arrays_of_geography_are_arrays_of_geojson(places):
    first = {"type": "Point", "crs": CRS_4326, "coordinates": [1, 2]}
    second = {"type": "Point", "crs": CRS_4326, "coordinates": [3, 4]}
    assert places[1]["route"] == [first, None, second]
    assert places[3]["route"] == [] and places[2]["route"] is None


@pytest.mark.parametrize("row_id, ewkt_sql", [
    (4, "st_asewkt(geom, 20)"),   # a curve: GeoJSON has none (PostGIS refuses it)
    (5, "st_asewkt(geom, 20)"),   # a polyhedral surface: PostGIS's GeoJSON refuses it
    (6, "st_asewkt(geom, 20)"),   # a triangle in a collection: GeoJSON would turn it into a polygon
])
def test_what_geojson_cannot_say_comes_back_as_exact_ewkt(places, pg, extension_db, row_id, ewkt_sql):
    assert places[row_id]["geom"] == pg.psql(f"SELECT {ewkt_sql} FROM gis.places WHERE id = {row_id}", db=extension_db)
    assert places[4]["geom"] == "SRID=4326;CIRCULARSTRING(0 0,1 1,2 0.12345678901234566)"


def test_m_coordinates_are_kept(places):
    assert places[4]["geog"] == "SRID=4326;POINTM(1 2 3)"


def test_coordinates_have_every_digit(places, pg, extension_db):
    # PostgreSQL's shortest exact text of each double (extra_float_digits = 1), coordinate by coordinate
    for row_id in (1, 3, 7):
        exact = pg.psql("SET extra_float_digits = 1; SELECT string_agg(st_x(p.geom) || ' ' || st_y(p.geom), ',' "
                        f"ORDER BY p.path) FROM gis.places, st_dumppoints(geom) AS p WHERE id = {row_id}",
                        db=extension_db).splitlines()[-1]
        coordinates = places[row_id]["geom"]["coordinates"]
        points = coordinates if isinstance(coordinates[0], list) else [coordinates]
        assert ",".join(f"{x} {y}" for x, y in points) == exact, row_id


def test_an_srid_spatial_ref_sys_does_not_know_comes_back_without_crs(gis):
    res = gis.query("SELECT 'SRID=990001;POINT(1 2)'::geometry AS g")
    assert res["rows"][0]["g"] == {"type": "Point", "coordinates": [1, 2]}


def test_sample_table_reads_the_same(gis, places):
    sample = gis.tool("sample_table", {"schema": "gis", "table": "places", "n": 10})
    assert {r["id"]: r for r in sample["rows"]} == places


@pytest.mark.parametrize("fmt", ["arrays", "csv", "markdown"])
def test_every_format_carries_the_readable_values(gis, places, fmt):
    res = gis.call_tool("query", {"sql": "SELECT id, name, geog, bbox, tile, route FROM gis.places ORDER BY id",
                                  "format": fmt})
    for row in as_objects(res, fmt):
        for key in ("geog", "bbox", "tile", "route"):
            assert row[key] == places[row["id"]][key], (fmt, row["id"], key)


def test_expressions_and_aggregates_are_readable_too(gis):
    res = gis.query("SELECT st_makeenvelope(0, 0, 1, 1, 4326)::geography AS area, st_extent(geom) AS extent, "
                    "array_agg(geog ORDER BY id) FILTER (WHERE geog IS NOT NULL AND id < 4) AS all_geog "
                    "FROM gis.places WHERE id IN (1, 3)")
    row = res["rows"][0]
    assert row["area"]["type"] == "Polygon"
    assert row["extent"] == {"xmin": 0, "ymin": Decimal("-1.292066"), "xmax": Decimal("1000.5"), "ymax": Decimal("2000.25")}
    assert [g["type"] for g in row["all_geog"]] == ["Point", "LineString"]


def test_profile_columns_shows_postgis_values_readably(gis):
    """profile_columns' sampled min/max and top values go through the same readable rendering."""
    res = gis.tool("profile_columns", {"schema": "gis", "table": "places", "sample": True,
                                       "columns": ["geog", "bbox", "tile", "route"]})
    cols = {c["name"]: c for c in res["columns"]}
    geog = cols["geog"]["sample"]
    assert geog["distinct"] == 3 and geog["null_fraction"] == Decimal("0.5714")  # 4 of 7 rows
    values = [v["value"] for v in geog["most_common"]]
    # GeoJSON, or extended WKT where GeoJSON cannot say it (an M coordinate); never hex EWKB
    assert sorted(v["type"] if isinstance(v, dict) else v for v in values) == [
        "LineString", "Point", "SRID=4326;POINTM(1 2 3)"]
    assert geog["min"]["type"] == "Point" and geog["max"] == "SRID=4326;POINTM(1 2 3)"
    assert cols["bbox"]["sample"]["most_common"][0]["value"] == {
        "xmin": Decimal("0.12345678901234566"), "ymin": 1, "xmax": 2, "ymax": Decimal("3.5")}
    assert cols["tile"]["sample"]["most_common"][0]["value"]["width"] == 10  # raster: its metadata
    assert cols["route"]["sample"]["min"] is None  # an array: top values by their text, no ordering
