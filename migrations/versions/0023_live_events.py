"""live events: what subscribers hear of, stored so that a client can resume

`live_event` has one row per subject (a cover request, a cover offer, a partnership, a
cover exchange) changed by a transaction, written by `care.events.publish_all` in that
transaction: a second mention of the same subject in the same transaction updates the row
(one change, one message). A deferred constraint trigger numbers the transaction's rows
at commit (`sequence`) while holding a transaction-scoped advisory lock, so sequence order
is commit order, then NOTIFYs the last number on `coopnet_events`. Readers (the event hub
of each process, and subscribers resuming `after` a sequence) read rows by sequence.
Rows older than LIVE_EVENT_RETENTION_HOURS are pruned by the hub.

Revision ID: 0023
Revises: 0022
Create Date: 2026-11-28 16:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0023"
down_revision: str | None = "0022"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Runs at commit, once per row of the transaction: the first run numbers every row of the
# transaction, the others find their row numbered (a row a later trigger inserts at
# commit, see CHECK_FUNCTION, is numbered by its own run). The advisory lock is held until
# the commit has completed (and its rows are visible), so the next transaction takes
# numbers only after: a reader never sees N without every committed event below N. The
# sequence is only ever advanced here, under the lock, so one nextval and a setval
# reserve a block.
NUMBER_AT_COMMIT = """
CREATE FUNCTION live_event_number() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    pending bigint;
    first bigint;
BEGIN
    -- Numbered already by an earlier run for this transaction: one primary key lookup.
    IF EXISTS (SELECT 1 FROM live_event WHERE id = NEW.id AND sequence IS NOT NULL) THEN
        RETURN NULL;
    END IF;
    PERFORM pg_advisory_xact_lock(hashtext('coopnet.live_event.sequence'));
    SELECT count(*) INTO pending FROM live_event
    WHERE xid = pg_current_xact_id() AND sequence IS NULL;
    IF pending = 0 THEN
        RETURN NULL;
    END IF;
    first := nextval('live_event_sequence');
    IF pending > 1 THEN
        PERFORM setval('live_event_sequence', first + pending - 1);
    END IF;
    UPDATE live_event e
    SET sequence = first + o.position - 1, occurred_at = clock_timestamp()
    FROM (
        SELECT id, row_number() OVER (ORDER BY id) AS position
        FROM live_event
        WHERE xid = pg_current_xact_id() AND sequence IS NULL
    ) o
    WHERE e.id = o.id;
    PERFORM pg_notify('coopnet_events', (first + pending - 1)::text);
    RETURN NULL;
END
$$
"""


# The request a deferred trigger of migration 0017 opens at commit (a visit left needing
# cover) is a live event like one the services open: stored, not NOTIFYed as JSON. The
# row it inserts queues this migration's numbering trigger, which runs after it.
CHECK_FUNCTION = """
CREATE OR REPLACE FUNCTION cover_request_check(p_visit bigint) RETURNS void
LANGUAGE plpgsql AS $fn$
DECLARE
    visit_status text;
    opened bigint;
BEGIN
    SELECT status INTO visit_status FROM visit WHERE id = p_visit;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    IF visit_status = 'NEEDS_COVER' THEN
        INSERT INTO cover_request (visit_id, reason, status)
        SELECT p_visit, 'UNASSIGNED', 'OPEN'
        WHERE NOT EXISTS (
            SELECT 1 FROM cover_request WHERE visit_id = p_visit AND status = 'OPEN'
        )
        ON CONFLICT (visit_id) WHERE status = 'OPEN' DO NOTHING
        RETURNING id INTO opened;
        IF opened IS NOT NULL THEN
            INSERT INTO live_event (subject, subject_id, kind, cluster_ids)
            SELECT 'COVER_REQUEST', opened, 'REQUEST_OPENED', coalesce((
                SELECT array_agg(c.cluster_id ORDER BY c.cluster_id)
                FROM visit v
                JOIN cluster_service_user c ON c.service_user_id = v.service_user_id
                WHERE v.id = p_visit
            ), '{}'::bigint[])
            ON CONFLICT (xid, subject, subject_id) DO NOTHING;
        END IF;
    ELSIF EXISTS (SELECT 1 FROM cover_request WHERE visit_id = p_visit AND status = 'OPEN') THEN
        RAISE EXCEPTION 'visit % is %, yet has an open cover request: close it with the change',
            p_visit, visit_status
            USING ERRCODE = 'check_violation', CONSTRAINT = 'cover_request_open_needs_cover';
    END IF;
END $fn$
"""

# As migration 0017 left it (for downgrade).
CHECK_FUNCTION_0017 = """
CREATE OR REPLACE FUNCTION cover_request_check(p_visit bigint) RETURNS void
LANGUAGE plpgsql AS $fn$
DECLARE
    visit_status text;
    opened bigint;
BEGIN
    SELECT status INTO visit_status FROM visit WHERE id = p_visit;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    IF visit_status = 'NEEDS_COVER' THEN
        INSERT INTO cover_request (visit_id, reason, status)
        SELECT p_visit, 'UNASSIGNED', 'OPEN'
        WHERE NOT EXISTS (
            SELECT 1 FROM cover_request WHERE visit_id = p_visit AND status = 'OPEN'
        )
        ON CONFLICT (visit_id) WHERE status = 'OPEN' DO NOTHING
        RETURNING id INTO opened;
        IF opened IS NOT NULL THEN
            PERFORM pg_notify('coopnet_events', json_build_object(
                'type', 'cover',
                'kind', 'REQUEST_OPENED',
                'cover_request_id', opened,
                'visit_id', p_visit,
                'cluster_ids', coalesce((
                    SELECT json_agg(c.cluster_id ORDER BY c.cluster_id)
                    FROM visit v
                    JOIN cluster_service_user c ON c.service_user_id = v.service_user_id
                    WHERE v.id = p_visit
                ), '[]'::json),
                'offer_id', NULL,
                'pa_id', NULL
            )::text);
        END IF;
    ELSIF EXISTS (SELECT 1 FROM cover_request WHERE visit_id = p_visit AND status = 'OPEN') THEN
        RAISE EXCEPTION 'visit % is %, yet has an open cover request: close it with the change',
            p_visit, visit_status
            USING ERRCODE = 'check_violation', CONSTRAINT = 'cover_request_open_needs_cover';
    END IF;
END $fn$
"""

# Each subject's kinds, as of this revision (a later kind is a later migration).
COVER_KINDS = (
    "'REQUEST_OPENED', 'REQUEST_FILLED', 'REQUEST_RETURNED', 'REQUEST_CANCELLED', "
    "'OFFER_MADE', 'OFFER_ACCEPTED', 'OFFER_DECLINED', 'OFFER_WITHDRAWN', 'OFFER_CLOSED'"
)
PARTNERSHIP_KINDS = "'PROPOSED', 'ACTIVE', 'REJECTED', 'SUSPENDED', 'ENDED'"
EXCHANGE_KINDS = "'HELD', 'ACCEPTED', 'CONFIRMED', 'DECLINED', 'EXPIRED', 'CANCELLED'"


def upgrade() -> None:
    # Not owned by the table: numbers never go back, even if the table is truncated
    # (RESTART IDENTITY resets owned sequences), so a client's `after` never means a
    # different event, and every process's hub, reading after its last number, goes on.
    op.execute("CREATE SEQUENCE live_event_sequence")
    # No foreign keys: an event outlives its record (a deleted offer, an ended partnership).
    op.execute(
        f"""
        CREATE TABLE live_event (
            id bigserial NOT NULL,
            sequence bigint,
            xid xid8 NOT NULL DEFAULT pg_current_xact_id(),
            subject varchar(16) NOT NULL,
            subject_id bigint NOT NULL,
            kind varchar(32) NOT NULL,
            cluster_ids bigint[] NOT NULL DEFAULT '{{}}'::bigint[],
            pa_id bigint,
            occurred_at timestamptz NOT NULL DEFAULT now(),
            CONSTRAINT pk_live_event PRIMARY KEY (id),
            CONSTRAINT uq_live_event_xid_subject UNIQUE (xid, subject, subject_id),
            CONSTRAINT uq_live_event_sequence UNIQUE (sequence),
            CONSTRAINT ck_live_event_subject_valid CHECK (
                subject IN ('COVER_REQUEST', 'COVER_OFFER', 'PARTNERSHIP', 'COVER_EXCHANGE')),
            CONSTRAINT ck_live_event_kind_valid CHECK (
                (subject IN ('COVER_REQUEST', 'COVER_OFFER') AND kind IN ({COVER_KINDS}))
                OR (subject = 'PARTNERSHIP' AND kind IN ({PARTNERSHIP_KINDS}))
                OR (subject = 'COVER_EXCHANGE' AND kind IN ({EXCHANGE_KINDS}))),
            CONSTRAINT ck_live_event_pa_only_for_offers CHECK (
                (subject = 'COVER_OFFER') = (pa_id IS NOT NULL)),
            CONSTRAINT ck_live_event_clusters_only_for_requests CHECK (
                subject = 'COVER_REQUEST' OR cardinality(cluster_ids) = 0)
        )
        """
    )
    op.create_index("ix_live_event_occurred_at", "live_event", ["occurred_at"])
    op.execute(NUMBER_AT_COMMIT)
    op.execute(
        "CREATE CONSTRAINT TRIGGER live_event_number AFTER INSERT ON live_event "
        "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION live_event_number()"
    )
    op.execute(CHECK_FUNCTION)


def downgrade() -> None:
    op.execute(CHECK_FUNCTION_0017)
    op.drop_table("live_event")  # its trigger goes with it
    op.execute("DROP FUNCTION live_event_number()")
    op.execute("DROP SEQUENCE live_event_sequence")
