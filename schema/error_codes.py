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
from strawberry.types import ExecutionContext

log = logging.getLogger("coopnet.graphql")

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
    return "GRAPHQL_VALIDATION_FAILED"


class CoopSchema(strawberry.Schema):
    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        for error in errors:
            extensions = dict(error.extensions or {})
            original = error.original_error
            unexpected = original is not None and not isinstance(original, GraphQLError)
            if unexpected:
                log.error("unexpected error at %s", error.path, exc_info=original)
                error.message = INTERNAL_MESSAGE
                extensions["code"] = "INTERNAL_SERVER_ERROR"
            elif "code" not in extensions:
                extensions["code"] = "BAD_REQUEST" if error.path else classify(error)
            error.extensions = extensions
            if not unexpected:
                # A caller's mistake, not the server's: keep it out of the error log.
                log.info("graphql request refused: %s (%s)", error.message, extensions["code"])
