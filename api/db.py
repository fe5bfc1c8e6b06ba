"""Engine and sessions. One AsyncSession per request, committed at its end."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine


def async_url(url: str) -> str:
    """Accept plain `postgresql://` URLs (as most tools write them) and use asyncpg."""
    u = make_url(url)
    if u.drivername in ("postgresql", "postgres", "postgresql+psycopg", "postgresql+psycopg2"):
        u = u.set(drivername="postgresql+asyncpg")
    return u.render_as_string(hide_password=False)


@dataclass(frozen=True)
class DatabaseTimeouts:
    """How long a request may wait for the database, at each step (README, "Configuration").

    The server stops a statement after `statement_ms` and a wait for a lock after
    `lock_ms`; the client gives up on a server that stops answering altogether (a stalled
    network) `client_margin_s` after the statement timeout, on connecting after
    `connect_s`, and on waiting for a free pooled connection after `pool_s`."""

    statement_ms: int = 5000
    lock_ms: int = 2000
    connect_s: float = 5.0
    pool_s: float = 5.0
    client_margin_s: float = 1.0

    @property
    def command_s(self) -> float:
        return self.statement_ms / 1000 + self.client_margin_s


def create_engine(
    url: str, pool_size: int = 10, *, timeouts: DatabaseTimeouts | None = None
) -> AsyncEngine:
    """An engine; with `timeouts` (the app's), every connection is bounded in time.
    Without (migrations, the CLI's set-up steps), statements may run as long as they need."""
    # extra_float_digits 1: floats as their shortest exact text, whatever the server's
    # setting (the compiled read path writes them as orjson does: schema/compiled).
    # DateStyle ISO: the compiled read path writes instants and dates from their text.
    server_settings = {
        "application_name": "coopnet",
        "jit": "off",
        "extra_float_digits": "1",
        "DateStyle": "ISO",
    }
    connect_args: dict[str, Any] = {
        "server_settings": server_settings,
        # asyncpg keeps its statements prepared per connection only up to 15 KB of SQL by
        # default; a compiled read (api/fastlane.py) is often 10-40 KB, and re-preparing it
        # costs a round trip and PostgreSQL's parsing on every request.
        "max_cacheable_statement_size": 128 * 1024,
    }
    options: dict[str, Any] = {}
    if timeouts is not None:
        # Server-side, per connection: a slow statement or a held lock ends in a coded
        # error instead of holding the connection (and the request) indefinitely.
        server_settings["statement_timeout"] = str(timeouts.statement_ms)
        server_settings["lock_timeout"] = str(timeouts.lock_ms)
        # A transaction left open (a request stuck between statements) cannot hold its
        # locks and snapshot for ever; it also holds back the availability feed's xmin.
        server_settings["idle_in_transaction_session_timeout"] = str(
            max(timeouts.statement_ms * 6, 30_000)
        )
        connect_args["timeout"] = timeouts.connect_s
        connect_args["command_timeout"] = timeouts.command_s
        options["pool_timeout"] = timeouts.pool_s
    return create_async_engine(
        async_url(url),
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=False,
        # asyncpg's own reset on release costs a round trip; SQLAlchemy already rolls back.
        connect_args=connect_args,
        **options,
    )


def session_factory(engine: AsyncEngine) -> async_sessionmaker:
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)
