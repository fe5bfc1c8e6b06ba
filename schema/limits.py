"""Query cost limiting.

Every operation is given a *cost* from its parsed document before any resolver runs.
An operation whose cost is above the limit is rejected as a whole; nothing is executed.

Cost rules
----------

The cost of an operation is the sum of the cost of every field it selects:

* A field whose type is an object, interface or union (it has a sub-selection) costs **2**.
* A field whose type is a scalar or an enum (a leaf) costs **0**, and so does a list of
  scalars (e.g. ``tags: [String!]!``). A leaf that takes arguments (it computes its
  answer, e.g. ``peerMarketFigures``) costs 2, like an object.
* Introspection fields (names starting with ``__``: ``__typename``, ``__schema``,
  ``__type``) cost **0**, and so does everything selected inside them.
* Each field's cost is multiplied by the product of the expected sizes of all the lists
  that enclose it. A field multiplies the fields *inside* it (never itself) by:

  1. **its page size**, when the field's schema definition has a ``first`` argument
     (a Relay connection). The page size is the value of ``first`` (or, paging
     backwards, of ``last``) in the query: a
     literal, or the value of the variable passed for it (or that variable's default in
     the operation; a whole float such as ``100.0`` counts as the Int it coerces to).
     When both are absent or ``null``, ``first``'s default in the
     schema is used if it is an integer, otherwise ``default_page_size`` (20 unless
     configured). Negative values count as 0.
  2. otherwise **list_size** (10 unless configured), when the field is list-typed
     (``[T]``, ``[T!]!``; nested lists ``[[T]]`` count once), e.g. ``skills: [Skill!]!``.
     **Exception:** a list-typed field named ``edges`` or ``nodes`` directly inside a
     field that applied a page size (rule 1) does not multiply again: the page size
     already counts those items. Only the *nearest enclosing field* matters (fragments
     in between are transparent), so ``edges`` deeper down, or an ``edges`` field
     under a field without ``first``, multiplies by ``list_size`` as usual.
  3. otherwise **1**.

  **Bulk pages**: a field named in ``BULK_PAGE_FIELDS`` (the partner-facing
  ``peerAvailabilityFeed``, whose page of up to 5,000 flat items is read by one set-based
  statement, with no loader or query per item) counts its page size in blocks
  (``ceil(first / block)``, block 100), and its ``changes`` and ``pas`` lists (at most one
  PA per change), like ``edges``, do not multiply again. A feed page of 5,000 changes
  with every field costs 302.

  **Page summaries**: a field named in ``PAGE_SUMMARY_FIELDS`` (``leftOut`` of
  ``coverCandidates``: the few sources an answer went without) selected directly inside a
  paged field is counted once, not once per item; through a fragment it is counted per
  item (an upper bound). ``coverCandidates``' ``candidates`` list is its page, like
  ``nodes``.

  Everything inside a connection (``edges``, ``node``, ``nodes``, ``pageInfo``,
  ``totalCount``, ...) is an ordinary field multiplied by the page size, so
  ``pageInfo`` and ``totalCount`` are counted once per requested item.

* Fragments are followed: a named fragment is counted in full at *every* place it is
  spread, and inline fragments are counted where they appear, so fragments cannot hide
  cost. All type-conditioned fragments of an interface or union field are counted, even
  though only one can match a given object (the cost is an upper bound). A fragment
  spread inside itself (a cycle, which validation rejects anyway) is not followed again.
* A field or fragment with ``@skip(if: true)`` or ``@include(if: false)`` (a literal, or
  a variable whose value is known) costs nothing.
* Only the operation being executed counts (the requested ``operationName``, or the
  single operation of the document); other operations in the same document are free.

Worked example::

    query { clusters(first: 10) { edges { node { name } } } }

``clusters`` costs 2 and multiplies its contents by 10; ``edges`` (a list directly under
a paged field, so no further multiplication) costs 2 x 10; ``node`` costs 2 x 10; and
``name`` costs 0. Total: 2 + 20 + 20 = **42**. The same query without ``first`` costs
2 + 20 x (2 + 2) = 82 with the default page size of 20. Adding ``id``, ``__typename``
or any other scalar changes nothing.

Nested connections multiply: ``clusters(first: 10) { nodes { members(first: 5) { nodes
{ name } } } }`` costs 2 + 10 x (2 + 2 + 5 x 2) = 142.

Why leaves are free
-------------------

What costs the server work is reading rows: a root field's query, a connection's page, a
loader call per object. A scalar is a column of a row already read (or a value computed
from it), so charging for it only punished what clients must ask: ``id`` and
``__typename`` on every object for a normalised cache made the README's cluster page
(4,386 before) too costly. The number of fields in a document is bounded by its tokens
(``MAX_TOKENS``) and aliases (``MAX_ALIASES``), not by the cost. The limit stays 5,000:
every screen in the README and docs/ costs at most half of it with ``id`` and
``__typename`` added (``tests/schema/test_screen_costs.py`` prints the table), while two
nested pages of 100 (40,602) or one page of 100 aliased 50 times (10,100) are refused.

Responses
---------

The cost is reported on every executed (or rejected) operation in the response
``extensions``::

    {"data": {...}, "extensions": {"cost": {"requested": 42, "limit": 5000}}}

An operation over the limit is not executed. The response (HTTP 200 for a normal
``POST``) has ``data: null`` and a single error::

    {
      "data": null,
      "errors": [{
        "message": "Query cost 7200 exceeds the limit of 5000. Ask for smaller pages
                    (first) or fewer fields.",
        "extensions": {"code": "QUERY_TOO_COSTLY", "cost": 7200, "limit": 5000}
      }],
      "extensions": {"cost": {"requested": 7200, "limit": 5000}}
    }

Documents that fail to parse or validate are not costed (they are rejected with their
own errors, and carry no ``cost`` extension).

Search arguments
----------------

A filter that makes the database scan text costs more than the rows it returns: a field
given a search argument (see ``SEARCH_ARGUMENT_COSTS``: ``nameContains`` adds **50**) costs
that much more, multiplied like the field itself. ``members(nameContains: "ab")
{ totalCount }`` costs 2 + 50 = 52 instead of 2. The argument's length is
bounded too (see "Input bounds" below), so one search costs at most a bounded scan.

Input bounds
------------

Before any resolver runs (and after validation), ``InputBounds`` checks every string and
list in the document's arguments (every operation and fragment, directives included),
whether written in the document or passed as variables (and variables' defaults), at
every depth of input objects:

* a string has at most ``DEFAULT_MAX_LENGTH`` (10,000) characters, a list at most
  ``DEFAULT_MAX_ITEMS`` (100) items, unless ``INPUT_RULES`` names the argument or input
  field (each string item of a list is held to its list's rule);
* no string contains a NUL character (PostgreSQL cannot store one);
* a field's ``startsFrom`` is not after its ``startsBefore``;
* a page size ``first`` or ``last`` is between 1 and the configured maximum (a field named
  in ``PAGE_SIZE_LIMITS`` has its own: the availability feed's 5,000), a field is not
  given both ``first`` and ``last``, and a cursor ``after`` or ``before`` has the shape of
  a cursor (the connection still checks it is one of its own, under the same order): in a
  mutation's payload, a refusal at resolve time would come after the commit.

A violation rejects the whole operation; nothing runs::

    {"data": null, "errors": [{"message": "`input.name` is too long: at most 200
      characters.", "extensions": {"code": "BAD_USER_INPUT", "field": "createCluster",
      "argument": "input.name", "maxLength": 200}}]}
"""

from __future__ import annotations

import datetime as dt
from collections import OrderedDict
from collections.abc import Hashable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from graphql import (
    ArgumentNode,
    BooleanValueNode,
    DocumentNode,
    ExecutionResult,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLArgument,
    GraphQLError,
    GraphQLField,
    GraphQLInputObjectType,
    GraphQLInterfaceType,
    GraphQLNamedType,
    GraphQLObjectType,
    GraphQLSchema,
    InlineFragmentNode,
    IntValueNode,
    ListValueNode,
    NullValueNode,
    ObjectValueNode,
    OperationDefinitionNode,
    OperationType,
    SelectionNode,
    SelectionSetNode,
    StringValueNode,
    TypeInfo,
    TypeInfoVisitor,
    ValueNode,
    VariableNode,
    get_named_type,
    get_operation_ast,
    is_leaf_type,
    is_list_type,
    is_non_null_type,
    visit,
)
from graphql import Visitor as GraphQLVisitor
from strawberry.extensions import SchemaExtension

from federation.feed import FEED_MAX_PAGE
from schema.connection import parse_cursor
from schema.scalars import parse_datetime

LONDON = ZoneInfo("Europe/London")

__all__ = [
    "CONNECTION_LIST_FIELDS",
    "LEAF_FIELD_COST",
    "OBJECT_FIELD_COST",
    "PAGE_SIZE_ARGUMENT",
    "QUERY_TOO_COSTLY",
    "QueryCostLimiter",
    "calculate_query_cost",
    "InputBounds",
    "InputRule",
    "INPUT_RULES",
    "SEARCH_ARGUMENT_COSTS",
]

OBJECT_FIELD_COST = 2
# A scalar comes with the row its object was read in: no query, no loader, no resolver
# work worth counting (module docstring, "Why leaves are free").
LEAF_FIELD_COST = 0
PAGE_SIZE_ARGUMENT = "first"
BACKWARD_PAGE_SIZE_ARGUMENT = "last"
CONNECTION_LIST_FIELDS = frozenset({"edges", "nodes", "changes", "pas", "candidates"})
# Fields directly inside a paged field that describe the page, not its items: counted
# once, not per item (module docstring, "Page summaries").
PAGE_SUMMARY_FIELDS = frozenset({"leftOut"})
# Paged fields whose items are flat records read in one statement per page: their page
# size counts per block of this many items (module docstring, "Bulk pages").
BULK_PAGE_FIELDS: dict[str, int] = {"peerAvailabilityFeed": 100}
# Paged fields allowed larger pages than the configured maximum, and their own maximum.
PAGE_SIZE_LIMITS: dict[str, int] = {"peerAvailabilityFeed": FEED_MAX_PAGE}
QUERY_TOO_COSTLY = "QUERY_TOO_COSTLY"
# Arguments that make the database search text, and what each adds to its field's cost.
SEARCH_ARGUMENT_COSTS: dict[str, int] = {"nameContains": 50}


def as_int(raw: Any) -> int | None:
    """A variable's value as GraphQL's Int coerces it: an int, or a float with no
    fractional part (JSON `100.0` is the Int 100); None for anything else (which
    coercion refuses). Costing `100.0` as absent would count the default page size."""
    if isinstance(raw, bool):
        return None
    if isinstance(raw, int):
        return raw
    if isinstance(raw, float) and raw.is_integer():
        return int(raw)
    return None


def calculate_query_cost(
    schema: GraphQLSchema,
    document: DocumentNode,
    operation_name: str | None = None,
    variables: Mapping[str, Any] | None = None,
    *,
    default_page_size: int = 20,
    list_size: int = 10,
) -> int | None:
    """Return the cost of the operation `operation_name` of `document` (see the module
    docstring for the rules), or None when that operation cannot be found or the schema
    has no root type for it."""
    operation = get_operation_ast(document, operation_name)
    if operation is None:
        return None
    root_type = schema.get_root_type(operation.operation)
    if root_type is None:
        return None
    calculator = _CostCalculator(
        schema,
        document,
        operation,
        variables or {},
        default_page_size=default_page_size,
        list_size=list_size,
    )
    return calculator.selection_set_cost(operation.selection_set, root_type, False, frozenset())


class CostCache:
    """Costs already calculated, by document text, operation name and what the cost reads
    of the variables: a number's or boolean's value (page sizes, `@skip`/`@include`),
    whether any other value is given (search arguments). The HTTP fast lane asks the cost
    of the same query again and again (api/fastlane.py); least recently used out."""

    def __init__(self, size: int = 1024) -> None:
        self.size = size
        self.entries: OrderedDict[Hashable, int | None] = OrderedDict()

    @staticmethod
    def key(query: str, operation_name: str | None, variables: Mapping[str, Any]) -> Hashable:
        def read(value: Any) -> Hashable:
            if value is None or isinstance(value, bool | int | float):
                return (type(value), value)  # 1, 1.0 and True stay apart
            return "given"

        return query, operation_name, tuple(sorted((k, read(v)) for k, v in variables.items()))

    def cost(
        self,
        schema: GraphQLSchema,
        document: DocumentNode,
        query: str,
        operation_name: str | None,
        variables: Mapping[str, Any] | None,
        *,
        default_page_size: int,
    ) -> int | None:
        key = self.key(query, operation_name, variables or {})
        if key in self.entries:
            self.entries.move_to_end(key)
            return self.entries[key]
        found = self.entries[key] = calculate_query_cost(
            schema, document, operation_name, variables, default_page_size=default_page_size
        )
        if len(self.entries) > self.size:
            self.entries.popitem(last=False)
        return found


class _CostCalculator:
    """Walks one operation. Costs are computed for a multiplier of 1 and scaled by the
    caller, so a fragment's cost can be memoised and fragment fan-out stays cheap."""

    def __init__(
        self,
        schema: GraphQLSchema,
        document: DocumentNode,
        operation: OperationDefinitionNode,
        variables: Mapping[str, Any],
        *,
        default_page_size: int,
        list_size: int,
    ) -> None:
        self._schema = schema
        self._variables = variables
        self._default_page_size = default_page_size
        self._list_size = list_size
        self._fragments: dict[str, FragmentDefinitionNode] = {
            definition.name.value: definition
            for definition in document.definitions
            if isinstance(definition, FragmentDefinitionNode)
        }
        self._variable_defaults: dict[str, ValueNode] = {
            definition.variable.name.value: definition.default_value
            for definition in operation.variable_definitions or ()
            if definition.default_value is not None
        }
        # (fragment name, whether the enclosing field applied a page size) -> cost
        self._fragment_costs: dict[tuple[str, bool], int] = {}

    def selection_set_cost(
        self,
        selection_set: SelectionSetNode,
        parent_type: GraphQLNamedType,
        paged_parent: bool,
        active_fragments: frozenset[str],
    ) -> int:
        """Cost of a selection set at multiplier 1. `paged_parent` tells whether the
        nearest enclosing field applied a page size; `active_fragments` are the named
        fragments being expanded on the current path (cycle guard)."""
        total = 0
        for selection in selection_set.selections:
            if not self._is_included(selection):
                continue
            if isinstance(selection, FieldNode):
                total += self._field_cost(selection, parent_type, paged_parent, active_fragments)
            elif isinstance(selection, InlineFragmentNode):
                fragment_type = self._type_condition(selection, parent_type)
                total += self.selection_set_cost(
                    selection.selection_set, fragment_type, paged_parent, active_fragments
                )
            elif isinstance(selection, FragmentSpreadNode):
                total += self._spread_cost(selection, parent_type, paged_parent, active_fragments)
        return total

    def _spread_cost(
        self,
        spread: FragmentSpreadNode,
        parent_type: GraphQLNamedType,
        paged_parent: bool,
        active_fragments: frozenset[str],
    ) -> int:
        name = spread.name.value
        fragment = self._fragments.get(name)
        if fragment is None or name in active_fragments:
            return 0
        key = (name, paged_parent)
        cost = self._fragment_costs.get(key)
        if cost is None:
            cost = self.selection_set_cost(
                fragment.selection_set,
                self._type_condition(fragment, parent_type),
                paged_parent,
                active_fragments | {name},
            )
            self._fragment_costs[key] = cost
        return cost

    def _field_cost(
        self,
        node: FieldNode,
        parent_type: GraphQLNamedType,
        paged_parent: bool,
        active_fragments: frozenset[str],
    ) -> int:
        name = node.name.value
        if name.startswith("__"):
            return 0
        field = self._field_definition(parent_type, name)
        if field is None:
            # Unknown field: validation rejects it; count it like a leaf if it gets here.
            return LEAF_FIELD_COST
        field_type = get_named_type(field.type)
        search = self._search_cost(node)
        if is_leaf_type(field_type):
            # A leaf that takes arguments computes its answer (a query of its own).
            return (OBJECT_FIELD_COST if field.args else LEAF_FIELD_COST) + search
        if node.selection_set is None:
            return OBJECT_FIELD_COST + search

        paged = PAGE_SIZE_ARGUMENT in field.args
        if paged:
            multiplier = self._page_size(node, field)
            block = BULK_PAGE_FIELDS.get(name)
            if block is not None:
                multiplier = -(-multiplier // block)
        elif self._is_list_field(field) and not (paged_parent and name in CONNECTION_LIST_FIELDS):
            multiplier = self._list_size
        else:
            multiplier = 1
        inner = self.selection_set_cost(node.selection_set, field_type, paged, active_fragments)
        once = 0
        if paged:
            once = sum(
                self._field_cost(s, field_type, paged, active_fragments)
                for s in node.selection_set.selections
                if isinstance(s, FieldNode)
                and s.name.value in PAGE_SUMMARY_FIELDS
                and self._is_included(s)
            )
        return OBJECT_FIELD_COST + search + multiplier * (inner - once) + once

    def _search_cost(self, node: FieldNode) -> int:
        """What the field's search arguments add (those given and not null)."""
        cost = 0
        for argument in node.arguments or ():
            extra = SEARCH_ARGUMENT_COSTS.get(argument.name.value)
            if extra is None:
                continue
            value = argument.value
            if isinstance(value, NullValueNode):
                continue
            if isinstance(value, VariableNode):
                name = value.name.value
                given = (
                    self._variables[name] is not None
                    if name in self._variables
                    else name in self._variable_defaults
                    and not isinstance(self._variable_defaults[name], NullValueNode)
                )
                if not given:
                    continue
            cost += extra
        return cost

    @staticmethod
    def _field_definition(parent_type: GraphQLNamedType, name: str) -> GraphQLField | None:
        if isinstance(parent_type, GraphQLObjectType | GraphQLInterfaceType):
            return parent_type.fields.get(name)
        return None

    @staticmethod
    def _is_list_field(field: GraphQLField) -> bool:
        field_type: Any = field.type
        if is_non_null_type(field_type):
            field_type = field_type.of_type
        return is_list_type(field_type)

    def _type_condition(
        self,
        node: InlineFragmentNode | FragmentDefinitionNode,
        parent_type: GraphQLNamedType,
    ) -> GraphQLNamedType:
        if node.type_condition is None:
            return parent_type
        return self._schema.get_type(node.type_condition.name.value) or parent_type

    def _page_size(self, node: FieldNode, field: GraphQLField) -> int:
        value = None
        # `first`, else `last` (paging backwards), else the default.
        for name in (PAGE_SIZE_ARGUMENT, BACKWARD_PAGE_SIZE_ARGUMENT):
            argument = next((a for a in node.arguments or () if a.name.value == name), None)
            if argument is not None and name in field.args:
                value = self._int_value(argument.value)
            if value is not None:
                break
        if value is None:
            schema_default = field.args[PAGE_SIZE_ARGUMENT].default_value
            value = (
                schema_default
                if isinstance(schema_default, int) and not isinstance(schema_default, bool)
                else self._default_page_size
            )
        return max(0, value)

    def _int_value(self, value: ValueNode) -> int | None:
        """The integer a `first` argument evaluates to, or None (absent, null, unknown)."""
        if isinstance(value, VariableNode):
            name = value.name.value
            if name in self._variables:
                return as_int(self._variables[name])
            default = self._variable_defaults.get(name)
            return self._int_value(default) if default is not None else None
        if isinstance(value, IntValueNode):
            return int(value.value)
        if isinstance(value, NullValueNode):
            return None
        return None

    def _bool_value(self, value: ValueNode) -> bool | None:
        if isinstance(value, VariableNode):
            name = value.name.value
            if name in self._variables:
                raw = self._variables[name]
                return raw if isinstance(raw, bool) else None
            default = self._variable_defaults.get(name)
            return self._bool_value(default) if default is not None else None
        if isinstance(value, BooleanValueNode):
            return value.value
        return None

    def _is_included(self, node: SelectionNode) -> bool:
        """False only when @skip/@include certainly exclude the node."""
        for directive in node.directives or ():
            directive_name = directive.name.value
            if directive_name not in ("skip", "include"):
                continue
            condition = next(
                (arg.value for arg in directive.arguments or () if arg.name.value == "if"),
                None,
            )
            value = self._bool_value(condition) if condition is not None else None
            if value is None:
                continue
            if directive_name == "skip" and value:
                return False
            if directive_name == "include" and not value:
                return False
        return True


class QueryCostLimiter(SchemaExtension):
    """Reject operations whose cost (see the module docstring) is above `max_cost`, and
    report the cost in the response extensions as ``{"cost": {"requested", "limit"}}``.

    Args:
        max_cost: the highest cost an operation may have.
        default_page_size: the page size assumed for a connection field (one with a
            ``first`` argument) when ``first`` is not given and has no schema default.
        list_size: the size assumed for any other list-typed field.
    """

    def __init__(self, max_cost: int, default_page_size: int = 20, list_size: int = 10) -> None:
        if max_cost < 0 or default_page_size < 0 or list_size < 0:
            raise ValueError("max_cost, default_page_size and list_size must not be negative")
        self.max_cost = max_cost
        self.default_page_size = default_page_size
        self.list_size = list_size
        self._requested: int | None = None

    def on_operation(self) -> Iterator[None]:
        self._requested = None
        yield

    def on_execute(self) -> Iterator[None]:
        # Runs only after parsing and validation succeeded.
        context = self.execution_context
        document = context.graphql_document
        if document is None:
            yield
            return
        operation = get_operation_ast(document, context.operation_name)
        cost = calculate_query_cost(
            context.schema._schema,
            document,
            context.operation_name,
            context.variables,
            default_page_size=self.default_page_size,
            list_size=self.list_size,
        )
        self._requested = cost
        if cost is not None and cost > self.max_cost and context.result is None:
            error = self._too_costly(cost)
            if operation is not None and operation.operation is OperationType.SUBSCRIPTION:
                # Subscriptions do not honour a preset result: abort before subscribing.
                raise error
            # A preset result makes Strawberry skip execution: no resolver runs.
            context.result = ExecutionResult(data=None, errors=[error])
        yield

    def _too_costly(self, cost: int) -> GraphQLError:
        return GraphQLError(
            f"Query cost {cost} exceeds the limit of {self.max_cost}. "
            "Ask for smaller pages (first) or fewer fields.",
            extensions={"code": QUERY_TOO_COSTLY, "cost": cost, "limit": self.max_cost},
        )

    def get_results(self) -> dict[str, Any]:
        if self._requested is None:
            return {}
        return {"cost": {"requested": self._requested, "limit": self.max_cost}}


# --- input bounds ----------------------------------------------------------------------


@dataclass(frozen=True)
class InputRule:
    """Bounds for one argument or input field (by name, wherever it appears)."""

    max_length: int = 10_000  # characters of each string (list items included)
    min_length: int = 0
    max_items: int = 100  # items of a list


DEFAULT_RULE = InputRule()
DEFAULT_MAX_LENGTH = DEFAULT_RULE.max_length
DEFAULT_MAX_ITEMS = DEFAULT_RULE.max_items

# Tighter bounds where they matter; the database holds the stored ones too (migration 0008).
INPUT_RULES: dict[str, InputRule] = {
    "name": InputRule(max_length=200),
    "email": InputRule(max_length=254),
    "phone": InputRule(max_length=50),
    "postcode": InputRule(max_length=16),
    "relationship": InputRule(max_length=100),
    "nameContains": InputRule(min_length=1, max_length=100),
    "tasks": InputRule(max_length=500, max_items=50),
    "needs": InputRule(max_length=200, max_items=50),
    "needTags": InputRule(max_length=200, max_items=50),
    "postcodeDistricts": InputRule(max_length=16, max_items=50),
    "skills": InputRule(max_items=50),
    "after": InputRule(max_length=500),
    "before": InputRule(max_length=500),
    "skill": InputRule(max_length=200),
    "district": InputRule(max_length=8),
    "postcodeDistrict": InputRule(max_length=16),
}

# Pairs of arguments of one field where the first must not be after the second.
ORDERED_ARGUMENTS: tuple[tuple[str, str], ...] = (("startsFrom", "startsBefore"),)

BAD_USER_INPUT = "BAD_USER_INPUT"


class _InputProblem(Exception):
    def __init__(self, message: str, **extensions: Any) -> None:
        super().__init__(message)
        self.message = message
        self.extensions = extensions


class _InputChecker:
    def __init__(
        self, document: DocumentNode, variables: Mapping[str, Any], max_page_size: int
    ) -> None:
        self._variables = variables
        self._max_page_size = max_page_size
        self._defaults: dict[str, ValueNode] = {}
        for definition in document.definitions:
            if isinstance(definition, OperationDefinitionNode):
                for var in definition.variable_definitions or ():
                    if var.default_value is not None:
                        self._defaults.setdefault(var.variable.name.value, var.default_value)

    def check_argument(self, field: str, node: ArgumentNode, arg: GraphQLArgument) -> None:
        name = node.name.value
        self._ast(node.value, arg.type, [name], name, field)
        # Page requests too: a connection resolves them only after a mutation field has
        # committed, where a refusal would read as "nothing done" (a retry writes twice).
        if name in (PAGE_SIZE_ARGUMENT, BACKWARD_PAGE_SIZE_ARGUMENT):
            self._page_size(self._value(node.value), field, name)
        elif name in ("after", "before"):
            self._cursor(self._value(node.value), field, name)

    def _value(self, node: ValueNode) -> Any:
        """A scalar argument's value: a literal, a variable's value, or its default."""
        if isinstance(node, VariableNode):
            name = node.name.value
            if name in self._variables:
                return self._variables[name]
            default = self._defaults.get(name)
            return self._value(default) if default is not None else None
        if isinstance(node, IntValueNode):
            return int(node.value)
        if isinstance(node, StringValueNode):
            return node.value
        return None

    def _page_size(self, value: Any, field: str, argument: str) -> None:
        size = as_int(value)
        if size is None:
            return  # absent or null (the default page size), or not an Int at all
        largest = PAGE_SIZE_LIMITS.get(field, self._max_page_size)
        if not 1 <= size <= largest:
            raise _InputProblem(
                f"`{argument}` must be between 1 and {largest}.",
                field=field,
                argument=argument,
            )

    @staticmethod
    def _cursor(value: Any, field: str, argument: str) -> None:
        """Only the shape every cursor has (see `schema.connection`); its number of keys
        and its order are the connection's, checked when it resolves."""
        if not isinstance(value, str) or not value:
            return
        if not _decodes(value):
            raise _InputProblem(
                "Invalid cursor: pass a cursor this connection returned.",
                field=field,
                argument=argument,
            )

    def check_paging(self, field: str, arguments: Sequence[ArgumentNode]) -> None:
        """`first` and `last` together: a page cannot be cut from both ends. Checked here
        too so that a connection in a mutation's payload refuses before the commit."""
        given = {a.name.value: a.value for a in arguments}
        if all(
            name in given and self._value(given[name]) is not None
            for name in (PAGE_SIZE_ARGUMENT, BACKWARD_PAGE_SIZE_ARGUMENT)
        ):
            raise _InputProblem(
                "Give `first` (paging forwards) or `last` (paging backwards), not both.",
                field=field,
                argument=BACKWARD_PAGE_SIZE_ARGUMENT,
            )

    def check_order(self, field: str, arguments: Sequence[ArgumentNode]) -> None:
        given = {a.name.value: a.value for a in arguments}
        for first, second in ORDERED_ARGUMENTS:
            if first not in given or second not in given:
                continue
            start, end = self._instant(given[first]), self._instant(given[second])
            if start is not None and end is not None and start > end:
                raise _InputProblem(
                    f"`{first}` must not be after `{second}`.", field=field, argument=first
                )

    def _instant(self, node: ValueNode) -> dt.datetime | None:
        raw: Any
        if isinstance(node, VariableNode):
            raw = self._variables.get(node.name.value)
        elif isinstance(node, StringValueNode):
            raw = node.value
        else:
            return None
        try:
            value = parse_datetime(raw)
        except Exception:  # noqa: BLE001 - unparseable values are refused by coercion
            return None
        # Times without an offset are London time (as the resolvers read them).
        return value if value.tzinfo else value.replace(tzinfo=LONDON)

    def _ast(self, node: ValueNode, type_: Any, path: list[str], key: str, field: str) -> None:
        if isinstance(node, VariableNode):
            name = node.name.value
            if name in self._variables:
                self._raw(self._variables[name], type_, path, key, field)
            elif name in self._defaults:
                self._ast(self._defaults[name], type_, path, key, field)
            return
        if isinstance(node, NullValueNode):
            return
        if is_non_null_type(type_):
            type_ = type_.of_type
        if is_list_type(type_):
            if isinstance(node, ListValueNode):
                self._count(len(node.values), path, key, field)
                for item in node.values:
                    self._ast(item, type_.of_type, path, key, field)
            else:
                self._ast(node, type_.of_type, path, key, field)
        elif isinstance(type_, GraphQLInputObjectType):
            if isinstance(node, ObjectValueNode):
                for entry in node.fields:
                    name = entry.name.value
                    definition = type_.fields.get(name)
                    if definition is not None:
                        self._ast(entry.value, definition.type, [*path, name], name, field)
        elif isinstance(node, StringValueNode):
            self._string(node.value, path, key, field)

    def _raw(self, value: Any, type_: Any, path: list[str], key: str, field: str) -> None:
        if value is None:
            return
        if is_non_null_type(type_):
            type_ = type_.of_type
        if is_list_type(type_):
            if isinstance(value, list):
                self._count(len(value), path, key, field)
                for item in value:
                    self._raw(item, type_.of_type, path, key, field)
            else:
                self._raw(value, type_.of_type, path, key, field)
        elif isinstance(type_, GraphQLInputObjectType):
            if isinstance(value, dict):
                for name, item in value.items():
                    definition = type_.fields.get(name)
                    if definition is not None:
                        self._raw(item, definition.type, [*path, name], name, field)
        elif isinstance(value, str):
            self._string(value, path, key, field)

    @staticmethod
    def _count(items: int, path: list[str], key: str, field: str) -> None:
        rule = INPUT_RULES.get(key, DEFAULT_RULE)
        if items > rule.max_items:
            where = ".".join(path)
            raise _InputProblem(
                f"`{where}` has too many items: at most {rule.max_items}.",
                field=field,
                argument=where,
                maxItems=rule.max_items,
            )

    @staticmethod
    def _string(value: str, path: list[str], key: str, field: str) -> None:
        rule = INPUT_RULES.get(key, DEFAULT_RULE)
        where = ".".join(path)
        if len(value) > rule.max_length:
            raise _InputProblem(
                f"`{where}` is too long: at most {rule.max_length} characters.",
                field=field,
                argument=where,
                maxLength=rule.max_length,
            )
        if len(value) < rule.min_length:
            raise _InputProblem(
                f"`{where}` is too short: at least {rule.min_length} characters.",
                field=field,
                argument=where,
                minLength=rule.min_length,
            )
        if "\x00" in value:
            raise _InputProblem(
                f"`{where}` contains a NUL character, which cannot be stored.",
                field=field,
                argument=where,
            )


@dataclass(frozen=True)
class _Site:
    """One argument in a document: the field (or directive) it is given to, the node and
    its definition. A field's arguments are one site each; `ordered` marks the fields
    whose arguments `ORDERED_ARGUMENTS` relates, or that give both `first` and `last`."""

    field: str
    node: ArgumentNode | None
    argument: GraphQLArgument | None
    ordered: Sequence[ArgumentNode] = ()


def _sites(schema: GraphQLSchema, document: DocumentNode) -> list[_Site]:
    type_info = TypeInfo(schema)
    sites: list[_Site] = []
    related = {name for pair in ORDERED_ARGUMENTS for name in pair}
    paging = {PAGE_SIZE_ARGUMENT, BACKWARD_PAGE_SIZE_ARGUMENT}

    class Collector(GraphQLVisitor):
        def __init__(self) -> None:
            super().__init__()
            self.fields: list[str] = []

        def enter_field(self, node: FieldNode, *_: Any) -> None:
            self.fields.append(node.name.value)
            arguments = node.arguments or ()
            names = {a.name.value for a in arguments}
            if len(names & related) > 1 or paging <= names:
                sites.append(_Site(node.name.value, None, None, arguments))

        def leave_field(self, node: FieldNode, *_: Any) -> None:
            self.fields.pop()

        def enter_argument(self, node: ArgumentNode, *_: Any) -> None:
            argument = type_info.get_argument()
            if argument is not None:
                sites.append(_Site(self.fields[-1] if self.fields else "", node, argument))

    visit(document, TypeInfoVisitor(type_info, Collector()))
    return sites


class _SiteCache:
    """The argument sites of recent documents. Strawberry's parser cache hands the same
    document object to every request with the same query text, so the walk over the
    document (the costly part) runs once per query text, not once per request."""

    def __init__(self, size: int = 256) -> None:
        self.size = size
        self._entries: OrderedDict[int, tuple[DocumentNode, list[_Site]]] = OrderedDict()

    def get(self, schema: GraphQLSchema, document: DocumentNode) -> list[_Site]:
        key = id(document)
        entry = self._entries.get(key)
        if entry is not None and entry[0] is document:
            self._entries.move_to_end(key)
            return entry[1]
        sites = _sites(schema, document)
        self._entries[key] = (document, sites)
        if len(self._entries) > self.size:
            self._entries.popitem(last=False)
        return sites


_SITES = _SiteCache()


def _decodes(cursor: str) -> bool:
    try:
        _, keys = parse_cursor(cursor)
    except GraphQLError:
        return False
    return len(keys) in CURSOR_ARITIES


# The numbers of keys the connections' cursors carry (an id; a time and an id).
CURSOR_ARITIES = (1, 2)


def check_input_bounds(
    schema: GraphQLSchema,
    document: DocumentNode,
    variables: Mapping[str, Any] | None,
    max_page_size: int = 100,
) -> GraphQLError | None:
    """The first argument of `document` out of bounds (see the module docstring), as a
    BAD_USER_INPUT error, or None."""
    checker = _InputChecker(document, variables or {}, max_page_size)
    try:
        for site in _SITES.get(schema, document):
            if site.node is not None and site.argument is not None:
                checker.check_argument(site.field, site.node, site.argument)
            else:
                checker.check_order(site.field, site.ordered)
                checker.check_paging(site.field, site.ordered)
    except _InputProblem as problem:
        return GraphQLError(
            problem.message, extensions={"code": BAD_USER_INPUT, **problem.extensions}
        )
    return None


class InputBounds(SchemaExtension):
    """Refuse operations whose arguments are out of bounds (see the module docstring)
    before anything runs."""

    def on_execute(self) -> Iterator[None]:
        context = self.execution_context
        document = context.graphql_document
        if document is None or context.result is not None:
            yield
            return
        limits = getattr(context.context, "limits", None)
        error = check_input_bounds(
            context.schema._schema,
            document,
            context.variables,
            limits.max_page_size if limits is not None else 100,
        )
        if error is not None:
            operation = get_operation_ast(document, context.operation_name)
            if operation is not None and operation.operation is OperationType.SUBSCRIPTION:
                raise error
            context.result = ExecutionResult(data=None, errors=[error])
        yield
