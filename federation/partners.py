"""Partnerships as this instance records them: the rows, and what every call to a
partner leaves on its partnership (`last_contact_at`, `last_error`)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, func, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from care.models import PartnerCluster, Partnership, PartnerWindow
from federation.client import PartnerError


async def record_contact(
    session: AsyncSession, partnership_id: int, error: PartnerError | None = None
) -> None:
    """Note the outcome of a call to the partner (in the caller's transaction): a success
    sets `last_contact_at` and clears `last_error`; a failure sets `last_error`."""
    values: dict[str, Any]
    if error is None:
        values = {"last_contact_at": func.now(), "last_error": None, "last_error_at": None}
    else:
        values = {"last_error": error.summary(), "last_error_at": func.now()}
    await session.execute(
        update(Partnership).where(Partnership.id == partnership_id).values(**values)
    )


async def store_keys(
    db: AsyncSession | AsyncConnection, partnership_id: int, keys: list[dict[str, str]]
) -> None:
    """Keep the keys of a partner's manifest re-read because it signed with a key we did
    not hold (a rotation), in the caller's transaction."""
    await db.execute(
        update(Partnership)
        .where(Partnership.id == partnership_id)
        .values(keys=keys, manifest_fetched_at=func.now())
    )


async def forget_partner_data(session: AsyncSession, partnership_id: int) -> int:
    """Delete everything received from a partner (its windows, the clusters it told us it
    opened, our place in its feed): what ending a partnership does. Returns the number of
    windows deleted."""
    deleted = await session.execute(
        delete(PartnerWindow).where(PartnerWindow.partnership_id == partnership_id)
    )
    await session.execute(
        delete(PartnerCluster).where(PartnerCluster.partnership_id == partnership_id)
    )
    await session.execute(
        update(Partnership)
        .where(Partnership.id == partnership_id)
        .values(feed_cursor=None, last_sync_at=None)
    )
    return deleted.rowcount or 0  # type: ignore[attr-defined]
