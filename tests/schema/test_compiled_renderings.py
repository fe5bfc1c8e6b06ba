"""The compiled path's SQL renderings of values are byte for byte what the resolvers'
serialisation writes, at the edges of their ranges (tests/schema/test_compiled_reads.py
compares whole responses on the demo's values)."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import BigInteger, DateTime, Integer, cast, literal, select
from sqlalchemy.ext.asyncio import AsyncSession
from strawberry.relay import to_base64

from schema.compiled import registry
from schema.compiled.compiler import _instant, global_id

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
