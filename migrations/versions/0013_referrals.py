"""referrals: people waiting for care

`referral` holds demand, not case files: a local authority, a postcode district, needs,
the hours a week wanted, the date referred and a status (WAITING, OFFERED, PLACED,
WITHDRAWN). No name, address or full postcode. Checks hold the district's shape, the
hours (more than 0, at most 168), the status and the text bounds (as care.models).

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-28 08:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "referral",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("la_code", sa.String(length=9), nullable=False),
        sa.Column("postcode_district", sa.String(length=4), nullable=False),
        sa.Column(
            "needs", postgresql.ARRAY(sa.Text()), server_default=sa.text("'{}'"), nullable=False
        ),
        sa.Column("hours_per_week", sa.Numeric(5, 2), nullable=False),
        sa.Column("referred_on", sa.Date(), nullable=False),
        sa.Column("status", sa.String(length=16), server_default="WAITING", nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("recorded_by_id", sa.BigInteger(), nullable=True),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.CheckConstraint(
            "status IN ('WAITING', 'OFFERED', 'PLACED', 'WITHDRAWN')",
            name=op.f("ck_referral_status_valid"),
        ),
        sa.CheckConstraint(
            "postcode_district ~ '^[A-Z]{1,2}[0-9][0-9A-Z]?$'",
            name=op.f("ck_referral_postcode_district_valid"),
        ),
        sa.CheckConstraint(
            "hours_per_week > 0 AND hours_per_week <= 168",
            name=op.f("ck_referral_hours_per_week_bounded"),
        ),
        sa.CheckConstraint(
            "cardinality(needs) <= 50 AND length(array_to_string(needs, '')) <= 10000",
            name=op.f("ck_referral_needs_length"),
        ),
        sa.CheckConstraint("length(note) <= 1000", name=op.f("ck_referral_note_length")),
        sa.ForeignKeyConstraint(
            ["la_code"],
            ["local_authority.gss_code"],
            name=op.f("fk_referral_la_code_local_authority"),
        ),
        sa.ForeignKeyConstraint(
            ["recorded_by_id"],
            ["member.id"],
            name=op.f("fk_referral_recorded_by_id_member"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_referral")),
    )
    op.create_index(
        "ix_referral_la_status_district",
        "referral",
        ["la_code", "status", "postcode_district"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index("ix_referral_la_status_district", table_name="referral")
    op.drop_table("referral")
