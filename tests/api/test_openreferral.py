"""Open Referral UK endpoints: open, CORS for any origin, paginated, in the HSDS UK shape,
with nothing personal."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from jsonschema import Draft202012Validator
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from care import openreferral
from tests.factories import Build

SERVICE = Draft202012Validator(
    json.loads((Path(__file__).parent / "data" / "hsds_uk_service.json").read_text()),
    format_checker=Draft202012Validator.FORMAT_CHECKER,
)
PAGE_FIELDS = {
    "total_items": int,
    "total_pages": int,
    "page_number": int,
    "size": int,
    "first_page": bool,
    "last_page": bool,
    "empty": bool,
    "contents": list,
}


@pytest.fixture
async def world(db: AsyncSession) -> dict[str, Any]:
    b = Build(db)
    await b.las()
    await b.coop()
    worker = await b.worker("Sally Supportworker")
    clusters = [await b.cluster(f"Area {i}", support_worker=worker) for i in range(3)]
    planned = await b.cluster("Not Yet")
    await db.execute(
        text("UPDATE cluster SET status = 'PLANNED' WHERE id = :id"), {"id": planned.id}
    )
    await b.service_user("Ada Private", cluster=clusters[0])
    await db.commit()
    return {"clusters": clusters, "planned": planned}


def check_open(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    assert response.headers["access-control-allow-origin"] == "*"
    return response.json()


async def test_about(client: httpx.AsyncClient) -> None:
    body = check_open(await client.get("/openreferral/"))
    assert body["version"] == "3.0"
    assert body["profile"].startswith("https://") and body["openapi_url"].endswith(".json")


async def test_services_are_paginated_in_the_hsds_shape(
    client: httpx.AsyncClient, world: dict[str, Any]
) -> None:
    first = check_open(await client.get("/openreferral/services", params={"per_page": 2}))
    second = check_open(
        await client.get("/openreferral/services", params={"per_page": 2, "page": 2})
    )
    for page in (first, second):
        for name, kind in PAGE_FIELDS.items():
            assert isinstance(page[name], kind), name
    assert (first["total_items"], first["total_pages"], first["size"]) == (3, 2, 2)
    assert first["first_page"] and not first["last_page"] and not first["empty"]
    assert second["size"] == 1 and second["last_page"] and not second["first_page"]
    services = first["contents"] + second["contents"]
    for service in services:
        errors = [e.message for e in SERVICE.iter_errors(service)]
        assert not errors, errors
    assert [s["name"] for s in services] == [
        "Test Care Co-op: Area 0",
        "Test Care Co-op: Area 1",
        "Test Care Co-op: Area 2",
    ]
    assert len({s["id"] for s in services}) == 3  # the planned cluster is not listed
    beyond = check_open(await client.get("/openreferral/services", params={"page": 9}))
    assert beyond["empty"] and beyond["contents"] == []


async def test_one_service_in_full(client: httpx.AsyncClient, world: dict[str, Any]) -> None:
    listed = check_open(await client.get("/openreferral/services"))["contents"][0]
    body = check_open(await client.get(f"/openreferral/services/{listed['id']}"))
    assert not [e.message for e in SERVICE.iter_errors(body)]
    assert body["id"] == listed["id"] and body["url"].endswith(listed["id"])
    assert body["service_areas"][0]["name"] == "Barnet"
    assert body["service_areas"][0]["extent"] == "N12"
    assert body["languages"][0]["code"] == "en"
    text_ = json.dumps(body)
    for private in ("Sally Supportworker", "Ada Private", "staff@example.org"):
        assert private not in text_


async def test_unknown_and_unlisted_services_are_404_and_still_open(
    client: httpx.AsyncClient, world: dict[str, Any], app: Any
) -> None:
    base = app.state.settings.base_url
    planned = openreferral.service_id(base, world["planned"].id)
    for value in (str(uuid.uuid4()), "not-a-uuid", str(planned), "x" * 500):
        check_open(await client.get(f"/openreferral/services/{value}"), 404)
    for bad in ({"page": 0}, {"per_page": 101}, {"page": "x"}, {"page": "١"}, {"per_page": "-1"}):
        check_open(await client.get("/openreferral/services", params=bad), 400)


def test_service_ids_are_stable_per_instance_and_read_back() -> None:
    a = openreferral.service_id("https://a.example", 42)
    assert a == openreferral.service_id("https://a.example", 42)
    assert a != openreferral.service_id("https://b.example", 42)
    assert a.version == 8
    assert openreferral.cluster_of("https://a.example", str(a)) == 42
    assert openreferral.cluster_of("https://b.example", str(a)) is None
