"""The README's examples run, unmodified, against the demo co-op loaded on the day the test
runs (as `make run` loads it on the day it first starts): no example may carry a date that
goes stale against the demo, whose rota and figures lie around the day it was loaded.

Every operation of the README's `graphql` blocks (and the query of its `curl` line) runs,
except those with a `"..."` for the reader to fill in and subscriptions. Variables come
from the example's GraphiQL tab (api/graphiql/examples.graphql, its relative days filled
in for today), or, for the few examples without a tab, from this file."""

from __future__ import annotations

import base64
import datetime as dt
import re
from typing import Any

from graphql import OperationDefinitionNode, OperationType, parse, print_ast
from sqlalchemy.ext.asyncio import AsyncSession

from api.graphiql_page import fill_dates, load_examples
from care.demo import LONDON, load_demo
from care.enums import Role
from tests.conftest import ROOT, Api

# Root fields that may answer empty on the demo: nothing from partners (`make run` has
# none), and no cover offered to a PA until a coordinator offers it.
MAY_BE_EMPTY = {"partnerAvailability", "coverExchanges", "myCoverOffers", "myCoverExchanges"}


def _normalised(text: str) -> str:
    return " ".join(text.split())


def readme_operations() -> list[tuple[str, OperationDefinitionNode]]:
    """(source as written, operation) for every operation the README shows, in order."""
    readme = (ROOT / "README.md").read_text()
    sources = re.findall(r"```graphql\n(.*?)```", readme, flags=re.S)
    sources += re.findall(r'-d \'\{"query": "(.*?)"\}\'', readme)
    operations = []
    for source in sources:
        for definition in parse(source).definitions:
            assert isinstance(definition, OperationDefinitionNode)
            operations.append((source, definition))
    return operations


def test_the_readme_has_the_examples_this_test_runs() -> None:
    names = [op.name.value for _, op in readme_operations() if op.name]
    for name in ("ClusterPage", "PaWeek", "Book", "PartnerFreeTime", "MarketFigures"):
        assert name in names


def test_the_relative_days_of_the_graphiql_tabs() -> None:
    today = dt.date(2027, 3, 1)
    filled = fill_dates(
        '{"a": "TODAY", "b": "TODAY+7", "c": "DATE-365", "d": "DATE", "e": "TODAYS", "f": 1}',
        today,
    )
    assert filled == {
        "a": "2027-03-01T00:00:00Z",
        "b": "2027-03-08T00:00:00Z",
        "c": "2026-03-01",
        "d": "2027-03-01",
        "e": "TODAYS",
        "f": 1,
    }


def _member(global_id: str) -> int:
    return int(base64.b64decode(global_id).decode().split(":")[1])


def _empty(value: Any) -> bool:
    if value is None or value == [] or value == {}:
        return True
    if isinstance(value, dict):
        if value.get("totalCount") == 0:
            return True
        if "nodes" in value and not value["nodes"]:
            return True
        return all(_empty(v) for v in value.values())
    return False


async def test_every_readme_example_runs_against_todays_demo(api: Api, db: AsyncSession) -> None:
    today = dt.datetime.now(LONDON).date()
    assert await load_demo(db, today) is True
    await db.commit()
    admin = api.token(Role.ADMIN)

    # What a reader takes from the first example and the rota: a cluster, and a visit of
    # the coming week (its PA and person).
    clusters = await api.data("{ clusters(first: 1) { nodes { id } } }", token=admin)
    week = {"from": f"{today}T00:00:00Z", "to": f"{today + dt.timedelta(7)}T00:00:00Z"}
    visits = await api.data(
        "query($from: DateTime!, $to: DateTime!) { visits(startsFrom: $from, "
        "startsBefore: $to, status: [SCHEDULED], first: 1) "
        "{ nodes { pa { id } serviceUser { id } } } }",
        week,
        token=admin,
    )
    visit = visits["visits"]["nodes"][0]
    pa_token = api.token(Role.PA, _member(visit["pa"]["id"]))
    # tomorrow at 2am: before the demo's sickness absence (from the day after) and any visit
    night = dt.datetime.combine(today + dt.timedelta(1), dt.time(2), LONDON)
    own_variables: dict[str, dict[str, Any]] = {
        "Book": {
            "person": visit["serviceUser"]["id"],
            "pa": visit["pa"]["id"],
            "startsAt": night.isoformat(),
            "endsAt": (night + dt.timedelta(hours=1)).isoformat(),
        }
    }
    tabs = {_normalised(e.query): e for e in load_examples()}

    ran: list[str] = []
    for source, operation in readme_operations():
        text = print_ast(operation)
        if '"..."' in text or operation.operation == OperationType.SUBSCRIPTION:
            continue
        roots = [f.name.value for f in operation.selection_set.selections if hasattr(f, "name")]
        name = operation.name.value if operation.name else roots[0]
        variables: dict[str, Any] = {}
        tab = tabs.get(_normalised(source))
        if tab is not None and tab.variables:
            variables = fill_dates(tab.variables, today)
        if operation.name and operation.name.value in own_variables:
            variables = own_variables[operation.name.value]
        if variables.get("id") == "":  # "put a cluster id from the first tab"
            variables["id"] = clusters["clusters"]["nodes"][0]["id"]
        needed = {v.variable.name.value for v in operation.variable_definitions or ()}
        assert needed <= variables.keys(), (name, needed)

        # "me" and "my..." fields as the PA; everything else as an admin
        caller = pa_token if any(r == "me" or r.startswith("my") for r in roots) else admin
        body = await api.query(text, variables, token=caller)
        assert not body.get("errors"), (name, body["errors"])
        data = body["data"]
        if operation.operation == OperationType.QUERY:
            for field, value in data.items():
                if field not in MAY_BE_EMPTY:
                    assert not _empty(value), (name, field, value)
        else:
            for field, payload in data.items():
                assert payload["errors"] == [], (name, field, payload)
        ran.append(name)

    assert len(ran) >= 10, ran
