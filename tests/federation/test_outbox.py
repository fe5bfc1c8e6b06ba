"""The outbox, with real instances: a message queued in a transaction is delivered to the
partner after commit (never after a rollback), survives the partner being down and the
sender dying, and is kept as dead after its last attempt until an admin retries it
(federation/outbox.py).

A delivery is observed on the receiving instance: the door notes `last_contact_at` on
its partnership with the sender for every admitted call."""

from __future__ import annotations

import asyncio
import datetime as dt
import socket
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from sqlalchemy import select, text

from care.models import Partnership
from federation.outbox import retry_dead, send_later, undelivered
from tests.federation.conftest import start_instances
from tests.federation.instances import Instance, eventually
from tests.federation.test_door import partner_on

QUERY = "{ peerPartnership { status } }"
# Eight attempts take about 15 s (delays 0.2, 0.4, 0.8, 1.6, then 3 s): longer than an
# instance takes to start again (5-8 s of imports alone on a loaded 2-core machine), so a
# partner that comes back is reached before the message is given up as dead.
ENV = {
    "OUTBOX_FIRST_DELAY_SECONDS": "0.2",
    "OUTBOX_MAX_DELAY_SECONDS": "3",
    "OUTBOX_MAX_ATTEMPTS": "8",
    "OUTBOX_POLL_SECONDS": "0.5",
    "OUTBOX_HEARTBEAT_SECONDS": "2",
}


@pytest.fixture(scope="module")
def pair(
    migrated_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Instance, Instance]]:
    tmp = tmp_path_factory.mktemp("outbox")
    a, b = start_instances(migrated_url, ("oa", "ob"), tmp, ENV)
    try:
        yield a, b
    finally:
        a.stop()
        b.stop()


@pytest.fixture
async def partners(pair: tuple[Instance, Instance]) -> AsyncIterator[tuple[Instance, Instance]]:
    a, b = pair
    for instance in pair:
        if instance.process is None:
            instance.start()
    await partner_on(a, b)
    await partner_on(b, a)
    yield a, b
    for instance in pair:
        if instance.process is None:
            instance.start()
        await instance.reset()
        await instance.dispose()


async def queue(sender: Instance, *, commit: bool = True) -> int:
    async with sender.session() as session:
        pid = await session.scalar(select(Partnership.id))
        assert pid is not None
        job = await send_later(session, pid, "peerPartnership", QUERY, {})
        if commit:
            await session.commit()
        else:
            await session.rollback()
        return job


async def contact(instance: Instance) -> dt.datetime | None:
    async with instance.session() as session:
        return await session.scalar(select(Partnership.last_contact_at))


async def last_error(instance: Instance) -> str | None:
    async with instance.session() as session:
        return await session.scalar(select(Partnership.last_error))


async def pending(instance: Instance) -> list[Any]:
    async with instance.session() as session:
        return list(
            (await session.execute(text("SELECT id, status::text, attempts FROM pgqueuer"))).all()
        )


async def test_a_message_is_delivered_after_commit_never_after_rollback(
    partners: tuple[Instance, Instance],
) -> None:
    a, b = partners
    await queue(a, commit=False)
    assert await pending(a) == []  # rolled back with its transaction
    await queue(a)
    await eventually(lambda: contact(b), "B hears from A")
    await eventually(lambda: _empty(a), "the delivered message leaves the queue")
    assert await contact(a) is not None  # A noted the successful call
    assert await last_error(a) is None


async def _empty(instance: Instance) -> bool:
    return await pending(instance) == []


async def test_a_partner_down_gets_the_message_when_it_comes_back(
    partners: tuple[Instance, Instance],
) -> None:
    a, b = partners
    b.stop()
    await queue(a)
    error = await eventually(lambda: last_error(a), "A records the failure")
    assert error.startswith("UNREACHABLE")
    rows = await eventually(lambda: _retried(a), "the message is retried, not dropped", seconds=10)
    assert rows[0][1] in ("queued", "picked")
    b.start()
    # A's next attempt comes after its backoff, and on a loaded machine after B's start:
    # a generous bound, still failing if the message never arrives.
    await eventually(lambda: contact(b), "B hears from A once it is back", seconds=45)
    await eventually(lambda: _empty(a), "the message leaves the queue")
    assert await last_error(a) is None


async def _retried(instance: Instance) -> list[Any] | None:
    rows = await pending(instance)
    return rows if rows and rows[0][2] >= 1 else None


async def test_a_committed_message_outlives_its_sender(partners: tuple[Instance, Instance]) -> None:
    """The sender dies right after committing (before any worker delivered): the message
    is in its database, and is delivered when the instance runs again."""
    a, b = partners
    a.kill()
    await queue(a)  # committed to A's database, as A's own code would
    await asyncio.sleep(0.5)
    assert await contact(b) is None
    a.start()
    await eventually(lambda: contact(b), "B hears from A after A restarts")
    await eventually(lambda: _empty(a), "the message leaves the queue")


async def test_a_delivery_cut_off_by_a_killed_worker_is_taken_over(
    partners: tuple[Instance, Instance],
) -> None:
    """A worker killed while its call hangs: after the heartbeat timeout the message is
    picked up again by the next worker and delivered."""
    a, b = partners
    with _silent_listener() as silent:
        async with a.session() as session:
            await session.execute(
                text("UPDATE partnership SET graphql_endpoint = :e"), {"e": silent}
            )
            await session.commit()
        await queue(a)
        await eventually(lambda: _picked(a), "a worker picks the message")
        a.kill()  # mid-call: the listener never answers
    async with a.session() as session:
        await session.execute(
            text("UPDATE partnership SET graphql_endpoint = :e"), {"e": b.graphql_url}
        )
        await session.commit()
    a.start()
    await eventually(lambda: contact(b), "B hears from A after the takeover")
    await eventually(lambda: _empty(a), "the message leaves the queue")


async def _picked(instance: Instance) -> bool:
    return any(row[1] == "picked" for row in await pending(instance))


class _Listener:
    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}/graphql"


class _silent_listener:  # noqa: N801 - used as a context manager
    """A TCP port that accepts connections and never answers."""

    def __enter__(self) -> str:
        self.listener = _Listener()
        return self.listener.url

    def __exit__(self, *exc: object) -> None:
        self.listener.sock.close()


async def test_a_message_is_dead_after_its_last_attempt_until_an_admin_retries(
    partners: tuple[Instance, Instance],
) -> None:
    a, b = partners
    b.stop()
    job = await queue(a)

    async def dead() -> bool:
        async with a.session() as session:
            return [m.id for m in await undelivered(session, dead_only=True)] == [job]

    await eventually(dead, "the message is dead after 8 attempts", seconds=60)
    async with a.session() as session:
        [message] = await undelivered(session)
        assert (message.status, message.operation, message.attempts) == (
            "failed",
            "peerPartnership",
            7,
        )
    b.start()
    await asyncio.sleep(1.0)
    assert await contact(b) is None  # dead messages are not retried by themselves
    async with a.session() as session:
        assert await retry_dead(session, job)
        await session.commit()
    await eventually(lambda: contact(b), "B hears from A after the retry")
    await eventually(lambda: _empty(a), "the message leaves the queue")
    async with a.session() as session:
        assert not await retry_dead(session, job)  # delivered: nothing to retry
