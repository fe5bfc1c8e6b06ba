"""Pools: shared sets of PAs serving several clusters.

Who may act (see docs/architecture.md, "Writes"):
- Creating a pool: admins and coordinators (a new pool serves no one and shows nothing).
- Adding or removing a cluster: admins, and the coordinator of that cluster; but a pool
  that has PAs and serves no cluster gets its first cluster from an admin (that cluster's
  coordinator would otherwise take over a pool they did not staff).
- Pool-wide changes (name, sharing, its PAs): admins, and a coordinator only when the pool
  serves at least one cluster and every cluster it serves is theirs (`may_manage_pool`):
  a pool's PAs may be booked for everyone in every cluster it serves.
Pools and clusters are visible to everyone in the co-op, so a refusal is FORBIDDEN; an
unknown id is NOT_FOUND. Checks run before anything is written."""

from __future__ import annotations

from sqlalchemy import delete, exists, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from care.enums import ClusterStatus, Role
from care.errors import DomainError, DomainErrors, ErrorCode, forbidden, not_found
from care.models import Cluster, PaProfile, Pool, PoolCluster, PoolPa
from care.services.access import may_manage_cluster, may_manage_pool, require_manager
from care.viewer import Viewer


def _already_exists() -> DomainError:
    return DomainError(ErrorCode.ALREADY_EXISTS, "A pool with that name already exists.", "name")


def _clean_name(name: str) -> str:
    cleaned = name.strip()
    if not cleaned:
        raise DomainError(ErrorCode.REQUIRED, "A pool needs a name.", "name")
    return cleaned


async def _name_taken(session: AsyncSession, name: str, except_id: int | None = None) -> bool:
    condition = Pool.name == name
    if except_id is not None:
        condition = condition & (Pool.id != except_id)
    return bool(await session.scalar(select(exists().where(condition))))


async def _locked_pool(session: AsyncSession, pool_id: int) -> Pool | None:
    """The pool, locked until commit: a change of which clusters it serves and a pool-wide
    change checked against those clusters run one after the other."""
    return await session.scalar(
        select(Pool)
        .where(Pool.id == pool_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )


async def _require_pool(session: AsyncSession, pool_id: int, field: str = "poolId") -> Pool:
    pool = await _locked_pool(session, pool_id)
    if pool is None:
        raise not_found("pool", field)
    return pool


async def _require_pool_manager(
    session: AsyncSession, viewer: Viewer, pool_id: int, field: str = "poolId"
) -> None:
    if not await may_manage_pool(session, viewer, pool_id):
        raise forbidden(
            "Only admins, and a coordinator who runs every cluster the pool serves, may "
            "change the pool.",
            field,
        )


async def _require_cluster_manager(session: AsyncSession, viewer: Viewer, cluster_id: int) -> None:
    if not await session.scalar(select(exists().where(Cluster.id == cluster_id))):
        raise not_found("cluster", "clusterId")
    if not await may_manage_cluster(session, viewer, cluster_id):
        raise forbidden(
            "Only admins and the cluster's coordinator may change which pools serve it.",
            "clusterId",
        )


async def create_pool(
    session: AsyncSession, viewer: Viewer, name: str, shared_with_partners: bool = False
) -> int:
    require_manager(viewer)
    cleaned = _clean_name(name)
    if await _name_taken(session, cleaned):
        raise _already_exists()
    # ON CONFLICT on the unique name: a concurrent create of the same name loses cleanly.
    pool_id = await session.scalar(
        insert(Pool)
        .values(name=cleaned, shared_with_partners=shared_with_partners)
        .on_conflict_do_nothing(index_elements=[Pool.name])
        .returning(Pool.id)
    )
    if pool_id is None:
        raise _already_exists()
    return int(pool_id)


async def update_pool(
    session: AsyncSession,
    viewer: Viewer,
    pool_id: int,
    name: str | None = None,
    shared_with_partners: bool | None = None,
) -> int:
    """Change the given fields; None leaves a field as it is."""
    require_manager(viewer)
    pool = await _require_pool(session, pool_id, "id")
    await _require_pool_manager(session, viewer, pool_id, "id")
    if name is not None:
        cleaned = _clean_name(name)
        if await _name_taken(session, cleaned, except_id=pool_id):
            raise _already_exists()
        pool.name = cleaned
    if shared_with_partners is not None:
        pool.shared_with_partners = shared_with_partners
    # The unique constraint stays the last guard against a concurrent rename.
    await session.flush()
    return pool_id


async def add_personal_assistant(
    session: AsyncSession, viewer: Viewer, pool_id: int, pa_id: int
) -> int:
    require_manager(viewer)
    errors: list[DomainError] = []
    if await _locked_pool(session, pool_id) is None:
        errors.append(not_found("pool", "poolId"))
    if not await session.scalar(select(exists().where(PaProfile.member_id == pa_id))):
        errors.append(not_found("personal assistant", "paId"))
    if errors:
        raise DomainErrors(errors)
    await _require_pool_manager(session, viewer, pool_id)
    await session.execute(
        insert(PoolPa).values(pool_id=pool_id, pa_id=pa_id).on_conflict_do_nothing()
    )
    return pool_id


async def remove_personal_assistant(
    session: AsyncSession, viewer: Viewer, pool_id: int, pa_id: int
) -> int:
    require_manager(viewer)
    await _require_pool(session, pool_id)
    await _require_pool_manager(session, viewer, pool_id)
    result = await session.execute(
        delete(PoolPa).where(PoolPa.pool_id == pool_id, PoolPa.pa_id == pa_id)
    )
    if result.rowcount == 0:  # type: ignore[attr-defined]
        raise DomainError(ErrorCode.NOT_FOUND, "That PA is not in this pool.", "paId")
    return pool_id


async def _staffed_and_serving_no_one(session: AsyncSession, pool_id: int) -> bool:
    staffed = exists().where(PoolPa.pool_id == pool_id)
    serving = exists().where(PoolCluster.pool_id == pool_id)
    return bool(await session.scalar(select(staffed & ~serving)))


async def add_cluster(session: AsyncSession, viewer: Viewer, pool_id: int, cluster_id: int) -> int:
    require_manager(viewer)
    errors: list[DomainError] = []
    if await _locked_pool(session, pool_id) is None:
        errors.append(not_found("pool", "poolId"))
    status = await session.scalar(select(Cluster.status).where(Cluster.id == cluster_id))
    if status is None:
        errors.append(not_found("cluster", "clusterId"))
    elif status == ClusterStatus.CLOSED.value:
        # A closed cluster serves no one: a pool must not be planned around it.
        errors.append(
            DomainError(ErrorCode.INVALID, "A closed cluster cannot join a pool.", "clusterId")
        )
    if errors:
        raise DomainErrors(errors)
    await _require_cluster_manager(session, viewer, cluster_id)
    if viewer.role is not Role.ADMIN and await _staffed_and_serving_no_one(session, pool_id):
        # Its first cluster would make the coordinator its manager (`may_manage_pool`):
        # its name, its sharing and its PAs, whom they did not choose. A fresh pool (no
        # PAs yet) takes its creator's cluster.
        raise forbidden(
            "This pool has PAs but serves no cluster yet: an admin gives it its first one.",
            "poolId",
        )
    await session.execute(
        insert(PoolCluster).values(pool_id=pool_id, cluster_id=cluster_id).on_conflict_do_nothing()
    )
    return pool_id


async def remove_cluster(
    session: AsyncSession, viewer: Viewer, pool_id: int, cluster_id: int
) -> int:
    require_manager(viewer)
    await _require_pool(session, pool_id)
    await _require_cluster_manager(session, viewer, cluster_id)
    result = await session.execute(
        delete(PoolCluster).where(
            PoolCluster.pool_id == pool_id, PoolCluster.cluster_id == cluster_id
        )
    )
    if result.rowcount == 0:  # type: ignore[attr-defined]
        raise DomainError(
            ErrorCode.NOT_FOUND, "That cluster is not served by this pool.", "clusterId"
        )
    return pool_id
