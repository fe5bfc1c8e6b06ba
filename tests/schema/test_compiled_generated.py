"""The compiled read path answers generated operations exactly as the resolvers do
(issue 10, "Proving it is the same API").

hypothesis-graphql writes query operations from the schema: mostly over the root fields
the compiler supports (`schema.compiled.registry.FIELDS["Query"]`), and some mixing in
root fields it does not, which must fall back. Arguments are values that mean something
in the demo co-op (ids that exist, cursors the lists gave out, dates around today, page
sizes in range) so that operations return rows rather than only errors. Some of their
connections, at the root and nested, are then paged backwards (`backwards`: `last`,
`before`, now and then `first` with `last`). Each operation runs through both paths as
several kinds of caller; data and errors must be identical, key order included.

The run is derandomized (the same operations every time, in CI too) and bounded by
`EXAMPLES`; COMPILED_EXAMPLES raises it for a longer local hunt, COMPILED_SEED explores
other operations. Hypothesis runs in a
worker thread and hands each request to the test's event loop (as tests/test_fuzz.py), so
a difference is shrunk to a small operation and printed. Differences found are kept below
as explicit cases (`FOUND`)."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import datetime as dt
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import graphql
import httpx
import orjson
import pytest
import time_machine
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st
from hypothesis_graphql import queries
from sqlalchemy import select, text

from api.db import session_factory
from care.demo import LONDON, load_demo
from care.enums import Role
from care.models import Cluster, Visit
from schema.compiled.registry import FIELDS, Page
from tests.conftest import ROOT, Api, watching_compiled
from tests.factories import BARNET

# Examples per strategy; each runs as every caller below, through both paths.
EXAMPLES = int(os.environ.get("COMPILED_EXAMPLES", "100"))
# Unset (as in CI): derandomized. A number explores other operations in a local hunt.
SEED = os.environ.get("COMPILED_SEED")

SCHEMA = graphql.build_schema((ROOT / "schema.graphql").read_text())

# The root fields the compiler supports, and some it does not (to be mixed in: the whole
# operation must then fall back).
COMPILED_ROOTS = sorted(FIELDS["Query"])
OTHER_ROOTS = ["node", "pools", "localAuthorities", "availability", "coop"]

CALLERS = ["admin", "coordinator", "pa", "stranger", "la analyst"]


@dataclass
class DemoCoop:
    """The demo co-op, the callers' tokens and the argument values that exist in it."""

    api: Api
    app: Any
    tokens: dict[str, str]
    values: Values
    today: dt.date


@pytest.fixture(scope="module")
async def demo(app_state: Any, emptier: Callable[[], Awaitable[None]]) -> AsyncIterator[DemoCoop]:
    """The demo co-op, loaded once for the module (every test here only reads), and
    emptied after it as the `app` fixture does after each test."""
    app = app_state
    engine = app.state.engine
    today = dt.datetime.now(LONDON).date()
    try:
        async with session_factory(engine)() as db:
            assert await load_demo(db, today) is True
            await db.commit()
            coordinator = await db.scalar(
                select(Cluster.support_worker_id)
                .where(Cluster.support_worker_id.is_not(None))
                .order_by(Cluster.id)
                .limit(1)
            )
            busy_pa = await db.scalar(
                select(Visit.pa_id)
                .where(Visit.pa_id.is_not(None))
                .group_by(Visit.pa_id)
                .order_by(Visit.pa_id)
                .limit(1)
            )
            # A member who is no one's carer, PA or coordinator.
            stranger = (
                await db.execute(
                    text(
                        "INSERT INTO member (name, membership_class) VALUES ('A supporter', "
                        "'SUPPORTER') RETURNING id"
                    )
                )
            ).scalar_one()
            await db.commit()
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            api = Api(client, app)
            tokens = {
                "admin": api.token(Role.ADMIN),
                "coordinator": api.token(Role.COORDINATOR, coordinator),
                "pa": api.token(Role.PA, busy_pa),
                "stranger": api.token(Role.SERVICE_USER, stranger),
                "la analyst": api.token(Role.LA_ANALYST, la=BARNET),
            }
            values = await _collect_values(api, app, tokens["admin"])
            yield DemoCoop(api, app, tokens, values, today)
    finally:
        await emptier()


# Ids and cursors as the API gives them out, read by an admin on the resolver path.
VALUES = """{
  clusters(first: 100) { nodes { id } }
  members(first: 100) { nodes { __typename id
    ... on ServiceUser { visits(first: 3) { pageInfo { endCursor } } }
    ... on PersonalAssistant { availability(first: 3) { pageInfo { endCursor } } } } }
  visits(first: 100) { edges { cursor node { id } } }
  pools { id }
}"""


@dataclass
class Values:
    """Argument values that exist in the demo co-op, by kind."""

    clusters: list[str]
    members: dict[str, list[str]]  # by GraphQL type
    visits: list[str]
    pools: list[str]
    visit_cursors: list[str]
    availability_cursors: list[str]
    id_cursors: list[str]  # the member and cluster lists' (sorted by id)


async def _collect_values(api: Api, app: Any, admin: str) -> Values:
    app.state.compiled_reads = False
    try:
        data = await api.data(VALUES, token=admin)
    finally:
        app.state.compiled_reads = True
    members: dict[str, list[str]] = {}
    for member in data["members"]["nodes"]:
        members.setdefault(member["__typename"], []).append(member["id"])
    assert len(members) == 4, members  # service users, PAs, carers and other members
    visit_edges = data["visits"]["edges"]

    def ends(page: str) -> list[str]:
        found = (m.get(page) for m in data["members"]["nodes"])
        return [p["pageInfo"]["endCursor"] for p in found if p and p["pageInfo"]["endCursor"]]

    values = Values(
        clusters=[c["id"] for c in data["clusters"]["nodes"]],
        members={kind: ids[:6] for kind, ids in members.items()},
        visits=[e["node"]["id"] for e in visit_edges[:6]],
        pools=[p["id"] for p in data["pools"][:3]],
        visit_cursors=[e["cursor"] for e in visit_edges[::10]] + ends("visits")[:4],
        availability_cursors=ends("availability")[:4],
        id_cursors=[base64.b64encode(f"[{n}]".encode()).decode() for n in (1, 4, 9, 30, 70)],
    )
    assert values.visit_cursors and values.availability_cursors and values.clusters
    return values


def _string(value: str) -> graphql.ValueNode:
    return graphql.StringValueNode(value=value)


def _int(value: int) -> graphql.ValueNode:
    return graphql.IntValueNode(value=str(value))


def _mostly(good: st.SearchStrategy[Any], bad: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Good values, and now and then a bad one (for identical errors): one in sixteen (an
    operation has many arguments, and one bad one makes the whole of it an error)."""
    return st.integers(0, 15).flatmap(lambda n: bad if n == 7 else good)


UNKNOWN_IDS = ["Q2x1c3Rlcjo5OTk5", "bm90IGFuIGlk"]  # Cluster:9999, junk


def _order(
    schema: graphql.GraphQLSchema, enum: str, default: str
) -> st.SearchStrategy[graphql.ValueNode]:
    others = sorted(set(schema.type_map[enum].values) - {default})  # type: ignore[union-attr]
    return _mostly(st.just(default), st.sampled_from(others)).map(
        lambda value: graphql.EnumValueNode(value=value)
    )


def scalars(coop: DemoCoop) -> dict[str, st.SearchStrategy[graphql.ValueNode]]:
    """Argument values by type, the argument types of `compilable` included: mostly ones
    that exist in the demo co-op, some that do not (an unknown id, a cursor of another
    list, a page size out of range) for identical errors."""
    values = coop.values
    midnight = dt.datetime.combine(coop.today, dt.time(0), dt.UTC)

    def instants(*days: int) -> st.SearchStrategy[graphql.ValueNode]:
        at = [midnight + dt.timedelta(days=d, hours=h) for d in days for h in (0, 9)]
        written = [i.isoformat() for i in at] + [i.astimezone(LONDON).isoformat() for i in at]
        return _mostly(st.sampled_from(written), st.just("2026-06-01T10:00:00")).map(_string)

    days = [coop.today + dt.timedelta(days=d) for d in (-60, -7, 0, 7, 90)]
    every_member = sorted(i for ids in values.members.values() for i in ids)
    any_id = st.sampled_from(
        values.clusters[:3] + every_member[::4] + values.visits[:2] + values.pools + UNKNOWN_IDS
    )
    cursors = values.visit_cursors + values.availability_cursors + values.id_cursors
    names = st.sampled_from(["a", "smith", "Ann", "%", "_", "é", "e09", BARNET, "EN1"])

    def ids_of(found: list[str]) -> st.SearchStrategy[graphql.ValueNode]:
        return _mostly(st.sampled_from(found), any_id).map(_string)

    def cursors_of(found: list[str]) -> st.SearchStrategy[graphql.ValueNode]:
        bad = st.one_of(st.sampled_from(cursors), st.just("not a cursor"))
        return _mostly(st.sampled_from(found), bad).map(_string)

    return {
        "ID": any_id.map(_string),
        "DateTime": instants(-30, -1, 0, 2, 7),
        # Range ends mostly in order (`startsFrom` after `startsBefore` is an error).
        "Earlier": instants(-30, -1, 0),
        "Later": instants(1, 7, 30),
        "Date": st.sampled_from([d.isoformat() for d in days]).map(_string),
        "Int": _mostly(st.integers(1, 100), st.sampled_from([0, 101, -1])).map(_int),
        "String": st.one_of(st.sampled_from(cursors), names, st.just("not a cursor")).map(_string),
        # The argument types `compilable` gives (the printed operation is the same).
        "PageSize": _mostly(
            st.one_of(st.integers(1, 5), st.sampled_from([50, 100])), st.sampled_from([0, 101])
        ).map(_int),
        "ClusterId": ids_of(values.clusters),
        "PaId": ids_of(values.members["PersonalAssistant"]),
        "ServiceUserId": ids_of(values.members["ServiceUser"]),
        "VisitCursor": cursors_of(values.visit_cursors),
        "AvailabilityCursor": cursors_of(values.availability_cursors),
        "IdCursor": cursors_of(values.id_cursors),
        "NamePart": names.map(_string),
        "MemberOrderMostlyDefault": _order(SCHEMA, "MemberOrder", "ID_ASC"),
        "VisitOrderMostlyDefault": _order(SCHEMA, "VisitOrder", "START_ASC"),
    }


# Arguments of the compiled fields retyped by meaning (`compilable`), so that their values
# are drawn from what exists: e.g. a visit list's `after` gets a visit list's cursors.
MEANINGS = {
    "first": "PageSize",
    "last": "PageSize",
    "clusterId": "ClusterId",
    "paId": "PaId",
    "serviceUserId": "ServiceUserId",
    "nameContains": "NamePart",
    "startsFrom": "Earlier",
    "startsBefore": "Later",
    # `clusterFigures`' period: mostly in order and shorter than a year, as asked for.
    "from": "Earlier",
    "to": "Later",
}
CURSORS = {
    "visit": "VisitCursor",
    "availability": "AvailabilityCursor",
    "member": "IdCursor",
    "cluster": "IdCursor",
}


# Orders drawn mostly at their default, so that the cursors drawn (the default order's)
# mostly fit; another order compiles too, and a cursor of another order is refused alike.
ORDERS = {"ID_ASC": "MemberOrderMostlyDefault", "START_ASC": "VisitOrderMostlyDefault"}


def _retyped(argument: graphql.GraphQLArgument, name: str) -> None:
    kind = graphql.GraphQLScalarType(name)
    if isinstance(argument.type, graphql.GraphQLNonNull):
        argument.type = graphql.GraphQLNonNull(kind)
    else:
        argument.type = kind


def compilable(schema: graphql.GraphQLSchema) -> graphql.GraphQLSchema:
    """The part of the schema the compiler declares: only the registry's fields and, on
    its lists, only the arguments it reads (so that most generated operations compile),
    their arguments typed by meaning (`MEANINGS`, `CURSORS`)."""
    pruned = graphql.build_schema(graphql.print_schema(schema))  # a copy to cut down
    for type_name, specs in FIELDS.items():
        fields = pruned.type_map[type_name].fields  # type: ignore[union-attr]
        for name in list(fields):
            spec = specs.get(name)
            if spec is None:
                del fields[name]
                continue
            arguments = fields[name].args
            if isinstance(spec, Page):
                # Not `last`/`before`: optional arguments are drawn independently, so
                # `first` with `last` (refused on both paths) would crowd out the rest.
                # `backwards` adds them to the operations drawn, page by page.
                known = set(spec.arguments) | ({"orderBy"} if spec.orders else set())
                known -= {"last", "before"}
                for argument in list(arguments):
                    if argument not in known:
                        del arguments[argument]
                for cursor in ("after", "before"):
                    if cursor in arguments and spec.source in CURSORS:
                        _retyped(arguments[cursor], CURSORS[spec.source])
                if spec.orders and "orderBy" in arguments:
                    default = next(iter(spec.orders))
                    if default in ORDERS:
                        _retyped(arguments["orderBy"], ORDERS[default])
            for argument_name, meaning in MEANINGS.items():
                if argument_name in arguments:
                    _retyped(arguments[argument_name], meaning)
    _retyped(pruned.type_map["Query"].fields["cluster"].args["id"], "ClusterId")  # type: ignore[union-attr]
    # An interface keeps the fields every one of its types kept.
    for named in pruned.type_map.values():
        if isinstance(named, graphql.GraphQLInterfaceType):
            kinds = pruned.get_implementations(named).objects
            for name in list(named.fields):
                if any(name not in kind.fields for kind in kinds):
                    del named.fields[name]
    return pruned


COMPILABLE = compilable(SCHEMA)


def _page_spec(parent: graphql.GraphQLNamedType, name: str) -> Page | None:
    """The registry's connection `parent.name` is, if it is one (an interface's from the
    first of its types that declares it)."""
    kinds = [parent]
    if isinstance(parent, graphql.GraphQLInterfaceType):
        kinds += COMPILABLE.get_implementations(parent).objects
    for kind in kinds:
        spec = FIELDS.get(kind.name, {}).get(name)
        if spec is not None:
            return spec if isinstance(spec, Page) else None
    return None


def _argument(name: str, value: graphql.ValueNode) -> graphql.ArgumentNode:
    return graphql.ArgumentNode(name=graphql.NameNode(value=name), value=value)


def backwards(
    operations: st.SearchStrategy[str], values: dict[str, st.SearchStrategy[graphql.ValueNode]]
) -> st.SearchStrategy[str]:
    """`operations` (of `COMPILABLE`) with some of their connections, at the root and
    nested, paged backwards: `last` (a page size, now and then out of range) and, half
    the time, `before` (a cursor of that list, now and then a bad one) in place of
    `first` and `after`; now and then `first` together with `last` (refused on both
    paths; the compiled one falls back), or a forward page cut `before` a cursor.

    Drawn here, page by page, rather than by hypothesis-graphql: it draws optional
    arguments independently, so most backward pages would also have `first`."""

    def page_arguments(
        draw: st.DrawFn, given: tuple[graphql.ArgumentNode, ...], spec: Page
    ) -> tuple[graphql.ArgumentNode, ...]:
        # Hypothesis draws 0 (what it shrinks to) far more often than the others: about
        # half the pages stay forwards (1 in 8 of those cut before a cursor) and 2 in 5
        # get `last` (a fifth of those with `first` too).
        way = draw(st.integers(0, 15))
        if way <= 1:  # forwards, as drawn
            return given
        cursor = values[CURSORS.get(spec.source, "String")]
        if way in (7, 14):  # forwards, cut before a cursor
            return (*given, _argument("before", draw(cursor)))
        by_name = {a.name.value: a for a in given}
        kept = [a for a in given if a.name.value not in ("first", "after")]
        if way in (13, 15):  # `first` and `last`: refused alike
            kept.insert(0, by_name.get("first") or _argument("first", draw(values["PageSize"])))
        elif "after" in by_name and draw(st.integers(0, 3)) == 0:
            kept.insert(0, by_name["after"])  # cut at both ends
        paging = [_argument("last", draw(values["PageSize"]))]
        if draw(st.booleans()):
            paging.append(_argument("before", draw(cursor)))
        return (*paging, *kept)

    def walk(
        draw: st.DrawFn, selections: graphql.SelectionSetNode | None, parent: Any
    ) -> graphql.SelectionSetNode | None:
        if selections is None:
            return None
        walked: list[graphql.SelectionNode] = []
        for selection in selections.selections:
            if isinstance(selection, graphql.InlineFragmentNode):
                condition = selection.type_condition
                kind = COMPILABLE.type_map[condition.name.value] if condition else parent
                inner = walk(draw, selection.selection_set, kind)
                walked.append(dataclasses.replace(selection, selection_set=inner))
                continue
            assert isinstance(selection, graphql.FieldNode), selection
            name = selection.name.value
            if not name.startswith("__"):
                spec = _page_spec(parent, name)
                if spec is not None:
                    arguments = page_arguments(draw, selection.arguments, spec)
                    selection = dataclasses.replace(selection, arguments=arguments)
                inner = walk(
                    draw,
                    selection.selection_set,
                    graphql.get_named_type(parent.fields[name].type),
                )
                selection = dataclasses.replace(selection, selection_set=inner)
            walked.append(selection)
        return dataclasses.replace(selections, selections=tuple(walked))

    @st.composite
    def paged(draw: st.DrawFn) -> str:
        operation = graphql.parse(draw(operations)).definitions[0]
        assert isinstance(operation, graphql.OperationDefinitionNode)
        selections = walk(draw, operation.selection_set, COMPILABLE.query_type)
        operation = dataclasses.replace(operation, selection_set=selections)
        return graphql.print_ast(graphql.DocumentNode(definitions=(operation,)))

    return paged()


def _merged(operations: tuple[str, str]) -> str:
    """One operation selecting the root fields of both."""
    first, second = (graphql.parse(o).definitions[0] for o in operations)
    assert isinstance(first, graphql.OperationDefinitionNode)
    assert isinstance(second, graphql.OperationDefinitionNode)
    selections = (*first.selection_set.selections, *second.selection_set.selections)
    merged = graphql.OperationDefinitionNode(
        operation=graphql.OperationType.QUERY,
        selection_set=graphql.SelectionSetNode(selections=selections),
    )
    return graphql.print_ast(graphql.DocumentNode(definitions=(merged,)))


def _exact(value: Any) -> bytes:
    """JSON with key order: dicts compare equal whatever their order, bytes do not."""
    return orjson.dumps(value)


@dataclass
class Tally:
    """How the operations ran on the compiled side: answered by one statement, or fell
    back to the resolvers."""

    compiled: int = 0
    fell_back: int = 0
    # Refused by a root field's access rule (`serviceUserContinuity` for a PA): the
    # resolvers' error, never compiled; counted apart, as neither.
    refused: int = 0


REFUSALS = {"FORBIDDEN", "UNAUTHENTICATED"}


async def compare(coop: DemoCoop, query: str, caller: str) -> tuple[str | None, bool, bool]:
    """`query` through both paths as `caller`: the difference (or None), whether the
    compiled path (or the fast lane) answered it (rather than falling back to the
    resolvers), and whether an access rule refused the caller."""
    token = coop.tokens[caller]
    # The clock stands still: an answer counted from now (`clusterFigures`' default
    # period ends now) must not move between the two runs.
    with time_machine.travel(dt.datetime.now(dt.UTC), tick=False):
        coop.app.state.compiled_reads = False
        try:
            resolved = await coop.api.query(query, token=token)
        finally:
            coop.app.state.compiled_reads = True
        answered: list[bool] = []
        lane = coop.app.state.fast_lane_answered
        with watching_compiled(answered):
            compiled = await coop.api.query(query, token=token)
    # A text the compiled path answered before (for another caller) may be answered by
    # the HTTP fast lane (api/fastlane.py), ahead of the extension.
    by_lane = coop.app.state.fast_lane_answered - lane
    assert by_lane in (0, 1) and not (by_lane and answered), (by_lane, answered)
    difference = None
    if _exact(compiled.get("data")) != _exact(resolved.get("data")):
        difference = f"data as {caller}:\n{resolved.get('data')}\n{compiled.get('data')}"
    elif compiled.get("errors") != resolved.get("errors"):
        difference = f"errors as {caller}:\n{resolved.get('errors')}\n{compiled.get('errors')}"
    codes = {(e.get("extensions") or {}).get("code") for e in resolved.get("errors") or ()}
    return difference, answered == [True] or by_lane == 1, bool(codes & REFUSALS)


def _roots(query: str) -> set[str]:
    document = graphql.parse(query)
    return {
        selection.name.value
        for definition in document.definitions
        if isinstance(definition, graphql.OperationDefinitionNode)
        for selection in definition.selection_set.selections
        if isinstance(selection, graphql.FieldNode)
    }


def _hunt(
    coop: DemoCoop,
    loop: asyncio.AbstractEventLoop,
    strategy: st.SearchStrategy[str],
    tally: Tally,
) -> Callable[[], None]:
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=SEED is None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(strategy)
    def run(query: str) -> None:
        # A root field the compiler does not know: the whole operation falls back.
        must_fall_back = not _roots(query) <= set(COMPILED_ROOTS) | {"__typename"}
        for caller in CALLERS:
            future = asyncio.run_coroutine_threadsafe(compare(coop, query, caller), loop)
            difference, compiled, refused = future.result(timeout=60)
            assert difference is None, f"{difference}\n{query}"
            assert not (compiled and must_fall_back), query
            if refused:
                assert not compiled, query
                tally.refused += 1
            elif compiled:
                tally.compiled += 1
            else:
                tally.fell_back += 1

    return run if SEED is None else seed(int(SEED))(run)


@pytest.fixture
def reads_compiled(demo: DemoCoop) -> Iterator[None]:
    yield
    demo.app.state.compiled_reads = demo.app.state.settings.compiled_reads


async def test_generated_reads_are_identical_on_both_paths(
    demo: DemoCoop, reads_compiled: None
) -> None:
    """Operations over what the compiler declares, as every caller."""
    values = scalars(demo)
    strategy = backwards(queries(COMPILABLE, fields=COMPILED_ROOTS, custom_scalars=values), values)
    tally = Tally()
    await asyncio.to_thread(_hunt(demo, asyncio.get_running_loop(), strategy, tally))
    # Not vacuous: most of them ran on the compiled path (about 3 in 5 at the defaults:
    # drawn ids, cursors and page sizes are sometimes bad on purpose, and fall back).
    # Callers an access rule refuses never compile: counted apart, as neither.
    assert tally.compiled > tally.fell_back, tally


async def test_generated_reads_of_anything_else_fall_back_identically(
    demo: DemoCoop, reads_compiled: None
) -> None:
    """Operations over the whole schema of the same root fields and of others (fields,
    arguments and roots the compiler does not know), and operations of what compiles
    mixed with other root fields: what the compiler does not know falls back, and
    answers the same."""
    values = scalars(demo)
    strategy = st.one_of(
        queries(SCHEMA, fields=COMPILED_ROOTS + OTHER_ROOTS, custom_scalars=values),
        st.tuples(
            backwards(queries(COMPILABLE, fields=COMPILED_ROOTS, custom_scalars=values), values),
            queries(SCHEMA, fields=OTHER_ROOTS, custom_scalars=values),
        ).map(_merged),
    )
    tally = Tally()
    await asyncio.to_thread(_hunt(demo, asyncio.get_running_loop(), strategy, tally))
    assert tally.fell_back > tally.compiled, tally


# Differences the generated operations found, minimised, kept as explicit cases.
FOUND = [
    # A connection asked for nothing that reads its rows (only `__typename`, or
    # `pageInfo { hasPreviousPage }`): the compiled select gave one row per row of the
    # page, an INTERNAL_SERVER_ERROR past one ("more than one row returned by a
    # subquery") and null for an empty page. It falls back now.
    "{ visits(first: 2) { pageInfo { hasPreviousPage } } }",
    "{ visits(first: 2) { __typename } }",
    '{ visits(first: 2, startsFrom: "2099-01-01T00:00:00+00:00") { __typename } }',
    "{ clusters(first: 1) { nodes { serviceUsers(first: 2) { pageInfo { hasPreviousPage } } } } }",
]


@pytest.mark.parametrize("query", FOUND)
async def test_differences_found_stay_fixed(
    demo: DemoCoop, reads_compiled: None, query: str
) -> None:
    for caller in CALLERS:
        difference, _, _ = await compare(demo, query, caller)
        assert difference is None, f"{difference}\n{query}"
