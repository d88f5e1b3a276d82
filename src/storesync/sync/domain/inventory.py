"""Inventory: child sales flow to the parent as deltas, the parent's level flows to children.

The rules and types; `services/sales.py` runs them against the stores and the ledger.

Sales. Every stock movement of a child's order becomes a ledger entry keyed by (child shop, order
line id, kind, ref), and a deterministic `@idempotent` key derived from that key. The kinds, and
why each key is what it is (two webhooks that describe the same movement must derive the same
key, and the reconciliation of orders must too):

- SALE: the units a line took from stock. Shopify's line `quantity` counts every unit ever
  ordered on the line (an order edit that adds units raises it; removals and refunds do not
  lower it), so the line is a counter: an entry tops it up to the quantity seen (ref = that
  quantity, "3" for units 1-3; requested delta = minus the units not counted yet). Whatever
  body reports the line (orders/create, orders/updated after an edit, a refund's line item, a
  GraphQL read), the units are counted once. Entries written before the counter have ref "".
- EDIT_REMOVAL: units order edits removed from the line (restocked where they were committed).
  A counter too: quantity - currentQuantity - units refunded, which only grows.
- RESTOCK: one refund line item with restock type cancel or return (ref = its gid; the same
  refund reaches us in orders/cancelled's `refunds` and in refunds/create: one entry), or one
  return disposition RESTOCKED (ref = the disposition's gid, however many webhooks of the
  return arrive; the refund a processed return issues has no_restock lines and moves nothing).
- MANUAL: a child's own stock move reported to the parent (policy `report`): order_line_id =
  "<child item>@<child location>", ref = the report's number.

A counter's top-up is claimed under a lock of its line (`ports.InventoryLedger.claim_top_up`),
so two deliveries of different quantities never count a unit twice. The entry moves
CLAIMED -> PLANNED -> APPLIED:

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

Coalesced (the default, `adjusts.py`): steps 2 and 3 are the parent's flush, for up to 250
pending entries at once, planned one after the other and sent as one batch stored before the
call; an entry planned here, one at a time, is always finished here.

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
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum


class EntryKind(StrEnum):
    SALE = "sale"  # ref: the line's units counted so far (a counter), "" before counters
    RESTOCK = "restock"  # ref: a refund line item's or a return disposition's gid
    EDIT_REMOVAL = "edit_removal"  # ref: units removed from the line by edits so far (a counter)
    MANUAL = "manual"  # a child's own move reported (policy report); ref: the report's number


# Counters (see the module doc): their kinds and the sign of the stock they move per unit.
COUNTER_SIGN: dict[EntryKind, int] = {EntryKind.SALE: -1, EntryKind.EDIT_REMOVAL: +1}
# Kinds that give a line's units back (bounded by the units the line sold).
RESTOCK_KINDS = frozenset({EntryKind.RESTOCK, EntryKind.EDIT_REMOVAL})


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
    ref: str = ""  # see EntryKind

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
    # Where the movement happened in the child (the stock account of policy `report` follows it).
    child_item_id: str | None = None
    child_location_id: str | None = None
    # Coalesced sale deltas (`adjusts.py`): the parent whose batched adjust applies the entry,
    # and the batch in flight that carries it (None: not sent yet, or applied one at a time).
    pending_parent: str | None = None
    batch_id: int | None = None
    ledger_id: int | None = None  # the row's id: the order entries are claimed in

    @property
    def idempotency_key(self) -> str:
        """The `@idempotent` key of this plan: the entry's key, plus the plan number once re-planned
        (a new plan is a different request and must not replay the stale one), plus the attempt
        number once a failed attempt spent the key."""
        key = self.key.idempotency_key
        if self.plan_no:
            key += f"-p{self.plan_no}"
        return key + (f"-a{self.key_attempt}" if self.key_attempt else "")


# --------------------------------------------------------------------------- keys


def counter_key(child_shop: str, order_line_id: str, kind: EntryKind, units: int) -> LedgerKey:
    """The key of a counter's top-up to `units` (SALE, EDIT_REMOVAL)."""
    if kind not in COUNTER_SIGN:
        raise ValueError(f"{kind} is not a counter")
    return LedgerKey(child_shop, order_line_id, kind, str(units))


def counter_top_up(kind: EntryKind, units: int, counted: int) -> int | None:
    """The requested delta that brings a counter from `counted` units to `units`, or None when
    they are counted already."""
    if units <= counted:
        return None
    return COUNTER_SIGN[kind] * (units - counted)


def restock_key(child_shop: str, order_line_id: str, restock_id: str) -> LedgerKey:
    """A refund line item's or a return disposition's restock (their gids never collide)."""
    return LedgerKey(child_shop, order_line_id, EntryKind.RESTOCK, restock_id)


def manual_key(
    child_shop: str, child_item: str, child_location: str, number: int, *, undo: bool = False
) -> LedgerKey:
    """The `number`th move of one child level reported to the parent (policy report); `undo`:
    the entry that takes it back when the report is compensated."""
    ref = f"{number}:undo" if undo else str(number)
    return LedgerKey(child_shop, f"{child_item}@{child_location}", EntryKind.MANUAL, ref)


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


# Keys derived from a set's content, tried before one of its own (`set_key_for_attempt`): enough
# to replay a set resent after a lost answer, few enough that a set whose derived keys were all
# refused as spent (each failed attempt spends its key, and a job's next run derives the same
# ones again) is still sent.
DERIVED_SET_KEYS = 3


# Attempts of one set within a run: its derived keys, then two keys of its own.
SET_KEY_ATTEMPTS = DERIVED_SET_KEYS + 2


def set_key_for_attempt(attempt: int, derived: Callable[[int], str]) -> str:
    """The key of a set's `attempt` (0-based): `derived(attempt)` for the first
    `DERIVED_SET_KEYS`, then a key no request has carried, for a set whose derived keys Shopify
    refused as spent (IDEMPOTENCY_PREVIOUS_ATTEMPT_FAILED: "Retry with a new idempotency key",
    https://shopify.dev/docs/api/usage/implementing-idempotency). A set is absolute and
    compare-and-set where its level was known, so sending it again under a new key applies
    nothing twice; without it a job whose three derived keys were spent failed on every retry."""
    if attempt < DERIVED_SET_KEYS:
        return derived(attempt)
    return "storesync-" + uuid.uuid4().hex


def oversold(entry: LedgerEntry) -> int:
    """Units of a sale the parent did not have (its backlog grew by this)."""
    applied = entry.applied_delta or 0
    return max(0, applied - entry.requested_delta) if entry.requested_delta < 0 else 0


# --------------------------------------------------------------------------- outcomes


class Outcome(StrEnum):
    APPLIED = "applied"
    DUPLICATE = "duplicate"  # already applied by an earlier delivery
    UNLINKED = "unlinked"  # the child variant is linked to no parent item: reported, not guessed
    NO_LOCATION = "no_location"  # the stock moved at a child location mapped to no parent location
    LOCATION_INACTIVE = "location_inactive"  # the parent location it maps to is deactivated
    PENDING = "pending"  # claimed and waiting for the parent's batched adjust (`adjusts.py`)


@dataclass(frozen=True)
class EntryOutcome:
    key: LedgerKey
    outcome: Outcome
    parent_item_id: str | None = None
    parent_location_id: str | None = None
    applied_delta: int = 0
    oversold: int = 0  # units of this entry the parent did not have (backlog grew by this)
    quantity_after: int | None = None


class PushResult(StrEnum):
    SET = "set"
    UNCHANGED = "unchanged"
    UNMAPPED = "unmapped"  # no linked item or no mapped location in that child
    INACTIVE = "inactive"  # the child's location is deactivated, or the item is not stocked there


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
