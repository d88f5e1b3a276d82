"""The saga executor: drives a saga (`domain/saga.py`) through its durable step log
(`ports.StepLog`), forward, and backward on a permanent failure."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from storesync.sync.domain.audit import AuditRecord
from storesync.sync.domain.ports import AuditSink, StepAction, StepLog
from storesync.sync.domain.saga import (
    SagaConflict,
    SagaRecord,
    SagaState,
    SagaStuck,
    StepContext,
    StepRefused,
    StepSpec,
    StepStatus,
    default_is_permanent,
)


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

    def _ctx(
        self, saga: SagaRecord, *, resumed: bool = False, undo: dict[str, Any] | None = None
    ) -> StepContext:
        return StepContext(
            saga.saga_id,
            saga.cause,
            {s.name: s.result for s in saga.steps if s.status is StepStatus.DONE and s.result is not None},
            resumed,
            undo,
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
                result = await action.run(step.params, self._ctx(saga, resumed=resumed, undo=step.undo))
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
