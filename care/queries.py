"""Every read statement of the service, built on the predicates of `care.policy`.

Functions return SQLAlchemy `Select`s; the GraphQL layer executes them (batched by
DataLoaders). Rows the viewer may not see are filtered here; masked fields come back as
NULL, so nothing personal leaves the database for a caller who may not read it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Hashable, Sequence
from typing import Any

from sqlalchemy import (
    BindParameter,
    ColumnElement,
    DateTime,
    Float,
    Integer,
    Numeric,
    Select,
    Text,
    and_,
    any_,
    bindparam,
    case,
    cast,
    extract,
    false,
    func,
    literal,
    literal_column,
    null,
    select,
    true,
    type_coerce,
    union,
    union_all,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import aliased

from care import policy
from care.enums import ACTIVE_VISIT_STATUSES, LIVE_EXCHANGE_STATUSES, CommitmentKind
from care.geography import great_circle_km, postcode_district_sql
from care.models import (
    MAX_VISIT_LENGTH,
    Absence,
    AvailabilityWindow,
    Cluster,
    ClusterServiceUser,
    Coop,
    CoverExchange,
    CoverExchangeEvent,
    CoverOffer,
    CoverRequest,
    LocalAuthority,
    Member,
    PaCommitment,
    PaPayRate,
    PaProfile,
    Partnership,
    PaSkill,
    Pool,
    PoolPa,
    Referral,
    ServiceUserProfile,
    Visit,
)
from care.paging import PageRequest, page, page_params
from care.viewer import Viewer
from care.weights import DEFAULT_WEIGHTS, column_name, weight

# Statements reused across requests, by shape (see `_reuse`).
_TEMPLATES: dict[Hashable, Select] = {}


def _reuse(key: Hashable, build: Callable[[], Select], viewer: Viewer, **values: Any) -> Select:
    """Build a statement once per shape (the function, the viewer's role, which filters are
    on) and run it again with this call's values. Building the privacy predicates and the
    paging wrappers is most of the Python cost of a read; compiled SQL is cached by
    SQLAlchemy either way. Every value that varies is a named parameter: the viewer's
    (`policy.viewer_params`), the page's (`paging.page_params`) and the ones given here."""
    stmt = _TEMPLATES.get(key)
    if stmt is None:
        stmt = _TEMPLATES[key] = build()
    return stmt.params(**policy.viewer_params(viewer), **values)


def _ids(values: Sequence[Any], name: str = "ids") -> BindParameter[Any]:
    return bindparam(name, list(values), expanding=True)


def _masked(mask: ColumnElement[bool], column: Any, name: str) -> Any:
    return case((mask, column), else_=null()).label(name)


# --- co-op and local authorities -----------------------------------------------------


# The column of `coop_select` that is null where the caller may not read the co-op's
# cover rules (`policy.cover_rules_visible`), and only there (it is not null in the
# table): both read paths build `Coop.coverRules` from the row when it is set.
COVER_RULES_SHOWN = "dbs_valid_months"


def coop_select(viewer: Viewer) -> Select:
    """The co-op's one row for both read paths: its public profile (`coop`), and its cover
    rules with the weights in force (`care.weights.weight`: the co-op's own over the
    defaults, as the candidate statements rank by), by the names of the `CoverRules` and
    `CoverWeights` fields, masked for callers outside the co-op."""
    shown = policy.cover_rules_visible(viewer)
    return select(
        Coop.id,
        Coop.name,
        Coop.kind,
        Coop.society_number,
        Coop.cqc_provider_id,
        Coop.cqc_status,
        Coop.home_la_code,
        Coop.description,
        _masked(shown, Coop.dbs_valid_months, "dbs_valid_months"),
        _masked(shown, Coop.max_weekly_hours, "max_weekly_hours"),
        _masked(shown, Coop.min_daily_rest_hours, "min_daily_rest_hours"),
        _masked(shown, Coop.cover_offer_ttl_minutes, "cover_offer_ttl_minutes"),
        *(
            _masked(shown, weight(Coop.cover_weights, name), column_name(name))
            for name in DEFAULT_WEIGHTS
        ),
    )


def partnership_with(base_url: str) -> Select:
    """This instance's record of its partnership with the instance at `base_url`."""
    return select(
        Partnership.proposal_ref,
        Partnership.status,
        Partnership.granted_scopes,
        Partnership.suspended_by,
    ).where(Partnership.base_url == base_url)


def local_authorities(codes: Sequence[str] | None = None) -> Select:
    stmt = select(LocalAuthority.gss_code, LocalAuthority.name).order_by(LocalAuthority.gss_code)
    if codes is not None:
        stmt = stmt.where(LocalAuthority.gss_code.in_(codes))
    return stmt


def local_authority_select(viewer: Viewer) -> Select:
    """Councils: public reference data, no rule applies (both read paths read it)."""
    return select(LocalAuthority.gss_code, LocalAuthority.name)


# --- members -------------------------------------------------------------------------


def _member_select(viewer: Viewer) -> Select:
    personal = policy.member_personal_visible(viewer)
    return (
        select(
            Member.id,
            Member.name,
            Member.membership_class,
            Member.joined_on,
            Member.active,
            personal.label("personal"),
            _masked(personal, Member.email, "email"),
            _masked(personal, Member.phone, "phone"),
            _masked(personal, Member.postcode, "postcode"),
            _masked(personal, Member.latitude, "latitude"),
            _masked(personal, Member.longitude, "longitude"),
            ServiceUserProfile.member_id.label("su_id"),
            _masked(personal, ServiceUserProfile.funding, "funding"),
            ServiceUserProfile.needs,
            _masked(personal, ServiceUserProfile.planned_weekly_hours, "planned_weekly_hours"),
            PaProfile.member_id.label("pa_id"),
            _masked(personal, PaProfile.dbs_checked_on, "dbs_checked_on"),
            PaProfile.contracted_weekly_hours,
            _masked(policy.pay_visible(viewer), PaProfile.hourly_pay_pence, "hourly_pay_pence"),
            PaProfile.max_travel_km,
            PaProfile.working_time_opt_out,
        )
        .outerjoin(ServiceUserProfile, ServiceUserProfile.member_id == Member.id)
        .outerjoin(PaProfile, PaProfile.member_id == Member.id)
        .where(policy.member_visible(viewer))
    )


# Every member read goes through this select: rows filtered and fields masked by policy.
member_select = _member_select


def listed_by_parent(
    stmt: Select,
    parent: Any,
    ids: Sequence[Any],
    order: Sequence[Any],
    *,
    link: Any = None,
    descending: bool = False,
    key: str = "id",
) -> Select:
    """A short list per parent (`schema.types.many`): the rows of `stmt` whose `parent`
    column holds one of `ids`, each labelled with it (`pg_parent`) and sorted by `order`
    within it (downwards when `descending`). `parent` is a column of the rows' own table
    (an offer's request), or of a link table whose `link` column refers to the row's
    `key` column (a cluster's pools through `pool_cluster`). Tuples of parents and links:
    the union of a branch per pair (a member's clusters, by `cluster_service_user` and
    `cluster_pa`)."""
    if isinstance(parent, tuple):
        u = union(
            *(
                _linked_rows(stmt, one, ids, link=by, key=key)
                for one, by in zip(parent, link, strict=True)
            )
        ).subquery()
        keys = [u.c[column.key] for column in order]
        return select(u).order_by(u.c.pg_parent, *(k.desc() if descending else k for k in keys))
    sort = [column.desc() if descending else column for column in order]
    return _linked_rows(stmt, parent, ids, link=link, key=key).order_by(parent, *sort)


def _linked_rows(stmt: Select, parent: Any, ids: Sequence[Any], *, link: Any, key: str) -> Select:
    if link is not None:
        stmt = stmt.join(link.table, link == stmt.selected_columns[key])
    return stmt.add_columns(parent.label("pg_parent")).where(parent.in_(ids))


def paged_by_parent(
    viewer: Viewer,
    key: Hashable,
    build: Callable[[Viewer], Select],
    parent: Any,
    ids: Sequence[Any],
    request: PageRequest,
    sort: Sequence[Any],
    *,
    link: Any = None,
    narrow: Callable[[Select], Select] | None = None,
    values: dict[str, Any] | None = None,
) -> Select:
    """A page per parent (`schema.types.paged`): the rows of `build(viewer)` whose
    `parent` column holds one of `ids` (of the rows' own table, or of a link table whose
    `link` column refers to the row, as `listed_by_parent`), narrowed by `narrow`, cut by
    `care.paging.page` in `sort` order. Built once per `key` (which says what `narrow`
    does: its values are named parameters, `values`), viewer shape and page shape."""

    def statement() -> Select:
        stmt = build(viewer)
        if link is not None:
            stmt = stmt.join(link.table, link == stmt.selected_columns.id)
        stmt = stmt.where(parent.in_(_ids(ids)))
        if narrow is not None:
            stmt = narrow(stmt)
        return page(stmt, sort, request, parent=parent)

    return _reuse(
        (key, policy.shape(viewer), request.shape),
        statement,
        viewer,
        ids=list(ids),
        **page_params(request, sort),
        **(values or {}),
    )


def members_by_id(viewer: Viewer, ids: Sequence[int]) -> Select:
    return _reuse(
        ("members_by_id", policy.shape(viewer)),
        lambda: _member_select(viewer).where(Member.id.in_(_ids(ids))),
        viewer,
        ids=list(ids),
    )


def name_pattern(name_contains: str | None) -> str | None:
    """The ILIKE pattern of a `nameContains` filter (None: no filter, as for "")."""
    return f"%{_escape_like(name_contains)}%" if name_contains else None


def member_filters(
    stmt: Select,
    *,
    membership_class: str | None = None,
    active: bool | None = None,
    name_pattern: str | None = None,
    prefix: str = "",
) -> Select:
    """The filters of the member list, as named parameters (`prefix`: see
    `_visit_filters`)."""
    if membership_class is not None:
        value: BindParameter[str] = bindparam(f"{prefix}membership_class", membership_class)
        stmt = stmt.where(Member.membership_class == value)
    if active is not None:
        stmt = stmt.where(Member.active == bindparam(f"{prefix}active", active))
    if name_pattern is not None:
        pattern: BindParameter[str] = bindparam(f"{prefix}name_pattern", name_pattern)
        stmt = stmt.where(Member.name.ilike(pattern, escape="\\"))
    return stmt


# The orders a root list offers, by the names of their GraphQL enum values: the sort keys
# (typed, so a cursor's keys can be checked against them; the last one unique) and whether
# they run downwards. The first is the list's default. Each has an index (models).
Order = tuple[tuple[Any, ...], bool]
MEMBER_ORDERS: dict[str, Order] = {
    "ID_ASC": ((Member.id,), False),
    "NAME_ASC": ((Member.name, Member.id), False),
    "NAME_DESC": ((Member.name, Member.id), True),
}


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def skill_select(viewer: Viewer) -> Select:
    """PAs' skills, as `Skill` names them. Read by whoever may see the PA: the rule is the
    PA's own (their skills are reached only through them)."""
    return select(PaSkill.pa_id, PaSkill.skill.label("name"), PaSkill.expires_on)


def pay_rate_select(viewer: Viewer) -> Select:
    """The pay rates of PAs whose pay the viewer may read (admins; the PA themself). The
    compiled read path (schema/compiled) reads `PersonalAssistant.payRates` from it too."""
    return (
        select(PaPayRate.pa_id, PaPayRate.effective_from, PaPayRate.hourly_pay_pence)
        .join(Member, Member.id == PaPayRate.pa_id)
        .where(policy.pay_visible(viewer))
    )


# --- clusters and pools ----------------------------------------------------------------

CLUSTER_COLUMNS = (
    Cluster.id,
    Cluster.name,
    Cluster.kind,
    Cluster.la_code,
    Cluster.support_worker_id,
    Cluster.status,
    Cluster.centre_latitude,
    Cluster.centre_longitude,
    Cluster.radius_km,
    Cluster.postcode_districts,
    Cluster.need_tags,
    Cluster.created_at,
    Cluster.closed_at,
)


def _cluster_select(viewer: Viewer) -> Select:
    stmt = select(*CLUSTER_COLUMNS)
    if not policy.sees_coop_records(viewer):
        stmt = stmt.where(literal(False))
    return stmt


# The compiled read path (schema/compiled) reads clusters through this select too.
cluster_select = _cluster_select


def cluster_filters(
    stmt: Select,
    *,
    la_code: str | None = None,
    kind: str | None = None,
    status: str | None = None,
    prefix: str = "",
) -> Select:
    """The filters of the cluster list, as named parameters (`prefix`: see
    `_visit_filters`)."""
    if la_code is not None:
        stmt = stmt.where(Cluster.la_code == bindparam(f"{prefix}la_code", la_code))
    if kind is not None:
        stmt = stmt.where(Cluster.kind == bindparam(f"{prefix}kind", kind))
    if status is not None:
        stmt = stmt.where(Cluster.status == bindparam(f"{prefix}status", status))
    return stmt


CLUSTER_SORT = (Cluster.id,)


def clusters_by_id(viewer: Viewer, ids: Sequence[int]) -> Select:
    return _reuse(
        ("clusters_by_id", policy.shape(viewer)),
        lambda: _cluster_select(viewer).where(Cluster.id.in_(_ids(ids))),
        viewer,
        ids=list(ids),
    )


POOL_COLUMNS = (Pool.id, Pool.name, Pool.shared_with_partners)


def _pool_select(viewer: Viewer) -> Select:
    stmt = select(*POOL_COLUMNS)
    if not policy.sees_coop_records(viewer):
        stmt = stmt.where(literal(False))
    return stmt


# The compiled read path (schema/compiled) reads pools through this select too.
pool_select = _pool_select


def pools_by_id(viewer: Viewer, ids: Sequence[int]) -> Select:
    return _pool_select(viewer).where(Pool.id.in_(ids))


# --- rota: visits and availability ----------------------------------------------------


def _visit_select(viewer: Viewer) -> Select:
    return select(
        Visit.id,
        Visit.service_user_id,
        Visit.pa_id,
        func.lower(Visit.during).label("starts_at"),
        func.upper(Visit.during).label("ends_at"),
        _masked(policy.visit_tasks_visible(viewer), Visit.tasks, "tasks"),
        _masked(policy.visit_tasks_visible(viewer), Visit.cancel_reason, "cancel_reason"),
        Visit.status,
        Visit.series_id,
        Visit.confirmed_by_id,
        Visit.confirmed_at,
        Visit.checked_in_at,
    ).where(policy.visit_visible(viewer))


def _visit_filters(
    stmt: Select,
    *,
    starts_from: dt.datetime | None,
    starts_before: dt.datetime | None,
    statuses: Sequence[str] | None,
    cluster_id: int | None = None,
    pa_id: int | None = None,
    service_user_id: int | None = None,
    prefix: str = "",
) -> Select:
    """The filters of a visit list. Every value is a named parameter (`prefix` keeps the
    names of two lists in one statement apart: schema/compiled), so a statement built
    once runs again with other values of the same shape."""

    def named(name: str, value: Any, type_: Any = None) -> BindParameter[Any]:
        return bindparam(f"{prefix}{name}", value, type_=type_)

    if starts_from is not None or starts_before is not None:
        # Overlap with the asked range, so a GiST index on `during` serves it.
        stmt = stmt.where(
            Visit.during.op("&&")(
                func.tstzrange(
                    named("starts_from", starts_from, DateTime(timezone=True)),
                    named("starts_before", starts_before, DateTime(timezone=True)),
                )
            )
        )
    if statuses:
        stmt = stmt.where(Visit.status.in_(_ids(statuses, f"{prefix}statuses")))
    if cluster_id is not None:
        # As an array, not IN (subquery): the planner then reads the few people's visits
        # by the (person, during) index, where it would walk every visit in start order
        # hoping to meet theirs.
        people = select(ClusterServiceUser.service_user_id).where(
            ClusterServiceUser.cluster_id == named("cluster_id", cluster_id)
        )
        stmt = stmt.where(Visit.service_user_id == any_(func.array(people.scalar_subquery())))
    if pa_id is not None:
        stmt = stmt.where(Visit.pa_id == named("pa_id", pa_id))
    if service_user_id is not None:
        stmt = stmt.where(Visit.service_user_id == named("service_user_id", service_user_id))
    return stmt


# Every visit read goes through this select (the compiled read path too): rows filtered
# and fields masked by policy.
visit_select = _visit_select
visit_filters = _visit_filters

# Typed, so a cursor's keys can be checked against them (paging.InvalidCursor).
VISIT_SORT = (func.lower(Visit.during, type_=DateTime(timezone=True)), Visit.id)
VISIT_ORDERS: dict[str, Order] = {
    "START_ASC": (VISIT_SORT, False),
    "START_DESC": (VISIT_SORT, True),
}


def visit_start_bounds(
    stmt: Select,
    *,
    starts_from: dt.datetime | None,
    starts_before: dt.datetime | None,
    prefix: str = "",
    **_: Any,
) -> Select:
    """Bounds on the start the start index can use (the overlap of `_visit_filters`
    cannot): a visit under way at `starts_from` began at most MAX_VISIT_LENGTH before it
    (a check constraint, migration 0022). A page is then read from there in order and the
    scan stops at its end, instead of passing every visit that ever started before. Named
    parameters, as `_visit_filters` (the compiled read path reruns them)."""
    start = VISIT_SORT[0]
    instant = DateTime(timezone=True)
    if starts_from is not None:
        earliest = starts_from - MAX_VISIT_LENGTH
        stmt = stmt.where(start >= bindparam(f"{prefix}earliest_start", earliest, type_=instant))
    if starts_before is not None:
        stmt = stmt.where(start < bindparam(f"{prefix}latest_start", starts_before, type_=instant))
    return stmt


def visits_by_id(viewer: Viewer, ids: Sequence[int]) -> Select:
    return _reuse(
        ("visits_by_id", policy.shape(viewer)),
        lambda: _visit_select(viewer).where(Visit.id.in_(_ids(ids))),
        viewer,
        ids=list(ids),
    )


def _availability_select(viewer: Viewer) -> Select:
    return select(
        AvailabilityWindow.id,
        AvailabilityWindow.pa_id,
        func.lower(AvailabilityWindow.during).label("starts_at"),
        func.upper(AvailabilityWindow.during).label("ends_at"),
        AvailabilityWindow.weekly_availability_id,
    ).where(policy.availability_visible(viewer, AvailabilityWindow.pa_id))


AVAILABILITY_SORT = (
    func.lower(AvailabilityWindow.during, type_=DateTime(timezone=True)),
    AvailabilityWindow.id,
)


def _availability_range(
    stmt: Select,
    starts_from: dt.datetime | None,
    starts_before: dt.datetime | None,
    prefix: str = "",
) -> Select:
    """Windows overlapping the range; named parameters (`prefix`: see `_visit_filters`)."""
    if starts_from is not None or starts_before is not None:
        instant = DateTime(timezone=True)
        stmt = stmt.where(
            AvailabilityWindow.during.op("&&")(
                func.tstzrange(
                    bindparam(f"{prefix}starts_from", starts_from, type_=instant),
                    bindparam(f"{prefix}starts_before", starts_before, type_=instant),
                )
            )
        )
    return stmt


# The compiled read path (schema/compiled) reads availability through these too.
availability_select = _availability_select
availability_range = _availability_range


def availability_filters(
    stmt: Select, *, pa_id: int | None = None, pool_id: int | None = None, prefix: str = ""
) -> Select:
    """The root availability list's filters, as named parameters (`prefix`: see
    `_visit_filters`)."""
    if pa_id is not None:
        stmt = stmt.where(AvailabilityWindow.pa_id == bindparam(f"{prefix}pa_id", pa_id))
    if pool_id is not None:
        pool: BindParameter[int] = bindparam(f"{prefix}pool_id", pool_id)
        stmt = stmt.where(
            AvailabilityWindow.pa_id.in_(select(PoolPa.pa_id).where(PoolPa.pool_id == pool))
        )
    return stmt


def availability_by_id(viewer: Viewer, ids: Sequence[int]) -> Select:
    return _availability_select(viewer).where(AvailabilityWindow.id.in_(ids))


# Busy time is read a window at a time; a bound keeps the work an argument can cause small.
MAX_BUSY_RANGE = dt.timedelta(days=62)


def busy_time_select(viewer: Viewer, prefix: str = "") -> Select:
    """When PAs are busy within [busy_from, busy_before) (named parameters, `prefix`: see
    `_visit_filters`): their active visits (SCHEDULED, COMPLETED), uncancelled absences
    and holds for partner co-ops, clipped to the range, overlapping and touching periods
    merged (`range_agg`), a row each (`pg_parent`: the PA; `starts_at`, `ends_at`), and one
    more row with null bounds for every PA. Only the rows of PAs whose busy time the viewer
    may read (`policy.busy_time_visible`): no row at all is null to the API, the null row
    alone an empty list. Bare periods: nothing says whose visit or what kind of absence,
    so a coordinator may plan a PA's time in other clusters without seeing those clusters'
    people. Both read paths read it: the resolver for its PAs (`busy_periods_of_pas`), the
    compiled one (schema/compiled) for each PA row; PostgreSQL pushes their test of the PA
    into every branch."""
    instant = DateTime(timezone=True)
    window = func.tstzrange(
        bindparam(f"{prefix}busy_from", type_=instant),
        bindparam(f"{prefix}busy_before", type_=instant),
    )
    visits = select(Visit.pa_id.label("pa_id"), Visit.during.label("during")).where(
        Visit.status.in_([s.value for s in ACTIVE_VISIT_STATUSES]),
        Visit.during.op("&&")(window),
    )
    away = select(Absence.pa_id.label("pa_id"), Absence.during.label("during")).where(
        Absence.cancelled_at.is_(None),
        Absence.during.op("&&")(window),
    )
    # Holds and bookings for partner co-ops (cross-boundary cover), as bare periods.
    held = select(PaCommitment.pa_id.label("pa_id"), PaCommitment.during.label("during")).where(
        PaCommitment.kind == CommitmentKind.HOLD.value,
        PaCommitment.during.op("&&")(window),
    )
    spans = union_all(visits, away, held).subquery()
    merged = (
        select(
            spans.c.pa_id,
            func.unnest(func.range_agg(spans.c.during.op("*")(window))).label("period"),
        )
        .group_by(spans.c.pa_id)
        .subquery()
    )
    every_pa = select(
        PaProfile.member_id.label("pg_parent"),
        null().cast(instant).label("starts_at"),
        null().cast(instant).label("ends_at"),
    )
    periods = select(
        merged.c.pa_id,
        func.lower(merged.c.period, type_=instant),
        func.upper(merged.c.period, type_=instant),
    )
    rows = union_all(every_pa, periods).subquery()
    return select(rows.c.pg_parent, rows.c.starts_at, rows.c.ends_at).where(
        policy.busy_time_visible(viewer, rows.c.pg_parent)
    )


def busy_periods_of_pas(
    viewer: Viewer, pa_ids: Sequence[int], starts_from: dt.datetime, starts_before: dt.datetime
) -> Select:
    """`busy_time_select` for these PAs, by PA and start: one statement for any number."""

    def build() -> Select:
        stmt = busy_time_select(viewer)
        pa, start = stmt.selected_columns.pg_parent, stmt.selected_columns.starts_at
        return stmt.where(pa.in_(_ids(pa_ids))).order_by(pa, start)

    return _reuse(
        ("busy_periods_of_pas", policy.shape(viewer)),
        build,
        viewer,
        ids=list(pa_ids),
        busy_from=starts_from,
        busy_before=starts_before,
    )


# --- cover ---------------------------------------------------------------------------


def _absence_select(viewer: Viewer) -> Select:
    return select(
        Absence.id,
        Absence.pa_id,
        Absence.kind,
        func.lower(Absence.during).label("starts_at"),
        func.upper(Absence.during).label("ends_at"),
        _masked(policy.absence_note_visible(viewer, Absence), Absence.note, "note"),
        Absence.created_at,
        Absence.cancelled_at,
    ).where(policy.absence_visible(viewer, Absence))


ABSENCE_SORT = (func.lower(Absence.during, type_=DateTime(timezone=True)), Absence.id)

# The compiled read path (schema/compiled) reads absences through this too.
absence_select = _absence_select


def absence_filters(
    stmt: Select,
    *,
    pa_id: int | None = None,
    starts_from: dt.datetime | None = None,
    starts_before: dt.datetime | None = None,
    include_cancelled: bool = False,
    prefix: str = "",
) -> Select:
    """The absence list's filters, as named parameters (`prefix`: see `_visit_filters`)."""
    if pa_id is not None:
        stmt = stmt.where(Absence.pa_id == bindparam(f"{prefix}pa_id", pa_id))
    if starts_from is not None or starts_before is not None:
        instant = DateTime(timezone=True)
        stmt = stmt.where(
            Absence.during.op("&&")(
                func.tstzrange(
                    bindparam(f"{prefix}starts_from", starts_from, type_=instant),
                    bindparam(f"{prefix}starts_before", starts_before, type_=instant),
                )
            )
        )
    if not include_cancelled:
        stmt = stmt.where(Absence.cancelled_at.is_(None))
    return stmt


def absences_by_id(viewer: Viewer, ids: Sequence[int]) -> Select:
    return _absence_select(viewer).where(Absence.id.in_(ids))


def _cover_request_select(viewer: Viewer) -> Select:
    return (
        select(
            CoverRequest.id,
            CoverRequest.visit_id,
            CoverRequest.reason,
            CoverRequest.status,
            CoverRequest.absence_id,
            CoverRequest.original_pa_id,
            CoverRequest.opened_at,
            CoverRequest.filled_by_pa_id,
            CoverRequest.filled_by_partner,
            CoverRequest.closed_at,
            CoverRequest.note,
            func.lower(Visit.during).label("visit_starts_at"),
        )
        .join(Visit, Visit.id == CoverRequest.visit_id)
        .where(policy.cover_request_visible(viewer, CoverRequest))
    )


def cover_request_filters(
    stmt: Select,
    *,
    cluster_id: int | None = None,
    statuses: Sequence[str] | None = None,
    visit_starts_from: dt.datetime | None = None,
    prefix: str = "",
) -> Select:
    """The filters of the cover request list, as named parameters (`prefix`: see
    `_visit_filters`)."""
    if cluster_id is not None:
        # As an array, not IN (subquery): the planner then reads the few people's visits
        # by the (person, during) index, where it would walk every visit in start order
        # hoping to meet theirs.
        people = select(ClusterServiceUser.service_user_id).where(
            ClusterServiceUser.cluster_id == bindparam(f"{prefix}cluster_id", cluster_id)
        )
        stmt = stmt.where(Visit.service_user_id == any_(func.array(people.scalar_subquery())))
    if statuses:
        stmt = stmt.where(CoverRequest.status.in_(_ids(statuses, f"{prefix}statuses")))
    if visit_starts_from is not None:
        instant = DateTime(timezone=True)
        starts = bindparam(f"{prefix}visit_starts_from", visit_starts_from, type_=instant)
        stmt = stmt.where(func.lower(Visit.during) >= starts)
    return stmt


# The compiled read path (schema/compiled) reads cover requests through these too.
cover_request_select = _cover_request_select


_OPENED = (CoverRequest.opened_at, CoverRequest.id)
COVER_REQUEST_ORDERS: dict[str, Order] = {
    "VISIT_START_ASC": (
        (func.lower(Visit.during, type_=DateTime(timezone=True)), CoverRequest.id),
        False,
    ),
    "OPENED_ASC": (_OPENED, False),
    "OPENED_DESC": (_OPENED, True),
}


def cover_requests_by_id(viewer: Viewer, ids: Sequence[int]) -> Select:
    return _cover_request_select(viewer).where(CoverRequest.id.in_(ids))


def cover_offer_select(viewer: Viewer) -> Select:
    """The cover offers the viewer may see (`policy.cover_offer_visible`). The compiled
    read path (schema/compiled) reads `CoverRequest.offers` from it too."""
    # An open offer past its expiry is reported as EXPIRED without anyone writing it.
    effective = case(
        (
            and_(CoverOffer.status == "OPEN", CoverOffer.expires_at <= func.now()),
            literal("EXPIRED"),
        ),
        else_=CoverOffer.status,
    )
    return select(
        CoverOffer.id,
        CoverOffer.cover_request_id,
        CoverOffer.pa_id,
        effective.label("status"),
        CoverOffer.offered_at,
        CoverOffer.expires_at,
        CoverOffer.responded_at,
    ).where(policy.cover_offer_visible(viewer, CoverOffer))


def my_open_offers(stmt: Select, viewer: Viewer) -> Select:
    """The viewer's own open (unexpired) offers of `stmt` (`cover_offer_select`): none for
    a viewer who is no member. `myCoverOffers` on both read paths (the compiled one runs
    it again for another PA: the viewer's id is a named parameter, `policy.me`)."""
    if viewer.member_id is None:
        return stmt.where(false())
    return stmt.where(
        CoverOffer.pa_id == policy.me(viewer),
        CoverOffer.status == "OPEN",
        CoverOffer.expires_at > func.now(),
    )


MY_COVER_OFFER_SORT = (CoverOffer.id,)


def offers_by_id(viewer: Viewer, ids: Sequence[int]) -> Select:
    return cover_offer_select(viewer).where(CoverOffer.id.in_(ids))


# What a PA needs to decide on an offer: a postcode's district (as
# care.geography.postcode_district reads a well-formed postcode, or a bare district), a
# name's first word (as federation.exchange.first_name), and the great-circle distance of
# care.geography.distance_km.
# Distances are shown to 100 m: enough to judge the journey, and no finer a hint of
# where the person lives than the district already gives.
OFFER_DISTANCE_DECIMALS = 1


def _first_name_of(name: Any) -> ColumnElement[str]:
    return func.left(func.substring(name, r"^\s*(\S+)"), 100)


def _great_circle_km(a: Any, b: Any) -> ColumnElement[float]:
    """Distance between two members' homes, to 100 m; NULL if either is unknown."""
    km = great_circle_km(a.latitude, a.longitude, b.latitude, b.longitude)
    return cast(func.round(cast(km, Numeric), OFFER_DISTANCE_DECIMALS), Float)


def _whole_minutes(starts_at: Any, ends_at: Any) -> ColumnElement[int]:
    """The minutes from one instant to the other, rounded half to even as Python's
    `round` (exact: PostgreSQL's epoch of an interval is numeric)."""
    minutes = cast(extract("epoch", ends_at - starts_at), Numeric) / 60
    half = minutes - func.floor(minutes) == literal_column("0.5")
    return cast(case((half, 2 * func.round(minutes / 2)), else_=func.round(minutes)), Integer)


def offer_summary_select(viewer: Viewer) -> Select:
    """For each offer, the visit as its PA weighs it (`policy.offer_summary_visible`):
    rows only for offers the viewer may read it of, the visit's length in whole minutes
    computed here. No address, postcode or contact detail is selected at all. Both read
    paths read `CoverOffer.visitSummary` from it (the resolver by `offer_summaries`)."""
    person = aliased(Member)
    pa_home = aliased(Member)
    starts_at, ends_at = func.lower(Visit.during), func.upper(Visit.during)
    return (
        select(
            CoverOffer.id,
            starts_at.label("starts_at"),
            ends_at.label("ends_at"),
            _whole_minutes(starts_at, ends_at).label("duration_minutes"),
            Visit.tasks,
            postcode_district_sql(person.postcode).label("postcode_district"),
            _great_circle_km(pa_home, person).label("distance_km"),
            _first_name_of(person.name).label("person_first_name"),
            ServiceUserProfile.needs,
        )
        .join(CoverRequest, CoverRequest.id == CoverOffer.cover_request_id)
        .join(Visit, Visit.id == CoverRequest.visit_id)
        .join(person, person.id == Visit.service_user_id)
        .outerjoin(ServiceUserProfile, ServiceUserProfile.member_id == person.id)
        .join(pa_home, pa_home.id == CoverOffer.pa_id)
        .where(policy.offer_summary_visible(viewer, CoverOffer))
    )


def offer_summaries(viewer: Viewer, ids: Sequence[int]) -> Select:
    """`offer_summary_select` for these offers: one statement for any number."""
    return offer_summary_select(viewer).where(CoverOffer.id.in_(ids))


# --- partnerships with other instances ------------------------------------------------------


def _json_text(value: Any) -> ColumnElement[str]:
    """A JSON value of a partner's manifest as text, as Python's `str()` of it read the
    value before: a string's own text, an integer's digits, `None` for a JSON null or a
    missing member (never SQL null: the fields are non-null). The manifest's values are
    stored as strings (`federation.client.parse_manifest` writes `str()` of each)."""
    return func.coalesce(value, literal_column("'None'", Text))


def _array_or_empty(value: Any) -> ColumnElement[Any]:
    """A JSONB column's elements if it holds an array, none otherwise (a JSON null was
    read as no elements too)."""
    return case(
        (func.jsonb_typeof(value) == literal_column("'array'"), value),
        else_=literal_column("'[]'::jsonb", JSONB),
    )


# The ids (`kid`) of a partner's public keys, in the manifest's order: an array of text,
# so both read paths take it as it is (`Partnership.keyIds`).
_KEY_IDS = (
    func.jsonb_array_elements_text(
        func.jsonb_path_query_array(Partnership.keys, literal_column("'$[*].kid'::jsonpath"))
    )
    .table_valued("value", with_ordinality="position")
    .render_derived("partner_kid")
)


def partnership_select(viewer: Viewer) -> Select:
    """Partnerships, for admins only (anyone else: no rows), by the columns of
    `schema.types.Partnership` (both read paths: `Query.partnerships`, the loader). Never
    the pseudonym key; of the partner's public keys only their ids."""
    key_ids = select(_json_text(_KEY_IDS.c.value)).order_by(_KEY_IDS.c.position)
    stmt = select(
        Partnership.id,
        Partnership.base_url,
        Partnership.coop_name,
        Partnership.home_la_code.label("home_local_authority"),
        Partnership.direction,
        Partnership.status,
        Partnership.requested_scopes,
        Partnership.granted_scopes,
        Partnership.suspended_by,
        Partnership.protocol_version,
        func.array(key_ids.scalar_subquery()).label("key_ids"),
        Partnership.manifest_fetched_at,
        Partnership.last_contact_at,
        Partnership.last_error,
        Partnership.last_error_at,
        Partnership.last_sync_at,
        Partnership.created_at,
        Partnership.updated_at,
    )
    if not policy.sees_partnerships(viewer):
        stmt = stmt.where(literal(False))
    return stmt


def partnerships(viewer: Viewer, ids: Sequence[int]) -> Select:
    """The partnerships of `ids` the caller may see (`partnership_select`), in id order."""
    return partnership_select(viewer).where(Partnership.id.in_(ids)).order_by(Partnership.id)


# The local authorities of a partnership's manifest, one row each, in the manifest's order.
_PARTNER_LAS = (
    func.jsonb_array_elements(_array_or_empty(Partnership.local_authorities))
    .table_valued("value", with_ordinality="position")
    .render_derived()
    .lateral("partner_la")
)
PARTNER_LOCAL_AUTHORITY_ORDER = (_PARTNER_LAS.c.position,)


def partner_local_authority_select(viewer: Viewer) -> Select:
    """The local authorities partners serve, from their manifests (`Partnership.
    localAuthorities`, both read paths: `schema.types.many` by `Partnership.id`), for
    admins only as the partnerships are."""
    element = type_coerce(_PARTNER_LAS.c.value, JSONB)
    stmt = (
        select(
            _json_text(element["gssCode"].astext).label("gss_code"),
            _json_text(element["name"].astext).label("name"),
        )
        .select_from(Partnership)
        .join(_PARTNER_LAS, true())
    )
    if not policy.sees_partnerships(viewer):
        stmt = stmt.where(literal(False))
    return stmt


# --- referrals ---------------------------------------------------------------------------


def referral_select(viewer: Viewer) -> Select:
    """Referrals the viewer may see (`policy.referral_visible`): every read of referrals
    builds on it, the compiled path's too (`schema.compiled.registry.SOURCES`)."""
    return select(
        Referral.id,
        Referral.la_code,
        Referral.postcode_district,
        Referral.needs,
        Referral.hours_per_week,
        Referral.referred_on,
        Referral.status,
        Referral.note,
        Referral.recorded_by_id,
        Referral.created_at,
        Referral.updated_at,
    ).where(policy.referral_visible(viewer, Referral.la_code))


def referral_filters(
    stmt: Select,
    *,
    la_code: str | None = None,
    district: str | None = None,
    status: str | None = None,
    prefix: str = "",
) -> Select:
    """The filters of the referral list, as named parameters (`prefix`: see
    `_visit_filters`); they use `ix_referral_la_status_district`. `district` is already a
    postcode district (`schema.filters.referral_arguments`): "" matches nothing."""
    if la_code is not None:
        stmt = stmt.where(Referral.la_code == bindparam(f"{prefix}la_code", la_code))
    if district is not None:
        stmt = stmt.where(Referral.postcode_district == bindparam(f"{prefix}district", district))
    if status is not None:
        stmt = stmt.where(Referral.status == bindparam(f"{prefix}status", status))
    return stmt


# In the order they were recorded, oldest first.
REFERRAL_SORT = (Referral.id,)


def referrals_by_id(viewer: Viewer, ids: Sequence[int]) -> Select:
    return referral_select(viewer).where(Referral.id.in_(ids))


# --- cover exchanges with partner co-ops --------------------------------------------------


def cover_exchange_select(viewer: Viewer) -> Select:
    """Cover exchanges the viewer may see (`policy.cover_exchange_visible`), personal
    fields masked (`cover_exchange_personal_visible`, `cover_exchange_summary_visible`),
    with the partner's name and base URL: every read of exchanges builds on it, the
    compiled path's too (`schema.compiled.registry.SOURCES`)."""
    personal = policy.cover_exchange_personal_visible(CoverExchange)
    summary = policy.cover_exchange_summary_visible(CoverExchange)
    return (
        select(
            CoverExchange.id,
            CoverExchange.ref,
            CoverExchange.side,
            CoverExchange.status,
            CoverExchange.partnership_id,
            Partnership.coop_name.label("partner_name"),
            Partnership.base_url.label("partner_base_url"),
            func.lower(CoverExchange.during).label("starts_at"),
            func.upper(CoverExchange.during).label("ends_at"),
            CoverExchange.district,
            CoverExchange.skills,
            CoverExchange.hold_expires_at,
            CoverExchange.pa_ref,
            _masked(personal, CoverExchange.pa_first_name, "pa_first_name"),
            _masked(personal, CoverExchange.person_first_name, "person_first_name"),
            _masked(personal, CoverExchange.person_address, "person_address"),
            _masked(summary, CoverExchange.care_summary, "care_summary"),
            CoverExchange.visit_id,
            CoverExchange.cover_request_id,
            CoverExchange.pa_id,
            CoverExchange.cancelled_by,
            CoverExchange.reason,
            CoverExchange.created_at,
            CoverExchange.updated_at,
        )
        .join(Partnership, Partnership.id == CoverExchange.partnership_id)
        .where(policy.cover_exchange_visible(viewer, CoverExchange))
    )


def cover_exchange_filters(
    stmt: Select,
    *,
    side: str | None = None,
    status: str | None = None,
    partnership_id: int | None = None,
    prefix: str = "",
) -> Select:
    """The filters of the cover exchange lists, as named parameters (`prefix`: see
    `_visit_filters`): the compiled read path runs them again with other values."""
    if side is not None:
        stmt = stmt.where(CoverExchange.side == bindparam(f"{prefix}side", side))
    if status is not None:
        stmt = stmt.where(CoverExchange.status == bindparam(f"{prefix}status", status))
    if partnership_id is not None:
        partnership: BindParameter[int] = bindparam(f"{prefix}partnership_id", partnership_id)
        stmt = stmt.where(CoverExchange.partnership_id == partnership)
    return stmt


def own_cover_exchanges(stmt: Select, viewer: Viewer) -> Select:
    """The viewer's own cover for partner co-ops among `stmt` (`cover_exchange_select`):
    PROVIDING exchanges of theirs as the PA; none for a viewer who is no member. The
    viewer's id is a named parameter (`policy.me`), as in the predicates."""
    if viewer.member_id is None:
        return stmt.where(false())
    return stmt.where(CoverExchange.side == "PROVIDING", CoverExchange.pa_id == policy.me(viewer))


# By the time of the visit, soonest first; typed, so a cursor's keys can be checked.
COVER_EXCHANGE_SORT = (
    func.lower(CoverExchange.during, type_=DateTime(timezone=True)),
    CoverExchange.id,
)


def cover_exchanges_by_id(viewer: Viewer, ids: Sequence[int]) -> Select:
    return cover_exchange_select(viewer).where(CoverExchange.id.in_(ids))


# A visit's live exchanges (`Visit.partnerCover` reads the first), newest first.
LIVE_COVER_EXCHANGE_ORDER = (CoverExchange.id,)


def live_cover_exchanges(stmt: Select) -> Select:
    """Only the exchanges of `stmt` (`cover_exchange_select`) that are live: HELD,
    ACCEPTED or CONFIRMED (`care.enums.LIVE_EXCHANGE_STATUSES`)."""
    return stmt.where(CoverExchange.status.in_([s.value for s in LIVE_EXCHANGE_STATUSES]))


def live_cover_exchanges_of_visits(viewer: Viewer, visit_ids: Sequence[int]) -> Select:
    """The live exchanges of each visit that the viewer may see, keyed by visit, newest
    first (`LIVE_COVER_EXCHANGE_ORDER` downwards): one per cover request (the unique
    index), so a visit may have more than one; `Visit.partnerCover` is the first."""
    return (
        live_cover_exchanges(cover_exchange_select(viewer))
        .add_columns(CoverExchange.visit_id.label("pg_parent"))
        .where(CoverExchange.visit_id.in_(visit_ids))
        .order_by(CoverExchange.visit_id, *[key.desc() for key in LIVE_COVER_EXCHANGE_ORDER])
    )


# An exchange's status changes, oldest first.
COVER_EXCHANGE_EVENT_ORDER = (CoverExchangeEvent.at, CoverExchangeEvent.id)


def cover_exchange_event_select(viewer: Viewer) -> Select:
    """The status changes of exchanges (who: the side and role only, never a member).
    No rule of its own: they are read only as an exchange's `events`, of an exchange the
    caller was already allowed to see (`cover_exchange_select`)."""
    return select(
        CoverExchangeEvent.id,
        CoverExchangeEvent.at,
        CoverExchangeEvent.status,
        CoverExchangeEvent.by_side,
        CoverExchangeEvent.by_role,
        CoverExchangeEvent.note,
    )
