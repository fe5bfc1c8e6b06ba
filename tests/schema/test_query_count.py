"""The number of SQL statements does not grow with the size of the result."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from care.enums import Role
from tests.conftest import Api, StatementCounter
from tests.factories import Build, at

NESTED = """{
  clusters(first: 50) {
    edges { node { name
      serviceUsers(first: 2) { edges { node { name
        visits(first: 2) { edges { node { startsAt pa { name } } } }
      } } }
    } }
  }
}"""


async def arrange(db: AsyncSession, clusters: int) -> None:
    b = Build(db)
    await b.las()
    await b.coop()
    for c in range(clusters):
        cluster = await b.cluster(f"Cluster {c}")
        pa = await b.pa(f"PA {c}", cluster=cluster, skills=["hoist"])
        for s in range(2):
            su = await b.service_user(f"Person {c}-{s}", cluster=cluster)
            for v in range(2):
                await b.visit(su, pa, at(days=1 + v, hours=s * 2))
    await db.commit()


async def count_statements(api: Api, counter: StatementCounter, app: Any) -> tuple[int, dict]:  # type: ignore[type-arg]
    counter.count = 0
    lane = app.state.fast_lane_answered
    data = await api.data(NESTED, token=api.token(Role.ADMIN))
    # A repeated compiled read is answered by the fast lane (api/fastlane.py) with one
    # statement of its own, on asyncpg directly, which the counter does not see.
    return counter.count + app.state.fast_lane_answered - lane, data


@pytest.mark.parametrize("compiled", [False, True], ids=["resolvers", "compiled"])
async def test_nested_query_statement_count_is_constant(
    api: Api,
    app: Any,
    db: AsyncSession,
    sql_counter: StatementCounter,
    compiled: bool,
    request: pytest.FixtureRequest,
) -> None:
    app.state.compiled_reads = compiled
    request.addfinalizer(lambda: setattr(app.state, "compiled_reads", True))
    await arrange(db, 1)
    one, data = await count_statements(api, sql_counter, app)
    assert len(data["clusters"]["edges"]) == 1

    await arrange_more(db)
    fifty, data = await count_statements(api, sql_counter, app)
    edges = data["clusters"]["edges"]
    assert len(edges) == 50
    visits = [
        v
        for c in edges
        for s in c["node"]["serviceUsers"]["edges"]
        for v in s["node"]["visits"]["edges"]
    ]
    assert len(visits) == 200
    assert all(v["node"]["pa"]["name"].startswith("PA ") for v in visits)
    assert one == fifty, sql_counter.statements
    # resolvers: clusters, service users, visits, PAs; compiled: one statement
    assert fifty == (1 if compiled else 4)


async def arrange_more(db: AsyncSession) -> None:
    b = Build(db)
    for c in range(1, 50):
        cluster = await b.cluster(f"Cluster {c}")
        pa = await b.pa(f"PA {c}", cluster=cluster, skills=["hoist"])
        for s in range(2):
            su = await b.service_user(f"Person {c}-{s}", cluster=cluster)
            for v in range(2):
                await b.visit(su, pa, at(days=1 + v, hours=s * 2))
    await db.commit()
