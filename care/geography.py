"""Postcodes, postcode districts and distances on the Earth's surface.

Partner instances share a PA's postcode district (the outward code, `N12`), never a
position, so distances to partner PAs are measured from district centroids. The centroids
ship with the code in `care/data/postcode_districts.csv` (derived from OS Code-Point Open,
Great Britain; see docs/geography.md): nothing is fetched at run time. The file is read
once, on first use.
"""

from __future__ import annotations

import csv
import math
import re
from functools import cache
from importlib import resources
from typing import Any

from sqlalchemy import Float, case, cast, func, literal
from sqlalchemy.dialects import postgresql
from sqlalchemy.sql.elements import ColumnElement

EARTH_RADIUS_KM = 6371.0088  # mean radius (IUGG), in Python and in the SQL below
CENTROIDS_FILE = "postcode_districts.csv"

# Outward code: area (1-2 letters), district number (1-2 digits) or digit + letter
# (`W1A`, `EC1A`); inward code: a digit and two letters. Shapes only: whether a district
# exists is a question for the centroid table.
_OUTWARD = r"[A-Z]{1,2}[0-9][0-9A-Z]?"
_POSTCODE = re.compile(rf"({_OUTWARD})([0-9][A-Z]{{2}})")
_DISTRICT = re.compile(_OUTWARD)
MAX_POSTCODE_LENGTH = 16  # generous for "SW1A 1AA" with stray spaces; longer is junk


def postcode_district(value: str) -> str | None:
    """The postcode district of a full postcode or of a district, or None if it is neither.

    `"n12 8qb"` -> `"N12"`, `"N128QB"` -> `"N12"`, `" n12 "` -> `"N12"`, `"N1 2"` -> None.
    Case and surrounding whitespace are ignored; one space may separate the outward from the
    inward code, and anything else that is not a postcode's shape is junk.
    """
    if len(value) > MAX_POSTCODE_LENGTH or not value.isascii():  # "ſ1".upper() is "S1"
        return None
    parts = value.upper().split()
    if len(parts) == 2:  # "N12 8QB": a space only ever separates outward from inward
        full = _POSTCODE.fullmatch("".join(parts))
        return full.group(1) if full and full.group(2) == parts[1] else None
    if len(parts) != 1:
        return None
    if full := _POSTCODE.fullmatch(parts[0]):
        return full.group(1)
    return parts[0] if _DISTRICT.fullmatch(parts[0]) else None


@cache
def _centroids() -> dict[str, tuple[float, float]]:
    text = resources.files("care").joinpath("data", CENTROIDS_FILE).read_text("utf-8")
    rows = csv.DictReader(line for line in text.splitlines() if not line.startswith("#"))
    return {r["district"]: (float(r["latitude"]), float(r["longitude"])) for r in rows}


def all_centroids() -> dict[str, tuple[float, float]]:
    """Every district's centroid, by district (read-only: the cached table itself)."""
    return _centroids()


def district_centroid(district: str) -> tuple[float, float] | None:
    """(latitude, longitude) in WGS84 degrees of a postcode district's centroid.

    Accepts a district or a full postcode in any case; None for junk and for districts the
    table does not know (Northern Ireland's BT, the Channel Islands, the Isle of Man, and
    districts with no geographic postcodes).
    """
    normalised = postcode_district(district)
    return None if normalised is None else _centroids().get(normalised)


def distance_km(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Great-circle (haversine) distance in km between two (latitude, longitude) points.

    The same formula as `great_circle_km` (SQL), so partner PAs (measured
    from district centroids) and our own PAs (from their homes) rank on one scale.
    """
    lat1, lon1 = map(math.radians, a)
    lat2, lon2 = map(math.radians, b)
    h = (
        math.sin((lat2 - lat1) / 2) ** 2
        + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    )
    return 2 * EARTH_RADIUS_KM * math.asin(math.sqrt(min(1.0, h)))


# --- the same rules in SQL -------------------------------------------------------------


def _inline(value: float) -> ColumnElement[float]:
    """A constant rendered into the statement (not a bind parameter)."""
    return literal(value, Float, literal_execute=True)


def great_circle_km(lat1: Any, lon1: Any, lat2: Any, lon2: Any) -> ColumnElement[float]:
    """`distance_km` in SQL: the haversine distance in km between two points given in
    degrees; NULL when any coordinate is NULL. Clamped against rounding near antipodes
    with CASE, not least(), which would ignore a NULL and turn an unknown place into
    20,015 km."""
    half_dlat = func.radians(lat2 - lat1) / _inline(2.0)
    half_dlon = func.radians(lon2 - lon1) / _inline(2.0)
    h = func.power(func.sin(half_dlat), _inline(2.0)) + func.cos(func.radians(lat1)) * func.cos(
        func.radians(lat2)
    ) * func.power(func.sin(half_dlon), _inline(2.0))
    clamped = case((h > _inline(1.0), _inline(1.0)), else_=h)
    return cast(_inline(2 * EARTH_RADIUS_KM) * func.asin(func.sqrt(clamped)), Float)


# `postcode_district`'s reading in SQL: one run of spaces may separate the outward code from
# the inward one, and surrounding spaces are ignored.
_FULL_POSTCODE_SQL = rf"^\s*({_OUTWARD})\s*[0-9][A-Z]{{2}}\s*$"
_BARE_DISTRICT_SQL = rf"^\s*({_OUTWARD})\s*$"


def postcode_district_sql(postcode: Any) -> ColumnElement[str]:
    """`postcode_district` in SQL: the district of a postcode or district in any case;
    NULL for NULL and for anything that is neither."""
    upper = func.upper(postcode)
    return func.coalesce(
        func.substring(upper, _FULL_POSTCODE_SQL), func.substring(upper, _BARE_DISTRICT_SQL)
    )


def as_sql_text(expression: ColumnElement[Any]) -> str:
    """An expression of this module as SQL text, for statements written as text
    (care/expansion.py); its columns given with `literal_column`."""
    return str(
        expression.compile(dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True})
    )
