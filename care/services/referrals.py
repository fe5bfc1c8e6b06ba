"""Referrals: people waiting for care, the demand that drives expansion.

A referral is demand, not a case file: a local authority, a postcode district (never a
full postcode: one given is cut to its district), needs, the hours a week wanted, the
date referred and a status. No name or address. It is still personal data, so:
- Who: admins, and coordinators of a cluster (not closed) in the referral's local
  authority or a neighbouring one (`policy.referral_visible`): the co-op grows across the
  boundary into the neighbouring authority, and those coordinators weigh the demand
  there. Everyone else is FORBIDDEN before anything is read (the GraphQL rule MANAGING
  already keeps them out).
- A referral the caller may not see is NOT_FOUND, like an unknown id. Recording one in,
  or moving one to, a local authority outside the coordinator's area is FORBIDDEN (local
  authorities are public: the refusal reveals no referral).
- Input: a known local authority; a postcode district (or a postcode, cut to its
  district); hours a week more than 0 and at most 168 (two decimals); a referral date not
  in the future; needs normalised to codes, empty ones dropped, duplicates removed (at
  most 50, each at most 200 characters), each an active NEED term of the care vocabulary
  (`care.vocabulary`, else UNKNOWN_CARE_TERM); a note of at most 1000 characters. The
  database holds each rule it can (migrations 0013, 0018).
- Status: WAITING (new), OFFERED, PLACED, WITHDRAWN; any change between them is allowed
  (an offer can fall through, a withdrawn person can come back).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

from sqlalchemy import exists, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from care import policy, vocabulary
from care.enums import ReferralStatus, Role
from care.errors import DomainError, DomainErrors, ErrorCode, forbidden, not_found
from care.geography import postcode_district
from care.models import MAX_REFERRAL_HOURS, LocalAuthority, Referral
from care.services.access import require_manager
from care.services.visits import LONDON
from care.viewer import Viewer

MAX_NEEDS = 50
MAX_NEED_LENGTH = 200
MAX_REFERRAL_NOTE = 1000
HOURS_STEP = Decimal("0.01")


@dataclass(frozen=True)
class NewReferral:
    la_code: str
    postcode_district: str
    hours_per_week: float
    referred_on: dt.date
    needs: list[str]
    note: str | None = None


@dataclass(frozen=True)
class ReferralChange:
    """Fields to change; None leaves a field as it is. An empty note clears the note."""

    la_code: str | None = None
    postcode_district: str | None = None
    hours_per_week: float | None = None
    referred_on: dt.date | None = None
    needs: list[str] | None = None
    status: ReferralStatus | None = None
    note: str | None = None


# --- checks ------------------------------------------------------------------------------


def _district(value: str, errors: list[DomainError]) -> str | None:
    district = postcode_district(value)
    if district is None:
        errors.append(
            DomainError(
                ErrorCode.INVALID,
                "Give a postcode district such as N12 (or a postcode, of which only the "
                "district is kept).",
                "postcodeDistrict",
            )
        )
    return district


def _hours(value: float, errors: list[DomainError]) -> Decimal | None:
    try:
        hours = Decimal(str(value)).quantize(HOURS_STEP, rounding=ROUND_HALF_UP)
    except InvalidOperation:
        hours = None
    if hours is None or not hours.is_finite() or not 0 < hours <= MAX_REFERRAL_HOURS:
        errors.append(
            DomainError(
                ErrorCode.INVALID,
                f"Hours a week must be more than 0 and at most {MAX_REFERRAL_HOURS}.",
                "hoursPerWeek",
            )
        )
        return None
    return hours


def _referred_on(value: dt.date, today: dt.date, errors: list[DomainError]) -> None:
    if value > today:
        errors.append(
            DomainError(
                ErrorCode.INVALID_RANGE, "A referral date cannot be in the future.", "referredOn"
            )
        )


def _needs(values: list[str], errors: list[DomainError]) -> list[str]:
    # Codes of the care vocabulary (care.vocabulary), checked once the shape is right.
    cleaned = vocabulary.normalise_all(values)
    if len(cleaned) > MAX_NEEDS or any(len(v) > MAX_NEED_LENGTH for v in cleaned):
        errors.append(
            DomainError(
                ErrorCode.INVALID,
                f"At most {MAX_NEEDS} needs, each at most {MAX_NEED_LENGTH} characters.",
                "needs",
            )
        )
    return cleaned


def _note(value: str, errors: list[DomainError]) -> str | None:
    text = value.strip()
    if len(text) > MAX_REFERRAL_NOTE:
        errors.append(
            DomainError(
                ErrorCode.INVALID,
                f"Keep the note under {MAX_REFERRAL_NOTE} characters.",
                "note",
            )
        )
    return text or None


async def _check_area(
    session: AsyncSession, viewer: Viewer, la_code: str, errors: list[DomainError]
) -> None:
    """The local authority exists and (for a coordinator) lies in their area."""
    known = await session.scalar(select(exists().where(LocalAuthority.gss_code == la_code)))
    if not known:
        errors.append(not_found("local authority", "localAuthority"))
        return
    if viewer.role is Role.ADMIN:
        return
    ours = exists().where(
        LocalAuthority.gss_code == la_code,
        policy.in_referral_area(viewer, LocalAuthority.gss_code),
    )
    if not await session.scalar(select(ours)):
        errors.append(
            forbidden(
                "Coordinators record referrals in the local authority of a cluster they "
                "support, or a neighbouring one.",
                "localAuthority",
            )
        )


def _today(viewer: Viewer) -> dt.date:
    return viewer.now.astimezone(LONDON).date()  # the date in the UK


# --- writes ------------------------------------------------------------------------------


async def record_referral(session: AsyncSession, viewer: Viewer, new: NewReferral) -> int:
    require_manager(viewer, "Only admins and coordinators record referrals.")
    errors: list[DomainError] = []
    district = _district(new.postcode_district, errors)
    hours = _hours(new.hours_per_week, errors)
    _referred_on(new.referred_on, _today(viewer), errors)
    needs = _needs(new.needs, errors)
    note = _note(new.note, errors) if new.note is not None else None
    await _check_area(session, viewer, new.la_code, errors)
    if errors:
        raise DomainErrors(errors)
    await vocabulary.require_terms(session, needs, "needs", need=True)
    referral = Referral(
        la_code=new.la_code,
        postcode_district=district,
        needs=needs,
        hours_per_week=hours,
        referred_on=new.referred_on,
        status=ReferralStatus.WAITING.value,
        note=note,
        recorded_by_id=viewer.member_id,
    )
    session.add(referral)
    await session.flush()
    return referral.id


async def update_referral(
    session: AsyncSession, viewer: Viewer, referral_id: int, change: ReferralChange
) -> int:
    require_manager(viewer, "Only admins and coordinators change referrals.")
    referral = await session.scalar(
        select(Referral)
        .where(Referral.id == referral_id, policy.referral_visible(viewer, Referral.la_code))
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if referral is None:
        raise not_found("referral")
    errors: list[DomainError] = []
    district = (
        _district(change.postcode_district, errors)
        if change.postcode_district is not None
        else None
    )
    hours = _hours(change.hours_per_week, errors) if change.hours_per_week is not None else None
    if change.referred_on is not None:
        _referred_on(change.referred_on, _today(viewer), errors)
    needs = _needs(change.needs, errors) if change.needs is not None else None
    note = _note(change.note, errors) if change.note is not None else None
    if change.la_code is not None and change.la_code != referral.la_code:
        await _check_area(session, viewer, change.la_code, errors)
    if errors:
        raise DomainErrors(errors)
    if needs is not None:
        await vocabulary.require_terms(session, needs, "needs", need=True, held=referral.needs)
    if change.la_code is not None:
        referral.la_code = change.la_code
    if district is not None:
        referral.postcode_district = district
    if hours is not None:
        referral.hours_per_week = hours
    if change.referred_on is not None:
        referral.referred_on = change.referred_on
    if needs is not None:
        referral.needs = needs
    if change.status is not None:
        referral.status = change.status.value
    if change.note is not None:
        referral.note = note
    referral.updated_at = func.now()  # type: ignore[assignment]
    await session.flush()
    return referral_id
