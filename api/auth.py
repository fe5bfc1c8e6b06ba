"""Bearer tokens: EdDSA (Ed25519) JWTs signed with the instance's key.

The key pair is generated under the data directory on first start unless key files are
configured (production). Tokens carry the role, the member they speak for, and for an LA
analyst the local authority they are bound to.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from pathlib import Path

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from api.settings import Settings
from care.enums import Role
from care.viewer import ANONYMOUS, Viewer

ALGORITHM = "EdDSA"


class AuthError(Exception):
    """A token was sent but cannot be trusted (malformed, bad signature, expired...)."""


@dataclass(frozen=True)
class KeyPair:
    private_pem: bytes | None
    public_pem: bytes


def generate_key_pair() -> KeyPair:
    key = Ed25519PrivateKey.generate()
    private_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return KeyPair(private_pem, public_pem)


def load_or_create_keys(settings: Settings) -> KeyPair:
    if settings.jwt_private_key_file or settings.jwt_public_key_file:
        private = (
            settings.jwt_private_key_file.read_bytes() if settings.jwt_private_key_file else None
        )
        if settings.jwt_public_key_file:
            public = settings.jwt_public_key_file.read_bytes()
        elif private is not None:
            key = serialization.load_pem_private_key(private, password=None)
            public = key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        else:  # pragma: no cover - settings validation
            raise RuntimeError("JWT_PUBLIC_KEY_FILE or JWT_PRIVATE_KEY_FILE is required")
        return KeyPair(private, public)
    key_dir = Path(settings.data_dir) / "keys"
    private_path = key_dir / "jwt-ed25519.pem"
    public_path = key_dir / "jwt-ed25519.pub.pem"
    if not private_path.exists():
        key_dir.mkdir(parents=True, exist_ok=True)
        pair = generate_key_pair()
        assert pair.private_pem is not None
        fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(pair.private_pem)
        public_path.write_bytes(pair.public_pem)
        return pair
    return KeyPair(private_path.read_bytes(), public_path.read_bytes())


class TokenService:
    def __init__(self, keys: KeyPair, issuer: str, audience: str, ttl_seconds: int) -> None:
        self.keys = keys
        self.issuer = issuer
        self.audience = audience
        self.ttl = dt.timedelta(seconds=ttl_seconds)

    def issue(
        self,
        role: Role,
        member_id: int | None = None,
        la_code: str | None = None,
        ttl: dt.timedelta | None = None,
    ) -> str:
        if self.keys.private_pem is None:
            raise RuntimeError("This instance has no private key to sign tokens with.")
        now = dt.datetime.now(dt.UTC)
        claims: dict[str, object] = {
            "iss": self.issuer,
            "aud": self.audience,
            "iat": now,
            "exp": now + (ttl if ttl is not None else self.ttl),
            "role": role.value,
            "sub": str(member_id) if member_id is not None else f"role:{role.value}",
        }
        if member_id is not None:
            claims["member"] = member_id
        if la_code is not None:
            claims["la"] = la_code
        return jwt.encode(claims, self.keys.private_pem, algorithm=ALGORITHM)

    def viewer_from_header(self, authorization: str | None) -> Viewer:
        if not authorization:
            return ANONYMOUS
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise AuthError("Use 'Authorization: Bearer <token>'.")
        return self.verify(token.strip())

    def verify(self, token: str) -> Viewer:
        try:
            claims = jwt.decode(
                token,
                self.keys.public_pem,
                algorithms=[ALGORITHM],
                issuer=self.issuer,
                audience=self.audience,
                options={"require": ["exp", "iat", "iss", "aud", "role"]},
            )
        except jwt.ExpiredSignatureError as exc:
            raise AuthError("The token has expired.") from exc
        except jwt.PyJWTError as exc:
            raise AuthError("The token is not valid for this service.") from exc
        try:
            role = Role(claims["role"])
        except ValueError as exc:
            raise AuthError("The token names an unknown role.") from exc
        member = claims.get("member")
        la = claims.get("la")
        if role is not Role.ADMIN and role is not Role.LA_ANALYST and not isinstance(member, int):
            raise AuthError("The token names no member.")
        if role is Role.LA_ANALYST and not isinstance(la, str):
            raise AuthError("An LA analyst token must name a local authority.")
        return Viewer(
            role=role,
            member_id=member if isinstance(member, int) else None,
            la_code=la if isinstance(la, str) else None,
        )
