"""Cross-boundary cover exchanges: what coordinators and PAs read and do, and the two
signed messages partner instances send (`peerRequestCover`, `peerCoverUpdate`). The rules
are `federation/exchange.py`; docs/federation.md, section 12, is the contract.

`requestPartnerCover` commits in steps (the checks, the call to the partner, then the
exchange), as the partnership mutations do: the call is never made inside an open
transaction. The peer mutations apply each idempotency key once (federation/idempotency.py):
a repeat gets the first answer and changes nothing."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Awaitable, Callable
from enum import Enum
from typing import Annotated, Any

import strawberry
from sqlalchemy.ext.asyncio import AsyncSession

from care import queries
from care.errors import DomainError, ErrorCode
from care.viewer import Viewer
from federation import exchange as rules
from federation.idempotency import DuplicateDelivery, KeyReused, first_answer, remember
from schema import filters
from schema.connection import (
    AfterArg,
    BeforeArg,
    FirstArg,
    LastArg,
)
from schema.context import DEFAULT_PAGE_SIZE, Info
from schema.errors import EXCHANGE, CoverExchangeError
from schema.mutations.base import (
    COVER_REQUEST_ID,
    IdKind,
    Ids,
    Steps,
    _unexpected,
    mutation,
    perform,
    perform_steps,
)
from schema.mutations.runner import run_mutation
from schema.permissions import MANAGING, PARTNER_COVER, PAS, guard
from schema.rows import Argument
from schema.types import (
    CoverExchange,
    ExchangeSide,
    ExchangeStatus,
    load_cover_exchange,
    root_page,
)

# The page's arguments, after the list's own in both lists below.
PAGING = (
    Argument("first", FirstArg, DEFAULT_PAGE_SIZE),
    Argument("after", AfterArg),
    Argument("last", LastArg),
    Argument("before", BeforeArg),
)

EXCHANGE_ID = IdKind(("CoverExchange",), "cover exchange")
PARTNERSHIP_ID = IdKind(("Partnership",), "partnership")


# --- reading ------------------------------------------------------------------------------------


@strawberry.input(description="Which cover exchanges to list; every field optional.")
class CoverExchangeFilter:
    side: ExchangeSide | None = strawberry.field(
        default=None, description="Only exchanges where this instance is on this side."
    )
    status: ExchangeStatus | None = strawberry.field(
        default=None, description="Only exchanges in this status."
    )
    partnership_id: strawberry.ID | None = strawberry.field(
        default=None,
        description="Only exchanges with this partner. An unknown id matches nothing.",
    )


@strawberry.type
class CoverExchangeQueries:
    cover_exchanges = root_page(
        "cover_exchange",
        CoverExchange,
        sort=queries.COVER_EXCHANGE_SORT,
        filters=filters.COVER_EXCHANGES,
        arguments=(
            Argument(
                "filter",
                Annotated[
                    CoverExchangeFilter | None, strawberry.argument(description="What to list.")
                ],
            ),
            *PAGING,
        ),
        description="Cover exchanges with partner co-ops, by visit time, soonest first. "
        "Admins see all; coordinators those for the people they manage (REQUESTING) and "
        "for the PAs on their clusters' teams (PROVIDING).",
        extensions=guard(MANAGING),
    )

    my_cover_exchanges = root_page(
        "cover_exchange",
        CoverExchange,
        sort=queries.COVER_EXCHANGE_SORT,
        filters=filters.MY_COVER_EXCHANGES,
        mine=queries.own_cover_exchanges,
        arguments=(
            Argument(
                "status",
                Annotated[
                    ExchangeStatus | None, strawberry.argument(description="Only this status.")
                ],
            ),
            *PAGING,
        ),
        description="The signed-in PA's cover for partner co-ops (PROVIDING exchanges), by "
        "visit time: offers to answer (HELD) and bookings (CONFIRMED) among them.",
        extensions=guard(PAS),
    )


# --- what coordinators and PAs do --------------------------------------------------------------


@strawberry.input(description="Ask a partner co-op's PA to cover one of our visits.")
class RequestPartnerCoverInput:
    cover_request_id: strawberry.ID = strawberry.field(
        description="The OPEN cover request of the visit (it must not have started)."
    )
    partnership_id: strawberry.ID = strawberry.field(
        description="The partnership (ACTIVE, with the COVER scope) whose co-op has the PA: "
        "a partner candidate's partnership { id }."
    )
    pa_ref: str = strawberry.field(
        description="The partner's pseudonymous reference for its PA (a partner "
        "candidate's paRef), at most 100 characters."
    )
    care_summary: str | None = strawberry.field(
        default=None,
        description="What to share about the care, at most 2000 characters: sent to the "
        "partner only once the PA has accepted and the booking is confirmed.",
    )


@strawberry.type(description="The result of a cover exchange mutation.")
class CoverExchangePayload:
    exchange: CoverExchange | None = strawberry.field(
        description="The exchange as it now stands; null with errors."
    )
    errors: list[CoverExchangeError] = strawberry.field(
        description="What went wrong; empty means done (and the partner told, or queued "
        "to be told)."
    )


async def _respond(
    info: Info, exchange_id: int | None, errors: list[CoverExchangeError]
) -> CoverExchangePayload:
    exchange = None
    if exchange_id is not None and not errors:
        exchange = await load_cover_exchange(info, exchange_id)
    return CoverExchangePayload(exchange=exchange, errors=errors)


async def _flow(
    info: Info, flow: Callable[[Steps], Awaitable[rules.Outcome]]
) -> CoverExchangePayload:
    """Run a flow whose steps each commit (see the module docstring)."""

    async def run(steps: Steps) -> tuple[int | None, list[DomainError]]:
        outcome = await flow(steps)
        return outcome.exchange_id, outcome.errors

    return await perform_steps(info, EXCHANGE, run, _respond)


async def _one(
    info: Info,
    value: strawberry.ID,
    action: Callable[[AsyncSession, Viewer, int], Awaitable[int]],
) -> CoverExchangePayload:
    ids = Ids()
    pk = ids.one(value, EXCHANGE_ID, "id")
    return await perform(info, EXCHANGE, lambda s, v: action(s, v, pk), _respond, ids)


IdArg = Annotated[strawberry.ID, strawberry.argument(description="The cover exchange's id.")]
ReasonArg = Annotated[
    str | None,
    strawberry.argument(
        description="Why, in a few words (at most 500 characters); told to the partner."
    ),
]


# --- the messages between instances --------------------------------------------------------------


@strawberry.enum(description="The providing instance's answer to a request for cover.")
class PeerCoverAnswer(Enum):
    HELD = strawberry.enum_value(
        "HELD", description="The PA's time is held until holdExpiresAt and offered to the PA."
    )
    CONFLICT = strawberry.enum_value(
        "CONFLICT", description="The PA's time is taken (a visit, an absence, another hold)."
    )
    UNAVAILABLE = strawberry.enum_value(
        "UNAVAILABLE", description="No such PA is shared with the caller (see reason)."
    )


@strawberry.input(
    description="A request for cover: the least the providing co-op needs (no names, no "
    "address, no care details)."
)
class PeerCoverRequestInput:
    ref: str = strawberry.field(description="A UUID the requesting instance chose.")
    pa_ref: str = strawberry.field(
        description="The PA, by the pseudonymous reference the receiver gave the caller."
    )
    starts_at: str = strawberry.field(description="The visit's start (ISO 8601 with offset).")
    ends_at: str = strawberry.field(
        description="The visit's end (ISO 8601 with offset), within 24 hours of the start."
    )
    district: str | None = strawberry.field(
        default=None, description="The person's postcode district (outward code), e.g. N12."
    )
    skills: list[str] = strawberry.field(
        default_factory=list, description="The skills the care needs (at most 50)."
    )


@strawberry.input(description="The person's details, sent with the confirmation only.")
class PeerCoverPersonInput:
    first_name: str | None = strawberry.field(default=None, description="Their first name.")
    address: str | None = strawberry.field(default=None, description="Where the visit is.")
    care_summary: str | None = strawberry.field(
        default=None, description="What the requesting coordinator chose to share."
    )


@strawberry.input(description="A change to a cover exchange on the caller's side.")
class PeerCoverUpdateInput:
    ref: str = strawberry.field(description="The exchange's ref (UUID).")
    status: ExchangeStatus = strawberry.field(
        description="ACCEPTED or DECLINED (by the providing side's PA), CONFIRMED (by "
        "either side, with the details it shares), or CANCELLED."
    )
    by_role: str | None = strawberry.field(
        default=None, description="The role that made the change at the caller (e.g. PA)."
    )
    reason: str | None = strawberry.field(
        default=None, description="Why (declined, cancelled), in a few words."
    )
    sent_at: str | None = strawberry.field(
        default=None,
        description="When the caller made the change (ISO 8601 with offset): a confirmation "
        "made before the hold ran out is honoured if the PA is still free.",
    )
    pa_first_name: str | None = strawberry.field(
        default=None, description="CONFIRMED by the providing side: its PA's first name."
    )
    person: PeerCoverPersonInput | None = strawberry.field(
        default=None, description="CONFIRMED by the requesting side: the person's details."
    )


@strawberry.type(description="The providing instance's answer to peerRequestCover.")
class PeerCoverRequestPayload:
    status: PeerCoverAnswer | None = strawberry.field(description="The answer; null with errors.")
    hold_expires_at: dt.datetime | None = strawberry.field(
        description="HELD: when the hold runs out unless confirmed (UTC)."
    )
    reason: str | None = strawberry.field(description="UNAVAILABLE: why, in a few words.")
    errors: list[CoverExchangeError] = strawberry.field(
        description="Why the message was refused (nothing was done); empty otherwise."
    )


@strawberry.type(description="The receiving instance's answer to peerCoverUpdate.")
class PeerCoverUpdatePayload:
    status: ExchangeStatus | None = strawberry.field(
        description="The exchange's status at the receiver after the message; null with "
        "errors (or for a cancellation of an exchange it never recorded)."
    )
    errors: list[CoverExchangeError] = strawberry.field(
        description="Why the message was refused (nothing was done); empty otherwise."
    )


KeyArg = Annotated[
    str,
    strawberry.argument(
        description="A UUID for this message: a repeat with the same key is applied once "
        "and gets the first answer."
    ),
]
Answer = dict[str, Any]


async def _once(
    info: Info,
    operation: str,
    key_text: str,
    apply: Callable[[AsyncSession, Viewer], Awaitable[Answer]],
) -> tuple[Answer | None, list[DomainError]]:
    """Apply a partner's message once per idempotency key (see the module docstring)."""
    try:
        key = uuid.UUID(key_text[:100])
    except ValueError:
        return None, [DomainError(ErrorCode.INVALID, "A UUID.", "idempotencyKey")]
    instance = info.context.viewer.partner or ""

    async def action(session: AsyncSession, viewer: Viewer) -> Answer:
        try:
            seen = await first_answer(session, instance, key, operation)
        except KeyReused as exc:
            raise DomainError(ErrorCode.INVALID, str(exc), "idempotencyKey") from exc
        if seen is not None:
            return seen
        answer = await apply(session, viewer)
        await remember(session, instance, key, operation, answer)
        return answer

    for _ in range(2):
        try:
            return await run_mutation(info, action)
        except DuplicateDelivery:
            # Another copy was applied meanwhile: drop ours; its answer is read next.
            async with info.context.database():
                await info.context.session.rollback()
            info.context.clear_loaders()
    return None, [DomainError(ErrorCode.CONFLICT, "Another copy was being applied: retry.")]


def _expires(value: Any) -> dt.datetime | None:
    return dt.datetime.fromisoformat(value) if isinstance(value, str) else None


@strawberry.type
class CoverExchangeMutations:
    @mutation(
        access=MANAGING,
        description="Ask a partner co-op's PA to cover a visit (admins, and coordinators "
        "of the person's cluster). The partner is called at once with only the time, the "
        "postcode district, the skills needed and the PA's reference; it holds the PA's "
        "time and offers it to the PA. Written only when the partner holds it (HELD): "
        "CONFLICT when the PA's time is taken, PARTNER_UNAVAILABLE when the partner cannot "
        "offer that PA, PARTNER_* when it could not be asked. Once the PA accepts, the "
        "visit is booked automatically (if still open) and the details are exchanged.",
    )
    async def request_partner_cover(
        self,
        info: Info,
        input: Annotated[RequestPartnerCoverInput, strawberry.argument(description="What to ask.")],
    ) -> CoverExchangePayload | None:
        ids = Ids()
        request_id = ids.one(input.cover_request_id, COVER_REQUEST_ID, "coverRequestId")
        partnership_id = ids.one(input.partnership_id, PARTNERSHIP_ID, "partnershipId")
        if ids.errors:
            return await _respond(info, None, EXCHANGE.convert(ids.errors))
        ctx = info.context
        return await _flow(
            info,
            lambda steps: rules.request_cover(
                steps,
                ctx.federation,
                ctx.viewer,
                cover_request_id=request_id,
                partnership_id=partnership_id,
                pa_ref=input.pa_ref,
                care_summary=input.care_summary,
            ),
        )

    @mutation(
        access=MANAGING,
        description="Call off a cover exchange that is HELD, ACCEPTED or CONFIRMED (admins; "
        "coordinators who manage the person or, providing, the PA). The partner is told "
        "through the outbox. Requesting side: a confirmed visit needs cover again (a new "
        "request, reason PARTNER_CANCELLED). Providing side: the PA's time is released.",
    )
    async def cancel_partner_cover(
        self, info: Info, id: IdArg, reason: ReasonArg = None
    ) -> CoverExchangePayload | None:
        return await _one(info, id, lambda s, v, pk: rules.cancel(s, v, pk, reason))

    @mutation(
        access=PAS,
        description="The PA takes a partner co-op's visit offered to them (HELD, before the "
        "hold runs out). The partner is told and confirms; the details follow.",
    )
    async def accept_partner_cover(self, info: Info, id: IdArg) -> CoverExchangePayload | None:
        return await _one(info, id, rules.accept)

    @mutation(
        access=PAS,
        description="The PA turns down a partner co-op's visit offered to them (HELD): "
        "their time is released and the partner is told.",
    )
    async def decline_partner_cover(
        self, info: Info, id: IdArg, reason: ReasonArg = None
    ) -> CoverExchangePayload | None:
        return await _one(info, id, lambda s, v, pk: rules.decline(s, v, pk, reason))

    # --- from partner instances (signed calls, scope COVER) ---

    @mutation(
        access=PARTNER_COVER,
        description="A partner instance asks for one of our PAs' time (signed call; "
        "partnership ACTIVE with COVER). HELD: the time is held and offered to the PA; "
        "CONFLICT: it is taken; UNAVAILABLE: no such PA is shared with the caller. Applied "
        "once per idempotencyKey.",
    )
    async def peer_request_cover(
        self,
        info: Info,
        idempotency_key: KeyArg,
        request: Annotated[PeerCoverRequestInput, strawberry.argument(description="The ask.")],
    ) -> PeerCoverRequestPayload | None:
        too_long = (
            len(request.ref) > 100
            or len(request.starts_at) > 64
            or len(request.ends_at) > 64
            or len(request.district or "") > 16
            or len(request.skills) > 50
        )

        async def apply(session: AsyncSession, viewer: Viewer) -> Answer:
            if too_long:
                raise DomainError(ErrorCode.INVALID, "A value is too long.", None)
            return await rules.receive_request(
                session,
                viewer,
                ref=request.ref,
                pa_ref=request.pa_ref[:101],
                starts_at=request.starts_at,
                ends_at=request.ends_at,
                district=request.district,
                skills=[s[:101] for s in request.skills],
            )

        try:
            answer, errors = await _once(info, "peerRequestCover", idempotency_key, apply)
        except Exception as exc:
            raise _unexpected(exc, committed=False) from None
        if errors or answer is None:
            return PeerCoverRequestPayload(
                status=None, hold_expires_at=None, reason=None, errors=EXCHANGE.convert(errors)
            )
        return PeerCoverRequestPayload(
            status=PeerCoverAnswer(answer["status"]),
            hold_expires_at=_expires(answer.get("holdExpiresAt")),
            reason=answer.get("reason"),
            errors=[],
        )

    @mutation(
        access=PARTNER_COVER,
        description="A partner instance reports a change to an exchange on its side "
        "(signed call, delivered through its outbox): the PA accepted or declined, the "
        "booking was confirmed (with the details each side shares), or it was cancelled. "
        "Applied once per idempotencyKey; an exchange already over absorbs it.",
    )
    async def peer_cover_update(
        self,
        info: Info,
        idempotency_key: KeyArg,
        update: Annotated[PeerCoverUpdateInput, strawberry.argument(description="The change.")],
    ) -> PeerCoverUpdatePayload | None:
        person = update.person
        message = rules.Update(
            ref=update.ref[:100],
            status=update.status.value,
            by_role=update.by_role,
            reason=(update.reason or "")[:1000] or None,
            sent_at=(update.sent_at or "")[:64] or None,
            pa_first_name=(update.pa_first_name or "")[:200] or None,
            person_first_name=person.first_name[:200] if person and person.first_name else None,
            person_address=person.address[:1000] if person and person.address else None,
            care_summary=person.care_summary[:4000] if person and person.care_summary else None,
        )
        try:
            answer, errors = await _once(
                info,
                "peerCoverUpdate",
                idempotency_key,
                lambda session, viewer: rules.receive_update(session, viewer, message),
            )
        except Exception as exc:
            raise _unexpected(exc, committed=False) from None
        if errors or answer is None:
            return PeerCoverUpdatePayload(status=None, errors=EXCHANGE.convert(errors))
        status = answer.get("status")
        return PeerCoverUpdatePayload(status=ExchangeStatus(status) if status else None, errors=[])
