"""Cross-boundary cover: one co-op's visit covered by a partner co-op's PA
(docs/federation.md, section 12).

Both instances keep a `cover_exchange` row under the same `ref` (chosen by the requesting
side, A). The flow:
1. A's coordinator asks (`request_cover`): A calls B synchronously with
   `peerRequestCover` carrying only the time, the postcode district, the skills needed
   and the PA's pseudonymous reference. B (`receive_request`) writes its PROVIDING row
   HELD: the trigger `pa_commitment_from_exchange` puts a HOLD into `pa_commitment`,
   whose exclusion constraint refuses any overlap (a visit, an absence, another co-op's
   hold: CONFLICT). A writes its REQUESTING row only when B answered HELD.
2. B's PA accepts or declines (`accept`, `decline`); B queues `peerCoverUpdate` to A.
3. A, on ACCEPTED, confirms at once when the request is still open, the visit still
   needs cover and the hold has not run out (visit SCHEDULED without a local PA, request
   FILLED by the partner), and sends the person's first name, address and the care
   summary; otherwise it cancels.
4. B, on CONFIRMED, keeps the details and sends the PA's first name back.
5. Either side may cancel (`cancel`); the other hears of it. On A, a confirmed
   exchange that falls through reopens the visit (reason PARTNER_CANCELLED).
6. Holds not confirmed in time expire on each side on their own (`expire_holds`, run by
   the `ExchangeSweeper`); no message is needed.
Terminal statuses (DECLINED, EXPIRED, CANCELLED) absorb later messages. Every message
between the instances after the first is queued in the transaction of the change it
reports (the outbox) and applied once by the receiver (its idempotency key; see
schema/exchange.py). Every status change writes a `cover_exchange_event` row and a
NOTIFY for the `coverExchanges` subscription.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sqlalchemy import exists, func, insert, select, update
from sqlalchemy.dialects.postgresql import Range
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from care import policy
from care.enums import (
    CoverReason,
    CoverRequestStatus,
    ExchangeActor,
    ExchangeSide,
    ExchangeStatus,
    PartnerScope,
    PartnershipSide,
    PartnershipStatus,
    Role,
    VisitStatus,
)
from care.errors import (
    DomainError,
    DomainErrors,
    ErrorCode,
    ExchangeCode,
    constraint_name,
    forbidden,
    not_found,
)
from care.events import ExchangeEvent, publish_all
from care.geography import postcode_district
from care.models import (
    PA_COMMITMENT_GUARD,
    CoverExchange,
    CoverExchangeEvent,
    CoverOffer,
    CoverRequest,
    Member,
    PaProfile,
    Partnership,
    Pool,
    PoolPa,
    ServiceUserProfile,
    Visit,
)
from care.services.access import may_manage_pa, may_manage_service_user, require_manager
from care.services.cover_requests import Pending, _open_one, announce, close_open_offers
from care.viewer import Viewer
from federation.client import FederationClient, PartnerError, PartnerErrorCode
from federation.feed import pseudonym
from federation.idempotency import DuplicateDelivery
from federation.outbox import send_later
from federation.partners import record_contact, store_keys

log = logging.getLogger("coopnet.federation.exchange")
T = TypeVar("T")

HELD = ExchangeStatus.HELD.value
ACCEPTED = ExchangeStatus.ACCEPTED.value
CONFIRMED = ExchangeStatus.CONFIRMED.value
DECLINED = ExchangeStatus.DECLINED.value
EXPIRED = ExchangeStatus.EXPIRED.value
CANCELLED = ExchangeStatus.CANCELLED.value
LIVE = (HELD, ACCEPTED, CONFIRMED)
PENDING = (HELD, ACCEPTED)  # live, not yet booked: what a hold's expiry ends
REQUESTING = ExchangeSide.REQUESTING.value
PROVIDING = ExchangeSide.PROVIDING.value
US = ExchangeActor.US.value
PARTNER = ExchangeActor.PARTNER.value
SYSTEM = ExchangeActor.SYSTEM.value

WHAT = "cover exchange"
MAX_SUMMARY = 2000
MAX_REASON = 500
MAX_REF = 100
MAX_SKILLS = 50
MAX_SKILL = 100
MAX_VISIT = dt.timedelta(hours=24)


@dataclass
class ExchangeConfig:
    """Set once by the process (api/app.py, api/worker.py) from its settings."""

    hold: dt.timedelta = dt.timedelta(minutes=60)


config = ExchangeConfig()


def configure_exchanges(hold_minutes: float) -> None:
    config.hold = dt.timedelta(minutes=hold_minutes)


# --- the messages (docs/federation.md, section 12) -------------------------------------------

REQUEST_COVER = (
    "mutation PeerRequestCover($idempotencyKey: String!, $request: PeerCoverRequestInput!) "
    "{ peerRequestCover(idempotencyKey: $idempotencyKey, request: $request) "
    "{ status holdExpiresAt reason errors { field message code } } }"
)
COVER_UPDATE = (
    "mutation PeerCoverUpdate($idempotencyKey: String!, $update: PeerCoverUpdateInput!) "
    "{ peerCoverUpdate(idempotencyKey: $idempotencyKey, update: $update) "
    "{ status errors { field message code } } }"
)


class AnswerStatus:
    """The providing side's answer to `peerRequestCover`."""

    HELD = "HELD"  # the PA's time is held and offered to the PA
    CONFLICT = "CONFLICT"  # the PA's time is taken (a visit, an absence, another hold)
    UNAVAILABLE = "UNAVAILABLE"  # no such PA shared with the caller, or not now


@dataclass(frozen=True)
class Outcome:
    exchange_id: int | None
    errors: list[DomainError] = field(default_factory=list)


Steps = Callable[[Callable[[AsyncSession], Awaitable[T]]], Awaitable[T]]


# --- recording a change ------------------------------------------------------------------------


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


async def _record(
    session: AsyncSession,
    exchange: CoverExchange,
    status: str,
    by: str,
    *,
    viewer: Viewer | None = None,
    role: str | None = None,
    note: str | None = None,
    cancelled_by: str | None = None,
) -> None:
    """Change the exchange's status (the trigger keeps the hold in step), write its event
    row and queue its NOTIFY, in the caller's transaction."""
    exchange.status = status
    exchange.cancelled_by = cancelled_by if status == CANCELLED else None
    exchange.updated_at = func.now()  # type: ignore[assignment]
    await session.flush()
    await _events(session, [(exchange.id, status)], by, viewer=viewer, role=role, note=note)


async def _events(
    session: AsyncSession,
    changes: Sequence[tuple[int, str]],
    by: str,
    *,
    viewer: Viewer | None = None,
    role: str | None = None,
    note: str | None = None,
) -> None:
    if not changes:
        return
    member_id = viewer.member_id if viewer is not None else None
    if viewer is not None and role is None and viewer.role is not None:
        role = viewer.role.value
    await session.execute(
        insert(CoverExchangeEvent),
        [
            {
                "exchange_id": exchange_id,
                "status": status,
                "by_side": by,
                "by_member_id": member_id,
                "by_role": (role or None) and role[:32],  # type: ignore[index]
                "note": (note or None) and note[:MAX_REASON],  # type: ignore[index]
            }
            for exchange_id, status in changes
        ],
    )
    await publish_all(session, [ExchangeEvent(kind=s, exchange_id=i) for i, s in changes])


async def _tell(
    session: AsyncSession,
    partnership_id: int,
    ref: uuid.UUID,
    status: str,
    **extra: Any,
) -> None:
    """Queue a `peerCoverUpdate` to the partner in the caller's transaction (the
    outbox): it is sent exactly when this change commits."""
    update_: dict[str, Any] = {"ref": str(ref), "status": status, "sentAt": _now().isoformat()}
    update_.update({k: v for k, v in extra.items() if v is not None})
    await send_later(session, partnership_id, "peerCoverUpdate", COVER_UPDATE, {"update": update_})


def _clean_text(value: str | None, limit: int, field_name: str) -> str | None:
    if value is None or not value.strip():
        return None
    text = value.strip()
    if len(text) > limit:
        raise DomainError(ErrorCode.INVALID, f"At most {limit} characters.", field_name)
    return text


def first_name(name: str | None) -> str | None:
    """The first word of a member's name: all a partner is told of who they are."""
    if not name or not name.split():
        return None
    return name.split()[0][:100]


# --- the requesting side (A) -------------------------------------------------------------------


@dataclass(frozen=True)
class Ask:
    """What `request_cover` sends, read and checked in its first step."""

    partnership_id: int
    endpoint: str
    keys: list[dict[str, str]]
    base_url: str
    ref: uuid.UUID
    cover_request_id: int
    visit_id: int
    starts_at: dt.datetime
    ends_at: dt.datetime
    district: str | None
    skills: list[str]
    pa_ref: str
    care_summary: str | None


async def _live_for_request(session: AsyncSession, cover_request_id: int) -> bool:
    return bool(
        await session.scalar(
            select(
                exists().where(
                    CoverExchange.cover_request_id == cover_request_id,
                    CoverExchange.status.in_(LIVE),
                )
            )
        )
    )


async def _prepare(
    session: AsyncSession,
    viewer: Viewer,
    cover_request_id: int,
    partnership_id: int,
    pa_ref: str,
    care_summary: str | None,
) -> Ask:
    require_manager(viewer, "Only admins and coordinators ask partners for cover.")
    errors: list[DomainError] = []
    ref_text = (pa_ref or "").strip()
    if not ref_text:
        errors.append(DomainError(ErrorCode.REQUIRED, "Name the partner's PA.", "paRef"))
    elif len(ref_text) > MAX_REF:
        errors.append(DomainError(ErrorCode.INVALID, "At most 100 characters.", "paRef"))
    try:
        summary = _clean_text(care_summary, MAX_SUMMARY, "careSummary")
    except DomainError as exc:
        errors.append(exc)
        summary = None
    if errors:
        raise errors[0] if len(errors) == 1 else DomainErrors(errors)
    request = await session.scalar(
        select(CoverRequest).where(
            CoverRequest.id == cover_request_id,
            policy.cover_request_visible(viewer, CoverRequest),
        )
    )
    if request is None:
        raise not_found("cover request", "coverRequestId")
    visit = await session.scalar(select(Visit).where(Visit.id == request.visit_id))
    assert visit is not None
    if not await may_manage_service_user(session, viewer, visit.service_user_id):
        raise forbidden(
            "Only admins and coordinators of the person's cluster manage cover for this visit.",
            "coverRequestId",
        )
    if request.status != CoverRequestStatus.OPEN.value:
        raise DomainError(
            ErrorCode.CLOSED, "This cover request is no longer open.", "coverRequestId"
        )
    starts_at, ends_at = visit.during.lower, visit.during.upper
    assert starts_at is not None and ends_at is not None
    if starts_at <= viewer.now:
        raise DomainError(
            ErrorCode.CLOSED,
            "The visit has started: a partner is asked only for visits to come.",
            "coverRequestId",
        )
    partnership = await session.scalar(select(Partnership).where(Partnership.id == partnership_id))
    if partnership is None:
        raise not_found("partnership", "partnershipId")
    if partnership.status != PartnershipStatus.ACTIVE.value:
        raise DomainError(ErrorCode.CLOSED, "The partnership is not active.", "partnershipId")
    if PartnerScope.COVER.value not in partnership.granted_scopes:
        raise DomainError(
            ErrorCode.FORBIDDEN, "The partnership does not include COVER.", "partnershipId"
        )
    if await _live_for_request(session, request.id):
        raise DomainError(
            ErrorCode.CONFLICT,
            "A partner has already been asked for this visit: cancel that first.",
            "coverRequestId",
        )
    person = (
        await session.execute(
            select(Member.postcode, ServiceUserProfile.needs)
            .join(ServiceUserProfile, ServiceUserProfile.member_id == Member.id)
            .where(Member.id == visit.service_user_id)
        )
    ).one()
    return Ask(
        partnership_id=partnership.id,
        endpoint=partnership.graphql_endpoint,
        keys=list(partnership.keys),
        base_url=partnership.base_url,
        ref=uuid.uuid4(),
        cover_request_id=request.id,
        visit_id=visit.id,
        starts_at=starts_at,
        ends_at=ends_at,
        district=postcode_district(person.postcode) if person.postcode else None,
        skills=sorted(set(person.needs or ())),
        pa_ref=ref_text,
        care_summary=summary,
    )


@dataclass(frozen=True)
class Reply:
    status: str
    hold_expires_at: dt.datetime | None
    reason: str | None


def _parse_reply(data: dict[str, Any]) -> Reply:
    payload = data.get("peerRequestCover")
    if not isinstance(payload, dict):
        raise PartnerError(PartnerErrorCode.BAD_RESPONSE, "The answer has no peerRequestCover.")
    errors = payload.get("errors") or []
    if errors:
        first = errors[0] if isinstance(errors[0], dict) else {}
        raise PartnerError(
            PartnerErrorCode.REFUSED,
            str(first.get("message") or "refused")[:500],
            reason=str(first.get("code") or "")[:100] or None,
        )
    status = payload.get("status")
    if status not in (AnswerStatus.HELD, AnswerStatus.CONFLICT, AnswerStatus.UNAVAILABLE):
        raise PartnerError(PartnerErrorCode.BAD_RESPONSE, f"Unknown answer status {status!r}.")
    expires: dt.datetime | None = None
    raw = payload.get("holdExpiresAt")
    if status == AnswerStatus.HELD:
        try:
            expires = dt.datetime.fromisoformat(str(raw))
        except ValueError as exc:
            raise PartnerError(
                PartnerErrorCode.BAD_RESPONSE, "A HELD answer needs holdExpiresAt."
            ) from exc
        if expires.tzinfo is None:
            raise PartnerError(PartnerErrorCode.BAD_RESPONSE, "holdExpiresAt needs an offset.")
    reason = payload.get("reason")
    return Reply(str(status), expires, str(reason)[:MAX_REASON] if reason else None)


def partner_failure(error: PartnerError) -> DomainError:
    # Imported here: partnerships imports this module (ending a partnership).
    from federation.partnerships import partner_failure as failure

    return failure(error)


async def request_cover(
    steps: Steps[Any],
    client: FederationClient | None,
    viewer: Viewer,
    *,
    cover_request_id: int,
    partnership_id: int,
    pa_ref: str,
    care_summary: str | None,
) -> Outcome:
    """`requestPartnerCover`: ask a partner's PA to cover one of our visits. Nothing is
    written unless the partner holds the PA's time (then a HELD exchange)."""

    async def prepare(session: AsyncSession) -> Ask:
        return await _prepare(
            session, viewer, cover_request_id, partnership_id, pa_ref, care_summary
        )

    ask: Ask = await steps(prepare)
    message = {
        "ref": str(ask.ref),
        "paRef": ask.pa_ref,
        "startsAt": ask.starts_at.isoformat(),
        "endsAt": ask.ends_at.isoformat(),
        "district": ask.district,
        "skills": ask.skills,
    }
    try:
        if client is None:
            raise PartnerError(
                PartnerErrorCode.UNREACHABLE, "This instance has no federation client configured."
            )
        result = await client.call(
            ask.endpoint,
            ask.keys,
            REQUEST_COVER,
            {"idempotencyKey": str(uuid.uuid4()), "request": message},
            base_url=ask.base_url,
        )
        reply = _parse_reply(result.data)
    except PartnerError as exc:
        failure = exc

        async def failed(session: AsyncSession) -> None:
            await record_contact(session, ask.partnership_id, failure)
            if failure.code not in (PartnerErrorCode.REFUSED, PartnerErrorCode.VERSION_MISMATCH):
                # The partner may have placed a hold before the answer was lost: release it.
                await _tell(session, ask.partnership_id, ask.ref, CANCELLED, reason="Not sent.")

        await steps(failed)
        return Outcome(None, [partner_failure(failure)])

    refreshed = result.refreshed

    async def heard(session: AsyncSession) -> None:
        await record_contact(session, ask.partnership_id, None)
        if refreshed is not None:
            await store_keys(session, ask.partnership_id, refreshed.keys)

    await steps(heard)
    if reply.status == AnswerStatus.CONFLICT:
        return Outcome(
            None,
            [
                DomainError(
                    ErrorCode.CONFLICT,
                    "The partner's PA is no longer free then (another booking or co-op got "
                    "there first).",
                    "paRef",
                )
            ],
        )
    if reply.status == AnswerStatus.UNAVAILABLE:
        return Outcome(
            None,
            [
                DomainError(
                    ExchangeCode.PARTNER_UNAVAILABLE,
                    f"The partner cannot offer that PA: {reply.reason or 'unavailable'}."[:500],
                    "paRef",
                )
            ],
        )
    assert reply.hold_expires_at is not None
    expires = reply.hold_expires_at

    async def record(session: AsyncSession) -> int:
        request = await session.scalar(
            select(CoverRequest)
            .where(CoverRequest.id == ask.cover_request_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
        visit = await session.scalar(
            select(Visit)
            .where(Visit.id == ask.visit_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
        if (
            request is None
            or visit is None
            or request.status != CoverRequestStatus.OPEN.value
            or visit.status != VisitStatus.NEEDS_COVER.value
        ):
            raise DomainError(
                ErrorCode.CLOSED,
                "The cover request was closed while the partner was asked.",
                "coverRequestId",
            )
        exchange = CoverExchange(
            ref=ask.ref,
            partnership_id=ask.partnership_id,
            side=REQUESTING,
            status=HELD,
            during=Range(ask.starts_at, ask.ends_at),
            district=ask.district,
            skills=ask.skills,
            pa_ref=ask.pa_ref,
            hold_expires_at=expires,
            visit_id=ask.visit_id,
            cover_request_id=ask.cover_request_id,
            care_summary=ask.care_summary,
            created_by_id=viewer.member_id,
        )
        try:
            async with session.begin_nested():
                session.add(exchange)
                await session.flush()
        except IntegrityError as exc:
            if constraint_name(exc) == "uq_cover_exchange_live_request":
                raise DomainError(
                    ErrorCode.CONFLICT,
                    "A partner was asked for this visit meanwhile.",
                    "coverRequestId",
                ) from exc
            raise
        await _events(session, [(exchange.id, HELD)], US, viewer=viewer, note="Asked the partner.")
        return exchange.id

    try:
        exchange_id: int = await steps(record)
    except DomainError as exc:
        refused = exc

        async def release(session: AsyncSession) -> None:
            await _tell(session, ask.partnership_id, ask.ref, CANCELLED, reason=refused.message)

        await steps(release)
        return Outcome(None, [refused])
    return Outcome(exchange_id, [])


async def _reopen(session: AsyncSession, exchange: CoverExchange, note: str) -> None:
    """A confirmed partner cover fell through: the visit needs cover again, with a new
    OPEN request (reason PARTNER_CANCELLED), unless it is over or has a PA again."""
    if exchange.visit_id is None:
        return
    visit = await session.scalar(
        select(Visit)
        .where(Visit.id == exchange.visit_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if (
        visit is None
        or visit.status != VisitStatus.SCHEDULED.value
        or visit.pa_id is not None
        or (visit.during.upper is not None and visit.during.upper <= _now())
    ):
        return
    open_request = await session.scalar(
        select(
            exists().where(
                CoverRequest.visit_id == visit.id,
                CoverRequest.status == CoverRequestStatus.OPEN.value,
            )
        )
    )
    if open_request:
        return
    try:
        async with session.begin_nested():
            await _open_one(session, visit, CoverReason.PARTNER_CANCELLED, None, note[:1000])
    except DBAPIError as exc:
        # Migration 0014 left cover_request.reason at 16 characters, one short of
        # PARTNER_CANCELLED (22001): until it is widened the request reopens as MANUAL
        # with the partner named in its note, rather than the partner's message failing.
        if getattr(exc.orig, "sqlstate", None) != "22001":
            raise
        log.warning("cover_request.reason is too narrow for PARTNER_CANCELLED: using MANUAL")
        await session.refresh(visit)
        await _open_one(session, visit, CoverReason.MANUAL, None, f"Partner cover: {note}"[:1000])


async def _confirm(session: AsyncSession, exchange: CoverExchange) -> bool:
    """A: the partner's PA accepted. Book it when the request is still open, the visit
    still needs cover and the hold has not run out; tell the partner either way."""
    request = await session.scalar(
        select(CoverRequest)
        .where(CoverRequest.id == exchange.cover_request_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    visit = await session.scalar(
        select(Visit)
        .where(Visit.id == exchange.visit_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    now = _now()
    why: str | None = None
    if request is None or request.status != CoverRequestStatus.OPEN.value:
        why = "The cover request was closed meanwhile."
    elif visit is None or visit.status != VisitStatus.NEEDS_COVER.value:
        why = "The visit no longer needs cover."
    elif exchange.hold_expires_at <= now:
        why = "The hold ran out before the acceptance arrived."
    if why is not None or request is None or visit is None:
        exchange.reason = why
        await _record(
            session, exchange, CANCELLED, SYSTEM, note=why, cancelled_by=PartnershipSide.US.value
        )
        await _tell(session, exchange.partnership_id, exchange.ref, CANCELLED, reason=why)
        return False
    visit.status = VisitStatus.SCHEDULED.value  # covered by the partner's PA: no local PA
    request.status = CoverRequestStatus.FILLED.value
    request.filled_by_partner = True
    request.closed_at = now
    await session.flush()
    pending = [Pending("REQUEST_FILLED", request.id, visit.id)]
    pending += await close_open_offers(session, [request.id], now)
    await announce(session, pending)
    person = (
        await session.execute(
            select(Member.name, Member.postcode).where(Member.id == visit.service_user_id)
        )
    ).one()
    exchange.person_first_name = first_name(person.name)
    exchange.person_address = person.postcode
    await _record(session, exchange, CONFIRMED, SYSTEM, note="Confirmed automatically.")
    await _tell(
        session,
        exchange.partnership_id,
        exchange.ref,
        CONFIRMED,
        person={
            "firstName": exchange.person_first_name,
            "address": exchange.person_address,
            "careSummary": exchange.care_summary,
        },
    )
    return True


async def settle_locally(session: AsyncSession, viewer: Viewer, visit_id: int, why: str) -> None:
    """A's own cover paths (a local PA accepted or was assigned, the visit or its request
    was cancelled): the partner cover for that visit is called off, and the partner told."""
    live = (
        await session.scalars(
            select(CoverExchange)
            .where(
                CoverExchange.visit_id == visit_id,
                CoverExchange.side == REQUESTING,
                CoverExchange.status.in_(LIVE),
            )
            .with_for_update()
        )
    ).all()
    for exchange in live:
        exchange.reason = why
        await _record(
            session,
            exchange,
            CANCELLED,
            US,
            viewer=viewer,
            note=why,
            cancelled_by=PartnershipSide.US.value,
        )
        await _tell(session, exchange.partnership_id, exchange.ref, CANCELLED, reason=why)


async def settled_by_offer(session: AsyncSession, viewer: Viewer, offer_id: int) -> int:
    """After a local PA accepted an offer: the request's partner cover is called off."""
    visit_id = await session.scalar(
        select(CoverRequest.visit_id)
        .join(CoverOffer, CoverOffer.cover_request_id == CoverRequest.id)
        .where(CoverOffer.id == offer_id)
    )
    if visit_id is not None:
        await settle_locally(session, viewer, visit_id, "A PA of the co-op took the visit.")
    return offer_id


async def settled_by_request(session: AsyncSession, viewer: Viewer, request_id: int) -> int:
    """After the cover request was cancelled: its partner cover is called off."""
    visit_id = await session.scalar(
        select(CoverRequest.visit_id).where(CoverRequest.id == request_id)
    )
    if visit_id is not None:
        await settle_locally(session, viewer, visit_id, "The co-op cancelled the cover request.")
    return request_id


# --- the providing side (B) ------------------------------------------------------------------


async def _shared_pa(session: AsyncSession, key: bytes, pa_ref: str) -> int | None:
    """Our PA behind a partner's pseudonymous reference: an active PA in a pool shared
    with partners (the PAs our feed describes). One statement; the HMAC is computed here."""
    shared = exists().where(
        PoolPa.pa_id == Member.id, Pool.id == PoolPa.pool_id, Pool.shared_with_partners
    )
    ids = await session.scalars(
        select(Member.id)
        .join(PaProfile, PaProfile.member_id == Member.id)
        .where(Member.active, shared)
    )
    for pa_id in ids:
        if pseudonym(key, "pa", pa_id) == pa_ref:
            return pa_id
    return None


def _held(exchange: CoverExchange) -> dict[str, Any]:
    return {
        "status": AnswerStatus.HELD,
        "holdExpiresAt": exchange.hold_expires_at.isoformat(),
        "reason": None,
    }


def _unavailable(reason: str) -> dict[str, Any]:
    return {"status": AnswerStatus.UNAVAILABLE, "holdExpiresAt": None, "reason": reason}


def _parse_time(value: str, field_name: str) -> dt.datetime:
    try:
        parsed = dt.datetime.fromisoformat(value)
    except (TypeError, ValueError) as exc:
        raise DomainError(
            ErrorCode.INVALID, "An ISO 8601 time with an offset.", field_name
        ) from exc
    if parsed.tzinfo is None:
        raise DomainError(ErrorCode.INVALID, "Give the time's UTC offset.", field_name)
    return parsed.astimezone(dt.UTC)


def parse_ref(value: str, field_name: str = "ref") -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except (ValueError, AttributeError, TypeError) as exc:
        raise DomainError(ErrorCode.INVALID, "ref is a UUID.", field_name) from exc


async def receive_request(
    session: AsyncSession,
    viewer: Viewer,
    *,
    ref: str,
    pa_ref: str,
    starts_at: str,
    ends_at: str,
    district: str | None,
    skills: Sequence[str],
) -> dict[str, Any]:
    """`peerRequestCover` at B: hold the PA's time and offer it to the PA. The answer
    (HELD, CONFLICT, UNAVAILABLE) is what the schema layer remembers for the key."""
    partnership_id = viewer.partnership_id
    if partnership_id is None:  # the PARTNER_COVER rule admits partners only
        raise forbidden("Only a partner instance may send this.")
    exchange_ref = parse_ref(ref)
    starts, ends = _parse_time(starts_at, "startsAt"), _parse_time(ends_at, "endsAt")
    if ends <= starts or ends - starts > MAX_VISIT:
        raise DomainError(
            ErrorCode.INVALID_RANGE, "The end must be after the start, within 24 hours.", "endsAt"
        )
    if starts <= viewer.now:
        raise DomainError(
            ErrorCode.INVALID_RANGE, "The visit must start in the future.", "startsAt"
        )
    if not pa_ref or len(pa_ref) > MAX_REF:
        raise DomainError(ErrorCode.INVALID, "paRef: 1 to 100 characters.", "paRef")
    area = None
    if district:
        area = postcode_district(district)
        if area is None:
            raise DomainError(ErrorCode.INVALID, "Not a postcode district.", "district")
    needed = sorted({s.strip() for s in skills if s.strip()})
    if len(needed) > MAX_SKILLS or any(len(s) > MAX_SKILL for s in needed):
        raise DomainError(
            ErrorCode.INVALID, "At most 50 skills of at most 100 characters.", "skills"
        )

    before = await session.scalar(
        select(CoverExchange).where(
            CoverExchange.partnership_id == partnership_id, CoverExchange.ref == exchange_ref
        )
    )
    if before is not None:  # asked again under another key (an answer was lost)
        if before.side == PROVIDING and before.status in PENDING:
            return _held(before)
        return _unavailable(f"This request is already {before.status.lower()}.")
    key = await session.scalar(
        select(Partnership.pseudonym_key).where(Partnership.id == partnership_id)
    )
    assert key is not None
    pa_id = await _shared_pa(session, key, pa_ref)
    if pa_id is None:
        return _unavailable("No PA by that reference is shared with you.")
    expires = min(_now() + config.hold, starts)
    exchange = CoverExchange(
        ref=exchange_ref,
        partnership_id=partnership_id,
        side=PROVIDING,
        status=HELD,
        during=Range(starts, ends),
        district=area,
        skills=needed,
        pa_ref=pa_ref,
        hold_expires_at=expires,
        pa_id=pa_id,
    )
    try:
        # The race guard: the trigger's HOLD meets the exclusion constraint here (and
        # waits for a competing hold's transaction to end).
        async with session.begin_nested():
            session.add(exchange)
            await session.flush()
    except IntegrityError as exc:
        name = constraint_name(exc)
        if name == PA_COMMITMENT_GUARD:
            return {"status": AnswerStatus.CONFLICT, "holdExpiresAt": None, "reason": None}
        if name == "uq_cover_exchange_partnership_ref":
            # Another copy of this request was applied meanwhile: roll back; read again.
            raise DuplicateDelivery("This request was applied meanwhile.") from exc
        raise
    await _events(session, [(exchange.id, HELD)], PARTNER, note="Asked by the partner.")
    return _held(exchange)


async def _lock(session: AsyncSession, viewer: Viewer, exchange_id: int) -> CoverExchange:
    exchange = await session.scalar(
        select(CoverExchange)
        .where(
            CoverExchange.id == exchange_id, policy.cover_exchange_visible(viewer, CoverExchange)
        )
        .with_for_update(of=CoverExchange)
        .execution_options(populate_existing=True)
    )
    if exchange is None:
        raise not_found(WHAT)
    return exchange


async def _answerable(session: AsyncSession, viewer: Viewer, exchange_id: int) -> CoverExchange:
    if viewer.role is not Role.PA or viewer.member_id is None:
        raise forbidden("Only the PA the cover is offered to may answer it.", "id")
    exchange = await _lock(session, viewer, exchange_id)
    if exchange.side != PROVIDING or exchange.pa_id != viewer.member_id:
        raise not_found(WHAT)
    if exchange.status != HELD:
        raise DomainError(
            ErrorCode.CLOSED, f"This cover is already {exchange.status.lower()}.", "id"
        )
    if exchange.hold_expires_at <= viewer.now:
        raise DomainError(ErrorCode.CLOSED, "This offer has run out.", "id")
    return exchange


async def accept(session: AsyncSession, viewer: Viewer, exchange_id: int) -> int:
    """B's PA takes the partner's visit; A hears of it (and confirms)."""
    exchange = await _answerable(session, viewer, exchange_id)
    await _record(session, exchange, ACCEPTED, US, viewer=viewer)
    await _tell(session, exchange.partnership_id, exchange.ref, ACCEPTED, byRole=Role.PA.value)
    return exchange.id


async def decline(
    session: AsyncSession, viewer: Viewer, exchange_id: int, reason: str | None
) -> int:
    """B's PA says no: the hold is released; A hears of it."""
    why = _clean_text(reason, MAX_REASON, "reason")
    exchange = await _answerable(session, viewer, exchange_id)
    exchange.reason = why
    await _record(session, exchange, DECLINED, US, viewer=viewer, note=why)
    await _tell(
        session, exchange.partnership_id, exchange.ref, DECLINED, byRole=Role.PA.value, reason=why
    )
    return exchange.id


async def cancel(
    session: AsyncSession, viewer: Viewer, exchange_id: int, reason: str | None
) -> int:
    """Either side's admins and managing coordinators call it off; the other side hears
    of it. On the requesting side a confirmed cover that is cancelled reopens the visit."""
    require_manager(viewer, "Only admins and coordinators cancel partner cover.")
    why = _clean_text(reason, MAX_REASON, "reason")
    exchange = await _lock(session, viewer, exchange_id)
    if exchange.side == REQUESTING:
        visit_user = await session.scalar(
            select(Visit.service_user_id).where(Visit.id == exchange.visit_id)
        )
        allowed = visit_user is not None and await may_manage_service_user(
            session, viewer, visit_user
        )
    else:
        allowed = exchange.pa_id is not None and await may_manage_pa(
            session, viewer, exchange.pa_id
        )
    if not allowed:
        raise forbidden("Only those who manage this cover may cancel it.", "id")
    if exchange.status not in LIVE:
        raise DomainError(
            ErrorCode.CLOSED, f"This cover is already {exchange.status.lower()}.", "id"
        )
    was_confirmed = exchange.status == CONFIRMED
    exchange.reason = why
    await _record(
        session,
        exchange,
        CANCELLED,
        US,
        viewer=viewer,
        note=why,
        cancelled_by=PartnershipSide.US.value,
    )
    role = viewer.role.value if viewer.role else None
    await _tell(session, exchange.partnership_id, exchange.ref, CANCELLED, byRole=role, reason=why)
    if exchange.side == REQUESTING and was_confirmed:
        await _reopen(session, exchange, "The partner's cover was cancelled here.")
    return exchange.id


# --- updates from the partner (both sides) ------------------------------------------------------


@dataclass(frozen=True)
class Update:
    ref: str
    status: str
    by_role: str | None = None
    reason: str | None = None
    sent_at: str | None = None
    pa_first_name: str | None = None
    person_first_name: str | None = None
    person_address: str | None = None
    care_summary: str | None = None


def _answer(exchange: CoverExchange | None, status: str | None = None) -> dict[str, Any]:
    return {"status": status or (exchange.status if exchange is not None else None)}


async def receive_update(session: AsyncSession, viewer: Viewer, update_: Update) -> dict[str, Any]:
    """`peerCoverUpdate`: the partner's side of an exchange moved. Applied by the rules
    of the module docstring; the answer is this side's status after it."""
    partnership_id = viewer.partnership_id
    if partnership_id is None:
        raise forbidden("Only a partner instance may send this.")
    exchange_ref = parse_ref(update_.ref)
    role = (update_.by_role or "")[:32] or None
    why = (update_.reason or "").strip()[:MAX_REASON] or None
    exchange = await session.scalar(
        select(CoverExchange)
        .where(CoverExchange.partnership_id == partnership_id, CoverExchange.ref == exchange_ref)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    status = update_.status
    if exchange is None:
        if status == CANCELLED:  # a hold that was never placed (or a request never recorded)
            return {"status": CANCELLED}
        raise not_found(WHAT, "ref")
    if status == CANCELLED:
        if exchange.status not in LIVE:
            return _answer(exchange)  # terminal: absorbed
        was_confirmed = exchange.status == CONFIRMED
        exchange.reason = why
        await _record(
            session,
            exchange,
            CANCELLED,
            PARTNER,
            role=role,
            note=why,
            cancelled_by=PartnershipSide.PARTNER.value,
        )
        if exchange.side == REQUESTING and was_confirmed:
            await _reopen(session, exchange, "The partner co-op cancelled its PA's cover.")
        return _answer(exchange)
    if exchange.side == REQUESTING:
        return await _requesting_update(session, exchange, status, role, why, update_)
    return await _providing_update(session, exchange, status, role, update_)


async def _requesting_update(
    session: AsyncSession,
    exchange: CoverExchange,
    status: str,
    role: str | None,
    why: str | None,
    update_: Update,
) -> dict[str, Any]:
    if status == ACCEPTED:
        if exchange.status != HELD:
            return _answer(exchange)  # already moved on, or terminal
        await _record(session, exchange, ACCEPTED, PARTNER, role=role)
        await _confirm(session, exchange)
        return _answer(exchange)
    if status == DECLINED:
        if exchange.status not in PENDING:
            return _answer(exchange)
        exchange.reason = why
        await _record(session, exchange, DECLINED, PARTNER, role=role, note=why)
        return _answer(exchange)
    if status == CONFIRMED:
        if exchange.status != CONFIRMED:
            return _answer(exchange)
        exchange.pa_first_name = (update_.pa_first_name or "").strip()[:100] or None
        exchange.updated_at = func.now()  # type: ignore[assignment]
        await session.flush()
        await _events(
            session, [(exchange.id, CONFIRMED)], PARTNER, role=role, note="The partner confirmed."
        )
        return _answer(exchange)
    raise DomainError(ErrorCode.INVALID, f"A requesting side is not sent {status}.", "status")


async def _providing_update(
    session: AsyncSession,
    exchange: CoverExchange,
    status: str,
    role: str | None,
    update_: Update,
) -> dict[str, Any]:
    if status != CONFIRMED:
        raise DomainError(ErrorCode.INVALID, f"A providing side is not sent {status}.", "status")
    if exchange.status == CONFIRMED or exchange.status in (DECLINED, CANCELLED, HELD):
        # CONFIRMED: done already; DECLINED, CANCELLED: A hears (heard) of it from us;
        # HELD: the PA has not accepted, so A cannot have confirmed: ignored.
        return _answer(exchange)
    sent_at = None
    if update_.sent_at:
        try:
            sent_at = _parse_time(update_.sent_at, "sentAt")
        except DomainError:
            sent_at = None
    in_time = exchange.hold_expires_at > _now() or (
        sent_at is not None and sent_at <= exchange.hold_expires_at
    )
    if not in_time:
        why = "The hold ran out before the confirmation."
        await _tell(session, exchange.partnership_id, exchange.ref, CANCELLED, reason=why)
        return {"status": CANCELLED}
    try:
        # EXPIRED -> CONFIRMED places the hold again: the PA may have been booked since.
        # The details are kept only with the confirmation (inside the savepoint).
        async with session.begin_nested():
            exchange.person_first_name = (update_.person_first_name or "").strip()[:100] or None
            exchange.person_address = (update_.person_address or "").strip()[:500] or None
            exchange.care_summary = (update_.care_summary or "").strip()[:MAX_SUMMARY] or None
            await _record(session, exchange, CONFIRMED, PARTNER, role=role)
    except IntegrityError as exc:
        if constraint_name(exc) != PA_COMMITMENT_GUARD:
            raise
        await session.refresh(exchange)
        why = "The PA is no longer free then."
        await _tell(session, exchange.partnership_id, exchange.ref, CANCELLED, reason=why)
        return {"status": CANCELLED}
    pa_name = await session.scalar(select(Member.name).where(Member.id == exchange.pa_id))
    exchange.pa_first_name = first_name(pa_name)
    await session.flush()
    await _tell(
        session,
        exchange.partnership_id,
        exchange.ref,
        CONFIRMED,
        paFirstName=exchange.pa_first_name,
    )
    return _answer(exchange)


# --- expiry, and the end of a partnership -------------------------------------------------------


async def expire_holds(session: AsyncSession) -> int:
    """Every HELD or ACCEPTED exchange past its hold becomes EXPIRED (by SYSTEM), in one
    statement; on the providing side the trigger releases the PA's time. Each side does
    this on its own clock: no message is needed. Returns how many expired."""
    rows = (
        await session.execute(
            update(CoverExchange)
            .where(CoverExchange.status.in_(PENDING), CoverExchange.hold_expires_at <= func.now())
            .values(status=EXPIRED, updated_at=func.now())
            .returning(CoverExchange.id)
            .execution_options(synchronize_session=False)
        )
    ).all()
    await _events(session, [(r.id, EXPIRED) for r in rows], SYSTEM, note="The hold ran out.")
    return len(rows)


async def end_with_partnership(session: AsyncSession, partnership_id: int, by: str) -> int:
    """A partnership ended (`by` US: we ended it; PARTNER: it did). Its live exchanges are
    cancelled on this side without messages (the other side does the same on its own):
    the providing side's holds are released, the requesting side's confirmed visits
    reopen (PARTNER_CANCELLED). The personal details received from the partner are
    deleted with everything else it sent. Returns how many were cancelled."""
    live = (
        await session.scalars(
            select(CoverExchange)
            .where(CoverExchange.partnership_id == partnership_id, CoverExchange.status.in_(LIVE))
            .with_for_update()
        )
    ).all()
    why = "The partnership ended."
    cancelled_by = PartnershipSide.US.value if by == US else PartnershipSide.PARTNER.value
    for exchange in live:
        was_confirmed = exchange.status == CONFIRMED
        exchange.reason = why
        await _record(session, exchange, CANCELLED, by, note=why, cancelled_by=cancelled_by)
        if exchange.side == REQUESTING and was_confirmed:
            await _reopen(session, exchange, "The partnership with the covering co-op ended.")
    await session.execute(
        update(CoverExchange)
        .where(CoverExchange.partnership_id == partnership_id, CoverExchange.side == REQUESTING)
        .values(pa_first_name=None)
        .execution_options(synchronize_session=False)
    )
    await session.execute(
        update(CoverExchange)
        .where(CoverExchange.partnership_id == partnership_id, CoverExchange.side == PROVIDING)
        .values(person_first_name=None, person_address=None, care_summary=None)
        .execution_options(synchronize_session=False)
    )
    return len(live)


class ExchangeSweeper:
    """Runs `expire_holds` every `every_s` seconds until stopped (one per process; any
    number may run: each UPDATE takes only rows still pending)."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], every_s: float) -> None:
        self.sessions = sessions
        self.every_s = every_s
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self.every_s > 0:
            self.task = asyncio.create_task(self._run(), name="coopnet-exchange-sweeper")

    async def _run(self) -> None:
        while True:
            try:
                async with self.sessions() as session:
                    expired = await expire_holds(session)
                    await session.commit()
                if expired:
                    log.info("%d cover exchange hold(s) expired", expired)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - keep sweeping; the next round retries
                log.exception("the cover exchange sweep failed")
            await asyncio.sleep(self.every_s)

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            try:
                await self.task
            except (asyncio.CancelledError, Exception):  # noqa: BLE001 - stopping
                pass
            self.task = None


__all__ = [
    "ExchangeSweeper",
    "Outcome",
    "Update",
    "accept",
    "cancel",
    "configure_exchanges",
    "decline",
    "end_with_partnership",
    "expire_holds",
    "settled_by_offer",
    "settled_by_request",
    "receive_request",
    "receive_update",
    "request_cover",
    "settle_locally",
]
