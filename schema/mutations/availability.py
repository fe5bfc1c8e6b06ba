"""Availability mutations."""

from __future__ import annotations

import strawberry


@strawberry.type
class AvailabilityMutations:
    pass
