"""Top-level access checks for root fields. Row- and field-level rules live in
`care.policy`; these only say who may ask at all."""

from __future__ import annotations

from graphql import GraphQLError
from strawberry import relay

from care.enums import Role
from care.errors import DomainError, not_found
from care.viewer import Viewer


def unauthenticated() -> GraphQLError:
    return GraphQLError(
        "Authentication required: send a bearer token.", extensions={"code": "UNAUTHENTICATED"}
    )


def forbidden() -> GraphQLError:
    return GraphQLError("You may not ask for this.", extensions={"code": "FORBIDDEN"})


def require_coop_member(viewer: Viewer) -> None:
    """Clusters, members, pools and the rota are for people of the co-op."""
    if viewer.is_anonymous:
        raise unauthenticated()
    if not viewer.in_coop:
        raise forbidden()


def require_role(viewer: Viewer, *roles: Role) -> None:
    if viewer.is_anonymous:
        raise unauthenticated()
    if viewer.role not in roles:
        raise forbidden()


def decode_id(global_id: relay.GlobalID | None, *type_names: str) -> int | None:
    """The database id behind a global id of one of the given types; None when the id is
    of another type or malformed (callers treat that as "not found")."""
    if global_id is None:
        return None
    if global_id.type_name not in type_names or not global_id.node_id.isdigit():
        return None
    return int(global_id.node_id)


def id_or_error(
    global_id: relay.GlobalID,
    type_names: str | tuple[str, ...],
    what: str,
    field: str,
    errors: list[DomainError],
) -> int:
    """The database id behind a mutation's input id; on a wrong type or a malformed id,
    a NOT_FOUND error for `field` is added and -1 (never an id) returned."""
    names = (type_names,) if isinstance(type_names, str) else type_names
    value = decode_id(global_id, *names)
    if value is None:
        errors.append(not_found(what, field))
        return -1
    return value


MEMBER_TYPES = ("ServiceUser", "PersonalAssistant", "Carer", "CoopMember")
