"""PA availability: one-off windows and weekly patterns.

Weekly patterns (local wall-clock times in Europe/London) are expanded into concrete
`availability_window` rows up to `HORIZON` ahead, so every read and every match works on
plain ranges. `extend_weekly_availability` tops the expansion up as days pass.

Each pattern remembers the last local date it was expanded through
(`weekly_availability.expanded_through`), so a top-up only adds later dates and a window
removed as an exception to the pattern is never recreated.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from sqlalchemy import delete, exists, func, select, text, update
from sqlalchemy.dialects.postgresql import Range
from sqlalchemy.ext.asyncio import AsyncSession

from care.enums import Role
from care.errors import DomainError, DomainErrors, ErrorCode, forbidden, not_found
from care.models import AvailabilityWindow, PaProfile, WeeklyAvailability
from care.services.access import MANAGERS, may_manage_pa
from care.viewer import Viewer

LOCAL_ZONE_NAME = "Europe/London"
LOCAL_ZONE = ZoneInfo(LOCAL_ZONE_NAME)
HORIZON = dt.timedelta(weeks=8)  # how far ahead weekly patterns are expanded
MAX_WINDOW = dt.timedelta(hours=24)


@dataclass(frozen=True)
class Slot:
    """A weekly slot: ISO weekday (1 = Monday) and local start and end times."""

    weekday: int
    start_time: dt.time
    end_time: dt.time


@dataclass(frozen=True)
class WeeklyResult:
    slots: list[Slot]
    valid_from: dt.date
    valid_until: dt.date | None
    created: int
    skipped: int  # dates left out because the PA already had a window overlapping them


def local_today() -> dt.date:
    return dt.datetime.now(LOCAL_ZONE).date()


# --- who may act -----------------------------------------------------------------------


async def require_pa_access(session: AsyncSession, viewer: Viewer, pa_id: int) -> None:
    """A PA manages their own availability; admins anyone's; a coordinator that of the PAs
    on the team of a cluster they support (`may_manage_pa`). Other roles, and a PA acting
    for someone else, may never do this (FORBIDDEN, whoever the id is). Coordinators see
    every PA, so another cluster's PA is FORBIDDEN too."""
    own = viewer.role is Role.PA and viewer.member_id == pa_id
    if viewer.role not in MANAGERS and not own:
        raise forbidden("You may only change your own availability.", "paId")
    if not await session.scalar(select(exists().where(PaProfile.member_id == pa_id))):
        raise not_found("personal assistant", "paId")
    if not own and not await may_manage_pa(session, viewer, pa_id):
        raise forbidden(
            "Only admins and the coordinators of the PA's clusters may change their availability.",
            "paId",
        )


# --- one-off windows -----------------------------------------------------------------


def _window_errors(
    starts_at: dt.datetime, ends_at: dt.datetime, now: dt.datetime
) -> list[DomainError]:
    naive = [f for f, v in (("startsAt", starts_at), ("endsAt", ends_at)) if v.tzinfo is None]
    if naive:
        return [
            DomainError(ErrorCode.INVALID, "Give the time with its UTC offset.", f) for f in naive
        ]
    if ends_at <= starts_at:
        return [DomainError(ErrorCode.INVALID_RANGE, "The end must be after the start.", "endsAt")]
    errors = []
    if ends_at - starts_at > MAX_WINDOW:
        errors.append(
            DomainError(ErrorCode.INVALID_RANGE, "A window may last at most 24 hours.", "endsAt")
        )
    if ends_at <= now:
        errors.append(
            DomainError(ErrorCode.INVALID_RANGE, "The window is in the past.", "startsAt")
        )
    return errors


def _range(starts_at: dt.datetime, ends_at: dt.datetime) -> Range[dt.datetime]:
    return Range(starts_at, ends_at, bounds="[)")


async def _overlap_exists(session: AsyncSession, pa_id: int, during: Range[dt.datetime]) -> bool:
    return bool(
        await session.scalar(
            select(
                exists().where(
                    AvailabilityWindow.pa_id == pa_id, AvailabilityWindow.during.overlaps(during)
                )
            )
        )
    )


async def _absorb_neighbours(
    session: AsyncSession, pa_id: int, during: Range[dt.datetime]
) -> Range[dt.datetime]:
    """Delete the PA's windows overlapping or touching `during`; return the union."""
    result = await session.execute(
        delete(AvailabilityWindow)
        .where(
            AvailabilityWindow.pa_id == pa_id,
            AvailabilityWindow.during.overlaps(during)
            | AvailabilityWindow.during.adjacent_to(during),
        )
        .returning(func.lower(AvailabilityWindow.during), func.upper(AvailabilityWindow.during))
    )
    bounds = list(result.all())
    lower = min([during.lower, *(b[0] for b in bounds)])
    upper = max([during.upper, *(b[1] for b in bounds)])
    return _range(lower, upper)


async def add_window(
    session: AsyncSession,
    viewer: Viewer,
    pa_id: int,
    starts_at: dt.datetime,
    ends_at: dt.datetime,
    *,
    merge: bool = False,
) -> int:
    """Add a one-off window. With `merge`, windows it overlaps or touches are joined into
    it (the result is a one-off window) instead of the overlap being an error."""
    await require_pa_access(session, viewer, pa_id)
    errors = _window_errors(starts_at, ends_at, viewer.now)
    if errors:
        raise DomainErrors(errors)
    during = _range(starts_at, ends_at)
    if merge:
        during = await _absorb_neighbours(session, pa_id, during)
    elif await _overlap_exists(session, pa_id, during):
        raise DomainError(
            ErrorCode.OVERLAP, "This overlaps another availability window of the PA.", "startsAt"
        )
    window = AvailabilityWindow(pa_id=pa_id, during=during)
    session.add(window)
    await session.flush()  # the exclusion constraint is the last guard against a race
    return window.id


async def remove_window(session: AsyncSession, viewer: Viewer, window_id: int) -> int:
    """Remove a window; one expanded from a weekly pattern becomes an exception to it.
    Windows that have ended are kept as the record of what was offered."""
    if viewer.role not in (*MANAGERS, Role.PA):
        raise forbidden("You may only change your own availability.", "id")
    window = await session.get(AvailabilityWindow, window_id)
    # Another PA's window is not visible to a PA: indistinguishable from an unknown id.
    if window is None or (viewer.role is Role.PA and window.pa_id != viewer.member_id):
        raise not_found("availability window", "id")
    if viewer.role is not Role.PA and not await may_manage_pa(session, viewer, window.pa_id):
        raise forbidden(
            "Only admins and the coordinators of the PA's clusters may change their availability.",
            "id",
        )
    if window.during.upper is not None and window.during.upper <= viewer.now:
        raise DomainError(ErrorCode.INVALID, "A window that has ended cannot be removed.", "id")
    await session.delete(window)
    await session.flush()
    return window_id


# --- weekly patterns -----------------------------------------------------------------


def _slot_errors(slots: list[Slot]) -> list[DomainError]:
    errors: list[DomainError] = []
    for i, s in enumerate(slots):
        if not 1 <= s.weekday <= 7:
            errors.append(
                DomainError(
                    ErrorCode.INVALID,
                    "The weekday must be 1 (Monday) to 7 (Sunday).",
                    f"slots[{i}].weekday",
                )
            )
        if s.start_time.tzinfo is not None or s.end_time.tzinfo is not None:
            errors.append(
                DomainError(
                    ErrorCode.INVALID,
                    "Give local wall-clock times without an offset.",
                    f"slots[{i}]",
                )
            )
        elif s.end_time <= s.start_time:
            errors.append(
                DomainError(
                    ErrorCode.INVALID_RANGE,
                    "The end must be after the start (slots cannot run past midnight).",
                    f"slots[{i}].endTime",
                )
            )
    if not errors and _slots_overlap(slots):
        errors.append(DomainError(ErrorCode.OVERLAP, "Two slots overlap on the same day.", "slots"))
    return errors


def _slots_overlap(slots: list[Slot]) -> bool:
    ordered = sorted(slots, key=lambda s: (s.weekday, s.start_time))
    return any(
        a.weekday == b.weekday and b.start_time < a.end_time
        for a, b in zip(ordered, ordered[1:], strict=False)
    )


def _date_errors(valid_from: dt.date, valid_until: dt.date | None) -> list[DomainError]:
    if valid_until is not None and valid_until < valid_from:
        return [
            DomainError(
                ErrorCode.INVALID_RANGE, "validUntil must not be before validFrom.", "validUntil"
            )
        ]
    return []


async def _replace_patterns(
    session: AsyncSession,
    pa_id: int,
    slots: list[Slot],
    valid_from: dt.date,
    valid_until: dt.date | None,
    now: dt.datetime,
) -> list[Slot]:
    """Drop the PA's patterns and store the new ones. Windows that have started are kept
    (detached from the pattern); later ones go with the pattern (FK cascade)."""
    old = select(WeeklyAvailability.id).where(WeeklyAvailability.pa_id == pa_id)
    await session.execute(
        update(AvailabilityWindow)
        .where(
            AvailabilityWindow.weekly_availability_id.in_(old),
            func.lower(AvailabilityWindow.during) < now,
        )
        .values(weekly_availability_id=None)
    )
    await session.execute(delete(WeeklyAvailability).where(WeeklyAvailability.pa_id == pa_id))
    rows = [
        WeeklyAvailability(
            pa_id=pa_id,
            weekday=s.weekday,
            start_time=s.start_time,
            end_time=s.end_time,
            valid_from=valid_from,
            valid_until=valid_until,
        )
        for s in slots
    ]
    session.add_all(rows)
    await session.flush()
    return sorted(slots, key=lambda s: (s.weekday, s.start_time))


async def set_weekly_availability(
    session: AsyncSession,
    viewer: Viewer,
    pa_id: int,
    slots: list[Slot],
    valid_from: dt.date | None = None,
    valid_until: dt.date | None = None,
) -> WeeklyResult:
    """Replace the PA's weekly patterns (an empty list clears them) and expand them."""
    await require_pa_access(session, viewer, pa_id)
    start = valid_from or local_today()
    errors = _slot_errors(slots) + _date_errors(start, valid_until)
    if errors:
        raise DomainErrors(errors)
    stored = await _replace_patterns(session, pa_id, slots, start, valid_until, viewer.now)
    created, skipped = await _expand(session, local_today(), viewer.now, pa_id)
    return WeeklyResult(
        slots=stored, valid_from=start, valid_until=valid_until, created=created, skipped=skipped
    )


async def extend_weekly_availability(session: AsyncSession, today: dt.date | None = None) -> int:
    """Top up every PA's expansion to `today + HORIZON`; returns the windows created.
    Idempotent; the caller commits (run it at start and daily)."""
    created, _ = await _expand(session, today or local_today(), dt.datetime.now(dt.UTC), None)
    return created


# One statement expands patterns into windows. Per pattern it starts after the date it was
# last expanded through, at validFrom or today, whichever is later,
# and stops at validUntil or the horizon. Local date + time is converted with the zone, so
# 09:00 stays 09:00 on both sides of a clock change. Dates where the PA already has an
# overlapping window are skipped; ON CONFLICT DO NOTHING also skips any a concurrent
# writer added since (the exclusion constraint is the arbiter).
EXPAND_SQL = text("""
WITH pattern AS (
    SELECT w.id, w.pa_id, w.weekday, w.start_time, w.end_time,
           greatest(w.valid_from, CAST(:today AS date), w.expanded_through + 1) AS first_day,
           least(w.valid_until, CAST(:last_day AS date)) AS last_day
    FROM weekly_availability w
    WHERE CAST(:pa_id AS bigint) IS NULL OR w.pa_id = CAST(:pa_id AS bigint)
),
first_match AS (
    SELECT p.*,
           p.first_day + (p.weekday - extract(isodow FROM p.first_day)::int + 7) % 7 AS day0
    FROM pattern p
),
candidate AS (
    SELECT f.id AS pattern_id, f.pa_id,
           (f.day0 + 7 * k + f.start_time) AT TIME ZONE :zone AS starts_at,
           (f.day0 + 7 * k + f.end_time) AT TIME ZONE :zone AS ends_at
    FROM first_match f
    CROSS JOIN LATERAL generate_series(0, (f.last_day - f.day0) / 7) AS k
    WHERE f.day0 <= f.last_day
),
live AS (
    SELECT c.pattern_id, c.pa_id, tstzrange(c.starts_at, c.ends_at, '[)') AS during
    FROM candidate c
    -- a wall-clock slot inside a clock change can be empty; past windows are not offered
    WHERE c.starts_at < c.ends_at AND c.ends_at > CAST(:now AS timestamptz)
),
inserted AS (
    INSERT INTO availability_window (pa_id, during, weekly_availability_id)
    SELECT l.pa_id, l.during, l.pattern_id
    FROM live l
    WHERE NOT EXISTS (
        SELECT 1 FROM availability_window a WHERE a.pa_id = l.pa_id AND a.during && l.during
    )
    ON CONFLICT DO NOTHING
    RETURNING 1
),
advanced AS (
    UPDATE weekly_availability w SET expanded_through = p.last_day
    FROM pattern p
    WHERE w.id = p.id AND p.last_day >= p.first_day
    RETURNING 1
)
SELECT (SELECT count(*) FROM live) AS candidates, (SELECT count(*) FROM inserted) AS created,
       (SELECT count(*) FROM advanced) AS advanced
""")


async def _expand(
    session: AsyncSession, today: dt.date, now: dt.datetime, pa_id: int | None
) -> tuple[int, int]:
    """Expand patterns (one PA's, or everyone's); returns (created, skipped)."""
    row = (
        await session.execute(
            EXPAND_SQL,
            {
                "today": today,
                "last_day": today + HORIZON,
                "zone": LOCAL_ZONE_NAME,
                "now": now,
                "pa_id": pa_id,
            },
        )
    ).one()
    return int(row.created), int(row.candidates - row.created)
