"""Availability sync between two local instances: 100,000 windows, then 1,000 changes.

Starts the SENDER as a real uvicorn process (its own database on the local PostgreSQL),
fills it with 100,000 windows of PAs in a shared pool, sets up an ACTIVE partnership
granting AVAILABILITY on both sides (with each other's keys from their manifests), then
runs the RECEIVER's sync (`federation.sync.sync_partner`, what `syncPartner` and the
schedule run) against it over HTTP, signed and verified: an initial sync, then one after
1,000 windows changed. Prints windows per second and the time of each.

    .venv/bin/python bench/federation_sync.py [--server postgresql://postgres@127.0.0.1:5432/postgres]

Targets (issue 7): the initial sync under 10 s; the 1,000 changes under 1 s.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import orjson
from sqlalchemy import make_url, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from api.db import create_engine
from api.migrate import upgrade
from api.settings import Settings
from federation.addresses import parse_networks
from federation.client import FederationClient
from federation.feed import FEED_MAX_PAGE, read_feed
from federation.identity import load_or_create_identity
from federation.sync import sync_partner

ROOT = Path(__file__).resolve().parents[1]
LAUNCH = """
import uvicorn
from api.app import create_app
from api.settings import Settings
settings = Settings()
uvicorn.run(create_app(settings, settings.database_url), host="127.0.0.1",
            port=settings.port, log_level="warning")
"""
LOOPBACK = "127.0.0.0/8"  # both instances run on this machine
LOOPBACK_NETWORKS = parse_networks(LOOPBACK)
PAS = 1000
WINDOWS_PER_PA = 100
CHANGES = 1000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_sender(env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", LAUNCH], cwd=ROOT, env=env)


async def recreate(server: str, database: str) -> str:
    engine = create_engine(server, pool_size=1)
    async with engine.connect() as conn:
        conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
        await conn.execute(text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
        await conn.execute(text(f'CREATE DATABASE "{database}"'))
    await engine.dispose()
    return make_url(server).set(database=database).render_as_string(hide_password=False)


SEED = [
    "INSERT INTO local_authority VALUES ('E09000003', 'Barnet')",
    "INSERT INTO coop (id, name, kind, cqc_status, home_la_code) VALUES (1, 'Bench Co-op', "
    "'WORKER', 'NOT_REGISTERED', 'E09000003')",
    "INSERT INTO pool (name, shared_with_partners) VALUES ('Shared', true)",
    f"""INSERT INTO member (name, membership_class, postcode)
        SELECT 'PA ' || g, 'WORKER', 'N12 ' || (g % 9) || 'AB'
        FROM generate_series(1, {PAS}) g""",
    "INSERT INTO pa_profile (member_id, hourly_pay_pence) SELECT id, 1300 FROM member",
    "INSERT INTO pa_skill (pa_id, skill) SELECT id, 'personal-care' FROM member",
    "INSERT INTO pa_skill (pa_id, skill, expires_on) SELECT id, 'hoist', "
    "current_date + 300 FROM member",
    "INSERT INTO pool_pa (pool_id, pa_id) SELECT 1, id FROM member",
    f"""INSERT INTO availability_window (pa_id, during)
        SELECT m.id, tstzrange(date_trunc('hour', now()) + (d || ' hours')::interval * 7,
                               date_trunc('hour', now()) + (d || ' hours')::interval * 7
                               + interval '4 hours')
        FROM member m, generate_series(1, {WINDOWS_PER_PA}) d""",
]


def partnership_sql(peer: str, manifest: dict[str, object], direction: str) -> tuple[str, dict]:
    return (
        """INSERT INTO partnership (base_url, graphql_endpoint, proposal_ref, direction, status,
               requested_scopes, granted_scopes, protocol_version, coop_name, keys,
               pseudonym_key)
           VALUES (:base, :endpoint, :ref, :direction, 'ACTIVE', '{AVAILABILITY}',
               '{AVAILABILITY}', '1', 'Peer', CAST(:keys AS jsonb), :key) RETURNING id""",
        {
            "base": peer,
            "endpoint": manifest["graphqlEndpoint"],
            "ref": uuid.uuid4(),
            "direction": direction,
            "keys": orjson.dumps(manifest["keys"]).decode(),
            "key": os.urandom(32),
        },
    )


async def settled(engine: AsyncEngine) -> None:
    """Until the sender's feed horizon has passed every change (the horizon spans the
    PostgreSQL server: other databases' open transactions hold it back too)."""
    for _ in range(600):
        async with engine.connect() as conn:
            if await conn.scalar(
                text(
                    "SELECT coalesce(max(xid) < pg_snapshot_xmin(pg_current_snapshot()), true)"
                    " FROM availability_feed"
                )
            ):
                return
        await asyncio.sleep(0.05)
    raise RuntimeError("an open transaction held the sender's feed back for 30 s")


async def main(server: str) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="coopnet-bench-"))
    sender_url = await recreate(server, "coopnet_bench_sender")
    receiver_url = await recreate(server, "coopnet_bench_receiver")
    await asyncio.to_thread(upgrade, sender_url)
    await asyncio.to_thread(upgrade, receiver_url)
    port, receiver_port = free_port(), free_port()
    sender_base = f"http://127.0.0.1:{port}"
    receiver_base = f"http://127.0.0.1:{receiver_port}"
    env = {
        **os.environ,
        "DATABASE_URL": sender_url,
        "PORT": str(port),
        "DATA_DIR": str(tmp / "sender"),
        "PUBLIC_BASE_URL": sender_base,
        "FEDERATION_SYNC_SECONDS": "0",
        "FEDERATION_PRIVATE_NETWORKS": LOOPBACK,  # both ends on this machine
        "LOG_LEVEL": "WARNING",
    }
    process = await asyncio.to_thread(start_sender, env)
    sender = create_engine(sender_url)
    receiver = create_engine(receiver_url)
    try:
        async with httpx.AsyncClient() as http:
            for _ in range(300):
                try:
                    if (await http.get(f"{sender_base}/healthz")).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.1)
            t = time.perf_counter()
            async with sender.begin() as conn:
                for sql in SEED:
                    await conn.execute(text(sql))
                await conn.execute(text("ANALYZE"))
            print(f"seeded {PAS * WINDOWS_PER_PA:,} windows in {time.perf_counter() - t:.1f} s")
            sender_manifest = (await http.get(f"{sender_base}/.well-known/coopnet")).json()
        # The receiver's identity: its own key, published in its (unstarted) manifest's keys.
        settings = Settings(
            database_url=receiver_url, data_dir=tmp / "receiver", port=receiver_port
        )
        identity = load_or_create_identity(settings.federation_key_dir)
        receiver_jwks = identity.jwks()
        async with sender.begin() as conn:
            sql, params = partnership_sql(
                receiver_base,
                {"graphqlEndpoint": f"{receiver_base}/graphql", "keys": receiver_jwks},
                "INCOMING",
            )
            await conn.execute(text(sql), params)
        async with receiver.begin() as conn:
            sql, params = partnership_sql(sender_base, sender_manifest, "OUTGOING")
            partnership_id = (await conn.execute(text(sql), params)).scalar_one()
        client = FederationClient(identity, receiver_base, private_networks=LOOPBACK_NETWORKS)
        try:
            await settled(sender)
            t = time.perf_counter()
            outcome = await sync_partner(receiver, client, partnership_id)
            took = time.perf_counter() - t
            assert outcome.error is None, outcome.error
            print(
                f"initial sync: {outcome.changes_applied:,} windows in {took:.2f} s "
                f"({outcome.changes_applied / took:,.0f} windows/s, {outcome.pages} pages)"
            )
            async with sender.begin() as conn:
                await conn.execute(
                    text(
                        "UPDATE availability_window SET during = tstzrange(lower(during), "
                        "upper(during) + interval '30 minutes') WHERE id IN "
                        f"(SELECT id FROM availability_window ORDER BY id LIMIT {CHANGES})"
                    )
                )
            await settled(sender)
            t = time.perf_counter()
            outcome = await sync_partner(receiver, client, partnership_id)
            took = time.perf_counter() - t
            assert outcome.error is None, outcome.error
            print(
                f"incremental sync: {outcome.changes_applied:,} changes in {took:.3f} s "
                f"({outcome.changes_applied / took:,.0f} windows/s)"
            )
            async with receiver.connect() as conn:
                held = await conn.scalar(text("SELECT count(*) FROM partner_window"))
            print(f"receiver holds {held:,} free periods")
            # Where a page's time goes on the sender: the statement and items alone.
            async with sender.connect() as conn:
                key = await conn.scalar(text("SELECT pseudonym_key FROM partnership"))
            async with AsyncSession(sender) as session:
                t = time.perf_counter()
                page = await read_feed(session, key, None, FEED_MAX_PAGE)
                took = time.perf_counter() - t
            print(
                f"sender, one page of {len(page.changes):,} without GraphQL/HTTP "
                f"(statement + items): {took * 1000:.0f} ms"
            )
        finally:
            await client.aclose()
    finally:
        process.terminate()
        process.wait(10)
        await sender.dispose()
        await receiver.dispose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--server",
        default=os.environ.get(
            "BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
        ),
    )
    asyncio.run(main(parser.parse_args().server))
