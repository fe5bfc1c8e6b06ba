"""federation: partnerships between instances

One row per partner instance (by base URL) on each side: status, direction, the scopes
asked for and agreed, the partner's manifest (co-op, local authorities, keys), the key
for the pseudonymous references given to it, our cursor in its availability feed and the
last contact or error. `federation_audit.reason` gains the refusals that come from the
partnership rather than the signature. See docs/federation.md.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-28 06:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD_REASONS = (
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
# The same as care.enums.SignatureRefusal at this revision.
REASONS = (
    *OLD_REASONS,
    "PARTNERSHIP_SUSPENDED",
    "PARTNERSHIP_ENDED",
    "OUT_OF_SCOPE",
    "NOT_A_PARTNER",
)


def _reasons_check(reasons: Sequence[str]) -> None:
    op.drop_constraint(op.f("ck_federation_audit_reason_valid"), "federation_audit", type_="check")
    values = ", ".join(f"'{r}'" for r in reasons)
    op.create_check_constraint(
        op.f("ck_federation_audit_reason_valid"), "federation_audit", f"reason IN ({values})"
    )


def upgrade() -> None:
    op.create_table(
        "partnership",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("base_url", sa.Text(), nullable=False),
        sa.Column("graphql_endpoint", sa.Text(), nullable=False),
        sa.Column("proposal_ref", sa.UUID(), nullable=False),
        sa.Column("direction", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("requested_scopes", postgresql.ARRAY(sa.Text()), nullable=False),
        sa.Column(
            "granted_scopes",
            postgresql.ARRAY(sa.Text()),
            server_default=sa.text("'{}'::text[]"),
            nullable=False,
        ),
        sa.Column("suspended_by", sa.String(length=16), nullable=True),
        sa.Column("protocol_version", sa.String(length=64), nullable=False),
        sa.Column("coop_name", sa.Text(), nullable=True),
        sa.Column("home_la_code", sa.String(length=9), nullable=True),
        sa.Column(
            "local_authorities",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'[]'::jsonb"),
            nullable=False,
        ),
        sa.Column(
            "keys",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'[]'::jsonb"),
            nullable=False,
        ),
        sa.Column("manifest_fetched_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("pseudonym_key", sa.LargeBinary(), nullable=False),
        sa.Column("feed_cursor", sa.Text(), nullable=True),
        sa.Column("last_sync_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_contact_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("last_error_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("proposed_by_id", sa.BigInteger(), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "status IN ('PROPOSED', 'ACTIVE', 'REJECTED', 'SUSPENDED', 'ENDED')",
            name=op.f("ck_partnership_status_valid"),
        ),
        sa.CheckConstraint(
            "direction IN ('OUTGOING', 'INCOMING')", name=op.f("ck_partnership_direction_valid")
        ),
        sa.CheckConstraint(
            "suspended_by IS NULL OR suspended_by IN ('US', 'PARTNER')",
            name=op.f("ck_partnership_suspended_by_valid"),
        ),
        sa.CheckConstraint(
            "(status = 'SUSPENDED') = (suspended_by IS NOT NULL)",
            name=op.f("ck_partnership_suspension_has_side"),
        ),
        sa.CheckConstraint(
            "requested_scopes <@ ARRAY['AVAILABILITY','COVER','MARKET_DATA']::text[]"
            " AND granted_scopes <@ requested_scopes",
            name=op.f("ck_partnership_scopes_valid"),
        ),
        sa.CheckConstraint(
            "status NOT IN ('ACTIVE', 'SUSPENDED') OR cardinality(granted_scopes) > 0",
            name=op.f("ck_partnership_agreed_scopes_present"),
        ),
        sa.CheckConstraint("length(base_url) <= 500", name=op.f("ck_partnership_base_url_length")),
        sa.CheckConstraint(
            "length(last_error) <= 2000", name=op.f("ck_partnership_last_error_length")
        ),
        sa.ForeignKeyConstraint(
            ["proposed_by_id"],
            ["member.id"],
            name=op.f("fk_partnership_proposed_by_id_member"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_partnership")),
        sa.UniqueConstraint("base_url", name=op.f("uq_partnership_base_url")),
        sa.UniqueConstraint("proposal_ref", name=op.f("uq_partnership_proposal_ref")),
    )
    op.create_table(
        "partner_window",
        sa.Column("partnership_id", sa.BigInteger(), nullable=False),
        sa.Column("ref", sa.Text(), nullable=False),
        sa.Column("period", sa.Integer(), nullable=False),
        sa.Column("pa_ref", sa.Text(), nullable=False),
        sa.Column("skills", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("district", sa.Text(), nullable=True),
        sa.Column("travel_km", sa.Numeric(precision=6, scale=2), nullable=False),
        sa.Column("during", postgresql.TSTZRANGE(), nullable=False),
        sa.Column(
            "received_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "NOT isempty(during) AND NOT lower_inf(during) AND NOT upper_inf(during)",
            name=op.f("ck_partner_window_during_bounded"),
        ),
        sa.CheckConstraint("length(ref) <= 100", name=op.f("ck_partner_window_ref_length")),
        sa.CheckConstraint("length(pa_ref) <= 100", name=op.f("ck_partner_window_pa_ref_length")),
        sa.CheckConstraint("length(district) <= 8", name=op.f("ck_partner_window_district_length")),
        sa.CheckConstraint("travel_km >= 0", name=op.f("ck_partner_window_travel_non_negative")),
        sa.ForeignKeyConstraint(
            ["partnership_id"],
            ["partnership.id"],
            name=op.f("fk_partner_window_partnership_id_partnership"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("partnership_id", "ref", "period", name=op.f("pk_partner_window")),
    )
    op.create_index(
        "ix_partner_window_during", "partner_window", ["during"], postgresql_using="gist"
    )
    op.create_index(op.f("ix_partner_window_district"), "partner_window", ["district"])
    _reasons_check(REASONS)


def downgrade() -> None:
    op.execute(
        "DELETE FROM federation_audit WHERE reason NOT IN ("
        + ", ".join(f"'{r}'" for r in OLD_REASONS)
        + ")"
    )
    _reasons_check(OLD_REASONS)
    op.drop_table("partner_window")
    op.drop_table("partnership")
