"""`@include` / `@skip` on a selection, evaluated against an operation's variables.

Shared by the two places that price a GraphQL document without executing it: the client's
static cost estimate (`commerce.throttle`) and the emulator's cost calculator. A field left out by
its directives costs nothing, as in Shopify's cost analysis."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from graphql import BooleanValueNode, VariableNode


def _condition(directive, variables: Mapping[str, Any] | None) -> bool | None:
    for arg in directive.arguments or ():
        if arg.name.value != "if":
            continue
        if isinstance(arg.value, BooleanValueNode):
            return arg.value.value
        if isinstance(arg.value, VariableNode) and variables is not None:
            value = variables.get(arg.value.name.value)
            return value if isinstance(value, bool) else None
    return None


def is_included(node, variables: Mapping[str, Any] | None) -> bool:
    """False when `@include(if: false)` or `@skip(if: true)` leaves `node` out; an unknown
    condition (variable not given) counts as included, the safe side for a cost estimate."""
    for directive in getattr(node, "directives", None) or ():
        name = directive.name.value
        cond = _condition(directive, variables)
        if (name == "include" and cond is False) or (name == "skip" and cond is True):
            return False
    return True
