"""The expiry sweeper as a process runs it (`ExchangeSweeper`, started by `coopnet serve`
and `coopnet worker`): a hold past its time becomes EXPIRED on its own, by SYSTEM, and the
PA's time is released; one still in time is left alone."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from care.models import CoverExchange, CoverExchangeEvent, PaCommitment
from federation.exchange import ExchangeSweeper
from tests.federation.instances import eventually
from tests.schema.test_exchange_access import _setup


async def test_the_sweeper_expires_holds_past_their_time(app: Any, db: AsyncSession) -> None:
    ids = await _setup(db)
    await db.execute(
        update(CoverExchange)
        .where(CoverExchange.id.in_([ids["held"], ids["requesting"]]))
        .values(hold_expires_at=func.now() - func.make_interval(0, 0, 0, 0, 0, 1))
    )
    await db.commit()
    assert await db.scalar(select(func.count()).where(PaCommitment.kind == "HOLD")) == 2
    sweeper = ExchangeSweeper(app.state.sessions, 0.05)
    sweeper.start()
    try:

        async def swept() -> bool:
            await db.rollback()
            statuses = set(
                await db.scalars(
                    select(CoverExchange.status).where(
                        CoverExchange.id.in_([ids["held"], ids["requesting"]])
                    )
                )
            )
            return statuses == {"EXPIRED"}

        await eventually(swept, "the sweeper expires both holds")
    finally:
        await sweeper.stop()
    await db.rollback()
    # The confirmed booking keeps its hold; the expired one's is released.
    holds = set(await db.scalars(select(PaCommitment.exchange_id)))
    assert holds == {ids["confirmed"]}
    by = set(
        await db.scalars(
            select(CoverExchangeEvent.by_side).where(CoverExchangeEvent.status == "EXPIRED")
        )
    )
    assert by == {"SYSTEM"}
    confirmed = await db.get(CoverExchange, ids["confirmed"])
    assert confirmed is not None and confirmed.status == "CONFIRMED"
