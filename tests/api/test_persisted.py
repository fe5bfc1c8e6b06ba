"""Persisted operations (trusted documents, issue 11): a frontend's manifest registered by
`coopnet operations register`, run by hash in both request shapes, and the
TRUSTED_DOCUMENTS_ONLY mode that runs nothing else."""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from api.cli import cmd_operations
from care.models import PersistedOperation
from tests.api.test_cli import run
from tests.conftest import Api

TYPENAME = "query Typename { __typename }"
# Relay's compiler writes documents as it prints them, with newlines.
CLUSTERS = "query Clusters {\n  clusters(first: 1) {\n    totalCount\n  }\n}\n"
MUTATION = 'mutation NewPool { createPool(input: {name: "x"}) { errors { code } } }'


def sha(document: str) -> str:
    return hashlib.sha256(document.encode()).hexdigest()


def write(tmp_path: Path, manifest: dict[str, str], name: str = "manifest.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(manifest))
    return path


async def register(settings: Any, path: Path, client: str | None = "web") -> int:
    """The command's function, off the test's event loop (it runs its own)."""
    args = argparse.Namespace(action="register", file=str(path), client=client)
    return await asyncio.to_thread(cmd_operations, args, settings)


async def registered(db: AsyncSession) -> dict[str, tuple[str, str | None]]:
    rows = await db.execute(
        select(PersistedOperation.hash, PersistedOperation.document, PersistedOperation.client)
    )
    await db.commit()
    return {h: (d, c) for h, d, c in rows}


@pytest.fixture
def trusted_only(app: Any) -> Iterator[None]:
    app.state.graphql.trusted_documents_only = True
    try:
        yield
    finally:
        app.state.graphql.trusted_documents_only = False


@pytest.fixture(autouse=True)
def fresh_cache(app: Any) -> None:
    # Tests empty the table after each test; the server never deletes rows, so its cache
    # would still hold them.
    app.state.graphql.persisted._cache.clear()


async def test_register_a_code_generator_manifest_and_run_it_by_document_id(
    settings: Any, api: Api, db: AsyncSession, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, {sha(TYPENAME): TYPENAME, sha(MUTATION): MUTATION})
    assert await register(settings, path) == 0
    assert "2 operations registered, 0 already registered" in capsys.readouterr().out
    assert await registered(db) == {
        sha(TYPENAME): (TYPENAME, "web"),
        sha(MUTATION): (MUTATION, "web"),
    }
    # Again: nothing new, nothing changed.
    assert await register(settings, path, client="other") == 0
    assert "0 operations registered, 2 already registered" in capsys.readouterr().out
    assert (await registered(db))[sha(TYPENAME)] == (TYPENAME, "web")

    for document_id in (f"sha256:{sha(TYPENAME)}", sha(TYPENAME)):
        response = await api.client.post("/graphql", json={"documentId": document_id})
        assert response.status_code == 200, response.text
        assert response.json()["data"] == {"__typename": "Query"}
        response = await api.client.get("/graphql", params={"documentId": document_id})
        assert response.status_code == 200, response.text
        assert response.json()["data"] == {"__typename": "Query"}
    # A registered mutation runs by POST only, as any mutation.
    response = await api.client.get("/graphql", params={"documentId": sha(MUTATION)})
    assert response.status_code == 405 and response.headers["allow"] == "POST"


async def test_register_a_relay_file_and_run_it_by_apollo_hash(
    settings: Any, api: Api, tmp_path: Path, sql_counter: Any
) -> None:
    assert await register(settings, write(tmp_path, {sha(CLUSTERS): CLUSTERS}), client=None) == 0
    token = api.token("ADMIN")
    extensions = {"persistedQuery": {"version": 1, "sha256Hash": sha(CLUSTERS)}}
    for _ in range(2):
        response = await api.client.post(
            "/graphql",
            json={"extensions": extensions, "operationName": "Clusters"},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert response.status_code == 200, response.text
        assert response.json()["data"] == {"clusters": {"totalCount": 0}}
    # One indexed read for the document, the first time only; then the process's cache.
    lookups = [s for s in sql_counter.statements if "persisted_operation" in s]
    assert len(lookups) == 1


async def test_an_unknown_hash_and_a_bad_document_id(api: Api) -> None:
    unknown = sha("{ __typename }")
    for payload in (
        {"documentId": f"sha256:{unknown}"},
        {"documentId": "not-a-hash"},
        {"extensions": {"persistedQuery": {"version": 1, "sha256Hash": unknown}}},
    ):
        response = await api.client.post("/graphql", json=payload)
        assert response.status_code == 400, response.text
        error = response.json()["errors"][0]
        assert error["extensions"]["code"] == "PERSISTED_QUERY_NOT_FOUND"
        assert error["message"] == "PersistedQueryNotFound"  # what Apollo's link looks for
    for payload in (
        {"documentId": "md5:abc"},
        {"documentId": 42},
        {"extensions": {"persistedQuery": {"version": 1, "sha256Hash": 1}}},
    ):
        response = await api.client.post("/graphql", json=payload)
        assert response.status_code == 400, response.text
        assert response.json()["errors"][0]["extensions"]["code"] == "BAD_REQUEST"


async def test_a_document_with_its_hash_runs_and_is_not_stored(api: Api, db: AsyncSession) -> None:
    """Apollo's retry after PERSISTED_QUERY_NOT_FOUND: the text runs, nothing is stored
    (clients cannot fill the table)."""
    extensions = {"persistedQuery": {"version": 1, "sha256Hash": sha(TYPENAME)}}
    response = await api.client.post("/graphql", json={"query": TYPENAME, "extensions": extensions})
    assert response.status_code == 200, response.text
    assert response.json()["data"] == {"__typename": "Query"}
    assert await db.scalar(select(func.count()).select_from(PersistedOperation)) == 0
    # A hash that is not the text's.
    extensions["persistedQuery"]["sha256Hash"] = sha("{ other }")  # type: ignore[index]
    response = await api.client.post("/graphql", json={"query": TYPENAME, "extensions": extensions})
    assert response.status_code == 400, response.text
    assert response.json()["errors"][0]["extensions"]["code"] == "BAD_REQUEST"


async def test_a_manifest_with_a_wrong_entry_registers_nothing(
    settings: Any, db: AsyncSession, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        ({sha(TYPENAME): TYPENAME, sha("x"): CLUSTERS}, "is not the SHA-256 of its document"),
        ({sha(TYPENAME): TYPENAME, sha("{ nope }"): "{ nope }"}, "does not validate"),
        ({sha("{ x"): "{ x"}, "does not parse"),
        ({hashlib.sha1(b"q").hexdigest(): "q"}, "hashAlgorithm 'sha256'"),
        ({sha(TYPENAME): 1}, "is not a document"),
    ]
    for manifest, message in cases:
        assert await register(settings, write(tmp_path, manifest)) == 2
        err = capsys.readouterr().err
        assert message in err, err
    for content in ("[]", "{}", "{not json"):
        path = tmp_path / "bad.json"
        path.write_text(content)
        assert await register(settings, path) == 2
        assert "error:" in capsys.readouterr().err
    assert await register(settings, tmp_path / "missing.json") == 2
    assert await registered(db) == {}


async def test_trusted_only_refuses_full_queries_and_runs_registered_ones(
    settings: Any, api: Api, tmp_path: Path, trusted_only: None
) -> None:
    assert await register(settings, write(tmp_path, {sha(TYPENAME): TYPENAME})) == 0
    token = api.token("ADMIN")
    for headers in ({}, {"Authorization": f"Bearer {token}"}):
        response = await api.client.post("/graphql", json={"query": TYPENAME}, headers=headers)
        assert response.status_code == 400, response.text
        body = response.json()
        assert "data" not in body
        assert body["errors"][0]["extensions"]["code"] == "PERSISTED_QUERY_REQUIRED"
        response = await api.client.get("/graphql", params={"query": TYPENAME}, headers=headers)
        assert response.json()["errors"][0]["extensions"]["code"] == "PERSISTED_QUERY_REQUIRED"
        response = await api.client.post(
            "/graphql", json={"documentId": f"sha256:{sha(TYPENAME)}"}, headers=headers
        )
        assert response.json()["data"] == {"__typename": "Query"}
    # Apollo's retry (text with its hash) runs the registered document only.
    unregistered = "{ __typename }"
    for query in (TYPENAME, unregistered):
        extensions = {"persistedQuery": {"version": 1, "sha256Hash": sha(query)}}
        response = await api.client.post(
            "/graphql", json={"query": query, "extensions": extensions}
        )
        if query == TYPENAME:
            assert response.json()["data"] == {"__typename": "Query"}
        else:
            assert response.json()["errors"][0]["extensions"]["code"] == (
                "PERSISTED_QUERY_NOT_FOUND"
            )


async def test_register_by_the_command_line(settings: Any, app: Any, tmp_path: Path) -> None:
    path = write(tmp_path, {sha(TYPENAME): TYPENAME})
    out = run(["operations", "register", str(path), "--client", "web"], settings)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "1 operations registered, 0 already registered"
    bad = write(tmp_path, {sha("x"): TYPENAME}, "bad.json")
    out = run(["operations", "register", str(bad)], settings)
    assert out.returncode == 2
    assert "is not the SHA-256 of its document" in out.stderr
    assert "nothing registered" in out.stderr
