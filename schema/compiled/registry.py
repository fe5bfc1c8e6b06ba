"""What the compiled read path can read: per GraphQL type, the select its rows come from
and, per field, how PostgreSQL renders it exactly as the resolver path does.

Rows come from the same selects the resolvers read (`care.queries.member_select`,
`visit_select`, `cluster_select`, `cover_offer_select`, `pay_rate_select`, ...): the
privacy predicates of `care.policy` and the masks of personal fields are in those
selects, so this module holds no rule of its own. A field missing here makes the whole
operation run on the resolver path (schema/compiled/compiler.py, `Unsupported`).

Floats are written as orjson writes Python's floats (`Render.FLOAT`), exactly for
magnitudes below 1e15, which every float column's type or check constraint guarantees.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from functools import cache
from typing import Any

from sqlalchemy import ColumnElement, Select, any_, case, func, literal, select, union

from care import candidates, enums, figures, queries, vocabulary
from care.models import (
    CoverExchange,
    Member,
    PaProfile,
    ServiceUserProfile,
)
from care.viewer import Viewer
from schema import types
from schema.figures import ClusterFigures
from schema.permissions import MEMBER_TYPES
from schema.query import Query
from schema.rows import (
    InRow,
    Kind,
    Orders,
    Paged,
    RootPage,
    RootRows,
    ToOne,
    chosen_order,
    data_fields,
    in_rows,
    lists,
    pages,
    records,
    root_pages,
    root_rows,
)


class Render(Enum):
    """How a column becomes JSON identical to today's serialisation."""

    PLAIN = "plain"  # text, int or bool
    ENUM = "enum"  # an enum stored under its GraphQL name (checked below): no escaping
    INSTANT = "instant"  # timestamptz as Python's isoformat() of a UTC datetime
    DATE = "date"  # YYYY-MM-DD
    LIST = "list"  # text[]: null stays null
    LIST_OR_EMPTY = "list_or_empty"  # text[]: null becomes []
    IS_SET = "is_set"  # true when the column is not null
    FLOAT = "float"  # float8 or numeric as Python's float in JSON (2.0, not 2)


@dataclass(frozen=True)
class Column:
    """A field read from one column of the type's select."""

    column: str
    render: Render = Render.PLAIN
    # Declared non-null (a data field's annotation): its JSON is written without a
    # `coalesce` to JSON null.
    present: bool = False


@dataclass(frozen=True)
class GlobalId:
    """Relay's `id`: base64 of `<GraphQL type>:<database id>`."""

    column: str = "id"


@dataclass(frozen=True)
class Page:
    """A Relay connection of `source` rows. `link` narrows the source select to the
    rows of one parent (None at the root); `filters` applies the list's arguments;
    `sort` are the keyset sort keys (the cursor's keys)."""

    source: str
    sort: Sequence[Any]
    arguments: frozenset[str]
    link: Callable[[Select, Any], Select] | None = None
    filters: Callable[[Select, dict[str, Any], str], Select] | None = None
    # The named parameters `filters` creates (without the prefix), from the arguments.
    values: Callable[[dict[str, Any]], dict[str, Any]] | None = None
    # A root list's orders by their `orderBy` names (`care.queries.MEMBER_ORDERS`, ...):
    # each its sort keys and whether it runs downwards; the first is the default, whose
    # cursors carry no order. None: the list has one order, `sort` ascending.
    orders: Orders | None = None
    # The link's foreign key to the members, when it refers into a profile.
    through: Any = None
    # A root list of the viewer's own rows (`myCoverOffers`): narrows the source select
    # for the viewer (`care.queries.my_open_offers`, ...), as the resolver does.
    mine: Callable[[Select, Viewer], Select] | None = None

    def order(self, args: dict[str, Any]) -> tuple[str | None, Sequence[Any], bool]:
        """The order `args` ask for: the name its cursors carry (None for the default
        order), its sort keys and whether they run downwards."""
        return chosen_order(self.orders, self.sort, args)


# `ToOne.key` of `me`: the viewer's own member id (`care.policy.me`), not a column.
VIEWER = "<viewer>"


@dataclass(frozen=True)
class ToMany:
    """A list of `source` rows: `link` narrows the source select to one parent's rows,
    `order` sorts them (downwards when `descending`). Rows of another concrete type than
    the list's are left out, as the resolvers' isinstance filters."""

    source: str
    link: Callable[[Select, Any], Select]
    order: Sequence[Any]
    descending: bool = False
    # The link's foreign key to the members, when it refers into a profile.
    through: Any = None


@dataclass(frozen=True)
class First:
    """The first of one parent's `source` rows, or null (`Visit.partnerCover`: the
    visit's newest live exchange): `link` narrows the source select to the parent's rows,
    `order` sorts them (downwards when `descending`) as the resolver's statement does."""

    source: str
    link: Callable[[Select, Any], Select]
    order: Sequence[Any]
    descending: bool = False


@dataclass(frozen=True)
class Ranged:
    """A list of one parent's rows over a range the request gives, null where the caller
    may not read it (`PersonalAssistant.busyPeriods`): `rows(viewer, prefix)` is the
    resolver's select (`care.queries.busy_time_select`): rows by `pg_parent`, sorted by
    `order`, a row whose `order` is null for a parent with none, no row for a parent the
    caller may not read. `values` turns the request's arguments into its parameters (without
    the prefix) with the resolver's own check, whose error sends the request to the
    resolvers (so the error is theirs)."""

    rows: Callable[[Viewer, str], Select]
    order: str
    arguments: frozenset[str]
    values: Callable[[dict[str, Any]], dict[str, Any]]


@dataclass(frozen=True)
class AnyNode:
    """`node(id:)`: the record of the id's type, read by id from that type's source (as
    the type's `resolve_nodes` loads it); `sources` names the source of each node type
    that compiles."""

    sources: Mapping[str, str]


@dataclass(frozen=True)
class Embedded:
    """An object made of the parent row's own columns (`Cluster.centre`: a GeoPoint of
    its centre's columns), null when the `present` column is. Its fields may be objects
    of the row's columns too (`Coop.coverRules.weights`)."""

    present: str
    fields: Mapping[str, FieldSpec]


FieldSpec = (
    Column
    | GlobalId
    | ToOne
    | Page
    | ToMany
    | First
    | AnyNode
    | Embedded
    | Ranged
    | RootRows
    | InRow
)


@dataclass(frozen=True)
class Source:
    """Where the rows of one kind of record come from, for one viewer shape."""

    build: Callable[[Viewer], Select]
    # The concrete GraphQL type of a row (for interfaces): (SQL over the row, names).
    typename: Callable[[Any], ColumnElement[str]] | None = None
    types: tuple[str, ...] = ()
    # The values of the select's named parameters that follow the viewer's clock (not
    # `care.policy.viewer_params`'), by name: bound again on every request, as the select
    # built for the request would hold them (a cached statement must not keep the clock
    # of the request it was compiled for).
    clock: Callable[[Viewer], dict[str, Any]] | None = None


# The member type each profile table makes its members (`schema.types.member_from_row`).
PROFILE_TYPES = {
    ServiceUserProfile.__tablename__: "ServiceUser",
    PaProfile.__tablename__: "PersonalAssistant",
}


def member_type_of(through: Any) -> str | None:
    """The concrete type of every member a relation reaches through `through`, a
    foreign-key column: a profile's member is of its class (migration 0025), so a key into
    `pa_profile` reaches only PersonalAssistants. The compiled statement then tests no
    row's type, and PostgreSQL leaves the profile joins out of the member's select."""
    if through is None:
        return None
    tables = {fk.column.table.name for fk in through.expression.foreign_keys}
    kinds = {PROFILE_TYPES[t] for t in tables if t in PROFILE_TYPES}
    if len(kinds) != 1:
        raise ValueError(f"{through} is not a foreign key into one member profile")
    return kinds.pop()


def _member_typename(row: Any) -> ColumnElement[str]:
    """The concrete type `schema.types.member_from_row` picks, in the same order."""
    return case(
        (row.c.su_id.is_not(None), literal("ServiceUser")),
        (row.c.pa_id.is_not(None), literal("PersonalAssistant")),
        (row.c.membership_class == enums.MembershipClass.CARER.value, literal("Carer")),
        else_=literal("CoopMember"),
    )


SOURCES: dict[str, Source] = {
    "member": Source(
        build=queries.member_select,
        typename=_member_typename,
        types=("ServiceUser", "PersonalAssistant", "Carer", "CoopMember"),
    ),
    "visit": Source(build=queries.visit_select),
    "cluster": Source(build=queries.cluster_select),
    "pool": Source(build=queries.pool_select),
    "availability": Source(build=queries.availability_select),
    "cover_request": Source(build=queries.cover_request_select),
    "absence": Source(build=queries.absence_select),
    "cover_offer": Source(build=queries.cover_offer_select),
    # An offer's visit as its PA weighs it, by the offer's id (`CoverOffer.visitSummary`).
    "offer_summary": Source(build=queries.offer_summary_select),
    "pay_rate": Source(build=queries.pay_rate_select),
    "skill": Source(build=queries.skill_select),
    "cover_exchange": Source(build=queries.cover_exchange_select),
    # Read only as the events of an exchange the caller may see (no rule of their own).
    "cover_exchange_event": Source(build=queries.cover_exchange_event_select),
    # Admins, and coordinators in or next to the referral's council (`referral_visible`).
    "referral": Source(build=queries.referral_select),
    # Public reference data: no rule applies.
    "local_authority": Source(build=queries.local_authority_select),
    # The co-op's public profile, and its cover rules masked for callers outside it.
    "coop": Source(build=queries.coop_select),
    # Partnerships with other instances and their manifests' local authorities (admins).
    "partnership": Source(build=queries.partnership_select),
    "partner_local_authority": Source(build=queries.partner_local_authority_select),
    # The care vocabulary: nothing private (who may read it is `careTerms`' access rule).
    "care_term": Source(build=vocabulary.term_select),
    # Service users with their continuity over the 28 days up to the viewer's `now`, of
    # the clusters the viewer manages (`care.policy.cluster_managed`).
    "service_user_continuity": Source(
        build=figures.continuity_select, clock=figures.continuity_params
    ),
    # Cover and delivery figures per cluster the caller manages, over a period: its rows
    # take the request's values as parameters (`schema.figures.CLUSTER_FIGURES`).
    "cluster_figures": Source(build=figures.cluster_figures),
    # Needs no team PA meets, per cluster the caller manages (no rows for another's).
    "cover_gap": Source(build=candidates.cover_gaps_select),
}


def busy_arguments(args: dict[str, Any]) -> dict[str, Any]:
    """`busyPeriods`' range as `care.queries.busy_time_select` takes it, checked by the
    resolver's own `schema.types.busy_range` (its GraphQLError: the request falls back)."""
    starts_from, starts_before = types.busy_range(args["startsFrom"], args["startsBefore"])
    return {"busy_from": starts_from, "busy_before": starts_before}


PAGE = frozenset({"first", "after", "last", "before"})


def _linked(column: Any) -> Callable[[Select, Any], Select]:
    def link(stmt: Select, parent: Any) -> Select:
        return stmt.where(column == parent.c.id)

    return link


def _joined(table: Any, member_column: Any, parent_column: Any) -> Callable[[Select, Any], Select]:
    """The members one parent links to through `table`. As an array of ids rather than a
    join: PostgreSQL then probes the member index for each (a join made it scan every
    member to hash them, for a page of 50)."""

    def link(stmt: Select, parent: Any) -> Select:
        ids = select(member_column).where(parent_column == parent.c.id).correlate(parent)
        return stmt.where(Member.id == any_(func.array(ids.scalar_subquery())))

    return link


def _live_cover_of_visit(stmt: Select, parent: Any) -> Select:
    """A visit's live exchanges (`queries.live_cover_exchanges_of_visits`)."""
    return queries.live_cover_exchanges(stmt).where(CoverExchange.visit_id == parent.c.id)


def _through(table: Any, target: Any, parent_column: Any) -> Callable[[Select, Any], Select]:
    """The rows one parent links to through `table` (a pool's clusters, a PA's pools)."""

    def link(stmt: Select, parent: Any) -> Select:
        return stmt.join(table, target).where(parent_column == parent.c.id)

    return link


def declared_lists(cls: type) -> dict[str, FieldSpec]:
    """The type's lists declared with `schema.types.many` (`schema.rows.Many`), as the
    compiler reads them: correlated to the parent row, members by id from an array
    (`_joined`), other rows joined through their link table."""
    found: dict[str, FieldSpec] = {}
    for name, spec in lists(cls).items():
        link = _link(spec.source, spec.parent, spec.link, spec.key)
        found[name] = ToMany(spec.source, link, spec.order, spec.descending, spec.through)
    return found


def _link(
    source: str, parent: Any, row_link: Any, key: str = "id"
) -> Callable[[Select, Any], Select]:
    """How a declared list or page narrows its source select to one parent's rows: by a
    column of the rows' own table, members by id from an array (`_joined`), other rows
    joined through their link table, and a union's rows by key from the union of its
    branches (`_united`)."""
    if isinstance(parent, tuple):
        return _united(parent, row_link, key)
    if row_link is None:
        return _linked(parent)
    if source == "member":
        return _joined(row_link.table, row_link, parent)
    (row_id,) = [fk.column for fk in row_link.expression.foreign_keys]
    return _through(row_link.table, row_link == row_id, parent)


def _united(
    parents: tuple[Any, ...], links: tuple[Any, ...], key: str
) -> Callable[[Select, Any], Select]:
    """The rows whose key is in the union of the parent's links (a member's clusters, by
    `cluster_service_user` or `cluster_pa`; a council's neighbours, read both ways from
    the ordered pairs)."""
    (row_key,) = {fk.column for link in links for fk in link.expression.foreign_keys}

    def link(stmt: Select, parent: Any) -> Select:
        # Each side of a UNION correlates only when told (else the parent joins its FROM).
        ids = union(
            *(
                select(by).where(one == parent.c[key]).correlate(parent)
                for one, by in zip(parents, links, strict=True)
            )
        )
        return stmt.where(row_key.in_(ids))

    return link


@cache
def page_of(spec: Paged) -> Page:
    """The page a `schema.types.paged` field declares (`schema.rows.Paged`), as the
    compiler reads it: correlated to the parent row as `declared_lists`, its arguments the
    page's and its filters', its filters applied as the resolver applies them. One `Page`
    per declaration (tests/schema/test_rows.py checks FIELDS holds it)."""
    found = spec.filters
    return Page(
        spec.source,
        spec.sort,
        PAGE | frozenset(found.arguments if found is not None else ()),
        link=_link(spec.source, spec.parent, spec.link),
        filters=found.apply if found is not None else None,
        values=found.values if found is not None else None,
        through=spec.through,
    )


@cache
def root_page_of(spec: RootPage) -> Page:
    """The page a root list declares (`schema.types.root_page`, a `schema.rows.RootPage`),
    as the compiler reads it: its arguments, filters, orders and narrowing to the
    viewer's own rows the resolver's. One `Page` per declaration (tests/schema/
    test_rows.py checks FIELDS holds it)."""
    found = spec.filters
    return Page(
        spec.source,
        spec.sort,
        frozenset(a.graphql_name for a in spec.arguments),
        filters=found.apply if found is not None else None,
        values=found.values if found is not None else None,
        orders=spec.orders,
        mine=spec.mine,
    )


def declared_roots(cls: type) -> dict[str, FieldSpec]:
    """The root lists declared with `schema.types.root_page`, and the root rows declared
    with `schema.types.root_list` and `root_record` (read as declared: `RootRows`, its
    arguments and filters too)."""
    return {
        **{name: root_page_of(spec) for name, spec in root_pages(cls).items()},
        **root_rows(cls),
    }


def declared_pages(cls: type) -> dict[str, FieldSpec]:
    """The type's pages declared with `schema.types.paged`."""
    return {name: page_of(spec) for name, spec in pages(cls).items()}


_ENUM_NAME = re.compile(r"[_A-Za-z][_0-9A-Za-z]*")
_RENDERS = {
    Kind.PLAIN: Render.PLAIN,
    Kind.ENUM: Render.ENUM,
    Kind.FLOAT: Render.FLOAT,
    Kind.INSTANT: Render.INSTANT,
    Kind.DATE: Render.DATE,
}


def data_columns(cls: type) -> dict[str, FieldSpec]:
    """The type's plain-value fields, each read from the column of its Python name, as
    the resolver path reads it (`schema.rows`): declared once, on the Strawberry type."""
    columns: dict[str, FieldSpec] = {}
    for field in data_fields(cls):
        if field.graphql_name is None or field.kind is Kind.OBJECT:
            continue  # private, the node's database id, or an object (declared below)
        if field.kind is Kind.LIST:
            render = Render.LIST if field.nullable else Render.LIST_OR_EMPTY
        else:
            render = _RENDERS[field.kind]
        if field.enum is not None and any(
            member.name != member.value or not _ENUM_NAME.fullmatch(member.name)
            for member in field.enum
        ):
            # Written as the stored text between quotes (`Render.ENUM`): it must be the
            # GraphQL name, which needs no escaping.
            raise RuntimeError(f"{field.enum.__name__}: the compiled path writes enums' values")
        columns[field.graphql_name] = Column(field.name, render, present=not field.nullable)
    return columns


FIELDS: dict[str, dict[str, FieldSpec]] = {
    "Query": {
        "cluster": ToOne("cluster", key="id"),
        "me": ToOne("member", key=VIEWER),
        "node": AnyNode(
            {
                **dict.fromkeys(MEMBER_TYPES, "member"),
                "Cluster": "cluster",
                "Pool": "pool",
                "AvailabilityWindow": "availability",
                "Visit": "visit",
                "Absence": "absence",
                "CoverRequest": "cover_request",
                "CoverOffer": "cover_offer",
                "CoverExchange": "cover_exchange",
                "Referral": "referral",
                # Admins only (`care.policy.sees_partnerships`): null for anyone else.
                "Partnership": "partnership",
            }
        ),
        **declared_roots(Query),
    },
    "Cluster": {
        **data_columns(types.Cluster),
        **declared_lists(types.Cluster),
        **declared_pages(types.Cluster),
        **records(types.Cluster),
        "id": GlobalId(),
        "centre": Embedded(
            "centre_latitude",
            {
                "latitude": Column("centre_latitude", Render.FLOAT),
                "longitude": Column("centre_longitude", Render.FLOAT),
            },
        ),
    },
    "Pool": {
        **data_columns(types.Pool),
        **declared_lists(types.Pool),
        **declared_pages(types.Pool),
        "id": GlobalId(),
    },
    "Skill": data_columns(types.Skill),
    "Coop": {
        **data_columns(types.Coop),
        **records(types.Coop),
        # The rules and the weights in force are columns of the co-op's select, by their
        # fields' names, null outside the co-op (`queries.COVER_RULES_SHOWN`), as
        # `schema.types.coop_from_row` reads them.
        "coverRules": Embedded(
            queries.COVER_RULES_SHOWN,
            {
                **data_columns(types.CoverRules),
                "weights": Embedded(queries.COVER_RULES_SHOWN, data_columns(types.CoverWeights)),
            },
        ),
    },
    "LocalAuthority": {
        **data_columns(types.LocalAuthority),
        **declared_lists(types.LocalAuthority),
    },
    "ServiceUser": {
        **data_columns(types.ServiceUser),
        **declared_lists(types.ServiceUser),
        **declared_pages(types.ServiceUser),
        "id": GlobalId(),
    },
    "PersonalAssistant": {
        **data_columns(types.PersonalAssistant),
        **declared_lists(types.PersonalAssistant),
        **declared_pages(types.PersonalAssistant),
        "id": GlobalId(),
        "busyPeriods": Ranged(
            queries.busy_time_select,
            order="starts_at",
            arguments=frozenset({"startsFrom", "startsBefore"}),
            values=busy_arguments,
        ),
    },
    "BusyPeriod": data_columns(types.BusyPeriod),
    "Absence": {
        **data_columns(types.Absence),
        **records(types.Absence),
        "id": GlobalId(),
    },
    "CoverRequest": {
        **data_columns(types.CoverRequest),
        **declared_lists(types.CoverRequest),
        **records(types.CoverRequest),
        "id": GlobalId(),
    },
    "CoverOffer": {
        **data_columns(types.CoverOffer),
        **records(types.CoverOffer),
        "id": GlobalId(),
        "visitSummary": ToOne("offer_summary", key="id"),
    },
    "OfferedVisit": data_columns(types.OfferedVisit),
    "PayRate": data_columns(types.PayRate),
    "Carer": {
        **data_columns(types.Carer),
        **declared_lists(types.Carer),
        "id": GlobalId(),
    },
    "CoopMember": {
        **data_columns(types.CoopMember),
        **declared_lists(types.CoopMember),
        "id": GlobalId(),
    },
    "AvailabilityWindow": {
        **data_columns(types.AvailabilityWindow),
        **records(types.AvailabilityWindow),
        "id": GlobalId(),
        "fromWeeklyPattern": Column("weekly_availability_id", Render.IS_SET),
    },
    "Visit": {
        **data_columns(types.Visit),
        **records(types.Visit),
        "id": GlobalId(),
        "partnerCover": First(
            "cover_exchange",
            link=_live_cover_of_visit,
            order=queries.LIVE_COVER_EXCHANGE_ORDER,
            descending=True,
        ),
    },
    "CoverExchange": {
        **data_columns(types.CoverExchange),
        **records(types.CoverExchange),
        **declared_lists(types.CoverExchange),
        "id": GlobalId(),
        "partner": Embedded(
            "partner_base_url",  # never null: the exchange's partnership's
            {
                "name": Column("partner_name"),
                "baseUrl": Column("partner_base_url"),
            },
        ),
    },
    "CoverExchangeEvent": data_columns(types.CoverExchangeEvent),
    "Referral": {
        **data_columns(types.Referral),
        **records(types.Referral),
        "id": GlobalId(),
    },
    "Partnership": {
        **data_columns(types.Partnership),
        **declared_lists(types.Partnership),
        "id": GlobalId(),
    },
    "PartnerLocalAuthority": data_columns(types.PartnerLocalAuthority),
    "CareTerm": data_columns(types.CareTerm),
    # The person is read from the figures' own row (`schema.types.in_row`).
    "ContinuityFigures": {
        **data_columns(types.ContinuityFigures),
        **in_rows(types.ContinuityFigures),
    },
    "CoverGap": data_columns(types.CoverGap),
}

# A cluster's figures: their row holds the cluster's columns too, from which the resolver
# makes the cluster (`schema.figures._cluster_figures_from_row`), as the compiler does.
FIELDS["ClusterFigures"] = {
    **data_columns(ClusterFigures),
    "cluster": Embedded("id", FIELDS["Cluster"]),
}
