"""The page size a connection returns without `first` is the one the schema publishes as
`first`'s default: frontends and code generators read the SDL, not the README."""

from __future__ import annotations

from pathlib import Path

import pytest
from graphql import (
    GraphQLNamedType,
    GraphQLObjectType,
    Undefined,
    build_schema,
    get_named_type,
    value_from_ast,
)
from sqlalchemy.ext.asyncio import AsyncSession

from care.demo import load_demo
from schema import create_schema
from schema.context import DEFAULT_PAGE_SIZE
from tests.conftest import Api

SCHEMA_FILE = Path(__file__).resolve().parents[2] / "schema.graphql"


def connection_first_defaults(type_map: dict[str, GraphQLNamedType]) -> dict[str, object]:
    """`first`'s default on every field that returns a connection, by `Type.field`."""
    found: dict[str, object] = {}
    for name, t in type_map.items():
        if name.startswith("__") or not isinstance(t, GraphQLObjectType):
            continue
        for field_name, field in t.fields.items():
            if get_named_type(field.type).name.endswith("Connection"):
                assert "first" in field.args, f"{name}.{field_name} has no `first`"
                arg = field.args["first"]
                default = arg.default_value
                if default is Undefined and arg.ast_node and arg.ast_node.default_value:
                    # a schema built from SDL keeps the default as written
                    default = value_from_ast(arg.ast_node.default_value, arg.type)
                found[f"{name}.{field_name}"] = default
    return found


def test_every_connection_publishes_the_enforced_default() -> None:
    for type_map in (
        create_schema()._schema.type_map,
        build_schema(SCHEMA_FILE.read_text()).type_map,  # what frontends download
    ):
        defaults = connection_first_defaults(type_map)
        assert len(defaults) >= 17
        wrong = {k: v for k, v in defaults.items() if v != DEFAULT_PAGE_SIZE}
        assert wrong == {}, wrong


@pytest.mark.parametrize("first", ["", "(first: null)"])
async def test_a_connection_without_first_returns_the_published_default(
    api: Api, db: AsyncSession, first: str
) -> None:
    published = create_schema()._schema.query_type.fields["visits"].args["first"].default_value  # type: ignore[union-attr]
    await load_demo(db)
    await db.commit()
    data = await api.data(
        f"{{ visits{first} {{ totalCount nodes {{ id }} }} }}", as_=("ADMIN", None)
    )
    assert data["visits"]["totalCount"] > published  # so that a page is cut short
    assert len(data["visits"]["nodes"]) == published == DEFAULT_PAGE_SIZE
