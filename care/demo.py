"""A deterministic demo co-operative, for development, screenshots and trying the API.

`load_demo` builds "Northside Care Co-operative", a multi-stakeholder co-op in Barnet
(outer north London) that has expanded across the boundary into Enfield: four clusters,
their service users, carers and PA teams, two pools, PA availability and eight weeks of
rota (four past, four ahead of `today`). Every person is fictional; phone numbers are in
Ofcom's drama range and e-mail addresses use the reserved example.org domain.

All randomness comes from one `random.Random(2026)`, consumed in a fixed order, so the
same `today` on an empty database always gives the same rows and the same ids. The loader
only adds rows to the session (flushing where it needs generated ids); the caller commits.
"""

from __future__ import annotations

import datetime as dt
import math
import random
import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import Range
from sqlalchemy.ext.asyncio import AsyncSession

from care.enums import (
    AbsenceKind,
    ClusterKind,
    ClusterStatus,
    CoopKind,
    CqcStatus,
    Funding,
    MembershipClass,
    Role,
    VisitStatus,
)
from care.models import (
    AvailabilityWindow,
    CarerLink,
    Cluster,
    ClusterPa,
    ClusterServiceUser,
    Coop,
    LocalAuthority,
    LocalAuthorityNeighbour,
    Member,
    PaProfile,
    PaSkill,
    Pool,
    PoolCluster,
    PoolPa,
    Referral,
    RegularPa,
    ServiceUserProfile,
    Visit,
    WeeklyAvailability,
)
from care.services.absences import NewAbsence, record_absence
from care.viewer import Viewer

SEED = 2026
LONDON = ZoneInfo("Europe/London")
HORIZON_DAYS = 28  # rota and availability run from today - 28 days to today + 28 days
# Not a database rule: the gap a PA needs to get from one visit to the next.
TRAVEL_GAP = dt.timedelta(minutes=15)

# --- Places ---------------------------------------------------------------------------

BARNET, BRENT, CAMDEN = "E09000003", "E09000005", "E09000007"
ENFIELD, HARINGEY, HARROW = "E09000010", "E09000014", "E09000015"

LOCAL_AUTHORITIES = {
    BARNET: "Barnet",
    BRENT: "Brent",
    CAMDEN: "Camden",
    ENFIELD: "Enfield",
    HARINGEY: "Haringey",
    HARROW: "Harrow",
}

# Real adjacencies among these boroughs.
NEIGHBOURS = [
    (BARNET, ENFIELD),
    (BARNET, HARINGEY),
    (BARNET, HARROW),
    (BARNET, BRENT),
    (BARNET, CAMDEN),
    (ENFIELD, HARINGEY),
    (HARINGEY, CAMDEN),
    (BRENT, HARROW),
    (BRENT, CAMDEN),
]

# Approximate centres of the postcode districts people live in (latitude, longitude).
DISTRICTS: dict[str, tuple[float, float]] = {
    "EN4": (51.6450, -0.1600),  # Cockfosters, East Barnet
    "EN5": (51.6500, -0.2050),  # Chipping Barnet
    "N2": (51.5900, -0.1700),  # East Finchley
    "N3": (51.6000, -0.1930),  # Finchley Central
    "N11": (51.6150, -0.1400),  # Friern Barnet, New Southgate
    "N12": (51.6130, -0.1770),  # North Finchley
    "N13": (51.6190, -0.1050),  # Palmers Green
    "N14": (51.6350, -0.1280),  # Southgate
    "N20": (51.6300, -0.1750),  # Whetstone, Totteridge
    "N21": (51.6350, -0.1000),  # Winchmore Hill
    "NW4": (51.5880, -0.2270),  # Hendon
    "NW7": (51.6150, -0.2400),  # Mill Hill
}
POSTCODE_LETTERS = "ABDEFGHJLNPQRSTUWXYZ"  # letters used in the inward code


@dataclass(frozen=True)
class ClusterSpec:
    name: str
    kind: ClusterKind
    la_code: str
    districts: tuple[str, ...]  # stored on the cluster (geographic clusters only)
    home_districts: tuple[str, ...]  # where its people live
    centre: tuple[float, float] | None
    radius_km: Decimal | None
    need_tags: tuple[str, ...]
    likely_needs: tuple[str, ...]  # needs drawn for its service users
    opened_days_ago: int


CLUSTERS = [
    ClusterSpec(
        name="Chipping Barnet & Whetstone",
        kind=ClusterKind.GEOGRAPHIC,
        la_code=BARNET,
        districts=("EN5", "N20"),
        home_districts=("EN5", "N20"),
        centre=(51.6400, -0.1900),
        radius_km=Decimal("3.00"),
        need_tags=(),
        likely_needs=("moving-and-handling", "medication-support", "dementia", "hoist"),
        opened_days_ago=1400,
    ),
    ClusterSpec(
        name="Finchley & Friern Barnet",
        kind=ClusterKind.GEOGRAPHIC,
        la_code=BARNET,
        districts=("N12", "N3", "N11"),
        home_districts=("N12", "N3", "N11"),
        centre=(51.6080, -0.1700),
        radius_km=Decimal("2.50"),
        need_tags=(),
        likely_needs=("moving-and-handling", "medication-support", "dementia", "hoist"),
        opened_days_ago=1100,
    ),
    # The cross-boundary expansion into the neighbouring authority.
    ClusterSpec(
        name="Southgate & Palmers Green",
        kind=ClusterKind.GEOGRAPHIC,
        la_code=ENFIELD,
        districts=("N14", "N13", "N21"),
        home_districts=("N14", "N13", "N21"),
        centre=(51.6280, -0.1150),
        radius_km=Decimal("2.50"),
        need_tags=(),
        likely_needs=("moving-and-handling", "medication-support", "dementia", "hoist"),
        opened_days_ago=240,
    ),
    ClusterSpec(
        name="Barnet neurological support",
        kind=ClusterKind.NEED_BASED,
        la_code=BARNET,
        districts=(),
        home_districts=("NW4", "NW7", "N3", "N2", "EN4", "N12"),
        centre=None,
        radius_km=None,
        need_tags=("multiple-sclerosis", "neurological-conditions"),
        likely_needs=("moving-and-handling", "hoist", "medication-support"),
        opened_days_ago=700,
    ),
]
SERVICE_USERS_PER_CLUSTER = 8
TEAM_SIZES = (6, 6, 5, 6)  # PAs whose home cluster is each of CLUSTERS
FLOATING_PAS = 2  # PAs in pools only, who cover across clusters
# (index of a PA among those of its home cluster, other cluster it also works in)
SECOND_CLUSTERS = [((0, 0), 1), ((1, 1), 2), ((1, 2), 3)]
CARERS = 12
SUPPORTERS = 4

# --- People -------------------------------------------------------------------------

FEMALE_NAMES = (
    "Margaret", "Patricia", "Jean", "Barbara", "Susan", "Linda", "Helen", "Ruth", "Irene",
    "Joan", "Sheila", "Maureen", "Priya", "Aisha", "Fatima", "Grace", "Chloe", "Sophie",
    "Hannah", "Emma", "Yasmin", "Nkechi", "Rachel", "Deborah", "Eleni", "Sinead", "Bridget",
    "Anjali", "Olivia", "Zainab", "Magdalena", "Esther", "Shirley", "Valerie", "Lorraine",
    "Dimitra", "Monique", "Joy", "Comfort", "Beatriz",
)  # fmt: skip
MALE_NAMES = (
    "David", "John", "Michael", "Peter", "Robert", "Derek", "Kenneth", "Brian", "Alan",
    "Raymond", "Trevor", "Stanley", "Arthur", "Colin", "Rajesh", "Sanjay", "Mohammed",
    "Tariq", "Kwame", "Emeka", "Tomasz", "Andreas", "Kostas", "Liam", "Connor", "Daniel",
    "James", "Samuel", "Hassan", "Winston", "Desmond", "Neil", "Gareth", "Marek", "Ibrahim",
    "Oluwaseun", "Yusuf", "Nikhil",
)  # fmt: skip
SURNAMES = (
    "Smith", "Jones", "Taylor", "Brown", "Williams", "Wilson", "Evans", "Thomas", "Roberts",
    "Walker", "Wright", "Thompson", "White", "Hughes", "Edwards", "Green", "Hall", "Wood",
    "Harris", "Clarke", "Patel", "Shah", "Khan", "Begum", "Ahmed", "Okafor", "Adeyemi",
    "Mensah", "Boateng", "Kowalski", "Nowak", "Georgiou", "Papadopoulos", "Christodoulou",
    "O'Brien", "Murphy", "Kelly", "Byrne", "Cohen", "Levy", "Goldberg", "Friedman",
    "Campbell", "Stewart", "Morgan", "Hussain", "Chowdhury", "Singh", "Kaur", "Gill",
    "Mistry", "Lewis", "Baker", "Carter", "Fletcher", "Osei", "Nwosu", "Silva", "Costa",
    "Ferreira", "Hamilton", "Reid", "Fraser", "Doyle", "Kaya", "Demir", "Yilmaz",
)  # fmt: skip

FUNDING_WEIGHTS = {
    Funding.DIRECT_PAYMENT: 40,
    Funding.PERSONAL_BUDGET: 15,
    Funding.LA_COMMISSIONED: 15,
    Funding.NHS_CHC: 10,
    Funding.SELF_FUNDED: 20,
}
# relationship -> names to draw from (None: either); spouses live with the person.
CARER_RELATIONSHIPS: dict[str, tuple[str, ...] | None] = {
    "wife": FEMALE_NAMES,
    "husband": MALE_NAMES,
    "partner": None,
    "daughter": FEMALE_NAMES,
    "son": MALE_NAMES,
    "niece": FEMALE_NAMES,
    "brother": MALE_NAMES,
    "friend": None,
    "neighbour": None,
}
LIVES_WITH = {"wife", "husband", "partner"}
FAMILY = LIVES_WITH | {"daughter", "son", "niece", "brother"}

# --- Skills and the rota --------------------------------------------------------------

SKILLS = (
    "medication-support",
    "hoist",
    "dementia",
    "moving-and-handling",
    "first-aid",
    "catheter-care",
    "multiple-sclerosis",
)
NEURO_SKILLS = ("multiple-sclerosis", "hoist", "moving-and-handling")

EARLY = (dt.time(7), dt.time(14))
LATE = (dt.time(14), dt.time(21))
SHIFT_STYLES = {"early": [EARLY], "late": [LATE], "both": [EARLY, LATE]}
# Dealt out in turn within a team, so every day has early and late cover.
SHIFT_STYLE_CYCLE = ("both", "early", "both", "late", "both", "early", "both")

# Start times are spread out: everyone wanting 6pm is what makes real rotas impossible.
MORNING_STARTS = [dt.time(h, m) for h in (7, 8, 9, 10) for m in (0, 30)]
# Lunch calls last 45 minutes at most, so all end by 14:00.
LUNCH_STARTS = [dt.time(11, 45)] + [dt.time(h, m) for h in (12, 13) for m in (0, 15, 30)]
AFTERNOON_STARTS = [dt.time(14), dt.time(14, 30), dt.time(15)]
EVENING_STARTS = [dt.time(16, 30)] + [dt.time(h, m) for h in (17, 18, 19) for m in (0, 30)]
EVENING_STARTS += [dt.time(20)]
MORNING_TASKS = ("help getting up", "personal care", "help with breakfast")
LUNCH_TASKS = ("prepare lunch", "light housework")
AFTERNOON_TASKS = ("companionship", "accompany on a walk", "help with shopping")
EVENING_TASKS = ("prepare evening meal", "help getting ready for bed")
NEED_TASKS = {
    "medication-support": "medication prompt",
    "hoist": "hoist transfer",
    "dementia": "reassurance and orientation",
    "moving-and-handling": "help with walking",
    "multiple-sclerosis": "stretching exercises",
}
ONE_OFF_TASKS = (
    "accompany to GP appointment",
    "accompany to hospital appointment",
    "help with shopping",
    "accompany to day centre",
)
MISSED_RATE = 0.02  # past visits that did not happen
UNCONFIRMED_RATE = 0.05  # completed visits nobody has confirmed yet
CARER_CONFIRMS_RATE = 0.35  # of confirmations, where the person has a carer


@dataclass
class _Pa:
    member: Member
    profile: PaProfile
    clusters: list[int]
    skills: dict[str, dt.date | None]
    shifts: dict[int, list[tuple[dt.time, dt.time]]]  # ISO weekday -> shifts

    def can_work(self, start: dt.datetime, end: dt.datetime) -> bool:
        """Whether the visit lies inside one of the PA's shifts that day."""
        return any(
            a <= start.time() and end.time() <= b
            for a, b in self.shifts.get(start.isoweekday(), [])
        )

    def missing_skills(self, needs: Iterable[str], on: dt.date) -> int:
        valid = {s for s, expires in self.skills.items() if expires is None or expires >= on}
        return sum(1 for n in needs if n in SKILLS and n not in valid)


@dataclass
class _ServiceUser:
    member: Member
    profile: ServiceUserProfile
    cluster: int
    needs: list[str]
    carers: list[Member] = field(default_factory=list)
    regular_pas: list[_Pa] = field(default_factory=list)


@dataclass(frozen=True)
class _Slot:
    """A recurring weekly visit of a service user."""

    weekday: int
    start: dt.time
    minutes: int
    tasks: tuple[str, ...]
    series_id: str | None


@dataclass
class _Booking:
    user: _ServiceUser
    start: dt.datetime
    end: dt.datetime
    tasks: tuple[str, ...]
    series_id: str | None
    pa: _Pa | None = None


class _People:
    """Draws unique names, phone numbers and addresses."""

    def __init__(
        self, rng: random.Random, districts: dict[str, tuple[float, float]] | None = None
    ) -> None:
        self.rng = rng
        self.districts = DISTRICTS if districts is None else districts
        self.used_names: set[str] = set()
        self.phones = list(range(1000))
        rng.shuffle(self.phones)

    def name(self, first_names: Sequence[str] | None = None, surname: str | None = None) -> str:
        rng = self.rng
        for _ in range(1000):
            first = rng.choice(first_names or rng.choice((FEMALE_NAMES, MALE_NAMES)))
            full = f"{first} {surname or rng.choice(SURNAMES)}"
            if full not in self.used_names:
                self.used_names.add(full)
                return full
        raise RuntimeError("ran out of demo names")

    def member(
        self,
        membership_class: MembershipClass,
        joined_on: dt.date,
        district: str | None,
        spread_km: float = 0.8,
        name: str | None = None,
    ) -> Member:
        name = name or self.name()
        latitude = longitude = None
        postcode = None
        if district is not None:
            postcode = self.postcode(district)
            latitude, longitude = _jitter(self.rng, self.districts[district], spread_km)
        return Member(
            name=name,
            email=_email(name),
            phone=f"07700 900{self.phones.pop():03d}",
            postcode=postcode,
            latitude=latitude,
            longitude=longitude,
            membership_class=membership_class.value,
            joined_on=joined_on,
        )

    def postcode(self, district: str) -> str:
        rng = self.rng
        return f"{district} {rng.randint(1, 9)}{rng.choice(POSTCODE_LETTERS)}" + rng.choice(
            POSTCODE_LETTERS
        )


def _email(name: str) -> str:
    local = ".".join("".join(c for c in part if c.isalpha()) for part in name.lower().split())
    return f"{local}@example.org"


def _jitter(rng: random.Random, centre: tuple[float, float], km: float) -> tuple[float, float]:
    lat, lon = centre
    lat += rng.gauss(0, km) / 111.0
    lon += rng.gauss(0, km) / (111.0 * math.cos(math.radians(lat)))
    return round(lat, 5), round(lon, 5)


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _at(day: dt.date, time: dt.time) -> dt.datetime:
    """Local wall-clock time in London as an aware datetime (BST or GMT as the day has it)."""
    return dt.datetime.combine(day, time, tzinfo=LONDON)


def _days(start: dt.date, end: dt.date) -> list[dt.date]:
    return [start + dt.timedelta(days=i) for i in range((end - start).days)]


def _ends_by(starts: list[dt.time], minutes: int, hour: int, minute: int) -> list[dt.time]:
    """The start times from which a visit of `minutes` ends by hour:minute."""
    limit = hour * 60 + minute
    return [t for t in starts if t.hour * 60 + t.minute + minutes <= limit]


def _latest(start: dt.time, minutes: int, end_by: dt.time) -> dt.time:
    """`start`, or earlier if a visit of `minutes` would otherwise end after `end_by`."""
    latest = dt.datetime.combine(dt.date.min, end_by) - dt.timedelta(minutes=minutes)
    return min(start, latest.time())


def _quarter_hours(minutes: float) -> int:
    return int(15 * round(minutes / 15))


# --- Loading --------------------------------------------------------------------------


async def load_demo(session: AsyncSession, today: dt.date | None = None) -> bool:
    """Add the demo co-op to an empty database. Returns False (and adds nothing) if a co-op
    is already there. Flushes but does not commit."""
    if await session.scalar(select(Coop.id).limit(1)) is not None:
        return False
    today = today or dt.datetime.now(LONDON).date()
    rng = random.Random(SEED)
    people = _People(rng)

    await _add_local_authorities(session)
    session.add(
        Coop(
            id=1,
            name="Northside Care Co-operative",
            kind=CoopKind.MULTI_STAKEHOLDER.value,
            society_number="RS008417",
            cqc_provider_id="1-123456789",
            cqc_status=CqcStatus.REGISTERED.value,
            home_la_code=BARNET,
            description=(
                "A multi-stakeholder home-care co-operative of service users, family carers "
                "and personal assistants in Barnet, now growing into Enfield. "
                "(Demo data: every person is fictional.)"
            ),
        )
    )

    # Members first: everything else refers to their generated ids.
    support_workers = [
        people.member(
            MembershipClass.WORKER,
            today - dt.timedelta(spec.opened_days_ago + 30),
            spec.home_districts[0],
        )
        for spec in CLUSTERS
    ]
    users = [
        _service_user(rng, people, today, c)
        for c in range(len(CLUSTERS))
        for _ in range(SERVICE_USERS_PER_CLUSTER)
    ]
    pas = _pas(rng, people, today)
    carer_links = _carers(rng, people, today, users)
    supporters = [
        people.member(
            MembershipClass.SUPPORTER,
            today - dt.timedelta(rng.randint(30, 1500)),
            rng.choice(CLUSTERS[rng.randrange(2)].home_districts),
        )
        for _ in range(SUPPORTERS)
    ]
    session.add_all(support_workers)
    session.add_all(u.member for u in users)
    session.add_all(p.member for p in pas)
    session.add_all(carer for carer, _, _ in carer_links)
    session.add_all(supporters)
    await session.flush()

    clusters = [_cluster(spec, today, support_workers[i].id) for i, spec in enumerate(CLUSTERS)]
    pools = [
        Pool(name="Barnet pool", shared_with_partners=False),
        Pool(name="North London shared pool", shared_with_partners=True),
    ]
    for u in users:
        u.profile.member_id = u.member.id
    for p in pas:
        p.profile.member_id = p.member.id
    session.add_all(clusters)
    session.add_all(pools)
    session.add_all(u.profile for u in users)
    session.add_all(p.profile for p in pas)
    await session.flush()

    _choose_regular_pas(rng, today, users, pas)
    pool_clusters = {0: [0, 1], 1: [2, 3]}  # pool index -> cluster indexes it serves
    session.add_all(_links(users, pas, clusters, pools, pool_clusters, carer_links))
    patterns = _weekly_patterns(pas, today)
    session.add_all(patterns)
    await session.flush()

    session.add_all(_availability_windows(patterns, today))
    visits, sick_pa = _visits(rng, today, users, pas)
    session.add_all(visits)
    await session.flush()
    await _open_cover(session, today, sick_pa)
    session.add_all(_referrals(today))
    await session.flush()
    return True


# People waiting for care (la, district, needs, hours a week, days ago, status): demand
# in Barnet and across the boundary in Enfield, where the co-op is growing.
DEMO_REFERRALS: tuple[tuple[str, str, tuple[str, ...], str, int, str], ...] = (
    (ENFIELD, "EN1", ("dementia", "personal-care"), "14", 40, "WAITING"),
    (ENFIELD, "EN1", ("moving-and-handling",), "7.5", 25, "WAITING"),
    (ENFIELD, "EN2", ("personal-care",), "10", 60, "WAITING"),
    (ENFIELD, "N9", ("learning-disability",), "20", 12, "OFFERED"),
    (BARNET, "N12", ("dementia",), "12", 90, "PLACED"),
    (BARNET, "EN5", ("moving-and-handling", "medication-support"), "6", 5, "WAITING"),
    (BARNET, "N20", ("personal-care",), "8", 120, "WITHDRAWN"),
)


ReferralRow = tuple[str, str, tuple[str, ...], str, int, str]


def _referrals(today: dt.date, rows: tuple[ReferralRow, ...] = DEMO_REFERRALS) -> list[Referral]:
    return [
        Referral(
            la_code=la,
            postcode_district=district,
            needs=list(needs),
            hours_per_week=Decimal(hours),
            referred_on=today - dt.timedelta(days=days_ago),
            status=status,
            note=None,
        )
        for la, district, needs, hours, days_ago, status in rows
    ]


async def _open_cover(session: AsyncSession, today: dt.date, sick_pa: int | None) -> None:
    """Cover as the service would have it: the sick PA's absence goes through the absence
    service (their visits need cover, a request each). Every other visit nobody could take
    is NEEDS_COVER and gets its request (UNASSIGNED) from the database at commit."""
    if sick_pa is not None:
        start = dt.datetime.combine(today + dt.timedelta(2), dt.time(), LONDON)
        await record_absence(
            session,
            Viewer(role=Role.ADMIN),
            NewAbsence(
                pa_id=sick_pa,
                kind=AbsenceKind.SICKNESS,
                starts_at=start,
                ends_at=start + dt.timedelta(days=2),
                note="Off sick (demo).",
            ),
        )


async def _add_local_authorities(
    session: AsyncSession,
    names: dict[str, str] = LOCAL_AUTHORITIES,
    neighbours: list[tuple[str, str]] = NEIGHBOURS,
) -> None:
    """Add the boroughs and their adjacencies, skipping any already loaded."""
    have = set(await session.scalars(select(LocalAuthority.gss_code)))
    session.add_all(
        LocalAuthority(gss_code=code, name=name) for code, name in names.items() if code not in have
    )
    # Flush between dependent tables: without relationships, one flush has no insert order.
    await session.flush()
    pairs = {
        (r.la_a, r.la_b)
        for r in await session.execute(
            select(LocalAuthorityNeighbour.la_a, LocalAuthorityNeighbour.la_b)
        )
    }
    ordered = sorted({(min(a, b), max(a, b)) for a, b in neighbours} - pairs)
    session.add_all(LocalAuthorityNeighbour(la_a=a, la_b=b) for a, b in ordered)
    await session.flush()


def _service_user(
    rng: random.Random, people: _People, today: dt.date, cluster: int
) -> _ServiceUser:
    spec = CLUSTERS[cluster]
    joined = today - dt.timedelta(rng.randint(20, spec.opened_days_ago))
    member = people.member(
        MembershipClass.SERVICE_USER, joined, rng.choice(spec.home_districts), spread_km=0.6
    )
    needs = {"personal-care"} if rng.random() < 0.9 else set()
    needs.update(spec.need_tags[:1])  # need-based clusters: the need they are built around
    needs.update(rng.sample(spec.likely_needs, rng.randint(1, 3)))
    funding = rng.choices(list(FUNDING_WEIGHTS), weights=list(FUNDING_WEIGHTS.values()))[0]
    profile = ServiceUserProfile(
        funding=funding.value,
        needs=sorted(needs),
        # 5 to 25 hours, most people nearer 10.
        planned_weekly_hours=Decimal(round(rng.triangular(5, 25, 10) * 2)) / 2,
    )
    return _ServiceUser(member=member, profile=profile, cluster=cluster, needs=sorted(needs))


def _pas(rng: random.Random, people: _People, today: dt.date) -> list[_Pa]:
    """Each cluster's own team, then the floating PAs; some also work in a second cluster."""
    homes: list[int | None] = [c for c, size in enumerate(TEAM_SIZES) for _ in range(size)]
    homes += [None] * FLOATING_PAS
    # Where each team's rota of days off starts, so teams differ.
    day_off_offsets = [rng.randrange(7) for _ in range(len(TEAM_SIZES) + 1)]
    opt_outs = set(rng.sample(range(len(homes)), 2))
    pas: list[_Pa] = []
    for i, home in enumerate(homes):
        # Floating PAs live centrally, in the Finchley cluster's area.
        spec = CLUSTERS[home] if home is not None else CLUSTERS[1]
        member = people.member(
            MembershipClass.WORKER,
            today - dt.timedelta(rng.randint(60, min(1800, spec.opened_days_ago + 200))),
            rng.choice(spec.home_districts),
            spread_km=1.5,
        )
        hours = Decimal(rng.choice(["16", "20", "22.5", "24", "25", "30", "32", "35", "37.5"]))
        profile = PaProfile(
            dbs_checked_on=today - dt.timedelta(rng.randint(14, 700)),
            contracted_weekly_hours=hours,
            # At or above the National Living Wage (1271p an hour from April 2026).
            hourly_pay_pence=rng.randrange(1290, 1505, 5),
            max_travel_km=Decimal(rng.choice([5, 6, 8, 10, 12, 15])),
            working_time_opt_out=i in opt_outs,
        )
        neuro = home is not None and CLUSTERS[home].kind is ClusterKind.NEED_BASED
        pas.append(
            _Pa(
                member=member,
                profile=profile,
                clusters=[home] if home is not None else [],
                skills=_skills(rng, today, neuro),
                shifts=_shifts(
                    hours, homes[:i].count(home), day_off_offsets[-1 if home is None else home]
                ),
            )
        )
    starts = [sum(TEAM_SIZES[:c]) for c in range(len(TEAM_SIZES))]
    for (home, index), other in SECOND_CLUSTERS:
        pa = pas[starts[home] + index]
        pa.clusters.append(other)
        if CLUSTERS[other].kind is ClusterKind.NEED_BASED:
            pa.skills.update(_skills(rng, today, neuro=True, extra=0))
    return pas


def _skills(
    rng: random.Random, today: dt.date, neuro: bool, extra: int | None = None
) -> dict[str, dt.date | None]:
    """Skills with training expiry dates: mostly current, a few lapsed, some never expire."""
    names = {"personal-care"}
    if neuro:
        names.update(NEURO_SKILLS)
    names.update(rng.sample(SKILLS, rng.randint(2, 4) if extra is None else extra))
    skills: dict[str, dt.date | None] = {}
    for name in sorted(names):
        roll = rng.random()
        if roll < 0.07:
            skills[name] = today - dt.timedelta(rng.randint(5, 150))
        elif roll < 0.17:
            skills[name] = None
        else:
            skills[name] = today + dt.timedelta(rng.randint(20, 720))
    return skills


def _shifts(hours: Decimal, position: int, offset: int) -> dict[int, list[tuple[dt.time, dt.time]]]:
    """Working days and shifts of the `position`th PA of a team. More contracted hours, more
    days; consecutive days off, staggered through the team so each day is covered alike."""
    days_off = 3 if hours <= 20 else 2 if hours <= 30 else 1
    first_off = offset + 3 * position
    off = {(first_off + k) % 7 + 1 for k in range(days_off)}
    style = SHIFT_STYLE_CYCLE[position % len(SHIFT_STYLE_CYCLE)]
    return {day: list(SHIFT_STYLES[style]) for day in range(1, 8) if day not in off}


def _carers(
    rng: random.Random, people: _People, today: dt.date, users: list[_ServiceUser]
) -> list[tuple[Member, _ServiceUser, str]]:
    """Unpaid carers: spouses share the home, family often the surname."""
    cared_for = rng.sample(users, CARERS - 1)
    cared_for.append(cared_for[0])  # one person has two carers
    links: list[tuple[Member, _ServiceUser, str]] = []
    for user in cared_for:
        # A second carer is family or a friend living elsewhere, and not a second spouse.
        taken = {rel for _, u, rel in links if u is user}
        excluded = taken | LIVES_WITH if taken else set()
        relationship = rng.choice([r for r in CARER_RELATIONSHIPS if r not in excluded])
        surname = user.member.name.split(" ", 1)[1]
        name = people.name(
            CARER_RELATIONSHIPS[relationship],
            surname if relationship in FAMILY and rng.random() < 0.8 else None,
        )
        joined = max(user.member.joined_on, today - dt.timedelta(rng.randint(10, 900)))
        if relationship in LIVES_WITH:
            carer = people.member(MembershipClass.CARER, joined, None, name=name)
            carer.postcode = user.member.postcode
            carer.latitude, carer.longitude = user.member.latitude, user.member.longitude
        else:
            district = rng.choice(CLUSTERS[user.cluster].home_districts)
            carer = people.member(MembershipClass.CARER, joined, district, name=name)
        user.carers.append(carer)
        links.append((carer, user, relationship))
    return links


def _cluster(spec: ClusterSpec, today: dt.date, support_worker_id: int) -> Cluster:
    centre = spec.centre or (None, None)
    return Cluster(
        name=spec.name,
        kind=spec.kind.value,
        la_code=spec.la_code,
        support_worker_id=support_worker_id,
        status=ClusterStatus.ACTIVE.value,
        centre_latitude=centre[0],
        centre_longitude=centre[1],
        radius_km=spec.radius_km,
        postcode_districts=list(spec.districts),
        need_tags=list(spec.need_tags),
        created_at=_at(today - dt.timedelta(spec.opened_days_ago), dt.time(9)),
    )


def _choose_regular_pas(
    rng: random.Random, today: dt.date, users: list[_ServiceUser], pas: list[_Pa]
) -> None:
    """One or two named PAs for each person, from their cluster team, skills permitting."""
    for c in range(len(CLUSTERS)):
        team = [p for p in pas if c in p.clusters]
        for i, user in enumerate(u for u in users if u.cluster == c):
            gaps = {id(p): p.missing_skills(user.needs, today) for p in team}
            best = [p for p in team if gaps[id(p)] == min(gaps.values())]
            # Spread people over the team rather than giving everyone the same PA.
            first = best[i % len(best)]
            user.regular_pas = [first]
            if rng.random() < 0.6:
                user.regular_pas.append(rng.choice([p for p in team if p is not first]))


def _links(
    users: list[_ServiceUser],
    pas: list[_Pa],
    clusters: list[Cluster],
    pools: list[Pool],
    pool_clusters: dict[int, list[int]],
    carer_links: list[tuple[Member, _ServiceUser, str]],
) -> list[object]:
    rows: list[object] = []
    for u in users:
        rows.append(
            ClusterServiceUser(cluster_id=clusters[u.cluster].id, service_user_id=u.member.id)
        )
        rows.extend(
            RegularPa(service_user_id=u.member.id, pa_id=p.member.id) for p in u.regular_pas
        )
    rows.extend(
        CarerLink(carer_id=carer.id, service_user_id=user.member.id, relationship=relationship)
        for carer, user, relationship in carer_links
    )
    for p in pas:
        rows.extend(ClusterPa(cluster_id=clusters[c].id, pa_id=p.member.id) for c in p.clusters)
        rows.extend(
            PaSkill(pa_id=p.member.id, skill=skill, expires_on=expires)
            for skill, expires in p.skills.items()
        )
    for index, served in pool_clusters.items():
        pool_id = pools[index].id
        rows.extend(PoolCluster(pool_id=pool_id, cluster_id=clusters[c].id) for c in served)
        # A pool holds the teams of the clusters it serves; floating PAs are in every pool.
        rows.extend(
            PoolPa(pool_id=pool_id, pa_id=p.member.id)
            for p in pas
            if not p.clusters or set(p.clusters) & set(served)
        )
    return rows


def _weekly_patterns(pas: list[_Pa], today: dt.date) -> list[WeeklyAvailability]:
    valid_from = today - dt.timedelta(HORIZON_DAYS)
    return [
        WeeklyAvailability(
            pa_id=p.member.id,
            weekday=day,
            start_time=start,
            end_time=end,
            valid_from=valid_from,
            valid_until=None,
            # The demo lays out windows itself up to here (see _availability_windows).
            expanded_through=today + dt.timedelta(HORIZON_DAYS),
        )
        for p in pas
        for day, shifts in p.shifts.items()
        for start, end in shifts
    ]


def _availability_windows(
    patterns: list[WeeklyAvailability], today: dt.date
) -> list[AvailabilityWindow]:
    """Expand the weekly patterns over the horizon (both ends included). A PA's shifts on a
    day never overlap (the early one ends as the late one starts, and ranges are half-open),
    so neither do the windows."""
    days = _days(today - dt.timedelta(HORIZON_DAYS), today + dt.timedelta(HORIZON_DAYS + 1))
    return [
        AvailabilityWindow(
            pa_id=p.pa_id,
            during=Range(_at(day, p.start_time), _at(day, p.end_time), bounds="[)"),
            weekly_availability_id=p.id,
        )
        for p in patterns
        for day in days
        if day.isoweekday() == p.weekday
    ]


def _weekly_slots(
    rng: random.Random, user: _ServiceUser, starts: tuple[dt.time, dt.time, dt.time]
) -> list[_Slot]:
    """A weekly routine near the planned hours: a morning call on each care day, then a
    short evening call, then a lunchtime or afternoon call as the hours allow."""
    morning_start, lunch_start, evening_start = starts
    hours = float(user.profile.planned_weekly_hours)
    days = sorted(rng.sample(range(1, 8), max(3, min(7, round(hours / 3)))))
    per_day = hours * 60 / len(days)
    morning = _quarter_hours(min(75, max(30, per_day * 0.5)))
    rest = per_day - morning
    evening = _quarter_hours(min(60, rest)) if rest >= 25 else 0
    rest -= evening
    daytime = _quarter_hours(min(120, rest)) if rest >= 25 else 0

    extras = [task for need, task in NEED_TASKS.items() if need in user.needs]
    recurring = rng.random() < 0.8  # the rest are booked visit by visit, without a series
    routine = [
        (morning, morning_start, MORNING_TASKS),
        (evening, evening_start, EVENING_TASKS),
        # A short call fits in at lunchtime; a long one is an afternoon out.
        (daytime, _latest(lunch_start, daytime, dt.time(14)), LUNCH_TASKS)
        if daytime <= 45
        else (daytime, rng.choice(_ends_by(AFTERNOON_STARTS, daytime, 16, 30)), AFTERNOON_TASKS),
    ]
    slots: list[_Slot] = []
    for minutes, start, base in routine:
        if minutes == 0:
            continue
        tasks = tuple(rng.sample(base, rng.randint(1, len(base)))) + tuple(
            rng.sample(extras, min(len(extras), rng.randint(0, 2)))
        )
        series_id = _uuid(rng) if recurring else None
        slots.extend(_Slot(day, start, minutes, tasks, series_id) for day in days)
    return slots


def _visits(
    rng: random.Random, today: dt.date, users: list[_ServiceUser], pas: list[_Pa]
) -> tuple[list[Visit], int | None]:
    first, last = today - dt.timedelta(HORIZON_DAYS), today + dt.timedelta(HORIZON_DAYS)
    bookings: list[_Booking] = []
    # Like a coordinator, give the people of a cluster different times, as far as they go.
    routines: dict[int, list[_Slot]] = {}
    for c in range(len(CLUSTERS)):
        times = [rng.sample(t, len(t)) for t in (MORNING_STARTS, LUNCH_STARTS, EVENING_STARTS)]
        for i, user in enumerate(u for u in users if u.cluster == c):
            morning, lunch, evening = (t[i % len(t)] for t in times)
            routines[id(user)] = _weekly_slots(rng, user, (morning, lunch, evening))
    for user in users:
        for day in _days(first, last):
            for s in routines[id(user)]:
                if s.weekday == day.isoweekday():
                    start = _at(day, s.start)
                    end = start + dt.timedelta(minutes=s.minutes)
                    bookings.append(_Booking(user, start, end, s.tasks, s.series_id))
    # A few one-off visits (14:00 to 16:00 at most) for people with no afternoon routine,
    # so they cannot overlap the person's other visits.
    free_afternoons = [
        u for u in users if not any(s.start.hour in (14, 15) for s in routines[id(u)])
    ]
    for user in rng.sample(free_afternoons, min(8, len(free_afternoons))):
        day = first + dt.timedelta(rng.randrange(2 * HORIZON_DAYS))
        start_time, minutes = rng.choice([(dt.time(14), 120), (dt.time(14, 30), 90)])
        start = _at(day, start_time)
        end = start + dt.timedelta(minutes=minutes)
        bookings.append(_Booking(user, start, end, (rng.choice(ONE_OFF_TASKS),), None))

    bookings.sort(key=lambda b: (b.start, b.user.member.id))
    _assign(bookings, pas)
    return [_visit(rng, b, today) for b in bookings], _sick_pa(bookings, today)


def _assign(bookings: list[_Booking], pas: list[_Pa]) -> None:
    """Give each visit (in start order) a PA from the person's cluster team who is on shift
    and free, preferring PAs within their contracted hours that week, then regular PAs,
    then the best-skilled, then the least busy. Nobody goes over 48 hours a week without
    having opted out of the Working Time Regulations. Visits nobody can take stay
    unassigned. Because visits come in start order, a PA is free if the visit starts after
    the end of their last one (plus travel)."""
    teams = {c: [p for p in pas if c in p.clusters] for c in range(len(CLUSTERS))}
    busy_until: dict[int, dt.datetime] = {}
    week_minutes: dict[tuple[int, int], float] = defaultdict(float)
    for b in bookings:
        week = b.start.isocalendar().week
        day = b.start.date()
        minutes = (b.end - b.start).total_seconds() / 60
        ranked: list[tuple[tuple[bool, bool, int, float, int], _Pa]] = []
        for p in teams[b.user.cluster]:
            load = week_minutes[(id(p), week)] + minutes
            if (
                not p.can_work(b.start, b.end)
                or (id(p) in busy_until and b.start < busy_until[id(p)] + TRAVEL_GAP)
                or (load > 48 * 60 and not p.profile.working_time_opt_out)
            ):
                continue
            contracted = float(p.profile.contracted_weekly_hours) * 60
            rank = (
                load > contracted,
                p not in b.user.regular_pas,
                p.missing_skills(b.user.needs, day),
                load / contracted,
                p.member.id,
            )
            ranked.append((rank, p))
        if not ranked:
            continue
        b.pa = min(ranked, key=lambda r: r[0])[1]
        busy_until[id(b.pa)] = b.end
        week_minutes[(id(b.pa), week)] += minutes


def _sick_pa(bookings: list[_Booking], today: dt.date) -> int | None:
    """A PA in the first cluster who will be off sick for two days next week (recorded
    through the absence service once the rota is stored): whoever has most visits on those
    days, so there is cover to find."""
    days = {today + dt.timedelta(2), today + dt.timedelta(3)}
    counts: dict[int, int] = defaultdict(int)
    for b in bookings:
        if b.pa is not None and 0 in b.pa.clusters and b.start.date() in days:
            counts[b.pa.member.id] += 1
    if not counts:
        return None
    return min(counts, key=lambda pa_id: (-counts[pa_id], pa_id))


def _visit(rng: random.Random, b: _Booking, today: dt.date) -> Visit:
    pa_id = b.pa.member.id if b.pa is not None else None
    confirmed_by: Member | None = None
    confirmed_at = None
    if b.start.date() >= today:
        status = VisitStatus.SCHEDULED if pa_id is not None else VisitStatus.NEEDS_COVER
    elif pa_id is None or rng.random() < MISSED_RATE:
        status = VisitStatus.MISSED
    else:
        status = VisitStatus.COMPLETED
        # Confirmed by the person who received the visit, or their carer, afterwards.
        if rng.random() >= UNCONFIRMED_RATE:
            carers = b.user.carers
            use_carer = carers and rng.random() < CARER_CONFIRMS_RATE
            confirmed_by = rng.choice(carers) if use_carer else b.user.member
            confirmed_at = b.end + dt.timedelta(minutes=rng.randint(5, 180))
    return Visit(
        service_user_id=b.user.member.id,
        pa_id=pa_id,
        during=Range(b.start, b.end, bounds="[)"),
        tasks=list(b.tasks),
        status=status.value,
        series_id=b.series_id,
        confirmed_by_id=confirmed_by.id if confirmed_by is not None else None,
        confirmed_at=confirmed_at,
        checked_in_at=None,
    )


# --- The co-ops of the federation demo ------------------------------------------------
#
# `coopnet demo network` runs three instances: the demo co-op above, a co-op in the
# neighbouring borough of Haringey (it partners with the demo co-op) and one in Sheffield
# (no partnership). The two others are smaller: clusters, service users, PA teams with
# skills and weekly availability, pools (one shared with partners), no rota.

DEMO, NEIGHBOUR, DISTANT = "demo", "neighbour", "distant"

ISLINGTON, HACKNEY, WALTHAM_FOREST = "E09000019", "E09000012", "E09000031"
SHEFFIELD, ROTHERHAM, BARNSLEY = "E08000019", "E08000018", "E08000016"


@dataclass(frozen=True)
class PoolSpec:
    name: str
    shared_with_partners: bool
    clusters: tuple[int, ...]  # indexes of the clusters it serves; their teams are in it


@dataclass(frozen=True)
class CoopSpec:
    """A smaller co-op than the demo's, for another instance of the federation demo."""

    seed: int
    name: str
    kind: CoopKind
    society_number: str
    cqc_provider_id: str
    home_la_code: str
    description: str
    local_authorities: dict[str, str]
    neighbours: list[tuple[str, str]]
    districts: dict[str, tuple[float, float]]
    clusters: list[ClusterSpec]
    team_sizes: tuple[int, ...]
    pools: list[PoolSpec]
    service_users_per_cluster: int = 5
    # People waiting for care, as DEMO_REFERRALS: what `expansionOpportunities` ranks.
    referrals: tuple[tuple[str, str, tuple[str, ...], str, int, str], ...] = ()


def _geographic(
    name: str, la_code: str, districts: tuple[str, ...], centre: tuple[float, float], days: int
) -> ClusterSpec:
    return ClusterSpec(
        name=name,
        kind=ClusterKind.GEOGRAPHIC,
        la_code=la_code,
        districts=districts,
        home_districts=districts,
        centre=centre,
        radius_km=Decimal("2.50"),
        need_tags=(),
        likely_needs=("moving-and-handling", "medication-support", "dementia", "hoist"),
        opened_days_ago=days,
    )


# Haringey borders Barnet: its PAs in Wood Green and Muswell Hill are a few kilometres
# from the demo co-op's Finchley and Southgate clusters.
NEIGHBOUR_COOP = CoopSpec(
    seed=2027,
    name="Lea Valley Home Care Co-operative",
    kind=CoopKind.WORKER,
    society_number="RS009236",
    cqc_provider_id="1-987654321",
    home_la_code=HARINGEY,
    description=(
        "A worker co-operative of personal assistants in Haringey, next door to Northside "
        "Care Co-operative in Barnet. (Demo data: every person is fictional.)"
    ),
    local_authorities={
        HARINGEY: "Haringey",
        BARNET: "Barnet",
        ENFIELD: "Enfield",
        CAMDEN: "Camden",
        ISLINGTON: "Islington",
        HACKNEY: "Hackney",
        WALTHAM_FOREST: "Waltham Forest",
    },
    neighbours=[
        (HARINGEY, BARNET),
        (HARINGEY, ENFIELD),
        (HARINGEY, CAMDEN),
        (HARINGEY, ISLINGTON),
        (HARINGEY, HACKNEY),
        (HARINGEY, WALTHAM_FOREST),
        (BARNET, ENFIELD),
        (BARNET, CAMDEN),
        (CAMDEN, ISLINGTON),
        (ISLINGTON, HACKNEY),
        (HACKNEY, WALTHAM_FOREST),
        (ENFIELD, WALTHAM_FOREST),
    ],
    districts={
        "N22": (51.6000, -0.1120),  # Wood Green
        "N8": (51.5850, -0.1200),  # Hornsey, Crouch End
        "N10": (51.5920, -0.1450),  # Muswell Hill
        "N6": (51.5720, -0.1470),  # Highgate
        "N17": (51.5970, -0.0700),  # Tottenham
        "N15": (51.5820, -0.0800),  # South Tottenham
    },
    clusters=[
        _geographic("Wood Green & Hornsey", HARINGEY, ("N22", "N8"), (51.5930, -0.1160), 900),
        _geographic("Muswell Hill & Highgate", HARINGEY, ("N10", "N6"), (51.5830, -0.1460), 600),
        _geographic("Tottenham", HARINGEY, ("N17", "N15"), (51.5900, -0.0750), 300),
    ],
    team_sizes=(5, 4, 4),
    pools=[
        # The west of the borough, nearest Barnet, is what the co-op offers its partners.
        PoolSpec("West Haringey shared pool", shared_with_partners=True, clusters=(0, 1)),
        PoolSpec("Tottenham pool", shared_with_partners=False, clusters=(2,)),
    ],
    # Demand where the co-op has no cluster yet: Finsbury Park (N4) at home, and Edmonton
    # (N18, N9) across the boundary in Enfield, where it might open its next cluster.
    referrals=(
        (HARINGEY, "N4", ("dementia", "personal-care"), "12", 30, "WAITING"),
        (HARINGEY, "N4", ("moving-and-handling",), "8", 18, "WAITING"),
        (HARINGEY, "N17", ("personal-care",), "10", 45, "WAITING"),
        (HARINGEY, "N15", ("dementia",), "9", 70, "PLACED"),
        (ENFIELD, "N18", ("personal-care", "medication-support"), "15", 20, "WAITING"),
        (ENFIELD, "N9", ("moving-and-handling",), "6", 9, "WAITING"),
    ),
)

# Far from London: it never partners with the others in the demo.
DISTANT_COOP = CoopSpec(
    seed=2028,
    name="Don Valley Care Co-operative",
    kind=CoopKind.MULTI_STAKEHOLDER,
    society_number="RS010552",
    cqc_provider_id="1-555123456",
    home_la_code=SHEFFIELD,
    description=(
        "A multi-stakeholder home-care co-operative in Sheffield. "
        "(Demo data: every person is fictional.)"
    ),
    local_authorities={SHEFFIELD: "Sheffield", ROTHERHAM: "Rotherham", BARNSLEY: "Barnsley"},
    neighbours=[(SHEFFIELD, ROTHERHAM), (SHEFFIELD, BARNSLEY), (ROTHERHAM, BARNSLEY)],
    districts={
        "S6": (53.4000, -1.5000),  # Hillsborough, Walkley
        "S10": (53.3800, -1.5300),  # Crookes, Broomhill
        "S7": (53.3500, -1.4950),  # Nether Edge
        "S11": (53.3600, -1.5100),  # Sharrow, Ecclesall
    },
    clusters=[
        _geographic("Hillsborough & Crookes", SHEFFIELD, ("S6", "S10"), (53.3900, -1.5150), 800),
        _geographic("Nether Edge & Sharrow", SHEFFIELD, ("S7", "S11"), (53.3550, -1.5020), 500),
    ],
    team_sizes=(5, 5),
    pools=[PoolSpec("Sheffield shared pool", shared_with_partners=True, clusters=(0, 1))],
)

COOPS: dict[str, CoopSpec | None] = {DEMO: None, NEIGHBOUR: NEIGHBOUR_COOP, DISTANT: DISTANT_COOP}


async def load_coop(session: AsyncSession, which: str, today: dt.date | None = None) -> bool:
    """Load one of the federation demo's co-ops (DEMO, NEIGHBOUR or DISTANT) into an empty
    database; False (nothing added) if a co-op is already there. Flushes, no commit."""
    if which not in COOPS:
        raise ValueError(f"no demo co-op {which!r}: one of {', '.join(COOPS)}")
    spec = COOPS[which]
    if spec is None:
        return await load_demo(session, today)
    if await session.scalar(select(Coop.id).limit(1)) is not None:
        return False
    today = today or dt.datetime.now(LONDON).date()
    rng = random.Random(spec.seed)
    people = _People(rng, spec.districts)

    await _add_local_authorities(session, spec.local_authorities, spec.neighbours)
    session.add(
        Coop(
            id=1,
            name=spec.name,
            kind=spec.kind.value,
            society_number=spec.society_number,
            cqc_provider_id=spec.cqc_provider_id,
            cqc_status=CqcStatus.REGISTERED.value,
            home_la_code=spec.home_la_code,
            description=spec.description,
        )
    )
    support_workers = [
        people.member(
            MembershipClass.WORKER,
            today - dt.timedelta(c.opened_days_ago + 30),
            c.home_districts[0],
        )
        for c in spec.clusters
    ]
    users = [
        (c, _small_coop_user(rng, people, today, spec.clusters[c]))
        for c in range(len(spec.clusters))
        for _ in range(spec.service_users_per_cluster)
    ]
    pas = _small_coop_pas(rng, people, today, spec)
    session.add_all(support_workers)
    session.add_all(member for _, (member, _) in users)
    session.add_all(p.member for p in pas)
    await session.flush()

    clusters = [_cluster(c, today, support_workers[i].id) for i, c in enumerate(spec.clusters)]
    pools = [Pool(name=p.name, shared_with_partners=p.shared_with_partners) for p in spec.pools]
    for _, (member, profile) in users:
        profile.member_id = member.id
    for p in pas:
        p.profile.member_id = p.member.id
    session.add_all(clusters)
    session.add_all(pools)
    session.add_all(profile for _, (_, profile) in users)
    session.add_all(p.profile for p in pas)
    await session.flush()

    rows: list[object] = [
        ClusterServiceUser(cluster_id=clusters[c].id, service_user_id=member.id)
        for c, (member, _) in users
    ]
    for p in pas:
        rows.extend(ClusterPa(cluster_id=clusters[c].id, pa_id=p.member.id) for c in p.clusters)
        rows.extend(
            PaSkill(pa_id=p.member.id, skill=skill, expires_on=expires)
            for skill, expires in p.skills.items()
        )
    for pool, pool_spec in zip(pools, spec.pools, strict=True):
        rows.extend(
            PoolCluster(pool_id=pool.id, cluster_id=clusters[c].id) for c in pool_spec.clusters
        )
        rows.extend(
            PoolPa(pool_id=pool.id, pa_id=p.member.id)
            for p in pas
            if set(p.clusters) & set(pool_spec.clusters)
        )
    session.add_all(rows)
    patterns = _weekly_patterns(pas, today)
    session.add_all(patterns)
    await session.flush()
    session.add_all(_availability_windows(patterns, today))
    session.add_all(_referrals(today, spec.referrals))
    await session.flush()
    return True


def _small_coop_user(
    rng: random.Random, people: _People, today: dt.date, spec: ClusterSpec
) -> tuple[Member, ServiceUserProfile]:
    joined = today - dt.timedelta(rng.randint(20, spec.opened_days_ago))
    member = people.member(
        MembershipClass.SERVICE_USER, joined, rng.choice(spec.home_districts), spread_km=0.6
    )
    needs = {"personal-care", *rng.sample(spec.likely_needs, rng.randint(1, 3))}
    funding = rng.choices(list(FUNDING_WEIGHTS), weights=list(FUNDING_WEIGHTS.values()))[0]
    profile = ServiceUserProfile(
        funding=funding.value,
        needs=sorted(needs),
        planned_weekly_hours=Decimal(round(rng.triangular(5, 25, 10) * 2)) / 2,
    )
    return member, profile


def _small_coop_pas(
    rng: random.Random, people: _People, today: dt.date, spec: CoopSpec
) -> list[_Pa]:
    """Each cluster's team, with skills and staggered weekly shifts (as the demo's)."""
    pas: list[_Pa] = []
    for c, size in enumerate(spec.team_sizes):
        cluster = spec.clusters[c]
        offset = rng.randrange(7)
        for position in range(size):
            hours = Decimal(rng.choice(["16", "20", "24", "30", "32", "37.5"]))
            member = people.member(
                MembershipClass.WORKER,
                today - dt.timedelta(rng.randint(60, cluster.opened_days_ago + 200)),
                rng.choice(cluster.home_districts),
                spread_km=1.5,
            )
            profile = PaProfile(
                dbs_checked_on=today - dt.timedelta(rng.randint(14, 700)),
                contracted_weekly_hours=hours,
                hourly_pay_pence=rng.randrange(1290, 1505, 5),
                max_travel_km=Decimal(rng.choice([6, 8, 10, 12, 15])),
                working_time_opt_out=False,
            )
            pas.append(
                _Pa(
                    member=member,
                    profile=profile,
                    clusters=[c],
                    skills=_skills(rng, today, neuro=False),
                    shifts=_shifts(hours, position, offset),
                )
            )
    return pas
