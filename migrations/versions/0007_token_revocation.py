"""token revocation: revoked tokens by jti; a member's tokens_valid_after

Every request checks its token against these (see api/auth.py): a token whose `jti` is in
`revoked_token`, or issued at or before its member's `tokens_valid_after`, or whose member
is inactive, is refused. Deactivating a member moves `tokens_valid_after` (trigger), so
re-activating them later does not revive the tokens they had.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-28 04:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "member", sa.Column("tokens_valid_after", sa.DateTime(timezone=True), nullable=True)
    )
    op.create_table(
        "revoked_token",
        sa.Column("jti", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("member_id", sa.BigInteger(), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "revoked_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["member_id"],
            ["member.id"],
            name=op.f("fk_revoked_token_member_id_member"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("jti", name=op.f("pk_revoked_token")),
    )
    op.create_index(
        op.f("ix_revoked_token_member_id"), "revoked_token", ["member_id"], unique=False
    )
    op.create_index(
        op.f("ix_revoked_token_expires_at"), "revoked_token", ["expires_at"], unique=False
    )
    # Whoever deactivates a member (updateMember, SQL by hand), their tokens stop working
    # and stay dead if the member is re-activated.
    op.execute(
        """
        CREATE FUNCTION member_deactivated_revokes_tokens() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            IF OLD.active AND NOT NEW.active THEN
                NEW.tokens_valid_after := greatest(NEW.tokens_valid_after, clock_timestamp());
            END IF;
            RETURN NEW;
        END
        $$
        """
    )
    op.execute(
        """
        CREATE TRIGGER member_deactivated_revokes_tokens
        BEFORE UPDATE OF active ON member
        FOR EACH ROW EXECUTE FUNCTION member_deactivated_revokes_tokens()
        """
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER member_deactivated_revokes_tokens ON member")
    op.execute("DROP FUNCTION member_deactivated_revokes_tokens()")
    op.drop_index(op.f("ix_revoked_token_expires_at"), table_name="revoked_token")
    op.drop_index(op.f("ix_revoked_token_member_id"), table_name="revoked_token")
    op.drop_table("revoked_token")
    op.drop_column("member", "tokens_valid_after")
