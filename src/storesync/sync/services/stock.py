"""A child's own stock moves: what moved a child level that no order of the child and no write of
storesync's explains (a delivery received, a count, a fix by hand), handled by the child's
policy (`[[merchants.children]] stock_changes`, `network.stock_policy`):

- revert (the default): the child follows the parent; its level is set back to the parent's.
- report: the move becomes a delta on the parent, which then reaches every sibling. What is a
  move of the child's own is kept exactly by the level's stock account (`ports.StockAccount`):
  `expected` follows every order movement the ledger claims there (`PgLedger.claim`), every
  write storesync makes there (`sales.push_level`, a write whose answer was lost settled by
  sending it again under its key) and every own move already taken; the level minus
  `expected` is the move still to report. An order whose webhook comes later than the check
  shows first as a move and is then taken back by the next check (the account is exact; the
  parent is right once the order is applied).

A report is a saga (`domain/saga.report_move_steps`, durable step log, `services/sagas.py`):
take the move into the account, write the parent (a MANUAL ledger entry), set every child to
the parent's new level. When those writes fail for good (a permanent store error, or a store
error still failing on the job's last attempt), the parent write is compensated (the reverse
entry), the reporting child is set back to the parent's level and the audit says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from storesync.logs import get_logger
from storesync.sync.adapters.postgres import Storage
from storesync.sync.domain.audit import AuditRecord
from storesync.sync.domain.inventory import EntryStatus, LedgerEntry, child_target, manual_key
from storesync.sync.domain.model import LinkMap
from storesync.sync.domain.network import MerchantNetwork
from storesync.sync.domain.ports import StepAction
from storesync.sync.domain.saga import (
    REPORT_CHILD_MOVE,
    SagaRecord,
    SagaState,
    StepContext,
    report_move_steps,
    report_saga_id,
)
from storesync.sync.services.context import Runtime
from storesync.sync.services.failures import undoes_copy
from storesync.sync.services.sagas import SagaExecutor
from storesync.sync.services.sales import (
    SaleContext,
    apply_entry,
    fan_out_to_children,
    push_level,
    settle_pending_write,
)

log = get_logger("storesync.sync.stock")


@dataclass(frozen=True)
class ChildLevelCheck:
    """What a check of one child level found and did."""

    child_shop: str
    child_item: str
    child_location: str
    policy: str
    level: int | None = None  # the child's level read (None: not synced there)
    move: int = 0  # the own move found (policy report)
    saga: SagaRecord | None = None  # the report, if one ran

    def describe(self) -> str:
        where = f"{self.child_shop}: {self.child_item}@{self.child_location}"
        if self.policy == "revert":
            return f"{where}: set back to the parent's level (stock_changes = revert)"
        if self.saga is None:
            return f"{where}: nothing of its own to report"
        state = "reported to the parent" if self.saga.state is SagaState.COMPLETED else str(self.saga.state)
        return f"{where}: own move of {self.move:+d} {state}"


async def check_child_level(
    rt: Runtime,
    st: Storage,
    net: MerchantNetwork,
    child_shop: str,
    child_item: str,
    child_location: str,
    cause: str,
    *,
    final_attempt: bool = False,
) -> ChildLevelCheck:
    """A child level moved and no write of ours explains it: handle it by the child's policy.
    Run under the parent item's lock (`inventory:<parent item>`), like the sales of the item."""
    policy = net.stock_policy(child_shop)
    links = await st.links.child_links(child_shop, items=[child_item])
    parent_item = links.parent_item(child_item)
    parent_location = net.parent_location(child_shop, child_location)
    if parent_item is None or parent_location is None:
        return ChildLevelCheck(child_shop, child_item, child_location, policy)
    if policy == "revert":
        await fan_out_to_children(
            rt, st, net, parent_item, parent_location, cause, [child_shop], moved={child_shop}
        )
        return ChildLevelCheck(child_shop, child_item, child_location, policy)
    api = rt.api(child_shop)
    account = await st.accounts.get(child_shop, child_item, child_location)
    if account is not None:  # a report a crash left unfinished goes first
        for number in (account.reports, account.reports + 1):
            saga = await st.steps.load(report_saga_id(child_shop, child_item, child_location, number))
            if saga is not None and not saga.finished:
                await _run_report(rt, st, net, saga.saga_id, None, cause, final_attempt=final_attempt)
    await settle_pending_write(api, st.writes, st.accounts, child_item, child_location)
    level = await api.read_level(child_item, child_location)
    if level is None:
        return ChildLevelCheck(child_shop, child_item, child_location, policy)
    account = await st.accounts.get(child_shop, child_item, child_location)
    parent_level = await rt.api(net.parent.shop).read_level(parent_item, parent_location)
    if parent_level is None:
        return ChildLevelCheck(child_shop, child_item, child_location, policy, level.available)
    if account is None:
        # The level was in step with the parent before this move (storesync kept it so).
        account = await st.accounts.open(
            child_shop, child_item, child_location, child_target(parent_level.available)
        )
    move = level.available - account.expected
    if move == 0:
        if level.available != child_target(parent_level.available):
            # Nothing of its own: the parent moved and this child was not set yet (a fan-out
            # lost or still waiting): it follows the parent, like any child.
            await fan_out_to_children(
                rt, st, net, parent_item, parent_location, cause, [child_shop], moved={child_shop}
            )
        return ChildLevelCheck(child_shop, child_item, child_location, policy, level.available)
    number = account.reports + 1
    steps = report_move_steps(
        child_shop=child_shop,
        child_item=child_item,
        child_location=child_location,
        parent_item=parent_item,
        parent_location=parent_location,
        number=number,
        delta=move,
    )
    saga = await _run_report(
        rt,
        st,
        net,
        report_saga_id(child_shop, child_item, child_location, number),
        steps,
        cause,
        final_attempt=final_attempt,
    )
    return ChildLevelCheck(child_shop, child_item, child_location, policy, level.available, move, saga)


async def _run_report(
    rt: Runtime,
    st: Storage,
    net: MerchantNetwork,
    saga_id: str,
    steps: list[Any] | None,
    cause: str,
    *,
    final_attempt: bool,
) -> SagaRecord:
    """Run (or, without steps, resume) one report saga; compensated, the reporting child is set
    back to the parent's level and the others to the parent's too, and the audit says why."""
    executor = SagaExecutor(
        st.steps,
        report_actions(rt, st, net),
        st.audit,
        # The same judgement as a copy's: a permanent failure, or a store still failing on the
        # job's last attempt, compensates; a paused store or our own database does not.
        is_permanent=lambda exc: undoes_copy(exc, final_attempt=final_attempt),
    )
    if steps is not None:
        child_shop = steps[0].params["child_shop"]
        saga = await executor.start(saga_id, REPORT_CHILD_MOVE, child_shop, cause, steps)
    else:
        saga = await executor.run(saga_id)
    if saga.state is SagaState.COMPENSATED:
        await _after_compensation(rt, st, net, saga)
    return saga


async def _after_compensation(rt: Runtime, st: Storage, net: MerchantNetwork, saga: SagaRecord) -> None:
    params = saga.steps[1].params
    child, item, loc = params["child_shop"], params["child_item"], params["child_location"]
    parent_level = await rt.api(net.parent.shop).read_level(params["parent_item"], params["parent_location"])
    target = child_target(parent_level.available) if parent_level else None
    reverted = None
    if target is not None:
        out = await push_level(
            rt.api(child),
            st.writes,
            st.audit,
            item,
            loc,
            target,
            f"{saga.cause}:compensated",
            accounts=st.accounts,
        )
        reverted = out.after
        try:  # the siblings a step may have set already follow the parent back, where they can
            await fan_out_to_children(
                rt,
                st,
                net,
                params["parent_item"],
                params["parent_location"],
                f"{saga.cause}:compensated",
                None,
            )
        except Exception as exc:  # the failure that compensated the report: reconciliation retries
            log.warning("siblings not set back after a compensated report", saga=saga.saga_id, error=str(exc))
    await st.audit.record(
        AuditRecord(
            shop=child,
            object_type="inventory_level",
            object_id=f"{item}@{loc}",
            action="stock_report_compensated",
            before={"own_move": params["delta"]},
            after={"available": reverted},
            cause=saga.cause,
            detail=f"the parent write was taken back and the child set back to the parent's level: {saga.error}",
        )
    )
    log.warning("child stock report compensated", saga=saga.saga_id, error=saga.error)


# --------------------------------------------------------------------------- the report's steps


class _TakeChildMove:
    def __init__(self, st: Storage) -> None:
        self.st = st

    async def prepare(self, params: dict[str, Any], ctx: StepContext) -> dict[str, Any] | None:
        return None  # a move taken stays taken: compensation sets the child back instead

    async def run(self, params: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
        taken = await self.st.accounts.take_move(
            params["child_shop"],
            params["child_item"],
            params["child_location"],
            params["number"],
            params["delta"],
        )
        return {"taken": taken}

    async def undo(self, undo: dict[str, Any], ctx: StepContext) -> None:
        return None


class _ReportToParent:
    def __init__(self, rt: Runtime, st: Storage, net: MerchantNetwork) -> None:
        self.rt, self.st, self.net = rt, st, net

    def _ctx(self, child_shop: str) -> SaleContext:
        return SaleContext(
            self.net,
            LinkMap(child_shop),
            self.st.ledger,
            self.rt.api(self.net.parent.shop),
            self.st.writes,
            self.st.audit,
        )

    async def _apply(self, p: dict[str, Any], delta: int, cause: str, *, undo: bool) -> dict[str, Any]:
        key = manual_key(p["child_shop"], p["child_item"], p["child_location"], p["number"], undo=undo)
        entry = LedgerEntry(
            key,
            report_saga_id(p["child_shop"], p["child_item"], p["child_location"], p["number"]),
            p["parent_item"],
            p["parent_location"],
            delta,
            cause,
            child_item_id=p["child_item"],
            child_location_id=p["child_location"],
        )
        out = await apply_entry(self._ctx(p["child_shop"]), entry)
        return {"applied": out.applied_delta, "after": out.quantity_after}

    async def prepare(self, params: dict[str, Any], ctx: StepContext) -> dict[str, Any] | None:
        return dict(params)

    async def run(self, params: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
        return await self._apply(params, params["delta"], ctx.cause, undo=False)

    async def undo(self, undo: dict[str, Any], ctx: StepContext) -> None:
        forward = await self.st.ledger.get(
            manual_key(undo["child_shop"], undo["child_item"], undo["child_location"], undo["number"])
        )
        if forward is None:
            return  # the step never got to write
        if forward.status is not EntryStatus.APPLIED:  # a crash mid-write: finish it, then reverse it
            await apply_entry(self._ctx(undo["child_shop"]), forward)
        # The reverse request: the parent's level minus its oversold backlog is back where it was.
        await self._apply(undo, -undo["delta"], f"{ctx.cause}:undo", undo=True)


class _FanOutReport:
    def __init__(self, rt: Runtime, st: Storage, net: MerchantNetwork) -> None:
        self.rt, self.st, self.net = rt, st, net

    async def prepare(self, params: dict[str, Any], ctx: StepContext) -> dict[str, Any] | None:
        return None  # the children follow the parent back after the parent step's undo

    async def run(self, params: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
        await fan_out_to_children(
            self.rt,
            self.st,
            self.net,
            params["parent_item"],
            params["parent_location"],
            ctx.cause,
            None,
            moved={params["child_shop"]},
            one_by_one=True,  # a sibling that fails for good compensates the report
        )
        return {}

    async def undo(self, undo: dict[str, Any], ctx: StepContext) -> None:
        return None


def report_actions(rt: Runtime, st: Storage, net: MerchantNetwork) -> dict[str, StepAction]:
    return {
        "take_child_move": _TakeChildMove(st),
        "report_to_parent": _ReportToParent(rt, st, net),
        "fan_out_report": _FanOutReport(rt, st, net),
    }


async def resume_report(
    rt: Runtime, st: Storage, net: MerchantNetwork, saga_id: str, cause: str, *, final_attempt: bool
) -> SagaRecord:
    """Resume a report saga a crash left unfinished (at worker start)."""
    return await _run_report(rt, st, net, saga_id, None, cause, final_attempt=final_attempt)
