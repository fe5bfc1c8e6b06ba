"""Pool mutations through the API: who may act, validation, idempotent membership."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from care.enums import Role
from care.models import Cluster, Member, Pool, PoolCluster, PoolPa
from tests.conftest import Api
from tests.factories import BARNET, Build, gid

POOL_FIELDS = "pool { id name sharedWithPartners } errors { field message code }"

CREATE = f"""mutation($input: CreatePoolInput!) {{
  createPool(input: $input) {{ {POOL_FIELDS} }} }}"""
UPDATE = f"""mutation($id: ID!, $input: UpdatePoolInput!) {{
  updatePool(id: $id, input: $input) {{ {POOL_FIELDS} }} }}"""


def _membership(name: str, arg: str) -> str:
    return f"""mutation($pool: ID!, $other: ID!) {{
      {name}(poolId: $pool, {arg}: $other) {{
        pool {{ id name clusters {{ name }} personalAssistants {{ nodes {{ name }} }} }}
        errors {{ field message code }} }} }}"""


ADD_PA = _membership("addPersonalAssistantToPool", "paId")
REMOVE_PA = _membership("removePersonalAssistantFromPool", "paId")
ADD_CLUSTER = _membership("addClusterToPool", "clusterId")
REMOVE_CLUSTER = _membership("removeClusterFromPool", "clusterId")

ADMIN = (Role.ADMIN, None)


async def _count(db: AsyncSession, model: type) -> int:
    await db.rollback()  # see the API's committed writes, not an old snapshot
    return int(await db.scalar(select(func.count()).select_from(model)) or 0)


async def _pool_rows(db: AsyncSession) -> list[tuple[str, bool]]:
    await db.rollback()
    rows = await db.execute(select(Pool.name, Pool.shared_with_partners).order_by(Pool.id))
    return [(r.name, r.shared_with_partners) for r in rows]


def _errors(data: dict[str, Any], field: str) -> list[tuple[str | None, str]]:
    return [(e["field"], e["code"]) for e in data[field]["errors"]]


async def _setup(db: AsyncSession) -> dict[str, Any]:
    b = Build(db)
    await b.las()
    await b.coop()
    coordinator = await b.worker("Cora Coordinator")
    cluster = await b.cluster(support_worker=coordinator)
    closed = await b.cluster("Old Barnet")
    closed.status = "CLOSED"
    pa = await b.pa()
    other_pa = await b.pa("Pip Other")
    su = await b.service_user(cluster=cluster)
    pool = await b.pool("North")
    await db.commit()
    return dict(
        coordinator=coordinator.id,
        cluster=cluster.id,
        closed=closed.id,
        pa=pa.id,
        other_pa=other_pa.id,
        su=su.id,
        pool=pool.id,
    )


# --- create and update ---------------------------------------------------------------


async def test_admin_creates_pool(api: Api, db: AsyncSession) -> None:
    data = await api.data(
        CREATE, {"input": {"name": "  South  ", "sharedWithPartners": True}}, as_=ADMIN
    )
    payload = data["createPool"]
    assert payload["errors"] == []
    assert payload["pool"]["name"] == "South"
    assert payload["pool"]["sharedWithPartners"] is True
    assert await _pool_rows(db) == [("South", True)]
    # The returned id is the pool's global id.
    back = await api.data(
        "query($id: ID!) { node(id: $id) { ... on Pool { name } } }",
        {"id": payload["pool"]["id"]},
        as_=ADMIN,
    )
    assert back["node"] == {"name": "South"}


async def test_coordinator_creates_pool_not_shared_by_default(api: Api, db: AsyncSession) -> None:
    ids = await _setup(db)
    data = await api.data(
        CREATE, {"input": {"name": "South"}}, as_=(Role.COORDINATOR, ids["coordinator"])
    )
    assert data["createPool"]["pool"]["sharedWithPartners"] is False
    assert ("South", False) in await _pool_rows(db)


async def test_other_roles_are_forbidden(api: Api, db: AsyncSession) -> None:
    ids = await _setup(db)
    callers = [(Role.PA, ids["pa"]), (Role.SERVICE_USER, ids["su"])]
    for caller in callers:
        assert await api.refused(CREATE, {"input": {"name": "Sneaky"}}, as_=caller) == "FORBIDDEN"
        refused = await api.refused(
            ADD_PA,
            {"pool": gid("Pool", ids["pool"]), "other": gid("PersonalAssistant", ids["pa"])},
            as_=caller,
        )
        assert refused == "FORBIDDEN"
    analyst = api.token(Role.LA_ANALYST, la=BARNET)
    assert await api.refused(CREATE, {"input": {"name": "Sneaky"}}, token=analyst) == "FORBIDDEN"
    assert await _pool_rows(db) == [("North", False)]
    assert await _count(db, PoolPa) == 0


async def test_anonymous_is_unauthenticated(api: Api, db: AsyncSession) -> None:
    assert await api.refused(CREATE, {"input": {"name": "South"}}) == "UNAUTHENTICATED"
    variables = {"pool": gid("Pool", 1), "other": gid("Cluster", 1)}
    assert await api.refused(ADD_CLUSTER, variables) == "UNAUTHENTICATED"
    assert await _count(db, Pool) == 0


async def test_duplicate_and_blank_names(api: Api, db: AsyncSession) -> None:
    await _setup(db)
    data = await api.data(CREATE, {"input": {"name": "North"}}, as_=ADMIN)
    assert _errors(data, "createPool") == [("name", "ALREADY_EXISTS")]
    assert "already exists" in data["createPool"]["errors"][0]["message"]
    data = await api.data(CREATE, {"input": {"name": "   "}}, as_=ADMIN)
    assert _errors(data, "createPool") == [("name", "REQUIRED")]
    assert await _pool_rows(db) == [("North", False)]


async def _serve_own_cluster(api: Api, ids: dict[str, Any]) -> None:
    """The coordinator puts their cluster in the pool: then every cluster it serves is
    theirs, and pool-wide changes are theirs to make."""
    data = await api.data(
        ADD_CLUSTER,
        {"pool": gid("Pool", ids["pool"]), "other": gid("Cluster", ids["cluster"])},
        as_=(Role.COORDINATOR, ids["coordinator"]),
    )
    assert data["addClusterToPool"]["errors"] == []


async def test_update_pool(api: Api, db: AsyncSession) -> None:
    ids = await _setup(db)
    pool = gid("Pool", ids["pool"])
    await _serve_own_cluster(api, ids)
    data = await api.data(
        UPDATE,
        {"id": pool, "input": {"sharedWithPartners": True}},
        as_=(Role.COORDINATOR, ids["coordinator"]),
    )
    assert data["updatePool"]["pool"] == {"id": pool, "name": "North", "sharedWithPartners": True}
    data = await api.data(UPDATE, {"id": pool, "input": {"name": "North East"}}, as_=ADMIN)
    assert data["updatePool"]["pool"]["name"] == "North East"
    # Keeping its own name is not a clash.
    data = await api.data(UPDATE, {"id": pool, "input": {"name": "North East"}}, as_=ADMIN)
    assert data["updatePool"]["errors"] == []
    assert await _pool_rows(db) == [("North East", True)]


async def test_update_errors_change_nothing(api: Api, db: AsyncSession) -> None:
    ids = await _setup(db)
    await api.data(CREATE, {"input": {"name": "South"}}, as_=ADMIN)
    pool = gid("Pool", ids["pool"])
    cases = [
        (pool, {"name": "South", "sharedWithPartners": True}, ("name", "ALREADY_EXISTS")),
        (pool, {"name": "", "sharedWithPartners": True}, ("name", "REQUIRED")),
        (gid("Pool", 999), {"name": "West"}, ("id", "NOT_FOUND")),
        (gid("Cluster", ids["cluster"]), {"name": "West"}, ("id", "NOT_FOUND")),
    ]
    for target, fields, expected in cases:
        data = await api.data(UPDATE, {"id": target, "input": fields}, as_=ADMIN)
        assert _errors(data, "updatePool") == [expected], fields
        assert data["updatePool"]["pool"] is None
    variables = {"id": pool, "input": {"name": "West"}}
    assert await api.refused(UPDATE, variables, as_=(Role.PA, ids["pa"])) == "FORBIDDEN"
    assert await _pool_rows(db) == [("North", False), ("South", False)]


# --- personal assistants -------------------------------------------------------------


async def test_add_and_remove_personal_assistant(api: Api, db: AsyncSession) -> None:
    ids = await _setup(db)
    args = {"pool": gid("Pool", ids["pool"]), "other": gid("PersonalAssistant", ids["pa"])}
    await _serve_own_cluster(api, ids)
    for _ in range(2):  # adding twice is harmless
        data = await api.data(ADD_PA, args, as_=(Role.COORDINATOR, ids["coordinator"]))
        payload = data["addPersonalAssistantToPool"]
        assert payload["errors"] == []
        assert payload["pool"]["personalAssistants"]["nodes"] == [{"name": "Pat Assistant"}]
    assert await _count(db, PoolPa) == 1
    pools = await api.data(
        "query($id: ID!) { node(id: $id) { ... on PersonalAssistant { pools { name } } } }",
        {"id": args["other"]},
        as_=ADMIN,
    )
    assert pools["node"]["pools"] == [{"name": "North"}]

    data = await api.data(REMOVE_PA, args, as_=ADMIN)
    assert data["removePersonalAssistantFromPool"]["errors"] == []
    assert data["removePersonalAssistantFromPool"]["pool"]["personalAssistants"]["nodes"] == []
    assert await _count(db, PoolPa) == 0
    data = await api.data(REMOVE_PA, args, as_=ADMIN)
    assert _errors(data, "removePersonalAssistantFromPool") == [("paId", "NOT_FOUND")]


async def test_personal_assistant_not_found(api: Api, db: AsyncSession) -> None:
    ids = await _setup(db)
    pool = gid("Pool", ids["pool"])
    for other in (
        gid("PersonalAssistant", 999),
        gid("PersonalAssistant", ids["su"]),
        gid("ServiceUser", ids["pa"]),
    ):
        data = await api.data(ADD_PA, {"pool": pool, "other": other}, as_=ADMIN)
        assert _errors(data, "addPersonalAssistantToPool") == [("paId", "NOT_FOUND")]
    data = await api.data(
        ADD_PA, {"pool": gid("Pool", 999), "other": gid("PersonalAssistant", 999)}, as_=ADMIN
    )
    assert sorted(_errors(data, "addPersonalAssistantToPool")) == [
        ("paId", "NOT_FOUND"),
        ("poolId", "NOT_FOUND"),
    ]
    data = await api.data(
        REMOVE_PA,
        {"pool": gid("Pool", 999), "other": gid("PersonalAssistant", ids["pa"])},
        as_=ADMIN,
    )
    assert _errors(data, "removePersonalAssistantFromPool") == [("poolId", "NOT_FOUND")]
    assert await _count(db, PoolPa) == 0


# --- clusters ------------------------------------------------------------------------


async def test_add_and_remove_cluster(api: Api, db: AsyncSession) -> None:
    ids = await _setup(db)
    args = {"pool": gid("Pool", ids["pool"]), "other": gid("Cluster", ids["cluster"])}
    for _ in range(2):
        data = await api.data(ADD_CLUSTER, args, as_=ADMIN)
        assert data["addClusterToPool"]["errors"] == []
        assert data["addClusterToPool"]["pool"]["clusters"] == [{"name": "Finchley"}]
    assert await _count(db, PoolCluster) == 1
    back = await api.data(
        "query($id: ID!) { cluster(id: $id) { pools { name } } }",
        {"id": args["other"]},
        as_=(Role.COORDINATOR, ids["coordinator"]),
    )
    assert back["cluster"]["pools"] == [{"name": "North"}]

    data = await api.data(REMOVE_CLUSTER, args, as_=(Role.COORDINATOR, ids["coordinator"]))
    assert data["removeClusterFromPool"]["errors"] == []
    assert data["removeClusterFromPool"]["pool"]["clusters"] == []
    data = await api.data(REMOVE_CLUSTER, args, as_=ADMIN)
    assert _errors(data, "removeClusterFromPool") == [("clusterId", "NOT_FOUND")]
    assert await _count(db, PoolCluster) == 0


async def test_closed_or_unknown_cluster_cannot_join(api: Api, db: AsyncSession) -> None:
    ids = await _setup(db)
    pool = gid("Pool", ids["pool"])
    data = await api.data(
        ADD_CLUSTER, {"pool": pool, "other": gid("Cluster", ids["closed"])}, as_=ADMIN
    )
    assert _errors(data, "addClusterToPool") == [("clusterId", "INVALID")]
    assert "closed" in data["addClusterToPool"]["errors"][0]["message"]
    for other in (gid("Cluster", 999), gid("Pool", ids["pool"])):
        data = await api.data(ADD_CLUSTER, {"pool": pool, "other": other}, as_=ADMIN)
        assert _errors(data, "addClusterToPool") == [("clusterId", "NOT_FOUND")]
    data = await api.data(
        ADD_CLUSTER, {"pool": gid("Pool", 999), "other": gid("Cluster", ids["cluster"])}, as_=ADMIN
    )
    assert _errors(data, "addClusterToPool") == [("poolId", "NOT_FOUND")]
    assert await _count(db, PoolCluster) == 0


# --- a coordinator changes only what they run ------------------------------------------


async def _pool_state(db: AsyncSession) -> tuple[Any, ...]:
    await db.rollback()
    pools = (await db.execute(select(Pool.id, Pool.name, Pool.shared_with_partners))).all()
    clusters = (await db.execute(select(PoolCluster.pool_id, PoolCluster.cluster_id))).all()
    pas = (await db.execute(select(PoolPa.pool_id, PoolPa.pa_id))).all()
    return tuple(sorted(tuple(r) for r in rows) for rows in (pools, clusters, pas))


async def test_coordinator_cannot_change_pools_of_other_clusters(
    api: Api, db: AsyncSession
) -> None:
    """A pool serving another coordinator's cluster (alone, or with one's own) is not one
    coordinator's to rename, share or staff, and another's cluster is not theirs to take
    out of it or put in it. Refused, and nothing changes."""
    ids = await _setup(db)
    b = Build(db)
    theirs_coordinator = await b.worker("Otto Ordinator")
    theirs = await b.cluster("Barnet East", support_worker=theirs_coordinator)
    their_pa = await b.pa("Pip Theirs")
    mine = await db.get_one(Cluster, ids["cluster"])
    pa = await db.get_one(Member, ids["pa"])
    only_theirs = await b.pool("East", pas=[their_pa], clusters=[theirs])
    shared = await b.pool("Both", pas=[their_pa], clusters=[theirs, mine])
    # Plain ids: the rows expire at commit (and at every snapshot's rollback).
    theirs_id, their_pa_id, mine_id, pa_id = theirs.id, their_pa.id, mine.id, pa.id
    only_theirs_id, shared_id = only_theirs.id, shared.id
    await db.commit()
    before = await _pool_state(db)
    me = (Role.COORDINATOR, ids["coordinator"])
    for pool in (only_theirs_id, shared_id, ids["pool"]):  # the last serves no cluster
        target = gid("Pool", pool)
        data = await api.data(UPDATE, {"id": target, "input": {"name": f"Mine {pool}"}}, as_=me)
        assert _errors(data, "updatePool") == [("id", "FORBIDDEN")]
        for mutation, field, other in (
            (ADD_PA, "addPersonalAssistantToPool", gid("PersonalAssistant", pa_id)),
            (REMOVE_PA, "removePersonalAssistantFromPool", gid("PersonalAssistant", their_pa_id)),
            (ADD_CLUSTER, "addClusterToPool", gid("Cluster", theirs_id)),
            (REMOVE_CLUSTER, "removeClusterFromPool", gid("Cluster", theirs_id)),
        ):
            data = await api.data(mutation, {"pool": target, "other": other}, as_=me)
            expected = "clusterId" if "Cluster" in field else "poolId"
            assert _errors(data, field) == [(expected, "FORBIDDEN")], (pool, field)
            assert data[field]["pool"] is None
    assert await _pool_state(db) == before

    # Their own cluster they may put in or take out of any pool.
    data = await api.data(
        REMOVE_CLUSTER, {"pool": gid("Pool", shared_id), "other": gid("Cluster", mine_id)}, as_=me
    )
    assert data["removeClusterFromPool"]["errors"] == []
    data = await api.data(
        ADD_CLUSTER, {"pool": gid("Pool", only_theirs_id), "other": gid("Cluster", mine_id)}, as_=me
    )
    assert data["addClusterToPool"]["errors"] == []
