"""Expansion: where waiting demand and PA capacity would support a new cluster.

One row per postcode district with WAITING referrals in a local authority, with the
figures behind it and a score; everything is computed by ONE set-based SQL statement
(`_OPPORTUNITIES`, a chain of CTEs) for all the districts at once. docs/federation.md,
section 13, is the reference for coordinators; the definitions, precisely:

- The horizon: `[now, now + weeks)`, `weeks` = `horizon_weeks` (default 4). Hours "a week"
  are hours in the horizon divided by `weeks`.
- Demand, per district: `people` (WAITING referrals), `hours_wanted` (their summed hours a
  week), `needs` (each need tag of those referrals with the number of them asking for it,
  most asked first, then by name).
- A district's centre: its centroid (care/geography.py, OS Code-Point Open), passed to
  the statement as arrays. A district the table does not know has no centre: no PA is
  within reach of it, so its capacity is 0 and its score 0.
- Own capacity: active members with a PA profile whose home is within their own
  `max_travel_km` of the district's centre (great-circle distance, the formula of
  care/candidates.py). Home: the member's latitude/longitude, else the centroid of the
  district of their postcode; neither: not counted. A PA's free hours = the time of
  their availability windows inside the horizon that no commitment takes (`pa_commitment`:
  active visits, absences, holds for partners), computed per PA as multiranges
  (`range_agg` of the windows minus `range_agg` of the commitments), so a commitment
  reaching outside a window takes only its part inside. `own_pas` counts PAs in reach
  with free hours > 0;
  `own_hours` sums their free hours a week. A PA in reach of two districts counts in
  both: each row is what could serve that district, not a share of a budget.
- Partner capacity: synced free periods (`partner_window`) of ACTIVE partnerships, inside
  the horizon, of partner PAs whose district centroid is within their `travel_km` of the
  district's centre. `partner_pas` counts distinct (partnership, PA reference);
  `partner_hours` sums their free hours a week.
- `median_distance_km`: the median (`percentile_cont(0.5)`) of the distance from each PA
  counted above (own and partner, each once, partner PAs from their district centroid) to
  the district's centre; null when none is in reach.
- `our_cluster_here`: a cluster of ours, not closed, lists the district or has a circle
  (centre, radius) containing the district's centre.
- `partners_here`: the names of ACTIVE partners that told us (a `peerClusterOpened`
  notice) of a cluster in that district.
- Score, in [0, 1]: `coverage * nearness`, where `coverage = min(1, (own_hours +
  PARTNER_HOURS_WEIGHT * partner_hours) / hours_wanted)` (partner PAs are lent, not
  ours: their hours count half) and `nearness = 1 - min(median_distance_km,
  DISTANCE_CAP_KM) / (2 * DISTANCE_CAP_KM)` (1 at 0 km, falling to 0.5 at 10 km and
  beyond). No capacity: 0.
- Ranking: districts without a cluster of ours first (a new cluster is wanted where none
  serves yet), then score (highest first), hours wanted, people waiting (most first),
  then district (A-Z).

Who may ask: admins, and coordinators who may see the local authority's referrals
(`policy.referral_visible`: in or next to a local authority of a cluster they support).
Every referral of the statement lies in the one local authority asked for, so that one
check decides for all rows: a coordinator outside the area gets no rows, exactly as for a
local authority with no waiting referrals. Everyone else is refused by the GraphQL rule.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache
from typing import Any

from sqlalchemy import (
    Float,
    Integer,
    Select,
    String,
    bindparam,
    exists,
    false,
    literal_column,
    select,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncSession

from care import policy
from care.enums import PartnershipStatus, Role
from care.geography import (
    EARTH_RADIUS_KM,
    all_centroids,
    as_sql_text,
    great_circle_km,
    postcode_district_sql,
)
from care.models import LocalAuthority, PartnerCluster, Partnership
from care.viewer import Viewer

DEFAULT_HORIZON_WEEKS = 4
MAX_HORIZON_WEEKS = 12
PARTNER_HOURS_WEIGHT = 0.5
DISTANCE_CAP_KM = 10.0
KM_PER_DEGREE_LATITUDE = EARTH_RADIUS_KM * math.pi / 180


def _km(lat1: str, lon1: str, lat2: str, lon2: str) -> str:
    """care.geography's great-circle distance in km, as SQL text over these columns."""
    return as_sql_text(great_circle_km(*map(literal_column, (lat1, lon1, lat2, lon2))))


def _hours(range_sql: str) -> str:
    return f"(extract(epoch FROM upper({range_sql}) - lower({range_sql})) / 3600.0)"


# A PA's postcode district, as care.geography.postcode_district reads it.
_DISTRICT_OF_POSTCODE = as_sql_text(postcode_district_sql(literal_column("m.postcode")))

_OPPORTUNITIES = f"""
WITH centroid AS (
    SELECT c.district, c.lat, c.lon
    FROM unnest(CAST(:centroid_districts AS text[]), CAST(:centroid_lats AS float8[]),
                CAST(:centroid_lons AS float8[])) AS c(district, lat, lon)
),
horizon AS (
    SELECT tstzrange(CAST(:now AS timestamptz),
                     CAST(:now AS timestamptz) + make_interval(days => 7 * :weeks), '[)') AS h
),
waiting AS (
    -- ix_referral_la_status_district
    SELECT r.postcode_district AS district, count(*) AS people,
           sum(r.hours_per_week) AS hours_wanted
    FROM referral r
    WHERE r.la_code = :la_code AND r.status = 'WAITING'
    GROUP BY r.postcode_district
),
need_counts AS (
    SELECT r.postcode_district AS district, n.need, count(*) AS people
    FROM referral r CROSS JOIN LATERAL unnest(r.needs) AS n(need)
    WHERE r.la_code = :la_code AND r.status = 'WAITING'
    GROUP BY r.postcode_district, n.need
),
needs AS (
    SELECT district,
           jsonb_agg(jsonb_build_array(need, people) ORDER BY people DESC, need) AS needs
    FROM need_counts GROUP BY district
),
place AS (
    SELECT w.district, w.people, w.hours_wanted, c.lat, c.lon
    FROM waiting w LEFT JOIN centroid c ON c.district = w.district
),
own_pa AS (
    SELECT p.member_id AS pa_id, CAST(p.max_travel_km AS float8) AS travel_km,
           coalesce(m.latitude, hc.lat) AS lat, coalesce(m.longitude, hc.lon) AS lon
    FROM pa_profile p
    JOIN member m ON m.id = p.member_id AND m.active
    LEFT JOIN centroid hc ON m.latitude IS NULL AND hc.district = {_DISTRICT_OF_POSTCODE}
),
own_reach_all AS (
    SELECT pl.district, o.pa_id, {_km("o.lat", "o.lon", "pl.lat", "pl.lon")} AS km,
           o.travel_km
    FROM place pl CROSS JOIN own_pa o
    WHERE pl.lat IS NOT NULL AND o.lat IS NOT NULL
      -- a cheap exact bound first: the north-south gap alone is no longer than the distance
      AND abs(o.lat - pl.lat) * {KM_PER_DEGREE_LATITUDE} <= o.travel_km
),
own_in_reach AS (
    SELECT DISTINCT pa_id FROM own_reach_all WHERE km <= travel_km
),
own_available AS (
    -- free time as a multirange per PA: windows inside the horizon, merged
    SELECT w.pa_id, range_agg(w.during * hz.h) AS free
    FROM availability_window w CROSS JOIN horizon hz
    WHERE w.pa_id IN (SELECT pa_id FROM own_in_reach) AND w.during && hz.h
    GROUP BY w.pa_id
),
own_taken AS (
    SELECT c.pa_id, range_agg(c.during * hz.h) AS taken
    FROM pa_commitment c CROSS JOIN horizon hz
    WHERE c.pa_id IN (SELECT pa_id FROM own_available) AND c.during && hz.h
    GROUP BY c.pa_id
),
own_free AS MATERIALIZED (  -- once per PA, not per district reached
    SELECT a.pa_id,
           (SELECT coalesce(sum({_hours("r")}), 0)
            FROM unnest(a.free - coalesce(t.taken, '{{}}'::tstzmultirange)) AS r) / :weeks
               AS weekly
    FROM own_available a LEFT JOIN own_taken t ON t.pa_id = a.pa_id
),
own_reach AS (
    SELECT r.district, r.km, f.weekly
    FROM own_reach_all r JOIN own_free f ON f.pa_id = r.pa_id
    WHERE r.km <= r.travel_km AND f.weekly > 0
),
partner_free AS (
    SELECT pw.partnership_id, pw.pa_ref, pw.district,
           CAST(pw.travel_km AS float8) AS travel_km,
           sum({_hours("pw.during * hz.h")}) / :weeks AS weekly
    FROM partner_window pw
    JOIN partnership p ON p.id = pw.partnership_id AND p.status = 'ACTIVE'
    CROSS JOIN horizon hz
    WHERE pw.during && hz.h  -- ix_partner_window_during
    GROUP BY pw.partnership_id, pw.pa_ref, pw.district, pw.travel_km
),
partner_reach AS (
    SELECT pl.district, pf.partnership_id, pf.pa_ref,
           min({_km("pc.lat", "pc.lon", "pl.lat", "pl.lon")}) AS km, sum(pf.weekly) AS weekly
    FROM place pl
    JOIN partner_free pf ON true
    JOIN centroid pc ON pc.district = pf.district
    WHERE pl.lat IS NOT NULL
      AND {_km("pc.lat", "pc.lon", "pl.lat", "pl.lon")} <= pf.travel_km
    GROUP BY pl.district, pf.partnership_id, pf.pa_ref
),
own_sum AS (
    SELECT district, count(*) AS pas, sum(weekly) AS hours FROM own_reach GROUP BY district
),
partner_sum AS (
    SELECT district, count(*) AS pas, sum(weekly) AS hours FROM partner_reach GROUP BY district
),
distances AS (
    SELECT district, percentile_cont(0.5) WITHIN GROUP (ORDER BY km) AS km
    FROM (SELECT district, km FROM own_reach
          UNION ALL SELECT district, km FROM partner_reach) AS d
    GROUP BY district
),
ours AS (
    SELECT DISTINCT pl.district
    FROM place pl JOIN cluster c ON c.status <> 'CLOSED'
    WHERE pl.district = ANY(c.postcode_districts)
       OR (c.centre_latitude IS NOT NULL AND c.radius_km IS NOT NULL AND pl.lat IS NOT NULL
           AND {_km("c.centre_latitude", "c.centre_longitude", "pl.lat", "pl.lon")}
               <= c.radius_km)
),
partners_here AS (
    SELECT pc.district,
           array_agg(DISTINCT coalesce(p.coop_name, p.base_url)) AS names
    FROM partner_cluster pc
    JOIN partnership p ON p.id = pc.partnership_id AND p.status = 'ACTIVE'
    WHERE pc.district IN (SELECT district FROM place)
    GROUP BY pc.district
),
figures AS (
    SELECT pl.district, pl.people, CAST(pl.hours_wanted AS float8) AS hours_wanted,
           coalesce(n.needs, '[]'::jsonb) AS needs,
           coalesce(os.pas, 0) AS own_pas, coalesce(os.hours, 0) AS own_hours,
           coalesce(ps.pas, 0) AS partner_pas, coalesce(ps.hours, 0) AS partner_hours,
           d.km AS median_km,
           (ours.district IS NOT NULL) AS our_cluster_here,
           coalesce(ph.names, ARRAY[]::text[]) AS partners_here
    FROM place pl
    LEFT JOIN needs n ON n.district = pl.district
    LEFT JOIN own_sum os ON os.district = pl.district
    LEFT JOIN partner_sum ps ON ps.district = pl.district
    LEFT JOIN distances d ON d.district = pl.district
    LEFT JOIN ours ON ours.district = pl.district
    LEFT JOIN partners_here ph ON ph.district = pl.district
),
scored AS (
    SELECT f.*,
           CASE WHEN f.median_km IS NULL THEN 0.0 ELSE
               least(1.0, (f.own_hours + :partner_weight * f.partner_hours) / f.hours_wanted)
               * (1.0 - least(f.median_km, :distance_cap) / (2 * :distance_cap))
           END AS score
    FROM figures f
)
SELECT district, people, round(CAST(hours_wanted AS numeric), 2) AS hours_wanted, needs,
       own_pas, round(CAST(own_hours AS numeric), 2) AS own_hours,
       partner_pas, round(CAST(partner_hours AS numeric), 2) AS partner_hours,
       round(CAST(median_km AS numeric), 2) AS median_km,
       our_cluster_here, partners_here, round(CAST(score AS numeric), 4) AS score
FROM scored
ORDER BY our_cluster_here, score DESC, hours_wanted DESC, people DESC, district
"""


@cache
def _centroid_arrays() -> tuple[list[str], list[float], list[float]]:
    table = all_centroids()
    districts = sorted(table)
    return (
        districts,
        [table[d][0] for d in districts],
        [table[d][1] for d in districts],
    )


def opportunities_statement() -> Any:
    """The statement, with its parameters typed (asyncpg needs the array types)."""
    return text(_OPPORTUNITIES).bindparams(
        bindparam("centroid_districts", type_=ARRAY(String)),
        bindparam("centroid_lats", type_=ARRAY(Float)),
        bindparam("centroid_lons", type_=ARRAY(Float)),
        bindparam("weeks", type_=Integer),
        bindparam("partner_weight", type_=Float),
        bindparam("distance_cap", type_=Float),
    )


@dataclass(frozen=True)
class NeedDemand:
    need: str
    people: int


@dataclass(frozen=True)
class Opportunity:
    district: str
    people: int
    hours_wanted: float
    needs: list[NeedDemand]
    own_pas: int
    own_hours: float
    partner_pas: int
    partner_hours: float
    median_distance_km: float | None
    our_cluster_here: bool
    partners_here: list[str]
    score: float


def may_ask(viewer: Viewer) -> bool:
    return viewer.role in (Role.ADMIN, Role.COORDINATOR)


def area_check(viewer: Viewer, la_code: str) -> Select:
    """Does the local authority exist, and may the viewer see its referrals?"""
    return select(
        exists().where(
            LocalAuthority.gss_code == la_code,
            policy.referral_visible(viewer, LocalAuthority.gss_code),
        )
    )


async def expansion_opportunities(
    session: AsyncSession,
    viewer: Viewer,
    la_code: str,
    horizon_weeks: int = DEFAULT_HORIZON_WEEKS,
) -> list[Opportunity]:
    """The ranked opportunities in one local authority (see the module docstring): two
    statements, whatever the number of districts, PAs or windows."""
    if not may_ask(viewer) or not 1 <= horizon_weeks <= MAX_HORIZON_WEEKS:
        return []
    if not await session.scalar(area_check(viewer, la_code)):
        return []
    districts, lats, lons = _centroid_arrays()
    rows = (
        await session.execute(
            opportunities_statement(),
            {
                "centroid_districts": districts,
                "centroid_lats": lats,
                "centroid_lons": lons,
                "now": viewer.now,
                "weeks": horizon_weeks,
                "la_code": la_code,
                "partner_weight": PARTNER_HOURS_WEIGHT,
                "distance_cap": DISTANCE_CAP_KM,
            },
        )
    ).all()
    return [
        Opportunity(
            district=r.district,
            people=int(r.people),
            hours_wanted=float(r.hours_wanted),
            needs=[NeedDemand(str(n), int(c)) for n, c in r.needs],
            own_pas=int(r.own_pas),
            own_hours=float(r.own_hours),
            partner_pas=int(r.partner_pas),
            partner_hours=float(r.partner_hours),
            median_distance_km=float(r.median_km) if r.median_km is not None else None,
            our_cluster_here=bool(r.our_cluster_here),
            partners_here=sorted(r.partners_here),
            score=float(r.score),
        )
        for r in rows
    ]


# --- clusters partners have opened in our area ---------------------------------------------


def partner_clusters(viewer: Viewer, la_code: str | None = None) -> Select:
    """Clusters partners told us they opened (public facts, not personal data): admins and
    coordinators; partnerships ACTIVE or SUSPENDED (the rows go when one ends). Newest
    first; the filter uses the index on `partner_cluster.la_code`."""
    stmt = (
        select(
            PartnerCluster.id,
            PartnerCluster.ref,
            PartnerCluster.name,
            PartnerCluster.la_code,
            PartnerCluster.district,
            PartnerCluster.opened_at,
            PartnerCluster.received_at,
            Partnership.coop_name,
            Partnership.base_url,
        )
        .join(Partnership, Partnership.id == PartnerCluster.partnership_id)
        .where(
            Partnership.status.in_(
                [PartnershipStatus.ACTIVE.value, PartnershipStatus.SUSPENDED.value]
            )
        )
        .order_by(PartnerCluster.opened_at.desc(), PartnerCluster.id.desc())
    )
    if not may_ask(viewer):
        stmt = stmt.where(false())
    if la_code is not None:
        stmt = stmt.where(PartnerCluster.la_code == la_code)
    return stmt
