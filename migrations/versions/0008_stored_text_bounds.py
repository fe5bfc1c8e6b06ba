"""bounds on stored text

Every text column a caller can fill gets a CHECK on its length (and array columns on
their items and total length), so no writer can store a 20 MB name. The API refuses such
input earlier with a coded error; these are the last guard. The constraints are added
NOT VALID: rows written before are not checked (an operator may VALIDATE them after
trimming), every row written from now on is.

Revision ID: 0008
Revises: 0005
Create Date: 2026-11-28 04:30:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# (table, column, check): the same as care.models.TEXT_BOUNDS at this revision.
BOUNDS: tuple[tuple[str, str, str], ...] = (
    ("local_authority", "name", "length(name) <= 200"),
    ("coop", "name", "length(name) <= 200"),
    ("coop", "society_number", "length(society_number) <= 50"),
    ("coop", "cqc_provider_id", "length(cqc_provider_id) <= 50"),
    ("coop", "description", "length(description) <= 10000"),
    ("member", "name", "length(name) <= 200"),
    ("member", "email", "length(email) <= 254"),
    ("member", "phone", "length(phone) <= 50"),
    ("member", "postcode", "length(postcode) <= 16"),
    (
        "service_user_profile",
        "needs",
        "cardinality(needs) <= 50 AND length(array_to_string(needs, '')) <= 10000",
    ),
    ("carer_link", "relationship", "length(relationship) <= 100"),
    ("pa_skill", "skill", "length(skill) <= 200"),
    ("cluster", "name", "length(name) <= 200"),
    (
        "cluster",
        "postcode_districts",
        "cardinality(postcode_districts) <= 50"
        " AND length(array_to_string(postcode_districts, '')) <= 800",
    ),
    (
        "cluster",
        "need_tags",
        "cardinality(need_tags) <= 50 AND length(array_to_string(need_tags, '')) <= 10000",
    ),
    ("pool", "name", "length(name) <= 200"),
    (
        "visit",
        "tasks",
        "cardinality(tasks) <= 50 AND length(array_to_string(tasks, '')) <= 25000",
    ),
    ("visit", "cancel_reason", "length(cancel_reason) <= 500"),
    ("absence", "note", "length(note) <= 1000"),
    ("cover_request", "note", "length(note) <= 4000"),
)


def upgrade() -> None:
    for table, column, check in BOUNDS:
        op.execute(
            f"ALTER TABLE {table} ADD CONSTRAINT ck_{table}_{column}_length "
            f"CHECK ({check}) NOT VALID"
        )


def downgrade() -> None:
    for table, column, _check in reversed(BOUNDS):
        op.execute(f"ALTER TABLE {table} DROP CONSTRAINT ck_{table}_{column}_length")
