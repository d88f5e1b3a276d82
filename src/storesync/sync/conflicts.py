"""Conflict rules for inventory level webhooks.

- Last-write-wins: competing absolute levels are ordered by a `Version` (the body's signed
  `updated_at`, refined by X-Shopify-Triggered-At only within a bounded window; ties broken by a
  stable string such as the event id), so every worker agrees on which one is newest whatever
  order deliveries arrive in.
- Stale rejection: a delivery whose version is not newer than the one already applied for that
  store+item+location is dropped.
- Echo suppression: `inventory_levels/update` says nothing about who made a change, so the
  engine records each write it makes (item, location, resulting quantity, time) BEFORE making it
  and a webhook that only reports such a write causes no new write. The engine's newest write
  inside the window decides: an external change that happens to land on a value the engine wrote
  earlier (but not last) is still seen as a change.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from storesync.sync.model import gid
from storesync.sync.ports import AppliedVersions, WriteRecord, WriteRecords

# How long after a write its echo may still arrive (Shopify retries for hours, but a retried
# echo older than this is dropped by stale rejection anyway).
ECHO_WINDOW = timedelta(minutes=10)
# Our clock vs Shopify's: a webhook's updated_at may precede our record of the write by this much.
CLOCK_SKEW = timedelta(seconds=5)
# X-Shopify-Triggered-At is not covered by the HMAC (only the body is), so a captured delivery
# re-sent with a far-future header must not outrank real updates. The signed `updated_at` is
# whole seconds, so the header may refine it, but only inside this window around it; outside it
# the header is ignored. https://shopify.dev/docs/apps/build/webhooks/verify-deliveries
TRIGGERED_AT_WINDOW = (timedelta(seconds=-1), timedelta(seconds=5))


@dataclass(frozen=True, order=True)
class Version:
    at: datetime
    tiebreak: str = ""

    def __post_init__(self) -> None:
        if self.at.tzinfo is None:
            raise ValueError("versions need timezone-aware timestamps")


def is_stale(incoming: Version, current: Version | None) -> bool:
    """Older than what was already applied: drop it. An equal version is the same event again
    (a duplicate delivery or a retried job) and goes through: every action taken on it reads
    current state and is idempotent, so repeating it changes nothing."""
    return current is not None and incoming < current


def winner(versions: Sequence[tuple[Version, int]]) -> tuple[Version, int]:
    """Of competing absolute sets (version, quantity), the one last-write-wins keeps."""
    if not versions:
        raise ValueError("no versions to choose from")
    return max(versions, key=lambda vq: vq[0])


def is_echo(
    observed_quantity: int,
    observed_at: datetime,
    writes: Sequence[WriteRecord],
    *,
    window: timedelta = ECHO_WINDOW,
    skew: timedelta = CLOCK_SKEW,
) -> bool:
    """True if the observation only reports the engine's own newest write for that level."""
    lo, hi = observed_at - window, observed_at + skew
    candidates = [w for w in writes if lo <= w.written_at <= hi]
    if not candidates:
        return False
    newest = max(candidates, key=lambda w: w.written_at)
    return newest.quantity == observed_quantity


def _parse_time(value: object) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        at = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"not an ISO 8601 time: {value!r}") from None
    if at.tzinfo is None:
        raise ValueError(f"time without a timezone: {value!r}")
    return at


def version_of_delivery(
    payload: Mapping[str, Any], on_hint_refused: Callable[[], None] | None = None
) -> Version:
    """The version of a webhook job payload (`{"triggered_at", "event_id", "delivery_id", "body"}`):
    the body's `updated_at` (what Shopify signs), or X-Shopify-Triggered-At when that lies within
    TRIGGERED_AT_WINDOW of it (finer than whole seconds); ties broken by the event id. A header
    outside the window is ignored and reported through `on_hint_refused`."""
    body = payload.get("body") or {}
    signed = _parse_time(body.get("updated_at"))
    if signed is None:
        raise ValueError("the delivery's body has no updated_at")
    at = signed
    hint = _parse_time(payload.get("triggered_at"))
    if hint is not None:
        low, high = TRIGGERED_AT_WINDOW
        if signed + low <= hint <= signed + high:
            at = hint
        elif on_hint_refused is not None:
            on_hint_refused()
    return Version(at, str(payload.get("event_id") or payload.get("delivery_id") or ""))


@dataclass(frozen=True)
class LevelReport:
    """What an `inventory_levels/update` body says."""

    inventory_item_id: str
    location_id: str
    available: int


def level_from_webhook(body: Mapping[str, Any]) -> LevelReport:
    available = body.get("available")
    if not isinstance(available, int):
        raise ValueError(f"inventory level webhook with available={available!r}")
    return LevelReport(
        gid("InventoryItem", body.get("inventory_item_id")),
        gid("Location", body.get("location_id")),
        available,
    )


class LevelDecision(StrEnum):
    STALE = "stale"  # older than what was applied: drop
    ECHO = "echo"  # our own write coming back: no new write
    FAN_OUT = "fan_out"  # the parent's level changed: set every child to it
    REASSERT = "reassert"  # a child's level moved on its own: set it back to the parent's level


def classify_level_change(
    *,
    role: str,
    observed_quantity: int,
    version: Version,
    applied: Version | None,
    writes: Sequence[WriteRecord],
) -> LevelDecision:
    """What an `inventory_levels/update` delivery means. A child's own sales reach the parent
    through `orders/create` (the ledger), never through the child's level webhook, so a child
    level that moved on its own is re-asserted from the parent instead of copied upward."""
    if is_stale(version, applied):
        return LevelDecision.STALE
    if is_echo(observed_quantity, version.at, writes):
        return LevelDecision.ECHO
    return LevelDecision.FAN_OUT if role == "parent" else LevelDecision.REASSERT


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
    return classify_level_change(
        role=role, observed_quantity=available, version=version, applied=None, writes=recent
    )
