"""A relation through a foreign key into a member profile reaches one kind of member
(migration 0025: a profile's member is of its class), so the compiled statement tests no
row's type there, and PostgreSQL leaves the profile joins out of the member's select."""

from __future__ import annotations

from typing import Any

import pytest
from graphql import GraphQLInterfaceType, GraphQLObjectType, get_named_type, parse
from sqlalchemy.ext.asyncio import AsyncSession

from care.enums import Role
from care.models import Visit
from care.tokens import in_force_values
from care.viewer import Viewer
from schema.build import create_schema
from schema.compiled import registry
from schema.compiled.extension import prepare
from schema.context import Limits

SCHEMA = create_schema()._schema


def _through_profiles() -> list[tuple[str, str, Any]]:
    return [
        (type_name, field, spec)
        for type_name, specs in registry.FIELDS.items()
        for field, spec in specs.items()
        if getattr(spec, "through", None) is not None
    ]


def test_each_relation_through_a_profile_reaches_its_fields_type() -> None:
    found = _through_profiles()
    assert {("Visit", "pa"), ("Visit", "serviceUser"), ("Cluster", "serviceUsers")} <= {
        (t, f) for t, f, _ in found
    }
    for type_name, field, spec in found:
        parent = SCHEMA.get_type(type_name)
        assert isinstance(parent, GraphQLObjectType)
        reached = get_named_type(parent.fields[field].type)
        if isinstance(spec, registry.Page):  # a connection: its nodes' type
            assert isinstance(reached, GraphQLObjectType)
            reached = get_named_type(reached.fields["nodes"].type)
        kind = registry.member_type_of(spec.through)
        assert kind is not None
        if isinstance(reached, GraphQLInterfaceType):
            assert SCHEMA.is_sub_type(reached, SCHEMA.get_type(kind)), (type_name, field)
        else:
            assert reached.name == kind, (type_name, field, kind)
        if isinstance(spec, registry.ToOne):
            assert spec.through.key == spec.key, (type_name, field)


def test_a_key_into_the_members_themselves_names_no_kind() -> None:
    with pytest.raises(ValueError, match="not a foreign key into one member profile"):
        registry.member_type_of(Visit.confirmed_by_id)


async def _plan(db: AsyncSession, query: str) -> str:
    prepared = prepare(SCHEMA, parse(query), query, None, {}, Viewer(role=Role.ADMIN), Limits())
    assert prepared is not None
    values = {**prepared.parameters, **in_force_values(None)}
    sql, arguments = prepared.plan.for_driver().bind(values)
    connection = await db.connection()
    rows = await connection.exec_driver_sql("EXPLAIN " + sql, tuple(arguments))
    return "\n".join(row[0] for row in rows)


async def test_a_visits_people_are_read_without_their_profiles(db: AsyncSession) -> None:
    plan = await _plan(
        db, "{ visits(first: 5) { nodes { pa { id name } serviceUser { id name } } } }"
    )
    assert "pa_profile" not in plan
    assert "service_user_profile" not in plan
    # Who confirmed a visit may be any kind of member: their type is read per row.
    plan = await _plan(db, "{ visits(first: 5) { nodes { confirmedBy { id name } } } }")
    assert "pa_profile" in plan
    assert "service_user_profile" in plan
