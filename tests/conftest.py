"""Test fixtures: a real PostgreSQL (TEST_DATABASE_URL, else an embedded server under
./var/test-pg), migrated once per run and emptied after every test; the ASGI app driven
through httpx."""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from api.app import create_app
from api.db import create_engine, session_factory
from api.settings import Settings
from care.enums import Role
from care.models import Base
from schema.compiled import extension

ROOT = Path(__file__).resolve().parent.parent


def _in_thread(fn: Any, *args: Any) -> None:
    """Alembic's env runs its own event loop: keep it off the test loop's thread."""
    errors: list[BaseException] = []

    def target() -> None:
        try:
            fn(*args)
        except BaseException as exc:  # noqa: BLE001 - re-raised below
            errors.append(exc)

    t = threading.Thread(target=target)
    t.start()
    t.join()
    if errors:
        raise errors[0]


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    url = os.environ.get("TEST_DATABASE_URL")
    if url:
        yield url
        return
    from api.embedded import EmbeddedPostgres

    server = EmbeddedPostgres(ROOT / "var" / "test-pg")
    server.start()
    server.ensure_database("coopnet_test")
    yield server.url("coopnet_test")
    server.stop()


def _reset_schema(url: str) -> None:
    async def reset() -> None:
        engine = create_engine(url, pool_size=1)
        async with engine.begin() as conn:
            await conn.execute(text("DROP SCHEMA public CASCADE"))
            await conn.execute(text("CREATE SCHEMA public"))
        await engine.dispose()

    asyncio.run(reset())


@pytest.fixture(scope="session")
def migrated_url(database_url: str) -> str:
    from api.migrate import upgrade

    _in_thread(_reset_schema, database_url)
    _in_thread(upgrade, database_url)
    return database_url


@pytest.fixture(scope="session")
def settings(tmp_path_factory: pytest.TempPathFactory, migrated_url: str) -> Settings:
    return Settings(
        database_url=migrated_url,
        data_dir=tmp_path_factory.mktemp("data"),
        debug=False,
        federation_sync_seconds=0,  # tests sync when they mean to
        # No hold sweeper either: its statements every 30 s would land in the query counts
        # of whichever test is running (seen in CI); exchange tests call expire_holds.
        exchange_sweep_seconds=0,
        federation_private_networks="127.0.0.0/8",  # partner instances run on this machine
        # No delivery worker in the in-process app: outbox tests start real instances.
        outbox_worker=False,
    )


class watching_compiled:
    """Records whether the compiled path answered: a spy on the extension's `answer`."""

    def __init__(self, answered: list[bool]) -> None:
        self.answered = answered
        self.original = extension.answer

    def __enter__(self) -> None:
        original = self.original

        async def answer(context: Any, request: Any) -> Any:
            result = await original(context, request)
            self.answered.append(result is not None)
            return result

        extension.answer = answer

    def __exit__(self, *exc: object) -> None:
        extension.answer = self.original


class StatementCounter:
    def __init__(self) -> None:
        self.count = 0
        self.statements: list[str] = []
        self.token_checks = 0

    def __call__(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.strip().upper().startswith(("SAVEPOINT", "RELEASE", "ROLLBACK", "BEGIN")):
            return
        if "revoked_token" in statement and "AS in_force" not in statement:
            # The token check, one per request with a token (care/tokens.py), is counted on
            # its own so that counts of a query's statements do not depend on who asks. (A
            # compiled read carries the check as its last column, `in_force`: a statement.)
            self.token_checks += 1
            return
        self.count += 1
        self.statements.append(statement)


# The care vocabulary as the migrations seed it (migration 0018), restored after each test.
CARE_TERMS: list[dict[str, Any]] = []


@pytest.fixture(scope="session")
async def app_state(settings: Settings, migrated_url: str) -> AsyncIterator[Any]:
    app = create_app(settings, migrated_url)
    async with app.router.lifespan_context(app):
        async with app.state.engine.connect() as conn:
            result = await conn.execute(text("SELECT * FROM care_term"))
            CARE_TERMS[:] = [dict(r) for r in result.mappings()]
        yield app


# Our tables, and the outbox queue's (PgQueuer's, not in our metadata: migration 0011).
# Not the care vocabulary: reference data the migrations seed, which tests rely on.
TABLES = ", ".join(
    [t.name for t in reversed(Base.metadata.sorted_tables) if t.name != "care_term"]
    + ["pgqueuer", "pgqueuer_log", "pgqueuer_statistics"]
)


@pytest.fixture
async def app(app_state: Any) -> AsyncIterator[Any]:
    """The app; every table is emptied after the test, so tests stay independent."""
    yield app_state
    await empty_tables(app_state.state.engine)


async def empty_tables(engine: AsyncEngine) -> None:
    """Every table emptied and the care vocabulary restored (after a test, or after a
    module that shares its data between tests)."""
    async with engine.begin() as conn:
        await conn.execute(text(f"TRUNCATE {TABLES} RESTART IDENTITY CASCADE"))
        await conn.execute(text("DELETE FROM care_term"))
        await conn.execute(
            text(
                "INSERT INTO care_term (code, label, description, kind, active, needs_review,"
                " updated_at) VALUES (:code, :label, :description, :kind, :active,"
                " :needs_review, :updated_at)"
            ),
            CARE_TERMS,
        )


@pytest.fixture(scope="session")
def emptier(app_state: Any) -> Callable[[], Awaitable[None]]:
    """Empties every table: for a module whose tests share data (it must not use `app`)."""
    return lambda: empty_tables(app_state.state.engine)


@pytest.fixture
def sql_counter(app: Any) -> Iterator[StatementCounter]:
    counter = StatementCounter()
    engine: AsyncEngine = app.state.engine
    event.listen(engine.sync_engine, "before_cursor_execute", counter)
    yield counter
    event.remove(engine.sync_engine, "before_cursor_execute", counter)


@pytest.fixture
def resolvers_only(app: Any) -> Iterator[None]:
    """Reads answered by the resolvers only (COMPILED_READS off), for tests of the
    statements they run; the compiled path has its own (tests/schema/test_compiled_reads.py)."""
    app.state.compiled_reads = False
    yield
    app.state.compiled_reads = app.state.settings.compiled_reads


@pytest.fixture
async def client(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
        yield c


@pytest.fixture
async def db(app: Any) -> AsyncIterator[AsyncSession]:
    """A session for arranging data directly (committed by the test)."""
    async with session_factory(app.state.engine)() as session:
        yield session


class Api:
    """Post GraphQL to the app as a given caller."""

    def __init__(self, client: httpx.AsyncClient, app: Any) -> None:
        self.client = client
        self.tokens = app.state.tokens

    def token(self, role: Role | str, member: int | None = None, la: str | None = None) -> str:
        return self.tokens.issue(Role(role), member_id=member, la_code=la)

    async def post(
        self,
        query: str,
        variables: dict[str, Any] | None = None,
        *,
        token: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        h = dict(headers or {})
        if token:
            h["Authorization"] = f"Bearer {token}"
        return await self.client.post(
            "/graphql", json={"query": query, "variables": variables or {}}, headers=h
        )

    async def query(
        self,
        query: str,
        variables: dict[str, Any] | None = None,
        *,
        token: str | None = None,
        as_: tuple[Role | str, int | None] | None = None,
    ) -> dict[str, Any]:
        if as_ is not None:
            token = self.token(as_[0], as_[1])
        response = await self.post(query, variables, token=token)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    async def data(
        self,
        query: str,
        variables: dict[str, Any] | None = None,
        *,
        token: str | None = None,
        as_: tuple[Role | str, int | None] | None = None,
    ) -> dict[str, Any]:
        body = await self.query(query, variables, token=token, as_=as_)
        assert not body.get("errors"), body["errors"]
        data: dict[str, Any] = body["data"]
        return data

    async def refused(
        self,
        query: str,
        variables: dict[str, Any] | None = None,
        *,
        token: str | None = None,
        as_: tuple[Role | str, int | None] | None = None,
    ) -> str:
        """The top-level code of a request refused at its root field (which is null)."""
        body = await self.query(query, variables, token=token, as_=as_)
        errors = body.get("errors") or []
        assert len(errors) == 1, body
        assert all(v is None for v in (body.get("data") or {}).values()), body
        code: str = errors[0]["extensions"]["code"]
        return code


@pytest.fixture
def api(client: httpx.AsyncClient, app: Any) -> Api:
    return Api(client, app)


# Who asks a field for admins and coordinators (`MANAGING`) in the compiled-read
# comparisons, and what the callers it refuses get.
MANAGING_REFUSED = {
    "pa with visits": "FORBIDDEN",
    "pa without visits": "FORBIDDEN",
    "stranger": "FORBIDDEN",
    "la analyst": "FORBIDDEN",
    "anonymous": "UNAUTHENTICATED",
}


def managing_callers(
    api: Api,
    *,
    coordinator: int,
    other_coordinator: int,
    pa_with_visits: int,
    pa_without_visits: int,
    stranger: int,
    la: str,
) -> dict[str, str | None]:
    """A token for each caller of a `MANAGING` field, by name (None: anonymous)."""
    return {
        "admin": api.token(Role.ADMIN),
        "coordinator": api.token(Role.COORDINATOR, coordinator),
        "coordinator of another cluster": api.token(Role.COORDINATOR, other_coordinator),
        "pa with visits": api.token(Role.PA, pa_with_visits),
        "pa without visits": api.token(Role.PA, pa_without_visits),
        "stranger": api.token(Role.SERVICE_USER, stranger),
        "la analyst": api.token(Role.LA_ANALYST, la=la),
        "anonymous": None,
    }
