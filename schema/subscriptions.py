"""Root subscription fields: live cover requests for coordinators, live offers for PAs,
partnership and cover exchange changes.

Subscriptions run over a websocket (graphql-transport-ws) whose context, `LiveContext`,
holds no database session: events arrive from the process's reader (`api/events.py`)
with ids only, and each is re-read in a short session of its own, as the subscriber, so
the usual privacy rules decide what they see. Each message is a change envelope: the
event's `sequence` (its place in the instance's event log, care/events.py), its `kind`,
when it occurred, and the record as the subscriber sees it now. An event about a record
the subscriber may not (or no longer) see is not sent at all.

A client that reconnects passes the last `sequence` it received as `afterSequence`: the stored
events after it that this subscription follows are sent first, in order, then live ones,
each once (the subscription joins the hub before reading the table, and drops live
events at or below the last one it sent). An `afterSequence` no longer stored (older than
LIVE_EVENT_RETENTION_HOURS) is refused with EVENTS_EXPIRED: re-query, then subscribe
without it. A subscriber that falls behind the hub's queue re-reads from the table the
same way.

Who may subscribe is checked when the subscription starts (an `error` message:
UNAUTHENTICATED, FORBIDDEN) and again on every event (the stream then ends with that
error): a token that has expired or been revoked, a member who has been deactivated, or a
coordinator who no longer supports the cluster, hears nothing more. A subscription with
no events re-checks the token every `recheck_seconds` (setting TOKEN_RECHECK_SECONDS) and
ends the same way.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import re
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Annotated, Any, Protocol, TypeVar, cast

import strawberry
from graphql import GraphQLError
from sqlalchemy import exists, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from care import policy
from care.enums import CoverChangeKind, LiveSubject
from care.events import REPLAY_PAGE, Interest, StoredEvent, events_after, is_kept
from care.models import Cluster
from care.tokens import TokenRef, is_in_force
from care.viewer import ANONYMOUS, Viewer
from schema.context import Context, Info, Limits
from schema.permissions import ADMINS, MANAGING, PAS, decode_id, forbidden, guard
from schema.types import (
    CoverExchange,
    CoverOffer,
    CoverRequest,
    ExchangeStatus,
    Partnership,
    PartnershipStatus,
    document_enum,
    load_cover_exchange,
    load_cover_offer,
    load_cover_request,
    load_partnership,
)


class Lagged:
    """What a subscriber's queue yields when it fell behind and dropped events: the
    subscription re-reads them from the table."""


LAGGED = Lagged()


class EventStream(Protocol):
    """One subscriber's events, in sequence order (the hub's `api.events.Subscriber`)."""

    start: int  # the sequence the hub had handed out when the subscriber joined

    def __aiter__(self) -> AsyncIterator[StoredEvent | Lagged]: ...

    async def __anext__(self) -> StoredEvent | Lagged: ...


class EventSource(Protocol):
    """Where live events come from (the process's `api.events.EventHub`)."""

    def subscribe(
        self, accept: Callable[[StoredEvent], bool]
    ) -> AbstractAsyncContextManager[EventStream]: ...


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

    async def next_event(self, events: EventStream) -> StoredEvent | Lagged | None:
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


# --- the change envelopes ------------------------------------------------------------------

document_enum(
    CoverChangeKind,
    "What happened to a cover request or offer (the kind of a live change). A change that "
    "does several things at once is sent once, with the kind that says most: what happened "
    "to the request itself over what happened to one of its offers.",
    {
        "REQUEST_OPENED": "The request opened: the visit needs cover.",
        "REQUEST_FILLED": "A PA accepted an offer (or was given the visit): the request is "
        "filled and its other offers are closed.",
        "REQUEST_RETURNED": "The original PA took the visit back (their absence was cancelled "
        "or shortened).",
        "REQUEST_CANCELLED": "The request was cancelled (with its visit, or closed by a "
        "coordinator).",
        "OFFER_MADE": "An offer was made (to the subscribed PA, or one of the request's).",
        "OFFER_ACCEPTED": "The subscribed PA's offer was accepted: they have the visit (sent "
        "to PAs; coordinators get REQUEST_FILLED).",
        "OFFER_DECLINED": "The PA declined an offer.",
        "OFFER_WITHDRAWN": "A coordinator withdrew an offer.",
        "OFFER_CLOSED": "An offer closed because its request was filled by another PA, "
        "cancelled or returned (sent to PAs).",
    },
)

SEQUENCE_DOC = (
    "The event's place in this instance's event log: larger is later. Keep the last one "
    "received and pass it as `afterSequence` when subscribing again, to get what was missed. "
    "Opaque text of digits (it outgrows JavaScript's safe integers)."
)
OCCURRED_DOC = "When the change was committed."
AFTER_DOC = (
    "The `sequence` of the last change received: first send the stored changes after it "
    "(in order, each once, those the caller may see), then live ones. Omitted: live "
    "changes only. One no longer stored (older than the retention, 72 hours unless "
    "configured) is refused with EVENTS_EXPIRED: query the current state and subscribe "
    "again without it. Not a sequence: BAD_USER_INPUT."
)


@strawberry.type(description="A change to one cover request of the followed cluster.")
class CoverRequestChange:
    sequence: str = strawberry.field(description=SEQUENCE_DOC)
    kind: CoverChangeKind = strawberry.field(description="What happened.")
    occurred_at: dt.datetime = strawberry.field(description=OCCURRED_DOC)
    cover_request: CoverRequest = strawberry.field(
        description="The request as the subscriber sees it now (not as it was then)."
    )


@strawberry.type(description="A change to one cover offer made to the signed-in PA.")
class CoverOfferChange:
    sequence: str = strawberry.field(description=SEQUENCE_DOC)
    kind: CoverChangeKind = strawberry.field(
        description="What happened: OFFER_MADE, OFFER_ACCEPTED, OFFER_DECLINED, "
        "OFFER_WITHDRAWN or OFFER_CLOSED."
    )
    occurred_at: dt.datetime = strawberry.field(description=OCCURRED_DOC)
    cover_offer: CoverOffer = strawberry.field(
        description="The offer as the PA sees it now (not as it was then)."
    )


@strawberry.type(description="A change to one partnership with another instance.")
class PartnershipChange:
    sequence: str = strawberry.field(description=SEQUENCE_DOC)
    kind: PartnershipStatus = strawberry.field(
        description="The partnership's status after the change (the same as before when "
        "only its contact with the partner changed: see lastError)."
    )
    occurred_at: dt.datetime = strawberry.field(description=OCCURRED_DOC)
    partnership: Partnership = strawberry.field(
        description="The partnership as it is now (not as it was then)."
    )


@strawberry.type(description="A change to one cover exchange with a partner co-op.")
class CoverExchangeChange:
    sequence: str = strawberry.field(description=SEQUENCE_DOC)
    kind: ExchangeStatus = strawberry.field(description="The exchange's status after the change.")
    occurred_at: dt.datetime = strawberry.field(description=OCCURRED_DOC)
    cover_exchange: CoverExchange = strawberry.field(
        description="The exchange as the subscriber sees it now (not as it was then)."
    )


# --- following events ----------------------------------------------------------------------

T = TypeVar("T")

_SEQUENCE = re.compile(r"^[1-9][0-9]{0,18}$")


def parse_after(after: str | None) -> int | None:
    """The sequence a client resumes after; BAD_USER_INPUT when it is not one."""
    if after is None:
        return None
    if not _SEQUENCE.match(after) or int(after) >= 2**63:
        raise GraphQLError(
            "`afterSequence` takes the `sequence` of a change this instance sent.",
            extensions={"code": "BAD_USER_INPUT", "argument": "afterSequence"},
        )
    return int(after)


def events_expired() -> GraphQLError:
    return GraphQLError(
        "The changes after this sequence are no longer stored: query the current state, "
        "then subscribe again without `afterSequence`.",
        extensions={"code": "EVENTS_EXPIRED"},
    )


async def _check_kept(ctx: LiveContext, after: int | None) -> None:
    """Refuse (before the subscription starts) to resume after a pruned event."""
    if after is None:
        return
    async with ctx.event_scope():
        kept = await is_kept(ctx.session, after)
    if not kept:
        raise events_expired()


async def _follow(
    ctx: LiveContext,
    interest: Interest,
    after: int | None,
    deliver: Callable[[StoredEvent], Awaitable[T | None]],
) -> AsyncGenerator[T, None]:
    """The events `interest` follows: the stored ones after `after` first, then live
    ones, each once and in sequence order; `deliver` re-reads each (None: not sent)."""
    async with ctx.events.subscribe(interest.accepts) as live:
        # Joined the hub first: a live event committed while the table is read is queued,
        # and dropped below if the table gave it already.
        last = after if after is not None else live.start
        behind = after is not None
        while True:
            if behind:
                async with ctx.event_scope():
                    page = await events_after(ctx.session, interest, last)
                    # Read first, then checked: pruning takes whole prefixes, so if `last`
                    # is still stored, nothing after it was pruned before the read.
                    if last > 0 and not await is_kept(ctx.session, last):
                        raise events_expired()
                behind = len(page) == REPLAY_PAGE
                events: list[StoredEvent] = page
            else:
                got = await ctx.next_event(live)
                if got is None:
                    return
                if isinstance(got, Lagged):
                    behind = True
                    continue
                if got.sequence <= last:
                    continue
                events = [got]
            for event in events:
                ctx.check_token()
                async with ctx.event_scope():
                    last = event.sequence
                    item = await deliver(event)
                    if item is not None:  # else not one the subscriber may see
                        yield item


async def _cover_requests(
    info: Info, ctx: LiveContext, cluster_id: int, after: int | None
) -> AsyncGenerator[CoverRequestChange, None]:
    async def deliver(event: StoredEvent) -> CoverRequestChange | None:
        if not await _may_follow(ctx, cluster_id):
            raise forbidden()
        request = await load_cover_request(info, event.subject_id)
        if request is None:  # gone, or not visible to this subscriber
            return None
        return CoverRequestChange(
            sequence=str(event.sequence),
            kind=CoverChangeKind(event.kind),
            occurred_at=event.occurred_at,
            cover_request=request,
        )

    interest = Interest(LiveSubject.COVER_REQUEST, cluster_id=cluster_id)
    async for change in _follow(ctx, interest, after, deliver):
        yield change


async def _offers(
    info: Info, ctx: LiveContext, pa_id: int, after: int | None
) -> AsyncGenerator[CoverOfferChange, None]:
    async def deliver(event: StoredEvent) -> CoverOfferChange | None:
        offer = await load_cover_offer(info, event.subject_id)
        if offer is None:
            return None
        return CoverOfferChange(
            sequence=str(event.sequence),
            kind=CoverChangeKind(event.kind),
            occurred_at=event.occurred_at,
            cover_offer=offer,
        )

    async for change in _follow(
        ctx, Interest(LiveSubject.COVER_OFFER, pa_id=pa_id), after, deliver
    ):
        yield change


async def _partnerships(
    info: Info, ctx: LiveContext, after: int | None
) -> AsyncGenerator[PartnershipChange, None]:
    async def deliver(event: StoredEvent) -> PartnershipChange | None:
        partnership = await load_partnership(info, event.subject_id)
        if partnership is None:  # not visible (admins see all): nothing to say
            return None
        return PartnershipChange(
            sequence=str(event.sequence),
            kind=PartnershipStatus(event.kind),
            occurred_at=event.occurred_at,
            partnership=partnership,
        )

    async for change in _follow(ctx, Interest(LiveSubject.PARTNERSHIP), after, deliver):
        yield change


async def _exchanges(
    info: Info, ctx: LiveContext, after: int | None
) -> AsyncGenerator[CoverExchangeChange, None]:
    async def deliver(event: StoredEvent) -> CoverExchangeChange | None:
        exchange = await load_cover_exchange(info, event.subject_id)
        if exchange is None:  # not one the subscriber may see: nothing to say
            return None
        return CoverExchangeChange(
            sequence=str(event.sequence),
            kind=ExchangeStatus(event.kind),
            occurred_at=event.occurred_at,
            cover_exchange=exchange,
        )

    async for change in _follow(ctx, Interest(LiveSubject.COVER_EXCHANGE), after, deliver):
        yield change


AfterSequence = Annotated[str | None, strawberry.argument(description=AFTER_DOC)]


@strawberry.type(
    description=(
        "Live updates, over a websocket at /graphql (graphql-transport-ws). Authenticate "
        'in the connection_init payload: {"Authorization": "Bearer <token>"}. Each message '
        "is one change (sequence, kind, occurredAt and the record as the subscriber sees "
        "it now); a change the subscriber may not see is not sent. Reconnecting, pass the "
        "last sequence received as `afterSequence` to get what was missed."
    )
)
class Subscription:
    @strawberry.subscription(
        description=(
            "Changes to the cover requests of one cluster: opened, offers made, declined or "
            "withdrawn, filled, returned, cancelled; one message per request per change. "
            "For admins and the cluster's coordinator."
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
        after_sequence: AfterSequence = None,
    ) -> AsyncGenerator[CoverRequestChange, None]:
        ctx = _live(info)
        ctx.check_token()
        since = parse_after(after_sequence)
        cid = decode_id(cluster_id, "Cluster")
        if cid is None:
            raise forbidden()
        async with ctx.event_scope():
            allowed = await _may_follow(ctx, cid)
        if not allowed:  # unknown clusters look the same as those of other coordinators
            raise forbidden()
        await _check_kept(ctx, since)
        return _cover_requests(info, ctx, cid, since)

    @strawberry.subscription(
        description=(
            "Changes to the signed-in PA's cover offers: made to them, accepted, declined, "
            "withdrawn, closed. For PAs."
        ),
        extensions=guard(PAS),
    )
    async def my_cover_offers(
        self, info: Info, after_sequence: AfterSequence = None
    ) -> AsyncGenerator[CoverOfferChange, None]:
        ctx = _live(info)
        viewer = ctx.viewer
        since = parse_after(after_sequence)
        if viewer.member_id is None:  # a PA token always names its member
            raise forbidden()
        await ctx.recheck()
        await _check_kept(ctx, since)
        return _offers(info, ctx, viewer.member_id, since)

    @strawberry.subscription(
        description=(
            "Changes to partnerships with other instances: a proposal received, an answer, "
            "a suspension, resumption or end (by either side), or a call to the partner "
            "that failed (see lastError). For admins."
        ),
        extensions=guard(ADMINS),
    )
    async def partnership_changed(
        self, info: Info, after_sequence: AfterSequence = None
    ) -> AsyncGenerator[PartnershipChange, None]:
        ctx = _live(info)
        since = parse_after(after_sequence)
        await ctx.recheck()
        await _check_kept(ctx, since)
        return _partnerships(info, ctx, since)

    @strawberry.subscription(
        description=(
            "Changes to cover exchanges with partner co-ops, on this side (asked, held, "
            "accepted, confirmed, declined, expired, cancelled, by either side). For "
            "admins; coordinators hear of those for the people they manage (requesting) and "
            "for the PAs on their clusters' teams (providing)."
        ),
        extensions=guard(MANAGING),
    )
    async def cover_exchanges(
        self, info: Info, after_sequence: AfterSequence = None
    ) -> AsyncGenerator[CoverExchangeChange, None]:
        ctx = _live(info)
        since = parse_after(after_sequence)
        await ctx.recheck()
        await _check_kept(ctx, since)
        return _exchanges(info, ctx, since)
