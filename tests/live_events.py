"""Reading the live events (care/events.py) that tests' changes committed."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from care.events import StoredEvent, events_after


async def latest(db: AsyncSession) -> int:
    """The last sequence handed out (0 when none): the tests truncate `live_event`
    between tests, never its sequence."""
    last = await db.scalar(
        text("SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM live_event_sequence")
    )
    return int(last or 0)


async def committed_since(db: AsyncSession, mark: int) -> list[StoredEvent]:
    """Every event committed after `mark`, in sequence order."""
    return await events_after(db, None, mark, limit=10_000)
