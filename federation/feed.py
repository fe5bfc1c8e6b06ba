"""The availability feed this instance offers its partners (docs/federation.md, section 9).

`availability_feed` (migration 0012) says WHICH windows changed and in what order; what
a partner is told about each is computed here from the current data, one set-based
statement per page: the window's free periods (the window minus the PA's commitments),
the PA's pseudonymous reference, skills not yet expired, postcode district and travel
range; or a tombstone when there is nothing (any more) to offer. Names, addresses,
locations, visits and service users are never read."""

from __future__ import annotations

import base64
import datetime as dt
import hmac
import re
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

FEED_MAX_PAGE = 5000  # changes per page at most (the receiver asks for this many)
FEED_DEFAULT_PAGE = 1000
CURSOR_VERSION = "f1"
_CURSOR = re.compile(r"^f1\.([0-9]{1,20})\.([0-9]{1,19})$")
START = (0, 0)  # before every change


class Tombstone(StrEnum):
    """Why a window is no longer offered: the receiver deletes it."""

    REMOVED = "REMOVED"  # the window was deleted (or its PA)
    ENDED = "ENDED"  # the window is over
    FILLED = "FILLED"  # commitments (visits, absences, holds) cover all of it
    NOT_SHARED = "NOT_SHARED"  # its PA is in no shared pool any more, or not active


class BadFeedCursor(ValueError):
    """A cursor this feed did not give."""


def encode_position(xid: int, seq: int) -> str:
    """The feed position as the opaque text inside a cursor (versioned)."""
    return f"{CURSOR_VERSION}.{xid}.{seq}"


def decode_position(value: str | None) -> tuple[int, int]:
    if value is None:
        return START
    match = _CURSOR.match(value)
    if match is None:
        raise BadFeedCursor(value)
    xid, seq = int(match.group(1)), int(match.group(2))
    if xid >= 2**64 or seq >= 2**63:
        raise BadFeedCursor(value)
    return xid, seq


def pseudonym(key: bytes, kind: str, record_id: int) -> str:
    """A partner's stable name for one of our records: HMAC-SHA256 keyed per partnership
    (so it differs between partners and reveals no order), 128 bits, base64url."""
    digest = hmac.digest(key, f"{kind}:{record_id}".encode(), "sha256")
    return base64.urlsafe_b64encode(digest[:16]).decode()[:22]


@dataclass(slots=True)
class SharedSkill:
    skill: str
    expires_on: dt.date | None


@dataclass(slots=True)
class SharedPa:
    """What a partner is told about a PA, once per page that offers any of its windows."""

    ref: str
    skills: tuple[SharedSkill, ...]
    district: str | None
    travel_km: float | None


@dataclass(slots=True)
class FeedChange:
    """One window as a partner sees it now: offered (`tombstone` None: whose PA, and its
    free periods as ISO 8601 intervals `start/end`) or withdrawn."""

    ref: str
    tombstone: Tombstone | None
    pa_ref: str | None = None
    free: tuple[str, ...] = ()


@dataclass(frozen=True)
class FeedPage:
    changes: list[FeedChange]
    pas: list[SharedPa]  # the PA of every offered window of the page, each once
    cursor: str  # the position after this page (the same as asked for when empty)
    has_more: bool


# Rows below the oldest transaction still running (pg_snapshot_xmin) only: every
# transaction that could still commit has an xid at or above it, so nothing it writes
# can land before a position already served (docs/federation.md, section 9).
PAGE_SQL = text(
    r"""
WITH page AS MATERIALIZED (
    SELECT f.window_id, f.xid, f.seq
    FROM availability_feed f
    WHERE f.xid < pg_snapshot_xmin(pg_current_snapshot())
      AND (f.xid, f.seq) > (CAST(:xid AS xid8), CAST(:seq AS bigint))
    ORDER BY f.xid, f.seq
    LIMIT :limit
),
windows AS MATERIALIZED (
    SELECT p.window_id, p.xid, p.seq, w.id IS NOT NULL AS present, w.pa_id, w.during
    FROM page p LEFT JOIN availability_window w ON w.id = p.window_id
),
-- What belongs to the PA, once per PA of the page (a PA has many windows).
pas AS MATERIALIZED (
    SELECT m.id AS pa_id,
           m.active AND EXISTS (
               SELECT 1 FROM pool_pa pp JOIN pool po ON po.id = pp.pool_id
               WHERE pp.pa_id = m.id AND po.shared_with_partners
           ) AS shared,
           pr.max_travel_km,
           upper(left(regexp_replace(m.postcode, '\s', '', 'g'), -3)) AS district,
           sk.names AS skill_names, sk.expiry AS skill_expiry
    FROM (SELECT DISTINCT pa_id FROM windows WHERE pa_id IS NOT NULL) d
    JOIN member m ON m.id = d.pa_id
    JOIN pa_profile pr ON pr.member_id = d.pa_id
    LEFT JOIN LATERAL (
        SELECT array_agg(s.skill ORDER BY s.skill) AS names,
               array_agg(s.expires_on ORDER BY s.skill) AS expiry
        FROM pa_skill s
        WHERE s.pa_id = d.pa_id AND (s.expires_on IS NULL OR s.expires_on >= current_date)
    ) sk ON true
)
SELECT w.window_id, w.xid::text AS xid, w.seq, w.pa_id, w.present,
       upper(w.during) > now() AS current,
       coalesce(pa.shared, false) AS shared,
       fr.starts, fr.ends,
       pa.max_travel_km, pa.district, pa.skill_names, pa.skill_expiry
FROM windows w
LEFT JOIN pas pa ON pa.pa_id = w.pa_id
LEFT JOIN LATERAL (
    SELECT array_agg(lower(r) ORDER BY lower(r)) AS starts,
           array_agg(upper(r) ORDER BY lower(r)) AS ends
    FROM unnest(tstzmultirange(w.during) - coalesce(
        (SELECT range_agg(c.during) FROM pa_commitment c
         WHERE c.pa_id = w.pa_id AND c.during && w.during),
        '{}'::tstzmultirange)) AS r
) fr ON w.present AND upper(w.during) > now() AND pa.shared
ORDER BY w.xid, w.seq
"""
)


def _change(row: Any, key: bytes, pas: dict[int, SharedPa]) -> FeedChange:
    ref = pseudonym(key, "window", row.window_id)
    if not row.present:
        return FeedChange(ref=ref, tombstone=Tombstone.REMOVED)
    if not row.current:
        return FeedChange(ref=ref, tombstone=Tombstone.ENDED)
    if not row.shared:
        return FeedChange(ref=ref, tombstone=Tombstone.NOT_SHARED)
    if not row.starts:
        return FeedChange(ref=ref, tombstone=Tombstone.FILLED)
    pa = pas.get(row.pa_id)
    if pa is None:
        travel: Decimal | None = row.max_travel_km
        pa = pas[row.pa_id] = SharedPa(
            ref=pseudonym(key, "pa", row.pa_id),
            skills=tuple(
                SharedSkill(skill=name, expires_on=expiry)
                for name, expiry in zip(row.skill_names or (), row.skill_expiry or (), strict=True)
            ),
            district=row.district or None,
            travel_km=float(travel) if travel is not None else None,
        )
    return FeedChange(
        ref=ref,
        tombstone=None,
        pa_ref=pa.ref,
        free=tuple(
            f"{start.isoformat()}/{end.isoformat()}"
            for start, end in zip(row.starts, row.ends, strict=True)
        ),
    )


async def read_feed(
    session: AsyncSession, pseudonym_key: bytes, after: str | None, first: int
) -> FeedPage:
    """One page of the feed after the position `after` (raises BadFeedCursor when it is
    not one of ours): the changes in commit order, the position after them, and whether
    more are ready now."""
    xid, seq = decode_position(after)
    rows = (await session.execute(PAGE_SQL, {"xid": xid, "seq": seq, "limit": first + 1})).all()
    has_more = len(rows) > first
    rows = rows[:first]
    cursor = encode_position(int(rows[-1].xid), rows[-1].seq) if rows else encode_position(xid, seq)
    pas: dict[int, SharedPa] = {}  # a PA has many windows in a page: described once
    changes = [_change(r, pseudonym_key, pas) for r in rows]
    return FeedPage(changes=changes, pas=list(pas.values()), cursor=cursor, has_more=has_more)
