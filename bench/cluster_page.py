"""Load test: the coordinator's cluster page against a running server (`make run`).

A cluster, its service users, their next visits and PAs, requested by 10 concurrent
clients for a fixed time. Prints requests per second, p50/p99 latency and the SQL
statements per request (reported to admins in `extensions.sqlStatements`).
`--query visits` asks for the visit list instead: the first 100 visits from now with
their person and PA.

    python bench/cluster_page.py [--url http://127.0.0.1:8000/graphql] [--seconds 20]
        [--clients 10] [--token TOKEN] [--query cluster|visits]

Without --token it issues an admin token with `coopnet token issue` (same data dir).
Whether the server answers with compiled reads (one statement) or the resolvers is the
server's COMPILED_READS setting: run it both ways to compare.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

PAGE = """
query ClusterPage($id: ID!, $from: DateTime!) {
  cluster(id: $id) {
    name status localAuthority { name }
    supportWorker { name }
    serviceUsers(first: 50) {
      totalCount
      edges { node { id name needs
        visits(first: 5, startsFrom: $from) { edges { node {
          id startsAt endsAt status pa { id name } } } }
      } }
    }
  }
}"""

VISITS = """
query VisitList($from: DateTime!) {
  visits(first: 100, startsFrom: $from) {
    edges { node { id startsAt endsAt status
      serviceUser { id name } pa { id name } } }
  }
}"""

CLUSTERS = "{ clusters(first: 10) { edges { node { id name } } } }"


def issue_token() -> str:
    coopnet = Path(sys.executable).with_name("coopnet")
    out = subprocess.run(
        [str(coopnet), "token", "issue", "--role", "ADMIN"],
        check=True,
        capture_output=True,
        text=True,
    )
    return out.stdout.strip().splitlines()[-1]


async def run(url: str, token: str, seconds: float, clients: int, query: str) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(headers=headers, limits=limits, timeout=30) as client:
        r = await client.post(url, json={"query": CLUSTERS})
        r.raise_for_status()
        clusters = r.json()["data"]["clusters"]["edges"]
        if not clusters:
            raise SystemExit("No clusters: start the server with `make run` (demo data).")
        cluster_id = clusters[0]["node"]["id"]
        now = dt.datetime.now(dt.UTC).isoformat()
        if query == "visits":
            body: dict[str, object] = {"query": VISITS, "variables": {"from": now}}
        else:
            body = {"query": PAGE, "variables": {"id": cluster_id, "from": now}}

        first = (await client.post(url, json=body)).json()
        if first.get("errors"):
            raise SystemExit(f"Query failed: {first['errors']}")
        statements = first.get("extensions", {}).get("sqlStatements")
        if query == "visits":
            users = []
            visits = len(first["data"]["visits"]["edges"])
        else:
            users = first["data"]["cluster"]["serviceUsers"]["edges"]
            visits = sum(len(u["node"]["visits"]["edges"]) for u in users)

        latencies: list[float] = []
        errors = 0
        deadline = time.perf_counter() + seconds

        async def worker() -> None:
            nonlocal errors
            while time.perf_counter() < deadline:
                start = time.perf_counter()
                resp = await client.post(url, json=body)
                latencies.append(time.perf_counter() - start)
                if resp.status_code != 200 or resp.json().get("errors"):
                    errors += 1

        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(clients)))
        elapsed = time.perf_counter() - began

    latencies.sort()
    p50 = statistics.median(latencies) * 1000
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000
    if query == "visits":
        print(f"visit list: {visits} visits with their person and PA")
    else:
        print(f"cluster page: {len(users)} service users, {visits} visits with their PAs")
    print(f"clients={clients} seconds={elapsed:.1f} requests={len(latencies)} errors={errors}")
    print(
        f"requests/s={len(latencies) / elapsed:.1f} p50_ms={p50:.1f} p99_ms={p99:.1f} "
        f"sql_statements_per_request={statements}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--url", default="http://127.0.0.1:8000/graphql")
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--token")
    parser.add_argument("--query", choices=("cluster", "visits"), default="cluster")
    args = parser.parse_args()
    token = args.token or issue_token()
    asyncio.run(run(args.url, token, args.seconds, args.clients, args.query))


if __name__ == "__main__":
    main()
