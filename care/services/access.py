"""Who may change what: checks shared by the write services.

The principle (see docs/architecture.md, "Writes"): no write may widen what its caller can
see, except an admin's. A coordinator manages
- the clusters they support (`may_manage_cluster`),
- the service users in those clusters (`may_manage_service_user`),
- the PAs on those clusters' teams (`may_manage_pa`); a PA who works for no one else
  (`pa_works_for_others`: on no other team or pool, and coordinating no other cluster)
  they may take onto a team, and so come to manage; a PA's record (contact details,
  membership) not when the PA is another cluster's coordinator (`runs_others`),
- a pool only when it serves at least one cluster and every cluster it serves is theirs
  (`may_manage_pool`).
Everything else is admins' work. A refusal is NOT_FOUND when the caller may not see the
record and FORBIDDEN when they may see it but not change it."""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, exists, select
from sqlalchemy.ext.asyncio import AsyncSession

from care import policy
from care.enums import Role
from care.errors import forbidden, not_found
from care.models import Cluster, ClusterPa, ClusterServiceUser, Member, PoolCluster, PoolPa
from care.viewer import Viewer

MANAGERS = (Role.ADMIN, Role.COORDINATOR)


def require_manager(
    viewer: Viewer, message: str = "Only admins and coordinators may do this."
) -> None:
    """Admins and coordinators run the co-op's records."""
    if viewer.role not in MANAGERS:
        raise forbidden(message)


async def member_is_visible(session: AsyncSession, viewer: Viewer, member_id: int) -> bool:
    return bool(
        await session.scalar(
            select(exists().where(Member.id == member_id, policy.member_visible(viewer)))
        )
    )


async def require_visible_member(
    session: AsyncSession, viewer: Viewer, member_id: int, what: str, field: str
) -> None:
    if not await member_is_visible(session, viewer, member_id):
        raise not_found(what, field)


async def may_manage_cluster(session: AsyncSession, viewer: Viewer, cluster_id: int) -> bool:
    """Admins manage every cluster; a coordinator the clusters they support."""
    if viewer.role is Role.ADMIN:
        return True
    return bool(
        await session.scalar(
            select(
                exists().where(Cluster.id == cluster_id, policy.cluster_managed(viewer, Cluster.id))
            )
        )
    )


async def may_manage_service_user(
    session: AsyncSession, viewer: Viewer, service_user_id: int
) -> bool:
    """Admins, and coordinators of a cluster the person belongs to."""
    return await _in_a_supported_cluster(
        session,
        viewer,
        ClusterServiceUser.service_user_id == service_user_id,
        ClusterServiceUser.cluster_id,
    )


async def may_manage_pa(session: AsyncSession, viewer: Viewer, pa_id: int) -> bool:
    """Admins, and coordinators of a cluster whose team the PA is on: the PA's rota
    (absences, availability) and record are theirs to change. Coordinators see every PA,
    so a refusal here is FORBIDDEN, not NOT_FOUND."""
    return await _in_a_supported_cluster(
        session, viewer, ClusterPa.pa_id == pa_id, ClusterPa.cluster_id
    )


async def _in_a_supported_cluster(
    session: AsyncSession, viewer: Viewer, link: ColumnElement[bool], cluster_id: Any
) -> bool:
    """Admins: always. Coordinators: when a row of a cluster link table (`link` picks the
    person's rows) ties the person to a cluster they support. Anyone else: never."""
    if viewer.role is Role.ADMIN:
        return True
    if viewer.role is not Role.COORDINATOR:
        return False
    mine = cluster_id.in_(policy.supported_cluster_ids(viewer))
    return bool(await session.scalar(select(exists().where(link, mine))))


async def may_manage_pool(session: AsyncSession, viewer: Viewer, pool_id: int) -> bool:
    """Pool-wide changes (its name, sharing, its PAs) touch every cluster it serves: admins,
    and a coordinator only when the pool serves at least one cluster and all of them are
    theirs. An empty pool is the admins' (else any coordinator could run it)."""
    if viewer.role is Role.ADMIN:
        return True
    if viewer.role is not Role.COORDINATOR:
        return False
    served = exists().where(PoolCluster.pool_id == pool_id)
    foreign = exists().where(
        PoolCluster.pool_id == pool_id,
        PoolCluster.cluster_id.not_in(policy.supported_cluster_ids(viewer)),
    )
    return bool(await session.scalar(select(served & ~foreign)))


async def pa_works_for_others(session: AsyncSession, viewer: Viewer, pa_id: int) -> bool:
    """Is the PA on the team of, or in a pool serving, a cluster the viewer does not run, or
    the support worker of one (a coordinator who also works as a PA)? Then another
    coordinator (or an admin) is responsible for the PA: taking the PA onto one's own team
    would hand over their absences, availability and record."""
    mine = policy.supported_cluster_ids(viewer)
    other_team = exists().where(ClusterPa.pa_id == pa_id, ClusterPa.cluster_id.not_in(mine))
    other_pool = exists().where(
        PoolPa.pa_id == pa_id,
        PoolPa.pool_id == PoolCluster.pool_id,
        PoolCluster.cluster_id.not_in(mine),
    )
    return bool(await session.scalar(select(other_team | other_pool | runs_others(viewer, pa_id))))


def runs_others(viewer: Viewer, member_id: int) -> ColumnElement[bool]:
    """Does the member support (coordinate) a cluster the viewer does not run? Their
    membership and contact details are then no team coordinator's to change."""
    return exists().where(
        Cluster.support_worker_id == member_id,
        Cluster.id.not_in(policy.supported_cluster_ids(viewer)),
    )
