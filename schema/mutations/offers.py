"""Cover offer mutations."""

from __future__ import annotations

import strawberry


@strawberry.type
class OfferMutations:
    pass
