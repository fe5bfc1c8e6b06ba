"""Migrations: upgrade to head on an empty database, and downgrade one step and back."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from api.db import create_engine
from api.migrate import downgrade, head_revision, upgrade
from tests.conftest import _in_thread


async def _admin(url: str, sql: str) -> None:
    engine = create_engine(url, pool_size=1)
    async with engine.connect() as conn:
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        await conn.execute(text(sql))
    await engine.dispose()


async def _tables_and_revision(url: str) -> tuple[set[str], str | None]:
    engine = create_engine(url, pool_size=1)
    async with engine.connect() as conn:
        tables = set(
            (
                await conn.execute(
                    text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
                )
            ).scalars()
        )
        revision = None
        if "alembic_version" in tables:
            revision = (
                await conn.execute(text("SELECT version_num FROM alembic_version"))
            ).scalar()
    await engine.dispose()
    return tables, revision


def _previous_revision() -> str | None:
    from alembic.script import ScriptDirectory

    from api.migrate import alembic_config

    script = ScriptDirectory.from_config(alembic_config("postgresql://unused"))
    head = script.get_revision(head_revision())
    assert head is not None
    down = head.down_revision
    return down if isinstance(down, str) or down is None else down[0]


@pytest.fixture
def empty_database(database_url: str) -> Iterator[str]:
    name = f"coopnet_mig_{uuid.uuid4().hex[:8]}"
    url = make_url(database_url)
    _in_thread(asyncio.run, _admin(database_url, f'CREATE DATABASE "{name}"'))
    yield url.set(database=name).render_as_string(hide_password=False)
    _in_thread(asyncio.run, _admin(database_url, f'DROP DATABASE "{name}" WITH (FORCE)'))


def test_upgrade_on_empty_database_then_downgrade_one_step(empty_database: str) -> None:
    _in_thread(upgrade, empty_database)
    result: list[tuple[set[str], str | None]] = []
    _in_thread(lambda: result.append(asyncio.run(_tables_and_revision(empty_database))))
    tables, revision = result[-1]
    assert revision == head_revision()
    assert {"member", "cluster", "visit", "availability_window", "pool"} <= tables

    _in_thread(downgrade, empty_database, "-1")
    _in_thread(lambda: result.append(asyncio.run(_tables_and_revision(empty_database))))
    tables, revision = result[-1]
    previous = _previous_revision()
    assert revision == previous
    if previous is None:  # down to an empty schema: nothing but Alembic's own table
        assert tables <= {"alembic_version"}

    _in_thread(upgrade, empty_database)
    _in_thread(lambda: result.append(asyncio.run(_tables_and_revision(empty_database))))
    assert result[-1][1] == head_revision()


def test_models_and_migrations_agree(migrated_url: str) -> None:
    """Autogenerate finds nothing to do: the models declare what the migrations build."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext
    from sqlalchemy.ext.asyncio import create_async_engine

    from api.db import async_url
    from api.migrate import include_object
    from care.models import Base

    async def diff() -> list[object]:
        engine = create_async_engine(async_url(migrated_url))
        async with engine.connect() as conn:
            found = await conn.run_sync(
                lambda sync: compare_metadata(
                    MigrationContext.configure(sync, opts={"include_object": include_object}),
                    Base.metadata,
                )
            )
        await engine.dispose()
        return list(found)

    result: list[list[object]] = []
    _in_thread(lambda: result.append(asyncio.run(diff())))
    assert result[0] == []
