"""Typed errors in mutation payloads: `errors { field message code }`, with a code enum
per area. User mistakes come back here; top-level errors are kept for malformed requests
and authentication."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Generic, TypeVar

import strawberry

from care.errors import DomainError, ErrorCode, ExchangeCode, PartnerCode

E = TypeVar("E")

# What each code means to a caller, shown on every area's enum value.
CODE_DESCRIPTIONS: dict[ErrorCode, str] = {
    ErrorCode.REQUIRED: "A value that must be given is missing or empty.",
    ErrorCode.INVALID: "A value is malformed or not allowed (e.g. a time without its UTC "
    "offset where one is needed, a number out of bounds).",
    ErrorCode.INVALID_RANGE: "A start, end or date range is wrong: the end not after the "
    "start, too long, or in the past.",
    ErrorCode.NOT_FOUND: "No such record, or one the caller may not see (the two are "
    "indistinguishable); also a malformed id or an id of another type.",
    ErrorCode.FORBIDDEN: "The caller may see the record but may not make this change.",
    ErrorCode.OVERLAP: "The times clash with another record: a visit, absence, hold or "
    "availability window of the same PA.",
    ErrorCode.CONFLICT: "Another change got there first (a race, e.g. two acceptances of "
    "one visit's offers): read again and retry.",
    ErrorCode.ALREADY_EXISTS: "A record with that name or key already exists.",
    ErrorCode.CLOSED: "The record is no longer open to this change: a closed cluster, a "
    "cancelled absence, a cover request or offer already closed or expired.",
    ErrorCode.LIMIT_REACHED: "As many of these as may wait at once are waiting (e.g. "
    "proposals of partnership from other instances waiting for an admin): try again later.",
    ErrorCode.UNKNOWN_CARE_TERM: "A skill or need is not an active code of the co-op's care "
    "vocabulary (see careTerms), or a skill-only term was given as a need.",
    ErrorCode.IN_USE: "The record is in use (e.g. a care term some skill or need holds): "
    "deactivate it instead.",
}


# The codes only partnership mutations return: the other instance failed them.
PARTNER_CODE_DESCRIPTIONS: dict[PartnerCode, str] = {
    PartnerCode.PARTNER_UNREACHABLE: "The partner instance could not be reached (no "
    "connection, a timeout, a TLS failure); see the partnership's lastError.",
    PartnerCode.PARTNER_BAD_MANIFEST: "The partner's manifest (/.well-known/coopnet) is "
    "missing, malformed, or for another base URL.",
    PartnerCode.VERSION_MISMATCH: "The partner speaks no federation protocol version this "
    "instance speaks.",
    PartnerCode.PARTNER_REFUSED: "The partner instance answered but refused the message "
    "(our signature, the partnership's state, or the message itself); see lastError.",
    PartnerCode.PARTNER_BAD_ANSWER: "The partner's answer could not be trusted or read (a "
    "signature that does not verify, an HTTP or GraphQL error, not a GraphQL response).",
}


# The codes only cover exchange mutations return (with the partner codes).
EXCHANGE_CODE_DESCRIPTIONS: dict[ExchangeCode, str] = {
    ExchangeCode.PARTNER_UNAVAILABLE: "The partner instance answered that it cannot offer "
    "that PA (unknown to it, no longer shared with us, or the request is closed there).",
}


def _codes(
    name: str, description: str, *, partner: bool = False, exchange: bool = False
) -> type[Enum]:
    # Every area's enum holds every code: a code raised by a shared rule (a deadlock's
    # retryable CONFLICT, a constraint's OVERLAP) always reaches the caller as itself.
    # Names and values stay the codes; strawberry.enum unwraps each enum_value.
    values = {
        c.value: strawberry.enum_value(c.value, description=CODE_DESCRIPTIONS[c]) for c in ErrorCode
    }
    if partner:
        values |= {
            c.value: strawberry.enum_value(c.value, description=PARTNER_CODE_DESCRIPTIONS[c])
            for c in PartnerCode
        }
    if exchange:
        values |= {
            c.value: strawberry.enum_value(c.value, description=EXCHANGE_CODE_DESCRIPTIONS[c])
            for c in ExchangeCode
        }
    members = Enum(name, values)  # type: ignore[misc]
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
ReferralErrorCode = _codes("ReferralErrorCode", "What went wrong with a referral mutation.")
CareTermErrorCode = _codes(
    "CareTermErrorCode", "What went wrong with a change to the care vocabulary."
)
PartnershipErrorCode = _codes(
    "PartnershipErrorCode",
    "What went wrong with a partnership mutation, here or at the partner instance.",
    partner=True,
)
CoverExchangeErrorCode = _codes(
    "CoverExchangeErrorCode",
    "What went wrong with a cover exchange mutation, here or at the partner instance.",
    partner=True,
    exchange=True,
)


@strawberry.type(
    description="A caller's mistake in a member mutation or a token revocation; the "
    "mutation changed nothing."
)
class MemberError:
    field: str | None = strawberry.field(
        description="The input field at fault (its GraphQL name, e.g. startsAt or paId), "
        "or null when the error is about the request as a whole."
    )
    message: str = strawberry.field(description="What went wrong, in words for a person.")
    code: MemberErrorCode = strawberry.field(  # type: ignore[valid-type]
        description="What went wrong, for a program."
    )


@strawberry.type(
    description="A caller's mistake in a cluster mutation; the mutation changed nothing."
)
class ClusterError:
    field: str | None = strawberry.field(
        description="The input field at fault (its GraphQL name, e.g. startsAt or paId), "
        "or null when the error is about the request as a whole."
    )
    message: str = strawberry.field(description="What went wrong, in words for a person.")
    code: ClusterErrorCode = strawberry.field(  # type: ignore[valid-type]
        description="What went wrong, for a program."
    )


@strawberry.type(description="A caller's mistake in a pool mutation; the mutation changed nothing.")
class PoolError:
    field: str | None = strawberry.field(
        description="The input field at fault (its GraphQL name, e.g. startsAt or paId), "
        "or null when the error is about the request as a whole."
    )
    message: str = strawberry.field(description="What went wrong, in words for a person.")
    code: PoolErrorCode = strawberry.field(  # type: ignore[valid-type]
        description="What went wrong, for a program."
    )


@strawberry.type(
    description="A caller's mistake in a availability mutation; the mutation changed nothing."
)
class AvailabilityError:
    field: str | None = strawberry.field(
        description="The input field at fault (its GraphQL name, e.g. startsAt or paId), "
        "or null when the error is about the request as a whole."
    )
    message: str = strawberry.field(description="What went wrong, in words for a person.")
    code: AvailabilityErrorCode = strawberry.field(  # type: ignore[valid-type]
        description="What went wrong, for a program."
    )


@strawberry.type(
    description="A caller's mistake in a visit mutation; the mutation changed nothing."
)
class VisitError:
    field: str | None = strawberry.field(
        description="The input field at fault (its GraphQL name, e.g. startsAt or paId), "
        "or null when the error is about the request as a whole."
    )
    message: str = strawberry.field(description="What went wrong, in words for a person.")
    code: VisitErrorCode = strawberry.field(  # type: ignore[valid-type]
        description="What went wrong, for a program."
    )


@strawberry.type(
    description="A caller's mistake in a cover mutation (absence, cover request, offer) "
    "or a change to the co-op's cover rules; the mutation changed nothing."
)
class CoverError:
    field: str | None = strawberry.field(
        description="The input field at fault (its GraphQL name, e.g. startsAt or paId), "
        "or null when the error is about the request as a whole."
    )
    message: str = strawberry.field(description="What went wrong, in words for a person.")
    code: CoverErrorCode = strawberry.field(  # type: ignore[valid-type]
        description="What went wrong, for a program."
    )


@strawberry.type(
    description="A caller's mistake in a referral mutation; the mutation changed nothing."
)
class ReferralError:
    field: str | None = strawberry.field(
        description="The input field at fault (its GraphQL name, e.g. hoursPerWeek or "
        "localAuthority), or null when the error is about the request as a whole."
    )
    message: str = strawberry.field(description="What went wrong, in words for a person.")
    code: ReferralErrorCode = strawberry.field(  # type: ignore[valid-type]
        description="What went wrong, for a program."
    )


@strawberry.type(
    description="A caller's mistake in a change to the care vocabulary; the mutation "
    "changed nothing."
)
class CareTermError:
    field: str | None = strawberry.field(
        description="The input field at fault (its GraphQL name, e.g. code or label), or "
        "null when the error is about the request as a whole."
    )
    message: str = strawberry.field(description="What went wrong, in words for a person.")
    code: CareTermErrorCode = strawberry.field(  # type: ignore[valid-type]
        description="What went wrong, for a program."
    )


@strawberry.type(
    description="A mistake in a partnership mutation, or a failure at the partner instance. "
    "Codes PARTNER_* and VERSION_MISMATCH come from the other instance: the partnership's "
    "lastError records them (see the mutation for what was kept)."
)
class PartnershipError:
    field: str | None = strawberry.field(
        description="The input field at fault (its GraphQL name, e.g. baseUrl or scopes), "
        "or null when the error is about the request as a whole."
    )
    message: str = strawberry.field(description="What went wrong, in words for a person.")
    code: PartnershipErrorCode = strawberry.field(  # type: ignore[valid-type]
        description="What went wrong, for a program."
    )


@strawberry.type(
    description="A mistake in a cover exchange mutation, or a failure at the partner "
    "instance (PARTNER_* codes, VERSION_MISMATCH); the mutation changed nothing."
)
class CoverExchangeError:
    field: str | None = strawberry.field(
        description="The input field at fault (its GraphQL name, e.g. coverRequestId or "
        "paRef), or null when the error is about the request as a whole."
    )
    message: str = strawberry.field(description="What went wrong, in words for a person.")
    code: CoverExchangeErrorCode = strawberry.field(  # type: ignore[valid-type]
        description="What went wrong, for a program."
    )


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
PARTNERSHIP = ErrorArea(PartnershipError, PartnershipErrorCode)
REFERRAL = ErrorArea(ReferralError, ReferralErrorCode)
EXCHANGE = ErrorArea(CoverExchangeError, CoverExchangeErrorCode)
CARE_TERM = ErrorArea(CareTermError, CareTermErrorCode)
AREAS = (
    MEMBER,
    CLUSTER,
    POOL,
    AVAILABILITY,
    VISIT,
    COVER,
    PARTNERSHIP,
    REFERRAL,
    EXCHANGE,
    CARE_TERM,
)
