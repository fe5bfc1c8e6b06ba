"""Two real instances see each other: each serves its own manifest, and the client of
one reads and checks the other's (federation/client.py)."""

from __future__ import annotations

import pytest

from federation.client import FederationClient, PartnerError, PartnerErrorCode
from federation.identity import load_or_create_identity
from tests.federation.instances import LOOPBACK_NETWORKS, Instance


async def test_an_instance_reads_and_checks_anothers_manifest(
    peers: tuple[Instance, Instance],
) -> None:
    a, b = peers
    settings = a.settings
    identity = load_or_create_identity(settings.federation_key_dir, None, [])
    client = FederationClient(identity, a.base_url, private_networks=LOOPBACK_NETWORKS)
    try:
        manifest = await client.fetch_manifest(b.base_url + "/")
        assert manifest.base_url == b.base_url
        assert manifest.graphql_endpoint == b.graphql_url
        assert manifest.common_version() == "coopnet-federation/1"
        b_identity = load_or_create_identity(b.settings.federation_key_dir, None, [])
        assert [k["kid"] for k in manifest.keys] == [b_identity.kid]
        assert b_identity.kid != identity.kid  # separate instances, separate keys
        # A manifest must be the one of the base URL asked for.
        with pytest.raises(PartnerError) as refused:
            await client.fetch_manifest(b.base_url.replace("127.0.0.1", "localhost"))
        assert refused.value.code == PartnerErrorCode.BAD_MANIFEST
    finally:
        await client.aclose()


async def test_an_unreachable_instance_is_a_coded_error(peers: tuple[Instance, Instance]) -> None:
    a, _ = peers
    identity = load_or_create_identity(a.settings.federation_key_dir, None, [])
    client = FederationClient(identity, a.base_url, private_networks=LOOPBACK_NETWORKS)
    try:
        with pytest.raises(PartnerError) as failed:
            await client.fetch_manifest("http://127.0.0.1:9")  # nothing listens there
        assert failed.value.code == PartnerErrorCode.UNREACHABLE
    finally:
        await client.aclose()
