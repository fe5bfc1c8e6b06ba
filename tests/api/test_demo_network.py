"""`coopnet demo network`, run as a newcomer would: a real subprocess with its own
DATA_DIR and no DATABASE_URL, so it starts its embedded PostgreSQL and three servers."""

from __future__ import annotations

import asyncio
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest
from sqlalchemy import text

from api.db import create_engine
from api.network import BOOKING_SHOWN, SHARED_PAS_SHOWN

COOPNET = str(Path(sys.executable).with_name("coopnet"))
ROOT = Path(__file__).resolve().parents[2]
READY = "Network ready"


@pytest.fixture
def tmp_path() -> Iterator[Path]:
    """A directory of the test's own, outside pytest's basetemp: with several pytest
    sessions on one machine, another session's basetemp rotation can delete a running
    test's directory (and the embedded PostgreSQL's data in it)."""
    path = Path(tempfile.mkdtemp(prefix="coopnet-network-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _consecutive_free_ports(count: int) -> int:
    """A base port with `count` free ports from it (bound and released, then used)."""
    for _ in range(100):
        # Below Linux's ephemeral range (32768-60999), which outgoing connections use.
        base = random.randrange(20000, 32000)
        try:
            with socket.socket() as a, socket.socket() as b, socket.socket() as c:
                for s, port in zip((a, b, c), range(base, base + count), strict=True):
                    s.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
    raise RuntimeError("no free ports")


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


async def _coop_of(url: str) -> tuple[str, str, int]:
    engine = create_engine(url, pool_size=1)
    try:
        async with engine.connect() as conn:
            row = (
                await conn.execute(
                    text(
                        "SELECT name, home_la_code, (SELECT count(*) FROM pool_pa JOIN pool "
                        "ON pool.id = pool_id WHERE shared_with_partners) FROM coop"
                    )
                )
            ).one()
            return str(row[0]), str(row[1]), int(row[2])
    finally:
        await engine.dispose()


def _start(tmp_path: Path, base: int) -> tuple[subprocess.Popen[bytes], Path]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "DATA_DIR")}
    env["DATA_DIR"] = str(tmp_path / "var")
    log = tmp_path / f"network-{time.monotonic_ns()}.log"
    with log.open("wb") as out:
        network = subprocess.Popen(
            [COOPNET, "demo", "network", "--base-port", str(base)],
            env=env,
            cwd=tmp_path,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    return network, log


def _wait_ready(network: subprocess.Popen[bytes], log: Path) -> str:
    deadline = time.monotonic() + 240
    while READY not in log.read_text() and network.poll() is None:
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.2)
    output = log.read_text()
    assert READY in output, output
    return output


def _kids(ports: list[int]) -> list[str]:
    return [
        httpx.get(f"http://127.0.0.1:{p}/.well-known/coopnet", timeout=10).json()["keys"][0]["kid"]
        for p in ports
    ]


def test_demo_network_serves_three_coops_and_stops_on_sigterm(tmp_path: Path) -> None:
    base = _consecutive_free_ports(3)
    ports = [base, base + 1, base + 2]
    network, log = _start(tmp_path, base)
    children: list[psutil.Process] = []
    pg_pid: int | None = None
    try:
        output = _wait_ready(network, log)

        # Three co-ops, three identities, each at its own base URL.
        manifests = [
            httpx.get(f"http://127.0.0.1:{p}/.well-known/coopnet", timeout=10).json() for p in ports
        ]
        assert [m["baseUrl"] for m in manifests] == [f"http://127.0.0.1:{p}" for p in ports]
        names = [m["coop"]["name"] for m in manifests]
        assert names == [
            "Northside Care Co-operative",
            "Lea Valley Home Care Co-operative",
            "Don Valley Care Co-operative",
        ]
        kids = {m["keys"][0]["kid"] for m in manifests}
        assert len(kids) == 3

        # Each database on the embedded server holds its own co-op, with PAs to share.
        urls = re.findall(r"database\s+(postgresql://\S+)", output)
        assert len(urls) == 3, output
        homes = [asyncio.run(_coop_of(url)) for url in urls]
        assert [h[:2] for h in homes] == [
            (names[0], "E09000003"),  # Barnet
            (names[1], "E09000014"),  # Haringey, next door
            (names[2], "E08000019"),  # Sheffield
        ]
        assert all(shared > 0 for _, _, shared in homes)

        # The printed admin token is the instance's own: it works there, not elsewhere.
        tokens = re.findall(r"ADMIN token \(8 hours\):\s+(\S+)", output)
        assert len(tokens) == 3
        query = {"query": "{ clusters(first: 10) { totalCount } }"}
        answer = httpx.post(
            f"http://127.0.0.1:{ports[1]}/graphql",
            json=query,
            headers={"Authorization": f"Bearer {tokens[1]}"},
            timeout=10,
        ).json()
        assert answer["data"]["clusters"]["totalCount"] == 3, answer
        refused = httpx.post(
            f"http://127.0.0.1:{ports[1]}/graphql",
            json=query,
            headers={"Authorization": f"Bearer {tokens[0]}"},
            timeout=10,
        ).json()
        assert refused.get("errors"), refused

        # The walkthrough ran; once this build has the partnership and feed fields, it
        # must get all the way to the neighbour's PAs.
        assert "1. northside proposes a partnership" in output
        schema = (ROOT / "schema.graphql").read_text()
        if "proposePartnership" in schema:  # the partnership is agreed, both ways
            accepted = output.split("2. lea-valley lists")[1].split("\n3. ")[0]
            assert '"status": "ACTIVE"' in accepted, output
            # ... and the acceptance reaches the proposer (through lea-valley's outbox).
            statuses: list[str] = []
            for _ in range(100):
                statuses = [
                    p["status"]
                    for p in httpx.post(
                        f"http://127.0.0.1:{ports[0]}/graphql",
                        json={"query": "{ partnerships { status baseUrl } }"},
                        headers={"Authorization": f"Bearer {tokens[0]}"},
                        timeout=10,
                    ).json()["data"]["partnerships"]
                ]
                if statuses == ["ACTIVE"]:
                    break
                time.sleep(0.2)
            assert statuses == ["ACTIVE"], output
        if "proposePartnership" in schema and "partnerAvailability" in schema:
            assert "step failed" not in output.split("\n5. ")[0], output
            assert SHARED_PAS_SHOWN in output.split("4. lea-valley's shared PAs")[1], output
        if "requestPartnerCover(" in schema:
            _assert_cover_walkthrough(output, ports, tokens, schema)

        children = psutil.Process(network.pid).children(recursive=True)
        assert len(children) >= 3
        postmaster = tmp_path / "var" / "network" / "pg" / "postmaster.pid"
        pg_pid = int(postmaster.read_text().splitlines()[0])
        assert psutil.pid_exists(pg_pid)

        network.send_signal(signal.SIGTERM)
        assert network.wait(timeout=60) == 0, log.read_text()
        assert "Network stopped." in log.read_text()
        gone, alive = psutil.wait_procs(children, timeout=10)
        assert alive == [], alive
        for _ in range(100):  # PostgreSQL's own shutdown takes a moment
            if not psutil.pid_exists(pg_pid):
                break
            time.sleep(0.1)
        assert not psutil.pid_exists(pg_pid)
        assert not postmaster.exists()
        assert not any(_listening(p) for p in ports)

        # A second run keeps the identities (keys under DATA_DIR) and starts from fresh
        # data: the walkthrough works again (its partnership does not exist yet).
        network, log = _start(tmp_path, base)
        output = _wait_ready(network, log)
        assert _kids(ports) == [m["keys"][0]["kid"] for m in manifests]
        if "proposePartnership" in schema and "partnerAvailability" in schema:
            assert "step failed" not in output.split("\n5. ")[0], output
        if "requestPartnerCover(" in schema:
            assert "step failed" not in output, output
            assert BOOKING_SHOWN in output, output
        children = psutil.Process(network.pid).children(recursive=True)
        pg_pid = int(postmaster.read_text().splitlines()[0])
        network.send_signal(signal.SIGTERM)
        assert network.wait(timeout=60) == 0, log.read_text()
        assert psutil.wait_procs(children, timeout=10)[1] == []
    finally:
        if network.poll() is None:
            network.kill()
            network.wait()
        for child in children:
            if child.is_running():
                child.kill()
        if pg_pid is not None and psutil.pid_exists(pg_pid):
            os.kill(pg_pid, signal.SIGQUIT)


EXCHANGES = """query($side: ExchangeSide!) { coverExchanges(filter: {side: $side}, first: 10) {
  totalCount edges { node { ref side status district skills paFirstName personFirstName
  personAddress careSummary } } } }"""


def _assert_cover_walkthrough(
    output: str, ports: list[int], tokens: list[str], schema: str
) -> None:
    """Steps 5 to 10 ran without a failure, and the booking they printed is what both
    instances hold: CONFIRMED on each side, each with the other side's details."""
    assert "step failed" not in output, output
    assert "5. northside: the PA of visit" in output, output
    assert "8. lea-valley's PA" in output, output
    assert BOOKING_SHOWN in output.split("\n9. Both co-ops")[1], output
    sides = []
    for port, token, side in (
        (ports[0], tokens[0], "REQUESTING"),
        (ports[1], tokens[1], "PROVIDING"),
    ):
        answer = httpx.post(
            f"http://127.0.0.1:{port}/graphql",
            json={"query": EXCHANGES, "variables": {"side": side}},
            headers={"Authorization": f"Bearer {token}"},
            timeout=10,
        ).json()
        assert not answer.get("errors"), answer
        [node] = [e["node"] for e in answer["data"]["coverExchanges"]["edges"]]
        assert node["status"] == "CONFIRMED", node
        sides.append(node)
    requesting, providing = sides
    assert requesting["ref"] == providing["ref"]
    assert requesting["paFirstName"]  # the neighbour's PA, by first name only
    assert providing["personFirstName"] and providing["personAddress"]
    assert providing["careSummary"] and providing["district"] == requesting["district"]
    # The first name arrived as the PA's own: it is the one printed for the story.
    assert f"PA ({requesting['paFirstName']} " in output, output
    if "expansionOpportunities(" in schema:
        step = output.split("\n10. ")[1]
        assert '"district"' in step and "ranked" in step, output


def test_demo_network_refuses_ports_in_use(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "DATA_DIR")}
        env["DATA_DIR"] = str(tmp_path / "var")
        done = subprocess.run(
            [COOPNET, "demo", "network", "--base-port", str(port - 1)],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 2
    assert f"{port}" in done.stderr and "--base-port" in done.stderr
    assert not (tmp_path / "var" / "network" / "pg").exists()  # nothing started
