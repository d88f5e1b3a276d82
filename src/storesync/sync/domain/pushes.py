"""Coalesced level pushes: the parent's levels waiting to be set in one child, sent together.

A push is one child level (item, location) to make equal to the parent's level. Pushes wait per
child (`sync_pending_pushes`), one per level: a newer target replaces an older one (an absolute
set: only the newest matters). The child's flush sends every due push in one
`inventorySetQuantities` (at most `MAX_QUANTITIES`, Shopify's input limit), each quantity with its
own `changeFromQuantity`: the level the child was last seen at (a webhook), else the level the
engine last wrote there, else the level read just before. Shopify applies the mutation whole or
not at all: one stale quantity fails it (its userError names the quantity), so the stale ones are
read again and sent on their own, and their batch mates are sent again without them.

A push's target may be left open: it is the
parent's level as the engine last knew it when the push is sent (its own adjusts' results, its
reads: `sync_parent_levels`), read from the parent when unknown.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from storesync.sync.domain.inventory import child_target

# Shopify refuses any input array over 250 items (https://shopify.dev/docs/api/usage/limits#input-limits).
MAX_QUANTITIES = 250

LevelKey = tuple[str, str]  # (inventory item gid, location gid)


@dataclass(frozen=True)
class PendingPush:
    """One child level to set to the parent's level (`target`: None = the parent's level as
    known when sent); `change_from`: the child's level as last seen (None: not seen), at
    `seen_at` (the store's time)."""

    shop: str
    item_id: str
    location_id: str
    parent_item_id: str
    parent_location_id: str
    target: int | None
    change_from: int | None
    seen_at: datetime | None
    cause: str
    version: int = 0


@dataclass(frozen=True)
class LastWrite:
    """The engine's newest write to a level: the quantity it set, and when."""

    quantity: int
    at: datetime


@dataclass(frozen=True)
class LevelSet:
    """One quantity of an `inventorySetQuantities`: set (item, location) to `quantity` if it is
    `change_from` (compare-and-set)."""

    item_id: str
    location_id: str
    quantity: int
    change_from: int | None


@dataclass(frozen=True)
class FlushPlan:
    """What one flush sends (`sets[i]` for `pushes[i]`) and what it can drop unsent."""

    sets: tuple[LevelSet, ...]
    pushes: tuple[PendingPush, ...]
    in_step: tuple[PendingPush, ...]  # seen at their target: nothing to send
    unknown_target: tuple[PendingPush, ...]  # the parent's level is needed first


def plan_flush(
    pushes: Sequence[PendingPush],
    parent_levels: Mapping[LevelKey, int],
    last_written: Mapping[LevelKey, LastWrite],
    read_levels: Mapping[LevelKey, int],
) -> FlushPlan:
    """The sets for `pushes`: each target (the parent's known level when open), each
    `changeFromQuantity`: read just now, else seen (a webhook not older than the engine's last
    write there), else the engine's last write. A push read or seen at its target needs no
    write; a guess from the engine's own last write is always sent (that write may not have
    landed): a wrong one fails and is read."""
    sets: list[LevelSet] = []
    sent: list[PendingPush] = []
    in_step: list[PendingPush] = []
    unknown: list[PendingPush] = []
    for p in pushes:
        key = (p.item_id, p.location_id)
        parent = (
            p.target if p.target is not None else parent_levels.get((p.parent_item_id, p.parent_location_id))
        )
        if parent is None:
            unknown.append(p)
            continue
        target = child_target(parent)
        last = last_written.get(key)
        if key in read_levels:
            current: int | None = read_levels[key]
            known = True
        elif p.change_from is not None and (last is None or p.seen_at is None or p.seen_at >= last.at):
            current, known = p.change_from, True
        else:
            current, known = (last.quantity if last else None), False
        if known and current == target:
            in_step.append(p)
            continue
        sets.append(LevelSet(p.item_id, p.location_id, target, current))
        sent.append(p)
    return FlushPlan(tuple(sets), tuple(sent), tuple(in_step), tuple(unknown))


def batch_set_key(shop: str, sets: Sequence[LevelSet], causes: Sequence[str], attempt: int = 0) -> str:
    """The `@idempotent` key of one batched compare-and-set: the same sets for the same causes
    (in any order) give the same key, so a flush resent after a crash replays; `attempt` > 0
    after Shopify refused the key as spent. The causes tell apart the same transition made
    again later (a level set from 12 to 12 once, moved by hand, guessed at 12 again): without
    them Shopify would replay the first answer and apply nothing (the per-item key,
    `inventory.set_idempotency_key`, carries its cause for the same reason)."""
    parts = sorted(
        f"{s.item_id}\x1f{s.location_id}\x1f{s.change_from}\x1f{s.quantity}\x1f{cause}"
        for s, cause in zip(sets, causes, strict=True)
    )
    raw = "\x1e".join(["set-batch", shop, *parts])
    if attempt:
        raw += f"\x1eattempt {attempt}"
    return "storesync-" + hashlib.sha256(raw.encode()).hexdigest()[:40]
