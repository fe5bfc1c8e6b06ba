"""Benchmark: `coverCandidates` over the GraphQL HTTP endpoint at co-op scale.

Creates its own database, migrates it, bulk-loads a synthetic co-op with set-based SQL
(`INSERT ... SELECT generate_series`, deterministic: every "random" number is a hash of the
row number), starts the app with uvicorn in a subprocess on a free local port, then fires
coverCandidates queries for different visits needing cover from a few concurrent clients,
as the coordinator of each visit's cluster. Prints p50/p95/p99 latency, requests per
second, candidates per answer and the SQL statements per request (reported to admins in
`extensions.sqlStatements`).

    python bench/cover_candidates.py [DATABASE_URL] [--requests 200] [--clients 4]
        [--first 10] [--warmup 40] [--as-admin] [--reuse] [--explain] [--window-days 56]

Before measuring, it sends `--warmup` requests with the same concurrency (the server opens
its database connections and prepares its statements), and five as an admin to read the
statement count. `--as-admin` asks as an admin instead of each visit's coordinator;
`--explain` prints the plan of one search, as the server runs it.

The database URL comes from the argument, else BENCH_DATABASE_URL, else
postgresql://postgres@127.0.0.1:5432/coopnet_bench. It is dropped and created again unless
`--reuse` finds it loaded already (then `--window-days` has no effect); to protect other
data, only a database whose name starts with "coopnet_bench" is ever dropped.

The synthetic co-op (all in one area of about 33 x 41 km, north London-ish):
- 250 geographic clusters on a 16 x 16 grid, each with a coordinator, 40 service users
  within about 1.5 km of its centre and 16 PAs within about 3 km; 16 pools, each serving a
  4 x 4 block of clusters, with 1,000 pool-only PAs spread over the block and a fifth of
  the team PAs: 5,000 PAs and 10,000 service users.
- Needs (personal-care always; medication-support, hoist, dementia for some) and PA skills (some
  expired); DBS checks mostly in date (some too old, a few missing); contracted hours 16
  to 37; travel limits 5 to 20 km; a tenth opted out of the 48-hour week; 1% with no
  known location; 2% of PAs inactive.
- 200,000 visits of 30 to 120 minutes over 28 days (20 past, 8 ahead): each PA visits
  the same few people; past visits completed (some missed or cancelled), future ones
  scheduled, 4% needing cover. 600 PAs have an absence in the coming week, which turns
  their visits in it into cover requests; 4% of past visits were filled by cover.
- 100,000 availability windows of 3 to 6 hours, 20 per PA, spread over the next 8 weeks
  (the horizon the service expands weekly patterns to; `--window-days` changes it).
- Two partner co-ops (ACTIVE, granting AVAILABILITY and COVER), each with 1,000 PAs in
  north London postcode districts and 20 synced free periods each over the same horizon
  (40,000 `partner_window` rows), and a few hundred confirmed exchanges for past visits.
  `coverCandidates` searches both beside our own PAs; `--no-partners` asks without them.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from api.auth import TokenService, load_or_create_keys  # noqa: E402
from api.db import create_engine  # noqa: E402
from api.settings import Settings  # noqa: E402
from bench.common import (  # noqa: E402
    database_exists,
    free_port,
    migrate,
    recreate_database,
)
from care.enums import Role  # noqa: E402
from care.services.availability import HORIZON  # noqa: E402

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/coopnet_bench"

PAS = 5_000
TEAM_PAS = 4_000  # the rest are in pools only
SERVICE_USERS = 10_000
CLUSTERS = 250
VISITS = 200_000
WINDOWS = 100_000

PARTNERS = 2
PARTNER_PAS = 1_000  # per partner co-op
PARTNER_WINDOWS = 20  # per partner PA, over the horizon

QUERY = """query Candidates($visit: ID!, $first: Int, $partners: Boolean) {
  coverCandidates(visitId: $visit, first: $first, includePartners: $partners) {
    candidates {
      source score distanceKm visitsToPersonLast8Weeks coversLast28Days
      parts { continuity regularPa sameCluster samePool travel contractHours fairness }
      ... on LocalCoverCandidate {
        isRegularPa sameCluster samePool hoursInWeek contractedWeeklyHours pa { id name }
      }
      ... on PartnerCoverCandidate {
        partnership { id name } paRef district travelKm skills { skill expiresOn }
      }
    }
    leftOut { source reason }
  }
}"""

# Partner co-ops: what their availability feeds would have given us (`partner_window`,
# as the sync stores it) and confirmed exchanges with them (continuity). Loaded with the
# co-op, or added to a reused database that predates them.
PARTNER_SQL: list[str] = [
    """CREATE OR REPLACE FUNCTION pg_temp.rnd(n bigint, salt int) RETURNS float8
       LANGUAGE sql IMMUTABLE PARALLEL SAFE
       AS $$ SELECT (hashint8(n * 7919 + salt) & 2147483647)::float8 / 2147483648 $$""",
    f"""INSERT INTO partnership (base_url, graphql_endpoint, proposal_ref, direction, status,
                                 requested_scopes, granted_scopes, protocol_version,
                                 coop_name, home_la_code, local_authorities, pseudonym_key,
                                 last_sync_at)
        SELECT 'https://partner' || k || '.example.org',
               'https://partner' || k || '.example.org/graphql', gen_random_uuid(),
               'OUTGOING', 'ACTIVE', ARRAY['AVAILABILITY', 'COVER'],
               ARRAY['AVAILABILITY', 'COVER'], 'coopnet-federation/1',
               'Partner Co-op ' || k, 'E09000014',
               '[{{"gssCode": "E09000014", "name": "Haringey"}}]'::jsonb,
               decode(md5('bench' || k), 'hex'), now()
        FROM generate_series(1, {PARTNERS}) k""",
    # Window w = 0..19 of partner PA p of partnership k, spread over the horizon like ours;
    # each PA lives in one of the north London districts around the synthetic co-op.
    f"""INSERT INTO partner_window (partnership_id, ref, period, pa_ref, skills, district,
                                    travel_km, during)
        SELECT p.id, 'w' || n, 0, 'pa' || (n / {PARTNER_WINDOWS}),
               (SELECT coalesce(jsonb_agg(jsonb_build_object(
                          'skill', s.skill,
                          'expiresOn', CASE WHEN pg_temp.rnd(x, 80 + s.n) < 0.5 THEN NULL
                                            ELSE to_char(current_date + 200, 'YYYY-MM-DD')
                                       END)), '[]'::jsonb)
                FROM (VALUES (1, 'personal-care', 0.97), (2, 'medication-support', 0.75),
                             (3, 'hoist', 0.40), (4, 'dementia', 0.55)) AS s (n, skill, share)
                WHERE pg_temp.rnd(x, 90 + s.n) < s.share),
               (ARRAY['N2', 'N3', 'N6', 'N8', 'N10', 'N11', 'N12', 'N13', 'N14', 'N15',
                      'N17', 'N18', 'N20', 'N22', 'EN1', 'EN2', 'EN4', 'EN5', 'NW4', 'NW7',
                      'NW9', 'HA8'])[1 + floor(pg_temp.rnd(x, 81) * 22)::int],
               5 + floor(pg_temp.rnd(x, 82) * 16),
               tstzrange(s, s + make_interval(hours => 3 + floor(pg_temp.rnd(n, 84) * 4)::int))
        FROM partnership p,
             generate_series(0, {PARTNER_PAS * PARTNER_WINDOWS - 1}) n,
             LATERAL (SELECT p.id * 100000 + n / {PARTNER_WINDOWS} AS x,
                             (n % {PARTNER_WINDOWS})::int AS k) xk,
             LATERAL (SELECT ((SELECT date_trunc('day', now() AT TIME ZONE 'Europe/London'))
                              + make_interval(
                                  days => ((k * {{horizon}}) / {PARTNER_WINDOWS}
                                           + (n / {PARTNER_WINDOWS})::int) % {{horizon}},
                                  hours => 7 + floor(pg_temp.rnd(n, 83) * 6)::int))
                             AT TIME ZONE 'Europe/London' AS s) st""",
    # Confirmed exchanges for some past visits: partner PAs who covered these people.
    f"""INSERT INTO cover_exchange (ref, partnership_id, side, status, during, district,
                                    skills, pa_ref, hold_expires_at, visit_id)
        SELECT gen_random_uuid(), p.id, 'REQUESTING', 'CONFIRMED', v.during, 'N12',
               ARRAY['personal-care'], 'pa' || (v.id % {PARTNER_PAS}), lower(v.during), v.id
        FROM visit v JOIN partnership p ON p.id = 1 + v.id % {PARTNERS}
        WHERE v.status = 'COMPLETED' AND pg_temp.rnd(v.id, 85) < 0.0025""",
]

# rnd(n, salt): a deterministic "random" number in [0, 1) from a row number.
LOAD_SQL: list[str] = [
    """CREATE FUNCTION pg_temp.rnd(n bigint, salt int) RETURNS float8
       LANGUAGE sql IMMUTABLE PARALLEL SAFE
       AS $$ SELECT (hashint8(n * 7919 + salt) & 2147483647)::float8 / 2147483648 $$""",
    # The day the rota is built around (London), as a timestamp without time zone.
    """CREATE TABLE pg_temp.base AS
       SELECT date_trunc('day', now() AT TIME ZONE 'Europe/London') AS day""",
    """INSERT INTO local_authority (gss_code, name)
       VALUES ('E09000003', 'Barnet'), ('E09000010', 'Enfield')""",
    """INSERT INTO local_authority_neighbour (la_a, la_b) VALUES ('E09000003', 'E09000010')""",
    """INSERT INTO coop (id, name, kind, cqc_status, home_la_code)
       VALUES (1, 'Bench Care Co-operative', 'MULTI_STAKEHOLDER', 'REGISTERED', 'E09000003')""",
    # Coordinators: member ids 1..250, one per cluster.
    f"""INSERT INTO member (id, name, membership_class, email)
        SELECT c, 'Coordinator ' || c, 'WORKER', 'coordinator' || c || '@example.org'
        FROM generate_series(1, {CLUSTERS}) c""",
    # Clusters 1..250 on a 16 x 16 grid (row (c-1)/16, column (c-1)%16).
    f"""INSERT INTO cluster (id, name, kind, la_code, support_worker_id, status,
                             centre_latitude, centre_longitude, radius_km)
        SELECT c, 'Cluster ' || c, 'GEOGRAPHIC',
               CASE WHEN (c - 1) / 16 < 8 THEN 'E09000003' ELSE 'E09000010' END,
               c, 'ACTIVE',
               51.40 + 0.01875 * ((c - 1) / 16 + 0.5),
               -0.45 + 0.0375 * ((c - 1) % 16 + 0.5),
               2
        FROM generate_series(1, {CLUSTERS}) c""",
    # Pools 1..16, each serving a 4 x 4 block of clusters.
    """INSERT INTO pool (id, name, shared_with_partners)
       SELECT k, 'Pool ' || k, k % 4 = 0 FROM generate_series(1, 16) k""",
    f"""INSERT INTO pool_cluster (pool_id, cluster_id)
        SELECT ((c - 1) / 16 / 4) * 4 + ((c - 1) % 16) / 4 + 1, c
        FROM generate_series(1, {CLUSTERS}) c""",
    # PAs: member ids 1001..6000 (i = id - 1001). Team PAs (i < 4000) live near their
    # cluster (i % 250 + 1); pool PAs (i >= 4000) anywhere in their pool's block.
    f"""INSERT INTO member (id, name, membership_class, email, latitude, longitude, active)
        SELECT 1001 + i, 'PA ' || i, 'WORKER', 'pa' || i || '@example.org',
               CASE WHEN pg_temp.rnd(i, 1) < 0.01 THEN NULL
                    WHEN i < {TEAM_PAS} THEN
                      51.40 + 0.01875 * ((i % 250) / 16 + 0.5) + (pg_temp.rnd(i, 2) - 0.5) * 0.054
                    ELSE 51.40 + 0.075 * (((i - {TEAM_PAS}) % 16) / 4 + pg_temp.rnd(i, 2))
               END,
               CASE WHEN pg_temp.rnd(i, 1) < 0.01 THEN NULL
                    WHEN i < {TEAM_PAS} THEN
                      -0.45 + 0.0375 * ((i % 250) % 16 + 0.5) + (pg_temp.rnd(i, 3) - 0.5) * 0.086
                    ELSE -0.45 + 0.15 * (((i - {TEAM_PAS}) % 16) % 4 + pg_temp.rnd(i, 3))
               END,
               pg_temp.rnd(i, 4) >= 0.02
        FROM generate_series(0, {PAS - 1}) i""",
    f"""INSERT INTO pa_profile (member_id, dbs_checked_on, contracted_weekly_hours,
                                hourly_pay_pence, max_travel_km, working_time_opt_out)
        SELECT 1001 + i,
               CASE WHEN pg_temp.rnd(i, 5) < 0.01 THEN NULL
                    WHEN pg_temp.rnd(i, 5) < 0.06 THEN current_date - 1500
                    ELSE current_date - (pg_temp.rnd(i, 6) * 1000)::int END,
               16 + floor(pg_temp.rnd(i, 7) * 22),
               1200 + floor(pg_temp.rnd(i, 8) * 300)::int,
               5 + floor(pg_temp.rnd(i, 9) * 16),
               pg_temp.rnd(i, 10) < 0.1
        FROM generate_series(0, {PAS - 1}) i""",
    f"""INSERT INTO pa_skill (pa_id, skill, expires_on)
        SELECT 1001 + i, s.skill,
               CASE WHEN pg_temp.rnd(i, 20 + s.n) < 0.05 THEN current_date - 10
                    WHEN pg_temp.rnd(i, 20 + s.n) < 0.5 THEN NULL
                    ELSE current_date + 100 + (pg_temp.rnd(i, 30 + s.n) * 600)::int END
        FROM generate_series(0, {PAS - 1}) i
        CROSS JOIN (VALUES (1, 'personal-care', 0.97), (2, 'medication-support', 0.75),
                           (3, 'hoist', 0.40), (4, 'dementia', 0.55)) AS s (n, skill, share)
        WHERE pg_temp.rnd(i, 40 + s.n) < s.share""",
    f"""INSERT INTO cluster_pa (cluster_id, pa_id)
        SELECT i % 250 + 1, 1001 + i FROM generate_series(0, {TEAM_PAS - 1}) i""",
    f"""INSERT INTO pool_pa (pool_id, pa_id)
        SELECT (i - {TEAM_PAS}) % 16 + 1, 1001 + i FROM generate_series({TEAM_PAS}, {PAS - 1}) i
        UNION ALL
        SELECT pc.pool_id, 1001 + i FROM generate_series(0, {TEAM_PAS - 1}) i
        JOIN pool_cluster pc ON pc.cluster_id = i % 250 + 1
        WHERE pg_temp.rnd(i, 11) < 0.2""",
    # Service users: member ids 10001..20000 (s = id - 10001), in cluster s % 250 + 1.
    f"""INSERT INTO member (id, name, membership_class, email, postcode, latitude, longitude)
        SELECT 10001 + s, 'Person ' || s, 'SERVICE_USER', 'person' || s || '@example.org',
               'N' || (s % 20 + 1) || ' 0AA',
               CASE WHEN pg_temp.rnd(s, 51) < 0.01 THEN NULL ELSE
                 51.40 + 0.01875 * ((s % 250) / 16 + 0.5) + (pg_temp.rnd(s, 52) - 0.5) * 0.027
               END,
               CASE WHEN pg_temp.rnd(s, 51) < 0.01 THEN NULL ELSE
                 -0.45 + 0.0375 * ((s % 250) % 16 + 0.5) + (pg_temp.rnd(s, 53) - 0.5) * 0.043
               END
        FROM generate_series(0, {SERVICE_USERS - 1}) s""",
    f"""INSERT INTO service_user_profile (member_id, funding, needs, planned_weekly_hours)
        SELECT 10001 + s, 'DIRECT_PAYMENT',
               array_remove(ARRAY['personal-care',
                 CASE WHEN pg_temp.rnd(s, 54) < 0.5 THEN 'medication-support' END,
                 CASE WHEN pg_temp.rnd(s, 55) < 0.1 THEN 'hoist' END,
                 CASE WHEN pg_temp.rnd(s, 56) < 0.2 THEN 'dementia' END], NULL),
               5 + floor(pg_temp.rnd(s, 57) * 20)
        FROM generate_series(0, {SERVICE_USERS - 1}) s""",
    f"""INSERT INTO cluster_service_user (cluster_id, service_user_id)
        SELECT s % 250 + 1, 10001 + s FROM generate_series(0, {SERVICE_USERS - 1}) s""",
    # The person a PA visits on their j-th visit: a team PA (team position t = i / 250)
    # sees three people of their cluster; a pool PA two people of one cluster of the pool.
    """CREATE FUNCTION pg_temp.person(i int, j int) RETURNS int
       LANGUAGE sql IMMUTABLE AS $$
       SELECT CASE WHEN i < 4000 THEN
                10001 + i % 250 + 250 * (((i / 250) * 5 + (i / 250) / 8 + (j % 3) * 2) % 40)
              ELSE
                10001 + (least(((((i - 4000) % 16) / 4) * 4 + i % 4) * 16
                               + (((i - 4000) % 16) % 4) * 4 + (i / 4) % 4, 249))
                      + 250 * (((i / 16) + j % 2) % 40)
              END $$""",
    f"""INSERT INTO regular_pa (service_user_id, pa_id)
        SELECT DISTINCT pg_temp.person(i, 0), 1001 + i
        FROM generate_series(0, {TEAM_PAS - 1}) i""",
    # Visits: n = 0..199,999, PA i = n % 5000, j = n / 5000 (40 per PA). The first 28 fall
    # one a day in the morning slots, the other 12 on other days in afternoon slots, so a
    # PA's visits never overlap. Slots start at 07:00 + 3h * slot (London time).
    f"""INSERT INTO visit (id, service_user_id, pa_id, during, status, tasks)
        SELECT n, pg_temp.person(i, j), 1001 + i, tstzrange(s, s + make_interval(mins => d)),
               'SCHEDULED', ARRAY['personal care']
        FROM generate_series(0, {VISITS - 1}) n,
             LATERAL (SELECT (n % 5000)::int AS i, (n / 5000)::int AS j) ij,
             LATERAL (SELECT CASE WHEN j < 28 THEN (j + i) % 28
                                  ELSE ((j - 28) * 2 + i) % 28 END - 20 AS day,
                             CASE WHEN j < 28 THEN floor(pg_temp.rnd(n, 60) * 2)::int
                                  ELSE 2 + floor(pg_temp.rnd(n, 60) * 3)::int END AS slot,
                             30 + floor(pg_temp.rnd(n, 61) * 91)::int AS d) k,
             LATERAL (SELECT ((SELECT day FROM pg_temp.base) + make_interval(days => day)
                              + make_interval(hours => 7 + 3 * slot,
                                              mins => floor(pg_temp.rnd(n, 62) * 60)::int))
                             AT TIME ZONE 'Europe/London' AS s) st""",
    """UPDATE visit SET status = CASE WHEN pg_temp.rnd(id, 63) < 0.03 THEN 'CANCELLED'
                                     WHEN pg_temp.rnd(id, 63) < 0.05 THEN 'MISSED'
                                     ELSE 'COMPLETED' END
       WHERE lower(during) < now()""",
    """UPDATE visit SET status = 'NEEDS_COVER', pa_id = NULL
       WHERE lower(during) >= now() AND pg_temp.rnd(id, 64) < 0.04""",
    # Absences in the coming week: the PA's visits in them need cover. As the service
    # does, the visits are handed over before the absences are written (the guard
    # `pa_commitment_no_overlap` refuses a PA booked while away).
    f"""CREATE TABLE pg_temp.away AS
        SELECT 1001 + i AS pa_id, CASE WHEN i % 3 = 0 THEN 'SICKNESS' ELSE 'HOLIDAY' END AS kind,
               tstzrange(((SELECT day FROM pg_temp.base) + make_interval(days => 1 + i % 6))
                           AT TIME ZONE 'Europe/London',
                         ((SELECT day FROM pg_temp.base)
                           + make_interval(days => 2 + i % 6 + i % 4))
                           AT TIME ZONE 'Europe/London') AS during
        FROM generate_series(0, {PAS - 1}) i WHERE i % 8 = 3 AND i < 4800""",
    """CREATE TABLE pg_temp.covered AS
       SELECT v.id, v.pa_id, w.during FROM visit v
       JOIN pg_temp.away w ON w.pa_id = v.pa_id AND w.during && v.during
       WHERE v.status = 'SCHEDULED'""",
    """UPDATE visit SET status = 'NEEDS_COVER', pa_id = NULL
       WHERE id IN (SELECT id FROM pg_temp.covered)""",
    """INSERT INTO absence (pa_id, kind, during, note)
       SELECT pa_id, kind, during, 'bench' FROM pg_temp.away""",
    """INSERT INTO cover_request (visit_id, reason, status, absence_id, original_pa_id,
                                  opened_at)
       SELECT c.id, 'ABSENCE', 'OPEN', a.id, c.pa_id, now() FROM pg_temp.covered c
       JOIN absence a ON a.pa_id = c.pa_id AND a.during = c.during""",
    """INSERT INTO cover_request (visit_id, reason, status, opened_at)
       SELECT v.id, 'MANUAL', 'OPEN', now() FROM visit v
       WHERE v.status = 'NEEDS_COVER' AND v.id NOT IN (SELECT id FROM pg_temp.covered)""",
    # Cover already given: 4% of past completed visits were filled by their PA.
    """INSERT INTO cover_request (visit_id, reason, status, original_pa_id, opened_at,
                                  filled_by_pa_id, closed_at)
       SELECT v.id, 'ABSENCE', 'FILLED', NULL, lower(v.during) - interval '2 days',
              v.pa_id, lower(v.during) - interval '1 day'
       FROM visit v WHERE v.status = 'COMPLETED' AND pg_temp.rnd(v.id, 65) < 0.04""",
    # Availability: window k = 0..19 of PA i on day ((k * D) / 20 + i) % D ahead (D: the
    # horizon in days), from 07:00..12:00 for 3..6 hours (London time); one a day at most.
    f"""INSERT INTO availability_window (pa_id, during)
        SELECT 1001 + i, tstzrange(s, s + make_interval(hours => 3 + floor(pg_temp.rnd(n, 71)
                                                                  * 4)::int))
        FROM generate_series(0, {WINDOWS - 1}) n,
             LATERAL (SELECT (n % 5000)::int AS i, (n / 5000)::int AS k) ik,
             LATERAL (SELECT ((SELECT day FROM pg_temp.base)
                              + make_interval(days => ((k * {{horizon}}) / 20 + i) % {{horizon}},
                                              hours => 7 + floor(pg_temp.rnd(n, 70) * 6)::int))
                             AT TIME ZONE 'Europe/London' AS s) st""",
    # Explicit ids were used: move the sequences past them.
    "SELECT setval('member_id_seq', (SELECT max(id) FROM member))",
    "SELECT setval('cluster_id_seq', (SELECT max(id) FROM cluster))",
    "SELECT setval('pool_id_seq', (SELECT max(id) FROM pool))",
    "SELECT setval('visit_id_seq', (SELECT max(id) FROM visit))",
]


def resolve_url(arg: str | None) -> str:
    url = arg or os.environ.get("BENCH_DATABASE_URL") or DEFAULT_URL
    if not re.fullmatch(r"[A-Za-z0-9_]+", make_url(url).database or ""):
        raise SystemExit("Name the database in the URL (letters, digits and _ only).")
    return url


async def _loaded(url: str) -> bool:
    if not await database_exists(url):
        return False
    engine = create_engine(url, 1)
    try:
        async with engine.connect() as conn:
            found = await conn.scalar(
                text("SELECT to_regclass('visit') IS NOT NULL AND EXISTS (SELECT 1 FROM visit)")
            )
            return bool(found)
    finally:
        await engine.dispose()


async def load(url: str, horizon_days: int) -> None:
    engine = create_engine(url, 1)
    try:
        async with engine.begin() as conn:
            for i, sql in enumerate(LOAD_SQL):
                began = time.perf_counter()
                await conn.execute(text(sql.replace("{horizon}", str(horizon_days))))
                took = time.perf_counter() - began
                if took > 1:
                    print(f"  load step {i}: {took:.1f}s", flush=True)
            await load_partners(conn, horizon_days)
        async with engine.connect() as conn:
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            await conn.execute(text("VACUUM ANALYZE"))
    finally:
        await engine.dispose()


async def load_partners(conn: Any, horizon_days: int) -> None:
    for sql in PARTNER_SQL:
        await conn.execute(text(sql.replace("{horizon}", str(horizon_days))))


async def ensure_partners(url: str, horizon_days: int) -> None:
    """A reused database loaded before partner co-ops were part of the bench gets them."""
    engine = create_engine(url, 1)
    try:
        async with engine.begin() as conn:
            if await conn.scalar(text("SELECT EXISTS (SELECT 1 FROM partnership)")):
                return
            print("adding partner co-ops", flush=True)
            await load_partners(conn, horizon_days)
        async with engine.connect() as conn:
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            await conn.execute(text("VACUUM ANALYZE partner_window, cover_exchange"))
    finally:
        await engine.dispose()


async def counts(url: str) -> dict[str, int]:
    engine = create_engine(url, 1)
    out: dict[str, int] = {}
    try:
        async with engine.connect() as conn:
            for table in (
                "pa_profile",
                "service_user_profile",
                "visit",
                "availability_window",
                "absence",
                "cover_request",
                "partnership",
                "partner_window",
                "cover_exchange",
            ):
                out[table] = int(await conn.scalar(text(f"SELECT count(*) FROM {table}")) or 0)
    finally:
        await engine.dispose()
    return out


async def targets(url: str, n: int) -> list[tuple[int, int]]:
    engine = create_engine(url, 1)
    try:
        async with engine.connect() as conn:
            rows = (
                await conn.execute(
                    text(
                        """SELECT v.id, c.support_worker_id
                           FROM visit v
                           JOIN cluster_service_user csu ON csu.service_user_id = v.service_user_id
                           JOIN cluster c ON c.id = csu.cluster_id
                           WHERE v.status = 'NEEDS_COVER'
                             AND lower(v.during) > now() + interval '1 hour'
                           ORDER BY v.id"""
                    )
                )
            ).all()
    finally:
        await engine.dispose()
    if not rows:
        raise SystemExit("No visits needing cover ahead: reload the data (without --reuse).")
    step = max(1, len(rows) // n)
    picked = [(int(r[0]), int(r[1])) for r in rows[::step]]
    return (picked * (n // len(picked) + 1))[:n]


def start_server(url: str, data_dir: Path, port: int) -> subprocess.Popen[bytes]:
    env = dict(os.environ)
    env.update(
        DATABASE_URL=url,
        DATA_DIR=str(data_dir),
        LOG_LEVEL="WARNING",
        LOG_FORMAT="console",
        DB_POOL_SIZE="10",
    )
    code = (
        "import uvicorn\n"
        "from api.app import create_app\n"
        "from api.logging import configure_logging\n"
        "from api.settings import Settings\n"
        "s = Settings()\n"
        "configure_logging(s.log_format, s.log_level)\n"
        f"uvicorn.run(create_app(s, s.database_url), host='127.0.0.1', port={port},"
        " log_level='warning', access_log=False, log_config=None)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env=env)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"The server exited with code {proc.returncode}.")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    proc.terminate()
    raise SystemExit("The server did not become ready in 30 s.")


def percentile(sorted_values: Sequence[float], p: float) -> float:
    index = min(len(sorted_values) - 1, max(0, round(p / 100 * len(sorted_values)) - 1))
    return sorted_values[index]


async def fire(
    endpoint: str,
    tokens: TokenService,
    jobs: list[tuple[int, int]],
    clients: int,
    first: int,
    as_admin: bool,
    warmup: int,
    partners: bool = True,
) -> None:
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    admin_token = tokens.issue(Role.ADMIN)
    caller_tokens: dict[int, str] = {}
    # Per measured answer: candidates from partners, sources left out.
    from_partners: list[int] = []
    left_out: list[int] = []

    def token_for(coordinator: int) -> str:
        if as_admin:
            return admin_token
        found = caller_tokens.get(coordinator)
        if found is None:
            found = caller_tokens[coordinator] = tokens.issue(
                Role.COORDINATOR, member_id=coordinator
            )
        return found

    def body(visit_id: int) -> dict[str, Any]:
        gid = base64.b64encode(f"Visit:{visit_id}".encode()).decode()
        variables = {"visit": gid, "first": first, "partners": partners}
        return {"query": QUERY, "variables": variables}

    async with httpx.AsyncClient(limits=limits, timeout=30) as client:

        async def run(batch: list[tuple[int, int]]) -> tuple[list[float], list[int], int]:
            """Send the batch from `clients` concurrent clients: latencies (s),
            candidates per answer, errors."""
            queue: asyncio.Queue[tuple[int, int]] = asyncio.Queue()
            for job in batch:
                queue.put_nowait(job)
            latencies: list[float] = []
            returned: list[int] = []
            errors = 0

            async def worker() -> None:
                nonlocal errors
                while not queue.empty():
                    visit_id, coordinator = queue.get_nowait()
                    headers = {"Authorization": f"Bearer {token_for(coordinator)}"}
                    began = time.perf_counter()
                    resp = await client.post(endpoint, json=body(visit_id), headers=headers)
                    latencies.append(time.perf_counter() - began)
                    payload = resp.json()
                    if resp.status_code != 200 or payload.get("errors"):
                        errors += 1
                        if errors <= 3:
                            print(f"error for visit {visit_id}: {payload}", flush=True)
                    else:
                        answer = payload["data"]["coverCandidates"]
                        returned.append(len(answer["candidates"]))
                        from_partners.append(
                            sum(1 for c in answer["candidates"] if c["source"] == "PARTNER")
                        )
                        left_out.append(len(answer["leftOut"]))

            await asyncio.gather(*(worker() for _ in range(clients)))
            return latencies, returned, errors

        # The statement count as an admin sees it (`extensions.sqlStatements`).
        statements: set[int] = set()
        for visit_id, _ in jobs[:5]:
            answer = (
                await client.post(
                    endpoint,
                    json=body(visit_id),
                    headers={"Authorization": f"Bearer {admin_token}"},
                )
            ).json()
            if answer.get("errors"):
                raise SystemExit(f"Query failed: {answer['errors']}")
            statements.add(int(answer.get("extensions", {}).get("sqlStatements", -1)))
        # Warm up with the same concurrency: the server opens its database connections
        # (asyncpg introspects types on a new connection) and prepares the statements.
        await run(list(reversed(jobs))[:warmup])

        from_partners.clear()
        left_out.clear()
        began = time.perf_counter()
        latencies, returned, errors = await run(jobs)
        elapsed = time.perf_counter() - began

    latencies.sort()
    ms = [x * 1000 for x in latencies]
    caller = "an admin" if as_admin else "the coordinators"
    print(
        f"coverCandidates(first: {first}, includePartners: {str(partners).lower()}) as "
        f"{caller}: requests={len(ms)} clients={clients} "
        f"warmup={warmup} errors={errors} seconds={elapsed:.2f}"
    )
    print(
        f"p50_ms={statistics.median(ms):.1f} p95_ms={percentile(ms, 95):.1f} "
        f"p99_ms={percentile(ms, 99):.1f} max_ms={ms[-1]:.1f} "
        f"requests/s={len(ms) / elapsed:.1f}"
    )
    average = statistics.mean(returned) if returned else 0.0
    print(
        f"candidates_per_answer={average:.1f} empty_answers={sum(1 for r in returned if r == 0)} "
        f"sql_statements_per_request={sorted(statements)}"
    )
    if from_partners:
        print(
            f"partner_candidates_per_answer={statistics.mean(from_partners):.1f} "
            f"answers_with_a_source_left_out={sum(1 for n in left_out if n)}"
        )


async def explain(url: str, visit_id: int, coordinator: int) -> None:
    """EXPLAIN ANALYZE of the search for one visit, as the server runs it (for tuning)."""
    from sqlalchemy import event

    from care.candidates import candidates_statement
    from care.viewer import Viewer

    viewer = Viewer(role=Role.COORDINATOR, member_id=coordinator)
    engine = create_engine(url, 1)
    sent: list[tuple[str, Any]] = []

    def capture(conn: Any, cursor: Any, statement: str, parameters: Any, *args: Any) -> None:
        sent.append((statement, parameters))

    try:
        async with engine.connect() as conn:
            event.listen(engine.sync_engine, "before_cursor_execute", capture)
            await conn.execute(candidates_statement(viewer, visit_id, limit=10))
            event.remove(engine.sync_engine, "before_cursor_execute", capture)
            statement, parameters = sent[-1]
            plan = await conn.exec_driver_sql("EXPLAIN (ANALYZE, BUFFERS) " + statement, parameters)
            print("\n".join(r[0] for r in plan))
    finally:
        await engine.dispose()


async def prepare(url: str, reuse: bool, horizon_days: int) -> None:
    if reuse and await _loaded(url):
        print(f"reusing {make_url(url).render_as_string(True)}", flush=True)
        migrate(url)  # a new migration (an index) applies to an old bench database too
        await ensure_partners(url, horizon_days)
        return
    print(f"creating {make_url(url).render_as_string(True)}", flush=True)
    await recreate_database(url)
    migrate(url)
    began = time.perf_counter()
    await load(url, horizon_days)
    print(f"loaded in {time.perf_counter() - began:.1f}s", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("database_url", nargs="?")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--first", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=40, help="requests before measuring")
    parser.add_argument("--reuse", action="store_true", help="keep an already loaded database")
    parser.add_argument(
        "--window-days",
        type=int,
        default=HORIZON.days,
        help="days ahead the availability windows spread over (default: the service's "
        "expansion horizon, %(default)s)",
    )
    parser.add_argument("--explain", action="store_true", help="print one EXPLAIN ANALYZE")
    parser.add_argument(
        "--no-partners",
        action="store_true",
        help="ask with includePartners: false (our own PAs only)",
    )
    parser.add_argument(
        "--as-admin",
        action="store_true",
        help="ask as an admin instead of the coordinator of each visit's cluster",
    )
    args = parser.parse_args()
    url = resolve_url(args.database_url)

    if args.window_days < 20:
        raise SystemExit("--window-days must be at least 20 (20 windows a PA, one a day).")
    asyncio.run(prepare(url, args.reuse, args.window_days))
    print(asyncio.run(counts(url)), flush=True)
    jobs = asyncio.run(targets(url, args.requests))
    if args.explain:
        asyncio.run(explain(url, *jobs[0]))

    with tempfile.TemporaryDirectory(prefix="coopnet-bench-") as tmp:
        data_dir = Path(tmp)
        settings = Settings(database_url=url, data_dir=data_dir)
        tokens = TokenService(
            load_or_create_keys(settings),
            settings.jwt_issuer,
            settings.jwt_audience,
            settings.jwt_ttl_seconds,
        )
        port = free_port()
        server = start_server(url, data_dir, port)
        try:
            asyncio.run(
                fire(
                    f"http://127.0.0.1:{port}/graphql",
                    tokens,
                    jobs,
                    args.clients,
                    args.first,
                    args.as_admin,
                    args.warmup,
                    not args.no_partners,
                )
            )
        finally:
            server.terminate()
            server.wait(timeout=10)


if __name__ == "__main__":
    main()
