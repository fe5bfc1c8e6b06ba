"""Partnerships between two real instances, all in GraphQL (federation/partnerships.py,
docs/federation.md section 8): A's admin proposes to B, B's admin sees and answers it,
either side suspends, resumes or ends it, and a partner that cannot be reached is
reported on the partnership, never as a crash."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import Range

from care.models import Partnership, PartnerWindow
from federation.client import FederationClient, PartnerError
from federation.identity import load_or_create_identity
from federation.partnerships import MAX_WAITING_PROPOSALS
from tests.federation.instances import LOOPBACK_NETWORKS, Instance, eventually

FIELDS = (
    "id baseUrl direction status requestedScopes grantedScopes suspendedBy protocolVersion "
    "keyIds lastContactAt lastError lastErrorAt"
)
PAYLOAD = f"{{ partnership {{ {FIELDS} }} errors {{ field code message }} }}"
PROPOSE = (
    "mutation($input: ProposePartnershipInput!) { proposePartnership(input: $input) "
    + PAYLOAD
    + " }"
)
ACCEPT = (
    "mutation($input: AcceptPartnershipInput!) { acceptPartnership(input: $input) " + PAYLOAD + " }"
)
LIST = f"{{ partnerships {{ {FIELDS} }} }}"
DEAD = "http://127.0.0.1:9"  # nothing listens there


def by_id(name: str) -> str:
    return f"mutation($input: PartnershipIdInput!) {{ {name}(input: $input) " + PAYLOAD + " }"


async def admin(instance: Instance, query: str, variables: dict[str, Any] | None = None) -> Any:
    return await instance.data(query, variables, token=instance.token("ADMIN"))


async def propose(a: Instance, b: Instance, scopes: list[str]) -> dict[str, Any]:
    data = await admin(a, PROPOSE, {"input": {"baseUrl": b.base_url + "/", "scopes": scopes}})
    payload: dict[str, Any] = data["proposePartnership"]
    return payload


async def only(instance: Instance) -> dict[str, Any]:
    rows = (await admin(instance, LIST))["partnerships"]
    assert len(rows) == 1, rows
    row: dict[str, Any] = rows[0]
    return row


async def act(instance: Instance, name: str, partnership_id: str) -> dict[str, Any]:
    data = await admin(instance, by_id(name), {"input": {"partnershipId": partnership_id}})
    payload: dict[str, Any] = data[name]
    return payload


async def accept(b: Instance, scopes: list[str] | None = None) -> dict[str, Any]:
    incoming = await only(b)
    variables: dict[str, Any] = {"partnershipId": incoming["id"]}
    if scopes is not None:
        variables["scopes"] = scopes
    payload: dict[str, Any] = (await admin(b, ACCEPT, {"input": variables}))["acceptPartnership"]
    return payload


async def active_pair(a: Instance, b: Instance, scopes: list[str]) -> tuple[str, str]:
    """An ACTIVE partnership proposed by A and accepted by B: (A's id, B's id)."""
    proposed = await propose(a, b, scopes)
    assert proposed["errors"] == []
    accepted = await accept(b)
    assert accepted["errors"] == [], accepted
    return proposed["partnership"]["id"], accepted["partnership"]["id"]


def kid(instance: Instance) -> str:
    return load_or_create_identity(instance.settings.federation_key_dir, None, []).kid


async def row_of(instance: Instance) -> Partnership:
    async with instance.session() as session:
        row = await session.scalar(select(Partnership))
        assert row is not None
        return row


async def test_a_proposal_seen_and_accepted_with_fewer_scopes(
    peers: tuple[Instance, Instance],
) -> None:
    a, b = peers
    proposed = await propose(a, b, ["AVAILABILITY", "COVER"])
    assert proposed["errors"] == []
    mine = proposed["partnership"]
    assert mine["baseUrl"] == b.base_url  # the trailing slash normalised away
    assert (mine["direction"], mine["status"]) == ("OUTGOING", "PROPOSED")
    assert mine["requestedScopes"] == ["AVAILABILITY", "COVER"]
    assert mine["keyIds"] == [kid(b)]
    assert mine["lastContactAt"] is not None and mine["lastError"] is None

    # B's admins see it, with A's keys.
    theirs = await only(b)
    assert (theirs["direction"], theirs["status"]) == ("INCOMING", "PROPOSED")
    assert theirs["baseUrl"] == a.base_url
    assert theirs["requestedScopes"] == ["AVAILABILITY", "COVER"]
    assert theirs["keyIds"] == [kid(a)]
    assert theirs["protocolVersion"] == "coopnet-federation/1"

    # A scope not requested is refused; nothing changes.
    refused = await accept(b, ["MARKET_DATA"])
    assert [e["code"] for e in refused["errors"]] == ["INVALID"]
    assert (await only(b))["status"] == "PROPOSED"

    accepted = await accept(b, ["COVER"])
    assert accepted["errors"] == []
    assert accepted["partnership"]["status"] == "ACTIVE"
    assert accepted["partnership"]["grantedScopes"] == ["COVER"]
    on_a = await only(a)
    assert on_a["status"] == "ACTIVE" and on_a["grantedScopes"] == ["COVER"]
    row_a, row_b = await row_of(a), await row_of(b)
    assert row_a.proposal_ref == row_b.proposal_ref
    assert row_a.keys == load_or_create_identity(b.settings.federation_key_dir, None, []).jwks()
    assert row_b.keys == load_or_create_identity(a.settings.federation_key_dir, None, []).jwks()
    assert row_a.pseudonym_key != row_b.pseudonym_key

    # Proposing again while active is refused.
    again = await propose(a, b, ["COVER"])
    assert [e["code"] for e in again["errors"]] == ["ALREADY_EXISTS"]


async def test_a_rejected_proposal_may_be_proposed_again(
    peers: tuple[Instance, Instance],
) -> None:
    a, b = peers
    await propose(a, b, ["AVAILABILITY"])
    first_ref = (await row_of(a)).proposal_ref
    incoming = await only(b)
    rejected = await act(b, "rejectPartnership", incoming["id"])
    assert rejected["errors"] == [] and rejected["partnership"]["status"] == "REJECTED"
    assert (await only(a))["status"] == "REJECTED"
    # A rejected partnership cannot be suspended or accepted.
    assert [e["code"] for e in (await accept(b))["errors"]] == ["CLOSED"]

    again = await propose(a, b, ["MARKET_DATA"])
    assert again["errors"] == [] and again["partnership"]["status"] == "PROPOSED"
    second_ref = (await row_of(a)).proposal_ref
    assert second_ref != first_ref
    on_b = await only(b)
    assert on_b["status"] == "PROPOSED" and on_b["requestedScopes"] == ["MARKET_DATA"]
    assert (await row_of(b)).proposal_ref == second_ref


async def test_only_the_suspending_side_resumes(peers: tuple[Instance, Instance]) -> None:
    a, b = peers
    a_id, b_id = await active_pair(a, b, ["AVAILABILITY"])
    suspended = await act(b, "suspendPartnership", b_id)
    assert suspended["errors"] == []
    assert (suspended["partnership"]["status"], suspended["partnership"]["suspendedBy"]) == (
        "SUSPENDED",
        "US",
    )
    on_a = await status_on(a, "SUSPENDED")
    assert on_a["suspendedBy"] == "PARTNER"

    refused = await act(a, "resumePartnership", a_id)
    assert [e["code"] for e in refused["errors"]] == ["FORBIDDEN"]
    assert (await only(a))["status"] == "SUSPENDED"

    resumed = await act(b, "resumePartnership", b_id)
    assert resumed["errors"] == [] and resumed["partnership"]["status"] == "ACTIVE"
    on_a = await status_on(a, "ACTIVE")
    assert on_a["suspendedBy"] is None


async def status_on(instance: Instance, status: str) -> dict[str, Any]:
    """The instance's only partnership once it has reached `status` (notices arrive
    through the sender's outbox, a moment after the change)."""

    async def reached() -> dict[str, Any] | None:
        row = await only(instance)
        return row if row["status"] == status else None

    row: dict[str, Any] = await eventually(reached, f"the partnership is {status}")
    return row


async def add_windows(instance: Instance, count: int) -> None:
    start = dt.datetime(2030, 1, 7, 9, tzinfo=dt.UTC)
    async with instance.session() as session:
        pid = await session.scalar(select(Partnership.id))
        assert pid is not None
        session.add_all(
            PartnerWindow(
                partnership_id=pid,
                ref=f"w{i}",
                period=0,
                pa_ref=f"pa{i}",
                skills=[],
                district="N3",
                travel_km=Decimal(5),
                during=Range(start + dt.timedelta(days=i), start + dt.timedelta(days=i, hours=4)),
            )
            for i in range(count)
        )
        await session.execute(update(Partnership).values(feed_cursor="somewhere"))
        await session.commit()


async def windows(instance: Instance) -> int:
    async with instance.session() as session:
        return int(await session.scalar(select(func.count()).select_from(PartnerWindow)) or 0)


async def test_ending_deletes_what_each_side_received(peers: tuple[Instance, Instance]) -> None:
    a, b = peers
    a_id, _ = await active_pair(a, b, ["AVAILABILITY"])
    await add_windows(a, 3)
    await add_windows(b, 2)
    ended = await act(a, "endPartnership", a_id)
    assert ended["errors"] == [] and ended["partnership"]["status"] == "ENDED"
    assert await windows(a) == 0  # at once, with the change
    await status_on(b, "ENDED")
    assert await windows(b) == 0
    assert (await row_of(a)).feed_cursor is None and (await row_of(b)).feed_cursor is None
    # Over: ending again only repeats the notice (harmless); nothing to suspend.
    again = await act(a, "endPartnership", a_id)
    assert again["errors"] == [] and again["partnership"]["status"] == "ENDED"
    assert [e["code"] for e in (await act(a, "suspendPartnership", a_id))["errors"]] == ["CLOSED"]


async def test_an_unreachable_partner_is_reported_not_a_crash(
    peers: tuple[Instance, Instance],
) -> None:
    a, b = peers
    # Nobody there: a coded error, nothing written.
    dead = await admin(a, PROPOSE, {"input": {"baseUrl": DEAD, "scopes": ["COVER"]}})
    payload = dead["proposePartnership"]
    assert [e["code"] for e in payload["errors"]] == ["PARTNER_UNREACHABLE"]
    assert payload["partnership"] is None
    assert (await admin(a, LIST))["partnerships"] == []

    # B's answer cannot reach A: nothing changes on B but lastError.
    await propose(a, b, ["COVER"])
    async with b.session() as session:
        await session.execute(update(Partnership).values(graphql_endpoint=f"{DEAD}/graphql"))
        await session.commit()
    failed = await accept(b)
    assert [e["code"] for e in failed["errors"]] == ["PARTNER_UNREACHABLE"]
    assert failed["partnership"]["status"] == "PROPOSED"
    assert failed["partnership"]["lastError"].startswith("UNREACHABLE")
    assert failed["partnership"]["lastErrorAt"] is not None
    assert (await only(a))["status"] == "PROPOSED"


async def test_a_notice_reaches_a_partner_that_was_unreachable(
    peers: tuple[Instance, Instance],
) -> None:
    """The change stands at once; its notice waits in the outbox, retried, until the
    partner can be reached, with no admin action."""
    a, b = peers
    a_id, _ = await active_pair(a, b, ["COVER"])
    async with a.session() as session:
        await session.execute(update(Partnership).values(graphql_endpoint=f"{DEAD}/graphql"))
        await session.commit()
    suspended = await act(a, "suspendPartnership", a_id)
    assert suspended["errors"] == []
    assert suspended["partnership"]["status"] == "SUSPENDED"

    async def failed() -> str | None:
        return (await only(a))["lastError"]

    assert (await eventually(failed, "A records the failed delivery")).startswith("UNREACHABLE")
    assert (await only(b))["status"] == "ACTIVE"  # B has not heard yet
    # Reachable again: the queued notice arrives on its next attempt.
    async with a.session() as session:
        await session.execute(update(Partnership).values(graphql_endpoint=b.graphql_url))
        await session.commit()
    on_b = await status_on(b, "SUSPENDED")
    assert on_b["suspendedBy"] == "PARTNER"
    assert (await only(a))["lastError"] is None


async def test_a_failed_proposal_stays_proposed_and_is_sent_again(
    peers: tuple[Instance, Instance],
) -> None:
    a, b = peers
    # B refuses the proposal (it has proposed to A with a smaller reference: crossing
    # proposals, and its own stands), so A's row stays PROPOSED with lastError.
    async with b.session() as session:
        session.add(
            Partnership(
                base_url=a.base_url,
                graphql_endpoint=a.graphql_url,
                proposal_ref=uuid.UUID(int=1),
                direction="OUTGOING",
                status="PROPOSED",
                requested_scopes=["COVER"],
                protocol_version="coopnet-federation/1",
                keys=load_or_create_identity(a.settings.federation_key_dir, None, []).jwks(),
            )
        )
        await session.commit()
    refused = await propose(a, b, ["COVER"])
    assert [e["code"] for e in refused["errors"]] == ["PARTNER_REFUSED"]
    assert refused["partnership"]["status"] == "PROPOSED"
    assert "crossing" in refused["partnership"]["lastError"]
    ref = (await row_of(a)).proposal_ref

    # B's proposal gives way (an admin there withdraws it); proposing again re-sends.
    async with b.session() as session:
        await session.execute(update(Partnership).values(status="ENDED"))
        await session.commit()
    sent = await propose(a, b, ["COVER"])
    assert sent["errors"] == [] and sent["partnership"]["lastError"] is None
    assert (await row_of(a)).proposal_ref == ref  # the same proposal, sent again
    on_b = await only(b)
    assert (on_b["direction"], on_b["status"]) == ("INCOMING", "PROPOSED")


async def test_crossing_proposals_settle_on_one(peers: tuple[Instance, Instance]) -> None:
    a, b = peers
    # B proposed to A with a larger reference than A's will be: when A's proposal
    # arrives, B's gives way and B's admins see A's.
    async with b.session() as session:
        session.add(
            Partnership(
                base_url=a.base_url,
                graphql_endpoint=a.graphql_url,
                proposal_ref=uuid.UUID(int=2**128 - 1),
                direction="OUTGOING",
                status="PROPOSED",
                requested_scopes=["COVER"],
                protocol_version="coopnet-federation/1",
                keys=load_or_create_identity(a.settings.federation_key_dir, None, []).jwks(),
            )
        )
        await session.commit()
    proposed = await propose(a, b, ["AVAILABILITY"])
    assert proposed["errors"] == []
    on_b = await only(b)
    assert (on_b["direction"], on_b["status"]) == ("INCOMING", "PROPOSED")
    assert on_b["requestedScopes"] == ["AVAILABILITY"]
    assert (await row_of(b)).proposal_ref == (await row_of(a)).proposal_ref
    assert (await accept(b))["errors"] == []
    assert (await only(a))["status"] == "ACTIVE"


async def test_partnerships_are_for_admins_only(peers: tuple[Instance, Instance]) -> None:
    a, b = peers
    # (Every member role is tried at schema level by tests/schema/test_access_grid.py.)
    analyst = a.token("LA_ANALYST", la="E09000003")
    for token, code in ((analyst, "FORBIDDEN"), (None, "UNAUTHENTICATED")):
        for query in (LIST, by_id("endPartnership")):
            variables = {"input": {"partnershipId": "UGFydG5lcnNoaXA6MQ=="}}
            body = (await a.graphql(query, variables, token=token)).json()
            assert [e["extensions"]["code"] for e in body["errors"]] == [code], body
    # Members may not send the partner messages either, not even admins.
    body = (
        await a.graphql(
            'mutation { peerChangePartnership(input: {proposalRef: "x", status: ENDED})'
            " { status } }",
            token=a.token("ADMIN"),
        )
    ).json()
    assert [e["extensions"]["code"] for e in body["errors"]] == ["FORBIDDEN"]


async def test_a_partner_instance_cannot_reach_the_admin_fields(
    peers: tuple[Instance, Instance],
) -> None:
    a, b = peers
    await active_pair(a, b, ["AVAILABILITY", "COVER", "MARKET_DATA"])
    client = FederationClient(
        load_or_create_identity(b.settings.federation_key_dir, None, []),
        b.base_url,
        private_networks=LOOPBACK_NETWORKS,
    )
    keys = load_or_create_identity(a.settings.federation_key_dir, None, []).jwks()
    try:
        for query in (
            "{ partnerships { id } }",
            'mutation { endPartnership(input: {partnershipId: "UGFydG5lcnNoaXA6MQ=="}) '
            "{ errors { code } } }",
        ):
            with pytest.raises(PartnerError) as refused:
                await client.call(a.graphql_url, keys, query, base_url=a.base_url)
            assert refused.value.reason == "OUT_OF_SCOPE", refused.value
    finally:
        await client.aclose()
    assert (await only(a))["status"] == "ACTIVE"


async def test_a_lost_answer_is_recovered_by_proposing_again(
    peers: tuple[Instance, Instance],
) -> None:
    a, b = peers
    await propose(a, b, ["AVAILABILITY", "COVER"])
    # B accepted, but its answer never reached A (as if A had been down).
    async with b.session() as session:
        await session.execute(update(Partnership).values(status="ACTIVE", granted_scopes=["COVER"]))
        await session.commit()
    assert (await only(a))["status"] == "PROPOSED"
    again = await propose(a, b, ["AVAILABILITY", "COVER"])
    assert again["errors"] == []
    assert again["partnership"]["status"] == "ACTIVE"
    assert again["partnership"]["grantedScopes"] == ["COVER"]
    assert (await only(b))["status"] == "ACTIVE"  # unchanged there


async def test_proposals_waiting_for_an_admin_are_bounded(
    peers: tuple[Instance, Instance],
) -> None:
    """Anyone who serves a manifest may propose: past MAX_WAITING_PROPOSALS waiting, a new
    proposer is told to come back later, and nothing is written."""
    a, b = peers
    async with b.session() as session:
        session.add_all(
            Partnership(
                base_url=f"https://waiting-{n}.example",
                graphql_endpoint=f"https://waiting-{n}.example/graphql",
                proposal_ref=uuid.uuid4(),
                direction="INCOMING",
                status="PROPOSED",
                requested_scopes=["COVER"],
                granted_scopes=[],
                protocol_version="coopnet-federation/1",
            )
            for n in range(MAX_WAITING_PROPOSALS)
        )
        await session.commit()
    refused = await propose(a, b, ["COVER"])
    assert [e["code"] for e in refused["errors"]] == ["PARTNER_REFUSED"]
    assert "LIMIT_REACHED" in refused["partnership"]["lastError"]
    assert len((await admin(b, LIST))["partnerships"]) == MAX_WAITING_PROPOSALS

    # An admin answers one: there is room again.
    async with b.session() as session:
        await session.execute(
            update(Partnership)
            .where(Partnership.base_url == "https://waiting-0.example")
            .values(status="REJECTED")
        )
        await session.commit()
    assert (await propose(a, b, ["COVER"]))["errors"] == []
    assert any(
        p["baseUrl"] == a.base_url and p["status"] == "PROPOSED"
        for p in (await admin(b, LIST))["partnerships"]
    )
