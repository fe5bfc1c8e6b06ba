"""Live updates: the per-process event reader and the websocket side of subscriptions.

Services store events in `live_event` inside their transaction (`care.events`); at
commit a trigger numbers them (`sequence`, in commit order) and NOTIFYs the last number.
Each app process (each uvicorn worker) keeps ONE dedicated asyncpg connection that
LISTENs for it (`EventHub`), started and stopped with the app, re-connected with capped
exponential backoff if it drops. On each notification (and every `keepalive_seconds`, in
case one was missed, and after re-connecting) the hub reads the events after the last
one it handled, in sequence order, and hands each to the in-process subscribers that
follow it. Each subscriber has a bounded queue that the hub fills without ever waiting:
a subscriber that falls further behind is told it lagged (`LAGGED`) and re-reads what it
missed from the table (schema/subscriptions.py), so it never blocks the others, never
grows without limit, and still misses nothing. The hub also prunes events older than
the retention (every `prune_seconds`; each process may, the DELETE is idempotent).

The websocket side (graphql-transport-ws only): `connection_params` carry the bearer
token (`authenticate_connection`), the connection is refused with close code 4403 when
the token is not valid or no longer in force (each subscription re-checks it on every
event and while idle: schema/subscriptions.py), and only subscriptions run over the
socket (`LiveWSHandler`); over HTTP, subscriptions are refused (`is_http_subscription`).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager, suppress
from typing import Any

import asyncpg
from graphql import GraphQLError, OperationType, get_operation_ast, parse
from sqlalchemy.engine import make_url
from starlette.websockets import WebSocketDisconnect
from strawberry.asgi import ASGIWebSocketAdapter
from strawberry.exceptions import ConnectionRejectionError
from strawberry.http.exceptions import WebSocketDisconnected
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import (
    BaseGraphQLTransportWSHandler,
)
from strawberry.subscriptions.protocols.graphql_transport_ws.types import (
    ErrorMessage,
    SubscribeMessage,
)
from strawberry.types import ExecutionResult

from api.auth import REVOKED, AuthError, TokenService
from api.persisted import (
    PERSISTED_QUERY_NOT_FOUND,
    PERSISTED_QUERY_REQUIRED,
    PersistedDocuments,
    document_hash,
    requested_hash,
)
from care.events import CHANNEL, LATEST_SQL, PRUNE_SQL, READ_SQL, StoredEvent
from care.tokens import is_in_force
from schema.context import Context
from schema.subscriptions import LAGGED, Lagged, LiveContext

log = logging.getLogger("coopnet.events")

Accept = Callable[[StoredEvent], bool]
READ_PAGE = 500  # events per statement when the hub catches up

# --- the reader ---------------------------------------------------------------------------


class Subscriber:
    """One subscription's queue of events: bounded, filled without waiting, read with
    `async for`. Only events `accept` takes are queued, so a subscriber's queue never
    fills with other people's events. When it is full, its events are dropped and the
    next item read is `LAGGED`: the subscription re-reads from the table what it missed.
    `start` is the sequence the hub had handled when the subscriber was added: every
    later event is offered to it."""

    def __init__(self, accept: Accept, maxsize: int, name: str, start: int) -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be at least 1")
        self.accept = accept
        self.maxsize = maxsize
        self.name = name
        self.start = start
        self.dropped = 0
        self._items: deque[StoredEvent] = deque()
        self._lagged = False
        self._ready = asyncio.Event()
        self._closed = False

    def offer(self, event: StoredEvent) -> None:
        if self._closed:
            return
        try:
            wanted = self.accept(event)
        except Exception:  # noqa: BLE001 - one bad filter must not stop the fan-out
            log.exception("subscriber %s: filter failed on %s", self.name, event.kind)
            return
        if not wanted:
            return
        if len(self._items) >= self.maxsize:
            self.dropped += len(self._items)
            self._items.clear()
            self._lagged = True
            log.info(
                "subscriber %s fell %d event(s) behind: it re-reads them from the table",
                self.name,
                self.maxsize,
            )
        self._items.append(event)
        self._ready.set()

    def close(self) -> None:
        """End the iteration once the queued events are read."""
        self._closed = True
        self._ready.set()

    @property
    def pending(self) -> int:
        return len(self._items)

    def __aiter__(self) -> Subscriber:
        return self

    async def __anext__(self) -> StoredEvent | Lagged:
        while not self._items and not self._lagged:
            if self._closed:
                raise StopAsyncIteration
            self._ready.clear()
            await self._ready.wait()
        if self._lagged:
            self._lagged = False
            return LAGGED
        return self._items.popleft()


def listener_dsn(database_url: str) -> str:
    """A libpq-style URL for asyncpg from any of the URL spellings the app accepts."""
    url = make_url(database_url).set(drivername="postgresql")
    return url.render_as_string(hide_password=False)


class EventHub:
    """The process's one LISTEN connection, reader of `live_event`, and its in-process
    subscribers."""

    APPLICATION_NAME = "coopnet-events"

    def __init__(
        self,
        database_url: str,
        *,
        channel: str = CHANNEL,
        queue_size: int = 100,
        keepalive_seconds: float = 30.0,
        reconnect_min_seconds: float = 0.2,
        reconnect_max_seconds: float = 30.0,
        retention_hours: float = 72.0,
        prune_seconds: float = 600.0,
        connect: Callable[..., Any] = asyncpg.connect,
    ) -> None:
        self._dsn = listener_dsn(database_url)
        self.channel = channel
        self.queue_size = queue_size
        self.keepalive_seconds = keepalive_seconds
        self.reconnect_min_seconds = reconnect_min_seconds
        self.reconnect_max_seconds = reconnect_max_seconds
        self.retention_hours = retention_hours
        self.prune_seconds = prune_seconds
        self._connect = connect
        self._subscribers: set[Subscriber] = set()
        self._listening = asyncio.Event()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._backend_pid: int | None = None
        self._serial = 0
        self._position: int | None = None  # the last sequence handed out
        self._pruned_at = 0.0  # monotonic time of the last pruning
        self.connects = 0  # successful LISTENs since start (1 + re-connections)

    # state, for operators and tests
    @property
    def listening(self) -> bool:
        return self._listening.is_set()

    @property
    def backend_pid(self) -> int | None:
        """The PostgreSQL backend that LISTENs for this process (while connected)."""
        return self._backend_pid

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers)

    @property
    def position(self) -> int:
        """The sequence of the last event handed to subscribers (0 before the first read)."""
        return self._position or 0

    async def start(self, wait_seconds: float = 5.0) -> None:
        """Start listening; wait (bounded) for the first LISTEN so that events committed
        after startup reach this process. A database that is down does not stop the app:
        the listener keeps re-trying in the background."""
        if self._task is not None:
            return
        self._task = asyncio.create_task(self._run(), name="coopnet-event-listener")
        try:
            await asyncio.wait_for(self._listening.wait(), timeout=wait_seconds)
        except TimeoutError:
            log.warning("event listener not connected after %.1fs; still trying", wait_seconds)

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with suppress(asyncio.CancelledError):
                await task
        for subscriber in list(self._subscribers):
            subscriber.close()

    @asynccontextmanager
    async def subscribe(self, accept: Accept) -> AsyncIterator[Subscriber]:
        """A subscriber for the events `accept` takes, removed when the block ends."""
        self._serial += 1
        subscriber = Subscriber(accept, self.queue_size, f"#{self._serial}", self.position)
        self._subscribers.add(subscriber)
        try:
            yield subscriber
        finally:
            self._subscribers.discard(subscriber)
            subscriber.close()

    def dispatch(self, event: StoredEvent) -> None:
        """Hand one event to every subscriber (never waits)."""
        if self._position is not None and event.sequence <= self._position:
            return  # already handed out
        self._position = event.sequence
        for subscriber in list(self._subscribers):
            subscriber.offer(event)

    def _on_notify(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        try:
            newest = int(payload)
        except ValueError:
            log.warning("ignored a malformed notification on %s: %.100r", self.channel, payload)
            return
        if newest > self.position:
            self._wake.set()

    async def _read(self, conn: Any) -> None:
        """Hand out every event after the last one handed out, in sequence order."""
        if self._position is None:  # first connection: start from now
            self._position = int(await conn.fetchval(LATEST_SQL, timeout=self.keepalive_seconds))
            return
        while True:
            rows = await conn.fetch(
                READ_SQL, self._position, READ_PAGE, timeout=self.keepalive_seconds
            )
            for row in rows:
                self.dispatch(StoredEvent.from_row(row))
            if len(rows) < READ_PAGE:
                return

    async def _prune(self, conn: Any) -> None:
        now = time.monotonic()
        if now - self._pruned_at < self.prune_seconds:
            return
        self._pruned_at = now
        status = await conn.execute(PRUNE_SQL, self.retention_hours, timeout=self.keepalive_seconds)
        log.debug("pruned live events older than %.1f h: %s", self.retention_hours, status)

    async def _run(self) -> None:
        delay = self.reconnect_min_seconds
        while True:
            conn: Any = None
            try:
                conn = await self._connect(
                    self._dsn,
                    timeout=10,
                    server_settings={"application_name": self.APPLICATION_NAME},
                )
                lost = asyncio.Event()

                def on_lost(_conn: object, lost: asyncio.Event = lost) -> None:
                    lost.set()
                    self._wake.set()

                conn.add_termination_listener(on_lost)
                await conn.add_listener(self.channel, self._on_notify)
                await self._read(conn)  # what was committed while not listening
                self._backend_pid = conn.get_server_pid()
                self.connects += 1
                self._listening.set()
                log.info("listening on %s (backend %s)", self.channel, self._backend_pid)
                delay = self.reconnect_min_seconds
                await self._watch(conn, lost)
                log.warning("event listener lost its connection; re-connecting")
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - any failure: back off and retry
                log.warning(
                    "event listener failed (%s: %s); retrying in %.1fs",
                    type(exc).__name__,
                    exc,
                    delay,
                )
            finally:
                self._listening.clear()
                self._backend_pid = None
                if conn is not None and not conn.is_closed():
                    conn.terminate()
            # Full jitter, so that many workers do not all reconnect at the same instant.
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))
            delay = min(delay * 2, self.reconnect_max_seconds)

    async def _watch(self, conn: Any, lost: asyncio.Event) -> None:
        """Read on every notification, and every `keepalive_seconds` anyway (which also
        finds a silently dead connection: the read fails or times out). Return when the
        connection is gone."""
        while True:
            with suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self.keepalive_seconds)
            self._wake.clear()  # before reading: a notification during the read wakes again
            if lost.is_set():
                return
            await self._read(conn)
            await self._prune(conn)


# --- the websocket side -------------------------------------------------------------------


class TextWebSocketAdapter(ASGIWebSocketAdapter):
    """graphql-transport-ws messages are text frames; the app's JSON encoder gives bytes."""

    async def send_json(self, message: Mapping[str, object]) -> None:
        data = self.view.encode_json(message)
        text = data.decode() if isinstance(data, bytes) else data
        try:
            await self.ws.send_text(text)
        except WebSocketDisconnect as exc:
            raise WebSocketDisconnected from exc


def _token_from_params(params: object) -> str | None:
    """`{"Authorization": "Bearer <token>"}` (any case of the key) or `{"token": ...}`."""
    if not isinstance(params, Mapping):
        return None
    for key, value in params.items():
        if isinstance(key, str) and key.lower() == "authorization":
            if not isinstance(value, str):
                raise AuthError("Use 'Authorization: Bearer <token>'.")
            scheme, _, token = value.partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise AuthError("Use 'Authorization: Bearer <token>'.")
            return token.strip()
    raw = params.get("token")
    if raw is None:
        return None
    if not isinstance(raw, str) or not raw.strip():
        raise AuthError("The token must be a string.")
    return raw.strip()


async def authenticate_connection(tokens: TokenService, context: Context) -> None:
    """`on_ws_connect`: make the connection's viewer from its `connection_params`. No
    token: anonymous (subscriptions then answer UNAUTHENTICATED). A token that cannot be
    trusted, or is no longer in force (revoked, member deactivated): the connection is
    refused (graphql-transport-ws close 4403 "Forbidden")."""
    if not isinstance(context, LiveContext):
        return
    try:
        token = _token_from_params(context.connection_params)
        if token is None:
            return
        verified = tokens.verify(token)
        async with context.sessions() as session:
            if not await is_in_force(session, verified.ref):
                raise AuthError(REVOKED)
    except AuthError as exc:
        log.info("websocket refused: %s", exc)
        raise ConnectionRejectionError({"message": str(exc)}) from exc
    context.authenticate(verified.viewer, verified.ref)


MAX_PEEK_TOKENS = 10_000  # bounds the look at the operation type; the limits apply later


def operation_type(query: object, operation_name: object) -> OperationType | None:
    """The type of the operation to run; None when the document does not say (it does
    not parse, or names no single operation): the schema then reports the error."""
    if not isinstance(query, str):
        return None
    try:
        document = parse(query, no_location=True, max_tokens=MAX_PEEK_TOKENS)
    except GraphQLError:
        return None
    operation = get_operation_ast(
        document, operation_name if isinstance(operation_name, str) else None
    )
    return operation.operation if operation is not None else None


def is_http_subscription(query: str | None, operation_name: str | None) -> bool:
    """A subscription sent over HTTP (refused: they run over the websocket). Only
    documents that mention the keyword are parsed."""
    return (
        query is not None
        and "subscription" in query
        and operation_type(query, operation_name) is OperationType.SUBSCRIPTION
    )


def http_subscription_refused() -> ExecutionResult:
    return ExecutionResult(
        data=None,
        errors=[
            GraphQLError(
                "Subscriptions are served over a websocket (graphql-transport-ws) at /graphql.",
                extensions={"code": "BAD_REQUEST"},
            )
        ],
    )


class LiveWSHandler(BaseGraphQLTransportWSHandler[Context, None]):
    """Subscriptions only: queries and mutations go to `POST /graphql`, where each request
    has its unit of work (a websocket holds no database session)."""

    async def handle_subscribe(self, message: SubscribeMessage) -> None:
        limit = self.max_subscriptions_per_connection
        if (
            self.connection_acknowledged
            and message["id"] not in self.operations
            and limit is not None
            and len(self.operations) >= limit
        ):
            # Strawberry's own refusal carries no code.
            error = GraphQLError(
                f"At most {limit} subscriptions run on one connection.",
                extensions={"code": "TOO_MANY_SUBSCRIPTIONS", "limit": limit},
            )
            await self.send_message(
                ErrorMessage(id=message["id"], type="error", payload=[error.formatted])
            )
            return
        if self.connection_acknowledged and message["id"] not in self.operations:
            try:
                message = await self.registered_document(message)
            except GraphQLError as refused:
                await self.send_message(
                    ErrorMessage(id=message["id"], type="error", payload=[refused.formatted])
                )
                return
            payload = message.get("payload") or {}
            kind = operation_type(payload.get("query"), payload.get("operationName"))
            if kind is not None and kind is not OperationType.SUBSCRIPTION:
                error = GraphQLError(
                    "Only subscriptions run over the websocket; send queries and "
                    "mutations to POST /graphql.",
                    extensions={"code": "BAD_REQUEST"},
                )
                await self.send_message(
                    ErrorMessage(id=message["id"], type="error", payload=[error.formatted])
                )
                return
        await super().handle_subscribe(message)

    async def registered_document(self, message: SubscribeMessage) -> SubscribeMessage:
        """The subscribe message with the registered document it names by hash
        (`documentId`, or Apollo's `extensions.persistedQuery.sha256Hash`) as its query,
        as `POST /graphql` does; with TRUSTED_DOCUMENTS_ONLY, a full document is refused.
        Raises a coded GraphQLError for the client."""
        persisted: PersistedDocuments | None = getattr(self.view, "persisted", None)
        trusted_only = bool(getattr(self.view, "trusted_documents_only", False))
        payload: dict[str, Any] = dict(message.get("payload") or {})
        try:
            key = requested_hash(payload.get("documentId"), payload.get("extensions"))
        except ValueError as exc:
            raise GraphQLError(str(exc), extensions={"code": "BAD_REQUEST"}) from exc
        query = payload.get("query") or None
        if key is None:
            if trusted_only:
                raise GraphQLError(
                    "This instance runs only registered operations: send the operation's "
                    "hash (documentId), not its text (TRUSTED_DOCUMENTS_ONLY).",
                    extensions={"code": PERSISTED_QUERY_REQUIRED},
                )
            return message
        if isinstance(query, str):
            if document_hash(query) != key:
                raise GraphQLError(
                    "The hash is not the SHA-256 of the query sent with it.",
                    extensions={"code": "BAD_REQUEST"},
                )
            if not trusted_only:
                return message
        document = None
        if persisted is not None and isinstance(self.context, LiveContext):
            async with self.context.sessions() as session:
                document = await persisted.lookup(session, key)
        if document is None:
            raise GraphQLError(
                "PersistedQueryNotFound", extensions={"code": PERSISTED_QUERY_NOT_FOUND}
            )
        payload["query"] = document
        return SubscribeMessage(id=message["id"], type="subscribe", payload=payload)  # type: ignore[typeddict-item]
