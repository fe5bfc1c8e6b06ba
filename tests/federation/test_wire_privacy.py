"""Nothing personal crosses the wire between two instances: every byte they send each
other, in both directions, during a whole partnership is captured and searched.

Each instance's public base URL is a recording TCP proxy in this test process, so every
call one instance makes to the other (manifest reads, the handshake, feed pages, the
outbox's notices) and every answer passes through it. The admins' own calls go to the
instances directly and are not captured. The two co-ops are the federation demo's
(the demo co-op with every pool shared, and the neighbouring co-op): their members'
names, emails, phones, full postcodes and coordinates, visit tasks, absence and cover
notes and service users' needs must not appear in the captured bytes."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from sqlalchemy import select, text, update

from care.demo import DEMO, NEIGHBOUR, load_coop
from care.models import (
    Absence,
    CoverRequest,
    Member,
    PaSkill,
    Pool,
    ServiceUserProfile,
    Visit,
)
from tests.conftest import _in_thread
from tests.federation.conftest import INSTANCE_ENV
from tests.federation.instances import Instance, eventually, free_port, prepare

PAYLOAD = "{ partnership { id status } errors { code message } }"
PROPOSE = (
    "mutation($input: ProposePartnershipInput!) { proposePartnership(input: $input) "
    + PAYLOAD
    + " }"
)
LIST = "{ partnerships { id status } }"
SYNC = (
    "mutation($id: ID!) { syncPartner(input: {partnershipId: $id}) "
    "{ changesApplied errors { code message } } }"
)


def by_id(name: str) -> str:
    return f"mutation($id: ID!) {{ {name}(input: {{partnershipId: $id}}) {PAYLOAD} }}"


class Recorder:
    """A TCP proxy to `target_port` that keeps every byte in both directions."""

    def __init__(self, port: int, target_port: int) -> None:
        self.port = port
        self.target_port = target_port
        self.captured = bytearray()
        self.server: asyncio.Server | None = None

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._client, "127.0.0.1", self.port)

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while chunk := await src.read(65536):
                    self.captured.extend(chunk)
                    dst.write(chunk)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))


@pytest.fixture(scope="module")
def recorded_pair(
    migrated_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Instance, Instance, dict[str, int]]]:
    """Two instances whose PUBLIC_BASE_URL is a proxy port (started by the test)."""
    tmp = tmp_path_factory.mktemp("wire")
    proxies = {"wa": free_port(), "wb": free_port()}
    instances: list[Instance] = []

    def prepare_both() -> None:
        for name in ("wa", "wb"):
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
async def recording(a: Instance, b: Instance, proxies: dict[str, int]) -> AsyncIterator[Recorder]:
    """One recorder for both directions (two proxies sharing one buffer)."""
    to_a = Recorder(proxies["wa"], a.port)
    to_b = Recorder(proxies["wb"], b.port)
    to_b.captured = to_a.captured  # one buffer
    await to_a.start()
    await to_b.start()
    try:
        yield to_a
    finally:
        await to_a.stop()
        await to_b.stop()


async def secrets_of(instance: Instance) -> set[str]:
    """Every personal value in the instance's database that must stay there."""
    found: set[str] = set()
    async with instance.session() as s:
        for name, email, phone, postcode, lat, lon in (
            await s.execute(
                select(
                    Member.name,
                    Member.email,
                    Member.phone,
                    Member.postcode,
                    Member.latitude,
                    Member.longitude,
                )
            )
        ).all():
            found |= {v for v in (name, email, phone, postcode) if v}
            if lat is not None:
                found |= {f"{lat:.5f}", f"{lon:.5f}"}
        # A person's needs, except words that are also skill names (a shared PA's skills
        # are sent, and the demo names needs and skills alike: "dementia").
        skills = set((await s.scalars(select(PaSkill.skill))).all())
        for needs in (await s.scalars(select(ServiceUserProfile.needs))).all():
            found |= {n for n in needs or () if n not in skills}
        for tasks in (await s.scalars(select(Visit.tasks))).all():
            found |= {t for t in tasks or () if len(t) > 6}
        found |= {n for n in (await s.scalars(select(Absence.note))).all() if n}
        found |= {n for n in (await s.scalars(select(CoverRequest.note))).all() if n}
    # Short values (a two-letter note) could turn up by chance inside base64 or digits.
    return {v for v in found if len(v) >= 6}


async def admin(instance: Instance, query: str, variables: dict[str, Any]) -> dict[str, Any]:
    data = await instance.data(query, variables, token=instance.token("ADMIN"))
    return data


async def test_no_personal_data_crosses_the_wire(
    recorded_pair: tuple[Instance, Instance, dict[str, int]],
) -> None:
    a, b, proxies = recorded_pair
    public_b = f"http://127.0.0.1:{proxies['wb']}"
    for instance, which in ((a, DEMO), (b, NEIGHBOUR)):
        async with instance.session() as s:
            assert await load_coop(s, which)
            # Everything shared that can be: the most a partner could ever be sent.
            await s.execute(update(Pool).values(shared_with_partners=True))
            await s.commit()
    secrets = await secrets_of(a) | await secrets_of(b)
    assert len(secrets) > 100  # the search has something to find

    async with recording(a, b, proxies) as recorder:
        proposed = await admin(
            a,
            PROPOSE,
            {"input": {"baseUrl": public_b, "scopes": ["AVAILABILITY", "COVER", "MARKET_DATA"]}},
        )
        assert proposed["proposePartnership"]["errors"] == [], proposed
        a_id = proposed["proposePartnership"]["partnership"]["id"]

        async def incoming() -> str | None:
            rows = (await admin(b, LIST, {}))["partnerships"]
            return rows[0]["id"] if rows else None

        b_id = await eventually(incoming, "B hears of the proposal")
        accepted = await admin(b, by_id("acceptPartnership"), {"id": b_id})
        assert accepted["acceptPartnership"]["errors"] == [], accepted
        for instance, pid in ((a, a_id), (b, b_id)):
            synced = await admin(instance, SYNC, {"id": pid})
            assert synced["syncPartner"]["errors"] == [], synced
            assert synced["syncPartner"]["changesApplied"] > 50
        for step in ("suspendPartnership", "resumePartnership", "endPartnership"):
            done = await admin(a, by_id(step), {"id": a_id})
            assert done[step]["errors"] == [], done

        async def ended() -> bool:
            return (await admin(b, LIST, {}))["partnerships"][0]["status"] == "ENDED"

        await eventually(ended, "B hears of the end through A's outbox")
        captured = bytes(recorder.captured)

    # The capture is real: it holds the feed pages and the handshake.
    assert b"peerAvailabilityFeed" in captured and b"peerProposePartnership" in captured
    assert b"peerChangePartnership" in captured and b"/.well-known/coopnet" in captured
    leaked = sorted(s for s in secrets if s.encode() in captured)
    assert leaked == [], leaked[:20]
    # No member id in the clear either: every ref sent is a 22-character pseudonym.
    for ref in re.findall(rb'"(?:ref|paRef)":"([^"]*)"', captured):
        assert len(ref) == 22
    async with a.session() as s:
        assert (await s.execute(text("SELECT count(*) FROM partner_window"))).scalar() == 0
