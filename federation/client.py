"""Calling another instance: read its manifest, and POST signed GraphQL to it, checking
the signature of its answer (docs/federation.md, sections 2 and 4).

Every failure is a `PartnerError` with a code, never a crash: the caller records it on
the partnership (`last_error`). Nothing here touches the database.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from federation.addresses import Network, guarded_http_client
from federation.identity import Identity, key_from_jwk
from federation.manifest import PROTOCOL_VERSIONS
from federation.signatures import SignatureRefused, sign_request, verify_response

log = logging.getLogger("coopnet.federation")

# Sent with every call: the caller's base URL, so that a receiver meeting a key it does
# not know knows whose manifest to re-read (the signature must then verify with a key
# of that manifest, so the header grants nothing by itself).
INSTANCE_HEADER = "Coopnet-Instance"
MAX_MANIFEST_BYTES = 64 * 1024
MAX_RESPONSE_BYTES = 64 * 1024 * 1024
DEFAULT_TIMEOUT = httpx.Timeout(10.0, connect=5.0)


class PartnerErrorCode:
    UNREACHABLE = "UNREACHABLE"  # no connection, a timeout, a TLS failure
    BAD_MANIFEST = "BAD_MANIFEST"  # not a manifest, or one for another base URL
    VERSION_MISMATCH = "VERSION_MISMATCH"  # no protocol version in common
    BAD_RESPONSE_SIGNATURE = "BAD_RESPONSE_SIGNATURE"  # its answer did not verify
    REFUSED = "REFUSED"  # it refused our signature or our partnership (HTTP 401/403)
    HTTP_ERROR = "HTTP_ERROR"  # another non-200 status
    GRAPHQL_ERROR = "GRAPHQL_ERROR"  # it answered with GraphQL errors
    BAD_RESPONSE = "BAD_RESPONSE"  # not JSON, too large, not a GraphQL response


class PartnerError(Exception):
    """A call to another instance failed; `code` says how (PartnerErrorCode)."""

    def __init__(self, code: str, message: str, *, reason: str | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.reason = reason  # the partner's refusal reason or error code, if it gave one

    def summary(self) -> str:
        """What is recorded as the partnership's `lastError` (bounded)."""
        text = f"{self.code}: {self.message}"
        if self.reason:
            text += f" ({self.reason})"
        return text[:2000]


@dataclass(frozen=True)
class Manifest:
    """Another instance's manifest, checked: its base URL is the one asked for, every key
    is an Ed25519 JWK whose kid is its thumbprint, and there is at least one key."""

    base_url: str
    graphql_endpoint: str
    protocol_versions: tuple[str, ...]
    coop: dict[str, Any] | None
    local_authorities: list[dict[str, str]]
    keys: list[dict[str, str]] = field(default_factory=list)

    @property
    def home_la_code(self) -> str | None:
        code = (self.coop or {}).get("homeLocalAuthority")
        return code if isinstance(code, str) else None

    @property
    def coop_name(self) -> str | None:
        name = (self.coop or {}).get("name")
        return name if isinstance(name, str) else None

    def common_version(self) -> str | None:
        return common_version(self.protocol_versions)


def common_version(theirs: tuple[str, ...] | list[str]) -> str | None:
    """The highest version both sides speak (ours are listed most preferred first)."""
    for version in PROTOCOL_VERSIONS:
        if version in theirs:
            return version
    return None


def normalise_base_url(value: str) -> str:
    """An absolute http(s) URL without query, fragment or trailing slash, else ValueError."""
    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError("A base URL is an absolute http(s) URL.")
    if parts.query or parts.fragment or parts.username or parts.password:
        raise ValueError("A base URL has no query, fragment or credentials.")
    if len(value) > 500:
        raise ValueError("A base URL is at most 500 characters.")
    return f"{parts.scheme}://{parts.netloc.lower()}{parts.path.rstrip('/')}"


def public_keys(
    jwks: list[dict[str, str]] | list[Mapping[str, Any]],
) -> dict[str, Ed25519PublicKey]:
    """kid -> key for every valid Ed25519 JWK (others are ignored)."""
    keys: dict[str, Ed25519PublicKey] = {}
    for jwk in jwks:
        key = key_from_jwk(dict(jwk))
        if key is not None:
            keys[str(jwk["kid"])] = key
    return keys


def parse_manifest(base_url: str, body: bytes) -> Manifest:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise PartnerError(PartnerErrorCode.BAD_MANIFEST, "The manifest is not JSON.") from exc
    if not isinstance(data, dict):
        raise PartnerError(PartnerErrorCode.BAD_MANIFEST, "The manifest is not a JSON object.")
    try:
        claimed = normalise_base_url(str(data.get("baseUrl", "")))
    except ValueError as exc:
        raise PartnerError(PartnerErrorCode.BAD_MANIFEST, "The manifest has no baseUrl.") from exc
    if claimed != base_url:
        raise PartnerError(
            PartnerErrorCode.BAD_MANIFEST,
            f"The manifest at {base_url} says it is {claimed}.",
        )
    endpoint = data.get("graphqlEndpoint")
    if not isinstance(endpoint, str) or not (
        endpoint == base_url or endpoint.startswith(base_url + "/")
    ):
        raise PartnerError(
            PartnerErrorCode.BAD_MANIFEST,
            "The manifest's graphqlEndpoint is not under its baseUrl.",
        )
    versions = data.get("protocolVersions")
    if not isinstance(versions, list) or not all(isinstance(v, str) for v in versions):
        raise PartnerError(PartnerErrorCode.BAD_MANIFEST, "The manifest has no protocolVersions.")
    raw_keys = data.get("keys")
    if not isinstance(raw_keys, list):
        raise PartnerError(PartnerErrorCode.BAD_MANIFEST, "The manifest has no keys.")
    keys = [
        {k: str(v) for k, v in jwk.items() if k in ("kty", "crv", "x", "kid", "use", "alg")}
        for jwk in raw_keys
        if isinstance(jwk, dict) and key_from_jwk(jwk) is not None
    ]
    if not keys:
        raise PartnerError(PartnerErrorCode.BAD_MANIFEST, "The manifest has no valid Ed25519 key.")
    coop = data.get("coop")
    las = data.get("localAuthorities")
    return Manifest(
        base_url=base_url,
        graphql_endpoint=endpoint,
        protocol_versions=tuple(versions),
        coop=coop if isinstance(coop, dict) else None,
        local_authorities=[
            {"gssCode": str(la.get("gssCode")), "name": str(la.get("name"))}
            for la in (las if isinstance(las, list) else [])
            if isinstance(la, dict) and isinstance(la.get("gssCode"), str)
        ][:500],
        keys=keys,
    )


@dataclass(frozen=True)
class CallResult:
    data: dict[str, Any]
    # The partner's manifest when its answer was signed by a key we did not have and we
    # re-read it (a key rotation): the caller stores its keys.
    refreshed: Manifest | None = None


class FederationClient:
    """Signed GraphQL calls from this instance to others, over one httpx client."""

    def __init__(
        self,
        identity: Identity,
        own_base_url: str,
        http: httpx.AsyncClient | None = None,
        private_networks: Sequence[Network] = (),
    ) -> None:
        """Connections go to public addresses and to private ones in `private_networks`
        only (federation/addresses.py), unless the caller brings its own `http`."""
        self.identity = identity
        self.own_base_url = own_base_url
        self.http = http or guarded_http_client(private_networks, DEFAULT_TIMEOUT)

    async def aclose(self) -> None:
        await self.http.aclose()

    async def fetch_manifest(self, base_url: str) -> Manifest:
        try:
            base_url = normalise_base_url(base_url)
        except ValueError as exc:
            raise PartnerError(PartnerErrorCode.BAD_MANIFEST, str(exc)) from exc
        body = await self._get(f"{base_url}/.well-known/coopnet")
        return parse_manifest(base_url, body)

    async def _get(self, url: str) -> bytes:
        try:
            async with self.http.stream("GET", url, headers={"Accept": "application/json"}) as r:
                if r.status_code != 200:
                    raise PartnerError(
                        PartnerErrorCode.BAD_MANIFEST, f"GET {url} answered HTTP {r.status_code}."
                    )
                chunks: list[bytes] = []
                size = 0
                async for chunk in r.aiter_bytes():
                    size += len(chunk)
                    if size > MAX_MANIFEST_BYTES:
                        raise PartnerError(
                            PartnerErrorCode.BAD_MANIFEST, "The manifest is too large."
                        )
                    chunks.append(chunk)
                return b"".join(chunks)
        except httpx.HTTPError as exc:
            raise PartnerError(
                PartnerErrorCode.UNREACHABLE, f"{url}: {type(exc).__name__} {exc}".strip()
            ) from exc

    async def call(
        self,
        endpoint: str,
        keys: list[dict[str, str]],
        query: str,
        variables: dict[str, Any] | None = None,
        *,
        base_url: str | None = None,
    ) -> CallResult:
        """POST a signed GraphQL request to `endpoint` and return its `data`, checked
        against `keys` (the partner's JWKs). With `base_url`, an answer signed by a key
        not in `keys` makes us re-read that manifest once. GraphQL errors, refusals and
        transport failures raise PartnerError."""
        body = orjson.dumps({"query": query, "variables": variables or {}})
        request = self.http.build_request(
            "POST",
            endpoint,
            content=body,
            headers={
                "Content-Type": "application/json",
                "Accept": "application/json",
                INSTANCE_HEADER: self.own_base_url,
            },
        )
        sign_request(request, self.identity)
        try:
            response = await self.http.send(request, stream=True)
            try:
                chunks: list[bytes] = []
                size = 0
                async for chunk in response.aiter_bytes():
                    size += len(chunk)
                    if size > MAX_RESPONSE_BYTES:
                        raise PartnerError(
                            PartnerErrorCode.BAD_RESPONSE, "The answer is too large."
                        )
                    chunks.append(chunk)
                response._content = b"".join(chunks)  # what verify_response reads
            finally:
                await response.aclose()
        except httpx.HTTPError as exc:
            raise PartnerError(
                PartnerErrorCode.UNREACHABLE, f"{endpoint}: {type(exc).__name__} {exc}".strip()
            ) from exc
        payload = _json(response.content)
        if response.status_code in (401, 403):
            raise PartnerError(
                PartnerErrorCode.REFUSED,
                _first_message(payload) or f"HTTP {response.status_code}",
                reason=_first_reason(payload),
            )
        refreshed = await self._verify(response, keys, base_url)
        if response.status_code != 200:
            raise PartnerError(
                PartnerErrorCode.HTTP_ERROR,
                f"HTTP {response.status_code}: {_first_message(payload) or ''}".strip(),
                reason=_first_reason(payload),
            )
        if not isinstance(payload, dict):
            raise PartnerError(
                PartnerErrorCode.BAD_RESPONSE, "The answer is not a GraphQL response."
            )
        errors = payload.get("errors")
        if errors:
            raise PartnerError(
                PartnerErrorCode.GRAPHQL_ERROR,
                _first_message(payload) or "GraphQL error",
                reason=_first_reason(payload),
            )
        data = payload.get("data")
        if not isinstance(data, dict):
            raise PartnerError(PartnerErrorCode.BAD_RESPONSE, "The answer has no data.")
        return CallResult(data, refreshed)

    async def _verify(
        self, response: httpx.Response, keys: list[dict[str, str]], base_url: str | None
    ) -> Manifest | None:
        known = public_keys(keys)
        refreshed: Manifest | None = None

        async def resolve(kid: str) -> Ed25519PublicKey | None:
            nonlocal refreshed, known
            if kid not in known and base_url is not None and refreshed is None:
                refreshed = await self.fetch_manifest(base_url)
                known = public_keys(refreshed.keys)
            return known.get(kid)

        try:
            await verify_response(response, resolve_key=resolve)
        except SignatureRefused as exc:
            raise PartnerError(
                PartnerErrorCode.BAD_RESPONSE_SIGNATURE, exc.detail, reason=exc.reason.value
            ) from exc
        return refreshed


def _json(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return None


def _first_error(payload: Any) -> dict[str, Any] | None:
    if isinstance(payload, dict):
        errors = payload.get("errors")
        if isinstance(errors, list) and errors and isinstance(errors[0], dict):
            return errors[0]
    return None


def _first_message(payload: Any) -> str | None:
    error = _first_error(payload)
    message = error.get("message") if error else None
    return str(message)[:500] if message is not None else None


def _first_reason(payload: Any) -> str | None:
    error = _first_error(payload)
    extensions = error.get("extensions") if error else None
    if isinstance(extensions, dict):
        value = extensions.get("reason") or extensions.get("code")
        return str(value)[:100] if value is not None else None
    return None
