"""Benchmark: `expansionOpportunities` (care/expansion.py) on a large co-op.

Builds, in its own database (dropped and created), a London co-op of 5,000 PAs with six
weeks of availability (about 150,000 windows), a visit in every other window (about
75,000, each a commitment), 600 waiting referrals over 40 districts of one local
authority and 3,000 partner windows; then runs the statement as an admin and prints the
latency (p50, p95 over the runs) and the plan's top lines.

    python bench/expansion.py [--server postgresql://postgres@127.0.0.1:5432/postgres]
        [--runs 20]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

from api.migrate import upgrade
from care.enums import Role
from care.expansion import _centroid_arrays, expansion_opportunities, opportunities_statement
from care.geography import all_centroids
from care.viewer import Viewer

DATABASE = "coopnet_bench_expansion"
LA = "E09000010"
# Districts of north and east London for the referrals (all in the centroid table).
DISTRICTS = [
    "EN1", "EN2", "EN3", "EN4", "EN5", "N9", "N13", "N14", "N18", "N21", "N11", "N12",
    "N17", "N15", "N22", "N8", "N10", "N2", "N3", "N20", "E4", "E17", "N16", "N4", "N7",
    "N19", "N6", "NW3", "NW4", "NW7", "NW9", "HA8", "E5", "E10", "E11", "N1", "N5", "E8",
    "E9", "IG8",
]  # fmt: skip

SETUP = """
INSERT INTO local_authority (gss_code, name) VALUES ('E09000010', 'Enfield');
INSERT INTO coop (id, name, kind, cqc_status, home_la_code, society_number, cqc_provider_id)
VALUES (1, 'Bench Co-op', 'MULTI_STAKEHOLDER', 'REGISTERED', 'E09000010', 'RS1', '1-1');
INSERT INTO member (id, name, membership_class, postcode, latitude, longitude)
SELECT g, 'PA ' || g, 'WORKER', 'N1 1AA',
       51.45 + random() * 0.25, -0.35 + random() * 0.45
FROM generate_series(1, 5000) g;
INSERT INTO pa_profile (member_id, hourly_pay_pence, max_travel_km)
SELECT g, 1300, 5 + (g % 11) FROM generate_series(1, 5000) g;
INSERT INTO member (id, name, membership_class) VALUES (5001, 'Someone', 'SERVICE_USER');
INSERT INTO service_user_profile (member_id, funding, needs, planned_weekly_hours)
VALUES (5001, 'DIRECT_PAYMENT', '{}', 10);
SELECT setval(pg_get_serial_sequence('member', 'id'), 5001);
INSERT INTO availability_window (pa_id, during)
SELECT p, tstzrange(date_trunc('day', now()) + make_interval(days => d, hours => 8 + p % 3),
                    date_trunc('day', now()) + make_interval(days => d, hours => 12 + p % 3))
FROM generate_series(1, 5000) p, generate_series(-3, 38) d
WHERE (d + p) % 7 NOT IN (5, 6);
INSERT INTO visit (service_user_id, pa_id, during, status)
SELECT 5001, w.pa_id, tstzrange(lower(w.during), lower(w.during) + interval '1 hour'),
       'SCHEDULED'
FROM availability_window w WHERE w.id % 2 = 0;
INSERT INTO partnership (base_url, graphql_endpoint, proposal_ref, direction, status,
    requested_scopes, granted_scopes, protocol_version, coop_name, pseudonym_key)
VALUES ('https://p.example', 'https://p.example/graphql', gen_random_uuid(), 'OUTGOING',
    'ACTIVE', '{AVAILABILITY}', '{AVAILABILITY}', 'coopnet-federation/1', 'Partner', '\\x00');
"""


async def build(url: str) -> None:
    server = make_url(url)
    admin = create_async_engine(server.set(database="postgres"), isolation_level="AUTOCOMMIT")
    async with admin.connect() as conn:
        await conn.execute(text(f"DROP DATABASE IF EXISTS {DATABASE}"))
        await conn.execute(text(f"CREATE DATABASE {DATABASE}"))
    await admin.dispose()
    target = server.set(database=DATABASE).render_as_string(hide_password=False)
    await asyncio.to_thread(upgrade, target)
    engine = create_async_engine(target)
    async with engine.begin() as conn:
        for statement in SETUP.split(";\n"):
            if statement.strip():
                await conn.execute(text(statement))
        await conn.execute(
            text(
                "INSERT INTO referral (la_code, postcode_district, needs, hours_per_week, "
                "referred_on, status) SELECT :la, (CAST(:districts AS text[]))[1 + g % 40], "
                "ARRAY['dementia', 'moving-and-handling'], 5 + g % 20, current_date, "
                "CASE WHEN g % 5 = 0 THEN 'PLACED' ELSE 'WAITING' END "
                "FROM generate_series(1, 750) g"
            ),
            {"la": LA, "districts": DISTRICTS},
        )
        await conn.execute(
            text(
                "INSERT INTO partner_window (partnership_id, ref, period, pa_ref, skills, "
                "district, travel_km, during) SELECT 1, 'w' || g, 0, 'r' || (g % 300), "
                "'[]'::jsonb, (CAST(:districts AS text[]))[1 + g % 40], 8, "
                "tstzrange(now() + make_interval(days => g % 28), "
                "now() + make_interval(days => g % 28, hours => 3)) "
                "FROM generate_series(1, 3000) g"
            ),
            {"districts": DISTRICTS},
        )
        await conn.execute(text("ANALYZE"))
    await engine.dispose()


async def measure(url: str, runs: int) -> None:
    target = make_url(url).set(database=DATABASE)
    engine = create_async_engine(target)
    sessions = async_sessionmaker(engine)
    viewer = Viewer(role=Role.ADMIN)
    times: list[float] = []
    async with sessions() as session:
        counts = (
            await session.execute(
                text(
                    "SELECT (SELECT count(*) FROM availability_window) AS windows, "
                    "(SELECT count(*) FROM pa_commitment) AS commitments, "
                    "(SELECT count(*) FROM referral WHERE status = 'WAITING') AS waiting"
                )
            )
        ).one()
        print(
            f"{counts.windows} windows, {counts.commitments} commitments, "
            f"{counts.waiting} waiting referrals, 5000 PAs, 3000 partner windows"
        )
        rows = []
        for _ in range(runs):
            start = time.perf_counter()
            rows = await expansion_opportunities(session, viewer, LA)
            times.append((time.perf_counter() - start) * 1000)
        print(f"{len(rows)} districts; best: {rows[0].district} score {rows[0].score}")
        times.sort()
        print(
            f"expansion_opportunities: p50 {statistics.median(times):.0f} ms, "
            f"p95 {times[int(len(times) * 0.95) - 1]:.0f} ms over {runs} runs"
        )
        districts, lats, lons = _centroid_arrays()
        plan = await session.execute(
            text("EXPLAIN (ANALYZE, BUFFERS) " + str(opportunities_statement())),
            {
                "centroid_districts": districts,
                "centroid_lats": lats,
                "centroid_lons": lons,
                "now": viewer.now,
                "weeks": 4,
                "la_code": LA,
                "partner_weight": 0.5,
                "distance_cap": 10.0,
            },
        )
        lines = [r[0] for r in plan]
        print("\n".join(lines[:3] + ["..."] + lines[-2:]))
    await engine.dispose()
    assert len(all_centroids()) > 2000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--server", default="postgresql+asyncpg://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    url = make_url(args.server).set(drivername="postgresql+asyncpg").render_as_string(False)
    asyncio.run(build(url))
    asyncio.run(measure(url, args.runs))


if __name__ == "__main__":
    main()
