"""The co-op's settings: cover rules (admins)."""

from __future__ import annotations

from typing import Annotated

import strawberry

from care import queries
from care.services import coop as service
from care.weights import DEFAULT_WEIGHTS, column_name
from schema.context import Info
from schema.errors import COVER, CoverError
from schema.mutations.base import mutation, perform
from schema.permissions import ADMINS
from schema.types import Coop, coop_from_row


@strawberry.input(
    description="Weights of the cover candidate score to change; those left out (or null) "
    "stay as they are. 0 switches a preference off."
)
class CoverWeightsInput:
    regular_pa: float | None = strawberry.field(
        default=None, description="Weight of being one of the person's regular PAs (default 3)."
    )
    continuity: float | None = strawberry.field(
        default=None,
        description="Weight of recent visits to the person, last 8 weeks (default 3).",
    )
    same_cluster: float | None = strawberry.field(
        default=None,
        description="Weight of being on the team of the person's cluster (default 2).",
    )
    same_pool: float | None = strawberry.field(
        default=None,
        description="Weight of being in a pool serving the person's cluster (default 1).",
    )
    travel: float | None = strawberry.field(
        default=None, description="Weight of living close to the person (default 1)."
    )
    contract_hours: float | None = strawberry.field(
        default=None,
        description="Weight of contracted hours not yet booked that week (default 1).",
    )
    fairness: float | None = strawberry.field(
        default=None,
        description="Weight of having filled few cover requests lately (default 1).",
    )


@strawberry.input(description="Cover rules to change; those left out (or null) stay as they are.")
class CoverRulesInput:
    dbs_valid_months: int | None = strawberry.field(
        default=None,
        description="Months a DBS check stays valid for cover, 1 to 120 (default 36).",
    )
    max_weekly_hours: float | None = strawberry.field(
        default=None,
        description="Most hours a PA works in any 7 days, 1 to 168 (default 48); PAs who "
        "opted out are exempt.",
    )
    min_daily_rest_hours: float | None = strawberry.field(
        default=None, description="Least rest between working days, 0 to 24 hours (default 11)."
    )
    cover_offer_ttl_minutes: int | None = strawberry.field(
        default=None,
        description="Minutes a cover offer stays open, 5 to 10080 (default 120).",
    )
    weights: CoverWeightsInput | None = strawberry.field(
        default=None, description="Weights of the candidate score."
    )


@strawberry.type(description="The result of a change to the co-op's settings.")
class CoopPayload:
    coop: Coop | None = strawberry.field(
        description="The co-op as it now is; null when errors is non-empty."
    )
    errors: list[CoverError] = strawberry.field(
        description="Why nothing was changed; empty means the change was committed."
    )


# The name each weight is stored by (`care.weights.DEFAULT_WEIGHTS`), by the input's
# Python field names.
WEIGHT_NAMES = {column_name(name): name for name in DEFAULT_WEIGHTS}


async def _respond(info: Info, done: int | None, errors: list[CoverError]) -> CoopPayload:
    coop = None
    if done is not None:
        # The select both read paths read (admins only here: the rules are shown).
        rows = await info.context.rows(queries.coop_select(info.context.viewer))
        coop = coop_from_row(rows[0]) if rows else None
    return CoopPayload(coop=coop, errors=errors)


@strawberry.type
class CoopMutations:
    @mutation(access=ADMINS, description="Change the co-op's cover rules and weights (admins).")
    async def update_cover_rules(
        self,
        info: Info,
        input: Annotated[CoverRulesInput, strawberry.argument(description="The rules to change.")],
    ) -> CoopPayload | None:
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
