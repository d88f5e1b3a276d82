"""Bulk query operations (`bulkOperationRunQuery`, `currentBulkOperation`), as Shopify runs them.

The query runs once, when the operation is created, over the store's state with the emulator's
own schema and resolvers, with connection page limits lifted (bulk queries read every item, and
Shopify ignores `first` there). The result is flattened into Shopify's JSONL: one line per node
of a connection, depth first, each nested connection's nodes on lines of their own after their
parent, carrying `__parentId` (the nearest enclosing node's `id`); other objects stay inline.

Status moves one step per observation (`currentBulkOperation` or `node(id:)`): CREATED, then
RUNNING, then COMPLETED (or the fault's final status), so a polling client sees every state
without the emulator running timers. Up to five query operations per shop run at a time (API
2026-01 and later); a sixth `bulkOperationRunQuery` meanwhile gets OPERATION_IN_PROGRESS. A query outside Shopify's documented
bulk query rules (`bulk_query_violations`) is refused at creation with a userError coded INVALID. A fault set through the control
API (`PUT /_emulator/stores/{shop}/bulk_fault`) makes the next operation end FAILED or CANCELED.
The file is served at `/_emulator/bulk/{shop}/{id}.jsonl`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from graphql import (
    DocumentNode,
    ExecutionResult,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLInterfaceType,
    GraphQLNamedType,
    GraphQLObjectType,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
    execute,
    get_named_type,
    parse,
    validate,
)

from storesync.emulator.state import now_iso

# Set while a bulk query executes: `resolvers.connection` then returns every item.
BULK_EXECUTION: ContextVar[bool] = ContextVar("bulk_execution", default=False)
FINAL_STATUSES = frozenset({"COMPLETED", "FAILED", "CANCELED", "EXPIRED"})
FAULT_STATUSES = frozenset({"FAILED", "CANCELED", "EXPIRED"})

# Shopify's bulk query rules: "The query must include at least one connection field and supports
# up to five connections with a maximum nesting depth of two levels"
# (https://shopify.dev/docs/api/admin-graphql/2026-01/payloads/BulkOperationRunQueryPayload), and
# "The top-level node and nodes fields can't be used" (operation restrictions,
# https://shopify.dev/docs/api/usage/bulk-operations/queries). A connection is a field whose type
# is a `...Connection`; lists of objects (`Collection.sources`, `Product.options`) are not.
MAX_BULK_CONNECTIONS = 5
MAX_BULK_NESTING = 2  # connections nested inside the root connection, at most two deep


@dataclass(eq=False)
class BulkOperation:
    id: int
    shop: str
    query: str
    lines: list[str]
    root_object_count: int
    type: str = "QUERY"
    status: str = "CREATED"
    error_code: str | None = None
    created_at: str = field(default_factory=now_iso)
    completed_at: str | None = None
    # (final status, error code) the operation ends with instead of COMPLETED
    fault: tuple[str, str | None] | None = None

    @property
    def running(self) -> bool:
        return self.status not in FINAL_STATUSES

    @property
    def body(self) -> bytes:
        return "".join(line + "\n" for line in self.lines).encode()

    def advance(self) -> None:
        """One step along CREATED -> RUNNING -> final (each observation makes one)."""
        if self.status == "CREATED":
            self.status = "RUNNING"
        elif self.status == "RUNNING":
            if self.fault is None:
                self.status = "COMPLETED"
            else:
                self.status, self.error_code = self.fault
            self.completed_at = now_iso()


class BulkQueryInvalid(Exception):
    """The query cannot run as a bulk query (Shopify answers a userError with code INVALID)."""


def _is_connection(t: GraphQLNamedType) -> bool:
    return t.name.endswith("Connection")


def _fields(
    parent: GraphQLObjectType | GraphQLInterfaceType, selection_set: SelectionSetNode | None, schema=None
) -> Iterator[tuple[FieldNode, Any]]:
    """(response key, field definition) of each field selected on `parent`, inline fragments
    of `parent`'s own type included, and, for an interface (a connection of `Media`), those of
    its implementations (with `schema`: their fields appear on the objects of that type only)."""
    for sel in selection_set.selections if selection_set else ():
        if isinstance(sel, FieldNode):
            if sel.name.value == "__typename":
                continue
            yield sel, parent.fields[sel.name.value]
        elif isinstance(sel, InlineFragmentNode) and (
            sel.type_condition is None or sel.type_condition.name.value == parent.name
        ):
            yield from _fields(parent, sel.selection_set, schema)
        elif (
            isinstance(sel, InlineFragmentNode)
            and isinstance(parent, GraphQLInterfaceType)
            and schema is not None
            and sel.type_condition is not None
        ):
            implementation = schema.get_type(sel.type_condition.name.value)
            if isinstance(implementation, GraphQLObjectType):
                yield from _fields(implementation, sel.selection_set, schema)


def _connection_nodes(value: dict, node: FieldNode) -> tuple[list, SelectionSetNode | None]:
    """The nodes a connection value holds and the selection made on them (`edges { node }` or
    `nodes`)."""
    for sel in node.selection_set.selections if node.selection_set else ():
        if not isinstance(sel, FieldNode):
            continue
        key = sel.alias.value if sel.alias else sel.name.value
        if sel.name.value == "nodes":
            return list(value.get(key) or []), sel.selection_set
        if sel.name.value == "edges":
            for inner in sel.selection_set.selections if sel.selection_set else ():
                if isinstance(inner, FieldNode) and inner.name.value == "node":
                    nkey = inner.alias.value if inner.alias else "node"
                    return [
                        e[nkey] for e in value.get(key) or [] if e.get(nkey) is not None
                    ], inner.selection_set
    return [], None


def flatten(schema, operation: OperationDefinitionNode, data: dict) -> tuple[list[dict], int]:
    """Shopify's JSONL objects for `data` (the result of `operation`) and how many are roots."""
    out: list[dict] = []
    roots = 0

    def emit_node(
        obj: dict,
        node_type: GraphQLObjectType | GraphQLInterfaceType,
        selection: SelectionSetNode | None,
        parent_id: str | None,
        path: str,
    ) -> None:
        line: dict = {}
        out.append(line)  # the parent's line comes before its children's
        children: list = []
        strip(obj, node_type, selection, line, children, path)
        if parent_id is not None:
            line["__parentId"] = parent_id
        for child in children:
            child(line.get("id"), path)

    def strip(
        obj: dict,
        obj_type: GraphQLObjectType | GraphQLInterfaceType,
        selection: SelectionSetNode | None,
        into: dict,
        children: list,
        path: str,
    ) -> None:
        for node, field_def in _fields(obj_type, selection, schema):
            key = node.alias.value if node.alias else node.name.value
            if key not in obj:  # a fragment of another implementation of an interface
                continue
            named = get_named_type(field_def.type)
            value = obj.get(key)
            if _is_connection(named):
                if value is None:
                    continue
                nodes, node_sel = _connection_nodes(value, node)
                node_type = _node_type(named)

                def later(parent_id, ppath, nodes=nodes, node_sel=node_sel, node_type=node_type, key=key):
                    if parent_id is None:
                        raise BulkQueryInvalid(
                            f"The parent of the nested connection '{key}' at {ppath} must "
                            "select the 'id' field"
                        )
                    for n in nodes:
                        emit_node(n, node_type, node_sel, parent_id, f"{ppath}.{key}")

                children.append(later)
            elif isinstance(named, GraphQLObjectType) and value is not None:
                if isinstance(value, list):
                    into[key] = []
                    for item in value:
                        inner: dict = {}
                        strip(item, named, node.selection_set, inner, children, path)
                        into[key].append(inner)
                else:
                    inner = {}
                    strip(value, named, node.selection_set, inner, children, path)
                    into[key] = inner
            else:
                into[key] = value

    root_type = schema.query_type
    for node, field_def in _fields(root_type, operation.selection_set):
        named = get_named_type(field_def.type)
        key = node.alias.value if node.alias else node.name.value
        if not _is_connection(named) or data.get(key) is None:
            continue
        nodes, node_sel = _connection_nodes(data[key], node)
        for n in nodes:
            roots += 1
            emit_node(n, _node_type(named), node_sel, None, key)
    return out, roots


def _node_type(connection: GraphQLObjectType) -> GraphQLObjectType | GraphQLInterfaceType:
    node_type = get_named_type(connection.fields["nodes"].type)
    assert isinstance(node_type, GraphQLObjectType | GraphQLInterfaceType)
    return node_type


def _check_nested_parents(
    parent: GraphQLObjectType | GraphQLInterfaceType,
    selection: SelectionSetNode | None,
    node_has_id: bool,
    path: str,
) -> None:
    """A nested connection's enclosing node must select `id`: its children point at it."""
    fields = list(_fields(parent, selection))
    for node, field_def in fields:
        named = get_named_type(field_def.type)
        key = node.alias.value if node.alias else node.name.value
        if _is_connection(named):
            if path and not node_has_id:
                raise BulkQueryInvalid(
                    f"Invalid bulk query: the parent of the nested connection '{key}' at "
                    f"{path} must select the 'id' field"
                )
            _, node_sel = _connection_nodes({}, node)
            node_type = _node_type(named)
            has_id = any(n.name.value == "id" and n.alias is None for n, _d in _fields(node_type, node_sel))
            _check_nested_parents(node_type, node_sel, has_id, f"{path}.{key}" if path else key)
        elif isinstance(named, GraphQLObjectType) and path:
            _check_nested_parents(named, node.selection_set, node_has_id, f"{path}.{key}")


def bulk_connection_depths(schema, document: DocumentNode) -> list[tuple[str, int]]:
    """(path, nesting depth) of every connection the document's query selects: depth 0 is a
    root connection, 1 one nested in it (`products.variants`), and so on. Inline fragments and
    fragment spreads count where they are spread."""
    fragments = {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}
    found: list[tuple[str, int]] = []

    def walk(parent, selection_set: SelectionSetNode | None, depth: int, path: str) -> None:
        for sel in selection_set.selections if selection_set else ():
            if isinstance(sel, FragmentSpreadNode):
                fragment = fragments.get(sel.name.value)
                if fragment is not None:
                    inner = schema.get_type(fragment.type_condition.name.value) or parent
                    walk(inner, fragment.selection_set, depth, path)
                continue
            if isinstance(sel, InlineFragmentNode):
                inner = schema.get_type(sel.type_condition.name.value) if sel.type_condition else parent
                walk(inner or parent, sel.selection_set, depth, path)
                continue
            if not isinstance(sel, FieldNode) or sel.name.value.startswith("__"):
                continue
            field_def = parent.fields.get(sel.name.value)
            if field_def is None:
                continue  # graphql-core's validation reports unknown fields
            named = get_named_type(field_def.type)
            name = sel.name.value
            wrapping = path and name in ("edges", "node", "nodes")  # a connection's own levels
            key = path if wrapping else (f"{path}.{name}" if path else name)
            deeper = depth
            if _is_connection(named):
                found.append((key, depth))
                deeper = depth + 1
            if sel.selection_set and isinstance(named, GraphQLObjectType | GraphQLInterfaceType):
                walk(named, sel.selection_set, deeper, key)

    for op in document.definitions:
        if isinstance(op, OperationDefinitionNode):
            walk(schema.query_type, op.selection_set, 0, "")
    return found


def bulk_query_violations(schema, document: DocumentNode) -> list[str]:
    """The messages of every rule a (schema-valid) bulk query document breaks; none: it runs."""
    problems: list[str] = []
    for op in document.definitions:
        if isinstance(op, OperationDefinitionNode):
            for sel in op.selection_set.selections:
                if isinstance(sel, FieldNode) and sel.name.value in ("node", "nodes"):
                    problems.append(f"Bulk queries cannot use the top-level '{sel.name.value}' field.")
    depths = bulk_connection_depths(schema, document)
    if not any("." not in path for path, _depth in depths):  # a root field that is a connection
        problems.append("Bulk queries must contain at least one connection.")
    if len(depths) > MAX_BULK_CONNECTIONS:
        problems.append(
            f"Bulk queries cannot contain more than {MAX_BULK_CONNECTIONS} connections "
            f"(this one has {len(depths)}: {', '.join(path for path, _d in depths)})."
        )
    too_deep = [path for path, depth in depths if depth > MAX_BULK_NESTING]
    if too_deep:
        problems.append(
            f"Bulk queries cannot nest connections more than {MAX_BULK_NESTING} levels deep "
            f"({', '.join(too_deep)})."
        )
    return problems


def run_bulk_query(schema, query: str, context: Any, field_resolver) -> tuple[list[str], int]:
    """Execute `query` for a bulk operation: (JSONL lines, root object count). Raises
    BulkQueryInvalid for a query Shopify refuses at creation."""
    try:
        doc = parse(query)
    except GraphQLError as err:
        raise BulkQueryInvalid(f"Invalid bulk query: {err.message}") from None
    errors = validate(schema, doc)
    if errors:
        raise BulkQueryInvalid("Invalid bulk query: " + "; ".join(e.message for e in errors))
    ops = [d for d in doc.definitions if isinstance(d, OperationDefinitionNode)]
    if len(ops) != 1 or ops[0].operation.value != "query":
        raise BulkQueryInvalid("Invalid bulk query: it must hold exactly one query operation")
    op = ops[0]
    problems = bulk_query_violations(schema, doc)
    if problems:
        raise BulkQueryInvalid(" ".join(problems))
    _check_nested_parents(schema.query_type, op.selection_set, False, "")
    token = BULK_EXECUTION.set(True)
    try:
        result = execute(schema, doc, context_value=context, field_resolver=field_resolver)
        assert isinstance(result, ExecutionResult)  # the resolvers are synchronous
    finally:
        BULK_EXECUTION.reset(token)
    if result.errors:
        raise BulkQueryInvalid("Invalid bulk query: " + "; ".join(e.message for e in result.errors))
    objects, roots = flatten(schema, op, result.data or {})
    return [json.dumps(o, separators=(",", ":")) for o in objects], roots
