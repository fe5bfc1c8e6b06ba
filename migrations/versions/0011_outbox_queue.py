"""federation outbox: PgQueuer's job tables; idempotency keys of received messages

The outbox of messages to partner instances is a PgQueuer queue (federation/outbox.py):
its tables (`pgqueuer`, `pgqueuer_log`, `pgqueuer_statistics`, `pgqueuer_schedules`), the
`pgqueuer_status` type and the NOTIFY trigger are created here with the installed
PgQueuer's own DDL, so Alembic owns when they appear. They are not in our SQLAlchemy
metadata (the library owns their shape); after upgrading PgQueuer, `coopnet db upgrade`
applies its schema changes (api/migrate.py).

`peer_delivery` remembers each message a partner sent with an idempotency key, with the
first answer, so that a repeat is answered the same and applied once.

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-28 07:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from pgqueuer.adapters.persistence.qb import QueryBuilderEnvironment
from sqlalchemy.dialects import postgresql
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
    op.create_table(
        "peer_delivery",
        sa.Column("instance", sa.Text(), nullable=False),
        sa.Column("idempotency_key", sa.UUID(), nullable=False),
        sa.Column("operation", sa.Text(), nullable=False),
        sa.Column("answer", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column(
            "received_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "length(instance) <= 500", name=op.f("ck_peer_delivery_instance_length")
        ),
        sa.CheckConstraint(
            "length(operation) <= 100", name=op.f("ck_peer_delivery_operation_length")
        ),
        sa.PrimaryKeyConstraint("instance", "idempotency_key", name=op.f("pk_peer_delivery")),
    )
    op.create_index(
        op.f("ix_peer_delivery_received_at"), "peer_delivery", ["received_at"], unique=False
    )


def downgrade() -> None:
    op.drop_table("peer_delivery")
    _script(QueryBuilderEnvironment().build_uninstall_query())
