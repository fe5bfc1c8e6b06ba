"""persisted operations: the GraphQL documents frontends register at build time

`coopnet operations register` stores each document under the SHA-256 (hex) of its text;
clients then send only the hash (`documentId`, or Apollo's
`extensions.persistedQuery.sha256Hash`), and with TRUSTED_DOCUMENTS_ONLY an instance runs
nothing else. Rows never change (the hash is of the text), so the primary key is the one
index the server's lookup needs.

Revision ID: 0019
Revises: 0018
Create Date: 2026-11-28 14:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "persisted_operation",
        sa.Column("hash", sa.Text(), nullable=False),
        sa.Column("document", sa.Text(), nullable=False),
        sa.Column("client", sa.Text(), nullable=True),
        sa.Column(
            "registered_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "hash ~ '^[0-9a-f]{64}$'", name=op.f("ck_persisted_operation_hash_is_sha256_hex")
        ),
        sa.CheckConstraint(
            "length(document) BETWEEN 1 AND 100000",
            name=op.f("ck_persisted_operation_document_length"),
        ),
        sa.CheckConstraint(
            "client IS NULL OR length(client) BETWEEN 1 AND 200",
            name=op.f("ck_persisted_operation_client_length"),
        ),
        sa.PrimaryKeyConstraint("hash", name=op.f("pk_persisted_operation")),
    )


def downgrade() -> None:
    op.drop_table("persisted_operation")
