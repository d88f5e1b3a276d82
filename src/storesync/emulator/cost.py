"""Shopify's calculated query cost and its leaky bucket.

Cost rules (Shopify's documented model, simplified where it does not matter to a client):
- scalars and enums cost 0; every object costs 1;
- a connection costs 2 plus, for each node it may return, the cost of one node's selection:
  requested cost uses `first`/`last`, actual cost the nodes really returned; edges and
  pageInfo are free (they only wrap nodes);
- a mutation field costs 10 plus the objects selected in its payload (not the payload itself);
- `nodes(ids:)` counts one node per id requested.

The requested cost is taken from the bucket before execution and the difference to the actual
cost is given back afterwards, as Shopify does. A query requesting more than 1,000 points is
refused without being charged (`MAX_COST_EXCEEDED`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from graphql import (
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLField,
    GraphQLList,
    GraphQLNamedType,
    GraphQLObjectType,
    GraphQLSchema,
    InlineFragmentNode,
    IntValueNode,
    ListValueNode,
    OperationDefinitionNode,
    SelectionSetNode,
    get_named_type,
)
from graphql.type.definition import (
    GraphQLInterfaceType,
    GraphQLUnionType,
    get_nullable_type,
)

from storesync.graphql_directives import is_included

MAX_QUERY_COST = 1000
MUTATION_COST = 10
CONNECTION_COST = 2


def _is_connection(t: GraphQLNamedType) -> bool:
    return t.name.endswith("Connection")


def _free_wrapper(t: GraphQLNamedType) -> bool:
    return t.name.endswith("Edge") or t.name == "PageInfo" or t.name.endswith("Payload")


class _Walker:
    def __init__(
        self,
        schema: GraphQLSchema,
        fragments: dict[str, FragmentDefinitionNode],
        variables: dict[str, Any] | None,
    ) -> None:
        self.schema = schema
        self.fragments = fragments
        self.variables = variables

    def _fields(self, parent: GraphQLNamedType, selection_set: SelectionSetNode | None):
        """(field node, field definition, named type of the field's parent) for each field
        selected, fragments flattened."""
        if selection_set is None:
            return
        for sel in selection_set.selections:
            if not is_included(sel, self.variables):
                continue
            if isinstance(sel, FieldNode):
                if sel.name.value.startswith("__"):
                    continue
                fields = getattr(parent, "fields", None)
                if fields is None or sel.name.value not in fields:
                    continue
                yield sel, fields[sel.name.value]
            elif isinstance(sel, InlineFragmentNode):
                t = self.schema.get_type(sel.type_condition.name.value) if sel.type_condition else parent
                yield from self._fields(t or parent, sel.selection_set)
            elif isinstance(sel, FragmentSpreadNode):
                frag = self.fragments.get(sel.name.value)
                if frag is not None:
                    t = self.schema.get_type(frag.type_condition.name.value) or parent
                    yield from self._fields(t, frag.selection_set)

    def _args(self, field_def: GraphQLField, node: FieldNode) -> dict[str, Any]:
        """`first`, `last` and `ids` of a field, from literals or the raw variables. Only sizes
        matter here; invalid values fail validation or execution with their own errors."""
        out: dict[str, Any] = {}
        for arg in node.arguments or ():
            name = arg.name.value
            if name not in ("first", "last", "ids"):
                continue
            value = arg.value
            if isinstance(value, IntValueNode):
                out[name] = int(value.value)
            elif isinstance(value, ListValueNode):
                out[name] = list(value.values)
            elif hasattr(value, "name") and self.variables is not None:  # a VariableNode
                out[name] = self.variables.get(value.name.value)
        for key in ("first", "last"):
            if not isinstance(out.get(key), int) or isinstance(out.get(key), bool):
                out.pop(key, None)
        return out

    # ------------------------------------------------------------------ requested

    def requested(self, parent: GraphQLNamedType, selection_set: SelectionSetNode | None) -> int:
        total = 0
        for node, field_def in self._fields(parent, selection_set):
            total += self.requested_field(node, field_def)
        return total

    def requested_field(self, node: FieldNode, field_def: GraphQLField) -> int:
        named = get_named_type(field_def.type)
        if not isinstance(named, (GraphQLObjectType, GraphQLInterfaceType, GraphQLUnionType)):
            return 0
        if _is_connection(named):
            args = self._args(field_def, node)
            size = args.get("first") or args.get("last") or 0
            return CONNECTION_COST + size * self._per_node(named, node.selection_set)
        own = 0 if _free_wrapper(named) else 1
        inner = own + self.requested(named, node.selection_set)
        if isinstance(get_nullable_type(field_def.type), GraphQLList):
            ids = self._args(field_def, node).get("ids")
            return inner * (len(ids) if isinstance(ids, list) else 1)
        return inner

    def _per_node(self, conn: GraphQLNamedType, selection_set: SelectionSetNode | None) -> int:
        """Cost of one node of a connection: the larger of its `nodes` and `edges { node }` selections."""
        per = 0
        for node, field_def in self._fields(conn, selection_set):
            named = get_named_type(field_def.type)
            if node.name.value == "nodes":
                per = max(per, 1 + self.requested(named, node.selection_set))
            elif node.name.value == "edges":
                for enode, edef in self._fields(named, node.selection_set):
                    if enode.name.value == "node":
                        per = max(per, 1 + self.requested(get_named_type(edef.type), enode.selection_set))
        return per

    # ------------------------------------------------------------------ actual

    def actual(self, parent: GraphQLNamedType, selection_set: SelectionSetNode | None, data: Any) -> int:
        if not isinstance(data, dict):
            return 0
        total = 0
        for node, field_def in self._fields(parent, selection_set):
            key = node.alias.value if node.alias else node.name.value
            total += self.actual_field(node, field_def, data.get(key))
        return total

    def actual_field(self, node: FieldNode, field_def: GraphQLField, value: Any) -> int:
        named = get_named_type(field_def.type)
        if value is None or not isinstance(
            named, (GraphQLObjectType, GraphQLInterfaceType, GraphQLUnionType)
        ):
            return 0
        if isinstance(value, list):
            return sum(self.actual_field(node, field_def, v) for v in value)
        if _is_connection(named):
            per_node: dict[int, int] = {}
            for cnode, cdef in self._fields(named, node.selection_set):
                key = cnode.alias.value if cnode.alias else cnode.name.value
                items = value.get(key) or []
                if cnode.name.value == "nodes":
                    for i, item in enumerate(items):
                        if item is not None:
                            c = 1 + self.actual(get_named_type(cdef.type), cnode.selection_set, item)
                            per_node[i] = max(per_node.get(i, 0), c)
                elif cnode.name.value == "edges":
                    for i, edge in enumerate(items):
                        for enode, edef in self._fields(get_named_type(cdef.type), cnode.selection_set):
                            ekey = enode.alias.value if enode.alias else enode.name.value
                            if enode.name.value == "node" and edge and edge.get(ekey) is not None:
                                c = 1 + self.actual(
                                    get_named_type(edef.type), enode.selection_set, edge[ekey]
                                )
                                per_node[i] = max(per_node.get(i, 0), c)
            return CONNECTION_COST + sum(per_node.values())
        own = 0 if _free_wrapper(named) else 1
        if isinstance(named, (GraphQLInterfaceType, GraphQLUnionType)):
            concrete = self.schema.get_type(value.get("__typename", "")) if "__typename" in value else None
            # Without __typename the fragments still name their fields; walk against the abstract type.
            return own + self.actual(concrete or named, node.selection_set, value)
        return own + self.actual(named, node.selection_set, value)


def query_costs(
    schema: GraphQLSchema, document: Any, operation: OperationDefinitionNode, variables: dict[str, Any]
) -> tuple[int, Callable[[Any], int]]:
    """The requested cost of `operation`, and a function of the response data that gives the
    actual cost."""
    fragments = {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}
    walker = _Walker(schema, fragments, variables if isinstance(variables, dict) else None)
    is_mutation = operation.operation.value == "mutation"
    root = schema.mutation_type if is_mutation else schema.query_type
    assert root is not None

    def root_fields():
        return list(walker._fields(root, operation.selection_set))

    if is_mutation:
        requested = sum(
            MUTATION_COST + walker.requested(get_named_type(fd.type), n.selection_set)
            for n, fd in root_fields()
        )
    else:
        requested = walker.requested(root, operation.selection_set)

    def actual(data: Any) -> int:
        if not isinstance(data, dict):
            return 0
        if not is_mutation:
            return walker.actual(root, operation.selection_set, data)
        total = 0
        for n, fd in root_fields():
            key = n.alias.value if n.alias else n.name.value
            total += MUTATION_COST + walker.actual(get_named_type(fd.type), n.selection_set, data.get(key))
        return total

    return requested, actual


class LeakyBucket:
    """Points available to one app on one store, restored continuously up to the bucket size."""

    def __init__(self, size: float, restore_rate: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.size = size
        self.restore_rate = restore_rate
        self._clock = clock
        self._available = size
        self._at = clock()

    def _refill(self) -> None:
        now = self._clock()
        self._available = min(self.size, self._available + (now - self._at) * self.restore_rate)
        self._at = now

    @property
    def available(self) -> float:
        self._refill()
        return self._available

    def try_take(self, cost: float) -> bool:
        """Take `cost` points if that many are available (nothing is taken otherwise)."""
        self._refill()
        if cost > self._available:
            return False
        self._available -= cost
        return True

    def refund(self, points: float) -> None:
        self._refill()
        self._available = min(self.size, self._available + points)

    def seconds_until(self, cost: float) -> float:
        """How long until `cost` points are available (Retry-After)."""
        missing = cost - self.available
        return max(0.0, missing / self.restore_rate)

    def set_limits(self, size: float, restore_rate: float) -> None:
        """A plan change: the new size and rate apply from now; what is available is kept."""
        self._refill()
        self.size, self.restore_rate = size, restore_rate
        self._available = min(self._available, size)

    def status(self) -> dict:
        return {
            "maximumAvailable": float(self.size),
            "currentlyAvailable": int(self.available),
            "restoreRate": float(self.restore_rate),
        }
