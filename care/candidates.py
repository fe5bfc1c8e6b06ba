"""Ranked cover candidates: which PAs could take a visit, best first, and why.

The search is one set-based SQL statement (`candidates_statement`): every hard rule is a
predicate and every preference a column, evaluated by PostgreSQL for all PAs at once, with
the score computed and ranked in SQL. Nothing here loops over PAs in Python. The rules and
weights are documented for coordinators and developers in docs/cover.md ("Candidates").

Hard rules (a PA failing any one is not a candidate):
1. An availability window contains the whole visit.
2. No active visit (SCHEDULED, COMPLETED) and no active absence (not cancelled) overlaps it.
3. Every need tag of the service user is matched by a PA skill of the same name that has
   not expired on the visit's local (Europe/London) date.
4. A DBS check no older than `coop.dbs_valid_months` months on the visit's date.
5. Home within `pa_profile.max_travel_km` of the person (haversine); skipped when either
   location is unknown.
6. Working Time, unless the PA opted out: (a) hours of active visits in the 7 days centred
   on the visit, plus the visit, at most `coop.max_weekly_hours`; (b) at least
   `coop.min_daily_rest_hours` between the last end on the day before and the first start
   on the visit's day, and between the last end on the visit's day and the first start on
   the day after (the visit included, local calendar days).
7. An active member with a PA profile, other than the visit's current PA, whom the caller
   may see.

Preferences (each part in [0, 1], times its weight; the score is their sum): continuity,
regularPa, sameCluster, samePool, travel, contractHours, fairness. `coop.cover_weights`
overrides any of `DEFAULT_WEIGHTS`. Ties break on distance (unknown last), then PA id.

Sources: `LocalCandidates` searches this co-op's PAs; `PartnerCandidates` one partner
co-op's PAs from the availability its feed gave us (`partner_window`), one source per
ACTIVE partnership granting AVAILABILITY and COVER. A partner source returns raw facts
(`PartnerFacts`: district, distance, continuity count...) and `score_partner` weighs them
with this co-op's weights, the ones the local statement applies, so every candidate is on
one scale. `find_cover_candidates` queries the sources concurrently, each partner source
within a time limit, and merges and ranks what comes back; a partner source that fails or
runs out of time is left out and named (`LeftOut`). docs/cover.md, "Candidates from
partners".
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol
from zoneinfo import ZoneInfo

from sqlalchemy import (
    BigInteger,
    Date,
    DateTime,
    Float,
    Integer,
    Interval,
    Row,
    Select,
    Text,
    and_,
    asc,
    bindparam,
    case,
    cast,
    column,
    desc,
    exists,
    false,
    func,
    literal,
    literal_column,
    not_,
    or_,
    select,
    text,
    true,
    type_coerce,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, TIMESTAMP
from sqlalchemy.sql.elements import ColumnClause, ColumnElement, TextClause, UnaryExpression

from care import policy
from care.enums import (
    ACTIVE_VISIT_STATUSES,
    CommitmentKind,
    CoverRequestStatus,
    ExchangeSide,
    ExchangeStatus,
    PartnerScope,
    PartnershipStatus,
    Role,
)
from care.errors import forbidden, not_found
from care.geography import distance_km, district_centroid, great_circle_km
from care.models import (
    MAX_VISIT_LENGTH,
    Absence,
    AvailabilityWindow,
    ClusterPa,
    ClusterServiceUser,
    Coop,
    CoverRequest,
    LocalAuthority,
    Member,
    PaCommitment,
    PaProfile,
    Partnership,
    PaSkill,
    PoolCluster,
    PoolPa,
    RegularPa,
    ServiceUserProfile,
    Visit,
)
from care.services.access import MANAGERS
from care.viewer import Viewer
from care.weights import DEFAULT_WEIGHTS, weight

log = logging.getLogger("coopnet.candidates")

LOCAL_SOURCE = "LOCAL"
PARTNER_SOURCE = "PARTNER"
# How long one partner source may take before the answer goes without it (seconds; the
# app's COVER_SOURCE_TIMEOUT_SECONDS).
DEFAULT_SOURCE_TIMEOUT = 2.0
LOCAL_ZONE = "Europe/London"
LONDON = ZoneInfo(LOCAL_ZONE)

# Used when the co-op row is missing (a fresh instance): the same as the column defaults.
DEFAULT_DBS_VALID_MONTHS = 36
DEFAULT_MAX_WEEKLY_HOURS = 48.0
DEFAULT_MIN_DAILY_REST_HOURS = 11.0

CONTINUITY_PERIOD = dt.timedelta(weeks=8)
CONTINUITY_FULL_AT = 8  # visits to the person in the period that earn the whole part
FAIRNESS_PERIOD = dt.timedelta(days=28)
WORKING_TIME_WINDOW = dt.timedelta(days=7)  # rolling, centred on the visit
# A PA's visits are read by start time; one starting up to the longest visit the service
# books before a range may still reach into it.
LONGEST_VISIT = MAX_VISIT_LENGTH

ACTIVE = tuple(s.value for s in ACTIVE_VISIT_STATUSES)

# Runs one read statement: the GraphQL context's `rows` (which counts statements), or
# `session_fetch(session)`.
Fetch = Callable[[Select], Awaitable[Sequence[Row[Any]]]]


@dataclass(frozen=True)
class ScoreParts:
    """Each preference's weighted contribution to the score."""

    continuity: float
    regular_pa: float
    same_cluster: float
    same_pool: float
    travel: float
    contract_hours: float
    fairness: float


@dataclass(frozen=True)
class Candidate:
    """One of this co-op's PAs, scored by the local statement."""

    pa_id: int
    source: str
    score: float
    parts: ScoreParts
    distance_km: float | None
    visits_to_person_last_8_weeks: int
    is_regular_pa: bool
    same_cluster: bool
    same_pool: bool
    hours_in_week: float  # active visit hours already booked in the rolling 7-day window
    contracted_weekly_hours: float
    covers_last_28_days: int

    @property
    def order_key(self) -> tuple[Any, ...]:
        return (self.source != LOCAL_SOURCE, self.source, self.pa_id)


@dataclass(frozen=True)
class Partner:
    """A partner co-op whose PAs may cover: public facts from its manifest."""

    id: int  # the partnership
    coop_name: str | None
    base_url: str
    home_la_code: str | None
    home_la_name: str | None
    last_sync_at: dt.datetime | None  # when its availability was last applied


@dataclass(frozen=True)
class SharedSkill:
    name: str
    expires_on: dt.date | None


@dataclass(frozen=True)
class PartnerFacts:
    """What a partner source knows of one of the partner's PAs who passed the hard rules:
    raw facts, not yet weighed (`score_partner`)."""

    partner: Partner
    pa_ref: str  # the partner's pseudonymous reference for the PA
    district: str | None
    skills: tuple[SharedSkill, ...]
    travel_km: float
    # From the PA's district centroid to the person; None when either is unknown.
    distance_km: float | None
    # Confirmed exchanges in which this PA covered the person (last 8 weeks).
    visits_to_person_last_8_weeks: int
    # Our cover requests this PA filled through confirmed exchanges (last 28 days).
    covers_last_28_days: int


@dataclass(frozen=True)
class PartnerCandidate:
    """A partner co-op's PA, scored by this co-op's weights. Never one of our PAs: known
    only by the partner's pseudonymous reference."""

    partner: Partner
    pa_ref: str
    source: str
    score: float
    parts: ScoreParts
    distance_km: float | None
    district: str | None
    skills: tuple[SharedSkill, ...]
    travel_km: float
    visits_to_person_last_8_weeks: int
    covers_last_28_days: int

    @property
    def order_key(self) -> tuple[Any, ...]:
        return (self.source != LOCAL_SOURCE, self.source, self.partner.id, self.pa_ref)


AnyCandidate = Candidate | PartnerCandidate


@dataclass(frozen=True)
class CoverTarget:
    """The visit to cover, as a candidate source needs it."""

    visit_id: int
    service_user_id: int
    current_pa_id: int | None
    starts_at: dt.datetime
    ends_at: dt.datetime
    needs: tuple[str, ...]
    # The person's home, else the centroid of their postcode district; None if unknown.
    location: tuple[float, float] | None = None
    # This co-op's weights (`coop.cover_weights` over `DEFAULT_WEIGHTS`).
    weights: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_WEIGHTS))
    # Partner co-ops whose PAs may cover (ACTIVE, granting AVAILABILITY and COVER).
    partners: tuple[Partner, ...] = ()

    @property
    def day(self) -> dt.date:
        """The visit's London date (skills must not lapse before it)."""
        return self.starts_at.astimezone(LONDON).date()


class CandidateSource(Protocol):
    """Somewhere candidates come from: this co-op, or a partner co-op. A source returns
    either candidates scored by the local statement or a partner's raw facts, which
    `find_cover_candidates` weighs with this co-op's weights."""

    name: str

    async def candidates(
        self, viewer: Viewer, target: CoverTarget, limit: int
    ) -> Sequence[Candidate | PartnerFacts]: ...


LeftOutReason = Literal["TIMED_OUT", "FAILED"]


@dataclass(frozen=True)
class LeftOut:
    """A source whose candidates are missing from an answer, and why."""

    source: str
    partner: Partner | None
    reason: LeftOutReason


@dataclass(frozen=True)
class CoverCandidates:
    """The answer: candidates from every source that answered, best first, and the
    sources left out."""

    candidates: list[AnyCandidate]
    left_out: list[LeftOut]
    # Asked for (`include_excluded`): the PAs of the person's teams and pools who are not
    # candidates, each with the rules that rule them out; None when not asked for.
    excluded: list[Exclusion] | None = None


# --- the statement ------------------------------------------------------------------------
#
# Constants are written into the SQL (`_k`), never sent as parameters: the statement text
# is the same for every request, and PostgreSQL's cached generic plan can still match the
# partial indexes on visit status and fold the time zone arithmetic. Only the visit id, the
# request time, the caller's identity, the limit and the optional PA ids are parameters.


def _k(value: str | float) -> ColumnElement[Any]:
    """A constant of this module, rendered inline in the SQL."""
    return literal(value, literal_execute=True)


def _interval(period: dt.timedelta) -> ColumnElement[dt.timedelta]:
    return literal_column(f"interval '{int(period.total_seconds())} seconds'", Interval)


def _f(value: Any) -> ColumnElement[float]:
    return cast(value, Float)


def _hours(interval: Any) -> ColumnElement[float]:
    return _f(func.extract("epoch", interval)) / _k(3600.0)


def _local(moment: Any) -> ColumnElement[dt.datetime]:
    """A point in time as London wall-clock time (timestamp without time zone)."""
    return func.timezone(_k(LOCAL_ZONE), moment)


def _at_local(day: Any) -> ColumnElement[dt.datetime]:
    """Local midnight starting a date (or a local timestamp), as a point in time."""
    return func.timezone(_k(LOCAL_ZONE), cast(day, TIMESTAMP))


def _weight(weights: Any, name: str) -> ColumnElement[float]:
    """The co-op's weight for a part (`care.weights.weight`: the rule `Coop.coverRules`
    shows too)."""
    return weight(weights, name).label(f"w_{name}")


def _target(visit_id: Any) -> Any:
    """The visit with everything the rules need about it, its person and the co-op."""
    su = Member.__table__.alias("su")
    starts = func.lower(Visit.during)
    ends = func.upper(Visit.during)
    day = cast(_local(starts), Date)
    monday = func.date_trunc(_k("week"), cast(day, TIMESTAMP))
    half = _interval(WORKING_TIME_WINDOW / 2)
    day_before, day_after_end = _at_local(day - _k(1)), _at_local(day + _k(2))
    week_from = _at_local(monday)
    week_to = _at_local(monday + _interval(dt.timedelta(days=7)))
    reach_from = func.least(starts - half, week_from, day_before) - _interval(LONGEST_VISIT)
    reach_to = func.greatest(ends + half, week_to, day_after_end)
    weights = type_coerce(func.coalesce(Coop.cover_weights, literal_column("'{}'::jsonb")), JSONB)
    return (
        select(
            Visit.id.label("visit_id"),
            Visit.service_user_id,
            Visit.pa_id.label("current_pa_id"),
            Visit.during,
            starts.label("starts_at"),
            ends.label("ends_at"),
            _hours(ends - starts).label("hours"),
            day.label("day"),
            su.c.latitude,
            su.c.longitude,
            ServiceUserProfile.needs,
            func.coalesce(Coop.dbs_valid_months, _k(DEFAULT_DBS_VALID_MONTHS)).label("dbs_months"),
            _f(func.coalesce(Coop.max_weekly_hours, _k(DEFAULT_MAX_WEEKLY_HOURS))).label(
                "max_hours"
            ),
            _f(func.coalesce(Coop.min_daily_rest_hours, _k(DEFAULT_MIN_DAILY_REST_HOURS))).label(
                "rest_hours"
            ),
            # The Working Time window, the local days around the visit, its local week.
            (starts - half).label("wtr_from"),
            (ends + half).label("wtr_to"),
            day_before.label("day_before"),
            _at_local(day).label("day_start"),
            _at_local(day + _k(1)).label("day_after"),
            day_after_end.label("day_after_end"),
            week_from.label("week_from"),
            week_to.label("week_to"),
            # The PA's visits to read: starting from a day before the earliest of these to
            # the end of the latest, as singleton ranges for a btree range scan.
            func.tstzrange(reach_from, reach_from, _k("[]")).label("reach_from"),
            func.tstzrange(reach_to, reach_to, _k("[]")).label("reach_to"),
            *(_weight(weights, name) for name in DEFAULT_WEIGHTS),
        )
        .join(su, su.c.id == Visit.service_user_id)
        .join(ServiceUserProfile, ServiceUserProfile.member_id == Visit.service_user_id)
        .outerjoin(Coop, true())
        .where(Visit.id == visit_id)
        .cte("t")
    )


def _distance_km(t: Any, pa: Any) -> ColumnElement[float]:
    """Great-circle distance from the PA's home to the person; NULL if either location is
    unknown."""
    return great_circle_km(t.c.latitude, t.c.longitude, pa.latitude, pa.longitude)


def _active(visit: Any = Visit) -> ColumnElement[bool]:
    """The visit holds its PA's time (what the exclusion constraint covers)."""
    return visit.status.in_([_k(s) for s in ACTIVE])  # type: ignore[no-any-return]


def _away(t: Any, pa_id: Any) -> ColumnElement[bool]:
    """Rule 2: an absence of the PA (not cancelled) overlaps the visit."""
    return exists().where(
        Absence.pa_id == pa_id,
        Absence.cancelled_at.is_(None),
        Absence.during.op("&&")(t.c.during),
    )


def _held(t: Any, pa_id: Any) -> ColumnElement[bool]:
    """Rule 2: a hold for a partner co-op (cross-boundary cover) takes the PA's time as a
    visit does."""
    return exists().where(
        PaCommitment.pa_id == pa_id,
        PaCommitment.kind == _k(CommitmentKind.HOLD.value),
        PaCommitment.during.op("&&")(t.c.during),
    )


def _load(t: Any, pa_id: Any) -> Any:
    """Rules 2 (visits) and 6, and the hours booked: one pass over the PA's active visits
    around the visit (a btree range scan, see migration 0003), aggregated with filters, as
    a LATERAL subquery correlated to `pa_id`. Plain timestamp arithmetic: cheaper than
    range operators, and run for every PA."""
    start, end = func.lower(Visit.during), func.upper(Visit.during)

    def overlaps(lo: Any, hi: Any) -> ColumnElement[bool]:
        return and_(start < hi, end > lo)

    def clipped_hours(lo: Any, hi: Any) -> ColumnElement[float]:
        inside = func.least(end, hi) - func.greatest(start, lo)
        return func.coalesce(_hours(func.sum(inside).filter(overlaps(lo, hi))), _k(0.0))

    def starting(lo: Any, hi: Any) -> ColumnElement[bool]:
        return and_(start >= lo, start < hi)

    return (
        select(
            func.coalesce(func.bool_or(overlaps(t.c.starts_at, t.c.ends_at)), false()).label(
                "clash"
            ),
            clipped_hours(t.c.wtr_from, t.c.wtr_to).label("window_hours"),
            clipped_hours(t.c.week_from, t.c.week_to).label("week_hours"),
            func.max(end).filter(starting(t.c.day_before, t.c.day_start)).label("before_end"),
            func.min(start).filter(starting(t.c.day_start, t.c.day_after)).label("day_first"),
            func.max(end).filter(starting(t.c.day_start, t.c.day_after)).label("day_last"),
            func.min(start).filter(starting(t.c.day_after, t.c.day_after_end)).label("after_start"),
        )
        .where(
            Visit.pa_id == pa_id,
            _active(),
            # Ranges sort by lower bound first: this selects visits by start time.
            Visit.during >= t.c.reach_from,
            Visit.during < t.c.reach_to,
        )
        .lateral("load")
    )


def _rested(t: Any, load: Any) -> ColumnElement[bool]:
    """Rule 6b: the co-op's daily rest before and after the visit's working day."""
    return and_(
        or_(
            load.c.before_end.is_(None),
            _hours(func.least(load.c.day_first, t.c.starts_at) - load.c.before_end)
            >= t.c.rest_hours,
        ),
        or_(
            load.c.after_start.is_(None),
            _hours(load.c.after_start - func.greatest(load.c.day_last, t.c.ends_at))
            >= t.c.rest_hours,
        ),
    )


def _within_week(t: Any, opt_out: Any, load: Any) -> ColumnElement[bool]:
    """Rule 6a: the hours in the Working Time window, with the visit, within the co-op's
    weekly limit. The opt-out (regulation 5) lifts the weekly limit only: daily rest
    still applies."""
    return or_(opt_out, load.c.window_hours + t.c.hours <= t.c.max_hours)


def candidates_statement(
    viewer: Viewer,
    visit_id: int,
    *,
    limit: int | None,
    pa_ids: Sequence[int] | None = None,
) -> Select:
    """The eligible PAs for a visit with their score, parts and facts, best first.

    `limit` cuts the ranked list (None: all). `pa_ids` restricts the search to those PAs
    (e.g. to check that an offer goes to a candidate). Only PAs the viewer may see as
    members are returned (`care.policy.member_visible`); the caller checks who may ask.

    The search itself (`_ranked`) is built and compiled once per shape and process: it is
    large, and building it or even computing SQLAlchemy's cache key for it costs more
    Python time per request than PostgreSQL needs to run it. Each request only binds its
    values and wraps it in the viewer's visibility rule, the order and the limit.
    """
    sees_all = viewer.role is Role.ADMIN
    limited = sees_all and limit is not None  # others are limited after the rule
    search, columns = _compiled(limited=limited, restricted=pa_ids is not None)
    values: dict[str, Any] = {
        "visit_id": visit_id,
        "now": viewer.now,
        "continuity_from": viewer.now - CONTINUITY_PERIOD,
        "fairness_from": viewer.now - FAIRNESS_PERIOD,
    }
    if limited:
        values["limit"] = limit
    if pa_ids is not None:
        values["pa_ids"] = list(pa_ids)
    found = search.bindparams(**values).columns(*columns).subquery("found")
    stmt = select(found).order_by(*_order(found))
    if not sees_all:
        stmt = stmt.where(
            select(Member.id)
            .where(Member.id == found.c.pa_id, policy.member_visible(viewer))
            .exists()
        )
    return stmt.limit(limit) if limit is not None else stmt


def _order(ranked: Any) -> list[ColumnElement[Any]]:
    """Best first: score, then shorter distance (unknown last), then PA id."""
    return [ranked.c.score.desc(), ranked.c.distance_km.asc().nulls_last(), ranked.c.pa_id]


# The search's parameters: everything else in it is a constant.
PARAMETERS: dict[str, Any] = {
    "visit_id": BigInteger(),
    "now": DateTime(timezone=True),
    "continuity_from": DateTime(timezone=True),
    "fairness_from": DateTime(timezone=True),
    "limit": Integer(),
    "pa_ids": ARRAY(BigInteger),
}


@functools.cache
def _compiled(*, limited: bool, restricted: bool) -> tuple[TextClause, list[ColumnClause[Any]]]:
    """`_ranked` as PostgreSQL SQL text with named parameters, and its result columns."""
    stmt = _ranked(limited=limited, restricted=restricted)
    compiled = stmt.compile(
        dialect=postgresql.psycopg2.dialect(paramstyle="named"),  # no casts on binds
        compile_kwargs={"render_postcompile": True},  # constants (`_k`) inline
    )
    names = set(compiled.params)
    assert names <= set(PARAMETERS), f"unexpected parameters in the candidate search: {names}"
    text_stmt = text(compiled.string).bindparams(
        *(bindparam(name, type_=PARAMETERS[name]) for name in sorted(names))
    )
    columns = [column(str(c.key), c.type) for c in stmt.selected_columns]
    return text_stmt, columns


@functools.cache
def _ranked(*, limited: bool, restricted: bool) -> Select:
    """Every eligible PA, ranked, for any viewer: the statement behind
    `candidates_statement`, with the request's values as named parameters."""
    now = bindparam("now", None, type_=DateTime(timezone=True))
    continuity_from = bindparam("continuity_from", None, type_=DateTime(timezone=True))
    fairness_from = bindparam("fairness_from", None, type_=DateTime(timezone=True))
    t = _target(bindparam("visit_id", None, type_=BigInteger))

    # Rules 1, 4, 5, 7: cheap tests per PA, starting from the availability windows that
    # contain the visit (SP-GiST index on during). Materialised, so that the costlier
    # tests below run on this shorter list only.
    pa = Member.__table__.alias("pa_member")
    distance = select(_distance_km(t, pa.c).label("km")).correlate(t, pa).lateral("distance")
    km = distance.c.km
    near_q = (
        select(
            PaProfile.member_id.label("pa_id"),
            _f(PaProfile.max_travel_km).label("max_km"),
            _f(PaProfile.contracted_weekly_hours).label("contracted"),
            PaProfile.working_time_opt_out.label("opt_out"),
            km,
        )
        .select_from(t)
        .join(AvailabilityWindow, AvailabilityWindow.during.op("@>")(t.c.during))
        .join(PaProfile, PaProfile.member_id == AvailabilityWindow.pa_id)
        .join(pa, pa.c.id == PaProfile.member_id)
        .join(distance, true())
        .where(
            pa.c.active,
            PaProfile.member_id.is_distinct_from(t.c.current_pa_id),
            PaProfile.dbs_checked_on >= t.c.day - func.make_interval(_k(0), t.c.dbs_months),
            or_(km.is_(None), km <= PaProfile.max_travel_km),
        )
    )
    if restricted:
        pa_ids = cast(bindparam("pa_ids", None), ARRAY(BigInteger))  # untyped: no "::" in text
        near_q = near_q.where(PaProfile.member_id == func.any(pa_ids))
    near = near_q.cte("near").prefix_with("MATERIALIZED")

    # Rules 2 (absences) and 3 (skills: no need of the person lacks a skill in date).
    need = func.unnest(t.c.needs).table_valued("need").alias("need")
    lacks_skill = (
        select(_k(1))
        .select_from(need)
        .where(
            ~exists()
            .where(
                PaSkill.pa_id == near.c.pa_id,
                PaSkill.skill == need.c.need,
                or_(PaSkill.expires_on.is_(None), PaSkill.expires_on >= t.c.day),
            )
            .correlate_except(PaSkill)  # near and t come from two levels up
        )
        .exists()
    )
    away = _away(t, near.c.pa_id)
    held = _held(t, near.c.pa_id)
    eligible = (
        select(near)
        .select_from(near)
        .join(t, true())
        .where(not_(lacks_skill), not_(away), not_(held))
        .cte("eligible")
    )

    # Rules 2 (visits) and 6, and the hours booked: one pass over each PA's active visits
    # around the visit (see `_load`).
    load = _load(t, eligible.c.pa_id)
    working_time = and_(_within_week(t, eligible.c.opt_out, load), _rested(t, load))

    # Preferences.
    start = func.lower(Visit.during)
    continuity_visits = (
        select(Visit.pa_id, func.count().label("n"))
        .select_from(t)
        .join(
            Visit,
            and_(
                Visit.service_user_id == t.c.service_user_id,
                Visit.during.op("&&")(func.tstzrange(continuity_from, now)),
            ),
        )
        .where(_active(), Visit.pa_id.is_not(None), start >= continuity_from, start < now)
        .group_by(Visit.pa_id)
        .cte("continuity")
    )
    person_clusters = select(ClusterServiceUser.cluster_id).where(
        ClusterServiceUser.service_user_id == t.c.service_user_id
    )
    is_regular = exists().where(
        RegularPa.service_user_id == t.c.service_user_id, RegularPa.pa_id == eligible.c.pa_id
    )
    in_cluster = exists().where(
        ClusterPa.pa_id == eligible.c.pa_id, ClusterPa.cluster_id.in_(person_clusters)
    )
    in_pool = exists().where(
        PoolPa.pa_id == eligible.c.pa_id,
        PoolPa.pool_id.in_(
            select(PoolCluster.pool_id).where(PoolCluster.cluster_id.in_(person_clusters))
        ),
    )
    covers = (
        select(func.count())
        .where(
            CoverRequest.filled_by_pa_id == eligible.c.pa_id,
            CoverRequest.status == _k(CoverRequestStatus.FILLED.value),
            CoverRequest.closed_at >= fairness_from,
        )
        .scalar_subquery()
    )
    visits_to_person = func.coalesce(continuity_visits.c.n, _k(0))
    zero, one = _k(0.0), _k(1.0)
    facts = (
        select(
            eligible.c.pa_id,
            eligible.c.km,
            eligible.c.contracted,
            load.c.window_hours,
            visits_to_person.label("visits_to_person"),
            is_regular.label("is_regular"),
            in_cluster.label("in_cluster"),
            in_pool.label("in_pool"),
            covers.label("covers"),
            # The parts before weighting, each in [0, 1].
            func.least(_f(visits_to_person) / _k(float(CONTINUITY_FULL_AT)), one).label(
                "p_continuity"
            ),
            case(
                (eligible.c.km.is_(None), zero),
                (eligible.c.max_km <= zero, one),
                else_=func.greatest(zero, one - eligible.c.km / eligible.c.max_km),
            ).label("p_travel"),
            case(
                (eligible.c.contracted <= zero, zero),
                else_=func.least(
                    one,
                    func.greatest(
                        zero,
                        (eligible.c.contracted - load.c.week_hours) / eligible.c.contracted,
                    ),
                ),
            ).label("p_contract"),
            *(t.c[f"w_{name}"] for name in DEFAULT_WEIGHTS),
        )
        .select_from(eligible)
        .join(t, true())
        .join(load, true())
        .outerjoin(continuity_visits, continuity_visits.c.pa_id == eligible.c.pa_id)
        .where(not_(load.c.clash), working_time)
        .cte("facts")
        .prefix_with("MATERIALIZED")  # the EXISTS columns are computed once per PA
    )

    def flag(column: Any) -> ColumnElement[float]:
        return case((column, one), else_=zero)

    parts = {
        "continuity": facts.c.w_continuity * facts.c.p_continuity,
        "regular_pa": facts.c.w_regularPa * flag(facts.c.is_regular),
        "same_cluster": facts.c.w_sameCluster * flag(facts.c.in_cluster),
        "same_pool": facts.c.w_samePool * flag(facts.c.in_pool),
        "travel": facts.c.w_travel * facts.c.p_travel,
        "contract_hours": facts.c.w_contractHours * facts.c.p_contract,
        "fairness": facts.c.w_fairness / (one + _f(facts.c.covers)),
    }
    scored = select(
        facts.c.pa_id,
        facts.c.km.label("distance_km"),
        facts.c.visits_to_person,
        facts.c.is_regular,
        facts.c.in_cluster,
        facts.c.in_pool,
        facts.c.window_hours.label("hours_in_week"),
        facts.c.contracted.label("contracted_weekly_hours"),
        facts.c.covers,
        *(expr.label(f"part_{name}") for name, expr in parts.items()),
    ).subquery("scored")
    score = sum((scored.c[f"part_{name}"] for name in parts), start=zero)
    ranked = select(scored, score.label("score")).subquery("ranked")
    stmt = select(ranked).order_by(*_order(ranked))
    if limited:
        stmt = stmt.limit(bindparam("limit", None, type_=Integer))
    return stmt


def candidate_from_row(row: Row[Any], source: str = LOCAL_SOURCE) -> Candidate:
    return Candidate(
        pa_id=int(row.pa_id),
        source=source,
        score=float(row.score),
        parts=ScoreParts(
            continuity=float(row.part_continuity),
            regular_pa=float(row.part_regular_pa),
            same_cluster=float(row.part_same_cluster),
            same_pool=float(row.part_same_pool),
            travel=float(row.part_travel),
            contract_hours=float(row.part_contract_hours),
            fairness=float(row.part_fairness),
        ),
        distance_km=None if row.distance_km is None else float(row.distance_km),
        visits_to_person_last_8_weeks=int(row.visits_to_person),
        is_regular_pa=bool(row.is_regular),
        same_cluster=bool(row.in_cluster),
        same_pool=bool(row.in_pool),
        hours_in_week=float(row.hours_in_week),
        contracted_weekly_hours=float(row.contracted_weekly_hours),
        covers_last_28_days=int(row.covers),
    )


# --- why a PA is not a candidate ----------------------------------------------------------
#
# The same hard rules as `_ranked`, each as a boolean column per PA instead of a filter, for
# the PAs a coordinator would look to (the teams of the person's clusters and the pools
# serving them), or for given PAs (the PAs of a cluster or pool an offer skipped). One
# statement, whatever the number of PAs. Kept apart from `_ranked` so the candidate search
# itself stays as lean as it is; both build their rules from the same helpers (`_away`,
# `_held`, `_load`, `_rested`, `_within_week`) and `tests/care/test_candidates.py` checks
# that a PA is a candidate exactly when no rule here excludes them.

# The rules, in the order they are reported (docs/cover.md, "Why a PA is not a candidate").
EXCLUSION_RULES: tuple[str, ...] = (
    "NO_AVAILABILITY",  # 1: no availability window contains the whole visit
    "OVERLAP",  # 2: an active visit of the PA overlaps it
    "ABSENT",  # 2: an absence (not cancelled) overlaps it
    "HELD_FOR_PARTNER",  # 2: the PA's time is held for a partner co-op's cover
    "MISSING_SKILL",  # 3: a need of the person the PA has no skill for
    "EXPIRED_SKILL",  # 3: a need whose skill the PA has, lapsed before the visit's date
    "DBS_OUT_OF_DATE",  # 4: no DBS check, or one older than coop.dbs_valid_months
    "TOO_FAR",  # 5: home further from the person than the PA's travel limit
    "WEEKLY_HOURS_LIMIT",  # 6a: the Working Time weekly limit (not opted out)
    "DAILY_REST",  # 6b: daily rest before or after the visit's working day
    "INACTIVE",  # 7: not an active member
    "CURRENT_PA",  # 7: already the visit's PA
)


@dataclass(frozen=True)
class Exclusion:
    """One of our PAs checked against the hard rules for a visit, and the rules they fail
    (none: a candidate)."""

    pa_id: int
    rules: tuple[str, ...]
    missing_skills: tuple[str, ...] = ()  # the person's needs the PA has no skill for
    expired_skills: tuple[str, ...] = ()  # needs whose skill lapsed before the visit

    @property
    def excluded(self) -> bool:
        return bool(self.rules)


def exclusions_statement(
    viewer: Viewer, visit_id: int, *, pa_ids: Sequence[int] | None = None
) -> Select:
    """Every PA considered for a visit, one row each, with one boolean column per hard
    rule (true: the PA fails it) and the needs they lack skills for; by PA id.

    Considered: `pa_ids` when given, else the PAs on the team of a cluster the person
    belongs to or in a pool serving one. Only PAs the viewer may see as members; the
    caller checks who may ask. Built and compiled once per shape and process, like the
    candidate search."""
    restricted = pa_ids is not None
    search, columns = _compiled_exclusions(restricted=restricted)
    values: dict[str, Any] = {"visit_id": visit_id}
    if pa_ids is not None:
        values["pa_ids"] = list(pa_ids)
    found = search.bindparams(**values).columns(*columns).subquery("checked")
    stmt = select(found).order_by(found.c.pa_id)
    if viewer.role is not Role.ADMIN:
        stmt = stmt.where(
            select(Member.id)
            .where(Member.id == found.c.pa_id, policy.member_visible(viewer))
            .exists()
        )
    return stmt


@functools.cache
def _compiled_exclusions(*, restricted: bool) -> tuple[TextClause, list[ColumnClause[Any]]]:
    stmt = _exclusions(restricted=restricted)
    compiled = stmt.compile(
        dialect=postgresql.psycopg2.dialect(paramstyle="named"),
        compile_kwargs={"render_postcompile": True},
    )
    names = set(compiled.params)
    assert names <= set(PARAMETERS), f"unexpected parameters in the exclusions: {names}"
    text_stmt = text(compiled.string).bindparams(
        *(bindparam(name, type_=PARAMETERS[name]) for name in sorted(names))
    )
    columns = [column(str(c.key), c.type) for c in stmt.selected_columns]
    return text_stmt, columns


@functools.cache
def _exclusions(*, restricted: bool) -> Select:
    t = _target(bindparam("visit_id", None, type_=BigInteger))
    if restricted:
        pa_ids = cast(bindparam("pa_ids", None), ARRAY(BigInteger))
        ids: Any = select(func.unnest(pa_ids).label("pa_id")).distinct()
    else:
        # The teams of the person's clusters, and the pools serving those clusters.
        ids = (
            select(ClusterPa.pa_id)
            .select_from(t)
            .join(ClusterServiceUser, ClusterServiceUser.service_user_id == t.c.service_user_id)
            .join(ClusterPa, ClusterPa.cluster_id == ClusterServiceUser.cluster_id)
            .union(
                select(PoolPa.pa_id)
                .select_from(t)
                .join(
                    ClusterServiceUser,
                    ClusterServiceUser.service_user_id == t.c.service_user_id,
                )
                .join(PoolCluster, PoolCluster.cluster_id == ClusterServiceUser.cluster_id)
                .join(PoolPa, PoolPa.pool_id == PoolCluster.pool_id)
            )
        )
    wanted = ids.cte("wanted")
    pa = Member.__table__.alias("pa_member")
    distance = select(_distance_km(t, pa.c).label("km")).correlate(t, pa).lateral("distance")
    people = (
        select(
            PaProfile.member_id.label("pa_id"),
            PaProfile.max_travel_km.label("max_km"),
            PaProfile.dbs_checked_on,
            PaProfile.working_time_opt_out.label("opt_out"),
            pa.c.active,
            distance.c.km,
        )
        .select_from(wanted)
        .join(PaProfile, PaProfile.member_id == wanted.c.pa_id)
        .join(pa, pa.c.id == PaProfile.member_id)
        .join(t, true())
        .join(distance, true())
        .cte("considered")
        .prefix_with("MATERIALIZED")
    )
    need = func.unnest(t.c.needs).table_valued("need").alias("need")

    def needs_where(*condition: Any) -> Any:
        """The person's needs meeting `condition`, as a text array (NULL: none)."""
        return (
            select(func.array_agg(need.c.need))
            .select_from(need)
            .where(*condition)
            .correlate_except(need)
            .scalar_subquery()
        )

    has_skill = (
        exists()
        .where(PaSkill.pa_id == people.c.pa_id, PaSkill.skill == need.c.need)
        .correlate_except(PaSkill)  # people and t come from two levels up
    )
    lapsed = (
        exists()
        .where(
            PaSkill.pa_id == people.c.pa_id,
            PaSkill.skill == need.c.need,
            PaSkill.expires_on < t.c.day,
        )
        .correlate_except(PaSkill)
    )
    available = exists().where(
        AvailabilityWindow.pa_id == people.c.pa_id,
        AvailabilityWindow.during.op("@>")(t.c.during),
    )
    load = _load(t, people.c.pa_id)
    dbs_ok = people.c.dbs_checked_on >= t.c.day - func.make_interval(_k(0), t.c.dbs_months)
    return (
        select(
            people.c.pa_id,
            not_(available).label("no_availability"),
            load.c.clash.label("overlap"),
            _away(t, people.c.pa_id).label("absent"),
            _held(t, people.c.pa_id).label("held_for_partner"),
            needs_where(not_(has_skill)).label("missing_skills"),
            needs_where(lapsed).label("expired_skills"),
            not_(func.coalesce(dbs_ok, false())).label("dbs_out_of_date"),
            func.coalesce(people.c.km > people.c.max_km, false()).label("too_far"),
            not_(_within_week(t, people.c.opt_out, load)).label("weekly_hours_limit"),
            not_(_rested(t, load)).label("daily_rest"),
            not_(people.c.active).label("inactive"),
            func.coalesce(people.c.pa_id == t.c.current_pa_id, false()).label("current_pa"),
        )
        .select_from(people)
        .join(t, true())
        .join(load, true())
    )


def exclusion_from_row(row: Row[Any]) -> Exclusion:
    if row.current_pa:
        # The visit's own PA: the other rules are about taking a visit they already have
        # (its time overlaps itself), so only this one is reported.
        return Exclusion(pa_id=int(row.pa_id), rules=("CURRENT_PA",))
    missing = tuple(row.missing_skills or ())
    expired = tuple(row.expired_skills or ())
    failed = {
        "NO_AVAILABILITY": row.no_availability,
        "OVERLAP": row.overlap,
        "ABSENT": row.absent,
        "HELD_FOR_PARTNER": row.held_for_partner,
        "MISSING_SKILL": bool(missing),
        "EXPIRED_SKILL": bool(expired),
        "DBS_OUT_OF_DATE": row.dbs_out_of_date,
        "TOO_FAR": row.too_far,
        "WEEKLY_HOURS_LIMIT": row.weekly_hours_limit,
        "DAILY_REST": row.daily_rest,
        "INACTIVE": row.inactive,
        "CURRENT_PA": False,
    }
    return Exclusion(
        pa_id=int(row.pa_id),
        rules=tuple(rule for rule in EXCLUSION_RULES if failed[rule]),
        missing_skills=missing,
        expired_skills=expired,
    )


# --- skills the team lacks ---------------------------------------------------------------


def cover_gaps_select(viewer: Viewer) -> Select:
    """For the open cover requests of the people of the clusters the viewer manages
    (admins: any; coordinators: the clusters they support; anyone else: none), visits not
    over at the viewer's `now` (`policy.now`, a parameter: a statement reused later binds
    its own time): each need that no active PA on the cluster's team has a skill in date
    for on the visit's London date, per cluster, with the number of such requests. Read
    one cluster's with `cover_gaps_filter`, sorted by `COVER_GAP_ORDER` (most requests
    first, then by name): the `coverGaps` field (`schema.candidates`, both read paths).
    One statement, whatever the number of requests or PAs."""
    if viewer.role is Role.ADMIN:
        manages: ColumnElement[bool] = true()
    elif viewer.role is Role.COORDINATOR and viewer.member_id is not None:
        manages = ClusterServiceUser.cluster_id.in_(policy.supported_cluster_ids(viewer))
    else:
        manages = false()
    starts = func.lower(Visit.during)
    requests = (
        select(
            ClusterServiceUser.cluster_id,
            CoverRequest.id.label("request_id"),
            starts.label("starts_at"),
            cast(_local(starts), Date).label("day"),
            ServiceUserProfile.needs,
        )
        .join(Visit, Visit.id == CoverRequest.visit_id)
        .join(ClusterServiceUser, ClusterServiceUser.service_user_id == Visit.service_user_id)
        .join(ServiceUserProfile, ServiceUserProfile.member_id == Visit.service_user_id)
        .where(
            manages,
            CoverRequest.status == CoverRequestStatus.OPEN.value,
            func.upper(Visit.during) > policy.now(viewer),
        )
        # A subquery, not a CTE: one operation may read two clusters' gaps (a CTE's name
        # is the statement's).
        .subquery("open_requests")
    )
    # The active PAs on the team of the request's cluster.
    team = (
        select(ClusterPa.pa_id)
        .join(Member, Member.id == ClusterPa.pa_id)
        .where(ClusterPa.cluster_id == requests.c.cluster_id, Member.active)
        .correlate(requests)
    )
    need = func.unnest(requests.c.needs).table_valued("need").lateral("need")
    held_in_date = (
        exists()
        .where(
            PaSkill.pa_id.in_(team),
            PaSkill.skill == need.c.need,
            or_(PaSkill.expires_on.is_(None), PaSkill.expires_on >= requests.c.day),
        )
        .correlate_except(PaSkill, ClusterPa, Member)
    )
    lapsed = (
        select(func.count())
        .where(
            PaSkill.pa_id.in_(team),
            PaSkill.skill == need.c.need,
            PaSkill.expires_on < requests.c.day,
        )
        .correlate_except(PaSkill, ClusterPa, Member)
        .scalar_subquery()
    )
    gaps = (
        select(
            requests.c.cluster_id,
            requests.c.request_id,
            requests.c.starts_at,
            need.c.need,
            lapsed.label("lapsed"),
        )
        .select_from(requests)
        .join(need, true())
        .where(not_(held_in_date))
        .subquery("gaps")
    )
    return select(
        gaps.c.cluster_id,
        gaps.c.need,
        func.count(gaps.c.request_id.distinct()).label("requests"),
        func.max(gaps.c.lapsed).label("lapsed_holders"),
        func.min(gaps.c.starts_at).label("first_starts_at"),
    ).group_by(gaps.c.cluster_id, gaps.c.need)


# Most requests first, then by name: by the select's own column names (its subquery is
# built per viewer), as the resolver sorts it and the compiled path reads it.
COVER_GAP_ORDER: tuple[UnaryExpression[Any], ...] = (desc("requests"), asc("need"))


def cover_gaps_filter(stmt: Select, cluster_id: int, prefix: str = "") -> Select:
    """`cover_gaps_select` narrowed to one cluster, a named parameter (`prefix`: see
    `care.queries._visit_filters`). PostgreSQL pushes it down into the open requests."""
    cluster = bindparam(f"{prefix}cluster_id", cluster_id, type_=BigInteger)
    return stmt.where(stmt.selected_columns.cluster_id == cluster)


# --- who may ask, and the visit -----------------------------------------------------------

# The partner's home local authority's name: from its manifest, else our own records.
_HOME_LA_NAME = literal_column(
    "(SELECT e->>'name' FROM jsonb_array_elements(partnership.local_authorities) e "
    "WHERE e->>'gssCode' = partnership.home_la_code LIMIT 1)",
    Text,
)
COVER_PARTNER_SCOPES = [PartnerScope.AVAILABILITY.value, PartnerScope.COVER.value]


def _cover_partners() -> ColumnElement[Any]:
    """The partner co-ops whose PAs may cover, as a JSON array: ACTIVE partnerships
    granting COVER, and AVAILABILITY (their candidates come from the synced windows)."""
    entry = func.jsonb_build_object(
        _k("id"),
        Partnership.id,
        _k("coopName"),
        Partnership.coop_name,
        _k("baseUrl"),
        Partnership.base_url,
        _k("homeLaCode"),
        Partnership.home_la_code,
        _k("homeLaName"),
        func.coalesce(_HOME_LA_NAME, LocalAuthority.name),
        _k("lastSyncAt"),
        Partnership.last_sync_at,
    )
    listed = (
        select(
            func.coalesce(
                func.jsonb_agg(postgresql.aggregate_order_by(entry, Partnership.id)),
                literal_column("'[]'::jsonb"),
            )
        )
        .select_from(Partnership)
        .outerjoin(LocalAuthority, LocalAuthority.gss_code == Partnership.home_la_code)
        .where(
            Partnership.status == _k(PartnershipStatus.ACTIVE.value),
            Partnership.granted_scopes.contains(COVER_PARTNER_SCOPES),
        )
        .scalar_subquery()
    )
    return type_coerce(listed, JSONB)


def target_statement(viewer: Viewer, visit_id: int, *, partners: bool = False) -> Select:
    """The visit if the caller may see it, and whether they manage its service user: the
    rule of `care.services.access.may_manage_service_user`, composed into one read. With
    the person's location, the co-op's weights and (`partners`) the partner co-ops whose
    PAs may cover, so that no source needs another read for them."""
    if viewer.role is Role.ADMIN:
        manages: ColumnElement[bool] = true()
    elif viewer.role is Role.COORDINATOR:
        manages = exists().where(
            ClusterServiceUser.service_user_id == Visit.service_user_id,
            ClusterServiceUser.cluster_id.in_(policy.supported_cluster_ids(viewer)),
        )
    else:
        manages = false()
    su = Member.__table__.alias("su")
    weights = type_coerce(
        func.coalesce(select(Coop.cover_weights).scalar_subquery(), literal_column("'{}'::jsonb")),
        JSONB,
    )
    listed = _cover_partners() if partners else type_coerce(literal_column("NULL"), JSONB)
    return (
        select(
            Visit.id,
            Visit.service_user_id,
            Visit.pa_id,
            func.lower(Visit.during).label("starts_at"),
            func.upper(Visit.during).label("ends_at"),
            ServiceUserProfile.needs,
            manages.label("manages"),
            su.c.latitude,
            su.c.longitude,
            su.c.postcode,
            *(_weight(weights, name) for name in DEFAULT_WEIGHTS),
            listed.label("partners"),
        )
        .join(ServiceUserProfile, ServiceUserProfile.member_id == Visit.service_user_id)
        .join(su, su.c.id == Visit.service_user_id)
        .where(Visit.id == visit_id, policy.visit_visible(viewer))
    )


def _partner(raw: Mapping[str, Any]) -> Partner:
    synced = raw.get("lastSyncAt")
    return Partner(
        id=int(raw["id"]),
        coop_name=raw.get("coopName"),
        base_url=str(raw["baseUrl"]),
        home_la_code=raw.get("homeLaCode"),
        home_la_name=raw.get("homeLaName"),
        last_sync_at=dt.datetime.fromisoformat(synced) if synced else None,
    )


def _location(row: Row[Any]) -> tuple[float, float] | None:
    """The person's home; else the centroid of their postcode district; else unknown."""
    if row.latitude is not None and row.longitude is not None:
        return (float(row.latitude), float(row.longitude))
    return district_centroid(row.postcode) if row.postcode else None


# --- this co-op's PAs ---------------------------------------------------------------------


class LocalCandidates:
    """This co-op's own PAs."""

    name = LOCAL_SOURCE

    def __init__(self, fetch: Fetch) -> None:
        self.fetch = fetch

    async def candidates(self, viewer: Viewer, target: CoverTarget, limit: int) -> list[Candidate]:
        rows = await self.fetch(candidates_statement(viewer, target.visit_id, limit=limit))
        return [candidate_from_row(r, self.name) for r in rows]


# --- a partner co-op's PAs ----------------------------------------------------------------
#
# From what the partner's availability feed gave us (`partner_window`) and our own
# exchanges with it (`cover_exchange`), in one statement per partner co-op: the hard rules
# that can be checked on the shared data, and the raw facts of the preferences. The
# distance rule is applied to the rows it returns, in Python: a PA is placed by the
# centroid of their postcode district, and the centroids ship as a file with the code
# (care/geography.py), not as a table.

LIVE_EXCHANGE = [
    s.value for s in (ExchangeStatus.HELD, ExchangeStatus.ACCEPTED, ExchangeStatus.CONFIRMED)
]
# A cover is filled before its visit starts, so every exchange that counts towards
# fairness (filled in the last 28 days) is for a visit that started at most 28 days ago,
# inside the continuity period: one read of the partner's recent exchanges serves both.
assert FAIRNESS_PERIOD <= CONTINUITY_PERIOD

_PARTNER_SEARCH = f"""
WITH exchanged AS (
    SELECT e.pa_ref,
           count(*) FILTER (
               WHERE v.service_user_id = :service_user_id AND lower(e.during) < :now
           ) AS visits_to_person,
           count(*) FILTER (
               WHERE r.status = '{CoverRequestStatus.FILLED.value}' AND r.filled_by_partner
                 AND r.closed_at >= :fairness_from
           ) AS covers
    FROM cover_exchange e
    LEFT JOIN visit v ON v.id = e.visit_id
    LEFT JOIN cover_request r ON r.id = e.cover_request_id
    WHERE e.partnership_id = :partnership_id
      AND e.side = '{ExchangeSide.REQUESTING.value}'
      AND e.status = '{ExchangeStatus.CONFIRMED.value}'
      AND lower(e.during) >= :continuity_from
    GROUP BY e.pa_ref
),
engaged AS (
    SELECT DISTINCT e.pa_ref
    FROM cover_exchange e
    WHERE e.partnership_id = :partnership_id
      AND e.side = '{ExchangeSide.REQUESTING.value}'
      AND e.status IN ({", ".join(f"'{s}'" for s in LIVE_EXCHANGE)})
      AND e.during && tstzrange(:starts_at, :ends_at)
)
SELECT DISTINCT ON (w.pa_ref)
       w.pa_ref, w.district, w.travel_km, w.skills,
       coalesce(x.visits_to_person, 0) AS visits_to_person,
       coalesce(x.covers, 0) AS covers
FROM partner_window w
JOIN partnership p ON p.id = w.partnership_id
LEFT JOIN exchanged x ON x.pa_ref = w.pa_ref
WHERE w.partnership_id = :partnership_id
  AND p.status = '{PartnershipStatus.ACTIVE.value}'
  AND p.granted_scopes @> ARRAY[{", ".join(f"'{s}'" for s in COVER_PARTNER_SCOPES)}]::text[]
  -- A free period contains the whole visit (GiST index on during).
  AND w.during @> tstzrange(:starts_at, :ends_at)
  -- Not already in a live exchange of ours at that time.
  AND NOT EXISTS (SELECT 1 FROM engaged g WHERE g.pa_ref = w.pa_ref)
  -- No need of the person lacks a skill of the same name in date on the visit's day.
  AND NOT EXISTS (
      SELECT 1 FROM unnest(CAST(:needs AS text[])) AS need(name)
      WHERE NOT EXISTS (
          SELECT 1 FROM jsonb_array_elements(w.skills) AS s(skill)
          WHERE s.skill->>'skill' = need.name
            AND (s.skill->>'expiresOn' IS NULL
                 OR CAST(s.skill->>'expiresOn' AS date) >= :day)))
ORDER BY w.pa_ref, w.received_at DESC, w.ref, w.period
"""


@functools.cache
def _partner_search() -> Any:
    return (
        text(_PARTNER_SEARCH)
        .bindparams(
            bindparam("partnership_id", type_=BigInteger),
            bindparam("service_user_id", type_=BigInteger),
            bindparam("starts_at", type_=DateTime(timezone=True)),
            bindparam("ends_at", type_=DateTime(timezone=True)),
            bindparam("now", type_=DateTime(timezone=True)),
            bindparam("continuity_from", type_=DateTime(timezone=True)),
            bindparam("fairness_from", type_=DateTime(timezone=True)),
            bindparam("needs", type_=ARRAY(Text)),
            bindparam("day", type_=Date),
        )
        .columns(
            column("pa_ref", Text),
            column("district", Text),
            column("travel_km", Float),
            column("skills", JSONB),
            column("visits_to_person", BigInteger),
            column("covers", BigInteger),
        )
    )


def partner_statement(partnership_id: int, target: CoverTarget, now: dt.datetime) -> Select:
    """The partner's PAs who pass the hard rules checkable in SQL for the visit, one row
    per PA, with the raw facts. Nothing from the partnership row or the visit is read
    again: `target` carries them."""
    search = _partner_search().bindparams(
        partnership_id=partnership_id,
        service_user_id=target.service_user_id,
        starts_at=target.starts_at,
        ends_at=target.ends_at,
        now=now,
        continuity_from=now - CONTINUITY_PERIOD,
        fairness_from=now - FAIRNESS_PERIOD,
        needs=list(target.needs),
        day=target.day,
    )
    found = search.subquery("partner_found")
    return select(found)


def _skills(raw: Any) -> tuple[SharedSkill, ...]:
    out = []
    for item in raw or ():
        expires = item.get("expiresOn")
        out.append(
            SharedSkill(
                name=str(item.get("skill")),
                expires_on=dt.date.fromisoformat(expires) if expires else None,
            )
        )
    return tuple(out)


class PartnerCandidates:
    """One partner co-op's PAs, from the availability it shares with us."""

    name = PARTNER_SOURCE

    def __init__(self, partner: Partner, fetch: Fetch) -> None:
        self.partner = partner
        self.fetch = fetch

    async def candidates(
        self, viewer: Viewer, target: CoverTarget, limit: int
    ) -> list[PartnerFacts]:
        # Every PA who passes, not `limit` of them: the order needs this co-op's weights,
        # which `find_cover_candidates` applies to every source's facts at once.
        rows = await self.fetch(partner_statement(self.partner.id, target, viewer.now))
        found: list[PartnerFacts] = []
        for r in rows:
            centre = district_centroid(r.district) if r.district else None
            km = None
            if centre is not None and target.location is not None:
                km = distance_km(centre, target.location)
            travel = float(r.travel_km)
            if km is not None and km > travel:
                continue  # beyond the PA's travel range (unknown location: not applied)
            found.append(
                PartnerFacts(
                    partner=self.partner,
                    pa_ref=r.pa_ref,
                    district=r.district,
                    skills=_skills(r.skills),
                    travel_km=travel,
                    distance_km=km,
                    visits_to_person_last_8_weeks=int(r.visits_to_person),
                    covers_last_28_days=int(r.covers),
                )
            )
        return found


def score_partner(facts: PartnerFacts, weights: Mapping[str, float]) -> PartnerCandidate:
    """A partner's PA weighed with this co-op's weights, by the local statement's formulas
    (docs/cover.md): continuity and travel as for our PAs, fairness over the covers the PA
    gave us, samePool 1 (the partner shares the PA with us through a pool it offers its
    partners), and 0 for what cannot apply to another co-op's PA (a named regular PA, our
    clusters' teams) or is not shared (contracted hours)."""
    km = facts.distance_km
    if km is None:
        travel = 0.0
    elif facts.travel_km <= 0:
        travel = 1.0
    else:
        travel = max(0.0, 1.0 - km / facts.travel_km)
    parts = ScoreParts(
        continuity=weights["continuity"]
        * min(facts.visits_to_person_last_8_weeks / float(CONTINUITY_FULL_AT), 1.0),
        regular_pa=0.0,
        same_cluster=0.0,
        same_pool=weights["samePool"] * 1.0,
        travel=weights["travel"] * travel,
        contract_hours=0.0,
        fairness=weights["fairness"] / (1.0 + facts.covers_last_28_days),
    )
    # Summed in the local statement's order, so equal parts give equal scores.
    score = sum(
        (
            parts.continuity,
            parts.regular_pa,
            parts.same_cluster,
            parts.same_pool,
            parts.travel,
            parts.contract_hours,
            parts.fairness,
        ),
        start=0.0,
    )
    return PartnerCandidate(
        partner=facts.partner,
        pa_ref=facts.pa_ref,
        source=PARTNER_SOURCE,
        score=score,
        parts=parts,
        distance_km=km,
        district=facts.district,
        skills=facts.skills,
        travel_km=facts.travel_km,
        visits_to_person_last_8_weeks=facts.visits_to_person_last_8_weeks,
        covers_last_28_days=facts.covers_last_28_days,
    )


# --- every source together ----------------------------------------------------------------


def rank(candidates: Sequence[AnyCandidate]) -> list[AnyCandidate]:
    """Best first: score, then shorter distance (unknown last), then our own PAs before
    partners', then source, PA id or partner and reference. The same order as the SQL, so
    one source's list keeps its order."""
    return sorted(
        candidates,
        key=lambda c: (-c.score, c.distance_km is None, c.distance_km or 0.0, c.order_key),
    )


def _weighed(
    found: Sequence[Candidate | PartnerFacts], weights: Mapping[str, float]
) -> list[AnyCandidate]:
    return [score_partner(f, weights) if isinstance(f, PartnerFacts) else f for f in found]


async def _bounded(
    source: CandidateSource, viewer: Viewer, target: CoverTarget, limit: int, seconds: float
) -> Sequence[Candidate | PartnerFacts] | LeftOut:
    """A source's answer within `seconds`, or why it is left out. Never raises
    (except when cancelled): a partner source must not fail the answer."""
    partner = getattr(source, "partner", None)
    try:
        async with asyncio.timeout(seconds):
            return await source.candidates(viewer, target, limit)
    except TimeoutError:
        log.warning("cover candidates: source %s timed out after %ss", source.name, seconds)
        return LeftOut(source.name, partner, "TIMED_OUT")
    except Exception:
        log.exception("cover candidates: source %s failed", source.name)
        return LeftOut(source.name, partner, "FAILED")


async def find_cover_candidates(
    fetch: Fetch,
    viewer: Viewer,
    visit_id: int,
    first: int,
    *,
    include_partners: bool = True,
    partner_fetch: Fetch | None = None,
    extra_sources: Sequence[CandidateSource] = (),
    source_seconds: float = DEFAULT_SOURCE_TIMEOUT,
    include_excluded: bool = False,
) -> CoverCandidates:
    """The best `first` candidates for a visit from every source.

    Admins, and coordinators of a cluster the visit's person belongs to, may ask. A visit
    the caller cannot see is NOT_FOUND, like an unknown one; one they see but do not manage
    (a coordinator whose team PA has it) is FORBIDDEN.

    Our PAs come from `fetch`; each partner co-op (with `include_partners`) and each of
    `extra_sources` is a further source, queried concurrently with ours and each within
    `source_seconds`, through `partner_fetch`, which gives each call a database session of
    its own (without it, partners share `fetch` and run one after another, after ours). A
    source that fails or runs out of time is left out and named; our own failing fails
    the answer, as before.

    With `include_excluded`, one more statement (`exclusions_statement`) lists the PAs of
    the person's teams and pools who are not candidates and why; without it nothing more
    is read.
    """
    if viewer.role not in MANAGERS:
        raise forbidden("Only admins and coordinators may look for cover.")
    found = await fetch(target_statement(viewer, visit_id, partners=include_partners))
    if not found:
        raise not_found("visit")
    row = found[0]
    if not row.manages:
        raise forbidden("Only admins and coordinators of this person's cluster may look for cover.")
    target = CoverTarget(
        visit_id=row.id,
        service_user_id=row.service_user_id,
        current_pa_id=row.pa_id,
        starts_at=row.starts_at,
        ends_at=row.ends_at,
        needs=tuple(row.needs or ()),
        location=_location(row),
        weights={name: row._mapping[f"w_{name}"] for name in DEFAULT_WEIGHTS},
        partners=tuple(_partner(p) for p in row.partners or ()),
    )
    others: list[CandidateSource] = [
        PartnerCandidates(p, partner_fetch or fetch) for p in target.partners
    ]
    others.extend(extra_sources)
    ours = LocalCandidates(fetch)
    answers: list[Sequence[Candidate | PartnerFacts] | LeftOut] = []
    if partner_fetch is None and target.partners:
        # One session cannot run two statements at once: one source after another.
        merged: list[AnyCandidate] = list(await ours.candidates(viewer, target, first))
        for source in others:
            answers.append(await _bounded(source, viewer, target, first, source_seconds))
    else:
        tasks = [
            asyncio.create_task(_bounded(s, viewer, target, first, source_seconds)) for s in others
        ]
        try:
            merged = list(await ours.candidates(viewer, target, first))
        except BaseException:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
        answers.extend(await asyncio.gather(*tasks))
    left_out: list[LeftOut] = []
    for answer in answers:
        if isinstance(answer, LeftOut):
            left_out.append(answer)
        else:
            merged.extend(_weighed(answer, target.weights))
    excluded: list[Exclusion] | None = None
    if include_excluded:
        checked = await fetch(exclusions_statement(viewer, target.visit_id))
        excluded = [e for e in map(exclusion_from_row, checked) if e.excluded]
    return CoverCandidates(rank(merged)[:first], left_out, excluded)


def session_fetch(session: Any) -> Fetch:
    """A `Fetch` over an AsyncSession (for services and tests outside a request)."""

    async def fetch(stmt: Select) -> Sequence[Row[Any]]:
        return list((await session.execute(stmt)).all())

    return fetch


def sessions_fetch(sessions: Callable[[], Any]) -> Fetch:
    """A `Fetch` that runs each statement in a session of its own from a session factory,
    so that sources can query concurrently."""

    async def fetch(stmt: Select) -> Sequence[Row[Any]]:
        async with sessions() as session:
            return list((await session.execute(stmt)).all())

    return fetch
