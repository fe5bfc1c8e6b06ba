"""GraphQL-over-HTTP media types: which one a request's Accept header asks for, and the
body of a request refused before it ran.

The spec's two response types are `application/graphql-response+json` (the current one:
a request error, with no `data`, is a 4xx) and `application/json` (the legacy one: a
GraphQL request error is a 200). A client gets the new type only when it names it (and
does not prefer `application/json`); no Accept header, `*/*`, or anything else gets
`application/json`, as the spec asks of servers while clients move over."""

from __future__ import annotations

from typing import Any

import orjson

GRAPHQL_RESPONSE_JSON = "application/graphql-response+json"
JSON = "application/json"


def _quality(accept: str, media_type: str) -> float:
    """The q of `media_type` named exactly in `accept` (0 when not named)."""
    best = 0.0
    for part in accept.split(","):
        name, *params = (p.strip() for p in part.split(";"))
        if name.lower() != media_type:
            continue
        q = 1.0
        for param in params:
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        best = max(best, q)
    return best


def negotiate(accept: str | None) -> str:
    """The media type to answer a request whose Accept header is `accept`."""
    if not accept:
        return JSON
    wanted = _quality(accept, GRAPHQL_RESPONSE_JSON)
    if wanted > 0 and wanted >= _quality(accept, JSON):
        return GRAPHQL_RESPONSE_JSON
    return JSON


def refusal_body(message: str, code: str, **extensions: Any) -> bytes:
    """A request refused before it ran: errors only (no `data`, as nothing executed)."""
    error = {"message": message, "extensions": {"code": code, **extensions}}
    return orjson.dumps({"errors": [error]})
