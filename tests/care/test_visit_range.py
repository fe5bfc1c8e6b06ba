"""`visits(startsFrom:, startsBefore:)`: the visits overlapping a range, read from the start
index between bounds PostgreSQL can use (a visit lasts at most a day: migration 0022)."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import text
from sqlalchemy.dialects import postgresql
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from care.enums import Role
from care.paging import PageRequest
from care.viewer import Viewer
from schema.query import Query
from schema.rows import root_pages
from schema.types import root_statement
from tests.conftest import Api
from tests.factories import Build

T = dt.datetime(2026, 12, 1, 12, tzinfo=dt.UTC)
LIST = """
query ($from: DateTime, $before: DateTime, $order: VisitOrder!) {
  visits(startsFrom: $from, startsBefore: $before, orderBy: $order, first: 50) {
    edges { node { startsAt endsAt } }
  }
}"""


async def test_a_visit_under_way_since_almost_a_day_is_found(api: Api, db: AsyncSession) -> None:
    b = Build(db)
    await b.las()
    await b.coop()
    cluster = await b.cluster("Finchley")
    ada = await b.service_user("Ada User", cluster=cluster)
    night, early, ended, later = [await b.pa(f"PA {i}", cluster=cluster) for i in range(4)]
    # A waking night of 23 h 30 still under way at T; one that ended exactly at T; two
    # from T on; and one that starts after the range asked for below.
    under_way = await b.visit(ada, night, T - dt.timedelta(hours=23), minutes=23 * 60 + 30)
    await b.visit(ada, ended, T - dt.timedelta(hours=2), minutes=120)
    at_t = await b.visit(ada, early, T)
    after = await b.visit(ada, later, T + dt.timedelta(hours=3))
    await b.visit(ada, later, T + dt.timedelta(days=2))
    await db.commit()

    def starts(body: dict) -> list[dt.datetime]:
        assert not body.get("errors"), body
        edges = body["data"]["visits"]["edges"]
        return [dt.datetime.fromisoformat(e["node"]["startsAt"]) for e in edges]

    until = T + dt.timedelta(days=1)
    token = api.token(Role.ADMIN)
    for order, expected in (
        ("START_ASC", [under_way, at_t, after]),
        ("START_DESC", [after, at_t, under_way]),
    ):
        body = await api.query(
            LIST, {"from": T.isoformat(), "before": until.isoformat(), "order": order}, token=token
        )
        assert starts(body) == [v.during.lower for v in expected], order


async def test_a_visit_longer_than_a_day_is_refused_by_the_database(db: AsyncSession) -> None:
    b = Build(db)
    await b.las()
    await b.coop()
    cluster = await b.cluster("Finchley")
    ada = await b.service_user("Ada User", cluster=cluster)
    pa = await b.pa("Long Shift", cluster=cluster)
    await b.visit(ada, pa, T, minutes=24 * 60)  # a whole day is allowed
    await db.commit()
    with pytest.raises(IntegrityError, match="ck_visit_within_a_day"):
        await b.visit(ada, pa, T + dt.timedelta(days=2), minutes=24 * 60 + 1)
    await db.rollback()


@pytest.mark.parametrize("order", ["START_ASC", "START_DESC"])
async def test_a_page_of_a_range_is_read_from_the_start_index(db: AsyncSession, order: str) -> None:
    """The plan reads the start index with the range's bound as its condition, so it
    begins a day before `startsFrom` (or at `startsBefore`, backwards) and stops at the
    page's end. Other plans are switched off: whether the index CAN be used this way is
    what is tested, not what the planner picks for a near-empty table."""
    stmt = root_statement(
        root_pages(Query)["visits"],
        Viewer(role=Role.ADMIN),
        PageRequest(first=20, count=False),
        {"startsFrom": T, "startsBefore": T + dt.timedelta(days=7), "orderBy": order},
    )
    sql = str(stmt.compile(dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True}))
    await db.execute(text("SET LOCAL enable_seqscan = off"))
    await db.execute(text("SET LOCAL enable_bitmapscan = off"))
    await db.execute(text("SET LOCAL enable_sort = off"))
    plan = "\n".join((await db.execute(text(f"EXPLAIN {sql}"))).scalars())
    await db.rollback()
    scan = "Index Scan Backward" if order == "START_DESC" else "Index Scan"
    assert f"{scan} using ix_visit_start_id" in plan, plan
    condition = next(line for line in plan.splitlines() if "Index Cond:" in line)
    # From a day before startsFrom (the longest a visit lasts) to startsBefore.
    assert "lower(during) >= '2026-11-30 12:00:00+00'" in condition, plan
    assert "lower(during) < '2026-12-08 12:00:00+00'" in condition, plan
