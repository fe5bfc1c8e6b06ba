"""Revoking bearer tokens over GraphQL (admins): all of a member's, or one by its id.

Tokens are checked on every request and live event (care/tokens.py), so a revocation takes
effect at the next one. Deactivating a member (`updateMember`) cuts their tokens too.
"""

from __future__ import annotations

import strawberry
from strawberry import relay

from care import tokens as service
from care.errors import DomainError
from schema.context import Info
from schema.errors import MemberError, MemberErrorCode, to_errors
from schema.mutations.runner import run_mutation
from schema.permissions import MEMBER_TYPES, decode_id, unauthenticated


@strawberry.type
class RevokeTokensPayload:
    revoked: bool = strawberry.field(
        description="False when nothing changed (the token was already revoked)."
    )
    errors: list[MemberError]


def _payload(revoked: bool | None, errors: list[DomainError]) -> RevokeTokensPayload:
    return RevokeTokensPayload(
        revoked=bool(revoked) and not errors,
        errors=to_errors(MemberError, MemberErrorCode, errors),
    )


@strawberry.type
class TokenMutations:
    @strawberry.mutation(
        description=(
            "Refuse every token issued to the member until now (admins); tokens issued "
            "later work. For a lost phone or a leaked token."
        )
    )
    async def revoke_member_tokens(
        self, info: Info, member_id: relay.GlobalID
    ) -> RevokeTokensPayload:
        if info.context.viewer.is_anonymous:
            raise unauthenticated()
        found = decode_id(member_id, *MEMBER_TYPES)
        mid = -1 if found is None else found  # -1: no member, NOT_FOUND after the role check
        revoked, errors = await run_mutation(
            info, lambda s, v: service.revoke_member_tokens_as(s, v, mid)
        )
        return _payload(revoked, errors)

    @strawberry.mutation(
        description=(
            "Refuse one token, by its id (its `jti` claim, printed by `coopnet token "
            "issue`) (admins). Admin and LA analyst tokens, which name no member, are "
            "revoked this way."
        )
    )
    async def revoke_token(self, info: Info, jti: str) -> RevokeTokensPayload:
        if info.context.viewer.is_anonymous:
            raise unauthenticated()
        revoked, errors = await run_mutation(info, lambda s, v: service.revoke_token_as(s, v, jti))
        return _payload(revoked, errors)
