"""Members mutations."""

from __future__ import annotations

import strawberry


@strawberry.type
class MemberMutations:
    pass
