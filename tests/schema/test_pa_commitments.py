"""One guard on a PA's time: a PA is never on a visit and away at once.

Visits and absences are mirrored into `pa_commitment` by triggers and one exclusion
constraint (`pa_commitment_no_overlap`) refuses two overlapping commitments of one PA,
whoever writes them and however concurrently. These tests race `acceptCoverOffer`
against `recordAbsence` through the API (each request in its own session and
connection), write to the tables directly, and check how the services order their writes
so that a PA's own visits never trip the guard."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import pytest
from sqlalchemy import func, select, text, update
from sqlalchemy.dialects.postgresql import Range
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from care.enums import Role
from care.models import Absence, Cluster, CoverOffer, CoverRequest, Member, PaCommitment, Visit
from care.services.visits import LONDON, day_of
from tests.conftest import Api
from tests.factories import Build, at, gid, wait_for_lock_wait

ROUNDS = 20
SKILLS = ["personal-care"]
ERRORS = "errors { field message code }"
OFFER = f"""mutation($input: OfferCoverInput!) {{
  offerCover(input: $input) {{ offers {{ id }} skipped {ERRORS} }} }}"""
ACCEPT = f"""mutation($id: ID!) {{
  acceptCoverOffer(id: $id) {{ offer {{ id status }} {ERRORS} }} }}"""
RECORD = f"""mutation($input: RecordAbsenceInput!) {{
  recordAbsence(input: $input) {{ absence {{ id }} {ERRORS} }} }}"""
UPDATE = f"""mutation($id: ID!, $input: UpdateAbsenceInput!) {{
  updateAbsence(id: $id, input: $input) {{ absence {{ id }} {ERRORS} }} }}"""
CANCEL = f"""mutation($id: ID!) {{
  cancelAbsence(id: $id) {{ absence {{ id }} {ERRORS} }} }}"""
ASSIGN = f"""mutation($id: ID!, $paId: ID!) {{
  assignVisitPa(id: $id, paId: $paId) {{ visit {{ id }} {ERRORS} }} }}"""

# A SCHEDULED or COMPLETED visit of a PA inside an active absence of theirs: must never be.
BOOKED_WHILE_AWAY = text(
    """
    SELECT count(*) FROM visit v JOIN absence a
      ON a.pa_id = v.pa_id AND a.during && v.during
     WHERE v.status IN ('SCHEDULED', 'COMPLETED') AND a.cancelled_at IS NULL
    """
)


async def _booked_while_away(db: AsyncSession) -> int:
    n = int(await db.scalar(BOOKED_WHILE_AWAY) or 0)
    await db.commit()
    return n


def _codes(payload: dict[str, Any]) -> list[tuple[str, str | None]]:
    return [(e["code"], e["field"]) for e in payload["errors"]]


async def _world(db: AsyncSession) -> tuple[Build, Member, Cluster, Member, Member]:
    b = Build(db)
    await b.las()
    await b.coop()
    coordinator = await b.worker("Cora Ordinator")
    cluster = await b.cluster("Finchley", support_worker=coordinator)
    su = await b.service_user("Ada User", cluster=cluster)
    pa = await b.pa("Pat Racing", cluster=cluster, skills=SKILLS)
    return b, coordinator, cluster, su, pa


def _absence_input(pa: Member, start: dt.datetime, end: dt.datetime) -> dict[str, Any]:
    return {
        "paId": gid("PersonalAssistant", pa.id),
        "kind": "SICKNESS",
        "startsAt": start.isoformat(),
        "endsAt": end.isoformat(),
    }


async def _offered_visit(
    api: Api, db: AsyncSession, b: Build, coordinator: Member, su: Member, pa: Member
) -> tuple[Visit, int, str]:
    """A visit in two days that needs cover, its open request, and an offer of it to the
    PA (who is available and skilled)."""
    start = at(days=2)
    await b.window(pa, start - dt.timedelta(hours=1))
    visit = await b.visit(su, None, start, status="NEEDS_COVER")
    request = CoverRequest(visit_id=visit.id, reason="MANUAL", status="OPEN")
    db.add(request)
    await db.commit()
    data = {
        "coverRequestId": gid("CoverRequest", request.id),
        "paIds": [gid("PersonalAssistant", pa.id)],
    }
    token = api.token(Role.COORDINATOR, coordinator.id)
    out = (await api.data(OFFER, {"input": data}, token=token))["offerCover"]
    assert out["errors"] == [], out["errors"]
    return visit, request.id, out["offers"][0]["id"]


# --- the race the issue found ------------------------------------------------------------


@pytest.mark.parametrize("round_", range(ROUNDS))
async def test_accepting_and_recording_an_absence_at_once_never_books_the_pa_while_away(
    api: Api, db: AsyncSession, round_: int
) -> None:
    b, coordinator, _, su, pa = await _world(db)
    visit, request_id, offer_id = await _offered_visit(api, db, b, coordinator, su, pa)
    start = visit.during.lower
    assert start is not None
    absence = _absence_input(pa, start - dt.timedelta(hours=2), start + dt.timedelta(hours=6))

    async def record_after(delay: float) -> dict[str, Any]:
        await asyncio.sleep(delay)
        token = api.token(Role.COORDINATOR, coordinator.id)
        return await api.data(RECORD, {"input": absence}, token=token)

    # The absence starts 0 to 38 ms after the acceptance, so rounds meet at every step.
    accepted, recorded = await asyncio.gather(
        api.data(ACCEPT, {"id": offer_id}, token=api.token(Role.PA, pa.id)),
        record_after(0.002 * round_),
    )
    accepted, recorded = accepted["acceptCoverOffer"], recorded["recordAbsence"]

    assert await _booked_while_away(db) == 0
    row = (await db.execute(select(Visit.pa_id, Visit.status).where(Visit.id == visit.id))).one()
    reqs = {
        r.id: (r.status, r.reason)
        for r in await db.execute(select(CoverRequest.id, CoverRequest.status, CoverRequest.reason))
    }
    absences = int(await db.scalar(select(func.count()).select_from(Absence)) or 0)
    await db.commit()
    # Whoever lost gets a typed, retryable CONFLICT and changed nothing.
    for lost in (r for r in (accepted, recorded) if r["errors"]):
        assert {code for code, _ in _codes(lost)} == {"CONFLICT"}, lost
    assert not (accepted["errors"] and recorded["errors"]), (accepted, recorded)
    outcome = "accept refused" if accepted["errors"] else "absence refused"
    print(f"\nround {round_}: {'both won' if outcome_both(accepted, recorded) else outcome}")
    if accepted["errors"]:  # the absence first: the acceptance saw the PA away
        assert tuple(row) == (None, "NEEDS_COVER")
        assert reqs == {request_id: ("OPEN", "MANUAL")}
        assert absences == 1
    elif recorded["errors"]:  # the acceptance first, the absence refused by the guard
        assert tuple(row) == (pa.id, "SCHEDULED")
        assert reqs == {request_id: ("FILLED", "MANUAL")}
        assert absences == 0
    else:  # the acceptance first, then the absence handed the visit over for cover again
        assert tuple(row) == (None, "NEEDS_COVER")
        assert reqs[request_id] == ("FILLED", "MANUAL")
        assert sorted(v for k, v in reqs.items() if k != request_id) == [("OPEN", "ABSENCE")]
        assert absences == 1


def outcome_both(*payloads: dict[str, Any]) -> bool:
    return not any(p["errors"] for p in payloads)


@pytest.mark.parametrize("blocker_commits", [True, False])
async def test_an_uncommitted_absence_decides_an_acceptance_when_it_commits(
    api: Api, db: AsyncSession, app: Any, blocker_commits: bool
) -> None:
    """Another transaction has recorded the PA's absence but not committed: the
    acceptance's own check cannot see it, so the guard decides after waiting for it."""
    b, coordinator, _, su, pa = await _world(db)
    visit, request_id, offer_id = await _offered_visit(api, db, b, coordinator, su, pa)
    start = visit.during.lower
    assert start is not None
    engine: AsyncEngine = app.state.engine
    async with engine.connect() as blocker:
        await blocker.execute(
            Absence.__table__.insert().values(
                pa_id=pa.id,
                kind="SICKNESS",
                during=Range(start - dt.timedelta(hours=1), start + dt.timedelta(hours=1)),
            )
        )
        accepting = asyncio.create_task(
            api.data(ACCEPT, {"id": offer_id}, token=api.token(Role.PA, pa.id))
        )
        await wait_for_lock_wait(engine)
        assert not accepting.done()
        await (blocker.commit() if blocker_commits else blocker.rollback())
        result = (await accepting)["acceptCoverOffer"]

    row = tuple(
        (await db.execute(select(Visit.pa_id, Visit.status).where(Visit.id == visit.id))).one()
    )
    statuses = (
        await db.execute(select(CoverRequest.status, CoverOffer.status).join(CoverOffer))
    ).one()
    await db.commit()
    if blocker_commits:
        assert result["errors"] == [
            {
                "field": "id",
                "code": "CONFLICT",
                "message": "You have just been recorded as away at this time.",
            }
        ]
        assert row == (None, "NEEDS_COVER")
        assert tuple(statuses) == ("OPEN", "OPEN")
    else:
        assert result["errors"] == []
        assert row == (pa.id, "SCHEDULED")
        assert tuple(statuses) == ("FILLED", "ACCEPTED")
    assert await _booked_while_away(db) == 0


async def test_an_uncommitted_booking_decides_an_absence_when_it_commits(
    api: Api, db: AsyncSession, app: Any
) -> None:
    """The PA is being booked by a transaction the absence cannot see yet: the absence
    waits for it and is refused with a retryable CONFLICT; retried, it hands the visit
    over for cover."""
    b, coordinator, _, su, pa = await _world(db)
    start = at(days=2)
    visit = await b.visit(su, None, start, status="NEEDS_COVER")
    await db.commit()
    token = api.token(Role.COORDINATOR, coordinator.id)
    absence = _absence_input(pa, start - dt.timedelta(hours=1), start + dt.timedelta(hours=1))
    engine: AsyncEngine = app.state.engine
    async with engine.connect() as blocker:
        await blocker.execute(
            update(Visit).where(Visit.id == visit.id).values(pa_id=pa.id, status="SCHEDULED")
        )
        # Its cover request (opened at commit, migration 0017) is filled with it.
        await blocker.execute(
            update(CoverRequest)
            .where(CoverRequest.visit_id == visit.id, CoverRequest.status == "OPEN")
            .values(status="FILLED", filled_by_pa_id=pa.id, closed_at=func.now())
        )
        recording = asyncio.create_task(api.data(RECORD, {"input": absence}, token=token))
        await wait_for_lock_wait(engine)
        assert not recording.done()
        await blocker.commit()
        result = (await recording)["recordAbsence"]
    assert result["absence"] is None
    assert _codes(result) == [("CONFLICT", "paId")]
    assert await db.scalar(select(func.count()).select_from(Absence)) == 0
    await db.commit()

    again = (await api.data(RECORD, {"input": absence}, token=token))["recordAbsence"]
    assert again["errors"] == []
    row = (await db.execute(select(Visit.pa_id, Visit.status).where(Visit.id == visit.id))).one()
    await db.commit()
    assert tuple(row) == (None, "NEEDS_COVER")
    assert await _booked_while_away(db) == 0


# --- the guard itself, written to directly -------------------------------------------------


async def _refused(db: AsyncSession, stmt: Any) -> None:
    """The statement is refused by the guard (and rolled back)."""
    with pytest.raises(IntegrityError) as caught:
        await db.execute(stmt)
    await db.rollback()
    assert "pa_commitment_no_overlap" in str(caught.value)


def _span(start: dt.datetime, hours: float) -> Range[dt.datetime]:
    return Range(start, start + dt.timedelta(hours=hours), bounds="[)")


def _new_visit(su: int, pa: int | None, start: dt.datetime, status: str = "SCHEDULED") -> Any:
    return (
        Visit.__table__.insert()
        .values(service_user_id=su, pa_id=pa, during=_span(start, 1), status=status)
        .returning(Visit.id)
    )


def _new_absence(pa: int, start: dt.datetime, hours: float = 2, **kw: Any) -> Any:
    return (
        Absence.__table__.insert()
        .values(pa_id=pa, kind="HOLIDAY", during=_span(start, hours), **kw)
        .returning(Absence.id)
    )


async def _ids(db: AsyncSession) -> tuple[Build, int, int]:
    b, _, cluster, su, pa = await _world(db)
    ids = (su.id, pa.id)
    await db.commit()
    return b, *ids


async def _commitments(db: AsyncSession) -> list[tuple[str, int | None, int | None, int]]:
    rows = (
        await db.execute(
            select(
                PaCommitment.kind,
                PaCommitment.visit_id,
                PaCommitment.absence_id,
                PaCommitment.pa_id,
            ).order_by(PaCommitment.id)
        )
    ).all()
    await db.commit()
    return sorted(tuple(r) for r in rows)  # type: ignore[misc]


async def test_a_visit_and_an_absence_of_one_pa_may_not_overlap(db: AsyncSession) -> None:
    b, su, pa = await _ids(db)
    other_pa = (await b.pa("Pam Other")).id
    await db.commit()
    start = at(days=3)
    await db.execute(_new_visit(su, pa, start))
    await db.commit()

    # An absence over the visit, even by a minute, is refused; so is a visit in an absence.
    await _refused(db, _new_absence(pa, start + dt.timedelta(minutes=59)))
    await _refused(db, _new_absence(pa, start - dt.timedelta(hours=1), hours=1.5))
    # Touching ranges do not overlap (half-open); another PA's absence is no business of it.
    await db.execute(_new_absence(pa, start + dt.timedelta(hours=1)))
    await db.execute(_new_absence(other_pa, start))
    await db.commit()
    await _refused(db, _new_visit(su, pa, start + dt.timedelta(hours=1, minutes=30)))
    # A visit that holds no time (needing cover, cancelled, missed) may lie in an absence.
    for status in ("NEEDS_COVER", "CANCELLED", "MISSED"):
        pa_id = None if status == "NEEDS_COVER" else pa
        await db.execute(_new_visit(su, pa_id, start + dt.timedelta(hours=1), status))
    await db.commit()
    assert await _booked_while_away(db) == 0


async def test_every_write_path_of_visits_and_absences_is_guarded(db: AsyncSession) -> None:
    """Assigning, moving and reviving a visit, extending and reviving an absence: each
    meets the guard, because the triggers mirror every insert, update and delete."""
    _, su, pa = await _ids(db)
    start = at(days=3)
    away = await db.scalar(_new_absence(pa, start, hours=4))
    unassigned = await db.scalar(_new_visit(su, None, start + dt.timedelta(hours=1), "NEEDS_COVER"))
    later = await db.scalar(_new_visit(su, pa, start + dt.timedelta(hours=5)))
    await db.commit()
    visit, absence = Visit.__table__, Absence.__table__

    # Giving the PA a visit inside their absence.
    await _refused(
        db, visit.update().where(visit.c.id == unassigned).values(pa_id=pa, status="SCHEDULED")
    )
    # Moving the PA's visit into it.
    await _refused(db, visit.update().where(visit.c.id == later).values(during=_span(start, 1)))
    # Extending the absence over the visit.
    await _refused(db, absence.update().where(absence.c.id == away).values(during=_span(start, 6)))
    # A cancelled absence holds no time; reviving it over the visit is refused.
    await db.execute(absence.update().values(cancelled_at=func.now(), during=_span(start, 6)))
    await db.commit()
    await _refused(db, absence.update().values(cancelled_at=None))
    # A cancelled visit may be moved into the absence, but not come back to life there.
    await db.execute(absence.update().values(cancelled_at=None, during=_span(start, 4)))
    await db.execute(
        visit.update().where(visit.c.id == later).values(status="CANCELLED", during=_span(start, 1))
    )
    await db.commit()
    await _refused(db, visit.update().where(visit.c.id == later).values(status="SCHEDULED"))
    assert await _booked_while_away(db) == 0


async def test_the_commitments_mirror_active_visits_and_absences(db: AsyncSession) -> None:
    _, su, pa = await _ids(db)
    start = at(days=3)
    scheduled = await db.scalar(_new_visit(su, pa, start))
    done = await db.scalar(_new_visit(su, pa, at(days=-3), "COMPLETED"))
    await db.execute(_new_visit(su, None, start + dt.timedelta(hours=2), "NEEDS_COVER"))
    missed = await db.scalar(_new_visit(su, pa, at(days=-2), "MISSED"))
    away = await db.scalar(_new_absence(pa, at(days=5)))
    gone = await db.scalar(_new_absence(pa, at(days=7), cancelled_at=at()))
    await db.commit()
    assert await _commitments(db) == sorted(
        [
            ("VISIT", scheduled, None, pa),
            ("VISIT", done, None, pa),
            ("ABSENCE", None, away, pa),
        ]
    )
    # The mirrored range follows its source; status changes add and remove rows; other
    # columns (a check-in) leave it alone.
    visit, absence = Visit.__table__, Absence.__table__
    moved = _span(start + dt.timedelta(hours=3), 1)
    await db.execute(visit.update().where(visit.c.id == scheduled).values(during=moved))
    await db.execute(visit.update().where(visit.c.id == scheduled).values(checked_in_at=at()))
    await db.execute(visit.update().where(visit.c.id == done).values(status="MISSED"))
    await db.execute(visit.update().where(visit.c.id == missed).values(status="COMPLETED"))
    await db.execute(absence.update().where(absence.c.id == away).values(cancelled_at=at()))
    await db.execute(absence.update().where(absence.c.id == gone).values(cancelled_at=None))
    await db.commit()
    assert await _commitments(db) == sorted(
        [
            ("VISIT", scheduled, None, pa),
            ("VISIT", missed, None, pa),
            ("ABSENCE", None, gone, pa),
        ]
    )
    during = await db.scalar(select(PaCommitment.during).where(PaCommitment.visit_id == scheduled))
    assert during == moved
    # Rows come from the triggers only, each with exactly one source of its kind: a hold
    # cannot be written before holds have their own source column.
    with pytest.raises(IntegrityError, match="ck_pa_commitment_one_source"):
        await db.execute(
            PaCommitment.__table__.insert().values(
                pa_id=pa, during=_span(at(days=9), 1), kind="HOLD"
            )
        )
    await db.rollback()
    # Unassigning and deleting remove the mirror.
    await db.execute(
        visit.update().where(visit.c.id == scheduled).values(pa_id=None, status="NEEDS_COVER")
    )
    await db.execute(visit.delete().where(visit.c.id == missed))
    await db.execute(absence.delete())
    await db.commit()
    assert await _commitments(db) == []


# --- the services meet the guard --------------------------------------------------------------

SCHEDULE = f"""mutation($input: ScheduleVisitInput!) {{
  scheduleVisit(input: $input) {{ visit {{ id }} {ERRORS} }} }}"""
RECURRING = f"""mutation($input: ScheduleRecurringVisitsInput!) {{
  scheduleRecurringVisits(input: $input) {{ visits {{ id }} {ERRORS} }} }}"""
RESCHEDULE = f"""mutation($id: ID!, $input: RescheduleVisitInput!) {{
  rescheduleVisit(id: $id, input: $input) {{ visit {{ id }} {ERRORS} }} }}"""
NOT_FREE = [
    {
        "field": "paId",
        "code": "OVERLAP",
        "message": "The PA is not free then: a visit, absence or hold already takes that time.",
    }
]


async def test_booking_a_pa_who_is_away_is_refused_on_every_path(
    api: Api, db: AsyncSession
) -> None:
    """scheduleVisit, scheduleRecurringVisits, assignVisitPa and rescheduleVisit into the
    PA's absence: a typed OVERLAP on paId naming the absence, nothing written."""
    b, coordinator, _, su, pa = await _world(db)
    start = at(days=3)
    db.add(_absence_row(pa.id, start, hours=4))
    unassigned = await b.visit(su, None, start + dt.timedelta(hours=1), status="NEEDS_COVER")
    later = await b.visit(su, pa, start + dt.timedelta(hours=6))
    ids = (su.id, pa.id, unassigned.id, later.id)
    await db.commit()
    su_id, pa_id, unassigned_id, later_id = ids
    token = api.token(Role.COORDINATOR, coordinator.id)
    inside = {"startsAt": start.isoformat(), "endsAt": (start + dt.timedelta(hours=1)).isoformat()}
    person = {"serviceUserId": gid("ServiceUser", su_id), "paId": gid("PersonalAssistant", pa_id)}

    booked = await api.data(SCHEDULE, {"input": {**person, **inside}}, token=token)
    series = {
        **person,
        "firstStartsAt": start.isoformat(),
        "durationMinutes": 30,
        "weekdays": [start.astimezone(LONDON).isoweekday()],
        "until": (start + dt.timedelta(days=7)).astimezone(LONDON).date().isoformat(),
    }
    weekly = await api.data(RECURRING, {"input": series}, token=token)
    assigned = await api.data(
        ASSIGN,
        {"id": gid("Visit", unassigned_id), "paId": gid("PersonalAssistant", pa_id)},
        token=token,
    )
    moved = await api.data(RESCHEDULE, {"id": gid("Visit", later_id), "input": inside}, token=token)
    for out in (booked["scheduleVisit"], assigned["assignVisitPa"], moved["rescheduleVisit"]):
        assert out["visit"] is None
        assert _codes(out) == [("OVERLAP", "paId")]
        assert out["errors"][0]["message"].startswith("Pat Racing is away from ")
    assert not weekly["scheduleRecurringVisits"]["visits"]
    assert weekly["scheduleRecurringVisits"]["errors"] == [
        {
            "field": "paId",
            "code": "OVERLAP",
            "message": f"Pat Racing is away at these times of the series: {day_of(start)}.",
        }
    ]
    rows = (await db.execute(select(Visit.id, Visit.pa_id, Visit.status).order_by(Visit.id))).all()
    await db.commit()
    assert [tuple(r) for r in rows] == [
        (unassigned_id, None, "NEEDS_COVER"),
        (later_id, pa_id, "SCHEDULED"),
    ]
    assert await _booked_while_away(db) == 0


async def test_a_booking_racing_an_absence_meets_the_guard_as_a_typed_overlap(
    api: Api, db: AsyncSession, app: Any
) -> None:
    """assignVisitPa cannot see an absence not yet committed; the guard waits for it and
    refuses the booking, which `run_mutation` reports as OVERLAP on paId."""
    b, coordinator, _, su, pa = await _world(db)
    start = at(days=3)
    visit = await b.visit(su, None, start, status="NEEDS_COVER")
    ids = (pa.id, visit.id)
    await db.commit()
    pa_id, visit_id = ids
    engine: AsyncEngine = app.state.engine
    async with engine.connect() as blocker:
        await blocker.execute(_new_absence(pa_id, start - dt.timedelta(hours=1)))
        assigning = asyncio.create_task(
            api.data(
                ASSIGN,
                {"id": gid("Visit", visit_id), "paId": gid("PersonalAssistant", pa_id)},
                token=api.token(Role.COORDINATOR, coordinator.id),
            )
        )
        await wait_for_lock_wait(engine)
        await blocker.commit()
        out = (await assigning)["assignVisitPa"]
    assert out["visit"] is None
    assert out["errors"] == NOT_FREE
    row = (await db.execute(select(Visit.pa_id, Visit.status).where(Visit.id == visit_id))).one()
    await db.commit()
    assert tuple(row) == (None, "NEEDS_COVER")
    assert await _booked_while_away(db) == 0


def _absence_row(pa_id: int, start: dt.datetime, hours: float) -> Absence:
    return Absence(pa_id=pa_id, kind="HOLIDAY", during=_span(start, hours))


async def test_extending_cancelling_and_shortening_an_absence_order_their_writes(
    api: Api, db: AsyncSession
) -> None:
    """Extending hands the newly covered visit over before the absence grows over it;
    shortening and cancelling give visits back after the absence has shrunk: the guard
    never sees the PA's own visits in the way."""
    b, coordinator, _, su, pa = await _world(db)
    start = at(days=3)
    first = await b.visit(su, pa, start + dt.timedelta(hours=1))
    second = await b.visit(su, pa, start + dt.timedelta(hours=5))
    ids = (pa.id, first.id, second.id)
    await db.commit()
    pa_id, first_id, second_id = ids
    token = api.token(Role.COORDINATOR, coordinator.id)

    async def rows() -> dict[int, tuple[int | None, str]]:
        query = select(Visit.id, Visit.pa_id, Visit.status)
        got = {r.id: (r.pa_id, r.status) for r in await db.execute(query)}
        await db.commit()
        return got

    recorded = (
        await api.data(
            RECORD,
            {"input": _absence_input(pa, start, start + dt.timedelta(hours=3))},
            token=token,
        )
    )["recordAbsence"]
    assert recorded["errors"] == []
    absence_id = recorded["absence"]["id"]
    assert await rows() == {first_id: (None, "NEEDS_COVER"), second_id: (pa_id, "SCHEDULED")}

    until = (start + dt.timedelta(hours=8)).isoformat()
    out = await api.data(UPDATE, {"id": absence_id, "input": {"endsAt": until}}, token=token)
    assert out["updateAbsence"]["errors"] == []
    assert await rows() == {first_id: (None, "NEEDS_COVER"), second_id: (None, "NEEDS_COVER")}

    # Shortened to end before the second visit: it goes back to the PA.
    until = (start + dt.timedelta(hours=4)).isoformat()
    out = await api.data(UPDATE, {"id": absence_id, "input": {"endsAt": until}}, token=token)
    assert out["updateAbsence"]["errors"] == []
    assert await rows() == {first_id: (None, "NEEDS_COVER"), second_id: (pa_id, "SCHEDULED")}

    out = await api.data(CANCEL, {"id": absence_id}, token=token)
    assert out["cancelAbsence"]["errors"] == []
    assert await rows() == {first_id: (pa_id, "SCHEDULED"), second_id: (pa_id, "SCHEDULED")}
    assert await _booked_while_away(db) == 0
