"""The availability feed at schema level: a partner `Viewer` with an ACTIVE partnership
granting AVAILABILITY asks `peerAvailabilityFeed`; the receiving side's `apply_page` is
run against the same database (a partnership row standing for the other side)."""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import uuid
from typing import Any

import orjson
from sqlalchemy import delete, select, text, update
from sqlalchemy.dialects.postgresql import Range
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from api.db import session_factory
from care.demo import load_demo
from care.models import (
    AvailabilityWindow,
    Member,
    Partnership,
    PartnerWindow,
    PaSkill,
    Pool,
    ServiceUserProfile,
    Visit,
)
from care.viewer import Viewer
from federation.sync import apply_page, parse_page
from schema import create_schema
from schema.context import Context, Limits
from tests.factories import Build, at

FEED = """
query Feed($after: String, $first: Int) {
  peerAvailabilityFeed(after: $after, first: $first) {
    cursor hasMore
    changes { ref removed paRef free }
    pas { ref district travelKm skills { skill expiresOn } }
  }
}
"""


async def partnership(db: AsyncSession, name: str) -> Partnership:
    row = Partnership(
        base_url=f"http://{name}.test",
        graphql_endpoint=f"http://{name}.test/graphql",
        proposal_ref=uuid.uuid4(),
        direction="OUTGOING",
        status="ACTIVE",
        requested_scopes=["AVAILABILITY"],
        granted_scopes=["AVAILABILITY"],
        protocol_version="1",
        coop_name=f"{name} co-op",
        home_la_code="E09000010",
        local_authorities=[{"gssCode": "E09000010", "name": "Enfield"}],
    )
    db.add(row)
    await db.flush()
    return row


def partner(p: Partnership) -> Viewer:
    return Viewer(
        partner=p.base_url,
        partnership_id=p.id,
        partnership_status="ACTIVE",
        scopes=frozenset({"AVAILABILITY"}),
    )


async def ask(engine: AsyncEngine, viewer: Viewer, variables: dict[str, Any]) -> Any:
    async with session_factory(engine)() as session:
        ctx = Context(session=session, viewer=viewer, limits=Limits())
        return await create_schema().execute(FEED, variables, context_value=ctx)


async def settled(engine: AsyncEngine) -> None:
    """Until every change written so far is below the horizon: the snapshot's xmin spans
    the whole PostgreSQL server, so another database's open transaction delays the feed
    (never loses a change) and tests sharing a server must wait it out."""
    for _ in range(500):
        async with engine.connect() as conn:
            done = await conn.scalar(
                text(
                    "SELECT coalesce(max(xid) < pg_snapshot_xmin(pg_current_snapshot()), true)"
                    " FROM availability_feed"
                )
            )
        if done:
            return
        await asyncio.sleep(0.02)
    raise AssertionError("an open transaction held the feed back for 10 s")


async def feed(engine: AsyncEngine, p: Partnership, after: str | None = None) -> dict[str, Any]:
    await settled(engine)
    result = await ask(engine, partner(p), {"after": after, "first": 5000})
    assert result.errors is None, result.errors
    page: dict[str, Any] = result.data["peerAvailabilityFeed"]
    return page


def by_ref(page: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["ref"]: c for c in page["changes"]}


def pa_of(page: dict[str, Any], change: dict[str, Any]) -> dict[str, Any]:
    """The page's description of the PA of an offered change."""
    [pa] = [p for p in page["pas"] if p["ref"] == change["paRef"]]
    return pa


def interval(value: str) -> tuple[dt.datetime, dt.datetime]:
    start, end = value.split("/")
    return dt.datetime.fromisoformat(start), dt.datetime.fromisoformat(end)


async def world(db: AsyncSession) -> dict[str, Any]:
    b = Build(db)
    await b.las()
    await b.coop()
    shared_pa = await b.pa("Priya Shared", skills=["hoist"])
    private_pa = await b.pa("Quentin Private")
    shared = await b.pool("Shared pool", pas=[shared_pa])
    await db.execute(update(Pool).where(Pool.id == shared.id).values(shared_with_partners=True))
    await b.pool("Private pool", pas=[private_pa])
    w1 = await b.window(shared_pa, at(days=2), hours=4)
    w2 = await b.window(shared_pa, at(days=3), hours=4)
    w3 = await b.window(private_pa, at(days=2), hours=4)
    su = await b.service_user()
    p = await partnership(db, "alpha")
    await db.commit()
    return {"pa": shared_pa, "su": su, "w1": w1, "w2": w2, "w3": w3, "pool": shared, "p": p}


async def test_first_page_offers_shared_windows_and_withholds_the_rest(
    app: Any, db: AsyncSession
) -> None:
    w = await world(db)
    page = await feed(app.state.engine, w["p"])
    assert page["hasMore"] is False
    changes = page["changes"]
    assert len(changes) == 3
    offered = [c for c in changes if c["removed"] is None]
    assert [c["removed"] for c in changes if c["removed"]] == ["NOT_SHARED"]
    assert len(offered) == 2
    for change in offered:
        pa = pa_of(page, change)
        assert pa["district"] == "N20"
        assert pa["travelKm"] == 10.0
        assert pa["skills"] == [{"skill": "hoist", "expiresOn": None}]
        assert len(change["free"]) == 1
    assert offered[0]["paRef"] == offered[1]["paRef"]  # one PA, one stable reference
    assert len(page["pas"]) == 1  # described once for both its windows
    starts = sorted(interval(c["free"][0])[0] for c in offered)
    assert starts[0] == w["w1"].during.lower
    assert interval(offered[0]["free"][0])[1] - interval(offered[0]["free"][0])[0] == (
        dt.timedelta(hours=4)
    )
    # The withheld window says nothing but its reference, and its PA is not described.
    [withheld] = [c for c in changes if c["removed"]]
    assert withheld["paRef"] is None and withheld["free"] == []
    # Nothing more after the cursor.
    again = await feed(app.state.engine, w["p"], page["cursor"])
    assert again["changes"] == [] and again["cursor"] == page["cursor"]


async def test_changes_come_after_the_cursor_with_tombstones(app: Any, db: AsyncSession) -> None:
    w = await world(db)
    engine = app.state.engine
    cursor = (await feed(engine, w["p"]))["cursor"]
    b = Build(db)

    # A visit in the middle of w1 splits it; one filling w2 withdraws it.
    await b.visit(w["su"], w["pa"], w["w1"].during.lower + dt.timedelta(hours=1), minutes=60)
    await b.visit(w["su"], w["pa"], w["w2"].during.lower, minutes=240)
    await db.commit()
    page = await feed(engine, w["p"], cursor)
    assert len(page["changes"]) == 2
    split, filled = page["changes"]  # commit order: the split was written first
    assert split["removed"] is None and len(split["free"]) == 2
    assert filled["removed"] == "FILLED"
    cursor = page["cursor"]

    # A skill added touches the PA's windows: w1 again (w2 stays filled).
    await b._add(PaSkill(pa_id=w["pa"].id, skill="medication-support"))
    await db.commit()
    page = await feed(engine, w["p"], cursor)
    assert {c["ref"] for c in page["changes"]} == {split["ref"], filled["ref"]}
    assert pa_of(page, by_ref(page)[split["ref"]])["skills"] == [
        {"skill": "hoist", "expiresOn": None},
        {"skill": "medication-support", "expiresOn": None},
    ]
    cursor = page["cursor"]

    # The pool stops sharing: every window of its PA is withdrawn.
    await db.execute(update(Pool).where(Pool.id == w["pool"].id).values(shared_with_partners=False))
    await db.commit()
    page = await feed(engine, w["p"], cursor)
    assert {c["removed"] for c in page["changes"]} == {"NOT_SHARED"}
    assert {c["ref"] for c in page["changes"]} == {split["ref"], filled["ref"]}
    cursor = page["cursor"]

    # A deleted window: REMOVED.
    await db.execute(delete(AvailabilityWindow).where(AvailabilityWindow.id == w["w3"].id))
    await db.commit()
    page = await feed(engine, w["p"], cursor)
    assert [c["removed"] for c in page["changes"]] == ["REMOVED"]


async def test_references_are_per_partner_stable_and_not_ids(app: Any, db: AsyncSession) -> None:
    w = await world(db)
    other = await partnership(db, "beta")
    await db.commit()
    engine = app.state.engine
    first, again = await feed(engine, w["p"]), await feed(engine, w["p"])
    theirs = await feed(engine, other)
    assert [c["ref"] for c in first["changes"]] == [c["ref"] for c in again["changes"]]
    mine = {c["ref"] for c in first["changes"]} | {c["paRef"] for c in first["changes"]}
    assert mine.isdisjoint(
        {c["ref"] for c in theirs["changes"]} | {c["paRef"] for c in theirs["changes"]} - {None}
    )
    for ref in mine - {None}:
        assert not ref.isdigit() and len(ref) >= 20


async def test_a_bad_cursor_is_a_coded_client_error(app: Any, db: AsyncSession) -> None:
    w = await world(db)
    viewer = partner(w["p"])
    from schema.connection import encode_cursor

    for bad in (
        "nonsense!",
        encode_cursor(["f1.x.1"]),
        encode_cursor(["f2.1.1"]),
        encode_cursor([12]),
    ):
        result = await ask(app.state.engine, viewer, {"after": bad, "first": 10})
        assert result.errors is not None, bad
        assert result.errors[0].extensions["code"] == "BAD_USER_INPUT", bad
    too_many = await ask(app.state.engine, viewer, {"after": None, "first": 5001})
    assert too_many.errors and too_many.errors[0].extensions["code"] == "BAD_USER_INPUT"


async def test_a_change_committed_out_of_order_is_not_skipped(app: Any, db: AsyncSession) -> None:
    """T1 changes w1 and stays open; T2 changes w2 and commits. While T1 is open the feed
    serves neither past T1's position; once T1 commits, both arrive."""
    w = await world(db)
    engine: AsyncEngine = app.state.engine
    cursor = (await feed(engine, w["p"]))["cursor"]
    later = dt.timedelta(minutes=30)
    async with engine.connect() as t1:
        await t1.execute(
            update(AvailabilityWindow)
            .where(AvailabilityWindow.id == w["w1"].id)
            .values(during=Range(w["w1"].during.lower, w["w1"].during.upper + later, bounds="[)"))
        )
        async with engine.begin() as t2:
            await t2.execute(
                update(AvailabilityWindow)
                .where(AvailabilityWindow.id == w["w2"].id)
                .values(
                    during=Range(w["w2"].during.lower, w["w2"].during.upper + later, bounds="[)")
                )
            )
        xids = (await t1.execute(text("SELECT pg_current_xact_id()::text"))).scalar()
        assert xids is not None
        result = await ask(engine, partner(w["p"]), {"after": cursor, "first": 100})
        during_t1 = result.data["peerAvailabilityFeed"]
        assert during_t1["changes"] == []  # w2's change waits behind the open T1
        assert during_t1["cursor"] == cursor
        await t1.commit()
    after = await feed(engine, w["p"], cursor)
    assert len(after["changes"]) == 2  # both, in commit... (xid) order: T1 first
    ends = [interval(c["free"][-1])[1] for c in after["changes"]]
    assert ends[0] == w["w1"].during.upper + later
    assert ends[1] == w["w2"].during.upper + later


async def received(engine: AsyncEngine, partnership_id: int) -> list[tuple[Any, ...]]:
    async with session_factory(engine)() as s:
        rows = await s.execute(
            select(
                PartnerWindow.ref,
                PartnerWindow.period,
                PartnerWindow.pa_ref,
                PartnerWindow.skills,
                PartnerWindow.district,
                PartnerWindow.travel_km,
                PartnerWindow.during,
                PartnerWindow.received_at,
            )
            .where(PartnerWindow.partnership_id == partnership_id)
            .order_by(PartnerWindow.ref, PartnerWindow.period)
        )
        return [tuple(r) for r in rows]


async def test_applying_a_page_twice_changes_nothing(app: Any, db: AsyncSession) -> None:
    w = await world(db)
    receiver = await partnership(db, "receiver")
    await db.commit()
    engine: AsyncEngine = app.state.engine
    b = Build(db)
    await b.visit(w["su"], w["pa"], w["w1"].during.lower + dt.timedelta(hours=1), minutes=60)
    await db.commit()
    page = parse_page({"peerAvailabilityFeed": await feed(engine, w["p"])})
    async with engine.begin() as conn:
        assert await apply_page(conn, receiver.id, page, None)
    first = await received(engine, receiver.id)
    assert len(first) == 3  # w1 split in two, w2 whole
    # Again (as after a crash between commit and noticing it): the cursor check refuses a
    # stale position, and a forced re-apply leaves every row as it was.
    async with engine.begin() as conn:
        assert not await apply_page(conn, receiver.id, page, None)
    async with engine.begin() as conn:
        assert await apply_page(conn, receiver.id, page, page.cursor)
    assert await received(engine, receiver.id) == first

    # The visit goes: w1 is whole again, one period replaces two.
    await db.execute(delete(Visit))
    await db.commit()
    nxt = parse_page({"peerAvailabilityFeed": await feed(engine, w["p"], page.cursor)})
    async with engine.begin() as conn:
        assert await apply_page(conn, receiver.id, nxt, page.cursor)
    now = await received(engine, receiver.id)
    assert len(now) == 2 and {r[1] for r in now} == {0}


async def test_no_personal_data_leaves_in_the_feed(app: Any, db: AsyncSession) -> None:
    """The raw bytes of every feed page, with every pool of the demo co-op shared, hold
    no name, email, phone, postcode, address, coordinate, member id, visit or service-user
    detail."""
    await load_demo(db)
    await db.execute(update(Pool).values(shared_with_partners=True))
    p = await partnership(db, "nosy")
    await db.commit()
    engine: AsyncEngine = app.state.engine
    raw = b""
    after = None
    pages = 0
    while True:
        result = await ask(engine, partner(p), {"after": after, "first": 500})
        assert result.errors is None, result.errors
        body = orjson.dumps(result.data)
        raw += body
        page = result.data["peerAvailabilityFeed"]
        pages += 1
        after = page["cursor"]
        if not page["hasMore"]:
            break
    assert b'"removed":null' in raw  # something was offered
    members = (await db.execute(select(Member))).scalars().all()
    secrets: set[str] = set()
    for m in members:
        secrets |= {m.name, m.email or "", m.phone or "", m.postcode or ""}
        secrets |= {part for part in m.name.split() if len(part) > 3}
        if m.latitude is not None:
            secrets |= {str(m.latitude), str(m.longitude)}
    needs = (await db.execute(select(ServiceUserProfile.needs))).scalars().all()
    skills = set((await db.execute(select(PaSkill.skill))).scalars().all())
    secrets |= {n for ns in needs for n in ns} - skills  # a need may share a skill's name
    tasks = (await db.execute(select(Visit.tasks))).scalars().all()
    secrets |= {t for ts in tasks for t in ts}
    secrets.discard("")
    # References and cursors are random-looking base64url: a short name part could turn
    # up in one by chance, so they are checked on their own (below), the rest for text.
    text_only = re.sub(rb'"(?:ref|paRef|cursor)":"[^"]*"', b"", raw)
    leaked = sorted(s for s in secrets if s.encode() in text_only)
    assert leaked == []
    # Only the documented keys appear.
    keys = {k.decode() for k in re.findall(rb'"([A-Za-z]+)":', raw)}
    assert keys <= {
        "peerAvailabilityFeed",
        "cursor",
        "hasMore",
        "changes",
        "pas",
        "ref",
        "removed",
        "paRef",
        "district",
        "travelKm",
        "skills",
        "skill",
        "expiresOn",
        "free",
    }
    # No member id as a reference: every ref is a 22-character pseudonym.
    for ref in re.findall(rb'"(?:ref|paRef)":"([^"]*)"', raw):
        assert len(ref) == 22


def test_a_full_feed_page_is_costed_per_block_of_changes() -> None:
    """5,000 changes with every field fit the cost limit (blocks of 100); members'
    connections keep their per-item cost."""
    from graphql import parse

    from schema.limits import calculate_query_cost

    schema = create_schema()._schema
    cost = calculate_query_cost(schema, parse(FEED), variables={"first": 5000})
    # 6 per block of 100 changes: a change, its PA and the PA's skills (scalars are free).
    assert cost == 2 + 50 * 6 == 302
    assert cost is not None and cost <= 5000
    # The default page (1,000) is costed as such, not as the members' default of 20.
    default = calculate_query_cost(schema, parse(FEED), variables={})
    assert default == 2 + 10 * 6
