"""The instance's identity towards other instances: Ed25519 keys for server-to-server
signatures (RFC 9421), separate from the key that signs bearer tokens (api/auth.py).

Where the keys come from (docs/federation.md, "Keys and rotation"):

- the current private key: `FEDERATION_KEY_FILE` when configured, else
  `<key_dir>/current.pem` (`key_dir` is `DATA_DIR/keys/federation`), created with mode
  0600 on first start;
- previous public keys, still published and trusted by partners during a changeover:
  the files listed in `FEDERATION_PREVIOUS_KEY_FILES`, and every `*.pem` under
  `<key_dir>/previous/` (public or private PEM; only the public half is used).

Every key is named by its `kid`, the RFC 7638 JWK thumbprint (SHA-256, base64url), so a
kid is the same wherever it is computed and needs no registry.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

CURRENT = "current.pem"
PREVIOUS = "previous"


class IdentityError(RuntimeError):
    """A configured key file is missing or is not an Ed25519 key."""


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def raw_public(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def thumbprint(key: Ed25519PublicKey) -> str:
    """RFC 7638: SHA-256 over the required members in lexicographic order, no spaces."""
    members = {"crv": "Ed25519", "kty": "OKP", "x": b64url(raw_public(key))}
    canonical = json.dumps(members, separators=(",", ":"), sort_keys=True).encode("ascii")
    return b64url(hashlib.sha256(canonical).digest())


def public_jwk(key: Ed25519PublicKey) -> dict[str, str]:
    return {
        "kty": "OKP",
        "crv": "Ed25519",
        "x": b64url(raw_public(key)),
        "kid": thumbprint(key),
        "use": "sig",
        "alg": "EdDSA",
    }


def key_from_jwk(jwk: dict[str, object]) -> Ed25519PublicKey | None:
    """A partner's published key, or None when the JWK is not an Ed25519 signing key or
    its `kid` is not its thumbprint (a kid must name exactly one key)."""
    if jwk.get("kty") != "OKP" or jwk.get("crv") != "Ed25519":
        return None
    x = jwk.get("x")
    if not isinstance(x, str):
        return None
    try:
        raw = b64url_decode(x)
        key = Ed25519PublicKey.from_public_bytes(raw)
    except ValueError:
        return None
    if jwk.get("kid") != thumbprint(key):
        return None
    return key


@dataclass(frozen=True)
class Identity:
    """The current signing key and every public key this instance publishes."""

    private_key: Ed25519PrivateKey
    previous: tuple[Ed25519PublicKey, ...] = field(default=())

    @property
    def public_key(self) -> Ed25519PublicKey:
        return self.private_key.public_key()

    @property
    def kid(self) -> str:
        return thumbprint(self.public_key)

    def public_keys(self) -> list[Ed25519PublicKey]:
        """Current first, then previous keys, without duplicates."""
        seen = {self.kid}
        keys = [self.public_key]
        for key in self.previous:
            kid = thumbprint(key)
            if kid not in seen:
                seen.add(kid)
                keys.append(key)
        return keys

    def jwks(self) -> list[dict[str, str]]:
        return [public_jwk(k) for k in self.public_keys()]


def _load_private(path: Path) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise IdentityError(f"Cannot read the federation key {path}: {exc}") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise IdentityError(f"The federation key {path} is not an Ed25519 private key.")
    return key


def _load_public(path: Path) -> Ed25519PublicKey:
    """A previous key: a public PEM, or a private one whose public half is taken."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise IdentityError(f"Cannot read the previous federation key {path}: {exc}") from exc
    if b"PRIVATE KEY" in data:
        return _load_private(path).public_key()
    try:
        key = serialization.load_pem_public_key(data)
    except ValueError as exc:
        raise IdentityError(f"Cannot read the previous federation key {path}: {exc}") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise IdentityError(f"The previous federation key {path} is not an Ed25519 key.")
    return key


def _write_private(path: Path, key: Ed25519PrivateKey) -> None:
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    # O_EXCL: two processes starting at once must not both write (one wins, the other
    # reads the winner's key below).
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)


def public_pem(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def load_or_create_identity(
    key_dir: Path,
    key_file: Path | None = None,
    previous_files: Sequence[Path] = (),
) -> Identity:
    """The instance's identity; a new current key under `key_dir` on first start unless
    `key_file` is configured (then it must exist: a typo must not mint a new identity)."""
    if key_file is not None:
        private = _load_private(key_file)
    else:
        current = key_dir / CURRENT
        if not current.exists():
            key_dir.mkdir(parents=True, exist_ok=True)
            try:
                _write_private(current, Ed25519PrivateKey.generate())
            except FileExistsError:
                pass  # another process created it first: use theirs
        private = _load_private(current)
    previous = [_load_public(p) for p in previous_files]
    previous_dir = key_dir / PREVIOUS
    if previous_dir.is_dir():
        previous += [_load_public(p) for p in sorted(previous_dir.glob("*.pem"))]
    return Identity(private, tuple(previous))


def rotate(key_dir: Path) -> Identity:
    """Start a changeover in the default key directory: the current key's public half
    moves to `previous/<kid>.pub.pem` (still published, still trusted by partners) and a
    new current key is created. Restart the instance(s) afterwards; remove the previous
    file once every partner has re-read the manifest (docs/federation.md)."""
    current = key_dir / CURRENT
    old = _load_private(current)
    previous_dir = key_dir / PREVIOUS
    previous_dir.mkdir(parents=True, exist_ok=True)
    (previous_dir / f"{thumbprint(old.public_key())}.pub.pem").write_bytes(
        public_pem(old.public_key())
    )
    current.unlink()
    return load_or_create_identity(key_dir)
