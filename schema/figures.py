"""Figures the co-op needs: continuity and cover, for coordinators and admins."""

from __future__ import annotations

import strawberry


@strawberry.type
class FigureQueries:
    pass
