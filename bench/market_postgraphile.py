"""Benchmark: the market report's visit figures side by side with PostGraphile.

The developers' guide asks that reads be measured next to PostGraphile on the same
database. This times, on the database bench/market_report.py loads (default
coopnet_bench_market; run that first), for one local authority (E09000003) over the 12
whole London months before this one:

1. PostGraphile 4 with @graphile/pg-aggregates (and postgraphile-plugin-connection-filter
   for the date range) over HTTP: hours of visits summed per month and status, from the
   million rows of `visit`;
2. the same through PostGraphile over the `visit_month` rollup (when the database has it):
   seconds and visits per month, by kind, summed over the local authority's people;
3. our `marketReport` field for the same months by MONTH, executed by the schema in
   process as an LA analyst (as bench/market_report.py does: no HTTP). It computes far
   more than 1 and 2: every figure of docs/market.md (people, cover, workforce, capacity)
   with disclosure control.

PostGraphile cannot group by a London month or join a visit to its local authority on its
own; the bench adds two views in a schema of its own, `bench_pg`, in one transaction that
creates nothing else, and drops that schema at the end (`--keep-schema` keeps it). It never
writes to the tables of `public`, and PostGraphile's connections are read-only
(default_transaction_read_only). `coopnet serve` is not used: it migrates and tops up
availability, both writes.

PostGraphile is installed on demand with npm into `--node-dir` (default var/bench-node,
ignored by git); it is not a dependency of the project. Needs Node 20 and npm.

    python bench/market_postgraphile.py [DATABASE_URL] [--runs 5] [--keep-schema]
        [--source DIR]  # time the marketReport of another checkout (default: this one)
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/coopnet_bench_market"
LA = "E09000003"
LONDON = ZoneInfo("Europe/London")
SCHEMA = "bench_pg"
MARK = "coopnet bench/market_postgraphile.py: dropped when the bench ends"
# Version ranges the bench was written against (PostGraphile 4, not 5's different API).
PACKAGES = {
    "postgraphile": "^4.14.1",
    "@graphile/pg-aggregates": "^0.1.1",
    "postgraphile-plugin-connection-filter": "^2.3.0",
}

# The local authority's people are those in its clusters, as in care/market.py.
LA_PEOPLE = """(SELECT DISTINCT csu.service_user_id, c.la_code
     FROM public.cluster_service_user csu JOIN public.cluster c ON c.id = csu.cluster_id)"""
VIEWS = {
    "la_visit": f"""
CREATE VIEW {SCHEMA}.la_visit AS
SELECT p.la_code, v.status,
       lower(v.during) AS starts_at,
       date_trunc('month', lower(v.during) AT TIME ZONE 'Europe/London')::date AS month,
       extract(epoch FROM upper(v.during) - lower(v.during)) / 3600.0 AS hours
FROM public.visit v JOIN {LA_PEOPLE} p ON p.service_user_id = v.service_user_id""",
    "la_visit_month": f"""
CREATE VIEW {SCHEMA}.la_visit_month AS
SELECT p.la_code, m.month, m.visits_planned, m.visits_delivered, m.seconds_planned,
       m.seconds_delivered, m.seconds_missed, m.seconds_cancelled, m.seconds_needing_cover
FROM public.visit_month m JOIN {LA_PEOPLE} p ON p.service_user_id = m.service_user_id""",
}

VISITS_QUERY = """
query ($la: String!, $from: Datetime!, $to: Datetime!) {
  allLaVisits(condition: {laCode: $la},
              filter: {startsAt: {greaterThanOrEqualTo: $from, lessThan: $to}}) {
    aggregates { sum { hours } }
    groupedAggregates(groupBy: [MONTH, STATUS]) { keys sum { hours } }
  }
}"""

ROLLUP_QUERY = """
query ($la: String!, $from: Date!, $to: Date!) {
  allLaVisitMonths(condition: {laCode: $la},
                   filter: {month: {greaterThanOrEqualTo: $from, lessThan: $to}}) {
    aggregates { sum { secondsPlanned } }
    groupedAggregates(groupBy: [MONTH]) {
      keys
      sum { visitsPlanned visitsDelivered secondsPlanned secondsDelivered secondsMissed
            secondsCancelled secondsNeedingCover }
    }
  }
}"""

REPORT = """
query ($la: String!, $from: Date!, $to: Date!, $g: Granularity!) {
  marketReport(localAuthority: $la, from: $from, to: $to, granularity: $g) {
    periods { start end figures { measure breakdown value unit withheld rounded } }
    capacity { measure value withheld }
  }
}"""


# --- PostGraphile, installed on demand --------------------------------------------------


def install(node_dir: Path) -> Path:
    """The postgraphile command under node_dir, installed there by npm when missing."""
    binary = node_dir / "node_modules" / ".bin" / "postgraphile"
    if not binary.exists():
        npm = shutil.which("npm")
        if npm is None:
            raise SystemExit("npm is not on PATH: install Node 20 to run this bench.")
        node_dir.mkdir(parents=True, exist_ok=True)
        specs = [f"{name}@{version}" for name, version in PACKAGES.items()]
        print(f"installing {', '.join(specs)} into {node_dir}", flush=True)
        subprocess.run(
            [npm, "install", "--no-save", "--no-audit", "--no-fund", "--prefix", str(node_dir)]
            + specs,
            check=True,
        )
    versions = []
    for name in PACKAGES:
        meta = json.loads((node_dir / "node_modules" / name / "package.json").read_text())
        versions.append(f"{name} {meta['version']}")
    print("using " + ", ".join(versions))
    return binary


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def post(endpoint: str, query: str, variables: dict[str, Any]) -> dict[str, Any]:
    body = json.dumps({"query": query, "variables": variables}).encode()
    request = urllib.request.Request(
        endpoint, body, {"Content-Type": "application/json", "Accept": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=600) as response:
        result: dict[str, Any] = json.load(response)
    if result.get("errors"):
        raise RuntimeError(f"PostGraphile answered errors: {result['errors']}")
    return result


def start_postgraphile(binary: Path, url: str, port: int) -> subprocess.Popen[bytes]:
    # Every connection PostGraphile opens is read-only: the bench database is shared.
    separator = "&" if "?" in url else "?"
    read_only = url + separator + "options=" + quote("-c default_transaction_read_only=on")
    process = subprocess.Popen(
        [
            str(binary),
            "--connection",
            read_only,
            "--schema",
            f"public,{SCHEMA}",
            "--append-plugins",
            "postgraphile-plugin-connection-filter,@graphile/pg-aggregates",
            "--disable-graphiql",
            "--disable-default-mutations",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    endpoint = f"http://127.0.0.1:{port}/graphql"
    deadline = time.monotonic() + 180
    while True:
        if process.poll() is not None:
            error = process.stderr.read().decode() if process.stderr else ""
            raise SystemExit(f"PostGraphile exited with {process.returncode}:\n{error}")
        try:
            post(endpoint, "{ __typename }", {})
            return process
        except (urllib.error.URLError, ConnectionError):
            if time.monotonic() > deadline:
                process.terminate()
                raise SystemExit("PostGraphile did not answer within 180 s.") from None
            time.sleep(0.5)


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


# --- the bench's own schema -------------------------------------------------------------


async def create_views(url: str) -> list[str]:
    """Create bench_pg and its views in one transaction; the names of the views made."""
    from sqlalchemy import text

    from api.db import create_engine

    engine = create_engine(url, 1)
    try:
        async with engine.begin() as conn:
            existing = await conn.scalar(
                text(
                    "SELECT obj_description(oid, 'pg_namespace') FROM pg_namespace"
                    " WHERE nspname = :s"
                ),
                {"s": SCHEMA},
            )
            if existing is not None and existing != MARK:
                raise SystemExit(f"A schema {SCHEMA} not made by this bench exists: stopping.")
            if existing == MARK:  # left by an earlier run with --keep-schema
                await conn.execute(text(f"DROP SCHEMA {SCHEMA} CASCADE"))
            await conn.execute(text(f"CREATE SCHEMA {SCHEMA}"))
            await conn.execute(text(f"COMMENT ON SCHEMA {SCHEMA} IS '{MARK}'"))
            made = []
            for name, sql in VIEWS.items():
                table = "visit_month" if name == "la_visit_month" else "visit"
                if await conn.scalar(text(f"SELECT to_regclass('public.{table}')")) is None:
                    print(f"no table public.{table}: {SCHEMA}.{name} not made")
                    continue
                await conn.execute(text(sql))
                made.append(name)
        return made
    finally:
        await engine.dispose()


async def drop_views(url: str) -> None:
    from sqlalchemy import text

    from api.db import create_engine

    engine = create_engine(url, 1)
    try:
        async with engine.begin() as conn:
            mark = await conn.scalar(
                text(
                    "SELECT obj_description(oid, 'pg_namespace') FROM pg_namespace"
                    " WHERE nspname = :s"
                ),
                {"s": SCHEMA},
            )
            if mark == MARK:
                await conn.execute(text(f"DROP SCHEMA {SCHEMA} CASCADE"))
    finally:
        await engine.dispose()


# --- timing -----------------------------------------------------------------------------


def timed(runs: int, call: Callable[[], Any]) -> tuple[list[float], Any]:
    """`runs` timings (seconds) after one warm-up, and the last result."""
    result = call()
    times = []
    for _ in range(runs):
        began = time.perf_counter()
        result = call()
        times.append(time.perf_counter() - began)
    return times, result


def show(label: str, times: list[float], what: str) -> None:
    print(
        f"{label}: "
        + ", ".join(f"{t * 1000:.0f}" for t in times)
        + f" ms; median {statistics.median(times) * 1000:.0f} ms\n    computes: {what}",
        flush=True,
    )


async def time_market_report(url: str, runs: int, start: dt.date, end: dt.date) -> list[float]:
    """marketReport in process as an LA analyst, as bench/market_report.py times it."""
    from sqlalchemy.ext.asyncio import AsyncSession

    from api.db import create_engine
    from care.enums import Role
    from care.viewer import Viewer
    from schema import create_schema
    from schema.context import Context, Limits

    engine = create_engine(url, 2)
    schema = create_schema()
    analyst = Viewer(role=Role.LA_ANALYST, la_code=LA)
    variables = {"la": LA, "from": start.isoformat(), "to": end.isoformat(), "g": "MONTH"}
    times = []
    try:
        for run in range(runs + 1):
            async with AsyncSession(engine) as session:
                began = time.perf_counter()
                result = await schema.execute(
                    REPORT,
                    variable_values=variables,
                    context_value=Context(session=session, viewer=analyst, limits=Limits()),
                )
                took = time.perf_counter() - began
            if result.errors:
                raise RuntimeError(f"marketReport answered errors: {result.errors}")
            if run:  # the first is a warm-up
                times.append(took)
        assert result.data is not None
        periods = result.data["marketReport"]["periods"]
        figures = sum(len(p["figures"]) for p in periods)
        print(f"marketReport: {len(periods)} periods, {figures} figures")
    finally:
        await engine.dispose()
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("url", nargs="?")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--node-dir", type=Path, default=ROOT / "var" / "bench-node")
    parser.add_argument("--source", type=Path, default=ROOT, help="coopnet checkout to time")
    parser.add_argument("--keep-schema", action="store_true")
    args = parser.parse_args()
    url = args.url or os.environ.get("BENCH_DATABASE_URL") or DEFAULT_URL
    sys.path.insert(0, str(args.source.resolve()))

    this_month = dt.date.today().replace(day=1)
    start = this_month.replace(year=this_month.year - 1)  # 12 whole months before this one
    end = this_month - dt.timedelta(days=1)
    since = dt.datetime.combine(start, dt.time(), LONDON)
    until = dt.datetime.combine(this_month, dt.time(), LONDON)
    print(f"local authority {LA}, {start} to {end} (London), {args.runs} runs after a warm-up")

    binary = install(args.node_dir)
    made = asyncio.run(create_views(url))
    try:
        port = free_port()
        began = time.perf_counter()
        process = start_postgraphile(binary, url, port)
        print(f"PostGraphile answering on port {port} after {time.perf_counter() - began:.1f} s")
        endpoint = f"http://127.0.0.1:{port}/graphql"
        try:
            times, _ = timed(args.runs, lambda: post(endpoint, "{ __typename }", {}))
            show(
                "PostGraphile, an empty query (HTTP)",
                times,
                "`{ __typename }`: the HTTP and GraphQL cost under the two queries below",
            )
            variables = {"la": LA, "from": since.isoformat(), "to": until.isoformat()}
            times, result = timed(args.runs, lambda: post(endpoint, VISITS_QUERY, variables))
            data = result["data"]["allLaVisits"]
            groups = data["groupedAggregates"]
            planned = sum(float(g["sum"]["hours"]) for g in groups if g["keys"][1] != "CANCELLED")
            print(
                f"visits: {len(groups)} month-and-status groups, "
                f"{float(data['aggregates']['sum']['hours']):,.0f} hours in all, "
                f"{planned:,.0f} planned (not cancelled)"
            )
            show(
                "PostGraphile + pg-aggregates over `visit` (HTTP)",
                times,
                "hours of the LA's visits summed per London month and status, and in all "
                "(2 aggregates; no people counts, cover, workforce or disclosure control)",
            )
            if "la_visit_month" in made:
                variables = {"la": LA, "from": start.isoformat(), "to": this_month.isoformat()}
                times, result = timed(args.runs, lambda: post(endpoint, ROLLUP_QUERY, variables))
                data = result["data"]["allLaVisitMonths"]
                seconds = int(data["aggregates"]["sum"]["secondsPlanned"])
                print(
                    f"rollup: {len(data['groupedAggregates'])} months, "
                    f"{seconds / 3600:,.0f} hours planned"
                )
                show(
                    "PostGraphile + pg-aggregates over `visit_month` (HTTP)",
                    times,
                    "visits and seconds planned, delivered, missed, cancelled and needing "
                    "cover summed per month over the LA's people (the same data shape as "
                    "the report's rollup; no people counts, cover, workforce or disclosure)",
                )
        finally:
            stop(process)
    finally:
        if args.keep_schema:
            print(f"schema {SCHEMA} kept")
        else:
            asyncio.run(drop_views(url))

    times = asyncio.run(time_market_report(url, args.runs, start, end))
    show(
        f"marketReport by MONTH (GraphQL in process, code of {args.source.resolve()})",
        times,
        "every figure of docs/market.md for 12 months (hours, people, cover, continuity, "
        "workforce, capacity, referrals) with disclosure control; no HTTP",
    )


if __name__ == "__main__":
    main()
