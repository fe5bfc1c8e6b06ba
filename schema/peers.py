"""What a partner instance may ask about its own partnership with this instance (rule
`PEERS`): the state this instance records, so two instances can compare notes after a
notice between them was lost (docs/federation.md, section 7)."""

from __future__ import annotations

import strawberry

from care import queries
from care.enums import PartnershipSide
from schema.context import Info
from schema.permissions import PEERS, guard
from schema.types import PartnerScope, PartnershipStatus

_SWAP = {
    PartnershipSide.US.value: PartnershipSide.PARTNER,
    PartnershipSide.PARTNER.value: PartnershipSide.US,
}


@strawberry.type(
    description="A partnership as this instance records it, told to the partner instance "
    "it is with."
)
class PeerPartnership:
    proposal_ref: str = strawberry.field(
        description="The partnership's reference, chosen by the side that proposed it."
    )
    status: PartnershipStatus = strawberry.field(description="Where it stands here.")
    granted_scopes: list[PartnerScope] = strawberry.field(
        description="The scopes agreed (empty until accepted)."
    )
    suspended_by: PartnershipSide | None = strawberry.field(
        description="Who suspended it, from the caller's point of view: US is the caller."
    )


@strawberry.type
class PeerQueries:
    @strawberry.field(
        description="For partner instances (signed calls): this instance's record of its "
        "partnership with the caller; null when there is none.",
        extensions=guard(PEERS),
    )
    async def peer_partnership(self, info: Info) -> PeerPartnership | None:
        partner = info.context.viewer.partner
        if partner is None:
            return None
        rows = await info.context.rows(queries.partnership_with(partner))
        if not rows:
            return None
        row = rows[0]
        return PeerPartnership(
            proposal_ref=str(row.proposal_ref),
            status=PartnershipStatus(row.status),
            granted_scopes=[PartnerScope(s) for s in row.granted_scopes],
            suspended_by=_SWAP[row.suspended_by] if row.suspended_by else None,
        )
