"""Every public item of the schema says what it is: frontends generate code and docs from
it, and a field without a description is a question for its reader."""

from __future__ import annotations

from graphql import (
    GraphQLEnumType,
    GraphQLInputObjectType,
    GraphQLInterfaceType,
    GraphQLObjectType,
    GraphQLScalarType,
    GraphQLSchema,
)

from schema import create_schema

BUILT_IN = {"String", "Int", "Float", "Boolean", "ID"}


def undocumented(schema: GraphQLSchema) -> list[str]:
    missing: list[str] = []
    for name, t in schema.type_map.items():
        if name.startswith("__") or name in BUILT_IN:
            continue
        if not t.description:
            missing.append(name)
        if isinstance(t, GraphQLObjectType | GraphQLInterfaceType):
            for field_name, field in t.fields.items():
                if not field.description:
                    missing.append(f"{name}.{field_name}")
                missing += [
                    f"{name}.{field_name}({arg})"
                    for arg, a in field.args.items()
                    if not a.description
                ]
        elif isinstance(t, GraphQLInputObjectType):
            missing += [f"{name}.{f}" for f, fd in t.fields.items() if not fd.description]
        elif isinstance(t, GraphQLEnumType):
            missing += [f"{name}.{v}" for v, vd in t.values.items() if not vd.description]
    return missing


def unspecified_scalars(schema: GraphQLSchema) -> list[str]:
    """Custom scalars without `@specifiedBy`: code generators type such a scalar `unknown`
    (or `any`), so a frontend loses the type of every field that uses it."""
    return [
        name
        for name, t in schema.type_map.items()
        if isinstance(t, GraphQLScalarType)
        and not name.startswith("__")
        and name not in BUILT_IN
        and not t.specified_by_url
    ]


def test_every_public_item_has_a_description() -> None:
    missing = undocumented(create_schema()._schema)
    assert missing == [], f"{len(missing)} undocumented: {missing[:40]}"


def test_the_check_finds_an_undocumented_field() -> None:
    from graphql import build_schema

    sdl = '"The root." type Query { "Documented." a: Int b: Int }'
    assert undocumented(build_schema(sdl)) == ["Query.b"]


def test_every_custom_scalar_names_its_specification() -> None:
    schema = create_schema()._schema
    assert unspecified_scalars(schema) == []
    # The scalars frontends meet most, by name, so that dropping one from the map fails here.
    for name in ("Date", "DateTime", "Time", "TimeRange", "JSON"):
        scalar = schema.type_map[name]
        assert isinstance(scalar, GraphQLScalarType)
        assert scalar.specified_by_url, name


def test_the_check_finds_a_scalar_without_specified_by() -> None:
    from graphql import build_schema

    sdl = (
        '"D." scalar Day @specifiedBy(url: "https://example.org/day") "M." scalar Money '
        '"The root." type Query { "A." a: Day "B." b: Money }'
    )
    assert unspecified_scalars(build_schema(sdl)) == ["Money"]
