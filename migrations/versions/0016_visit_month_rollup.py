"""visits rolled up per London month, person and PA: visit_month

The market report (care/market.py) summed every visit of the period: about 8 s for a
year of a million visits. It now reads `visit_month`, a few rows per person and month,
kept by statement-level triggers on `visit` with transition tables: each INSERT, UPDATE
or DELETE statement adds its rows' contributions (and subtracts the old ones) in one
grouped upsert, in key order so that concurrent writers lock rows in the same order.
Updates that change nothing counted (tasks, check-in) write nothing.

`visit_month_rebuild()` recomputes the table from `visit`; it fills it here, and serves
anyone who loaded visits with triggers off (bench/market_report.py does).

`cover_request.service_user_id` copies the visit's person, set by a trigger on insert,
so the report counts cover requests per person without joining a million visits; a
visit's person is fixed (a trigger refuses a change), so the copy cannot go stale.

Also a partial index on the start of visits needing cover: the report's unmet hours of
the current month are read from `visit` itself, since they depend on the time of asking.

Revision ID: 0016
Revises: 0015
Create Date: 2026-11-28 12:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TOTALS = (
    "visits_planned",
    "visits_delivered",
    "seconds_planned",
    "seconds_delivered",
    "seconds_missed",
    "seconds_cancelled",
    "seconds_needing_cover",
)

# The contributions of a set of signed visit rows `c (sign, visit columns...)`, grouped by
# key, without the groups whose contributions cancel out. `%s` is that set's query.
DELTAS = """
SELECT * FROM (
    SELECT date_trunc('month', lower(c.during) AT TIME ZONE 'Europe/London')::date AS month,
           c.service_user_id, coalesce(c.pa_id, 0) AS pa_id,
           coalesce(sum(c.sign) FILTER (WHERE c.status <> 'CANCELLED'), 0) AS visits_planned,
           coalesce(sum(c.sign) FILTER (WHERE c.status = 'COMPLETED'
                                        AND c.confirmed_at IS NOT NULL), 0) AS visits_delivered,
           coalesce(sum(c.sign * d.s) FILTER (WHERE c.status <> 'CANCELLED'), 0)
               AS seconds_planned,
           coalesce(sum(c.sign * d.s) FILTER (WHERE c.status = 'COMPLETED'
                                              AND c.confirmed_at IS NOT NULL), 0)
               AS seconds_delivered,
           coalesce(sum(c.sign * d.s) FILTER (WHERE c.status = 'MISSED'), 0) AS seconds_missed,
           coalesce(sum(c.sign * d.s) FILTER (WHERE c.status = 'CANCELLED'), 0)
               AS seconds_cancelled,
           coalesce(sum(c.sign * d.s) FILTER (WHERE c.status = 'NEEDS_COVER'), 0)
               AS seconds_needing_cover
    FROM (%s) c
    CROSS JOIN LATERAL (
        SELECT extract(epoch FROM upper(c.during) - lower(c.during))::bigint AS s
    ) d
    GROUP BY 2, 1, 3
) g
WHERE (visits_planned, visits_delivered, seconds_planned, seconds_delivered, seconds_missed,
       seconds_cancelled, seconds_needing_cover) <> (0, 0, 0, 0, 0, 0, 0)
ORDER BY service_user_id, month, pa_id
"""

COLUMNS = "month, service_user_id, pa_id, " + ", ".join(TOTALS)
UPSERT = (
    f"INSERT INTO visit_month AS m ({COLUMNS}) {DELTAS} "
    "ON CONFLICT (service_user_id, month, pa_id) DO UPDATE SET "
    + ", ".join(f"{t} = m.{t} + excluded.{t}" for t in TOTALS)
)

APPLY_FUNCTION = f"""
CREATE FUNCTION visit_month_apply() RETURNS trigger LANGUAGE plpgsql AS $fn$
DECLARE
    source text := CASE TG_OP
        WHEN 'INSERT' THEN 'SELECT 1 AS sign, * FROM visit_new'
        WHEN 'DELETE' THEN 'SELECT -1 AS sign, * FROM visit_old'
        ELSE 'SELECT 1 AS sign, * FROM visit_new UNION ALL SELECT -1, * FROM visit_old'
    END;
BEGIN
    EXECUTE format($q${UPSERT}$q$, source);
    RETURN NULL;
END $fn$
"""

REBUILD_FUNCTION = f"""
CREATE FUNCTION visit_month_rebuild() RETURNS void LANGUAGE plpgsql AS $fn$
BEGIN
    DELETE FROM visit_month;
    EXECUTE format($q${UPSERT}$q$, 'SELECT 1 AS sign, * FROM visit');
END $fn$
"""

COVER_PERSON_FUNCTION = """
CREATE FUNCTION cover_request_person() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    SELECT v.service_user_id INTO NEW.service_user_id FROM visit v WHERE v.id = NEW.visit_id;
    RETURN NEW;
END $fn$
"""

VISIT_PERSON_FIXED_FUNCTION = """
CREATE FUNCTION visit_person_fixed() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    IF NEW.service_user_id IS DISTINCT FROM OLD.service_user_id THEN
        RAISE EXCEPTION 'a visit''s person cannot change (visit %)', OLD.id
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END $fn$
"""


def upgrade() -> None:
    op.create_table(
        "visit_month",
        sa.Column("month", sa.Date(), nullable=False),
        sa.Column("service_user_id", sa.BigInteger(), nullable=False),
        sa.Column("pa_id", sa.BigInteger(), nullable=False),
        *(
            sa.Column(
                t,
                sa.Integer() if t.startswith("visits") else sa.BigInteger(),
                server_default=sa.text("0"),
                nullable=False,
            )
            for t in TOTALS
        ),
        sa.CheckConstraint("extract(day FROM month) = 1", name=op.f("ck_visit_month_month_starts")),
        # Person first: the report reads a local authority's people, each over a range
        # of months.
        sa.PrimaryKeyConstraint("service_user_id", "month", "pa_id", name=op.f("pk_visit_month")),
    )
    op.execute(APPLY_FUNCTION)
    op.execute(REBUILD_FUNCTION)
    op.execute("SELECT visit_month_rebuild()")
    op.execute(
        "CREATE TRIGGER visit_month_insert AFTER INSERT ON visit "
        "REFERENCING NEW TABLE AS visit_new "
        "FOR EACH STATEMENT EXECUTE FUNCTION visit_month_apply()"
    )
    op.execute(
        "CREATE TRIGGER visit_month_update AFTER UPDATE ON visit "
        "REFERENCING OLD TABLE AS visit_old NEW TABLE AS visit_new "
        "FOR EACH STATEMENT EXECUTE FUNCTION visit_month_apply()"
    )
    op.execute(
        "CREATE TRIGGER visit_month_delete AFTER DELETE ON visit "
        "REFERENCING OLD TABLE AS visit_old "
        "FOR EACH STATEMENT EXECUTE FUNCTION visit_month_apply()"
    )
    op.add_column("cover_request", sa.Column("service_user_id", sa.BigInteger(), nullable=True))
    op.execute(
        "UPDATE cover_request r SET service_user_id = v.service_user_id "
        "FROM visit v WHERE v.id = r.visit_id"
    )
    op.alter_column("cover_request", "service_user_id", nullable=False)
    op.execute(COVER_PERSON_FUNCTION)
    op.execute(
        "CREATE TRIGGER cover_request_person BEFORE INSERT OR UPDATE OF visit_id "
        "ON cover_request FOR EACH ROW EXECUTE FUNCTION cover_request_person()"
    )
    op.execute(VISIT_PERSON_FIXED_FUNCTION)
    op.execute(
        "CREATE TRIGGER visit_person_fixed BEFORE UPDATE OF service_user_id ON visit "
        "FOR EACH ROW EXECUTE FUNCTION visit_person_fixed()"
    )
    op.create_index("ix_cover_request_opened_at", "cover_request", ["opened_at"])
    op.create_index(
        "ix_visit_needing_cover_start",
        "visit",
        [sa.text("lower(during)")],
        postgresql_where=sa.text("status = 'NEEDS_COVER'"),
    )


def downgrade() -> None:
    op.drop_index("ix_visit_needing_cover_start", table_name="visit")
    op.drop_index("ix_cover_request_opened_at", table_name="cover_request")
    op.execute("DROP TRIGGER visit_person_fixed ON visit")
    op.execute("DROP FUNCTION visit_person_fixed()")
    op.execute("DROP TRIGGER cover_request_person ON cover_request")
    op.execute("DROP FUNCTION cover_request_person()")
    op.drop_column("cover_request", "service_user_id")
    for event in ("insert", "update", "delete"):
        op.execute(f"DROP TRIGGER visit_month_{event} ON visit")
    op.execute("DROP FUNCTION visit_month_rebuild()")
    op.execute("DROP FUNCTION visit_month_apply()")
    op.drop_table("visit_month")
