"""Persisted operations (trusted documents): GraphQL documents a frontend registers at
build time (`coopnet operations register`), which clients then name by hash.

A request names one by `documentId` (the GraphQL-over-HTTP persisted documents appendix:
`sha256:<hex>`, or the bare hex GraphQL Code Generator's client preset sends) or by
Apollo's `extensions.persistedQuery.sha256Hash`. Documents are never stored from a
request: only the CLI registers them, after checking each hash and validating each
document against the schema, so nobody can use the table to store text."""

from __future__ import annotations

import hashlib
import re
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from graphql import GraphQLSchema, parse, validate
from graphql.error import GraphQLSyntaxError
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from care.models import (
    PERSISTED_CLIENT_MAX_CHARS,
    PERSISTED_DOCUMENT_MAX_CHARS,
    PersistedOperation,
)

SHA256_HEX = re.compile(r"[0-9a-f]{64}")
# Apollo's link reads PersistedQueryNotFound (by message or code) as "send the document
# with the hash".
PERSISTED_QUERY_NOT_FOUND = "PERSISTED_QUERY_NOT_FOUND"
PERSISTED_QUERY_REQUIRED = "PERSISTED_QUERY_REQUIRED"
SHA256_PREFIX = "sha256:"


class ManifestError(Exception):
    """A manifest that cannot be registered: nothing was stored."""


def document_hash(document: str) -> str:
    """The hash a document is registered under: SHA-256 of its exact UTF-8 text, in hex."""
    return hashlib.sha256(document.encode()).hexdigest()


def requested_hash(document_id: object, extensions: Mapping[str, Any] | None) -> str | None:
    """The hash a request names, if any; ValueError for one in a shape we cannot read.

    A hash that could never have been registered (not 64 lower-case hex digits) is
    returned as it is: the lookup finds nothing, and the client hears NOT_FOUND."""
    if document_id is not None:
        if not isinstance(document_id, str) or not document_id:
            raise ValueError("`documentId` must be a non-empty string.")
        prefix, colon, payload = document_id.partition(":")
        if not colon:
            return document_id  # a custom id: Code Generator sends the bare hash
        if prefix != "sha256":
            raise ValueError(f"`documentId` prefix {prefix!r} is not supported: use sha256:<hex>.")
        return payload
    persisted = (extensions or {}).get("persistedQuery")
    if persisted is None:
        return None
    sha = persisted.get("sha256Hash") if isinstance(persisted, dict) else None
    if not isinstance(sha, str):
        raise ValueError("`extensions.persistedQuery.sha256Hash` must be a string.")
    return sha


class PersistedDocuments:
    """Registered documents by hash, for the server: one indexed read per hash, then
    kept in a bounded LRU in the process. A row never changes (its key is the hash of
    its text), so a cached entry cannot go stale. Misses are not cached: a document
    registered while the server runs is found at once."""

    def __init__(self, max_entries: int = 2000) -> None:
        self.max_entries = max_entries
        self._cache: OrderedDict[str, str] = OrderedDict()

    async def lookup(self, session: AsyncSession, key: str) -> str | None:
        if not SHA256_HEX.fullmatch(key):
            return None
        document = self._cache.get(key)
        if document is not None:
            self._cache.move_to_end(key)
            return document
        document = await session.scalar(
            select(PersistedOperation.document).where(PersistedOperation.hash == key)
        )
        if document is not None:
            self._cache[key] = document
            if len(self._cache) > self.max_entries:
                self._cache.popitem(last=False)
        return document


def read_manifest(data: object) -> dict[str, str]:
    """The `{hash: document}` entries of a GraphQL Code Generator persisted-documents
    manifest or a Relay persisted-queries file (both are that one JSON object)."""
    if not isinstance(data, dict) or not data:
        raise ManifestError(
            'The manifest must be a non-empty JSON object {"<sha256 hex>": "<document>"}.'
        )
    entries: dict[str, str] = {}
    for key, document in data.items():
        if not isinstance(document, str):
            raise ManifestError(f"The entry {key!r} is not a document (a string).")
        entries[str(key)] = document
    return entries


@dataclass(frozen=True)
class Problem:
    hash: str
    reason: str

    def __str__(self) -> str:
        return f"{self.hash}: {self.reason}"


def check_manifest(entries: Mapping[str, str], schema: GraphQLSchema) -> list[Problem]:
    """Everything wrong with the entries (an empty list: all may be registered)."""
    problems: list[Problem] = []
    for key, document in entries.items():
        if not SHA256_HEX.fullmatch(key):
            problems.append(
                Problem(
                    key,
                    "not a SHA-256 hash (64 lower-case hex digits): generate the manifest "
                    "with sha256 (Code Generator: persistedDocuments.hashAlgorithm "
                    "'sha256'; Relay: persistConfig.algorithm 'SHA256')",
                )
            )
            continue
        if document_hash(document) != key:
            problems.append(
                Problem(key, f"is not the SHA-256 of its document ({document_hash(document)})")
            )
            continue
        if len(document) > PERSISTED_DOCUMENT_MAX_CHARS:
            problems.append(
                Problem(key, f"the document is over {PERSISTED_DOCUMENT_MAX_CHARS} characters")
            )
            continue
        try:
            errors = validate(schema, parse(document))
        except GraphQLSyntaxError as exc:
            problems.append(Problem(key, f"does not parse: {exc.message}"))
            continue
        if errors:
            problems.append(
                Problem(key, "does not validate: " + "; ".join(e.message for e in errors))
            )
    return problems


def check_client(client: str | None) -> None:
    if client is not None and not 0 < len(client) <= PERSISTED_CLIENT_MAX_CHARS:
        raise ManifestError(f"--client must be 1 to {PERSISTED_CLIENT_MAX_CHARS} characters.")


async def register(
    session: AsyncSession, entries: Mapping[str, str], client: str | None
) -> tuple[int, int]:
    """Store checked entries (check_manifest first): (newly registered, already there).
    Idempotent: a hash already registered keeps its row (the same text, by its hash)."""
    if not entries:
        return 0, 0
    statement = (
        insert(PersistedOperation)
        .values([{"hash": k, "document": d, "client": client} for k, d in entries.items()])
        .on_conflict_do_nothing(index_elements=[PersistedOperation.hash])
        .returning(PersistedOperation.hash)
    )
    added = len((await session.scalars(statement)).all())
    return added, len(entries) - added
