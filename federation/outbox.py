"""Messages to partner instances that must not be lost (docs/federation.md, "The
outbox").

A message is enqueued with `send_later` in the same transaction as the change it reports:
it exists exactly when the change is committed. Workers deliver it as a signed GraphQL
call (`FederationClient.call`), retrying with exponential backoff and jitter; after
`max_attempts` failures it is kept as dead (visible to admins, who may retry it).

The queue is PgQueuer's (tables `pgqueuer*`, migration 0012): it enqueues on the asyncpg
connection of our own SQLAlchemy session, so the message commits or rolls back with the
change; workers claim jobs with `FOR UPDATE SKIP LOCKED` and are woken by NOTIFY, so any
number of them (in `coopnet serve` and in `coopnet worker` processes) may run at once;
a worker killed mid-delivery leaves a job whose heartbeat goes stale, and another worker
picks it up again. Deliveries are at least once: every message carries an idempotency
key, and the receiver applies a key once (`federation/idempotency.py`).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import asyncpg
import orjson
from pgqueuer import QueueManager
from pgqueuer.adapters.persistence.queries import Queries
from pgqueuer.domain.errors import RetryRequested
from pgqueuer.domain.models import Job
from pgqueuer.domain.types import JobId
from sqlalchemy import select, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from care.enums import PartnershipStatus
from care.models import Partnership
from federation.client import FederationClient, PartnerError, PartnerErrorCode
from federation.partners import record_contact, store_keys

log = logging.getLogger("coopnet.federation.outbox")

DELIVER = "federation.deliver"
# Deliveries one worker makes at once. Each takes database sessions from the process's
# pool, which the requests being served share: unbounded (PgQueuer's default), a backlog
# of messages (a partner back after a while) exhausted the pool and failed deliveries
# for want of a connection (bench/cover_exchange.py).
CONCURRENCY = 4


@dataclass(frozen=True)
class OutboxPolicy:
    """How deliveries are retried: the n-th retry waits about `first_delay * 2**n`
    seconds (at most `max_delay`), with +-25% jitter so that messages to a partner that
    comes back do not all arrive at once."""

    max_attempts: int = 12
    first_delay: float = 2.0
    max_delay: float = 600.0

    def delay(self, attempts: int) -> dt.timedelta:
        base = min(self.first_delay * (2**attempts), self.max_delay)
        return dt.timedelta(seconds=base * random.uniform(0.75, 1.25))


@dataclass(frozen=True)
class Message:
    """A call to make to a partner: a GraphQL document and its variables."""

    partnership_id: int
    operation: str  # the root field, for the admins' view and the logs
    query: str
    variables: dict[str, Any]
    idempotency_key: str

    def encode(self) -> bytes:
        return orjson.dumps(
            {
                "partnershipId": self.partnership_id,
                "operation": self.operation,
                "query": self.query,
                "variables": self.variables,
                "idempotencyKey": self.idempotency_key,
            }
        )

    @staticmethod
    def decode(raw: bytes) -> Message:
        data = orjson.loads(raw)
        return Message(
            partnership_id=int(data["partnershipId"]),
            operation=str(data["operation"]),
            query=str(data["query"]),
            variables=dict(data["variables"]),
            idempotency_key=str(data["idempotencyKey"]),
        )


async def send_later(
    session: AsyncSession,
    partnership_id: int,
    operation: str,
    query: str,
    variables: dict[str, Any],
    *,
    idempotency_key: uuid.UUID | None = None,
) -> int:
    """Queue a call to the partner in the session's transaction (delivered once it
    commits; never if it rolls back). The variables get `idempotencyKey`."""
    key = str(idempotency_key or uuid.uuid4())
    message = Message(partnership_id, operation, query, {**variables, "idempotencyKey": key}, key)
    driver_connection = await _queue_connection(session)
    if not driver_connection.is_in_transaction():
        # SQLAlchemy begins lazily: make sure the job joins the caller's transaction.
        await session.execute(select(1))
    [job_id] = await Queries.from_asyncpg_connection(driver_connection).enqueue(
        DELIVER, message.encode()
    )
    assert job_id is not None
    return int(job_id)


async def _queue_connection(session: AsyncSession) -> asyncpg.Connection:
    """The asyncpg connection under the session: PgQueuer works on it, so its statements
    join the session's transaction."""
    connection = await (await session.connection()).get_raw_connection()
    driver_connection: asyncpg.Connection = connection.driver_connection  # type: ignore[assignment]
    return driver_connection


def asyncpg_dsn(database_url: str) -> str:
    """A plain libpq URL for asyncpg from any of our database URLs."""
    return make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)


class OutboxWorker:
    """Delivers queued messages until stopped. One per process; several may run."""

    def __init__(
        self,
        database_url: str,
        sessions: async_sessionmaker[AsyncSession],
        client: Callable[[], FederationClient],
        policy: OutboxPolicy = OutboxPolicy(),
        *,
        poll_seconds: float = 5.0,
        heartbeat_seconds: float = 30.0,
    ) -> None:
        self.dsn = asyncpg_dsn(database_url)
        self.sessions = sessions
        self.client = client
        self.policy = policy
        self.poll_seconds = poll_seconds
        self.heartbeat_seconds = heartbeat_seconds
        self._manager: QueueManager | None = None
        self._task: asyncio.Task[None] | None = None
        self._connection: asyncpg.Connection | None = None

    async def start(self) -> None:
        # The worker's own connection (LISTEN, claiming jobs), bounded like the app's.
        self._connection = await asyncpg.connect(
            self.dsn,
            timeout=10,
            command_timeout=30,
            server_settings={
                "application_name": "coopnet-outbox",
                "statement_timeout": "20000",
                "lock_timeout": "5000",
                "idle_in_transaction_session_timeout": "60000",
            },
        )
        manager = QueueManager(Queries.from_asyncpg_connection(self._connection))
        manager.entrypoint(DELIVER, on_failure="hold", concurrency_limit=CONCURRENCY)(self.deliver)
        self._manager = manager
        self._task = asyncio.create_task(
            manager.run(
                dequeue_timeout=dt.timedelta(seconds=self.poll_seconds),
                batch_size=10,
                heartbeat_timeout=dt.timedelta(seconds=self.heartbeat_seconds),
            ),
            name="coopnet-outbox-worker",
        )

    async def stop(self) -> None:
        if self._manager is not None:
            self._manager.shutdown.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(self._task, timeout=10)
            except (TimeoutError, asyncio.CancelledError):
                self._task.cancel()
            except Exception:  # noqa: BLE001 - stopping: log, do not raise
                log.exception("the outbox worker ended with an error")
        if self._connection is not None:
            await self._connection.close()
        self._task = self._manager = self._connection = None

    async def deliver(self, job: Job) -> None:
        """Make one call. A failure is recorded on the partnership and retried later;
        after `max_attempts` the job fails for good (kept, status `failed`: dead). Our
        own trouble meanwhile (no database connection free in time, the database
        restarting) is retried the same way: it says nothing about the message."""
        try:
            await self._deliver(job)
        except (RetryRequested, PartnerError):
            raise
        except Exception as error:
            if job.attempts + 1 >= self.policy.max_attempts:
                log.exception("message %s is dead after %d attempts", job.id, job.attempts + 1)
                raise
            log.warning("message %s not delivered (%r): retried later", job.id, error)
            raise RetryRequested(
                delay=self.policy.delay(job.attempts), reason=repr(error)[:500]
            ) from error

    async def _deliver(self, job: Job) -> None:
        assert job.payload is not None
        message = Message.decode(job.payload)
        async with self.sessions() as session:
            partnership = (
                await session.execute(
                    select(
                        Partnership.base_url,
                        Partnership.graphql_endpoint,
                        Partnership.keys,
                        Partnership.status,
                    ).where(Partnership.id == message.partnership_id)
                )
            ).first()
        if partnership is None:
            log.info("message %s dropped: its partnership is gone", job.id)
            return
        try:
            result = await self.client().call(
                partnership.graphql_endpoint,
                partnership.keys,
                message.query,
                message.variables,
                base_url=partnership.base_url,
            )
        except PartnerError as error:
            async with self.sessions() as session:
                await record_contact(session, message.partnership_id, error)
                await session.commit()
            if job.attempts + 1 >= self.policy.max_attempts:
                log.warning(
                    "message %s (%s) is dead after %d attempts: %s",
                    job.id,
                    message.operation,
                    job.attempts + 1,
                    error.summary(),
                )
                raise
            raise RetryRequested(
                delay=self.policy.delay(job.attempts), reason=error.summary()
            ) from error
        # Delivered. A payload error is the partner's considered answer (it refused the
        # message): recorded, not retried.
        refusal = _payload_refusal(result.data.get(message.operation))
        async with self.sessions() as session:
            await record_contact(session, message.partnership_id, refusal)
            if result.refreshed is not None:  # the partner rotated its key
                await store_keys(session, message.partnership_id, result.refreshed.keys)
            await session.commit()
        if refusal is not None:
            log.warning("message %s (%s) refused: %s", job.id, message.operation, refusal)
        elif partnership.status == PartnershipStatus.ENDED.value:
            log.info("message %s delivered to an ended partnership", job.id)


def _payload_refusal(payload: Any) -> PartnerError | None:
    errors = payload.get("errors") if isinstance(payload, dict) else None
    if not errors or not isinstance(errors, list):
        return None
    first = errors[0] if isinstance(errors[0], dict) else {}
    return PartnerError(
        PartnerErrorCode.REFUSED,
        str(first.get("message") or "refused")[:500],
        reason=str(first.get("code") or "")[:100] or None,
    )


# --- what admins see ----------------------------------------------------------------------


@dataclass(frozen=True)
class QueuedMessage:
    id: int
    partnership_id: int
    operation: str
    status: str  # queued | picked | failed
    attempts: int
    created_at: dt.datetime
    next_attempt_at: dt.datetime


async def undelivered(session: AsyncSession, *, dead_only: bool = False) -> list[QueuedMessage]:
    """Messages not delivered yet (or dead), oldest first."""
    statuses = ("failed",) if dead_only else ("queued", "picked", "failed")
    rows = (
        await session.execute(
            text(
                "SELECT id, status::text AS status, attempts, created, execute_after, payload "
                "FROM pgqueuer WHERE entrypoint = :entrypoint "
                "AND status::text = ANY(:statuses) ORDER BY id LIMIT 500"
            ),
            {"entrypoint": DELIVER, "statuses": list(statuses)},
        )
    ).all()
    out: list[QueuedMessage] = []
    for row in rows:
        message = Message.decode(row.payload)
        out.append(
            QueuedMessage(
                id=row.id,
                partnership_id=message.partnership_id,
                operation=message.operation,
                status=row.status,
                attempts=row.attempts,
                created_at=row.created,
                next_attempt_at=row.execute_after,
            )
        )
    return out


async def retry_dead(session: AsyncSession, message_id: int) -> bool:
    """Queue a dead message again (attempts reset). False when it is not dead."""
    driver_connection = await _queue_connection(session)
    dead = await session.scalar(
        text(
            "SELECT id FROM pgqueuer WHERE id = :id AND entrypoint = :entrypoint "
            "AND status::text = 'failed' FOR UPDATE"
        ),
        {"id": message_id, "entrypoint": DELIVER},
    )
    if dead is None:
        return False
    await Queries.from_asyncpg_connection(driver_connection).requeue_jobs([JobId(message_id)])
    return True
