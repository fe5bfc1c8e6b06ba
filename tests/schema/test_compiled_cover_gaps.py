"""`coverGaps(clusterId:)` compiles: declared once (`schema.types.root_list` with the
filters `schema.filters.COVER_GAPS`, reading `care.candidates.cover_gaps_select`, which
holds who may read which cluster's gaps, and `COVER_GAP_ORDER`), it is answered by one
statement, byte for byte as the resolvers answer, for every kind of caller, with the
cluster's id written out or given by a variable, a bad id or another type's id (an empty
list on both paths); a caller the field refuses gets the resolvers' error on both paths.
The statement reads the viewer's time as a parameter: a plan built earlier and run later
answers as the resolvers do at that later time."""

from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

import time_machine
from graphql import Undefined
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from care.enums import Role
from care.models import CoverRequest, Member, PaSkill
from schema.build import create_schema
from tests.conftest import MANAGING_REFUSED, Api, StatementCounter, managing_callers
from tests.factories import BARNET, Build, gid
from tests.schema.test_compiled_reads import Both, _exact

LONDON = ZoneInfo("Europe/London")
SCHEMA = create_schema()._schema
FIELDS = "__typename need requests lapsedHolders firstStartsAt"
VARIABLE = f"query($c: ID!) {{ coverGaps(clusterId: $c) {{ {FIELDS} }} }}"
# Two clusters in one operation: each field binds its own cluster.
TWO = f"""query($a: ID!, $b: ID!) {{
  a: coverGaps(clusterId: $a) {{ {FIELDS} }}
  b: coverGaps(clusterId: $b) {{ need requests }} }}"""


def literal(cluster: str) -> str:
    return f'{{ coverGaps(clusterId: "{cluster}") {{ {FIELDS} }} }}'


def local(day: dt.date, hour: int, minute: int = 0) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(hour, minute), tzinfo=LONDON).astimezone(dt.UTC)


async def open_request(db: AsyncSession, visit_id: int, **kw: Any) -> None:
    db.add(CoverRequest(visit_id=visit_id, reason="MANUAL", status="OPEN", **kw))


async def lapse(db: AsyncSession, pa: Member, skill: str, on: dt.date) -> None:
    await db.execute(
        update(PaSkill).where(PaSkill.pa_id == pa.id, PaSkill.skill == skill).values(expires_on=on)
    )


async def seed(db: AsyncSession, now: dt.datetime) -> dict[str, Any]:
    """A cluster with gaps of different needs, counts (two tied), lapsed holders and first
    starts; one request that ends soon after `now`; a request whose visit is over, a filled
    one and a cancelled one (no gaps); another cluster with a gap of its own."""
    b = Build(db)
    await b.las()
    await b.coop()
    coordinator = await b.worker("Cora Ordinator")
    other_coordinator = await b.worker("Otto Ordinator")
    finchley = await b.cluster("Finchley", support_worker=coordinator)
    east = await b.cluster("Barnet East", support_worker=other_coordinator)
    day = now.astimezone(LONDON).date() + dt.timedelta(days=3)
    # The team: personal care in date (no gap), two PAs whose hoist lapsed and one whose
    # catheter care lapsed before the visits, and an inactive PA holding peg feeding.
    busy = await b.pa("Pat Busy", cluster=finchley, skills=["personal-care"])
    holly = await b.pa("Holly Lapsed", cluster=finchley, skills=["hoist"])
    hank = await b.pa("Hank Lapsed", cluster=finchley, skills=["hoist", "catheter-care"])
    gone = await b.pa("Gone Peg", cluster=finchley, skills=["peg-feeding"])
    gone.active = False
    # Off the team: holding a skill in date closes no gap.
    idle = await b.pa("Ida Idle", skills=["peg-feeding", "stoma-care", "hoist"])
    for pa in (holly, hank):
        await lapse(db, pa, "hoist", day - dt.timedelta(days=1))
    await lapse(db, hank, "catheter-care", now.astimezone(LONDON).date() - dt.timedelta(days=1))

    peg = await b.service_user(
        "Peg User", cluster=finchley, needs=["personal-care", "peg-feeding", "hoist"]
    )
    hal = await b.service_user("Hal User", cluster=finchley, needs=["hoist", "peg-feeding"])
    mo = await b.service_user("Mo User", cluster=finchley, needs=["catheter-care"])
    wyn = await b.service_user("Wyn User", cluster=finchley, needs=["stoma-care"])
    ada = await b.service_user("Ada User", cluster=finchley)
    bob = await b.service_user("Bob Other", cluster=east, needs=["peg-feeding"])
    stranger = await b.service_user("Stan Stranger")  # in no cluster
    await b.visit(ada, busy, local(day, 7))  # the busy PA's visit

    needing = [
        (peg, local(day, 9)),
        (peg, local(day + dt.timedelta(days=1), 9)),
        (hal, local(day, 15)),
        # A fraction of a second: written as Python's isoformat.
        (wyn, local(day, 11) + dt.timedelta(microseconds=123450)),
        (wyn, local(day + dt.timedelta(days=2), 11)),
        # Ends an hour and a half after `now`: a gap now, none three hours later.
        (mo, now.replace(second=0, microsecond=0) + dt.timedelta(minutes=30)),
        (bob, local(day, 10)),
    ]
    for person, start in needing:
        visit = await b.visit(person, None, start, status="NEEDS_COVER")
        await open_request(db, visit.id)
    # Over: not a gap.
    over = await b.visit(hal, None, now - dt.timedelta(days=2), status="NEEDS_COVER")
    await open_request(db, over.id)
    # Filled and cancelled requests: not gaps.
    filled = await b.visit(wyn, busy, local(day + dt.timedelta(days=4), 11))
    db.add(
        CoverRequest(
            visit_id=filled.id,
            reason="MANUAL",
            status="FILLED",
            filled_by_pa_id=busy.id,
            closed_at=now,
        )
    )
    cancelled = await b.visit(peg, None, local(day + dt.timedelta(days=5), 9), status="CANCELLED")
    db.add(CoverRequest(visit_id=cancelled.id, reason="MANUAL", status="CANCELLED", closed_at=now))
    await db.commit()
    return {
        "finchley": gid("Cluster", finchley.id),
        "east": gid("Cluster", east.id),
        "unknown": gid("Cluster", 999_999),
        "another type": gid("Pool", finchley.id),
        "bad": "not an id",
        "coordinator": coordinator.id,
        "other coordinator": other_coordinator.id,
        "busy": busy.id,
        "idle": idle.id,
        "stranger": stranger.id,
        "day": day,
        "mo": (now.replace(second=0, microsecond=0) + dt.timedelta(minutes=30)),
    }


def callers(api: Api, world: dict[str, Any]) -> dict[str, str | None]:
    return managing_callers(
        api,
        coordinator=world["coordinator"],
        other_coordinator=world["other coordinator"],
        pa_with_visits=world["busy"],
        pa_without_visits=world["idle"],
        stranger=world["stranger"],
        la=BARNET,
    )


REFUSED = MANAGING_REFUSED


def instant(at: dt.datetime) -> str:
    return at.astimezone(dt.UTC).isoformat()


def finchley_gaps(world: dict[str, Any], *, later: bool = False) -> list[dict[str, Any]]:
    """The rule, written out apart: most requests first, then by name; the tie of hoist
    and peg feeding (3 each) broken by name."""
    day = world["day"]
    gaps = [
        {"need": "hoist", "requests": 3, "lapsedHolders": 2, "at": local(day, 9)},
        {"need": "peg-feeding", "requests": 3, "lapsedHolders": 0, "at": local(day, 9)},
        {
            "need": "stoma-care",
            "requests": 2,
            "lapsedHolders": 0,
            "at": local(day, 11) + dt.timedelta(microseconds=123450),
        },
        {"need": "catheter-care", "requests": 1, "lapsedHolders": 1, "at": world["mo"]},
    ]
    if later:
        gaps = [g for g in gaps if g["need"] != "catheter-care"]
    return [
        {
            "__typename": "CoverGap",
            "need": g["need"],
            "requests": g["requests"],
            "lapsedHolders": g["lapsedHolders"],
            "firstStartsAt": instant(g["at"]),
        }
        for g in gaps
    ]


EAST = [{"__typename": "CoverGap", "need": "peg-feeding", "requests": 1, "lapsedHolders": 0}]


def expected(name: str, cluster: str, world: dict[str, Any]) -> list[dict[str, Any]] | None:
    """What a caller admitted reads: admins any cluster, a coordinator their own."""
    if cluster == "finchley" and name in ("admin", "coordinator"):
        return finchley_gaps(world)
    if cluster == "east" and name in ("admin", "coordinator of another cluster"):
        return EAST
    return []


async def test_cover_gaps_compile_identically_for_every_caller_and_id(
    api: Api, app: Any, sql_counter: StatementCounter, db: AsyncSession
) -> None:
    now = dt.datetime.now(dt.UTC)
    with time_machine.travel(now, tick=False):
        world = await seed(db, now)
        both = Both(api, app, sql_counter)
        checked = 0
        for name, token in callers(api, world).items():
            for cluster in ("finchley", "east", "unknown", "another type", "bad"):
                for query, variables in (
                    (literal(world[cluster]), {}),
                    (VARIABLE, {"c": world[cluster]}),
                ):
                    where = (name, cluster, query)
                    resolved, compiled, ran = await both.run(query, variables, token)
                    assert _exact(compiled.get("data")) == _exact(resolved.get("data")), where
                    assert _exact(compiled.get("errors")) == _exact(resolved.get("errors")), where
                    if name in REFUSED:
                        assert not both.compiled, where
                        assert compiled["data"] is None, where
                        (error,) = compiled["errors"]
                        assert error["extensions"]["code"] == REFUSED[name], where
                        continue
                    assert both.compiled and ran == 1, where  # one statement, no resolver
                    assert "errors" not in compiled, where
                    found = compiled["data"]["coverGaps"]
                    want = expected(name, cluster, world)
                    if cluster == "east" and want:
                        found = [{k: g[k] for k in want[0]} for g in found]
                    assert found == want, where
                    checked += 1
        assert checked == 3 * 5 * 2

        # Two clusters in one operation: each field its own cluster, one statement.
        admin = api.token(Role.ADMIN)
        body = await both.same(
            TWO, {"a": world["finchley"], "b": world["east"]}, admin, statements=1
        )
        assert body["data"]["a"] == finchley_gaps(world)
        assert body["data"]["b"] == [{"need": "peg-feeding", "requests": 1}]
        body = await both.same(
            TWO, {"a": world["bad"], "b": world["finchley"]}, admin, statements=1
        )
        assert body["data"]["a"] == []
        assert [g["need"] for g in body["data"]["b"]] == [g["need"] for g in finchley_gaps(world)]


async def test_a_cached_plan_reads_the_time_of_the_request_running_it(
    api: Api, app: Any, sql_counter: StatementCounter, db: AsyncSession
) -> None:
    # The statement reads the viewer's `now` (visits not over): a parameter bound on
    # every request (`care.policy.now`), never the time the plan was built at.
    now = dt.datetime.now(dt.UTC)
    with time_machine.travel(now, tick=False):
        world = await seed(db, now)
    both = Both(api, app, sql_counter)
    queries = ((literal(world["finchley"]), {}), (VARIABLE, {"c": world["finchley"]}))
    with time_machine.travel(now, tick=False):
        # Issued at the clock's time, so that it is never newer than the requests.
        token = api.token(Role.COORDINATOR, world["coordinator"])
        for query, variables in queries:
            body = await both.same(query, variables, token, statements=1)
            assert body["data"]["coverGaps"] == finchley_gaps(world)
    # Three hours later Mo's visit is over: the same documents, their plans cached.
    with time_machine.travel(now + dt.timedelta(hours=3), tick=False):
        for query, variables in queries:
            body = await both.same(query, variables, token, statements=1)
            assert body["data"]["coverGaps"] == finchley_gaps(world, later=True)


async def test_the_cluster_must_be_given_on_both_paths(
    api: Api, app: Any, sql_counter: StatementCounter, db: AsyncSession
) -> None:
    # `clusterId` is required, as before the field was declared with `root_list`: no
    # default in the schema (`schema.rows.REQUIRED`), so leaving it out is refused.
    argument = SCHEMA.query_type.fields["coverGaps"].args["clusterId"]  # type: ignore[union-attr]
    assert argument.default_value is Undefined
    both = Both(api, app, sql_counter)
    resolved, compiled, _ = await both.run(f"{{ coverGaps {{ {FIELDS} }} }}", {}, None)
    assert not both.compiled
    assert _exact(compiled) == _exact(resolved)
    assert "clusterId" in compiled["errors"][0]["message"]
