"""The co-op's settings: cover rules (admins)."""

from __future__ import annotations

import strawberry

from care import queries
from care.services import coop as service
from schema.context import Info
from schema.errors import COVER, CoverError
from schema.mutations.base import mutation, perform
from schema.permissions import ADMINS
from schema.types import Coop, coop_from_row


@strawberry.input(description="Weights to change; those left out stay as they are.")
class CoverWeightsInput:
    regular_pa: float | None = None
    continuity: float | None = None
    same_cluster: float | None = None
    same_pool: float | None = None
    travel: float | None = None
    contract_hours: float | None = None
    fairness: float | None = None


@strawberry.input(description="Cover rules to change; those left out stay as they are.")
class CoverRulesInput:
    dbs_valid_months: int | None = None
    max_weekly_hours: float | None = None
    min_daily_rest_hours: float | None = None
    cover_offer_ttl_minutes: int | None = None
    weights: CoverWeightsInput | None = None


@strawberry.type
class CoopPayload:
    coop: Coop | None
    errors: list[CoverError]


WEIGHT_NAMES = {
    "regular_pa": "regularPa",
    "continuity": "continuity",
    "same_cluster": "sameCluster",
    "same_pool": "samePool",
    "travel": "travel",
    "contract_hours": "contractHours",
    "fairness": "fairness",
}


async def _respond(info: Info, done: int | None, errors: list[CoverError]) -> CoopPayload:
    coop = None
    if done is not None:
        rows = await info.context.rows(queries.coop())
        coop = coop_from_row(rows[0][0]) if rows else None
    return CoopPayload(coop=coop, errors=errors)


@strawberry.type
class CoopMutations:
    @mutation(access=ADMINS, description="Change the co-op's cover rules and weights (admins).")
    async def update_cover_rules(self, info: Info, input: CoverRulesInput) -> CoopPayload | None:
        weights = None
        if input.weights is not None:
            weights = {WEIGHT_NAMES[k]: v for k, v in vars(input.weights).items() if v is not None}
        rules = service.CoverRules(
            dbs_valid_months=input.dbs_valid_months,
            max_weekly_hours=input.max_weekly_hours,
            min_daily_rest_hours=input.min_daily_rest_hours,
            cover_offer_ttl_minutes=input.cover_offer_ttl_minutes,
            weights=weights,
        )
        return await perform(
            info, COVER, lambda s, v: service.update_cover_rules(s, v, rules), _respond
        )
