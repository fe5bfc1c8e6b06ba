"""federation: the availability feed's change log

`availability_feed` has one row per availability window that ever changed in a way a
partner could see: the window itself, a commitment filling it, or anything about its PA
that the feed shows (pool sharing, skills, travel range, postcode, active). Triggers move
the row to the writing transaction's id (`xid`) and a fresh `seq`; the feed serves rows
in (xid, seq) order, only below the oldest transaction still running, and computes what
it says from the current data. See docs/federation.md, section 9.

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-28 07:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Move the rows of the given windows to this transaction (insert them when new). Ordered
# by window id, so concurrent writers lock feed rows in one order.
TOUCH_WINDOWS = """
CREATE FUNCTION availability_feed_touch(window_ids bigint[]) RETURNS void
LANGUAGE sql AS $$
    INSERT INTO availability_feed (window_id, pa_id)
    SELECT w.id, w.pa_id FROM availability_window w
    WHERE w.id = ANY(window_ids)
    ORDER BY w.id
    ON CONFLICT (window_id) DO UPDATE SET pa_id = EXCLUDED.pa_id, xid = EXCLUDED.xid,
        seq = EXCLUDED.seq
$$
"""

# Deleted windows: their rows stay (the feed sends a tombstone), moved to this transaction.
TOUCH_GONE = """
CREATE FUNCTION availability_feed_touch_gone(window_ids bigint[]) RETURNS void
LANGUAGE sql AS $$
    UPDATE availability_feed f
    SET xid = pg_current_xact_id(), seq = nextval('availability_feed_seq')
    FROM (SELECT f2.window_id FROM availability_feed f2
          WHERE f2.window_id = ANY(window_ids) ORDER BY f2.window_id FOR UPDATE) locked
    WHERE f.window_id = locked.window_id
$$
"""

# Every window of these PAs that has not ended: what changes with the PA as a whole.
TOUCH_PAS = """
CREATE FUNCTION availability_feed_touch_pas(pa_ids bigint[]) RETURNS void
LANGUAGE sql AS $$
    SELECT availability_feed_touch(array_agg(w.id))
    FROM availability_window w
    WHERE w.pa_id = ANY(pa_ids) AND upper(w.during) > now()
$$
"""

WINDOW_FUNCTION = """
CREATE FUNCTION availability_feed_from_window() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM availability_feed_touch_gone(ARRAY(SELECT id FROM old_rows));
    ELSE
        PERFORM availability_feed_touch(ARRAY(SELECT id FROM new_rows));
    END IF;
    RETURN NULL;
END $$
"""

# A commitment fills the windows it overlaps (before and after a move).
COMMITMENT_FUNCTION = """
CREATE FUNCTION availability_feed_from_commitment() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        PERFORM availability_feed_touch(ARRAY(
            SELECT w.id FROM old_rows c
            JOIN availability_window w ON w.pa_id = c.pa_id AND w.during && c.during));
    END IF;
    IF TG_OP IN ('UPDATE', 'INSERT') THEN
        PERFORM availability_feed_touch(ARRAY(
            SELECT w.id FROM new_rows c
            JOIN availability_window w ON w.pa_id = c.pa_id AND w.during && c.during));
    END IF;
    RETURN NULL;
END $$
"""


def _pa_function(name: str, pa_column: str) -> str:
    """A trigger function touching the PAs named by `pa_column` in the changed rows."""
    return f"""
CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        PERFORM availability_feed_touch_pas(ARRAY(SELECT {pa_column} FROM old_rows));
    END IF;
    IF TG_OP IN ('UPDATE', 'INSERT') THEN
        PERFORM availability_feed_touch_pas(ARRAY(SELECT {pa_column} FROM new_rows));
    END IF;
    RETURN NULL;
END $$
"""


# A pool starting or stopping sharing: every PA in it.
POOL_FUNCTION = """
CREATE FUNCTION availability_feed_from_pool() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM availability_feed_touch_pas(ARRAY(
        SELECT pp.pa_id FROM new_rows n JOIN old_rows o ON o.id = n.id
        JOIN pool_pa pp ON pp.pool_id = n.id
        WHERE n.shared_with_partners IS DISTINCT FROM o.shared_with_partners));
    RETURN NULL;
END $$
"""

# A PA's postcode (district) or active flag, or travel range, as the feed shows them.
MEMBER_FUNCTION = """
CREATE FUNCTION availability_feed_from_member() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM availability_feed_touch_pas(ARRAY(
        SELECT n.id FROM new_rows n JOIN old_rows o ON o.id = n.id
        WHERE (n.postcode, n.active) IS DISTINCT FROM (o.postcode, o.active)));
    RETURN NULL;
END $$
"""

PA_PROFILE_FUNCTION = """
CREATE FUNCTION availability_feed_from_pa_profile() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM availability_feed_touch_pas(ARRAY(
        SELECT n.member_id FROM new_rows n JOIN old_rows o ON o.member_id = n.member_id
        WHERE n.max_travel_km IS DISTINCT FROM o.max_travel_km));
    RETURN NULL;
END $$
"""

# Statement-level triggers with transition tables: one set-based touch per statement.
# (A trigger with transition tables takes one event, hence one trigger per event.)
TRIGGERS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("availability_window", "availability_feed_from_window", ("INSERT", "UPDATE", "DELETE")),
    ("pa_commitment", "availability_feed_from_commitment", ("INSERT", "UPDATE", "DELETE")),
    ("pool_pa", "availability_feed_from_pool_pa", ("INSERT", "DELETE")),
    ("pa_skill", "availability_feed_from_pa_skill", ("INSERT", "UPDATE", "DELETE")),
    ("pool", "availability_feed_from_pool", ("UPDATE",)),
    ("member", "availability_feed_from_member", ("UPDATE",)),
    ("pa_profile", "availability_feed_from_pa_profile", ("UPDATE",)),
)

FUNCTIONS = (
    "availability_feed_from_window",
    "availability_feed_from_commitment",
    "availability_feed_from_pool_pa",
    "availability_feed_from_pa_skill",
    "availability_feed_from_pool",
    "availability_feed_from_member",
    "availability_feed_from_pa_profile",
    "availability_feed_touch_pas(bigint[])",
    "availability_feed_touch_gone(bigint[])",
    "availability_feed_touch(bigint[])",
)


def _trigger_name(table: str, event: str) -> str:
    return f"{table}_feed_{event.lower()}"


def upgrade() -> None:
    op.execute("CREATE SEQUENCE availability_feed_seq")
    # No foreign key to the window: its row outlives it, to carry the tombstone.
    op.execute(
        """
        CREATE TABLE availability_feed (
            window_id bigint NOT NULL,
            pa_id bigint NOT NULL,
            xid xid8 NOT NULL DEFAULT pg_current_xact_id(),
            seq bigint NOT NULL DEFAULT nextval('availability_feed_seq'),
            CONSTRAINT pk_availability_feed PRIMARY KEY (window_id)
        )
        """
    )
    op.execute("ALTER SEQUENCE availability_feed_seq OWNED BY availability_feed.seq")
    op.create_index("ix_availability_feed_xid_seq", "availability_feed", ["xid", "seq"])
    # `partnerAvailability(filter: {skill})`: windows whose skills contain the name.
    op.create_index(
        "ix_partner_window_skills",
        "partner_window",
        ["skills"],
        postgresql_using="gin",
        postgresql_ops={"skills": "jsonb_path_ops"},
    )
    # Every existing window is news to a first reader.
    op.execute(
        "INSERT INTO availability_feed (window_id, pa_id) "
        "SELECT id, pa_id FROM availability_window ORDER BY id"
    )
    for sql in (
        TOUCH_WINDOWS,
        TOUCH_GONE,
        TOUCH_PAS,
        WINDOW_FUNCTION,
        COMMITMENT_FUNCTION,
        _pa_function("availability_feed_from_pool_pa", "pa_id"),
        _pa_function("availability_feed_from_pa_skill", "pa_id"),
        POOL_FUNCTION,
        MEMBER_FUNCTION,
        PA_PROFILE_FUNCTION,
    ):
        op.execute(sql)
    for table, function, events in TRIGGERS:
        for event in events:
            transitions = {
                "INSERT": "NEW TABLE AS new_rows",
                "DELETE": "OLD TABLE AS old_rows",
                "UPDATE": "OLD TABLE AS old_rows NEW TABLE AS new_rows",
            }[event]
            op.execute(
                f"CREATE TRIGGER {_trigger_name(table, event)} AFTER {event} ON {table} "
                f"REFERENCING {transitions} FOR EACH STATEMENT EXECUTE FUNCTION {function}()"
            )


def downgrade() -> None:
    for table, _, events in TRIGGERS:
        for event in events:
            op.execute(f"DROP TRIGGER {_trigger_name(table, event)} ON {table}")
    for function in FUNCTIONS:
        name = function if "(" in function else f"{function}()"
        op.execute(f"DROP FUNCTION {name}")
    op.drop_index("ix_partner_window_skills", table_name="partner_window")
    op.drop_table("availability_feed")
