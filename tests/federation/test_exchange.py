"""Cross-boundary cover between real instances (federation/exchange.py; docs/federation.md,
section 12): A asks B's PA to cover A's visit; B holds the PA's time; the PA accepts; A
confirms on its own; first names, address and care summary cross; either side cancels.
Holds expire on both sides; a repeated update is applied once; two co-ops racing for the
same PA's time get one HELD and one CONFLICT; a local booking over a hold is refused."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import Range
from websockets.asyncio.client import ClientConnection, connect
from websockets.typing import Subprotocol

from care.enums import Role
from care.models import (
    Cluster,
    ClusterPa,
    CoverExchange,
    CoverExchangeEvent,
    CoverRequest,
    PaCommitment,
    Partnership,
    Pool,
    PoolPa,
    Visit,
)
from federation.client import FederationClient
from federation.exchange import COVER_UPDATE, expire_holds
from federation.feed import pseudonym
from tests.factories import Build, at, cover_rule_broken, gid
from tests.federation.conftest import INSTANCE_ENV, start_instances
from tests.federation.instances import LOOPBACK_NETWORKS, Instance, eventually
from tests.federation.test_door import identity_of, partner_on

REQUEST = """
mutation($input: RequestPartnerCoverInput!) { requestPartnerCover(input: $input) {
  exchange { id ref side status holdExpiresAt paRef careSummary paFirstName district skills
             partner { name baseUrl } }
  errors { field message code }
} }
"""
EXCHANGE_FIELDS = """id ref side status district skills paRef paFirstName personFirstName
  personAddress careSummary cancelledBy reason holdExpiresAt
  visit { id status } coverRequest { id status } pa { id }
  events { status bySide byRole note }"""
MINE = "{ myCoverExchanges { totalCount nodes { " + EXCHANGE_FIELDS + " } } }"
ALL = (
    "query($filter: CoverExchangeFilter) { coverExchanges(filter: $filter) { totalCount nodes { "
    + EXCHANGE_FIELDS
    + " } } }"
)
ACCEPT = """
mutation($id: ID!) { acceptPartnerCover(id: $id) {
  exchange { id status } errors { field message code } } }
"""
DECLINE = """
mutation($id: ID!) { declinePartnerCover(id: $id, reason: "busy") {
  exchange { id status } errors { field message code } } }
"""
CANCEL = """
mutation($id: ID!, $reason: String) { cancelPartnerCover(id: $id, reason: $reason) {
  exchange { id status cancelledBy reason } errors { field message code } } }
"""
SCHEDULE = """
mutation($input: ScheduleVisitInput!) { scheduleVisit(input: $input) {
  visit { id } errors { field message code } } }
"""


@pytest.fixture(scope="module")
def trio(migrated_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Instance]]:
    """Three instances: A and C ask, B provides. The sweeper is off: tests sweep by hand."""
    tmp = tmp_path_factory.mktemp("exchange")
    env = {**INSTANCE_ENV, "EXCHANGE_SWEEP_SECONDS": "0"}
    instances = start_instances(migrated_url, ("xa", "xb", "xc"), tmp, env)
    try:
        yield instances
    finally:
        for instance in instances:
            instance.stop()


@dataclass
class Requester:
    """A co-op asking for cover: its partnership with B, a coordinator, a person."""

    instance: Instance
    partnership_id: int
    coordinator: int
    person: int
    pa_ref: str  # B's PA as B names it to this co-op

    @property
    def token(self) -> str:
        return self.instance.token(Role.COORDINATOR, self.coordinator)

    async def open_request(self, start: dt.datetime, minutes: int = 60) -> int:
        """A visit needing cover at `start`, with its OPEN cover request."""
        async with self.instance.session() as s:
            visit = Visit(
                service_user_id=self.person,
                pa_id=None,
                during=Range(start, start + dt.timedelta(minutes=minutes), bounds="[)"),
                status="NEEDS_COVER",
            )
            s.add(visit)
            await s.flush()
            request = CoverRequest(visit_id=visit.id, reason="MANUAL", status="OPEN")
            s.add(request)
            await s.commit()
            return request.id

    async def ask(self, request_id: int, summary: str | None = "Needs help to stand.") -> Any:
        data = await self.instance.data(
            REQUEST,
            {
                "input": {
                    "coverRequestId": gid("CoverRequest", request_id),
                    "partnershipId": gid("Partnership", self.partnership_id),
                    "paRef": self.pa_ref,
                    "careSummary": summary,
                }
            },
            token=self.token,
        )
        return data["requestPartnerCover"]


@dataclass
class World:
    a: Requester
    c: Requester
    b: Instance
    b_pa: int
    b_admin: int
    b_coordinator: int
    b_person: int


async def _requester(instance: Instance, b: Instance, name: str) -> tuple[int, int, int]:
    async with instance.session() as s:
        build = Build(s)
        await build.las()
        await build.coop()
        coordinator = await build.worker(f"{name} Coordinator")
        cluster = await build.cluster(support_worker=coordinator)
        person = await build.service_user("Ada Lovelace", needs=["hoist"], cluster=cluster)
        await s.commit()
        ids = coordinator.id, person.id
    partnership = await partner_on(instance, b, scopes=("COVER",))
    return partnership, ids[0], ids[1]


async def _provider(b: Instance) -> tuple[int, int, int, int]:
    async with b.session() as s:
        build = Build(s)
        await build.las()
        await build.coop()
        admin = await build.worker("Bea Admin")
        coordinator = await build.worker("Bo Coordinator")
        cluster = await build.cluster("Barnet East", support_worker=coordinator)
        pa = await build.pa("Pat Provider", cluster=cluster, skills=["hoist"])
        person = await build.service_user("Bob Local", cluster=cluster)
        pool = Pool(name="Shared with partners", shared_with_partners=True)
        s.add(pool)
        await s.flush()
        s.add(PoolPa(pool_id=pool.id, pa_id=pa.id))
        await s.commit()
        return pa.id, admin.id, coordinator.id, person.id


async def _pa_ref(b: Instance, partner: Instance, pa_id: int) -> str:
    async with b.session() as s:
        key = await s.scalar(
            select(Partnership.pseudonym_key).where(Partnership.base_url == partner.base_url)
        )
        assert key is not None
        return pseudonym(key, "pa", pa_id)


@pytest.fixture
async def world(trio: list[Instance]) -> AsyncIterator[World]:
    a, b, c = trio
    b_pa, b_admin, b_coordinator, b_person = await _provider(b)
    await partner_on(b, a, scopes=("COVER",))
    await partner_on(b, c, scopes=("COVER",))
    pa_a, coord_a, person_a = await _requester(a, b, "Alma")
    pa_c, coord_c, person_c = await _requester(c, b, "Cleo")
    yield World(
        a=Requester(a, pa_a, coord_a, person_a, await _pa_ref(b, a, b_pa)),
        c=Requester(c, pa_c, coord_c, person_c, await _pa_ref(b, c, b_pa)),
        b=b,
        b_pa=b_pa,
        b_admin=b_admin,
        b_coordinator=b_coordinator,
        b_person=b_person,
    )
    for instance in trio:
        await instance.reset()
        await instance.dispose()


async def _exchange(instance: Instance, ref: str) -> CoverExchange | None:
    async with instance.session() as s:
        return await s.scalar(select(CoverExchange).where(CoverExchange.ref == uuid.UUID(ref)))


async def _status(instance: Instance, ref: str) -> str | None:
    row = await _exchange(instance, ref)
    return row.status if row is not None else None


async def _holds(instance: Instance) -> int:
    async with instance.session() as s:
        return int(await s.scalar(select(func.count()).where(PaCommitment.kind == "HOLD")) or 0)


async def _mine(world: World) -> list[dict[str, Any]]:
    data = await world.b.data(MINE, token=world.b.token(Role.PA, world.b_pa))
    nodes: list[dict[str, Any]] = data["myCoverExchanges"]["nodes"]
    return nodes


async def test_end_to_end_request_accept_confirm_then_the_partner_cancels(world: World) -> None:
    a, b = world.a, world.b
    request_id = await a.open_request(at(days=2, hours=1))
    asked = await a.ask(request_id)
    assert asked["errors"] == []
    mine = asked["exchange"]
    assert mine["side"] == "REQUESTING" and mine["status"] == "HELD"
    assert mine["district"] == "N12" and mine["skills"] == ["hoist"]
    assert mine["careSummary"] == "Needs help to stand."  # ours, written by us
    assert mine["partner"]["baseUrl"] == b.base_url
    ref = mine["ref"]

    # B holds the PA's time and offers it: the PA sees the district and skills only.
    [offer] = await _mine(world)
    assert offer["ref"] == ref and offer["status"] == "HELD" and offer["side"] == "PROVIDING"
    assert offer["district"] == "N12" and offer["skills"] == ["hoist"]
    assert offer["personFirstName"] is None and offer["personAddress"] is None
    assert offer["careSummary"] is None
    assert await _holds(b) == 1
    held = await _exchange(b, ref)
    assert held is not None and held.person_first_name is None and held.care_summary is None

    accepted = await b.data(ACCEPT, {"id": offer["id"]}, token=b.token(Role.PA, world.b_pa))
    assert accepted["acceptPartnerCover"]["errors"] == []
    assert accepted["acceptPartnerCover"]["exchange"]["status"] == "ACCEPTED"

    # A confirms on its own; the details cross both ways.
    await eventually(
        lambda: _confirmed_with(b, ref, lambda r: r.person_first_name is not None),
        "B receives the confirmation with the person's details",
    )
    await eventually(
        lambda: _confirmed_with(a.instance, ref, lambda r: r.pa_first_name is not None),
        "A receives the PA's first name",
    )
    [booked] = await _mine(world)
    assert booked["status"] == "CONFIRMED"
    assert booked["personFirstName"] == "Ada"
    assert booked["personAddress"] == "N12 0AA"
    assert booked["careSummary"] == "Needs help to stand."
    assert booked["paFirstName"] == "Pat"
    seen = await a.instance.data(ALL, {"filter": {"side": "REQUESTING"}}, token=a.token)
    [ours] = seen["coverExchanges"]["nodes"]
    assert ours["status"] == "CONFIRMED" and ours["paFirstName"] == "Pat"
    assert ours["visit"]["status"] == "SCHEDULED"
    assert ours["coverRequest"]["status"] == "FILLED"
    assert [e["status"] for e in ours["events"]] == ["HELD", "ACCEPTED", "CONFIRMED", "CONFIRMED"]
    assert [e["bySide"] for e in ours["events"]] == ["US", "PARTNER", "SYSTEM", "PARTNER"]
    assert ours["events"][1]["byRole"] == "PA"
    async with a.instance.session() as s:
        request = await s.get(CoverRequest, request_id)
        assert request is not None and request.filled_by_partner and request.status == "FILLED"
        assert await cover_rule_broken(s) == []
    assert await _holds(b) == 1  # the hold is now the booking

    # B's admin cancels: A's visit needs cover again, with a new request.
    cancelled = await b.data(
        CANCEL,
        {"id": booked["id"], "reason": "PA unwell"},
        token=b.token(Role.ADMIN, world.b_admin),
    )
    assert cancelled["cancelPartnerCover"]["errors"] == []
    assert cancelled["cancelPartnerCover"]["exchange"]["cancelledBy"] == "US"
    assert await _holds(b) == 0
    await eventually(lambda: _status_is(a.instance, ref, "CANCELLED"), "A hears of the cancel")
    row = await _exchange(a.instance, ref)
    assert row is not None and row.cancelled_by == "PARTNER" and row.reason == "PA unwell"
    async with a.instance.session() as s:
        reopened = (
            await s.scalars(
                select(CoverRequest)
                .where(CoverRequest.visit_id == row.visit_id)
                .order_by(CoverRequest.id)
            )
        ).all()
        visit = await s.get(Visit, row.visit_id)
        assert await cover_rule_broken(s) == []
    assert [r.status for r in reopened] == ["FILLED", "OPEN"]
    assert reopened[1].reason == "PARTNER_CANCELLED"
    assert visit is not None and visit.status == "NEEDS_COVER"
    # B's PA no longer sees the person's details.
    [over] = await _mine(world)
    assert over["status"] == "CANCELLED" and over["personAddress"] is None


async def _confirmed_with(instance: Instance, ref: str, check: Any) -> bool:
    row = await _exchange(instance, ref)
    return row is not None and row.status == "CONFIRMED" and bool(check(row))


async def _status_is(instance: Instance, ref: str, status: str) -> bool:
    return await _status(instance, ref) == status


async def test_the_pa_declines_and_the_requesting_side_hears(world: World) -> None:
    request_id = await world.a.open_request(at(days=2))
    asked = await world.a.ask(request_id)
    ref = asked["exchange"]["ref"]
    [offer] = await _mine(world)
    declined = await world.b.data(
        DECLINE, {"id": offer["id"]}, token=world.b.token(Role.PA, world.b_pa)
    )
    assert declined["declinePartnerCover"]["exchange"]["status"] == "DECLINED"
    assert await _holds(world.b) == 0
    await eventually(lambda: _status_is(world.a.instance, ref, "DECLINED"), "A hears")
    async with world.a.instance.session() as s:
        request = await s.get(CoverRequest, request_id)
    assert request is not None and request.status == "OPEN"  # the coordinator tries again


async def test_a_hold_that_runs_out_expires_on_both_sides(world: World) -> None:
    a, b = world.a, world.b
    request_id = await a.open_request(at(days=3))
    ref = (await a.ask(request_id))["exchange"]["ref"]
    assert await _holds(b) == 1
    for instance in (a.instance, b):
        async with instance.session() as s:
            await s.execute(
                update(CoverExchange)
                .where(CoverExchange.ref == uuid.UUID(ref))
                .values(hold_expires_at=func.now() - dt.timedelta(seconds=1))
            )
            assert await expire_holds(s) == 1
            await s.commit()
    assert await _status(a.instance, ref) == "EXPIRED"
    assert await _status(b, ref) == "EXPIRED"
    assert await _holds(b) == 0  # the PA's time is free again
    # The PA can no longer accept; the request is still open on A.
    [offer] = await _mine(world)
    refused = await b.data(ACCEPT, {"id": offer["id"]}, token=b.token(Role.PA, world.b_pa))
    assert [e["code"] for e in refused["acceptPartnerCover"]["errors"]] == ["CLOSED"]
    async with a.instance.session() as s:
        request = await s.get(CoverRequest, request_id)
        events = (
            await s.scalars(
                select(CoverExchangeEvent.by_side)
                .join(CoverExchange, CoverExchange.id == CoverExchangeEvent.exchange_id)
                .where(CoverExchange.ref == uuid.UUID(ref), CoverExchangeEvent.status == "EXPIRED")
            )
        ).all()
    assert request is not None and request.status == "OPEN"
    assert events == ["SYSTEM"]
    # The same request may now be asked of the partner again.
    again = await a.ask(request_id)
    assert again["errors"] == [] and again["exchange"]["status"] == "HELD"


async def test_the_same_update_delivered_twice_is_applied_once(world: World) -> None:
    a, b = world.a, world.b
    request_id = await a.open_request(at(days=2))
    ref = (await a.ask(request_id))["exchange"]["ref"]
    key = str(uuid.uuid4())
    variables = {
        "idempotencyKey": key,
        "update": {"ref": ref, "status": "DECLINED", "byRole": "PA", "reason": "busy"},
    }
    client = FederationClient(identity_of(b), b.base_url, private_networks=LOOPBACK_NETWORKS)
    try:
        keys = identity_of(a.instance).jwks()
        first = await client.call(a.instance.graphql_url, keys, COVER_UPDATE, variables)
        second = await client.call(a.instance.graphql_url, keys, COVER_UPDATE, variables)
    finally:
        await client.aclose()
    assert first.data == second.data == {"peerCoverUpdate": {"status": "DECLINED", "errors": []}}
    async with a.instance.session() as s:
        declined = await s.scalar(
            select(func.count())
            .select_from(CoverExchangeEvent)
            .join(CoverExchange, CoverExchange.id == CoverExchangeEvent.exchange_id)
            .where(CoverExchange.ref == uuid.UUID(ref), CoverExchangeEvent.status == "DECLINED")
        )
    assert declined == 1


async def test_two_co_ops_racing_for_the_same_time_one_holds_the_other_conflicts(
    world: World,
) -> None:
    for round_ in range(4):
        start = at(days=4 + round_, hours=2)
        a_request = await world.a.open_request(start, minutes=60)
        # C's visit overlaps A's by half an hour: the same PA cannot do both.
        c_request = await world.c.open_request(start + dt.timedelta(minutes=30), minutes=60)
        results = await asyncio.gather(world.a.ask(a_request), world.c.ask(c_request))
        held = [r for r in results if r["exchange"] is not None]
        refused = [r for r in results if r["exchange"] is None]
        assert len(held) == 1 and len(refused) == 1, results
        assert held[0]["exchange"]["status"] == "HELD"
        assert [e["code"] for e in refused[0]["errors"]] == ["CONFLICT"]
    async with world.b.session() as s:
        providing = await s.scalar(select(func.count()).select_from(CoverExchange))
    assert providing == 4  # nothing was written for the losers
    assert await _holds(world.b) == 4
    for requester in (world.a, world.c):
        async with requester.instance.session() as s:
            written = await s.scalar(select(func.count()).select_from(CoverExchange))
        assert written is not None and written <= 4


async def test_a_local_booking_over_a_hold_is_refused_by_the_guard(world: World) -> None:
    start = at(days=2, hours=3)
    request_id = await world.a.open_request(start, minutes=120)
    assert (await world.a.ask(request_id))["exchange"]["status"] == "HELD"
    booked = await world.b.data(
        SCHEDULE,
        {
            "input": {
                "serviceUserId": gid("ServiceUser", world.b_person),
                "paId": gid("PersonalAssistant", world.b_pa),
                "startsAt": (start + dt.timedelta(minutes=30)).isoformat(),
                "endsAt": (start + dt.timedelta(minutes=90)).isoformat(),
            }
        },
        token=world.b.token(Role.ADMIN, world.b_admin),
    )
    assert [e["code"] for e in booked["scheduleVisit"]["errors"]] == ["OVERLAP"]
    assert booked["scheduleVisit"]["visit"] is None
    async with world.b.session() as s:
        visits = await s.scalar(select(func.count()).select_from(Visit))
    assert visits == 0


async def test_filling_the_request_locally_calls_the_partner_off(world: World) -> None:
    a, b = world.a, world.b
    request_id = await a.open_request(at(days=2))
    ref = (await a.ask(request_id))["exchange"]["ref"]
    async with a.instance.session() as s:
        build = Build(s)
        cluster = await s.scalar(select(Cluster.id))
        local = await build.pa("Lou Local")
        s.add(ClusterPa(cluster_id=cluster, pa_id=local.id))
        await s.commit()
        visit_id = await s.scalar(
            select(CoverRequest.visit_id).where(CoverRequest.id == request_id)
        )
        local_id = local.id
    assigned = await a.instance.data(
        "mutation($id: ID!, $pa: ID!) { assignVisitPa(id: $id, paId: $pa) { errors { code } } }",
        {"id": gid("Visit", visit_id), "pa": gid("PersonalAssistant", local_id)},
        token=a.token,
    )
    assert assigned["assignVisitPa"]["errors"] == []
    assert await _status(a.instance, ref) == "CANCELLED"
    await eventually(lambda: _status_is(b, ref, "CANCELLED"), "B releases the hold")
    assert await _holds(b) == 0


async def test_a_partner_covered_visit_cannot_be_rescheduled(world: World) -> None:
    a = world.a
    request_id = await a.open_request(at(days=2))
    await a.ask(request_id)
    async with a.instance.session() as s:
        visit_id = await s.scalar(
            select(CoverRequest.visit_id).where(CoverRequest.id == request_id)
        )
    moved = await a.instance.data(
        "mutation($id: ID!, $input: RescheduleVisitInput!) { rescheduleVisit(id: $id, "
        "input: $input) { errors { code message } } }",
        {
            "id": gid("Visit", visit_id),
            "input": {
                "startsAt": at(days=5).isoformat(),
                "endsAt": at(days=5, hours=1).isoformat(),
            },
        },
        token=a.token,
    )
    assert [e["code"] for e in moved["rescheduleVisit"]["errors"]] == ["CLOSED"]


async def test_ending_the_partnership_cancels_live_exchanges_on_both_sides(world: World) -> None:
    a, b = world.a, world.b
    request_id = await a.open_request(at(days=2))
    ref = (await a.ask(request_id))["exchange"]["ref"]
    # One partnership seen from both sides: the same proposal reference (partner_on makes
    # each side's row on its own).
    async with a.instance.session() as s:
        proposal = await s.scalar(
            select(Partnership.proposal_ref).where(Partnership.id == a.partnership_id)
        )
    async with b.session() as s:
        await s.execute(
            update(Partnership)
            .where(Partnership.base_url == a.instance.base_url)
            .values(proposal_ref=proposal)
        )
        await s.commit()
    ended = await a.instance.data(
        "mutation($id: ID!) { endPartnership(input: {partnershipId: $id}) { errors { code } } }",
        {"id": gid("Partnership", a.partnership_id)},
        token=a.instance.token(Role.ADMIN),
    )
    assert ended["endPartnership"]["errors"] == []
    assert await _status(a.instance, ref) == "CANCELLED"
    await eventually(lambda: _status_is(b, ref, "CANCELLED"), "B cancels on hearing the end")
    assert await _holds(b) == 0


async def test_nobody_else_sees_an_exchange(world: World) -> None:
    """On the providing side: another PA and a coordinator without the PA see nothing; on
    the requesting side: a coordinator who does not manage the person sees nothing."""
    request_id = await world.a.open_request(at(days=2))
    await world.a.ask(request_id)
    async with world.b.session() as s:
        build = Build(s)
        other_pa = await build.pa("Olly Other")
        stranger = await build.worker("Stan Stranger")
        s.add(
            Cluster(
                name="Elsewhere",
                kind="NEED_BASED",
                la_code="E09000003",
                status="ACTIVE",
                need_tags=["dementia"],
                support_worker_id=stranger.id,
            )
        )
        await s.commit()
        other_pa_id, stranger_id = other_pa.id, stranger.id
    assert (await _mine_as(world.b, other_pa_id)) == 0
    data = await world.b.data(ALL, token=world.b.token(Role.COORDINATOR, stranger_id))
    assert data["coverExchanges"]["totalCount"] == 0
    data = await world.b.data(ALL, token=world.b.token(Role.COORDINATOR, world.b_coordinator))
    assert data["coverExchanges"]["totalCount"] == 1  # the PA is on their cluster's team
    async with world.a.instance.session() as s:
        other = await Build(s).worker("Other Coordinator")
        await s.commit()
        other_id = other.id
    data = await world.a.instance.data(
        ALL, token=world.a.instance.token(Role.COORDINATOR, other_id)
    )
    assert data["coverExchanges"]["totalCount"] == 0


async def _mine_as(instance: Instance, pa_id: int) -> int:
    data = await instance.data(MINE, token=instance.token(Role.PA, pa_id))
    total: int = data["myCoverExchanges"]["totalCount"]
    return total


REQUEST_COVER_AS_PEER = """
mutation($key: String!, $request: PeerCoverRequestInput!) {
  peerRequestCover(idempotencyKey: $key, request: $request) {
    status holdExpiresAt reason errors { field code } } }
"""


async def _as_a(world: World, query: str, variables: dict[str, Any]) -> dict[str, Any]:
    """A signed call from A to B, made by hand (as A's instance would)."""
    client = FederationClient(
        identity_of(world.a.instance), world.a.instance.base_url, private_networks=LOOPBACK_NETWORKS
    )
    try:
        result = await client.call(
            world.b.graphql_url, identity_of(world.b).jwks(), query, variables
        )
    finally:
        await client.aclose()
    return result.data


async def _held_at_b(world: World, start: dt.datetime) -> tuple[str, dict[str, Any]]:
    ref = str(uuid.uuid4())
    request = {
        "ref": ref,
        "paRef": world.a.pa_ref,
        "startsAt": start.isoformat(),
        "endsAt": (start + dt.timedelta(hours=1)).isoformat(),
        "district": "N12",
        "skills": ["hoist"],
    }
    data = await _as_a(world, REQUEST_COVER_AS_PEER, {"key": str(uuid.uuid4()), "request": request})
    return ref, data["peerRequestCover"]


async def test_a_peer_request_is_answered_once_per_key_and_checked(world: World) -> None:
    start = at(days=2)
    request = {
        "ref": str(uuid.uuid4()),
        "paRef": world.a.pa_ref,
        "startsAt": start.isoformat(),
        "endsAt": (start + dt.timedelta(hours=1)).isoformat(),
    }
    key = str(uuid.uuid4())
    first = await _as_a(world, REQUEST_COVER_AS_PEER, {"key": key, "request": request})
    again = await _as_a(world, REQUEST_COVER_AS_PEER, {"key": key, "request": request})
    assert first == again and first["peerRequestCover"]["status"] == "HELD"
    assert await _holds(world.b) == 1
    # Another PA reference, a bad time, a reference B never gave: no hold.
    unknown = await _as_a(
        world,
        REQUEST_COVER_AS_PEER,
        {"key": str(uuid.uuid4()), "request": {**request, "ref": str(uuid.uuid4()), "paRef": "x"}},
    )
    assert unknown["peerRequestCover"]["status"] == "UNAVAILABLE"
    backwards = await _as_a(
        world,
        REQUEST_COVER_AS_PEER,
        {
            "key": str(uuid.uuid4()),
            "request": {**request, "ref": str(uuid.uuid4()), "endsAt": request["startsAt"]},
        },
    )
    assert backwards["peerRequestCover"]["status"] is None
    assert [e["code"] for e in backwards["peerRequestCover"]["errors"]] == ["INVALID_RANGE"]
    assert await _holds(world.b) == 1


async def _confirm_as_a(world: World, ref: str, sent_at: dt.datetime) -> dict[str, Any]:
    update_ = {
        "ref": ref,
        "status": "CONFIRMED",
        "sentAt": sent_at.isoformat(),
        "person": {"firstName": "Ada", "address": "N12 0AA", "careSummary": "Tea, no sugar."},
    }
    data = await _as_a(
        world, COVER_UPDATE, {"idempotencyKey": str(uuid.uuid4()), "update": update_}
    )
    answer: dict[str, Any] = data["peerCoverUpdate"]
    return answer


async def _expire_at_b(world: World, ref: str) -> dt.datetime:
    async with world.b.session() as s:
        expired_at = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
        await s.execute(
            update(CoverExchange)
            .where(CoverExchange.ref == uuid.UUID(ref))
            .values(status="ACCEPTED", hold_expires_at=expired_at)
        )
        assert await expire_holds(s) == 1
        await s.commit()
    return expired_at


async def test_a_confirmation_sent_before_the_hold_ran_out_is_honoured(world: World) -> None:
    ref, answer = await _held_at_b(world, at(days=2))
    assert answer["status"] == "HELD"
    expired_at = await _expire_at_b(world, ref)
    assert await _holds(world.b) == 0
    late = await _confirm_as_a(world, ref, expired_at - dt.timedelta(seconds=30))
    assert late == {"status": "CONFIRMED", "errors": []}
    row = await _exchange(world.b, ref)
    assert row is not None and row.status == "CONFIRMED" and row.person_first_name == "Ada"
    assert await _holds(world.b) == 1  # the hold is back: the booking


async def test_a_confirmation_sent_after_the_hold_ran_out_is_cancelled(world: World) -> None:
    ref, _ = await _held_at_b(world, at(days=2))
    expired_at = await _expire_at_b(world, ref)
    late = await _confirm_as_a(world, ref, expired_at + dt.timedelta(seconds=30))
    assert late == {"status": "CANCELLED", "errors": []}
    row = await _exchange(world.b, ref)
    assert row is not None and row.status == "EXPIRED" and row.person_first_name is None
    assert await _holds(world.b) == 0


async def test_a_confirmation_for_a_time_taken_meanwhile_is_cancelled(world: World) -> None:
    start = at(days=2)
    ref, _ = await _held_at_b(world, start)
    expired_at = await _expire_at_b(world, ref)
    # Meanwhile B books its PA locally over that time.
    booked = await world.b.data(
        SCHEDULE,
        {
            "input": {
                "serviceUserId": gid("ServiceUser", world.b_person),
                "paId": gid("PersonalAssistant", world.b_pa),
                "startsAt": start.isoformat(),
                "endsAt": (start + dt.timedelta(hours=1)).isoformat(),
            }
        },
        token=world.b.token(Role.ADMIN, world.b_admin),
    )
    assert booked["scheduleVisit"]["errors"] == []
    late = await _confirm_as_a(world, ref, expired_at - dt.timedelta(seconds=30))
    assert late == {"status": "CANCELLED", "errors": []}
    row = await _exchange(world.b, ref)
    assert row is not None and row.status == "EXPIRED" and row.person_first_name is None


SUBSCRIBE = "subscription { coverExchanges { kind coverExchange { ref side status } } }"


@asynccontextmanager
async def _live(instance: Instance, token: str) -> AsyncIterator[ClientConnection]:
    """A graphql-transport-ws subscription to coverExchanges, as `token`'s holder."""
    url = instance.base_url.replace("http://", "ws://") + "/graphql"
    async with connect(url, subprotocols=[Subprotocol("graphql-transport-ws")]) as ws:
        await ws.send(
            json.dumps({"type": "connection_init", "payload": {"Authorization": f"Bearer {token}"}})
        )
        assert json.loads(await ws.recv())["type"] == "connection_ack"
        await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": {"query": SUBSCRIBE}}))
        yield ws


async def _until(
    ws: ClientConnection, ref: str, status: str, wait: float = 15
) -> list[tuple[str, str]]:
    """The (side, status) events about `ref` received until `status` arrives."""
    seen: list[tuple[str, str]] = []
    while True:
        message = json.loads(await asyncio.wait_for(ws.recv(), timeout=wait))
        assert message["type"] == "next", message
        change = message["payload"]["data"]["coverExchanges"]
        item = change["coverExchange"]
        assert change["kind"] == item["status"], change  # no later change committed yet
        if item["ref"] == ref:
            seen.append((item["side"], item["status"]))
            if item["status"] == status:
                return seen


async def test_coordinators_on_both_sides_hear_of_each_change(world: World) -> None:
    a, b = world.a, world.b
    request_id = await a.open_request(at(days=2))
    async with (
        _live(a.instance, a.token) as on_a,
        _live(b, b.token(Role.COORDINATOR, world.b_coordinator)) as on_b,
    ):
        # A subscription listens a moment after `subscribe`: the first event may come
        # before; CONFIRMED comes after two round trips between the instances.
        ref = (await a.ask(request_id))["exchange"]["ref"]
        [offer] = await _mine(world)
        await b.data(ACCEPT, {"id": offer["id"]}, token=b.token(Role.PA, world.b_pa))
        heard_b = await _until(on_b, ref, "CONFIRMED")
        heard_a = await _until(on_a, ref, "CONFIRMED")
    assert {side for side, _ in heard_a} == {"REQUESTING"}
    assert {side for side, _ in heard_b} == {"PROVIDING"}
    assert ("PROVIDING", "ACCEPTED") in heard_b


async def test_a_coordinator_hears_nothing_of_another_cluster(world: World) -> None:
    """Events arrive in commit order: the other coordinator's own exchange (warm-up, then
    after ours) is what they hear, never ours in between."""
    a = world.a
    async with a.instance.session() as s:
        build = Build(s)
        other = await build.worker("Other Coordinator")
        cluster = await build.cluster("Other", support_worker=other)
        person = await build.service_user("Otto Person", needs=["hoist"], cluster=cluster)
        await s.commit()
        theirs = Requester(a.instance, a.partnership_id, other.id, person.id, a.pa_ref)
    ours = await a.open_request(at(days=3))
    after = await theirs.open_request(at(days=4))
    async with _live(a.instance, theirs.token) as stranger:
        # Until the subscription listens, a warm-up event may be missed: ask again.
        for attempt in range(20):
            warm_up = await theirs.open_request(at(days=10, hours=2 * attempt))
            warm_ref = (await theirs.ask(warm_up))["exchange"]["ref"]
            try:
                await _until(stranger, warm_ref, "HELD", wait=1)
                break
            except TimeoutError:
                continue
        else:
            raise AssertionError("the subscription never heard the warm-up")
        await a.ask(ours)
        after_ref = (await theirs.ask(after))["exchange"]["ref"]
        message = json.loads(await asyncio.wait_for(stranger.recv(), timeout=15))
    assert message["payload"]["data"]["coverExchanges"]["coverExchange"]["ref"] == after_ref
