"""Revoking bearer tokens over GraphQL (admins): all of a member's, or one by its id.

Tokens are checked on every request and live event (care/tokens.py), so a revocation takes
effect at the next one. Deactivating a member (`updateMember`) cuts their tokens too.
"""

from __future__ import annotations

from typing import Annotated

import strawberry

from care import tokens as service
from schema.context import Info
from schema.errors import MEMBER, MemberError
from schema.mutations.base import MEMBER_ID, Ids, mutation, perform
from schema.permissions import ADMINS


@strawberry.type(description="What a token revocation did.")
class RevokeTokensPayload:
    revoked: bool = strawberry.field(
        description="False when nothing changed (the token was already revoked)."
    )
    errors: list[MemberError] = strawberry.field(
        description="Why nothing was changed; empty means the revocation was committed."
    )


async def _respond(
    info: Info, revoked: bool | None, errors: list[MemberError]
) -> RevokeTokensPayload:
    return RevokeTokensPayload(revoked=bool(revoked) and not errors, errors=errors)


@strawberry.type
class TokenMutations:
    @mutation(
        access=ADMINS,
        description=(
            "Refuse every token issued to the member until now (admins); tokens issued "
            "later work. For a lost phone or a leaked token."
        ),
    )
    async def revoke_member_tokens(
        self,
        info: Info,
        member_id: Annotated[strawberry.ID, strawberry.argument(description="The member's id.")],
    ) -> RevokeTokensPayload | None:
        ids = Ids()
        mid = ids.one(member_id, MEMBER_ID, "memberId")
        return await perform(
            info,
            MEMBER,
            lambda s, v: service.revoke_member_tokens_as(s, v, mid),
            _respond,
            ids,
        )

    @mutation(
        access=ADMINS,
        description=(
            "Refuse one token, by its id (its `jti` claim, printed by `coopnet token "
            "issue`) (admins). Admin and LA analyst tokens, which name no member, are "
            "revoked this way."
        ),
    )
    async def revoke_token(
        self,
        info: Info,
        jti: Annotated[str, strawberry.argument(description="The token's id (its jti claim).")],
    ) -> RevokeTokensPayload | None:
        return await perform(
            info, MEMBER, lambda s, v: service.revoke_token_as(s, v, jti), _respond
        )
