"""Cluster mutations: create, update, close, team and service users; typed errors that
change nothing."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from care.enums import Role
from care.models import Cluster, ClusterPa, ClusterServiceUser
from tests.conftest import Api
from tests.factories import Build, gid

CREATE = """
mutation($input: CreateClusterInput!) {
  createCluster(input: $input) {
    cluster { id name kind status localAuthority { gssCode } postcodeDistricts needTags
              centre { latitude longitude } radiusKm supportWorker { name } }
    errors { field message code }
  }
}"""

UPDATE = """
mutation($id: ID!, $input: UpdateClusterInput!) {
  updateCluster(id: $id, input: $input) { cluster { name status } errors { field code } }
}"""

CLOSE = "mutation($id: ID!) { closeCluster(id: $id) { cluster { status } errors { field code } } }"

ADD_SU = """mutation($c: ID!, $s: ID!) { addServiceUserToCluster(clusterId: $c, serviceUserId: $s) {
  cluster { serviceUsers { totalCount } } errors { field code } } }"""
REMOVE_SU = """mutation($c: ID!, $s: ID!) {
  removeServiceUserFromCluster(clusterId: $c, serviceUserId: $s) { errors { field code } } }"""
ADD_PA = """mutation($c: ID!, $p: ID!) { addPersonalAssistantToCluster(clusterId: $c, paId: $p) {
  cluster { personalAssistants { totalCount } } errors { field code } } }"""
REMOVE_PA = """mutation($c: ID!, $p: ID!) {
  removePersonalAssistantFromCluster(clusterId: $c, paId: $p) { errors { field code } } }"""


async def cluster_count(db: AsyncSession) -> int:
    return int(await db.scalar(select(func.count()).select_from(Cluster)) or 0)


@pytest.fixture
async def base(db: AsyncSession) -> dict[str, Any]:
    b = Build(db)
    await b.las()
    await b.coop()
    coordinator = await b.worker("Cora Ordinator")
    other = await b.worker("Otto Ordinator")
    cluster = await b.cluster("Finchley", support_worker=coordinator)
    su = await b.service_user("Ada User")
    pa = await b.pa("Pat Assistant")
    await db.commit()
    return {"coordinator": coordinator, "other": other, "cluster": cluster, "su": su, "pa": pa}


async def test_coordinator_creates_a_cluster_and_runs_it(api: Api, base: dict[str, Any]) -> None:
    token = api.token(Role.COORDINATOR, base["coordinator"].id)
    data = await api.data(
        CREATE,
        {
            "input": {
                "name": "Whetstone",
                "kind": "GEOGRAPHIC",
                "localAuthority": "E09000003",
                "postcodeDistricts": ["n20", " N11 "],
                "centre": {"latitude": 51.63, "longitude": -0.17},
                "radiusKm": 2.5,
            }
        },
        token=token,
    )
    payload = data["createCluster"]
    assert payload["errors"] == []
    cluster = payload["cluster"]
    assert cluster["name"] == "Whetstone"
    assert cluster["status"] == "PLANNED"
    assert cluster["postcodeDistricts"] == ["N11", "N20"]
    assert cluster["supportWorker"]["name"] == "Cora Ordinator"
    # Committed: visible in a later request.
    listed = await api.data("{ clusters { totalCount } }", token=token)
    assert listed["clusters"]["totalCount"] == 2


async def test_need_based_cluster_keeps_its_needs(api: Api, base: dict[str, Any]) -> None:
    data = await api.data(
        CREATE,
        {
            "input": {
                "name": "MS support",
                "kind": "NEED_BASED",
                "localAuthority": "E09000003",
                "needTags": ["Multiple-Sclerosis", "neurological", "neurological"],
            }
        },
        token=api.token(Role.ADMIN),
    )
    assert data["createCluster"]["cluster"]["needTags"] == ["multiple-sclerosis", "neurological"]


@pytest.mark.parametrize(
    "change,field,code",
    [
        ({"name": "  "}, "name", "REQUIRED"),
        ({"localAuthority": "E09999999"}, "localAuthority", "NOT_FOUND"),
        ({"postcodeDistricts": ["not a district"]}, "postcodeDistricts", "INVALID"),
        ({"radiusKm": -1, "centre": {"latitude": 51.6, "longitude": -0.2}}, "radiusKm", "INVALID"),
        ({"centre": {"latitude": 95, "longitude": 0}, "radiusKm": 2}, "centre", "INVALID"),
        ({"postcodeDistricts": []}, "centre", "REQUIRED"),
        ({"kind": "NEED_BASED", "needTags": []}, "needTags", "REQUIRED"),
        ({"supportWorkerId": gid("ServiceUser", 424242)}, "supportWorkerId", "NOT_FOUND"),
    ],
)
async def test_bad_cluster_input_is_refused_and_changes_nothing(
    api: Api,
    db: AsyncSession,
    base: dict[str, Any],
    change: dict[str, Any],
    field: str,
    code: str,
) -> None:
    before = await cluster_count(db)
    data = {
        "name": "New",
        "kind": "GEOGRAPHIC",
        "localAuthority": "E09000003",
        "postcodeDistricts": ["N12"],
        **change,
    }
    result = await api.data(CREATE, {"input": data}, token=api.token(Role.ADMIN))
    payload = result["createCluster"]
    assert payload["cluster"] is None
    assert {"field": field, "code": code} in [
        {"field": e["field"], "code": e["code"]} for e in payload["errors"]
    ]
    assert await cluster_count(db) == before


async def test_support_worker_must_be_a_worker(api: Api, base: dict[str, Any]) -> None:
    result = await api.data(
        CREATE,
        {
            "input": {
                "name": "X",
                "kind": "GEOGRAPHIC",
                "localAuthority": "E09000003",
                "postcodeDistricts": ["N12"],
                "supportWorkerId": gid("ServiceUser", base["su"].id),
            }
        },
        token=api.token(Role.ADMIN),
    )
    assert result["createCluster"]["errors"][0]["code"] == "INVALID"


@pytest.mark.parametrize("role", [Role.PA, Role.SERVICE_USER, Role.CARER])
async def test_only_managers_create_clusters(
    api: Api, base: dict[str, Any], db: AsyncSession, role: Role
) -> None:
    member = base["pa"] if role is Role.PA else base["su"]
    refused = await api.refused(
        CREATE,
        {
            "input": {
                "name": "X",
                "kind": "GEOGRAPHIC",
                "localAuthority": "E09000003",
                "postcodeDistricts": ["N12"],
            }
        },
        token=api.token(role, member.id),
    )
    assert refused == "FORBIDDEN"
    assert await cluster_count(db) == 1


async def test_update_and_close(api: Api, base: dict[str, Any]) -> None:
    token = api.token(Role.COORDINATOR, base["coordinator"].id)
    cid = gid("Cluster", base["cluster"].id)
    data = await api.data(
        UPDATE, {"id": cid, "input": {"name": "Finchley Central", "status": "ACTIVE"}}, token=token
    )
    assert data["updateCluster"] == {
        "cluster": {"name": "Finchley Central", "status": "ACTIVE"},
        "errors": [],
    }
    closed = await api.data(CLOSE, {"id": cid}, token=token)
    assert closed["closeCluster"]["cluster"]["status"] == "CLOSED"
    again = await api.data(CLOSE, {"id": cid}, token=token)
    assert again["closeCluster"]["errors"] == [{"field": "clusterId", "code": "CLOSED"}]
    renamed = await api.data(UPDATE, {"id": cid, "input": {"name": "Zombie"}}, token=token)
    assert renamed["updateCluster"]["errors"][0]["code"] == "CLOSED"


async def test_other_coordinator_cannot_change_the_cluster(api: Api, base: dict[str, Any]) -> None:
    token = api.token(Role.COORDINATOR, base["other"].id)
    data = await api.data(
        UPDATE,
        {"id": gid("Cluster", base["cluster"].id), "input": {"name": "Mine now"}},
        token=token,
    )
    assert data["updateCluster"]["errors"][0]["code"] == "FORBIDDEN"


async def test_unknown_cluster_is_not_found(api: Api, base: dict[str, Any]) -> None:
    for cid in (gid("Cluster", 9999), gid("Pool", base["cluster"].id)):
        data = await api.data(CLOSE, {"id": cid}, token=api.token(Role.ADMIN))
        assert data["closeCluster"]["errors"][0]["code"] == "NOT_FOUND"


async def test_team_and_service_users(api: Api, db: AsyncSession, base: dict[str, Any]) -> None:
    token = api.token(Role.COORDINATOR, base["coordinator"].id)
    ids = {"c": gid("Cluster", base["cluster"].id)}
    su = {**ids, "s": gid("ServiceUser", base["su"].id)}
    pa = {**ids, "p": gid("PersonalAssistant", base["pa"].id)}
    added = await api.data(ADD_SU, su, token=token)
    assert added["addServiceUserToCluster"]["cluster"]["serviceUsers"]["totalCount"] == 1
    twice = await api.data(ADD_SU, su, token=token)  # idempotent
    assert twice["addServiceUserToCluster"]["errors"] == []
    team = await api.data(ADD_PA, pa, token=token)
    assert team["addPersonalAssistantToCluster"]["cluster"]["personalAssistants"]["totalCount"] == 1
    assert await db.scalar(select(func.count()).select_from(ClusterPa)) == 1

    removed = await api.data(REMOVE_SU, su, token=token)
    assert removed["removeServiceUserFromCluster"]["errors"] == []
    assert await db.scalar(select(func.count()).select_from(ClusterServiceUser)) == 0
    await api.data(REMOVE_PA, pa, token=token)
    gone = await api.data(REMOVE_PA, pa, token=token)
    assert gone["removePersonalAssistantFromCluster"]["errors"] == [
        {"field": "paId", "code": "NOT_FOUND"}
    ]


async def test_wrong_kind_of_id_is_not_found(api: Api, base: dict[str, Any]) -> None:
    data = await api.data(
        ADD_SU,
        {"c": gid("Cluster", base["cluster"].id), "s": gid("PersonalAssistant", base["pa"].id)},
        token=api.token(Role.ADMIN),
    )
    assert data["addServiceUserToCluster"]["errors"] == [
        {"field": "serviceUserId", "code": "NOT_FOUND"}
    ]
