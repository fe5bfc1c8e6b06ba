"""The candidate search as a service: several sources merged and ranked together (the
federation issue adds partner co-ops as sources), and the search restricted to given PAs
(to check that an offer goes to a candidate)."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import uuid
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.dialects.postgresql import Range
from sqlalchemy.ext.asyncio import AsyncSession

from care.candidates import (
    LOCAL_SOURCE,
    Candidate,
    CoverTarget,
    Fetch,
    LeftOut,
    PartnerCandidate,
    ScoreParts,
    candidates_statement,
    exclusion_from_row,
    exclusions_statement,
    find_cover_candidates,
    rank,
    session_fetch,
    sessions_fetch,
)
from care.enums import Role
from care.errors import DomainError, ErrorCode
from care.models import Member, Partnership, PartnerWindow, Visit
from care.viewer import Viewer
from tests.factories import Build
from tests.federation.instances import eventually

LONDON = ZoneInfo("Europe/London")
ADMIN = Viewer(role=Role.ADMIN)


def local(day: dt.date, hour: int) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(hour), tzinfo=LONDON).astimezone(dt.UTC)


async def arrange(db: AsyncSession) -> tuple[Visit, list[Member], Member, Member]:
    """A visit needing cover, three available PAs and one who is busy."""
    b = Build(db)
    await b.las()
    await b.coop()
    coordinator = await b.worker("Cora Ordinator")
    cluster = await b.cluster(support_worker=coordinator)
    su = await b.service_user(cluster=cluster)
    day = dt.datetime.now(LONDON).date() + dt.timedelta(days=5)
    visit = await b.visit(su, None, local(day, 10), status="NEEDS_COVER")
    pas = []
    for i in range(4):
        pa = await b.pa(f"PA {i}", cluster=cluster if i == 0 else None, skills=["personal-care"])
        await b.window(pa, local(day, 8), hours=6)
        pas.append(pa)
    busy = pas.pop()
    await b.visit(su, busy, local(day, 10))
    await db.commit()
    return visit, pas, busy, coordinator


def remote(pa_id: int, score: float, km: float | None) -> Candidate:
    return Candidate(
        pa_id=pa_id,
        source="partner.example.org",
        score=score,
        parts=ScoreParts(0, 0, 0, 0, 0, 0, score),
        distance_km=km,
        visits_to_person_last_8_weeks=0,
        is_regular_pa=False,
        same_cluster=False,
        same_pool=False,
        hours_in_week=0,
        contracted_weekly_hours=0,
        covers_last_28_days=0,
    )


@dataclasses.dataclass
class OtherSource:
    """Another source of already scored candidates, through the `CandidateSource`
    protocol (our own code: no peer is involved)."""

    offered: list[Candidate]
    name: str = "partner.example.org"
    asked: list[tuple[CoverTarget, int]] = dataclasses.field(default_factory=list)

    async def candidates(self, viewer: Viewer, target: CoverTarget, limit: int) -> list[Candidate]:
        self.asked.append((target, limit))
        return self.offered[:limit]


async def test_sources_are_merged_and_ranked_together(db: AsyncSession) -> None:
    visit, pas, _, _ = await arrange(db)
    fetch = session_fetch(db)
    local_only = (await find_cover_candidates(fetch, ADMIN, visit.id, 10)).candidates
    assert [c.pa_id for c in local_only if isinstance(c, Candidate)] == [
        pas[0].id,
        pas[1].id,
        pas[2].id,
    ]  # team first
    top, second = local_only[0].score, local_only[1].score
    assert top > second

    other = OtherSource(
        [remote(9001, top + 1, 30.0), remote(9002, second, 0.5), remote(9003, 0.1, 2.0)]
    )
    merged = await find_cover_candidates(fetch, ADMIN, visit.id, 4, extra_sources=[other])
    assert merged.left_out == []
    assert [(c.source, c.pa_id) for c in merged.candidates if isinstance(c, Candidate)] == [
        ("partner.example.org", 9001),
        (LOCAL_SOURCE, pas[0].id),
        ("partner.example.org", 9002),  # the same score as pas[1] and pas[2], but nearer
        (LOCAL_SOURCE, pas[1].id),
    ]
    target, limit = other.asked[0]
    assert (target.visit_id, target.current_pa_id, limit) == (visit.id, None, 4)
    assert target.needs == ("personal-care",)
    assert target.ends_at - target.starts_at == dt.timedelta(hours=1)
    assert target.location == (51.615, -0.176)  # the person's home


async def test_rank_matches_the_sql_order(db: AsyncSession) -> None:
    visit, _, _, _ = await arrange(db)
    found = (await find_cover_candidates(session_fetch(db), ADMIN, visit.id, 10)).candidates
    assert rank(list(reversed(found))) == found


async def test_search_restricted_to_given_pas(db: AsyncSession) -> None:
    visit, pas, busy, _ = await arrange(db)
    stmt = candidates_statement(ADMIN, visit.id, limit=None, pa_ids=[pas[1].id, busy.id])
    rows = (await db.execute(stmt)).all()
    assert [r.pa_id for r in rows] == [pas[1].id]
    nobody = candidates_statement(ADMIN, visit.id, limit=None, pa_ids=[])
    assert (await db.execute(nobody)).all() == []


async def test_a_pa_is_a_candidate_exactly_when_no_rule_excludes_them(db: AsyncSession) -> None:
    """The exclusions statement and the candidate search apply the same rules: checked
    over every PA of the co-op, with PAs failing a rule in several ways."""
    visit, pas, busy, _ = await arrange(db)
    b = Build(db)
    day = dt.datetime.now(LONDON).date() + dt.timedelta(days=5)
    unskilled = await b.pa("No skill", skills=["hoist"])
    await b.window(unskilled, local(day, 8), hours=6)
    no_window = await b.pa("No window", skills=["personal-care"])
    tired = await b.pa("Tired", skills=["personal-care"])
    await b.window(tired, local(day, 8), hours=6)
    su = await b.service_user("Other User")
    for offset in (-3, -2, 2, 3):
        await b.visit(su, tired, local(day + dt.timedelta(days=offset), 6), minutes=12 * 60)
    await db.commit()
    everyone = [p.id for p in (*pas, busy, unskilled, no_window, tired)]
    found = await db.execute(candidates_statement(ADMIN, visit.id, limit=None, pa_ids=everyone))
    chosen = {int(r.pa_id) for r in found}
    checked = await db.execute(exclusions_statement(ADMIN, visit.id, pa_ids=everyone + everyone))
    rules = {e.pa_id: e.rules for e in map(exclusion_from_row, checked)}
    assert sorted(rules) == sorted(everyone)  # each PA once
    assert chosen == {pa_id for pa_id, failed in rules.items() if not failed}
    assert chosen == {p.id for p in pas}
    assert rules[busy.id] == ("OVERLAP",)
    assert rules[unskilled.id] == ("MISSING_SKILL",)
    assert rules[no_window.id] == ("NO_AVAILABILITY",)
    assert rules[tired.id] == ("WEEKLY_HOURS_LIMIT",)
    # Without given PAs: the person's team and pools (here the one team PA).
    team = await db.execute(exclusions_statement(ADMIN, visit.id))
    assert [(e.pa_id, e.rules) for e in map(exclusion_from_row, team)] == [(pas[0].id, ())]


async def test_refusals(db: AsyncSession) -> None:
    visit, _, _, coordinator = await arrange(db)
    fetch = session_fetch(db)
    with pytest.raises(DomainError) as refused:
        await find_cover_candidates(fetch, Viewer(role=Role.PA, member_id=1), visit.id, 5)
    assert refused.value.code is ErrorCode.FORBIDDEN
    with pytest.raises(DomainError) as missing:
        await find_cover_candidates(fetch, ADMIN, visit.id + 1000, 5)
    assert missing.value.code is ErrorCode.NOT_FOUND
    mine = Viewer(role=Role.COORDINATOR, member_id=coordinator.id)
    assert len((await find_cover_candidates(fetch, mine, visit.id, 5)).candidates) == 3


@dataclasses.dataclass
class SlowSource:
    """A source that never answers (our own code through the protocol: a stand-in for a
    partner search stuck on a slow database)."""

    name: str = "SLOW"
    cancelled: bool = False

    async def candidates(self, viewer: Viewer, target: CoverTarget, limit: int) -> list[Candidate]:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled = True
            raise
        raise AssertionError("unreachable")


@dataclasses.dataclass
class FailingSource:
    name: str = "BROKEN"

    async def candidates(self, viewer: Viewer, target: CoverTarget, limit: int) -> list[Candidate]:
        raise RuntimeError("the partner's data could not be read")


async def test_a_slow_or_failing_source_is_left_out_and_ours_still_come_back(
    db: AsyncSession,
) -> None:
    visit, pas, _, _ = await arrange(db)
    slow, broken = SlowSource(), FailingSource()
    other = OtherSource([remote(9001, 100, 1.0)])
    found = await find_cover_candidates(
        session_fetch(db),
        ADMIN,
        visit.id,
        10,
        extra_sources=[slow, broken, other],
        source_seconds=0.05,
    )
    assert [c.pa_id for c in found.candidates if isinstance(c, Candidate)] == [
        9001,
        pas[0].id,
        pas[1].id,
        pas[2].id,
    ]
    assert found.left_out == [
        LeftOut("SLOW", None, "TIMED_OUT"),
        LeftOut("BROKEN", None, "FAILED"),
    ]
    assert slow.cancelled  # stopped, not left running


async def test_our_own_search_failing_fails_the_answer_and_stops_the_others(
    db: AsyncSession,
) -> None:
    visit, _, _, _ = await arrange(db)
    slow = SlowSource()
    fetch = session_fetch(db)
    calls = 0

    async def failing_search(stmt: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 2:  # the first is the visit, the second our search
            await asyncio.sleep(0)  # the other source is under way
            raise RuntimeError("our database is away")
        return await fetch(stmt)

    with pytest.raises(RuntimeError):
        await find_cover_candidates(
            failing_search, ADMIN, visit.id, 10, extra_sources=[slow], source_seconds=60
        )
    assert slow.cancelled


@dataclasses.dataclass
class SlowDatabaseSource:
    """A source whose statement outlasts its time limit in PostgreSQL itself."""

    fetch: Fetch
    name: str = "SLOW_SQL"

    async def candidates(self, viewer: Viewer, target: CoverTarget, limit: int) -> list[Candidate]:
        await self.fetch(select(func.pg_sleep(30)))
        return []


async def test_a_source_timed_out_in_the_database_leaves_no_statement_running(
    app: Any, db: AsyncSession
) -> None:
    visit, pas, _, _ = await arrange(db)
    sessions = app.state.sessions
    found = await find_cover_candidates(
        session_fetch(db),
        ADMIN,
        visit.id,
        10,
        partner_fetch=sessions_fetch(sessions),
        extra_sources=[SlowDatabaseSource(sessions_fetch(sessions))],
        source_seconds=0.2,
    )
    assert len(found.candidates) == 3
    assert found.left_out == [LeftOut("SLOW_SQL", None, "TIMED_OUT")]

    async def sleeping() -> int:
        async with sessions() as s:
            return int(
                await s.scalar(
                    text(
                        "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep%'"
                    )
                )
                or 0
            )

    async def none_sleeping() -> bool:
        return await sleeping() == 0

    # The statement is cancelled in PostgreSQL, and the pool still serves.
    await eventually(none_sleeping, "the slow statement cancelled")
    assert (
        len((await find_cover_candidates(session_fetch(db), ADMIN, visit.id, 10)).candidates) == 3
    )


async def test_partners_through_one_session_run_after_ours(db: AsyncSession) -> None:
    """Without a session factory for partners (a caller holding one session), partner
    sources share it, one after another: the same answer, nothing concurrent on it."""
    visit, pas, _, _ = await arrange(db)
    partners = []
    for name in ("North Care", "East Care"):
        p = Partnership(
            base_url=f"https://{name.split()[0].lower()}.example.org",
            graphql_endpoint="https://example.org/graphql",
            proposal_ref=uuid.uuid4(),
            direction="OUTGOING",
            status="ACTIVE",
            requested_scopes=["AVAILABILITY", "COVER"],
            granted_scopes=["AVAILABILITY", "COVER"],
            protocol_version="coopnet-federation/1",
            coop_name=name,
        )
        db.add(p)
        await db.flush()
        db.add(
            PartnerWindow(
                partnership_id=p.id,
                ref="w1",
                period=0,
                pa_ref="pa-1",
                skills=[{"skill": "personal-care", "expiresOn": None}],
                district="N12",
                travel_km=Decimal(5),
                during=Range(visit.during.lower, visit.during.upper, bounds="[)"),
            )
        )
        partners.append(p)
    await db.commit()
    found = await find_cover_candidates(session_fetch(db), ADMIN, visit.id, 10)
    assert found.left_out == []
    assert sorted(
        (c.partner.coop_name, c.pa_ref) for c in found.candidates if isinstance(c, PartnerCandidate)
    ) == [("East Care", "pa-1"), ("North Care", "pa-1")]
    assert sum(isinstance(c, Candidate) for c in found.candidates) == len(pas)
