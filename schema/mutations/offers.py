"""Cover offer mutations: offer a cover request to PAs (or a cluster or pool), withdraw an
offer, and the PA's accept or decline. The rules live in `care.services.offers`; this
module decodes ids and builds payloads."""

from __future__ import annotations

import asyncio

import strawberry
from strawberry import relay

from care.errors import DomainError, not_found
from care.services import offers as service
from care.services.offers import OfferResult, OfferTarget
from schema.context import Info
from schema.errors import CoverError, cover_errors
from schema.mutations.runner import run_mutation
from schema.permissions import decode_id, id_or_error, require_coop_member
from schema.types import CoverOffer, load_cover_offer


@strawberry.input(
    description="Offer a cover request to some PAs, or to every candidate of a cluster or "
    "a pool: give exactly one of paIds, clusterId and poolId."
)
class OfferCoverInput:
    cover_request_id: relay.GlobalID
    pa_ids: list[relay.GlobalID] | None = strawberry.field(
        default=None,
        description="PAs who must all be candidates for the visit (else nothing is offered).",
    )
    cluster_id: relay.GlobalID | None = strawberry.field(
        default=None, description="Offer to the cluster's PAs who are candidates."
    )
    pool_id: relay.GlobalID | None = strawberry.field(
        default=None, description="Offer to the pool's PAs who are candidates."
    )
    expires_in_minutes: int | None = strawberry.field(
        default=None,
        description="5 to 10080 (7 days). Default: the co-op's cover offer time.",
    )


@strawberry.type
class OfferCoverPayload:
    offers: list[CoverOffer] = strawberry.field(description="The offers made, one per PA.")
    skipped: int = strawberry.field(
        description="PAs of the target who got no offer: not candidates for the visit "
        "(cluster or pool only), or already holding an open offer for it."
    )
    errors: list[CoverError]


@strawberry.type
class CoverOfferPayload:
    offer: CoverOffer | None
    errors: list[CoverError]


def _optional(
    global_id: relay.GlobalID | None,
    type_name: str,
    what: str,
    field: str,
    errors: list[DomainError],
) -> int | None:
    if global_id is None:
        return None
    return id_or_error(global_id, type_name, what, field, errors)


async def _offer_payload(
    info: Info, offer_id: int | None, errors: list[DomainError]
) -> CoverOfferPayload:
    offer = await load_cover_offer(info, offer_id) if offer_id is not None and not errors else None
    return CoverOfferPayload(offer=offer, errors=cover_errors(errors))


async def _answer(info: Info, id: relay.GlobalID, action: service.OfferAction) -> CoverOfferPayload:
    errors: list[DomainError] = []
    offer_id = id_or_error(id, "CoverOffer", "cover offer", "id", errors)
    if errors:
        return await _offer_payload(info, None, errors)
    result, errors = await run_mutation(info, lambda s, v: action(s, v, offer_id))
    return await _offer_payload(info, result, errors)


@strawberry.type
class OfferMutations:
    @strawberry.mutation(
        description="Offer cover for a visit (admins and the person's coordinators). Only "
        "candidates get offers; each expires after expiresInMinutes."
    )
    async def offer_cover(self, info: Info, input: OfferCoverInput) -> OfferCoverPayload:
        require_coop_member(info.context.viewer)
        errors: list[DomainError] = []
        request_id = id_or_error(
            input.cover_request_id, "CoverRequest", "cover request", "coverRequestId", errors
        )
        pa_ids: list[int] | None = None
        if input.pa_ids is not None:
            decoded = [decode_id(g, "PersonalAssistant") for g in input.pa_ids]
            if any(d is None for d in decoded):
                errors.append(not_found("personal assistant", "paIds"))
            pa_ids = [d for d in decoded if d is not None]
        target = OfferTarget(
            pa_ids=pa_ids,
            cluster_id=_optional(input.cluster_id, "Cluster", "cluster", "clusterId", errors),
            pool_id=_optional(input.pool_id, "Pool", "pool", "poolId", errors),
        )
        result: OfferResult | None = None
        if not errors:
            rid = request_id
            result, errors = await run_mutation(
                info,
                lambda s, v: service.offer_cover(s, v, rid, target, input.expires_in_minutes),
            )
        if result is None or errors:
            return OfferCoverPayload(offers=[], skipped=0, errors=cover_errors(errors))
        loaded = await asyncio.gather(*(load_cover_offer(info, i) for i in result.offer_ids))
        return OfferCoverPayload(
            offers=[o for o in loaded if o is not None], skipped=result.skipped, errors=[]
        )

    @strawberry.mutation(description="Take back an open offer (admins and coordinators).")
    async def withdraw_cover_offer(self, info: Info, id: relay.GlobalID) -> CoverOfferPayload:
        require_coop_member(info.context.viewer)
        return await _answer(info, id, service.withdraw_offer)

    @strawberry.mutation(
        description="Accept an offer made to you (PAs). The first valid acceptance covers "
        "the visit; the request's other offers close."
    )
    async def accept_cover_offer(self, info: Info, id: relay.GlobalID) -> CoverOfferPayload:
        require_coop_member(info.context.viewer)
        return await _answer(info, id, service.accept_offer)

    @strawberry.mutation(description="Decline an offer made to you (PAs).")
    async def decline_cover_offer(self, info: Info, id: relay.GlobalID) -> CoverOfferPayload:
        require_coop_member(info.context.viewer)
        return await _answer(info, id, service.decline_offer)
