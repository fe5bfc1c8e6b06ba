"""Availability mutations through the API: one-off windows, weekly patterns expanded into
windows (Europe/London wall-clock, DST-correct), and the daily top-up of the expansion."""

from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select, text
from sqlalchemy.dialects.postgresql import Range
from sqlalchemy.ext.asyncio import AsyncSession

from care.enums import Role
from care.models import AvailabilityWindow, Member, WeeklyAvailability
from care.services.availability import HORIZON, extend_weekly_availability
from tests.conftest import Api
from tests.factories import BARNET, Build, at, gid

LONDON = ZoneInfo("Europe/London")
UTC = dt.UTC
ERRORS = "errors { field message code }"
WINDOW = "window { id startsAt endsAt fromWeeklyPattern personalAssistant { name } }"

ADD = f"""mutation($input: AddAvailabilityWindowInput!) {{
  addAvailabilityWindow(input: $input) {{ {WINDOW} removedId {ERRORS} }} }}"""
REMOVE = f"""mutation($id: ID!) {{
  removeAvailabilityWindow(id: $id) {{ window {{ id }} removedId {ERRORS} }} }}"""
SET = f"""mutation($input: SetWeeklyAvailabilityInput!) {{
  setWeeklyAvailability(input: $input) {{
    slots {{ weekday startTime endTime }} validFrom validUntil windowsCreated windowsSkipped
    {ERRORS} }} }}"""
READ = """query($pa: ID!) { availability(paId: $pa, first: 100) {
  totalCount nodes { id startsAt endsAt fromWeeklyPattern } } }"""
READ_OWN = """query($pa: ID!) { node(id: $pa) { ... on PersonalAssistant {
  availability(first: 100) { nodes { startsAt endsAt fromWeeklyPattern } } } } }"""

ADMIN = (Role.ADMIN, None)


# --- helpers -------------------------------------------------------------------------


async def _setup(db: AsyncSession) -> dict[str, int]:
    b = Build(db)
    await b.las()
    await b.coop()
    coordinator = await b.worker("Cora Coordinator")
    stranger = await b.worker("Stan Elsewhere")  # coordinates a cluster the PAs are not in
    cluster = await b.cluster(support_worker=coordinator)
    await b.cluster("Enfield Town", support_worker=stranger)
    pa = await b.pa(cluster=cluster)
    other = await b.pa("Pip Other", cluster=cluster)
    su = await b.service_user()
    carer = await b.carer(su)
    await db.commit()
    return dict(
        coordinator=coordinator.id,
        stranger=stranger.id,
        pa=pa.id,
        other=other.id,
        su=su.id,
        carer=carer.id,
    )


def _pa(pk: int) -> str:
    return gid("PersonalAssistant", pk)


def _iso(value: dt.datetime) -> str:
    return value.isoformat()


def _parse(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value)


def _codes(payload: dict[str, Any]) -> list[tuple[str | None, str]]:
    return [(e["field"], e["code"]) for e in payload["errors"]]


async def _windows(db: AsyncSession, pa_id: int | None = None) -> list[tuple[Any, ...]]:
    """(start, end, weekly pattern id) of windows in the database, earliest first."""
    await db.rollback()  # a new snapshot: see what the API committed
    stmt = select(AvailabilityWindow).order_by(AvailabilityWindow.pa_id, AvailabilityWindow.during)
    if pa_id is not None:
        stmt = stmt.where(AvailabilityWindow.pa_id == pa_id)
    rows = (await db.scalars(stmt)).all()
    return [(w.during.lower, w.during.upper, w.weekly_availability_id) for w in rows]


async def _patterns(db: AsyncSession) -> list[tuple[Any, ...]]:
    await db.rollback()
    rows = (await db.scalars(select(WeeklyAvailability).order_by(WeeklyAvailability.id))).all()
    return [
        (p.id, p.pa_id, p.weekday, p.start_time, p.end_time, p.valid_from, p.valid_until)
        for p in rows
    ]


async def _snapshot(db: AsyncSession) -> tuple[list[Any], list[Any]]:
    return await _patterns(db), await _windows(db)


def _today() -> dt.date:
    return dt.datetime.now(LONDON).date()


def _expected(
    slots: list[tuple[int, dt.time, dt.time]],
    valid_from: dt.date,
    valid_until: dt.date | None = None,
) -> list[tuple[dt.datetime, dt.datetime]]:
    """The windows a pattern should expand to, computed independently with zoneinfo."""
    today, now = _today(), dt.datetime.now(UTC)
    last = today + HORIZON
    if valid_until is not None:
        last = min(last, valid_until)
    out = []
    day = max(valid_from, today)
    while day <= last:
        for weekday, start, end in slots:
            starts = dt.datetime.combine(day, start, LONDON)
            ends = dt.datetime.combine(day, end, LONDON)
            if day.isoweekday() == weekday and ends > now:
                out.append((starts.astimezone(UTC), ends.astimezone(UTC)))
        day += dt.timedelta(days=1)
    return sorted(out)


def _slot_input(slots: list[tuple[int, dt.time, dt.time]]) -> list[dict[str, Any]]:
    return [
        {"weekday": w, "startTime": s.isoformat(), "endTime": e.isoformat()} for w, s, e in slots
    ]


def _next_weekday(weekday: int, after: dt.date) -> dt.date:
    return after + dt.timedelta(days=(weekday - after.isoweekday() - 1) % 7 + 1)


def _next_clock_change(after: dt.date) -> dt.date:
    """The next last-Sunday-of-March-or-October at least a week after `after`."""
    for year in (after.year, after.year + 1):
        for month in (3, 10):
            day = dt.date(year, month, 31)
            day -= dt.timedelta(days=day.isoweekday() % 7)
            if day - dt.timedelta(days=6) > after:
                return day
    raise AssertionError("unreachable")


NINE, NOON = dt.time(9), dt.time(12)


# --- one-off windows -----------------------------------------------------------------


async def test_pa_adds_own_window(api: Api, db: AsyncSession) -> None:
    ids = await _setup(db)
    start = at(days=1)
    data = await api.data(
        ADD,
        {
            "input": {
                "paId": _pa(ids["pa"]),
                "startsAt": _iso(start),
                "endsAt": _iso(start + dt.timedelta(hours=3)),
            }
        },
        as_=(Role.PA, ids["pa"]),
    )
    payload = data["addAvailabilityWindow"]
    assert payload["errors"] == []
    window = payload["window"]
    assert _parse(window["startsAt"]) == start
    assert _parse(window["endsAt"]) == start + dt.timedelta(hours=3)
    assert window["fromWeeklyPattern"] is False
    assert window["personalAssistant"] == {"name": "Pat Assistant"}
    assert await _windows(db) == [(start, start + dt.timedelta(hours=3), None)]
    own = await api.data(READ_OWN, {"pa": _pa(ids["pa"])}, as_=(Role.PA, ids["pa"]))
    assert [_parse(n["startsAt"]) for n in own["node"]["availability"]["nodes"]] == [start]


async def test_managers_add_for_their_pas(api: Api, db: AsyncSession) -> None:
    ids = await _setup(db)
    start = at(days=2)
    for i, caller in enumerate([(Role.COORDINATOR, ids["coordinator"]), ADMIN]):
        s = start + dt.timedelta(hours=5 * i)
        data = await api.data(
            ADD,
            {
                "input": {
                    "paId": _pa(ids["pa"]),
                    "startsAt": _iso(s),
                    "endsAt": _iso(s + dt.timedelta(hours=4)),
                }
            },
            as_=caller,
        )
        assert data["addAvailabilityWindow"]["errors"] == []
    read = await api.data(READ, {"pa": _pa(ids["pa"])}, as_=ADMIN)
    assert read["availability"]["totalCount"] == 2


async def test_others_may_not_add(api: Api, db: AsyncSession) -> None:
    ids = await _setup(db)
    start = at(days=1)
    variables = {
        "input": {
            "paId": _pa(ids["pa"]),
            "startsAt": _iso(start),
            "endsAt": _iso(start + dt.timedelta(hours=2)),
        }
    }
    data = await api.data(ADD, variables, token=api.token(Role.PA, ids["other"]))
    assert _codes(data["addAvailabilityWindow"]) == [("paId", "FORBIDDEN")]
    assert data["addAvailabilityWindow"]["window"] is None
    tokens = [
        api.token(Role.SERVICE_USER, ids["su"]),
        api.token(Role.CARER, ids["carer"]),
        api.token(Role.LA_ANALYST, la=BARNET),
    ]
    for token in tokens:  # roles that never change availability: refused at the field
        assert await api.refused(ADD, variables, token=token) == "FORBIDDEN"
    assert await api.refused(ADD, variables) == "UNAUTHENTICATED"
    assert await _windows(db) == []


async def test_coordinator_of_another_cluster_may_not_change_availability(
    api: Api, db: AsyncSession
) -> None:
    """A coordinator sees every PA's availability (to plan cover) but changes only that of
    the PAs on their teams: not another cluster's rota."""
    ids = await _setup(db)
    window = await Build(db).window(await db.get_one(Member, ids["pa"]), at(days=1))
    await db.commit()
    before = await _snapshot(db)
    stranger = (Role.COORDINATOR, ids["stranger"])
    start = at(days=3)
    added = await api.data(
        ADD,
        {
            "input": {
                "paId": _pa(ids["pa"]),
                "startsAt": _iso(start),
                "endsAt": _iso(start + dt.timedelta(hours=2)),
            }
        },
        as_=stranger,
    )
    assert _codes(added["addAvailabilityWindow"]) == [("paId", "FORBIDDEN")]
    weekly = await api.data(
        SET,
        {"input": {"paId": _pa(ids["pa"]), "slots": _slot_input([(1, NINE, NOON)])}},
        as_=stranger,
    )
    assert _codes(weekly["setWeeklyAvailability"]) == [("paId", "FORBIDDEN")]
    removed = await api.data(REMOVE, {"id": gid("AvailabilityWindow", window.id)}, as_=stranger)
    assert _codes(removed["removeAvailabilityWindow"]) == [("id", "FORBIDDEN")]
    assert await _snapshot(db) == before


async def test_unknown_pa_is_not_found(api: Api, db: AsyncSession) -> None:
    ids = await _setup(db)
    start = at(days=1)
    for pa in (_pa(999), _pa(ids["su"]), gid("ServiceUser", ids["pa"])):
        data = await api.data(
            ADD,
            {
                "input": {
                    "paId": pa,
                    "startsAt": _iso(start),
                    "endsAt": _iso(start + dt.timedelta(hours=1)),
                }
            },
            as_=ADMIN,
        )
        assert _codes(data["addAvailabilityWindow"]) == [("paId", "NOT_FOUND")]
    assert await _windows(db) == []


async def test_bad_windows_are_rejected(api: Api, db: AsyncSession) -> None:
    ids = await _setup(db)
    start = at(days=1)
    naive = start.replace(tzinfo=None).isoformat()
    cases = [
        (_iso(start), _iso(start), [("endsAt", "INVALID_RANGE")]),
        (_iso(start), _iso(start - dt.timedelta(hours=1)), [("endsAt", "INVALID_RANGE")]),
        (
            _iso(start),
            _iso(start + dt.timedelta(hours=24, minutes=1)),
            [("endsAt", "INVALID_RANGE")],
        ),
        (_iso(at(days=-2)), _iso(at(days=-2, hours=3)), [("startsAt", "INVALID_RANGE")]),
        (naive, _iso(start + dt.timedelta(hours=1)), [("startsAt", "INVALID")]),
    ]
    for starts, ends, expected in cases:
        data = await api.data(
            ADD,
            {"input": {"paId": _pa(ids["pa"]), "startsAt": starts, "endsAt": ends}},
            as_=(Role.PA, ids["pa"]),
        )
        assert _codes(data["addAvailabilityWindow"]) == expected, (starts, ends)
        assert data["addAvailabilityWindow"]["window"] is None
    assert await _windows(db) == []


async def test_overlap_is_rejected_and_touching_is_fine(api: Api, db: AsyncSession) -> None:
    ids = await _setup(db)
    start = at(days=1)
    await Build(db).window(await db.get_one(Member, ids["pa"]), start, hours=2)
    await db.commit()
    before = await _windows(db)
    data = await api.data(
        ADD,
        {
            "input": {
                "paId": _pa(ids["pa"]),
                "startsAt": _iso(start + dt.timedelta(hours=1)),
                "endsAt": _iso(start + dt.timedelta(hours=3)),
            }
        },
        as_=(Role.PA, ids["pa"]),
    )
    assert _codes(data["addAvailabilityWindow"]) == [("startsAt", "OVERLAP")]
    assert await _windows(db) == before
    data = await api.data(
        ADD,
        {
            "input": {
                "paId": _pa(ids["pa"]),
                "startsAt": _iso(start + dt.timedelta(hours=2)),
                "endsAt": _iso(start + dt.timedelta(hours=3)),
            }
        },
        as_=(Role.PA, ids["pa"]),
    )
    assert data["addAvailabilityWindow"]["errors"] == []
    # Another PA's windows never get in the way.
    data = await api.data(
        ADD,
        {
            "input": {
                "paId": _pa(ids["other"]),
                "startsAt": _iso(start),
                "endsAt": _iso(start + dt.timedelta(hours=3)),
            }
        },
        as_=(Role.PA, ids["other"]),
    )
    assert data["addAvailabilityWindow"]["errors"] == []
    assert len(await _windows(db)) == 3


async def test_merge_joins_overlapping_and_touching_windows(api: Api, db: AsyncSession) -> None:
    ids = await _setup(db)
    b = Build(db)
    pa = await db.get_one(Member, ids["pa"])
    base = at(days=1)
    await b.window(pa, base, hours=2)  # [0h, 2h)
    await b.window(pa, base + dt.timedelta(hours=3), hours=1)  # [3h, 4h): touched
    await b.window(pa, base + dt.timedelta(hours=6), hours=1)  # [6h, 7h): apart
    await db.commit()
    data = await api.data(
        ADD,
        {
            "input": {
                "paId": _pa(ids["pa"]),
                "merge": True,
                "startsAt": _iso(base + dt.timedelta(hours=1)),
                "endsAt": _iso(base + dt.timedelta(hours=3)),
            }
        },
        as_=(Role.PA, ids["pa"]),
    )
    window = data["addAvailabilityWindow"]["window"]
    assert _parse(window["startsAt"]) == base
    assert _parse(window["endsAt"]) == base + dt.timedelta(hours=4)
    assert await _windows(db) == [
        (base, base + dt.timedelta(hours=4), None),
        (base + dt.timedelta(hours=6), base + dt.timedelta(hours=7), None),
    ]


# --- removing windows ----------------------------------------------------------------


async def test_remove_window(api: Api, db: AsyncSession) -> None:
    ids = await _setup(db)
    b = Build(db)
    mine = await b.window(await db.get_one(Member, ids["pa"]), at(days=1))
    theirs = await b.window(await db.get_one(Member, ids["other"]), at(days=1))
    ended = await b.window(await db.get_one(Member, ids["pa"]), at(days=-1))
    await db.commit()
    mine_id, theirs_id, ended_id = (gid("AvailabilityWindow", w.id) for w in (mine, theirs, ended))
    pa = (Role.PA, ids["pa"])
    cases = [
        (theirs_id, pa, [("id", "NOT_FOUND")]),  # a PA cannot see another PA's windows
        (gid("AvailabilityWindow", 999), pa, [("id", "NOT_FOUND")]),
        (gid("Pool", mine.id), pa, [("id", "NOT_FOUND")]),
        (ended_id, pa, [("id", "INVALID")]),
    ]
    refused = await api.refused(REMOVE, {"id": mine_id}, as_=(Role.SERVICE_USER, ids["su"]))
    assert refused == "FORBIDDEN"
    for window_id, caller, expected in cases:
        data = await api.data(REMOVE, {"id": window_id}, as_=caller)
        assert _codes(data["removeAvailabilityWindow"]) == expected, window_id
        assert data["removeAvailabilityWindow"]["removedId"] is None
    assert len(await _windows(db)) == 3

    data = await api.data(REMOVE, {"id": mine_id}, as_=pa)
    assert data["removeAvailabilityWindow"] == {"window": None, "removedId": mine_id, "errors": []}
    data = await api.data(REMOVE, {"id": theirs_id}, as_=(Role.COORDINATOR, ids["coordinator"]))
    assert data["removeAvailabilityWindow"]["removedId"] == theirs_id
    assert [w[0] for w in await _windows(db)] == [ended.during.lower]


# --- weekly patterns -----------------------------------------------------------------


async def test_pa_sets_own_weekly_availability(api: Api, db: AsyncSession) -> None:
    ids = await _setup(db)
    slots = [(1, NINE, NOON), (4, dt.time(14), dt.time(17, 30))]
    valid_from = _today() + dt.timedelta(days=1)
    data = await api.data(
        SET,
        {
            "input": {
                "paId": _pa(ids["pa"]),
                "slots": _slot_input(slots),
                "validFrom": valid_from.isoformat(),
            }
        },
        as_=(Role.PA, ids["pa"]),
    )
    payload = data["setWeeklyAvailability"]
    expected = _expected(slots, valid_from)
    assert payload["errors"] == []
    assert payload["slots"] == [
        {"weekday": 1, "startTime": "09:00:00", "endTime": "12:00:00"},
        {"weekday": 4, "startTime": "14:00:00", "endTime": "17:30:00"},
    ]
    assert payload["validFrom"] == valid_from.isoformat()
    assert payload["validUntil"] is None
    assert (payload["windowsCreated"], payload["windowsSkipped"]) == (len(expected), 0)
    assert len(expected) >= 16  # eight weeks of two slots

    stored = await _windows(db, ids["pa"])
    assert [(s, e) for s, e, _ in stored] == expected
    assert all(pattern is not None for *_, pattern in stored)
    assert {(p[2], p[3], p[4], p[5]) for p in await _patterns(db)} == {
        (w, s, e, valid_from) for w, s, e in slots
    }
    read = await api.data(READ, {"pa": _pa(ids["pa"])}, as_=(Role.PA, ids["pa"]))
    nodes = read["availability"]["nodes"]
    assert [(_parse(n["startsAt"]), _parse(n["endsAt"])) for n in nodes] == expected
    assert all(n["fromWeeklyPattern"] for n in nodes)


async def test_others_may_not_set_weekly_availability(api: Api, db: AsyncSession) -> None:
    ids = await _setup(db)
    variables = {"input": {"paId": _pa(ids["pa"]), "slots": _slot_input([(1, NINE, NOON)])}}
    data = await api.data(SET, variables, as_=(Role.PA, ids["other"]))
    payload = data["setWeeklyAvailability"]
    assert _codes(payload) == [("paId", "FORBIDDEN")]
    assert payload["slots"] is None and payload["windowsCreated"] is None
    assert await api.refused(SET, variables, as_=(Role.SERVICE_USER, ids["su"])) == "FORBIDDEN"
    body = await api.query(SET, variables)
    assert body["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    data = await api.data(SET, {"input": {**variables["input"], "paId": _pa(999)}}, as_=ADMIN)
    assert _codes(data["setWeeklyAvailability"]) == [("paId", "NOT_FOUND")]
    assert await _snapshot(db) == ([], [])
    data = await api.data(SET, variables, as_=(Role.COORDINATOR, ids["coordinator"]))
    assert data["setWeeklyAvailability"]["errors"] == []
    assert len(await _patterns(db)) == 1


async def test_invalid_patterns_change_nothing(api: Api, db: AsyncSession) -> None:
    ids = await _setup(db)
    pa = (Role.PA, ids["pa"])
    data = await api.data(
        SET, {"input": {"paId": _pa(ids["pa"]), "slots": _slot_input([(2, NINE, NOON)])}}, as_=pa
    )
    assert data["setWeeklyAvailability"]["windowsCreated"] > 0
    before = await _snapshot(db)
    today = _today()
    cases: list[tuple[list[Any], dict[str, Any], list[tuple[str, str]]]] = [
        ([(1, NINE, NOON), (1, dt.time(11), dt.time(13))], {}, [("slots", "OVERLAP")]),
        ([(1, NINE, NOON), (1, NINE, NOON)], {}, [("slots", "OVERLAP")]),
        ([(1, NOON, NINE)], {}, [("slots[0].endTime", "INVALID_RANGE")]),
        ([(3, NINE, NINE)], {}, [("slots[0].endTime", "INVALID_RANGE")]),
        ([(1, NINE, NOON), (8, NINE, NOON)], {}, [("slots[1].weekday", "INVALID")]),
        ([(0, NINE, NOON)], {}, [("slots[0].weekday", "INVALID")]),
        (
            [(1, NINE, NOON)],
            {
                "validFrom": (today + dt.timedelta(days=3)).isoformat(),
                "validUntil": (today + dt.timedelta(days=2)).isoformat(),
            },
            [("validUntil", "INVALID_RANGE")],
        ),
    ]
    for slots, dates, expected in cases:
        data = await api.data(
            SET, {"input": {"paId": _pa(ids["pa"]), "slots": _slot_input(slots), **dates}}, as_=pa
        )
        assert _codes(data["setWeeklyAvailability"]) == expected, slots
        assert data["setWeeklyAvailability"]["windowsCreated"] is None
    assert await _snapshot(db) == before


async def test_replacing_keeps_past_windows(api: Api, db: AsyncSession) -> None:
    ids = await _setup(db)
    old = WeeklyAvailability(
        pa_id=ids["pa"],
        weekday=3,
        start_time=NINE,
        end_time=NOON,
        valid_from=_today() - dt.timedelta(days=30),
    )
    db.add(old)
    await db.flush()
    past = at(days=-7)
    future = at(days=7)
    for start in (past, future):
        db.add(
            AvailabilityWindow(
                pa_id=ids["pa"],
                weekly_availability_id=old.id,
                during=Range(start, start + dt.timedelta(hours=3), bounds="[)"),
            )
        )
    await db.commit()
    slots = [(5, dt.time(18), dt.time(20))]
    valid_from = _today() + dt.timedelta(days=1)
    data = await api.data(
        SET,
        {
            "input": {
                "paId": _pa(ids["pa"]),
                "slots": _slot_input(slots),
                "validFrom": valid_from.isoformat(),
            }
        },
        as_=(Role.PA, ids["pa"]),
    )
    assert data["setWeeklyAvailability"]["errors"] == []
    patterns = await _patterns(db)
    assert [(p[2], p[3], p[4]) for p in patterns] == slots
    stored = await _windows(db, ids["pa"])
    # The past window stays as a record, detached; the old pattern's future one is gone.
    assert stored[0] == (past, past + dt.timedelta(hours=3), None)
    assert [(s, e) for s, e, _ in stored[1:]] == _expected(slots, valid_from)
    assert {w[2] for w in stored[1:]} == {patterns[0][0]}


async def test_dates_clashing_with_one_off_windows_are_skipped(api: Api, db: AsyncSession) -> None:
    ids = await _setup(db)
    valid_from = _today() + dt.timedelta(days=1)
    slots = [(2, NINE, NOON)]
    expected = _expected(slots, valid_from)
    clash_start = expected[1][0] + dt.timedelta(hours=1)
    pa = await db.get_one(Member, ids["pa"])
    await Build(db).window(pa, clash_start, hours=4)
    await db.commit()
    data = await api.data(
        SET,
        {
            "input": {
                "paId": _pa(ids["pa"]),
                "slots": _slot_input(slots),
                "validFrom": valid_from.isoformat(),
            }
        },
        as_=(Role.PA, ids["pa"]),
    )
    payload = data["setWeeklyAvailability"]
    assert (payload["windowsCreated"], payload["windowsSkipped"]) == (len(expected) - 1, 1)
    stored = await _windows(db, ids["pa"])
    assert (clash_start, clash_start + dt.timedelta(hours=4), None) in stored
    assert [(s, e) for s, e, p in stored if p is not None] == expected[:1] + expected[2:]


async def test_empty_slots_clear_and_valid_until_limits(api: Api, db: AsyncSession) -> None:
    ids = await _setup(db)
    pa = (Role.PA, ids["pa"])
    valid_from = _today() + dt.timedelta(days=1)
    valid_until = valid_from + dt.timedelta(days=13)
    slots = [(d, NINE, NOON) for d in range(1, 8)]
    data = await api.data(
        SET,
        {
            "input": {
                "paId": _pa(ids["pa"]),
                "slots": _slot_input(slots),
                "validFrom": valid_from.isoformat(),
                "validUntil": valid_until.isoformat(),
            }
        },
        as_=pa,
    )
    assert data["setWeeklyAvailability"]["windowsCreated"] == 14
    assert data["setWeeklyAvailability"]["validUntil"] == valid_until.isoformat()
    assert [(s, e) for s, e, _ in await _windows(db)] == _expected(slots, valid_from, valid_until)
    data = await api.data(SET, {"input": {"paId": _pa(ids["pa"]), "slots": []}}, as_=pa)
    assert data["setWeeklyAvailability"]["slots"] == []
    assert data["setWeeklyAvailability"]["windowsCreated"] == 0
    assert await _snapshot(db) == ([], [])


async def test_expansion_keeps_local_time_across_clock_change(api: Api, db: AsyncSession) -> None:
    ids = await _setup(db)
    change = _next_clock_change(_today())
    monday_before, monday_after = change - dt.timedelta(days=6), change + dt.timedelta(days=1)
    data = await api.data(
        SET,
        {
            "input": {
                "paId": _pa(ids["pa"]),
                "slots": _slot_input([(1, NINE, NOON)]),
                "validFrom": monday_before.isoformat(),
                "validUntil": monday_after.isoformat(),
            }
        },
        as_=(Role.PA, ids["pa"]),
    )
    assert data["setWeeklyAvailability"]["errors"] == []
    # The clock change may lie beyond the horizon: expand as the daily job would then.
    await extend_weekly_availability(db, today=monday_before)
    await db.commit()
    read = await api.data(READ, {"pa": _pa(ids["pa"])}, as_=(Role.PA, ids["pa"]))
    nodes = read["availability"]["nodes"]
    starts = [_parse(n["startsAt"]) for n in nodes]
    ends = [_parse(n["endsAt"]) for n in nodes]
    assert [s.astimezone(LONDON).date() for s in starts] == [monday_before, monday_after]
    assert [s.astimezone(LONDON).time() for s in starts] == [NINE, NINE]
    assert [e.astimezone(LONDON).time() for e in ends] == [NOON, NOON]
    utc_hours = [s.astimezone(UTC).hour for s in starts]
    assert utc_hours == ([9, 8] if change.month == 3 else [8, 9])


async def test_extension_tops_up_once(api: Api, db: AsyncSession) -> None:
    ids = await _setup(db)
    pa = (Role.PA, ids["pa"])
    slots = [(d, NINE, dt.time(10)) for d in range(1, 8)]
    data = await api.data(
        SET,
        {
            "input": {
                "paId": _pa(ids["pa"]),
                "slots": _slot_input(slots),
                "validFrom": _today().isoformat(),
            }
        },
        as_=pa,
    )
    created = data["setWeeklyAvailability"]["windowsCreated"]
    assert created == len(_expected(slots, _today()))
    assert await extend_weekly_availability(db) == 0  # nothing new today

    # A window removed as an exception is not brought back by the top-up.
    nodes = (await api.data(READ, {"pa": _pa(ids["pa"])}, as_=pa))["availability"]["nodes"]
    exception = nodes[10]
    data = await api.data(REMOVE, {"id": exception["id"]}, as_=pa)
    assert data["removeAvailabilityWindow"]["errors"] == []
    # A one-off window beyond today's horizon makes its date be skipped.
    horizon_end = dt.datetime.combine(_today() + HORIZON, NINE, LONDON)
    await Build(db).window(
        await db.get_one(Member, ids["pa"]),
        (horizon_end + dt.timedelta(days=3)).astimezone(UTC),
        hours=1,
    )
    await db.commit()

    week_later = _today() + dt.timedelta(days=7)
    assert await extend_weekly_availability(db, today=week_later) == 6
    assert await extend_weekly_availability(db, today=week_later) == 0
    await db.commit()
    stored = await _windows(db, ids["pa"])
    assert len(stored) == created - 1 + 6 + 1
    assert _parse(exception["startsAt"]) not in {s for s, _, _ in stored}
    last_day = max(s for s, _, p in stored if p is not None).astimezone(LONDON).date()
    assert last_day == week_later + HORIZON


async def test_removing_the_latest_expanded_window_is_kept(api: Api, db: AsyncSession) -> None:
    """The top-up starts after the date each pattern was expanded through, so even the
    last window of the horizon, removed as an exception, stays removed."""
    ids = await _setup(db)
    pa = (Role.PA, ids["pa"])
    slots = [(d, NINE, dt.time(10)) for d in range(1, 8)]
    data = await api.data(
        SET,
        {
            "input": {
                "paId": _pa(ids["pa"]),
                "slots": _slot_input(slots),
                "validFrom": _today().isoformat(),
            }
        },
        as_=pa,
    )
    created = data["setWeeklyAvailability"]["windowsCreated"]
    stored = await _windows(db, ids["pa"])
    latest = max(s for s, _, _ in stored)
    window_id = await db.scalar(
        text("SELECT id FROM availability_window WHERE pa_id = :pa AND lower(during) = :s"),
        {"pa": ids["pa"], "s": latest},
    )
    removed = await api.data(REMOVE, {"id": gid("AvailabilityWindow", window_id)}, as_=pa)
    assert removed["removeAvailabilityWindow"]["errors"] == []

    assert await extend_weekly_availability(db) == 0
    await db.commit()
    after = await _windows(db, ids["pa"])
    assert len(after) == created - 1
    assert latest not in {s for s, _, _ in after}
