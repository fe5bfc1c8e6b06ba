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
import base64
import datetime as dt
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
from zoneinfo import ZoneInfo

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
    "FEDERATION_PRIVATE_NETWORKS",
)
LOOPBACK = "127.0.0.0/8"

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
    # --- the cross-boundary cover story (issue 8) ---
    "recordAbsence": """
mutation Sick($input: RecordAbsenceInput!) {
  recordAbsence(input: $input) {
    absence { id kind startsAt endsAt }
    coverRequests { id status visitStartsAt visit { id } }
    errors { code message }
  }
}""",
    "coverCandidates": """
query Candidates($visitId: ID!) {
  coverCandidates(visitId: $visitId, first: 20) {
    candidates {
      __typename source score distanceKm
      ... on PartnerCoverCandidate { paRef partnership { id name } district travelKm }
    }
    leftOut { source reason }
  }
}""",
    "partnerWindows": """
query PartnerWindows($from: DateTime!, $to: DateTime!) {
  partnerAvailability(filter: {from: $from, to: $to}, first: 100) {
    edges { node { partner { name } paRef district travelKm start end skills { skill } } }
  }
}""",
    "requestPartnerCover": """
mutation RequestCover($input: RequestPartnerCoverInput!) {
  requestPartnerCover(input: $input) {
    exchange { id ref side status startsAt endsAt district skills paRef holdExpiresAt }
    errors { field code message }
  }
}""",
    "providing": """
query Providing {
  coverExchanges(filter: {side: PROVIDING}, first: 10) {
    totalCount
    edges { node { id ref status startsAt endsAt district skills pa { id } } }
  }
}""",
    "acceptPartnerCover": """
mutation Accept($id: ID!) {
  acceptPartnerCover(id: $id) {
    exchange { id status }
    errors { field code message }
  }
}""",
    "coverExchanges": """
query Exchanges($side: ExchangeSide!) {
  coverExchanges(filter: {side: $side}, first: 10) {
    totalCount
    edges { node {
      id ref side status startsAt endsAt district skills partner { name }
      paFirstName personFirstName personAddress careSummary
      events { at status bySide byRole }
    } }
  }
}""",
    "expansionOpportunities": """
query Expansion($la: String!) {
  expansionOpportunities(localAuthority: $la) {
    district peopleWaiting hoursWanted needs { need people }
    ownPas ownHours partnerPas partnerHours medianDistanceKm ourClusterHere score
  }
}""",
}
# What the walkthrough's last step prints when it got the neighbour's PAs.
SHARED_PAS_SHOWN = "shared windows listed"
# What it prints when both co-ops show the cross-boundary booking.
BOOKING_SHOWN = "confirmed on both sides"


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


# --- The cover story: a demo co-op visit a neighbour's PA can take -----------------------

# The demo co-op's districts nearest Haringey, nearest first (Friern Barnet, Palmers Green,
# Southgate, East Finchley, North Finchley).
STORY_DISTRICTS = ("N11", "N13", "N14", "N2", "N12")
STORY_DAYS = range(5, 12)  # days ahead: after the demo's own sick PA is back
NEXT_DOOR_LA = "E09000010"  # Enfield, next to Barnet: where step 10 looks for demand
LONDON = ZoneInfo("Europe/London")
CARE_SUMMARY = (
    "Uses a hoist for transfers (two-step, sling in the bedroom); likes a chat about the "
    "garden. Key safe by the front door."
)


@dataclass(frozen=True)
class CoverStory:
    """A visit of the demo co-op near the Haringey boundary whose PA falls sick in the
    walkthrough, and the neighbour co-op's PA (shared with partners, skilled, in reach,
    free then) who covers it."""

    visit_id: int
    sick_pa_id: int
    starts_at: dt.datetime
    ends_at: dt.datetime
    district: str
    needs: tuple[str, ...]
    partner_pa_id: int  # on the neighbour's instance
    partner_pa_name: str
    window_added: bool  # the neighbour's PA was given the free time (no window covered it)

    @property
    def day(self) -> dt.date:
        return self.starts_at.astimezone(LONDON).date()


async def _stage_cover_story(demo_url: str, neighbour_url: str) -> CoverStory | None:
    """Pick the walkthrough's visit and the neighbour's PA for it; if no window of a
    suitable PA covers any such visit, give the best-placed PA a window that does (the
    neighbour co-op has no rota, so the PA is free)."""
    from sqlalchemy import text

    from api.db import create_engine
    from care.demo import NEIGHBOUR_COOP
    from care.geography import distance_km

    today = dt.datetime.now(LONDON).date()
    start = dt.datetime.combine(today + dt.timedelta(STORY_DAYS.start), dt.time(), LONDON)
    end = dt.datetime.combine(today + dt.timedelta(STORY_DAYS.stop), dt.time(), LONDON)
    demo, neighbour = (
        create_engine(demo_url, pool_size=1),
        create_engine(neighbour_url, pool_size=1),
    )
    try:
        async with demo.connect() as conn:
            visits = (
                await conn.execute(
                    text(
                        "SELECT v.id, v.pa_id, lower(v.during) AS s, upper(v.during) AS e, "
                        "upper(split_part(m.postcode, ' ', 1)) AS district, m.latitude, "
                        "m.longitude, p.needs FROM visit v "
                        "JOIN member m ON m.id = v.service_user_id "
                        "JOIN service_user_profile p ON p.member_id = m.id "
                        "WHERE v.status = 'SCHEDULED' AND v.pa_id IS NOT NULL "
                        "AND lower(v.during) >= :start AND lower(v.during) < :end "
                        "AND upper(split_part(m.postcode, ' ', 1)) = ANY(:districts) "
                        "AND m.latitude IS NOT NULL ORDER BY lower(v.during), v.id"
                    ),
                    {"start": start, "end": end, "districts": list(STORY_DISTRICTS)},
                )
            ).all()
        async with neighbour.connect() as conn:
            pas = (
                await conn.execute(
                    text(
                        "SELECT m.id, m.name, upper(split_part(m.postcode, ' ', 1)) AS district,"
                        " pp.max_travel_km FROM member m "
                        "JOIN pa_profile pp ON pp.member_id = m.id WHERE m.active AND EXISTS "
                        "(SELECT 1 FROM pool_pa JOIN pool ON pool.id = pool_pa.pool_id "
                        "WHERE pool_pa.pa_id = m.id AND pool.shared_with_partners) ORDER BY m.id"
                    )
                )
            ).all()
            skills = (
                await conn.execute(text("SELECT pa_id, skill, expires_on FROM pa_skill"))
            ).all()
            windows = (
                await conn.execute(
                    text(
                        "SELECT pa_id, lower(during) AS s, upper(during) AS e "
                        "FROM availability_window WHERE during && tstzrange(:start, :end)"
                    ),
                    {"start": start, "end": end},
                )
            ).all()

        def suits(visit: Any, pa: Any) -> bool:
            centre = NEIGHBOUR_COOP.districts.get(pa.district)
            if centre is None or pa.max_travel_km is None:
                return False
            # A kilometre to spare: the partner's PA is placed at its district's centroid.
            far = distance_km(centre, (visit.latitude, visit.longitude))
            if far > float(pa.max_travel_km) - 1:
                return False
            held = {
                k.skill
                for k in skills
                if k.pa_id == pa.id and (k.expires_on is None or k.expires_on >= visit.s.date())
            }
            return set(visit.needs or ()) <= held

        def free(visit: Any, pa: Any) -> bool:
            return any(w.pa_id == pa.id and w.s <= visit.s and w.e >= visit.e for w in windows)

        def overlapping(visit: Any, pa: Any) -> bool:
            return any(w.pa_id == pa.id and w.s < visit.e and w.e > visit.s for w in windows)

        ranked = sorted(visits, key=lambda v: (STORY_DISTRICTS.index(v.district), v.s, v.id))
        pairs = [(v, p) for v in ranked for p in pas if suits(v, p)]
        chosen = next(((v, p) for v, p in pairs if free(v, p)), None)
        added = False
        if chosen is None:
            chosen = next(((v, p) for v, p in pairs if not overlapping(v, p)), None)
            if chosen is None:
                return None
            visit, pa = chosen
            async with neighbour.begin() as conn:
                await conn.execute(
                    text(
                        "INSERT INTO availability_window (pa_id, during) VALUES "
                        "(:pa, tstzrange(:s, :e))"
                    ),
                    {
                        "pa": pa.id,
                        "s": visit.s - dt.timedelta(hours=1),
                        "e": visit.e + dt.timedelta(hours=1),
                    },
                )
            added = True
        visit, pa = chosen
        return CoverStory(
            visit_id=visit.id,
            sick_pa_id=visit.pa_id,
            starts_at=visit.s,
            ends_at=visit.e,
            district=visit.district,
            needs=tuple(visit.needs or ()),
            partner_pa_id=pa.id,
            partner_pa_name=pa.name,
            window_added=added,
        )
    finally:
        await demo.dispose()
        await neighbour.dispose()


def _issue(instance: Instance, role: str, member: int | None = None) -> str:
    from api.auth import TokenService, load_or_create_keys
    from care.enums import Role

    settings = instance.settings()
    service = TokenService(
        load_or_create_keys(settings),
        settings.jwt_issuer,
        settings.jwt_audience,
        settings.jwt_ttl_seconds,
    )
    return service.issue(Role(role), member_id=member)


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
            # The three instances share this machine: they call each other on loopback.
            "FEDERATION_PRIVATE_NETWORKS": LOOPBACK,
            # A demo: one process each, not one per core (`serve` without --dev).
            "WORKERS": "1",
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
    client: httpx.Client,
    instance: Instance,
    step: str,
    variables: dict[str, Any] | None = None,
    *,
    role: str = "ADMIN",
) -> dict[str, Any]:
    """Post a WALKTHROUGH document as the instance's admin (or another of its printed
    tokens); its data, or StepFailed with the GraphQL errors (or the payload's `errors`)
    in words."""
    try:
        response = client.post(
            instance.graphql_url,
            json={"query": WALKTHROUGH[step], "variables": variables or {}},
            headers={"Authorization": f"Bearer {instance.tokens[role]}"},
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


def walkthrough(servers: list[Instance], out: Any = None, story: CoverStory | None = None) -> bool:
    """Partner northside and lea-valley, sync, show the shared PAs; then, with a story,
    cover a northside visit with a lea-valley PA across the boundary and show an
    expansion opportunity. True if every step worked; a failed step is printed and ends
    the walkthrough, the servers keep running."""
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
            if story is not None:
                _cover_walkthrough(client, proposer, acceptor, ours["id"], story, say, show)
        except StepFailed as exc:
            say(f"    step failed: {exc}")
            say("    (the instances keep running: try the step yourself, see below)")
            return False
        except (KeyError, TypeError) as exc:
            say(f"    step failed: unexpected answer ({exc!r})")
            return False
    return True


def gid(type_name: str, pk: int) -> str:
    """A global id (base64 of `Type:id`), as the API gives and takes them."""
    return base64.b64encode(f"{type_name}:{pk}".encode()).decode()


def _until(check: Callable[[], T | None], what: str, attempts: int = RETRIES) -> T:
    """What another instance brings about on its own time (its outbox): asked again,
    half a second apart, until `check` gives something."""
    for _ in range(attempts):
        found = check()
        if found is not None:
            return found
        time.sleep(0.5)
    raise StepFailed(f"not within {attempts // 2} s: {what}")


def _edges(data: dict[str, Any], field_name: str) -> list[dict[str, Any]]:
    return _nodes(data.get(field_name))


def _cover_walkthrough(
    client: httpx.Client,
    requester: Instance,
    provider: Instance,
    partnership_id: str,
    story: CoverStory,
    say: Callable[[str], None],
    show: Callable[[Any], None],
) -> None:
    """Steps 5 to 10: a northside PA falls sick; a lea-valley PA covers the visit."""
    day = story.day
    say(
        f"\n5. {requester.name}: the PA of visit {gid('Visit', story.visit_id)} "
        f"({story.district}, {story.starts_at.astimezone(LONDON):%a %d %b %H:%M}) "
        f"falls sick for the day"
    )
    starts = dt.datetime.combine(day, dt.time(), LONDON)
    data = graphql(
        client,
        requester,
        "recordAbsence",
        {
            "input": {
                "paId": gid("PersonalAssistant", story.sick_pa_id),
                "kind": "SICKNESS",
                "startsAt": starts.isoformat(),
                "endsAt": (starts + dt.timedelta(days=1)).isoformat(),
                "note": "Off sick (walkthrough).",
            }
        },
    )
    opened = data["recordAbsence"]["coverRequests"]
    say(f"    {len(opened)} cover request(s) opened")
    visit_id = gid("Visit", story.visit_id)
    request = next((r for r in opened if (r.get("visit") or {}).get("id") == visit_id), None)
    if request is None:
        raise StepFailed(f"no cover request opened for {visit_id}")
    show(request)

    say(f"\n6. {requester.name}: cover candidates for the visit (partners' PAs included)")
    pa_ref = _expected_ref(provider, story)
    try:
        answer = graphql(client, requester, "coverCandidates", {"visitId": visit_id})
        candidates = answer["coverCandidates"]["candidates"]
        partners = [c for c in candidates if c.get("__typename") == "PartnerCoverCandidate"]
        local = len(candidates) - len(partners)
        say(f"    {local} of our own PAs and {len(partners)} partner PA(s); the partner ones:")
        for c in partners:
            km = c.get("distanceKm")
            say(
                f"    #{candidates.index(c) + 1}  {str(c.get('paRef'))[:12]:12}  "
                f"{c.get('district') or '-':5} {'?' if km is None else f'{km:.1f}'} km away  "
                f"score {float(c.get('score') or 0):.2f}  "
                f"{(c.get('partnership') or {}).get('name')}"
            )
        if not any(c.get("paRef") == pa_ref for c in partners):
            raise StepFailed(f"{provider.name}'s PA {pa_ref} is not among the candidates")
    except StepFailed as exc:
        if "Cannot query field" not in str(exc) and "Unknown type" not in str(exc):
            raise
        # A build without partner candidates: the partner's free time says the same.
        say("    (this build's coverCandidates has no partner candidates: partnerAvailability)")
        windows = _edges(
            graphql(
                client,
                requester,
                "partnerWindows",
                {"from": story.starts_at.isoformat(), "to": story.ends_at.isoformat()},
            ),
            "partnerAvailability",
        )
        mine = [w for w in windows if w.get("paRef") == pa_ref]
        if not mine:
            raise StepFailed(f"{provider.name}'s PA {pa_ref} has no free time then") from exc
        say("    " + _window_line(mine[0]))
    say(f"    -> {provider.name}'s PA {pa_ref} (skills {', '.join(story.needs)})")

    say(f"\n7. {requester.name} asks {provider.name} for that PA (time, district, skills only)")
    data = graphql(
        client,
        requester,
        "requestPartnerCover",
        {
            "input": {
                "coverRequestId": request["id"],
                "partnershipId": partnership_id,
                "paRef": pa_ref,
                "careSummary": CARE_SUMMARY,
            }
        },
    )
    asked = data["requestPartnerCover"]["exchange"]
    show(asked)

    say(f"\n8. {provider.name}'s PA ({story.partner_pa_name}) sees the request and accepts")
    held = [
        n
        for n in _edges(graphql(client, provider, "providing"), "coverExchanges")
        if n.get("ref") == asked["ref"]
    ]
    if not held:
        raise StepFailed(f"{provider.name} shows no exchange {asked['ref']}")
    show(held[0])
    data = graphql(client, provider, "acceptPartnerCover", {"id": held[0]["id"]}, role="PA")
    show(data["acceptPartnerCover"]["exchange"])

    say(f"\n9. Both co-ops show the booking ({requester.name} confirms on the acceptance)")
    for instance, side, detail in (
        (requester, "REQUESTING", "paFirstName"),
        (provider, "PROVIDING", "personFirstName"),
    ):

        def booked(instance: Instance = instance, side: str = side, detail: str = detail) -> Any:
            nodes = _edges(
                graphql(client, instance, "coverExchanges", {"side": side}), "coverExchanges"
            )
            return next(
                (
                    n
                    for n in nodes
                    if n.get("ref") == asked["ref"]
                    and n.get("status") == "CONFIRMED"
                    and n.get(detail)
                ),
                None,
            )

        node = _until(booked, f"{instance.name} shows the booking CONFIRMED")
        say(f"    {instance.name} ({side}):")
        show(node)
    say(f"    booking {BOOKING_SHOWN}")

    say(f"\n10. {requester.name}: where to grow next, in neighbouring Enfield (waiting referrals)")
    try:
        data = graphql(client, requester, "expansionOpportunities", {"la": NEXT_DOOR_LA})
    except StepFailed as exc:
        say(f"    (not in this build: {exc})")
        return
    rows = data["expansionOpportunities"]
    if not rows:
        raise StepFailed("no expansion opportunity in Enfield")
    show(rows[0])
    say(f"    {len(rows)} district(s) ranked; the first is shown")


def _expected_ref(provider: Instance, story: CoverStory) -> str:
    """The neighbour's pseudonym for the story's PA, from its own database (the key of
    its partnership with northside): what northside's candidates should offer."""
    from sqlalchemy import text

    from api.db import create_engine
    from federation.feed import pseudonym

    async def read() -> bytes | None:
        engine = create_engine(provider.url, pool_size=1)
        try:
            async with engine.connect() as conn:
                key: bytes | None = await conn.scalar(
                    text("SELECT pseudonym_key FROM partnership WHERE status = 'ACTIVE' LIMIT 1")
                )
                return key
        finally:
            await engine.dispose()

    key = asyncio.run(read())
    if key is None:
        raise StepFailed(f"{provider.name} has no active partnership")
    return pseudonym(key, "pa", story.partner_pa_id)


def _guide(servers: list[Instance], story: CoverStory | None = None) -> str:
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
    if story is not None:
        lines.append(_cover_guide(proposer, acceptor, story))
    return "\n".join(lines)


def _cover_guide(requester: Instance, provider: Instance, story: CoverStory) -> str:
    """Steps 5 to 10 as documents to run again by hand (e.g. for another visit)."""
    visit = gid("Visit", story.visit_id)
    return f"""Cross-boundary cover (steps 5 to 9 above did it for visit {visit};
{provider.name}'s PA token above is {story.partner_pa_name}'s, the PA who covered it):

  - as {requester.name}'s admin, a PA falls sick (variables: {{"input": {{"paId": ...,
    "kind": "SICKNESS", "startsAt": ..., "endsAt": ...}}}}); the payload lists the cover
    requests it opened:
{_indent(WALKTHROUGH["recordAbsence"])}
  - the visit's candidates, partners' PAs included (variables: {{"visitId": ...}}):
{_indent(WALKTHROUGH["coverCandidates"])}
  - ask the partner for one (only time, district and skills travel until it is confirmed):
{_indent(WALKTHROUGH["requestPartnerCover"])}
  - as {provider.name}'s PA (PA token): accept (variables: {{"id": "<the exchange id>"}}):
{_indent(WALKTHROUGH["acceptPartnerCover"])}
  - either side (admin token): the exchanges, with the other side's details once confirmed
    (variables: {{"side": "REQUESTING"}} on {requester.name}, "PROVIDING" on {provider.name}):
{_indent(WALKTHROUGH["coverExchanges"])}
  - as {requester.name}'s admin, where to open a cluster next
    (variables: {{"la": "{NEXT_DOOR_LA}"}}):
{_indent(WALKTHROUGH["expansionOpportunities"])}
"""


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
        story = asyncio.run(_stage_cover_story(servers[PROPOSER].url, servers[ACCEPTOR].url))
        if story is not None:
            servers[ACCEPTOR].tokens["PA"] = _issue(servers[ACCEPTOR], "PA", story.partner_pa_id)
        else:
            print("note: no visit suits a neighbour's PA: the cover steps are left out")
        for s in servers:
            _start(s)
        deadline = time.monotonic() + STARTUP_SECONDS
        for s in servers:
            _wait_ready(s, deadline)
            print(f"{s.name} is serving at {s.base_url}", flush=True)

        print("\nWalkthrough (each step is a GraphQL call, as an admin of the instance):")
        walkthrough(servers, story=story)
        print(_guide(servers, story), flush=True)
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
