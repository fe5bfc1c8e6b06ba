"""The `coopnet` command line, run as a newcomer would (a real subprocess)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from care.models import Member
from tests.conftest import Api
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


def last_line(out: subprocess.CompletedProcess[str]) -> str:
    return out.stdout.strip().splitlines()[-1]


async def test_token_issue_refuses_inactive_members_and_unbounded_lifetimes(
    settings: Any, db: AsyncSession
) -> None:
    b = Build(db)
    await b.las()
    pa = await b.pa()
    gone = await b.pa("Gone")
    await db.execute(update(Member).where(Member.id == gone.id).values(active=False))
    await db.commit()
    out = run(["token", "issue", "--role", "PA", "--member", str(gone.id)], settings)
    assert out.returncode == 2
    assert "not active" in out.stderr
    assert out.stdout == ""
    for role, ttl in [
        (["--role", "PA", "--member", str(pa.id)], "0"),
        (["--role", "PA", "--member", str(pa.id)], "-5"),
        (["--role", "PA", "--member", str(pa.id)], str(30 * 86400 + 1)),
        (["--role", "ADMIN"], str(7 * 86400 + 1)),
        (["--role", "ADMIN"], str(100_000_000_000)),
    ]:
        out = run(["token", "issue", *role, "--ttl", ttl], settings)
        assert out.returncode == 2, (role, ttl)
        assert "--ttl" in out.stderr
        assert out.stdout == ""
    out = run(["token", "issue", "--role", "PA", "--member", str(pa.id), "--ttl", "60"], settings)
    assert out.returncode == 0, out.stderr
    token = last_line(out)
    lifetime = jwt.decode(token, options={"verify_signature": False})
    assert 59 <= lifetime["exp"] - lifetime["iat"] <= 60


async def test_token_revoke_by_jti_and_by_member(settings: Any, api: Api, db: AsyncSession) -> None:
    b = Build(db)
    await b.las()
    pa = await b.pa()
    await db.commit()
    issued = [run(["token", "issue", "--role", "PA", "--member", str(pa.id)], settings)]
    issued.append(run(["token", "issue", "--role", "PA", "--member", str(pa.id)], settings))
    admin = run(["token", "issue", "--role", "ADMIN"], settings)
    first, second, admin_token = last_line(issued[0]), last_line(issued[1]), last_line(admin)
    me = "{ me { name } }"
    for token in (first, second, admin_token):
        assert (await api.post(me, token=token)).status_code == 200

    jti = jwt.decode(first, options={"verify_signature": False})["jti"]
    assert jti in issued[0].stderr  # the operator is told the id to revoke by
    out = run(["token", "revoke", "--jti", jti], settings)
    assert out.returncode == 0, out.stderr
    assert (await api.post(me, token=first)).status_code == 401
    assert (await api.post(me, token=second)).status_code == 200
    again = run(["token", "revoke", "--jti", jti], settings)
    assert again.returncode == 0 and "already" in again.stdout

    admin_jti = jwt.decode(admin_token, options={"verify_signature": False})["jti"]
    assert run(["token", "revoke", "--jti", admin_jti], settings).returncode == 0
    assert (await api.post(me, token=admin_token)).status_code == 401

    out = run(["token", "revoke", "--member", str(pa.id)], settings)
    assert out.returncode == 0, out.stderr
    assert (await api.post(me, token=second)).status_code == 401
    fresh = run(["token", "issue", "--role", "PA", "--member", str(pa.id)], settings)
    assert (await api.post(me, token=last_line(fresh))).status_code == 200

    for args, message in [
        (["--member", "99999"], "No member 99999"),
        (["--jti", "nope"], "not a token id"),
        ([], "exactly one of"),
        (["--jti", jti, "--member", str(pa.id)], "exactly one of"),
    ]:
        out = run(["token", "revoke", *args], settings)
        assert out.returncode == 2, args
        assert message in out.stderr


@pytest.mark.parametrize("with_database_url", [True, False])
def test_token_commands_from_another_directory_create_nothing(
    settings: Any, tmp_path: Path, with_database_url: bool
) -> None:
    """Run where there is no instance (DATA_DIR defaults to ./var): a clear error naming
    where it looked, and no new key or database that the server would not know."""
    env = {k: v for k, v in os.environ.items() if k not in ("DATA_DIR", "DATABASE_URL")}
    if with_database_url:
        env["DATABASE_URL"] = settings.database_url
    # Revoking needs only the database: with DATABASE_URL set it is found.
    commands = [["issue", "--role", "ADMIN"]]
    if not with_database_url:
        commands.append(["revoke", "--member", "1"])
    for args in commands:
        out = subprocess.run(
            [COOPNET, "token", *args],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert out.returncode == 2, out.stderr
        assert out.stdout == ""
        assert str(tmp_path / "var") in out.stderr
        assert "DATA_DIR" in out.stderr
        assert list(tmp_path.iterdir()) == []


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_sigterm_stops_serve_and_its_embedded_postgres(tmp_path: Path) -> None:
    """What a process manager or container runtime sends: the server and the embedded
    PostgreSQL it started both stop (before, the server died and PostgreSQL ran on)."""
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env.update({"DATA_DIR": str(tmp_path), "PORT": str(port), "LOG_FORMAT": "console"})
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        server = subprocess.Popen(
            [COOPNET, "serve", "--dev"], env=env, cwd=tmp_path, stdout=out, stderr=out
        )
    pg_pid: int | None = None
    try:
        deadline = time.monotonic() + 120
        ready = False
        while time.monotonic() < deadline and server.poll() is None and not ready:
            try:
                ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200
            except httpx.TransportError:
                time.sleep(0.2)
        assert ready, log.read_text()
        # `make run` runs this: it says what it starts, and where, before the slow first steps.
        lines = log.read_text().splitlines()
        assert lines[0] == (
            "Starting coopnet with an embedded PostgreSQL and the demo co-op on "
            f"http://127.0.0.1:{port}/graphql"
        ), lines[:3]
        assert lines[1].startswith("First run: creating the database under "), lines[:3]
        # --dev lets a frontend's development server on this machine call the API.
        preflight = httpx.options(
            f"http://127.0.0.1:{port}/graphql",
            headers={"Origin": "http://localhost:3000", "Access-Control-Request-Method": "POST"},
            timeout=5,
        )
        assert preflight.headers.get("access-control-allow-origin") == "http://localhost:3000"
        postmaster = tmp_path / "pg" / "postmaster.pid"
        pg_pid = int(postmaster.read_text().splitlines()[0])
        assert _alive(pg_pid)

        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=30) == 0, log.read_text()
        for _ in range(100):  # PostgreSQL's own shutdown takes a moment
            if not _alive(pg_pid):
                break
            time.sleep(0.1)
        assert not _alive(pg_pid), log.read_text()
        assert not postmaster.exists()
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
        if pg_pid is not None and _alive(pg_pid):  # the bug: do not leave it running
            os.kill(pg_pid, signal.SIGQUIT)
