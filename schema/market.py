"""Market-shaping figures for councils: `marketReport` (docs/market.md).

Thin: who may ask for which local authority and every figure live in `care.market`;
disclosure control in `care.disclosure`. This module documents the measures and builds
the types."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

import strawberry
from graphql import GraphQLError
from strawberry.scalars import JSON

from care import market
from care.disclosure import Withheld
from care.errors import DomainError
from federation import market as network
from schema.context import Info
from schema.permissions import MARKET, PARTNER_MARKET_DATA, guard
from schema.types import LocalAuthority, document_enum

document_enum(
    market.Granularity,
    "How a market report splits its range.",
    {
        "MONTH": "Calendar months (London dates).",
        "QUARTER": "Calendar quarters: January-March, April-June, July-September, "
        "October-December.",
    },
)
document_enum(
    Withheld,
    "Why a figure is withheld (its value is null): disclosure control, docs/market.md.",
    {
        "SMALL_COUNT": "A count of 1 to 7 people (below `minPeople`).",
        "FEW_PEOPLE": "Hours, a median or a share that rests on fewer than `minPeople` people.",
        "SECONDARY": "Hidden so that another withheld figure cannot be worked out from "
        "a total or from the months of a quarter.",
    },
)
document_enum(
    market.Measure,
    "A figure of the market report. Visits count in the period their start falls in; "
    "people are those in a cluster of the local authority.",
    {
        "COOPS_ACTIVE": "Co-ops with visits planned in the local authority in the period "
        "(not suppressed: providers are public).",
        "CLUSTERS": "Clusters open in the period, by kind (the breakdown); not suppressed.",
        "PEOPLE_SUPPORTED": "People who had at least one visit delivered; broken down by "
        "funding type (the breakdown), and in total (no breakdown).",
        "HOURS_PLANNED": "Hours of visits planned (all but cancelled ones).",
        "HOURS_DELIVERED": "Hours of visits that took place and that the person confirmed.",
        "HOURS_MISSED": "Hours of visits missed (the PA did not come).",
        "HOURS_CANCELLED": "Hours of visits cancelled.",
        "HOURS_UNMET": "Hours of visits that still needed cover when they were due.",
        "COVER_REQUESTS_OPENED": "Cover requests opened (a visit needing another PA).",
        "COVER_REQUESTS_FILLED": "Of those, the requests now filled.",
        "COVER_FILL_RATE": "Filled / opened, between 0 and 1.",
        "MEDIAN_HOURS_TO_FILL": "Median hours from opening a request to filling it.",
        "COVER_HOURS_IMPORTED": "Hours of this local authority's visits covered by a "
        "partner co-op's PA, by the partner's local authority (the breakdown, a GSS code).",
        "COVER_HOURS_EXPORTED": "Hours PAs on teams in this local authority covered for "
        "partner co-ops, by the partner's local authority (the breakdown, a GSS code).",
        "MEDIAN_DISTINCT_PAS_PER_28_DAYS": "Median, over people and calendar months, of the "
        "number of different PAs who delivered a person's visits in the month.",
        "REGULAR_PA_SHARE": "Share of delivered visits made by one of the person's named "
        "regular PAs.",
        "PA_HEADCOUNT": "PAs on the teams of clusters in the local authority who were "
        "members at some point in the period.",
        "PA_FTE": "Their contracted hours a week / 37.5.",
        "MEDIAN_HOURLY_PAY": "Median hourly pay of those PAs on the period's last day, in pounds.",
        "LOWER_QUARTILE_HOURLY_PAY": "Lower quartile of the same, in pounds.",
        "PAS_BELOW_REAL_LIVING_WAGE": "Those PAs paid below the Real Living Wage then "
        "(the London rate in London boroughs).",
        "NATIONAL_LIVING_WAGE": "The National Living Wage (21 and over) on the period's last "
        "day, in pounds: a public reference rate.",
        "REAL_LIVING_WAGE": "The Real Living Wage on the period's last day, in pounds "
        "(breakdown LONDON for London boroughs): a public reference rate.",
        "PA_LEAVERS_LAST_12_MONTHS": "PAs on those teams who left in the 12 months up to "
        "the period's end.",
        "FREE_PA_HOURS_NEXT_4_WEEKS": "Capacity now: hours in the next 28 days that active "
        "PAs on teams in the local authority have offered and nothing yet holds.",
        "REFERRALS_WAITING": "Capacity now: referrals waiting for care in the local authority.",
        "MEDIAN_REFERRAL_WAIT_DAYS": "Capacity now: median days those referrals have waited.",
    },
)


@strawberry.type(description="One figure after disclosure control.")
class MarketFigure:
    measure: market.Measure = strawberry.field(description="What the figure measures.")
    breakdown: str | None = strawberry.field(
        description="The part of the measure (a funding type, a cluster kind, a local "
        "authority's GSS code, LONDON), or null for the whole."
    )
    value: float | None = strawberry.field(
        description="The figure; null when withheld (see `withheld`) or when there is none "
        "(a median of nothing)."
    )
    unit: str = strawberry.field(
        description="people, hours, requests, share, GBP/hour, PAs, FTE, days, co-ops..."
    )
    withheld: Withheld | None = strawberry.field(
        description="Why the value is withheld; null when it is shown."
    )
    rounded: bool = strawberry.field(
        description="True when the value is a count of people rounded to the nearest "
        "`roundingBase`."
    )


@strawberry.type(description="The figures of one month or quarter.")
class MarketPeriod:
    start: dt.date = strawberry.field(description="First day of the period.")
    end: dt.date = strawberry.field(description="Last day of the period (included).")
    figures: list[MarketFigure] = strawberry.field(description="Every figure of the period.")


@strawberry.type(description="The disclosure control applied to a report.")
class DisclosureControl:
    min_people: int = strawberry.field(
        description="Counts of 1 to minPeople - 1 people are withheld, as are figures "
        "resting on fewer than minPeople people."
    )
    rounding_base: int = strawberry.field(
        description="Other counts of people are rounded to the nearest multiple of this."
    )


@strawberry.type(
    description="What this co-op delivers in one local authority, period by period, with "
    "no personal data: every figure is an aggregate under disclosure control."
)
class MarketReport:
    local_authority: LocalAuthority = strawberry.field(description="The local authority.")
    granularity: market.Granularity = strawberry.field(description="Months or quarters.")
    periods: list[MarketPeriod] = strawberry.field(
        description="Whole periods covering the range asked for, oldest first."
    )
    capacity: list[MarketFigure] = strawberry.field(
        description="Capacity now (free PA hours in the next 4 weeks, referrals waiting)."
    )
    disclosure: DisclosureControl = strawberry.field(description="The thresholds applied.")
    generated_at: dt.datetime = strawberry.field(description="When the report was computed.")


def figure(f: market.Figure) -> MarketFigure:
    return MarketFigure(
        measure=f.measure,
        breakdown=f.breakdown,
        value=f.shown.value,
        unit=f.unit,
        withheld=f.shown.withheld,
        rounded=f.shown.rounded,
    )


def report_type(report: market.MarketReport, la_name: str) -> MarketReport:
    return MarketReport(
        local_authority=LocalAuthority(gss_code=report.la_code, name=la_name),
        granularity=report.granularity,
        periods=[
            MarketPeriod(
                start=p.start,
                end=p.end - dt.timedelta(days=1),
                figures=[figure(f) for f in p.figures],
            )
            for p in report.periods
        ],
        capacity=[figure(f) for f in report.capacity],
        disclosure=DisclosureControl(
            min_people=report.rules.min_people, rounding_base=report.rules.rounding_base
        ),
        generated_at=report.generated_at,
    )


async def build_market_report(
    info: Info, local_authority: str, start: dt.date, end: dt.date, granularity: market.Granularity
) -> MarketReport:
    """Shared by the GraphQL field and the CSV export (api/exports.py)."""
    viewer = info.context.viewer
    try:
        market.check_range(start, end)
        async with info.context.database() as session:
            la_name = await market.check_reader(session, viewer, local_authority)
            report = await market.market_report(
                session, local_authority, start, end, granularity, info.context.limits.disclosure
            )
    except market.ReportRangeError as e:
        raise GraphQLError(str(e), extensions={"code": "BAD_USER_INPUT"}) from e
    except DomainError as e:
        raise GraphQLError(e.message, extensions={"code": e.code.value}) from e
    return report_type(report, la_name)


@strawberry.type(description="A co-op whose figures a network report includes or left out.")
class MarketSource:
    name: str = strawberry.field(description="The co-op's name.")
    base_url: str = strawberry.field(description="Its instance's base URL.")
    reason: str | None = strawberry.field(
        description="Why it was left out (unreachable, too slow, refused, a bad answer); "
        "null for a co-op that answered."
    )


@strawberry.type(
    description="The market report of this co-op and every partner co-op that answered, "
    "added up before disclosure control, which is applied to the sums."
)
class NetworkMarketReport:
    report: MarketReport = strawberry.field(description="The combined, protected figures.")
    answered: list[MarketSource] = strawberry.field(
        description="The co-ops whose figures are in the sums, this one first."
    )
    left_out: list[MarketSource] = strawberry.field(
        description="Partner co-ops asked that did not answer in time or properly."
    )


def _dates(start: dt.date, end: dt.date) -> None:
    try:
        market.check_range(start, end)
    except market.ReportRangeError as e:
        raise GraphQLError(str(e), extensions={"code": "BAD_USER_INPUT"}) from e


# The arguments every market field takes (marketReport, networkMarketReport,
# peerMarketFigures), declared once.
LocalAuthorityArg = Annotated[
    str, strawberry.argument(description="The local authority's GSS code.")
]
FromArg = Annotated[dt.date, strawberry.argument(name="from", description="First day asked for.")]
ToArg = Annotated[dt.date, strawberry.argument(description="Last day asked for.")]
GranularityArg = Annotated[
    market.Granularity, strawberry.argument(description="Months or quarters.")
]


@strawberry.type
class MarketQueries:
    @strawberry.field(
        description=(
            "Market-shaping figures of this co-op for one local authority (docs/market.md): "
            "for an LA analyst of that local authority, a council's instance granted "
            "MARKET_DATA that serves it, and admins. `from` and `to` are London dates; "
            "the report covers the whole months or quarters they fall in (at most 36 "
            "months)."
        ),
        extensions=guard(MARKET),
    )
    async def market_report(
        self,
        info: Info,
        local_authority: LocalAuthorityArg,
        from_: FromArg,
        to: ToArg,
        granularity: GranularityArg = market.Granularity.MONTH,
    ) -> MarketReport:
        return await build_market_report(info, local_authority, from_, to, granularity)

    @strawberry.field(
        description=(
            "Market figures of this co-op and of every partner co-op whose partnership "
            "grants MARKET_DATA, added up and then put under disclosure control "
            "(docs/market.md). Partners are asked concurrently, each with a time limit; "
            "those that do not answer are left out and named. Same callers and arguments "
            "as marketReport."
        ),
        extensions=guard(MARKET),
    )
    async def network_market_report(
        self,
        info: Info,
        local_authority: LocalAuthorityArg,
        from_: FromArg,
        to: ToArg,
        granularity: GranularityArg = market.Granularity.MONTH,
    ) -> NetworkMarketReport:
        ctx = info.context
        _dates(from_, to)
        try:
            async with ctx.database() as session:
                found = await network.network_report(
                    session,
                    ctx.federation,
                    ctx.viewer,
                    local_authority,
                    (from_, to, granularity),
                    ctx.limits.disclosure,
                    ctx.limits.market_partner_seconds,
                )
        except DomainError as e:
            raise GraphQLError(e.message, extensions={"code": e.code.value}) from e
        return NetworkMarketReport(
            report=report_type(found.report, found.la_name),
            answered=[
                MarketSource(name=a.name, base_url=a.base_url, reason=None) for a in found.answered
            ],
            left_out=[
                MarketSource(name=src.name, base_url=src.base_url, reason=why)
                for src, why in found.left_out
            ],
        )

    @strawberry.field(
        description=(
            "For partner co-ops' instances (MARKET_DATA): this co-op's market figures for a "
            "local authority BEFORE disclosure control, as mergeable counts, sums and "
            "histograms (docs/market.md), so that the asking co-op can add them to its own "
            "and protect the sums. Never given to a council's instance (no co-op in its "
            "manifest): councils get marketReport."
        ),
        extensions=guard(PARTNER_MARKET_DATA),
    )
    async def peer_market_figures(
        self,
        info: Info,
        local_authority: LocalAuthorityArg,
        from_: FromArg,
        to: ToArg,
        granularity: GranularityArg = market.Granularity.MONTH,
    ) -> JSON:
        ctx = info.context
        _dates(from_, to)
        try:
            async with ctx.database() as session:
                figures = await network.figures_for_partner(
                    session, ctx.viewer, local_authority, from_, to, granularity
                )
        except DomainError as e:
            raise GraphQLError(e.message, extensions={"code": e.code.value}) from e
        return JSON(figures)
