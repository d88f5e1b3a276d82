"""Conflict rules for inventory level webhooks.

- Last-write-wins: competing absolute levels are ordered by a `Version` (the body's signed
  `updated_at`, refined by X-Shopify-Triggered-At only within a bounded window; ties broken by a
  stable string such as the event id), so every worker agrees on which one is newest whatever
  order deliveries arrive in. The one
  place that compares versions is the atomic SQL guard (`ports.AppliedVersions.advance`,
  `adapters/postgres.py` ADVANCE_VERSION): a delivery whose version is older than the one
  already applied for that store+item+location is stale and dropped; an equal one is the same
  event again and goes through (every action taken on it reads current state and is idempotent).
- Echo suppression (`echoes.py`): a webhook that only reports the engine's own write causes no
  new write.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from storesync.sync.domain.echoes import is_echo
from storesync.sync.domain.model import WriteRecord, gid

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
    writes: Sequence[WriteRecord],
) -> LevelDecision:
    """What an `inventory_levels/update` delivery means. A child's own sales reach the parent
    through `orders/create` (the ledger), never through the child's level webhook, so a child
    level that moved on its own is re-asserted from the parent instead of copied upward. (A
    stale delivery never gets here: the version guard refused it first.)"""
    if is_echo(observed_quantity, version.at, writes):
        return LevelDecision.ECHO
    return LevelDecision.FAN_OUT if role == "parent" else LevelDecision.REASSERT
