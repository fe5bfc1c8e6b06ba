"""The signature profile between instances: RFC 9421 HTTP Message Signatures with
Ed25519, over an RFC 9530 `Content-Digest` (docs/federation.md, "Signatures").

A request covers `@method`, `@target-uri`, `content-digest` and `content-type`, with the
parameters `created`, `expires` (at most `MAX_LIFETIME` after `created`), `keyid` (the
RFC 7638 thumbprint of the signing key), `nonce`, `alg="ed25519"` and
`tag="coopnet-federation/1"` (the tag selects our signature when a proxy adds others).
A response covers `@status`, `content-digest`, `content-type` and, from the request it
answers, `"@method";req`, `"@target-uri";req` and `"signature";req;key=<label>`: the
request's own signature, which covers the request's nonce, so a response cannot be
replayed as the answer to another request (and needs no nonce of its own).

The `http-message-signatures` package builds and checks the signature base; this module
adds the profile: it computes the digest, checks presence, times and the nonce itself,
so that each refusal has a typed reason (`care.enums.SignatureRefusal`), keeps nonces in
PostgreSQL (`federation_nonce`: a replay is refused by every process of the instance) and
writes a `federation_audit` row for every refused request.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import http_sf
import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from http_message_signatures import (
    HTTPMessageSignaturesException,
    HTTPMessageSigner,
    HTTPMessageVerifier,
    InvalidSignature,
    MappingKeyResolver,
    algorithms,
)
from sqlalchemy import delete, func, insert
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.requests import Request
from starlette.responses import Response

from care.enums import SignatureRefusal
from care.models import FederationAudit, FederationNonce
from federation.identity import Identity, b64url

log = logging.getLogger("coopnet.federation")

LABEL = "coopnet"
TAG = "coopnet-federation/1"
ALG = "ed25519"
MAX_LIFETIME = dt.timedelta(minutes=5)  # expires - created, at most
CLOCK_SKEW = dt.timedelta(seconds=30)  # tolerated difference between two instances' clocks
NONCE_LENGTH = (16, 128)
REQUEST_COMPONENTS = ("@method", "@target-uri", "content-digest", "content-type")


def response_components(request_label: str = LABEL) -> tuple[str, ...]:
    return (
        "@status",
        "content-digest",
        "content-type",
        '"@method";req',
        '"@target-uri";req',
        f'"signature";req;key="{request_label}"',
    )


KeyResolver = Callable[[str], Awaitable[Ed25519PublicKey | None]]


class SignatureRefused(Exception):
    """A signed message was refused; `reason` says why (docs/federation.md)."""

    def __init__(self, reason: SignatureRefusal, detail: str, keyid: str | None = None) -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason
        self.detail = detail
        self.keyid = keyid


@dataclass(frozen=True)
class Verified:
    """A signature that passed every check of the profile."""

    label: str
    keyid: str
    created: dt.datetime
    expires: dt.datetime
    nonce: str | None
    body: bytes


# --- message views for the package (method, url, headers; status_code, request) --------


@dataclass
class _RequestView:
    method: str
    url: str
    headers: Any


@dataclass
class _ResponseView:
    status_code: int
    headers: Any
    request: _RequestView


class _Headers:
    """Writable header view over an httpx or Starlette header container."""

    def __init__(self, headers: Any) -> None:
        self._h = headers

    def items(self) -> Iterable[tuple[str, str]]:
        multi = getattr(self._h, "multi_items", None)
        return list(multi()) if multi is not None else list(self._h.items())

    def __iter__(self) -> Any:
        return iter(dict.fromkeys(k for k, _ in self.items()))

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self._h

    def get(self, name: str) -> str | None:
        """Every field line of `name`, combined (RFC 9110), or None."""
        lines = [v for k, v in self.items() if k.lower() == name]
        return ", ".join(lines) if lines else None

    def __getitem__(self, name: str) -> str:
        value = self.get(name)
        if value is None:
            raise KeyError(name)
        return value

    def __setitem__(self, name: str, value: str) -> None:
        self._h[name] = value

    def __delitem__(self, name: str) -> None:
        del self._h[name]


def _dictionary(value: str) -> dict[str, Any]:
    """A Structured Field Dictionary (RFC 8941), as plain Python values."""
    parsed: Any = http_sf.parse(value.encode("latin-1"), tltype="dictionary")
    if not isinstance(parsed, dict):
        raise ValueError("not a dictionary")
    return parsed


def content_digest(body: bytes) -> str:
    """RFC 9530 `Content-Digest` with sha-256: `sha-256=:<base64>:`."""
    return str(http_sf.ser({"sha-256": (hashlib.sha256(body).digest(), {})}))


def new_nonce() -> str:
    return b64url(secrets.token_bytes(24))  # 32 characters


def public_target_uri(request: Request, base_url: str | None) -> str:
    """The target URI the caller signed: this instance's public base URL plus the path
    and query as received (a proxy in front changes scheme and host, not these). Without
    a base URL, the URL the server sees."""
    if base_url is None:
        return str(request.url)
    raw_path = request.scope.get("raw_path") or request.url.path.encode()
    path = raw_path.decode("latin-1")
    query = request.scope.get("query_string", b"").decode("latin-1")
    return base_url.rstrip("/") + path + (f"?{query}" if query else "")


def _request_view(request: Request, base_url: str | None) -> _RequestView:
    return _RequestView(
        request.method, public_target_uri(request, base_url), _Headers(request.headers)
    )


# --- signing ----------------------------------------------------------------------------


def _signer(identity: Identity) -> HTTPMessageSigner:
    return HTTPMessageSigner(
        signature_algorithm=algorithms.ED25519,
        key_resolver=MappingKeyResolver(
            public_keys={}, private_keys={identity.kid: identity.private_key}
        ),
    )


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def sign_request(
    request: httpx.Request,
    identity: Identity,
    *,
    created: dt.datetime | None = None,
    expires: dt.datetime | None = None,
    nonce: str | None = None,
    components: Sequence[str] = REQUEST_COMPONENTS,
) -> None:
    """Sign an outgoing httpx request in place (its body must be built: `json=` or
    `content=`). The defaults are the profile; the keywords exist for tests."""
    if "content-type" not in request.headers:
        raise ValueError("A signed request needs a Content-Type.")
    created = created or _now()
    for name in ("content-digest", "signature", "signature-input"):
        request.headers.pop(name, None)
    request.headers["Content-Digest"] = content_digest(request.content)
    _signer(identity).sign(
        _RequestView(request.method, str(request.url), _Headers(request.headers)),
        key_id=identity.kid,
        created=created,
        expires=expires or created + MAX_LIFETIME,
        nonce=nonce or new_nonce(),
        label=LABEL,
        tag=TAG,
        covered_component_ids=tuple(components),
        use_existing_digest=True,  # ours, computed above
    )


def sign_response(
    response: Response,
    request: Request,
    verified: Verified,
    identity: Identity,
    *,
    base_url: str | None,
    created: dt.datetime | None = None,
) -> None:
    """Sign a Starlette response to a verified request, binding it to that request's
    signature. The response's `body` must be final."""
    if "content-type" not in response.headers:
        raise ValueError("A signed response needs a Content-Type.")
    created = created or _now()
    response.headers["Content-Digest"] = content_digest(bytes(response.body))
    _signer(identity).sign(
        _ResponseView(
            response.status_code, _Headers(response.headers), _request_view(request, base_url)
        ),
        key_id=identity.kid,
        created=created,
        expires=created + MAX_LIFETIME,
        label=LABEL,
        tag=TAG,
        covered_component_ids=response_components(verified.label),
        use_existing_digest=True,
    )


# --- verifying --------------------------------------------------------------------------


class _Verifier(HTTPMessageVerifier):
    # The package's own time checks use the same tolerance as ours (ours run first).
    max_clock_skew = CLOCK_SKEW


@dataclass(frozen=True)
class _Selected:
    label: str
    components: list[str]
    params: dict[str, Any]


def _select(headers: Any) -> _Selected:
    """Our profile's signature among the message's signatures (by its tag)."""
    inputs = headers.get("signature-input")
    signatures = headers.get("signature")
    if not inputs or not signatures:
        raise SignatureRefused(SignatureRefusal.NO_SIGNATURE, "The message is not signed.")
    try:
        parsed = _dictionary(inputs)
    except Exception as exc:  # noqa: BLE001 - any parse failure is a malformed header
        raise SignatureRefused(
            SignatureRefusal.BAD_SIGNATURE, "Signature-Input is malformed."
        ) from exc
    ours = [
        (label, member)
        for label, member in parsed.items()
        if isinstance(member[0], list) and member[1].get("tag") == TAG
    ]
    if not ours:
        raise SignatureRefused(
            SignatureRefusal.NO_SIGNATURE, f'No signature with tag "{TAG}" in the message.'
        )
    if len(ours) > 1:
        raise SignatureRefused(
            SignatureRefusal.BAD_SIGNATURE, f'More than one signature with tag "{TAG}".'
        )
    label, (items, params) = ours[0]
    components = [str(http_sf.ser((value, p))) for value, p in items]  # type: ignore[arg-type]
    return _Selected(label, components, dict(params))


def _serialized(component: str) -> str:
    return component if component.startswith('"') else str(http_sf.ser(component))


def _timestamp(params: dict[str, Any], name: str, keyid: str | None) -> dt.datetime:
    value = params.get(name)
    if value is None:
        raise SignatureRefused(
            SignatureRefusal.MISSING_COMPONENT, f'The signature has no "{name}".', keyid
        )
    if type(value) is not int:
        raise SignatureRefused(
            SignatureRefusal.BAD_SIGNATURE, f'"{name}" is not an integer.', keyid
        )
    try:
        return dt.datetime.fromtimestamp(value, dt.UTC)
    except (OverflowError, OSError, ValueError) as exc:
        raise SignatureRefused(
            SignatureRefusal.BAD_SIGNATURE, f'"{name}" is out of range.', keyid
        ) from exc


def _check_digest(headers: Any, body: bytes, keyid: str) -> None:
    try:
        digest = _dictionary(headers["content-digest"])["sha-256"][0]
    except Exception as exc:  # noqa: BLE001 - malformed, or no sha-256 member
        raise SignatureRefused(
            SignatureRefusal.DIGEST_MISMATCH, "Content-Digest has no sha-256 digest.", keyid
        ) from exc
    if not isinstance(digest, bytes) or not hmac.compare_digest(
        digest, hashlib.sha256(body).digest()
    ):
        raise SignatureRefused(
            SignatureRefusal.DIGEST_MISMATCH, "The body does not match its Content-Digest.", keyid
        )


async def _check(
    message: _RequestView | _ResponseView,
    body: bytes,
    *,
    required: Sequence[str],
    require_nonce: bool,
    resolve_key: KeyResolver,
    now: dt.datetime,
) -> Verified:
    headers = message.headers
    selected = _select(headers)
    params = selected.params
    keyid = params.get("keyid")
    if not isinstance(keyid, str) or not keyid:
        raise SignatureRefused(SignatureRefusal.MISSING_COMPONENT, 'The signature has no "keyid".')
    keyid = keyid[:200]
    if params.get("alg") != ALG:
        raise SignatureRefused(
            SignatureRefusal.BAD_SIGNATURE, f'The signature\'s "alg" must be "{ALG}".', keyid
        )
    # Compared in serialized form ('"@method"', '"@method";req').
    missing = [c for c in required if _serialized(c) not in selected.components]
    if missing:
        raise SignatureRefused(
            SignatureRefusal.MISSING_COMPONENT,
            f"The signature does not cover {', '.join(missing)}.",
            keyid,
        )
    for field in ("content-digest", "content-type"):
        if field not in headers:
            raise SignatureRefused(
                SignatureRefusal.MISSING_COMPONENT, f"The message has no {field} field.", keyid
            )
    nonce = params.get("nonce")
    if require_nonce:
        if nonce is None:
            raise SignatureRefused(
                SignatureRefusal.MISSING_COMPONENT, 'The signature has no "nonce".', keyid
            )
        if not isinstance(nonce, str) or not (NONCE_LENGTH[0] <= len(nonce) <= NONCE_LENGTH[1]):
            raise SignatureRefused(
                SignatureRefusal.BAD_SIGNATURE,
                f"The nonce must be {NONCE_LENGTH[0]} to {NONCE_LENGTH[1]} characters.",
                keyid,
            )
    created = _timestamp(params, "created", keyid)
    expires = _timestamp(params, "expires", keyid)
    if created > now + CLOCK_SKEW:
        raise SignatureRefused(
            SignatureRefusal.NOT_YET_VALID, "The signature was created in the future.", keyid
        )
    if expires < created:
        raise SignatureRefused(
            SignatureRefusal.BAD_SIGNATURE, "The signature expires before it was created.", keyid
        )
    if expires - created > MAX_LIFETIME:
        raise SignatureRefused(
            SignatureRefusal.EXPIRES_TOO_LATE,
            f"A signature may live {int(MAX_LIFETIME.total_seconds())} seconds at most.",
            keyid,
        )
    if expires < now - CLOCK_SKEW:
        raise SignatureRefused(SignatureRefusal.EXPIRED, "The signature has expired.", keyid)
    key = await resolve_key(keyid)
    if key is None:
        raise SignatureRefused(SignatureRefusal.UNKNOWN_KEY, "The key is not known.", keyid)
    verifier = _Verifier(
        signature_algorithm=algorithms.ED25519,
        key_resolver=MappingKeyResolver(public_keys={keyid: key}, private_keys={}),
    )
    try:
        verifier.verify(message, max_age=None, expect_tag=TAG, expect_label=selected.label)
    except (InvalidSignature, HTTPMessageSignaturesException) as exc:
        raise SignatureRefused(
            SignatureRefusal.BAD_SIGNATURE, "The signature does not verify.", keyid
        ) from exc
    # The signed digest must match the body received: otherwise the body was changed.
    _check_digest(headers, body, keyid)
    return Verified(
        selected.label, keyid, created, expires, nonce if isinstance(nonce, str) else None, body
    )


class NonceStore:
    """Nonces of accepted signatures in PostgreSQL, pruned as they expire."""

    PRUNE_EVERY_SECONDS = 60.0

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.sessions = sessions
        self._pruned_at = float("-inf")

    async def claim(self, keyid: str, nonce: str, expires: dt.datetime) -> bool:
        """True the first time (keyid, nonce) is seen, False for a replay. Committed at
        once, so another process checking the same nonce waits for it and then sees it."""
        async with self.sessions() as session:
            if time.monotonic() - self._pruned_at > self.PRUNE_EVERY_SECONDS:
                self._pruned_at = time.monotonic()
                await session.execute(
                    delete(FederationNonce).where(FederationNonce.expires_at < func.now())
                )
            claimed = await session.execute(
                pg_insert(FederationNonce)
                .values(keyid=keyid, nonce=nonce, expires_at=expires + CLOCK_SKEW)
                .on_conflict_do_nothing(index_elements=["keyid", "nonce"])
                .returning(FederationNonce.keyid)
            )
            first = claimed.first() is not None
            await session.commit()
        return first


class AuditLimit:
    """Bounds what refused callers can make an instance write: at most `per_minute`
    audit rows per remote address and minute (the rest are counted in the log), and rows
    older than `retention` deleted (at most once an hour per process, on the next row)."""

    def __init__(self, per_minute: int = 60, retention: dt.timedelta = dt.timedelta(days=90)):
        self.per_minute = per_minute
        self.retention = retention
        self._window = 0
        self._counts: dict[str | None, int] = {}
        self._dropped = 0
        self._pruned_at = float("-inf")

    def admit(self, remote: str | None) -> bool:
        window = int(time.monotonic() // 60)
        if window != self._window:
            if self._dropped:
                log.warning("federation audit: %d refused requests not recorded", self._dropped)
            self._window, self._counts, self._dropped = window, {}, 0
        count = self._counts.get(remote, 0)
        if count >= self.per_minute:
            self._dropped += 1
            return False
        if len(self._counts) >= 10_000:  # bounded memory under a spray of addresses
            self._dropped += 1
            return False
        self._counts[remote] = count + 1
        return True

    def prune_due(self) -> bool:
        if time.monotonic() - self._pruned_at < 3600:
            return False
        self._pruned_at = time.monotonic()
        return True


AUDIT_LIMIT = AuditLimit()


async def audit_rows(
    sessions: async_sessionmaker[AsyncSession],
    request: Request,
    keyid: str | None,
    reasons: Iterable[str],
) -> None:
    """`federation_audit` rows for a refused request, one per reason (never its body)."""
    remote = request.client.host if request.client else None
    rows = [
        {
            "remote_addr": remote,
            "keyid": keyid[:200] if keyid else None,
            "reason": reason,
            "method": request.method[:16],
            "path": request.url.path[:2000],
        }
        for reason in reasons
        if AUDIT_LIMIT.admit(remote)
    ]
    if not rows:
        return
    try:
        async with sessions() as session:
            if AUDIT_LIMIT.prune_due():
                await session.execute(
                    delete(FederationAudit).where(
                        FederationAudit.at < func.now() - AUDIT_LIMIT.retention
                    )
                )
            await session.execute(insert(FederationAudit), rows)
            await session.commit()
    except Exception:  # noqa: BLE001 - the refusal stands even if the audit cannot be written
        log.exception("could not write federation audit rows for %s", [r["reason"] for r in rows])


async def audit(
    sessions: async_sessionmaker[AsyncSession], request: Request, refusal: SignatureRefused
) -> None:
    """One `federation_audit` row for a refused request."""
    await audit_rows(sessions, request, refusal.keyid, [refusal.reason.value])


async def verify_request(
    request: Request,
    *,
    resolve_key: KeyResolver,
    nonces: NonceStore,
    base_url: str | None,
    now: dt.datetime | None = None,
) -> Verified:
    """Verify an incoming request against the profile, or raise `SignatureRefused`
    (after writing its audit row). The nonce is claimed last, only for a signature that
    verifies, so nobody can burn another instance's nonces."""
    body = await request.body()
    try:
        verified = await _check(
            _request_view(request, base_url),
            body,
            required=REQUEST_COMPONENTS,
            require_nonce=True,
            resolve_key=resolve_key,
            now=now or _now(),
        )
        assert verified.nonce is not None
        if not await nonces.claim(verified.keyid, verified.nonce, verified.expires):
            raise SignatureRefused(
                SignatureRefusal.REPLAYED_NONCE, "This nonce was used already.", verified.keyid
            )
    except SignatureRefused as refusal:
        await audit(nonces.sessions, request, refusal)
        raise
    return verified


async def verify_response(
    response: httpx.Response,
    *,
    resolve_key: KeyResolver,
    request_label: str = LABEL,
    now: dt.datetime | None = None,
) -> Verified:
    """Verify a partner's response to a request we signed (read its body first), or raise
    `SignatureRefused`. The response's `req` components are taken from our own request,
    so a response to another request does not verify."""
    request = response.request
    view = _ResponseView(
        response.status_code,
        _Headers(response.headers),
        _RequestView(request.method, str(request.url), _Headers(request.headers)),
    )
    return await _check(
        view,
        response.content,
        required=response_components(request_label),
        require_nonce=False,
        resolve_key=resolve_key,
        now=now or _now(),
    )
