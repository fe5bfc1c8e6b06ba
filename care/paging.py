"""Keyset pagination in SQL, for one list or for many parents at once.

A page is requested as (first, after) or, backwards, (last, before); `after` and `before`
are the sort keys of rows seen. A list has one order: its keys (the last one unique, the
tiebreak) all ascending or all descending, so a cursor is one row comparison. Per-parent
pages (a connection on every item of a list) are cut with window functions in one
statement, so nested connections cost one query per level, not one per parent.
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


def _check_cursor(keys: Sequence[Column], cursor: tuple[Any, ...]) -> None:
    if len(keys) != len(cursor):
        raise InvalidCursor
    for key, value in zip(keys, cursor, strict=True):
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
    """`first` is the page size, whether the caller asked with `first` or `last`;
    `from_end` says it was `last`: the results nearest `before` (or the end of the list),
    still returned in the list's order. `count`: whether to count every matching row
    (`totalCount`), which makes PostgreSQL read them all."""

    first: int
    after: tuple[Any, ...] | None = None
    before: tuple[Any, ...] | None = None
    from_end: bool = False
    count: bool = True

    @property
    def shape(self) -> tuple[bool, bool, bool, bool]:
        """What changes the statement's SQL (its values are parameters)."""
        return (self.after is not None, self.before is not None, self.from_end, self.count)


def page(
    stmt: Select,
    sort_keys: Sequence[Column],
    request: PageRequest,
    *,
    parent: Column | None = None,
    descending: bool = False,
) -> Select:
    """Wrap `stmt` so it returns at most first+1 rows (per parent when given) between the
    cursors, nearest the start (or the end, `from_end`), with `pg_parent`, the keys
    `pg_k0..` and, when counting, `pg_total` (rows per parent before the cursor cut).
    Rows come in the order they were cut in: for `from_end`, the list's order reversed.

    The extra row tells whether there is a further page in the direction of travel.
    """
    extra: list[ColumnElement[Any]] = []
    if request.count:
        partition = [parent] if parent is not None else None
        extra.append(func.count().over(partition_by=partition).label("pg_total"))
    if parent is not None:
        extra.append(parent.label("pg_parent"))
    extra += [key.label(f"pg_k{i}") for i, key in enumerate(sort_keys)]
    # Level 1: every visible row (with its total); level 2: the cursor cut and the page.
    counted = stmt.add_columns(*extra).subquery()
    keys = [counted.c[f"pg_k{i}"] for i in range(len(sort_keys))]
    walk_down = descending != request.from_end
    walk = [k.desc() for k in keys] if walk_down else keys
    cut: list[ColumnElement[bool]] = []
    for name, cursor, later in (
        ("after", request.after, not descending),
        ("before", request.before, descending),
    ):
        if cursor is None:
            continue
        _check_cursor(keys, cursor)
        bound = tuple_(
            *(
                bindparam(f"page_{name}_{i}", value, type_=key.type)
                for i, (key, value) in enumerate(zip(keys, cursor, strict=True))
            )
        )
        # `after` keeps rows later in the list's order, `before` earlier ones.
        cut.append(tuple_(*keys) > bound if later else tuple_(*keys) < bound)
    limit = bindparam("page_limit", request.first + 1, type_=Integer)
    if parent is None:
        # One list: ORDER BY ... LIMIT, which the planner sees, so that it reads an index
        # in order and stops (a ranking's run condition stops too, but is costed as if
        # it read every row, so joins were planned as full hash joins).
        return select(counted).where(*cut).order_by(*walk).limit(limit)
    ranked = (
        select(counted)
        .add_columns(
            func.row_number()
            .over(partition_by=[counted.c.pg_parent], order_by=walk)
            .label("pg_rank")
        )
        .where(*cut)
    )
    sub = ranked.subquery()
    return select(sub).where(sub.c.pg_rank <= limit).order_by(sub.c.pg_parent, sub.c.pg_rank)


def page_params(request: PageRequest, sort_keys: Sequence[Column] = ()) -> dict[str, Any]:
    """The values of a page's named parameters (to rerun a statement `page` built with
    `sort_keys`, against which the cursors are checked)."""
    values: dict[str, Any] = {"page_limit": request.first + 1}
    for name, cursor in (("after", request.after), ("before", request.before)):
        if cursor is None:
            continue
        if sort_keys:
            _check_cursor(sort_keys, cursor)
        for i, value in enumerate(cursor):
            values[f"page_{name}_{i}"] = value
    return values
