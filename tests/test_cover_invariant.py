"""Issue 12: every visit that needs cover has exactly one open cover request, and every open
request's visit needs cover, however the visit came to need it (migration 0017). After
each mutation that can change a visit's or a request's status, one query over the whole
database checks both rules; raw SQL shows the database keeps them without the services."""

from __future__ import annotations

import base64
import datetime as dt
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from api.db import session_factory
from care.enums import Role
from care.errors import constraint_name
from care.models import Cluster, Member
from tests.conftest import Api
from tests.factories import Build, at, cover_rule_broken, gid
from tests.live_events import committed_since, latest

ERRORS = "errors { field message code }"
VISIT = "visit { id status } " + ERRORS
SCHEDULE = f"mutation($input: ScheduleVisitInput!) {{ scheduleVisit(input: $input) {{ {VISIT} }} }}"
RECURRING = f"""mutation($input: ScheduleRecurringVisitsInput!) {{
  scheduleRecurringVisits(input: $input) {{ visits {{ id }} {ERRORS} }} }}"""
RESCHEDULE = f"""mutation($id: ID!, $input: RescheduleVisitInput!) {{
  rescheduleVisit(id: $id, input: $input) {{ {VISIT} }} }}"""
CANCEL_VISIT = f"mutation($id: ID!) {{ cancelVisit(id: $id) {{ {VISIT} }} }}"
ASSIGN = f"mutation($id: ID!, $pa: ID!) {{ assignVisitPa(id: $id, paId: $pa) {{ {VISIT} }} }}"
RECORD = f"""mutation($input: RecordAbsenceInput!) {{
  recordAbsence(input: $input) {{ absence {{ id }} {ERRORS} }} }}"""
CANCEL_ABSENCE = f"mutation($id: ID!) {{ cancelAbsence(id: $id) {{ {ERRORS} }} }}"
OPEN_REQUEST = f"""mutation($visit: ID!) {{ openCoverRequest(visitId: $visit) {{
  coverRequest {{ id }} {ERRORS} }} }}"""
CANCEL_REQUEST = f"""mutation($id: ID!) {{ cancelCoverRequest(id: $id, note: "Not needed") {{
  coverRequest {{ status note visit {{ status cancelReason }} }} {ERRORS} }} }}"""
OFFER = f"""mutation($input: OfferCoverInput!) {{ offerCover(input: $input) {{
  offers {{ id }} {ERRORS} }} }}"""
ACCEPT = f"mutation($id: ID!) {{ acceptCoverOffer(id: $id) {{ offer {{ status }} {ERRORS} }} }}"
MISSED = f"mutation($id: ID!) {{ reportVisitMissed(id: $id) {{ {VISIT} }} }}"
REQUESTS = """query($cluster: ID!) { coverRequests(clusterId: $cluster, status: [OPEN],
  first: 100) { totalCount nodes { reason visit { id } } } }"""

GUARD = "cover_request_open_needs_cover"


async def assert_invariant(db: AsyncSession) -> None:
    await db.commit()  # end any transaction of the test's own: read what was committed
    broken = await cover_rule_broken(db)
    assert broken == [], f"visits breaking the cover rule (id, status, open requests): {broken}"


async def requests_of(db: AsyncSession, visit_id: int) -> list[tuple[str, str]]:
    rows = await db.execute(
        text("SELECT reason, status FROM cover_request WHERE visit_id = :v ORDER BY id"),
        {"v": visit_id},
    )
    return [(r.reason, r.status) for r in rows]


def pk(global_id: str) -> int:
    return int(base64.b64decode(global_id).decode().split(":")[1])


@dataclass
class World:
    b: Build
    coordinator: Member
    cluster: Cluster
    su: Member
    pa: Member
    helper: Member


@pytest.fixture
async def w(db: AsyncSession) -> World:
    b = Build(db)
    await b.las()
    await b.coop()
    coordinator = await b.worker("Cora Ordinator")
    cluster = await b.cluster("Finchley", support_worker=coordinator)
    su = await b.service_user("Ada User", cluster=cluster)
    pa = await b.pa("Pat Near", cluster=cluster)
    helper = await b.pa("Hal Helper", cluster=cluster, skills=["personal-care"])
    await db.commit()
    return World(b, coordinator, cluster, su, pa, helper)


async def test_every_mutation_keeps_one_open_request_per_visit_needing_cover(
    api: Api, db: AsyncSession, w: World, app: Any
) -> None:
    token = api.token(Role.COORDINATOR, w.coordinator.id)
    su, cluster = gid("ServiceUser", w.su.id), gid("Cluster", w.cluster.id)

    async def run(query: str, variables: dict[str, Any], as_: str = token) -> dict[str, Any]:
        data = await api.data(query, variables, token=as_)
        (payload,) = data.values()
        assert payload["errors"] == [], payload
        await assert_invariant(db)
        result: dict[str, Any] = payload
        return result

    def booking(days: float, pa: Member | None = None) -> dict[str, Any]:
        start = at(days=days)
        return {
            "serviceUserId": su,
            "startsAt": start.isoformat(),
            "endsAt": (start + dt.timedelta(hours=1)).isoformat(),
            "paId": gid("PersonalAssistant", pa.id) if pa else None,
        }

    mark = await latest(db)

    # Booked without a PA: the visit needs cover, and a request opens with it.
    unbooked = (await run(SCHEDULE, {"input": booking(2)}))["visit"]
    assert unbooked["status"] == "NEEDS_COVER"
    unbooked_id = pk(unbooked["id"])
    assert await requests_of(db, unbooked_id) == [("UNASSIGNED", "OPEN")]
    heard = await committed_since(db, mark)
    assert [(e.kind, e.subject, e.cluster_ids) for e in heard] == [
        ("REQUEST_OPENED", "COVER_REQUEST", (w.cluster.id,))
    ]

    # A weekly series without a PA: one request per visit.
    first = at(days=7)
    series = await run(
        RECURRING,
        {
            "input": {
                "serviceUserId": su,
                "firstStartsAt": first.isoformat(),
                "durationMinutes": 60,
                "weekdays": [first.astimezone(dt.UTC).isoweekday()],
                "until": (first + dt.timedelta(days=14)).date().isoformat(),
            }
        },
    )
    series_ids = [pk(v["id"]) for v in series["visits"]]
    assert len(series_ids) == 3
    listed = await api.data(REQUESTS, {"cluster": cluster}, token=token)
    assert listed["coverRequests"]["totalCount"] == 4

    # Moved while needing cover: the same request.
    later = at(days=3)
    await run(
        RESCHEDULE,
        {
            "id": unbooked["id"],
            "input": {
                "startsAt": later.isoformat(),
                "endsAt": (later + dt.timedelta(hours=1)).isoformat(),
            },
        },
    )
    assert await requests_of(db, unbooked_id) == [("UNASSIGNED", "OPEN")]

    # Given a PA: the request is filled; asked for cover again: one MANUAL request.
    pa = gid("PersonalAssistant", w.pa.id)
    await run(ASSIGN, {"id": unbooked["id"], "pa": pa})
    opened = await run(OPEN_REQUEST, {"visit": unbooked["id"]})
    assert await requests_of(db, unbooked_id) == [("UNASSIGNED", "FILLED"), ("MANUAL", "OPEN")]

    # Cancelled while needing cover: the request is cancelled with it.
    await run(CANCEL_VISIT, {"id": gid("Visit", series_ids[0])})
    assert await requests_of(db, series_ids[0]) == [("UNASSIGNED", "CANCELLED")]

    # Cancelling a request cancels its visit: nothing is left needing cover unseen.
    cancelled = await run(CANCEL_REQUEST, {"id": opened["coverRequest"]["id"]})
    assert cancelled["coverRequest"]["status"] == "CANCELLED"
    assert cancelled["coverRequest"]["visit"]["status"] == "CANCELLED"

    # An absence hands the PA's visit over (ABSENCE, not a second request); cancelling it
    # gives the visit back (RETURNED).
    booked = (await run(SCHEDULE, {"input": booking(4, w.pa)}))["visit"]
    booked_id = pk(booked["id"])
    absence_input = {
        "paId": pa,
        "kind": "HOLIDAY",
        "startsAt": at(days=3.5).isoformat(),
        "endsAt": at(days=5).isoformat(),
    }
    absence = await run(RECORD, {"input": absence_input})
    assert await requests_of(db, booked_id) == [("ABSENCE", "OPEN")]
    await run(CANCEL_ABSENCE, {"id": absence["absence"]["id"]})
    assert await requests_of(db, booked_id) == [("ABSENCE", "RETURNED")]

    # An offer accepted fills the request.
    await w.b.window(w.helper, at(days=14, hours=-2), hours=5)
    await db.commit()
    request_id = await db.scalar(
        text("SELECT id FROM cover_request WHERE visit_id = :v AND status = 'OPEN'"),
        {"v": series_ids[1]},
    )
    offers = await run(
        OFFER,
        {
            "input": {
                "coverRequestId": gid("CoverRequest", request_id),
                "paIds": [gid("PersonalAssistant", w.helper.id)],
            }
        },
    )
    await run(ACCEPT, {"id": offers["offers"][0]["id"]}, api.token(Role.PA, w.helper.id))
    assert await requests_of(db, series_ids[1]) == [("UNASSIGNED", "FILLED")]

    # The person reports a visit under way missed: MISSED request, the PA unassigned.
    under_way = await w.b.visit(w.su, w.pa, at(hours=-0.5), minutes=120)
    await db.commit()
    await run(MISSED, {"id": gid("Visit", under_way.id)}, api.token(Role.SERVICE_USER, w.su.id))
    assert await requests_of(db, under_way.id) == [("MISSED", "OPEN")]


async def test_the_database_keeps_the_rule_without_the_services(
    app: Any, db: AsyncSession, w: World
) -> None:
    su_id, pa_id = w.su.id, w.pa.id
    # Written directly (a loader, the CLI, hand-written SQL): requests open at commit.
    needing = (await w.b.visit(w.su, None, at(days=2), status="NEEDS_COVER")).id
    booked = (await w.b.visit(w.su, w.pa, at(days=3))).id
    await db.commit()
    await assert_invariant(db)
    assert await requests_of(db, needing) == [("UNASSIGNED", "OPEN")]
    await db.execute(
        text("UPDATE visit SET status = 'NEEDS_COVER', pa_id = NULL WHERE id = :v"), {"v": booked}
    )
    await db.commit()
    await assert_invariant(db)
    assert await requests_of(db, booked) == [("UNASSIGNED", "OPEN")]

    # A request closed while its visit still needs cover is replaced at commit.
    await db.execute(
        text(
            "UPDATE cover_request SET status = 'CANCELLED', closed_at = now() "
            "WHERE visit_id = :v AND status = 'OPEN'"
        ),
        {"v": needing},
    )
    await db.commit()
    await assert_invariant(db)
    assert await requests_of(db, needing) == [("UNASSIGNED", "CANCELLED"), ("UNASSIGNED", "OPEN")]

    # Both at once, as the services do it: allowed.
    await db.execute(
        text(
            "WITH c AS (UPDATE visit SET status = 'CANCELLED' WHERE id = :v RETURNING id) "
            "UPDATE cover_request SET status = 'CANCELLED', closed_at = now() "
            "WHERE visit_id IN (SELECT id FROM c) AND status = 'OPEN'"
        ),
        {"v": needing},
    )
    await db.commit()
    await assert_invariant(db)
    # A visit deleted takes its requests with it.
    await db.execute(text("DELETE FROM visit WHERE id = :v"), {"v": booked})
    await db.commit()
    await assert_invariant(db)

    factory = session_factory(app.state.engine)
    # A visit taken out of NEEDS_COVER with its request left open: the commit is refused.
    async with factory() as s:
        await s.execute(
            text(
                "INSERT INTO visit (service_user_id, during, status) "
                "VALUES (:su, tstzrange(now() + interval '5 days', now() + interval '6 days'), "
                "'NEEDS_COVER')"
            ),
            {"su": su_id},
        )
        await s.commit()
    await assert_invariant(db)
    async with factory() as s:
        await s.execute(text("UPDATE visit SET status = 'CANCELLED' WHERE status = 'NEEDS_COVER'"))
        with pytest.raises(IntegrityError, match="yet has an open cover request") as refused:
            await s.commit()
        assert constraint_name(refused.value) == GUARD
    # An open request on a visit that does not need cover: refused too.
    async with factory() as s:
        scheduled = await s.scalar(
            text(
                "INSERT INTO visit (service_user_id, pa_id, during) VALUES "
                "(:su, :pa, tstzrange(now() + interval '8 days', now() + interval '9 days')) "
                "RETURNING id"
            ),
            {"su": su_id, "pa": pa_id},
        )
        await s.execute(
            text("INSERT INTO cover_request (visit_id, reason) VALUES (:v, 'MANUAL')"),
            {"v": scheduled},
        )
        with pytest.raises(IntegrityError, match="yet has an open cover request") as refused:
            await s.commit()
        assert constraint_name(refused.value) == GUARD
    await assert_invariant(db)
