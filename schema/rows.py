"""A GraphQL type's data fields, declared once on its Strawberry class, read from rows.

A field that is a plain value (no resolver) is declared by its annotation and description
on the Strawberry type, and its SQL (with its privacy mask) is the column of the same name
in the type's select in `care.queries`. From these two declarations:

- the resolver path builds the object from a row (`from_row`), converting by the
  annotation: an enum from its stored value, a float from numeric, a list from an array
  (an empty list for a null array unless the field is nullable);
- the compiled path renders the same column as PostgreSQL JSON
  (`schema.compiled.registry`, `data_columns`), chosen by the same annotation.

So a new data field is written once, and the two paths cannot read it differently.
Private fields (`strawberry.Private`: ids the resolvers follow) are read from the row's
columns of the same name too.

A field holding the one record a key of the row names (a visit's PA) is declared once
too, with `schema.types.record`: a `ToOne` in the field's metadata, which the resolver
follows with the source's loader and the compiler reads as a correlated subquery
(`records`). So is a short list reached through a key (a cluster's pools):
`schema.types.many`, a `Many` (`lists`); and a page of rows reached through a key (a
cluster's service users): `schema.types.paged`, a `Paged` (`pages`).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import inspect
import types
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import (
    TYPE_CHECKING,
    Annotated,
    Any,
    TypeVar,
    Union,
    get_args,
    get_origin,
    get_type_hints,
)

from strawberry.types.arguments import StrawberryArgumentAnnotation
from strawberry.types.base import get_object_definition
from strawberry.types.private import StrawberryPrivate
from strawberry.utils.str_converters import to_camel_case

if TYPE_CHECKING:
    from care.viewer import Viewer
    from schema.context import Limits

T = TypeVar("T")


class Kind(Enum):
    """What a data field's annotation says about its value."""

    PLAIN = "plain"  # str, int, bool, an id
    ENUM = "enum"
    FLOAT = "float"
    LIST = "list"
    INSTANT = "instant"  # datetime
    DATE = "date"
    OBJECT = "object"  # a Strawberry type made of the row's columns: given to `from_row`


@dataclass(frozen=True)
class DataField:
    """One plain-value field of a type: its Python name (the row's column), its GraphQL
    name (None for a private field), its kind and whether it may be null."""

    name: str
    graphql_name: str | None
    kind: Kind
    nullable: bool
    convert: Callable[[Any], Any]
    enum: type[Enum] | None = None  # an ENUM field's Python enum, or a LIST's items' enum


def _kind(hint: Any) -> tuple[Kind, bool, Any]:
    nullable = False
    if get_origin(hint) in (Union, types.UnionType):
        args = [a for a in get_args(hint) if a is not type(None)]
        nullable = len(args) < len(get_args(hint))
        (hint,) = args
    if get_origin(hint) is list:
        return Kind.LIST, nullable, hint
    if isinstance(hint, type):
        if issubclass(hint, Enum):
            return Kind.ENUM, nullable, hint
        if issubclass(hint, dt.datetime):
            return Kind.INSTANT, nullable, hint
        if issubclass(hint, dt.date):
            return Kind.DATE, nullable, hint
        if hint is float:
            return Kind.FLOAT, nullable, hint
        if get_object_definition(hint) is not None:
            return Kind.OBJECT, nullable, hint
    return Kind.PLAIN, nullable, hint


def _converter(kind: Kind, nullable: bool, hint: Any) -> Callable[[Any], Any]:
    if kind is Kind.ENUM:
        return lambda value: None if value is None else hint(value)
    if kind is Kind.FLOAT:
        return lambda value: None if value is None else float(value)
    if kind is Kind.LIST:
        (item,) = get_args(hint)
        if isinstance(item, type) and issubclass(item, Enum):
            # A list of enums (a partnership's scopes): each from its stored value.
            if nullable:
                return lambda value: None if value is None else [item(v) for v in value]
            return lambda value: [item(v) for v in value or ()]
        if nullable:
            return lambda value: None if value is None else list(value)
        return lambda value: list(value or ())
    if hint is bool and not nullable:
        return bool
    return _same


def _same(value: Any) -> Any:
    return value


_FIELDS: dict[type, tuple[DataField, ...]] = {}


def data_fields(cls: type) -> tuple[DataField, ...]:
    """The fields of a Strawberry type that hold values (not resolvers), private ones and
    a relay node's database id included, in declaration order."""
    known = _FIELDS.get(cls)
    if known is None:
        known = _FIELDS[cls] = _data_fields(cls)
    return known


def _data_fields(cls: type) -> tuple[DataField, ...]:
    definition = get_object_definition(cls, strict=True)
    resolved = {f.python_name for f in definition.fields if f.base_resolver is not None}
    # A field named otherwise in GraphQL (`from_` is `from`) keeps its name there.
    named = {f.python_name: f.graphql_name for f in definition.fields if f.graphql_name}
    hints = get_type_hints(cls, include_extras=True)
    found = []
    for field in dataclasses.fields(cls):
        if field.name in resolved or not field.init:
            continue
        hint = hints[field.name]
        exposed = True
        if get_origin(hint) is Annotated:
            # `strawberry.Private[...]` and `relay.NodeID[...]` (the GraphQL `id` is the
            # global id, not this column) are not GraphQL fields of their own.
            exposed = not any(isinstance(extra, StrawberryPrivate) for extra in hint.__metadata__)
            hint = get_args(hint)[0]
        kind, nullable, hint = _kind(hint)
        graphql_name = named.get(field.name, to_camel_case(field.name)) if exposed else None
        convert = _converter(kind, nullable, hint)
        enum = hint if kind is Kind.ENUM else _listed_enum(kind, hint)
        found.append(DataField(field.name, graphql_name, kind, nullable, convert, enum))
    return tuple(found)


def _listed_enum(kind: Kind, hint: Any) -> type[Enum] | None:
    """The enum of a list of enums' items (checked and written as an enum's are)."""
    if kind is not Kind.LIST:
        return None
    (item,) = get_args(hint)
    return item if isinstance(item, type) and issubclass(item, Enum) else None


# The metadata key under which a field declares the record it holds.
TO_ONE = "coopnet.to_one"


@dataclass(frozen=True)
class ToOne:
    """A nullable object field: the row of `source` whose `target` column holds the
    parent's `key` (at the root: the argument holding its global id, or the viewer's own
    id). A record of another concrete type than the field's is null, as the resolvers'
    isinstance checks. `through`: the key's column, when it is a foreign key into a member
    profile, which fixes the member's type (`schema.compiled.registry.member_type_of`)."""

    source: str
    key: str
    target: str = "id"
    through: Any = None


# The metadata key under which a field declares the record its parent's row holds.
IN_ROW = "coopnet.in_row"


@dataclass(frozen=True)
class InRow:
    """An object field whose record is read from the parent's own row: the parent's select
    is `source`'s select with more columns (`ContinuityFigures.serviceUser`: the members'
    select with a person's figures added), so both paths build the record from that row,
    the resolver with the source's row builder, the compiler as the source's object over
    the parent's row, with its masks as they are in the select. `through`: as `ToOne`'s,
    the foreign key that fixes a member's type."""

    source: str
    through: Any = None


# The metadata key under which a field declares the list it holds.
MANY = "coopnet.many"


@dataclass(frozen=True, eq=False)  # by identity: its columns' == builds SQL
class Many:
    """A list field: the rows of `source` whose `parent` column holds the parent's id,
    sorted by `order` (downwards when `descending`). `parent` is a column of the rows' own
    table (an offer's request), or of a link table whose `link` column holds the row's id
    (a cluster's pools: `pool_cluster.cluster_id`, `pool_cluster.pool_id`). A list made
    of a union gives a tuple of each, a pair per branch (a member's clusters: those they
    are served by, `cluster_service_user`, and those they work in, `cluster_pa`); a row
    in both is listed once. `key`: the column naming a parent and a row (`id`; a
    council's `gss_code`). `through`: the column reaching the rows, when it is a foreign
    key into a member profile."""

    source: str
    parent: Any
    order: tuple[Any, ...]
    link: Any = None
    descending: bool = False
    through: Any = None
    key: str = "id"


# The metadata key under which a field declares the page (connection) it holds.
PAGED = "coopnet.paged"


@dataclass(frozen=True, eq=False)  # by identity, as `Many`
class Filters:
    """A page's own arguments, beyond `first`/`after`/`last`/`before`: their GraphQL
    names, in the field's order; `apply(stmt, args, prefix)` narrows a select by them
    (the arguments by GraphQL name; every value a named parameter, its name prefixed);
    `values(args)` are those parameters' values (without the prefix)."""

    arguments: tuple[str, ...]
    apply: Callable[[Any, dict[str, Any], str], Any]
    values: Callable[[dict[str, Any]], dict[str, Any]]


@dataclass(frozen=True, eq=False)  # by identity: its columns' == builds SQL
class Paged:
    """A connection field: a page of the rows of `source` whose `parent` column holds the
    parent's id, in keyset order `sort` (the cursor's keys), narrowed by `filters`.
    `parent` and `link` as `Many`'s (a cluster's service users: `parent`
    `cluster_service_user.cluster_id`, `link` `cluster_service_user.service_user_id`).
    `through`: the column reaching the rows, when it is a foreign key into a member
    profile."""

    source: str
    parent: Any
    sort: tuple[Any, ...]
    link: Any = None
    filters: Filters | None = None
    through: Any = None


# The metadata key under which a root field declares the list it holds.
ROOT_PAGE = "coopnet.root_page"


# `Argument.default` of an argument the caller must give: it has no default in the schema
# (a non-null one with a default could be left out; `coverGaps(clusterId:)` cannot).
REQUIRED: Any = inspect.Parameter.empty


@dataclass(frozen=True)
class Argument:
    """One argument of a root list: its Python name (the GraphQL name is camel-cased),
    its annotation (the type, with its description: `strawberry.argument`) and its
    default (`REQUIRED`: none)."""

    name: str
    annotation: Any
    default: Any = None

    @property
    def graphql_name(self) -> str:
        """Its GraphQL name: the annotation's (`strawberry.argument(name=...)`: `from`
        for `from_`), else the Python name camel-cased."""
        if get_origin(self.annotation) is Annotated:
            for extra in self.annotation.__metadata__:
                given = getattr(extra, "name", None)
                if isinstance(extra, StrawberryArgumentAnnotation) and given:
                    return str(given)
        return to_camel_case(self.name)


# A list's orders by their `orderBy` names: each its sort keys and whether they run
# downwards (`care.queries.MEMBER_ORDERS`, ...); the first is the default.
Orders = Mapping[str, tuple[Sequence[Any], bool]]


def chosen_order(
    orders: Orders | None, sort: Sequence[Any], args: dict[str, Any]
) -> tuple[str | None, Sequence[Any], bool]:
    """The order `args` (by GraphQL name) ask for: the name its cursors carry (None for
    the default order, so the cursors of callers that never choose one carry none), its
    sort keys and whether they run downwards. Without `orders`: `sort`, ascending."""
    if orders is None:
        return None, sort, False
    default = next(iter(orders))
    chosen = args.get("orderBy")
    name = default if chosen is None else str(chosen)
    keys, descending = orders[name]
    return (None if name == default else name), keys, descending


@dataclass(frozen=True, eq=False)  # by identity, as `Paged`
class RootPage:
    """A root connection field: a page of the rows of `source` the caller may see, in
    keyset order `sort` (the default order's keys when `orders` are given: `orderBy`),
    narrowed by `filters` and, for the viewer's own rows (`myCoverOffers`), by
    `mine(stmt, viewer)` (nothing for a viewer who is no member). `arguments`: the
    field's, in order, the page's (`first`, `after`, `last`, `before`) among them."""

    source: str
    sort: tuple[Any, ...]
    arguments: tuple[Argument, ...]
    filters: Filters | None = None
    orders: Orders | None = None
    mine: Callable[[Any, Any], Any] | None = None

    def order(self, args: dict[str, Any]) -> tuple[str | None, Sequence[Any], bool]:
        return chosen_order(self.orders, self.sort, args)


# The metadata key under which a root field declares the rows it holds (not a page).
ROOT_ROWS = "coopnet.root_rows"


@dataclass(frozen=True, eq=False)  # by identity, as `Filters`
class Parameters:
    """A root list whose select takes values worked out from the request
    (`clusterFigures`: the clusters asked for, and the period, from the clock when not
    given): `values(args, viewer, limits)` works them out once per request, by the field's
    own checks, which raise the field's GraphQLError (the compiled path then falls back, so
    the error is the resolver's); `rows(viewer, prefix)` is the select, each value a named
    parameter (`prefix` + its name in `values`), for any request: the resolver binds the
    values with `Select.params`, the compiled path per request. `arguments`: the GraphQL
    names `values` reads."""

    arguments: tuple[str, ...]
    values: Callable[[dict[str, Any], Viewer, Limits], dict[str, Any]]
    rows: Callable[[Viewer, str], Any]


@dataclass(frozen=True, eq=False)  # by identity, as `RootPage`
class RootRows:
    """A root field holding every row of `source` the caller may see, sorted by `order`
    (`pools`, `localAuthorities`), or, when `one`, the first of them: a source of one row
    (`coop`), null when it has none. `arguments`: the field's, in order (none for most),
    which `filters` read to narrow the rows (`careTerms`), or `parameters` turn into the
    values of a select that takes them (`clusterFigures`, sorted by that select)."""

    source: str
    order: tuple[Any, ...]
    one: bool = False
    arguments: tuple[Argument, ...] = ()
    filters: Filters | None = None
    parameters: Parameters | None = None


def root_rows(cls: type) -> dict[str, RootRows]:
    """The fields of a Strawberry type declared with `schema.types.root_list` or
    `schema.types.root_record`, by GraphQL name."""
    return _declared(cls, ROOT_ROWS)


def root_pages(cls: type) -> dict[str, RootPage]:
    """The fields of a Strawberry type declared with `schema.types.root_page`, by GraphQL
    name."""
    return _declared(cls, ROOT_PAGE)


def pages(cls: type) -> dict[str, Paged]:
    """The fields of a Strawberry type declared with `schema.types.paged`, by GraphQL
    name."""
    return _declared(cls, PAGED)


def lists(cls: type) -> dict[str, Many]:
    """The fields of a Strawberry type declared with `schema.types.many`, by GraphQL
    name."""
    return _declared(cls, MANY)


def in_rows(cls: type) -> dict[str, InRow]:
    """The fields of a Strawberry type declared with `schema.types.in_row`, by GraphQL
    name."""
    return _declared(cls, IN_ROW)


def records(cls: type) -> dict[str, ToOne]:
    """The fields of a Strawberry type declared with `schema.types.record`, by GraphQL
    name."""
    return _declared(cls, TO_ONE)


def _declared(cls: type, key: str) -> dict[str, Any]:
    definition = get_object_definition(cls, strict=True)
    return {
        field.graphql_name or to_camel_case(field.python_name): field.metadata[key]
        for field in definition.fields
        if field.metadata and key in field.metadata
    }


def from_row(cls: type[T], row: Any, **given: Any) -> T:
    """An object of `cls` from a row with a column per data field; `given` are fields
    computed otherwise (e.g. an object made of several columns)."""
    values = dict(given)
    for field in data_fields(cls):
        if field.name not in values:
            values[field.name] = field.convert(getattr(row, field.name))
    return cls(**values)
