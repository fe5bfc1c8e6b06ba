"""a visit lasts at most a day, in the database too

The application has always refused visits longer than 24 hours (care/services/visits.py).
As a check constraint it becomes something a query may rely on: a visit under way at an
instant began at most a day before it, so "visits from T" can read the start index from
T - 24h and stop at the end of its page (care/queries.py, `visit_start_bounds`), where it read every
visit that ever started before T. Validated separately, so the table is not locked for
writes while existing rows are checked.

Revision ID: 0022
Revises: 0021
Create Date: 2026-11-28 16:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0022"
down_revision: str | None = "0021"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        "ALTER TABLE visit ADD CONSTRAINT ck_visit_within_a_day"
        " CHECK (upper(during) - lower(during) <= interval '24 hours') NOT VALID"
    )
    op.execute("ALTER TABLE visit VALIDATE CONSTRAINT ck_visit_within_a_day")


def downgrade() -> None:
    op.execute("ALTER TABLE visit DROP CONSTRAINT ck_visit_within_a_day")
