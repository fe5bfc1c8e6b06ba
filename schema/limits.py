"""Query cost limiting.

Every operation is given a *cost* from its parsed document before any resolver runs.
An operation whose cost is above the limit is rejected as a whole; nothing is executed.

Cost rules
----------

The cost of an operation is the sum of the cost of every field it selects:

* A field whose type is an object, interface or union (it has a sub-selection) costs **2**.
* A field whose type is a scalar or an enum (a leaf) costs **1**. A list of scalars
  (e.g. ``tags: [String!]!``) is still a leaf and costs 1.
* Introspection fields (names starting with ``__``: ``__typename``, ``__schema``,
  ``__type``) cost **0**, and so does everything selected inside them.
* Each field's cost is multiplied by the product of the expected sizes of all the lists
  that enclose it. A field multiplies the fields *inside* it (never itself) by:

  1. **its page size**, when the field's schema definition has a ``first`` argument
     (a Relay connection). The page size is the value of ``first`` in the query: a
     literal, or the value of the variable passed for it (or that variable's default in
     the operation). When ``first`` is absent or ``null``, the argument's default in the
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
``name`` costs 1 x 10. Total: 2 + 20 + 20 + 10 = **52**. The same query without
``first`` costs 2 + 20 x (2 + 2 + 1) = 102 with the default page size of 20.

Nested connections multiply: ``clusters(first: 10) { nodes { members(first: 5) { nodes
{ name } } } }`` costs 2 + 10 x (2 + 2 + 5 x (2 + 1)) = 192.

Responses
---------

The cost is reported on every executed (or rejected) operation in the response
``extensions``::

    {"data": {...}, "extensions": {"cost": {"requested": 52, "limit": 5000}}}

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
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from graphql import (
    BooleanValueNode,
    DocumentNode,
    ExecutionResult,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLField,
    GraphQLInterfaceType,
    GraphQLNamedType,
    GraphQLObjectType,
    GraphQLSchema,
    InlineFragmentNode,
    IntValueNode,
    NullValueNode,
    OperationDefinitionNode,
    OperationType,
    SelectionNode,
    SelectionSetNode,
    ValueNode,
    VariableNode,
    get_named_type,
    get_operation_ast,
    is_leaf_type,
    is_list_type,
    is_non_null_type,
)
from strawberry.extensions import SchemaExtension

__all__ = [
    "CONNECTION_LIST_FIELDS",
    "LEAF_FIELD_COST",
    "OBJECT_FIELD_COST",
    "PAGE_SIZE_ARGUMENT",
    "QUERY_TOO_COSTLY",
    "QueryCostLimiter",
    "calculate_query_cost",
]

OBJECT_FIELD_COST = 2
LEAF_FIELD_COST = 1
PAGE_SIZE_ARGUMENT = "first"
CONNECTION_LIST_FIELDS = frozenset({"edges", "nodes"})
QUERY_TOO_COSTLY = "QUERY_TOO_COSTLY"


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
        if is_leaf_type(field_type):
            return LEAF_FIELD_COST
        if node.selection_set is None:
            return OBJECT_FIELD_COST

        paged = PAGE_SIZE_ARGUMENT in field.args
        if paged:
            multiplier = self._page_size(node, field)
        elif self._is_list_field(field) and not (paged_parent and name in CONNECTION_LIST_FIELDS):
            multiplier = self._list_size
        else:
            multiplier = 1
        inner = self.selection_set_cost(node.selection_set, field_type, paged, active_fragments)
        return OBJECT_FIELD_COST + multiplier * inner

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
        argument = next(
            (arg for arg in node.arguments or () if arg.name.value == PAGE_SIZE_ARGUMENT),
            None,
        )
        value = self._int_value(argument.value) if argument is not None else None
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
                raw = self._variables[name]
                if isinstance(raw, int) and not isinstance(raw, bool):
                    return raw
                return None
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
