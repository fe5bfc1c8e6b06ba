"""Bounded input (issue 6, points 10, 11 and 13): every string and list argument has a
limit, bad values are coded client errors, nothing is written, and searches cost what
they may scan."""

from __future__ import annotations

import base64
import json
import logging
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from care.enums import Role
from care.models import Member, Visit
from tests.conftest import Api
from tests.factories import Build, at, gid

RENAME = """mutation($id: ID!, $input: UpdateMemberInput!) {
  updateMember(id: $id, input: $input) { member { name } errors { code } } }"""
SCHEDULE = """mutation($input: ScheduleVisitInput!) {
  scheduleVisit(input: $input) { visit { id } errors { field code } } }"""
MEMBERS = "query($q: String) { members(nameContains: $q) { totalCount } }"
VISITS = "query($from: DateTime, $before: DateTime) { visits(startsFrom: $from, startsBefore: $before) { totalCount } }"  # noqa: E501


@dataclass
class World:
    coordinator: Any
    su: Any
    pa: Any


@pytest.fixture
async def world(db: AsyncSession) -> World:
    b = Build(db)
    await b.las()
    await b.coop()
    coordinator = await b.worker("Cora Ordinator")
    cluster = await b.cluster("Finchley", support_worker=coordinator)
    su = await b.service_user("Ada User", cluster=cluster)
    pa = await b.pa("Pat Near", cluster=cluster)
    await b.visit(su, pa, at(days=1), tasks=["lunch"])
    await db.commit()
    return World(coordinator, su, pa)


def error_of(body: dict[str, Any]) -> dict[str, Any]:
    assert body["data"] is None, body
    assert len(body["errors"]) == 1, body
    error: dict[str, Any] = body["errors"][0]
    return error


async def visit_count(db: AsyncSession) -> int:
    return int((await db.execute(select(func.count()).select_from(Visit))).scalar_one())


async def test_a_pa_cannot_rename_themselves_to_a_long_name(
    api: Api, world: World, db: AsyncSession
) -> None:
    token = api.token(Role.PA, world.pa.id)
    for name in ("x" * 201, "x" * 10_001):
        body = await api.query(
            RENAME,
            {"id": gid("PersonalAssistant", world.pa.id), "input": {"name": name}},
            token=token,
        )  # noqa: E501
        error = error_of(body)
        assert error["extensions"] == {
            "code": "BAD_USER_INPUT",
            "field": "updateMember",
            "argument": "input.name",
            "maxLength": 200,
        }
    # Written in the document rather than passed as a variable: the same bound.
    literal = RENAME.replace("$input: UpdateMemberInput!", "").replace(
        "input: $input", 'input: {name: "' + "y" * 201 + '"}'
    )
    body = await api.query(literal, {"id": gid("PersonalAssistant", world.pa.id)}, token=token)
    assert error_of(body)["extensions"]["argument"] == "input.name"
    await db.refresh(world.pa)
    assert world.pa.name == "Pat Near"


async def test_tasks_are_bounded_in_number_and_length(
    api: Api, world: World, db: AsyncSession
) -> None:
    token = api.token(Role.ADMIN)
    base = {
        "serviceUserId": gid("ServiceUser", world.su.id),
        "startsAt": at(days=3).isoformat(),
        "endsAt": at(days=3, hours=1).isoformat(),
    }
    before = await visit_count(db)
    body = await api.query(SCHEDULE, {"input": {**base, "tasks": ["t"] * 51}}, token=token)
    assert error_of(body)["extensions"]["maxItems"] == 50
    body = await api.query(SCHEDULE, {"input": {**base, "tasks": ["t" * 501]}}, token=token)
    error = error_of(body)
    assert error["extensions"]["argument"] == "input.tasks"
    assert error["extensions"]["maxLength"] == 500
    assert await visit_count(db) == before
    # At the bounds it is booked.
    body = await api.query(SCHEDULE, {"input": {**base, "tasks": ["t" * 500] * 50}}, token=token)
    assert body["data"]["scheduleVisit"]["errors"] == [], body
    assert await visit_count(db) == before + 1


async def test_lists_of_ids_are_bounded(api: Api, world: World) -> None:
    query = "query($ids: [ID!]) { clusterFigures(clusterIds: $ids) { __typename } }"
    ids = [gid("Cluster", i) for i in range(1, 102)]
    body = await api.query(query, {"ids": ids}, token=api.token(Role.ADMIN))
    assert error_of(body)["extensions"] == {
        "code": "BAD_USER_INPUT",
        "field": "clusterFigures",
        "argument": "clusterIds",
        "maxItems": 100,
    }
    # Far beyond asyncpg's 32,767 parameters: refused before any SQL.
    ids = [str(i) for i in range(40_000)]
    query = """mutation($su: ID!, $ids: [ID!]!) {
      setRegularPersonalAssistants(serviceUserId: $su, paIds: $ids) { errors { code } } }"""
    body = await api.query(
        query, {"su": gid("ServiceUser", world.su.id), "ids": ids}, token=api.token(Role.ADMIN)
    )
    assert error_of(body)["extensions"]["code"] == "BAD_USER_INPUT"


async def test_a_nul_character_is_refused(api: Api, world: World, db: AsyncSession) -> None:
    token = api.token(Role.PA, world.pa.id)
    body = await api.query(
        RENAME,
        {"id": gid("PersonalAssistant", world.pa.id), "input": {"name": "Pat\x00"}},
        token=token,
    )
    error = error_of(body)
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert "NUL" in error["message"]
    body = await api.query(MEMBERS, {"q": "a\x00"}, token=api.token(Role.ADMIN))
    assert error_of(body)["extensions"]["code"] == "BAD_USER_INPUT"


async def test_name_search_is_bounded_and_costs_more(api: Api, world: World) -> None:
    token = api.token(Role.ADMIN)
    for q in ("", "x" * 101):
        body = await api.query(MEMBERS, {"q": q}, token=token)
        assert error_of(body)["extensions"]["code"] == "BAD_USER_INPUT", q
    plain = await api.query("{ members { totalCount } }", token=token)
    searched = await api.query(MEMBERS, {"q": "Pat"}, token=token)
    assert searched["data"]["members"]["totalCount"] == 1
    assert plain["extensions"]["cost"]["requested"] == 2
    assert searched["extensions"]["cost"]["requested"] == 52
    # A null search is no search.
    unsearched = await api.query(MEMBERS, {"q": None}, token=token)
    assert unsearched["extensions"]["cost"]["requested"] == 2


@pytest.mark.parametrize(
    "value",
    [
        "9999-12-31T23:00:00-05:00",
        "0001-01-01T01:00:00+05:00",
        "1899-12-31T00:00:00Z",
        "3000-01-01T00:00:00",
    ],
)
async def test_dates_out_of_range_are_bad_input(
    api: Api, world: World, value: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="coopnet.graphql"):
        body = await api.query(VISITS, {"from": value}, token=api.token(Role.ADMIN))
        literal = '{ visits(startsBefore: "' + value + '") { totalCount } }'
        body2 = await api.query(literal, token=api.token(Role.ADMIN))
    for b in (body, body2):
        assert b["data"] is None
        assert b["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT", b
    assert not any(r.exc_info for r in caplog.records)


async def test_starts_from_after_starts_before_is_bad_input(api: Api, world: World) -> None:
    body = await api.query(
        VISITS,
        {"from": at(days=2).isoformat(), "before": at(days=1).isoformat()},
        token=api.token(Role.ADMIN),
    )
    error = error_of(body)
    assert error["extensions"] == {
        "code": "BAD_USER_INPUT",
        "field": "visits",
        "argument": "startsFrom",
    }
    # An empty period is fine (and finds nothing).
    same = at(days=1).isoformat()
    body = await api.query(VISITS, {"from": same, "before": same}, token=api.token(Role.ADMIN))
    assert body["data"]["visits"]["totalCount"] == 0


def cursor(parts: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(parts).encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    ("query", "parts"),
    [
        ("{ members(after: $c) { totalCount } }", ["abc"]),
        ("{ members(after: $c) { totalCount } }", [2**70]),
        ("{ members(after: $c) { totalCount } }", [{"t": "2026-01-01T00:00:00+00:00"}]),
        ("{ visits(after: $c) { totalCount } }", [1, 2]),
        ("{ visits(after: $c) { totalCount } }", ["x", "y"]),
        ("{ visits(after: $c) { totalCount } }", [{"t": "garbage"}, 1]),
        ("{ visits(after: $c) { totalCount } }", [{"t": "9999-12-31T23:00:00-05:00"}, 1]),
        ("{ visits(after: $c) { totalCount } }", [{"t": 5}, 1]),
        ("{ members(after: $c) { totalCount } }", [True]),
        ("{ members(after: $c) { totalCount } }", [1.5]),
    ],
)
async def test_cursors_of_the_wrong_type_are_bad_input(
    api: Api, world: World, query: str, parts: Any, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="coopnet.graphql"):
        body = await api.query(
            "query($c: String) " + query, {"c": cursor(parts)}, token=api.token(Role.ADMIN)
        )
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT", body
    assert not any(r.exc_info for r in caplog.records)


async def test_stored_text_is_bounded_by_the_database(db: AsyncSession, world: World) -> None:
    """The CHECK constraints of migration 0008 hold whatever the writer."""
    from sqlalchemy.exc import IntegrityError

    from care.errors import ErrorCode
    from schema.mutations.runner import error_for_integrity

    pa_id = world.pa.id
    cases = [
        ("UPDATE member SET name = repeat('x', 201)", "ck_member_name_length"),
        ("UPDATE member SET phone = repeat('1', 51)", "ck_member_phone_length"),
        ("UPDATE visit SET tasks = array_fill('t'::text, ARRAY[51])", "ck_visit_tasks_length"),
        ("UPDATE visit SET tasks = ARRAY[repeat('t', 30000)]", "ck_visit_tasks_length"),
        ("UPDATE cluster SET name = repeat('x', 201)", "ck_cluster_name_length"),
    ]
    for statement, constraint in cases:
        with pytest.raises(IntegrityError) as raised:
            await db.execute(text(statement))
        await db.rollback()
        assert constraint in str(raised.value)
        # A mutation that breaks one answers a payload error, not an internal one.
        assert error_for_integrity(raised.value).code is ErrorCode.INVALID
    name = (await db.execute(select(Member.name).where(Member.id == pa_id))).scalar_one()
    assert name == "Pat Near"
