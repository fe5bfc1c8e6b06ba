"""The FastAPI application: GraphQL (with GraphiQL), health and readiness."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import orjson
from fastapi import Depends, FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from strawberry.fastapi import GraphQLRouter

from api.auth import AuthError, TokenService, load_or_create_keys
from api.db import create_engine, session_factory
from api.migrate import current_revision, head_revision
from api.settings import Settings
from schema import create_schema
from schema.context import Context, Limits


class FastJSONGraphQLRouter(GraphQLRouter[Context, None]):
    def encode_json(self, data: object) -> bytes:
        return orjson.dumps(data)


def create_app(settings: Settings, database_url: str) -> FastAPI:
    keys = load_or_create_keys(settings)
    tokens = TokenService(
        keys, settings.jwt_issuer, settings.jwt_audience, settings.jwt_ttl_seconds
    )
    limits = Limits(max_page_size=settings.max_page_size, max_query_cost=settings.max_query_cost)
    schema = create_schema(
        max_depth=settings.max_query_depth,
        max_aliases=settings.max_aliases,
        max_tokens=settings.max_tokens,
        max_cost=settings.max_query_cost,
        default_page_size=limits.default_page_size,
        debug=settings.debug,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = create_engine(database_url, pool_size=settings.db_pool_size)
        app.state.engine = engine
        app.state.sessions = session_factory(engine)
        yield
        await engine.dispose()

    async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
        sessions: async_sessionmaker[AsyncSession] = request.app.state.sessions
        async with sessions() as session:
            yield session

    async def get_context(
        request: Request, session: AsyncSession = Depends(get_session)
    ) -> Context:
        viewer = tokens.viewer_from_header(request.headers.get("authorization"))
        return Context(session=session, viewer=viewer, limits=limits)

    app = FastAPI(
        title="coopnet",
        description="GraphQL service for federated networks of social-care co-operatives",
        lifespan=lifespan,
    )
    if settings.cors_origin_list:
        # Bearer tokens, not cookies: no credentials mode needed.
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origin_list,
            allow_methods=["GET", "POST", "OPTIONS"],
            allow_headers=["Authorization", "Content-Type"],
            max_age=600,
        )
    app.state.tokens = tokens
    app.state.settings = settings

    @app.exception_handler(AuthError)
    async def auth_failed(request: Request, exc: AuthError) -> JSONResponse:
        return JSONResponse(
            status_code=401,
            content={
                "data": None,
                "errors": [{"message": str(exc), "extensions": {"code": "UNAUTHENTICATED"}}],
            },
            headers={"WWW-Authenticate": "Bearer"},
        )

    graphql = FastJSONGraphQLRouter(
        schema, context_getter=get_context, graphql_ide="graphiql", path="/graphql"
    )
    app.include_router(graphql)

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        """The process is up (liveness)."""
        return {"status": "ok"}

    @app.get("/readyz", include_in_schema=False)
    async def readyz(request: Request) -> Any:
        """The database answers and the schema is at the latest migration (readiness)."""
        engine: AsyncEngine = request.app.state.engine
        try:
            async with engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
            revision = await current_revision(engine)
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
        return {"status": "ready", "revision": revision}

    return app
