"""Who may ask at all: one `Access` rule declared on every root field (query, mutation,
subscription), and the one way global ids are decoded.

Deny by default: a root field without a rule cannot be built into the schema
(`check_declared`, run by `schema.build`), and `tests/schema/test_access_grid.py` walks
every root field for every kind of caller. A caller the rule refuses gets a top-level
error: `UNAUTHENTICATED` when anonymous, `FORBIDDEN` otherwise. Which records and fields
an admitted caller then sees is `care.policy` (SQL); whether they may change one record
is `care.services` (payload errors NOT_FOUND / FORBIDDEN)."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable
from typing import Any

from graphql import GraphQLError
from strawberry import relay
from strawberry.extensions.field_extension import FieldExtension
from strawberry.permission import BasePermission, PermissionExtension
from strawberry.types.base import get_object_definition

from care.enums import PartnerScope, PartnershipStatus, Role, SignatureRefusal
from care.viewer import PrincipalKind, Viewer


def unauthenticated() -> GraphQLError:
    return GraphQLError(
        "Authentication required: send a bearer token.", extensions={"code": "UNAUTHENTICATED"}
    )


def forbidden() -> GraphQLError:
    return GraphQLError("You may not ask for this.", extensions={"code": "FORBIDDEN"})


def partner_refused(reason: SignatureRefusal) -> GraphQLError:
    """A verified partner instance asked for something its partnership does not allow:
    FORBIDDEN, with the reason (docs/federation.md, section 7)."""
    messages = {
        SignatureRefusal.PARTNERSHIP_SUSPENDED: "The partnership is suspended.",
        SignatureRefusal.PARTNERSHIP_ENDED: "The partnership has ended.",
        SignatureRefusal.OUT_OF_SCOPE: "The partnership's scopes do not include this field.",
        SignatureRefusal.NOT_A_PARTNER: "There is no partnership with this instance.",
    }
    return GraphQLError(
        messages.get(reason, "You may not ask for this."),
        extensions={"code": "FORBIDDEN", "reason": reason.value},
    )


class Access(BasePermission):
    """Who may ask for one root field: the kinds of caller admitted, and for members the
    roles. A partner instance is admitted only by a rule made for partners: `peer` (any
    verified instance, for the partnership handshake itself) or `scope` (an ACTIVE
    partnership granting that scope)."""

    def __init__(
        self,
        name: str,
        *,
        kinds: Iterable[PrincipalKind] = (),
        roles: Iterable[Role] = (),
        peer: bool = False,
        scope: PartnerScope | None = None,
    ) -> None:
        self.name = name
        self.kinds = frozenset(kinds)
        self.roles = frozenset(roles)
        self.peer = peer
        self.scope = scope
        if self.roles:
            self.kinds |= {PrincipalKind.MEMBER}
        if peer or scope is not None:
            self.kinds |= {PrincipalKind.PARTNER}

    def partner_refusal(self, viewer: Viewer) -> SignatureRefusal | None:
        """Why a partner instance may not ask (None: it may)."""
        if self.peer:
            return None
        status = viewer.partnership_status
        if viewer.partnership_id is None or status in (None, PartnershipStatus.REJECTED.value):
            return SignatureRefusal.NOT_A_PARTNER
        if status == PartnershipStatus.ENDED.value:
            return SignatureRefusal.PARTNERSHIP_ENDED
        if status == PartnershipStatus.SUSPENDED.value:
            return SignatureRefusal.PARTNERSHIP_SUSPENDED
        if status != PartnershipStatus.ACTIVE.value:
            return SignatureRefusal.NOT_A_PARTNER  # proposed, not yet agreed
        if self.scope is None or self.scope.value not in viewer.scopes:
            return SignatureRefusal.OUT_OF_SCOPE
        return None

    def allows(self, viewer: Viewer) -> bool:
        kind = viewer.kind
        if kind is PrincipalKind.MEMBER:
            return viewer.role in self.roles
        if kind is PrincipalKind.PARTNER:
            return self.partner_refusal(viewer) is None
        return kind in self.kinds

    def check(self, viewer: Viewer) -> None:
        if self.allows(viewer):
            return
        if viewer.kind is PrincipalKind.PARTNER:
            reason = self.partner_refusal(viewer)
            assert reason is not None
            raise partner_refused(reason)
        raise unauthenticated() if viewer.kind is PrincipalKind.ANONYMOUS else forbidden()

    def has_permission(self, source: Any, info: Any, **kwargs: Any) -> bool:
        # Raising here (not returning False) lets the code depend on the caller.
        self.check(info.context.viewer)
        return True

    def __repr__(self) -> str:
        return f"Access({self.name})"


MEMBER_ROLES = tuple(r for r in Role if r is not Role.LA_ANALYST)
MANAGERS = (Role.ADMIN, Role.COORDINATOR)

PUBLIC = Access(
    "PUBLIC",
    kinds=(PrincipalKind.ANONYMOUS, PrincipalKind.LA_ANALYST),
    roles=MEMBER_ROLES,
)
COOP = Access("COOP", roles=MEMBER_ROLES)  # every member of the co-op, any role
ADMINS = Access("ADMINS", roles=(Role.ADMIN,))
MANAGING = Access("MANAGING", roles=MANAGERS)  # admins and coordinators
ROTA = Access("ROTA", roles=(*MANAGERS, Role.PA))  # availability and absences
PAS = Access("PAS", roles=(Role.PA,))
RECIPIENTS = Access("RECIPIENTS", roles=(Role.SERVICE_USER, Role.CARER))
# Partner instances (signed requests, docs/federation.md): the handshake is open to any
# verified instance; everything else needs an ACTIVE partnership with the field's scope.
PEERS = Access("PEERS", peer=True)
PARTNER_AVAILABILITY = Access("PARTNER_AVAILABILITY", scope=PartnerScope.AVAILABILITY)
PARTNER_COVER = Access("PARTNER_COVER", scope=PartnerScope.COVER)
PARTNER_MARKET_DATA = Access("PARTNER_MARKET_DATA", scope=PartnerScope.MARKET_DATA)
# Market figures: LA analysts, councils' instances granted MARKET_DATA, and admins; each
# for the local authorities they may see (care.market.check_reader).
MARKET = Access(
    "MARKET",
    kinds=(PrincipalKind.LA_ANALYST,),
    roles=(Role.ADMIN,),
    scope=PartnerScope.MARKET_DATA,
)


def guard(rule: Access) -> list[FieldExtension]:
    """The field extensions that enforce `rule`: pass as `extensions=` to the field."""
    return [PermissionExtension(permissions=[rule], use_directives=False)]


def declared_access(field: Any) -> Access | None:
    for extension in field.extensions:
        if isinstance(extension, PermissionExtension):
            for permission in extension.permissions:
                if isinstance(permission, Access):
                    return permission
    return None


def check_declared(*root_types: type) -> None:
    """Deny by default: every root field must declare its `Access`."""
    missing = [
        f"{root.__name__}.{field.python_name}"
        for root in root_types
        for field in get_object_definition(root, strict=True).fields
        if declared_access(field) is None
    ]
    if missing:
        raise TypeError(f"Root fields without an Access rule: {', '.join(missing)}")


# --- global ids ---------------------------------------------------------------------------

MAX_PK = 2**63 - 1  # ids are bigint


def parse_pk(node_id: str) -> int | None:
    """A database id from a global id's node part: ASCII digits within bigint, else None
    (Python's int() would accept "٣" or "1_0" and numbers PostgreSQL cannot hold)."""
    if not node_id or len(node_id) > 19 or not node_id.isascii() or not node_id.isdigit():
        return None
    value = int(node_id)
    return value if 0 < value <= MAX_PK else None


def parse_global_id(value: str | relay.GlobalID) -> relay.GlobalID | None:
    """A global id from its text (base64 of `Type:id`), or None when it is not one.
    Id arguments are declared as plain `ID` and parsed here, so that no id, however
    malformed, fails before the resolver: it is simply an unknown record."""
    if isinstance(value, relay.GlobalID):
        return value
    try:
        decoded = base64.b64decode(value, validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return None
    type_name, sep, node_id = decoded.partition(":")
    if not sep or not type_name:
        return None
    return relay.GlobalID(type_name=type_name, node_id=node_id)


def decode_id(value: str | relay.GlobalID | None, *type_names: str) -> int | None:
    """The database id behind a global id of one of the given types; None when the id is
    absent, not a global id, of another type or out of range (callers treat that as
    "not found")."""
    global_id = parse_global_id(value) if value is not None else None
    if global_id is None or global_id.type_name not in type_names:
        return None
    return parse_pk(global_id.node_id)


MEMBER_TYPES = ("ServiceUser", "PersonalAssistant", "Carer", "CoopMember")
