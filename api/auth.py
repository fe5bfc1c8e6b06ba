"""Bearer tokens: EdDSA (Ed25519) JWTs signed with the instance's key.

The key pair is generated under the data directory on first start of the server unless key
files are configured (production); the CLI never creates one (`load_keys`). Tokens carry
the role, the member they speak for, for an LA analyst the local authority they are bound
to, and a `jti` by which one token can be revoked. Every claim is checked for its exact
type and meaning (`TokenService.verify`); whether a verified token is still in force
(not revoked, its member active) is a database question (`care.tokens`), asked by the app
on every request and live event.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import uuid
from collections import OrderedDict
from dataclasses import dataclass, replace
from pathlib import Path

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from api.settings import Settings
from care.enums import Role
from care.tokens import TokenRef, max_ttl
from care.viewer import Viewer

ALGORITHM = "EdDSA"

MEMBER_ROLES = frozenset({Role.COORDINATOR, Role.PA, Role.SERVICE_USER, Role.CARER})
MAX_BIGINT = 2**63 - 1
VERIFIED_CACHE_SIZE = 10_000
GSS = re.compile(r"E(06|08|09|10)[0-9]{6}")  # fullmatch: `$` would allow a final newline
ROLES = frozenset(r.value for r in Role)
CLAIMS = frozenset({"iss", "aud", "iat", "exp", "role", "sub", "member", "la", "jti"})


class AuthError(Exception):
    """A token was sent but cannot be trusted (malformed, bad signature, expired...)."""


REVOKED = "The token has been revoked, or its member is no longer active."


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


class MissingKeyError(RuntimeError):
    """No signing key where the configuration points (the CLI does not create one)."""


def key_paths(settings: Settings) -> tuple[Path, Path]:
    key_dir = Path(settings.data_dir).resolve() / "keys"
    return key_dir / "jwt-ed25519.pem", key_dir / "jwt-ed25519.pub.pem"


def load_keys(settings: Settings) -> KeyPair:
    """The instance's keys, never a new pair: a command run from the wrong directory must
    not sign with a key the server does not know."""
    if settings.jwt_private_key_file or settings.jwt_public_key_file:
        return load_or_create_keys(settings)
    private_path, _ = key_paths(settings)
    if not private_path.exists():
        raise MissingKeyError(
            f"No signing key at {private_path} (DATA_DIR={settings.data_dir}, resolved "
            f"from {Path.cwd()}). Run this command where `coopnet serve` runs, or set "
            "DATA_DIR (or JWT_PRIVATE_KEY_FILE) to the server's."
        )
    return load_or_create_keys(settings)


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
    private_path, public_path = key_paths(settings)
    key_dir = private_path.parent
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


@dataclass(frozen=True)
class Verified:
    """A token whose signature and claims are good; `ref` is what the in-force check
    (`care.tokens.in_force`) needs."""

    viewer: Viewer
    ref: TokenRef


@dataclass(frozen=True)
class Issued:
    token: str
    ref: TokenRef


def _is_number(value: object) -> bool:
    # bool is an int in Python: `true` must not pass as a number or an id.
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_member_id(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 < value <= MAX_BIGINT


def _subject(role: Role, member_id: int | None) -> str:
    return str(member_id) if member_id is not None else f"role:{role.value}"


def check_subject(role: Role, member_id: int | None, la_code: str | None) -> str | None:
    """Why these claims do not make a token, or None when they do."""
    if member_id is not None and not _is_member_id(member_id):
        return "The token names an invalid member."
    if role in MEMBER_ROLES and member_id is None:
        return "The token names no member."
    if role is Role.LA_ANALYST:
        if member_id is not None:
            return "An LA analyst token names no member."
        if not isinstance(la_code, str) or not GSS.fullmatch(la_code):
            return "An LA analyst token must name a local authority (a GSS code)."
    elif la_code is not None:
        return "Only an LA analyst token names a local authority."
    return None


class TokenService:
    def __init__(self, keys: KeyPair, issuer: str, audience: str, ttl_seconds: int) -> None:
        self.keys = keys
        self.issuer = issuer
        self.audience = audience
        self.ttl = dt.timedelta(seconds=ttl_seconds)
        # Tokens already verified, by their exact text: a client sends the same token with
        # every request, and checking an Ed25519 signature and every claim again costs
        # more than the rest of a compiled read. Only the expiry changes with time.
        self._verified: OrderedDict[str, Verified] = OrderedDict()

    def mint(
        self,
        role: Role,
        member_id: int | None = None,
        la_code: str | None = None,
        ttl: dt.timedelta | None = None,
    ) -> Issued:
        """A signed token and its reference. A ttl outside (0, max_ttl(role)] is refused;
        without one, the configured lifetime (capped for the role)."""
        if self.keys.private_pem is None:
            raise RuntimeError("This instance has no private key to sign tokens with.")
        problem = check_subject(role, member_id, la_code)
        if problem:
            raise ValueError(problem)
        lifetime = ttl if ttl is not None else min(self.ttl, max_ttl(role))
        if not dt.timedelta(0) < lifetime <= max_ttl(role):
            raise ValueError(
                f"A {role.value} token lives more than 0s and at most "
                f"{int(max_ttl(role).total_seconds())}s."
            )
        now = dt.datetime.now(dt.UTC)
        expires = now + lifetime
        jti = uuid.uuid4()
        claims: dict[str, object] = {
            "iss": self.issuer,
            "aud": self.audience,
            # Microseconds: "revoke all of a member's tokens" compares against this.
            "iat": now.timestamp(),
            "exp": int(expires.timestamp()),
            "role": role.value,
            "sub": _subject(role, member_id),
            "jti": str(jti),
        }
        if member_id is not None:
            claims["member"] = member_id
        if la_code is not None:
            claims["la"] = la_code
        token = jwt.encode(claims, self.keys.private_pem, algorithm=ALGORITHM)
        expires_at = dt.datetime.fromtimestamp(int(expires.timestamp()), dt.UTC)
        return Issued(token, TokenRef(jti, member_id, now, expires_at))

    def issue(
        self,
        role: Role,
        member_id: int | None = None,
        la_code: str | None = None,
        ttl: dt.timedelta | None = None,
    ) -> str:
        return self.mint(role, member_id, la_code, ttl).token

    def from_header(self, authorization: str | None) -> Verified | None:
        """None when no token is sent (anonymous)."""
        if not authorization:
            return None
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise AuthError("Use 'Authorization: Bearer <token>'.")
        return self.verify(token.strip())

    def verify(self, token: str) -> Verified:
        """Signature, issuer, audience, lifetime and every claim's type and meaning.
        Whether the token is still in force is asked of the database separately."""
        known = self._verified.get(token)
        if known is not None:
            now = dt.datetime.now(dt.UTC)
            if known.ref.expires_at <= now:  # as PyJWT: expired from `exp` on
                del self._verified[token]
                raise AuthError("The token has expired.")
            self._verified.move_to_end(token)
            return Verified(replace(known.viewer, now=now), known.ref)
        verified = self._verify(token)
        self._verified[token] = verified
        if len(self._verified) > VERIFIED_CACHE_SIZE:
            self._verified.popitem(last=False)
        return verified

    def _verify(self, token: str) -> Verified:
        try:
            claims = jwt.decode(
                token,
                self.keys.public_pem,
                algorithms=[ALGORITHM],
                issuer=self.issuer,
                audience=self.audience,
                options={"require": ["exp", "iat", "iss", "aud", "role", "sub", "jti"]},
            )
        except jwt.ExpiredSignatureError as exc:
            raise AuthError("The token has expired.") from exc
        except (jwt.PyJWTError, OverflowError, ValueError, TypeError) as exc:
            # (PyJWT's own checks let an infinite or huge `exp` through as OverflowError.)
            raise AuthError("The token is not valid for this service.") from exc
        return _claims(claims)


def _claims(claims: dict[str, object]) -> Verified:
    def bad(why: str) -> AuthError:
        return AuthError(f"The token is not valid for this service: {why}")

    if not set(claims) <= CLAIMS:
        raise bad("unexpected claims.")
    if not isinstance(claims["aud"], str) or not isinstance(claims["iss"], str):
        raise bad("issuer and audience must be strings.")
    iat, exp = claims["iat"], claims["exp"]
    if not _is_number(iat) or not _is_number(exp):
        raise bad("iat and exp must be numbers.")
    assert isinstance(iat, int | float) and isinstance(exp, int | float)
    raw_role = claims["role"]
    if not isinstance(raw_role, str) or raw_role not in ROLES:
        raise AuthError("The token names an unknown role.")
    role = Role(raw_role)
    member, la = claims.get("member"), claims.get("la")
    if member is not None and not _is_member_id(member):
        raise bad("member must be a positive integer id.")
    assert member is None or isinstance(member, int)
    if la is not None and not isinstance(la, str):
        raise bad("la must be a string.")
    assert la is None or isinstance(la, str)
    problem = check_subject(role, member, la)
    if problem:
        raise AuthError(problem)
    if claims["sub"] != _subject(role, member):
        raise bad("sub does not match.")
    raw_jti = claims["jti"]
    try:
        if not isinstance(raw_jti, str):
            raise ValueError
        jti = uuid.UUID(raw_jti)
        if str(jti) != raw_jti:
            raise ValueError
    except ValueError as exc:
        raise bad("jti must be a UUID.") from exc
    try:
        issued_at = dt.datetime.fromtimestamp(iat, dt.UTC)
        expires_at = dt.datetime.fromtimestamp(exp, dt.UTC)
    except (OverflowError, OSError, ValueError) as exc:
        raise bad("iat or exp is out of range.") from exc
    if not dt.timedelta(0) < expires_at - issued_at <= max_ttl(role) + dt.timedelta(seconds=1):
        raise bad("the token lives longer than this service allows.")
    viewer = Viewer(role=role, member_id=member, la_code=la)
    return Verified(viewer, TokenRef(jti, member, issued_at, expires_at))
