"""Relay connections as list screens use them: `orderBy` on the root lists, paging
backwards with `last`/`before`, and `totalCount` counted only when selected."""

from __future__ import annotations

import base64
import datetime as dt
from dataclasses import dataclass
from typing import Any

import pytest
from graphql import GraphQLObjectType, get_named_type, parse
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from care.enums import Role
from care.models import CoverRequest, Member
from schema import create_schema
from schema.limits import calculate_query_cost
from tests.conftest import Api, StatementCounter
from tests.factories import Build, at, gid

ADMIN = (Role.ADMIN, None)
COUNT = "count(*) OVER"  # the window count `care.paging.page` adds for totalCount


@dataclass
class Rota:
    visits: list[tuple[dt.datetime, int]]  # (start, id) of every visit
    owner: dict[int, int]  # the service user of each visit, by visit id
    members: list[tuple[str, int]]  # (name, id) of every member
    requests: list[tuple[dt.datetime, int]]  # (opened_at, id) of every cover request
    service_users: list[Member]


@pytest.fixture
async def rota(db: AsyncSession) -> Rota:
    """Visits sharing start times and members sharing names, so only the id tiebreak
    keeps pages from skipping or repeating."""
    b = Build(db)
    await b.las()
    await b.coop()
    cluster = await b.cluster("Finchley")
    ada = await b.service_user("Ada User", cluster=cluster)
    bob = await b.service_user("Bob User", cluster=cluster)
    await b.service_user("Ada User", cluster=cluster)  # a second Ada
    visits = []
    owner: dict[int, int] = {}
    for i, day in enumerate((3, 1, 2, 1, 3, 2, 1)):
        pa = await b.pa(f"PA {i}", cluster=cluster)  # one PA a round: never double-booked
        for su in (ada, bob):
            v = await b.visit(su, pa, at(days=day, hours=0 if su is ada else 2))
            visits.append((v.during.lower, v.id))
            owner[v.id] = su.id
    requests = []
    base = dt.datetime(2026, 5, 1, 9, tzinfo=dt.UTC)
    for i, hours in enumerate((5, 1, 3, 1, 4)):
        v = await b.visit(ada, None, at(days=10 + i), status="NEEDS_COVER")
        visits.append((v.during.lower, v.id))
        owner[v.id] = ada.id
        request = CoverRequest(
            visit_id=v.id, reason="UNASSIGNED", opened_at=base + dt.timedelta(hours=hours)
        )
        db.add(request)
        await db.flush()
        requests.append((request.opened_at, request.id))
    await db.commit()
    members = [(m.name, m.id) for m in await _all_members(db)]
    return Rota(visits, owner, members, requests, [ada, bob])


async def _all_members(db: AsyncSession) -> list[Member]:
    return list((await db.execute(select(Member))).scalars())


LIST = """query($first: Int, $last: Int, $after: String, $before: String, $order: %s) {
  %s(first: $first, last: $last, after: $after, before: $before, orderBy: $order) {
    edges { cursor node { id } }
    pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
  }
}"""


async def walk(
    api: Api, field: str, enum: str, order: str, size: int, backwards: bool
) -> list[str]:
    """Every id of the list, page by page in one direction, checking each page's
    pageInfo; in the list's order either way."""
    query = LIST % (enum, field)
    pages: list[list[str]] = []
    cursor = None
    while True:
        args: dict[str, Any] = {"order": order}
        if backwards:
            args.update(last=size, before=cursor)
        else:
            args.update(first=size, after=cursor)
        got = (await api.data(query, args, as_=ADMIN))[field]
        ids = [e["node"]["id"] for e in got["edges"]]
        info = got["pageInfo"]
        assert ids, "a walk never meets an empty page"
        assert info["startCursor"] == got["edges"][0]["cursor"]
        assert info["endCursor"] == got["edges"][-1]["cursor"]
        more = info["hasPreviousPage"] if backwards else info["hasNextPage"]
        came_from = info["hasNextPage"] if backwards else info["hasPreviousPage"]
        assert came_from == (cursor is not None)
        pages.append(ids)
        if not more:
            break
        assert len(ids) == size
        cursor = info["startCursor"] if backwards else info["endCursor"]
    if backwards:
        pages.reverse()
    return [i for page in pages for i in page]


def ids_of(type_name: str, keyed: list[tuple[Any, int]], descending: bool) -> list[str]:
    return [gid(type_name, pk) for _, pk in sorted(keyed, reverse=descending)]


@pytest.mark.parametrize("backwards", [False, True])
@pytest.mark.parametrize(("order", "descending"), [("START_ASC", False), ("START_DESC", True)])
async def test_visits_page_in_either_order_and_direction(
    api: Api, rota: Rota, order: str, descending: bool, backwards: bool
) -> None:
    got = await walk(api, "visits", "VisitOrder", order, 3, backwards)
    assert got == ids_of("Visit", rota.visits, descending)


@pytest.mark.parametrize("backwards", [False, True])
@pytest.mark.parametrize(
    ("order", "descending", "by_name"),
    [("ID_ASC", False, False), ("NAME_ASC", False, True), ("NAME_DESC", True, True)],
)
async def test_members_page_by_name_with_id_tiebreak(
    api: Api, rota: Rota, order: str, descending: bool, by_name: bool, backwards: bool
) -> None:
    got = await walk(api, "members", "MemberOrder", order, 2, backwards)
    keyed = rota.members if by_name else [(0, pk) for _, pk in rota.members]
    expected = [pk for _, pk in sorted(keyed, reverse=descending)]
    assert [int(_decode_pk(i)) for i in got] == expected


def _decode_pk(global_id: str) -> str:
    return base64.b64decode(global_id).decode().split(":")[1]


@pytest.mark.parametrize("backwards", [False, True])
@pytest.mark.parametrize(("order", "descending"), [("OPENED_ASC", False), ("OPENED_DESC", True)])
async def test_cover_requests_by_age(
    api: Api, rota: Rota, order: str, descending: bool, backwards: bool
) -> None:
    got = await walk(api, "coverRequests", "CoverRequestOrder", order, 2, backwards)
    assert got == ids_of("CoverRequest", rota.requests, descending)


async def test_default_orders_are_todays(api: Api, rota: Rota) -> None:
    data = await api.data(
        "{ visits(first: 100) { nodes { id } } members(first: 100) { nodes { id } } "
        "coverRequests(first: 100) { nodes { id } } }",
        as_=ADMIN,
    )
    assert [n["id"] for n in data["visits"]["nodes"]] == ids_of("Visit", rota.visits, False)
    assert [int(_decode_pk(n["id"])) for n in data["members"]["nodes"]] == sorted(
        pk for _, pk in rota.members
    )
    # Cover requests by their visit's start, as before (the visits are 10+ days out in
    # the order they were created).
    assert [n["id"] for n in data["coverRequests"]["nodes"]] == [
        gid("CoverRequest", pk) for _, pk in rota.requests
    ]


@pytest.mark.parametrize(
    ("field", "enum", "minted", "used"),
    [
        ("visits", "VisitOrder", "START_ASC", "START_DESC"),
        ("visits", "VisitOrder", "START_DESC", "START_ASC"),
        ("members", "MemberOrder", "ID_ASC", "NAME_ASC"),
        ("members", "MemberOrder", "NAME_ASC", "NAME_DESC"),
        ("members", "MemberOrder", "NAME_DESC", "ID_ASC"),
        ("coverRequests", "CoverRequestOrder", "OPENED_ASC", "OPENED_DESC"),
        ("coverRequests", "CoverRequestOrder", "OPENED_DESC", "VISIT_START_ASC"),
        ("coverRequests", "CoverRequestOrder", "VISIT_START_ASC", "OPENED_ASC"),
    ],
)
@pytest.mark.parametrize("argument", ["after", "before"])
async def test_a_cursor_is_refused_under_another_order(
    api: Api, rota: Rota, field: str, enum: str, minted: str, used: str, argument: str
) -> None:
    query = LIST % (enum, field)
    page = (await api.data(query, {"first": 2, "order": minted}, as_=ADMIN))[field]
    cursor = page["pageInfo"]["endCursor"]
    body = await api.query(query, {"first": 2, argument: cursor, "order": used}, as_=ADMIN)
    assert body["data"] is None or body["data"][field] is None, body
    [error] = body["errors"]
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert "cursor" in error["message"]
    # ... and accepted under its own.
    again = await api.data(query, {"first": 2, argument: cursor, "order": minted}, as_=ADMIN)
    assert again[field]["edges"]


async def test_after_and_before_together_cut_both_ends(api: Api, rota: Rota) -> None:
    query = LIST % ("VisitOrder", "visits")
    every = (await api.data(query, {"first": 100}, as_=ADMIN))["visits"]["edges"]
    after, before = every[2]["cursor"], every[8]["cursor"]
    middle = [e["node"]["id"] for e in every[3:8]]
    for args in ({"first": 100}, {"last": 100}, {"first": 2}, {"last": 2}):
        got = (await api.data(query, {**args, "after": after, "before": before}, as_=ADMIN))[
            "visits"
        ]
        ids = [e["node"]["id"] for e in got["edges"]]
        if "first" in args:
            assert ids == middle[: args["first"]]
            assert got["pageInfo"]["hasNextPage"] == (args["first"] < len(middle))
        else:
            assert ids == middle[-args["last"] :]
            assert got["pageInfo"]["hasPreviousPage"] == (args["last"] < len(middle))


async def test_last_alone_is_the_end_of_the_list(api: Api, rota: Rota) -> None:
    data = await api.data(
        "{ visits(last: 3) { totalCount nodes { id } pageInfo { hasNextPage hasPreviousPage } } }",
        as_=ADMIN,
    )
    assert [n["id"] for n in data["visits"]["nodes"]] == ids_of("Visit", rota.visits, False)[-3:]
    assert data["visits"]["pageInfo"] == {"hasNextPage": False, "hasPreviousPage": True}
    assert data["visits"]["totalCount"] == len(rota.visits)


@pytest.mark.parametrize(
    ("arguments", "variables"),
    [
        ("first: 2, last: 2", {}),
        ("first: $n, last: 2", {"n": 5}),
        ("first: 20, last: 2", {}),  # the default's value, written out
    ],
)
async def test_first_with_last_is_refused(
    api: Api, rota: Rota, arguments: str, variables: dict[str, Any]
) -> None:
    declared = "($n: Int)" if variables else ""
    query = f"query{declared} {{ visits({arguments}) {{ nodes {{ id }} }} }}"
    body = await api.query(query, variables, as_=ADMIN)
    [error] = body["errors"]
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert "not both" in error["message"]


async def test_first_null_with_last_pages_backwards(api: Api, rota: Rota) -> None:
    """Relay clients send every paging variable, the unused ones null."""
    query = "query($n: Int) { visits(first: $n, last: 2) { nodes { id } } }"
    for variables in ({"n": None}, {}):
        data = await api.data(query, variables, as_=ADMIN)
        assert [n["id"] for n in data["visits"]["nodes"]] == ids_of("Visit", rota.visits, False)[
            -2:
        ]
    data = await api.data("{ visits(first: null, last: 1) { nodes { id } } }", as_=ADMIN)
    assert len(data["visits"]["nodes"]) == 1


@pytest.mark.parametrize("value", [0, -1, 101])
async def test_last_is_bounded_like_first(api: Api, rota: Rota, value: int) -> None:
    for query, variables in (
        (f"{{ visits(last: {value}) {{ nodes {{ id }} }} }}", {}),
        ("query($n: Int) { visits(last: $n) { nodes { id } } }", {"n": value}),
    ):
        body = await api.query(query, variables, as_=ADMIN)
        [error] = body["errors"]
        assert error["extensions"]["code"] == "BAD_USER_INPUT"
        assert "`last` must be between 1 and 100" in error["message"]


@pytest.mark.parametrize("cursor", ["junk!", "W10", "eyJvIjoxfQ"])
async def test_a_malformed_before_is_refused(api: Api, rota: Rota, cursor: str) -> None:
    body = await api.query(
        "query($c: String) { visits(last: 2, before: $c) { nodes { id } } }",
        {"c": cursor},
        as_=ADMIN,
    )
    [error] = body["errors"]
    assert error["extensions"]["code"] == "BAD_USER_INPUT"


NESTED = """query($last: Int, $before: String) {
  clusters(first: 10) { nodes {
    serviceUsers(first: 10) { nodes { id
      visits(last: $last, before: $before) {
        nodes { id }
        pageInfo { hasPreviousPage hasNextPage startCursor }
      }
    } }
  } }
}"""


@pytest.mark.usefixtures("resolvers_only")
async def test_nested_pages_go_backwards_per_parent_in_constant_statements(
    api: Api, rota: Rota, sql_counter: StatementCounter
) -> None:
    sql_counter.count = 0
    data = await api.data(NESTED, {"last": 2}, as_=ADMIN)
    statements = sql_counter.count
    people = data["clusters"]["nodes"][0]["serviceUsers"]["nodes"]
    assert len(people) == 3
    for person in people:
        page = person["visits"]
        owned = sorted(
            (start, pk)
            for start, pk in rota.visits
            if gid("ServiceUser", rota.owner[pk]) == person["id"]
        )
        assert [n["id"] for n in page["nodes"]] == [gid("Visit", pk) for _, pk in owned[-2:]]
        assert page["pageInfo"]["hasPreviousPage"] == (len(owned) > 2)
        assert page["pageInfo"]["hasNextPage"] is False
    # The same statements as paging forwards: one per level, whatever the number of people.
    sql_counter.count = 0
    forwards = NESTED.replace("last: $last, before: $before", "first: $last, after: $before")
    await api.data(forwards, {"last": 2}, as_=ADMIN)
    assert sql_counter.count == statements == 3, sql_counter.statements

    # Backwards from a cursor, per parent: the page before Ada's last two.
    ada = next(p for p in people if p["visits"]["pageInfo"]["hasPreviousPage"])
    cursor = ada["visits"]["pageInfo"]["startCursor"]
    data = await api.data(NESTED, {"last": 2, "before": cursor}, as_=ADMIN)
    again = next(
        p for p in data["clusters"]["nodes"][0]["serviceUsers"]["nodes"] if p["id"] == ada["id"]
    )
    owned = sorted(
        (start, pk) for start, pk in rota.visits if gid("ServiceUser", rota.owner[pk]) == ada["id"]
    )
    assert [n["id"] for n in again["visits"]["nodes"]] == [
        gid("Visit", pk) for _, pk in owned[-4:-2]
    ]
    assert again["visits"]["pageInfo"]["hasNextPage"] is True


# --- totalCount only when selected ----------------------------------------------------

COUNTED = [
    "{ visits(first: 2) { totalCount nodes { id } } }",
    "{ visits(first: 2) { ...Page } } fragment Page on VisitConnection { totalCount }",
    "{ visits(first: 2) { ... on VisitConnection { totalCount } nodes { id } } }",
    "query($yes: Boolean!) { visits(first: 2) { totalCount @include(if: $yes) nodes { id } } }",
    "{ visits(first: 2) { nodes { id } } again: visits(first: 2) { total: totalCount } }",
]
NOT_COUNTED = [
    "{ visits(first: 2) { nodes { id } pageInfo { hasNextPage } } }",
    "{ visits(first: 2) { ...Page } } fragment Page on VisitConnection { nodes { id } }",
    "query($yes: Boolean!) { visits(first: 2) { totalCount @include(if: $yes) nodes { id } } }",
    "{ visits(first: 2) { totalCount @skip(if: true) nodes { id } } }",
    "{ visits(first: 2) { ... @skip(if: true) { totalCount } nodes { id } } }",
]


@pytest.mark.parametrize("query", COUNTED)
@pytest.mark.usefixtures("resolvers_only")
async def test_total_count_is_counted_when_selected(
    api: Api, rota: Rota, sql_counter: StatementCounter, query: str
) -> None:
    sql_counter.count, sql_counter.statements = 0, []
    data = await api.data(query, {"yes": True}, as_=ADMIN)
    totals = [
        page.get("totalCount", page.get("total"))
        for page in data.values()
        if "totalCount" in page or "total" in page
    ]
    assert totals == [len(rota.visits)]
    assert sum(COUNT in s for s in sql_counter.statements) == 1, sql_counter.statements


@pytest.mark.parametrize("query", NOT_COUNTED)
@pytest.mark.usefixtures("resolvers_only")
async def test_total_count_is_not_counted_when_not_selected(
    api: Api, rota: Rota, sql_counter: StatementCounter, query: str
) -> None:
    sql_counter.count, sql_counter.statements = 0, []
    data = await api.data(query, {"yes": False}, as_=ADMIN)
    assert "totalCount" not in data["visits"]
    visit_reads = [s for s in sql_counter.statements if "FROM visit" in s]
    assert visit_reads, sql_counter.statements
    assert not any(COUNT in s for s in sql_counter.statements), sql_counter.statements


@pytest.mark.usefixtures("resolvers_only")
async def test_nested_total_count_only_where_selected(
    api: Api, rota: Rota, sql_counter: StatementCounter
) -> None:
    query = """{ clusters(first: 5) { nodes {
      serviceUsers(first: 5) { totalCount nodes { visits(first: 1) { nodes { id } } } }
    } } }"""
    sql_counter.count, sql_counter.statements = 0, []
    data = await api.data(query, as_=ADMIN)
    assert data["clusters"]["nodes"][0]["serviceUsers"]["totalCount"] == 3
    assert sql_counter.count == 3
    counted = [s for s in sql_counter.statements if COUNT in s]
    # Only the service users' page counts; the clusters' and the visits' do not.
    assert len(counted) == 1 and "cluster_service_user" in counted[0], sql_counter.statements


async def test_total_count_of_a_coordinator_follows_privacy(api: Api, db: AsyncSession) -> None:
    """Ordered and counted or not, a coordinator sees the same members."""
    b = Build(db)
    await b.las()
    await b.coop()
    cora = await b.worker("Cora Ordinator")
    mine = await b.cluster("Finchley", support_worker=cora)
    theirs = await b.cluster("East")
    await b.service_user("Zed Mine", cluster=mine)
    await b.service_user("Amy Theirs", cluster=theirs)
    await db.commit()
    as_cora = (Role.COORDINATOR, cora.id)
    names = {}
    for order in ("ID_ASC", "NAME_ASC", "NAME_DESC"):
        data = await api.data(
            f"{{ members(orderBy: {order}, membershipClass: SERVICE_USER) "
            "{ totalCount nodes { name } } }",
            as_=as_cora,
        )
        names[order] = [n["name"] for n in data["members"]["nodes"]]
        assert data["members"]["totalCount"] == len(names[order])
    assert names["ID_ASC"] == names["NAME_ASC"] == names["NAME_DESC"] == ["Zed Mine"]


def test_last_costs_like_first() -> None:
    schema = create_schema()._schema

    def cost(arguments: str) -> int | None:
        document = parse(f"{{ visits({arguments}) {{ nodes {{ id pa {{ name }} }} }} }}")
        return calculate_query_cost(schema, document, None, {})

    assert cost("last: 100") == cost("first: 100")
    assert cost("last: 3") == cost("first: 3") != cost("first: 100")


async def test_a_clusters_people_page_backwards_and_forwards_alike(api: Api, rota: Rota) -> None:
    """Cluster.serviceUsers reuses its statement per shape: paging one way never reruns the
    statement of the other."""
    query = """query($first: Int, $last: Int, $after: String, $before: String) {
      clusters(first: 1) { nodes { serviceUsers(first: $first, last: $last, after: $after,
        before: $before) { edges { cursor node { id } } pageInfo { hasPreviousPage hasNextPage } }
      } } }"""

    async def people(**args: Any) -> dict[str, Any]:
        data = await api.data(query, args, as_=ADMIN)
        page: dict[str, Any] = data["clusters"]["nodes"][0]["serviceUsers"]
        return page

    every = await people(first=10)
    ids = [e["node"]["id"] for e in every["edges"]]
    assert len(ids) == 3
    last = await people(last=2)
    assert [e["node"]["id"] for e in last["edges"]] == ids[1:]
    assert last["pageInfo"] == {"hasPreviousPage": True, "hasNextPage": False}
    before = await people(last=2, before=last["edges"][0]["cursor"])
    assert [e["node"]["id"] for e in before["edges"]] == ids[:1]
    assert before["pageInfo"] == {"hasPreviousPage": False, "hasNextPage": True}
    after = await people(first=2, after=every["edges"][0]["cursor"])
    assert [e["node"]["id"] for e in after["edges"]] == ids[1:]
    assert after["pageInfo"] == {"hasPreviousPage": True, "hasNextPage": False}


def test_every_connection_pages_both_ways() -> None:
    schema = create_schema()._schema
    connections = {
        f"{name}.{field_name}": field
        for name, t in schema.type_map.items()
        if isinstance(t, GraphQLObjectType) and not name.startswith("__")
        for field_name, field in t.fields.items()
        if get_named_type(field.type).name.endswith("Connection")
    }
    assert len(connections) >= 17
    missing = {
        name
        for name, field in connections.items()
        if not {"first", "after", "last", "before"} <= field.args.keys()
    }
    assert missing == set()
