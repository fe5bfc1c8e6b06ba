"""A URL someone names never makes an instance connect into its own network: calls to
other instances go to public addresses, and to private ones only inside
FEDERATION_PRIVATE_NETWORKS (federation/addresses.py)."""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import AsyncIterator
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import ValidationError

from api.peers import ManifestCache
from api.settings import Settings
from federation.addresses import AddressPolicy, parse_networks
from federation.client import FederationClient, PartnerError
from federation.identity import Identity
from tests.federation.conftest import start_instances
from tests.federation.instances import LOOPBACK_NETWORKS, Instance
from tests.federation.test_door import PEER, identity_of


@pytest.mark.parametrize(
    ("address", "allowed"),
    [
        ("81.2.69.160", True),  # public
        ("2a00:1450:4009:81f::200e", True),
        ("127.0.0.1", False),  # loopback
        ("10.20.1.1", False),  # private
        ("172.16.0.5", False),
        ("192.168.1.1", False),
        ("169.254.169.254", False),  # link-local: cloud metadata services
        ("100.64.0.1", False),  # carrier-grade NAT
        ("0.0.0.0", False),
        ("224.0.0.1", False),  # multicast
        ("::1", False),
        ("fc00::1", False),  # unique local
        ("fe80::1", False),
        ("::ffff:127.0.0.1", False),  # loopback, written as IPv6
    ],
)
def test_only_public_addresses_by_default(address: str, allowed: bool) -> None:
    assert AddressPolicy().allows(ipaddress.ip_address(address)) is allowed


def test_listed_private_networks_are_allowed_and_nothing_else() -> None:
    policy = AddressPolicy(parse_networks("10.20.0.0/16, 192.168.5.7"))
    assert policy.allows(ipaddress.ip_address("10.20.200.1"))
    assert policy.allows(ipaddress.ip_address("192.168.5.7"))
    assert not policy.allows(ipaddress.ip_address("10.21.0.1"))
    assert not policy.allows(ipaddress.ip_address("192.168.5.8"))
    assert not policy.allows(ipaddress.ip_address("127.0.0.1"))


def test_a_bad_network_setting_is_refused_at_start() -> None:
    with pytest.raises(ValidationError, match="not an IP network"):
        Settings(federation_private_networks="10.20.0.0/16, intranet")
    assert Settings(federation_private_networks="").federation_private_network_list == []


class Listener:
    """A TCP port on loopback that counts who connects (and answers nothing useful)."""

    def __init__(self) -> None:
        self.connections = 0
        self.server: asyncio.base_events.Server | None = None

    async def _connected(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        writer.close()

    async def __aenter__(self) -> Listener:
        self.server = await asyncio.start_server(self._connected, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: Any) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
async def test_a_client_refuses_to_connect_to_loopback(host: str) -> None:
    client = FederationClient(Identity(Ed25519PrivateKey.generate()), "https://us.example")
    try:
        async with Listener() as listener:
            url = listener.url.replace("127.0.0.1", host)
            with pytest.raises(PartnerError) as refused:
                await client.fetch_manifest(url)
            assert refused.value.code == "UNREACHABLE"
            assert "FEDERATION_PRIVATE_NETWORKS" in str(refused.value)
            assert listener.connections == 0
    finally:
        await client.aclose()


async def test_listed_loopback_is_reached() -> None:
    """The same call with loopback listed does connect: the refusal above is the rule's."""
    client = FederationClient(
        Identity(Ed25519PrivateKey.generate()),
        "https://us.example",
        private_networks=LOOPBACK_NETWORKS,
    )
    try:
        async with Listener() as listener:
            with pytest.raises(PartnerError):
                await client.fetch_manifest(listener.url)
            assert listener.connections == 1
    finally:
        await client.aclose()


@pytest.fixture(scope="module")
def guarded(migrated_url: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Instance]:
    """An instance with the default rule: no private network listed."""
    tmp = tmp_path_factory.mktemp("guarded")
    [instance] = start_instances(
        migrated_url, ("guarded",), tmp, {"FEDERATION_PRIVATE_NETWORKS": ""}
    )
    try:
        yield instance  # type: ignore[misc]
    finally:
        instance.stop()


async def test_the_door_does_not_fetch_a_manifest_from_a_private_address(
    guarded: Instance,
) -> None:
    """A signed call naming an instance on the door's own network: the door would read
    that URL's manifest to learn the key; it must not even connect."""
    async with Listener() as listener:
        stranger = FederationClient(
            Identity(Ed25519PrivateKey.generate()),
            listener.url,  # the Coopnet-Instance the call names
            private_networks=LOOPBACK_NETWORKS,  # the test itself reaches the instance
        )
        try:
            with pytest.raises(PartnerError) as refused:
                await stranger.call(
                    guarded.graphql_url,
                    identity_of(guarded).jwks(),
                    PEER,
                    base_url=guarded.base_url,
                )
        finally:
            await stranger.aclose()
        assert (refused.value.code, refused.value.reason) == ("REFUSED", "UNKNOWN_KEY")
        assert listener.connections == 0
    await guarded.reset()
    await guarded.dispose()


async def test_a_name_that_does_not_resolve_is_unreachable() -> None:
    client = FederationClient(Identity(Ed25519PrivateKey.generate()), "https://us.example")
    try:
        with pytest.raises(PartnerError) as failed:
            await client.fetch_manifest("https://no-such-instance.invalid")
        assert failed.value.code == "UNREACHABLE"
    finally:
        await client.aclose()


async def test_manifest_reads_of_unknown_urls_share_a_budget() -> None:
    """Every new URL a caller names would be one more read: those reads are bounded in all
    (a partnership's own URL is not: its key rotations must always be learnt)."""
    client = FederationClient(
        Identity(Ed25519PrivateKey.generate()),
        "https://us.example",
        private_networks=LOOPBACK_NETWORKS,
    )
    cache = ManifestCache(lambda: client, min_interval=10, max_age=300, budget=3)
    try:
        async with Listener() as listener:
            for n in range(5):
                await cache.with_key(f"{listener.url}/coop-{n}", "kid", budgeted=True)
            assert listener.connections == 3
            await cache.with_key(f"{listener.url}/partner", "kid", budgeted=False)
            assert listener.connections == 4
    finally:
        await client.aclose()
