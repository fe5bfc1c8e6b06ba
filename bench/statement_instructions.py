"""Benchmark: PostgreSQL's instructions per execution of the compiled reads' statements.

Requests per second on a shared two-core machine move by 10-20% from run to run, too much
to judge a change to a statement that saves 5%. Instructions executed by the PostgreSQL
backend do not move: this script counts them under valgrind's callgrind, repeatable to
about 0.01%, so each change to the compiler can be judged by its effect on the statement.

1. It loads (or, with `--reuse`, keeps) the database of bench/reads_side_by_side.py.
2. It copies that database into a PostgreSQL cluster of its own (initdb in a temporary
   folder, pg_dump | pg_restore, ANALYZE), then starts that cluster's server under
   `valgrind --tool=callgrind` on a free port (no parallel workers, so that one backend
   does all of a statement's work; no autovacuum).
3. For each of the bench's four reads (the cluster page and the visit list, as an admin
   and as the cluster's coordinator) it compiles the operation in this process, as the
   fast lane runs it (`schema.compiled.extension.prepare`, the token's in-force check
   included), and runs the statement `--runs` times (two counts, default 7 and 17) on a
   fresh connection each, prepared as the app's connections prepare it, with the app's
   connection settings.
4. A backend's instructions are callgrind's total for its process, written when it ends.
   The difference between the two counts, divided by the difference in runs, is one
   execution in the steady state: connecting, preparing and the first (custom) plans
   cancel out. A first connection runs the statement before both, so that the pages it
   reads are in shared buffers for both counts alike. It checks that every execution
   answered the same bytes.

Needs valgrind (`apt-get install valgrind`) and PostgreSQL's server programs (initdb,
postgres, pg_dump, pg_restore; `--pg-bin`, default `pg_config --bindir`). About two to
four minutes, most of it under valgrind.

    python bench/statement_instructions.py [DATABASE_URL] [--reuse] [--runs 7,17]
        [--pg-bin DIR] [--only "cluster page"]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import datetime as dt
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
from graphql import parse
from sqlalchemy.engine import make_url

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))

from api.auth import TokenService, load_or_create_keys  # noqa: E402
from api.settings import Settings  # noqa: E402
from bench import reads_side_by_side as reads  # noqa: E402
from bench.common import free_port  # noqa: E402
from care.enums import Role  # noqa: E402
from schema.build import create_schema  # noqa: E402
from schema.compiled.extension import prepare  # noqa: E402
from schema.context import Limits  # noqa: E402

# The connection settings of the app's engine (api/db.py), which change what PostgreSQL
# does per row (DateStyle: how instants are written).
SERVER_SETTINGS = {"jit": "off", "extra_float_digits": "1", "DateStyle": "ISO"}
TOTALS = re.compile(rb"^(?:summary|totals):\s+(\d+)", re.MULTILINE)


@dataclass
class Read:
    name: str
    query: str
    variables: dict[str, Any]
    token: str


def pg_bin(arg: str | None) -> Path:
    if arg:
        return Path(arg)
    found = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True)
    if found.returncode != 0:
        raise SystemExit("pg_config not found: give PostgreSQL's programs with --pg-bin.")
    return Path(found.stdout.strip())


def as_server_user(cmd: list[str]) -> list[str]:
    """PostgreSQL's server refuses to run as root: as root, run it as `postgres`."""
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


def run(*cmd: str) -> None:
    done = subprocess.run(as_server_user(list(cmd)), capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stderr}")


def copy_cluster(bin_dir: Path, url: str, data: Path, sockets: Path, port: int) -> None:
    """A cluster of our own holding a copy of the bench database, its statistics fresh."""
    run(str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust", "--no-sync")
    options = f"-p {port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={sockets}"
    # A log file: the server must not hold our pipes open.
    log = data.parent / "copy.log"
    run(str(bin_dir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(log), "-w", "start")
    try:
        name = make_url(url).database or ""
        copy = f"postgresql://postgres@127.0.0.1:{port}"
        run(str(bin_dir / "createdb"), f"--maintenance-db={copy}/postgres", name)
        dump = subprocess.Popen(
            [str(bin_dir / "pg_dump"), "-Fc", "-d", url], stdout=subprocess.PIPE
        )
        run_restore = subprocess.run(
            [str(bin_dir / "pg_restore"), "--no-owner", "-d", f"{copy}/{name}"],
            stdin=dump.stdout,
            capture_output=True,
        )
        if dump.wait() != 0 or run_restore.returncode != 0:
            raise SystemExit(f"copying the bench database failed: {run_restore.stderr!r}")
        run(str(bin_dir / "psql"), "-q", "-d", f"{copy}/{name}", "-c", "ANALYZE")
    finally:
        run(str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop")


def start_under_callgrind(
    bin_dir: Path, data: Path, sockets: Path, port: int, out: Path
) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        as_server_user(
            [
                "valgrind",
                "--tool=callgrind",
                "-q",
                f"--callgrind-out-file={out}/backend.%p",
                str(bin_dir / "postgres"),
                "-D",
                str(data),
                "-p",
                str(port),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                f"unix_socket_directories={sockets}",
                "-c",
                "max_parallel_workers_per_gather=0",
                "-c",
                "autovacuum=off",
                "-c",
                "shared_buffers=512MB",
            ]
        ),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def connect(dsn: str, seconds: float = 180) -> asyncpg.Connection:
    deadline = time.monotonic() + seconds
    while True:
        try:
            return await asyncpg.connect(
                dsn,
                server_settings=SERVER_SETTINGS,
                max_cacheable_statement_size=128 * 1024,
                timeout=60,
            )
        except (OSError, asyncpg.CannotConnectNowError):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(1)


def instructions(out: Path, pid: int, seconds: float = 120) -> int:
    """The backend's total, from the file callgrind writes when the process ends."""
    path = out / f"backend.{pid}"
    deadline = time.monotonic() + seconds
    while True:
        if path.exists():
            found = TOTALS.search(path.read_bytes())
            if found:
                return int(found.group(1))
        if time.monotonic() > deadline:
            raise SystemExit(f"callgrind wrote no totals for backend {pid}")
        time.sleep(0.5)


async def count(dsn: str, out: Path, sql: str, arguments: list[Any], runs: int) -> tuple[int, str]:
    conn = await connect(dsn)
    try:
        pid = await conn.fetchval("SELECT pg_backend_pid()")
        rows = [await conn.fetchrow(sql, *arguments) for _ in range(runs)]
        # The last column is the token's in-force check (api/fastlane.py reads it so).
        answers = {(row[0], row[-1]) for row in rows}
    finally:
        await conn.close()
    if len(answers) != 1:
        raise SystemExit("the statement answered differently from one run to the next")
    answer, in_force = answers.pop()
    if in_force is not True:
        raise SystemExit("the token was not in force: the statement answered nothing")
    return instructions(out, pid), str(answer)


def reads_to_count(tokens: TokenService, cluster_gid: str) -> list[Read]:
    admin = tokens.issue(Role.ADMIN)
    coordinator = tokens.issue(Role.COORDINATOR, member_id=101)  # cluster 1's, as the bench
    since = dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat()
    out = []
    for who, token in (("admin", admin), ("coordinator", coordinator)):
        out.append(
            Read(
                f"cluster page, {who}",
                reads.COOPNET_CLUSTER_PAGE,
                {"id": cluster_gid, "from": since, "people": 50},
                token,
            )
        )
        out.append(
            Read(
                f"visit list, {who}",
                reads.COOPNET_VISIT_LIST,
                {
                    "from": since,
                    "cluster": cluster_gid if who == "coordinator" else None,
                    "first": 100,
                },
                token,
            )
        )
    return out


async def measure(args: argparse.Namespace, dsn: str, out: Path, tokens: TokenService) -> None:
    conn = await connect(dsn)
    try:
        cluster_id = await conn.fetchval("SELECT id FROM cluster WHERE name = 'Cluster 1'")
    finally:
        await conn.close()
    cluster_gid = base64.b64encode(f"Cluster:{cluster_id}".encode()).decode()
    schema = create_schema()._schema
    low, high = args.runs
    print(f"\nPostgreSQL instructions per execution ((runs {high} - runs {low}) / {high - low})")
    print(f"{'read':<28} {'instructions':>14} {'response':>10}")
    for read in reads_to_count(tokens, cluster_gid):
        if args.only and args.only not in read.name:
            continue
        verified = tokens.verify(read.token)
        prepared = prepare(
            schema, parse(read.query), read.query, None, read.variables, verified.viewer, Limits()
        )
        if prepared is None:
            raise SystemExit(f"{read.name}: the operation does not compile")
        sql, arguments = prepared.bind(verified.ref)
        # First on a connection of its own, so both counts find the same pages in shared
        # buffers: a cold read would add to the first count only.
        await count(dsn, out, sql, arguments, low)
        few, answer = await count(dsn, out, sql, arguments, low)
        many, again = await count(dsn, out, sql, arguments, high)
        if answer != again:
            raise SystemExit(f"{read.name}: two connections answered differently")
        per = (many - few) / (high - low)
        print(f"{read.name:<28} {per / 1e6:>13.2f}M {len(answer.encode()):>9,}B", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("url", nargs="?")
    parser.add_argument("--reuse", action="store_true", help="keep a loaded database")
    parser.add_argument("--runs", default="7,17", help="two run counts, e.g. 7,17")
    parser.add_argument("--pg-bin", help="PostgreSQL's programs (default: pg_config --bindir)")
    parser.add_argument("--only", help="only the reads whose name contains this")
    args = parser.parse_args()
    low, high = (int(n) for n in args.runs.split(","))
    if not 5 < low < high:
        raise SystemExit("--runs: two counts above 5 (past the custom plans), low first")
    args.runs = (low, high)
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is needed: apt-get install valgrind")
    bin_dir = pg_bin(args.pg_bin)
    url = reads.resolve_url(args.url)
    asyncio.run(reads.prepare(url, args.reuse))
    with tempfile.TemporaryDirectory(prefix="coopnet-bench-instructions-") as tmp:
        root = Path(tmp)
        data, sockets, out = root / "data", root / "sockets", root / "callgrind"
        sockets.mkdir()
        out.mkdir()
        if os.geteuid() == 0:
            shutil.chown(root, "postgres")
            for folder in (sockets, out):
                shutil.chown(folder, "postgres")
        port = free_port()
        began = time.perf_counter()
        copy_cluster(bin_dir, url, data, sockets, port)
        print(f"copied the bench database in {time.perf_counter() - began:.0f} s", flush=True)
        settings = Settings(database_url=url, data_dir=root)
        tokens = TokenService(
            load_or_create_keys(settings),
            settings.jwt_issuer,
            settings.jwt_audience,
            settings.jwt_ttl_seconds,
        )
        server = start_under_callgrind(bin_dir, data, sockets, port, out)
        try:
            name = make_url(url).database
            asyncio.run(
                measure(args, f"postgresql://postgres@127.0.0.1:{port}/{name}", out, tokens)
            )
        finally:
            server.send_signal(2)  # SIGINT: a fast shutdown
            try:
                server.wait(120)
            except subprocess.TimeoutExpired:
                server.kill()


if __name__ == "__main__":
    main()
