"""Market-shaping figures for a local authority (docs/market.md).

Councils have a duty (Care Act 2014, section 5) to shape their care market; they ask for
what co-ops deliver, where need is unmet, and how the workforce is paid and kept. This
module computes those figures for one local authority over whole calendar months or
quarters, as aggregates in SQL (five statements, whatever the amount of data), then
applies disclosure control (care/disclosure.py) so that no person can be picked out.

The raw figures (`RawPeriod`) are mergeable: counts and sums add up, and every median is
computed from a histogram of whole numbers (pence, minutes, days, PAs), so the figures of
several co-ops can be summed before disclosure control (the network report).
"""

from __future__ import annotations

import datetime as dt
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from care.disclosure import (
    Cell,
    CellKind,
    DisclosureRules,
    Group,
    Shown,
    over_periods,
    protect,
)
from care.enums import ClusterKind, Funding, Role
from care.errors import DomainError, ErrorCode, forbidden
from care.models import LocalAuthority, Partnership
from care.viewer import PrincipalKind, Viewer
from care.wages import floors_on

LONDON = ZoneInfo("Europe/London")
MAX_MONTHS = 36  # one report covers at most three years
FTE_HOURS = 37.5  # contracted hours a week counted as one full-time equivalent


class Granularity(StrEnum):
    MONTH = "MONTH"
    QUARTER = "QUARTER"


class Measure(StrEnum):
    """Every figure of the report, with its unit (the catalogue in docs/market.md)."""

    COOPS_ACTIVE = "COOPS_ACTIVE"
    CLUSTERS = "CLUSTERS"
    PEOPLE_SUPPORTED = "PEOPLE_SUPPORTED"
    HOURS_PLANNED = "HOURS_PLANNED"
    HOURS_DELIVERED = "HOURS_DELIVERED"
    HOURS_MISSED = "HOURS_MISSED"
    HOURS_CANCELLED = "HOURS_CANCELLED"
    HOURS_UNMET = "HOURS_UNMET"
    COVER_REQUESTS_OPENED = "COVER_REQUESTS_OPENED"
    COVER_REQUESTS_FILLED = "COVER_REQUESTS_FILLED"
    COVER_FILL_RATE = "COVER_FILL_RATE"
    MEDIAN_HOURS_TO_FILL = "MEDIAN_HOURS_TO_FILL"
    COVER_HOURS_IMPORTED = "COVER_HOURS_IMPORTED"
    COVER_HOURS_EXPORTED = "COVER_HOURS_EXPORTED"
    MEDIAN_DISTINCT_PAS_PER_28_DAYS = "MEDIAN_DISTINCT_PAS_PER_28_DAYS"
    REGULAR_PA_SHARE = "REGULAR_PA_SHARE"
    PA_HEADCOUNT = "PA_HEADCOUNT"
    PA_FTE = "PA_FTE"
    MEDIAN_HOURLY_PAY = "MEDIAN_HOURLY_PAY"
    LOWER_QUARTILE_HOURLY_PAY = "LOWER_QUARTILE_HOURLY_PAY"
    PAS_BELOW_REAL_LIVING_WAGE = "PAS_BELOW_REAL_LIVING_WAGE"
    NATIONAL_LIVING_WAGE = "NATIONAL_LIVING_WAGE"
    REAL_LIVING_WAGE = "REAL_LIVING_WAGE"
    PA_LEAVERS_LAST_12_MONTHS = "PA_LEAVERS_LAST_12_MONTHS"
    FREE_PA_HOURS_NEXT_4_WEEKS = "FREE_PA_HOURS_NEXT_4_WEEKS"
    REFERRALS_WAITING = "REFERRALS_WAITING"
    MEDIAN_REFERRAL_WAIT_DAYS = "MEDIAN_REFERRAL_WAIT_DAYS"


UNITS: dict[Measure, str] = {
    Measure.COOPS_ACTIVE: "co-ops",
    Measure.CLUSTERS: "clusters",
    Measure.PEOPLE_SUPPORTED: "people",
    Measure.HOURS_PLANNED: "hours",
    Measure.HOURS_DELIVERED: "hours",
    Measure.HOURS_MISSED: "hours",
    Measure.HOURS_CANCELLED: "hours",
    Measure.HOURS_UNMET: "hours",
    Measure.COVER_REQUESTS_OPENED: "requests",
    Measure.COVER_REQUESTS_FILLED: "requests",
    Measure.COVER_FILL_RATE: "share",
    Measure.MEDIAN_HOURS_TO_FILL: "hours",
    Measure.COVER_HOURS_IMPORTED: "hours",
    Measure.COVER_HOURS_EXPORTED: "hours",
    Measure.MEDIAN_DISTINCT_PAS_PER_28_DAYS: "PAs",
    Measure.REGULAR_PA_SHARE: "share",
    Measure.PA_HEADCOUNT: "people",
    Measure.PA_FTE: "FTE",
    Measure.MEDIAN_HOURLY_PAY: "GBP/hour",
    Measure.LOWER_QUARTILE_HOURLY_PAY: "GBP/hour",
    Measure.PAS_BELOW_REAL_LIVING_WAGE: "people",
    Measure.NATIONAL_LIVING_WAGE: "GBP/hour",
    Measure.REAL_LIVING_WAGE: "GBP/hour",
    Measure.PA_LEAVERS_LAST_12_MONTHS: "people",
    Measure.FREE_PA_HOURS_NEXT_4_WEEKS: "hours",
    Measure.REFERRALS_WAITING: "people",
    Measure.MEDIAN_REFERRAL_WAIT_DAYS: "days",
}

# Figures that add up over months (so a quarter is the sum of its months: rule 6 of
# care/disclosure.py). Distinct counts of people, shares and medians do not.
ADDITIVE = frozenset(
    {
        Measure.HOURS_PLANNED,
        Measure.HOURS_DELIVERED,
        Measure.HOURS_MISSED,
        Measure.HOURS_CANCELLED,
        Measure.HOURS_UNMET,
        Measure.COVER_REQUESTS_OPENED,
        Measure.COVER_REQUESTS_FILLED,
        Measure.COVER_HOURS_IMPORTED,
        Measure.COVER_HOURS_EXPORTED,
    }
)


# --- periods --------------------------------------------------------------------------


def _month_start(day: dt.date) -> dt.date:
    return day.replace(day=1)


def _add_months(day: dt.date, months: int) -> dt.date:
    index = day.year * 12 + day.month - 1 + months
    return dt.date(index // 12, index % 12 + 1, 1)


def periods(
    start: dt.date, end: dt.date, granularity: Granularity
) -> list[tuple[dt.date, dt.date]]:
    """Whole periods covering `[start, end]` (both London dates, `end` included): `start`
    snaps back to the start of its month or quarter, `end` forward to the end of its
    own. Half-open `(first day, first day of the next)` pairs."""
    step = 3 if granularity is Granularity.QUARTER else 1
    first = _month_start(start)
    if step == 3:
        first = first.replace(month=(first.month - 1) // 3 * 3 + 1)
    out: list[tuple[dt.date, dt.date]] = []
    day = first
    while day <= end:
        nxt = _add_months(day, step)
        out.append((day, nxt))
        day = nxt
    return out


class ReportRangeError(ValueError):
    """`from` after `to`, or more than MAX_MONTHS."""


def check_range(start: dt.date, end: dt.date) -> None:
    if end < start:
        raise ReportRangeError("`to` must not be before `from`.")
    months = (end.year - start.year) * 12 + end.month - start.month + 1
    if months > MAX_MONTHS:
        raise ReportRangeError(f"A report covers at most {MAX_MONTHS} months.")


# --- the raw, mergeable figures -------------------------------------------------------

Histogram = Counter[int]


@dataclass
class RawPeriod:
    """One period's figures before disclosure control. Counts of people come with the
    figures that rest on them; medians as histograms of whole numbers."""

    start: dt.date
    end: dt.date
    coops_active: int = 0
    clusters: dict[str, int] = field(default_factory=dict)
    people_planned: int = 0
    people_supported: int = 0
    people_by_funding: dict[str, int] = field(default_factory=dict)
    hours: dict[str, float] = field(default_factory=dict)  # planned, delivered, ...
    hours_people: dict[str, int] = field(default_factory=dict)
    visits_delivered: int = 0
    visits_by_regular: int = 0
    distinct_pas: Histogram = field(default_factory=Counter)  # per person-month
    requests_opened: int = 0
    requests_filled: int = 0
    people_opened: int = 0
    people_filled: int = 0
    minutes_to_fill: Histogram = field(default_factory=Counter)
    imported: dict[str, tuple[float, int]] = field(default_factory=dict)  # LA -> hours, people
    exported: dict[str, tuple[float, int]] = field(default_factory=dict)
    pa_headcount: int = 0
    pa_contracted_hours: float = 0.0
    pay_pence: Histogram = field(default_factory=Counter)
    pas_below_rlw: int = 0
    leavers: int = 0


@dataclass
class RawCapacity:
    free_pa_hours: float = 0.0
    pas_with_free_time: int = 0
    referrals_waiting: int = 0
    wait_days: Histogram = field(default_factory=Counter)


PERIODS_CTE = """
periods AS (
    SELECT p.start_day, p.end_day,
           (p.start_day::timestamp AT TIME ZONE 'Europe/London') AS starts_at,
           (p.end_day::timestamp AT TIME ZONE 'Europe/London') AS ends_at
    FROM unnest(CAST(:starts AS date[]), CAST(:ends AS date[])) AS p(start_day, end_day)
),
la_people AS (
    SELECT DISTINCT csu.service_user_id AS su
    FROM cluster_service_user csu JOIN cluster c ON c.id = csu.cluster_id
    WHERE c.la_code = :la
),
la_pas AS (
    SELECT DISTINCT cp.pa_id
    FROM cluster_pa cp JOIN cluster c ON c.id = cp.cluster_id
    WHERE c.la_code = :la
)"""

_FUNDING_COLUMNS = ",\n".join(
    f"count(*) FILTER (WHERE n_delivered > 0 AND funding = '{f.value}') "
    f"AS funding_{f.value.lower()}"
    for f in Funding
)

# The visits, from their monthly rollup (`visit_month`, kept by triggers on `visit`,
# migration 0016), in three steps, each over fewer rows than the one before: person-months
# (the rollup's rows per PA summed, in the order of its key, keeping the number of PAs who
# delivered and the visits delivered by the person's regular PAs); then person-periods;
# then periods. Durations stay whole seconds until the end. Unmet hours depend on the time
# of asking (visits still needing cover once due): months before this one come from the
# rollup; this month's are read from the visits due so far.
VISITS_SQL = f"""
WITH {PERIODS_CTE},
bounds AS (SELECT min(start_day) AS lo, max(end_day) AS hi FROM periods),
this_month AS (
    SELECT date_trunc('month', now() AT TIME ZONE 'Europe/London')::date AS first_day
),
person_months AS MATERIALIZED (
    SELECT date_trunc(:unit, m.month::timestamp)::date AS start_day,
           m.service_user_id AS su, m.month,
           sum(m.visits_planned) AS n_planned,
           sum(m.visits_delivered) AS n_delivered,
           sum(m.seconds_planned) AS s_planned,
           sum(m.seconds_delivered) AS s_delivered,
           sum(m.seconds_missed) AS s_missed,
           sum(m.seconds_cancelled) AS s_cancelled,
           coalesce(sum(m.seconds_needing_cover)
                    FILTER (WHERE m.month < this_month.first_day), 0) AS s_unmet,
           count(*) FILTER (WHERE m.pa_id <> 0 AND m.visits_delivered > 0) AS pas,
           coalesce(sum(m.visits_delivered) FILTER (WHERE r.pa_id IS NOT NULL), 0)
               AS n_by_regular
    FROM visit_month m
    CROSS JOIN bounds CROSS JOIN this_month
    LEFT JOIN regular_pa r ON r.service_user_id = m.service_user_id AND r.pa_id = m.pa_id
    WHERE m.month >= bounds.lo AND m.month < bounds.hi
      AND m.service_user_id IN (SELECT su FROM la_people)
    GROUP BY m.service_user_id, m.month, this_month.first_day
),
unmet_this_month AS (
    SELECT date_trunc(:unit, lower(v.during) AT TIME ZONE 'Europe/London')::date AS start_day,
           v.service_user_id AS su,
           sum(extract(epoch FROM upper(v.during) - lower(v.during)))::bigint AS s_unmet
    FROM visit v, bounds, this_month
    WHERE v.status = 'NEEDS_COVER'
      AND lower(v.during) >= (this_month.first_day::timestamp AT TIME ZONE 'Europe/London')
      AND lower(v.during) < now()
      AND lower(v.during) >= (bounds.lo::timestamp AT TIME ZONE 'Europe/London')
      AND lower(v.during) < (bounds.hi::timestamp AT TIME ZONE 'Europe/London')
      AND v.service_user_id IN (SELECT su FROM la_people)
    GROUP BY 1, 2
),
person_periods AS (
    SELECT x.start_day, x.su, sup.funding,
           sum(n_planned) AS n_planned, sum(n_delivered) AS n_delivered,
           sum(s_planned) AS s_planned, sum(s_delivered) AS s_delivered,
           sum(s_missed) AS s_missed, sum(s_cancelled) AS s_cancelled,
           sum(s_unmet) AS s_unmet, sum(n_by_regular) AS n_by_regular
    FROM (
        SELECT start_day, su, n_planned, n_delivered, s_planned, s_delivered, s_missed,
               s_cancelled, s_unmet, n_by_regular
        FROM person_months
        UNION ALL
        SELECT start_day, su, 0, 0, 0, 0, 0, 0, s_unmet, 0 FROM unmet_this_month
    ) x
    JOIN service_user_profile sup ON sup.member_id = x.su
    GROUP BY x.start_day, x.su, sup.funding
),
totals AS (
    SELECT start_day,
           count(*) FILTER (WHERE n_planned > 0) AS people_planned,
           coalesce(sum(s_planned), 0) / 3600.0 AS hours_planned,
           count(*) FILTER (WHERE n_delivered > 0) AS people_supported,
           coalesce(sum(s_delivered), 0) / 3600.0 AS hours_delivered,
           count(*) FILTER (WHERE s_missed > 0) AS people_missed,
           coalesce(sum(s_missed), 0) / 3600.0 AS hours_missed,
           count(*) FILTER (WHERE s_cancelled > 0) AS people_cancelled,
           coalesce(sum(s_cancelled), 0) / 3600.0 AS hours_cancelled,
           count(*) FILTER (WHERE s_unmet > 0) AS people_unmet,
           coalesce(sum(s_unmet), 0) / 3600.0 AS hours_unmet,
           coalesce(sum(n_delivered), 0) AS visits_delivered,
           coalesce(sum(n_by_regular), 0) AS visits_by_regular,
           {_FUNDING_COLUMNS}
    FROM person_periods GROUP BY start_day
),
continuity AS (
    SELECT start_day, jsonb_object_agg(pas, n) AS distinct_pas
    FROM (SELECT start_day, pas, count(*) AS n FROM person_months WHERE pas > 0
          GROUP BY start_day, pas) x
    GROUP BY start_day
),
clusters AS (
    SELECT p.start_day, jsonb_object_agg(k.kind, k.n) AS clusters
    FROM periods p
    CROSS JOIN LATERAL (
        SELECT c.kind, count(*) AS n FROM cluster c
        WHERE c.la_code = :la AND c.status <> 'PLANNED' AND c.created_at < p.ends_at
          AND (c.closed_at IS NULL OR c.closed_at >= p.starts_at)
        GROUP BY c.kind
    ) k
    GROUP BY p.start_day
)
SELECT p.start_day AS period_start, t.*, c.distinct_pas, cl.clusters
FROM periods p
LEFT JOIN totals t ON t.start_day = p.start_day
LEFT JOIN continuity c ON c.start_day = p.start_day
LEFT JOIN clusters cl ON cl.start_day = p.start_day
ORDER BY p.start_day
"""

COVER_SQL = f"""
WITH {PERIODS_CTE},
bounds AS (SELECT min(starts_at) AS lo, max(ends_at) AS hi FROM periods),
r AS MATERIALIZED (
    SELECT date_trunc(:unit, r.opened_at AT TIME ZONE 'Europe/London')::date AS start_day,
           r.service_user_id AS su, r.status,
           round(extract(epoch FROM r.closed_at - r.opened_at) / 60)::int AS minutes
    FROM cover_request r, bounds
    WHERE r.opened_at >= bounds.lo AND r.opened_at < bounds.hi
      AND r.service_user_id IN (SELECT su FROM la_people)
),
counts AS (
    SELECT start_day, count(*) AS opened, count(DISTINCT su) AS people_opened,
           count(*) FILTER (WHERE status = 'FILLED') AS filled,
           count(DISTINCT su) FILTER (WHERE status = 'FILLED') AS people_filled
    FROM r GROUP BY start_day
),
fill AS (
    SELECT start_day, jsonb_object_agg(minutes, n) AS minutes_to_fill
    FROM (SELECT start_day, minutes, count(*) AS n FROM r WHERE status = 'FILLED'
          GROUP BY start_day, minutes) x
    GROUP BY start_day
)
SELECT p.start_day AS period_start,
       coalesce(c.opened, 0) AS opened, coalesce(c.people_opened, 0) AS people_opened,
       coalesce(c.filled, 0) AS filled, coalesce(c.people_filled, 0) AS people_filled,
       f.minutes_to_fill
FROM periods p
LEFT JOIN counts c ON c.start_day = p.start_day
LEFT JOIN fill f ON f.start_day = p.start_day
ORDER BY p.start_day
"""

# Confirmed cross-boundary cover, by the partner co-op's home local authority: hours
# imported (our people covered by a partner's PA) rest on our people; hours exported (our
# PAs on teams in this local authority covering a partner's people) on our PAs.
EXCHANGE_SQL = f"""
WITH {PERIODS_CTE}
SELECT p.start_day AS period_start, e.side, coalesce(pt.home_la_code, '') AS other_la,
       sum(extract(epoch FROM upper(e.during) - lower(e.during)) / 3600.0) AS hours,
       count(DISTINCT coalesce(v.service_user_id, e.pa_id)) AS people
FROM periods p
JOIN cover_exchange e ON e.status = 'CONFIRMED'
     AND lower(e.during) >= p.starts_at AND lower(e.during) < p.ends_at
JOIN partnership pt ON pt.id = e.partnership_id
LEFT JOIN visit v ON v.id = e.visit_id
WHERE (e.side = 'REQUESTING' AND v.service_user_id IN (SELECT su FROM la_people))
   OR (e.side = 'PROVIDING' AND e.pa_id IN (SELECT pa_id FROM la_pas))
GROUP BY p.start_day, e.side, pt.home_la_code
"""

# PAs on the team of a cluster in the local authority who were members at some point in
# the period (joined before its end; active, or left on or after its start); their pay is
# the rate in force on the period's last day.
WORKFORCE_SQL = f"""
WITH {PERIODS_CTE},
staff AS (
    SELECT p.start_day, p.end_day, m.id, pp.contracted_weekly_hours,
           (SELECT r.hourly_pay_pence FROM pa_pay_rate r
            WHERE r.pa_id = m.id AND r.effective_from < p.end_day
            ORDER BY r.effective_from DESC LIMIT 1) AS pay
    FROM periods p
    CROSS JOIN la_pas
    JOIN member m ON m.id = la_pas.pa_id
    JOIN pa_profile pp ON pp.member_id = m.id
    WHERE m.joined_on < p.end_day AND (m.active OR m.left_on >= p.start_day)
),
pay AS (
    SELECT start_day, jsonb_object_agg(pay, n) AS pay_pence
    FROM (SELECT start_day, pay, count(*) AS n FROM staff WHERE pay IS NOT NULL
          GROUP BY start_day, pay) x
    GROUP BY start_day
),
-- Totals per period before the histograms join: joined row by row, each staff row would
-- carry its period's whole histogram into the grouping.
totals AS (
    SELECT s.start_day, count(*) AS headcount,
           sum(s.contracted_weekly_hours) AS contracted_hours,
           count(*) FILTER (WHERE s.pay < rlw.pence) AS below_rlw
    FROM staff s
    JOIN unnest(CAST(:starts AS date[]), CAST(:rlw AS int[])) AS rlw(start_day, pence)
         ON rlw.start_day = s.start_day
    GROUP BY s.start_day
)
SELECT p.start_day AS period_start,
       coalesce(t.headcount, 0) AS headcount,
       coalesce(t.contracted_hours, 0) AS contracted_hours,
       coalesce(t.below_rlw, 0) AS below_rlw,
       (SELECT count(*) FROM la_pas JOIN member m ON m.id = la_pas.pa_id
        WHERE m.left_on >= (p.end_day - interval '12 months')::date
          AND m.left_on < p.end_day) AS leavers,
       pay.pay_pence
FROM periods p
LEFT JOIN totals t ON t.start_day = p.start_day
LEFT JOIN pay ON pay.start_day = p.start_day
ORDER BY p.start_day
"""

# Capacity now: free time of active PAs on teams in the local authority over the next 28
# days (their availability windows minus everything that holds their time: visits,
# absences, holds), and the referrals waiting, with how long each has waited.
CAPACITY_SQL = """
WITH horizon AS (SELECT tstzrange(now(), now() + interval '28 days') AS h),
la_pas AS (
    SELECT DISTINCT cp.pa_id
    FROM cluster_pa cp JOIN cluster c ON c.id = cp.cluster_id
    JOIN member m ON m.id = cp.pa_id
    WHERE c.la_code = :la AND m.active
),
free AS (
    SELECT w.pa_id, range_agg(w.during * horizon.h) AS ranges
    FROM availability_window w, horizon
    WHERE w.pa_id IN (SELECT pa_id FROM la_pas) AND w.during && horizon.h
    GROUP BY w.pa_id
),
busy AS (
    SELECT c.pa_id, range_agg(c.during) AS ranges
    FROM pa_commitment c, horizon
    WHERE c.pa_id IN (SELECT pa_id FROM free) AND c.during && horizon.h
    GROUP BY c.pa_id
),
left_over AS (
    SELECT f.pa_id, f.ranges - coalesce(b.ranges, '{}'::tstzmultirange) AS ranges
    FROM free f LEFT JOIN busy b ON b.pa_id = f.pa_id
)
SELECT
    (SELECT coalesce(sum(extract(epoch FROM upper(r) - lower(r))) / 3600.0, 0)
     FROM left_over, unnest(left_over.ranges) AS r) AS free_hours,
    (SELECT count(*) FROM left_over WHERE ranges <> '{}'::tstzmultirange) AS pas_free,
    (SELECT count(*) FROM referral WHERE la_code = :la AND status = 'WAITING') AS waiting,
    (SELECT jsonb_object_agg(days, n) FROM (
        SELECT ((now() AT TIME ZONE 'Europe/London')::date - referred_on) AS days, count(*) AS n
        FROM referral WHERE la_code = :la AND status = 'WAITING' GROUP BY 1) x) AS wait_days
"""


def _hist(value: Any) -> Histogram:
    return Counter({int(k): int(n) for k, n in (value or {}).items()})


async def raw_figures(
    session: AsyncSession, la_code: str, spans: Sequence[tuple[dt.date, dt.date]]
) -> list[RawPeriod]:
    """The unprotected figures of this co-op for `la_code`, one per period (five
    statements, whatever the number of periods or rows)."""
    starts = [s for s, _ in spans]
    ends = [e for _, e in spans]
    quarterly = bool(spans) and (spans[0][1] - spans[0][0]).days > 31
    params: dict[str, Any] = {
        "la": la_code,
        "starts": starts,
        "ends": ends,
        "unit": "quarter" if quarterly else "month",
    }
    out = {s: RawPeriod(start=s, end=e) for s, e in spans}

    for row in (await session.execute(text(VISITS_SQL), params)).mappings():
        raw = out[row["period_start"]]
        raw.people_planned = int(row["people_planned"] or 0)
        raw.coops_active = 1 if raw.people_planned else 0
        raw.people_supported = int(row["people_supported"] or 0)
        raw.people_by_funding = {
            f.value: int(row[f"funding_{f.value.lower()}"] or 0) for f in Funding
        }
        for name in ("planned", "delivered", "missed", "cancelled", "unmet"):
            raw.hours[name] = float(row[f"hours_{name}"] or 0)
        raw.hours_people = {
            "planned": raw.people_planned,
            "delivered": raw.people_supported,
            "missed": int(row["people_missed"] or 0),
            "cancelled": int(row["people_cancelled"] or 0),
            "unmet": int(row["people_unmet"] or 0),
        }
        raw.visits_delivered = int(row["visits_delivered"] or 0)
        raw.visits_by_regular = int(row["visits_by_regular"] or 0)
        raw.distinct_pas = _hist(row["distinct_pas"])
        clusters = row["clusters"] or {}
        raw.clusters = {k.value: int(clusters.get(k.value, 0)) for k in ClusterKind}

    for row in (await session.execute(text(COVER_SQL), params)).mappings():
        raw = out[row["period_start"]]
        raw.requests_opened = int(row["opened"])
        raw.people_opened = int(row["people_opened"])
        raw.requests_filled = int(row["filled"])
        raw.people_filled = int(row["people_filled"])
        raw.minutes_to_fill = _hist(row["minutes_to_fill"])

    for row in (await session.execute(text(EXCHANGE_SQL), params)).mappings():
        raw = out[row["period_start"]]
        target = raw.imported if row["side"] == "REQUESTING" else raw.exported
        target[row["other_la"]] = (float(row["hours"]), int(row["people"]))

    rlw = [_pence(floors_on(la_code, e - dt.timedelta(days=1)).real_living_wage) for e in ends]
    workforce = await session.execute(text(WORKFORCE_SQL), {**params, "rlw": rlw})
    for row in workforce.mappings():
        raw = out[row["period_start"]]
        raw.pa_headcount = int(row["headcount"])
        raw.pa_contracted_hours = float(row["contracted_hours"])
        raw.pas_below_rlw = int(row["below_rlw"])
        raw.leavers = int(row["leavers"])
        raw.pay_pence = _hist(row["pay_pence"])
    return [out[s] for s in starts]


def _pence(pounds: Any) -> int:
    # No rate known for the period (before the table begins): nobody counts as below it.
    return 0 if pounds is None else int(round(pounds * 100))


async def raw_capacity(session: AsyncSession, la_code: str) -> RawCapacity:
    row = (await session.execute(text(CAPACITY_SQL), {"la": la_code})).mappings().one()
    return RawCapacity(
        free_pa_hours=float(row["free_hours"] or 0),
        pas_with_free_time=int(row["pas_free"] or 0),
        referrals_waiting=int(row["waiting"] or 0),
        wait_days=_hist(row["wait_days"]),
    )


# --- merging and medians ----------------------------------------------------------------


def percentile(hist: Mapping[int, int], q: float) -> float | None:
    """The q-th percentile of the values a histogram counts, interpolated between the two
    nearest like PostgreSQL's percentile_cont; None when it counts nothing."""
    n = sum(hist.values())
    if n == 0:
        return None
    position = (n - 1) * q
    lower_rank, upper_rank = math.floor(position), math.ceil(position)
    lower = upper = None
    seen = 0
    for value in sorted(hist):
        seen += hist[value]
        if lower is None and seen > lower_rank:
            lower = value
        if seen > upper_rank:
            upper = value
            break
    assert lower is not None and upper is not None
    return lower + (upper - lower) * (position - lower_rank)


def merge(periods_of_coops: Iterable[Sequence[RawPeriod]]) -> list[RawPeriod]:
    """Several co-ops' figures for the same periods, added up (distinct people add up too:
    a person supported by two co-ops counts twice, as in a council's own returns)."""
    merged: dict[dt.date, RawPeriod] = {}
    for coop in periods_of_coops:
        for raw in coop:
            into = merged.setdefault(raw.start, RawPeriod(start=raw.start, end=raw.end))
            into.coops_active += raw.coops_active
            for k, n in raw.clusters.items():
                into.clusters[k] = into.clusters.get(k, 0) + n
            into.people_planned += raw.people_planned
            into.people_supported += raw.people_supported
            for k, n in raw.people_by_funding.items():
                into.people_by_funding[k] = into.people_by_funding.get(k, 0) + n
            for k, h in raw.hours.items():
                into.hours[k] = into.hours.get(k, 0.0) + h
            for k, n in raw.hours_people.items():
                into.hours_people[k] = into.hours_people.get(k, 0) + n
            into.visits_delivered += raw.visits_delivered
            into.visits_by_regular += raw.visits_by_regular
            into.distinct_pas.update(raw.distinct_pas)
            into.requests_opened += raw.requests_opened
            into.requests_filled += raw.requests_filled
            into.people_opened += raw.people_opened
            into.people_filled += raw.people_filled
            into.minutes_to_fill.update(raw.minutes_to_fill)
            for target, source in ((into.imported, raw.imported), (into.exported, raw.exported)):
                for la, (hours, people) in source.items():
                    h, p = target.get(la, (0.0, 0))
                    target[la] = (h + hours, p + people)
            into.pa_headcount += raw.pa_headcount
            into.pa_contracted_hours += raw.pa_contracted_hours
            into.pay_pence.update(raw.pay_pence)
            into.pas_below_rlw += raw.pas_below_rlw
            into.leavers += raw.leavers
    return [merged[k] for k in sorted(merged)]


# --- cells and disclosure control -----------------------------------------------------


@dataclass(frozen=True)
class Figure:
    """One published figure: a measure, its breakdown (a funding type, a cluster kind, a
    local authority's GSS code, or None) and its value after disclosure control."""

    measure: Measure
    breakdown: str | None
    shown: Shown

    @property
    def unit(self) -> str:
        return UNITS[self.measure]


Key = tuple[Measure, str | None]


def _cells(raw: RawPeriod, la_code: str) -> dict[Key, Cell]:
    people, measure, providers = CellKind.PEOPLE, CellKind.MEASURE, CellKind.PROVIDERS
    cells: dict[Key, Cell] = {
        (Measure.COOPS_ACTIVE, None): Cell(providers, raw.coops_active),
        (Measure.PEOPLE_SUPPORTED, None): Cell(people, raw.people_supported),
    }
    for kind, n in raw.clusters.items():
        cells[(Measure.CLUSTERS, kind)] = Cell(providers, n)
    for funding, n in raw.people_by_funding.items():
        cells[(Measure.PEOPLE_SUPPORTED, funding)] = Cell(people, n)
    for name, m in (
        ("planned", Measure.HOURS_PLANNED),
        ("delivered", Measure.HOURS_DELIVERED),
        ("missed", Measure.HOURS_MISSED),
        ("cancelled", Measure.HOURS_CANCELLED),
        ("unmet", Measure.HOURS_UNMET),
    ):
        cells[(m, None)] = Cell(
            measure, round(raw.hours.get(name, 0.0), 1), raw.hours_people.get(name, 0)
        )
    opened, filled = raw.requests_opened, raw.requests_filled
    cells[(Measure.COVER_REQUESTS_OPENED, None)] = Cell(measure, opened, raw.people_opened)
    cells[(Measure.COVER_REQUESTS_FILLED, None)] = Cell(measure, filled, raw.people_filled)
    cells[(Measure.COVER_FILL_RATE, None)] = Cell(
        measure, round(filled / opened, 3) if opened else None, raw.people_opened
    )
    median_minutes = percentile(raw.minutes_to_fill, 0.5)
    cells[(Measure.MEDIAN_HOURS_TO_FILL, None)] = Cell(
        measure,
        None if median_minutes is None else round(median_minutes / 60, 2),
        raw.people_filled,
    )
    for target, m in (
        (raw.imported, Measure.COVER_HOURS_IMPORTED),
        (raw.exported, Measure.COVER_HOURS_EXPORTED),
    ):
        for la, (hours, n) in sorted(target.items()):
            cells[(m, la)] = Cell(measure, round(hours, 1), n)
    person_months = sum(raw.distinct_pas.values())
    cells[(Measure.MEDIAN_DISTINCT_PAS_PER_28_DAYS, None)] = Cell(
        measure, percentile(raw.distinct_pas, 0.5), raw.people_supported if person_months else 0
    )
    cells[(Measure.REGULAR_PA_SHARE, None)] = Cell(
        measure,
        round(raw.visits_by_regular / raw.visits_delivered, 3) if raw.visits_delivered else None,
        raw.people_supported,
    )
    with_pay = sum(raw.pay_pence.values())
    cells[(Measure.PA_HEADCOUNT, None)] = Cell(people, raw.pa_headcount)
    cells[(Measure.PA_FTE, None)] = Cell(
        measure, round(raw.pa_contracted_hours / FTE_HOURS, 1), raw.pa_headcount
    )
    for q, m in ((0.5, Measure.MEDIAN_HOURLY_PAY), (0.25, Measure.LOWER_QUARTILE_HOURLY_PAY)):
        pence = percentile(raw.pay_pence, q)
        cells[(m, None)] = Cell(measure, None if pence is None else round(pence / 100, 2), with_pay)
    cells[(Measure.PAS_BELOW_REAL_LIVING_WAGE, None)] = Cell(people, raw.pas_below_rlw)
    floors = floors_on(la_code, raw.end - dt.timedelta(days=1))
    for rate, m in (
        (floors.national_living_wage, Measure.NATIONAL_LIVING_WAGE),
        (floors.real_living_wage, Measure.REAL_LIVING_WAGE),
    ):
        # Public reference rates: nothing to protect.
        cells[(m, "LONDON" if floors.london and m is Measure.REAL_LIVING_WAGE else None)] = Cell(
            providers, None if rate is None else float(rate)
        )
    cells[(Measure.PA_LEAVERS_LAST_12_MONTHS, None)] = Cell(people, raw.leavers)
    return cells


def _groups(cells: Mapping[Key, Cell]) -> list[Group]:
    funding = tuple(
        _name(k) for k in cells if k[0] is Measure.PEOPLE_SUPPORTED and k[1] is not None
    )
    return [Group(_name((Measure.PEOPLE_SUPPORTED, None)), funding)]


def _name(key: Key) -> str:
    return f"{key[0].value}:{key[1] or ''}"


def protect_period(
    raw: RawPeriod, la_code: str, rules: DisclosureRules, months: Sequence[RawPeriod] = ()
) -> list[Figure]:
    """A period's figures as they may be published. With `months` (the months of a
    quarter), an additive figure is withheld when it is withheld in any of them."""
    cells = _cells(raw, la_code)
    named = {_name(k): c for k, c in cells.items()}
    shown = protect(named, _groups(cells), rules)
    if months:
        monthly = [
            {(f.measure, f.breakdown): f.shown for f in protect_period(m, la_code, rules)}
            for m in months
        ]
        for key in cells:
            if key[0] in ADDITIVE:
                # A breakdown (an LA) missing from a month is a zero there: nothing hidden.
                in_months = [m[key] for m in monthly if key in m]
                if any(s.withheld is not None for s in in_months):
                    shown[_name(key)] = over_periods(cells[key], in_months, rules)
    return [Figure(k[0], k[1], shown[_name(k)]) for k in cells]


def protect_capacity(raw: RawCapacity, rules: DisclosureRules) -> list[Figure]:
    cells: dict[Key, Cell] = {
        (Measure.FREE_PA_HOURS_NEXT_4_WEEKS, None): Cell(
            CellKind.MEASURE, round(raw.free_pa_hours, 1), raw.pas_with_free_time
        ),
        (Measure.REFERRALS_WAITING, None): Cell(CellKind.PEOPLE, raw.referrals_waiting),
        (Measure.MEDIAN_REFERRAL_WAIT_DAYS, None): Cell(
            CellKind.MEASURE, percentile(raw.wait_days, 0.5), raw.referrals_waiting
        ),
    }
    named = {_name(k): c for k, c in cells.items()}
    shown = protect(named, [], rules)
    return [Figure(k[0], k[1], shown[_name(k)]) for k in cells]


@dataclass(frozen=True)
class PeriodFigures:
    start: dt.date
    end: dt.date  # exclusive
    figures: list[Figure]


@dataclass(frozen=True)
class MarketReport:
    la_code: str
    granularity: Granularity
    periods: list[PeriodFigures]
    capacity: list[Figure]
    rules: DisclosureRules
    generated_at: dt.datetime


def months_of(span: tuple[dt.date, dt.date]) -> list[tuple[dt.date, dt.date]]:
    return periods(span[0], span[1] - dt.timedelta(days=1), Granularity.MONTH)


def merge_capacity(capacities: Iterable[RawCapacity]) -> RawCapacity:
    merged = RawCapacity()
    for c in capacities:
        merged.free_pa_hours += c.free_pa_hours
        merged.pas_with_free_time += c.pas_with_free_time
        merged.referrals_waiting += c.referrals_waiting
        merged.wait_days.update(c.wait_days)
    return merged


@dataclass(frozen=True)
class LocalFigures:
    """This co-op's raw figures for a report: the periods, and for a quarterly report the
    months of each quarter too (rule 6 of care/disclosure.py)."""

    spans: list[tuple[dt.date, dt.date]]
    month_spans: list[tuple[dt.date, dt.date]]
    periods: list[RawPeriod]
    months: list[RawPeriod]
    capacity: RawCapacity


async def local_figures(
    session: AsyncSession, la_code: str, start: dt.date, end: dt.date, granularity: Granularity
) -> LocalFigures:
    check_range(start, end)
    spans = periods(start, end, granularity)
    month_spans: list[tuple[dt.date, dt.date]] = []
    months: list[RawPeriod] = []
    if granularity is Granularity.QUARTER:
        month_spans = [m for span in spans for m in months_of(span)]
        months = await raw_figures(session, la_code, month_spans)
    return LocalFigures(
        spans=spans,
        month_spans=month_spans,
        periods=await raw_figures(session, la_code, spans),
        months=months,
        capacity=await raw_capacity(session, la_code),
    )


async def market_report(
    session: AsyncSession,
    la_code: str,
    start: dt.date,
    end: dt.date,
    granularity: Granularity,
    rules: DisclosureRules,
) -> MarketReport:
    """This co-op's report for one local authority (who may ask is the caller's rule)."""
    local = await local_figures(session, la_code, start, end, granularity)
    monthly = {r.start: r for r in local.months}
    return build_report(la_code, granularity, local.periods, monthly, local.capacity, rules)


def build_report(
    la_code: str,
    granularity: Granularity,
    raws: Sequence[RawPeriod],
    monthly: Mapping[dt.date, RawPeriod],
    capacity: RawCapacity,
    rules: DisclosureRules,
) -> MarketReport:
    out = []
    for raw in raws:
        months = [monthly[m] for m, _ in months_of((raw.start, raw.end)) if m in monthly]
        out.append(PeriodFigures(raw.start, raw.end, protect_period(raw, la_code, rules, months)))
    return MarketReport(
        la_code=la_code,
        granularity=granularity,
        periods=out,
        capacity=protect_capacity(capacity, rules),
        rules=rules,
        generated_at=dt.datetime.now(dt.UTC),
    )


# --- who may ask --------------------------------------------------------------------


async def known_local_authority(session: AsyncSession, la_code: str) -> str | None:
    """The local authority's name, or None for an unknown GSS code."""
    name: str | None = await session.scalar(
        select(LocalAuthority.name).where(LocalAuthority.gss_code == la_code)
    )
    return name


async def check_reader(session: AsyncSession, viewer: Viewer, la_code: str) -> str:
    """Market figures are for the local authority that asks: an LA analyst for the one
    their token names, a council's instance (a partner granted MARKET_DATA) for the local
    authorities its manifest lists, and this co-op's admins for any. An unknown local
    authority is NOT_FOUND for everyone. Returns its name."""
    known = await known_local_authority(session, la_code)
    if known is None:
        raise DomainError(
            ErrorCode.NOT_FOUND, "No local authority with that GSS code.", "localAuthority"
        )
    if viewer.role is Role.ADMIN:
        return known
    if viewer.role is Role.LA_ANALYST:
        if viewer.la_code != la_code:
            raise forbidden(
                "An analyst sees the figures of their own local authority only.", "localAuthority"
            )
        return known
    if viewer.kind is PrincipalKind.PARTNER and viewer.partnership_id is not None:
        row = (
            await session.execute(
                select(Partnership.home_la_code, Partnership.local_authorities).where(
                    Partnership.id == viewer.partnership_id
                )
            )
        ).one_or_none()
        if row is not None:
            theirs = {row.home_la_code} | {
                la.get("gssCode") for la in row.local_authorities or [] if isinstance(la, dict)
            }
            if la_code in theirs:
                return known
        raise forbidden(
            "A partner sees the figures of the local authorities it serves only.", "localAuthority"
        )
    raise forbidden("Market figures are for analysts, councils and admins.")
