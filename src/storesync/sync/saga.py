"""Multi-step syncs as sagas with a durable step log.

A saga is an ordered list of steps (e.g. create a product in a child, add it to collections,
set its inventory). For each step the executor first asks the action what would undo it
(`prepare`, which may read current state), records that in the log, and only then runs it.
A permanent failure runs the recorded compensations in reverse; a retryable one leaves the saga
where it is for the next attempt. After a crash, `run(saga_id)` picks the saga up from its log:
forward if it was running (a step recorded as started is run again, so actions must be
idempotent), backward if it was compensating (a started step is undone whether or not it got
to run, so undo must tolerate "nothing to undo"). Completion and compensation are audited.

The executor only knows the `StepLog` and `StepAction` Protocols: in memory for unit tests
(`memory.MemoryStepLog`), Postgres in production (`store_pg.PgStepLog`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol, runtime_checkable

from storesync.sync.audit import AuditRecord
from storesync.sync.ports import AuditSink


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


@runtime_checkable
class StepLog(Protocol):
    async def create(
        self, saga_id: str, kind: str, shop: str, cause: str, steps: Sequence[StepSpec]
    ) -> SagaRecord:
        """Create the saga, or return the existing one with that id (idempotent)."""
        ...

    async def load(self, saga_id: str) -> SagaRecord | None: ...

    async def step_started(self, saga_id: str, index: int, undo: dict[str, Any] | None) -> bool:
        """PENDING -> STARTED with its undo; False if the step was not pending (another executor)."""
        ...

    async def step_done(self, saga_id: str, index: int, result: dict[str, Any]) -> None: ...

    async def step_refused(self, saga_id: str, index: int) -> None:
        """STARTED -> PENDING without its undo: the step did nothing (`StepRefused`)."""
        ...

    async def step_compensated(self, saga_id: str, index: int) -> None: ...

    async def set_state(self, saga_id: str, state: SagaState, error: str | None = None) -> None: ...

    async def unfinished(self, limit: int = 100) -> list[str]:
        """Ids of sagas left running or compensating (to resume after a restart), oldest first."""
        ...


@dataclass(frozen=True)
class StepContext:
    saga_id: str
    cause: str
    results: Mapping[str, dict[str, Any]]  # step name -> result, for the steps done so far
    # The step was started by an earlier run (which crashed or failed after recording its undo):
    # its action may have reached the store already.
    resumed: bool = False


class StepAction(Protocol):
    async def prepare(self, params: dict[str, Any], ctx: StepContext) -> dict[str, Any] | None:
        """What undoes this step, decided before it runs (None: nothing to undo)."""
        ...

    async def run(self, params: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
        """Do the step; idempotent (it runs again after a crash)."""
        ...

    async def undo(self, undo: dict[str, Any], ctx: StepContext) -> None:
        """Undo the step; idempotent and fine when the step never ran."""
        ...


def default_is_permanent(exc: BaseException) -> bool:
    return isinstance(exc, PermanentStepError)


class SagaExecutor:
    def __init__(
        self,
        log: StepLog,
        actions: Mapping[str, StepAction],
        audit: AuditSink | None = None,
        *,
        is_permanent: Callable[[BaseException], bool] = default_is_permanent,
    ) -> None:
        self.log = log
        self.actions = actions
        self.audit = audit
        self.is_permanent = is_permanent

    async def start(
        self, saga_id: str, kind: str, shop: str, cause: str, steps: Sequence[StepSpec]
    ) -> SagaRecord:
        """Create (or find) the saga and drive it to an end state; see `run`."""
        unknown = [s.action for s in steps if s.action not in self.actions]
        if unknown:
            raise ValueError(f"saga {kind}: no action registered for {unknown}")
        if len({s.name for s in steps}) != len(steps):
            raise ValueError(f"saga {kind}: step names must be unique")
        saga = await self.log.create(saga_id, kind, shop, cause, steps)
        return await self.run(saga_id, saga)

    async def run(self, saga_id: str, saga: SagaRecord | None = None) -> SagaRecord:
        """Continue a saga from its log (`saga`: the record just read from it, if the caller has
        it). Returns it COMPLETED or COMPENSATED; a retryable error propagates (the saga stays
        resumable); a failed compensation raises SagaStuck.

        The record returned is the one kept up to date while the steps ran, each change of it
        written to the log before it was made: no read of the log at the end."""
        if saga is None:
            saga = await self.log.load(saga_id)
        if saga is None:
            raise KeyError(f"no saga {saga_id!r}")
        if saga.state is SagaState.RUNNING:
            failure = await self._forward(saga)
            if failure is None:
                await self.log.set_state(saga_id, SagaState.COMPLETED)
                saga.state = SagaState.COMPLETED
                await self._audit(saga, "saga_completed", SagaState.COMPLETED)
                return saga
            await self.log.set_state(saga_id, SagaState.COMPENSATING, failure)
            saga.state, saga.error = SagaState.COMPENSATING, failure
        if saga.state is SagaState.COMPENSATING:
            await self._backward(saga)
            await self.log.set_state(saga_id, SagaState.COMPENSATED, saga.error)
            saga.state = SagaState.COMPENSATED
            await self._audit(saga, "saga_compensated", SagaState.COMPENSATED)
        return saga

    def _ctx(self, saga: SagaRecord, *, resumed: bool = False) -> StepContext:
        return StepContext(
            saga.saga_id,
            saga.cause,
            {s.name: s.result for s in saga.steps if s.status is StepStatus.DONE and s.result is not None},
            resumed,
        )

    async def _forward(self, saga: SagaRecord) -> str | None:
        """Run the remaining steps; the error text of a permanent failure, or None when all ran."""
        for step in saga.steps:
            if step.status is StepStatus.DONE:
                continue
            action = self.actions[step.action]
            resumed = step.status is StepStatus.STARTED
            try:
                if step.status is StepStatus.PENDING:
                    step.undo = await action.prepare(step.params, self._ctx(saga))
                    if not await self.log.step_started(saga.saga_id, step.index, step.undo):
                        raise SagaConflict(
                            f"saga {saga.saga_id} step {step.index} was started by another executor"
                        )
                    step.status = StepStatus.STARTED
                result = await action.run(step.params, self._ctx(saga, resumed=resumed))
            except SagaConflict:
                raise
            except Exception as exc:
                if self.is_permanent(exc):
                    if isinstance(exc, StepRefused):
                        await self.log.step_refused(saga.saga_id, step.index)
                        step.status, step.undo = StepStatus.PENDING, None
                    return f"step {step.index} {step.name}: {type(exc).__name__}: {exc}"
                raise
            await self.log.step_done(saga.saga_id, step.index, result)
            step.status, step.result = StepStatus.DONE, result
        return None

    async def _backward(self, saga: SagaRecord) -> None:
        for step in reversed(saga.steps):
            if step.status not in (StepStatus.STARTED, StepStatus.DONE):
                continue
            if step.undo is not None:
                try:
                    await self.actions[step.action].undo(step.undo, self._ctx(saga))
                except Exception as exc:
                    if self.is_permanent(exc):
                        error = f"compensating step {step.index} {step.name}: {type(exc).__name__}: {exc}"
                        await self.log.set_state(saga.saga_id, SagaState.STUCK, error)
                        await self._audit(saga, "saga_stuck", SagaState.STUCK, error)
                        raise SagaStuck(error) from exc
                    raise
            await self.log.step_compensated(saga.saga_id, step.index)
            step.status = StepStatus.COMPENSATED

    async def _audit(self, saga: SagaRecord, action: str, state: SagaState, error: str | None = None) -> None:
        if self.audit is None:
            return
        await self.audit.record(
            AuditRecord(
                shop=saga.shop,
                object_type="saga",
                object_id=saga.saga_id,
                action=action,
                before={"kind": saga.kind},
                after={"state": state, "steps": [s.name for s in saga.steps]},
                cause=saga.cause,
                detail=error or saga.error or "",
            )
        )

    async def resume_all(self, limit: int = 100) -> tuple[list[SagaRecord], list[tuple[str, Exception]]]:
        """Resume every unfinished saga (at worker start-up). One saga's error does not stop the
        rest: it is returned with its id for the caller to log and retry."""
        done, failed = [], []
        for saga_id in await self.log.unfinished(limit):
            try:
                done.append(await self.run(saga_id))
            except Exception as exc:
                failed.append((saga_id, exc))
        return done, failed
