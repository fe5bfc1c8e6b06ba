"""Ranked cover candidates."""

from __future__ import annotations

import strawberry


@strawberry.type
class CandidateQueries:
    pass
