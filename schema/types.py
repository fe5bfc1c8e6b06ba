"""The object types of the graph. Plain attributes are filled from SQL rows; relations
resolve through per-request DataLoaders (one statement per relation and page request)."""

from __future__ import annotations

import asyncio
import datetime as dt
import inspect
from collections.abc import Awaitable, Callable, Iterable, Sequence
from enum import StrEnum
from typing import Annotated, Any, TypeVar, cast

import strawberry
from graphql import GraphQLError
from sqlalchemy import Row, Select
from strawberry import relay
from strawberry.types.base import get_object_definition
from strawberry.types.enum import StrawberryEnumDefinition

from care import candidates, enums, figures, models, queries, vocabulary
from care.paging import PageRequest, page
from care.services.visits import to_utc
from care.viewer import Viewer
from schema import loaders
from schema.connection import (
    AfterArg,
    BeforeArg,
    Connection,
    FirstArg,
    LastArg,
    build_connection,
    page_request,
)
from schema.context import DEFAULT_PAGE_SIZE, Info
from schema.filters import AVAILABILITY, VISITS
from schema.permissions import parse_global_id, parse_pk
from schema.rows import (
    IN_ROW,
    MANY,
    PAGED,
    ROOT_PAGE,
    ROOT_ROWS,
    TO_ONE,
    Argument,
    Filters,
    InRow,
    Many,
    Orders,
    Paged,
    Parameters,
    RootPage,
    RootRows,
    ToOne,
    from_row,
)

# Registered with Strawberry in place, so annotations use the domain enums themselves. The
# descriptions are attached to the registered values; GraphQL names and values are unchanged.
_ENUM_DOCS: dict[type[StrEnum], tuple[str, dict[str, str]]] = {
    enums.CoopKind: (
        "Who owns and controls a co-operative.",
        {
            "WORKER": "Owned by the people who work in it (PAs and support workers).",
            "MULTI_STAKEHOLDER": "Owned jointly by workers, people receiving care, carers and "
            "supporters.",
            "CONSUMER": "Owned by the people who receive care and their carers.",
        },
    ),
    enums.CqcStatus: (
        "Registration with the Care Quality Commission (CQC).",
        {
            "REGISTERED": "Registered with the CQC to provide regulated care.",
            "APPLIED": "Applied to the CQC; not yet registered.",
            "NOT_REGISTERED": "Not registered and no application made.",
        },
    ),
    enums.MembershipClass: (
        "The class of co-op membership a person holds.",
        {
            "SERVICE_USER": "A person receiving care.",
            "CARER": "An unpaid family carer of a person receiving care.",
            "WORKER": "A paid worker: a PA or a support worker.",
            "SUPPORTER": "A supporter who neither receives nor gives care.",
        },
    ),
    enums.Funding: (
        "How a person's care is paid for.",
        {
            "DIRECT_PAYMENT": "Council direct payment, managed by the person or their carer.",
            "PERSONAL_BUDGET": "Council personal budget managed on the person's behalf.",
            "LA_COMMISSIONED": "Commissioned and paid by the local authority.",
            "NHS_CHC": "NHS Continuing Healthcare.",
            "SELF_FUNDED": "Paid by the person themself.",
        },
    ),
    enums.ClusterKind: (
        "How a cluster is drawn.",
        {
            "GEOGRAPHIC": "Drawn by area: a centre and radius or postcode districts.",
            "NEED_BASED": "Drawn by need: people sharing need tags, wherever they live.",
        },
    ),
    enums.ClusterStatus: (
        "Where a cluster is in its life.",
        {
            "PLANNED": "Being set up; not yet running.",
            "ACTIVE": "Running: its team is booked for its people's visits.",
            "CLOSED": "Closed (see closedAt); kept for the record.",
        },
    ),
    enums.VisitStatus: (
        "Where a visit stands.",
        {
            "SCHEDULED": "Booked with a PA and not yet over.",
            "NEEDS_COVER": "Has no PA (booked without one, or the booked PA is away or "
            "dropped out); it always has exactly one open cover request looking for one.",
            "COMPLETED": "Took place.",
            "MISSED": "Did not take place although it was due.",
            "CANCELLED": "Called off; see cancelReason.",
        },
    ),
    enums.Role: (
        "The role a member's token carries; it decides what the caller may see and do.",
        {
            "ADMIN": "Co-op staff running the instance: sees and may change everything.",
            "COORDINATOR": "A support worker, scoped to the clusters they support.",
            "PA": "A personal assistant: their own visits, availability and absences.",
            "SERVICE_USER": "A person receiving care: themselves, their carers and visits.",
            "CARER": "An unpaid carer: sees what the people they care for see.",
            "LA_ANALYST": "A council analyst bound to one local authority: market figures only.",
        },
    ),
    enums.AbsenceKind: (
        "Why a PA is away, in broad terms (any detail goes in the absence's note).",
        {
            "HOLIDAY": "Annual leave.",
            "SICKNESS": "Off sick.",
            "TRAINING": "On training.",
            "OTHER": "Any other reason.",
        },
    ),
    enums.ReferralStatus: (
        "Where a referral (a person waiting for care) stands.",
        {
            "WAITING": "Waiting for care: the demand that counts towards expansion.",
            "OFFERED": "A place or a PA has been offered; care has not started.",
            "PLACED": "Care has started (with this co-op or a partner).",
            "WITHDRAWN": "No longer waiting: care found elsewhere, moved away, or declined.",
        },
    ),
    enums.CoverReason: (
        "Why a visit needs cover.",
        {
            "ABSENCE": "The booked PA is away (an absence was recorded).",
            "MISSED": "The person reported the visit missed while it could still be saved.",
            "MANUAL": "A coordinator asked, e.g. the PA left or plans changed.",
            "PARTNER_CANCELLED": "A partner co-op's PA was to cover it, and that fell through.",
            "UNASSIGNED": "The visit needs cover and nobody asked for it another way: it "
            "was booked without a PA (opened automatically).",
        },
    ),
    enums.CoverRequestStatus: (
        "Where a cover request stands.",
        {
            "OPEN": "Looking for a PA.",
            "FILLED": "A PA accepted an offer and now has the visit.",
            "RETURNED": "The original PA took the visit back (the absence was cancelled or "
            "shortened).",
            "CANCELLED": "The visit was cancelled or a coordinator closed the request.",
        },
    ),
    enums.CoverOfferStatus: (
        "Where an offer of cover to one PA stands.",
        {
            "OPEN": "Waiting for the PA's answer, until expiresAt.",
            "ACCEPTED": "The PA accepted and has the visit.",
            "DECLINED": "The PA declined.",
            "WITHDRAWN": "The coordinator took the offer back.",
            "CLOSED": "Another PA's acceptance filled the request, or it was cancelled.",
            "EXPIRED": "The PA did not answer before expiresAt.",
        },
    ),
    enums.PartnerScope: (
        "What a partnership lets each partner instance ask of the other (scopes are mutual).",
        {
            "AVAILABILITY": "Pseudonymous free windows of PAs in pools shared with partners.",
            "COVER": "Cover for visits across the two co-ops.",
            "MARKET_DATA": "Market-shaping figures.",
        },
    ),
    enums.PartnershipStatus: (
        "Where a partnership with another co-op's instance stands.",
        {
            "PROPOSED": "Proposed and not yet answered (see direction).",
            "ACTIVE": "Agreed: the granted scopes apply.",
            "REJECTED": "The proposal was rejected.",
            "SUSPENDED": "Paused by one side (see suspendedBy); only that side may resume.",
            "ENDED": "Over: everything received from the partner was deleted.",
        },
    ),
    enums.PartnershipDirection: (
        "Which side proposed a partnership.",
        {
            "OUTGOING": "This instance proposed.",
            "INCOMING": "The partner instance proposed.",
        },
    ),
    enums.PartnershipSide: (
        "One side of a partnership.",
        {
            "US": "This instance.",
            "PARTNER": "The partner instance.",
        },
    ),
    enums.ExchangeSide: (
        "Which side of a cross-boundary cover exchange this instance is on.",
        {
            "REQUESTING": "Our person's visit, covered by a partner co-op's PA.",
            "PROVIDING": "A partner co-op's person, covered by one of our PAs.",
        },
    ),
    enums.ExchangeStatus: (
        "Where a cross-boundary cover exchange stands (docs/federation.md, section 12).",
        {
            "HELD": "The providing co-op holds its PA's time and has offered it to the PA.",
            "ACCEPTED": "The PA said yes; the requesting co-op has yet to confirm.",
            "CONFIRMED": "Booked: first names, address and care summary were exchanged.",
            "DECLINED": "The PA said no.",
            "EXPIRED": "Not confirmed before the hold ran out; the time was released.",
            "CANCELLED": "Called off by either side (see cancelledBy and reason).",
        },
    ),
    enums.ExchangeActor: (
        "Who changed a cover exchange, as this instance records it.",
        {
            "US": "One of this co-op's members (see byRole), or this instance for them.",
            "PARTNER": "The partner co-op (byRole: the role its message named).",
            "SYSTEM": "Nobody: a hold that ran out, or a confirmation made automatically.",
        },
    ),
    enums.CareTermKind: (
        "What a care term may be used for.",
        {
            "NEED": "A need a person may have (needs, cluster need tags, referrals), and the PA "
            "skill that meets it: a need is met only by a skill with the same code.",
            "SKILL": "A PA skill or training only (e.g. first-aid); never a need.",
        },
    ),
    enums.CareTermUse: (
        "Which pickers a care term belongs in.",
        {
            "SKILL": "PA skills: every term.",
            "NEED": "Needs and need tags: NEED terms only.",
        },
    ),
}


def document_enum(enum: type[StrEnum], description: str, values: dict[str, str]) -> None:
    """Expose a domain enum in the schema with a description for it and every value; the
    schema refuses to build if a value is missing or extra."""
    strawberry.enum(enum, description=description)
    definition: StrawberryEnumDefinition = enum.__strawberry_definition__  # type: ignore[attr-defined]
    if {v.name for v in definition.values} != values.keys():
        raise RuntimeError(f"Describe every value of {enum.__name__}, and only those.")
    for value in definition.values:
        value.description = values[value.name]


for _enum, (_description, _values) in _ENUM_DOCS.items():
    document_enum(_enum, _description, _values)

CoopKind = enums.CoopKind
CqcStatus = enums.CqcStatus
MembershipClass = enums.MembershipClass
Funding = enums.Funding
ClusterKind = enums.ClusterKind
ClusterStatus = enums.ClusterStatus
VisitStatus = enums.VisitStatus
Role = enums.Role
AbsenceKind = enums.AbsenceKind
ReferralStatus = enums.ReferralStatus
CoverReason = enums.CoverReason
CoverRequestStatus = enums.CoverRequestStatus
CoverOfferStatus = enums.CoverOfferStatus
PartnerScope = enums.PartnerScope
PartnershipStatus = enums.PartnershipStatus
PartnershipDirection = enums.PartnershipDirection
PartnershipSide = enums.PartnershipSide
ExchangeSide = enums.ExchangeSide
ExchangeStatus = enums.ExchangeStatus
ExchangeActor = enums.ExchangeActor
CareTermKind = enums.CareTermKind
CareTermUse = enums.CareTermUse


# Arguments of the time-ranged fields below.
RangeFromArg = Annotated[
    dt.datetime | None,
    strawberry.argument(
        description="Only results overlapping [startsFrom, startsBefore), i.e. ending after "
        "this time (ISO 8601 with a UTC offset); no lower bound when omitted."
    ),
]
RangeBeforeArg = Annotated[
    dt.datetime | None,
    strawberry.argument(
        description="Only results overlapping [startsFrom, startsBefore), i.e. starting "
        "before this time (ISO 8601 with a UTC offset); no upper bound when omitted."
    ),
]
VisitStatusArg = Annotated[
    list[VisitStatus] | None,
    strawberry.argument(
        description="Only visits in one of these statuses; every status when omitted or empty."
    ),
]
BusyFromArg = Annotated[
    dt.datetime,
    strawberry.argument(
        description="Start of the range, inclusive (ISO 8601; a time without a UTC offset is "
        "London wall-clock time)."
    ),
]
BusyBeforeArg = Annotated[
    dt.datetime,
    strawberry.argument(
        description="End of the range, exclusive: after startsFrom and at most "
        f"{queries.MAX_BUSY_RANGE.days} days later (ISO 8601; without a UTC offset, London "
        "wall-clock time)."
    ),
]


NodeT = TypeVar("NodeT")
Loader = Callable[[Info, int], Awaitable[NodeT | None]]


def by_id_loader(
    name: str,
    statement: Callable[[Viewer, Sequence[int]], Select],
    to_node: Callable[[Row[Any]], NodeT],
) -> Loader[NodeT]:
    """`load(info, id)` for one kind of node: batched per request, under the caller's
    privacy rules; None for ids the caller may not see."""

    async def load(info: Info, pk: int) -> NodeT | None:
        viewer = info.context.viewer
        row = await loaders.by_id(info.context, name, lambda ids: statement(viewer, ids)).load(pk)
        return to_node(row) if row is not None else None

    return load


def record(
    source: str, key: str, *, description: str, target: str = "id", through: Any = None
) -> Any:
    """A field holding the record whose `target` is the row's `key` (null when the key is,
    when the caller may not see the record, or when it is not of the field's type): one
    declaration for both read paths (`schema.rows.ToOne`). The field's annotation is its
    GraphQL type; the resolver loads the record with the source's loader (`LOADERS`)."""

    async def resolve(root: Any, info: Info):  # type: ignore[no-untyped-def]
        value = getattr(root, key)
        if value is None:
            return None
        found = await LOADERS[source](info, value)
        return found if isinstance(found, _class_of(info.return_type)) else None

    spec = ToOne(source, key, target, through)
    return strawberry.field(resolver=resolve, description=description, metadata={TO_ONE: spec})


def in_row(source: str, *, description: str, through: Any = None) -> Any:
    """A field holding the record of `source` that its parent's own row holds (the
    parent's select is the source's with more columns: `schema.rows.InRow`), of the
    field's type: one declaration for both read paths. The resolver path builds it from
    the parent's row with the source's row builder (`LISTED`, `from_own_row`); the compiler
    writes the source's object over the parent's row."""
    return strawberry.field(description=description, metadata={IN_ROW: InRow(source, through)})


def from_own_row(cls: type[NodeT], row: Row[Any]) -> NodeT:
    """An object of `cls` from a row, its `in_row` records built from the same row."""
    definition = get_object_definition(cls, strict=True)
    given = {
        field.python_name: LISTED[field.metadata[IN_ROW].source][1](row)
        for field in definition.fields
        if field.metadata and IN_ROW in field.metadata
    }
    return from_row(cls, row, **given)


def many(
    source: str,
    parent: Any,
    *,
    order: tuple[Any, ...],
    description: str,
    link: Any = None,
    descending: bool = False,
    through: Any = None,
    key: str = "id",
) -> Any:
    """A field holding the short list of `source` rows a parent reaches through a key
    (`schema.rows.Many`), of the field's item type: one declaration for both read paths.
    The resolver reads every parent's list in one statement (`queries.listed_by_parent`)
    from the source's select (`LISTED`), under the caller's privacy rules."""
    spec = Many(source, parent, order, link, descending, through, key)

    async def resolve(root: Any, info: Info):  # type: ignore[no-untyped-def]
        build, to_object = LISTED[source]
        viewer = info.context.viewer
        rows = await loaders.grouped(
            info.context,
            ("many", id(spec)),
            lambda ids: queries.listed_by_parent(
                build(viewer), parent, ids, order, link=link, descending=descending, key=key
            ),
        ).load(getattr(root, key))
        kind = _class_of(info.return_type)
        return [item for item in map(to_object, rows) if isinstance(item, kind)]

    return strawberry.field(resolver=resolve, description=description, metadata={MANY: spec})


def paged(
    source: str,
    parent: Any,
    *,
    sort: tuple[Any, ...],
    description: str,
    link: Any = None,
    filters: Filters | None = None,
    through: Any = None,
) -> Any:
    """A field holding a page (a connection) of the `source` rows a parent reaches through
    a key (`schema.rows.Paged`), of the field's node type: one declaration for both read
    paths. Its arguments are the page's (`first`, `after`, `last`, `before`) and the
    filters'; the resolver reads every parent's page in one statement
    (`queries.paged_by_parent`) from the source's select (`LISTED`), under the caller's
    privacy rules, and the filters narrow it as they narrow the compiler's."""
    spec = Paged(source, parent, sort, link, filters, through)
    arity = len(sort)

    async def load(
        root: Any, info: Info, paging: tuple[Any, Any, Any, Any], args: dict[str, Any]
    ) -> Connection[Any]:
        request = page_request(info, *paging, arity=arity)
        build, to_node = LISTED[source]
        viewer = info.context.viewer
        narrow: Callable[[Select], Select] | None = None
        values: dict[str, Any] = {}
        if filters is not None:
            # The filters' SQL depends on which values are given: the statement's shape.
            values = {k: v for k, v in filters.values(args).items() if v is not None}

            def narrow(stmt: Select) -> Select:
                return cast(Select, filters.apply(stmt, args, ""))

        given = tuple((k, tuple(v) if isinstance(v, list) else v) for k, v in args.items())
        rows = await loaders.paged(
            info.context,
            ("paged", id(spec), given),
            request,
            lambda ids: queries.paged_by_parent(
                viewer,
                ("paged", id(spec), tuple(values)),
                build,
                parent,
                ids,
                request,
                sort,
                link=link,
                narrow=narrow,
                values=values,
            ),
        ).load(root.id)
        return build_connection(rows, request, to_node, arity=arity)

    arguments = filters.arguments if filters is not None else ()
    resolve: Any
    if arguments == ():

        async def resolve_page(  # type: ignore[no-untyped-def]
            root: Any,
            info: Info,
            first: FirstArg = DEFAULT_PAGE_SIZE,
            after: AfterArg = None,
            last: LastArg = None,
            before: BeforeArg = None,
        ):
            return await load(root, info, (first, after, last, before), {})

        resolve = resolve_page
    elif arguments == ("startsFrom", "startsBefore"):

        async def resolve_ranged(  # type: ignore[no-untyped-def]
            root: Any,
            info: Info,
            first: FirstArg = DEFAULT_PAGE_SIZE,
            after: AfterArg = None,
            last: LastArg = None,
            before: BeforeArg = None,
            starts_from: RangeFromArg = None,
            starts_before: RangeBeforeArg = None,
        ):
            args = {"startsFrom": starts_from, "startsBefore": starts_before}
            return await load(root, info, (first, after, last, before), args)

        resolve = resolve_ranged
    elif arguments == ("startsFrom", "startsBefore", "status"):

        async def resolve_visits(  # type: ignore[no-untyped-def]
            root: Any,
            info: Info,
            first: FirstArg = DEFAULT_PAGE_SIZE,
            after: AfterArg = None,
            last: LastArg = None,
            before: BeforeArg = None,
            starts_from: RangeFromArg = None,
            starts_before: RangeBeforeArg = None,
            status: VisitStatusArg = None,
        ):
            args = {"startsFrom": starts_from, "startsBefore": starts_before, "status": status}
            return await load(root, info, (first, after, last, before), args)

        resolve = resolve_visits
    else:
        raise ValueError(f"No resolver takes the arguments {arguments}: add one to `paged`.")
    return strawberry.field(resolver=resolve, description=description, metadata={PAGED: spec})


def root_page(
    source: str,
    node: type,
    *,
    arguments: tuple[Argument, ...],
    description: str,
    extensions: list[Any],
    sort: tuple[Any, ...] | None = None,
    orders: Orders | None = None,
    filters: Filters | None = None,
    mine: Callable[[Select, Viewer], Select] | None = None,
) -> Any:
    """A root field holding a page (a connection) of the `source` rows the caller may see,
    of type `node` (`schema.rows.RootPage`): one declaration for both read paths. Its
    GraphQL arguments are `arguments`, in order (the page's among them); the resolver reads
    the source's select (`LISTED`), narrowed by `mine` for the viewer's own rows (an empty
    page, and no statement, for a viewer who is no member) and by the filters, as the
    compiler narrows it, then cuts the page in the order `orderBy` names (`orders`, the
    first the default: its cursors carry no order) or in `sort`. `extensions`: the
    field's access rule (`schema.permissions.guard`)."""
    if sort is None:
        if orders is None:
            raise ValueError("A root list needs its sort keys or its orders.")
        sort = tuple(next(iter(orders.values()))[0])
    spec = RootPage(source, sort, arguments, filters, orders, mine)
    names = [a.name for a in arguments]
    if not {"first", "after", "last", "before"} <= set(names):
        raise ValueError(f"A root list takes the page's arguments: {names}")
    _check_filters(filters, arguments)

    async def resolve(root: Any, info: Info, **given: Any) -> Connection[Any]:
        args = {a.graphql_name: given[a.name] for a in arguments}
        order, keys, _ = spec.order(args)
        arity = len(keys)
        paging = (given["first"], given["after"], given["last"], given["before"])
        request = page_request(info, *paging, arity=arity, order=order)
        to_node = LISTED[source][1]
        viewer = info.context.viewer
        if mine is not None and viewer.member_id is None:  # no token names such a PA
            return build_connection([], request, to_node, arity=arity, order=order)
        rows = await info.context.rows(root_statement(spec, viewer, request, args))
        return build_connection(rows, request, to_node, arity=arity, order=order)

    resolve.__signature__ = _signature(arguments, Connection[node])  # type: ignore[attr-defined,valid-type]
    return strawberry.field(
        resolver=resolve,
        description=description,
        extensions=extensions,
        metadata={ROOT_PAGE: spec},
    )


def _check_filters(filters: Filters | None, arguments: tuple[Argument, ...]) -> None:
    if filters is not None:
        missing = set(filters.arguments) - {a.graphql_name for a in arguments}
        if missing:
            raise ValueError(f"Its filters read arguments it does not take: {missing}")


def _signature(arguments: tuple[Argument, ...], returns: Any) -> inspect.Signature:
    """A root field resolver's signature: Strawberry reads the arguments from it, the
    declared ones, in order. The return type is the resolver's (an annotation on the class
    would move the field ahead of the type's other fields in the schema)."""
    return inspect.Signature(
        [
            inspect.Parameter("root", inspect.Parameter.POSITIONAL_OR_KEYWORD),
            inspect.Parameter("info", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=Info),
            *(
                inspect.Parameter(
                    a.name,
                    inspect.Parameter.KEYWORD_ONLY,
                    annotation=a.annotation,
                    default=a.default,
                )
                for a in arguments
            ),
        ],
        return_annotation=returns,
    )


def root_statement(
    spec: RootPage, viewer: Viewer, request: PageRequest, args: dict[str, Any]
) -> Select:
    """The statement of a root list's page (`root_page`'s resolver): the source's select
    (`LISTED`, the compiler's `registry.SOURCES` too), narrowed to the viewer's own rows
    (`mine`) and by the filters, for `args` by GraphQL name, cut in the order they ask
    for."""
    stmt = LISTED[spec.source][0](viewer)
    if spec.mine is not None:
        stmt = spec.mine(stmt, viewer)
    if spec.filters is not None:
        stmt = cast(Select, spec.filters.apply(stmt, args, ""))
    _, keys, descending = spec.order(args)
    return page(stmt, keys, request, descending=descending)


def root_list(
    source: str,
    item: type,
    *,
    order: tuple[Any, ...],
    description: str,
    extensions: list[Any],
    arguments: tuple[Argument, ...] = (),
    filters: Filters | None = None,
    parameters: Parameters | None = None,
) -> Any:
    """A root field holding every `source` row the caller may see, as a list of `item` in
    `order` (`schema.rows.RootRows`): one declaration for both read paths. The resolver
    reads the source's select (`LISTED`, the compiler's `registry.SOURCES` too), narrowed
    by `filters` (which read `arguments`, the field's GraphQL arguments, in order: those
    of `careTerms`), as the compiler narrows it, and sorted; or, with `parameters`, the
    select they declare with the values they work out from the arguments (`clusterFigures`:
    the select sorts its rows, `order` is empty). `extensions`: the field's access rule
    (`schema.permissions.guard`)."""
    spec = RootRows(source, order, arguments=arguments, filters=filters, parameters=parameters)
    return _root_rows(spec, list[item], description, extensions)  # type: ignore[valid-type]


def root_record(
    source: str, node: type, *, order: tuple[Any, ...], description: str, extensions: list[Any]
) -> Any:
    """A root field holding the first `source` row in `order` (a source of one row: the
    co-op), of type `node`, null when there is none (`schema.rows.RootRows`, `one`)."""
    return _root_rows(RootRows(source, order, one=True), node | None, description, extensions)


def _root_rows(spec: RootRows, returns: Any, description: str, extensions: list[Any]) -> Any:
    _check_filters(spec.filters, spec.arguments)
    if spec.parameters is not None:
        missing = set(spec.parameters.arguments) - {a.graphql_name for a in spec.arguments}
        if missing:
            raise ValueError(f"Its parameters read arguments it does not take: {missing}")

    async def resolve(root: Any, info: Info, **given: Any) -> Any:
        build, to_object = LISTED[spec.source]
        viewer = info.context.viewer
        args = {a.graphql_name: given[a.name] for a in spec.arguments}
        if spec.parameters is not None:
            # Worked out once, by the field's checks (their error is the answer).
            values = spec.parameters.values(args, viewer, info.context.limits)
            stmt = cast(Select, spec.parameters.rows(viewer, "")).params(values)
        else:
            stmt = build(viewer)
        if spec.filters is not None:
            stmt = cast(Select, spec.filters.apply(stmt, args, ""))
        stmt = stmt.order_by(*spec.order)
        if spec.one:
            rows = await info.context.rows(stmt.limit(1))
            return to_object(rows[0]) if rows else None
        return [to_object(row) for row in await info.context.rows(stmt)]

    # As `root_page`: the return type is the resolver's, so the field keeps its place.
    resolve.__signature__ = _signature(spec.arguments, returns)  # type: ignore[attr-defined]
    return strawberry.field(
        resolver=resolve,
        description=description,
        extensions=extensions,
        metadata={ROOT_ROWS: spec},
    )


def _class_of(field_type: Any) -> type:
    while (inner := getattr(field_type, "of_type", None)) is not None:
        field_type = inner  # StrawberryOptional's
    return cast(type, field_type)


async def resolve_ids(info: Info, node_ids: Iterable[str], load: Loader[Any]) -> list[Any]:
    """Relay's resolve_nodes: all ids loaded together (one statement for any number)."""

    async def one(node_id: str) -> Any:
        pk = parse_pk(node_id)
        return await load(info, pk) if pk is not None else None

    return list(await asyncio.gather(*(one(i) for i in node_ids)))


# --- local authorities and the co-op ----------------------------------------------------


@strawberry.type(description="An English council with adult social care duties.")
class LocalAuthority:
    gss_code: str = strawberry.field(description="ONS GSS code, e.g. E09000003.")
    name: str = strawberry.field(description="The council's name, e.g. London Borough of Barnet.")

    neighbours: list[LocalAuthority] = many(
        "local_authority",
        (models.LocalAuthorityNeighbour.la_a, models.LocalAuthorityNeighbour.la_b),
        link=(models.LocalAuthorityNeighbour.la_b, models.LocalAuthorityNeighbour.la_a),
        order=(models.LocalAuthority.gss_code,),
        key="gss_code",
        description="Neighbouring local authorities (symmetric).",
    )


async def load_local_authority(info: Info, code: str) -> LocalAuthority | None:
    row = await loaders.by_id(
        info.context,
        "local_authority",
        lambda codes: queries.local_authorities(codes).add_columns(
            queries.LocalAuthority.gss_code.label("id")
        ),
    ).load(code)
    return LocalAuthority(gss_code=row.gss_code, name=row.name) if row else None


@strawberry.type(description="The co-operative this instance serves (public profile).")
class Coop:
    name: str = strawberry.field(description="The co-operative's registered name.")
    kind: CoopKind = strawberry.field(description="Who owns and controls the co-op.")
    society_number: str | None = strawberry.field(
        description=(
            "Registration number with the FCA Mutuals Public Register; null if not yet registered."
        )
    )
    cqc_provider_id: str | None = strawberry.field(
        description="Care Quality Commission provider id; null if the co-op has none."
    )
    cqc_status: CqcStatus = strawberry.field(
        description="Where the co-op stands with Care Quality Commission registration."
    )
    description: str | None = strawberry.field(
        description="The co-op's public description; null if none is set."
    )
    home_la_code: strawberry.Private[str]
    # None where the select masked them (`care.policy.cover_rules_visible`).
    rules: strawberry.Private[CoverRules | None]

    home_local_authority: LocalAuthority | None = record(
        "local_authority",
        "home_la_code",
        target="gss_code",
        description="The council area the co-op is based in; null if its code is unknown.",
    )

    @strawberry.field(description="The rules cover follows; null outside the co-op.")
    def cover_rules(self) -> CoverRules | None:
        return self.rules


@strawberry.type(description="The co-op's rules for cover (see docs/cover.md).")
class CoverRules:
    dbs_valid_months: int = strawberry.field(description="A DBS check counts this long.")
    max_weekly_hours: float = strawberry.field(
        description="Working Time: hours in the 7 days around a visit (unless opted out)."
    )
    min_daily_rest_hours: float = strawberry.field(description="Rest between working days.")
    cover_offer_ttl_minutes: int = strawberry.field(description="How long offers stay open.")
    weights: CoverWeights = strawberry.field(
        description="Weights of the parts of a cover candidate's score."
    )


@strawberry.type(description="Weights of the candidate score's parts.")
class CoverWeights:
    regular_pa: float = strawberry.field(
        description="Weight of being one of the person's named regular PAs (default 3)."
    )
    continuity: float = strawberry.field(
        description="Weight of recent visits by the PA to the person, last 8 weeks (default 3)."
    )
    same_cluster: float = strawberry.field(
        description="Weight of being on the team of one of the person's clusters (default 2)."
    )
    same_pool: float = strawberry.field(
        description="Weight of being in a pool serving one of the person's clusters (default 1)."
    )
    travel: float = strawberry.field(
        description="Weight of closeness: 1 - distance / maxTravelKm (default 1)."
    )
    contract_hours: float = strawberry.field(
        description="Weight of contracted hours still free in the visit's London week (default 1)."
    )
    fairness: float = strawberry.field(
        description="Weight of having filled few cover requests in the last 28 days (default 1)."
    )


def coop_from_row(c: Any) -> Coop:
    """A co-op from its select (`care.queries.coop_select`, the compiled path's too): the
    rules and weights in force are its columns, null where the caller may not read them."""
    rules = None
    if getattr(c, queries.COVER_RULES_SHOWN) is not None:
        rules = from_row(CoverRules, c, weights=from_row(CoverWeights, c))
    return Coop(
        name=c.name,
        kind=enums.CoopKind(c.kind),
        society_number=c.society_number,
        cqc_provider_id=c.cqc_provider_id,
        cqc_status=enums.CqcStatus(c.cqc_status),
        description=c.description,
        home_la_code=c.home_la_code,
        rules=rules,
    )


# --- the care vocabulary -----------------------------------------------------------------


@strawberry.type(
    description="A term of the co-op's care vocabulary: skills, needs, cluster need tags "
    "and referrals' needs are written in its codes."
)
class CareTerm:
    code: str = strawberry.field(
        description="The code stored and matched, e.g. personal-care: lower-case words "
        "joined by hyphens; never changes."
    )
    label: str = strawberry.field(description="The name to show, e.g. Personal care.")
    description: str = strawberry.field(description="What the term covers; may be empty.")
    kind: CareTermKind = strawberry.field(description="What the term may be used for.")
    active: bool = strawberry.field(
        description="Whether it may be newly given; records keep an inactive term they hold."
    )
    needs_review: bool = strawberry.field(
        description="Added by the migration from free text it could not map (inactive): "
        "an admin should describe and activate it, or replace it. Editing clears it."
    )
    updated_at: dt.datetime = strawberry.field(description="When it was last changed.")


def term_from_row(row: Any) -> CareTerm:
    return from_row(CareTerm, row)


# --- cover gaps -------------------------------------------------------------------------


@strawberry.type(
    description="A need of people with open cover requests in a cluster that no active PA "
    "on the cluster's team has a skill in date for: a gap for training or recruitment.",
)
class CoverGap:
    need: str = strawberry.field(description="The need tag (the skill of the same name).")
    requests: int = strawberry.field(
        description="Open cover requests (visits not over) whose person has the need."
    )
    lapsed_holders: int = strawberry.field(
        description="PAs on the team who hold the skill but whose skill lapsed before such "
        "a visit (the most for any one request): renewing it would close the gap."
    )
    first_starts_at: dt.datetime = strawberry.field(
        description="When the soonest of those visits starts."
    )


def cover_gap_from_row(row: Any) -> CoverGap:
    """A row of `care.candidates.cover_gaps_select`: a column per field, as the compiled
    path reads it (`schema.compiled.registry`, `data_columns`)."""
    return from_row(CoverGap, row)


# --- members -------------------------------------------------------------------------


@strawberry.interface(
    description=(
        "A person in the co-op. Contact details, postcode and location are null unless "
        "the caller may read this person's personal data."
    )
)
class Member(relay.Node):
    id: relay.NodeID[int]
    name: str = strawberry.field(description="The person's name as the co-op knows them.")
    membership_class: MembershipClass = strawberry.field(
        description="The class of co-op membership this person holds."
    )
    joined_on: dt.date = strawberry.field(description="The date the person joined the co-op.")
    active: bool = strawberry.field(
        description=(
            "False once the member is deactivated (their tokens no longer work; a "
            "deactivated PA is not booked)."
        )
    )
    email: str | None = strawberry.field(
        description=(
            "Email address. Personal data: null unless the caller may read this "
            "person's personal data."
        )
    )
    phone: str | None = strawberry.field(
        description=(
            "Phone number. Personal data: null unless the caller may read this "
            "person's personal data."
        )
    )
    postcode: str | None = strawberry.field(
        description=(
            "Home postcode. Personal data: null unless the caller may read this "
            "person's personal data."
        )
    )
    latitude: float | None = strawberry.field(
        description=(
            "Home latitude (WGS84, degrees). Personal data: null unless the caller "
            "may read this person's personal data. Also null if unknown."
        )
    )
    longitude: float | None = strawberry.field(
        description=(
            "Home longitude (WGS84, degrees). Personal data: null unless the caller"
            " may read this person's personal data. Also null if unknown."
        )
    )

    @classmethod
    async def resolve_nodes(  # type: ignore[override]
        cls, *, info: Info, node_ids: Iterable[str], required: bool = False
    ) -> list[Any]:
        found = await resolve_ids(info, node_ids, load_member)
        return [member if isinstance(member, cls) else None for member in found]

    clusters: list[Cluster] = many(
        "cluster",
        (models.ClusterServiceUser.service_user_id, models.ClusterPa.pa_id),
        link=(models.ClusterServiceUser.cluster_id, models.ClusterPa.cluster_id),
        order=(models.Cluster.id,),
        description="Clusters this person is served by or works in.",
    )


@strawberry.type(description="A skill or training a PA holds.")
class Skill:
    name: str = strawberry.field(description="The skill or need tag it meets, e.g. personal-care.")
    expires_on: dt.date | None = strawberry.field(
        description="Last day the skill counts (London date); null if it does not expire."
    )


@strawberry.type(description="A PA's hourly pay from a date.")
class PayRate:
    effective_from: dt.date = strawberry.field(
        description="The London date this rate applied from (until the next one)."
    )
    hourly_pay_pence: int = strawberry.field(description="Pay per hour, in pence.")


@strawberry.type(description="A person receiving care.")
class ServiceUser(Member):
    funding: Funding | None = strawberry.field(
        description=(
            "How the person's care is paid for. Personal data: null unless the "
            "caller may read it, or if not recorded."
        )
    )
    needs: list[str] = strawberry.field(
        description=(
            "Need tags, e.g. personal-care; a cover PA must hold a matching, "
            "unexpired skill for each."
        )
    )
    planned_weekly_hours: float | None = strawberry.field(
        description=(
            "Hours of care planned per week. Personal data: null unless the caller may read it."
        )
    )

    carers: list[Carer] = many(
        "member",
        models.CarerLink.service_user_id,
        link=models.CarerLink.carer_id,
        order=(models.Member.id,),
        description="Unpaid carers linked to this person.",
    )
    regular_personal_assistants: list[PersonalAssistant] = many(
        "member",
        models.RegularPa.service_user_id,
        link=models.RegularPa.pa_id,
        through=models.RegularPa.pa_id,
        order=(models.Member.id,),
        description="PAs this person knows and prefers.",
    )

    visits: Connection[Visit] = paged(
        "visit",
        models.Visit.service_user_id,
        sort=queries.VISIT_SORT,
        filters=VISITS,
        description="This person's visits, earliest first.",
    )


@strawberry.type(description="A personal assistant: a paid care worker.")
class PersonalAssistant(Member):
    dbs_checked_on: dt.date | None = strawberry.field(
        description=(
            "Date of the PA's last DBS check. Personal data: null unless the caller"
            " may read it, or if never checked."
        )
    )
    contracted_weekly_hours: float = strawberry.field(
        description="Hours per week the PA is contracted for (0 if none)."
    )
    hourly_pay_pence: int | None = strawberry.field(
        description=(
            "Hourly pay in pence, now. Personal data: admins and the PA themself only (null for"
            " anyone else)."
        )
    )
    max_travel_km: float = strawberry.field(
        description=(
            "Furthest the PA will travel to a visit, in km (great-circle distance from home)."
        )
    )
    working_time_opt_out: bool = strawberry.field(
        description=(
            "True if the PA opted out of the Working Time weekly hours limit "
            "(coverRules.maxWeeklyHours)."
        )
    )

    pay_rates: list[PayRate] = many(
        "pay_rate",
        models.PaPayRate.pa_id,
        order=(models.PaPayRate.effective_from,),
        descending=True,
        description=(
            "The PA's hourly pay over time, newest first: each rate with the London date it "
            "applied from. Personal data: admins and the PA themself only (empty for anyone "
            "else)."
        ),
    )

    skills: list[Skill] = many(
        "skill",
        models.PaSkill.pa_id,
        order=(models.PaSkill.skill,),
        description="The PA's skills and training, with expiry dates.",
    )

    pools: list[Pool] = many(
        "pool",
        models.PoolPa.pa_id,
        link=models.PoolPa.pool_id,
        order=(models.Pool.id,),
        description="The pools this PA belongs to that the caller may see.",
    )

    availability: Connection[AvailabilityWindow] = paged(
        "availability",
        models.AvailabilityWindow.pa_id,
        sort=queries.AVAILABILITY_SORT,
        filters=AVAILABILITY,
        description="Free time; visible to the PA, coordinators and admins.",
    )
    visits: Connection[Visit] = paged(
        "visit",
        models.Visit.pa_id,
        sort=queries.VISIT_SORT,
        filters=VISITS,
        description="Visits booked with this PA, earliest first.",
    )

    @strawberry.field(
        description=(
            "When this PA is busy in [startsFrom, startsBefore): their scheduled and "
            "completed visits and their absences, as bare periods (no person, visit or "
            "kind), clipped to the range, overlapping and touching periods merged, earliest "
            "first. For rota planning across clusters: admins, coordinators and the PA "
            "themself; null for anyone else. Times without a UTC offset are London time; "
            f"the range must be non-empty and at most {queries.MAX_BUSY_RANGE.days} days."
        )
    )
    async def busy_periods(
        self, info: Info, starts_from: BusyFromArg, starts_before: BusyBeforeArg
    ) -> list[BusyPeriod] | None:
        start, end = busy_range(starts_from, starts_before)
        viewer = info.context.viewer
        rows = await loaders.grouped(
            info.context,
            ("busy_periods", start, end),
            lambda ids: queries.busy_periods_of_pas(viewer, ids, start, end),
        ).load(self.id)
        if not rows:  # no row at all: the caller may not read this PA's busy time
            return None
        # A PA's row with null bounds says they may (`queries.busy_time_select`).
        return [from_row(BusyPeriod, r) for r in rows if r.starts_at is not None]


@strawberry.type(description="A period when a PA is busy (on a visit or away), nothing more.")
class BusyPeriod:
    starts_at: dt.datetime = strawberry.field(
        description="Start of the busy period (UTC, ISO 8601 with offset)."
    )
    ends_at: dt.datetime = strawberry.field(
        description="End of the busy period, exclusive (UTC, ISO 8601 with offset)."
    )


def busy_range(
    starts_from: dt.datetime, starts_before: dt.datetime
) -> tuple[dt.datetime, dt.datetime]:
    """The asked range in UTC, or BAD_USER_INPUT when it is empty, too long or off the
    calendar (a time near year 1 or 9999 whose offset moves it past the end). The
    compiled read path binds the range with it too, and sends a request it refuses to the
    resolvers (schema/compiled/registry.py, `busy_arguments`), so the error is this one."""

    def bad(message: str, field: str) -> GraphQLError:
        return GraphQLError(message, extensions={"code": "BAD_USER_INPUT", "field": field})

    try:
        start = to_utc(starts_from)
    except (OverflowError, ValueError) as exc:
        raise bad("`startsFrom` is out of range.", "startsFrom") from exc
    try:
        end = to_utc(starts_before)
    except (OverflowError, ValueError) as exc:
        raise bad("`startsBefore` is out of range.", "startsBefore") from exc
    if start >= end:
        raise bad("`startsFrom` must be before `startsBefore`.", "startsBefore")
    if end - start > queries.MAX_BUSY_RANGE:
        raise bad(
            f"Ask for at most {queries.MAX_BUSY_RANGE.days} days of busy time at once.",
            "startsBefore",
        )
    return start, end


@strawberry.type(description="An unpaid family carer linked to one or more service users.")
class Carer(Member):
    cares_for: list[ServiceUser] = many(
        "member",
        models.CarerLink.carer_id,
        link=models.CarerLink.service_user_id,
        through=models.CarerLink.service_user_id,
        order=(models.Member.id,),
        description="The service users this carer is linked to.",
    )


@strawberry.type(description="Any other member: supporters, support workers who are not PAs.")
class CoopMember(Member):
    pass


def member_from_row(row: Row[Any]) -> Member:
    """The member's concrete type, in the order the compiled path's `__typename` uses
    (schema/compiled/registry.py, `_member_typename`)."""
    if row.su_id is not None:
        return from_row(ServiceUser, row)
    if row.pa_id is not None:
        return from_row(PersonalAssistant, row)
    if row.membership_class == enums.MembershipClass.CARER.value:
        return from_row(Carer, row)
    return from_row(CoopMember, row)


load_member: Loader[Member] = by_id_loader("member", queries.members_by_id, member_from_row)


# --- figures ----------------------------------------------------------------------------


@strawberry.type(
    description=(
        "Continuity of care for one person over the 28 days up to now. Only visits that "
        "took place (COMPLETED) count; scheduled, uncovered, missed and cancelled visits "
        "do not."
    )
)
class ContinuityFigures:
    """A row of `care.figures.continuity_select`: the person's member columns and their
    figures, both read paths building the person from the same row."""

    service_user: ServiceUser = in_row(
        "member",
        through=models.ClusterServiceUser.service_user_id,
        description="The person.",
    )
    distinct_pas_last_28_days: int = strawberry.field(
        description="Different PAs who made the person's completed visits."
    )
    visits_last_28_days: int = strawberry.field(description="The person's completed visits.")
    visits_by_regular_pas: int = strawberry.field(
        description="Of those, the visits made by one of the person's regular PAs."
    )
    regular_pa_share: float | None = strawberry.field(
        description="visitsByRegularPas / visitsLast28Days; null when there were no visits."
    )


def continuity_from_row(row: Row[Any]) -> ContinuityFigures:
    return from_own_row(ContinuityFigures, row)


# --- clusters and pools ----------------------------------------------------------------


@strawberry.type(description="A point on the map (WGS84).")
class GeoPoint:
    latitude: float = strawberry.field(description="Latitude in degrees (WGS84).")
    longitude: float = strawberry.field(description="Longitude in degrees (WGS84).")


@strawberry.type(
    description="A team of PAs around a group of service users in one area or of one need."
)
class Cluster(relay.Node):
    id: relay.NodeID[int]
    name: str = strawberry.field(description="The cluster's name.")
    kind: ClusterKind = strawberry.field(
        description="Whether the cluster is drawn by area or by need."
    )
    status: ClusterStatus = strawberry.field(description="Where the cluster is in its life.")
    centre: GeoPoint | None = strawberry.field(
        description="Centre of a geographic cluster; null if not set (need-based clusters)."
    )
    radius_km: float | None = strawberry.field(
        description="Radius around the centre the cluster serves, in km; null if not set."
    )
    postcode_districts: list[str] = strawberry.field(
        description="Postcode districts the cluster covers, e.g. N3; empty if none."
    )
    need_tags: list[str] = strawberry.field(
        description=(
            "Needs a need-based cluster is for, e.g. dementia; empty for geographic clusters."
        )
    )
    created_at: dt.datetime = strawberry.field(
        description="When the cluster was created (UTC, ISO 8601 with offset)."
    )
    closed_at: dt.datetime | None = strawberry.field(
        description=(
            "When the cluster was closed (UTC, ISO 8601 with offset); null while not closed."
        )
    )
    la_code: strawberry.Private[str]
    support_worker_id: strawberry.Private[int | None]

    @classmethod
    async def resolve_nodes(  # type: ignore[override]
        cls, *, info: Info, node_ids: Iterable[str], required: bool = False
    ) -> list[Any]:
        return await resolve_ids(info, node_ids, load_cluster)

    local_authority: LocalAuthority | None = record(
        "local_authority",
        "la_code",
        target="gss_code",
        description="The council area the cluster is in; null if its code is unknown.",
    )
    support_worker: Member | None = record(
        "member",
        "support_worker_id",
        description="The support worker (coordinator) who runs the cluster.",
    )

    pools: list[Pool] = many(
        "pool",
        models.PoolCluster.cluster_id,
        link=models.PoolCluster.pool_id,
        order=(models.Pool.id,),
        description="Pools of PAs that serve this cluster.",
    )
    service_users: Connection[ServiceUser] = paged(
        "member",
        models.ClusterServiceUser.cluster_id,
        link=models.ClusterServiceUser.service_user_id,
        through=models.ClusterServiceUser.service_user_id,
        sort=(models.Member.id,),
        description="Service users in this cluster that the caller may see.",
    )
    personal_assistants: Connection[PersonalAssistant] = paged(
        "member",
        models.ClusterPa.cluster_id,
        link=models.ClusterPa.pa_id,
        through=models.ClusterPa.pa_id,
        sort=(models.Member.id,),
        description="The cluster's PA team.",
    )


def cluster_from_row(row: Row[Any]) -> Cluster:
    centre = (
        GeoPoint(latitude=row.centre_latitude, longitude=row.centre_longitude)
        if row.centre_latitude is not None
        else None
    )
    return from_row(Cluster, row, centre=centre)


load_cluster: Loader[Cluster] = by_id_loader("cluster", queries.clusters_by_id, cluster_from_row)


@strawberry.type(description="A set of PAs shared by several clusters.")
class Pool(relay.Node):
    id: relay.NodeID[int]
    name: str = strawberry.field(description="The pool's name.")
    shared_with_partners: bool = strawberry.field(
        description="Offered to partner co-ops once federation is set up."
    )

    @classmethod
    async def resolve_nodes(  # type: ignore[override]
        cls, *, info: Info, node_ids: Iterable[str], required: bool = False
    ) -> list[Any]:
        return await resolve_ids(info, node_ids, load_pool)

    clusters: list[Cluster] = many(
        "cluster",
        models.PoolCluster.pool_id,
        link=models.PoolCluster.cluster_id,
        order=(models.Cluster.id,),
        description="Clusters this pool serves that the caller may see.",
    )

    personal_assistants: Connection[PersonalAssistant] = paged(
        "member",
        models.PoolPa.pool_id,
        link=models.PoolPa.pa_id,
        through=models.PoolPa.pa_id,
        sort=(models.Member.id,),
        description="PAs in this pool that the caller may see.",
    )


def pool_from_row(row: Row[Any]) -> Pool:
    return from_row(Pool, row)


load_pool: Loader[Pool] = by_id_loader("pool", queries.pools_by_id, pool_from_row)


# --- rota --------------------------------------------------------------------------


@strawberry.type(description="A period when a PA is free to work.")
class AvailabilityWindow(relay.Node):
    id: relay.NodeID[int]
    starts_at: dt.datetime = strawberry.field(
        description="When the PA becomes free (UTC, ISO 8601 with offset)."
    )
    ends_at: dt.datetime = strawberry.field(
        description="When the free period ends, exclusive (UTC, ISO 8601 with offset)."
    )
    from_weekly_pattern: bool = strawberry.field(
        description="True when expanded from a weekly pattern rather than set directly."
    )
    pa_id: strawberry.Private[int]

    @classmethod
    async def resolve_nodes(  # type: ignore[override]
        cls, *, info: Info, node_ids: Iterable[str], required: bool = False
    ) -> list[Any]:
        return await resolve_ids(info, node_ids, load_availability_window)

    personal_assistant: PersonalAssistant | None = record(
        "member",
        "pa_id",
        through=models.AvailabilityWindow.pa_id,
        description="The PA who is free; null if the caller may not see them.",
    )


def availability_from_row(row: Row[Any]) -> AvailabilityWindow:
    return from_row(
        AvailabilityWindow, row, from_weekly_pattern=row.weekly_availability_id is not None
    )


load_availability_window: Loader[AvailabilityWindow] = by_id_loader(
    "availability", queries.availability_by_id, availability_from_row
)


@strawberry.type(description="A booked period of care for a service user by a PA.")
class Visit(relay.Node):
    id: relay.NodeID[int]
    starts_at: dt.datetime = strawberry.field(
        description="When the visit starts (UTC, ISO 8601 with offset)."
    )
    ends_at: dt.datetime = strawberry.field(
        description="When the visit ends, exclusive (UTC, ISO 8601 with offset)."
    )
    status: VisitStatus = strawberry.field(description="Where the visit stands.")
    tasks: list[str] | None = strawberry.field(
        description="What the visit involves; null unless the caller may read it."
    )
    series_id: str | None = strawberry.field(
        description=(
            "Shared by visits booked together as a recurring series; null for a one-off visit."
        )
    )
    confirmed_at: dt.datetime | None = strawberry.field(
        description=(
            "When the service user or a linked carer confirmed the visit took place"
            " (UTC, ISO 8601 with offset); null until confirmed."
        )
    )
    checked_in_at: dt.datetime | None = strawberry.field(
        description=(
            "When the PA checked in (UTC, ISO 8601 with offset); optional, never "
            "required; null if they did not."
        )
    )
    cancel_reason: str | None = strawberry.field(
        description=(
            "Why the visit was cancelled; null unless the caller may read its "
            "tasks, or if not cancelled."
        )
    )
    service_user_id: strawberry.Private[int]
    pa_id: strawberry.Private[int | None]
    confirmed_by_id: strawberry.Private[int | None]

    @classmethod
    async def resolve_nodes(  # type: ignore[override]
        cls, *, info: Info, node_ids: Iterable[str], required: bool = False
    ) -> list[Any]:
        return await resolve_ids(info, node_ids, load_visit)

    service_user: ServiceUser | None = record(
        "member",
        "service_user_id",
        through=models.Visit.service_user_id,
        description="The person receiving the visit; null if the caller may not see them.",
    )

    @strawberry.field(
        description="A partner co-op asked to cover this visit, or covering it (the live "
        "cover exchange: HELD, ACCEPTED or CONFIRMED; then `pa` is null); null when none, "
        "or for callers who may not see it (see CoverExchange)."
    )
    async def partner_cover(self, info: Info) -> CoverExchange | None:
        viewer = info.context.viewer
        rows = await loaders.grouped(
            info.context,
            "visit_partner_cover",
            lambda ids: queries.live_cover_exchanges_of_visits(viewer, ids),
        ).load(self.id)
        return cover_exchange_from_row(rows[0]) if rows else None

    pa: PersonalAssistant | None = record(
        "member",
        "pa_id",
        through=models.Visit.pa_id,
        description="The PA booked; null while the visit needs cover.",
    )
    confirmed_by: Member | None = record(
        "member",
        "confirmed_by_id",
        description="Who confirmed the visit (the service user or a carer).",
    )


def visit_from_row(row: Row[Any]) -> Visit:
    return from_row(Visit, row)


load_visit: Loader[Visit] = by_id_loader("visit", queries.visits_by_id, visit_from_row)


# --- cover ---------------------------------------------------------------------------


@strawberry.type(description="A PA's holiday, sickness, training or other time away.")
class Absence(relay.Node):
    id: relay.NodeID[int]
    kind: AbsenceKind = strawberry.field(
        description="Why the PA is away, in broad terms (visible to whoever sees the absence)."
    )
    starts_at: dt.datetime = strawberry.field(
        description="When the absence starts (UTC, ISO 8601 with offset)."
    )
    ends_at: dt.datetime = strawberry.field(
        description="When the absence ends, exclusive (UTC, ISO 8601 with offset)."
    )
    note: str | None = strawberry.field(
        description="May hold health details: null unless the caller is the PA or an admin."
    )
    created_at: dt.datetime = strawberry.field(
        description="When the absence was recorded (UTC, ISO 8601 with offset)."
    )
    cancelled_at: dt.datetime | None = strawberry.field(
        description="When the absence was cancelled (UTC, ISO 8601 with offset); null if it stands."
    )
    pa_id: strawberry.Private[int]

    @classmethod
    async def resolve_nodes(  # type: ignore[override]
        cls, *, info: Info, node_ids: Iterable[str], required: bool = False
    ) -> list[Any]:
        return await resolve_ids(info, node_ids, load_absence)

    personal_assistant: PersonalAssistant | None = record(
        "member",
        "pa_id",
        through=models.Absence.pa_id,
        description="The PA who is away; null if the caller may not see them.",
    )


def absence_from_row(row: Row[Any]) -> Absence:
    return from_row(Absence, row)


load_absence: Loader[Absence] = by_id_loader("absence", queries.absences_by_id, absence_from_row)


@strawberry.type(description="A visit that needs another PA, and how it was covered.")
class CoverRequest(relay.Node):
    id: relay.NodeID[int]
    reason: CoverReason = strawberry.field(description="Why the visit needs cover.")
    status: CoverRequestStatus = strawberry.field(description="Where the request stands.")
    opened_at: dt.datetime = strawberry.field(
        description="When the request was opened (UTC, ISO 8601 with offset)."
    )
    closed_at: dt.datetime | None = strawberry.field(
        description=(
            "When the request was filled, returned or cancelled (UTC, ISO 8601 with"
            " offset); null while open."
        )
    )
    note: str | None = strawberry.field(
        description="The coordinator's note on the request; null if none."
    )
    visit_starts_at: dt.datetime = strawberry.field(
        description="When the visit to cover starts (UTC, ISO 8601 with offset)."
    )
    visit_id: strawberry.Private[int]
    absence_id: strawberry.Private[int | None]
    original_pa_id: strawberry.Private[int | None]
    filled_by_partner: bool = strawberry.field(
        description="Whether a partner co-op's PA filled it (a confirmed cover exchange; "
        "filledBy is then null)."
    )
    filled_by_pa_id: strawberry.Private[int | None]

    @classmethod
    async def resolve_nodes(  # type: ignore[override]
        cls, *, info: Info, node_ids: Iterable[str], required: bool = False
    ) -> list[Any]:
        return await resolve_ids(info, node_ids, load_cover_request)

    visit: Visit | None = record(
        "visit", "visit_id", description="The visit to cover; null if the caller may not see it."
    )
    absence: Absence | None = record(
        "absence", "absence_id", description="The absence that opened this request, if any."
    )
    original_pa: PersonalAssistant | None = record(
        "member",
        "original_pa_id",
        through=models.CoverRequest.original_pa_id,
        description="The PA who had the visit before it needed cover.",
    )
    filled_by: PersonalAssistant | None = record(
        "member",
        "filled_by_pa_id",
        through=models.CoverRequest.filled_by_pa_id,
        description="The PA whose acceptance filled the request.",
    )

    offers: list[CoverOffer] = many(
        "cover_offer",
        models.CoverOffer.cover_request_id,
        order=(models.CoverOffer.id,),
        description="Offers made for this request that the caller may see.",
    )


def cover_request_from_row(row: Row[Any]) -> CoverRequest:
    return from_row(CoverRequest, row)


load_cover_request: Loader[CoverRequest] = by_id_loader(
    "cover_request", queries.cover_requests_by_id, cover_request_from_row
)


@strawberry.type(
    description="What a PA needs to decide on an offer of cover, and no more: the time, the "
    "area and the distance, who and what for. No address, postcode or contact details: "
    "once the PA has accepted, the visit is theirs and its serviceUser gives those under "
    "the usual rule (a PA reads a person's personal data while they have a visit with "
    "them between 7 days ago and 14 days ahead)."
)
class OfferedVisit:
    starts_at: dt.datetime = strawberry.field(
        description="When the visit starts (UTC, ISO 8601 with offset)."
    )
    ends_at: dt.datetime = strawberry.field(
        description="When the visit ends, exclusive (UTC, ISO 8601 with offset)."
    )
    duration_minutes: int = strawberry.field(description="How long the visit lasts, in minutes.")
    postcode_district: str | None = strawberry.field(
        description="The postcode district the person lives in (the outward code, e.g. N12); "
        "null if their postcode is not known."
    )
    distance_km: float | None = strawberry.field(
        description="Great-circle distance from the PA's home to the person's, in km to one "
        "decimal place; null if either home's location is unknown."
    )
    person_first_name: str | None = strawberry.field(
        description="The first word of the person's name."
    )
    needs: list[str] = strawberry.field(
        description="The person's need tags, e.g. personal-care (each needs a matching skill)."
    )
    tasks: list[str] = strawberry.field(description="What the visit involves.")


def offered_visit_from_row(row: Row[Any]) -> OfferedVisit:
    """From `care.queries.offer_summary_select`'s row (its minutes computed there)."""
    return from_row(OfferedVisit, row)


@strawberry.type(description="A cover request offered to one PA.")
class CoverOffer(relay.Node):
    id: relay.NodeID[int]
    status: CoverOfferStatus = strawberry.field(
        description="Where the offer stands; an open offer past expiresAt reads EXPIRED."
    )
    offered_at: dt.datetime = strawberry.field(
        description="When the offer was made (UTC, ISO 8601 with offset)."
    )
    expires_at: dt.datetime = strawberry.field(
        description=(
            "When the offer lapses if still open, after which it counts as EXPIRED "
            "(UTC, ISO 8601 with offset)."
        )
    )
    responded_at: dt.datetime | None = strawberry.field(
        description=(
            "When the offer was answered or ended (UTC, ISO 8601 with offset); null until then."
        )
    )
    cover_request_id: strawberry.Private[int]
    pa_id: strawberry.Private[int]

    @classmethod
    async def resolve_nodes(  # type: ignore[override]
        cls, *, info: Info, node_ids: Iterable[str], required: bool = False
    ) -> list[Any]:
        return await resolve_ids(info, node_ids, load_cover_offer)

    cover_request: CoverRequest | None = record(
        "cover_request",
        "cover_request_id",
        description="The request offered; null if the caller may not see it.",
    )
    personal_assistant: PersonalAssistant | None = record(
        "member",
        "pa_id",
        through=models.CoverOffer.pa_id,
        description="The PA the offer was made to; null if the caller may not see them.",
    )

    @strawberry.field(
        description="What the PA needs to decide: for the PA while the offer is open (OPEN "
        "and unexpired), and for admins and the coordinators who see the request; null for "
        "anyone else, and for the PA once the offer is no longer open."
    )
    async def visit_summary(self, info: Info) -> OfferedVisit | None:
        viewer = info.context.viewer
        row = await loaders.by_id(
            info.context, "offer_summary", lambda ids: queries.offer_summaries(viewer, ids)
        ).load(self.id)
        return offered_visit_from_row(row) if row is not None else None


def cover_offer_from_row(row: Row[Any]) -> CoverOffer:
    return CoverOffer(
        id=row.id,
        status=enums.CoverOfferStatus(row.status),
        offered_at=row.offered_at,
        expires_at=row.expires_at,
        responded_at=row.responded_at,
        cover_request_id=row.cover_request_id,
        pa_id=row.pa_id,
    )


load_cover_offer: Loader[CoverOffer] = by_id_loader(
    "cover_offer", queries.offers_by_id, cover_offer_from_row
)


# --- cover exchanges with partner co-ops ------------------------------------------------------


@strawberry.type(description="A partner co-op, by the public facts of its manifest.")
class ExchangePartner:
    name: str | None = strawberry.field(
        description="The partner co-op's name, from its manifest; null if it gave none."
    )
    base_url: str = strawberry.field(description="The partner instance's base URL.")


@strawberry.type(description="One status change of a cover exchange, and who made it.")
class CoverExchangeEvent:
    at: dt.datetime = strawberry.field(description="When (UTC, ISO 8601 with offset).")
    status: ExchangeStatus = strawberry.field(description="The status it changed to.")
    by_side: ExchangeActor = strawberry.field(description="Which side made the change.")
    by_role: str | None = strawberry.field(
        description="The role that made it (e.g. PA, COORDINATOR, ADMIN); null for SYSTEM."
    )
    note: str | None = strawberry.field(description="Why, in a few words; null if nothing.")


@strawberry.type(
    description="Cover for one visit arranged with a partner co-op (docs/federation.md, "
    "section 12), as this instance sees it. REQUESTING: our person's visit, the partner's "
    "PA; PROVIDING: the partner's person, our PA. Seen by admins; coordinators who manage "
    "the person (REQUESTING) or the PA (PROVIDING); and the PA (PROVIDING). First names "
    "and the address only once CONFIRMED."
)
class CoverExchange(relay.Node):
    id: relay.NodeID[int]
    ref: str = strawberry.field(
        description="The exchange's reference, the same on both instances (a UUID)."
    )
    side: ExchangeSide = strawberry.field(description="Which side this instance is on.")
    status: ExchangeStatus = strawberry.field(description="Where the exchange stands.")
    partner: ExchangePartner = strawberry.field(description="The other co-op.")
    starts_at: dt.datetime = strawberry.field(
        description="When the visit starts (UTC, ISO 8601 with offset)."
    )
    ends_at: dt.datetime = strawberry.field(
        description="When the visit ends (UTC, ISO 8601 with offset)."
    )
    district: str | None = strawberry.field(
        description="The person's postcode district (outward code), e.g. N12; null if unknown."
    )
    skills: list[str] = strawberry.field(description="The skills the person's care needs.")
    hold_expires_at: dt.datetime = strawberry.field(
        description="When the hold on the PA's time runs out unless confirmed (UTC)."
    )
    pa_ref: str = strawberry.field(
        description="The PA's pseudonymous reference, as the providing co-op gives it to "
        "the requesting co-op."
    )
    pa_first_name: str | None = strawberry.field(
        description="The PA's first name: exchanged once confirmed; null before and after."
    )
    person_first_name: str | None = strawberry.field(
        description="The person's first name: exchanged once confirmed; null otherwise."
    )
    person_address: str | None = strawberry.field(
        description="Where the visit is (the person's postcode, the address this co-op "
        "keeps): exchanged once confirmed; null otherwise."
    )
    care_summary: str | None = strawberry.field(
        description="What the requesting coordinator chose to share about the care. "
        "REQUESTING: always; PROVIDING: once confirmed. Null when none."
    )
    cancelled_by: PartnershipSide | None = strawberry.field(
        description="Which side cancelled it (US: this co-op); null unless CANCELLED."
    )
    reason: str | None = strawberry.field(
        description="Why it was declined or cancelled, in a few words; null if none."
    )
    visit_id: strawberry.Private[int | None]
    cover_request_id: strawberry.Private[int | None]
    pa_id: strawberry.Private[int | None]

    @classmethod
    async def resolve_nodes(  # type: ignore[override]
        cls, *, info: Info, node_ids: Iterable[str], required: bool = False
    ) -> list[Any]:
        return await resolve_ids(info, node_ids, load_cover_exchange)

    visit: Visit | None = record(
        "visit",
        "visit_id",
        description="REQUESTING: the visit covered; null on the providing side or if the "
        "caller may not see it.",
    )
    cover_request: CoverRequest | None = record(
        "cover_request",
        "cover_request_id",
        description="REQUESTING: the cover request the exchange answers; null on the "
        "providing side or if the caller may not see it.",
    )
    pa: PersonalAssistant | None = record(
        "member",
        "pa_id",
        through=models.CoverExchange.pa_id,
        description="PROVIDING: our PA whose time is held or booked; null on the "
        "requesting side or if the caller may not see them.",
    )
    events: list[CoverExchangeEvent] = many(
        "cover_exchange_event",
        models.CoverExchangeEvent.exchange_id,
        order=queries.COVER_EXCHANGE_EVENT_ORDER,
        description="Every status change on this side, oldest first.",
    )


def cover_exchange_from_row(row: Row[Any]) -> CoverExchange:
    return CoverExchange(
        id=row.id,
        ref=str(row.ref),
        side=enums.ExchangeSide(row.side),
        status=enums.ExchangeStatus(row.status),
        partner=ExchangePartner(name=row.partner_name, base_url=row.partner_base_url),
        starts_at=row.starts_at,
        ends_at=row.ends_at,
        district=row.district,
        skills=list(row.skills or []),
        hold_expires_at=row.hold_expires_at,
        pa_ref=row.pa_ref,
        pa_first_name=row.pa_first_name,
        person_first_name=row.person_first_name,
        person_address=row.person_address,
        care_summary=row.care_summary,
        cancelled_by=enums.PartnershipSide(row.cancelled_by) if row.cancelled_by else None,
        reason=row.reason,
        visit_id=row.visit_id,
        cover_request_id=row.cover_request_id,
        pa_id=row.pa_id,
    )


load_cover_exchange: Loader[CoverExchange] = by_id_loader(
    "cover_exchange", queries.cover_exchanges_by_id, cover_exchange_from_row
)


# --- partnerships with other instances ------------------------------------------------------


@strawberry.type(description="A local authority a partner co-op serves, as its manifest says.")
class PartnerLocalAuthority:
    gss_code: str = strawberry.field(description="ONS GSS code, e.g. E09000003.")
    name: str = strawberry.field(description="The council's name, as the partner gave it.")


@strawberry.type(
    description="A partnership between this co-op's instance and another's (admins only). "
    "See docs/federation.md, section 8."
)
class Partnership(relay.Node):
    id: relay.NodeID[int]
    base_url: str = strawberry.field(
        description="The partner instance's base URL (its manifest is at "
        "<baseUrl>/.well-known/coopnet)."
    )
    coop_name: str | None = strawberry.field(
        description="The partner co-op's name, from its manifest; null if it gave none."
    )
    home_local_authority: str | None = strawberry.field(
        description="GSS code of the partner co-op's home local authority, from its "
        "manifest; null if it gave none."
    )
    # Read from the manifest's JSON by `queries.partner_local_authority_select`, one row
    # each, on both read paths.
    local_authorities: list[PartnerLocalAuthority] = many(
        "partner_local_authority",
        models.Partnership.id,
        order=queries.PARTNER_LOCAL_AUTHORITY_ORDER,
        description="The local authorities the partner serves, from its manifest.",
    )
    direction: PartnershipDirection = strawberry.field(description="Who proposed it.")
    status: PartnershipStatus = strawberry.field(description="Where it stands.")
    requested_scopes: list[PartnerScope] = strawberry.field(
        description="The scopes the proposal asked for."
    )
    granted_scopes: list[PartnerScope] = strawberry.field(
        description="The scopes agreed (mutual: each side may ask the other for them); "
        "empty until accepted."
    )
    suspended_by: PartnershipSide | None = strawberry.field(
        description="Which side suspended it (only that side may resume); null unless SUSPENDED."
    )
    protocol_version: str = strawberry.field(
        description="The federation protocol version both sides speak, e.g. coopnet-federation/1."
    )
    key_ids: list[str] = strawberry.field(
        description="The ids (RFC 7638 thumbprints) of the partner's public keys we hold, "
        "to compare with the partner out of band."
    )
    manifest_fetched_at: dt.datetime | None = strawberry.field(
        description="When the partner's manifest was last read (UTC)."
    )
    last_contact_at: dt.datetime | None = strawberry.field(
        description="When a call to the partner last succeeded, or one from it was last "
        "received (UTC); null if never."
    )
    last_error: str | None = strawberry.field(
        description="Why the last call to the partner failed (e.g. PARTNER_UNREACHABLE, "
        "a refusal, a version mismatch); null once a call succeeds again."
    )
    last_error_at: dt.datetime | None = strawberry.field(
        description="When lastError happened (UTC); null with it."
    )
    last_sync_at: dt.datetime | None = strawberry.field(
        description="When the partner's availability was last pulled (UTC); null if never."
    )
    created_at: dt.datetime = strawberry.field(description="When the row was created (UTC).")
    updated_at: dt.datetime = strawberry.field(
        description="When the partnership last changed state (UTC)."
    )

    @classmethod
    async def resolve_nodes(  # type: ignore[override]
        cls, *, info: Info, node_ids: Iterable[str], required: bool = False
    ) -> list[Any]:
        return await resolve_ids(info, node_ids, load_partnership)


def partnership_from_row(row: Row[Any]) -> Partnership:
    """A partnership from a row of `queries.partnership_select`: every field is a column
    (`keyIds` an array of text), as the compiled path reads them."""
    return from_row(Partnership, row)


load_partnership: Loader[Partnership] = by_id_loader(
    "partnership", lambda viewer, ids: queries.partnerships(viewer, ids), partnership_from_row
)


# --- referrals ---------------------------------------------------------------------------


@strawberry.type(
    description="A person waiting for care in an area: demand, not a case file (no name, "
    "address or full postcode). Seen only by admins and by coordinators of a cluster in its "
    "local authority or a neighbouring one."
)
class Referral(relay.Node):
    id: relay.NodeID[int]
    postcode_district: str = strawberry.field(
        description="Where the person lives, as a postcode district (outward code), e.g. N12."
    )
    needs: list[str] = strawberry.field(description="The kinds of care needed, as tags.")
    hours_per_week: float = strawberry.field(
        description="Hours of care a week wanted (more than 0, at most 168)."
    )
    referred_on: dt.date = strawberry.field(description="The date the person was referred.")
    status: ReferralStatus = strawberry.field(description="Where the referral stands.")
    note: str | None = strawberry.field(
        description="A short note (at most 1000 characters); null when there is none."
    )
    created_at: dt.datetime = strawberry.field(
        description="When the referral was recorded (UTC, ISO 8601 with offset)."
    )
    updated_at: dt.datetime = strawberry.field(
        description="When the referral last changed (UTC, ISO 8601 with offset)."
    )
    la_code: strawberry.Private[str]
    recorded_by_id: strawberry.Private[int | None]

    @classmethod
    async def resolve_nodes(  # type: ignore[override]
        cls, *, info: Info, node_ids: Iterable[str], required: bool = False
    ) -> list[Any]:
        return await resolve_ids(info, node_ids, load_referral)

    local_authority: LocalAuthority | None = record(
        "local_authority",
        "la_code",
        target="gss_code",
        description="The local authority the person lives in.",
    )
    recorded_by: Member | None = record(
        "member",
        "recorded_by_id",
        description="Who recorded the referral; null if unknown or if the caller may not see them.",
    )


def referral_from_row(row: Row[Any]) -> Referral:
    """A referral from a row of `queries.referral_select`: its data fields read as the
    compiled path reads them (`schema.rows`)."""
    return from_row(Referral, row)


load_referral: Loader[Referral] = by_id_loader(
    "referral", queries.referrals_by_id, referral_from_row
)


NODE_TYPES: dict[str, type[relay.Node]] = {
    t.__name__: t
    for t in (
        ServiceUser,
        PersonalAssistant,
        Carer,
        CoopMember,
        Cluster,
        Pool,
        AvailabilityWindow,
        Visit,
        Absence,
        CoverRequest,
        CoverOffer,
        CoverExchange,
        Partnership,
        Referral,
    )
}


async def resolve_global_id(info: Info, value: str) -> relay.Node | None:
    """`node(id:)`: null for a value that is not a global id, an id of no known type, a
    malformed or out-of-range number, and a record the caller may not see alike."""
    global_id = parse_global_id(value)
    node_type = NODE_TYPES.get(global_id.type_name) if global_id is not None else None
    if global_id is None or node_type is None:
        return None
    # Every node type here resolves asynchronously, in one batched statement.
    found = await cast(
        Awaitable[list[Any]], node_type.resolve_nodes(info=info, node_ids=[global_id.node_id])
    )
    return cast(relay.Node | None, found[0] if found else None)


# Where `record` fields load each kind of record by its key (the compiler reads the same
# kinds from `schema.compiled.registry.SOURCES`, under the same names).
LOADERS: dict[str, Callable[[Info, Any], Awaitable[Any]]] = {
    "member": load_member,
    "visit": load_visit,
    "absence": load_absence,
    "cover_request": load_cover_request,
    "local_authority": load_local_authority,
}

# Where `many` and `paged` fields read each kind of row, and how a row becomes its object (the
# compiler reads the same selects: `schema.compiled.registry.SOURCES`).
LISTED: dict[str, tuple[Callable[[Viewer], Select], Callable[[Row[Any]], Any]]] = {
    "member": (queries.member_select, member_from_row),
    "local_authority": (queries.local_authority_select, lambda row: from_row(LocalAuthority, row)),
    "coop": (queries.coop_select, coop_from_row),
    "care_term": (vocabulary.term_select, term_from_row),
    "cover_gap": (candidates.cover_gaps_select, cover_gap_from_row),
    "pool": (queries.pool_select, pool_from_row),
    "cluster": (queries.cluster_select, cluster_from_row),
    "visit": (queries.visit_select, visit_from_row),
    "availability": (queries.availability_select, availability_from_row),
    "pay_rate": (queries.pay_rate_select, lambda row: from_row(PayRate, row)),
    "skill": (queries.skill_select, lambda row: from_row(Skill, row)),
    "cover_offer": (queries.cover_offer_select, cover_offer_from_row),
    "absence": (queries.absence_select, absence_from_row),
    "cover_request": (queries.cover_request_select, cover_request_from_row),
    "cover_exchange": (queries.cover_exchange_select, cover_exchange_from_row),
    "referral": (queries.referral_select, referral_from_row),
    "cover_exchange_event": (
        queries.cover_exchange_event_select,
        lambda row: from_row(CoverExchangeEvent, row),
    ),
    "partnership": (queries.partnership_select, partnership_from_row),
    "partner_local_authority": (
        queries.partner_local_authority_select,
        lambda row: from_row(PartnerLocalAuthority, row),
    ),
    "service_user_continuity": (figures.continuity_select, continuity_from_row),
}
