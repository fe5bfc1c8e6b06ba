"""The care vocabulary in the schema: `careTerms` for pickers (any signed-in member of the
co-op), and the admins' mutations to add, edit, deactivate and delete terms. The rules
are `care.vocabulary`."""

from __future__ import annotations

from typing import Annotated

import strawberry

from care.models import CareTerm as CareTermRow
from care.vocabulary import (
    TERM_ORDER,
    TermFields,
    add_term,
    delete_term,
    term_select,
    update_term,
)
from schema import filters
from schema.context import Info
from schema.errors import CARE_TERM, CareTermError
from schema.mutations.base import mutation, perform
from schema.permissions import ADMINS, COOP, guard
from schema.rows import Argument
from schema.types import CareTerm, CareTermKind, CareTermUse, root_list, term_from_row


@strawberry.type
class CareTermQueries:
    # Declared once for both read paths (`schema.types.root_list`): the resolver and the
    # compiled path read `care.vocabulary`'s select, order and filters.
    care_terms = root_list(
        "care_term",
        CareTerm,
        order=TERM_ORDER,
        filters=filters.CARE_TERMS,
        arguments=(
            Argument(
                "use",
                Annotated[
                    CareTermUse | None,
                    strawberry.argument(
                        description="Only terms usable this way; all when omitted."
                    ),
                ],
            ),
            Argument(
                "include_inactive",
                Annotated[
                    bool,
                    strawberry.argument(
                        description="Include inactive terms (e.g. to show old data)."
                    ),
                ],
                False,
            ),
            Argument(
                "needs_review",
                Annotated[
                    bool | None,
                    strawberry.argument(
                        description="Only terms awaiting review (true) or only reviewed ones "
                        "(false)."
                    ),
                ],
            ),
        ),
        description="The co-op's care vocabulary, ordered by label: what frontends build "
        "skill and need pickers from. Active terms only unless `includeInactive`.",
        extensions=guard(COOP),
    )


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
        stmt = term_select(info.context.viewer).where(CareTermRow.code == code)
        rows = await info.context.rows(stmt)
        term = term_from_row(rows[0]) if rows else None
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
