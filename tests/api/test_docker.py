"""The Docker image's parts that can be run without a Docker daemon: the entrypoint's
configuration check, the health check command, and the build context's allowlist."""

from __future__ import annotations

import fnmatch
import json
import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from api.auth import TokenService, load_keys
from api.settings import Settings
from care.enums import Role
from tests.conftest import ROOT

ENTRYPOINT = ROOT / "docker" / "entrypoint.sh"
DOCKERFILE = (ROOT / "Dockerfile").read_text()


def entrypoint(env: dict[str, str], *command: str) -> subprocess.CompletedProcess[str]:
    base = {"PATH": os.environ["PATH"]}
    return subprocess.run(
        ["sh", str(ENTRYPOINT), *command],
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=10,
    )


@pytest.mark.parametrize(
    "env", [{}, {"DATABASE_URL": ""}, {"EMBEDDED_DATABASE": "0"}, {"EMBEDDED_DATABASE": ""}]
)
def test_the_image_refuses_to_start_without_a_database(env: dict[str, str]) -> None:
    out = entrypoint(env, "echo", "started")
    assert out.returncode == 64
    assert out.stdout == ""  # the command did not run
    assert "DATABASE_URL is not set" in out.stderr
    assert "EMBEDDED_DATABASE=1" in out.stderr


@pytest.mark.parametrize(
    "env",
    [
        {"DATABASE_URL": "postgresql://coopnet@db:5432/coopnet"},
        {"EMBEDDED_DATABASE": "1"},
        {"EMBEDDED_DATABASE": "true"},
    ],
)
def test_the_image_starts_with_a_database_or_when_asked_for_an_embedded_one(
    env: dict[str, str],
) -> None:
    # `exec`: the command replaces the shell (same pid), so SIGTERM reaches it directly.
    out = entrypoint(env, "sh", "-c", 'echo "$PPID $0 $1"', "arg with spaces", "x")
    assert out.returncode == 0, out.stderr
    assert out.stdout.split(" ", 1)[1] == "arg with spaces x\n"
    if "EMBEDDED_DATABASE" in env:
        assert "embedded PostgreSQL" in out.stderr


def test_the_entrypoint_execs_the_command() -> None:
    process = subprocess.Popen(
        ["sh", str(ENTRYPOINT), "sh", "-c", "echo $$"],
        env={"PATH": os.environ["PATH"], "DATABASE_URL": "postgresql://db/coopnet"},
        stdout=subprocess.PIPE,
        text=True,
    )
    out, _ = process.communicate(timeout=10)
    assert int(out) == process.pid


@pytest.fixture
def healthz() -> Iterator[int]:
    class Health(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the http.server API
            self.send_response(200 if self.path == "/healthz" else 404)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()


def test_the_health_check_asks_the_configured_port(healthz: int) -> None:
    line = next(x for x in DOCKERFILE.splitlines() if x.startswith("HEALTHCHECK"))
    command = json.loads(line.split(" CMD ", 1)[1])
    env = {"PATH": os.environ["PATH"]}
    ok = subprocess.run(command, env={**env, "PORT": str(healthz)}, timeout=10)
    assert ok.returncode == 0
    elsewhere = subprocess.run(
        command, env={**env, "PORT": str(healthz + 1)}, capture_output=True, timeout=10
    )
    assert elsewhere.returncode != 0


def _ignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule, enough for this file: the last pattern that matches the path or one
    of its parent directories decides (`!` re-includes); `**/x` matches x at any depth."""
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    ignored = False
    for pattern in patterns:
        glob = pattern.removeprefix("!")
        if glob.startswith("**/"):
            hit = any(fnmatch.fnmatchcase(part, glob[3:]) for part in parts)
        else:
            hit = any(fnmatch.fnmatchcase(prefix, glob) for prefix in prefixes)
        if hit:
            ignored = not pattern.startswith("!")
    return ignored


def test_the_build_context_holds_what_the_image_copies_and_no_secrets() -> None:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    patterns = [x.strip() for x in lines if x.strip() and not x.startswith("#")]
    copied = ["pyproject.toml", "api/app.py", "care/models.py", "schema/build.py"]
    copied += ["migrations/env.py", "federation", "docker/entrypoint.sh", "alembic.ini"]
    copied += ["api/graphiql/package.json", "api/graphiql/package-lock.json"]
    copied += ["api/graphiql/examples.graphql", "api/static/graphiql.js"]
    for path in copied:
        assert not _ignored(path, patterns), path
    secret = [".git/config", ".venv/bin/python", "var/keys/jwt-ed25519.pem", "var/pg/PG_VERSION"]
    secret += ["tests/conftest.py", "api/__pycache__/app.cpython-311.pyc", "care/local.pem"]
    secret += [".env", "bench/cluster_page.py"]
    # A developer's npm install never enters the image: its build runs `npm ci` itself.
    secret += ["api/graphiql/node_modules/graphiql/graphiql.min.js"]
    for path in secret:
        assert _ignored(path, patterns), path


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_a_key_made_as_the_readme_says_signs_tokens(tmp_path: Path) -> None:
    private, public = tmp_path / "jwt-ed25519.pem", tmp_path / "jwt-ed25519.pub.pem"
    subprocess.run(
        ["openssl", "genpkey", "-algorithm", "ed25519", "-out", str(private)], check=True
    )
    subprocess.run(
        ["openssl", "pkey", "-in", str(private), "-pubout", "-out", str(public)], check=True
    )
    signer = TokenService(
        load_keys(Settings(jwt_private_key_file=private)), "coopnet", "coopnet", 3600
    )
    verifier = TokenService(
        load_keys(Settings(jwt_public_key_file=public)), "coopnet", "coopnet", 3600
    )
    assert verifier.verify(signer.issue(Role.ADMIN)).viewer.role is Role.ADMIN
