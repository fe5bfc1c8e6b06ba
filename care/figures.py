"""Figures the co-op needs: cover and delivery per cluster, continuity per service user.

For admins and coordinators. Every figure is an aggregate computed in SQL; each function
returns ONE statement, set-based over all the clusters (or service users) asked for.

Definitions (see also the GraphQL field descriptions in `schema/figures.py`):

- Which service users belong to a cluster: `cluster_service_user`, the same relation
  every other read uses. A person in two clusters counts in both.
- Periods are half-open, `[from, to)`, on the *start* of what is counted: a cover request's
  `opened_at`, a visit's start (`lower(during)`). A visit that starts inside the period
  counts in full, even if it ends after `to`.
- Per cluster, over the period:
  - `cover_requests_opened`: cover requests (any status) for visits of the cluster's
    service users, opened in the period.
  - `cover_requests_filled`: those of them whose status is FILLED.
  - `fill_rate`: filled / opened; NULL when none were opened.
  - `median_time_to_fill_minutes`: median (`percentile_cont(0.5)`) of
    `closed_at - opened_at`, in minutes, over those filled; NULL when none.
  - `visits_missed`: visits with status MISSED starting in the period.
  - `visits_completed`: visits with status COMPLETED starting in the period.
  - `hours_delivered`: the summed length, in hours, of those completed visits.
- Per service user, over the 28 days up to now (`[now - 28 days, now)`), counting only
  COMPLETED visits (a visit that took place: confirmed by the person, or completed by the
  service). SCHEDULED, NEEDS_COVER, MISSED and CANCELLED visits do not count:
  - `visits`: those visits.
  - `distinct_pas`: the number of different PAs who made them.
  - `visits_by_regular_pas`: those made by one of the person's named regular PAs
    (`regular_pa`).
  - `regular_pa_share`: visits_by_regular_pas / visits; NULL when there were none.

Who may ask: admins (every cluster) and coordinators (the clusters they support). A cluster
the caller may not manage is left out of the result, exactly like an unknown one.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    DateTime,
    Float,
    Select,
    and_,
    any_,
    bindparam,
    case,
    cast,
    func,
    literal,
    or_,
    select,
    true,
)
from sqlalchemy.dialects.postgresql import ARRAY

from care import policy, queries
from care.enums import CoverRequestStatus, Role, VisitStatus
from care.errors import DomainError, ErrorCode
from care.models import (
    Cluster,
    ClusterServiceUser,
    CoverRequest,
    Member,
    RegularPa,
    ServiceUserProfile,
    Visit,
)
from care.services.visits import to_utc
from care.viewer import Viewer

DEFAULT_PERIOD = dt.timedelta(days=28)
MAX_PERIOD = dt.timedelta(days=366)
CONTINUITY_WINDOW = dt.timedelta(days=28)
# Visits that count as care delivered (for hours and continuity).
DELIVERED = VisitStatus.COMPLETED.value

FIGURE_ROLES = (Role.ADMIN, Role.COORDINATOR)


@dataclass(frozen=True)
class Period:
    """A half-open period [start, end) in UTC."""

    start: dt.datetime
    end: dt.datetime


def period(viewer: Viewer, start: dt.datetime | None, end: dt.datetime | None) -> Period:
    """The period asked for. Defaults: `end` is now, `start` is 28 days before `end`.
    A time without a UTC offset is London wall-clock time (as everywhere in the rota).

    Raises `DomainError(INVALID_RANGE)` when start >= end or the period is longer than
    366 days."""
    end_utc = to_utc(end) if end is not None else viewer.now
    start_utc = to_utc(start) if start is not None else end_utc - DEFAULT_PERIOD
    if start_utc >= end_utc:
        raise DomainError(ErrorCode.INVALID_RANGE, "`from` must be before `to`.", "from")
    if end_utc - start_utc > MAX_PERIOD:
        raise DomainError(
            ErrorCode.INVALID_RANGE,
            f"A period can be at most {MAX_PERIOD.days} days long.",
            "to",
        )
    return Period(start_utc, end_utc)


def may_ask(viewer: Viewer) -> bool:
    return viewer.role in FIGURE_ROLES and (viewer.is_admin or viewer.member_id is not None)


def _at(value: dt.datetime) -> ColumnElement[dt.datetime]:
    return literal(value, DateTime(timezone=True))


def _minutes(interval: ColumnElement[Any]) -> ColumnElement[Any]:
    return cast(func.extract("epoch", interval), Float) / 60.0


def _starts_in(
    start: ColumnElement[dt.datetime], end: ColumnElement[dt.datetime]
) -> ColumnElement[bool]:
    """A visit starts in [start, end). The overlap test is implied by the start test; it is
    there so the GiST index on (service_user_id, during) serves the query."""
    return and_(
        Visit.during.op("&&")(func.tstzrange(start, end, "[)")),
        func.lower(Visit.during) >= start,
        func.lower(Visit.during) < end,
    )


@dataclass(frozen=True)
class Asked:
    """What one request for cluster figures asks: the clusters (None: every one the caller
    manages), each once in the order asked, and the period."""

    cluster_ids: list[int] | None
    period: Period


def figure_parameters(asked: Asked) -> dict[str, Any]:
    """The values of `cluster_figures`' named parameters (without their prefix)."""
    return {
        "cluster_ids": asked.cluster_ids,
        "period_start": asked.period.start,
        "period_end": asked.period.end,
    }


def cluster_figures(viewer: Viewer, prefix: str = "") -> Select:
    """One row per cluster the viewer manages, among those asked for: the cluster's columns
    (`queries.CLUSTER_COLUMNS`), the period's bounds (`from_`, `to`) and the figures over
    the period. Every cluster the viewer manages when the asked ids are null, ordered by
    id; else those of them asked for, in the order asked.

    What is asked is named parameters (`figure_parameters`, each name prefixed with
    `prefix`), bound per request: both read paths run this one statement, the resolver
    with `Select.params`, the compiled path with the request's values (the period is worked
    out from the clock per request, never built into a cached statement)."""
    timestamp = DateTime(timezone=True)
    ids_type = ARRAY(BigInteger)
    ids = cast(bindparam(f"{prefix}cluster_ids", type_=ids_type), ids_type)
    start = cast(bindparam(f"{prefix}period_start", type_=timestamp), timestamp)
    end = cast(bindparam(f"{prefix}period_end", type_=timestamp), timestamp)
    clusters = select(Cluster.id).where(
        policy.cluster_managed(viewer, Cluster.id),
        or_(ids.is_(None), Cluster.id == any_(ids)),
    )
    # Named by the prefix: two of these in one statement (aliases) must not clash.
    chosen = clusters.cte(f"{prefix}chosen")

    filled = CoverRequest.status == CoverRequestStatus.FILLED.value
    cover = (
        select(
            ClusterServiceUser.cluster_id.label("cluster_id"),
            func.count().label("opened"),
            func.count().filter(filled).label("filled"),
            func.percentile_cont(0.5)
            .within_group(_minutes(CoverRequest.closed_at - CoverRequest.opened_at))
            .filter(filled)
            .label("median_minutes"),
        )
        .select_from(ClusterServiceUser)
        .join(Visit, Visit.service_user_id == ClusterServiceUser.service_user_id)
        .join(CoverRequest, CoverRequest.visit_id == Visit.id)
        .where(
            ClusterServiceUser.cluster_id.in_(select(chosen.c.id)),
            CoverRequest.opened_at >= start,
            CoverRequest.opened_at < end,
        )
        .group_by(ClusterServiceUser.cluster_id)
        .subquery(f"{prefix}cover")
    )

    completed = Visit.status == VisitStatus.COMPLETED.value
    hours = cast(func.extract("epoch", func.upper(Visit.during) - func.lower(Visit.during)), Float)
    delivery = (
        select(
            ClusterServiceUser.cluster_id.label("cluster_id"),
            func.count().filter(Visit.status == VisitStatus.MISSED.value).label("missed"),
            func.count().filter(completed).label("completed"),
            (func.sum(hours).filter(completed) / 3600.0).label("hours"),
        )
        .select_from(ClusterServiceUser)
        .join(Visit, Visit.service_user_id == ClusterServiceUser.service_user_id)
        .where(
            ClusterServiceUser.cluster_id.in_(select(chosen.c.id)),
            Visit.status.in_([VisitStatus.MISSED.value, VisitStatus.COMPLETED.value]),
            _starts_in(start, end),
        )
        .group_by(ClusterServiceUser.cluster_id)
        .subquery(f"{prefix}delivery")
    )

    opened = func.coalesce(cover.c.opened, 0)
    filled_count = func.coalesce(cover.c.filled, 0)
    return (
        select(
            *queries.CLUSTER_COLUMNS,
            start.label("from_"),
            end.label("to"),
            opened.label("cover_requests_opened"),
            filled_count.label("cover_requests_filled"),
            case(
                (opened > 0, cast(filled_count, Float) / cast(opened, Float)),
                else_=None,
            ).label("fill_rate"),
            cover.c.median_minutes.label("median_time_to_fill_minutes"),
            func.coalesce(delivery.c.missed, 0).label("visits_missed"),
            func.coalesce(delivery.c.completed, 0).label("visits_completed"),
            func.coalesce(delivery.c.hours, 0.0).label("hours_delivered"),
        )
        .where(Cluster.id.in_(select(chosen.c.id)))
        .outerjoin(cover, cover.c.cluster_id == Cluster.id)
        .outerjoin(delivery, delivery.c.cluster_id == Cluster.id)
        # The order asked (positions in the array); by id when none was asked.
        .order_by(func.array_position(ids, Cluster.id), Cluster.id)
    )


def continuity_window(viewer: Viewer) -> Period:
    return Period(viewer.now - CONTINUITY_WINDOW, viewer.now)


# The continuity window's bounds are named parameters: a statement built once (the
# compiled read path caches it) must take them from each request's viewer, never keep the
# clock of the request it was built for (`continuity_params`).
CONTINUITY_FROM = "continuity_from"
CONTINUITY_TO = "continuity_to"


def continuity_params(viewer: Viewer) -> dict[str, Any]:
    """The values of `continuity_select`'s window for this viewer's `now`."""
    window = continuity_window(viewer)
    return {CONTINUITY_FROM: window.start, CONTINUITY_TO: window.end}


def continuity_select(viewer: Viewer) -> Select:
    """Both read paths' rows of `serviceUserContinuity`: one per service user of each
    cluster the viewer manages (`policy.cluster_managed`; none for anyone else, nor for a
    coordinator's token without a member), with their cluster (`cluster_id`, which
    `continuity_filters` narrows to one), ordered by member id: the columns of
    `queries.member_select` (with the same privacy masks; the person is a service user by
    the link's foreign key, and the select says so too) and the continuity figures over the
    28 days up to `viewer.now`, read per person from their visits' index."""
    values = continuity_params(viewer)
    start, end = (
        bindparam(name, values[name], type_=DateTime(timezone=True))
        for name in (CONTINUITY_FROM, CONTINUITY_TO)
    )
    regular = RegularPa.pa_id.is_not(None)
    # Correlated to the person's row (LATERAL): an aggregate without GROUP BY gives one
    # row, zeros and no share for a person without visits.
    visits = func.count()
    by_regular = func.count().filter(regular)
    figures = (
        select(
            visits.label("visits_last_28_days"),
            func.count(func.distinct(Visit.pa_id)).label("distinct_pas_last_28_days"),
            by_regular.label("visits_by_regular_pas"),
            case(
                (visits > 0, cast(by_regular, Float) / cast(visits, Float)),
                else_=None,
            ).label("regular_pa_share"),
        )
        .select_from(Visit)
        .outerjoin(
            RegularPa,
            and_(
                RegularPa.service_user_id == Visit.service_user_id,
                RegularPa.pa_id == Visit.pa_id,
            ),
        )
        .where(
            Visit.service_user_id == Member.id,
            Visit.status == DELIVERED,
            _starts_in(start, end),
        )
        .lateral("continuity")
    )
    return (
        queries.member_select(viewer)
        .add_columns(
            ClusterServiceUser.cluster_id.label("cluster_id"),
            figures.c.visits_last_28_days,
            figures.c.distinct_pas_last_28_days,
            figures.c.visits_by_regular_pas,
            figures.c.regular_pa_share,
        )
        .join(ClusterServiceUser, ClusterServiceUser.service_user_id == Member.id)
        .join(figures, true())
        .where(
            ServiceUserProfile.member_id.is_not(None),
            policy.cluster_managed(viewer, ClusterServiceUser.cluster_id),
        )
    )


# In member id order.
CONTINUITY_ORDER = (Member.id,)


def continuity_filters(stmt: Select, *, cluster_id: int | None, prefix: str = "") -> Select:
    """The one cluster asked for, as a named parameter (`prefix`: see
    `queries._visit_filters`); -1, never an id, for an id that is none of a cluster's."""
    return stmt.where(
        ClusterServiceUser.cluster_id
        == bindparam(f"{prefix}cluster_id", cluster_id, type_=BigInteger)
    )
