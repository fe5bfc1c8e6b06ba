"""`careTerms` compiles: declared once (`schema.types.root_list` with the filters
`schema.filters.CARE_TERMS`, reading `care.vocabulary`'s select, order and filters), it is
answered by one statement for every shape of its arguments, given as literals and as
variables, byte for byte as the resolvers answer, for every kind of caller; a caller the
field refuses gets the resolvers' error on both paths."""

from __future__ import annotations

import datetime as dt
import itertools
from typing import Any

import pytest
from graphql import OperationDefinitionNode, parse
from graphql.execution.values import VariableValues, get_variable_values
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from care.enums import Role
from care.models import CareTerm
from care.viewer import Viewer
from schema.build import create_schema
from schema.compiled.compiler import Compiler, Fallback
from schema.context import Limits
from tests.conftest import Api, StatementCounter
from tests.factories import BARNET, Build, at
from tests.schema.test_compiled_reads import Both, _exact

FIELDS = "__typename code label description kind active needsReview updatedAt"

# Terms of both kinds, active or not, awaiting review or not (one awaiting review while
# active, which only `needsReview: true` without `includeInactive` tells apart); two
# labels that tie (the code breaks the tie, against the order they were added in); labels
# and descriptions JSON must escape: quotes, backslashes, control characters, non-ASCII.
SEEDED = [
    ("zz-tie-b", "Zz tie", "Second by code.", "NEED", True, False),
    ("zz-tie-a", "Zz tie", "First by code.", "SKILL", True, False),
    ("quoted", 'A "quoted" \\ back\\slash', 'She said "no" \\ then\ttabbed', "NEED", True, False),
    ("new-line", "Line one\nline two", "Ends with a newline\n\r", "SKILL", False, False),
    ("accents", "Crème brûlée – café ☕ 😀", "Ünïcödé ✓ \u2028 \u001f \u007f", "NEED", False, True),
    ("review-skill", "Awaiting review (skill)", "", "SKILL", False, True),
    ("review-active", "Awaiting review, active", "Odd but possible.", "NEED", True, True),
]

OMITTED = object()  # an argument (or variable) not given at all
USES: list[Any] = [OMITTED, "NEED", "SKILL"]
INACTIVE: list[Any] = [OMITTED, True, False]
REVIEW: list[Any] = [OMITTED, None, True, False]
SHAPES = list(itertools.product(USES, INACTIVE, REVIEW))

VARIABLES = f"""query($use: CareTermUse, $all: Boolean, $review: Boolean) {{
  careTerms(use: $use, includeInactive: $all, needsReview: $review) {{ {FIELDS} }} }}"""


def _literal(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)  # an enum's name


def literal_query(use: Any, inactive: Any, review: Any) -> str:
    given = [
        f"{name}: {_literal(value)}"
        for name, value in (("use", use), ("includeInactive", inactive), ("needsReview", review))
        if value is not OMITTED
    ]
    arguments = f"({', '.join(given)})" if given else ""
    return f"{{ careTerms{arguments} {{ {FIELDS} }} }}"


def variables_of(use: Any, inactive: Any, review: Any) -> dict[str, Any]:
    given = {"use": use, "all": inactive, "review": review}
    return {name: value for name, value in given.items() if value is not OMITTED}


def expected_codes(terms: list[CareTerm], use: Any, inactive: Any, review: Any) -> set[str]:
    """The rule of `careTerms`, as its description gives it, written out apart."""
    review = None if review is OMITTED else review
    return {
        t.code
        for t in terms
        if (use != "NEED" or t.kind == "NEED")
        and (inactive is True or review is True or t.active)
        and (review is None or t.needs_review == review)
    }


@pytest.fixture
async def world(db: AsyncSession) -> dict[str, Any]:
    b = Build(db)
    await b.las()
    await b.coop()
    coordinator = await b.worker("Cora Ordinator")
    cluster = await b.cluster("Finchley", support_worker=coordinator)
    person = await b.service_user("Ada User", cluster=cluster)
    busy = await b.pa("Pat Busy", cluster=cluster)
    idle = await b.pa("Ida Idle")
    stranger = await b.service_user("Stan Stranger")  # in no cluster
    await b.visit(person, busy, at(days=1))
    for code, label, description, kind, active, review in SEEDED:
        db.add(
            CareTerm(
                code=code,
                label=label,
                description=description,
                kind=kind,
                active=active,
                needs_review=review,
            )
        )
        await db.flush()  # one by one: `zz-tie-b` is older than `zz-tie-a`
    # Updated at an instant with microseconds, and one on a whole second.
    await db.execute(
        text("UPDATE care_term SET updated_at = :at WHERE code = 'zz-tie-b'"),
        {"at": dt.datetime(2026, 3, 1, 9, 30, 15, 120000, tzinfo=dt.UTC)},
    )
    await db.execute(
        text("UPDATE care_term SET updated_at = :at WHERE code = 'zz-tie-a'"),
        {"at": dt.datetime(2026, 3, 1, 9, 30, tzinfo=dt.UTC)},
    )
    await db.commit()
    terms = list((await db.scalars(select(CareTerm))).all())
    return {
        "coordinator": coordinator.id,
        "busy": busy.id,
        "idle": idle.id,
        "stranger": stranger.id,
        "terms": terms,
    }


def callers(api: Api, world: dict[str, Any]) -> dict[str, str | None]:
    return {
        "admin": api.token(Role.ADMIN),
        "coordinator": api.token(Role.COORDINATOR, world["coordinator"]),
        "pa with visits": api.token(Role.PA, world["busy"]),
        "pa without visits": api.token(Role.PA, world["idle"]),
        "stranger": api.token(Role.SERVICE_USER, world["stranger"]),
        "la analyst": api.token(Role.LA_ANALYST, la=BARNET),
        "anonymous": None,
    }


REFUSED = {"la analyst": "FORBIDDEN", "anonymous": "UNAUTHENTICATED"}


async def test_every_shape_of_arguments_compiles_identically_for_every_caller(
    api: Api, app: Any, sql_counter: StatementCounter, world: dict[str, Any]
) -> None:
    both = Both(api, app, sql_counter)
    checked = 0
    for name, token in callers(api, world).items():
        for use, inactive, review in SHAPES:
            for query, variables in (
                (literal_query(use, inactive, review), {}),
                (VARIABLES, variables_of(use, inactive, review)),
            ):
                where = (name, query, variables)
                resolved, compiled, ran = await both.run(query, variables, token)
                assert _exact(compiled.get("data")) == _exact(resolved.get("data")), where
                assert _exact(compiled.get("errors")) == _exact(resolved.get("errors")), where
                if name in REFUSED:
                    # Refused on both paths alike: the compiled path leaves it to the
                    # resolvers, whose error it is.
                    assert not both.compiled, where
                    assert compiled["data"] is None, where
                    (error,) = compiled["errors"]
                    assert error["extensions"]["code"] == REFUSED[name], where
                    continue
                assert both.compiled and ran == 1, where  # one statement, no resolver
                assert "errors" not in compiled, where
                found = compiled["data"]["careTerms"]
                codes = [t["code"] for t in found]
                assert set(codes) == expected_codes(world["terms"], use, inactive, review), where
                if {"zz-tie-a", "zz-tie-b"} <= set(codes):
                    assert codes.index("zz-tie-a") < codes.index("zz-tie-b"), where
                checked += 1
    assert checked == 5 * len(SHAPES) * 2


async def test_the_answer_holds_the_escaped_text_and_every_field(
    api: Api, app: Any, sql_counter: StatementCounter, world: dict[str, Any]
) -> None:
    both = Both(api, app, sql_counter)
    admin = api.token(Role.ADMIN)
    body = await both.same(literal_query(OMITTED, True, OMITTED), {}, admin, statements=1)
    found = {t["code"]: t for t in body["data"]["careTerms"]}
    for code, label, description, kind, active, review in SEEDED:
        assert found[code]["label"] == label and found[code]["description"] == description
        assert (found[code]["kind"], found[code]["active"]) == (kind, active)
        assert found[code]["needsReview"] is review
    assert found["zz-tie-b"]["updatedAt"] == "2026-03-01T09:30:15.120000+00:00"
    assert found["zz-tie-a"]["updatedAt"] == "2026-03-01T09:30:00+00:00"
    # With the migration's terms: a need picker's list leaves out skill-only ones.
    needs = await both.same(literal_query("NEED", OMITTED, OMITTED), {}, admin, statements=1)
    codes = [t["code"] for t in needs["data"]["careTerms"]]
    assert "personal-care" in codes and "first-aid" not in codes


async def test_a_refused_caller_gets_the_same_error_beside_a_field_it_may_read(
    api: Api, app: Any, sql_counter: StatementCounter, world: dict[str, Any]
) -> None:
    # `localAuthorities` is public, `careTerms` not: the operation is refused as a whole
    # by the resolvers (a non-null root field), and the compiled path leaves it to them.
    both = Both(api, app, sql_counter)
    query = "{ localAuthorities { gssCode } careTerms(use: NEED) { code } }"
    for token in (None, api.token(Role.LA_ANALYST, la=BARNET)):
        resolved, compiled, _ = await both.run(query, {}, token)
        assert _exact(compiled.get("data")) == _exact(resolved.get("data"))
        assert _exact(compiled.get("errors")) == _exact(resolved.get("errors"))
        assert compiled["errors"] and not both.compiled
    member = api.token(Role.PA, world["idle"])
    body = await both.same(query, {}, member, statements=1)
    assert body["data"]["localAuthorities"] and body["data"]["careTerms"]


async def test_include_inactive_given_null_gets_the_same_error(
    api: Api, app: Any, sql_counter: StatementCounter, world: dict[str, Any]
) -> None:
    # A nullable variable may stand for `includeInactive: Boolean! = false`; given null,
    # the argument is refused, on both paths alike.
    # So is a root page's order given null (`members(orderBy:)`, the same check).
    both = Both(api, app, sql_counter)
    admin = api.token(Role.ADMIN)
    members = "query($o: MemberOrder) { members(orderBy: $o) { nodes { name } } }"
    for query, variables in ((VARIABLES, {"all": None}), (members, {"o": None})):
        resolved, compiled, _ = await both.run(query, variables, admin)
        assert resolved.get("errors") and not both.compiled
        assert _exact(compiled.get("errors")) == _exact(resolved.get("errors"))
        assert _exact(compiled.get("data")) == _exact(resolved.get("data"))


def _variables(operation: OperationDefinitionNode, given: dict[str, Any]) -> VariableValues:
    coerced = get_variable_values(SCHEMA, operation.variable_definitions or (), given)
    assert isinstance(coerced, VariableValues)
    return coerced


SCHEMA = create_schema()._schema


def test_a_plan_binds_only_the_shape_of_arguments_it_was_built_for() -> None:
    # The filters' SQL is built for one shape of the arguments (each boolean's and enum's
    # value, which are null): the plan cache keeps shapes apart, and a plan handed
    # another shape falls back rather than answer by the wrong filters.
    document = parse(VARIABLES)
    (operation,) = document.definitions
    assert isinstance(operation, OperationDefinitionNode)
    viewer = Viewer(role=Role.ADMIN)
    built = {"use": "NEED", "review": True}
    plan = Compiler(SCHEMA, document, operation, _variables(operation, built), viewer).compile()
    assert plan.parameters(viewer, _variables(operation, built), Limits()) is not None
    for other in (
        {"use": "SKILL", "review": True},
        {"use": "NEED", "review": False},
        {"use": "NEED", "review": None},
        {"review": True},
        {"use": "NEED", "review": True, "all": True},
    ):
        with pytest.raises(Fallback):
            plan.parameters(viewer, _variables(operation, other), Limits())
