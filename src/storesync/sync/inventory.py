"""Inventory: child sales flow to the parent as deltas, the parent's level flows to children.

Sales. Every child order line becomes a ledger entry keyed by (child shop, order line id, kind,
ref) - kind "sale", or "restock" with ref = the refund line id - and a deterministic
`@idempotent` key derived from that key. The entry moves CLAIMED -> PLANNED -> APPLIED:

1. claim: insert the entry; a duplicate delivery finds the stored one (APPLIED: nothing to do).
2. plan: read the parent's level, decide the delta actually applied (see "the last unit"),
   and store that plan. Only the first planner's plan is kept; everyone else uses it.
3. execute: record the expected resulting level (echo suppression), then
   `inventoryAdjustQuantities @idempotent(key)` with the PLANNED delta and
   `changeFromQuantity` = the level it was planned from, then mark APPLIED. A crash anywhere
   re-runs step 3 with the same key and delta: Shopify replays the key, so the delta lands once.
   If the parent moved meanwhile (its own sale), the compare-and-set fails, the entry is
   re-planned from the new level under a new plan number (and so a new key), and applied. Before planning a new entry for an item+location, unfinished
   plans for it are executed first so the level read in step 2 is never ambiguous.
   If Shopify says the key's first attempt failed (IDEMPOTENCY_PREVIOUS_ATTEMPT_FAILED: nothing
   was applied, the key is spent), the entry's key attempt number is raised and stored, then
   the same plan is sent under the next key: a replay after a crash reads the stored number and
   sends the key of the attempt that may have landed.

The last unit. Shopify lets `available` go negative. storesync keeps the parent at 0 and
records what could not be taken as an oversold backlog per parent item+location: with level L,
backlog D and a delta d, net = L - D + d, the new level is max(net, min(L, 0)) and the backlog
becomes new level - net. When two children sell the last unit at once the first sale takes it
(parent 0), the second is applied as 0 with backlog 1 (reported: the merchant owes one order),
and a later restock first pays the backlog back. Because L - D always equals the initial level
plus the sum of deltas and one of L, D is 0, the final parent level does not depend on the order
or duplication of deliveries. This needs the sale jobs of one parent item to run one at a time
(queue lock_key `inventory:<parent item gid>`), as the issue requires.

Fan-out. A parent level change is pushed to every child as an absolute `inventorySetQuantities`
with `changeFromQuantity` = the child level just read: on CHANGE_FROM_QUANTITY_STALE re-read and
retry, at most `max_attempts` times, then a retryable error. Children show max(parent, 0).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, Protocol, runtime_checkable

from storesync.sync.audit import AuditRecord
from storesync.sync.model import LinkMap, gid
from storesync.sync.network import MerchantNetwork
from storesync.sync.ports import (
    AuditSink,
    InventoryStore,
    KeyAttemptFailed,
    StaleQuantity,
    WriteRecord,
    WriteRecords,
)

Clock = Callable[[], datetime]


def utcnow() -> datetime:
    return datetime.now(UTC)


class EntryKind(StrEnum):
    SALE = "sale"
    RESTOCK = "restock"


class EntryStatus(StrEnum):
    CLAIMED = "claimed"
    PLANNED = "planned"
    APPLIED = "applied"


class InventoryError(Exception):
    """Bad input about inventory (the message says what); not retried."""


class StaleRetriesExhausted(Exception):
    """A compare-and-set kept losing; retry the job later."""


@dataclass(frozen=True)
class LedgerKey:
    child_shop: str
    order_line_id: str
    kind: EntryKind
    ref: str = ""  # restocks: the refund line id (a line may be restocked in several refunds)

    @property
    def idempotency_key(self) -> str:
        raw = "\x1f".join(("ledger", self.child_shop, self.order_line_id, self.kind, self.ref))
        return "storesync-" + hashlib.sha256(raw.encode()).hexdigest()[:40]


@dataclass(frozen=True)
class LedgerEntry:
    key: LedgerKey
    order_id: str
    parent_item_id: str
    parent_location_id: str
    requested_delta: int  # -quantity for a sale, +quantity for a restock
    cause: str
    status: EntryStatus = EntryStatus.CLAIMED
    applied_delta: int | None = None
    backlog_after: int | None = None
    expected_after: int | None = None
    quantity_after: int | None = None
    plan_no: int = 0  # bumped each time a lost compare-and-set forces a new plan
    key_attempt: int = 0  # bumped each time Shopify refuses the key as spent (its attempt failed)

    @property
    def idempotency_key(self) -> str:
        """The `@idempotent` key of this plan: the entry's key, plus the plan number once re-planned
        (a new plan is a different request and must not replay the stale one), plus the attempt
        number once a failed attempt spent the key."""
        key = self.key.idempotency_key
        if self.plan_no:
            key += f"-p{self.plan_no}"
        return key + (f"-a{self.key_attempt}" if self.key_attempt else "")


@runtime_checkable
class InventoryLedger(Protocol):
    async def claim(self, entry: LedgerEntry) -> tuple[LedgerEntry, bool]:
        """Insert the entry unless its key exists; (stored entry, whether this call inserted)."""
        ...

    async def plan(
        self,
        key: LedgerKey,
        applied_delta: int,
        backlog_after: int,
        expected_after: int,
        *,
        replan_of: int | None = None,
    ) -> LedgerEntry:
        """Store a plan on a CLAIMED entry, or (replan_of = the stale plan's number) replace a
        PLANNED entry's plan whose compare-and-set lost. If another caller got there first,
        return the stored entry unchanged."""
        ...

    async def mark_applied(self, key: LedgerKey, quantity_after: int | None) -> bool:
        """PLANNED -> APPLIED and the item's backlog := backlog_after, atomically.
        False if it was already applied (another attempt finished it)."""
        ...

    async def next_key_attempt(self, key: LedgerKey, spent: int) -> LedgerEntry:
        """Raise a PLANNED entry's key attempt from `spent` (its key was refused as spent);
        another caller having raised it already, the stored entry as it is."""
        ...

    async def get(self, key: LedgerKey) -> LedgerEntry | None: ...

    async def unfinished(self, parent_item_id: str, parent_location_id: str) -> list[LedgerEntry]:
        """CLAIMED or PLANNED entries of one parent item+location, oldest first."""
        ...

    async def backlog(self, parent_item_id: str, parent_location_id: str) -> int: ...

    async def restocked(self, child_shop: str, order_line_id: str) -> int:
        """Sum of restock quantities recorded for an order line (any status)."""
        ...


# --------------------------------------------------------------------------- pure rules


def plan_delta(level: int, backlog: int, delta: int) -> tuple[int, int]:
    """(delta to apply to the parent, backlog after) for a requested delta. See module doc."""
    if backlog < 0:
        raise ValueError("backlog cannot be negative")
    net = level - backlog + delta
    new_level = max(net, min(level, 0))
    return new_level - level, new_level - net


def child_target(parent_available: int) -> int:
    """The level a child shows for a parent level: never negative."""
    return max(parent_available, 0)


def set_idempotency_key(
    shop: str, item: str, location: str, change_from: int | None, quantity: int, cause: str, attempt: int = 0
) -> str:
    """The key of one compare-and-set; `attempt` > 0 after Shopify refused the key as spent (an
    absolute set from a read level needs no stored attempt: resending it is harmless)."""
    raw = "\x1f".join(("set", shop, item, location, str(change_from), str(quantity), cause))
    if attempt:
        raw += f"\x1fattempt {attempt}"
    return "storesync-" + hashlib.sha256(raw.encode()).hexdigest()[:40]


# --------------------------------------------------------------------------- order events


@dataclass(frozen=True)
class SaleLine:
    order_line_id: str
    child_variant_id: str
    quantity: int
    child_product_id: str | None = None  # finds a copy whose variants are not linked yet


@dataclass(frozen=True)
class RestockLine:
    order_line_id: str
    refund_line_id: str
    quantity: int


@dataclass(frozen=True)
class OrderEvent:
    """What one order webhook says about stock: the lines sold and the lines restocked.
    Every order topic carries the lines, so a restock delivered before its sale still
    applies the sale first."""

    child_shop: str
    order_id: str
    sales: tuple[SaleLine, ...]
    restocks: tuple[RestockLine, ...] = ()
    child_location_id: str | None = None
    skipped: tuple[str, ...] = ()  # lines without a variant (custom items): not inventory


_RESTOCK_TYPES = {"cancel", "return", "legacy_restock"}


def _sale_line(line: Mapping[str, Any], skipped: list[str]) -> SaleLine | None:
    line_id = gid("LineItem", line.get("id"))
    if line.get("variant_id") in (None, ""):
        skipped.append(line_id)
        return None
    qty = line.get("quantity")
    if not isinstance(qty, int) or qty <= 0:
        raise InventoryError(f"line {line_id}: quantity must be a positive integer, got {qty!r}")
    product = line.get("product_id")
    return SaleLine(
        line_id,
        gid("ProductVariant", line["variant_id"]),
        qty,
        gid("Product", product) if product not in (None, "") else None,
    )


def _restocks(refund: Mapping[str, Any], lines: dict[str, SaleLine], skipped: list[str]) -> list[RestockLine]:
    out = []
    for rl in refund.get("refund_line_items") or []:
        restock = rl.get("restock_type") in _RESTOCK_TYPES or rl.get("restock") is True
        if not restock:
            continue
        line_id = gid("LineItem", rl.get("line_item_id") or (rl.get("line_item") or {}).get("id"))
        if line_id not in lines and rl.get("line_item"):
            sale = _sale_line(rl["line_item"], skipped)
            if sale:
                lines[line_id] = sale
        if line_id not in lines:
            continue  # a custom line: nothing was taken from stock
        qty = rl.get("quantity")
        if not isinstance(qty, int) or qty <= 0:
            raise InventoryError(f"refund line {rl.get('id')!r}: quantity must be a positive integer")
        out.append(RestockLine(line_id, gid("RefundLineItem", rl.get("id")), qty))
    return out


def order_event_from_webhook(child_shop: str, topic: str, body: Mapping[str, Any]) -> OrderEvent:
    """Parse an `orders/create|updated|cancelled|paid` or `refunds/create` body (REST JSON)."""
    skipped: list[str] = []
    lines: dict[str, SaleLine] = {}
    if topic == "refunds/create":
        order_id = gid("Order", body.get("order_id"))
        refunds = [body]
    elif topic.startswith("orders/"):
        order_id = gid("Order", body.get("id"))
        for line in body.get("line_items") or []:
            sale = _sale_line(line, skipped)
            if sale:
                lines[sale.order_line_id] = sale
        refunds = list(body.get("refunds") or [])
    else:
        raise InventoryError(f"topic {topic!r} carries no order lines")
    restocks: list[RestockLine] = []
    for refund in refunds:
        restocks.extend(_restocks(refund, lines, skipped))
    loc = body.get("location_id")
    return OrderEvent(
        child_shop=child_shop,
        order_id=order_id,
        sales=tuple(lines.values()),
        restocks=tuple(restocks),
        child_location_id=gid("Location", loc) if loc else None,
        skipped=tuple(skipped),
    )


# --------------------------------------------------------------------------- applying sales


class Outcome(StrEnum):
    APPLIED = "applied"
    DUPLICATE = "duplicate"  # already applied by an earlier delivery
    UNLINKED = "unlinked"  # the child variant is linked to no parent item: reported, not guessed
    NO_LOCATION = "no_location"  # the child maps no parent location


@dataclass(frozen=True)
class EntryOutcome:
    key: LedgerKey
    outcome: Outcome
    parent_item_id: str | None = None
    parent_location_id: str | None = None
    applied_delta: int = 0
    oversold: int = 0  # units of this entry the parent did not have (backlog grew by this)
    quantity_after: int | None = None


@dataclass
class SaleContext:
    network: MerchantNetwork
    links: LinkMap  # the selling child's links
    ledger: InventoryLedger
    parent: InventoryStore
    writes: WriteRecords
    audit: AuditSink
    clock: Clock = field(default=utcnow)


async def apply_order_event(ctx: SaleContext, event: OrderEvent, cause: str) -> list[EntryOutcome]:
    """Apply every sale then every restock of the event, each exactly once. Returns one
    outcome per line; the caller fans out the parent items whose level changed."""
    if event.child_shop != ctx.links.child_shop:
        raise InventoryError(f"links of {ctx.links.child_shop} used for an order of {event.child_shop}")
    ctx.network.child(event.child_shop)
    parent_location = ctx.network.sale_location(event.child_shop, event.child_location_id)
    sold: dict[str, SaleLine] = {s.order_line_id: s for s in event.sales}
    entries: list[tuple[LedgerKey, LedgerEntry | None, Outcome | None]] = []
    for s in event.sales:
        key = LedgerKey(event.child_shop, s.order_line_id, EntryKind.SALE)
        entries.append(
            (key, *_entry(ctx, event, key, s.child_variant_id, -s.quantity, parent_location, cause))
        )
    for r in event.restocks:
        key = LedgerKey(event.child_shop, r.order_line_id, EntryKind.RESTOCK, r.refund_line_id)
        variant = sold[r.order_line_id].child_variant_id
        entries.append((key, *_entry(ctx, event, key, variant, r.quantity, parent_location, cause)))
    outcomes = []
    for key, entry, reason in entries:
        if entry is None:
            outcomes.append(EntryOutcome(key, reason or Outcome.UNLINKED))
            continue
        if entry.key.kind is EntryKind.RESTOCK:
            await _check_restock(ctx, entry, sold[entry.key.order_line_id])
        outcomes.append(await apply_entry(ctx, entry))
    return outcomes


def _entry(
    ctx: SaleContext,
    event: OrderEvent,
    key: LedgerKey,
    child_variant: str,
    delta: int,
    parent_location: str | None,
    cause: str,
) -> tuple[LedgerEntry | None, Outcome | None]:
    item = ctx.links.parent_item_for_child_variant(child_variant)
    if item is None:
        return None, Outcome.UNLINKED
    if parent_location is None:
        return None, Outcome.NO_LOCATION
    return LedgerEntry(key, event.order_id, item, parent_location, delta, cause), None


async def _check_restock(ctx: SaleContext, entry: LedgerEntry, sale: SaleLine) -> None:
    if await ctx.ledger.get(entry.key) is not None:
        return  # a duplicate: already checked when it was first claimed
    so_far = await ctx.ledger.restocked(entry.key.child_shop, entry.key.order_line_id)
    if so_far + entry.requested_delta > sale.quantity:
        raise InventoryError(
            f"{entry.key.child_shop} line {entry.key.order_line_id}: restocking {entry.requested_delta} "
            f"after {so_far} exceeds the {sale.quantity} sold"
        )


async def apply_entry(ctx: SaleContext, entry: LedgerEntry) -> EntryOutcome:
    for earlier in await ctx.ledger.unfinished(entry.parent_item_id, entry.parent_location_id):
        if earlier.key != entry.key:
            await _finish(ctx, earlier)
    stored, _created = await ctx.ledger.claim(entry)
    if stored.status is EntryStatus.APPLIED:
        return _outcome(stored, Outcome.DUPLICATE)
    return await _finish(ctx, stored)


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
                reason="correction" if e.key.kind is EntryKind.SALE else "restock",
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
    applied = e.applied_delta or 0
    oversold = max(0, applied - e.requested_delta) if e.requested_delta < 0 else 0
    return EntryOutcome(
        e.key, outcome, e.parent_item_id, e.parent_location_id, applied, oversold, e.quantity_after
    )


# --------------------------------------------------------------------------- pushing levels


class PushResult(StrEnum):
    SET = "set"
    UNCHANGED = "unchanged"
    UNMAPPED = "unmapped"  # no linked item or no mapped location in that child


@dataclass(frozen=True)
class PushOutcome:
    shop: str
    result: PushResult
    inventory_item_id: str | None = None
    location_id: str | None = None
    before: int | None = None
    after: int | None = None
    attempts: int = 0


# How far back a fan-out looks for the engine's last write to a level (its compare-and-set guess).
LAST_WRITE_HORIZON = timedelta(days=1)


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
) -> PushOutcome:
    """Make one store's level `target` by compare-and-set, re-reading on a lost race.

    With `guess_from_last_write`, the first attempt skips the read and expects the level the
    engine's last write to that level left: a child only moves between our writes when it
    sells, so in a fan-out this saves one call per child; a wrong guess fails the
    compare-and-set (nothing is written) and the next attempt reads as usual."""
    guess = await _last_written(writes, store.shop, item, location, clock) if guess_from_last_write else None
    for attempt in range(1, max_attempts + 1):
        if attempt == 1 and guess is not None and guess != target:
            current = guess
        else:
            level = await store.read_level(item, location)
            current = level.available if level else None
            if current == target:
                return PushOutcome(store.shop, PushResult.UNCHANGED, item, location, current, target, attempt)
        # Record before writing: the echo may arrive before the mutation returns.
        await writes.record_write(WriteRecord(store.shop, item, location, target, clock(), cause))
        try:
            await _set_with_fresh_keys(store, item, location, target, current, cause)
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
    store: InventoryStore, item: str, location: str, target: int, current: int | None, cause: str
) -> None:
    """The compare-and-set, under a new key each time Shopify refuses one as spent."""
    for attempt in range(3):
        try:
            await store.set_level(
                item,
                location,
                target,
                change_from=current,
                idempotency_key=set_idempotency_key(
                    store.shop, item, location, current, target, cause, attempt
                ),
            )
            return
        except KeyAttemptFailed:
            if attempt == 2:
                raise StaleRetriesExhausted(
                    f"{store.shop} {item}@{location}: three idempotency keys in a row were refused as spent"
                ) from None


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
) -> list[PushOutcome]:
    """Read the parent's current level (never the webhook's) and set every child to it.

    Each child's compare-and-set first expects what the engine last wrote there (see
    `push_level`), except the `moved` children, known to have changed since (the child whose
    sale started this fan-out): they are read first."""
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
            )
        )
    return out
