"""Global ids never crash: a node id that is not ASCII digits within bigint, or a type
name the service does not know, or a value that is not base64 of `Type:id` at all, is an
unknown record: `null` from `node()` and lookups, an empty filter, NOT_FOUND in a
mutation's payload; never INTERNAL_SERVER_ERROR."""

from __future__ import annotations

import base64

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from care.enums import Role
from tests.conftest import Api
from tests.factories import Build


def raw(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


# Cluster 3 exists below: ids that Python's int() would read as 3 must not reach it.
BAD_NODE_IDS = [
    "٣",  # ARABIC-INDIC DIGIT THREE: int() reads 3
    "３",  # FULLWIDTH DIGIT THREE
    "²",  # SUPERSCRIPT TWO: isdigit(), but int() fails
    "3_0",
    " 3",
    "+3",
    "-3",
    "0",
    "",
    "9223372036854775808",  # bigint max + 1
    "99999999999999999999999999999999",
]
BAD_IDS = [raw(f"Cluster:{n}") for n in BAD_NODE_IDS] + [
    # Well-formed ids of another type: the same answer as a malformed id (issue 11).
    raw("Pool:3"),
    raw("Absence:3"),
    raw("Nothing:3"),  # no such type
    raw("Node:3"),  # an interface, not a record type
    raw(":3"),
    raw("Cluster"),  # no separator
    "!!!",  # not base64
    "not base64",
    "////",  # base64 of bytes that are not UTF-8
    "",
]


@pytest.fixture
async def clusters(db: AsyncSession) -> list[int]:
    b = Build(db)
    await b.las()
    made = [await b.cluster(f"C{i}") for i in range(3)]
    await db.commit()
    return [c.id for c in made]


def admin(api: Api) -> str:
    return api.token(Role.ADMIN)


@pytest.mark.parametrize("bad", BAD_IDS)
async def test_node_and_lookups_answer_null(api: Api, clusters: list[int], bad: str) -> None:
    assert 3 in clusters
    data = await api.data(
        "query($id: ID!) { node(id: $id) { id } cluster(id: $id) { id name }"
        " visits(clusterId: $id) { totalCount } serviceUserContinuity(clusterId: $id) {"
        " distinctPasLast28Days } }",
        {"id": bad},
        token=admin(api),
    )
    assert data["node"] is None
    assert data["cluster"] is None
    assert data["visits"]["totalCount"] == 0
    assert data["serviceUserContinuity"] == []


@pytest.mark.parametrize("bad", BAD_IDS)
async def test_mutations_answer_not_found(
    api: Api, db: AsyncSession, clusters: list[int], bad: str
) -> None:
    data = await api.data(
        "mutation($id: ID!) { closeCluster(id: $id) { cluster { id } errors { field code } } }",
        {"id": bad},
        token=admin(api),
    )
    assert data["closeCluster"] == {
        "cluster": None,
        "errors": [{"field": "id", "code": "NOT_FOUND"}],
    }
    data = await api.data(
        'mutation($id: ID!) { registerCarer(input: {name: "C", serviceUserIds: [$id]}) {'
        " member { id } errors { field code } } }",
        {"id": bad},
        token=admin(api),
    )
    assert data["registerCarer"]["errors"] == [{"field": "serviceUserIds", "code": "NOT_FOUND"}]


@pytest.mark.parametrize("bad", BAD_IDS)
async def test_top_level_lookups_stay_coded(api: Api, clusters: list[int], bad: str) -> None:
    body = await api.query(
        "query($id: ID!) { coverCandidates(visitId: $id) { candidates { score } } }",
        {"id": bad},
        token=admin(api),
    )
    assert [e["extensions"]["code"] for e in body["errors"]] == ["NOT_FOUND"]


@pytest.mark.parametrize("value", [True, {"id": 3}, [raw("Cluster:3")], 1.5])
async def test_a_value_that_is_no_id_at_all_is_refused_before_anything_runs(
    api: Api, clusters: list[int], value: object
) -> None:
    """Not a malformed id but not an `ID` at all: variable coercion fails, a top-level
    BAD_USER_INPUT, and no mutation runs (README, "Errors")."""
    body = await api.query(
        "mutation($id: ID!) { closeCluster(id: $id) { errors { code } } }",
        {"id": value},
        token=admin(api),
    )
    assert body.get("data") is None
    assert [e["extensions"]["code"] for e in body["errors"]] == ["BAD_USER_INPUT"]
