"""Which addresses this instance may connect to when it calls another instance.

Base URLs reach us from outside: a partner call names its instance in a header, and the
door then reads that URL's manifest; an admin proposes a partnership to a URL. Without a
rule, anyone could make an instance fetch from its own network (a database's HTTP port,
a cloud metadata service, an intranet page) and learn from the answer or its timing. So
every connection to a partner goes to a public address, or to one inside the private
networks the operator lists (`FEDERATION_PRIVATE_NETWORKS`, e.g. a council's closed
network, or 127.0.0.0/8 when instances share one machine).

The check runs where the connection is made, on every address the name resolves to, and
the connection goes to the address checked: a name that answers one address to a check
and another to the connection (DNS rebinding) gets nowhere.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable, Sequence
from typing import Any

import anyio
import httpcore
import httpx

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def parse_networks(text: str) -> list[Network]:
    """Comma-separated CIDR blocks (a bare address is a block of one); ValueError names
    the first that is not one."""
    networks: list[Network] = []
    for part in (p.strip() for p in text.split(",")):
        if part:
            try:
                networks.append(ipaddress.ip_network(part, strict=False))
            except ValueError as exc:
                raise ValueError(f"{part!r} is not an IP network (e.g. 10.20.0.0/16)") from exc
    return networks


class AddressPolicy:
    """Public addresses, and the private ones inside `private_networks`."""

    def __init__(self, private_networks: Iterable[Network] = ()) -> None:
        self.private_networks = tuple(private_networks)

    def allows(self, address: Address) -> bool:
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        if any(address in network for network in self.private_networks):
            return True
        return address.is_global and not address.is_multicast


class AddressRefused(httpcore.ConnectError):
    """A partner's name resolves to an address this instance may not connect to."""


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """httpcore's own backend, connecting only to addresses the policy allows. TLS still
    checks the certificate against the name in the URL (httpcore passes it separately)."""

    def __init__(self, policy: AddressPolicy) -> None:
        self.policy = policy
        self.backend = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        # Failures as httpcore's own, so that httpx (and our client) report them as such.
        try:
            with anyio.fail_after(timeout):
                found = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except TimeoutError as exc:
            raise httpcore.ConnectTimeout(f"{host}: no address in time") from exc
        except OSError as exc:
            raise httpcore.ConnectError(f"{host}: {exc}") from exc
        addresses = [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in found]
        refused = [a for a in addresses if not self.policy.allows(a)]
        if not addresses or refused:
            raise AddressRefused(
                f"{host} resolves to {refused[0] if refused else 'nothing'}: not a public "
                "address, nor in FEDERATION_PRIVATE_NETWORKS"
            )
        return await self.backend.connect_tcp(
            str(addresses[0]), port, timeout, local_address, socket_options
        )

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        socket_options: Any = None,
    ) -> httpcore.AsyncNetworkStream:
        raise AddressRefused("partners are reached over TCP only")

    async def sleep(self, seconds: float) -> None:
        await self.backend.sleep(seconds)


def guarded_http_client(
    private_networks: Sequence[Network], timeout: httpx.Timeout
) -> httpx.AsyncClient:
    """An httpx client whose connections obey `AddressPolicy(private_networks)`; no
    redirects (a redirect is another URL nobody checked) and no proxy from the
    environment (it would connect on our behalf, unchecked)."""
    transport = httpx.AsyncHTTPTransport(trust_env=False)
    # httpx does not take a network backend; its transport wraps an httpcore pool that
    # does, so the pool is rebuilt with the same TLS context and the guarded backend.
    transport._pool = httpcore.AsyncConnectionPool(
        ssl_context=transport._pool._ssl_context,
        max_connections=100,
        max_keepalive_connections=20,
        keepalive_expiry=5.0,
        network_backend=GuardedBackend(AddressPolicy(private_networks)),
    )
    return httpx.AsyncClient(
        transport=transport, timeout=timeout, follow_redirects=False, trust_env=False
    )
