"""Bounded request bodies, refused before they are read in full.

A GraphQL request is small: the query and its variables. A body whose declared length
(Content-Length) is over the limit is refused at once with HTTP 413 without reading any
of it; a body without one (chunked), or one that sends more than it declared, is counted
while it streams in and refused as soon as it passes the limit. What is accepted is handed
on unchanged. A JSON body must be one object (batching is off): a string, a number or an
array is refused with HTTP 400, as is a body that is not JSON. Every answer is in the
GraphQL-over-HTTP shape (`errors` with a code, no `data`), in the media type the Accept
header asks for (api/media.py)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.media import negotiate, refusal_body

PAYLOAD_TOO_LARGE = "PAYLOAD_TOO_LARGE"


async def _error(
    scope: Scope, send: Send, status: int, message: str, code: str, **extensions: Any
) -> None:
    body = refusal_body(message, code, **extensions)
    accept = dict(scope["headers"]).get(b"accept", b"").decode("latin-1")
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", f"{negotiate(accept)}; charset=utf-8".encode()),
                (b"content-length", str(len(body)).encode()),
                # Whatever the client still sends is not read: close the connection.
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class BodyLimit:
    """ASGI middleware: at most `max_bytes` of request body on `paths`."""

    def __init__(self, app: ASGIApp, max_bytes: int, paths: tuple[str, ...] = ("/graphql",)):
        self.app = app
        self.max_bytes = max_bytes
        self.paths = paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] not in self.paths:
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        declared = headers.get(b"content-length")
        if declared is not None:
            try:
                too_large = int(declared) > self.max_bytes
            except ValueError:
                await _error(scope, send, 400, "Invalid Content-Length.", "BAD_REQUEST")
                return
            if too_large:
                await self._too_large(scope, send)
                return
        chunks: list[bytes] = []
        total = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            total += len(chunk)
            if total > self.max_bytes:
                await self._too_large(scope, send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        if b"json" in headers.get(b"content-type", b""):
            problem = _json_problem(body)
            if problem is not None:
                await _error(scope, send, 400, problem, "BAD_REQUEST")
                return
        await self.app(scope, replay(body, receive), send)

    async def _too_large(self, scope: Scope, send: Send) -> None:
        await _error(
            scope,
            send,
            413,
            f"The request body is larger than {self.max_bytes} bytes.",
            PAYLOAD_TOO_LARGE,
            limit=self.max_bytes,
        )


def _json_problem(body: bytes) -> str | None:
    """What is wrong with a JSON request body, or None. Parsed with orjson, which bounds
    nesting (the json module would exhaust the stack on `[[[[...`)."""
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return "The request body is not valid JSON."
    if isinstance(parsed, list):
        return (
            "Batched requests (a JSON array) are not supported: send one operation per "
            "request, as a JSON object with `query`."
        )
    if not isinstance(parsed, dict):
        return (
            "The request body must be a JSON object with `query` (and optional "
            "`variables` and `operationName`)."
        )
    return None


async def read_body(receive: Receive) -> bytes:
    """The whole request body (already bounded by `BodyLimit`, which wraps the app)."""
    chunks: list[bytes] = []
    more = True
    while more:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        more = message.get("more_body", False)
    return b"".join(chunks)


def replay(body: bytes, receive: Receive) -> Callable[[], Awaitable[Message]]:
    """The request's `receive` for an app behind a middleware that has read the body
    (`read_body`): the body first, then the real `receive`, so that a client that goes
    away is still seen as a disconnect."""
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed
