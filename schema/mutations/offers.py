"""Cover offer mutations: offer a cover request to PAs (or a cluster or pool), withdraw an
offer, and the PA's accept or decline. The rules live in `care.services.offers`; this
module decodes ids and builds payloads."""

from __future__ import annotations

import asyncio
from enum import Enum
from typing import Annotated

import strawberry
from sqlalchemy.ext.asyncio import AsyncSession

from care.services import offers as service
from care.services.offers import OfferResult, OfferTarget, SkippedPa
from care.viewer import Viewer
from federation import exchange
from schema.candidates import ExclusionRuleCount, RuledOutPa, rule_counts, ruled_out_fields
from schema.context import Info
from schema.errors import COVER, CoverError
from schema.mutations.base import (
    CLUSTER_ID,
    COVER_OFFER_ID,
    COVER_REQUEST_ID,
    PA_ID,
    POOL_ID,
    Ids,
    mutation,
    perform,
)
from schema.permissions import MANAGING, PAS
from schema.types import CoverOffer, PersonalAssistant, load_cover_offer, load_member

OfferIdArg = Annotated[strawberry.ID, strawberry.argument(description="The cover offer's id.")]


@strawberry.input(
    description="Offer a cover request to some PAs, or to every candidate of a cluster or "
    "a pool: give exactly one of paIds, clusterId and poolId."
)
class OfferCoverInput:
    cover_request_id: strawberry.ID = strawberry.field(
        description="The open cover request to offer."
    )
    pa_ids: list[strawberry.ID] | None = strawberry.field(
        default=None,
        description="PAs who must all be candidates for the visit (else nothing is offered).",
    )
    cluster_id: strawberry.ID | None = strawberry.field(
        default=None, description="Offer to the cluster's PAs who are candidates."
    )
    pool_id: strawberry.ID | None = strawberry.field(
        default=None, description="Offer to the pool's PAs who are candidates."
    )
    expires_in_minutes: int | None = strawberry.field(
        default=None,
        description="5 to 10080 (7 days). Default: the co-op's cover offer time.",
    )


SkipReason = strawberry.enum(  # type: ignore[call-overload]
    Enum(  # type: ignore[misc]
        "SkipReason",
        {
            "NOT_A_CANDIDATE": strawberry.enum_value(
                "NOT_A_CANDIDATE",
                description="The PA is not a candidate for the visit (see `rules`).",
            ),
            "ALREADY_OFFERED": strawberry.enum_value(
                "ALREADY_OFFERED",
                description="The PA already holds an open offer for this request.",
            ),
        },
    ),
    name="SkipReason",
    description="Why a PA of the cluster or pool offered to got no offer.",
)


@strawberry.type(
    name="SkippedPa",
    description="A PA of the cluster or pool offered to who got no offer, and why.",
)
class SkippedPaType(RuledOutPa):
    reason: SkipReason = strawberry.field(  # type: ignore[valid-type]
        description="Why the PA got no offer."
    )

    @strawberry.field(description="The PA; null if the caller may not see them.")
    async def pa(self, info: Info) -> PersonalAssistant | None:
        member = await load_member(info, self.pa_id)
        return member if isinstance(member, PersonalAssistant) else None


def _skipped(p: SkippedPa) -> SkippedPaType:
    return SkippedPaType(reason=SkipReason(p.reason), **ruled_out_fields(p.exclusion, p.pa_id))


@strawberry.type(description="The result of offering cover.")
class OfferCoverPayload:
    offers: list[CoverOffer] = strawberry.field(
        description="The offers made, one per PA; empty when errors is non-empty."
    )
    skipped: int = strawberry.field(
        description="PAs of the target who got no offer: not candidates for the visit "
        "(cluster or pool only), or already holding an open offer for it. 0 when errors "
        "is non-empty."
    )
    skipped_pas: list[SkippedPaType] = strawberry.field(
        description="The PAs counted in `skipped`, by PA id, each with why: not a "
        "candidate (and the rules that rule them out), or already offered. Empty when "
        "errors is non-empty.",
    )
    skipped_by_rule: list[ExclusionRuleCount] = strawberry.field(
        description="How many of the skipped PAs each hard rule ruled out (rules nobody "
        "fails are left out): why a cluster or pool has no candidates.",
    )
    errors: list[CoverError] = strawberry.field(
        description="Why nothing was offered; empty means the offers were committed."
    )


@strawberry.type(description="The result of withdrawing, accepting or declining an offer.")
class CoverOfferPayload:
    offer: CoverOffer | None = strawberry.field(
        description="The offer as it now is; null when errors is non-empty."
    )
    errors: list[CoverError] = strawberry.field(
        description="Why nothing was changed; empty means the change was committed."
    )


async def _offer_payload(
    info: Info, offer_id: int | None, errors: list[CoverError]
) -> CoverOfferPayload:
    offer = await load_cover_offer(info, offer_id) if offer_id is not None else None
    return CoverOfferPayload(offer=offer, errors=errors)


async def _offers_payload(
    info: Info, result: OfferResult | None, errors: list[CoverError]
) -> OfferCoverPayload:
    if result is None:
        return OfferCoverPayload(
            offers=[], skipped=0, skipped_pas=[], skipped_by_rule=[], errors=errors
        )
    loaded = await asyncio.gather(*(load_cover_offer(info, i) for i in result.offer_ids))
    exclusions = [p.exclusion for p in result.skipped_pas if p.exclusion is not None]
    return OfferCoverPayload(
        offers=[o for o in loaded if o is not None],
        skipped=result.skipped,
        skipped_pas=[_skipped(p) for p in result.skipped_pas],
        skipped_by_rule=rule_counts(exclusions),
        errors=[],
    )


async def _answer(
    info: Info, id: strawberry.ID, action: service.OfferAction
) -> CoverOfferPayload | None:
    ids = Ids()
    offer_id = ids.one(id, COVER_OFFER_ID, "id")
    return await perform(info, COVER, lambda s, v: action(s, v, offer_id), _offer_payload, ids)


@strawberry.type
class OfferMutations:
    @mutation(
        access=MANAGING,
        description="Offer cover for a visit (admins and the person's coordinators). Only "
        "candidates get offers; each expires after expiresInMinutes.",
    )
    async def offer_cover(
        self,
        info: Info,
        input: Annotated[
            OfferCoverInput, strawberry.argument(description="Whom to offer the cover request to.")
        ],
    ) -> OfferCoverPayload | None:
        ids = Ids()
        request_id = ids.one(input.cover_request_id, COVER_REQUEST_ID, "coverRequestId")
        target = OfferTarget(
            pa_ids=None if input.pa_ids is None else ids.many(input.pa_ids, PA_ID, "paIds"),
            cluster_id=ids.optional(input.cluster_id, CLUSTER_ID, "clusterId"),
            pool_id=ids.optional(input.pool_id, POOL_ID, "poolId"),
        )
        return await perform(
            info,
            COVER,
            lambda s, v: service.offer_cover(s, v, request_id, target, input.expires_in_minutes),
            _offers_payload,
            ids,
        )

    @mutation(access=MANAGING, description="Take back an open offer (admins and coordinators).")
    async def withdraw_cover_offer(self, info: Info, id: OfferIdArg) -> CoverOfferPayload | None:
        return await _answer(info, id, service.withdraw_offer)

    @mutation(
        access=PAS,
        description="Accept an offer made to you (PAs). The first valid acceptance covers "
        "the visit; the request's other offers close, and a partner co-op asked to cover "
        "it is told its cover is no longer needed.",
    )
    async def accept_cover_offer(self, info: Info, id: OfferIdArg) -> CoverOfferPayload | None:
        async def accept(s: AsyncSession, v: Viewer, offer_id: int) -> int:
            done = await service.accept_offer(s, v, offer_id)
            return await exchange.settled_by_offer(s, v, done)

        return await _answer(info, id, accept)

    @mutation(access=PAS, description="Decline an offer made to you (PAs).")
    async def decline_cover_offer(self, info: Info, id: OfferIdArg) -> CoverOfferPayload | None:
        return await _answer(info, id, service.decline_offer)
