"""Every code a mutation can return exists in its area's enum: a shared rule's code (the
retryable CONFLICT that a deadlock gives, a constraint's OVERLAP) reaches the caller as
itself, never renamed INVALID; a code an enum lacked would fail here and raise, not be
silently changed."""

from __future__ import annotations

from enum import Enum

import pytest
import strawberry
from graphql import get_named_type, is_enum_type

from care.errors import DomainError, ErrorCode, ExchangeCode, PartnerCode
from schema import create_schema
from schema.errors import AREAS, UnmappedErrorCode, to_errors


def test_every_payload_error_enum_holds_every_code() -> None:
    graphql_schema = create_schema()._schema
    payload_errors = [
        t
        for name, t in graphql_schema.type_map.items()
        if name.endswith("Error") and hasattr(t, "fields") and "code" in t.fields
    ]
    assert len(payload_errors) == len(AREAS)
    for error_type in payload_errors:
        enum = get_named_type(error_type.fields["code"].type)
        assert is_enum_type(enum)
        # Partnership payloads also carry the partner instance's failures.
        extra = {c.value for c in PartnerCode} if error_type.name == "PartnershipError" else set()
        # Cover exchange payloads too, and the partner's PARTNER_UNAVAILABLE.
        if error_type.name == "CoverExchangeError":
            extra = {c.value for c in PartnerCode} | {c.value for c in ExchangeCode}
        assert set(enum.values) == {c.value for c in ErrorCode} | extra, error_type.name


@pytest.mark.parametrize("area", AREAS, ids=lambda a: a.error_type.__name__)
def test_a_retryable_conflict_stays_a_conflict(area: object) -> None:
    conflict = DomainError(ErrorCode.CONFLICT, "Another change got there first: retry.")
    [error] = area.convert([conflict])  # type: ignore[attr-defined]
    assert error.code.value == "CONFLICT"


def test_an_unmapped_code_raises() -> None:
    @strawberry.type
    class NarrowError:
        field: str | None
        message: str
        code: str

    narrow = Enum("NarrowCode", {"INVALID": "INVALID"})
    with pytest.raises(UnmappedErrorCode):
        to_errors(NarrowError, narrow, [DomainError(ErrorCode.OVERLAP, "Overlaps.")])
