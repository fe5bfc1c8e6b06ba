"""Every mutation field's outcome is visible and true: each field commits on its own when
it succeeds, and an unexpected failure nulls that field only, with a coded error at its
path saying whether anything of it was committed. What the response says was done is
exactly what the database holds (real database; only one service function is made to
fail)."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from care.enums import Role
from care.models import Pool
from care.services import clusters as cluster_service
from care.viewer import Viewer
from schema.mutations import pools as pool_mutations
from tests.conftest import Api
from tests.factories import Build

DOCUMENT = """
mutation {
  first: createPool(input: {name: "North"}) { pool { id name } errors { code } }
  second: createCluster(input: {name: "Finchley", kind: GEOGRAPHIC,
                                localAuthority: "E09000003", postcodeDistricts: ["N12"]}) {
    cluster { id } errors { code }
  }
  third: createPool(input: {name: "South"}) { pool { id name } errors { code } }
}
"""


async def pool_names(db: AsyncSession) -> list[str]:
    return list((await db.scalars(select(Pool.name).order_by(Pool.id))).all())


@pytest.fixture
async def las(db: AsyncSession) -> None:
    await Build(db).las()
    await db.commit()


async def test_a_failing_field_does_not_hide_or_undo_the_others(
    api: Api, db: AsyncSession, las: None, monkeypatch: pytest.MonkeyPatch, caplog: Any
) -> None:
    async def fails_after_writing(session: AsyncSession, viewer: Viewer, fields: Any) -> int:
        session.add(Pool(name="Ghost", shared_with_partners=False))
        await session.flush()  # a real write, which must not survive the failure
        raise RuntimeError("boom")

    monkeypatch.setattr(cluster_service, "create_cluster", fails_after_writing)
    with caplog.at_level(logging.ERROR, logger="coopnet.graphql"):
        body = await api.query(DOCUMENT, token=api.token(Role.ADMIN))

    data = body["data"]
    assert data["first"]["errors"] == [] and data["first"]["pool"]["name"] == "North"
    assert data["second"] is None
    assert data["third"]["errors"] == [] and data["third"]["pool"]["name"] == "South"
    [error] = body["errors"]
    assert error["path"] == ["second"]
    assert error["extensions"] == {"code": "INTERNAL_SERVER_ERROR", "committed": False}
    assert "boom" not in error["message"]
    assert "boom" in caplog.text  # logged for the operator, not returned
    # Exactly what the response reports as done is in the database.
    assert await pool_names(db) == ["North", "South"]


async def test_a_failure_after_the_commit_says_so(
    api: Api, db: AsyncSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = pool_mutations._respond

    async def fails_reading_back(info: Any, pool_id: int | None, errors: list[Any]) -> Any:
        if pool_id is not None:
            raise RuntimeError("read-back failed")
        return await real(info, pool_id, errors)

    monkeypatch.setattr(pool_mutations, "_respond", fails_reading_back)
    body = await api.query(
        'mutation { createPool(input: {name: "North"}) { pool { id } errors { code } } }',
        token=api.token(Role.ADMIN),
    )
    assert body["data"] == {"createPool": None}
    [error] = body["errors"]
    assert error["extensions"] == {"code": "INTERNAL_SERVER_ERROR", "committed": True}
    assert await pool_names(db) == ["North"]  # committed, as the error says: do not retry


async def test_a_refused_field_changes_nothing_and_the_others_still_run(
    api: Api, db: AsyncSession, las: None
) -> None:
    pa = await Build(db).pa()
    await db.commit()
    body = await api.query(DOCUMENT, token=api.token(Role.PA, pa.id))
    assert body["data"] == {"first": None, "second": None, "third": None}
    assert {e["extensions"]["code"] for e in body["errors"]} == {"FORBIDDEN"}
    assert await pool_names(db) == []
