"""one guard on a PA's time: pa_commitment

A PA's visits and absences were guarded separately (`visit_pa_no_overlap`,
`absence_no_overlap`), so nothing in the database stopped a visit inside an absence, and
`acceptCoverOffer` racing `recordAbsence` could leave one. Every commitment of a PA's time
(an active visit, an active absence, and later a federation hold) now has a row in
`pa_commitment`, kept in step with its source by triggers, and one exclusion constraint
refuses two overlapping commitments of one PA, whoever writes and however concurrently.

The upgrade fails, naming the rows, if existing data already books a PA while away.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-28 04:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The visits that hold a PA's time: the same set as `visit_pa_no_overlap`.
ACTIVE_VISIT = "NEW.pa_id IS NOT NULL AND NEW.status IN ('SCHEDULED', 'COMPLETED')"

# Each trigger keeps one source's row: inserted when the source starts holding the PA's
# time, moved with it, deleted when it stops. AFTER ROW triggers run inside the writing
# statement, so the exclusion constraint refuses that very statement.
VISIT_FUNCTION = f"""
CREATE FUNCTION pa_commitment_from_visit() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    was boolean := TG_OP <> 'INSERT'
        AND OLD.pa_id IS NOT NULL AND OLD.status IN ('SCHEDULED', 'COMPLETED');
    is_now boolean := TG_OP <> 'DELETE' AND {ACTIVE_VISIT};
BEGIN
    IF was AND NOT is_now THEN
        DELETE FROM pa_commitment WHERE visit_id = OLD.id;
    ELSIF is_now AND NOT was THEN
        INSERT INTO pa_commitment (pa_id, during, kind, visit_id)
        VALUES (NEW.pa_id, NEW.during, 'VISIT', NEW.id);
    ELSIF is_now AND (OLD.pa_id, OLD.during) IS DISTINCT FROM (NEW.pa_id, NEW.during) THEN
        UPDATE pa_commitment SET pa_id = NEW.pa_id, during = NEW.during
        WHERE visit_id = NEW.id;
    END IF;
    RETURN NULL;
END $$
"""

ABSENCE_FUNCTION = """
CREATE FUNCTION pa_commitment_from_absence() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    was boolean := TG_OP <> 'INSERT' AND OLD.cancelled_at IS NULL;
    is_now boolean := TG_OP <> 'DELETE' AND NEW.cancelled_at IS NULL;
BEGIN
    IF was AND NOT is_now THEN
        DELETE FROM pa_commitment WHERE absence_id = OLD.id;
    ELSIF is_now AND NOT was THEN
        INSERT INTO pa_commitment (pa_id, during, kind, absence_id)
        VALUES (NEW.pa_id, NEW.during, 'ABSENCE', NEW.id);
    ELSIF is_now AND (OLD.pa_id, OLD.during) IS DISTINCT FROM (NEW.pa_id, NEW.during) THEN
        UPDATE pa_commitment SET pa_id = NEW.pa_id, during = NEW.during
        WHERE absence_id = NEW.id;
    END IF;
    RETURN NULL;
END $$
"""

CONFLICTS = """
SELECT v.pa_id, v.id AS visit_id, v.status, v.during AS visit_during,
       a.id AS absence_id, a.during AS absence_during
FROM visit v
JOIN absence a ON a.pa_id = v.pa_id AND a.during && v.during
WHERE v.pa_id IS NOT NULL AND v.status IN ('SCHEDULED', 'COMPLETED')
  AND a.cancelled_at IS NULL
ORDER BY v.pa_id, lower(v.during)
LIMIT 20
"""


def _refuse_conflicting_data() -> None:
    rows = op.get_bind().execute(sa.text(CONFLICTS)).all()
    if not rows:
        return
    listed = "\n".join(
        f"  PA {r.pa_id}: {r.status} visit {r.visit_id} {r.visit_during} "
        f"inside absence {r.absence_id} {r.absence_during}"
        for r in rows
    )
    raise RuntimeError(
        "Migration 0006 (pa_commitment) stopped: existing data books PAs while they are "
        "away. For each pair below, cancel or shorten the absence, or unassign or cancel "
        f"the visit, then upgrade again (at most 20 shown):\n{listed}"
    )


def upgrade() -> None:
    # No visit or absence may change between the check, the backfill and the triggers.
    op.execute("LOCK TABLE visit, absence IN SHARE ROW EXCLUSIVE MODE")
    _refuse_conflicting_data()
    op.create_table(
        "pa_commitment",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("pa_id", sa.BigInteger(), nullable=False),
        sa.Column("during", postgresql.TSTZRANGE(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("visit_id", sa.BigInteger(), nullable=True),
        sa.Column("absence_id", sa.BigInteger(), nullable=True),
        postgresql.ExcludeConstraint(
            (sa.text("pa_id"), "="),
            (sa.text("during"), "&&"),
            using="gist",
            name="pa_commitment_no_overlap",
        ),
        sa.CheckConstraint(
            "NOT isempty(during) AND NOT lower_inf(during) AND NOT upper_inf(during)",
            name=op.f("ck_pa_commitment_during_bounded"),
        ),
        sa.CheckConstraint(
            "kind IN ('VISIT', 'ABSENCE', 'HOLD')", name=op.f("ck_pa_commitment_kind_valid")
        ),
        # Exactly one source, of the row's kind. Holds bring their own column and widen
        # this check; until then a HOLD row cannot be written.
        sa.CheckConstraint(
            "num_nonnulls(visit_id, absence_id) = 1 "
            "AND (kind = 'VISIT') = (visit_id IS NOT NULL) "
            "AND (kind = 'ABSENCE') = (absence_id IS NOT NULL)",
            name=op.f("ck_pa_commitment_one_source"),
        ),
        sa.ForeignKeyConstraint(
            ["pa_id"],
            ["pa_profile.member_id"],
            name=op.f("fk_pa_commitment_pa_id_pa_profile"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["visit_id"],
            ["visit.id"],
            name=op.f("fk_pa_commitment_visit_id_visit"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["absence_id"],
            ["absence.id"],
            name=op.f("fk_pa_commitment_absence_id_absence"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pa_commitment")),
        sa.UniqueConstraint("visit_id", name=op.f("uq_pa_commitment_visit_id")),
        sa.UniqueConstraint("absence_id", name=op.f("uq_pa_commitment_absence_id")),
    )
    op.execute(
        """
        INSERT INTO pa_commitment (pa_id, during, kind, visit_id)
        SELECT pa_id, during, 'VISIT', id FROM visit
        WHERE pa_id IS NOT NULL AND status IN ('SCHEDULED', 'COMPLETED')
        """
    )
    op.execute(
        """
        INSERT INTO pa_commitment (pa_id, during, kind, absence_id)
        SELECT pa_id, during, 'ABSENCE', id FROM absence WHERE cancelled_at IS NULL
        """
    )
    op.execute(VISIT_FUNCTION)
    op.execute(ABSENCE_FUNCTION)
    # Only the columns that decide a commitment fire the triggers (not check-ins, notes).
    op.execute(
        "CREATE TRIGGER visit_pa_commitment AFTER INSERT OR DELETE OR UPDATE OF pa_id, "
        "during, status ON visit FOR EACH ROW EXECUTE FUNCTION pa_commitment_from_visit()"
    )
    op.execute(
        "CREATE TRIGGER absence_pa_commitment AFTER INSERT OR DELETE OR UPDATE OF pa_id, "
        "during, cancelled_at ON absence FOR EACH ROW "
        "EXECUTE FUNCTION pa_commitment_from_absence()"
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER absence_pa_commitment ON absence")
    op.execute("DROP TRIGGER visit_pa_commitment ON visit")
    op.execute("DROP FUNCTION pa_commitment_from_absence()")
    op.execute("DROP FUNCTION pa_commitment_from_visit()")
    op.drop_table("pa_commitment")
