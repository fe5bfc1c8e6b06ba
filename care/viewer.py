"""Who is asking: the identity every rule in `care.policy` is evaluated against."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from care.enums import Role


@dataclass(frozen=True)
class Viewer:
    role: Role | None = None  # None: anonymous
    member_id: int | None = None
    la_code: str | None = None  # LA_ANALYST only
    now: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))

    @property
    def is_anonymous(self) -> bool:
        return self.role is None

    @property
    def is_admin(self) -> bool:
        return self.role is Role.ADMIN

    @property
    def in_coop(self) -> bool:
        """Callers who belong to this co-op (everyone but anonymous and LA analysts)."""
        return self.role is not None and self.role is not Role.LA_ANALYST


ANONYMOUS = Viewer()
