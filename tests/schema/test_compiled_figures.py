"""`clusterFigures` compiles: declared once (`schema.types.root_list` with the parameters
`schema.figures.CLUSTER_FIGURES`), both paths read `care.figures.cluster_figures` with the
values worked out per request in Python (the period, from the viewer's clock when not
given; the ids asked for, decoded, each once in the order asked, which the statement
sorts by). It is answered by one statement, byte for byte as the resolvers answer, for
every caller; values the field refuses fall back, so the error is the resolvers'; and the
clock is read per request, never built into the cached plan."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
import time_machine
from graphql import OperationDefinitionNode, parse
from graphql.execution.values import VariableValues, get_variable_values
from sqlalchemy.ext.asyncio import AsyncSession

from care.enums import Role
from care.services.visits import LONDON
from care.viewer import Viewer
from schema.build import create_schema
from schema.compiled.compiler import Compiler, Fallback
from schema.context import Limits
from tests.conftest import MANAGING_REFUSED, Api, StatementCounter, managing_callers
from tests.factories import BARNET, Build, gid
from tests.schema.test_compiled_reads import Both, _exact
from tests.schema.test_figures import DAY, World, cid, cover, w

__all__ = ["w"]  # the seeded clusters of tests/schema/test_figures.py, used as a fixture

HOUR = dt.timedelta(hours=1)

# Every field, the cluster's relations too, with aliases and a fragment.
FIELDS = """__typename from to coverRequestsOpened coverRequestsFilled fillRate
  medianTimeToFillMinutes visitsMissed visitsCompleted hoursDelivered
  ...on ClusterFigures { done: visitsCompleted }
  cluster { __typename id name kind status radiusKm postcodeDistricts needTags createdAt
    closedAt centre { latitude longitude } localAuthority { gssCode name }
    supportWorker { name } pools { name }
    serviceUsers(first: 2) { totalCount nodes { name } } }"""
BY_VARIABLES = f"""query($ids: [ID!], $from: DateTime, $to: DateTime) {{
  clusterFigures(clusterIds: $ids, from: $from, to: $to) {{ {FIELDS} }} }}"""


def literal_query(**given: Any) -> str:
    """The field with literal arguments (a list of ids, instants as strings)."""
    written = []
    for name, value in given.items():
        if isinstance(value, list):
            items = ", ".join(f'"{v}"' for v in value)
            written.append(f"{name}: [{items}]")
        else:
            written.append(f'{name}: "{value}"')
    arguments = f"({', '.join(written)})" if written else ""
    return f"{{ clusterFigures{arguments} {{ {FIELDS} }} }}"


def london(instant: dt.datetime) -> str:
    """London wall-clock time without an offset, as a caller may write it."""
    return instant.astimezone(LONDON).replace(tzinfo=None).isoformat()


@pytest.fixture
async def world(db: AsyncSession, w: World) -> dict[str, Any]:
    b = Build(db)
    idle_pa = await b.pa("Ida Idle")
    stranger = await b.service_user("Stan Stranger")  # in no cluster
    await b.pool("Pool A", clusters=[w.a])
    # A visit completed and a cover request opened an hour after t0 (the clock's moment
    # in the tests below): counted only once the clock has passed them.
    later = await b.visit(w.su2, w.pa1, w.t0 + HOUR, 30, "COMPLETED")
    await cover(
        db, later, "FILLED", w.t0 + HOUR, after=7 * dt.timedelta(minutes=1), filled_by=w.pa1
    )
    await db.commit()
    return {"w": w, "idle_pa": idle_pa.id, "stranger": stranger.id}


def callers(api: Api, world: dict[str, Any]) -> dict[str, str | None]:
    w: World = world["w"]
    return managing_callers(
        api,
        coordinator=w.coordinator.id,
        other_coordinator=w.other_coordinator.id,
        pa_with_visits=w.pa1.id,
        pa_without_visits=world["idle_pa"],
        stranger=world["stranger"],
        la=BARNET,
    )


REFUSED = MANAGING_REFUSED


def asked_ids(w: World) -> list[list[str] | None]:
    return [
        None,
        [],
        [cid(w.b), cid(w.a)],  # against the order of ids
        [cid(w.empty), cid(w.b), cid(w.a), cid(w.b), cid(w.empty)],  # duplicates
        [
            gid("Cluster", 999_999),  # unknown
            gid("ServiceUser", w.a.id),  # another type's id: no cluster
            "bm90IGFuIGlk",  # no id at all
            cid(w.b),  # a cluster the first coordinator does not support
            cid(w.a),
        ],
    ]


def REFUSED_CASES(w: World) -> list[tuple[list[str] | None, dict[str, str]]]:  # noqa: N802
    return [(asked_ids(w)[0], periods(w)[0]), (asked_ids(w)[4], periods(w)[3])]


def periods(w: World) -> list[dict[str, str]]:
    t0 = w.t0
    return [
        {},
        {"from": (t0 - 10 * DAY).isoformat()},
        {"to": (t0 - 2 * DAY).isoformat()},
        {"from": (t0 - 10 * DAY).isoformat(), "to": (t0 - 2 * DAY).isoformat()},
        # London times without an offset; one with microseconds.
        {"from": london(t0 - 9 * DAY - 7 * HOUR), "to": london(t0 - HOUR + dt.timedelta(0, 0, 5))},
        # Other offsets.
        {
            "from": (t0 - 30 * DAY)
            .astimezone(dt.timezone(dt.timedelta(hours=5, minutes=30)))
            .isoformat(),
            "to": (t0 + DAY).astimezone(dt.timezone(-3 * HOUR)).isoformat(),
        },
        # A whole year (366 days), where the fill rate is 4/7.
        {"from": (t0 - 366 * DAY).isoformat(), "to": t0.isoformat()},
    ]


async def test_every_caller_ids_and_period_compile_identically(
    api: Api, app: Any, sql_counter: StatementCounter, world: dict[str, Any]
) -> None:
    w: World = world["w"]
    both = Both(api, app, sql_counter)
    checked = 0
    # The clock stands still: the default period ends now on both paths.
    with time_machine.travel(w.t0 + 20 * dt.timedelta(seconds=1, microseconds=7), tick=False):
        for name, token in callers(api, world).items():
            for ids in asked_ids(w):
                for period in periods(w):
                    if name in REFUSED and (ids, period) not in REFUSED_CASES(w):
                        continue  # refused whatever they ask: a few cases suffice
                    given: dict[str, Any] = dict(period)
                    if ids is not None:
                        given["clusterIds"] = ids
                    variables = {"ids": ids, **period}
                    for query, values in ((literal_query(**given), {}), (BY_VARIABLES, variables)):
                        where = (name, query, values)
                        resolved, compiled, ran = await both.run(query, values, token)
                        assert _exact(compiled.get("data")) == _exact(resolved.get("data")), where
                        assert _exact(compiled.get("errors")) == _exact(resolved.get("errors")), (
                            where
                        )
                        if name in REFUSED:
                            assert not both.compiled, where
                            (error,) = compiled["errors"]
                            assert error["extensions"]["code"] == REFUSED[name], where
                            continue
                        assert both.compiled and ran == 1, where  # one statement
                        assert "errors" not in compiled, where
                        checked += 1
    assert checked == 3 * len(asked_ids(w)) * len(periods(w)) * 2


async def test_the_answers_hold_the_figures_in_the_order_asked(
    api: Api, app: Any, sql_counter: StatementCounter, world: dict[str, Any]
) -> None:
    w: World = world["w"]
    both = Both(api, app, sql_counter)
    # Tokens issued at the clock's moment (one issued later would not be valid yet).
    with time_machine.travel(w.t0, tick=False):
        admin = api.token(Role.ADMIN)
        coordinator = api.token(Role.COORDINATOR, w.coordinator.id)
        ids = [cid(w.empty), cid(w.b), cid(w.a), cid(w.b)]
        body = await both.same(BY_VARIABLES, {"ids": ids}, admin, statements=1)
        rows = body["data"]["clusterFigures"]
        assert [r["cluster"]["name"] for r in rows] == ["Empty", "Barnet East", "Finchley"]
        assert [r["hoursDelivered"] for r in rows] == [0.0, 10.0, 8.75]
        assert rows[2]["cluster"]["pools"] == [{"name": "Pool A"}]
        assert rows[0]["fillRate"] is None and rows[1]["medianTimeToFillMinutes"] == 5.0
        assert rows[0]["to"] == w.t0.isoformat()
        # Without ids: by id.
        body = await both.same(BY_VARIABLES, {}, admin, statements=1)
        names = [r["cluster"]["name"] for r in body["data"]["clusterFigures"]]
        assert names == ["Finchley", "Barnet East", "Empty"]
        body = await both.same(BY_VARIABLES, {"ids": ids}, coordinator, statements=1)
        assert [r["cluster"]["name"] for r in body["data"]["clusterFigures"]] == ["Finchley"]
        # A whole year: 4 of 7 filled, written as Python writes the float.
        year = {"from": (w.t0 - 366 * DAY).isoformat(), "to": w.t0.isoformat(), "ids": [cid(w.a)]}
        body = await both.same(BY_VARIABLES, year, admin, statements=1)
        (row,) = body["data"]["clusterFigures"]
        assert row["fillRate"] == 4 / 7 and row["medianTimeToFillMinutes"] == 60.0
        # A London time without offset, with microseconds: its UTC instant, all six digits.
        start = dt.datetime(2026, 7, 1, 9, 30, 0, 120000)
        body = await both.same(
            BY_VARIABLES, {"from": start.isoformat(), "to": w.t0.isoformat()}, admin, statements=1
        )
        first = body["data"]["clusterFigures"][0]
        assert first["from"] == "2026-07-01T08:30:00.120000+00:00"


@pytest.mark.parametrize(
    "period",
    [
        {"from": 0, "to": 0},  # empty
        {"from": -1, "to": -2},  # ends before it starts
        {"from": -367, "to": 0},  # longer than 366 days
        {"from": 1},  # after now, without `to`
        {"to": -400},  # fine by itself; `from` defaults to 28 days before
    ],
)
async def test_refused_periods_fall_back_with_the_same_error(
    api: Api, app: Any, sql_counter: StatementCounter, world: dict[str, Any], period: dict
) -> None:
    w: World = world["w"]
    both = Both(api, app, sql_counter)
    values = {name: (w.t0 + days * DAY).isoformat() for name, days in period.items()}
    with time_machine.travel(w.t0, tick=False):
        for name, token in callers(api, world).items():
            for query, variables in (
                (literal_query(**values), {}),
                (BY_VARIABLES, values),
                (BY_VARIABLES, {**values, "ids": [cid(w.a)]}),
            ):
                where = (name, query, variables)
                resolved, compiled, ran = await both.run(query, variables, token)
                assert _exact(compiled.get("data")) == _exact(resolved.get("data")), where
                assert _exact(compiled.get("errors")) == _exact(resolved.get("errors")), where
                if name in REFUSED:
                    assert not both.compiled, where
                    (error,) = compiled["errors"]
                    assert error["extensions"]["code"] == REFUSED[name], where
                    continue
                if "to" in period and "from" not in period:
                    assert both.compiled and "errors" not in compiled, where
                    continue
                assert not both.compiled, where
                (error,) = compiled["errors"]
                assert error["extensions"]["code"] == "BAD_USER_INPUT", where


async def test_the_clock_is_read_per_request_not_built_into_the_plan(
    api: Api, app: Any, sql_counter: StatementCounter, world: dict[str, Any]
) -> None:
    w: World = world["w"]
    both = Both(api, app, sql_counter)
    ids = {"ids": [cid(w.a)]}
    with time_machine.travel(w.t0, tick=False):
        before = await both.same(BY_VARIABLES, ids, api.token(Role.ADMIN), statements=1)
    # Two hours on: the same document, its plan cached, answers at the later time as the
    # resolvers do then, counting the visit and the cover request of t0 + 1 hour.
    later = w.t0 + 2 * HOUR
    with time_machine.travel(later, tick=False):
        after = await both.same(BY_VARIABLES, ids, api.token(Role.ADMIN), statements=1)
    (then,) = before["data"]["clusterFigures"]
    (now,) = after["data"]["clusterFigures"]
    assert (then["to"], now["to"]) == (w.t0.isoformat(), later.isoformat())
    assert now["from"] == (later - 28 * DAY).isoformat()
    assert now["coverRequestsOpened"] == then["coverRequestsOpened"] + 1
    assert now["visitsCompleted"] == then["visitsCompleted"] + 1
    assert now["hoursDelivered"] == then["hoursDelivered"] + 0.5


SCHEMA = create_schema()._schema


def _variables(operation: OperationDefinitionNode, given: dict[str, Any]) -> VariableValues:
    coerced = get_variable_values(SCHEMA, operation.variable_definitions or (), given)
    assert isinstance(coerced, VariableValues)
    return coerced


def test_a_plan_binds_the_values_per_request_and_falls_back_on_refused_ones() -> None:
    document = parse(BY_VARIABLES)
    (operation,) = document.definitions
    assert isinstance(operation, OperationDefinitionNode)
    viewer = Viewer(role=Role.ADMIN, now=dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
    asked = {"ids": [gid("Cluster", 3), gid("Cluster", 1), gid("Cluster", 3), gid("Pool", 2)]}
    plan = Compiler(SCHEMA, document, operation, _variables(operation, asked), viewer).compile()
    later = Viewer(role=Role.ADMIN, now=dt.datetime(2026, 2, 1, 12, tzinfo=dt.UTC))
    values = plan.parameters(later, _variables(operation, asked), Limits())
    names = ("cluster_ids", "period_start", "period_end")
    bound = {n: v for k, v in values.items() for n in names if k.endswith(f"_{n}")}
    assert bound == {
        "cluster_ids": [3, 1],
        "period_start": later.now - 28 * DAY,
        "period_end": later.now,
    }
    # Too many ids for the limits (the input bounds refuse more than the page size before),
    # or a period the field refuses: the resolvers answer.
    with pytest.raises(Fallback):
        plan.parameters(later, _variables(operation, asked), Limits(max_page_size=3))
    for bad in (
        {"from": "2026-02-01T12:00:00+00:00"},  # not before `to` (now)
        {"from": "2025-01-01T00:00:00+00:00", "to": "2026-01-03T00:00:00+00:00"},  # 367 days
    ):
        with pytest.raises(Fallback):
            plan.parameters(later, _variables(operation, {**asked, **bad}), Limits())

    # A coordinator whom no token names (no token says so; a context built by hand) may not
    # ask: nothing, whatever the period, as the resolver answers, in one statement.
    nobody = Viewer(role=Role.COORDINATOR, now=later.now)
    bad = {**asked, "from": "2027-01-01T00:00:00+00:00"}
    values = plan.parameters(nobody, _variables(operation, bad), Limits())
    assert [v for k, v in values.items() if k.endswith("cluster_ids")] == [[]]
