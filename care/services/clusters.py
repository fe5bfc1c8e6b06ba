"""Clusters: create, update, close, and their service users and PA team."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from decimal import Decimal

from sqlalchemy import delete, exists, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from care import vocabulary
from care.enums import ClusterKind, ClusterStatus, MembershipClass, Role
from care.errors import DomainError, DomainErrors, ErrorCode, forbidden, not_found
from care.models import (
    Cluster,
    ClusterPa,
    ClusterServiceUser,
    LocalAuthority,
    Member,
    PaProfile,
    ServiceUserProfile,
)
from care.services import UNSET
from care.services.access import (
    may_manage_cluster,
    may_manage_pa,
    may_manage_service_user,
    pa_works_for_others,
    require_manager,
    require_visible_member,
)
from care.viewer import Viewer

POSTCODE_DISTRICT = re.compile(r"^[A-Z]{1,2}[0-9][0-9A-Z]?$")


@dataclass
class ClusterFields:
    """Fields of a cluster; on update, attributes left UNSET are not changed."""

    name: str | object = UNSET
    kind: ClusterKind | object = UNSET
    la_code: str | object = UNSET
    support_worker_id: int | None | object = UNSET
    status: ClusterStatus | object = UNSET
    centre: tuple[float, float] | None | object = UNSET
    radius_km: float | None | object = UNSET
    postcode_districts: list[str] | object = UNSET
    need_tags: list[str] | object = UNSET
    errors: list[DomainError] = field(default_factory=list)


def _clean_tags(values: list[str]) -> list[str]:
    return vocabulary.normalise_all(values)


async def _validate(
    session: AsyncSession, viewer: Viewer, f: ClusterFields, held: list[str] | None = None
) -> None:
    errors: list[DomainError] = []
    if f.name is not UNSET and (not isinstance(f.name, str) or not f.name.strip()):
        errors.append(DomainError(ErrorCode.REQUIRED, "A cluster needs a name.", "name"))
    if f.la_code is not UNSET:
        found = await session.scalar(select(exists().where(LocalAuthority.gss_code == f.la_code)))
        if not found:
            errors.append(
                DomainError(
                    ErrorCode.NOT_FOUND, "No local authority with that GSS code.", "localAuthority"
                )
            )
    if isinstance(f.centre, tuple):
        lat, lon = f.centre
        if not (-90 <= lat <= 90 and -180 <= lon <= 180):
            errors.append(
                DomainError(ErrorCode.INVALID, "Latitude or longitude out of range.", "centre")
            )
    if isinstance(f.radius_km, float | int) and f.radius_km <= 0:
        errors.append(DomainError(ErrorCode.INVALID, "The radius must be positive.", "radiusKm"))
    if isinstance(f.postcode_districts, list):
        bad = [d for d in f.postcode_districts if not POSTCODE_DISTRICT.match(d.strip().upper())]
        if bad:
            errors.append(
                DomainError(
                    ErrorCode.INVALID,
                    f"Not postcode districts: {', '.join(bad)}.",
                    "postcodeDistricts",
                )
            )
    if isinstance(f.support_worker_id, int):
        worker = await session.scalar(
            select(Member.membership_class).where(Member.id == f.support_worker_id)
        )
        if worker is None:
            errors.append(not_found("member", "supportWorkerId"))
        elif worker != MembershipClass.WORKER.value:
            errors.append(
                DomainError(
                    ErrorCode.INVALID,
                    "The support worker must be a worker member of the co-op.",
                    "supportWorkerId",
                )
            )
    if errors:
        raise DomainErrors(errors)
    if isinstance(f.need_tags, list):
        await vocabulary.require_terms(
            session, _clean_tags(f.need_tags), "needTags", need=True, held=held or []
        )


def _check_shape(cluster: Cluster) -> None:
    """A geographic cluster needs an area; a need-based one needs needs."""
    if cluster.kind == ClusterKind.GEOGRAPHIC.value:
        has_circle = cluster.centre_latitude is not None and cluster.radius_km is not None
        if not has_circle and not cluster.postcode_districts:
            raise DomainError(
                ErrorCode.REQUIRED,
                "A geographic cluster needs a centre and radius, or postcode districts.",
                "centre",
            )
    if cluster.kind == ClusterKind.NEED_BASED.value and not cluster.need_tags:
        raise DomainError(ErrorCode.REQUIRED, "A need-based cluster needs need tags.", "needTags")


def _apply(cluster: Cluster, f: ClusterFields) -> None:
    if isinstance(f.name, str):
        cluster.name = f.name.strip()
    if isinstance(f.kind, ClusterKind):
        cluster.kind = f.kind.value
    if isinstance(f.la_code, str):
        cluster.la_code = f.la_code
    if f.support_worker_id is not UNSET:
        cluster.support_worker_id = f.support_worker_id  # type: ignore[assignment]
    if isinstance(f.status, ClusterStatus):
        cluster.status = f.status.value
    if f.centre is not UNSET:
        if isinstance(f.centre, tuple):
            cluster.centre_latitude, cluster.centre_longitude = f.centre
        else:
            cluster.centre_latitude = cluster.centre_longitude = None
    if f.radius_km is not UNSET:
        cluster.radius_km = Decimal(str(f.radius_km)) if f.radius_km is not None else None
    if isinstance(f.postcode_districts, list):
        cluster.postcode_districts = sorted(
            {d.strip().upper() for d in f.postcode_districts if d.strip()}
        )
    if isinstance(f.need_tags, list):
        cluster.need_tags = _clean_tags(f.need_tags)


async def _check_coordinator_area(session: AsyncSession, viewer: Viewer, la_code: object) -> None:
    """A coordinator opens clusters only in a local authority where they already support a
    cluster that is not closed. A cluster's local authority widens who sees referrals (its
    coordinator sees those in it and next to it, `policy.in_referral_area`), so opening one
    elsewhere, even next door, would let a coordinator grant themselves the waiting
    demand of another area, step by step across the map. Expanding into another local
    authority is the co-op's decision: an admin opens the first cluster there (and names
    its coordinator)."""
    if viewer.role is not Role.COORDINATOR or not isinstance(la_code, str):
        return
    works_there = await session.scalar(
        select(
            exists().where(
                Cluster.la_code == la_code,
                Cluster.support_worker_id == viewer.member_id,
                Cluster.status != ClusterStatus.CLOSED.value,
            )
        )
    )
    if not works_there:
        raise forbidden(
            "Coordinators open clusters in a local authority where they already run one; "
            "an admin opens the first cluster in another local authority.",
            "localAuthority",
        )


async def create_cluster(session: AsyncSession, viewer: Viewer, f: ClusterFields) -> int:
    require_manager(viewer)
    if f.support_worker_id is UNSET and viewer.role is Role.COORDINATOR:
        f.support_worker_id = viewer.member_id  # a coordinator runs what they open
    await _validate(session, viewer, f)
    await _check_coordinator_area(session, viewer, f.la_code)
    cluster = Cluster(postcode_districts=[], need_tags=[], status=ClusterStatus.PLANNED.value)
    _apply(cluster, f)
    _check_shape(cluster)
    session.add(cluster)
    await session.flush()
    return cluster.id


async def _managed_cluster(session: AsyncSession, viewer: Viewer, cluster_id: int) -> Cluster:
    cluster = await session.get(Cluster, cluster_id)
    if cluster is None or viewer.role not in (Role.ADMIN, Role.COORDINATOR):
        raise not_found("cluster", "clusterId")
    if not await may_manage_cluster(session, viewer, cluster_id):
        raise forbidden("Only admins and the cluster's coordinator may change it.", "clusterId")
    return cluster


async def update_cluster(
    session: AsyncSession, viewer: Viewer, cluster_id: int, f: ClusterFields
) -> int:
    cluster = await _managed_cluster(session, viewer, cluster_id)
    if cluster.status == ClusterStatus.CLOSED.value:
        raise DomainError(ErrorCode.CLOSED, "The cluster is closed.", "clusterId")
    if f.status is ClusterStatus.CLOSED:
        raise DomainError(ErrorCode.INVALID, "Use closeCluster to close a cluster.", "status")
    await _validate(session, viewer, f, held=list(cluster.need_tags))
    _apply(cluster, f)
    _check_shape(cluster)
    await session.flush()
    return cluster.id


async def close_cluster(session: AsyncSession, viewer: Viewer, cluster_id: int) -> int:
    cluster = await _managed_cluster(session, viewer, cluster_id)
    if cluster.status == ClusterStatus.CLOSED.value:
        raise DomainError(ErrorCode.CLOSED, "The cluster is already closed.", "clusterId")
    cluster.status = ClusterStatus.CLOSED.value
    cluster.closed_at = dt.datetime.now(dt.UTC)
    await session.flush()
    return cluster.id


async def add_service_user(
    session: AsyncSession, viewer: Viewer, cluster_id: int, service_user_id: int
) -> int:
    """Put a person in a cluster (they may be in several).

    Whoever runs the target cluster reads the person's personal data afterwards, so:
    admins place anyone (intake of a person in no cluster, or someone else's); a
    coordinator only a person they already manage, into a cluster of theirs or, as a
    hand-over, into another ACTIVE cluster. A hand-over widens only the receiving
    coordinator's access, and is agreed by the coordinator who has the person now; they
    then remove the person from their own cluster if the move is complete."""
    cluster = await session.get(Cluster, cluster_id)
    if cluster is None or viewer.role not in (Role.ADMIN, Role.COORDINATOR):
        raise not_found("cluster", "clusterId")
    # Coordinators see exactly the service users they manage: anyone else is NOT_FOUND,
    # as unknown, so ids cannot be walked to find people.
    await require_visible_member(session, viewer, service_user_id, "service user", "serviceUserId")
    is_su = await session.scalar(
        select(exists().where(ServiceUserProfile.member_id == service_user_id))
    )
    if not is_su:
        raise not_found("service user", "serviceUserId")
    if not await may_manage_service_user(session, viewer, service_user_id):
        raise forbidden(
            "Only admins and the person's coordinators may place them in a cluster.",
            "serviceUserId",
        )
    if cluster.status == ClusterStatus.CLOSED.value:
        raise DomainError(ErrorCode.CLOSED, "The cluster is closed.", "clusterId")
    if (
        not await may_manage_cluster(session, viewer, cluster_id)
        and cluster.status != ClusterStatus.ACTIVE.value
    ):
        raise forbidden(
            "A person can be handed over only to an active cluster; ask an admin.", "clusterId"
        )
    await session.execute(
        insert(ClusterServiceUser)
        .values(cluster_id=cluster_id, service_user_id=service_user_id)
        .on_conflict_do_nothing()
    )
    return cluster_id


async def remove_service_user(
    session: AsyncSession, viewer: Viewer, cluster_id: int, service_user_id: int
) -> int:
    await _managed_cluster(session, viewer, cluster_id)
    await require_visible_member(session, viewer, service_user_id, "service user", "serviceUserId")
    result = await session.execute(
        delete(ClusterServiceUser).where(
            ClusterServiceUser.cluster_id == cluster_id,
            ClusterServiceUser.service_user_id == service_user_id,
        )
    )
    if result.rowcount == 0:  # type: ignore[attr-defined]
        raise DomainError(
            ErrorCode.NOT_FOUND, "That person is not in this cluster.", "serviceUserId"
        )
    return cluster_id


async def add_personal_assistant(
    session: AsyncSession, viewer: Viewer, cluster_id: int, pa_id: int
) -> int:
    """Put a PA on a cluster's team (they may be on several).

    A team's coordinator manages its PAs (their absences, availability and record), so:
    admins staff any team; a coordinator takes onto a team of theirs a PA they already
    manage or one who works for no one else (on no other team, in no pool serving another
    cluster), and may share a PA they manage with another ACTIVE cluster's team (as with a
    person, the giving coordinator agrees). A PA of another coordinator joins one's team
    only through that coordinator or an admin."""
    cluster = await session.get(Cluster, cluster_id)
    if cluster is None or viewer.role not in (Role.ADMIN, Role.COORDINATOR):
        raise not_found("cluster", "clusterId")
    # Lock the PA's row for the checks below: two coordinators taking a free PA at once
    # would each see them free; the second now waits, then sees the first's team.
    is_pa = await session.scalar(
        select(PaProfile.member_id).where(PaProfile.member_id == pa_id).with_for_update()
    )
    if is_pa is None:
        raise not_found("personal assistant", "paId")
    admin = viewer.role is Role.ADMIN
    own_cluster = admin or await may_manage_cluster(session, viewer, cluster_id)
    if not admin:
        own_pa = await may_manage_pa(session, viewer, pa_id)
        if not own_cluster and not own_pa:
            raise forbidden(
                "Only admins and the cluster's coordinator may change its team.", "clusterId"
            )
        if not own_pa and await pa_works_for_others(session, viewer, pa_id):
            raise forbidden(
                "This PA works in another coordinator's cluster: that coordinator or an admin "
                "may add them to your team.",
                "paId",
            )
    if cluster.status == ClusterStatus.CLOSED.value:
        raise DomainError(ErrorCode.CLOSED, "The cluster is closed.", "clusterId")
    if not own_cluster and cluster.status != ClusterStatus.ACTIVE.value:
        raise forbidden(
            "A PA can join another coordinator's team only in an active cluster.", "clusterId"
        )
    await session.execute(
        insert(ClusterPa).values(cluster_id=cluster_id, pa_id=pa_id).on_conflict_do_nothing()
    )
    return cluster_id


async def remove_personal_assistant(
    session: AsyncSession, viewer: Viewer, cluster_id: int, pa_id: int
) -> int:
    await _managed_cluster(session, viewer, cluster_id)
    result = await session.execute(
        delete(ClusterPa).where(ClusterPa.cluster_id == cluster_id, ClusterPa.pa_id == pa_id)
    )
    if result.rowcount == 0:  # type: ignore[attr-defined]
        raise DomainError(ErrorCode.NOT_FOUND, "That PA is not in this cluster's team.", "paId")
    return cluster_id
