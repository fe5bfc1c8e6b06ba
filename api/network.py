"""`coopnet demo network`: three instances on one embedded PostgreSQL, to try federation.

- ``northside`` (base port, 8001): the demo co-op in Barnet;
- ``lea-valley`` (8002): a co-op in neighbouring Haringey, which partners with it;
- ``don-valley`` (8003): a co-op in Sheffield, with no partnership.

Each instance has its own database on the one embedded server (under
``DATA_DIR/network/pg``), its own DATA_DIR (``DATA_DIR/network/<name>``: token and
federation keys, server log) and ``PUBLIC_BASE_URL=http://127.0.0.1:<port>``. Every run
starts from fresh data: the three databases are dropped, created, migrated and loaded
again (the dates are relative to today, and the walkthrough's partnership must not exist
yet); the keys are kept, so an instance's identity survives a restart.

The walkthrough then goes through the instances' own GraphQL APIs over HTTP, as an admin
of each would: northside proposes a partnership to lea-valley, lea-valley accepts it,
northside pulls lea-valley's availability feed and lists the PAs lea-valley shares. A
step that fails (e.g. a field this build does not have) is printed and the network keeps
running. The GraphQL documents are in WALKTHROUGH below.

Ctrl-C or SIGTERM stops the three servers, then the embedded PostgreSQL.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx

from api.settings import Settings

# (name, which demo co-op it holds: see care.demo.COOPS)
INSTANCES = (("northside", "demo"), ("lea-valley", "neighbour"), ("don-valley", "distant"))
PROPOSER, ACCEPTOR = 0, 1  # indexes in INSTANCES of the two co-ops that partner
STARTUP_SECONDS = 120.0
STOP_SECONDS = 15.0
# Half a second apart: messages between instances go through each one's outbox, delivered
# at once (NOTIFY) or, after a failed attempt, a few seconds later.
RETRIES = 40
T = TypeVar("T")
# Settings a child must not inherit from this shell: each instance has its own.
OWN_SETTINGS = (
    "DATABASE_URL",
    "DATA_DIR",
    "HOST",
    "PORT",
    "PUBLIC_BASE_URL",
    "JWT_PRIVATE_KEY_FILE",
    "JWT_PUBLIC_KEY_FILE",
    "FEDERATION_KEY_FILE",
    "FEDERATION_PREVIOUS_KEY_FILES",
)

# The walkthrough's GraphQL, in one place (names from the federation contract, issue 7).
WALKTHROUGH = {
    "propose": """
mutation Propose($baseUrl: String!) {
  proposePartnership(input: {baseUrl: $baseUrl, scopes: [AVAILABILITY, COVER, MARKET_DATA]}) {
    partnership { id status coopName requestedScopes }
    errors { code message }
  }
}""",
    "partnerships": """
query Partnerships {
  partnerships { id status direction baseUrl coopName requestedScopes grantedScopes }
}""",
    "accept": """
mutation Accept($id: ID!) {
  acceptPartnership(input: {partnershipId: $id}) {
    partnership { id status grantedScopes }
    errors { code message }
  }
}""",
    "sync": """
mutation Sync($id: ID!) {
  syncPartner(input: {partnershipId: $id}) {
    partnership { coopName status lastSyncAt }
    changesApplied
    errors { code message }
  }
}""",
    "partnerAvailability": """
query PartnerAvailability {
  partnerAvailability(first: 10) {
    totalCount
    edges { node {
      partner { name } paRef district travelKm start end skills { skill expiresOn }
    } }
  }
}""",
}
# What the walkthrough's last step prints when it got the neighbour's PAs.
SHARED_PAS_SHOWN = "shared windows listed"


class StepFailed(Exception):
    """A walkthrough step got no usable answer; the message says why."""


@dataclass
class Instance:
    name: str
    coop: str
    port: int
    data_dir: Path
    database: str
    url: str = ""  # its database, on the embedded server
    process: subprocess.Popen[bytes] | None = None
    tokens: dict[str, str] = field(default_factory=dict)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def graphql_url(self) -> str:
        return f"{self.base_url}/graphql"

    @property
    def log(self) -> Path:
        return self.data_dir / "server.log"

    def settings(self) -> Settings:
        # Explicit values: nothing from this shell's environment leaks into an instance.
        return Settings(
            database_url=self.url,
            data_dir=self.data_dir,
            host="127.0.0.1",
            port=self.port,
            public_base_url=self.base_url,
            jwt_private_key_file=None,
            jwt_public_key_file=None,
            federation_key_file=None,
            federation_previous_key_files="",
        )


def instances(data_dir: Path, base_port: int) -> list[Instance]:
    root = data_dir.resolve() / "network"
    return [
        Instance(
            name=name,
            coop=coop,
            port=base_port + i,
            data_dir=root / name,
            database=f"coopnet_{name.replace('-', '_')}",
        )
        for i, (name, coop) in enumerate(INSTANCES)
    ]


def _port_taken(port: int) -> bool:
    """Whether something listens there. SO_REUSEADDR as uvicorn sets it: connections of a
    network just stopped (TIME_WAIT) do not keep a new run from the port."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


# --- Databases --------------------------------------------------------------------------


async def _recreate(server_url: str, database: str) -> None:
    from sqlalchemy import text

    from api.db import create_engine

    engine = create_engine(server_url, pool_size=1)
    try:
        async with engine.connect() as conn:
            conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
            await conn.execute(text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
            await conn.execute(text(f'CREATE DATABASE "{database}"'))
    finally:
        await engine.dispose()


async def _load(url: str, coop: str) -> list[tuple[str, int]]:
    """Load the co-op and top its availability up; the coordinator to issue a token for."""
    from api.cli import _demo_people
    from api.db import create_engine, session_factory
    from care.demo import load_coop
    from care.services.availability import extend_weekly_availability

    engine = create_engine(url, pool_size=1)
    try:
        async with session_factory(engine)() as session:
            await load_coop(session, coop)
            await extend_weekly_availability(session)
            await session.commit()
            return await _demo_people(session)
    finally:
        await engine.dispose()


def _prepare(instance: Instance, server_url: str) -> list[tuple[str, int]]:
    from api.migrate import upgrade

    asyncio.run(_recreate(server_url, instance.database))
    upgrade(instance.url)
    return asyncio.run(_load(instance.url, instance.coop))


def _issue_tokens(instance: Instance, people: list[tuple[str, int]]) -> None:
    """Tokens signed with the instance's own key (what `coopnet token issue` does there)."""
    from api.auth import TokenService, load_or_create_keys
    from care.enums import Role

    settings = instance.settings()
    service = TokenService(
        load_or_create_keys(settings),
        settings.jwt_issuer,
        settings.jwt_audience,
        settings.jwt_ttl_seconds,
    )
    instance.tokens["ADMIN"] = service.issue(Role.ADMIN)
    for role, member in people:
        if role == "COORDINATOR":
            instance.tokens["COORDINATOR"] = service.issue(Role.COORDINATOR, member_id=member)


# --- Servers ----------------------------------------------------------------------------


def _start(instance: Instance) -> None:
    from federation.identity import load_or_create_identity

    settings = instance.settings()
    instance.data_dir.mkdir(parents=True, exist_ok=True)
    # Create the federation key here, before the server, so it is never made twice.
    load_or_create_identity(settings.federation_key_dir, None, [])
    env = {k: v for k, v in os.environ.items() if k.upper() not in OWN_SETTINGS}
    env.update(
        {
            "DATABASE_URL": instance.url,
            "DATA_DIR": str(instance.data_dir),
            "HOST": "127.0.0.1",
            "PORT": str(instance.port),
            "PUBLIC_BASE_URL": instance.base_url,
        }
    )
    with instance.log.open("ab") as out:
        instance.process = subprocess.Popen(
            [sys.executable, "-m", "api.cli", "serve"],
            env=env,
            stdout=out,
            stderr=out,
            stdin=subprocess.DEVNULL,
        )


def _wait_ready(instance: Instance, deadline: float) -> None:
    with httpx.Client(timeout=2) as client:
        while time.monotonic() < deadline:
            assert instance.process is not None
            if instance.process.poll() is not None:
                raise RuntimeError(
                    f"{instance.name} exited with {instance.process.returncode}; "
                    f"its log ({instance.log}) ends:\n{_tail(instance.log)}"
                )
            try:
                if client.get(f"{instance.base_url}/readyz").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
    raise RuntimeError(f"{instance.name} did not start in time; see {instance.log}")


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _stop(servers: list[Instance]) -> None:
    """SIGTERM each server (uvicorn shuts down gracefully), then wait; kill stragglers."""
    running = [s for s in servers if s.process is not None and s.process.poll() is None]
    for s in running:
        assert s.process is not None
        s.process.terminate()
    deadline = time.monotonic() + STOP_SECONDS
    for s in running:
        assert s.process is not None
        try:
            s.process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            s.process.kill()
            s.process.wait()


# --- The walkthrough --------------------------------------------------------------------


def graphql(
    client: httpx.Client, instance: Instance, step: str, variables: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Post a WALKTHROUGH document as the instance's admin; its data, or StepFailed with
    the GraphQL errors (or the payload's `errors`) in words."""
    try:
        response = client.post(
            instance.graphql_url,
            json={"query": WALKTHROUGH[step], "variables": variables or {}},
            headers={"Authorization": f"Bearer {instance.tokens['ADMIN']}"},
        )
    except httpx.HTTPError as exc:
        raise StepFailed(f"no answer from {instance.graphql_url}: {exc}") from exc
    try:
        body = response.json()
    except ValueError as exc:
        raise StepFailed(f"HTTP {response.status_code}: {response.text[:500]}") from exc
    if not isinstance(body, dict):
        raise StepFailed(f"HTTP {response.status_code}: {response.text[:500]}")
    if body.get("errors"):
        raise StepFailed(
            "; ".join(
                str(e.get("message", e)) if isinstance(e, dict) else str(e) for e in body["errors"]
            )
        )
    data = body.get("data") or {}
    for payload in data.values():
        if isinstance(payload, dict) and payload.get("errors"):
            raise StepFailed(
                "; ".join(f"{e.get('code')}: {e.get('message')}" for e in payload["errors"])
            )
    return dict(data)


def _nodes(connection: Any) -> list[dict[str, Any]]:
    """The nodes of a connection (or the items of a plain list)."""
    if isinstance(connection, list):
        return [n for n in connection if isinstance(n, dict)]
    if isinstance(connection, dict):
        return [e["node"] for e in connection.get("edges") or [] if e.get("node")]
    return []


def _incoming(client: httpx.Client, acceptor: Instance, proposer_url: str) -> dict[str, Any]:
    listed = _nodes(graphql(client, acceptor, "partnerships")["partnerships"])
    for node in listed:
        if node.get("status") == "PROPOSED" and (
            str(node.get("baseUrl", proposer_url)).rstrip("/") == proposer_url
        ):
            return node
    raise StepFailed(f"no proposal from {proposer_url} among {acceptor.name}'s partnerships")


def _retry(step: Callable[[], T], attempts: int = RETRIES) -> T:
    """A step whose precondition another instance brings about: tried again a few times."""
    for _ in range(attempts - 1):
        try:
            return step()
        except StepFailed as exc:
            if "NOT_ACTIVE" not in str(exc) and "no proposal" not in str(exc):
                raise
            time.sleep(0.5)
    return step()


def _window_line(node: dict[str, Any]) -> str:
    """One partner window on a line: who, where, when, which skills."""
    skills = ", ".join(str(s.get("skill")) for s in node.get("skills") or [] if isinstance(s, dict))
    partner = node.get("partner") or {}
    return (
        f"{str(node.get('paRef', '?'))[:12]:12}  {node.get('district') or '-':5} "
        f"{node.get('travelKm', '?'):>5} km  {node.get('start')} - {node.get('end')}  "
        f"[{skills}]  {partner.get('name') or ''}"
    )


def walkthrough(servers: list[Instance], out: Any = None) -> bool:
    """Partner northside and lea-valley, sync, show the shared PAs. True if every step
    worked; a failed step is printed and ends the walkthrough, the servers keep running."""
    out = out or sys.stdout
    proposer, acceptor = servers[PROPOSER], servers[ACCEPTOR]

    def say(text: str) -> None:
        print(text, file=out, flush=True)

    def show(value: Any) -> None:
        say("    " + json.dumps(value, indent=2).replace("\n", "\n    "))

    with httpx.Client(timeout=60) as client:
        try:
            say(f"\n1. {proposer.name} proposes a partnership to {acceptor.base_url}")
            data = graphql(client, proposer, "propose", {"baseUrl": acceptor.base_url})
            ours = data["proposePartnership"]["partnership"]
            show(ours)

            say(f"\n2. {acceptor.name} lists its partnerships and accepts the proposal")
            incoming = _retry(lambda: _incoming(client, acceptor, proposer.base_url))
            show(incoming)
            data = graphql(client, acceptor, "accept", {"id": incoming["id"]})
            show(data["acceptPartnership"]["partnership"])

            say(f"\n3. {proposer.name} pulls {acceptor.name}'s availability feed")
            # The acceptance reaches the proposer's instance by a call of its own: allow it
            # a moment before the partnership is ACTIVE there.
            data = _retry(lambda: graphql(client, proposer, "sync", {"id": ours["id"]}))
            show(data["syncPartner"])

            say(f"\n4. {acceptor.name}'s shared PAs, as {proposer.name} sees them (pseudonymous)")
            data = graphql(client, proposer, "partnerAvailability")
            listed = _nodes(data["partnerAvailability"])
            for node in listed:
                say("    " + _window_line(node))
            pas = {n.get("paRef") for n in listed}
            total = data["partnerAvailability"].get("totalCount", len(listed))
            say(f"    {total} {SHARED_PAS_SHOWN} (first {len(listed)}: {len(pas)} PAs)")
            if not listed:
                raise StepFailed(f"{proposer.name} received no windows from {acceptor.name}")
        except StepFailed as exc:
            say(f"    step failed: {exc}")
            say("    (the instances keep running: try the step yourself, see below)")
            return False
        except (KeyError, TypeError) as exc:
            say(f"    step failed: unexpected answer ({exc!r})")
            return False
    return True


def _guide(servers: list[Instance]) -> str:
    proposer, acceptor = servers[PROPOSER], servers[ACCEPTOR]
    lines = ["\nThe network:"]
    for s in servers:
        lines.append(f"\n  {s.name} ({s.coop} co-op)  {s.base_url}")
        lines.append(f"    GraphiQL   {s.graphql_url}")
        lines.append(f"    manifest   {s.base_url}/.well-known/coopnet")
        lines.append(f"    database   {s.url}")
        lines.append(f"    log        {s.log}")
        for role, token in s.tokens.items():
            lines.append(f"    {role} token (8 hours):\n      {token}")
    lines.append(
        f"""
Try it (in GraphiQL add the header {{"Authorization": "Bearer <token>"}}):

  - who is who: curl -s {proposer.base_url}/.well-known/coopnet
  - as {proposer.name}'s admin, its partnerships:
{_indent(WALKTHROUGH["partnerships"])}
  - as {proposer.name}'s admin (or coordinator), the PAs {acceptor.name} shares:
{_indent(WALKTHROUGH["partnerAvailability"])}
  - pull again after a change on {acceptor.name} (e.g. a PA's new availability window):
{_indent(WALKTHROUGH["sync"])}
  - {servers[2].name} has no partnership: its admin can propose one the same way
    (baseUrl "{proposer.base_url}").

  curl example:
  curl -s {proposer.graphql_url} -H 'Content-Type: application/json' \\
    -H 'Authorization: Bearer {proposer.tokens.get("ADMIN", "<token>")}' \\
    -d '{{"query": "{{ partnerships {{ id status coopName grantedScopes }} }}"}}'
"""
    )
    return "\n".join(lines)


def _indent(document: str) -> str:
    return "\n".join("      " + line for line in document.strip().splitlines())


# --- The command ------------------------------------------------------------------------


def run(settings: Settings, base_port: int) -> int:
    from api.embedded import EmbeddedPostgres

    servers = instances(settings.data_dir, base_port)
    taken = [s.port for s in servers if _port_taken(s.port)]
    if taken:
        print(
            f"error: port(s) {', '.join(map(str, taken))} already in use: "
            "choose others with --base-port",
            file=sys.stderr,
        )
        return 2
    if settings.database_url:
        print("note: DATABASE_URL is ignored: the demo network has its own embedded PostgreSQL")
    pg = EmbeddedPostgres(settings.data_dir / "network" / "pg")
    print(f"Starting the embedded PostgreSQL in {pg.pgdata} ...", flush=True)
    pg.start()
    try:
        server_url = pg.url("postgres")
        for s in servers:
            s.url = pg.url(s.database)
            print(f"Loading {s.name} into database {s.database} (fresh) ...", flush=True)
            people = _prepare(s, server_url)
            s.data_dir.mkdir(parents=True, exist_ok=True)
            _issue_tokens(s, people)
        for s in servers:
            _start(s)
        deadline = time.monotonic() + STARTUP_SECONDS
        for s in servers:
            _wait_ready(s, deadline)
            print(f"{s.name} is serving at {s.base_url}", flush=True)

        print("\nWalkthrough (each step is a GraphQL call, as an admin of the instance):")
        walkthrough(servers)
        print(_guide(servers), flush=True)
        print(
            "Network ready: Ctrl-C (or SIGTERM) stops the three servers and PostgreSQL.",
            flush=True,
        )
        while True:
            for s in servers:
                assert s.process is not None
                code = s.process.poll()
                if code == 0:  # stopped from outside (a signal to the process group)
                    print(f"{s.name} stopped: stopping the network.", flush=True)
                    return 0
                if code is not None:
                    print(
                        f"error: {s.name} stopped (exit {code}); its log ends:\n"
                        f"{_tail(s.log)}\nStopping the network.",
                        file=sys.stderr,
                        flush=True,
                    )
                    return 1
            time.sleep(0.5)
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        _stop(servers)
        pg.stop()
        print("Network stopped.", flush=True)
