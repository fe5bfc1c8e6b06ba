"""A visit given a PA directly, or cancelled, settles its open cover request."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from care.enums import Role
from care.models import CoverOffer, CoverRequest
from tests.conftest import Api
from tests.factories import Build, at, gid

RECORD = """mutation($input: RecordAbsenceInput!) { recordAbsence(input: $input) {
  coverRequests { id } errors { field code } } }"""
ASSIGN = """mutation($id: ID!, $pa: ID!) { assignVisitPa(id: $id, paId: $pa) {
  visit { status } errors { field code } } }"""
CANCEL = "mutation($id: ID!) { cancelVisit(id: $id) { visit { status } errors { code } } }"


async def test_assigning_or_cancelling_settles_the_request(api: Api, db: AsyncSession) -> None:
    b = Build(db)
    await b.las()
    await b.coop()
    coordinator = await b.worker("Cora Ordinator")
    cluster = await b.cluster(support_worker=coordinator)
    su = await b.service_user(cluster=cluster)
    away = await b.pa("Abe Sent", cluster=cluster)
    stand_in = await b.pa("Stan Din", cluster=cluster)
    first = await b.visit(su, away, at(days=2))
    second = await b.visit(su, away, at(days=2, hours=3))
    await db.commit()
    token = api.token(Role.COORDINATOR, coordinator.id)
    recorded = await api.data(
        RECORD,
        {
            "input": {
                "paId": gid("PersonalAssistant", away.id),
                "kind": "SICKNESS",
                "startsAt": at(days=1).isoformat(),
                "endsAt": at(days=4).isoformat(),
            }
        },
        token=token,
    )
    assert recorded["recordAbsence"]["errors"] == []
    requests = {r.visit_id: r for r in (await db.scalars(select(CoverRequest))).all()}
    db.add(
        CoverOffer(cover_request_id=requests[first.id].id, pa_id=stand_in.id, expires_at=at(days=1))
    )
    await db.commit()

    assigned = await api.data(
        ASSIGN,
        {"id": gid("Visit", first.id), "pa": gid("PersonalAssistant", stand_in.id)},
        token=token,
    )
    assert assigned["assignVisitPa"] == {"visit": {"status": "SCHEDULED"}, "errors": []}
    cancelled = await api.data(CANCEL, {"id": gid("Visit", second.id)}, token=token)
    assert cancelled["cancelVisit"]["errors"] == []

    rows = await db.execute(
        select(
            CoverRequest.visit_id,
            CoverRequest.status,
            CoverRequest.filled_by_pa_id,
            CoverRequest.closed_at,
        )
    )
    after = {r.visit_id: r for r in rows.all()}
    assert (after[first.id].status, after[first.id].filled_by_pa_id) == ("FILLED", stand_in.id)
    assert after[second.id].status == "CANCELLED"
    assert after[second.id].closed_at is not None
    assert (await db.scalars(select(CoverOffer.status))).one() == "CLOSED"
