"""Visit mutations through the API: booking, series, changes, confirmation, check-in; each
refusal with its code and field and the visit table unchanged; and the database as the
last guard against double-booking a PA."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import Range
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from care.enums import Role
from care.models import ClusterPa, Member, Visit
from tests.conftest import Api
from tests.factories import Build, at, gid

LONDON = ZoneInfo("Europe/London")

FIELDS = """id startsAt endsAt status tasks seriesId confirmedAt checkedInAt
            pa { id name } serviceUser { id name } confirmedBy { id }"""
ERRORS = "errors { field message code }"

SCHEDULE = f"""mutation($input: ScheduleVisitInput!) {{
  scheduleVisit(input: $input) {{ visit {{ {FIELDS} }} {ERRORS} }} }}"""
RECURRING = f"""mutation($input: ScheduleRecurringVisitsInput!) {{
  scheduleRecurringVisits(input: $input) {{ seriesId visits {{ {FIELDS} }} {ERRORS} }} }}"""
RESCHEDULE = f"""mutation($id: ID!, $input: RescheduleVisitInput!) {{
  rescheduleVisit(id: $id, input: $input) {{ visit {{ {FIELDS} }} {ERRORS} }} }}"""
CANCEL = f"""mutation($id: ID!, $reason: String) {{
  cancelVisit(id: $id, reason: $reason) {{ visit {{ {FIELDS} }} {ERRORS} }} }}"""
ASSIGN = f"""mutation($id: ID!, $paId: ID!) {{
  assignVisitPa(id: $id, paId: $paId) {{ visit {{ {FIELDS} }} {ERRORS} }} }}"""
CONFIRM = f"""mutation($id: ID!, $input: ConfirmVisitInput) {{
  confirmVisit(id: $id, input: $input) {{ visit {{ {FIELDS} }} {ERRORS} }} }}"""
CHECK_IN = f"""mutation($id: ID!) {{
  checkInVisit(id: $id) {{ visit {{ {FIELDS} }} {ERRORS} }} }}"""
NODE = f"query($id: ID!) {{ node(id: $id) {{ ... on Visit {{ {FIELDS} }} }} }}"
VISITS_OF_PA = f"""query($pa: ID!) {{
  visits(first: 100, paId: $pa) {{ totalCount nodes {{ {FIELDS} }} }} }}"""


@dataclass
class World:
    coordinator: Member
    other_coordinator: Member
    su: Member
    su2: Member
    other_su: Member
    carer: Member
    pa: Member
    pa2: Member
    pool_pa: Member
    outsider_pa: Member
    cluster: Any


@pytest.fixture
async def w(db: AsyncSession) -> World:
    b = Build(db)
    await b.las()
    await b.coop()
    coordinator = await b.worker("Cora Ordinator")
    other_coordinator = await b.worker("Otto Ordinator")
    cluster = await b.cluster("Finchley", support_worker=coordinator)
    other = await b.cluster("Barnet East", support_worker=other_coordinator)
    su = await b.service_user("Ada User", cluster=cluster)
    su2 = await b.service_user("Ben User", cluster=cluster, email="ben@example.org")
    other_su = await b.service_user("Bob Other", cluster=other, email="bob@example.org")
    carer = await b.carer(su)
    pa = await b.pa("Pat Near", cluster=cluster)
    pa2 = await b.pa("Pam Team", cluster=cluster)
    pool_pa = await b.pa("Polly Pool")
    outsider_pa = await b.pa("Sid Stranger", cluster=other)
    await b.pool("North pool", pas=[pool_pa], clusters=[cluster])
    await db.commit()
    return World(
        coordinator,
        other_coordinator,
        su,
        su2,
        other_su,
        carer,
        pa,
        pa2,
        pool_pa,
        outsider_pa,
        cluster,
    )


# --- helpers -------------------------------------------------------------------------------


def coord(api: Api, w: World) -> str:
    return api.token(Role.COORDINATOR, w.coordinator.id)


def iso(value: dt.datetime) -> str:
    return value.isoformat()


def parse(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value)


def booking(
    su: Member,
    start: dt.datetime,
    minutes: int = 60,
    pa: Member | None = None,
    tasks: list[str] | None = None,
) -> dict[str, Any]:
    data: dict[str, Any] = {
        "serviceUserId": gid("ServiceUser", su.id),
        "startsAt": iso(start),
        "endsAt": iso(start + dt.timedelta(minutes=minutes)),
        "tasks": tasks if tasks is not None else ["breakfast"],
    }
    if pa is not None:
        data["paId"] = gid("PersonalAssistant", pa.id)
    return data


async def schedule(api: Api, token: str, data: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = (await api.data(SCHEDULE, {"input": data}, token=token))[
        "scheduleVisit"
    ]
    return result


async def visit_rows(db: AsyncSession) -> list[tuple[Any, ...]]:
    """Every visit as plain values (never the session's cached objects)."""
    result = await db.execute(
        select(
            Visit.id,
            Visit.service_user_id,
            Visit.pa_id,
            func.lower(Visit.during),
            func.upper(Visit.during),
            Visit.status,
            Visit.series_id,
            Visit.tasks,
            Visit.confirmed_by_id,
            Visit.confirmed_at,
            Visit.checked_in_at,
        ).order_by(Visit.id)
    )
    rows = [tuple(r) for r in result.all()]
    await db.commit()  # end the read so the next one sees later commits
    return rows


def only_error(payload: dict[str, Any]) -> dict[str, Any]:
    assert payload.get("visit") is None
    assert len(payload["errors"]) == 1, payload["errors"]
    error: dict[str, Any] = payload["errors"][0]
    return error


def visit_id(payload: dict[str, Any]) -> int:
    """The database id behind the payload's global visit id."""
    type_name, pk = base64.b64decode(payload["visit"]["id"]).decode().split(":")
    assert type_name == "Visit"
    return int(pk)


# --- booking -------------------------------------------------------------------------------


async def test_schedule_visit_with_team_pa_reads_back(api: Api, db: AsyncSession, w: World) -> None:
    start = at(days=2)
    out = await schedule(
        api, coord(api, w), booking(w.su, start, 90, w.pa, ["breakfast", "  ", "meds"])
    )
    assert out["errors"] == []
    visit = out["visit"]
    assert visit["status"] == "SCHEDULED"
    assert visit["pa"]["name"] == "Pat Near"
    assert visit["serviceUser"]["name"] == "Ada User"
    assert visit["tasks"] == ["breakfast", "meds"]
    assert parse(visit["startsAt"]) == start
    assert parse(visit["endsAt"]) == start + dt.timedelta(minutes=90)

    node = (await api.data(NODE, {"id": visit["id"]}, token=coord(api, w)))["node"]
    assert node == visit
    listed = (
        await api.data(
            VISITS_OF_PA,
            {"pa": gid("PersonalAssistant", w.pa.id)},
            token=api.token(Role.PA, w.pa.id),
        )
    )["visits"]
    assert listed["totalCount"] == 1
    assert listed["nodes"][0]["id"] == visit["id"]
    rows = await visit_rows(db)
    assert [(r[1], r[2], r[5]) for r in rows] == [(w.su.id, w.pa.id, "SCHEDULED")]


async def test_schedule_without_pa_needs_cover(api: Api, db: AsyncSession, w: World) -> None:
    out = await schedule(api, api.token(Role.ADMIN), booking(w.su, at(days=3)))
    assert out["errors"] == []
    assert out["visit"]["status"] == "NEEDS_COVER"
    assert out["visit"]["pa"] is None
    rows = await visit_rows(db)
    assert [(r[2], r[5]) for r in rows] == [(None, "NEEDS_COVER")]


async def test_pa_from_a_pool_serving_the_cluster_may_be_booked(
    api: Api, db: AsyncSession, w: World
) -> None:
    out = await schedule(api, coord(api, w), booking(w.su, at(days=2), pa=w.pool_pa))
    assert out["errors"] == []
    assert out["visit"]["pa"]["name"] == "Polly Pool"


async def test_naive_times_are_uk_wall_clock(api: Api, db: AsyncSession, w: World) -> None:
    day = (dt.datetime.now(LONDON) + dt.timedelta(days=5)).date()
    data = booking(w.su, at(days=5), pa=w.pa)
    data["startsAt"] = f"{day.isoformat()}T09:00:00"
    data["endsAt"] = f"{day.isoformat()}T10:00:00"
    out = await schedule(api, coord(api, w), data)
    assert out["errors"] == []
    local = parse(out["visit"]["startsAt"]).astimezone(LONDON)
    assert (local.date(), local.hour, local.minute) == (day, 9, 0)


BAD_BOOKINGS = [
    # (name, change to a valid booking, code, field)
    ("end_before_start", {"endsAt": -30}, "INVALID_RANGE", "endsAt"),
    ("end_equals_start", {"endsAt": 0}, "INVALID_RANGE", "endsAt"),
    ("longer_than_a_day", {"endsAt": 24 * 60 + 1}, "INVALID_RANGE", "endsAt"),
    (
        "start_in_the_past",
        {"startsAt": -3 * 24 * 60, "endsAt": -3 * 24 * 60 + 60},
        "INVALID_RANGE",
        "startsAt",
    ),
    ("unknown_pa", {"paId": gid("PersonalAssistant", 999999)}, "NOT_FOUND", "paId"),
    ("pa_id_of_another_type", {"paId": gid("Cluster", 1)}, "NOT_FOUND", "paId"),
    (
        "unknown_service_user",
        {"serviceUserId": gid("ServiceUser", 999999)},
        "NOT_FOUND",
        "serviceUserId",
    ),
]


@pytest.mark.parametrize(
    ("name", "change", "code", "field"), BAD_BOOKINGS, ids=[b[0] for b in BAD_BOOKINGS]
)
async def test_bad_booking_is_refused_and_writes_nothing(
    api: Api, db: AsyncSession, w: World, name: str, change: dict[str, Any], code: str, field: str
) -> None:
    start = at(days=2)
    await schedule(api, coord(api, w), booking(w.su2, at(days=9), pa=w.pa))  # unrelated
    before = await visit_rows(db)
    data = booking(w.su, start, pa=w.pa)
    for key, value in change.items():
        # Minutes relative to the valid start, or a replacement value.
        data[key] = iso(start + dt.timedelta(minutes=value)) if isinstance(value, int) else value
    out = await schedule(api, coord(api, w), data)
    error = only_error(out)
    assert (error["code"], error["field"]) == (code, field), error
    assert await visit_rows(db) == before


async def test_a_member_who_is_not_a_pa_is_not_found(api: Api, db: AsyncSession, w: World) -> None:
    data = booking(w.su, at(days=2))
    data["paId"] = gid("PersonalAssistant", w.coordinator.id)
    error = only_error(await schedule(api, coord(api, w), data))
    assert (error["code"], error["field"]) == ("NOT_FOUND", "paId")
    assert await visit_rows(db) == []


async def test_pa_outside_team_and_pools_is_invalid(api: Api, db: AsyncSession, w: World) -> None:
    error = only_error(
        await schedule(api, coord(api, w), booking(w.su, at(days=2), pa=w.outsider_pa))
    )
    assert (error["code"], error["field"]) == ("INVALID", "paId")
    assert "Sid Stranger" in error["message"] and "cover" in error["message"]
    assert await visit_rows(db) == []


async def test_several_problems_are_reported_together(api: Api, db: AsyncSession, w: World) -> None:
    data = booking(w.su, at(days=-1), pa=w.outsider_pa)
    data["endsAt"] = iso(at(days=-2))
    out = await schedule(api, coord(api, w), data)
    assert {(e["code"], e["field"]) for e in out["errors"]} == {
        ("INVALID_RANGE", "endsAt"),
        ("INVALID_RANGE", "startsAt"),
        ("INVALID", "paId"),
    }
    assert await visit_rows(db) == []


async def test_double_booking_a_pa_is_refused(api: Api, db: AsyncSession, w: World) -> None:
    start = at(days=2)
    first = await schedule(api, coord(api, w), booking(w.su, start, 60, w.pa))
    assert first["errors"] == []
    before = await visit_rows(db)
    second = await schedule(
        api, coord(api, w), booking(w.su2, start + dt.timedelta(minutes=30), 60, w.pa)
    )
    error = only_error(second)
    assert (error["code"], error["field"]) == ("OVERLAP", "paId")
    local = start.astimezone(LONDON)
    assert "Pat Near" in error["message"] and f"{local:%H:%M}" in error["message"]
    assert await visit_rows(db) == before


async def test_back_to_back_visits_do_not_clash(api: Api, db: AsyncSession, w: World) -> None:
    start = at(days=2)
    assert (await schedule(api, coord(api, w), booking(w.su, start, 60, w.pa)))["errors"] == []
    nxt = await schedule(
        api, coord(api, w), booking(w.su2, start + dt.timedelta(minutes=60), 60, w.pa)
    )
    assert nxt["errors"] == []


async def test_service_user_cannot_have_overlapping_visits(
    api: Api, db: AsyncSession, w: World
) -> None:
    start = at(days=2)
    assert (await schedule(api, coord(api, w), booking(w.su, start)))["errors"] == []  # cover
    before = await visit_rows(db)
    error = only_error(
        await schedule(
            api, coord(api, w), booking(w.su, start + dt.timedelta(minutes=15), 30, w.pa2)
        )
    )
    assert (error["code"], error["field"]) == ("OVERLAP", "startsAt")
    assert await visit_rows(db) == before


async def test_database_rejects_an_overlap_written_directly(db: AsyncSession, w: World) -> None:
    """The exclusion constraint holds whatever the application does."""
    b = Build(db)
    start = at(days=2)
    await b.visit(w.su, w.pa, start, 60)
    await b.visit(w.su2, w.pa, start, 60, status="CANCELLED")  # inactive: allowed
    await b.visit(w.su2, w.pa, start - dt.timedelta(minutes=60), 60)  # touching: allowed
    await db.commit()
    db.add(
        Visit(
            service_user_id=w.su2.id,
            pa_id=w.pa.id,
            status="COMPLETED",
            during=Range(
                start + dt.timedelta(minutes=59), start + dt.timedelta(minutes=120), bounds="[)"
            ),
        )
    )
    with pytest.raises(IntegrityError) as caught:
        await db.flush()
    assert "visit_pa_no_overlap" in str(caught.value)
    await db.rollback()
    assert len(await visit_rows(db)) == 3


async def test_concurrent_bookings_of_one_pa_leave_exactly_one(
    api: Api, db: AsyncSession, w: World
) -> None:
    b = Build(db)
    people = [await b.service_user(f"Person {i}", cluster=w.cluster) for i in range(10)]
    await db.commit()
    start = at(days=4)
    token = coord(api, w)
    payloads = await asyncio.gather(
        *(
            api.data(
                SCHEDULE,
                {"input": booking(p, start + dt.timedelta(minutes=5 * i), 60, w.pa)},
                token=token,
            )
            for i, p in enumerate(people)
        )
    )
    results = [p["scheduleVisit"] for p in payloads]
    booked = [r for r in results if r["visit"] is not None]
    refused = [r for r in results if r["visit"] is None]
    assert len(booked) == 1
    assert len(refused) == 9
    assert all(
        [(e["code"], e["field"]) for e in r["errors"]] == [("OVERLAP", "paId")] for r in refused
    )
    active = await db.scalar(
        select(func.count())
        .select_from(Visit)
        .where(
            Visit.pa_id == w.pa.id,
            Visit.status.in_(["SCHEDULED", "COMPLETED"]),
            Visit.during.op("&&")(func.tstzrange(start, start + dt.timedelta(minutes=105))),
        )
    )
    assert active == 1
    assert len(await visit_rows(db)) == 1


async def test_concurrent_bookings_for_one_person_leave_exactly_one(
    api: Api, db: AsyncSession, w: World
) -> None:
    """No constraint covers a person's own overlaps: the service serialises their bookings."""
    start = at(days=4)
    token = coord(api, w)
    payloads = await asyncio.gather(
        *(
            api.data(
                SCHEDULE,
                {"input": booking(w.su, start + dt.timedelta(minutes=5 * i), 60)},
                token=token,
            )
            for i in range(6)
        )
    )
    results = [p["scheduleVisit"] for p in payloads]
    assert sum(r["visit"] is not None for r in results) == 1
    assert all(
        [(e["code"], e["field"]) for e in r["errors"]] == [("OVERLAP", "startsAt")]
        for r in results
        if r["visit"] is None
    )
    assert len(await visit_rows(db)) == 1


# --- who may book --------------------------------------------------------------------------


async def test_anonymous_is_unauthenticated_and_analysts_forbidden(
    api: Api, db: AsyncSession, w: World
) -> None:
    variables = {"input": booking(w.su, at(days=2), pa=w.pa)}
    assert await api.refused(SCHEDULE, variables) == "UNAUTHENTICATED"
    analyst = api.token(Role.LA_ANALYST, la="E09000003")
    assert await api.refused(SCHEDULE, variables, token=analyst) == "FORBIDDEN"
    assert await visit_rows(db) == []


async def test_coordinator_of_another_cluster_gets_not_found(
    api: Api, db: AsyncSession, w: World
) -> None:
    token = api.token(Role.COORDINATOR, w.other_coordinator.id)
    error = only_error(await schedule(api, token, booking(w.su, at(days=2), pa=w.pa)))
    assert (error["code"], error["field"]) == ("NOT_FOUND", "serviceUserId")
    assert await visit_rows(db) == []


@pytest.mark.parametrize("role", ["SERVICE_USER", "CARER", "PA"])
async def test_other_roles_may_not_book(api: Api, db: AsyncSession, w: World, role: str) -> None:
    member = {"SERVICE_USER": w.su, "CARER": w.carer, "PA": w.pa}[role]
    variables = {"input": booking(w.su, at(days=2), pa=w.pa)}
    refused = await api.refused(SCHEDULE, variables, token=api.token(Role(role), member.id))
    assert refused == "FORBIDDEN"
    assert await visit_rows(db) == []


async def test_other_clusters_visits_are_not_found_even_with_a_team_pa(
    api: Api, db: AsyncSession, w: World
) -> None:
    b = Build(db)
    # A coordinator sees (and so changes) only their own clusters' visits: one whose PA is on
    # their team but whose person is elsewhere is NOT_FOUND, as for an unknown id.
    visit = await b.visit(w.other_su, w.outsider_pa, at(days=2))
    mine = await b.visit(w.su, w.pa, at(days=3))
    db.add(ClusterPa(cluster_id=w.cluster.id, pa_id=w.outsider_pa.id))
    await db.commit()
    before = await visit_rows(db)
    other = api.token(Role.COORDINATOR, w.other_coordinator.id)
    hidden = only_error(
        (await api.data(CANCEL, {"id": gid("Visit", mine.id)}, token=other))["cancelVisit"]
    )
    assert (hidden["code"], hidden["field"]) == ("NOT_FOUND", "id")
    seen = only_error(
        (await api.data(CANCEL, {"id": gid("Visit", visit.id)}, token=coord(api, w)))["cancelVisit"]
    )
    assert (seen["code"], seen["field"]) == ("NOT_FOUND", "id")
    unknown = only_error(
        (await api.data(CANCEL, {"id": gid("Visit", 999999)}, token=coord(api, w)))["cancelVisit"]
    )
    assert (unknown["code"], unknown["field"]) == ("NOT_FOUND", "id")
    assert await visit_rows(db) == before


# --- series --------------------------------------------------------------------------------


def next_clock_change() -> dt.date:
    """A day (a Sunday) on which UK clocks change, at least 15 days ahead."""
    day = (dt.datetime.now(LONDON) + dt.timedelta(days=15)).date()
    offset = dt.datetime.combine(day, dt.time(12), LONDON).utcoffset()
    while dt.datetime.combine(day, dt.time(12), LONDON).utcoffset() == offset:
        day += dt.timedelta(days=1)
    return day


def day_text(value: dt.datetime) -> str:
    return f"{value:%a} {value.day} {value:%b %Y}"


def series(
    su: Member,
    first: dt.datetime | str,
    weekdays: list[int],
    until: dt.date,
    pa: Member | None = None,
    minutes: int = 60,
) -> dict[str, Any]:
    data: dict[str, Any] = {
        "serviceUserId": gid("ServiceUser", su.id),
        "firstStartsAt": first if isinstance(first, str) else iso(first),
        "durationMinutes": minutes,
        "weekdays": weekdays,
        "until": until.isoformat(),
        "tasks": ["lunch"],
    }
    if pa is not None:
        data["paId"] = gid("PersonalAssistant", pa.id)
    return data


async def recurring(api: Api, token: str, data: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = (await api.data(RECURRING, {"input": data}, token=token))[
        "scheduleRecurringVisits"
    ]
    return result


async def test_series_keeps_uk_wall_clock_time_across_a_clock_change(
    api: Api, db: AsyncSession, w: World
) -> None:
    change = next_clock_change()  # a Sunday
    first_day = change - dt.timedelta(days=13)  # a Monday, two weeks before
    first = dt.datetime.combine(first_day, dt.time(9, 30), LONDON)
    until = change + dt.timedelta(days=18)  # a Thursday
    out = await recurring(api, coord(api, w), series(w.su, first, [1, 4], until, w.pa))
    assert out["errors"] == []
    visits = out["visits"]
    assert len(visits) == 10  # Mondays and Thursdays over five weeks
    local = [parse(v["startsAt"]).astimezone(LONDON) for v in visits]
    assert all((t.hour, t.minute) == (9, 30) for t in local)
    assert {t.isoweekday() for t in local} == {1, 4}
    assert len({t.utcoffset() for t in local}) == 2  # both sides of the change
    assert all(parse(v["endsAt"]) - parse(v["startsAt"]) == dt.timedelta(hours=1) for v in visits)
    assert len({v["seriesId"] for v in visits}) == 1 and visits[0]["seriesId"] == out["seriesId"]
    assert all(v["status"] == "SCHEDULED" and v["tasks"] == ["lunch"] for v in visits)
    rows = await visit_rows(db)
    assert len(rows) == 10 and {r[6] for r in rows} == {out["seriesId"]}


async def test_series_is_all_or_nothing(api: Api, db: AsyncSession, w: World) -> None:
    b = Build(db)
    first = dt.datetime.combine(
        (dt.datetime.now(LONDON) + dt.timedelta(days=2)).date(), dt.time(10), LONDON
    )
    third = first + dt.timedelta(days=14)
    await b.visit(w.su2, w.pa, third.astimezone(dt.UTC) + dt.timedelta(minutes=30), 60)
    await b.visit(
        w.su, None, (first + dt.timedelta(days=21)).astimezone(dt.UTC), 30, status="NEEDS_COVER"
    )
    await db.commit()
    before = await visit_rows(db)
    out = await recurring(
        api,
        coord(api, w),
        series(w.su, first, [first.isoweekday()], (first + dt.timedelta(days=28)).date(), w.pa),
    )
    assert out["visits"] == [] and out["seriesId"] is None
    errors = {e["field"]: e for e in out["errors"]}
    assert {e["code"] for e in out["errors"]} == {"OVERLAP"}
    fourth = first + dt.timedelta(days=21)
    assert errors["paId"]["message"] == (
        f"Pat Near already has visits at these times of the series: {day_text(third)}."
    )
    assert errors["firstStartsAt"]["message"] == (
        f"This person already has visits at these times of the series: {day_text(fourth)}."
    )
    assert await visit_rows(db) == before


BAD_SERIES = [
    ("no_weekdays", {"weekdays": []}, "INVALID", "weekdays"),
    ("weekday_eight", {"weekdays": [8]}, "INVALID", "weekdays"),
    ("first_not_on_a_weekday", {"weekdays": "other"}, "INVALID", "firstStartsAt"),
    ("zero_minutes", {"durationMinutes": 0}, "INVALID_RANGE", "durationMinutes"),
    ("over_a_day", {"durationMinutes": 24 * 60 + 1}, "INVALID_RANGE", "durationMinutes"),
    ("first_in_the_past", {"firstStartsAt": -3}, "INVALID_RANGE", "firstStartsAt"),
    ("until_before_first", {"until": -1}, "INVALID_RANGE", "until"),
    ("over_26_weeks", {"until": 26 * 7}, "INVALID", "until"),
]


@pytest.mark.parametrize(
    ("name", "change", "code", "field"), BAD_SERIES, ids=[b[0] for b in BAD_SERIES]
)
async def test_bad_series_is_refused_and_writes_nothing(
    api: Api, db: AsyncSession, w: World, name: str, change: dict[str, Any], code: str, field: str
) -> None:
    first = at(days=2)
    first_day = first.astimezone(LONDON).date()
    data = series(w.su, first, [first_day.isoweekday()], first_day + dt.timedelta(days=20), w.pa)
    for key, value in change.items():
        if key == "weekdays" and value == "other":
            data[key] = [first_day.isoweekday() % 7 + 1]
        elif key == "firstStartsAt":
            data[key] = iso(at(days=value))
        elif key == "until":
            data[key] = (first_day + dt.timedelta(days=value)).isoformat()
        else:
            data[key] = value
    out = await recurring(api, coord(api, w), data)
    assert out["visits"] == []
    codes = {(e["code"], e["field"]) for e in out["errors"]}
    assert (code, field) in codes, out["errors"]
    assert await visit_rows(db) == []


async def test_series_with_an_outside_pa_is_invalid(api: Api, db: AsyncSession, w: World) -> None:
    first = at(days=2)
    day = first.astimezone(LONDON).date()
    out = await recurring(
        api,
        coord(api, w),
        series(w.su, first, [day.isoweekday()], day + dt.timedelta(days=14), w.outsider_pa),
    )
    assert [(e["code"], e["field"]) for e in out["errors"]] == [("INVALID", "paId")]
    assert await visit_rows(db) == []


async def test_series_without_pa_needs_cover(api: Api, db: AsyncSession, w: World) -> None:
    first = at(days=1)
    day = first.astimezone(LONDON).date()
    out = await recurring(
        api, coord(api, w), series(w.su, first, [day.isoweekday()], day + dt.timedelta(days=7 * 25))
    )
    assert out["errors"] == []
    assert len(out["visits"]) == 26
    assert {v["status"] for v in out["visits"]} == {"NEEDS_COVER"}


# --- changing visits -----------------------------------------------------------------------


async def test_cancel_frees_the_pas_time(api: Api, db: AsyncSession, w: World) -> None:
    start = at(days=2)
    first = await schedule(api, coord(api, w), booking(w.su, start, 60, w.pa))
    blocked = await schedule(api, coord(api, w), booking(w.su2, start, 60, w.pa))
    assert only_error(blocked)["code"] == "OVERLAP"
    cancelled = (
        await api.data(
            CANCEL, {"id": first["visit"]["id"], "reason": "In hospital"}, token=coord(api, w)
        )
    )["cancelVisit"]
    assert cancelled["errors"] == []
    assert cancelled["visit"]["status"] == "CANCELLED"
    reason = await api.data(
        "query($id: ID!) { node(id: $id) { ... on Visit { cancelReason } } }",
        {"id": first["visit"]["id"]},
        token=coord(api, w),
    )
    assert reason["node"] == {"cancelReason": "In hospital"}
    again = await schedule(api, coord(api, w), booking(w.su2, start, 60, w.pa))
    assert again["errors"] == []
    rows = await visit_rows(db)
    assert sorted(r[5] for r in rows) == ["CANCELLED", "SCHEDULED"]


@pytest.mark.parametrize("status", ["CANCELLED", "COMPLETED", "MISSED"])
async def test_finished_visits_cannot_be_cancelled_or_rescheduled(
    api: Api, db: AsyncSession, w: World, status: str
) -> None:
    visit = await Build(db).visit(w.su, w.pa, at(days=-1), status=status)
    await db.commit()
    before = await visit_rows(db)
    out = (await api.data(CANCEL, {"id": gid("Visit", visit.id)}, token=coord(api, w)))[
        "cancelVisit"
    ]
    error = only_error(out)
    assert (error["code"], error["field"]) == ("INVALID", "id")
    moved = (
        await api.data(
            RESCHEDULE,
            {
                "id": gid("Visit", visit.id),
                "input": {"startsAt": iso(at(days=2)), "endsAt": iso(at(days=2, hours=1))},
            },
            token=coord(api, w),
        )
    )["rescheduleVisit"]
    error = only_error(moved)
    assert (error["code"], error["field"]) == ("INVALID", "id")
    assert error["message"] == f"A {status.lower()} visit cannot be rescheduled."
    assert await visit_rows(db) == before


async def test_overlong_cancel_reason_is_invalid(api: Api, db: AsyncSession, w: World) -> None:
    visit = await Build(db).visit(w.su, w.pa, at(days=2))
    await db.commit()
    before = await visit_rows(db)
    out = (
        await api.data(
            CANCEL, {"id": gid("Visit", visit.id), "reason": "x" * 501}, token=coord(api, w)
        )
    )["cancelVisit"]
    assert (only_error(out)["code"], only_error(out)["field"]) == ("INVALID", "reason")
    assert await visit_rows(db) == before


async def test_reschedule_moves_a_visit(api: Api, db: AsyncSession, w: World) -> None:
    first = await schedule(api, coord(api, w), booking(w.su, at(days=2), 60, w.pa))
    new_start = at(days=2, hours=1)
    out = (
        await api.data(
            RESCHEDULE,
            {
                "id": first["visit"]["id"],
                # Overlaps its own old time: the visit does not clash with itself.
                "input": {
                    "startsAt": iso(new_start - dt.timedelta(minutes=30)),
                    "endsAt": iso(new_start + dt.timedelta(minutes=30)),
                },
            },
            token=coord(api, w),
        )
    )["rescheduleVisit"]
    assert out["errors"] == []
    node = (await api.data(NODE, {"id": first["visit"]["id"]}, token=coord(api, w)))["node"]
    assert parse(node["startsAt"]) == new_start - dt.timedelta(minutes=30)
    assert node["status"] == "SCHEDULED"


async def test_reschedule_refuses_a_clash_and_a_bad_range(
    api: Api, db: AsyncSession, w: World
) -> None:
    start = at(days=2)
    a = await schedule(api, coord(api, w), booking(w.su, start, 60, w.pa))
    b = await schedule(api, coord(api, w), booking(w.su2, start + dt.timedelta(hours=3), 60, w.pa))
    before = await visit_rows(db)
    clash = (
        await api.data(
            RESCHEDULE,
            {
                "id": b["visit"]["id"],
                "input": {
                    "startsAt": iso(start + dt.timedelta(minutes=30)),
                    "endsAt": iso(start + dt.timedelta(minutes=90)),
                },
            },
            token=coord(api, w),
        )
    )["rescheduleVisit"]
    assert (only_error(clash)["code"], only_error(clash)["field"]) == ("OVERLAP", "paId")
    backwards = (
        await api.data(
            RESCHEDULE,
            {
                "id": a["visit"]["id"],
                "input": {"startsAt": iso(start), "endsAt": iso(start - dt.timedelta(minutes=1))},
            },
            token=coord(api, w),
        )
    )["rescheduleVisit"]
    assert (only_error(backwards)["code"], only_error(backwards)["field"]) == (
        "INVALID_RANGE",
        "endsAt",
    )
    assert await visit_rows(db) == before


async def test_assign_pa_to_a_visit_needing_cover(api: Api, db: AsyncSession, w: World) -> None:
    start = at(days=2)
    cover = await schedule(api, coord(api, w), booking(w.su, start))
    busy = await schedule(api, coord(api, w), booking(w.su2, start, 60, w.pa))
    assert busy["errors"] == []
    before = await visit_rows(db)
    clash = (
        await api.data(
            ASSIGN,
            {"id": cover["visit"]["id"], "paId": gid("PersonalAssistant", w.pa.id)},
            token=coord(api, w),
        )
    )["assignVisitPa"]
    assert (only_error(clash)["code"], only_error(clash)["field"]) == ("OVERLAP", "paId")
    outside = (
        await api.data(
            ASSIGN,
            {"id": cover["visit"]["id"], "paId": gid("PersonalAssistant", w.outsider_pa.id)},
            token=coord(api, w),
        )
    )["assignVisitPa"]
    assert (only_error(outside)["code"], only_error(outside)["field"]) == ("INVALID", "paId")
    assert await visit_rows(db) == before
    ok = (
        await api.data(
            ASSIGN,
            {"id": cover["visit"]["id"], "paId": gid("PersonalAssistant", w.pool_pa.id)},
            token=coord(api, w),
        )
    )["assignVisitPa"]
    assert ok["errors"] == []
    assert ok["visit"]["status"] == "SCHEDULED"
    assert ok["visit"]["pa"]["name"] == "Polly Pool"
    rows = {r[0]: r for r in await visit_rows(db)}
    assert rows[visit_id(cover)][2] == w.pool_pa.id


# --- confirmation and check-in -------------------------------------------------------------


async def test_service_user_confirms_a_visit_once(api: Api, db: AsyncSession, w: World) -> None:
    visit = await Build(db).visit(w.su, w.pa, at(hours=-2))
    await db.commit()
    token = api.token(Role.SERVICE_USER, w.su.id)
    out = (await api.data(CONFIRM, {"id": gid("Visit", visit.id)}, token=token))["confirmVisit"]
    assert out["errors"] == []
    assert out["visit"]["status"] == "COMPLETED"
    assert out["visit"]["confirmedBy"]["id"] == gid("ServiceUser", w.su.id)
    assert out["visit"]["confirmedAt"] is not None
    before = await visit_rows(db)
    assert before[0][8] == w.su.id
    twice = (await api.data(CONFIRM, {"id": gid("Visit", visit.id)}, token=token))["confirmVisit"]
    assert (only_error(twice)["code"], only_error(twice)["field"]) == ("INVALID", "id")
    assert await visit_rows(db) == before


async def test_carer_reports_a_missed_visit(api: Api, db: AsyncSession, w: World) -> None:
    visit = await Build(db).visit(w.su, w.pa, at(hours=-2))
    await db.commit()
    out = (
        await api.data(
            CONFIRM,
            {"id": gid("Visit", visit.id), "input": {"tookPlace": False}},
            token=api.token(Role.CARER, w.carer.id),
        )
    )["confirmVisit"]
    assert out["errors"] == []
    assert out["visit"]["status"] == "MISSED"
    rows = await visit_rows(db)
    assert (rows[0][5], rows[0][8]) == ("MISSED", w.carer.id)
    assert rows[0][9] is not None


@pytest.mark.parametrize("role", ["PA", "COORDINATOR", "ADMIN"])
async def test_staff_may_not_confirm(api: Api, db: AsyncSession, w: World, role: str) -> None:
    visit = await Build(db).visit(w.su, w.pa, at(hours=-2))
    await db.commit()
    before = await visit_rows(db)
    member = {"PA": w.pa.id, "COORDINATOR": w.coordinator.id, "ADMIN": None}[role]
    token = api.token(Role(role), member)
    assert await api.refused(CONFIRM, {"id": gid("Visit", visit.id)}, token=token) == "FORBIDDEN"
    assert await visit_rows(db) == before


async def test_stranger_service_user_gets_not_found(api: Api, db: AsyncSession, w: World) -> None:
    visit = await Build(db).visit(w.su, w.pa, at(hours=-2))
    await db.commit()
    before = await visit_rows(db)
    out = (
        await api.data(
            CONFIRM,
            {"id": gid("Visit", visit.id)},
            token=api.token(Role.SERVICE_USER, w.other_su.id),
        )
    )["confirmVisit"]
    unknown = (
        await api.data(
            CONFIRM, {"id": gid("Visit", 999999)}, token=api.token(Role.SERVICE_USER, w.other_su.id)
        )
    )["confirmVisit"]
    assert only_error(out) == only_error(unknown)
    assert (only_error(out)["code"], only_error(out)["field"]) == ("NOT_FOUND", "id")
    assert await visit_rows(db) == before


async def test_visit_not_yet_started_cannot_be_confirmed(
    api: Api, db: AsyncSession, w: World
) -> None:
    visit = await Build(db).visit(w.su, w.pa, at(hours=2))
    await db.commit()
    out = (
        await api.data(
            CONFIRM, {"id": gid("Visit", visit.id)}, token=api.token(Role.SERVICE_USER, w.su.id)
        )
    )["confirmVisit"]
    assert (only_error(out)["code"], only_error(out)["field"]) == ("INVALID", "id")
    assert (await visit_rows(db))[0][5] == "SCHEDULED"


async def test_pa_checks_in_once_within_the_window(api: Api, db: AsyncSession, w: World) -> None:
    b = Build(db)
    soon = await b.visit(w.su, w.pa, at(hours=0.5))
    later = await b.visit(w.su2, w.pa, at(hours=3))
    await db.commit()
    token = api.token(Role.PA, w.pa.id)
    out = (await api.data(CHECK_IN, {"id": gid("Visit", soon.id)}, token=token))["checkInVisit"]
    assert out["errors"] == []
    assert out["visit"]["checkedInAt"] is not None
    before = await visit_rows(db)
    again = (await api.data(CHECK_IN, {"id": gid("Visit", soon.id)}, token=token))["checkInVisit"]
    assert (only_error(again)["code"], only_error(again)["field"]) == ("INVALID", "id")
    early = (await api.data(CHECK_IN, {"id": gid("Visit", later.id)}, token=token))["checkInVisit"]
    assert (only_error(early)["code"], only_error(early)["field"]) == ("INVALID", "id")
    other_pa = (
        await api.data(CHECK_IN, {"id": gid("Visit", later.id)}, token=api.token(Role.PA, w.pa2.id))
    )["checkInVisit"]
    assert only_error(other_pa)["code"] == "NOT_FOUND"
    variables = {"id": gid("Visit", later.id)}
    assert await api.refused(CHECK_IN, variables, token=coord(api, w)) == "FORBIDDEN"
    assert await visit_rows(db) == before
