"""Root query fields. Each declares who may ask (`schema.permissions`); resolvers are
thin and delegate to `care.queries` through the context."""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from typing import Annotated

import strawberry
from strawberry import relay

from care import queries
from care.models import Coop as CoopRow
from care.models import LocalAuthority as LocalAuthorityRow
from care.models import Partnership as PartnershipRow
from care.models import Pool as PoolRow
from schema import filters
from schema.candidates import CandidateQueries
from schema.connection import (
    BeforeArg,
    FirstArg,
    LastArg,
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
    PAS,
    PUBLIC,
    decode_id,
    guard,
)
from schema.rows import Argument
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
    document_enum,
    load_cluster,
    load_member,
    resolve_global_id,
    root_list,
    root_page,
    root_record,
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
# The page's arguments, first in every root list of this module.
PAGING = (
    Argument("first", FirstArg, DEFAULT_PAGE_SIZE),
    Argument("after", After),
    Argument("last", LastArg),
    Argument("before", BeforeArg),
)
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

    coop = root_record(
        "coop",
        Coop,
        order=(CoopRow.id,),
        description="The co-op's public profile. Open to anonymous callers.",
        extensions=guard(PUBLIC),
    )

    local_authorities = root_list(
        "local_authority",
        LocalAuthority,
        order=(LocalAuthorityRow.gss_code,),
        description="Local authorities known to this instance (public).",
        extensions=guard(PUBLIC),
    )

    clusters = root_page(
        "cluster",
        Cluster,
        sort=queries.CLUSTER_SORT,
        filters=filters.CLUSTERS,
        arguments=(
            *PAGING,
            Argument(
                "local_authority",
                Annotated[
                    str | None,
                    strawberry.argument(
                        description="Only clusters in this local authority, by its GSS code "
                        "(e.g. E09000010)."
                    ),
                ],
            ),
            Argument(
                "kind",
                Annotated[
                    ClusterKind | None,
                    strawberry.argument(description="Only clusters of this kind."),
                ],
            ),
            Argument(
                "status",
                Annotated[
                    ClusterStatus | None,
                    strawberry.argument(description="Only clusters in this status."),
                ],
            ),
        ),
        description="Clusters, filtered by local authority, kind and status.",
        extensions=guard(COOP),
    )

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

    members = root_page(
        "member",
        Member,
        orders=queries.MEMBER_ORDERS,
        filters=filters.MEMBERS,
        arguments=(
            *PAGING,
            Argument(
                "membership_class",
                Annotated[
                    MembershipClass | None,
                    strawberry.argument(description="Only members of this membership class."),
                ],
            ),
            Argument(
                "active",
                Annotated[
                    bool | None,
                    strawberry.argument(
                        description="true: only active members; false: only deactivated "
                        "ones; not given: both."
                    ),
                ],
            ),
            Argument(
                "name_contains",
                Annotated[
                    str | None,
                    strawberry.argument(
                        description="Only members whose name contains this text, ignoring case."
                    ),
                ],
            ),
            Argument(
                "order_by",
                Annotated[
                    MemberOrder,
                    strawberry.argument(description="The order of the results." + ORDER_NOTE),
                ],
                MemberOrder.ID_ASC,
            ),
        ),
        description="Members the caller may see, filtered by class, in the order they were "
        "recorded unless `orderBy` says otherwise.",
        extensions=guard(COOP),
    )

    pools = root_list(
        "pool",
        Pool,
        order=(PoolRow.id,),
        description="Shared PA pools the caller may see.",
        extensions=guard(COOP),
    )

    visits = root_page(
        "visit",
        Visit,
        orders=queries.VISIT_ORDERS,
        filters=filters.ROOT_VISITS,
        arguments=(
            *PAGING,
            Argument(
                "starts_from",
                Annotated[
                    dt.datetime | None,
                    strawberry.argument(
                        description="Only visits that end after this time (one under way "
                        "then counts). " + RANGE_NOTE
                    ),
                ],
            ),
            Argument(
                "starts_before",
                Annotated[
                    dt.datetime | None,
                    strawberry.argument(description="Only visits that start before this time."),
                ],
            ),
            Argument(
                "status",
                Annotated[
                    list[VisitStatus] | None,
                    strawberry.argument(description="Only visits in one of these statuses."),
                ],
            ),
            Argument(
                "cluster_id",
                Annotated[
                    strawberry.ID | None,
                    strawberry.argument(
                        description="Only visits to the service users of this cluster. " + HIDDEN_ID
                    ),
                ],
            ),
            Argument(
                "pa_id",
                Annotated[
                    strawberry.ID | None,
                    strawberry.argument(description="Only this PA's visits. " + HIDDEN_ID),
                ],
            ),
            Argument(
                "service_user_id",
                Annotated[
                    strawberry.ID | None,
                    strawberry.argument(
                        description="Only visits to this service user. " + HIDDEN_ID
                    ),
                ],
            ),
            Argument(
                "order_by",
                Annotated[
                    VisitOrder,
                    strawberry.argument(description="The order of the results." + ORDER_NOTE),
                ],
                VisitOrder.START_ASC,
            ),
        ),
        description="Visits the caller may see, earliest first unless `orderBy` says otherwise.",
        extensions=guard(COOP),
    )

    availability = root_page(
        "availability",
        AvailabilityWindow,
        sort=queries.AVAILABILITY_SORT,
        filters=filters.ROOT_AVAILABILITY,
        arguments=(
            *PAGING,
            Argument(
                "pa_id",
                Annotated[
                    strawberry.ID | None,
                    strawberry.argument(description="Only this PA's windows. " + HIDDEN_ID),
                ],
            ),
            Argument(
                "pool_id",
                Annotated[
                    strawberry.ID | None,
                    strawberry.argument(
                        description="Only windows of the PAs in this pool. " + HIDDEN_ID
                    ),
                ],
            ),
            Argument(
                "starts_from",
                Annotated[
                    dt.datetime | None,
                    strawberry.argument(
                        description="Only windows that end after this time. " + RANGE_NOTE
                    ),
                ],
            ),
            Argument(
                "starts_before",
                Annotated[
                    dt.datetime | None,
                    strawberry.argument(description="Only windows that start before this time."),
                ],
            ),
        ),
        description="PA availability windows, for one PA or one pool.",
        extensions=guard(COOP),
    )

    absences = root_page(
        "absence",
        Absence,
        sort=queries.ABSENCE_SORT,
        filters=filters.ABSENCES,
        arguments=(
            *PAGING,
            Argument(
                "pa_id",
                Annotated[
                    strawberry.ID | None,
                    strawberry.argument(description="Only this PA's absences. " + HIDDEN_ID),
                ],
            ),
            Argument(
                "starts_from",
                Annotated[
                    dt.datetime | None,
                    strawberry.argument(
                        description="Only absences that end after this time. " + RANGE_NOTE
                    ),
                ],
            ),
            Argument(
                "starts_before",
                Annotated[
                    dt.datetime | None,
                    strawberry.argument(description="Only absences that start before this time."),
                ],
            ),
            Argument(
                "include_cancelled",
                Annotated[bool, strawberry.argument(description="Include cancelled absences too.")],
                False,
            ),
        ),
        description=(
            "A PA's absences: the PA's own, every absence for admins, and for coordinators "
            "those of the PAs on their clusters' teams."
        ),
        extensions=guard(COOP),
    )

    cover_requests = root_page(
        "cover_request",
        CoverRequest,
        orders=queries.COVER_REQUEST_ORDERS,
        filters=filters.COVER_REQUESTS,
        arguments=(
            *PAGING,
            Argument(
                "cluster_id",
                Annotated[
                    strawberry.ID | None,
                    strawberry.argument(
                        description="Only requests for visits to the service users of this "
                        "cluster. " + HIDDEN_ID
                    ),
                ],
            ),
            Argument(
                "status",
                Annotated[
                    list[CoverRequestStatus] | None,
                    strawberry.argument(description="Only requests in one of these statuses."),
                ],
            ),
            Argument(
                "visit_starts_from",
                Annotated[
                    dt.datetime | None,
                    strawberry.argument(
                        description="Only requests whose visit starts at or after this time. "
                        "Give a UTC offset."
                    ),
                ],
            ),
            Argument(
                "order_by",
                Annotated[
                    CoverRequestOrder,
                    strawberry.argument(description="The order of the results." + ORDER_NOTE),
                ],
                CoverRequestOrder.VISIT_START_ASC,
            ),
        ),
        description="Cover requests by visit time, soonest first, unless `orderBy` says otherwise.",
        extensions=guard(COOP),
    )

    my_cover_offers = root_page(
        "cover_offer",
        CoverOffer,
        sort=queries.MY_COVER_OFFER_SORT,
        mine=queries.my_open_offers,
        arguments=PAGING,
        description="The signed-in PA's open (unexpired) cover offers.",
        extensions=guard(PAS),
    )

    partnerships = root_list(
        "partnership",
        Partnership,
        order=(PartnershipRow.id,),
        description="This instance's partnerships with other co-ops' instances, in every "
        "status, oldest first (admins). See docs/federation.md, section 8.",
        extensions=guard(ADMINS),
    )

    referrals = root_page(
        "referral",
        Referral,
        sort=queries.REFERRAL_SORT,
        filters=filters.REFERRALS,
        arguments=(
            *PAGING,
            Argument(
                "local_authority",
                Annotated[
                    str | None,
                    strawberry.argument(
                        description="Only referrals in this local authority, by its GSS code "
                        "(e.g. E09000003)."
                    ),
                ],
            ),
            Argument(
                "district",
                Annotated[
                    str | None,
                    strawberry.argument(
                        description="Only referrals in this postcode district (e.g. N12; case "
                        "and spaces ignored). A value that is not a district matches nothing."
                    ),
                ],
            ),
            Argument(
                "status",
                Annotated[
                    ReferralStatus | None,
                    strawberry.argument(description="Only referrals in this status."),
                ],
            ),
        ),
        description="People waiting for care (referrals), in the order they were recorded, "
        "oldest first: every referral for admins; for coordinators those in the local "
        "authority of a cluster they support (not closed) or a neighbouring one. Rows, "
        "totalCount and cursors follow the same rule.",
        extensions=guard(MANAGING),
    )
