"""The co-ops of the federation demo (`coopnet demo network`): the neighbour is next door
and shares PAs with future availability; the distant co-op is far away; the demo co-op
itself has a pool shared with partners."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from care.demo import DEMO, DISTANT, LONDON, NEIGHBOUR, load_coop
from care.models import Coop

# The real date: the demo co-op's sickness absence must start after the real now (see
# tests/care/test_demo.py).
TODAY = dt.datetime.now(LONDON).date()

# PAs in a pool shared with partners, with skills and availability after `today`.
SHARED_PAS = text("""
SELECT count(DISTINCT pp.pa_id)
FROM pool p
JOIN pool_pa pp ON pp.pool_id = p.id
WHERE p.shared_with_partners
  AND EXISTS (SELECT 1 FROM pa_skill s WHERE s.pa_id = pp.pa_id)
  AND EXISTS (
    SELECT 1 FROM availability_window w
    WHERE w.pa_id = pp.pa_id AND lower(w.during) > CAST(:today AS date) + 1
  )
  AND EXISTS (SELECT 1 FROM member m WHERE m.id = pp.pa_id AND m.postcode IS NOT NULL)
""")

NEIGHBOURING = text("""
SELECT EXISTS (
  SELECT 1 FROM local_authority_neighbour
  WHERE (la_a, la_b) IN ((:a, :b), (:b, :a))
)
""")


async def home(db: AsyncSession) -> str:
    code = await db.scalar(select(Coop.home_la_code))
    assert code is not None
    return code


async def test_the_neighbour_is_next_door_and_shares_available_pas(db: AsyncSession) -> None:
    assert await load_coop(db, NEIGHBOUR, TODAY) is True
    await db.commit()
    coop = (await db.execute(select(Coop.name, Coop.home_la_code))).one()
    assert coop.name == "Lea Valley Home Care Co-operative"
    # Haringey borders Barnet, the demo co-op's home: the neighbour knows it does.
    assert await db.scalar(NEIGHBOURING, {"a": coop.home_la_code, "b": "E09000003"}) is True
    assert await db.scalar(SHARED_PAS, {"today": TODAY}) >= 5
    # Not every PA is shared: the Tottenham team stays in-house.
    total = await db.scalar(text("SELECT count(*) FROM pa_profile"))
    shared = await db.scalar(
        text(
            "SELECT count(DISTINCT pa_id) FROM pool_pa JOIN pool ON pool.id = pool_id "
            "WHERE shared_with_partners"
        )
    )
    assert 0 < shared < total
    clusters = await db.scalar(
        text("SELECT count(*) FROM cluster WHERE la_code = :la"), {"la": coop.home_la_code}
    )
    assert clusters == 3
    # Loading again changes nothing.
    assert await load_coop(db, NEIGHBOUR, TODAY) is False


async def test_the_distant_coop_neighbours_neither_london_coop(db: AsyncSession) -> None:
    assert await load_coop(db, DISTANT, TODAY) is True
    await db.commit()
    la = await home(db)
    assert la == "E08000019"  # Sheffield
    for london in ("E09000003", "E09000014"):
        assert await db.scalar(NEIGHBOURING, {"a": la, "b": london}) is False
    assert await db.scalar(SHARED_PAS, {"today": TODAY}) > 0


async def test_the_demo_coop_shares_a_pool_with_partners(db: AsyncSession) -> None:
    assert await load_coop(db, DEMO, TODAY) is True
    await db.commit()
    assert await home(db) == "E09000003"
    assert await db.scalar(SHARED_PAS, {"today": TODAY}) >= 5


async def test_each_coop_loads_deterministically(db: AsyncSession) -> None:
    fingerprint = text(
        "SELECT md5(string_agg(m.name || m.postcode || w.during::text, ',' ORDER BY w.id)) "
        "FROM availability_window w JOIN member m ON m.id = w.pa_id"
    )
    await load_coop(db, NEIGHBOUR, TODAY)
    await db.commit()
    first = await db.scalar(fingerprint)
    await db.execute(
        text("TRUNCATE coop, member, cluster, pool, local_authority RESTART IDENTITY CASCADE")
    )
    await db.commit()
    await load_coop(db, NEIGHBOUR, TODAY)
    await db.commit()
    assert await db.scalar(fingerprint) == first


async def test_an_unknown_coop_is_refused(db: AsyncSession) -> None:
    with pytest.raises(ValueError, match="no demo co-op"):
        await load_coop(db, "elsewhere", TODAY)
    assert await db.scalar(func.count(Coop.id)) == 0
