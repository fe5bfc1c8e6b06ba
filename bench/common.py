"""What the benches that load their own database share: SQL as the server's admin, the
migrations off the caller's event loop, a free port, and recreating a bench database."""

from __future__ import annotations

import socket
import threading
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import make_url

from api.db import create_engine
from api.migrate import upgrade

# Only databases whose name starts with this are ever dropped by a bench.
OWN_PREFIX = "coopnet_bench"


async def admin_sql(url: str, sql: str) -> Any:
    """Run one statement on the server's `postgres` database (CREATE/DROP DATABASE)."""
    engine = create_engine(make_url(url).set(database="postgres").render_as_string(False), 1)
    try:
        async with engine.connect() as conn:
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            result = await conn.execute(text(sql))
            return result.all() if result.returns_rows else None
    finally:
        await engine.dispose()


async def database_exists(url: str) -> bool:
    name = make_url(url).database
    return bool(await admin_sql(url, f"SELECT 1 FROM pg_database WHERE datname = '{name}'"))


async def recreate_database(url: str) -> None:
    """Drop and create the bench's database: refused for any name not ours."""
    name = make_url(url).database or ""
    if not name.startswith(OWN_PREFIX):
        raise SystemExit(f"Refusing to drop {name!r}: only databases named {OWN_PREFIX}*.")
    await admin_sql(url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await admin_sql(url, f'CREATE DATABASE "{name}"')


def migrate(url: str) -> None:
    """Apply the migrations. Alembic's env runs its own event loop: keep it off ours."""
    errors: list[BaseException] = []

    def target() -> None:
        try:
            upgrade(url)
        except BaseException as exc:  # noqa: BLE001 - re-raised below
            errors.append(exc)

    t = threading.Thread(target=target)
    t.start()
    t.join()
    if errors:
        raise errors[0]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
