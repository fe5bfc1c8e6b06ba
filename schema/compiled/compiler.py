"""Compile a query operation into one SQL statement whose columns are the response's root
fields as JSON text, written by PostgreSQL as text (`_object`, `_list`): compact, as
orjson writes the resolvers' answers.

The statement is built once per operation and viewer shape (`Plan`) and runs again with
the request's values: the viewer's (`care.policy.viewer_params`) and the arguments'
(`Plan.parameters`). Its rows come from the selects of `care.queries`, which compose the
predicates and masks of `care.policy`; `registry` says how each field is read.

Anything the registry does not declare raises `Unsupported` while compiling; anything a
request's values make doubtful (a cursor that does not decode, a page size out of bounds)
raises `Fallback` while binding. Either way the operation runs on the resolver path, which
answers (or refuses) exactly as it always has.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import orjson
from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLField,
    GraphQLIncludeDirective,
    GraphQLInterfaceType,
    GraphQLList,
    GraphQLNamedType,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLSchema,
    GraphQLSkipDirective,
    GraphQLUnionType,
    InlineFragmentNode,
    NullValueNode,
    OperationDefinitionNode,
    SelectionSetNode,
    VariableNode,
)
from graphql.execution.values import VariableValues, get_argument_values, get_directive_values
from sqlalchemy import (
    BigInteger,
    Boolean,
    ColumnElement,
    DateTime,
    Double,
    FromClause,
    Integer,
    LargeBinary,
    Select,
    String,
    Text,
    bindparam,
    case,
    cast,
    func,
    literal_column,
    null,
    select,
    tuple_,
)
from sqlalchemy.dialects.postgresql import ARRAY, aggregate_order_by
from sqlalchemy.dialects.postgresql import array_agg as pg_array_agg
from sqlalchemy.dialects.postgresql.asyncpg import PGDialect_asyncpg
from sqlalchemy.sql.compiler import SQLCompiler

from care import policy, tokens
from care.paging import InvalidCursor, PageRequest, page_params
from care.viewer import Viewer
from schema.compiled import registry
from schema.compiled.registry import (
    VIEWER,
    AnyNode,
    Column,
    Embedded,
    First,
    GlobalId,
    InRow,
    Page,
    Ranged,
    Render,
    RootRows,
    ToMany,
    ToOne,
)
from schema.connection import decode_cursor
from schema.context import DEFAULT_PAGE_SIZE, Limits
from schema.permissions import Access, declared_access, decode_id, parse_global_id, parse_pk
from schema.types import NODE_TYPES


class Unsupported(Exception):
    """The operation asks for something the compiler does not (yet) read: `where` names
    it (e.g. `Cluster.pools`), for the log and docs."""

    def __init__(self, where: str) -> None:
        super().__init__(where)
        self.where = where


class Fallback(Exception):
    """A request's values the compiled statement would not answer exactly as the
    resolvers do (their error, e.g. an invalid cursor): run the resolvers."""


# One request's values for some named parameters of the statement, from its variables,
# limits and viewer (whose clock a value may read: `clusterFigures`' default period).
Binder = Callable[[VariableValues, Limits, Viewer], dict[str, Any]]


def value_shape(values: Mapping[str, Any]) -> tuple[tuple[str, object], ...]:
    """What of some values (variables, or a field's arguments) decides a statement's SQL:
    which are null (an input object's fields too), which lists empty, each boolean's and
    each enum's value (`orderBy`, `careTerms`' filters); other values are parameters. The
    plan cache's key holds the variables' (`extension.prepare`)."""

    def shape(value: Any) -> object:
        # An enum's value can change the SQL (`orderBy`): few values, a plan each.
        if value is None or isinstance(value, bool | Enum):
            return value
        if isinstance(value, list | tuple):
            return "list" if value else "empty"
        if isinstance(value, dict):  # an input object: its fields' shapes (which null)
            return tuple(sorted((key, shape(item)) for key, item in value.items()))
        return "value"

    return tuple(sorted((name, shape(value)) for name, value in values.items()))


@dataclass
class Plan:
    """A compiled operation: the statement, its root fields' response keys (its columns,
    in order), what each root field requires of the caller, and the binders that turn a
    request's variables into parameter values."""

    statement: Select
    keys: list[str]
    access: list[Access]
    binders: list[Binder] = field(default_factory=list)
    # The viewer's clock's values for the sources that read it (`registry.Source.clock`).
    clocks: list[Callable[[Viewer], dict[str, Any]]] = field(default_factory=list)
    # The statement as asyncpg runs it (see `for_driver`), compiled on first use.
    _driver: DriverStatement | None = None

    def parameters(
        self, viewer: Viewer, variables: VariableValues, limits: Limits
    ) -> dict[str, Any]:
        values = policy.viewer_params(viewer)
        for clock in self.clocks:
            values.update(clock(viewer))
        for bind in self.binders:
            values.update(bind(variables, limits, viewer))
        return values

    def for_driver(self) -> DriverStatement:
        """The statement compiled once for asyncpg, with the token's in-force check
        (`care.tokens.in_force_clause`, true when there is no token) as a last column: the
        HTTP fast lane (api/fastlane.py) reads it; the full path has checked the token
        already, passes none and ignores it. One compilation serves both (~100 ms for a
        large plan)."""
        if self._driver is None:
            statement = self.statement.add_columns(tokens.in_force_clause().label("in_force"))
            self._driver = DriverStatement(statement.compile(dialect=DRIVER))
        return self._driver

    def data(self, row: Iterable[Any]) -> dict[str, Any]:
        """The response's `data` from the statement's row, for both paths: PostgreSQL's
        JSON goes to the client as it is (orjson inlines a Fragment); the last column, the
        token's check, is not the answer's."""
        return {
            key: None if value is None else orjson.Fragment(value)
            for key, value in zip(self.keys, row, strict=False)
        }


DRIVER = PGDialect_asyncpg()


class DriverStatement:
    """A compiled statement as asyncpg runs it: its SQL text and positional arguments
    from named values, with SQLAlchemy's bind processors, as its own execution would."""

    def __init__(self, compiled: SQLCompiler) -> None:
        self.compiled = compiled
        self.sql = compiled.string
        self.names = tuple(compiled.positiontup or ())
        processors = compiled._bind_processors
        self.processors = tuple(processors.get(name) for name in self.names)
        # A list filter (an "expanding" parameter) renders one placeholder per item.
        self.expands = bool(compiled.post_compile_params or compiled.literal_execute_params)

    def bind(self, values: Mapping[str, Any]) -> tuple[str, list[Any]]:
        """The SQL text and its arguments for these values."""
        if self.expands:
            state = self.compiled.construct_expanded_state(values)
            return state.statement, [
                _processed(state.processors.get(name), state.parameters[name])
                for name in state.positiontup or ()
            ]
        params = self.compiled.construct_params(values)
        return self.sql, [
            _processed(process, params[name])
            for name, process in zip(self.names, self.processors, strict=True)
        ]


def _processed(process: Any, value: Any) -> Any:
    return value if process is None else process(value)


def placeholder(viewer: Viewer) -> Viewer:
    """A viewer of the same shape holding none of the caller's values: the statement is
    cached, so any value built into it must not be this caller's (each is replaced by a
    parameter per request anyway)."""
    return Viewer(role=viewer.role, member_id=None if viewer.member_id is None else 0)


# --- SQL renderings identical to today's serialisation -----------------------------------


def _constant(text: str) -> ColumnElement[str]:
    """A string constant of ours (a GraphQL name or a format), inlined in the SQL."""
    if "'" in text or "\\" in text:
        raise ValueError(text)
    return literal_column(f"'{text}'::text", Text)


NEWLINE = literal_column("E'\\n'", Text)


def _instant(column: Any) -> ColumnElement[str]:
    """Python's `datetime.isoformat()` of the UTC instant (Strawberry's DateTime), from
    PostgreSQL's text of the UTC timestamp in DateStyle ISO (set on every connection by
    `api.db`): `2026-11-29 05:00:00`, a fraction written without its trailing zeros,
    which Python writes as six digits. A fifth of `to_char`'s instructions."""
    text = cast(func.timezone(_constant("UTC"), column), Text)
    whole = func.length(text) == literal_column("19")  # no fraction
    full = case((whole, text), else_=func.rpad(text, literal_column("26"), _constant("0")))
    return func.replace(full, _constant(" "), _constant("T")) + _constant("+00:00")


def _date(column: Any) -> ColumnElement[str]:
    """`YYYY-MM-DD`: a date's text in DateStyle ISO."""
    return cast(column, Text)


def _float(column: Any) -> ColumnElement[Any]:
    """orjson's text of the Python float of a float8 or numeric column, as a JSON number:
    PostgreSQL's shortest text (`extra_float_digits` 1, set by `api.db`) but `2.0` for an
    integral value, `-0.0`, and `0.00001` or `1e-6` where PostgreSQL writes `1e-05` and
    `1e-06`. Exact below 1e15 in magnitude (the float columns' bounds)."""
    x = cast(column, Double)
    text = cast(x, Text)
    mantissa = func.split_part(text, _constant("e"), 1)
    exponent = func.split_part(text, _constant("e"), 2)
    sign = case((x < 0, _constant("-")), else_=_constant(""))
    digits = func.replace(func.ltrim(mantissa, _constant("-")), _constant("."), _constant(""))
    written = case(
        (x == 0, case((text == _constant("-0"), _constant("-0.0")), else_=_constant("0.0"))),
        (x == func.trunc(x), cast(cast(x, BigInteger), Text) + _constant(".0")),
        (func.abs(x) >= literal_column("1e-4"), text),
        (exponent == _constant("-05"), sign + _constant("0.0000") + digits),
        else_=mantissa + _constant("e") + cast(cast(exponent, Integer), Text),
    )
    return written


def _base64(text: Any) -> ColumnElement[str]:
    encoded = func.encode(func.convert_to(text, _constant("UTF8")), _constant("base64"))
    return func.replace(encoded, NEWLINE, _constant(""))


# base64 breaks its output into lines of 76 characters, from 57 bytes of input.
_ONE_LINE = 57
_LONGEST_INTEGER = len(str(-(2**63)))


def global_id(type_name: str, column: Any) -> ColumnElement[str]:
    """Relay's global id as Strawberry writes it: base64 of `Type:id`.

    An integer id (every node type's) is written in ASCII digits, so its text is its
    bytes (a cast, where text in general needs `convert_to`), and `Type:id` stays under
    one base64 line, so there is no line break to take out: two calls fewer per id,
    which the cluster page makes 300 times."""
    prefix = _constant(f"{type_name}:")
    if isinstance(column.type, Integer) and len(type_name) + 1 + _LONGEST_INTEGER <= _ONE_LINE:
        return func.encode(cast(prefix + cast(column, Text), LargeBinary), _constant("base64"))
    return _base64(prefix + cast(column, Text))


def cursor(keys: list[Any], order: str | None = None) -> ColumnElement[str]:
    """`schema.connection.encode_cursor`: url-safe base64, unpadded, of the keys as
    compact JSON (an instant as {"t": isoformat}, text as a JSON string, which PostgreSQL
    escapes as orjson does), wrapped as {"o": order, "k": keys} under a chosen order."""
    parts: list[ColumnElement[str]] = []
    for key in keys:
        if isinstance(key.type, DateTime):
            parts.append(_constant('{"t":"') + _instant(key) + _constant('"}'))
        elif isinstance(key.type, String):
            parts.append(cast(func.to_json(key), Text))
        else:
            parts.append(cast(key, Text))
    text: ColumnElement[str] = _constant("[" if order is None else f'{{"o":"{order}","k":[')
    for i, part in enumerate(parts):
        text = text + (_constant(",") if i else _constant("")) + part
    text = text + _constant("]" if order is None else "]}")
    return func.rtrim(func.translate(_base64(text), _constant("+/"), _constant("-_")), "=")


# JSON is written as text: `json_build_object` looks up each argument's type (keys too) in
# the catalogue and escapes it, per row; concatenating text that needs no escaping (keys,
# ids, instants, numbers) and escaping only free text (`to_json`) took a fifth of the
# cluster page's instructions off (callgrind). Every value is JSON text, or SQL null for a
# JSON null.
NULL = literal_column("'null'::text", Text)
TRUE = literal_column("'true'::text", Text)
FALSE = literal_column("'false'::text", Text)
_NAME = re.compile(r"[_A-Za-z][_0-9A-Za-z]*")


def _quoted(text: Any) -> ColumnElement[str]:
    """A JSON string of text that needs no escaping (ids, cursors, instants, dates)."""
    return _constant('"') + text + _constant('"')


def _escaped(value: Any) -> ColumnElement[str]:
    return cast(func.to_json(value), Text)


def _boolean(condition: ColumnElement[bool]) -> ColumnElement[str]:
    return case((condition, TRUE), else_=FALSE)


def _render(column: Any, how: Render) -> ColumnElement[Any]:
    if how is Render.INSTANT:
        return _quoted(_instant(column))
    if how is Render.DATE:
        return _quoted(_date(column))
    if how is Render.LIST:
        return _escaped(column)
    if how is Render.FLOAT:
        return _float(column)
    if how is Render.ENUM:
        return _quoted(column)
    if how is Render.IS_SET:
        return _boolean(column.is_not(None))
    if how is Render.LIST_OR_EMPTY:
        return func.coalesce(_escaped(column), _constant("[]"))
    if isinstance(column.type, Integer | Boolean):
        return cast(column, Text)  # digits, or true and false
    return _escaped(column)


@dataclass(frozen=True)
class Present:
    """JSON text that is never SQL null, in pieces (text of ours, and SQL text) that an
    object joins with its keys: fewer concatenations, and no `coalesce`. Only for what
    cannot be null: a null piece would make the whole object null."""

    pieces: tuple[str | ColumnElement[str], ...]


def _name_string(name: str) -> Present:
    """A GraphQL name as a JSON string (`__typename`): nothing in it to escape."""
    if not _NAME.fullmatch(name):
        raise Unsupported(name)
    return Present((f'"{name}"',))


def _join(pieces: Iterable[str | ColumnElement[str]]) -> ColumnElement[str]:
    """The pieces concatenated, neighbouring constants as one."""
    parts: list[ColumnElement[str]] = []
    constant = ""
    for piece in pieces:
        if isinstance(piece, str):
            constant += piece
            continue
        if constant:
            parts.append(_constant(constant))
            constant = ""
        parts.append(piece)
    if constant:
        parts.append(_constant(constant))
    text = parts[0]
    for part in parts[1:]:
        text = text + part
    return text


_STRINGS = {Render.INSTANT: _instant, Render.DATE: _date, Render.ENUM: lambda column: column}


def _value(column: Any, spec: Column) -> Present | ColumnElement[Any]:
    """A column's JSON; a string of a non-null field in pieces its object joins with its
    key (`Present`)."""
    written = _STRINGS.get(spec.render)
    if spec.present and written is not None:
        return Present(('"', written(column), '"'))
    return _render(column, spec.render)


def _object(parts: list[Any], where: str) -> ColumnElement[Any]:
    """A JSON object of (response key, JSON text) pairs, given flat: key, value, ...; a
    value that is SQL null is JSON's null."""
    pieces: list[str | ColumnElement[str]] = []
    for i in range(0, len(parts), 2):
        key, value = parts[i], parts[i + 1]
        if not _NAME.fullmatch(key):  # a GraphQL name: nothing in it to escape
            raise Unsupported(f"{where}: the key {key!r}")
        pieces.append(("{" if i == 0 else ",") + f'"{key}":')
        if isinstance(value, Present):
            pieces.extend(value.pieces)
        else:
            pieces.append(func.coalesce(value, NULL))
    pieces.append("}" if pieces else "{}")
    return _join(pieces)


def _listed(value: ColumnElement[Any], kept: ColumnElement[bool] | None) -> ColumnElement[Any]:
    """A JSON array of the rows' values in the rows' order (see `_list`), of the rows
    `kept` lets through; a value that is SQL null is JSON's null."""
    aggregated: ColumnElement[Any] = func.string_agg(func.coalesce(value, NULL), _constant(","))
    if kept is not None:
        aggregated = func.string_agg(func.coalesce(value, NULL), _constant(",")).filter(kept)
    return _constant("[") + func.coalesce(aggregated, _constant("")) + _constant("]")


def _named(type_: Any) -> GraphQLNamedType:
    while isinstance(type_, GraphQLNonNull | GraphQLList):
        type_ = type_.of_type
    return type_  # type: ignore[no-any-return]


# --- the compiler ---------------------------------------------------------------------


class Compiler:
    def __init__(
        self,
        schema: GraphQLSchema,
        document: DocumentNode,
        operation: OperationDefinitionNode,
        variables: VariableValues,
        viewer: Viewer,
    ) -> None:
        self.schema = schema
        self.fragments = {
            d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
        }
        self.operation = operation
        self.variables = variables
        self.viewer = placeholder(viewer)
        self.binders: list[Binder] = []
        self.clocks: list[Callable[[Viewer], dict[str, Any]]] = []
        self.counter = 0

    # Selections, as graphql-core's executor collects them.

    def _included(self, node: Any) -> bool:
        skip = get_directive_values(GraphQLSkipDirective, node, self.variables)
        if skip is not None and skip.get("if") is True:
            return False
        include = get_directive_values(GraphQLIncludeDirective, node, self.variables)
        return not (include is not None and include.get("if") is False)

    def _applies(self, condition: Any, runtime: GraphQLObjectType) -> bool:
        if condition is None:
            return True
        conditional = self.schema.get_type(condition.name.value)
        if conditional is runtime:
            return True
        if isinstance(conditional, GraphQLInterfaceType | GraphQLUnionType):
            return self.schema.is_sub_type(conditional, runtime)
        return False

    def collect(
        self, runtime: GraphQLObjectType, selection_sets: list[SelectionSetNode]
    ) -> dict[str, list[FieldNode]]:
        fields: dict[str, list[FieldNode]] = {}
        visited: set[str] = set()

        def walk(selection_set: SelectionSetNode) -> None:
            for selection in selection_set.selections:
                if not self._included(selection):
                    continue
                if isinstance(selection, FieldNode):
                    key = selection.alias.value if selection.alias else selection.name.value
                    fields.setdefault(key, []).append(selection)
                elif isinstance(selection, InlineFragmentNode):
                    if self._applies(selection.type_condition, runtime):
                        walk(selection.selection_set)
                elif isinstance(selection, FragmentSpreadNode):
                    name = selection.name.value
                    fragment = self.fragments.get(name)
                    if name in visited or fragment is None:
                        continue
                    visited.add(name)
                    if self._applies(fragment.type_condition, runtime):
                        walk(fragment.selection_set)

        for selection_set in selection_sets:
            walk(selection_set)
        return fields

    @staticmethod
    def _subselections(nodes: list[FieldNode]) -> list[SelectionSetNode]:
        return [n.selection_set for n in nodes if n.selection_set is not None]

    def _arguments(
        self,
        where: str,
        definition: GraphQLField,
        node: FieldNode,
        known: frozenset[str],
        defaults: tuple[tuple[str, str], ...] = (),
    ) -> dict[str, Any]:
        """The field's arguments for this shape of request; an argument the compiler does
        not know (one added to the schema later, say) makes the field unsupported, and so
        does one it knows only at its default (`defaults`) given another value. Arguments
        that do not coerce (a nullable variable given null for a non-null argument with a
        default) are the resolvers' to refuse: for every request of this shape."""
        try:
            args = get_argument_values(definition, node, self.variables)
        except GraphQLError as exc:
            raise Unsupported(f"{where}: {exc.message}") from exc
        only = dict(defaults)
        for name, value in args.items():
            if name in only and str(value) == only[name]:
                continue
            if name not in known and value is not None:
                raise Unsupported(f"{where}({name})")
        return args

    def _select(self, source: registry.Source) -> Select:
        """The source's select for the placeholder viewer; the values it holds from the
        viewer's clock (`registry.Source.clock`) are bound again on every request."""
        if source.clock is not None and source.clock not in self.clocks:
            self.clocks.append(source.clock)
        return source.build(self.viewer)

    def _prefix(self) -> str:
        self.counter += 1
        return f"c{self.counter}_"

    # The operation.

    def compile(self) -> Plan:
        query = self.schema.query_type
        assert query is not None
        columns: list[ColumnElement[Any]] = []
        keys: list[str] = []
        access: list[Access] = []
        fields = self.collect(query, [self.operation.selection_set])
        for key, nodes in fields.items():
            name = nodes[0].name.value
            if name == "__typename":
                value: ColumnElement[Any] = _join(_name_string(query.name).pieces)
                columns.append(cast(value, Text).label(f"f{len(columns)}"))
                keys.append(key)
                continue
            definition = query.fields.get(name)
            spec = registry.FIELDS["Query"].get(name)
            if definition is None or spec is None:
                raise Unsupported(f"Query.{name}")
            rule = declared_access(definition.extensions.get("strawberry-definition"))
            if rule is None:
                raise Unsupported(f"Query.{name}: no access rule")
            access.append(rule)
            value = self.root_field(name, definition, spec, nodes)
            columns.append(cast(value, Text).label(f"f{len(columns)}"))
            keys.append(key)
        return Plan(
            statement=select(*columns),
            keys=keys,
            access=access,
            binders=self.binders,
            clocks=self.clocks,
        )

    def root_field(
        self, name: str, definition: GraphQLField, spec: Any, nodes: list[FieldNode]
    ) -> ColumnElement[Any]:
        where = f"Query.{name}"
        if isinstance(spec, Page):
            return self.connection(where, definition, spec, nodes, parent=None)
        if isinstance(spec, AnyNode):
            return self.any_node(where, definition, spec, nodes)
        if isinstance(spec, RootRows):
            return self.root_rows(where, definition, spec, nodes)
        assert isinstance(spec, ToOne)
        source = registry.SOURCES[spec.source]
        row = self._select(source).subquery()
        if spec.key == VIEWER:
            self._arguments(where, definition, nodes[0], frozenset())
            if self.viewer.member_id is None:
                return null()  # anonymous callers have no `me`
            match: ColumnElement[bool] = row.c.id == policy.me(self.viewer)
        else:
            # `cluster(id:)`: the global id decoded per request; -1 is never an id.
            argument = spec.key
            self._arguments(where, definition, nodes[0], frozenset({argument}))
            name_param = f"{self._prefix()}id"
            type_name = _named(definition.type).name
            node, field_definition = nodes[0], definition

            def bind_id(
                variables: VariableValues, limits: Limits, viewer: Viewer
            ) -> dict[str, Any]:
                args = get_argument_values(field_definition, node, variables)
                found = decode_id(args.get(argument), type_name)
                return {name_param: -1 if found is None else found}

            self.binders.append(bind_id)
            match = row.c.id == bindparam(name_param, type_=Integer)
        value = self.output(where, definition.type, row, source, nodes)
        return select(value).select_from(row).where(match).scalar_subquery()

    def root_rows(
        self, where: str, definition: GraphQLField, spec: RootRows, nodes: list[FieldNode]
    ) -> ColumnElement[Any]:
        """Every row of the source the caller may see in the declared order, as a list, or
        (`one`) the first of them or null, as `schema.types.root_list`'s resolver: narrowed
        by the declared filters as the request's arguments shape them (`careTerms`)."""
        node = nodes[0]
        if any(n.arguments != node.arguments for n in nodes[1:]):
            raise Unsupported(f"{where}: merged with other arguments")
        known = frozenset(a.graphql_name for a in spec.arguments)
        args = self._arguments(where, definition, node, known)
        source = registry.SOURCES[spec.source]
        if spec.parameters is not None:
            # A select taking the request's values as parameters, bound per request.
            prefix = self._prefix()
            stmt = spec.parameters.rows(self.viewer, prefix)
            self.binders.append(_parameters_binder(where, definition, node, spec, prefix))
        else:
            stmt = self._select(source)
        if spec.filters is not None:
            prefix = self._prefix()
            stmt = spec.filters.apply(stmt, args, prefix)
            self.binders.append(_filters_binder(where, definition, node, spec, prefix, args))
        stmt = stmt.order_by(*spec.order)
        if spec.one:
            row = stmt.limit(1).subquery()
            value = self.output(where, definition.type, row, source, nodes)
            return select(value).select_from(row).scalar_subquery()
        # Aggregated in the subquery's order, as a page's rows are (`_list`).
        rows = stmt.subquery()
        item_type = _strip_non_null(_strip_non_null(definition.type).of_type)
        value = self.output(where, item_type, rows, source, nodes)
        kept: ColumnElement[bool] | None = None
        if source.typename is not None and isinstance(item_type, GraphQLObjectType):
            kept = source.typename(rows) == _constant(item_type.name)
        return select(_listed(value, kept)).select_from(rows).scalar_subquery()

    def any_node(
        self, where: str, definition: GraphQLField, spec: AnyNode, nodes: list[FieldNode]
    ) -> ColumnElement[Any]:
        """`node(id:)` as `schema.types.resolve_global_id`: the id's type picks the
        branch per request. A node type whose selection does not compile (or that the
        registry does not read) makes a request for one of its ids fall back."""
        self._arguments(where, definition, nodes[0], frozenset({"id"}))
        prefix = self._prefix()
        type_param, id_param = f"{prefix}node_type", f"{prefix}node_id"
        branches: list[tuple[ColumnElement[bool], ColumnElement[Any]]] = []
        compiled: set[str] = set()
        for type_name, source_name in spec.sources.items():
            node_type = self.schema.get_type(type_name)
            if type_name not in NODE_TYPES or not isinstance(node_type, GraphQLObjectType):
                continue
            binders = len(self.binders)
            source = registry.SOURCES[source_name]
            row = self._select(source).subquery()
            try:
                value = self.output(f"{where}: {type_name}", node_type, row, source, nodes)
            except Unsupported:
                del self.binders[binders:]  # that branch's pages are not in the statement
                continue
            record = row.c.id == bindparam(id_param, type_=BigInteger)
            match = bindparam(type_param, type_=Text) == _constant(type_name)
            branches.append((match, select(value).select_from(row).where(record).scalar_subquery()))
            compiled.add(type_name)
        if not branches:
            raise Unsupported(where)
        node, field_definition = nodes[0], definition

        def bind_node(variables: VariableValues, limits: Limits, viewer: Viewer) -> dict[str, Any]:
            value = get_argument_values(field_definition, node, variables).get("id")
            found = parse_global_id(value) if isinstance(value, str) else None
            known = found is not None and found.type_name in NODE_TYPES
            if known and found is not None and found.type_name not in compiled:
                raise Fallback(f"node of type {found.type_name}")
            pk = parse_pk(found.node_id) if known and found is not None else None
            if found is None or pk is None:
                return {type_param: "", id_param: -1}  # null, as for an unknown record
            return {type_param: found.type_name, id_param: pk}

        self.binders.append(bind_node)
        return case(*branches, else_=null())

    # Objects.

    def output(
        self,
        where: str,
        field_type: Any,
        row: FromClause,
        source: registry.Source,
        nodes: list[FieldNode],
        through: Any = None,
    ) -> ColumnElement[Any]:
        """The JSON of one row as the field's GraphQL type (an object, or an interface
        whose concrete type the source decides per row, unless the relation's foreign key
        `through` decides it for every row)."""
        named = _named(field_type)
        if isinstance(_strip_non_null(field_type), GraphQLList):
            raise Unsupported(f"{where}: a list of lists")
        if source.typename is None:
            if not isinstance(named, GraphQLObjectType):
                raise Unsupported(f"{where}: {named.name}")
            return self.object(named, row, nodes)
        if isinstance(named, GraphQLObjectType):
            candidates = [named] if named.name in source.types else []
        elif isinstance(named, GraphQLInterfaceType):
            candidates = [
                t
                for t in (self.schema.get_type(n) for n in source.types)
                if isinstance(t, GraphQLObjectType) and self.schema.is_sub_type(named, t)
            ]
        else:
            raise Unsupported(f"{where}: {named.name}")
        if not candidates:
            raise Unsupported(f"{where}: {named.name}")
        known = registry.member_type_of(through)
        if known is not None:
            # Every row is of this type: no per-row test (none of another type to null).
            kept = [t for t in candidates if t.name == known]
            return self.object(kept[0], row, nodes) if kept else null()
        typename = source.typename(row)
        # A row of another concrete type is null, as the resolvers' isinstance checks.
        return case(
            *[(typename == _constant(t.name), self.object(t, row, nodes)) for t in candidates],
            else_=null(),
        )

    def object(
        self,
        type_: GraphQLObjectType,
        row: FromClause,
        nodes: list[FieldNode],
        specs: Mapping[str, registry.FieldSpec] | None = None,
    ) -> ColumnElement[Any]:
        if specs is None:
            specs = registry.FIELDS.get(type_.name)
        if specs is None:
            raise Unsupported(type_.name)
        parts: list[Any] = []
        for key, field_nodes in self.collect(type_, self._subselections(nodes)).items():
            name = field_nodes[0].name.value
            parts.append(key)
            if name == "__typename":
                parts.append(_name_string(type_.name))
                continue
            where = f"{type_.name}.{name}"
            spec = specs.get(name)
            definition = type_.fields.get(name)
            if spec is None or definition is None:
                raise Unsupported(where)
            if isinstance(spec, Column):
                self._arguments(where, definition, field_nodes[0], frozenset())
                parts.append(_value(row.c[spec.column], spec))
            elif isinstance(spec, GlobalId):
                # A primary key: never null.
                parts.append(Present(('"', global_id(type_.name, row.c[spec.column]), '"')))
            elif isinstance(spec, ToOne):
                self._arguments(where, definition, field_nodes[0], frozenset())
                parts.append(self.to_one(where, definition, spec, row, field_nodes))
            elif isinstance(spec, ToMany):
                self._arguments(where, definition, field_nodes[0], frozenset())
                parts.append(self.to_many(where, definition, spec, row, field_nodes))
            elif isinstance(spec, First):
                self._arguments(where, definition, field_nodes[0], frozenset())
                parts.append(self.first(where, definition, spec, row, field_nodes))
            elif isinstance(spec, Page):
                parts.append(self.connection(where, definition, spec, field_nodes, parent=row))
            elif isinstance(spec, Ranged):
                parts.append(self.ranged(where, definition, spec, row, field_nodes))
            elif isinstance(spec, InRow):
                # The record is the row's own columns (the source's select with more).
                self._arguments(where, definition, field_nodes[0], frozenset())
                source = registry.SOURCES[spec.source]
                parts.append(
                    self.output(where, definition.type, row, source, field_nodes, spec.through)
                )
            elif isinstance(spec, Embedded):
                self._arguments(where, definition, field_nodes[0], frozenset())
                embedded = _named(definition.type)
                if not isinstance(embedded, GraphQLObjectType):
                    raise Unsupported(where)
                value = self.object(embedded, row, field_nodes, spec.fields)
                parts.append(case((row.c[spec.present].is_(None), null()), else_=value))
            else:
                raise Unsupported(where)
        return _object(parts, type_.name)

    def to_one(
        self,
        where: str,
        definition: GraphQLField,
        spec: ToOne,
        parent: FromClause,
        nodes: list[FieldNode],
    ) -> ColumnElement[Any]:
        source = registry.SOURCES[spec.source]
        row = self._select(source).subquery()
        value = self.output(where, definition.type, row, source, nodes, spec.through)
        return (
            select(value)
            .select_from(row)
            .where(row.c[spec.target] == parent.c[spec.key])
            .scalar_subquery()
        )

    def first(
        self,
        where: str,
        definition: GraphQLField,
        spec: First,
        parent: FromClause,
        nodes: list[FieldNode],
    ) -> ColumnElement[Any]:
        """The parent's first row in the resolver's order, or null: the linked source
        select sorted and limited to one row."""
        source = registry.SOURCES[spec.source]
        order = [key.desc() if spec.descending else key for key in spec.order]
        stmt = spec.link(self._select(source), parent).correlate(parent)
        row = stmt.order_by(*order).limit(1).subquery()
        value = self.output(where, definition.type, row, source, nodes)
        return select(value).select_from(row).scalar_subquery()

    def to_many(
        self,
        where: str,
        definition: GraphQLField,
        spec: ToMany,
        parent: FromClause,
        nodes: list[FieldNode],
    ) -> ColumnElement[Any]:
        source = registry.SOURCES[spec.source]
        stmt = spec.link(self._select(source), parent).correlate(parent)
        # Aggregated in the subquery's order, as a page's rows are (`_list`).
        rows = stmt.order_by(
            *[key.desc() if spec.descending else key for key in spec.order]
        ).subquery()
        item_type = _strip_non_null(_strip_non_null(definition.type).of_type)
        value = self.output(where, item_type, rows, source, nodes, spec.through)
        kept: ColumnElement[bool] | None = None
        typename = source.typename if spec.through is None else None
        if typename is not None and isinstance(item_type, GraphQLObjectType):
            # The resolvers drop rows of another concrete type (isinstance filters).
            kept = typename(rows) == _constant(item_type.name)
        return select(_listed(value, kept)).select_from(rows).scalar_subquery()

    def ranged(
        self,
        where: str,
        definition: GraphQLField,
        spec: Ranged,
        parent: FromClause,
        nodes: list[FieldNode],
    ) -> ColumnElement[Any]:
        """The parent's rows of `spec.rows` over the request's range, in order: null when
        there is none (the caller may not read them), rows with a null `order` left out.
        The range is bound per request; one the resolver refuses falls back."""
        node = nodes[0]
        if any(n.arguments != node.arguments for n in nodes[1:]):
            raise Unsupported(f"{where}: merged with other arguments")
        self._arguments(where, definition, node, spec.arguments)
        prefix = self._prefix()
        stmt = spec.rows(self.viewer, prefix)
        stmt = stmt.where(stmt.selected_columns.pg_parent == parent.c.id).correlate(parent)
        # Aggregated in the subquery's order, as a page's rows are (`_list`).
        rows = stmt.order_by(stmt.selected_columns[spec.order]).subquery()
        item_type = _strip_non_null(_strip_non_null(definition.type).of_type)
        if not isinstance(item_type, GraphQLObjectType):
            raise Unsupported(f"{where}: {_named(item_type).name}")
        value = self.object(item_type, rows, nodes)
        order = rows.c[spec.order]
        found = case((func.count() == 0, null()), else_=_listed(value, order.is_not(None)))
        field_definition = definition

        def bind(variables: VariableValues, limits: Limits, viewer: Viewer) -> dict[str, Any]:
            args = get_argument_values(field_definition, node, variables)
            try:
                values = spec.values(args)
            except GraphQLError as exc:
                raise Fallback(where) from exc
            return {f"{prefix}{name}": value for name, value in values.items()}

        self.binders.append(bind)
        return select(found).select_from(rows).scalar_subquery()

    # Connections.

    def connection(
        self,
        where: str,
        definition: GraphQLField,
        spec: Page,
        nodes: list[FieldNode],
        parent: FromClause | None,
    ) -> ColumnElement[Any]:
        """One page of a Relay connection, as `care.paging.page` cuts it and
        `schema.connection.build_connection` writes it, for one parent row."""
        if len(nodes) > 1 and any(n.arguments != nodes[0].arguments for n in nodes[1:]):
            raise Unsupported(f"{where}: merged with other arguments")
        node = nodes[0]
        args = self._arguments(where, definition, node, spec.arguments)
        prefix = self._prefix()
        source = registry.SOURCES[spec.source]
        stmt = self._select(source)
        if spec.link is not None:
            assert parent is not None
            stmt = spec.link(stmt, parent).correlate(parent)
        if spec.mine is not None:
            stmt = spec.mine(stmt, self.viewer)
        if spec.filters is not None:
            stmt = spec.filters(stmt, args, prefix)
        try:
            order, sort, descending = spec.order(args)
        except KeyError as exc:
            raise Unsupported(f"{where}(orderBy: {args.get('orderBy')})") from exc
        keys = list(sort)
        shape = _PageShape(
            order=order,
            arity=len(keys),
            from_end=args.get("last") is not None,
            after=args.get("after") is not None,
            before=args.get("before") is not None,
        )
        first = bindparam(f"{prefix}first", type_=Integer)
        paged = stmt.add_columns(*[key.label(f"pg_k{i}") for i, key in enumerate(keys)])
        # As `care.paging.page`: `after` keeps rows later in the list's order, `before`
        # earlier ones; a page from the end walks the order backwards.
        for name, given, later in (
            ("after", shape.after, not descending),
            ("before", shape.before, descending),
        ):
            if given:
                cut = [bindparam(f"{prefix}{name}_{i}", type_=k.type) for i, k in enumerate(keys)]
                paged = paged.where(
                    tuple_(*keys) > tuple_(*cut) if later else tuple_(*keys) < tuple_(*cut)
                )
        walk_down = descending != shape.from_end
        limit = bindparam(f"{prefix}limit", type_=Integer)
        limited = (
            paged.order_by(*[k.desc() if walk_down else k for k in keys]).limit(limit).subquery()
        )
        # Ranked after the limit: a window function under the LIMIT would make PostgreSQL
        # sort every matching row instead of keeping the first ones (or stopping early).
        ranks = [limited.c[f"pg_k{i}"] for i in range(len(keys))]
        walked = [r.desc() for r in ranks] if walk_down else ranks
        rank = func.row_number().over(order_by=walked).label("pg_rank")
        # The page is returned in the list's order: a page from the end, ranked from its
        # end, is reversed. Its rows come to the aggregates in that order (`_list`),
        # sorted by the keys the ranks follow, so that PostgreSQL sorts nothing again
        # (the ranks' order it would sort once more).
        unwalked = [r if walk_down else r.desc() for r in ranks]
        page = select(limited, rank).order_by(*(unwalked if shape.from_end else walked)).subquery()
        self.binders.append(_page_binder(definition, node, spec, prefix, args, shape))
        listed = page.c.pg_rank.desc() if shape.from_end else page.c.pg_rank
        backwards = page.c.pg_rank if shape.from_end else page.c.pg_rank.desc()
        further = func.count() > first

        connection_type = _named(definition.type)
        assert isinstance(connection_type, GraphQLObjectType)
        shown = page.c.pg_rank <= first
        page_cursor = cursor([page.c[f"pg_k{i}"] for i in range(len(keys))], order)
        parts: list[Any] = []
        # Whether anything aggregates the page's rows: without, the select gives a row per
        # row of the page (an error past one, null for none) where the resolvers give one.
        aggregated = False
        for key, field_nodes in self.collect(connection_type, self._subselections(nodes)).items():
            name = field_nodes[0].name.value
            parts.append(key)
            field_def = connection_type.fields.get(name)
            aggregated = aggregated or name in ("totalCount", "nodes", "edges")
            if name == "__typename":
                parts.append(_name_string(connection_type.name))
            elif name == "totalCount":
                # Counted only when asked; an empty page (past the end) says 0, as today.
                total = (
                    stmt.with_only_columns(func.count(), maintain_column_froms=True)
                    .order_by(None)
                    .scalar_subquery()
                )
                if parent is not None:
                    total = total.correlate(parent)
                counted = case((func.count() == 0, 0), else_=total)  # a count: never null
                parts.append(Present((cast(counted, Text),)))
            elif name == "nodes" and field_def is not None:
                node_type = _strip_non_null(field_def.type).of_type
                value = self.output(
                    f"{where}.nodes", node_type, page, source, field_nodes, spec.through
                )
                parts.append(Present((_list(value, shown),)))
            elif name == "edges" and field_def is not None:
                edge_type = _named(field_def.type)
                assert isinstance(edge_type, GraphQLObjectType)
                edge: list[Any] = []
                for edge_key, edge_nodes in self.collect(
                    edge_type, self._subselections(field_nodes)
                ).items():
                    edge_name = edge_nodes[0].name.value
                    edge.append(edge_key)
                    if edge_name == "__typename":
                        edge.append(_name_string(edge_type.name))
                    elif edge_name == "cursor":
                        edge.append(_quoted(page_cursor))
                    elif edge_name == "node":
                        node_type = edge_type.fields["node"].type
                        edge.append(
                            self.output(
                                f"{where}.node", node_type, page, source, edge_nodes, spec.through
                            )
                        )
                    else:
                        raise Unsupported(f"{edge_type.name}.{edge_name}")
                parts.append(Present((_list(_object(edge, edge_type.name), shown),)))
            elif name == "pageInfo" and field_def is not None:
                info_type = _named(field_def.type)
                assert isinstance(info_type, GraphQLObjectType)
                info: list[Any] = []
                for info_key, info_nodes in self.collect(
                    info_type, self._subselections(field_nodes)
                ).items():
                    info_name = info_nodes[0].name.value
                    info.append(info_key)
                    if info_name == "__typename":
                        info.append(_name_string(info_type.name))
                    elif info_name == "hasNextPage":
                        # Forwards: whether the extra row came; backwards: whether
                        # `before` was given (`schema.connection.build_connection`).
                        aggregated = aggregated or not shape.from_end
                        said = _given(shape.before) if shape.from_end else _boolean(further)
                        info.append(Present((said,)))
                    elif info_name == "hasPreviousPage":
                        aggregated = aggregated or shape.from_end
                        said = _boolean(further) if shape.from_end else _given(shape.after)
                        info.append(Present((said,)))
                    elif info_name in ("startCursor", "endCursor"):
                        aggregated = True
                        end = listed if info_name == "startCursor" else backwards
                        ordered = aggregate_order_by(page_cursor, end)
                        first_cursor = pg_array_agg(ordered, type_=ARRAY(Text)).filter(shown)[1]
                        info.append(_quoted(first_cursor))
                    else:
                        raise Unsupported(f"{info_type.name}.{info_name}")
                parts.append(_object(info, info_type.name))
            else:
                raise Unsupported(f"{connection_type.name}.{name}")
        if not aggregated:  # only `__typename` or `pageInfo { hasPreviousPage }`: rare
            raise Unsupported(f"{where}: no rows asked for")
        return select(_object(parts, connection_type.name)).select_from(page).scalar_subquery()


def _filters_binder(
    where: str,
    definition: GraphQLField,
    node: FieldNode,
    spec: RootRows,
    prefix: str,
    compiled: dict[str, Any],
) -> Binder:
    """A root list's filter parameters for one request (`Filters.values`). The filters'
    SQL was built for the compiled arguments' shape (which are null, each boolean's and
    enum's value): arguments of another shape ask for another statement, and fall back.
    The plan cache's key keeps such requests apart already; this keeps the answer right
    should a plan ever be reused more widely."""
    filters = spec.filters
    assert filters is not None
    shape = value_shape(compiled)

    def bind(variables: VariableValues, limits: Limits, viewer: Viewer) -> dict[str, Any]:
        args = get_argument_values(definition, node, variables)
        if value_shape(args) != shape:
            raise Fallback(f"{where}: another shape of arguments")
        return {f"{prefix}{name}": value for name, value in filters.values(args).items()}

    return bind


def _parameters_binder(
    where: str, definition: GraphQLField, node: FieldNode, spec: RootRows, prefix: str
) -> Binder:
    """The values a root list's select takes (`schema.rows.Parameters`), worked out per
    request from its arguments, limits and viewer (the clock: never built into the cached
    statement) by the field's own checks: values they refuse (a bad period, too many ids)
    are the resolver's to answer, with its error."""
    parameters = spec.parameters
    assert parameters is not None

    def bind(variables: VariableValues, limits: Limits, viewer: Viewer) -> dict[str, Any]:
        args = get_argument_values(definition, node, variables)
        try:
            values = parameters.values(args, viewer, limits)
        except (GraphQLError, ValueError, ArithmeticError) as exc:
            raise Fallback(f"{where}: {exc}") from exc
        return {f"{prefix}{name}": value for name, value in values.items()}

    return bind


def _strip_non_null(type_: Any) -> Any:
    return type_.of_type if isinstance(type_, GraphQLNonNull) else type_


def _list(value: ColumnElement[Any], shown: ColumnElement[bool]) -> ColumnElement[Any]:
    """The page's rows in order (without the extra row that tells whether more follow).

    The rows come from a subquery sorted in the list's order, and PostgreSQL aggregates
    a plain (not parallel) scan of it in that order: an ORDER BY in the aggregate would
    sort the rows again with each one's JSON, which cost a tenth of the cluster page's
    instructions (callgrind). The differential tests compare every order both ways."""
    return _listed(value, shown)


def _filter_values(spec: Page, args: dict[str, Any]) -> dict[str, Any]:
    """The filters' parameters for these arguments (ids decoded, a district normalised:
    `schema.filters`), worked out once per request."""
    return spec.values(args) if spec.values is not None else {}


def _in_use(values: dict[str, Any]) -> frozenset[str]:
    """The filters the values turn on: the statement's shape."""
    return frozenset(name for name, value in values.items() if value is not None)


@dataclass(frozen=True)
class _PageShape:
    """What of a page's request the statement is built for: its order (the name its
    cursors carry; None for the default), its keys' number, and which of `last`, `after`
    and `before` are given (their values are parameters)."""

    order: str | None
    arity: int
    from_end: bool
    after: bool
    before: bool


def _given(flag: bool) -> ColumnElement[str]:
    return TRUE if flag else FALSE


def _first_given(node: FieldNode, variables: VariableValues) -> bool:
    """Whether the query itself gives `first` a value (`schema.connection._given`: the
    schema's default for `first` does not count against `last`)."""
    for argument in node.arguments or ():
        if argument.name.value != "first":
            continue
        if isinstance(argument.value, VariableNode):
            return variables.coerced.get(argument.value.name.value) is not None
        return not isinstance(argument.value, NullValueNode)
    return False


def _page_binder(
    definition: GraphQLField,
    node: FieldNode,
    spec: Page,
    prefix: str,
    compiled: dict[str, Any],
    shape: _PageShape,
) -> Binder:
    """A connection's page size, cursors and filters for one request; `Fallback` where
    `schema.connection.page_request` would refuse them, so the refusal is today's, and
    where the request's values ask for another statement than this one: another order
    (given by a variable), or other filters (a value that turns a filter off, such as
    `nameContains: ""`, is not a null variable)."""
    in_use = _in_use(_filter_values(spec, compiled))

    def bind(variables: VariableValues, limits: Limits, viewer: Viewer) -> dict[str, Any]:
        args = get_argument_values(definition, node, variables)
        try:
            order, sort, _ = spec.order(args)
        except KeyError as exc:
            raise Fallback("orderBy") from exc
        last, after, before = args.get("last"), args.get("after"), args.get("before")
        if (
            order != shape.order
            or (last is not None) != shape.from_end
            or (after is not None) != shape.after
            or (before is not None) != shape.before
        ):
            raise Fallback("another page shape")
        if shape.from_end and _first_given(node, variables):
            raise Fallback("first and last")
        first = args.get("first")
        size = last if shape.from_end else DEFAULT_PAGE_SIZE if first is None else first
        if not isinstance(size, int) or not 1 <= size <= limits.max_page_size:
            raise Fallback("page size")
        values: dict[str, Any] = {f"{prefix}first": size, f"{prefix}limit": size + 1}
        try:
            # An empty cursor is no cursor to the resolvers: theirs to answer.
            cursors = {
                name: decode_cursor(given, shape.arity, order)
                for name, given in (("after", after), ("before", before))
                if given is not None
            }
            request = PageRequest(
                first=size, after=cursors.get("after"), before=cursors.get("before")
            )
            page_params(request, sort)
        except (InvalidCursor, GraphQLError) as exc:
            raise Fallback("cursor") from exc
        for name, keys in cursors.items():
            values.update({f"{prefix}{name}_{i}": key for i, key in enumerate(keys)})
        given = _filter_values(spec, args)
        if _in_use(given) != in_use:
            raise Fallback("filters")
        for name, value in given.items():
            if value is not None:
                values[f"{prefix}{name}"] = list(value) if name == "statuses" else value
        return values

    return bind
