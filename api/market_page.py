"""A page for council analysts: `/market` (docs/market.md, "The analysts' page").

Server-rendered HTML. The analyst signs in with their token in a form (POST, so the token
never sits in a URL or a log); the server runs `marketReport` with that token's rights,
exactly as `/graphql` would, and answers a page with the figures as a table, the charts'
data embedded as JSON, and a form to download the same report as CSV. The charts are drawn
in the browser by Plotly.js from the `plotly` package installed from PyPI and served by
this instance (`/market/assets/plotly.min.js`): councils' networks often block CDNs, and
nothing on the page comes from anywhere else (the Content-Security-Policy says so).
"""

from __future__ import annotations

import datetime as dt
import html
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import plotly
from fastapi import APIRouter, Form, Request
from fastapi.responses import FileResponse, HTMLResponse, Response
from sqlalchemy.ext.asyncio import AsyncSession
from strawberry import Schema

from api.exports import QUERY as CSV_QUERY
from api.exports import csv_response
from schema.context import Context

PLOTLY_JS = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
PAGE_JS = Path(__file__).parent / "static" / "market.js"
PAGE_CSS = Path(__file__).parent / "static" / "market.css"

# Nothing but this instance: no CDN, no inline script (the report's data travels in a
# non-executable JSON block). Plotly sets inline styles on the SVG it draws.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; form-action 'self'; base-uri 'none'; "
    "frame-ancestors 'none'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}

QUERY = """
query ($la: String!, $from: Date!, $to: Date!, $g: Granularity!) {
  marketReport(localAuthority: $la, from: $from, to: $to, granularity: $g) {
    localAuthority { gssCode name }
    granularity
    generatedAt
    disclosure { minPeople roundingBase }
    periods { start end figures { measure breakdown value unit withheld rounded } }
    capacity { measure breakdown value unit withheld rounded }
  }
}"""

# The signed-in viewer's context for a bearer token (api/app.py: the same checks as
# /graphql, revocation included); raises AuthError for a token that cannot be trusted.
ContextFor = Callable[[AsyncSession, str], Awaitable[Context]]


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _page(title: str, body: str) -> str:
    return f"""<!doctype html>
<html lang="en-GB">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{_e(title)}</title>
<link rel="stylesheet" href="/market/assets/market.css">
</head>
<body>
<header><h1>{_e(title)}</h1></header>
<main>
{body}
</main>
</body>
</html>
"""


def _form(token: str = "", la: str = "", start: str = "", end: str = "", g: str = "MONTH") -> str:
    today = dt.date.today()
    start = start or dt.date(today.year, 1, 1).isoformat()
    end = end or today.isoformat()
    options = "".join(
        f'<option value="{v}"{" selected" if v == g else ""}>{label}</option>'
        for v, label in (("MONTH", "Months"), ("QUARTER", "Quarters"))
    )
    return f"""<form method="post" action="/market" class="sign-in">
<label>Your token <input type="password" name="token" value="{_e(token)}" required
  autocomplete="off" maxlength="4000"></label>
<label>Local authority (GSS code) <input name="localAuthority" value="{_e(la)}"
  placeholder="your own" maxlength="9" pattern="E[0-9]{{8}}"></label>
<label>From <input type="date" name="from" value="{_e(start)}" required></label>
<label>To <input type="date" name="to" value="{_e(end)}" required></label>
<label>By <select name="granularity">{options}</select></label>
<button type="submit">Show the report</button>
</form>"""


def _html(content: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(content, status_code=status, headers=HEADERS)


def _error(message: str, status: int, **form: str) -> HTMLResponse:
    body = f'<p class="error" role="alert">{_e(message)}</p>{_form(**form)}'
    return _html(_page("Market figures", body), status)


def _value(f: dict[str, Any]) -> str:
    if f["withheld"]:
        return f'<span class="withheld" title="{_e(f["withheld"])}">withheld</span>'
    if f["value"] is None:
        return "-"
    value = f["value"]
    text = f"{int(value):,}" if float(value).is_integer() else f"{value:,}"
    return f"{_e(text)}{' (rounded)' if f['rounded'] else ''}"


def _table(report: dict[str, Any]) -> str:
    periods = report["periods"]
    head = "".join(f'<th scope="col">{_e(p["start"][:7])}</th>' for p in periods)
    keys: list[tuple[str, str | None, str]] = []
    for p in periods:
        for f in p["figures"]:
            key = (f["measure"], f["breakdown"], f["unit"])
            if key not in keys:
                keys.append(key)
    cells = {(p["start"], f["measure"], f["breakdown"]): f for p in periods for f in p["figures"]}
    rows = []
    for measure, breakdown, unit in keys:
        label = measure.replace("_", " ").lower() + (f" ({breakdown})" if breakdown else "")
        tds = "".join(
            f"<td>{_value(cells[(p['start'], measure, breakdown)])}</td>"
            if (p["start"], measure, breakdown) in cells
            else "<td>-</td>"
            for p in periods
        )
        rows.append(f'<tr><th scope="row">{_e(label)} <small>{_e(unit)}</small></th>{tds}</tr>')
    capacity = "".join(
        f"<li>{_e(f['measure'].replace('_', ' ').lower())}: {_value(f)} {_e(f['unit'])}</li>"
        for f in report["capacity"]
    )
    return f"""<table id="figures"><thead><tr><th scope="col">figure</th>{head}</tr></thead>
<tbody>{"".join(rows)}</tbody></table>
<h2>Capacity now</h2><ul id="capacity">{capacity}</ul>"""


def _report_page(report: dict[str, Any], token: str, la: str, start: str, end: str, g: str) -> str:
    data = json.dumps(report).replace("<", "\\u003c")  # no "</script>" can end the block
    la_name = report["localAuthority"]["name"]
    rules = report["disclosure"]
    charts = "".join(
        f'<figure><div class="chart" id="chart-{name}"></div><figcaption>{_e(caption)}'
        "</figcaption></figure>"
        for name, caption in (
            ("hours", "Hours planned, delivered and missed"),
            ("fill-rate", "Cover requests filled (share of those opened)"),
            (
                "continuity",
                "Continuity: different PAs per person a month, and visits by regular PAs",
            ),
            ("pay", "Hourly pay against the National and Real Living Wage"),
            ("capacity", "Capacity now"),
        )
    )
    body = f"""<p class="summary">{_e(la_name)} ({_e(report["localAuthority"]["gssCode"])}),
{_e(start)} to {_e(end)}. Counts of 1 to {rules["minPeople"] - 1} people are withheld,
larger ones rounded to the nearest {rules["roundingBase"]}; figures that rest on fewer than
{rules["minPeople"]} people are withheld. Generated {_e(report["generatedAt"][:16])} UTC.</p>
<form method="post" action="/market/market.csv" class="download">
<input type="hidden" name="token" value="{_e(token)}">
<input type="hidden" name="localAuthority" value="{_e(la)}">
<input type="hidden" name="from" value="{_e(start)}">
<input type="hidden" name="to" value="{_e(end)}">
<input type="hidden" name="granularity" value="{_e(g)}">
<button type="submit">Download as CSV</button>
</form>
<section class="charts">{charts}</section>
<h2>Every figure</h2>
{_table(report)}
<script type="application/json" id="report-data">{data}</script>
<script src="/market/assets/plotly.min.js"></script>
<script src="/market/assets/market.js"></script>
<details><summary>Another report</summary>{_form(token, la, start, end, g)}</details>"""
    return _page(f"Market figures: {la_name}", body)


def market_page_router(schema: Schema, context_for: ContextFor) -> APIRouter:
    router = APIRouter(prefix="/market")

    async def run(
        request: Request, token: str, query: str, la: str, variables: dict[str, str]
    ) -> tuple[dict[str, Any] | None, str | None, int, str]:
        """The report for the token's viewer, or (None, message, HTTP status, la). An
        analyst who names no local authority gets their own."""
        async with request.app.state.sessions() as session:
            try:
                ctx = await context_for(session, f"Bearer {token.strip()}")
            except Exception as exc:  # AuthError, DatabaseRefusal: said on the page
                return None, f"Signing in failed: {exc}", 401, la
            try:
                la = la.strip() or (ctx.viewer.la_code or "")
                if not la:
                    return None, "Say which local authority (its GSS code).", 400, la
                result = await schema.execute(
                    query, variable_values={**variables, "la": la}, context_value=ctx
                )
            finally:
                await ctx.finish()
        report = (result.data or {}).get("marketReport")
        if report is None:
            error = result.errors[0] if result.errors else None
            code = (error.extensions or {}).get("code") if error else None
            status = {"UNAUTHENTICATED": 401, "FORBIDDEN": 403, "NOT_FOUND": 404}.get(
                str(code), 400
            )
            message = error.message if error else "The report could not be made."
            return None, message, status, la
        return report, None, 200, la

    @router.get("", include_in_schema=False)
    async def sign_in() -> HTMLResponse:
        intro = (
            "<p>Market-shaping figures of this co-op for your local authority, under "
            "disclosure control. Sign in with the token your co-op gave you.</p>"
        )
        return _html(_page("Market figures", intro + _form()))

    @router.post("", include_in_schema=False)
    async def report(
        request: Request,
        token: str = Form(max_length=4000),
        local_authority: str = Form(default="", alias="localAuthority", max_length=64),
        from_: str = Form(alias="from", max_length=64),
        to: str = Form(max_length=64),
        granularity: str = Form(default="MONTH", max_length=64),
    ) -> HTMLResponse:
        variables = {"from": from_, "to": to, "g": granularity}
        found, message, status, la = await run(request, token, QUERY, local_authority, variables)
        if found is None:
            form = {"token": "", "la": la, "start": from_, "end": to, "g": granularity}
            return _error(message or "The report could not be made.", status, **form)
        return _html(_report_page(found, token, la, from_, to, granularity))

    @router.post("/market.csv", include_in_schema=False)
    async def download(
        request: Request,
        token: str = Form(max_length=4000),
        local_authority: str = Form(default="", alias="localAuthority", max_length=64),
        from_: str = Form(alias="from", max_length=64),
        to: str = Form(max_length=64),
        granularity: str = Form(default="MONTH", max_length=64),
    ) -> Response:
        variables = {"from": from_, "to": to, "g": granularity}
        found, message, status, la = await run(
            request, token, CSV_QUERY, local_authority, variables
        )
        if found is None:
            return _error(message or "The report could not be made.", status)
        return csv_response(found, la)

    @router.get("/assets/plotly.min.js", include_in_schema=False)
    async def plotly_js() -> FileResponse:
        return FileResponse(
            PLOTLY_JS,
            media_type="text/javascript",
            headers={"Cache-Control": "public, max-age=86400"},
        )

    @router.get("/assets/market.js", include_in_schema=False)
    async def page_js() -> FileResponse:
        return FileResponse(PAGE_JS, media_type="text/javascript")

    @router.get("/assets/market.css", include_in_schema=False)
    async def page_css() -> FileResponse:
        return FileResponse(PAGE_CSS, media_type="text/css")

    return router
