"""Cross-boundary cover between two real instances: the exchange's messages survive a
partner that is down and a sender that dies, and nothing personal travels before the
requesting co-op confirms (docs/federation.md, section 12; the contract in issue 8).

A is the requesting co-op (its person's visit needs cover), B the providing co-op (its
PA covers). Both are uvicorn processes with their own databases, talking signed HTTP.

So that a test decides *when* a side's outbox delivers, the instances of the delivery
tests run their web server with `OUTBOX_WORKER=false` and their outbox worker as a
separate `coopnet worker` process (the deployment docs/federation.md section 11
describes: any number of workers, in or out of the server). Stopping the worker keeps a
message in its sender's outbox without touching the message or the peer; stopping the
server makes the instance unreachable to its partner.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import re
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import orjson
import pytest
from sqlalchemy import select, text

from care.enums import PartnershipDirection, PartnershipStatus
from care.models import (
    CoverExchange,
    CoverExchangeEvent,
    CoverRequest,
    Partnership,
    Pool,
    PoolPa,
    Visit,
)
from federation.feed import pseudonym
from federation.identity import load_or_create_identity
from federation.outbox import undelivered
from tests.conftest import _in_thread
from tests.factories import Build, gid
from tests.federation.conftest import INSTANCE_ENV, start_instances
from tests.federation.instances import (
    LOOPBACK,
    ROOT,
    Instance,
    eventually,
    free_port,
    prepare,
)

SCOPES = ("AVAILABILITY", "COVER")
# Names no other text in the test (base64 signatures, uuids, dates) could contain.
PERSON = "Wilhelmina Quartermaine"
PERSON_EMAIL = "wq.person@example.org"
PA = "Bartholomew Fennimore"
SUMMARY = "Likes her tea with honey; the key safe code is in the blue folder."
NEEDS = ["personal-care", "hoist"]

EXCHANGE = """
  id ref side status district skills paRef paFirstName personFirstName personAddress
  careSummary cancelledBy
"""
PAYLOAD = f"exchange {{ {EXCHANGE} }} errors {{ field message code }}"
REQUEST = (
    "mutation($input: RequestPartnerCoverInput!) { requestPartnerCover(input: $input) { "
    + PAYLOAD
    + " } }"
)
ACCEPT = "mutation($id: ID!) { acceptPartnerCover(id: $id) { " + PAYLOAD + " } }"
CANCEL = (
    "mutation($id: ID!, $reason: String) { cancelPartnerCover(id: $id, reason: $reason) { "
    + PAYLOAD
    + " } }"
)
LIST = (
    "query($side: ExchangeSide) { coverExchanges(filter: {side: $side}, first: 10) { "
    "totalCount edges { node { " + EXCHANGE + " } } } }"
)


# --- arranging the two co-ops -----------------------------------------------------------


@dataclass
class Story:
    """One visit on A that needs cover, and B's PA who is free for it."""

    visit_id: int
    cover_request_id: int
    person_id: int
    postcode: str
    pa_id: int  # on B
    pa_ref: str  # B's pseudonym for its PA, as A knows it from B's feed
    a_partnership: int  # A's row for B
    b_partnership: int  # B's row for A
    starts_at: dt.datetime
    ends_at: dt.datetime


async def partnership_row(host: Instance, guest_base: str, guest_keys: list[dict[str, str]]) -> int:
    """An ACTIVE partnership on `host` granting COVER, for a guest reached at `guest_base`
    (its own address, or a proxy's when the test records the wire)."""
    async with host.session() as session:
        row = Partnership(
            base_url=guest_base,
            graphql_endpoint=f"{guest_base}/graphql",
            proposal_ref=uuid.uuid4(),
            direction=PartnershipDirection.OUTGOING.value,
            status=PartnershipStatus.ACTIVE.value,
            requested_scopes=list(SCOPES),
            granted_scopes=list(SCOPES),
            protocol_version="coopnet-federation/1",
            coop_name="Partner Co-op",
            keys=guest_keys,
        )
        session.add(row)
        await session.commit()
        return row.id


def keys_of(instance: Instance) -> list[dict[str, str]]:
    return load_or_create_identity(instance.settings.federation_key_dir, None, []).jwks()


async def arrange(
    a: Instance, b: Instance, *, a_base: str | None = None, b_base: str | None = None
) -> Story:
    """A: a person in N12 whose visit the day after tomorrow needs cover (an OPEN
    request). B: a PA with the skills, in a pool shared with partners, free then."""
    start = (dt.datetime.now(dt.UTC) + dt.timedelta(days=2)).replace(
        hour=10, minute=0, second=0, microsecond=0
    )
    end = start + dt.timedelta(hours=1)
    async with a.session() as s:
        build = Build(s)
        await build.las()
        await build.coop()
        cluster = await build.cluster()
        person = await build.service_user(PERSON, needs=NEEDS, cluster=cluster, email=PERSON_EMAIL)
        sick = await build.pa("Ottoline Pemberton", cluster=cluster)
        visit = await build.visit(
            person, None, start, minutes=60, status="NEEDS_COVER", tasks=["help getting up"]
        )
        request = CoverRequest(visit_id=visit.id, reason="ABSENCE", original_pa_id=sick.id)
        s.add(request)
        await s.commit()
        story_a = (visit.id, request.id, person.id, person.postcode or "")
    async with b.session() as s:
        build = Build(s)
        await build.las()
        await build.coop()
        cluster = await build.cluster("Wood Green")
        pa = await build.pa(PA, cluster=cluster, skills=NEEDS)
        pool = Pool(name="Shared with partners", shared_with_partners=True)
        s.add(pool)
        await s.flush()
        s.add(PoolPa(pool_id=pool.id, pa_id=pa.id))
        await build.window(pa, start - dt.timedelta(hours=2), hours=6)
        await s.commit()
        pa_id = pa.id
    a_pid = await partnership_row(a, b_base or b.base_url, keys_of(b))
    b_pid = await partnership_row(b, a_base or a.base_url, keys_of(a))
    async with b.session() as s:
        key = await s.scalar(select(Partnership.pseudonym_key).where(Partnership.id == b_pid))
    assert key is not None
    return Story(
        visit_id=story_a[0],
        cover_request_id=story_a[1],
        person_id=story_a[2],
        postcode=story_a[3],
        pa_id=pa_id,
        pa_ref=pseudonym(key, "pa", pa_id),
        a_partnership=a_pid,
        b_partnership=b_pid,
        starts_at=start,
        ends_at=end,
    )


# --- acting and looking -------------------------------------------------------------------


async def call(instance: Instance, query: str, variables: dict[str, Any], token: str) -> Any:
    """A mutation's payload; asserts it had no errors."""
    data = await instance.data(query, variables, token=token)
    [payload] = data.values()
    assert payload["errors"] == [], payload
    return payload["exchange"]


async def request_cover(a: Instance, story: Story) -> dict[str, Any]:
    exchange: dict[str, Any] = await call(
        a,
        REQUEST,
        {
            "input": {
                "coverRequestId": gid("CoverRequest", story.cover_request_id),
                "partnershipId": gid("Partnership", story.a_partnership),
                "paRef": story.pa_ref,
                "careSummary": SUMMARY,
            }
        },
        a.token("ADMIN"),
    )
    assert exchange["status"] == "HELD", exchange
    return exchange


async def providing_id(b: Instance) -> str:
    async with b.session() as s:
        pk = await s.scalar(select(CoverExchange.id).where(CoverExchange.side == "PROVIDING"))
    assert pk is not None
    return gid("CoverExchange", pk)


async def accept(b: Instance, story: Story) -> dict[str, Any]:
    exchange: dict[str, Any] = await call(
        b, ACCEPT, {"id": await providing_id(b)}, b.token("PA", story.pa_id)
    )
    assert exchange["status"] == "ACCEPTED", exchange
    return exchange


async def row(instance: Instance) -> CoverExchange | None:
    """The instance's one exchange row (each test makes one exchange)."""
    async with instance.session() as s:
        rows = list(await s.scalars(select(CoverExchange)))
    assert len(rows) <= 1, rows
    return rows[0] if rows else None


def status_is(instance: Instance, status: str) -> Any:
    async def check() -> CoverExchange | None:
        found = await row(instance)
        return found if found is not None and found.status == status else None

    return check


async def events(instance: Instance) -> list[tuple[str, str]]:
    async with instance.session() as s:
        return [
            (e.status, e.by_side)
            for e in await s.scalars(select(CoverExchangeEvent).order_by(CoverExchangeEvent.id))
        ]


async def holds(b: Instance) -> int:
    """HOLD commitments of B's PAs (written by the exchange's trigger)."""
    async with b.session() as s:
        return int(
            await s.scalar(text("SELECT count(*) FROM pa_commitment WHERE kind = 'HOLD'")) or 0
        )


async def waiting(instance: Instance, operation: str = "peerCoverUpdate") -> list[Any]:
    async with instance.session() as s:
        return [m for m in await undelivered(s) if m.operation == operation]


# --- the instances, with their outbox workers apart -------------------------------------


class Worker:
    """`coopnet worker` for an instance: its outbox, delivered from a process of its own."""

    def __init__(self, instance: Instance) -> None:
        self.instance = instance
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        i = self.instance
        env = {
            **os.environ,
            "DATABASE_URL": i.database_url,
            "DATA_DIR": str(i.data_dir),
            "PUBLIC_BASE_URL": i.env.get("PUBLIC_BASE_URL", i.base_url),
            "PORT": str(i.port),
            "FEDERATION_PRIVATE_NETWORKS": LOOPBACK,  # its partners share this machine
            **{k: v for k, v in i.env.items() if k != "OUTBOX_WORKER"},
        }
        with (i.data_dir / "worker.log").open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "api.cli", "worker"],
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=out,
            )

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process = None


APART = {**INSTANCE_ENV, "OUTBOX_WORKER": "false", "EXCHANGE_SWEEP_SECONDS": "0"}


@pytest.fixture(scope="module")
def exchange_pair(
    migrated_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Instance, Instance]]:
    tmp = tmp_path_factory.mktemp("exchange")
    a, b = start_instances(migrated_url, ("xa", "xb"), tmp, APART)
    try:
        yield a, b
    finally:
        a.stop()
        b.stop()


@pytest.fixture
async def pair(
    exchange_pair: tuple[Instance, Instance],
) -> AsyncIterator[tuple[Instance, Instance, Worker, Worker]]:
    a, b = exchange_pair
    workers = Worker(a), Worker(b)
    try:
        yield a, b, *workers
    finally:
        for worker in workers:
            worker.stop()
        for instance in (a, b):
            if instance.process is None:
                instance.start()
            await instance.reset()
            await instance.dispose()


# --- (a) the partner down when the requesting side confirms -----------------------------


async def test_a_confirmation_waits_for_a_partner_that_is_down(
    pair: tuple[Instance, Instance, Worker, Worker],
) -> None:
    """B's PA accepts; B's web server then stops, and only after that does B's outbox
    (its worker) tell A. A confirms at once and queues CONFIRMED with the person's
    details, which cannot reach B: it waits in A's outbox, retried, until B is back.
    Then both sides hold the booking with the other side's details, each applied once."""
    a, b, a_worker, b_worker = pair
    story = await arrange(a, b)
    a_worker.start()
    await request_cover(a, story)  # synchronous: A calls B
    on_b = await row(b)
    assert on_b is not None and (on_b.side, on_b.status) == ("PROVIDING", "HELD")
    assert await holds(b) == 1

    await accept(b, story)  # committed on B with its message; B's worker is not running
    assert await waiting(b)
    b.stop()  # B is down from here on
    b_worker.start()  # ... but its outbox gets the acceptance out
    confirmed = await eventually(status_is(a, "CONFIRMED"), "A confirms on the acceptance")
    assert confirmed.pa_first_name is None  # B has not answered yet
    async with a.session() as s:
        visit = await s.get(Visit, story.visit_id)
        request = await s.get(CoverRequest, story.cover_request_id)
        assert visit is not None and request is not None
        assert (visit.status, visit.pa_id) == ("SCHEDULED", None)
        assert (request.status, request.filled_by_partner) == ("FILLED", True)

    async def retried() -> list[Any] | None:
        messages = await waiting(a)
        return messages if messages and messages[0].attempts >= 1 else None

    [message] = await eventually(retried, "A's CONFIRMED is retried, not dropped")
    assert message.status in ("queued", "picked")
    async with a.session() as s:
        error = await s.scalar(select(Partnership.last_error))
    assert error is not None and error.startswith("UNREACHABLE"), error
    held = await row(b)
    assert held is not None and held.status == "ACCEPTED"
    assert held.person_first_name is None and held.care_summary is None

    b.start()
    on_b = await eventually(status_is(b, "CONFIRMED"), "B applies the confirmation")
    assert on_b.person_first_name == PERSON.split()[0]
    assert on_b.person_address and story.postcode in on_b.person_address
    assert on_b.care_summary == SUMMARY
    assert await holds(b) == 1  # the hold is now the booking

    async def pa_named() -> CoverExchange | None:
        found = await row(a)
        return found if found is not None and found.pa_first_name else None

    on_a = await eventually(pa_named, "A learns the PA's first name from B's answer")
    assert on_a.pa_first_name == PA.split()[0]
    await eventually(lambda: _none_waiting(a), "A's outbox is empty")
    await eventually(lambda: _none_waiting(b), "B's outbox is empty")
    # Each message applied once: one acceptance and one confirmation on each side.
    on_a_events, on_b_events = await events(a), await events(b)
    assert [e for e in on_a_events if e[0] == "ACCEPTED"] == [("ACCEPTED", "PARTNER")]
    # A's: its own confirmation (automatic), then the partner's answer with the name.
    assert sorted(e[1] for e in on_a_events if e[0] == "CONFIRMED") == ["PARTNER", "SYSTEM"]
    assert [e for e in on_b_events if e[0] == "CONFIRMED"] == [("CONFIRMED", "PARTNER")]

    # The GraphQL view of both sides shows the booking with the details.
    for instance, side in ((a, "REQUESTING"), (b, "PROVIDING")):
        listed = (await instance.data(LIST, {"side": side}, token=instance.token("ADMIN")))[
            "coverExchanges"
        ]
        [node] = [e["node"] for e in listed["edges"]]
        assert node["status"] == "CONFIRMED"
        assert node["paFirstName"] == PA.split()[0]
        assert node["personFirstName"] == PERSON.split()[0]
        assert node["careSummary"] == SUMMARY


async def _none_waiting(instance: Instance) -> bool:
    async with instance.session() as s:
        return await undelivered(s) == []


# --- (b) the sender killed right after committing ---------------------------------------


async def test_a_cancellation_outlives_a_sender_killed_after_committing(
    pair: tuple[Instance, Instance, Worker, Worker],
) -> None:
    """A confirmed booking; B cancels it (its PA cannot come) and B's server is killed
    with SIGKILL as soon as the cancellation is committed, before any worker could
    deliver it. Restarted, B delivers it: A gets the visit back NEEDS_COVER with a new
    OPEN request (PARTNER_CANCELLED), once."""
    a, b, a_worker, b_worker = pair
    story = await arrange(a, b)
    a_worker.start()
    b_worker.start()
    await request_cover(a, story)
    await accept(b, story)
    await eventually(status_is(b, "CONFIRMED"), "the booking is confirmed on B")

    async def pa_named() -> CoverExchange | None:
        found = await row(a)
        return found if found is not None and found.pa_first_name else None

    await eventually(pa_named, "... and on A")
    await eventually(lambda: _none_waiting(b), "B's outbox is empty")
    b_worker.stop()  # from here, only a restarted B delivers

    cancelled = await call(
        b,
        CANCEL,
        {"id": await providing_id(b), "reason": "The PA is unwell."},
        b.token("ADMIN"),
    )
    b.kill()  # SIGKILL, right after the commit
    assert cancelled["status"] == "CANCELLED"
    on_b = await row(b)
    assert on_b is not None and (on_b.status, on_b.cancelled_by) == ("CANCELLED", "US")
    assert await holds(b) == 0  # the PA's time is released with the cancellation
    [message] = await waiting(b)  # committed with the change, not yet delivered
    assert message.attempts == 0
    await asyncio.sleep(1.0)
    on_a = await row(a)
    assert on_a is not None and on_a.status == "CONFIRMED"  # A has heard nothing

    b.start()
    b_worker.start()
    on_a = await eventually(status_is(a, "CANCELLED"), "A hears of the cancellation")
    assert on_a.cancelled_by == "PARTNER"
    await eventually(lambda: _none_waiting(b), "B's outbox is empty")
    async with a.session() as s:
        visit = await s.get(Visit, story.visit_id)
        assert visit is not None and visit.status == "NEEDS_COVER"
        requests = list(
            (
                await s.execute(
                    select(CoverRequest.status, CoverRequest.reason)
                    .where(CoverRequest.visit_id == story.visit_id)
                    .order_by(CoverRequest.id)
                )
            ).all()
        )
    assert [tuple(r) for r in requests] == [("FILLED", "ABSENCE"), ("OPEN", await reopened_as(a))]
    assert [e for e in await events(a) if e[0] == "CANCELLED"] == [("CANCELLED", "PARTNER")]


async def reopened_as(a: Instance) -> str:
    """The reason a request reopened by a partner's cancellation has: PARTNER_CANCELLED
    (17 characters), or MANUAL while `cover_request.reason` is still 16 characters wide
    (migration 0014; the exchange then reopens it as MANUAL, naming the partner in its
    note)."""
    async with a.session() as s:
        width = await s.scalar(
            text(
                "SELECT character_maximum_length FROM information_schema.columns "
                "WHERE table_name = 'cover_request' AND column_name = 'reason'"
            )
        )
    return "PARTNER_CANCELLED" if width is None or width >= 17 else "MANUAL"


# --- (c) nothing personal before the confirmation ---------------------------------------


class Recorder:
    """A TCP proxy to `target_port`: every chunk in either direction, in arrival order,
    tagged with the connection and the direction (to the target or back)."""

    def __init__(self, name: str, port: int, target_port: int, log: list[Chunk]) -> None:
        self.name = name
        self.port = port
        self.target_port = target_port
        self.log = log
        self.server: asyncio.Server | None = None
        self.connections = 0

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._client, "127.0.0.1", self.port)

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        conn = f"{self.name}#{self.connections}"
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return

        async def pipe(
            src: asyncio.StreamReader, dst: asyncio.StreamWriter, direction: str
        ) -> None:
            try:
                while data := await src.read(65536):
                    self.log.append(Chunk(conn, direction, data))
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                dst.close()

        await asyncio.gather(
            pipe(reader, up_writer, f"to {self.name}"), pipe(up_reader, writer, "back")
        )


@dataclass
class Chunk:
    connection: str
    direction: str
    data: bytes


@pytest.fixture(scope="module")
def recorded_pair(
    migrated_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Instance, Instance, dict[str, int]]]:
    """Two instances whose public base URL is a proxy port (the test runs the proxies):
    every call between them, and every answer, goes through a recorder."""
    tmp = tmp_path_factory.mktemp("exchange-wire")
    proxies = {"ra": free_port(), "rb": free_port()}
    instances: list[Instance] = []

    def prepare_both() -> None:
        for name in ("ra", "rb"):
            env = {**INSTANCE_ENV, "PUBLIC_BASE_URL": f"http://127.0.0.1:{proxies[name]}"}
            instances.append(prepare(migrated_url, name, tmp, env))

    _in_thread(prepare_both)
    for instance in instances:
        instance.start()
    try:
        yield instances[0], instances[1], proxies
    finally:
        for instance in instances:
            instance.stop()


@asynccontextmanager
async def recording(
    a: Instance, b: Instance, proxies: dict[str, int]
) -> AsyncIterator[list[Chunk]]:
    log: list[Chunk] = []
    recorders = [
        Recorder("A", proxies["ra"], a.port, log),
        Recorder("B", proxies["rb"], b.port, log),
    ]
    for recorder in recorders:
        await recorder.start()
    try:
        yield log
    finally:
        for recorder in recorders:
            await recorder.stop()


def body_of(log: list[Chunk], marker: bytes) -> dict[str, Any]:
    """The JSON body of the first request whose bytes contain `marker`."""
    for chunk in log:
        if marker in chunk.data and chunk.direction.startswith("to "):
            stream = b"".join(
                c.data
                for c in log
                if c.connection == chunk.connection and c.direction == chunk.direction
            )
            head, _, rest = stream.partition(b"\r\n\r\n")
            length = int(re.search(rb"(?i)content-length:\s*(\d+)", head).group(1))  # type: ignore[union-attr]
            body: dict[str, Any] = orjson.loads(rest[:length])
            return body
    raise AssertionError(f"no request with {marker!r}")


async def test_nothing_personal_travels_before_the_confirmation(
    recorded_pair: tuple[Instance, Instance, dict[str, int]],
) -> None:
    """Every byte between A and B, both ways, from the request for cover up to (not
    including) A's confirmation, is searched for the person's name, postcode, e-mail and
    phone, the care summary and the PA's name: none may be there. The request does carry
    the time, the postcode district and the needed skills. After the confirmation the
    first names, the address and the summary do travel: the search finds what it looks
    for."""
    a, b, proxies = recorded_pair
    try:
        story = await arrange(
            a,
            b,
            a_base=f"http://127.0.0.1:{proxies['ra']}",
            b_base=f"http://127.0.0.1:{proxies['rb']}",
        )
        async with recording(a, b, proxies) as log:
            await request_cover(a, story)
            await accept(b, story)

            async def pa_named() -> CoverExchange | None:
                found = await row(a)
                return found if found is not None and found.pa_first_name else None

            await eventually(pa_named, "the booking is confirmed on both sides")
            on_b = await row(b)
            assert on_b is not None and on_b.status == "CONFIRMED"
        # The confirmation is the first message to B that says CONFIRMED.
        split = next(
            i
            for i, c in enumerate(log)
            if c.direction == "to B" and b"CONFIRMED" in c.data and b"peerCoverUpdate" in c.data
        )
        before = b"".join(c.data for c in log[:split])
        after = b"".join(c.data for c in log[split:])
        assert b"peerRequestCover" in before and b"peerCoverUpdate" in before  # the acceptance

        first, surname = PERSON.split()
        pa_first, pa_surname = PA.split()
        secrets = [
            PERSON,
            first,
            surname,
            PERSON_EMAIL,
            story.postcode,
            "07700 900001",  # the person's phone (tests/factories.py)
            SUMMARY,
            "key safe",
            PA,
            pa_first,
            pa_surname,
            "help getting up",  # the visit's tasks
        ]
        leaked = [s for s in secrets if s.encode() in before]
        assert leaked == [], leaked

        # What the request does carry: when, where (district only), which skills.
        request = body_of(log, b"peerRequestCover")
        sent = request["variables"]["request"]
        assert sent["paRef"] == story.pa_ref
        assert sent["district"] == story.postcode.split()[0]
        assert sorted(sent["skills"]) == sorted(NEEDS)
        assert dt.datetime.fromisoformat(sent["startsAt"]) == story.starts_at
        assert dt.datetime.fromisoformat(sent["endsAt"]) == story.ends_at
        assert set(sent) <= {"ref", "paRef", "startsAt", "endsAt", "district", "skills"}

        # After the confirmation: the person's first name, address and the summary to B,
        # the PA's first name to A. Not the surnames.
        assert on_b.person_address is not None
        for expected in (first, on_b.person_address, SUMMARY, pa_first):
            assert expected.encode() in after, expected
        for never in (surname, pa_surname, PERSON_EMAIL):
            assert never.encode() not in after, never
    finally:
        for instance in (a, b):
            await instance.reset()
            await instance.dispose()
