"""cross-boundary cover: cover_exchange, its events, holds, partner clusters

`cover_exchange` is one instance's side of a cover exchange with a partner co-op
(REQUESTING: our person, their PA; PROVIDING: their person, our PA). A PROVIDING exchange
that is HELD, ACCEPTED or CONFIRMED holds its PA's time: a trigger keeps a HOLD row in
`pa_commitment`, so the one exclusion constraint that keeps visits and absences apart
keeps holds apart from both. `cover_exchange_event` records every status change with who
made it. A cover request may now be filled by a partner (`filled_by_partner`), and reopens
with reason PARTNER_CANCELLED when that falls through. `partner_cluster` keeps the
clusters partners tell us they opened in our local authorities.

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-28 09:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

LIVE = "('HELD', 'ACCEPTED', 'CONFIRMED')"

# As the visit and absence triggers of 0006: an AFTER ROW trigger inside the writing
# statement, so the exclusion constraint refuses that very statement.
EXCHANGE_FUNCTION = f"""
CREATE FUNCTION pa_commitment_from_exchange() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    was boolean := TG_OP <> 'INSERT'
        AND OLD.side = 'PROVIDING' AND OLD.pa_id IS NOT NULL AND OLD.status IN {LIVE};
    is_now boolean := TG_OP <> 'DELETE'
        AND NEW.side = 'PROVIDING' AND NEW.pa_id IS NOT NULL AND NEW.status IN {LIVE};
BEGIN
    IF was AND NOT is_now THEN
        DELETE FROM pa_commitment WHERE exchange_id = OLD.id;
    ELSIF is_now AND NOT was THEN
        INSERT INTO pa_commitment (pa_id, during, kind, exchange_id)
        VALUES (NEW.pa_id, NEW.during, 'HOLD', NEW.id);
    ELSIF is_now AND (OLD.pa_id, OLD.during) IS DISTINCT FROM (NEW.pa_id, NEW.during) THEN
        UPDATE pa_commitment SET pa_id = NEW.pa_id, during = NEW.during
        WHERE exchange_id = NEW.id;
    END IF;
    RETURN NULL;
END $$
"""

STATUSES = "'HELD', 'ACCEPTED', 'CONFIRMED', 'DECLINED', 'EXPIRED', 'CANCELLED'"


def upgrade() -> None:
    op.create_table(
        "cover_exchange",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("ref", sa.UUID(), nullable=False),
        sa.Column("partnership_id", sa.BigInteger(), nullable=False),
        sa.Column("side", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("during", postgresql.TSTZRANGE(), nullable=False),
        sa.Column("district", sa.Text(), nullable=True),
        sa.Column(
            "skills", postgresql.ARRAY(sa.Text()), server_default=sa.text("'{}'"), nullable=False
        ),
        sa.Column("pa_ref", sa.Text(), nullable=False),
        sa.Column("hold_expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("visit_id", sa.BigInteger(), nullable=True),
        sa.Column("cover_request_id", sa.BigInteger(), nullable=True),
        sa.Column("pa_id", sa.BigInteger(), nullable=True),
        sa.Column("pa_first_name", sa.Text(), nullable=True),
        sa.Column("person_first_name", sa.Text(), nullable=True),
        sa.Column("person_address", sa.Text(), nullable=True),
        sa.Column("care_summary", sa.Text(), nullable=True),
        sa.Column("cancelled_by", sa.String(length=16), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("created_by_id", sa.BigInteger(), nullable=True),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.CheckConstraint(
            "NOT isempty(during) AND NOT lower_inf(during) AND NOT upper_inf(during)",
            name=op.f("ck_cover_exchange_during_bounded"),
        ),
        sa.CheckConstraint(
            "side IN ('REQUESTING', 'PROVIDING')", name=op.f("ck_cover_exchange_side_valid")
        ),
        sa.CheckConstraint(f"status IN ({STATUSES})", name=op.f("ck_cover_exchange_status_valid")),
        sa.CheckConstraint(
            "side = 'PROVIDING' OR pa_id IS NULL",
            name=op.f("ck_cover_exchange_pa_on_providing_side"),
        ),
        sa.CheckConstraint(
            "side = 'REQUESTING' OR (visit_id IS NULL AND cover_request_id IS NULL)",
            name=op.f("ck_cover_exchange_visit_on_requesting_side"),
        ),
        sa.CheckConstraint(
            "cancelled_by IS NULL OR cancelled_by IN ('US', 'PARTNER')",
            name=op.f("ck_cover_exchange_cancelled_by_valid"),
        ),
        sa.CheckConstraint(
            "(status = 'CANCELLED') = (cancelled_by IS NOT NULL)",
            name=op.f("ck_cover_exchange_cancellation_has_side"),
        ),
        sa.CheckConstraint("length(pa_ref) <= 100", name=op.f("ck_cover_exchange_pa_ref_length")),
        sa.CheckConstraint("length(district) <= 8", name=op.f("ck_cover_exchange_district_length")),
        sa.CheckConstraint(
            "cardinality(skills) <= 50 AND length(array_to_string(skills, '')) <= 2000",
            name=op.f("ck_cover_exchange_skills_length"),
        ),
        sa.CheckConstraint(
            "length(pa_first_name) <= 100", name=op.f("ck_cover_exchange_pa_first_name_length")
        ),
        sa.CheckConstraint(
            "length(person_first_name) <= 100",
            name=op.f("ck_cover_exchange_person_first_name_length"),
        ),
        sa.CheckConstraint(
            "length(person_address) <= 500",
            name=op.f("ck_cover_exchange_person_address_length"),
        ),
        sa.CheckConstraint(
            "length(care_summary) <= 2000", name=op.f("ck_cover_exchange_care_summary_length")
        ),
        sa.CheckConstraint("length(reason) <= 500", name=op.f("ck_cover_exchange_reason_length")),
        sa.ForeignKeyConstraint(
            ["partnership_id"],
            ["partnership.id"],
            name=op.f("fk_cover_exchange_partnership_id_partnership"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["visit_id"],
            ["visit.id"],
            name=op.f("fk_cover_exchange_visit_id_visit"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["cover_request_id"],
            ["cover_request.id"],
            name=op.f("fk_cover_exchange_cover_request_id_cover_request"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["pa_id"],
            ["pa_profile.member_id"],
            name=op.f("fk_cover_exchange_pa_id_pa_profile"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["created_by_id"],
            ["member.id"],
            name=op.f("fk_cover_exchange_created_by_id_member"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cover_exchange")),
        sa.UniqueConstraint("partnership_id", "ref", name="uq_cover_exchange_partnership_ref"),
    )
    op.create_index(op.f("ix_cover_exchange_partnership_id"), "cover_exchange", ["partnership_id"])
    op.create_index(op.f("ix_cover_exchange_visit_id"), "cover_exchange", ["visit_id"])
    op.create_index(
        op.f("ix_cover_exchange_cover_request_id"), "cover_exchange", ["cover_request_id"]
    )
    op.create_index(op.f("ix_cover_exchange_pa_id"), "cover_exchange", ["pa_id"])
    op.create_index(
        "uq_cover_exchange_live_request",
        "cover_exchange",
        ["cover_request_id"],
        unique=True,
        postgresql_where=sa.text(f"status IN {LIVE}"),
    )
    op.create_index(
        "ix_cover_exchange_pending_expiry",
        "cover_exchange",
        ["hold_expires_at"],
        postgresql_where=sa.text("status IN ('HELD', 'ACCEPTED')"),
    )

    op.create_table(
        "cover_exchange_event",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("exchange_id", sa.BigInteger(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("by_side", sa.String(length=16), nullable=False),
        sa.Column("by_member_id", sa.BigInteger(), nullable=True),
        sa.Column("by_role", sa.String(length=32), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.CheckConstraint(
            f"status IN ({STATUSES})", name=op.f("ck_cover_exchange_event_status_valid")
        ),
        sa.CheckConstraint(
            "by_side IN ('US', 'PARTNER', 'SYSTEM')",
            name=op.f("ck_cover_exchange_event_by_side_valid"),
        ),
        sa.CheckConstraint(
            "length(by_role) <= 32", name=op.f("ck_cover_exchange_event_by_role_length")
        ),
        sa.CheckConstraint("length(note) <= 500", name=op.f("ck_cover_exchange_event_note_length")),
        sa.ForeignKeyConstraint(
            ["exchange_id"],
            ["cover_exchange.id"],
            name=op.f("fk_cover_exchange_event_exchange_id_cover_exchange"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["by_member_id"],
            ["member.id"],
            name=op.f("fk_cover_exchange_event_by_member_id_member"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cover_exchange_event")),
    )
    op.create_index(
        "ix_cover_exchange_event_exchange_at", "cover_exchange_event", ["exchange_id", "at"]
    )

    op.create_table(
        "partner_cluster",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("partnership_id", sa.BigInteger(), nullable=False),
        sa.Column("ref", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("la_code", sa.String(length=9), nullable=False),
        sa.Column("district", sa.Text(), nullable=True),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "received_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.CheckConstraint("length(ref) <= 100", name=op.f("ck_partner_cluster_ref_length")),
        sa.CheckConstraint("length(name) <= 200", name=op.f("ck_partner_cluster_name_length")),
        sa.CheckConstraint(
            "length(district) <= 8", name=op.f("ck_partner_cluster_district_length")
        ),
        sa.ForeignKeyConstraint(
            ["partnership_id"],
            ["partnership.id"],
            name=op.f("fk_partner_cluster_partnership_id_partnership"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_partner_cluster")),
        sa.UniqueConstraint("partnership_id", "ref", name="uq_partner_cluster_partnership_ref"),
    )
    op.create_index(
        op.f("ix_partner_cluster_partnership_id"), "partner_cluster", ["partnership_id"]
    )
    op.create_index(op.f("ix_partner_cluster_la_code"), "partner_cluster", ["la_code"])

    # Holds join the one guard on a PA's time.
    op.add_column("pa_commitment", sa.Column("exchange_id", sa.BigInteger(), nullable=True))
    op.create_foreign_key(
        op.f("fk_pa_commitment_exchange_id_cover_exchange"),
        "pa_commitment",
        "cover_exchange",
        ["exchange_id"],
        ["id"],
        ondelete="CASCADE",
    )
    op.create_unique_constraint(
        op.f("uq_pa_commitment_exchange_id"), "pa_commitment", ["exchange_id"]
    )
    op.drop_constraint(op.f("ck_pa_commitment_one_source"), "pa_commitment", type_="check")
    op.create_check_constraint(
        op.f("ck_pa_commitment_one_source"),
        "pa_commitment",
        "num_nonnulls(visit_id, absence_id, exchange_id) = 1 "
        "AND (kind = 'VISIT') = (visit_id IS NOT NULL) "
        "AND (kind = 'ABSENCE') = (absence_id IS NOT NULL) "
        "AND (kind = 'HOLD') = (exchange_id IS NOT NULL)",
    )
    op.execute(EXCHANGE_FUNCTION)
    op.execute(
        "CREATE TRIGGER pa_commitment_from_exchange "
        "AFTER INSERT OR UPDATE OR DELETE ON cover_exchange "
        "FOR EACH ROW EXECUTE FUNCTION pa_commitment_from_exchange()"
    )

    # A cover request filled by a partner's PA, or reopened when that falls through.
    op.add_column(
        "cover_request",
        sa.Column(
            "filled_by_partner", sa.Boolean(), server_default=sa.text("false"), nullable=False
        ),
    )
    op.drop_constraint(op.f("ck_cover_request_filled_has_pa"), "cover_request", type_="check")
    op.create_check_constraint(
        op.f("ck_cover_request_filled_has_pa"),
        "cover_request",
        "(status = 'FILLED') = (filled_by_pa_id IS NOT NULL OR filled_by_partner)",
    )
    # PARTNER_CANCELLED is 17 characters: the column was 16.
    op.alter_column(
        "cover_request",
        "reason",
        type_=sa.String(length=32),
        existing_type=sa.String(length=16),
        existing_nullable=False,
    )
    op.drop_constraint(op.f("ck_cover_request_reason_valid"), "cover_request", type_="check")
    op.create_check_constraint(
        op.f("ck_cover_request_reason_valid"),
        "cover_request",
        "reason IN ('ABSENCE', 'MISSED', 'MANUAL', 'PARTNER_CANCELLED')",
    )


def downgrade() -> None:
    op.execute("DELETE FROM cover_request WHERE reason = 'PARTNER_CANCELLED'")
    op.execute(
        "UPDATE cover_request SET status = 'CANCELLED', closed_at = coalesce(closed_at, now()) "
        "WHERE filled_by_partner AND filled_by_pa_id IS NULL"
    )
    op.drop_constraint(op.f("ck_cover_request_reason_valid"), "cover_request", type_="check")
    op.create_check_constraint(
        op.f("ck_cover_request_reason_valid"),
        "cover_request",
        "reason IN ('ABSENCE', 'MISSED', 'MANUAL')",
    )
    op.alter_column(
        "cover_request",
        "reason",
        type_=sa.String(length=16),
        existing_type=sa.String(length=32),
        existing_nullable=False,
    )
    op.drop_constraint(op.f("ck_cover_request_filled_has_pa"), "cover_request", type_="check")
    op.create_check_constraint(
        op.f("ck_cover_request_filled_has_pa"),
        "cover_request",
        "(status = 'FILLED') = (filled_by_pa_id IS NOT NULL)",
    )
    op.drop_column("cover_request", "filled_by_partner")
    op.execute("DROP TRIGGER pa_commitment_from_exchange ON cover_exchange")
    op.execute("DROP FUNCTION pa_commitment_from_exchange()")
    op.execute("DELETE FROM pa_commitment WHERE kind = 'HOLD'")
    op.drop_constraint(op.f("ck_pa_commitment_one_source"), "pa_commitment", type_="check")
    op.create_check_constraint(
        op.f("ck_pa_commitment_one_source"),
        "pa_commitment",
        "num_nonnulls(visit_id, absence_id) = 1 "
        "AND (kind = 'VISIT') = (visit_id IS NOT NULL) "
        "AND (kind = 'ABSENCE') = (absence_id IS NOT NULL)",
    )
    op.drop_constraint(op.f("uq_pa_commitment_exchange_id"), "pa_commitment", type_="unique")
    op.drop_constraint(
        op.f("fk_pa_commitment_exchange_id_cover_exchange"), "pa_commitment", type_="foreignkey"
    )
    op.drop_column("pa_commitment", "exchange_id")
    op.drop_table("partner_cluster")
    op.drop_table("cover_exchange_event")
    op.drop_table("cover_exchange")
