"""Tokens signed with the app's key but made by hand: claims `TokenService.issue` would
never write (wrong types, expired, too long-lived)."""

from __future__ import annotations

import datetime as dt
import uuid

import jwt

from api.auth import KeyPair


def signed(keys: KeyPair, **overrides: object) -> str:
    """Valid claims of a PA, member 1, for an hour, unless overridden (None drops one)."""
    now = dt.datetime.now(dt.UTC)
    claims: dict[str, object] = {
        "iss": "coopnet",
        "aud": "coopnet",
        "iat": int(now.timestamp()),
        "exp": int((now + dt.timedelta(hours=1)).timestamp()),
        "role": "PA",
        "sub": "1",
        "member": 1,
        "jti": str(uuid.uuid4()),
    }
    claims.update(overrides)
    claims = {k: v for k, v in claims.items() if v is not None}
    assert keys.private_pem is not None
    return jwt.encode(claims, keys.private_pem, algorithm="EdDSA")
