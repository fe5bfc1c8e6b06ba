"""Domain events, published with PostgreSQL NOTIFY inside the writing transaction.

NOTIFY is delivered only when the transaction commits (and never if it rolls back), so a
subscriber hears of a change exactly when it becomes visible, on every process listening
to the channel. Payloads carry ids only: a listener re-reads the records under the
subscriber's own privacy rules.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import orjson
from sqlalchemy import String, cast, func, literal, select
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncSession

CHANNEL = "coopnet_events"


@dataclass(frozen=True)
class CoverEvent:
    """Something happened to a cover request or one of its offers.

    kind: REQUEST_OPENED, REQUEST_FILLED, REQUEST_RETURNED, REQUEST_CANCELLED,
          OFFER_MADE, OFFER_DECLINED, OFFER_WITHDRAWN, OFFER_CLOSED
    """

    kind: str
    cover_request_id: int
    visit_id: int
    cluster_ids: list[int] = field(default_factory=list)
    offer_id: int | None = None
    pa_id: int | None = None  # the PA an offer event concerns

    def to_json(self) -> str:
        return orjson.dumps({"type": "cover", **asdict(self)}).decode()

    @staticmethod
    def from_json(raw: str | bytes) -> CoverEvent | None:
        data: dict[str, Any] = orjson.loads(raw)
        if data.pop("type", None) != "cover":
            return None
        return CoverEvent(**data)


@dataclass(frozen=True)
class PartnershipEvent:
    """A partnership with another instance changed (proposed to us, answered, suspended,
    resumed, ended, or a call to the partner failed): admins re-read it.

    kind: the partnership's status after the change (PROPOSED, ACTIVE, ...)."""

    kind: str
    partnership_id: int

    def to_json(self) -> str:
        return orjson.dumps({"type": "partnership", **asdict(self)}).decode()

    @staticmethod
    def from_json(raw: str | bytes) -> PartnershipEvent | None:
        data: dict[str, Any] = orjson.loads(raw)
        if data.pop("type", None) != "partnership":
            return None
        return PartnershipEvent(**data)


@dataclass(frozen=True)
class ExchangeEvent:
    """A cover exchange with a partner co-op changed (docs/federation.md, section 12):
    subscribers re-read it under their own privacy rules.

    kind: the exchange's status after the change (HELD, ACCEPTED, ...)."""

    kind: str
    exchange_id: int

    def to_json(self) -> str:
        return orjson.dumps({"type": "exchange", **asdict(self)}).decode()


Event = CoverEvent | PartnershipEvent | ExchangeEvent


def event_from_json(raw: str | bytes) -> Event | None:
    """The event a NOTIFY payload carries; None for a type this process does not know."""
    data: dict[str, Any] = orjson.loads(raw)
    kind = data.pop("type", None)
    if kind == "cover":
        return CoverEvent(**data)
    if kind == "partnership":
        return PartnershipEvent(**data)
    if kind == "exchange":
        return ExchangeEvent(**data)
    return None


async def publish(session: AsyncSession, event: Event) -> None:
    """Queue the event in the current transaction (sent at commit)."""
    await publish_all(session, [event])


async def publish_all(session: AsyncSession, events: Sequence[Event]) -> None:
    """Queue several events in one statement (one NOTIFY each, delivered in order at
    commit), so the statement count does not grow with the number of events."""
    if not events:
        return
    payloads = func.unnest(
        cast(literal([e.to_json() for e in events]), ARRAY(String))
    ).column_valued("payload")
    await session.execute(select(func.pg_notify(CHANNEL, payloads)))
