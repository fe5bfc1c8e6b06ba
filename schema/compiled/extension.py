"""The compiled read path's hook: after parsing, validation and the request limits (the
extensions before this one), a query operation the compiler supports is answered by one
SQL statement, and no resolver runs; anything else runs on the resolver path.

Plans are cached per (document, operation name, viewer shape, variable shape): the viewer
shape is `care.policy.shape` (what decides the predicates' SQL), the variable shape which
variables are null (an input object's fields too), which lists empty, each boolean's and
each enum's value (what decides the SQL of filters, cursors, orders and @include/@skip).
Values are parameters of every run.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import AsyncIterator, Hashable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from graphql import (
    DocumentNode,
    ExecutionResult,
    GraphQLError,
    GraphQLSchema,
    OperationType,
    get_operation_ast,
)
from graphql.execution.values import VariableValues, get_variable_values
from strawberry.extensions import SchemaExtension

from care import policy
from care.tokens import TokenRef, in_force_values
from care.viewer import Viewer
from schema.compiled.compiler import Compiler, Fallback, Plan, Unsupported, value_shape
from schema.context import Context, Limits
from schema.error_codes import known_error

log = logging.getLogger("coopnet.compiled")

CACHE_SIZE = 512
T = TypeVar("T")


class PlanCache(Generic[T]):
    """Compiled plans (or why an operation does not compile), least recently used out."""

    def __init__(self, size: int = CACHE_SIZE) -> None:
        self.size = size
        self.entries: OrderedDict[Hashable, T] = OrderedDict()

    def get(self, key: Hashable) -> T | None:
        found = self.entries.get(key)
        if found is not None:
            self.entries.move_to_end(key)
        return found

    def put(self, key: Hashable, value: T) -> None:
        self.entries[key] = value
        self.entries.move_to_end(key)
        while len(self.entries) > self.size:
            self.entries.popitem(last=False)


PLANS: PlanCache[Plan | str] = PlanCache()
# Documents (by schema, which has its own limits, and text) that parsed, validated and were
# answered here: a request repeating one may skip parsing and validation (api/fastlane.py).
ANSWERED: PlanCache[DocumentNode] = PlanCache()


class CompiledReads(SchemaExtension):
    """Answer a supported query with one statement (see the module docstring); on only
    when the request's context asks for it (`Context.compiled_reads`, from the
    COMPILED_READS setting)."""

    async def on_execute(self) -> AsyncIterator[None]:  # type: ignore[override]
        context = self.execution_context
        request = context.context
        if (
            context.result is None
            and isinstance(request, Context)
            and request.compiled_reads
            and context.graphql_document is not None
            and context.query is not None
        ):
            result = await answer(context, request)
            if result is not None:
                context.result = result
        yield


@dataclass(frozen=True)
class Prepared:
    """A compiled plan and one request's values for its statement."""

    plan: Plan
    parameters: dict[str, Any]

    def bind(self, token: TokenRef | None) -> tuple[str, list[Any]]:
        """The statement as asyncpg runs it (compiled once per plan: SQLAlchemy's own cache
        would compile it again per engine), with its arguments: this request's values
        and the token whose in-force check is the last column. None checks nothing: the
        full path has checked the token already; the fast lane passes the caller's."""
        values = {**self.parameters, **in_force_values(token)}
        return self.plan.for_driver().bind(values)


def prepare(
    schema: GraphQLSchema,
    document: DocumentNode,
    query: str,
    operation_name: str | None,
    variables: dict[str, Any] | None,
    viewer: Viewer,
    limits: Limits,
) -> Prepared | None:
    """The compiled plan of a parsed and validated operation, with this request's values;
    None to run the resolvers (see the module docstring)."""
    operation = get_operation_ast(document, operation_name)
    if operation is None or operation.operation is not OperationType.QUERY:
        return None
    coerced = get_variable_values(schema, operation.variable_definitions or (), variables or {})
    if not isinstance(coerced, VariableValues):
        return None  # the executor reports the variables' errors
    key = (query, operation_name, policy.shape(viewer), value_shape(coerced.coerced))
    plan = PLANS.get(key)
    if plan is None:
        try:
            plan = Compiler(schema, document, operation, coerced, viewer).compile()
        except Unsupported as unsupported:
            plan = unsupported.where
            log.info("compiled reads: %s falls back to the resolvers", plan)
        PLANS.put(key, plan)
    if isinstance(plan, str):
        log.debug("compiled reads: resolvers for %s", plan)
        return None
    if not all(rule.allows(viewer) for rule in plan.access):
        return None  # the resolvers refuse with today's codes
    try:
        parameters = plan.parameters(viewer, coerced, limits)
    except Fallback as fallback:
        log.debug("compiled reads: resolvers for a request's values (%s)", fallback)
        return None
    return Prepared(plan, parameters)


async def answer(context: Any, request: Context) -> ExecutionResult | None:
    """The compiled answer, or None to run the resolvers."""
    document = context.graphql_document
    prepared = prepare(
        context.schema._schema,
        document,
        context.query,
        context.operation_name,
        context.variables,
        request.viewer,
        request.limits,
    )
    if prepared is None:
        return None
    plan = prepared.plan
    sql, arguments = prepared.bind(None)  # the app has checked the token already
    try:
        async with request.database() as session:
            request.statements += 1
            connection = await session.connection()
            row = (await connection.exec_driver_sql(sql, tuple(arguments))).one()
    except Exception as exc:
        error = refused(plan, exc)
        if error is None:
            raise
        return ExecutionResult(data=dict.fromkeys(plan.keys), errors=[error])
    # This text parsed, validated and compiled: the HTTP fast lane may answer it directly.
    ANSWERED.put((context.schema._schema, context.query), document)
    return ExecutionResult(data=plan.data(row))


def refused(plan: Plan, exc: Exception) -> GraphQLError | None:
    """The coded error for a statement the database did not answer (no database in time:
    `known_error`), at the first root field; None for anything else, which is raised. The
    full path and the fast lane (api/fastlane.py) both answer with it, the root fields
    null: a 503 for the codes of `UNAVAILABLE_CODES`."""
    known = known_error(exc)
    if known is None:
        return None
    code, message = known  # as `CoopSchema.process_errors` would name it
    return GraphQLError(message, path=[plan.keys[0]], original_error=exc, extensions={"code": code})
