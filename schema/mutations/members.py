"""Member mutations: register service users, PAs, carers and other members; update them;
link carers and set regular PAs. The rules live in `care.services.members`."""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

import strawberry
from sqlalchemy.ext.asyncio import AsyncSession

from care.services import members as service
from care.services.members import MemberFields, PaFields, ServiceUserFields, SkillSpec
from care.viewer import Viewer
from schema.context import Info
from schema.errors import MEMBER, MemberError
from schema.mutations.base import (
    CARER_ID,
    CLUSTER_ID,
    MEMBER_ID,
    PA_ID,
    SERVICE_USER_ID,
    Ids,
    mutation,
    perform,
)
from schema.mutations.clusters import GeoPointInput
from schema.permissions import ADMINS, COOP, MANAGING
from schema.types import Funding, Member, MembershipClass, load_member

NAME = "Full name."
EMAIL = "Email address. Left out: none."
PHONE = "Phone number. Left out: none."
POSTCODE = "UK postcode (normalised, e.g. N12 0AA). Left out: none."
JOINED_ON = "Date they joined the co-op. Left out: today."
SKILLS = (
    "Skills and training. Left out: none. Codes of the care vocabulary (careTerms); unknown "
    "ones: UNKNOWN_CARE_TERM."
)

ServiceUserIdArg = Annotated[
    strawberry.ID, strawberry.argument(description="The service user's id.")
]
CarerIdArg = Annotated[strawberry.ID, strawberry.argument(description="The carer's id.")]


@strawberry.input(description="A skill or training; its expiry date if it lapses.")
class SkillInput:
    name: str = strawberry.field(
        description="A care term's code, e.g. moving-and-handling (a label such as "
        '"Moving and handling" is normalised to it).'
    )
    expires_on: dt.date | None = strawberry.field(
        default=None, description="Last day it is valid. Left out: it does not lapse."
    )


@strawberry.input(description="A person who will receive care.")
class RegisterServiceUserInput:
    name: str = strawberry.field(description=NAME)
    funding: Funding = strawberry.field(  # type: ignore[valid-type]
        description="How their care is paid for."
    )
    needs: list[str] = strawberry.field(
        description="Care needs, e.g. personal-care:"
        + " Codes of the care vocabulary (careTerms, NEED terms); unknown ones: UNKNOWN_CARE_TERM."
    )
    planned_weekly_hours: float = strawberry.field(description="Hours of care planned per week.")
    email: str | None = strawberry.field(default=None, description=EMAIL)
    phone: str | None = strawberry.field(default=None, description=PHONE)
    postcode: str | None = strawberry.field(default=None, description=POSTCODE)
    location: GeoPointInput | None = strawberry.field(
        default=None, description="Their home, for travel distances. Left out: unknown."
    )
    joined_on: dt.date | None = strawberry.field(default=None, description=JOINED_ON)
    cluster_id: strawberry.ID | None = strawberry.field(
        default=None, description="Required for coordinators: one of their clusters."
    )


@strawberry.input(description="A personal assistant; location is their home.")
class RegisterPersonalAssistantInput:
    name: str = strawberry.field(description=NAME)
    contracted_weekly_hours: float = strawberry.field(
        description="Hours per week in their contract."
    )
    hourly_pay_pence: int = strawberry.field(description="Pay per hour, in pence.")
    max_travel_km: float = strawberry.field(
        description="Furthest they travel from home to a visit, in kilometres."
    )
    email: str | None = strawberry.field(default=None, description=EMAIL)
    phone: str | None = strawberry.field(default=None, description=PHONE)
    postcode: str | None = strawberry.field(default=None, description=POSTCODE)
    location: GeoPointInput | None = strawberry.field(
        default=None, description="Their home, for travel distances. Left out: unknown."
    )
    joined_on: dt.date | None = strawberry.field(default=None, description=JOINED_ON)
    dbs_checked_on: dt.date | None = strawberry.field(
        default=None, description="Date of their last DBS check. Left out: none on record."
    )
    working_time_opt_out: bool | None = strawberry.field(
        default=None,
        description="They opted out of the 48-hour week (Working Time Regulations, reg. 5). "
        "Left out: false.",
    )
    skills: list[SkillInput] | None = strawberry.field(default=None, description=SKILLS)
    cluster_id: strawberry.ID | None = strawberry.field(
        default=None, description="A cluster whose PA team they join."
    )


@strawberry.input(description="An unpaid carer of one or more service users.")
class RegisterCarerInput:
    name: str = strawberry.field(description=NAME)
    service_user_ids: list[strawberry.ID] = strawberry.field(
        description="The service users they care for."
    )
    email: str | None = strawberry.field(default=None, description=EMAIL)
    phone: str | None = strawberry.field(default=None, description=PHONE)
    postcode: str | None = strawberry.field(default=None, description=POSTCODE)
    relationship: str | None = strawberry.field(
        default=None,
        description="Their relationship to the service users, e.g. daughter. Left out: none.",
    )


@strawberry.input(description="A supporter, or a worker who is not a PA (SUPPORTER or WORKER).")
class RegisterMemberInput:
    name: str = strawberry.field(description=NAME)
    membership_class: MembershipClass = strawberry.field(  # type: ignore[valid-type]
        description="SUPPORTER or WORKER."
    )
    email: str | None = strawberry.field(default=None, description=EMAIL)
    phone: str | None = strawberry.field(default=None, description=PHONE)
    postcode: str | None = strawberry.field(default=None, description=POSTCODE)


@strawberry.input(
    description=(
        "Fields to change; those left out stay as they are. null clears email, phone, "
        "postcode and location; null for name or active changes nothing."
    )
)
class UpdateMemberInput:
    name: str | None = strawberry.field(default=None, description="A new full name.")
    email: str | None = strawberry.field(
        default=strawberry.UNSET, description="A new email address; null clears it."
    )
    phone: str | None = strawberry.field(
        default=strawberry.UNSET, description="A new phone number; null clears it."
    )
    postcode: str | None = strawberry.field(
        default=strawberry.UNSET, description="A new UK postcode; null clears it."
    )
    location: GeoPointInput | None = strawberry.field(
        default=strawberry.UNSET, description="A new home location; null clears it."
    )
    active: bool | None = strawberry.field(
        default=None,
        description="false deactivates the member (and cuts their tokens); true reactivates.",
    )


@strawberry.input(description="Fields to change; those left out (or null) stay as they are.")
class UpdateServiceUserInput:
    funding: Funding | None = strawberry.field(  # type: ignore[valid-type]
        default=None, description="How their care is now paid for."
    )
    needs: list[str] | None = strawberry.field(
        default=None,
        description="Replaces the care needs."
        + " Codes of the care vocabulary (careTerms, NEED terms); unknown ones: UNKNOWN_CARE_TERM.",
    )
    planned_weekly_hours: float | None = strawberry.field(
        default=None, description="Hours of care planned per week."
    )


@strawberry.input(
    description=(
        "Fields to change; those left out stay as they are. null clears dbsCheckedOn; "
        "skills replaces the whole skill set."
    )
)
class UpdatePersonalAssistantInput:
    dbs_checked_on: dt.date | None = strawberry.field(
        default=strawberry.UNSET, description="Date of their last DBS check; null clears it."
    )
    contracted_weekly_hours: float | None = strawberry.field(
        default=None, description="Hours per week in their contract."
    )
    hourly_pay_pence: int | None = strawberry.field(
        default=None, description="Pay per hour, in pence."
    )
    max_travel_km: float | None = strawberry.field(
        default=None, description="Furthest they travel to a visit, in kilometres."
    )
    working_time_opt_out: bool | None = strawberry.field(
        default=None, description="Whether they opted out of the 48-hour week."
    )
    skills: list[SkillInput] | None = strawberry.field(
        default=None, description="Replaces the whole skill set; [] removes every skill."
    )


@strawberry.type(description="The result of a member mutation.")
class MemberPayload:
    member: Member | None = strawberry.field(
        description="The member as it now is, as the caller may see them; null when errors "
        "is non-empty."
    )
    errors: list[MemberError] = strawberry.field(
        description="Why nothing was changed; empty means the change was committed."
    )


# --- decoding --------------------------------------------------------------------------


def _given(value: Any) -> Any:
    """Strawberry's UNSET (left out) becomes the service's UNSET."""
    return service.UNSET if value is strawberry.UNSET else value


def _or_unset(value: Any) -> Any:
    """For fields where null means "no change"."""
    return service.UNSET if value is None or value is strawberry.UNSET else value


def _location(value: GeoPointInput | None | Any) -> Any:
    if isinstance(value, GeoPointInput):
        return (value.latitude, value.longitude)
    return _given(value)


def _skills(values: list[SkillInput] | None) -> Any:
    if values is None:
        return service.UNSET
    return [SkillSpec(s.name, s.expires_on) for s in values]


def _contact(data: Any) -> MemberFields:
    """The member row's fields common to every input (new or changed)."""
    return MemberFields(
        name=_or_unset(data.name),
        email=_given(data.email),
        phone=_given(data.phone),
        postcode=_given(data.postcode),
        location=_location(getattr(data, "location", service.UNSET)),
        joined_on=_or_unset(getattr(data, "joined_on", None)),
        active=_or_unset(getattr(data, "active", None)),
    )


def _pa_fields(
    data: RegisterPersonalAssistantInput | UpdatePersonalAssistantInput,
) -> PaFields:
    return PaFields(
        dbs_checked_on=_given(data.dbs_checked_on),
        contracted_weekly_hours=_or_unset(data.contracted_weekly_hours),
        hourly_pay_pence=_or_unset(data.hourly_pay_pence),
        max_travel_km=_or_unset(data.max_travel_km),
        working_time_opt_out=_or_unset(data.working_time_opt_out),
        skills=_skills(data.skills),
    )


def _service_user_fields(
    data: RegisterServiceUserInput | UpdateServiceUserInput,
) -> ServiceUserFields:
    return ServiceUserFields(
        funding=_or_unset(data.funding),
        needs=_or_unset(data.needs),
        planned_weekly_hours=_or_unset(data.planned_weekly_hours),
    )


# --- running ---------------------------------------------------------------------------


async def _respond(info: Info, member_id: int | None, errors: list[MemberError]) -> MemberPayload:
    """The member read back under the caller's field masks."""
    member = await load_member(info, member_id) if member_id is not None else None
    return MemberPayload(member=member, errors=errors)


async def _run(
    info: Info, ids: Ids, action: Callable[[AsyncSession, Viewer], Awaitable[int]]
) -> MemberPayload | None:
    return await perform(info, MEMBER, action, _respond, ids)


@strawberry.type
class MemberMutations:
    @mutation(
        access=MANAGING,
        description="Register a service user (admins; coordinators into one of their clusters).",
    )
    async def register_service_user(
        self,
        info: Info,
        input: Annotated[
            RegisterServiceUserInput, strawberry.argument(description="The person to register.")
        ],
    ) -> MemberPayload | None:
        ids = Ids()
        contact, profile = _contact(input), _service_user_fields(input)
        cluster_id = ids.optional(input.cluster_id, CLUSTER_ID, "clusterId")
        return await _run(
            info,
            ids,
            lambda s, v: service.register_service_user(s, v, contact, profile, cluster_id),
        )

    @mutation(
        access=MANAGING, description="Register a personal assistant (admins and coordinators)."
    )
    async def register_personal_assistant(
        self,
        info: Info,
        input: Annotated[
            RegisterPersonalAssistantInput, strawberry.argument(description="The PA to register.")
        ],
    ) -> MemberPayload | None:
        ids = Ids()
        contact, profile = _contact(input), _pa_fields(input)
        cluster_id = ids.optional(input.cluster_id, CLUSTER_ID, "clusterId")
        return await _run(
            info,
            ids,
            lambda s, v: service.register_personal_assistant(s, v, contact, profile, cluster_id),
        )

    @mutation(
        access=MANAGING,
        description="Register an unpaid carer linked to service users "
        "(admins; coordinators for people in their clusters).",
    )
    async def register_carer(
        self,
        info: Info,
        input: Annotated[
            RegisterCarerInput, strawberry.argument(description="The carer to register.")
        ],
    ) -> MemberPayload | None:
        ids = Ids()
        contact = _contact(input)
        su_ids = ids.many(input.service_user_ids, SERVICE_USER_ID, "serviceUserIds")
        return await _run(
            info,
            ids,
            lambda s, v: service.register_carer(s, v, contact, su_ids, input.relationship),
        )

    @mutation(
        access=ADMINS, description="Register a supporter or a worker who is not a PA (admins only)."
    )
    async def register_member(
        self,
        info: Info,
        input: Annotated[
            RegisterMemberInput, strawberry.argument(description="The member to register.")
        ],
    ) -> MemberPayload | None:
        contact = _contact(input)
        return await _run(
            info,
            Ids(),
            lambda s, v: service.register_member(s, v, contact, input.membership_class),
        )

    @mutation(
        access=COOP,
        description="Change a member's contact details or status (admins, "
        "their coordinators; anyone their own contact details).",
    )
    async def update_member(
        self,
        info: Info,
        id: Annotated[strawberry.ID, strawberry.argument(description="The member's id.")],
        input: Annotated[UpdateMemberInput, strawberry.argument(description="What to change.")],
    ) -> MemberPayload | None:
        ids = Ids()
        member_id, fields = ids.one(id, MEMBER_ID, "id"), _contact(input)
        return await _run(info, ids, lambda s, v: service.update_member(s, v, member_id, fields))

    @mutation(
        access=MANAGING, description="Change a service user's funding, needs or planned hours."
    )
    async def update_service_user(
        self,
        info: Info,
        id: ServiceUserIdArg,
        input: Annotated[
            UpdateServiceUserInput, strawberry.argument(description="What to change.")
        ],
    ) -> MemberPayload | None:
        ids = Ids()
        member_id, fields = ids.one(id, SERVICE_USER_ID, "id"), _service_user_fields(input)
        return await _run(
            info, ids, lambda s, v: service.update_service_user(s, v, member_id, fields)
        )

    @mutation(access=MANAGING, description="Change a PA's checks, contract, pay, travel or skills.")
    async def update_personal_assistant(
        self,
        info: Info,
        id: Annotated[strawberry.ID, strawberry.argument(description="The PA's id.")],
        input: Annotated[
            UpdatePersonalAssistantInput, strawberry.argument(description="What to change.")
        ],
    ) -> MemberPayload | None:
        ids = Ids()
        member_id, fields = ids.one(id, PA_ID, "id"), _pa_fields(input)
        return await _run(
            info, ids, lambda s, v: service.update_personal_assistant(s, v, member_id, fields)
        )

    @mutation(
        access=MANAGING, description="Link a carer to a service user; returns the service user."
    )
    async def link_carer(
        self,
        info: Info,
        carer_id: CarerIdArg,
        service_user_id: ServiceUserIdArg,
        relationship: Annotated[
            str | None,
            strawberry.argument(
                description="e.g. daughter. Left out: an existing link keeps its relationship."
            ),
        ] = None,
    ) -> MemberPayload | None:
        ids = Ids()
        cid = ids.one(carer_id, CARER_ID, "carerId")
        sid = ids.one(service_user_id, SERVICE_USER_ID, "serviceUserId")
        return await _run(info, ids, lambda s, v: service.link_carer(s, v, cid, sid, relationship))

    @mutation(
        access=MANAGING,
        description="Remove a carer's link to a service user; returns the service user.",
    )
    async def unlink_carer(
        self, info: Info, carer_id: CarerIdArg, service_user_id: ServiceUserIdArg
    ) -> MemberPayload | None:
        ids = Ids()
        cid = ids.one(carer_id, CARER_ID, "carerId")
        sid = ids.one(service_user_id, SERVICE_USER_ID, "serviceUserId")
        return await _run(info, ids, lambda s, v: service.unlink_carer(s, v, cid, sid))

    @mutation(
        access=MANAGING,
        description="Replace a service user's regular PAs; returns the service user.",
    )
    async def set_regular_personal_assistants(
        self,
        info: Info,
        service_user_id: ServiceUserIdArg,
        pa_ids: Annotated[
            list[strawberry.ID],
            strawberry.argument(
                description="The PAs' ids; they replace the current regular PAs "
                "([] removes them all)."
            ),
        ],
    ) -> MemberPayload | None:
        ids = Ids()
        sid = ids.one(service_user_id, SERVICE_USER_ID, "serviceUserId")
        pids = ids.many(pa_ids, PA_ID, "paIds")
        return await _run(
            info, ids, lambda s, v: service.set_regular_personal_assistants(s, v, sid, pids)
        )
