"""A PA's absences (holiday, sickness, training, other) and the cover they cause.

Rules (see docs/cover.md, "Absences and cover requests"):
- Who: a PA records and changes their own absences; admins anyone's; a coordinator those
  of the PAs on the team of a cluster they support (`may_manage_pa`): an absence hands
  the PA's visits in every cluster over for cover, so a coordinator of another cluster may
  not do it (FORBIDDEN: they see the PA). Other roles, and a PA acting for someone else,
  are FORBIDDEN before anything is read. An absence the caller may not see is NOT_FOUND,
  like an unknown id.
- Times: the end after the start, at most 366 days long. Times without an offset are
  Europe/London wall-clock times. An absence wholly in the past may be recorded (sickness
  written down afterwards): it is history and opens no cover requests.
- Active absences of one PA never overlap: checked here to name the clash (OVERLAP), with
  the exclusion constraint `absence_no_overlap` as the final guard.
- Recording an absence, in the same transaction: every SCHEDULED visit of the PA that
  overlaps it (even partly) and has not started becomes NEEDS_COVER without a PA, and an
  OPEN cover request (reason ABSENCE) opens for each. The visits are handed over before
  the absence is written: until then they hold the PA's time.
- A PA is never on a visit and away at once (the guard `pa_commitment_no_overlap`, one
  exclusion constraint over visits and absences, kept by triggers): an absence over a
  visit that has started or taken place (history, which is not handed over) is refused,
  naming it (OVERLAP). A booking committed meanwhile that this transaction could not see
  makes the guard refuse the absence: CONFLICT, and a retry hands that visit over.
- Extending an absence does the same for the visits it newly covers. Cancelling or
  shortening it returns each visit of its still OPEN requests that no active absence
  covers any more to the original PA, when that PA is free then (see
  `cover_requests.return_to_original_pa`), after the absence has changed; otherwise the
  request stays open. Requests already FILLED stay filled: cover was found.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from sqlalchemy import exists, func, or_, select
from sqlalchemy.dialects.postgresql import Range
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from care import policy
from care.enums import ACTIVE_VISIT_STATUSES, AbsenceKind, Role, VisitStatus
from care.errors import (
    DomainError,
    DomainErrors,
    ErrorCode,
    constraint_name,
    forbidden,
    not_found,
)
from care.models import PA_COMMITMENT_GUARD, Absence, Member, PaProfile, Visit
from care.services.access import MANAGERS, may_manage_pa
from care.services.cover_requests import (
    Pending,
    Touched,
    announce,
    clean_note,
    open_absence_requests,
    return_to_original_pa,
    unassign_pa_visits,
)
from care.services.visits import describe, to_utc
from care.viewer import Viewer

MAX_ABSENCE_LENGTH = dt.timedelta(days=366)
PA_BUSY = tuple(s.value for s in ACTIVE_VISIT_STATUSES)


@dataclass(frozen=True)
class NewAbsence:
    pa_id: int
    kind: AbsenceKind
    starts_at: dt.datetime
    ends_at: dt.datetime
    note: str | None = None


@dataclass(frozen=True)
class AbsenceChange:
    """Fields to change; None leaves a field as it is. An empty note clears the note."""

    starts_at: dt.datetime | None = None
    ends_at: dt.datetime | None = None
    note: str | None = None


@dataclass(frozen=True)
class AbsenceResult:
    absence_id: int
    opened: list[Touched] = field(default_factory=list)  # requests opened by this change
    returned: list[Touched] = field(default_factory=list)  # visits given back to the PA

    @property
    def cover_request_ids(self) -> list[int]:
        return sorted(t.request_id for t in [*self.opened, *self.returned])


# --- checks ------------------------------------------------------------------------------


def _require_absence_role(viewer: Viewer) -> None:
    if viewer.role not in (*MANAGERS, Role.PA):
        raise forbidden("Absences are recorded by the PA or by a coordinator.")


def _range_errors(starts_at: dt.datetime, ends_at: dt.datetime) -> list[DomainError]:
    if ends_at <= starts_at:
        return [DomainError(ErrorCode.INVALID_RANGE, "The end must be after the start.", "endsAt")]
    if ends_at - starts_at > MAX_ABSENCE_LENGTH:
        return [
            DomainError(
                ErrorCode.INVALID_RANGE,
                "An absence lasts at most 366 days; record a longer one in parts.",
                "endsAt",
            )
        ]
    return []


def _during(starts_at: dt.datetime, ends_at: dt.datetime) -> Range[dt.datetime]:
    return Range(starts_at, ends_at, bounds="[)")


async def _overlap_errors(
    session: AsyncSession,
    pa_id: int,
    during: Range[dt.datetime],
    exclude_id: int | None = None,
) -> list[DomainError]:
    stmt = (
        select(Absence.kind, func.lower(Absence.during), func.upper(Absence.during))
        .where(
            Absence.pa_id == pa_id,
            Absence.cancelled_at.is_(None),
            Absence.during.op("&&")(during),
        )
        .order_by(func.lower(Absence.during))
    )
    if exclude_id is not None:
        stmt = stmt.where(Absence.id != exclude_id)
    return [
        DomainError(
            ErrorCode.OVERLAP,
            f"This overlaps another absence of the PA ({kind.lower()}, "
            f"{describe(start, end)} UK time).",
            "startsAt",
        )
        for kind, start, end in (await session.execute(stmt)).all()
    ]


async def _held_visit_errors(
    session: AsyncSession, pa_id: int, during: Range[dt.datetime], now: dt.datetime
) -> list[DomainError]:
    """The PA's visits in the absence that it cannot hand over: completed ones, and
    scheduled ones that have started. A PA is never on a visit and away at once (the guard
    `pa_commitment_no_overlap`), so these are refused, named, rather than left in it."""
    stmt = (
        select(Visit.status, func.lower(Visit.during), func.upper(Visit.during))
        .where(
            Visit.pa_id == pa_id,
            Visit.status.in_(PA_BUSY),
            Visit.during.op("&&")(during),
            or_(
                Visit.status != VisitStatus.SCHEDULED.value,
                func.lower(Visit.during) < now,
            ),
        )
        .order_by(func.lower(Visit.during))
    )
    return [
        DomainError(
            ErrorCode.OVERLAP,
            f"The PA has a {'completed' if status == VisitStatus.COMPLETED.value else 'started'}"
            f" visit on {describe(start, end)} (UK time) in this absence. Start or end the "
            "absence around it, or first record that the visit did not take place.",
            "startsAt",
        )
        for status, start, end in (await session.execute(stmt)).all()
    ]


async def _flush_guarded(session: AsyncSession, field: str) -> None:
    """Write the absence. `absence_no_overlap` speaks if another absence slipped through;
    `pa_commitment_no_overlap` if the PA was booked meanwhile by a transaction this one
    could not see: retrying then hands that visit over for cover."""
    try:
        await session.flush()
    except IntegrityError as exc:
        if constraint_name(exc) == PA_COMMITMENT_GUARD:
            raise DomainError(
                ErrorCode.CONFLICT,
                "The PA has just been booked at this time: try again.",
                field,
            ) from exc
        raise


async def _require_pa(session: AsyncSession, viewer: Viewer, pa_id: int) -> None:
    own = viewer.role is Role.PA and viewer.member_id == pa_id
    if viewer.role not in MANAGERS and not own:
        raise forbidden("A PA records only their own absences.", "paId")
    found = await session.scalar(
        select(
            exists().where(
                PaProfile.member_id == pa_id,
                Member.id == PaProfile.member_id,
                policy.member_visible(viewer),
            )
        )
    )
    if not found:
        raise not_found("personal assistant", "paId")
    if not own and not await may_manage_pa(session, viewer, pa_id):
        raise forbidden(
            "Only admins and the coordinators of the PA's clusters may record their absences.",
            "paId",
        )


async def _visible_absence(session: AsyncSession, viewer: Viewer, absence_id: int) -> Absence:
    """The absence, locked for this change; NOT_FOUND when unknown or hidden; CLOSED when
    it was cancelled."""
    _require_absence_role(viewer)
    absence = await session.scalar(
        select(Absence)
        .where(Absence.id == absence_id, policy.absence_visible(viewer, Absence))
        .with_for_update(of=Absence)
        .execution_options(populate_existing=True)
    )
    if absence is None:
        raise not_found("absence")
    own = viewer.role is Role.PA and absence.pa_id == viewer.member_id
    if not own and not await may_manage_pa(session, viewer, absence.pa_id):
        raise forbidden(
            "Only admins and the coordinators of the PA's clusters may change their absences.",
            "id",
        )
    if absence.cancelled_at is not None:
        raise DomainError(ErrorCode.CLOSED, "This absence has been cancelled.", "id")
    return absence


def _may_change_note(viewer: Viewer, absence: Absence) -> bool:
    """Those who read the note (`policy.absence_note_visible`: the PA, admins), and a
    coordinator who recorded the absence (the note, if any, is theirs)."""
    if viewer.role is Role.ADMIN:
        return True
    return viewer.member_id is not None and viewer.member_id in (
        absence.pa_id if viewer.role is Role.PA else None,
        absence.recorded_by_id,
    )


def _bounds(absence: Absence) -> tuple[dt.datetime, dt.datetime]:
    lower, upper = absence.during.lower, absence.during.upper
    assert lower is not None and upper is not None  # the during_bounded check
    return lower, upper


# --- the operations ----------------------------------------------------------------------


async def record_absence(session: AsyncSession, viewer: Viewer, new: NewAbsence) -> AbsenceResult:
    await _require_pa(session, viewer, new.pa_id)
    starts_at, ends_at = to_utc(new.starts_at), to_utc(new.ends_at)
    errors = _range_errors(starts_at, ends_at)
    try:
        note = clean_note(new.note)
    except DomainError as e:
        errors.append(e)
    if errors:
        raise DomainErrors(errors)
    during = _during(starts_at, ends_at)
    overlaps = await _overlap_errors(session, new.pa_id, during)
    overlaps += await _held_visit_errors(session, new.pa_id, during, viewer.now)
    if overlaps:
        raise DomainErrors(overlaps)
    # The PA's visits in the absence are handed over first: until then they hold the PA's
    # time, and the guard would refuse the absence.
    moved = await unassign_pa_visits(session, pa_id=new.pa_id, during=during, now=viewer.now)
    absence = Absence(
        pa_id=new.pa_id,
        kind=new.kind.value,
        during=during,
        note=note,
        recorded_by_id=viewer.member_id,
    )
    session.add(absence)
    await _flush_guarded(session, "paId")
    opened = await open_absence_requests(
        session,
        visit_ids=moved,
        pa_id=new.pa_id,
        absence_id=absence.id,
        opened_by_id=viewer.member_id,
    )
    await announce(session, [Pending("REQUEST_OPENED", t.request_id, t.visit_id) for t in opened])
    return AbsenceResult(absence.id, opened=opened)


async def update_absence(
    session: AsyncSession, viewer: Viewer, absence_id: int, change: AbsenceChange
) -> AbsenceResult:
    """Move either end (shorten or extend) and/or change the note."""
    absence = await _visible_absence(session, viewer, absence_id)
    if change.note is not None and not _may_change_note(viewer, absence):
        # The note may hold health details that only the PA and admins read
        # (`policy.absence_note_visible`): nobody else replaces or blanks it unseen.
        raise forbidden(
            "Only the PA, admins and whoever recorded the absence change its note.", "note"
        )
    old_start, old_end = _bounds(absence)
    starts_at = to_utc(change.starts_at) if change.starts_at is not None else old_start
    ends_at = to_utc(change.ends_at) if change.ends_at is not None else old_end
    errors = _range_errors(starts_at, ends_at)
    note: str | None = None
    try:
        note = clean_note(change.note)
    except DomainError as e:
        errors.append(e)
    if errors:
        raise DomainErrors(errors)
    during = _during(starts_at, ends_at)
    if (starts_at, ends_at) != (old_start, old_end):
        overlaps = await _overlap_errors(session, absence.pa_id, during, exclude_id=absence.id)
        overlaps += await _held_visit_errors(session, absence.pa_id, during, viewer.now)
        if overlaps:
            raise DomainErrors(overlaps)
    if change.note is not None:
        absence.note = note
    if (starts_at, ends_at) == (old_start, old_end):
        await session.flush()
        return AbsenceResult(absence.id)
    # Visits newly covered are handed over before the absence grows over them; visits no
    # longer covered go back to the PA after it has shrunk (the guard sees each step).
    moved = await unassign_pa_visits(session, pa_id=absence.pa_id, during=during, now=viewer.now)
    absence.during = during
    await _flush_guarded(session, "id")
    returned, events = await return_to_original_pa(session, absence.id, viewer.now)
    opened = await open_absence_requests(
        session,
        visit_ids=moved,
        pa_id=absence.pa_id,
        absence_id=absence.id,
        opened_by_id=viewer.member_id,
    )
    events += [Pending("REQUEST_OPENED", t.request_id, t.visit_id) for t in opened]
    await announce(session, events)
    return AbsenceResult(absence.id, opened=opened, returned=returned)


async def cancel_absence(session: AsyncSession, viewer: Viewer, absence_id: int) -> AbsenceResult:
    """The PA will be there after all: the absence is cancelled (kept, with `cancelled_at`)
    and its uncovered visits go back to the PA where they are free."""
    absence = await _visible_absence(session, viewer, absence_id)
    absence.cancelled_at = viewer.now
    await session.flush()
    returned, events = await return_to_original_pa(session, absence.id, viewer.now)
    await announce(session, events)
    return AbsenceResult(absence.id, returned=returned)
