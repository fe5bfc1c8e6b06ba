"""Figures through the API: exact numbers on arranged visits and cover requests, half-open
periods, no leak between clusters, who may ask, and a constant statement count."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from care.enums import Role
from care.models import Cluster, ClusterServiceUser, CoverRequest, Member, Visit
from tests.conftest import Api, StatementCounter
from tests.factories import Build, at, gid

FIGURE_FIELDS = """cluster { id name } from to coverRequestsOpened coverRequestsFilled
  fillRate medianTimeToFillMinutes visitsMissed hoursDelivered visitsCompleted"""
CLUSTER_FIGURES = f"""query($ids: [ID!], $from: DateTime, $to: DateTime) {{
  clusterFigures(clusterIds: $ids, from: $from, to: $to) {{ {FIGURE_FIELDS} }} }}"""
CONTINUITY = """query($id: ID!) {
  serviceUserContinuity(clusterId: $id) {
    serviceUser { id name }
    distinctPasLast28Days visitsLast28Days visitsByRegularPas regularPaShare } }"""

DAY = dt.timedelta(days=1)
MINUTE = dt.timedelta(minutes=1)


@dataclass
class World:
    t0: dt.datetime  # every arranged time is relative to this (rounded to the minute)
    coordinator: Member
    other_coordinator: Member
    idle_coordinator: Member
    a: Cluster
    b: Cluster
    empty: Cluster
    su1: Member
    su2: Member
    su3: Member
    other_su: Member
    pa1: Member
    carer: Member


async def cover(
    db: AsyncSession,
    visit: Visit,
    status: str,
    opened_at: dt.datetime,
    *,
    after: dt.timedelta | None = None,
    filled_by: Member | None = None,
    reason: str = "ABSENCE",
) -> None:
    db.add(
        CoverRequest(
            visit_id=visit.id,
            reason=reason,
            status=status,
            opened_at=opened_at,
            closed_at=opened_at + after if after is not None else None,
            filled_by_pa_id=filled_by.id if filled_by is not None else None,
        )
    )
    await db.flush()


@pytest.fixture
async def w(db: AsyncSession) -> World:
    t0 = at()
    b = Build(db)
    await b.las()
    await b.coop()
    coordinator = await b.worker("Cora Ordinator")
    other_coordinator = await b.worker("Otto Ordinator")
    idle_coordinator = await b.worker("Ida Idle")
    a = await b.cluster("Finchley", support_worker=coordinator)
    bc = await b.cluster("Barnet East", support_worker=other_coordinator)
    empty = await b.cluster("Empty")
    su1 = await b.service_user("Ada User", cluster=a)
    su2 = await b.service_user("Ben User", cluster=a, email="ben@example.org")
    su3 = await b.service_user("Cy User", cluster=a, email="cy@example.org")
    other_su = await b.service_user("Bob Other", cluster=bc, email="bob@example.org")
    carer = await b.carer(su1)
    pa1 = await b.pa("Pat One", cluster=a)
    pa2 = await b.pa("Pam Two", cluster=a)
    pa3 = await b.pa("Tim Three", cluster=a)
    other_pa = await b.pa("Sid Other", cluster=bc)
    await b.regular(su1, pa1)
    await b.regular(su2, pa2)
    await b.regular(su3, pa1)
    await b.regular(other_su, other_pa)

    # su1 (cluster A); regular PA: pa1.
    await b.visit(su1, pa1, t0 - 1 * DAY, 60, "COMPLETED")
    await b.visit(su1, pa1, t0 - 2 * DAY, 90, "COMPLETED")  # starts exactly at a `to` below
    v3 = await b.visit(su1, pa2, t0 - 3 * DAY, 30, "COMPLETED")
    v4 = await b.visit(su1, pa3, t0 - 4 * DAY, 60, "COMPLETED")
    await b.visit(su1, pa2, t0 - 5 * DAY, 60, "MISSED")
    await b.visit(su1, pa3, t0 - 6 * DAY, 60, "SCHEDULED")  # in the past, never completed
    v7 = await b.visit(su1, None, t0 - 7 * DAY, 60, "CANCELLED")
    await b.visit(su1, other_pa, t0 - 9 * DAY, 45, "COMPLETED")  # a PA of cluster B covers
    v8 = await b.visit(su1, pa2, t0 - 40 * DAY, 60, "COMPLETED")  # before the default period
    v9 = await b.visit(su1, pa1, t0 + 2 * DAY, 60, "SCHEDULED")  # future
    v10 = await b.visit(su1, None, t0 + 3 * DAY, 60, "NEEDS_COVER")
    # su2 (cluster A); regular PA: pa2.
    await b.visit(su2, pa2, t0 - 1 * DAY - dt.timedelta(hours=3), 120, "COMPLETED")
    await b.visit(su2, None, t0 - 2 * DAY, 60, "MISSED")
    w3 = await b.visit(su2, pa2, t0 - 8 * DAY, 60, "COMPLETED")
    await b.visit(su2, pa1, t0 - 10 * DAY, 60, "COMPLETED")  # starts exactly at a `from`
    # su3 (cluster A): no visits. other_su (cluster B); regular PA: other_pa.
    x1 = await b.visit(other_su, other_pa, t0 - 1 * DAY, 600, "COMPLETED")
    await b.visit(other_su, other_pa, t0 - 2 * DAY, 60, "MISSED")
    x3 = await b.visit(other_su, None, t0 + 1 * DAY, 60, "NEEDS_COVER")

    # Cover requests of cluster A: three fills (30, 90 and 240 minutes), one open, one
    # cancelled, one returned, and a fill opened before the default period.
    await cover(db, v4, "FILLED", t0 - 10 * DAY, after=30 * MINUTE, filled_by=pa3)
    await cover(db, v3, "FILLED", t0 - 9 * DAY, after=90 * MINUTE, filled_by=pa2)
    await cover(db, w3, "FILLED", t0 - 8 * DAY, after=240 * MINUTE, filled_by=pa2)
    await cover(db, v9, "RETURNED", t0 - 3 * DAY, after=60 * MINUTE)
    await cover(db, v7, "CANCELLED", t0 - 2 * DAY, after=DAY, reason="MANUAL")
    await cover(db, v10, "OPEN", t0 - 1 * DAY)
    await cover(db, v8, "FILLED", t0 - 35 * DAY, after=10 * MINUTE, filled_by=pa2)
    # Cluster B: one fill after 5 minutes, one open.
    await cover(db, x1, "FILLED", t0 - 3 * DAY, after=5 * MINUTE, filled_by=other_pa)
    await cover(db, x3, "OPEN", t0 - 1 * DAY)
    await db.commit()
    return World(
        t0,
        coordinator,
        other_coordinator,
        idle_coordinator,
        a,
        bc,
        empty,
        su1,
        su2,
        su3,
        other_su,
        pa1,
        carer,
    )


# Over the default period (the 28 days up to now).
A_FIGURES = {
    "coverRequestsOpened": 6,
    "coverRequestsFilled": 3,
    "fillRate": 0.5,
    "medianTimeToFillMinutes": 90.0,
    "visitsMissed": 2,
    "visitsCompleted": 8,
    "hoursDelivered": 8.75,  # 60+90+30+60+45 (su1) + 120+60+60 (su2) = 525 minutes
}
B_FIGURES = {
    "coverRequestsOpened": 2,
    "coverRequestsFilled": 1,
    "fillRate": 0.5,
    "medianTimeToFillMinutes": 5.0,
    "visitsMissed": 1,
    "visitsCompleted": 1,
    "hoursDelivered": 10.0,
}
EMPTY_FIGURES = {
    "coverRequestsOpened": 0,
    "coverRequestsFilled": 0,
    "fillRate": None,
    "medianTimeToFillMinutes": None,
    "visitsMissed": 0,
    "visitsCompleted": 0,
    "hoursDelivered": 0.0,
}


def numbers(figures: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in figures.items() if k not in ("cluster", "from", "to")}


def parse(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value)


def cid(cluster: Cluster) -> str:
    return gid("Cluster", cluster.id)


async def cluster_figures(
    api: Api, token: str, ids: list[str] | None = None, **period: str
) -> list[dict[str, Any]]:
    variables: dict[str, Any] = {"ids": ids, **period}
    result: list[dict[str, Any]] = (await api.data(CLUSTER_FIGURES, variables, token=token))[
        "clusterFigures"
    ]
    return result


async def continuity(api: Api, token: str, cluster: str) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = (await api.data(CONTINUITY, {"id": cluster}, token=token))[
        "serviceUserContinuity"
    ]
    return result


def error_code(body: dict[str, Any]) -> str:
    assert body["data"] is None, body
    assert len(body["errors"]) == 1, body["errors"]
    code: str = body["errors"][0]["extensions"]["code"]
    return code


# --- cluster figures -----------------------------------------------------------------------


async def test_coordinator_gets_exact_figures_of_their_cluster_over_the_default_period(
    api: Api, w: World
) -> None:
    before = dt.datetime.now(dt.UTC)
    rows = await cluster_figures(api, api.token(Role.COORDINATOR, w.coordinator.id))
    after = dt.datetime.now(dt.UTC)

    assert [r["cluster"] for r in rows] == [{"id": cid(w.a), "name": "Finchley"}]
    (row,) = rows
    assert numbers(row) == A_FIGURES
    start, end = parse(row["from"]), parse(row["to"])
    assert before <= end <= after
    assert end - start == dt.timedelta(days=28)


async def test_admin_gets_every_cluster_by_id_and_no_data_leaks_between_them(
    api: Api, w: World
) -> None:
    rows = await cluster_figures(api, api.token(Role.ADMIN))
    assert [r["cluster"]["name"] for r in rows] == ["Finchley", "Barnet East", "Empty"]
    assert [numbers(r) for r in rows] == [A_FIGURES, B_FIGURES, EMPTY_FIGURES]


async def test_explicit_period_is_half_open_on_starts(api: Api, w: World) -> None:
    start, end = w.t0 - 10 * DAY, w.t0 - 2 * DAY
    rows = await cluster_figures(
        api,
        api.token(Role.ADMIN),
        [cid(w.a), cid(w.b)],
        **{"from": start.isoformat(), "to": end.isoformat()},
    )
    assert [(parse(r["from"]), parse(r["to"])) for r in rows] == [(start, end)] * 2
    a, b = rows
    # Cover opened at -10d (the start) counts; -2d (the end) does not. The visits of -10d
    # count, the completed visit and the missed one starting at -2d do not.
    assert numbers(a) == {
        "coverRequestsOpened": 4,
        "coverRequestsFilled": 3,
        "fillRate": 0.75,
        "medianTimeToFillMinutes": 90.0,
        "visitsMissed": 1,
        "visitsCompleted": 5,
        "hoursDelivered": 4.25,  # 30 + 60 + 45 + 60 + 60 minutes
    }
    assert numbers(b) == {
        "coverRequestsOpened": 1,
        "coverRequestsFilled": 1,
        "fillRate": 1.0,
        "medianTimeToFillMinutes": 5.0,
        "visitsMissed": 0,
        "visitsCompleted": 0,
        "hoursDelivered": 0.0,
    }


async def test_only_to_given_means_the_28_days_before_it(api: Api, w: World) -> None:
    end = w.t0 - 2 * DAY
    (row,) = await cluster_figures(api, api.token(Role.ADMIN), [cid(w.b)], to=end.isoformat())
    assert parse(row["from"]) == end - 28 * DAY
    assert numbers(row)["coverRequestsOpened"] == 1  # the fill at -3d; not the open at -1d


async def test_asked_ids_come_back_in_order_once_and_forbidden_ones_are_absent(
    api: Api, w: World
) -> None:
    admin = api.token(Role.ADMIN)
    rows = await cluster_figures(api, admin, [cid(w.b), cid(w.a), cid(w.b)])
    assert [r["cluster"]["name"] for r in rows] == ["Barnet East", "Finchley"]
    assert [numbers(r) for r in rows] == [B_FIGURES, A_FIGURES]

    coordinator = api.token(Role.COORDINATOR, w.coordinator.id)
    asked = [
        cid(w.b),
        cid(w.empty),
        gid("Cluster", 999_999),
        gid("ServiceUser", w.a.id),  # an id of another type is no cluster
        cid(w.a),
    ]
    rows = await cluster_figures(api, coordinator, asked)
    assert [r["cluster"]["name"] for r in rows] == ["Finchley"]
    assert numbers(rows[0]) == A_FIGURES
    assert await cluster_figures(api, coordinator, []) == []


async def test_coordinator_of_another_cluster_gets_nothing_for_this_one(api: Api, w: World) -> None:
    other = api.token(Role.COORDINATOR, w.other_coordinator.id)
    assert await cluster_figures(api, other, [cid(w.a)]) == []
    assert await continuity(api, other, cid(w.a)) == []
    rows = await cluster_figures(api, other)
    assert [r["cluster"]["name"] for r in rows] == ["Barnet East"]
    assert numbers(rows[0]) == B_FIGURES

    idle = api.token(Role.COORDINATOR, w.idle_coordinator.id)
    assert await cluster_figures(api, idle) == []


async def test_a_person_shared_with_their_cluster_does_not_open_another_cluster(
    api: Api, db: AsyncSession, w: World
) -> None:
    """The coordinator of B may see Ada once she is in B too, but not cluster A's figures."""
    db.add(ClusterServiceUser(cluster_id=w.b.id, service_user_id=w.su1.id))
    await db.commit()
    other = api.token(Role.COORDINATOR, w.other_coordinator.id)
    assert await continuity(api, other, cid(w.a)) == []
    assert await cluster_figures(api, other, [cid(w.a)]) == []
    rows = await continuity(api, other, cid(w.b))
    assert [(r["serviceUser"]["name"], r["visitsLast28Days"]) for r in rows] == [
        ("Ada User", 5),
        ("Bob Other", 1),
    ]
    (b,) = await cluster_figures(api, other, [cid(w.b)])
    # Ada's visits and cover requests now count in B as well.
    assert (b["visitsCompleted"], b["coverRequestsOpened"]) == (1 + 5, 2 + 5)


@pytest.mark.parametrize(
    ("start", "end"),
    [
        (0, 0),  # empty period
        (-1, -2),  # ends before it starts
        (-367, 0),  # longer than 366 days
    ],
)
async def test_bad_periods_are_refused(api: Api, w: World, start: int, end: int) -> None:
    body = await api.query(
        CLUSTER_FIGURES,
        {"from": (w.t0 + start * DAY).isoformat(), "to": (w.t0 + end * DAY).isoformat()},
        token=api.token(Role.ADMIN),
    )
    assert error_code(body) == "BAD_USER_INPUT"


async def test_a_from_after_now_without_to_is_refused(api: Api, w: World) -> None:
    body = await api.query(
        CLUSTER_FIGURES, {"from": (w.t0 + DAY).isoformat()}, token=api.token(Role.ADMIN)
    )
    assert error_code(body) == "BAD_USER_INPUT"


async def test_a_period_of_366_days_is_allowed(api: Api, w: World) -> None:
    rows = await cluster_figures(
        api,
        api.token(Role.ADMIN),
        [cid(w.a)],
        **{"from": (w.t0 - 366 * DAY).isoformat(), "to": w.t0.isoformat()},
    )
    # Everything arranged before t0, now including the fill at -35d and the visit at -40d.
    assert numbers(rows[0]) == {
        "coverRequestsOpened": 7,
        "coverRequestsFilled": 4,
        "fillRate": 4 / 7,
        "medianTimeToFillMinutes": 60.0,  # of 10, 30, 90 and 240
        "visitsMissed": 2,
        "visitsCompleted": 9,
        "hoursDelivered": 9.75,
    }


# --- continuity ----------------------------------------------------------------------------


async def test_continuity_per_service_user_of_the_cluster(api: Api, w: World) -> None:
    for token in (api.token(Role.COORDINATOR, w.coordinator.id), api.token(Role.ADMIN)):
        rows = await continuity(api, token, cid(w.a))
        assert rows == [
            {
                # completed: pa1 x2 (regular), pa2, pa3, other_pa; missed, scheduled in
                # the past, cancelled and the visit 40 days ago do not count
                "serviceUser": {"id": gid("ServiceUser", w.su1.id), "name": "Ada User"},
                "distinctPasLast28Days": 4,
                "visitsLast28Days": 5,
                "visitsByRegularPas": 2,
                "regularPaShare": 0.4,
            },
            {
                # completed: pa2 x2 (regular), pa1 (the regular PA of someone else)
                "serviceUser": {"id": gid("ServiceUser", w.su2.id), "name": "Ben User"},
                "distinctPasLast28Days": 2,
                "visitsLast28Days": 3,
                "visitsByRegularPas": 2,
                "regularPaShare": pytest.approx(2 / 3),
            },
            {
                "serviceUser": {"id": gid("ServiceUser", w.su3.id), "name": "Cy User"},
                "distinctPasLast28Days": 0,
                "visitsLast28Days": 0,
                "visitsByRegularPas": 0,
                "regularPaShare": None,
            },
        ]


async def test_continuity_of_the_other_cluster_has_only_its_people(api: Api, w: World) -> None:
    rows = await continuity(api, api.token(Role.ADMIN), cid(w.b))
    assert rows == [
        {
            "serviceUser": {"id": gid("ServiceUser", w.other_su.id), "name": "Bob Other"},
            "distinctPasLast28Days": 1,
            "visitsLast28Days": 1,
            "visitsByRegularPas": 1,
            "regularPaShare": 1.0,
        }
    ]


async def test_continuity_of_unknown_or_empty_clusters_is_empty(api: Api, w: World) -> None:
    admin = api.token(Role.ADMIN)
    assert await continuity(api, admin, gid("Cluster", 999_999)) == []
    assert await continuity(api, admin, gid("ServiceUser", w.a.id)) == []
    assert await continuity(api, admin, cid(w.empty)) == []


# --- who may ask ---------------------------------------------------------------------------


@pytest.mark.parametrize("field", ["clusterFigures", "continuity"])
async def test_only_admins_and_coordinators_may_ask(api: Api, w: World, field: str) -> None:
    query, variables = (
        (CLUSTER_FIGURES, {"ids": [cid(w.a)]})
        if field == "clusterFigures"
        else (CONTINUITY, {"id": cid(w.a)})
    )
    body = await api.query(query, variables)
    assert error_code(body) == "UNAUTHENTICATED"
    for role, member in (
        (Role.PA, w.pa1.id),
        (Role.SERVICE_USER, w.su1.id),
        (Role.CARER, w.carer.id),
    ):
        body = await api.query(query, variables, token=api.token(role, member))
        assert error_code(body) == "FORBIDDEN", role
    analyst = api.tokens.issue(Role.LA_ANALYST, la_code="E09000003")
    body = await api.query(query, variables, token=analyst)
    assert error_code(body) == "FORBIDDEN"


# --- statement count -----------------------------------------------------------------------


@pytest.mark.parametrize("compiled", [False, True], ids=["resolvers", "compiled"])
async def test_one_statement_per_root_field_whatever_the_number_of_clusters(
    api: Api,
    app: Any,
    w: World,
    sql_counter: StatementCounter,
    compiled: bool,
    request: pytest.FixtureRequest,
) -> None:
    app.state.compiled_reads = compiled
    request.addfinalizer(lambda: setattr(app.state, "compiled_reads", True))
    admin = api.token(Role.ADMIN)
    counts = []
    for ids in ([cid(w.a)], [cid(w.a), cid(w.b), cid(w.empty)], None):
        sql_counter.count = 0
        lane = app.state.fast_lane_answered
        rows = await cluster_figures(api, admin, ids)
        # A repeated compiled read is answered by the fast lane (api/fastlane.py), on
        # asyncpg directly, which the counter does not see: one statement each.
        counts.append((len(rows), sql_counter.count + app.state.fast_lane_answered - lane))
    assert counts == [(1, 1), (3, 1), (3, 1)], sql_counter.statements

    sizes = []
    for cluster in (w.b, w.a):
        sql_counter.count = 0
        lane = app.state.fast_lane_answered
        rows = await continuity(api, admin, cid(cluster))
        sizes.append((len(rows), sql_counter.count + app.state.fast_lane_answered - lane))
    assert sizes == [(1, 1), (3, 1)], sql_counter.statements
