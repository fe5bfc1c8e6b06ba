"""Issue 3 end to end through the GraphQL API: an absence opens cover requests, the
candidates are ranked with their reasons, offers go out, the first acceptance wins, and
every step is announced to listeners (the events subscriptions are built on)."""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from care.enums import Role
from care.models import CoverRequest, Visit
from tests.conftest import Api
from tests.factories import Build, at, gid
from tests.live_events import committed_since, latest

RECORD = """mutation($input: RecordAbsenceInput!) { recordAbsence(input: $input) {
  absence { id } errors { field code message } } }"""
REQUESTS = """query($cluster: ID!) { coverRequests(clusterId: $cluster, status: [OPEN]) {
  totalCount nodes { id status reason visit { id } originalPa { name } } } }"""
CANDIDATES = """query($visit: ID!) { coverCandidates(visitId: $visit) { candidates {
  score distanceKm parts { regularPa continuity sameCluster travel }
  ... on LocalCoverCandidate { pa { id name } isRegularPa sameCluster } } } }"""
OFFER = """mutation($input: OfferCoverInput!) { offerCover(input: $input) {
  offers { id personalAssistant { name } } errors { field code message } } }"""
ACCEPT = """mutation($id: ID!) { acceptCoverOffer(id: $id) {
  offer { status } errors { field code message } } }"""


async def test_absence_to_accepted_cover(api: Api, db: AsyncSession, app: Any) -> None:
    b = Build(db)
    await b.las()
    await b.coop()
    coordinator = await b.worker("Cora Ordinator")
    cluster = await b.cluster(support_worker=coordinator)
    su = await b.service_user(needs=["personal-care"], cluster=cluster)
    away = await b.pa("Abe Sent", cluster=cluster, skills=["personal-care"])
    regular = await b.pa("Reggie Regular", cluster=cluster, skills=["personal-care"])
    other = await b.pa("Olive Other", cluster=cluster, skills=["personal-care"])
    unskilled = await b.pa("Una Skilled", cluster=cluster)
    await b.regular(su, regular)
    visit = await b.visit(su, away, at(days=2))
    for pa in (regular, other, unskilled):
        await b.window(pa, at(days=2, hours=-1), hours=4)
    await db.commit()

    mark = await latest(db)

    coordinator_token = api.token(Role.COORDINATOR, coordinator.id)
    recorded = await api.data(
        RECORD,
        {
            "input": {
                "paId": gid("PersonalAssistant", away.id),
                "kind": "HOLIDAY",
                "startsAt": at(days=1).isoformat(),
                "endsAt": at(days=5).isoformat(),
            }
        },
        token=coordinator_token,
    )
    assert recorded["recordAbsence"]["errors"] == []

    requests = await api.data(
        REQUESTS, {"cluster": gid("Cluster", cluster.id)}, token=coordinator_token
    )
    assert requests["coverRequests"]["totalCount"] == 1
    request = requests["coverRequests"]["nodes"][0]
    assert (request["reason"], request["originalPa"]) == ("ABSENCE", {"name": "Abe Sent"})

    ranked = (
        await api.data(CANDIDATES, {"visit": request["visit"]["id"]}, token=coordinator_token)
    )["coverCandidates"]["candidates"]
    assert [c["pa"]["name"] for c in ranked] == ["Reggie Regular", "Olive Other"]
    assert ranked[0]["isRegularPa"] and ranked[0]["parts"]["regularPa"] > 0
    assert ranked[1]["parts"]["regularPa"] == 0
    assert ranked[0]["score"] > ranked[1]["score"]

    offered = await api.data(
        OFFER,
        {"input": {"coverRequestId": request["id"], "paIds": [c["pa"]["id"] for c in ranked]}},
        token=coordinator_token,
    )
    assert offered["offerCover"]["errors"] == []
    offers = {o["personalAssistant"]["name"]: o["id"] for o in offered["offerCover"]["offers"]}

    results = await asyncio.gather(
        api.data(ACCEPT, {"id": offers["Reggie Regular"]}, token=api.token(Role.PA, regular.id)),
        api.data(ACCEPT, {"id": offers["Olive Other"]}, token=api.token(Role.PA, other.id)),
    )
    outcomes = [r["acceptCoverOffer"] for r in results]
    winners = [o for o in outcomes if not o["errors"]]
    assert len(winners) == 1
    loser = next(o for o in outcomes if o["errors"])
    assert loser["errors"][0]["code"] == "CLOSED"

    stored = (await db.execute(select(Visit.pa_id, Visit.status).where(Visit.id == visit.id))).one()
    filled = (await db.execute(select(CoverRequest.status, CoverRequest.filled_by_pa_id))).one()
    assert stored.status == "SCHEDULED"
    assert stored.pa_id in (regular.id, other.id)
    assert tuple(filled) == ("FILLED", stored.pa_id)

    # What the coordinator following the cluster hears: one event per change.
    heard = [e for e in await committed_since(db, mark) if e.subject == "COVER_REQUEST"]
    assert [e.kind for e in heard] == ["REQUEST_OPENED", "OFFER_MADE", "REQUEST_FILLED"]
    assert all(e.cluster_ids == (cluster.id,) for e in heard)
