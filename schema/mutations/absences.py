"""Absence and cover request mutations: record, change and cancel a PA's absence (which
opens cover requests and gives visits back), open and cancel a cover request, and the
person's report that a visit under way was missed. The rules live in
`care.services.absences` and `care.services.cover_requests`; this module declares who
may call each, decodes ids and builds payloads."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Annotated

import strawberry
from sqlalchemy.ext.asyncio import AsyncSession

from care.enums import AbsenceKind
from care.services import absences as absence_service
from care.services import cover_requests as request_service
from care.services.absences import AbsenceChange, AbsenceResult, NewAbsence
from care.services.cover_requests import MissedReport
from care.viewer import Viewer
from federation import exchange
from schema.context import Info
from schema.errors import COVER, CoverError
from schema.mutations.base import (
    ABSENCE_ID,
    COVER_REQUEST_ID,
    PA_ID,
    VISIT_ID,
    Ids,
    mutation,
    no_payload,
    perform,
)
from schema.permissions import MANAGING, RECIPIENTS, ROTA
from schema.types import (
    Absence,
    CoverRequest,
    Visit,
    load_absence,
    load_cover_request,
    load_visit,
)

AbsenceIdArg = Annotated[strawberry.ID, strawberry.argument(description="The absence's id.")]

# --- inputs and payloads -----------------------------------------------------------------


@strawberry.input(
    description="A PA's time away. Times without an offset are UK (Europe/London) times."
)
class RecordAbsenceInput:
    pa_id: strawberry.ID = strawberry.field(description="The PA who is away.")
    kind: AbsenceKind = strawberry.field(description="HOLIDAY, SICKNESS, TRAINING or OTHER.")
    starts_at: dt.datetime = strawberry.field(
        description="Start; may be in the past (an absence wholly past opens no cover "
        "requests). ISO 8601; without an offset, UK (Europe/London) time."
    )
    ends_at: dt.datetime = strawberry.field(
        description="After startsAt; at most 366 days later. ISO 8601; without an offset, "
        "UK (Europe/London) time."
    )
    note: str | None = strawberry.field(
        default=None,
        description="At most 1000 characters; read only by the PA and admins. Left out: none.",
    )


@strawberry.input(description="Move either end of an absence (shorten or extend) or its note.")
class UpdateAbsenceInput:
    starts_at: dt.datetime | None = strawberry.field(
        default=None,
        description="New start; left out (or null): unchanged. ISO 8601; without an offset, "
        "UK (Europe/London) time.",
    )
    ends_at: dt.datetime | None = strawberry.field(
        default=None,
        description="New end; left out (or null): unchanged. ISO 8601; without an offset, "
        "UK (Europe/London) time.",
    )
    note: str | None = strawberry.field(
        default=None,
        description="Replaces the note (at most 1000 characters); an empty string clears "
        "it; left out (or null): unchanged.",
    )


@strawberry.type(description="The result of recording, changing or cancelling an absence.")
class AbsencePayload:
    absence: Absence | None = strawberry.field(
        description="The absence as it now is; null when errors is non-empty."
    )
    cover_requests: list[CoverRequest] = strawberry.field(
        description="Cover requests this change opened or gave back to the PA (RETURNED), "
        "soonest visit first; only those the caller may see (a PA no longer sees a visit "
        "handed over for cover). Empty when errors is non-empty."
    )
    errors: list[CoverError] = strawberry.field(
        description="Why nothing was changed; empty means the change was committed."
    )


@strawberry.type(description="The result of opening or cancelling a cover request.")
class CoverRequestPayload:
    cover_request: CoverRequest | None = strawberry.field(
        description="The cover request as it now is; null when errors is non-empty."
    )
    errors: list[CoverError] = strawberry.field(
        description="Why nothing was changed; empty means the change was committed."
    )


@strawberry.type(description="The result of reporting that a PA has not turned up.")
class ReportVisitMissedPayload:
    visit: Visit | None = strawberry.field(
        description="The visit as it now is (needing cover, or MISSED); null when errors is "
        "non-empty."
    )
    cover_request: CoverRequest | None = strawberry.field(
        description="The request opened to save the rest of the visit; null when too little "
        "of it was left (the visit is then MISSED), and when errors is non-empty."
    )
    errors: list[CoverError] = strawberry.field(
        description="Why nothing was changed; empty means the change was committed."
    )


# --- payloads ----------------------------------------------------------------------------


async def _absence_payload(
    info: Info, result: AbsenceResult | None, errors: list[CoverError]
) -> AbsencePayload:
    if result is None:
        return AbsencePayload(absence=None, cover_requests=[], errors=errors)
    absence, *requests = await asyncio.gather(  # batched: one query per type
        load_absence(info, result.absence_id),
        *(load_cover_request(info, i) for i in result.cover_request_ids),
    )
    shown = sorted(
        (r for r in requests if isinstance(r, CoverRequest)),
        key=lambda r: (r.visit_starts_at, r.id),
    )
    return AbsencePayload(
        absence=absence if isinstance(absence, Absence) else None,
        cover_requests=shown,
        errors=[],
    )


async def _request_payload(
    info: Info, request_id: int | None, errors: list[CoverError]
) -> CoverRequestPayload:
    found = await load_cover_request(info, request_id) if request_id is not None else None
    return CoverRequestPayload(cover_request=found, errors=errors)


async def _missed_payload(
    info: Info, report: MissedReport | None, errors: list[CoverError]
) -> ReportVisitMissedPayload:
    if report is None:
        return ReportVisitMissedPayload(visit=None, cover_request=None, errors=errors)
    request_id = report.cover_request_id
    visit, request = await asyncio.gather(
        load_visit(info, report.visit_id),
        load_cover_request(info, request_id) if request_id is not None else no_payload(),
    )
    return ReportVisitMissedPayload(visit=visit, cover_request=request, errors=[])


# --- mutations ---------------------------------------------------------------------------


async def _open_request(
    session: AsyncSession, viewer: Viewer, visit_id: int, note: str | None
) -> int:
    opened = await request_service.open_cover_request(session, viewer, visit_id, note)
    # The partner covering the visit (if any) is called off.
    await exchange.settle_locally(session, viewer, visit_id, "The co-op asked for cover again.")
    return opened


async def _cancel_request(
    session: AsyncSession, viewer: Viewer, request_id: int, note: str | None
) -> int:
    done = await request_service.cancel_cover_request(session, viewer, request_id, note)
    # A partner asked to cover the visit is told it is off.
    return await exchange.settled_by_request(session, viewer, done)


@strawberry.type
class AbsenceMutations:
    @mutation(
        access=ROTA,
        description="Record a PA's absence (the PA, admins, and coordinators of a cluster "
        "whose team the PA is on). In the same "
        "transaction every scheduled visit of the PA that overlaps it and has not started "
        "needs cover: the PA is unassigned and a cover request opens for each.",
    )
    async def record_absence(
        self,
        info: Info,
        input: Annotated[
            RecordAbsenceInput, strawberry.argument(description="The absence to record.")
        ],
    ) -> AbsencePayload | None:
        ids = Ids()
        new = NewAbsence(
            pa_id=ids.one(input.pa_id, PA_ID, "paId"),
            kind=input.kind,
            starts_at=input.starts_at,
            ends_at=input.ends_at,
            note=input.note,
        )
        return await perform(
            info,
            COVER,
            lambda s, v: absence_service.record_absence(s, v, new),
            _absence_payload,
            ids,
        )

    @mutation(
        access=ROTA,
        description="Shorten or extend an absence. Visits it no longer covers go back to "
        "their PA when the PA is free (requests RETURNED); newly covered visits need cover. "
        "The note: the PA, admins, and a coordinator who recorded the absence.",
    )
    async def update_absence(
        self,
        info: Info,
        id: AbsenceIdArg,
        input: Annotated[UpdateAbsenceInput, strawberry.argument(description="What to change.")],
    ) -> AbsencePayload | None:
        ids = Ids()
        absence_id = ids.one(id, ABSENCE_ID, "id")
        change = AbsenceChange(starts_at=input.starts_at, ends_at=input.ends_at, note=input.note)
        return await perform(
            info,
            COVER,
            lambda s, v: absence_service.update_absence(s, v, absence_id, change),
            _absence_payload,
            ids,
        )

    @mutation(
        access=ROTA,
        description="Cancel an absence: visits still waiting for cover go back to their PA "
        "when the PA is free (requests RETURNED); filled requests stay filled.",
    )
    async def cancel_absence(self, info: Info, id: AbsenceIdArg) -> AbsencePayload | None:
        ids = Ids()
        absence_id = ids.one(id, ABSENCE_ID, "id")
        return await perform(
            info,
            COVER,
            lambda s, v: absence_service.cancel_absence(s, v, absence_id),
            _absence_payload,
            ids,
        )

    @mutation(
        access=MANAGING,
        description="Ask for cover for a scheduled visit that has not started "
        "(coordinators of the person, admins); a booked PA is unassigned, and a partner "
        "co-op covering it is told its cover is called off. A visit needing cover already "
        "has its open request (CONFLICT).",
    )
    async def open_cover_request(
        self,
        info: Info,
        visit_id: Annotated[strawberry.ID, strawberry.argument(description="The visit's id.")],
        note: Annotated[
            str | None, strawberry.argument(description="Why (at most 1000 characters).")
        ] = None,
    ) -> CoverRequestPayload | None:
        ids = Ids()
        vid = ids.one(visit_id, VISIT_ID, "visitId")
        return await perform(
            info,
            COVER,
            lambda s, v: _open_request(s, v, vid, note),
            _request_payload,
            ids,
        )

    @mutation(
        access=MANAGING,
        description="Stop looking for cover: the open request is CANCELLED with its open "
        "offers, and its visit is cancelled too (a visit needing cover always has an open "
        "request); a partner co-op asked to cover the visit is told it is off. To keep "
        "the visit, give it a PA (assignVisitPa) instead.",
    )
    async def cancel_cover_request(
        self,
        info: Info,
        id: Annotated[strawberry.ID, strawberry.argument(description="The cover request's id.")],
        note: Annotated[
            str | None,
            strawberry.argument(description="Why; added to the request's note."),
        ] = None,
    ) -> CoverRequestPayload | None:
        ids = Ids()
        request_id = ids.one(id, COVER_REQUEST_ID, "id")
        return await perform(
            info,
            COVER,
            lambda s, v: _cancel_request(s, v, request_id, note),
            _request_payload,
            ids,
        )

    @mutation(
        access=RECIPIENTS,
        description="The person (or a linked carer) reports that the PA has not turned up "
        "to a visit under way. With at least 15 minutes left the visit needs cover and a "
        "MISSED cover request opens; otherwise the visit is MISSED.",
    )
    async def report_visit_missed(
        self,
        info: Info,
        id: Annotated[strawberry.ID, strawberry.argument(description="The visit's id.")],
    ) -> ReportVisitMissedPayload | None:
        ids = Ids()
        visit_id = ids.one(id, VISIT_ID, "id")
        return await perform(
            info,
            COVER,
            lambda s, v: request_service.report_visit_missed(s, v, visit_id),
            _missed_payload,
            ids,
        )
