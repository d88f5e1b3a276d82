"""The GraphQL documents the engine sends, loaded from `operations/<snake_name>.graphql`.

One operation per file; the file stem is the operation name in snake_case
(`product_set.graphql` holds `mutation ProductSet`). Selections several operations share are
fragments in `operations/fragments/<snake_name>.graphql` (one per file, named like operations);
an operation's text is sent with the fragments it spreads appended. Nothing else in the package
writes GraphQL.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Literal

from graphql import (
    DocumentNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    OperationDefinitionNode,
    parse,
    visit,
)
from graphql.language import Node, Visitor

# The variable an operation declares when it carries `@idempotent(key: $idempotencyKey)`.
IDEMPOTENCY_VARIABLE = "idempotencyKey"


class OperationError(Exception):
    """An operation file that breaks the one-operation-per-file convention, or an unknown name."""


@dataclass(frozen=True)
class Operation:
    name: str  # CamelCase, as sent in `operationName`
    stem: str  # snake_case file stem
    text: str  # as sent: the operation, then the fragments it uses
    document: DocumentNode
    kind: Literal["query", "mutation"]
    variables: frozenset[str]

    @property
    def definition(self) -> OperationDefinitionNode:
        return self.document.definitions[0]  # type: ignore[return-value]  # fragments follow it

    @property
    def fragments(self) -> dict[str, FragmentDefinitionNode]:
        return {d.name.value: d for d in self.document.definitions if isinstance(d, FragmentDefinitionNode)}

    @property
    def needs_idempotency_key(self) -> bool:
        return IDEMPOTENCY_VARIABLE in self.variables


def camel_to_snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def snake_to_camel(stem: str) -> str:
    return "".join(part.capitalize() for part in stem.split("_"))


def _spreads(node: Node) -> set[str]:
    """Names of the fragments `node` spreads directly."""
    found: set[str] = set()

    class Spreads(Visitor):
        def enter_fragment_spread(self, spread: FragmentSpreadNode, *_args: object) -> None:
            found.add(spread.name.value)

    visit(node, Spreads())
    return found


def _parse_fragment(stem: str, text: str) -> tuple[str, str, FragmentDefinitionNode]:
    document = parse(text)
    defs = document.definitions
    if len(defs) != 1 or not isinstance(defs[0], FragmentDefinitionNode):
        raise OperationError(f"fragments/{stem}.graphql must hold exactly one fragment")
    name = defs[0].name.value
    if name != snake_to_camel(stem):
        raise OperationError(
            f"fragments/{stem}.graphql must name its fragment {snake_to_camel(stem)!r}, not {name!r}"
        )
    return name, text.strip(), defs[0]


def _with_fragments(stem: str, text: str, fragments: dict[str, tuple[str, FragmentDefinitionNode]]) -> str:
    """The operation's text followed by every fragment it spreads, directly or through another."""
    needed: list[str] = []
    todo = sorted(_spreads(parse(text)))
    while todo:
        name = todo.pop(0)
        if name in needed:
            continue
        if name not in fragments:
            raise OperationError(
                f"{stem}.graphql spreads an unknown fragment {name!r}; "
                f"known: {', '.join(sorted(fragments)) or 'none'}"
            )
        needed.append(name)
        todo.extend(sorted(_spreads(fragments[name][1]) - set(needed)))
    return "\n\n".join([text.strip(), *(fragments[n][0] for n in needed)]) + "\n"


def _parse(
    stem: str, text: str, fragments: dict[str, tuple[str, FragmentDefinitionNode]] | None = None
) -> Operation:
    document = parse(text)
    ops = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    if len(ops) != 1 or len(document.definitions) != 1:
        raise OperationError(
            f"{stem}.graphql must hold exactly one operation (shared fragments live in operations/fragments/)"
        )
    op = ops[0]
    if op.name is None or op.name.value != snake_to_camel(stem):
        raise OperationError(
            f"{stem}.graphql must name its operation {snake_to_camel(stem)!r}, "
            f"not {op.name.value if op.name else '(anonymous)'!r}"
        )
    kind = op.operation.value
    if kind not in ("query", "mutation"):
        raise OperationError(f"{stem}.graphql: {kind} operations are not sent by the engine")
    variables = frozenset(v.variable.name.value for v in op.variable_definitions or ())
    full = _with_fragments(stem, text, fragments or {})
    return Operation(op.name.value, stem, full, parse(full), kind, variables)  # type: ignore[arg-type]


@cache
def all_fragments() -> dict[str, tuple[str, FragmentDefinitionNode]]:
    """Every shared fragment, by CamelCase name: (text, definition)."""
    found: dict[str, tuple[str, FragmentDefinitionNode]] = {}
    folder = resources.files("storesync.commerce").joinpath("operations").joinpath("fragments")
    for entry in folder.iterdir() if folder.is_dir() else ():
        if entry.name.endswith(".graphql"):
            name, text, node = _parse_fragment(
                entry.name.removesuffix(".graphql"), entry.read_text(encoding="utf-8")
            )
            found[name] = (text, node)
    return found


@cache
def all_operations() -> dict[str, Operation]:
    """Every operation, by CamelCase name."""
    found: dict[str, Operation] = {}
    fragments = all_fragments()
    for entry in resources.files("storesync.commerce").joinpath("operations").iterdir():
        if entry.name.endswith(".graphql"):
            op = _parse(entry.name.removesuffix(".graphql"), entry.read_text(encoding="utf-8"), fragments)
            found[op.name] = op
    return found


def get_operation(name: str | Operation) -> Operation:
    """An operation by CamelCase name or snake_case stem."""
    if isinstance(name, Operation):
        return name
    ops = all_operations()
    op = ops.get(name) or ops.get(snake_to_camel(name))
    if op is None:
        raise OperationError(f"no operation {name!r}; known: {', '.join(sorted(ops))}")
    return op
