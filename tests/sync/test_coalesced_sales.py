"""Coalesced sale deltas (`services/adjusts.py`) against the emulator over HTTP and a real
database, judged by the parent's own levels: many children's sales go to the parent in one
inventoryAdjustQuantities; every order line lands exactly once across a killed flush, a lost
answer, a 5xx, Shopify's IDEMPOTENCY_* answers and the parent moving meanwhile."""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import subprocess
import sys
import time
from contextlib import asynccontextmanager

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as hs

from storesync.commerce.budget import LocalBudget
from storesync.commerce.client import AdminClient
from storesync.commerce.errors import RetryableCommerceError, TransientUserError
from storesync.db.pools import POOLED_CONNECTION_KWARGS
from storesync.sync.adapters.postgres import Storage
from storesync.sync.adapters.shopify import ShopifyStoreAPI
from storesync.sync.domain.inventory import Outcome
from storesync.sync.domain.model import Link, LinkKind, LinkMap, MatchedBy
from storesync.sync.domain.orders import order_event_from_webhook
from storesync.sync.services import adjusts
from storesync.sync.services.sales import SaleContext, apply_order_event
from tests.commerce.test_client_emulator import store_config
from tests.support.emulator import running_emulator
from tests.sync.adjust_flush_worker import ParentRuntime, network

PARENT, CHILD_A, CHILD_B = "parent.myshopify.com", "child-a.myshopify.com", "child-b.myshopify.com"
CHILDREN = (CHILD_A, CHILD_B)
CHILD_LOCATION = {CHILD_A: 7001, CHILD_B: 7002}  # the child locations, mapped to the parent's
ORDER_IDS = itertools.count(1000)


class World:
    """The parent in the emulator, its items, the children's links to them (in memory: the
    sales are claimed through `apply_order_event` as the sale job does)."""

    def __init__(self, emu, items: int, quantity: int) -> None:
        self.emu = emu
        emu.seed(PARENT, products=items, variants_per_product=1, quantity=quantity)
        levels = emu.snapshot(PARENT)["inventory_levels"]
        self.location = levels[0]["location_id"]
        self.items = sorted(lvl["inventory_item_id"] for lvl in levels if lvl["location_id"] == self.location)
        self.net = network(
            PARENT,
            list(CHILDREN),
            {c: {self.location: f"gid://shopify/Location/{CHILD_LOCATION[c]}"} for c in CHILDREN},
        )
        self.links = {
            c: LinkMap(
                c,
                [
                    Link(
                        LinkKind.VARIANT,
                        c,
                        f"gid://shopify/ProductVariant/{9000 + i}",
                        f"gid://shopify/ProductVariant/{self.variant(c, i)}",
                        MatchedBy.SKU,
                        parent_inventory_item_id=item,
                        child_inventory_item_id=f"gid://shopify/InventoryItem/{self.variant(c, i)}",
                    )
                    for i, item in enumerate(self.items)
                ],
            )
            for c in CHILDREN
        }

    @staticmethod
    def variant(child: str, i: int) -> int:
        return (1 + CHILDREN.index(child)) * 100_000 + i

    def order(self, child: str, lines: list[tuple[int, int]]) -> dict:
        """A point-of-sale order: (item index, quantity) per line."""
        oid = next(ORDER_IDS)
        return {
            "id": oid,
            "location_id": CHILD_LOCATION[child],
            "line_items": [
                {"id": oid * 100 + n, "variant_id": self.variant(child, i), "quantity": q}
                for n, (i, q) in enumerate(lines)
            ],
            "refunds": [],
        }

    def levels(self) -> list[int]:
        snap = {
            lvl["inventory_item_id"]: lvl["available"]
            for lvl in self.emu.snapshot(PARENT)["inventory_levels"]
            if lvl["location_id"] == self.location
        }
        return [snap[i] for i in self.items]

    def adjust_calls(self) -> int:
        return self.emu.throttle(PARENT)["usage"]["by_operation"].get("InventoryAdjustQuantities", [0])[0]


@asynccontextmanager
async def parent_and_storage(emu, db, **client_kw):
    client_kw.setdefault("budget", LocalBudget())
    client_kw.setdefault("backoff_base", 0.02)
    client_kw.setdefault("backoff_cap", 0.1)
    async with (
        AdminClient(store_config(emu, PARENT), **client_kw) as client,
        await psycopg.AsyncConnection.connect(
            db.dsn, **{**POOLED_CONNECTION_KWARGS, "autocommit": True}
        ) as conn,
    ):
        yield ParentRuntime(ShopifyStoreAPI(client)), Storage(conn)


async def sell(world: World, rt, st: Storage, child: str, body: dict, topic: str = "orders/create"):
    """What a sale job does with coalesced writes: claim the lines and leave them pending."""
    ctx = SaleContext(
        world.net,
        world.links[child],
        st.ledger,
        rt.api(PARENT),
        st.writes,
        st.audit,
        pending_for=PARENT,
    )
    return await apply_order_event(ctx, order_event_from_webhook(child, topic, body), "delivery:test")


async def ledger(st: Storage) -> list[tuple]:
    cur = await st.conn.execute(
        "SELECT status, count(*), count(batch_id) FROM sync_inventory_ledger GROUP BY status ORDER BY status"
    )
    return await cur.fetchall()


async def backlogs(st: Storage, world: World) -> list[int]:
    found = await st.ledger.backlogs([(i, world.location) for i in world.items])
    return [found.get((i, world.location), 0) for i in world.items]


# --------------------------------------------------------------------------- coalescing


async def test_many_sales_of_two_children_reach_the_parent_in_one_call_each_line_once(db):
    with running_emulator(stores=[PARENT, *CHILDREN]) as emu:
        world = World(emu, items=4, quantity=20)
        async with parent_and_storage(emu, db) as (rt, st):
            bodies = [
                (
                    CHILD_A if n % 2 else CHILD_B,
                    world.order(CHILD_A if n % 2 else CHILD_B, [(n % 4, 1), (3, 2)]),
                )
                for n in range(12)
            ]
            # the last unit: item 2 has 1 left when the sales come in
            emu.set_inventory(PARENT, world.items[2], world.location, 4)
            for child, body in bodies:
                outcomes = await sell(world, rt, st, child, body)
                assert {o.outcome for o in outcomes} == {Outcome.PENDING}
            assert world.levels() == [20, 20, 4, 20] and world.adjust_calls() == 0  # claimed, not sent
            assert await ledger(st) == [("claimed", 24, 0)]  # one row per order line

            applied = await adjusts.flush(rt, st, world.net)

            assert applied == 24 and world.adjust_calls() == 1
            # sold per item: 3, 3, 3 (+ item 3's two units in every order: 24)
            # sold: 3 units of items 0-2 (item 2 had 4), 27 of item 3 (20 there: 7 oversold)
            assert world.levels() == [17, 17, 1, 0]
            assert await backlogs(st, world) == [0, 0, 0, 7]
            assert await ledger(st) == [("applied", 24, 24)]
            assert await st.adjusts.in_flight(PARENT) == []

            # every delivery again (webhooks are at least once): nothing more
            for child, body in bodies:
                outcomes = await sell(world, rt, st, child, body)
                assert {o.outcome for o in outcomes} == {Outcome.DUPLICATE}
            assert await adjusts.flush(rt, st, world.net) == 0
            assert world.adjust_calls() == 1 and world.levels() == [17, 17, 1, 0]


# --------------------------------------------------------------------------- crashes and retries


def test_a_flush_killed_after_the_call_and_before_its_commit_is_replayed_once(db):
    """The flush process sends its batch, the parent applies it, the answer never comes back
    (held by the emulator) and the process is SIGKILLed: the next flush sends the stored batch
    again under the same key; Shopify answers the first result and applies nothing again."""
    with running_emulator(stores=[PARENT, *CHILDREN]) as emu:
        world = World(emu, items=3, quantity=10)

        async def claim() -> None:
            async with parent_and_storage(emu, db) as (rt, st):
                # the parent's levels as last known: this flush sends the batch without a read
                await st.pushes.remember_parent_levels(PARENT, {(i, world.location): 10 for i in world.items})
                for child in CHILDREN:
                    await sell(world, rt, st, child, world.order(child, [(0, 2), (1, 1)]))
                    await sell(world, rt, st, child, world.order(child, [(2, 3)]))

        asyncio.run(claim())
        emu.set_faults(graphql={"timeout_p": 1.0, "timeout_hang_s": 120.0, "timeout_mode": "lost_response"})
        worker = subprocess.Popen(
            [
                sys.executable,
                *("-m", "tests.sync.adjust_flush_worker", "--dsn", db.dsn),
                *("--url", emu.graphql_url(PARENT), "--token", emu.token(PARENT)),
                *("--parent", PARENT, "--child", CHILD_A),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        try:
            deadline = time.monotonic() + 60
            while world.levels() != [6, 8, 4]:  # applied by the parent; its answer is held
                assert worker.poll() is None, worker.communicate()
                assert time.monotonic() < deadline, "the batch never reached the parent"
                time.sleep(0.05)
        finally:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait(timeout=10)
        assert worker.returncode == -signal.SIGKILL
        emu.set_faults(graphql={})

        async def replay() -> None:
            async with parent_and_storage(emu, db) as (rt, st):
                assert await ledger(st) == [("planned", 6, 6)]  # the batch was stored before the call
                (in_flight,) = await st.adjusts.in_flight(PARENT)
                assert await adjusts.flush(rt, st, world.net) == 6
                assert await ledger(st) == [("applied", 6, 6)]
                assert await st.adjusts.in_flight(PARENT) == []
                assert in_flight.key_attempt == 0

        asyncio.run(replay())
        assert world.levels() == [6, 8, 4]  # each line once
        assert world.adjust_calls() == 2  # the killed call and its replay


async def test_a_batch_whose_answer_was_lost_or_refused_by_a_5xx_is_sent_again_once(db):
    with running_emulator(stores=[PARENT, *CHILDREN]) as emu:
        world = World(emu, items=2, quantity=10)
        async with parent_and_storage(emu, db, timeout=0.5, max_attempts=1) as (rt, st):
            await st.pushes.remember_parent_levels(PARENT, {(i, world.location): 10 for i in world.items})
            await sell(world, rt, st, CHILD_A, world.order(CHILD_A, [(0, 1), (1, 2)]))
            # the call lands, its answer is lost (the client gives up: the job would retry)
            emu.set_faults(graphql={"timeout_p": 1.0, "timeout_hang_s": 2.0})
            with pytest.raises(RetryableCommerceError):  # the job would retry
                await adjusts.flush(rt, st, world.net)
            emu.set_faults(graphql={})
            assert world.levels() == [9, 8]
            assert await adjusts.flush(rt, st, world.net) == 2
            assert world.levels() == [9, 8] and world.adjust_calls() == 2

            # an HTTP 500 before anything was applied: the retry applies it once
            await sell(world, rt, st, CHILD_B, world.order(CHILD_B, [(0, 4)]))
            emu.set_faults(graphql={"fail_nth": {"inventoryAdjustQuantities": 1}})
            with pytest.raises(RetryableCommerceError):
                await adjusts.flush(rt, st, world.net)
            emu.set_faults(graphql={})
            assert world.levels() == [9, 8]
            assert await adjusts.flush(rt, st, world.net) == 1
            assert world.levels() == [5, 8]
            assert await ledger(st) == [("applied", 3, 3)]


async def test_idempotency_answers_a_spent_key_and_a_concurrent_request(db):
    """IDEMPOTENCY_PREVIOUS_ATTEMPT_FAILED: the attempt failed inside Shopify and spent the key,
    so the same batch goes under the next key (stored first). IDEMPOTENCY_CONCURRENT_REQUEST:
    the batch stays in flight and is sent again, same key, by the retry."""
    with running_emulator(stores=[PARENT, *CHILDREN]) as emu:
        world = World(emu, items=2, quantity=10)
        async with parent_and_storage(emu, db) as (rt, st):
            await sell(world, rt, st, CHILD_A, world.order(CHILD_A, [(0, 1), (1, 1)]))
            emu.set_faults(
                graphql={"fail_nth": {"inventoryAdjustQuantities": {"n": 1, "mode": "attempt_failed"}}}
            )
            assert await adjusts.flush(rt, st, world.net) == 2
            emu.set_faults(graphql={})
            assert world.levels() == [9, 9]
            cur = await st.conn.execute("SELECT count(*) FROM sync_adjust_batches")
            assert await cur.fetchone() == (0,)

            await sell(world, rt, st, CHILD_B, world.order(CHILD_B, [(1, 3)]))
            emu.set_faults(
                graphql={
                    "fail_nth": {"inventoryAdjustQuantities": {"n": 1, "mode": "idempotency_concurrent"}}
                }
            )
            for _ in range(3):  # the client may retry it itself; else the job's retry does
                try:
                    if await adjusts.flush(rt, st, world.net):
                        break
                except TransientUserError as err:
                    assert "IDEMPOTENCY_CONCURRENT_REQUEST" in str(err) or "progress" in str(err), err
            emu.set_faults(graphql={})
            assert world.levels() == [9, 6]
            assert await ledger(st) == [("applied", 3, 3)]


# --------------------------------------------------------------------------- the stock identity


@pytest.fixture(scope="module")
def shared_emulator():
    with running_emulator(stores=[PARENT, *CHILDREN]) as emu:
        yield emu, World(emu, items=3, quantity=6)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    steps=hs.lists(
        hs.one_of(
            hs.tuples(hs.just("sale"), hs.sampled_from(CHILDREN), hs.integers(0, 2), hs.integers(1, 4)),
            hs.tuples(hs.just("again"), hs.sampled_from(CHILDREN), hs.integers(0, 2), hs.integers(1, 4)),
            hs.tuples(hs.just("parent_sells"), hs.just(""), hs.integers(0, 2), hs.integers(1, 3)),
            hs.tuples(hs.just("parent_restocks"), hs.just(""), hs.integers(0, 2), hs.integers(1, 3)),
            hs.tuples(hs.just("flush"), hs.just(""), hs.just(0), hs.just(0)),
        ),
        min_size=1,
        max_size=14,
    )
)
def test_the_parent_ends_at_start_minus_sold_whatever_the_interleaving(db, shared_emulator, steps):
    """Sales of two children, their deliveries repeated, the parent's own sales and restocks (its
    level moves under what the engine remembers: the compare-and-set fails and the batch is
    planned again; a plan that leans on the level reads it) and flushes in any order: afterwards
    the parent's level minus the oversold backlog moved by exactly what was sold, the level is
    never negative, and units are owed only when none is left."""
    emu, world = shared_emulator

    async def run() -> None:
        async with parent_and_storage(emu, db) as (rt, st):
            start = [lvl - b for lvl, b in zip(world.levels(), await backlogs(st, world), strict=True)]
            sold = [0, 0, 0]
            bodies: list[tuple[str, dict]] = []
            # a merchant's restock pays no backlog back (an earlier example's, too)
            restocked_since_sale = {
                i
                for i, (lvl, b) in enumerate(zip(world.levels(), await backlogs(st, world), strict=True))
                if lvl and b
            }
            for kind, child, item, qty in steps:
                if kind == "sale" or (kind == "again" and not bodies):
                    body = world.order(child, [(item, qty)])
                    bodies.append((child, body))
                    await sell(world, rt, st, child, body)
                    sold[item] += qty
                    restocked_since_sale.discard(item)
                elif kind == "again":
                    await sell(world, rt, st, *bodies[qty % len(bodies)])
                elif kind == "parent_sells":
                    level = world.levels()[item]
                    take = min(qty, max(level, 0))
                    emu.set_inventory(PARENT, world.items[item], world.location, level - take)
                    sold[item] += take
                elif kind == "parent_restocks":  # the merchant's edit: the engine does not know it
                    emu.set_inventory(PARENT, world.items[item], world.location, world.levels()[item] + qty)
                    sold[item] -= qty
                    restocked_since_sale.add(item)
                else:
                    await adjusts.flush(rt, st, world.net)
            while await st.adjusts.pending(PARENT, limit=1) or await st.adjusts.in_flight(PARENT):
                await adjusts.flush(rt, st, world.net)
            end = [lvl - b for lvl, b in zip(world.levels(), await backlogs(st, world), strict=True)]
            assert [s - e for s, e in zip(start, end, strict=True)] == sold
            # never below 0, and units owed only when nothing is left (plan_delta's invariant;
            # a merchant's restock leaves both until the item's next sale pays the backlog back)
            assert min(world.levels()) >= 0
            levels, owed = world.levels(), await backlogs(st, world)
            for i, (lvl, b) in enumerate(zip(levels, owed, strict=True)):
                assert lvl == 0 or b == 0 or i in restocked_since_sale, (levels, owed)

    asyncio.run(run())


async def test_an_entry_left_to_the_batch_is_never_applied_one_at_a_time_too(db):
    """Workers with both settings at once (a configuration rolled out): a delivery handled one
    at a time finds the entry pending for the parent's batch and leaves it there."""
    with running_emulator(stores=[PARENT, *CHILDREN]) as emu:
        world = World(emu, items=1, quantity=5)
        async with parent_and_storage(emu, db) as (rt, st):
            body = world.order(CHILD_A, [(0, 2)])
            assert [o.outcome for o in await sell(world, rt, st, CHILD_A, body)] == [Outcome.PENDING]
            one_at_a_time = SaleContext(
                world.net, world.links[CHILD_A], st.ledger, rt.api(PARENT), st.writes, st.audit
            )
            event = order_event_from_webhook(CHILD_A, "orders/create", body)
            assert [o.outcome for o in await apply_order_event(one_at_a_time, event, "d")] == [
                Outcome.PENDING
            ]
            assert world.adjust_calls() == 0
            assert await adjusts.flush(rt, st, world.net) == 1
            assert [o.outcome for o in await apply_order_event(one_at_a_time, event, "d")] == [
                Outcome.DUPLICATE
            ]
            assert world.levels() == [3] and world.adjust_calls() == 1


async def test_a_sale_after_a_merchant_restock_pays_the_oversold_units_back_from_the_level_read(db):
    """The engine remembers the parent at 0 with 2 units owed; the merchant restocks 5 in the
    admin. The next sale's plan leans on the level (it would be applied as 0, owed): it is planned
    from the level read, so the parent ends at 5 - 2 - 1, nothing owed."""
    with running_emulator(stores=[PARENT, *CHILDREN]) as emu:
        world = World(emu, items=1, quantity=1)
        async with parent_and_storage(emu, db) as (rt, st):
            await sell(world, rt, st, CHILD_A, world.order(CHILD_A, [(0, 3)]))
            await adjusts.flush(rt, st, world.net)
            assert world.levels() == [0] and await backlogs(st, world) == [2]
            emu.set_inventory(PARENT, world.items[0], world.location, 5)
            await sell(world, rt, st, CHILD_B, world.order(CHILD_B, [(0, 1)]))
            await adjusts.flush(rt, st, world.net)
            assert world.levels() == [2] and await backlogs(st, world) == [0]
