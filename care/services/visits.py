"""Visits on the rota: booking (one-off and weekly series), rescheduling, cancelling,
assigning a PA, confirmation by the person who received the visit, and the PA's optional
check-in.

Rules:
- Who manages the rota: admins, and coordinators of a cluster the service user belongs to
  (`may_manage_service_user`). Other roles may never book, move, cancel or assign visits
  (FORBIDDEN, checked before any record is read, so it reveals nothing). A visit or person
  the caller may not see is NOT_FOUND, exactly like an unknown id; one they can see but
  may not change is FORBIDDEN.
- Which PAs may be booked (a design choice): a PA on the team of one of the service user's
  clusters, or in a pool serving one of those clusters. Anyone else is INVALID: bringing a
  PA from outside goes through cover requests. The looser rule (any PA of the co-op) was
  rejected because it would let a booking send a stranger to someone's home without the
  cover process, and it would undermine continuity of care, which clusters exist for.
- Times: visits are booked ahead (the start may not be in the past: past records come from
  confirmations), end after they start and last at most 24 hours. Times given without an
  offset are Europe/London wall-clock times. A weekly series is laid out in London
  wall-clock time, so a 09:00 visit stays at 09:00 when the clocks change; its length is
  real elapsed time.
- Double-booking: a PA's time is checked here so the caller gets a message naming the
  clash; the exclusion constraint `visit_pa_no_overlap` stays the final guard (concurrent
  requests, other writers) and `run_mutation` turns its violation into OVERLAP. A PA who
  is away then cannot be booked either: the absence is named here (OVERLAP on paId), and
  the guard `pa_commitment_no_overlap` refuses the booking whatever (see docs/cover.md).
  A service user's own planned visits (scheduled, needing cover or completed) may not
  overlap either; no constraint covers that, so the person's profile row is locked while
  checking, which makes two concurrent bookings for one person run one after the other.
- Confirmation: a visit is confirmed by the person who received it or a linked carer, once
  it has started; never by staff (monitoring is not confirmation). Reporting that it did
  not take place marks it MISSED and records who said so.
- Check-in: optional, by the visit's own PA, from an hour before the start to the end.
  Nothing depends on it.
- Cancelling may give a reason (at most 500 characters), kept with the visit.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, Integer, column, exists, func, or_, select, values
from sqlalchemy.dialects.postgresql import TSTZRANGE, Range
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from care import policy
from care.enums import (
    ACTIVE_VISIT_STATUSES,
    LIVE_EXCHANGE_STATUSES,
    ExchangeSide,
    Role,
    VisitStatus,
)
from care.errors import DomainError, DomainErrors, ErrorCode, forbidden, not_found
from care.models import (
    MAX_VISIT_LENGTH,
    Absence,
    ClusterPa,
    ClusterServiceUser,
    CoverExchange,
    Member,
    PaProfile,
    PoolCluster,
    PoolPa,
    ServiceUserProfile,
    Visit,
)
from care.services.access import MANAGERS, may_manage_service_user
from care.viewer import Viewer

LONDON = ZoneInfo("Europe/London")
MAX_SERIES_DAYS = 26 * 7
MAX_SERIES_VISITS = 200
CHECK_IN_OPENS = dt.timedelta(hours=1)
MAX_REASON_LENGTH = 500

# Visits that hold a PA's time (exactly what the exclusion constraint covers).
PA_BUSY = tuple(s.value for s in ACTIVE_VISIT_STATUSES)
# Visits that are a person's planned or delivered care: two of them may not overlap.
PERSON_BOOKED = (*PA_BUSY, VisitStatus.NEEDS_COVER.value)
CHANGEABLE = (VisitStatus.SCHEDULED.value, VisitStatus.NEEDS_COVER.value)
CONFIRMERS = (Role.SERVICE_USER, Role.CARER)


@dataclass(frozen=True)
class Booking:
    """One visit to book; without a PA it is booked as needing cover."""

    service_user_id: int
    starts_at: dt.datetime
    ends_at: dt.datetime
    pa_id: int | None = None
    tasks: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class SeriesBooking:
    """Weekly visits on the given ISO weekdays (1 = Monday) at the London wall-clock time
    of `first_starts_at`, from its date until `until` (inclusive)."""

    service_user_id: int
    first_starts_at: dt.datetime
    duration_minutes: int
    weekdays: list[int]
    until: dt.date
    pa_id: int | None = None
    tasks: list[str] = field(default_factory=list)


TimeRange = tuple[dt.datetime, dt.datetime]


# --- small helpers -----------------------------------------------------------------------


def to_utc(value: dt.datetime) -> dt.datetime:
    """An aware UTC time; a naive one is London wall-clock time (a time that does not exist
    because the clocks went forward moves forward with them)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=LONDON)
    return value.astimezone(dt.UTC)


def describe(starts_at: dt.datetime, ends_at: dt.datetime) -> str:
    """'Tue 4 Mar 2025, 09:00 to 10:00' in UK time, for messages."""
    s, e = starts_at.astimezone(LONDON), ends_at.astimezone(LONDON)
    end = f"{e:%H:%M}" if e.date() == s.date() else f"{e:%a} {e.day} {e:%b %H:%M}"
    return f"{day_of(s)}, {s:%H:%M} to {end}"


def day_of(value: dt.datetime) -> str:
    local = value.astimezone(LONDON)
    return f"{local:%a} {local.day} {local:%b %Y}"


def status_word(status: str) -> str:
    """'needs cover' for NEEDS_COVER, for messages."""
    return status.lower().replace("_", " ")


def clean_tasks(tasks: Sequence[str]) -> list[str]:
    return [t.strip() for t in tasks if t.strip()]


def _raise_any(errors: list[DomainError]) -> None:
    if errors:
        raise DomainErrors(errors)


def visit_times(visit: Visit) -> TimeRange:
    """A stored visit's start and end (the `during_bounded` check makes both present)."""
    lower, upper = visit.during.lower, visit.during.upper
    assert lower is not None and upper is not None
    return lower, upper


def _during(starts_at: dt.datetime, ends_at: dt.datetime) -> Range[dt.datetime]:
    return Range(starts_at, ends_at, bounds="[)")


def range_errors(
    starts_at: dt.datetime, ends_at: dt.datetime, now: dt.datetime
) -> list[DomainError]:
    errors: list[DomainError] = []
    if ends_at <= starts_at:
        errors.append(
            DomainError(ErrorCode.INVALID_RANGE, "The end must be after the start.", "endsAt")
        )
    elif ends_at - starts_at > MAX_VISIT_LENGTH:
        errors.append(
            DomainError(ErrorCode.INVALID_RANGE, "A visit lasts at most 24 hours.", "endsAt")
        )
    if starts_at < now:
        errors.append(
            DomainError(
                ErrorCode.INVALID_RANGE,
                "Visits are booked ahead: this start is in the past. A visit that happened is "
                "recorded by its confirmation.",
                "startsAt",
            )
        )
    return errors


# --- who may act ---------------------------------------------------------------------------


def _require_rota_manager(viewer: Viewer) -> None:
    if viewer.role not in MANAGERS:
        raise forbidden("Only admins and coordinators manage the rota.")


async def _lock_service_user(session: AsyncSession, service_user_id: int) -> None:
    """Serialise bookings for one person so their overlap check cannot race. NO KEY UPDATE
    leaves foreign-key checks (other tables referencing the person) unblocked."""
    await session.execute(
        select(ServiceUserProfile.member_id)
        .where(ServiceUserProfile.member_id == service_user_id)
        .with_for_update(key_share=True)
    )


async def _managed_service_user(
    session: AsyncSession, viewer: Viewer, service_user_id: int
) -> None:
    _require_rota_manager(viewer)
    visible = await session.scalar(
        select(
            exists().where(
                ServiceUserProfile.member_id == service_user_id,
                Member.id == ServiceUserProfile.member_id,
                policy.member_visible(viewer),
            )
        )
    )
    if not visible:
        raise not_found("service user", "serviceUserId")
    if not await may_manage_service_user(session, viewer, service_user_id):
        raise forbidden(
            "Only admins and coordinators of this person's cluster may book their visits.",
            "serviceUserId",
        )
    await _lock_service_user(session, service_user_id)


async def _visible_visit(session: AsyncSession, viewer: Viewer, visit_id: int) -> Visit:
    """The visit, locked for this change; NOT_FOUND when unknown or hidden from the caller."""
    visit = await session.scalar(
        select(Visit)
        .where(Visit.id == visit_id, policy.visit_visible(viewer))
        .with_for_update(of=Visit)
        .execution_options(populate_existing=True)
    )
    if visit is None:
        raise not_found("visit")
    return visit


async def _managed_visit(session: AsyncSession, viewer: Viewer, visit_id: int) -> Visit:
    _require_rota_manager(viewer)
    visit = await _visible_visit(session, viewer, visit_id)
    if not await may_manage_service_user(session, viewer, visit.service_user_id):
        raise forbidden(
            "Only admins and coordinators of the person's cluster may change this visit.", "id"
        )
    return visit


# --- which PA, and clashes -----------------------------------------------------------------


def _serves(service_user_id: int, pa_id: int) -> ColumnElement[bool]:
    """The PA is on the team of one of the person's clusters or in a pool serving one."""
    clusters = select(ClusterServiceUser.cluster_id).where(
        ClusterServiceUser.service_user_id == service_user_id
    )
    pools = select(PoolCluster.pool_id).where(PoolCluster.cluster_id.in_(clusters))
    return or_(
        exists().where(ClusterPa.pa_id == pa_id, ClusterPa.cluster_id.in_(clusters)),
        exists().where(PoolPa.pa_id == pa_id, PoolPa.pool_id.in_(pools)),
    )


async def _pa_for(session: AsyncSession, service_user_id: int, pa_id: int) -> str:
    """The PA's name, once they are known to be an active PA who may work for this
    person."""
    row = (
        await session.execute(
            select(Member.name, Member.active, _serves(service_user_id, pa_id).label("serves"))
            .join(PaProfile, PaProfile.member_id == Member.id)
            .where(Member.id == pa_id)
        )
    ).first()
    if row is None:
        raise not_found("personal assistant", "paId")
    if not row.active:
        # Deactivated: their tokens no longer work, so they would never see the visit.
        raise DomainError(
            ErrorCode.INVALID, f"{row.name} is not active and cannot be booked.", "paId"
        )
    if not row.serves:
        raise DomainError(
            ErrorCode.INVALID,
            f"{row.name} is not on the team of this person's cluster or in a pool serving it. "
            "To bring in another PA, raise a cover request.",
            "paId",
        )
    return str(row.name)


async def _pa_name(session: AsyncSession, pa_id: int) -> str:
    return str(await session.scalar(select(Member.name).where(Member.id == pa_id)))


async def _clashes(
    session: AsyncSession,
    owner: InstrumentedAttribute[int] | InstrumentedAttribute[int | None],
    owner_id: int,
    ranges: Sequence[TimeRange],
    statuses: Sequence[str],
    exclude_id: int | None = None,
) -> list[tuple[int, dt.datetime, dt.datetime]]:
    """(index into `ranges`, start, end) of each existing visit overlapping a range: one
    statement for a whole series, with PostgreSQL's own range semantics."""
    wanted = values(column("n", Integer), column("r", TSTZRANGE), name="wanted").data(
        [(i, _during(s, e)) for i, (s, e) in enumerate(ranges)]
    )
    stmt = (
        select(wanted.c.n, func.lower(Visit.during), func.upper(Visit.during))
        .select_from(wanted)
        .join(Visit, Visit.during.op("&&")(wanted.c.r))
        .where(owner == owner_id, Visit.status.in_(statuses))
        .order_by(wanted.c.n, func.lower(Visit.during))
    )
    if exclude_id is not None:
        stmt = stmt.where(Visit.id != exclude_id)
    return [(r[0], r[1], r[2]) for r in (await session.execute(stmt)).all()]


async def _away(
    session: AsyncSession, pa_id: int, ranges: Sequence[TimeRange]
) -> list[tuple[int, dt.datetime, dt.datetime]]:
    """(index into `ranges`, start, end) of each active absence of the PA overlapping a
    range, in one statement: only to name the clash; the guard `pa_commitment_no_overlap`
    refuses the booking whatever this finds. Not the absence's kind: the caller may book
    a pool PA whose absences they may not read (only their busy time)."""
    wanted = values(column("n", Integer), column("r", TSTZRANGE), name="wanted").data(
        [(i, _during(s, e)) for i, (s, e) in enumerate(ranges)]
    )
    stmt = (
        select(wanted.c.n, func.lower(Absence.during), func.upper(Absence.during))
        .select_from(wanted)
        .join(Absence, Absence.during.op("&&")(wanted.c.r))
        .where(Absence.pa_id == pa_id, Absence.cancelled_at.is_(None))
        .order_by(wanted.c.n, func.lower(Absence.during))
    )
    return [(r[0], r[1], r[2]) for r in (await session.execute(stmt)).all()]


def _away_error(name: str, starts_at: dt.datetime, ends_at: dt.datetime) -> DomainError:
    return DomainError(
        ErrorCode.OVERLAP,
        f"{name} is away from {describe(starts_at, ends_at)} (UK time).",
        "paId",
    )


async def _single_overlaps(
    session: AsyncSession,
    service_user_id: int,
    pa: tuple[int, str] | None,
    when: TimeRange,
    exclude_id: int | None = None,
) -> list[DomainError]:
    errors: list[DomainError] = []
    if pa is not None:
        for _, s, e in await _clashes(session, Visit.pa_id, pa[0], [when], PA_BUSY, exclude_id):
            errors.append(
                DomainError(
                    ErrorCode.OVERLAP,
                    f"{pa[1]} already has a visit on {describe(s, e)} (UK time).",
                    "paId",
                )
            )
        errors += [_away_error(pa[1], s, e) for _, s, e in await _away(session, pa[0], [when])]
    person = await _clashes(
        session, Visit.service_user_id, service_user_id, [when], PERSON_BOOKED, exclude_id
    )
    for _, s, e in person:
        errors.append(
            DomainError(
                ErrorCode.OVERLAP,
                f"This person already has a visit on {describe(s, e)} (UK time).",
                "startsAt",
            )
        )
    return errors


# --- booking -------------------------------------------------------------------------------


async def schedule_visit(session: AsyncSession, viewer: Viewer, booking: Booking) -> int:
    await _managed_service_user(session, viewer, booking.service_user_id)
    starts_at, ends_at = to_utc(booking.starts_at), to_utc(booking.ends_at)
    errors = range_errors(starts_at, ends_at, viewer.now)
    pa: tuple[int, str] | None = None
    if booking.pa_id is not None:
        try:
            pa = (booking.pa_id, await _pa_for(session, booking.service_user_id, booking.pa_id))
        except DomainError as e:
            errors.append(e)
    _raise_any(errors)
    _raise_any(await _single_overlaps(session, booking.service_user_id, pa, (starts_at, ends_at)))
    visit = Visit(
        service_user_id=booking.service_user_id,
        pa_id=booking.pa_id,
        during=_during(starts_at, ends_at),
        tasks=clean_tasks(booking.tasks),
        status=(VisitStatus.NEEDS_COVER if pa is None else VisitStatus.SCHEDULED).value,
    )
    session.add(visit)
    await session.flush()  # the exclusion constraint speaks here if a race slipped through
    return visit.id


def _series_errors(
    series: SeriesBooking, first: dt.datetime, now: dt.datetime
) -> list[DomainError]:
    errors: list[DomainError] = []
    first_day = first.astimezone(LONDON).date()
    if not series.weekdays or any(d < 1 or d > 7 for d in series.weekdays):
        errors.append(
            DomainError(
                ErrorCode.INVALID,
                "Weekdays are 1 (Monday) to 7 (Sunday); give at least one.",
                "weekdays",
            )
        )
    elif first_day.isoweekday() not in series.weekdays:
        errors.append(
            DomainError(
                ErrorCode.INVALID,
                "The first visit must fall on one of the "
                f"chosen weekdays ({day_of(first)} does not).",
                "firstStartsAt",
            )
        )
    if not 0 < series.duration_minutes <= MAX_VISIT_LENGTH.total_seconds() // 60:
        errors.append(
            DomainError(
                ErrorCode.INVALID_RANGE,
                "A visit lasts more than 0 minutes and at most 24 hours.",
                "durationMinutes",
            )
        )
    if first < now:
        errors.append(
            DomainError(
                ErrorCode.INVALID_RANGE,
                "Visits are booked ahead: the first start is in the past.",
                "firstStartsAt",
            )
        )
    if series.until < first_day:
        errors.append(
            DomainError(
                ErrorCode.INVALID_RANGE,
                "The series must end on or after the day of the first visit.",
                "until",
            )
        )
    elif (series.until - first_day).days >= MAX_SERIES_DAYS:
        errors.append(
            DomainError(
                ErrorCode.INVALID,
                "A series runs for at most 26 weeks; book another series to go further.",
                "until",
            )
        )
    return errors


def series_ranges(series: SeriesBooking, first: dt.datetime) -> list[TimeRange]:
    """Each visit of the series: same London wall-clock start on every chosen weekday."""
    local = first.astimezone(LONDON)
    wall, day = local.time(), local.date()
    length = dt.timedelta(minutes=series.duration_minutes)
    weekdays = set(series.weekdays)
    out: list[TimeRange] = []
    while day <= series.until:
        if day.isoweekday() in weekdays:
            start = to_utc(dt.datetime.combine(day, wall))
            out.append((start, start + length))
        day += dt.timedelta(days=1)
    return out


def _check_series_shape(ranges: list[TimeRange]) -> None:
    if len(ranges) > MAX_SERIES_VISITS:
        raise DomainError(
            ErrorCode.INVALID, f"A series has at most {MAX_SERIES_VISITS} visits.", "until"
        )
    # Long visits on consecutive days can run into each other (more so across a clock change).
    for (_, prev_end), (start, _) in zip(ranges, ranges[1:], strict=False):
        if start < prev_end:
            raise DomainError(
                ErrorCode.INVALID_RANGE,
                "Visits of this series would overlap each other.",
                "durationMinutes",
            )


async def _series_overlaps(
    session: AsyncSession, series: SeriesBooking, pa_name: str | None, ranges: list[TimeRange]
) -> list[DomainError]:
    """All clashes of the series at once, naming the dates, so the caller can fix them."""
    errors: list[DomainError] = []
    if series.pa_id is not None:
        hits = await _clashes(session, Visit.pa_id, series.pa_id, ranges, PA_BUSY)
        if hits:
            dates = ", ".join(dict.fromkeys(day_of(ranges[n][0]) for n, _, _ in hits))
            errors.append(
                DomainError(
                    ErrorCode.OVERLAP,
                    f"{pa_name} already has visits at these times of the series: {dates}.",
                    "paId",
                )
            )
        away = await _away(session, series.pa_id, ranges)
        if away:
            dates = ", ".join(dict.fromkeys(day_of(ranges[n][0]) for n, _, _ in away))
            errors.append(
                DomainError(
                    ErrorCode.OVERLAP,
                    f"{pa_name} is away at these times of the series: {dates}.",
                    "paId",
                )
            )
    hits = await _clashes(
        session, Visit.service_user_id, series.service_user_id, ranges, PERSON_BOOKED
    )
    if hits:
        dates = ", ".join(dict.fromkeys(day_of(ranges[n][0]) for n, _, _ in hits))
        errors.append(
            DomainError(
                ErrorCode.OVERLAP,
                f"This person already has visits at these times of the series: {dates}.",
                "firstStartsAt",
            )
        )
    return errors


async def schedule_recurring_visits(
    session: AsyncSession, viewer: Viewer, series: SeriesBooking
) -> tuple[str, list[int]]:
    """Book a weekly series, all or nothing. Returns the series id and the visit ids."""
    await _managed_service_user(session, viewer, series.service_user_id)
    first = to_utc(series.first_starts_at)
    errors = _series_errors(series, first, viewer.now)
    pa_name: str | None = None
    if series.pa_id is not None:
        try:
            pa_name = await _pa_for(session, series.service_user_id, series.pa_id)
        except DomainError as e:
            errors.append(e)
    _raise_any(errors)
    ranges = series_ranges(series, first)
    _check_series_shape(ranges)
    _raise_any(await _series_overlaps(session, series, pa_name, ranges))
    series_id = str(uuid.uuid4())
    status = (VisitStatus.NEEDS_COVER if series.pa_id is None else VisitStatus.SCHEDULED).value
    tasks = clean_tasks(series.tasks)
    visits = [
        Visit(
            service_user_id=series.service_user_id,
            pa_id=series.pa_id,
            during=_during(s, e),
            tasks=list(tasks),
            status=status,
            series_id=series_id,
        )
        for s, e in ranges
    ]
    session.add_all(visits)
    await session.flush()
    return series_id, [v.id for v in visits]


# --- changing a visit ----------------------------------------------------------------------


async def reschedule_visit(
    session: AsyncSession,
    viewer: Viewer,
    visit_id: int,
    starts_at: dt.datetime,
    ends_at: dt.datetime,
) -> int:
    visit = await _managed_visit(session, viewer, visit_id)
    if visit.status not in CHANGEABLE:
        raise DomainError(
            ErrorCode.INVALID, f"A {status_word(visit.status)} visit cannot be rescheduled.", "id"
        )
    if await _partner_covers(session, visit.id):
        # The partner holds its PA for these times: moving them would leave it covering
        # the wrong visit.
        raise DomainError(
            ErrorCode.CLOSED,
            "A partner co-op is asked to cover this visit, or covers it: cancel that "
            "partner cover (cancelPartnerCover) before moving the visit.",
            "id",
        )
    starts_at, ends_at = to_utc(starts_at), to_utc(ends_at)
    _raise_any(range_errors(starts_at, ends_at, viewer.now))
    await _lock_service_user(session, visit.service_user_id)
    pa = None
    if visit.pa_id is not None:
        pa = (visit.pa_id, await _pa_name(session, visit.pa_id))
    _raise_any(
        await _single_overlaps(
            session, visit.service_user_id, pa, (starts_at, ends_at), exclude_id=visit.id
        )
    )
    visit.during = _during(starts_at, ends_at)
    await session.flush()
    return visit.id


async def _partner_covers(session: AsyncSession, visit_id: int) -> bool:
    """Is there a live cross-boundary cover exchange (held, accepted or confirmed) for the
    visit?"""
    return bool(
        await session.scalar(
            select(
                exists().where(
                    CoverExchange.visit_id == visit_id,
                    CoverExchange.side == ExchangeSide.REQUESTING.value,
                    CoverExchange.status.in_([s.value for s in LIVE_EXCHANGE_STATUSES]),
                )
            )
        )
    )


async def cancel_visit(
    session: AsyncSession, viewer: Viewer, visit_id: int, reason: str | None = None
) -> int:
    """Cancelling frees the PA's time: the exclusion constraint covers active visits only."""
    visit = await _managed_visit(session, viewer, visit_id)
    if visit.status not in CHANGEABLE:
        raise DomainError(
            ErrorCode.INVALID, f"A {status_word(visit.status)} visit cannot be cancelled.", "id"
        )
    if reason is not None and len(reason.strip()) > MAX_REASON_LENGTH:
        raise DomainError(
            ErrorCode.INVALID, f"Keep the reason under {MAX_REASON_LENGTH} characters.", "reason"
        )
    visit.status = VisitStatus.CANCELLED.value
    visit.cancel_reason = reason.strip() or None if reason is not None else None
    await session.flush()
    # Imported here: cover_requests builds on this module's helpers.
    from care.services.cover_requests import settle_for_visit

    await settle_for_visit(session, visit.id, filled_by_pa_id=None)
    return visit.id


async def assign_visit_pa(session: AsyncSession, viewer: Viewer, visit_id: int, pa_id: int) -> int:
    visit = await _managed_visit(session, viewer, visit_id)
    if visit.status not in CHANGEABLE:
        raise DomainError(
            ErrorCode.INVALID, f"A {status_word(visit.status)} visit cannot be given a PA.", "id"
        )
    name = await _pa_for(session, visit.service_user_id, pa_id)
    when = visit_times(visit)
    hits = await _clashes(session, Visit.pa_id, pa_id, [when], PA_BUSY, exclude_id=visit.id)
    _raise_any(
        [
            DomainError(
                ErrorCode.OVERLAP,
                f"{name} already has a visit on {describe(s, e)} (UK time).",
                "paId",
            )
            for _, s, e in hits
        ]
        + [_away_error(name, s, e) for _, s, e in await _away(session, pa_id, [when])]
    )
    visit.pa_id = pa_id
    visit.status = VisitStatus.SCHEDULED.value
    await session.flush()
    from care.services.cover_requests import settle_for_visit

    await settle_for_visit(session, visit.id, filled_by_pa_id=pa_id)
    return visit.id


# --- the person's confirmation and the PA's check-in ---------------------------------------


async def confirm_visit(
    session: AsyncSession, viewer: Viewer, visit_id: int, took_place: bool = True
) -> int:
    if viewer.role not in CONFIRMERS:
        raise forbidden("A visit is confirmed by the person who received it or their carer.", "id")
    visit = await _visible_visit(session, viewer, visit_id)
    if visit.confirmed_at is not None:
        raise DomainError(ErrorCode.INVALID, "This visit has already been confirmed.", "id")
    if visit.status != VisitStatus.SCHEDULED.value:
        raise DomainError(
            ErrorCode.INVALID, f"A {status_word(visit.status)} visit cannot be confirmed.", "id"
        )
    if visit_times(visit)[0] > viewer.now:
        raise DomainError(ErrorCode.INVALID, "A visit can be confirmed once it has started.", "id")
    visit.status = (VisitStatus.COMPLETED if took_place else VisitStatus.MISSED).value
    visit.confirmed_by_id = viewer.member_id
    visit.confirmed_at = viewer.now
    await session.flush()
    return visit.id


async def check_in_visit(session: AsyncSession, viewer: Viewer, visit_id: int) -> int:
    if viewer.role is not Role.PA:
        raise forbidden("Only the visit's PA may check in.", "id")
    visit = await _visible_visit(session, viewer, visit_id)
    if visit.pa_id != viewer.member_id:
        raise forbidden("Only the visit's PA may check in.", "id")
    if visit.checked_in_at is not None:
        raise DomainError(ErrorCode.INVALID, "You have already checked in to this visit.", "id")
    if visit.status not in PA_BUSY:
        raise DomainError(
            ErrorCode.INVALID, f"A {status_word(visit.status)} visit cannot be checked in to.", "id"
        )
    starts_at, ends_at = visit_times(visit)
    if not (starts_at - CHECK_IN_OPENS <= viewer.now <= ends_at):
        raise DomainError(
            ErrorCode.INVALID,
            "Check-in opens an hour before the visit and closes at its end.",
            "id",
        )
    visit.checked_in_at = viewer.now
    await session.flush()
    return visit.id
