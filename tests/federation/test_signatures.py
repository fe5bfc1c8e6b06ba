"""The signature profile (federation/signatures.py), tried for real: requests signed
with `sign_request` are sent with httpx to a small partner app built here (Starlette,
through httpx's ASGI transport) that verifies them with `verify_request`, claims nonces
in the test database and signs its answers, which the client checks with
`verify_response`. Every refusal reason is provoked by really changing the message.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from api.db import create_engine, session_factory
from care.enums import SignatureRefusal
from care.models import FederationAudit, FederationNonce
from federation.identity import Identity, key_from_jwk, load_or_create_identity, rotate
from federation.signatures import (
    CLOCK_SKEW,
    LABEL,
    MAX_LIFETIME,
    NonceStore,
    SignatureRefused,
    content_digest,
    sign_request,
    sign_response,
    verify_request,
    verify_response,
)

BASE = "https://partner.example.coop"
URL = f"{BASE}/graphql"
BODY = {"query": "{ coop { name } }", "variables": {"secret": "not in the audit"}}


def _resolver(*identities: Identity) -> Any:
    """Keys as a partner learns them: from the published JWKs."""
    keys: dict[str, Ed25519PublicKey] = {}
    for identity in identities:
        for jwk in identity.jwks():
            key = key_from_jwk(jwk)
            assert key is not None
            keys[jwk["kid"]] = key

    async def resolve(kid: str) -> Ed25519PublicKey | None:
        return keys.get(kid)

    return resolve


def partner_app(
    sessions: async_sessionmaker[AsyncSession], server: Identity, *trusted: Identity
) -> Starlette:
    """A stand-in for a partner's GraphQL endpoint: verify, answer, sign the answer."""
    nonces = NonceStore(sessions)
    resolve = _resolver(*trusted)

    async def endpoint(request: Request) -> JSONResponse:
        try:
            verified = await verify_request(
                request, resolve_key=resolve, nonces=nonces, base_url=BASE
            )
        except SignatureRefused as refused:
            return JSONResponse({"refused": refused.reason.value}, status_code=401)
        response = JSONResponse({"data": {"keyid": verified.keyid}})
        sign_response(response, request, verified, server, base_url=BASE)
        return response

    return Starlette(routes=[Route("/graphql", endpoint, methods=["POST"])])


@pytest.fixture
def keys(tmp_path: Path) -> dict[str, Identity]:
    return {
        name: load_or_create_identity(tmp_path / name) for name in ("us", "partner", "stranger")
    }


@pytest.fixture
def sessions(app: Any) -> async_sessionmaker[AsyncSession]:
    # `app` empties every table after the test (nonces and audit rows included).
    return session_factory(app.state.engine)


@pytest.fixture
async def partner(
    sessions: async_sessionmaker[AsyncSession], keys: dict[str, Identity]
) -> AsyncIterator[httpx.AsyncClient]:
    app = partner_app(sessions, keys["partner"], keys["us"])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app)) as client:
        yield client


def _request(client: httpx.AsyncClient, body: Any = BODY, url: str = URL) -> httpx.Request:
    return client.build_request("POST", url, json=body)


def _resend(request: httpx.Request, content: bytes) -> httpx.Request:
    """The same headers (signature included) with another body."""
    headers = {k: v for k, v in request.headers.items() if k != "content-length"}
    return httpx.Request(request.method, request.url, headers=headers, content=content)


async def _refusal(client: httpx.AsyncClient, request: httpx.Request) -> str:
    response = await client.send(request)
    assert response.status_code == 401, response.text
    reason: str = response.json()["refused"]
    return reason


async def _audit(sessions: async_sessionmaker[AsyncSession]) -> list[Any]:
    async with sessions() as s:
        return list(
            (await s.execute(select(FederationAudit).order_by(FederationAudit.id))).scalars()
        )


async def test_signed_request_is_accepted_and_its_signed_answer_verifies(
    partner: httpx.AsyncClient, keys: dict[str, Identity], sessions: Any
) -> None:
    request = _request(partner)
    sign_request(request, keys["us"])
    sig_input = request.headers["signature-input"]
    assert sig_input.startswith(
        f'{LABEL}=("@method" "@target-uri" "content-digest" "content-type");created='
    )
    for param in ("keyid=", "nonce=", "expires=", 'alg="ed25519"', 'tag="coopnet-federation/1"'):
        assert param in sig_input
    assert request.headers["content-digest"] == content_digest(request.content)

    response = await partner.send(request)
    assert response.status_code == 200, response.text
    assert response.json() == {"data": {"keyid": keys["us"].kid}}
    verified = await verify_response(response, resolve_key=_resolver(keys["partner"]))
    assert verified.keyid == keys["partner"].kid
    assert '"signature";req;key="coopnet"' in response.headers["signature-input"]
    # The nonce is kept until the signature could no longer be accepted.
    async with sessions() as s:
        (row,) = (await s.execute(select(FederationNonce))).scalars()
    assert row.keyid == keys["us"].kid
    assert row.expires_at >= verified.created  # (the request's created is near)
    assert await _audit(sessions) == []


async def test_a_changed_body_is_a_digest_mismatch(
    partner: httpx.AsyncClient, keys: dict[str, Identity], sessions: Any
) -> None:
    request = _request(partner)
    sign_request(request, keys["us"])
    changed = json.dumps({"query": "mutation { endPartnership }"}).encode()
    assert await _refusal(partner, _resend(request, changed)) == "DIGEST_MISMATCH"
    # A new digest for the new body breaks the signature instead.
    forged = _resend(request, changed)
    forged.headers["content-digest"] = content_digest(changed)
    assert await _refusal(partner, forged) == "BAD_SIGNATURE"


async def test_a_changed_signature_or_target_is_a_bad_signature(
    partner: httpx.AsyncClient, keys: dict[str, Identity]
) -> None:
    request = _request(partner)
    sign_request(request, keys["us"])
    label, value = request.headers["signature"].split("=", 1)
    flipped = value[:5] + ("A" if value[5] != "A" else "B") + value[6:]
    request.headers["signature"] = f"{label}={flipped}"
    assert await _refusal(partner, request) == "BAD_SIGNATURE"

    # Signed for another instance's URL, sent to this one: the target URI differs.
    elsewhere = _request(partner, url="https://elsewhere.example.coop/graphql")
    sign_request(elsewhere, keys["us"])
    moved = httpx.Request(
        "POST", URL, headers=dict(elsewhere.headers.items()), content=elsewhere.content
    )
    assert await _refusal(partner, moved) == "BAD_SIGNATURE"


async def test_times_are_checked(partner: httpx.AsyncClient, keys: dict[str, Identity]) -> None:
    now = dt.datetime.now(dt.UTC)
    cases = {
        "NOT_YET_VALID": (now + CLOCK_SKEW + dt.timedelta(minutes=1), None),
        "EXPIRED": (
            now - CLOCK_SKEW - dt.timedelta(minutes=5),
            now - CLOCK_SKEW - dt.timedelta(minutes=1),
        ),
        "EXPIRES_TOO_LATE": (now, now + MAX_LIFETIME + dt.timedelta(seconds=1)),
    }
    for reason, (created, expires) in cases.items():
        request = _request(partner)
        sign_request(request, keys["us"], created=created, expires=expires)
        assert await _refusal(partner, request) == reason
    # Within the skew is fine: a partner's clock a little ahead.
    request = _request(partner)
    sign_request(request, keys["us"], created=now + dt.timedelta(seconds=10))
    assert (await partner.send(request)).status_code == 200


async def test_unknown_key_missing_component_and_no_signature(
    partner: httpx.AsyncClient, keys: dict[str, Identity]
) -> None:
    request = _request(partner)
    sign_request(request, keys["stranger"])
    assert await _refusal(partner, request) == "UNKNOWN_KEY"

    request = _request(partner)
    sign_request(request, keys["us"], components=("@method", "@target-uri", "content-digest"))
    assert await _refusal(partner, request) == "MISSING_COMPONENT"

    assert await _refusal(partner, _request(partner)) == "NO_SIGNATURE"


async def test_a_replayed_nonce_is_refused_by_another_process_on_the_same_database(
    partner: httpx.AsyncClient,
    keys: dict[str, Identity],
    sessions: async_sessionmaker[AsyncSession],
    migrated_url: str,
) -> None:
    request = _request(partner)
    sign_request(request, keys["us"])
    assert (await partner.send(request)).status_code == 200
    # The same signed request again, to the same instance and to a second one with its
    # own engine (as another process would have) on the same database.
    assert await _refusal(partner, request) == "REPLAYED_NONCE"
    engine = create_engine(migrated_url, pool_size=1)
    try:
        other = partner_app(session_factory(engine), keys["partner"], keys["us"])
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=other)) as second:
            assert await _refusal(second, request) == "REPLAYED_NONCE"
            # A fresh nonce passes there.
            fresh = _request(second)
            sign_request(fresh, keys["us"])
            assert (await second.send(fresh)).status_code == 200
    finally:
        await engine.dispose()


async def test_every_refusal_is_audited_without_the_body(
    partner: httpx.AsyncClient, keys: dict[str, Identity], sessions: Any
) -> None:
    assert await _refusal(partner, _request(partner)) == "NO_SIGNATURE"
    request = _request(partner)
    sign_request(request, keys["stranger"])
    assert await _refusal(partner, request) == "UNKNOWN_KEY"
    rows = await _audit(sessions)
    assert [(r.reason, r.keyid, r.method, r.path) for r in rows] == [
        ("NO_SIGNATURE", None, "POST", "/graphql"),
        ("UNKNOWN_KEY", keys["stranger"].kid, "POST", "/graphql"),
    ]
    assert rows[0].remote_addr == "127.0.0.1"
    async with sessions() as s:
        dump = (await s.execute(text("SELECT row_to_json(a)::text FROM federation_audit a"))).all()
    assert not any("not in the audit" in r[0] for r in dump)
    assert {r.value for r in SignatureRefusal} >= {r.reason for r in rows}


async def test_expired_nonces_are_pruned(
    partner: httpx.AsyncClient, keys: dict[str, Identity], sessions: Any
) -> None:
    async with sessions() as s:
        s.add(
            FederationNonce(
                keyid="old", nonce="x" * 32, expires_at=dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
            )
        )
        await s.commit()
    request = _request(partner)
    sign_request(request, keys["us"])
    assert (await partner.send(request)).status_code == 200
    async with sessions() as s:
        kept = [r.keyid for r in (await s.execute(select(FederationNonce))).scalars()]
    assert kept == [keys["us"].kid]


async def test_responses_are_checked(partner: httpx.AsyncClient, keys: dict[str, Identity]) -> None:
    request = _request(partner)
    sign_request(request, keys["us"])
    response = await partner.send(request)
    partner_key = _resolver(keys["partner"])

    changed = httpx.Response(
        response.status_code, headers=response.headers, content=b'{"data":{}}', request=request
    )
    with pytest.raises(SignatureRefused) as refused:
        await verify_response(changed, resolve_key=partner_key)
    assert refused.value.reason is SignatureRefusal.DIGEST_MISMATCH

    # The same answer presented as the answer to another request does not verify.
    other = _request(partner)
    sign_request(other, keys["us"])
    replayed = httpx.Response(
        response.status_code, headers=response.headers, content=response.content, request=other
    )
    with pytest.raises(SignatureRefused) as refused:
        await verify_response(replayed, resolve_key=partner_key)
    assert refused.value.reason is SignatureRefusal.BAD_SIGNATURE

    with pytest.raises(SignatureRefused) as refused:
        await verify_response(response, resolve_key=_resolver(keys["stranger"]))
    assert refused.value.reason is SignatureRefusal.UNKNOWN_KEY

    unsigned = httpx.Response(200, json={"data": {}}, request=request)
    with pytest.raises(SignatureRefused) as refused:
        await verify_response(unsigned, resolve_key=partner_key)
    assert refused.value.reason is SignatureRefusal.NO_SIGNATURE


async def test_during_a_rotation_both_keys_verify(
    sessions: async_sessionmaker[AsyncSession], keys: dict[str, Identity], tmp_path: Path
) -> None:
    old = keys["us"]
    new = rotate(tmp_path / "us")
    assert [k["kid"] for k in new.jwks()] == [new.kid, old.kid]
    # The partner learnt our keys from the rotated manifest: both are trusted.
    app = partner_app(sessions, keys["partner"], new)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app)) as client:
        for identity in (old, new):
            request = _request(client)
            sign_request(request, identity)
            response = await client.send(request)
            assert response.json() == {"data": {"keyid": identity.kid}}


async def test_the_receiver_uses_its_public_base_url_not_the_host_it_sees(
    partner: httpx.AsyncClient, keys: dict[str, Identity]
) -> None:
    """Behind a proxy the server sees another scheme and host: the signed target URI is
    the public one, with the path and query as sent."""
    signed_for = f"{URL}?op=sync&cursor=a%2Fb"
    request = _request(partner, url=signed_for)
    sign_request(request, keys["us"])
    via_proxy = httpx.Request(
        "POST",
        "http://10.0.0.5:8000/graphql?op=sync&cursor=a%2Fb",
        headers=dict(request.headers.items()),
        content=request.content,
    )
    assert (await partner.send(via_proxy)).status_code == 200
    # A different query is a different target.
    request = _request(partner, url=signed_for)
    sign_request(request, keys["us"])
    other = httpx.Request(
        "POST",
        f"{URL}?op=sync&cursor=zzz",
        headers=dict(request.headers.items()),
        content=request.content,
    )
    assert await _refusal(partner, other) == "BAD_SIGNATURE"


async def test_a_nonce_sent_to_two_processes_at_once_is_accepted_once(
    keys: dict[str, Identity], sessions: async_sessionmaker[AsyncSession], migrated_url: str
) -> None:
    engine = create_engine(migrated_url, pool_size=2)
    try:
        apps = [
            partner_app(sessions, keys["partner"], keys["us"]),
            partner_app(session_factory(engine), keys["partner"], keys["us"]),
        ]
        clients = [httpx.AsyncClient(transport=httpx.ASGITransport(app=a)) for a in apps]
        for _ in range(5):
            request = _request(clients[0])
            sign_request(request, keys["us"])
            responses = await asyncio.gather(*(c.send(request) for c in clients))
            assert sorted(r.status_code for r in responses) == [200, 401]
        for c in clients:
            await c.aclose()
    finally:
        await engine.dispose()
