"""Sagas: multi-step syncs with a durable step log, defined here, run by `services/sagas.py`.

A saga is an ordered list of steps (e.g. create a product in a child, add it to collections,
set its inventory). For each step the executor first asks the action what would undo it
(`prepare`, which may read current state), records that in the log, and only then runs it.
A permanent failure runs the recorded compensations in reverse; a retryable one leaves the saga
where it is for the next attempt. After a crash the saga is picked up from its log: forward if
it was running (a step recorded as started is run again, so actions must be idempotent),
backward if it was compensating (a started step is undone whether or not it got to run, so undo
must tolerate "nothing to undo"). Completion and compensation are audited.

This module holds the types, the errors and the sagas' definitions (their steps and ids); the
log is a port (`ports.StepLog`), the actions are services (`services/copies.py`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class SagaState(StrEnum):
    RUNNING = "running"
    COMPENSATING = "compensating"
    COMPLETED = "completed"
    COMPENSATED = "compensated"
    STUCK = "stuck"  # a compensation failed permanently: needs an operator


class StepStatus(StrEnum):
    PENDING = "pending"
    STARTED = "started"  # undo recorded; the action may or may not have run
    DONE = "done"
    COMPENSATED = "compensated"


class PermanentStepError(Exception):
    """A step that can never succeed (bad input, rejected by the store): compensate."""


class StepRefused(PermanentStepError):
    """The store refused the step outright, so it did nothing: permanent, and there is nothing
    of it to undo (its recorded undo is dropped before the compensation runs)."""


class HandleConflict(StepRefused):
    """A copy's create found the handle taken by a product of the child's own, and the merchant's
    rule is to report it: nothing written, the conflict recorded for the merchant."""


class HandleNotYetFree(Exception):
    """A copy's create found the handle held by storesync's copy of another parent product (one
    deleted, or renamed, in the parent, whose job has not run yet: webhooks of two products come
    in any order). Not a conflict: that job frees the handle, so the step is retried."""


HANDLE_CONFLICT = HandleConflict.__name__  # how a saga's error names it (`handle_conflicted`)


def handle_conflicted(saga: SagaRecord) -> bool:
    """Whether a compensated copy saga only found a handle conflict (reported, not a failure)."""
    return saga.state is SagaState.COMPENSATED and f": {HANDLE_CONFLICT}: " in (saga.error or "")


class SagaStuck(Exception):
    """A compensation failed permanently; the saga needs an operator."""


class SagaConflict(Exception):
    """Another executor moved the saga meanwhile (a duplicate job): retry later. Jobs that run a
    saga should use the saga id as their lock key so this does not happen."""


@dataclass(frozen=True)
class StepSpec:
    name: str
    action: str
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class StepRecord:
    index: int
    name: str
    action: str
    params: dict[str, Any]
    status: StepStatus = StepStatus.PENDING
    undo: dict[str, Any] | None = None
    result: dict[str, Any] | None = None


@dataclass
class SagaRecord:
    saga_id: str
    kind: str
    shop: str
    cause: str
    state: SagaState
    steps: list[StepRecord]
    error: str | None = None

    @property
    def finished(self) -> bool:
        return self.state in (SagaState.COMPLETED, SagaState.COMPENSATED, SagaState.STUCK)


@dataclass(frozen=True)
class StepContext:
    saga_id: str
    cause: str
    results: Mapping[str, dict[str, Any]]  # step name -> result, for the steps done so far
    # The step was started by an earlier run (which crashed or failed after recording its undo):
    # its action may have reached the store already.
    resumed: bool = False
    # What the step recorded would undo it (`StepAction.prepare`), e.g. when it began.
    undo: Mapping[str, Any] | None = None


def default_is_permanent(exc: BaseException) -> bool:
    return isinstance(exc, PermanentStepError)


# --------------------------------------------------------------------------- the copy saga

COPY_PRODUCT = "copy_product"  # the saga kind (sync_sagas.kind)


def copy_product_steps(
    parent_product_id: str, child_shop: str, *, stock_in_create: bool = False
) -> list[StepSpec]:
    """The copy saga's steps. `stock_in_create` (what the engine starts now): the create, whose
    productSet writes the variants' stock (`inventoryQuantities`), collection memberships and
    synced metafields with the product (its undo, deleting the product, removes all of it); then
    the media (nothing to do without any; a media failure is reported, never the saga's); then
    the publishing on the child's sales channels (a refusal compensates, or is kept and
    reported, as the merchant's `on_copy_step_failure` says). Sagas logged before have the
    create alone, or three steps: create, collections, levels (each level written by
    compare-and-set, its previous value recorded for the undo)."""
    params = {"parent_product_id": parent_product_id, "child_shop": child_shop}
    if stock_in_create:
        return [
            StepSpec("create", "create_child_product", {**params, "stock_in_create": True}),
            StepSpec("media", "copy_child_media", params),
            StepSpec("publish", "publish_child_product", params),
        ]
    return [
        StepSpec("create", "create_child_product", params),
        StepSpec("collections", "set_child_collections", params),
        StepSpec("levels", "set_child_levels", params),
    ]


def copy_saga_id(known: Mapping[str, str], child_shop: str, parent_product_id: str) -> str:
    """Deterministic, so a rerun after a crash resumes the same saga; a compensated (or stuck)
    one is retried under the next number. `known`: the copy sagas' states by id."""
    base = f"copy:{child_shop}:{parent_product_id}"
    saga_id, n = base, 1
    while known.get(saga_id) in (SagaState.COMPENSATED, SagaState.STUCK):
        n += 1
        saga_id = f"{base}:{n}"
    return saga_id


# --------------------------------------------------------------------------- a child's move reported

REPORT_CHILD_MOVE = "report_child_move"  # the saga kind (policy report: services/stock.py)
REPORT_SAGA_PREFIX = "report:"


def report_saga_id(child_shop: str, child_item: str, child_location: str, number: int) -> str:
    """The `number`th own move of one child level reported (the number its stock account gave)."""
    return f"{REPORT_SAGA_PREFIX}{child_shop}:{child_item}@{child_location}:{number}"


def report_move_steps(
    *,
    child_shop: str,
    child_item: str,
    child_location: str,
    parent_item: str,
    parent_location: str,
    number: int,
    delta: int,
) -> list[StepSpec]:
    """A child's own move of `delta` made a parent write that storesync fans out: the move is
    taken into the child's stock account (once: its number), applied to the parent as a ledger
    entry (undo: the reverse entry), then the parent's level is set in every child. If those
    writes fail for good, the parent write is compensated, and the reporting child is then set
    back to the parent's level (`services.stock`)."""
    level = {"child_shop": child_shop, "child_item": child_item, "child_location": child_location}
    parent = {"parent_item": parent_item, "parent_location": parent_location}
    return [
        StepSpec("account", "take_child_move", {**level, "number": number, "delta": delta}),
        StepSpec("parent", "report_to_parent", {**level, **parent, "number": number, "delta": delta}),
        StepSpec("children", "fan_out_report", {**parent, "child_shop": child_shop}),
    ]
