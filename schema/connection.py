"""Relay connections: opaque keyset cursors, page size limits, and building a
connection from the rows `care.paging.page` returns."""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from typing import Annotated, Any, Generic, TypeVar

import orjson
import strawberry
from graphql import (
    BooleanValueNode,
    FieldNode,
    FragmentSpreadNode,
    GraphQLError,
    InlineFragmentNode,
    NullValueNode,
    SelectionSetNode,
    ValueNode,
    VariableNode,
)
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
        description="Page size: how many results to return from the start (or from just "
        "after `after`), from 1 to the server's maximum (100 unless configured; "
        f"BAD_USER_INPUT outside it); {DEFAULT_PAGE_SIZE} when omitted or null. This "
        "default applies only without `last`: giving both `first` and `last` is "
        "BAD_USER_INPUT."
    ),
]
AfterArg = Annotated[
    str | None,
    strawberry.argument(
        description="Return the results after this cursor, one this connection returned "
        "(an `endCursor` or an edge's `cursor`) under the same order; from the start when "
        "omitted."
    ),
]
LastArg = Annotated[
    int | None,
    strawberry.argument(
        description="Paging backwards: how many results to return from the end (or from "
        "just before `before`), from 1 to the server's maximum (BAD_USER_INPUT outside it; "
        "with `first` too, BAD_USER_INPUT). The page is still in the connection's order; "
        "`pageInfo.hasPreviousPage` says whether more results come before it."
    ),
]
BeforeArg = Annotated[
    str | None,
    strawberry.argument(
        description="Return the results before this cursor, one this connection returned "
        "(a `startCursor` or an edge's `cursor`) under the same order; up to the end when "
        "omitted."
    ),
]


@strawberry.type(description="An edge in a connection: a node and its cursor.")
class Edge(Generic[NodeT]):
    cursor: str = strawberry.field(
        description="Opaque cursor of this edge: pass it as `after` for the results after "
        "it, or as `before` for those before it (under the same order)."
    )
    node: NodeT = strawberry.field(description="The result at this edge.")


@strawberry.type(description="A page of results (Relay connection) with the total count.")
class Connection(Generic[NodeT]):
    edges: list[Edge[NodeT]] = strawberry.field(
        description="The results of this page with their cursors, in the connection's order "
        "(also when paging backwards with `last`)."
    )
    page_info: relay.PageInfo = strawberry.field(
        description="Whether more results come before and after this page, and the cursors "
        "of its ends. Paging forwards (`first`), hasNextPage says whether results follow "
        "and hasPreviousPage is true exactly when `after` was given; paging backwards "
        "(`last`), hasPreviousPage says whether results precede and hasNextPage is true "
        "exactly when `before` was given."
    )
    counted: strawberry.Private[int | None]

    @strawberry.field(
        description="All results the caller may see, across pages (0 on a page past the "
        "end). Counted only when selected: leave it out when a screen does not show it, "
        "and PostgreSQL stops reading after the page."
    )
    def total_count(self) -> int:
        if self.counted is None:
            # `wants_total` saw no totalCount in the selection: a bug, not the caller's.
            raise RuntimeError("totalCount was selected but not counted")
        return self.counted

    @strawberry.field(description="The nodes of this page, without cursors.")
    def nodes(self) -> list[NodeT]:
        return [edge.node for edge in self.edges]


def encode_cursor(keys: Sequence[Any], order: str | None = None) -> str:
    parts = [{"t": k.isoformat()} if isinstance(k, dt.datetime) else k for k in keys]
    # A cursor of a list in a chosen order carries the order's name, so it is refused
    # under another; the default order's cursors keep their plain form.
    payload: Any = parts if order is None else {"o": order, "k": parts}
    return base64.urlsafe_b64encode(orjson.dumps(payload)).decode().rstrip("=")


def parse_cursor(cursor: str) -> tuple[str | None, tuple[Any, ...]]:
    """A cursor's order (None for a list's default order) and keys, or `invalid_cursor`."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        payload = orjson.loads(raw)
        order: str | None = None
        if isinstance(payload, dict):
            order, payload = payload["o"], payload["k"]
            if not isinstance(order, str) or len(payload) == 0:
                raise ValueError
        if not isinstance(payload, list):
            raise ValueError
        out: list[Any] = []
        for p in payload:
            if isinstance(p, dict):
                out.append(parse_datetime(p["t"]))
            elif isinstance(p, int | str):
                out.append(p)
            else:
                raise ValueError
        return order, tuple(out)
    except (ValueError, KeyError, TypeError, StrawberryInputCoercionError) as exc:
        raise invalid_cursor() from exc


def decode_cursor(cursor: str, arity: int, order: str | None = None) -> tuple[Any, ...]:
    found, keys = parse_cursor(cursor)
    if found != order or len(keys) != arity:
        raise invalid_cursor()
    return keys


def invalid_cursor() -> GraphQLError:
    return GraphQLError(
        "Invalid cursor: pass a cursor this connection returned under the same order.",
        extensions={"code": "BAD_USER_INPUT"},
    )


def page_request(
    info: Info,
    first: int | None,
    after: str | None,
    last: int | None = None,
    before: str | None = None,
    *,
    arity: int = 1,
    order: str | None = None,
) -> PageRequest:
    """The page the caller asked for. `order` names the list's order when it is not the
    default one (cursors carry it)."""
    limits = info.context.limits
    from_end = last is not None
    if from_end and _given(info, "first"):
        raise GraphQLError(
            "Give `first` (paging forwards) or `last` (paging backwards), not both.",
            extensions={"code": "BAD_USER_INPUT"},
        )
    size = last if last is not None else DEFAULT_PAGE_SIZE if first is None else first
    if size < 1 or size > limits.max_page_size:
        name = "last" if from_end else "first"
        raise GraphQLError(
            f"`{name}` must be between 1 and {limits.max_page_size}.",
            extensions={"code": "BAD_USER_INPUT"},
        )
    return PageRequest(
        first=size,
        after=decode_cursor(after, arity, order) if after else None,
        before=decode_cursor(before, arity, order) if before else None,
        from_end=from_end,
        count=wants_total(info),
    )


def _variables(info: Info) -> Mapping[str, Any]:
    values: Any = info._raw_info.variable_values
    return getattr(values, "coerced", values)  # graphql-core 3.3 may hand a NamedTuple


def _given(info: Info, argument: str) -> bool:
    """Whether the query itself gives `argument` a value that is not null (a schema
    default fills in an argument the query leaves out)."""
    for field in info._raw_info.field_nodes:
        for node in field.arguments or ():
            if node.name.value != argument:
                continue
            if isinstance(node.value, VariableNode):
                return _variables(info).get(node.value.name.value) is not None
            return not isinstance(node.value, NullValueNode)
    return False


def wants_total(info: Info) -> bool:
    """Whether the connection's selection asks for `totalCount`, through fragments and
    inline fragments, leaving out what @skip/@include leave out."""
    raw = info._raw_info
    variables = _variables(info)
    seen: set[str] = set()

    def condition(value: ValueNode) -> bool:
        if isinstance(value, VariableNode):
            return bool(variables.get(value.name.value))
        return isinstance(value, BooleanValueNode) and value.value

    def included(node: FieldNode | FragmentSpreadNode | InlineFragmentNode) -> bool:
        for directive in node.directives or ():
            name = directive.name.value
            if name not in ("skip", "include"):
                continue
            value = next((a.value for a in directive.arguments or () if a.name.value == "if"), None)
            if value is not None and condition(value) == (name == "skip"):
                return False
        return True

    def asks(selection_set: SelectionSetNode | None) -> bool:
        for node in selection_set.selections if selection_set else ():
            if isinstance(node, FieldNode):
                if node.name.value == "totalCount" and included(node):
                    return True
            elif isinstance(node, InlineFragmentNode):
                if included(node) and asks(node.selection_set):
                    return True
            elif isinstance(node, FragmentSpreadNode):
                name = node.name.value
                fragment = raw.fragments.get(name)
                if name in seen or fragment is None or not included(node):
                    continue
                seen.add(name)
                if asks(fragment.selection_set):
                    return True
        return False

    return any(included(field) and asks(field.selection_set) for field in raw.field_nodes)


def build_connection(
    rows: Sequence[Row[Any]],
    request: PageRequest,
    to_node: Callable[[Row[Any]], Any],
    arity: int = 1,
    order: str | None = None,
) -> Connection[Any]:
    """Rows come from `care.paging.page`: at most first+1, in the order they were cut in
    (reversed for `last`), with pg_k* keys and, when counted, pg_total."""
    further = len(rows) > request.first
    rows = rows[: request.first]
    if request.from_end:
        rows = rows[::-1]
    edges = [
        Edge(
            cursor=encode_cursor([getattr(r, f"pg_k{i}") for i in range(arity)], order),
            node=to_node(r),
        )
        for r in rows
    ]
    total: int | None = None
    if request.count:
        # Counted before the cursor cut; an empty page past the end reports 0.
        total = rows[0].pg_total if rows else 0
    return Connection(
        edges=edges,
        page_info=relay.PageInfo(
            has_next_page=request.before is not None if request.from_end else further,
            has_previous_page=further if request.from_end else request.after is not None,
            start_cursor=edges[0].cursor if edges else None,
            end_cursor=edges[-1].cursor if edges else None,
        ),
        counted=total,
    )


def group_by_parent(rows: Sequence[Row[Any]]) -> dict[Any, list[Row[Any]]]:
    grouped: dict[Any, list[Row[Any]]] = {}
    for r in rows:
        grouped.setdefault(r.pg_parent, []).append(r)
    return grouped
