"""Cluster mutations: create, update, close; service users and PA team."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

import strawberry
from sqlalchemy.ext.asyncio import AsyncSession

from care.enums import ClusterStatus as Status
from care.services import clusters as service
from care.services.clusters import ClusterFields
from care.viewer import Viewer
from federation import expansion as partner_notices
from schema.context import Info
from schema.errors import CLUSTER, ClusterError
from schema.mutations.base import (
    CLUSTER_ID,
    MEMBER_ID,
    PA_ID,
    SERVICE_USER_ID,
    Ids,
    mutation,
    perform,
)
from schema.permissions import MANAGING
from schema.types import Cluster, ClusterKind, ClusterStatus, load_cluster

ClusterIdArg = Annotated[strawberry.ID, strawberry.argument(description="The cluster's id.")]
ServiceUserIdArg = Annotated[
    strawberry.ID, strawberry.argument(description="The service user's id.")
]
PaIdArg = Annotated[strawberry.ID, strawberry.argument(description="The PA's id.")]


@strawberry.input(description="A point on the map (WGS 84, decimal degrees).")
class GeoPointInput:
    latitude: float = strawberry.field(description="Degrees north (negative: south).")
    longitude: float = strawberry.field(description="Degrees east (negative: west).")


@strawberry.input(description="A new cluster. Coordinators become its support worker.")
class CreateClusterInput:
    name: str = strawberry.field(description="The cluster's name.")
    kind: ClusterKind = strawberry.field(
        description="GEOGRAPHIC (people who live close together) or NEED_BASED."
    )
    local_authority: str = strawberry.field(description="GSS code of the local authority.")
    support_worker_id: strawberry.ID | None = strawberry.field(
        default=None,
        description="The member who supports the cluster. Left out: the calling "
        "coordinator, or none when an admin creates it.",
    )
    status: ClusterStatus | None = strawberry.field(
        default=None, description="Its starting status. Left out: PLANNED."
    )
    centre: GeoPointInput | None = strawberry.field(
        default=None, description="Centre of a geographic cluster. Left out: none."
    )
    radius_km: float | None = strawberry.field(
        default=None, description="Radius around the centre, in kilometres. Left out: none."
    )
    postcode_districts: list[str] | None = strawberry.field(
        default=None,
        description="Postcode districts it serves (outward codes, e.g. N9). Left out: none.",
    )
    need_tags: list[str] | None = strawberry.field(
        default=None,
        description="Needs a need-based cluster serves (e.g. dementia). Left out: none."
        " Codes of the care vocabulary (careTerms, NEED terms); unknown ones: UNKNOWN_CARE_TERM.",
    )


@strawberry.input(
    description="Fields to change; those left out (or null) stay as they are. The kind and "
    "local authority cannot change."
)
class UpdateClusterInput:
    name: str | None = strawberry.field(default=None, description="A new name.")
    support_worker_id: strawberry.ID | None = strawberry.field(
        default=None, description="A new support worker (a member)."
    )
    status: ClusterStatus | None = strawberry.field(
        default=None, description="PLANNED or ACTIVE; use closeCluster to close it."
    )
    centre: GeoPointInput | None = strawberry.field(default=None, description="A new centre.")
    radius_km: float | None = strawberry.field(
        default=None, description="A new radius, in kilometres."
    )
    postcode_districts: list[str] | None = strawberry.field(
        default=None, description="Replaces the postcode districts (outward codes)."
    )
    need_tags: list[str] | None = strawberry.field(
        default=None,
        description="Replaces the need tags."
        " Codes of the care vocabulary (careTerms, NEED terms); unknown ones: UNKNOWN_CARE_TERM.",
    )


@strawberry.type(description="The result of a cluster mutation.")
class ClusterPayload:
    cluster: Cluster | None = strawberry.field(
        description="The cluster as it now is; null when errors is non-empty."
    )
    errors: list[ClusterError] = strawberry.field(
        description="Why nothing was changed; empty means the change was committed."
    )


def _fields(data: CreateClusterInput | UpdateClusterInput, ids: Ids) -> ClusterFields:
    f = ClusterFields()
    if data.name is not None:
        f.name = data.name
    if isinstance(data, CreateClusterInput):
        f.kind = data.kind
        f.la_code = data.local_authority
    if data.support_worker_id is not None:
        f.support_worker_id = ids.one(data.support_worker_id, MEMBER_ID, "supportWorkerId")
    if data.status is not None:
        f.status = data.status
    if data.centre is not None:
        f.centre = (data.centre.latitude, data.centre.longitude)
    if data.radius_km is not None:
        f.radius_km = data.radius_km
    if data.postcode_districts is not None:
        f.postcode_districts = data.postcode_districts
    if data.need_tags is not None:
        f.need_tags = data.need_tags
    return f


async def _respond(
    info: Info, cluster_id: int | None, errors: list[ClusterError]
) -> ClusterPayload:
    cluster = await load_cluster(info, cluster_id) if cluster_id is not None else None
    return ClusterPayload(cluster=cluster, errors=errors)


async def _run(
    info: Info, ids: Ids, action: Callable[[AsyncSession, Viewer], Awaitable[int]]
) -> ClusterPayload:
    return await perform(info, CLUSTER, action, _respond, ids)


@strawberry.type
class ClusterMutations:
    @mutation(
        access=MANAGING,
        description="Open a cluster (admins; coordinators only in a local authority where "
        "they already run a cluster that is not closed). Opened ACTIVE in a local authority "
        "a partner serves, it is announced to partners holding COVER (peerClusterOpened).",
    )
    async def create_cluster(
        self,
        info: Info,
        input: Annotated[CreateClusterInput, strawberry.argument(description="The new cluster.")],
    ) -> ClusterPayload | None:
        ids = Ids()
        fields = _fields(input, ids)

        async def create(session: AsyncSession, viewer: Viewer) -> int:
            cluster_id = await service.create_cluster(session, viewer, fields)
            # Opened ACTIVE in a partner's area: partners holding COVER hear of it.
            await partner_notices.announce_if_opened(session, cluster_id)
            return cluster_id

        return await _run(info, ids, create)

    @mutation(
        access=MANAGING,
        description="Change a cluster (admins and its coordinator). Moving it from PLANNED "
        "to ACTIVE opens it: announced as by createCluster.",
    )
    async def update_cluster(
        self,
        info: Info,
        id: ClusterIdArg,
        input: Annotated[UpdateClusterInput, strawberry.argument(description="What to change.")],
    ) -> ClusterPayload | None:
        ids = Ids()
        cluster_id = ids.one(id, CLUSTER_ID, "id")
        fields = _fields(input, ids)

        async def update(session: AsyncSession, viewer: Viewer) -> int:
            before = await partner_notices.cluster_status(session, cluster_id)
            changed = await service.update_cluster(session, viewer, cluster_id, fields)
            if before != Status.ACTIVE.value:  # opened now (PLANNED -> ACTIVE)
                await partner_notices.announce_if_opened(session, changed)
            return changed

        return await _run(info, ids, update)

    @mutation(access=MANAGING, description="Close a cluster; its records stay for the figures.")
    async def close_cluster(self, info: Info, id: ClusterIdArg) -> ClusterPayload | None:
        ids = Ids()
        cluster_id = ids.one(id, CLUSTER_ID, "id")
        return await _run(info, ids, lambda s, v: service.close_cluster(s, v, cluster_id))

    @mutation(
        access=MANAGING,
        description="Put a service user in a cluster. Admins: anyone (intake). A "
        "coordinator: only a person already in a cluster they support, into one of theirs "
        "or, handing them over, into another ACTIVE cluster.",
    )
    async def add_service_user_to_cluster(
        self, info: Info, cluster_id: ClusterIdArg, service_user_id: ServiceUserIdArg
    ) -> ClusterPayload | None:
        ids = Ids()
        cid = ids.one(cluster_id, CLUSTER_ID, "clusterId")
        sid = ids.one(service_user_id, SERVICE_USER_ID, "serviceUserId")
        return await _run(info, ids, lambda s, v: service.add_service_user(s, v, cid, sid))

    @mutation(
        access=MANAGING,
        description="Take a service user out of a cluster (admins and its coordinator).",
    )
    async def remove_service_user_from_cluster(
        self, info: Info, cluster_id: ClusterIdArg, service_user_id: ServiceUserIdArg
    ) -> ClusterPayload | None:
        ids = Ids()
        cid = ids.one(cluster_id, CLUSTER_ID, "clusterId")
        sid = ids.one(service_user_id, SERVICE_USER_ID, "serviceUserId")
        return await _run(info, ids, lambda s, v: service.remove_service_user(s, v, cid, sid))

    @mutation(
        access=MANAGING,
        description="Put a PA on a cluster's team. Admins: any PA. A coordinator: onto "
        "their own team a PA they manage or one who works for no other cluster; a PA they "
        "manage also onto another ACTIVE cluster's team.",
    )
    async def add_personal_assistant_to_cluster(
        self, info: Info, cluster_id: ClusterIdArg, pa_id: PaIdArg
    ) -> ClusterPayload | None:
        ids = Ids()
        cid = ids.one(cluster_id, CLUSTER_ID, "clusterId")
        pid = ids.one(pa_id, PA_ID, "paId")
        return await _run(info, ids, lambda s, v: service.add_personal_assistant(s, v, cid, pid))

    @mutation(
        access=MANAGING,
        description="Take a PA off a cluster's team (admins and its coordinator).",
    )
    async def remove_personal_assistant_from_cluster(
        self, info: Info, cluster_id: ClusterIdArg, pa_id: PaIdArg
    ) -> ClusterPayload | None:
        ids = Ids()
        cid = ids.one(cluster_id, CLUSTER_ID, "clusterId")
        pid = ids.one(pa_id, PA_ID, "paId")
        return await _run(info, ids, lambda s, v: service.remove_personal_assistant(s, v, cid, pid))
