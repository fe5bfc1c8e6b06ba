"""Ranked cover candidates: `coverCandidates(visitId, first, includePartners)`.

The search and its rules live in `care.candidates` (documented in docs/cover.md); this
module checks the arguments, maps domain refusals to top-level errors and builds the types.
Our PAs and partner co-ops' PAs are distinct types of one interface: a partner's PA is
never presented as one of ours.
"""

from __future__ import annotations

import datetime as dt
from enum import Enum
from typing import Annotated, Any

import strawberry
from graphql import GraphQLError
from strawberry import relay

from care.candidates import (
    COVER_GAP_ORDER,
    EXCLUSION_RULES,
    AnyCandidate,
    Candidate,
    Exclusion,
    LeftOut,
    Partner,
    PartnerCandidate,
    ScoreParts,
    find_cover_candidates,
)
from care.errors import DomainError, ErrorCode
from schema import filters
from schema.context import Info
from schema.feed import PartnerCoop, SharedSkill
from schema.permissions import MANAGING, decode_id, guard
from schema.rows import REQUIRED, Argument
from schema.types import (
    CoverGap,
    PartnerLocalAuthority,
    PersonalAssistant,
    load_member,
    root_list,
)

DEFAULT_CANDIDATES = 10


@strawberry.type(
    description=(
        "What each preference added to a candidate's score: the part (between 0 and 1) "
        "times the co-op's weight for it. The score is their sum."
    )
)
class CandidateScoreParts:
    continuity: float = strawberry.field(
        description="Visits to this person in the last 8 weeks (8 or more: the whole part); "
        "for a partner's PA, confirmed exchanges in which they covered the person."
    )
    regular_pa: float = strawberry.field(
        description="A named regular PA of this person (0 for a partner's PA)."
    )
    same_cluster: float = strawberry.field(
        description="On the team of a cluster this person belongs to (0 for a partner's PA)."
    )
    same_pool: float = strawberry.field(
        description="In a pool serving one of this person's clusters; a partner's PA is in "
        "a pool its co-op shares with us, and counts as such."
    )
    travel: float = strawberry.field(
        description="1 - distance / the PA's travel limit; 0 when a location is unknown."
    )
    contract_hours: float = strawberry.field(
        description="Share of the PA's contracted weekly hours not yet booked that week "
        "(0 for a partner's PA: not shared)."
    )
    fairness: float = strawberry.field(
        description="1 / (1 + cover requests of ours the PA filled in the last 28 days)."
    )


def _parts(p: ScoreParts) -> CandidateScoreParts:
    return CandidateScoreParts(
        continuity=p.continuity,
        regular_pa=p.regular_pa,
        same_cluster=p.same_cluster,
        same_pool=p.same_pool,
        travel=p.travel,
        contract_hours=p.contract_hours,
        fairness=p.fairness,
    )


@strawberry.interface(
    description="A PA who could take a visit, with the score and why: one of this co-op's "
    "(`LocalCoverCandidate`) or a partner co-op's (`PartnerCoverCandidate`). Both are "
    "scored with this co-op's weights, on one scale."
)
class CoverCandidate:
    source: str = strawberry.field(
        description='Where the candidate comes from: "LOCAL" for this co-op\'s own PAs, '
        '"PARTNER" for a partner co-op\'s.'
    )
    score: float = strawberry.field(description="Sum of the weighted parts; higher is better.")
    parts: CandidateScoreParts = strawberry.field(
        description="Each preference's weighted part of the score."
    )
    distance_km: float | None = strawberry.field(
        description="From the PA's home (a partner's PA: the centre of their postcode "
        "district) to the person; null when a location is unknown."
    )
    visits_to_person_last_8_weeks: int = strawberry.field(
        description="Completed or scheduled visits this PA made to the person in 8 weeks; "
        "for a partner's PA, confirmed exchanges in which they covered the person."
    )
    covers_last_28_days: int = strawberry.field(
        description="Cover requests of ours this PA filled in the last 28 days."
    )


@strawberry.type(description="One of this co-op's PAs as a cover candidate.")
class LocalCoverCandidate(CoverCandidate):
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
    pa_id: strawberry.Private[int]

    @strawberry.field(description="The PA.")
    async def pa(self, info: Info) -> PersonalAssistant:
        member = await load_member(info, self.pa_id)
        if not isinstance(member, PersonalAssistant):
            # The search returns only PAs the caller may see: this would be a bug.
            raise GraphQLError("The candidate could not be loaded.")
        return member


@strawberry.type(
    description="A partner co-op's PA as a cover candidate, from the availability the "
    "partner shares with us: known only by the partner's pseudonymous reference. Ask for "
    "cover with `requestPartnerCover` (its `partnership.id` and `paRef`)."
)
class PartnerCoverCandidate(CoverCandidate):
    partnership: PartnerCoop = strawberry.field(
        description="The partner co-op (`id` is the partnership's global id)."
    )
    coop_name: str | None = strawberry.field(description="The partner co-op's name.")
    local_authority: PartnerLocalAuthority | None = strawberry.field(
        description="The partner co-op's home local authority."
    )
    pa_ref: str = strawberry.field(
        description="The partner's pseudonymous reference for the PA (stable; never one of "
        "our member ids)."
    )
    district: str | None = strawberry.field(
        description="The PA's postcode district (outward code), if the partner shares it."
    )
    skills: list[SharedSkill] = strawberry.field(
        description="The PA's skills as the partner shared them, with lapse dates."
    )
    travel_km: float = strawberry.field(description="How far the PA will travel, in km.")
    last_sync_at: dt.datetime | None = strawberry.field(
        description="When the partner's availability was last synced: the candidate is as "
        "fresh as that."
    )


LeftOutReason = strawberry.enum(  # type: ignore[call-overload]
    Enum(  # type: ignore[misc]
        "LeftOutReason",
        {
            "TIMED_OUT": strawberry.enum_value(
                "TIMED_OUT",
                description="It did not answer within its time limit "
                "(COVER_SOURCE_TIMEOUT_SECONDS).",
            ),
            "FAILED": strawberry.enum_value("FAILED", description="It failed."),
        },
    ),
    name="LeftOutReason",
    description="Why a source of candidates is missing from an answer.",
)


@strawberry.type(description="A source of candidates the answer goes without.")
class LeftOutSource:
    source: str = strawberry.field(
        description='Which source: "PARTNER" for a partner co-op (see `partnership`).'
    )
    partnership: PartnerCoop | None = strawberry.field(
        description="The partner co-op, when the source is one."
    )
    reason: LeftOutReason = strawberry.field(  # type: ignore[valid-type]
        description="Why it is left out."
    )


_RULE_DESCRIPTIONS = {
    "NO_AVAILABILITY": "No availability window of the PA contains the whole visit.",
    "OVERLAP": "A scheduled or completed visit of the PA overlaps it.",
    "ABSENT": "An absence of the PA (not cancelled) overlaps it.",
    "HELD_FOR_PARTNER": "The PA's time is held for a partner co-op's cover request.",
    "MISSING_SKILL": "A need of the person the PA has no skill of that name for "
    "(see `missingSkills`).",
    "EXPIRED_SKILL": "A need whose skill the PA has, but lapsed before the visit's date "
    "(see `expiredSkills`).",
    "DBS_OUT_OF_DATE": "No DBS check, or one older than the co-op's dbs_valid_months on "
    "the visit's date.",
    "TOO_FAR": "The PA's home is further from the person than the PA will travel.",
    "WEEKLY_HOURS_LIMIT": "With this visit the PA would work more than the co-op's weekly "
    "hours in the 7 days centred on it (and has not opted out).",
    "DAILY_REST": "Too little rest (the co-op's min_daily_rest_hours) between the visit's "
    "working day and the day before or after.",
    "INACTIVE": "The PA is not an active member.",
    "CURRENT_PA": "The PA already has the visit.",
}
assert set(_RULE_DESCRIPTIONS) == set(EXCLUSION_RULES)

ExclusionRule = strawberry.enum(  # type: ignore[call-overload]
    Enum(  # type: ignore[misc]
        "ExclusionRule",
        {
            name: strawberry.enum_value(name, description=_RULE_DESCRIPTIONS[name])
            for name in EXCLUSION_RULES
        },
    ),
    name="ExclusionRule",
    description="A hard rule of the cover candidate search that rules a PA out "
    '(docs/cover.md, "Hard rules").',
)


@strawberry.interface(
    description="A PA the cover rules set aside for a visit, with the hard rules they fail "
    '(docs/cover.md, "Hard rules").'
)
class RuledOutPa:
    rules: list[ExclusionRule] = strawberry.field(  # type: ignore[valid-type]
        description="The hard rules the PA fails, in the order of the rules; empty when "
        "the PA was set aside for another reason (see SkippedPa.reason)."
    )
    missing_skills: list[str] = strawberry.field(
        description="The person's needs the PA has no skill for (MISSING_SKILL)."
    )
    expired_skills: list[str] = strawberry.field(
        description="The person's needs whose skill the PA holds but lapsed before the "
        "visit's date (EXPIRED_SKILL)."
    )
    pa_id: strawberry.Private[int]


def ruled_out_fields(e: Exclusion | None, pa_id: int) -> dict[str, Any]:
    """The `RuledOutPa` fields of an exclusion (none: no rule failed)."""
    return {
        "rules": [ExclusionRule(r) for r in e.rules] if e else [],
        "missing_skills": list(e.missing_skills) if e else [],
        "expired_skills": list(e.expired_skills) if e else [],
        "pa_id": pa_id,
    }


@strawberry.type(
    description="One of this co-op's PAs who is not a candidate for the visit, and every "
    "hard rule they fail (at least one)."
)
class ExcludedCandidate(RuledOutPa):
    @strawberry.field(description="The PA.")
    async def pa(self, info: Info) -> PersonalAssistant:
        member = await load_member(info, self.pa_id)
        if not isinstance(member, PersonalAssistant):
            # The check returns only PAs the caller may see: this would be a bug.
            raise GraphQLError("The PA could not be loaded.")
        return member


def excluded_candidate(e: Exclusion) -> ExcludedCandidate:
    return ExcludedCandidate(**ruled_out_fields(e, e.pa_id))


@strawberry.type(description="How many PAs a rule ruled out.")
class ExclusionRuleCount:
    rule: ExclusionRule = strawberry.field(  # type: ignore[valid-type]
        description="The rule."
    )
    pas: int = strawberry.field(description="PAs who fail it (a PA may fail several rules).")


def rule_counts(exclusions: list[Exclusion]) -> list[ExclusionRuleCount]:
    """PAs per rule, in the order of the rules, leaving out rules nobody fails."""
    return [
        ExclusionRuleCount(rule=ExclusionRule(rule), pas=n)
        for rule in EXCLUSION_RULES
        if (n := sum(rule in e.rules for e in exclusions))
    ]


@strawberry.type(
    description="Cover candidates for a visit, best first, from every source that "
    "answered in time, and the sources left out."
)
class CoverCandidateList:
    candidates: list[CoverCandidate] = strawberry.field(
        description="At most `first` candidates, best first: score, then distance (unknown "
        "last), then our own PAs before partners'."
    )
    left_out: list[LeftOutSource] = strawberry.field(
        description="Sources that failed or ran out of time: their PAs are missing. Empty "
        "when every source answered."
    )
    excluded: list[ExcludedCandidate] | None = strawberry.field(
        default=None,
        description="With `includeExcluded`: the PAs on the teams of the person's clusters "
        "and in the pools serving them who are not candidates, by PA id, each with the "
        "rules they fail. Null when not asked for. Partner co-ops' PAs are never listed.",
    )
    excluded_by_rule: list[ExclusionRuleCount] | None = strawberry.field(
        default=None,
        description="With `includeExcluded`: how many of `excluded` each rule rules out "
        "(rules nobody fails are left out). Null when not asked for.",
    )


def _partner_coop(p: Partner) -> PartnerCoop:
    return PartnerCoop(
        id=strawberry.ID(relay.to_base64("Partnership", p.id)),
        name=p.coop_name,
        base_url=p.base_url,
        home_local_authority=_local_authority(p),
        last_sync_at=p.last_sync_at,
    )


def _local_authority(p: Partner) -> PartnerLocalAuthority | None:
    if not p.home_la_code:
        return None
    return PartnerLocalAuthority(gss_code=p.home_la_code, name=p.home_la_name or p.home_la_code)


def _candidate(c: AnyCandidate) -> CoverCandidate:
    if isinstance(c, PartnerCandidate):
        return PartnerCoverCandidate(
            source=c.source,
            score=c.score,
            parts=_parts(c.parts),
            distance_km=c.distance_km,
            visits_to_person_last_8_weeks=c.visits_to_person_last_8_weeks,
            covers_last_28_days=c.covers_last_28_days,
            partnership=_partner_coop(c.partner),
            coop_name=c.partner.coop_name,
            local_authority=_local_authority(c.partner),
            pa_ref=c.pa_ref,
            district=c.district,
            skills=[SharedSkill(skill=s.name, expires_on=s.expires_on) for s in c.skills],
            travel_km=c.travel_km,
            last_sync_at=c.partner.last_sync_at,
        )
    assert isinstance(c, Candidate)
    return LocalCoverCandidate(
        source=c.source,
        score=c.score,
        parts=_parts(c.parts),
        distance_km=c.distance_km,
        visits_to_person_last_8_weeks=c.visits_to_person_last_8_weeks,
        covers_last_28_days=c.covers_last_28_days,
        is_regular_pa=c.is_regular_pa,
        same_cluster=c.same_cluster,
        same_pool=c.same_pool,
        hours_in_week=c.hours_in_week,
        contracted_weekly_hours=c.contracted_weekly_hours,
        pa_id=c.pa_id,
    )


def _left_out(x: LeftOut) -> LeftOutSource:
    return LeftOutSource(
        source=x.source,
        partnership=_partner_coop(x.partner) if x.partner is not None else None,
        reason=LeftOutReason(x.reason),
    )


@strawberry.type
class CandidateQueries:
    @strawberry.field(
        description=(
            "PAs who could cover a visit, best first, each with the score and its parts: "
            "this co-op's PAs and, unless `includePartners` is false, partner co-ops' PAs "
            "from the availability they share (rules and weights: docs/cover.md). For "
            "admins, and coordinators of a cluster the visit's person belongs to. The "
            "visit's current PA is never a candidate."
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
        include_partners: Annotated[
            bool | None,
            strawberry.argument(
                description="Also partner co-ops' PAs (ACTIVE partnerships granting "
                "AVAILABILITY and COVER); null means true."
            ),
        ] = True,
        include_excluded: Annotated[
            bool | None,
            strawberry.argument(
                description="Also list the PAs of the person's teams and pools who are "
                "not candidates, with the rules that rule each out (`excluded`); null "
                "means false."
            ),
        ] = False,
    ) -> CoverCandidateList:
        context = info.context
        limit = context.limits.max_page_size
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
            found = await find_cover_candidates(
                context.rows,
                context.viewer,
                visit,
                first,
                include_partners=include_partners is not False,
                partner_fetch=context.rows_apart,
                source_seconds=context.limits.cover_source_seconds,
                include_excluded=include_excluded is True,
            )
        except DomainError as e:
            raise GraphQLError(e.message, extensions={"code": e.code.value}) from e
        excluded = found.excluded
        return CoverCandidateList(
            candidates=[_candidate(c) for c in found.candidates],
            left_out=[_left_out(x) for x in found.left_out],
            excluded=None if excluded is None else [excluded_candidate(e) for e in excluded],
            excluded_by_rule=None if excluded is None else rule_counts(excluded),
        )

    # Declared once for both read paths (`schema.types.root_list`): the resolver and the
    # compiled path read `care.candidates.cover_gaps_select` (which holds who may read
    # which cluster's), narrowed to the cluster by `schema.filters.COVER_GAPS` and sorted
    # by `COVER_GAP_ORDER`.
    cover_gaps = root_list(
        "cover_gap",
        CoverGap,
        order=COVER_GAP_ORDER,
        filters=filters.COVER_GAPS,
        arguments=(
            Argument(
                "cluster_id",
                Annotated[strawberry.ID, strawberry.argument(description="The cluster.")],
                REQUIRED,
            ),
        ),
        description=(
            "Needs of the people with open cover requests in a cluster (visits not over) "
            "that no active PA on the cluster's team has a skill in date for, with how "
            "many requests each affects: most first, then by name. For admins and the "
            "cluster's coordinator; an unknown cluster, or one the caller does not "
            "support, gives an empty list."
        ),
        extensions=guard(MANAGING),
    )
