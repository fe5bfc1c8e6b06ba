"""Root subscription fields: live cover requests for coordinators, live offers for PAs.

Subscriptions run over a websocket (graphql-transport-ws) whose context, `LiveContext`,
holds no database session: events arrive from the process's listener (`api/events.py`)
with ids only, and each is re-read in a short session of its own, as the subscriber, so
the usual privacy rules decide what they see. Who may subscribe is checked when the
subscription starts (an `error` message: UNAUTHENTICATED, FORBIDDEN) and again on every
event (the stream then ends with that error): a token that has expired or been revoked, a
member who has been deactivated, or a coordinator who no longer supports the cluster,
hears nothing more. A subscription with no events re-checks the token every
`recheck_seconds` (setting TOKEN_RECHECK_SECONDS) and ends the same way.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Annotated, Any, Protocol, cast

import strawberry
from graphql import GraphQLError
from sqlalchemy import exists, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from care import policy
from care.events import CoverEvent, Event, ExchangeEvent, PartnershipEvent
from care.models import Cluster
from care.tokens import TokenRef, is_in_force
from care.viewer import ANONYMOUS, Viewer
from schema.context import Context, Info, Limits
from schema.permissions import ADMINS, MANAGING, PAS, decode_id, forbidden, guard
from schema.types import (
    CoverExchange,
    CoverOffer,
    CoverRequest,
    Partnership,
    load_cover_exchange,
    load_cover_offer,
    load_cover_request,
    load_partnership,
)


class EventSource(Protocol):
    """Where live events come from (the process's `api.events.EventHub`)."""

    def subscribe(
        self, accept: Callable[[Event], bool]
    ) -> AbstractAsyncContextManager[AsyncIterator[Event]]: ...


class _NoSession:
    """Stands in for the session outside an event: any use is a programming error."""

    def __getattr__(self, name: str) -> Any:
        raise RuntimeError("A subscription has a database session only while it handles an event.")


_NO_SESSION = cast(AsyncSession, _NoSession())


class LiveContext(Context):
    """The context of one websocket connection (shared by its subscriptions)."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        events: EventSource,
        limits: Limits,
        viewer: Viewer = ANONYMOUS,
        recheck_seconds: float = 60.0,
    ) -> None:
        super().__init__(session=_NO_SESSION, viewer=viewer, limits=limits)
        self.sessions = sessions
        self.events = events
        self.token: TokenRef | None = None
        self.recheck_seconds = recheck_seconds
        # One event at a time per connection: its subscriptions share this context.
        self._event_lock = asyncio.Lock()

    def authenticate(self, viewer: Viewer, token: TokenRef | None) -> None:
        self.viewer = viewer
        self.token = token

    @property
    def expires_at(self) -> dt.datetime | None:
        return self.token.expires_at if self.token is not None else None

    def check_token(self) -> None:
        if self.expires_at is not None and dt.datetime.now(dt.UTC) >= self.expires_at:
            raise GraphQLError(
                "The token has expired: connect again with a fresh one.",
                extensions={"code": "UNAUTHENTICATED"},
            )

    async def _check_in_force(self, session: AsyncSession) -> None:
        if self.token is not None and not await is_in_force(session, self.token):
            raise GraphQLError(
                "The token has been revoked, or its member is no longer active.",
                extensions={"code": "UNAUTHENTICATED"},
            )

    async def recheck(self) -> None:
        """While idle: is the token still good? Raises UNAUTHENTICATED when not."""
        self.check_token()
        async with self._event_lock, self.sessions() as session:
            await self._check_in_force(session)

    async def next_event(self, events: AsyncIterator[Event]) -> Event | None:
        """The next event (None when the stream ends), re-checking the token every
        `recheck_seconds` while none comes. (Waiting on the hub's `Subscriber` may be
        cancelled safely: it takes an event off its queue only once it returns it.)"""
        while True:
            try:
                return await asyncio.wait_for(anext(events), timeout=self.recheck_seconds)
            except StopAsyncIteration:
                return None
            except TimeoutError:
                await self.recheck()

    @asynccontextmanager
    async def event_scope(self) -> AsyncIterator[None]:
        """A short session (and fresh loaders, and the current time for the privacy
        windows) for reading one event and resolving what is sent for it; the token is
        checked first (revoked? member deactivated?)."""
        async with self._event_lock, self.sessions() as session:
            await self._check_in_force(session)
            self.session = session
            self.viewer = dataclasses.replace(self.viewer, now=dt.datetime.now(dt.UTC))
            self.clear_loaders()
            self.statements = 0
            try:
                yield
            finally:
                self.session = _NO_SESSION
                self.clear_loaders()


def _live(info: Info) -> LiveContext:
    ctx = info.context
    if not isinstance(ctx, LiveContext):
        raise GraphQLError(
            "Subscriptions are served over a websocket (graphql-transport-ws) at /graphql.",
            extensions={"code": "BAD_REQUEST"},
        )
    return ctx


def may_follow_cluster(viewer: Viewer, cluster_id: int) -> Any:
    """`SELECT EXISTS`: may the viewer follow this cluster's cover requests? Admins any
    cluster; coordinators the clusters they support."""
    return select(
        exists().where(Cluster.id == cluster_id, policy.cluster_managed(viewer, Cluster.id))
    )


async def _may_follow(ctx: LiveContext, cluster_id: int) -> bool:
    rows = await ctx.rows(may_follow_cluster(ctx.viewer, cluster_id))
    return bool(rows[0][0])


async def _cover_requests(
    info: Info, ctx: LiveContext, cluster_id: int
) -> AsyncGenerator[CoverRequest, None]:
    def about_cluster(event: Event) -> bool:
        return isinstance(event, CoverEvent) and cluster_id in event.cluster_ids

    async with ctx.events.subscribe(about_cluster) as events:
        while (event := await ctx.next_event(events)) is not None:
            ctx.check_token()
            assert isinstance(event, CoverEvent)
            async with ctx.event_scope():
                if not await _may_follow(ctx, cluster_id):
                    raise forbidden()
                request = await load_cover_request(info, event.cover_request_id)
                if request is None:  # gone, or not visible to this subscriber
                    continue
                yield request


async def _offers(info: Info, ctx: LiveContext, pa_id: int) -> AsyncGenerator[CoverOffer, None]:
    def mine(event: Event) -> bool:
        # OFFER_* events, and REQUEST_FILLED, which names the accepted offer.
        return isinstance(event, CoverEvent) and event.offer_id is not None and event.pa_id == pa_id

    async with ctx.events.subscribe(mine) as events:
        while (event := await ctx.next_event(events)) is not None:
            ctx.check_token()
            assert isinstance(event, CoverEvent)
            assert event.offer_id is not None
            async with ctx.event_scope():
                offer = await load_cover_offer(info, event.offer_id)
                if offer is None:
                    continue
                yield offer


async def _partnerships(info: Info, ctx: LiveContext) -> AsyncGenerator[Partnership, None]:
    def about_partnership(event: Event) -> bool:
        return isinstance(event, PartnershipEvent)

    async with ctx.events.subscribe(about_partnership) as events:
        while (event := await ctx.next_event(events)) is not None:
            ctx.check_token()
            assert isinstance(event, PartnershipEvent)
            async with ctx.event_scope():
                partnership = await load_partnership(info, event.partnership_id)
                if partnership is None:  # not visible (admins see all): nothing to say
                    continue
                yield partnership


async def _exchanges(info: Info, ctx: LiveContext) -> AsyncGenerator[CoverExchange, None]:
    def about_exchange(event: Event) -> bool:
        return isinstance(event, ExchangeEvent)

    async with ctx.events.subscribe(about_exchange) as events:
        while (event := await ctx.next_event(events)) is not None:
            ctx.check_token()
            assert isinstance(event, ExchangeEvent)
            async with ctx.event_scope():
                exchange = await load_cover_exchange(info, event.exchange_id)
                if exchange is None:  # not one the subscriber may see: nothing to say
                    continue
                yield exchange


@strawberry.type(
    description=(
        "Live updates, over a websocket at /graphql (graphql-transport-ws). Authenticate "
        'in the connection_init payload: {"Authorization": "Bearer <token>"}.'
    )
)
class Subscription:
    @strawberry.subscription(
        description=(
            "The cover requests of one cluster, each time one opens or changes (offers "
            "made, declined, filled, returned, cancelled). For admins and the cluster's "
            "coordinator. Events raised while not connected are not replayed: query "
            "`coverRequests` after subscribing for the current state."
        ),
        extensions=guard(MANAGING),
    )
    async def cover_requests(
        self,
        info: Info,
        cluster_id: Annotated[
            strawberry.ID,
            strawberry.argument(
                description="The cluster to follow. An unknown one, or one the caller "
                "does not manage, is refused with FORBIDDEN."
            ),
        ],
    ) -> AsyncGenerator[CoverRequest, None]:
        ctx = _live(info)
        ctx.check_token()
        cid = decode_id(cluster_id, "Cluster")
        if cid is None:
            raise forbidden()
        async with ctx.event_scope():
            allowed = await _may_follow(ctx, cid)
        if not allowed:  # unknown clusters look the same as those of other coordinators
            raise forbidden()
        return _cover_requests(info, ctx, cid)

    @strawberry.subscription(
        description=(
            "The signed-in PA's cover offers, each time one is made to them or changes "
            "(accepted, declined, withdrawn, closed). For PAs."
        ),
        extensions=guard(PAS),
    )
    async def my_cover_offers(self, info: Info) -> AsyncGenerator[CoverOffer, None]:
        ctx = _live(info)
        viewer = ctx.viewer
        if viewer.member_id is None:  # a PA token always names its member
            raise forbidden()
        await ctx.recheck()
        return _offers(info, ctx, viewer.member_id)

    @strawberry.subscription(
        description=(
            "Partnerships with other instances, each time one changes: a proposal "
            "received, an answer, a suspension, resumption or end (by either side), or a "
            "call to the partner that failed (see lastError). For admins. Events raised "
            "while not connected are not replayed: query `partnerships` after subscribing."
        ),
        extensions=guard(ADMINS),
    )
    async def partnership_changed(self, info: Info) -> AsyncGenerator[Partnership, None]:
        ctx = _live(info)
        await ctx.recheck()
        return _partnerships(info, ctx)

    @strawberry.subscription(
        description=(
            "Cover exchanges with partner co-ops, each time one changes on this side (asked, "
            "held, accepted, confirmed, declined, expired, cancelled, by either side). For "
            "admins; coordinators hear of those for the people they manage (requesting) and "
            "for the PAs on their clusters' teams (providing). Events raised while not "
            "connected are not replayed: query `coverExchanges` after subscribing."
        ),
        extensions=guard(MANAGING),
    )
    async def cover_exchanges(self, info: Info) -> AsyncGenerator[CoverExchange, None]:
        ctx = _live(info)
        await ctx.recheck()
        return _exchanges(info, ctx)
