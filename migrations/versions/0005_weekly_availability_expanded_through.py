"""weekly availability remembers how far it was expanded

Before, a top-up restarted after the latest window a PA's patterns had made, so removing
that window (an exception) brought it back. Each pattern now records the last local date
it was expanded through; existing patterns are backfilled from their windows.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26 12:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("weekly_availability", sa.Column("expanded_through", sa.Date(), nullable=True))
    op.execute(
        """
        UPDATE weekly_availability w
        SET expanded_through = x.last_day
        FROM (
            SELECT weekly_availability_id AS id,
                   max((lower(during) AT TIME ZONE 'Europe/London')::date) AS last_day
            FROM availability_window
            WHERE weekly_availability_id IS NOT NULL
            GROUP BY weekly_availability_id
        ) x
        WHERE x.id = w.id
        """
    )


def downgrade() -> None:
    op.drop_column("weekly_availability", "expanded_through")
