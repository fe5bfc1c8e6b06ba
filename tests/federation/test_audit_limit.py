"""Refused callers cannot fill the audit table: rows per address and minute are bounded,
and old rows are pruned (federation/signatures.py, AuditLimit)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import Request

from care.models import FederationAudit
from federation import signatures
from federation.signatures import AuditLimit, audit_rows


def request_from(host: str) -> Request:
    return Request(
        {
            "type": "http",
            "method": "POST",
            "path": "/graphql",
            "raw_path": b"/graphql",
            "query_string": b"",
            "headers": [],
            "client": (host, 1234),
            "server": ("127.0.0.1", 8000),
            "scheme": "http",
        }
    )


def test_rows_per_address_and_minute_are_bounded() -> None:
    limit = AuditLimit(per_minute=3)
    assert [limit.admit("10.0.0.1") for _ in range(5)] == [True, True, True, False, False]
    assert limit.admit("10.0.0.2")  # another address has its own allowance


async def test_a_flood_writes_a_bounded_number_of_rows_and_old_rows_go(
    app: Any, db: AsyncSession, monkeypatch: Any
) -> None:
    monkeypatch.setattr(signatures, "AUDIT_LIMIT", AuditLimit(per_minute=5))
    await db.execute(
        insert(FederationAudit).values(
            at=dt.datetime.now(dt.UTC) - dt.timedelta(days=91),
            reason="BAD_SIGNATURE",
            method="POST",
            path="/graphql",
        )
    )
    await db.commit()
    for _ in range(20):
        await audit_rows(app.state.sessions, request_from("192.0.2.7"), "kid", ["BAD_SIGNATURE"])
    count = await db.scalar(select(func.count()).select_from(FederationAudit))
    oldest = await db.scalar(select(func.min(FederationAudit.at)))
    assert count == 5  # the five admitted; the 91-day-old row was pruned
    assert oldest is not None and oldest > dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
