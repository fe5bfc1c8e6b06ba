"""TRUSTED_DOCUMENTS_ONLY does not shut the partner door: instance A runs only registered
operations for its members and anonymous callers, while B's signed calls (our own
federation code's queries, api/peers.py) still run, as real instances over HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from federation.client import FederationClient
from tests.federation.conftest import INSTANCE_ENV, start_instances
from tests.federation.instances import LOOPBACK_NETWORKS, Instance
from tests.federation.test_door import PEER, call, identity_of, partner_on


@pytest.fixture(scope="module")
def trusted_pair(
    migrated_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Instance, Instance]]:
    tmp = tmp_path_factory.mktemp("trusted")
    (a,) = start_instances(
        migrated_url, ("trusted_a",), tmp, {**INSTANCE_ENV, "TRUSTED_DOCUMENTS_ONLY": "true"}
    )
    (b,) = start_instances(migrated_url, ("trusted_b",), tmp, INSTANCE_ENV)
    try:
        yield a, b
    finally:
        for instance in (a, b):
            instance.stop()


@pytest.fixture
async def pair(trusted_pair: tuple[Instance, Instance]) -> AsyncIterator[tuple[Instance, Instance]]:
    yield trusted_pair
    for instance in trusted_pair:
        await instance.reset()
        await instance.dispose()


async def test_a_partners_signed_call_runs_where_members_need_registered_operations(
    pair: tuple[Instance, Instance],
) -> None:
    a, b = pair
    await partner_on(a, b)
    # A member's (and an anonymous) full query is refused on A...
    for token in (a.token("ADMIN"), None):
        response = await a.graphql(PEER, token=token)
        assert response.status_code == 400, response.text
        assert response.json()["errors"][0]["extensions"]["code"] == "PERSISTED_QUERY_REQUIRED"
    # ...while B's signed call, a full query too, is admitted and answered.
    client = FederationClient(identity_of(b), b.base_url, private_networks=LOOPBACK_NETWORKS)
    try:
        data = await call(client, a, PEER)
    finally:
        await client.aclose()
    assert data["peerPartnership"]["status"] == "ACTIVE"
