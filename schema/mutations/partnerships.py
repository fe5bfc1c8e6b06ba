"""Partnership mutations: what admins do (propose, accept, reject, suspend, resume, end)
and the signed messages partner instances send (`peer*`). The rules are
`federation/partnerships.py`; docs/federation.md, section 8, is the contract.

Unlike other mutations, an admin's partnership mutation may commit in more than one step
(the row before the call to the partner, the call's outcome after it), so its payload
reads differently: `partnership` is the row as it now stands whenever there is one, even
with errors; errors with a PARTNER_* code (or VERSION_MISMATCH) say that the partner did
not take the message, and the mutation's description says what was kept."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

import strawberry
from sqlalchemy.ext.asyncio import AsyncSession

from care import queries
from care.errors import DomainError, ErrorCode, PartnerCode
from care.viewer import Viewer
from federation import partnerships as rules
from federation.client import Manifest, PartnerError
from schema.context import Info
from schema.errors import PARTNERSHIP, PartnershipError
from schema.mutations.base import IdKind, Ids, Steps, mutation, perform, perform_steps
from schema.permissions import ADMINS, PEERS
from schema.types import (
    PartnerScope,
    Partnership,
    PartnershipStatus,
    partnership_from_row,
)

PARTNERSHIP_ID = IdKind(("Partnership",), "partnership")
MAX_BASE_URL = 500


@strawberry.input(description="A partnership to propose to another co-op's instance.")
class ProposePartnershipInput:
    base_url: str = strawberry.field(
        description="The other instance's base URL (absolute http(s), at most 500 "
        "characters; a trailing slash is ignored). Not this instance's own."
    )
    scopes: list[PartnerScope] = strawberry.field(
        description="What the partnership is for: at least one scope (mutual once agreed)."
    )


@strawberry.input(description="Accept a partnership proposed to us.")
class AcceptPartnershipInput:
    partnership_id: strawberry.ID = strawberry.field(description="The partnership's id.")
    scopes: list[PartnerScope] | None = strawberry.field(
        default=None,
        description="The scopes to grant: a non-empty subset of those requested; all of "
        "them when omitted.",
    )


@strawberry.input(description="The partnership to act on.")
class PartnershipIdInput:
    partnership_id: strawberry.ID = strawberry.field(description="The partnership's id.")


@strawberry.type(description="The result of a partnership mutation.")
class PartnershipPayload:
    partnership: Partnership | None = strawberry.field(
        description="The partnership as it now stands, whenever there is one, with errors "
        "or without; null for an unknown id, or a proposal that wrote nothing (bad input, a "
        "manifest that could not be read, no common protocol version)."
    )
    errors: list[PartnershipError] = strawberry.field(
        description="What went wrong; empty means done, here and at the partner. PARTNER_* "
        "codes and VERSION_MISMATCH: the partner did not take the message (see the "
        "mutation for what was kept, and the partnership's lastError)."
    )


# --- the messages between instances -------------------------------------------------------


@strawberry.input(description="A partnership proposed by the calling instance.")
class PeerProposePartnershipInput:
    proposal_ref: str = strawberry.field(
        description="A UUID the proposer chose; every later message about this "
        "partnership names it."
    )
    base_url: str = strawberry.field(
        description="The proposer's base URL: must be the calling (signing) instance's."
    )
    scopes: list[PartnerScope] = strawberry.field(description="The scopes asked for.")
    protocol_version: str = strawberry.field(
        description="The federation protocol version chosen from both manifests, e.g. "
        "coopnet-federation/1."
    )


@strawberry.input(description="The answer to a proposal this instance made to the caller.")
class PeerAnswerPartnershipInput:
    proposal_ref: str = strawberry.field(description="The proposal's UUID.")
    accepted: bool = strawberry.field(description="true: accepted; false: rejected.")
    scopes: list[PartnerScope] = strawberry.field(
        description="When accepted: the scopes granted, a non-empty subset of those "
        "requested. Ignored when rejected."
    )


@strawberry.input(description="The caller suspended, resumed or ended a partnership.")
class PeerChangePartnershipInput:
    proposal_ref: str = strawberry.field(description="The partnership's proposal UUID.")
    status: PartnershipStatus = strawberry.field(
        description="SUSPENDED (the caller suspended it), ACTIVE (the caller resumed what "
        "it had suspended) or ENDED."
    )


@strawberry.type(description="The receiving instance's answer to a partnership message.")
class PeerPartnershipPayload:
    status: PartnershipStatus | None = strawberry.field(
        description="The partnership's status at the receiver after the message; null with errors."
    )
    scopes: list[PartnerScope] = strawberry.field(
        description="The agreed scopes at the receiver when ACTIVE or SUSPENDED, else empty."
    )
    errors: list[PartnershipError] = strawberry.field(
        description="Why the message was refused; empty means it was taken."
    )


# --- running the flows ------------------------------------------------------------------------


async def _respond(
    info: Info, partnership_id: int | None, errors: list[PartnershipError]
) -> PartnershipPayload:
    partnership = None
    if partnership_id is not None:
        rows = await info.context.rows(queries.partnerships(info.context.viewer, [partnership_id]))
        partnership = partnership_from_row(rows[0]) if rows else None
    return PartnershipPayload(partnership=partnership, errors=errors)


async def _flow(
    info: Info, flow: Callable[[rules.Steps], Awaitable[rules.Outcome]]
) -> PartnershipPayload:
    """Run an admin's flow: each step is its own committed transaction (a failed call's
    record must survive the error the payload reports)."""

    async def run(steps: Steps) -> tuple[int | None, list[DomainError]]:
        outcome = await flow(steps)
        return outcome.partnership_id, outcome.errors

    return await perform_steps(info, PARTNERSHIP, run, _respond)


async def _by_id(
    info: Info,
    value: strawberry.ID,
    flow: Callable[[rules.Steps, int], Awaitable[rules.Outcome]],
) -> PartnershipPayload:
    ids = Ids()
    pk = ids.one(value, PARTNERSHIP_ID, "partnershipId")
    if ids.errors:
        return await _respond(info, None, PARTNERSHIP.convert(ids.errors))
    return await _flow(info, lambda steps: flow(steps, pk))


PeerOutcome = rules.PeerOutcome


async def _peer_respond(
    info: Info, outcome: PeerOutcome | None, errors: list[PartnershipError]
) -> PeerPartnershipPayload:
    if outcome is None:
        return PeerPartnershipPayload(status=None, scopes=[], errors=errors)
    return PeerPartnershipPayload(
        status=PartnershipStatus(outcome.status),
        scopes=[PartnerScope(s) for s in outcome.scopes],
        errors=errors,
    )


async def _peer(
    info: Info, action: Callable[[AsyncSession, Viewer], Awaitable[PeerOutcome]]
) -> PeerPartnershipPayload:
    return await perform(info, PARTNERSHIP, action, _peer_respond)


async def _caller_manifest(info: Info) -> Manifest | PartnerError:
    """The calling instance's manifest: as the door read it, else read now."""
    ctx = info.context
    if ctx.peer_manifest is not None:
        return ctx.peer_manifest
    if ctx.federation is None or ctx.viewer.partner is None:
        return rules.no_client()
    try:
        return await ctx.federation.fetch_manifest(ctx.viewer.partner)
    except PartnerError as exc:
        return exc


def _scopes(values: list[PartnerScope] | None) -> list[str] | None:
    return None if values is None else [s.value for s in values]


@strawberry.type
class PartnershipMutations:
    @mutation(
        access=ADMINS,
        description="Propose a partnership to another co-op's instance (admins): its "
        "manifest is read (nothing is written if it cannot be, or no protocol version is "
        "common), the partnership is recorded as PROPOSED (OUTGOING), then the proposal is "
        "sent. If sending fails, the partnership stays PROPOSED with lastError and the "
        "error is reported: propose again to re-send. A REJECTED or ENDED partnership may "
        "be proposed again; an ACTIVE or SUSPENDED one may not (ALREADY_EXISTS), nor one "
        "the other instance has proposed to us (CLOSED: answer it).",
    )
    async def propose_partnership(
        self,
        info: Info,
        input: Annotated[
            ProposePartnershipInput, strawberry.argument(description="Whom, and for what.")
        ],
    ) -> PartnershipPayload | None:
        if len(input.base_url) > MAX_BASE_URL:
            return await _respond(
                info,
                None,
                PARTNERSHIP.convert(
                    [DomainError(ErrorCode.INVALID, "At most 500 characters.", "baseUrl")]
                ),
            )
        ctx = info.context
        return await _flow(
            info,
            lambda steps: rules.propose(
                steps, ctx.federation, ctx.viewer, input.base_url, _scopes(input.scopes) or []
            ),
        )

    @mutation(
        access=ADMINS,
        description="Accept a partnership proposed to us (admins), granting all the "
        "requested scopes or fewer. The answer is sent first; only when the partner took it "
        "does the partnership become ACTIVE. If it did not, nothing changes but lastError, "
        "and the error is reported: accept again later.",
    )
    async def accept_partnership(
        self,
        info: Info,
        input: Annotated[
            AcceptPartnershipInput, strawberry.argument(description="Which, and what to grant.")
        ],
    ) -> PartnershipPayload | None:
        federation = info.context.federation
        scopes = _scopes(input.scopes)
        return await _by_id(
            info,
            input.partnership_id,
            lambda steps, pk: rules.answer(steps, federation, pk, accepted=True, scopes=scopes),
        )

    @mutation(
        access=ADMINS,
        description="Reject a partnership proposed to us (admins). As with accepting, the "
        "partner hears first; if it did not, nothing changes but lastError. A rejected "
        "partnership may be proposed again by either side.",
    )
    async def reject_partnership(
        self,
        info: Info,
        input: Annotated[PartnershipIdInput, strawberry.argument(description="Which.")],
    ) -> PartnershipPayload | None:
        federation = info.context.federation
        return await _by_id(
            info,
            input.partnership_id,
            lambda steps, pk: rules.answer(steps, federation, pk, accepted=False),
        )

    @mutation(
        access=ADMINS,
        description="Suspend an ACTIVE partnership (admins): neither side's partner calls "
        "are served until this side resumes it. Done here at once; the partner is told "
        "through the outbox, retried until it can be reached (failures in lastError). Asked "
        "again while suspended by this side, only the notice is queued again.",
    )
    async def suspend_partnership(
        self,
        info: Info,
        input: Annotated[PartnershipIdInput, strawberry.argument(description="Which.")],
    ) -> PartnershipPayload | None:
        federation = info.context.federation
        return await _by_id(
            info,
            input.partnership_id,
            lambda steps, pk: rules.change(steps, federation, pk, rules.SUSPENDED),
        )

    @mutation(
        access=ADMINS,
        description="Resume a partnership this side suspended (admins; one the partner "
        "suspended: FORBIDDEN). Done here at once; the partner is told through the outbox, "
        "retried until it can be reached (failures in lastError). Asked again while ACTIVE, "
        "only the notice is queued again.",
    )
    async def resume_partnership(
        self,
        info: Info,
        input: Annotated[PartnershipIdInput, strawberry.argument(description="Which.")],
    ) -> PartnershipPayload | None:
        federation = info.context.federation
        return await _by_id(
            info,
            input.partnership_id,
            lambda steps, pk: rules.change(steps, federation, pk, rules.ACTIVE),
        )

    @mutation(
        access=ADMINS,
        description="End a partnership (admins): an ACTIVE or SUSPENDED one, or withdraw a "
        "proposal of ours. Everything received from the partner is deleted at once; the "
        "partner is told through the outbox, retried until it can be reached, and deletes "
        "what it received from us. Asked again once ENDED, only the notice is queued again.",
    )
    async def end_partnership(
        self,
        info: Info,
        input: Annotated[PartnershipIdInput, strawberry.argument(description="Which.")],
    ) -> PartnershipPayload | None:
        federation = info.context.federation
        return await _by_id(
            info,
            input.partnership_id,
            lambda steps, pk: rules.change(steps, federation, pk, rules.ENDED),
        )

    # --- from other instances (signed calls) ---

    @mutation(
        access=PEERS,
        description="Another instance proposes a partnership (signed call). Recorded as "
        "PROPOSED (INCOMING) for our admins, with the caller's manifest data and keys. "
        "Sending the same proposalRef again is harmless and answers the current status.",
    )
    async def peer_propose_partnership(
        self,
        info: Info,
        input: Annotated[
            PeerProposePartnershipInput, strawberry.argument(description="The proposal.")
        ],
    ) -> PeerPartnershipPayload | None:
        too_long = [
            DomainError(ErrorCode.INVALID, f"At most {limit} characters.", name)
            for name, value, limit in (
                ("baseUrl", input.base_url, MAX_BASE_URL),
                ("proposalRef", input.proposal_ref, 100),
            )
            if len(value) > limit
        ]
        if too_long:
            return await _peer_respond(info, None, PARTNERSHIP.convert(too_long))
        manifest = await _caller_manifest(info)
        if isinstance(manifest, PartnerError):
            error = DomainError(
                PartnerCode.PARTNER_BAD_MANIFEST,
                f"Your manifest could not be read: {manifest.summary()}"[:500],
                "baseUrl",
            )
            return await _peer_respond(info, None, PARTNERSHIP.convert([error]))
        known = manifest
        return await _peer(
            info,
            lambda session, viewer: rules.receive_proposal(
                session,
                viewer,
                known,
                proposal_ref=input.proposal_ref,
                base_url=input.base_url,
                scopes=[s.value for s in input.scopes],
                protocol_version=input.protocol_version,
            ),
        )

    @mutation(
        access=PEERS,
        description="Another instance answers a proposal we made to it (signed call): "
        "accepted (ACTIVE with the granted scopes) or rejected. Must name the proposalRef "
        "of our open proposal to the caller (else NOT_FOUND).",
    )
    async def peer_answer_partnership(
        self,
        info: Info,
        input: Annotated[
            PeerAnswerPartnershipInput, strawberry.argument(description="The answer.")
        ],
    ) -> PeerPartnershipPayload | None:
        manifest = info.context.peer_manifest
        return await _peer(
            info,
            lambda session, viewer: rules.receive_answer(
                session,
                viewer,
                manifest,
                proposal_ref=input.proposal_ref[:100],
                accepted=input.accepted,
                scopes=[s.value for s in input.scopes],
            ),
        )

    @mutation(
        access=PEERS,
        description="Another instance suspended, resumed or ended our partnership (signed "
        "call). ENDED deletes everything we received from it.",
    )
    async def peer_change_partnership(
        self,
        info: Info,
        input: Annotated[
            PeerChangePartnershipInput, strawberry.argument(description="The change.")
        ],
    ) -> PeerPartnershipPayload | None:
        manifest = info.context.peer_manifest
        return await _peer(
            info,
            lambda session, viewer: rules.receive_change(
                session,
                viewer,
                manifest,
                proposal_ref=input.proposal_ref[:100],
                status=input.status.value,
            ),
        )
