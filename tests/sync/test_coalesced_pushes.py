"""Coalesced level pushes (`services/pushes.py`) against the emulator and a real database: a
child's waiting levels go out in one inventorySetQuantities; Shopify fails the whole call when
one quantity is stale, so the stale one is read again and sent alone and its batch mates are sent
again without it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from storesync.commerce.budget import LocalBudget
from storesync.commerce.client import AdminClient
from storesync.db.pools import POOLED_CONNECTION_KWARGS
from storesync.sync.adapters.postgres import Storage
from storesync.sync.adapters.shopify import ShopifyStoreAPI
from storesync.sync.domain.model import StoreRef
from storesync.sync.domain.network import MerchantNetwork
from storesync.sync.domain.pushes import PendingPush
from storesync.sync.services import pushes
from tests.commerce.test_client_emulator import store_config
from tests.support.emulator import running_emulator

PARENT, CHILD = "parent.myshopify.com", "child-a.myshopify.com"


class OneStoreRuntime:
    """The little of `services.context.Runtime` a flush uses: the child's store."""

    def __init__(self, api: ShopifyStoreAPI) -> None:
        self._api = api

    def api(self, shop: str) -> ShopifyStoreAPI:
        assert shop == CHILD, shop
        return self._api


async def test_one_stale_quantity_is_read_and_sent_alone_and_its_batch_mates_land(db):
    with running_emulator(stores=[PARENT, CHILD]) as emu:
        emu.seed(CHILD, products=3, variants_per_product=1, quantity=10)
        all_levels = emu.snapshot(CHILD)["inventory_levels"]
        levels = [lvl for lvl in all_levels if lvl["location_id"] == all_levels[0]["location_id"]][:3]
        items = [lvl["inventory_item_id"] for lvl in levels]
        location = levels[0]["location_id"]
        net = MerchantNetwork("m", StoreRef(PARENT, "parent", "m"), (StoreRef(CHILD, "child", "m"),))
        seen = datetime.now(UTC)
        waiting = [
            PendingPush(CHILD, item, location, f"parent-{i}", "parent-loc", 7, 10, seen, "test")
            for i, item in enumerate(items)
        ]
        # the child sells one unit of the second item after it was last seen at 10
        emu.set_inventory(CHILD, items[1], location, 9)
        async with (
            AdminClient(store_config(emu, CHILD), budget=LocalBudget()) as client,
            await psycopg.AsyncConnection.connect(
                db.dsn, **{**POOLED_CONNECTION_KWARGS, "autocommit": True}
            ) as conn,
        ):
            st = Storage(conn)
            await st.pushes.queue(waiting)
            before = emu.throttle(CHILD)["usage"]["by_operation"]
            sent = await pushes.flush(OneStoreRuntime(ShopifyStoreAPI(client)), st, net, CHILD)
            assert sent == 3
            assert await st.pushes.due(CHILD, limit=10) == []
            written = await st.pushes.last_writes(
                CHILD, [(i, location) for i in items], seen.replace(year=2000)
            )
            assert {k: w.quantity for k, w in written.items()} == {(i, location): 7 for i in items}
        after = emu.throttle(CHILD)["usage"]["by_operation"]
        calls = after["InventorySetQuantities"][0] - before.get("InventorySetQuantities", [0, 0])[0]
        assert calls == 3  # the batch (refused whole), its two mates, the stale one alone
        assert after["InventoryLevels"][0] - before.get("InventoryLevels", [0, 0])[0] == 1
        snap = {
            lvl["inventory_item_id"]: lvl["available"]
            for lvl in emu.snapshot(CHILD)["inventory_levels"]
            if lvl["location_id"] == location
        }
        assert [snap[i] for i in items] == [7, 7, 7]


async def test_a_newer_target_replaces_the_waiting_one_and_a_flush_of_the_older_leaves_it_waiting(db):
    """Only the newest target of a level matters (an absolute set): queued again, the level waits
    once with the newer target; the flush that had read the older one (its version) does not
    take the newer one away."""
    seen = datetime.now(UTC)

    def push(target: int | None) -> PendingPush:
        return PendingPush(CHILD, "item-1", "loc-1", "p-item-1", "p-loc-1", target, 10, seen, "test")

    async with await psycopg.AsyncConnection.connect(
        db.dsn, **{**POOLED_CONNECTION_KWARGS, "autocommit": True}
    ) as conn:
        st = Storage(conn)
        await st.pushes.queue([push(8)])
        await st.pushes.queue([push(None)])  # an open target (a move to set back) keeps 8
        (older,) = await st.pushes.due(CHILD, limit=10)
        assert older.target == 8
        await st.pushes.queue([push(7)])  # a newer level while the flush is sending 8
        await st.pushes.done(CHILD, [older])
        (newer,) = await st.pushes.due(CHILD, limit=10)
        assert newer.target == 7 and newer.version > older.version
        await st.pushes.done(CHILD, [newer])
        assert await st.pushes.due(CHILD, limit=10) == []


async def test_a_parent_level_read_before_an_adjust_cannot_replace_the_level_after_it(db):
    """A fan-out's read of the parent sent before a batched adjust landed, remembered after the
    adjust's result: the remembered level stays the newer one, and the open push target (what the
    child's flush sends) is that level."""
    adjusted_at = datetime.now(UTC)
    async with await psycopg.AsyncConnection.connect(
        db.dsn, **{**POOLED_CONNECTION_KWARGS, "autocommit": True}
    ) as conn:
        st = Storage(conn)
        await st.pushes.remember_parent_levels(PARENT, {("p-item", "p-loc"): 7}, known_at=adjusted_at)
        await st.pushes.remember_parent_levels(
            PARENT,
            {("p-item", "p-loc"): 9},
            known_at=adjusted_at.replace(microsecond=0) - timedelta(seconds=1),
        )
        assert await st.pushes.parent_levels(PARENT, [("p-item", "p-loc")]) == {("p-item", "p-loc"): 7}
        await st.pushes.remember_parent_levels(PARENT, {("p-item", "p-loc"): 6})  # read later: taken
        assert await st.pushes.parent_levels(PARENT, [("p-item", "p-loc")]) == {("p-item", "p-loc"): 6}


async def test_a_flush_whose_derived_keys_were_all_spent_by_earlier_runs_is_sent_under_a_new_key(db):
    """A failed attempt spends its idempotency key (an attempt answered with userErrors too, such
    as a stale quantity), and a job's next run derives the same keys again: once all of them are
    spent, the batch goes out under a key of its own (a set is absolute and compare-and-set, so
    nothing applies twice) instead of failing on every retry until it is dead."""
    from storesync.commerce.errors import CommerceError
    from storesync.sync.domain.inventory import DERIVED_SET_KEYS
    from storesync.sync.domain.pushes import LevelSet, batch_set_key

    with running_emulator(stores=[PARENT, CHILD]) as emu:
        emu.seed(CHILD, products=2, variants_per_product=1, quantity=10)
        all_levels = emu.snapshot(CHILD)["inventory_levels"]
        location = all_levels[0]["location_id"]
        items = [lvl["inventory_item_id"] for lvl in all_levels if lvl["location_id"] == location][:2]
        net = MerchantNetwork("m", StoreRef(PARENT, "parent", "m"), (StoreRef(CHILD, "child", "m"),))
        seen = datetime.now(UTC)
        waiting = [
            PendingPush(CHILD, item, location, f"parent-{i}", "parent-loc", 6, 10, seen, "test")
            for i, item in enumerate(items)
        ]
        sets = [LevelSet(item, location, 6, 10) for item in items]
        async with (
            AdminClient(store_config(emu, CHILD), budget=LocalBudget(), max_attempts=1) as client,
            await psycopg.AsyncConnection.connect(
                db.dsn, **{**POOLED_CONNECTION_KWARGS, "autocommit": True}
            ) as conn,
        ):
            store = ShopifyStoreAPI(client)
            # Earlier attempts of the same batch failed inside the store, one per derived key.
            for attempt in range(DERIVED_SET_KEYS):
                emu.set_faults(
                    graphql={"fail_nth": {"inventorySetQuantities": {"n": 1, "mode": "attempt_failed"}}}
                )
                with pytest.raises(CommerceError):
                    await store.set_levels(
                        sets, idempotency_key=batch_set_key(CHILD, sets, ["test"] * 2, attempt)
                    )
            emu.set_faults()
            st = Storage(conn)
            await st.pushes.queue(waiting)
            before = emu.throttle(CHILD)["usage"]["by_operation"]["InventorySetQuantities"][0]
            assert await pushes.flush(OneStoreRuntime(store), st, net, CHILD) == 2
            assert await st.pushes.due(CHILD, limit=10) == []
        # the spent keys refused, then the batch under a new one
        calls = emu.throttle(CHILD)["usage"]["by_operation"]["InventorySetQuantities"][0] - before
        assert calls == DERIVED_SET_KEYS + 1
        snap = {
            lvl["inventory_item_id"]: lvl["available"]
            for lvl in emu.snapshot(CHILD)["inventory_levels"]
            if lvl["location_id"] == location
        }
        assert [snap[i] for i in items] == [6, 6]
