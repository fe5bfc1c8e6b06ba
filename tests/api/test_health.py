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
    assert r.json()["events"] == "listening"


async def test_graphiql_is_served(client: httpx.AsyncClient) -> None:
    r = await client.get("/graphql", headers={"Accept": "text/html"})
    assert r.status_code == 200
    assert "graphiql" in r.text.lower()


async def test_cors_allows_configured_frontends(settings) -> None:  # type: ignore[no-untyped-def]
    from api.app import create_app

    app = create_app(
        settings.model_copy(update={"cors_origins": "https://rota.example.org"}),
        settings.database_url,
    )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
        r = await c.options(
            "/graphql",
            headers={
                "Origin": "https://rota.example.org",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization,content-type",
            },
        )
        assert r.headers["access-control-allow-origin"] == "https://rota.example.org"
        r = await c.options(
            "/graphql",
            headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
        )
        assert "access-control-allow-origin" not in r.headers
