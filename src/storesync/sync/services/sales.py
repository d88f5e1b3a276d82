"""Sales and stock levels: a child's order lines applied to the parent through the ledger, the
parent's level set in every child, a level webhook judged. The rules are `domain/inventory.py`
(the ledger's states, the last unit, fan-out targets) and `domain/conflicts.py`; this module
reads and writes the stores and storage through the ports.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from storesync.logs import get_logger
from storesync.sync.adapters.jobqueue import enqueue_jobs, job_spec, park
from storesync.sync.adapters.postgres import SerializedStorage, Storage, paused_among
from storesync.sync.domain.audit import AuditRecord
from storesync.sync.domain.conflicts import (
    LevelDecision,
    LevelReport,
    Version,
    classify_level_change,
    level_from_webhook,
    version_of_delivery,
)
from storesync.sync.domain.echoes import ECHO_WINDOW
from storesync.sync.domain.inventory import (
    COUNTER_SIGN,
    LAST_WRITE_HORIZON,
    RESTOCK_KINDS,
    SET_KEY_ATTEMPTS,
    EntryKind,
    EntryOutcome,
    EntryStatus,
    InventoryError,
    LedgerEntry,
    LedgerKey,
    Outcome,
    PushOutcome,
    PushResult,
    StaleRetriesExhausted,
    child_target,
    counter_key,
    oversold,
    plan_delta,
    restock_key,
    set_idempotency_key,
    set_key_for_attempt,
)
from storesync.sync.domain.model import InventoryLevel, LinkKind, LinkMap, WriteRecord
from storesync.sync.domain.network import MerchantNetwork
from storesync.sync.domain.orders import LineState, OrderEvent, SaleLine, order_state
from storesync.sync.domain.ports import (
    AppliedVersions,
    AuditSink,
    InventoryLedger,
    InventoryStore,
    KeyAttemptFailed,
    LinkRepository,
    StaleQuantity,
    StockAccounts,
    WriteRecords,
)
from storesync.sync.domain.routing import adjust_job, fan_out_job
from storesync.sync.services import pushes
from storesync.sync.services.context import Runtime

log = get_logger("storesync.sync.sales")

Clock = Callable[[], datetime]


def utcnow() -> datetime:
    return datetime.now(UTC)


# --------------------------------------------------------------------------- applying sales


@dataclass
class SaleContext:
    network: MerchantNetwork
    links: LinkMap  # the selling child's links
    ledger: InventoryLedger
    parent: InventoryStore
    writes: WriteRecords
    audit: AuditSink
    clock: Clock = field(default=utcnow)
    # Parent locations deactivated: nothing is applied there (the job waits, parked, for them).
    inactive_parent_locations: frozenset[str] = frozenset()
    # Coalesced sale deltas (`services/adjusts.py`): the parent whose flush applies the entries
    # claimed here (they are left pending for it); None: each is applied here, one at a time.
    pending_for: str | None = None


async def apply_order_event(ctx: SaleContext, event: OrderEvent, cause: str) -> list[EntryOutcome]:
    """Apply every sale, then every edit's removal and restock of the event, each exactly once
    (the keys: `domain/inventory.py`). Returns one outcome per entry; the caller fans out the
    parent items whose level changed."""
    if event.child_shop != ctx.links.child_shop:
        raise InventoryError(f"links of {ctx.links.child_shop} used for an order of {event.child_shop}")
    ctx.network.child(event.child_shop)
    state = order_state(await ctx.ledger.order_entries(event.child_shop, event.order_id))
    sold: dict[str, SaleLine] = {s.order_line_id: s for s in event.sales}
    planned: list[_Planned] = []
    if not event.before_tracking:
        for s in event.sales:
            where = _sale_place(ctx, event, s, state.get(s.order_line_id))
            planned.append(_planned(ctx, event, s, EntryKind.SALE, where, cause, units=s.quantity))
    for s in event.sales:
        if s.edit_removed and not event.before_tracking:
            where = _sale_place(ctx, event, s, state.get(s.order_line_id))
            planned.append(
                _planned(ctx, event, s, EntryKind.EDIT_REMOVAL, where, cause, units=s.edit_removed)
            )
    for r in event.restocks:
        s = sold[r.order_line_id]
        where = (
            _place(ctx, event.child_shop, r.child_location_id)
            if r.child_location_id
            else _sale_place(ctx, event, s, state.get(s.order_line_id))
        )
        planned.append(
            _planned(ctx, event, s, EntryKind.RESTOCK, where, cause, delta=r.quantity, ref=r.restock_id)
        )
    outcomes = []
    for p in planned:
        if p.entry is None:
            outcomes.append(EntryOutcome(p.key, p.reason or Outcome.UNLINKED))
            continue
        if p.entry.key.kind is EntryKind.RESTOCK and not event.before_tracking:
            await _check_restock(ctx, p.entry, sold[p.entry.key.order_line_id])
        outcomes.append(await apply_entry(ctx, p.entry, units=p.units))
    return outcomes


@dataclass(frozen=True)
class _Planned:
    key: LedgerKey
    entry: LedgerEntry | None  # None: not applied, for `reason`
    reason: Outcome | None = None
    units: int | None = None  # a counter's units (SALE, EDIT_REMOVAL)


# (parent location, child location) of a movement, or why it has none.
_Place = tuple[str, str] | Outcome


def _place(ctx: SaleContext, child_shop: str, child_location: str | None) -> _Place:
    if child_location is None:
        return Outcome.NO_LOCATION
    parent_location = ctx.network.parent_location(child_shop, child_location)
    if parent_location is None:
        return Outcome.NO_LOCATION
    if parent_location in ctx.inactive_parent_locations:
        return Outcome.LOCATION_INACTIVE
    return parent_location, child_location


def _sale_place(ctx: SaleContext, event: OrderEvent, line: SaleLine, known: LineState | None) -> _Place:
    """Where a line's stock was committed: as the order says, or as its sale was applied."""
    if line.child_location_id:
        return _place(ctx, event.child_shop, line.child_location_id)
    if known is not None and known.parent_location_id:
        if known.parent_location_id in ctx.inactive_parent_locations:
            return Outcome.LOCATION_INACTIVE
        child_location = known.child_location_id or ctx.network.child_location(
            event.child_shop, known.parent_location_id
        )
        if child_location:
            return known.parent_location_id, child_location
    return Outcome.NO_LOCATION


def _planned(
    ctx: SaleContext,
    event: OrderEvent,
    line: SaleLine,
    kind: EntryKind,
    where: _Place,
    cause: str,
    *,
    units: int | None = None,
    delta: int = 0,
    ref: str = "",
) -> _Planned:
    if units is not None:
        key = counter_key(event.child_shop, line.order_line_id, kind, units)
    else:
        key = restock_key(event.child_shop, line.order_line_id, ref)
    link = ctx.links.link_up(LinkKind.VARIANT, line.child_variant_id)
    if link is None or link.parent_inventory_item_id is None:
        return _Planned(key, None, Outcome.UNLINKED)
    if isinstance(where, Outcome):
        return _Planned(key, None, where)
    parent_location, child_location = where
    # A counter's requested delta is computed when its top-up is claimed; this one is its sign.
    requested = COUNTER_SIGN[kind] if units is not None else delta
    entry = LedgerEntry(
        key,
        event.order_id,
        link.parent_inventory_item_id,
        parent_location,
        requested,
        cause,
        child_item_id=link.child_inventory_item_id,
        child_location_id=child_location,
    )
    return _Planned(key, entry, units=units)


async def _check_restock(ctx: SaleContext, entry: LedgerEntry, sale: SaleLine) -> None:
    if await ctx.ledger.get(entry.key) is not None:
        return  # a duplicate: already checked when it was first claimed
    so_far = await ctx.ledger.restocked(entry.key.child_shop, entry.key.order_line_id)
    if so_far + entry.requested_delta > sale.quantity:
        raise InventoryError(
            f"{entry.key.child_shop} line {entry.key.order_line_id}: restocking {entry.requested_delta} "
            f"after {so_far} exceeds the {sale.quantity} sold"
        )


async def apply_entry(ctx: SaleContext, entry: LedgerEntry, *, units: int | None = None) -> EntryOutcome:
    """Claim the entry (a counter's top-up to `units`, when given) and apply it once; entries of
    the same parent level left unfinished by a crash are finished first."""
    for earlier in await ctx.ledger.unfinished(entry.parent_item_id, entry.parent_location_id):
        if earlier.key != entry.key:
            await _finish(ctx, earlier)
    if units is not None:
        claimed = await ctx.ledger.claim_top_up(entry, units)
        if claimed is None:  # every unit counted already
            return EntryOutcome(entry.key, Outcome.DUPLICATE, entry.parent_item_id, entry.parent_location_id)
        stored = claimed
    else:
        stored, _created = await ctx.ledger.claim(entry)
    if stored.status is EntryStatus.APPLIED:
        return _outcome(stored, Outcome.DUPLICATE)
    if ctx.pending_for is not None and stored.status is EntryStatus.CLAIMED:
        # The parent's flush plans and applies it with the other waiting entries; an entry
        # planned one at a time before (its own key may have landed) is finished below.
        stored = await ctx.ledger.mark_pending(stored.key, ctx.pending_for)
        if stored.status is EntryStatus.APPLIED:
            return _outcome(stored, Outcome.DUPLICATE)
    if stored.pending_parent is not None and stored.status is not EntryStatus.APPLIED:
        return _pending(stored)
    return await _finish(ctx, stored)


def _pending(e: LedgerEntry) -> EntryOutcome:
    """Left to the parent's batched adjust (whatever this job's setting: one entry is never
    applied both ways)."""
    return EntryOutcome(e.key, Outcome.PENDING, e.parent_item_id, e.parent_location_id)


async def _plan(ctx: SaleContext, e: LedgerEntry, replan_of: int | None) -> LedgerEntry:
    level = await ctx.parent.read_level(e.parent_item_id, e.parent_location_id)
    if level is None:
        raise InventoryError(f"{e.parent_item_id} is not stocked at {e.parent_location_id} in the parent")
    backlog = await ctx.ledger.backlog(e.parent_item_id, e.parent_location_id)
    applied, backlog_after = plan_delta(level.available, backlog, e.requested_delta)
    return await ctx.ledger.plan(
        e.key, applied, backlog_after, level.available + applied, replan_of=replan_of
    )


async def _finish(ctx: SaleContext, e: LedgerEntry, max_attempts: int = 4) -> EntryOutcome:
    """Plan if needed, then apply the plan with compare-and-set on the level it was planned from;
    the parent moving meanwhile (its own sale) means a new plan, so it never goes below 0."""
    if e.status is EntryStatus.CLAIMED:
        e = await _plan(ctx, e, None)
        if e.pending_parent is not None:  # left to the parent's batched adjust meanwhile
            return _pending(e)
    shop = ctx.network.parent.shop
    after: int | None = None
    for _attempt in range(max_attempts):
        if e.status is EntryStatus.APPLIED:
            return _outcome(e, Outcome.DUPLICATE)
        assert e.applied_delta is not None and e.expected_after is not None
        if e.applied_delta == 0:
            break
        await ctx.writes.record_write(
            WriteRecord(shop, e.parent_item_id, e.parent_location_id, e.expected_after, ctx.clock(), e.cause)
        )
        try:
            after = await ctx.parent.adjust_level(
                e.parent_item_id,
                e.parent_location_id,
                e.applied_delta,
                idempotency_key=e.idempotency_key,
                change_from=e.expected_after - e.applied_delta,
                reason="restock" if e.key.kind in RESTOCK_KINDS else "correction",
            )
            break
        except StaleQuantity:
            e = await _plan(ctx, e, e.plan_no)
        except KeyAttemptFailed:
            # Nothing applied; the next key is stored before it is sent.
            e = await ctx.ledger.next_key_attempt(e.key, e.key_attempt)
    else:
        raise StaleRetriesExhausted(
            f"{shop} {e.parent_item_id}@{e.parent_location_id}: level kept changing while applying {e.key}"
        )
    if await ctx.ledger.mark_applied(e.key, after):
        await ctx.audit.record(
            AuditRecord(
                shop=shop,
                object_type="inventory_level",
                object_id=f"{e.parent_item_id}@{e.parent_location_id}",
                action="inventory_adjust",
                before={"expected_before": e.expected_after - e.applied_delta},
                after={
                    "available": after if after is not None else e.expected_after,
                    "backlog": e.backlog_after,
                },
                cause=e.cause,
                at=ctx.clock(),
                detail=f"{e.key.kind} {e.key.child_shop} {e.key.order_line_id} requested {e.requested_delta:+d} "
                f"applied {e.applied_delta:+d}",
            )
        )
    return _outcome(replace(e, status=EntryStatus.APPLIED, quantity_after=after), Outcome.APPLIED)


def _outcome(e: LedgerEntry, outcome: Outcome) -> EntryOutcome:
    return EntryOutcome(
        e.key,
        outcome,
        e.parent_item_id,
        e.parent_location_id,
        e.applied_delta or 0,
        oversold(e),
        e.quantity_after,
    )


# --------------------------------------------------------------------------- pushing levels


async def _last_written(
    writes: WriteRecords, shop: str, item: str, location: str, clock: Clock
) -> int | None:
    recent = await writes.recent_writes(shop, item, location, clock() - LAST_WRITE_HORIZON, limit=1)
    return recent[0].quantity if recent else None


async def push_level(
    store: InventoryStore,
    writes: WriteRecords,
    audit: AuditSink,
    item: str,
    location: str,
    target: int,
    cause: str,
    *,
    max_attempts: int = 4,
    clock: Clock = utcnow,
    guess_from_last_write: bool = False,
    accounts: StockAccounts | None = None,
) -> PushOutcome:
    """Make one store's level `target` by compare-and-set, re-reading on a lost race.

    With `guess_from_last_write`, the first attempt skips the read and expects the level the
    engine's last write to that level left: a child only moves between our writes when it
    sells, so in a fan-out this saves one call per child; a wrong guess fails the
    compare-and-set (nothing is written) and the next attempt reads as usual.

    `accounts` (a child whose own moves are reported, `services/stock.py`): each write is
    recorded in the level's stock account before it is sent and settled after, so the account
    knows every move storesync made; an account is opened when the level is found in step."""
    if accounts is not None:
        await settle_pending_write(store, writes, accounts, item, location, clock)
    guess = await _last_written(writes, store.shop, item, location, clock) if guess_from_last_write else None
    current: int | None
    for attempt in range(1, max_attempts + 1):
        if attempt == 1 and guess is not None and guess != target:
            current = guess
        else:
            level = await store.read_level(item, location)
            current = level.available if level else None
            if current == target:
                if accounts is not None and current is not None:
                    await accounts.open(store.shop, item, location, current)
                return PushOutcome(store.shop, PushResult.UNCHANGED, item, location, current, target, attempt)
        # Record before writing: the echo may arrive before the mutation returns.
        await writes.record_write(WriteRecord(store.shop, item, location, target, clock(), cause))
        try:
            await _set_with_fresh_keys(store, item, location, target, current, cause, accounts)
        except StaleQuantity:
            continue
        await audit.record(
            AuditRecord(
                shop=store.shop,
                object_type="inventory_level",
                object_id=f"{item}@{location}",
                action="inventory_set",
                before={"available": current},
                after={"available": target},
                cause=cause,
                at=clock(),
            )
        )
        return PushOutcome(store.shop, PushResult.SET, item, location, current, target, attempt)
    raise StaleRetriesExhausted(
        f"{store.shop} {item}@{location}: level kept changing during {max_attempts} compare-and-set attempts"
    )


async def _set_with_fresh_keys(
    store: InventoryStore,
    item: str,
    location: str,
    target: int,
    current: int | None,
    cause: str,
    accounts: StockAccounts | None = None,
) -> None:
    """The compare-and-set, under a new key each time Shopify refuses one as spent; a stock
    account (if kept) records each write before it is sent and whether it landed."""
    for attempt in range(SET_KEY_ATTEMPTS):
        key = set_key_for_attempt(
            attempt, lambda n: set_idempotency_key(store.shop, item, location, current, target, cause, n)
        )
        if accounts is not None:
            await accounts.begin_write(store.shop, item, location, current, target, key)
        try:
            await store.set_level(item, location, target, change_from=current, idempotency_key=key)
        except (StaleQuantity, KeyAttemptFailed) as exc:
            if accounts is not None:  # nothing was applied
                await accounts.end_write(store.shop, item, location, key, landed=False)
            if isinstance(exc, StaleQuantity):
                raise
            if attempt == SET_KEY_ATTEMPTS - 1:
                raise StaleRetriesExhausted(
                    f"{store.shop} {item}@{location}: {SET_KEY_ATTEMPTS} idempotency keys in a row were "
                    "refused as spent"
                ) from None
            continue
        if accounts is not None:
            await accounts.end_write(store.shop, item, location, key, landed=True)
        return


async def settle_pending_write(
    store: InventoryStore,
    writes: WriteRecords,
    accounts: StockAccounts,
    item: str,
    location: str,
    clock: Clock = utcnow,
) -> None:
    """A write to this level whose answer was lost (a crash, a timeout) is sent again under the
    same key: Shopify replays it if it landed, applies it now if its compare-and-set still
    holds, or refuses it; either way the account then knows."""
    account = await accounts.get(store.shop, item, location)
    if account is None or account.pending is None:
        return
    p = account.pending
    await writes.record_write(WriteRecord(store.shop, item, location, p.to, clock(), "settle pending write"))
    try:
        await store.set_level(item, location, p.to, change_from=p.change_from, idempotency_key=p.key)
    except (StaleQuantity, KeyAttemptFailed):
        await accounts.end_write(store.shop, item, location, p.key, landed=False)
        return
    await accounts.end_write(store.shop, item, location, p.key, landed=True)


async def fan_out_level(
    network: MerchantNetwork,
    parent: InventoryStore,
    children: Mapping[str, InventoryStore],
    link_maps: Mapping[str, LinkMap],
    writes: WriteRecords,
    audit: AuditSink,
    parent_item: str,
    parent_location: str,
    cause: str,
    *,
    only: Sequence[str] | None = None,
    moved: Collection[str] = (),
    max_attempts: int = 4,
    clock: Clock = utcnow,
    accounts: StockAccounts | None = None,
    inactive: Mapping[tuple[str, str], str] | None = None,
) -> list[PushOutcome]:
    """Read the parent's current level (never the webhook's) and set every child to it.

    Each child's compare-and-set first expects what the engine last wrote there (see
    `push_level`), except the `moved` children, known to have changed since (the child whose
    sale started this fan-out): they are read first. A child location in `inactive` ((shop,
    location) -> why: deactivated, or the item no longer stocked there) is not written. The
    levels of children whose own moves are reported keep their stock `accounts`."""
    level = await parent.read_level(parent_item, parent_location)
    if level is None:
        raise InventoryError(f"{parent_item} is not stocked at {parent_location} in the parent")
    target = child_target(level.available)
    out = []
    for child in network.children:
        if only is not None and child.shop not in only:
            continue
        links = link_maps.get(child.shop)
        item = links.child_item(parent_item) if links else None
        loc = network.child_location(child.shop, parent_location)
        if item is None or loc is None:
            out.append(PushOutcome(child.shop, PushResult.UNMAPPED, item, loc))
            continue
        if inactive and (child.shop, loc) in inactive:
            out.append(PushOutcome(child.shop, PushResult.INACTIVE, item, loc))
            continue
        out.append(
            await push_level(
                children[child.shop],
                writes,
                audit,
                item,
                loc,
                target,
                cause,
                max_attempts=max_attempts,
                clock=clock,
                guess_from_last_write=child.shop not in moved,
                accounts=accounts if network.stock_policy(child.shop) == "report" else None,
            )
        )
    return out


# --------------------------------------------------------------------------- level webhooks


async def judge_level_delivery(
    *,
    shop: str,
    role: str,
    inventory_item_id: str,
    location_id: str,
    available: int,
    version: Version,
    versions: AppliedVersions,
    writes: WriteRecords,
) -> LevelDecision:
    """Classify an `inventory_levels/update` delivery and record its version (atomically: of two
    concurrent deliveries the older one is reported STALE). The version is advanced first: that
    one statement is the stale check (it refuses an older version), so a stale delivery reads
    nothing more, and a fresh one has only its write records left to read."""
    if not await versions.advance(shop, inventory_item_id, location_id, version.at, version.tiebreak):
        return LevelDecision.STALE
    recent = await writes.recent_writes(shop, inventory_item_id, location_id, version.at - ECHO_WINDOW)
    return classify_level_change(role=role, observed_quantity=available, version=version, writes=recent)


# Level webhooks judged at ingest (the web tier, in the transaction that records them: docs/
# decisions/0055). Only a delivery proved to report the engine's own write is finished there (its
# version advanced by the same statement as the worker's); any other is left to its job, which
# judges it as above, its version untouched until then.


@dataclass(frozen=True)
class LevelDelivery:
    """An `inventory_levels/update` delivery, as judging it needs it."""

    shop: str
    role: str  # parent | child
    report: LevelReport
    version: Version


def level_delivery(shop: str, role: str, payload: Mapping[str, Any]) -> LevelDelivery:
    """The delivery of a webhook job payload (`version_of_delivery`'s keys); ValueError when
    its body cannot be judged (its job then fails as it would have)."""
    return LevelDelivery(
        shop, role, level_from_webhook(payload.get("body") or {}), version_of_delivery(payload)
    )


class IngestVerdict(StrEnum):
    ECHO = "echo"  # the engine's own newest write: version advanced, nothing to do
    STALE = "stale"  # an echo older than the version applied: nothing to do
    UNLINKED = "unlinked"  # a child item linked to nothing: none of the engine's business
    WORKER = "worker"  # anything else: its job judges it (nothing was written here)


async def judge_level_deliveries_at_ingest(
    deliveries: Sequence[LevelDelivery],
    *,
    links: LinkRepository,
    versions: AppliedVersions,
    writes: WriteRecords,
) -> list[IngestVerdict]:
    """Judge a batch of level deliveries in three set-based statements (their links, their
    write records, the versions of the echoes): the same rules as `judge_level_delivery`
    (`classify_level_change`, the ADVANCE_VERSION guard), read in the other order so that only
    an echo's version is advanced. A delivery judged anything but ECHO keeps its version for
    its job: the worker's own advance is then the one stale check it gets, as before."""
    children = [(d.shop, d.report.inventory_item_id) for d in deliveries if d.role != "parent"]
    linked = await links.parent_items_of(children) if children else {}
    verdicts = [
        IngestVerdict.UNLINKED
        if d.role != "parent" and (d.shop, d.report.inventory_item_id) not in linked
        else IngestVerdict.WORKER
        for d in deliveries
    ]
    judged = [i for i, v in enumerate(verdicts) if v is IngestVerdict.WORKER]
    recent = await writes.recent_writes_of_levels(
        [
            (d.shop, d.report.inventory_item_id, d.report.location_id, d.version.at - ECHO_WINDOW)
            for d in (deliveries[i] for i in judged)
        ]
    )
    echoes = [
        i
        for i, found in zip(judged, recent, strict=True)
        if classify_level_change(
            role=deliveries[i].role,
            observed_quantity=deliveries[i].report.available,
            version=deliveries[i].version,
            writes=found,
        )
        is LevelDecision.ECHO
    ]
    if echoes:
        advanced = await versions.advance_many(
            [
                (
                    deliveries[i].shop,
                    deliveries[i].report.inventory_item_id,
                    deliveries[i].report.location_id,
                    deliveries[i].version.at,
                    deliveries[i].version.tiebreak,
                )
                for i in echoes
            ]
        )
        for i, fresh in zip(echoes, advanced, strict=True):
            verdicts[i] = IngestVerdict.ECHO if fresh else IngestVerdict.STALE
    return verdicts


# --------------------------------------------------------------------------- the jobs' use cases


async def apply_sale(
    rt: Runtime, st: Storage, net: MerchantNetwork, child_shop: str, event: OrderEvent, cause: str
) -> list[str]:
    """Apply one sale job's order lines to the parent (each once), then set every child to the
    parent's new level of each item that moved (the seller read first: its level moved).
    Returns the deactivated parent locations (or those no longer stocking the item) that
    movements of the event are waiting for: the caller parks the job until they are back."""
    links = await st.links.child_links(child_shop, variants=[s.child_variant_id for s in event.sales])
    items = {links.parent_item_for_child_variant(s.child_variant_id) for s in event.sales}
    parent = net.parent.shop
    inactive = await st.inactive.among([(parent, ""), *((parent, i) for i in items if i)])
    coalesce = rt.sync_settings.coalesce_writes
    sctx = SaleContext(
        net,
        links,
        st.ledger,
        rt.api(parent),
        st.writes,
        st.audit,
        inactive_parent_locations=frozenset(loc for (_, loc) in inactive),
        pending_for=parent if coalesce else None,
    )
    outcomes = await apply_order_event(sctx, event, cause)
    if any(o.outcome is Outcome.PENDING for o in outcomes):
        # The parent's flush applies them with every other waiting sale, then queues the
        # parent's new levels for the children (`services/adjusts.py`).
        await enqueue_jobs(st.conn, [adjust_job(parent)], net.merchant_id)
    for o in outcomes:
        if o.outcome in (Outcome.UNLINKED, Outcome.NO_LOCATION, Outcome.LOCATION_INACTIVE):
            log.warning(
                "sale line not applied", child=child_shop, line=o.key.order_line_id, outcome=str(o.outcome)
            )
        elif o.oversold:
            log.warning("oversold", child=child_shop, item=o.parent_item_id, units=o.oversold)
    moved = sorted(
        {
            (o.parent_item_id, o.parent_location_id)
            for o in outcomes
            if o.parent_item_id and o.parent_location_id and o.outcome is not Outcome.PENDING
        }
    )
    # The parent's level after the last entry applied to each level (its compare-and-set held).
    after = {
        (o.parent_item_id, o.parent_location_id): o.quantity_after
        for o in outcomes
        if o.parent_item_id
        and o.parent_location_id
        and o.outcome is Outcome.APPLIED
        and o.quantity_after is not None
    }
    for item, loc in moved:
        await fan_out_to_children(
            rt, st, net, item, loc, cause, None, moved={child_shop}, level=after.get((item, loc))
        )
    if any(o.outcome is Outcome.LOCATION_INACTIVE for o in outcomes):
        return sorted({loc for (_, loc) in inactive})
    return []


async def fan_out(
    rt: Runtime,
    st: Storage,
    net: MerchantNetwork,
    parent_item: str,
    parent_location: str,
    cause: str,
    only: Sequence[str] | None,
    *,
    parent_unchanged: bool = False,
) -> None:
    """Set every child (or `only` these) to the parent's current level of one item.
    `parent_unchanged` (a child's own move set back): with coalesced writes the children's
    pushes are queued without reading the parent; each flush sends the parent's level as the
    engine remembers it (its adjusts' results and its reads: `sync_parent_levels`), read once
    when none is. The parent's own moves come with level webhooks of their own, whose fan-outs
    read it. Children whose own moves are reported still read it (their stock accounts)."""
    if parent_unchanged and rt.sync_settings.coalesce_writes:
        targets = [c.shop for c in net.children if only is None or c.shop in only]
        queued = [s for s in targets if net.stock_policy(s) != "report"]
        if queued:
            await pushes.push_remembered_levels(st, net, [(parent_item, parent_location)], cause, only=queued)
        only = [s for s in targets if s not in queued]
        if not only:
            return
    level = await rt.api(net.parent.shop).read_level(parent_item, parent_location)
    if level is None:  # e.g. a new variant the parent does not stock at this location
        log.info(
            "parent does not stock the item there; nothing to fan out",
            item=parent_item,
            location=parent_location,
        )
        return
    # The level just read is handed on: read again, it would cost the parent a second call.
    await fan_out_to_children(rt, st, net, parent_item, parent_location, cause, only, level=level.available)


class _LevelReadOnce:
    """The parent store for one fan-out: its level is read once for all children (not once per
    child, on the parent's bucket and on the measured path of every sale)."""

    def __init__(self, api: Any) -> None:
        self.api = api
        self.shop = api.shop
        self._reads: dict[tuple[str, str], asyncio.Future[InventoryLevel | None]] = {}

    async def read_level(self, inventory_item_id: str, location_id: str) -> InventoryLevel | None:
        key = (inventory_item_id, location_id)
        if key not in self._reads:
            self._reads[key] = asyncio.ensure_future(self.api.read_level(inventory_item_id, location_id))
        return await asyncio.shield(self._reads[key])

    def __getattr__(self, name: str) -> Any:
        return getattr(self.api, name)


async def _child_maps_for_item(st: Storage, net: MerchantNetwork, parent_item: str) -> dict[str, LinkMap]:
    links = await st.links.links_for_parent_item(parent_item)
    return {c.shop: LinkMap(c.shop, [lk for lk in links if lk.child_shop == c.shop]) for c in net.children}


async def fan_out_to_children(
    rt: Runtime,
    st: Storage,
    net: MerchantNetwork,
    item: str,
    location: str,
    cause: str,
    only: Sequence[str] | None,
    moved: Collection[str] = (),
    level: int | None = None,
    one_by_one: bool = False,
) -> None:
    """Set every (or `only` these) active children to the parent's level; a paused child gets
    its own parked fan-out job so the others are not held back. `moved`: children whose level
    changed since the engine's last write (the seller), read before their compare-and-set.
    `level`: the parent's level, when known (read otherwise).

    With coalesced writes (`STORESYNC_SYNC_COALESCE_WRITES`, the default) the level is queued
    for each child's flush instead (`services/pushes.py`), and a paused child's flush job waits;
    except for children whose own moves are reported (each write of theirs is kept in the level's
    stock account, around its own compare-and-set) and when `one_by_one` (a report saga's step:
    a failure must reach it, not a flush job later)."""
    targets = [c.shop for c in net.children if only is None or c.shop in only]
    if rt.sync_settings.coalesce_writes and not one_by_one:
        queued = [s for s in targets if net.stock_policy(s) != "report"]
        targets = [s for s in targets if s not in queued]
        if queued:
            known_at = None  # a level handed in is known now
            if level is None:
                known_at = utcnow()
                read = await rt.api(net.parent.shop).read_level(item, location)
                if read is None:
                    log.info(
                        "parent does not stock the item there; nothing to push", item=item, location=location
                    )
                    return
                level = read.available
            await pushes.push_parent_levels(
                st, net, {(item, location): level}, cause, only=queued, known_at=known_at
            )
        if not targets:
            return
    paused = await paused_among(st.conn, targets)
    for shop in paused:
        spec = job_spec(fan_out_job(item, location, cause, only=shop), net.merchant_id)
        await park(st.conn, spec, shop=shop, delay_s=rt.sync_settings.pause_recheck_s)
    active = [s for s in targets if s not in paused]
    if not active:
        return
    # One `fan_out_level` per child, all at once: each reads the parent's level and sets its
    # child; the store calls overlap, the few statements take turns on the job's connection.
    maps = await _child_maps_for_item(st, net, item)
    inactive = await st.inactive.among([(shop, maps[shop].child_item(item) or "") for shop in active])
    shared = SerializedStorage(st)
    parent = _LevelReadOnce(rt.api(net.parent.shop))
    per_child = await asyncio.gather(
        *(
            fan_out_level(
                net,
                parent,
                {shop: rt.api(shop)},
                maps,
                shared.writes,
                shared.audit,
                item,
                location,
                cause,
                only=[shop],
                moved=moved,
                accounts=shared.accounts,
                inactive=inactive,
            )
            for shop in active
        ),
        return_exceptions=True,
    )
    failures = [r for r in per_child if isinstance(r, BaseException)]
    outcomes = [o for r in per_child if not isinstance(r, BaseException) for o in r]
    log.info(
        "level fanned out",
        item=item,
        location=location,
        results={o.shop: f"{o.result}:{o.before}->{o.after}" for o in outcomes},
    )
    if failures:
        raise failures[0]  # the job retries; children already set are unchanged on the rerun
