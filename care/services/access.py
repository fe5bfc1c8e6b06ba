"""Who may change what: checks shared by the write services."""

from __future__ import annotations

from sqlalchemy import exists, select
from sqlalchemy.ext.asyncio import AsyncSession

from care import policy
from care.enums import Role
from care.errors import forbidden, not_found
from care.models import Cluster, ClusterServiceUser, Member
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
    if viewer.role is Role.ADMIN:
        return True
    if viewer.role is not Role.COORDINATOR:
        return False
    return bool(
        await session.scalar(
            select(
                exists().where(
                    ClusterServiceUser.service_user_id == service_user_id,
                    ClusterServiceUser.cluster_id.in_(policy.supported_cluster_ids(viewer)),
                )
            )
        )
    )
