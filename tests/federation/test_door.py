"""The door for partner instances, tried for real: instance B (and strangers) call
instance A's /graphql over HTTP with signed requests (api/peers.py).

Every refusal the issue lists is sent as a real request and must come back as HTTP 401
(signature) or a FORBIDDEN field (partnership) with its reason, and leave an audit row on
A. Admitted calls get signed answers that B's client verifies."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import select

from care.enums import PartnershipDirection, PartnershipStatus
from care.models import FederationAudit, Partnership
from federation.client import (
    INSTANCE_HEADER,
    FederationClient,
    PartnerError,
    PartnerErrorCode,
)
from federation.identity import Identity, load_or_create_identity
from federation.signatures import sign_request
from tests.federation.instances import LOOPBACK_NETWORKS, Instance

PEER = "{ peerPartnership { proposalRef status grantedScopes suspendedBy } }"
MEMBERS_ONLY = "{ clusters(first: 1) { totalCount } }"


def identity_of(instance: Instance) -> Identity:
    return load_or_create_identity(instance.settings.federation_key_dir, None, [])


async def partner_on(
    host: Instance,
    guest: Instance,
    *,
    status: PartnershipStatus = PartnershipStatus.ACTIVE,
    scopes: tuple[str, ...] = ("AVAILABILITY",),
    keys: list[dict[str, str]] | None = None,
) -> int:
    """A partnership row on `host` for `guest`, with the guest's published keys."""
    jwks = keys if keys is not None else identity_of(guest).jwks()
    async with host.session() as session:
        row = Partnership(
            base_url=guest.base_url,
            graphql_endpoint=guest.graphql_url,
            proposal_ref=uuid.uuid4(),
            direction=PartnershipDirection.OUTGOING.value,
            status=status.value,
            requested_scopes=list(scopes),
            granted_scopes=list(scopes) if status is not PartnershipStatus.PROPOSED else [],
            suspended_by="US" if status is PartnershipStatus.SUSPENDED else None,
            protocol_version="coopnet-federation/1",
            keys=jwks,
        )
        session.add(row)
        await session.commit()
        return row.id


async def audit_reasons(instance: Instance) -> list[str]:
    async with instance.session() as session:
        return list(
            await session.scalars(select(FederationAudit.reason).order_by(FederationAudit.id))
        )


@pytest.fixture
async def client_b(peers: tuple[Instance, Instance]) -> AsyncIterator[FederationClient]:
    _, b = peers
    client = FederationClient(identity_of(b), b.base_url, private_networks=LOOPBACK_NETWORKS)
    yield client
    await client.aclose()


async def call(
    client: FederationClient, host: Instance, query: str, keys: list[dict[str, str]] | None = None
) -> dict[str, Any]:
    result = await client.call(
        host.graphql_url,
        keys if keys is not None else identity_of(host).jwks(),
        query,
        base_url=host.base_url,
    )
    return result.data


def signed(
    identity: Identity,
    url: str,
    body: dict[str, Any],
    *,
    instance: str | None = None,
    created: dt.datetime | None = None,
    expires: dt.datetime | None = None,
) -> httpx.Request:
    request = httpx.Request(
        "POST",
        url,
        content=orjson.dumps(body),
        headers={
            "Content-Type": "application/json",
            **({INSTANCE_HEADER: instance} if instance else {}),
        },
    )
    sign_request(request, identity, created=created, expires=expires)
    return request


async def send(request: httpx.Request) -> httpx.Response:
    async with httpx.AsyncClient(timeout=10) as http:
        return await http.send(request)


def refusal(response: httpx.Response) -> tuple[int, str, str]:
    error = response.json()["errors"][0]
    return response.status_code, error["extensions"]["code"], error["extensions"].get("reason", "")


# --- admitted -------------------------------------------------------------------------------


async def test_a_partner_is_admitted_and_its_answer_is_signed(
    peers: tuple[Instance, Instance], client_b: FederationClient
) -> None:
    a, b = peers
    await partner_on(a, b, scopes=("AVAILABILITY", "COVER"))
    data = await call(client_b, a, PEER)
    assert data["peerPartnership"]["status"] == "ACTIVE"
    assert data["peerPartnership"]["grantedScopes"] == ["AVAILABILITY", "COVER"]
    # The contact is noted on A's side; nothing was refused.
    async with a.session() as session:
        contact = await session.scalar(select(Partnership.last_contact_at))
    assert contact is not None
    assert await audit_reasons(a) == []


async def test_an_answer_that_does_not_verify_is_refused_by_the_caller(
    peers: tuple[Instance, Instance], client_b: FederationClient
) -> None:
    a, b = peers
    await partner_on(a, b)
    stranger = Ed25519PrivateKey.generate()
    wrong_keys = Identity(stranger).jwks()
    with pytest.raises(PartnerError) as failed:
        # Keys that are not A's, and no base URL to re-read A's manifest from.
        await client_b.call(a.graphql_url, wrong_keys, PEER)
    assert failed.value.code == PartnerErrorCode.BAD_RESPONSE_SIGNATURE
    assert failed.value.reason == "UNKNOWN_KEY"


async def test_a_verified_instance_without_partnership_may_only_use_the_handshake(
    peers: tuple[Instance, Instance], client_b: FederationClient
) -> None:
    a, _ = peers
    # No partnership row: A reads B's manifest (Coopnet-Instance) and admits B as an
    # instance, for the PEERS fields only.
    assert (await call(client_b, a, PEER))["peerPartnership"] is None
    with pytest.raises(PartnerError) as refused:
        await call(client_b, a, MEMBERS_ONLY)
    assert (refused.value.code, refused.value.reason) == (
        PartnerErrorCode.GRAPHQL_ERROR,
        "NOT_A_PARTNER",
    )
    assert await audit_reasons(a) == ["NOT_A_PARTNER"]


async def test_a_rotated_key_is_learnt_from_the_manifest_once(
    peers: tuple[Instance, Instance], client_b: FederationClient
) -> None:
    a, b = peers
    old = Identity(Ed25519PrivateKey.generate()).jwks()
    pid = await partner_on(a, b, keys=old)  # A holds a key B no longer uses
    assert (await call(client_b, a, PEER))["peerPartnership"]["status"] == "ACTIVE"
    async with a.session() as session:
        keys = await session.scalar(select(Partnership.keys).where(Partnership.id == pid))
    assert [k["kid"] for k in keys] == [identity_of(b).kid]
    # A key that is in no manifest of B's is refused, however often it is tried.
    forger = FederationClient(
        Identity(Ed25519PrivateKey.generate()), b.base_url, private_networks=LOOPBACK_NETWORKS
    )
    try:
        for _ in range(2):
            with pytest.raises(PartnerError) as refused:
                await call(forger, a, PEER)
            assert (refused.value.code, refused.value.reason) == ("REFUSED", "UNKNOWN_KEY")
    finally:
        await forger.aclose()
    assert await audit_reasons(a) == ["UNKNOWN_KEY", "UNKNOWN_KEY"]


# --- refused: the partnership ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "scopes", "query", "reason"),
    [
        (PartnershipStatus.SUSPENDED, ("AVAILABILITY",), MEMBERS_ONLY, "PARTNERSHIP_SUSPENDED"),
        (PartnershipStatus.ENDED, ("AVAILABILITY",), MEMBERS_ONLY, "PARTNERSHIP_ENDED"),
        (PartnershipStatus.ACTIVE, ("AVAILABILITY",), MEMBERS_ONLY, "OUT_OF_SCOPE"),
        (PartnershipStatus.PROPOSED, ("AVAILABILITY",), MEMBERS_ONLY, "NOT_A_PARTNER"),
    ],
)
async def test_the_partnership_decides_what_a_partner_may_ask(
    peers: tuple[Instance, Instance],
    client_b: FederationClient,
    status: PartnershipStatus,
    scopes: tuple[str, ...],
    query: str,
    reason: str,
) -> None:
    a, b = peers
    await partner_on(a, b, status=status, scopes=scopes)
    with pytest.raises(PartnerError) as refused:
        await call(client_b, a, query)
    assert (refused.value.code, refused.value.reason) == ("GRAPHQL_ERROR", reason)
    # The handshake field stays open: a suspended partner can still compare notes.
    assert (await call(client_b, a, PEER))["peerPartnership"]["status"] == status.value
    assert await audit_reasons(a) == [reason]


# --- refused: the signature -----------------------------------------------------------------


async def test_every_signature_refusal_over_http(peers: tuple[Instance, Instance]) -> None:
    a, b = peers
    await partner_on(a, b)
    me = identity_of(b)
    body = {"query": PEER}
    now = dt.datetime.now(dt.UTC)
    expected: list[str] = []

    async def refused(request: httpx.Request, reason: str) -> None:
        response = await send(request)
        assert refusal(response) == (401, "UNAUTHENTICATED", reason), response.text
        assert "signature" not in response.headers  # a refusal is not signed
        expected.append(reason)

    # No signature, though the request says it comes from an instance.
    await refused(
        httpx.Request(
            "POST",
            a.graphql_url,
            json=body,
            headers={INSTANCE_HEADER: b.base_url},
        ),
        "NO_SIGNATURE",
    )
    # A bad signature: one byte of it changed.
    request = signed(me, a.graphql_url, body)
    value = request.headers["signature"]
    flipped = value[: value.index(":") + 1] + ("A" if value[value.index(":") + 1] != "A" else "B")
    request.headers["signature"] = flipped + value[value.index(":") + 2 :]
    await refused(request, "BAD_SIGNATURE")
    # A changed body: signed, then altered on the way.
    request = signed(me, a.graphql_url, body)
    tampered = httpx.Request(
        "POST",
        a.graphql_url,
        content=orjson.dumps({"query": MEMBERS_ONLY}),
        headers={k: v for k, v in request.headers.items() if k.lower() != "content-length"},
    )
    await refused(tampered, "DIGEST_MISMATCH")
    # Expired, and dated in the future.
    await refused(
        signed(
            me,
            a.graphql_url,
            body,
            created=now - dt.timedelta(minutes=10),
            expires=now - dt.timedelta(minutes=5),
        ),
        "EXPIRED",
    )
    await refused(
        signed(me, a.graphql_url, body, created=now + dt.timedelta(minutes=2)), "NOT_YET_VALID"
    )
    # Signed for another instance's URL.
    await refused(_retarget(signed(me, b.graphql_url, body), a.graphql_url), "BAD_SIGNATURE")
    # A key nobody publishes.
    stranger = Identity(Ed25519PrivateKey.generate())
    await refused(signed(stranger, a.graphql_url, body, instance=b.base_url), "UNKNOWN_KEY")
    # A replayed request: admitted once, refused the second time.
    request = signed(me, a.graphql_url, body)
    first = await send(request)
    assert first.status_code == 200, first.text
    await refused(_copy(request), "REPLAYED_NONCE")
    assert await audit_reasons(a) == expected


def _copy(request: httpx.Request) -> httpx.Request:
    return httpx.Request(
        request.method, request.url, content=request.content, headers=dict(request.headers)
    )


def _retarget(request: httpx.Request, url: str) -> httpx.Request:
    """The same signed message sent to another URL than the one it was signed for."""
    return httpx.Request(
        request.method, url, content=request.content, headers=dict(request.headers)
    )


async def test_a_replay_is_refused_by_every_process_of_the_instance(
    peers: tuple[Instance, Instance], tmp_path: Path
) -> None:
    a, b = peers
    await partner_on(a, b)
    # A second process of A: same database, keys and public base URL, another port.
    second = Instance(
        name="a-second",
        database_url=a.database_url,
        data_dir=a.data_dir,
        env={"PUBLIC_BASE_URL": a.base_url},
    )
    second.start()
    try:
        request = signed(identity_of(b), a.graphql_url, {"query": PEER})
        assert (await send(request)).status_code == 200
        replay = httpx.Request(
            "POST", second.graphql_url, content=request.content, headers=dict(request.headers)
        )
        response = await send(replay)
        assert refusal(response) == (401, "UNAUTHENTICATED", "REPLAYED_NONCE")
    finally:
        second.stop()


async def test_a_request_is_signed_or_bearer_never_both(peers: tuple[Instance, Instance]) -> None:
    a, b = peers
    await partner_on(a, b)
    request = signed(identity_of(b), a.graphql_url, {"query": PEER})
    request.headers["Authorization"] = "Bearer " + a.token("ADMIN")
    response = await send(request)
    assert refusal(response)[:2] == (400, "BAD_REQUEST")


async def test_members_and_anonymous_callers_cannot_reach_partner_fields(
    peers: tuple[Instance, Instance],
) -> None:
    a, _ = peers
    anonymous = (await a.graphql(PEER)).json()
    assert anonymous["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    admin = (await a.graphql(PEER, token=a.token("ADMIN"))).json()
    assert admin["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    assert (admin.get("data") or {}).get("peerPartnership") is None
