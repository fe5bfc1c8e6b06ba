"""visit cancellation reason; trigram index for member name search

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26 11:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("visit", sa.Column("cancel_reason", sa.Text(), nullable=True))
    # pg_trgm ships with PostgreSQL (contrib), like btree_gist.
    op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    op.create_index(
        "ix_member_name_trgm",
        "member",
        ["name"],
        unique=False,
        postgresql_using="gin",
        postgresql_ops={"name": "gin_trgm_ops"},
    )


def downgrade() -> None:
    op.drop_index("ix_member_name_trgm", table_name="member", postgresql_using="gin")
    op.drop_column("visit", "cancel_reason")
