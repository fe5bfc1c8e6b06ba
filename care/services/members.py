"""Members: register service users, PAs, carers and other members; update them; link
carers and set a person's regular PAs.

Who may act:
- Registering is for admins and coordinators (other members only by admins). A coordinator
  registers a service user into a cluster they support: otherwise they could not see the
  person they just registered (see `policy.member_visible`).
- Updating is for admins, and for coordinators on the service users and carers whose
  personal data they may read and the PAs on their teams. Every member may change their
  own contact details, but not their `active` flag.
- Carer links and regular PAs: admins and the coordinators who manage the service user.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import ColumnElement, delete, exists, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from care import policy, vocabulary
from care.enums import ClusterStatus, Funding, MembershipClass, Role
from care.errors import DomainError, DomainErrors, ErrorCode, forbidden, not_found
from care.models import (
    CarerLink,
    Cluster,
    ClusterPa,
    ClusterServiceUser,
    Member,
    PaProfile,
    PaSkill,
    RegularPa,
    ServiceUserProfile,
)
from care.services import UNSET
from care.services.access import (
    may_manage_cluster,
    may_manage_pa,
    may_manage_service_user,
    require_manager,
    runs_others,
)
from care.viewer import Viewer

EMAIL = re.compile(r"^[^@\s]+@[^@\s.]+(\.[^@\s.]+)+$")
MAX_EMAIL_LENGTH = 254
# Outward code (area + district) and inward code (sector + unit), spaces removed.
POSTCODE = re.compile(r"^([A-Z]{1,2}[0-9][0-9A-Z]?)([0-9][A-Z]{2})$")
HOURS_IN_WEEK = 168
# A sanity bound well inside the column's precision (Numeric(6, 2)).
MAX_TRAVEL_KM = 1000


@dataclass
class MemberFields:
    """Fields of the member row; on update, attributes left UNSET are not changed."""

    name: str | object = UNSET
    email: str | None | object = UNSET
    phone: str | None | object = UNSET
    postcode: str | None | object = UNSET
    location: tuple[float, float] | None | object = UNSET
    joined_on: dt.date | object = UNSET
    active: bool | object = UNSET


@dataclass
class ServiceUserFields:
    funding: Funding | object = UNSET
    needs: list[str] | object = UNSET
    planned_weekly_hours: float | object = UNSET


@dataclass(frozen=True)
class SkillSpec:
    name: str
    expires_on: dt.date | None = None


@dataclass
class PaFields:
    dbs_checked_on: dt.date | None | object = UNSET
    contracted_weekly_hours: float | object = UNSET
    hourly_pay_pence: int | object = UNSET
    max_travel_km: float | object = UNSET
    working_time_opt_out: bool | object = UNSET
    skills: list[SkillSpec] | object = UNSET  # replaces the PA's whole skill set


# --- validation: each cleaner normalises its fields in place and returns the problems ----


def _invalid(field_name: str, message: str) -> DomainError:
    return DomainError(ErrorCode.INVALID, message, field_name)


def _optional_text(value: str | None | object) -> str | None | object:
    """Blank optional text means "none"."""
    if isinstance(value, str):
        return value.strip() or None
    return value


def _relationship(value: str | None) -> str | None:
    return (value.strip() or None) if value else None


def normalise_postcode(value: str) -> str | None:
    """'n12 0aa' -> 'N12 0AA'; None when it is not a UK postcode."""
    match = POSTCODE.match(re.sub(r"\s+", "", value).upper())
    return f"{match[1]} {match[2]}" if match else None


def _clean_contact(f: MemberFields) -> list[DomainError]:
    errors: list[DomainError] = []
    if f.name is not UNSET:
        f.name = f.name.strip() if isinstance(f.name, str) else ""
        if not f.name:
            errors.append(DomainError(ErrorCode.REQUIRED, "A member needs a name.", "name"))
    f.email, f.phone = _optional_text(f.email), _optional_text(f.phone)
    if isinstance(f.email, str) and (len(f.email) > MAX_EMAIL_LENGTH or not EMAIL.match(f.email)):
        errors.append(_invalid("email", "That is not an email address."))
    f.postcode = _optional_text(f.postcode)
    if isinstance(f.postcode, str):
        postcode = normalise_postcode(f.postcode)
        if postcode is None:
            errors.append(_invalid("postcode", "That is not a UK postcode."))
        f.postcode = postcode
    if isinstance(f.location, tuple):
        lat, lon = f.location
        if not (-90 <= lat <= 90 and -180 <= lon <= 180):
            errors.append(_invalid("location", "Latitude or longitude out of range."))
    return errors


def _clean_tags(values: Iterable[str]) -> list[str]:
    """Needs share the vocabulary of skills and cluster need tags (care.vocabulary)."""
    return vocabulary.normalise_all(values)


def _clean_hours(value: float | object, field_name: str) -> list[DomainError]:
    if isinstance(value, float | int) and not 0 <= value <= HOURS_IN_WEEK:
        return [_invalid(field_name, f"Weekly hours must be between 0 and {HOURS_IN_WEEK}.")]
    return []


def _clean_service_user(f: ServiceUserFields) -> list[DomainError]:
    if isinstance(f.needs, list):
        f.needs = _clean_tags(f.needs)
    return _clean_hours(f.planned_weekly_hours, "plannedWeeklyHours")


def _clean_skills(skills: list[SkillSpec]) -> tuple[list[SkillSpec], list[DomainError]]:
    cleaned = [SkillSpec(vocabulary.normalise(s.name), s.expires_on) for s in skills]
    names = [s.name for s in cleaned]
    if not all(names):
        return cleaned, [DomainError(ErrorCode.REQUIRED, "Every skill needs a name.", "skills")]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        return cleaned, [_invalid("skills", f"Skills given more than once: {', '.join(repeated)}.")]
    return cleaned, []


def _clean_pa(f: PaFields, today: dt.date) -> list[DomainError]:
    errors = _clean_hours(f.contracted_weekly_hours, "contractedWeeklyHours")
    # Pay below the National Living Wage is allowed: apprentice and under-21 rates exist.
    if isinstance(f.hourly_pay_pence, int) and f.hourly_pay_pence <= 0:
        errors.append(_invalid("hourlyPayPence", "The hourly pay must be positive."))
    if isinstance(f.max_travel_km, float | int) and not 0 <= f.max_travel_km <= MAX_TRAVEL_KM:
        message = f"The travel distance must be between 0 and {MAX_TRAVEL_KM} km."
        errors.append(_invalid("maxTravelKm", message))
    if isinstance(f.dbs_checked_on, dt.date) and f.dbs_checked_on > today:
        errors.append(_invalid("dbsCheckedOn", "A DBS check cannot be dated in the future."))
    if isinstance(f.skills, list):
        f.skills, skill_errors = _clean_skills(f.skills)
        errors.extend(skill_errors)
    return errors


def _raise_if(errors: list[DomainError]) -> None:
    if errors:
        raise DomainErrors(errors)


# --- access ------------------------------------------------------------------------------


def _is_service_user() -> ColumnElement[bool]:
    return Member.id.in_(select(ServiceUserProfile.member_id))


def _is_pa() -> ColumnElement[bool]:
    return Member.id.in_(select(PaProfile.member_id))


def _is_carer() -> ColumnElement[bool]:
    return Member.membership_class == MembershipClass.CARER.value


async def _visible_ids(
    session: AsyncSession, viewer: Viewer, ids: Iterable[int], kind: ColumnElement[bool]
) -> set[int]:
    """Which of these ids are members of a kind the viewer may see (one statement)."""
    wanted = list(set(ids))
    if not wanted:
        return set()
    rows = await session.scalars(
        select(Member.id).where(Member.id.in_(wanted), kind, policy.member_visible(viewer))
    )
    return set(rows)


async def _require_visible(
    session: AsyncSession,
    viewer: Viewer,
    member_id: int,
    kind: ColumnElement[bool] | None,
    what: str,
    field_name: str,
) -> None:
    conditions = [Member.id == member_id, policy.member_visible(viewer)]
    if kind is not None:
        conditions.append(kind)
    if not await session.scalar(select(exists().where(*conditions))):
        raise not_found(what, field_name)


async def _require_member_manager(session: AsyncSession, viewer: Viewer, member_id: int) -> None:
    """Admins; coordinators for the service users and carers whose personal data they may
    read, and for the PAs on their teams (they read every PA's contact details, but another
    cluster's PA is not theirs to change). Callers have already checked that the member is
    visible, so failing here is FORBIDDEN."""
    if viewer.role is Role.ADMIN:
        return
    if viewer.role is Role.COORDINATOR:
        allowed = await session.scalar(
            select(exists().where(Member.id == member_id, policy.member_personal_visible(viewer)))
        )
        is_pa = await session.scalar(select(exists().where(PaProfile.member_id == member_id)))
        # A PA who coordinates another cluster is a fellow coordinator: not theirs to
        # deactivate or re-address, even on their team.
        coordinates = await session.scalar(select(runs_others(viewer, member_id)))
        if (
            allowed
            and not coordinates
            and (not is_pa or await may_manage_pa(session, viewer, member_id))
        ):
            return
    raise forbidden("Only admins and the person's coordinators may change this member.", "id")


async def _require_managed_service_user(
    session: AsyncSession, viewer: Viewer, service_user_id: int, field_name: str
) -> None:
    await _require_visible(
        session, viewer, service_user_id, _is_service_user(), "service user", field_name
    )
    if not await may_manage_service_user(session, viewer, service_user_id):
        raise forbidden("Only admins and the person's coordinators may do this.", field_name)


async def _cluster_problems(
    session: AsyncSession, viewer: Viewer, cluster_id: int | None, required: bool
) -> list[DomainError]:
    """The cluster a new member joins: coordinators must name one of theirs when
    `required` (they could not see the person otherwise)."""
    if cluster_id is None:
        if required and viewer.role is Role.COORDINATOR:
            return [DomainError(ErrorCode.REQUIRED, "Choose one of your clusters.", "clusterId")]
        return []
    status = await session.scalar(select(Cluster.status).where(Cluster.id == cluster_id))
    if status is None:
        return [not_found("cluster", "clusterId")]
    if not await may_manage_cluster(session, viewer, cluster_id):
        return [forbidden("You do not run that cluster.", "clusterId")]
    if status == ClusterStatus.CLOSED.value:
        return [_invalid("clusterId", "The cluster is closed.")]
    return []


# --- writes ------------------------------------------------------------------------------


def _apply_member(member: Member, f: MemberFields) -> None:
    if isinstance(f.name, str):
        member.name = f.name
    for attr in ("email", "phone", "postcode"):
        value = getattr(f, attr)
        if value is not UNSET:
            setattr(member, attr, value)
    if f.location is not UNSET:
        lat_lon = f.location if isinstance(f.location, tuple) else (None, None)
        member.latitude, member.longitude = lat_lon
    if isinstance(f.joined_on, dt.date):
        member.joined_on = f.joined_on
    if isinstance(f.active, bool):
        member.active = f.active


def _decimal(value: float | int) -> Decimal:
    return Decimal(str(value))


def _apply_service_user(profile: ServiceUserProfile, f: ServiceUserFields) -> None:
    if isinstance(f.funding, Funding):
        profile.funding = f.funding.value
    if isinstance(f.needs, list):
        profile.needs = f.needs
    if isinstance(f.planned_weekly_hours, float | int):
        profile.planned_weekly_hours = _decimal(f.planned_weekly_hours)


def _apply_pa(profile: PaProfile, f: PaFields) -> None:
    if f.dbs_checked_on is not UNSET:
        profile.dbs_checked_on = f.dbs_checked_on  # type: ignore[assignment]
    if isinstance(f.contracted_weekly_hours, float | int):
        profile.contracted_weekly_hours = _decimal(f.contracted_weekly_hours)
    if isinstance(f.hourly_pay_pence, int):
        profile.hourly_pay_pence = f.hourly_pay_pence
    if isinstance(f.max_travel_km, float | int):
        profile.max_travel_km = _decimal(f.max_travel_km)
    if isinstance(f.working_time_opt_out, bool):
        profile.working_time_opt_out = f.working_time_opt_out


async def _check_needs(
    session: AsyncSession, f: ServiceUserFields, held: Iterable[str] = ()
) -> None:
    if isinstance(f.needs, list):
        await vocabulary.require_terms(session, f.needs, "needs", need=True, held=held)


async def _check_skills(session: AsyncSession, f: PaFields, pa_id: int | None = None) -> None:
    if not isinstance(f.skills, list):
        return
    held: list[str] = []
    if pa_id is not None:
        held = list(await session.scalars(select(PaSkill.skill).where(PaSkill.pa_id == pa_id)))
    names = [s.name for s in f.skills]
    await vocabulary.require_terms(session, names, "skills", need=False, held=held)


async def _replace_skills(session: AsyncSession, pa_id: int, skills: list[SkillSpec]) -> None:
    await session.execute(delete(PaSkill).where(PaSkill.pa_id == pa_id))
    session.add_all(PaSkill(pa_id=pa_id, skill=s.name, expires_on=s.expires_on) for s in skills)
    await session.flush()


async def _add_member(session: AsyncSession, f: MemberFields, cls: MembershipClass) -> Member:
    member = Member(membership_class=cls.value)
    _apply_member(member, f)
    session.add(member)
    await session.flush()
    return member


# --- registering -------------------------------------------------------------------------


async def register_service_user(
    session: AsyncSession,
    viewer: Viewer,
    member: MemberFields,
    profile: ServiceUserFields,
    cluster_id: int | None,
) -> int:
    require_manager(viewer)
    errors = _clean_contact(member) + _clean_service_user(profile)
    errors += await _cluster_problems(session, viewer, cluster_id, required=True)
    _raise_if(errors)
    await _check_needs(session, profile)
    row = await _add_member(session, member, MembershipClass.SERVICE_USER)
    su = ServiceUserProfile(member_id=row.id, needs=[])
    _apply_service_user(su, profile)
    session.add(su)
    await session.flush()
    if cluster_id is not None:
        session.add(ClusterServiceUser(cluster_id=cluster_id, service_user_id=row.id))
        await session.flush()
    return row.id


async def register_personal_assistant(
    session: AsyncSession,
    viewer: Viewer,
    member: MemberFields,
    profile: PaFields,
    cluster_id: int | None,
) -> int:
    require_manager(viewer)
    errors = _clean_contact(member) + _clean_pa(profile, viewer.now.date())
    # Coordinators see every worker, so a PA needs no cluster to stay visible to them.
    errors += await _cluster_problems(session, viewer, cluster_id, required=False)
    _raise_if(errors)
    await _check_skills(session, profile)
    row = await _add_member(session, member, MembershipClass.WORKER)
    pa = PaProfile(member_id=row.id)
    _apply_pa(pa, profile)
    session.add(pa)
    await session.flush()
    await _replace_skills(
        session, row.id, profile.skills if isinstance(profile.skills, list) else []
    )
    if cluster_id is not None:
        session.add(ClusterPa(cluster_id=cluster_id, pa_id=row.id))
        await session.flush()
    return row.id


async def _service_user_problems(
    session: AsyncSession, viewer: Viewer, service_user_ids: list[int]
) -> list[DomainError]:
    if not service_user_ids:
        return [DomainError(ErrorCode.REQUIRED, "Name the person they care for.", "serviceUserIds")]
    visible = await _visible_ids(session, viewer, service_user_ids, _is_service_user())
    if visible != set(service_user_ids):
        return [not_found("service user", "serviceUserIds")]
    for su_id in visible:
        if not await may_manage_service_user(session, viewer, su_id):
            return [
                forbidden(
                    "You do not coordinate care for every one of those people.", "serviceUserIds"
                )
            ]
    return []


async def register_carer(
    session: AsyncSession,
    viewer: Viewer,
    member: MemberFields,
    service_user_ids: list[int],
    relationship: str | None,
) -> int:
    require_manager(viewer)
    errors = _clean_contact(member)
    errors += await _service_user_problems(session, viewer, service_user_ids)
    _raise_if(errors)
    row = await _add_member(session, member, MembershipClass.CARER)
    text = _relationship(relationship)
    session.add_all(
        CarerLink(carer_id=row.id, service_user_id=su_id, relationship=text)
        for su_id in sorted(set(service_user_ids))
    )
    await session.flush()
    return row.id


async def register_member(
    session: AsyncSession, viewer: Viewer, member: MemberFields, cls: MembershipClass
) -> int:
    """Supporters, and workers who are not PAs (e.g. support workers)."""
    if viewer.role is not Role.ADMIN:
        raise forbidden("Only admins may register members this way.")
    errors = _clean_contact(member)
    if cls not in (MembershipClass.SUPPORTER, MembershipClass.WORKER):
        errors.append(
            _invalid(
                "membershipClass",
                "Use registerServiceUser or registerCarer for service users and carers.",
            )
        )
    _raise_if(errors)
    return (await _add_member(session, member, cls)).id


# --- updating ----------------------------------------------------------------------------


async def update_member(
    session: AsyncSession, viewer: Viewer, member_id: int, f: MemberFields
) -> int:
    if not viewer.in_coop:
        raise forbidden("Only members of the co-op may change member records.")
    await _require_visible(session, viewer, member_id, None, "member", "id")
    if viewer.member_id == member_id and viewer.role is not Role.ADMIN:
        # Anyone may keep their own contact details up to date, not end their membership.
        if f.active is not UNSET:
            raise forbidden("You may not change your own membership status.", "active")
    else:
        await _require_member_manager(session, viewer, member_id)
    _raise_if(_clean_contact(f))
    member = await session.get(Member, member_id)
    assert member is not None  # visible above, in this transaction
    _apply_member(member, f)
    await session.flush()
    return member_id


async def update_service_user(
    session: AsyncSession, viewer: Viewer, member_id: int, f: ServiceUserFields
) -> int:
    require_manager(viewer)
    await _require_visible(session, viewer, member_id, _is_service_user(), "service user", "id")
    await _require_member_manager(session, viewer, member_id)
    _raise_if(_clean_service_user(f))
    profile = await session.get(ServiceUserProfile, member_id)
    assert profile is not None
    await _check_needs(session, f, held=profile.needs)
    _apply_service_user(profile, f)
    await session.flush()
    return member_id


async def update_personal_assistant(
    session: AsyncSession, viewer: Viewer, member_id: int, f: PaFields
) -> int:
    require_manager(viewer)
    await _require_visible(session, viewer, member_id, _is_pa(), "personal assistant", "id")
    await _require_member_manager(session, viewer, member_id)
    _raise_if(_clean_pa(f, viewer.now.date()))
    await _check_skills(session, f, member_id)
    profile = await session.get(PaProfile, member_id)
    assert profile is not None
    _apply_pa(profile, f)
    await session.flush()
    if isinstance(f.skills, list):
        await _replace_skills(session, member_id, f.skills)
    return member_id


# --- carers and regular PAs --------------------------------------------------------------


async def link_carer(
    session: AsyncSession,
    viewer: Viewer,
    carer_id: int,
    service_user_id: int,
    relationship: str | None,
) -> int:
    """Link (or re-link, updating the relationship when one is given); returns the
    service user's id."""
    require_manager(viewer)
    await _require_managed_service_user(session, viewer, service_user_id, "serviceUserId")
    await _require_visible(session, viewer, carer_id, _is_carer(), "carer", "carerId")
    text = _relationship(relationship)
    stmt = insert(CarerLink).values(
        carer_id=carer_id, service_user_id=service_user_id, relationship=text
    )
    if text is None:
        stmt = stmt.on_conflict_do_nothing()
    else:
        stmt = stmt.on_conflict_do_update(
            index_elements=[CarerLink.carer_id, CarerLink.service_user_id],
            set_={"relationship": text},
        )
    await session.execute(stmt)
    return service_user_id


async def unlink_carer(
    session: AsyncSession, viewer: Viewer, carer_id: int, service_user_id: int
) -> int:
    require_manager(viewer)
    await _require_managed_service_user(session, viewer, service_user_id, "serviceUserId")
    await _require_visible(session, viewer, carer_id, _is_carer(), "carer", "carerId")
    result = await session.execute(
        delete(CarerLink).where(
            CarerLink.carer_id == carer_id, CarerLink.service_user_id == service_user_id
        )
    )
    if result.rowcount == 0:  # type: ignore[attr-defined]
        raise DomainError(
            ErrorCode.NOT_FOUND, "That carer is not linked to this person.", "carerId"
        )
    return service_user_id


async def set_regular_personal_assistants(
    session: AsyncSession, viewer: Viewer, service_user_id: int, pa_ids: list[int]
) -> int:
    """Replace the person's regular PAs with exactly these (an empty list clears them)."""
    require_manager(viewer)
    await _require_managed_service_user(session, viewer, service_user_id, "serviceUserId")
    wanted = set(pa_ids)
    if await _visible_ids(session, viewer, wanted, _is_pa()) != wanted:
        raise not_found("personal assistant", "paIds")
    await session.execute(
        delete(RegularPa).where(
            RegularPa.service_user_id == service_user_id, RegularPa.pa_id.not_in(wanted)
        )
    )
    if wanted:
        await session.execute(
            insert(RegularPa)
            .values([{"service_user_id": service_user_id, "pa_id": p} for p in sorted(wanted)])
            .on_conflict_do_nothing()
        )
    return service_user_id
