"""Cross-boundary cover between two local instances: 1,000 exchanges, the partner down
for part of the run.

Method. Two coopnet instances run as uvicorn processes, each with its own database on
the given PostgreSQL server and its own federation key; they call each other over real
signed HTTP, through each one's outbox (in-process worker). REQUESTER (A) holds 1,000
visits that need cover (an OPEN cover request each); PROVIDER (B) holds 50 PAs in a pool
shared with partners, free for the visits (20 each, 2 hours apart). An ACTIVE
partnership granting COVER is written on both sides, with each other's published keys.

1. requests: A's admin asks `requestPartnerCover` for every visit (8 at a time by default); each
   is a synchronous signed call A -> B (`peerRequestCover`), which holds the PA on B.
2. acceptances: each PA accepts on B (`acceptPartnerCover`, as many at a time). Each queues
   `peerCoverUpdate` ACCEPTED to A; A confirms on it and queues CONFIRMED (with the
   person's details) to B; B stores them and queues CONFIRMED (the PA's first name) back
   to A: three outbox messages per exchange, 3,000 in all.
3. the partner down: as soon as the last acceptance is committed, B is stopped (SIGTERM)
   for DOWN_SECONDS while A's confirmations queue and are retried, then started again.
4. the end: the bench waits until neither outbox has a message left to deliver (or 5
   minutes) and counts.

A call that fails (its payload's error, e.g. PARTNER_UNREACHABLE) is counted by error
and asked once more at the end of its phase, as a coordinator or a PA would. A hold B
made for a request whose answer A never got (A wrote nothing) is reported as "held on B
only" and not accepted. Messages that die in an outbox (status `failed`) are printed
with the error that killed them: they count as lost (an admin would have to retry them).

Figures. A message's *enqueue* time is the `created` time of its PgQueuer job on the
sender, kept with its idempotency key by a trigger this bench adds to each database
(table `bench_sent`: the job rows themselves are deleted once delivered); it is *applied*
at the receiver's `peer_delivery.received_at` for that key (written in the transaction
that applies it; federation/idempotency.py). Both are `now()` of the same PostgreSQL
server, so one clock. Latency = applied - enqueued, p50 and p99 over all messages (the
down period included: that is what the retries cost). Messages per second = messages
applied / (last applied - first enqueued). Lost = messages enqueued whose key the peer
never applied. Applied twice = status changes the receiver recorded more than once for
the same exchange from its partner (`cover_exchange_event` by PARTNER), plus keys
applied that no sender queued. Both must be 0. No assertion on time: figures only.

Outbox settings (env of both instances): OUTBOX_FIRST_DELAY_SECONDS=0.2,
OUTBOX_MAX_DELAY_SECONDS=1, OUTBOX_POLL_SECONDS=0.5 (as tests/federation/conftest.py's
INSTANCE_ENV), OUTBOX_MAX_ATTEMPTS=100 (no message dies during the down period),
OUTBOX_HEARTBEAT_SECONDS=5.

    .venv/bin/python bench/cover_exchange.py [--server postgresql://postgres@127.0.0.1:5432/postgres]
        [--exchanges 1000] [--down 5] [--concurrency 8]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import datetime as dt
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
from sqlalchemy import make_url, text
from sqlalchemy.ext.asyncio import AsyncEngine

from api.auth import TokenService, load_or_create_keys
from api.db import create_engine
from api.migrate import upgrade
from api.settings import Settings
from care.enums import Role
from federation.identity import load_or_create_identity

ROOT = Path(__file__).resolve().parents[1]
LAUNCH = """
import uvicorn
from api.app import create_app
from api.settings import Settings
settings = Settings()
uvicorn.run(create_app(settings, settings.database_url), host="127.0.0.1",
            port=settings.port, log_level="warning")
"""
PAS = 50
concurrency = 8  # calls at a time from the bench's client (--concurrency)
OUTBOX_ENV = {
    "OUTBOX_FIRST_DELAY_SECONDS": "0.2",
    "OUTBOX_MAX_DELAY_SECONDS": "1",
    "OUTBOX_POLL_SECONDS": "0.5",
    "OUTBOX_MAX_ATTEMPTS": "100",
    "OUTBOX_HEARTBEAT_SECONDS": "5",
}
REQUEST = """mutation($input: RequestPartnerCoverInput!) { requestPartnerCover(input: $input) {
  exchange { id status } errors { code message } } }"""
ACCEPT = """mutation($id: ID!) { acceptPartnerCover(id: $id) {
  exchange { id status } errors { code message } } }"""
# Every message queued: its job's created time and idempotency key (the job row goes
# once delivered). Bench only: added after the migrations.
CAPTURE = [
    """CREATE TABLE bench_sent (job_id bigint PRIMARY KEY, created timestamptz NOT NULL,
         key uuid NOT NULL, operation text NOT NULL)""",
    """CREATE FUNCTION bench_capture() RETURNS trigger LANGUAGE plpgsql AS $$
       BEGIN
         INSERT INTO bench_sent VALUES (NEW.id, NEW.created,
           (convert_from(NEW.payload, 'UTF8')::jsonb ->> 'idempotencyKey')::uuid,
           convert_from(NEW.payload, 'UTF8')::jsonb ->> 'operation')
         ON CONFLICT DO NOTHING;
         RETURN NEW;
       END $$""",
    """CREATE TRIGGER bench_capture AFTER INSERT ON pgqueuer
       FOR EACH ROW EXECUTE FUNCTION bench_capture()""",
]


def gid(type_name: str, pk: int) -> str:
    return base64.b64encode(f"{type_name}:{pk}".encode()).decode()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    name: str
    url: str  # its database
    data_dir: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        env = {
            **os.environ,
            "DATABASE_URL": self.url,
            "PORT": str(self.port),
            "DATA_DIR": str(self.data_dir),
            "PUBLIC_BASE_URL": self.base_url,
            "FEDERATION_SYNC_SECONDS": "0",
            "FEDERATION_PRIVATE_NETWORKS": "127.0.0.0/8",  # the instances share this machine
            "LOG_LEVEL": "WARNING",
            **OUTBOX_ENV,
        }
        with (self.data_dir / "server.log").open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-c", LAUNCH], cwd=ROOT, env=env, stdout=out, stderr=out
            )
        with httpx.Client() as client:
            for _ in range(600):
                if self.process.poll() is not None:
                    raise RuntimeError(f"{self.name} exited: see {self.data_dir}/server.log")
                try:
                    if client.get(f"{self.base_url}/healthz").status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                time.sleep(0.05)
        raise RuntimeError(f"{self.name} did not start")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(20)
            self.process = None

    def settings(self) -> Settings:
        return Settings(database_url=self.url, data_dir=self.data_dir, port=self.port)

    def tokens(self) -> TokenService:
        s = self.settings()
        return TokenService(load_or_create_keys(s), s.jwt_issuer, s.jwt_audience, s.jwt_ttl_seconds)

    def jwks(self) -> list[dict[str, str]]:
        return load_or_create_identity(self.settings().federation_key_dir, None, []).jwks()


async def recreate(server: str, database: str) -> str:
    engine = create_engine(server, pool_size=1)
    async with engine.connect() as conn:
        conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
        await conn.execute(text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
        await conn.execute(text(f'CREATE DATABASE "{database}"'))
    await engine.dispose()
    return make_url(server).set(database=database).render_as_string(hide_password=False)


COMMON = [
    "INSERT INTO local_authority VALUES ('E09000003', 'Barnet'), ('E09000014', 'Haringey')",
]


def requester_seed(exchanges: int, first: dt.datetime) -> list[str]:
    """1,000 visits needing cover: visit i on person i // 20, 2 hours after visit i - 1
    of the same person, so that each partner PA (i // 20) is asked for distinct times."""
    per = exchanges // PAS
    return [
        *COMMON,
        "INSERT INTO coop (id, name, kind, cqc_status, home_la_code) VALUES (1, "
        "'Requesting Co-op', 'WORKER', 'NOT_REGISTERED', 'E09000003')",
        f"""INSERT INTO member (name, membership_class, postcode, latitude, longitude)
            SELECT 'Person ' || g, 'SERVICE_USER', 'N12 ' || (g % 9) || 'AB', 51.615, -0.176
            FROM generate_series(1, {PAS}) g""",
        """INSERT INTO service_user_profile (member_id, funding, needs)
           SELECT id, 'DIRECT_PAYMENT', '{personal-care}' FROM member""",
        f"""INSERT INTO visit (service_user_id, pa_id, during, status, tasks)
            SELECT m.id, NULL, tstzrange(t, t + interval '1 hour'), 'NEEDS_COVER',
                   '{{personal care}}'
            FROM member m, generate_series(1, {per}) k,
                 LATERAL (SELECT CAST(:first AS timestamptz)
                                 + make_interval(hours => (k - 1) * 2) AS t) s
            ORDER BY m.id, k""",
        "INSERT INTO cover_request (visit_id, reason) SELECT id, 'ABSENCE' FROM visit",
    ]


def provider_seed(exchanges: int, first: dt.datetime) -> list[str]:
    per = exchanges // PAS
    return [
        *COMMON,
        "INSERT INTO coop (id, name, kind, cqc_status, home_la_code) VALUES (1, "
        "'Providing Co-op', 'WORKER', 'NOT_REGISTERED', 'E09000014')",
        "INSERT INTO pool (name, shared_with_partners) VALUES ('Shared', true)",
        f"""INSERT INTO member (name, membership_class, postcode, latitude, longitude)
            SELECT 'PA' || g || ' Surname', 'WORKER', 'N22 ' || (g % 9) || 'AB', 51.6, -0.112
            FROM generate_series(1, {PAS}) g""",
        "INSERT INTO pa_profile (member_id, hourly_pay_pence, max_travel_km) "
        "SELECT id, 1300, 15 FROM member",
        "INSERT INTO pa_skill (pa_id, skill) SELECT id, 'personal-care' FROM member",
        "INSERT INTO pool_pa (pool_id, pa_id) SELECT 1, id FROM member",
        f"""INSERT INTO availability_window (pa_id, during)
            SELECT id, tstzrange(t - interval '1 hour', t + interval '{per * 2 + 1} hours')
            FROM member, LATERAL (SELECT CAST(:first AS timestamptz) AS t) s""",
    ]


PARTNERSHIP = """
INSERT INTO partnership (base_url, graphql_endpoint, proposal_ref, direction, status,
    requested_scopes, granted_scopes, protocol_version, coop_name, keys, pseudonym_key)
VALUES (:base, :endpoint, :ref, 'OUTGOING', 'ACTIVE', '{COVER}', '{COVER}',
    'coopnet-federation/1', 'Partner', CAST(:keys AS jsonb), :key) RETURNING id"""


async def partner(engine: AsyncEngine, peer: Server) -> int:
    async with engine.begin() as conn:
        pid: int = (
            await conn.execute(
                text(PARTNERSHIP),
                {
                    "base": peer.base_url,
                    "endpoint": f"{peer.base_url}/graphql",
                    "ref": uuid.uuid4(),
                    "keys": orjson.dumps(peer.jwks()).decode(),
                    "key": os.urandom(32),
                },
            )
        ).scalar_one()
    return pid


async def pa_refs(provider: AsyncEngine) -> dict[int, str]:
    """B's pseudonym for each PA (what A would have from B's availability feed)."""
    from federation.feed import pseudonym

    async with provider.connect() as conn:
        key = await conn.scalar(text("SELECT pseudonym_key FROM partnership"))
        ids = (await conn.scalars(text("SELECT id FROM member ORDER BY id"))).all()
    return {i: pseudonym(key, "pa", i) for i in ids}


async def post(
    client: httpx.AsyncClient, server: Server, query: str, variables: dict[str, Any], token: str
) -> str | None:
    """Make one call; None when it worked, else the error (code: message)."""
    response = await client.post(
        f"{server.base_url}/graphql",
        json={"query": query, "variables": variables},
        headers={"Authorization": f"Bearer {token}"},
    )
    body = response.json()
    if body.get("errors"):
        return str(body["errors"])[:300]
    [payload] = body["data"].values()
    if payload["errors"]:
        first = payload["errors"][0]
        return f"{first['code']}: {first['message']}"[:300]
    return None


async def phase(name: str, calls: list[Any]) -> None:
    """Run the calls (`concurrency` at a time); those that failed are asked once more,
    one at a time, as a coordinator or PA would. Prints the rate and the failures."""
    gate = asyncio.Semaphore(concurrency)

    async def one(call: Any) -> str | None:
        async with gate:
            result: str | None = await call()
            return result

    t0 = time.perf_counter()
    errors = await asyncio.gather(*(one(c) for c in calls))
    took = time.perf_counter() - t0
    failed = [(c, e) for c, e in zip(calls, errors, strict=True) if e is not None]
    print(
        f"{name}: {len(calls):,} in {took:.1f} s ({len(calls) / took:,.0f}/s, "
        f"{concurrency} at a time); {len(failed)} failed"
    )
    kinds: dict[str, int] = {}
    for _, error in failed:
        kinds[error] = kinds.get(error, 0) + 1
    for error, n in sorted(kinds.items(), key=lambda k: -k[1]):
        print(f"    {n} x {error}")
    still = [e for c, _ in failed if (e := await c()) is not None]
    if failed:
        print(f"    asked again: {len(failed) - len(still)} worked, {len(still)} failed again")


async def outbox_size(engine: AsyncEngine) -> int:
    """Messages still to be delivered (dead ones, status `failed`, are not retried)."""
    async with engine.connect() as conn:
        return int(
            await conn.scalar(
                text("SELECT count(*) FROM pgqueuer WHERE status IN ('queued', 'picked')")
            )
            or 0
        )


async def dead(engine: AsyncEngine) -> list[str]:
    """Dead messages, each with the last line of the error that killed it."""
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                text(
                    "SELECT q.id, (SELECT l.traceback ->> 'traceback' FROM pgqueuer_log l "
                    "WHERE l.job_id = q.id AND l.status = 'failed' ORDER BY l.id DESC LIMIT 1) "
                    "AS tb FROM pgqueuer q WHERE q.status = 'failed' ORDER BY q.id"
                )
            )
        ).all()
    return [f"job {r.id}: {(r.tb or '').strip().splitlines()[-1:]}" for r in rows]


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


async def main(server_url: str, exchanges: int, down: float) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="coopnet-bench-exchange-"))
    urls = {
        name: await recreate(server_url, f"coopnet_bench_exchange_{name}")
        for name in ("requester", "provider")
    }
    for url in urls.values():
        await asyncio.to_thread(upgrade, url)
    a = Server("requester", urls["requester"], tmp / "requester")
    b = Server("provider", urls["provider"], tmp / "provider")
    engines = {"A": create_engine(a.url), "B": create_engine(b.url)}
    first = (dt.datetime.now(dt.UTC) + dt.timedelta(days=3)).replace(
        hour=6, minute=0, second=0, microsecond=0
    )
    for engine, seed in ((engines["A"], requester_seed), (engines["B"], provider_seed)):
        async with engine.begin() as conn:
            for sql in seed(exchanges, first):
                await conn.execute(text(sql), {"first": first} if ":first" in sql else {})
            for sql in CAPTURE:
                await conn.execute(text(sql))
    a_pid = await partner(engines["A"], b)
    await partner(engines["B"], a)
    refs = await pa_refs(engines["B"])
    pa_ids = sorted(refs)
    per = exchanges // PAS
    admin = a.tokens().issue(Role.ADMIN)
    b_tokens = b.tokens()
    await asyncio.to_thread(a.start)
    await asyncio.to_thread(b.start)
    try:
        async with engines["A"].connect() as conn:
            requests = (
                await conn.execute(text("SELECT id, visit_id FROM cover_request ORDER BY visit_id"))
            ).all()
        async with httpx.AsyncClient(timeout=60) as client:

            def ask(i: int, request_id: int, visit_id: int) -> Any:
                variables = {
                    "input": {
                        "coverRequestId": gid("CoverRequest", request_id),
                        "partnershipId": gid("Partnership", a_pid),
                        "paRef": refs[pa_ids[i // per]],
                        "careSummary": f"Summary for visit {visit_id}.",
                    }
                }
                return lambda: post(client, a, REQUEST, variables, admin)

            await phase(
                "requests (requestPartnerCover, each a signed call A -> B)",
                [ask(i, r.id, r.visit_id) for i, r in enumerate(requests)],
            )
            async with engines["A"].connect() as conn:
                asked = set((await conn.scalars(text("SELECT ref FROM cover_exchange"))).all())
            async with engines["B"].connect() as conn:
                held = (
                    await conn.execute(
                        text(
                            "SELECT id, pa_id, ref FROM cover_exchange "
                            "WHERE side = 'PROVIDING' AND status = 'HELD'"
                        )
                    )
                ).all()
            # A hold on B that A never recorded (A's call failed after B had committed):
            # it holds the PA's time until it expires. Not accepted here.
            providing = [x for x in held if x.ref in asked]
            print(
                f"    exchanges: {len(asked):,} on A; {len(held) - len(providing)} held on B only"
            )

            def accept(exchange_id: int, pa_id: int) -> Any:
                token = b_tokens.issue(Role.PA, member_id=pa_id)
                variables = {"id": gid("CoverExchange", exchange_id)}
                return lambda: post(client, b, ACCEPT, variables, token)

            await phase(
                "acceptances (acceptPartnerCover on B)",
                [accept(x.id, x.pa_id) for x in providing],
            )
        # The partner down while confirmations queue.
        await asyncio.to_thread(b.stop)
        stopped = time.perf_counter()
        await asyncio.sleep(down)
        queued_on_a = await outbox_size(engines["A"])
        queued_on_b = await outbox_size(engines["B"])
        await asyncio.to_thread(b.start)
        print(
            f"provider down {time.perf_counter() - stopped:.1f} s; when it came back "
            f"{queued_on_a:,} messages waited on A, {queued_on_b:,} on B"
        )
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if await outbox_size(engines["A"]) == 0 and await outbox_size(engines["B"]) == 0:
                break
            await asyncio.sleep(0.2)
        await report(engines, a, b, exchanges)
    finally:
        a.stop()
        b.stop()
        for engine in engines.values():
            await engine.dispose()


async def report(engines: dict[str, AsyncEngine], a: Server, b: Server, exchanges: int) -> None:
    sent: dict[str, dict[uuid.UUID, tuple[dt.datetime, str]]] = {}
    applied: dict[str, dict[uuid.UUID, dt.datetime]] = {}
    for side, engine in engines.items():
        async with engine.connect() as conn:
            sent[side] = {
                r.key: (r.created, r.operation)
                for r in await conn.execute(text("SELECT key, created, operation FROM bench_sent"))
            }
            # Outbox messages only: peerRequestCover is a synchronous call, not queued.
            applied[side] = {
                r.idempotency_key: r.received_at
                for r in await conn.execute(
                    text(
                        "SELECT idempotency_key, received_at FROM peer_delivery "
                        "WHERE operation <> 'peerRequestCover'"
                    )
                )
            }
    latencies: list[float] = []
    by_direction: dict[str, list[float]] = {"A -> B": [], "B -> A": []}
    lost = 0
    for sender, receiver in (("A", "B"), ("B", "A")):
        for key, (created, _) in sent[sender].items():
            at = applied[receiver].get(key)
            if at is None:
                lost += 1
            else:
                latencies.append((at - created).total_seconds())
                by_direction[f"{sender} -> {receiver}"].append(latencies[-1])
    unknown = sum(
        1
        for receiver, sender in (("A", "B"), ("B", "A"))
        for k in applied[receiver]
        if k not in sent[sender]
    )
    twice = 0
    statuses: dict[str, dict[str, int]] = {}
    for side, engine in engines.items():
        async with engine.connect() as conn:
            twice += int(
                await conn.scalar(
                    text(
                        "SELECT count(*) FROM (SELECT exchange_id, status FROM "
                        "cover_exchange_event WHERE by_side = 'PARTNER' "
                        "GROUP BY exchange_id, status HAVING count(*) > 1) d"
                    )
                )
                or 0
            )
            statuses[side] = {
                r.status: r.n
                for r in await conn.execute(
                    text("SELECT status, count(*) AS n FROM cover_exchange GROUP BY status")
                )
            }
            print(f"{side}: exchanges by status {statuses[side]}")
        for line in await dead(engine):
            print(f"{side}: dead message {line}")
    everything = [c for s in sent.values() for c, _ in s.values()] + [
        t for s in applied.values() for t in s.values()
    ]
    span = (max(everything) - min(everything)).total_seconds() if everything else 0.0
    total = len(latencies)
    print(
        f"messages:    {sum(len(s) for s in sent.values()):,} queued, {total:,} applied in "
        f"{span:.1f} s from the first queued to the last applied ({total / span:,.0f}/s)"
        if span
        else "messages: none"
    )
    if latencies:
        print(
            f"latency (queued -> applied at the receiver): p50 {percentile(latencies, 50):.3f} s"
            f", p99 {percentile(latencies, 99):.3f} s, max {max(latencies):.3f} s"
        )
        for direction, values in by_direction.items():
            if values:
                print(
                    f"    {direction}: {len(values):,} messages, p50 "
                    f"{percentile(values, 50):.3f} s, p99 {percentile(values, 99):.3f} s"
                )
    print(f"lost (queued, never applied): {lost}")
    print(f"applied twice: {twice} (plus {unknown} applied keys nobody queued)")
    confirmed = statuses["A"].get("CONFIRMED", 0), statuses["B"].get("CONFIRMED", 0)
    print(f"confirmed on both sides: {confirmed[0]:,} / {confirmed[1]:,} of {exchanges:,}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--server",
        default=os.environ.get(
            "BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
        ),
    )
    parser.add_argument("--exchanges", type=int, default=1000)
    parser.add_argument("--down", type=float, default=5.0, help="seconds the provider is down")
    parser.add_argument("--concurrency", type=int, default=concurrency)
    args = parser.parse_args()
    concurrency = args.concurrency
    asyncio.run(main(args.server, args.exchanges, args.down))
