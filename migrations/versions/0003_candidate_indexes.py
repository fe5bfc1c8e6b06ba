"""cover candidates: indexes for the candidate search

The search (care/candidates.py) starts from the availability windows that contain the
visit, then reads each remaining PA's active visits around it. Checked with EXPLAIN ANALYZE
on the benchmark data (bench/cover_candidates.py: 5,000 PAs, 200,000 visits, 100,000
windows):

- `availability_window.during @> visit`: the exclusion constraint's GiST index leads with
  pa_id, so a search on `during` alone walks most of it (about 10 ms). An SP-GiST index on
  `during` that includes pa_id answers it with an index-only scan (under 1 ms). (A GiST
  index on `during` is as fast, but larger than the constraint's index, so the planner
  kept choosing the constraint's.)
- A PA's active visits by start time: a partial btree on (pa_id, during) serves an
  index-only range scan; the partial GiST of the exclusion constraint answers the same
  question two to three times slower per PA, and the search asks it for hundreds of PAs.
- Absences (`absence_no_overlap`), a person's visits (`ix_visit_service_user_during`) and
  cover filled per PA (`ix_cover_request_filled_by_pa_id`) are already served.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26 10:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        "CREATE INDEX ix_availability_window_during ON availability_window "
        "USING spgist (during) INCLUDE (pa_id)"
    )
    op.execute(
        "CREATE INDEX ix_visit_pa_active_during ON visit (pa_id, during) "
        "WHERE pa_id IS NOT NULL AND status IN ('SCHEDULED', 'COMPLETED')"
    )


def downgrade() -> None:
    op.execute("DROP INDEX ix_visit_pa_active_during")
    op.execute("DROP INDEX ix_availability_window_during")
