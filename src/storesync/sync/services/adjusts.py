"""Coalesced sale deltas (`domain/adjusts.py`): the parent's flush, which sends the ledger
entries its children's sale jobs left pending in one `inventoryAdjustQuantities` per batch, then
queues the parent's new levels for the children (`services/pushes.py`).

One flush per parent at a time (`sync.adjust_parent`, singleton and locked per parent), so its
batches are planned one after the other, each from the levels the one before left. A batch still
in flight (a crash, a lost answer, a job deferred for its bucket) is sent again, unchanged and
under the same key, before anything new is planned: every entry lands once.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from storesync.commerce.errors import IdempotencyKeyReuseError, UserInputError
from storesync.logs import get_logger
from storesync.sync.adapters.jobqueue import enqueue_jobs
from storesync.sync.adapters.postgres import Storage
from storesync.sync.domain.adjusts import (
    MAX_CHANGES,
    AdjustBatch,
    LevelChange,
    LevelKey,
    batch_changes,
    batch_reason,
    leaned_on_the_level,
    level_of,
    levels_after,
    plan_batch,
)
from storesync.sync.domain.audit import AuditRecord
from storesync.sync.domain.inventory import LedgerEntry, StaleRetriesExhausted
from storesync.sync.domain.model import WriteRecord
from storesync.sync.domain.network import MerchantNetwork
from storesync.sync.domain.ports import KeyAttemptFailed, StaleQuantity
from storesync.sync.domain.routing import adjust_job
from storesync.sync.services import pushes, sales
from storesync.sync.services.context import Runtime

log = get_logger("storesync.sync.adjusts")

# A flush sends at most this many batches, then leaves the rest to its next run (other jobs of
# the worker get their turn).
FLUSH_ROUNDS = 8
# Keys in a row Shopify may refuse as spent (IDEMPOTENCY_PREVIOUS_ATTEMPT_FAILED) before the job
# retries later.
KEY_ATTEMPTS = 3


def _now() -> datetime:
    return datetime.now(UTC)


async def flush(rt: Runtime, st: Storage, net: MerchantNetwork) -> int:
    """Send what waits for the parent: first the batches in flight, then new ones of up to 250
    entries. Returns how many entries were applied."""
    parent = net.parent.shop
    applied = 0
    for batch in await st.adjusts.in_flight(parent):
        applied += await _send(rt, st, net, batch)
    for _ in range(FLUSH_ROUNDS):
        waiting = await st.adjusts.pending(parent, limit=MAX_CHANGES)
        if not waiting:
            return applied
        planned = await _plan(rt, st, net, waiting)
        if planned is not None:
            applied += await _send(rt, st, net, planned)
    if await st.adjusts.pending(parent, limit=1):
        await enqueue_jobs(st.conn, [adjust_job(parent)], net.merchant_id)
    return applied


async def _plan(
    rt: Runtime, st: Storage, net: MerchantNetwork, waiting: Sequence[LedgerEntry]
) -> AdjustBatch | None:
    """Plan the waiting entries from the parent's levels as last known (its own adjusts'
    results, its reads: the compare-and-set checks them) and store the batch."""
    parent = net.parent.shop
    keys = {level_of(e) for e in waiting}
    levels = await st.pushes.parent_levels(parent, keys)
    read: set[LevelKey] = set()
    if keys - set(levels):
        fetched = await _read(rt, st, parent, keys - set(levels))
        levels.update(fetched)
        read |= set(fetched)
    unstocked = [e for e in waiting if level_of(e) not in levels]
    if unstocked:
        # The parent does not stock the item there: this path cannot apply them; left to the
        # one-at-a-time path, which reports it on the item's next sale or reconciliation.
        log.error(
            "parent does not stock the item at the location; entries left unapplied",
            parent=parent,
            entries=[str(e.key) for e in unstocked],
        )
        await st.adjusts.release(unstocked)
        waiting = [e for e in waiting if level_of(e) in levels]
        if not waiting:
            return None
    backlogs = await st.ledger.backlogs(keys)
    planned = plan_batch(waiting, levels, backlogs)
    unsure = leaned_on_the_level(planned) - read
    if unsure:  # the last unit, a backlog paid back: planned from the level read now
        levels.update(await _read(rt, st, parent, unsure))
        planned = plan_batch(waiting, levels, backlogs)
    return await st.adjusts.create(parent, planned)


async def _read(rt: Runtime, st: Storage, parent: str, keys: set[LevelKey]) -> dict[LevelKey, int]:
    asked = _now()
    found = await rt.api(parent).read_levels(sorted({item for item, _ in keys}))
    levels = {k: lvl.available for k, lvl in found.items() if k in keys}
    await st.pushes.remember_parent_levels(parent, levels, known_at=asked)
    return levels


async def _send(rt: Runtime, st: Storage, net: MerchantNetwork, batch: AdjustBatch) -> int:
    """One call for the batch (none when its entries move no level), under its stored key; then
    the entries applied and the new levels queued for the children."""
    parent = net.parent.shop
    changes = batch_changes(batch.entries)
    if changes:
        now = _now()
        # Recorded before the call: the parent's level webhooks may arrive before the answer.
        await st.writes.record_writes(
            [
                WriteRecord(parent, c.item_id, c.location_id, c.change_from + c.delta, now, _cause(batch))
                for c in changes
            ]
        )
        for _ in range(KEY_ATTEMPTS):
            try:
                await rt.api(parent).adjust_levels(
                    changes, idempotency_key=batch.idempotency_key, reason=batch_reason(batch.entries)
                )
                break
            except KeyAttemptFailed:
                # That attempt failed inside Shopify (nothing applied) and spent the key: the
                # same batch under the next key, stored before it is sent.
                batch = await st.adjusts.next_attempt(batch)
            except StaleQuantity as err:
                # Nothing applied: the entries wait again, planned from the levels read now.
                stale = {(changes[i].item_id, changes[i].location_id) for i in err.stale} or {
                    (c.item_id, c.location_id) for c in changes
                }
                log.info("parent level moved; batch planned again", parent=parent, levels=len(stale))
                await st.adjusts.void(batch)
                await _read(rt, st, parent, stale)
                return 0
            except IdempotencyKeyReuseError:
                raise  # the key used with other changes: a bug to look at, never retried blindly
            except UserInputError as err:
                refused = _refused_levels(err, changes)
                if not refused:
                    raise
                released = [e for e in batch.entries if level_of(e) in refused]
                log.error(
                    "parent refused levels of a batch; their entries left unapplied",
                    parent=parent,
                    error=str(err)[:300],
                    entries=[str(e.key) for e in released],
                )
                await st.adjusts.void(batch, released=released)
                return 0
        else:
            raise StaleRetriesExhausted(
                f"{parent}: {KEY_ATTEMPTS} idempotency keys in a row were refused as spent"
            )
    await _applied(rt, st, net, batch)
    return len(batch.entries)


async def _applied(rt: Runtime, st: Storage, net: MerchantNetwork, batch: AdjustBatch) -> None:
    parent = net.parent.shop
    after = {k: level for k, (level, _) in levels_after(batch.entries).items()}
    # The answer came: stamped now, a fan-out read sent during the call (maybe from before the
    # adjust) cannot bring back the level before it.
    now = _now()
    cause = _cause(batch)
    report = [c.shop for c in net.children if net.stock_policy(c.shop) == "report"]
    async with st.conn.transaction():
        await st.adjusts.applied(batch)
        await st.audit.record_many(
            [
                AuditRecord(
                    shop=parent,
                    object_type="inventory_level",
                    object_id=f"{e.parent_item_id}@{e.parent_location_id}",
                    action="inventory_adjust",
                    before={"expected_before": (e.expected_after or 0) - (e.applied_delta or 0)},
                    after={"available": e.expected_after, "backlog": e.backlog_after},
                    cause=e.cause,
                    at=now,
                    detail=f"{e.key.kind} {e.key.child_shop} {e.key.order_line_id} requested "
                    f"{e.requested_delta:+d} applied {e.applied_delta or 0:+d} (adjust batch {batch.id})",
                )
                for e in batch.entries
            ]
        )
        queued = [c.shop for c in net.children if c.shop not in report]
        if queued:
            await pushes.push_parent_levels(st, net, after, cause, only=queued, known_at=now)
        else:
            await st.pushes.remember_parent_levels(parent, after, known_at=now)
    for e in batch.entries:
        if e.applied_delta != e.requested_delta and e.requested_delta < 0:
            log.warning(
                "oversold",
                child=e.key.child_shop,
                item=e.parent_item_id,
                units=(e.applied_delta or 0) - e.requested_delta,
            )
    if report:  # their writes keep stock accounts: one compare-and-set at a time
        sellers = {e.key.child_shop for e in batch.entries}
        for (item, location), level in sorted(after.items()):
            await sales.fan_out_to_children(
                rt, st, net, item, location, cause, report, moved=sellers, level=level
            )


def _cause(batch: AdjustBatch) -> str:
    return f"adjust-batch:{batch.id}"


def _refused_levels(err: UserInputError, changes: Sequence[LevelChange]) -> set[LevelKey]:
    """The levels a refused batch names (userError field ["input", "changes", i, ...])."""
    found: set[LevelKey] = set()
    for e in getattr(err, "user_errors", ()):
        f = list(e.field or ())
        if len(f) > 2 and f[1] == "changes":
            try:
                i = int(f[2])
            except (TypeError, ValueError):
                continue
            if 0 <= i < len(changes):
                c = changes[i]
                found.add((c.item_id, c.location_id))
    return found
