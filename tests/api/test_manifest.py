"""The federation manifest (`GET /.well-known/coopnet`) and the instance's keys."""

from __future__ import annotations

import asyncio
import stat
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from sqlalchemy.ext.asyncio import AsyncSession

import api.logging
from api.app import create_app
from api.cli import WORKER_ENV, build_parser, cmd_serve, worker_app
from api.settings import Settings
from federation.identity import (
    CURRENT,
    key_from_jwk,
    load_or_create_identity,
    rotate,
    thumbprint,
)
from tests.factories import ENFIELD, Build


async def _manifest(app: Any) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
            return await c.get("/.well-known/coopnet")


async def test_manifest_is_public_and_lists_profile_las_keys(
    client: httpx.AsyncClient, db: AsyncSession, app: Any
) -> None:
    b = Build(db)
    await b.las()
    await b.coop()
    sw = await b.worker()
    await b.cluster(support_worker=sw)
    await b.cluster("Enfield Town", la=ENFIELD)
    await b.service_user(cluster=None)
    await b.pa()
    await db.commit()

    r = await client.get("/.well-known/coopnet")  # no token
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/json"
    assert r.headers["cache-control"] == "public, max-age=300"
    body = r.json()
    assert body["protocolVersions"] == ["coopnet-federation/1"]
    assert body["graphqlEndpoint"] == "http://127.0.0.1:8000/graphql"
    assert body["coop"]["name"] == "Test Care Co-op"
    assert body["coop"]["kind"] == "MULTI_STAKEHOLDER"
    assert body["coop"]["societyNumber"] == "RS001"
    assert [la["gssCode"] for la in body["localAuthorities"]] == sorted(["E09000003", ENFIELD])
    (jwk,) = body["keys"]
    assert set(jwk) == {"kty", "crv", "x", "kid", "use", "alg"}
    assert (jwk["kty"], jwk["crv"], jwk["use"], jwk["alg"]) == ("OKP", "Ed25519", "sig", "EdDSA")
    assert jwk["kid"] == app.state.identity.kid
    assert key_from_jwk(jwk) is not None  # the kid is the key's RFC 7638 thumbprint

    # No personal data: nothing of a member (names, emails, phones, postcodes) appears.
    raw = r.text
    for personal in ("Sam Support", "Ada User", "Pat Assistant", "example.org", "07700", "N12"):
        assert personal not in raw


def test_rfc7638_thumbprint_of_a_known_key() -> None:
    # RFC 8037, appendix A.3: the thumbprint of the example Ed25519 public key.
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    from federation.identity import b64url_decode

    key = Ed25519PublicKey.from_public_bytes(
        b64url_decode("11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo")
    )
    assert thumbprint(key) == "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"


async def test_keys_created_on_first_start_and_stable_across_restarts(
    settings: Settings, tmp_path: Path
) -> None:
    s = settings.model_copy(update={"data_dir": tmp_path})
    first = await _manifest(create_app(s, s.database_url or ""))
    key_file = tmp_path / "keys" / "federation" / CURRENT
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    second = await _manifest(create_app(s, s.database_url or ""))
    assert first.json()["keys"] == second.json()["keys"]
    # Separate from the token key.
    assert key_file.read_bytes() != (tmp_path / "keys" / "jwt-ed25519.pem").read_bytes()


async def test_rotation_publishes_both_keys(settings: Settings, tmp_path: Path) -> None:
    s = settings.model_copy(update={"data_dir": tmp_path})
    before = (await _manifest(create_app(s, s.database_url or ""))).json()["keys"]
    rotate(tmp_path / "keys" / "federation")
    after = (await _manifest(create_app(s, s.database_url or ""))).json()["keys"]
    assert len(after) == 2
    assert after[1] == before[0]  # the old key is still published, after the new one
    assert after[0]["kid"] != before[0]["kid"]


async def test_configured_key_file_and_previous_keys(settings: Settings, tmp_path: Path) -> None:
    old = load_or_create_identity(tmp_path / "old")
    new = load_or_create_identity(tmp_path / "new")
    s = settings.model_copy(
        update={
            "data_dir": tmp_path / "data",
            "federation_key_file": tmp_path / "new" / CURRENT,
            "federation_previous_key_files": str(tmp_path / "old" / CURRENT),
            "public_base_url": "https://care.example.coop/",
        }
    )
    body = (await _manifest(create_app(s, s.database_url or ""))).json()
    assert [k["kid"] for k in body["keys"]] == [new.kid, old.kid]
    assert body["graphqlEndpoint"] == "https://care.example.coop/graphql"
    # A configured key file is used, never created: nothing under DATA_DIR/keys/federation.
    assert not (tmp_path / "data" / "keys" / "federation" / CURRENT).exists()


def test_cli_rotates_and_retires_keys(settings: Settings, tmp_path: Path) -> None:
    from tests.api.test_cli import run

    s = settings.model_copy(update={"data_dir": tmp_path})
    missing = run(["federation", "rotate"], s)
    assert missing.returncode == 2 and "No federation key" in missing.stderr
    assert not (tmp_path / "keys" / "federation" / CURRENT).exists()  # never created here

    first = load_or_create_identity(tmp_path / "keys" / "federation")  # as the server does
    out = run(["federation", "rotate"], s)
    assert out.returncode == 0, out.stderr
    current, previous = out.stdout.split()[1::2]
    assert previous == first.kid and current != first.kid
    listed = run(["federation", "keys"], s)
    assert listed.stdout == out.stdout

    out = run(["federation", "retire", "--", first.kid], s)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["current", current]
    assert run(["federation", "retire", "--", first.kid], s).returncode == 2


def test_public_base_url_must_be_an_absolute_http_url() -> None:
    import pydantic
    import pytest

    assert Settings(public_base_url="https://care.example.coop/").base_url == (
        "https://care.example.coop"
    )
    assert Settings(host="0.0.0.0", port=8003).base_url == "http://0.0.0.0:8003"
    for bad in ("care.example.coop", "ftp://care.example.coop", "https://x.coop/?a=1"):
        with pytest.raises(pydantic.ValidationError):
            Settings(public_base_url=bad)


@pytest.mark.parametrize("workers", ["1", "2"])
def test_serve_advertises_the_host_and_port_it_serves(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, workers: str
) -> None:
    """Without PUBLIC_BASE_URL, `serve --host H --port P` publishes http://H:P (not HOST and
    PORT's defaults) in one process and in each worker."""
    served: list[tuple[Any, dict[str, Any]]] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: served.append((app, options)))
    monkeypatch.setattr(api.logging, "configure_logging", lambda *a, **k: None)
    monkeypatch.setenv(WORKER_ENV, "")  # cmd_serve sets it; restored after the test
    args = build_parser().parse_args(
        ["serve", "--workers", workers, "--host", "127.0.0.2", "--port", "8123"]
    )
    assert settings.public_base_url is None and settings.port != 8123
    assert cmd_serve(args, settings.model_copy(update={"data_dir": tmp_path})) == 0
    [(app, options)] = served
    assert (options["host"], options["port"]) == ("127.0.0.2", 8123)
    if workers != "1":
        app = worker_app()  # as each worker process builds its app
    body = asyncio.run(_manifest(app)).json()
    assert body["graphqlEndpoint"] == "http://127.0.0.2:8123/graphql"


def test_public_base_url_wins_over_the_address_served() -> None:
    configured = Settings(public_base_url="https://care.example.coop/")
    assert configured.served_at("0.0.0.0", 9000).base_url == "https://care.example.coop"
    assert Settings().served_at(None, None).base_url == "http://127.0.0.1:8000"
    assert Settings().served_at("::1", 9000).base_url == "http://[::1]:9000"
