"""`coverCandidates` through the API: each hard rule on its own, the opt-out, the score and
its parts, the co-op's weights, who may ask, and a flat statement count."""

from __future__ import annotations

import datetime as dt
import math
import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import update
from sqlalchemy.dialects.postgresql import Range
from sqlalchemy.ext.asyncio import AsyncSession

from care.enums import Role
from care.geography import EARTH_RADIUS_KM
from care.models import (
    Absence,
    Cluster,
    Coop,
    CoverExchange,
    CoverRequest,
    Member,
    PaProfile,
    Partnership,
    PaSkill,
    Visit,
)
from tests.conftest import Api, StatementCounter
from tests.factories import Build, gid

LONDON = ZoneInfo("Europe/London")
UTC = dt.UTC
SU_LAT, SU_LON = 51.615, -0.176

FIELDS = """source score distanceKm visitsToPersonLast8Weeks coversLast28Days
  parts { continuity regularPa sameCluster samePool travel contractHours fairness }
  ... on LocalCoverCandidate { isRegularPa sameCluster samePool hoursInWeek
    contractedWeeklyHours pa { id name } }"""
QUERY = f"""query($visit: ID!, $first: Int) {{
  coverCandidates(visitId: $visit, first: $first) {{ candidates {{ {FIELDS} }}
    leftOut {{ source }} }} }}"""


def local(day: dt.date, hour: int, minute: int = 0) -> dt.datetime:
    """A London wall-clock time on `day`, as UTC."""
    return dt.datetime.combine(day, dt.time(hour, minute), tzinfo=LONDON).astimezone(UTC)


def months_before(day: dt.date, months: int) -> dt.date:
    """The same day of the month `months` earlier (the month's last day if it is short)."""
    index = day.year * 12 + day.month - 1 - months
    year, month = divmod(index, 12)
    for d in (day.day, 30, 29, 28):
        try:
            return dt.date(year, month + 1, d)
        except ValueError:
            continue
    raise AssertionError("unreachable")


def km_north(km: float) -> float:
    """Degrees of latitude for `km` due north (exact for the haversine formula)."""
    return km / (EARTH_RADIUS_KM * math.pi / 180)


@dataclass
class World:
    b: Build
    db: AsyncSession
    coordinator: Member
    other_coordinator: Member
    cluster: Cluster
    other: Cluster
    su: Member
    other_su: Member
    day: dt.date  # the visit's London date
    visit: Visit
    current: Member  # the visit's own PA


async def pa(
    w: World,
    name: str,
    *,
    cluster: Cluster | None = None,
    skills: tuple[str, ...] = ("personal-care",),
    window: tuple[dt.datetime, dt.datetime] | None = None,
    latitude: float | None = SU_LAT + 0.01,
    longitude: float | None = SU_LON,
    **profile: Any,
) -> Member:
    """A PA who passes every rule for `w.visit` unless told otherwise: available for the
    whole visit, skilled, checked today, about a kilometre from the person."""
    m = await w.b.pa(name, cluster=cluster, skills=list(skills))
    m.latitude, m.longitude = latitude, longitude
    if profile:
        await w.db.execute(update(PaProfile).where(PaProfile.member_id == m.id).values(**profile))
    start, end = window or (local(w.day, 8), local(w.day, 14))
    await w.b.window(m, start, hours=(end - start).total_seconds() / 3600)
    await w.db.flush()
    return m


async def busy(
    w: World, who: Member, start: dt.datetime, hours: float, status: str = "SCHEDULED"
) -> None:
    await w.b.visit(w.other_su, who, start, minutes=int(hours * 60), status=status)


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
    other_su = await b.service_user("Bob Other", cluster=other, email="bob@example.org")
    day = dt.datetime.now(LONDON).date() + dt.timedelta(days=10)
    current = await b.pa("Cur Rent", cluster=cluster, skills=["personal-care"])
    visit = await b.visit(su, current, local(day, 10), minutes=60)
    world = World(
        b, db, coordinator, other_coordinator, cluster, other, su, other_su, day, visit, current
    )
    await b.window(current, local(day, 8), hours=6)
    await db.commit()
    return world


def coord(api: Api, w: World) -> str:
    return api.token(Role.COORDINATOR, w.coordinator.id)


async def ask(
    api: Api, token: str | None, visit_id: int | str, first: int | None = 100
) -> dict[str, Any]:
    """The raw response; `token` None asks anonymously."""
    if isinstance(visit_id, int):
        visit_id = gid("Visit", visit_id)
    return await api.query(QUERY, {"visit": visit_id, "first": first}, token=token)


async def candidates(
    api: Api,
    w: World,
    *,
    token: str | None = None,
    first: int | None = 100,
    visit: Visit | None = None,
) -> list[dict[str, Any]]:
    """The candidates for `visit` (default: the world's), as the cluster's coordinator."""
    visit_id = (visit or w.visit).id
    body = await ask(api, token or coord(api, w), visit_id, first)
    assert not body.get("errors"), body["errors"]
    assert body["data"]["coverCandidates"]["leftOut"] == []
    found: list[dict[str, Any]] = body["data"]["coverCandidates"]["candidates"]
    return found


def names(found: list[dict[str, Any]]) -> set[str]:
    return {c["pa"]["name"] for c in found}


# --- hard rules -----------------------------------------------------------------------------


async def test_each_hard_rule_excludes_a_pa_that_fails_only_that_rule(api: Api, w: World) -> None:
    day, db = w.day, w.db
    # Passing PAs, some on the edge of a rule.
    await pa(w, "Good", cluster=w.cluster)
    await pa(w, "Stranger")  # not in the person's cluster or any pool: still eligible
    await pa(w, "Window exactly", window=(local(day, 10), local(day, 11)))
    await pa(w, "Skill expires that day")
    await db.execute(
        update(PaSkill)
        .where(PaSkill.pa_id == (await _id(w, "Skill expires that day")))
        .values(expires_on=day)
    )
    await pa(w, "DBS 36 months", dbs_checked_on=months_before(day, 36))
    await pa(w, "No location", latitude=None, longitude=None)
    await pa(w, "Far but willing", latitude=SU_LAT + km_north(19), max_travel_km=Decimal(20))
    cancelled = await pa(w, "Absence cancelled")
    db.add(
        Absence(
            pa_id=cancelled.id,
            kind="HOLIDAY",
            during=Range(local(day, 0), local(day, 23), bounds="[)"),
            cancelled_at=dt.datetime.now(UTC),
        )
    )
    was_busy = await pa(w, "Visit cancelled")
    await busy(w, was_busy, local(day, 10), 1, status="CANCELLED")
    back_to_back = await pa(w, "Back to back")
    await busy(w, back_to_back, local(day, 9), 1)  # ends as the visit starts
    hours_47 = await pa(w, "47 hours")
    for offset, hours in ((-3, 12), (-2, 12), (2, 12), (3, 11)):
        await busy(w, hours_47, local(day + dt.timedelta(days=offset), 8), hours)

    # Failing PAs: each breaks exactly one rule.
    await pa(w, "1 window too short", window=(local(day, 8), local(day, 10, 30)))
    overlapping = await pa(w, "2 visit overlaps")
    await busy(w, overlapping, local(day, 10, 30), 1)
    away = await pa(w, "2 absent")
    db.add(
        Absence(
            pa_id=away.id, kind="SICKNESS", during=Range(local(day, 0), local(day, 23), bounds="[)")
        )
    )
    await pa(w, "3 no skill", skills=())
    await pa(w, "3 wrong skill", skills=("hoist",))
    expired = await pa(w, "3 skill expired")
    await db.execute(
        update(PaSkill)
        .where(PaSkill.pa_id == expired.id)
        .values(expires_on=day - dt.timedelta(days=1))
    )
    await pa(w, "4 no DBS", dbs_checked_on=None)
    await pa(w, "4 DBS too old", dbs_checked_on=months_before(day, 36) - dt.timedelta(days=1))
    await pa(w, "5 too far", latitude=SU_LAT + km_north(11))  # limit 10 km
    hours_48 = await pa(w, "6a 48 hours booked")
    for offset in (-3, -2, 2, 3):
        await busy(w, hours_48, local(day + dt.timedelta(days=offset), 8), 12)
    short_rest_before = await pa(w, "6b rest before")
    await busy(w, short_rest_before, local(day - dt.timedelta(days=1), 21), 2.5)  # to 23:30
    short_rest_after = await pa(w, "6b rest after")
    await busy(w, short_rest_after, local(day, 20), 3.5)  # to 23:30, the visit's day
    await busy(w, short_rest_after, local(day + dt.timedelta(days=1), 8), 1)  # 8.5 h later
    inactive = await pa(w, "7 inactive")
    inactive.active = False
    await db.commit()

    found = await candidates(api, w)
    assert names(found) == {
        "Good",
        "Stranger",
        "Window exactly",
        "Skill expires that day",
        "DBS 36 months",
        "No location",
        "Far but willing",
        "Absence cancelled",
        "Visit cancelled",
        "Back to back",
        "47 hours",
    }
    # The visit's own PA passes every rule but is never a candidate.
    assert "Cur Rent" not in names(found)
    by_name = {c["pa"]["name"]: c for c in found}
    assert by_name["47 hours"]["hoursInWeek"] == pytest.approx(47)
    assert by_name["No location"]["distanceKm"] is None
    assert by_name["No location"]["parts"]["travel"] == 0
    assert by_name["Far but willing"]["distanceKm"] == pytest.approx(19)
    assert all(c["source"] == "LOCAL" for c in found)


async def _id(w: World, name: str) -> int:
    from sqlalchemy import select

    found = await w.db.scalar(select(Member.id).where(Member.name == name))
    assert found is not None
    return int(found)


async def test_working_time_opt_out_lifts_the_weekly_limit_only(api: Api, w: World) -> None:
    """Regulation 5's opt-out covers the 48-hour week, not daily rest."""
    day = w.day
    for opted_out in (False, True):
        who = await pa(w, f"Tired {opted_out}", working_time_opt_out=opted_out)
        for offset in (-3, -2, 2, 3):  # 48 hours in the window
            await busy(w, who, local(day + dt.timedelta(days=offset), 8), 12)
    unrested = await pa(w, "Opted out, no rest", working_time_opt_out=True)
    await busy(w, unrested, local(day - dt.timedelta(days=1), 21), 2.5)  # short rest before
    await w.db.commit()

    found = await candidates(api, w)
    assert names(found) == {"Tired True"}
    assert found[0]["hoursInWeek"] == pytest.approx(48)


async def test_rest_needs_the_coops_hours_between_working_days(api: Api, w: World) -> None:
    day = w.day
    late = await pa(w, "Late shift")
    await busy(w, late, local(day - dt.timedelta(days=1), 22), 1.5)  # ends 23:30: 10.5 h rest
    early = await pa(w, "Early finish")
    await busy(w, early, local(day - dt.timedelta(days=1), 19), 4)  # ends 23:00: 11 h rest
    await w.db.commit()
    assert names(await candidates(api, w)) == {"Early finish"}


async def test_working_days_are_london_calendar_days(api: Api, w: World) -> None:
    """In summer 00:30 in London is 23:30 UTC the day before. A visit then belongs to the
    visit's own (London) day, so it needs no rest before the visit; counted in UTC days it
    would end 9 hours before the visit starts."""
    summer = dt.date(dt.date.today().year + 1, 7, 14)
    visit = await w.b.visit(w.su, None, local(summer, 10), status="NEEDS_COVER")
    night = await pa(w, "Night visit", window=(local(summer, 8), local(summer, 14)))
    await busy(w, night, local(summer, 0, 30), 0.5)
    before = await pa(w, "Night before", window=(local(summer, 8), local(summer, 14)))
    await busy(w, before, local(summer - dt.timedelta(days=1), 23), 0.5)  # ends 23:30
    await w.db.commit()
    assert local(summer, 0, 30).date() == summer - dt.timedelta(days=1)  # in UTC
    assert names(await candidates(api, w, visit=visit)) == {"Night visit"}


async def test_the_coops_rules_are_read_from_the_coop_row(api: Api, w: World) -> None:
    await pa(w, "Checked 2 years ago", dbs_checked_on=months_before(w.day, 24))
    hours = await pa(w, "Twenty hours")
    await busy(w, hours, local(w.day + dt.timedelta(days=2), 8), 20)
    await w.db.commit()
    assert names(await candidates(api, w)) == {"Checked 2 years ago", "Twenty hours"}

    await w.db.execute(update(Coop).values(dbs_valid_months=12, max_weekly_hours=Decimal(20)))
    await w.db.commit()
    assert names(await candidates(api, w)) == set()


# --- score ---------------------------------------------------------------------------------


async def scoring_world(w: World) -> tuple[Member, Member, Member]:
    """Three candidates with known parts (see the test)."""
    b, day = w.b, w.day
    regular = await pa(w, "Regular", cluster=w.cluster, latitude=SU_LAT, longitude=SU_LON)
    await b.regular(w.su, regular)
    for days_ago in (7, 14):  # continuity: 2 visits in 8 weeks
        await b.visit(
            w.su,
            regular,
            local(dt.date.today() - dt.timedelta(days=days_ago), 9),
            status="COMPLETED",
        )
    await b.visit(
        w.su, regular, local(dt.date.today() - dt.timedelta(days=70), 9), status="COMPLETED"
    )  # too long ago
    filled = await b.visit(
        w.su, None, local(dt.date.today() - dt.timedelta(days=3), 15), status="CANCELLED"
    )
    w.db.add(
        CoverRequest(
            visit_id=filled.id,
            reason="MANUAL",
            status="FILLED",
            filled_by_pa_id=regular.id,
            opened_at=dt.datetime.now(UTC) - dt.timedelta(days=4),
            closed_at=dt.datetime.now(UTC) - dt.timedelta(days=3),
        )
    )
    pooled = await pa(
        w,
        "Pooled",
        latitude=SU_LAT + km_north(5),
        longitude=SU_LON,
        contracted_weekly_hours=Decimal(20),
    )
    await b.pool("North pool", pas=[pooled], clusters=[w.cluster])
    await busy(w, pooled, local(day, 12), 5)  # 5 of 20 hours that week
    stranger = await pa(w, "Stranger", latitude=None, longitude=None, contracted_weekly_hours=0)
    await w.db.commit()
    return regular, pooled, stranger


async def test_score_and_parts(api: Api, w: World) -> None:
    await scoring_world(w)
    found = await candidates(api, w)
    assert [c["pa"]["name"] for c in found] == ["Regular", "Pooled", "Stranger"]
    regular, pooled, stranger = found

    assert regular["parts"] == pytest.approx(
        {
            "continuity": 3 * 2 / 8,
            "regularPa": 3,
            "sameCluster": 2,
            "samePool": 0,
            "travel": 1,
            "contractHours": 1,
            "fairness": 0.5,
        }
    )
    assert regular["score"] == pytest.approx(8.25)
    assert regular["visitsToPersonLast8Weeks"] == 2
    assert regular["isRegularPa"] and regular["sameCluster"] and not regular["samePool"]
    assert regular["coversLast28Days"] == 1
    assert regular["distanceKm"] == pytest.approx(0)

    assert pooled["parts"] == pytest.approx(
        {
            "continuity": 0,
            "regularPa": 0,
            "sameCluster": 0,
            "samePool": 1,
            "travel": 0.5,
            "contractHours": 0.75,
            "fairness": 1,
        }
    )
    assert pooled["score"] == pytest.approx(3.25)
    assert pooled["distanceKm"] == pytest.approx(5)
    assert pooled["hoursInWeek"] == pytest.approx(5)
    assert pooled["contractedWeeklyHours"] == 20

    assert stranger["parts"] == pytest.approx(
        {
            "continuity": 0,
            "regularPa": 0,
            "sameCluster": 0,
            "samePool": 0,
            "travel": 0,
            "contractHours": 0,
            "fairness": 1,
        }
    )
    assert stranger["score"] == pytest.approx(1)
    assert stranger["distanceKm"] is None

    # `first` cuts the ranked list.
    assert [c["pa"]["name"] for c in await candidates(api, w, first=2)] == ["Regular", "Pooled"]


async def test_coop_weights_override_the_defaults(api: Api, w: World) -> None:
    await scoring_world(w)
    await w.db.execute(
        update(Coop).values(
            cover_weights={
                "regularPa": 0,
                "sameCluster": 0,
                "continuity": 0,
                "samePool": 10,
                "travel": "lots",  # not a number: the default (1) stays
            }
        )
    )
    await w.db.commit()
    found = await candidates(api, w)
    assert [c["pa"]["name"] for c in found] == ["Pooled", "Regular", "Stranger"]
    pooled, regular, _ = found
    assert pooled["score"] == pytest.approx(10 + 0.5 + 0.75 + 1)
    assert pooled["parts"]["samePool"] == pytest.approx(10)
    assert regular["score"] == pytest.approx(1 + 1 + 0.5)
    assert regular["parts"]["regularPa"] == 0 and regular["parts"]["travel"] == pytest.approx(1)


async def test_ties_break_on_distance_then_id(api: Api, w: World) -> None:
    # Same score: travel is weighted 0, so the distance only breaks the tie.
    await w.db.execute(update(Coop).values(cover_weights={"travel": 0}))
    await pa(w, "Further", latitude=SU_LAT + km_north(4))
    await pa(w, "Nearer", latitude=SU_LAT + km_north(2))
    await pa(w, "Unknown A", latitude=None, longitude=None)
    await pa(w, "Unknown B", latitude=None, longitude=None)
    await w.db.commit()
    found = await candidates(api, w)
    assert len({round(c["score"], 9) for c in found}) == 1
    assert [c["pa"]["name"] for c in found] == ["Nearer", "Further", "Unknown A", "Unknown B"]


# --- who may ask ------------------------------------------------------------------------------


def error_code(body: dict[str, Any]) -> str:
    assert body.get("errors"), body
    assert body["data"] is None
    code: str = body["errors"][0]["extensions"]["code"]
    return code


async def test_who_may_ask(api: Api, w: World) -> None:
    await pa(w, "Good", cluster=w.cluster)
    team_pa = await pa(w, "On the other team", cluster=w.other)
    await w.db.commit()

    visit = w.visit.id
    assert error_code(await ask(api, None, visit)) == "UNAUTHENTICATED"
    for role, member in (
        (Role.PA, w.current.id),
        (Role.SERVICE_USER, w.su.id),
        (Role.CARER, w.su.id),
    ):
        assert error_code(await ask(api, api.token(role, member), visit)) == "FORBIDDEN", role
    analyst = api.token(Role.LA_ANALYST, la="E09000003")
    assert error_code(await ask(api, analyst, visit)) == "FORBIDDEN"

    # A coordinator who cannot see the visit: like an unknown visit.
    other = api.token(Role.COORDINATOR, w.other_coordinator.id)
    body = await ask(api, other, visit)
    assert error_code(body) == "NOT_FOUND"
    assert body["errors"][0]["message"] == "No visit with that id."
    # ... even when their team's PA has it: they see only their own clusters' visits.
    await w.db.execute(update(Visit).where(Visit.id == visit).values(pa_id=team_pa.id))
    await w.db.commit()
    assert error_code(await ask(api, other, visit)) == "NOT_FOUND"

    for token in (api.token(Role.ADMIN), coord(api, w)):
        assert names(await candidates(api, w, token=token)) == {"Good", "Cur Rent"}


async def test_unknown_visits_and_bad_page_sizes(api: Api, w: World) -> None:
    admin = api.token(Role.ADMIN)
    for visit_id in (gid("Visit", 999_999), gid("Cluster", w.visit.id)):
        body = await ask(api, admin, visit_id, 5)
        assert error_code(body) == "NOT_FOUND", visit_id
    # A malformed id is an unknown visit, as anywhere else in the schema.
    assert error_code(await ask(api, admin, "not-an-id", 5)) == "NOT_FOUND"
    for first in (0, -1, 101):
        assert error_code(await ask(api, admin, w.visit.id, first)) == "BAD_USER_INPUT", first
    # The default page is 10; null means the default.
    for i in range(12):
        await pa(w, f"PA {i:02}")
    await w.db.commit()
    body = await api.query(
        "query($v: ID!) { coverCandidates(visitId: $v) { candidates { score } } }",
        {"v": gid("Visit", w.visit.id)},
        token=admin,
    )
    assert len(body["data"]["coverCandidates"]["candidates"]) == 10
    assert len(await candidates(api, w, token=admin, first=None)) == 10


async def test_a_visit_without_candidates_gives_an_empty_list(api: Api, w: World) -> None:
    assert await candidates(api, w) == []


# --- cost -------------------------------------------------------------------------------------


async def test_statement_count_does_not_grow_with_the_candidates(
    api: Api, w: World, sql_counter: StatementCounter
) -> None:
    admin = api.token(Role.ADMIN)
    counts: list[int] = []
    reported: list[int] = []
    for batch in range(3):
        for i in range(5):
            await pa(w, f"PA {batch}-{i}", cluster=w.cluster)
        await w.db.commit()
        sql_counter.count = 0
        body = await ask(api, admin, w.visit.id)
        assert len(body["data"]["coverCandidates"]["candidates"]) == 5 * (batch + 1)
        counts.append(sql_counter.count)
        reported.append(body["extensions"]["sqlStatements"])
    # The visit and who may ask, the ranked search, the PAs (one DataLoader batch).
    assert counts == [3, 3, 3], sql_counter.statements
    assert reported == [3, 3, 3]


# --- why a PA is not a candidate (`includeExcluded`) -------------------------------------------

EXCLUDED = """query($visit: ID!, $include: Boolean) {
  coverCandidates(visitId: $visit, first: 20, includeExcluded: $include) {
    candidates { ... on LocalCoverCandidate { pa { name } } }
    excluded { pa { name } rules missingSkills expiredSkills }
    excludedByRule { rule pas } leftOut { source } } }"""


async def excluded(
    api: Api, w: World, token: str | None = None, include: bool | None = True
) -> dict[str, Any]:
    """The answer with `includeExcluded`, as the cluster's coordinator unless told."""
    body = await api.query(
        EXCLUDED,
        {"visit": gid("Visit", w.visit.id), "include": include},
        token=token or coord(api, w),
    )
    assert not body.get("errors"), body["errors"]
    found: dict[str, Any] = body["data"]["coverCandidates"]
    return found


async def hold(w: World, who: Member, start: dt.datetime, hours: float) -> None:
    """A partner co-op's held request for the PA's time (a PROVIDING exchange, HELD)."""
    partnership = Partnership(
        base_url=f"https://partner-{who.id}.example",
        graphql_endpoint=f"https://partner-{who.id}.example/graphql",
        proposal_ref=uuid.uuid4(),
        direction="OUTGOING",
        status="ACTIVE",
        requested_scopes=["COVER"],
        granted_scopes=["COVER"],  # no AVAILABILITY: not a candidate source here
        protocol_version="coopnet-federation/1",
        coop_name="Partner Co-op",
    )
    w.db.add(partnership)
    await w.db.flush()
    w.db.add(
        CoverExchange(
            ref=uuid.uuid4(),
            partnership_id=partnership.id,
            side="PROVIDING",
            status="HELD",
            during=Range(start, start + dt.timedelta(hours=hours), bounds="[)"),
            district="N12",
            skills=[],
            pa_ref="our-pa",
            hold_expires_at=dt.datetime.now(UTC) + dt.timedelta(hours=1),
            pa_id=who.id,
        )
    )


async def test_each_excluded_pa_is_listed_with_the_rule_it_fails(api: Api, w: World) -> None:
    day, db, team = w.day, w.db, w.cluster
    await pa(w, "Good", cluster=team)
    await pa(w, "Stranger")  # a candidate, though on no team or pool of the person
    await pa(w, "Stranger, no window", window=(local(day, 8), local(day, 9)))  # not considered
    pooled = await pa(w, "Pooled, too far", latitude=SU_LAT + km_north(11))
    await w.b.pool("North pool", pas=[pooled], clusters=[team])
    # Each fails exactly one rule.
    await pa(w, "No window", cluster=team, window=(local(day, 8), local(day, 10, 30)))
    overlapping = await pa(w, "Overlap", cluster=team)
    await busy(w, overlapping, local(day, 10, 30), 1)
    away = await pa(w, "Absent", cluster=team)
    db.add(
        Absence(
            pa_id=away.id, kind="SICKNESS", during=Range(local(day, 0), local(day, 23), bounds="[)")
        )
    )
    held = await pa(w, "Held", cluster=team)
    await hold(w, held, local(day, 9), 3)
    await pa(w, "No skill", cluster=team, skills=("hoist",))
    lapsed = await pa(w, "Lapsed skill", cluster=team)
    await db.execute(
        update(PaSkill).where(PaSkill.pa_id == lapsed.id).values(expires_on=day - dt.timedelta(1))
    )
    await pa(w, "No DBS", cluster=team, dbs_checked_on=None)
    await pa(w, "Old DBS", cluster=team, dbs_checked_on=months_before(day, 36) - dt.timedelta(1))
    await pa(w, "Too far", cluster=team, latitude=SU_LAT + km_north(11))
    weekly = await pa(w, "48 hours", cluster=team)
    for offset in (-3, -2, 2, 3):
        await busy(w, weekly, local(day + dt.timedelta(days=offset), 8), 12)
    unrested = await pa(w, "Short rest", cluster=team, working_time_opt_out=True)
    await busy(w, unrested, local(day - dt.timedelta(days=1), 21), 2.5)  # to 23:30
    inactive = await pa(w, "Inactive", cluster=team)
    inactive.active = False
    # Two rules at once.
    await pa(w, "Far, unskilled", cluster=team, skills=(), latitude=SU_LAT + km_north(12))
    await db.commit()

    found = await excluded(api, w)
    assert found["leftOut"] == []
    by_name = {e["pa"]["name"]: e for e in found["excluded"]}
    assert {name: e["rules"] for name, e in by_name.items()} == {
        "Cur Rent": ["CURRENT_PA"],
        "Pooled, too far": ["TOO_FAR"],
        "No window": ["NO_AVAILABILITY"],
        "Overlap": ["OVERLAP"],
        "Absent": ["ABSENT"],
        "Held": ["HELD_FOR_PARTNER"],
        "No skill": ["MISSING_SKILL"],
        "Lapsed skill": ["EXPIRED_SKILL"],
        "No DBS": ["DBS_OUT_OF_DATE"],
        "Old DBS": ["DBS_OUT_OF_DATE"],
        "Too far": ["TOO_FAR"],
        "48 hours": ["WEEKLY_HOURS_LIMIT"],
        "Short rest": ["DAILY_REST"],
        "Inactive": ["INACTIVE"],
        "Far, unskilled": ["MISSING_SKILL", "TOO_FAR"],
    }
    assert by_name["No skill"]["missingSkills"] == ["personal-care"]
    assert by_name["No skill"]["expiredSkills"] == []
    assert by_name["Lapsed skill"]["expiredSkills"] == ["personal-care"]
    assert by_name["Lapsed skill"]["missingSkills"] == []
    counts = {c["rule"]: c["pas"] for c in found["excludedByRule"]}
    assert counts["TOO_FAR"] == 3 and counts["DBS_OUT_OF_DATE"] == 2
    assert counts["MISSING_SKILL"] == 2 and "NO_AVAILABILITY" in counts
    assert sum(counts.values()) == sum(len(e["rules"]) for e in found["excluded"])
    # The candidates are those of the plain search, and no candidate is also excluded.
    chosen = {c["pa"]["name"] for c in found["candidates"]}
    assert chosen == {"Good", "Stranger"}
    assert chosen == names(await candidates(api, w))
    assert not chosen & set(by_name)

    # Not asked for: null, and nothing more is read.
    plain = await excluded(api, w, include=None)
    assert plain["excluded"] is None and plain["excludedByRule"] is None
    assert {c["pa"]["name"] for c in plain["candidates"]} == chosen


async def test_a_coop_rule_change_shows_in_the_reasons(api: Api, w: World) -> None:
    await pa(w, "Checked 2 years ago", cluster=w.cluster, dbs_checked_on=months_before(w.day, 24))
    await w.db.execute(update(Coop).values(dbs_valid_months=12))
    await w.db.commit()
    found = await excluded(api, w)
    assert [(e["pa"]["name"], e["rules"]) for e in found["excluded"]] == [
        ("Cur Rent", ["CURRENT_PA"]),
        ("Checked 2 years ago", ["DBS_OUT_OF_DATE"]),
    ]


async def test_who_may_read_the_excluded(api: Api, w: World) -> None:
    await pa(w, "No skill", cluster=w.cluster, skills=())
    await w.db.commit()
    for token in (coord(api, w), api.token(Role.ADMIN)):
        found = await excluded(api, w, token=token)
        assert {e["pa"]["name"] for e in found["excluded"]} == {"No skill", "Cur Rent"}
    refused = {
        None: "UNAUTHENTICATED",
        api.token(Role.PA, w.current.id): "FORBIDDEN",
        api.token(Role.SERVICE_USER, w.su.id): "FORBIDDEN",
        api.token(Role.CARER, w.su.id): "FORBIDDEN",
        api.token(Role.LA_ANALYST, la="E09000003"): "FORBIDDEN",
        api.token(Role.COORDINATOR, w.other_coordinator.id): "NOT_FOUND",
    }
    for token, code in refused.items():
        body = await api.query(
            EXCLUDED, {"visit": gid("Visit", w.visit.id), "include": True}, token=token
        )
        assert body["data"] is None, body
        assert body["errors"][0]["extensions"]["code"] == code
        assert "No skill" not in str(body)


async def test_statement_count_does_not_grow_with_the_excluded(
    api: Api, w: World, sql_counter: StatementCounter
) -> None:
    counts: list[int] = []
    for batch in range(3):
        for i in range(4):
            who = await pa(w, f"PA {batch}-{i}", cluster=w.cluster, skills=())
            await busy(w, who, local(w.day, 10), 1)
        await w.db.commit()
        sql_counter.count = 0
        found = await excluded(api, w, token=api.token(Role.ADMIN))
        assert len(found["excluded"]) == 4 * (batch + 1) + 1  # and the visit's own PA
        counts.append(sql_counter.count)
    # The visit and who may ask, the ranked search, the exclusions, the PAs (one batch).
    assert counts == [4, 4, 4], sql_counter.statements


# --- skills the team lacks (`coverGaps`) --------------------------------------------------------

GAPS = """query($cluster: ID!) { coverGaps(clusterId: $cluster) {
  need requests lapsedHolders firstStartsAt } }"""


async def test_cover_gaps_name_needs_no_team_pa_can_meet(
    api: Api, w: World, sql_counter: StatementCounter
) -> None:
    b, day, db = w.b, w.day, w.db
    peg = await b.service_user(
        "Peg User", cluster=w.cluster, needs=["personal-care", "peg-feeding"]
    )
    hoist = await b.service_user("Hal User", cluster=w.cluster, needs=["hoist", "peg-feeding"])
    other = await b.service_user("Out User", cluster=w.other, needs=["peg-feeding"])
    lapsed = await pa(w, "Lapsed hoist", cluster=w.cluster, skills=("hoist", "personal-care"))
    await db.execute(
        update(PaSkill)
        .where(PaSkill.pa_id == lapsed.id, PaSkill.skill == "hoist")
        .values(expires_on=day - dt.timedelta(days=1))
    )
    # Held only by a PA off the team, or inactive on it: still a gap.
    await pa(w, "Pooled peg", skills=("peg-feeding",))
    gone = await pa(w, "Gone peg", cluster=w.cluster, skills=("peg-feeding",))
    gone.active = False
    visits = [
        await b.visit(peg, None, local(day, 9), status="NEEDS_COVER"),
        await b.visit(peg, None, local(day + dt.timedelta(days=1), 9), status="NEEDS_COVER"),
        await b.visit(hoist, None, local(day, 15), status="NEEDS_COVER"),
        await b.visit(other, None, local(day, 9), status="NEEDS_COVER"),
    ]
    for v in visits:
        db.add(CoverRequest(visit_id=v.id, reason="MANUAL", status="OPEN"))
    # A filled request and one for a visit that is over are not gaps.
    old = await b.visit(
        hoist, None, local(dt.date.today() - dt.timedelta(days=2), 9), status="NEEDS_COVER"
    )
    db.add(CoverRequest(visit_id=old.id, reason="MANUAL", status="OPEN"))
    await db.commit()

    sql_counter.count = 0
    body = await api.query(GAPS, {"cluster": gid("Cluster", w.cluster.id)}, token=coord(api, w))
    assert not body.get("errors"), body
    assert sql_counter.count == 1
    gaps = body["data"]["coverGaps"]
    assert [(g["need"], g["requests"], g["lapsedHolders"]) for g in gaps] == [
        ("peg-feeding", 3, 0),
        ("hoist", 1, 1),
    ]
    assert dt.datetime.fromisoformat(gaps[0]["firstStartsAt"]) == local(day, 9)

    # Once a team PA has the skill in date, the gap closes.
    await pa(w, "Peg trained", cluster=w.cluster, skills=("peg-feeding",))
    await db.commit()
    body = await api.query(GAPS, {"cluster": gid("Cluster", w.cluster.id)}, token=coord(api, w))
    assert [g["need"] for g in body["data"]["coverGaps"]] == ["hoist"]

    # Admins see any cluster; another coordinator, an unknown cluster: nothing.
    admin = await api.query(
        GAPS, {"cluster": gid("Cluster", w.other.id)}, token=api.token(Role.ADMIN)
    )
    assert [(g["need"], g["requests"]) for g in admin["data"]["coverGaps"]] == [("peg-feeding", 1)]
    for token, cluster in (
        (api.token(Role.COORDINATOR, w.other_coordinator.id), w.cluster.id),
        (coord(api, w), 999_999),
    ):
        body = await api.query(GAPS, {"cluster": gid("Cluster", cluster)}, token=token)
        assert body["data"]["coverGaps"] == [], body
    for token, code in (
        (None, "UNAUTHENTICATED"),
        (api.token(Role.PA, w.current.id), "FORBIDDEN"),
        (api.token(Role.LA_ANALYST, la="E09000003"), "FORBIDDEN"),
    ):
        body = await api.query(GAPS, {"cluster": gid("Cluster", w.cluster.id)}, token=token)
        assert body["errors"][0]["extensions"]["code"] == code
