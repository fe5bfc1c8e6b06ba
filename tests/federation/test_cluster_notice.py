"""Opening a cluster in a partner's area, between two real instances (docs/federation.md,
section 13): the notice is queued with the opening, delivered by the outbox, stored once
per idempotency key, shown to the partner's admins and coordinators, and forgotten when
the partnership ends. Partners without COVER, or serving elsewhere, are not told."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select, update

from care.enums import PartnershipStatus, Role
from care.models import LocalAuthority, PartnerCluster, Partnership, PeerDelivery, Referral
from federation.expansion import NOTICE, OPERATION
from federation.feed import pseudonym
from federation.outbox import send_later, undelivered
from schema.permissions import decode_id
from tests.factories import gid
from tests.federation.instances import Instance, eventually, free_port
from tests.federation.test_door import partner_on

HARINGEY, SHEFFIELD = "E09000014", "E08000019"
CREATE = """mutation($input: CreateClusterInput!) { createCluster(input: $input) {
  cluster { id } errors { field code } } }"""
ACTIVATE = """mutation($id: ID!) { updateCluster(id: $id, input: {status: ACTIVE}) {
  cluster { status } errors { field code } } }"""
LISTED = """{ partnerClusters(localAuthority: "E09000014") {
  ref name localAuthority district openedAt partnerName partnerBaseUrl } }"""
OPPORTUNITIES = """{ expansionOpportunities(localAuthority: "E09000014") {
  district peopleWaiting ourClusterHere partnersHere } }"""


async def _places(instance: Instance) -> None:
    async with instance.session() as session:
        session.add_all(
            [
                LocalAuthority(gss_code=HARINGEY, name="Haringey"),
                LocalAuthority(gss_code=SHEFFIELD, name="Sheffield"),
            ]
        )
        await session.commit()


async def _serves(instance: Instance, partnership_id: int, la: str, name: str) -> None:
    """What the partner's manifest told us: its home local authority and its name."""
    async with instance.session() as session:
        await session.execute(
            update(Partnership)
            .where(Partnership.id == partnership_id)
            .values(
                home_la_code=la,
                local_authorities=[{"gssCode": la, "name": "?"}],
                coop_name=name,
            )
        )
        await session.commit()


async def _stranger(
    instance: Instance, la: str, scopes: list[str], status: PartnershipStatus
) -> int:
    """A partnership with an instance that is not running: a message queued to it would
    stay in the queue (retried), where the test can see it."""
    url = f"http://127.0.0.1:{free_port()}"
    async with instance.session() as session:
        row = Partnership(
            base_url=url,
            graphql_endpoint=f"{url}/graphql",
            proposal_ref=uuid.uuid4(),
            direction="OUTGOING",
            status=status.value,
            requested_scopes=scopes,
            granted_scopes=scopes,
            suspended_by="US" if status is PartnershipStatus.SUSPENDED else None,
            protocol_version="coopnet-federation/1",
            home_la_code=la,
            local_authorities=[{"gssCode": la, "name": "?"}],
        )
        session.add(row)
        await session.commit()
        return row.id


async def _stored(instance: Instance) -> list[PartnerCluster]:
    async with instance.session() as session:
        return list(await session.scalars(select(PartnerCluster).order_by(PartnerCluster.id)))


async def _deliveries(instance: Instance) -> int:
    async with instance.session() as session:
        count = await session.scalar(
            select(func.count())
            .select_from(PeerDelivery)
            .where(PeerDelivery.operation == OPERATION)
        )
        return int(count or 0)


async def _queue(instance: Instance) -> list[Any]:
    async with instance.session() as session:
        return list(await undelivered(session))


async def test_opening_a_cluster_in_a_partners_area_tells_partners_holding_cover(
    peers: tuple[Instance, Instance],
) -> None:
    a, b = peers
    await _places(a)
    await _places(b)
    b_on_a = await partner_on(a, b, scopes=("AVAILABILITY", "COVER"))
    a_on_b = await partner_on(b, a, scopes=("AVAILABILITY", "COVER"))
    await _serves(a, b_on_a, HARINGEY, "Lea Valley")
    await _serves(b, a_on_b, SHEFFIELD, "Northside")
    # Not told: no COVER; serving elsewhere; suspended.
    strangers = {
        await _stranger(a, HARINGEY, ["AVAILABILITY"], PartnershipStatus.ACTIVE),
        await _stranger(a, SHEFFIELD, ["COVER"], PartnershipStatus.ACTIVE),
        await _stranger(a, HARINGEY, ["COVER"], PartnershipStatus.SUSPENDED),
    }
    async with b.session() as session:
        session.add(
            Referral(
                la_code=HARINGEY,
                postcode_district="N22",
                hours_per_week=Decimal("10"),
                referred_on=dt.date.today(),
                needs=["dementia"],
            )
        )
        await session.commit()

    admin_a = a.token(Role.ADMIN)
    created = await a.data(
        CREATE,
        {
            "input": {
                "name": "Wood Green",
                "kind": "GEOGRAPHIC",
                "localAuthority": HARINGEY,
                "postcodeDistricts": ["N22", "N8"],
            }
        },
        token=admin_a,
    )
    assert created["createCluster"]["errors"] == []
    cluster_id = created["createCluster"]["cluster"]["id"]
    assert await _queue(a) == []  # PLANNED: not opened yet, nothing queued

    opened = await a.data(ACTIVATE, {"id": cluster_id}, token=admin_a)
    assert opened["updateCluster"]["errors"] == []
    [row] = await eventually(lambda: _stored(b), "B stores A's cluster")
    async with a.session() as session:
        key = await session.scalar(
            select(Partnership.pseudonym_key).where(Partnership.id == b_on_a)
        )
    assert key is not None
    assert (row.partnership_id, row.name, row.la_code, row.district) == (
        a_on_b,
        "Wood Green",
        HARINGEY,
        "N22",  # the first of its districts
    )
    # A's reference: a pseudonym of the cluster, for this partner only.
    assert row.ref == pseudonym(key, "cluster", decode_id(cluster_id, "Cluster") or -1)
    # Every notice of the opening went in one transaction: none waits for a stranger.
    queued = await _queue(a)
    assert [m for m in queued if m.partnership_id in strangers] == []
    assert await _deliveries(b) == 1

    # B's coordinators and admins see it, and where it stands among their waiting demand.
    admin_b = b.token(Role.ADMIN)
    listed = (await b.data(LISTED, token=admin_b))["partnerClusters"]
    assert [(c["name"], c["district"], c["partnerName"], c["partnerBaseUrl"]) for c in listed] == [
        ("Wood Green", "N22", "Northside", a.base_url)
    ]
    async with b.session() as session:
        session.add(
            Referral(
                la_code=HARINGEY,
                postcode_district="N8",
                hours_per_week=Decimal("4"),
                referred_on=dt.date.today(),
                needs=[],
            )
        )
        await session.commit()
    found = (await b.data(OPPORTUNITIES, token=admin_b))["expansionOpportunities"]
    assert {r["district"]: r["partnersHere"] for r in found} == {
        "N22": ["Northside"],
        "N8": [],
    }

    # Ending the partnership deletes what A told B.
    ended = await b.data(
        "mutation($id: ID!) { endPartnership(input: {partnershipId: $id}) { errors { code } } }",
        {"id": gid("Partnership", a_on_b)},
        token=admin_b,
    )
    assert ended["endPartnership"]["errors"] == []
    assert await _stored(b) == []
    assert (await b.data(LISTED, token=admin_b))["partnerClusters"] == []


def _notice(ref: str, name: str) -> dict[str, Any]:
    return {
        "cluster": {
            "ref": ref,
            "name": name,
            "localAuthority": HARINGEY,
            "district": "N22",
            "openedAt": dt.datetime.now(dt.UTC).isoformat(),
        }
    }


async def _send(sender: Instance, partnership_id: int, key: uuid.UUID, name: str) -> None:
    async with sender.session() as session:
        await send_later(
            session, partnership_id, OPERATION, NOTICE, _notice("dup", name), idempotency_key=key
        )
        await session.commit()


async def _empty(instance: Instance) -> bool:
    return await _queue(instance) == []


async def _last_error(instance: Instance, partnership_id: int) -> str | None:
    async with instance.session() as session:
        return await session.scalar(
            select(Partnership.last_error).where(Partnership.id == partnership_id)
        )


async def test_a_repeated_delivery_is_applied_once(peers: tuple[Instance, Instance]) -> None:
    a, b = peers
    b_on_a = await partner_on(a, b, scopes=("COVER",))
    await partner_on(b, a, scopes=("COVER",))
    key = uuid.uuid4()
    await _send(a, b_on_a, key, "First")
    [row] = await eventually(lambda: _stored(b), "B stores the notice")
    assert row.name == "First"
    # The same message again (an outbox delivering twice), even with another body.
    await _send(a, b_on_a, key, "Second")
    await eventually(lambda: _empty(a), "the copy is delivered")
    assert [r.name for r in await _stored(b)] == ["First"]
    assert await _deliveries(b) == 1
    assert await _last_error(a, b_on_a) is None  # answered as the first time: stored


async def test_a_partner_without_cover_refuses_the_notice(
    peers: tuple[Instance, Instance],
) -> None:
    a, b = peers
    b_on_a = await partner_on(a, b, scopes=("COVER",))
    await partner_on(b, a, scopes=("AVAILABILITY",))  # B never granted COVER
    await _send(a, b_on_a, uuid.uuid4(), "Uninvited")
    error = await eventually(lambda: _last_error(a, b_on_a), "A records B's refusal")
    assert "OUT_OF_SCOPE" in error or "FORBIDDEN" in error
    assert await _stored(b) == []
