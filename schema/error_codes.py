"""Every top-level error carries `extensions.code`, and no internal detail leaks.

Errors raised on purpose (UNAUTHENTICATED, FORBIDDEN, BAD_USER_INPUT, QUERY_TOO_COSTLY)
already have a code. `CoopSchema.process_errors`, which Strawberry calls for every error
before the response is built, names the rest: parse and validation failures, the
depth/alias/token limits, and unexpected exceptions, whose message is replaced (the
exception is logged with its traceback, never returned)."""

from __future__ import annotations

import logging

import strawberry
from graphql import GraphQLError
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from strawberry.types import ExecutionContext

from care.paging import InvalidCursor

log = logging.getLogger("coopnet.graphql")

DATABASE_TIMEOUT = "DATABASE_TIMEOUT"
SERVICE_UNAVAILABLE = "SERVICE_UNAVAILABLE"
# Codes that mean the request could not run for want of a database: HTTP 503.
UNAVAILABLE_CODES = frozenset({DATABASE_TIMEOUT, SERVICE_UNAVAILABLE})

INTERNAL_MESSAGE = "Internal server error. It has been logged."


def classify(error: GraphQLError) -> str:
    message = error.message
    if "exceeds maximum operation depth" in message:
        return "QUERY_TOO_DEEP"
    if "aliases found" in message:
        return "TOO_MANY_ALIASES"
    if "Document contains more than" in message and "tokens" in message:
        return "TOO_MANY_TOKENS"
    if message.startswith("Syntax Error"):
        return "GRAPHQL_PARSE_FAILED"
    if message.startswith(("Expected value of type", "Value cannot represent")) or (
        message.startswith("Variable '$")
        and ("has invalid value" in message or "got invalid value" in message)
    ):
        # A value could not be coerced (e.g. a date out of range): the caller's input.
        return "BAD_USER_INPUT"
    return "GRAPHQL_VALIDATION_FAILED"


# SQLSTATEs of a statement stopped by the server's statement_timeout (57014,
# query_canceled) or lock_timeout (55P03, lock_not_available).
TIMEOUT_STATES = frozenset({"57014", "55P03"})


def _sqlstate(exc: BaseException) -> str:
    cause: BaseException | None = exc
    while cause is not None:
        state = getattr(cause, "sqlstate", None)
        if state:
            return str(state)
        cause = getattr(cause, "orig", None) or cause.__cause__
    return ""


class DatabaseLost(Exception):
    """The request's transaction was lost with its connection before it could commit
    (e.g. a timeout inside a mutation): nothing of the request was saved."""


def known_error(exc: BaseException) -> tuple[str, str] | None:
    """(code, message) for an exception that is no bug of ours: bad input found below the
    schema, or a database that is slow or unreachable. None for everything else."""
    if isinstance(exc, InvalidCursor):
        return "BAD_USER_INPUT", "Invalid cursor: pass a cursor this connection returned."
    if isinstance(exc, DatabaseLost):
        return SERVICE_UNAVAILABLE, "The database connection was lost; nothing was saved: retry."
    if isinstance(exc, PoolTimeout):
        return SERVICE_UNAVAILABLE, "The database is busy: no connection was free in time."
    state = _sqlstate(exc)
    if state in TIMEOUT_STATES:
        return DATABASE_TIMEOUT, "The database took too long to answer: retry later."
    if isinstance(exc, TimeoutError) or (
        isinstance(exc, DBAPIError) and isinstance(exc.orig, TimeoutError)
    ):
        # asyncpg's own timeouts: connecting, or a server that stopped answering.
        return DATABASE_TIMEOUT, "The database took too long to answer: retry later."
    if (
        state.startswith("08")
        or isinstance(exc, OSError)
        or (isinstance(exc, DBAPIError) and exc.connection_invalidated)
    ):
        return SERVICE_UNAVAILABLE, "The database cannot be reached: retry later."
    return None


def _mark_committed(
    error: GraphQLError, extensions: dict[str, object], execution_context: ExecutionContext | None
) -> None:
    """An error below a mutation field whose change was committed (reading its payload
    back failed) says so: the client must not take it for a refusal and retry."""
    path = error.path or ()
    committed = getattr(getattr(execution_context, "context", None), "committed", None)
    if path and committed and str(path[0]) in committed:
        extensions.setdefault("committed", True)


class CoopSchema(strawberry.Schema):
    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        for error in errors:
            extensions = dict(error.extensions or {})
            original = error.original_error
            known = (
                known_error(original)
                if original is not None and not isinstance(original, GraphQLError)
                else None
            )
            if known is not None:
                extensions["code"], error.message = known
                _mark_committed(error, extensions, execution_context)
                error.extensions = extensions
                # Logged once, without a traceback: the cause is named by the code.
                level = logging.INFO if extensions["code"] == "BAD_USER_INPUT" else logging.WARNING
                log.log(level, "graphql request refused at %s: %s", error.path, extensions["code"])
                continue
            unexpected = original is not None and not isinstance(original, GraphQLError)
            if unexpected:
                log.error("unexpected error at %s", error.path, exc_info=original)
                error.message = INTERNAL_MESSAGE
                extensions["code"] = "INTERNAL_SERVER_ERROR"
            elif "code" not in extensions:
                extensions["code"] = "BAD_REQUEST" if error.path else classify(error)
            _mark_committed(error, extensions, execution_context)
            error.extensions = extensions
            if not unexpected:
                # A caller's mistake, not the server's: keep it out of the error log.
                log.info("graphql request refused: %s (%s)", error.message, extensions["code"])
