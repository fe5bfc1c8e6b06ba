"""Referrals (people waiting for care) through the API: who may record, change and read
them, input checks that change nothing, filters, and privacy (rows and totalCount) for
every caller who is not an admin or a coordinator in or next to the referral's area."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from care import queries
from care.enums import PartnerScope, PartnershipStatus, Role
from care.models import LocalAuthority, Referral
from care.viewer import Viewer
from schema import create_schema
from schema.context import Context, Limits
from tests.conftest import Api
from tests.factories import BARNET, ENFIELD, Build, gid

FAR = "E08000025"  # Birmingham: no neighbour of Barnet or Enfield

FIELDS = """referral { id postcodeDistrict needs hoursPerWeek referredOn status note
  localAuthority { gssCode } recordedBy { name } }
  errors { field message code }"""
RECORD = f"""mutation($input: RecordReferralInput!) {{
  recordReferral(input: $input) {{ {FIELDS} }} }}"""
UPDATE = f"""mutation($id: ID!, $input: UpdateReferralInput!) {{
  updateReferral(id: $id, input: $input) {{ {FIELDS} }} }}"""
LIST = """query($la: String, $district: String, $status: ReferralStatus, $after: String) {
  referrals(localAuthority: $la, district: $district, status: $status, first: 2,
            after: $after) {
    totalCount pageInfo { hasNextPage endCursor } nodes { id postcodeDistrict status } } }"""
NODE = "query($id: ID!) { node(id: $id) { id ... on Referral { status } } }"

ADMIN = (Role.ADMIN, None)
TODAY = dt.date(2026, 11, 20)


def _input(**kw: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "localAuthority": BARNET,
        "postcodeDistrict": "n12 8qb",
        "hoursPerWeek": 10.5,
        "referredOn": TODAY.isoformat(),
        "needs": [" dementia ", "moving-and-handling", "dementia", ""],
    }
    return base | kw


def _errors(payload: dict[str, Any]) -> list[tuple[str | None, str]]:
    return [(e["field"], e["code"]) for e in payload["errors"]]


async def _count(db: AsyncSession) -> int:
    await db.rollback()
    return int(await db.scalar(select(func.count()).select_from(Referral)) or 0)


async def _setup(db: AsyncSession) -> dict[str, int]:
    b = Build(db)
    await b.las()
    db.add(LocalAuthority(gss_code=FAR, name="Birmingham"))
    await b.coop()
    coordinator = await b.worker("Cora Coordinator")
    far_coordinator = await b.worker("Fay Far")
    cluster = await b.cluster(support_worker=coordinator)  # Barnet, next to Enfield
    await b.cluster("Brum", support_worker=far_coordinator, la=FAR)
    pa = await b.pa()
    su = await b.service_user(cluster=cluster)
    await db.commit()
    return dict(coordinator=coordinator.id, far=far_coordinator.id, pa=pa.id, su=su.id)


async def _record(api: Api, as_: tuple[Role, int | None] = ADMIN, **kw: Any) -> dict[str, Any]:
    data = await api.data(RECORD, {"input": _input(**kw)}, as_=as_)
    payload: dict[str, Any] = data["recordReferral"]
    return payload


# --- record ----------------------------------------------------------------------------


async def test_admin_records_a_referral_normalised(api: Api, db: AsyncSession) -> None:
    await _setup(db)
    payload = await _record(api, note="  prefers mornings ")
    assert payload["errors"] == []
    r = payload["referral"]
    assert r["postcodeDistrict"] == "N12"  # only the district of the postcode is kept
    assert r["needs"] == ["dementia", "moving-and-handling"]
    assert r["hoursPerWeek"] == 10.5
    assert r["referredOn"] == TODAY.isoformat()
    assert r["status"] == "WAITING"
    assert r["note"] == "prefers mornings"
    assert r["localAuthority"] == {"gssCode": BARNET}
    await db.rollback()
    stored = (await db.scalars(select(Referral))).one()
    assert stored.postcode_district == "N12" and stored.hours_per_week == Decimal("10.50")


async def test_coordinator_records_in_own_and_neighbouring_area(api: Api, db: AsyncSession) -> None:
    ids = await _setup(db)
    me = (Role.COORDINATOR, ids["coordinator"])
    own = await _record(api, as_=me)
    assert own["errors"] == [] and own["referral"]["recordedBy"] == {"name": "Cora Coordinator"}
    across = await _record(api, as_=me, localAuthority=ENFIELD, postcodeDistrict="EN1")
    assert across["errors"] == []
    assert await _count(db) == 2


async def test_coordinator_outside_area_is_forbidden_and_nothing_changes(
    api: Api, db: AsyncSession
) -> None:
    ids = await _setup(db)
    payload = await _record(api, as_=(Role.COORDINATOR, ids["coordinator"]), localAuthority=FAR)
    assert payload["referral"] is None
    assert _errors(payload) == [("localAuthority", "FORBIDDEN")]
    assert await _count(db) == 0


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"postcodeDistrict": "not a postcode"}, [("postcodeDistrict", "INVALID")]),
        ({"hoursPerWeek": 0}, [("hoursPerWeek", "INVALID")]),
        ({"hoursPerWeek": -3}, [("hoursPerWeek", "INVALID")]),
        ({"hoursPerWeek": 168.01}, [("hoursPerWeek", "INVALID")]),
        ({"referredOn": "2099-01-01"}, [("referredOn", "INVALID_RANGE")]),
        ({"localAuthority": "E09999999"}, [("localAuthority", "NOT_FOUND")]),
        (
            {"hoursPerWeek": 0, "postcodeDistrict": "??"},
            [("postcodeDistrict", "INVALID"), ("hoursPerWeek", "INVALID")],
        ),
    ],
)
async def test_bad_input_is_a_coded_error_that_changes_nothing(
    api: Api, db: AsyncSession, change: dict[str, Any], expected: list[tuple[str, str]]
) -> None:
    await _setup(db)
    payload = await _record(api, **change)
    assert payload["referral"] is None
    assert _errors(payload) == expected
    assert await _count(db) == 0


async def test_oversized_input_is_refused_before_anything_runs(api: Api, db: AsyncSession) -> None:
    await _setup(db)
    body = await api.query(RECORD, {"input": _input(needs=["x"] * 51)}, as_=ADMIN)
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    body = await api.query(RECORD, {"input": _input(note="n" * 20_000)}, as_=ADMIN)
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert await _count(db) == 0


async def test_database_holds_the_rules(db: AsyncSession) -> None:
    await _setup(db)
    for bad in (
        {"postcode_district": "n12"},
        {"hours_per_week": Decimal("0")},
        {"hours_per_week": Decimal("169")},
        {"status": "LOST"},
    ):
        values = (
            dict(
                la_code=BARNET,
                postcode_district="N12",
                hours_per_week=Decimal("5"),
                referred_on=TODAY,
                needs=[],
            )
            | bad
        )
        db.add(Referral(**values))
        with pytest.raises(IntegrityError):
            await db.flush()
        await db.rollback()


# --- update ----------------------------------------------------------------------------


async def test_update_status_and_fields(api: Api, db: AsyncSession) -> None:
    ids = await _setup(db)
    rid = (await _record(api))["referral"]["id"]
    data = await api.data(
        UPDATE,
        {
            "id": rid,
            "input": {"status": "OFFERED", "hoursPerWeek": 12, "needs": [], "note": ""},
        },
        as_=(Role.COORDINATOR, ids["coordinator"]),
    )
    payload = data["updateReferral"]
    assert payload["errors"] == []
    r = payload["referral"]
    assert (r["status"], r["hoursPerWeek"], r["needs"], r["note"]) == ("OFFERED", 12.0, [], None)
    assert r["postcodeDistrict"] == "N12"  # left out: unchanged


async def test_update_refusals_change_nothing(api: Api, db: AsyncSession) -> None:
    ids = await _setup(db)
    rid = (await _record(api))["referral"]["id"]
    far = (Role.COORDINATOR, ids["far"])
    near = (Role.COORDINATOR, ids["coordinator"])
    cases = [
        # A coordinator who may not see it: exactly like an unknown id.
        (far, rid, {"status": "WITHDRAWN"}, [("id", "NOT_FOUND")]),
        (ADMIN, gid("Referral", 999_999), {"status": "WITHDRAWN"}, [("id", "NOT_FOUND")]),
        (ADMIN, gid("Pool", 1), {"status": "WITHDRAWN"}, [("id", "NOT_FOUND")]),
        # Moving it out of their area.
        (near, rid, {"localAuthority": FAR}, [("localAuthority", "FORBIDDEN")]),
        (ADMIN, rid, {"hoursPerWeek": 200, "status": "PLACED"}, [("hoursPerWeek", "INVALID")]),
        (ADMIN, rid, {"postcodeDistrict": "N12 8"}, [("postcodeDistrict", "INVALID")]),
    ]
    for who, target, change, expected in cases:
        data = await api.data(UPDATE, {"id": target, "input": change}, as_=who)
        assert data["updateReferral"]["referral"] is None, change
        assert _errors(data["updateReferral"]) == expected, change
    await db.rollback()
    stored = (await db.scalars(select(Referral))).one()
    assert (stored.status, stored.la_code, stored.hours_per_week) == (
        "WAITING",
        BARNET,
        Decimal("10.50"),
    )


async def test_others_may_not_call_the_mutations(api: Api, db: AsyncSession) -> None:
    ids = await _setup(db)
    rid = (await _record(api))["referral"]["id"]
    for who in ((Role.PA, ids["pa"]), (Role.SERVICE_USER, ids["su"])):
        assert await api.refused(RECORD, {"input": _input()}, as_=who) == "FORBIDDEN"
        variables = {"id": rid, "input": {"status": "WITHDRAWN"}}
        assert await api.refused(UPDATE, variables, as_=who) == "FORBIDDEN"
    assert await api.refused(RECORD, {"input": _input()}) == "UNAUTHENTICATED"
    assert await _count(db) == 1


# --- reading ---------------------------------------------------------------------------


async def _three(api: Api) -> list[str]:
    ids = [
        (await _record(api))["referral"]["id"],
        (await _record(api, postcodeDistrict="N3"))["referral"]["id"],
        (await _record(api, localAuthority=FAR, postcodeDistrict="B1"))["referral"]["id"],
    ]
    await api.data(UPDATE, {"id": ids[1], "input": {"status": "PLACED"}}, as_=ADMIN)
    return ids


async def test_filters_and_pages(api: Api, db: AsyncSession) -> None:
    await _setup(db)
    ids = await _three(api)
    every = (await api.data(LIST, {}, as_=ADMIN))["referrals"]
    assert every["totalCount"] == 3 and [n["id"] for n in every["nodes"]] == ids[:2]
    assert every["pageInfo"]["hasNextPage"] is True
    rest = await api.data(LIST, {"after": every["pageInfo"]["endCursor"]}, as_=ADMIN)
    assert [n["id"] for n in rest["referrals"]["nodes"]] == ids[2:]

    async def ids_for(**filters: Any) -> list[str]:
        data = await api.data(LIST, filters, as_=ADMIN)
        return [n["id"] for n in data["referrals"]["nodes"]]

    assert await ids_for(la=FAR) == ids[2:]
    assert await ids_for(district=" n3 ") == ids[1:2]
    assert await ids_for(district="ZZ!") == []
    assert await ids_for(status="PLACED") == ids[1:2]
    assert await ids_for(la=BARNET, status="WAITING") == ids[:1]


async def test_coordinators_see_only_their_area(api: Api, db: AsyncSession) -> None:
    ids = await _setup(db)
    rids = await _three(api)
    near = await api.data(LIST, {}, as_=(Role.COORDINATOR, ids["coordinator"]))
    assert near["referrals"]["totalCount"] == 2
    assert [n["id"] for n in near["referrals"]["nodes"]] == rids[:2]
    far = await api.data(LIST, {"la": BARNET}, as_=(Role.COORDINATOR, ids["far"]))
    assert far["referrals"]["totalCount"] == 0 and far["referrals"]["nodes"] == []
    hidden = await api.data(NODE, {"id": rids[0]}, as_=(Role.COORDINATOR, ids["far"]))
    assert hidden["node"] is None
    shown = await api.data(NODE, {"id": rids[2]}, as_=(Role.COORDINATOR, ids["far"]))
    assert shown["node"] == {"id": rids[2], "status": "WAITING"}


async def test_no_one_else_sees_referrals(api: Api, app: Any, db: AsyncSession) -> None:
    ids = await _setup(db)
    rids = await _three(api)
    # Through the API: refused at the root field (null: no rows, no totalCount).
    tokens = {
        "pa": api.token(Role.PA, ids["pa"]),
        "service_user": api.token(Role.SERVICE_USER, ids["su"]),
        "analyst": api.tokens.issue(Role.LA_ANALYST, la_code=BARNET),
    }
    for name, token in tokens.items():
        assert await api.refused(LIST, {}, token=token) == "FORBIDDEN", name
        node = await api.query(NODE, {"id": rids[0]}, token=token)
        assert (node.get("data") or {}).get("node") is None, name
    assert await api.refused(LIST, {}) == "UNAUTHENTICATED"
    # A partner instance (schema level, as the door builds it).
    partner = Viewer(
        partner="https://partner.example",
        partnership_id=1,
        partnership_status=PartnershipStatus.ACTIVE.value,
        scopes=frozenset(s.value for s in PartnerScope),
    )
    async with app.state.sessions() as session:
        result = await create_schema().execute(
            "{ referrals { totalCount nodes { id } } }",
            context_value=Context(session=session, viewer=partner, limits=Limits()),
        )
    assert (result.data or {}).get("referrals") is None
    assert result.errors
    # And the row predicate itself, under the guard: nothing for any of them.
    viewers = [
        Viewer(),
        Viewer(role=Role.PA, member_id=ids["pa"]),
        Viewer(role=Role.SERVICE_USER, member_id=ids["su"]),
        Viewer(role=Role.CARER, member_id=ids["su"]),
        Viewer(role=Role.LA_ANALYST, la_code=BARNET),
        partner,
    ]
    await db.rollback()
    for viewer in viewers:
        rows = (await db.execute(queries.referral_select(viewer))).all()
        assert rows == [], viewer
