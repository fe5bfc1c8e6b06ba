"""The FastAPI application: GraphQL (with GraphiQL, served by the instance itself: see
api/graphiql_page.py), health and readiness."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from typing import Any

import orjson
from cross_web import HTTPException
from fastapi import Depends, FastAPI, Request, Response
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import HTMLResponse, JSONResponse
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from starlette.requests import HTTPConnection
from strawberry.fastapi import GraphQLRouter
from strawberry.http import GraphQLRequestData
from strawberry.schema.exceptions import InvalidOperationTypeError
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL
from strawberry.types import ExecutionResult, SubscriptionExecutionResult
from strawberry.types.unset import UNSET, UnsetType

from api.auth import REVOKED, AuthError, TokenService, load_or_create_keys
from api.bodylimit import BodyLimit
from api.db import DatabaseTimeouts, create_engine, session_factory
from api.events import (
    EventHub,
    LiveWSHandler,
    TextWebSocketAdapter,
    authenticate_connection,
    http_subscription_refused,
    is_http_subscription,
)
from api.exports import market_csv_router
from api.fastlane import FastLane
from api.graphiql_page import GraphiQLPage
from api.market_page import market_page_router
from api.media import GRAPHQL_RESPONSE_JSON, JSON, negotiate, refusal_body
from api.migrate import current_revision, head_revision
from api.openreferral import openreferral_router
from api.peers import PeerDoor, peer_call
from api.persisted import (
    PERSISTED_QUERY_NOT_FOUND,
    PERSISTED_QUERY_REQUIRED,
    PersistedDocuments,
    document_hash,
    requested_hash,
)
from api.settings import Settings
from api.worker import build_worker
from care.disclosure import DisclosureRules
from care.openreferral import Contact
from care.tokens import is_in_force
from care.viewer import ANONYMOUS
from federation.client import FederationClient
from federation.exchange import ExchangeSweeper, configure_exchanges
from federation.identity import load_or_create_identity
from federation.manifest import CACHE_SECONDS, build_manifest
from federation.sync import start_sync_scheduler
from schema import create_schema
from schema.context import Context, Limits
from schema.error_codes import UNAVAILABLE_CODES, known_error
from schema.subscriptions import LiveContext

log = logging.getLogger("coopnet.http")


class DatabaseRefusal(Exception):
    """The database could not check the caller's token in time: nothing ran."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


# Codes of the HTTP refusals Strawberry raises (anything else it refuses is BAD_REQUEST).
HTTP_ERROR_CODES = {404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED"}


@dataclass
class PersistedRequestData(GraphQLRequestData):
    """A request with the `documentId` parameter (which Strawberry does not read)."""

    document_id: object = None


class RequestRefused(Exception):
    """A request that is not a GraphQL-over-HTTP request this instance runs: refused
    before anything executed."""

    def __init__(
        self, status: int, message: str, code: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.headers = headers or {}


def _request_error(response: dict[str, Any]) -> bool:
    """Nothing executed: a document that does not parse or validate, or variables that
    do not coerce (no `data`, and no error at a path)."""
    errors = response.get("errors") or ()
    return response.get("data") is None and bool(errors) and not any(e.get("path") for e in errors)


class FastJSONGraphQLRouter(GraphQLRouter[Context, None]):
    # Subscriptions: graphql-transport-ws only (see api/events.py).
    websocket_adapter_class = TextWebSocketAdapter
    graphql_transport_ws_handler_class = LiveWSHandler
    # Our own GraphiQL page, not Strawberry's (whose scripts come from a CDN).
    graphiql_page: GraphiQLPage
    # Registered operations (api/persisted.py), and whether only they run.
    persisted: PersistedDocuments
    trusted_documents_only: bool = False

    def should_render_graphql_ide(self, request: Any) -> bool:
        # A GET naming a persisted operation (`documentId`, Apollo's hash) is a request,
        # even with Accept: */*, not a browser asking for the page.
        params = request.query_params
        return (
            "documentId" not in params
            and "extensions" not in params
            and super().should_render_graphql_ide(request)
        )

    async def render_graphql_ide(self, request: Request) -> HTMLResponse:
        # Strawberry calls this for a browser's GET (Accept: text/html, no `query`).
        return self.graphiql_page.render()

    def encode_json(self, data: object) -> bytes:
        return orjson.dumps(data)

    def decode_json(self, data: str | bytes) -> object:
        # orjson, as api/bodylimit.py checked the body: the json module raises
        # RecursionError (an internal error) on deeply nested arrays.
        return orjson.loads(data)

    async def get_sub_response(self, request: Request) -> Response:
        # The media type the client asked for (GraphQL-over-HTTP), carried to
        # create_response, which Strawberry calls without the request.
        sub_response = await super().get_sub_response(request)
        sub_response.media_type = negotiate(request.headers.get("accept"))
        return sub_response

    async def process_result(self, request: Request, result: ExecutionResult) -> Any:
        response = await super().process_result(request, result)
        if _request_error(dict(response)) and (
            negotiate(request.headers.get("accept")) == GRAPHQL_RESPONSE_JSON
        ):
            # The spec's current media type: a request that did not execute has no `data`.
            response.pop("data", None)  # type: ignore[misc]
        return response

    def create_response(
        self, response_data: Any, sub_response: Response, *args: Any, **kwargs: Any
    ) -> Response:
        media_type = sub_response.media_type or JSON
        status = sub_response.status_code
        if (
            media_type == GRAPHQL_RESPONSE_JSON
            and status in (None, 200)
            and isinstance(response_data, dict)
            and _request_error(response_data)
        ):
            # application/graphql-response+json: a request error is a 400; under the
            # legacy application/json it stays a 200, as the spec asks.
            status = 400
        response = Response(
            self.encode_json(response_data),
            media_type=f"{media_type}; charset=utf-8",
            status_code=status or 200,
        )
        response.headers.raw.extend(
            (k, v) for k, v in sub_response.headers.raw if k.lower() != b"content-type"
        )
        return response

    async def run(self, request: Any, context: Any = UNSET, root_value: Any = UNSET) -> Any:
        # Strawberry answers a request it cannot read (variables not an object, an unknown
        # operationName, a form body, another method) in plain text without a code:
        # answer it in the GraphQL-over-HTTP shape, coded, in the negotiated media type.
        try:
            return await super().run(request, context=context, root_value=root_value)
        except RequestRefused as refused:
            status, message, code, headers = (
                refused.status,
                refused.message,
                refused.code,
                refused.headers,
            )
        except HTTPException as exc:
            status, message, headers = exc.status_code, exc.reason, {}
            code = HTTP_ERROR_CODES.get(exc.status_code, "BAD_REQUEST")
            if isinstance(exc.__cause__, InvalidOperationTypeError):
                # A mutation by GET: the spec's 405, naming the method that works.
                status, code, headers = 405, "METHOD_NOT_ALLOWED", {"Allow": "POST"}
        media_type = negotiate(request.headers.get("accept"))
        return Response(
            refusal_body(message, code),
            status_code=status,
            media_type=f"{media_type}; charset=utf-8",
            headers=headers,
        )

    async def execute_operation(
        self,
        request: Request,
        request_adapter: Any,
        request_data: GraphQLRequestData | list[GraphQLRequestData],
        context: Context,
        root_value: None,
        sub_response: Response,
    ) -> ExecutionResult | list[ExecutionResult] | SubscriptionExecutionResult:
        if isinstance(request_data, list):
            # A batch in a GET's parameters (a POSTed array is refused by api/bodylimit.py).
            raise RequestRefused(
                400, "Batched requests are not supported: one operation per request.", "BAD_REQUEST"
            )
        request_data = await self.persisted_document(request, request_data, context)
        # Subscriptions run over the websocket only (an HTTP request holds a session).
        if is_http_subscription(request_data.query, request_data.operation_name):
            return http_subscription_refused()
        result = await super().execute_operation(
            request, request_adapter, request_data, context, root_value, sub_response
        )
        if isinstance(result, ExecutionResult) and _unavailable(result):
            sub_response.status_code = 503
        return result

    async def parse_http_body(self, request: Any) -> GraphQLRequestData | list[GraphQLRequestData]:
        data = await super().parse_http_body(request)
        if isinstance(data, list) or data.query is not None:
            return data  # a `documentId` beside a full query is not read: the query runs
        if request.method == "GET":
            document_id = request.query_params.get("documentId")
        else:
            # Read again only for a request without a query (Starlette keeps the body).
            body = self.parse_json(await request.get_body())
            document_id = body.get("documentId") if isinstance(body, dict) else None
        if document_id is None:
            return data
        return PersistedRequestData(
            query=data.query,
            variables=data.variables,
            operation_name=data.operation_name,
            extensions=data.extensions,
            protocol=data.protocol,
            document_id=document_id,
        )

    async def persisted_document(
        self, request: Request, request_data: GraphQLRequestData, context: Context
    ) -> GraphQLRequestData:
        """The request with the registered document it names by hash, if it names one;
        refused when trusted-documents mode is on and it names none. Partner instances'
        signed calls (api/peers.py) are not held to trusted documents: their queries come
        from our own federation code, not from a frontend."""
        document_id = getattr(request_data, "document_id", None)
        try:
            key = requested_hash(document_id, request_data.extensions)
        except ValueError as exc:
            raise RequestRefused(400, str(exc), "BAD_REQUEST") from exc
        trusted_only = self.trusted_documents_only and peer_call(request.scope) is None
        if key is None:
            if trusted_only and request_data.query is not None:
                raise RequestRefused(
                    400,
                    "This instance runs only registered operations: send the operation's "
                    "hash (documentId), not its text (TRUSTED_DOCUMENTS_ONLY).",
                    PERSISTED_QUERY_REQUIRED,
                )
            return request_data
        if request_data.query is not None:
            # Apollo's retry after PERSISTED_QUERY_NOT_FOUND: the text with its hash.
            if document_hash(request_data.query) != key:
                raise RequestRefused(
                    400, "The hash is not the SHA-256 of the query sent with it.", "BAD_REQUEST"
                )
            if not trusted_only:
                return request_data  # runs as any full query would; never stored
        try:
            document = await self.persisted.lookup(context.session, key)
        except Exception as exc:
            known = known_error(exc)  # no database in time: a coded 503
            if known is None:
                raise
            raise RequestRefused(503, known[1], known[0]) from exc
        if document is None:
            raise RequestRefused(400, "PersistedQueryNotFound", PERSISTED_QUERY_NOT_FOUND)
        return replace(request_data, query=document)

    async def on_ws_connect(self, context: Context) -> UnsetType | dict[str, object] | None:
        assert context.request is not None
        await authenticate_connection(context.request.app.state.tokens, context)
        return UNSET


def _consume(task: asyncio.Task[Any]) -> None:
    """Retrieve an abandoned task's outcome, so asyncio does not log it as lost."""
    if not task.cancelled():
        task.exception()


def _unavailable(result: ExecutionResult) -> bool:
    """Nothing could run for want of the database (a timeout, no free connection): HTTP
    503, so clients and proxies retry. A partial answer stays 200."""
    errors = result.errors or ()
    return (
        all(value is None for value in (result.data or {}).values())
        and bool(errors)
        and all((e.extensions or {}).get("code") in UNAVAILABLE_CODES for e in errors)
        # A mutation field that committed before failing did run: say so with a 200.
        and not any((e.extensions or {}).get("committed") for e in errors)
    )


# `serve --dev` only: a frontend's own development server on this machine (Vite, Next.js,
# ...: http://localhost:3000, http://127.0.0.1:5173) may call the API without CORS_ORIGINS
# being set. Plain http on a loopback name and any port; nothing else, and never otherwise.
DEV_CORS_ORIGIN_REGEX = r"http://(localhost|127\.0\.0\.1|\[::1\])(:[0-9]{1,5})?"


def create_app(settings: Settings, database_url: str, *, dev: bool = False) -> FastAPI:
    keys = load_or_create_keys(settings)
    tokens = TokenService(
        keys, settings.jwt_issuer, settings.jwt_audience, settings.jwt_ttl_seconds
    )
    # The instance's federation identity (separate from the token key): created on first
    # start, so the manifest's keys are stable across restarts.
    identity = load_or_create_identity(
        settings.federation_key_dir,
        settings.federation_key_file,
        settings.federation_previous_key_paths,
    )
    limits = Limits(
        max_page_size=settings.max_page_size,
        max_query_cost=settings.max_query_cost,
        cover_source_seconds=settings.cover_source_timeout_seconds,
        disclosure=DisclosureRules(
            min_people=settings.disclosure_min_people, rounding_base=settings.disclosure_rounding
        ),
        market_partner_seconds=settings.market_partner_timeout_seconds,
    )
    configure_exchanges(settings.cover_hold_minutes)
    schema = create_schema(
        max_depth=settings.max_query_depth,
        max_aliases=settings.max_aliases,
        max_tokens=settings.max_tokens,
        max_cost=settings.max_query_cost,
        debug=settings.debug,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = create_engine(
            database_url,
            pool_size=settings.db_pool_size,
            timeouts=DatabaseTimeouts(
                statement_ms=settings.db_statement_timeout_ms,
                lock_ms=settings.db_lock_timeout_ms,
                connect_s=settings.db_connect_timeout_seconds,
                pool_s=settings.db_pool_timeout_seconds,
            ),
        )
        app.state.engine = engine
        app.state.sessions = session_factory(engine)
        events = EventHub(
            database_url,
            queue_size=settings.event_queue_size,
            keepalive_seconds=settings.event_keepalive_seconds,
            retention_hours=settings.live_event_retention_hours,
            prune_seconds=settings.live_event_prune_seconds,
        )
        app.state.events = events
        await events.start()
        # Calls to partner instances share one HTTP client (connection reuse).
        federation = FederationClient(
            identity, settings.base_url, private_networks=settings.federation_private_network_list
        )
        app.state.federation = federation
        feed_sync = start_sync_scheduler(engine, federation, settings.federation_sync_seconds)
        # Holds of cover exchanges not confirmed in time are expired by this process too.
        exchange_sweeper = ExchangeSweeper(app.state.sessions, settings.exchange_sweep_seconds)
        exchange_sweeper.start()
        # Messages to partners queued in the outbox are delivered by this process too.
        worker = None
        if settings.outbox_worker:
            worker = build_worker(settings, database_url, app.state.sessions, federation)
            await worker.start()
        # Everything built so far (schema, models, compiled SQL) lives as long as the process:
        # keep it out of the collector's sweeps, and sweep less often. GraphQL responses make
        # many short-lived objects; default thresholds gave p99 spikes (bench/).
        gc.collect()
        gc.freeze()
        gc.set_threshold(50_000, 50, 100)
        yield
        if worker is not None:
            await worker.stop()
        await exchange_sweeper.stop()
        await feed_sync.stop()
        await federation.aclose()
        await events.stop()
        await engine.dispose()

    async def get_session(connection: HTTPConnection) -> AsyncIterator[AsyncSession | None]:
        if connection.scope["type"] == "websocket":
            yield None  # a websocket holds no session: each event opens a short one
            return
        sessions: async_sessionmaker[AsyncSession] = connection.app.state.sessions
        async with sessions() as session:
            yield session

    async def get_context(
        connection: HTTPConnection, session: AsyncSession | None = Depends(get_session)
    ) -> AsyncIterator[Context]:
        context = await make_context(connection, session)
        try:
            yield context
        finally:
            if not isinstance(context, LiveContext):
                # Before the session closes: see Context.finish.
                await context.finish()

    async def make_context(connection: HTTPConnection, session: AsyncSession | None) -> Context:
        if session is None:
            # One context per websocket; its viewer comes from `connection_params`
            # (FastJSONGraphQLRouter.on_ws_connect).
            state = connection.app.state
            return LiveContext(
                sessions=state.sessions,
                events=state.events,
                limits=limits,
                recheck_seconds=settings.token_recheck_seconds,
            )
        federation: FederationClient = connection.app.state.federation
        partner = peer_call(connection.scope)
        if partner is not None:
            # A signed call from another instance, verified by the door (api/peers.py).
            return Context(
                session=session,
                viewer=partner.viewer,
                limits=limits,
                federation=federation,
                peer_manifest=partner.manifest,
                compiled_reads=connection.app.state.compiled_reads,
            )
        return await context_for(session, connection.headers.get("authorization"))

    async def context_for(session: AsyncSession, authorization: str | None) -> Context:
        """A member's (or anonymous) context from an Authorization header value: for
        /graphql, and the analysts' page, which takes the token from its form."""
        federation: FederationClient = app.state.federation
        verified = tokens.from_header(authorization)
        if verified is None:
            return Context(
                session=session,
                viewer=ANONYMOUS,
                limits=limits,
                federation=federation,
                compiled_reads=app.state.compiled_reads,
            )
        # Revoked, or its member deactivated: one indexed statement (see care/tokens.py).
        try:
            in_force = await is_in_force(session, verified.ref)
        except Exception as exc:
            # A slow or unreachable database is a coded 503 here too, as in the schema.
            known = known_error(exc)
            if known is None:
                raise
            raise DatabaseRefusal(*known) from exc
        if not in_force:
            raise AuthError(REVOKED)
        return Context(
            session=session,
            viewer=verified.viewer,
            limits=limits,
            federation=federation,
            read_sessions=app.state.sessions,
            compiled_reads=app.state.compiled_reads,
        )

    app = FastAPI(
        title="coopnet",
        description="GraphQL service for federated networks of social-care co-operatives",
        lifespan=lifespan,
        # No OpenAPI documents: the API is GraphQL (its contract is the schema, by
        # introspection and schema.graphql), and FastAPI's /docs and /redoc load their
        # scripts from a CDN. The few plain HTTP routes are described in the README.
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    if settings.cors_origin_list or dev:
        # Bearer tokens, not cookies: no credentials mode needed.
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origin_list,
            allow_origin_regex=DEV_CORS_ORIGIN_REGEX if dev else None,
            allow_methods=["GET", "POST", "OPTIONS"],
            allow_headers=["Authorization", "Content-Type"],
            max_age=600,
        )
    # Partner instances' signed calls are verified, and answered signed, here.
    app.add_middleware(
        PeerDoor,
        path="/graphql",
        identity=identity,
        base_url=settings.base_url,
        min_refetch_seconds=settings.federation_manifest_refetch_seconds,
    )
    # A query the compiled read path answered before is answered again from here, ahead
    # of routing and Strawberry's request handling (api/fastlane.py).
    app.add_middleware(
        FastLane,
        path="/graphql",
        schema=schema._schema,
        tokens=tokens,
        limits=limits,
        cors=bool(settings.cors_origin_list or dev),
    )
    # Outermost: an oversized body is refused before anything else reads it.
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    app.state.tokens = tokens
    app.state.settings = settings
    # Supported queries answered by one SQL statement (schema/compiled); read per request,
    # so that tests can compare both paths in one app.
    app.state.compiled_reads = settings.compiled_reads
    app.state.fast_lane = settings.compiled_reads  # tests turn it off to compare
    app.state.fast_lane_answered = 0
    app.state.identity = identity

    # Refused before anything ran: errors only, in the media type the client negotiated.
    @app.exception_handler(DatabaseRefusal)
    async def database_refused(request: Request, exc: DatabaseRefusal) -> Response:
        log.warning("request refused before it ran: %s", exc.code)
        return Response(
            refusal_body(exc.message, exc.code),
            status_code=503,
            media_type=f"{negotiate(request.headers.get('accept'))}; charset=utf-8",
        )

    @app.exception_handler(AuthError)
    async def auth_failed(request: Request, exc: AuthError) -> Response:
        return Response(
            refusal_body(str(exc), "UNAUTHENTICATED"),
            status_code=401,
            media_type=f"{negotiate(request.headers.get('accept'))}; charset=utf-8",
            headers={"WWW-Authenticate": "Bearer"},
        )

    graphql = FastJSONGraphQLRouter(
        schema,
        # A FastAPI dependency with a teardown (yield), which Strawberry passes to FastAPI.
        context_getter=get_context,  # type: ignore[arg-type]
        graphql_ide="graphiql",
        path="/graphql",
        subscription_protocols=(GRAPHQL_TRANSPORT_WS_PROTOCOL,),
        # Browser pages of the CORS origins may open the websocket too (tokens, no cookies).
        allowed_origins=settings.cors_origin_list,
    )
    graphiql = GraphiQLPage("/graphql", trusted_only=settings.trusted_documents_only)
    graphql.graphiql_page = graphiql
    graphql.persisted = PersistedDocuments()
    graphql.trusted_documents_only = settings.trusted_documents_only
    app.state.graphql = graphql
    app.include_router(graphql)
    app.include_router(graphiql.router())
    app.include_router(market_csv_router(schema, get_context))
    app.include_router(market_page_router(schema, context_for))
    app.include_router(
        openreferral_router(
            settings.base_url,
            Contact(settings.public_email, settings.public_phone, settings.public_website),
        )
    )

    @app.get("/.well-known/coopnet", include_in_schema=False)
    async def manifest(request: Request) -> Response:
        """The federation manifest (docs/federation.md): public, no token needed."""
        sessions: async_sessionmaker[AsyncSession] = request.app.state.sessions
        try:
            async with sessions() as session:
                body = await build_manifest(session, identity, settings.base_url)
        except Exception as exc:
            known = known_error(exc)  # no database in time: a coded 503, not a crash
            if known is None:
                raise
            raise DatabaseRefusal(*known) from exc
        return Response(
            orjson.dumps(body),
            media_type="application/json",
            headers={
                "Cache-Control": f"public, max-age={CACHE_SECONDS}",
                # Any site may read it, as any instance may fetch it.
                "Access-Control-Allow-Origin": "*",
            },
        )

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        """The process is up (liveness)."""
        return {"status": "ok"}

    @app.get("/readyz", include_in_schema=False)
    async def readyz(request: Request) -> Any:
        """The database answers and the schema is at the latest migration (readiness).
        Also says whether the live-update listener is connected."""
        engine: AsyncEngine = request.app.state.engine

        async def check() -> str | None:
            async with engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
            return await current_revision(engine)

        # A stalled database must not stall the probe: answer within a bound. Not
        # asyncio.wait_for: it would wait for the cancelled check to clean up its
        # connection (seconds, on a stalled network); the check ends in the background.
        task = asyncio.create_task(check())
        done, _ = await asyncio.wait({task}, timeout=settings.readiness_timeout_seconds)
        if not done:
            task.cancel()
            task.add_done_callback(_consume)
            return JSONResponse(
                status_code=503, content={"status": "unavailable", "reason": "timeout"}
            )
        try:
            revision = task.result()
        except Exception as exc:  # noqa: BLE001 - any failure means not ready
            return JSONResponse(
                status_code=503, content={"status": "unavailable", "reason": type(exc).__name__}
            )
        head = head_revision()
        if revision != head:
            return JSONResponse(
                status_code=503,
                content={"status": "migrating", "revision": revision, "head": head},
            )
        # Live updates degrade while the listener reconnects; queries and mutations do not.
        events = "listening" if request.app.state.events.listening else "reconnecting"
        return {"status": "ready", "revision": revision, "events": events}

    return app
