"""The HTTP fast lane (api/fastlane.py): a query the compiled path answered before is
answered again ahead of routing and Strawberry, with the same bytes; whatever the full path
would refuse, or the lane cannot vouch for, goes to the full path.

The differential test (tests/schema/test_compiled_reads.py) runs every operation it
compares through the lane too, for every kind of caller, and asks for the same bytes and
headers; these tests are about what the lane must hand over."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy import event, update
from sqlalchemy.ext.asyncio import AsyncSession

from api.app import create_app
from api.fastlane import FastLane
from api.settings import Settings
from care.enums import Role
from care.models import Member
from care.tokens import revoke_member_tokens, revoke_token
from schema.context import Limits
from tests.api.test_timeouts import client_of, code_of, post, running, table_locked
from tests.conftest import Api
from tests.factories import Build

ME = "{ me { name } }"
MEMBERS = """query Members($first: Int!, $class: MembershipClass) {
  members(first: $first, membershipClass: $class) { totalCount edges { node { name } } }
}"""


def answered(api: Api) -> int:
    count: int = api.client._transport.app.state.fast_lane_answered  # type: ignore[attr-defined]
    return count


async def _pa(db: AsyncSession) -> Member:
    b = Build(db)
    await b.las()
    pa = await b.pa()
    await db.commit()
    return pa


async def test_a_repeated_query_is_answered_by_the_lane_with_the_same_bytes(
    api: Api, db: AsyncSession, app: Any
) -> None:
    pa = await _pa(db)
    token = api.token(Role.PA, pa.id)
    first = await api.post(ME, token=token)
    before = answered(api)
    second = await api.post(ME, token=token)
    assert answered(api) == before + 1
    assert second.content == first.content
    assert second.json()["data"] == {"me": {"name": pa.name}}
    # Off, the full path answers the same.
    app.state.fast_lane = False
    try:
        third = await api.post(ME, token=token)
    finally:
        app.state.fast_lane = True
    assert answered(api) == before + 1
    assert third.content == first.content


async def test_a_token_revoked_after_the_lane_answered_is_refused(
    api: Api, db: AsyncSession
) -> None:
    pa = await _pa(db)
    one, two, three = (api.tokens.mint(Role.PA, pa.id) for _ in range(3))
    admin = api.tokens.mint(Role.ADMIN)
    for issued in (one, two, three):
        assert (await api.post(ME, token=issued.token)).status_code == 200
    assert (await api.post(MEMBERS, {"first": 5}, token=admin.token)).status_code == 200
    before = answered(api)
    assert (await api.post(ME, token=one.token)).status_code == 200
    assert answered(api) == before + 1

    # One token (a member's; an admin's, which names none), then all of a member's, then
    # the member deactivated: each refused with 401 from the next request on.
    assert await revoke_token(db, one.ref.jti, one.ref.expires_at, pa.id)
    assert await revoke_token(db, admin.ref.jti, admin.ref.expires_at)
    await db.commit()
    refused = await api.post(ME, token=one.token)
    assert refused.status_code == 401
    assert "revoked" in refused.json()["errors"][0]["message"]
    assert (await api.post(MEMBERS, {"first": 5}, token=admin.token)).status_code == 401
    assert (await api.post(ME, token=two.token)).status_code == 200
    assert await revoke_member_tokens(db, pa.id)
    await db.commit()
    assert (await api.post(ME, token=two.token)).status_code == 401
    fresh = api.tokens.mint(Role.PA, pa.id)
    assert (await api.post(ME, token=fresh.token)).status_code == 200
    await db.execute(update(Member).where(Member.id == pa.id).values(active=False))
    await db.commit()
    assert (await api.post(ME, token=fresh.token)).status_code == 401
    assert answered(api) == before + 3  # `one`, `two` and `fresh`, while in force


async def test_a_token_that_expires_is_refused_though_it_verified_before(
    api: Api, db: AsyncSession
) -> None:
    pa = await _pa(db)
    issued = api.tokens.mint(Role.PA, pa.id, ttl=dt.timedelta(seconds=2))
    assert (await api.post(ME, token=issued.token)).status_code == 200
    assert (await api.post(ME, token=issued.token)).status_code == 200
    wait = (issued.ref.expires_at - dt.datetime.now(dt.UTC)).total_seconds()
    await asyncio.sleep(max(wait, 0) + 0.05)
    expired = await api.post(ME, token=issued.token)
    assert expired.status_code == 401
    assert expired.json()["errors"][0]["message"] == "The token has expired."


@pytest.mark.parametrize(
    ("variables", "operation", "code"),
    [
        ({"first": 101}, None, "BAD_USER_INPUT"),  # over the largest page
        ({"first": "five"}, None, "BAD_USER_INPUT"),  # not an Int
        ({"first": 5, "class": "NOBODY"}, None, "BAD_USER_INPUT"),  # not an enum value
        ({"first": 5}, "Other", "BAD_REQUEST"),  # no such operation
    ],
)
async def test_what_the_full_path_refuses_it_still_refuses(
    api: Api,
    db: AsyncSession,
    app: Any,
    variables: dict[str, Any],
    operation: str | None,
    code: str,
) -> None:
    await _pa(db)
    token = api.token(Role.ADMIN)
    assert (await api.post(MEMBERS, {"first": 5}, token=token)).status_code == 200
    before = answered(api)
    body = {"query": MEMBERS, "variables": variables, "operationName": operation}
    headers = {"Authorization": f"Bearer {token}"}
    through_lane = await api.client.post("/graphql", json=body, headers=headers)
    app.state.fast_lane = False
    try:
        full = await api.client.post("/graphql", json=body, headers=headers)
    finally:
        app.state.fast_lane = True
    assert answered(api) == before
    assert through_lane.status_code == full.status_code
    assert through_lane.content == full.content
    assert through_lane.json()["errors"][0]["extensions"]["code"] == code


async def test_a_query_over_the_cost_limit_is_refused_as_before(
    api: Api, db: AsyncSession, app: Any
) -> None:
    await _pa(db)
    token = api.token(Role.ADMIN)
    deep = """query Deep($n: Int!) { clusters(first: $n) { edges { node {
        serviceUsers(first: $n) { edges { node { id
          visits(first: $n) { edges { node { id } } } } } } } } } }"""
    assert (await api.post(deep, {"n": 2}, token=token)).status_code == 200
    before = answered(api)
    too_costly = await api.post(deep, {"n": 100}, token=token)
    assert answered(api) == before
    errors = too_costly.json()["errors"]
    assert errors[0]["extensions"]["code"] == "QUERY_TOO_COSTLY"


async def test_a_statement_timeout_is_answered_by_the_lane_as_the_full_path_answers_it(
    app: Any, db: AsyncSession, migrated_url: str, tmp_path: Path
) -> None:
    """The lane answers a statement the database stopped with the full path's coded 503,
    and does not hand it over to be run (and waited for) a second time."""
    await _pa(db)
    ran = {"lane": 0, "full": 0}  # runs of the compiled statement (`AS in_force`)

    def lane_ran(record: Any) -> None:  # asyncpg's query log: the lane's own fetchrow
        ran["lane"] += "AS in_force" in record.query

    def full_ran(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        ran["full"] += "AS in_force" in statement  # through SQLAlchemy: the full path

    def log_queries(dbapi_connection: Any, *args: Any) -> None:
        dbapi_connection.driver_connection.add_query_logger(lane_ran)

    variables = {"first": 5}
    async with (
        running(migrated_url, tmp_path, db_statement_timeout_ms=300) as short,
        client_of(short) as client,
    ):
        engine = short.state.engine.sync_engine
        event.listen(engine, "before_cursor_execute", full_ran)
        event.listen(engine.pool, "checkout", log_queries)
        # Answered once (here, or by an earlier test: the plans are cached), then by the lane.
        assert (await post(client, short, MEMBERS, variables))[0].status_code == 200
        before = short.state.fast_lane_answered
        assert (await post(client, short, MEMBERS, variables))[0].status_code == 200
        assert short.state.fast_lane_answered == before + 1
        await asyncio.sleep(0)  # asyncpg calls its query loggers soon after a statement
        ran.update(lane=0, full=0)
        async with table_locked(app.state.engine, "member"):
            lane, _ = await post(client, short, MEMBERS, variables)
            await asyncio.sleep(0)
            assert ran == {"lane": 1, "full": 0}, "run once, by the lane"
            assert short.state.fast_lane_answered == before + 2
            short.state.fast_lane = False
            try:
                full, _ = await post(client, short, MEMBERS, variables)
            finally:
                short.state.fast_lane = True
            assert ran == {"lane": 1, "full": 1}
    assert lane.status_code == full.status_code == 503, full.text
    assert code_of(lane) == "DATABASE_TIMEOUT"
    assert lane.headers["content-type"] == full.headers["content-type"]
    assert lane.content == full.content


class _Inner:
    """The app behind the lane: records what reached it."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        message = await receive()
        self.bodies.append(message.get("body", b""))
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})


@pytest.mark.parametrize(
    ("why", "headers", "method", "trusted", "cors"),
    [
        ("trusted documents only", {}, "POST", True, False),
        ("a browser's request, CORS on", {"origin": "http://localhost:5173"}, "POST", False, True),
        ("a partner's signed call", {"signature-input": "sig=()"}, "POST", False, False),
        ("a GET", {}, "GET", False, False),
        ("a form", {"content-type": "application/x-www-form-urlencoded"}, "POST", False, False),
        ("no media type", {"content-type": ""}, "POST", False, False),
        (None, {"origin": "http://localhost:5173"}, "POST", False, False),  # the lane answers
    ],
)
async def test_the_lane_steps_aside(
    api: Api,
    app: Any,
    why: str | None,
    headers: dict[str, str],
    method: str,
    trusted: bool,
    cors: bool,
) -> None:
    assert (await api.post(ME)).status_code == 200  # answered once: the lane knows it
    inner = _Inner()
    settings = app.state.settings
    lane = FastLane(
        inner,
        path="/graphql",
        schema=app.state.graphql.schema._schema,
        tokens=app.state.tokens,
        limits=Limits(max_page_size=settings.max_page_size, max_query_cost=settings.max_query_cost),
        cors=cors,
    )
    body = orjson.dumps({"query": ME})
    sent = {k: v for k, v in ({"content-type": "application/json"} | headers).items() if v}
    scope = {
        "type": "http",
        "method": method,
        "path": "/graphql",
        "headers": [(k.encode(), v.encode()) for k, v in sent.items()],
        "app": app,
    }
    received = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive() -> dict[str, Any]:
        return received.pop(0)

    answers: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        answers.append(message)

    app.state.graphql.trusted_documents_only = trusted
    try:
        await lane(scope, receive, send)
    finally:
        app.state.graphql.trusted_documents_only = False
    if why is None:
        assert inner.bodies == []
        assert answers[0]["status"] == 200
        assert orjson.loads(answers[1]["body"])["data"] == {"me": None}
    else:
        assert inner.bodies == [body], why
        assert answers[0]["status"] == 204


async def test_an_anonymous_caller_is_answered_with_no_token_to_check(api: Api) -> None:
    first = await api.post(ME)
    before = answered(api)
    second = await api.post(ME)
    assert second.content == first.content
    assert second.json()["data"] == {"me": None}
    assert answered(api) == before + 1


@pytest.mark.parametrize(
    "accept", ["application/graphql-response+json", "application/json", "*/*", "text/html"]
)
async def test_the_media_type_is_the_one_the_full_path_negotiates(
    api: Api, db: AsyncSession, app: Any, accept: str
) -> None:
    pa = await _pa(db)
    headers = {"Authorization": f"Bearer {api.token(Role.PA, pa.id)}", "Accept": accept}
    body = {"query": ME}
    app.state.fast_lane = False
    try:
        full = await api.client.post("/graphql", json=body, headers=headers)
    finally:
        app.state.fast_lane = True
    before = answered(api)
    lane = await api.client.post("/graphql", json=body, headers=headers)
    assert answered(api) == before + 1
    assert lane.headers["content-type"] == full.headers["content-type"]
    assert lane.content == full.content


async def test_a_document_another_schema_answered_is_validated_again(
    api: Api, app: Any, settings: Settings
) -> None:
    """Parsing and validation are skipped only for a text this schema validated: an app
    with a lower depth limit (a schema of its own) refuses what the usual one answered."""
    deep = "{ clusters(first: 1) { edges { node { serviceUsers(first: 1) { edges { node {"
    deep += " visits(first: 1) { edges { node { pa { name } } } } } } } } } } }"
    for _ in range(2):
        assert "errors" not in (await api.post(deep, token=api.token(Role.ADMIN))).json()
    assert settings.database_url is not None
    strict = create_app(settings.model_copy(update={"max_query_depth": 4}), settings.database_url)
    async with strict.router.lifespan_context(strict):
        transport = httpx.ASGITransport(app=strict)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            other = Api(client, strict)
            for _ in range(2):
                body = (await other.post(deep, token=other.token(Role.ADMIN))).json()
                assert "depth" in body["errors"][0]["message"], body
        assert strict.state.fast_lane_answered == 0
