from __future__ import annotations

import httpx


async def test_healthz_answers(client: httpx.AsyncClient) -> None:
    r = await client.get("/healthz")
    assert r.status_code == 200
    assert r.json() == {"status": "ok"}


async def test_readyz_reports_migrations_at_head(client: httpx.AsyncClient) -> None:
    from api.migrate import head_revision

    r = await client.get("/readyz")
    assert r.status_code == 200, r.text
    assert r.json()["revision"] == head_revision()


async def test_graphiql_is_served(client: httpx.AsyncClient) -> None:
    r = await client.get("/graphql", headers={"Accept": "text/html"})
    assert r.status_code == 200
    assert "graphiql" in r.text.lower()
