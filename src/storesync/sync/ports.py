"""Ports: what the domain needs from a Shopify store and from storage.

Store adapters wrap the commerce client (real Shopify or the emulator); storage adapters are
Postgres (`store_pg.py`) or in memory (`memory.py`). Everything is async because job handlers are.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

from storesync.sync.audit import AuditRecord
from storesync.sync.model import Collection, InventoryLevel, Link, LinkKind, LinkMap, Product

# --------------------------------------------------------------------------- store side


class StaleQuantity(Exception):
    """A compare-and-set lost: the level is no longer `changeFromQuantity`
    (Shopify's CHANGE_FROM_QUANTITY_STALE). The caller re-reads and retries."""


class KeyAttemptFailed(Exception):
    """The idempotency key's first attempt failed and the key is spent (Shopify's
    IDEMPOTENCY_PREVIOUS_ATTEMPT_FAILED): nothing was applied; send the same change under a new
    key."""


class HandleTaken(Exception):
    """A plain create was refused: the store has another product with that handle (Shopify's
    HANDLE_NOT_UNIQUE). Nothing was written."""


class CatalogStore(Protocol):
    shop: str

    async def read_product(self, product_id: str) -> Product | None: ...

    async def find_product_by_handle(self, handle: str) -> Product | None:
        """`productByIdentifier(identifier: {handle})`: lets a create be retried without duplicating."""
        ...

    async def product_set(self, input: Mapping[str, Any], *, product_id: str | None) -> Product:
        """`productSet(identifier: {id}, input:)` (create when product_id is None); the result."""
        ...

    async def find_product_id_by_handle(self, handle: str) -> str | None:
        """The id of the product under `handle` (None: the handle is free); a cheap lookup."""
        ...

    async def create_product_id(self, input: Mapping[str, Any], *, upsert: bool) -> str:
        """`productSet` answered with the product id alone (the variants' ids come later).
        `upsert=False`: a plain create, `HandleTaken` when the handle is taken; `upsert=True`:
        by the input's handle (a resend after a lost answer)."""
        ...

    async def delete_product(self, product_id: str) -> None:
        """`productDelete`; deleting a product that is already gone is not an error."""
        ...


class InventoryStore(Protocol):
    shop: str

    async def read_level(self, inventory_item_id: str, location_id: str) -> InventoryLevel | None: ...

    async def set_level(
        self,
        inventory_item_id: str,
        location_id: str,
        quantity: int,
        *,
        change_from: int | None,
        idempotency_key: str,
        reason: str = "correction",
    ) -> int:
        """`inventorySetQuantities` (name "available") with `changeFromQuantity` and
        `@idempotent(key:)`. Returns the new quantity; raises StaleQuantity on a lost CAS."""
        ...

    async def adjust_level(
        self,
        inventory_item_id: str,
        location_id: str,
        delta: int,
        *,
        idempotency_key: str,
        change_from: int | None = None,
        reason: str = "correction",
    ) -> int:
        """`inventoryAdjustQuantities` with `@idempotent(key:)` and, when given, the change's
        `changeFromQuantity` (StaleQuantity on a mismatch); returns quantityAfterChange.
        A replayed key applies nothing and returns the original result."""
        ...


class StoreAPI(CatalogStore, InventoryStore, Protocol):
    pass


class CatalogScan(Protocol):
    """Whole-store reads for linking and reconciliation (paged queries in the real adapter)."""

    shop: str

    def all_products(self) -> AsyncIterator[Product]: ...

    def all_collections(self) -> AsyncIterator[Collection]: ...

    async def all_levels(self, location_ids: Sequence[str]) -> dict[tuple[str, str], int]:
        """(inventory item gid, location gid) -> available, for every item stocked at those locations."""
        ...


# --------------------------------------------------------------------------- storage side


@runtime_checkable
class LinkRepository(Protocol):
    async def save_links(self, links: Sequence[Link]) -> int:
        """Insert or refresh links (keyed by child shop, kind, parent id); returns rows written."""
        ...

    async def link_map(self, child_shop: str) -> LinkMap: ...

    async def links_down(self, kind: LinkKind, parent_id: str) -> list[Link]:
        """Every child's link for one parent object (fan-out)."""
        ...

    async def links_for_parent_item(self, parent_inventory_item_id: str) -> list[Link]: ...

    async def product_fan_out_links(
        self, parent_product_id: str, parent_collection_ids: Sequence[str]
    ) -> list[Link]:
        """Every child's link of one parent product and of the parent collections it is in."""
        ...

    async def set_synced_view(self, child_shop: str, parent_product_id: str, view: dict) -> None: ...

    async def delete_link(self, child_shop: str, kind: LinkKind, parent_id: str) -> None: ...

    async def pending_links(self, child_shop: str) -> list[Link]:
        """Product links of copies whose variants are not linked yet (`Link.pending`)."""
        ...

    async def complete_pending(
        self, child_shop: str, parent_product_id: str, links: Sequence[Link], writes: Sequence[WriteRecord]
    ) -> bool:
        """Atomically, if the product link still holds pending variants: clear them, save these
        variant links and record these writes. False (nothing saved) when none were pending:
        another path linked the copy first."""
        ...


@dataclass(frozen=True)
class WriteRecord:
    """One inventory write the engine made (or is about to make): the basis of echo suppression."""

    shop: str
    inventory_item_id: str
    location_id: str
    quantity: int  # the level the write leaves behind
    written_at: datetime
    cause: str


@runtime_checkable
class WriteRecords(Protocol):
    async def record_write(self, rec: WriteRecord) -> None: ...

    async def record_writes(self, recs: Sequence[WriteRecord]) -> None:
        """Several at once (one product's levels), all or none."""
        ...

    async def recent_writes(
        self, shop: str, inventory_item_id: str, location_id: str, since: datetime, *, limit: int = 100
    ) -> list[WriteRecord]:
        """Writes at or after `since`, newest first, at most `limit`."""
        ...


@runtime_checkable
class AppliedVersions(Protocol):
    """The newest version (triggered-at, tiebreak) applied per store+item+location."""

    async def advance(
        self, shop: str, inventory_item_id: str, location_id: str, at: datetime, tiebreak: str
    ) -> bool:
        """Keep the newer of (at, tiebreak) and what is stored; False only if the given version
        is older than the stored one (stale)."""
        ...

    async def current(
        self, shop: str, inventory_item_id: str, location_id: str
    ) -> tuple[datetime, str] | None: ...

    async def moved_since(
        self, shop: str, levels: Sequence[tuple[str, str]], since: datetime
    ) -> list[tuple[str, str]]:
        """Which of these (item, location) levels have a version applied after `since`."""
        ...


@runtime_checkable
class AuditSink(Protocol):
    async def record(self, rec: AuditRecord) -> None: ...

    async def query(
        self,
        *,
        shop: str | None = None,
        object_id: str | None = None,
        cause: str | None = None,
        limit: int = 100,
    ) -> list[AuditRecord]: ...
