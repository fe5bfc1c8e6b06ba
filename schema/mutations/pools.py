"""Pool mutations: create, update, and the PAs and clusters a pool joins together."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

import strawberry
from sqlalchemy.ext.asyncio import AsyncSession

from care import queries
from care.services import pools as service
from care.viewer import Viewer
from schema.context import Info
from schema.errors import POOL, PoolError
from schema.mutations.base import CLUSTER_ID, PA_ID, POOL_ID, IdKind, Ids, mutation, perform
from schema.permissions import MANAGING
from schema.types import Pool, pool_from_row

PoolIdArg = Annotated[strawberry.ID, strawberry.argument(description="The pool's id.")]
PaIdArg = Annotated[strawberry.ID, strawberry.argument(description="The PA's id.")]
ClusterIdArg = Annotated[strawberry.ID, strawberry.argument(description="The cluster's id.")]


@strawberry.input(description="A new pool of PAs.")
class CreatePoolInput:
    name: str = strawberry.field(description="The pool's name, unique in the co-op.")
    shared_with_partners: bool | None = strawberry.field(
        default=None, description="Offer the pool to partner co-ops (default false)."
    )


@strawberry.input(description="Fields to change; those left out (or null) stay as they are.")
class UpdatePoolInput:
    name: str | None = strawberry.field(
        default=None, description="A new name, unique in the co-op."
    )
    shared_with_partners: bool | None = strawberry.field(
        default=None, description="Whether partner co-ops are offered the pool."
    )


@strawberry.type(description="The result of a pool mutation.")
class PoolPayload:
    pool: Pool | None = strawberry.field(
        description="The pool as it now is; null when errors is non-empty."
    )
    errors: list[PoolError] = strawberry.field(
        description="Why nothing was changed; empty means the change was committed."
    )


async def _respond(info: Info, pool_id: int | None, errors: list[PoolError]) -> PoolPayload:
    pool = None
    if pool_id is not None:
        # A fresh read after the write, under the caller's visibility rules.
        rows = await info.context.rows(queries.pools_by_id(info.context.viewer, [pool_id]))
        pool = pool_from_row(rows[0]) if rows else None
    return PoolPayload(pool=pool, errors=errors)


async def _membership(
    info: Info,
    pool_id: strawberry.ID,
    member_id: strawberry.ID,
    member: tuple[IdKind, str],
    action: Callable[[AsyncSession, Viewer, int, int], Awaitable[int]],
) -> PoolPayload | None:
    """Add or remove a PA or cluster: `member` is (its id kind, its argument's name)."""
    ids = Ids()
    pid = ids.one(pool_id, POOL_ID, "poolId")
    mid = ids.one(member_id, *member)
    return await perform(info, POOL, lambda s, v: action(s, v, pid, mid), _respond, ids)


PA = (PA_ID, "paId")
CLUSTER = (CLUSTER_ID, "clusterId")


@strawberry.type
class PoolMutations:
    @mutation(access=MANAGING, description="Create a pool (admins and coordinators).")
    async def create_pool(
        self,
        info: Info,
        input: Annotated[CreatePoolInput, strawberry.argument(description="The new pool.")],
    ) -> PoolPayload | None:
        shared = bool(input.shared_with_partners)
        return await perform(
            info, POOL, lambda s, v: service.create_pool(s, v, input.name, shared), _respond
        )

    @mutation(
        access=MANAGING,
        description="Rename a pool or change its sharing (admins; a coordinator only when "
        "every cluster the pool serves is theirs).",
    )
    async def update_pool(
        self,
        info: Info,
        id: PoolIdArg,
        input: Annotated[UpdatePoolInput, strawberry.argument(description="What to change.")],
    ) -> PoolPayload | None:
        ids = Ids()
        pool_id = ids.one(id, POOL_ID, "id")
        return await perform(
            info,
            POOL,
            lambda s, v: service.update_pool(
                s, v, pool_id, name=input.name, shared_with_partners=input.shared_with_partners
            ),
            _respond,
            ids,
        )

    @mutation(
        access=MANAGING,
        description="Add a PA to a pool; adding twice changes nothing (admins; a "
        "coordinator only when every cluster the pool serves is theirs).",
    )
    async def add_personal_assistant_to_pool(
        self, info: Info, pool_id: PoolIdArg, pa_id: PaIdArg
    ) -> PoolPayload | None:
        return await _membership(info, pool_id, pa_id, PA, service.add_personal_assistant)

    @mutation(
        access=MANAGING,
        description="Take a PA out of a pool (admins; a coordinator only when every "
        "cluster the pool serves is theirs).",
    )
    async def remove_personal_assistant_from_pool(
        self, info: Info, pool_id: PoolIdArg, pa_id: PaIdArg
    ) -> PoolPayload | None:
        return await _membership(info, pool_id, pa_id, PA, service.remove_personal_assistant)

    @mutation(
        access=MANAGING,
        description="Let a pool serve a cluster; closed clusters cannot join (admins and "
        "the cluster's coordinator; the first cluster of a pool that has PAs: admins).",
    )
    async def add_cluster_to_pool(
        self, info: Info, pool_id: PoolIdArg, cluster_id: ClusterIdArg
    ) -> PoolPayload | None:
        return await _membership(info, pool_id, cluster_id, CLUSTER, service.add_cluster)

    @mutation(
        access=MANAGING,
        description="Stop a pool serving a cluster (admins and the cluster's coordinator).",
    )
    async def remove_cluster_from_pool(
        self, info: Info, pool_id: PoolIdArg, cluster_id: ClusterIdArg
    ) -> PoolPayload | None:
        return await _membership(info, pool_id, cluster_id, CLUSTER, service.remove_cluster)
