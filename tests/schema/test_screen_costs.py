"""The queries real screens make fit the cost limit with room to spare (issue 11).

Every operation of the README's and docs/' `graphql` blocks is costed as written and as a
normalised client cache sends it: `id` and `__typename` added to every object selection
(by an AST visitor, so no hand-made copy can drift from the docs). Each must cost at most
half the limit; the abusive shapes here and in the other tests stay refused."""

from __future__ import annotations

import re
from typing import Any

import pytest
from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    GraphQLInterfaceType,
    GraphQLObjectType,
    GraphQLSchema,
    NameNode,
    OperationDefinitionNode,
    SelectionSetNode,
    TypeInfo,
    TypeInfoVisitor,
    Visitor,
    parse,
    visit,
)

from schema.build import create_schema
from schema.limits import calculate_query_cost
from tests.conftest import ROOT

LIMIT = 5000
SCREEN_BUDGET = LIMIT // 2
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def with_ids_and_typenames(schema: GraphQLSchema, document: DocumentNode) -> DocumentNode:
    """`document` with `__typename`, and `id` where the type has one, added to every
    selection of an object or interface type (what a normalised client cache asks)."""
    type_info = TypeInfo(schema)

    class AddKeys(Visitor):
        def leave_selection_set(self, node: SelectionSetNode, *_: Any) -> SelectionSetNode:
            parent = type_info.get_parent_type()
            if not isinstance(parent, GraphQLObjectType | GraphQLInterfaceType):
                return node
            if parent is schema.query_type or parent is schema.mutation_type:
                return node
            if parent is schema.subscription_type:
                return node
            have = {s.name.value for s in node.selections if isinstance(s, FieldNode)}
            added = [
                FieldNode(name=NameNode(value=name), arguments=(), directives=())
                for name in ("id", "__typename")
                if name not in have and (name == "__typename" or name in parent.fields)
            ]
            return SelectionSetNode(selections=(*node.selections, *added))

    return visit(document, TypeInfoVisitor(type_info, AddKeys()))


def screens() -> list[tuple[str, DocumentNode, str | None]]:
    """(label, document, operation name) for every operation the docs show."""
    found: list[tuple[str, DocumentNode, str | None]] = []
    for path in DOCS:
        for n, source in enumerate(re.findall(r"```graphql\n(.*?)```", path.read_text(), re.S)):
            whole = parse(source)
            fragments = [d for d in whole.definitions if isinstance(d, FragmentDefinitionNode)]
            for definition in whole.definitions:
                if not isinstance(definition, OperationDefinitionNode):
                    continue
                # each operation alone (a block may hold several anonymous ones)
                document = DocumentNode(definitions=(definition, *fragments))
                name = definition.name.value if definition.name else None
                first = definition.selection_set.selections[0]
                root = first.name.value if isinstance(first, FieldNode) else "?"
                label = f"{path.name}#{n + 1} {name or root}"
                found.append((label, document, name))
    return found


SCHEMA = create_schema()._schema


def cost(document: DocumentNode, name: str | None = None, **variables: Any) -> int:
    result = calculate_query_cost(SCHEMA, document, name, variables)
    assert result is not None
    return result


def test_the_docs_have_the_screens_this_test_costs() -> None:
    labels = " ".join(label for label, _, _ in screens())
    for name in ("ClusterPage", "PaWeek", "MarketFigures", "peerAvailabilityFeed"):
        assert name in labels
    assert len(screens()) >= 15


def test_every_screen_with_ids_and_typenames_costs_at_most_half_the_limit() -> None:
    rows = []
    for label, document, name in screens():
        rows.append(
            (label, cost(document, name), cost(with_ids_and_typenames(SCHEMA, document), name))
        )
    table = "\n".join(f"{a:>6} {b:>6}  {label}" for label, a, b in rows)
    over = [label for label, _, keyed in rows if keyed > SCREEN_BUDGET]
    assert over == [], f"over {SCREEN_BUDGET}:\n as is  keyed  screen\n{table}"


def test_the_key_adder_adds_ids_and_typenames() -> None:
    document = parse("{ clusters(first: 2) { nodes { name } } }")
    keyed = with_ids_and_typenames(SCHEMA, document)
    from graphql import print_ast

    printed = " ".join(print_ast(keyed).split())
    assert printed == ("{ clusters(first: 2) { nodes { name id __typename } __typename } }")


ABUSIVE = {
    "nested connections, 100 each": """{ clusters(first: 100) { nodes {
        serviceUsers(first: 100) { nodes { visits(first: 100) { nodes { id } } } } } } }""",
    "two nested pages of 100": """{ clusters(first: 100) { edges { node { name
        serviceUsers(first: 100) { edges { node { name } } } } } } }""",
    "the same connection aliased 50 times": "{ "
    + " ".join(f"a{i}: members(first: 100) {{ nodes {{ id name }} }}" for i in range(50))
    + " }",
}


@pytest.mark.parametrize("label", ABUSIVE)
def test_abusive_shapes_cost_more_than_the_limit(label: str) -> None:
    assert cost(parse(ABUSIVE[label])) > LIMIT


def test_a_scalar_that_takes_arguments_costs_like_an_object() -> None:
    # it computes its answer (peerMarketFigures runs the market report)
    query = """{ peerMarketFigures(localAuthority: "E09000003", from: "2026-01-01",
        to: "2026-02-01", granularity: MONTH) }"""
    assert cost(parse(query)) == 2
    assert cost(parse("{ clusters(first: 100) { totalCount nodes { id name tasks: name } } }")) == (
        2 + 100 * 2
    )


def test_the_figures_the_readme_quotes() -> None:
    (page,) = [(d, n) for label, d, n in screens() if label.endswith(" ClusterPage")]
    assert cost(*page) == cost(with_ids_and_typenames(SCHEMA, page[0]), page[1]) == 1592
    assert cost(parse(ABUSIVE["two nested pages of 100"])) == 40602
