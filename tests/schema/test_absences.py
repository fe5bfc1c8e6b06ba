"""Absences and cover requests through the API: recording an absence hands the PA's future
visits over for cover in one transaction; cancelling, shortening and extending it; opening
and cancelling cover requests; the person's report that a visit under way was missed; and
the cover events subscribers hear after commit."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import Range
from sqlalchemy.ext.asyncio import AsyncSession

from care.enums import Role
from care.models import (
    Absence,
    Cluster,
    ClusterServiceUser,
    CoverOffer,
    CoverRequest,
    Member,
    Visit,
)
from tests.conftest import Api, StatementCounter
from tests.factories import Build, at, gid
from tests.live_events import committed_since, latest

ERRORS = "errors { field message code }"
REQUEST_FIELDS = """id reason status note openedAt closedAt visitStartsAt
    visit { id status pa { id } } originalPa { id name } absence { id }"""
ABSENCE_FIELDS = "id kind startsAt endsAt note cancelledAt personalAssistant { id name }"
RECORD = f"""mutation($input: RecordAbsenceInput!) {{
  recordAbsence(input: $input) {{
    absence {{ {ABSENCE_FIELDS} }} coverRequests {{ {REQUEST_FIELDS} }} {ERRORS} }} }}"""
UPDATE = f"""mutation($id: ID!, $input: UpdateAbsenceInput!) {{
  updateAbsence(id: $id, input: $input) {{
    absence {{ {ABSENCE_FIELDS} }} coverRequests {{ {REQUEST_FIELDS} }} {ERRORS} }} }}"""
CANCEL = f"""mutation($id: ID!) {{
  cancelAbsence(id: $id) {{
    absence {{ {ABSENCE_FIELDS} }} coverRequests {{ {REQUEST_FIELDS} }} {ERRORS} }} }}"""
OPEN_REQUEST = f"""mutation($visitId: ID!, $note: String) {{
  openCoverRequest(visitId: $visitId, note: $note) {{
    coverRequest {{ {REQUEST_FIELDS} }} {ERRORS} }} }}"""
CANCEL_REQUEST = f"""mutation($id: ID!, $note: String) {{
  cancelCoverRequest(id: $id, note: $note) {{
    coverRequest {{ {REQUEST_FIELDS} }} {ERRORS} }} }}"""
MISSED = f"""mutation($id: ID!) {{
  reportVisitMissed(id: $id) {{
    visit {{ id status pa {{ id }} confirmedAt }}
    coverRequest {{ {REQUEST_FIELDS} }} {ERRORS} }} }}"""
OPEN_REQUESTS = f"""query {{ coverRequests(first: 50, status: [OPEN]) {{
  totalCount nodes {{ {REQUEST_FIELDS} }} }} }}"""


@dataclass
class World:
    admin: Member
    coordinator: Member
    other_coordinator: Member
    su: Member
    su2: Member
    other_su: Member
    carer: Member
    pa: Member
    pa2: Member
    cluster: Cluster
    other_cluster: Cluster


@pytest.fixture
async def w(db: AsyncSession) -> World:
    b = Build(db)
    await b.las()
    await b.coop()
    admin = await b.worker("Ann Admin")
    coordinator = await b.worker("Cora Ordinator")
    other_coordinator = await b.worker("Otto Ordinator")
    cluster = await b.cluster("Finchley", support_worker=coordinator)
    other_cluster = await b.cluster("Barnet East", support_worker=other_coordinator)
    su = await b.service_user("Ada User", cluster=cluster)
    su2 = await b.service_user("Ben User", cluster=cluster, email="ben@example.org")
    other_su = await b.service_user("Bob Other", cluster=other_cluster, email="bob@example.org")
    carer = await b.carer(su)
    pa = await b.pa("Pat Near", cluster=cluster)
    pa2 = await b.pa("Pam Team", cluster=cluster)
    await db.commit()
    return World(
        admin,
        coordinator,
        other_coordinator,
        su,
        su2,
        other_su,
        carer,
        pa,
        pa2,
        cluster,
        other_cluster,
    )


# --- helpers -------------------------------------------------------------------------------


def coord(api: Api, w: World) -> str:
    return api.token(Role.COORDINATOR, w.coordinator.id)


def as_pa(api: Api, pa: Member) -> str:
    return api.token(Role.PA, pa.id)


def pk(global_id: str, type_name: str) -> int:
    name, value = base64.b64decode(global_id).decode().split(":")
    assert name == type_name
    return int(value)


def absence_input(
    pa: Member, start: dt.datetime, end: dt.datetime, kind: str = "HOLIDAY", note: str | None = None
) -> dict[str, Any]:
    return {
        "paId": gid("PersonalAssistant", pa.id),
        "kind": kind,
        "startsAt": start.isoformat(),
        "endsAt": end.isoformat(),
        "note": note,
    }


async def record(
    api: Api, token: str, pa: Member, start: dt.datetime, end: dt.datetime, **kw: Any
) -> dict[str, Any]:
    out: dict[str, Any] = (
        await api.data(RECORD, {"input": absence_input(pa, start, end, **kw)}, token=token)
    )["recordAbsence"]
    return out


async def visits(db: AsyncSession) -> dict[int, tuple[int | None, str]]:
    """visit id -> (pa id, status), read fresh."""
    rows = (await db.execute(select(Visit.id, Visit.pa_id, Visit.status))).all()
    await db.commit()
    return {r.id: (r.pa_id, r.status) for r in rows}


async def requests(db: AsyncSession) -> list[dict[str, Any]]:
    rows = (
        await db.execute(
            select(
                CoverRequest.id,
                CoverRequest.visit_id,
                CoverRequest.reason,
                CoverRequest.status,
                CoverRequest.absence_id,
                CoverRequest.original_pa_id,
                CoverRequest.opened_by_id,
                CoverRequest.closed_at,
                CoverRequest.filled_by_pa_id,
                CoverRequest.note,
            ).order_by(CoverRequest.id)
        )
    ).all()
    await db.commit()
    return [dict(r._mapping) for r in rows]


async def count(db: AsyncSession, model: Any) -> int:
    n = await db.scalar(select(func.count()).select_from(model))
    await db.commit()
    return int(n or 0)


def codes(payload: dict[str, Any]) -> list[tuple[str, str | None]]:
    return [(e["code"], e["field"]) for e in payload["errors"]]


async def add_offer(db: AsyncSession, request_id: int, pa: Member) -> int:
    offer = CoverOffer(
        cover_request_id=request_id,
        pa_id=pa.id,
        status="OPEN",
        expires_at=dt.datetime.now(dt.UTC) + dt.timedelta(hours=2),
    )
    db.add(offer)
    await db.commit()
    return offer.id


# --- recording an absence ------------------------------------------------------------------


async def test_pa_records_absence_future_visits_need_cover(
    api: Api, db: AsyncSession, w: World
) -> None:
    b = Build(db)
    ongoing = await b.visit(w.su, w.pa, at(hours=-1), 120)  # started: history, left alone
    first = await b.visit(w.su, w.pa, at(days=1))
    second = await b.visit(w.su2, w.pa, at(days=3))
    straddling = await b.visit(w.su, w.pa, at(days=5, hours=-0.5), 60)  # ends after absence
    after = await b.visit(w.su, w.pa, at(days=6))  # outside the absence
    other_pa = await b.visit(w.su2, w.pa2, at(days=1))
    await db.commit()

    # From the end of the visit under way (an absence may not cover it: see below).
    out = await record(
        api, as_pa(api, w.pa), w.pa, at(hours=1), at(days=5), kind="SICKNESS", note=" flu "
    )
    assert out["errors"] == []
    absence = out["absence"]
    assert absence["kind"] == "SICKNESS"
    assert absence["note"] == "flu"
    assert absence["personalAssistant"]["name"] == "Pat Near"
    # The visits are no longer the PA's: their requests are not shown to them.
    assert out["coverRequests"] == []

    rows = await visits(db)
    assert rows[ongoing.id] == (w.pa.id, "SCHEDULED")
    assert rows[after.id] == (w.pa.id, "SCHEDULED")
    assert rows[other_pa.id] == (w.pa2.id, "SCHEDULED")
    for v in (first, second, straddling):
        assert rows[v.id] == (None, "NEEDS_COVER")

    absence_id = pk(absence["id"], "Absence")
    opened = await requests(db)
    assert sorted(r["visit_id"] for r in opened) == sorted([first.id, second.id, straddling.id])
    for r in opened:
        assert (r["reason"], r["status"], r["absence_id"]) == ("ABSENCE", "OPEN", absence_id)
        assert (r["original_pa_id"], r["opened_by_id"], r["closed_at"]) == (w.pa.id, w.pa.id, None)
    # Soonest visit first, the ids in the same order.
    assert [r["visit_id"] for r in opened] == [first.id, second.id, straddling.id]

    listed = (await api.data(OPEN_REQUESTS, token=coord(api, w)))["coverRequests"]
    assert listed["totalCount"] == 3
    assert [pk(n["visit"]["id"], "Visit") for n in listed["nodes"]] == [
        first.id,
        second.id,
        straddling.id,
    ]
    assert all(n["originalPa"]["name"] == "Pat Near" for n in listed["nodes"])
    assert all(n["absence"]["id"] == absence["id"] for n in listed["nodes"])


async def test_statements_do_not_grow_with_the_number_of_visits(
    api: Api, db: AsyncSession, w: World, sql_counter: StatementCounter
) -> None:
    b = Build(db)
    await b.visit(w.su, w.pa, at(days=1))
    for i in range(12):
        await b.visit(w.su2, w.pa2, at(days=1 + i / 4))
    await db.commit()
    token = coord(api, w)

    async def statements(pa: Member) -> tuple[int, dict[str, Any]]:
        sql_counter.count = 0
        out = await record(api, token, pa, at(hours=1), at(days=5))
        return sql_counter.count, out

    one, out_one = await statements(w.pa)
    twelve, out_twelve = await statements(w.pa2)
    assert (len(out_one["coverRequests"]), len(out_twelve["coverRequests"])) == (1, 12)
    assert one == twelve
    assert await count(db, CoverRequest) == 13


async def test_coordinator_records_absence_and_sees_the_requests(
    api: Api, db: AsyncSession, w: World
) -> None:
    b = Build(db)
    v1 = await b.visit(w.su, w.pa, at(days=2))
    v2 = await b.visit(w.su2, w.pa, at(days=1))
    await db.commit()
    out = await record(api, coord(api, w), w.pa, at(days=0.5), at(days=4))
    assert out["errors"] == []
    got = out["coverRequests"]
    assert [pk(r["visit"]["id"], "Visit") for r in got] == [v2.id, v1.id]
    assert all(
        (r["reason"], r["status"], r["visit"]["status"], r["visit"]["pa"])
        == ("ABSENCE", "OPEN", "NEEDS_COVER", None)
        for r in got
    )
    assert [r["opened_by_id"] for r in await requests(db)] == [w.coordinator.id] * 2


async def test_admin_records_absence(api: Api, db: AsyncSession, w: World) -> None:
    out = await record(api, api.token(Role.ADMIN, w.admin.id), w.pa, at(days=1), at(days=2))
    assert out["errors"] == []
    assert await count(db, Absence) == 1


async def test_overlapping_absence_is_refused_and_changes_nothing(
    api: Api, db: AsyncSession, w: World
) -> None:
    b = Build(db)
    later = await b.visit(w.su, w.pa, at(days=3))
    await db.commit()
    first = await record(api, as_pa(api, w.pa), w.pa, at(days=1), at(days=2))
    assert first["errors"] == []
    before = await visits(db)

    # Covers the visit on day 3, but overlaps the first absence: nothing may change.
    out = await record(api, as_pa(api, w.pa), w.pa, at(days=1.5), at(days=4))
    assert out["absence"] is None
    assert codes(out) == [("OVERLAP", "startsAt")]
    assert "holiday" in out["errors"][0]["message"]
    assert await visits(db) == before
    assert before[later.id] == (w.pa.id, "SCHEDULED")
    assert await count(db, CoverRequest) == 0
    assert await count(db, Absence) == 1

    # Touching is not overlapping: ranges are half-open.
    touching = await record(api, as_pa(api, w.pa), w.pa, at(days=2), at(days=4))
    assert touching["errors"] == []
    assert (await visits(db))[later.id] == (None, "NEEDS_COVER")


async def test_concurrent_overlapping_absences_leave_exactly_one(
    api: Api, db: AsyncSession, w: World
) -> None:
    b = Build(db)
    v = await b.visit(w.su, w.pa, at(days=3))
    await db.commit()
    token = coord(api, w)
    outs = await asyncio.gather(
        *(record(api, token, w.pa, at(days=1, hours=i), at(days=5, hours=i)) for i in range(8))
    )
    assert sum(o["absence"] is not None for o in outs) == 1
    assert all(codes(o) == [("OVERLAP", "startsAt")] for o in outs if o["absence"] is None)
    assert await count(db, Absence) == 1
    assert [(r["visit_id"], r["status"]) for r in await requests(db)] == [(v.id, "OPEN")]


BAD_RANGES = [
    ("end_before_start", 2.0, 1.0, "endsAt"),
    ("end_equals_start", 2.0, 2.0, "endsAt"),
    ("longer_than_366_days", 1.0, 368.0, "endsAt"),
]


@pytest.mark.parametrize(
    ("name", "start", "end", "field"), BAD_RANGES, ids=[r[0] for r in BAD_RANGES]
)
async def test_bad_range_is_refused(
    api: Api, db: AsyncSession, w: World, name: str, start: float, end: float, field: str
) -> None:
    b = Build(db)
    await b.visit(w.su, w.pa, at(days=1.5))
    await db.commit()
    before = await visits(db)
    out = await record(api, coord(api, w), w.pa, at(days=start), at(days=end))
    assert out["absence"] is None
    assert codes(out) == [("INVALID_RANGE", field)]
    assert await visits(db) == before
    assert await count(db, Absence) == 0


async def test_past_absence_is_recorded_but_opens_no_requests(
    api: Api, db: AsyncSession, w: World
) -> None:
    b = Build(db)
    past = await b.visit(w.su, w.pa, at(days=-3))
    await db.commit()
    out = await record(api, coord(api, w), w.pa, at(days=-6), at(days=-4), kind="SICKNESS")
    assert out["errors"] == []
    assert out["absence"]["kind"] == "SICKNESS"
    assert out["coverRequests"] == []
    assert (await visits(db))[past.id] == (w.pa.id, "SCHEDULED")
    assert await count(db, CoverRequest) == 0


@pytest.mark.parametrize(
    ("starts", "status", "word"),
    [(-3, "COMPLETED", "completed"), (-3, "SCHEDULED", "started"), (-0.02, "SCHEDULED", "started")],
)
async def test_absence_over_a_visit_that_has_started_or_taken_place_is_refused(
    api: Api, db: AsyncSession, w: World, starts: float, status: str, word: str
) -> None:
    """A PA is never on a visit and away at once (the guard `pa_commitment_no_overlap`):
    a visit that cannot be handed over (completed, or under way or over while still
    scheduled) is named, and nothing changes. Once it is recorded as not having taken
    place, the absence is accepted."""
    b = Build(db)
    held = await b.visit(w.su, w.pa, at(days=starts), 120, status=status)
    future = await b.visit(w.su, w.pa, at(days=1))
    await db.commit()
    before = await visits(db)
    out = await record(api, coord(api, w), w.pa, at(days=-4), at(days=2), kind="SICKNESS")
    assert out["absence"] is None
    assert codes(out) == [("OVERLAP", "startsAt")]
    assert f"has a {word} visit on" in out["errors"][0]["message"]
    assert await visits(db) == before
    assert (await count(db, Absence), await count(db, CoverRequest)) == (0, 0)

    await db.execute(update(Visit).where(Visit.id == held.id).values(status="MISSED"))
    await db.commit()
    out = await record(api, coord(api, w), w.pa, at(days=-4), at(days=2), kind="SICKNESS")
    assert out["errors"] == []
    assert (await visits(db))[future.id] == (None, "NEEDS_COVER")


async def test_who_may_record_an_absence(api: Api, db: AsyncSession, w: World) -> None:
    b = Build(db)
    v = await b.visit(w.su, w.pa, at(days=2))
    await db.commit()
    out = await record(api, as_pa(api, w.pa2), w.pa, at(days=1), at(days=3))  # another PA's
    assert codes(out) == [("FORBIDDEN", "paId")], out
    for token in (api.token(Role.SERVICE_USER, w.su.id), api.token(Role.CARER, w.carer.id)):
        variables = {"input": absence_input(w.pa, at(days=1), at(days=3))}
        assert await api.refused(RECORD, variables, token=token) == "FORBIDDEN"
    body = await api.query(RECORD, {"input": absence_input(w.pa, at(days=1), at(days=3))})
    assert body["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    unknown = await api.data(
        RECORD,
        {
            "input": {
                **absence_input(w.pa, at(days=1), at(days=3)),
                "paId": gid("PersonalAssistant", 99999),
            }
        },
        token=coord(api, w),
    )
    assert codes(unknown["recordAbsence"]) == [("NOT_FOUND", "paId")]
    not_a_pa = await api.data(
        RECORD,
        {
            "input": {
                **absence_input(w.pa, at(days=1), at(days=3)),
                "paId": gid("PersonalAssistant", w.su.id),
            }
        },
        token=coord(api, w),
    )
    assert codes(not_a_pa["recordAbsence"]) == [("NOT_FOUND", "paId")]
    assert (await visits(db))[v.id] == (w.pa.id, "SCHEDULED")
    assert await count(db, Absence) == 0


async def absences(db: AsyncSession) -> list[tuple[Any, ...]]:
    rows = (
        await db.execute(
            select(Absence.id, Absence.pa_id, Absence.during, Absence.note, Absence.cancelled_at)
        )
    ).all()
    await db.commit()
    return sorted(tuple(r) for r in rows)


async def test_coordinators_change_only_their_teams_absences(
    api: Api, db: AsyncSession, w: World
) -> None:
    """An absence unassigns the PA's visits wherever they are: a coordinator records and
    changes absences only for the PAs on their own teams (not another cluster's rota)."""
    b = Build(db)
    theirs = await b.pa("Pip Elsewhere", cluster=w.other_cluster)
    visit = await b.visit(w.other_su, theirs, at(days=2))
    await db.commit()
    mine = coord(api, w)
    out = await record(api, mine, theirs, at(days=1), at(days=3))
    assert codes(out) == [("FORBIDDEN", "paId")]
    assert out["absence"] is None
    assert (await visits(db))[visit.id] == (theirs.id, "SCHEDULED")
    assert await count(db, Absence) == 0

    # Their own coordinator may; then the other coordinator may not move or cancel it.
    recorded = await record(
        api, api.token(Role.COORDINATOR, w.other_coordinator.id), theirs, at(days=4), at(days=5)
    )
    assert recorded["errors"] == []
    absence_id = recorded["absence"]["id"]
    before = (await absences(db), await visits(db), await requests(db))
    seen = await api.data(
        "query($id: ID!) { node(id: $id) { id } }", {"id": absence_id}, token=mine
    )
    # Unknown to those who may not see it, forbidden to those who may.
    refusal = "FORBIDDEN" if seen["node"] else "NOT_FOUND"
    moved = await api.data(
        UPDATE,
        {"id": absence_id, "input": {"startsAt": at(days=1).isoformat(), "note": "mine"}},
        token=mine,
    )
    assert codes(moved["updateAbsence"]) == [(refusal, "id")]
    cancelled = await api.data(CANCEL, {"id": absence_id}, token=mine)
    assert codes(cancelled["cancelAbsence"]) == [(refusal, "id")]
    assert (await absences(db), await visits(db), await requests(db)) == before


# --- cancelling, shortening, extending -----------------------------------------------------


async def test_cancelling_returns_visits_to_the_pa_when_free(
    api: Api, db: AsyncSession, w: World
) -> None:
    b = Build(db)
    back = await b.visit(w.su, w.pa, at(days=1))
    booked_meanwhile = await b.visit(w.su, w.pa, at(days=2))
    filled = await b.visit(w.su2, w.pa, at(days=3))
    await db.commit()
    out = await record(api, coord(api, w), w.pa, at(hours=1), at(days=4))
    absence_id = out["absence"]["id"]
    by_visit = {r["visit_id"]: r["id"] for r in await requests(db)}

    # Meanwhile: the second visit moves past the absence and the PA is booked for someone
    # else then (inside the absence nobody can book them), the third visit's cover is
    # found, and the first visit's request has an open offer.
    await db.execute(
        update(Visit)
        .where(Visit.id == booked_meanwhile.id)
        .values(during=Range(at(days=5), at(days=5, hours=1), bounds="[)"))
    )
    await b.visit(w.su2, w.pa, at(days=5, hours=0.5))
    await db.execute(
        update(Visit).where(Visit.id == filled.id).values(pa_id=w.pa2.id, status="SCHEDULED")
    )
    await db.execute(
        update(CoverRequest)
        .where(CoverRequest.id == by_visit[filled.id])
        .values(status="FILLED", filled_by_pa_id=w.pa2.id, closed_at=func.now())
    )
    await db.commit()
    offer_id = await add_offer(db, by_visit[back.id], w.pa2)

    out = await api.data(CANCEL, {"id": absence_id}, token=coord(api, w))
    result = out["cancelAbsence"]
    assert result["errors"] == []
    assert result["absence"]["cancelledAt"] is not None
    assert [(pk(r["visit"]["id"], "Visit"), r["status"]) for r in result["coverRequests"]] == [
        (back.id, "RETURNED")
    ]
    assert result["coverRequests"][0]["visit"]["pa"]["id"] == gid("PersonalAssistant", w.pa.id)

    rows = await visits(db)
    assert rows[back.id] == (w.pa.id, "SCHEDULED")
    assert rows[booked_meanwhile.id] == (None, "NEEDS_COVER")
    assert rows[filled.id] == (w.pa2.id, "SCHEDULED")
    status = {r["visit_id"]: (r["status"], r["closed_at"] is not None) for r in await requests(db)}
    assert status == {
        back.id: ("RETURNED", True),
        booked_meanwhile.id: ("OPEN", False),
        filled.id: ("FILLED", True),
    }
    offer = (
        await db.execute(
            select(CoverOffer.status, CoverOffer.responded_at).where(CoverOffer.id == offer_id)
        )
    ).one()
    await db.commit()
    assert offer.status == "CLOSED" and offer.responded_at is not None

    again = await api.data(CANCEL, {"id": absence_id}, token=coord(api, w))
    assert codes(again["cancelAbsence"]) == [("CLOSED", "id")]
    changed = await api.data(
        UPDATE, {"id": absence_id, "input": {"endsAt": at(days=5).isoformat()}}, token=coord(api, w)
    )
    assert codes(changed["updateAbsence"]) == [("CLOSED", "id")]


async def test_pa_cancels_own_absence(api: Api, db: AsyncSession, w: World) -> None:
    b = Build(db)
    v = await b.visit(w.su, w.pa, at(days=1))
    await db.commit()
    out = await record(api, as_pa(api, w.pa), w.pa, at(hours=1), at(days=2))
    absence_id = out["absence"]["id"]
    # Another PA cannot see it, so cannot cancel it.
    hidden = await api.data(CANCEL, {"id": absence_id}, token=as_pa(api, w.pa2))
    assert codes(hidden["cancelAbsence"]) == [("NOT_FOUND", "id")]
    refused = await api.refused(
        CANCEL, {"id": absence_id}, token=api.token(Role.SERVICE_USER, w.su.id)
    )
    assert refused == "FORBIDDEN"
    assert (await visits(db))[v.id] == (None, "NEEDS_COVER")

    mine = await api.data(CANCEL, {"id": absence_id}, token=as_pa(api, w.pa))
    result = mine["cancelAbsence"]
    assert result["errors"] == []
    # The visit is the PA's again, so they see the returned request.
    assert [r["status"] for r in result["coverRequests"]] == ["RETURNED"]
    assert (await visits(db))[v.id] == (w.pa.id, "SCHEDULED")


async def test_shortening_returns_only_visits_outside_the_new_range(
    api: Api, db: AsyncSession, w: World
) -> None:
    b = Build(db)
    inside = await b.visit(w.su, w.pa, at(days=2))
    outside = await b.visit(w.su, w.pa, at(days=4))
    await db.commit()
    out = await record(api, coord(api, w), w.pa, at(days=1), at(days=5))
    absence_id = out["absence"]["id"]
    new_end = at(days=3)
    changed = await api.data(
        UPDATE,
        {"id": absence_id, "input": {"endsAt": new_end.isoformat(), "note": "back early"}},
        token=coord(api, w),
    )
    result = changed["updateAbsence"]
    assert result["errors"] == []
    assert dt.datetime.fromisoformat(result["absence"]["endsAt"]) == new_end
    # The note may hold health details: stored, but masked for the coordinator.
    assert result["absence"]["note"] is None
    assert [(pk(r["visit"]["id"], "Visit"), r["status"]) for r in result["coverRequests"]] == [
        (outside.id, "RETURNED")
    ]
    rows = await visits(db)
    assert rows[inside.id] == (None, "NEEDS_COVER")
    assert rows[outside.id] == (w.pa.id, "SCHEDULED")
    assert {r["visit_id"]: r["status"] for r in await requests(db)} == {
        inside.id: "OPEN",
        outside.id: "RETURNED",
    }


async def test_extending_opens_requests_for_newly_covered_visits(
    api: Api, db: AsyncSession, w: World
) -> None:
    b = Build(db)
    first = await b.visit(w.su, w.pa, at(days=2))
    newly = await b.visit(w.su, w.pa, at(days=5))
    await db.commit()
    out = await record(api, as_pa(api, w.pa), w.pa, at(days=1), at(days=3))
    absence_id = out["absence"]["id"]
    changed = await api.data(
        UPDATE, {"id": absence_id, "input": {"endsAt": at(days=6).isoformat()}}, token=coord(api, w)
    )
    result = changed["updateAbsence"]
    assert result["errors"] == []
    assert [(pk(r["visit"]["id"], "Visit"), r["status"]) for r in result["coverRequests"]] == [
        (newly.id, "OPEN")
    ]
    rows = await visits(db)
    assert rows[first.id] == rows[newly.id] == (None, "NEEDS_COVER")
    got = await requests(db)
    assert [(r["visit_id"], r["status"], r["opened_by_id"]) for r in got] == [
        (first.id, "OPEN", w.pa.id),
        (newly.id, "OPEN", w.coordinator.id),
    ]


async def test_update_into_another_absence_is_refused(api: Api, db: AsyncSession, w: World) -> None:
    b = Build(db)
    v = await b.visit(w.su, w.pa, at(days=5))
    await db.commit()
    first = await record(api, coord(api, w), w.pa, at(days=1), at(days=2))
    await record(api, coord(api, w), w.pa, at(days=6), at(days=7))
    changed = await api.data(
        UPDATE,
        {"id": first["absence"]["id"], "input": {"endsAt": at(days=6.5).isoformat()}},
        token=coord(api, w),
    )
    assert codes(changed["updateAbsence"]) == [("OVERLAP", "startsAt")]
    assert (await visits(db))[v.id] == (w.pa.id, "SCHEDULED")
    bad = await api.data(
        UPDATE,
        {"id": first["absence"]["id"], "input": {"startsAt": at(days=3).isoformat()}},
        token=coord(api, w),
    )
    assert codes(bad["updateAbsence"]) == [("INVALID_RANGE", "endsAt")]


# --- opening and cancelling a cover request ------------------------------------------------


async def test_coordinator_opens_a_cover_request(api: Api, db: AsyncSession, w: World) -> None:
    b = Build(db)
    v = await b.visit(w.su, w.pa, at(days=2))
    await db.commit()
    out = await api.data(
        OPEN_REQUEST, {"visitId": gid("Visit", v.id), "note": "Pat has left"}, token=coord(api, w)
    )
    result = out["openCoverRequest"]
    assert result["errors"] == []
    request = result["coverRequest"]
    assert (request["reason"], request["status"], request["note"]) == (
        "MANUAL",
        "OPEN",
        "Pat has left",
    )
    assert request["originalPa"]["name"] == "Pat Near"
    assert request["visit"]["status"] == "NEEDS_COVER" and request["visit"]["pa"] is None
    assert (await visits(db))[v.id] == (None, "NEEDS_COVER")

    again = await api.data(OPEN_REQUEST, {"visitId": gid("Visit", v.id)}, token=coord(api, w))
    assert codes(again["openCoverRequest"]) == [("CONFLICT", "visitId")]
    assert await count(db, CoverRequest) == 1


async def test_a_visit_needing_cover_already_has_its_request(
    api: Api, db: AsyncSession, w: World
) -> None:
    b = Build(db)
    v = await b.visit(w.su, None, at(days=2), status="NEEDS_COVER")
    await db.commit()
    # Opened by the database at commit (migration 0017), with no PA to record.
    assert [(r["reason"], r["status"], r["original_pa_id"]) for r in await requests(db)] == [
        ("UNASSIGNED", "OPEN", None)
    ]
    out = await api.data(
        OPEN_REQUEST, {"visitId": gid("Visit", v.id)}, token=api.token(Role.ADMIN, w.admin.id)
    )
    assert codes(out["openCoverRequest"]) == [("CONFLICT", "visitId")]
    assert len(await requests(db)) == 1


async def test_open_cover_request_refusals(api: Api, db: AsyncSession, w: World) -> None:
    b = Build(db)
    started = await b.visit(w.su, w.pa, at(hours=-0.5), 60)
    cancelled = await b.visit(w.su, w.pa, at(days=3), status="CANCELLED")
    elsewhere = await b.visit(w.other_su, w.pa2, at(days=2))
    mine = await b.visit(w.su, w.pa, at(days=2))
    await db.commit()
    cases = [
        (coord(api, w), started.id, "INVALID", "visitId"),
        (coord(api, w), cancelled.id, "INVALID", "visitId"),
        (coord(api, w), 999999, "NOT_FOUND", "visitId"),
        # Its PA is on this coordinator's team, but the person is not theirs: unseen.
        (coord(api, w), elsewhere.id, "NOT_FOUND", "visitId"),
        # Not visible to the other cluster's coordinator at all.
        (api.token(Role.COORDINATOR, w.other_coordinator.id), mine.id, "NOT_FOUND", "visitId"),
    ]
    before = await visits(db)
    for token, visit_id, code, field in cases:
        out = await api.data(OPEN_REQUEST, {"visitId": gid("Visit", visit_id)}, token=token)
        assert codes(out["openCoverRequest"]) == [(code, field)], (visit_id, out)
    # Roles that never manage cover requests are refused at the field.
    for token in (as_pa(api, w.pa), api.token(Role.SERVICE_USER, w.su.id)):
        variables = {"visitId": gid("Visit", mine.id)}
        assert await api.refused(OPEN_REQUEST, variables, token=token) == "FORBIDDEN"
    assert await visits(db) == before
    assert await count(db, CoverRequest) == 0


async def test_cancel_cover_request_closes_offers_and_cancels_the_visit(
    api: Api, db: AsyncSession, w: World
) -> None:
    b = Build(db)
    v = await b.visit(w.su, w.pa, at(days=2))
    await db.commit()
    opened = await api.data(
        OPEN_REQUEST, {"visitId": gid("Visit", v.id), "note": "left"}, token=coord(api, w)
    )
    request_gid = opened["openCoverRequest"]["coverRequest"]["id"]
    offer_id = await add_offer(db, pk(request_gid, "CoverRequest"), w.pa2)

    refused = await api.refused(CANCEL_REQUEST, {"id": request_gid}, token=as_pa(api, w.pa2))
    assert refused == "FORBIDDEN"

    out = await api.data(
        CANCEL_REQUEST, {"id": request_gid, "note": "visit no longer wanted"}, token=coord(api, w)
    )
    result = out["cancelCoverRequest"]
    assert result["errors"] == []
    assert result["coverRequest"]["status"] == "CANCELLED"
    assert result["coverRequest"]["closedAt"] is not None
    assert result["coverRequest"]["note"] == "left\nvisit no longer wanted"
    # Nobody looks for cover any more: the visit is off, not left needing cover unseen.
    assert (await visits(db))[v.id] == (None, "CANCELLED")
    offer = await db.scalar(select(CoverOffer.status).where(CoverOffer.id == offer_id))
    await db.commit()
    assert offer == "CLOSED"

    again = await api.data(CANCEL_REQUEST, {"id": request_gid}, token=coord(api, w))
    assert codes(again["cancelCoverRequest"]) == [("CLOSED", "id")]
    unknown = await api.data(
        CANCEL_REQUEST, {"id": gid("CoverRequest", 99999)}, token=coord(api, w)
    )
    assert codes(unknown["cancelCoverRequest"]) == [("NOT_FOUND", "id")]
    reopened = await api.data(OPEN_REQUEST, {"visitId": gid("Visit", v.id)}, token=coord(api, w))
    assert codes(reopened["openCoverRequest"]) == [("INVALID", "visitId")]


# --- a missed visit --------------------------------------------------------------------------


async def test_service_user_reports_missed_visit_under_way(
    api: Api, db: AsyncSession, w: World
) -> None:
    b = Build(db)
    v = await b.visit(w.su, w.pa, at(hours=-0.25), 90)  # 75 minutes left
    await db.commit()
    out = await api.data(
        MISSED, {"id": gid("Visit", v.id)}, token=api.token(Role.SERVICE_USER, w.su.id)
    )
    result = out["reportVisitMissed"]
    assert result["errors"] == []
    assert result["visit"]["status"] == "NEEDS_COVER"
    assert result["visit"]["pa"] is None
    assert result["visit"]["confirmedAt"] is None
    assert result["coverRequest"]["reason"] == "MISSED"
    assert result["coverRequest"]["status"] == "OPEN"
    got = await requests(db)
    assert [(r["visit_id"], r["reason"], r["original_pa_id"], r["opened_by_id"]) for r in got] == [
        (v.id, "MISSED", w.pa.id, w.su.id)
    ]
    # Now without a PA, it cannot be reported again.
    again = await api.data(
        MISSED, {"id": gid("Visit", v.id)}, token=api.token(Role.CARER, w.carer.id)
    )
    assert codes(again["reportVisitMissed"]) == [("INVALID", "id")]


async def test_carer_reports_missed_visit_with_little_left(
    api: Api, db: AsyncSession, w: World
) -> None:
    b = Build(db)
    v = await b.visit(w.su, w.pa, at(hours=-1), 70)  # about 10 minutes left
    await db.commit()
    out = await api.data(
        MISSED, {"id": gid("Visit", v.id)}, token=api.token(Role.CARER, w.carer.id)
    )
    result = out["reportVisitMissed"]
    assert result["errors"] == []
    assert result["visit"]["status"] == "MISSED"
    assert result["coverRequest"] is None
    assert (await visits(db))[v.id] == (w.pa.id, "MISSED")
    assert await count(db, CoverRequest) == 0


async def test_report_missed_refusals(api: Api, db: AsyncSession, w: World) -> None:
    b = Build(db)
    under_way = await b.visit(w.su, w.pa, at(hours=-0.25), 90)
    future = await b.visit(w.su, w.pa, at(days=1))
    ended = await b.visit(w.su, w.pa, at(days=-1))
    others = await b.visit(w.other_su, w.pa2, at(hours=-0.25), 90)
    await db.commit()
    su_token = api.token(Role.SERVICE_USER, w.su.id)
    for token in (as_pa(api, w.pa), coord(api, w)):  # only the person and their carers
        variables = {"id": gid("Visit", under_way.id)}
        assert await api.refused(MISSED, variables, token=token) == "FORBIDDEN"
    cases = [
        (su_token, future.id, "INVALID", "id"),
        (su_token, ended.id, "INVALID", "id"),
        (su_token, others.id, "NOT_FOUND", "id"),
    ]
    before = await visits(db)
    for token, visit_id, code, field in cases:
        out = await api.data(MISSED, {"id": gid("Visit", visit_id)}, token=token)
        assert codes(out["reportVisitMissed"]) == [(code, field)], (visit_id, out)
    assert await visits(db) == before
    assert await count(db, CoverRequest) == 0


# --- events -------------------------------------------------------------------------------


async def test_events_are_published_after_commit(api: Api, db: AsyncSession, w: World) -> None:
    b = Build(db)
    db.add(ClusterServiceUser(cluster_id=w.other_cluster.id, service_user_id=w.su2.id))
    v1 = await b.visit(w.su, w.pa, at(days=1))
    v2 = await b.visit(w.su2, w.pa, at(days=2))
    await db.commit()
    mark = await latest(db)

    out = await record(api, coord(api, w), w.pa, at(hours=1), at(days=3))
    opened = await committed_since(db, mark)
    mark = opened[-1].sequence
    by_visit = {r["visit_id"]: r["id"] for r in await requests(db)}
    assert sorted((e.kind, e.subject, e.subject_id) for e in opened) == sorted(
        ("REQUEST_OPENED", "COVER_REQUEST", by_visit[vid]) for vid in (v1.id, v2.id)
    )
    both = (w.cluster.id, w.other_cluster.id)
    assert {e.subject_id: e.cluster_ids for e in opened} == {
        by_visit[v1.id]: (w.cluster.id,),
        by_visit[v2.id]: tuple(sorted(both)),
    }

    # A refused change publishes nothing (its savepoint is rolled back with its events).
    refused = await record(api, coord(api, w), w.pa, at(days=2), at(days=4))
    assert codes(refused) == [("OVERLAP", "startsAt")]
    assert await committed_since(db, mark) == []

    offer_id = await add_offer(db, by_visit[v1.id], w.pa2)
    await api.data(CANCEL, {"id": out["absence"]["id"]}, token=coord(api, w))
    closed = await committed_since(db, mark)
    mark = closed[-1].sequence
    # The first request's return and its closed offer: one event about the request.
    assert sorted((e.kind, e.subject, e.subject_id, e.pa_id) for e in closed) == sorted(
        [
            ("REQUEST_RETURNED", "COVER_REQUEST", by_visit[v1.id], None),
            ("REQUEST_RETURNED", "COVER_REQUEST", by_visit[v2.id], None),
            ("OFFER_CLOSED", "COVER_OFFER", offer_id, w.pa2.id),
        ]
    )

    opened_one = await api.data(OPEN_REQUEST, {"visitId": gid("Visit", v2.id)}, token=coord(api, w))
    request_id = pk(opened_one["openCoverRequest"]["coverRequest"]["id"], "CoverRequest")
    [event] = await committed_since(db, mark)
    assert (event.kind, event.subject, event.subject_id) == (
        "REQUEST_OPENED",
        "COVER_REQUEST",
        request_id,
    )
    await api.data(CANCEL_REQUEST, {"id": gid("CoverRequest", request_id)}, token=coord(api, w))
    [cancelled] = await committed_since(db, event.sequence)
    assert (cancelled.kind, cancelled.subject_id) == ("REQUEST_CANCELLED", request_id)
