"""The door for partner instances: a signed POST to /graphql becomes a PARTNER caller,
and its answer is signed (docs/federation.md, section 7).

A request is a partner call when it carries `Signature`, `Signature-Input` or
`Coopnet-Instance`. The door verifies it against the RFC 9421 profile
(`federation.signatures.verify_request`), resolving the `keyid` to a partnership by the
partner keys it holds; a key no partnership holds makes it re-read the manifest of the
`Coopnet-Instance` base URL (at most once per `MIN_REFETCH_SECONDS` per URL). A refused
request gets HTTP 401 with a GraphQL error (`UNAUTHENTICATED`, `extensions.reason`) and
an audit row; an admitted one runs as `Viewer(partner=...)`, its response is signed, and
every field refused to it by the partnership (`FORBIDDEN` with a reason) is audited too.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.bodylimit import read_body, replay
from care.enums import PartnershipStatus, SignatureRefusal
from care.models import Partnership
from care.viewer import Viewer
from federation.client import (
    INSTANCE_HEADER,
    FederationClient,
    Manifest,
    PartnerError,
    normalise_base_url,
    public_keys,
)
from federation.identity import Identity
from federation.signatures import (
    NonceStore,
    SignatureRefused,
    audit_rows,
    sign_response,
    verify_request,
)

log = logging.getLogger("coopnet.federation")

PEER_STATE = "coopnet_peer"  # scope["state"] key of an admitted partner call
SIGNAL_HEADERS = (b"signature", b"signature-input", INSTANCE_HEADER.lower().encode())
PARTNER_REASONS = {
    SignatureRefusal.PARTNERSHIP_SUSPENDED.value,
    SignatureRefusal.PARTNERSHIP_ENDED.value,
    SignatureRefusal.OUT_OF_SCOPE.value,
    SignatureRefusal.NOT_A_PARTNER.value,
}


@dataclass(frozen=True)
class PeerCall:
    """An admitted partner call: who it is, and its manifest if the door just read it."""

    viewer: Viewer
    manifest: Manifest | None


class ManifestCache:
    """Manifests read because of a key we did not know. A URL is re-read at most once per
    `min_interval` (so nobody can make us fetch in a loop); a manifest is trusted for a
    key for at most `max_age` seconds. Bounded in size. Reads of URLs no partnership has
    (`budgeted`) are also bounded in all: at most `budget` a minute, since every new URL
    a caller names would otherwise be one more read."""

    def __init__(
        self,
        client: Callable[[], FederationClient],
        *,
        min_interval: float,
        max_age: float,
        budget: int = 30,
    ) -> None:
        self.client = client
        self.min_interval = min_interval
        self.max_age = max_age
        self.budget = budget
        self.spent: deque[float] = deque()  # when budgeted reads were made, last minute
        self.entries: OrderedDict[str, tuple[float, Manifest | None]] = OrderedDict()
        self.locks: dict[str, asyncio.Lock] = {}
        self.size = 500

    def _spend(self) -> bool:
        now = time.monotonic()
        while self.spent and now - self.spent[0] >= 60:
            self.spent.popleft()
        if len(self.spent) >= self.budget:
            return False
        self.spent.append(now)
        return True

    async def with_key(self, base_url: str, kid: str, *, budgeted: bool) -> Manifest | None:
        """The manifest of `base_url` if it lists `kid` (read again when allowed)."""
        lock = self.locks.setdefault(base_url, asyncio.Lock())
        async with lock:
            now = time.monotonic()
            entry = self.entries.get(base_url)
            if entry is not None:
                at, manifest = entry
                if manifest is not None and kid in public_keys(manifest.keys):
                    if now - at < self.max_age:
                        return manifest
                if now - at < self.min_interval:
                    return None
            if budgeted and not self._spend():
                log.warning("manifest of %s not read: the minute's budget is spent", base_url)
                return None
            try:
                manifest = await self.client().fetch_manifest(base_url)
            except PartnerError as exc:
                log.info("manifest of %s could not be read: %s", base_url, exc.summary())
                manifest = None
            self.entries[base_url] = (time.monotonic(), manifest)
            self.entries.move_to_end(base_url)
            while len(self.entries) > self.size:
                old, _ = self.entries.popitem(last=False)
                self.locks.pop(old, None)
        if manifest is not None and kid in public_keys(manifest.keys):
            return manifest
        return None


def is_partner_call(scope: Scope) -> bool:
    return any(name in SIGNAL_HEADERS for name, _ in scope["headers"])


def peer_call(scope: Scope) -> PeerCall | None:
    call = scope.get("state", {}).get(PEER_STATE)
    return call if isinstance(call, PeerCall) else None


class _Resolution:
    """What resolving the request's keyid found: the partnership or a fresh manifest."""

    def __init__(self) -> None:
        self.partnership: Partnership | None = None
        self.manifest: Manifest | None = None


def _graphql_error(status: int, message: str, **extensions: Any) -> Response:
    body = {"data": None, "errors": [{"message": message, "extensions": extensions}]}
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")


class PeerDoor:
    """ASGI middleware in front of the GraphQL route (inside the body limit)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        path: str,
        identity: Identity,
        base_url: str,
        min_refetch_seconds: float = 10.0,
        manifest_max_age_seconds: float = 300.0,
    ) -> None:
        self.app = app
        self.path = path
        self.identity = identity
        self.base_url = base_url
        self._client: FederationClient | None = None
        self.manifests = ManifestCache(
            lambda: self._federation(),
            min_interval=min_refetch_seconds,
            max_age=manifest_max_age_seconds,
        )
        self._nonces: NonceStore | None = None

    def _federation(self) -> FederationClient:
        assert self._client is not None
        return self._client

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != self.path or not is_partner_call(scope):
            await self.app(scope, receive, send)
            return
        state = scope["app"].state
        self._client = state.federation
        sessions: async_sessionmaker[AsyncSession] = state.sessions
        if self._nonces is None or self._nonces.sessions is not sessions:
            self._nonces = NonceStore(sessions)
        if scope["method"] != "POST":
            await _graphql_error(
                405, "Partner calls are POST requests.", code="METHOD_NOT_ALLOWED"
            )(scope, receive, send)
            return
        if any(name == b"authorization" for name, _ in scope["headers"]):
            await _graphql_error(
                400,
                "A request is either signed by a partner instance or carries a bearer "
                "token, not both.",
                code="BAD_REQUEST",
            )(scope, receive, send)
            return
        body = await read_body(receive)
        replayed = replay(body, receive)
        request = Request(scope, replayed)
        resolution = _Resolution()
        try:
            verified = await verify_request(
                request,
                resolve_key=self._resolver(sessions, request, resolution),
                nonces=self._nonces,
                base_url=self.base_url,
            )
        except SignatureRefused as refusal:
            await _graphql_error(
                401,
                f"The signature was refused: {refusal.detail}",
                code="UNAUTHENTICATED",
                reason=refusal.reason.value,
            )(scope, receive, send)
            return
        viewer = await self._viewer(sessions, resolution)
        scope.setdefault("state", {})[PEER_STATE] = PeerCall(viewer, resolution.manifest)
        status, headers, content = await _run(self.app, scope, replay(body, receive))
        response = Response(content=content, status_code=status)
        response.raw_headers = [
            (k, v) for k, v in headers if k.lower() not in (b"content-length",)
        ] + [(b"content-length", str(len(content)).encode())]
        sign_response(response, request, verified, self.identity, base_url=self.base_url)
        await response(scope, replayed, send)
        await self._audit_field_refusals(sessions, request, verified.keyid, content)

    def _resolver(
        self, sessions: async_sessionmaker[AsyncSession], request: Request, found: _Resolution
    ) -> Callable[[str], Awaitable[Ed25519PublicKey | None]]:
        async def resolve(kid: str) -> Ed25519PublicKey | None:
            async with sessions() as session:
                partnership = await session.scalar(
                    select(Partnership)
                    .where(Partnership.keys.contains([{"kid": kid}]))
                    .order_by(Partnership.id)
                    .limit(1)
                )
                if partnership is not None:
                    found.partnership = partnership
                    return public_keys(partnership.keys).get(kid)
                # A key we do not know: read the manifest the caller names, once.
                claimed = request.headers.get(INSTANCE_HEADER)
                if not claimed:
                    return None
                try:
                    base_url = normalise_base_url(claimed)
                except ValueError:
                    return None
                # Manifests of instances we have a partnership with are read whenever the
                # interval allows; others (proposals, or anyone naming any URL) share a budget.
                partner_url = await session.scalar(
                    select(Partnership.id).where(Partnership.base_url == base_url)
                )
                manifest = await self.manifests.with_key(
                    base_url, kid, budgeted=partner_url is None
                )
                if manifest is None:
                    return None
                found.manifest = manifest
                partnership = await session.scalar(
                    select(Partnership).where(Partnership.base_url == manifest.base_url)
                )
                if partnership is not None:
                    # A partner's rotated key: keep its manifest's keys from now on.
                    await session.execute(
                        update(Partnership)
                        .where(Partnership.id == partnership.id)
                        .values(
                            keys=manifest.keys,
                            graphql_endpoint=manifest.graphql_endpoint,
                            coop_name=manifest.coop_name,
                            home_la_code=manifest.home_la_code,
                            local_authorities=manifest.local_authorities,
                            manifest_fetched_at=func.now(),
                        )
                    )
                    await session.commit()
                    found.partnership = partnership
                return public_keys(manifest.keys).get(kid)

        return resolve

    async def _viewer(
        self, sessions: async_sessionmaker[AsyncSession], found: _Resolution
    ) -> Viewer:
        partnership = found.partnership
        if partnership is None:
            assert found.manifest is not None
            return Viewer(partner=found.manifest.base_url)
        async with sessions() as session:
            # Re-read after the nonce was claimed (a suspension may have just committed),
            # and note the contact.
            row = (
                await session.execute(
                    update(Partnership)
                    .where(Partnership.id == partnership.id)
                    .values(last_contact_at=func.now())
                    .returning(Partnership.base_url, Partnership.status, Partnership.granted_scopes)
                )
            ).one()
            await session.commit()
        active = row.status == PartnershipStatus.ACTIVE.value
        return Viewer(
            partner=row.base_url,
            partnership_id=partnership.id,
            partnership_status=row.status,
            scopes=frozenset(row.granted_scopes) if active else frozenset(),
        )

    async def _audit_field_refusals(
        self,
        sessions: async_sessionmaker[AsyncSession],
        request: Request,
        keyid: str,
        content: bytes,
    ) -> None:
        """An audit row per reason for which the partnership refused a field."""
        try:
            payload = orjson.loads(content)
        except orjson.JSONDecodeError:
            return
        errors = payload.get("errors") if isinstance(payload, dict) else None
        reasons: set[str] = {
            str((e.get("extensions") or {}).get("reason"))
            for e in (errors if isinstance(errors, list) else [])
            if isinstance(e, dict)
        } & PARTNER_REASONS
        if not reasons:
            return
        await audit_rows(sessions, request, keyid, sorted(reasons))


async def _run(app: ASGIApp, scope: Scope, receive: Receive) -> tuple[int, list[Any], bytes]:
    """Run the app and keep its answer, to be signed before it is sent."""
    status = 500
    headers: list[Any] = []
    chunks: list[bytes] = []

    async def send(message: Message) -> None:
        nonlocal status, headers
        if message["type"] == "http.response.start":
            status = message["status"]
            headers = list(message.get("headers", []))
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    await app(scope, receive, send)
    return status, headers, b"".join(chunks)
