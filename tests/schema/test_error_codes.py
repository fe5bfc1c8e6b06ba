"""Unexpected exceptions never reach the caller: a generic message and a code."""

from __future__ import annotations

import strawberry

from schema.error_codes import INTERNAL_MESSAGE, CoopSchema


@strawberry.type
class Query:
    @strawberry.field
    def broken(self) -> str:
        raise RuntimeError("password=hunter2 at db.internal:5432")

    @strawberry.field
    def fine(self) -> str:
        return "ok"


async def test_unexpected_exception_is_masked() -> None:
    result = await CoopSchema(query=Query).execute("{ broken fine }")
    assert result.errors is not None
    error = result.errors[0]
    assert error.message == INTERNAL_MESSAGE
    assert error.extensions == {"code": "INTERNAL_SERVER_ERROR"}
    assert "hunter2" not in str(error.formatted)
    assert result.data is None  # `broken` is non-null, so the whole query is null


async def test_validation_errors_get_a_code() -> None:
    result = await CoopSchema(query=Query).execute("{ missing }")
    assert result.errors is not None
    assert result.errors[0].extensions == {"code": "GRAPHQL_VALIDATION_FAILED"}
