"""Expansion opportunities (care/expansion.py) through the API: the figures on constructed
data, exact; who may ask and what a coordinator sees; the clusters partners told us of;
and the widening fix (a coordinator may not open a cluster in another local authority to
see its referrals)."""

from __future__ import annotations

import asyncio
import datetime as dt
import math
import uuid
from decimal import ROUND_HALF_UP, Decimal
from statistics import median
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import Range
from sqlalchemy.ext.asyncio import AsyncSession

from care.enums import PartnerScope, PartnershipStatus, Role
from care.geography import EARTH_RADIUS_KM, distance_km, district_centroid
from care.models import (
    Absence,
    AvailabilityWindow,
    Cluster,
    LocalAuthority,
    Member,
    PaProfile,
    PartnerCluster,
    Partnership,
    PartnerWindow,
    PeerDelivery,
    Referral,
)
from care.viewer import Viewer
from federation.partners import forget_partner_data
from schema import create_schema
from schema.context import Context, Limits
from tests.conftest import Api, StatementCounter
from tests.factories import BARNET, ENFIELD, Build, at, gid, wait_for_lock_wait

FAR = "E08000025"  # Birmingham: no neighbour of Barnet or Enfield

OPPORTUNITIES = """query($la: String!, $weeks: Int) {
  expansionOpportunities(localAuthority: $la, horizonWeeks: $weeks) {
    district peopleWaiting hoursWanted needs { need people } ownPas ownHours partnerPas
    partnerHours medianDistanceKm ourClusterHere partnersHere score } }"""
PARTNER_CLUSTERS = """query($la: String) { partnerClusters(localAuthority: $la) {
  ref name localAuthority district openedAt partnerName partnerBaseUrl } }"""
CREATE = """mutation($input: CreateClusterInput!) { createCluster(input: $input) {
  cluster { id localAuthority { gssCode } } errors { field code } } }"""


def _north(point: tuple[float, float], km: float) -> tuple[float, float]:
    """A point `km` due north (along the meridian: the haversine distance is exactly km)."""
    return point[0] + km / (EARTH_RADIUS_KM * math.pi / 180), point[1]


def _c(district: str) -> tuple[float, float]:
    found = district_centroid(district)
    assert found is not None
    return found


def _r(value: float, places: str = "0.01") -> float:
    return float(Decimal(repr(value)).quantize(Decimal(places), rounding=ROUND_HALF_UP))


async def _pa(
    db: AsyncSession,
    name: str,
    *,
    home: tuple[float, float] | None,
    postcode: str = "N1 1AA",
    travel_km: float,
    active: bool = True,
) -> Member:
    member = Member(
        name=name,
        membership_class="WORKER",
        postcode=postcode,
        latitude=home[0] if home else None,
        longitude=home[1] if home else None,
        active=active,
    )
    db.add(member)
    await db.flush()
    db.add(
        PaProfile(
            member_id=member.id,
            hourly_pay_pence=1300,
            max_travel_km=Decimal(str(travel_km)),
            dbs_checked_on=dt.date.today(),
        )
    )
    await db.flush()
    return member


def _window(pa: Member, start: dt.datetime, hours: float) -> AvailabilityWindow:
    return AvailabilityWindow(
        pa_id=pa.id, during=Range(start, start + dt.timedelta(hours=hours), bounds="[)")
    )


def _referral(
    la: str, district: str, hours: str, needs: list[str], status: str = "WAITING"
) -> Referral:
    return Referral(
        la_code=la,
        postcode_district=district,
        hours_per_week=Decimal(hours),
        needs=needs,
        referred_on=dt.date.today() - dt.timedelta(days=3),
        status=status,
    )


def _partner_window(
    partnership: Partnership,
    ref: str,
    pa_ref: str,
    district: str,
    travel: str,
    start: dt.datetime,
    hours: float,
) -> PartnerWindow:
    return PartnerWindow(
        partnership_id=partnership.id,
        ref=ref,
        period=0,
        pa_ref=pa_ref,
        skills=[],
        district=district,
        travel_km=Decimal(travel),
        during=Range(start, start + dt.timedelta(hours=hours), bounds="[)"),
    )


def _partnership(url: str, status: PartnershipStatus, name: str) -> Partnership:
    return Partnership(
        base_url=url,
        graphql_endpoint=f"{url}/graphql",
        proposal_ref=uuid.uuid4(),
        direction="OUTGOING",
        status=status.value,
        requested_scopes=["AVAILABILITY", "COVER"],
        granted_scopes=["AVAILABILITY", "COVER"],
        suspended_by="US" if status is PartnershipStatus.SUSPENDED else None,
        protocol_version="coopnet-federation/1",
        coop_name=name,
    )


@pytest.fixture
async def world(db: AsyncSession) -> dict[str, Any]:
    """Waiting demand in Enfield (EN1 x2, N13, and ZZ9, a district with no centroid), one
    referral in Barnet (N12, where our cluster is) and one in Birmingham; own PAs and
    partner PAs placed at known distances."""
    b = Build(db)
    await b.las()
    db.add(LocalAuthority(gss_code=FAR, name="Birmingham"))
    await b.coop()
    coordinator = await b.worker("Cora Coordinator")
    far = await b.worker("Fay Far")
    cluster = await b.cluster(support_worker=coordinator)  # Barnet, N12, circle 3 km
    await b.cluster("Brum", support_worker=far, la=FAR)
    su = await b.service_user(cluster=cluster)

    en1 = _c("EN1")
    # PA1: 2 km north of EN1's centre, travels 3 km: reaches EN1 only. Two 4-hour windows,
    # one hour of which a visit takes: 7 free hours in 4 weeks.
    pa1 = await _pa(db, "Pat One", home=_north(en1, 2.0), travel_km=3)
    # PA2: no position; home is the centroid of N13 (their postcode's district); travels
    # 10 km: reaches EN1 and N13. One 6-hour window; a cancelled visit takes nothing.
    pa2 = await _pa(db, "Pat Two", home=None, postcode="n13 4ab", travel_km=10)
    # Not counted: inactive; no windows; windows only after the horizon; out of range.
    pa3 = await _pa(db, "Pat Gone", home=en1, travel_km=10, active=False)
    await _pa(db, "Pat Idle", home=en1, travel_km=10)
    pa5 = await _pa(db, "Pat Later", home=en1, travel_km=10)
    pa6 = await _pa(db, "Pat Far", home=_north(en1, 30.0), travel_km=5)
    # PA7: fully taken (an absence over their only window): in reach, but 0 free hours.
    pa7 = await _pa(db, "Pat Off", home=en1, travel_km=10)
    db.add_all(
        [
            _window(pa1, at(days=1), 4),
            _window(pa1, at(days=2), 4),
            _window(pa2, at(days=3), 6),
            _window(pa3, at(days=1), 8),
            _window(pa5, at(days=40), 8),
            _window(pa6, at(days=1), 8),
            _window(pa7, at(days=5), 3),
        ]
    )
    await db.flush()
    await b.visit(su, pa1, at(days=1, hours=1), minutes=60)
    await b.visit(su, pa2, at(days=3, hours=1), minutes=120, status="CANCELLED")
    db.add(
        Absence(
            pa_id=pa7.id,
            kind="SICKNESS",
            during=Range(at(days=4), at(days=6), bounds="[)"),
        )
    )

    lea = _partnership("https://lea.example", PartnershipStatus.ACTIVE, "Lea Valley")
    gone = _partnership("https://gone.example", PartnershipStatus.SUSPENDED, "Gone Co-op")
    db.add_all([lea, gone])
    await db.flush()
    db.add_all(
        [
            # r1 lives in EN2 and travels 8 km: two 3-hour periods.
            _partner_window(lea, "w1", "r1", "EN2", "8", at(days=2), 3),
            _partner_window(lea, "w2", "r1", "EN2", "8", at(days=9), 3),
            # r2 lives in N13 and travels 1 km: reaches N13 only.
            _partner_window(lea, "w3", "r2", "N13", "1", at(days=4), 4),
            # After the horizon: not counted.
            _partner_window(lea, "w4", "r3", "EN1", "5", at(days=35), 4),
            # A suspended partnership's windows: not counted.
            _partner_window(gone, "w5", "g1", "EN1", "5", at(days=2), 4),
            PartnerCluster(
                partnership_id=lea.id,
                ref="c1",
                name="Edmonton Green",
                la_code=ENFIELD,
                district="EN1",
                opened_at=at(days=-1),
            ),
            PartnerCluster(
                partnership_id=gone.id,
                ref="c2",
                name="Old Place",
                la_code=ENFIELD,
                district="N13",
                opened_at=at(days=-2),
            ),
        ]
    )
    db.add_all(
        [
            _referral(ENFIELD, "EN1", "10", ["dementia", "moving-and-handling"]),
            _referral(ENFIELD, "EN1", "5.5", ["dementia"]),
            _referral(ENFIELD, "EN1", "20", ["hoist"], status="PLACED"),
            _referral(ENFIELD, "N13", "8", ["hoist"]),
            _referral(ENFIELD, "ZZ9", "3", []),
            _referral(BARNET, "N12", "4", ["dementia"]),
            _referral(FAR, "B1", "6", ["moving-and-handling"]),
        ]
    )
    await db.commit()
    return {
        "coordinator": coordinator.id,
        "far": far.id,
        "pa": pa1.id,
        "su": su.id,
        "lea": lea.id,
        "gone": gone.id,
    }


def _expected_enfield() -> list[dict[str, Any]]:
    en1, n13, en2 = _c("EN1"), _c("N13"), _c("EN2")
    n13_en1, en2_en1, en2_n13 = distance_km(n13, en1), distance_km(en2, en1), distance_km(en2, n13)
    assert n13_en1 <= 10 and en2_en1 <= 8 and en2_n13 <= 8  # the setup's premises
    assert distance_km(_north(en1, 2.0), n13) > 3 and distance_km(n13, en1) > 1

    def score(own: float, partner: float, wanted: float, km: float) -> float:
        return min(1.0, (own + 0.5 * partner) / wanted) * (1 - min(km, 10) / 20)

    en1_median = median([2.0, n13_en1, en2_en1])
    n13_median = median([0.0, 0.0, en2_n13])
    return [
        {
            "district": "N13",
            "peopleWaiting": 1,
            "hoursWanted": 8.0,
            "needs": [{"need": "hoist", "people": 1}],
            "ownPas": 1,
            "ownHours": 1.5,  # PA2: 6 h / 4 weeks
            "partnerPas": 2,
            "partnerHours": 2.5,  # r1: 6 h, r2: 4 h, over 4 weeks
            "medianDistanceKm": _r(n13_median),
            "ourClusterHere": False,
            "partnersHere": [],  # the suspended partner's cluster is not "here"
            "score": _r(score(1.5, 2.5, 8, n13_median), "0.0001"),
        },
        {
            "district": "EN1",
            "peopleWaiting": 2,
            "hoursWanted": 15.5,
            "needs": [
                {"need": "dementia", "people": 2},
                {"need": "moving-and-handling", "people": 1},
            ],
            "ownPas": 2,
            "ownHours": 3.25,  # PA1: (8 - 1) / 4; PA2: 6 / 4
            "partnerPas": 1,
            "partnerHours": 1.5,
            "medianDistanceKm": _r(en1_median),
            "ourClusterHere": False,
            "partnersHere": ["Lea Valley"],
            "score": _r(score(3.25, 1.5, 15.5, en1_median), "0.0001"),
        },
        {
            "district": "ZZ9",  # no centroid: no one in reach
            "peopleWaiting": 1,
            "hoursWanted": 3.0,
            "needs": [],
            "ownPas": 0,
            "ownHours": 0.0,
            "partnerPas": 0,
            "partnerHours": 0.0,
            "medianDistanceKm": None,
            "ourClusterHere": False,
            "partnersHere": [],
            "score": 0.0,
        },
    ]


async def test_figures_and_ranking_exact(
    api: Api, world: dict[str, Any], sql_counter: StatementCounter
) -> None:
    sql_counter.count = 0
    data = await api.data(OPPORTUNITIES, {"la": ENFIELD}, as_=(Role.ADMIN, None))
    assert sql_counter.count == 2, sql_counter.statements
    expected = _expected_enfield()
    assert expected[0]["score"] > expected[1]["score"] > 0  # the ranking the test checks
    assert data["expansionOpportunities"] == expected


async def test_a_district_we_already_serve_comes_after(
    api: Api, db: AsyncSession, world: dict[str, Any]
) -> None:
    # One more district in Barnet, not ours: it ranks before N12 (our cluster's), whatever
    # N12's score.
    db.add(_referral(BARNET, "EN4", "1", []))
    await db.commit()
    data = await api.data(OPPORTUNITIES, {"la": BARNET}, as_=(Role.ADMIN, None))
    rows = data["expansionOpportunities"]
    assert [(r["district"], r["ourClusterHere"]) for r in rows] == [
        ("EN4", False),
        ("N12", True),
    ]


async def test_horizon_weeks_scales_hours_and_bad_values_give_nothing(
    api: Api, world: dict[str, Any]
) -> None:
    # Over 8 weeks r1's window on day 35 (r3, in EN1, travel 5 km) comes in, and every
    # hour a week halves; PA5's window on day 40 too.
    data = await api.data(OPPORTUNITIES, {"la": ENFIELD, "weeks": 8}, as_=(Role.ADMIN, None))
    en1 = next(r for r in data["expansionOpportunities"] if r["district"] == "EN1")
    assert en1["ownPas"] == 3 and en1["ownHours"] == _r((7 + 6 + 8) / 8)
    assert en1["partnerPas"] == 2 and en1["partnerHours"] == _r((6 + 4) / 8)
    for weeks in (0, 13, -1):
        bad = await api.data(OPPORTUNITIES, {"la": ENFIELD, "weeks": weeks}, as_=(Role.ADMIN, None))
        assert bad["expansionOpportunities"] == []


async def test_coordinators_see_only_districts_of_referrals_they_may_see(
    api: Api, world: dict[str, Any]
) -> None:
    near = (Role.COORDINATOR, world["coordinator"])
    far = (Role.COORDINATOR, world["far"])
    # Barnet's coordinator: Barnet and neighbouring Enfield, not Birmingham.
    enfield = await api.data(OPPORTUNITIES, {"la": ENFIELD}, as_=near)
    assert enfield["expansionOpportunities"] == _expected_enfield()
    barnet = await api.data(OPPORTUNITIES, {"la": BARNET}, as_=near)
    assert [r["district"] for r in barnet["expansionOpportunities"]] == ["N12"]
    brum = await api.data(OPPORTUNITIES, {"la": FAR}, as_=near)
    assert brum["expansionOpportunities"] == []
    # Birmingham's coordinator: only Birmingham's district.
    for la in (ENFIELD, BARNET, "E09999999", "junk"):
        none = await api.data(OPPORTUNITIES, {"la": la}, as_=far)
        assert none["expansionOpportunities"] == [], la
    own = await api.data(OPPORTUNITIES, {"la": FAR.lower()}, as_=far)
    assert [r["district"] for r in own["expansionOpportunities"]] == ["B1"]


async def test_no_one_else_may_ask(api: Api, app: Any, world: dict[str, Any]) -> None:
    tokens = {
        "pa": api.token(Role.PA, world["pa"]),
        "service_user": api.token(Role.SERVICE_USER, world["su"]),
        "carer": api.token(Role.CARER, world["su"]),
        "analyst": api.tokens.issue(Role.LA_ANALYST, la_code=ENFIELD),
    }
    for name, token in tokens.items():
        for query, variables in ((OPPORTUNITIES, {"la": ENFIELD}), (PARTNER_CLUSTERS, {})):
            assert await api.refused(query, variables, token=token) == "FORBIDDEN", name
    assert await api.refused(OPPORTUNITIES, {"la": ENFIELD}) == "UNAUTHENTICATED"
    assert await api.refused(PARTNER_CLUSTERS, {}) == "UNAUTHENTICATED"
    # A partner instance, even with every scope (schema level, as the door builds it).
    partner = Viewer(
        partner="https://lea.example",
        partnership_id=world["lea"],
        partnership_status=PartnershipStatus.ACTIVE.value,
        scopes=frozenset(s.value for s in PartnerScope),
    )
    for query in (
        '{ expansionOpportunities(localAuthority: "E09000010") { district } }',
        "{ partnerClusters { ref } }",
    ):
        async with app.state.sessions() as session:
            result = await create_schema().execute(
                query, context_value=Context(session=session, viewer=partner, limits=Limits())
            )
        assert result.errors and not any((result.data or {}).values()), query


async def test_partner_clusters_listed_and_forgotten_with_the_partnership(
    api: Api, db: AsyncSession, world: dict[str, Any]
) -> None:
    near = (Role.COORDINATOR, world["coordinator"])
    listed = await api.data(PARTNER_CLUSTERS, {"la": ENFIELD}, as_=near)
    assert [(c["ref"], c["partnerName"], c["district"]) for c in listed["partnerClusters"]] == [
        ("c1", "Lea Valley", "EN1"),
        ("c2", "Gone Co-op", "N13"),  # suspended: kept until the partnership ends
    ]
    assert (await api.data(PARTNER_CLUSTERS, {"la": BARNET}, as_=near))["partnerClusters"] == []
    await forget_partner_data(db, world["lea"])  # what ending the partnership does
    await db.commit()
    left = await api.data(PARTNER_CLUSTERS, {}, as_=(Role.ADMIN, None))
    assert [c["ref"] for c in left["partnerClusters"]] == ["c2"]
    en1 = await api.data(OPPORTUNITIES, {"la": ENFIELD}, as_=(Role.ADMIN, None))
    assert all(r["partnersHere"] == [] for r in en1["expansionOpportunities"])


# --- the widening fix ------------------------------------------------------------------------


async def _clusters(db: AsyncSession) -> int:
    await db.rollback()
    return int(await db.scalar(select(func.count()).select_from(Cluster)) or 0)


def _new(la: str, status: str = "ACTIVE") -> dict[str, Any]:
    return {
        "input": {
            "name": "Fresh",
            "kind": "GEOGRAPHIC",
            "localAuthority": la,
            "postcodeDistricts": ["B1"],
            "status": status,
        }
    }


async def test_a_coordinator_cannot_widen_their_area_by_opening_a_cluster(
    api: Api, db: AsyncSession, world: dict[str, Any]
) -> None:
    near = (Role.COORDINATOR, world["coordinator"])
    before = await _clusters(db)
    for la in (FAR, ENFIELD):  # far away, and next door
        refused = await api.data(CREATE, _new(la), as_=near)
        assert refused["createCluster"] == {
            "cluster": None,
            "errors": [{"field": "localAuthority", "code": "FORBIDDEN"}],
        }
    assert await _clusters(db) == before
    # Still nothing of Birmingham's demand.
    brum = await api.data(OPPORTUNITIES, {"la": FAR}, as_=near)
    assert brum["expansionOpportunities"] == []
    referrals = await api.data(
        "query($la: String) { referrals(localAuthority: $la) { totalCount } }",
        {"la": FAR},
        as_=near,
    )
    assert referrals["referrals"]["totalCount"] == 0
    # Where they already run a cluster, they may open another.
    allowed = await api.data(CREATE, _new(BARNET), as_=near)
    assert allowed["createCluster"]["errors"] == []
    assert await _clusters(db) == before + 1


async def test_an_admin_opens_the_first_cluster_elsewhere(
    api: Api, db: AsyncSession, world: dict[str, Any]
) -> None:
    coordinator = world["coordinator"]
    data = await api.data(
        CREATE,
        {"input": {**_new(FAR)["input"], "supportWorkerId": gid("CoopMember", coordinator)}},
        as_=(Role.ADMIN, None),
    )
    assert data["createCluster"]["errors"] == []
    # The admin's decision widens the coordinator's area: Birmingham's demand shows.
    near = (Role.COORDINATOR, world["coordinator"])
    brum = await api.data(OPPORTUNITIES, {"la": FAR}, as_=near)
    assert [r["district"] for r in brum["expansionOpportunities"]] == ["B1"]


async def test_a_closed_cluster_gives_no_right_to_open_one(
    api: Api, db: AsyncSession, world: dict[str, Any]
) -> None:
    far = (Role.COORDINATOR, world["far"])
    closed = await api.data(
        "mutation($id: ID!) { closeCluster(id: $id) { errors { code } } }",
        {"id": await _cluster_gid(db, "Brum")},
        as_=far,
    )
    assert closed["closeCluster"]["errors"] == []
    refused = await api.data(CREATE, _new(FAR), as_=far)
    assert refused["createCluster"]["errors"] == [{"field": "localAuthority", "code": "FORBIDDEN"}]


async def _cluster_gid(db: AsyncSession, name: str) -> str:
    await db.rollback()
    pk = await db.scalar(select(Cluster.id).where(Cluster.name == name))
    assert pk is not None
    return gid("Cluster", pk)


# --- the demo data -----------------------------------------------------------------------

README_EXAMPLE = """{ expansionOpportunities(localAuthority: "E09000010") {
    district peopleWaiting hoursWanted needs { need people } ownPas ownHours
    partnerPas partnerHours medianDistanceKm ourClusterHere partnersHere score } }"""


@pytest.mark.parametrize(
    "coop,la,districts",
    [
        ("demo", ENFIELD, ["EN2", "EN1"]),  # the README's example
        ("demo", BARNET, ["EN5"]),  # served already by the Chipping Barnet cluster
        ("neighbour", "E09000014", ["N4", "N17"]),  # Lea Valley at home, Haringey
        ("neighbour", ENFIELD, ["N18", "N9"]),  # and across the boundary
    ],
)
async def test_the_demo_coops_have_opportunities(
    api: Api,
    db: AsyncSession,
    sql_counter: StatementCounter,
    coop: str,
    la: str,
    districts: list[str],
) -> None:
    from care.demo import load_coop

    assert await load_coop(db, coop)
    await db.commit()
    query = README_EXAMPLE.replace("E09000010", la)
    sql_counter.count = 0
    rows = (await api.data(query, as_=(Role.ADMIN, None)))["expansionOpportunities"]
    assert [r["district"] for r in rows] == districts
    assert all(r["ownPas"] > 0 and r["score"] > 0 for r in rows)
    # The area check and the one statement, whatever the number of districts or PAs.
    assert sql_counter.count == 2, sql_counter.statements


# --- the notice, as the receiving schema takes it ----------------------------------------

NOTICE = """mutation($key: String!, $cluster: PeerClusterInput!) {
  peerClusterOpened(idempotencyKey: $key, cluster: $cluster) {
    stored errors { field code } } }"""


async def _as_partner(
    app: Any, partnership_id: int, scopes: tuple[str, ...], variables: dict[str, Any]
) -> Any:
    partner = Viewer(
        partner="https://lea.example",
        partnership_id=partnership_id,
        partnership_status=PartnershipStatus.ACTIVE.value,
        scopes=frozenset(scopes),
    )
    async with app.state.sessions() as session:
        return await create_schema().execute(
            NOTICE,
            variable_values=variables,
            context_value=Context(session=session, viewer=partner, limits=Limits()),
        )


def _cluster(**kw: Any) -> dict[str, Any]:
    return {
        "ref": "x1",
        "name": "Ponders End",
        "localAuthority": ENFIELD,
        "district": "en3 4aa",
        "openedAt": "2026-11-20T09:00:00Z",
    } | kw


async def _partner_clusters(db: AsyncSession) -> list[tuple[str, str, str | None]]:
    await db.rollback()
    rows = await db.execute(
        select(PartnerCluster.ref, PartnerCluster.name, PartnerCluster.district).order_by(
            PartnerCluster.id
        )
    )
    return [tuple(r) for r in rows.all()]  # type: ignore[misc]


async def test_a_notice_is_stored_once_per_key(
    app: Any, db: AsyncSession, world: dict[str, Any]
) -> None:
    before = await _partner_clusters(db)
    key = str(uuid.uuid4())
    first = await _as_partner(app, world["lea"], ("COVER",), {"key": key, "cluster": _cluster()})
    assert first.errors is None and first.data == {
        "peerClusterOpened": {"stored": True, "errors": []}
    }
    assert await _partner_clusters(db) == [*before, ("x1", "Ponders End", "EN3")]
    again = await _as_partner(
        app, world["lea"], ("COVER",), {"key": key, "cluster": _cluster(name="Changed")}
    )
    assert again.data == {"peerClusterOpened": {"stored": True, "errors": []}}
    assert await _partner_clusters(db) == [*before, ("x1", "Ponders End", "EN3")]
    # A new key with the same ref updates the cluster (opened again, renamed).
    renamed = await _as_partner(
        app,
        world["lea"],
        ("COVER",),
        {"key": str(uuid.uuid4()), "cluster": _cluster(name="Renamed")},
    )
    assert renamed.data == {"peerClusterOpened": {"stored": True, "errors": []}}
    assert await _partner_clusters(db) == [*before, ("x1", "Renamed", "EN3")]


@pytest.mark.parametrize(
    "key,change,field",
    [
        ("not-a-uuid", {}, "idempotencyKey"),
        (None, {"district": "N1 2"}, "district"),
        (None, {"localAuthority": "Enfield"}, "localAuthority"),
        (None, {"name": "  "}, "name"),
        (None, {"ref": "r" * 101}, "ref"),
        (None, {"openedAt": "2026-11-20T09:00:00"}, "openedAt"),
    ],
)
async def test_a_bad_notice_is_refused_and_stores_nothing(
    app: Any,
    db: AsyncSession,
    world: dict[str, Any],
    key: str | None,
    change: dict[str, Any],
    field: str,
) -> None:
    before = await _partner_clusters(db)
    variables = {"key": key or str(uuid.uuid4()), "cluster": _cluster(**change)}
    result = await _as_partner(app, world["lea"], ("COVER",), variables)
    if result.errors:  # a value GraphQL itself refuses (a DateTime without an offset)
        assert field == "openedAt", result.errors
    else:
        payload = result.data["peerClusterOpened"]
        assert payload["stored"] is False
        assert {"field": field, "code": "INVALID"} in payload["errors"]
    assert await _partner_clusters(db) == before


async def test_a_partner_without_cover_may_not_send_it(
    app: Any, db: AsyncSession, world: dict[str, Any]
) -> None:
    before = await _partner_clusters(db)
    result = await _as_partner(
        app, world["lea"], ("AVAILABILITY",), {"key": str(uuid.uuid4()), "cluster": _cluster()}
    )
    assert result.errors and result.errors[0].extensions["code"] == "FORBIDDEN"
    assert (result.data or {}).get("peerClusterOpened") is None
    assert await _partner_clusters(db) == before


async def test_members_may_not_send_it(api: Api, world: dict[str, Any]) -> None:
    variables = {"key": str(uuid.uuid4()), "cluster": _cluster()}
    for role, member in ((Role.ADMIN, None), (Role.COORDINATOR, world["coordinator"])):
        assert await api.refused(NOTICE, variables, as_=(role, member)) == "FORBIDDEN"


async def test_a_copy_applied_meanwhile_gets_the_first_answer(
    app: Any, db: AsyncSession, world: dict[str, Any]
) -> None:
    """Two copies at once: the first (here, a transaction left open) holds the key; the
    second waits for it, finds the key taken, rolls back its change and answers as the
    first did."""
    before = await _partner_clusters(db)
    key = uuid.uuid4()
    db.add(
        PeerDelivery(
            instance="https://lea.example",
            idempotency_key=key,
            operation="peerClusterOpened",
            answer={"stored": True},
        )
    )
    await db.flush()
    second = asyncio.create_task(
        _as_partner(
            app, world["lea"], ("COVER",), {"key": str(key), "cluster": _cluster(ref="late")}
        )
    )
    await wait_for_lock_wait(app.state.engine)
    await db.commit()
    result = await second
    assert result.errors is None
    assert result.data == {"peerClusterOpened": {"stored": True, "errors": []}}
    assert await _partner_clusters(db) == before  # the copy's cluster was rolled back
