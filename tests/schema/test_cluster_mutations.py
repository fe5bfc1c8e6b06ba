"""Cluster mutations: create, update, close, team and service users; typed errors that
change nothing."""

from __future__ import annotations

import asyncio
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
                "needTags": [
                    "Multiple Sclerosis",
                    "neurological-conditions",
                    "neurological-conditions",
                ],
            }
        },
        token=api.token(Role.ADMIN),
    )
    assert data["createCluster"]["cluster"]["needTags"] == [
        "multiple-sclerosis",
        "neurological-conditions",
    ]


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
    # Intake of a person in no cluster is for admins; then the coordinator manages them.
    added = await api.data(ADD_SU, su, token=api.token(Role.ADMIN))
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


# --- no write widens a coordinator's access ------------------------------------------------

PERSON = """query($id: ID!) { node(id: $id) { ... on ServiceUser { name phone postcode } } }"""


@pytest.fixture
async def two(db: AsyncSession) -> dict[str, Any]:
    """Coordinator A runs Finchley; coordinator B runs Barnet East (and a planned and a
    closed cluster). Each cluster has its people; one person is in no cluster yet."""
    b = Build(db)
    await b.las()
    await b.coop()
    coord_a = await b.worker("Cora Ordinator")
    coord_b = await b.worker("Otto Ordinator")
    cluster_a = await b.cluster("Finchley", support_worker=coord_a)
    cluster_b = await b.cluster("Barnet East", support_worker=coord_b)
    planned_b = await b.cluster("Barnet West", support_worker=coord_b)
    planned_b.status = "PLANNED"
    closed_b = await b.cluster("Old Barnet", support_worker=coord_b)
    closed_b.status = "CLOSED"
    su_a = await b.service_user("Ada Mine", cluster=cluster_a)
    su_b = await b.service_user("Bob Theirs", cluster=cluster_b)
    su_none = await b.service_user("Nell Nowhere")
    pa_b = await b.pa("Pip Theirs", cluster=cluster_b)
    pa_a = await b.pa("Pat Mine", cluster=cluster_a)
    pa_pool = await b.pa("Poppy Pool")  # on no team, in a pool serving B
    pa_free = await b.pa("Fay Free")  # works for no one yet
    await b.pool("East", pas=[pa_pool], clusters=[cluster_b])
    await db.commit()
    return {
        "coord_a": coord_a.id,
        "coord_b": coord_b.id,
        "a": gid("Cluster", cluster_a.id),
        "b": gid("Cluster", cluster_b.id),
        "planned_b": gid("Cluster", planned_b.id),
        "closed_b": gid("Cluster", closed_b.id),
        "su_a": gid("ServiceUser", su_a.id),
        "su_b": gid("ServiceUser", su_b.id),
        "su_none": gid("ServiceUser", su_none.id),
        "pa_b": gid("PersonalAssistant", pa_b.id),
        "pa_a": gid("PersonalAssistant", pa_a.id),
        "pa_pool": gid("PersonalAssistant", pa_pool.id),
        "pa_free": gid("PersonalAssistant", pa_free.id),
    }


async def placements(db: AsyncSession) -> set[tuple[int, int]]:
    await db.rollback()  # a new snapshot: see what the API committed
    rows = await db.execute(
        select(ClusterServiceUser.cluster_id, ClusterServiceUser.service_user_id)
    )
    return {(r[0], r[1]) for r in rows}


async def teams(db: AsyncSession) -> set[tuple[int, int]]:
    await db.rollback()
    return {(r[0], r[1]) for r in await db.execute(select(ClusterPa.cluster_id, ClusterPa.pa_id))}


async def test_coordinator_cannot_take_in_a_person_they_do_not_manage(
    api: Api, db: AsyncSession, two: dict[str, Any]
) -> None:
    """The attack of issue 6: add another cluster's person (or one in no cluster) to one's
    own cluster, or to a cluster one has just created, read their personal data, remove
    them again. Such a person looks unknown, and nothing is written."""
    token = api.token(Role.COORDINATOR, two["coord_a"])
    created = await api.data(
        CREATE,
        {
            "input": {
                "name": "Fresh",
                "kind": "GEOGRAPHIC",
                "localAuthority": "E09000003",
                "postcodeDistricts": ["N12"],
            }
        },
        token=token,
    )
    fresh = created["createCluster"]["cluster"]["id"]
    before = await placements(db)
    for cluster in (two["a"], fresh, two["b"]):
        for person in (two["su_b"], two["su_none"]):
            data = await api.data(ADD_SU, {"c": cluster, "s": person}, token=token)
            assert data["addServiceUserToCluster"] == {
                "cluster": None,
                "errors": [{"field": "serviceUserId", "code": "NOT_FOUND"}],
            }, (cluster, person)
            seen = await api.data(PERSON, {"id": person}, token=token)
            assert seen["node"] is None
    assert await placements(db) == before


async def test_admins_take_people_in(api: Api, db: AsyncSession, two: dict[str, Any]) -> None:
    admin = api.token(Role.ADMIN)
    for person in (two["su_none"], two["su_b"]):
        data = await api.data(ADD_SU, {"c": two["a"], "s": person}, token=admin)
        assert data["addServiceUserToCluster"]["errors"] == []
    seen = await api.data(
        PERSON, {"id": two["su_none"]}, token=api.token(Role.COORDINATOR, two["coord_a"])
    )
    assert seen["node"]["phone"] is not None


async def test_coordinator_hands_a_person_over_to_another_active_cluster(
    api: Api, db: AsyncSession, two: dict[str, Any]
) -> None:
    """A hand-over widens only the receiving coordinator's access, agreed by the one who
    has the person now; a planned or closed cluster does not take people this way."""
    a, b = (api.token(Role.COORDINATOR, two[k]) for k in ("coord_a", "coord_b"))
    before = await placements(db)
    for cluster, code in ((two["planned_b"], "FORBIDDEN"), (two["closed_b"], "CLOSED")):
        data = await api.data(ADD_SU, {"c": cluster, "s": two["su_a"]}, token=a)
        assert data["addServiceUserToCluster"]["errors"] == [{"field": "clusterId", "code": code}]
    assert await placements(db) == before
    assert (await api.data(PERSON, {"id": two["su_a"]}, token=b))["node"] is None

    moved = await api.data(ADD_SU, {"c": two["b"], "s": two["su_a"]}, token=a)
    assert moved["addServiceUserToCluster"]["errors"] == []
    left = await api.data(REMOVE_SU, {"c": two["a"], "s": two["su_a"]}, token=a)
    assert left["removeServiceUserFromCluster"]["errors"] == []
    assert (await api.data(PERSON, {"id": two["su_a"]}, token=b))["node"]["phone"] is not None
    assert (await api.data(PERSON, {"id": two["su_a"]}, token=a))["node"] is None


async def test_coordinator_cannot_change_another_clusters_people_or_team(
    api: Api, db: AsyncSession, two: dict[str, Any]
) -> None:
    """Removing a person or changing a team is for the cluster's own coordinator. (These
    held before issue 6; kept with the other refusals so the rules stay together.)"""
    token = api.token(Role.COORDINATOR, two["coord_a"])
    people, team = await placements(db), await teams(db)
    data = await api.data(REMOVE_SU, {"c": two["b"], "s": two["su_b"]}, token=token)
    assert data["removeServiceUserFromCluster"]["errors"] == [
        {"field": "clusterId", "code": "FORBIDDEN"}
    ]
    for mutation, name in ((ADD_PA, "add"), (REMOVE_PA, "remove")):
        data = await api.data(mutation, {"c": two["b"], "p": two["pa_b"]}, token=token)
        key = f"{name}PersonalAssistant{'To' if name == 'add' else 'From'}Cluster"
        assert data[key]["errors"] == [{"field": "clusterId", "code": "FORBIDDEN"}]
    assert (await placements(db), await teams(db)) == (people, team)


async def test_coordinator_takes_onto_their_team_only_pas_who_work_for_no_one_else(
    api: Api, db: AsyncSession, two: dict[str, Any]
) -> None:
    """A team's coordinator runs its PAs' rota (absences unassign their visits anywhere):
    another coordinator's PA, on their team or in a pool serving their cluster, joins one's
    team only through that coordinator (who may share the PA with an active cluster) or an
    admin."""
    a, b = (api.token(Role.COORDINATOR, two[k]) for k in ("coord_a", "coord_b"))
    before = await teams(db)
    for pa in ("pa_b", "pa_pool"):
        data = await api.data(ADD_PA, {"c": two["a"], "p": two[pa]}, token=a)
        assert data["addPersonalAssistantToCluster"] == {
            "cluster": None,
            "errors": [{"field": "paId", "code": "FORBIDDEN"}],
        }, pa
    planned = await api.data(ADD_PA, {"c": two["planned_b"], "p": two["pa_a"]}, token=a)
    assert planned["addPersonalAssistantToCluster"]["errors"] == [
        {"field": "clusterId", "code": "FORBIDDEN"}
    ]
    assert await teams(db) == before

    free = await api.data(ADD_PA, {"c": two["a"], "p": two["pa_free"]}, token=a)
    assert free["addPersonalAssistantToCluster"]["errors"] == []
    shared = await api.data(ADD_PA, {"c": two["a"], "p": two["pa_b"]}, token=b)
    assert shared["addPersonalAssistantToCluster"]["errors"] == []
    admin = await api.data(
        ADD_PA, {"c": two["a"], "p": two["pa_pool"]}, token=api.token(Role.ADMIN)
    )
    assert admin["addPersonalAssistantToCluster"]["errors"] == []
    assert len(await teams(db)) == len(before) + 3


async def test_two_coordinators_cannot_both_take_a_free_pa(
    api: Api, db: AsyncSession, two: dict[str, Any]
) -> None:
    """A PA who works for no one may join a coordinator's team; two coordinators asking at
    once must not both get them (each check alone sees a free PA). The PA's row is locked
    for the check, so the second sees the first's team and is refused."""
    a, b = (api.token(Role.COORDINATOR, two[k]) for k in ("coord_a", "coord_b"))
    build = Build(db)
    free = [(await build.pa(f"Free {i}")).id for i in range(8)]
    await db.commit()
    for pa_id in free:
        p = gid("PersonalAssistant", pa_id)
        answers = await asyncio.gather(
            api.data(ADD_PA, {"c": two["a"], "p": p}, token=a),
            api.data(ADD_PA, {"c": two["b"], "p": p}, token=b),
        )
        won = [x for x in answers if x["addPersonalAssistantToCluster"]["errors"] == []]
        assert len(won) == 1, answers
        await db.rollback()
        on_teams = await db.scalar(
            select(func.count()).select_from(ClusterPa).where(ClusterPa.pa_id == pa_id)
        )
        assert on_teams == 1
