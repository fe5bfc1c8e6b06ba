"""Typed errors in mutation payloads: `errors { field message code }`, with a code enum
per area. User mistakes come back here; top-level errors are kept for malformed requests
and authentication."""

from __future__ import annotations

from enum import Enum

import strawberry

from care.errors import DomainError, ErrorCode


def _codes(name: str, *codes: ErrorCode, description: str | None = None) -> type[Enum]:
    members = Enum(name, {c.value: c.value for c in codes})  # type: ignore[misc]
    return strawberry.enum(members, description=description)  # type: ignore[call-overload,no-any-return]


_COMMON = (ErrorCode.REQUIRED, ErrorCode.INVALID, ErrorCode.NOT_FOUND, ErrorCode.FORBIDDEN)

MemberErrorCode = _codes("MemberErrorCode", *_COMMON, ErrorCode.ALREADY_EXISTS)
ClusterErrorCode = _codes("ClusterErrorCode", *_COMMON, ErrorCode.CLOSED)
PoolErrorCode = _codes("PoolErrorCode", *_COMMON, ErrorCode.ALREADY_EXISTS)
AvailabilityErrorCode = _codes(
    "AvailabilityErrorCode", *_COMMON, ErrorCode.INVALID_RANGE, ErrorCode.OVERLAP
)
VisitErrorCode = _codes(
    "VisitErrorCode",
    *_COMMON,
    ErrorCode.INVALID_RANGE,
    ErrorCode.OVERLAP,
    ErrorCode.CONFLICT,
    ErrorCode.CLOSED,
)

# Absences, cover requests and offers.
CoverErrorCode = _codes(
    "CoverErrorCode",
    ErrorCode.REQUIRED,
    ErrorCode.INVALID,
    ErrorCode.INVALID_RANGE,
    ErrorCode.NOT_FOUND,
    ErrorCode.FORBIDDEN,
    ErrorCode.OVERLAP,
    ErrorCode.CONFLICT,
    ErrorCode.CLOSED,
    description="What went wrong with an absence, a cover request or an offer.",
)


@strawberry.type
class MemberError:
    field: str | None
    message: str
    code: MemberErrorCode  # type: ignore[valid-type]


@strawberry.type
class ClusterError:
    field: str | None
    message: str
    code: ClusterErrorCode  # type: ignore[valid-type]


@strawberry.type
class PoolError:
    field: str | None
    message: str
    code: PoolErrorCode  # type: ignore[valid-type]


@strawberry.type
class AvailabilityError:
    field: str | None
    message: str
    code: AvailabilityErrorCode  # type: ignore[valid-type]


@strawberry.type
class VisitError:
    field: str | None
    message: str
    code: VisitErrorCode  # type: ignore[valid-type]


@strawberry.type(description="A caller's mistake in a cover mutation (nothing was changed).")
class CoverError:
    field: str | None
    message: str
    code: CoverErrorCode  # type: ignore[valid-type]


def to_errors(error_type: type, code_enum: type[Enum], errors: list[DomainError]) -> list:  # type: ignore[type-arg]
    out = []
    for e in errors:
        code = code_enum.__members__.get(e.code.value, code_enum.__members__["INVALID"])
        out.append(error_type(field=e.field, message=e.message, code=code))
    return out


def cover_errors(errors: list[DomainError]) -> list[CoverError]:
    return to_errors(CoverError, CoverErrorCode, errors)
