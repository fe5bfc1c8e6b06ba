"""The cost of the per-request token check (care/tokens.py), measured in isolation.

Runs the check for a member token and an admin token N times on one pooled connection and,
as a baseline, `SELECT 1` (the round trip any statement costs), then prints the mean and
p99 of each and the check's plan. Needs a migrated database with at least one member
(`coopnet serve --dev` loads the demo):

    python bench/token_check.py [--url postgresql://postgres@127.0.0.1:5432/coopnet] [-n 3000]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable

from sqlalchemy import select, text
from sqlalchemy.dialects import postgresql

from api.db import create_engine, session_factory
from care.models import Member
from care.tokens import TokenRef, in_force, is_in_force


async def timed(n: int, run: Callable[[], Awaitable[object]]) -> tuple[float, float]:
    for _ in range(50):  # warm: prepared statements, caches
        await run()
    samples = []
    for _ in range(n):
        start = time.perf_counter()
        await run()
        samples.append(time.perf_counter() - start)
    samples.sort()
    return statistics.mean(samples) * 1000, samples[int(n * 0.99)] * 1000


async def main(url: str, n: int) -> None:
    engine = create_engine(url, pool_size=1)
    now = dt.datetime.now(dt.UTC)
    async with session_factory(engine)() as session:
        member_id = await session.scalar(select(Member.id).order_by(Member.id).limit(1))
        assert member_id is not None, "no members: load the demo first"
        member = TokenRef(uuid.uuid4(), member_id, now, now + dt.timedelta(hours=8))
        admin = TokenRef(uuid.uuid4(), None, now, now + dt.timedelta(hours=8))
        assert await is_in_force(session, member) and await is_in_force(session, admin)
        results = {
            "SELECT 1 (a round trip)": await timed(n, lambda: session.execute(text("SELECT 1"))),
            "check, member token": await timed(n, lambda: is_in_force(session, member)),
            "check, admin token": await timed(n, lambda: is_in_force(session, admin)),
        }
        compiled = in_force(member).compile(
            dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True}
        )
        plan = await session.execute(text(f"EXPLAIN ANALYZE {compiled}"))
        plan_lines = [row[0] for row in plan]
    await engine.dispose()
    for name, (mean, p99) in results.items():
        print(f"{name:28} mean_ms={mean:.3f} p99_ms={p99:.3f}")
    print("\n".join(plan_lines))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", default="postgresql://postgres@127.0.0.1:5432/coopnet")
    parser.add_argument("-n", type=int, default=3000)
    args = parser.parse_args()
    asyncio.run(main(args.url, args.n))
