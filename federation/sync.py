"""Pulling partners' availability feeds (docs/federation.md, section 9).

For each ACTIVE partnership granting AVAILABILITY, on a schedule and when an admin runs
`syncPartner`: read pages of the partner's `peerAvailabilityFeed` from our cursor, and
apply each page together with its new cursor in ONE transaction. A sync interrupted at
any point resumes from the last page applied; applying a page again changes nothing (the
windows it carries are replaced by what they already are). A PostgreSQL advisory lock per
partnership keeps two processes from syncing one partner at once; the cursor is also
compare-and-set, so a page read from a stale cursor is never applied. The schedule runs
in one process of the instance at a time, whichever holds its lead (`ScheduleLead`)."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from sqlalchemy import any_, select, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

from care.enums import PartnerScope, PartnershipStatus
from care.models import Partnership
from federation.client import FederationClient, PartnerError, PartnerErrorCode
from federation.feed import FEED_MAX_PAGE
from federation.partners import record_contact, store_keys

log = logging.getLogger("coopnet.federation.sync")

# The advisory-lock class of feed syncs (the second key is the partnership id).
SYNC_LOCK_CLASS = 0x5EED
# In that class, the key of the schedule's lead (ScheduleLead): partnership ids start at 1.
SCHEDULE_LOCK_KEY = 0

FEED_QUERY = """
query Feed($after: String, $first: Int) {
  peerAvailabilityFeed(after: $after, first: $first) {
    cursor hasMore
    changes { ref removed paRef free }
    pas { ref district travelKm skills { skill expiresOn } }
  }
}
"""

# Bounds on what a partner may send us (the columns' checks are the last guard).
MAX_REF = 100
MAX_DISTRICT = 8
MAX_SKILLS = 50
MAX_SKILL_LENGTH = 200
MAX_PERIODS = 200
MAX_CURSOR = 500


class SyncBusy(Exception):
    """Another process is syncing this partnership right now."""


class SyncNotAllowed(Exception):
    """The partnership is unknown, not ACTIVE, or does not grant AVAILABILITY."""


@dataclass(frozen=True)
class ReceivedWindow:
    ref: str
    pa_ref: str
    skills: str  # JSON: [{"skill": str, "expiresOn": "YYYY-MM-DD" | null}]
    district: str | None
    travel_km: float
    periods: list[tuple[dt.datetime, dt.datetime]]


@dataclass
class ReceivedPage:
    cursor: str
    has_more: bool
    windows: list[ReceivedWindow] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)

    @property
    def size(self) -> int:
        return len(self.windows) + len(self.removed)


@dataclass
class SyncOutcome:
    partnership_id: int
    changes_applied: int = 0
    pages: int = 0
    error: PartnerError | None = None


def _bad(message: str) -> PartnerError:
    return PartnerError(PartnerErrorCode.BAD_RESPONSE, f"Availability feed: {message}")


def _text(value: Any, limit: int, what: str, *, optional: bool = False) -> str | None:
    if value is None and optional:
        return None
    if not isinstance(value, str) or not value or len(value) > limit:
        raise _bad(f"{what} is not a string of 1 to {limit} characters.")
    return value


def _instant(value: Any) -> dt.datetime:
    if not isinstance(value, str):
        raise _bad("a period bound is not a time.")
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError as exc:
        raise _bad("a period bound is not a time.") from exc
    if parsed.tzinfo is None:
        raise _bad("a period bound has no UTC offset.")
    return parsed


def parse_page(data: dict[str, Any]) -> ReceivedPage:
    """A feed page as the partner sent it, checked (PartnerError BAD_RESPONSE if not)."""
    raw = data.get("peerAvailabilityFeed")
    if not isinstance(raw, dict) or not isinstance(raw.get("changes"), list):
        raise _bad("no page.")
    cursor = _text(raw.get("cursor"), MAX_CURSOR, "the cursor")
    assert cursor is not None
    page = ReceivedPage(cursor=cursor, has_more=raw.get("hasMore") is True)
    if len(raw["changes"]) > FEED_MAX_PAGE:
        raise _bad("too many changes in one page.")
    pas_in = raw.get("pas")
    if not isinstance(pas_in, list) or len(pas_in) > FEED_MAX_PAGE:
        raise _bad("no list of PAs, or too long a one.")
    pas: dict[str, _Pa] = {}
    for item in pas_in:
        pa = _pa(item)
        if pa.ref in pas:
            raise _bad("a PA appears twice in one page.")
        pas[pa.ref] = pa
    seen: set[str] = set()
    for change in raw["changes"]:
        if not isinstance(change, dict):
            raise _bad("a change is not an object.")
        ref = _text(change.get("ref"), MAX_REF, "a window ref")
        assert ref is not None
        if ref in seen:
            raise _bad("a window appears twice in one page.")
        seen.add(ref)
        if change.get("removed") is not None:
            page.removed.append(ref)
            continue
        page.windows.append(_window(ref, change, pas))
    return page


@dataclass(frozen=True)
class _Pa:
    ref: str
    skills: str  # JSON, as stored
    district: str | None
    travel_km: float


def _pa(item: Any) -> _Pa:
    if not isinstance(item, dict):
        raise _bad("a PA is not an object.")
    ref = _text(item.get("ref"), MAX_REF, "a PA ref")
    assert ref is not None
    district = _text(item.get("district"), MAX_DISTRICT, "a district", optional=True)
    travel = item.get("travelKm")
    if isinstance(travel, bool) or not isinstance(travel, int | float) or not 0 <= travel < 1e4:
        raise _bad("a travel range is not a distance.")
    skills_in = item.get("skills")
    if not isinstance(skills_in, list) or len(skills_in) > MAX_SKILLS:
        raise _bad("skills are not a short list.")
    skills: list[dict[str, str | None]] = []
    for skill in skills_in:
        if not isinstance(skill, dict):
            raise _bad("a skill is not an object.")
        name = _text(skill.get("skill"), MAX_SKILL_LENGTH, "a skill")
        expires = skill.get("expiresOn")
        if expires is not None:
            try:
                expires = dt.date.fromisoformat(expires).isoformat()
            except (TypeError, ValueError) as exc:
                raise _bad("a skill's expiry is not a date.") from exc
        skills.append({"skill": name, "expiresOn": expires})
    return _Pa(ref, orjson.dumps(skills).decode(), district, float(travel))


def _window(ref: str, change: dict[str, Any], pas: dict[str, _Pa]) -> ReceivedWindow:
    pa_ref = _text(change.get("paRef"), MAX_REF, "a PA ref")
    assert pa_ref is not None
    pa = pas.get(pa_ref)
    if pa is None:
        raise _bad("an offered window's PA is not in the page's PAs.")
    free = change.get("free")
    if not isinstance(free, list) or not 0 < len(free) <= MAX_PERIODS:
        raise _bad("an offered window has no free periods.")
    periods: list[tuple[dt.datetime, dt.datetime]] = []
    for period in free:
        if not isinstance(period, str) or len(period) > 80 or period.count("/") != 1:
            raise _bad("a free period is not an interval `start/end`.")
        start_text, end_text = period.split("/")
        start, end = _instant(start_text), _instant(end_text)
        if end <= start:
            raise _bad("a free period ends before it starts.")
        periods.append((start, end))
    return ReceivedWindow(
        ref=ref,
        pa_ref=pa_ref,
        skills=pa.skills,
        district=pa.district,
        travel_km=pa.travel_km,
        periods=periods,
    )


# --- applying a page -----------------------------------------------------------------

_DELETE_REMOVED = text(
    "DELETE FROM partner_window WHERE partnership_id = :pid AND ref = ANY(:refs)"
)
# Periods beyond a window's new number of periods (it shrank).
_DELETE_EXTRA = text(
    """
    DELETE FROM partner_window pw
    USING unnest(CAST(:refs AS text[]), CAST(:counts AS int[])) AS x(ref, n)
    WHERE pw.partnership_id = :pid AND pw.ref = x.ref AND pw.period >= x.n
    """
)
# Upsert; a row already as received is left alone (applying a page twice changes nothing).
_UPSERT = text(
    """
    INSERT INTO partner_window
        (partnership_id, ref, period, pa_ref, skills, district, travel_km, during)
    SELECT :pid, x.ref, x.period, x.pa_ref, CAST(x.skills AS jsonb), x.district, x.travel,
           tstzrange(x.starts, x.ends)
    FROM unnest(CAST(:refs AS text[]), CAST(:periods AS int[]), CAST(:pa_refs AS text[]),
                CAST(:skills AS text[]), CAST(:districts AS text[]),
                CAST(:travel AS numeric[]), CAST(:starts AS timestamptz[]),
                CAST(:ends AS timestamptz[]))
         AS x(ref, period, pa_ref, skills, district, travel, starts, ends)
    ON CONFLICT (partnership_id, ref, period) DO UPDATE
    SET pa_ref = EXCLUDED.pa_ref, skills = EXCLUDED.skills, district = EXCLUDED.district,
        travel_km = EXCLUDED.travel_km, during = EXCLUDED.during, received_at = now()
    WHERE (partner_window.pa_ref, partner_window.skills, partner_window.district,
           partner_window.travel_km, partner_window.during)
          IS DISTINCT FROM (EXCLUDED.pa_ref, EXCLUDED.skills, EXCLUDED.district,
           EXCLUDED.travel_km, EXCLUDED.during)
    """
)
_MOVE_CURSOR = text(
    """
    UPDATE partnership SET feed_cursor = :new, last_sync_at = now(), updated_at = now()
    WHERE id = :pid AND feed_cursor IS NOT DISTINCT FROM :old
    """
)


async def apply_page(
    conn: AsyncConnection | AsyncSession, partnership_id: int, page: ReceivedPage, old: str | None
) -> bool:
    """Apply one page and move the cursor from `old` to the page's, in the caller's
    transaction. False (and nothing should be committed) when the cursor was not `old`
    any more: another sync moved it."""
    moved = await conn.execute(
        _MOVE_CURSOR, {"pid": partnership_id, "new": page.cursor, "old": old}
    )
    if moved.rowcount != 1:  # type: ignore[attr-defined]
        return False
    if page.removed:
        await conn.execute(_DELETE_REMOVED, {"pid": partnership_id, "refs": page.removed})
    if page.windows:
        await conn.execute(
            _DELETE_EXTRA,
            {
                "pid": partnership_id,
                "refs": [w.ref for w in page.windows],
                "counts": [len(w.periods) for w in page.windows],
            },
        )
        rows = [(w, i, p) for w in page.windows for i, p in enumerate(w.periods)]
        await conn.execute(
            _UPSERT,
            {
                "pid": partnership_id,
                "refs": [w.ref for w, _, _ in rows],
                "periods": [i for _, i, _ in rows],
                "pa_refs": [w.pa_ref for w, _, _ in rows],
                "skills": [w.skills for w, _, _ in rows],
                "districts": [w.district for w, _, _ in rows],
                "travel": [w.travel_km for w, _, _ in rows],
                "starts": [p[0] for _, _, p in rows],
                "ends": [p[1] for _, _, p in rows],
            },
        )
    return True


# --- one partner -----------------------------------------------------------------------


@contextlib.asynccontextmanager
async def sync_lock(engine: AsyncEngine, partnership_id: int) -> AsyncIterator[None]:
    """Hold the partnership's sync lock (a session-level advisory lock on a connection
    of its own) for the block; SyncBusy when another process holds it."""
    async with engine.connect() as conn:
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        got = await conn.scalar(
            text("SELECT pg_try_advisory_lock(:c, :p)"), {"c": SYNC_LOCK_CLASS, "p": partnership_id}
        )
        if not got:
            raise SyncBusy(partnership_id)
        try:
            yield
        finally:
            await conn.execute(
                text("SELECT pg_advisory_unlock(:c, :p)"),
                {"c": SYNC_LOCK_CLASS, "p": partnership_id},
            )


async def _pullable(engine: AsyncEngine, partnership_id: int) -> Partnership:
    async with AsyncSession(engine, expire_on_commit=False) as session:
        partnership = await session.get(Partnership, partnership_id)
    if (
        partnership is None
        or partnership.status != PartnershipStatus.ACTIVE.value
        or PartnerScope.AVAILABILITY.value not in partnership.granted_scopes
    ):
        raise SyncNotAllowed(partnership_id)
    return partnership


async def _fetch(
    client: FederationClient, partnership: Partnership, after: str | None, first: int
) -> tuple[ReceivedPage, list[dict[str, str]] | None]:
    result = await client.call(
        partnership.graphql_endpoint,
        partnership.keys,
        FEED_QUERY,
        {"after": after, "first": first},
        base_url=partnership.base_url,
    )
    return parse_page(result.data), result.refreshed.keys if result.refreshed else None


async def sync_partner(
    engine: AsyncEngine,
    client: FederationClient,
    partnership_id: int,
    *,
    page_size: int = FEED_MAX_PAGE,
    max_pages: int | None = None,
) -> SyncOutcome:
    """Pull the partner's feed from our cursor until it has nothing more (or `max_pages`),
    each page applied with its cursor in one transaction. The next page is fetched while
    the current one is applied. Raises SyncBusy / SyncNotAllowed; a failure of the partner
    ends the sync with `error` (recorded on the partnership, pages before it kept)."""
    outcome = SyncOutcome(partnership_id)
    async with sync_lock(engine, partnership_id):
        partnership = await _pullable(engine, partnership_id)
        cursor = partnership.feed_cursor
        pending: asyncio.Task[Any] | None = asyncio.create_task(
            _fetch(client, partnership, cursor, page_size)
        )
        try:
            while pending is not None:
                page, new_keys = await pending
                pending = None
                if page.has_more and (max_pages is None or outcome.pages + 1 < max_pages):
                    pending = asyncio.create_task(
                        _fetch(client, partnership, page.cursor, page_size)
                    )
                async with engine.begin() as conn:
                    if not await apply_page(conn, partnership_id, page, cursor):
                        raise SyncBusy(partnership_id)  # moved under us: stop, no harm done
                    if new_keys is not None:  # the partner rotated its key
                        await store_keys(conn, partnership_id, new_keys)
                cursor = page.cursor
                outcome.pages += 1
                outcome.changes_applied += page.size
        except PartnerError as exc:
            outcome.error = exc
        finally:
            if pending is not None:
                pending.cancel()
                with contextlib.suppress(BaseException):
                    await pending
        async with AsyncSession(engine) as session:
            await record_contact(session, partnership_id, outcome.error)
            # Windows that are over are of no use to anyone: drop them as we go.
            await session.execute(
                text(
                    "DELETE FROM partner_window WHERE partnership_id = :p "
                    "AND upper(during) <= now()"
                ),
                {"p": partnership_id},
            )
            await session.commit()
    return outcome


# --- the schedule ----------------------------------------------------------------------


async def due_partnerships(engine: AsyncEngine) -> list[int]:
    async with AsyncSession(engine) as session:
        rows = await session.scalars(
            select(Partnership.id)
            .where(
                Partnership.status == PartnershipStatus.ACTIVE.value,
                any_(Partnership.granted_scopes) == PartnerScope.AVAILABILITY.value,
            )
            .order_by(Partnership.id)
        )
        return list(rows)


async def sync_all(engine: AsyncEngine, client: FederationClient) -> list[SyncOutcome]:
    """One round: every ACTIVE partnership granting AVAILABILITY, one after the other."""
    outcomes = []
    for partnership_id in await due_partnerships(engine):
        try:
            outcome = await sync_partner(engine, client, partnership_id)
        except (SyncBusy, SyncNotAllowed):
            continue  # another process has it, or it changed since we listed it
        except Exception:  # noqa: BLE001 - one partner's failure must not stop the others
            log.exception("availability sync of partnership %s failed", partnership_id)
            continue
        if outcome.error is not None:
            # Also kept on the partnership (`lastError`); here for whoever reads the logs.
            log.warning(
                "availability sync of partnership %s failed: %s",
                partnership_id,
                outcome.error.summary(),
            )
        outcomes.append(outcome)
    return outcomes


class ScheduleLead:
    """Which process of the instance runs the schedule: the one holding a session-level
    advisory lock, on a connection of its own kept for as long as it leads. Every
    `coopnet serve` worker (and every process serving the same database) starts a
    scheduler; only the leader's makes rounds, so partners are pulled once per period,
    not once per process. When the leader stops or its connection drops, PostgreSQL
    releases the lock and another process takes the lead at its next period. Two leaders
    at once (a connection dropped unnoticed for a moment) would do no harm: each
    partnership's own lock (`sync_lock`) still lets one sync at a time."""

    def __init__(self, engine: AsyncEngine, key: int = SCHEDULE_LOCK_KEY) -> None:
        self.engine = engine
        self.key = key
        self._connection: AsyncConnection | None = None

    @property
    def leading(self) -> bool:
        return self._connection is not None

    async def claim(self) -> bool:
        """True while this process leads: keeps the lead it has (if its connection still
        answers), else tries to take it."""
        if self._connection is not None:
            try:
                await self._connection.execute(text("SELECT 1"))
                return True
            except Exception:  # noqa: BLE001 - the connection (and with it the lock) is gone
                log.warning("lost the lead of the availability sync schedule")
                await self._close()
        connection = await self.engine.connect()
        try:
            await connection.execution_options(isolation_level="AUTOCOMMIT")
            got = await connection.scalar(
                text("SELECT pg_try_advisory_lock(:c, :k)"), {"c": SYNC_LOCK_CLASS, "k": self.key}
            )
        except BaseException:
            await connection.close()
            raise
        if not got:
            await connection.close()
            return False
        self._connection = connection
        log.info("this process runs the availability sync schedule")
        return True

    async def _close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            # Never back to the pool: a pooled connection would keep the lock.
            with contextlib.suppress(Exception):
                await connection.invalidate()
            with contextlib.suppress(Exception):
                await connection.close()

    async def release(self) -> None:
        """Give the lead up (closing the connection releases the lock)."""
        await self._close()


async def run_schedule(
    engine: AsyncEngine,
    client: FederationClient,
    every_s: float,
    lead: ScheduleLead,
    on_round: Callable[[], None] | None = None,
) -> None:
    """Every `every_s` seconds, sync every due partnership if this process leads (see
    ScheduleLead), until cancelled."""
    while True:
        await asyncio.sleep(every_s)  # first round one period after start
        try:
            if not await lead.claim():
                continue
            await sync_all(engine, client)
            if on_round is not None:
                on_round()
        except Exception:  # noqa: BLE001 - keep the schedule alive (the database may be down)
            log.exception("availability sync round failed")


@dataclass
class SyncScheduler:
    """The background task the app starts in its lifespan (`start_sync_scheduler`).
    `rounds`: how many rounds this process has made (it makes them only while it leads)."""

    lead: ScheduleLead
    task: asyncio.Task[None] | None = None
    rounds: int = 0

    def _counted(self) -> None:
        self.rounds += 1

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
            self.task = None
        await self.lead.release()


def start_sync_scheduler(
    engine: AsyncEngine, client: FederationClient, every_s: float
) -> SyncScheduler:
    """Start pulling partners' feeds every `every_s` seconds (0: never), in whichever
    process of the instance leads the schedule."""
    scheduler = SyncScheduler(ScheduleLead(engine))
    if every_s > 0:
        scheduler.task = asyncio.create_task(
            run_schedule(engine, client, every_s, scheduler.lead, scheduler._counted),
            name="coopnet-sync-schedule",
        )
    return scheduler
