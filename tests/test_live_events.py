"""Live events in PostgreSQL (care/events.py, migration 0023): one per subject and
transaction, numbered in commit order, pruned as whole prefixes."""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy import select, text, update
from sqlalchemy.ext.asyncio import AsyncSession
from strawberry.types import ExecutionResult

from api.db import session_factory
from api.events import EventHub
from care.enums import Role
from care.events import CoverEvent, PartnershipEvent, publish, publish_all
from care.models import CoverRequest, LiveEvent
from care.viewer import Viewer
from schema import create_schema
from schema.context import Limits
from schema.subscriptions import LiveContext
from tests.factories import Build, at, gid
from tests.live_events import committed_since, latest


def opened(
    request_id: int, kind: str = "REQUEST_OPENED", cluster_ids: list[int] | None = None, **more: Any
) -> CoverEvent:
    clusters = [7] if cluster_ids is None else cluster_ids
    return CoverEvent(
        kind=kind, cover_request_id=request_id, visit_id=1, cluster_ids=clusters, **more
    )


async def test_one_transaction_says_one_thing_of_each_subject(db: AsyncSession) -> None:
    """Mentions of one subject in one transaction, in one statement or several, make one
    event: the request keeps what happened to it over what happened to an offer."""
    mark = await latest(db)
    await publish_all(
        db,
        [
            opened(1, "OFFER_MADE", offer_id=10, pa_id=100),
            opened(1, "OFFER_MADE", offer_id=11, pa_id=101),
        ],
    )
    await publish(db, opened(1, "REQUEST_FILLED", offer_id=10, pa_id=100))
    await publish(db, opened(1, "OFFER_CLOSED", offer_id=11, pa_id=101))
    await publish(db, PartnershipEvent(kind="ACTIVE", partnership_id=5))
    await db.commit()
    events = await committed_since(db, mark)
    assert [(e.subject, e.subject_id, e.kind, e.pa_id) for e in events] == [
        ("COVER_REQUEST", 1, "REQUEST_FILLED", None),
        ("COVER_OFFER", 10, "OFFER_ACCEPTED", 100),
        ("COVER_OFFER", 11, "OFFER_CLOSED", 101),
        ("PARTNERSHIP", 5, "ACTIVE", None),
    ]
    assert [e.sequence for e in events] == [mark + 1, mark + 2, mark + 3, mark + 4]
    assert events[0].cluster_ids == (7,)


async def test_sequence_order_is_commit_order(app: Any, db: AsyncSession) -> None:
    """A transaction that wrote its event first but commits last gets the larger number:
    a reader that has seen N never later finds a committed event below N."""
    sessions = session_factory(app.state.engine)
    mark = await latest(db)
    async with sessions() as early, sessions() as late:
        await publish(early, opened(1))
        await early.flush()  # written first, still uncommitted
        await publish(late, opened(2))
        await late.commit()
        seen = await committed_since(db, mark)
        assert [e.subject_id for e in seen] == [2]
        await early.commit()
    events = await committed_since(db, mark)
    assert [e.subject_id for e in events] == [2, 1]
    assert events[1].sequence > seen[0].sequence


async def test_a_rolled_back_change_leaves_no_event(app: Any, db: AsyncSession) -> None:
    mark = await latest(db)
    async with session_factory(app.state.engine)() as session:
        await publish(session, opened(1))
        await session.rollback()
    assert await committed_since(db, mark) == []


async def test_the_hub_prunes_whole_prefixes_past_the_retention(
    migrated_url: str, db: AsyncSession
) -> None:
    """Events older than the retention go, and with them every earlier one (so a stored
    sequence means nothing after it was pruned); later ones stay."""
    mark = await latest(db)
    for request_id in (1, 2, 3, 4):
        await publish(db, opened(request_id))
        await db.commit()
    first, second, third, fourth = range(mark + 1, mark + 5)
    # The first and third are old (the third's clock ran behind): both go, and the second.
    await db.execute(
        update(LiveEvent)
        .where(LiveEvent.sequence.in_([first, third]))
        .values(occurred_at=text("now() - interval '73 hours'"))
    )
    await db.commit()
    hub = EventHub(migrated_url, keepalive_seconds=0.05, retention_hours=72, prune_seconds=0.01)
    await hub.start()
    try:
        for _ in range(200):
            kept = set(await db.scalars(select(LiveEvent.sequence)))
            await db.commit()
            if third not in kept:
                break
            await asyncio.sleep(0.02)
    finally:
        await hub.stop()
    assert kept == {fourth}


async def _until(condition: Any, what: str) -> None:
    for _ in range(500):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"never: {what}")


async def test_a_subscriber_that_falls_behind_misses_nothing(
    app: Any, db: AsyncSession, migrated_url: str
) -> None:
    """With room for one event only, a subscription busy with the first of three events
    overflows its queue; it then re-reads the rest from the table: all three arrive, in
    order, once."""
    b = Build(db)
    await b.las()
    await b.coop()
    coordinator = await b.worker("Cora Ordinator")
    cluster = await b.cluster("Finchley", support_worker=coordinator)
    person = await b.service_user("Ada User", cluster=cluster)
    requests = []
    for days in (2, 3, 4):
        visit = await b.visit(person, None, at(days=days), status="NEEDS_COVER")
        request = CoverRequest(visit_id=visit.id, reason="MANUAL", opened_by_id=coordinator.id)
        db.add(request)
        await db.flush()
        requests.append(request)
    await db.commit()

    hub = EventHub(migrated_url, queue_size=1)
    await hub.start()
    ctx = LiveContext(
        sessions=app.state.sessions, events=hub, limits=Limits(), viewer=Viewer(role=Role.ADMIN)
    )
    query = """subscription($c: ID!) { coverRequests(clusterId: $c) {
        sequence kind coverRequest { id } } }"""
    stream = await create_schema().subscribe(
        query, variable_values={"c": gid("Cluster", cluster.id)}, context_value=ctx
    )
    assert not isinstance(stream, ExecutionResult), stream
    try:
        first = asyncio.ensure_future(anext(stream))
        await _until(lambda: hub.subscriber_count == 1, "subscribed")
        async with ctx._event_lock:  # the subscription is busy: its events queue up
            for request in requests:
                await publish(db, opened(request.id, cluster_ids=[cluster.id]))
                await db.commit()
            last = await latest(db)
            await _until(lambda: hub.position == last, "all three handed out")
            [subscriber] = hub._subscribers
            assert subscriber.dropped > 0  # it fell behind
        results = [await asyncio.wait_for(first, 5)]
        results += [await asyncio.wait_for(anext(stream), 5) for _ in range(2)]
    finally:
        await stream.aclose()
        await hub.stop()
    changes = [r.data["coverRequests"] for r in results if r.data]
    assert [c["coverRequest"]["id"] for c in changes] == [
        gid("CoverRequest", r.id) for r in requests
    ]
    assert [int(c["sequence"]) for c in changes] == [last - 2, last - 1, last]
