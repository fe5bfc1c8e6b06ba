"""The compiled read path (schema/compiled) answers exactly as the resolvers do.

Every operation below runs through both paths, in one app on the same data (the demo
co-op), as each kind of caller; the responses' data and errors must be identical,
key order included. Operations the compiler supports must run as one statement; the
others must fall back and still answer."""

from __future__ import annotations

import base64
import datetime as dt
import logging
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest
import time_machine
from graphql import OperationType, print_ast
from sqlalchemy import func, select, text, update
from sqlalchemy.dialects.postgresql import Range
from sqlalchemy.ext.asyncio import AsyncSession
from strawberry.utils.str_converters import to_camel_case

from api.db import session_factory
from api.graphiql_page import fill_dates, load_examples
from care.demo import LONDON, load_demo
from care.enums import PartnershipStatus, Role
from care.models import (
    MAX_VISIT_LENGTH,
    CarerLink,
    Cluster,
    ClusterPa,
    Coop,
    CoverExchange,
    CoverExchangeEvent,
    CoverRequest,
    LocalAuthority,
    LocalAuthorityNeighbour,
    Member,
    PaProfile,
    Partnership,
    Referral,
    Visit,
)
from care.queries import COVER_REQUEST_ORDERS, MEMBER_ORDERS, VISIT_ORDERS
from care.viewer import Viewer
from care.weights import DEFAULT_WEIGHTS, column_name
from schema import filters, types
from schema.build import create_schema
from schema.compiled.extension import PLANS
from schema.context import Context, Limits
from schema.mutations.coop import CoverWeightsInput
from schema.rows import data_fields
from tests.api.test_readme_examples import _normalised, readme_operations
from tests.api.test_timeouts import client_of, code_of, post, running, table_locked
from tests.conftest import Api, StatementCounter, watching_compiled
from tests.factories import Build, gid

CLUSTER_PAGE = """
query ClusterPage($id: ID!, $from: DateTime!) {
  cluster(id: $id) {
    name status localAuthority { name }
    supportWorker { name }
    serviceUsers(first: 50) {
      totalCount
      edges { node { id name needs
        visits(first: 5, startsFrom: $from) { edges { node {
          id startsAt endsAt status pa { id name } } } }
      } }
    }
  }
}"""

VISIT_LIST = """
query VisitList($from: DateTime!) {
  visits(first: 100, startsFrom: $from) {
    edges { cursor node {
      id startsAt endsAt status tasks cancelReason
      serviceUser { id name postcode }
      pa { id name phone }
    } }
    pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
  }
}"""

# Aliases, fragments on the Member interface, inline fragments, @include/@skip,
# __typename, nodes and edges side by side, every connection field.
SHAPES = """
fragment Person on Member { __typename id name membershipClass joinedOn active email }
query Shapes($id: ID!, $from: DateTime, $withPas: Boolean!, $noTasks: Boolean!) {
  __typename
  c: cluster(id: $id) {
    __typename id kind createdAt closedAt postcodeDistricts needTags centre { longitude }
    la: localAuthority { gssCode name }
    supportWorker { ...Person ... on PersonalAssistant { hourlyPayPence dbsCheckedOn } }
    team: personalAssistants(first: 3) @include(if: $withPas) {
      totalCount pageInfo { hasNextPage endCursor startCursor hasPreviousPage }
      nodes { ...Person workingTimeOptOut skills { name expiresOn }
        availability(first: 2, startsFrom: $from) { nodes { startsAt fromWeeklyPattern } } }
    }
    serviceUsers(first: 2) {
      __typename
      nodes { ...Person funding needs
        soon: visits(first: 2, startsFrom: $from, status: [SCHEDULED, COMPLETED]) {
          totalCount
          edges { __typename cursor node { startsAt tasks @skip(if: $noTasks) seriesId
            confirmedAt checkedInAt confirmedBy { name } } }
        }
      }
      edges { cursor }
    }
  }
  clusters(first: 2) { totalCount nodes { name status radiusKm } pageInfo { endCursor } }
  me { ... on PersonalAssistant { name visits(first: 2) { totalCount nodes { status } }
         availability(first: 3, startsFrom: $from) { totalCount edges { cursor node {
           id startsAt endsAt personalAssistant { name } } } } }
       ... on ServiceUser { name needs } }
}"""


# The lists between records: members' clusters, pools both ways, regular PAs, carers and
# whom they care for, neighbouring local authorities, PAs' pay rates, requests' offers.
RELATIONS = """
query Relations($id: ID!) {
  cluster(id: $id) {
    localAuthority { gssCode neighbours { gssCode name } }
    pools { name clusters { name } personalAssistants(first: 3) {
      totalCount nodes { name pools { name } clusters { name } } } }
    serviceUsers(first: 6) { nodes { clusters { name } regularPersonalAssistants { name }
      carers { name clusters { name } caresFor { name needs } } } }
  }
  members(first: 60) { nodes { __typename name clusters { id name }
    ... on Carer { caresFor { id } } ... on PersonalAssistant { pools { id }
      payRates { __typename effectiveFrom hourlyPayPence } } } }
  carers: members(first: 10, membershipClass: CARER) { nodes { __typename
    ... on Carer { caresFor { id name } clusters { id } } } }
  coverRequests(first: 3, clusterId: $id, orderBy: OPENED_ASC) { nodes { ...Offers } }
  latest: coverRequests(first: 3, orderBy: OPENED_DESC) { nodes { ...Offers } }
}
fragment Offers on CoverRequest { id offers { __typename id status offeredAt expiresAt
  respondedAt coverRequest { id status } personalAssistant { id name } } }"""


# A visit's live cover exchange with a partner co-op (the newest of its live ones), read
# by id, in a list of the person's visits, and on a visit outside the coordinator's
# clusters.
PARTNER_COVER = """
query PartnerCover($visit: ID!, $other: ID!, $person: ID!, $start: DateTime!) {
  covered: node(id: $visit) { id ... on Visit { status partnerCover { ...Exchange } } }
  other: node(id: $other) { ... on Visit { partnerCover { id side status partner { name } } } }
  visits(first: 5, serviceUserId: $person, startsFrom: $start) {
    nodes { id partnerCover { id status coverRequest { id } } } }
}
fragment Exchange on CoverExchange { __typename id ref side status partner { name baseUrl }
  startsAt endsAt district skills holdExpiresAt paRef paFirstName personFirstName
  personAddress careSummary cancelledBy reason visit { id status } coverRequest { id status }
  pa { id } events { __typename at status bySide byRole note } }"""


# The root lists of cover for partners: managers', and a PA's own with their offers.
EXCHANGES = """
{ coverExchanges(first: 3, filter: {side: PROVIDING}) { totalCount nodes { id status } } }"""
MY_COVER = """
{ myCoverExchanges(last: 2) { totalCount edges { cursor node { id status } } }
  myCoverOffers { totalCount nodes { id status } } }"""


MEMBERS = """
query Members($class: MembershipClass, $active: Boolean, $name: String) {
  members(first: 30, membershipClass: $class, active: $active, nameContains: $name) {
    totalCount pageInfo { hasNextPage endCursor }
    nodes { __typename id name email phone latitude longitude
      ... on ServiceUser { needs funding plannedWeeklyHours }
      ... on PersonalAssistant { hourlyPayPence contractedWeeklyHours maxTravelKm } }
  }
}"""


# The root fields read as declared (`schema.types.root_list`, `root_record`): public ones
# and the co-op's (`pools`) apart, so a caller refused one still compiles the other.
PUBLIC_ROOTS = """
query { coop { __typename name kind societyNumber cqcProviderId cqcStatus description
    homeLocalAuthority { gssCode name neighbours { gssCode } } }
  localAuthorities { __typename gssCode name neighbours { gssCode name } } }"""
POOLS = """
query { pools { __typename id name sharedWithPartners clusters { name }
    personalAssistants(first: 2) { totalCount nodes { name } } } }"""


def _exact(value: Any) -> bytes:
    """JSON with key order: dicts compare equal whatever their order, bytes do not."""
    return orjson.dumps(value)


class Both:
    """One operation through both paths as one caller."""

    def __init__(self, api: Api, app: Any, counter: StatementCounter) -> None:
        self.api = api
        self.app = app
        self.counter = counter
        self.compiled = False

    async def run(
        self, query: str, variables: dict[str, Any], token: str | None
    ) -> tuple[dict[str, Any], dict[str, Any], int]:
        state = self.app.state
        state.compiled_reads = state.fast_lane = False
        try:
            resolved = await self.api.query(query, variables, token=token)
            state.compiled_reads = True
            before = self.counter.count
            answered: list[bool] = []
            with watching_compiled(answered):
                full = await self.api.post(query, variables, token=token)
            ran = self.counter.count - before
        finally:
            state.compiled_reads = state.fast_lane = True
        assert full.status_code == 200, full.text
        self.compiled = answered == [True]
        # Again through the HTTP fast lane (api/fastlane.py), which answers what the
        # compiled path answered before: the same bytes and headers, or the full path.
        answered = state.fast_lane_answered
        again = await self.api.post(query, variables, token=token)
        assert again.status_code == full.status_code
        if self.compiled:
            assert again.content == full.content
            assert again.headers == full.headers
            assert state.fast_lane_answered == answered + 1, "the fast lane did not answer"
        # (Fallen back, both ran the resolvers, whose answer may move with the clock:
        # `expansionOpportunities` counts hours from now.)
        return resolved, full.json(), ran

    async def same(
        self, query: str, variables: dict[str, Any], token: str | None, *, statements: int | None
    ) -> dict[str, Any]:
        resolved, compiled, ran = await self.run(query, variables, token)
        assert _exact(compiled.get("data")) == _exact(resolved.get("data"))
        assert compiled.get("errors") == resolved.get("errors")
        if statements is not None:
            assert ran == statements
            assert self.compiled == (statements == 1)
        return compiled


@pytest.fixture
async def demo(db: AsyncSession) -> dict[str, Any]:
    today = dt.datetime.now(LONDON).date()
    assert await load_demo(db, today) is True
    await db.commit()
    cluster_id, coordinator = (
        await db.execute(
            select(Cluster.id, Cluster.support_worker_id)
            .where(Cluster.support_worker_id.is_not(None))
            .order_by(Cluster.id)
            .limit(1)
        )
    ).one()
    busy_pa = await db.scalar(
        select(Visit.pa_id).where(Visit.pa_id.is_not(None)).group_by(Visit.pa_id).limit(1)
    )
    # A person with visits and a carer of theirs.
    person, carer = (
        await db.execute(
            select(CarerLink.service_user_id, CarerLink.carer_id)
            .where(CarerLink.service_user_id.in_(select(Visit.service_user_id)))
            .order_by(CarerLink.service_user_id)
            .limit(1)
        )
    ).one()
    # A PA with no visit at all, and a member who is no one's carer, PA or coordinator.
    idle_pa = (
        await db.execute(
            text(
                "INSERT INTO member (name, membership_class) VALUES ('Idle PA', 'WORKER') "
                "RETURNING id"
            )
        )
    ).scalar_one()
    await db.execute(
        text(
            "INSERT INTO pa_profile (member_id, hourly_pay_pence, contracted_weekly_hours,"
            " max_travel_km) VALUES (:id, 1200, 0, 10)"
        ),
        {"id": idle_pa},
    )
    stranger = (
        await db.execute(
            text(
                "INSERT INTO member (name, membership_class) VALUES ('A supporter', "
                "'SUPPORTER') RETURNING id"
            )
        )
    ).scalar_one()
    # An older pay rate of the busy PA's (the pa_profile trigger wrote today's), and
    # offers of cover: on a request of the coordinator's cluster, one open to the busy PA
    # and one the idle PA declined; on another request, one to the busy PA that lapsed
    # unanswered (read as EXPIRED). RELATIONS reads them from the first of each list.
    await db.execute(
        text(
            "INSERT INTO pa_pay_rate (pa_id, effective_from, hourly_pay_pence) "
            "VALUES (:pa, :day, 1105)"
        ),
        {"pa": busy_pa, "day": today - dt.timedelta(days=400)},
    )
    managed = (
        "SELECT r.id FROM cover_request r JOIN visit v ON v.id = r.visit_id "
        "JOIN cluster_service_user s ON s.service_user_id = v.service_user_id "
        "JOIN cluster c ON c.id = s.cluster_id WHERE c.support_worker_id = :coordinator"
    )
    ours, other = (
        await db.execute(
            text(
                "SELECT (SELECT min(r.id) FROM cover_request r JOIN visit v ON v.id = "
                "r.visit_id JOIN cluster_service_user s ON s.service_user_id = "
                f"v.service_user_id WHERE s.cluster_id = :cluster), (SELECT max(id) FROM "
                f"cover_request WHERE id NOT IN ({managed}))"
            ),
            {"cluster": cluster_id, "coordinator": coordinator},
        )
    ).one()
    assert ours is not None and other is not None
    # The other request (outside the coordinator's clusters) opened last.
    await db.execute(
        text("UPDATE cover_request SET opened_at = now() WHERE id = :id"), {"id": other}
    )
    await db.execute(
        text(
            "INSERT INTO cover_offer (cover_request_id, pa_id, status, offered_at, expires_at,"
            " responded_at) VALUES "
            "(:ours, :busy, 'OPEN', now(), now() + interval '1 day', NULL), "
            "(:ours, :idle, 'DECLINED', now() - interval '2 hours', now() + interval '1 day',"
            " now() - interval '1 hour'), "
            "(:other, :busy, 'OPEN', now() - interval '2 days', now() - interval '1 day', NULL)"
        ),
        {"ours": ours, "other": other, "busy": busy_pa, "idle": idle_pa},
    )
    # Cover exchanges with a partner co-op (requesting side) on the visit of our request:
    # a HELD one answering the request, a newer CONFIRMED one (the live one read), and a
    # newest CANCELLED one (not live); a HELD one on the other request's visit.
    partnership = await Build(db).partnership(
        "https://partner.example", ["COVER"], coop_name="Partner Co-op"
    )
    covered, elsewhere = [
        await db.scalar(
            select(Visit)
            .join(CoverRequest, Visit.id == CoverRequest.visit_id)
            .where(CoverRequest.id == request)
        )
        for request in (ours, other)
    ]
    assert covered is not None and elsewhere is not None
    during = covered.during

    def exchange(visit: Visit, status: str, **fields: Any) -> CoverExchange:
        return CoverExchange(
            ref=uuid.uuid4(),
            partnership_id=partnership.id,
            side="REQUESTING",
            status=status,
            during=Range(visit.during.lower, visit.during.upper, bounds="[)"),
            district="N12",
            skills=["hoist", "meds"],
            pa_ref="their-pa",
            hold_expires_at=dt.datetime(2026, 1, 2, 3, 4, 5, 60, dt.UTC),
            visit_id=visit.id,
            care_summary="Needs help to stand.",
            person_first_name="Ada",
            **fields,
        )

    held = exchange(covered, "HELD", cover_request_id=ours)
    db.add(held)
    await db.flush()
    live = exchange(covered, "CONFIRMED", pa_first_name="Pat", person_address="N12 8AA")
    db.add(live)
    await db.flush()
    db.add(exchange(covered, "CANCELLED", cancelled_by="US", reason="Not needed"))
    db.add(exchange(elsewhere, "HELD", cover_request_id=other))
    await db.flush()
    db.add_all(
        [
            CoverExchangeEvent(
                exchange_id=live.id,
                at=dt.datetime(2026, 1, 1, 9, 0, tzinfo=dt.UTC),
                status="HELD",
                by_side="PARTNER",
                by_role="COORDINATOR",
            ),
            CoverExchangeEvent(
                exchange_id=live.id,
                at=dt.datetime(2026, 1, 1, 9, 30, 0, 5, dt.UTC),
                status="CONFIRMED",
                by_side="US",
                by_role="ADMIN",
                note="Booked",
            ),
        ]
    )
    # Cover for partner co-ops (providing side, our PAs), far ahead of every visit: the
    # busy PA's HELD one, a DECLINED one at the same start (ties go by id), a CONFIRMED
    # one with a second partner and a CANCELLED one; a HELD and an ACCEPTED one of a PA
    # on the coordinator's cluster's team.
    second = await Build(db).partnership(
        "https://second.example", ["COVER"], coop_name="Second Co-op"
    )
    team_pa = await db.scalar(
        select(ClusterPa.pa_id)
        .where(ClusterPa.cluster_id == cluster_id, ClusterPa.pa_id != busy_pa)
        .order_by(ClusterPa.pa_id)
        .limit(1)
    )
    assert team_pa is not None
    ahead = dt.datetime.combine(today + dt.timedelta(days=900), dt.time(10), dt.UTC)

    def providing(pa: int, status: str, hours: int, partner: Any, **fields: Any) -> None:
        start = ahead + dt.timedelta(hours=hours)
        db.add(
            CoverExchange(
                ref=uuid.uuid4(),
                partnership_id=partner.id,
                side="PROVIDING",
                status=status,
                during=Range(start, start + dt.timedelta(hours=2), bounds="[)"),
                district="EN1",
                skills=["meds"],
                pa_ref="our-pa",
                hold_expires_at=start - dt.timedelta(days=1),
                pa_id=pa,
                **fields,
            )
        )

    providing(busy_pa, "HELD", 0, partnership)
    providing(busy_pa, "DECLINED", 0, partnership, reason="Busy")
    providing(
        busy_pa,
        "CONFIRMED",
        24,
        second,
        pa_first_name="Sam",
        person_first_name="Bea",
        person_address="EN1 1AA",
        care_summary="Likes tea.",
    )
    providing(busy_pa, "CANCELLED", 48, second, cancelled_by="PARTNER", reason="Sorted")
    providing(team_pa, "HELD", 24, second)
    providing(team_pa, "ACCEPTED", 72, partnership)
    await db.flush()
    assert during.lower is not None
    assert await db.scalar(select(func.count()).select_from(PaProfile)) > 1
    assert await db.scalar(select(func.count()).select_from(Member)) > 10
    await db.commit()  # and no transaction left open (a test locks a table)
    start = dt.datetime.combine(today, dt.time(0), dt.UTC)
    return {
        "cluster": gid("Cluster", cluster_id),
        "from": start.isoformat(),
        "cover": {
            "visit": gid("Visit", covered.id),
            "other": gid("Visit", elsewhere.id),
            "person": gid("ServiceUser", covered.service_user_id),
            "start": during.lower.isoformat(),
        },
        "covered": {"visit": covered.id, "exchange": live.id, "person": covered.service_user_id},
        "partnerships": {"first": partnership.id, "second": second.id},
        "ids": {
            "coordinator": coordinator,
            "busy_pa": busy_pa,
            "idle_pa": idle_pa,
            "team_pa": team_pa,
            "stranger": stranger,
            "person": person,
            "carer": carer,
        },
    }


def _callers(api: Api, ids: dict[str, int]) -> dict[str, str | None]:
    return {
        "admin": api.token(Role.ADMIN),
        "coordinator": api.token(Role.COORDINATOR, ids["coordinator"]),
        "pa with visits": api.token(Role.PA, ids["busy_pa"]),
        "pa without visits": api.token(Role.PA, ids["idle_pa"]),
        "stranger": api.token(Role.SERVICE_USER, ids["stranger"]),
        "service user": api.token(Role.SERVICE_USER, ids["person"]),
        "carer": api.token(Role.CARER, ids["carer"]),
        "la analyst": api.tokens.issue(Role.LA_ANALYST, la_code="E09000003"),
        "anonymous": None,
    }


async def test_reads_are_identical_on_both_paths_for_every_caller(
    api: Api, app: Any, sql_counter: StatementCounter, demo: dict[str, Any]
) -> None:
    both = Both(api, app, sql_counter)
    operations = [
        (CLUSTER_PAGE, {"id": demo["cluster"], "from": demo["from"]}),
        (VISIT_LIST, {"from": demo["from"]}),
        (
            SHAPES,
            {"id": demo["cluster"], "from": demo["from"], "withPas": True, "noTasks": False},
        ),
        (
            SHAPES,
            {"id": demo["cluster"], "from": None, "withPas": False, "noTasks": True},
        ),
        (RELATIONS, {"id": demo["cluster"]}),
        (PARTNER_COVER, demo["cover"]),
        (EXCHANGES, {}),
        (MY_COVER, {}),
        (MEMBERS, {}),
        (MEMBERS, {"class": "SERVICE_USER", "active": True, "name": "smith"}),
        # "%" is a character to look for, not a wildcard; "" is refused (input bounds).
        (MEMBERS, {"class": "SERVICE_USER", "active": False, "name": "%"}),
        (MEMBERS, {"class": "SERVICE_USER", "active": True, "name": ""}),
        (PUBLIC_ROOTS, {}),
        (POOLS, {}),
    ]
    answered = 0
    for name, token in _callers(api, demo["ids"]).items():
        for query, variables in operations:
            resolved, compiled, ran = await both.run(query, variables, token)
            assert _exact(compiled.get("data")) == _exact(resolved.get("data")), name
            assert compiled.get("errors") == resolved.get("errors"), name
            if not resolved.get("errors"):
                assert both.compiled, name  # compiled, not fallen back
                answered += 1
    assert answered >= 30  # most callers may read most of it: the comparison is not vacuous


def _offers(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The offers of both lists of cover requests of RELATIONS."""
    lists = (body["data"]["coverRequests"], body["data"]["latest"])
    return [offer for found in lists for request in found["nodes"] for offer in request["offers"]]


async def test_the_lists_between_records_are_one_statement_with_data(
    api: Api, app: Any, sql_counter: StatementCounter, demo: dict[str, Any]
) -> None:
    both = Both(api, app, sql_counter)
    body = await both.same(RELATIONS, {"id": demo["cluster"]}, api.token(Role.ADMIN), statements=1)
    cluster = body["data"]["cluster"]
    assert cluster["localAuthority"]["neighbours"]
    assert any(p["clusters"] and p["personalAssistants"]["nodes"] for p in cluster["pools"])
    people = cluster["serviceUsers"]["nodes"]
    assert all(person["clusters"] for person in people)
    assert any(person["regularPersonalAssistants"] for person in people)
    assert any(c["caresFor"] for person in people for c in person["carers"])
    members = body["data"]["members"]["nodes"]
    assert any(m.get("pools") for m in members)
    assert any(c.get("caresFor") for c in body["data"]["carers"]["nodes"])
    # Pay rates newest first, the seeded older one last.
    rates = [m["payRates"] for m in members if len(m.get("payRates") or ()) > 1]
    assert rates and rates[0][-1]["hourlyPayPence"] == 1105
    assert rates[0][0]["effectiveFrom"] > rates[0][-1]["effectiveFrom"]
    offers = _offers(body)
    assert {o["status"] for o in offers} == {"OPEN", "DECLINED", "EXPIRED"}
    assert all(o["coverRequest"] and o["personalAssistant"] for o in offers)
    # The coordinator sees their cluster's offers only, with no one's pay; a PA their own
    # offers and pay.
    coordinator = api.token(Role.COORDINATOR, demo["ids"]["coordinator"])
    body = await both.same(RELATIONS, {"id": demo["cluster"]}, coordinator, statements=1)
    offers = _offers(body)
    assert {o["status"] for o in offers} == {"OPEN", "DECLINED"}
    assert not any(m.get("payRates") for m in body["data"]["members"]["nodes"])
    busy_pa = demo["ids"]["busy_pa"]
    pa = api.token(Role.PA, busy_pa)
    body = await both.same(RELATIONS, {"id": demo["cluster"]}, pa, statements=1)
    offers = _offers(body)
    assert {o["personalAssistant"]["id"] for o in offers} == {gid("PersonalAssistant", busy_pa)}
    paid = [m for m in body["data"]["members"]["nodes"] if m.get("payRates")]
    assert [m["payRates"][-1]["hourlyPayPence"] for m in paid] == [1105]


async def test_a_visits_partner_cover_is_one_statement_with_data(
    api: Api, app: Any, sql_counter: StatementCounter, demo: dict[str, Any]
) -> None:
    both = Both(api, app, sql_counter)
    admin = api.token(Role.ADMIN)
    body = await both.same(PARTNER_COVER, demo["cover"], admin, statements=1)
    exchange = gid("CoverExchange", demo["covered"]["exchange"])
    cover = body["data"]["covered"]["partnerCover"]
    # The newest live exchange: not the older HELD one, nor the newer CANCELLED one.
    assert cover["id"] == exchange and cover["status"] == "CONFIRMED"
    assert cover["personFirstName"] == "Ada" and cover["partner"]["name"] == "Partner Co-op"
    assert cover["visit"]["id"] == demo["cover"]["visit"] and cover["coverRequest"] is None
    assert [e["status"] for e in cover["events"]] == ["HELD", "CONFIRMED"]
    assert body["data"]["other"]["partnerCover"]["status"] == "HELD"
    listed = [v["partnerCover"] for v in body["data"]["visits"]["nodes"]]
    assert {"id": exchange, "status": "CONFIRMED", "coverRequest": None} in listed
    # The person sees their visit, not the exchange; the coordinator sees theirs only.
    person = api.token(Role.SERVICE_USER, demo["covered"]["person"])
    body = await both.same(PARTNER_COVER, demo["cover"], person, statements=1)
    assert body["data"]["covered"]["id"] == demo["cover"]["visit"]
    assert body["data"]["covered"]["partnerCover"] is None
    coordinator = api.token(Role.COORDINATOR, demo["ids"]["coordinator"])
    body = await both.same(PARTNER_COVER, demo["cover"], coordinator, statements=1)
    assert body["data"]["covered"]["partnerCover"]["id"] == exchange
    assert not (body["data"]["other"] or {}).get("partnerCover")


async def test_the_root_rows_are_one_statement_with_data(
    api: Api, app: Any, sql_counter: StatementCounter, demo: dict[str, Any]
) -> None:
    both = Both(api, app, sql_counter)
    admin = api.token(Role.ADMIN)
    body = await both.same(PUBLIC_ROOTS + "\n", {}, None, statements=1)  # anonymous
    coop = body["data"]["coop"]
    assert coop["name"] and coop["homeLocalAuthority"]["gssCode"]
    councils = body["data"]["localAuthorities"]
    assert len(councils) > 1 and any(c["neighbours"] for c in councils)
    assert [c["gssCode"] for c in councils] == sorted(c["gssCode"] for c in councils)
    body = await both.same(POOLS, {}, admin, statements=1)
    pools = body["data"]["pools"]
    assert pools and any(p["clusters"] for p in pools)
    assert any(p["personalAssistants"]["totalCount"] for p in pools)
    # A caller outside the co-op is refused `pools` on both paths alike.
    analyst = api.tokens.issue(Role.LA_ANALYST, la_code="E09000003")
    refused = await both.same(POOLS + " ", {}, analyst, statements=None)
    assert refused.get("errors")
    # `coverRules`: columns of the co-op's select (the weights merged with their defaults
    # in SQL), read in the same statement; null outside the co-op.
    rules = "{ coop { name coverRules { dbsValidMonths weights { travel } } } }"
    body = await both.same(rules, {}, admin, statements=1)
    assert body["data"]["coop"]["coverRules"] == {"dbsValidMonths": 36, "weights": {"travel": 1.0}}
    body = await both.same(rules, {}, None, statements=1)
    assert body["data"]["coop"] == {"name": coop["name"], "coverRules": None}


async def test_the_cluster_page_is_one_statement_with_data(
    api: Api, app: Any, sql_counter: StatementCounter, demo: dict[str, Any]
) -> None:
    both = Both(api, app, sql_counter)
    variables = {"id": demo["cluster"], "from": demo["from"]}
    body = await both.same(CLUSTER_PAGE, variables, api.token(Role.ADMIN), statements=1)
    users = body["data"]["cluster"]["serviceUsers"]["edges"]
    assert users and any(u["node"]["visits"]["edges"] for u in users)
    assert body["extensions"]["sqlStatements"] == 1
    coordinator = api.token(Role.COORDINATOR, demo["ids"]["coordinator"])
    body = await both.same(CLUSTER_PAGE, variables, coordinator, statements=1)
    assert body["data"]["cluster"]["serviceUsers"]["totalCount"] > 0


async def test_pages_follow_cursors_identically(
    api: Api, app: Any, sql_counter: StatementCounter, demo: dict[str, Any]
) -> None:
    both = Both(api, app, sql_counter)
    admin = api.token(Role.ADMIN)
    query = """query($from: DateTime, $after: String) {
      visits(first: 7, startsFrom: $from, after: $after) {
        totalCount pageInfo { hasNextPage hasPreviousPage endCursor }
        edges { cursor node { id startsAt } } } }"""
    after = None
    for _ in range(3):
        body = await both.same(query, {"from": demo["from"], "after": after}, admin, statements=1)
        page = body["data"]["visits"]
        assert len(page["edges"]) == 7
        after = page["pageInfo"]["endCursor"]
    # A nested page after a cursor, and a nested page past the end.
    nested = """query($id: ID!, $a: String) { cluster(id: $id) { serviceUsers(first: 2, after: $a) {
      totalCount pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
      nodes { name visits(first: 1, after: "W3sidCI6IjE5MDAtMDEtMDFUMDA6MDA6MDArMDA6MDAifSwxXQ") {
        totalCount pageInfo { hasPreviousPage } nodes { id } } } } } }"""
    after = None
    for _ in range(3):
        body = await both.same(nested, {"id": demo["cluster"], "a": after}, admin, statements=1)
        people = body["data"]["cluster"]["serviceUsers"]
        assert people["nodes"]
        after = people["pageInfo"]["endCursor"]
    # Past the end: an empty page whose total says 0, as today.
    far = (
        "query($a: String) { members(first: 1) { totalCount } "
        "clusters(after: $a) { totalCount nodes { id } } }"
    )
    clusters = await both.same(
        "{ clusters(first: 100) { pageInfo { endCursor } } }", {}, admin, statements=1
    )
    end = clusters["data"]["clusters"]["pageInfo"]["endCursor"]
    body = await both.same(far, {"a": end}, admin, statements=None)
    assert body["data"]["clusters"] == {"totalCount": 0, "nodes": []}


async def test_the_cluster_filters_compile_identically(
    api: Api, app: Any, sql_counter: StatementCounter, demo: dict[str, Any]
) -> None:
    # Declared once (`schema.filters.CLUSTERS`): both paths apply the same filters.
    both = Both(api, app, sql_counter)
    admin = api.token(Role.ADMIN)
    every = await both.same(
        "{ clusters(first: 100) { nodes { kind status localAuthority { gssCode } } } }",
        {},
        admin,
        statements=1,
    )
    first = every["data"]["clusters"]["nodes"][0]
    query = """query($la: String, $kind: ClusterKind, $status: ClusterStatus) {
      clusters(first: 100, localAuthority: $la, kind: $kind, status: $status) {
        totalCount nodes { id name kind status } } }"""
    la = first["localAuthority"]["gssCode"]
    matching = {"la": la, "kind": first["kind"], "status": first["status"]}
    for variables in ({"la": la}, {"kind": first["kind"]}, matching):
        body = await both.same(query, variables, admin, statements=1)
        nodes = body["data"]["clusters"]["nodes"]
        assert nodes
        assert all(n["kind"] == variables.get("kind", n["kind"]) for n in nodes)
        assert all(n["status"] == variables.get("status", n["status"]) for n in nodes)
    none = await both.same(query, {"la": "E00000000"}, admin, statements=1)
    assert none["data"]["clusters"] == {"totalCount": 0, "nodes": []}
    written = await both.same(
        "{ clusters(kind: GEOGRAPHIC, status: ACTIVE) { totalCount } }", {}, admin, statements=1
    )
    assert written["data"]["clusters"]["totalCount"] >= 0


async def test_bad_input_gets_todays_errors(
    api: Api, app: Any, sql_counter: StatementCounter, demo: dict[str, Any]
) -> None:
    both = Both(api, app, sql_counter)
    admin = api.token(Role.ADMIN)
    query = "query($a: String, $n: Int) { visits(first: $n, after: $a) { nodes { id } } }"
    member_cursor = "WzFd"  # [1]: a member list's cursor, not a visit list's
    for variables in (
        {"a": "not a cursor"},
        {"a": member_cursor},
        {"n": 0},
        {"n": 101},
        {"a": None, "n": "ten"},
    ):
        resolved, compiled, _ = await both.run(query, variables, admin)
        assert resolved.get("errors"), variables
        assert compiled.get("errors") == resolved.get("errors"), variables
        assert compiled.get("data") == resolved.get("data"), variables
    unknown = await both.same('{ cluster(id: "bm90IGFuIGlk") { name } }', {}, admin, statements=1)
    assert unknown["data"] == {"cluster": None}


async def test_an_unsupported_field_falls_back_and_answers(
    api: Api,
    app: Any,
    sql_counter: StatementCounter,
    demo: dict[str, Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    both = Both(api, app, sql_counter)
    admin = api.token(Role.ADMIN)
    # Every field of the types the compiler reads compiles; `coverCandidates` (ranked in
    # Python, partners asked over the network) does not.
    query = """query($id: ID!, $visit: ID!) { cluster(id: $id) { name
      pools { name }
      personalAssistants(first: 3) { nodes { name } } }
      coverCandidates(visitId: $visit, first: 3, includePartners: false) {
        candidates { __typename } } }"""
    PLANS.entries.clear()
    variables = {"id": demo["cluster"], "visit": demo["cover"]["visit"]}
    with caplog.at_level(logging.INFO, logger="coopnet.compiled"):
        body = await both.same(query, variables, admin, statements=None)
    assert body["data"]["cluster"]["pools"]
    assert body["extensions"]["sqlStatements"] > 1  # the resolvers ran
    assert any("Query.coverCandidates" in r.getMessage() for r in caplog.records)


async def test_a_cached_statement_never_carries_another_viewers_values(
    api: Api, app: Any, sql_counter: StatementCounter, demo: dict[str, Any]
) -> None:
    """Two PAs share a viewer shape, hence a cached plan: each must see their own."""
    both = Both(api, app, sql_counter)
    query = "{ me { id name } visits(first: 100) { totalCount nodes { pa { id } } } }"
    PLANS.entries.clear()
    busy = await both.same(query, {}, api.token(Role.PA, demo["ids"]["busy_pa"]), statements=1)
    idle = await both.same(query, {}, api.token(Role.PA, demo["ids"]["idle_pa"]), statements=1)
    assert len(PLANS.entries) == 1  # one plan served both
    assert busy["data"]["me"]["id"] == gid("PersonalAssistant", demo["ids"]["busy_pa"])
    assert busy["data"]["visits"]["totalCount"] > 0
    assert {v["pa"]["id"] for v in busy["data"]["visits"]["nodes"]} == {busy["data"]["me"]["id"]}
    assert idle["data"]["me"] == {
        "id": gid("PersonalAssistant", demo["ids"]["idle_pa"]),
        "name": "Idle PA",
    }
    assert idle["data"]["visits"] == {"totalCount": 0, "nodes": []}


async def test_mutations_still_run_on_the_resolvers(
    api: Api, app: Any, sql_counter: StatementCounter, demo: dict[str, Any]
) -> None:
    admin = api.token(Role.ADMIN)
    data = await api.data(
        'mutation { recordReferral(input: {localAuthority: "E09000010", '
        'postcodeDistrict: "EN1", hoursPerWeek: 14, referredOn: "2026-11-20", '
        'needs: ["dementia"]}) { referral { status } errors { code } } }',
        token=admin,
    )
    assert data["recordReferral"] == {"referral": {"status": "WAITING"}, "errors": []}


async def test_the_readme_reads_are_identical_on_both_paths(
    api: Api, app: Any, sql_counter: StatementCounter, demo: dict[str, Any]
) -> None:
    """Every query of the README (tests/api/test_readme_examples.py runs them too), as an
    admin and as a PA: identical answers, compiled or fallen back."""
    both = Both(api, app, sql_counter)
    today = dt.datetime.now(LONDON).date()
    tabs = {_normalised(e.query): e for e in load_examples()}
    callers = [api.token(Role.ADMIN), api.token(Role.PA, demo["ids"]["busy_pa"])]
    compared = 0
    compiled: set[str] = set()
    # The clock stands still: a fallen-back operation runs the resolvers twice, and an
    # answer counted from now (`expansionOpportunities`' free hours) must not move between
    # the two runs. (PostgreSQL's own clock is not read by these: `now` is the viewer's.)
    with time_machine.travel(dt.datetime.now(dt.UTC), tick=False):
        for source, operation in readme_operations():
            text_ = print_ast(operation)
            if '"..."' in text_ or operation.operation != OperationType.QUERY:
                continue
            tab = tabs.get(_normalised(source))
            variables = (
                fill_dates(tab.variables, today) if tab is not None and tab.variables else {}
            )
            if "id" in variables:
                variables["id"] = demo["cluster"]
            for token in callers:
                resolved, answer, ran = await both.run(text_, variables, token)
                assert answer.get("errors") == resolved.get("errors"), text_
                assert _exact(answer.get("data")) == _exact(resolved.get("data")), text_
                compared += 1
                if both.compiled and not resolved.get("errors") and operation.name:
                    compiled.add(operation.name.value)
    assert compared >= 10
    assert {"ClusterPage", "PaWeek"} <= compiled


async def test_a_statement_timeout_on_the_compiled_path_is_a_coded_503(
    app: Any, migrated_url: str, tmp_path: Path, demo: dict[str, Any]
) -> None:
    query = "{ visits(first: 5) { nodes { pa { name } } } }"
    async with (
        running(migrated_url, tmp_path, db_statement_timeout_ms=300) as short,
        client_of(short) as client,
    ):
        assert short.state.compiled_reads is True
        async with table_locked(app.state.engine, "member"):
            response, _ = await post(client, short, query)
            assert response.status_code == 503, response.text
            assert code_of(response) == "DATABASE_TIMEOUT"
            assert response.json()["errors"][0]["path"] == ["visits"], response.text
        response, _ = await post(client, short, query)
        assert response.status_code == 200
        assert response.json()["extensions"]["sqlStatements"] == 1


INFO = "pageInfo { hasNextPage hasPreviousPage startCursor endCursor }"

# A root list in either direction, from either end or a cursor, in any order.
ROOT_PAGES = """
query Pages($n: Int, $l: Int, $a: String, $b: String, $mo: MemberOrder!, $vo: VisitOrder!,
            $members: Boolean!) {
  members(first: $n, last: $l, after: $a, before: $b, orderBy: $mo) @include(if: $members) {
    totalCount PAGE_INFO edges { cursor node { id name } } }
  visits(first: $n, last: $l, after: $a, before: $b, orderBy: $vo) @skip(if: $members) {
    totalCount PAGE_INFO edges { cursor node { id startsAt } } }
}""".replace("PAGE_INFO", INFO)

# Nested pages backwards (from the end, and before a cursor), per parent.
NESTED_BACKWARDS = """
query Backwards($id: ID!, $b: String, $vb: String, $from: DateTime) {
  cluster(id: $id) {
    serviceUsers(last: 2, before: $b) {
      totalCount PAGE_INFO
      edges { cursor node { name
        visits(last: 2, before: $vb) { totalCount PAGE_INFO nodes { id startsAt } }
        late: visits(last: 1, startsFrom: $from, status: [SCHEDULED]) {
          PAGE_INFO edges { cursor node { startsAt } } } } }
    }
    personalAssistants(last: 1) { PAGE_INFO nodes { name
      availability(last: 2, startsFrom: $from) { PAGE_INFO edges { cursor } } } }
  }
  clusters(last: 1) { totalCount PAGE_INFO nodes { name } }
}""".replace("PAGE_INFO", INFO)


COVER_PAGES = """
query Cover($n: Int, $l: Int, $a: String, $b: String, $o: CoverRequestOrder!,
            $status: [CoverRequestStatus!], $from: DateTime, $cluster: ID) {
  coverRequests(first: $n, last: $l, after: $a, before: $b, orderBy: $o, status: $status,
                visitStartsFrom: $from, clusterId: $cluster) {
    totalCount PAGE_INFO
    edges { cursor node { __typename id reason status openedAt closedAt note visitStartsAt
      filledByPartner visit { id startsAt status serviceUser { name } }
      absence { id kind note personalAssistant { name } }
      originalPa { name } filledBy { id }
      offers { id status offeredAt expiresAt respondedAt personalAssistant { name } } } } }
}""".replace("PAGE_INFO", INFO)


AWAY_PAGES = """
query Away($n: Int, $l: Int, $a: String, $b: String, $pa: ID, $pool: ID, $from: DateTime,
           $until: DateTime, $cancelled: Boolean!, $absences: Boolean!) {
  availability(first: $n, last: $l, after: $a, before: $b, paId: $pa, poolId: $pool,
               startsFrom: $from, startsBefore: $until) @skip(if: $absences) {
    totalCount PAGE_INFO
    edges { cursor node { id startsAt endsAt fromWeeklyPattern personalAssistant { name } } } }
  absences(first: $n, last: $l, after: $a, before: $b, paId: $pa, startsFrom: $from,
           startsBefore: $until, includeCancelled: $cancelled) @include(if: $absences) {
    totalCount PAGE_INFO
    edges { cursor node { __typename id kind startsAt endsAt note createdAt cancelledAt
      personalAssistant { id name } } } }
}""".replace("PAGE_INFO", INFO)


async def _walk(
    both: Both, token: str | None, field: str, base: dict[str, Any], query: str = ROOT_PAGES
) -> tuple[int, list[str]]:
    """Pages of a root list forwards to the end, then backwards from the end, then
    `before` with `first` and `after` with `last`; each identical on both paths, one
    statement compiled. Returns how many pages had results, and the ids walked forwards."""
    pages, seen = 0, []

    async def step(**paging: Any) -> dict[str, Any] | None:
        nonlocal pages
        variables = {"n": None, "l": None, "a": None, "b": None, **base, **paging}
        resolved, compiled, ran = await both.run(query, variables, token)
        assert _exact(compiled.get("data")) == _exact(resolved.get("data")), variables
        assert compiled.get("errors") == resolved.get("errors"), variables
        if resolved.get("errors"):
            return None
        assert both.compiled, variables  # compiled, not fallen back
        connection: dict[str, Any] = compiled["data"][field]
        pages += bool(connection["edges"])
        return connection

    after = None
    for _ in range(4):
        page = await step(n=4, a=after)
        if page is None:
            return pages, seen
        seen += [e["node"]["id"] for e in page["edges"]]
        after = page["pageInfo"]["endCursor"]
        if not page["pageInfo"]["hasNextPage"]:
            break
    before = None
    for _ in range(3):
        page = await step(l=3, b=before)
        assert page is not None
        before = page["pageInfo"]["startCursor"]
        if not page["pageInfo"]["hasPreviousPage"]:
            break
    if len(seen) > 2:
        middle = await step(n=2, b=None)
        assert middle is not None
        cursor = middle["edges"][1]["cursor"]
        await step(n=5, b=cursor)  # `first` before a cursor
        await step(l=5, a=middle["edges"][0]["cursor"])  # `last` after a cursor
        await step(l=2, a=middle["edges"][0]["cursor"], b=after)  # between two cursors
    return pages, seen


async def test_pages_both_ways_in_every_order_are_identical_for_every_caller(
    api: Api, app: Any, sql_counter: StatementCounter, demo: dict[str, Any]
) -> None:
    both = Both(api, app, sql_counter)
    lists = [("members", {"members": True, "mo": o, "vo": "START_ASC"}) for o in MEMBER_ORDERS]
    lists += [("visits", {"members": False, "mo": "ID_ASC", "vo": o}) for o in VISIT_ORDERS]
    walked: dict[tuple[str, str], list[str]] = {}
    with_results = 0
    for name, token in _callers(api, demo["ids"]).items():
        for field, base in lists:
            pages, seen = await _walk(both, token, field, base)
            with_results += pages
            if name == "admin":
                walked[(field, base["mo"] if field == "members" else base["vo"])] = seen
    assert with_results >= 60  # most callers see pages of most lists: not vacuous
    # The orders differ, and a descending walk is the ascending one reversed.
    assert walked[("members", "NAME_ASC")] != walked[("members", "ID_ASC")]
    assert walked[("visits", "START_DESC")][:4] != walked[("visits", "START_ASC")][:4]


async def test_cover_requests_both_ways_in_every_order_are_identical_for_every_caller(
    api: Api, app: Any, sql_counter: StatementCounter, demo: dict[str, Any], db: AsyncSession
) -> None:
    # Visits left needing cover get a request from the database at commit (migration
    # 0017); one of them names the PA who had the visit.
    await db.execute(
        text(
            "UPDATE visit SET status = 'NEEDS_COVER', pa_id = NULL WHERE id IN (SELECT id "
            "FROM visit WHERE status = 'SCHEDULED' AND pa_id IS NOT NULL ORDER BY id LIMIT 9)"
        )
    )
    await db.commit()
    await db.execute(
        text(
            "UPDATE cover_request SET original_pa_id = :pa, note = 'Zoë \"away\"' "
            "WHERE id = (SELECT min(id) FROM cover_request)"
        ),
        {"pa": demo["ids"]["busy_pa"]},
    )
    await db.commit()
    both = Both(api, app, sql_counter)
    with_results = 0
    filters: list[dict[str, Any]] = [
        {},
        {"status": ["OPEN"], "from": demo["from"], "cluster": demo["cluster"]},
        {"status": [], "cluster": gid("Visit", 1)},  # an id of another type matches nothing
    ]
    for token in _callers(api, demo["ids"]).values():
        for order in COVER_REQUEST_ORDERS:
            for values in filters:
                base = {"o": order, "status": None, "from": None, "cluster": None, **values}
                pages, _ = await _walk(both, token, "coverRequests", base, COVER_PAGES)
                with_results += pages
    assert with_results >= 9


async def test_availability_and_absences_both_ways_are_identical_for_every_caller(
    api: Api, app: Any, sql_counter: StatementCounter, demo: dict[str, Any], db: AsyncSession
) -> None:
    away = await db.scalar(select(func.min(text("pa_id"))).select_from(text("absence")))
    pool = await db.scalar(select(func.min(text("id"))).select_from(text("pool")))
    assert away is not None and pool is not None
    # A cancelled absence, seen only with includeCancelled.
    await db.execute(
        text(
            "INSERT INTO absence (pa_id, kind, during, note, cancelled_at) VALUES (:pa, "
            "'HOLIDAY', tstzrange(now(), now() + interval '2 days'), 'Away', now())"
        ),
        {"pa": away},
    )
    await db.commit()
    both = Both(api, app, sql_counter)
    none = {"pa": None, "pool": None, "from": None, "until": None, "cancelled": False}
    lists: list[tuple[str, dict[str, Any]]] = [
        ("availability", {"absences": False}),
        ("availability", {"absences": False, "pa": gid("PersonalAssistant", away)}),
        ("availability", {"absences": False, "pool": gid("Pool", pool), "from": demo["from"]}),
        ("availability", {"absences": False, "pool": gid("Cluster", 1)}),  # matches nothing
        ("absences", {"absences": True}),
        ("absences", {"absences": True, "cancelled": True, "pa": gid("PersonalAssistant", away)}),
        ("absences", {"absences": True, "from": demo["from"], "until": "2100-01-01T00:00:00Z"}),
    ]
    with_results = 0
    for token in _callers(api, demo["ids"]).values():
        for field, values in lists:
            pages, _ = await _walk(both, token, field, {**none, **values}, AWAY_PAGES)
            with_results += pages
    assert with_results >= 20


# The root lists of cover exchanges and a PA's own offers, one at a time; the filter as a
# variable (`$filter`) or written out with variables inside (`FILTER_WRITTEN`).
EXCHANGE_PAGES = (
    """
query Exchanges($n: Int, $l: Int, $a: String, $b: String, $filter: CoverExchangeFilter,
                $status: ExchangeStatus, $all: Boolean!, $mine: Boolean!, $offers: Boolean!) {
  coverExchanges(first: $n, last: $l, after: $a, before: $b, filter: $filter)
    @include(if: $all) { ...Exchanges }
  myCoverExchanges(first: $n, last: $l, after: $a, before: $b, status: $status)
    @include(if: $mine) { ...Exchanges }
  myCoverOffers(first: $n, last: $l, after: $a, before: $b) @include(if: $offers) {
    totalCount PAGE_INFO
    edges { cursor node { __typename id status offeredAt expiresAt respondedAt
      coverRequest { id status } personalAssistant { id name } } } }
}
fragment Exchanges on CoverExchangeConnection {
  totalCount PAGE_INFO edges { cursor node { ...Exchange } } }
""".replace("PAGE_INFO", INFO)
    + PARTNER_COVER[PARTNER_COVER.index("fragment Exchange ") :]
)

FILTER_WRITTEN = """
query Written($n: Int, $l: Int, $a: String, $b: String, $side: ExchangeSide,
              $status: ExchangeStatus, $partnership: ID) {
  coverExchanges(first: $n, last: $l, after: $a, before: $b,
                 filter: {side: $side, status: $status, partnershipId: $partnership}) {
    totalCount PAGE_INFO edges { cursor node { id side status startsAt partner { name } } } }
}""".replace("PAGE_INFO", INFO)


def _exchange_filters(demo: dict[str, Any]) -> list[dict[str, Any]]:
    first, second = (gid("Partnership", demo["partnerships"][k]) for k in ("first", "second"))
    return [
        {},
        {"side": "PROVIDING"},
        {"side": "REQUESTING", "status": "HELD"},
        {"status": "CONFIRMED"},
        {"partnershipId": second},
        {"side": "PROVIDING", "status": "HELD", "partnershipId": first},
        {"partnershipId": gid("Visit", 1)},  # an id of another type matches nothing
        {"partnershipId": gid("Partnership", 999999)},  # so does an unknown one
        {"partnershipId": "not an id"},
    ]


async def _open_offers(db: AsyncSession, pa: int) -> None:
    """Open offers of the PA's on more requests, to page through (`myCoverOffers`)."""
    await db.execute(
        text(
            "INSERT INTO cover_offer (cover_request_id, pa_id, status, offered_at, expires_at)"
            " SELECT id, :pa, 'OPEN', now(), now() + interval '2 days' FROM cover_request"
            " WHERE id NOT IN (SELECT cover_request_id FROM cover_offer WHERE pa_id = :pa"
            " AND status = 'OPEN') ORDER BY id LIMIT 6"
        ),
        {"pa": pa},
    )
    await db.commit()


async def test_cover_exchanges_and_offers_both_ways_are_identical_for_every_caller(
    api: Api, app: Any, sql_counter: StatementCounter, demo: dict[str, Any], db: AsyncSession
) -> None:
    await _open_offers(db, demo["ids"]["busy_pa"])
    both = Both(api, app, sql_counter)
    lists: list[tuple[str, dict[str, Any], str]] = []
    off = {"filter": None, "status": None, "all": False, "mine": False, "offers": False}
    for given in [None, *_exchange_filters(demo)]:
        lists.append(("coverExchanges", {**off, "all": True, "filter": given}, EXCHANGE_PAGES))
    for given in _exchange_filters(demo):
        written = {"side": None, "status": None, "partnership": given.get("partnershipId")}
        written |= {k: v for k, v in given.items() if k != "partnershipId"}
        lists.append(("coverExchanges", written, FILTER_WRITTEN))
    for status in (None, "HELD", "CONFIRMED", "DECLINED", "EXPIRED"):
        lists.append(("myCoverExchanges", {**off, "mine": True, "status": status}, EXCHANGE_PAGES))
    lists.append(("myCoverOffers", {**off, "offers": True}, EXCHANGE_PAGES))
    callers = _callers(api, demo["ids"])
    seen: dict[tuple[str, str, str], int] = {}
    for name, token in callers.items():
        for field, base, query in lists:
            pages, walked = await _walk(both, token, field, base, query)
            seen[(name, field, orjson.dumps(base).decode())] = len(walked)
    # Not vacuous: each list has rows for some callers and filters, none for others.
    rows = {
        field: sum(n for (_, f, _), n in seen.items() if f == field)
        for field in ("coverExchanges", "myCoverExchanges", "myCoverOffers")
    }
    assert all(rows.values()), rows
    mine = {
        name: n
        for (name, f, b), n in seen.items()
        if f == "myCoverExchanges" and '"status":null' in b
    }
    assert mine["pa with visits"] == 4 and mine["pa without visits"] == 0


async def _by_hand(
    app: Any, viewer: Viewer, query: str, variables: dict[str, Any], *, compiled: bool
) -> tuple[bytes, Any, int]:
    """An operation in a context built by hand (no token can name a PA who is no member),
    on the compiled path or the resolvers'; its data, errors and statements."""
    context: Context | None = None
    async with session_factory(app.state.engine)() as session:
        context = Context(session=session, viewer=viewer, limits=Limits(), compiled_reads=compiled)
        result = await create_schema().execute(
            query, variable_values=variables, context_value=context
        )
    errors = [e.formatted for e in result.errors or []]
    # The compiled data is PostgreSQL's JSON text (orjson.Fragment): compared as values.
    return _exact(orjson.loads(orjson.dumps(result.data))), errors, context.statements


async def test_a_pa_who_is_no_member_has_no_cover_on_either_path(
    api: Api, app: Any, sql_counter: StatementCounter, demo: dict[str, Any]
) -> None:
    """The resolvers answer a PA viewer without a member id with empty pages, running no
    statement; the compiled statement (planned for that shape) with the same pages."""
    both = Both(api, app, sql_counter)
    variables = {"n": 3, "l": None, "a": None, "b": None, "filter": None, "status": None}
    variables |= {"all": False, "mine": True, "offers": True}
    every = {**variables, "all": True, "mine": False, "offers": False}
    admin = await both.same(EXCHANGE_PAGES, every, api.token(Role.ADMIN), statements=1)
    cursor = admin["data"]["coverExchanges"]["edges"][1]["cursor"]
    nobody = Viewer(role=Role.PA)
    PLANS.entries.clear()
    for paging in (
        {},
        {"n": None, "l": 2},
        # An exchange list's cursor (an offer list's would be another).
        {"status": "HELD", "a": cursor, "offers": False},
        {"n": None, "l": 1, "b": cursor, "offers": False},
    ):
        given = {**variables, **paging}
        resolved = await _by_hand(app, nobody, EXCHANGE_PAGES, given, compiled=False)
        compiled = await _by_hand(app, nobody, EXCHANGE_PAGES, given, compiled=True)
        assert compiled[:2] == resolved[:2], paging
        assert compiled[2] == 1, paging  # the compiled statement answered
        data = orjson.loads(compiled[0])
        assert data["myCoverExchanges"]["totalCount"] == 0, paging
        assert (data.get("myCoverOffers") or {"edges": []})["edges"] == [], paging


async def test_cover_exchanges_and_offers_are_one_statement_with_data(
    api: Api, app: Any, sql_counter: StatementCounter, demo: dict[str, Any], db: AsyncSession
) -> None:
    await _open_offers(db, demo["ids"]["busy_pa"])
    both = Both(api, app, sql_counter)
    off = {"n": 50, "l": None, "a": None, "b": None, "status": None}
    everything = {**off, "filter": None, "all": True, "mine": False, "offers": False}
    body = await both.same(EXCHANGE_PAGES, everything, api.token(Role.ADMIN), statements=1)
    listed = [e["node"] for e in body["data"]["coverExchanges"]["edges"]]
    assert len(listed) == 10 and body["data"]["coverExchanges"]["totalCount"] == 10
    starts = [(e["startsAt"], base64.b64decode(e["id"])) for e in listed]
    assert starts == sorted(starts, key=lambda s: (s[0], int(s[1].split(b":")[1])))
    confirmed = [e for e in listed if e["side"] == "PROVIDING" and e["status"] == "CONFIRMED"]
    assert confirmed[0]["personFirstName"] == "Bea" and confirmed[0]["careSummary"]
    assert confirmed[0]["partner"] == {"name": "Second Co-op", "baseUrl": "https://second.example"}
    held = [e for e in listed if e["side"] == "PROVIDING" and e["status"] == "HELD"]
    assert held and all(e["careSummary"] is None and e["personAddress"] is None for e in held)
    # Filtered: the second partner's providing ones; an unknown partnership, nothing.
    second = gid("Partnership", demo["partnerships"]["second"])
    body = await both.same(
        EXCHANGE_PAGES,
        {**everything, "filter": {"side": "PROVIDING", "partnershipId": second}},
        api.token(Role.ADMIN),
        statements=1,
    )
    assert body["data"]["coverExchanges"]["totalCount"] == 3
    for unknown in (gid("Partnership", 999999), gid("Cluster", 1)):
        body = await both.same(
            EXCHANGE_PAGES,
            {**everything, "filter": {"partnershipId": unknown}},
            api.token(Role.ADMIN),
            statements=1,
        )
        assert body["data"]["coverExchanges"]["edges"] == []
    # The coordinator: their person's requesting ones and their team PA's providing ones.
    coordinator = api.token(Role.COORDINATOR, demo["ids"]["coordinator"])
    body = await both.same(EXCHANGE_PAGES, everything, coordinator, statements=1)
    team = {
        e["node"]["pa"]["id"]
        for e in body["data"]["coverExchanges"]["edges"]
        if e["node"]["side"] == "PROVIDING"
    }
    assert gid("PersonalAssistant", demo["ids"]["team_pa"]) in team
    assert any(e["node"]["side"] == "REQUESTING" for e in body["data"]["coverExchanges"]["edges"])
    # The PA's own: theirs only, and their open offers.
    mine = {**off, "filter": None, "all": False, "mine": True, "offers": True}
    busy = demo["ids"]["busy_pa"]
    body = await both.same(EXCHANGE_PAGES, mine, api.token(Role.PA, busy), statements=1)
    own = body["data"]["myCoverExchanges"]["edges"]
    assert len(own) == 4
    assert {e["node"]["pa"]["id"] for e in own} == {gid("PersonalAssistant", busy)}
    offers = body["data"]["myCoverOffers"]
    assert offers["totalCount"] >= 3
    assert {e["node"]["status"] for e in offers["edges"]} == {"OPEN"}
    # Read by id, as a node, one statement: the PA's own, not another's.
    node = """query($id: ID!) { node(id: $id) { __typename id ... on CoverExchange {
      status personFirstName partner { name } } } }"""
    exchange = own[0]["node"]["id"]
    body = await both.same(node, {"id": exchange}, api.token(Role.PA, busy), statements=1)
    assert body["data"]["node"]["id"] == exchange
    other = api.token(Role.PA, demo["ids"]["team_pa"])
    body = await both.same(node, {"id": exchange}, other, statements=1)
    assert body["data"]["node"] is None


NODE = """
query Node($id: ID!) {
  node(id: $id) {
    __typename id
    ... on Member { name }
    ... on ServiceUser { needs visits(last: 1) { nodes { startsAt } } }
    ... on PersonalAssistant { maxTravelKm }
    ... on Cluster { clusterKind: kind serviceUsers(first: 1) { totalCount } }
    ... on Pool { name }
    ... on AvailabilityWindow { startsAt personalAssistant { name } }
    ... on Visit { startsAt pa { name } }
    ... on Absence { kind note }
    ... on CoverRequest { reason visit { id } }
    ... on CoverOffer { status personalAssistant { name } }
    ... on CoverExchange { side exchangeStatus: status personFirstName partner { name } pa { id } }
  }
  again: node(id: $id) { id }
}"""


async def test_node_is_identical_for_every_caller_and_every_kind_of_id(
    api: Api, app: Any, sql_counter: StatementCounter, demo: dict[str, Any], db: AsyncSession
) -> None:
    ids = demo["ids"]
    records = {
        name: await db.scalar(select(func.min(text("id"))).select_from(text(table)))
        for name, table in (
            ("Pool", "pool"),
            ("AvailabilityWindow", "availability_window"),
            ("Visit", "visit"),
            ("Absence", "absence"),
            ("CoverRequest", "cover_request"),
            ("CoverOffer", "cover_offer"),
            ("CoverExchange", "cover_exchange"),
        )
    }
    assert all(records.values()), records
    # The newest exchange: the providing side's, of a PA on the coordinator's team.
    providing = await db.scalar(select(func.max(CoverExchange.id)))
    values = [
        gid("Cluster", int(base64.b64decode(demo["cluster"]).split(b":")[1])),
        *(gid(type_name, pk) for type_name, pk in records.items()),
        gid("CoverExchange", providing),
        gid("ServiceUser", ids["person"]),
        gid("PersonalAssistant", ids["busy_pa"]),
        gid("Carer", ids["carer"]),
        gid("CoopMember", ids["stranger"]),
        gid("ServiceUser", ids["busy_pa"]),  # a PA's id under another member type: null
        gid("Cluster", 999999),
        gid("Cluster", 0),
        base64.b64encode(b"Cluster:abc").decode(),
        base64.b64encode(b"Nothing:1").decode(),
        "not base64!",
    ]
    both = Both(api, app, sql_counter)
    found = 0
    for token in _callers(api, ids).values():
        for value in values:
            resolved, compiled, _ = await both.run(NODE, {"id": value}, token)
            assert _exact(compiled.get("data")) == _exact(resolved.get("data")), value
            assert compiled.get("errors") == resolved.get("errors"), value
            if not resolved.get("errors"):
                assert both.compiled, value
                found += (resolved.get("data") or {}).get("node") is not None
    assert found >= 30
    # A partnership's id (admins only; the demo has some): compiled too, for any caller.
    partnership = gid("Partnership", 1)
    for name, token in _callers(api, ids).items():
        body = await both.same(NODE, {"id": partnership}, token, statements=1)
        shown = body["data"]["node"]
        assert shown == (
            {"__typename": "Partnership", "id": partnership} if name == "admin" else None
        )


# Floats PostgreSQL and orjson write differently unless told: integral, zero, negative
# zero, small (1e-05 against 0.00001, 1e-06 against 1e-6), and shortest round trips.
EDGE_FLOATS = [
    (2.0, -180.0),
    (0.0, -0.0),
    (0.00001, -0.000015),
    (0.0000015, -1.234e-7),
    (0.0001, 51.507400000000004),
    (0.1 + 0.2, 89.99999999999999),
    (-90.0, 179.5),
]


async def test_floats_are_written_as_orjson_writes_them(
    api: Api, app: Any, sql_counter: StatementCounter, demo: dict[str, Any], db: AsyncSession
) -> None:
    for i, (latitude, longitude) in enumerate(EDGE_FLOATS):
        await db.execute(
            text(
                "INSERT INTO member (name, membership_class, latitude, longitude) "
                "VALUES (:name, 'SUPPORTER', :lat, :lon)"
            ),
            {"name": f"Float {i}", "lat": latitude, "lon": longitude},
        )
    await db.execute(
        text(
            "UPDATE cluster SET radius_km = 12.00, centre_latitude = 51.0, "
            "centre_longitude = -0.00001 WHERE id = (SELECT min(id) FROM cluster)"
        )
    )
    await db.execute(
        text("UPDATE pa_profile SET max_travel_km = 7.25, contracted_weekly_hours = 0")
    )
    await db.commit()
    both = Both(api, app, sql_counter)
    query = """{ members(first: 100, nameContains: "Float ") { nodes { latitude longitude } }
      clusters(first: 3) { nodes { radiusKm centre { __typename latitude longitude } } }
      pas: members(first: 5, membershipClass: WORKER) { nodes {
        ... on PersonalAssistant { contractedWeeklyHours maxTravelKm } } } }"""
    for token in _callers(api, demo["ids"]).values():
        resolved, compiled, ran = await both.run(query, {}, token)
        assert _exact(compiled.get("data")) == _exact(resolved.get("data"))
        assert compiled.get("errors") == resolved.get("errors")
        assert both.compiled or resolved.get("errors")
    admin = await both.same(query, {}, api.token(Role.ADMIN), statements=1)
    written = [(n["latitude"], n["longitude"]) for n in admin["data"]["members"]["nodes"]]
    assert written == EDGE_FLOATS
    assert b'"latitude":2.0,"longitude":-180.0' in _exact(admin["data"])
    assert b'"latitude":0.0,"longitude":-0.0' in _exact(admin["data"])
    assert admin["data"]["clusters"]["nodes"][0]["radiusKm"] == 12.0
    assert b'"centre":{"__typename":"GeoPoint","latitude":51.0,"longitude":-0.00001}' in _exact(
        admin["data"]
    )


# `Coop.coverRules`: the co-op's rules and the weights in force (its own over the
# defaults, in SQL: `care.weights.weight`), every field, under aliases, in fragments,
# with the co-op's other fields and other root fields.
RULES = "dbsValidMonths maxWeeklyHours minDailyRestHours coverOfferTtlMinutes"
WEIGHTS = "regularPa continuity sameCluster samePool travel contractHours fairness"
COVER_RULES = [
    f"{{ coop {{ coverRules {{ {RULES} weights {{ {WEIGHTS} }} }} }} }}",
    """query { us: coop { name rules: coverRules { __typename ...Rules
        weights { __typename w: travel ...Weights } } kind
        again: coverRules { weights { fairness regularPa } } description }
      localAuthorities { gssCode } me { name } }
    fragment Rules on CoverRules { maxWeeklyHours ttl: coverOfferTtlMinutes dbsValidMonths }
    fragment Weights on CoverWeights { contractHours sameCluster continuity samePool }""",
    """query($with: Boolean!) { coop { ... on Coop { cqcStatus coverRules @include(if: $with) {
        ... on CoverRules { minDailyRestHours weights { ... on CoverWeights { samePool } } } }
      homeLocalAuthority { name } } } pools { name } }""",
]
# Stored weights: none, some, all, and values that are not numbers or not weights (the
# default stays in force, as the candidate statements rank by).
STORED_WEIGHTS: list[dict[str, Any]] = [
    {},
    {"travel": 0.5, "fairness": 0},
    {
        "regularPa": 10,
        "continuity": 1e-6,
        "sameCluster": 2.0,
        "samePool": 0,
        "travel": 0.5,
        "contractHours": 3,
        "fairness": 0.00001,
    },
    {
        "regularPa": 100,
        "continuity": 0.1 + 0.2,
        "sameCluster": 0.000015,
        "samePool": True,
        "travel": "lots",
        "contractHours": None,
        "unknown": 5,
    },
]


def _in_force(stored: dict[str, Any]) -> dict[str, float]:
    """The weights in force as the GraphQL fields name them, from the test's own reading
    of the rule: a number overrides the default, anything else does not."""
    return {
        name: float(value)
        if isinstance(value := stored.get(name), int | float) and not isinstance(value, bool)
        else default
        for name, default in DEFAULT_WEIGHTS.items()
    }


def test_the_weights_fields_are_the_stored_names() -> None:
    # `coop_select` labels each weight by its field's Python name (`care.weights.
    # column_name`); the GraphQL names are the names a co-op stores them by.
    fields = [(f.name, f.graphql_name) for f in data_fields(types.CoverWeights)]
    assert fields == [(column_name(name), name) for name in DEFAULT_WEIGHTS]
    # The schema's descriptions say the defaults (the numbers are `DEFAULT_WEIGHTS`'),
    # on the rules read and on the input that changes them.
    for kind in (types.CoverWeights, CoverWeightsInput):
        for field in kind.__strawberry_definition__.fields:  # type: ignore[attr-defined]
            default = DEFAULT_WEIGHTS[to_camel_case(field.python_name)]
            assert field.description.endswith(f"(default {default:g})."), field.python_name


async def test_cover_rules_are_identical_on_both_paths_for_every_caller(
    api: Api, app: Any, sql_counter: StatementCounter, demo: dict[str, Any], db: AsyncSession
) -> None:
    both = Both(api, app, sql_counter)
    callers = _callers(api, demo["ids"])
    admin = callers["admin"]
    for stored in STORED_WEIGHTS:
        await db.execute(update(Coop).values(cover_weights=stored))
        await db.commit()
        for name, token in callers.items():
            for query in COVER_RULES:
                variables = {"with": True} if "$with" in query else {}
                resolved, compiled, ran = await both.run(query, variables, token)
                assert _exact(compiled.get("data")) == _exact(resolved.get("data")), name
                assert compiled.get("errors") == resolved.get("errors"), name
                if not resolved.get("errors"):
                    assert both.compiled, name
        # One statement, with the weights in force; outside the co-op, null.
        body = await both.same(COVER_RULES[0], {}, admin, statements=1)
        assert body["data"]["coop"]["coverRules"] == {
            "dbsValidMonths": 36,
            "maxWeeklyHours": 48.0,
            "minDailyRestHours": 11.0,
            "coverOfferTtlMinutes": 120,
            "weights": _in_force(stored),
        }
        for outsider in ("la analyst", "anonymous"):
            body = await both.same(COVER_RULES[0], {}, callers[outsider], statements=1)
            assert body["data"]["coop"] == {"coverRules": None}
        body = await both.same(COVER_RULES[1], {}, callers["stranger"], statements=1)
        assert body["data"]["us"]["rules"]["weights"]["w"] == _in_force(stored)["travel"]
    # Written as orjson writes the floats: an integral weight stored as 10 is 10.0.
    body = await both.same(COVER_RULES[0], {}, admin, statements=1)
    assert (
        b'"weights":{"regularPa":100.0,"continuity":0.30000000000000004,'
        b'"sameCluster":0.000015,"samePool":1.0,"travel":1.0,"contractHours":1.0,'
        b'"fairness":1.0}' in _exact(body["data"])
    )
    await db.execute(update(Coop).values(cover_weights=STORED_WEIGHTS[2]))
    await db.execute(
        update(Coop).values(max_weekly_hours=40.5, min_daily_rest_hours=0, dbs_valid_months=12)
    )
    await db.commit()
    coordinator = callers["coordinator"]
    body = await both.same(COVER_RULES[0], {}, coordinator, statements=1)
    assert _exact(body["data"]) == (
        b'{"coop":{"coverRules":{"dbsValidMonths":12,"maxWeeklyHours":40.5,'
        b'"minDailyRestHours":0.0,"coverOfferTtlMinutes":120,"weights":{"regularPa":10.0,'
        b'"continuity":1e-6,"sameCluster":2.0,"samePool":0.0,"travel":0.5,'
        b'"contractHours":3.0,"fairness":0.00001}}}}'
    )
    # Left out by @include, the rules are not read: still one statement.
    body = await both.same(COVER_RULES[2], {"with": False}, coordinator, statements=1)
    assert "coverRules" not in body["data"]["coop"]


async def test_nested_pages_backwards_are_identical_for_every_caller(
    api: Api, app: Any, sql_counter: StatementCounter, demo: dict[str, Any]
) -> None:
    both = Both(api, app, sql_counter)
    admin = api.token(Role.ADMIN)
    first = await both.same(
        NESTED_BACKWARDS,
        {"id": demo["cluster"], "b": None, "vb": None, "from": demo["from"]},
        admin,
        statements=1,
    )
    people = first["data"]["cluster"]["serviceUsers"]
    assert len(people["edges"]) == 2 and people["pageInfo"]["hasPreviousPage"] is True
    visits = [e["node"]["visits"] for e in people["edges"]]
    assert any(v["nodes"] for v in visits)
    # Before the first person of that page, and before a visit cursor of the second page.
    vb = next(v["pageInfo"]["startCursor"] for v in visits if v["nodes"])
    variables = {
        "id": demo["cluster"],
        "b": people["pageInfo"]["startCursor"],
        "vb": vb,
        "from": demo["from"],
    }
    answered = 0
    for name, token in _callers(api, demo["ids"]).items():
        for values in ({**variables, "b": None, "vb": None}, variables):
            resolved, compiled, ran = await both.run(NESTED_BACKWARDS, values, token)
            assert _exact(compiled.get("data")) == _exact(resolved.get("data")), name
            assert compiled.get("errors") == resolved.get("errors"), name
            if not resolved.get("errors"):
                assert both.compiled, name
                answered += 1
    assert answered >= 10


async def test_a_chosen_order_compiles_and_its_cursors_carry_it(
    api: Api, app: Any, sql_counter: StatementCounter, demo: dict[str, Any], db: AsyncSession
) -> None:
    """Another order compiles too, also through a variable of a cached plan; a cursor of
    one order given under another gets today's error."""
    both = Both(api, app, sql_counter)
    admin = api.token(Role.ADMIN)
    query = """query($o: VisitOrder!, $a: String) {
      visits(first: 3, orderBy: $o, after: $a) { pageInfo { endCursor } nodes { id startsAt } } }"""
    ascending = await both.same(query, {"o": "START_ASC"}, admin, statements=1)
    descending = await both.same(query, {"o": "START_DESC"}, admin, statements=1)
    assert ascending["data"] != descending["data"]
    cursor = descending["data"]["visits"]["pageInfo"]["endCursor"]
    assert b'"o":"START_DESC"' in base64.urlsafe_b64decode(cursor + "==")
    resolved, compiled, _ = await both.run(query, {"o": "START_ASC", "a": cursor}, admin)
    assert resolved.get("errors") and compiled.get("errors") == resolved.get("errors")
    # A name JSON escapes is in the cursor byte for byte as orjson writes it.
    await db.execute(
        text("INSERT INTO member (name, membership_class) VALUES (:n, 'SUPPORTER')"),
        {"n": 'Zoë "Q" \\ Tab\t'},
    )
    await db.commit()
    members = """query($a: String) { members(first: 1, orderBy: NAME_DESC, after: $a,
      nameContains: "Zo") { pageInfo { hasNextPage } edges { cursor node { name } } } }"""
    body = await both.same(members, {}, admin, statements=1)
    assert body["data"]["members"]["edges"][0]["node"]["name"] == 'Zoë "Q" \\ Tab\t'
    cursor = body["data"]["members"]["edges"][0]["cursor"]
    await both.same(members, {"a": cursor}, admin, statements=1)


async def test_both_first_and_last_get_todays_error(
    api: Api, app: Any, sql_counter: StatementCounter, demo: dict[str, Any]
) -> None:
    both = Both(api, app, sql_counter)
    admin = api.token(Role.ADMIN)
    query = "query($n: Int, $l: Int) { members(first: $n, last: $l) { nodes { id } } }"
    resolved, compiled, _ = await both.run(query, {"n": 2, "l": 2}, admin)
    assert resolved.get("errors") and compiled.get("errors") == resolved.get("errors")
    # A null `first` is not given: `last` alone pages backwards, compiled.
    await both.same(query, {"n": None, "l": 2}, admin, statements=1)
    for size in (0, 101):
        resolved, compiled, _ = await both.run(query, {"n": None, "l": size}, admin)
        assert resolved.get("errors") and compiled.get("errors") == resolved.get("errors")


# Computed fields: an offer's visit as its PA weighs it (`durationMinutes` computed by
# `care.queries.offer_summary_select`) and a PA's busy time over a range
# (`care.queries.busy_time_select`, null for a caller who may not read it).
SUMMARY = """fragment Summary on OfferedVisit { __typename startsAt endsAt durationMinutes
  postcodeDistrict distanceKm personFirstName needs tasks }"""
MY_SUMMARIES = (
    "{ myCoverOffers(first: 50) { nodes { id status visitSummary { ...Summary } } } }" + SUMMARY
)
OFFER_SUMMARIES = (
    """{ coverRequests(first: 50, orderBy: OPENED_DESC) { nodes { id
      offers { id status visitSummary { ...Summary } personalAssistant { id } } } } }"""
    + SUMMARY
)
OFFER_NODE = (
    """query($id: ID!) { node(id: $id) { id ... on CoverOffer { status
      visitSummary { ...Summary } } } }"""
    + SUMMARY
)
BUSY = """
query Busy($cluster: ID!, $idle: ID!, $busy: ID!, $from: DateTime!, $before: DateTime!) {
  cluster(id: $cluster) { personalAssistants(first: 10) { nodes { id
    busyPeriods(startsFrom: $from, startsBefore: $before) { startsAt endsAt } } } }
  idle: node(id: $idle) { ... on PersonalAssistant {
    busyPeriods(startsFrom: $from, startsBefore: $before) { __typename startsAt endsAt } } }
  busy: node(id: $busy) { ... on PersonalAssistant {
    busyPeriods(startsFrom: $from, startsBefore: $before) { endsAt startsAt }
    later: busyPeriods(startsFrom: "2099-01-01T00:00:00", startsBefore: "2099-01-07T00:00:00") {
      startsAt } } }
  me { ... on PersonalAssistant { busyPeriods(startsFrom: $from, startsBefore: $before) {
    endsAt } } }
}"""

# Visit lengths in seconds and the minutes they show (Python's `round`: half to even):
# spanning midnight, under a minute, halves either way, a microsecond either side of one.
LENGTHS = [
    (95 * 60 + 30, 96),  # 23:40:00 to 01:15:30 the next day
    (30, 0),
    (90, 2),
    (150, 2),
    (60 * 60, 60),
    (45 * 60 + 30.000001, 46),
    (59 * 60 + 29.999999, 59),
    (MAX_VISIT_LENGTH.total_seconds(), 24 * 60),
]


async def _computed_edges(db: AsyncSession, demo: dict[str, Any]) -> dict[str, Any]:
    """Offers of visits of the edge lengths (the busy PA's, open; the idle PA's first one,
    open too), and two touching absences of the idle PA: [T, T+2h) and [T+2h,
    T+2h30m30.0005s) at T far ahead, read as one period."""
    ids = demo["ids"]
    today = dt.datetime.now(LONDON).date()
    day = dt.datetime.combine(today + dt.timedelta(days=300), dt.time(23, 40), dt.UTC)
    offers: list[int] = []
    for n, (seconds, _) in enumerate(LENGTHS):
        start = day + dt.timedelta(days=2 * n)
        visit = (
            await db.execute(
                text(
                    "INSERT INTO visit (service_user_id, during, status, tasks) VALUES "
                    "(:person, tstzrange(:start, :end), 'NEEDS_COVER', '{}') RETURNING id"
                ),
                {
                    "person": demo["covered"]["person"],
                    "start": start,
                    "end": start + dt.timedelta(seconds=seconds),
                },
            )
        ).scalar_one()
        request = (
            await db.execute(
                text(
                    "INSERT INTO cover_request (visit_id, reason) VALUES (:visit, 'MANUAL') "
                    "RETURNING id"
                ),
                {"visit": visit},
            )
        ).scalar_one()
        for pa in (ids["busy_pa"], ids["idle_pa"]) if n == 0 else (ids["busy_pa"],):
            offer = await db.scalar(
                text(
                    "INSERT INTO cover_offer (cover_request_id, pa_id, status, offered_at,"
                    " expires_at) VALUES (:request, :pa, 'OPEN', now(), now() + interval"
                    " '1 day') RETURNING id"
                ),
                {"request": request, "pa": pa},
            )
            offers.append(offer)
    away = dt.datetime.combine(today + dt.timedelta(days=200), dt.time(9), dt.UTC)
    back = away + dt.timedelta(hours=2, minutes=30, seconds=30, microseconds=500)
    for starts, ends in (
        (away, away + dt.timedelta(hours=2)),
        (away + dt.timedelta(hours=2), back),
    ):
        await db.execute(
            text(
                "INSERT INTO absence (pa_id, kind, during) VALUES "
                "(:pa, 'HOLIDAY', tstzrange(:start, :end))"
            ),
            {"pa": ids["idle_pa"], "start": starts, "end": ends},
        )
    await db.commit()
    return {"offers": offers, "away": away, "back": back}


def _busy_ranges(demo: dict[str, Any], away: dt.datetime, back: dt.datetime) -> list[Any]:
    """Ranges for BUSY, and whether the resolver refuses them: the demo's visits ahead;
    the absences whole, clipped at either end, ending at their start and starting at their
    end (both empty); London wall-clock time; and refused ones (empty, backwards, longer
    than 62 days by a microsecond)."""
    hour = dt.timedelta(hours=1)
    start = dt.datetime.fromisoformat(demo["from"])
    return [
        (start, start + dt.timedelta(days=14), False),
        (away - hour, back + hour, False),
        (away + hour, back - hour, False),
        (away, back, False),
        (away - hour, away, False),
        (back, back + hour, False),
        (away.replace(tzinfo=None), (back + hour).replace(tzinfo=None), False),
        (away, away, True),
        (back, away, True),
        (away, away + dt.timedelta(days=62, microseconds=1), True),
    ]


def _iso(value: dt.datetime) -> str:
    return value.isoformat()


async def test_computed_fields_are_identical_on_both_paths_for_every_caller(
    api: Api, app: Any, sql_counter: StatementCounter, demo: dict[str, Any], db: AsyncSession
) -> None:
    edges = await _computed_edges(db, demo)
    ids = demo["ids"]
    both = Both(api, app, sql_counter)
    operations: list[tuple[str, dict[str, Any], bool]] = [
        (MY_SUMMARIES, {}, False),
        (OFFER_SUMMARIES, {}, False),
    ]
    operations += [(OFFER_NODE, {"id": gid("CoverOffer", o)}, False) for o in edges["offers"]]
    members = {
        "cluster": demo["cluster"],
        "idle": gid("PersonalAssistant", ids["idle_pa"]),
        "busy": gid("PersonalAssistant", ids["busy_pa"]),
    }
    for starts, ends, refused in _busy_ranges(demo, edges["away"], edges["back"]):
        given = {**members, "from": _iso(starts), "before": _iso(ends)}
        operations.append((BUSY, given, refused))
    compiled = errors = 0
    for name, token in _callers(api, ids).items():
        for query, variables, refused in operations:
            resolved, answer, _ = await both.run(query, variables, token)
            assert _exact(answer.get("data")) == _exact(resolved.get("data")), (name, variables)
            assert answer.get("errors") == resolved.get("errors"), (name, variables)
            if refused:  # the range's check is the resolver's: the request falls back
                assert not both.compiled, (name, variables)
                errors += bool(resolved.get("errors"))
            elif not resolved.get("errors"):
                assert both.compiled, (name, variables)
                compiled += 1
    assert compiled >= 120 and errors >= 9, (compiled, errors)
    # Not vacuous: the edges are in the answers.
    pa = _callers(api, ids)["pa with visits"]
    summaries = (await api.data(MY_SUMMARIES, token=pa))["myCoverOffers"]["nodes"]
    minutes = [n["visitSummary"]["durationMinutes"] for n in summaries if n["visitSummary"]]
    assert [m for _, m in LENGTHS] == minutes[-len(LENGTHS) :]
    first = summaries[-len(LENGTHS)]["visitSummary"]
    assert (first["startsAt"][11:], first["endsAt"][11:]) == ("23:40:00+00:00", "01:15:30+00:00")


async def test_busy_periods_keep_their_edges_on_both_paths(
    api: Api, app: Any, sql_counter: StatementCounter, demo: dict[str, Any], db: AsyncSession
) -> None:
    edges = await _computed_edges(db, demo)
    ids = demo["ids"]
    away, back = edges["away"], edges["back"]
    both = Both(api, app, sql_counter)
    hour = dt.timedelta(hours=1)
    query = """query($id: ID!, $from: DateTime!, $before: DateTime!) { node(id: $id) {
      ... on PersonalAssistant { busyPeriods(startsFrom: $from, startsBefore: $before) {
        startsAt endsAt } } } }"""
    expected = {
        (away - hour, back + hour): [(away, back)],  # touching absences merged
        (away + hour, back - hour): [(away + hour, back - hour)],  # clipped both ends
        (away, back): [(away, back)],
        (away - hour, away): [],  # ends where the absence starts
        (back, back + hour): [],  # starts where it ends
        (away - hour, away + dt.timedelta(microseconds=1)): [
            (away, away + dt.timedelta(microseconds=1))
        ],
    }
    variables = {"id": gid("PersonalAssistant", ids["idle_pa"])}
    for token in (api.token(Role.ADMIN), api.token(Role.PA, ids["idle_pa"])):
        for (starts, ends), periods in expected.items():
            given = {**variables, "from": _iso(starts), "before": _iso(ends)}
            body = await both.same(query, given, token, statements=1)
            found = body["data"]["node"]["busyPeriods"]
            assert found == [{"startsAt": _iso(s), "endsAt": _iso(e)} for s, e in periods]
    # Another PA may not read the idle PA's busy time: null, not empty, on both paths.
    other = api.token(Role.PA, ids["busy_pa"])
    given = {**variables, "from": _iso(away), "before": _iso(back)}
    assert (await both.same(query, given, other, statements=1))["data"]["node"] is None
    me = """query($from: DateTime!, $before: DateTime!) { me { ... on PersonalAssistant {
      busyPeriods(startsFrom: $from, startsBefore: $before) { startsAt } } } }"""
    body = await both.same(me, {"from": _iso(away), "before": _iso(back)}, other, statements=1)
    assert body["data"]["me"]["busyPeriods"] == []


async def test_refused_busy_ranges_get_todays_errors(
    api: Api, app: Any, sql_counter: StatementCounter, demo: dict[str, Any]
) -> None:
    both = Both(api, app, sql_counter)
    query = """query($from: DateTime!, $before: DateTime!) { me { ... on PersonalAssistant {
      busyPeriods(startsFrom: $from, startsBefore: $before) { startsAt } } } }"""
    at = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
    pa = api.token(Role.PA, demo["ids"]["busy_pa"])
    for starts, ends, message in (
        (at, at, "must be before"),
        # Refused by the input bounds (schema/limits.py) before either path runs.
        (at, at - dt.timedelta(seconds=1), "must not be after"),
        (at, at + dt.timedelta(days=62, microseconds=1), "at most 62 days"),
    ):
        given = {"from": _iso(starts), "before": _iso(ends)}
        resolved, compiled, ran = await both.run(query, given, pa)
        assert compiled.get("errors") == resolved.get("errors"), given
        assert message in resolved["errors"][0]["message"], resolved
        assert _exact(compiled.get("data")) == _exact(resolved.get("data"))
        assert not both.compiled  # the resolvers' refusal, not the compiler's
    # The longest range allowed compiles.
    given = {"from": _iso(at), "before": _iso(at + dt.timedelta(days=62))}
    await both.same(query, given, pa, statements=1)


async def test_computed_fields_are_one_statement_with_data(
    api: Api, app: Any, sql_counter: StatementCounter, demo: dict[str, Any], db: AsyncSession
) -> None:
    edges = await _computed_edges(db, demo)
    ids = demo["ids"]
    both = Both(api, app, sql_counter)
    query = (
        """query($id: ID!, $idle: ID!, $from: DateTime!, $before: DateTime!) {
      coverRequests(first: 100) { nodes { offers { visitSummary { ...Summary } } } }
      cluster(id: $id) { personalAssistants(first: 10) { nodes {
        busyPeriods(startsFrom: $from, startsBefore: $before) { startsAt endsAt } } } }
      node(id: $idle) { ... on PersonalAssistant { away: busyPeriods(
        startsFrom: "2000-01-01T00:00:00Z", startsBefore: "2000-01-02T00:00:00Z") {
          startsAt } } } }"""
        + SUMMARY
    )
    start = dt.datetime.fromisoformat(demo["from"])
    variables = {
        "id": demo["cluster"],
        "idle": gid("PersonalAssistant", ids["idle_pa"]),
        "from": _iso(start),
        "before": _iso(start + dt.timedelta(days=14)),
    }
    body = await both.same(query, variables, api.token(Role.ADMIN), statements=1)
    data = body["data"]
    summaries = [o["visitSummary"] for r in data["coverRequests"]["nodes"] for o in r["offers"]]
    assert sum(s is not None for s in summaries) >= len(edges["offers"])
    assert any(s and s["distanceKm"] is not None and s["needs"] for s in summaries)
    busy = [p["busyPeriods"] for p in data["cluster"]["personalAssistants"]["nodes"]]
    assert any(busy) and all(b is not None for b in busy)
    assert data["node"] == {"away": []}


# --- referrals ---------------------------------------------------------------------------

# Far from the demo's London boroughs: Birmingham and Solihull, neighbours of each other.
FAR, FAR_NEXT = "E08000025", "E08000029"
# Free text that must be escaped in JSON: quotes, a backslash, controls, a line separator,
# an astral character and a closing tag.
ODD_NOTE = 'Zoë "away"\n\tback \\ soon </script>\u2028 😀 \x01'

REFERRAL_FIELDS = """__typename id postcodeDistrict needs hoursPerWeek referredOn status note
  createdAt updatedAt localAuthority { __typename gssCode name neighbours { gssCode } }
  recordedBy { __typename id name ... on PersonalAssistant { maxTravelKm } }"""

REFERRAL_PAGES = """
query Referrals($n: Int, $l: Int, $a: String, $b: String, $la: String, $district: String,
                $status: ReferralStatus) {
  referrals(first: $n, last: $l, after: $a, before: $b, localAuthority: $la,
            district: $district, status: $status) {
    totalCount PAGE_INFO edges { cursor node { FIELDS } } } }
""".replace("PAGE_INFO", INFO).replace("FIELDS", REFERRAL_FIELDS)


async def _seed_referrals(db: AsyncSession, demo: dict[str, Any]) -> dict[str, Any]:
    """Referrals beside the demo's (Barnet and Enfield): in the coordinator's own council,
    next to it, and far away (Birmingham, where the coordinator's only cluster is CLOSED,
    which grants nothing, and Solihull next to it); several districts and statuses, odd
    free text, recorded by the coordinator, a PA and a member the coordinator may not see.
    Returns every referral (id, council, district, status), in id order, and the ids the
    coordinator may see."""
    ids = demo["ids"]
    db.add_all(
        [
            LocalAuthority(gss_code=FAR, name="Birmingham"),
            LocalAuthority(gss_code=FAR_NEXT, name='Solihull "Metropolitan"'),
        ]
    )
    await db.flush()
    db.add(LocalAuthorityNeighbour(la_a=FAR, la_b=FAR_NEXT))
    db.add(
        Cluster(
            name="Closed in Birmingham",
            kind="GEOGRAPHIC",
            la_code=FAR,
            status="CLOSED",
            closed_at=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
            centre_latitude=52.48,
            centre_longitude=-1.89,
            radius_km=Decimal("3"),
            postcode_districts=["B1"],
            need_tags=[],
            support_worker_id=ids["coordinator"],
        )
    )
    await db.flush()
    worked = set(
        await db.scalars(
            select(Cluster.la_code).where(
                Cluster.support_worker_id == ids["coordinator"], Cluster.status != "CLOSED"
            )
        )
    )
    n = LocalAuthorityNeighbour
    near = set(await db.scalars(select(n.la_b).where(n.la_a.in_(worked))))
    near |= set(await db.scalars(select(n.la_a).where(n.la_b.in_(worked))))
    near -= worked
    assert worked and near and not {FAR, FAR_NEXT} & (worked | near)
    own, next_door = sorted(worked)[0], sorted(near)[0]
    today = dt.date(2026, 11, 20)
    seeded = [
        (own, "N12", ["dementia", "personal-care"], "7.25", "WAITING", ODD_NOTE, "coordinator"),
        (own, "N3", [], "168", "PLACED", "", "stranger"),
        (next_door, "EN1", ["personal-care"], "0.5", "OFFERED", "Back\\slash", "busy_pa"),
        (next_door, "N12", ["hoist"], "10", "WAITING", None, None),
        (FAR, "B1", ["dementia"], "12.5", "WAITING", 'Far "away"', "coordinator"),
        (FAR, "B1", ["medication-support"], "3", "WITHDRAWN", None, "stranger"),
        (FAR_NEXT, "B91", ["hoist", "dementia"], "20", "WAITING", "Solihull\n", None),
        (own, "N12", ["dementia"], "1", "OFFERED", "ümlaut", "idle_pa"),
        (FAR_NEXT, "N12", [], "2", "PLACED", None, "busy_pa"),
    ]
    for la, district, needs, hours, status, note, by in seeded:
        db.add(
            Referral(
                la_code=la,
                postcode_district=district,
                needs=needs,
                hours_per_week=Decimal(hours),
                referred_on=today,
                status=status,
                note=note,
                recorded_by_id=ids[by] if by else None,
            )
        )
    await db.commit()
    rows = (
        await db.execute(
            select(
                Referral.id, Referral.la_code, Referral.postcode_district, Referral.status
            ).order_by(Referral.id)
        )
    ).all()
    visible = [r.id for r in rows if r.la_code in worked | near]
    assert 0 < len(visible) < len(rows)
    return {"rows": rows, "visible": visible, "own": own, "near": next_door}


async def _walk_referrals(
    both: Both, token: str | None, variables: dict[str, Any]
) -> list[int] | None:
    """Every page of `referrals` forwards (2 a page), then backwards from the end (3 a
    page), each identical on both paths and compiled; the ids, or None when refused."""
    ids: dict[str, list[int]] = {"forwards": [], "backwards": []}
    total = None
    for direction, size, cursor_key, more in (
        ("forwards", {"n": 2}, "a", "hasNextPage"),
        ("backwards", {"l": 3}, "b", "hasPreviousPage"),
    ):
        cursor = None
        for _ in range(50):
            values = {"n": None, "l": None, "a": None, "b": None, **variables, **size}
            values[cursor_key] = cursor
            resolved, compiled, _ = await both.run(REFERRAL_PAGES, values, token)
            assert _exact(compiled.get("data")) == _exact(resolved.get("data")), values
            assert compiled.get("errors") == resolved.get("errors"), values
            if resolved.get("errors"):
                return None
            assert both.compiled, values  # compiled, not fallen back
            page = compiled["data"]["referrals"]
            assert total in (None, page["totalCount"])
            total = page["totalCount"]
            found = [int(base64.b64decode(e["node"]["id"]).split(b":")[1]) for e in page["edges"]]
            # Backwards, each page comes before the ones already seen.
            ids[direction] = found + ids[direction] if cursor_key == "b" else ids[direction] + found
            end = "endCursor" if direction == "forwards" else "startCursor"
            cursor = page["pageInfo"][end]
            if not page["pageInfo"][more]:
                break
        else:
            raise AssertionError("too many pages")
    assert ids["forwards"] == ids["backwards"]
    assert total == len(ids["forwards"])
    return ids["forwards"]


async def test_referrals_are_identical_on_both_paths_for_every_caller(
    api: Api, app: Any, sql_counter: StatementCounter, demo: dict[str, Any], db: AsyncSession
) -> None:
    seeded = await _seed_referrals(db, demo)
    rows, visible = seeded["rows"], set(seeded["visible"])
    both = Both(api, app, sql_counter)
    # Each filter alone and together; a district in any case and spacing, junk matching
    # nothing. Expected: the rows matching, in id order.
    cases: list[tuple[dict[str, Any], Any]] = [
        ({}, lambda r: True),
        ({"la": seeded["own"]}, lambda r: r.la_code == seeded["own"]),
        ({"la": FAR}, lambda r: r.la_code == FAR),
        ({"la": "E00000000"}, lambda r: False),
        ({"district": "N12"}, lambda r: r.postcode_district == "N12"),
        ({"district": " n12 "}, lambda r: r.postcode_district == "N12"),
        ({"district": "b91 4aa"}, lambda r: r.postcode_district == "B91"),
        ({"district": "ZZ!"}, lambda r: False),
        ({"district": "N1 2"}, lambda r: False),
        ({"status": "WAITING"}, lambda r: r.status == "WAITING"),
        (
            {"la": seeded["near"], "district": "en1", "status": "OFFERED"},
            lambda r: (
                (r.la_code, r.postcode_district, r.status) == (seeded["near"], "EN1", "OFFERED")
            ),
        ),
    ]
    callers = _callers(api, demo["ids"])
    walked = 0
    for name, token in callers.items():
        for variables, matches in cases:
            found = await _walk_referrals(both, token, variables)
            if name not in ("admin", "coordinator"):
                assert found is None, (name, variables)  # refused on both paths alike
                continue
            expected = [r.id for r in rows if matches(r)]
            if name == "coordinator":
                expected = [i for i in expected if i in visible]
            assert found == expected, (name, variables)
            walked += len(expected)
    assert walked > 40  # not vacuous
    # The filters written out in the query, and an empty district (refused alike).
    admin, coordinator = callers["admin"], callers["coordinator"]
    written = """{ referrals(first: 3, localAuthority: "LA", district: " n12 ",
      status: WAITING) { totalCount nodes { id note needs } } }""".replace("LA", seeded["own"])
    for token in (admin, coordinator):
        body = await both.same(written, {}, token, statements=1)
        expected = [
            r.id
            for r in rows
            if (r.la_code, r.postcode_district, r.status) == (seeded["own"], "N12", "WAITING")
        ]
        assert body["data"]["referrals"]["totalCount"] == len(expected) > 0
    junk = '{ referrals(district: "??") { totalCount nodes { id } } }'
    body = await both.same(junk, {}, admin, statements=1)
    assert body["data"]["referrals"] == {"totalCount": 0, "nodes": []}
    empty = '{ referrals(district: "") { totalCount } }'
    resolved, compiled, _ = await both.run(empty, {}, admin)
    assert _exact(compiled.get("data")) == _exact(resolved.get("data"))
    assert compiled.get("errors") == resolved.get("errors")


async def test_referrals_are_one_statement_with_data(
    api: Api, app: Any, sql_counter: StatementCounter, demo: dict[str, Any], db: AsyncSession
) -> None:
    seeded = await _seed_referrals(db, demo)
    both = Both(api, app, sql_counter)
    query = f"{{ referrals(first: 100) {{ totalCount nodes {{ {REFERRAL_FIELDS} }} }} }}"
    body = await both.same(query, {}, api.token(Role.ADMIN), statements=1)
    assert body["extensions"]["sqlStatements"] == 1
    nodes = body["data"]["referrals"]["nodes"]
    assert len(nodes) == body["data"]["referrals"]["totalCount"] == len(seeded["rows"])
    odd = [n for n in nodes if n["note"] == ODD_NOTE]
    assert len(odd) == 1 and odd[0]["needs"] == ["dementia", "personal-care"]
    assert odd[0]["hoursPerWeek"] == 7.25 and odd[0]["recordedBy"]["__typename"]
    assert {n["localAuthority"]["gssCode"] for n in nodes} >= {FAR, FAR_NEXT}
    far = [n for n in nodes if n["localAuthority"]["gssCode"] == FAR_NEXT]
    assert far[0]["localAuthority"]["neighbours"] == [{"gssCode": FAR}]
    coordinator = api.token(Role.COORDINATOR, demo["ids"]["coordinator"])
    body = await both.same(query, {}, coordinator, statements=1)
    shown = body["data"]["referrals"]["nodes"]
    assert [n["id"] for n in shown] == [gid("Referral", i) for i in seeded["visible"]]
    assert not {n["localAuthority"]["gssCode"] for n in shown} & {FAR, FAR_NEXT}
    # Who recorded one: a member the coordinator may not see is null on both paths.
    assert any(n["recordedBy"] is None for n in shown)
    assert any(n["recordedBy"] is not None for n in shown)
    # By `node`, for every caller: the referral or null.
    node = f"query($id: ID!) {{ node(id: $id) {{ id ... on Referral {{ {REFERRAL_FIELDS} }} }} }}"
    far_id = next(r.id for r in seeded["rows"] if r.la_code == FAR)
    for token in _callers(api, demo["ids"]).values():
        for pk in (seeded["visible"][0], far_id):
            await both.same(node, {"id": gid("Referral", pk)}, token, statements=1)


async def test_referral_cursors_and_page_sizes_get_todays_errors(
    api: Api, app: Any, sql_counter: StatementCounter, demo: dict[str, Any], db: AsyncSession
) -> None:
    await _seed_referrals(db, demo)
    both = Both(api, app, sql_counter)
    query = """query($n: Int, $l: Int, $a: String, $b: String) {
      referrals(first: $n, last: $l, after: $a, before: $b) { totalCount nodes { id } } }"""
    visit_cursor = "W3sidCI6IjE5MDAtMDEtMDFUMDA6MDA6MDArMDA6MDAifSwxXQ"  # a visit list's
    ordered = base64.urlsafe_b64encode(b'{"o":"NAME_ASC","k":["a",1]}').decode().rstrip("=")
    for token in (api.token(Role.ADMIN), api.token(Role.COORDINATOR, demo["ids"]["coordinator"])):
        for variables in (
            {"a": "not a cursor"},
            {"b": visit_cursor},
            {"a": ordered},
            {"a": "W3RydWVd"},  # [true]
            {"b": "WzkyMjMzNzIwMzY4NTQ3NzU4MDhd"},  # [2**63]: out of range
            {"n": 0},
            {"l": 101},
            {"n": 2, "l": 2},
        ):
            resolved, compiled, _ = await both.run(query, variables, token)
            assert resolved.get("errors"), variables
            assert _exact(compiled.get("data")) == _exact(resolved.get("data")), variables
            assert compiled.get("errors") == resolved.get("errors"), variables
            assert not both.compiled, variables  # the resolvers' own refusal
        # A valid cursor past the end: an empty page, compiled.
        body = await both.same(query, {"a": "Wzk5OTk5OTk5XQ"}, token, statements=1)
        assert body["data"]["referrals"] == {"totalCount": 0, "nodes": []}


async def test_a_referral_district_is_normalised_once_per_request(
    api: Api,
    app: Any,
    sql_counter: StatementCounter,
    demo: dict[str, Any],
    db: AsyncSession,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    await _seed_referrals(db, demo)
    calls: list[str] = []
    normalise = filters.postcode_district

    def counted(value: str) -> str | None:
        calls.append(value)
        return normalise(value)

    monkeypatch.setattr(filters, "postcode_district", counted)
    both = Both(api, app, sql_counter)
    query = "query($d: String) { referrals(district: $d) { totalCount } }"
    admin = api.token(Role.ADMIN)
    await both.same(query, {"d": " n12 "}, admin, statements=1)  # compiles the plan
    calls.clear()
    body = await both.same(query, {"d": "en1 "}, admin, statements=1)
    # Once for each of the three requests: the resolvers', the compiled path's and the
    # fast lane's (the same plan, bound again).
    assert calls == ["en1 "] * 3
    assert body["data"]["referrals"]["totalCount"] > 0


# --- partnerships (`Query.partnerships`, admins only) --------------------------------------

# Text JSON escapes: quotes, a backslash, control characters, and characters it does not
# escape (non-ASCII, "/", "<").
ESCAPED = 'Q "uote" \\ back\nline\ttab\x01\x1f é 🙂 </script>'
PARTNERSHIP_FIELDS = """__typename id baseUrl coopName homeLocalAuthority
    localAuthorities { __typename gssCode name } direction status requestedScopes
    grantedScopes suspendedBy protocolVersion keyIds manifestFetchedAt lastContactAt
    lastError lastErrorAt lastSyncAt createdAt updatedAt"""
PARTNERSHIPS = "query { partnerships { " + PARTNERSHIP_FIELDS + " } }"
# With other root fields that compile, aliases, a fragment, an inline fragment, a
# directive, and the same field twice (merged).
PARTNERSHIPS_MIXED = """
query Mixed($withKeys: Boolean!) {
  pools { id name }
  coop { name homeLocalAuthority { gssCode } }
  localAuthorities { gssCode }
  clusters(first: 2) { totalCount nodes { name } }
  all: partnerships { ...Partner ... on Partnership { keyIds @include(if: $withKeys) } }
  again: partnerships { id councils: localAuthorities { code: gssCode gssCode }
    localAuthorities { name } state: status }
  partnerships { id localAuthorities { __typename } }
}
fragment Partner on Partnership { id url: baseUrl status suspendedBy
  localAuthorities { name gssCode } }"""


def _old_partnership_lists(las: Any, keys: Any) -> tuple[list[dict[str, str]], list[str]]:
    """`localAuthorities` and `keyIds` as the resolver built them in Python before both
    paths read them from the select: `str()` of each JSON value."""
    councils = [
        {
            "__typename": "PartnerLocalAuthority",
            "gssCode": str(la.get("gssCode")),
            "name": str(la.get("name")),
        }
        for la in (las or [])
    ]
    return councils, [str(k["kid"]) for k in (keys or []) if "kid" in k]


async def _partnerships(db: AsyncSession) -> list[Partnership]:
    """A partnership in every status, each direction, with none, one and several local
    authorities and keys, text JSON escapes, and what the manifest parser never writes
    (a missing or null name, a number for a code, JSON null for the lists, a key
    without a kid), which both paths read as Python's `str()` did."""
    moment = dt.datetime(2026, 3, 4, 5, 6, 7, 89, tzinfo=dt.UTC)
    many_las = [
        {"gssCode": "E09000003", "name": "Barnet"},
        {"gssCode": "E09000010", "name": ESCAPED},
        {"gssCode": "W06000015", "name": "Caerdydd / Cardiff"},
        {"gssCode": "S12000036"},
        {"gssCode": 12345, "name": None},
    ]
    keys = [{"kty": "OKP", "kid": f"kid-{i}-{ESCAPED}"} for i in range(3)]
    specs: list[dict[str, Any]] = [
        dict(
            status="PROPOSED",
            direction="INCOMING",
            requested_scopes=["COVER"],
            granted_scopes=[],
            local_authorities=[],
            keys=[],
        ),
        dict(
            status="ACTIVE",
            coop_name=ESCAPED,
            home_la_code="E09000003",
            local_authorities=many_las,
            keys=[*keys, {"kty": "OKP"}],
            manifest_fetched_at=moment,
            last_contact_at=moment,
            last_sync_at=moment,
            requested_scopes=["AVAILABILITY", "COVER", "MARKET_DATA"],
            granted_scopes=["MARKET_DATA", "AVAILABILITY"],
        ),
        dict(
            status="REJECTED",
            direction="INCOMING",
            granted_scopes=[],
            local_authorities=[{"gssCode": "E06000001", "name": "Hartlepool"}],
            keys=keys[:1],
            last_error=ESCAPED,
            last_error_at=moment,
        ),
        dict(
            status="SUSPENDED",
            suspended_by="PARTNER",
            local_authorities=many_las[:2],
            keys=keys[:2],
        ),
        dict(status="SUSPENDED", suspended_by="US", coop_name="Us Suspended"),
        dict(status="ENDED", local_authorities=None, keys=None),
    ]
    made = []
    for i, extra in enumerate(specs):
        extra.setdefault("requested_scopes", ["AVAILABILITY", "COVER"])
        extra.setdefault("granted_scopes", ["COVER"])
        made.append(
            await Build(db).partnership(
                f"https://p{i}.example/co-op/{ESCAPED}", extra.pop("requested_scopes"), **extra
            )
        )
    await db.commit()
    return made


def _data_bytes(response: Any) -> bytes:
    """The response's `data`, as sent (its `extensions` differ: the statements run)."""
    content: bytes = response.content
    assert content.startswith(b'{"data":'), content[:100]
    return content[len(b'{"data":') : content.rindex(b',"extensions":')]


async def test_partnerships_are_identical_on_both_paths_for_every_caller(
    api: Api, app: Any, sql_counter: StatementCounter, demo: dict[str, Any], db: AsyncSession
) -> None:
    made = await _partnerships(db)
    both = Both(api, app, sql_counter)
    operations = [
        (PARTNERSHIPS, {}),
        (PARTNERSHIPS_MIXED, {"withKeys": True}),
        (PARTNERSHIPS_MIXED, {"withKeys": False}),
    ]
    admin = api.token(Role.ADMIN)
    for name, token in _callers(api, demo["ids"]).items():
        for query, variables in operations:
            resolved, compiled, ran = await both.run(query, variables, token)
            assert _exact(compiled.get("data")) == _exact(resolved.get("data")), name
            assert compiled.get("errors") == resolved.get("errors"), name
            if name == "admin":
                assert not resolved.get("errors") and both.compiled and ran == 1, name
            else:
                # Refused by the field's access rule on both paths alike (the compiler
                # hands the operation to the resolvers, which refuse with today's code).
                assert not both.compiled, name
                codes = {e["extensions"]["code"] for e in resolved["errors"]}
                assert codes == {"FORBIDDEN" if token else "UNAUTHENTICATED"}, name
    # The bytes as sent, not only the values: JSON escapes written alike.
    state = app.state
    for query, variables in operations:
        state.compiled_reads = state.fast_lane = False
        try:
            resolved_raw = await api.post(query, variables, token=admin)
        finally:
            state.compiled_reads = state.fast_lane = True
        compiled_raw = await api.post(query, variables, token=admin)
        assert _data_bytes(compiled_raw) == _data_bytes(resolved_raw)
    # Every partnership, oldest first, as the resolver built them from the JSON before.
    body = await both.same(PARTNERSHIPS, {}, admin, statements=1)
    rows = body["data"]["partnerships"]
    ours = [row for row in rows if row["id"] in {gid("Partnership", p.id) for p in made}]
    assert [row["id"] for row in rows] == sorted(
        (row["id"] for row in rows), key=lambda g: int(base64.b64decode(g).split(b":")[1])
    )
    assert len(ours) == len(made) and len(rows) == len(made) + 2  # the demo's two
    for row, partnership in zip(ours, made, strict=True):
        councils, key_ids = _old_partnership_lists(partnership.local_authorities, partnership.keys)
        assert row["localAuthorities"] == councils
        assert row["keyIds"] == key_ids
        assert row["status"] == partnership.status and row["baseUrl"] == partnership.base_url
    assert {len(row["localAuthorities"]) for row in ours} == {0, 1, 2, 5}
    assert {len(row["keyIds"]) for row in ours} == {0, 1, 2, 3}
    assert {row["status"] for row in ours} == {s.value for s in PartnershipStatus}
    assert {row["suspendedBy"] for row in ours} == {None, "US", "PARTNER"}
    busy = ours[1]
    assert busy["coopName"] == ESCAPED and busy["grantedScopes"] == ["MARKET_DATA", "AVAILABILITY"]
    assert busy["localAuthorities"][3:] == [
        {"__typename": "PartnerLocalAuthority", "gssCode": "S12000036", "name": "None"},
        {"__typename": "PartnerLocalAuthority", "gssCode": "12345", "name": "None"},
    ]
    assert busy["manifestFetchedAt"] == "2026-03-04T05:06:07.000089+00:00"


async def test_a_partnership_by_node_and_its_loader_answer_as_before(
    api: Api, app: Any, sql_counter: StatementCounter, demo: dict[str, Any], db: AsyncSession
) -> None:
    # `node` of a Partnership compiles: one statement over the select `partnerships` and
    # the resolvers' loader read (`queries.partnership_select`, admins only), its
    # `localAuthorities` the same declared list; anyone else gets null on both paths.
    made = await _partnerships(db)
    both = Both(api, app, sql_counter)
    query = (
        "query($id: ID!) { node(id: $id) { ... on Partnership { " + PARTNERSHIP_FIELDS + " } } }"
    )
    listed = (await both.same(PARTNERSHIPS, {}, api.token(Role.ADMIN), statements=1))["data"]
    by_id = {row["id"]: row for row in listed["partnerships"]}
    for name, token in _callers(api, demo["ids"]).items():
        for partnership in made:
            value = gid("Partnership", partnership.id)
            body = await both.same(query, {"id": value}, token, statements=1)
            assert both.compiled
            if name == "admin":
                assert body["data"]["node"] == by_id[value]
            else:
                assert body["data"]["node"] is None  # no one else sees a partnership
