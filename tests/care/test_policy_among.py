"""`policy.among`, the shape every predicate probes a viewer's set with, means exactly
`IN (SELECT ...)`: the same true, false and NULL for every value, set and NULL in them. A
rewrite for speed that widened (or narrowed) a rule would show here first."""

from __future__ import annotations

import pytest
from sqlalchemy import BigInteger, literal, select
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql import func

from care import policy

CASES = [
    (1, [1, 2]),  # in
    (3, [1, 2]),  # not in
    (1, []),  # empty set: false
    (None, []),  # NULL against nothing: false
    (None, [1]),  # NULL against something: NULL
    (3, [1, None]),  # not found but a NULL in the set: NULL
    (1, [1, None]),  # found: true
    (2, [2, 2, 2]),  # duplicates
]


@pytest.mark.parametrize(("value", "elements"), CASES)
async def test_among_means_in(
    db: AsyncSession, value: int | None, elements: list[int | None]
) -> None:
    ids = policy._set(func.unnest(literal(elements, ARRAY(BigInteger))))
    x = literal(value, BigInteger)
    row = (await db.execute(select(policy.among(x, ids), x.in_(ids)))).one()
    assert row[0] is row[1], (value, elements, row)
    expected = None if value is None and elements else value in elements
    if value is not None and value not in elements and None in elements:
        expected = None
    assert row[0] is expected


async def test_among_filters_as_in(db: AsyncSession) -> None:
    """In WHERE, next to a row's own column (the shape the compiled statements use)."""
    rows = select(func.generate_series(1, 10).label("n")).subquery()
    ids = policy._set(func.unnest(literal([2, 4, 11], ARRAY(BigInteger))))
    got = (await db.execute(select(rows.c.n).where(policy.among(rows.c.n, ids)))).scalars()
    assert sorted(got) == [2, 4]
