"""indexes for the orders list screens choose (`orderBy`)

`visits(orderBy: START_ASC | START_DESC)`, `members(orderBy: NAME_ASC | NAME_DESC)` and
`coverRequests(orderBy: OPENED_ASC | OPENED_DESC)` are keyset-paginated on their sort key
and the id (the tiebreak): a btree on exactly those columns lets PostgreSQL read a page
in order (forwards or backwards) and stop, instead of sorting every visible row. The
index on `cover_request.opened_at` alone (0016, the market report) becomes
(opened_at, id), which serves the report as well.

Revision ID: 0021
Revises: 0019
Create Date: 2026-11-28 15:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0021"
down_revision: str | None = "0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_visit_start_id", "visit", [sa.text("lower(during)"), "id"])
    op.create_index("ix_member_name_id", "member", ["name", "id"])
    op.create_index("ix_cover_request_opened_at_id", "cover_request", ["opened_at", "id"])
    op.drop_index("ix_cover_request_opened_at", table_name="cover_request")


def downgrade() -> None:
    op.create_index("ix_cover_request_opened_at", "cover_request", ["opened_at"])
    op.drop_index("ix_cover_request_opened_at_id", table_name="cover_request")
    op.drop_index("ix_member_name_id", table_name="member")
    op.drop_index("ix_visit_start_id", table_name="visit")
