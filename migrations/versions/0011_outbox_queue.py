"""federation outbox: PgQueuer's job tables

The outbox of messages to partner instances is a PgQueuer queue (federation/outbox.py):
its tables (`pgqueuer`, `pgqueuer_log`, `pgqueuer_statistics`, `pgqueuer_schedules`), the
`pgqueuer_status` type and the NOTIFY trigger are created here with the installed
PgQueuer's own DDL, so Alembic owns when they appear. They are not in our SQLAlchemy
metadata (the library owns their shape); after upgrading PgQueuer, `coopnet db upgrade`
applies its schema changes (api/migrate.py).

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-28 07:00:00
"""

from collections.abc import Sequence

from alembic import op
from pgqueuer.adapters.persistence.qb import QueryBuilderEnvironment
from sqlalchemy.util import await_only

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _script(sql: str) -> None:
    """Run a multi-statement script (functions with `$$` bodies included) as one simple
    query on the migration's asyncpg connection, inside its transaction."""
    driver_connection = op.get_bind().connection.driver_connection
    await_only(driver_connection.execute(sql))


def upgrade() -> None:
    _script(QueryBuilderEnvironment().build_install_query())


def downgrade() -> None:
    _script(QueryBuilderEnvironment().build_uninstall_query())
