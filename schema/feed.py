"""Availability sharing between partner co-ops (docs/federation.md, section 9).

Partner-facing: `peerAvailabilityFeed`, this instance's changes for the calling partner.
Member-facing: `partnerAvailability` (the windows received from partners) and
`syncPartner` (pull one partner's feed now)."""

from __future__ import annotations

import datetime as dt
from enum import Enum
from typing import Annotated, Any

import strawberry
from graphql import GraphQLError
from sqlalchemy import Select, func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine
from strawberry import relay

from care.enums import PartnershipStatus
from care.models import LocalAuthority
from care.models import Partnership as PartnershipRow
from care.models import PartnerWindow as ReceivedWindow
from care.paging import page
from federation.client import PartnerErrorCode
from federation.feed import (
    FEED_DEFAULT_PAGE,
    FEED_MAX_PAGE,
    BadFeedCursor,
    FeedChange,
    Tombstone,
    read_feed,
)
from federation.feed import SharedPa as FeedSharedPa
from federation.sync import SyncBusy, SyncNotAllowed, sync_partner
from schema.connection import (
    AfterArg,
    BeforeArg,
    Connection,
    FirstArg,
    LastArg,
    build_connection,
    decode_cursor,
    encode_cursor,
    page_request,
)
from schema.context import DEFAULT_PAGE_SIZE, Info
from schema.mutations.base import mutation
from schema.permissions import ADMINS, MANAGING, PARTNER_AVAILABILITY, decode_id, guard
from schema.scalars import TimeRange
from schema.types import PartnerLocalAuthority, Partnership, load_partnership

# --- the feed (partner-facing) -------------------------------------------------------

FeedRemoval = strawberry.enum(  # type: ignore[call-overload]
    Enum(  # type: ignore[misc]
        "FeedRemoval",
        {
            Tombstone.REMOVED.value: strawberry.enum_value(
                Tombstone.REMOVED.value, description="The window was deleted."
            ),
            Tombstone.ENDED.value: strawberry.enum_value(
                Tombstone.ENDED.value, description="The window is over."
            ),
            Tombstone.FILLED.value: strawberry.enum_value(
                Tombstone.FILLED.value,
                description="Visits, absences or holds now take all of the window.",
            ),
            Tombstone.NOT_SHARED.value: strawberry.enum_value(
                Tombstone.NOT_SHARED.value,
                description="Its PA is no longer in a pool shared with partners, or no "
                "longer active.",
            ),
        },
    ),
    name="FeedRemoval",
    description="Why a window is withdrawn from the feed (a tombstone): delete it.",
)


@strawberry.type(description="A skill of a shared PA, with the date it lapses.")
class SharedSkill:
    skill: str = strawberry.field(description="The skill's name as the co-op records it.")
    expires_on: dt.date | None = strawberry.field(
        description="The last day the skill is valid; null when it does not lapse."
    )


@strawberry.type(
    description="A shared PA as the partner may see it, once per page that offers any of "
    "its windows: pseudonymous, with skills, postcode district and travel range only."
)
class SharedPa:
    ref: str = strawberry.field(
        description="The PA's pseudonymous reference: stable, different for each partner, "
        "not a sequence number (the `paRef` of its windows)."
    )
    skills: list[SharedSkill] = strawberry.field(
        description="The PA's skills that have not lapsed, by name."
    )
    district: str | None = strawberry.field(
        description="The postcode district (outward code, e.g. N12) the PA lives in; null "
        "when unknown."
    )
    travel_km: float | None = strawberry.field(description="How far the PA will travel, in km.")


@strawberry.type(
    description="One availability window as the partner may see it now: offered (`removed` "
    "null: replace whatever you hold for `ref` with this) or withdrawn (a tombstone: delete "
    "`ref`). Only these fields, and the page's `pas`, ever leave the co-op."
)
class AvailabilityChange:
    ref: str = strawberry.field(
        description="The window's pseudonymous reference: stable, different for each "
        "partner, not a sequence number."
    )
    removed: FeedRemoval | None = strawberry.field(  # type: ignore[valid-type]
        description="Null when the window is offered; why it is withdrawn otherwise."
    )
    pa_ref: str | None = strawberry.field(
        description="The PA's pseudonymous reference, described in the page's `pas`; null on "
        "a tombstone."
    )
    free: list[TimeRange] = strawberry.field(  # type: ignore[valid-type]
        description="The window's free periods (the window minus visits, absences and "
        "holds), earliest first; empty on a tombstone."
    )


@strawberry.type(description="A page of the availability feed, in commit order.")
class AvailabilityFeedPage:
    changes: list[AvailabilityChange] = strawberry.field(
        description="The windows that changed after `after`, each once, in commit order."
    )
    pas: list[SharedPa] = strawberry.field(
        description="The PA of every window the page offers, each once."
    )
    cursor: str = strawberry.field(
        description="Opaque position after this page: pass it as `after` next time (the "
        "same position when the page is empty)."
    )
    has_more: bool = strawberry.field(
        description="More changes are ready now: ask again at once with `cursor`."
    )


def _feed_change(change: FeedChange) -> AvailabilityChange:
    return AvailabilityChange(
        ref=change.ref,
        removed=FeedRemoval(change.tombstone.value) if change.tombstone else None,
        pa_ref=change.pa_ref,
        free=list(change.free),  # type: ignore[arg-type]
    )


def _shared_pa(pa: FeedSharedPa) -> SharedPa:
    return SharedPa(
        ref=pa.ref,
        skills=[SharedSkill(skill=s.skill, expires_on=s.expires_on) for s in pa.skills],
        district=pa.district,
        travel_km=pa.travel_km,
    )


def bad_feed_cursor() -> GraphQLError:
    return GraphQLError(
        "Invalid cursor: pass a cursor this feed returned.",
        extensions={"code": "BAD_USER_INPUT", "argument": "after"},
    )


# --- received windows (member-facing) --------------------------------------------------


@strawberry.type(
    description="A partner co-op, as its manifest describes it: what marks everything "
    "received from it."
)
class PartnerCoop:
    id: strawberry.ID = strawberry.field(
        description="The partnership's global id (`Partnership:<id>`)."
    )
    name: str | None = strawberry.field(description="The partner co-op's name.")
    base_url: str = strawberry.field(description="The partner instance's base URL.")
    home_local_authority: PartnerLocalAuthority | None = strawberry.field(
        description="The partner co-op's home local authority."
    )
    last_sync_at: dt.datetime | None = strawberry.field(
        description="When a page of its availability feed was last applied."
    )


@strawberry.type(
    description="A free period of a partner co-op's PA, as its availability feed gave it."
)
class PartnerAvailabilityWindow:
    partner: PartnerCoop = strawberry.field(description="The co-op that offers it.")
    pa_ref: str = strawberry.field(
        description="The partner's pseudonymous reference for the PA (stable; the same PA "
        "in every window)."
    )
    window_ref: str = strawberry.field(
        description="The partner's pseudonymous reference for the availability window."
    )
    skills: list[SharedSkill] = strawberry.field(
        description="The PA's skills as the partner sent them (with lapse dates)."
    )
    district: str | None = strawberry.field(
        description="The PA's postcode district (outward code), if the partner knows it."
    )
    travel_km: float = strawberry.field(description="How far the PA will travel, in km.")
    start: dt.datetime = strawberry.field(description="When the free time starts (UTC).")
    end: dt.datetime = strawberry.field(description="When the free time ends (UTC, exclusive).")


@strawberry.input(description="Which partner windows to list; every filter given applies.")
class PartnerAvailabilityFilter:
    skill: str | None = strawberry.field(
        default=None,
        description="Only PAs with this skill (exact name) not lapsed by the window's start.",
    )
    district: str | None = strawberry.field(
        default=None, description="Only PAs in this postcode district (e.g. N12; any case)."
    )
    from_: dt.datetime | None = strawberry.field(
        default=None,
        name="from",
        description="Only free time that ends after this instant (give a UTC offset).",
    )
    to: dt.datetime | None = strawberry.field(
        default=None,
        description="Only free time that starts before this instant (give a UTC offset).",
    )
    partnership_id: strawberry.ID | None = strawberry.field(
        default=None, description="Only this partnership's windows (`Partnership:<id>`)."
    )


# The partner's home local authority's name: from its manifest, else our own records.
HOME_LA_NAME = text(
    "(SELECT e->>'name' FROM jsonb_array_elements(partnership.local_authorities) e "
    "WHERE e->>'gssCode' = partnership.home_la_code LIMIT 1)"
)


def partner_windows(
    filter_: PartnerAvailabilityFilter | None, partnership_id: int | None
) -> tuple[Select, list[Any]]:
    """The received windows of ACTIVE partnerships still to come, with their partner, and
    the sort keys (start, then a unique key)."""
    sort_id = func.concat(
        ReceivedWindow.partnership_id, ":", ReceivedWindow.ref, ":", ReceivedWindow.period
    )
    stmt = (
        select(
            ReceivedWindow.partnership_id,
            ReceivedWindow.ref,
            ReceivedWindow.pa_ref,
            ReceivedWindow.skills,
            ReceivedWindow.district,
            ReceivedWindow.travel_km,
            func.lower(ReceivedWindow.during).label("starts"),
            func.upper(ReceivedWindow.during).label("ends"),
            PartnershipRow.coop_name,
            PartnershipRow.base_url,
            PartnershipRow.home_la_code,
            PartnershipRow.last_sync_at,
            func.coalesce(HOME_LA_NAME, LocalAuthority.name).label("home_la_name"),
        )
        .join(PartnershipRow, PartnershipRow.id == ReceivedWindow.partnership_id)
        .outerjoin(LocalAuthority, LocalAuthority.gss_code == PartnershipRow.home_la_code)
        .where(
            PartnershipRow.status == PartnershipStatus.ACTIVE.value,
            func.upper(ReceivedWindow.during) > func.now(),
        )
    )
    f = filter_ or PartnerAvailabilityFilter()
    if partnership_id is not None:
        stmt = stmt.where(ReceivedWindow.partnership_id == partnership_id)
    if f.district:
        stmt = stmt.where(ReceivedWindow.district == f.district.strip().upper())
    if f.from_ is not None or f.to is not None:
        stmt = stmt.where(ReceivedWindow.during.op("&&")(func.tstzrange(f.from_, f.to)))
    if f.skill:
        # The GIN index finds the windows naming the skill; the expiry is checked on them.
        stmt = stmt.where(
            ReceivedWindow.skills.op("@>")(
                func.jsonb_build_array(func.jsonb_build_object("skill", f.skill))
            ),
            text(
                "EXISTS (SELECT 1 FROM jsonb_array_elements(partner_window.skills) s "
                "WHERE s->>'skill' = :skill_name AND (s->>'expiresOn' IS NULL "
                "OR CAST(s->>'expiresOn' AS date) >= CAST(lower(partner_window.during) "
                "AT TIME ZONE 'Europe/London' AS date)))"
            ).bindparams(skill_name=f.skill),
        )
    return stmt, [func.lower(ReceivedWindow.during), sort_id]


def _skills(raw: Any) -> list[SharedSkill]:
    out = []
    for item in raw or ():
        expires = item.get("expiresOn")
        out.append(
            SharedSkill(
                skill=str(item.get("skill")),
                expires_on=dt.date.fromisoformat(expires) if expires else None,
            )
        )
    return out


def partner_coop_from_row(r: Any, partnership_id: int) -> PartnerCoop:
    return PartnerCoop(
        id=strawberry.ID(relay.to_base64("Partnership", partnership_id)),
        name=r.coop_name,
        base_url=r.base_url,
        home_local_authority=PartnerLocalAuthority(
            gss_code=r.home_la_code, name=r.home_la_name or r.home_la_code
        )
        if r.home_la_code
        else None,
        last_sync_at=r.last_sync_at,
    )


def partner_window_from_row(r: Any) -> PartnerAvailabilityWindow:
    return PartnerAvailabilityWindow(
        partner=partner_coop_from_row(r, r.partnership_id),
        pa_ref=r.pa_ref,
        window_ref=r.ref,
        skills=_skills(r.skills),
        district=r.district,
        travel_km=float(r.travel_km),
        start=r.starts,
        end=r.ends,
    )


# --- root fields -----------------------------------------------------------------------

FeedAfter = Annotated[
    str | None,
    strawberry.argument(
        description="The `cursor` of the last page applied; from the start when omitted."
    ),
]
FeedFirst = Annotated[
    int | None,
    strawberry.argument(
        description=f"Changes per page: 1 to {FEED_MAX_PAGE}; {FEED_DEFAULT_PAGE} when omitted."
    ),
]


@strawberry.type
class FeedQueries:
    @strawberry.field(
        description="This co-op's availability changes for the calling partner (an ACTIVE "
        "partnership granting AVAILABILITY), in commit order from `after`: windows of PAs "
        "in shared pools, pseudonymous, and tombstones for windows withdrawn. "
        "See docs/federation.md, section 9.",
        extensions=guard(PARTNER_AVAILABILITY),
    )
    async def peer_availability_feed(
        self, info: Info, after: FeedAfter = None, first: FeedFirst = FEED_DEFAULT_PAGE
    ) -> AvailabilityFeedPage:
        size = FEED_DEFAULT_PAGE if first is None else first
        if not 1 <= size <= FEED_MAX_PAGE:
            raise GraphQLError(
                f"`first` must be between 1 and {FEED_MAX_PAGE}.",
                extensions={"code": "BAD_USER_INPUT", "argument": "first"},
            )
        position = None
        if after:
            (position,) = decode_cursor(after, 1)
            if not isinstance(position, str):
                raise bad_feed_cursor()
        partnership_id = info.context.viewer.partnership_id
        assert partnership_id is not None  # the access rule admitted an ACTIVE partnership
        async with info.context.database():
            key = await info.context.session.scalar(
                select(PartnershipRow.pseudonym_key).where(PartnershipRow.id == partnership_id)
            )
            if key is None:
                raise GraphQLError("You may not ask for this.", extensions={"code": "FORBIDDEN"})
            try:
                page = await read_feed(info.context.session, key, position, size)
            except BadFeedCursor:
                raise bad_feed_cursor() from None
        return AvailabilityFeedPage(
            changes=[_feed_change(c) for c in page.changes],
            pas=[_shared_pa(p) for p in page.pas],
            cursor=encode_cursor([page.cursor]),
            has_more=page.has_more,
        )

    @strawberry.field(
        description="Free time of partner co-ops' PAs, as their availability feeds gave it "
        "(ACTIVE partnerships only, free time still to come), earliest first; each marked "
        "with its co-op and that co-op's local authority.",
        extensions=guard(MANAGING),
    )
    async def partner_availability(
        self,
        info: Info,
        filter: Annotated[  # noqa: A002 - the GraphQL argument's name
            PartnerAvailabilityFilter | None,
            strawberry.argument(description="Which windows; all when omitted."),
        ] = None,
        first: FirstArg = DEFAULT_PAGE_SIZE,
        after: AfterArg = None,
        last: LastArg = None,
        before: BeforeArg = None,
    ) -> Connection[PartnerAvailabilityWindow]:
        request = page_request(info, first, after, last, before, arity=2)
        partnership_id = None
        if filter is not None and filter.partnership_id is not None:
            partnership_id = decode_id(filter.partnership_id, "Partnership") or -1
        stmt, keys = partner_windows(filter, partnership_id)
        rows = await info.context.rows(page(stmt, keys, request))
        return build_connection(rows, request, partner_window_from_row, arity=2)


# --- syncPartner -----------------------------------------------------------------------


@strawberry.enum(description="Why `syncPartner` did not (fully) sync.")
class SyncProblemCode(Enum):
    NOT_FOUND = strawberry.enum_value(
        "NOT_FOUND", description="No such partnership (or a malformed id)."
    )
    NOT_ACTIVE = strawberry.enum_value(
        "NOT_ACTIVE",
        description="The partnership is not ACTIVE or does not grant AVAILABILITY.",
    )
    BUSY = strawberry.enum_value(
        "BUSY", description="A sync of this partnership is running already: try later."
    )
    PARTNER_UNREACHABLE = strawberry.enum_value(
        "PARTNER_UNREACHABLE", description="The partner instance did not answer."
    )
    PARTNER_REFUSED = strawberry.enum_value(
        "PARTNER_REFUSED", description="The partner refused our request (see the message)."
    )
    PARTNER_ERROR = strawberry.enum_value(
        "PARTNER_ERROR",
        description="The partner's answer was wrong: not signed by its keys, an error, or "
        "not a valid feed page.",
    )


@strawberry.type(
    description="Why a sync did not (fully) happen. Its codes are the partner's failures, not "
    "the co-op's payload error codes (schema/errors.py): nothing of ours was refused."
)
class SyncProblem:
    field: str | None = strawberry.field(
        description="The input field at fault, or null when about the sync as a whole."
    )
    message: str = strawberry.field(description="What went wrong, in words for a person.")
    code: SyncProblemCode = strawberry.field(description="What went wrong, for a program.")


@strawberry.input(description="Which partner's availability feed to pull now.")
class SyncPartnerInput:
    partnership_id: strawberry.ID = strawberry.field(
        description="The partnership (`Partnership:<id>`)."
    )


@strawberry.type(
    description="What a sync did: pages applied before an error stay applied (each page "
    "with its cursor in one transaction)."
)
class SyncPartnerPayload:
    partnership: Partnership | None = strawberry.field(
        description="The partnership, after the sync (its lastSyncAt, lastContactAt, "
        "lastError); null when not found."
    )
    changes_applied: int = strawberry.field(
        description="Window changes (offers and tombstones) applied by this sync."
    )
    errors: list[SyncProblem] = strawberry.field(
        description="Why the sync did not (fully) happen; empty when it reached the end of "
        "the partner's feed."
    )


PARTNER_CODES = {
    PartnerErrorCode.UNREACHABLE: SyncProblemCode.PARTNER_UNREACHABLE,
    PartnerErrorCode.REFUSED: SyncProblemCode.PARTNER_REFUSED,
}


@strawberry.type
class FeedMutations:
    @mutation(
        access=ADMINS,
        description="Pull a partner's availability feed now, from where the last sync "
        "stopped (the schedule does this every FEDERATION_SYNC_SECONDS).",
    )
    async def sync_partner(
        self,
        info: Info,
        input: Annotated[  # noqa: A002 - the GraphQL argument's name
            SyncPartnerInput, strawberry.argument(description="Which partnership.")
        ],
    ) -> SyncPartnerPayload | None:
        partnership_id = decode_id(input.partnership_id, "Partnership")
        if partnership_id is None:
            return SyncPartnerPayload(
                partnership=None,
                changes_applied=0,
                errors=[
                    SyncProblem(
                        field="partnershipId",
                        message="No such partnership.",
                        code=SyncProblemCode.NOT_FOUND,
                    )
                ],
            )
        engine = info.context.session.bind
        client = info.context.federation
        errors: list[SyncProblem] = []
        applied = 0
        if not isinstance(engine, AsyncEngine) or client is None:
            errors.append(
                SyncProblem(
                    field=None,
                    message="Federation is not running here.",
                    code=SyncProblemCode.PARTNER_UNREACHABLE,
                )
            )
        else:
            try:
                outcome = await sync_partner(engine, client, partnership_id)
            except SyncBusy:
                errors.append(
                    SyncProblem(
                        field=None,
                        message="A sync of this partnership is running already.",
                        code=SyncProblemCode.BUSY,
                    )
                )
            except SyncNotAllowed:
                errors.append(
                    SyncProblem(
                        field="partnershipId",
                        message="The partnership is not ACTIVE with AVAILABILITY granted.",
                        code=SyncProblemCode.NOT_ACTIVE,
                    )
                )
            else:
                applied = outcome.changes_applied
                if outcome.error is not None:
                    errors.append(
                        SyncProblem(
                            field=None,
                            message=outcome.error.summary(),
                            code=PARTNER_CODES.get(
                                outcome.error.code, SyncProblemCode.PARTNER_ERROR
                            ),
                        )
                    )
        # The request's own session reads after the sync's commits.
        async with info.context.database():
            await info.context.session.rollback()
        info.context.clear_loaders()
        found = await load_partnership(info, partnership_id)
        if found is None:
            errors = [
                SyncProblem(
                    field="partnershipId",
                    message="No such partnership.",
                    code=SyncProblemCode.NOT_FOUND,
                )
            ]
        return SyncPartnerPayload(partnership=found, changes_applied=applied, errors=errors)
