"""Postgres adapters for the sync domain's storage ports, and every SQL statement of the sync
part, each named with a one-line description (tables of migration 0005 and its successors:
sync_links, sync_inventory_ledger, sync_inventory_backlog, sync_write_records,
sync_applied_versions, sync_sagas, sync_saga_steps, sync_audit; 0016's sync_changes and
sync_reconcile_runs). The stores table belongs to
`db/` (`db.network_sql`); the queue's tables to `queue/`.

Each adapter works on an `psycopg.AsyncConnection` the caller passes, and is safe on the pooled
path (no session state: no SET, LISTEN or session locks; prepared statements only as the pool
allows). Every method commits on its own: give it an idle connection (autocommit, or nothing
open). A method of several statements runs them in one `conn.transaction()`; a method of one
statement on an autocommit connection sends just that statement (`_one_statement`: a BEGIN and
a COMMIT would triple its round trips). The ledger's crash safety depends on that: a claim or
plan must be durable before the store is called.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager, nullcontext
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from storesync.db import network_sql
from storesync.logs import get_logger
from storesync.sync.domain.adjusts import AdjustBatch, levels_after
from storesync.sync.domain.audit import AuditRecord
from storesync.sync.domain.echoes import ProductDigest
from storesync.sync.domain.health import SourceChange
from storesync.sync.domain.inventory import (
    EntryKind,
    EntryStatus,
    LedgerEntry,
    LedgerKey,
    counter_key,
    counter_top_up,
)
from storesync.sync.domain.model import Link, LinkKind, LinkMap, MatchedBy, WriteRecord
from storesync.sync.domain.orders import LedgerRow
from storesync.sync.domain.ports import Attention, OrderCheckpoint, PendingWrite, StockAccount
from storesync.sync.domain.pushes import LastWrite, PendingPush
from storesync.sync.domain.saga import SagaRecord, SagaState, StepRecord, StepSpec, StepStatus

log = get_logger("storesync.sync")


def _one_statement(conn: psycopg.AsyncConnection) -> AbstractAsyncContextManager[Any]:
    """The transaction around a method's single statement: none on an autocommit connection
    (the statement commits by itself, or joins the caller's open transaction), else its own."""
    return nullcontext() if conn.autocommit else conn.transaction()


async def _value_by_pair(
    conn: psycopg.AsyncConnection, query: str, names: tuple[str, str], pairs: Sequence[tuple[str, str]]
) -> dict[tuple[str, str], Any]:
    """`query` over `pairs` given as two parallel arrays (`names`), its rows (a, b, value) as
    {(a, b): value}; nothing asked when there are no pairs."""
    if not pairs:
        return {}
    async with _one_statement(conn):
        cur = await conn.execute(query, {names[0]: [p[0] for p in pairs], names[1]: [p[1] for p in pairs]})
        return {(a, b): value for a, b, value in await cur.fetchall()}


# The insert of inventory write records from parallel arrays (`_write_columns`; prefixed `w_`,
# clear of the links' columns in LINK_PENDING_COPY). Shared by record_writes and link_pending_copy.
_WRITE_ROWS = """
INSERT INTO sync_write_records (shop, inventory_item_id, location_id, quantity, written_at, cause)
SELECT * FROM unnest(%(w_shop)s::text[], %(w_item)s::text[], %(w_location)s::text[], %(w_quantity)s::integer[],
                     %(w_written_at)s::timestamptz[], %(w_cause)s::text[])
{where}
"""


def _write_columns(recs: Sequence[WriteRecord]) -> dict[str, list[Any]]:
    return {
        "w_shop": [r.shop for r in recs],
        "w_item": [r.inventory_item_id for r in recs],
        "w_location": [r.location_id for r in recs],
        "w_quantity": [r.quantity for r in recs],
        "w_written_at": [r.written_at for r in recs],
        "w_cause": [r.cause for r in recs],
    }


# --------------------------------------------------------------------------- links

# The upsert of links from parallel arrays (one row per key): how each was first matched, and its
# synced view unless given, stay. Shared by upsert_links and link_pending_copy.
_LINK_ROWS = """
INSERT INTO sync_links (child_shop, kind, parent_id, child_id, matched_by, parent_product_id, child_product_id,
                        parent_inventory_item_id, child_inventory_item_id, synced_view, pending)
SELECT * FROM unnest(%(child_shop)s::text[], %(kind)s::text[], %(parent_id)s::text[], %(child_id)s::text[],
                     %(matched_by)s::text[], %(parent_product_id)s::text[], %(child_product_id)s::text[],
                     %(parent_inventory_item_id)s::text[], %(child_inventory_item_id)s::text[],
                     %(synced_view)s::jsonb[], %(pending)s::jsonb[])
{where}
ON CONFLICT (child_shop, kind, parent_id) DO UPDATE SET
    child_id = EXCLUDED.child_id,
    parent_product_id = EXCLUDED.parent_product_id,
    child_product_id = EXCLUDED.child_product_id,
    parent_inventory_item_id = EXCLUDED.parent_inventory_item_id,
    child_inventory_item_id = EXCLUDED.child_inventory_item_id,
    synced_view = COALESCE(EXCLUDED.synced_view, sync_links.synced_view),
    pending = EXCLUDED.pending,
    updated_at = now()
"""

# upsert_links: insert or refresh links.
UPSERT_LINKS = _LINK_ROWS.format(where="")

# link_pending_copy: a copy's variant links and echo records, saved if its product link still
# holds pending variants (which it clears): one statement, so of two paths linking one copy at
# once the second finds nothing pending and saves nothing. Returns whether it linked.
LINK_PENDING_COPY = (
    """
WITH taken AS (
    UPDATE sync_links SET pending = NULL, updated_at = now()
    WHERE child_shop = %(shop)s AND kind = 'product' AND parent_id = %(product)s AND pending IS NOT NULL
    RETURNING 1
), linked AS ("""
    + _LINK_ROWS.format(where="WHERE EXISTS (SELECT 1 FROM taken)")
    + """), recorded AS (
"""
    + _WRITE_ROWS.format(where="WHERE EXISTS (SELECT 1 FROM taken)")
    + """)
SELECT EXISTS (SELECT 1 FROM taken)
"""
)

# pending_links: one child's product links whose variants are not linked yet.
PENDING_LINKS = """
SELECT * FROM sync_links WHERE child_shop = %(child_shop)s AND pending IS NOT NULL ORDER BY parent_id
"""

# links_of_child: every link of one child store.
LINKS_OF_CHILD = "SELECT * FROM sync_links WHERE child_shop = %(child_shop)s ORDER BY kind, parent_id"

# links_down: each child's link for one parent object (fan-out).
LINKS_DOWN = (
    "SELECT * FROM sync_links WHERE kind = %(kind)s AND parent_id = %(parent_id)s ORDER BY child_shop"
)

# links_for_parent_item: variant links that carry one parent inventory item.
LINKS_FOR_PARENT_ITEM = """
SELECT * FROM sync_links WHERE parent_inventory_item_id = %(item)s ORDER BY child_shop
"""

# set_synced_view: remember the synced fields last written to a child product.
SET_SYNCED_VIEW = """
UPDATE sync_links SET synced_view = %(view)s, updated_at = now()
WHERE child_shop = %(child_shop)s AND kind = 'product' AND parent_id = %(parent_id)s
"""

# set_synced_views: the synced view of many product links of one child (parallel arrays).
SET_SYNCED_VIEWS = """
UPDATE sync_links l SET synced_view = v.view, updated_at = now()
FROM unnest(%(parent_ids)s::text[], %(views)s::jsonb[]) AS v(parent_id, view)
WHERE l.child_shop = %(child_shop)s AND l.kind = 'product' AND l.parent_id = v.parent_id
"""

# product_fan_out_links: every child's link of one parent product and of the parent collections it belongs to.
PRODUCT_FAN_OUT_LINKS = """
SELECT * FROM sync_links
WHERE (kind = 'product' AND parent_id = %(product)s) OR (kind = 'collection' AND parent_id = ANY(%(collections)s))
ORDER BY child_shop, kind, parent_id
"""

# links_of: one child's links of one kind for some parent ids or some child ids.
LINKS_OF = """
SELECT * FROM sync_links
WHERE child_shop = %(child_shop)s AND kind = %(kind)s
  AND (parent_id = ANY(%(parent_ids)s) OR child_id = ANY(%(child_ids)s))
ORDER BY parent_id
"""

# child_links_subset: the links of one child for some of its products (with their media), variants
# or inventory items, and its collection links when asked (a webhook or a sale needs a handful, not the whole map).
# One branch per index, so that even a generic plan made while the table was empty looks each
# id up in its index (one OR of the four read every link of the child).
CHILD_LINKS_SUBSET = """
SELECT * FROM sync_links
WHERE child_shop = %(child_shop)s AND kind = 'product' AND child_id = ANY(%(products)s)
UNION ALL
SELECT * FROM sync_links
WHERE child_shop = %(child_shop)s AND kind = 'variant' AND child_id = ANY(%(variants)s)
UNION ALL
SELECT * FROM sync_links
WHERE child_shop = %(child_shop)s AND child_inventory_item_id = ANY(%(items)s) AND kind = 'variant'
  AND NOT child_id = ANY(%(variants)s)
UNION ALL
SELECT * FROM sync_links
WHERE child_shop = %(child_shop)s AND kind = 'collection' AND %(collections)s
UNION ALL
SELECT * FROM sync_links
WHERE child_shop = %(child_shop)s AND kind = 'media' AND child_product_id = ANY(%(products)s)
"""

# parent_items_of: the parent inventory item linked to each of some (child shop, child inventory
# item) pairs that has one (a variant link; by sync_links_by_child_item).
PARENT_ITEMS_OF = """
SELECT l.child_shop, l.child_inventory_item_id, l.parent_inventory_item_id
FROM unnest(%(shop)s::text[], %(item)s::text[]) AS k(shop, item)
JOIN sync_links l ON l.child_shop = k.shop AND l.child_inventory_item_id = k.item AND l.kind = 'variant'
WHERE l.parent_inventory_item_id IS NOT NULL
"""

# links_by_child: per child store, its linked products and the copies whose variants are not linked yet.
LINKS_BY_CHILD = """
SELECT child_shop, count(*) FILTER (WHERE kind = 'product'), count(*) FILTER (WHERE pending IS NOT NULL)
FROM sync_links GROUP BY child_shop
"""

# analyze_links: fresh planner statistics for the links table, which a backfill fills from a few
# rows to thousands in seconds: planned on stale statistics, a child's link lookup by inventory
# item read every index entry of the child (0.7 ms instead of 0.05) until autovacuum got to it.
ANALYZE_LINKS = "ANALYZE sync_links"

# delete_link: forget a link (its parent object is gone).
DELETE_LINK = "DELETE FROM sync_links WHERE child_shop = %(child_shop)s AND kind = %(kind)s AND parent_id = %(parent_id)s"


def _link_columns(links: Sequence[Link]) -> dict[str, list[Any]]:
    """Links as the parallel arrays of `_LINK_ROWS`, one per key: a key given twice keeps its
    last link (one statement cannot update a row twice)."""
    unique = list({(lk.child_shop, lk.kind, lk.parent_id): lk for lk in links}.values())
    return {
        "child_shop": [lk.child_shop for lk in unique],
        "kind": [str(lk.kind) for lk in unique],
        "parent_id": [lk.parent_id for lk in unique],
        "child_id": [lk.child_id for lk in unique],
        "matched_by": [str(lk.matched_by) for lk in unique],
        "parent_product_id": [lk.parent_product_id for lk in unique],
        "child_product_id": [lk.child_product_id for lk in unique],
        "parent_inventory_item_id": [lk.parent_inventory_item_id for lk in unique],
        "child_inventory_item_id": [lk.child_inventory_item_id for lk in unique],
        "synced_view": [_json(lk.synced_view) for lk in unique],
        "pending": [_json(lk.pending) for lk in unique],
    }


def _link(row: dict[str, Any]) -> Link:
    return Link(
        kind=LinkKind(row["kind"]),
        child_shop=row["child_shop"],
        parent_id=row["parent_id"],
        child_id=row["child_id"],
        matched_by=MatchedBy(row["matched_by"]),
        parent_product_id=row["parent_product_id"],
        child_product_id=row["child_product_id"],
        parent_inventory_item_id=row["parent_inventory_item_id"],
        child_inventory_item_id=row["child_inventory_item_id"],
        synced_view=row["synced_view"],
        pending=row.get("pending"),
    )


def links_by_child(conn: psycopg.Connection) -> dict[str, tuple[int, int]]:
    """Per child store: (linked products, copies whose variants are not linked yet) (`storesync
    status`, on the CLI's synchronous connection)."""
    return {shop: (products, pending) for shop, products, pending in conn.execute(LINKS_BY_CHILD).fetchall()}


class PgLinks:
    def __init__(self, conn: psycopg.AsyncConnection) -> None:
        self.conn = conn

    async def save_links(self, links: Sequence[Link]) -> int:
        # One statement for the batch (atomic, one round trip); a key given twice keeps its last
        # link, as the row-by-row upsert did (one statement cannot update a row twice).
        if not links:
            return 0
        async with _one_statement(self.conn):
            await self.conn.execute(UPSERT_LINKS, _link_columns(links))
        return len(links)

    async def pending_links(self, child_shop: str) -> list[Link]:
        return await self._rows(PENDING_LINKS, {"child_shop": child_shop})

    async def child_links(
        self,
        child_shop: str,
        *,
        products: Sequence[str] = (),
        variants: Sequence[str] = (),
        items: Sequence[str] = (),
        collections: bool = False,
    ) -> LinkMap:
        return LinkMap(
            child_shop,
            await self._rows(
                CHILD_LINKS_SUBSET,
                {
                    "child_shop": child_shop,
                    "products": list(products),
                    "variants": list(variants),
                    "items": list(items),
                    "collections": collections,
                },
            ),
        )

    async def parent_items_of(self, items: Sequence[tuple[str, str]]) -> dict[tuple[str, str], str]:
        return await _value_by_pair(self.conn, PARENT_ITEMS_OF, ("shop", "item"), items)

    async def counts_by_child(self) -> dict[str, tuple[int, int]]:
        """Per child store: (linked products, copies whose variants are not linked yet)."""
        async with _one_statement(self.conn):
            cur = await self.conn.execute(LINKS_BY_CHILD)
            return {shop: (products, pending) for shop, products, pending in await cur.fetchall()}

    async def analyze(self) -> None:
        """Fresh planner statistics for the links table (see ANALYZE_LINKS)."""
        await self.conn.execute(ANALYZE_LINKS)

    async def complete_pending(
        self, child_shop: str, parent_product_id: str, links: Sequence[Link], writes: Sequence[WriteRecord]
    ) -> bool:
        async with _one_statement(self.conn):
            cur = await self.conn.execute(
                LINK_PENDING_COPY,
                {
                    "shop": child_shop,
                    "product": parent_product_id,
                    **_link_columns(links),
                    **_write_columns(writes),
                },
            )
            row = await cur.fetchone()
            return bool(row and row[0])

    async def _rows(self, sql: str, params: dict[str, Any]) -> list[Link]:
        async with _one_statement(self.conn), self.conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(sql, params)
            return [_link(r) for r in await cur.fetchall()]

    async def link_map(self, child_shop: str) -> LinkMap:
        return LinkMap(child_shop, await self._rows(LINKS_OF_CHILD, {"child_shop": child_shop}))

    async def links_down(self, kind: LinkKind, parent_id: str) -> list[Link]:
        return await self._rows(LINKS_DOWN, {"kind": str(kind), "parent_id": parent_id})

    async def links_for_parent_item(self, parent_inventory_item_id: str) -> list[Link]:
        return await self._rows(LINKS_FOR_PARENT_ITEM, {"item": parent_inventory_item_id})

    async def product_fan_out_links(
        self, parent_product_id: str, parent_collection_ids: Sequence[str]
    ) -> list[Link]:
        """What `echoes.children_behind` needs: the product's links and its collections' links."""
        return await self._rows(
            PRODUCT_FAN_OUT_LINKS, {"product": parent_product_id, "collections": list(parent_collection_ids)}
        )

    async def links_of(
        self,
        child_shop: str,
        kind: LinkKind,
        *,
        parent_ids: Sequence[str] = (),
        child_ids: Sequence[str] = (),
    ) -> list[Link]:
        if not parent_ids and not child_ids:
            return []
        return await self._rows(
            LINKS_OF,
            {
                "child_shop": child_shop,
                "kind": str(kind),
                "parent_ids": list(parent_ids),
                "child_ids": list(child_ids),
            },
        )

    async def set_synced_view(self, child_shop: str, parent_product_id: str, view: dict) -> None:
        async with _one_statement(self.conn):
            await self.conn.execute(
                SET_SYNCED_VIEW,
                {"child_shop": child_shop, "parent_id": parent_product_id, "view": Jsonb(view)},
            )

    async def set_synced_views(self, child_shop: str, views: Mapping[str, dict]) -> None:
        if not views:
            return
        async with _one_statement(self.conn):
            await self.conn.execute(
                SET_SYNCED_VIEWS,
                {
                    "child_shop": child_shop,
                    "parent_ids": list(views),
                    "views": [Jsonb(v) for v in views.values()],
                },
            )

    async def delete_link(self, child_shop: str, kind: LinkKind, parent_id: str) -> None:
        async with _one_statement(self.conn):
            await self.conn.execute(
                DELETE_LINK, {"child_shop": child_shop, "kind": str(kind), "parent_id": parent_id}
            )


# --------------------------------------------------------------------------- inventory ledger

_KEY_WHERE = (
    "child_shop = %(child_shop)s AND order_line_id = %(order_line_id)s AND kind = %(kind)s AND ref = %(ref)s"
)

# claim_entry: insert a ledger entry unless its key exists (then nothing is returned).
CLAIM_ENTRY = """
INSERT INTO sync_inventory_ledger (child_shop, order_line_id, kind, ref, order_id, parent_item_id,
                                   parent_location_id, requested_delta, cause, child_item_id, child_location_id)
VALUES (%(child_shop)s, %(order_line_id)s, %(kind)s, %(ref)s, %(order_id)s, %(parent_item_id)s,
        %(parent_location_id)s, %(requested_delta)s, %(cause)s, %(child_item_id)s, %(child_location_id)s)
ON CONFLICT (child_shop, order_line_id, kind, ref) DO NOTHING
RETURNING *
"""

# lock_line_counter: serialise the top-ups of one counter of one order line (this transaction).
LOCK_LINE_COUNTER = """
SELECT pg_advisory_xact_lock(hashtextextended(%(child_shop)s || '|' || %(order_line_id)s || '|' || %(kind)s, 0))
"""

# counted_units: the units a counter of one order line counts so far.
COUNTED_UNITS = """
SELECT COALESCE(sum(abs(requested_delta)), 0) FROM sync_inventory_ledger
WHERE child_shop = %(child_shop)s AND order_line_id = %(order_line_id)s AND kind = %(kind)s
"""

# account_movement: a claimed entry's movement, in the stock account of its child level (if kept).
ACCOUNT_MOVEMENT = """
UPDATE sync_stock_accounts SET expected = expected + %(delta)s, updated_at = now()
WHERE child_shop = %(child_shop)s AND inventory_item_id = %(item)s AND location_id = %(location)s
"""

# order_entries: every ledger entry of one order (what its webhooks and reconciliations compare).
ORDER_ENTRIES = """
SELECT order_line_id, kind, ref, requested_delta, status, parent_location_id, child_location_id
FROM sync_inventory_ledger WHERE child_shop = %(child_shop)s AND order_id = %(order_id)s
"""

# orders_entries: the ledger entries of several orders of one child (a reconciliation's page).
ORDERS_ENTRIES = """
SELECT order_id, order_line_id, kind, ref, requested_delta, status, parent_location_id, child_location_id
FROM sync_inventory_ledger WHERE child_shop = %(child_shop)s AND order_id = ANY(%(order_ids)s)
"""

# get_entry: one ledger entry by its key.
GET_ENTRY = f"SELECT * FROM sync_inventory_ledger WHERE {_KEY_WHERE}"

# plan_entry: store the plan of a claimed entry; only the first planner succeeds, and never for
# an entry left to the parent's batched adjust.
PLAN_ENTRY = f"""
UPDATE sync_inventory_ledger
SET status = 'planned', applied_delta = %(applied_delta)s, backlog_after = %(backlog_after)s,
    expected_after = %(expected_after)s, planned_at = now()
WHERE {_KEY_WHERE} AND status = 'claimed' AND pending_parent IS NULL
RETURNING *
"""

# replan_entry: replace a plan whose compare-and-set lost; only from that exact plan number.
REPLAN_ENTRY = f"""
UPDATE sync_inventory_ledger
SET applied_delta = %(applied_delta)s, backlog_after = %(backlog_after)s, expected_after = %(expected_after)s,
    plan_no = plan_no + 1, planned_at = now()
WHERE {_KEY_WHERE} AND status = 'planned' AND plan_no = %(replan_of)s
RETURNING *
"""

# next_key_attempt: a planned entry's idempotency key was refused as spent; the next one, from
# that exact attempt number only (stored before it is sent).
NEXT_KEY_ATTEMPT = f"""
UPDATE sync_inventory_ledger SET key_attempt = key_attempt + 1
WHERE {_KEY_WHERE} AND status = 'planned' AND key_attempt = %(spent)s
RETURNING *
"""

# apply_entry: a planned entry becomes applied; returns its item and backlog for the backlog update.
APPLY_ENTRY = f"""
UPDATE sync_inventory_ledger SET status = 'applied', quantity_after = %(quantity_after)s, applied_at = now()
WHERE {_KEY_WHERE} AND status = 'planned'
RETURNING parent_item_id, parent_location_id, backlog_after
"""

# set_backlog: the oversold units of a parent item+location after an applied entry.
SET_BACKLOG = """
INSERT INTO sync_inventory_backlog (parent_item_id, parent_location_id, oversold)
VALUES (%(item)s, %(location)s, %(oversold)s)
ON CONFLICT (parent_item_id, parent_location_id) DO UPDATE SET oversold = EXCLUDED.oversold, updated_at = now()
"""

# get_backlog: oversold units of a parent item+location (none: 0).
GET_BACKLOG = """
SELECT oversold FROM sync_inventory_backlog WHERE parent_item_id = %(item)s AND parent_location_id = %(location)s
"""

# unfinished_entries: claimed or planned entries of an item+location applied one at a time (not
# those left to the parent's batched adjust), oldest first.
UNFINISHED_ENTRIES = """
SELECT * FROM sync_inventory_ledger
WHERE parent_item_id = %(item)s AND parent_location_id = %(location)s AND status <> 'applied'
  AND pending_parent IS NULL
ORDER BY id
"""

# mark_pending: a claimed entry left to the parent's batched adjust (sync/domain/adjusts.py).
MARK_PENDING = f"""
UPDATE sync_inventory_ledger SET pending_parent = %(parent)s
WHERE {_KEY_WHERE} AND status = 'claimed' AND pending_parent IS NULL
RETURNING *
"""

# get_backlogs: oversold units of some parent item+locations (absent: 0).
GET_BACKLOGS = """
SELECT parent_item_id, parent_location_id, oversold FROM sync_inventory_backlog
WHERE (parent_item_id, parent_location_id) IN (SELECT * FROM unnest(%(item)s::text[], %(location)s::text[]))
"""

# set_backlogs: the oversold units of some parent item+locations after a batch.
SET_BACKLOGS = """
INSERT INTO sync_inventory_backlog (parent_item_id, parent_location_id, oversold)
SELECT * FROM unnest(%(item)s::text[], %(location)s::text[], %(oversold)s::integer[])
ON CONFLICT (parent_item_id, parent_location_id) DO UPDATE SET oversold = EXCLUDED.oversold, updated_at = now()
"""

# pending_entries: a parent's entries waiting for its next batch, oldest first.
PENDING_ENTRIES = """
SELECT * FROM sync_inventory_ledger
WHERE pending_parent = %(parent)s AND status = 'claimed'
ORDER BY id
LIMIT %(limit)s
"""

# create_batch: a new batch in flight for a parent.
CREATE_BATCH = "INSERT INTO sync_adjust_batches (parent_shop) VALUES (%(parent)s) RETURNING id"

# plan_batch_entries: the batch's entries take their plans (claimed ones only).
PLAN_BATCH_ENTRIES = """
UPDATE sync_inventory_ledger AS l
SET status = 'planned', applied_delta = t.applied, backlog_after = t.backlog, expected_after = t.expected,
    batch_id = %(batch)s, planned_at = now()
FROM unnest(%(id)s::bigint[], %(applied)s::integer[], %(backlog)s::integer[], %(expected)s::integer[])
    AS t(id, applied, backlog, expected)
WHERE l.id = t.id AND l.status = 'claimed' AND l.pending_parent = %(parent)s
"""

# open_batches: a parent's batches in flight, oldest first.
OPEN_BATCHES = "SELECT id, key_attempt FROM sync_adjust_batches WHERE parent_shop = %(parent)s ORDER BY id"

# batch_entries: the planned entries of some batches, oldest first.
BATCH_ENTRIES = """
SELECT * FROM sync_inventory_ledger WHERE batch_id = ANY(%(batches)s) AND status = 'planned' ORDER BY id
"""

# next_batch_attempt: the batch's key was refused as spent; the next one, from that attempt only.
NEXT_BATCH_ATTEMPT = """
UPDATE sync_adjust_batches SET key_attempt = key_attempt + 1
WHERE id = %(batch)s AND key_attempt = %(spent)s
RETURNING key_attempt
"""

# batch_applied: the batch's entries are applied, each at the level its plan expected.
BATCH_APPLIED = """
UPDATE sync_inventory_ledger SET status = 'applied', quantity_after = expected_after, applied_at = now()
WHERE batch_id = %(batch)s AND status = 'planned'
"""

# batch_void: nothing of the batch was applied; its entries wait again (or, `released`, are left
# to be applied one at a time), without a plan.
BATCH_VOID = """
UPDATE sync_inventory_ledger
SET status = 'claimed', applied_delta = NULL, backlog_after = NULL, expected_after = NULL, planned_at = NULL,
    batch_id = NULL, pending_parent = CASE WHEN id = ANY(%(released)s) THEN NULL ELSE pending_parent END
WHERE batch_id = %(batch)s AND status = 'planned'
"""

# release_entries: entries left to be applied one at a time (the batched path cannot).
RELEASE_ENTRIES = """
UPDATE sync_inventory_ledger SET pending_parent = NULL WHERE id = ANY(%(ids)s) AND status = 'claimed'
"""

# drop_batch: a batch no longer in flight.
DROP_BATCH = "DELETE FROM sync_adjust_batches WHERE id = %(batch)s"

# restocked_quantity: units given back so far on one order line (restocks, edits' removals).
RESTOCKED_QUANTITY = """
SELECT COALESCE(sum(requested_delta), 0) FROM sync_inventory_ledger
WHERE child_shop = %(child_shop)s AND order_line_id = %(order_line_id)s AND kind IN ('restock', 'edit_removal')
"""


def _key_params(key: LedgerKey) -> dict[str, Any]:
    return {
        "child_shop": key.child_shop,
        "order_line_id": key.order_line_id,
        "kind": str(key.kind),
        "ref": key.ref,
    }


def _entry(row: dict[str, Any]) -> LedgerEntry:
    return LedgerEntry(
        key=LedgerKey(row["child_shop"], row["order_line_id"], EntryKind(row["kind"]), row["ref"]),
        order_id=row["order_id"],
        parent_item_id=row["parent_item_id"],
        parent_location_id=row["parent_location_id"],
        requested_delta=row["requested_delta"],
        cause=row["cause"],
        status=EntryStatus(row["status"]),
        applied_delta=row["applied_delta"],
        backlog_after=row["backlog_after"],
        expected_after=row["expected_after"],
        quantity_after=row["quantity_after"],
        plan_no=row["plan_no"],
        key_attempt=row["key_attempt"],
        child_item_id=row.get("child_item_id"),
        child_location_id=row.get("child_location_id"),
        pending_parent=row.get("pending_parent"),
        batch_id=row.get("batch_id"),
        ledger_id=row.get("id"),
    )


def _ledger_row(row: Sequence[Any]) -> LedgerRow:
    line, kind, ref, delta, status, parent_location, child_location = row
    return LedgerRow(line, EntryKind(kind), ref, delta, EntryStatus(status), parent_location, child_location)


def _claim_params(entry: LedgerEntry) -> dict[str, Any]:
    return {
        **_key_params(entry.key),
        "order_id": entry.order_id,
        "parent_item_id": entry.parent_item_id,
        "parent_location_id": entry.parent_location_id,
        "requested_delta": entry.requested_delta,
        "cause": entry.cause,
        "child_item_id": entry.child_item_id,
        "child_location_id": entry.child_location_id,
    }


async def _account_movement(cur: psycopg.AsyncCursor[Any], entry: LedgerEntry) -> None:
    """A new order entry moved the child's level where it happened: its stock account (kept for
    children whose own moves are reported) expects that move."""
    if entry.key.kind is EntryKind.MANUAL or not (entry.child_item_id and entry.child_location_id):
        return
    await cur.execute(
        ACCOUNT_MOVEMENT,
        {
            "delta": entry.requested_delta,
            "child_shop": entry.key.child_shop,
            "item": entry.child_item_id,
            "location": entry.child_location_id,
        },
    )


class PgLedger:
    def __init__(self, conn: psycopg.AsyncConnection) -> None:
        self.conn = conn

    async def claim(self, entry: LedgerEntry) -> tuple[LedgerEntry, bool]:
        params = _claim_params(entry)
        async with self.conn.transaction(), self.conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(CLAIM_ENTRY, params)
            row = await cur.fetchone()
            if row is not None:
                await _account_movement(cur, entry)
                return _entry(row), True
            await cur.execute(GET_ENTRY, params)
            row = await cur.fetchone()
        if row is None:  # deleted in between: cannot happen without an operator
            raise RuntimeError(f"ledger entry {entry.key} vanished")
        stored = _entry(row)
        if (stored.parent_item_id, stored.requested_delta) != (entry.parent_item_id, entry.requested_delta):
            raise ValueError(f"ledger entry {entry.key} exists with different content: {stored}")
        if stored.parent_location_id != entry.parent_location_id:
            # Two sources placed one movement differently (a fulfillment order moved between
            # them): the first claim holds.
            log.warning("ledger entry claimed again at another location", key=str(entry.key))
        return stored, False

    async def claim_top_up(self, entry: LedgerEntry, units: int) -> LedgerEntry | None:
        """Claim the top-up of a counter (SALE, EDIT_REMOVAL) of one order line to `units`:
        under a lock of the counter, the entry already claimed for `units` (a duplicate), or a
        new one for the units not counted yet, or None when they all are."""
        key = counter_key(entry.key.child_shop, entry.key.order_line_id, entry.key.kind, units)
        async with self.conn.transaction(), self.conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(LOCK_LINE_COUNTER, _key_params(key))
            await cur.execute(GET_ENTRY, _key_params(key))
            row = await cur.fetchone()
            if row is not None:
                return _entry(row)
            await cur.execute(COUNTED_UNITS, _key_params(key))
            counted = await cur.fetchone()
            delta = counter_top_up(key.kind, units, int(counted["coalesce"]) if counted else 0)
            if delta is None:
                return None
            claimed = replace(entry, key=key, requested_delta=delta)
            await cur.execute(CLAIM_ENTRY, _claim_params(claimed))
            row = await cur.fetchone()
            if row is None:
                raise RuntimeError(f"ledger entry {key} appeared under its counter's lock")
            await _account_movement(cur, claimed)
            return _entry(row)

    async def order_entries(self, child_shop: str, order_id: str) -> list[LedgerRow]:
        async with _one_statement(self.conn):
            cur = await self.conn.execute(ORDER_ENTRIES, {"child_shop": child_shop, "order_id": order_id})
            return [_ledger_row(r) for r in await cur.fetchall()]

    async def orders_entries(self, child_shop: str, order_ids: Sequence[str]) -> dict[str, list[LedgerRow]]:
        out: dict[str, list[LedgerRow]] = {o: [] for o in order_ids}
        async with _one_statement(self.conn):
            cur = await self.conn.execute(
                ORDERS_ENTRIES, {"child_shop": child_shop, "order_ids": list(order_ids)}
            )
            for row in await cur.fetchall():
                out.setdefault(row[0], []).append(_ledger_row(row[1:]))
        return out

    async def plan(
        self,
        key: LedgerKey,
        applied_delta: int,
        backlog_after: int,
        expected_after: int,
        *,
        replan_of: int | None = None,
    ) -> LedgerEntry:
        params = {
            **_key_params(key),
            "applied_delta": applied_delta,
            "backlog_after": backlog_after,
            "expected_after": expected_after,
            "replan_of": replan_of,
        }
        async with self.conn.transaction(), self.conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(PLAN_ENTRY if replan_of is None else REPLAN_ENTRY, params)
            row = await cur.fetchone()
            if row is None:
                await cur.execute(GET_ENTRY, params)
                row = await cur.fetchone()
        if row is None:
            raise KeyError(f"no ledger entry {key}")
        return _entry(row)

    async def mark_applied(self, key: LedgerKey, quantity_after: int | None) -> bool:
        async with self.conn.transaction(), self.conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(APPLY_ENTRY, {**_key_params(key), "quantity_after": quantity_after})
            row = await cur.fetchone()
            if row is None:
                return False
            await cur.execute(
                SET_BACKLOG,
                {
                    "item": row["parent_item_id"],
                    "location": row["parent_location_id"],
                    "oversold": row["backlog_after"],
                },
            )
            return True

    async def next_key_attempt(self, key: LedgerKey, spent: int) -> LedgerEntry:
        return await self._update_entry(NEXT_KEY_ATTEMPT, key, {"spent": spent})

    async def _update_entry(self, statement: str, key: LedgerKey, extra: Mapping[str, Any]) -> LedgerEntry:
        """Run an UPDATE ... RETURNING of one entry; the entry as stored (also when the update
        changed nothing)."""
        params = {**_key_params(key), **extra}
        async with self.conn.transaction(), self.conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(statement, params)
            row = await cur.fetchone()
            if row is None:
                await cur.execute(GET_ENTRY, params)
                row = await cur.fetchone()
        if row is None:
            raise KeyError(f"no ledger entry {key}")
        return _entry(row)

    async def get(self, key: LedgerKey) -> LedgerEntry | None:
        async with _one_statement(self.conn), self.conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(GET_ENTRY, _key_params(key))
            row = await cur.fetchone()
        return _entry(row) if row else None

    async def unfinished(self, parent_item_id: str, parent_location_id: str) -> list[LedgerEntry]:
        async with _one_statement(self.conn), self.conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(UNFINISHED_ENTRIES, {"item": parent_item_id, "location": parent_location_id})
            return [_entry(r) for r in await cur.fetchall()]

    async def backlog(self, parent_item_id: str, parent_location_id: str) -> int:
        async with _one_statement(self.conn):
            cur = await self.conn.execute(
                GET_BACKLOG, {"item": parent_item_id, "location": parent_location_id}
            )
            row = await cur.fetchone()
        return row[0] if row else 0

    async def restocked(self, child_shop: str, order_line_id: str) -> int:
        async with _one_statement(self.conn):
            cur = await self.conn.execute(
                RESTOCKED_QUANTITY, {"child_shop": child_shop, "order_line_id": order_line_id}
            )
            row = await cur.fetchone()
        return int(row[0]) if row else 0

    async def mark_pending(self, key: LedgerKey, parent_shop: str) -> LedgerEntry:
        """Leave a claimed entry to the parent's batched adjust; the entry as stored."""
        return await self._update_entry(MARK_PENDING, key, {"parent": parent_shop})

    async def backlogs(self, keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], int]:
        return await _value_by_pair(self.conn, GET_BACKLOGS, ("item", "location"), sorted(set(keys)))


class PgAdjustBatches:
    """Coalesced sale deltas (`domain/adjusts.py`): a parent's pending entries and its batches
    in flight."""

    def __init__(self, conn: psycopg.AsyncConnection) -> None:
        self.conn = conn

    async def pending(self, parent_shop: str, *, limit: int) -> list[LedgerEntry]:
        async with _one_statement(self.conn), self.conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(PENDING_ENTRIES, {"parent": parent_shop, "limit": limit})
            return [_entry(r) for r in await cur.fetchall()]

    async def create(self, parent_shop: str, planned: Sequence[LedgerEntry]) -> AdjustBatch:
        """Store a batch and its entries' plans, in one transaction, before it is sent."""
        async with self.conn.transaction(), self.conn.cursor() as cur:
            await cur.execute(CREATE_BATCH, {"parent": parent_shop})
            row = await cur.fetchone()
            assert row is not None
            batch_id = int(row[0])
            await cur.execute(
                PLAN_BATCH_ENTRIES,
                {
                    "batch": batch_id,
                    "parent": parent_shop,
                    "id": [e.ledger_id for e in planned],
                    "applied": [e.applied_delta for e in planned],
                    "backlog": [e.backlog_after for e in planned],
                    "expected": [e.expected_after for e in planned],
                },
            )
            if cur.rowcount != len(planned):  # only this parent's one flush plans its entries
                raise RuntimeError(
                    f"{parent_shop}: {len(planned) - cur.rowcount} entries of a batch moved meanwhile"
                )
        return AdjustBatch(batch_id, parent_shop, 0, tuple(replace(e, batch_id=batch_id) for e in planned))

    async def in_flight(self, parent_shop: str) -> list[AdjustBatch]:
        async with _one_statement(self.conn), self.conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(OPEN_BATCHES, {"parent": parent_shop})
            batches = {r["id"]: r["key_attempt"] for r in await cur.fetchall()}
            if not batches:
                return []
            await cur.execute(BATCH_ENTRIES, {"batches": list(batches)})
            entries = [_entry(r) for r in await cur.fetchall()]
        return [
            AdjustBatch(b, parent_shop, attempt, tuple(e for e in entries if e.batch_id == b))
            for b, attempt in batches.items()
        ]

    async def next_attempt(self, batch: AdjustBatch) -> AdjustBatch:
        async with _one_statement(self.conn):
            cur = await self.conn.execute(NEXT_BATCH_ATTEMPT, {"batch": batch.id, "spent": batch.key_attempt})
            row = await cur.fetchone()
        if row is None:
            raise RuntimeError(f"adjust batch {batch.id}: its key attempt moved meanwhile")
        return replace(batch, key_attempt=int(row[0]))

    async def applied(self, batch: AdjustBatch) -> None:
        """The batch landed: its entries applied, the levels' backlogs, the batch dropped."""
        after = levels_after(batch.entries)
        keys = sorted(after)
        async with self.conn.transaction(), self.conn.cursor() as cur:
            await cur.execute(BATCH_APPLIED, {"batch": batch.id})
            await cur.execute(
                SET_BACKLOGS,
                {
                    "item": [k[0] for k in keys],
                    "location": [k[1] for k in keys],
                    "oversold": [after[k][1] for k in keys],
                },
            )
            await cur.execute(DROP_BATCH, {"batch": batch.id})

    async def void(self, batch: AdjustBatch, *, released: Sequence[LedgerEntry] = ()) -> None:
        """Nothing of the batch was applied: its entries wait for the next one (`released`: left
        to be applied one at a time), the batch dropped."""
        async with self.conn.transaction(), self.conn.cursor() as cur:
            await cur.execute(BATCH_VOID, {"batch": batch.id, "released": [e.ledger_id for e in released]})
            await cur.execute(DROP_BATCH, {"batch": batch.id})

    async def release(self, entries: Sequence[LedgerEntry]) -> None:
        if not entries:
            return
        async with _one_statement(self.conn):
            await self.conn.execute(RELEASE_ENTRIES, {"ids": [e.ledger_id for e in entries]})


# --------------------------------------------------------------------------- write records, versions

# record_writes: remember inventory writes the engine is about to make (one or several).
RECORD_WRITES = _WRITE_ROWS.format(where="")

# recent_writes: the engine's writes to each of some levels since a time of its own, newest first
# (parallel arrays, one element a level; `n` is its place in them). One statement for a batch of
# level webhooks judged at ingest as for the one a worker judges.
RECENT_WRITES = """
SELECT k.n, w.shop, w.inventory_item_id, w.location_id, w.quantity, w.written_at, w.cause
FROM unnest(%(shop)s::text[], %(item)s::text[], %(location)s::text[], %(since)s::timestamptz[])
     WITH ORDINALITY AS k(shop, item, location, since, n)
CROSS JOIN LATERAL (
    SELECT r.shop, r.inventory_item_id, r.location_id, r.quantity, r.written_at, r.cause
    FROM sync_write_records r
    WHERE r.shop = k.shop AND r.inventory_item_id = k.item AND r.location_id = k.location
      AND r.written_at >= k.since
    ORDER BY r.written_at DESC
    LIMIT %(limit)s
) w
ORDER BY k.n, w.written_at DESC
"""

# prune_writes: forget a batch of the oldest write records older than any echo can be.
PRUNE_WRITES = """
DELETE FROM sync_write_records WHERE id IN (
    SELECT id FROM sync_write_records WHERE written_at < %(before)s ORDER BY written_at LIMIT %(limit)s
)
"""


class PgWriteRecords:
    def __init__(self, conn: psycopg.AsyncConnection) -> None:
        self.conn = conn

    async def record_write(self, rec: WriteRecord) -> None:
        await self.record_writes([rec])

    async def record_writes(self, recs: Sequence[WriteRecord]) -> None:
        if not recs:
            return
        async with _one_statement(self.conn):
            await self.conn.execute(RECORD_WRITES, _write_columns(recs))

    async def recent_writes(
        self, shop: str, inventory_item_id: str, location_id: str, since: datetime, *, limit: int = 100
    ) -> list[WriteRecord]:
        return (
            await self.recent_writes_of_levels([(shop, inventory_item_id, location_id, since)], limit=limit)
        )[0]

    async def recent_writes_of_levels(
        self, levels: Sequence[tuple[str, str, str, datetime]], *, limit: int = 100
    ) -> list[list[WriteRecord]]:
        found: list[list[WriteRecord]] = [[] for _ in levels]
        if not levels:
            return found
        async with _one_statement(self.conn):
            cur = await self.conn.execute(
                RECENT_WRITES,
                {
                    "shop": [lv[0] for lv in levels],
                    "item": [lv[1] for lv in levels],
                    "location": [lv[2] for lv in levels],
                    "since": [lv[3] for lv in levels],
                    "limit": limit,
                },
            )
            for n, *row in await cur.fetchall():
                found[n - 1].append(WriteRecord(*row))
        return found

    async def prune(self, before: datetime, *, limit: int = 5000) -> int:
        """Delete up to `limit` records written before `before` (the oldest); returns how many."""
        async with _one_statement(self.conn):
            cur = await self.conn.execute(PRUNE_WRITES, {"before": before, "limit": limit})
            return cur.rowcount


# advance_version: keep the newer version of each of some levels (parallel arrays, one element a
# level, each level at most once); returns the levels advanced (not the stale ones: given an older
# version than the one applied). Rows go in key order so two concurrent batches cannot deadlock.
ADVANCE_VERSION = """
INSERT INTO sync_applied_versions AS v (shop, inventory_item_id, location_id, applied_at, tiebreak)
SELECT * FROM unnest(%(shop)s::text[], %(item)s::text[], %(location)s::text[], %(at)s::timestamptz[],
                     %(tiebreak)s::text[])
ORDER BY 1, 2, 3
ON CONFLICT (shop, inventory_item_id, location_id) DO UPDATE
SET applied_at = EXCLUDED.applied_at, tiebreak = EXCLUDED.tiebreak
WHERE (v.applied_at, v.tiebreak) <= (EXCLUDED.applied_at, EXCLUDED.tiebreak)
RETURNING shop, inventory_item_id, location_id
"""

# current_version: the newest version applied to one level.
CURRENT_VERSION = """
SELECT applied_at, tiebreak FROM sync_applied_versions
WHERE shop = %(shop)s AND inventory_item_id = %(item)s AND location_id = %(location)s
"""


# moved_since: the levels of some items with a version applied after a time.
MOVED_SINCE = """
SELECT inventory_item_id, location_id FROM sync_applied_versions
WHERE shop = %(shop)s AND inventory_item_id = ANY(%(items)s) AND applied_at > %(since)s
"""


_VERSION_COLUMNS = ("shop", "item", "location", "at", "tiebreak")


class PgAppliedVersions:
    def __init__(self, conn: psycopg.AsyncConnection) -> None:
        self.conn = conn

    async def advance(
        self, shop: str, inventory_item_id: str, location_id: str, at: datetime, tiebreak: str
    ) -> bool:
        return (await self.advance_many([(shop, inventory_item_id, location_id, at, tiebreak)]))[0]

    async def advance_many(self, versions: Sequence[tuple[str, str, str, datetime, str]]) -> list[bool]:
        # One statement cannot update a row twice: a level given again waits for a later round,
        # so each version is judged as if advanced one by one in the given order.
        results = [False] * len(versions)
        remaining = list(range(len(versions)))
        while remaining:
            seen: set[tuple[str, str, str]] = set()
            now: list[int] = []
            later: list[int] = []
            for i in remaining:
                key = versions[i][:3]
                (later if key in seen else now).append(i)
                seen.add(key)
            async with _one_statement(self.conn):
                cur = await self.conn.execute(
                    ADVANCE_VERSION,
                    {name: [versions[i][n] for i in now] for n, name in enumerate(_VERSION_COLUMNS)},
                )
                advanced = {tuple(row) for row in await cur.fetchall()}
            for i in now:
                results[i] = versions[i][:3] in advanced
            remaining = later
        return results

    async def current(
        self, shop: str, inventory_item_id: str, location_id: str
    ) -> tuple[datetime, str] | None:
        async with _one_statement(self.conn):
            cur = await self.conn.execute(
                CURRENT_VERSION, {"shop": shop, "item": inventory_item_id, "location": location_id}
            )
            row = await cur.fetchone()
        return (row[0], row[1]) if row else None

    async def moved_since(
        self, shop: str, levels: Sequence[tuple[str, str]], since: datetime
    ) -> list[tuple[str, str]]:
        wanted = set(levels)
        if not wanted:
            return []
        async with _one_statement(self.conn):
            cur = await self.conn.execute(
                MOVED_SINCE, {"shop": shop, "items": sorted({i for i, _ in wanted}), "since": since}
            )
            return sorted(key for key in await cur.fetchall() if key in wanted)


# swap_product_payload: the digest of the products/update payload recorded for a product (locked,
# the newest committed version), and the given one recorded instead unless it is older.
SWAP_PRODUCT_PAYLOAD = """
WITH previous AS (
    SELECT updated_at, fields_digest, stock_digest FROM sync_product_payloads
    WHERE shop = %(shop)s AND product_id = %(product)s
    FOR UPDATE
), recorded AS (
    INSERT INTO sync_product_payloads AS p (shop, product_id, updated_at, fields_digest, stock_digest)
    VALUES (%(shop)s, %(product)s, %(at)s, %(fields)s, %(stock)s)
    ON CONFLICT (shop, product_id) DO UPDATE
    SET updated_at = EXCLUDED.updated_at, fields_digest = EXCLUDED.fields_digest,
        stock_digest = EXCLUDED.stock_digest, seen_at = now()
    WHERE p.updated_at IS NULL OR EXCLUDED.updated_at IS NULL OR EXCLUDED.updated_at >= p.updated_at
)
SELECT updated_at, fields_digest, stock_digest FROM previous
"""


# remember_read_products: digests of products as a scan read them (parallel arrays), each kept
# unless the product already has one at least as new (a payload's also knows its publication).
REMEMBER_READ_PRODUCTS = """
INSERT INTO sync_product_payloads AS p (shop, product_id, updated_at, fields_digest, stock_digest)
SELECT %(shop)s, r.product, r.at, r.fields, r.stock
FROM unnest(%(products)s::text[], %(at)s::timestamptz[], %(fields)s::text[], %(stock)s::text[])
     AS r(product, at, fields, stock)
ON CONFLICT (shop, product_id) DO UPDATE
SET updated_at = EXCLUDED.updated_at, fields_digest = EXCLUDED.fields_digest,
    stock_digest = EXCLUDED.stock_digest, seen_at = now()
WHERE p.updated_at IS NULL OR EXCLUDED.updated_at > p.updated_at
"""


class PgProductPayloads:
    """The last products/update payload seen per product (`echoes.ProductDigest`)."""

    # Rows per statement when remembering a scan (a 10,000-product catalog in a few statements).
    REMEMBER_BATCH = 2000

    def __init__(self, conn: psycopg.AsyncConnection) -> None:
        self.conn = conn

    async def remember_read(self, shop: str, digests: Sequence[tuple[str, ProductDigest]]) -> int:
        """Keep the digests of products as read (product id, digest), each unless the product
        has one recorded at least as new; returns how many were kept."""
        kept = 0
        for start in range(0, len(digests), self.REMEMBER_BATCH):
            batch = digests[start : start + self.REMEMBER_BATCH]
            async with _one_statement(self.conn):
                cur = await self.conn.execute(
                    REMEMBER_READ_PRODUCTS,
                    {
                        "shop": shop,
                        "products": [pid for pid, _ in batch],
                        "at": [d.updated_at for _, d in batch],
                        "fields": [d.fields for _, d in batch],
                        "stock": [d.stock for _, d in batch],
                    },
                )
                kept += cur.rowcount
        return kept

    async def swap(self, shop: str, product_id: str, digest: ProductDigest) -> ProductDigest | None:
        """Record `digest` for the product (unless it is older than the one recorded) and return
        the one recorded before; concurrent calls for one product take turns."""
        async with _one_statement(self.conn):
            cur = await self.conn.execute(
                SWAP_PRODUCT_PAYLOAD,
                {
                    "shop": shop,
                    "product": product_id,
                    "at": digest.updated_at,
                    # The publication's digest kept in the same column ("<fields>/<publication>").
                    "fields": f"{digest.fields}/{digest.publication}"
                    if digest.publication
                    else digest.fields,
                    "stock": digest.stock,
                },
            )
            row = await cur.fetchone()
        if row is None:
            return None
        fields, _, publication = str(row[1] or "").partition("/")
        return ProductDigest(row[0], fields, row[2], publication)


# --------------------------------------------------------------------------- saga log

# create_saga: a new saga and its steps (parallel arrays), in one statement; nothing when the id
# exists (creation is idempotent). Returns whether it created the saga.
CREATE_SAGA = """
WITH saga AS (
    INSERT INTO sync_sagas (id, kind, shop, cause) VALUES (%(id)s, %(kind)s, %(shop)s, %(cause)s)
    ON CONFLICT (id) DO NOTHING
    RETURNING id
), steps AS (
    INSERT INTO sync_saga_steps (saga_id, idx, name, action, params)
    SELECT saga.id, s.* FROM saga,
        unnest(%(idx)s::integer[], %(name)s::text[], %(action)s::text[], %(params)s::jsonb[]) AS s
)
SELECT EXISTS (SELECT 1 FROM saga)
"""

# load_saga: a saga's header.
LOAD_SAGA = "SELECT id, kind, shop, cause, state, error FROM sync_sagas WHERE id = %(id)s"

# load_steps: a saga's steps in order.
LOAD_STEPS = """
SELECT idx, name, action, params, status, undo, result FROM sync_saga_steps WHERE saga_id = %(id)s ORDER BY idx
"""

# step_started: the undo of a step, recorded before the step runs.
STEP_STARTED = """
UPDATE sync_saga_steps SET status = 'started', undo = %(undo)s, started_at = now()
WHERE saga_id = %(id)s AND idx = %(idx)s AND status = 'pending'
"""

# step_done: a step ran; its result feeds later steps.
STEP_DONE = """
UPDATE sync_saga_steps SET status = 'done', result = %(result)s, done_at = now()
WHERE saga_id = %(id)s AND idx = %(idx)s AND status IN ('pending', 'started')
"""

# step_refused: the store refused a started step, which therefore did nothing: pending again,
# with no undo for the compensation to run.
STEP_REFUSED = """
UPDATE sync_saga_steps SET status = 'pending', undo = NULL, started_at = NULL
WHERE saga_id = %(id)s AND idx = %(idx)s AND status = 'started'
"""

# step_compensated: a step's undo ran.
STEP_COMPENSATED = """
UPDATE sync_saga_steps SET status = 'compensated', compensated_at = now()
WHERE saga_id = %(id)s AND idx = %(idx)s
"""

# set_saga_state: move a saga to a new state.
SET_SAGA_STATE = (
    "UPDATE sync_sagas SET state = %(state)s, error = %(error)s, updated_at = now() WHERE id = %(id)s"
)

# unfinished_sagas: sagas left running or compensating (to resume), oldest first, with their store.
UNFINISHED_SAGAS = """
SELECT id, shop FROM sync_sagas WHERE state IN ('running', 'compensating') ORDER BY created_at, id LIMIT %(limit)s
"""

# saga_states: every saga of one kind and its state (the backfill picks each copy's saga id from them).
SAGA_STATES = """
SELECT id, state FROM sync_sagas
WHERE kind = %(kind)s AND (%(prefix)s::text IS NULL OR starts_with(id, %(prefix)s::text))
"""


class PgStepLog:
    def __init__(self, conn: psycopg.AsyncConnection) -> None:
        self.conn = conn

    async def create(
        self, saga_id: str, kind: str, shop: str, cause: str, steps: Sequence[StepSpec]
    ) -> SagaRecord:
        async with _one_statement(self.conn):
            cur = await self.conn.execute(
                CREATE_SAGA,
                {
                    "id": saga_id,
                    "kind": kind,
                    "shop": shop,
                    "cause": cause,
                    "idx": list(range(len(steps))),
                    "name": [s.name for s in steps],
                    "action": [s.action for s in steps],
                    "params": [Jsonb(s.params) for s in steps],
                },
            )
            row = await cur.fetchone()
            created = bool(row and row[0])
        if created:  # what was just written: no need to read it back
            return SagaRecord(
                saga_id,
                kind,
                shop,
                cause,
                SagaState.RUNNING,
                [StepRecord(i, s.name, s.action, dict(s.params)) for i, s in enumerate(steps)],
            )
        saga = await self.load(saga_id)
        assert saga is not None
        return saga

    async def load(self, saga_id: str) -> SagaRecord | None:
        async with self.conn.transaction(), self.conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(LOAD_SAGA, {"id": saga_id})
            head = await cur.fetchone()
            if head is None:
                return None
            await cur.execute(LOAD_STEPS, {"id": saga_id})
            steps = [
                StepRecord(
                    r["idx"],
                    r["name"],
                    r["action"],
                    r["params"],
                    StepStatus(r["status"]),
                    r["undo"],
                    r["result"],
                )
                for r in await cur.fetchall()
            ]
        return SagaRecord(
            head["id"],
            head["kind"],
            head["shop"],
            head["cause"],
            SagaState(head["state"]),
            steps,
            head["error"],
        )

    async def _exec(self, sql: str, params: dict[str, Any]) -> None:
        async with _one_statement(self.conn):
            await self.conn.execute(sql, params)

    async def step_started(self, saga_id: str, index: int, undo: dict[str, Any] | None) -> bool:
        async with _one_statement(self.conn):
            cur = await self.conn.execute(
                STEP_STARTED, {"id": saga_id, "idx": index, "undo": Jsonb(undo) if undo is not None else None}
            )
            return cur.rowcount == 1

    async def step_done(self, saga_id: str, index: int, result: dict[str, Any]) -> None:
        await self._exec(STEP_DONE, {"id": saga_id, "idx": index, "result": Jsonb(result)})

    async def step_refused(self, saga_id: str, index: int) -> None:
        await self._exec(STEP_REFUSED, {"id": saga_id, "idx": index})

    async def step_compensated(self, saga_id: str, index: int) -> None:
        await self._exec(STEP_COMPENSATED, {"id": saga_id, "idx": index})

    async def set_state(self, saga_id: str, state: SagaState, error: str | None = None) -> None:
        await self._exec(SET_SAGA_STATE, {"id": saga_id, "state": str(state), "error": error})

    async def unfinished(self, limit: int = 100) -> list[str]:
        return [saga_id for saga_id, _shop in await self.unfinished_sagas(limit)]

    async def unfinished_sagas(self, limit: int = 100) -> list[tuple[str, str]]:
        async with _one_statement(self.conn):
            cur = await self.conn.execute(UNFINISHED_SAGAS, {"limit": limit})
            return [(saga_id, shop) for saga_id, shop in await cur.fetchall()]

    async def states(self, kind: str, prefix: str | None = None) -> dict[str, SagaState]:
        async with _one_statement(self.conn):
            cur = await self.conn.execute(SAGA_STATES, {"kind": kind, "prefix": prefix})
            return {saga_id: SagaState(state) for saga_id, state in await cur.fetchall()}


# --------------------------------------------------------------------------- audit

# record_audit: one audited write or saga outcome; a write also advances its source change's
# progress (sync_changes, a primary-key UPDATE that finds nothing when the cause is no tracked
# change), in the same statement.
RECORD_AUDIT = """
WITH audited AS (
    INSERT INTO sync_audit (at, shop, object_type, object_id, action, before, after, cause, detail)
    VALUES (%(at)s, %(shop)s, %(object_type)s, %(object_id)s, %(action)s, %(before)s, %(after)s, %(cause)s,
            %(detail)s)
    RETURNING at, cause
)
UPDATE sync_changes c
SET first_written_at = least(coalesce(c.first_written_at, a.at), a.at),
    last_written_at = greatest(coalesce(c.last_written_at, a.at), a.at),
    writes = c.writes + 1
FROM audited a
WHERE c.change = a.cause AND %(is_write)s
"""

# record_audits: many audit records at once (parallel arrays); like record_audit, the writes
# among them advance their source changes' progress (once per change: first, last, count).
RECORD_AUDITS = """
WITH audited AS (
    INSERT INTO sync_audit (at, shop, object_type, object_id, action, before, after, cause, detail)
    SELECT * FROM unnest(%(at)s::timestamptz[], %(shop)s::text[], %(object_type)s::text[],
                         %(object_id)s::text[], %(action)s::text[], %(before)s::jsonb[], %(after)s::jsonb[],
                         %(cause)s::text[], %(detail)s::text[])
    RETURNING at, cause, object_type
), per_change AS (
    SELECT cause, min(at) AS first_at, max(at) AS last_at, count(*) AS n
    FROM audited WHERE object_type <> 'saga' GROUP BY cause
)
UPDATE sync_changes c
SET first_written_at = least(coalesce(c.first_written_at, a.first_at), a.first_at),
    last_written_at = greatest(coalesce(c.last_written_at, a.last_at), a.last_at),
    writes = c.writes + a.n
FROM per_change a
WHERE c.change = a.cause
"""

# query_audit: newest audit records, optionally for one store, object or cause.
QUERY_AUDIT = """
SELECT at, shop, object_type, object_id, action, before, after, cause, detail FROM sync_audit
WHERE (%(shop)s::text IS NULL OR shop = %(shop)s)
  AND (%(object_id)s::text IS NULL OR object_id = %(object_id)s)
  AND (%(cause)s::text IS NULL OR cause = %(cause)s)
ORDER BY at DESC, id DESC
LIMIT %(limit)s
"""


# audit_page: one page of the audit trail, newest first (at, id), optionally for one store, one
# object and one cause; `before` is the id of the last entry of the previous page (the dashboard).
AUDIT_PAGE = """
SELECT id, at, shop, object_type, object_id, action, before, after, cause, detail
FROM sync_audit
WHERE (%(shop)s::text IS NULL OR shop = %(shop)s)
  AND (%(object)s::text IS NULL OR object_id = %(object)s)
  AND (%(cause)s::text IS NULL OR cause = %(cause)s)
  AND (%(before)s::bigint IS NULL
       OR (at, id) < (SELECT c.at, c.id FROM sync_audit c WHERE c.id = %(before)s))
ORDER BY at DESC, id DESC
LIMIT %(limit)s
"""

# The audit trail's table (migration 0005_sync.sql): the dashboard says so when it is absent.
AUDIT_TABLE = "sync_audit"


async def audit_page(
    conn: psycopg.AsyncConnection,
    *,
    shop: str | None,
    object_id: str | None,
    cause: str | None,
    before: int | None,
    limit: int,
) -> list[dict[str, Any]]:
    """One page of the audit trail as rows (with their ids, for the next page), on the caller's
    connection and transaction."""
    params = {"shop": shop, "object": object_id, "cause": cause, "before": before, "limit": limit}
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(AUDIT_PAGE, params)
        return await cur.fetchall()


def _json(value: Any) -> Jsonb | None:
    return None if value is None else Jsonb(value, dumps=lambda v: json.dumps(v, default=str))


class PgAudit:
    def __init__(self, conn: psycopg.AsyncConnection) -> None:
        self.conn = conn

    async def record_many(self, recs: Sequence[AuditRecord]) -> None:
        if not recs:
            return
        async with _one_statement(self.conn):
            await self.conn.execute(
                RECORD_AUDITS,
                {
                    "at": [r.at for r in recs],
                    "shop": [r.shop for r in recs],
                    "object_type": [r.object_type for r in recs],
                    "object_id": [r.object_id for r in recs],
                    "action": [r.action for r in recs],
                    "before": [_json(r.before) for r in recs],
                    "after": [_json(r.after) for r in recs],
                    "cause": [r.cause for r in recs],
                    "detail": [r.detail for r in recs],
                },
            )

    async def record(self, rec: AuditRecord) -> None:
        async with _one_statement(self.conn):
            await self.conn.execute(
                RECORD_AUDIT,
                {
                    "at": rec.at,
                    "shop": rec.shop,
                    "object_type": rec.object_type,
                    "object_id": rec.object_id,
                    "action": rec.action,
                    "before": _json(rec.before),
                    "after": _json(rec.after),
                    "cause": rec.cause,
                    "detail": rec.detail,
                    "is_write": rec.object_type != "saga",
                },
            )

    async def query(
        self,
        *,
        shop: str | None = None,
        object_id: str | None = None,
        cause: str | None = None,
        limit: int = 100,
    ) -> list[AuditRecord]:
        async with _one_statement(self.conn), self.conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(
                QUERY_AUDIT, {"shop": shop, "object_id": object_id, "cause": cause, "limit": limit}
            )
            return [
                AuditRecord(
                    shop=r["shop"],
                    object_type=r["object_type"],
                    object_id=r["object_id"],
                    action=r["action"],
                    before=r["before"],
                    after=r["after"],
                    cause=r["cause"],
                    at=r["at"],
                    detail=r["detail"],
                )
                for r in await cur.fetchall()
            ]


# --------------------------------------------------------------------------- paused stores
# The stores table is `db/`'s (`db.network_sql`): its pause statements, run for the sync jobs.


async def paused_among(conn: psycopg.AsyncConnection, shops: Iterable[str]) -> dict[str, str]:
    """Which of `shops` are paused, with the reason."""
    cur = await conn.execute(network_sql.PAUSED_STORES, {"shops": list(shops)})
    return {shop: reason or "paused" for shop, reason in await cur.fetchall()}


async def stores_status(conn: psycopg.AsyncConnection) -> list[dict[str, Any]]:
    """Every store with its merchant (and its name), role, status, reason and `paused_at`."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(network_sql.STORES_STATUS)
        return await cur.fetchall()


def stores_status_sync(conn: psycopg.Connection) -> list[dict[str, Any]]:
    """`stores_status` on a synchronous connection (the CLI)."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(network_sql.STORES_STATUS).fetchall()


async def pause_store(conn: psycopg.AsyncConnection, shop: str, reason: str) -> bool:
    """Pause an active store (its jobs are parked until it is resumed); False if it was not active."""
    cur = await conn.execute(network_sql.PAUSE_STORE, {"shop": shop, "reason": reason})
    paused = await cur.fetchone() is not None
    if paused:
        log.warning("store paused", shop=shop, reason=reason)
    return paused


# --------------------------------------------------------------------------- coalesced pushes

# queue_pushes: pushes for child levels (parallel arrays); a level already waiting takes the newer
# target (an open one keeps the known target), the newer seen level, the earlier due time.
QUEUE_PUSHES = """
INSERT INTO sync_pending_pushes AS p
    (shop, item_id, location_id, parent_item_id, parent_location_id, target, change_from, seen_at, cause,
     due_at)
SELECT * FROM unnest(%(shop)s::text[], %(item)s::text[], %(location)s::text[], %(parent_item)s::text[],
                     %(parent_location)s::text[], %(target)s::integer[], %(change_from)s::integer[],
                     %(seen_at)s::timestamptz[], %(cause)s::text[], %(due_at)s::timestamptz[])
ORDER BY 1, 2, 3
ON CONFLICT (shop, item_id, location_id) DO UPDATE
SET target = coalesce(EXCLUDED.target, p.target),
    change_from = CASE WHEN EXCLUDED.change_from IS NULL THEN p.change_from ELSE EXCLUDED.change_from END,
    seen_at = CASE WHEN EXCLUDED.change_from IS NULL THEN p.seen_at ELSE EXCLUDED.seen_at END,
    parent_item_id = EXCLUDED.parent_item_id,
    parent_location_id = EXCLUDED.parent_location_id,
    cause = EXCLUDED.cause,
    version = p.version + 1,
    due_at = least(p.due_at, EXCLUDED.due_at)
"""

# due_pushes: a child's pushes due now, oldest first.
DUE_PUSHES = """
SELECT shop, item_id, location_id, parent_item_id, parent_location_id, target, change_from, seen_at, cause,
       version
FROM sync_pending_pushes
WHERE shop = %(shop)s AND due_at <= now()
ORDER BY due_at, item_id, location_id
LIMIT %(limit)s
"""

# next_push_due: when the child's next push is due (NULL: none waits).
NEXT_PUSH_DUE = """
SELECT min(due_at) FROM sync_pending_pushes WHERE shop = %(shop)s
"""

# pushes_done: pushes sent (or found in step) leave, unless a newer target replaced them meanwhile.
PUSHES_DONE = """
DELETE FROM sync_pending_pushes p
USING unnest(%(item)s::text[], %(location)s::text[], %(version)s::bigint[]) AS d(item_id, location_id, version)
WHERE p.shop = %(shop)s AND p.item_id = d.item_id AND p.location_id = d.location_id AND p.version = d.version
"""

# known_parent_levels: the parent's levels the engine last knew, for some (item, location).
KNOWN_PARENT_LEVELS = """
SELECT item_id, location_id, available FROM sync_parent_levels
WHERE shop = %(shop)s AND (item_id, location_id) IN (SELECT * FROM unnest(%(item)s::text[], %(location)s::text[]))
"""

# remember_parent_levels: the parent's levels as learnt at a time (an adjust's result, a read
# sent then); a level known earlier than the one remembered is not taken (a read that raced an
# adjust must not bring back the level before it).
REMEMBER_PARENT_LEVELS = """
INSERT INTO sync_parent_levels AS l (shop, item_id, location_id, available, known_at)
SELECT %(shop)s, i, loc, a, %(known_at)s
FROM unnest(%(item)s::text[], %(location)s::text[], %(available)s::integer[]) AS t(i, loc, a)
ORDER BY 2, 3
ON CONFLICT (shop, item_id, location_id) DO UPDATE
SET available = EXCLUDED.available, known_at = EXCLUDED.known_at
WHERE l.known_at <= EXCLUDED.known_at
"""

# last_level_writes: the engine's newest write to each of some levels of one store, since a time.
LAST_LEVEL_WRITES = """
SELECT DISTINCT ON (inventory_item_id, location_id) inventory_item_id, location_id, quantity, written_at
FROM sync_write_records
WHERE shop = %(shop)s AND written_at >= %(since)s
  AND (inventory_item_id, location_id) IN (SELECT * FROM unnest(%(item)s::text[], %(location)s::text[]))
ORDER BY inventory_item_id, location_id, written_at DESC
"""


class PgPushes:
    """Coalesced level pushes (`domain/pushes.py`) and the parent's levels as last known."""

    def __init__(self, conn: psycopg.AsyncConnection) -> None:
        self.conn = conn

    async def queue(self, pushes: Sequence[PendingPush], *, due_at: datetime | None = None) -> None:
        if not pushes:
            return
        when = due_at or datetime.now(UTC)
        async with _one_statement(self.conn):
            await self.conn.execute(
                QUEUE_PUSHES,
                {
                    "shop": [p.shop for p in pushes],
                    "item": [p.item_id for p in pushes],
                    "location": [p.location_id for p in pushes],
                    "parent_item": [p.parent_item_id for p in pushes],
                    "parent_location": [p.parent_location_id for p in pushes],
                    "target": [p.target for p in pushes],
                    "change_from": [p.change_from for p in pushes],
                    "seen_at": [p.seen_at for p in pushes],
                    "cause": [p.cause for p in pushes],
                    "due_at": [when] * len(pushes),
                },
            )

    async def due(self, shop: str, *, limit: int) -> list[PendingPush]:
        async with _one_statement(self.conn):
            cur = await self.conn.execute(DUE_PUSHES, {"shop": shop, "limit": limit})
            return [PendingPush(*row) for row in await cur.fetchall()]

    async def next_due(self, shop: str) -> datetime | None:
        async with _one_statement(self.conn):
            cur = await self.conn.execute(NEXT_PUSH_DUE, {"shop": shop})
            row = await cur.fetchone()
        return row[0] if row else None

    async def done(self, shop: str, pushes: Sequence[PendingPush]) -> None:
        if not pushes:
            return
        async with _one_statement(self.conn):
            await self.conn.execute(
                PUSHES_DONE,
                {
                    "shop": shop,
                    "item": [p.item_id for p in pushes],
                    "location": [p.location_id for p in pushes],
                    "version": [p.version for p in pushes],
                },
            )

    async def parent_levels(self, shop: str, keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], int]:
        wanted = sorted(set(keys))
        if not wanted:
            return {}
        async with _one_statement(self.conn):
            cur = await self.conn.execute(
                KNOWN_PARENT_LEVELS,
                {"shop": shop, "item": [k[0] for k in wanted], "location": [k[1] for k in wanted]},
            )
            return {(i, loc): a for i, loc, a in await cur.fetchall()}

    async def remember_parent_levels(
        self, shop: str, levels: Mapping[tuple[str, str], int], *, known_at: datetime | None = None
    ) -> None:
        """Remember levels the parent had at `known_at` (default now: a read's time is when it
        was sent); an older one than remembered is ignored."""
        if not levels:
            return
        keys = sorted(levels)
        async with _one_statement(self.conn):
            await self.conn.execute(
                REMEMBER_PARENT_LEVELS,
                {
                    "shop": shop,
                    "known_at": known_at or datetime.now(UTC),
                    "item": [k[0] for k in keys],
                    "location": [k[1] for k in keys],
                    "available": [levels[k] for k in keys],
                },
            )

    async def last_writes(
        self, shop: str, keys: Iterable[tuple[str, str]], since: datetime
    ) -> dict[tuple[str, str], LastWrite]:
        wanted = sorted(set(keys))
        if not wanted:
            return {}
        async with _one_statement(self.conn):
            cur = await self.conn.execute(
                LAST_LEVEL_WRITES,
                {
                    "shop": shop,
                    "since": since,
                    "item": [k[0] for k in wanted],
                    "location": [k[1] for k in wanted],
                },
            )
            return {(i, loc): LastWrite(q, at) for i, loc, q, at in await cur.fetchall()}


# --------------------------------------------------------------------------- reconciliation passes

# last_reconcile_pass: when the merchant's last pass started, when its last full one did, and now.
LAST_RECONCILE_PASS = """
SELECT p.started_at, p.full_at, now() FROM (SELECT 1) one
LEFT JOIN sync_reconcile_passes p ON p.merchant_id = %(merchant)s
"""

# record_reconcile_pass: a pass that started at `started_at` finished (a full one, when `full`);
# greatest() skips NULLs, so an incremental pass keeps the last full one's time.
RECORD_RECONCILE_PASS = """
INSERT INTO sync_reconcile_passes AS p (merchant_id, started_at, full_at)
VALUES (%(merchant)s, %(started_at)s, CASE WHEN %(full)s THEN %(started_at)s::timestamptz END)
ON CONFLICT (merchant_id) DO UPDATE
SET started_at = greatest(p.started_at, EXCLUDED.started_at),
    full_at = greatest(p.full_at, EXCLUDED.full_at)
"""


async def last_reconcile_pass(
    conn: psycopg.AsyncConnection, merchant_id: str
) -> tuple[datetime | None, datetime | None, datetime]:
    """(when the last pass started, when the last full one did, the database's now)."""
    async with _one_statement(conn):
        cur = await conn.execute(LAST_RECONCILE_PASS, {"merchant": merchant_id})
        row = await cur.fetchone()
    assert row is not None
    return row[0], row[1], row[2]


async def record_reconcile_pass(
    conn: psycopg.AsyncConnection, merchant_id: str, started_at: datetime, *, full: bool
) -> None:
    async with _one_statement(conn):
        await conn.execute(
            RECORD_RECONCILE_PASS, {"merchant": merchant_id, "started_at": started_at, "full": full}
        )


# --------------------------------------------------------------------------- one job's storage


# --------------------------------------------------------------------------- attention

# report_attention: record something for the merchant; the open row of that shop, kind and
# subject updated instead when there is one. Returns whether the row is new.
REPORT_ATTENTION = """
INSERT INTO sync_attention (shop, kind, subject, detail)
VALUES (%(shop)s, %(kind)s, %(subject)s, %(detail)s)
ON CONFLICT (shop, kind, subject) WHERE resolved_at IS NULL DO UPDATE SET
    detail = EXCLUDED.detail, last_at = now(), times = sync_attention.times + 1
RETURNING times = 1
"""

# resolve_attention: the open row of that shop, kind and subject closed.
RESOLVE_ATTENTION = """
UPDATE sync_attention SET resolved_at = now()
WHERE shop = %(shop)s AND kind = %(kind)s AND subject = %(subject)s AND resolved_at IS NULL
RETURNING id
"""

# attention_open: whether that shop, kind and subject has an open row.
ATTENTION_OPEN = """
SELECT EXISTS (SELECT 1 FROM sync_attention
               WHERE shop = %(shop)s AND kind = %(kind)s AND subject = %(subject)s AND resolved_at IS NULL)
"""

# open_attention: the open rows, most recent first.
OPEN_ATTENTION = """
SELECT shop, kind, subject, detail, first_at, last_at, times FROM sync_attention
WHERE resolved_at IS NULL ORDER BY last_at DESC LIMIT %(limit)s
"""

# attention_by_shop: open rows per shop and kind (`storesync status`).
ATTENTION_BY_SHOP = """
SELECT shop, kind, count(*) FROM sync_attention WHERE resolved_at IS NULL GROUP BY shop, kind ORDER BY 1, 2
"""


def _attention(row: dict[str, Any]) -> Attention:
    return Attention(
        row["shop"], row["kind"], row["subject"], row["detail"], row["first_at"], row["last_at"], row["times"]
    )


class PgAttention:
    """`ports.AttentionLog` on `sync_attention`."""

    def __init__(self, conn: psycopg.AsyncConnection) -> None:
        self.conn = conn

    async def report(self, shop: str, kind: str, subject: str, detail: str) -> bool:
        async with _one_statement(self.conn):
            cur = await self.conn.execute(
                REPORT_ATTENTION, {"shop": shop, "kind": kind, "subject": subject, "detail": detail}
            )
            row = await cur.fetchone()
            return bool(row and row[0])

    async def resolve(self, shop: str, kind: str, subject: str) -> bool:
        async with _one_statement(self.conn):
            cur = await self.conn.execute(RESOLVE_ATTENTION, {"shop": shop, "kind": kind, "subject": subject})
            return await cur.fetchone() is not None

    async def is_open(self, shop: str, kind: str, subject: str) -> bool:
        async with _one_statement(self.conn):
            cur = await self.conn.execute(ATTENTION_OPEN, {"shop": shop, "kind": kind, "subject": subject})
            row = await cur.fetchone()
            return bool(row and row[0])

    async def open_items(self, *, limit: int = 100) -> list[Attention]:
        async with _one_statement(self.conn), self.conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(OPEN_ATTENTION, {"limit": limit})
            return [_attention(r) for r in await cur.fetchall()]


def open_attention(conn: psycopg.Connection, *, limit: int = 20) -> list[Attention]:
    """The open attention rows, most recent first (`storesync status`, on the CLI's connection)."""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(OPEN_ATTENTION, {"limit": limit})
        return [_attention(r) for r in cur.fetchall()]


def attention_by_shop(conn: psycopg.Connection) -> dict[str, dict[str, int]]:
    """shop -> kind -> open rows (`storesync status`)."""
    out: dict[str, dict[str, int]] = {}
    for shop, kind, n in conn.execute(ATTENTION_BY_SHOP).fetchall():
        out.setdefault(shop, {})[kind] = n
    return out


async def open_attention_page(conn: psycopg.AsyncConnection, *, limit: int) -> list[Attention]:
    """The open attention rows for the dashboard's failures page (on its own connection)."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(OPEN_ATTENTION, {"limit": limit})
        return [_attention(r) for r in await cur.fetchall()]


# --------------------------------------------------------------------------- archived copies

# add_archived_copy: remember a copy storesync archived (its handle is ours to move aside).
ADD_ARCHIVED_COPY = """
INSERT INTO sync_archived_copies (child_shop, child_product_id, handle, parent_product_id)
VALUES (%(shop)s, %(product)s, %(handle)s, %(parent)s)
ON CONFLICT (child_shop, child_product_id) DO UPDATE SET handle = EXCLUDED.handle, archived_at = now()
"""

# archived_copies_under_handle: the archived copies of one child that had this handle.
ARCHIVED_COPIES_UNDER_HANDLE = """
SELECT child_product_id FROM sync_archived_copies WHERE child_shop = %(shop)s AND handle = %(handle)s
"""

# forget_archived_copy: an archived copy no longer ours to rename (renamed, or gone).
FORGET_ARCHIVED_COPY = """
DELETE FROM sync_archived_copies WHERE child_shop = %(shop)s AND child_product_id = %(product)s
"""


class PgArchivedCopies:
    """`ports.ArchivedCopies` on `sync_archived_copies`."""

    def __init__(self, conn: psycopg.AsyncConnection) -> None:
        self.conn = conn

    async def add(self, child_shop: str, child_product_id: str, handle: str, parent_product_id: str) -> None:
        async with _one_statement(self.conn):
            await self.conn.execute(
                ADD_ARCHIVED_COPY,
                {
                    "shop": child_shop,
                    "product": child_product_id,
                    "handle": handle,
                    "parent": parent_product_id,
                },
            )

    async def under_handle(self, child_shop: str, handle: str) -> list[str]:
        async with _one_statement(self.conn):
            cur = await self.conn.execute(
                ARCHIVED_COPIES_UNDER_HANDLE, {"shop": child_shop, "handle": handle}
            )
            return [r[0] for r in await cur.fetchall()]

    async def forget(self, child_shop: str, child_product_id: str) -> None:
        async with _one_statement(self.conn):
            await self.conn.execute(FORGET_ARCHIVED_COPY, {"shop": child_shop, "product": child_product_id})


# --------------------------------------------------------------------------- stock accounts (policy report)

_ACCOUNT_WHERE = "child_shop = %(shop)s AND inventory_item_id = %(item)s AND location_id = %(location)s"

# get_account: one child level's stock account.
GET_ACCOUNT = f"SELECT * FROM sync_stock_accounts WHERE {_ACCOUNT_WHERE}"

# open_account: start a child level's account at `expected` unless it has one; the account.
OPEN_ACCOUNT = """
WITH opened AS (
    INSERT INTO sync_stock_accounts (child_shop, inventory_item_id, location_id, expected)
    VALUES (%(shop)s, %(item)s, %(location)s, %(expected)s)
    ON CONFLICT DO NOTHING RETURNING *
)
SELECT * FROM opened
UNION ALL
SELECT * FROM sync_stock_accounts WHERE child_shop = %(shop)s AND inventory_item_id = %(item)s
    AND location_id = %(location)s AND NOT EXISTS (SELECT 1 FROM opened)
"""

# begin_account_write: storesync is about to set the level from `from` to `to` under `key`.
BEGIN_ACCOUNT_WRITE = f"""
UPDATE sync_stock_accounts SET pending_from = %(from)s, pending_to = %(to)s, pending_key = %(key)s,
    updated_at = now()
WHERE {_ACCOUNT_WHERE}
"""

# end_account_write: that write landed (the account expects its move) or did not.
END_ACCOUNT_WRITE = f"""
UPDATE sync_stock_accounts
SET expected = expected + CASE WHEN %(landed)s THEN pending_to - COALESCE(pending_from, pending_to) ELSE 0 END,
    pending_from = NULL, pending_to = NULL, pending_key = NULL, updated_at = now()
WHERE {_ACCOUNT_WHERE} AND pending_key = %(key)s
"""

# take_account_move: the child's `number`th own move, of `delta`, is taken (reported): the account
# expects it from now on. Only once: a second call with the same number changes nothing.
TAKE_ACCOUNT_MOVE = f"""
UPDATE sync_stock_accounts SET expected = expected + %(delta)s, reports = %(number)s, updated_at = now()
WHERE {_ACCOUNT_WHERE} AND reports = %(number)s - 1
"""


class PgStockAccounts:
    """`ports.StockAccounts`: the stock accounts of children whose own moves are reported."""

    def __init__(self, conn: psycopg.AsyncConnection) -> None:
        self.conn = conn

    @staticmethod
    def _params(shop: str, item: str, location: str, **more: Any) -> dict[str, Any]:
        return {"shop": shop, "item": item, "location": location, **more}

    async def get(self, shop: str, item: str, location: str) -> StockAccount | None:
        async with _one_statement(self.conn), self.conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(GET_ACCOUNT, self._params(shop, item, location))
            row = await cur.fetchone()
        return _account(row) if row else None

    async def open(self, shop: str, item: str, location: str, expected: int) -> StockAccount:
        async with _one_statement(self.conn), self.conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(OPEN_ACCOUNT, self._params(shop, item, location, expected=expected))
            row = await cur.fetchone()
        if row is None:
            raise RuntimeError(f"stock account of {shop} {item}@{location} neither opened nor found")
        return _account(row)

    async def begin_write(
        self, shop: str, item: str, location: str, change_from: int | None, to: int, key: str
    ) -> None:
        async with _one_statement(self.conn):
            await self.conn.execute(
                BEGIN_ACCOUNT_WRITE,
                self._params(shop, item, location, key=key, to=to, **{"from": change_from}),
            )

    async def end_write(self, shop: str, item: str, location: str, key: str, *, landed: bool) -> None:
        async with _one_statement(self.conn):
            await self.conn.execute(
                END_ACCOUNT_WRITE, self._params(shop, item, location, key=key, landed=landed)
            )

    async def take_move(self, shop: str, item: str, location: str, number: int, delta: int) -> bool:
        async with _one_statement(self.conn):
            cur = await self.conn.execute(
                TAKE_ACCOUNT_MOVE, self._params(shop, item, location, delta=delta, number=number)
            )
            return cur.rowcount > 0


def _account(row: dict[str, Any]) -> StockAccount:
    pending = None
    if row["pending_key"] is not None:
        pending = PendingWrite(row["pending_from"], row["pending_to"], row["pending_key"])
    return StockAccount(
        row["child_shop"],
        row["inventory_item_id"],
        row["location_id"],
        row["expected"],
        row["reports"],
        pending,
    )


# --------------------------------------------------------------------------- orders checkpoints

# order_checkpoint: a child's orders checkpoint, opened (tracked from `since`) if it has none.
ORDER_CHECKPOINT = """
WITH opened AS (
    INSERT INTO sync_order_checkpoints (child_shop, tracked_since, checkpoint)
    VALUES (%(shop)s, %(since)s, %(since)s)
    ON CONFLICT DO NOTHING RETURNING tracked_since, checkpoint
)
SELECT tracked_since, checkpoint FROM opened
UNION ALL
SELECT tracked_since, checkpoint FROM sync_order_checkpoints
WHERE child_shop = %(shop)s AND NOT EXISTS (SELECT 1 FROM opened)
"""

# first_link_at: when a child's first link was made (its stock is tracked since then).
FIRST_LINK_AT = "SELECT min(created_at) FROM sync_links WHERE child_shop = %(shop)s"

# advance_order_checkpoint: every order of the child updated before `checkpoint` was compared.
ADVANCE_ORDER_CHECKPOINT = """
UPDATE sync_order_checkpoints SET checkpoint = GREATEST(checkpoint, %(checkpoint)s), updated_at = now()
WHERE child_shop = %(shop)s
"""


class PgOrderCheckpoints:
    """`ports.OrderCheckpoints`: per child, since when its orders are tracked and reconciled."""

    def __init__(self, conn: psycopg.AsyncConnection) -> None:
        self.conn = conn

    async def get(self, shop: str) -> OrderCheckpoint:
        """The child's checkpoint; a child seen for the first time is tracked from its first
        link (or from now, when it has none yet)."""
        async with self.conn.transaction():
            cur = await self.conn.execute(FIRST_LINK_AT, {"shop": shop})
            first = (await cur.fetchone() or (None,))[0]
            cur = await self.conn.execute(
                ORDER_CHECKPOINT, {"shop": shop, "since": first or datetime.now(UTC)}
            )
            row = await cur.fetchone()
        assert row is not None
        return OrderCheckpoint(shop, row[0], row[1])

    async def advance(self, shop: str, checkpoint: datetime) -> None:
        async with _one_statement(self.conn):
            await self.conn.execute(ADVANCE_ORDER_CHECKPOINT, {"shop": shop, "checkpoint": checkpoint})


# --------------------------------------------------------------------------- levels not written

# mark_inactive: a location deactivated ('' item), or an item disconnected from a location.
MARK_INACTIVE = """
INSERT INTO sync_inactive_levels (shop, location_id, inventory_item_id, reason)
VALUES (%(shop)s, %(location)s, %(item)s, %(reason)s)
ON CONFLICT (shop, location_id, inventory_item_id) DO UPDATE SET reason = EXCLUDED.reason
RETURNING (xmax = 0) AS inserted
"""

# clear_inactive: the location is active again, or the item stocked there again.
CLEAR_INACTIVE = """
DELETE FROM sync_inactive_levels
WHERE shop = %(shop)s AND location_id = %(location)s AND inventory_item_id = %(item)s
"""

# inactive_among: the locations of these (store, item) pairs deactivated, or lacking that item.
INACTIVE_AMONG = """
SELECT i.shop, i.location_id, i.reason, t.item FROM sync_inactive_levels i
JOIN unnest(%(shops)s::text[], %(items)s::text[]) AS t(shop, item)
  ON i.shop = t.shop AND i.inventory_item_id IN ('', t.item)
"""

# inactive_levels: every level storesync does not write (`storesync status`).
INACTIVE_LEVELS = (
    "SELECT shop, location_id, inventory_item_id, reason, since FROM sync_inactive_levels ORDER BY since"
)


class PgInactiveLevels:
    """`ports.InactiveLevels`: levels storesync does not write (a deactivated location, an item
    no longer stocked at a location)."""

    def __init__(self, conn: psycopg.AsyncConnection) -> None:
        self.conn = conn

    async def mark(self, shop: str, location: str, item: str, reason: str) -> bool:
        """Record it; whether it is new."""
        async with _one_statement(self.conn):
            cur = await self.conn.execute(
                MARK_INACTIVE, {"shop": shop, "location": location, "item": item, "reason": reason}
            )
            row = await cur.fetchone()
        return bool(row and row[0])

    async def clear(self, shop: str, location: str, item: str) -> bool:
        async with _one_statement(self.conn):
            cur = await self.conn.execute(CLEAR_INACTIVE, {"shop": shop, "location": location, "item": item})
            return cur.rowcount > 0

    async def among(self, levels: Sequence[tuple[str, str]]) -> dict[tuple[str, str], str]:
        """(shop, location) -> reason, for (store, inventory item) pairs: the store's deactivated
        locations, and those no longer stocking the item ("" for none)."""
        return {(shop, loc): reason for shop, loc, reason, _ in await self._among(levels)}

    async def levels_among(self, levels: Sequence[tuple[str, str, str]]) -> dict[tuple[str, str, str], str]:
        """(shop, item, location) -> reason, for those of these levels storesync does not write."""
        wanted = set(levels)
        rows = await self._among(sorted({(shop, item) for shop, item, _ in levels}))
        return {(shop, item, loc): reason for shop, loc, reason, item in rows if (shop, item, loc) in wanted}

    async def _among(self, levels: Sequence[tuple[str, str]]) -> list[tuple[str, str, str, str]]:
        if not levels:
            return []
        async with _one_statement(self.conn):
            cur = await self.conn.execute(
                INACTIVE_AMONG, {"shops": [s for s, _ in levels], "items": [i for _, i in levels]}
            )
            return [(r[0], r[1], r[2], r[3]) for r in await cur.fetchall()]


def inactive_levels(conn: psycopg.Connection) -> dict[str, list[str]]:
    """shop -> what storesync does not write there (`storesync status`)."""
    out: dict[str, list[str]] = {}
    for shop, location, item, reason, _since in conn.execute(INACTIVE_LEVELS).fetchall():
        where = location.rsplit("/", 1)[-1]
        what = (
            f"location {where} {reason}"
            if not item
            else f"item {item.rsplit('/', 1)[-1]} {reason} at {where}"
        )
        out.setdefault(shop, []).append(what)
    return out


class Storage:
    """The domain's storage ports on one autocommit connection (each call commits by itself)."""

    def __init__(self, conn: psycopg.AsyncConnection) -> None:
        self.conn = conn
        self.links = PgLinks(conn)
        self.ledger = PgLedger(conn)
        self.writes = PgWriteRecords(conn)
        self.versions = PgAppliedVersions(conn)
        self.product_payloads = PgProductPayloads(conn)
        self.pushes = PgPushes(conn)
        self.adjusts = PgAdjustBatches(conn)
        self.steps = PgStepLog(conn)
        self.audit = PgAudit(conn)
        self.changes = PgChanges(conn)
        self.attention = PgAttention(conn)
        self.archived = PgArchivedCopies(conn)
        self.accounts = PgStockAccounts(conn)
        self.checkpoints = PgOrderCheckpoints(conn)
        self.inactive = PgInactiveLevels(conn)


@asynccontextmanager
async def job_storage(pool: AsyncConnectionPool) -> AsyncIterator[Storage]:
    """A `Storage` on a connection of `pool`, autocommit while it is used."""
    async with pool.connection() as conn:
        await conn.set_autocommit(True)
        try:
            yield Storage(conn)
        finally:
            if not conn.closed:
                await conn.set_autocommit(False)


class SerializedStorage:
    """Write records and audit of one `Storage` shared by concurrent tasks: their statements
    take turns on the one connection while the tasks' store calls overlap."""

    def __init__(self, st: Storage) -> None:
        lock = asyncio.Lock()
        self.writes: Any = _Locked(st.writes, lock)
        self.audit: Any = _Locked(st.audit, lock)
        self.accounts: Any = _Locked(st.accounts, lock)


class _Locked:
    def __init__(self, target: object, lock: asyncio.Lock) -> None:
        self._target, self._lock = target, lock

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._target, name)

        async def call(*args: Any, **kwargs: Any) -> Any:
            async with self._lock:
                return await method(*args, **kwargs)

        return call


# --------------------------------------------------------------------------- retention
# Batches of the oldest rows past a cutoff, each batch one short statement (`storesync.retention`).

# count_old_writes / prune_writes (above): engine write records.
COUNT_OLD_WRITES = "SELECT count(*) FROM sync_write_records WHERE written_at < %(before)s"

# count_old_audit: audit rows older than the cutoff.
COUNT_OLD_AUDIT = "SELECT count(*) FROM sync_audit WHERE at < %(before)s"

# prune_audit: delete a batch of the oldest audit rows older than the cutoff.
PRUNE_AUDIT = """
DELETE FROM sync_audit WHERE id IN (
    SELECT id FROM sync_audit WHERE at < %(before)s ORDER BY at LIMIT %(limit)s
)
"""

# count_old_sagas: finished (completed or compensated) sagas last changed before the cutoff.
COUNT_OLD_SAGAS = """
SELECT count(*) FROM sync_sagas WHERE state IN ('completed', 'compensated') AND updated_at < %(before)s
"""

# prune_sagas: delete a batch of them, oldest first (their steps go by ON DELETE CASCADE).
# Running, compensating and stuck sagas are never pruned.
PRUNE_SAGAS = """
DELETE FROM sync_sagas WHERE id IN (
    SELECT id FROM sync_sagas
    WHERE state IN ('completed', 'compensated') AND updated_at < %(before)s
    ORDER BY updated_at LIMIT %(limit)s
)
"""

# count_old_ledger: applied ledger entries older than the cutoff (an upper bound of what goes:
# an order goes whole, only once every entry of it is applied and old).
COUNT_OLD_LEDGER = """
SELECT count(*) FROM sync_inventory_ledger WHERE status = 'applied' AND applied_at < %(before)s
"""

# prune_ledger: from the next batch of old applied entries (after the cursor, in age order),
# the orders all of whose entries are applied and old: remember each in
# sync_ledger_pruned_orders, then delete all their entries. Returns the entries deleted, the
# entries scanned and the cursor to continue from (NULLs once nothing is left to scan).
PRUNE_LEDGER = """
WITH candidate AS (
    SELECT id, applied_at, child_shop, order_id FROM sync_inventory_ledger
    WHERE status = 'applied' AND applied_at < %(before)s
      AND (applied_at, id) > (%(after_at)s::timestamptz, %(after_id)s::bigint)
    ORDER BY applied_at, id
    LIMIT %(limit)s
), whole AS (
    SELECT DISTINCT c.child_shop, c.order_id FROM candidate c
    WHERE NOT EXISTS (
        SELECT 1 FROM sync_inventory_ledger l
        WHERE l.child_shop = c.child_shop AND l.order_id = c.order_id
          AND (l.status <> 'applied' OR l.applied_at >= %(before)s)
    )
), remembered AS (
    INSERT INTO sync_ledger_pruned_orders (child_shop, order_id)
    SELECT child_shop, order_id FROM whole
    ON CONFLICT DO NOTHING
), deleted AS (
    DELETE FROM sync_inventory_ledger l USING whole w
    WHERE l.child_shop = w.child_shop AND l.order_id = w.order_id
    RETURNING 1
), last AS (
    SELECT applied_at, id FROM candidate ORDER BY applied_at DESC, id DESC LIMIT 1
)
SELECT (SELECT count(*) FROM deleted), (SELECT count(*) FROM candidate),
       (SELECT applied_at FROM last), (SELECT id FROM last)
"""


class PgRetention:
    """The sync tables' batched prunes (`storesync.retention`), each one statement on the caller's
    connection and transaction (which bounds it with its statement timeout)."""

    def __init__(self, conn: psycopg.AsyncConnection) -> None:
        self.conn = conn

    async def _count(self, sql: str, before: datetime) -> int:
        cur = await self.conn.execute(sql, {"before": before})
        row = await cur.fetchone()
        return int(row[0]) if row and row[0] is not None else 0

    async def _prune(self, sql: str, before: datetime, limit: int) -> int:
        cur = await self.conn.execute(sql, {"before": before, "limit": limit})
        return cur.rowcount

    async def count_old_writes(self, before: datetime) -> int:
        return await self._count(COUNT_OLD_WRITES, before)

    async def prune_writes(self, before: datetime, limit: int) -> int:
        return await self._prune(PRUNE_WRITES, before, limit)

    async def count_old_audit(self, before: datetime) -> int:
        return await self._count(COUNT_OLD_AUDIT, before)

    async def prune_audit(self, before: datetime, limit: int) -> int:
        return await self._prune(PRUNE_AUDIT, before, limit)

    async def count_old_sagas(self, before: datetime) -> int:
        return await self._count(COUNT_OLD_SAGAS, before)

    async def prune_sagas(self, before: datetime, limit: int) -> int:
        return await self._prune(PRUNE_SAGAS, before, limit)

    async def count_old_changes(self, before: datetime) -> int:
        return await self._count(COUNT_OLD_CHANGES, before)

    async def prune_changes(self, before: datetime, limit: int) -> int:
        return await self._prune(PRUNE_CHANGES, before, limit)

    async def count_old_reconcile_runs(self, before: datetime) -> int:
        return await self._count(COUNT_OLD_RECONCILE_RUNS, before)

    async def prune_reconcile_runs(self, before: datetime, limit: int) -> int:
        return await self._prune(PRUNE_RECONCILE_RUNS, before, limit)

    async def count_old_ledger(self, before: datetime) -> int:
        return await self._count(COUNT_OLD_LEDGER, before)

    async def prune_ledger(
        self, before: datetime, after: tuple[Any, int], limit: int
    ) -> tuple[int, int, tuple[Any, int] | None]:
        """From the next batch of old applied entries after the cursor `after` ((applied_at, id)),
        the orders all of whose entries are applied and old, remembered and deleted: (entries
        deleted, entries scanned, the cursor to continue from, None once nothing is left)."""
        cur = await self.conn.execute(
            PRUNE_LEDGER, {"before": before, "after_at": after[0], "after_id": after[1], "limit": limit}
        )
        row = await cur.fetchone()
        deleted, scanned, last_at, last_id = row if row else (0, 0, None, None)
        return int(deleted), int(scanned), (last_at, last_id) if last_at is not None else None


# order_pruned: whether an order's ledger entries were pruned (its webhooks are not applied again).
ORDER_PRUNED = """
SELECT EXISTS (SELECT 1 FROM sync_ledger_pruned_orders WHERE child_shop = %(shop)s AND order_id = %(order_id)s)
"""


async def order_pruned(conn: psycopg.AsyncConnection, child_shop: str, order_id: str) -> bool:
    """True when the order's ledger entries were pruned by retention: whatever a webhook about it
    says now, its lines were applied long ago (and applying them again would count them twice)."""
    async with _one_statement(conn):
        cur = await conn.execute(ORDER_PRUNED, {"shop": child_shop, "order_id": order_id})
        row = await cur.fetchone()
    return bool(row and row[0])


# --------------------------------------------------------------------------- source changes
# sync_changes (migration 0016): a source change's propagation, settled once no work is left.

# start_change: a webhook's change that routed jobs (their writes advance it: RECORD_AUDIT).
START_CHANGE = """
INSERT INTO sync_changes (change, merchant_id, source_shop, topic, changed_at)
VALUES (%(change)s, %(merchant_id)s, %(source_shop)s, %(topic)s, %(changed_at)s)
ON CONFLICT (change) DO NOTHING
"""

# unsettled_changes: changes with nothing written for `quiet` seconds (or never written, and as
# old), not settled yet: candidates for settling.
UNSETTLED_CHANGES = """
SELECT change FROM sync_changes
WHERE settled_at IS NULL
  AND (last_written_at < now() - make_interval(secs => %(quiet)s)
       OR (last_written_at IS NULL AND changed_at < now() - make_interval(secs => %(quiet)s)))
ORDER BY changed_at
LIMIT %(limit)s
"""

# settle_changes: mark changes settled; (merchant, seconds from the change to its last write, or
# NULL when nothing was written) of those that were not settled yet.
SETTLE_CHANGES = """
UPDATE sync_changes SET settled_at = now()
WHERE change = ANY(%(changes)s) AND settled_at IS NULL
RETURNING merchant_id, extract(epoch FROM last_written_at - changed_at)::float8
"""

# propagation_buckets: per time bucket of when changes happened (since `since`), how many were
# written and the p50/p99 of the time from the change to its last store written.
PROPAGATION_BUCKETS = """
SELECT date_bin(make_interval(secs => %(bucket_s)s), changed_at, %(since)s) AS at,
       count(*) AS changes,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM last_written_at - changed_at)) AS p50,
       percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM last_written_at - changed_at)) AS p99
FROM sync_changes
WHERE changed_at >= %(since)s AND last_written_at IS NOT NULL
GROUP BY 1
ORDER BY 1
"""

# count_old_changes / prune_changes: changes older than the cutoff.
COUNT_OLD_CHANGES = "SELECT count(*) FROM sync_changes WHERE changed_at < %(before)s"
PRUNE_CHANGES = """
DELETE FROM sync_changes WHERE change IN (
    SELECT change FROM sync_changes WHERE changed_at < %(before)s ORDER BY changed_at LIMIT %(limit)s
)
"""


class PgChanges:
    def __init__(self, conn: psycopg.AsyncConnection) -> None:
        self.conn = conn

    async def start(self, change: SourceChange) -> None:
        async with _one_statement(self.conn):
            await self.conn.execute(
                START_CHANGE,
                {
                    "change": change.change,
                    "merchant_id": change.merchant_id,
                    "source_shop": change.source_shop,
                    "topic": change.topic,
                    "changed_at": change.changed_at,
                },
            )

    async def unsettled(self, quiet_s: float, limit: int = 5000) -> list[str]:
        async with _one_statement(self.conn):
            cur = await self.conn.execute(UNSETTLED_CHANGES, {"quiet": quiet_s, "limit": limit})
            return [r[0] for r in await cur.fetchall()]

    async def settle(self, changes: Sequence[str]) -> list[tuple[str, float | None]]:
        """Settle `changes`: (merchant, propagation seconds or None) of each newly settled."""
        if not changes:
            return []
        async with _one_statement(self.conn):
            cur = await self.conn.execute(SETTLE_CHANGES, {"changes": list(changes)})
            return [(m, s) for m, s in await cur.fetchall()]


async def propagation_buckets(
    conn: psycopg.AsyncConnection, *, since: datetime, bucket_s: int
) -> list[dict[str, Any]]:
    """Changes since `since` per bucket: how many, p50 and p99 seconds to the last store written."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(PROPAGATION_BUCKETS, {"since": since, "bucket_s": bucket_s})
        return await cur.fetchall()


# --------------------------------------------------------------------------- reconcile runs

# record_reconcile_run: what one reconcile run of a merchant checked, found and repaired.
RECORD_RECONCILE_RUN = """
INSERT INTO sync_reconcile_runs (merchant_id, cause, dry_run, started_at, products_checked, levels_checked,
                                 collections_checked, stores)
VALUES (%(merchant_id)s, %(cause)s, %(dry_run)s, %(started_at)s, %(products)s, %(levels)s, %(collections)s,
        %(stores)s)
"""

# latest_reconcile_runs: each merchant's latest run that repaired (not a dry run).
LATEST_RECONCILE_RUNS = """
SELECT DISTINCT ON (merchant_id) merchant_id, finished_at, stores
FROM sync_reconcile_runs
WHERE NOT dry_run
ORDER BY merchant_id, finished_at DESC
"""

# count_old_reconcile_runs / prune_reconcile_runs: runs older than the cutoff.
COUNT_OLD_RECONCILE_RUNS = "SELECT count(*) FROM sync_reconcile_runs WHERE finished_at < %(before)s"
PRUNE_RECONCILE_RUNS = """
DELETE FROM sync_reconcile_runs WHERE id IN (
    SELECT id FROM sync_reconcile_runs WHERE finished_at < %(before)s ORDER BY finished_at LIMIT %(limit)s
)
"""


async def record_reconcile_run(
    conn: psycopg.AsyncConnection,
    *,
    merchant_id: str,
    cause: str,
    dry_run: bool,
    started_at: datetime,
    checked: tuple[int, int, int],
    stores: dict[str, Any],
) -> None:
    async with _one_statement(conn):
        await conn.execute(
            RECORD_RECONCILE_RUN,
            {
                "merchant_id": merchant_id,
                "cause": cause,
                "dry_run": dry_run,
                "started_at": started_at,
                "products": checked[0],
                "levels": checked[1],
                "collections": checked[2],
                "stores": Jsonb(stores),
            },
        )


async def latest_reconcile_runs(conn: psycopg.AsyncConnection) -> dict[str, tuple[datetime, dict[str, Any]]]:
    """merchant -> (when its latest run finished, its per-store summary)."""
    cur = await conn.execute(LATEST_RECONCILE_RUNS)
    return {m: (at, stores or {}) for m, at, stores in await cur.fetchall()}


# --------------------------------------------------------------------------- store health reads

# last_writes: per store, when the engine last wrote it (an audited write, not a saga outcome).
LAST_WRITES = """
SELECT s.shop_domain, (SELECT a.at FROM sync_audit a WHERE a.shop = s.shop_domain AND a.object_type <> 'saga'
                       ORDER BY a.at DESC LIMIT 1)
FROM unnest(%(shops)s::text[]) AS s(shop_domain)
"""

# last_change_of: the newest audited writes of some objects (a product, its variants' items),
# with their cause.
LAST_WRITES_OF = """
SELECT DISTINCT ON (shop, object_id) shop, object_id, object_type, action, at, cause, before, after
FROM sync_audit
WHERE object_id = ANY(%(objects)s)
ORDER BY shop, object_id, at DESC, id DESC
"""


# linked_children: which of some children have at least one product link.
LINKED_CHILDREN = """
SELECT s.child_shop FROM unnest(%(shops)s::text[]) AS s(child_shop)
WHERE EXISTS (SELECT 1 FROM sync_links l WHERE l.child_shop = s.child_shop AND l.kind = 'product')
"""


async def linked_children(conn: psycopg.AsyncConnection, shops: Sequence[str]) -> set[str]:
    cur = await conn.execute(LINKED_CHILDREN, {"shops": list(shops)})
    return {r[0] for r in await cur.fetchall()}


async def last_writes(conn: psycopg.AsyncConnection, shops: Sequence[str]) -> dict[str, datetime | None]:
    cur = await conn.execute(LAST_WRITES, {"shops": list(shops)})
    return dict(await cur.fetchall())


async def last_writes_of(conn: psycopg.AsyncConnection, objects: Sequence[str]) -> list[dict[str, Any]]:
    """The newest audited write of each of `objects` in each store, with its cause."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(LAST_WRITES_OF, {"objects": list(objects)})
        return await cur.fetchall()


# --------------------------------------------------------------------------- one product, every store

# links_down_many: every child's links of one kind for some parent objects (one product's page).
LINKS_DOWN_MANY = """
SELECT * FROM sync_links WHERE kind = %(kind)s AND parent_id = ANY(%(parent_ids)s) ORDER BY child_shop, parent_id
"""

# products_of_parent_items: the parent products some parent inventory items belong to.
PRODUCTS_OF_PARENT_ITEMS = """
SELECT DISTINCT parent_product_id FROM sync_links
WHERE parent_inventory_item_id = ANY(%(items)s) AND kind = 'variant' AND parent_product_id IS NOT NULL
"""

# products_of_child_variants: the parent products some child variants are linked to.
PRODUCTS_OF_CHILD_VARIANTS = """
SELECT DISTINCT parent_product_id FROM sync_links
WHERE child_shop = %(child_shop)s AND kind = 'variant' AND child_id = ANY(%(variants)s)
  AND parent_product_id IS NOT NULL
"""

# ledger_items_of_order: the parent inventory items an order (in any of these children) moved.
LEDGER_ITEMS_OF_ORDER = """
SELECT DISTINCT l.parent_item_id FROM sync_inventory_ledger l
JOIN unnest(%(shops)s::text[]) AS s(child_shop) ON l.child_shop = s.child_shop
WHERE l.order_id = %(order_id)s
"""

# changes_by_id: some source changes (their store, topic, when it happened).
CHANGES_BY_ID = """
SELECT change, source_shop, topic, changed_at, last_written_at, writes, settled_at
FROM sync_changes WHERE change = ANY(%(changes)s)
"""


async def links_down_many(
    conn: psycopg.AsyncConnection, kind: LinkKind, parent_ids: Sequence[str]
) -> list[Link]:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(LINKS_DOWN_MANY, {"kind": kind.value, "parent_ids": list(parent_ids)})
        return [_link(r) for r in await cur.fetchall()]


async def products_of_parent_items(conn: psycopg.AsyncConnection, items: Sequence[str]) -> list[str]:
    cur = await conn.execute(PRODUCTS_OF_PARENT_ITEMS, {"items": list(items)})
    return [r[0] for r in await cur.fetchall()]


async def products_of_child_variants(
    conn: psycopg.AsyncConnection, child_shop: str, variants: Sequence[str]
) -> list[str]:
    cur = await conn.execute(
        PRODUCTS_OF_CHILD_VARIANTS, {"child_shop": child_shop, "variants": list(variants)}
    )
    return [r[0] for r in await cur.fetchall()]


async def ledger_items_of_order(
    conn: psycopg.AsyncConnection, shops: Sequence[str], order_id: str
) -> list[str]:
    cur = await conn.execute(LEDGER_ITEMS_OF_ORDER, {"shops": list(shops), "order_id": order_id})
    return [r[0] for r in await cur.fetchall()]


async def changes_by_id(conn: psycopg.AsyncConnection, changes: Sequence[str]) -> dict[str, dict[str, Any]]:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(CHANGES_BY_ID, {"changes": list(changes)})
        return {r["change"]: r for r in await cur.fetchall()}
