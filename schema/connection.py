"""Relay connections: opaque keyset cursors, page size limits, and building a
connection from the rows `care.paging.page` returns."""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Callable, Sequence
from typing import Annotated, Any, Generic, TypeVar

import orjson
import strawberry
from graphql import GraphQLError
from sqlalchemy import Row
from strawberry import relay
from strawberry.exceptions import StrawberryInputCoercionError

from care.paging import PageRequest
from schema.context import DEFAULT_PAGE_SIZE, Info
from schema.scalars import parse_datetime

NodeT = TypeVar("NodeT")

# Arguments of every paged field.
FirstArg = Annotated[
    int | None,
    strawberry.argument(
        description="Page size: how many results to return, from 1 to the server's maximum "
        f"(100 unless configured; BAD_USER_INPUT outside it); {DEFAULT_PAGE_SIZE} when omitted "
        "or null."
    ),
]
AfterArg = Annotated[
    str | None,
    strawberry.argument(
        description="Return the results after this cursor, one this connection returned "
        "(an `endCursor` or an edge's `cursor`); from the start when omitted."
    ),
]


@strawberry.type(description="An edge in a connection: a node and its cursor.")
class Edge(Generic[NodeT]):
    cursor: str = strawberry.field(
        description="Opaque cursor of this edge: pass it as `after` to get the results after it."
    )
    node: NodeT = strawberry.field(description="The result at this edge.")


@strawberry.type(description="A page of results (Relay connection) with the total count.")
class Connection(Generic[NodeT]):
    edges: list[Edge[NodeT]] = strawberry.field(
        description="The results of this page with their cursors, in the connection's order."
    )
    page_info: relay.PageInfo = strawberry.field(
        description="Whether more results follow, and the cursors of this page's ends."
    )
    total_count: int = strawberry.field(
        description="All results the caller may see, across pages (0 on a page past the end)."
    )

    @strawberry.field(description="The nodes of this page, without cursors.")
    def nodes(self) -> list[NodeT]:
        return [edge.node for edge in self.edges]


def encode_cursor(keys: Sequence[Any]) -> str:
    parts = [{"t": k.isoformat()} if isinstance(k, dt.datetime) else k for k in keys]
    return base64.urlsafe_b64encode(orjson.dumps(parts)).decode().rstrip("=")


def decode_cursor(cursor: str, arity: int) -> tuple[Any, ...]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        parts = orjson.loads(raw)
        if not isinstance(parts, list) or len(parts) != arity:
            raise ValueError
        out: list[Any] = []
        for p in parts:
            if isinstance(p, dict):
                out.append(parse_datetime(p["t"]))
            elif isinstance(p, int | str):
                out.append(p)
            else:
                raise ValueError
        return tuple(out)
    except (ValueError, KeyError, TypeError, StrawberryInputCoercionError) as exc:
        raise invalid_cursor() from exc


def invalid_cursor() -> GraphQLError:
    return GraphQLError(
        "Invalid cursor: pass a cursor this connection returned.",
        extensions={"code": "BAD_USER_INPUT"},
    )


def page_request(info: Info, first: int | None, after: str | None, arity: int = 1) -> PageRequest:
    limits = info.context.limits
    size = DEFAULT_PAGE_SIZE if first is None else first
    if size < 1 or size > limits.max_page_size:
        raise GraphQLError(
            f"`first` must be between 1 and {limits.max_page_size}.",
            extensions={"code": "BAD_USER_INPUT"},
        )
    return PageRequest(first=size, after=decode_cursor(after, arity) if after else None)


def build_connection(
    rows: Sequence[Row[Any]],
    request: PageRequest,
    to_node: Callable[[Row[Any]], Any],
    arity: int = 1,
) -> Connection[Any]:
    """Rows come from `care.paging.page` (at most first+1, with pg_total and pg_k* keys)."""
    has_next = len(rows) > request.first
    rows = rows[: request.first]
    edges = [
        Edge(cursor=encode_cursor([getattr(r, f"pg_k{i}") for i in range(arity)]), node=to_node(r))
        for r in rows
    ]
    # The total is counted before the cursor cut; an empty page past the end reports 0.
    total = rows[0].pg_total if rows else 0
    return Connection(
        edges=edges,
        page_info=relay.PageInfo(
            has_next_page=has_next,
            has_previous_page=request.after is not None,
            start_cursor=edges[0].cursor if edges else None,
            end_cursor=edges[-1].cursor if edges else None,
        ),
        total_count=total,
    )


def group_by_parent(rows: Sequence[Row[Any]]) -> dict[Any, list[Row[Any]]]:
    grouped: dict[Any, list[Row[Any]]] = {}
    for r in rows:
        grouped.setdefault(r.pg_parent, []).append(r)
    return grouped
