"""Keyset pagination in SQL, for one list or for many parents at once.

A page is requested as (first, after); `after` is the sort key of the last row seen.
Per-parent pages (a connection on every item of a list) are cut with window functions in
one statement, so nested connections cost one query per level, not one per parent.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Integer, Select, bindparam, func, select, tuple_
from sqlalchemy.orm import QueryableAttribute

Column = ColumnElement[Any] | QueryableAttribute[Any]


class InvalidCursor(ValueError):
    """A cursor whose keys do not fit the sort keys of the list it was given to (another
    list's cursor, or a forged one): the caller's mistake, refused before any SQL runs."""


BIGINT = (-(2**63), 2**63 - 1)


def _check_cursor(keys: Sequence[Column], after: tuple[Any, ...]) -> None:
    if len(keys) != len(after):
        raise InvalidCursor
    for key, value in zip(keys, after, strict=True):
        try:
            expected = key.type.python_type
        except NotImplementedError:
            continue
        # bool is an int to Python, not to PostgreSQL.
        if isinstance(value, bool) or not isinstance(value, expected):
            raise InvalidCursor
        if isinstance(value, int) and not BIGINT[0] <= value <= BIGINT[1]:
            raise InvalidCursor


@dataclass(frozen=True)
class PageRequest:
    first: int
    after: tuple[Any, ...] | None = None


def page(
    stmt: Select,
    sort_keys: Sequence[Column],
    request: PageRequest,
    *,
    parent: Column | None = None,
) -> Select:
    """Wrap `stmt` so it returns at most first+1 rows (per parent when given), after the
    cursor, with `pg_total` (rows per parent before the cursor cut) and `pg_parent` columns.

    The extra row tells whether there is a next page.
    """
    extra: list[ColumnElement[Any]] = [
        func.count().over(partition_by=[parent] if parent is not None else None).label("pg_total")
    ]
    if parent is not None:
        extra.append(parent.label("pg_parent"))
    extra += [key.label(f"pg_k{i}") for i, key in enumerate(sort_keys)]
    # Level 1: every visible row with its total; level 2: the cursor cut and ranking.
    counted = stmt.add_columns(*extra).subquery()
    keys = [counted.c[f"pg_k{i}"] for i in range(len(sort_keys))]
    ranked = select(counted).add_columns(
        func.row_number()
        .over(partition_by=[counted.c.pg_parent] if parent is not None else None, order_by=keys)
        .label("pg_rank")
    )
    if request.after is not None:
        _check_cursor(keys, request.after)
        after = [
            bindparam(f"page_after_{i}", value, type_=key.type)
            for i, (key, value) in enumerate(zip(keys, request.after, strict=True))
        ]
        ranked = ranked.where(tuple_(*keys) > tuple_(*after))
    sub = ranked.subquery()
    order = [sub.c.pg_parent] if parent is not None else []
    limit = bindparam("page_limit", request.first + 1, type_=Integer)
    return select(sub).where(sub.c.pg_rank <= limit).order_by(*order, sub.c.pg_rank)


def page_params(request: PageRequest, sort_keys: Sequence[Column] = ()) -> dict[str, Any]:
    """The values of a page's named parameters (to rerun a statement `page` built with
    `sort_keys`, against which the cursor is checked)."""
    if request.after is not None and sort_keys:
        _check_cursor(sort_keys, request.after)
    values: dict[str, Any] = {"page_limit": request.first + 1}
    for i, value in enumerate(request.after or ()):
        values[f"page_after_{i}"] = value
    return values
