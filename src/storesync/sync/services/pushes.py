"""Coalesced level pushes (`domain/pushes.py`): the parent's levels queued per child level, and
each child's flush, which sends what waits for it in one `inventorySetQuantities`.

Producers queue and wake the child's flush job (`sync.push_levels`, one per child at a time) in
one transaction: a sale once applied (the parent's new level is known from its compare-and-set),
a fan-out (the parent's level read). (A child's own move is its stock policy's: `services/stock.py`;
a child whose own moves are reported, and a report's own writes, are set one compare-and-set
at a time by `sales.fan_out_to_children`, which keeps the stock accounts and sees failures.)
A level storesync does not write (`services/locations.py`) is dropped at the flush.
While one flush's call is in flight the next pushes
gather, so the calls per child follow what its bucket allows, not the sales: a child whose
bucket is empty defers its flush job (docs/decisions/0050) and its next call carries everything
that waited meanwhile.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime

from storesync.commerce.errors import UserInputError
from storesync.logs import get_logger
from storesync.sync.adapters.jobqueue import enqueue_jobs
from storesync.sync.adapters.postgres import Storage
from storesync.sync.domain.audit import AuditRecord
from storesync.sync.domain.inventory import (
    LAST_WRITE_HORIZON,
    SET_KEY_ATTEMPTS,
    StaleRetriesExhausted,
    set_key_for_attempt,
)
from storesync.sync.domain.model import LinkKind, WriteRecord
from storesync.sync.domain.network import MerchantNetwork
from storesync.sync.domain.ports import KeyAttemptFailed, StaleQuantity
from storesync.sync.domain.pushes import (
    MAX_QUANTITIES,
    FlushPlan,
    PendingPush,
    batch_set_key,
    plan_flush,
)
from storesync.sync.domain.routing import push_job
from storesync.sync.services.context import Runtime

log = get_logger("storesync.sync.pushes")

# A flush job sends at most this many calls, then leaves the rest to its next run (other jobs of
# the worker get their turn).
FLUSH_ROUNDS = 8


def _now() -> datetime:
    return datetime.now(UTC)


async def push_parent_levels(
    st: Storage,
    net: MerchantNetwork,
    levels: Mapping[tuple[str, str], int],
    cause: str,
    *,
    only: Collection[str] | None = None,
    known_at: datetime | None = None,
) -> None:
    """Remember the parent levels in `levels` ((parent item, parent location) -> the parent's
    level at `known_at`, default now), queue for every child (or `only` these) a push of each,
    and wake the children's flushes; one transaction. A push's target is left open: the
    parent's newest level the engine knows when the push is sent (a fan-out's read that raced a
    batched adjust cannot send the level from before it)."""
    queued = await _open_pushes(st, net, levels, cause, only)
    async with st.conn.transaction():
        await st.pushes.remember_parent_levels(net.parent.shop, levels, known_at=known_at)
        await _queue(st, net, queued)


async def push_remembered_levels(
    st: Storage,
    net: MerchantNetwork,
    keys: Collection[tuple[str, str]],
    cause: str,
    *,
    only: Collection[str] | None = None,
) -> None:
    """Queue for every child (or `only` these) a push of each parent level in `keys` ((parent
    item, parent location)) without reading or remembering it: each flush sends the parent's
    level as remembered then, read once when none is (`_flush_batch`)."""
    await _queue(st, net, await _open_pushes(st, net, keys, cause, only))


async def _open_pushes(
    st: Storage,
    net: MerchantNetwork,
    keys: Collection[tuple[str, str]],
    cause: str,
    only: Collection[str] | None,
) -> list[PendingPush]:
    """A push with its target left open per linked child (or `only` these) and parent level."""
    pushes: list[PendingPush] = []
    for parent_item, parent_location in sorted(keys):
        links = await st.links.links_for_parent_item(parent_item)
        for link in links:
            if link.kind is not LinkKind.VARIANT or link.child_inventory_item_id is None:
                continue
            if only is not None and link.child_shop not in only:
                continue
            child_location = net.child_location(link.child_shop, parent_location)
            if child_location is None:
                continue
            pushes.append(
                PendingPush(
                    link.child_shop,
                    link.child_inventory_item_id,
                    child_location,
                    parent_item,
                    parent_location,
                    None,
                    None,
                    None,
                    cause,
                )
            )
    return pushes


async def _queue(
    st: Storage, net: MerchantNetwork, pushes: Sequence[PendingPush], *, due_at: datetime | None = None
) -> None:
    if not pushes:
        return
    await st.pushes.queue(pushes, due_at=due_at)
    shops = sorted({p.shop for p in pushes})
    await enqueue_jobs(st.conn, [push_job(s, run_at=due_at) for s in shops], net.merchant_id)


async def flush(rt: Runtime, st: Storage, net: MerchantNetwork, shop: str) -> int:
    """Send what waits for one child, a call (of up to 250 quantities) at a time; returns how
    many levels were set. Pushes due later wake this job again then."""
    set_count = 0
    for _ in range(FLUSH_ROUNDS):
        pushes = await st.pushes.due(shop, limit=MAX_QUANTITIES)
        if not pushes:
            break
        set_count += await _flush_batch(rt, st, net, shop, pushes)
    next_due = await st.pushes.next_due(shop)
    if next_due is not None:
        await enqueue_jobs(st.conn, [push_job(shop, run_at=max(next_due, _now()))], net.merchant_id)
    return set_count


async def _flush_batch(
    rt: Runtime, st: Storage, net: MerchantNetwork, shop: str, pushes: Sequence[PendingPush]
) -> int:
    parent = net.parent.shop
    # The same rule as the one-write-per-item fan-out: a level whose location is deactivated, or
    # whose item is no longer stocked there, is not written (`services/locations.py`).
    inactive = await st.inactive.levels_among([(shop, p.item_id, p.location_id) for p in pushes])
    if inactive:
        skipped = [p for p in pushes if (shop, p.item_id, p.location_id) in inactive]
        log.info(
            "levels not written (location inactive, or item not stocked there)",
            shop=shop,
            levels={f"{i}@{loc}": why for (_, i, loc), why in inactive.items()},
        )
        await st.pushes.done(shop, skipped)
        pushes = [p for p in pushes if (shop, p.item_id, p.location_id) not in inactive]
        if not pushes:
            return 0
    open_keys = {(p.parent_item_id, p.parent_location_id) for p in pushes if p.target is None}
    parent_levels = await st.pushes.parent_levels(parent, open_keys)
    missing = sorted(open_keys - set(parent_levels))
    if missing:  # not known yet: read once, and remembered
        asked = _now()
        read = await rt.api(parent).read_levels(sorted({i for i, _ in missing}))
        found = {k: lvl.available for k, lvl in read.items() if k in open_keys}
        await st.pushes.remember_parent_levels(parent, found, known_at=asked)
        parent_levels.update(found)
    since = _now() - LAST_WRITE_HORIZON
    last = await st.pushes.last_writes(shop, [(p.item_id, p.location_id) for p in pushes], since)
    plan = plan_flush(pushes, parent_levels, last, {})
    if plan.unknown_target:
        log.warning(
            "parent does not stock the item there; push dropped",
            shop=shop,
            levels=[f"{p.parent_item_id}@{p.parent_location_id}" for p in plan.unknown_target],
        )
    await st.pushes.done(shop, [*plan.in_step, *plan.unknown_target])
    return await _send(rt, st, shop, plan, parent_levels)


async def _send(
    rt: Runtime,
    st: Storage,
    shop: str,
    plan: FlushPlan,
    parent_levels: Mapping[tuple[str, str], int],
    *,
    attempt: int = 0,
    stale_rounds: int = 0,
) -> int:
    """One call for the plan's sets; a stale quantity is read again and sent alone, its batch
    mates sent again without it; a quantity the store refuses outright is dropped (logged)."""
    if not plan.sets:
        return 0
    if stale_rounds > 3:  # the child keeps moving: its pushes wait for the job's retry
        raise StaleRetriesExhausted(f"{shop}: levels kept changing during {stale_rounds} batched sets")
    store = rt.api(shop)
    now = _now()
    # Recorded before the call: the echo may arrive before the answer.
    await st.writes.record_writes(
        [
            WriteRecord(shop, s.item_id, s.location_id, s.quantity, now, p.cause)
            for s, p in zip(plan.sets, plan.pushes, strict=True)
        ]
    )
    causes = [p.cause for p in plan.pushes]
    key = set_key_for_attempt(attempt, lambda n: batch_set_key(shop, plan.sets, causes, n))
    try:
        await store.set_levels(plan.sets, idempotency_key=key)
    except KeyAttemptFailed:
        if attempt >= SET_KEY_ATTEMPTS - 1:
            raise
        return await _send(rt, st, shop, plan, parent_levels, attempt=attempt + 1, stale_rounds=stale_rounds)
    except StaleQuantity as err:
        stale = set(err.stale) or set(range(len(plan.sets)))
        return await _after_stale(rt, st, shop, plan, parent_levels, stale, stale_rounds + 1)
    except UserInputError as err:
        bad = _refused(err, len(plan.sets))
        if not bad or (len(bad) == len(plan.sets) and len(plan.sets) > 1):
            raise
        log.warning("store refused levels; pushes dropped", shop=shop, error=str(err)[:300])
        await st.pushes.done(shop, [plan.pushes[i] for i in sorted(bad)])
        return await _send(rt, st, shop, _without(plan, bad), parent_levels, stale_rounds=stale_rounds)
    await st.pushes.done(shop, plan.pushes)
    await st.audit.record_many(
        [
            AuditRecord(
                shop=shop,
                object_type="inventory_level",
                object_id=f"{s.item_id}@{s.location_id}",
                action="inventory_set",
                before={"available": s.change_from},
                after={"available": s.quantity},
                cause=p.cause,
                at=now,
            )
            for s, p in zip(plan.sets, plan.pushes, strict=True)
        ]
    )
    return len(plan.sets)


async def _after_stale(
    rt: Runtime,
    st: Storage,
    shop: str,
    plan: FlushPlan,
    parent_levels: Mapping[tuple[str, str], int],
    stale: set[int],
    rounds: int,
) -> int:
    """Nothing of the call was applied. The batch mates go again at once; the stale ones are
    read and then sent on their own (those found in step need nothing)."""
    sent = await _send(rt, st, shop, _without(plan, stale), parent_levels, stale_rounds=rounds)
    stale_pushes = [plan.pushes[i] for i in sorted(stale)]
    read = await rt.api(shop).read_levels(sorted({p.item_id for p in stale_pushes}))
    levels = {k: lvl.available for k, lvl in read.items()}
    # A level the child does not have reads as absent: expected empty (the set creates it).
    fresh = {(p.item_id, p.location_id): levels.get((p.item_id, p.location_id), 0) for p in stale_pushes}
    again = plan_flush(
        [replace(p, change_from=None, seen_at=None) for p in stale_pushes], parent_levels, {}, fresh
    )
    await st.pushes.done(shop, again.in_step)
    return sent + await _send(rt, st, shop, again, parent_levels, stale_rounds=rounds)


def _without(plan: FlushPlan, drop: Collection[int]) -> FlushPlan:
    keep = [i for i in range(len(plan.sets)) if i not in drop]
    return replace(plan, sets=tuple(plan.sets[i] for i in keep), pushes=tuple(plan.pushes[i] for i in keep))


def _refused(err: UserInputError, n: int) -> set[int]:
    """The quantities a refused batch names (userError field ["input", "quantities", i, ...])."""
    found = set()
    for e in err.user_errors:
        f = list(e.field or ())
        if len(f) > 2 and f[1] == "quantities":
            try:
                i = int(f[2])
            except (TypeError, ValueError):
                continue
            if 0 <= i < n:
                found.add(i)
    return found
