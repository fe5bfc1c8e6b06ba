"""GraphiQL at `/graphql`: every file served by the instance (no CDN), the README's examples
as tabs, and, in headless Chromium (Debian's package) with every non-loopback request
blocked, an editor that renders and runs queries."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import re
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import websockets
from graphql import build_schema, parse, validate

from api import graphiql_page
from api.graphiql_page import WELCOME, GraphiQLPage, fill_dates, load_examples
from care.enums import Role
from tests.api.chromium import chromium, needs_chromium
from tests.conftest import ROOT
from tests.federation.instances import Instance, free_port, prepare


def _urls(page: str) -> list[str]:
    return re.findall(r'(?:src|href|action)="([^"]+)"', page)


async def test_the_page_and_everything_it_loads_come_from_the_instance(
    client: httpx.AsyncClient,
) -> None:
    page = await client.get("/graphql", headers={"Accept": "text/html"})
    assert page.status_code == 200, page.text
    csp = page.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "script-src 'self'" in csp
    assert "connect-src 'self'" in csp
    assert "<script>" not in page.text  # no inline script: the configuration is JSON
    urls = [u for u in _urls(page.text) if u != "data:,"]  # no favicon to fetch
    assert len(urls) == 6, urls  # React, ReactDOM, GraphiQL and its CSS, ours (JS, CSS)
    for url in urls:
        assert url.startswith("/static/graphiql/"), url
        asset = await client.get(url)
        assert asset.status_code == 200, url
        assert "immutable" in asset.headers["cache-control"]
        assert asset.headers["content-type"].startswith(("text/javascript", "text/css"))
    graphiql_js = next(u for u in urls if u.endswith("/graphiql.min.js"))
    assert len((await client.get(graphiql_js)).content) > 1_000_000
    # Only the listed files, at their current digest.
    assert (await client.get(graphiql_js.replace("/graphiql.min.js", "/x.js"))).status_code == 404
    stale = re.sub(
        r"/static/graphiql/[0-9a-f]+/", "/static/graphiql/0000000000000000/", graphiql_js
    )
    assert (await client.get(stale)).status_code == 404
    assert (await client.get("/static/graphiql/x/..%2F..%2Fapp.py")).status_code == 404


async def test_queries_by_get_still_answer_json(client: httpx.AsyncClient) -> None:
    r = await client.get(
        "/graphql", params={"query": "{ __typename }"}, headers={"Accept": "text/html"}
    )
    assert r.status_code == 200 and r.json()["data"] == {"__typename": "Query"}
    r = await client.get("/graphql", headers={"Accept": "application/json"})
    assert r.headers["content-type"].startswith("application/json")


async def test_there_are_no_openapi_documents(client: httpx.AsyncClient) -> None:
    # The API is GraphQL; FastAPI's pages would load their scripts from a CDN.
    for path in ("/docs", "/redoc", "/openapi.json", "/docs/oauth2-redirect"):
        assert (await client.get(path)).status_code == 404, path


def _normalised(text: str) -> str:
    return " ".join(text.split())


def test_the_examples_are_the_readmes_and_valid_against_the_schema() -> None:
    readme = _normalised((ROOT / "README.md").read_text())
    schema = build_schema((ROOT / "schema.graphql").read_text())
    examples = load_examples()
    assert len(examples) >= 6
    for example in examples:
        assert _normalised(example.query) in readme, example.title
        assert validate(schema, parse(example.query)) == [], example.title
        if example.variables:
            json.loads(example.variables)
    assert validate(schema, parse(WELCOME)) == []
    # The page's tabs: the welcome, then each example under its title.
    page = GraphiQLPage()
    tabs = page.tabs()
    assert tabs[0]["query"] == WELCOME
    assert [t["query"].splitlines()[0] for t in tabs[1:]] == [f"# {e.title}" for e in examples]
    # The relative days are filled in: no "TODAY+7" or "DATE-365" reaches the page.
    filled = json.dumps([t.get("variables") for t in tabs])
    assert "TODAY" not in filled and '"DATE' not in filled
    assert sum("variables" in t for t in tabs) >= 4
    # The same page a day later offers that day's dates (a server runs for weeks).
    tomorrow = dt.date.today() + dt.timedelta(days=1)
    later = page.tabs(tomorrow)
    for example, tab in zip(examples, later[1:], strict=True):
        if example.variables:
            assert json.loads(tab["variables"]) == fill_dates(example.variables, tomorrow)
    assert json.dumps([t.get("variables") for t in later]) != filled
    # With TRUSTED_DOCUMENTS_ONLY the welcome says first that nothing typed here runs.
    trusted = GraphiQLPage(trusted_only=True).tabs()[0]["query"]
    assert trusted.startswith("# Trusted-documents mode is on") and trusted.endswith(WELCOME)
    assert validate(schema, parse(trusted)) == []


def test_without_its_files_the_page_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    # As before `npm ci` ran: a file the page needs is not there.
    absent = graphiql_page.NODE_MODULES / "not-installed" / "graphiql.min.js"
    missing = dict(graphiql_page.VENDOR, **{"graphiql.min.js": absent})
    monkeypatch.setattr(graphiql_page, "VENDOR", missing)
    answer = GraphiQLPage().render()
    assert answer.status_code == 503
    body = bytes(answer.body).decode()
    assert "GraphiQL is not installed" in body and "make install" in body
    assert "<script" not in body and "not-installed/graphiql.min.js" in body


@pytest.fixture(scope="module")
def served(migrated_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Instance]:
    instance = prepare(migrated_url, "graphiql", tmp_path_factory.mktemp("graphiql"))
    instance.start()
    try:
        yield instance
    finally:
        instance.stop()


class Browser:
    """Headless Chromium driven over the DevTools protocol (the `websockets` client),
    with every host but loopback unresolvable; it records every request the page makes."""

    def __init__(self, socket: Any) -> None:
        self.socket = socket
        self.ids = 0
        self.requests: list[str] = []
        self.console: list[str] = []
        self.frames: list[tuple[str, str]] = []  # websocket frames: ("sent" or "received", data)

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        self.ids += 1
        await self.socket.send(json.dumps({"id": self.ids, "method": method, "params": params}))
        while True:
            message = json.loads(await self.socket.recv())
            if message.get("id") == self.ids:
                assert "error" not in message, message
                result: dict[str, Any] = message["result"]
                return result
            self._event(message)

    def _event(self, message: dict[str, Any]) -> None:
        params = message.get("params", {})
        if message.get("method") == "Network.requestWillBeSent":
            self.requests.append(params["request"]["url"])
        elif message.get("method") == "Network.webSocketCreated":
            self.requests.append(params["url"])
        elif message.get("method") == "Network.webSocketFrameSent":
            self.frames.append(("sent", params["response"]["payloadData"]))
        elif message.get("method") == "Network.webSocketFrameReceived":
            self.frames.append(("received", params["response"]["payloadData"]))
        elif message.get("method") == "Log.entryAdded":
            self.console.append(params["entry"]["text"])
        elif message.get("method") == "Runtime.exceptionThrown":
            self.console.append(json.dumps(params["exceptionDetails"])[:500])

    async def js(self, expression: str) -> Any:
        result = await self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        assert "exceptionDetails" not in result, result
        return result["result"].get("value")

    async def until(self, expression: str, seconds: float = 30) -> Any:
        deadline = time.monotonic() + seconds
        value = None
        while time.monotonic() < deadline:
            value = await self.js(expression)
            if value:
                return value
            await asyncio.sleep(0.2)
        raise AssertionError(f"never true: {expression} ({value!r}); console: {self.console}")


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    port = free_port()
    with chromium("graphiql-") as command:
        process = await asyncio.create_subprocess_exec(
            *command,
            f"--remote-debugging-port={port}",
            "about:blank",
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        try:
            target = None
            for _ in range(100):
                try:
                    async with httpx.AsyncClient() as http:
                        pages = (await http.get(f"http://127.0.0.1:{port}/json/list")).json()
                    target = next(p for p in pages if p["type"] == "page")
                    break
                except (httpx.HTTPError, StopIteration):
                    await asyncio.sleep(0.1)
            assert target is not None, "Chromium did not start"
            async with websockets.connect(target["webSocketDebuggerUrl"], max_size=None) as socket:
                b = Browser(socket)
                for domain in ("Network", "Log", "Runtime", "Page"):
                    await b.call(f"{domain}.enable")
                yield b
        finally:
            process.terminate()
            await asyncio.wait_for(process.wait(), timeout=20)


EDITOR = ".graphiql-query-editor .CodeMirror"
# The pane under the query editor that is showing (the welcome opens it on the headers).
HEADERS_PANE = ".graphiql-editor-tool .graphiql-editor:not(.hidden) .CodeMirror"
RESPONSE = "document.querySelector('.graphiql-response .CodeMirror').CodeMirror.getValue()"


@needs_chromium
async def test_graphiql_runs_queries_in_chromium_without_internet(
    served: Instance, browser: Browser
) -> None:
    await browser.call("Page.navigate", url=served.graphql_url)
    # The editor renders, on the welcome tab, with a tab per README example.
    await browser.until(f"!!document.querySelector({json.dumps(EDITOR)})")
    welcome = await browser.js(
        f"document.querySelector({json.dumps(EDITOR)}).CodeMirror.getValue()"
    )
    assert welcome.startswith("# Welcome to coopnet") and '"Authorization": "Bearer' in welcome
    tabs = await browser.js("document.querySelectorAll('.graphiql-tab').length")
    assert tabs == 1 + len(load_examples())
    # The welcome's query needs no token.
    await browser.js("document.querySelector('.graphiql-execute-button').click()")
    answer = json.loads(
        await browser.until(f"{RESPONSE}.includes('localAuthorities') && {RESPONSE}")
    )
    assert "errors" not in answer and isinstance(answer["data"]["localAuthorities"], list)

    # The first example with an admin token pasted into the headers pane.
    token = served.token(Role.ADMIN)
    await browser.js("document.querySelectorAll('.graphiql-tab-button')[1].click()")
    await browser.until(
        f"document.querySelector({json.dumps(EDITOR)}).CodeMirror.getValue().includes('clusters')"
    )
    headers = json.dumps({"Authorization": f"Bearer {token}"})
    pane = f"document.querySelector({json.dumps(HEADERS_PANE)})"
    await browser.until(f"!!{pane}")
    await browser.js(f"{pane}.CodeMirror.setValue({json.dumps(headers)})")
    await browser.js("document.querySelector('.graphiql-execute-button').click()")
    answer = json.loads(await browser.until(f"{RESPONSE}.includes('totalCount') && {RESPONSE}"))
    assert "errors" not in answer, answer
    assert answer["data"]["clusters"]["totalCount"] >= 0

    # A subscription: the websocket carries the headers pane's token (connection_init).
    editor = f"document.querySelector({json.dumps(EDITOR)}).CodeMirror"
    subscription = "subscription { partnershipChanged { kind partnership { id status } } }"
    await browser.js(f"{editor}.setValue({json.dumps(subscription)})")
    await asyncio.sleep(1)  # GraphiQL reads the edited document after a short debounce
    await browser.js("document.querySelector('.graphiql-execute-button').click()")
    deadline = time.monotonic() + 30
    while not any(d == "received" and "connection_ack" in f for d, f in browser.frames):
        assert time.monotonic() < deadline, (
            browser.frames,
            [r for r in browser.requests if not r.startswith("data:")],
            browser.console,
            await browser.js(RESPONSE),
            await browser.js(f"{editor}.getValue()"),
        )
        await browser.js("true")
        await asyncio.sleep(0.2)
    init = next(json.loads(f) for d, f in browser.frames if d == "sent" and "connection_init" in f)
    assert init["payload"] == {"Authorization": f"Bearer {token}"}
    assert any(d == "sent" and '"subscribe"' in f for d, f in browser.frames), browser.frames
    await asyncio.sleep(1)
    await browser.js("true")
    assert not [f for d, f in browser.frames if d == "received" and "error" in f], browser.frames

    # Nothing was asked of any host but the instance, and nothing was refused by the CSP.
    assert browser.requests, "no request recorded"
    for url in browser.requests:
        parts = urlsplit(url)
        assert parts.scheme == "data" or parts.hostname == "127.0.0.1", url
    assert not [m for m in browser.console if "Content Security Policy" in m], browser.console
