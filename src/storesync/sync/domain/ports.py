"""Ports: what the sync domain needs from a Shopify store and from storage, as Protocols.

Implemented by the adapters (`sync/adapters/shopify.py`, `sync/adapters/postgres.py`) and, for
tests, by the fakes in `tests/fakes.py` (a contract test runs the same cases against both).
Methods are `async` because the services that call them are; nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

from storesync.sync.domain.adjusts import LevelChange
from storesync.sync.domain.audit import AuditRecord
from storesync.sync.domain.inventory import LedgerEntry, LedgerKey
from storesync.sync.domain.model import (
    Collection,
    InventoryLevel,
    Link,
    LinkKind,
    LinkMap,
    Product,
    WriteRecord,
)
from storesync.sync.domain.orders import LedgerRow
from storesync.sync.domain.pushes import LevelSet
from storesync.sync.domain.saga import SagaRecord, SagaState, StepContext, StepSpec

# --------------------------------------------------------------------------- store side


class StaleQuantity(Exception):
    """A compare-and-set lost: the level is no longer `changeFromQuantity`
    (Shopify's CHANGE_FROM_QUANTITY_STALE). The caller re-reads and retries. `stale`: in a
    batched set, the indices of the quantities that were stale (the others were not applied
    either: Shopify applies the mutation whole or not at all)."""

    def __init__(self, message: str = "", *, stale: tuple[int, ...] = ()) -> None:
        super().__init__(message)
        self.stale = stale


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

    async def product_under_handle(self, handle: str) -> tuple[str, datetime | None] | None:
        """The id and creation time of the product under `handle` (None: the handle is free)."""
        ...

    async def update_product_fields(self, product_id: str, fields: Mapping[str, Any]) -> None:
        """Some of the product's own fields (status, handle) set; nothing else changes."""
        ...

    async def set_media(self, product_id: str, files: Sequence[Mapping[str, Any]]) -> list[str]:
        """The product's media made exactly `files` (FileSetInput: by id kept, by originalSource
        uploaded); the media ids, in order."""
        ...

    async def set_metafields(self, metafields: Sequence[Mapping[str, Any]]) -> None:
        """`metafieldsSet` ({ownerId, namespace, key, type, value}); nothing else of the owner."""
        ...

    async def delete_metafields(self, metafields: Sequence[Mapping[str, Any]]) -> None:
        """`metafieldsDelete` ({ownerId, namespace, key}); one already gone is no error."""
        ...

    async def publications(self) -> dict[str, str]:
        """The store's sales channels: name -> publication id."""
        ...

    async def channels_of(self, resource_id: str) -> list[str]:
        """Names of the channels a product or collection is published on."""
        ...

    async def publish(self, resource_id: str, publication_ids: Sequence[str]) -> None:
        """`publishablePublish` of a product or collection on these publications."""
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


class BatchInventoryStore(InventoryStore, Protocol):
    """A store that sets many levels in one call (coalesced level pushes)."""

    async def set_levels(
        self, sets: Sequence[LevelSet], *, idempotency_key: str, reason: str = "correction"
    ) -> None:
        """One `inventorySetQuantities` (name "available") carrying every set, each with its
        `changeFromQuantity`, under `@idempotent(key:)`. StaleQuantity (with the stale indices)
        when any quantity was stale: then none was applied."""
        ...

    async def adjust_levels(
        self, changes: Sequence[LevelChange], *, idempotency_key: str, reason: str = "correction"
    ) -> None:
        """One `inventoryAdjustQuantities` carrying every change, each with its
        `changeFromQuantity`, under `@idempotent(key:)`; StaleQuantity (with the stale indices)
        when any was stale: then none was applied. A repeated key applies nothing again."""
        ...

    async def read_levels(self, inventory_item_ids: Sequence[str]) -> dict[tuple[str, str], InventoryLevel]:
        """Every level of these items, (item, location) -> level, in as few reads as fit."""
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


class CollectionStore(Protocol):
    shop: str

    async def read_collection(self, collection_id: str, *, with_products: bool = False) -> Collection | None:
        """The collection (None: gone); with its members' ids (`product_ids`) when asked."""
        ...

    async def find_collection_by_handle(self, handle: str) -> Collection | None: ...

    def all_collections(self) -> AsyncIterator[Collection]:
        """Every collection of the store, without members (reconciliation)."""
        ...

    async def create_collection(self, input: dict[str, Any]) -> Collection:
        """`collectionCreate(collection: input)` (CollectionCreateInput); the collection as
        written (at least its id and handle)."""
        ...

    async def update_collection(self, collection_id: str, input: dict[str, Any]) -> Collection:
        """`collectionUpdate(collection: input)` (CollectionUpdateInput) of the fields in `input`."""
        ...

    async def delete_collection(self, collection_id: str) -> None:
        """`collectionDelete`; one already gone is not an error."""
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

    async def set_synced_view(
        self, child_shop: str, parent_product_id: str, view: dict[str, Any]
    ) -> None: ...

    async def set_synced_views(self, child_shop: str, views: Mapping[str, dict[str, Any]]) -> None:
        """`set_synced_view` for many products of one child (parent product id -> view)."""
        ...

    async def delete_link(self, child_shop: str, kind: LinkKind, parent_id: str) -> None: ...

    async def child_links(
        self,
        child_shop: str,
        *,
        products: Sequence[str] = (),
        variants: Sequence[str] = (),
        items: Sequence[str] = (),
        collections: bool = False,
    ) -> LinkMap:
        """The links of one child for these child products, variants and inventory items only (and
        its collection links if `collections`): a webhook needs a handful, not the whole map."""
        ...

    async def parent_items_of(self, items: Sequence[tuple[str, str]]) -> dict[tuple[str, str], str]:
        """The parent inventory item linked to each (child shop, child inventory item) that has
        one (a level webhook of any other child item is none of the engine's business)."""
        ...

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

    async def links_of(
        self,
        child_shop: str,
        kind: LinkKind,
        *,
        parent_ids: Sequence[str] = (),
        child_ids: Sequence[str] = (),
    ) -> list[Link]:
        """One child's links of `kind` for these parent ids or these child ids."""
        ...


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

    async def recent_writes_of_levels(
        self, levels: Sequence[tuple[str, str, str, datetime]], *, limit: int = 100
    ) -> list[list[WriteRecord]]:
        """`recent_writes` of several levels at once, each (shop, item, location, since): one
        list per level, in the given order."""
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

    async def advance_many(self, versions: Sequence[tuple[str, str, str, datetime, str]]) -> list[bool]:
        """`advance` of several (shop, item, location, at, tiebreak) at once, each answered as if
        advanced one by one in the given order (a level given twice: the second is judged after
        the first)."""
        ...

    async def current(
        self, shop: str, inventory_item_id: str, location_id: str
    ) -> tuple[datetime, str] | None: ...

    async def moved_since(
        self, shop: str, levels: Sequence[tuple[str, str]], since: datetime
    ) -> list[tuple[str, str]]:
        """Which of these (item, location) levels have a version applied after `since`."""
        ...


@dataclass(frozen=True)
class Attention:
    """Something storesync did not do, or could not, that the merchant should know about
    (`storesync status`, the dashboard's failures page)."""

    shop: str
    kind: str  # handle_conflict, own_product_unlinked, media_failed, copy_step_failed, channel_missing
    subject: str  # what it is about: a parent product's gid, ...
    detail: str
    first_at: datetime | None = None
    last_at: datetime | None = None
    times: int = 1


@runtime_checkable
class AttentionLog(Protocol):
    async def report(self, shop: str, kind: str, subject: str, detail: str) -> bool:
        """Record it (the open one of that shop, kind and subject updated); True if it is new."""
        ...

    async def resolve(self, shop: str, kind: str, subject: str) -> bool:
        """The open one closed (it no longer holds); False if none was open."""
        ...

    async def is_open(self, shop: str, kind: str, subject: str) -> bool: ...

    async def open_items(self, *, limit: int = 100) -> list[Attention]: ...


@runtime_checkable
class ArchivedCopies(Protocol):
    """Copies storesync archived when their parent product was deleted: their handles are ours."""

    async def add(
        self, child_shop: str, child_product_id: str, handle: str, parent_product_id: str
    ) -> None: ...

    async def under_handle(self, child_shop: str, handle: str) -> list[str]:
        """Ids of the archived copies that had `handle`."""
        ...

    async def forget(self, child_shop: str, child_product_id: str) -> None: ...


@runtime_checkable
class AuditSink(Protocol):
    async def record(self, rec: AuditRecord) -> None: ...

    async def record_many(self, recs: Sequence[AuditRecord]) -> None: ...

    async def query(
        self,
        *,
        shop: str | None = None,
        object_id: str | None = None,
        cause: str | None = None,
        limit: int = 100,
    ) -> list[AuditRecord]: ...


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

    async def mark_pending(self, key: LedgerKey, parent_shop: str) -> LedgerEntry:
        """Leave a claimed entry to the parent's batched adjust (`adjusts.py`); the entry as
        stored (one already planned or applied is returned unchanged)."""
        ...

    async def restocked(self, child_shop: str, order_line_id: str) -> int:
        """Units given back on an order line so far (restocks and edits' removals, any status)."""
        ...

    async def claim_top_up(self, entry: LedgerEntry, units: int) -> LedgerEntry | None:
        """Claim a counter's top-up (`inventory.counter_key`) to `units`, under a lock of that
        counter: the entry claimed for `units` already (a duplicate), or a new one for the units
        not counted yet (its requested delta computed here), or None when all are counted. A
        new entry's movement is added to the child level's stock account, if one is kept (as by
        `claim`)."""
        ...

    async def order_entries(self, child_shop: str, order_id: str) -> list[LedgerRow]:
        """Every entry of one order."""
        ...

    async def orders_entries(self, child_shop: str, order_ids: Sequence[str]) -> dict[str, list[LedgerRow]]:
        """Every entry of several orders of one child, by order id (each id present)."""
        ...


# --------------------------------------------------------------------------- policy report, orders, locations


@dataclass(frozen=True)
class PendingWrite:
    """A write of storesync's to a child level whose outcome is not known yet."""

    change_from: int | None
    to: int
    key: str


@dataclass(frozen=True)
class StockAccount:
    """One child level of a child whose own moves are reported (policy report): `expected` is
    the level it would show if only its orders, storesync's writes and its moves already
    handled had moved it; its level minus `expected` is its move still to report."""

    child_shop: str
    inventory_item_id: str
    location_id: str
    expected: int
    reports: int  # moves handled so far (names the next report)
    pending: PendingWrite | None = None


@runtime_checkable
class StockAccounts(Protocol):
    async def get(self, shop: str, item: str, location: str) -> StockAccount | None: ...

    async def open(self, shop: str, item: str, location: str, expected: int) -> StockAccount:
        """Start the account at `expected` unless it exists; the account."""
        ...

    async def begin_write(
        self, shop: str, item: str, location: str, change_from: int | None, to: int, key: str
    ) -> None:
        """Record a write about to be sent (compare-and-set from `change_from` to `to`)."""
        ...

    async def end_write(self, shop: str, item: str, location: str, key: str, *, landed: bool) -> None:
        """The pending write under `key` landed (the account expects its move) or did not."""
        ...

    async def take_move(self, shop: str, item: str, location: str, number: int, delta: int) -> bool:
        """The child's `number`th own move, of `delta`, is taken (the account expects it from
        now on), if the account has taken `number - 1` moves; whether it was taken now."""
        ...


@dataclass(frozen=True)
class OrderCheckpoint:
    child_shop: str
    tracked_since: datetime  # orders placed before are the child's history
    checkpoint: datetime  # orders updated before were compared with the ledger


@runtime_checkable
class OrderCheckpoints(Protocol):
    async def get(self, shop: str) -> OrderCheckpoint: ...

    async def advance(self, shop: str, checkpoint: datetime) -> None: ...


@runtime_checkable
class InactiveLevels(Protocol):
    async def mark(self, shop: str, location: str, item: str, reason: str) -> bool: ...

    async def clear(self, shop: str, location: str, item: str) -> bool: ...

    async def among(self, levels: Sequence[tuple[str, str]]) -> dict[tuple[str, str], str]:
        """(shop, location) -> reason, for (store, inventory item) pairs ("" item: locations
        only): the store's deactivated locations, and those no longer stocking the item."""
        ...

    async def levels_among(self, levels: Sequence[tuple[str, str, str]]) -> dict[tuple[str, str, str], str]:
        """(shop, item, location) -> reason, for those of these levels not written (the store's
        location deactivated, or the item no longer stocked there)."""
        ...


@runtime_checkable
class StepLog(Protocol):
    async def create(
        self, saga_id: str, kind: str, shop: str, cause: str, steps: Sequence[StepSpec]
    ) -> SagaRecord:
        """Create the saga, or return the existing one with that id (idempotent)."""
        ...

    async def load(self, saga_id: str) -> SagaRecord | None: ...

    async def step_started(self, saga_id: str, index: int, undo: dict[str, Any] | None) -> bool:
        """PENDING -> STARTED with its undo; False if the step was not pending (another executor)."""
        ...

    async def step_done(self, saga_id: str, index: int, result: dict[str, Any]) -> None: ...

    async def step_refused(self, saga_id: str, index: int) -> None:
        """STARTED -> PENDING without its undo: the step did nothing (`StepRefused`)."""
        ...

    async def step_compensated(self, saga_id: str, index: int) -> None: ...

    async def set_state(self, saga_id: str, state: SagaState, error: str | None = None) -> None: ...

    async def unfinished(self, limit: int = 100) -> list[str]:
        """Ids of sagas left running or compensating (to resume after a restart), oldest first."""
        ...

    async def unfinished_sagas(self, limit: int = 100) -> list[tuple[str, str]]:
        """(saga id, shop) of the sagas left running or compensating, oldest first."""
        ...

    async def states(self, kind: str, prefix: str | None = None) -> dict[str, SagaState]:
        """Every saga of one kind (whose id starts with `prefix`, when given): id -> state."""
        ...


class StepAction(Protocol):
    async def prepare(self, params: dict[str, Any], ctx: StepContext) -> dict[str, Any] | None:
        """What undoes this step, decided before it runs (None: nothing to undo)."""
        ...

    async def run(self, params: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
        """Do the step; idempotent (it runs again after a crash)."""
        ...

    async def undo(self, undo: dict[str, Any], ctx: StepContext) -> None:
        """Undo the step; idempotent and fine when the step never ran."""
        ...
