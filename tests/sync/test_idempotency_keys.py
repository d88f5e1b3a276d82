"""Shopify's idempotency errors (Admin API 2026-10) against the emulator, with the Postgres
ledger: a sale lands exactly once whatever the store says about its key."""

from __future__ import annotations

import pytest

from storesync.commerce.errors import TransientUserError
from storesync.sync.adapters.postgres import PgLedger
from storesync.sync.adapters.shopify import ShopifyStoreAPI
from storesync.sync.domain.inventory import EntryKind, EntryStatus, LedgerEntry, LedgerKey
from storesync.sync.domain.model import LinkMap
from storesync.sync.services.sales import SaleContext, apply_entry, push_level
from tests.commerce.test_client_emulator import SHOP, client_for, first_level, running_emulator
from tests.fakes import MemoryAudit, MemoryWriteRecords
from tests.sync.builders import CHILD_A, merchant
from tests.sync.test_store_pg import connect


@pytest.fixture
def emu():
    with running_emulator(stores=[SHOP]) as handle:
        handle.seed(SHOP, products=1, variants_per_product=1, quantity=10)
        yield handle


def sale(item: str, location: str, qty: int, line: int = 1) -> LedgerEntry:
    key = LedgerKey(CHILD_A, f"gid://shopify/LineItem/{line}", EntryKind.SALE)
    return LedgerEntry(key, "gid://shopify/Order/1", item, location, -qty, f"test:{line}")


def available(emu, item: str, location: str) -> int:
    return next(
        lvl["available"]
        for lvl in emu.snapshot(SHOP)["inventory_levels"]
        if (lvl["inventory_item_id"], lvl["location_id"]) == (item, location)
    )


async def test_a_key_spent_by_a_failed_attempt_is_replaced_and_a_crash_replay_reuses_the_new_one(emu, db):
    item, location, level = first_level(emu)
    # The first adjust fails inside the store (nothing applied, the key spent); the client's own
    # retry with the same key gets IDEMPOTENCY_PREVIOUS_ATTEMPT_FAILED.
    emu.set_faults(graphql={"fail_nth": {"inventoryAdjustQuantities": {"n": 1, "mode": "attempt_failed"}}})
    async with client_for(emu, max_attempts=3) as client, await connect(db) as conn:
        ledger = PgLedger(conn)
        ctx = SaleContext(
            merchant(),
            LinkMap(CHILD_A, []),
            ledger,
            ShopifyStoreAPI(client),
            MemoryWriteRecords(),
            MemoryAudit(),
        )
        entry = sale(item, location, 3)
        out = await apply_entry(ctx, entry)
        assert out.applied_delta == -3 and available(emu, item, location) == level - 3
        stored = await ledger.get(entry.key)
        assert (stored.status, stored.key_attempt) == (EntryStatus.APPLIED, 1)
        # A crash after the adjust but before the entry was marked applied: the replay sends the
        # stored attempt's key, and the store replays it instead of applying again.
        await conn.execute("UPDATE sync_inventory_ledger SET status = 'planned', applied_at = NULL")
        await apply_entry(ctx, entry)
        assert available(emu, item, location) == level - 3
        assert (await ledger.get(entry.key)).status is EntryStatus.APPLIED


async def test_a_concurrent_request_with_the_same_key_is_retried_later_and_applies_once(emu, db):
    item, location, level = first_level(emu)
    emu.set_faults(
        graphql={"fail_nth": {"inventoryAdjustQuantities": {"n": 1, "mode": "idempotency_concurrent"}}}
    )
    async with client_for(emu) as client, await connect(db) as conn:
        ctx = SaleContext(
            merchant(),
            LinkMap(CHILD_A, []),
            PgLedger(conn),
            ShopifyStoreAPI(client),
            MemoryWriteRecords(),
            MemoryAudit(),
        )
        entry = sale(item, location, 2, line=2)
        with pytest.raises(TransientUserError, match="IDEMPOTENCY_CONCURRENT_REQUEST"):
            await apply_entry(ctx, entry)  # the job retries, after a second
        assert available(emu, item, location) == level
        await apply_entry(ctx, entry)
        assert available(emu, item, location) == level - 2


async def test_a_fan_out_set_gets_a_new_key_when_its_attempt_failed(emu):
    item, location, level = first_level(emu)
    emu.set_faults(graphql={"fail_nth": {"inventorySetQuantities": {"n": 1, "mode": "attempt_failed"}}})
    async with client_for(emu, max_attempts=3) as client:
        out = await push_level(
            ShopifyStoreAPI(client),
            MemoryWriteRecords(),
            MemoryAudit(),
            item,
            location,
            level + 5,
            "test:set",
        )
    assert out.after == level + 5 and available(emu, item, location) == level + 5


async def test_a_set_whose_derived_keys_were_all_spent_is_sent_under_a_new_key(emu):
    """Every derived key of a set spent by earlier failed attempts (a job's runs derive the same
    ones): the set goes out under a key of its own instead of failing on every retry."""
    from storesync.commerce.errors import CommerceError
    from storesync.sync.domain.inventory import DERIVED_SET_KEYS, set_idempotency_key

    item, location, level = first_level(emu)
    async with client_for(emu, max_attempts=1) as client:
        store = ShopifyStoreAPI(client)
        for attempt in range(DERIVED_SET_KEYS):
            emu.set_faults(
                graphql={"fail_nth": {"inventorySetQuantities": {"n": 1, "mode": "attempt_failed"}}}
            )
            key = set_idempotency_key(SHOP, item, location, level, level + 4, "test:spent", attempt)
            with pytest.raises(CommerceError):
                await store.set_level(item, location, level + 4, change_from=level, idempotency_key=key)
        emu.set_faults()
        out = await push_level(
            store, MemoryWriteRecords(), MemoryAudit(), item, location, level + 4, "test:spent"
        )
    assert out.after == level + 4 and available(emu, item, location) == level + 4
