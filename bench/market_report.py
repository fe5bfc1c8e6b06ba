"""Benchmark: the market report over a year of data (docs/market.md).

Creates its own database (dropped and created again unless `--reuse` finds it loaded;
only a database whose name starts with "coopnet_bench" is ever dropped), migrates it and
bulk-loads, with set-based SQL and deterministic pseudo-random numbers:

- 2 local authorities, 60 clusters in Barnet (a third need-based), 2,000 PAs on their
  teams (pay from 2025 and a rise from April 2026; 5% left in the last year), 3,000
  people (five funding types);
- 1,000,000 visits over the 365 days before today (500 per PA, never overlapping: 92%
  completed and confirmed, 3% missed, 3% cancelled, 2% still needing cover), each PA
  visiting a caseload of 7 people (so each person sees about 5 PAs), the first of them as
  their named regular PA;
- 50,000 cover requests (80% filled, 5 minutes to 2 days later), 20,000 availability
  windows in the coming 4 weeks, 200 referrals waiting.

Visits are loaded with triggers off (`session_replication_role = replica`): the
commitment rows they would write only matter for bookings to come, and all these visits
are over; the monthly rollup the report reads (`visit_month`) is then filled by
`visit_month_rebuild()`. Then it times, after one warm-up each, `--runs` times:

1. `care.market.market_report` for 12 months by MONTH, and by QUARTER (which also reads
   each month, for disclosure rule 6), on one session: the SQL and the disclosure control;
2. the `marketReport` GraphQL field for the same 12 months, executed by the schema in
   process as an LA analyst (adds the GraphQL layer, not HTTP).

It prints each run and the median. Target (issue 9): a 12-month report under 1 second.

    python bench/market_report.py [DATABASE_URL] [--runs 5] [--reuse] [--explain]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import statistics
import sys
import time
from pathlib import Path

from sqlalchemy import text

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from api.db import create_engine  # noqa: E402
from bench.common import database_exists, migrate, recreate_database  # noqa: E402
from care.disclosure import DisclosureRules  # noqa: E402
from care.enums import Role  # noqa: E402
from care.market import VISITS_SQL, Granularity, market_report, periods  # noqa: E402
from care.viewer import Viewer  # noqa: E402
from schema import create_schema  # noqa: E402
from schema.context import Context, Limits  # noqa: E402

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/coopnet_bench_market"
CLUSTERS, PAS, PEOPLE, VISITS = 60, 2000, 3000, 1_000_000

LOAD_SQL = [
    """CREATE FUNCTION pg_temp.rnd(n bigint, salt int) RETURNS float8
       LANGUAGE sql IMMUTABLE PARALLEL SAFE
       AS $$ SELECT (hashint8(n * 7919 + salt) & 2147483647)::float8 / 2147483648 $$""",
    """INSERT INTO local_authority (gss_code, name)
       VALUES ('E09000003', 'Barnet'), ('E09000010', 'Enfield')""",
    """INSERT INTO coop (id, name, kind, cqc_status, home_la_code)
       VALUES (1, 'Bench Care Co-operative', 'MULTI_STAKEHOLDER', 'REGISTERED', 'E09000003')""",
    f"""INSERT INTO cluster (id, name, kind, la_code, status, created_at, postcode_districts,
                             need_tags)
        SELECT c, 'Cluster ' || c, CASE WHEN c % 3 = 0 THEN 'NEED_BASED' ELSE 'GEOGRAPHIC' END,
               'E09000003', 'ACTIVE', '2024-01-01', ARRAY['N' || (c % 20 + 1)],
               CASE WHEN c % 3 = 0 THEN ARRAY['dementia'] ELSE '{{}}' END
        FROM generate_series(1, {CLUSTERS}) c""",
    # PAs: member ids 1001.. (i = id - 1001), on the team of cluster i % 60 + 1.
    f"""INSERT INTO member (id, name, membership_class, joined_on)
        SELECT 1001 + i, 'PA ' || i, 'WORKER', '2024-01-01'
        FROM generate_series(0, {PAS - 1}) i""",
    f"""INSERT INTO pa_profile (member_id, contracted_weekly_hours, hourly_pay_pence)
        SELECT 1001 + i, 16 + floor(pg_temp.rnd(i, 1) * 22),
               1250 + floor(pg_temp.rnd(i, 2) * 300)::int
        FROM generate_series(0, {PAS - 1}) i""",
    # The trigger dated every rate today: back-date it, and add last April's rise.
    "UPDATE pa_pay_rate SET effective_from = '2025-01-01'",
    """INSERT INTO pa_pay_rate (pa_id, effective_from, hourly_pay_pence)
       SELECT pa_id, '2026-04-01', hourly_pay_pence + 50 FROM pa_pay_rate""",
    f"""INSERT INTO cluster_pa (cluster_id, pa_id)
        SELECT i % {CLUSTERS} + 1, 1001 + i FROM generate_series(0, {PAS - 1}) i""",
    """UPDATE member SET active = false WHERE id BETWEEN 1001 AND 3000 AND id % 20 = 0""",
    """UPDATE member SET left_on = current_date - (id % 360)::int
       WHERE id BETWEEN 1001 AND 3000 AND NOT active""",
    # People: member ids 10001.. (s = id - 10001), in cluster s % 60 + 1.
    f"""INSERT INTO member (id, name, membership_class)
        SELECT 10001 + s, 'Person ' || s, 'SERVICE_USER' FROM generate_series(0, {PEOPLE - 1}) s""",
    f"""INSERT INTO service_user_profile (member_id, funding, needs)
        SELECT 10001 + s,
               (ARRAY['DIRECT_PAYMENT', 'PERSONAL_BUDGET', 'LA_COMMISSIONED', 'NHS_CHC',
                      'SELF_FUNDED'])[1 + s % 5],
               ARRAY['personal-care']
        FROM generate_series(0, {PEOPLE - 1}) s""",
    f"""INSERT INTO cluster_service_user (cluster_id, service_user_id)
        SELECT s % {CLUSTERS} + 1, 10001 + s FROM generate_series(0, {PEOPLE - 1}) s""",
    # Each PA has a caseload of 7 people (so each person about 4.7 PAs, as a small team
    # around a person would be); the first of them has the PA as a named regular PA.
    """CREATE FUNCTION pg_temp.person(i int, k int) RETURNS int
       LANGUAGE sql IMMUTABLE AS $$ SELECT 10001 + (i * 3 + k * 431) % 3000 $$""",
    f"""INSERT INTO regular_pa (service_user_id, pa_id)
        SELECT DISTINCT pg_temp.person(i, 0), 1001 + i FROM generate_series(0, {PAS - 1}) i""",
    "SET session_replication_role = replica",
    # Visit n: PA i = n % 2000, its j-th visit (j = n / 2000, 0..499) on day
    # floor(j * 0.73) of the past year at 07:00, 11:00 or 15:00, for 30 to 120 minutes:
    # one PA's visits never overlap. The person: one of the PA's caseload, in turn.
    f"""INSERT INTO visit (id, service_user_id, pa_id, during, status, tasks, confirmed_at,
                           confirmed_by_id)
        SELECT n, person, CASE WHEN r < 0.02 THEN NULL ELSE 1001 + i END,
               tstzrange(s, s + make_interval(mins => 30 + (n % 91)::int)),
               CASE WHEN r < 0.02 THEN 'NEEDS_COVER' WHEN r < 0.05 THEN 'MISSED'
                    WHEN r < 0.08 THEN 'CANCELLED' ELSE 'COMPLETED' END,
               '{{}}',
               CASE WHEN r >= 0.08 THEN s + interval '3 hours' END,
               CASE WHEN r >= 0.08 THEN person END
        FROM generate_series(0, {VISITS - 1}) n,
             LATERAL (SELECT (n % {PAS})::int AS i, (n / {PAS})::int AS j,
                             pg_temp.rnd(n, 3) AS r) ij,
             LATERAL (SELECT pg_temp.person(i, j % 7) AS person) p,
             LATERAL (SELECT ((date_trunc('day', now() AT TIME ZONE 'Europe/London')
                               - interval '366 days'
                               + make_interval(days => floor(j * 0.73)::int,
                                               hours => 7 + 4 * (j % 3)))
                              AT TIME ZONE 'Europe/London') AS s) st""",
    "SET session_replication_role = origin",
    # The triggers that keep the monthly rollup were off too: fill it in one pass.
    "SELECT visit_month_rebuild()",
    """INSERT INTO cover_request (visit_id, reason, status, opened_at, closed_at,
                                  filled_by_pa_id)
       SELECT v.id, 'MANUAL', CASE WHEN pg_temp.rnd(v.id, 5) < 0.8 THEN 'FILLED'
                                   ELSE 'CANCELLED' END,
              lower(v.during) - interval '3 days',
              lower(v.during) - interval '3 days'
                + make_interval(mins => 5 + floor(pg_temp.rnd(v.id, 6) * 2880)::int),
              CASE WHEN pg_temp.rnd(v.id, 5) < 0.8 THEN coalesce(v.pa_id, 1001) END
       FROM visit v WHERE v.id % 20 = 7""",
    f"""INSERT INTO availability_window (pa_id, during)
        SELECT 1001 + i, tstzrange(s, s + interval '4 hours')
        FROM generate_series(0, {PAS - 1}) i, generate_series(0, 9) k,
             LATERAL (SELECT date_trunc('day', now()) + make_interval(days => 1 + k * 2 + i % 2,
                             hours => 8) AS s) st""",
    """INSERT INTO referral (la_code, postcode_district, hours_per_week, referred_on)
       SELECT 'E09000003', 'N' || (r % 20 + 1), 5 + r % 10, current_date - (r % 120)::int
       FROM generate_series(1, 200) r""",
    "SELECT setval('member_id_seq', (SELECT max(id) FROM member))",
    "SELECT setval('cluster_id_seq', (SELECT max(id) FROM cluster))",
    "SELECT setval('visit_id_seq', (SELECT max(id) FROM visit))",
    "ANALYZE",
]


def resolve_url(arg: str | None) -> str:
    return arg or os.environ.get("BENCH_DATABASE_URL") or DEFAULT_URL


async def loaded(url: str) -> bool:
    if not await database_exists(url):
        return False
    engine = create_engine(url, 1)
    try:
        async with engine.connect() as conn:
            return bool(
                await conn.scalar(
                    text("SELECT to_regclass('visit') IS NOT NULL AND EXISTS (SELECT 1 FROM visit)")
                )
            )
    finally:
        await engine.dispose()


async def prepare(url: str, reuse: bool) -> None:
    if reuse and await loaded(url):
        migrate(url)  # a database loaded before a new migration gets it (and its backfill)
        print("reusing the loaded database")
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
    print(f"loaded in {time.perf_counter() - began:.0f} s")


REPORT = """
query ($la: String!, $from: Date!, $to: Date!, $g: Granularity!) {
  marketReport(localAuthority: $la, from: $from, to: $to, granularity: $g) {
    periods { start end figures { measure breakdown value unit withheld rounded } }
    capacity { measure value withheld }
  }
}"""


async def measure(url: str, runs: int, explain: bool) -> None:
    engine = create_engine(url, 2)
    today = dt.date.today()
    this_month = today.replace(day=1)
    start = this_month.replace(year=this_month.year - 1)  # 12 whole months before this one
    end = this_month - dt.timedelta(days=1)
    rules = DisclosureRules()
    schema = create_schema()
    try:
        async with engine.connect() as conn:
            counts = (
                await conn.execute(
                    text(
                        "SELECT (SELECT count(*) FROM visit), (SELECT count(*) FROM pa_profile),"
                        " (SELECT count(*) FROM service_user_profile),"
                        " (SELECT count(*) FROM cover_request)"
                    )
                )
            ).one()
        print(
            f"data: {counts[0]:,} visits, {counts[1]:,} PAs, {counts[2]:,} people, "
            f"{counts[3]:,} cover requests; report {start} to {end}"
        )
        from sqlalchemy.ext.asyncio import AsyncSession

        if explain:
            spans = periods(start, end, Granularity.MONTH)
            async with AsyncSession(engine) as session:
                plan = await session.execute(
                    text("EXPLAIN (ANALYZE, BUFFERS) " + VISITS_SQL),
                    {
                        "la": "E09000003",
                        "starts": [s for s, _ in spans],
                        "ends": [e for _, e in spans],
                        "unit": "month",
                    },
                )
                print("\n".join(r[0] for r in plan))
        for granularity in (Granularity.MONTH, Granularity.QUARTER):
            times = []
            for run in range(runs + 1):
                async with AsyncSession(engine) as session:
                    began = time.perf_counter()
                    report = await market_report(
                        session, "E09000003", start, end, granularity, rules
                    )
                    took = time.perf_counter() - began
                if run:  # the first is a warm-up
                    times.append(took)
            figures = sum(len(p.figures) for p in report.periods)
            print(
                f"care.market.market_report, 12 months by {granularity.value}: "
                + ", ".join(f"{t * 1000:.0f}" for t in times)
                + f" ms; median {statistics.median(times) * 1000:.0f} ms "
                f"({len(report.periods)} periods, {figures} figures)"
            )
        analyst = Viewer(role=Role.LA_ANALYST, la_code="E09000003")
        times = []
        for run in range(runs + 1):
            async with AsyncSession(engine) as session:
                began = time.perf_counter()
                result = await schema.execute(
                    REPORT,
                    variable_values={
                        "la": "E09000003",
                        "from": start.isoformat(),
                        "to": end.isoformat(),
                        "g": "MONTH",
                    },
                    context_value=Context(session=session, viewer=analyst, limits=Limits()),
                )
                took = time.perf_counter() - began
            assert not result.errors, result.errors
            if run:
                times.append(took)
        print(
            "marketReport (GraphQL, in process, as an LA analyst), 12 months by MONTH: "
            + ", ".join(f"{t * 1000:.0f}" for t in times)
            + f" ms; median {statistics.median(times) * 1000:.0f} ms"
        )
    finally:
        await engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("url", nargs="?")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--reuse", action="store_true")
    parser.add_argument("--explain", action="store_true")
    args = parser.parse_args()
    url = resolve_url(args.url)
    asyncio.run(prepare(url, args.reuse))
    asyncio.run(measure(url, args.runs, args.explain))


if __name__ == "__main__":
    main()
