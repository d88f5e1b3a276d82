"""Shopify's leaky bucket, modelled per store (pure arithmetic: no I/O, no clock).

The bucket holds up to `capacity` points and refills at `restore_rate` points/s. A call that
requests more points than are available is THROTTLED (and charged nothing); otherwise it is
charged its `requestedQueryCost` up front and refunded down to `actualQueryCost`.

Our model lets `available` go negative: a reservation is granted at once and told how long to
wait, `(cost + margin - available) / restore_rate`, which queues callers in the order they asked
without anyone polling. Every response corrects the model from `throttleStatus`: the server's
`currentlyAvailable` minus the reservations still waiting to be sent, which the server cannot
have seen. (Calls already sent are counted as seen: counting them too would make every caller
that retries after a THROTTLED burst compute the same wait and collide again.)

Static cost estimate (Shopify's rules): scalars and enums 0, objects 1, connections
2 + first x (cost of one node), mutations 10 plus the objects their payload selects. It is then scaled by what the server reported as
`requestedQueryCost` for the same operation (learned ratio).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from graphql import (
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    InlineFragmentNode,
    IntValueNode,
    ListValueNode,
    SelectionSetNode,
    ValueNode,
    VariableNode,
)

from storesync.commerce.operations import Operation
from storesync.graphql_directives import is_included

# Shopify's limits: one query may request at most 1,000 points; a mutation field costs 10.
MAX_QUERY_COST = 1000.0
MUTATION_COST = 10.0
# Standard plan, used until the store's first response tells us its real bucket.
STANDARD_CAPACITY = 2000.0
STANDARD_RESTORE_RATE = 100.0


@dataclass(frozen=True)
class ThrottleStatus:
    maximum_available: float
    currently_available: float
    restore_rate: float


@dataclass(frozen=True)
class QueryCost:
    requested: float | None
    actual: float | None
    throttle: ThrottleStatus | None

    @classmethod
    def from_extensions(cls, extensions: Any) -> QueryCost | None:
        """`extensions.cost` of a response, or None when absent or malformed."""
        if not isinstance(extensions, Mapping) or not isinstance(extensions.get("cost"), Mapping):
            return None
        cost = extensions["cost"]

        def num(v: Any) -> float | None:
            return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None

        status = None
        ts = cost.get("throttleStatus")
        if isinstance(ts, Mapping):
            values = [num(ts.get(k)) for k in ("maximumAvailable", "currentlyAvailable", "restoreRate")]
            if all(v is not None for v in values) and values[0] > 0 and values[2] > 0:  # type: ignore[operator]
                status = ThrottleStatus(*values)  # type: ignore[arg-type]
        return cls(num(cost.get("requestedQueryCost")), num(cost.get("actualQueryCost")), status)


# --------------------------------------------------------------------------- the bucket


@dataclass(frozen=True)
class Grant:
    """The outcome of asking for `cost` points: wait `wait` seconds, then send (if granted)."""

    state: BucketState
    wait: float
    granted: bool


@dataclass(frozen=True)
class BucketState:
    capacity: float
    restore_rate: float
    available: float  # at time `at`; negative while granted reservations wait for their turn
    at: float  # seconds on whatever clock the owner uses (monotonic, or the database's)

    @classmethod
    def standard(cls, now: float) -> BucketState:
        return cls(STANDARD_CAPACITY, STANDARD_RESTORE_RATE, STANDARD_CAPACITY, now)

    def level(self, now: float) -> float:
        """Points available at `now`: restored since `at`, never above capacity."""
        if self.available >= self.capacity:
            return self.capacity
        return min(self.capacity, self.available + max(0.0, now - self.at) * self.restore_rate)

    def settled(self, now: float) -> BucketState:
        return replace(self, available=self.level(now), at=max(now, self.at))

    def reserve(
        self, cost: float, now: float, *, margin: float = 0.0, max_wait: float = math.inf, keep: float = 0.0
    ) -> Grant:
        """Take `cost` points now and say how long to wait until the bucket holds them (plus
        `margin`, slack for what the model cannot see, plus `keep`, points left for others: a
        background call leaves the bottom of the bucket to live sync). Refused, with the wait it
        would take, when that exceeds `max_wait`."""
        cur = self.settled(now)
        # Never ask the bucket to hold more than it can: a margin near the capacity, or a call
        # estimated above it (a bucket smaller than the page was sized for), would wait forever;
        # such a call goes once the bucket is full and the store decides.
        wait = wait_seconds(min(cost + margin + keep, cur.capacity), cur.available, cur.restore_rate)
        if wait > max_wait:
            return Grant(cur, wait, granted=False)
        return Grant(replace(cur, available=cur.available - cost), wait, granted=True)

    def refund(self, points: float, now: float) -> BucketState:
        """Give back points reserved but not charged (actual < reserved, or not executed)."""
        cur = self.settled(now)
        return replace(cur, available=min(cur.capacity, cur.available + points))

    def observe(self, status: ThrottleStatus, now: float, *, waiting_others: float = 0.0) -> BucketState:
        """Adopt the server's view: its bucket size and rate, and what it had available minus
        what other callers have been granted but not yet sent. (The server's figure is half a
        round trip old, which makes the model a little pessimistic: the bucket then runs a few
        points fuller, which costs no throughput.)"""
        return BucketState(
            capacity=status.maximum_available,
            restore_rate=status.restore_rate,
            available=min(status.maximum_available, status.currently_available) - max(0.0, waiting_others),
            at=max(now, self.at),
        )


def wait_seconds(requested: float, available: float, restore_rate: float) -> float:
    """How long until a bucket holding `available` can pay `requested`: (requested - available) / rate."""
    return max(0.0, (requested - available) / restore_rate)


def settle_state(
    state: BucketState,
    now: float,
    *,
    reserved: float,
    charged: float | None,
    status: ThrottleStatus | None,
    waiting_others: float,
) -> BucketState:
    """The model after a call answered: refund what was reserved but not charged, then (when the
    response carried one) adopt the server's `throttleStatus`."""
    if status is not None:
        return state.observe(status, now, waiting_others=waiting_others)
    if charged is None:  # unknown (network fault): keep the charge, the safe side
        return state.settled(now)
    return state.refund(max(0.0, reserved - charged), now)


# --------------------------------------------------------------------------- cost estimate


def _int_value(node: ValueNode, variables: Mapping[str, Any]) -> int | None:
    if isinstance(node, IntValueNode):
        return int(node.value)
    if isinstance(node, VariableNode):
        v = variables.get(node.name.value)
        return v if isinstance(v, int) and not isinstance(v, bool) else None
    return None


def _list_len(node: ValueNode, variables: Mapping[str, Any]) -> int | None:
    if isinstance(node, ListValueNode):
        return len(node.values)
    if isinstance(node, VariableNode):
        v = variables.get(node.name.value)
        return len(v) if isinstance(v, list) else None
    return None


def _selection_cost(
    selection_set: SelectionSetNode | None,
    variables: Mapping[str, Any],
    fragments: Mapping[str, FragmentDefinitionNode],
) -> float:
    if selection_set is None:
        return 0.0
    total = 0.0
    for sel in selection_set.selections:
        if not is_included(sel, variables):
            continue
        if isinstance(sel, InlineFragmentNode):
            total += _selection_cost(sel.selection_set, variables, fragments)
        elif isinstance(sel, FragmentSpreadNode):  # costs what its fields cost where it is spread
            total += _selection_cost(fragments[sel.name.value].selection_set, variables, fragments)
        elif isinstance(sel, FieldNode):
            total += _field_cost(sel, variables, fragments)
    return total


def _node_selection(field: FieldNode) -> SelectionSetNode | None:
    """The selection applied to each item of a connection (`nodes {..}` or `edges { node {..} }`)."""
    for sel in field.selection_set.selections if field.selection_set else ():
        if isinstance(sel, FieldNode) and sel.name.value == "nodes":
            return sel.selection_set
        if isinstance(sel, FieldNode) and sel.name.value == "edges" and sel.selection_set:
            for inner in sel.selection_set.selections:
                if isinstance(inner, FieldNode) and inner.name.value == "node":
                    return inner.selection_set
    return None


def _field_cost(
    field: FieldNode, variables: Mapping[str, Any], fragments: Mapping[str, FragmentDefinitionNode]
) -> float:
    if field.selection_set is None:
        return 0.0  # scalar or enum
    args = {a.name.value: a.value for a in field.arguments or ()}
    page = None
    for name in ("first", "last"):
        if name in args:
            page = _int_value(args[name], variables)
            page = 250 if page is None else page  # unknown size: Shopify's maximum page
    if page is not None:
        return 2.0 + page * (1.0 + _selection_cost(_node_selection(field), variables, fragments))
    if "ids" in args:  # nodes(ids: [...]): one object per id
        n = _list_len(args["ids"], variables) or 1
        return n * (1.0 + _selection_cost(field.selection_set, variables, fragments))
    return 1.0 + _selection_cost(field.selection_set, variables, fragments)


def static_cost(op: Operation, variables: Mapping[str, Any] | None = None) -> float:
    """Shopify-style requested cost of `op` with these variables, computed from the document."""
    variables = variables or {}
    fragments = op.fragments
    root = op.definition.selection_set
    if op.kind == "mutation":  # 10 per mutation field, plus the objects its payload selects
        return sum(
            MUTATION_COST + _selection_cost(s.selection_set, variables, fragments)
            for s in root.selections
            if isinstance(s, FieldNode)
        )
    return max(1.0, _selection_cost(root, variables, fragments))


class CostEstimator:
    """Static estimate, corrected by the ratio the server reported for the same operation."""

    def __init__(self) -> None:
        self._ratio: dict[str, float] = {}

    def estimate(self, op: Operation, variables: Mapping[str, Any] | None = None) -> float:
        return math.ceil(static_cost(op, variables) * self._ratio.get(op.name, 1.0))

    def learn(self, op: Operation, variables: Mapping[str, Any] | None, requested: float) -> None:
        base = static_cost(op, variables)
        if base > 0 and requested > 0:
            self._ratio[op.name] = requested / base

    def largest_page(
        self,
        op: Operation,
        variables: Mapping[str, Any],
        wanted: int,
        *,
        limit: float = MAX_QUERY_COST,
        key: str = "first",
        make: Callable[[int], Any] | None = None,
    ) -> int:
        """The largest size n <= wanted whose estimate fits in `limit` (at least 1), where the
        variable `key` is n (or `make(n)`, e.g. the first n ids of a list)."""
        value = make or (lambda n: n)
        lo, hi = 1, max(1, wanted)
        if self.estimate(op, {**variables, key: value(hi)}) <= limit:
            return hi
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if self.estimate(op, {**variables, key: value(mid)}) <= limit:
                lo = mid
            else:
                hi = mid - 1
        return lo
