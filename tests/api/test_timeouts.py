"""Bounded time (issue 6, point 12): a stalled database ends in a coded error within the
configured timeouts, never a hung request, and /readyz answers within its bound.

Each test runs its own app with short timeouts against the test database; the stalls are
real: another connection holding a table lock, every pooled connection checked out, or a
TCP proxy in front of PostgreSQL that stops forwarding."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import event, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

from api.app import create_app
from api.db import create_engine
from api.settings import Settings
from care.enums import Role
from tests.factories import Build, gid

MEMBERS = "{ members { totalCount } }"
RENAME = """mutation($id: ID!) {
  updateMember(id: $id, input: {name: "Renamed"}) { member { name } errors { code } } }"""


@contextlib.asynccontextmanager
async def running(url: str, data_dir: Path, **overrides: Any) -> AsyncIterator[Any]:
    settings = Settings(database_url=url, data_dir=data_dir, **overrides)
    app = create_app(settings, url)
    async with app.router.lifespan_context(app):
        yield app


@contextlib.asynccontextmanager
async def client_of(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
        yield c


async def post(
    client: httpx.AsyncClient, app: Any, query: str, variables: dict[str, Any] | None = None
) -> tuple[httpx.Response, float]:
    token = app.state.tokens.issue(Role.ADMIN)
    started = time.monotonic()
    # Bounded here too, so a regression fails instead of hanging the suite.
    response = await asyncio.wait_for(
        client.post(
            "/graphql",
            json={"query": query, "variables": variables or {}},
            headers={"Authorization": f"Bearer {token}"},
        ),
        10,
    )
    return response, time.monotonic() - started


def code_of(response: httpx.Response) -> str:
    body = response.json()
    # Nothing ran: no data at all, or (a mutation) every field null.
    assert all(v is None for v in (body.get("data") or {}).values()), body
    code: str = body["errors"][0]["extensions"]["code"]
    return code


@contextlib.asynccontextmanager
async def table_locked(engine: AsyncEngine, table: str) -> AsyncIterator[AsyncConnection]:
    async with engine.connect() as conn:
        await conn.execute(text(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE"))
        yield conn
        await conn.rollback()


@pytest.fixture
async def pa_id(db: AsyncSession) -> int:
    b = Build(db)
    await b.las()
    await b.coop()
    pa = await b.pa("Pat Near")
    await db.commit()
    return int(pa.id)


async def test_a_statement_timeout_is_a_coded_503(
    app: Any, migrated_url: str, tmp_path: Path, pa_id: int, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="coopnet.graphql")
    async with (
        running(migrated_url, tmp_path, db_statement_timeout_ms=300, db_lock_timeout_ms=5000) as a,
        client_of(a) as client,
    ):
        async with table_locked(app.state.engine, "member"):
            response, took = await post(client, a, MEMBERS)
            assert response.status_code == 503, response.text
            assert code_of(response) == "DATABASE_TIMEOUT"
            assert took < 2
            # A mutation stalls the same way, and is refused the same way.
            response, took = await post(client, a, RENAME, {"id": gid("PersonalAssistant", pa_id)})
            assert response.status_code == 503, response.text
            assert code_of(response) == "DATABASE_TIMEOUT"
        # Logged once per refusal, as a warning without a traceback.
        refusals = [r for r in caplog.records if "DATABASE_TIMEOUT" in r.getMessage()]
        assert len(refusals) == 2
        assert all(r.levelno == logging.WARNING and not r.exc_info for r in refusals)
        # Once the lock is gone the same app answers; nothing was renamed.
        response, _ = await post(client, a, "{ members { totalCount nodes { name } } }")
        assert response.status_code == 200
        assert response.json()["data"]["members"]["nodes"] == [{"name": "Pat Near"}]


async def test_a_lock_timeout_is_a_coded_503(
    app: Any, migrated_url: str, tmp_path: Path, pa_id: int
) -> None:
    async with (
        running(migrated_url, tmp_path, db_statement_timeout_ms=5000, db_lock_timeout_ms=200) as a,
        client_of(a) as client,
        table_locked(app.state.engine, "member"),
    ):
        response, took = await post(client, a, MEMBERS)
        assert response.status_code == 503, response.text
        assert code_of(response) == "DATABASE_TIMEOUT"
        assert took < 2


async def test_no_free_connection_is_service_unavailable(
    app: Any, migrated_url: str, tmp_path: Path, pa_id: int
) -> None:
    async with (
        running(migrated_url, tmp_path, db_pool_size=1, db_pool_timeout_seconds=0.3) as a,
        client_of(a) as client,
    ):
        engine: AsyncEngine = a.state.engine
        # pool_size 1 and as many overflow: two connections, both held elsewhere.
        async with engine.connect(), engine.connect():
            response, took = await post(client, a, MEMBERS)
            assert response.status_code == 503, response.text
            assert code_of(response) == "SERVICE_UNAVAILABLE"
            assert took < 2
        response, _ = await post(client, a, MEMBERS)
        assert response.status_code == 200, response.text


class StallingProxy:
    """Forwards TCP to PostgreSQL until stalled; then holds every byte (a network or
    server that stopped answering) until resumed."""

    def __init__(self, host: str, port: int) -> None:
        # A host starting with "/" is a Unix socket directory (the embedded server).
        self.host, self.port = host, port
        self.flowing = asyncio.Event()
        self.flowing.set()
        self.tasks: set[asyncio.Task[None]] = set()
        self.server: asyncio.Server | None = None
        self.listen_port = 0

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.listen_port = self.server.sockets[0].getsockname()[1]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.host.startswith("/"):
            socket = f"{self.host}/.s.PGSQL.{self.port}"
            up_reader, up_writer = await asyncio.open_unix_connection(socket)
        else:
            up_reader, up_writer = await asyncio.open_connection(self.host, self.port)
        for task in (
            asyncio.create_task(self._pipe(reader, up_writer)),
            asyncio.create_task(self._pipe(up_reader, writer)),
        ):
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                await self.flowing.wait()
                writer.write(data)
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    async def stop(self) -> None:
        self.flowing.set()
        if self.server is not None:
            self.server.close()
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


async def test_a_stalled_database_bounds_readyz_and_requests(
    app: Any, migrated_url: str, tmp_path: Path, pa_id: int
) -> None:
    url = make_url(migrated_url)
    socket_dir = url.query.get("host")
    host = socket_dir if isinstance(socket_dir, str) else url.host or "127.0.0.1"
    proxy = StallingProxy(host, url.port or 5432)
    await proxy.start()
    proxied = (
        url.difference_update_query(["host"])
        .set(host="127.0.0.1", port=proxy.listen_port)
        .render_as_string(False)
    )
    try:
        async with (
            running(
                proxied,
                tmp_path,
                db_statement_timeout_ms=300,
                db_connect_timeout_seconds=0.5,
                readiness_timeout_seconds=0.5,
            ) as a,
            client_of(a) as client,
        ):
            ready = await client.get("/readyz")
            assert ready.status_code == 200, ready.text
            proxy.flowing.clear()

            started = time.monotonic()
            ready = await asyncio.wait_for(client.get("/readyz"), 10)
            assert ready.status_code == 503
            assert ready.json()["status"] == "unavailable"
            assert time.monotonic() - started < 1.5

            response, took = await post(client, a, MEMBERS)
            assert response.status_code == 503, response.text
            assert code_of(response) in ("DATABASE_TIMEOUT", "SERVICE_UNAVAILABLE")
            assert took < 3

            proxy.flowing.set()
            ready = await asyncio.wait_for(client.get("/readyz"), 10)
            assert ready.status_code == 200, ready.text
    finally:
        await proxy.stop()


async def test_migrations_and_the_cli_have_no_statement_timeout(migrated_url: str) -> None:
    """Only the app's engine is bounded: a long migration must not be cut short."""
    engine = create_engine(migrated_url, pool_size=1)
    async with engine.connect() as conn:
        assert (await conn.execute(text("SHOW statement_timeout"))).scalar() == "0"
    await engine.dispose()


@pytest.mark.parametrize("at", ["commit", "release_savepoint"])
async def test_a_mutation_stalled_before_its_end_is_a_coded_503(
    app: Any, migrated_url: str, tmp_path: Path, pa_id: int, at: str
) -> None:
    """The database stalls after a mutation's work: at the request's COMMIT, or at the
    release of the mutation's savepoint (the connection is lost inside the mutation).
    Either is a coded error with HTTP 503, not an internal error."""
    url = make_url(migrated_url)
    socket_dir = url.query.get("host")
    host = socket_dir if isinstance(socket_dir, str) else url.host or "127.0.0.1"
    proxy = StallingProxy(host, url.port or 5432)
    await proxy.start()
    proxied = (
        url.difference_update_query(["host"])
        .set(host="127.0.0.1", port=proxy.listen_port)
        .render_as_string(False)
    )

    def stall(*_: Any) -> None:
        proxy.flowing.clear()

    try:
        async with (
            running(proxied, tmp_path, db_statement_timeout_ms=300) as a,
            client_of(a) as client,
        ):
            engine = a.state.engine.sync_engine
            event.listen(engine, at, stall)
            try:
                response, took = await post(
                    client, a, RENAME, {"id": gid("PersonalAssistant", pa_id)}
                )
            finally:
                event.remove(engine, at, stall)
                proxy.flowing.set()
            assert response.status_code == 503, response.text
            assert code_of(response) in ("DATABASE_TIMEOUT", "SERVICE_UNAVAILABLE")
            assert took < 4
    finally:
        await proxy.stop()
    if at == "release_savepoint":
        # The transaction was lost with its connection: nothing was saved. (A COMMIT
        # that timed out may still have been applied: its outcome is unknown.)
        async with app.state.engine.connect() as conn:
            name = (
                await conn.execute(text("SELECT name FROM member WHERE id = :id"), {"id": pa_id})
            ).scalar()
        assert name == "Pat Near"
