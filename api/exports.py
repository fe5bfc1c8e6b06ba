"""Downloads: the market report as CSV (`GET /exports/market.csv`, docs/market.md).

The export runs the `marketReport` GraphQL field itself, with the caller's own context, so
it obeys exactly the same access rule, the same checks on the local authority and the same
disclosure control; it only changes the shape of the answer: one row per period, local
authority and measure.
"""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import JSONResponse, Response
from strawberry import Schema

from schema.context import Context

QUERY = """
query ($la: String!, $from: Date!, $to: Date!, $g: Granularity!) {
  marketReport(localAuthority: $la, from: $from, to: $to, granularity: $g) {
    localAuthority { gssCode }
    generatedAt
    periods { start end figures { measure breakdown value unit withheld rounded } }
    capacity { measure breakdown value unit withheld rounded }
  }
}"""

COLUMNS = [
    "local_authority",
    "period_start",
    "period_end",
    "measure",
    "breakdown",
    "value",
    "unit",
    "withheld",
    "rounded",
]

# The HTTP status of a refused export, from the GraphQL error's code.
STATUS = {"UNAUTHENTICATED": 401, "FORBIDDEN": 403, "NOT_FOUND": 404, "BAD_USER_INPUT": 400}


def _rows(report: dict[str, Any]) -> list[list[Any]]:
    la = report["localAuthority"]["gssCode"]
    rows = []
    for period in report["periods"]:
        for f in period["figures"]:
            rows.append([la, period["start"], period["end"], *_figure(f)])
    today = report["generatedAt"][:10]
    for f in report["capacity"]:
        rows.append([la, today, today, *_figure(f)])
    return rows


def _figure(f: dict[str, Any]) -> list[Any]:
    value = f["value"]
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return [
        f["measure"],
        f["breakdown"] or "",
        "" if value is None else value,
        f["unit"],
        f["withheld"] or "",
        "true" if f["rounded"] else "false",
    ]


def market_csv_router(schema: Schema, context: Callable[..., AsyncIterator[Context]]) -> APIRouter:
    router = APIRouter()

    @router.get("/exports/market.csv", include_in_schema=False)
    async def market_csv(
        local_authority: str = Query(alias="localAuthority", max_length=9),
        from_: str = Query(alias="from", max_length=10),
        to: str = Query(max_length=10),
        granularity: str = Query(default="MONTH", max_length=7),
        ctx: Context = Depends(context),
    ) -> Response:
        result = await schema.execute(
            QUERY,
            variable_values={"la": local_authority, "from": from_, "to": to, "g": granularity},
            context_value=ctx,
        )
        report = (result.data or {}).get("marketReport")
        if result.errors or report is None:
            error = result.errors[0] if result.errors else None
            code = (error.extensions or {}).get("code") if error else None
            code = code if code in STATUS else "BAD_USER_INPUT"
            message = error.message if error else "The report could not be made."
            return JSONResponse(
                status_code=STATUS[code],
                content={"errors": [{"message": message, "extensions": {"code": code}}]},
            )
        return csv_response(report, local_authority)

    return router


def csv_response(report: dict[str, Any], local_authority: str) -> Response:
    """The report (the answer to QUERY) as a CSV download."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    writer.writerows(_rows(report))
    first = report["periods"][0]["start"] if report["periods"] else "none"
    name = f"market-{report['localAuthority']['gssCode']}-{first}.csv"
    return Response(
        out.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )
