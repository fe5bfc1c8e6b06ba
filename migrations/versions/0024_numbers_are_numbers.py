"""numbers are numbers: no NaN in numeric columns, a cluster's centre on the map

PostgreSQL's numeric and float8 hold NaN, which sorts above every number, so a check like
`hours >= 0` lets it through; float8 also holds infinities. No input of the API can carry
one (JSON has neither), but a row written another way would break both read paths: the
resolvers refuse to serialise it (graphql-core: "Float cannot represent non numeric
value") and the compiled path's JSON would be invalid. A cluster's centre gets the range
checks a member's location has (the application checked them already). Added NOT VALID,
then validated, so writes are not blocked while existing rows are checked.

Revision ID: 0024
Revises: 0023
Create Date: 2026-11-28 22:30:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0024"
down_revision: str | None = "0023"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CHECKS = [
    (
        "coop",
        "ck_coop_rules_a_number",
        "max_weekly_hours <> 'NaN' AND min_daily_rest_hours <> 'NaN'",
    ),
    (
        "service_user_profile",
        "ck_service_user_profile_hours_a_number",
        "planned_weekly_hours <> 'NaN'",
    ),
    (
        "pa_profile",
        "ck_pa_profile_a_number",
        "contracted_weekly_hours <> 'NaN' AND max_travel_km <> 'NaN'",
    ),
    ("partner_window", "ck_partner_window_travel_a_number", "travel_km <> 'NaN'"),
    ("cluster", "ck_cluster_centre_latitude_range", "centre_latitude BETWEEN -90 AND 90"),
    ("cluster", "ck_cluster_centre_longitude_range", "centre_longitude BETWEEN -180 AND 180"),
    ("cluster", "ck_cluster_radius_a_number", "radius_km <> 'NaN'"),
]


def upgrade() -> None:
    for table, name, check in CHECKS:
        op.execute(f"ALTER TABLE {table} ADD CONSTRAINT {name} CHECK ({check}) NOT VALID")
        op.execute(f"ALTER TABLE {table} VALIDATE CONSTRAINT {name}")


def downgrade() -> None:
    for table, name, _ in reversed(CHECKS):
        op.execute(f"ALTER TABLE {table} DROP CONSTRAINT {name}")
