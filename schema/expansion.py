"""Expansion across the boundary (docs/federation.md, section 13): where waiting demand
and PA capacity would support a new cluster, the clusters partners have opened in our
area, and the partner's notice of one (`peerClusterOpened`). Thin resolvers over
`care.expansion` and `federation.expansion`."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

import strawberry

from care import expansion
from care.errors import ErrorCode
from federation import expansion as notices
from schema.context import Info
from schema.errors import CLUSTER, ClusterError
from schema.mutations.base import mutation, perform
from schema.permissions import MANAGING, PARTNER_COVER, guard


@strawberry.type(description="How many people waiting in a district ask for one need.")
class NeedDemand:
    need: str = strawberry.field(description="The need tag, as the referrals give it.")
    people: int = strawberry.field(description="WAITING referrals in the district asking for it.")


@strawberry.type(
    description="One postcode district with people waiting for care, and the PA capacity "
    "that could serve a new cluster there (docs/federation.md, section 13, defines every "
    "figure). Hours are hours a week over the horizon asked for."
)
class ExpansionOpportunity:
    district: str = strawberry.field(description="The postcode district (outward code).")
    people_waiting: int = strawberry.field(description="WAITING referrals in the district.")
    hours_wanted: float = strawberry.field(description="Their summed hours of care a week wanted.")
    needs: list[NeedDemand] = strawberry.field(
        description="The needs asked for, most asked first (then A-Z)."
    )
    own_pas: int = strawberry.field(
        description="Our active PAs whose home is within their own maximum travel distance "
        "of the district's centroid and who have free hours in the horizon."
    )
    own_hours: float = strawberry.field(
        description="Their free hours a week: availability windows in the horizon minus "
        "the time visits, absences and partner holds take of them, divided by the weeks."
    )
    partner_pas: int = strawberry.field(
        description="Partner PAs (ACTIVE partnerships, shared pools, as synced) whose "
        "district centroid is within their travel distance of the district's centroid."
    )
    partner_hours: float = strawberry.field(
        description="Their synced free hours a week in the horizon."
    )
    median_distance_km: float | None = strawberry.field(
        description="Median distance in km from those PAs (own and partner) to the "
        "district's centroid; null when none is in reach."
    )
    our_cluster_here: bool = strawberry.field(
        description="A cluster of ours (not closed) lists the district or its circle "
        "contains the district's centroid."
    )
    partners_here: list[str] = strawberry.field(
        description="Partner co-ops that told us they opened a cluster in the district."
    )
    score: float = strawberry.field(
        description="coverage x nearness, in [0, 1] (section 13): coverage = min(1, (own "
        "hours + half the partner hours) / hours wanted); nearness = 1 - min(median km, "
        "10) / 20. 0 without capacity."
    )


@strawberry.type(
    description="A cluster a partner co-op told us it opened in one of our local "
    "authorities (public facts only)."
)
class PartnerCluster:
    ref: str = strawberry.field(description="The partner's reference for the cluster.")
    name: str = strawberry.field(description="The cluster's name.")
    local_authority: str = strawberry.field(description="Its local authority's GSS code.")
    district: str | None = strawberry.field(
        description="A postcode district it serves; null when the partner named none."
    )
    opened_at: dt.datetime = strawberry.field(description="When the partner opened it.")
    received_at: dt.datetime = strawberry.field(description="When we last heard of it.")
    partner_name: str | None = strawberry.field(
        description="The partner co-op's name, from its manifest."
    )
    partner_base_url: str = strawberry.field(description="The partner instance's base URL.")


@strawberry.type
class ExpansionQueries:
    @strawberry.field(
        description="Postcode districts of one local authority with WAITING referrals, "
        "each with demand, own and partner PA capacity, median distance and a score, "
        "ranked: districts without a cluster of ours first, then score, hours wanted, "
        "people (highest first), then district (docs/federation.md, section 13). Admins: "
        "any local authority; coordinators: one whose referrals they may see (in or next "
        "to that of a cluster they support), else no rows, as for an unknown local "
        "authority or a bad horizon.",
        extensions=guard(MANAGING),
    )
    async def expansion_opportunities(
        self,
        info: Info,
        local_authority: Annotated[
            str,
            strawberry.argument(description="The local authority, by GSS code (E09000010)."),
        ],
        horizon_weeks: Annotated[
            int,
            strawberry.argument(
                description="Weeks ahead (from now) over which free hours are counted, 1 to 12."
            ),
        ] = expansion.DEFAULT_HORIZON_WEEKS,
    ) -> list[ExpansionOpportunity]:
        async with info.context.database() as session:
            found = await expansion.expansion_opportunities(
                session, info.context.viewer, local_authority.strip().upper(), horizon_weeks
            )
        return [
            ExpansionOpportunity(
                district=o.district,
                people_waiting=o.people,
                hours_wanted=o.hours_wanted,
                needs=[NeedDemand(need=n.need, people=n.people) for n in o.needs],
                own_pas=o.own_pas,
                own_hours=o.own_hours,
                partner_pas=o.partner_pas,
                partner_hours=o.partner_hours,
                median_distance_km=o.median_distance_km,
                our_cluster_here=o.our_cluster_here,
                partners_here=o.partners_here,
                score=o.score,
            )
            for o in found
        ]

    @strawberry.field(
        description="Clusters partner co-ops told us they opened in our local authorities "
        "(their peerClusterOpened notices), newest first; admins and coordinators. Kept "
        "while the partnership is ACTIVE or SUSPENDED; deleted when it ends.",
        extensions=guard(MANAGING),
    )
    async def partner_clusters(
        self,
        info: Info,
        local_authority: Annotated[
            str | None,
            strawberry.argument(description="Only those in this local authority (GSS code)."),
        ] = None,
    ) -> list[PartnerCluster]:
        la = local_authority.strip().upper() if local_authority is not None else None
        rows = await info.context.rows(expansion.partner_clusters(info.context.viewer, la))
        return [
            PartnerCluster(
                ref=r.ref,
                name=r.name,
                local_authority=r.la_code,
                district=r.district,
                opened_at=r.opened_at,
                received_at=r.received_at,
                partner_name=r.coop_name,
                partner_base_url=r.base_url,
            )
            for r in rows
        ]


# --- the notice between instances -----------------------------------------------------------


@strawberry.input(description="A cluster the calling co-op opened in our area.")
class PeerClusterInput:
    ref: str = strawberry.field(
        description="The caller's reference for the cluster (at most 100 characters); a "
        "later notice with the same reference updates it."
    )
    name: str = strawberry.field(description="The cluster's name (at most 200 characters).")
    local_authority: str = strawberry.field(description="Its local authority's GSS code.")
    district: str | None = strawberry.field(
        default=None, description="A postcode district it serves; null: none named."
    )
    opened_at: dt.datetime = strawberry.field(
        description="When it opened (became ACTIVE), with its UTC offset."
    )


@strawberry.type(description="The receiving instance's answer to a cluster notice.")
class PeerClusterOpenedPayload:
    stored: bool = strawberry.field(
        description="true: the notice is stored (also for a repeated idempotency key)."
    )
    errors: list[ClusterError] = strawberry.field(
        description="Why the notice was refused; empty means it was taken."
    )


@strawberry.type
class ExpansionMutations:
    @mutation(
        access=PARTNER_COVER,
        description="A partner instance tells us it opened a cluster in one of our local "
        "authorities (signed call; partnerships granting COVER). Stored for our admins and "
        "coordinators (partnerClusters, expansionOpportunities). Each idempotencyKey is "
        "applied once: a repeat gets the first answer and changes nothing.",
    )
    async def peer_cluster_opened(
        self,
        info: Info,
        idempotency_key: Annotated[
            str, strawberry.argument(description="A UUID naming this message.")
        ],
        cluster: Annotated[PeerClusterInput, strawberry.argument(description="The cluster.")],
    ) -> PeerClusterOpenedPayload | None:
        notice = notices.ClusterNotice(
            ref=cluster.ref[:1000],
            name=cluster.name[:1000],
            la_code=cluster.local_authority[:100],
            district=cluster.district[:100] if cluster.district is not None else None,
            opened_at=cluster.opened_at,
        )

        async def respond(
            info: Info, answer: dict[str, Any] | None, errors: list[ClusterError]
        ) -> PeerClusterOpenedPayload:
            if any(
                e.field == notices.APPLIED_MEANWHILE
                and getattr(e.code, "value", None) == ErrorCode.CONFLICT.value
                for e in errors
            ):
                # Another copy was applied while this one ran: its answer is ours.
                async with info.context.database() as session:
                    answer = await notices.answer_of(session, info.context.viewer, idempotency_key)
                errors = []
            stored = bool(answer and answer.get("stored"))
            return PeerClusterOpenedPayload(stored=stored, errors=errors)

        return await perform(
            info,
            CLUSTER,
            lambda s, v: notices.receive_cluster_opened(s, v, idempotency_key[:100], notice),
            respond,
        )
