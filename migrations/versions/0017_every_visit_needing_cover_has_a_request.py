"""every visit needing cover has one open cover request, and only such a visit has one

A visit booked without a PA was NEEDS_COVER but no request opened for it, so coordinators
never saw it in `coverRequests`. Now the database keeps two rules together, whatever code
writes visits or requests (service, CLI, demo loader, hand-written SQL):

1. A NEEDS_COVER visit has exactly one OPEN cover request. At most one was already the
   partial unique index `uq_cover_request_open_visit`; at least one is new: when a
   transaction commits leaving a NEEDS_COVER visit without an open request, one opens
   (reason UNASSIGNED) and a REQUEST_OPENED event goes out with it. Paths that open their
   own request with a better reason (absence, missed, manual, partner cancelled) do so
   before commit, and the check then finds nothing to do.
2. An OPEN request's visit is NEEDS_COVER. The services close the request themselves when
   its visit gets a PA or is cancelled (FILLED, RETURNED or CANCELLED, with events), so
   here the commit is refused (check_violation, `cover_request_open_needs_cover`) if
   something left one open.

Both are checked by one function, `cover_request_check(visit_id)`, called from deferred
constraint triggers on `visit` (insert as NEEDS_COVER, status into or out of NEEDS_COVER)
and on `cover_request` (an open request inserted, closed, moved or deleted): at commit,
so the order of a transaction's statements does not matter, and rows deleted meanwhile
(a visit's requests go with it) are skipped.

Existing data: open requests on visits that no longer need cover are closed (FILLED by the
visit's PA when it has one and is scheduled, otherwise CANCELLED; their open offers
CLOSED), and every NEEDS_COVER visit without an open request gets one (UNASSIGNED).

Revision ID: 0017
Revises: 0016
Create Date: 2026-11-28 13:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

REASONS = ("ABSENCE", "MISSED", "MANUAL", "PARTNER_CANCELLED")
NEW_REASONS = (*REASONS, "UNASSIGNED")

# The payload of care.events.CoverEvent, so subscribers hear of a request opened here
# exactly as of one the services open.
CHECK_FUNCTION = """
CREATE FUNCTION cover_request_check(p_visit bigint) RETURNS void LANGUAGE plpgsql AS $fn$
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

VISIT_FUNCTION = """
CREATE FUNCTION visit_cover_request_check() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    PERFORM cover_request_check(NEW.id);
    RETURN NULL;
END $fn$
"""

REQUEST_FUNCTION = """
CREATE FUNCTION cover_request_visit_check() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    IF TG_OP = 'INSERT' THEN
        PERFORM cover_request_check(NEW.visit_id);
    ELSE
        PERFORM cover_request_check(OLD.visit_id);
        IF TG_OP = 'UPDATE' AND NEW.visit_id <> OLD.visit_id THEN
            PERFORM cover_request_check(NEW.visit_id);
        END IF;
    END IF;
    RETURN NULL;
END $fn$
"""

# (name, table, event, condition, function)
TRIGGERS = (
    (
        "visit_cover_request_on_insert",
        "visit",
        "INSERT",
        "NEW.status = 'NEEDS_COVER'",
        "visit_cover_request_check",
    ),
    (
        "visit_cover_request_on_status",
        "visit",
        "UPDATE OF status",
        "OLD.status IS DISTINCT FROM NEW.status AND 'NEEDS_COVER' IN (OLD.status, NEW.status)",
        "visit_cover_request_check",
    ),
    (
        "cover_request_visit_on_insert",
        "cover_request",
        "INSERT",
        "NEW.status = 'OPEN'",
        "cover_request_visit_check",
    ),
    (
        "cover_request_visit_on_update",
        "cover_request",
        "UPDATE OF status, visit_id",
        "(OLD.status = 'OPEN' OR NEW.status = 'OPEN')"
        " AND (OLD.status, OLD.visit_id) IS DISTINCT FROM (NEW.status, NEW.visit_id)",
        "cover_request_visit_check",
    ),
    (
        "cover_request_visit_on_delete",
        "cover_request",
        "DELETE",
        "OLD.status = 'OPEN'",
        "cover_request_visit_check",
    ),
)

CLOSE_STALE = """
WITH stale AS (
    UPDATE cover_request r
    SET status = CASE WHEN v.status = 'SCHEDULED' AND v.pa_id IS NOT NULL
                      THEN 'FILLED' ELSE 'CANCELLED' END,
        filled_by_pa_id = CASE WHEN v.status = 'SCHEDULED' THEN v.pa_id END,
        closed_at = now()
    FROM visit v
    WHERE v.id = r.visit_id AND r.status = 'OPEN' AND v.status <> 'NEEDS_COVER'
    RETURNING r.id
)
UPDATE cover_offer SET status = 'CLOSED', responded_at = now()
WHERE status = 'OPEN' AND cover_request_id IN (SELECT id FROM stale)
"""

OPEN_MISSING = """
INSERT INTO cover_request (visit_id, reason, status)
SELECT v.id, 'UNASSIGNED', 'OPEN'
FROM visit v
WHERE v.status = 'NEEDS_COVER'
  AND NOT EXISTS (SELECT 1 FROM cover_request r WHERE r.visit_id = v.id AND r.status = 'OPEN')
ORDER BY lower(v.during), v.id
"""


def _reason_check(reasons: Sequence[str]) -> None:
    op.drop_constraint(op.f("ck_cover_request_reason_valid"), "cover_request", type_="check")
    listed = ", ".join(f"'{r}'" for r in reasons)
    op.create_check_constraint(
        op.f("ck_cover_request_reason_valid"), "cover_request", f"reason IN ({listed})"
    )


def upgrade() -> None:
    _reason_check(NEW_REASONS)
    op.execute(CLOSE_STALE)
    op.execute(OPEN_MISSING)
    op.execute(CHECK_FUNCTION)
    op.execute(VISIT_FUNCTION)
    op.execute(REQUEST_FUNCTION)
    for name, table, event, condition, function in TRIGGERS:
        op.execute(
            f"CREATE CONSTRAINT TRIGGER {name} AFTER {event} ON {table} "
            f"DEFERRABLE INITIALLY DEFERRED FOR EACH ROW WHEN ({condition}) "
            f"EXECUTE FUNCTION {function}()"
        )


def downgrade() -> None:
    for name, table, *_ in TRIGGERS:
        op.execute(f"DROP TRIGGER {name} ON {table}")
    op.execute("DROP FUNCTION cover_request_visit_check()")
    op.execute("DROP FUNCTION visit_cover_request_check()")
    op.execute("DROP FUNCTION cover_request_check(bigint)")
    # The requests opened for visits booked without a PA stay, as a coordinator's.
    op.execute("UPDATE cover_request SET reason = 'MANUAL' WHERE reason = 'UNASSIGNED'")
    _reason_check(REASONS)
