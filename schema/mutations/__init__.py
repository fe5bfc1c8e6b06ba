"""Root mutation type, merged from one class per area."""

import strawberry

from schema.exchange import CoverExchangeMutations
from schema.expansion import ExpansionMutations
from schema.feed import FeedMutations
from schema.mutations.absences import AbsenceMutations
from schema.mutations.availability import AvailabilityMutations
from schema.mutations.clusters import ClusterMutations
from schema.mutations.coop import CoopMutations
from schema.mutations.members import MemberMutations
from schema.mutations.offers import OfferMutations
from schema.mutations.partnerships import PartnershipMutations
from schema.mutations.pools import PoolMutations
from schema.mutations.referrals import ReferralMutations
from schema.mutations.tokens import TokenMutations
from schema.mutations.visits import VisitMutations
from schema.vocabulary import CareTermMutations


@strawberry.type(
    description="Every change to the co-op's records. Each field is its own transaction: a "
    "payload without errors means the change was committed; a payload with errors means "
    "nothing was written."
)
class Mutation(
    MemberMutations,
    ClusterMutations,
    PoolMutations,
    AvailabilityMutations,
    VisitMutations,
    AbsenceMutations,
    OfferMutations,
    CoopMutations,
    TokenMutations,
    PartnershipMutations,
    FeedMutations,
    ReferralMutations,
    CoverExchangeMutations,
    ExpansionMutations,
    CareTermMutations,
):
    pass


__all__ = ["Mutation"]
