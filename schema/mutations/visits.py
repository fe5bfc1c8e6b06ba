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
from schema.context import Info
from schema.errors import VISIT, VisitError
from schema.mutations.base import PA_ID, SERVICE_USER_ID, VISIT_ID, Ids, mutation, perform
from schema.permissions import MANAGING, PAS, RECIPIENTS
from schema.types import Visit, load_visit

# A change to one visit: (session, viewer, visit id) -> visit id.
VisitAction = Callable[[AsyncSession, Viewer, int], Awaitable[int]]


@strawberry.input(
    description="A visit to book. Without a PA it is booked as needing cover. "
    "Times without an offset are UK (Europe/London) times."
)
class ScheduleVisitInput:
    service_user_id: strawberry.ID
    starts_at: dt.datetime
    ends_at: dt.datetime
    pa_id: strawberry.ID | None = None
    tasks: list[str] | None = None


@strawberry.input(
    description="Weekly visits at the UK wall-clock time of the first one, "
    "which stays the same when the clocks change. At most 26 weeks."
)
class ScheduleRecurringVisitsInput:
    service_user_id: strawberry.ID
    first_starts_at: dt.datetime
    duration_minutes: int
    weekdays: list[int] = strawberry.field(description="ISO weekdays: 1 = Monday, 7 = Sunday.")
    until: dt.date = strawberry.field(description="Last day of the series (inclusive).")
    pa_id: strawberry.ID | None = None
    tasks: list[str] | None = None


@strawberry.input
class RescheduleVisitInput:
    starts_at: dt.datetime
    ends_at: dt.datetime


@strawberry.input
class ConfirmVisitInput:
    took_place: bool = strawberry.field(
        default=True, description="False reports that the visit did not happen (MISSED)."
    )


@strawberry.type
class VisitPayload:
    visit: Visit | None
    errors: list[VisitError]


@strawberry.type
class RecurringVisitsPayload:
    visits: list[Visit]
    series_id: str | None = strawberry.field(description="Shared by every visit of the series.")
    errors: list[VisitError]


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
    async def schedule_visit(self, info: Info, input: ScheduleVisitInput) -> VisitPayload | None:
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
        self, info: Info, input: ScheduleRecurringVisitsInput
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

    @mutation(access=MANAGING, description="Move a scheduled visit or one needing cover.")
    async def reschedule_visit(
        self, info: Info, id: strawberry.ID, input: RescheduleVisitInput
    ) -> VisitPayload | None:
        return await _change(
            info,
            id,
            lambda s, v, vid: service.reschedule_visit(s, v, vid, input.starts_at, input.ends_at),
        )

    @mutation(access=MANAGING, description="Cancel a visit; the PA's time becomes free again.")
    async def cancel_visit(
        self,
        info: Info,
        id: strawberry.ID,
        reason: Annotated[
            str | None,
            strawberry.argument(description="Why (at most 500 characters); kept with the visit."),
        ] = None,
    ) -> VisitPayload | None:
        return await _change(info, id, lambda s, v, vid: service.cancel_visit(s, v, vid, reason))

    @mutation(
        access=MANAGING, description="Give a visit a PA (or another PA); it becomes SCHEDULED."
    )
    async def assign_visit_pa(
        self, info: Info, id: strawberry.ID, pa_id: strawberry.ID
    ) -> VisitPayload | None:
        ids = Ids()
        pa = ids.one(pa_id, PA_ID, "paId")
        return await _change(
            info, id, lambda s, v, vid: service.assign_visit_pa(s, v, vid, pa), ids
        )

    @mutation(
        access=RECIPIENTS,
        description="Confirm that a visit took place (or did not): only by "
        "the person who received it or a linked carer.",
    )
    async def confirm_visit(
        self, info: Info, id: strawberry.ID, input: ConfirmVisitInput | None = None
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
    async def check_in_visit(self, info: Info, id: strawberry.ID) -> VisitPayload | None:
        return await _change(info, id, service.check_in_visit)
