"""Referral mutations: record a person waiting for care, and change a referral (its
status and fields). The rules live in `care.services.referrals`; this module declares who
may call each, decodes ids and builds payloads."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

import strawberry

from care.enums import ReferralStatus
from care.services import referrals as service
from care.services.referrals import NewReferral, ReferralChange
from schema.context import Info
from schema.errors import REFERRAL, ReferralError
from schema.mutations.base import REFERRAL_ID, Ids, mutation, perform
from schema.permissions import MANAGING
from schema.types import Referral, load_referral


@strawberry.input(description="A person waiting for care: demand, with no name or address.")
class RecordReferralInput:
    local_authority: str = strawberry.field(
        description="The local authority the person lives in, by its GSS code (e.g. "
        "E09000003). Coordinators: that of a cluster they support or a neighbouring one."
    )
    postcode_district: str = strawberry.field(
        description="The person's postcode district (e.g. N12). A full postcode is accepted "
        "and cut to its district; only the district is stored."
    )
    hours_per_week: float = strawberry.field(
        description="Hours of care a week wanted: more than 0, at most 168 (rounded to two "
        "decimals)."
    )
    referred_on: dt.date = strawberry.field(
        description="The date the person was referred; not in the future (UK date)."
    )
    needs: list[str] | None = strawberry.field(
        default=None,
        description="The kinds of care needed, as tags (at most 50, each at most 200 "
        "characters; blanks and repeats dropped). Left out: none."
        " Codes of the care vocabulary (careTerms, NEED terms); unknown ones: UNKNOWN_CARE_TERM.",
    )
    note: str | None = strawberry.field(
        default=None,
        description="A short note, at most 1000 characters; no names or addresses. Left out: none.",
    )


@strawberry.input(description="Fields to change; those left out (or null) stay as they are.")
class UpdateReferralInput:
    status: ReferralStatus | None = strawberry.field(
        default=None, description="The new status (any status may follow any other)."
    )
    local_authority: str | None = strawberry.field(
        default=None,
        description="Move the referral to this local authority (GSS code); coordinators: "
        "one of their area.",
    )
    postcode_district: str | None = strawberry.field(
        default=None, description="A new postcode district (or a postcode, cut to it)."
    )
    hours_per_week: float | None = strawberry.field(
        default=None, description="New hours a week wanted: more than 0, at most 168."
    )
    referred_on: dt.date | None = strawberry.field(
        default=None, description="A corrected referral date; not in the future (UK date)."
    )
    needs: list[str] | None = strawberry.field(
        default=None, description="Replaces the needs (an empty list clears them)."
    )
    note: str | None = strawberry.field(
        default=None,
        description="Replaces the note (at most 1000 characters); an empty string clears it.",
    )


@strawberry.type(description="The result of recording or changing a referral.")
class ReferralPayload:
    referral: Referral | None = strawberry.field(
        description="The referral as it now is; null when errors is non-empty."
    )
    errors: list[ReferralError] = strawberry.field(
        description="Why nothing was changed; empty means the change was committed."
    )


async def _respond(
    info: Info, referral_id: int | None, errors: list[ReferralError]
) -> ReferralPayload:
    # A fresh read after the write, under the caller's visibility rules.
    found = await load_referral(info, referral_id) if referral_id is not None else None
    return ReferralPayload(referral=found, errors=errors)


@strawberry.type
class ReferralMutations:
    @mutation(
        access=MANAGING,
        description="Record a person waiting for care, as WAITING (admins; coordinators in "
        "the local authority of a cluster they support or a neighbouring one).",
    )
    async def record_referral(
        self,
        info: Info,
        input: Annotated[
            RecordReferralInput, strawberry.argument(description="The referral to record.")
        ],
    ) -> ReferralPayload | None:
        new = NewReferral(
            la_code=input.local_authority,
            postcode_district=input.postcode_district,
            hours_per_week=input.hours_per_week,
            referred_on=input.referred_on,
            needs=list(input.needs or []),
            note=input.note,
        )
        return await perform(
            info, REFERRAL, lambda s, v: service.record_referral(s, v, new), _respond
        )

    @mutation(
        access=MANAGING,
        description="Change a referral's status or fields (admins; coordinators who may see "
        "it, within their area).",
    )
    async def update_referral(
        self,
        info: Info,
        id: Annotated[strawberry.ID, strawberry.argument(description="The referral's id.")],
        input: Annotated[UpdateReferralInput, strawberry.argument(description="What to change.")],
    ) -> ReferralPayload | None:
        ids = Ids()
        referral_id = ids.one(id, REFERRAL_ID, "id")
        change = ReferralChange(
            la_code=input.local_authority,
            postcode_district=input.postcode_district,
            hours_per_week=input.hours_per_week,
            referred_on=input.referred_on,
            needs=input.needs,
            status=input.status,
            note=input.note,
        )
        return await perform(
            info,
            REFERRAL,
            lambda s, v: service.update_referral(s, v, referral_id, change),
            _respond,
            ids,
        )
