"""docs/federation.md's example request is what `sign_request` makes: the spec and the
code cannot drift apart (Ed25519 signatures are deterministic)."""

from __future__ import annotations

import datetime as dt

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from federation.identity import Identity, public_jwk
from federation.signatures import sign_request
from tests.conftest import ROOT


def test_the_documented_example_is_reproduced() -> None:
    spec = (ROOT / "docs" / "federation.md").read_text()
    identity = Identity(Ed25519PrivateKey.from_private_bytes(bytes(range(32))))
    jwk = public_jwk(identity.public_key)
    assert f'"x": "{jwk["x"]}"' in spec and f'"kid": "{jwk["kid"]}"' in spec

    request = httpx.Request(
        "POST",
        "https://care.neighbour.example/graphql",
        headers={"Content-Type": "application/json"},
        content=b'{"query":"{ coop { name } }"}',
    )
    sign_request(
        request,
        identity,
        created=dt.datetime.fromtimestamp(1795000000, dt.UTC),
        nonce="bm9uY2UtZXhhbXBsZS0wMDAx",
    )
    for name in ("Content-Digest", "Signature-Input", "Signature"):
        assert f"{name}: {request.headers[name]}\n" in spec, name
