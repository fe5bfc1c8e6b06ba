"""Whether an issued token is still in force, and revoking tokens.

A signed token proves who it was issued to; these rules decide whether it still counts:
its `jti` is not revoked, and when it speaks for a member, that member exists, is active,
and had no "revoke all" (`tokens_valid_after`) after the token was issued. The check is
one statement on primary keys, run on every request and every live event.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass

from sqlalchemy import (
    ColumnElement,
    Select,
    bindparam,
    delete,
    exists,
    func,
    literal,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from care.enums import Role
from care.errors import DomainError, ErrorCode, forbidden, not_found
from care.models import Member, RevokedToken
from care.viewer import Viewer

# The longest a token may live. Admin tokens open everything and LA analyst tokens name no
# member (so only their jti can revoke them): both are kept shorter.
MAX_MEMBER_TTL = dt.timedelta(days=30)
MAX_ADMIN_TTL = dt.timedelta(days=7)
MAX_ANALYST_TTL = dt.timedelta(days=7)
LONGEST_TTL = max(MAX_MEMBER_TTL, MAX_ADMIN_TTL, MAX_ANALYST_TTL)


def max_ttl(role: Role) -> dt.timedelta:
    if role is Role.ADMIN:
        return MAX_ADMIN_TTL
    if role is Role.LA_ANALYST:
        return MAX_ANALYST_TTL
    return MAX_MEMBER_TTL


@dataclass(frozen=True)
class TokenRef:
    """What the in-force check needs from a verified token."""

    jti: uuid.UUID
    member_id: int | None
    issued_at: dt.datetime
    expires_at: dt.datetime


def in_force_clause(names_member: bool | None = None) -> ColumnElement[bool]:
    """True when the token still counts. Its values are the named parameters of
    `in_force_values`. For a token known to name a member or not (`names_member`), the
    check reads only what that token needs (an admin's reads no member). With None, one
    statement built once checks any token or none: the member's part holds when
    `token_member_id` is null, and every value null is true (the compiled read path adds
    it to its statement: schema/compiled)."""
    jti = bindparam("token_jti", type_=RevokedToken.jti.type)
    not_revoked = ~exists().where(RevokedToken.jti == jti)
    if names_member is False:
        return not_revoked
    member_id = bindparam("token_member_id", type_=Member.id.type)
    issued_at = bindparam("token_issued_at", type_=Member.tokens_valid_after.type)
    member_ok: ColumnElement[bool] = exists().where(
        Member.id == member_id,
        Member.active,
        (Member.tokens_valid_after.is_(None)) | (Member.tokens_valid_after < issued_at),
    )
    if names_member is None:
        member_ok = member_id.is_(None) | member_ok
    return member_ok & not_revoked


def in_force_values(ref: TokenRef | None) -> dict[str, object]:
    """The values of `in_force_clause` for a token, or for none."""
    if ref is None:
        return {"token_jti": None, "token_member_id": None, "token_issued_at": None}
    return {
        "token_jti": ref.jti,
        "token_member_id": ref.member_id,
        "token_issued_at": ref.issued_at,
    }


def in_force(ref: TokenRef) -> Select[bool]:
    """`SELECT <bool>`: one row, true when the token still counts."""
    return select(in_force_clause(ref.member_id is not None)).params(in_force_values(ref))


async def is_in_force(session: AsyncSession, ref: TokenRef) -> bool:
    return bool(await session.scalar(in_force(ref)))


async def revoke_token(
    session: AsyncSession, jti: uuid.UUID, expires_at: dt.datetime, member_id: int | None = None
) -> bool:
    """Revoke one token; False when it was already revoked. Rows past their token's
    expiry are pruned on the way (they can no longer match a token that verifies)."""
    await prune_revoked(session)
    inserted = await session.execute(
        insert(RevokedToken)
        .values(jti=jti, expires_at=expires_at, member_id=member_id)
        .on_conflict_do_nothing(index_elements=[RevokedToken.jti])
        .returning(literal(1))
    )
    return inserted.first() is not None


async def revoke_member_tokens(
    session: AsyncSession, member_id: int, now: dt.datetime | None = None
) -> bool:
    """Refuse every token issued to the member until now; False for an unknown member."""
    at = now or dt.datetime.now(dt.UTC)
    updated = await session.execute(
        update(Member)
        .where(Member.id == member_id)
        # Never earlier than a deactivation already set it (a NULL is ignored).
        .values(tokens_valid_after=func.greatest(Member.tokens_valid_after, at))
        .returning(Member.id)
    )
    return updated.first() is not None


async def prune_revoked(session: AsyncSession, now: dt.datetime | None = None) -> int:
    at = now or dt.datetime.now(dt.UTC)
    result = await session.execute(
        delete(RevokedToken).where(RevokedToken.expires_at < at).returning(RevokedToken.jti)
    )
    return len(result.all())


# --- for callers of the API (admins) -----------------------------------------------------


async def revoke_member_tokens_as(session: AsyncSession, viewer: Viewer, member_id: int) -> bool:
    if not viewer.is_admin:
        raise forbidden("Only admins revoke tokens.")
    if not await revoke_member_tokens(session, member_id):
        raise not_found("member", "memberId")
    return True


async def revoke_token_as(session: AsyncSession, viewer: Viewer, jti: str) -> bool:
    """False when the token was already revoked. Its expiry is not known from its id: the
    row is kept as long as any token can live (longer-lived ones are refused anyway)."""
    if not viewer.is_admin:
        raise forbidden("Only admins revoke tokens.")
    try:
        token_id = uuid.UUID(jti)
    except ValueError:
        raise DomainError(ErrorCode.INVALID, "Not a token id (a UUID).", "jti") from None
    return await revoke_token(session, token_id, dt.datetime.now(dt.UTC) + LONGEST_TTL)
