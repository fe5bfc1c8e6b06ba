"""The care vocabulary in the schema: `careTerms` for pickers (any signed-in member of the
co-op), and the admins' mutations to add, edit, deactivate and delete terms. The rules
are `care.vocabulary`."""

from __future__ import annotations

import datetime as dt
from enum import Enum
from typing import Annotated

import strawberry
from sqlalchemy import select

from care.enums import CareTermKind
from care.models import CareTerm as CareTermRow
from care.vocabulary import TermFields, add_term, delete_term, terms, update_term
from schema.context import Info
from schema.errors import CARE_TERM, CareTermError
from schema.mutations.base import mutation, perform
from schema.permissions import ADMINS, COOP, guard
from schema.types import document_enum

document_enum(
    CareTermKind,
    "What a care term may be used for.",
    {
        "NEED": "A need a person may have (needs, cluster need tags, referrals), and the PA "
        "skill that meets it: a need is met only by a skill with the same code.",
        "SKILL": "A PA skill or training only (e.g. first-aid); never a need.",
    },
)


@strawberry.enum(description="Which pickers a care term belongs in.")
class CareTermUse(Enum):
    SKILL = strawberry.enum_value("SKILL", description="PA skills: every term.")
    NEED = strawberry.enum_value("NEED", description="Needs and need tags: NEED terms only.")


@strawberry.type(
    description="A term of the co-op's care vocabulary: skills, needs, cluster need tags "
    "and referrals' needs are written in its codes."
)
class CareTerm:
    code: str = strawberry.field(
        description="The code stored and matched, e.g. personal-care: lower-case words "
        "joined by hyphens; never changes."
    )
    label: str = strawberry.field(description="The name to show, e.g. Personal care.")
    description: str = strawberry.field(description="What the term covers; may be empty.")
    kind: CareTermKind = strawberry.field(description="What the term may be used for.")
    active: bool = strawberry.field(
        description="Whether it may be newly given; records keep an inactive term they hold."
    )
    needs_review: bool = strawberry.field(
        description="Added by the migration from free text it could not map (inactive): "
        "an admin should describe and activate it, or replace it. Editing clears it."
    )
    updated_at: dt.datetime = strawberry.field(description="When it was last changed.")


def term_from_row(row: CareTermRow) -> CareTerm:
    return CareTerm(
        code=row.code,
        label=row.label,
        description=row.description,
        kind=CareTermKind(row.kind),
        active=row.active,
        needs_review=row.needs_review,
        updated_at=row.updated_at,
    )


@strawberry.type
class CareTermQueries:
    @strawberry.field(
        description="The co-op's care vocabulary, ordered by label: what frontends build "
        "skill and need pickers from. Active terms only unless `includeInactive`.",
        extensions=guard(COOP),
    )
    async def care_terms(
        self,
        info: Info,
        use: Annotated[
            CareTermUse | None,
            strawberry.argument(description="Only terms usable this way; all when omitted."),
        ] = None,
        include_inactive: Annotated[
            bool,
            strawberry.argument(description="Include inactive terms (e.g. to show old data)."),
        ] = False,
        needs_review: Annotated[
            bool | None,
            strawberry.argument(
                description="Only terms awaiting review (true) or only reviewed ones (false)."
            ),
        ] = None,
    ) -> list[CareTerm]:
        query = terms(
            need_only=use is CareTermUse.NEED,
            include_inactive=include_inactive,
            needs_review=needs_review,
        )
        rows = await info.context.rows(query)
        return [term_from_row(r[0]) for r in rows]


@strawberry.input(description="A new care term.")
class AddCareTermInput:
    code: str = strawberry.field(
        description="Lower-case letters and digits in words joined by single hyphens, at "
        "most 100 characters (e.g. tracheostomy-care); cannot be changed later."
    )
    label: str = strawberry.field(description="The name to show, at most 200 characters.")
    description: str | None = strawberry.field(
        default=None, description="What it covers, at most 2000 characters."
    )
    kind: CareTermKind | None = strawberry.field(default=None, description="NEED when omitted.")


@strawberry.input(description="Fields to change; those left out (or null) stay as they are.")
class UpdateCareTermInput:
    label: str | None = strawberry.field(default=None, description="A new label.")
    description: str | None = strawberry.field(default=None, description="A new description.")
    kind: CareTermKind | None = strawberry.field(
        default=None, description="A new kind; SKILL is refused while needs use the term."
    )
    active: bool | None = strawberry.field(
        default=None,
        description="false deactivates (no new uses; records keep it), true reactivates.",
    )


@strawberry.type(description="The result of a change to the care vocabulary.")
class CareTermPayload:
    care_term: CareTerm | None = strawberry.field(
        description="The term as it now is; null when errors is non-empty or it was deleted."
    )
    errors: list[CareTermError] = strawberry.field(
        description="Why nothing was changed; empty means the change was committed."
    )


async def _respond(
    info: Info, code: str | None, errors: list[CareTermError], deleted: bool = False
) -> CareTermPayload:
    term = None
    if code is not None and not deleted:
        rows = await info.context.rows(select(CareTermRow).where(CareTermRow.code == code))
        term = term_from_row(rows[0][0]) if rows else None
    return CareTermPayload(care_term=term, errors=errors)


async def _respond_deleted(
    info: Info, code: str | None, errors: list[CareTermError]
) -> CareTermPayload:
    return await _respond(info, code, errors, deleted=True)


CodeArg = Annotated[str, strawberry.argument(description="The term's code.")]


@strawberry.type
class CareTermMutations:
    @mutation(
        access=ADMINS,
        description="Add a term to the care vocabulary (admins): ALREADY_EXISTS for a "
        "code in use, INVALID for a malformed one.",
    )
    async def add_care_term(
        self,
        info: Info,
        input: Annotated[AddCareTermInput, strawberry.argument(description="The new term.")],
    ) -> CareTermPayload | None:
        fields = TermFields(label=input.label, description=input.description, kind=input.kind)
        return await perform(
            info, CARE_TERM, lambda s, v: add_term(s, v, input.code, fields), _respond
        )

    @mutation(
        access=ADMINS,
        description="Change a term's label, description, kind or active flag (admins); "
        "clears needsReview. Deactivating keeps the term on the records that hold it.",
    )
    async def update_care_term(
        self,
        info: Info,
        code: CodeArg,
        input: Annotated[UpdateCareTermInput, strawberry.argument(description="What to change.")],
    ) -> CareTermPayload | None:
        fields = TermFields(
            label=input.label, description=input.description, kind=input.kind, active=input.active
        )
        return await perform(
            info, CARE_TERM, lambda s, v: update_term(s, v, code, fields), _respond
        )

    @mutation(
        access=ADMINS,
        description="Delete a term nobody uses, e.g. one added by mistake (admins): IN_USE "
        "when a skill, need, need tag or referral holds it (deactivate it instead).",
    )
    async def delete_care_term(self, info: Info, code: CodeArg) -> CareTermPayload | None:
        return await perform(
            info, CARE_TERM, lambda s, v: delete_term(s, v, code), _respond_deleted
        )
