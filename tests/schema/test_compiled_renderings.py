"""The compiled path's SQL renderings of values are byte for byte what the resolvers'
serialisation writes, at the edges of their ranges (tests/schema/test_compiled_reads.py
compares whole responses on the demo's values)."""

from __future__ import annotations

import datetime as dt

import asyncpg
import pytest
from sqlalchemy import BigInteger, Date, DateTime, Integer, cast, literal, select, text
from sqlalchemy.ext.asyncio import AsyncSession
from strawberry.relay import to_base64

from api.db import create_engine
from schema.compiled import registry
from schema.compiled.compiler import _date, _instant, global_id

NODE_TYPES = sorted(
    name
    for name, specs in registry.FIELDS.items()
    if any(isinstance(spec, registry.GlobalId) for spec in specs.values())
)
IDS = [0, 1, 7, 999_999, 2**31 - 1, 2**53 + 1, 2**63 - 1, -(2**63)]


@pytest.mark.parametrize("id_type", [BigInteger, Integer])
async def test_global_ids_are_strawberrys_for_every_node_type_and_id(
    db: AsyncSession, id_type: type
) -> None:
    assert {"AvailabilityWindow", "CoverExchange", "PersonalAssistant", "Visit"} <= set(NODE_TYPES)
    ids = IDS if id_type is BigInteger else [i for i in IDS if abs(i) < 2**31]
    columns = [
        global_id(name, cast(literal(value), id_type)).label(f"c{i}_{j}")
        for i, name in enumerate(NODE_TYPES)
        for j, value in enumerate(ids)
    ]
    row = (await db.execute(select(*columns))).one()
    expected = [to_base64(name, value) for name in NODE_TYPES for value in ids]
    assert list(row) == expected


INSTANTS = [
    dt.datetime(2026, 11, 29, 5, 0, tzinfo=dt.UTC),
    dt.datetime(2026, 11, 29, 5, 0, 0, 500_000, tzinfo=dt.UTC),
    dt.datetime(2026, 11, 29, 5, 0, 0, 1, tzinfo=dt.UTC),
    dt.datetime(2026, 6, 30, 23, 59, 59, 999_999, tzinfo=dt.timezone(dt.timedelta(hours=1))),
    dt.datetime(1, 1, 1, 0, 0, 1, tzinfo=dt.UTC),  # (datetime.min is -infinity to asyncpg)
    dt.datetime(9999, 12, 31, 23, 59, 59, 120_000, tzinfo=dt.UTC),
]


async def test_instants_are_pythons_isoformat_in_utc(db: AsyncSession) -> None:
    columns = [
        _instant(cast(literal(value), DateTime(timezone=True))).label(f"t{i}")
        for i, value in enumerate(INSTANTS)
    ]
    row = (await db.execute(select(*columns))).one()
    assert list(row) == [value.astimezone(dt.UTC).isoformat() for value in INSTANTS]


# (date.min and date.max are -infinity and infinity to asyncpg)
DATES = [dt.date(1, 1, 2), dt.date(999, 12, 31), dt.date(2026, 2, 28), dt.date(9999, 12, 30)]


async def _rendered(session: AsyncSession) -> tuple[list[str], list[str]]:
    instants = [
        _instant(cast(literal(value), DateTime(timezone=True))).label(f"t{i}")
        for i, value in enumerate(INSTANTS)
    ]
    dates = [_date(cast(literal(value), Date)).label(f"d{i}") for i, value in enumerate(DATES)]
    row = list((await session.execute(select(*instants, *dates))).one())
    return row[: len(INSTANTS)], row[len(INSTANTS) :]


async def test_dates_are_pythons_isoformat(db: AsyncSession) -> None:
    _, dates = await _rendered(db)
    assert dates == [value.isoformat() for value in DATES]


async def test_renderings_hold_whatever_the_servers_date_style(
    db: AsyncSession, migrated_url: str
) -> None:
    """The app's connections ask for DateStyle ISO (`api.db`), which the renderings read:
    a database set to another style changes nothing."""
    database = (await db.execute(text("SELECT current_database()"))).scalar_one()
    await db.execute(text(f'ALTER DATABASE "{database}" SET "DateStyle" = \'SQL, DMY\''))
    await db.commit()
    engine = create_engine(migrated_url, pool_size=1)
    try:
        async with AsyncSession(engine) as session:
            style = (await session.execute(text("SHOW DateStyle"))).scalar_one()
            instants, dates = await _rendered(session)
        async with engine.connect() as connection:
            raw = await connection.get_raw_connection()
            plain = await raw.driver_connection.fetchval("SELECT '2026-11-29'::date::text")
        # A connection that does not ask for ISO gets the database's style.
        bare = await asyncpg.connect(migrated_url.replace("+asyncpg", ""))
        try:
            default = await bare.fetchval("SHOW DateStyle")
        finally:
            await bare.close()
    finally:
        await engine.dispose()
        await db.execute(text(f'ALTER DATABASE "{database}" RESET "DateStyle"'))
        await db.commit()
    assert default == "SQL, DMY"
    assert style.startswith("ISO,")  # the connection's ISO over the database's SQL
    assert instants == [value.astimezone(dt.UTC).isoformat() for value in INSTANTS]
    assert dates == [value.isoformat() for value in DATES]
    assert plain == "2026-11-29"
