"""Every request to /graphql is answered in the GraphQL-over-HTTP shape (issue 11): a
malformed one with `errors` and a code and no `data`, in the media type the Accept header
negotiates (application/graphql-response+json when named, else application/json), with
the status the spec asks for that type."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from api.media import GRAPHQL_RESPONSE_JSON, JSON, negotiate
from tests.conftest import Api

NEW = {"Accept": f"{GRAPHQL_RESPONSE_JSON}, {JSON};q=0.9"}
LEGACY = {"Accept": JSON}
BOTH = pytest.mark.parametrize(
    ("accept", "media_type"), [(NEW, GRAPHQL_RESPONSE_JSON), (LEGACY, JSON)], ids=["new", "legacy"]
)
HASH = "ecf4edb46db40b5132295c0291d62fb65d6759a9eedfa4d5d612dd5ec54a6b38"


def refused(
    response: httpx.Response, media_type: str, status: int, code: str = "BAD_REQUEST"
) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].split(";")[0] == media_type
    body: dict[str, Any] = response.json()
    assert "data" not in body, body
    assert len(body["errors"]) == 1 and body["errors"][0]["message"]
    assert body["errors"][0]["extensions"]["code"] == code
    return body


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        (None, JSON),
        ("", JSON),
        ("*/*", JSON),
        ("application/*", JSON),
        (JSON, JSON),
        ("text/html", JSON),  # nothing we speak: the default, as the spec allows
        (GRAPHQL_RESPONSE_JSON, GRAPHQL_RESPONSE_JSON),
        (f"{GRAPHQL_RESPONSE_JSON}, {JSON};q=0.9", GRAPHQL_RESPONSE_JSON),
        (f"{JSON}, {GRAPHQL_RESPONSE_JSON}", GRAPHQL_RESPONSE_JSON),
        (f"{GRAPHQL_RESPONSE_JSON};q=0.5, {JSON}", JSON),
        (f"{GRAPHQL_RESPONSE_JSON};q=0", JSON),
        (f"{GRAPHQL_RESPONSE_JSON};q=x", JSON),
        ("Application/GraphQL-Response+JSON", GRAPHQL_RESPONSE_JSON),
    ],
)
def test_negotiation(accept: str | None, expected: str) -> None:
    assert negotiate(accept) == expected


@BOTH
@pytest.mark.parametrize(
    "content",
    [b"{not json", b"", b'[{"query": "{ __typename }"}]', b'"{ __typename }"'],
    ids=["bad json", "empty", "batch", "string"],
)
async def test_unreadable_bodies(
    api: Api, accept: dict[str, str], media_type: str, content: bytes
) -> None:
    response = await api.client.post(
        "/graphql", content=content, headers={"Content-Type": "application/json", **accept}
    )
    body = refused(response, media_type, 400)
    if content.startswith(b"["):
        assert "Batched requests" in body["errors"][0]["message"]


@BOTH
async def test_no_or_another_content_type(
    api: Api, accept: dict[str, str], media_type: str
) -> None:
    for content_type in (None, "text/plain", "application/x-www-form-urlencoded"):
        headers = dict(accept) | ({"Content-Type": content_type} if content_type else {})
        response = await api.client.post(
            "/graphql", content=b'{"query": "{ __typename }"}', headers=headers
        )
        refused(response, media_type, 400)


@BOTH
@pytest.mark.parametrize(
    "payload",
    [
        {},
        {"variables": {}},
        {"query": 42},
        {"query": "{ __typename }", "variables": "x"},
        {"query": "{ __typename }", "extensions": [1]},
        {"query": "query A { __typename }", "operationName": "B"},
    ],
)
async def test_missing_or_malformed_parameters(
    api: Api, accept: dict[str, str], media_type: str, payload: dict[str, Any]
) -> None:
    response = await api.client.post("/graphql", json=payload, headers=accept)
    refused(response, media_type, 400)


@BOTH
async def test_a_persisted_query_hash_alone(
    api: Api, accept: dict[str, str], media_type: str
) -> None:
    """Apollo's automatic persisted queries, a hash never registered: the code tells its
    link to send the query with it (which runs, and is not stored: see test_persisted.py)."""
    extensions = {"persistedQuery": {"version": 1, "sha256Hash": HASH}}
    response = await api.client.post("/graphql", json={"extensions": extensions}, headers=accept)
    refused(response, media_type, 400, "PERSISTED_QUERY_NOT_FOUND")
    response = await api.client.get(
        "/graphql",
        params={"extensions": json.dumps(extensions)},
        headers=accept,
    )
    refused(response, media_type, 400, "PERSISTED_QUERY_NOT_FOUND")


@BOTH
async def test_a_mutation_by_get(api: Api, accept: dict[str, str], media_type: str) -> None:
    response = await api.client.get(
        "/graphql",
        params={"query": 'mutation { createPool(input: {name: "x"}) { errors { code } } }'},
        headers=accept,
    )
    refused(response, media_type, 405, "METHOD_NOT_ALLOWED")
    assert response.headers["allow"] == "POST"


@BOTH
async def test_a_get_without_a_query(api: Api, accept: dict[str, str], media_type: str) -> None:
    refused(await api.client.get("/graphql", headers=accept), media_type, 400)


async def test_document_errors_are_400_only_in_the_new_media_type(api: Api) -> None:
    for query in ("{ __typename", "{ noSuchField }"):
        new = await api.client.post("/graphql", json={"query": query}, headers=NEW)
        assert new.status_code == 400, new.text
        assert new.headers["content-type"].startswith(GRAPHQL_RESPONSE_JSON)
        assert "data" not in new.json() and new.json()["errors"][0]["extensions"]["code"]
        legacy = await api.client.post("/graphql", json={"query": query}, headers=LEGACY)
        assert legacy.status_code == 200, legacy.text
        assert legacy.headers["content-type"].startswith(JSON)
        assert legacy.json()["data"] is None and legacy.json()["errors"][0]["extensions"]["code"]


@BOTH
async def test_a_good_request_is_a_200_in_the_negotiated_type(
    api: Api, accept: dict[str, str], media_type: str
) -> None:
    response = await api.client.post("/graphql", json={"query": "{ __typename }"}, headers=accept)
    assert response.status_code == 200
    assert response.headers["content-type"] == f"{media_type}; charset=utf-8"
    assert response.json()["data"] == {"__typename": "Query"}


@BOTH
async def test_an_oversized_body(api: Api, accept: dict[str, str], media_type: str) -> None:
    async def body() -> AsyncIterator[bytes]:
        yield b"x" * 10

    response = await api.client.post(
        "/graphql",
        content=body(),
        headers={"Content-Type": "application/json", "Content-Length": "2000000", **accept},
    )
    refused(response, media_type, 413, "PAYLOAD_TOO_LARGE")
