"""The co-op's care vocabulary: the codes PA skills and people's needs are written in.

A need is met only by a PA skill with exactly the same code (`care.candidates`), so both
come from one table, `care_term` (migration 0018, which seeded common UK social-care
terms and mapped the old free text). Rules:

- A code is lower-case letters and digits in words joined by single hyphens
  (`personal-care`), at most 100 characters. Input is normalised the same way before it
  is looked up ("Personal Care" -> `personal-care`); synonyms are not guessed.
- Skills may use any term; needs, need tags and referrals' needs only NEED terms.
- Only active terms may be newly given. A record keeps an inactive term it already holds
  (so saving it unchanged still works); the co-op deactivates rather than deletes.
- Unknown, inactive or wrong-kind codes: UNKNOWN_CARE_TERM, naming them; nothing changes.
- Admins add, edit, deactivate and delete terms; deleting a term in use is IN_USE.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import Exists, Select, exists, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from care.enums import CareTermKind, Role
from care.errors import DomainError, ErrorCode, forbidden
from care.models import (
    CARE_TERM_CODE_PATTERN,
    CareTerm,
    Cluster,
    PaSkill,
    Referral,
    ServiceUserProfile,
)
from care.viewer import Viewer

CODE = re.compile(CARE_TERM_CODE_PATTERN)
MAX_CODE = 100
MAX_LABEL = 200
MAX_DESCRIPTION = 2000


def normalise(value: str) -> str:
    """'  Personal Care ' -> 'personal-care'; "Parkinson's" -> 'parkinsons'."""
    lowered = re.sub(r"['\u2019]", "", value.strip().lower())
    return re.sub(r"[^a-z0-9]+", "-", lowered).strip("-")


def normalise_all(values: Iterable[str]) -> list[str]:
    """Codes from input, blanks dropped, each once, sorted."""
    return sorted({c for c in (normalise(v) for v in values) if c})


async def require_terms(
    session: AsyncSession,
    codes: Iterable[str],
    field: str,
    *,
    need: bool,
    held: Iterable[str] = (),
) -> None:
    """Raise UNKNOWN_CARE_TERM unless every code is an active term of the right kind (a
    code in `held`, already on the record, may be inactive)."""
    wanted = set(codes)
    if not wanted:
        return
    kinds = [CareTermKind.NEED.value] if need else [k.value for k in CareTermKind]
    kept = set(held)
    rows = await session.execute(
        select(CareTerm.code, CareTerm.active).where(
            CareTerm.code.in_(wanted), CareTerm.kind.in_(kinds)
        )
    )
    usable = {code for code, active in rows if active or code in kept}
    unknown = sorted(wanted - usable)
    if unknown:
        what = "needs" if need else "skills"
        raise DomainError(
            ErrorCode.UNKNOWN_CARE_TERM,
            f"Not active {what} of the co-op's care vocabulary: {', '.join(unknown)}. "
            "Use codes from careTerms.",
            field,
        )


def term_select(viewer: Viewer) -> Select:
    """Every term of the vocabulary, a column per field (both read paths: `careTerms`'
    resolver and the compiled path). Nothing in it is private: who may read it at all is
    the field's access rule, so the viewer changes nothing."""
    return select(
        CareTerm.code,
        CareTerm.label,
        CareTerm.description,
        CareTerm.kind,
        CareTerm.active,
        CareTerm.needs_review,
        CareTerm.updated_at,
    )


# Pickers list terms by label; two terms may share one, so the code settles their order.
TERM_ORDER = (CareTerm.label, CareTerm.code)


def term_filters(
    stmt: Select,
    *,
    need_only: bool,
    include_inactive: bool,
    needs_review: bool | None,
) -> Select:
    """The vocabulary for pickers: NEED terms only for need pickers; active terms unless
    asked for inactive ones or for those awaiting review (all inactive). The arguments
    decide the SQL, and none is a parameter: the compiled path builds a statement for each
    of their shapes."""
    if need_only:
        stmt = stmt.where(CareTerm.kind == CareTermKind.NEED.value)
    if not include_inactive and not needs_review:
        stmt = stmt.where(CareTerm.active)
    if needs_review is not None:
        stmt = stmt.where(CareTerm.needs_review == needs_review)
    return stmt


# --- managing the vocabulary (admins) ---------------------------------------------------


@dataclass
class TermFields:
    label: str | None = None
    description: str | None = None
    kind: CareTermKind | None = None
    active: bool | None = None


def _require_admin(viewer: Viewer) -> None:
    if viewer.role is not Role.ADMIN:
        raise forbidden("Only admins manage the care vocabulary.")


def _check_fields(f: TermFields) -> None:
    if f.label is not None:
        f.label = f.label.strip()
        if not f.label:
            raise DomainError(ErrorCode.REQUIRED, "A care term needs a label.", "label")
        if len(f.label) > MAX_LABEL:
            raise DomainError(
                ErrorCode.INVALID, f"A label is at most {MAX_LABEL} characters.", "label"
            )
    if f.description is not None:
        f.description = f.description.strip()
        if len(f.description) > MAX_DESCRIPTION:
            message = f"A description is at most {MAX_DESCRIPTION} characters."
            raise DomainError(ErrorCode.INVALID, message, "description")


async def add_term(session: AsyncSession, viewer: Viewer, code: str, f: TermFields) -> str:
    _require_admin(viewer)
    # The code is taken as given, not normalised: it is what frontends will store.
    if len(code) > MAX_CODE or not CODE.match(code):
        raise DomainError(
            ErrorCode.INVALID,
            "A code is lower-case letters and digits in words joined by single hyphens "
            f"(e.g. personal-care), at most {MAX_CODE} characters.",
            "code",
        )
    if f.label is None:
        raise DomainError(ErrorCode.REQUIRED, "A care term needs a label.", "label")
    _check_fields(f)
    if await session.scalar(select(exists().where(CareTerm.code == code))):
        raise DomainError(ErrorCode.ALREADY_EXISTS, "A care term with that code exists.", "code")
    session.add(
        CareTerm(
            code=code,
            label=f.label,
            description=f.description or "",
            kind=(f.kind or CareTermKind.NEED).value,
            active=True if f.active is None else f.active,
        )
    )
    await session.flush()
    return code


async def _term(session: AsyncSession, code: str) -> CareTerm:
    term = await session.get(CareTerm, code, with_for_update=True)
    if term is None:
        raise DomainError(ErrorCode.NOT_FOUND, "No care term with that code.", "code")
    return term


def _uses(code: str) -> list[Exists]:
    return [
        exists().where(PaSkill.skill == code),
        exists().where(ServiceUserProfile.needs.contains([code])),
        exists().where(Cluster.need_tags.contains([code])),
        exists().where(Referral.needs.contains([code])),
    ]


async def _used_as_need(session: AsyncSession, code: str) -> bool:
    return bool(await session.scalar(select(or_(*_uses(code)[1:]))))


async def update_term(session: AsyncSession, viewer: Viewer, code: str, f: TermFields) -> str:
    """Change a term's label, description, kind or active flag. Reviewing a term (any
    change by an admin) clears `needs_review`."""
    _require_admin(viewer)
    _check_fields(f)
    term = await _term(session, code)
    if f.kind is CareTermKind.SKILL and term.kind != f.kind.value:
        if await _used_as_need(session, code):
            raise DomainError(
                ErrorCode.IN_USE,
                "Some needs or need tags use this term: it cannot become skill-only.",
                "kind",
            )
    if f.label is not None:
        term.label = f.label
    if f.description is not None:
        term.description = f.description
    if f.kind is not None:
        term.kind = f.kind.value
    if f.active is not None:
        term.active = f.active
    term.needs_review = False
    term.updated_at = func.now()  # type: ignore[assignment]
    await session.flush()
    return code


async def delete_term(session: AsyncSession, viewer: Viewer, code: str) -> str:
    """Delete a term nobody uses (a mistake); one in use is deactivated instead."""
    _require_admin(viewer)
    term = await _term(session, code)
    if await session.scalar(select(or_(*_uses(code)))):
        raise DomainError(
            ErrorCode.IN_USE,
            "Skills, needs or referrals use this term: deactivate it instead.",
            "code",
        )
    await session.delete(term)
    await session.flush()
    return code
