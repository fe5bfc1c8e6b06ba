"""federation: nonces of accepted signatures, audit of refused ones

`federation_nonce` holds (keyid, nonce) of every accepted server-to-server signature
until it expires (plus the clock skew allowed): inserting one that is there already is a
replay, refused by whichever process sees it. `federation_audit` records every refusal
(no body). See docs/federation.md.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-28 05:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The same as care.enums.SignatureRefusal at this revision.
REASONS = (
    "NO_SIGNATURE",
    "BAD_SIGNATURE",
    "DIGEST_MISMATCH",
    "EXPIRED",
    "NOT_YET_VALID",
    "EXPIRES_TOO_LATE",
    "REPLAYED_NONCE",
    "UNKNOWN_KEY",
    "MISSING_COMPONENT",
)


def upgrade() -> None:
    op.create_table(
        "federation_nonce",
        sa.Column("keyid", sa.String(length=200), nullable=False),
        sa.Column("nonce", sa.String(length=128), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("keyid", "nonce", name=op.f("pk_federation_nonce")),
    )
    op.create_index(
        op.f("ix_federation_nonce_expires_at"), "federation_nonce", ["expires_at"], unique=False
    )
    values = ", ".join(f"'{r}'" for r in REASONS)
    op.create_table(
        "federation_audit",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column(
            "at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.Column("remote_addr", sa.String(length=64), nullable=True),
        sa.Column("keyid", sa.String(length=200), nullable=True),
        sa.Column("reason", sa.String(length=32), nullable=False),
        sa.Column("method", sa.String(length=16), nullable=False),
        sa.Column("path", sa.String(length=2000), nullable=False),
        sa.CheckConstraint(f"reason IN ({values})", name=op.f("ck_federation_audit_reason_valid")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_federation_audit")),
    )
    op.create_index(op.f("ix_federation_audit_at"), "federation_audit", ["at"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_federation_audit_at"), table_name="federation_audit")
    op.drop_table("federation_audit")
    op.drop_index(op.f("ix_federation_nonce_expires_at"), table_name="federation_nonce")
    op.drop_table("federation_nonce")
