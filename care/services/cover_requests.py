"""Cover requests: opening them (for an absence, by a coordinator, or when the person
reports that their PA did not turn up), giving visits back to their original PA, and
closing requests. Offers and acceptance live with the offer service.

Rules (see docs/cover.md, "Absences and cover requests"):
- A request opens only for a visit that can still be covered: its start is now or later.
  The one exception is a visit reported missed while under way (reason MISSED): the rest
  of it can still be saved, so it opens when at least `MIN_COVERABLE` of it remains.
  Otherwise the visit is marked MISSED and no request opens.
- Opening a request unassigns the visit's PA (status NEEDS_COVER, `pa_id` NULL: the check
  `needs_cover_unassigned` demands it) and records them as the request's original PA.
- A NEEDS_COVER visit has exactly one OPEN request, and an OPEN request's visit is
  NEEDS_COVER. At most one: the partial unique index `uq_cover_request_open_visit`
  (CONFLICT). At least one: a visit left needing cover without a request (booked without a
  PA, say) gets one at commit from the database (reason UNASSIGNED, migration 0017), so
  nothing here opens those. Whoever takes a visit out of NEEDS_COVER closes its request in
  the same transaction (`settle_for_visit`, acceptance, giving back): the database refuses
  the commit otherwise.
- Cancelling a request means no cover is sought: the visit is cancelled with it.
- Closing a request (RETURNED or CANCELLED) closes its open offers (status CLOSED).
- Every change publishes a cover event in the same transaction (sent at commit), with the
  clusters of the visit's service user so cluster subscribers can filter.

Many visits are changed with set-based statements: the number of statements a change runs
does not grow with the number of visits.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import (
    ARRAY,
    BigInteger,
    String,
    bindparam,
    cast,
    exists,
    func,
    insert,
    literal,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import Range
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from care import policy
from care.enums import (
    ACTIVE_VISIT_STATUSES,
    CoverOfferStatus,
    CoverReason,
    CoverRequestStatus,
    Role,
    VisitStatus,
)
from care.errors import DomainError, ErrorCode, forbidden, not_found
from care.events import CoverEvent, publish_all
from care.models import (
    Absence,
    ClusterServiceUser,
    CoverOffer,
    CoverRequest,
    Member,
    Visit,
)
from care.services.access import may_manage_service_user, require_manager
from care.services.visits import describe, status_word, visit_times
from care.viewer import Viewer

# Reported missed with less than this left, a visit is not worth covering: it is MISSED.
MIN_COVERABLE = dt.timedelta(minutes=15)
MAX_NOTE_LENGTH = 1000
# A visit cancelled because its cover request was (the request keeps the coordinator's note).
CANCELLED_WITH_REQUEST = "No cover: the cover request was cancelled."

OPEN = CoverRequestStatus.OPEN.value
PA_BUSY = tuple(s.value for s in ACTIVE_VISIT_STATUSES)
REPORTERS = (Role.SERVICE_USER, Role.CARER)


@dataclass(frozen=True)
class Touched:
    """A cover request a change opened or closed, and its visit."""

    request_id: int
    visit_id: int


@dataclass(frozen=True)
class Pending:
    """An event to publish once the change is complete (clusters are looked up at once)."""

    kind: str
    request_id: int
    visit_id: int
    offer_id: int | None = None
    pa_id: int | None = None


@dataclass(frozen=True)
class MissedReport:
    visit_id: int
    cover_request_id: int | None  # None: too little of the visit was left to cover


# --- small helpers -----------------------------------------------------------------------


def clean_note(note: str | None, field: str = "note") -> str | None:
    """A note without surrounding blanks; an empty note is no note."""
    if note is None or not note.strip():
        return None
    text = note.strip()
    if len(text) > MAX_NOTE_LENGTH:
        raise DomainError(
            ErrorCode.INVALID, f"Keep the note under {MAX_NOTE_LENGTH} characters.", field
        )
    return text


def _id_list(ids: Sequence[int]) -> list[int]:
    return sorted(set(ids))


# --- events ----------------------------------------------------------------------------


async def visit_clusters(session: AsyncSession, visit_ids: Sequence[int]) -> dict[int, list[int]]:
    """The clusters of each visit's service user, in one statement."""
    if not visit_ids:
        return {}
    rows = await session.execute(
        select(Visit.id, func.array_agg(ClusterServiceUser.cluster_id))
        .join(ClusterServiceUser, ClusterServiceUser.service_user_id == Visit.service_user_id)
        .where(Visit.id.in_(_id_list(visit_ids)))
        .group_by(Visit.id)
    )
    return {vid: sorted(clusters) for vid, clusters in rows.all()}


async def announce(session: AsyncSession, pending: Sequence[Pending]) -> None:
    """Publish the events in the current transaction (delivered at commit, in order): one
    statement for the clusters and one NOTIFY statement, however many events there are."""
    if not pending:
        return
    clusters = await visit_clusters(session, [p.visit_id for p in pending])
    await publish_all(
        session,
        [
            CoverEvent(
                kind=p.kind,
                cover_request_id=p.request_id,
                visit_id=p.visit_id,
                cluster_ids=clusters.get(p.visit_id, []),
                offer_id=p.offer_id,
                pa_id=p.pa_id,
            )
            for p in pending
        ],
    )


# --- set-based changes (used by absences and the single-request operations) ---------------


async def unassign_pa_visits(
    session: AsyncSession, *, pa_id: int, during: Range[dt.datetime], now: dt.datetime
) -> list[int]:
    """Every SCHEDULED visit of the PA overlapping `during` that has not started becomes
    NEEDS_COVER without a PA (one statement); their ids, soonest first. Run before the
    absence covering them is written: until then they hold the PA's time, and the guard
    `pa_commitment_no_overlap` would refuse the absence."""
    rows = (
        await session.execute(
            update(Visit)
            .where(
                Visit.pa_id == pa_id,
                Visit.status == VisitStatus.SCHEDULED.value,
                Visit.during.op("&&")(during),
                func.lower(Visit.during) >= now,
            )
            .values(status=VisitStatus.NEEDS_COVER.value, pa_id=None)
            .returning(Visit.id, func.lower(Visit.during).label("starts_at"))
            .execution_options(synchronize_session=False)
        )
    ).all()
    return [r.id for r in sorted(rows, key=lambda r: (r.starts_at, r.id))]


async def open_absence_requests(
    session: AsyncSession,
    *,
    visit_ids: Sequence[int],
    pa_id: int,
    absence_id: int,
    opened_by_id: int | None,
) -> list[Touched]:
    """An OPEN ABSENCE request for each of these visits (unassigned from the PA by
    `unassign_pa_visits`), ids in the visits' order: one statement, one parameter for all
    the visits."""
    if not visit_ids:
        return []
    ids = bindparam("visit_ids", list(visit_ids), type_=ARRAY(BigInteger))
    listed = func.unnest(ids).table_valued("visit_id", with_ordinality="n").render_derived()
    stmt = (
        insert(CoverRequest)
        .from_select(
            ["visit_id", "reason", "status", "absence_id", "original_pa_id", "opened_by_id"],
            select(
                listed.c.visit_id,
                literal(CoverReason.ABSENCE.value, String),
                literal(OPEN, String),
                literal(absence_id, BigInteger),
                literal(pa_id, BigInteger),
                cast(literal(opened_by_id), BigInteger),
            ).order_by(listed.c.n),
        )
        .returning(CoverRequest.id, CoverRequest.visit_id)
    )
    rows = (await session.execute(stmt)).all()
    return sorted((Touched(r.id, r.visit_id) for r in rows), key=lambda t: t.request_id)


async def close_open_offers(
    session: AsyncSession, request_ids: Sequence[int], now: dt.datetime
) -> list[Pending]:
    """Close the open offers of these requests (one statement); OFFER_CLOSED events."""
    if not request_ids:
        return []
    rows = (
        await session.execute(
            update(CoverOffer)
            .where(
                CoverOffer.cover_request_id == CoverRequest.id,
                CoverRequest.id.in_(_id_list(request_ids)),
                CoverOffer.status == CoverOfferStatus.OPEN.value,
            )
            .values(status=CoverOfferStatus.CLOSED.value, responded_at=now)
            .returning(
                CoverOffer.id, CoverOffer.cover_request_id, CoverOffer.pa_id, CoverRequest.visit_id
            )
        )
    ).all()
    return [
        Pending("OFFER_CLOSED", r.cover_request_id, r.visit_id, offer_id=r.id, pa_id=r.pa_id)
        for r in sorted(rows, key=lambda r: r.id)
    ]


def _without_mutual_overlaps(
    rows: Sequence[tuple[int, int, int, dt.datetime, dt.datetime]],
) -> list[tuple[int, int, int]]:
    """Drop candidates that overlap another candidate for the same PA (possible only if a
    visit was moved while it needed cover): giving both back would double-book the PA, so
    both stay open for a coordinator to decide."""
    clashing: set[int] = set()
    by_pa: dict[int, list[tuple[int, int, int, dt.datetime, dt.datetime]]] = {}
    for row in rows:
        by_pa.setdefault(row[2], []).append(row)
    for group in by_pa.values():
        group.sort(key=lambda r: r[3])
        latest_end: tuple[dt.datetime, int] | None = None
        for rid, _, _, start, end in group:
            if latest_end is not None and start < latest_end[0]:
                clashing.update((rid, latest_end[1]))
            if latest_end is None or end > latest_end[0]:
                latest_end = (end, rid)
    return [(rid, vid, pa) for rid, vid, pa, _, _ in rows if rid not in clashing]


async def return_to_original_pa(
    session: AsyncSession, absence_id: int, now: dt.datetime
) -> tuple[list[Touched], list[Pending]]:
    """Give back to their original PA the visits of this absence's OPEN requests that no
    active absence of that PA covers any more, when the PA is free then: the visit gets the
    PA again (SCHEDULED), the request is RETURNED, its open offers CLOSED. Visits that have
    started, and those whose PA got booked elsewhere or left the co-op, keep their open
    request. Runs a fixed number of statements whatever the number of visits; the
    exclusion constraint `visit_pa_no_overlap` stays the final guard against a race."""
    other = aliased(Visit)
    candidates = (
        await session.execute(
            select(
                CoverRequest.id,
                CoverRequest.visit_id,
                CoverRequest.original_pa_id,
                func.lower(Visit.during),
                func.upper(Visit.during),
            )
            .join(Visit, Visit.id == CoverRequest.visit_id)
            .join(Member, Member.id == CoverRequest.original_pa_id)
            .where(
                CoverRequest.absence_id == absence_id,
                CoverRequest.status == OPEN,
                Visit.status == VisitStatus.NEEDS_COVER.value,
                Visit.pa_id.is_(None),
                func.lower(Visit.during) >= now,
                Member.active.is_(True),
                ~exists().where(
                    Absence.pa_id == CoverRequest.original_pa_id,
                    Absence.cancelled_at.is_(None),
                    Absence.during.op("&&")(Visit.during),
                ),
                ~exists().where(
                    other.pa_id == CoverRequest.original_pa_id,
                    other.status.in_(PA_BUSY),
                    other.during.op("&&")(Visit.during),
                ),
            )
            .order_by(CoverRequest.id)
            .with_for_update(of=(CoverRequest, Visit))
        )
    ).all()
    chosen = _without_mutual_overlaps([tuple(r) for r in candidates])  # type: ignore[misc]
    if not chosen:
        return [], []
    request_ids = [rid for rid, _, _ in chosen]
    await session.execute(
        update(Visit)
        .where(Visit.id == CoverRequest.visit_id, CoverRequest.id.in_(request_ids))
        .values(pa_id=CoverRequest.original_pa_id, status=VisitStatus.SCHEDULED.value)
    )
    await session.execute(
        update(CoverRequest)
        .where(CoverRequest.id.in_(request_ids))
        .values(status=CoverRequestStatus.RETURNED.value, closed_at=now)
    )
    touched = [Touched(rid, vid) for rid, vid, _ in chosen]
    events = [Pending("REQUEST_RETURNED", t.request_id, t.visit_id) for t in touched]
    events += await close_open_offers(session, request_ids, now)
    return touched, events


# --- one request at a time ---------------------------------------------------------------


async def _managed_visit(session: AsyncSession, viewer: Viewer, visit_id: int, field: str) -> Visit:
    """The visit, locked; NOT_FOUND when unknown or hidden, FORBIDDEN when visible but the
    caller does not manage the person."""
    visit = await session.scalar(
        select(Visit)
        .where(Visit.id == visit_id, policy.visit_visible(viewer))
        .with_for_update(of=Visit)
        .execution_options(populate_existing=True)
    )
    if visit is None:
        raise not_found("visit", field)
    if not await may_manage_service_user(session, viewer, visit.service_user_id):
        raise forbidden(
            "Only admins and coordinators of the person's cluster manage cover for this visit.",
            field,
        )
    return visit


async def _has_open_request(session: AsyncSession, visit_id: int) -> bool:
    return bool(
        await session.scalar(
            select(exists().where(CoverRequest.visit_id == visit_id, CoverRequest.status == OPEN))
        )
    )


async def _open_one(
    session: AsyncSession,
    visit: Visit,
    reason: CoverReason,
    opened_by_id: int | None,
    note: str | None,
) -> int:
    """Unassign the visit's PA (if any) and open a request for it."""
    request = CoverRequest(
        visit_id=visit.id,
        reason=reason.value,
        status=OPEN,
        original_pa_id=visit.pa_id,
        opened_by_id=opened_by_id,
        note=note,
    )
    visit.pa_id = None
    visit.status = VisitStatus.NEEDS_COVER.value
    session.add(request)
    await session.flush()  # the partial unique index speaks here if a race slipped through
    await announce(session, [Pending("REQUEST_OPENED", request.id, visit.id)])
    return request.id


async def open_cover_request(
    session: AsyncSession, viewer: Viewer, visit_id: int, note: str | None = None
) -> int:
    """A coordinator of the person (or an admin) asks for cover for a future visit, e.g.
    because its PA has left. A booked PA is unassigned and recorded as the original PA."""
    require_manager(viewer, "Only admins and coordinators manage cover requests.")
    text = clean_note(note)
    visit = await _managed_visit(session, viewer, visit_id, "visitId")
    changeable = (VisitStatus.SCHEDULED.value, VisitStatus.NEEDS_COVER.value)
    if visit.status not in changeable:
        raise DomainError(
            ErrorCode.INVALID,
            f"A {status_word(visit.status)} visit cannot be covered.",
            "visitId",
        )
    starts_at, ends_at = visit_times(visit)
    if starts_at < viewer.now:
        raise DomainError(
            ErrorCode.INVALID,
            f"The visit on {describe(starts_at, ends_at)} (UK time) has already started: "
            "cover is arranged for visits that have not.",
            "visitId",
        )
    if await _has_open_request(session, visit.id):
        raise DomainError(
            ErrorCode.CONFLICT, "The visit already has an open cover request.", "visitId"
        )
    return await _open_one(session, visit, CoverReason.MANUAL, viewer.member_id, text)


async def cancel_cover_request(
    session: AsyncSession, viewer: Viewer, request_id: int, note: str | None = None
) -> int:
    """Stop looking for cover: the open request is CANCELLED with its open offers, and its
    visit, which would otherwise need cover with nobody looking, is cancelled too (a visit
    needing cover always has an open request). A note is added to the request's note."""
    require_manager(viewer, "Only admins and coordinators manage cover requests.")
    text = clean_note(note)
    visit_id = await session.scalar(
        select(CoverRequest.visit_id).where(
            CoverRequest.id == request_id, policy.cover_request_visible(viewer, CoverRequest)
        )
    )
    if visit_id is None:
        raise not_found("cover request")
    # The visit first, then the request: the order cancelVisit and assignVisitPa lock in.
    visit = await session.scalar(
        select(Visit)
        .where(Visit.id == visit_id)
        .with_for_update(of=Visit)
        .execution_options(populate_existing=True)
    )
    if visit is None or not await may_manage_service_user(session, viewer, visit.service_user_id):
        raise forbidden(
            "Only admins and coordinators of the person's cluster manage cover for this visit.",
            "id",
        )
    request = await session.scalar(
        select(CoverRequest)
        .where(CoverRequest.id == request_id)
        .with_for_update(of=CoverRequest)
        .execution_options(populate_existing=True)
    )
    if request is None or request.status != OPEN:
        status = request.status if request is not None else CoverRequestStatus.CANCELLED.value
        raise DomainError(
            ErrorCode.CLOSED, f"This cover request is already {status_word(status)}.", "id"
        )
    visit.status = VisitStatus.CANCELLED.value
    visit.cancel_reason = CANCELLED_WITH_REQUEST
    request.status = CoverRequestStatus.CANCELLED.value
    request.closed_at = viewer.now
    if text is not None:
        request.note = f"{request.note}\n{text}" if request.note else text
    await session.flush()
    events = [Pending("REQUEST_CANCELLED", request.id, request.visit_id)]
    events += await close_open_offers(session, [request.id], viewer.now)
    await announce(session, events)
    return request.id


async def report_visit_missed(session: AsyncSession, viewer: Viewer, visit_id: int) -> MissedReport:
    """The person (or a linked carer) reports that the PA has not turned up to a visit that
    is under way. With at least `MIN_COVERABLE` left the visit needs cover (the PA is
    unassigned) and a MISSED request opens; with less, the visit is MISSED. Confirmation
    fields are left alone: they record a visit that took place (confirmVisit)."""
    if viewer.role not in REPORTERS:
        raise forbidden(
            "A missed visit is reported by the person who should have received it or their carer.",
            "id",
        )
    visit = await session.scalar(
        select(Visit)
        .where(Visit.id == visit_id, policy.visit_visible(viewer))
        .with_for_update(of=Visit)
        .execution_options(populate_existing=True)
    )
    if visit is None:
        raise not_found("visit")
    if visit.status != VisitStatus.SCHEDULED.value or visit.pa_id is None:
        raise DomainError(
            ErrorCode.INVALID,
            f"Only a scheduled visit with a PA can be reported missed; this one is "
            f"{status_word(visit.status)}.",
            "id",
        )
    if visit.confirmed_at is not None:
        raise DomainError(ErrorCode.INVALID, "This visit has already been confirmed.", "id")
    starts_at, ends_at = visit_times(visit)
    if viewer.now < starts_at:
        raise DomainError(
            ErrorCode.INVALID, "A visit can be reported missed once it should have started.", "id"
        )
    if viewer.now >= ends_at:
        raise DomainError(
            ErrorCode.INVALID,
            "This visit has ended: say that it did not take place with confirmVisit "
            "(tookPlace: false).",
            "id",
        )
    if ends_at - viewer.now < MIN_COVERABLE:
        visit.status = VisitStatus.MISSED.value
        await session.flush()
        return MissedReport(visit.id, None)
    request_id = await _open_one(session, visit, CoverReason.MISSED, viewer.member_id, None)
    return MissedReport(visit.id, request_id)


async def settle_for_visit(
    session: AsyncSession, visit_id: int, *, filled_by_pa_id: int | None
) -> None:
    """The visit was given a PA directly, or cancelled, outside the cover process: its open
    request is FILLED by that PA (or CANCELLED) and its open offers are closed."""
    now = dt.datetime.now(dt.UTC)
    status = CoverRequestStatus.FILLED if filled_by_pa_id else CoverRequestStatus.CANCELLED
    rows = (
        await session.execute(
            update(CoverRequest)
            .where(
                CoverRequest.visit_id == visit_id,
                CoverRequest.status == CoverRequestStatus.OPEN.value,
            )
            .values(status=status.value, filled_by_pa_id=filled_by_pa_id, closed_at=now)
            .returning(CoverRequest.id)
        )
    ).all()
    if not rows:
        return
    request_id = rows[0].id
    kind = "REQUEST_FILLED" if filled_by_pa_id else "REQUEST_CANCELLED"
    closed = await close_open_offers(session, [request_id], now)
    await announce(session, [Pending(kind, request_id, visit_id), *closed])
