"""The GraphQL documents the engine sends, loaded from `operations/<snake_name>.graphql`.

One operation per file; the file stem is the operation name in snake_case
(`product_set.graphql` holds `mutation ProductSet`). Nothing else in the package writes GraphQL.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Literal

from graphql import DocumentNode, OperationDefinitionNode, parse

# The variable an operation declares when it carries `@idempotent(key: $idempotencyKey)`.
IDEMPOTENCY_VARIABLE = "idempotencyKey"


class OperationError(Exception):
    """An operation file that breaks the one-operation-per-file convention, or an unknown name."""


@dataclass(frozen=True)
class Operation:
    name: str  # CamelCase, as sent in `operationName`
    stem: str  # snake_case file stem
    text: str
    document: DocumentNode
    kind: Literal["query", "mutation"]
    variables: frozenset[str]

    @property
    def definition(self) -> OperationDefinitionNode:
        return self.document.definitions[0]  # type: ignore[return-value]

    @property
    def needs_idempotency_key(self) -> bool:
        return IDEMPOTENCY_VARIABLE in self.variables


def camel_to_snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def snake_to_camel(stem: str) -> str:
    return "".join(part.capitalize() for part in stem.split("_"))


def _parse(stem: str, text: str) -> Operation:
    document = parse(text)
    ops = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    if len(ops) != 1 or len(document.definitions) != 1:
        raise OperationError(f"{stem}.graphql must hold exactly one operation and no fragments")
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
    return Operation(op.name.value, stem, text, document, kind, variables)  # type: ignore[arg-type]


@cache
def all_operations() -> dict[str, Operation]:
    """Every operation, by CamelCase name."""
    found: dict[str, Operation] = {}
    for entry in resources.files("storesync.commerce").joinpath("operations").iterdir():
        if entry.name.endswith(".graphql"):
            op = _parse(entry.name.removesuffix(".graphql"), entry.read_text(encoding="utf-8"))
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
