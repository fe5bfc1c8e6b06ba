"""Per-request DataLoaders: one SQL statement per relation and page request, whatever
the number of parents."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from typing import Any

from sqlalchemy import Row, Select
from strawberry.dataloader import DataLoader

from care.paging import PageRequest
from schema.connection import group_by_parent
from schema.context import Context


def by_id(
    ctx: Context, key: Hashable, statement: Callable[[Sequence[Any]], Select]
) -> DataLoader[Any, Row[Any] | None]:
    """Rows by primary key (`id` column); None for ids the caller may not see."""

    async def load(ids: list[Any]) -> list[Row[Any] | None]:
        rows = await ctx.rows(statement(ids))
        found = {r.id: r for r in rows}
        return [found.get(i) for i in ids]

    return ctx.loader(("by_id", key), load)


def grouped(
    ctx: Context, key: Hashable, statement: Callable[[Sequence[Any]], Select]
) -> DataLoader[Any, list[Row[Any]]]:
    """Rows per parent (`pg_parent` column), for short unpaginated lists."""

    async def load(parents: list[Any]) -> list[list[Row[Any]]]:
        rows = await ctx.rows(statement(parents))
        groups = group_by_parent(rows)
        return [groups.get(p, []) for p in parents]

    return ctx.loader(("grouped", key), load)


def paged(
    ctx: Context,
    key: Hashable,
    request: PageRequest,
    statement: Callable[[Sequence[Any]], Select],
) -> DataLoader[Any, list[Row[Any]]]:
    """A page of rows per parent; the loader is keyed by the page request and filters so
    every parent asking for the same page shares one statement."""

    async def load(parents: list[Any]) -> list[list[Row[Any]]]:
        rows = await ctx.rows(statement(parents))
        groups = group_by_parent(rows)
        return [groups.get(p, []) for p in parents]

    return ctx.loader(("paged", key, request), load)
