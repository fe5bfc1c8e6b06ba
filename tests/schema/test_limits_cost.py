"""Query cost limiting (schema/limits.py) on a small self-contained schema."""

from __future__ import annotations

import time
import warnings
from collections import Counter
from typing import Any

import pytest
import strawberry
from fastapi import FastAPI
from graphql import parse
from strawberry.fastapi import GraphQLRouter

from schema.limits import QueryCostLimiter, calculate_query_cost

CALLS: Counter[str] = Counter()
DEFAULT_PAGE_SIZE = 5
LIST_SIZE = 3


@strawberry.interface
class Named:
    name: str


@strawberry.type
class Skill(Named):
    level: int


@strawberry.type
class Item(Named):
    tags: list[str | None]
    skills: list[Skill]

    @strawberry.field
    def children(self, first: int | None = None) -> ItemConnection:
        CALLS["children"] += 1
        return make_connection(first or 0)

    @strawberry.field
    def related(self) -> ItemConnection:
        CALLS["related"] += 1
        return make_connection(1)


@strawberry.type
class ItemEdge:
    node: Item


@strawberry.type
class ItemConnection:
    edges: list[ItemEdge]
    nodes: list[Item]
    total_count: int


def make_connection(size: int) -> ItemConnection:
    items = [
        Item(name=f"item {i}", tags=["a", None], skills=[Skill(name="s", level=1)])
        for i in range(size)
    ]
    return ItemConnection(
        edges=[ItemEdge(node=item) for item in items], nodes=items, total_count=size
    )


@strawberry.type
class Query:
    @strawberry.field
    def items(self, first: int | None = None) -> ItemConnection:
        CALLS["items"] += 1
        return make_connection(min(first or DEFAULT_PAGE_SIZE, 3))

    @strawberry.field
    def search(self) -> list[Named]:
        CALLS["search"] += 1
        return [Item(name="i", tags=[], skills=[]), Skill(name="s", level=2)]


def build_schema(max_cost: int = 1_000_000) -> strawberry.Schema:
    return strawberry.Schema(
        query=Query,
        types=[Item, Skill],
        extensions=[
            lambda: QueryCostLimiter(
                max_cost=max_cost, default_page_size=DEFAULT_PAGE_SIZE, list_size=LIST_SIZE
            )
        ],
    )


SCHEMA = build_schema()


@pytest.fixture(autouse=True)
def reset_calls() -> None:
    CALLS.clear()


def cost(
    query: str,
    variables: dict[str, Any] | None = None,
    operation_name: str | None = None,
) -> int:
    result = SCHEMA.execute_sync(query, variables, operation_name=operation_name)
    assert result.errors is None, result.errors
    assert result.extensions is not None
    assert result.extensions["cost"]["limit"] == 1_000_000
    requested = result.extensions["cost"]["requested"]
    assert isinstance(requested, int)
    return requested


def test_connection_with_first() -> None:
    # items 2, then x10: edges 2, node 2, name 0 (edges does not multiply again)
    assert cost("{ items(first: 10) { edges { node { name } } } }") == 2 + 10 * (2 + 2 + 0)


def test_connection_without_first_uses_default_page_size() -> None:
    assert cost("{ items { edges { node { name } } } }") == 2 + DEFAULT_PAGE_SIZE * 4


def test_scalar_list_is_a_leaf() -> None:
    assert cost("{ items(first: 2) { edges { node { name tags } } } }") == 2 + 2 * 4


def test_scalars_are_free_and_objects_are_not() -> None:
    # a scalar comes with its object's row; an object is a read (or a loader call)
    assert cost("{ items(first: 2) { totalCount nodes { name tags } } }") == 2 + 2 * 2
    assert cost("{ items(first: 2) { nodes { skills { name level } } } }") == 2 + 2 * (2 + 2)


def test_connection_fields_all_count_per_item() -> None:
    # nodes and totalCount are ordinary fields multiplied by the page size
    assert cost("{ items(first: 2) { totalCount nodes { name } } }") == 2 + 2 * (0 + 2 + 0)


def test_object_list_multiplies_by_list_size() -> None:
    # skills: [Skill!]! multiplies its children by LIST_SIZE
    query = "{ items(first: 2) { nodes { skills { level name } } } }"
    assert cost(query) == 2 + 2 * (2 + (2 + LIST_SIZE * (0 + 0)))


def test_nested_connections_multiply() -> None:
    query = "{ items(first: 4) { nodes { children(first: 3) { edges { node { name } } } } } }"
    children = 2 + 3 * (2 + 2 + 0)
    assert cost(query) == 2 + 4 * (2 + children)


def test_edges_under_a_field_without_first_multiply() -> None:
    # `related` has no `first`, so its `edges` list multiplies by LIST_SIZE
    query = "{ items(first: 2) { nodes { related { edges { node { name } } } } } }"
    related = 2 + (2 + LIST_SIZE * (2 + 0))
    assert cost(query) == 2 + 2 * (2 + related)


def test_named_fragments_count_at_every_spread() -> None:
    query = """
        query {
          a: items(first: 2) { edges { node { ...F } } }
          b: items(first: 3) { nodes { ...F } }
        }
        fragment F on Item { name tags }
    """
    assert cost(query) == (2 + 2 * (2 + 2 + 0)) + (2 + 3 * (2 + 0))


def test_fragment_is_transparent_for_the_connection_rule() -> None:
    plain = cost("{ items(first: 2) { edges { node { name } } } }")
    spread = cost(
        "{ items(first: 2) { ...Conn } }"
        " fragment Conn on ItemConnection { edges { node { name } } }"
    )
    inline = cost("{ items(first: 2) { ... on ItemConnection { edges { node { name } } } } }")
    assert plain == spread == inline == 2 + 2 * 4


def test_inline_fragments_on_interface_all_count() -> None:
    query = "{ search { __typename name ... on Item { tags } ... on Skill { level } } }"
    assert cost(query) == 2 + LIST_SIZE * (0 + 0 + 0 + 0)


def test_fragment_on_interface_switches_type() -> None:
    query = """
        { search { ...N } }
        fragment N on Named { name ... on Item { skills { level } } }
    """
    assert cost(query) == 2 + LIST_SIZE * (0 + (2 + LIST_SIZE * 0))


def test_first_from_variable() -> None:
    query = "query Q($n: Int) { items(first: $n) { nodes { name } } }"
    assert cost(query, {"n": 7}) == 2 + 7 * 2
    assert cost(query) == 2 + DEFAULT_PAGE_SIZE * 2
    assert cost(query, {"n": None}) == 2 + DEFAULT_PAGE_SIZE * 2


def test_first_from_variable_default() -> None:
    query = "query Q($n: Int = 4) { items(first: $n) { nodes { name } } }"
    assert cost(query) == 2 + 4 * 2
    assert cost(query, {"n": 6}) == 2 + 6 * 2


def test_skip_and_include() -> None:
    query = "query Q($s: Boolean!) { items(first: 2) "
    query += "{ nodes { name skills @skip(if: $s) { level } } } }"
    assert cost(query, {"s": True}) == 2 + 2 * 2
    assert cost(query, {"s": False}) == 2 + 2 * (2 + 2)
    assert cost("{ items(first: 2) @include(if: false) { totalCount } search { name } }") == 2


def test_introspection_costs_nothing() -> None:
    assert cost("{ __schema { types { name fields { name type { name } } } } }") == 0
    assert cost("{ __typename items(first: 1) { __typename nodes { __typename name } } }") == 4


def test_only_the_executed_operation_counts() -> None:
    query = """
        query Cheap { items(first: 1) { totalCount } }
        query Dear { items(first: 50) { nodes { name } } }
    """
    assert cost(query, operation_name="Cheap") == 2
    assert cost(query, operation_name="Dear") == 2 + 50 * 2


def test_fragment_cycles_terminate() -> None:
    # Validation forbids cycles; the calculator must still stop if handed one.
    document = parse(
        """
        { items(first: 1) { nodes { ...A } } }
        fragment A on Item { name children(first: 2) { nodes { ...A } } }
        """
    )
    graphql_schema = SCHEMA._schema
    a = 0 + (2 + 2 * (2 + 0))
    assert calculate_query_cost(graphql_schema, document) == 2 + 1 * (2 + a)


def test_fragment_fan_out_is_counted_in_full_and_fast() -> None:
    depth = 30
    fragments = "\n".join(
        f"fragment F{i} on Item {{ ...F{i + 1} ...F{i + 1} }}" for i in range(depth)
    )
    document = parse(
        f"{{ items(first: 1) {{ nodes {{ ...F0 }} }} }}\n{fragments}\n"
        f"fragment F{depth} on Item {{ skills {{ level }} }}"
    )
    start = time.perf_counter()
    result = calculate_query_cost(SCHEMA._schema, document, default_page_size=5, list_size=3)
    assert time.perf_counter() - start < 1
    assert result == 2 + (2 + 2 * 2**depth)


def test_over_limit_is_rejected_before_any_resolver_runs() -> None:
    schema = build_schema(max_cost=100)
    query = "{ items(first: 50) { edges { node { name children(first: 10) { totalCount } } } } }"
    result = schema.execute_sync(query)
    expected = 2 + 50 * (2 + 2 + 0 + (2 + 10 * 0))
    assert result.data is None
    assert result.errors is not None and len(result.errors) == 1
    error = result.errors[0]
    assert error.extensions == {"code": "QUERY_TOO_COSTLY", "cost": expected, "limit": 100}
    assert error.message == (
        f"Query cost {expected} exceeds the limit of 100. "
        "Ask for smaller pages (first) or fewer fields."
    )
    assert result.extensions == {"cost": {"requested": expected, "limit": 100}}
    assert sum(CALLS.values()) == 0


async def test_over_limit_is_rejected_async() -> None:
    schema = build_schema(max_cost=100)
    result = await schema.execute(
        "query Q($n: Int) { items(first: $n) { nodes { name } } }", {"n": 60}
    )
    assert result.data is None
    assert result.errors is not None
    assert [e.extensions for e in result.errors] == [
        {"code": "QUERY_TOO_COSTLY", "cost": 122, "limit": 100}
    ]
    assert result.extensions == {"cost": {"requested": 122, "limit": 100}}
    assert sum(CALLS.values()) == 0


async def test_at_the_limit_runs_and_reports_cost() -> None:
    schema = build_schema(max_cost=122)
    result = await schema.execute("{ items(first: 60) { nodes { name } } }")
    assert result.errors is None
    assert result.data is not None and len(result.data["items"]["nodes"]) == 3
    assert result.extensions == {"cost": {"requested": 122, "limit": 122}}
    assert CALLS["items"] == 1


def test_successful_result_reports_cost() -> None:
    schema = build_schema(max_cost=5000)
    result = schema.execute_sync("{ items(first: 2) { nodes { name } } }")
    assert result.errors is None
    assert result.extensions == {"cost": {"requested": 6, "limit": 5000}}


@pytest.mark.parametrize("query", ["{ items(first: ", "{ nope }"])
def test_unparsable_or_invalid_documents_are_left_alone(query: str) -> None:
    schema = build_schema(max_cost=1)
    result = schema.execute_sync(query)
    assert result.errors is not None
    assert all((e.extensions or {}).get("code") != "QUERY_TOO_COSTLY" for e in result.errors)
    assert not (result.extensions or {}).get("cost")


def test_http_response_shape() -> None:
    with warnings.catch_warnings():
        # starlette's TestClient warns about httpx at import time
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient

    app = FastAPI()
    app.include_router(GraphQLRouter(build_schema(max_cost=100)), prefix="/graphql")
    client = TestClient(app)
    response = client.post("/graphql", json={"query": "{ items(first: 60) { nodes { name } } }"})
    assert response.status_code == 200
    assert response.json() == {
        "data": None,
        "errors": [
            {
                "message": "Query cost 122 exceeds the limit of 100. "
                "Ask for smaller pages (first) or fewer fields.",
                "extensions": {"code": "QUERY_TOO_COSTLY", "cost": 122, "limit": 100},
            }
        ],
        "extensions": {"cost": {"requested": 122, "limit": 100}},
    }
    assert sum(CALLS.values()) == 0


def test_the_cost_cache_keys_on_what_the_cost_reads() -> None:
    from schema import create_schema
    from schema.limits import CostCache

    schema = create_schema()._schema
    query = """query Q($n: Int, $skip: Boolean!, $name: String) {
      members(first: $n, nameContains: $name) @skip(if: $skip) {
        edges { node { name } } } }"""
    document = parse(query)
    cache = CostCache(size=4)

    def cost(**variables: Any) -> int | None:
        found = cache.cost(schema, document, query, None, variables, default_page_size=20)
        fresh = calculate_query_cost(schema, document, None, variables, default_page_size=20)
        assert found == fresh, variables  # never a stale answer from the cache
        return found

    small, large = cost(n=2, skip=False), cost(n=50, skip=False)
    assert small is not None and large is not None and large > small
    assert cost(n=2, skip=False) == small  # from the cache
    assert cost(n=2.0, skip=False) == small  # a whole float is the Int it coerces to
    assert cost(n=2, skip=True) == 0
    assert cost(n=2, skip=False, name="smith") != small  # a search argument given costs more
    assert cost(n=2, skip=False, name="jones") == cost(n=2, skip=False, name="smith")
    assert cost(n=None, skip=False) == cost(skip=False)  # the schema's default page
    assert len(cache.entries) <= 4
