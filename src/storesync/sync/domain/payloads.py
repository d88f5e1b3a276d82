"""The payload of every sync job, typed: what a job carries from its enqueuer to its handler.

Plain dataclasses. The queue checks them against these types when a job is enqueued (a payload
that does not match its type is refused) and when it is claimed (the handler receives an
instance; a stored payload that no longer fits is dead-lettered with the reason), see
`storesync.queue.payloads`. Unknown keys are refused (`extra: forbid`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from storesync.sync.domain.orders import OrderEvent

# Read by pydantic (a ConfigDict is a plain dict): a key the type does not know is an error.
_STRICT = {"extra": "forbid"}


@dataclass(frozen=True)
class WebhookJob:
    """`webhook.<topic>`: one recorded delivery, as the web tier enqueued it."""

    __pydantic_config__ = _STRICT

    delivery_id: str
    shop: str
    topic: str
    body: dict[str, Any]
    event_id: str | None = None
    triggered_at: str | None = None  # X-Shopify-Triggered-At, as sent
    api_version: str | None = None
    rechecked: bool = False  # a child's products/create with no link yet, looked at once more
    received_at: str | None = None  # when the web tier received it (ISO time)


@dataclass(frozen=True)
class ProductJob:
    """`sync.product_to_child`: make one child's copy of one parent product match it."""

    __pydantic_config__ = _STRICT

    parent_product_id: str
    child_shop: str
    cause: str
    # Caused by the child's own event: re-sync a linked copy, never (re)create one.
    only_if_linked: bool = False


@dataclass(frozen=True)
class CollectionJob:
    """`sync.collection_to_child`: one child's counterpart of one parent collection."""

    __pydantic_config__ = _STRICT

    parent_collection_id: str
    child_shop: str
    cause: str


@dataclass(frozen=True)
class SaleJob:
    """`sync.sale`: the order lines of one parent item, applied through the ledger."""

    __pydantic_config__ = _STRICT

    child_shop: str
    event: OrderEvent
    parent_item: str
    cause: str


@dataclass(frozen=True)
class FanOutJob:
    """`sync.fan_out_level`: set every child (or `only` these) to the parent's level.
    `parent_unchanged`: a child's own move set back (the parent's level did not move), so the
    parent's level as the engine remembers it will do, unread."""

    __pydantic_config__ = _STRICT

    parent_item: str
    parent_location: str
    cause: str
    only: tuple[str, ...] | None = None
    parent_unchanged: bool = False


@dataclass(frozen=True)
class ChildStockJob:
    """`sync.child_stock`: a child level moved and no write of ours explains it: handle it by
    the child's stock policy (`services/stock.py`); with `saga_id`, resume that report."""

    __pydantic_config__ = _STRICT

    child_shop: str
    child_item: str
    child_location: str
    parent_item: str  # its lock key: one job of a parent item at a time
    cause: str
    saga_id: str | None = None


@dataclass(frozen=True)
class ReconcileLevelsJob:
    """`sync.reconcile_levels`: the second half of a merchant's reconciliation, once the sale
    jobs its first half enqueued (the orders the ledger lacked) have run."""

    __pydantic_config__ = _STRICT

    merchant_id: str
    sale_jobs: dict[str, list[int]] | None = None  # child shop -> the sale jobs it enqueued
    # child shop -> the orders checkpoint to store once its sale jobs succeeded (ISO time)
    checkpoints: dict[str, str] | None = None
    waited: int = 0  # how many times it found the sale jobs still running


@dataclass(frozen=True)
class CopyJob:
    """`sync.copy_product`: run (or, without a product, resume) one copy saga."""

    __pydantic_config__ = _STRICT

    saga_id: str
    child_shop: str
    cause: str
    max_attempts: int
    parent_product_id: str | None = None


@dataclass(frozen=True)
class LinkPendingJob:
    """`sync.link_pending_copies`: link the child's copies made before `written_before` (ISO
    time) whose variants are still not linked."""

    __pydantic_config__ = _STRICT

    child_shop: str
    cause: str
    written_before: str


@dataclass(frozen=True)
class AdjustJob:
    """`sync.adjust_parent`: send the sale deltas waiting for one parent (`services/adjusts.py`)."""

    __pydantic_config__ = _STRICT

    parent_shop: str


@dataclass(frozen=True)
class PushJob:
    """`sync.push_levels`: send the level pushes waiting for one child (`services/pushes.py`)."""

    __pydantic_config__ = _STRICT

    shop: str


@dataclass(frozen=True)
class ReconcileJob:
    """`sync.reconcile`: compare one merchant's stores and repair the drift."""

    __pydantic_config__ = _STRICT

    merchant_id: str


@dataclass(frozen=True)
class NoPayload:
    """Periodic jobs that need nothing (`sync.reconcile_all`, `sync.prune_write_records`)."""

    __pydantic_config__ = _STRICT
