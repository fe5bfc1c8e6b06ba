"""Open Referral UK: the co-op's services for council directories (docs/market.md).

Open and unauthenticated, as the standard requires, with `Access-Control-Allow-Origin: *`
on every answer: `GET /openreferral/` (about this API), `GET /openreferral/services`
(paginated, `page` from 1 and `per_page` up to 100) and `GET /openreferral/services/{id}`.
The content is public by nature (care/openreferral.py): no member appears.
"""

from __future__ import annotations

import math
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from care import openreferral

PROFILE = "https://openreferraluk.org/"
OPENAPI = "https://raw.githubusercontent.com/openreferral/uk-profile/main/schema/openapi.json"
OPEN = {"Access-Control-Allow-Origin": "*"}


def _answer(content: Any, status: int = 200) -> JSONResponse:
    return JSONResponse(content, status_code=status, headers=OPEN)


def _not_found() -> JSONResponse:
    return _answer({"message": "No service with that id."}, 404)


def _whole(value: str, low: int, high: int) -> int | None:
    number = int(value) if value.isascii() and value.isdigit() else None
    return number if number is not None and low <= number <= high else None


def openreferral_router(base_url: str, contact: openreferral.Contact) -> APIRouter:
    router = APIRouter(prefix="/openreferral")

    def sessions(request: Request) -> async_sessionmaker[AsyncSession]:
        factory: async_sessionmaker[AsyncSession] = request.app.state.sessions
        return factory

    @router.get("/", include_in_schema=False)
    async def about() -> JSONResponse:
        return _answer({"version": "3.0", "profile": PROFILE, "openapi_url": OPENAPI})

    @router.get("/services", include_in_schema=False)
    async def services(
        request: Request,
        page_text: str = Query(default="1", alias="page", max_length=12),
        per_page_text: str = Query(default="50", alias="per_page", max_length=12),
    ) -> JSONResponse:
        page, per_page = _whole(page_text, 1, 100_000), _whole(per_page_text, 1, 100)
        if page is None or per_page is None:
            return _answer(
                {"message": "page must be a whole number from 1; per_page from 1 to 100."}, 400
            )
        async with sessions(request)() as session:
            owner = await openreferral.coop(session)
            total, rows = await openreferral.page(session, (page - 1) * per_page, per_page)
        contents = (
            [openreferral.service(r, owner, base_url, contact, full=False) for r in rows]
            if owner is not None
            else []
        )
        pages = math.ceil(total / per_page) if total else 0
        return _answer(
            {
                "total_items": total,
                "total_pages": pages,
                "page_number": page,
                "size": len(contents),
                "first_page": page == 1,
                "last_page": page >= pages,
                "empty": not contents,
                "contents": contents,
            }
        )

    @router.get("/services/{service_id}", include_in_schema=False)
    async def one_service(request: Request, service_id: str) -> JSONResponse:
        cluster = openreferral.cluster_of(base_url, service_id[:64])
        if cluster is None:
            return _not_found()
        async with sessions(request)() as session:
            owner = await openreferral.coop(session)
            row = await openreferral.one(session, cluster)
        if row is None or owner is None:
            return _not_found()
        return _answer(openreferral.service(row, owner, base_url, contact, full=True))

    return router
