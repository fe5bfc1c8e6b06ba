"""The co-op's own settings: the rules cover follows (admins only)."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncSession

from care.enums import Role
from care.errors import DomainError, DomainErrors, ErrorCode, forbidden
from care.models import Coop
from care.viewer import Viewer
from care.weights import DEFAULT_WEIGHTS

MAX_WEIGHT = 100.0


@dataclass(frozen=True)
class CoverRules:
    """Fields to change; None leaves a rule as it is. Weights are merged by name."""

    dbs_valid_months: int | None = None
    max_weekly_hours: float | None = None
    min_daily_rest_hours: float | None = None
    cover_offer_ttl_minutes: int | None = None
    weights: dict[str, float] | None = None


def _check(rules: CoverRules) -> list[DomainError]:
    errors: list[DomainError] = []

    def bad(field: str, message: str) -> None:
        errors.append(DomainError(ErrorCode.INVALID, message, field))

    if rules.dbs_valid_months is not None and not 1 <= rules.dbs_valid_months <= 120:
        bad("dbsValidMonths", "Between 1 and 120 months.")
    if rules.max_weekly_hours is not None and not 1 <= rules.max_weekly_hours <= 168:
        bad("maxWeeklyHours", "Between 1 and 168 hours.")
    if rules.min_daily_rest_hours is not None and not 0 <= rules.min_daily_rest_hours <= 24:
        bad("minDailyRestHours", "Between 0 and 24 hours.")
    if (
        rules.cover_offer_ttl_minutes is not None
        and not 5 <= rules.cover_offer_ttl_minutes <= 10080
    ):
        bad("coverOfferTtlMinutes", "Between 5 minutes and 7 days.")
    for name, value in (rules.weights or {}).items():
        if name not in DEFAULT_WEIGHTS:
            bad("weights", f"Unknown weight {name!r}; known: {', '.join(DEFAULT_WEIGHTS)}.")
        elif not 0 <= value <= MAX_WEIGHT:
            bad("weights", f"The weight of {name} must be between 0 and {MAX_WEIGHT:g}.")
    return errors


async def update_cover_rules(session: AsyncSession, viewer: Viewer, rules: CoverRules) -> int:
    if viewer.role is not Role.ADMIN:
        raise forbidden("Only admins change the co-op's cover rules.")
    errors = _check(rules)
    if errors:
        raise DomainErrors(errors)
    coop = await session.get(Coop, 1, with_for_update=True)
    if coop is None:
        raise DomainError(ErrorCode.NOT_FOUND, "This instance has no co-op yet.", None)
    if rules.dbs_valid_months is not None:
        coop.dbs_valid_months = rules.dbs_valid_months
    if rules.max_weekly_hours is not None:
        coop.max_weekly_hours = Decimal(str(rules.max_weekly_hours))
    if rules.min_daily_rest_hours is not None:
        coop.min_daily_rest_hours = Decimal(str(rules.min_daily_rest_hours))
    if rules.cover_offer_ttl_minutes is not None:
        coop.cover_offer_ttl_minutes = rules.cover_offer_ttl_minutes
    if rules.weights:
        coop.cover_weights = {**(coop.cover_weights or {}), **rules.weights}
    await session.flush()
    return coop.id
