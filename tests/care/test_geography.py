"""Postcode districts and their centroids (care/geography.py, care/data/): the shipped
table, the lookups, the distances, and the grid conversion that built the table."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest
from sqlalchemy import literal, null, select
from sqlalchemy.ext.asyncio import AsyncSession

from care import demo
from care.data.build_postcode_districts import grid_to_osgb36, grid_to_wgs84
from care.geography import (
    CENTROIDS_FILE,
    EARTH_RADIUS_KM,
    distance_km,
    district_centroid,
    great_circle_km,
    postcode_district,
    postcode_district_sql,
)

TABLE = Path(demo.__file__).with_name("data") / CENTROIDS_FILE

# Reference points read off a map, each at the recognised centre of its place:
# Tally Ho Corner, North Finchley (the N12 district's high street junction), and
# Sheffield Town Hall (Pinstone Street, in S1, the city centre district).
TALLY_HO_CORNER = (51.6133, -0.1764)
SHEFFIELD_TOWN_HALL = (53.3806, -1.4703)


def _rows() -> list[dict[str, str]]:
    text = TABLE.read_text("utf-8")
    return list(csv.DictReader(line for line in text.splitlines() if not line.startswith("#")))


def test_the_table_is_small_attributed_and_covers_great_britain() -> None:
    assert TABLE.stat().st_size < 200_000
    header = [line for line in TABLE.read_text("utf-8").splitlines() if line.startswith("#")]
    assert any("Open Government Licence" in line for line in header)
    assert any("Contains OS data © Crown copyright and database right" in line for line in header)
    assert any("Contains Royal Mail data" in line for line in header)
    rows = _rows()
    districts = [r["district"] for r in rows]
    assert len(districts) == len(set(districts)) > 2800
    assert all(postcode_district(d) == d for d in districts)
    assert all(int(r["postcodes"]) >= 1 for r in rows)
    # Great Britain, from the Scilly Isles to Shetland, the Outer Hebrides to Lowestoft.
    assert all(49.8 < float(r["latitude"]) < 61.0 for r in rows)
    assert all(-8.7 < float(r["longitude"]) < 1.8 for r in rows)
    # Postcode areas from each corner: Aberdeen, Truro, Norwich, Carlisle, Cardiff, London.
    areas = {d[:2].rstrip("0123456789") for d in districts}
    assert {"AB", "TR", "NR", "CA", "CF", "E", "N", "NW", "SE", "SW", "W", "WC"} <= areas


def test_north_finchley_and_sheffield_centre_sit_where_they_should() -> None:
    n12 = district_centroid("N12")
    s1 = district_centroid("S1")
    assert n12 is not None and s1 is not None
    assert distance_km(n12, TALLY_HO_CORNER) < 1.5
    assert distance_km(s1, SHEFFIELD_TOWN_HALL) < 1.5


def test_distances_between_district_centroids_are_plausible() -> None:
    n12, n3, s1 = (district_centroid(d) for d in ("N12", "N3", "S1"))
    assert n12 is not None and n3 is not None and s1 is not None
    # North Finchley to Finchley Central: neighbouring districts, a couple of km apart.
    assert 1.0 < distance_km(n12, n3) < 4.0
    # North London to Sheffield: a little over 200 km as the crow flies.
    london_sheffield = distance_km(TALLY_HO_CORNER, SHEFFIELD_TOWN_HALL)
    assert 205 < london_sheffield < 225
    assert abs(distance_km(n12, s1) - london_sheffield) < 3
    assert distance_km(n12, s1) == pytest.approx(distance_km(s1, n12))
    assert distance_km(n12, n12) == 0


def test_distance_is_the_great_circle_on_the_mean_earth() -> None:
    # A degree of latitude along a meridian, and a quarter of the equator.
    assert distance_km((0, 0), (1, 0)) == pytest.approx(EARTH_RADIUS_KM * math.pi / 180)
    assert distance_km((0, 0), (0, 90)) == pytest.approx(EARTH_RADIUS_KM * math.pi / 2)
    assert distance_km((0, 0), (0, 180)) == pytest.approx(EARTH_RADIUS_KM * math.pi)


@pytest.mark.parametrize(
    ("value", "district"),
    [
        ("n12 8qb", "N12"),
        ("N12 8QB", "N12"),
        ("N128QB", "N12"),
        ("N12", "N12"),
        (" n12 ", "N12"),
        ("N1 2AA", "N1"),  # N1, not N12: the inward code is always three characters
        ("N12AA", "N1"),
        ("sw1a 1aa", "SW1A"),
        ("EC1A", "EC1A"),
        ("S1", "S1"),
        ("S10 2TN", "S10"),
        ("AB10 1XG", "AB10"),
    ],
)
def test_postcodes_and_districts_normalise_to_the_district(value: str, district: str) -> None:
    assert postcode_district(value) == district


@pytest.mark.parametrize(
    "value",
    [
        "",
        "   ",
        "12",
        "N",
        "NNN1",
        "N1 2",
        "N 12",
        "N12 8QB X",
        "N12-8QB",
        "N12 8Q",
        "1N2",
        "N12 QQB",
        "N12 8QB" + " " * 20,
        "Ñ12",
        "ſ1",
        "N12;DROP",
        "x" * 1000,
    ],
)
def test_junk_is_not_a_district(value: str) -> None:
    assert postcode_district(value) is None
    assert district_centroid(value) is None


def test_unknown_districts_have_no_centroid() -> None:
    # Well-formed but not in Great Britain's table: Northern Ireland, Jersey, and codes
    # that were never issued.
    for district in ("BT1", "JE2", "ZZ9", "N99", "QQ1"):
        assert postcode_district(district) == district
        assert district_centroid(district) is None


def test_a_full_postcode_gives_its_district_centroid() -> None:
    assert district_centroid("n12 8qb") == district_centroid("N12")


def _demo_districts() -> dict[str, tuple[float, float]]:
    """Every district the demo co-ops use (people's homes, clusters), with the demo's own
    approximate centre for it."""
    used: dict[str, tuple[float, float]] = {}
    for table in (demo.DISTRICTS, demo.NEIGHBOUR_COOP.districts, demo.DISTANT_COOP.districts):
        used.update(table)
    clusters = [*demo.CLUSTERS, *demo.NEIGHBOUR_COOP.clusters, *demo.DISTANT_COOP.clusters]
    for cluster in clusters:
        for district in (*cluster.districts, *cluster.home_districts):
            assert district in used, f"{cluster.name}: {district} has no demo centre"
    return used


def test_every_demo_district_has_a_centroid_near_the_demo_centre() -> None:
    used = _demo_districts()
    assert len(used) >= 20
    for district, centre in used.items():
        centroid = district_centroid(district)
        assert centroid is not None, district
        # The demo's hand-placed centres agree with the official centroids within a km.
        assert distance_km(centroid, centre) < 1.5, district


def test_the_grid_conversion_matches_the_ordnance_surveys_worked_example() -> None:
    # OS "A guide to coordinate systems in Great Britain", annex C: E 651409.903,
    # N 313177.270 is OSGB36 52°39'27.2531"N 1°43'4.5177"E.
    lat, lon = map(math.degrees, grid_to_osgb36(651409.903, 313177.270))
    assert lat == pytest.approx(52 + 39 / 60 + 27.2531 / 3600, abs=1e-7)
    assert lon == pytest.approx(1 + 43 / 60 + 4.5177 / 3600, abs=1e-7)


def test_the_datum_shift_lands_a_postcode_where_the_ons_puts_it() -> None:
    # N1 0AA: Code-Point Open grid reference, and the ONS Postcode Directory's WGS84
    # position for it (51.539424, -0.117931); the Helmert transform is good to metres.
    lat, lon = grid_to_wgs84(530626, 183961)
    assert distance_km((lat, lon), (51.539424, -0.117931)) < 0.01


async def test_the_sql_distance_and_district_agree_with_python(db: AsyncSession) -> None:
    """One formula in two languages: the SQL the candidate search, offers and expansion use
    gives Python's figures, NULL for an unknown place (never a clamp's 20,015 km), and no
    error at antipodes, where rounding pushes the haversine term past 1."""
    pairs = [
        (TALLY_HO_CORNER, SHEFFIELD_TOWN_HALL),
        (TALLY_HO_CORNER, TALLY_HO_CORNER),
        ((0.0, 0.0), (0.0, 180.0)),
        ((51.5, -0.1), (-51.5, 179.9)),
    ]
    for a, b in pairs:
        km = (await db.execute(select(great_circle_km(*a, *b)))).scalar_one()
        assert km == pytest.approx(distance_km(a, b), abs=1e-6), (a, b)
    unknown = (await db.execute(select(great_circle_km(null(), 0.0, 51.5, -0.1)))).scalar_one()
    assert unknown is None

    samples = [
        "N12 8QB",
        "n128qb",
        " n12 ",
        "EC1A 1BB",
        "W1A",
        "N1 2",
        "N1 28QB",
        "junk",
        "SW1A1AAX",
    ]
    for value in samples:
        sql = (await db.execute(select(postcode_district_sql(literal(value))))).scalar_one()
        assert sql == postcode_district(value), value
