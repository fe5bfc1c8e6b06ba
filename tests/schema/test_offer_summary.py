"""What a PA sees of an offer of cover (`CoverOffer.visitSummary`): enough to decide (the
time, the postcode district, the distance from their home, the person's first name, needs
and tasks) while the offer is open; the address and contact details only once they have
accepted, under the usual rule. Both sides of that line, and everyone else's."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import func, update
from sqlalchemy.ext.asyncio import AsyncSession

from care.enums import PartnerScope, PartnershipStatus, Role
from care.geography import distance_km
from care.models import CoverOffer, CoverRequest, Member, Partnership, Visit
from care.viewer import Viewer
from schema import create_schema
from schema.context import Context, Limits
from tests.conftest import Api, StatementCounter
from tests.factories import Build, at, gid

SU_HOME = (51.615, -0.176)  # tests.factories: the service user's home
PA_HOME = (51.63, -0.17)  # and the PA's

SUMMARY = """visitSummary { startsAt endsAt durationMinutes postcodeDistrict distanceKm
  personFirstName needs tasks }"""
OFFER = f"query($id: ID!) {{ node(id: $id) {{ ... on CoverOffer {{ status {SUMMARY} }} }} }}"
PERSON = """query($id: ID!) { node(id: $id) { ... on ServiceUser {
  name needs postcode email phone latitude longitude } } }"""
VISIT_TASKS = "query($id: ID!) { node(id: $id) { ... on Visit { tasks } } }"
ACCEPT = """mutation($id: ID!) { acceptCoverOffer(id: $id) {
  offer { status visitSummary { startsAt } } errors { code message } } }"""


@dataclass
class World:
    coordinator: Member
    other_coordinator: Member
    su: Member
    carer: Member
    offered_pa: Member
    team_pa: Member  # on the person's cluster team, with no offer
    stranger_pa: Member  # another cluster's PA
    visit: Visit
    offer: CoverOffer
    start: dt.datetime


@pytest.fixture
async def w(db: AsyncSession) -> World:
    b = Build(db)
    await b.las()
    await b.coop()
    coordinator = await b.worker("Cora Ordinator")
    other_coordinator = await b.worker("Otto Ordinator")
    cluster = await b.cluster("Finchley", support_worker=coordinator)
    other_cluster = await b.cluster("East", support_worker=other_coordinator)
    su = await b.service_user(
        "Ada Lovelace User", cluster=cluster, needs=["personal-care", "hoist"]
    )
    carer = await b.carer(su)
    skills = ["personal-care", "hoist"]
    offered_pa = await b.pa("Opal Offered", skills=skills)
    team_pa = await b.pa("Tim Team", cluster=cluster, skills=skills)
    stranger_pa = await b.pa("Sid Stranger", cluster=other_cluster, skills=skills)
    start = at(days=2)
    await b.window(offered_pa, start - dt.timedelta(hours=1), hours=4)
    visit = await b.visit(
        su, None, start, minutes=75, status="NEEDS_COVER", tasks=["hoist transfer", "lunch"]
    )
    request = CoverRequest(visit_id=visit.id, reason="MANUAL")
    db.add(request)
    await db.flush()
    offer = CoverOffer(
        cover_request_id=request.id,
        pa_id=offered_pa.id,
        expires_at=dt.datetime.now(dt.UTC) + dt.timedelta(hours=2),
    )
    db.add(offer)
    await db.commit()
    return World(
        coordinator,
        other_coordinator,
        su,
        carer,
        offered_pa,
        team_pa,
        stranger_pa,
        visit,
        offer,
        start,
    )


def token(api: Api, w: World, who: str) -> str | None:
    members = {
        "coordinator": (Role.COORDINATOR, w.coordinator),
        "other_coordinator": (Role.COORDINATOR, w.other_coordinator),
        "su": (Role.SERVICE_USER, w.su),
        "carer": (Role.CARER, w.carer),
        "offered_pa": (Role.PA, w.offered_pa),
        "team_pa": (Role.PA, w.team_pa),
        "stranger_pa": (Role.PA, w.stranger_pa),
    }
    if who == "admin":
        return api.token(Role.ADMIN)
    if who == "analyst":
        return api.tokens.issue(Role.LA_ANALYST, la_code="E09000003")
    if who == "anonymous":
        return None
    role, member = members[who]
    return api.token(role, member.id)


async def offer_node(api: Api, w: World, who: str) -> dict[str, Any] | None:
    body = await api.query(OFFER, {"id": gid("CoverOffer", w.offer.id)}, token=token(api, w, who))
    assert not body.get("errors"), body
    node: dict[str, Any] | None = body["data"]["node"]
    return node


def expected_summary(w: World) -> dict[str, Any]:
    return {
        "startsAt": w.start.isoformat(),
        "endsAt": (w.start + dt.timedelta(minutes=75)).isoformat(),
        "durationMinutes": 75,
        "postcodeDistrict": "N12",
        "distanceKm": round(distance_km(PA_HOME, SU_HOME), 1),
        "personFirstName": "Ada",
        "needs": ["personal-care", "hoist"],
        "tasks": ["hoist transfer", "lunch"],
    }


def same_summary(seen: dict[str, Any], want: dict[str, Any]) -> None:
    for key in ("startsAt", "endsAt"):
        assert dt.datetime.fromisoformat(seen[key]) == dt.datetime.fromisoformat(want[key])
    rest = {k: v for k, v in seen.items() if k not in ("startsAt", "endsAt")}
    assert rest == {k: v for k, v in want.items() if k not in ("startsAt", "endsAt")}


# --- the PA with an open offer ---------------------------------------------------------


async def test_the_offered_pa_sees_what_they_need_to_decide(api: Api, w: World) -> None:
    node = await offer_node(api, w, "offered_pa")
    assert node is not None and node["status"] == "OPEN"
    same_summary(node["visitSummary"], expected_summary(w))
    # The known pair of homes is about 1.7 km apart, as the crow flies.
    assert node["visitSummary"]["distanceKm"] == 1.7


async def test_my_cover_offers_carry_the_summary(api: Api, w: World) -> None:
    query = f"{{ myCoverOffers {{ nodes {{ {SUMMARY} }} }} }}"
    data = await api.data(query, token=token(api, w, "offered_pa"))
    [node] = data["myCoverOffers"]["nodes"]
    same_summary(node["visitSummary"], expected_summary(w))


async def test_distance_is_null_when_a_home_is_not_located(
    api: Api, w: World, db: AsyncSession
) -> None:
    unknown = {"latitude": None, "longitude": None}  # both or neither (a CHECK says)
    await db.execute(update(Member).where(Member.id == w.offered_pa.id).values(**unknown))
    await db.commit()
    node = await offer_node(api, w, "offered_pa")
    assert node is not None and node["visitSummary"]["distanceKm"] is None
    await db.execute(
        update(Member)
        .where(Member.id == w.offered_pa.id)
        .values(latitude=PA_HOME[0], longitude=PA_HOME[1])
    )
    await db.execute(update(Member).where(Member.id == w.su.id).values(**unknown))
    await db.commit()
    node = await offer_node(api, w, "offered_pa")
    assert node is not None and node["visitSummary"]["distanceKm"] is None


@pytest.mark.parametrize(
    "postcode,district", [("n12 0aa", "N12"), ("EC1A1BB", "EC1A"), ("N12", "N12"), ("junk", None)]
)
async def test_the_district_is_the_postcodes_outward_code(
    api: Api, w: World, db: AsyncSession, postcode: str, district: str | None
) -> None:
    await db.execute(update(Member).where(Member.id == w.su.id).values(postcode=postcode))
    await db.commit()
    node = await offer_node(api, w, "offered_pa")
    assert node is not None and node["visitSummary"]["postcodeDistrict"] == district


async def test_no_address_or_contact_before_accepting_and_both_after(api: Api, w: World) -> None:
    pa = token(api, w, "offered_pa")
    person = {"id": gid("ServiceUser", w.su.id)}
    visit = {"id": gid("Visit", w.visit.id)}
    # Before: not even the person's full name (the summary gives the first name).
    assert (await api.data(PERSON, person, token=pa))["node"] is None
    assert (await api.data(VISIT_TASKS, visit, token=pa))["node"] == {"tasks": None}

    accepted = await api.data(ACCEPT, {"id": gid("CoverOffer", w.offer.id)}, token=pa)
    assert accepted["acceptCoverOffer"]["errors"] == []
    # Accepted, the offer no longer carries a summary: the visit is the PA's own.
    assert accepted["acceptCoverOffer"]["offer"] == {"status": "ACCEPTED", "visitSummary": None}

    after = (await api.data(PERSON, person, token=pa))["node"]
    assert after["name"] == "Ada Lovelace User"
    assert after["postcode"] == "N12 0AA"
    assert after["email"] == "ada@example.org"
    assert after["phone"] == "07700 900001"
    assert (after["latitude"], after["longitude"]) == SU_HOME
    assert (await api.data(VISIT_TASKS, visit, token=pa))["node"] == {
        "tasks": ["hoist transfer", "lunch"]
    }


@pytest.mark.parametrize(
    "status", ["DECLINED", "WITHDRAWN", "CLOSED", "EXPIRED", "ACCEPTED", "past expiry"]
)
async def test_an_offer_no_longer_open_has_no_summary_for_the_pa(
    api: Api, w: World, db: AsyncSession, status: str
) -> None:
    if status == "past expiry":
        values: dict[str, Any] = {
            "offered_at": func.now() - dt.timedelta(hours=3),
            "expires_at": func.now() - dt.timedelta(minutes=1),
        }
    else:
        values = {"status": status, "responded_at": func.now()}
    await db.execute(update(CoverOffer).values(**values))
    await db.commit()
    node = await offer_node(api, w, "offered_pa")
    assert node is not None and node["visitSummary"] is None
    # Those who run the person's care still see what was offered.
    managed = await offer_node(api, w, "coordinator")
    assert managed is not None and managed["visitSummary"] is not None


# --- everyone else ---------------------------------------------------------------------


@pytest.mark.parametrize("who", ["admin", "coordinator"])
async def test_those_who_see_the_request_see_the_summary(api: Api, w: World, who: str) -> None:
    node = await offer_node(api, w, who)
    assert node is not None
    same_summary(node["visitSummary"], expected_summary(w))


@pytest.mark.parametrize(
    "who",
    [
        "team_pa",  # a PA of the person's cluster, without the offer
        "stranger_pa",
        "other_coordinator",
        "su",
        "carer",
        "analyst",
        "anonymous",
    ],
)
async def test_nobody_else_sees_the_offer_or_its_summary(api: Api, w: World, who: str) -> None:
    assert await offer_node(api, w, who) is None


async def test_another_pa_offered_the_same_visit_sees_only_their_own_offer(
    api: Api, w: World, db: AsyncSession
) -> None:
    theirs = CoverOffer(
        cover_request_id=w.offer.cover_request_id,
        pa_id=w.team_pa.id,
        expires_at=dt.datetime.now(dt.UTC) + dt.timedelta(hours=2),
    )
    db.add(theirs)
    await db.commit()
    assert await offer_node(api, w, "team_pa") is None
    query = f"{{ myCoverOffers {{ nodes {{ id {SUMMARY} coverRequest {{ offers {{ id }} }} }} }} }}"
    data = await api.data(query, token=token(api, w, "team_pa"))
    [node] = data["myCoverOffers"]["nodes"]
    assert node["id"] == gid("CoverOffer", theirs.id)
    assert node["visitSummary"]["distanceKm"] == round(distance_km(PA_HOME, SU_HOME), 1)
    assert node["coverRequest"]["offers"] == [{"id": gid("CoverOffer", theirs.id)}]


async def test_a_partner_instance_is_refused(app: Any, w: World) -> None:
    async with app.state.sessions() as session:
        scopes = frozenset(s.value for s in PartnerScope)
        partnership = Partnership(
            base_url="https://partner.example",
            graphql_endpoint="https://partner.example/graphql",
            proposal_ref=uuid.uuid4(),
            direction="INCOMING",
            status="ACTIVE",
            requested_scopes=sorted(scopes),
            granted_scopes=sorted(scopes),
            protocol_version="coopnet-federation/1",
            home_la_code="E09000010",
        )
        session.add(partnership)
        await session.commit()
        viewer = Viewer(
            partner="https://partner.example",
            partnership_id=partnership.id,
            partnership_status=PartnershipStatus.ACTIVE.value,
            scopes=scopes,
        )
        result = await create_schema().execute(
            OFFER,
            variable_values={"id": gid("CoverOffer", w.offer.id)},
            context_value=Context(session=session, viewer=viewer, limits=Limits()),
        )
    assert result.errors and result.errors[0].extensions["code"] == "FORBIDDEN"
    assert not (result.data or {}).get("node")


# --- statements ----------------------------------------------------------------------


@pytest.mark.parametrize("compiled", [False, True], ids=["resolvers", "compiled"])
async def test_summaries_of_many_offers_take_one_statement(
    api: Api,
    app: Any,
    w: World,
    db: AsyncSession,
    sql_counter: StatementCounter,
    compiled: bool,
    request: pytest.FixtureRequest,
) -> None:
    app.state.compiled_reads = compiled
    request.addfinalizer(lambda: setattr(app.state, "compiled_reads", True))
    query = f"{{ myCoverOffers(first: 50) {{ nodes {{ {SUMMARY} }} }} }}"
    pa = token(api, w, "offered_pa")

    async def statements() -> tuple[int, dict[str, Any]]:
        # A repeated compiled read is answered by the fast lane (api/fastlane.py) with one
        # statement of its own, on asyncpg directly, which the counter does not see.
        sql_counter.count = 0
        lane = app.state.fast_lane_answered
        data = await api.data(query, token=pa)
        return sql_counter.count + app.state.fast_lane_answered - lane, data

    with_one, one = await statements()
    assert with_one == 1 if compiled else with_one > 1
    assert len(one["myCoverOffers"]["nodes"]) == 1

    b = Build(db)
    for day in range(3, 13):
        visit = await b.visit(w.su, None, at(days=day), status="NEEDS_COVER")
        request = CoverRequest(visit_id=visit.id, reason="MANUAL")
        db.add(request)
        await db.flush()
        db.add(
            CoverOffer(
                cover_request_id=request.id,
                pa_id=w.offered_pa.id,
                expires_at=dt.datetime.now(dt.UTC) + dt.timedelta(hours=2),
            )
        )
    await db.commit()
    with_many, many = await statements()
    assert len(many["myCoverOffers"]["nodes"]) == 11
    assert all(
        n["visitSummary"]["personFirstName"] == "Ada" for n in many["myCoverOffers"]["nodes"]
    )
    assert with_many == with_one, sql_counter.statements
