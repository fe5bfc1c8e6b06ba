"""The per-request context: the caller, one database session, and the DataLoaders."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Row, Select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from strawberry.dataloader import DataLoader
from strawberry.fastapi import BaseContext
from strawberry.types import Info as StrawberryInfo

from care.disclosure import DisclosureRules
from care.viewer import Viewer
from federation.client import FederationClient, Manifest


class RequestEnded(Exception):
    """A resolver left running after its request was answered tried to use the database."""


# How many results a connection returns when `first` is omitted or null. The schema states
# it as every connection's `first` default, so it is one constant, not a setting: a
# configured value would make the published SDL wrong.
DEFAULT_PAGE_SIZE = 20


@dataclass(frozen=True)
class Limits:
    """What one request may ask for, and how published figures are protected."""

    max_page_size: int = 100
    max_query_cost: int = 5000
    # How long each partner's cover candidates may take (COVER_SOURCE_TIMEOUT_SECONDS).
    cover_source_seconds: float = 2.0
    disclosure: DisclosureRules = DisclosureRules()
    # How long networkMarketReport waits for each partner co-op's figures.
    market_partner_seconds: float = 5.0


class Context(BaseContext):
    def __init__(
        self,
        session: AsyncSession,
        viewer: Viewer,
        limits: Limits,
        *,
        federation: FederationClient | None = None,
        peer_manifest: Manifest | None = None,
        read_sessions: async_sessionmaker[AsyncSession] | None = None,
        compiled_reads: bool = False,
    ) -> None:
        super().__init__()
        # Answer supported queries with one SQL statement (schema/compiled; the
        # COMPILED_READS setting): off unless the app turns it on.
        self.compiled_reads = compiled_reads
        self.session = session
        # Where reads that run beside the request's session get their own (`rows_apart`).
        self.read_sessions = read_sessions
        self.viewer = viewer
        self.limits = limits
        # Calls to partner instances (None where no app runs, e.g. schema-level tests).
        self.federation = federation
        # A partner caller's manifest when it was read while verifying this request (a
        # key we did not know yet): the handshake uses it instead of reading it again.
        self.peer_manifest = peer_manifest
        # Sibling resolvers run concurrently but one AsyncSession must not: serialise use.
        self.db_lock = asyncio.Lock()
        self._loaders: dict[Hashable, DataLoader[Any, Any]] = {}
        self.statements = 0  # SQL statements run for this request (reported in debug)
        # Response keys of the mutation fields whose change is committed: an error while
        # their payload is read back says so (`CoopSchema.process_errors`).
        self.committed: set[str] = set()
        # Set once the request is answered (`finish`): no statement may start after it.
        self.finished = False

    async def rows(self, stmt: Select) -> list[Row[Any]]:
        async with self.database() as session:
            self.statements += 1
            result = await session.execute(stmt)
            return list(result.all())

    async def rows_apart(self, stmt: Select) -> list[Row[Any]]:
        """One read in a session of its own, so that it may run while the request's session
        is busy (concurrent candidate sources); in the request's session, one use at a
        time, when the app gave no session factory (contexts built by hand in tests)."""
        if self.read_sessions is None:
            return await self.rows(stmt)
        if self.finished:
            raise RequestEnded()
        self.statements += 1
        async with self.read_sessions() as session:
            result = await session.execute(stmt)
            return list(result.all())

    @asynccontextmanager
    async def database(self) -> AsyncIterator[AsyncSession]:
        """The request's session for one stretch of work, one user at a time; refused
        (`RequestEnded`) once the request has been answered."""
        async with self.db_lock:
            if self.finished:
                raise RequestEnded()
            yield self.session

    async def finish(self) -> None:
        """The request is answered: wait for the statement in flight, refuse any later
        one. When a non-null field fails, graphql-core answers at once and lets the
        sibling fields still running settle in the background; without this they would
        use the session while it is being closed."""
        async with self.db_lock:
            self.finished = True

    def clear_loaders(self) -> None:
        self._loaders.clear()

    def loader(
        self, key: Hashable, load: Callable[[list[Any]], Awaitable[list[Any]]]
    ) -> DataLoader[Any, Any]:
        found = self._loaders.get(key)
        if found is None:
            found = DataLoader(load_fn=load)
            self._loaders[key] = found
        return found


Info = StrawberryInfo[Context, None]
