"""The co-op's cover rules: read by its people, changed by admins, and used for ranking."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from care.enums import Role
from care.models import Coop
from tests.conftest import Api
from tests.factories import Build

RULES = """{ coop { coverRules { dbsValidMonths maxWeeklyHours coverOfferTtlMinutes
  weights { regularPa continuity travel } } } }"""
UPDATE = """mutation($input: CoverRulesInput!) { updateCoverRules(input: $input) {
  coop { coverRules { maxWeeklyHours weights { regularPa continuity } } }
  errors { field code } } }"""


@pytest.fixture
async def coop(db: AsyncSession) -> None:
    b = Build(db)
    await b.las()
    await b.coop()
    await db.commit()


async def test_defaults_are_shown_to_the_coop_not_outsiders(api: Api, coop: None) -> None:
    data = await api.data(RULES, token=api.token(Role.ADMIN))
    assert data["coop"]["coverRules"] == {
        "dbsValidMonths": 36,
        "maxWeeklyHours": 48.0,
        "coverOfferTtlMinutes": 120,
        "weights": {"regularPa": 3.0, "continuity": 3.0, "travel": 1.0},
    }
    anonymous = await api.data(RULES)
    assert anonymous["coop"]["coverRules"] is None


async def test_admin_changes_rules_and_weights_merge(
    api: Api, coop: None, db: AsyncSession
) -> None:
    data = await api.data(
        UPDATE,
        {"input": {"maxWeeklyHours": 40, "weights": {"continuity": 5}}},
        token=api.token(Role.ADMIN),
    )
    assert data["updateCoverRules"] == {
        "coop": {
            "coverRules": {"maxWeeklyHours": 40.0, "weights": {"regularPa": 3.0, "continuity": 5.0}}
        },
        "errors": [],
    }
    stored = (await db.execute(select(Coop.cover_weights, Coop.max_weekly_hours))).one()
    assert stored.cover_weights == {"continuity": 5}
    assert float(stored.max_weekly_hours) == 40.0


@pytest.mark.parametrize(
    "change,field",
    [
        ({"maxWeeklyHours": 0}, "maxWeeklyHours"),
        ({"dbsValidMonths": 500}, "dbsValidMonths"),
        ({"coverOfferTtlMinutes": 1}, "coverOfferTtlMinutes"),
        ({"weights": {"travel": -1}}, "weights"),
    ],
)
async def test_bad_rules_change_nothing(
    api: Api, coop: None, db: AsyncSession, change: dict[str, object], field: str
) -> None:
    data = await api.data(UPDATE, {"input": change}, token=api.token(Role.ADMIN))
    assert data["updateCoverRules"]["errors"] == [{"field": field, "code": "INVALID"}]
    stored = (await db.execute(select(Coop.max_weekly_hours, Coop.cover_weights))).one()
    assert (float(stored.max_weekly_hours), stored.cover_weights) == (48.0, {})


async def test_only_admins_change_rules(api: Api, coop: None, db: AsyncSession) -> None:
    worker = await Build(db).worker()
    await db.commit()
    refused = await api.refused(
        UPDATE, {"input": {"maxWeeklyHours": 30}}, token=api.token(Role.COORDINATOR, worker.id)
    )
    assert refused == "FORBIDDEN"
