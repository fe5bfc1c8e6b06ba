"""The `coopnet` command line, run as a newcomer would (a real subprocess)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import jwt
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from tests.factories import Build

COOPNET = str(Path(sys.executable).with_name("coopnet"))


def run(args: list[str], settings: Any) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATABASE_URL": settings.database_url, "DATA_DIR": str(settings.data_dir)}
    return subprocess.run([COOPNET, *args], env=env, capture_output=True, text=True, timeout=60)


def claims(token: str, app: Any) -> dict[str, Any]:
    decoded: dict[str, Any] = jwt.decode(
        token, app.state.tokens.keys.public_pem, algorithms=["EdDSA"], audience="coopnet"
    )
    return decoded


async def test_token_issue_prints_only_the_token_last(
    settings: Any, app: Any, db: AsyncSession
) -> None:
    b = Build(db)
    await b.las()
    pa = await b.pa()
    await db.commit()
    out = run(["token", "issue", "--role", "PA", "--member", str(pa.id)], settings)
    assert out.returncode == 0, out.stderr
    token = out.stdout.strip().splitlines()[-1]
    assert claims(token, app)["member"] == pa.id
    assert claims(token, app)["role"] == "PA"

    admin = run(["token", "issue", "--role", "ADMIN"], settings)
    assert claims(admin.stdout.strip().splitlines()[-1], app)["role"] == "ADMIN"

    analyst = run(["token", "issue", "--role", "LA_ANALYST", "--la", "E09000003"], settings)
    assert claims(analyst.stdout.strip().splitlines()[-1], app)["la"] == "E09000003"


@pytest.mark.parametrize(
    "args,message",
    [
        (["--role", "PA"], "--member is required"),
        (["--role", "PA", "--member", "99999"], "No member 99999"),
        (["--role", "LA_ANALYST"], "needs --la"),
        (["--role", "LA_ANALYST", "--la", "W06000001"], "needs --la"),
        (["--role", "LA_ANALYST", "--la", "E09000999"], "No local authority"),
    ],
)
async def test_token_issue_refuses_nonsense(
    settings: Any, db: AsyncSession, args: list[str], message: str
) -> None:
    await Build(db).las()
    await db.commit()
    out = run(["token", "issue", *args], settings)
    assert out.returncode == 2
    assert message in out.stderr
    assert out.stdout == ""


async def test_schema_export_prints_sdl(settings: Any) -> None:
    out = run(["schema", "export"], settings)
    assert out.returncode == 0
    assert "type Cluster implements Node" in out.stdout
