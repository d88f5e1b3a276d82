"""Coalesced sale deltas: the children's ledger entries waiting for the parent, planned and sent
together as one `inventoryAdjustQuantities` (each entry's rules: `inventory.py`).

A sale job claims its entries as usual (one ledger row per order line movement) and leaves them
pending for the parent. The parent's flush (`services/adjusts.py`, one at a time per parent)
takes up to `MAX_CHANGES` of them, oldest first, and plans them level by level (`plan_batch`):
each from the level the one before leaves, so the parent is never taken below 0 and the oversold
backlog is carried along exactly as one entry at a time would (`inventory.plan_delta`). The
batch carries one change per level that moves: the sum of its entries' deltas, with
`changeFromQuantity` = the level the first was planned from (`batch_changes`).

The batch (its entries' plans and its key) is stored before it is sent. Shopify applies the
mutation whole or not at all: a stale level (the parent moved: its own sale, a merchant's edit)
fails the batch with nothing applied, so its entries go back to pending and are planned again
from the level read now, under a new batch and key. A crash or a lost answer sends the same
stored batch again under the same key: Shopify answers a repeated key with the first result
(https://shopify.dev/docs/api/usage/implementing-idempotency), so every entry lands once.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from storesync.sync.domain.inventory import RESTOCK_KINDS, EntryStatus, LedgerEntry, plan_delta

# Shopify refuses any input array over 250 items (https://shopify.dev/docs/api/usage/limits#input-limits);
# a batch takes at most this many entries, so it never carries more changes.
MAX_CHANGES = 250

LevelKey = tuple[str, str]  # (parent inventory item gid, parent location gid)


@dataclass(frozen=True)
class LevelChange:
    """One change of an `inventoryAdjustQuantities`: add `delta` if the level is `change_from`."""

    item_id: str
    location_id: str
    delta: int
    change_from: int


@dataclass(frozen=True)
class AdjustBatch:
    """A stored batch: its id, the attempt of its key, its planned entries (oldest first)."""

    id: int
    parent_shop: str
    key_attempt: int
    entries: tuple[LedgerEntry, ...]

    @property
    def idempotency_key(self) -> str:
        return batch_key(self.parent_shop, self.id, self.entries, self.key_attempt)


def level_of(entry: LedgerEntry) -> LevelKey:
    return (entry.parent_item_id, entry.parent_location_id)


def plan_batch(
    entries: Sequence[LedgerEntry], levels: Mapping[LevelKey, int], backlogs: Mapping[LevelKey, int]
) -> list[LedgerEntry]:
    """`entries` (claimed, oldest first) planned: each from the level and backlog the one before
    it on the same level leaves, starting from `levels` and `backlogs`."""
    level = dict(levels)
    backlog = dict(backlogs)
    planned = []
    for e in entries:
        key = level_of(e)
        applied, backlog_after = plan_delta(level[key], backlog.get(key, 0), e.requested_delta)
        level[key] += applied
        backlog[key] = backlog_after
        planned.append(
            replace(
                e,
                status=EntryStatus.PLANNED,
                applied_delta=applied,
                backlog_after=backlog_after,
                expected_after=level[key],
            )
        )
    return planned


def leaned_on_the_level(entries: Sequence[LedgerEntry]) -> set[LevelKey]:
    """Levels where a plan depends on the level itself, not only on the compare-and-set: an
    entry applied otherwise than requested (the last unit, a backlog paid back). When no other
    entry of the level moves it, no compare-and-set checks that level, so it must be read, not
    taken from memory, before such a plan is stored."""
    return {level_of(e) for e in entries if e.applied_delta != e.requested_delta}


def batch_changes(entries: Sequence[LedgerEntry]) -> list[LevelChange]:
    """One change per level that moves (levels whose entries add up to 0 need none), in level
    order: the same planned entries always give the same changes (a resent batch must be
    identical, or Shopify refuses its key as used with other parameters)."""
    first: dict[LevelKey, int] = {}
    total: dict[LevelKey, int] = {}
    for e in entries:
        assert e.applied_delta is not None and e.expected_after is not None
        key = level_of(e)
        first.setdefault(key, e.expected_after - e.applied_delta)
        total[key] = total.get(key, 0) + e.applied_delta
    return [LevelChange(k[0], k[1], total[k], first[k]) for k in sorted(total) if total[k]]


def levels_after(entries: Sequence[LedgerEntry]) -> dict[LevelKey, tuple[int, int]]:
    """Per level: (the parent's level after the batch, the oversold backlog after it)."""
    out: dict[LevelKey, tuple[int, int]] = {}
    for e in entries:
        assert e.expected_after is not None and e.backlog_after is not None
        out[level_of(e)] = (e.expected_after, e.backlog_after)
    return out


def batch_reason(entries: Sequence[LedgerEntry]) -> str:
    """Shopify's reason for the call: "restock" when every entry gives stock back."""
    return "restock" if entries and all(e.key.kind in RESTOCK_KINDS for e in entries) else "correction"


def batch_key(parent_shop: str, batch_id: int, entries: Sequence[LedgerEntry], attempt: int = 0) -> str:
    """The `@idempotent` key of a stored batch and of its resends: its id and its entries' own
    keys (a database restored from a backup reuses ids, never the same entries with them);
    `attempt` > 0 after Shopify refused the key as spent."""
    raw = "\x1f".join(
        ["adjust-batch", parent_shop, str(batch_id), *sorted(e.key.idempotency_key for e in entries)]
    )
    if attempt:
        raw += f"\x1fattempt {attempt}"
    return "storesync-" + hashlib.sha256(raw.encode()).hexdigest()[:40]
