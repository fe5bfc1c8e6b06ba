"""Applying a partner's message once (docs/federation.md, section 11).

Partners deliver at least once, each message with an `idempotencyKey`. A partner-facing
mutation asks `first_answer` before doing anything: a key seen before gets its first
answer back and changes nothing. Otherwise it makes its change and calls `remember` in
the same transaction. Two copies arriving at once both get past `first_answer`; the
second `remember` then waits for the first transaction and, finding the key taken,
raises `DuplicateDelivery`: its transaction rolls back, and the sender's retry gets the
first answer.
"""

from __future__ import annotations

import datetime as dt
import time
import uuid
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from care.models import PeerDelivery

# Longer than any message's life in a partner's outbox (12 attempts, at most 10 minutes
# apart, by default), with a wide margin.
RETENTION = dt.timedelta(days=30)
_PRUNE_EVERY = 3600.0
_pruned_at = float("-inf")


class DuplicateDelivery(Exception):
    """Another copy of this message was applied meanwhile: roll back; a retry gets its
    answer."""


class KeyReused(Exception):
    """The key was used before for another operation: a partner's bug, refused."""


async def first_answer(
    session: AsyncSession, instance: str, key: uuid.UUID, operation: str
) -> dict[str, Any] | None:
    row = (
        await session.execute(
            select(PeerDelivery.operation, PeerDelivery.answer).where(
                PeerDelivery.instance == instance, PeerDelivery.idempotency_key == key
            )
        )
    ).first()
    if row is None:
        return None
    if row.operation != operation:
        raise KeyReused(f"The idempotency key was used for {row.operation}.")
    answer: dict[str, Any] = row.answer
    return answer


async def remember(
    session: AsyncSession,
    instance: str,
    key: uuid.UUID,
    operation: str,
    answer: dict[str, Any],
) -> None:
    """Record the answer in the caller's transaction (see the module docstring)."""
    global _pruned_at
    if time.monotonic() - _pruned_at > _PRUNE_EVERY:
        _pruned_at = time.monotonic()
        await session.execute(
            delete(PeerDelivery).where(PeerDelivery.received_at < func.now() - RETENTION)
        )
    inserted = await session.execute(
        insert(PeerDelivery)
        .values(instance=instance, idempotency_key=key, operation=operation, answer=answer)
        .on_conflict_do_nothing(index_elements=["instance", "idempotency_key"])
        .returning(PeerDelivery.idempotency_key)
    )
    if inserted.first() is None:
        raise DuplicateDelivery("This message was applied meanwhile.")
