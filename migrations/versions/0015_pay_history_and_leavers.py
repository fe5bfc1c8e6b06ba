"""dated pay and leavers: pa_pay_rate, member.left_on

Market figures for councils compare PAs' pay with the living wages of each period and
count leavers, so pay gets a history and deactivation a date. Both are kept by triggers,
whatever code writes the profile or the member:

- `pa_pay_rate (pa_id, effective_from, hourly_pay_pence)`: inserting a PA profile, or
  changing its `hourly_pay_pence`, writes the rate from today's London date (a second
  change the same day replaces that day's rate). Existing PAs are backfilled from the day
  they joined.
- `member.left_on`: set to today's London date when a member is deactivated, cleared when
  re-activated. Members already inactive have no known date and stay NULL.

Revision ID: 0015
Revises: 0014
Create Date: 2026-11-28 09:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

LONDON_TODAY = "(now() AT TIME ZONE 'Europe/London')::date"

PAY_FUNCTION = f"""
CREATE FUNCTION pa_pay_rate_from_profile() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' OR OLD.hourly_pay_pence IS DISTINCT FROM NEW.hourly_pay_pence THEN
        INSERT INTO pa_pay_rate (pa_id, effective_from, hourly_pay_pence)
        VALUES (NEW.member_id, {LONDON_TODAY}, NEW.hourly_pay_pence)
        ON CONFLICT (pa_id, effective_from)
        DO UPDATE SET hourly_pay_pence = EXCLUDED.hourly_pay_pence, recorded_at = now();
    END IF;
    RETURN NULL;
END $$
"""

LEFT_FUNCTION = f"""
CREATE FUNCTION member_left_on() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.active AND NOT NEW.active THEN
        NEW.left_on := {LONDON_TODAY};
    ELSIF NOT OLD.active AND NEW.active THEN
        NEW.left_on := NULL;
    END IF;
    RETURN NEW;
END $$
"""


def upgrade() -> None:
    op.create_table(
        "pa_pay_rate",
        sa.Column("pa_id", sa.BigInteger(), nullable=False),
        sa.Column("effective_from", sa.Date(), nullable=False),
        sa.Column("hourly_pay_pence", sa.Integer(), nullable=False),
        sa.Column(
            "recorded_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.CheckConstraint("hourly_pay_pence > 0", name=op.f("ck_pa_pay_rate_pay_positive")),
        sa.CheckConstraint("hourly_pay_pence <= 100000", name=op.f("ck_pa_pay_rate_pay_bounded")),
        sa.ForeignKeyConstraint(
            ["pa_id"],
            ["pa_profile.member_id"],
            name=op.f("fk_pa_pay_rate_pa_id_pa_profile"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("pa_id", "effective_from", name=op.f("pk_pa_pay_rate")),
    )
    op.execute(
        "INSERT INTO pa_pay_rate (pa_id, effective_from, hourly_pay_pence) "
        "SELECT p.member_id, m.joined_on, p.hourly_pay_pence "
        "FROM pa_profile p JOIN member m ON m.id = p.member_id"
    )
    op.execute(PAY_FUNCTION)
    op.execute(
        "CREATE TRIGGER pa_pay_rate_from_profile "
        "AFTER INSERT OR UPDATE OF hourly_pay_pence ON pa_profile "
        "FOR EACH ROW EXECUTE FUNCTION pa_pay_rate_from_profile()"
    )
    op.add_column("member", sa.Column("left_on", sa.Date(), nullable=True))
    op.execute(LEFT_FUNCTION)
    op.execute(
        "CREATE TRIGGER member_left_on BEFORE UPDATE OF active ON member "
        "FOR EACH ROW EXECUTE FUNCTION member_left_on()"
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER member_left_on ON member")
    op.execute("DROP FUNCTION member_left_on()")
    op.drop_column("member", "left_on")
    op.execute("DROP TRIGGER pa_pay_rate_from_profile ON pa_profile")
    op.execute("DROP FUNCTION pa_pay_rate_from_profile()")
    op.drop_table("pa_pay_rate")
