"""Availability mutations: one-off windows and weekly patterns of a PA."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

import strawberry

from care import queries
from care.services import availability as service
from schema.context import Info
from schema.errors import AVAILABILITY, AvailabilityError
from schema.mutations.base import PA_ID, WINDOW_ID, Ids, mutation, perform
from schema.permissions import ROTA
from schema.types import AvailabilityWindow, availability_from_row


@strawberry.input(description="A period when a PA is free to work (at most 24 hours).")
class AddAvailabilityWindowInput:
    pa_id: strawberry.ID = strawberry.field(description="The PA's id.")
    starts_at: dt.datetime = strawberry.field(
        description="ISO 8601 with its UTC offset (required: a time without one is INVALID)."
    )
    ends_at: dt.datetime = strawberry.field(
        description="ISO 8601 with its UTC offset; after startsAt and in the future."
    )
    merge: bool = strawberry.field(
        default=False,
        description="Join windows this overlaps or touches into one, instead of failing.",
    )


@strawberry.input(description="A weekly slot in local (Europe/London) wall-clock time.")
class WeeklySlotInput:
    weekday: int = strawberry.field(description="ISO weekday: 1 = Monday ... 7 = Sunday.")
    start_time: dt.time = strawberry.field(
        description="Local start time, without an offset (e.g. 08:00)."
    )
    end_time: dt.time = strawberry.field(
        description="Local end time, without an offset; after startTime, the same day."
    )


@strawberry.input(description="A PA's weekly availability; it replaces their patterns.")
class SetWeeklyAvailabilityInput:
    pa_id: strawberry.ID = strawberry.field(description="The PA's id.")
    slots: list[WeeklySlotInput] = strawberry.field(
        description="An empty list clears the PA's weekly availability."
    )
    valid_from: dt.date | None = strawberry.field(default=None, description="Default: today.")
    valid_until: dt.date | None = strawberry.field(
        default=None,
        description="Last day the pattern applies (inclusive). Left out: open-ended.",
    )


@strawberry.type(description="A weekly slot in local (Europe/London) wall-clock time.")
class WeeklySlot:
    weekday: int = strawberry.field(description="ISO weekday: 1 = Monday ... 7 = Sunday.")
    start_time: dt.time = strawberry.field(description="Local start time (Europe/London).")
    end_time: dt.time = strawberry.field(description="Local end time (Europe/London).")


@strawberry.type(description="The result of adding or removing an availability window.")
class AvailabilityPayload:
    window: AvailabilityWindow | None = strawberry.field(
        description="The window added (merged, when merge joined others); null when errors "
        "is non-empty, and after a removal."
    )
    removed_id: strawberry.ID | None = strawberry.field(
        description="The id of the window removed by removeAvailabilityWindow; null "
        "otherwise and when errors is non-empty."
    )
    errors: list[AvailabilityError] = strawberry.field(
        description="Why nothing was changed; empty means the change was committed."
    )


@strawberry.type(description="The result of setting a PA's weekly availability.")
class WeeklyAvailabilityPayload:
    slots: list[WeeklySlot] | None = strawberry.field(
        description="The weekly pattern now in force; null when errors is non-empty."
    )
    valid_from: dt.date | None = strawberry.field(
        description="First day the pattern applies; null when errors is non-empty."
    )
    valid_until: dt.date | None = strawberry.field(
        description="Last day the pattern applies (inclusive); null when open-ended or when "
        "errors is non-empty."
    )
    windows_created: int | None = strawberry.field(
        description="Windows expanded from the pattern up to the horizon (8 weeks ahead); null "
        "when errors is non-empty."
    )
    windows_skipped: int | None = strawberry.field(
        description="Dates left out because the PA already has a window overlapping them; "
        "null when errors is non-empty."
    )
    errors: list[AvailabilityError] = strawberry.field(
        description="Why nothing was changed; empty means the change was committed."
    )


async def _window_payload(
    info: Info, window_id: int | None, errors: list[AvailabilityError]
) -> AvailabilityPayload:
    window = None
    if window_id is not None:
        rows = await info.context.rows(queries.availability_by_id(info.context.viewer, [window_id]))
        window = availability_from_row(rows[0]) if rows else None
    return AvailabilityPayload(window=window, removed_id=None, errors=errors)


async def _weekly_payload(
    info: Info, result: service.WeeklyResult | None, errors: list[AvailabilityError]
) -> WeeklyAvailabilityPayload:
    if result is None:
        return WeeklyAvailabilityPayload(
            slots=None,
            valid_from=None,
            valid_until=None,
            windows_created=None,
            windows_skipped=None,
            errors=errors,
        )
    return WeeklyAvailabilityPayload(
        slots=[
            WeeklySlot(weekday=s.weekday, start_time=s.start_time, end_time=s.end_time)
            for s in result.slots
        ],
        valid_from=result.valid_from,
        valid_until=result.valid_until,
        windows_created=result.created,
        windows_skipped=result.skipped,
        errors=[],
    )


@strawberry.type
class AvailabilityMutations:
    @mutation(
        access=ROTA,
        description="Add a one-off availability window (the PA themselves, "
        "admins, and coordinators of a cluster whose team the PA is on).",
    )
    async def add_availability_window(
        self,
        info: Info,
        input: Annotated[
            AddAvailabilityWindowInput, strawberry.argument(description="The window to add.")
        ],
    ) -> AvailabilityPayload | None:
        ids = Ids()
        pa_id = ids.one(input.pa_id, PA_ID, "paId")
        return await perform(
            info,
            AVAILABILITY,
            lambda s, v: service.add_window(
                s, v, pa_id, input.starts_at, input.ends_at, merge=input.merge
            ),
            _window_payload,
            ids,
        )

    @mutation(
        access=ROTA,
        description="Remove an availability window; one from a weekly "
        "pattern becomes an exception to it.",
    )
    async def remove_availability_window(
        self,
        info: Info,
        id: Annotated[strawberry.ID, strawberry.argument(description="The window's id.")],
    ) -> AvailabilityPayload | None:
        ids = Ids()
        window_id = ids.one(id, WINDOW_ID, "id")

        async def removed(
            info: Info, result: int | None, errors: list[AvailabilityError]
        ) -> AvailabilityPayload:
            removed_id = strawberry.ID(str(id)) if result is not None else None
            return AvailabilityPayload(window=None, removed_id=removed_id, errors=errors)

        return await perform(
            info, AVAILABILITY, lambda s, v: service.remove_window(s, v, window_id), removed, ids
        )

    @mutation(
        access=ROTA,
        description="Replace a PA's weekly availability and expand it into "
        "windows over the coming weeks.",
    )
    async def set_weekly_availability(
        self,
        info: Info,
        input: Annotated[
            SetWeeklyAvailabilityInput, strawberry.argument(description="The new weekly pattern.")
        ],
    ) -> WeeklyAvailabilityPayload | None:
        ids = Ids()
        pa_id = ids.one(input.pa_id, PA_ID, "paId")
        slots = [service.Slot(s.weekday, s.start_time, s.end_time) for s in input.slots]
        return await perform(
            info,
            AVAILABILITY,
            lambda s, v: service.set_weekly_availability(
                s, v, pa_id, slots, input.valid_from, input.valid_until
            ),
            _weekly_payload,
            ids,
        )
