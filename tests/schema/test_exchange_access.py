"""Who sees a cross-boundary cover exchange (care/policy.py, `cover_exchange_visible`):
requesting side admins and the person's coordinators; providing side admins, coordinators
of a cluster whose team has the PA, and the PA; nobody else (a stranger coordinator, a PA
without the exchange, service users, carers, an LA analyst, a partner instance). First
names and the address only while CONFIRMED; the care summary on the requesting side
always, on the providing side only while CONFIRMED. Also the mutations' refusals."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.dialects.postgresql import Range
from sqlalchemy.ext.asyncio import AsyncSession

from care.enums import PartnerScope, PartnershipStatus, Role
from care.models import (
    CoverExchange,
    CoverRequest,
    PaCommitment,
)
from care.paging import PageRequest
from care.viewer import Viewer
from schema import create_schema
from schema.context import Context, Limits
from schema.query import Query
from schema.rows import root_pages
from schema.types import root_statement
from tests.conftest import Api
from tests.factories import BARNET, Build, at, gid

FIELDS = """id side status paFirstName personFirstName personAddress careSummary district
  skills partner { name baseUrl } visit { id } coverRequest { id } pa { id }
  events { status bySide byRole }"""
LIST = "{ coverExchanges { totalCount nodes { " + FIELDS + " } } }"
MINE = "{ myCoverExchanges { totalCount nodes { " + FIELDS + " } } }"
NODE = "query($id: ID!) { node(id: $id) { id ... on CoverExchange { " + FIELDS + " } } }"
CANCEL = """mutation($id: ID!) { cancelPartnerCover(id: $id, reason: "x") {
  exchange { status } errors { code field } } }"""
ACCEPT = (
    "mutation($id: ID!) { acceptPartnerCover(id: $id) { exchange { status } errors { code } } }"
)
REQUEST = """mutation($input: RequestPartnerCoverInput!) { requestPartnerCover(input: $input) {
  exchange { id } errors { code field } } }"""


async def _setup(db: AsyncSession) -> dict[str, int]:
    b = Build(db)
    await b.las()
    await b.coop()
    person_coordinator = await b.worker("Cora Person")
    pa_coordinator = await b.worker("Pete Team")
    stranger = await b.worker("Stan Stranger")
    home = await b.cluster("Home", support_worker=person_coordinator)
    team = await b.cluster("Team", support_worker=pa_coordinator)
    await b.cluster("Elsewhere", support_worker=stranger)
    person = await b.service_user("Ada Lovelace", cluster=home)
    carer = await b.carer(person)
    pa = await b.pa("Pat Provider", cluster=team)
    other_pa = await b.pa("Olly Other", cluster=team)
    partnership = await b.partnership(
        "https://partner.example", ["COVER"], coop_name="Partner Co-op"
    )
    visit = await b.visit(person, None, at(days=2), status="NEEDS_COVER")
    request = CoverRequest(visit_id=visit.id, reason="MANUAL", status="OPEN")
    db.add(request)
    await db.flush()
    during = Range(at(days=2), at(days=2, hours=1), bounds="[)")
    requesting = CoverExchange(
        ref=uuid.uuid4(),
        partnership_id=partnership.id,
        side="REQUESTING",
        status="HELD",
        during=during,
        district="N12",
        skills=["hoist"],
        pa_ref="their-pa",
        hold_expires_at=at(hours=1),
        visit_id=visit.id,
        cover_request_id=request.id,
        care_summary="Needs help to stand.",
        person_first_name="Ada",
    )
    held = CoverExchange(
        ref=uuid.uuid4(),
        partnership_id=partnership.id,
        side="PROVIDING",
        status="HELD",
        during=Range(at(days=3), at(days=3, hours=1), bounds="[)"),
        district="EN1",
        skills=[],
        pa_ref="our-pa",
        hold_expires_at=at(hours=1),
        pa_id=pa.id,
        # Present in the row (as if sent early): must still not be shown while HELD.
        person_first_name="Bob",
        person_address="EN1 1AA",
        care_summary="Private until confirmed.",
    )
    confirmed = CoverExchange(
        ref=uuid.uuid4(),
        partnership_id=partnership.id,
        side="PROVIDING",
        status="CONFIRMED",
        during=Range(at(days=4), at(days=4, hours=1), bounds="[)"),
        district="EN1",
        skills=[],
        pa_ref="our-pa",
        hold_expires_at=at(hours=1),
        pa_id=pa.id,
        person_first_name="Cleo",
        person_address="EN1 2BB",
        care_summary="Likes tea.",
        pa_first_name="Pat",
    )
    db.add_all([requesting, held, confirmed])
    await db.commit()
    return dict(
        person_coordinator=person_coordinator.id,
        pa_coordinator=pa_coordinator.id,
        stranger=stranger.id,
        person=person.id,
        carer=carer.id,
        pa=pa.id,
        other_pa=other_pa.id,
        requesting=requesting.id,
        held=held.id,
        confirmed=confirmed.id,
        request=request.id,
        partnership=partnership.id,
    )


def _ids(data: dict[str, Any], field: str) -> set[str]:
    return {n["id"] for n in data[field]["nodes"]}


async def test_each_side_sees_what_is_theirs(api: Api, db: AsyncSession) -> None:
    ids = await _setup(db)
    requesting = gid("CoverExchange", ids["requesting"])
    held = gid("CoverExchange", ids["held"])
    confirmed = gid("CoverExchange", ids["confirmed"])
    admin = await api.data(LIST, as_=(Role.ADMIN, None))
    assert _ids(admin, "coverExchanges") == {requesting, held, confirmed}
    assert admin["coverExchanges"]["totalCount"] == 3
    mine = await api.data(LIST, as_=(Role.COORDINATOR, ids["person_coordinator"]))
    assert _ids(mine, "coverExchanges") == {requesting}
    assert mine["coverExchanges"]["totalCount"] == 1
    team = await api.data(LIST, as_=(Role.COORDINATOR, ids["pa_coordinator"]))
    assert _ids(team, "coverExchanges") == {held, confirmed}
    pa = await api.data(MINE, as_=(Role.PA, ids["pa"]))
    assert _ids(pa, "myCoverExchanges") == {held, confirmed}
    node = await api.data(NODE, {"id": confirmed}, as_=(Role.PA, ids["pa"]))
    assert node["node"]["personAddress"] == "EN1 2BB"


async def test_personal_fields_only_once_confirmed(api: Api, db: AsyncSession) -> None:
    ids = await _setup(db)
    for who in (
        (Role.ADMIN, None),
        (Role.PA, ids["pa"]),
        (Role.COORDINATOR, ids["pa_coordinator"]),
    ):
        held = (await api.data(NODE, {"id": gid("CoverExchange", ids["held"])}, as_=who))["node"]
        assert held["personFirstName"] is None, who
        assert held["personAddress"] is None, who
        assert held["careSummary"] is None, who
        booked = (await api.data(NODE, {"id": gid("CoverExchange", ids["confirmed"])}, as_=who))[
            "node"
        ]
        assert (booked["personFirstName"], booked["personAddress"]) == ("Cleo", "EN1 2BB"), who
        assert booked["careSummary"] == "Likes tea." and booked["paFirstName"] == "Pat", who
    # The requesting side reads the summary it wrote, but no names before confirmation.
    ours = (
        await api.data(
            NODE,
            {"id": gid("CoverExchange", ids["requesting"])},
            as_=(Role.COORDINATOR, ids["person_coordinator"]),
        )
    )["node"]
    assert ours["careSummary"] == "Needs help to stand."
    assert ours["personFirstName"] is None and ours["paFirstName"] is None
    assert ours["visit"] is not None and ours["coverRequest"] is not None and ours["pa"] is None


async def test_nobody_else_sees_an_exchange(app: Any, api: Api, db: AsyncSession) -> None:
    ids = await _setup(db)
    every = [gid("CoverExchange", ids[k]) for k in ("requesting", "held", "confirmed")]
    stranger = await api.data(LIST, as_=(Role.COORDINATOR, ids["stranger"]))
    assert stranger["coverExchanges"]["totalCount"] == 0
    other = await api.data(MINE, as_=(Role.PA, ids["other_pa"]))
    assert other["myCoverExchanges"]["totalCount"] == 0
    tokens = {
        "stranger": api.token(Role.COORDINATOR, ids["stranger"]),
        "other PA": api.token(Role.PA, ids["other_pa"]),
        "service user": api.token(Role.SERVICE_USER, ids["person"]),
        "carer": api.token(Role.CARER, ids["carer"]),
        "analyst": api.tokens.issue(Role.LA_ANALYST, la_code=BARNET),
    }
    for name, token in tokens.items():
        for exchange in every:
            body = await api.query(NODE, {"id": exchange}, token=token)
            assert (body.get("data") or {}).get("node") is None, name
    for name in ("other PA", "service user", "carer", "analyst"):
        assert await api.refused(LIST, token=tokens[name]) == "FORBIDDEN", name
    assert await api.refused(MINE, token=tokens["analyst"]) == "FORBIDDEN"
    assert await api.refused(LIST) == "UNAUTHENTICATED"
    # A partner instance (as the door builds it), even with COVER: no local reads.
    partner = Viewer(
        partner="https://partner.example",
        partnership_id=ids["partnership"],
        partnership_status=PartnershipStatus.ACTIVE.value,
        scopes=frozenset(s.value for s in PartnerScope),
    )
    async with app.state.sessions() as session:
        result = await create_schema().execute(
            LIST, context_value=Context(session=session, viewer=partner, limits=Limits())
        )
    assert (result.data or {}).get("coverExchanges") is None and result.errors
    # And the row predicate itself: nothing for any of them.
    viewers = [
        Viewer(),
        Viewer(role=Role.COORDINATOR, member_id=ids["stranger"]),
        Viewer(role=Role.PA, member_id=ids["other_pa"]),
        Viewer(role=Role.SERVICE_USER, member_id=ids["person"]),
        Viewer(role=Role.CARER, member_id=ids["carer"]),
        Viewer(role=Role.LA_ANALYST, la_code=BARNET),
        partner,
    ]
    await db.rollback()
    exchanges = root_pages(Query)["coverExchanges"]
    for viewer in viewers:
        stmt = root_statement(exchanges, viewer, PageRequest(first=10), {})
        rows = (await db.execute(stmt)).all()
        assert rows == [], viewer


async def test_who_may_cancel_and_answer(api: Api, db: AsyncSession) -> None:
    ids = await _setup(db)
    held = gid("CoverExchange", ids["held"])
    # A coordinator who cannot see it: NOT_FOUND, as an unknown id; nothing changes.
    refused = await api.data(CANCEL, {"id": held}, as_=(Role.COORDINATOR, ids["stranger"]))
    assert [e["code"] for e in refused["cancelPartnerCover"]["errors"]] == ["NOT_FOUND"]
    # Another PA may not accept it; the coordinator of the person's side may not either.
    other = await api.data(ACCEPT, {"id": held}, as_=(Role.PA, ids["other_pa"]))
    assert [e["code"] for e in other["acceptPartnerCover"]["errors"]] == ["NOT_FOUND"]
    await db.rollback()
    assert (await db.get(CoverExchange, ids["held"])).status == "HELD"  # type: ignore[union-attr]
    # The PA accepts (the message to the partner is queued with it).
    accepted = await api.data(ACCEPT, {"id": held}, as_=(Role.PA, ids["pa"]))
    assert accepted["acceptPartnerCover"] == {"exchange": {"status": "ACCEPTED"}, "errors": []}
    # The PA's coordinator cancels; the hold is released.
    done = await api.data(CANCEL, {"id": held}, as_=(Role.COORDINATOR, ids["pa_coordinator"]))
    assert done["cancelPartnerCover"] == {"exchange": {"status": "CANCELLED"}, "errors": []}
    again = await api.data(CANCEL, {"id": held}, as_=(Role.COORDINATOR, ids["pa_coordinator"]))
    assert [e["code"] for e in again["cancelPartnerCover"]["errors"]] == ["CLOSED"]
    await db.rollback()
    holds = await db.scalar(select(func.count()).where(PaCommitment.exchange_id == ids["held"]))
    assert holds == 0
    # Both changes were queued for the partner, in their own transactions (the outbox).
    queued = await db.scalar(text("SELECT count(*) FROM pgqueuer"))
    assert queued == 2


async def test_asking_a_partner_refuses_bad_input_and_writes_nothing(
    api: Api, db: AsyncSession
) -> None:
    ids = await _setup(db)
    base = {
        "coverRequestId": gid("CoverRequest", ids["request"]),
        "partnershipId": gid("Partnership", ids["partnership"]),
        "paRef": "their-pa",
    }
    coordinator = (Role.COORDINATOR, ids["person_coordinator"])
    cases = [
        ({"paRef": " "}, ("paRef", "REQUIRED"), coordinator),
        ({"careSummary": "x" * 2001}, ("careSummary", "INVALID"), coordinator),
        ({"coverRequestId": "nope"}, ("coverRequestId", "NOT_FOUND"), coordinator),
        ({"partnershipId": gid("Partnership", 999)}, ("partnershipId", "NOT_FOUND"), coordinator),
        # One live exchange per request already: CONFLICT before the partner is called.
        ({}, ("coverRequestId", "CONFLICT"), coordinator),
        ({}, ("coverRequestId", "NOT_FOUND"), (Role.COORDINATOR, ids["stranger"])),
    ]
    for change, expected, who in cases:
        body = await api.data(REQUEST, {"input": base | change}, as_=who)
        payload = body["requestPartnerCover"]
        assert payload["exchange"] is None, change
        assert [(e["field"], e["code"]) for e in payload["errors"]] == [expected], change
    await db.rollback()
    assert await db.scalar(select(func.count()).select_from(CoverExchange)) == 3
