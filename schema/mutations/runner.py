"""Runs one mutation field in a savepoint and commits it when it succeeds: a domain error
or a violated constraint rolls back everything the field wrote and comes back as typed
errors; success is committed before the next field of the document runs, so what a
response says was done is what the database holds (see `schema/mutations/base.py`)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from care.errors import DomainError, DomainErrors, ErrorCode
from care.viewer import Viewer
from schema.context import Info

T = TypeVar("T")

# Constraint names (see care/models.py) and what they mean to a caller.
CONSTRAINT_ERRORS: dict[str, tuple[ErrorCode, str, str | None]] = {
    "visit_pa_no_overlap": (ErrorCode.OVERLAP, "The PA already has a visit at that time.", "paId"),
    "pa_commitment_no_overlap": (
        ErrorCode.OVERLAP,
        "The PA is not free then: a visit, absence or hold already takes that time.",
        "paId",
    ),
    "availability_no_overlap": (
        ErrorCode.OVERLAP,
        "This overlaps another availability window of the PA.",
        "startsAt",
    ),
    "absence_no_overlap": (
        ErrorCode.OVERLAP,
        "This overlaps another absence of the PA.",
        "startsAt",
    ),
    "uq_cover_request_open_visit": (
        ErrorCode.CONFLICT,
        "The visit already has an open cover request.",
        "visitId",
    ),
    "uq_cover_offer_open_pa": (
        ErrorCode.CONFLICT,
        "The PA already has an open offer for this request.",
        "paIds",
    ),
    "uq_pool_name": (ErrorCode.ALREADY_EXISTS, "A pool with that name already exists.", "name"),
    # Care vocabulary (migration 0018): a race with a term's deletion, or a direct write.
    "fk_pa_skill_skill_care_term": (
        ErrorCode.UNKNOWN_CARE_TERM,
        "A skill is not a code of the co-op's care vocabulary.",
        "skills",
    ),
    "care_term_known": (
        ErrorCode.UNKNOWN_CARE_TERM,
        "A need is not a code of the co-op's care vocabulary.",
        None,
    ),
    "care_term_in_use": (ErrorCode.IN_USE, "The care term is in use.", "code"),
    "ck_visit_during_bounded": (
        ErrorCode.INVALID_RANGE,
        "The end must be after the start.",
        "endsAt",
    ),
    "ck_availability_window_during_bounded": (
        ErrorCode.INVALID_RANGE,
        "The end must be after the start.",
        "endsAt",
    ),
}


def _constraint_name(exc: DBAPIError) -> str | None:
    cause: BaseException | None = exc.orig
    while cause is not None:
        name = getattr(cause, "constraint_name", None)
        if name:
            return str(name)
        cause = cause.__cause__
    return None


def error_for_integrity(exc: DBAPIError) -> DomainError:
    name = _constraint_name(exc)
    if name in CONSTRAINT_ERRORS:
        code, message, field = CONSTRAINT_ERRORS[name]
        return DomainError(code, message, field)
    if name and name.startswith("fk_"):
        return DomainError(ErrorCode.NOT_FOUND, "A referenced record does not exist.", None)
    if name and name.startswith("uq_"):
        return DomainError(ErrorCode.ALREADY_EXISTS, "That already exists.", None)
    if name and name.startswith("ck_") and name.endswith("_length"):
        # The stored-text bounds (care.models.TEXT_BOUNDS, migration 0008).
        return DomainError(ErrorCode.INVALID, "A text is too long to store.", None)
    return DomainError(ErrorCode.INVALID, "The change breaks a rule of the data.", None)


async def run_mutation(
    info: Info, action: Callable[[AsyncSession, Viewer], Awaitable[T]]
) -> tuple[T | None, list[DomainError]]:
    ctx = info.context
    async with ctx.database():
        try:
            async with ctx.session.begin_nested():
                result = await action(ctx.session, ctx.viewer)
        except DomainError as e:
            return None, [e]
        except DomainErrors as e:
            return None, e.errors
        except IntegrityError as e:
            return None, [error_for_integrity(e)]
        except DBAPIError as e:
            # Data errors (e.g. a range PostgreSQL rejects) are the caller's input too.
            state = str(getattr(e.orig, "sqlstate", ""))
            if state in ("40001", "40P01"):  # serialization failure, deadlock: retryable
                return None, [
                    DomainError(ErrorCode.CONFLICT, "Another change got there first: retry.")
                ]
            if state.startswith("22"):
                return None, [DomainError(ErrorCode.INVALID, "A value is not acceptable.")]
            raise
        # Each field commits on its own: a later field's failure cannot undo it, and a
        # response never reports as done what a rollback then took back.
        await ctx.session.commit()
    # Later reads in this request must see the change, not cached rows.
    ctx.clear_loaders()
    return result, []
