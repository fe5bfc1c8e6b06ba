"""One way to write a mutation, in the spirit of Saleor's base mutation: who may call it
(`schema.permissions.Access`, declared with `mutation(access=...)`), its payload error
type (`schema.errors.ErrorArea`) and the kinds of ids it takes (`IdKind`) are declared
once. `Ids` decodes the id arguments; `perform` runs the service in a savepoint, commits
it, and builds the payload. `perform_steps` does the same for a flow that commits in more
than one step (a call to a partner instance is never made inside an open transaction).

What a response says is true of the database:
- payload `errors` (typed codes): the field changed nothing;
- a payload without errors: the change is committed, whatever later fields do;
- the field `null` with a top-level `INTERNAL_SERVER_ERROR` at its path: something
  unexpected failed; `extensions.committed` says whether the change was committed before
  (only reading the payload back failed) or not at all;
- any other error at a path inside a committed field's payload (a nested field that could
  not be read) carries `extensions.committed: true` too.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import strawberry
from graphql import GraphQLError
from sqlalchemy.ext.asyncio import AsyncSession

from care.errors import DomainError, DomainErrors, not_found
from care.viewer import Viewer
from schema.context import Info
from schema.error_codes import INTERNAL_MESSAGE
from schema.errors import ErrorArea
from schema.mutations.runner import run_mutation
from schema.permissions import MEMBER_TYPES, Access, decode_id, guard

T = TypeVar("T")
E = TypeVar("E")
P = TypeVar("P")

NO_ID = -1  # what a bad id decodes to: never a row


def mutation(*, access: Access, description: str | None = None) -> Any:
    """`strawberry.mutation` with its access rule. The field's payload type must be
    nullable (`-> XPayload | None`): an unexpected failure then nulls this field only."""
    return strawberry.mutation(description=description, extensions=guard(access))


@dataclass(frozen=True)
class IdKind:
    """The node types an id argument accepts, and what to call it in errors."""

    type_names: tuple[str, ...]
    what: str


CLUSTER_ID = IdKind(("Cluster",), "cluster")
POOL_ID = IdKind(("Pool",), "pool")
PA_ID = IdKind(("PersonalAssistant",), "personal assistant")
SERVICE_USER_ID = IdKind(("ServiceUser",), "service user")
CARER_ID = IdKind(("Carer",), "carer")
MEMBER_ID = IdKind(MEMBER_TYPES, "member")
VISIT_ID = IdKind(("Visit",), "visit")
WINDOW_ID = IdKind(("AvailabilityWindow",), "availability window")
ABSENCE_ID = IdKind(("Absence",), "absence")
COVER_REQUEST_ID = IdKind(("CoverRequest",), "cover request")
COVER_OFFER_ID = IdKind(("CoverOffer",), "cover offer")
REFERRAL_ID = IdKind(("Referral",), "referral")


@dataclass
class Ids:
    """Decodes a mutation's id arguments: one malformed, of another type, or out of range
    adds NOT_FOUND for its field (as an unknown record would) and the mutation runs no
    service at all."""

    errors: list[DomainError] = field(default_factory=list)

    def one(self, global_id: strawberry.ID, kind: IdKind, field_name: str) -> int:
        value = decode_id(global_id, *kind.type_names)
        if value is None:
            self.errors.append(not_found(kind.what, field_name))
            return NO_ID
        return value

    def optional(
        self, global_id: strawberry.ID | None, kind: IdKind, field_name: str
    ) -> int | None:
        return None if global_id is None else self.one(global_id, kind, field_name)

    def many(self, global_ids: Sequence[strawberry.ID], kind: IdKind, field_name: str) -> list[int]:
        values = [decode_id(g, *kind.type_names) for g in global_ids]
        if any(v is None for v in values):
            self.errors.append(not_found(kind.what, field_name))
        return [v for v in values if v is not None]


Respond = Callable[[Info, T | None, list[E]], Awaitable[P]]


async def perform(
    info: Info,
    area: ErrorArea[E],
    action: Callable[[AsyncSession, Viewer], Awaitable[T]],
    respond: Respond[T, E, P],
    ids: Ids | None = None,
) -> P:
    """Run one mutation field: bad ids or a domain error give `respond(info, None,
    errors)`; success is committed, then `respond(info, result, [])` reads the payload
    back under the caller's privacy rules."""
    committed = False
    try:
        if ids is not None and ids.errors:
            return await respond(info, None, area.convert(ids.errors))
        try:
            result, errors = await run_mutation(info, action)
        except Exception:
            # Nothing of this field was committed; drop whatever it left in the
            # transaction so the document's later fields start clean.
            async with info.context.database():
                await info.context.session.rollback()
            info.context.clear_loaders()
            raise
        if errors:
            return await respond(info, None, area.convert(errors))
        committed = True
        info.context.committed.add(str(info.path.key))
        return await respond(info, result, [])
    except Exception as exc:
        raise _unexpected(exc, committed=committed) from None


class Steps(Protocol):
    """Runs one step of a flow in its own savepoint and commits it; a domain error or a
    violated constraint rolls the step back and is raised as `DomainError(s)`."""

    def __call__(self, step: Callable[[AsyncSession], Awaitable[T]]) -> Awaitable[T]: ...


async def perform_steps(
    info: Info,
    area: ErrorArea[E],
    flow: Callable[[Steps], Awaitable[tuple[T | None, list[DomainError]]]],
    respond: Respond[T, E, P],
) -> P:
    """Run one mutation field whose flow commits step by step: each step is its own
    committed transaction, so what an earlier step recorded (e.g. a failed call to a
    partner) survives the errors the payload reports. The flow returns the record
    concerned (or None) and its errors; a domain error it raises is reported with no
    record. The payload is `respond(info, record, errors)`; anything unexpected rolls back
    what is open and nulls the field, telling whether a step was committed."""
    committed = False

    async def steps(step: Callable[[AsyncSession], Awaitable[Any]]) -> Any:
        nonlocal committed
        result, errors = await run_mutation(info, lambda session, _viewer: step(session))
        if errors:
            if len(errors) == 1:
                raise errors[0]
            raise DomainErrors(errors)
        committed = True
        info.context.committed.add(str(info.path.key))
        return result

    try:
        try:
            record, errors = await flow(steps)
        except DomainError as exc:
            record, errors = None, [exc]
        except DomainErrors as exc:
            record, errors = None, exc.errors
        return await respond(info, record, area.convert(errors))
    except Exception as exc:
        async with info.context.database():
            await info.context.session.rollback()
        info.context.clear_loaders()
        raise _unexpected(exc, committed=committed) from None


def _unexpected(exc: Exception, *, committed: bool) -> Exception:
    """The same exception, telling whether the field's change was committed: GraphQL
    copies an exception's `extensions` into its error, and `CoopSchema.process_errors`
    logs it once and sets the code (INTERNAL_SERVER_ERROR unless it was a coded error)."""
    try:
        exc.extensions = {**(getattr(exc, "extensions", None) or {}), "committed": committed}  # type: ignore[attr-defined]
    except (AttributeError, TypeError):  # an exception type that takes no attributes
        return GraphQLError(
            INTERNAL_MESSAGE, original_error=exc, extensions={"committed": committed}
        )
    return exc


async def no_payload() -> None:
    return None
