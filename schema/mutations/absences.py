"""Absence and cover request mutations."""

from __future__ import annotations

import strawberry


@strawberry.type
class AbsenceMutations:
    pass
