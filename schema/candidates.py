"""Ranked cover candidates: `coverCandidates(visitId, first)`.

The search and its rules live in `care.candidates` (documented in docs/cover.md); this
module checks who may ask, maps domain refusals to top-level errors and builds the types.
"""

from __future__ import annotations

from typing import Annotated

import strawberry
from graphql import GraphQLError

from care.candidates import Candidate, find_cover_candidates
from care.errors import DomainError, ErrorCode
from schema.context import Info
from schema.permissions import MANAGING, decode_id, guard
from schema.types import PersonalAssistant, load_member

DEFAULT_CANDIDATES = 10


@strawberry.type(
    description=(
        "What each preference added to a candidate's score: the part (between 0 and 1) "
        "times the co-op's weight for it. The score is their sum."
    )
)
class CandidateScoreParts:
    continuity: float = strawberry.field(
        description="Visits to this person in the last 8 weeks (8 or more: the whole part)."
    )
    regular_pa: float = strawberry.field(description="A named regular PA of this person.")
    same_cluster: float = strawberry.field(
        description="On the team of a cluster this person belongs to."
    )
    same_pool: float = strawberry.field(
        description="In a pool serving one of this person's clusters."
    )
    travel: float = strawberry.field(
        description="1 - distance / the PA's travel limit; 0 when a location is unknown."
    )
    contract_hours: float = strawberry.field(
        description="Share of the PA's contracted weekly hours not yet booked that week."
    )
    fairness: float = strawberry.field(
        description="1 / (1 + cover requests the PA filled in the last 28 days)."
    )


@strawberry.type(description="A PA who could take a visit, with the score and why.")
class CoverCandidate:
    source: str = strawberry.field(
        description='Where the candidate comes from: "LOCAL" for this co-op\'s own PAs.'
    )
    score: float = strawberry.field(description="Sum of the weighted parts; higher is better.")
    parts: CandidateScoreParts = strawberry.field(
        description="Each preference's weighted part of the score."
    )
    distance_km: float | None = strawberry.field(
        description="From the PA's home to the person; null when a location is unknown."
    )
    visits_to_person_last_8_weeks: int = strawberry.field(
        description="Completed or scheduled visits this PA made to the person in 8 weeks."
    )
    is_regular_pa: bool = strawberry.field(
        description="Whether the PA is one of the person's named regular PAs."
    )
    same_cluster: bool = strawberry.field(
        description="Whether the PA is on the team of a cluster the person belongs to."
    )
    same_pool: bool = strawberry.field(
        description="Whether the PA is in a pool serving one of the person's clusters."
    )
    hours_in_week: float = strawberry.field(
        description=(
            "Hours of visits the PA already has in the 7 days centred on this visit "
            "(the Working Time window), not counting this visit."
        )
    )
    contracted_weekly_hours: float = strawberry.field(
        description="Hours a week in the PA's contract (0 when none)."
    )
    covers_last_28_days: int = strawberry.field(
        description="Cover requests this PA filled in the last 28 days."
    )
    pa_id: strawberry.Private[int]

    @strawberry.field(description="The PA.")
    async def pa(self, info: Info) -> PersonalAssistant:
        member = await load_member(info, self.pa_id)
        if not isinstance(member, PersonalAssistant):
            # The search returns only PAs the caller may see: this would be a bug.
            raise GraphQLError("The candidate could not be loaded.")
        return member


def _candidate(c: Candidate) -> CoverCandidate:
    p = c.parts
    return CoverCandidate(
        source=c.source,
        score=c.score,
        parts=CandidateScoreParts(
            continuity=p.continuity,
            regular_pa=p.regular_pa,
            same_cluster=p.same_cluster,
            same_pool=p.same_pool,
            travel=p.travel,
            contract_hours=p.contract_hours,
            fairness=p.fairness,
        ),
        distance_km=c.distance_km,
        visits_to_person_last_8_weeks=c.visits_to_person_last_8_weeks,
        is_regular_pa=c.is_regular_pa,
        same_cluster=c.same_cluster,
        same_pool=c.same_pool,
        hours_in_week=c.hours_in_week,
        contracted_weekly_hours=c.contracted_weekly_hours,
        covers_last_28_days=c.covers_last_28_days,
        pa_id=c.pa_id,
    )


@strawberry.type
class CandidateQueries:
    @strawberry.field(
        description=(
            "PAs who could cover a visit, best first, each with the score and its parts "
            "(rules and weights: docs/cover.md). For admins, and coordinators of a cluster "
            "the visit's person belongs to. The visit's current PA is never a candidate."
        ),
        extensions=guard(MANAGING),
    )
    async def cover_candidates(
        self,
        info: Info,
        visit_id: Annotated[
            strawberry.ID,
            strawberry.argument(
                description="The visit to cover. One unknown or hidden from the caller is "
                "a NOT_FOUND error; one they see but do not manage, FORBIDDEN."
            ),
        ],
        first: Annotated[
            int | None,
            strawberry.argument(description="How many candidates at most: 1 to 100."),
        ] = DEFAULT_CANDIDATES,
    ) -> list[CoverCandidate]:
        viewer = info.context.viewer
        limit = info.context.limits.max_page_size
        if first is None:
            first = DEFAULT_CANDIDATES
        if first < 1 or first > limit:
            raise GraphQLError(
                f"`first` must be between 1 and {limit}.", extensions={"code": "BAD_USER_INPUT"}
            )
        visit = decode_id(visit_id, "Visit")
        try:
            if visit is None:
                raise DomainError(ErrorCode.NOT_FOUND, "No visit with that id.", "visitId")
            found = await find_cover_candidates(info.context.rows, viewer, visit, first)
        except DomainError as e:
            raise GraphQLError(e.message, extensions={"code": e.code.value}) from e
        return [_candidate(c) for c in found]
