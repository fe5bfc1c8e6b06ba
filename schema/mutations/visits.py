"""Visit mutations: book (one-off or weekly series), reschedule, cancel, assign a PA,
confirm (by the person who received the visit) and the PA's optional check-in. The rules
live in `care.services.visits`; this module decodes ids and inputs and builds payloads."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Awaitable, Callable
from typing import Annotated

import strawberry
from sqlalchemy.ext.asyncio import AsyncSession

from care.services import visits as service
from care.services.visits import Booking, SeriesBooking
from care.viewer import Viewer
from federation import exchange
from schema.context import Info
from schema.errors import VISIT, VisitError
from schema.mutations.base import PA_ID, SERVICE_USER_ID, VISIT_ID, Ids, mutation, perform
from schema.permissions import MANAGING, PAS, RECIPIENTS
from schema.types import Visit, load_visit

# A change to one visit: (session, viewer, visit id) -> visit id.
VisitAction = Callable[[AsyncSession, Viewer, int], Awaitable[int]]

VisitIdArg = Annotated[strawberry.ID, strawberry.argument(description="The visit's id.")]


@strawberry.input(
    description="A visit to book. Without a PA it is booked as needing cover, with an "
    "open cover request (reason UNASSIGNED). "
    "Times without an offset are UK (Europe/London) times."
)
class ScheduleVisitInput:
    service_user_id: strawberry.ID = strawberry.field(description="The person the visit is for.")
    starts_at: dt.datetime = strawberry.field(
        description="Start; not in the past. ISO 8601; without an offset, UK (Europe/London) time."
    )
    ends_at: dt.datetime = strawberry.field(
        description="End; after startsAt, at most 24 hours later. ISO 8601; without an "
        "offset, UK (Europe/London) time."
    )
    pa_id: strawberry.ID | None = strawberry.field(
        default=None,
        description="The PA: on the team of one of the person's clusters or in a pool "
        "serving one. Left out: the visit needs cover (a cover request opens).",
    )
    tasks: list[str] | None = strawberry.field(
        default=None, description="What the PA is to do. Left out: none."
    )


@strawberry.input(
    description="Weekly visits at the UK wall-clock time of the first one, "
    "which stays the same when the clocks change. At most 26 weeks."
)
class ScheduleRecurringVisitsInput:
    service_user_id: strawberry.ID = strawberry.field(description="The person the visits are for.")
    first_starts_at: dt.datetime = strawberry.field(
        description="Start of the first visit; its UK wall-clock time is every visit's. "
        "ISO 8601; without an offset, UK (Europe/London) time."
    )
    duration_minutes: int = strawberry.field(
        description="Length of each visit in minutes (elapsed time), at most 1440."
    )
    weekdays: list[int] = strawberry.field(description="ISO weekdays: 1 = Monday, 7 = Sunday.")
    until: dt.date = strawberry.field(description="Last day of the series (inclusive).")
    pa_id: strawberry.ID | None = strawberry.field(
        default=None,
        description="The PA for every visit. Left out: they all need cover (a cover request each).",
    )
    tasks: list[str] | None = strawberry.field(
        default=None, description="What the PA is to do at each visit. Left out: none."
    )


@strawberry.input(description="A visit's new times.")
class RescheduleVisitInput:
    starts_at: dt.datetime = strawberry.field(
        description="New start; not in the past. ISO 8601; without an offset, UK "
        "(Europe/London) time."
    )
    ends_at: dt.datetime = strawberry.field(
        description="New end; after startsAt, at most 24 hours later. ISO 8601; without an "
        "offset, UK (Europe/London) time."
    )


@strawberry.input(description="What the person says about a visit they received.")
class ConfirmVisitInput:
    took_place: bool = strawberry.field(
        default=True, description="False reports that the visit did not happen (MISSED)."
    )


@strawberry.type(description="The result of a visit mutation.")
class VisitPayload:
    visit: Visit | None = strawberry.field(
        description="The visit as it now is; null when errors is non-empty."
    )
    errors: list[VisitError] = strawberry.field(
        description="Why nothing was changed; empty means the change was committed."
    )


@strawberry.type(description="The result of booking a weekly series of visits.")
class RecurringVisitsPayload:
    visits: list[Visit] = strawberry.field(
        description="The visits booked, as the caller may see them; empty when errors is non-empty."
    )
    series_id: str | None = strawberry.field(
        description="Shared by every visit of the series; null when errors is non-empty."
    )
    errors: list[VisitError] = strawberry.field(
        description="Why nothing was booked (each clashing date listed); empty means the "
        "series was committed."
    )


async def _payload(info: Info, visit_id: int | None, errors: list[VisitError]) -> VisitPayload:
    visit = await load_visit(info, visit_id) if visit_id is not None else None
    return VisitPayload(visit=visit, errors=errors)


async def _series_payload(
    info: Info, result: tuple[str, list[int]] | None, errors: list[VisitError]
) -> RecurringVisitsPayload:
    series_id, visit_ids = result if result is not None else (None, [])
    loaded = await asyncio.gather(*(load_visit(info, i) for i in visit_ids))  # one query
    return RecurringVisitsPayload(
        visits=[v for v in loaded if v is not None], series_id=series_id, errors=errors
    )


async def _change(
    info: Info, id: strawberry.ID, action: VisitAction, ids: Ids | None = None
) -> VisitPayload | None:
    """Decode the visit id and run one change to it (unless an argument was already bad)."""
    ids = ids if ids is not None else Ids()
    visit_id = ids.one(id, VISIT_ID, "id")
    return await perform(info, VISIT, lambda s, v: action(s, v, visit_id), _payload, ids)


@strawberry.type
class VisitMutations:
    @mutation(access=MANAGING, description="Book a visit (admins and the person's coordinators).")
    async def schedule_visit(
        self,
        info: Info,
        input: Annotated[ScheduleVisitInput, strawberry.argument(description="The visit to book.")],
    ) -> VisitPayload | None:
        ids = Ids()
        booking = Booking(
            service_user_id=ids.one(input.service_user_id, SERVICE_USER_ID, "serviceUserId"),
            pa_id=ids.optional(input.pa_id, PA_ID, "paId"),
            starts_at=input.starts_at,
            ends_at=input.ends_at,
            tasks=list(input.tasks or []),
        )
        return await perform(
            info, VISIT, lambda s, v: service.schedule_visit(s, v, booking), _payload, ids
        )

    @mutation(
        access=MANAGING,
        description="Book a weekly series, all or nothing: if any visit "
        "would clash, nothing is booked and the clashing dates are listed.",
    )
    async def schedule_recurring_visits(
        self,
        info: Info,
        input: Annotated[
            ScheduleRecurringVisitsInput, strawberry.argument(description="The series to book.")
        ],
    ) -> RecurringVisitsPayload | None:
        ids = Ids()
        series = SeriesBooking(
            service_user_id=ids.one(input.service_user_id, SERVICE_USER_ID, "serviceUserId"),
            pa_id=ids.optional(input.pa_id, PA_ID, "paId"),
            first_starts_at=input.first_starts_at,
            duration_minutes=input.duration_minutes,
            weekdays=list(input.weekdays),
            until=input.until,
            tasks=list(input.tasks or []),
        )
        return await perform(
            info,
            VISIT,
            lambda s, v: service.schedule_recurring_visits(s, v, series),
            _series_payload,
            ids,
        )

    @mutation(
        access=MANAGING,
        description="Move a scheduled visit or one needing cover. Not one a partner co-op "
        "is asked to cover or covers (CLOSED): cancel that partner cover first.",
    )
    async def reschedule_visit(
        self,
        info: Info,
        id: VisitIdArg,
        input: Annotated[RescheduleVisitInput, strawberry.argument(description="The new times.")],
    ) -> VisitPayload | None:
        return await _change(
            info,
            id,
            lambda s, v, vid: service.reschedule_visit(s, v, vid, input.starts_at, input.ends_at),
        )

    @mutation(
        access=MANAGING,
        description="Cancel a visit; the PA's time becomes free again. A partner co-op "
        "asked to cover it, or covering it, is told (its cover is cancelled).",
    )
    async def cancel_visit(
        self,
        info: Info,
        id: VisitIdArg,
        reason: Annotated[
            str | None,
            strawberry.argument(description="Why (at most 500 characters); kept with the visit."),
        ] = None,
    ) -> VisitPayload | None:
        async def cancel(s: AsyncSession, v: Viewer, vid: int) -> int:
            done = await service.cancel_visit(s, v, vid, reason)
            # A partner asked for, or booked for, this visit is told it is off.
            await exchange.settle_locally(s, v, done, "The co-op cancelled the visit.")
            return done

        return await _change(info, id, cancel)

    @mutation(
        access=MANAGING,
        description="Give a visit a PA (or another PA); it becomes SCHEDULED. A partner "
        "co-op asked to cover it, or covering it, is told (its cover is cancelled).",
    )
    async def assign_visit_pa(
        self,
        info: Info,
        id: VisitIdArg,
        pa_id: Annotated[strawberry.ID, strawberry.argument(description="The PA's id.")],
    ) -> VisitPayload | None:
        ids = Ids()
        pa = ids.one(pa_id, PA_ID, "paId")

        async def assign(s: AsyncSession, v: Viewer, vid: int) -> int:
            done = await service.assign_visit_pa(s, v, vid, pa)
            await exchange.settle_locally(s, v, done, "A PA of the co-op was given the visit.")
            return done

        return await _change(info, id, assign, ids)

    @mutation(
        access=RECIPIENTS,
        description="Confirm that a visit took place (or did not): only by "
        "the person who received it or a linked carer.",
    )
    async def confirm_visit(
        self,
        info: Info,
        id: VisitIdArg,
        input: Annotated[
            ConfirmVisitInput | None,
            strawberry.argument(description="Left out: the visit took place."),
        ] = None,
    ) -> VisitPayload | None:
        took_place = input.took_place if input is not None else True
        return await _change(
            info, id, lambda s, v, vid: service.confirm_visit(s, v, vid, took_place)
        )

    @mutation(
        access=PAS,
        description="Optional check-in by the visit's PA, from an hour "
        "before the start to the end. Nothing requires it.",
    )
    async def check_in_visit(self, info: Info, id: VisitIdArg) -> VisitPayload | None:
        return await _change(info, id, service.check_in_visit)
