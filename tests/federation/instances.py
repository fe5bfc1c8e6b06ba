"""Real instances for federation tests: each a uvicorn process with its own database (on
the test PostgreSQL server), its own DATA_DIR (token and federation keys) and its own
PUBLIC_BASE_URL on a loopback port. No peer is mocked: instances talk over real HTTP.

Use the `peers` fixture of tests/federation/conftest.py; `Instance.reset()` empties an
instance's database between tests.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import make_url, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from api.auth import TokenService, load_or_create_keys
from api.db import create_engine, session_factory
from api.migrate import upgrade
from api.settings import Settings
from care.enums import Role
from federation.addresses import parse_networks
from tests.conftest import TABLES

ROOT = Path(__file__).resolve().parents[2]
# Instances under test share this machine: their calls to each other go to loopback.
LOOPBACK = "127.0.0.0/8"
LOOPBACK_NETWORKS = parse_networks(LOOPBACK)

LAUNCH = """
import uvicorn
from api.app import create_app
from api.cli import server_options
from api.settings import Settings

settings = Settings()
uvicorn.run(
    create_app(settings, settings.database_url),
    host="127.0.0.1",
    port=settings.port,
    log_level="warning",
    **server_options(settings),
)
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def database_url_for(server_url: str, database: str) -> str:
    """The URL of another database on the same server as `server_url`."""
    return make_url(server_url).set(database=database).render_as_string(hide_password=False)


async def create_database(server_url: str, database: str) -> None:
    """(Re)create an empty database on the test server."""
    engine = create_engine(server_url, pool_size=1)
    try:
        async with engine.connect() as conn:
            conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
            await conn.execute(text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
            await conn.execute(text(f'CREATE DATABASE "{database}"'))
    finally:
        await engine.dispose()


@dataclass
class Instance:
    """One coopnet instance under uvicorn. `env` adds settings (e.g. sync intervals)."""

    name: str
    database_url: str
    data_dir: Path
    port: int = field(default_factory=free_port)
    env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None
    _engine: AsyncEngine | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def graphql_url(self) -> str:
        return f"{self.base_url}/graphql"

    @property
    def log(self) -> Path:
        return self.data_dir / "server.log"

    @property
    def settings(self) -> Settings:
        return Settings(
            database_url=self.database_url,
            data_dir=self.data_dir,
            port=self.port,
            public_base_url=self.base_url,
            federation_private_networks=LOOPBACK,
        )

    # --- process ------------------------------------------------------------------------

    def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        env = {
            **os.environ,
            "DATABASE_URL": self.database_url,
            "PORT": str(self.port),
            "DATA_DIR": str(self.data_dir),
            "PUBLIC_BASE_URL": self.base_url,
            "FEDERATION_SYNC_SECONDS": "0",  # tests sync when they mean to
            "FEDERATION_PRIVATE_NETWORKS": LOOPBACK,  # the instances share this machine
            **self.env,
        }
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-c", LAUNCH], cwd=ROOT, env=env, stdout=out, stderr=out
            )
        self.wait_healthy()

    def wait_healthy(self) -> None:
        with httpx.Client(base_url=self.base_url) as client:
            for _ in range(600):
                assert self.process is not None
                if self.process.poll() is not None:
                    raise RuntimeError(f"instance {self.name} exited:\n{self.log.read_text()}")
                try:
                    if client.get("/healthz").status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                time.sleep(0.05)
        raise RuntimeError(f"instance {self.name} did not start:\n{self.log.read_text()}")

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None

    def kill(self) -> None:
        """SIGKILL: no shutdown, whatever it was doing is cut off."""
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None

    # --- callers ------------------------------------------------------------------------

    def tokens(self) -> TokenService:
        settings = self.settings
        keys = load_or_create_keys(settings)  # the same files the process reads
        return TokenService(
            keys, settings.jwt_issuer, settings.jwt_audience, settings.jwt_ttl_seconds
        )

    def token(self, role: Role | str, member: int | None = None, la: str | None = None) -> str:
        return self.tokens().issue(Role(role), member_id=member, la_code=la)

    async def graphql(
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
        async with httpx.AsyncClient(timeout=30) as client:
            return await client.post(
                self.graphql_url, json={"query": query, "variables": variables or {}}, headers=h
            )

    async def data(
        self, query: str, variables: dict[str, Any] | None = None, *, token: str | None = None
    ) -> dict[str, Any]:
        response = await self.graphql(query, variables, token=token)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        assert not body.get("errors"), body["errors"]
        data: dict[str, Any] = body["data"]
        return data

    # --- its database -------------------------------------------------------------------

    @property
    def engine(self) -> AsyncEngine:
        if self._engine is None:
            self._engine = create_engine(self.database_url, pool_size=2)
        return self._engine

    def session(self) -> AsyncSession:
        """A session on the instance's database, for arranging and inspecting data."""
        return session_factory(self.engine)()

    async def reset(self) -> None:
        """Empty every table. The running server may be working at that moment (its
        outbox worker delivering, a sweep): TRUNCATE's exclusive locks can then deadlock
        with it, and PostgreSQL cancels one side; ours tries again."""
        for attempt in range(10):
            try:
                async with self.engine.begin() as conn:
                    await conn.execute(text(f"TRUNCATE {TABLES} RESTART IDENTITY CASCADE"))
                return
            except DBAPIError as exc:
                if getattr(exc.orig, "sqlstate", None) != "40P01" or attempt == 9:
                    raise
                await asyncio.sleep(0.2)

    async def dispose(self) -> None:
        if self._engine is not None:
            await self._engine.dispose()
            self._engine = None


def prepare(server_url: str, name: str, tmp: Path, env: dict[str, str] | None = None) -> Instance:
    """A migrated, empty database and a data directory for one instance (not started)."""
    database = f"{make_url(server_url).database}_peer_{name}"
    asyncio.run(create_database(server_url, database))
    url = database_url_for(server_url, database)
    upgrade(url)
    return Instance(name=name, database_url=url, data_dir=tmp / name, env=dict(env or {}))


async def eventually(check: Any, what: str, seconds: float = 15.0) -> Any:
    """The first truthy result of `await check()`, polled until `seconds` have passed:
    for what another instance does on its own time (a delivery from its outbox)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while True:
        value = await check()
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError(f"not within {seconds} s: {what}")
        await asyncio.sleep(0.1)
