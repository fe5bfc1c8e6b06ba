"""A partner's message is applied once however often it arrives, also when two copies
arrive at the same moment (federation/idempotency.py)."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from sqlalchemy import func, insert, select

from care.models import FederationAudit
from federation.idempotency import DuplicateDelivery, KeyReused, first_answer, remember

PARTNER = "https://partner.example"


async def apply_once(sessions: Any, key: uuid.UUID, started: asyncio.Event | None = None) -> Any:
    """A stand-in for a partner-facing mutation: one row written, then the answer kept."""
    async with sessions() as session:
        seen = await first_answer(session, PARTNER, key, "peerTest")
        if seen is not None:
            return seen
        await session.execute(
            insert(FederationAudit).values(reason="BAD_SIGNATURE", method="POST", path="/x")
        )
        answer = {"accepted": True, "key": str(key)}
        try:
            await remember(session, PARTNER, key, "peerTest", answer)
            if started is not None:
                started.set()
                await asyncio.sleep(0.3)  # hold the key uncommitted while the copy arrives
            await session.commit()
        except DuplicateDelivery:
            await session.rollback()
            return "duplicate"
        return answer


async def changes(db: Any) -> int:
    return int(await db.scalar(select(func.count()).select_from(FederationAudit)))


async def test_a_repeat_gets_the_first_answer_and_changes_nothing(app: Any, db: Any) -> None:
    key = uuid.uuid4()
    first = await apply_once(app.state.sessions, key)
    again = await apply_once(app.state.sessions, key)
    assert first == again == {"accepted": True, "key": str(key)}
    assert await changes(db) == 1


async def test_two_copies_at_once_apply_once(app: Any, db: Any) -> None:
    key = uuid.uuid4()
    started = asyncio.Event()
    winner = asyncio.create_task(apply_once(app.state.sessions, key, started))
    await started.wait()
    loser = await apply_once(app.state.sessions, key)
    assert loser == "duplicate"  # rolled back; the sender's retry will get the answer
    assert await winner == {"accepted": True, "key": str(key)}
    assert await apply_once(app.state.sessions, key) == {"accepted": True, "key": str(key)}
    assert await changes(db) == 1


async def test_a_key_belongs_to_one_operation(app: Any) -> None:
    key = uuid.uuid4()
    await apply_once(app.state.sessions, key)
    async with app.state.sessions() as session:
        with pytest.raises(KeyReused):
            await first_answer(session, PARTNER, key, "peerOther")
        # Keys are per sending instance: another partner may use the same one.
        assert await first_answer(session, "https://other.example", key, "peerTest") is None
