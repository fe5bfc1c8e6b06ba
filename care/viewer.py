"""Who is asking: the identity every rule is evaluated against.

One type for every kind of caller (`PrincipalKind`): anonymous, a member of the co-op
with a role, an LA analyst bound to one local authority, and (reserved for federation) a
partner co-op's instance with the scopes its partnership grants. `schema/permissions.py` says which
kinds may ask for each root field; `care/policy.py` which rows and fields they see."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING

from care.enums import Role

if TYPE_CHECKING:
    from sqlalchemy import Select


class PrincipalKind(StrEnum):
    ANONYMOUS = "ANONYMOUS"
    MEMBER = "MEMBER"  # a person of the co-op; `Viewer.role` says which role
    LA_ANALYST = "LA_ANALYST"
    PARTNER = "PARTNER"  # a partner co-op's instance (federation): denied everywhere for now


@dataclass(frozen=True)
class Viewer:
    role: Role | None = None  # None: anonymous (or a partner, see `partner`)
    member_id: int | None = None
    la_code: str | None = None  # LA_ANALYST only
    now: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))
    # PARTNER only: the verified base URL of the calling instance; its partnership with
    # us (None: a verified instance we have no partnership with, which may only propose
    # one), that partnership's status and the scopes it grants (while ACTIVE).
    partner: str | None = None
    partnership_id: int | None = None
    partnership_status: str | None = None
    scopes: frozenset[str] = frozenset()
    # `care.policy`'s sets of ids for this viewer, each built once per Viewer object (a
    # statement must name each CTE by one object) and holding this viewer's values: not
    # compared, not copied (`dataclasses.replace` starts afresh).
    sets: dict[str, Select] = field(default_factory=dict, init=False, compare=False, repr=False)

    @property
    def kind(self) -> PrincipalKind:
        if self.partner is not None:
            return PrincipalKind.PARTNER
        if self.role is None:
            return PrincipalKind.ANONYMOUS
        if self.role is Role.LA_ANALYST:
            return PrincipalKind.LA_ANALYST
        return PrincipalKind.MEMBER

    @property
    def is_anonymous(self) -> bool:
        """No role: anonymous callers, and partners, whom the SQL rules treat alike (the
        access rules refuse partners everywhere before any query runs)."""
        return self.role is None

    @property
    def is_admin(self) -> bool:
        return self.role is Role.ADMIN

    @property
    def in_coop(self) -> bool:
        """Callers who belong to this co-op (everyone but anonymous and LA analysts)."""
        return self.role is not None and self.role is not Role.LA_ANALYST


ANONYMOUS = Viewer()
