"""`serviceUserContinuity` compiles: declared once (`schema.types.root_list` over
`care.figures.continuity_select`, its filter `schema.filters.CONTINUITY`, the person an
`in_row` record of the same row), it is answered by one statement, byte for byte as the
resolvers answer, for every kind of caller, with the cluster's id written out or given by
a variable, a bad id, another type's id; and the 28 days up to now follow the clock of
each request, never the one the cached plan was compiled at."""

from __future__ import annotations

import base64
import datetime as dt
from typing import Any

import pytest
import time_machine
from sqlalchemy.ext.asyncio import AsyncSession

from care.enums import Role
from tests.conftest import MANAGING_REFUSED, Api, StatementCounter, managing_callers
from tests.factories import BARNET, Build, at, gid
from tests.schema.test_compiled_reads import Both, _exact

DAY = dt.timedelta(days=1)
HOUR = dt.timedelta(hours=1)  # each person's visits at their own hour: no PA is booked twice

# The person's fields, personal ones and relations included, and the figures.
FIELDS = """__typename
    serviceUser { __typename id name membershipClass joinedOn active email phone postcode
      latitude longitude funding needs plannedWeeklyHours clusters { name }
      carers { name } regularPersonalAssistants { name }
      visits(first: 2) { totalCount nodes { status pa { name } } } }
    distinctPasLast28Days visitsLast28Days visitsByRegularPas regularPaShare"""
VARIABLE = f"query($id: ID!) {{ serviceUserContinuity(clusterId: $id) {{ {FIELDS} }} }}"


def literal(cluster_id: str) -> str:
    return f'{{ serviceUserContinuity(clusterId: "{cluster_id}") {{ {FIELDS} }} }}'


@pytest.fixture
async def world(db: AsyncSession) -> dict[str, Any]:
    """Cluster A's people, each for one case of the figures, seeded around `t` (a whole
    minute, the clock the tests stand at first); cluster B's one person."""
    t = at()
    b = Build(db)
    await b.las()
    await b.coop()
    coordinator = await b.worker("Cora Ordinator")
    other_coordinator = await b.worker("Otto Ordinator")
    a = await b.cluster("Finchley", support_worker=coordinator)
    bc = await b.cluster("Barnet East", support_worker=other_coordinator)
    p1 = await b.pa("Pat One", cluster=a)
    p2 = await b.pa("Pam Two", cluster=a)
    p3 = await b.pa("Tim Three", cluster=a)
    pb = await b.pa("Sid Other", cluster=bc)
    idle = await b.pa("Ida Idle")
    stranger = await b.service_user("Stan Stranger")  # in no cluster

    # Regular (p1) and other PAs; a cancelled, a missed and a future visit, one before
    # the window; two visits 26 and 27 days ago leave the window when the clock moves on
    # three days. Share 3/5, then 2/3.
    mixed = await b.service_user("Ada Mixed", cluster=a, email="ada@example.org")
    await b.carer(mixed)
    await b.regular(mixed, p1)
    for pa, days, status in (
        (p1, -1, "COMPLETED"),
        (p1, -3, "COMPLETED"),
        (p2, -2, "COMPLETED"),
        (p3, -26, "COMPLETED"),
        (p1, -27, "COMPLETED"),
        (p2, -4, "CANCELLED"),
        (p3, -5, "MISSED"),
        (p1, 1, "SCHEDULED"),
        (p2, -29, "COMPLETED"),
    ):
        await b.visit(mixed, pa, t + days * DAY + 1 * HOUR, 60, status)
    # Share 1/3, and 1/7: floats PostgreSQL and orjson must write alike.
    third = await b.service_user("Ben Third", cluster=a, email="ben@example.org")
    await b.regular(third, p2)
    for pa, days in ((p2, -1), (p1, -2), (p3, -3)):
        await b.visit(third, pa, t + days * DAY + 2 * HOUR, 30, "COMPLETED")
    seventh = await b.service_user("Cy Seventh", cluster=a, email="cy@example.org")
    await b.regular(seventh, p3)
    await b.visit(seventh, p3, t - 8 * DAY + 3 * HOUR, 45, "COMPLETED")
    for days in range(1, 7):
        await b.visit(seventh, p1, t - days * DAY + 3 * HOUR, 45, "COMPLETED")
    # No regular PA: share 0.0. Only regular PAs: 1.0.
    none_regular = await b.service_user("Dee Noregular", cluster=a, email="dee@example.org")
    await b.visit(none_regular, p1, t - DAY + 4 * HOUR, 60, "COMPLETED")
    all_regular = await b.service_user("Eve Allregular", cluster=a, email="eve@example.org")
    await b.regular(all_regular, p1)
    await b.regular(all_regular, p2)
    await b.visit(all_regular, p1, t - DAY + 5 * HOUR, 60, "COMPLETED")
    await b.visit(all_regular, p2, t - 2 * DAY + 5 * HOUR, 60, "COMPLETED")
    # No visits at all; visits only before the window.
    await b.service_user("Fay Novisits", cluster=a, email="fay@example.org")
    old = await b.service_user("Gus Old", cluster=a, email="gus@example.org")
    await b.visit(old, p1, t - 30 * DAY + 6 * HOUR, 60, "COMPLETED")
    await b.visit(old, p2, t - 40 * DAY + 6 * HOUR, 60, "COMPLETED")
    # The window's edges at `t`: one starting 28 days before (in), a minute earlier
    # (out), one starting at `t` itself (out: the window ends before now).
    edges = await b.service_user("Hal Edges", cluster=a, email="hal@example.org")
    await b.regular(edges, p3)
    await b.visit(edges, p1, t - 28 * DAY, 60, "COMPLETED")
    await b.visit(edges, p2, t - 28 * DAY - dt.timedelta(minutes=1), 60, "COMPLETED")
    await b.visit(edges, p3, t, 60, "COMPLETED")
    # Cluster B.
    other = await b.service_user("Bob Other", cluster=bc, email="bob@example.org")
    await b.regular(other, pb)
    await b.visit(other, pb, t - DAY, 60, "COMPLETED")
    await db.commit()
    return {
        "t": t,
        "a": gid("Cluster", a.id),
        "b": gid("Cluster", bc.id),
        "a_id": a.id,
        "coordinator": coordinator.id,
        "other_coordinator": other_coordinator.id,
        "busy": p1.id,
        "idle": idle.id,
        "stranger": stranger.id,
    }


def callers(api: Api, world: dict[str, Any]) -> dict[str, str | None]:
    return managing_callers(
        api,
        coordinator=world["coordinator"],
        other_coordinator=world["other_coordinator"],
        pa_with_visits=world["busy"],
        pa_without_visits=world["idle"],
        stranger=world["stranger"],
        la=BARNET,
    )


REFUSED = MANAGING_REFUSED
# The figures of cluster A at `t`: (name, distinct PAs, visits, by regular PAs, share).
AT_T = [
    ("Ada Mixed", 3, 5, 3, 0.6),
    ("Ben Third", 3, 3, 1, 1 / 3),
    ("Cy Seventh", 2, 7, 1, 1 / 7),
    ("Dee Noregular", 1, 1, 0, 0.0),
    ("Eve Allregular", 2, 2, 2, 1.0),
    ("Fay Novisits", 0, 0, 0, None),
    ("Gus Old", 0, 0, 0, None),
    ("Hal Edges", 1, 1, 0, 0.0),
]
# Three days later: the visits 26 and 27 days before `t` and the one 28 days before have
# left the window; the one at `t` has come in.
LATER = {
    "Ada Mixed": ("Ada Mixed", 2, 3, 2, 2 / 3),
    "Hal Edges": ("Hal Edges", 1, 1, 1, 1.0),
}


def figures(rows: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return [
        (
            r["serviceUser"]["name"],
            r["distinctPasLast28Days"],
            r["visitsLast28Days"],
            r["visitsByRegularPas"],
            r["regularPaShare"],
        )
        for r in rows
    ]


def ids(world: dict[str, Any]) -> dict[str, str]:
    """Each kind of id: the cluster's, another cluster's, an unknown one, another type's
    with the cluster's number, and ids that are no global id at all."""
    return {
        "cluster": world["a"],
        "other cluster": world["b"],
        "unknown": gid("Cluster", 999_999),
        "other type": gid("ServiceUser", world["a_id"]),
        "not base64": "not an id",
        "no number": base64.b64encode(b"Cluster:abc").decode(),
        "empty": "",
    }


async def test_every_caller_and_id_compiles_identically(
    api: Api, app: Any, sql_counter: StatementCounter, world: dict[str, Any]
) -> None:
    both = Both(api, app, sql_counter)
    checked = 0
    # The clock stands at `t`: both paths' window is the same 28 days.
    with time_machine.travel(world["t"], tick=False):
        for name, token in callers(api, world).items():
            for kind, cluster_id in ids(world).items():
                for query, variables in ((literal(cluster_id), {}), (VARIABLE, {"id": cluster_id})):
                    where = (name, kind, query, variables)
                    resolved, compiled, ran = await both.run(query, variables, token)
                    assert _exact(compiled.get("data")) == _exact(resolved.get("data")), where
                    assert _exact(compiled.get("errors")) == _exact(resolved.get("errors")), where
                    if name in REFUSED:
                        assert not both.compiled, where  # the resolvers' error
                        (error,) = compiled["errors"]
                        assert error["extensions"]["code"] == REFUSED[name], where
                        continue
                    assert both.compiled and ran == 1, where
                    assert "errors" not in compiled, where
                    rows = compiled["data"]["serviceUserContinuity"]
                    if name == "admin" and kind == "other cluster":
                        assert figures(rows) == [("Bob Other", 1, 1, 1, 1.0)], where
                    elif kind == "cluster" and name in ("admin", "coordinator"):
                        assert figures(rows) == AT_T, where
                    elif name == "coordinator of another cluster" and kind == "other cluster":
                        assert len(rows) == 1, where
                    else:
                        assert rows == [], where
                    checked += 1
    assert checked == 3 * len(ids(world)) * 2


async def test_the_floats_and_personal_fields_are_written_as_today(
    api: Api, app: Any, sql_counter: StatementCounter, world: dict[str, Any]
) -> None:
    both = Both(api, app, sql_counter)
    with time_machine.travel(world["t"], tick=False):
        token = api.token(Role.COORDINATOR, world["coordinator"])
        resolved, compiled, ran = await both.run(VARIABLE, {"id": world["a"]}, token)
    assert both.compiled and ran == 1
    # Byte for byte: 0.6, 0.3333333333333333, 0.14285714285714285, 0.0, 1.0, null.
    assert _exact(compiled["data"]) == _exact(resolved["data"])
    assert "errors" not in compiled and "errors" not in resolved
    assert figures(compiled["data"]["serviceUserContinuity"]) == AT_T
    ada = compiled["data"]["serviceUserContinuity"][0]["serviceUser"]
    assert (ada["email"], ada["funding"], ada["carers"]) == (
        "ada@example.org",
        "DIRECT_PAYMENT",
        [{"name": "Cara Carer"}],
    )
    assert ada["regularPersonalAssistants"] == [{"name": "Pat One"}]
    # The bytes themselves, not their parse: a coordinator's response has no statement
    # count, so the whole body of either path must be the same.
    bodies = []
    with time_machine.travel(world["t"], tick=False):
        for compiled_reads in (False, True):
            app.state.compiled_reads = app.state.fast_lane = compiled_reads
            try:
                response = await api.post(VARIABLE, {"id": world["a"]}, token=token)
            finally:
                app.state.compiled_reads = app.state.fast_lane = True
            bodies.append(response.content)
    assert bodies[0] == bodies[1]
    for share in (b"0.6", b"0.3333333333333333", b"0.14285714285714285", b"0.0", b"1.0"):
        assert b'"regularPaShare":' + share + b"}" in bodies[1], share


async def test_the_window_follows_the_clock_of_each_request(
    api: Api, app: Any, sql_counter: StatementCounter, world: dict[str, Any]
) -> None:
    """One document, its plan compiled at `t`, asked again three days later: the window
    is the later request's, as the resolvers', not the one the plan was compiled at."""
    both = Both(api, app, sql_counter)
    answers = []
    for moved in (dt.timedelta(0), 3 * DAY):
        with time_machine.travel(world["t"] + moved, tick=False):
            token = api.token(Role.ADMIN)
            resolved, compiled, ran = await both.run(VARIABLE, {"id": world["a"]}, token)
        assert both.compiled and ran == 1
        assert _exact(compiled["data"]) == _exact(resolved["data"]), moved
        assert "errors" not in compiled and "errors" not in resolved
        answers.append(figures(compiled["data"]["serviceUserContinuity"]))
    assert answers[0] == AT_T
    assert answers[1] == [LATER.get(row[0], row) for row in AT_T]
