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
from strawberry import relay

from care.errors import DomainError
from care.services import visits as service
from care.services.visits import Booking, SeriesBooking
from care.viewer import Viewer
from schema.context import Info
from schema.errors import VisitError, VisitErrorCode, to_errors
from schema.mutations.runner import run_mutation
from schema.permissions import id_or_error, require_coop_member
from schema.types import Visit, load_visit

# A change to one visit: (session, viewer, visit id) -> visit id.
VisitAction = Callable[[AsyncSession, Viewer, int], Awaitable[int]]


@strawberry.input(
    description="A visit to book. Without a PA it is booked as needing cover. "
    "Times without an offset are UK (Europe/London) times."
)
class ScheduleVisitInput:
    service_user_id: relay.GlobalID
    starts_at: dt.datetime
    ends_at: dt.datetime
    pa_id: relay.GlobalID | None = None
    tasks: list[str] | None = None


@strawberry.input(
    description="Weekly visits at the UK wall-clock time of the first one, "
    "which stays the same when the clocks change. At most 26 weeks."
)
class ScheduleRecurringVisitsInput:
    service_user_id: relay.GlobalID
    first_starts_at: dt.datetime
    duration_minutes: int
    weekdays: list[int] = strawberry.field(description="ISO weekdays: 1 = Monday, 7 = Sunday.")
    until: dt.date = strawberry.field(description="Last day of the series (inclusive).")
    pa_id: relay.GlobalID | None = None
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


def _optional_pa(global_id: relay.GlobalID | None, errors: list[DomainError]) -> int | None:
    if global_id is None:
        return None
    return id_or_error(global_id, "PersonalAssistant", "personal assistant", "paId", errors)


async def _payload(info: Info, visit_id: int | None, errors: list[DomainError]) -> VisitPayload:
    visit = await load_visit(info, visit_id) if visit_id is not None and not errors else None
    return VisitPayload(visit=visit, errors=to_errors(VisitError, VisitErrorCode, errors))


async def _series_payload(
    info: Info, result: tuple[str, list[int]] | None, errors: list[DomainError]
) -> RecurringVisitsPayload:
    series_id, ids = result if result is not None and not errors else (None, [])
    loaded = await asyncio.gather(*(load_visit(info, i) for i in ids))  # one batched query
    return RecurringVisitsPayload(
        visits=[v for v in loaded if v is not None],
        series_id=series_id,
        errors=to_errors(VisitError, VisitErrorCode, errors),
    )


async def _change(
    info: Info, id: relay.GlobalID, action: VisitAction, errors: list[DomainError] | None = None
) -> VisitPayload:
    """Decode the visit id and run one change to it (unless an argument was already bad)."""
    errors = errors if errors is not None else []
    visit_id = id_or_error(id, "Visit", "visit", "id", errors)
    if errors:
        return await _payload(info, None, errors)
    result, errors = await run_mutation(info, lambda s, v: action(s, v, visit_id))
    return await _payload(info, result, errors)


@strawberry.type
class VisitMutations:
    @strawberry.mutation(description="Book a visit (admins and the person's coordinators).")
    async def schedule_visit(self, info: Info, input: ScheduleVisitInput) -> VisitPayload:
        require_coop_member(info.context.viewer)
        errors: list[DomainError] = []
        booking = Booking(
            service_user_id=id_or_error(
                input.service_user_id, "ServiceUser", "service user", "serviceUserId", errors
            ),
            pa_id=_optional_pa(input.pa_id, errors),
            starts_at=input.starts_at,
            ends_at=input.ends_at,
            tasks=list(input.tasks or []),
        )
        if errors:
            return await _payload(info, None, errors)
        visit_id, errors = await run_mutation(
            info, lambda s, v: service.schedule_visit(s, v, booking)
        )
        return await _payload(info, visit_id, errors)

    @strawberry.mutation(
        description="Book a weekly series, all or nothing: if any visit "
        "would clash, nothing is booked and the clashing dates are listed."
    )
    async def schedule_recurring_visits(
        self, info: Info, input: ScheduleRecurringVisitsInput
    ) -> RecurringVisitsPayload:
        require_coop_member(info.context.viewer)
        errors: list[DomainError] = []
        series = SeriesBooking(
            service_user_id=id_or_error(
                input.service_user_id, "ServiceUser", "service user", "serviceUserId", errors
            ),
            pa_id=_optional_pa(input.pa_id, errors),
            first_starts_at=input.first_starts_at,
            duration_minutes=input.duration_minutes,
            weekdays=list(input.weekdays),
            until=input.until,
            tasks=list(input.tasks or []),
        )
        if errors:
            return await _series_payload(info, None, errors)
        result, errors = await run_mutation(
            info, lambda s, v: service.schedule_recurring_visits(s, v, series)
        )
        return await _series_payload(info, result, errors)

    @strawberry.mutation(description="Move a scheduled visit or one needing cover.")
    async def reschedule_visit(
        self, info: Info, id: relay.GlobalID, input: RescheduleVisitInput
    ) -> VisitPayload:
        require_coop_member(info.context.viewer)
        return await _change(
            info,
            id,
            lambda s, v, vid: service.reschedule_visit(s, v, vid, input.starts_at, input.ends_at),
        )

    @strawberry.mutation(description="Cancel a visit; the PA's time becomes free again.")
    async def cancel_visit(
        self,
        info: Info,
        id: relay.GlobalID,
        reason: Annotated[
            str | None,
            strawberry.argument(description="Why (at most 500 characters); kept with the visit."),
        ] = None,
    ) -> VisitPayload:
        require_coop_member(info.context.viewer)
        return await _change(info, id, lambda s, v, vid: service.cancel_visit(s, v, vid, reason))

    @strawberry.mutation(description="Give a visit a PA (or another PA); it becomes SCHEDULED.")
    async def assign_visit_pa(
        self, info: Info, id: relay.GlobalID, pa_id: relay.GlobalID
    ) -> VisitPayload:
        require_coop_member(info.context.viewer)
        errors: list[DomainError] = []
        pa = id_or_error(pa_id, "PersonalAssistant", "personal assistant", "paId", errors)
        return await _change(
            info, id, lambda s, v, vid: service.assign_visit_pa(s, v, vid, pa), errors
        )

    @strawberry.mutation(
        description="Confirm that a visit took place (or did not): only by "
        "the person who received it or a linked carer."
    )
    async def confirm_visit(
        self, info: Info, id: relay.GlobalID, input: ConfirmVisitInput | None = None
    ) -> VisitPayload:
        require_coop_member(info.context.viewer)
        took_place = input.took_place if input is not None else True
        return await _change(
            info, id, lambda s, v, vid: service.confirm_visit(s, v, vid, took_place)
        )

    @strawberry.mutation(
        description="Optional check-in by the visit's PA, from an hour "
        "before the start to the end. Nothing requires it."
    )
    async def check_in_visit(self, info: Info, id: relay.GlobalID) -> VisitPayload:
        require_coop_member(info.context.viewer)
        return await _change(info, id, service.check_in_visit)
