"""GraphiQL at `/graphql`, served entirely by this instance (no CDN).

Councils' and care providers' networks often block CDNs, and a GraphiQL page whose scripts
come from one stays blank there. GraphiQL, React and ReactDOM are installed from the npm
registry at install time (`api/graphiql/package-lock.json` pins them; `make install` and
the Docker build run `npm ci`), never committed, and served from `/static/graphiql/`. The
page opens on a welcome tab and one tab per README example (`api/graphiql/examples.graphql`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import html
import json
import re
from dataclasses import dataclass
from pathlib import Path

from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse, HTMLResponse

HERE = Path(__file__).parent
NODE_MODULES = HERE / "graphiql" / "node_modules"
EXAMPLES = HERE / "graphiql" / "examples.graphql"

# What the page loads, in order, by the name it is served under.
VENDOR = {
    "react.production.min.js": NODE_MODULES / "react" / "umd" / "react.production.min.js",
    "react-dom.production.min.js": NODE_MODULES
    / "react-dom"
    / "umd"
    / "react-dom.production.min.js",
    "graphiql.min.js": NODE_MODULES / "graphiql" / "graphiql.min.js",
    "graphiql.min.css": NODE_MODULES / "graphiql" / "graphiql.min.css",
}
OWN = {
    "coopnet-graphiql.js": HERE / "static" / "graphiql.js",
    "coopnet-graphiql.css": HERE / "static" / "graphiql.css",
}

# Nothing but this instance. GraphiQL's editors set inline styles; connect-src 'self'
# covers the websocket of subscriptions on the same host.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self' data:; connect-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "Cache-Control": "no-cache",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}
# Asset URLs carry a digest of the file: a new version is a new URL, so browsers may keep
# each one for a year.
IMMUTABLE = "public, max-age=31536000, immutable"

WELCOME = """\
# Welcome to coopnet's GraphQL API
#
# This co-op's instance answers GraphQL here: clusters, members, pools, availability,
# the rota of visits, cover, and market figures for councils. The schema is in the
# documentation explorer (the book icon, top left) and in schema.graphql.
#
# Most of it needs a token. Open the "Headers" pane below this editor and paste
#
#   {"Authorization": "Bearer <your token>"}
#
# Tokens come from the co-op's admin (`coopnet token issue --role ...`); on a
# developer's machine `make run` prints an admin token when it starts. Headers are
# not saved in the browser: paste the token again after a reload.
#
# The other tabs hold the README's example queries, ready to run (Ctrl-Enter, or the
# play button). Without a token only public fields answer, like this one:

{ coop { name } localAuthorities { gssCode name } }
"""

# Above the welcome when the instance runs registered operations only (README,
# "Persisted operations"): nothing typed here runs, and the page says so first.
TRUSTED_ONLY_NOTE = (
    "# Trusted-documents mode is on (TRUSTED_DOCUMENTS_ONLY): this instance runs only\n"
    "# the operations its frontends registered, so queries sent from here are refused\n"
    "# with PERSISTED_QUERY_REQUIRED. Explore the API on a development instance instead.\n"
    "#\n"
)


@dataclass(frozen=True)
class Example:
    title: str
    query: str
    variables: str | None


def load_examples(path: Path = EXAMPLES) -> list[Example]:
    """The examples of `examples.graphql`: "#: title" starts one, "#> json" its variables."""
    examples: list[Example] = []
    title: str | None = None
    variables: str | None = None
    lines: list[str] = []

    def close() -> None:
        if title is not None:
            examples.append(Example(title, "\n".join(lines).strip() + "\n", variables))

    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("#:"):
            close()
            title, variables, lines = line[2:].strip(), None, []
        elif line.startswith("#>") and title is not None:
            variables = line[2:].strip()
        elif title is not None:
            lines.append(line)
    close()
    return examples


# A variable's value "TODAY", "TODAY+7" or "TODAY-1" is that day at midnight UTC (a
# DateTime); "DATE", "DATE-365" that day as a Date. The examples then run on any day
# against the demo co-op, whose rota and figures are laid out around the day it was loaded.
_RELATIVE_DAY = re.compile(r"(TODAY|DATE)([+-]\d{1,4})?")


def fill_dates(variables: str, today: dt.date) -> dict[str, object]:
    """An example's variables with its relative days made real ones."""

    def fill(value: object) -> object:
        if isinstance(value, str) and (m := _RELATIVE_DAY.fullmatch(value)):
            day = today + dt.timedelta(days=int(m[2] or 0))
            return f"{day.isoformat()}T00:00:00Z" if m[1] == "TODAY" else day.isoformat()
        return value

    parsed = json.loads(variables)
    if not isinstance(parsed, dict):
        raise ValueError("an example's variables must be a JSON object")
    return {k: fill(v) for k, v in parsed.items()}


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def _tabs(examples: list[Example], today: dt.date) -> list[dict[str, str]]:
    tabs = [{"query": WELCOME}]
    for e in examples:
        tab = {"query": f"# {e.title}\n{e.query}"}
        if e.variables:
            tab["variables"] = json.dumps(fill_dates(e.variables, today), indent=2)
        tabs.append(tab)
    return tabs


def _missing_page(missing: list[str]) -> HTMLResponse:
    files = "".join(f"<li><code>{html.escape(m)}</code></li>" for m in missing)
    body = f"""<!doctype html>
<html lang="en-GB"><head><meta charset="utf-8"><title>GraphiQL is not installed</title></head>
<body>
<h1>GraphiQL is not installed on this instance</h1>
<p>Its files come from the npm registry at install time, and these are missing:</p>
<ul>{files}</ul>
<p>Run <code>make install</code> (or <code>npm ci --prefix api/graphiql</code>) and restart
the server. The API itself works: send GraphQL to this URL with POST.</p>
</body></html>
"""
    return HTMLResponse(body, status_code=503, headers=HEADERS)


class GraphiQLPage:
    """The page and its assets; the files are looked up (and hashed) once, at start."""

    def __init__(self, graphql_path: str = "/graphql", *, trusted_only: bool = False) -> None:
        self.graphql_path = graphql_path
        self.files = {**VENDOR, **OWN}
        self.missing = [
            str(path.relative_to(HERE.parent)) for path in self.files.values() if not path.is_file()
        ]
        self.digests = {} if self.missing else {n: _digest(p) for n, p in self.files.items()}
        self.examples = load_examples()
        self.trusted_only = trusted_only
        self._tabs_of: tuple[dt.date, list[dict[str, str]]] | None = None

    def tabs(self, today: dt.date | None = None) -> list[dict[str, str]]:
        """The welcome and the examples, their dates relative to today: worked out again
        when the day changes, so a server that runs for weeks keeps offering examples
        that find the demo's rota."""
        today = today or dt.date.today()
        if self._tabs_of is None or self._tabs_of[0] != today:
            tabs = _tabs(self.examples, today)
            if self.trusted_only:
                tabs[0]["query"] = TRUSTED_ONLY_NOTE + tabs[0]["query"]
            self._tabs_of = (today, tabs)
        return self._tabs_of[1]

    def url(self, name: str) -> str:
        return f"/static/graphiql/{self.digests[name]}/{name}"

    def render(self) -> HTMLResponse:
        if self.missing:
            return _missing_page(self.missing)
        config = json.dumps({"url": self.graphql_path, "tabs": self.tabs()})
        config = config.replace("<", "\\u003c")  # no "</script>" can end the block
        scripts = "".join(
            f'<script src="{self.url(n)}"></script>\n'
            for n in (
                "react.production.min.js",
                "react-dom.production.min.js",
                "graphiql.min.js",
                "coopnet-graphiql.js",
            )
        )
        page = f"""<!doctype html>
<html lang="en-GB">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>coopnet GraphiQL</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="{self.url("graphiql.min.css")}">
<link rel="stylesheet" href="{self.url("coopnet-graphiql.css")}">
</head>
<body>
<div id="graphiql">Loading GraphiQL...</div>
<script type="application/json" id="graphiql-config">{config}</script>
{scripts}</body>
</html>
"""
        return HTMLResponse(page, headers=HEADERS)

    def router(self) -> APIRouter:
        router = APIRouter(prefix="/static/graphiql")
        media = {".js": "text/javascript", ".css": "text/css"}

        @router.get("/{digest}/{name}", include_in_schema=False)
        async def asset(digest: str, name: str) -> FileResponse:
            # Only the listed files, and only at their current digest.
            if self.digests.get(name) != digest:
                raise HTTPException(status_code=404)
            path = self.files[name]
            return FileResponse(
                path,
                media_type=media[path.suffix],
                headers={"Cache-Control": IMMUTABLE, "X-Content-Type-Options": "nosniff"},
            )

        return router
