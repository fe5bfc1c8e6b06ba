"""Request bodies are bounded and must be one JSON object (issue 6, points 10 and 13)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from care.enums import Role
from tests.conftest import Api

LIMIT = 1_000_000  # Settings.max_body_bytes


def coded(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert "data" not in body  # refused before anything ran (GraphQL-over-HTTP)
    assert response.headers["content-type"].startswith("application/json")
    assert body["errors"][0]["extensions"]["code"] == code
    return body


async def test_a_declared_large_body_is_refused_unread(api: Api) -> None:
    sent = 0

    async def fifty_megabytes() -> AsyncIterator[bytes]:
        nonlocal sent
        for _ in range(50 * 16):
            sent += 1
            yield b"x" * 65536

    started = time.monotonic()
    response = await api.client.post(
        "/graphql",
        content=fifty_megabytes(),
        headers={"Content-Type": "application/json", "Content-Length": str(50 * 2**20)},
    )
    body = coded(response, 413, "PAYLOAD_TOO_LARGE")
    assert body["errors"][0]["extensions"]["limit"] == LIMIT
    assert sent <= 2  # not read
    assert time.monotonic() - started < 2


async def test_a_streamed_large_body_is_refused_once_over_the_limit(api: Api) -> None:
    sent = 0

    async def chunks() -> AsyncIterator[bytes]:
        nonlocal sent
        for _ in range(50 * 16):
            sent += 1
            yield b"x" * 65536

    # No Content-Length (chunked): counted while it streams in.
    response = await api.client.post(
        "/graphql", content=chunks(), headers={"Content-Type": "application/json"}
    )
    coded(response, 413, "PAYLOAD_TOO_LARGE")
    assert sent <= LIMIT // 65536 + 2


async def test_a_body_larger_than_declared_is_counted(api: Api) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(32):
            yield b"x" * 65536

    response = await api.client.post(
        "/graphql",
        content=chunks(),
        headers={"Content-Type": "application/json", "Content-Length": "100"},
    )
    coded(response, 413, "PAYLOAD_TOO_LARGE")


async def test_a_body_at_the_limit_is_served(api: Api) -> None:
    query = "{ coop { name } }"
    padding = LIMIT - len(f'{{"query": "{query}", "x": ""}}')
    content = f'{{"query": "{query}", "x": "{"p" * padding}"}}'.encode()
    assert len(content) == LIMIT
    response = await api.client.post(
        "/graphql",
        content=content,
        headers={
            "Content-Type": "application/json",
            "Authorization": f"Bearer {api.token(Role.ADMIN)}",
        },
    )
    assert response.status_code == 200, response.text


@pytest.mark.parametrize(
    "content",
    [
        b'"{ coop { name } }"',
        b"[1, 2, 3]",
        b'["x", {"query": 1}]',
        b"42",
        b"null",
        b"true",
        b"{not json",
        b"",
        b'{"query": "{ coop { name } }", "variables": {"a": NaN}}',
        b"\xff\xfe{}",
        # Nested deeper than any parser's stack: the json module raised RecursionError.
        b'{"query": "{ coop { name } }", "variables": {"a": '
        + b"[" * 100_000
        + b"]" * 100_000
        + b"}}",
        b"[" * 100_000 + b"]" * 100_000,
    ],
    ids=lambda content: repr(content[:30]),
)
async def test_a_body_that_is_not_a_json_object_is_a_coded_400(api: Api, content: bytes) -> None:
    response = await api.client.post(
        "/graphql", content=content, headers={"Content-Type": "application/json"}
    )
    coded(response, 400, "BAD_REQUEST")


@pytest.mark.parametrize(
    "payload",
    [
        {"query": 42},
        {"query": ["{ coop { name } }"]},
        {"query": "{ coop { name } }", "variables": "x"},
        {"query": "{ coop { name } }", "variables": [1]},
        {"query": "{ coop { name } }", "operationName": 7},
        {"query": "{ coop { name } }", "extensions": "x"},
        {"query": "query A { coop { name } }", "operationName": "B"},
        {},
    ],
)
async def test_malformed_requests_are_client_errors(api: Api, payload: dict[str, Any]) -> None:
    """Coded and GraphQL-shaped like every other refusal (Strawberry answered these in
    plain text, with no code)."""
    response = await api.client.post("/graphql", json=payload)
    coded(response, 400, "BAD_REQUEST")


async def test_a_body_of_another_content_type_is_coded(api: Api) -> None:
    form = await api.client.post("/graphql", data={"query": "{ coop { name } }"})
    coded(form, 400, "BAD_REQUEST")
