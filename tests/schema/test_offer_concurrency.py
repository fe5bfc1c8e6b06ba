"""Concurrent acceptances through the API: the first valid acceptance wins, nobody is ever
double-booked, and the database is consistent afterwards.

Each request runs in its own session on its own pooled connection (10 + 10 overflow, so
20 concurrent requests fit without waiting for a connection)."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import pytest
from sqlalchemy import func, select, text, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from care.enums import Role
from care.models import Cluster, CoverOffer, CoverRequest, Member, Visit
from tests.conftest import Api
from tests.factories import Build, at, gid, wait_for_lock_wait

N = 20
SKILLS = ["personal-care"]  # what the service users need (the factory default)
ERRORS = "errors { field message code }"
OFFER = f"""mutation($input: OfferCoverInput!) {{
  offerCover(input: $input) {{ offers {{ id }} skipped {ERRORS} }} }}"""
ACCEPT = f"""mutation($id: ID!) {{
  acceptCoverOffer(id: $id) {{ offer {{ id status }} {ERRORS} }} }}"""

# Active visits of one PA that overlap: must never exist.
DOUBLE_BOOKINGS = text(
    """
    SELECT count(*) FROM visit a JOIN visit b
      ON a.pa_id = b.pa_id AND a.id < b.id AND a.during && b.during
     WHERE a.status IN ('SCHEDULED', 'COMPLETED') AND b.status IN ('SCHEDULED', 'COMPLETED')
    """
)


async def _world(db: AsyncSession) -> tuple[Build, Member, Cluster]:
    b = Build(db)
    await b.las()
    await b.coop()
    coordinator = await b.worker("Cora Ordinator")
    cluster = await b.cluster("Finchley", support_worker=coordinator)
    return b, coordinator, cluster


async def _open_request(db: AsyncSession, visit: Visit) -> int:
    request = CoverRequest(visit_id=visit.id, reason="MANUAL", status="OPEN")
    db.add(request)
    await db.flush()
    return request.id


async def _offer(api: Api, token: str, request_id: int, pas: list[Member]) -> list[str]:
    data = {
        "coverRequestId": gid("CoverRequest", request_id),
        "paIds": [gid("PersonalAssistant", p.id) for p in pas],
    }
    out = (await api.data(OFFER, {"input": data}, token=token))["offerCover"]
    assert out["errors"] == [], out["errors"]
    assert len(out["offers"]) == len(pas)
    return [o["id"] for o in out["offers"]]


async def _accept_all(api: Api, attempts: list[tuple[str, str]]) -> list[dict[str, Any]]:
    """Fire every (offer id, token) acceptance at once."""
    bodies = await asyncio.gather(
        *(api.data(ACCEPT, {"id": offer_id}, token=token) for offer_id, token in attempts)
    )
    return [b["acceptCoverOffer"] for b in bodies]


async def _double_bookings(db: AsyncSession) -> int:
    count = int(await db.scalar(DOUBLE_BOOKINGS) or 0)
    await db.commit()
    return count


@pytest.mark.parametrize("round_", range(3))
async def test_many_pas_accept_one_visit_at_once(api: Api, db: AsyncSession, round_: int) -> None:
    b, coordinator, cluster = await _world(db)
    su = await b.service_user("Ada User", cluster=cluster)
    start = at(days=2)
    pas = [await b.pa(f"PA {i:02}", cluster=cluster, skills=SKILLS) for i in range(N)]
    for p in pas:
        await b.window(p, start - dt.timedelta(hours=1))
    visit = await b.visit(su, None, start, status="NEEDS_COVER")
    request_id = await _open_request(db, visit)
    await db.commit()
    offer_ids = await _offer(api, api.token(Role.COORDINATOR, coordinator.id), request_id, pas)

    results = await _accept_all(
        api, [(o, api.token(Role.PA, p.id)) for o, p in zip(offer_ids, pas, strict=True)]
    )

    won = [i for i, r in enumerate(results) if not r["errors"]]
    assert len(won) == 1, results
    winner = pas[won[0]]
    assert results[won[0]]["offer"]["status"] == "ACCEPTED"
    lost = [r for i, r in enumerate(results) if i != won[0]]
    assert len(lost) == N - 1
    for r in lost:
        assert r["offer"] is None
        assert [(e["code"], e["field"]) for e in r["errors"]] == [("CLOSED", "id")]
        assert "already been covered" in r["errors"][0]["message"]

    row = (await db.execute(select(Visit.pa_id, Visit.status).where(Visit.id == visit.id))).one()
    assert tuple(row) == (winner.id, "SCHEDULED")
    req = (
        await db.execute(
            select(CoverRequest.status, CoverRequest.filled_by_pa_id, CoverRequest.closed_at)
        )
    ).all()
    assert len(req) == 1
    assert (req[0][0], req[0][1]) == ("FILLED", winner.id) and req[0][2] is not None
    offers = (await db.execute(select(CoverOffer.pa_id, CoverOffer.status))).all()
    assert sorted(s for _, s in offers) == ["ACCEPTED"] + ["CLOSED"] * (N - 1)
    assert [p for p, s in offers if s == "ACCEPTED"] == [winner.id]
    await db.commit()
    assert await _double_bookings(db) == 0


@pytest.mark.parametrize("round_", range(3))
async def test_one_pa_accepts_many_overlapping_visits_at_once(
    api: Api, db: AsyncSession, round_: int
) -> None:
    b, coordinator, cluster = await _world(db)
    start = at(days=3)
    pa = await b.pa("Pat Busy", cluster=cluster, skills=SKILLS)
    await b.window(pa, start - dt.timedelta(hours=1), hours=6)
    requests: list[int] = []
    visits: list[int] = []
    for i in range(N):
        # Twenty visits for twenty people, each overlapping every other one.
        su = await b.service_user(f"Person {i:02}", cluster=cluster, email=f"p{i}@example.org")
        visit = await b.visit(su, None, start + dt.timedelta(minutes=3 * i), status="NEEDS_COVER")
        visits.append(visit.id)
        requests.append(await _open_request(db, visit))
    await db.commit()
    token = api.token(Role.COORDINATOR, coordinator.id)
    offer_ids = [(await _offer(api, token, r, [pa]))[0] for r in requests]

    pa_token = api.token(Role.PA, pa.id)
    results = await _accept_all(api, [(o, pa_token) for o in offer_ids])

    won = [i for i, r in enumerate(results) if not r["errors"]]
    assert len(won) == 1, results
    refused = [r for i, r in enumerate(results) if i != won[0]]
    for r in refused:
        assert r["offer"] is None
        assert [(e["code"], e["field"]) for e in r["errors"]] == [("CONFLICT", "id")], r
    by_constraint = sum("just been booked" in r["errors"][0]["message"] for r in refused)
    print(f"\n{by_constraint} of {N - 1} refusals came from the exclusion constraint")

    active = (
        await db.execute(
            select(Visit.id).where(
                Visit.pa_id == pa.id,
                Visit.status.in_(["SCHEDULED", "COMPLETED"]),
                Visit.during.op("&&")(
                    func.tstzrange(start, start + dt.timedelta(minutes=3 * N + 60))
                ),
            )
        )
    ).all()
    assert [r[0] for r in active] == [visits[won[0]]]
    statuses = {
        r.id: r.status for r in await db.execute(select(CoverRequest.id, CoverRequest.status))
    }
    assert statuses[requests[won[0]]] == "FILLED"
    assert sorted(statuses.values()) == ["FILLED"] + ["OPEN"] * (N - 1)
    offers = (await db.execute(select(CoverOffer.cover_request_id, CoverOffer.status))).all()
    assert sorted(s for _, s in offers) == ["ACCEPTED"] + ["OPEN"] * (N - 1)
    unassigned = await db.scalar(
        select(func.count()).where(Visit.pa_id.is_(None), Visit.status == "NEEDS_COVER")
    )
    assert unassigned == N - 1
    await db.commit()
    assert await _double_bookings(db) == 0


@pytest.mark.parametrize("blocker_commits", [True, False])
async def test_the_exclusion_constraint_catches_a_race_the_check_cannot_see(
    api: Api, db: AsyncSession, app: Any, blocker_commits: bool
) -> None:
    """Another transaction books the PA for an overlapping visit but has not committed:
    the acceptance's own check cannot see it, so the constraint decides, after waiting
    for that transaction. If it commits, the acceptance is a typed CONFLICT and changes
    nothing; if it rolls back, the acceptance wins."""
    b, coordinator, cluster = await _world(db)
    start = at(days=2)
    pa = await b.pa("Pat Racing", cluster=cluster, skills=SKILLS)
    await b.window(pa, start - dt.timedelta(hours=1))
    su = await b.service_user("Ada User", cluster=cluster)
    other_su = await b.service_user("Bob Other", cluster=cluster, email="bob@example.org")
    visit = await b.visit(su, None, start, status="NEEDS_COVER")
    other = await b.visit(other_su, None, start + dt.timedelta(minutes=30), status="NEEDS_COVER")
    request_id = await _open_request(db, visit)
    await db.commit()
    [offer_id] = await _offer(api, api.token(Role.COORDINATOR, coordinator.id), request_id, [pa])

    engine: AsyncEngine = app.state.engine
    async with engine.connect() as blocker:
        await blocker.execute(
            update(Visit).where(Visit.id == other.id).values(pa_id=pa.id, status="SCHEDULED")
        )
        # Booked, its cover request (opened at commit: migration 0017) is filled with it.
        await blocker.execute(
            update(CoverRequest)
            .where(CoverRequest.visit_id == other.id, CoverRequest.status == "OPEN")
            .values(status="FILLED", filled_by_pa_id=pa.id, closed_at=func.now())
        )
        accepting = asyncio.create_task(
            api.data(ACCEPT, {"id": offer_id}, token=api.token(Role.PA, pa.id))
        )
        await wait_for_lock_wait(engine)
        assert not accepting.done()
        if blocker_commits:
            await blocker.commit()
        else:
            await blocker.rollback()
        result = (await accepting)["acceptCoverOffer"]

    visit_row = tuple(
        (await db.execute(select(Visit.pa_id, Visit.status).where(Visit.id == visit.id))).one()
    )
    request_status = await db.scalar(
        select(CoverRequest.status).where(CoverRequest.id == request_id)
    )
    offer_status = await db.scalar(select(CoverOffer.status))
    await db.commit()
    if blocker_commits:
        assert result["offer"] is None
        assert result["errors"] == [
            {
                "field": "id",
                "code": "CONFLICT",
                "message": "You have just been booked for another visit at this time.",
            }
        ]
        assert visit_row == (None, "NEEDS_COVER")
        assert (request_status, offer_status) == ("OPEN", "OPEN")
    else:
        assert result["errors"] == []
        assert visit_row == (pa.id, "SCHEDULED")
        assert (request_status, offer_status) == ("FILLED", "ACCEPTED")
    assert await _double_bookings(db) == 0
