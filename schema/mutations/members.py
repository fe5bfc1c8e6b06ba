"""Member mutations: register service users, PAs, carers and other members; update them;
link carers and set regular PAs. The rules live in `care.services.members`."""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable
from typing import Any

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


@strawberry.input(description="A skill or training; its expiry date if it lapses.")
class SkillInput:
    name: str
    expires_on: dt.date | None = None


@strawberry.input(description="A person who will receive care.")
class RegisterServiceUserInput:
    name: str
    funding: Funding  # type: ignore[valid-type]
    needs: list[str]
    planned_weekly_hours: float
    email: str | None = None
    phone: str | None = None
    postcode: str | None = None
    location: GeoPointInput | None = None
    joined_on: dt.date | None = None
    cluster_id: strawberry.ID | None = strawberry.field(
        default=None, description="Required for coordinators: one of their clusters."
    )


@strawberry.input(description="A personal assistant; location is their home.")
class RegisterPersonalAssistantInput:
    name: str
    contracted_weekly_hours: float
    hourly_pay_pence: int
    max_travel_km: float
    email: str | None = None
    phone: str | None = None
    postcode: str | None = None
    location: GeoPointInput | None = None
    joined_on: dt.date | None = None
    dbs_checked_on: dt.date | None = None
    working_time_opt_out: bool | None = None
    skills: list[SkillInput] | None = None
    cluster_id: strawberry.ID | None = strawberry.field(
        default=None, description="A cluster whose PA team they join."
    )


@strawberry.input(description="An unpaid carer of one or more service users.")
class RegisterCarerInput:
    name: str
    service_user_ids: list[strawberry.ID]
    email: str | None = None
    phone: str | None = None
    postcode: str | None = None
    relationship: str | None = None


@strawberry.input(description="A supporter, or a worker who is not a PA (SUPPORTER or WORKER).")
class RegisterMemberInput:
    name: str
    membership_class: MembershipClass  # type: ignore[valid-type]
    email: str | None = None
    phone: str | None = None
    postcode: str | None = None


@strawberry.input(
    description=(
        "Fields to change; those left out stay as they are. null clears email, phone, "
        "postcode and location; null for name or active changes nothing."
    )
)
class UpdateMemberInput:
    name: str | None = None
    email: str | None = strawberry.UNSET
    phone: str | None = strawberry.UNSET
    postcode: str | None = strawberry.UNSET
    location: GeoPointInput | None = strawberry.UNSET
    active: bool | None = None


@strawberry.input(description="Fields to change; those left out (or null) stay as they are.")
class UpdateServiceUserInput:
    funding: Funding | None = None  # type: ignore[valid-type]
    needs: list[str] | None = None
    planned_weekly_hours: float | None = None


@strawberry.input(
    description=(
        "Fields to change; those left out stay as they are. null clears dbsCheckedOn; "
        "skills replaces the whole skill set."
    )
)
class UpdatePersonalAssistantInput:
    dbs_checked_on: dt.date | None = strawberry.UNSET
    contracted_weekly_hours: float | None = None
    hourly_pay_pence: int | None = None
    max_travel_km: float | None = None
    working_time_opt_out: bool | None = None
    skills: list[SkillInput] | None = None


@strawberry.type
class MemberPayload:
    member: Member | None
    errors: list[MemberError]


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
        self, info: Info, input: RegisterServiceUserInput
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
        self, info: Info, input: RegisterPersonalAssistantInput
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
    async def register_carer(self, info: Info, input: RegisterCarerInput) -> MemberPayload | None:
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
    async def register_member(self, info: Info, input: RegisterMemberInput) -> MemberPayload | None:
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
        self, info: Info, id: strawberry.ID, input: UpdateMemberInput
    ) -> MemberPayload | None:
        ids = Ids()
        member_id, fields = ids.one(id, MEMBER_ID, "id"), _contact(input)
        return await _run(info, ids, lambda s, v: service.update_member(s, v, member_id, fields))

    @mutation(
        access=MANAGING, description="Change a service user's funding, needs or planned hours."
    )
    async def update_service_user(
        self, info: Info, id: strawberry.ID, input: UpdateServiceUserInput
    ) -> MemberPayload | None:
        ids = Ids()
        member_id, fields = ids.one(id, SERVICE_USER_ID, "id"), _service_user_fields(input)
        return await _run(
            info, ids, lambda s, v: service.update_service_user(s, v, member_id, fields)
        )

    @mutation(access=MANAGING, description="Change a PA's checks, contract, pay, travel or skills.")
    async def update_personal_assistant(
        self, info: Info, id: strawberry.ID, input: UpdatePersonalAssistantInput
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
        carer_id: strawberry.ID,
        service_user_id: strawberry.ID,
        relationship: str | None = None,
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
        self, info: Info, carer_id: strawberry.ID, service_user_id: strawberry.ID
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
        self, info: Info, service_user_id: strawberry.ID, pa_ids: list[strawberry.ID]
    ) -> MemberPayload | None:
        ids = Ids()
        sid = ids.one(service_user_id, SERVICE_USER_ID, "serviceUserId")
        pids = ids.many(pa_ids, PA_ID, "paIds")
        return await _run(
            info, ids, lambda s, v: service.set_regular_personal_assistants(s, v, sid, pids)
        )
