"""`serve --dev` lets a frontend's own development server on this machine
(http://localhost:3000 and the like) call the API; without --dev only CORS_ORIGINS may."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from api.app import create_app
from api.settings import Settings

LOCAL_DEV_SERVERS = [
    "http://localhost:3000",
    "http://localhost:5173",
    "http://127.0.0.1:8080",
    "http://[::1]:3000",
    "http://localhost",
]
NEVER = [
    "https://evil.example",
    "http://localhost.evil.example:3000",
    "http://localhost:3000.evil.example",
    "http://evil.example/http://localhost:3000",
    "http://127.0.0.2:3000",
    "http://10.0.0.5:3000",
    "null",
]


async def _preflight(settings: Settings, origin: str, *, dev: bool) -> httpx.Response:
    app = create_app(settings, settings.database_url or "", dev=dev)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
        return await c.options(
            "/graphql",
            headers={
                "Origin": origin,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization,content-type",
            },
        )


@pytest.mark.parametrize("origin", LOCAL_DEV_SERVERS)
async def test_dev_mode_allows_local_development_servers(settings: Any, origin: str) -> None:
    r = await _preflight(settings, origin, dev=True)
    assert r.status_code == 200, r.text
    assert r.headers["access-control-allow-origin"] == origin
    assert "authorization" in r.headers["access-control-allow-headers"].lower()


@pytest.mark.parametrize("origin", LOCAL_DEV_SERVERS)
async def test_without_dev_mode_local_origins_are_refused(settings: Any, origin: str) -> None:
    r = await _preflight(settings, origin, dev=False)
    assert "access-control-allow-origin" not in r.headers
    configured = settings.model_copy(update={"cors_origins": "https://rota.example.org"})
    r = await _preflight(configured, origin, dev=False)
    assert "access-control-allow-origin" not in r.headers


@pytest.mark.parametrize("origin", NEVER)
async def test_dev_mode_allows_no_other_origin(settings: Any, origin: str) -> None:
    r = await _preflight(settings, origin, dev=True)
    assert "access-control-allow-origin" not in r.headers


async def test_dev_mode_keeps_the_configured_origins(settings: Any) -> None:
    configured = settings.model_copy(update={"cors_origins": "https://rota.example.org"})
    for origin in ("https://rota.example.org", "http://localhost:3000"):
        r = await _preflight(configured, origin, dev=True)
        assert r.headers["access-control-allow-origin"] == origin
