"""Migration 0006 (pa_commitment) on a database with data: the backfill mirrors existing
visits and absences, existing data that books a PA while away stops the upgrade with a
message naming the rows, and the downgrade removes the table and its triggers."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from api.db import create_engine
from api.migrate import downgrade, upgrade
from tests.conftest import _in_thread

# A PA (member 1), a person (member 2), a completed visit, a scheduled one, and an absence
# from 10:00; `{visit_at}` places one more scheduled visit.
DATA = """
INSERT INTO member (id, name, membership_class)
  VALUES (1, 'Pat', 'WORKER'), (2, 'Ada', 'SERVICE_USER');
INSERT INTO pa_profile (member_id, hourly_pay_pence) VALUES (1, 1300);
INSERT INTO service_user_profile (member_id, funding) VALUES (2, 'SELF_FUNDED');
INSERT INTO visit (service_user_id, pa_id, during, status) VALUES
  (2, 1, '[2030-01-01 08:00Z, 2030-01-01 09:00Z)', 'COMPLETED'),
  (2, 1, '{visit_at}', 'SCHEDULED'),
  (2, NULL, '[2030-01-01 11:00Z, 2030-01-01 12:00Z)', 'NEEDS_COVER');
INSERT INTO absence (pa_id, kind, during) VALUES
  (1, 'HOLIDAY', '[2030-01-01 10:00Z, 2030-01-02 10:00Z)');
INSERT INTO absence (pa_id, kind, during, cancelled_at) VALUES
  (1, 'SICKNESS', '[2030-01-01 08:00Z, 2030-01-01 09:00Z)', now());
"""
FREE = "[2030-01-01 09:00Z, 2030-01-01 10:00Z)"
AWAY = "[2030-01-01 09:30Z, 2030-01-01 10:30Z)"


async def _run(url: str, sql: str, autocommit: bool = False) -> list[tuple[object, ...]]:
    engine = create_engine(url, pool_size=1)
    async with engine.connect() as conn:
        if autocommit:
            await conn.execution_options(isolation_level="AUTOCOMMIT")
        rows: list[tuple[object, ...]] = []
        for statement in filter(str.strip, sql.split(";")):
            result = await conn.execute(text(statement))
            if result.returns_rows:
                rows = [tuple(r) for r in result.all()]
        await conn.commit()
    await engine.dispose()
    return rows


def _sql(url: str, sql: str) -> list[tuple[object, ...]]:
    out: list[list[tuple[object, ...]]] = []
    _in_thread(lambda: out.append(asyncio.run(_run(url, sql))))
    return out[0]


@pytest.fixture
def at_0005(database_url: str) -> Iterator[str]:
    name = f"coopnet_mig_{uuid.uuid4().hex[:8]}"
    admin = make_url(database_url)
    _in_thread(asyncio.run, _run(database_url, f'CREATE DATABASE "{name}"', autocommit=True))
    url = admin.set(database=name).render_as_string(hide_password=False)
    _in_thread(upgrade, url, "0005")
    yield url
    _in_thread(
        asyncio.run, _run(database_url, f'DROP DATABASE "{name}" WITH (FORCE)', autocommit=True)
    )


def test_backfill_mirrors_active_visits_and_absences_and_downgrade_removes_it(
    at_0005: str,
) -> None:
    _sql(at_0005, DATA.format(visit_at=FREE))
    _in_thread(upgrade, at_0005)
    rows = _sql(
        at_0005,
        "SELECT kind, visit_id, absence_id, pa_id FROM pa_commitment ORDER BY lower(during)",
    )
    assert rows == [("VISIT", 1, None, 1), ("VISIT", 2, None, 1), ("ABSENCE", None, 1, 1)]
    # The triggers run from now on: the visit needing cover cannot be given to the PA.
    with pytest.raises(Exception, match="pa_commitment_no_overlap"):
        _sql(at_0005, "UPDATE visit SET pa_id = 1, status = 'SCHEDULED' WHERE id = 3")

    _in_thread(downgrade, at_0005, "0005")
    left = _sql(
        at_0005,
        "SELECT (SELECT count(*) FROM pg_tables WHERE tablename = 'pa_commitment'),"
        " (SELECT count(*) FROM pg_trigger WHERE tgname LIKE '%pa_commitment'),"
        " (SELECT count(*) FROM pg_proc WHERE proname LIKE 'pa_commitment_from_%')",
    )
    assert left == [(0, 0, 0)]
    _sql(at_0005, "UPDATE visit SET pa_id = 1, status = 'SCHEDULED' WHERE id = 3")


def test_existing_visit_inside_an_absence_stops_the_upgrade_naming_it(at_0005: str) -> None:
    _sql(at_0005, DATA.format(visit_at=AWAY))
    with pytest.raises(RuntimeError) as caught:
        _in_thread(upgrade, at_0005)
    message = str(caught.value)
    assert "existing data books PAs while they are away" in message
    assert "PA 1: SCHEDULED visit 2" in message and "inside absence 1" in message
    assert "visit 1 " not in message  # the completed visit lies outside the absence
    # Nothing was changed: still at 0005, no table.
    assert _sql(at_0005, "SELECT version_num FROM alembic_version") == [("0005",)]
    assert _sql(at_0005, "SELECT to_regclass('pa_commitment') IS NULL") == [(True,)]
