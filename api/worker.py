"""The outbox delivery worker as this application runs it: inside `coopnet serve`
(unless OUTBOX_WORKER=false) and alone as `coopnet worker`, which also runs the expiry
sweep of cover exchange holds (federation/exchange.py)."""

from __future__ import annotations

import asyncio
import logging
import signal

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.db import create_engine, session_factory
from api.settings import Settings
from federation.client import FederationClient
from federation.exchange import ExchangeSweeper, configure_exchanges
from federation.identity import load_or_create_identity
from federation.outbox import OutboxPolicy, OutboxWorker

log = logging.getLogger("coopnet.worker")


def build_worker(
    settings: Settings,
    database_url: str,
    sessions: async_sessionmaker[AsyncSession],
    client: FederationClient,
) -> OutboxWorker:
    return OutboxWorker(
        database_url,
        sessions,
        lambda: client,
        OutboxPolicy(
            max_attempts=settings.outbox_max_attempts,
            first_delay=settings.outbox_first_delay_seconds,
            max_delay=settings.outbox_max_delay_seconds,
        ),
        poll_seconds=settings.outbox_poll_seconds,
        heartbeat_seconds=settings.outbox_heartbeat_seconds,
    )


async def run_worker(settings: Settings, database_url: str) -> None:
    """Deliver (and expire cover exchange holds) until SIGTERM or SIGINT, then finish the
    deliveries in hand."""
    configure_exchanges(settings.cover_hold_minutes)
    identity = load_or_create_identity(
        settings.federation_key_dir,
        settings.federation_key_file,
        settings.federation_previous_key_paths,
    )
    engine = create_engine(database_url, pool_size=2)
    client = FederationClient(
        identity, settings.base_url, private_networks=settings.federation_private_network_list
    )
    worker = build_worker(settings, database_url, session_factory(engine), client)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await worker.start()
    sweeper = ExchangeSweeper(session_factory(engine), settings.exchange_sweep_seconds)
    sweeper.start()
    log.info("outbox worker running")
    try:
        await stop.wait()
    finally:
        await sweeper.stop()
        await worker.stop()
        await client.aclose()
        await engine.dispose()
