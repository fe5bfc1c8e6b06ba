"""No write widens its caller's own access (issue 6, point 1), and a coordinator changes only
what they run (point 4).

A coordinator of cluster A tries every write their role may make, with the ids of cluster
B's people, PAs, visits, absences, cover and pools, of a person in no cluster, and of a
cluster they have just created. Around each write we snapshot what they can read of
personal data (members whose contact details or postcode they see; visits whose tasks or
person they see) and assert it never grows; every refusal is NOT_FOUND or FORBIDDEN and
leaves every table exactly as it was.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import Range
from sqlalchemy.ext.asyncio import AsyncSession

from care.enums import Role
from care.models import Absence, Base, CoverOffer, CoverRequest
from tests.conftest import Api
from tests.factories import Build, at, gid

MEMBERS = """{ members(first: 100) { totalCount nodes {
  id phone postcode email latitude ... on ServiceUser { funding } } } }"""
VISITS = """{ visits(first: 100) { totalCount nodes { id tasks serviceUser { id } } } }"""


@dataclass(frozen=True)
class Seen:
    """What a caller can read of personal data."""

    members: frozenset[str]  # ids of members listed at all
    personal: frozenset[str]  # ids of members whose personal data is not blanked
    tasks: frozenset[str]  # ids of visits whose tasks are shown
    people: frozenset[str]  # ids of visits that name their person

    def grew_beyond(self, before: Seen) -> dict[str, set[str]]:
        return {
            name: set(getattr(self, name)) - set(getattr(before, name))
            for name in ("members", "personal", "tasks", "people")
            if not set(getattr(self, name)) <= set(getattr(before, name))
        }


async def seen(api: Api, token: str) -> Seen:
    members = (await api.data(MEMBERS, token=token))["members"]
    visits = (await api.data(VISITS, token=token))["visits"]
    assert members["totalCount"] <= 100 and visits["totalCount"] <= 100  # one page holds all
    personal_fields = ("phone", "postcode", "email", "latitude", "funding")
    return Seen(
        members=frozenset(n["id"] for n in members["nodes"]),
        personal=frozenset(
            n["id"] for n in members["nodes"] if any(n.get(f) is not None for f in personal_fields)
        ),
        tasks=frozenset(n["id"] for n in visits["nodes"] if n["tasks"] is not None),
        people=frozenset(n["id"] for n in visits["nodes"] if n["serviceUser"] is not None),
    )


async def every_row(db: AsyncSession) -> dict[str, list[str]]:
    """Every table's rows, to show that a refused write changed nothing."""
    await db.rollback()  # a new snapshot: see what the API committed
    out = {}
    for table in Base.metadata.sorted_tables:
        rows = (await db.execute(select(table))).all()
        out[table.name] = sorted(repr(tuple(r)) for r in rows)
    await db.rollback()
    return out


@pytest.fixture
async def ids(db: AsyncSession) -> dict[str, str]:
    """Cluster A (coordinator A: their person, carer, PA and visits) and cluster B (the same,
    plus an absence, an open cover request with an offer, availability and pools), a planned
    cluster of B's coordinator, and a person in no cluster."""
    b = Build(db)
    await b.las()
    await b.coop()
    coord_a = await b.worker("Cora Ordinator")
    coord_b = await b.worker("Otto Ordinator")
    cluster_a = await b.cluster("Finchley", support_worker=coord_a)
    cluster_b = await b.cluster("Barnet East", support_worker=coord_b)
    planned_b = await b.cluster("Barnet West", support_worker=coord_b)
    planned_b.status = "PLANNED"
    su_a = await b.service_user("Ada Mine", cluster=cluster_a)
    carer_a = await b.carer(su_a, "Cal Mine")
    pa_a = await b.pa("Pat Mine", cluster=cluster_a)
    su_b = await b.service_user("Bob Theirs", cluster=cluster_b, email="bob@example.org")
    carer_b = await b.carer(su_b, "Cat Theirs")
    pa_b = await b.pa("Pip Theirs", cluster=cluster_b)
    su_none = await b.service_user("Nell Nowhere", email="nell@example.org")
    await b.visit(su_a, pa_a, at(days=2), tasks=["mine"])
    visit_b = await b.visit(su_b, pa_b, at(days=2), tasks=["medication", "wash"])
    uncovered_b = await b.visit(su_b, None, at(days=3), status="NEEDS_COVER", tasks=["lunch"])
    uncovered_none = await b.visit(su_none, None, at(days=4), status="NEEDS_COVER", tasks=["shop"])
    window_b = await b.window(pa_b, at(days=5))
    pa_pool = await b.pa("Poppy Pool")  # on no team, in B's pool
    pool_b = await b.pool("East", pas=[pa_b, pa_pool], clusters=[cluster_b])
    start = at(days=10)
    absence_b = Absence(
        pa_id=pa_b.id,
        kind="HOLIDAY",
        during=Range(start, start + dt.timedelta(days=2), bounds="[)"),
        recorded_by_id=coord_b.id,
    )
    db.add(absence_b)
    await db.flush()
    request_b = CoverRequest(visit_id=uncovered_b.id, reason="MANUAL", opened_by_id=coord_b.id)
    db.add(request_b)
    await db.flush()
    offer_b = CoverOffer(
        cover_request_id=request_b.id,
        pa_id=pa_b.id,
        offered_by_id=coord_b.id,
        expires_at=at(days=1),
    )
    db.add(offer_b)
    await db.flush()
    out = {
        "coord_a_pk": str(coord_a.id),
        "coord_a": gid("CoopMember", coord_a.id),
        "coord_b": gid("CoopMember", coord_b.id),
        "a": gid("Cluster", cluster_a.id),
        "b": gid("Cluster", cluster_b.id),
        "planned_b": gid("Cluster", planned_b.id),
        "su_a": gid("ServiceUser", su_a.id),
        "carer_a": gid("Carer", carer_a.id),
        "pa_a": gid("PersonalAssistant", pa_a.id),
        "su_b": gid("ServiceUser", su_b.id),
        "carer_b": gid("Carer", carer_b.id),
        "pa_b": gid("PersonalAssistant", pa_b.id),
        "pa_pool": gid("PersonalAssistant", pa_pool.id),
        "su_none": gid("ServiceUser", su_none.id),
        "visit_b": gid("Visit", visit_b.id),
        "uncovered_b": gid("Visit", uncovered_b.id),
        "uncovered_none": gid("Visit", uncovered_none.id),
        "window_b": gid("AvailabilityWindow", window_b.id),
        "pool_b": gid("Pool", pool_b.id),
        "absence_b": gid("Absence", absence_b.id),
        "request_b": gid("CoverRequest", request_b.id),
        "offer_b": gid("CoverOffer", offer_b.id),
    }
    await db.commit()
    return out


@dataclass(frozen=True)
class Write:
    label: str
    document: str
    variables: dict[str, Any]
    refused: bool


ID = "ID!"


def call(names: dict[str, str], field: str, refused: bool = True, **args: tuple[str, Any]) -> Write:
    """One mutation field with its arguments as variables: `name=(GraphQL type, value)`."""
    params = ", ".join(f"${k}: {kind}" for k, (kind, _) in args.items())
    passed = ", ".join(f"{k}: ${k}" for k in args)
    document = f"mutation({params}) {{ {field}({passed}) {{ errors {{ code }} }} }}"
    shown = [
        f"{k}={names.get(v, '...') if isinstance(v, str) else '...'}" for k, (_, v) in args.items()
    ]
    return Write(
        f"{field}({', '.join(shown)})", document, {k: v for k, (_, v) in args.items()}, refused
    )


def iso(days: float) -> str:
    return at(days=days).isoformat()


def writes(i: dict[str, str]) -> list[Write]:
    """Every write a coordinator's role may make, aimed at what is not theirs (all refused),
    and one allowed write that touches another cluster's pool."""
    names = {v: k for k, v in i.items()}

    def w(field: str, refused: bool = True, **args: tuple[str, Any]) -> Write:
        return call(names, field, refused, **args)

    def to(key: str) -> tuple[str, str]:
        return ID, i[key]

    week = at(days=7)
    return [
        # Clusters: the attack of issue 6, into their own cluster and one just created.
        *(
            w("addServiceUserToCluster", clusterId=to(c), serviceUserId=to(s))
            for c in ("a", "fresh", "b", "planned_b")
            for s in ("su_b", "su_none")
        ),
        w("updateCluster", id=to("b"),
          input=("UpdateClusterInput!", {"supportWorkerId": i["coord_a"]})),
        w("updateCluster", id=to("planned_b"), input=("UpdateClusterInput!", {"status": "ACTIVE"})),
        w("closeCluster", id=to("b")),
        w("removeServiceUserFromCluster", clusterId=to("b"), serviceUserId=to("su_b")),
        # Another coordinator's PA (on their team, or in a pool serving their cluster) is not
        # taken onto one's own team: their rota would become one's to change.
        *(
            w("addPersonalAssistantToCluster", clusterId=to(c), paId=to(p))
            for c, p in (("a", "pa_b"), ("fresh", "pa_b"), ("a", "pa_pool"), ("b", "pa_b"))
        ),
        w("addPersonalAssistantToCluster", clusterId=to("planned_b"), paId=to("pa_a")),
        w("removePersonalAssistantFromCluster", clusterId=to("b"), paId=to("pa_b")),
        # Members.
        w("registerServiceUser", input=("RegisterServiceUserInput!", {
            "name": "Sly Entry", "funding": "SELF_FUNDED", "needs": [], "plannedWeeklyHours": 1,
            "clusterId": i["b"]})),
        w("registerPersonalAssistant", input=("RegisterPersonalAssistantInput!", {
            "name": "Pam New", "contractedWeeklyHours": 1, "hourlyPayPence": 1300,
            "maxTravelKm": 1, "clusterId": i["b"]})),
        *(
            w("registerCarer", input=("RegisterCarerInput!", {"name": "Con", "serviceUserIds": su}))
            for su in ([i["su_b"]], [i["su_a"], i["su_b"]], [i["su_none"]])
        ),
        w("linkCarer", carerId=to("carer_b"), serviceUserId=to("su_a")),
        w("linkCarer", carerId=to("carer_a"), serviceUserId=to("su_b")),
        w("unlinkCarer", carerId=to("carer_b"), serviceUserId=to("su_b")),
        *(
            w("updateMember", id=to(m), input=("UpdateMemberInput!", {"phone": "07700 900999"}))
            for m in ("su_b", "carer_b", "pa_b", "su_none", "coord_b")
        ),
        w("updateServiceUser", id=to("su_b"), input=("UpdateServiceUserInput!", {"needs": []})),
        w("updatePersonalAssistant", id=to("pa_b"),
          input=("UpdatePersonalAssistantInput!", {"hourlyPayPence": 1})),
        w("setRegularPersonalAssistants", serviceUserId=to("su_b"), paIds=("[ID!]!", [i["pa_a"]])),
        # Visits and cover.
        *(
            w("scheduleVisit", input=("ScheduleVisitInput!", {
                "serviceUserId": i[su], "startsAt": iso(6), "endsAt": iso(6.05), "tasks": ["x"]}))
            for su in ("su_b", "su_none")
        ),
        w("scheduleRecurringVisits", input=("ScheduleRecurringVisitsInput!", {
            "serviceUserId": i["su_b"], "firstStartsAt": week.isoformat(), "durationMinutes": 30,
            "weekdays": [week.isoweekday()],
            "until": (week + dt.timedelta(days=14)).date().isoformat()})),
        w("rescheduleVisit", id=to("visit_b"),
          input=("RescheduleVisitInput!", {"startsAt": iso(8), "endsAt": iso(8.05)})),
        w("cancelVisit", id=to("visit_b")),
        w("assignVisitPa", id=to("uncovered_b"), paId=to("pa_a")),
        w("openCoverRequest", visitId=to("visit_b")),
        w("openCoverRequest", visitId=to("uncovered_none")),
        w("cancelCoverRequest", id=to("request_b")),
        w("offerCover", input=("OfferCoverInput!", {
            "coverRequestId": i["request_b"], "paIds": [i["pa_a"]]})),
        w("withdrawCoverOffer", id=to("offer_b")),
        # A PA's rota: absences and availability.
        w("recordAbsence", input=("RecordAbsenceInput!", {
            "paId": i["pa_b"], "kind": "SICKNESS", "startsAt": iso(1), "endsAt": iso(4)})),
        w("updateAbsence", id=to("absence_b"), input=("UpdateAbsenceInput!", {"startsAt": iso(1)})),
        w("cancelAbsence", id=to("absence_b")),
        w("addAvailabilityWindow", input=("AddAvailabilityWindowInput!", {
            "paId": i["pa_b"], "startsAt": iso(9), "endsAt": iso(9.1)})),
        w("setWeeklyAvailability",
          input=("SetWeeklyAvailabilityInput!", {"paId": i["pa_b"], "slots": []})),
        w("removeAvailabilityWindow", id=to("window_b")),
        # Pools.
        w("updatePool", id=to("pool_b"), input=("UpdatePoolInput!", {"sharedWithPartners": True})),
        w("addPersonalAssistantToPool", poolId=to("pool_b"), paId=to("pa_a")),
        w("removePersonalAssistantFromPool", poolId=to("pool_b"), paId=to("pa_b")),
        w("removeClusterFromPool", poolId=to("pool_b"), clusterId=to("b")),
        w("addClusterToPool", poolId=to("pool_b"), clusterId=to("planned_b")),
        # Allowed: their own cluster joins B's pool (its PAs may then be booked for their
        # people); it shows them nothing new of B's people.
        w("addClusterToPool", refused=False, poolId=to("pool_b"), clusterId=to("a")),
        # Allowed: they share their own PA with B's active team.
        w("addPersonalAssistantToCluster", refused=False, clusterId=to("b"), paId=to("pa_a")),
    ]  # fmt: skip


async def test_no_write_widens_a_coordinators_access(
    api: Api, db: AsyncSession, ids: dict[str, str]
) -> None:
    token = api.token(Role.COORDINATOR, int(ids["coord_a_pk"]))
    start = await seen(api, token)
    # The caller's own scope is what the test expects: so the snapshot is meaningful.
    assert ids["su_a"] in start.personal and ids["su_b"] not in start.members

    before = start
    created = await api.data(
        """mutation { createCluster(input: {name: "Fresh", kind: GEOGRAPHIC,
             localAuthority: "E09000003", postcodeDistricts: ["N12"]}) {
             cluster { id } errors { code } } }""",
        token=token,
    )
    assert created["createCluster"]["errors"] == []
    fresh = created["createCluster"]["cluster"]["id"]
    assert not (after := await seen(api, token)).grew_beyond(before)

    problems: list[str] = []
    for write in writes({**ids, "fresh": fresh}):
        label, refused = write.label, write.refused
        before, rows = after, await every_row(db)
        data = await api.data(write.document, write.variables, token=token)
        payload = next(iter(data.values()))
        codes = {e["code"] for e in payload["errors"]}
        after = await seen(api, token)
        if grew := after.grew_beyond(before):
            problems.append(f"{label}: the caller now sees {grew}")
        if refused and not (codes and codes <= {"NOT_FOUND", "FORBIDDEN"}):
            problems.append(f"{label}: expected a refusal, got {codes or 'success'}")
        if not refused and codes:
            problems.append(f"{label}: expected success, got {codes}")
        if codes and await every_row(db) != rows:
            problems.append(f"{label}: refused, yet the data changed")
    assert not problems, "\n".join(problems)
    assert not after.grew_beyond(start)
