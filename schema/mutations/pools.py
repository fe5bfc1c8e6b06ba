"""Pool mutations: create, update, and the PAs and clusters a pool joins together."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import strawberry
from sqlalchemy.ext.asyncio import AsyncSession
from strawberry import relay

from care import queries
from care.enums import Role
from care.errors import DomainError
from care.services import pools as service
from care.viewer import Viewer
from schema.context import Info
from schema.errors import PoolError, PoolErrorCode, to_errors
from schema.mutations.runner import run_mutation
from schema.permissions import id_or_error, require_role
from schema.types import Pool, pool_from_row


@strawberry.input(description="A new pool of PAs.")
class CreatePoolInput:
    name: str
    shared_with_partners: bool | None = strawberry.field(
        default=None, description="Offer the pool to partner co-ops (default false)."
    )


@strawberry.input(description="Fields to change; those left out stay as they are.")
class UpdatePoolInput:
    name: str | None = None
    shared_with_partners: bool | None = None


@strawberry.type
class PoolPayload:
    pool: Pool | None
    errors: list[PoolError]


def _signed_in(info: Info) -> None:
    """Anonymous callers get a top-level UNAUTHENTICATED; any signed-in role reaches the
    service, which answers FORBIDDEN in the payload when the role may not act."""
    require_role(info.context.viewer, *Role)


async def _payload(info: Info, pool_id: int | None, errors: list[DomainError]) -> PoolPayload:
    pool = None
    if pool_id is not None and not errors:
        # A fresh read after the write, under the caller's visibility rules.
        rows = await info.context.rows(queries.pools_by_id(info.context.viewer, [pool_id]))
        pool = pool_from_row(rows[0]) if rows else None
    return PoolPayload(pool=pool, errors=to_errors(PoolError, PoolErrorCode, errors))


async def _run(
    info: Info,
    errors: list[DomainError],
    action: Callable[[AsyncSession, Viewer], Awaitable[int]],
) -> PoolPayload:
    if errors:
        return await _payload(info, None, errors)
    pool_id, errors = await run_mutation(info, action)
    return await _payload(info, pool_id, errors)


async def _membership(
    info: Info,
    pool_id: relay.GlobalID,
    member_id: relay.GlobalID,
    member: tuple[str, str, str],
    action: Callable[[AsyncSession, Viewer, int, int], Awaitable[int]],
) -> PoolPayload:
    """Add or remove a PA or cluster: `member` is (type name, what, field)."""
    _signed_in(info)
    errors: list[DomainError] = []
    pid = id_or_error(pool_id, "Pool", "pool", "poolId", errors)
    mid = id_or_error(member_id, *member, errors)
    return await _run(info, errors, lambda s, v: action(s, v, pid, mid))


PA = ("PersonalAssistant", "personal assistant", "paId")
CLUSTER = ("Cluster", "cluster", "clusterId")


@strawberry.type
class PoolMutations:
    @strawberry.mutation(description="Create a pool (admins and coordinators).")
    async def create_pool(self, info: Info, input: CreatePoolInput) -> PoolPayload:
        _signed_in(info)
        shared = bool(input.shared_with_partners)
        return await _run(info, [], lambda s, v: service.create_pool(s, v, input.name, shared))

    @strawberry.mutation(
        description="Rename a pool or change its sharing (admins and coordinators)."
    )
    async def update_pool(
        self, info: Info, id: relay.GlobalID, input: UpdatePoolInput
    ) -> PoolPayload:
        _signed_in(info)
        errors: list[DomainError] = []
        pool_id = id_or_error(id, "Pool", "pool", "id", errors)
        return await _run(
            info,
            errors,
            lambda s, v: service.update_pool(
                s, v, pool_id, name=input.name, shared_with_partners=input.shared_with_partners
            ),
        )

    @strawberry.mutation(description="Add a PA to a pool; adding twice changes nothing.")
    async def add_personal_assistant_to_pool(
        self, info: Info, pool_id: relay.GlobalID, pa_id: relay.GlobalID
    ) -> PoolPayload:
        return await _membership(info, pool_id, pa_id, PA, service.add_personal_assistant)

    @strawberry.mutation(description="Take a PA out of a pool.")
    async def remove_personal_assistant_from_pool(
        self, info: Info, pool_id: relay.GlobalID, pa_id: relay.GlobalID
    ) -> PoolPayload:
        return await _membership(info, pool_id, pa_id, PA, service.remove_personal_assistant)

    @strawberry.mutation(description="Let a pool serve a cluster; closed clusters cannot join.")
    async def add_cluster_to_pool(
        self, info: Info, pool_id: relay.GlobalID, cluster_id: relay.GlobalID
    ) -> PoolPayload:
        return await _membership(info, pool_id, cluster_id, CLUSTER, service.add_cluster)

    @strawberry.mutation(description="Stop a pool serving a cluster.")
    async def remove_cluster_from_pool(
        self, info: Info, pool_id: relay.GlobalID, cluster_id: relay.GlobalID
    ) -> PoolPayload:
        return await _membership(info, pool_id, cluster_id, CLUSTER, service.remove_cluster)
