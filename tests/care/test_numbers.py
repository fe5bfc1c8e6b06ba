"""Numbers are numbers (migration 0024): PostgreSQL's numeric and float8 hold NaN, which
sorts above every number, and float8 holds infinities; the checks keep them out of every
column the API reads as a Float, so no row can break a response on either read path."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from sqlalchemy import text
from sqlalchemy.dialects.postgresql import Range
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from care.models import PartnerWindow
from tests.factories import Build, at

# (table, column, the row to write it in, the constraint that refuses it)
WRITES = [
    ("coop", "max_weekly_hours", "id = 1", "ck_coop_rules_a_number"),
    ("coop", "min_daily_rest_hours", "id = 1", "ck_coop_rules_a_number"),
    (
        "service_user_profile",
        "planned_weekly_hours",
        "true",
        "ck_service_user_profile_hours_a_number",
    ),
    ("pa_profile", "contracted_weekly_hours", "true", "ck_pa_profile_a_number"),
    ("pa_profile", "max_travel_km", "true", "ck_pa_profile_a_number"),
    ("cluster", "radius_km", "true", "ck_cluster_radius_a_number"),
    # numeric(6, 2): the type itself refuses an infinity, so only NaN needs the check.
    ("partner_window", "travel_km", "true", "ck_partner_window_travel_a_number"),
    ("cluster", "centre_latitude", "true", "ck_cluster_centre_latitude_range"),
    ("cluster", "centre_longitude", "true", "ck_cluster_centre_longitude_range"),
]


@pytest.mark.parametrize(("table", "column", "where", "constraint"), WRITES)
async def test_nan_is_refused(
    db: AsyncSession, table: str, column: str, where: str, constraint: str
) -> None:
    b = Build(db)
    await b.las()
    await b.coop()
    cluster = await b.cluster("Finchley")
    await b.service_user("Ada User", cluster=cluster)
    await b.pa("Pat PA", cluster=cluster)
    await _partner_window(db)
    await db.execute(
        text("UPDATE cluster SET centre_latitude = 51.5, centre_longitude = -0.2, radius_km = 3")
    )
    await db.commit()
    # A number is accepted; NaN (and, in float8, an infinity) is not.
    await db.execute(text(f"UPDATE {table} SET {column} = 1 WHERE {where}"))
    await db.rollback()
    values = ["NaN"] + (["Infinity", "-Infinity"] if column.startswith("centre_") else [])
    for value in values:
        with pytest.raises(IntegrityError) as refused:
            await db.execute(text(f"UPDATE {table} SET {column} = '{value}' WHERE {where}"))
        await db.rollback()
        assert constraint in str(refused.value), value
    stored = (
        await db.execute(text(f"SELECT count(*) FROM {table} WHERE {column} = 'NaN'"))
    ).scalar()
    assert stored == 0


async def _partner_window(db: AsyncSession) -> None:
    """One window of an active partnership's feed: partner_window rows need a partnership."""
    partnership = await Build(db).partnership("https://lea.example", ["AVAILABILITY"])
    start = at(days=1)
    db.add(
        PartnerWindow(
            partnership_id=partnership.id,
            ref="w1",
            period=0,
            pa_ref="r1",
            skills=[],
            district="EN1",
            travel_km=Decimal("5"),
            during=Range(start, start + dt.timedelta(hours=3), bounds="[)"),
        )
    )
    await db.flush()
