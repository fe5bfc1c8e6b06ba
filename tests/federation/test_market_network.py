"""`networkMarketReport` between two real instances: figures added up before disclosure
control, a partner that is down left out and named, and raw figures never given to an
instance that is not a co-op (federation/market.py)."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Iterator
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import text, update

from care.enums import Role
from care.models import Partnership
from tests.factories import BARNET, Build, at
from tests.federation.conftest import INSTANCE_ENV, start_instances
from tests.federation.instances import Instance
from tests.federation.test_door import partner_on

REPORT = """
query($la: String!, $from: Date!, $to: Date!) {
  networkMarketReport(localAuthority: $la, from: $from, to: $to) {
    answered { name baseUrl }
    leftOut { name baseUrl reason }
    report { periods { start figures { measure breakdown value withheld rounded } } }
  }
}"""
VISIT = at(days=-2)
MONTH = VISIT.astimezone(ZoneInfo("Europe/London")).date().replace(day=1).isoformat()
ARGS = {"la": BARNET, "from": MONTH, "to": dt.date.today().isoformat()}


@pytest.fixture(scope="module")
def pair(migrated_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Instance]]:
    instances = start_instances(
        migrated_url,
        ("ma", "mb"),
        tmp_path_factory.mktemp("market"),
        {**INSTANCE_ENV, "MARKET_PARTNER_TIMEOUT_SECONDS": "3"},
    )
    try:
        yield instances
    finally:
        for instance in instances:
            instance.stop()


async def _four_people(instance: Instance, coop: str) -> None:
    """Four people with a delivered hour each: too few to show on their own."""
    async with instance.session() as db:
        b = Build(db)
        await b.las()
        await b.coop()
        await db.execute(text("UPDATE coop SET name = :n"), {"n": coop})
        cluster = await b.cluster("Finchley")
        pa = await b.pa("Pat Private", cluster=cluster)
        for i in range(4):
            su = await b.service_user(f"Person {coop} {i}", cluster=cluster)
            await b.visit(su, pa, VISIT + dt.timedelta(hours=i), status="COMPLETED")
        await db.execute(
            text("UPDATE visit SET confirmed_at = now(), confirmed_by_id = service_user_id")
        )
        await db.commit()


@pytest.fixture
async def network(pair: list[Instance]) -> AsyncIterator[list[Instance]]:
    a, b = pair
    for instance in pair:
        if instance.process is None:
            instance.start()
    await _four_people(a, "Alpha Co-op")
    await _four_people(b, "Beta Co-op")
    for host, guest, name in ((a, b, "Beta Co-op"), (b, a, "Alpha Co-op")):
        pid = await partner_on(host, guest, scopes=("MARKET_DATA",))
        async with host.session() as db:
            await db.execute(
                update(Partnership).where(Partnership.id == pid).values(coop_name=name)
            )
            await db.commit()
    yield [a, b]
    for instance in pair:
        if instance.process is None:
            instance.start()
        await instance.reset()
        await instance.dispose()


def figure(report: dict[str, Any], measure: str) -> dict[str, Any]:
    [period] = [p for p in report["report"]["periods"] if p["start"] == MONTH]
    return next(f for f in period["figures"] if f["measure"] == measure and not f["breakdown"])


async def test_two_coops_small_alone_are_shown_together(network: list[Instance]) -> None:
    a, b = network
    alone = await a.data(
        """query($la: String!, $from: Date!, $to: Date!) { marketReport(localAuthority: $la,
           from: $from, to: $to) { periods { start figures { measure breakdown value
           withheld rounded } } } }""",
        ARGS,
        token=a.token(Role.ADMIN),
    )
    alone_people = figure({"report": alone["marketReport"]}, "PEOPLE_SUPPORTED")
    assert alone_people["withheld"] == "SMALL_COUNT"  # four people
    together = (await a.data(REPORT, ARGS, token=a.token(Role.ADMIN)))["networkMarketReport"]
    assert [s["name"] for s in together["answered"]] == ["Alpha Co-op", "Beta Co-op"]
    assert together["leftOut"] == []
    people = figure(together, "PEOPLE_SUPPORTED")
    assert people["value"] == 10 and people["rounded"]  # 4 + 4 = 8, rounded to 10
    hours = figure(together, "HOURS_DELIVERED")
    assert hours["withheld"] is None and hours["value"] == 8  # eight people, one hour each
    assert figure(together, "COOPS_ACTIVE")["value"] == 2
    # An analyst of the area gets the same.
    analyst = a.token(Role.LA_ANALYST, la=BARNET)
    again = (await a.data(REPORT, ARGS, token=analyst))["networkMarketReport"]
    assert figure(again, "PEOPLE_SUPPORTED")["value"] == 10


async def test_a_partner_that_is_down_is_left_out_and_named(network: list[Instance]) -> None:
    a, b = network
    b.stop()
    answer = (await a.data(REPORT, ARGS, token=a.token(Role.ADMIN)))["networkMarketReport"]
    assert [s["name"] for s in answer["answered"]] == ["Alpha Co-op"]
    [left] = answer["leftOut"]
    assert left["name"] == "Beta Co-op" and left["baseUrl"] == b.base_url
    assert left["reason"].startswith("UNREACHABLE")
    assert figure(answer, "PEOPLE_SUPPORTED")["withheld"] == "SMALL_COUNT"  # ours alone
    async with a.session() as db:
        error = await db.scalar(text("SELECT last_error FROM partnership"))
    assert error is not None and error.startswith("UNREACHABLE")


async def test_raw_figures_go_to_partner_coops_only(network: list[Instance]) -> None:
    a, b = network
    # On B, A is now a council's instance: no co-op in what B knows of it.
    async with b.session() as db:
        await db.execute(update(Partnership).values(coop_name=None))
        await db.commit()
    answer = (await a.data(REPORT, ARGS, token=a.token(Role.ADMIN)))["networkMarketReport"]
    [left] = answer["leftOut"]
    assert "FORBIDDEN" in left["reason"]
    assert figure(answer, "PEOPLE_SUPPORTED")["withheld"] == "SMALL_COUNT"
