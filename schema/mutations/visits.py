"""Visits mutations."""

from __future__ import annotations

import strawberry


@strawberry.type
class VisitMutations:
    pass
