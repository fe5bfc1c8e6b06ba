"""Availability sharing between two real instances over HTTP: A offers, B pulls with
`syncPartner` (signed calls through the door), stores what it received, shows it in
`partnerAvailability`, and resumes exactly after being killed mid-sync."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
from typing import Any

from sqlalchemy import select, text

from care.models import Partnership, PartnerWindow
from federation.client import FederationClient
from federation.feed import pseudonym
from federation.identity import load_or_create_identity
from federation.sync import sync_all
from tests.federation.instances import LOOPBACK_NETWORKS, Instance
from tests.federation.test_door import partner_on

SYNC = """
mutation($id: ID!) { syncPartner(input: {partnershipId: $id}) {
  changesApplied errors { code message } partnership { coopName baseUrl lastSyncAt lastError }
} }
"""
AVAILABILITY = """
query($filter: PartnerAvailabilityFilter, $first: Int) {
  partnerAvailability(filter: $filter, first: $first) {
    totalCount
    nodes { paRef windowRef district travelKm start end skills { skill expiresOn }
            partner { name baseUrl homeLocalAuthority { gssCode name } } }
  }
}
"""


def gid(type_name: str, pk: int) -> str:
    return base64.b64encode(f"{type_name}:{pk}".encode()).decode()


async def seed_sender(a: Instance, pas: int, windows_per_pa: int) -> None:
    """A co-op whose PAs are all in a shared pool, with windows from tomorrow on."""
    statements = [
        "INSERT INTO local_authority VALUES ('E09000003', 'Barnet')",
        "INSERT INTO coop (id, name, kind, cqc_status, home_la_code) VALUES "
        "(1, 'Sender Co-op', 'WORKER', 'NOT_REGISTERED', 'E09000003')",
        "INSERT INTO pool (name, shared_with_partners) VALUES ('Shared', true)",
        f"INSERT INTO member (name, membership_class, postcode, email) "
        f"SELECT 'Secret Name ' || g, 'WORKER', 'N12 ' || (g % 9) || 'AB', "
        f"'pa' || g || '@example.org' FROM generate_series(1, {pas}) g",
        "INSERT INTO pa_profile (member_id, hourly_pay_pence) SELECT id, 1300 FROM member",
        "INSERT INTO pa_skill (pa_id, skill) SELECT id, 'hoist' FROM member WHERE id % 2 = 0",
        "INSERT INTO pool_pa (pool_id, pa_id) SELECT 1, id FROM member",
        f"INSERT INTO availability_window (pa_id, during) "
        f"SELECT m.id, tstzrange(date_trunc('hour', now()) + d * interval '7 hours', "
        f"date_trunc('hour', now()) + d * interval '7 hours' + interval '4 hours') "
        f"FROM member m, generate_series(1, {windows_per_pa}) d",
    ]
    async with a.engine.begin() as conn:
        for sql in statements:
            await conn.execute(text(sql))


async def settle(instance: Instance) -> None:
    """Until the instance's feed horizon has passed its last change (it spans the whole
    PostgreSQL server: other databases' open transactions hold it back)."""
    for _ in range(500):
        async with instance.engine.connect() as conn:
            if await conn.scalar(
                text(
                    "SELECT coalesce(max(xid) < pg_snapshot_xmin(pg_current_snapshot()), true)"
                    " FROM availability_feed"
                )
            ):
                return
        await asyncio.sleep(0.02)
    raise AssertionError("an open transaction held the feed back for 10 s")


async def pair(a: Instance, b: Instance) -> tuple[int, int]:
    """ACTIVE partnerships granting AVAILABILITY on both sides, each with the other's
    keys as its manifest publishes them."""
    client = FederationClient(
        load_or_create_identity(b.settings.federation_key_dir),
        b.base_url,
        private_networks=LOOPBACK_NETWORKS,
    )
    try:
        manifest_a = await client.fetch_manifest(a.base_url)
        manifest_b = await client.fetch_manifest(b.base_url)
    finally:
        await client.aclose()
    on_a = await partner_on(a, b, keys=manifest_b.keys)
    on_b = await partner_on(b, a, keys=manifest_a.keys)
    return on_a, on_b


async def expected(a: Instance, on_a: int) -> set[tuple[str, dt.datetime, dt.datetime]]:
    """What B should hold: every window of A's shared PAs still to come, minus
    commitments, under the references A gives B."""
    async with a.session() as s:
        key = await s.scalar(select(Partnership.pseudonym_key).where(Partnership.id == on_a))
        rows = (
            await s.execute(
                text(
                    "SELECT w.id, lower(r) AS s, upper(r) AS e FROM availability_window w, "
                    "unnest(tstzmultirange(w.during) - coalesce((SELECT range_agg(c.during) "
                    "FROM pa_commitment c WHERE c.pa_id = w.pa_id AND c.during && w.during), "
                    "'{}'::tstzmultirange)) r "
                    "JOIN pool_pa pp ON true JOIN pool p ON p.id = pp.pool_id "
                    "WHERE pp.pa_id = w.pa_id AND p.shared_with_partners "
                    "AND upper(w.during) > now()"
                )
            )
        ).all()
    assert key is not None
    return {(pseudonym(key, "window", r.id), r.s, r.e) for r in rows}


async def held(b: Instance, on_b: int) -> set[tuple[str, dt.datetime, dt.datetime]]:
    async with b.session() as s:
        rows = (
            await s.execute(
                select(PartnerWindow.ref, PartnerWindow.during).where(
                    PartnerWindow.partnership_id == on_b
                )
            )
        ).all()
    return {(r.ref, r.during.lower, r.during.upper) for r in rows}


async def staff(b: Instance, role: str) -> str:
    """A token for a new member of B with this role."""
    async with b.engine.begin() as conn:
        member_id = await conn.scalar(
            text(
                "INSERT INTO member (name, membership_class) VALUES ('Staff', 'WORKER') "
                "RETURNING id"
            )
        )
    return b.token(role, member_id)


async def sync(b: Instance, on_b: int) -> dict[str, Any]:
    data = await b.data(SYNC, {"id": gid("Partnership", on_b)}, token=await staff(b, "ADMIN"))
    result: dict[str, Any] = data["syncPartner"]
    return result


async def test_a_partner_pulls_the_feed_and_shows_it(peers: tuple[Instance, Instance]) -> None:
    a, b = peers
    await seed_sender(a, pas=20, windows_per_pa=5)
    on_a, on_b = await pair(a, b)
    await settle(a)

    first = await sync(b, on_b)
    assert first["errors"] == []
    assert first["changesApplied"] == 100
    assert first["partnership"]["baseUrl"] == a.base_url
    assert first["partnership"]["lastSyncAt"] is not None
    assert await held(b, on_b) == await expected(a, on_a)

    # Nothing new: nothing applied.
    assert (await sync(b, on_b))["changesApplied"] == 0

    # A window is deleted, a PA leaves the shared pool, another window grows.
    async with a.engine.begin() as conn:
        pa2 = set(
            (
                await conn.execute(text("SELECT id FROM availability_window WHERE pa_id = 2"))
            ).scalars()
        )
        await conn.execute(text("DELETE FROM availability_window WHERE id = 1"))
        await conn.execute(text("DELETE FROM pool_pa WHERE pa_id = 2"))
        await conn.execute(
            text(
                "UPDATE availability_window SET during = tstzrange(lower(during), "
                "upper(during) + interval '1 hour') WHERE id = 50"
            )
        )
    await settle(a)
    again = await sync(b, on_b)
    assert again["errors"] == []
    assert again["changesApplied"] == len(pa2 | {1, 50})
    assert await held(b, on_b) == await expected(a, on_a)

    # Coordinators see it, marked with the partner co-op; filters apply.
    coordinator = await staff(b, "COORDINATOR")
    data = await b.data(AVAILABILITY, {"first": 100}, token=coordinator)
    listed = data["partnerAvailability"]
    assert listed["totalCount"] == len(await expected(a, on_a))
    node = listed["nodes"][0]
    assert node["partner"]["baseUrl"] == a.base_url
    assert node["district"].startswith("N12")
    hoist = await b.data(
        AVAILABILITY, {"filter": {"skill": "hoist"}, "first": 100}, token=coordinator
    )
    assert 0 < hoist["partnerAvailability"]["totalCount"] < listed["totalCount"]
    assert all(
        n["skills"] == [{"skill": "hoist", "expiresOn": None}]
        for n in hoist["partnerAvailability"]["nodes"]
    )
    # Nothing personal reached B.
    async with b.engine.connect() as conn:
        dump = await conn.scalar(text("SELECT string_agg(t::text, ' ') FROM partner_window t"))
    assert dump is not None and "Secret Name" not in dump and "@example.org" not in dump


async def test_a_receiver_killed_mid_sync_resumes_exactly(
    peers: tuple[Instance, Instance],
) -> None:
    a, b = peers
    await seed_sender(a, pas=100, windows_per_pa=200)  # 20,000 windows: four pages
    on_a, on_b = await pair(a, b)
    await settle(a)

    running = asyncio.create_task(sync(b, on_b))
    # Kill B as soon as its first page is committed (the cursor moved).
    for _ in range(1000):
        async with b.engine.connect() as conn:
            cursor = await conn.scalar(
                text("SELECT feed_cursor FROM partnership WHERE id = :p"), {"p": on_b}
            )
        if cursor is not None:
            break
        await asyncio.sleep(0.01)
    assert cursor is not None
    b.kill()
    try:
        await running
    except Exception:  # noqa: BLE001 - the connection to the killed instance broke
        pass
    await b.dispose()
    async with b.engine.connect() as conn:
        applied = await conn.scalar(
            text("SELECT count(DISTINCT ref) FROM partner_window WHERE partnership_id = :p"),
            {"p": on_b},
        )
    assert applied is not None and 0 < applied < 20_000  # cut off part-way, pages whole
    assert applied % 5000 == 0

    b.start()
    resumed = await sync(b, on_b)
    assert resumed["errors"] == []
    assert resumed["changesApplied"] == 20_000 - applied
    assert await held(b, on_b) == await expected(a, on_a)


async def test_a_scheduled_round_pulls_every_active_availability_partner(
    peers: tuple[Instance, Instance],
) -> None:
    """What the schedule runs every FEDERATION_SYNC_SECONDS: every ACTIVE partnership
    granting AVAILABILITY, and no other."""
    a, b = peers
    await seed_sender(a, pas=4, windows_per_pa=3)
    on_a, on_b = await pair(a, b)
    # A suspended partnership with an unreachable instance: never called.
    async with b.engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO partnership (base_url, graphql_endpoint, proposal_ref, direction,"
                " status, suspended_by, requested_scopes, granted_scopes, protocol_version,"
                " pseudonym_key) VALUES ('http://127.0.0.1:9', 'http://127.0.0.1:9/graphql',"
                " gen_random_uuid(), 'OUTGOING', 'SUSPENDED', 'US', '{AVAILABILITY}',"
                " '{AVAILABILITY}', 'coopnet-federation/1', '\\x01')"
            )
        )
    await settle(a)
    client = FederationClient(
        load_or_create_identity(b.settings.federation_key_dir),
        b.base_url,
        private_networks=LOOPBACK_NETWORKS,
    )
    try:
        outcomes = await sync_all(b.engine, client)
    finally:
        await client.aclose()
    assert [(o.partnership_id, o.changes_applied, o.error) for o in outcomes] == [(on_b, 12, None)]
    assert await held(b, on_b) == await expected(a, on_a)


async def test_sync_partner_says_why_it_did_not_sync(peers: tuple[Instance, Instance]) -> None:
    a, b = peers
    admin = await staff(b, "ADMIN")
    async with b.engine.begin() as conn:
        unreachable = await conn.scalar(
            text(
                "INSERT INTO partnership (base_url, graphql_endpoint, proposal_ref, direction,"
                " status, requested_scopes, granted_scopes, protocol_version, pseudonym_key)"
                " VALUES ('http://127.0.0.1:9', 'http://127.0.0.1:9/graphql',"
                " gen_random_uuid(), 'OUTGOING', 'ACTIVE', '{AVAILABILITY,COVER}', '{COVER}',"
                " 'coopnet-federation/1', '\\x01') RETURNING id"
            )
        )
    assert unreachable is not None

    async def codes(pk: int | str) -> list[str]:
        ident = gid("Partnership", pk) if isinstance(pk, int) else pk
        data = await b.data(SYNC, {"id": ident}, token=admin)
        return [e["code"] for e in data["syncPartner"]["errors"]]

    assert await codes(unreachable) == ["NOT_ACTIVE"]  # COVER only
    assert await codes(999) == ["NOT_FOUND"]
    assert await codes("not an id") == ["NOT_FOUND"]
    async with b.engine.begin() as conn:
        await conn.execute(
            text("UPDATE partnership SET granted_scopes = '{AVAILABILITY}' WHERE id = :p"),
            {"p": unreachable},
        )
    assert await codes(unreachable) == ["PARTNER_UNREACHABLE"]
    async with b.session() as s:
        row = await s.get(Partnership, unreachable)
    assert row is not None and row.last_error and row.last_error.startswith("UNREACHABLE")
    assert row.feed_cursor is None
