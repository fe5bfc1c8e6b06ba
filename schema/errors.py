"""Typed errors in mutation payloads: `errors { field message code }`, with a code enum
per area. User mistakes come back here; top-level errors are kept for malformed requests
and authentication."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Generic, TypeVar

import strawberry

from care.errors import DomainError, ErrorCode

E = TypeVar("E")


def _codes(name: str, description: str) -> type[Enum]:
    # Every area's enum holds every code: a code raised by a shared rule (a deadlock's
    # retryable CONFLICT, a constraint's OVERLAP) always reaches the caller as itself.
    members = Enum(name, {c.value: c.value for c in ErrorCode})  # type: ignore[misc]
    return strawberry.enum(members, description=description)  # type: ignore[call-overload,no-any-return]


MemberErrorCode = _codes("MemberErrorCode", "What went wrong with a member mutation.")
ClusterErrorCode = _codes("ClusterErrorCode", "What went wrong with a cluster mutation.")
PoolErrorCode = _codes("PoolErrorCode", "What went wrong with a pool mutation.")
AvailabilityErrorCode = _codes(
    "AvailabilityErrorCode", "What went wrong with an availability mutation."
)
VisitErrorCode = _codes("VisitErrorCode", "What went wrong with a visit mutation.")
CoverErrorCode = _codes(
    "CoverErrorCode", "What went wrong with an absence, a cover request or an offer."
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


class UnmappedErrorCode(LookupError):
    """A domain error whose code the area's enum lacks: a bug, never silently renamed."""


def to_errors(error_type: type, code_enum: type[Enum], errors: list[DomainError]) -> list:  # type: ignore[type-arg]
    out = []
    for e in errors:
        code = code_enum.__members__.get(e.code.value)
        if code is None:
            raise UnmappedErrorCode(f"{code_enum.__name__} has no {e.code.value}")
        out.append(error_type(field=e.field, message=e.message, code=code))
    return out


@dataclass(frozen=True)
class ErrorArea(Generic[E]):
    """A mutation area's payload error type and its code enum, declared once."""

    error_type: type[E]
    codes: type[Enum]

    def convert(self, errors: list[DomainError]) -> list[E]:
        return to_errors(self.error_type, self.codes, errors)


MEMBER = ErrorArea(MemberError, MemberErrorCode)
CLUSTER = ErrorArea(ClusterError, ClusterErrorCode)
POOL = ErrorArea(PoolError, PoolErrorCode)
AVAILABILITY = ErrorArea(AvailabilityError, AvailabilityErrorCode)
VISIT = ErrorArea(VisitError, VisitErrorCode)
COVER = ErrorArea(CoverError, CoverErrorCode)
AREAS = (MEMBER, CLUSTER, POOL, AVAILABILITY, VISIT, COVER)
