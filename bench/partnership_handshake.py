"""The partnership handshake between two real instances, timed.

Starts two instances (A and B) on loopback ports with their own databases on the given
PostgreSQL server (the federation test harness, tests/federation/instances.py), then for
each round: A's admin proposes to B, B's admin accepts, A's admin ends it. Each of those
mutations includes the signed call to the other instance (and, for a proposal, reading
its manifest; B reads A's on a key it does not know). Prints p50/p95/max per step.

    python bench/partnership_handshake.py \
        --server postgresql://postgres@127.0.0.1:5432/<an existing database> [--rounds 30]

The databases `<db>_peer_a` and `<db>_peer_b` are dropped and re-created.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.federation.instances import Instance, prepare  # noqa: E402

PAYLOAD = "{ partnership { id status } errors { code message } }"
PROPOSE = f"mutation($i: ProposePartnershipInput!) {{ proposePartnership(input: $i) {PAYLOAD} }}"
ACCEPT = f"mutation($i: AcceptPartnershipInput!) {{ acceptPartnership(input: $i) {PAYLOAD} }}"
END = f"mutation($i: PartnershipIdInput!) {{ endPartnership(input: $i) {PAYLOAD} }}"
INCOMING = "{ partnerships { id status direction } }"


async def step(instance: Instance, token: str, query: str, variables: dict[str, Any]) -> Any:
    data = await instance.data(query, variables, token=token)
    payload = next(iter(data.values()))
    if payload["errors"]:
        raise SystemExit(f"{instance.name}: {payload['errors']}")
    return payload["partnership"]


async def rounds(a: Instance, b: Instance, count: int) -> dict[str, list[float]]:
    ta, tb = a.token("ADMIN"), b.token("ADMIN")
    times: dict[str, list[float]] = {"propose": [], "accept": [], "end": []}
    for _ in range(count):
        t0 = time.perf_counter()
        mine = await step(a, ta, PROPOSE, {"i": {"baseUrl": b.base_url, "scopes": ["COVER"]}})
        t1 = time.perf_counter()
        theirs = (await b.data(INCOMING, token=tb))["partnerships"][0]
        t2 = time.perf_counter()
        await step(b, tb, ACCEPT, {"i": {"partnershipId": theirs["id"]}})
        t3 = time.perf_counter()
        await step(a, ta, END, {"i": {"partnershipId": mine["id"]}})
        t4 = time.perf_counter()
        times["propose"].append(t1 - t0)
        times["accept"].append(t3 - t2)
        times["end"].append(t4 - t3)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", required=True, help="a PostgreSQL URL (its server is used)")
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        a = prepare(args.server, "a", Path(tmp))
        b = prepare(args.server, "b", Path(tmp))
        a.start()
        b.start()
        try:
            times = asyncio.run(rounds(a, b, args.rounds))
        finally:
            a.stop()
            b.stop()
    print(f"{args.rounds} rounds (propose A->B, accept on B, end on A), milliseconds:")
    for name, values in times.items():
        ms = sorted(v * 1000 for v in values)
        p95 = ms[min(len(ms) - 1, int(len(ms) * 0.95))]
        print(f"  {name:8} p50 {statistics.median(ms):7.1f}  p95 {p95:7.1f}  max {ms[-1]:7.1f}")


if __name__ == "__main__":
    main()
