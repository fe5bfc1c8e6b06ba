"""`marketReport`: who may ask for which local authority, bad input, no personal data,
and a statement count that does not grow with the data."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from care.enums import PartnerScope, PartnershipStatus, Role
from care.models import Partnership
from care.viewer import Viewer
from schema import create_schema
from schema.context import Context, Limits
from tests.conftest import Api, StatementCounter
from tests.factories import BARNET, ENFIELD, Build, at

REPORT = """
query($la: String!, $from: Date!, $to: Date!, $g: Granularity) {
  marketReport(localAuthority: $la, from: $from, to: $to, granularity: $g) {
    localAuthority { gssCode name }
    granularity
    disclosure { minPeople roundingBase }
    periods { start end figures { measure breakdown value unit withheld rounded } }
    capacity { measure value withheld }
  }
}"""

TODAY = dt.date.today()
ARGS = {"la": BARNET, "from": (TODAY - dt.timedelta(days=60)).isoformat(), "to": TODAY.isoformat()}


@pytest.fixture
async def world(db: AsyncSession) -> dict[str, Any]:
    b = Build(db)
    await b.las()
    await b.coop()
    coordinator = await b.worker("Cora Ordinator")
    cluster = await b.cluster("Finchley", support_worker=coordinator)
    pa = await b.pa("Pat Private", cluster=cluster)
    su = await b.service_user("Ada Private", cluster=cluster)
    carer = await b.carer(su, name="Cara Private")
    await b.visit(su, pa, at(days=-3), status="COMPLETED")
    await db.execute(
        text("UPDATE visit SET confirmed_at = now(), confirmed_by_id = service_user_id")
    )
    await db.commit()
    return {"coordinator": coordinator, "pa": pa, "su": su, "carer": carer, "cluster": cluster}


async def test_an_analyst_gets_their_own_local_authority_without_personal_data(
    api: Api, world: dict[str, Any]
) -> None:
    token = api.tokens.issue(Role.LA_ANALYST, la_code=BARNET)
    body = await api.query(REPORT, ARGS, token=token)
    assert not body.get("errors"), body
    report = body["data"]["marketReport"]
    assert report["localAuthority"] == {"gssCode": BARNET, "name": "Barnet"}
    assert report["disclosure"] == {"minPeople": 8, "roundingBase": 5}
    assert len(report["periods"]) in (3, 4)  # the months the 60 days touch
    first = report["periods"][0]
    assert first["start"].endswith("-01")
    measures = {f["measure"] for p in report["periods"] for f in p["figures"]}
    assert {"PEOPLE_SUPPORTED", "HOURS_DELIVERED", "PA_HEADCOUNT", "COVER_FILL_RATE"} <= measures
    # One person, one PA: every count of people is withheld, and no name travels.
    text = json.dumps(body)
    for name in ("Pat Private", "Ada Private", "Cara Private", "Cora Ordinator"):
        assert name not in text
    people = [
        f
        for p in report["periods"]
        for f in p["figures"]
        if f["measure"] == "PEOPLE_SUPPORTED" and f["breakdown"] is None
    ]
    assert any(f["withheld"] == "SMALL_COUNT" and f["value"] is None for f in people)


async def test_an_analyst_of_another_local_authority_is_refused(
    api: Api, world: dict[str, Any]
) -> None:
    token = api.tokens.issue(Role.LA_ANALYST, la_code=ENFIELD)
    assert await api.refused(REPORT, ARGS, token=token) == "FORBIDDEN"
    # Their own is fine, even where the co-op does nothing.
    body = await api.query(REPORT, {**ARGS, "la": ENFIELD}, token=token)
    assert not body.get("errors"), body


@pytest.mark.parametrize("who", ["coordinator", "pa", "su", "carer"])
async def test_members_other_than_admins_are_refused(
    api: Api, world: dict[str, Any], who: str
) -> None:
    role = {"coordinator": Role.COORDINATOR, "pa": Role.PA, "su": Role.SERVICE_USER}.get(
        who, Role.CARER
    )
    assert await api.refused(REPORT, ARGS, token=api.token(role, world[who].id)) == "FORBIDDEN"


async def test_strangers_must_sign_in_and_admins_may_ask(api: Api, world: dict[str, Any]) -> None:
    assert await api.refused(REPORT, ARGS) == "UNAUTHENTICATED"
    body = await api.query(REPORT, {**ARGS, "la": ENFIELD}, token=api.token(Role.ADMIN))
    assert not body.get("errors"), body


@pytest.mark.parametrize(
    ("variables", "code"),
    [
        ({"la": "E09999999"}, "NOT_FOUND"),
        ({"from": "2020-01-01", "to": "2026-11-01"}, "BAD_USER_INPUT"),
        ({"from": "2026-05-01", "to": "2026-04-01"}, "BAD_USER_INPUT"),
        ({"from": "2026-13-01"}, "BAD_USER_INPUT"),
    ],
)
async def test_bad_input_is_a_coded_error(
    api: Api, world: dict[str, Any], variables: dict[str, str], code: str
) -> None:
    token = api.token(Role.ADMIN)
    body = await api.query(REPORT, {**ARGS, **variables}, token=token)
    assert body.get("data") in (None, {"marketReport": None})
    assert body["errors"][0]["extensions"]["code"] == code, body


async def _as_partner(app: Any, home_la: str, scopes: frozenset[str]) -> Any:
    async with app.state.sessions() as session:
        row = Partnership(
            base_url="https://council.example",
            graphql_endpoint="https://council.example/graphql",
            proposal_ref=uuid.uuid4(),
            direction="INCOMING",
            status="ACTIVE",
            requested_scopes=sorted(scopes),
            granted_scopes=sorted(scopes),
            protocol_version="coopnet-federation/1",
            home_la_code=home_la,
        )
        session.add(row)
        await session.commit()
        viewer = Viewer(
            partner="https://council.example",
            partnership_id=row.id,
            partnership_status=PartnershipStatus.ACTIVE.value,
            scopes=scopes,
        )
        return await create_schema().execute(
            REPORT,
            variable_values=ARGS,
            context_value=Context(session=session, viewer=viewer, limits=Limits()),
        )


async def test_a_council_instance_with_market_data_gets_its_own_area(
    app: Any, world: dict[str, Any]
) -> None:
    result = await _as_partner(app, BARNET, frozenset({PartnerScope.MARKET_DATA.value}))
    assert not result.errors, result.errors
    assert result.data and result.data["marketReport"]["localAuthority"]["gssCode"] == BARNET


async def test_a_council_instance_is_refused_another_area_or_without_the_scope(
    app: Any, world: dict[str, Any]
) -> None:
    result = await _as_partner(app, ENFIELD, frozenset({PartnerScope.MARKET_DATA.value}))
    assert result.errors and result.errors[0].extensions["code"] == "FORBIDDEN"
    assert not (result.data or {}).get("marketReport")


async def test_a_partner_without_market_data_is_refused(app: Any, world: dict[str, Any]) -> None:
    result = await _as_partner(app, BARNET, frozenset({PartnerScope.COVER.value}))
    assert result.errors and result.errors[0].extensions["reason"] == "OUT_OF_SCOPE"


async def test_statements_do_not_grow_with_the_data(
    api: Api, db: AsyncSession, world: dict[str, Any], sql_counter: StatementCounter
) -> None:
    token = api.token(Role.ADMIN)
    args = {**ARGS, "g": "QUARTER"}
    await api.query(REPORT, args, token=token)
    before = sql_counter.count
    await api.query(REPORT, args, token=token)
    one = sql_counter.count - before
    b = Build(db)
    for i in range(30):
        su = await b.service_user(f"More {i}", cluster=world["cluster"])
        await b.visit(su, world["pa"], at(days=-10 - i), status="COMPLETED")
    await db.commit()
    before = sql_counter.count
    body = await api.query(REPORT, args, token=token)
    assert not body.get("errors"), body
    assert sql_counter.count - before == one
