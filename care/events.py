"""Live events: what subscribers hear of, stored in the changing transaction.

Services describe their changes as `CoverEvent`, `PartnershipEvent` and `ExchangeEvent`
and `publish` them inside their transaction. `publish_all` stores them in `live_event`
(migration 0023), one row per subject the change touched: a cover request (followed by
cluster), a cover offer (followed by its PA), a partnership, a cover exchange. So an
event exists exactly when its change committed, and one change is one event per subject
however many times the transaction mentions it (two offers on one request, a fill that
also closes the other offers: the request's row keeps the most telling kind, REQUEST_*
over OFFER_*, and the latest among equals).

At commit a deferred trigger numbers the transaction's rows (`sequence`) under a
transaction advisory lock, so sequence order is commit order, and NOTIFYs the last
number on CHANNEL. Readers (`api.events.EventHub`, one per process, and subscribers
resuming `after` a sequence) read rows in sequence order; they carry ids only, and each
subscriber re-reads the records under its own privacy rules.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import ColumnElement, and_, case, literal, select, true
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from care.enums import CoverChangeKind, LiveSubject
from care.models import LiveEvent

CHANNEL = "coopnet_events"
REPLAY_PAGE = 200  # events read per statement when a subscriber catches up


@dataclass(frozen=True)
class CoverEvent:
    """Something happened to a cover request or one of its offers.

    kind: REQUEST_OPENED, REQUEST_FILLED, REQUEST_RETURNED, REQUEST_CANCELLED,
          OFFER_MADE, OFFER_DECLINED, OFFER_WITHDRAWN, OFFER_CLOSED
    With an offer (`offer_id`, `pa_id`), the offer's PA hears of it too; REQUEST_FILLED
    names the accepted offer, which its PA hears of as OFFER_ACCEPTED.
    """

    kind: str
    cover_request_id: int
    visit_id: int
    cluster_ids: list[int] = field(default_factory=list)
    offer_id: int | None = None
    pa_id: int | None = None  # the PA an offer event concerns


@dataclass(frozen=True)
class PartnershipEvent:
    """A partnership with another instance changed (proposed to us, answered, suspended,
    resumed, ended, or a call to the partner failed): admins re-read it.

    kind: the partnership's status after the change (PROPOSED, ACTIVE, ...)."""

    kind: str
    partnership_id: int


@dataclass(frozen=True)
class ExchangeEvent:
    """A cover exchange with a partner co-op changed (docs/federation.md, section 12):
    subscribers re-read it under their own privacy rules.

    kind: the exchange's status after the change (HELD, ACCEPTED, ...)."""

    kind: str
    exchange_id: int


Event = CoverEvent | PartnershipEvent | ExchangeEvent


@dataclass
class _Row:
    subject: LiveSubject
    subject_id: int
    kind: str
    cluster_ids: list[int] = field(default_factory=list)
    pa_id: int | None = None


def _offer_kind(kind: str) -> str:
    """What an offer's PA hears of a cover event naming their offer."""
    if kind == CoverChangeKind.REQUEST_FILLED:
        return CoverChangeKind.OFFER_ACCEPTED.value
    if kind.startswith("REQUEST_"):  # the request closed under the offer
        return CoverChangeKind.OFFER_CLOSED.value
    return kind


def _rank(kind: str) -> int:
    """Which kind a subject's event keeps when one transaction says several things of it:
    what happened to the request itself over what happened to one of its offers."""
    return 1 if kind.startswith("REQUEST_") else 0


def _rows(event: Event) -> list[_Row]:
    if isinstance(event, PartnershipEvent):
        return [_Row(LiveSubject.PARTNERSHIP, event.partnership_id, event.kind)]
    if isinstance(event, ExchangeEvent):
        return [_Row(LiveSubject.COVER_EXCHANGE, event.exchange_id, event.kind)]
    rows = [
        _Row(
            LiveSubject.COVER_REQUEST,
            event.cover_request_id,
            event.kind,
            cluster_ids=sorted(set(event.cluster_ids)),
        )
    ]
    if event.offer_id is not None and event.pa_id is not None:
        rows.append(
            _Row(
                LiveSubject.COVER_OFFER, event.offer_id, _offer_kind(event.kind), pa_id=event.pa_id
            )
        )
    return rows


def coalesce(events: Sequence[Event]) -> list[_Row]:
    """One row per subject, in the order subjects are first mentioned."""
    by_subject: dict[tuple[LiveSubject, int], _Row] = {}
    for event in events:
        for row in _rows(event):
            key = (row.subject, row.subject_id)
            seen = by_subject.get(key)
            if seen is None:
                by_subject[key] = row
                continue
            if _rank(row.kind) >= _rank(seen.kind):
                seen.kind = row.kind
            seen.cluster_ids = sorted(set(seen.cluster_ids) | set(row.cluster_ids))
            seen.pa_id = row.pa_id if row.pa_id is not None else seen.pa_id
    return list(by_subject.values())


async def publish(session: AsyncSession, event: Event) -> None:
    """Store the event in the current transaction (numbered and announced at commit)."""
    await publish_all(session, [event])


async def publish_all(session: AsyncSession, events: Sequence[Event]) -> None:
    """Store several events in one statement, so the statement count does not grow with
    the number of events. A subject the transaction already published updates its row."""
    rows = coalesce(events)
    if not rows:
        return
    stmt = insert(LiveEvent).values(
        [
            {
                "subject": r.subject.value,
                "subject_id": r.subject_id,
                "kind": r.kind,
                "cluster_ids": r.cluster_ids,
                "pa_id": r.pa_id,
            }
            for r in rows
        ]
    )
    kept = LiveEvent.__table__.c
    stmt = stmt.on_conflict_do_update(
        index_elements=["xid", "subject", "subject_id"],
        set_={
            "kind": case(
                (
                    and_(
                        kept.kind.startswith("REQUEST_"),
                        ~stmt.excluded.kind.startswith("REQUEST_"),
                    ),
                    kept.kind,
                ),
                else_=stmt.excluded.kind,
            ),
            "cluster_ids": stmt.excluded.cluster_ids,
            "pa_id": stmt.excluded.pa_id,
        },
    )
    await session.execute(stmt)


# --- reading ----------------------------------------------------------------------------


@dataclass(frozen=True)
class StoredEvent:
    """A committed live event, as readers get it."""

    sequence: int
    subject: str
    subject_id: int
    kind: str
    occurred_at: dt.datetime
    cluster_ids: tuple[int, ...] = ()
    pa_id: int | None = None

    @staticmethod
    def from_row(row: Mapping[Any, Any]) -> StoredEvent:
        """From a row as asyncpg (a Record) or SQLAlchemy (`Row._mapping`) gives it."""
        return StoredEvent(
            sequence=int(row["sequence"]),
            subject=row["subject"],
            subject_id=int(row["subject_id"]),
            kind=row["kind"],
            occurred_at=row["occurred_at"],
            cluster_ids=tuple(row["cluster_ids"] or ()),
            pa_id=row["pa_id"],
        )


@dataclass(frozen=True)
class Interest:
    """Which events one subscription follows: one subject, and for cover requests one
    cluster, for offers one PA. The same test in memory (live) and in SQL (replay)."""

    subject: LiveSubject
    cluster_id: int | None = None
    pa_id: int | None = None

    def accepts(self, event: StoredEvent) -> bool:
        if event.subject != self.subject:
            return False
        if self.cluster_id is not None and self.cluster_id not in event.cluster_ids:
            return False
        return self.pa_id is None or event.pa_id == self.pa_id

    def where(self) -> ColumnElement[bool]:
        clause: ColumnElement[bool] = LiveEvent.subject == self.subject.value
        if self.cluster_id is not None:
            clause = and_(clause, LiveEvent.cluster_ids.contains([self.cluster_id]))
        if self.pa_id is not None:
            clause = and_(clause, LiveEvent.pa_id == self.pa_id)
        return clause


_COLUMNS = (
    LiveEvent.sequence,
    LiveEvent.subject,
    LiveEvent.subject_id,
    LiveEvent.kind,
    LiveEvent.occurred_at,
    LiveEvent.cluster_ids,
    LiveEvent.pa_id,
)


async def is_kept(session: AsyncSession, sequence: int) -> bool:
    """Is this event still stored? Pruning removes the oldest events first (every event
    up to some sequence), so while it is, every later event is too."""
    found = await session.scalar(
        select(literal(1)).where(LiveEvent.sequence == sequence).select_from(LiveEvent)
    )
    return found is not None


async def events_after(
    session: AsyncSession, interest: Interest | None, after: int, limit: int = REPLAY_PAGE
) -> list[StoredEvent]:
    """The committed events after `after` that `interest` follows (all with None), in
    sequence order, at most `limit`."""
    rows = await session.execute(
        select(*_COLUMNS)
        .where(LiveEvent.sequence > after, interest.where() if interest else true())
        .order_by(LiveEvent.sequence)
        .limit(limit)
    )
    return [StoredEvent.from_row(r._mapping) for r in rows]


# For the event hub, which reads on its own asyncpg connection (positional parameters).
LATEST_SQL = "SELECT coalesce(max(sequence), 0) FROM live_event"
READ_SQL = (
    "SELECT sequence, subject, subject_id, kind, occurred_at, cluster_ids, pa_id "
    "FROM live_event WHERE sequence > $1 ORDER BY sequence LIMIT $2"
)
# Whole prefixes only (every event up to the newest that is too old), so that "still
# stored" (is_kept) means "nothing after it was pruned" even if clocks disagree.
PRUNE_SQL = """
DELETE FROM live_event
WHERE sequence <= (
    SELECT max(sequence) FROM live_event
    WHERE occurred_at < now() - $1::double precision * interval '1 hour'
)
"""
