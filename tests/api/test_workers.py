"""`coopnet serve --workers N`.

The instance is started as an operator starts it (`coopnet serve --workers 2`, a real
subprocess) on a database of its own: both workers answer, a change made through one
request reaches subscribers held by either worker, a revoked token is refused by both,
and the availability sync schedule runs in one worker only.

Which worker answered is read from the server's log, as an operator would: every JSON log
line carries its process id (`pid`), and uvicorn's access line names the client's address
and port, which the test knows for each of its own connections (each one fresh, so the
kernel hands it to whichever worker accepts first)."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from websockets.asyncio.client import connect
from websockets.typing import Subprotocol

from api.cli import available_cores, build_parser, connections_warning, serve_workers
from api.events import EventHub
from api.settings import MAX_WORKERS, Settings
from care.enums import Role
from care.events import CoverEvent
from care.models import CoverRequest
from federation.client import FederationClient
from federation.identity import load_or_create_identity
from federation.sync import SCHEDULE_LOCK_KEY, SYNC_LOCK_CLASS, start_sync_scheduler
from tests.api.test_subscriptions import REQUESTS, Live, emit
from tests.conftest import ROOT, _in_thread
from tests.factories import Build, at, gid
from tests.federation.instances import (
    LOOPBACK,
    LOOPBACK_NETWORKS,
    Instance,
    eventually,
    prepare,
)

WORKERS = 2
SYNC_SECONDS = 0.2  # the served instance's FEDERATION_SYNC_SECONDS
ATTEMPTS = 200  # fresh connections tried before concluding a worker never answers
WAIT = 5.0


@dataclass
class Served(Instance):
    """An instance run by `coopnet serve --workers 2` (not by uvicorn directly)."""

    workers: frozenset[int] = frozenset()

    def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        env = {
            key: value
            for key, value in os.environ.items()
            if key not in ("WORKERS", "LOG_FORMAT", "LOG_LEVEL")
        }
        env |= {
            "DATABASE_URL": self.database_url,
            "PORT": str(self.port),
            "DATA_DIR": str(self.data_dir),
            "PUBLIC_BASE_URL": self.base_url,
            "FEDERATION_PRIVATE_NETWORKS": LOOPBACK,
            "FEDERATION_SYNC_SECONDS": str(SYNC_SECONDS),
            "LOG_FORMAT": "json",
        }
        command = [sys.executable, "-m", "api.cli", "serve", "--workers", str(WORKERS)]
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=out)
        self.workers = self._wait_workers()
        self.wait_healthy()

    def _wait_workers(self) -> frozenset[int]:
        """The pids of the workers, once each has finished its startup (its lifespan).
        Bounded generously (two minutes): the tests share the machine's CPU."""
        for _ in range(1200):
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"coopnet serve exited:\n{self.log.read_text()}")
            started = {
                int(line["pid"])
                for line in log_lines(self)
                if line.get("event") == "Application startup complete."
            }
            if len(started) == WORKERS:
                return frozenset(started)
            time.sleep(0.1)
        raise RuntimeError(f"the workers did not all start:\n{self.log.read_text()}")

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/graphql"


def log_lines(served: Instance) -> list[dict[str, Any]]:
    """The server's complete JSON log lines so far."""
    lines = []
    for line in served.log.read_text().splitlines(keepends=True):
        if not line.endswith("\n"):
            break  # still being written
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            lines.append(record)
    return lines


async def answered_by(served: Served, port: int, what: str, after: int) -> int:
    """The pid of the worker whose log says `what` about our connection from `port`,
    among the lines after the first `after`."""
    prefix = f"127.0.0.1:{port} - "
    for _ in range(200):
        for line in log_lines(served)[after:]:
            event = str(line.get("event", ""))
            if event.startswith(prefix) and what in event:
                return int(line["pid"])
        await asyncio.sleep(0.05)
    raise AssertionError(f"no log line says {what!r} for port {port}")


async def post(
    served: Served, query: str, token: str, variables: dict[str, Any] | None = None
) -> tuple[httpx.Response, int]:
    """POST over a fresh connection: the response and the pid of the worker that sent it."""
    after = len(log_lines(served))
    async with httpx.AsyncClient(timeout=30) as client:
        response = await client.post(
            served.graphql_url,
            json={"query": query, "variables": variables or {}},
            headers={"Authorization": f"Bearer {token}"},
        )
        _, port = response.extensions["network_stream"].get_extra_info("client_addr")
    line = f'"POST /graphql HTTP/1.1" {response.status_code}'
    return response, await answered_by(served, port, line, after)


async def every_worker(served: Served, query: str, token: str, status: int) -> set[int]:
    """Requests over fresh connections until every worker has answered one; each
    answer must have `status`. The pids that answered."""
    pids: set[int] = set()
    for _ in range(ATTEMPTS):
        response, pid = await post(served, query, token)
        assert response.status_code == status, response.text
        pids.add(pid)
        if pids == served.workers:
            break
    return pids


@pytest.fixture(scope="module")
def served(migrated_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    prepared: list[Instance] = []
    tmp = tmp_path_factory.mktemp("served")
    _in_thread(lambda: prepared.append(prepare(migrated_url, "workers", tmp)))
    (instance,) = prepared
    server = Served(
        name=instance.name, database_url=instance.database_url, data_dir=instance.data_dir
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def instance(served: Served) -> AsyncIterator[Served]:
    yield served
    await served.reset()
    await served.dispose()  # its engine belongs to this test's event loop


CLUSTERS = "{ clusters(first: 1) { totalCount } }"


async def test_every_worker_answers_and_listens(instance: Served) -> None:
    admin = instance.token(Role.ADMIN)
    assert len(instance.workers) == WORKERS
    assert await every_worker(instance, CLUSTERS, admin, 200) == instance.workers
    # Each worker holds its own LISTEN connection for live updates; the serving process
    # (which only supervises) holds none.
    async with instance.engine.connect() as conn:
        listeners = await conn.scalar(
            text(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE datname = current_database() AND application_name = :name"
            ),
            {"name": EventHub.APPLICATION_NAME},
        )
    assert listeners == WORKERS


async def test_a_change_through_one_worker_reaches_subscribers_of_every_worker(
    instance: Served,
) -> None:
    async with instance.session() as db:
        b = Build(db)
        await b.las()
        await b.coop()
        coordinator = await b.worker("Cora Ordinator")
        cluster = await b.cluster("Finchley", support_worker=coordinator)
        su = await b.service_user("Ada User", cluster=cluster)
        warm_visit = await b.visit(su, None, at(days=2), status="NEEDS_COVER")
        visit = await b.visit(su, None, at(days=4))
        warm = CoverRequest(visit_id=warm_visit.id, reason="MANUAL", opened_by_id=coordinator.id)
        db.add(warm)
        await db.commit()
    warm_event = CoverEvent(
        kind="REQUEST_OPENED",
        cover_request_id=warm.id,
        visit_id=warm_visit.id,
        cluster_ids=[cluster.id],
    )
    token = instance.token(Role.COORDINATOR, coordinator.id)
    variables = {"cluster": gid("Cluster", cluster.id)}

    async def warm_up() -> None:
        async with instance.session() as db:
            await emit(db, warm_event)

    async with AsyncExitStack() as stack:
        # Websockets over fresh connections until each worker holds one.
        on: dict[int, Live] = {}
        for _ in range(ATTEMPTS):
            after = len(log_lines(instance))
            ws = await stack.enter_async_context(
                connect(
                    instance.ws_url,
                    subprotocols=[Subprotocol("graphql-transport-ws")],
                    open_timeout=WAIT,
                )
            )
            port = ws.local_address[1]
            pid = await answered_by(instance, port, '"WebSocket /graphql" [accepted]', after)
            if pid in on:
                await ws.close()
                continue
            client = Live(ws)
            await ws.send(
                json.dumps(
                    {"type": "connection_init", "payload": {"Authorization": f"Bearer {token}"}}
                )
            )
            assert (await client.recv())["type"] == "connection_ack"
            await client.subscribe("1", REQUESTS, variables)
            await client.until_live("1", warm_up)
            on[pid] = client
            if len(on) == WORKERS:
                break
        assert set(on) == instance.workers

        response, by = await post(
            instance,
            "mutation($id: ID!) { openCoverRequest(visitId: $id) { coverRequest { id } "
            "errors { code message } } }",
            token,
            {"id": gid("Visit", visit.id)},
        )
        assert response.status_code == 200, response.text
        opened = response.json()["data"]["openCoverRequest"]
        assert opened["errors"] == [], opened
        assert by in instance.workers
        # Heard by the subscriber on the worker that made the change and by the one on
        # the other worker (through PostgreSQL NOTIFY, not in-process).
        for client in on.values():
            item = await client.next_item("1", "coverRequests", skip={gid("CoverRequest", warm.id)})
            assert item["id"] == opened["coverRequest"]["id"]
            assert item["status"] == "OPEN"


async def test_a_revoked_token_is_refused_by_every_worker(instance: Served) -> None:
    tokens = instance.tokens()
    admin = tokens.issue(Role.ADMIN)
    doomed = tokens.mint(Role.ADMIN)
    # In force on every worker first: nothing any worker kept about it may outlive this.
    assert await every_worker(instance, CLUSTERS, doomed.token, 200) == instance.workers
    response, _ = await post(
        instance,
        "mutation($jti: String!) { revokeToken(jti: $jti) { revoked } }",
        admin,
        {"jti": str(doomed.ref.jti)},
    )
    assert response.json()["data"]["revokeToken"] == {"revoked": True}, response.text
    assert await every_worker(instance, CLUSTERS, doomed.token, 401) == instance.workers
    # The admin's own token still works everywhere.
    assert await every_worker(instance, CLUSTERS, admin, 200) == instance.workers


async def test_the_sync_schedule_runs_in_one_worker(instance: Served) -> None:
    """Partners are pulled once per period, not once per worker: the one worker that
    leads the schedule makes every round (here each fails: nobody listens on port 9)."""
    async with instance.engine.begin() as conn:
        partnership = await conn.scalar(
            text(
                "INSERT INTO partnership (base_url, graphql_endpoint, proposal_ref, direction,"
                " status, requested_scopes, granted_scopes, protocol_version, pseudonym_key)"
                " VALUES ('http://127.0.0.1:9', 'http://127.0.0.1:9/graphql',"
                " gen_random_uuid(), 'OUTGOING', 'ACTIVE', '{AVAILABILITY}', '{AVAILABILITY}',"
                " 'coopnet-federation/1', '\\x01') RETURNING id"
            )
        )
    failed = f"availability sync of partnership {partnership} failed"

    async def rounds() -> list[dict[str, Any]] | None:
        lines = [line for line in log_lines(instance) if failed in str(line.get("event"))]
        return lines if len(lines) >= 5 else None

    lines = await eventually(rounds, "five sync rounds", seconds=30)
    assert len({line["pid"] for line in lines}) == 1, lines
    assert lines[0]["pid"] in instance.workers
    leads = [
        line["pid"]
        for line in log_lines(instance)
        if line.get("event") == "this process runs the availability sync schedule"
    ]
    assert leads == [lines[0]["pid"]]
    async with instance.engine.connect() as conn:
        holders = await conn.scalar(
            text(
                "SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database "
                "WHERE d.datname = current_database() AND l.locktype = 'advisory' "
                "AND l.classid = :c AND l.objid = :k AND l.objsubid = 2 AND l.granted"
            ),
            {"c": SYNC_LOCK_CLASS, "k": SCHEDULE_LOCK_KEY},
        )
    assert holders == 1


# --- the schedule's lead, in this process --------------------------------------------------


async def test_one_scheduler_leads_and_another_takes_over_when_it_stops(
    migrated_url: str, tmp_path: Path
) -> None:
    from api.db import create_engine

    engines = [create_engine(migrated_url, pool_size=2) for _ in range(2)]
    client = FederationClient(
        load_or_create_identity(tmp_path / "keys"),
        "http://127.0.0.1:1",
        private_networks=LOOPBACK_NETWORKS,
    )
    schedulers = [start_sync_scheduler(engine, client, 0.05) for engine in engines]
    try:

        async def some_rounds() -> bool:
            return sum(s.rounds for s in schedulers) >= 5

        await eventually(some_rounds, "five rounds")
        leaders = [s for s in schedulers if s.rounds]
        assert len(leaders) == 1, [s.rounds for s in schedulers]
        (leader,) = leaders
        (other,) = [s for s in schedulers if s is not leader]
        assert other.rounds == 0 and not other.lead.leading
        await leader.stop()  # its connection closes: the lock is free

        async def taken_over() -> bool:
            return other.rounds >= 2

        await eventually(taken_over, "the other scheduler's rounds")
        assert other.lead.leading
    finally:
        for scheduler in schedulers:
            await scheduler.stop()
        await client.aclose()
        for engine in engines:
            await engine.dispose()


# --- choosing N ---------------------------------------------------------------------------


def serve_args(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["serve", *argv])


def test_workers_default_to_the_cores_and_to_one_with_dev() -> None:
    settings = Settings(database_url="postgresql://nowhere/none")
    cores = available_cores()
    assert 1 <= cores <= (os.cpu_count() or 1)
    assert serve_workers(serve_args(), settings) == min(cores, MAX_WORKERS)
    assert serve_workers(serve_args("--dev"), settings) == 1
    assert serve_workers(serve_args("--workers", "3"), settings) == 3
    assert serve_workers(serve_args("--dev", "--workers", "3"), settings) == 3
    configured = Settings(database_url="postgresql://nowhere/none", workers=5)
    assert serve_workers(serve_args(), configured) == 5
    assert serve_workers(serve_args("--workers", "2"), configured) == 2


@pytest.mark.parametrize(
    "value,message",
    [
        ("0", f"must be from 1 to {MAX_WORKERS}, not 0"),
        ("-2", f"must be from 1 to {MAX_WORKERS}, not -2"),
        (str(MAX_WORKERS + 1), f"must be from 1 to {MAX_WORKERS}, not {MAX_WORKERS + 1}"),
        ("two", "'two' is not a whole number"),
    ],
)
def test_a_bad_worker_count_is_refused_before_anything_starts(
    value: str, message: str, tmp_path: Path
) -> None:
    env = {**os.environ, "DATA_DIR": str(tmp_path / "data")}
    env.pop("DATABASE_URL", None)
    out = subprocess.run(
        [sys.executable, "-m", "api.cli", "serve", "--workers", value],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2
    assert f"argument --workers: {message}" in out.stderr
    assert not (tmp_path / "data").exists()  # no embedded database was created


def test_serve_warns_when_the_workers_could_exhaust_the_database_connections() -> None:
    assert connections_warning(2, 10, 100) is None
    assert connections_warning(4, 10, 88) is None  # 4 x (2 x 10 + 2): exactly enough
    warning = connections_warning(8, 10, 100)
    assert warning is not None
    assert "8 workers may open up to 176 database connections" in warning
    assert "PostgreSQL allows 100 (max_connections)" in warning
