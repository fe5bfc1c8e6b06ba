"""Live updates over graphql-transport-ws, against real app processes.

Two uvicorn processes (A and B) serve the app on the test database with the test's token
keys. Events are published as services do (`care.events.publish` in the writing
transaction), from this test process or through process B's API, and must reach
subscribers of either process through PostgreSQL LISTEN/NOTIFY, filtered by cluster or
PA and re-read under the subscriber's own privacy rules.

A subscription starts listening a moment after the `subscribe` message (there is no
acknowledgement in the protocol), so each test first publishes a warm-up event until it
arrives; later messages about the warm-up record are skipped. Events are delivered in
commit order, so "X is not delivered" is checked by publishing X, then Y, and seeing Y
first.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from sqlalchemy import delete, text, update
from sqlalchemy.ext.asyncio import AsyncSession
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

from api.events import EventHub, Subscriber
from api.settings import Settings
from care.enums import Role
from care.events import CoverEvent, StoredEvent, publish
from care.models import Cluster, CoverOffer, CoverRequest, LiveEvent, Member, Visit
from care.tokens import revoke_member_tokens
from schema.subscriptions import LAGGED
from tests.api.forge import signed
from tests.api.test_persisted import register, sha, write
from tests.conftest import ROOT, Api
from tests.factories import Build, at, gid
from tests.live_events import latest

LAUNCH = """
import uvicorn
from api.app import create_app
from api.cli import server_options
from api.settings import Settings

settings = Settings()
uvicorn.run(
    create_app(settings, settings.database_url),
    host="127.0.0.1",
    port=settings.port,
    log_level="warning",
    **server_options(settings),
)
"""

REQUESTS = """subscription($cluster: ID!, $after: String) {
  coverRequests(clusterId: $cluster, afterSequence: $after) {
    sequence kind occurredAt coverRequest {
      id status reason visit { id startsAt } offers { id personalAssistant { name } } } } }"""
OFFERS = """subscription($after: String) { myCoverOffers(afterSequence: $after) {
  sequence kind occurredAt coverOffer {
    id status coverRequest { id visit { id } } personalAssistant { name } } } }"""
# The record each subscription's change carries.
RECORD = {"coverRequests": "coverRequest", "myCoverOffers": "coverOffer"}
WAIT = 5.0  # seconds for anything that should happen
RECHECK = 1.0  # the servers' TOKEN_RECHECK_SECONDS
MAX_BODY = 100_000  # the servers' MAX_BODY_BYTES: also the largest websocket message


# --- two app processes ----------------------------------------------------------------------


@dataclass
class Server:
    name: str
    port: int
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}/graphql"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _start(name: str, settings: Settings, url: str, tmp: Path, **extra: str) -> Server:
    keys = settings.data_dir / "keys"
    port = _free_port()
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "PORT": str(port),
        "DATA_DIR": str(tmp / name),
        "JWT_PRIVATE_KEY_FILE": str(keys / "jwt-ed25519.pem"),
        "JWT_PUBLIC_KEY_FILE": str(keys / "jwt-ed25519.pub.pem"),
        # Idle subscriptions re-check their token this often (test_..._while_idle).
        "TOKEN_RECHECK_SECONDS": str(RECHECK),
        "MAX_BODY_BYTES": str(MAX_BODY),
        **extra,
    }
    log = tmp / f"{name}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-c", LAUNCH], cwd=ROOT, env=env, stdout=out, stderr=out
        )
    return Server(name, port, process, log)


def _wait_healthy(server: Server) -> None:
    """Up once /healthz answers: the app's startup (with its LISTEN) is then complete."""
    with httpx.Client(base_url=server.http) as client:
        for _ in range(600):
            if server.process.poll() is not None:
                raise RuntimeError(f"server {server.name} exited:\n{server.log.read_text()}")
            try:
                if client.get("/healthz").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
    raise RuntimeError(f"server {server.name} did not start:\n{server.log.read_text()}")


def _stop(server: Server) -> None:
    server.process.terminate()
    try:
        server.process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait()


@pytest.fixture(scope="module")
def servers(
    app_state: Any, settings: Settings, migrated_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Server, Server]]:
    # app_state: the test app created the key pair the servers verify tokens with.
    tmp = tmp_path_factory.mktemp("live")
    a = _start("a", settings, migrated_url, tmp)
    b = _start("b", settings, migrated_url, tmp)
    try:
        _wait_healthy(a)
        _wait_healthy(b)
        yield a, b
    finally:
        _stop(a)
        _stop(b)


# --- a graphql-transport-ws client -------------------------------------------------------


class Live:
    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws

    async def recv(self, seconds: float = WAIT) -> dict[str, Any]:
        raw = await asyncio.wait_for(self.ws.recv(), seconds)
        assert isinstance(raw, str), "messages must be text frames"
        message: dict[str, Any] = json.loads(raw)
        return message

    async def subscribe(self, op: str, query: str, variables: dict[str, Any] | None = None) -> None:
        payload = {"query": query, "variables": variables or {}}
        await self.ws.send(json.dumps({"id": op, "type": "subscribe", "payload": payload}))

    async def until_live(self, op: str, publish_once: Callable[[], Awaitable[None]]) -> None:
        """Publish a warm-up event until the subscription hears it."""
        for _ in range(40):
            await publish_once()
            try:
                message = await self.recv(seconds=0.25)
            except TimeoutError:
                continue
            assert message["type"] == "next" and message["id"] == op, message
            assert not message["payload"].get("errors"), message
            return
        raise AssertionError("the subscription never went live")

    async def next_change(self, op: str, field: str, skip: set[str]) -> dict[str, Any]:
        """The next change of a subscription, skipping those about a record in `skip`."""
        while True:
            message = await self.recv()
            assert message["id"] == op and message["type"] == "next", message
            assert not message["payload"].get("errors"), message
            change: dict[str, Any] = message["payload"]["data"][field]
            if change[RECORD[field]]["id"] not in skip:
                return change

    async def next_item(self, op: str, field: str, skip: set[str]) -> dict[str, Any]:
        """The record of the next change, skipping records whose id is in `skip`."""
        item: dict[str, Any] = (await self.next_change(op, field, skip))[RECORD[field]]
        return item

    async def error(self, op: str) -> dict[str, Any]:
        """The one error of an operation that was refused before it started."""
        message = await self.recv()
        assert message["id"] == op and message["type"] == "error", message
        assert len(message["payload"]) == 1, message
        error: dict[str, Any] = message["payload"][0]
        return error


@asynccontextmanager
async def live(server: Server, params: dict[str, Any] | None) -> AsyncIterator[Live]:
    async with connect(
        server.ws, subprotocols=[Subprotocol("graphql-transport-ws")], open_timeout=WAIT
    ) as ws:
        client = Live(ws)
        init: dict[str, Any] = {"type": "connection_init"}
        if params is not None:
            init["payload"] = params
        await ws.send(json.dumps(init))
        ack = await client.recv()
        assert ack["type"] == "connection_ack", ack
        yield client


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# --- data ------------------------------------------------------------------------------------


@dataclass
class World:
    coordinator: Member  # supports cluster A
    other_coordinator: Member  # supports cluster B
    cluster_a: Cluster
    cluster_b: Cluster
    pa: Member
    other_pa: Member
    warm_request: CoverRequest  # cluster A
    request_a: CoverRequest  # cluster A
    request_b: CoverRequest  # cluster B
    warm_offer: CoverOffer  # to pa
    offer: CoverOffer  # to pa
    other_offer: CoverOffer  # to other_pa
    su_a: Member


@pytest.fixture
async def world(db: AsyncSession) -> World:
    b = Build(db)
    await b.las()
    await b.coop()
    coordinator = await b.worker("Cora Ordinator")
    other_coordinator = await b.worker("Otto Ordinator")
    cluster_a = await b.cluster("Finchley", support_worker=coordinator)
    cluster_b = await b.cluster("East", support_worker=other_coordinator)
    su_a = await b.service_user("Ada User", cluster=cluster_a)
    su_b = await b.service_user("Bob Other", cluster=cluster_b)
    pa = await b.pa("Pat Assistant", cluster=cluster_a)
    other_pa = await b.pa("Olive Other", cluster=cluster_b)

    async def request(su: Member, days: float) -> CoverRequest:
        visit = await b.visit(su, None, at(days=days), status="NEEDS_COVER")
        r = CoverRequest(visit_id=visit.id, reason="MANUAL", opened_by_id=coordinator.id)
        db.add(r)
        await db.flush()
        return r

    async def offer(r: CoverRequest, to: Member) -> CoverOffer:
        o = CoverOffer(
            cover_request_id=r.id,
            pa_id=to.id,
            expires_at=dt.datetime.now(dt.UTC) + dt.timedelta(hours=4),
        )
        db.add(o)
        await db.flush()
        return o

    warm_request = await request(su_a, 2)
    request_a = await request(su_a, 3)
    request_b = await request(su_b, 3)
    warm_offer = await offer(warm_request, pa)
    own_offer = await offer(request_a, pa)
    other_offer = await offer(request_b, other_pa)
    await db.commit()
    return World(
        coordinator,
        other_coordinator,
        cluster_a,
        cluster_b,
        pa,
        other_pa,
        warm_request,
        request_a,
        request_b,
        warm_offer,
        own_offer,
        other_offer,
        su_a,
    )


async def emit(db: AsyncSession, event: CoverEvent) -> None:
    """Publish as a service does: inside a transaction, delivered at commit."""
    await publish(db, event)
    await db.commit()


def request_event(r: CoverRequest, clusters: list[int], kind: str = "REQUEST_OPENED") -> CoverEvent:
    return CoverEvent(kind=kind, cover_request_id=r.id, visit_id=r.visit_id, cluster_ids=clusters)


def offer_event(o: CoverOffer, r: CoverRequest, pa_id: int, kind: str = "OFFER_MADE") -> CoverEvent:
    return CoverEvent(
        kind=kind,
        cover_request_id=r.id,
        visit_id=r.visit_id,
        cluster_ids=[],
        offer_id=o.id,
        pa_id=pa_id,
    )


# --- subscriptions -----------------------------------------------------------------------


async def test_coordinator_hears_their_cluster_only(
    servers: tuple[Server, Server], world: World, db: AsyncSession, api: Api
) -> None:
    a, _ = servers
    w = world
    token = api.token(Role.COORDINATOR, w.coordinator.id)
    warm = gid("CoverRequest", w.warm_request.id)
    async with live(a, bearer(token)) as client:
        await client.subscribe("1", REQUESTS, {"cluster": gid("Cluster", w.cluster_a.id)})
        await client.until_live(
            "1", lambda: emit(db, request_event(w.warm_request, [w.cluster_a.id]))
        )
        # Another cluster's event, and an event that names this cluster for a request
        # the coordinator may not see: neither is delivered; the next real one is.
        await emit(db, request_event(w.request_b, [w.cluster_b.id]))
        await emit(db, request_event(w.request_b, [w.cluster_a.id]))
        await emit(db, request_event(w.request_a, [w.cluster_a.id], "OFFER_MADE"))
        item = await client.next_item("1", "coverRequests", skip={warm})
        assert item["id"] == gid("CoverRequest", w.request_a.id)
        assert item["status"] == "OPEN" and item["reason"] == "MANUAL"
        assert item["visit"]["id"] == gid("Visit", w.request_a.visit_id)
        assert [o["personalAssistant"]["name"] for o in item["offers"]] == ["Pat Assistant"]

        # The state sent is re-read at the time of the event. (The visit goes with its
        # request, as with cancelCoverRequest: else a new request would open, migration 0017.)
        await db.execute(
            update(Visit).where(Visit.id == w.request_a.visit_id).values(status="CANCELLED")
        )
        await db.execute(
            update(CoverRequest)
            .where(CoverRequest.id == w.request_a.id)
            .values(status="CANCELLED", closed_at=dt.datetime.now(dt.UTC))
        )
        await emit(db, request_event(w.request_a, [w.cluster_a.id], "REQUEST_CANCELLED"))
        item = await client.next_item("1", "coverRequests", skip={warm})
        assert item["id"] == gid("CoverRequest", w.request_a.id)
        assert item["status"] == "CANCELLED"

        # A coordinator who no longer supports the cluster hears nothing more.
        await db.execute(
            update(Cluster)
            .where(Cluster.id == w.cluster_a.id)
            .values(support_worker_id=w.other_coordinator.id)
        )
        await emit(db, request_event(w.request_a, [w.cluster_a.id]))
        message = await client.recv()
        while message["type"] == "next" and not message["payload"].get("errors"):
            assert message["payload"]["data"]["coverRequests"]["coverRequest"]["id"] == warm
            message = await client.recv()
        assert message["type"] == "next", message
        assert message["payload"]["errors"][0]["extensions"]["code"] == "FORBIDDEN"
        assert (await client.recv()) == {"id": "1", "type": "complete"}


async def test_admin_follows_any_cluster(
    servers: tuple[Server, Server], world: World, db: AsyncSession, api: Api
) -> None:
    a, _ = servers
    w = world
    warm = gid("CoverRequest", w.warm_request.id)
    async with live(a, bearer(api.token(Role.ADMIN))) as client:
        await client.subscribe("admin", REQUESTS, {"cluster": gid("Cluster", w.cluster_b.id)})
        await client.until_live(
            "admin", lambda: emit(db, request_event(w.request_b, [w.cluster_b.id]))
        )
        await emit(db, request_event(w.request_a, [w.cluster_a.id]))
        await emit(db, request_event(w.warm_request, [w.cluster_b.id, w.cluster_a.id]))
        item = await client.next_item(
            "admin", "coverRequests", skip={gid("CoverRequest", w.request_b.id)}
        )
        assert item["id"] == warm


async def test_pa_hears_only_their_own_offers(
    servers: tuple[Server, Server], world: World, db: AsyncSession, api: Api
) -> None:
    a, _ = servers
    w = world
    warm = gid("CoverOffer", w.warm_offer.id)
    # The token may also come as {"token": ...}.
    async with live(a, {"token": api.token(Role.PA, w.pa.id)}) as client:
        await client.subscribe("offers", OFFERS)
        await client.until_live(
            "offers", lambda: emit(db, offer_event(w.warm_offer, w.warm_request, w.pa.id))
        )
        # Another PA's offer; a forged event naming this PA for another PA's offer (the
        # re-read as this PA finds nothing); a request event: none is delivered.
        await emit(db, offer_event(w.other_offer, w.request_b, w.other_pa.id))
        await emit(db, offer_event(w.other_offer, w.request_b, w.pa.id))
        await emit(
            db,
            CoverEvent(
                kind="REQUEST_FILLED",
                cover_request_id=w.request_a.id,
                visit_id=w.request_a.visit_id,
                cluster_ids=[w.cluster_a.id],
                pa_id=w.pa.id,
            ),
        )
        await emit(db, offer_event(w.offer, w.request_a, w.pa.id, "OFFER_WITHDRAWN"))
        item = await client.next_item("offers", "myCoverOffers", skip={warm})
        assert item["id"] == gid("CoverOffer", w.offer.id)
        assert item["status"] == "OPEN"
        assert item["coverRequest"]["id"] == gid("CoverRequest", w.request_a.id)
        assert item["personalAssistant"]["name"] == "Pat Assistant"

        # The event of the acceptance names the accepted offer: the PA hears of it too.
        await db.execute(
            update(CoverOffer)
            .where(CoverOffer.id == w.offer.id)
            .values(status="ACCEPTED", responded_at=dt.datetime.now(dt.UTC))
        )
        await emit(db, offer_event(w.offer, w.request_a, w.pa.id, "REQUEST_FILLED"))
        item = await client.next_item("offers", "myCoverOffers", skip={warm})
        assert item["id"] == gid("CoverOffer", w.offer.id)
        assert item["status"] == "ACCEPTED"


async def test_an_event_raised_in_one_process_reaches_the_other(
    servers: tuple[Server, Server], world: World, db: AsyncSession, api: Api
) -> None:
    """A coordinator listens on process A and asks for cover through process B's API:
    B's transaction publishes the event, A tells its subscriber."""
    a, b = servers
    w = world
    token = api.token(Role.COORDINATOR, w.coordinator.id)
    warm = gid("CoverRequest", w.warm_request.id)
    visit = await Build(db).visit(w.su_a, w.pa, at(days=4))
    await db.commit()
    async with live(a, bearer(token)) as client:
        await client.subscribe("1", REQUESTS, {"cluster": gid("Cluster", w.cluster_a.id)})
        await client.until_live(
            "1", lambda: emit(db, request_event(w.warm_request, [w.cluster_a.id]))
        )
        async with httpx.AsyncClient(base_url=b.http) as http:
            response = await http.post(
                "/graphql",
                json={
                    "query": """mutation($id: ID!) { openCoverRequest(visitId: $id) {
                        coverRequest { id } errors { code message } } }""",
                    "variables": {"id": gid("Visit", visit.id)},
                },
                headers={"Authorization": f"Bearer {token}"},
            )
        assert response.status_code == 200, response.text
        payload = response.json()["data"]["openCoverRequest"]
        assert payload["errors"] == [], payload
        item = await client.next_item("1", "coverRequests", skip={warm})
        assert item["id"] == payload["coverRequest"]["id"]
        assert item["status"] == "OPEN" and item["reason"] == "MANUAL"
        assert item["visit"]["id"] == gid("Visit", visit.id)


async def test_one_commit_reaches_subscribers_of_both_processes(
    servers: tuple[Server, Server], world: World, db: AsyncSession, api: Api
) -> None:
    a, b = servers
    w = world
    token = api.token(Role.COORDINATOR, w.coordinator.id)
    warm = gid("CoverRequest", w.warm_request.id)
    variables = {"cluster": gid("Cluster", w.cluster_a.id)}
    async with live(a, bearer(token)) as on_a, live(b, bearer(token)) as on_b:
        for client in (on_a, on_b):
            await client.subscribe("1", REQUESTS, variables)
            await client.until_live(
                "1", lambda: emit(db, request_event(w.warm_request, [w.cluster_a.id]))
            )
        await emit(db, request_event(w.request_a, [w.cluster_a.id]))
        for client in (on_a, on_b):
            item = await client.next_item("1", "coverRequests", skip={warm})
            assert item["id"] == gid("CoverRequest", w.request_a.id)


async def test_a_subscription_ends_when_its_token_expires(
    servers: tuple[Server, Server], world: World, db: AsyncSession, api: Api
) -> None:
    a, _ = servers
    w = world
    token = api.tokens.issue(
        Role.COORDINATOR, member_id=w.coordinator.id, ttl=dt.timedelta(seconds=2)
    )
    expires = dt.datetime.fromtimestamp(
        jwt.decode(token, options={"verify_signature": False})["exp"], dt.UTC
    )
    warm = gid("CoverRequest", w.warm_request.id)
    async with live(a, bearer(token)) as client:
        await client.subscribe("1", REQUESTS, {"cluster": gid("Cluster", w.cluster_a.id)})
        await client.until_live(
            "1", lambda: emit(db, request_event(w.warm_request, [w.cluster_a.id]))
        )
        wait = (expires - dt.datetime.now(dt.UTC)).total_seconds() + 0.1
        assert wait > 0, "the warm-up took longer than the token lives"
        await asyncio.sleep(wait)
        await emit(db, request_event(w.request_a, [w.cluster_a.id]))
        message = await client.recv()
        while message["type"] == "next" and not message["payload"].get("errors"):
            assert message["payload"]["data"]["coverRequests"]["coverRequest"]["id"] == warm
            message = await client.recv()
        assert message["payload"]["data"] is None
        assert message["payload"]["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
        assert (await client.recv()) == {"id": "1", "type": "complete"}


async def _ends_unauthenticated(client: Live, op: str, skip: set[str]) -> dict[str, Any]:
    """Read past items in `skip` to the error that ends the stream, and its `complete`."""
    message = await client.recv()
    while message["type"] == "next" and not message["payload"].get("errors"):
        field = next(iter(message["payload"]["data"]))
        assert message["payload"]["data"][field][RECORD[field]]["id"] in skip, message
        message = await client.recv()
    assert message["payload"]["data"] is None, message
    error: dict[str, Any] = message["payload"]["errors"][0]
    assert error["extensions"]["code"] == "UNAUTHENTICATED", error
    assert (await client.recv()) == {"id": op, "type": "complete"}
    return error


async def test_a_deactivated_coordinator_hears_nothing_more(
    servers: tuple[Server, Server], world: World, db: AsyncSession, api: Api
) -> None:
    """The next event after deactivation ends the stream (it would carry phone numbers)."""
    a, _ = servers
    w = world
    token = api.token(Role.COORDINATOR, w.coordinator.id)
    warm = gid("CoverRequest", w.warm_request.id)
    async with live(a, bearer(token)) as client:
        await client.subscribe("1", REQUESTS, {"cluster": gid("Cluster", w.cluster_a.id)})
        await client.until_live(
            "1", lambda: emit(db, request_event(w.warm_request, [w.cluster_a.id]))
        )
        await db.execute(update(Member).where(Member.id == w.coordinator.id).values(active=False))
        await emit(db, request_event(w.request_a, [w.cluster_a.id]))
        error = await _ends_unauthenticated(client, "1", {warm})
        assert "revoked" in error["message"]


async def test_a_subscription_ends_when_its_tokens_are_revoked_while_idle(
    servers: tuple[Server, Server], world: World, db: AsyncSession, api: Api
) -> None:
    """No event comes, yet the stream ends within TOKEN_RECHECK_SECONDS of the revocation;
    a new connection with the same token is refused."""
    a, _ = servers
    w = world
    token = api.token(Role.PA, w.pa.id)
    warm = gid("CoverOffer", w.warm_offer.id)
    async with live(a, bearer(token)) as client:
        await client.subscribe("offers", OFFERS)
        await client.until_live(
            "offers", lambda: emit(db, offer_event(w.warm_offer, w.warm_request, w.pa.id))
        )
        assert await revoke_member_tokens(db, w.pa.id)
        await db.commit()
        revoked = time.monotonic()
        await _ends_unauthenticated(client, "offers", {warm})
        assert time.monotonic() - revoked < RECHECK + 2
    async with connect(a.ws, subprotocols=[Subprotocol("graphql-transport-ws")]) as ws:
        await ws.send(json.dumps({"type": "connection_init", "payload": bearer(token)}))
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), WAIT)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4403


# --- who may subscribe ------------------------------------------------------------------


@pytest.mark.parametrize(
    "params",
    [
        {"Authorization": "Bearer not-a-token"},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"token": "not-a-token"},
        {"token": 42},
    ],
)
async def test_a_bad_token_is_refused(
    servers: tuple[Server, Server], params: dict[str, Any]
) -> None:
    a, _ = servers
    async with connect(a.ws, subprotocols=[Subprotocol("graphql-transport-ws")]) as ws:
        await ws.send(json.dumps({"type": "connection_init", "payload": params}))
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), WAIT)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 4403


async def test_an_expired_token_is_refused(
    servers: tuple[Server, Server], world: World, api: Api
) -> None:
    a, _ = servers
    now = int(dt.datetime.now(dt.UTC).timestamp())
    c = world.coordinator.id
    token = signed(
        api.tokens.keys, role="COORDINATOR", member=c, sub=str(c), iat=now - 60, exp=now - 5
    )
    async with connect(a.ws, subprotocols=[Subprotocol("graphql-transport-ws")]) as ws:
        await ws.send(json.dumps({"type": "connection_init", "payload": bearer(token)}))
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), WAIT)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4403


async def test_who_may_subscribe(servers: tuple[Server, Server], world: World, api: Api) -> None:
    a, _ = servers
    w = world
    cluster_a = {"cluster": gid("Cluster", w.cluster_a.id)}
    cluster_b = {"cluster": gid("Cluster", w.cluster_b.id)}
    unknown = {"cluster": gid("Cluster", 999_999)}
    wrong_type = {"cluster": gid("PersonalAssistant", w.pa.id)}
    cases: list[tuple[dict[str, Any] | None, str, dict[str, Any], str]] = [
        (None, REQUESTS, cluster_a, "UNAUTHENTICATED"),
        (None, OFFERS, {}, "UNAUTHENTICATED"),
        (bearer(api.token(Role.PA, w.pa.id)), REQUESTS, cluster_a, "FORBIDDEN"),
        (bearer(api.token(Role.COORDINATOR, w.coordinator.id)), REQUESTS, cluster_b, "FORBIDDEN"),
        (bearer(api.token(Role.COORDINATOR, w.coordinator.id)), REQUESTS, unknown, "FORBIDDEN"),
        (bearer(api.token(Role.COORDINATOR, w.coordinator.id)), REQUESTS, wrong_type, "FORBIDDEN"),
        (bearer(api.token(Role.COORDINATOR, w.coordinator.id)), OFFERS, {}, "FORBIDDEN"),
        (bearer(api.token(Role.SERVICE_USER, w.su_a.id)), REQUESTS, cluster_a, "FORBIDDEN"),
        (bearer(api.tokens.issue(Role.LA_ANALYST, la_code="E09000003")), OFFERS, {}, "FORBIDDEN"),
        # Queries and mutations are for POST /graphql.
        (bearer(api.token(Role.ADMIN)), "{ coop { name } }", {}, "BAD_REQUEST"),
    ]
    for params, query, variables, code in cases:
        async with live(a, params) as client:
            await client.subscribe("x", query, variables)
            error = await client.error("x")
            assert error["extensions"]["code"] == code, (params, query, variables, error)


async def test_too_many_subscriptions_on_one_connection_is_a_coded_error(
    servers: tuple[Server, Server], world: World, api: Api
) -> None:
    """Strawberry refuses the 101st operation of a connection with an error that had no
    code ("Subscription limit reached")."""
    a, _ = servers
    async with live(a, bearer(api.token(Role.PA, world.pa.id))) as client:
        for n in range(100):
            await client.subscribe(str(n), OFFERS)
        await client.subscribe("one too many", OFFERS)
        error = await client.error("one too many")
    assert error["extensions"]["code"] == "TOO_MANY_SUBSCRIPTIONS", error


async def test_subscriptions_are_not_served_over_http(api: Api, world: World) -> None:
    body = await api.query(
        REQUESTS,
        {"cluster": gid("Cluster", world.cluster_a.id)},
        as_=(Role.COORDINATOR, world.coordinator.id),
    )
    assert body["data"] is None
    assert [e["extensions"]["code"] for e in body["errors"]] == ["BAD_REQUEST"], body


# --- the listener ----------------------------------------------------------------------------


async def test_the_listener_reconnects_after_losing_its_connection(
    migrated_url: str, db: AsyncSession
) -> None:
    """Events committed while the hub is re-connecting are not lost: it reads the table
    from the last one it handed out."""
    hub = EventHub(migrated_url, reconnect_min_seconds=0.05, keepalive_seconds=1.0)
    await hub.start()
    try:
        assert hub.listening and hub.backend_pid is not None
        first = hub.backend_pid
        async with hub.subscribe(lambda e: e.subject_id in (2, 3)) as events:
            await db.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": first})
            await db.commit()
            await emit(db, CoverEvent(kind="REQUEST_OPENED", cover_request_id=1, visit_id=6))
            await emit(db, CoverEvent(kind="REQUEST_OPENED", cover_request_id=2, visit_id=7))
            for _ in range(100):
                if hub.listening and hub.backend_pid not in (None, first):
                    break
                await asyncio.sleep(0.05)
            assert hub.listening and hub.backend_pid != first
            assert hub.connects == 2
            await emit(db, CoverEvent(kind="REQUEST_OPENED", cover_request_id=3, visit_id=8))
            got = [await asyncio.wait_for(anext(events), WAIT) for _ in range(2)]
        assert [(e.subject_id, e.kind) for e in got if isinstance(e, StoredEvent)] == [
            (2, "REQUEST_OPENED"),
            (3, "REQUEST_OPENED"),
        ]
        assert hub.subscriber_count == 0
    finally:
        await hub.stop()
    assert not hub.listening


async def test_a_slow_subscriber_is_told_it_lagged_and_blocks_no_one(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A subscriber whose queue is full drops what it holds and reads LAGGED next (the
    subscription then re-reads from the table); the others get every event."""
    hub = EventHub("postgresql://unused/none", queue_size=3)  # never started: no database

    def event(n: int) -> StoredEvent:
        return StoredEvent(n, "COVER_REQUEST", n, "OFFER_MADE", dt.datetime.now(dt.UTC))

    async with hub.subscribe(lambda e: True) as slow, hub.subscribe(lambda e: True) as quick:
        seen: list[int] = []
        with caplog.at_level(logging.INFO, logger="coopnet.events"):
            for n in range(1, 6):
                hub.dispatch(event(n))
                got = await anext(quick)
                assert isinstance(got, StoredEvent)
                seen.append(got.sequence)
            hub.dispatch(event(5))  # already handed out: ignored
            hub._on_notify(None, 0, hub.channel, "not a number")
        assert seen == [1, 2, 3, 4, 5]
        assert isinstance(slow, Subscriber)
        assert slow.dropped == 3 and slow.pending == 2
        assert await anext(slow) is LAGGED
        rest = [await anext(slow) for _ in range(2)]
        assert [e.sequence for e in rest if isinstance(e, StoredEvent)] == [4, 5]
        assert quick.pending == 0
        assert "fell 3 event(s) behind" in caplog.text
        assert "malformed notification" in caplog.text
    with pytest.raises(StopAsyncIteration):
        await anext(slow)


async def test_an_oversized_websocket_message_closes_the_connection(
    servers: tuple[Server, Server], world: World, api: Api
) -> None:
    """A websocket message is bounded like an HTTP body: one larger than MAX_BODY_BYTES
    closes the connection (1009, message too big) before the server parses it; the server
    goes on serving."""
    a, _ = servers
    token = api.token(Role.COORDINATOR, world.coordinator.id)
    async with live(a, bearer(token)) as client:
        padding = "x" * (MAX_BODY + 1)
        await client.ws.send(
            json.dumps({"id": "big", "type": "subscribe", "payload": {"query": padding}})
        )
        with pytest.raises(ConnectionClosed) as closed:
            await client.recv()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
    async with live(a, bearer(token)) as client:  # still serving, and a normal size works
        await client.subscribe("ok", REQUESTS, {"cluster": gid("Cluster", world.cluster_a.id)})


# --- one change, one message ---------------------------------------------------------------


async def _items_until(client: Live, op: str, field: str, marker: str, skip: set[str]) -> list[str]:
    """The ids of the items delivered before the one with id `marker`."""
    seen: list[str] = []
    while True:
        message = await client.recv()
        assert message["id"] == op and message["type"] == "next", message
        assert not message["payload"].get("errors"), message
        item_id = message["payload"]["data"][field][RECORD[field]]["id"]
        if item_id == marker:
            return seen
        if item_id not in skip:
            seen.append(item_id)


@dataclass
class Offered:
    request: CoverRequest  # cluster A, offered to two PAs through the API
    marker: CoverRequest  # cluster A: its event marks the end of what a test looks at
    pas: list[Member]


OFFER_COVER = """mutation($input: OfferCoverInput!) { offerCover(input: $input) {
    offers { id personalAssistant { id } } errors { code message } } }"""


async def _two_candidates(
    db: AsyncSession, w: World
) -> tuple[CoverRequest, CoverRequest, list[Member]]:
    b = Build(db)
    pas = [
        await b.pa(name, cluster=w.cluster_a, skills=["personal-care"])
        for name in ("Sam Second", "Tia Third")
    ]
    fresh = await b.visit(w.su_a, None, at(days=6), status="NEEDS_COVER")
    marker = await b.visit(w.su_a, None, at(days=8), status="NEEDS_COVER")
    for pa in pas:
        await b.window(pa, at(days=6, hours=-1), hours=4)
    request = CoverRequest(visit_id=fresh.id, reason="MANUAL", opened_by_id=w.coordinator.id)
    marker_request = CoverRequest(
        visit_id=marker.id, reason="MANUAL", opened_by_id=w.coordinator.id
    )
    db.add_all([request, marker_request])
    await db.commit()
    return request, marker_request, pas


async def _offer_to_both(
    api: Api, token: str, request: CoverRequest, pas: list[Member]
) -> dict[int, str]:
    body = await api.query(
        OFFER_COVER,
        {
            "input": {
                "coverRequestId": gid("CoverRequest", request.id),
                "paIds": [gid("PersonalAssistant", pa.id) for pa in pas],
            }
        },
        token=token,
    )
    payload = body["data"]["offerCover"]
    assert payload["errors"] == [] and len(payload["offers"]) == 2, body
    by_pa = {o["personalAssistant"]["id"]: o["id"] for o in payload["offers"]}
    return {pa.id: by_pa[gid("PersonalAssistant", pa.id)] for pa in pas}


async def test_two_offers_in_one_change_are_one_message(
    servers: tuple[Server, Server], world: World, db: AsyncSession, api: Api
) -> None:
    """offerCover to two PAs changes one cover request once: one message, not two."""
    a, _ = servers
    w = world
    request, marker, pas = await _two_candidates(db, w)
    token = api.token(Role.COORDINATOR, w.coordinator.id)
    warm = gid("CoverRequest", w.warm_request.id)
    async with live(a, bearer(token)) as client:
        await client.subscribe("1", REQUESTS, {"cluster": gid("Cluster", w.cluster_a.id)})
        await client.until_live(
            "1", lambda: emit(db, request_event(w.warm_request, [w.cluster_a.id]))
        )
        await _offer_to_both(api, token, request, pas)
        await emit(db, request_event(marker, [w.cluster_a.id]))
        seen = await _items_until(
            client, "1", "coverRequests", gid("CoverRequest", marker.id), {warm}
        )
    assert seen == [gid("CoverRequest", request.id)]


async def test_a_fill_is_one_message(
    servers: tuple[Server, Server], world: World, db: AsyncSession, api: Api
) -> None:
    """A PA accepting one of two offers fills the request and closes the other offer: the
    coordinator hears of the request once."""
    a, _ = servers
    w = world
    request, marker, pas = await _two_candidates(db, w)
    token = api.token(Role.COORDINATOR, w.coordinator.id)
    offers = await _offer_to_both(api, token, request, pas)
    warm = gid("CoverRequest", w.warm_request.id)
    async with live(a, bearer(token)) as client:
        await client.subscribe("1", REQUESTS, {"cluster": gid("Cluster", w.cluster_a.id)})
        await client.until_live(
            "1", lambda: emit(db, request_event(w.warm_request, [w.cluster_a.id]))
        )
        body = await api.query(
            """mutation($id: ID!) { acceptCoverOffer(id: $id) {
                offer { status } errors { code message } } }""",
            {"id": offers[pas[0].id]},
            as_=(Role.PA, pas[0].id),
        )
        payload = body["data"]["acceptCoverOffer"]
        assert payload["errors"] == [] and payload["offer"]["status"] == "ACCEPTED", body
        await emit(db, request_event(marker, [w.cluster_a.id]))
        seen = await _items_until(
            client, "1", "coverRequests", gid("CoverRequest", marker.id), {warm}
        )
    assert seen == [gid("CoverRequest", request.id)]


# --- kinds, sequences, resuming ------------------------------------------------------------


async def _resume(
    server: Server, token: str, op: str, query: str, variables: dict[str, Any]
) -> AsyncIterator[Live]:
    async with live(server, bearer(token)) as client:
        await client.subscribe(op, query, variables)
        yield client


resume = asynccontextmanager(_resume)


async def test_a_client_resumes_after_the_last_sequence_it_saw(
    servers: tuple[Server, Server], world: World, db: AsyncSession, api: Api
) -> None:
    """Changes carry their kind and an increasing sequence. Reconnecting with `after`, a
    coordinator gets what they missed, in order, once: not another cluster's, nor one
    about a request they may not see; then live changes, with no duplicate between."""
    a, b = servers
    w = world
    token = api.token(Role.COORDINATOR, w.coordinator.id)
    cluster = gid("Cluster", w.cluster_a.id)
    warm = gid("CoverRequest", w.warm_request.id)
    request_a = gid("CoverRequest", w.request_a.id)
    async with live(a, bearer(token)) as client:
        await client.subscribe("1", REQUESTS, {"cluster": cluster})
        await client.until_live(
            "1", lambda: emit(db, request_event(w.warm_request, [w.cluster_a.id]))
        )
        await emit(db, request_event(w.request_a, [w.cluster_a.id], "OFFER_MADE"))
        seen = await client.next_change("1", "coverRequests", skip={warm})
    assert seen["kind"] == "OFFER_MADE" and seen["coverRequest"]["id"] == request_a
    assert dt.datetime.fromisoformat(seen["occurredAt"]) <= dt.datetime.now(dt.UTC)

    # While away: theirs, another cluster's, one they may not see (another cluster's
    # request naming theirs), and theirs again.
    await emit(db, request_event(w.warm_request, [w.cluster_a.id], "OFFER_DECLINED"))
    await emit(db, request_event(w.request_b, [w.cluster_b.id], "OFFER_MADE"))
    await emit(db, request_event(w.request_b, [w.cluster_a.id], "OFFER_MADE"))
    await emit(db, request_event(w.request_a, [w.cluster_a.id], "OFFER_WITHDRAWN"))

    variables = {"cluster": cluster, "after": seen["sequence"]}
    async with resume(b, token, "2", REQUESTS, variables) as client:  # any process
        missed = [await client.next_change("2", "coverRequests", skip=set()) for _ in range(2)]
        await emit(db, request_event(w.request_a, [w.cluster_a.id], "REQUEST_CANCELLED"))
        after_it = await client.next_change("2", "coverRequests", skip=set())
        # Nothing else came before the next change (no duplicate of the replayed ones).
        await emit(db, request_event(w.warm_request, [w.cluster_a.id], "OFFER_MADE"))
        last = await client.next_change("2", "coverRequests", skip=set())
    changes = [*missed, after_it, last]
    assert [(c["coverRequest"]["id"], c["kind"]) for c in changes] == [
        (warm, "OFFER_DECLINED"),
        (request_a, "OFFER_WITHDRAWN"),
        (request_a, "REQUEST_CANCELLED"),
        (warm, "OFFER_MADE"),
    ]
    sequences = [int(seen["sequence"])] + [int(c["sequence"]) for c in changes]
    assert sequences == sorted(set(sequences))
    # Two events the coordinator may not hear of lie between the first two resumed.
    assert sequences[1] - sequences[0] == 1 and sequences[2] - sequences[1] == 3


async def test_resuming_as_a_pa_or_a_stranger_gives_only_their_own(
    servers: tuple[Server, Server], world: World, db: AsyncSession, api: Api
) -> None:
    a, _ = servers
    w = world
    await emit(db, request_event(w.warm_request, [w.cluster_a.id], "OFFER_MADE"))
    after = str(await latest(db))  # a stored event to resume after
    await emit(db, offer_event(w.other_offer, w.request_b, w.other_pa.id, "OFFER_MADE"))
    await emit(db, offer_event(w.offer, w.request_a, w.pa.id, "OFFER_MADE"))
    await emit(db, request_event(w.request_a, [w.cluster_a.id], "OFFER_MADE"))
    await emit(db, request_event(w.request_b, [w.cluster_b.id], "OFFER_MADE"))

    pa = api.token(Role.PA, w.pa.id)
    async with resume(a, pa, "o", OFFERS, {"after": after}) as client:
        change = await client.next_change("o", "myCoverOffers", skip=set())
        await emit(db, offer_event(w.warm_offer, w.warm_request, w.pa.id, "OFFER_DECLINED"))
        then = await client.next_change("o", "myCoverOffers", skip=set())
    assert (change["kind"], change["coverOffer"]["id"]) == (
        "OFFER_MADE",
        gid("CoverOffer", w.offer.id),
    )
    assert then["coverOffer"]["id"] == gid("CoverOffer", w.warm_offer.id)

    other = api.token(Role.COORDINATOR, w.other_coordinator.id)
    theirs = {"cluster": gid("Cluster", w.cluster_b.id), "after": after}
    async with resume(a, other, "b", REQUESTS, theirs) as client:
        change = await client.next_change("b", "coverRequests", skip=set())
    assert change["coverRequest"]["id"] == gid("CoverRequest", w.request_b.id)
    # Resuming does not open another coordinator's cluster.
    ours = {"cluster": gid("Cluster", w.cluster_a.id), "after": after}
    async with resume(a, other, "a", REQUESTS, ours) as client:
        error = await client.error("a")
    assert error["extensions"]["code"] == "FORBIDDEN"


async def test_an_after_that_is_not_a_sequence_or_no_longer_stored_is_refused(
    servers: tuple[Server, Server], world: World, db: AsyncSession, api: Api
) -> None:
    a, _ = servers
    w = world
    token = api.token(Role.COORDINATOR, w.coordinator.id)
    cluster = gid("Cluster", w.cluster_a.id)
    for bad in ("abc", "0", "-1", "1.5", "99999999999999999999", ""):
        async with resume(a, token, "x", REQUESTS, {"cluster": cluster, "after": bad}) as client:
            error = await client.error("x")
        assert error["extensions"]["code"] == "BAD_USER_INPUT", (bad, error)
    await emit(db, request_event(w.request_a, [w.cluster_a.id], "OFFER_MADE"))
    await emit(db, request_event(w.request_a, [w.cluster_a.id], "OFFER_WITHDRAWN"))
    pruned = await latest(db) - 1
    await db.execute(delete(LiveEvent).where(LiveEvent.sequence <= pruned))  # as pruning does
    await db.commit()
    variables = {"cluster": cluster, "after": str(pruned)}
    async with resume(a, token, "x", REQUESTS, variables) as client:
        error = await client.error("x")
    assert error["extensions"]["code"] == "EVENTS_EXPIRED", error
    async with resume(a, api.token(Role.PA, w.pa.id), "o", OFFERS, {"after": "x"}) as client:
        error = await client.error("o")
    assert error["extensions"]["code"] == "BAD_USER_INPUT", error


async def test_a_revoked_token_ends_a_resumed_stream(
    servers: tuple[Server, Server], world: World, db: AsyncSession, api: Api
) -> None:
    a, _ = servers
    w = world
    token = api.token(Role.PA, w.pa.id)
    await emit(db, offer_event(w.warm_offer, w.warm_request, w.pa.id))
    after = str(await latest(db))
    await emit(db, offer_event(w.offer, w.request_a, w.pa.id))
    async with resume(a, token, "o", OFFERS, {"after": after}) as client:
        change = await client.next_change("o", "myCoverOffers", skip=set())
        assert change["coverOffer"]["id"] == gid("CoverOffer", w.offer.id)
        assert await revoke_member_tokens(db, w.pa.id)
        await db.commit()
        await _ends_unauthenticated(client, "o", set())


async def test_trusted_documents_only_holds_for_subscriptions(
    app_state: Any,
    settings: Settings,
    migrated_url: str,
    tmp_path: Path,
    world: World,
    db: AsyncSession,
    api: Api,
) -> None:
    """With TRUSTED_DOCUMENTS_ONLY, a subscription's text is refused over the websocket
    as over HTTP; a registered one runs by its hash (documentId or Apollo's)."""
    w = world
    server = _start("trusted", settings, migrated_url, tmp_path, TRUSTED_DOCUMENTS_ONLY="true")
    try:
        await asyncio.to_thread(_wait_healthy, server)
        assert await register(settings, write(tmp_path, {sha(OFFERS): OFFERS})) == 0
        async with live(server, bearer(api.token(Role.PA, w.pa.id))) as client:

            async def subscribe(op: str, payload: dict[str, Any]) -> None:
                await client.ws.send(
                    json.dumps({"id": op, "type": "subscribe", "payload": payload})
                )

            await client.subscribe("text", OFFERS)
            assert (await client.error("text"))["extensions"]["code"] == "PERSISTED_QUERY_REQUIRED"
            await subscribe("unknown", {"documentId": f"sha256:{sha('subscription { x }')}"})
            error = await client.error("unknown")
            assert error["extensions"]["code"] == "PERSISTED_QUERY_NOT_FOUND"
            await subscribe(
                "forged", {"query": OFFERS + " ", "documentId": f"sha256:{sha(OFFERS)}"}
            )
            assert (await client.error("forged"))["extensions"]["code"] == "BAD_REQUEST"
            await subscribe("bad", {"documentId": "md5:abc"})
            assert (await client.error("bad"))["extensions"]["code"] == "BAD_REQUEST"
            # Apollo's shape: no text, the hash in extensions.
            apollo = {"persistedQuery": {"version": 1, "sha256Hash": sha(OFFERS)}}
            await subscribe("offers", {"query": "", "extensions": apollo, "variables": {}})
            await client.until_live(
                "offers", lambda: emit(db, offer_event(w.warm_offer, w.warm_request, w.pa.id))
            )
    finally:
        _stop(server)
