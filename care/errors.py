"""Domain errors: raised by services for a caller's mistake, turned into typed payload
errors by the GraphQL layer. Nothing is written when one is raised (the mutation runs in a
savepoint that is rolled back)."""

from __future__ import annotations

from enum import StrEnum


class ErrorCode(StrEnum):
    REQUIRED = "REQUIRED"
    INVALID = "INVALID"
    INVALID_RANGE = "INVALID_RANGE"
    NOT_FOUND = "NOT_FOUND"  # unknown, or not visible to the caller: indistinguishable
    FORBIDDEN = "FORBIDDEN"  # visible, but the caller may not change it
    OVERLAP = "OVERLAP"
    CONFLICT = "CONFLICT"
    ALREADY_EXISTS = "ALREADY_EXISTS"
    CLOSED = "CLOSED"
    LIMIT_REACHED = "LIMIT_REACHED"
    UNKNOWN_CARE_TERM = "UNKNOWN_CARE_TERM"
    IN_USE = "IN_USE"


class PartnerCode(StrEnum):
    """Why a partnership mutation failed at the other instance (federation/partnerships.py);
    only partnership payloads carry these."""

    PARTNER_UNREACHABLE = "PARTNER_UNREACHABLE"
    PARTNER_BAD_MANIFEST = "PARTNER_BAD_MANIFEST"
    VERSION_MISMATCH = "VERSION_MISMATCH"
    PARTNER_REFUSED = "PARTNER_REFUSED"
    PARTNER_BAD_ANSWER = "PARTNER_BAD_ANSWER"


class ExchangeCode(StrEnum):
    """Why a cross-boundary cover mutation failed at the partner (federation/exchange.py);
    only cover exchange payloads carry these (with PartnerCode)."""

    PARTNER_UNAVAILABLE = "PARTNER_UNAVAILABLE"


class DomainError(Exception):
    def __init__(
        self, code: ErrorCode | PartnerCode | ExchangeCode, message: str, field: str | None = None
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field


class DomainErrors(Exception):
    """Several input problems found at once (reported together)."""

    def __init__(self, errors: list[DomainError]) -> None:
        super().__init__("; ".join(e.message for e in errors))
        self.errors = errors


def not_found(what: str, field: str | None = "id") -> DomainError:
    return DomainError(ErrorCode.NOT_FOUND, f"No {what} with that id.", field)


def forbidden(message: str = "You may not do this.", field: str | None = None) -> DomainError:
    return DomainError(ErrorCode.FORBIDDEN, message, field)


def constraint_name(exc: BaseException) -> str | None:
    """The name of the constraint a database error reports (SQLAlchemy wraps the driver's
    error in `orig`, and asyncpg's in `__cause__`), or None."""
    cause: BaseException | None = getattr(exc, "orig", None) or exc
    while cause is not None:
        name = getattr(cause, "constraint_name", None)
        if name:
            return str(name)
        cause = cause.__cause__
    return None
