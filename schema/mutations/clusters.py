"""Cluster mutations: create, update, close; service users and PA team."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import strawberry
from sqlalchemy.ext.asyncio import AsyncSession

from care.services import clusters as service
from care.services.clusters import ClusterFields
from care.viewer import Viewer
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


@strawberry.input
class GeoPointInput:
    latitude: float
    longitude: float


@strawberry.input(description="A new cluster. Coordinators become its support worker.")
class CreateClusterInput:
    name: str
    kind: ClusterKind
    local_authority: str = strawberry.field(description="GSS code of the local authority.")
    support_worker_id: strawberry.ID | None = None
    status: ClusterStatus | None = None
    centre: GeoPointInput | None = None
    radius_km: float | None = None
    postcode_districts: list[str] | None = None
    need_tags: list[str] | None = None


@strawberry.input(description="Fields to change; those left out stay as they are.")
class UpdateClusterInput:
    name: str | None = None
    support_worker_id: strawberry.ID | None = None
    status: ClusterStatus | None = None
    centre: GeoPointInput | None = None
    radius_km: float | None = None
    postcode_districts: list[str] | None = None
    need_tags: list[str] | None = None


@strawberry.type
class ClusterPayload:
    cluster: Cluster | None
    errors: list[ClusterError]


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
    @mutation(access=MANAGING, description="Open a cluster (admins and coordinators).")
    async def create_cluster(self, info: Info, input: CreateClusterInput) -> ClusterPayload | None:
        ids = Ids()
        fields = _fields(input, ids)
        return await _run(info, ids, lambda s, v: service.create_cluster(s, v, fields))

    @mutation(access=MANAGING, description="Change a cluster (admins and its coordinator).")
    async def update_cluster(
        self, info: Info, id: strawberry.ID, input: UpdateClusterInput
    ) -> ClusterPayload | None:
        ids = Ids()
        cluster_id = ids.one(id, CLUSTER_ID, "id")
        fields = _fields(input, ids)
        return await _run(info, ids, lambda s, v: service.update_cluster(s, v, cluster_id, fields))

    @mutation(access=MANAGING, description="Close a cluster; its records stay for the figures.")
    async def close_cluster(self, info: Info, id: strawberry.ID) -> ClusterPayload | None:
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
        self, info: Info, cluster_id: strawberry.ID, service_user_id: strawberry.ID
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
        self, info: Info, cluster_id: strawberry.ID, service_user_id: strawberry.ID
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
        self, info: Info, cluster_id: strawberry.ID, pa_id: strawberry.ID
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
        self, info: Info, cluster_id: strawberry.ID, pa_id: strawberry.ID
    ) -> ClusterPayload | None:
        ids = Ids()
        cid = ids.one(cluster_id, CLUSTER_ID, "clusterId")
        pid = ids.one(pa_id, PA_ID, "paId")
        return await _run(info, ids, lambda s, v: service.remove_personal_assistant(s, v, cid, pid))
