"""`GET /exports/market.csv`: the market report as CSV, under the same rules."""

from __future__ import annotations

import csv
import io
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from care.enums import Role
from tests.conftest import Api
from tests.factories import BARNET, ENFIELD, Build, at
from tests.schema.test_market_report import ARGS, REPORT

PARAMS = {"localAuthority": BARNET, "from": ARGS["from"], "to": ARGS["to"]}


@pytest.fixture
async def world(db: AsyncSession) -> None:
    b = Build(db)
    await b.las()
    await b.coop()
    cluster = await b.cluster("Finchley")
    pa = await b.pa("Pat Private", cluster=cluster)
    for i in range(9):
        su = await b.service_user(f"Person {i}", cluster=cluster)
        await b.visit(su, pa, at(days=-2, hours=-i), status="COMPLETED")
    await db.execute(
        text("UPDATE visit SET confirmed_at = now(), confirmed_by_id = service_user_id")
    )
    await db.commit()


async def get(client: httpx.AsyncClient, token: str | None, **params: str) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return await client.get("/exports/market.csv", params={**PARAMS, **params}, headers=headers)


async def test_the_csv_has_the_figures_of_the_report(
    api: Api, client: httpx.AsyncClient, world: None
) -> None:
    token = api.tokens.issue(Role.LA_ANALYST, la_code=BARNET)
    response = await get(client, token)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.text)))
    report = (await api.query(REPORT, ARGS, token=token))["data"]["marketReport"]
    expected = [
        (p["start"], f["measure"], f["breakdown"] or "", f["value"], f["withheld"] or "")
        for p in report["periods"]
        for f in p["figures"]
    ]
    got = [
        (
            r["period_start"],
            r["measure"],
            r["breakdown"],
            float(r["value"]) if r["value"] else None,
            r["withheld"],
        )
        for r in rows
        if r["measure"]
        not in {"FREE_PA_HOURS_NEXT_4_WEEKS", "REFERRALS_WAITING", "MEDIAN_REFERRAL_WAIT_DAYS"}
    ]
    assert got == expected
    delivered = [r for r in rows if r["measure"] == "PEOPLE_SUPPORTED" and not r["breakdown"]]
    assert any(r["value"] == "10" and r["rounded"] == "true" for r in delivered)  # 9 -> 10
    assert "Private" not in response.text and "Person" not in response.text
    assert {r["local_authority"] for r in rows} == {BARNET}


async def test_refusals_keep_their_codes(api: Api, client: httpx.AsyncClient, world: None) -> None:
    cases: list[tuple[Any, dict[str, str], int, str]] = [
        (None, {}, 401, "UNAUTHENTICATED"),
        (api.tokens.issue(Role.LA_ANALYST, la_code=ENFIELD), {}, 403, "FORBIDDEN"),
        (api.token(Role.COORDINATOR, 1), {}, 403, "FORBIDDEN"),
        (api.token(Role.ADMIN), {"localAuthority": "E09999999"}, 404, "NOT_FOUND"),
        (api.token(Role.ADMIN), {"from": "2026-13-01"}, 400, "BAD_USER_INPUT"),
        (api.token(Role.ADMIN), {"granularity": "YEAR"}, 400, "BAD_USER_INPUT"),
        (api.token(Role.ADMIN), {"from": "2020-01-01"}, 400, "BAD_USER_INPUT"),
    ]
    for token, params, status, code in cases:
        response = await get(client, token, **params)
        assert response.status_code == status, (params, response.text)
        assert response.json()["errors"][0]["extensions"]["code"] == code
