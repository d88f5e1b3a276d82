"""Coalesced sale deltas: the children's ledger entries waiting for the parent, planned and sent
together as one `inventoryAdjustQuantities` (the rules of each entry: `inventory.py`).

Entries are planned in the order they were claimed, level by level (`plan_batch`): each from the
level the one before leaves (the parent never below 0, the oversold backlog carried along,
`inventory.plan_delta`). A batch carries one change per level: the sum of its entries' deltas,
with `changeFromQuantity` = the level the first was planned from. Shopify applies the mutation
whole or not at all, so a stale level (the parent moved: its own sale, a merchant's edit) fails
the batch: nothing was applied; its entries are planned again from the level read now and sent
on their own, the other levels' entries again without them. The batch is stored before it is
sent and sent again under the same key after a crash (`batch_key`): Shopify replays it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from storesync.sync.domain.inventory import LedgerEntry, plan_delta

# Shopify refuses any input array over 250 items (https://shopify.dev/docs/api/usage/limits#input-limits).
MAX_CHANGES = 250

LevelKey = tuple[str, str]  # (parent inventory item gid, parent location gid)


@dataclass(frozen=True)
class EntryPlan:
    """The plan of one entry in a batch: the delta applied, the backlog after, the level after."""

    entry: LedgerEntry
    applied_delta: int
    backlog_after: int
    expected_after: int


@dataclass(frozen=True)
class LevelChange:
    """One change of an `inventoryAdjustQuantities`."""

    item_id: str
    location_id: str
    delta: int
    change_from: int


def plan_batch(
    entries: Sequence[LedgerEntry], levels: Mapping[LevelKey, int], backlogs: Mapping[LevelKey, int]
) -> list[EntryPlan]:
    """Plans for `entries` (claimed, oldest first), each level's from its current level and
    backlog, one entry after the other."""
    level = dict(levels)
    backlog = dict(backlogs)
    plans = []
    for e in entries:
        key = (e.parent_item_id, e.parent_location_id)
        applied, backlog_after = plan_delta(level[key], backlog.get(key, 0), e.requested_delta)
        level[key] += applied
        backlog[key] = backlog_after
        plans.append(EntryPlan(e, applied, backlog_after, level[key]))
    return plans


def batch_changes(plans: Sequence[EntryPlan]) -> list[LevelChange]:
    """One change per level that moves (levels whose entries cancel out need none), in level
    order: the same plans always give the same changes (a resent batch must be identical)."""
    first: dict[LevelKey, int] = {}
    total: dict[LevelKey, int] = {}
    for p in plans:
        key = (p.entry.parent_item_id, p.entry.parent_location_id)
        first.setdefault(key, p.expected_after - p.applied_delta)
        total[key] = total.get(key, 0) + p.applied_delta
    return [LevelChange(k[0], k[1], total[k], first[k]) for k in sorted(total) if total[k]]


def batch_key(parent_shop: str, batch_id: int, attempt: int = 0) -> str:
    """The `@idempotent` key of a stored batch (and of its resends)."""
    raw = f"adjust-batch\x1f{parent_shop}\x1f{batch_id}"
    if attempt:
        raw += f"\x1fattempt {attempt}"
    return "storesync-" + hashlib.sha256(raw.encode()).hexdigest()[:40]
