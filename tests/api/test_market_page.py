"""The analysts' page (`/market`): served without a CDN, signed in by form, and, in
headless Chromium (Debian's package), charts that render with the API's figures."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from html import escape
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from care.enums import Role
from tests.api.chromium import chromium, needs_chromium
from tests.factories import BARNET, ENFIELD, Build, at
from tests.federation.instances import Instance, prepare

FORM = {"from": "2026-01-01", "to": "2026-12-31", "granularity": "MONTH"}


async def test_the_sign_in_page_loads_nothing_from_elsewhere(client: httpx.AsyncClient) -> None:
    page = await client.get("/market")
    assert page.status_code == 200
    csp = page.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "script-src 'self'" in csp
    for url in re.findall(r'(?:src|href|action)="([^"]+)"', page.text):
        assert url.startswith("/"), url
    asset = await client.get("/market/assets/plotly.min.js")
    assert asset.status_code == 200 and len(asset.content) > 1_000_000


async def _world(db: Any) -> None:
    b = Build(db)
    await b.las()
    await b.coop()
    cluster = await b.cluster("Finchley")
    pa = await b.pa("Pat Private", cluster=cluster)
    for i in range(9):
        su = await b.service_user(f"Person {i}", cluster=cluster)
        await b.visit(su, pa, at(days=-2, hours=-i), status="COMPLETED")
    await db.execute(
        text("UPDATE visit SET confirmed_at = now(), confirmed_by_id = service_user_id")
    )
    await db.commit()


async def test_signing_in_shows_the_report_and_refuses_what_the_api_refuses(
    client: httpx.AsyncClient, api: Any, db: Any
) -> None:
    await _world(db)
    analyst = api.tokens.issue(Role.LA_ANALYST, la_code=BARNET)
    page = await client.post("/market", data={"token": analyst, **FORM})
    assert page.status_code == 200, page.text
    assert "Market figures: Barnet" in page.text
    assert 'id="report-data"' in page.text and "Pat Private" not in page.text
    assert "<script>" not in page.text  # no inline script: the data block is JSON
    for url in re.findall(r'(?:src|href|action)="([^"]+)"', page.text):
        assert url.startswith("/"), url
    csv = await client.post(
        "/market/market.csv", data={"token": analyst, "localAuthority": BARNET, **FORM}
    )
    assert csv.status_code == 200 and csv.text.startswith("local_authority,period_start")
    refused = [
        ({"token": analyst, "localAuthority": ENFIELD}, 403),
        ({"token": api.token(Role.COORDINATOR, 1)}, 400),  # no area of their own to pick
        ({"token": api.token(Role.COORDINATOR, 1), "localAuthority": BARNET}, 403),
        ({"token": "not-a-token"}, 401),
        ({"token": analyst, "from": "2026-13-01"}, 400),
    ]
    for extra, status in refused:
        answer = await client.post("/market", data={**FORM, **extra})
        assert answer.status_code == status, (extra, answer.text)
        assert 'role="alert"' in answer.text and 'id="report-data"' not in answer.text
    # What an attacker types comes back escaped.
    sneaky = await client.post(
        "/market", data={**FORM, "token": analyst, "from": '"><script>alert(1)</script>'}
    )
    assert "<script>alert(1)" not in sneaky.text


@pytest.fixture(scope="module")
def served(migrated_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Instance]:
    instance = prepare(migrated_url, "market", tmp_path_factory.mktemp("market"))
    instance.start()
    try:
        yield instance
    finally:
        instance.stop()


def _dom_after_posting(instance: Instance, fields: dict[str, str], tmp: Path) -> str:
    """Chromium opens a local page that posts the form to the instance, runs the answer's
    scripts (Plotly included) and prints the DOM once they are done."""
    inputs = "".join(
        f'<input type="hidden" name="{escape(k)}" value="{escape(v)}">' for k, v in fields.items()
    )
    start = tmp / "start.html"
    start.write_text(
        f'<form id="f" method="post" action="{instance.base_url}/market">{inputs}</form>'
        "<script>document.getElementById('f').submit()</script>"
    )
    with chromium("market-") as command:
        out = subprocess.run(
            [
                *command,
                "--virtual-time-budget=15000",
                "--dump-dom",
                start.as_uri(),
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


@needs_chromium
async def test_the_charts_render_in_chromium_with_the_figures_of_the_api(
    served: Instance, tmp_path: Path
) -> None:
    async with served.session() as db:
        await _world(db)
    try:
        analyst = served.token(Role.LA_ANALYST, la=BARNET)
        dom = _dom_after_posting(served, {"token": analyst, **FORM}, tmp_path)
        assert 'data-charts-ready="5"' in dom, dom[-3000:]
        report = (
            await served.data(
                """query { marketReport(localAuthority: "E09000003", from: "2026-01-01",
                   to: "2026-12-31") { periods { start figures { measure breakdown value
                   withheld } } capacity { measure value withheld } } }""",
                token=analyst,
            )
        )["marketReport"]
        plotted = {
            name: json.loads(
                re.search(rf'id="chart-{name}"[^>]*data-plotted="([^"]*)"', dom)
                .group(1)  # type: ignore[union-attr]
                .replace("&quot;", '"')
                .replace("&amp;", "&")
            )
            for name in ("hours", "fill-rate", "continuity", "pay", "capacity")
        }

        def api_series(measure: str) -> list[Any]:
            out = []
            for p in report["periods"]:
                f = next(f for f in p["figures"] if f["measure"] == measure)
                out.append(None if f["withheld"] else f["value"])
            return out

        hours = {t["name"]: t["y"] for t in plotted["hours"]}
        assert hours["Planned"] == api_series("HOURS_PLANNED")
        assert hours["Delivered"] == api_series("HOURS_DELIVERED")
        assert any(v for v in hours["Delivered"])  # nine people this month: shown
        pay = {t["name"]: t["y"] for t in plotted["pay"]}
        assert pay["Real Living Wage"] == api_series("REAL_LIVING_WAGE")
        assert 14.8 in pay["Real Living Wage"]
        assert plotted["fill-rate"][0]["y"] == api_series("COVER_FILL_RATE")
        # Plotly drew SVG for every chart: one plot area each, and bars for the hours.
        assert dom.count('class="main-svg"') >= 5
        assert len(re.findall(r'class="point"', dom)) > 0
    finally:
        await served.reset()
