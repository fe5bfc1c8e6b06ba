"""Cluster mutations: create, update, close; service users and PA team."""

from __future__ import annotations

import strawberry
from strawberry import relay

from care.errors import DomainError, not_found
from care.services import clusters as service
from care.services.clusters import ClusterFields
from schema.context import Info
from schema.errors import ClusterError, ClusterErrorCode, to_errors
from schema.mutations.runner import run_mutation
from schema.permissions import MEMBER_TYPES, decode_id, id_or_error
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
    support_worker_id: relay.GlobalID | None = None
    status: ClusterStatus | None = None
    centre: GeoPointInput | None = None
    radius_km: float | None = None
    postcode_districts: list[str] | None = None
    need_tags: list[str] | None = None


@strawberry.input(description="Fields to change; those left out stay as they are.")
class UpdateClusterInput:
    name: str | None = None
    support_worker_id: relay.GlobalID | None = None
    status: ClusterStatus | None = None
    centre: GeoPointInput | None = None
    radius_km: float | None = None
    postcode_districts: list[str] | None = None
    need_tags: list[str] | None = None


@strawberry.type
class ClusterPayload:
    cluster: Cluster | None
    errors: list[ClusterError]


def _fields(
    data: CreateClusterInput | UpdateClusterInput, errors: list[DomainError]
) -> ClusterFields:
    f = ClusterFields()
    if data.name is not None:
        f.name = data.name
    if isinstance(data, CreateClusterInput):
        f.kind = data.kind
        f.la_code = data.local_authority
    if data.support_worker_id is not None:
        worker = decode_id(data.support_worker_id, *MEMBER_TYPES)
        if worker is None:
            errors.append(not_found("member", "supportWorkerId"))
        f.support_worker_id = worker
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


async def _payload(info: Info, cluster_id: int | None, errors: list[DomainError]) -> ClusterPayload:
    cluster = (
        await load_cluster(info, cluster_id) if cluster_id is not None and not errors else None
    )
    return ClusterPayload(cluster=cluster, errors=to_errors(ClusterError, ClusterErrorCode, errors))


@strawberry.type
class ClusterMutations:
    @strawberry.mutation(description="Open a cluster (admins and coordinators).")
    async def create_cluster(self, info: Info, input: CreateClusterInput) -> ClusterPayload:
        errors: list[DomainError] = []
        fields = _fields(input, errors)
        if errors:
            return await _payload(info, None, errors)
        cluster_id, errors = await run_mutation(
            info, lambda s, v: service.create_cluster(s, v, fields)
        )
        return await _payload(info, cluster_id, errors)

    @strawberry.mutation(description="Change a cluster (admins and its coordinator).")
    async def update_cluster(
        self, info: Info, id: relay.GlobalID, input: UpdateClusterInput
    ) -> ClusterPayload:
        errors: list[DomainError] = []
        cluster_id = id_or_error(id, "Cluster", "cluster", "id", errors)
        fields = _fields(input, errors)
        if errors:
            return await _payload(info, None, errors)
        result, errors = await run_mutation(
            info, lambda s, v: service.update_cluster(s, v, cluster_id, fields)
        )
        return await _payload(info, result, errors)

    @strawberry.mutation(description="Close a cluster; its records stay for the figures.")
    async def close_cluster(self, info: Info, id: relay.GlobalID) -> ClusterPayload:
        errors: list[DomainError] = []
        cluster_id = id_or_error(id, "Cluster", "cluster", "id", errors)
        if errors:
            return await _payload(info, None, errors)
        result, errors = await run_mutation(
            info, lambda s, v: service.close_cluster(s, v, cluster_id)
        )
        return await _payload(info, result, errors)

    @strawberry.mutation
    async def add_service_user_to_cluster(
        self, info: Info, cluster_id: relay.GlobalID, service_user_id: relay.GlobalID
    ) -> ClusterPayload:
        errors: list[DomainError] = []
        cid = id_or_error(cluster_id, "Cluster", "cluster", "clusterId", errors)
        sid = id_or_error(service_user_id, "ServiceUser", "service user", "serviceUserId", errors)
        if errors:
            return await _payload(info, None, errors)
        result, errors = await run_mutation(
            info, lambda s, v: service.add_service_user(s, v, cid, sid)
        )
        return await _payload(info, result, errors)

    @strawberry.mutation
    async def remove_service_user_from_cluster(
        self, info: Info, cluster_id: relay.GlobalID, service_user_id: relay.GlobalID
    ) -> ClusterPayload:
        errors: list[DomainError] = []
        cid = id_or_error(cluster_id, "Cluster", "cluster", "clusterId", errors)
        sid = id_or_error(service_user_id, "ServiceUser", "service user", "serviceUserId", errors)
        if errors:
            return await _payload(info, None, errors)
        result, errors = await run_mutation(
            info, lambda s, v: service.remove_service_user(s, v, cid, sid)
        )
        return await _payload(info, result, errors)

    @strawberry.mutation
    async def add_personal_assistant_to_cluster(
        self, info: Info, cluster_id: relay.GlobalID, pa_id: relay.GlobalID
    ) -> ClusterPayload:
        errors: list[DomainError] = []
        cid = id_or_error(cluster_id, "Cluster", "cluster", "clusterId", errors)
        pid = id_or_error(pa_id, "PersonalAssistant", "personal assistant", "paId", errors)
        if errors:
            return await _payload(info, None, errors)
        result, errors = await run_mutation(
            info, lambda s, v: service.add_personal_assistant(s, v, cid, pid)
        )
        return await _payload(info, result, errors)

    @strawberry.mutation
    async def remove_personal_assistant_from_cluster(
        self, info: Info, cluster_id: relay.GlobalID, pa_id: relay.GlobalID
    ) -> ClusterPayload:
        errors: list[DomainError] = []
        cid = id_or_error(cluster_id, "Cluster", "cluster", "clusterId", errors)
        pid = id_or_error(pa_id, "PersonalAssistant", "personal assistant", "paId", errors)
        if errors:
            return await _payload(info, None, errors)
        result, errors = await run_mutation(
            info, lambda s, v: service.remove_personal_assistant(s, v, cid, pid)
        )
        return await _payload(info, result, errors)
