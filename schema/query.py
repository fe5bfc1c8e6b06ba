"""Root query fields. Each declares who may ask (`schema.permissions`); resolvers are
thin and delegate to `care.queries` through the context."""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from typing import Annotated

import strawberry
from strawberry import relay

from care import queries
from care.geography import postcode_district
from schema.candidates import CandidateQueries
from schema.connection import (
    BeforeArg,
    Connection,
    FirstArg,
    LastArg,
    build_connection,
    page_request,
)
from schema.context import DEFAULT_PAGE_SIZE, Info
from schema.exchange import CoverExchangeQueries
from schema.expansion import ExpansionQueries
from schema.feed import FeedQueries
from schema.figures import FigureQueries
from schema.market import MarketQueries
from schema.peers import PeerQueries
from schema.permissions import (
    ADMINS,
    COOP,
    MANAGING,
    MEMBER_TYPES,
    PAS,
    PUBLIC,
    decode_id,
    guard,
)
from schema.types import (
    Absence,
    AvailabilityWindow,
    Cluster,
    ClusterKind,
    ClusterStatus,
    Coop,
    CoverOffer,
    CoverRequest,
    CoverRequestStatus,
    LocalAuthority,
    Member,
    MembershipClass,
    Partnership,
    Pool,
    Referral,
    ReferralStatus,
    Visit,
    VisitStatus,
    absence_from_row,
    availability_from_row,
    cluster_from_row,
    coop_from_row,
    cover_offer_from_row,
    cover_request_from_row,
    document_enum,
    load_cluster,
    load_member,
    member_from_row,
    partnership_from_row,
    pool_from_row,
    referral_from_row,
    resolve_global_id,
    visit_from_row,
)
from schema.vocabulary import CareTermQueries

# Argument descriptions shared by the root fields.
AFTER = (
    "A cursor from a previous page under the same order (its `endCursor`): the page "
    "continues after it."
)
RANGE_NOTE = (
    "Give a UTC offset (e.g. 2026-12-01T00:00:00Z). With `startsBefore`, a half-open "
    "range [startsFrom, startsBefore)."
)
HIDDEN_ID = "An unknown id, or one of a record the caller may not see, matches nothing."

After = Annotated[str | None, strawberry.argument(description=AFTER)]
ORDER_NOTE = (
    " Cursors carry the order: one from a page in another order is BAD_USER_INPUT. Ties "
    "are broken by id, so pages never skip or repeat a result."
)


class VisitOrder(StrEnum):
    START_ASC = "START_ASC"
    START_DESC = "START_DESC"


class MemberOrder(StrEnum):
    ID_ASC = "ID_ASC"
    NAME_ASC = "NAME_ASC"
    NAME_DESC = "NAME_DESC"


class CoverRequestOrder(StrEnum):
    VISIT_START_ASC = "VISIT_START_ASC"
    OPENED_ASC = "OPENED_ASC"
    OPENED_DESC = "OPENED_DESC"


document_enum(
    VisitOrder,
    "Orders of `visits`.",
    {"START_ASC": "Earliest start first (the default).", "START_DESC": "Latest start first."},
)
document_enum(
    MemberOrder,
    "Orders of `members`.",
    {
        "ID_ASC": "In the order members were recorded (the default).",
        "NAME_ASC": "By name, A to Z (in the database's collation).",
        "NAME_DESC": "By name, Z to A.",
    },
)
document_enum(
    CoverRequestOrder,
    "Orders of `coverRequests`.",
    {
        "VISIT_START_ASC": "By the start of the visit, soonest first (the default).",
        "OPENED_ASC": "By when the request was opened, oldest first.",
        "OPENED_DESC": "By when the request was opened, newest first.",
    },
)


def _cursor_order(order: StrEnum, default: StrEnum) -> str | None:
    """The name a cursor carries for `order` (none for the list's default order, so the
    cursors of callers that never choose an order are unchanged)."""
    return None if order is default else str(order)


@strawberry.type(
    description=(
        "Read access to the co-op's records. Each field says who may ask; records the "
        "caller may not see are left out, as if they did not exist."
    )
)
class Query(
    CandidateQueries,
    FigureQueries,
    PeerQueries,
    FeedQueries,
    MarketQueries,
    CoverExchangeQueries,
    ExpansionQueries,
    CareTermQueries,
):
    @strawberry.field(
        description="Any record by its global id; null when unknown, hidden from the "
        "caller, or not an id of this service.",
        extensions=guard(PUBLIC),
    )
    async def node(
        self,
        info: Info,
        id: Annotated[strawberry.ID, strawberry.argument(description="A global id.")],
    ) -> relay.Node | None:
        return await resolve_global_id(info, id)

    @strawberry.field(
        description="The signed-in person, or null for anonymous callers.",
        extensions=guard(PUBLIC),
    )
    async def me(self, info: Info) -> Member | None:
        viewer = info.context.viewer
        if viewer.member_id is None:
            return None
        return await load_member(info, viewer.member_id)

    @strawberry.field(
        description="The co-op's public profile. Open to anonymous callers.",
        extensions=guard(PUBLIC),
    )
    async def coop(self, info: Info) -> Coop | None:
        rows = await info.context.rows(queries.coop())
        if not rows:
            return None
        return coop_from_row(rows[0][0])

    @strawberry.field(
        description="Local authorities known to this instance (public).",
        extensions=guard(PUBLIC),
    )
    async def local_authorities(self, info: Info) -> list[LocalAuthority]:
        rows = await info.context.rows(queries.local_authorities())
        return [LocalAuthority(gss_code=r.gss_code, name=r.name) for r in rows]

    @strawberry.field(
        description="Clusters, filtered by local authority, kind and status.",
        extensions=guard(COOP),
    )
    async def clusters(
        self,
        info: Info,
        first: FirstArg = DEFAULT_PAGE_SIZE,
        after: After = None,
        last: LastArg = None,
        before: BeforeArg = None,
        local_authority: Annotated[
            str | None,
            strawberry.argument(
                description="Only clusters in this local authority, by its GSS code "
                "(e.g. E09000010)."
            ),
        ] = None,
        kind: Annotated[
            ClusterKind | None, strawberry.argument(description="Only clusters of this kind.")
        ] = None,
        status: Annotated[
            ClusterStatus | None, strawberry.argument(description="Only clusters in this status.")
        ] = None,
    ) -> Connection[Cluster]:
        request = page_request(info, first, after, last, before)
        rows = await info.context.rows(
            queries.clusters(
                info.context.viewer,
                request,
                la_code=local_authority,
                kind=kind.value if kind else None,
                status=status.value if status else None,
            )
        )
        return build_connection(rows, request, cluster_from_row)

    @strawberry.field(
        description="One cluster by id; null when unknown or hidden from the caller.",
        extensions=guard(COOP),
    )
    async def cluster(
        self,
        info: Info,
        id: Annotated[strawberry.ID, strawberry.argument(description="The cluster's id.")],
    ) -> Cluster | None:
        cluster_id = decode_id(id, "Cluster")
        return await load_cluster(info, cluster_id) if cluster_id is not None else None

    @strawberry.field(
        description="Members the caller may see, filtered by class, in the order they were "
        "recorded unless `orderBy` says otherwise.",
        extensions=guard(COOP),
    )
    async def members(
        self,
        info: Info,
        first: FirstArg = DEFAULT_PAGE_SIZE,
        after: After = None,
        last: LastArg = None,
        before: BeforeArg = None,
        membership_class: Annotated[
            MembershipClass | None,
            strawberry.argument(description="Only members of this membership class."),
        ] = None,
        active: Annotated[
            bool | None,
            strawberry.argument(
                description="true: only active members; false: only deactivated ones; "
                "not given: both."
            ),
        ] = None,
        name_contains: Annotated[
            str | None,
            strawberry.argument(
                description="Only members whose name contains this text, ignoring case."
            ),
        ] = None,
        order_by: Annotated[
            MemberOrder,
            strawberry.argument(description="The order of the results." + ORDER_NOTE),
        ] = MemberOrder.ID_ASC,
    ) -> Connection[Member]:
        keys, _ = queries.MEMBER_ORDERS[str(order_by)]
        order = _cursor_order(order_by, MemberOrder.ID_ASC)
        request = page_request(info, first, after, last, before, arity=len(keys), order=order)
        rows = await info.context.rows(
            queries.members(
                info.context.viewer,
                request,
                membership_class=membership_class.value if membership_class else None,
                active=active,
                name_contains=name_contains,
                order=str(order_by),
            )
        )
        return build_connection(rows, request, member_from_row, arity=len(keys), order=order)

    @strawberry.field(description="Shared PA pools the caller may see.", extensions=guard(COOP))
    async def pools(self, info: Info) -> list[Pool]:
        rows = await info.context.rows(queries.pools(info.context.viewer))
        return [pool_from_row(r) for r in rows]

    @strawberry.field(
        description="Visits the caller may see, earliest first unless `orderBy` says otherwise.",
        extensions=guard(COOP),
    )
    async def visits(
        self,
        info: Info,
        first: FirstArg = DEFAULT_PAGE_SIZE,
        after: After = None,
        last: LastArg = None,
        before: BeforeArg = None,
        starts_from: Annotated[
            dt.datetime | None,
            strawberry.argument(
                description="Only visits that end after this time (one under way then "
                "counts). " + RANGE_NOTE
            ),
        ] = None,
        starts_before: Annotated[
            dt.datetime | None,
            strawberry.argument(description="Only visits that start before this time."),
        ] = None,
        status: Annotated[
            list[VisitStatus] | None,
            strawberry.argument(description="Only visits in one of these statuses."),
        ] = None,
        cluster_id: Annotated[
            strawberry.ID | None,
            strawberry.argument(
                description="Only visits to the service users of this cluster. " + HIDDEN_ID
            ),
        ] = None,
        pa_id: Annotated[
            strawberry.ID | None,
            strawberry.argument(description="Only this PA's visits. " + HIDDEN_ID),
        ] = None,
        service_user_id: Annotated[
            strawberry.ID | None,
            strawberry.argument(description="Only visits to this service user. " + HIDDEN_ID),
        ] = None,
        order_by: Annotated[
            VisitOrder,
            strawberry.argument(description="The order of the results." + ORDER_NOTE),
        ] = VisitOrder.START_ASC,
    ) -> Connection[Visit]:
        order = _cursor_order(order_by, VisitOrder.START_ASC)
        request = page_request(info, first, after, last, before, arity=2, order=order)
        rows = await info.context.rows(
            queries.visits(
                info.context.viewer,
                request,
                starts_from=starts_from,
                starts_before=starts_before,
                statuses=[s.value for s in status] if status else None,
                cluster_id=_filter_id(cluster_id, "Cluster"),
                pa_id=_filter_id(pa_id, "PersonalAssistant"),
                service_user_id=_filter_id(service_user_id, "ServiceUser"),
                order=str(order_by),
            )
        )
        return build_connection(rows, request, visit_from_row, arity=2, order=order)

    @strawberry.field(
        description="PA availability windows, for one PA or one pool.", extensions=guard(COOP)
    )
    async def availability(
        self,
        info: Info,
        first: FirstArg = DEFAULT_PAGE_SIZE,
        after: After = None,
        last: LastArg = None,
        before: BeforeArg = None,
        pa_id: Annotated[
            strawberry.ID | None,
            strawberry.argument(description="Only this PA's windows. " + HIDDEN_ID),
        ] = None,
        pool_id: Annotated[
            strawberry.ID | None,
            strawberry.argument(description="Only windows of the PAs in this pool. " + HIDDEN_ID),
        ] = None,
        starts_from: Annotated[
            dt.datetime | None,
            strawberry.argument(description="Only windows that end after this time. " + RANGE_NOTE),
        ] = None,
        starts_before: Annotated[
            dt.datetime | None,
            strawberry.argument(description="Only windows that start before this time."),
        ] = None,
    ) -> Connection[AvailabilityWindow]:
        request = page_request(info, first, after, last, before, arity=2)
        rows = await info.context.rows(
            queries.availability(
                info.context.viewer,
                request,
                pa_id=_filter_id(pa_id, "PersonalAssistant"),
                pool_id=_filter_id(pool_id, "Pool"),
                starts_from=starts_from,
                starts_before=starts_before,
            )
        )
        return build_connection(rows, request, availability_from_row, arity=2)

    @strawberry.field(
        description=(
            "A PA's absences: the PA's own, every absence for admins, and for coordinators "
            "those of the PAs on their clusters' teams."
        ),
        extensions=guard(COOP),
    )
    async def absences(
        self,
        info: Info,
        first: FirstArg = DEFAULT_PAGE_SIZE,
        after: After = None,
        last: LastArg = None,
        before: BeforeArg = None,
        pa_id: Annotated[
            strawberry.ID | None,
            strawberry.argument(description="Only this PA's absences. " + HIDDEN_ID),
        ] = None,
        starts_from: Annotated[
            dt.datetime | None,
            strawberry.argument(
                description="Only absences that end after this time. " + RANGE_NOTE
            ),
        ] = None,
        starts_before: Annotated[
            dt.datetime | None,
            strawberry.argument(description="Only absences that start before this time."),
        ] = None,
        include_cancelled: Annotated[
            bool, strawberry.argument(description="Include cancelled absences too.")
        ] = False,
    ) -> Connection[Absence]:
        request = page_request(info, first, after, last, before, arity=2)
        rows = await info.context.rows(
            queries.absences(
                info.context.viewer,
                request,
                pa_id=_filter_id(pa_id, "PersonalAssistant"),
                starts_from=starts_from,
                starts_before=starts_before,
                include_cancelled=include_cancelled,
            )
        )
        return build_connection(rows, request, absence_from_row, arity=2)

    @strawberry.field(
        description="Cover requests by visit time, soonest first, unless `orderBy` says otherwise.",
        extensions=guard(COOP),
    )
    async def cover_requests(
        self,
        info: Info,
        first: FirstArg = DEFAULT_PAGE_SIZE,
        after: After = None,
        last: LastArg = None,
        before: BeforeArg = None,
        cluster_id: Annotated[
            strawberry.ID | None,
            strawberry.argument(
                description="Only requests for visits to the service users of this "
                "cluster. " + HIDDEN_ID
            ),
        ] = None,
        status: Annotated[
            list[CoverRequestStatus] | None,
            strawberry.argument(description="Only requests in one of these statuses."),
        ] = None,
        visit_starts_from: Annotated[
            dt.datetime | None,
            strawberry.argument(
                description="Only requests whose visit starts at or after this time. "
                "Give a UTC offset."
            ),
        ] = None,
        order_by: Annotated[
            CoverRequestOrder,
            strawberry.argument(description="The order of the results." + ORDER_NOTE),
        ] = CoverRequestOrder.VISIT_START_ASC,
    ) -> Connection[CoverRequest]:
        order = _cursor_order(order_by, CoverRequestOrder.VISIT_START_ASC)
        request = page_request(info, first, after, last, before, arity=2, order=order)
        rows = await info.context.rows(
            queries.cover_requests(
                info.context.viewer,
                request,
                cluster_id=_filter_id(cluster_id, "Cluster"),
                statuses=[s.value for s in status] if status else None,
                visit_starts_from=visit_starts_from,
                order=str(order_by),
            )
        )
        return build_connection(rows, request, cover_request_from_row, arity=2, order=order)

    @strawberry.field(
        description="The signed-in PA's open (unexpired) cover offers.", extensions=guard(PAS)
    )
    async def my_cover_offers(
        self,
        info: Info,
        first: FirstArg = DEFAULT_PAGE_SIZE,
        after: After = None,
        last: LastArg = None,
        before: BeforeArg = None,
    ) -> Connection[CoverOffer]:
        viewer = info.context.viewer
        if viewer.member_id is None:  # a PA token always names its member
            return build_connection(
                [], page_request(info, first, after, last, before), cover_offer_from_row
            )
        request = page_request(info, first, after, last, before)
        rows = await info.context.rows(queries.my_cover_offers(viewer, request))
        return build_connection(rows, request, cover_offer_from_row)

    @strawberry.field(
        description="This instance's partnerships with other co-ops' instances, in every "
        "status, oldest first (admins). See docs/federation.md, section 8.",
        extensions=guard(ADMINS),
    )
    async def partnerships(self, info: Info) -> list[Partnership]:
        rows = await info.context.rows(queries.partnerships(info.context.viewer))
        return [partnership_from_row(r) for r in rows]

    @strawberry.field(
        description="People waiting for care (referrals), in the order they were recorded, "
        "oldest first: every referral for admins; for coordinators those in the local "
        "authority of a cluster they support (not closed) or a neighbouring one. Rows, "
        "totalCount and cursors follow the same rule.",
        extensions=guard(MANAGING),
    )
    async def referrals(
        self,
        info: Info,
        first: FirstArg = DEFAULT_PAGE_SIZE,
        after: After = None,
        last: LastArg = None,
        before: BeforeArg = None,
        local_authority: Annotated[
            str | None,
            strawberry.argument(
                description="Only referrals in this local authority, by its GSS code "
                "(e.g. E09000003)."
            ),
        ] = None,
        district: Annotated[
            str | None,
            strawberry.argument(
                description="Only referrals in this postcode district (e.g. N12; case and "
                "spaces ignored). A value that is not a district matches nothing."
            ),
        ] = None,
        status: Annotated[
            ReferralStatus | None,
            strawberry.argument(description="Only referrals in this status."),
        ] = None,
    ) -> Connection[Referral]:
        request = page_request(info, first, after, last, before)
        wanted = None
        if district is not None:
            # "" never matches the district check, so junk matches nothing.
            wanted = postcode_district(district) or ""
        rows = await info.context.rows(
            queries.referrals(
                info.context.viewer,
                request,
                la_code=local_authority,
                district=wanted,
                status=status.value if status else None,
            )
        )
        return build_connection(rows, request, referral_from_row)


def _filter_id(global_id: strawberry.ID | None, type_name: str) -> int | None:
    """A filter on an id of the wrong type matches nothing (-1 is never an id)."""
    if global_id is None:
        return None
    found = decode_id(global_id, type_name, *(MEMBER_TYPES if type_name in MEMBER_TYPES else ()))
    return found if found is not None else -1
