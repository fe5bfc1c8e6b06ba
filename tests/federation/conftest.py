"""Fixtures for federation tests: real instances on loopback ports (tests/federation/
instances.py), each with its own database on the test server."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from tests.conftest import _in_thread
from tests.federation.instances import Instance, prepare

# Settings every test instance runs with (tests may start instances with more): the
# outbox retries quickly, so that a partner coming back hears within a second or two.
INSTANCE_ENV: dict[str, str] = {
    "OUTBOX_FIRST_DELAY_SECONDS": "0.2",
    "OUTBOX_MAX_DELAY_SECONDS": "1",
    "OUTBOX_POLL_SECONDS": "0.5",
}


def start_instances(
    server_url: str, names: tuple[str, ...], tmp: Any, env: dict[str, str] | None = None
) -> list[Instance]:
    """Prepare (database, migrations) and start one instance per name."""
    instances: list[Instance] = []

    def prepare_all() -> None:
        instances.extend(prepare(server_url, name, tmp, env) for name in names)

    _in_thread(prepare_all)
    for instance in instances:
        instance.start()
    return instances


@pytest.fixture(scope="module")
def instance_pair(
    migrated_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Instance, Instance]]:
    """Two running instances, A and B, with empty databases (emptied after each test by
    `peers`)."""
    tmp = tmp_path_factory.mktemp("peers")
    a, b = start_instances(migrated_url, ("a", "b"), tmp, INSTANCE_ENV)
    try:
        yield a, b
    finally:
        for instance in (a, b):
            instance.stop()


@pytest.fixture
async def peers(
    instance_pair: tuple[Instance, Instance],
) -> AsyncIterator[tuple[Instance, Instance]]:
    yield instance_pair
    for instance in instance_pair:
        await instance.reset()
        await instance.dispose()
