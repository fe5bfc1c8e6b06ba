"""PAs' pay (`hourlyPayPence`, `payRates`): admins and the PA themself only; the history
and leaving dates are kept by the database (migration 0015)."""

from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from care.enums import Role
from care.models import Member, PaPayRate, PaProfile
from tests.conftest import Api
from tests.factories import Build, at, gid

PAY = """
query($id: ID!) {
  node(id: $id) { ... on PersonalAssistant { name hourlyPayPence
                                              payRates { effectiveFrom hourlyPayPence } } }
}"""

LONDON_TODAY = lambda: dt.datetime.now(ZoneInfo("Europe/London")).date()  # noqa: E731


@pytest.fixture
async def world(db: AsyncSession) -> dict[str, Any]:
    b = Build(db)
    await b.las()
    await b.coop()
    coordinator = await b.worker("Cora Ordinator")
    cluster = await b.cluster("Finchley", support_worker=coordinator)
    su = await b.service_user("Ada User", cluster=cluster)
    pa = await b.pa("Pat Paid", cluster=cluster)
    other_pa = await b.pa("Oli Other", cluster=cluster)
    await b.visit(su, pa, at(days=-1))
    await db.commit()
    return {"coordinator": coordinator, "su": su, "pa": pa, "other_pa": other_pa}


async def pay_as(api: Api, pa: Any, token: str | None) -> dict[str, Any] | None:
    body = await api.query(PAY, {"id": gid("PersonalAssistant", pa.id)}, token=token)
    assert not body.get("errors"), body
    node: dict[str, Any] | None = body["data"]["node"]
    return node


async def test_admins_and_the_pa_see_pay_and_its_history(api: Api, world: dict[str, Any]) -> None:
    pa = world["pa"]
    for token in (api.token(Role.ADMIN), api.token(Role.PA, pa.id)):
        node = await pay_as(api, pa, token)
        assert node is not None and node["hourlyPayPence"] == 1345
        assert node["payRates"] == [
            {"effectiveFrom": LONDON_TODAY().isoformat(), "hourlyPayPence": 1345}
        ]


@pytest.mark.parametrize("who", ["coordinator", "other_pa", "su"])
async def test_nobody_else_sees_pay(api: Api, world: dict[str, Any], who: str) -> None:
    role = {"coordinator": Role.COORDINATOR, "other_pa": Role.PA, "su": Role.SERVICE_USER}[who]
    node = await pay_as(api, world["pa"], api.token(role, world[who].id))
    # Each of them sees the PA, never the pay: the coordinator of the cluster, the person
    # visited, and a PA on the same cluster team (teammates know each other's names).
    assert node == {"name": "Pat Paid", "hourlyPayPence": None, "payRates": []}


async def test_analysts_and_strangers_see_no_pa_at_all(api: Api, world: dict[str, Any]) -> None:
    for token in (api.tokens.issue(Role.LA_ANALYST, la_code="E09000003"), None):
        body = await api.query(PAY, {"id": gid("PersonalAssistant", world["pa"].id)}, token=token)
        assert (body.get("data") or {}).get("node") is None


async def test_each_change_of_pay_is_dated_and_one_day_keeps_its_last_rate(
    db: AsyncSession, world: dict[str, Any]
) -> None:
    pa_id = world["pa"].id
    # A rate from before (as if set last month), then two changes today.
    await db.execute(
        text("UPDATE pa_pay_rate SET effective_from = effective_from - 30 WHERE pa_id = :p"),
        {"p": pa_id},
    )
    profile = await db.get(PaProfile, pa_id)
    assert profile is not None
    profile.hourly_pay_pence = 1400
    await db.commit()
    profile.hourly_pay_pence = 1450
    await db.commit()
    rates = (
        await db.execute(
            select(PaPayRate.effective_from, PaPayRate.hourly_pay_pence)
            .where(PaPayRate.pa_id == pa_id)
            .order_by(PaPayRate.effective_from)
        )
    ).all()
    today = LONDON_TODAY()
    assert [r.effective_from for r in rates] == [today - dt.timedelta(days=30), today]
    assert rates[-1].hourly_pay_pence == 1450


async def test_leaving_is_dated_and_coming_back_clears_it(
    db: AsyncSession, world: dict[str, Any]
) -> None:
    member = await db.get(Member, world["other_pa"].id)
    assert member is not None and member.left_on is None
    member.active = False
    await db.commit()
    await db.refresh(member)
    assert member.left_on == LONDON_TODAY()
    member.active = True
    await db.commit()
    await db.refresh(member)
    assert member.left_on is None
