"""a member is one kind: a profile matches its member's class

A service user's profile belongs to a member of class SERVICE_USER and a PA's to a
WORKER, so no member holds both, and a member's class cannot change while a profile says
otherwise. Until now only the application kept to this. Each profile carries its class
as a constant column, and a foreign key (member_id, membership_class) to the member's
(id, membership_class) makes PostgreSQL hold it.

The reads rely on it: a visit's PA (a foreign key into pa_profile) is then always a
PersonalAssistant, so the compiled statement needs no per-row test of the member's type
(schema/compiled/compiler.py), and PostgreSQL leaves the profile joins out.

Revision ID: 0025
Revises: 0024
Create Date: 2026-11-29 02:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0025"
down_revision: str | None = "0024"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# (profile table, the class its members have)
PROFILES = [("service_user_profile", "SERVICE_USER"), ("pa_profile", "WORKER")]


def upgrade() -> None:
    connection = op.get_bind()
    for table, membership_class in PROFILES:
        # Say which members break the rule, rather than a bare foreign-key error.
        wrong = (
            connection.execute(
                sa.text(
                    f"SELECT p.member_id FROM {table} p JOIN member m ON m.id = p.member_id "
                    "WHERE m.membership_class <> :class ORDER BY 1 LIMIT 20"
                ),
                {"class": membership_class},
            )
            .scalars()
            .all()
        )
        if wrong:
            raise RuntimeError(
                f"members {wrong} have a {table} row but are not of class "
                f"{membership_class}: correct their class or profile, then migrate again"
            )
    op.create_unique_constraint("uq_member_id_class", "member", ["id", "membership_class"])
    for table, membership_class in PROFILES:
        op.add_column(
            table,
            sa.Column(
                "membership_class",
                sa.String(16),
                nullable=False,
                server_default=membership_class,
            ),
        )
        op.execute(
            f"ALTER TABLE {table} ADD CONSTRAINT ck_{table}_class_fixed "
            f"CHECK (membership_class = '{membership_class}')"
        )
        op.create_foreign_key(
            f"fk_{table}_member_class",
            table,
            "member",
            ["member_id", "membership_class"],
            ["id", "membership_class"],
            ondelete="CASCADE",
        )


def downgrade() -> None:
    for table, _ in reversed(PROFILES):
        op.drop_constraint(f"fk_{table}_member_class", table, type_="foreignkey")
        op.drop_column(table, "membership_class")  # and its check
    op.drop_constraint("uq_member_id_class", "member", type_="unique")
