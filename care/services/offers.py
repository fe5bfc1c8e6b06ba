"""Cover offers: a coordinator offers a cover request to PAs, a PA accepts or declines, and
the first valid acceptance wins.

Rules (see docs/cover.md, "Offers and acceptance"):
- Who offers and withdraws: admins, and coordinators of a cluster the visit's service user
  belongs to. Other roles are FORBIDDEN before anything is read; a request or offer the
  caller may not see is NOT_FOUND, exactly like an unknown id.
- To whom: explicit PAs, or every PA of a cluster or of a pool (exactly one of the three).
  Only cover candidates may be offered the cover: the hard rules of `care.candidates`
  (availability containing the visit, no overlapping visit or absence, skills, DBS check,
  travel distance, Working Time), evaluated by its one statement. Explicit PAs who are
  not candidates fail the whole call (INVALID, naming them); for a cluster or pool they
  are skipped and counted. A PA who already holds a live open offer for the request is
  skipped too.
- Expiry: `expiresInMinutes`, else the co-op's `cover_offer_ttl_minutes`, 5 minutes to 7
  days. An open offer past its expiry counts as EXPIRED without anyone writing it; it is
  written as EXPIRED when the request is offered again to that PA or filled.
- Acceptance and declining: only by the PA the offer is addressed to; for anyone else it
  does not exist (NOT_FOUND). The cover request row is locked first (SELECT ... FOR
  UPDATE), so of many concurrent acceptances for one request exactly one finds it open.
  The winner's visit gets the PA and becomes SCHEDULED, the request FILLED, the offer
  ACCEPTED and every other open offer of the request CLOSED, in one transaction.
- No double-booking: the PA's other visits and absences are checked first (CONFLICT with
  a message naming the clash), then that the PA is still a candidate (availability,
  skills or Working Time may have changed since the offer; CONFLICT too). Acceptances of
  one PA for different, overlapping visits lock different requests and can pass those
  checks together; the exclusion constraint `visit_pa_no_overlap` then stops all but the
  first to commit, and its violation is turned into a typed CONFLICT here. Likewise an
  absence of the PA committed meanwhile: the guard `pa_commitment_no_overlap` (visits and
  absences under one exclusion constraint) refuses the booking, a CONFLICT too.
- Lock order, the same in every function here: cover request, then visit, then offers.

Every change publishes `CoverEvent`s inside the transaction (sent at commit).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from sqlalchemy import Select, exists, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from care import policy
from care.candidates import (
    Exclusion,
    candidates_statement,
    exclusion_from_row,
    exclusions_statement,
)
from care.enums import (
    ACTIVE_VISIT_STATUSES,
    CommitmentKind,
    CoverOfferStatus,
    CoverRequestStatus,
    Role,
    VisitStatus,
)
from care.errors import (
    DomainError,
    DomainErrors,
    ErrorCode,
    constraint_name,
    forbidden,
    not_found,
)
from care.events import CoverEvent, publish, publish_all
from care.models import (
    PA_COMMITMENT_GUARD,
    Absence,
    Cluster,
    ClusterPa,
    Coop,
    CoverOffer,
    CoverRequest,
    Member,
    PaCommitment,
    PaProfile,
    Pool,
    PoolPa,
    Visit,
)
from care.services.access import may_manage_service_user, require_manager
from care.services.cover_requests import visit_clusters
from care.services.visits import LONDON, day_of, describe, status_word
from care.viewer import Viewer

MIN_TTL_MINUTES = 5
MAX_TTL_MINUTES = 7 * 24 * 60
DEFAULT_TTL_MINUTES = 120  # when the co-op row is missing (it never is in production)
MAX_PA_IDS = 100
DOUBLE_BOOKING_CONSTRAINT = "visit_pa_no_overlap"

PA_BUSY = tuple(s.value for s in ACTIVE_VISIT_STATUSES)
OPEN = CoverOfferStatus.OPEN.value


# An answer to one offer: (session, viewer, offer id) -> offer id.
OfferAction = Callable[[AsyncSession, Viewer, int], Awaitable[int]]


@dataclass(frozen=True)
class OfferTarget:
    """Who gets the offer: exactly one of the three."""

    pa_ids: Sequence[int] | None = None
    cluster_id: int | None = None
    pool_id: int | None = None


@dataclass(frozen=True)
class SkippedPa:
    """A PA of the cluster or pool offered to who got no offer, and why."""

    pa_id: int
    reason: str  # NOT_A_CANDIDATE or ALREADY_OFFERED
    # For NOT_A_CANDIDATE: the hard rules the PA fails (care.candidates.EXCLUSION_RULES).
    exclusion: Exclusion | None = None


@dataclass(frozen=True)
class OfferResult:
    offer_ids: list[int]
    skipped: int  # PAs of the target who got no offer (not candidates, or already offered)
    skipped_pas: list[SkippedPa] = field(default_factory=list)  # the same PAs, by PA id


# --- reading and locking -----------------------------------------------------------------


def _require_pa(viewer: Viewer) -> int:
    if viewer.role is not Role.PA or viewer.member_id is None:
        raise forbidden("Only the PA the offer was made to may answer it.")
    return viewer.member_id


async def _lock_request(session: AsyncSession, request_id: int) -> CoverRequest:
    """The request, locked until the transaction ends, as last committed."""
    request = await session.scalar(
        select(CoverRequest)
        .where(CoverRequest.id == request_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if request is None:  # deleted with its visit in between
        raise not_found("cover request")
    return request


async def _lock_visit(session: AsyncSession, visit_id: int) -> Visit:
    visit = await session.scalar(
        select(Visit)
        .where(Visit.id == visit_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if visit is None:
        raise not_found("visit")
    return visit


async def _lock_offer(session: AsyncSession, offer_id: int) -> CoverOffer:
    offer = await session.scalar(
        select(CoverOffer)
        .where(CoverOffer.id == offer_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if offer is None:
        raise not_found("cover offer")
    return offer


async def _cluster_ids(session: AsyncSession, visit_id: int) -> list[int]:
    return (await visit_clusters(session, [visit_id])).get(visit_id, [])


def _visit_end(visit: Visit) -> dt.datetime:
    upper = visit.during.upper
    assert upper is not None  # the during_bounded check
    return upper


def _closed(message: str, field: str | None = "id") -> DomainError:
    return DomainError(ErrorCode.CLOSED, message, field)


REQUEST_NOT_OPEN = {
    CoverRequestStatus.FILLED.value: "This visit has already been covered.",
    CoverRequestStatus.RETURNED.value: "This visit went back to its own PA: no cover is needed.",
    CoverRequestStatus.CANCELLED.value: "This cover request was cancelled.",
}

OFFER_NOT_OPEN = {
    CoverOfferStatus.ACCEPTED.value: "This offer has already been accepted.",
    CoverOfferStatus.DECLINED.value: "This offer was declined.",
    CoverOfferStatus.WITHDRAWN.value: "This offer was withdrawn.",
    CoverOfferStatus.CLOSED.value: "This offer is closed: the visit no longer needs it.",
    CoverOfferStatus.EXPIRED.value: "This offer expired.",
}


def _check_request_open(request: CoverRequest, field: str | None = "id") -> None:
    if request.status != CoverRequestStatus.OPEN.value:
        raise _closed(REQUEST_NOT_OPEN.get(request.status, "This cover request is closed."), field)


def _check_offer_open(offer: CoverOffer, now: dt.datetime) -> None:
    if offer.status != OPEN:
        raise _closed(OFFER_NOT_OPEN.get(offer.status, "This offer is closed."))
    if offer.expires_at <= now:
        local = offer.expires_at.astimezone(LONDON)
        raise _closed(f"This offer expired at {local:%H:%M} on {day_of(local)} (UK time).")


def _check_visit_coverable(visit: Visit, now: dt.datetime, field: str | None = "id") -> None:
    if visit.status != VisitStatus.NEEDS_COVER.value or visit.pa_id is not None:
        raise _closed(f"The visit is {status_word(visit.status)}: it no longer needs cover.", field)
    # A visit under way can still be saved (a missed visit opens a request while it is).
    if _visit_end(visit) <= now:
        raise _closed("The visit is over.", field)


# --- candidates ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Pa:
    id: int
    name: str


async def _pas(session: AsyncSession, members: Select | Sequence[int]) -> list[Pa]:
    rows = await session.execute(
        select(PaProfile.member_id, Member.name)
        .join(Member, Member.id == PaProfile.member_id)
        .where(PaProfile.member_id.in_(members))
        .order_by(PaProfile.member_id)
    )
    return [Pa(r.member_id, r.name) for r in rows]


async def candidate_ids(
    session: AsyncSession, viewer: Viewer, visit_id: int, pa_ids: Sequence[int]
) -> set[int]:
    """Which of these PAs are cover candidates for the visit: every hard rule of
    `care.candidates` (availability, no clash or absence, skills, DBS, travel, Working
    Time), in its one statement."""
    if not pa_ids:
        return set()
    stmt = candidates_statement(viewer, visit_id, limit=None, pa_ids=pa_ids)
    return {int(r.pa_id) for r in await session.execute(stmt)}


# --- offering ------------------------------------------------------------------------------


def _target_errors(target: OfferTarget, minutes: int | None) -> list[DomainError]:
    errors: list[DomainError] = []
    given = [
        name
        for name, value in (
            ("paIds", target.pa_ids),
            ("clusterId", target.cluster_id),
            ("poolId", target.pool_id),
        )
        if value is not None
    ]
    if not given:
        errors.append(
            DomainError(ErrorCode.REQUIRED, "Offer to some PAs, a cluster or a pool.", "paIds")
        )
    elif len(given) > 1:
        errors.append(
            DomainError(
                ErrorCode.INVALID,
                "Offer to PAs, a cluster or a pool: only one of them.",
                given[1],
            )
        )
    elif target.pa_ids is not None and not target.pa_ids:
        errors.append(DomainError(ErrorCode.REQUIRED, "Name at least one PA.", "paIds"))
    elif target.pa_ids is not None and len(set(target.pa_ids)) > MAX_PA_IDS:
        errors.append(
            DomainError(
                ErrorCode.INVALID,
                f"Offer to at most {MAX_PA_IDS} PAs at once, or to a cluster or pool.",
                "paIds",
            )
        )
    if minutes is not None and not MIN_TTL_MINUTES <= minutes <= MAX_TTL_MINUTES:
        errors.append(
            DomainError(
                ErrorCode.INVALID,
                f"An offer lasts {MIN_TTL_MINUTES} minutes to {MAX_TTL_MINUTES // 1440} days "
                f"({MIN_TTL_MINUTES} to {MAX_TTL_MINUTES} minutes).",
                "expiresInMinutes",
            )
        )
    return errors


async def _visible_request(session: AsyncSession, viewer: Viewer, request_id: int) -> int:
    """The visit id of a request the viewer may see (NOT_FOUND otherwise)."""
    visit_id = await session.scalar(
        select(CoverRequest.visit_id).where(
            CoverRequest.id == request_id, policy.cover_request_visible(viewer, CoverRequest)
        )
    )
    if visit_id is None:
        raise not_found("cover request", "coverRequestId")
    return int(visit_id)


async def _target_pas(
    session: AsyncSession, viewer: Viewer, visit_id: int, target: OfferTarget
) -> tuple[list[int], list[int]]:
    """The ids of the candidates to offer to, and the target's PAs left out for not being
    candidates."""
    if target.pa_ids is not None:
        wanted = sorted(set(target.pa_ids))
        found = await _pas(session, wanted)
        missing = len(wanted) - len(found)
        if missing:
            raise DomainError(
                ErrorCode.NOT_FOUND,
                "No personal assistant with that id."
                if missing == 1
                else f"{missing} of these ids are not personal assistants.",
                "paIds",
            )
        eligible = await candidate_ids(session, viewer, visit_id, wanted)
        refused = [p.name for p in found if p.id not in eligible]
        if refused:
            raise DomainError(
                ErrorCode.INVALID,
                f"Not candidates for this visit, so nothing was offered: {', '.join(refused)}. "
                "coverCandidates lists who can take it.",
                "paIds",
            )
        return wanted, []
    members: Select
    if target.cluster_id is not None:
        if not await session.scalar(select(exists().where(Cluster.id == target.cluster_id))):
            raise not_found("cluster", "clusterId")
        members = select(ClusterPa.pa_id).where(ClusterPa.cluster_id == target.cluster_id)
    else:
        if not await session.scalar(select(exists().where(Pool.id == target.pool_id))):
            raise not_found("pool", "poolId")
        members = select(PoolPa.pa_id).where(PoolPa.pool_id == target.pool_id)
    everyone = [p.id for p in await _pas(session, members)]
    eligible = await candidate_ids(session, viewer, visit_id, everyone)
    chosen = [i for i in everyone if i in eligible]
    return chosen, [i for i in everyone if i not in eligible]


async def _why_not(
    session: AsyncSession, viewer: Viewer, visit_id: int, pa_ids: Sequence[int]
) -> list[SkippedPa]:
    """Why each of these PAs is not a candidate: the rules of `care.candidates`, checked
    by one statement (none when nobody was left out)."""
    if not pa_ids:
        return []
    stmt = exclusions_statement(viewer, visit_id, pa_ids=pa_ids)
    found = {e.pa_id: e for e in map(exclusion_from_row, await session.execute(stmt))}
    return [SkippedPa(i, "NOT_A_CANDIDATE", found.get(i)) for i in pa_ids]


async def offer_cover(
    session: AsyncSession,
    viewer: Viewer,
    request_id: int,
    target: OfferTarget,
    expires_in_minutes: int | None = None,
) -> OfferResult:
    require_manager(viewer, "Only admins and coordinators offer cover.")
    errors = _target_errors(target, expires_in_minutes)
    if errors:
        raise DomainErrors(errors)
    visit_id = await _visible_request(session, viewer, request_id)
    request = await _lock_request(session, request_id)
    visit = await _lock_visit(session, visit_id)
    if not await may_manage_service_user(session, viewer, visit.service_user_id):
        raise forbidden(
            "Only admins and coordinators of the person's cluster may offer this cover.",
            "coverRequestId",
        )
    _check_request_open(request, "coverRequestId")
    _check_visit_coverable(visit, viewer.now, "coverRequestId")
    ttl = expires_in_minutes
    if ttl is None:
        configured = await session.scalar(select(Coop.cover_offer_ttl_minutes))
        ttl = DEFAULT_TTL_MINUTES if configured is None else int(configured)
        if not MIN_TTL_MINUTES <= ttl <= MAX_TTL_MINUTES:
            raise DomainError(
                ErrorCode.INVALID,
                f"The co-op's offer time ({ttl} minutes) is outside {MIN_TTL_MINUTES} to "
                f"{MAX_TTL_MINUTES} minutes: give expiresInMinutes.",
                "expiresInMinutes",
            )

    ids, left_out = await _target_pas(session, viewer, visit_id, target)
    skipped = await _why_not(session, viewer, visit_id, left_out)
    # An open offer that has lapsed is written as EXPIRED, so the PA can be offered again.
    await session.execute(
        update(CoverOffer)
        .where(
            CoverOffer.cover_request_id == request_id,
            CoverOffer.pa_id.in_(ids),
            CoverOffer.status == OPEN,
            CoverOffer.expires_at <= viewer.now,
        )
        .values(status=CoverOfferStatus.EXPIRED.value, responded_at=CoverOffer.expires_at)
        .execution_options(synchronize_session=False)
    )
    live = set(
        await session.scalars(
            select(CoverOffer.pa_id).where(
                CoverOffer.cover_request_id == request_id,
                CoverOffer.pa_id.in_(ids),
                CoverOffer.status == OPEN,
            )
        )
    )
    expires_at = viewer.now + dt.timedelta(minutes=ttl)
    offers = [
        CoverOffer(
            cover_request_id=request_id,
            pa_id=pa_id,
            status=OPEN,
            offered_by_id=viewer.member_id,
            offered_at=viewer.now,
            expires_at=expires_at,
        )
        for pa_id in ids
        if pa_id not in live
    ]
    session.add_all(offers)
    await session.flush()  # the partial unique index uq_cover_offer_open_pa guards here
    clusters = await _cluster_ids(session, visit.id)
    await publish_all(
        session,
        [
            CoverEvent(
                kind="OFFER_MADE",
                cover_request_id=request_id,
                visit_id=visit_id,
                cluster_ids=clusters,
                offer_id=o.id,
                pa_id=o.pa_id,
            )
            for o in offers
        ],
    )
    skipped.extend(SkippedPa(pa_id, "ALREADY_OFFERED") for pa_id in ids if pa_id in live)
    skipped.sort(key=lambda p: p.pa_id)
    return OfferResult(offer_ids=[o.id for o in offers], skipped=len(skipped), skipped_pas=skipped)


# --- withdrawing, declining, accepting -----------------------------------------------------


async def _answerable(
    session: AsyncSession, viewer: Viewer, offer_id: int, *, own: bool
) -> tuple[CoverRequest, CoverOffer]:
    """The offer and its request, locked (request first); NOT_FOUND when unknown or not
    visible (for a PA answering: not addressed to them)."""
    where = [CoverOffer.id == offer_id, policy.cover_offer_visible(viewer, CoverOffer)]
    if own:
        where.append(CoverOffer.pa_id == viewer.member_id)
    request_id = await session.scalar(select(CoverOffer.cover_request_id).where(*where))
    if request_id is None:
        raise not_found("cover offer")
    request = await _lock_request(session, int(request_id))
    offer = await _lock_offer(session, offer_id)
    return request, offer


async def _offer_event(
    session: AsyncSession, kind: str, request: CoverRequest, offer: CoverOffer
) -> None:
    clusters = await _cluster_ids(session, request.visit_id)
    await publish(
        session,
        CoverEvent(
            kind=kind,
            cover_request_id=request.id,
            visit_id=request.visit_id,
            cluster_ids=clusters,
            offer_id=offer.id,
            pa_id=offer.pa_id,
        ),
    )


async def withdraw_offer(session: AsyncSession, viewer: Viewer, offer_id: int) -> int:
    require_manager(viewer, "Only admins and coordinators offer cover.")
    request, offer = await _answerable(session, viewer, offer_id, own=False)
    service_user_id = await session.scalar(
        select(Visit.service_user_id).where(Visit.id == request.visit_id)
    )
    if service_user_id is None or not await may_manage_service_user(
        session, viewer, int(service_user_id)
    ):
        raise forbidden(
            "Only admins and coordinators of the person's cluster may withdraw this offer.", "id"
        )
    _check_offer_open(offer, viewer.now)
    _check_request_open(request)
    offer.status = CoverOfferStatus.WITHDRAWN.value
    offer.responded_at = viewer.now
    await session.flush()
    await _offer_event(session, "OFFER_WITHDRAWN", request, offer)
    return offer.id


async def decline_offer(session: AsyncSession, viewer: Viewer, offer_id: int) -> int:
    _require_pa(viewer)
    request, offer = await _answerable(session, viewer, offer_id, own=True)
    _check_offer_open(offer, viewer.now)
    _check_request_open(request)
    offer.status = CoverOfferStatus.DECLINED.value
    offer.responded_at = viewer.now
    await session.flush()
    await _offer_event(session, "OFFER_DECLINED", request, offer)
    return offer.id


async def _pa_clashes(session: AsyncSession, pa_id: int, visit: Visit) -> list[DomainError]:
    """The PA's active visits and absences overlapping the visit (as last committed)."""
    other = aliased(Visit)
    visits = (
        await session.execute(
            select(func.lower(other.during), func.upper(other.during))
            .where(
                other.pa_id == pa_id,
                other.id != visit.id,
                other.status.in_(PA_BUSY),
                other.during.op("&&")(visit.during),
            )
            .order_by(func.lower(other.during))
        )
    ).all()
    errors = [
        DomainError(
            ErrorCode.CONFLICT,
            f"You already have a visit on {describe(s, e)} (UK time).",
            "id",
        )
        for s, e in visits
    ]
    away = (
        await session.execute(
            select(func.lower(Absence.during), func.upper(Absence.during)).where(
                Absence.pa_id == pa_id,
                Absence.cancelled_at.is_(None),
                Absence.during.op("&&")(visit.during),
            )
        )
    ).all()
    errors += [
        DomainError(
            ErrorCode.CONFLICT,
            f"You are recorded as away from {describe(s, e)} (UK time).",
            "id",
        )
        for s, e in away
    ]
    held = (
        await session.execute(
            select(func.lower(PaCommitment.during), func.upper(PaCommitment.during)).where(
                PaCommitment.pa_id == pa_id,
                PaCommitment.kind == CommitmentKind.HOLD.value,
                PaCommitment.during.op("&&")(visit.during),
            )
        )
    ).all()
    errors += [
        DomainError(
            ErrorCode.CONFLICT,
            f"Your time from {describe(s, e)} (UK time) is held for a partner co-op's visit.",
            "id",
        )
        for s, e in held
    ]
    return errors


async def accept_offer(session: AsyncSession, viewer: Viewer, offer_id: int) -> int:
    pa_id = _require_pa(viewer)
    request, offer = await _answerable(session, viewer, offer_id, own=True)
    _check_request_open(request)
    _check_offer_open(offer, viewer.now)
    visit = await _lock_visit(session, request.visit_id)
    _check_visit_coverable(visit, viewer.now)
    clashes = await _pa_clashes(session, pa_id, visit)
    if clashes:
        raise DomainErrors(clashes)
    if pa_id not in await candidate_ids(session, viewer, visit.id, [pa_id]):
        raise DomainError(
            ErrorCode.CONFLICT,
            "You can no longer take this visit: your availability, skills, checks or "
            "working hours have changed since it was offered.",
            "id",
        )

    visit.pa_id = pa_id
    visit.status = VisitStatus.SCHEDULED.value
    try:
        # Another acceptance of this PA for an overlapping visit, or an absence of theirs,
        # may have passed the checks above at the same time: the exclusion constraints
        # decide (waiting for the other transaction to end).
        await session.flush()
    except IntegrityError as exc:
        name = constraint_name(exc)
        if name == DOUBLE_BOOKING_CONSTRAINT:
            raise DomainError(
                ErrorCode.CONFLICT,
                "You have just been booked for another visit at this time.",
                "id",
            ) from exc
        if name == PA_COMMITMENT_GUARD:  # an absence recorded meanwhile, not yet visible
            raise DomainError(
                ErrorCode.CONFLICT, "You have just been recorded as away at this time.", "id"
            ) from exc
        raise

    request.status = CoverRequestStatus.FILLED.value
    request.filled_by_pa_id = pa_id
    request.closed_at = viewer.now
    offer.status = CoverOfferStatus.ACCEPTED.value
    offer.responded_at = viewer.now
    await session.flush()
    # Lapsed offers are recorded as EXPIRED, live ones CLOSED (their PAs are told).
    await session.execute(
        update(CoverOffer)
        .where(
            CoverOffer.cover_request_id == request.id,
            CoverOffer.status == OPEN,
            CoverOffer.expires_at <= viewer.now,
        )
        .values(status=CoverOfferStatus.EXPIRED.value, responded_at=CoverOffer.expires_at)
        .execution_options(synchronize_session=False)
    )
    closed = (
        await session.execute(
            update(CoverOffer)
            .where(CoverOffer.cover_request_id == request.id, CoverOffer.status == OPEN)
            .values(status=CoverOfferStatus.CLOSED.value, responded_at=viewer.now)
            .returning(CoverOffer.id, CoverOffer.pa_id)
            .execution_options(synchronize_session=False)
        )
    ).all()
    clusters = await _cluster_ids(session, visit.id)

    def event(kind: str, oid: int, pid: int) -> CoverEvent:
        return CoverEvent(
            kind=kind,
            cover_request_id=request.id,
            visit_id=visit.id,
            cluster_ids=clusters,
            offer_id=oid,
            pa_id=pid,
        )

    await publish_all(
        session,
        [event("REQUEST_FILLED", offer.id, pa_id)]
        + [event("OFFER_CLOSED", r.id, r.pa_id) for r in closed],
    )
    return offer.id
