"""The HTTP fast lane: a query the compiled read path has answered before is answered
again straight from the ASGI request, without FastAPI's routing and dependencies or
Strawberry's request handling (issue 10: those cost more than the statement).

It answers only when every step the full path takes would succeed, and gives the request
to the full path otherwise, which then answers (or refuses) exactly as it always has:

- a POST to /graphql with a JSON body of `query`, `variables` and `operationName` only,
  no partner signature (api/peers.py), no `Origin` when CORS is on (the CORS middleware
  adds its headers on the full path), not in trusted-documents mode (the router's
  setting, read per request);
- a query text that parsed, validated and compiled on the full path with this schema
  (`schema.compiled.extension.ANSWERED`; a schema is built per set of limits): parsing
  and validating a document depend on its text only (the operation is picked by name,
  as the full path picks it);
- a bearer token that verifies (api/auth.py) or none;
- variables within the input bounds, a cost within the limit, and a compiled plan for
  the caller's role (`schema.compiled.extension.prepare`, as the full path uses);
- one statement, on a pooled connection outside any transaction, that reads the answer
  and checks that the token is still in force (`care.tokens.in_force_clause`): a revoked
  token, or a deactivated member's, goes to the full path, which refuses it with 401.

The response is byte for byte the full path's (tests/api/test_fastlane.py): `data` as
PostgreSQL built it, and the same `extensions` (the cost; admins' statement count).
A statement the database did not run in time (a timeout, no free connection, a lost
connection: `schema.error_codes.known_error`) is answered here with the full path's coded
503, so it is not run (and waited for) twice. Any other failure hands the request to the
full path, which answers or reports it with its code."""

from __future__ import annotations

import logging
from typing import Any

import orjson
from graphql import GraphQLSchema
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.types import ASGIApp, Receive, Scope, Send

from api.auth import AuthError, TokenService
from api.bodylimit import read_body, replay
from api.media import negotiate
from api.peers import is_partner_call
from care.viewer import ANONYMOUS
from schema.compiled.extension import ANSWERED, prepare, refused
from schema.context import DEFAULT_PAGE_SIZE, Limits
from schema.error_codes import UNAVAILABLE_CODES
from schema.limits import CostCache, check_input_bounds

log = logging.getLogger("coopnet.fastlane")

REQUEST_KEYS = frozenset({"query", "variables", "operationName"})


class FastLane:
    """ASGI middleware (see the module docstring). Counts the requests it answered in the
    app's `state.fast_lane_answered` (tests see that it works)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        path: str,
        schema: GraphQLSchema,
        tokens: TokenService,
        limits: Limits,
        cors: bool,
    ) -> None:
        self.app = app
        self.path = path
        self.schema = schema
        self.tokens = tokens
        self.limits = limits
        self.cors = cors
        self.costs = CostCache()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self._eligible(scope):
            await self.app(scope, receive, send)
            return
        body = await read_body(receive)
        try:
            answer = await self._answer(scope, body)
        except Exception:
            # The full path answers, and reports the failure with its code.
            log.warning("fast lane: handing the request to the full path", exc_info=True)
            answer = "it failed"
        if isinstance(answer, str):
            log.debug("fast lane: the full path answers: %s", answer)
            await self.app(scope, replay(body, receive), send)
            return
        scope["app"].state.fast_lane_answered += 1
        status, media_type, content = answer
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-length", str(len(content)).encode()),
                    (b"content-type", f"{media_type}; charset=utf-8".encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": content})

    def _eligible(self, scope: Scope) -> bool:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] != self.path:
            return False
        state = scope["app"].state
        if state.graphql.trusted_documents_only:  # the router's setting (api/persisted.py)
            return False
        if not (state.compiled_reads and state.fast_lane):
            return False
        if is_partner_call(scope):
            return False
        json = False
        for name, value in scope["headers"]:
            if name == b"content-type":
                json = value.split(b";")[0].strip().lower() == b"application/json"
            elif name == b"origin" and self.cors:
                return False
        return json  # no media type, or another: the full path refuses it

    async def _answer(self, scope: Scope, body: bytes) -> tuple[int, str, bytes] | str:
        """(status, media type, body) of the answer, or why the full path answers instead."""
        try:
            request = orjson.loads(body)
        except orjson.JSONDecodeError:
            return "the body is not JSON"
        if type(request) is not dict or not request.keys() <= REQUEST_KEYS:
            return "the body has other keys"
        query = request.get("query")
        variables = request.get("variables")
        operation_name = request.get("operationName")
        if (
            type(query) is not str
            or not (variables is None or type(variables) is dict)
            or not (operation_name is None or type(operation_name) is str)
        ):
            return "the request's fields have other types"
        document = ANSWERED.get((self.schema, query))
        if document is None:
            return "the document has not been answered by the compiled path"
        headers = dict(scope["headers"])
        try:
            verified = self.tokens.from_header(_text(headers.get(b"authorization")))
        except AuthError:
            return "the token does not verify"  # the full path refuses it with 401
        viewer = ANONYMOUS if verified is None else verified.viewer
        if check_input_bounds(self.schema, document, variables, self.limits.max_page_size):
            return "an input is out of bounds"
        cost = self.costs.cost(
            self.schema,
            document,
            query,
            operation_name,
            variables,
            default_page_size=DEFAULT_PAGE_SIZE,
        )
        if cost is None or cost > self.limits.max_query_cost:
            return "the cost is over the limit"
        prepared = prepare(
            self.schema, document, query, operation_name, variables, viewer, self.limits
        )
        if prepared is None:
            return "the operation does not compile for this caller or these values"
        sql, arguments = prepared.bind(None if verified is None else verified.ref)
        extensions: dict[str, Any] = {
            "cost": {"requested": cost, "limit": self.limits.max_query_cost}
        }
        if viewer.is_admin:
            extensions["sqlStatements"] = 1
        media_type = negotiate(_text(headers.get(b"accept")))
        keys = prepared.plan.keys
        engine: AsyncEngine = scope["app"].state.engine
        try:
            async with engine.connect() as connection:
                raw = await connection.get_raw_connection()
                driver: Any = raw.driver_connection
                row = await driver.fetchrow(sql, *arguments)
        except Exception as exc:
            error = refused(prepared.plan, exc)
            code = None if error is None else (error.extensions or {}).get("code")
            if error is None or code not in UNAVAILABLE_CODES:
                raise
            # No database in time: answered here as the full path answers it (its coded
            # 503), which would otherwise run the statement again, and wait as long again.
            log.warning("fast lane: request refused at %s: %s", error.path, code)
            failed = {"data": dict.fromkeys(keys), "errors": [error.formatted]}
            return 503, media_type, orjson.dumps({**failed, "extensions": extensions})
        if not row[len(keys)]:
            # Revoked, or its member deactivated: the full path refuses it with 401.
            return "the token is no longer in force"
        data = prepared.plan.data(row)
        return 200, media_type, orjson.dumps({"data": data, "extensions": extensions})


def _text(value: bytes | None) -> str | None:
    return None if value is None else value.decode("latin-1")
