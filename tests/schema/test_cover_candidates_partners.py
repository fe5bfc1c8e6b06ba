"""`coverCandidates` with partner co-ops' PAs: ranked with ours on one scale by our own
weights, each hard rule that the shared data allows, continuity and fairness from our
confirmed exchanges, which partnerships count, a source that fails left out and named,
and a statement count that does not grow with the partner candidates.

Partner availability is arranged as `partner_window` rows (what the sync stores, our own
data), for partnership rows in our database: no peer instance is involved or mocked."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import update
from sqlalchemy.dialects.postgresql import Range
from sqlalchemy.ext.asyncio import AsyncSession

from care.enums import Role
from care.geography import distance_km, district_centroid
from care.models import (
    Cluster,
    Coop,
    CoverExchange,
    CoverRequest,
    Member,
    Partnership,
    PartnerWindow,
    Visit,
)
from tests.conftest import Api, StatementCounter
from tests.factories import Build, gid

LONDON = ZoneInfo("Europe/London")
UTC = dt.UTC
HOME = (51.615, -0.176)  # the service user's home (tests/factories.py), in N12
HARINGEY = "E09000014"

PARTNER_FIELDS = """paRef district travelKm lastSyncAt coopName
  skills { skill expiresOn } localAuthority { gssCode name }
  partnership { id name baseUrl homeLocalAuthority { gssCode name } lastSyncAt }"""
QUERY = f"""query($visit: ID!, $first: Int, $partners: Boolean) {{
  coverCandidates(visitId: $visit, first: $first, includePartners: $partners) {{
    candidates {{ __typename source score distanceKm visitsToPersonLast8Weeks coversLast28Days
      parts {{ continuity regularPa sameCluster samePool travel contractHours fairness }}
      ... on LocalCoverCandidate {{ pa {{ name }} }}
      ... on PartnerCoverCandidate {{ {PARTNER_FIELDS} }} }}
    leftOut {{ source reason partnership {{ id name }} }} }} }}"""


def local(day: dt.date, hour: int, minute: int = 0) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(hour, minute), tzinfo=LONDON).astimezone(UTC)


@dataclass
class World:
    b: Build
    db: AsyncSession
    coordinator: Member
    cluster: Cluster
    su: Member
    other_su: Member
    day: dt.date
    visit: Visit  # 10:00 to 11:00 on `day`, needing cover
    partner: Partnership  # ACTIVE, granting AVAILABILITY and COVER

    async def window(
        self,
        pa_ref: str,
        *,
        partner: Partnership | None = None,
        start: dt.datetime | None = None,
        end: dt.datetime | None = None,
        district: str | None = "N12",
        travel_km: float = 10,
        skills: list[dict[str, str | None]] | None = None,
    ) -> None:
        """A synced free period of a partner's PA; by default one that passes every rule."""
        p = partner or self.partner
        self.db.add(
            PartnerWindow(
                partnership_id=p.id,
                ref=f"{pa_ref}-{uuid.uuid4().hex[:8]}",
                period=0,
                pa_ref=pa_ref,
                skills=skills
                if skills is not None
                else [{"skill": "personal-care", "expiresOn": None}],
                district=district,
                travel_km=Decimal(str(travel_km)),
                during=Range(start or local(self.day, 8), end or local(self.day, 14), bounds="[)"),
            )
        )
        await self.db.flush()

    async def exchange(
        self,
        pa_ref: str,
        start: dt.datetime,
        *,
        status: str = "CONFIRMED",
        partner: Partnership | None = None,
        visit: Visit | None = None,
        request: CoverRequest | None = None,
    ) -> CoverExchange:
        """One of our REQUESTING exchanges for a partner's PA."""
        return await self.b._add(
            CoverExchange(
                ref=uuid.uuid4(),
                partnership_id=(partner or self.partner).id,
                side="REQUESTING",
                status=status,
                during=Range(start, start + dt.timedelta(hours=1), bounds="[)"),
                district="N12",
                skills=["personal-care"],
                pa_ref=pa_ref,
                hold_expires_at=start,
                visit_id=visit.id if visit else None,
                cover_request_id=request.id if request else None,
                cancelled_by="US" if status == "CANCELLED" else None,
            )
        )


async def partnership(
    db: AsyncSession,
    name: str = "Lea Valley Home Care",
    *,
    status: str = "ACTIVE",
    scopes: tuple[str, ...] = ("AVAILABILITY", "COVER"),
) -> Partnership:
    slug = name.lower().replace(" ", "-")
    row = Partnership(
        base_url=f"https://{slug}.example.org",
        graphql_endpoint=f"https://{slug}.example.org/graphql",
        proposal_ref=uuid.uuid4(),
        direction="OUTGOING",
        status=status,
        requested_scopes=["AVAILABILITY", "COVER"],
        granted_scopes=list(scopes),
        suspended_by="US" if status == "SUSPENDED" else None,
        protocol_version="coopnet-federation/1",
        coop_name=name,
        home_la_code=HARINGEY,
        local_authorities=[{"gssCode": HARINGEY, "name": "Haringey"}],
        last_sync_at=dt.datetime(2026, 11, 1, 9, 30, tzinfo=UTC),
    )
    db.add(row)
    await db.flush()
    return row


@pytest.fixture
async def w(db: AsyncSession) -> World:
    b = Build(db)
    await b.las()
    await b.coop()
    coordinator = await b.worker("Cora Ordinator")
    cluster = await b.cluster("Finchley", support_worker=coordinator)
    su = await b.service_user("Ada User", cluster=cluster)
    other_su = await b.service_user("Bob Other", email="bob@example.org")
    day = dt.datetime.now(LONDON).date() + dt.timedelta(days=10)
    visit = await b.visit(su, None, local(day, 10), minutes=60, status="NEEDS_COVER")
    world = World(b, db, coordinator, cluster, su, other_su, day, visit, await partnership(db))
    await db.commit()
    return world


async def local_pa(w: World, name: str, *, cluster: Cluster | None = None) -> Member:
    """One of our PAs who passes every rule, about 1.7 km from the person."""
    m = await w.b.pa(name, cluster=cluster, skills=["personal-care"])
    await w.b.window(m, local(w.day, 8), hours=6)
    return m


async def ask(
    api: Api, w: World, *, first: int = 20, partners: bool | None = True, token: str | None = None
) -> dict[str, Any]:
    await w.db.commit()
    body = await api.query(
        QUERY,
        {"visit": gid("Visit", w.visit.id), "first": first, "partners": partners},
        token=token or api.token(Role.COORDINATOR, w.coordinator.id),
    )
    assert not body.get("errors"), body["errors"]
    answer: dict[str, Any] = body["data"]["coverCandidates"]
    return answer


def label(c: dict[str, Any]) -> str:
    return c["pa"]["name"] if c["__typename"] == "LocalCoverCandidate" else c["paRef"]


async def refs(api: Api, w: World) -> set[str]:
    answer = await ask(api, w, first=50)
    assert answer["leftOut"] == []
    return {c["paRef"] for c in answer["candidates"] if c["__typename"] == "PartnerCoverCandidate"}


def near(district: str, travel_km: float) -> float:
    """The travel part (weight 1) of a partner's PA in `district`, for the person's home."""
    centre = district_centroid(district)
    assert centre is not None
    return 1 - distance_km(centre, HOME) / travel_km


# --- one scale ------------------------------------------------------------------------------


async def test_partner_candidates_rank_with_ours_on_one_scale(api: Api, w: World) -> None:
    await local_pa(w, "Team Tess", cluster=w.cluster)  # 2 (cluster) + travel + 1 + 1
    await local_pa(w, "Stranger Stan")  # travel (about 0.83) + contract hours 1 + fairness 1
    await w.window("near-1", district="N12")  # samePool 1 + travel (about 0.99) + fairness 1
    await w.window("far-1", district="N17")  # samePool 1 + travel (about 0.25) + fairness 1
    answer = await ask(api, w)
    assert answer["leftOut"] == []
    found = answer["candidates"]
    assert [label(c) for c in found] == ["Team Tess", "near-1", "Stranger Stan", "far-1"]
    assert [c["score"] for c in found] == sorted((c["score"] for c in found), reverse=True)

    partner = found[1]
    assert partner["__typename"] == "PartnerCoverCandidate" and partner["source"] == "PARTNER"
    # The distance is from the centre of the PA's district to the person's home.
    centre = district_centroid("N12")
    assert centre is not None
    assert partner["distanceKm"] == pytest.approx(distance_km(centre, HOME))
    assert partner["parts"] == {
        "continuity": 0,
        "regularPa": 0,  # not one of the person's named PAs: they are our members
        "sameCluster": 0,  # not on our clusters' teams
        "samePool": 1,  # in a pool the partner shares with us
        "travel": pytest.approx(near("N12", 10)),
        "contractHours": 0,  # not shared
        "fairness": 1,
    }
    assert partner["score"] == pytest.approx(sum(partner["parts"].values()))
    assert (partner["visitsToPersonLast8Weeks"], partner["coversLast28Days"]) == (0, 0)
    # What it is and where it comes from: never one of our PAs.
    assert partner["paRef"] == "near-1" and "pa" not in partner
    assert (partner["district"], partner["travelKm"]) == ("N12", 10)
    assert partner["skills"] == [{"skill": "personal-care", "expiresOn": None}]
    assert partner["coopName"] == "Lea Valley Home Care"
    assert partner["localAuthority"] == {"gssCode": HARINGEY, "name": "Haringey"}
    assert partner["lastSyncAt"] == "2026-11-01T09:30:00+00:00"
    assert partner["partnership"] == {
        "id": gid("Partnership", w.partner.id),  # what requestPartnerCover takes
        "name": "Lea Valley Home Care",
        "baseUrl": "https://lea-valley-home-care.example.org",
        "homeLocalAuthority": {"gssCode": HARINGEY, "name": "Haringey"},
        "lastSyncAt": "2026-11-01T09:30:00+00:00",
    }
    assert found[3]["parts"]["travel"] == pytest.approx(near("N17", 10))

    # `first` cuts the merged list; without partners only ours come back.
    assert [label(c) for c in (await ask(api, w, first=2))["candidates"]] == [
        "Team Tess",
        "near-1",
    ]
    ours = await ask(api, w, partners=False)
    assert [label(c) for c in ours["candidates"]] == ["Team Tess", "Stranger Stan"]
    # null means true
    assert len((await ask(api, w, partners=None))["candidates"]) == 4


async def test_the_weights_are_ours_for_partner_candidates_too(api: Api, w: World) -> None:
    await local_pa(w, "Team Tess", cluster=w.cluster)
    await w.window("near-1", district="N12")
    await w.db.execute(
        update(Coop).values(cover_weights={"samePool": 5, "travel": 0, "fairness": "heavy"})
    )
    found = (await ask(api, w))["candidates"]
    assert [label(c) for c in found] == ["near-1", "Team Tess"]
    partner, team = found
    assert partner["parts"]["samePool"] == 5
    assert partner["parts"]["travel"] == 0  # a weight of 0 switches it off
    assert partner["parts"]["fairness"] == 1  # not a number: the default stays
    assert partner["score"] == pytest.approx(6)
    assert team["parts"]["travel"] == 0 and team["parts"]["sameCluster"] == 2
    # Continuity, weighted like ours.
    await w.db.execute(update(Coop).values(cover_weights={"continuity": 16}))
    past = await w.b.visit(w.su, None, dt.datetime.now(UTC) - dt.timedelta(days=7))
    await w.exchange("near-1", past.during.lower, visit=past)
    partner = next(c for c in (await ask(api, w))["candidates"] if c.get("paRef") == "near-1")
    assert partner["parts"]["continuity"] == pytest.approx(16 / 8)


# --- hard rules -------------------------------------------------------------------------------


async def test_each_hard_rule_excludes_a_partner_pa(api: Api, w: World) -> None:
    day = w.day
    skill = {"skill": "personal-care", "expiresOn": None}
    # Passing, some on the edge of a rule.
    await w.window("ok")
    await w.window("exactly", start=local(day, 10), end=local(day, 11))
    await w.window("skill lapses that day", skills=[{**skill, "expiresOn": day.isoformat()}])
    await w.window("more skills", skills=[{"skill": "hoist", "expiresOn": None}, skill])
    await w.window("no district", district=None)  # unknown location: rule not applied
    await w.window("district unknown to us", district="BT1")  # Belfast: not in the table
    await w.window("far but willing", district="EN1", travel_km=10)  # about 8.6 km
    await w.window("lower case district", district="n12")
    # Exchanges that do not hold the PA at that time.
    other = await w.b.visit(w.other_su, None, local(day, 10), status="NEEDS_COVER")
    await w.window("exchange declined")
    await w.exchange("exchange declined", local(day, 10), status="DECLINED", visit=other)
    await w.window("exchange cancelled")
    await w.exchange("exchange cancelled", local(day, 10), status="CANCELLED", visit=other)
    await w.window("exchange just before")
    await w.exchange("exchange just before", local(day, 9), visit=other)  # ends at 10:00
    elsewhere = await partnership(w.db, "Elsewhere Care")
    await w.window("same ref, other partner")
    await w.exchange("same ref, other partner", local(day, 10), partner=elsewhere, visit=other)

    # Failing exactly one rule each.
    await w.window("starts late", start=local(day, 10, 30))
    await w.window("ends early", start=local(day, 8), end=local(day, 10, 59))
    await w.window("no skills", skills=[])
    await w.window("other skill", skills=[{"skill": "hoist", "expiresOn": None}])
    yesterday = (day - dt.timedelta(days=1)).isoformat()
    await w.window("skill lapsed", skills=[{**skill, "expiresOn": yesterday}])
    await w.window("too far", district="EN1", travel_km=8)
    await w.window("far away", district="S1", travel_km=100)
    for status in ("HELD", "ACCEPTED", "CONFIRMED"):
        await w.window(f"exchange {status}")
        await w.exchange(f"exchange {status}", local(day, 10, 30), status=status, visit=other)

    assert await refs(api, w) == {
        "ok",
        "exactly",
        "skill lapses that day",
        "more skills",
        "no district",
        "district unknown to us",
        "far but willing",
        "lower case district",
        "exchange declined",
        "exchange cancelled",
        "exchange just before",
        "same ref, other partner",
    }
    found = {c["paRef"]: c for c in (await ask(api, w, first=50))["candidates"]}
    for unknown in ("no district", "district unknown to us"):
        assert found[unknown]["distanceKm"] is None
        assert found[unknown]["parts"]["travel"] == 0
    assert found["lower case district"]["distanceKm"] == found["ok"]["distanceKm"]


async def test_the_person_is_placed_by_their_postcode_district_when_home_is_unknown(
    api: Api, w: World
) -> None:
    await w.window("in N20", district="N20", travel_km=2)  # 1.6 km from home, 1.4 from N12
    await w.window("in N3", district="N3", travel_km=2)  # 2.06 km from home: out
    assert await refs(api, w) == {"in N20"}
    await w.db.execute(
        update(Member).where(Member.id == w.su.id).values(latitude=None, longitude=None)
    )
    n12, n20, n3 = (district_centroid(d) for d in ("N12", "N20", "N3"))
    assert n12 and n20 and n3
    assert distance_km(n3, n12) < 2 < distance_km(n3, HOME)
    assert await refs(api, w) == {"in N20", "in N3"}
    found = {c["paRef"]: c for c in (await ask(api, w))["candidates"]}
    assert found["in N3"]["distanceKm"] == pytest.approx(distance_km(n3, n12))
    # No location at all: the rule is not applied, and travel adds nothing.
    await w.db.execute(update(Member).where(Member.id == w.su.id).values(postcode=None))
    await w.window("in Sheffield", district="S1", travel_km=5)
    found = {c["paRef"]: c for c in (await ask(api, w))["candidates"]}
    assert set(found) == {"in N20", "in N3", "in Sheffield"}
    assert all(c["distanceKm"] is None and c["parts"]["travel"] == 0 for c in found.values())


# --- continuity and fairness from our exchanges -------------------------------------------------


async def test_continuity_and_fairness_come_from_confirmed_exchanges(api: Api, w: World) -> None:
    now = dt.datetime.now(UTC)
    await w.window("regular")
    await w.window("newcomer")

    async def covered(pa_ref: str, days_ago: float, **kw: Any) -> Visit:
        start = now - dt.timedelta(days=days_ago)
        visit = await w.b.visit(kw.pop("su", w.su), None, start)
        await w.exchange(pa_ref, start, visit=visit, **kw)
        return visit

    # Counted: confirmed, for this person, started in the last 8 weeks.
    await covered("regular", 3)
    await covered("regular", 50)
    filled = await covered("regular", 10)
    # Not counted for continuity.
    await covered("regular", 60)  # over 8 weeks ago
    await covered("regular", 5, su=w.other_su)  # another person
    await covered("regular", 4, status="DECLINED")
    await covered("regular", 4, status="CANCELLED")
    elsewhere = await partnership(w.db, "Elsewhere Care")
    await covered("regular", 4, partner=elsewhere)  # the same ref from another co-op
    future = await w.b.visit(w.su, None, now + dt.timedelta(days=2))
    await w.exchange("regular", future.during.lower, visit=future)  # not yet happened
    # Fairness: our cover requests this PA filled through an exchange, last 28 days.
    for visit, closed_days_ago in ((filled, 11), (await covered("regular", 5, su=w.other_su), 6)):
        request = await w.b._add(
            CoverRequest(
                visit_id=visit.id,
                reason="ABSENCE",
                status="FILLED",
                filled_by_partner=True,
                closed_at=now - dt.timedelta(days=closed_days_ago),
            )
        )
        await w.db.execute(
            update(CoverExchange)
            .where(CoverExchange.visit_id == visit.id)
            .values(cover_request_id=request.id)
        )
    old_visit = await covered("regular", 40)
    old = await w.b._add(
        CoverRequest(
            visit_id=old_visit.id,
            reason="ABSENCE",
            status="FILLED",
            filled_by_partner=True,
            closed_at=now - dt.timedelta(days=41),
        )
    )
    await w.db.execute(
        update(CoverExchange)
        .where(CoverExchange.visit_id == old_visit.id)
        .values(cover_request_id=old.id)
    )

    found = {c["paRef"]: c for c in (await ask(api, w))["candidates"]}
    regular, newcomer = found["regular"], found["newcomer"]
    assert regular["visitsToPersonLast8Weeks"] == 4  # 3, 10, 40 and 50 days ago
    assert regular["parts"]["continuity"] == pytest.approx(3 * 4 / 8)
    assert regular["coversLast28Days"] == 2
    assert regular["parts"]["fairness"] == pytest.approx(1 / 3)
    assert (newcomer["visitsToPersonLast8Weeks"], newcomer["coversLast28Days"]) == (0, 0)
    assert newcomer["parts"]["continuity"] == 0 and newcomer["parts"]["fairness"] == 1
    assert regular["score"] > newcomer["score"]


# --- which partnerships ---------------------------------------------------------------------


async def test_only_active_partnerships_granting_cover_and_availability_count(
    api: Api, w: World
) -> None:
    await w.window("active")
    for name, status, scopes in (
        ("Suspended Care", "SUSPENDED", ("AVAILABILITY", "COVER")),
        ("Ended Care", "ENDED", ()),
        ("Proposed Care", "PROPOSED", ()),
        ("Availability Only", "ACTIVE", ("AVAILABILITY",)),
        ("Cover Only", "ACTIVE", ("COVER",)),
    ):
        row = await partnership(w.db, name, status=status, scopes=scopes)
        await w.window(name, partner=row)
    assert await refs(api, w) == {"active"}
    # Suspending the one that counts takes its PAs out at once (before any sync).
    await w.db.execute(
        update(Partnership)
        .where(Partnership.id == w.partner.id)
        .values(status="SUSPENDED", suspended_by="PARTNER")
    )
    assert await refs(api, w) == set()


# --- a source left out ----------------------------------------------------------------------


async def test_a_partner_whose_search_fails_is_left_out_and_named(api: Api, w: World) -> None:
    await local_pa(w, "Team Tess", cluster=w.cluster)
    await w.window("fine")
    broken = await partnership(w.db, "Broken Care")
    # Stored data the search cannot read (the sync never stores such a date).
    await w.window("odd", partner=broken, skills=[{"skill": "personal-care", "expiresOn": "soon"}])
    answer = await ask(api, w)
    assert [label(c) for c in answer["candidates"]] == ["Team Tess", "fine"]
    assert answer["leftOut"] == [
        {
            "source": "PARTNER",
            "reason": "FAILED",
            "partnership": {"id": gid("Partnership", broken.id), "name": "Broken Care"},
        }
    ]


# --- cost -----------------------------------------------------------------------------------


async def test_statement_count_does_not_grow_with_partner_candidates(
    api: Api, w: World, sql_counter: StatementCounter
) -> None:
    admin = api.token(Role.ADMIN)
    counts: list[tuple[int, int]] = []
    for batch in range(3):
        await local_pa(w, f"PA {batch}", cluster=w.cluster)
        for i in range(4):
            await w.window(f"p{batch}-{i}", district="N20")
        await w.db.commit()
        sql_counter.count = 0
        body = await api.query(
            QUERY,
            {"visit": gid("Visit", w.visit.id), "first": 50, "partners": True},
            token=admin,
        )
        assert len(body["data"]["coverCandidates"]["candidates"]) == 5 * (batch + 1)
        counts.append((sql_counter.count, body["extensions"]["sqlStatements"]))
    # The visit (with the partners and weights), our search, the partner's search, our PAs.
    assert counts == [(4, 4)] * 3, sql_counter.statements
    # One more per partner co-op, whatever its number of PAs; none without partners.
    second = await partnership(w.db, "Second Co-op")
    for i in range(6):
        await w.window(f"s{i}", partner=second)
    await w.db.commit()
    sql_counter.count = 0
    body = await api.query(QUERY, {"visit": gid("Visit", w.visit.id), "first": 50}, token=admin)
    assert len(body["data"]["coverCandidates"]["candidates"]) == 21
    assert sql_counter.count == 5, sql_counter.statements
    sql_counter.count = 0
    body = await api.query(
        QUERY, {"visit": gid("Visit", w.visit.id), "first": 50, "partners": False}, token=admin
    )
    assert len(body["data"]["coverCandidates"]["candidates"]) == 3
    assert sql_counter.count == 3, sql_counter.statements
