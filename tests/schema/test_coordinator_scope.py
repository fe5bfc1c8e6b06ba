"""A coordinator sees the visits of their own clusters' people only, whichever filter or
count they use; a PA's time elsewhere shows as bare busy periods (issue 6, point 2)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy.dialects.postgresql import Range
from sqlalchemy.ext.asyncio import AsyncSession

from care.enums import Role
from care.models import Absence, ClusterPa, CoverOffer, CoverRequest
from tests.conftest import Api, StatementCounter
from tests.factories import Build, gid

UTC = dt.UTC

VISITS = """query($pa: ID, $su: ID, $cluster: ID, $first: Int, $after: String) {
  visits(paId: $pa, serviceUserId: $su, clusterId: $cluster, first: $first, after: $after) {
    totalCount pageInfo { hasNextPage endCursor }
    edges { node { id tasks serviceUser { name } } } } }"""

PA_VISITS = """query($id: ID!) { node(id: $id) { ... on PersonalAssistant {
  visits { totalCount edges { node { id tasks } } } } } }"""

BUSY = """query($id: ID!, $from: DateTime!, $before: DateTime!) {
  node(id: $id) { ... on PersonalAssistant { name
    busyPeriods(startsFrom: $from, startsBefore: $before) { startsAt endsAt } } } }"""


def day(n: int, hour: int = 0) -> dt.datetime:
    """A fixed hour n days from today (UTC midnight), so periods are easy to state."""
    today = dt.datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return today + dt.timedelta(days=n, hours=hour)


@dataclass
class World:
    coordinator_a: Any
    coordinator_b: Any
    coordinator_c: Any
    cluster_b: Any
    su_a: Any
    su_b: Any
    carer_a: Any
    shared_pa: Any
    team_pa: Any
    idle_pa: Any
    visit_a: Any
    visit_b: Any
    filled_b: Any
    offer_b: Any


@pytest.fixture
async def w(db: AsyncSession) -> World:
    b = Build(db)
    await b.las()
    await b.coop()
    coordinator_a = await b.worker("Ann A-Coordinator")
    coordinator_b = await b.worker("Ben B-Coordinator")
    coordinator_c = await b.worker("Cat C-Coordinator")
    cluster_a = await b.cluster("A", support_worker=coordinator_a)
    cluster_b = await b.cluster("B", support_worker=coordinator_b)
    await b.cluster("C", support_worker=coordinator_c)
    su_a = await b.service_user("Ada A", cluster=cluster_a)
    su_b = await b.service_user("Bob B", cluster=cluster_b, email="bob@example.org")
    carer_a = await b.carer(su_a)
    shared_pa = await b.pa("Sam Shared", cluster=cluster_a)
    db.add(ClusterPa(cluster_id=cluster_b.id, pa_id=shared_pa.id))
    team_pa = await b.pa("Tia Team", cluster=cluster_a)
    idle_pa = await b.pa("Ida Idle")
    # Day 1: 10-11 in A, 11-12 in B (touching: one busy period 10-12).
    visit_a = await b.visit(su_a, shared_pa, day(1, 10), tasks=["breakfast"])
    visit_b = await b.visit(su_b, shared_pa, day(1, 11), tasks=["insulin injection"])
    # Day 2: B's visit filled by the shared PA through cover (a request and an offer).
    filled_b = await b.visit(su_b, shared_pa, day(2, 9), 90, tasks=["wound dressing"])
    # Neither a cancelled visit nor a cancelled absence is busy time.
    await b.visit(su_b, shared_pa, day(3, 9), status="CANCELLED")
    db.add_all(
        [
            Absence(
                pa_id=shared_pa.id,
                kind="SICKNESS",
                during=Range(day(5), day(7), bounds="[)"),
                note="hospital appointment",
            ),
            Absence(
                pa_id=shared_pa.id,
                kind="HOLIDAY",
                during=Range(day(8), day(9), bounds="[)"),
                cancelled_at=dt.datetime.now(UTC),
            ),
        ]
    )
    await db.flush()
    now = dt.datetime.now(UTC)
    request = CoverRequest(
        visit_id=filled_b.id,
        reason="MANUAL",
        status="FILLED",
        filled_by_pa_id=shared_pa.id,
        closed_at=now,
    )
    db.add(request)
    await db.flush()
    offer = CoverOffer(
        cover_request_id=request.id,
        pa_id=shared_pa.id,
        status="ACCEPTED",
        expires_at=now + dt.timedelta(hours=2),
        responded_at=now,
    )
    db.add(offer)
    await db.commit()
    return World(
        coordinator_a,
        coordinator_b,
        coordinator_c,
        cluster_b,
        su_a,
        su_b,
        carer_a,
        shared_pa,
        team_pa,
        idle_pa,
        visit_a,
        visit_b,
        filled_b,
        offer,
    )


def as_a(api: Api, w: World) -> str:
    return api.token(Role.COORDINATOR, w.coordinator_a.id)


async def visits(api: Api, token: str, **filters: Any) -> dict[str, Any]:
    data = await api.data(VISITS, filters, token=token)
    result: dict[str, Any] = data["visits"]
    return result


def ids(connection: dict[str, Any]) -> list[str]:
    return [e["node"]["id"] for e in connection["edges"]]


# --- visits: rows, filters, counts and cursors -------------------------------------------


async def test_filter_by_a_shared_pa_gives_only_own_clusters_visits(api: Api, w: World) -> None:
    found = await visits(api, as_a(api, w), pa=gid("PersonalAssistant", w.shared_pa.id))
    assert found["totalCount"] == 1
    assert ids(found) == [gid("Visit", w.visit_a.id)]
    assert found["edges"][0]["node"]["tasks"] == ["breakfast"]
    assert found["pageInfo"]["hasNextPage"] is False


async def test_cursors_walk_only_the_visible_visits(api: Api, w: World) -> None:
    shared = gid("PersonalAssistant", w.shared_pa.id)
    first = await visits(api, as_a(api, w), pa=shared, first=1)
    assert (first["totalCount"], first["pageInfo"]["hasNextPage"]) == (1, False)
    rest = await visits(api, as_a(api, w), pa=shared, first=1, after=first["pageInfo"]["endCursor"])
    assert rest["edges"] == []


async def test_a_pas_own_visit_list_is_cut_the_same_way(api: Api, w: World) -> None:
    data = await api.data(
        PA_VISITS, {"id": gid("PersonalAssistant", w.shared_pa.id)}, token=as_a(api, w)
    )
    connection = data["node"]["visits"]
    assert connection["totalCount"] == 1
    assert [e["node"]["tasks"] for e in connection["edges"]] == [["breakfast"]]


async def test_filter_by_a_person_of_another_cluster_gives_nothing(api: Api, w: World) -> None:
    hidden = await visits(api, as_a(api, w), su=gid("ServiceUser", w.su_b.id))
    unknown = await visits(api, as_a(api, w), su=gid("ServiceUser", 999_999))
    assert hidden == unknown
    assert hidden["totalCount"] == 0


async def test_filter_by_another_cluster_gives_nothing(api: Api, w: World) -> None:
    found = await visits(api, as_a(api, w), cluster=gid("Cluster", w.cluster_b.id))
    assert (found["totalCount"], found["edges"]) == (0, [])


async def test_unfiltered_list_and_nodes_leave_other_clusters_out(api: Api, w: World) -> None:
    found = await visits(api, as_a(api, w))
    assert ids(found) == [gid("Visit", w.visit_a.id)]
    assert found["totalCount"] == 1
    query = "query($id: ID!) { node(id: $id) { ... on Visit { startsAt tasks } } }"
    for visit in (w.visit_b, w.filled_b):
        data = await api.data(query, {"id": gid("Visit", visit.id)}, token=as_a(api, w))
        assert data["node"] is None


async def test_the_other_clusters_coordinator_still_sees_their_visits(api: Api, w: World) -> None:
    token = api.token(Role.COORDINATOR, w.coordinator_b.id)
    found = await visits(api, token, pa=gid("PersonalAssistant", w.shared_pa.id))
    # Two active visits and a cancelled one, all Bob's; none of A's.
    assert found["totalCount"] == 3
    assert gid("Visit", w.visit_a.id) not in ids(found)
    assert ["insulin injection"] in [e["node"]["tasks"] for e in found["edges"]]
    assert {e["node"]["serviceUser"]["name"] for e in found["edges"]} == {"Bob B"}


async def test_cover_requests_and_offers_of_other_clusters_stay_hidden(api: Api, w: World) -> None:
    requests = "{ coverRequests { totalCount edges { node { visit { tasks } } } } }"
    a = await api.data(requests, token=as_a(api, w))
    assert a["coverRequests"] == {"totalCount": 0, "edges": []}
    by_cluster = await api.data(
        "query($c: ID!) { coverRequests(clusterId: $c) { totalCount } }",
        {"c": gid("Cluster", w.cluster_b.id)},
        token=as_a(api, w),
    )
    assert by_cluster["coverRequests"]["totalCount"] == 0
    offer = "query($id: ID!) { node(id: $id) { ... on CoverOffer { status } } }"
    data = await api.data(offer, {"id": gid("CoverOffer", w.offer_b.id)}, token=as_a(api, w))
    assert data["node"] is None
    b = await api.data(requests, token=api.token(Role.COORDINATOR, w.coordinator_b.id))
    assert b["coverRequests"]["totalCount"] == 1


# --- busy periods ------------------------------------------------------------------------


async def busy(
    api: Api, token: str | None, pa: Any, start: dt.datetime, end: dt.datetime
) -> dict[str, Any]:
    variables = {
        "id": gid("PersonalAssistant", pa.id),
        "from": start.isoformat(),
        "before": end.isoformat(),
    }
    return await api.query(BUSY, variables, token=token)


def periods(body: dict[str, Any]) -> list[tuple[dt.datetime, dt.datetime]] | None:
    assert not body.get("errors"), body["errors"]
    found = body["data"]["node"]["busyPeriods"]
    if found is None:
        return None
    return [
        (dt.datetime.fromisoformat(p["startsAt"]), dt.datetime.fromisoformat(p["endsAt"]))
        for p in found
    ]


EXPECTED = [
    (day(1, 10), day(1, 12)),  # A's and B's visits, touching: merged
    (day(2, 9), day(2, 10) + dt.timedelta(minutes=30)),  # B's visit filled by cover
    (day(5), day(7)),  # sickness (the cancelled holiday is not busy)
]


async def test_a_coordinator_sees_when_a_shared_pa_is_busy_in_every_cluster(
    api: Api, w: World
) -> None:
    body = await busy(api, as_a(api, w), w.shared_pa, day(0), day(10))
    assert periods(body) == EXPECTED
    assert set(body["data"]["node"]["busyPeriods"][0]) == {"startsAt", "endsAt"}


async def test_busy_periods_are_clipped_to_the_range(api: Api, w: World) -> None:
    body = await busy(api, as_a(api, w), w.shared_pa, day(1, 11), day(6))
    assert periods(body) == [
        (day(1, 11), day(1, 12)),
        EXPECTED[1],
        (day(5), day(6)),
    ]


@pytest.mark.parametrize("who", ["admin", "coordinator_a", "coordinator_c", "itself"])
async def test_who_may_read_busy_time(api: Api, w: World, who: str) -> None:
    token = {
        "admin": api.token(Role.ADMIN),
        "coordinator_a": as_a(api, w),
        "coordinator_c": api.token(Role.COORDINATOR, w.coordinator_c.id),
        "itself": api.token(Role.PA, w.shared_pa.id),
    }[who]
    assert periods(await busy(api, token, w.shared_pa, day(0), day(10))) == EXPECTED


@pytest.mark.parametrize("who", ["team_pa", "service_user", "carer"])
async def test_others_who_see_the_pa_get_no_busy_time(api: Api, w: World, who: str) -> None:
    token = {
        "team_pa": api.token(Role.PA, w.team_pa.id),
        "service_user": api.token(Role.SERVICE_USER, w.su_a.id),
        "carer": api.token(Role.CARER, w.carer_a.id),
    }[who]
    body = await busy(api, token, w.shared_pa, day(0), day(10))
    assert body["data"]["node"]["name"] == "Sam Shared"
    assert periods(body) is None


@pytest.mark.parametrize("who", ["idle_pa", "analyst", "anonymous"])
async def test_outsiders_cannot_reach_a_pa(api: Api, w: World, who: str) -> None:
    token = {
        "idle_pa": api.token(Role.PA, w.idle_pa.id),
        "analyst": api.token(Role.LA_ANALYST, la="E09000003"),
        "anonymous": None,
    }[who]
    body = await busy(api, token, w.shared_pa, day(0), day(10))
    assert "errors" not in body
    assert body["data"] == {"node": None}


@pytest.mark.parametrize(
    "start,end",
    [
        (day(2), day(2)),  # empty
        (day(3), day(2)),  # backwards
        (day(0), day(63)),  # longer than 62 days
        (
            dt.datetime(9999, 12, 31, 23, 0, tzinfo=dt.timezone(-dt.timedelta(hours=5))),
            dt.datetime(9999, 12, 31, 23, 30, tzinfo=dt.timezone(-dt.timedelta(hours=5))),
        ),
    ],
)
async def test_a_bad_range_is_a_coded_error(
    api: Api, w: World, start: dt.datetime, end: dt.datetime
) -> None:
    body = await busy(api, as_a(api, w), w.shared_pa, start, end)
    codes = {e["extensions"]["code"] for e in body["errors"]}
    assert codes == {"BAD_USER_INPUT"}, body["errors"]


async def test_62_days_is_allowed(api: Api, w: World) -> None:
    assert periods(await busy(api, as_a(api, w), w.shared_pa, day(0), day(62))) == EXPECTED


async def test_busy_time_of_a_whole_team_is_one_statement(
    api: Api, w: World, db: AsyncSession, sql_counter: StatementCounter
) -> None:
    b = Build(db)
    cluster = await b.cluster("Big", support_worker=w.coordinator_c)
    su = await b.service_user("Sue Big", cluster=cluster)
    for n in range(10):
        pa = await b.pa(f"PA {n}", cluster=cluster)
        await b.visit(su, pa, day(1, n), tasks=["lunch"])
    await db.commit()
    query = """query($id: ID!, $from: DateTime!, $before: DateTime!) {
      cluster(id: $id) { personalAssistants(first: 20) { nodes { name
        busyPeriods(startsFrom: $from, startsBefore: $before) { startsAt } } } } }"""
    variables = {
        "id": gid("Cluster", cluster.id),
        "from": day(0).isoformat(),
        "before": day(7).isoformat(),
    }
    sql_counter.statements.clear()
    token = api.token(Role.COORDINATOR, w.coordinator_a.id)
    data = await api.data(query, variables, token=token)
    nodes = data["cluster"]["personalAssistants"]["nodes"]
    assert len(nodes) == 10
    assert all(len(n["busyPeriods"]) == 1 for n in nodes)
    assert sum("range_agg" in s for s in sql_counter.statements) == 1


async def test_each_pa_reads_their_own_busy_time(api: Api, w: World, db: AsyncSession) -> None:
    # The statement is built once per role and rerun with each caller's values.
    await Build(db).visit(w.su_a, w.team_pa, day(4, 14))
    await db.commit()
    shared = await busy(api, api.token(Role.PA, w.shared_pa.id), w.shared_pa, day(0), day(10))
    team = await busy(api, api.token(Role.PA, w.team_pa.id), w.team_pa, day(0), day(10))
    assert periods(shared) == EXPECTED
    assert periods(team) == [(day(4, 14), day(4, 15))]
