"""The monthly rollup of visits (`visit_month`, migration 0016) that the market report
reads: kept right by the database whatever writes visits, including concurrent writers,
and the report's figures from it equal the figures of the visits themselves."""

from __future__ import annotations

import asyncio
import datetime as dt
import random
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import text
from sqlalchemy.dialects.postgresql import Range
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from api.db import session_factory
from care.disclosure import DisclosureRules
from care.market import Granularity, Measure, market_report
from care.models import CoverRequest, Visit
from tests.factories import BARNET, Build, wait_for_lock_wait

LONDON = ZoneInfo("Europe/London")
RAW = DisclosureRules(min_people=1, rounding_base=1)

ROLLUP = """
SELECT service_user_id, month, pa_id, visits_planned, visits_delivered, seconds_planned,
       seconds_delivered, seconds_missed, seconds_cancelled, seconds_needing_cover
FROM visit_month
WHERE (visits_planned, visits_delivered, seconds_planned, seconds_delivered, seconds_missed,
       seconds_cancelled, seconds_needing_cover) <> (0, 0, 0, 0, 0, 0, 0)
ORDER BY 1, 2, 3
"""

# What the rollup should hold, recomputed from the visits (the test's own statement).
RECOMPUTED = """
SELECT service_user_id,
       date_trunc('month', lower(during) AT TIME ZONE 'Europe/London')::date AS month,
       coalesce(pa_id, 0) AS pa_id,
       count(*) FILTER (WHERE status <> 'CANCELLED'),
       count(*) FILTER (WHERE status = 'COMPLETED' AND confirmed_at IS NOT NULL),
       coalesce(sum(secs) FILTER (WHERE status <> 'CANCELLED'), 0),
       coalesce(sum(secs) FILTER (WHERE status = 'COMPLETED' AND confirmed_at IS NOT NULL), 0),
       coalesce(sum(secs) FILTER (WHERE status = 'MISSED'), 0),
       coalesce(sum(secs) FILTER (WHERE status = 'CANCELLED'), 0),
       coalesce(sum(secs) FILTER (WHERE status = 'NEEDS_COVER'), 0)
FROM (SELECT *, extract(epoch FROM upper(during) - lower(during))::bigint AS secs
      FROM visit) v
GROUP BY 1, 2, 3
ORDER BY 1, 2, 3
"""


def london(y: int, m: int, d: int, h: int, minute: int = 0) -> dt.datetime:
    return dt.datetime(y, m, d, h, minute, tzinfo=LONDON)


async def rows(db: AsyncSession, sql: str) -> list[tuple[Any, ...]]:
    return [tuple(r) for r in (await db.execute(text(sql))).all()]


@pytest.fixture
async def team(db: AsyncSession) -> dict[str, Any]:
    b = Build(db)
    await b.las()
    await b.coop()
    cluster = await b.cluster("Finchley")
    pas = [await b.pa(f"Pat {i}", cluster=cluster) for i in range(3)]
    people = [await b.service_user(f"Person {i}", cluster=cluster) for i in range(3)]
    await db.commit()
    return {"b": b, "pas": pas, "people": people}


async def test_each_write_moves_the_totals(db: AsyncSession, team: dict[str, Any]) -> None:
    b, (pat, sam, _), (ann, _, _) = team["b"], team["pas"], team["people"]
    # 00:30 on 1 May in London is 23:30 on 30 April in UTC: the London month counts.
    visit = await b.visit(ann, pat, london(2026, 5, 1, 0, 30), minutes=90)
    await db.commit()
    may = dt.date(2026, 5, 1)
    assert await rows(db, ROLLUP) == [(ann.id, may, pat.id, 1, 0, 5400, 0, 0, 0, 0)]

    await db.execute(
        text(
            "UPDATE visit SET status = 'COMPLETED', confirmed_at = now(),"
            " confirmed_by_id = service_user_id WHERE id = :id"
        ),
        {"id": visit.id},
    )
    await db.commit()
    assert await rows(db, ROLLUP) == [(ann.id, may, pat.id, 1, 1, 5400, 5400, 0, 0, 0)]

    # Given to another PA and moved into June: out of May's row, into June's.
    await db.execute(
        text(
            "UPDATE visit SET pa_id = :pa, during = tstzrange(lower(during) + interval '31 days',"
            " upper(during) + interval '31 days') WHERE id = :id"
        ),
        {"id": visit.id, "pa": sam.id},
    )
    await db.commit()
    assert await rows(db, ROLLUP) == [
        (ann.id, dt.date(2026, 6, 1), sam.id, 1, 1, 5400, 5400, 0, 0, 0)
    ]

    # A change that counts for nothing (the tasks) writes nothing.
    before = await rows(db, "SELECT xmin::text FROM visit_month")
    await db.execute(text("UPDATE visit SET tasks = '{lunch}' WHERE id = :id"), {"id": visit.id})
    await db.commit()
    assert await rows(db, "SELECT xmin::text FROM visit_month") == before

    await db.execute(
        text("UPDATE visit SET status = 'CANCELLED', confirmed_at = NULL, confirmed_by_id = NULL")
    )
    await db.commit()
    assert await rows(db, ROLLUP) == [(ann.id, dt.date(2026, 6, 1), sam.id, 0, 0, 0, 0, 0, 5400, 0)]

    await db.execute(text("DELETE FROM visit"))
    await db.commit()
    assert await rows(db, ROLLUP) == []


async def test_many_writes_leave_what_a_recount_gives(
    db: AsyncSession, team: dict[str, Any]
) -> None:
    """Two hundred random single and bulk writes, then the rollup against a recount."""
    b, pas, people = team["b"], team["pas"], team["people"]
    rng = random.Random(20261128)
    statuses = ["SCHEDULED", "COMPLETED", "MISSED", "CANCELLED", "NEEDS_COVER"]
    for slot in range(120):  # one 7-hour slot per visit: no PA is ever double-booked
        start = london(2026, 1, 1, 8) + dt.timedelta(hours=slot * 7)
        status = rng.choice(statuses)
        await b.visit(
            rng.choice(people),
            None if status == "NEEDS_COVER" else rng.choice(pas),
            start,
            minutes=rng.choice([30, 45, 60, 120]),
            status=status,
        )
    await db.commit()
    ids = [r[0] for r in await rows(db, "SELECT id FROM visit")]
    for _ in range(80):
        chosen = rng.sample(ids, rng.choice([1, 1, 1, 5, 20]))
        action = rng.choice(["confirm", "cancel", "move", "miss", "delete", "reassign"])
        params: dict[str, Any] = {"ids": chosen}
        if action == "confirm":
            sql = (
                "UPDATE visit SET status = 'COMPLETED', confirmed_at = now(),"
                " confirmed_by_id = service_user_id WHERE id = ANY(:ids) AND pa_id IS NOT NULL"
            )
        elif action == "cancel":
            # With their open cover requests, as every writer must (migration 0017).
            sql = (
                "WITH v AS (UPDATE visit SET status = 'CANCELLED', confirmed_at = NULL,"
                " confirmed_by_id = NULL WHERE id = ANY(:ids) RETURNING id)"
                " UPDATE cover_request SET status = 'CANCELLED', closed_at = now()"
                " WHERE status = 'OPEN' AND visit_id IN (SELECT id FROM v)"
            )
        elif action == "miss":
            sql = (
                "UPDATE visit SET status = 'MISSED', confirmed_at = NULL,"
                " confirmed_by_id = NULL WHERE id = ANY(:ids) AND pa_id IS NOT NULL"
            )
        elif action == "move":
            # By whole laps of the 120 slots (35 days): the month changes, and a visit
            # only ever lands on its own lane, so no two visits ever meet.
            params["hours"] = 7 * 120 * rng.choice([1, 2])
            sql = (
                "UPDATE visit SET during = tstzrange(lower(during) + make_interval("
                "hours => :hours), upper(during) + make_interval(hours => :hours))"
                " WHERE id = ANY(:ids)"
            )
        elif action == "reassign":
            params["pa"] = rng.choice(pas).id
            sql = "UPDATE visit SET pa_id = :pa WHERE id = ANY(:ids) AND status <> 'NEEDS_COVER'"
        else:
            sql = "DELETE FROM visit WHERE id = ANY(:ids)"
            ids = [i for i in ids if i not in chosen] or ids
        await db.execute(text(sql), params)
        await db.commit()
    # A person deleted takes their visits with them (by cascade): their rows go to zero.
    await db.execute(
        text("DELETE FROM service_user_profile WHERE member_id = :id"), {"id": people[0].id}
    )
    await db.commit()
    assert len(await rows(db, "SELECT 1 FROM visit")) > 10
    assert await rows(db, ROLLUP) == await rows(db, RECOMPUTED)


async def test_concurrent_writers_of_one_row_both_count(
    app: Any, db: AsyncSession, team: dict[str, Any]
) -> None:
    pat, ann = team["pas"][0], team["people"][0]
    factory = session_factory(app.state.engine)

    def visit(day: int) -> Visit:
        start = london(2026, 3, day, 9)
        return Visit(
            service_user_id=ann.id,
            pa_id=pat.id,
            during=Range(start, start + dt.timedelta(hours=1), bounds="[)"),
            tasks=[],
        )

    async with factory() as first, factory() as second:
        first.add(visit(2))
        await first.flush()  # holds the row of (Ann, March, Pat) until it commits
        second.add(visit(3))
        waiting = asyncio.create_task(second.flush())
        await wait_for_lock_wait(app.state.engine)
        await first.commit()
        await waiting
        await second.commit()
    assert await rows(db, ROLLUP) == [(ann.id, dt.date(2026, 3, 1), pat.id, 2, 0, 7200, 0, 0, 0, 0)]


async def test_a_visits_person_is_fixed(db: AsyncSession, team: dict[str, Any]) -> None:
    (pat, _, _), (ann, bob, _) = team["pas"], team["people"]
    visit = await team["b"].visit(ann, pat, london(2026, 3, 2, 9))
    await db.commit()
    with pytest.raises(DBAPIError, match="cannot change"):
        await db.execute(
            text("UPDATE visit SET service_user_id = :bob WHERE id = :id"),
            {"bob": bob.id, "id": visit.id},
        )
    await db.rollback()


async def test_a_cover_request_carries_its_visits_person(
    db: AsyncSession, team: dict[str, Any]
) -> None:
    _, bob, _ = team["people"]
    visit = await team["b"].visit(bob, None, london(2026, 3, 2, 9), status="NEEDS_COVER")
    request = CoverRequest(visit_id=visit.id, reason="MANUAL")
    db.add(request)
    await db.commit()
    assert (
        await db.scalar(
            text("SELECT service_user_id FROM cover_request WHERE id = :id"), {"id": request.id}
        )
        == bob.id
    )


async def test_unmet_hours_of_this_month_are_those_already_due(
    db: AsyncSession, team: dict[str, Any]
) -> None:
    """Needing cover counts as unmet once due: this month's due visits are read from the
    visits at the time of asking; last month's all come from the rollup."""
    b, (ann, bob, cas) = team["b"], team["people"]
    now = dt.datetime.now(LONDON).replace(second=0, microsecond=0)
    this_month = now.date().replace(day=1)
    month_start = dt.datetime.combine(this_month, dt.time(), LONDON)
    last_month = (this_month - dt.timedelta(days=1)).replace(day=1)
    due = max(month_start, now - dt.timedelta(hours=2))  # begun already, this month
    await b.visit(ann, None, due, minutes=30, status="NEEDS_COVER")
    await b.visit(bob, None, now + dt.timedelta(hours=1), minutes=60, status="NEEDS_COVER")
    await b.visit(
        cas, None, dt.datetime.combine(last_month, dt.time(23), LONDON), 90, "NEEDS_COVER"
    )
    await db.commit()
    report = await market_report(db, BARNET, last_month, now.date(), Granularity.MONTH, RAW)
    unmet = [
        next(f.shown.value for f in p.figures if f.measure is Measure.HOURS_UNMET)
        for p in report.periods
    ]
    assert unmet == [1.5, 0.5]
