import asyncio
import random
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from storesync.sync.domain.conflicts import LevelDecision, Version
from storesync.sync.domain.inventory import (
    EntryKind,
    InventoryError,
    LedgerKey,
    Outcome,
    PushResult,
    StaleRetriesExhausted,
    plan_delta,
)
from storesync.sync.domain.model import Link, LinkKind, LinkMap, MatchedBy
from storesync.sync.domain.orders import order_event_from_webhook
from storesync.sync.services.sales import (
    SaleContext,
    apply_order_event,
    fan_out_level,
    judge_level_delivery,
    push_level,
)
from tests.fakes import MemoryAppliedVersions, MemoryAudit, MemoryLedger, MemoryStore, MemoryWriteRecords
from tests.sync.builders import (
    A_LOC1,
    B_LOC1,
    C_LOC1,
    CHILD_A,
    CHILD_B,
    CHILD_C,
    P_LOC1,
    P_LOC2,
    PARENT,
    merchant,
)

P_ITEM = "gid://shopify/InventoryItem/100"
CHILD_ITEMS = {
    CHILD_A: "gid://shopify/InventoryItem/201",
    CHILD_B: "gid://shopify/InventoryItem/301",
    CHILD_C: "gid://shopify/InventoryItem/401",
}
CHILD_VARIANT_NUM = {CHILD_A: 2001, CHILD_B: 3001, CHILD_C: 4001}


def link_map(shop: str) -> LinkMap:
    return LinkMap(
        shop,
        [
            Link(
                LinkKind.VARIANT,
                shop,
                "gid://shopify/ProductVariant/100",
                f"gid://shopify/ProductVariant/{CHILD_VARIANT_NUM[shop]}",
                MatchedBy.SKU,
                parent_inventory_item_id=P_ITEM,
                child_inventory_item_id=CHILD_ITEMS[shop],
            )
        ],
    )


@dataclass
class Net:
    parent: MemoryStore
    children: dict
    ledger: MemoryLedger
    writes: MemoryWriteRecords
    audit: MemoryAudit

    def ctx(self, shop: str) -> SaleContext:
        return SaleContext(merchant(), link_map(shop), self.ledger, self.parent, self.writes, self.audit)

    @property
    def level(self) -> int:
        return self.parent.levels[(P_ITEM, P_LOC1)]


def make_net(level: int = 10, ledger=None) -> Net:
    parent = MemoryStore(PARENT)
    parent.levels[(P_ITEM, P_LOC1)] = level
    children = {}
    for shop, loc in ((CHILD_A, A_LOC1), (CHILD_B, B_LOC1), (CHILD_C, C_LOC1)):
        children[shop] = MemoryStore(shop)
        children[shop].levels[(CHILD_ITEMS[shop], loc)] = level
    return Net(parent, children, ledger or MemoryLedger(), MemoryWriteRecords(), MemoryAudit())


CHILD_LOC = {CHILD_A: A_LOC1, CHILD_B: B_LOC1, CHILD_C: C_LOC1}


def order(shop: str, order_id: int, qty: int = 1, line_id: int | None = None, refunds=()) -> dict:
    """A point-of-sale order at the child's first location (it names where it was sold)."""
    line = line_id or order_id * 10
    return {
        "id": order_id,
        "location_id": CHILD_LOC[shop],
        "line_items": [{"id": line, "variant_id": CHILD_VARIANT_NUM[shop], "quantity": qty}],
        "refunds": list(refunds),
    }


def refund(refund_line_id: int, line_id: int, qty: int, restock_type: str = "cancel") -> dict:
    return {
        "id": refund_line_id // 10,
        "refund_line_items": [
            {"id": refund_line_id, "line_item_id": line_id, "quantity": qty, "restock_type": restock_type}
        ],
    }


def apply(net: Net, shop: str, topic: str, body: dict):
    return asyncio.run(
        apply_order_event(net.ctx(shop), order_event_from_webhook(shop, topic, body), "delivery:x")
    )


# --------------------------------------------------------------------------- pure rules


@pytest.mark.parametrize(
    ("level", "backlog", "delta", "expected"),
    [
        (10, 0, -3, (-3, 0)),
        (1, 0, -1, (-1, 0)),
        (0, 0, -1, (0, 1)),  # the last unit is gone: parent stays 0, one unit oversold
        (1, 0, -3, (-1, 2)),
        (0, 2, 1, (0, 1)),  # a restock pays the backlog back first
        (0, 1, 3, (2, 0)),
        (-2, 0, -1, (0, 1)),  # already negative (outside storesync): never pushed further down
        (-2, 0, 5, (5, 0)),
    ],
)
def test_plan_delta_keeps_the_parent_at_zero_and_counts_oversold_units(level, backlog, delta, expected):
    assert plan_delta(level, backlog, delta) == expected


def test_idempotency_keys_are_deterministic_per_line_and_kind():
    a = LedgerKey(CHILD_A, "gid://shopify/LineItem/1", EntryKind.SALE)
    assert a.idempotency_key == LedgerKey(CHILD_A, "gid://shopify/LineItem/1", EntryKind.SALE).idempotency_key
    assert a.idempotency_key != LedgerKey(CHILD_B, "gid://shopify/LineItem/1", EntryKind.SALE).idempotency_key
    assert (
        a.idempotency_key
        != LedgerKey(CHILD_A, "gid://shopify/LineItem/1", EntryKind.RESTOCK, "r").idempotency_key
    )


# --------------------------------------------------------------------------- parsing


def test_order_webhooks_parse_into_sales_and_restocks():
    body = order(CHILD_A, 7, qty=3, refunds=[refund(901, 70, 2), refund(902, 70, 1, "no_restock")])
    body["line_items"].append({"id": 71, "variant_id": None, "quantity": 1})  # a custom item
    ev = order_event_from_webhook(CHILD_A, "orders/cancelled", body)
    assert ev.order_id == "gid://shopify/Order/7"
    assert [(s.order_line_id, s.child_variant_id, s.quantity) for s in ev.sales] == [
        ("gid://shopify/LineItem/70", "gid://shopify/ProductVariant/2001", 3)
    ]
    assert [(r.restock_id, r.quantity) for r in ev.restocks] == [("gid://shopify/RefundLineItem/901", 2)]
    assert ev.skipped == ("gid://shopify/LineItem/71",)


def test_a_refund_webhook_carries_its_sale_line():
    body = {
        "id": 5,
        "order_id": 7,
        "refund_line_items": [
            {
                "id": 901,
                "line_item_id": 70,
                "quantity": 1,
                "restock_type": "return",
                "line_item": {"id": 70, "variant_id": 2001, "quantity": 2},
            }
        ],
    }
    ev = order_event_from_webhook(CHILD_A, "refunds/create", body)
    assert [(s.order_line_id, s.quantity) for s in ev.sales] == [("gid://shopify/LineItem/70", 2)]
    assert len(ev.restocks) == 1


@pytest.mark.parametrize("bad", [0, -1, "2", None])
def test_bad_quantities_are_clear_errors(bad):
    body = order(CHILD_A, 1)
    body["line_items"][0]["quantity"] = bad
    with pytest.raises(InventoryError, match="positive integer"):
        order_event_from_webhook(CHILD_A, "orders/create", body)


def test_non_order_topics_are_rejected():
    with pytest.raises(InventoryError, match="no order lines"):
        order_event_from_webhook(CHILD_A, "products/update", {"id": 1})


# --------------------------------------------------------------------------- applying sales


def test_the_same_sale_delivered_five_times_and_out_of_order_applies_once():
    net = make_net(10)
    sale = order(CHILD_A, 1, qty=2)
    cancelled = order(CHILD_A, 1, qty=2, refunds=[refund(901, 10, 2)])
    deliveries = [
        ("orders/cancelled", cancelled),
        ("orders/create", sale),
        ("orders/create", sale),
        ("orders/updated", sale),
        ("orders/cancelled", cancelled),
        ("orders/create", sale),
    ]
    for topic, body in deliveries:
        apply(net, CHILD_A, topic, body)
    assert net.level == 10  # sold 2, restocked 2
    adjusts = [c for c in net.parent.calls if c[0] == "inventoryAdjustQuantities"]
    assert [c[1][2] for c in adjusts] == [-2, 2]
    net2 = make_net(10)
    for _ in range(5):
        outcomes = apply(net2, CHILD_A, "orders/create", sale)
    assert net2.level == 8 and outcomes[0].outcome is Outcome.DUPLICATE


def test_two_children_selling_the_last_unit_leave_the_parent_at_zero_and_record_the_oversell():
    net = make_net(1)
    a = apply(net, CHILD_A, "orders/create", order(CHILD_A, 1))
    b = apply(net, CHILD_B, "orders/create", order(CHILD_B, 2))
    assert net.level == 0 and net.parent.min_level_seen[(P_ITEM, P_LOC1)] == 0
    assert (a[0].applied_delta, a[0].oversold) == (-1, 0)
    assert (b[0].applied_delta, b[0].oversold) == (0, 1)
    assert asyncio.run(net.ledger.backlog(P_ITEM, P_LOC1)) == 1
    # cancelling the oversold order releases nothing the parent has
    apply(net, CHILD_B, "orders/cancelled", order(CHILD_B, 2, refunds=[refund(901, 20, 1)]))
    assert net.level == 0 and asyncio.run(net.ledger.backlog(P_ITEM, P_LOC1)) == 0


def test_a_restock_beyond_what_was_sold_is_rejected():
    net = make_net(10)
    apply(net, CHILD_A, "orders/create", order(CHILD_A, 1, qty=1))
    with pytest.raises(InventoryError, match="exceeds the 1 sold"):
        apply(net, CHILD_A, "orders/cancelled", order(CHILD_A, 1, qty=1, refunds=[refund(901, 10, 2)]))
    assert net.level == 9


def test_an_unlinked_variant_is_reported_not_guessed():
    net = make_net(10)
    body = order(CHILD_A, 1)
    body["line_items"][0]["variant_id"] = 999999
    out = apply(net, CHILD_A, "orders/create", body)
    assert out[0].outcome is Outcome.UNLINKED and net.level == 10 and net.parent.calls == []


class CrashOnceLedger(MemoryLedger):
    """Storage that fails once right after the store call (a worker dying mid-sale)."""

    def __init__(self):
        super().__init__()
        self.crashed = False

    async def mark_applied(self, key, quantity_after):
        if not self.crashed:
            self.crashed = True
            raise ConnectionError("worker died")
        return await super().mark_applied(key, quantity_after)


def test_a_crash_after_the_adjust_does_not_apply_the_sale_twice():
    net = make_net(10, ledger=CrashOnceLedger())
    with pytest.raises(ConnectionError):
        apply(net, CHILD_A, "orders/create", order(CHILD_A, 1, qty=3))
    assert net.level == 7
    # another child's sale of the same item arrives first: the interrupted one is finished before planning
    apply(net, CHILD_B, "orders/create", order(CHILD_B, 2, qty=1))
    apply(net, CHILD_A, "orders/create", order(CHILD_A, 1, qty=3))  # the retry
    assert net.level == 6
    assert all(e.status == "applied" for e in net.ledger.entries.values())


@st.composite
def sale_histories(draw):
    initial = draw(st.integers(0, 6))
    events = []
    for n in range(draw(st.integers(1, 6))):
        shop = draw(st.sampled_from([CHILD_A, CHILD_B, CHILD_C]))
        qty = draw(st.integers(1, 3))
        restocked = draw(st.integers(0, qty))
        events.append((shop, "orders/create", order(shop, n + 1, qty=qty)))
        if restocked:
            events.append(
                (
                    shop,
                    "orders/cancelled",
                    order(shop, n + 1, qty=qty, refunds=[refund(n * 100 + 1, (n + 1) * 10, restocked)]),
                )
            )
    deliveries = draw(st.lists(st.sampled_from(events), min_size=len(events), max_size=len(events) * 3))
    deliveries += events  # every event arrives at least once
    order_seed = draw(st.randoms(use_true_random=False))
    order_seed.shuffle(deliveries)
    return initial, events, deliveries


@settings(max_examples=150, deadline=None)
@given(sale_histories())
def test_any_delivery_order_and_duplication_of_the_same_sales_gives_the_same_parent_level(history):
    initial, events, deliveries = history
    net = make_net(initial)
    for shop, topic, body in deliveries:
        apply(net, shop, topic, body)
    net_sum = 0
    for _shop, topic, body in events:
        if topic == "orders/create":
            net_sum -= body["line_items"][0]["quantity"]
        else:
            net_sum += body["refunds"][0]["refund_line_items"][0]["quantity"]
    assert net.level == max(initial + net_sum, 0)
    assert asyncio.run(net.ledger.backlog(P_ITEM, P_LOC1)) == max(-(initial + net_sum), 0)
    assert net.parent.min_level_seen.get((P_ITEM, P_LOC1), initial) >= 0


# --------------------------------------------------------------------------- pushing levels


class RacingStore(MemoryStore):
    """A child whose level moves (a shopper) between our read and our write, `races` times."""

    def __init__(self, shop, races):
        super().__init__(shop)
        self.races = races

    async def set_level(self, item, location, quantity, **kw):
        if self.races:
            self.races -= 1
            self.levels[(item, location)] -= 1
        return await super().set_level(item, location, quantity, **kw)


def test_a_lost_compare_and_set_is_re_read_and_retried():
    store = RacingStore(CHILD_A, races=2)
    store.levels[("i", "l")] = 10
    writes, audit = MemoryWriteRecords(), MemoryAudit()
    out = asyncio.run(push_level(store, writes, audit, "i", "l", 4, "job:1"))
    assert (out.result, out.before, out.attempts) == (PushResult.SET, 8, 3)
    assert store.levels[("i", "l")] == 4
    assert [c[1][3] for c in store.calls] == [10, 9, 8]  # changeFromQuantity follows each re-read


def test_compare_and_set_retries_are_bounded():
    store = RacingStore(CHILD_A, races=10)
    store.levels[("i", "l")] = 10
    with pytest.raises(StaleRetriesExhausted):
        asyncio.run(
            push_level(store, MemoryWriteRecords(), MemoryAudit(), "i", "l", 4, "job:1", max_attempts=3)
        )


class CheckingStore(MemoryStore):
    def __init__(self, shop, writes):
        super().__init__(shop)
        self.writes = writes

    async def set_level(self, item, location, quantity, **kw):
        assert any(r.quantity == quantity for r in self.writes.records), "write not recorded before the call"
        return await super().set_level(item, location, quantity, **kw)


def test_each_write_is_recorded_before_it_is_made():
    writes = MemoryWriteRecords()
    store = CheckingStore(CHILD_A, writes)
    store.levels[("i", "l")] = 1
    assert (
        asyncio.run(push_level(store, writes, MemoryAudit(), "i", "l", 3, "job:1")).result is PushResult.SET
    )


def test_fan_out_sets_every_mapped_child_to_the_parents_level_and_skips_the_unmapped():
    net = make_net(10)
    net.parent.levels[(P_ITEM, P_LOC1)] = 6
    net.parent.levels[(P_ITEM, P_LOC2)] = -2
    maps = {s: link_map(s) for s in net.children}
    out = asyncio.run(
        fan_out_level(
            merchant(), net.parent, net.children, maps, net.writes, net.audit, P_ITEM, P_LOC1, "job:2"
        )
    )
    assert {o.shop: o.result for o in out} == {s: PushResult.SET for s in net.children}
    assert net.children[CHILD_B].levels[(CHILD_ITEMS[CHILD_B], B_LOC1)] == 6
    out = asyncio.run(
        fan_out_level(
            merchant(), net.parent, net.children, maps, net.writes, net.audit, P_ITEM, P_LOC2, "job:3"
        )
    )
    assert {o.shop: o.result for o in out} == {
        CHILD_A: PushResult.SET,
        CHILD_B: PushResult.UNMAPPED,
        CHILD_C: PushResult.UNMAPPED,
    }
    assert (
        net.children[CHILD_A].levels[(CHILD_ITEMS[CHILD_A], "gid://shopify/Location/12")] == 0
    )  # never negative


def test_our_own_writes_come_back_as_echoes_and_cause_nothing():
    """A sale adjusts the parent and fans out; the level webhooks that follow are all echoes."""
    net = make_net(10)
    versions = MemoryAppliedVersions()
    apply(net, CHILD_A, "orders/create", order(CHILD_A, 1, qty=2))
    maps = {s: link_map(s) for s in net.children}
    asyncio.run(
        fan_out_level(
            merchant(), net.parent, net.children, maps, net.writes, net.audit, P_ITEM, P_LOC1, "job:1"
        )
    )
    from datetime import UTC, datetime

    now = datetime.now(UTC)

    def judge(shop, role, item, loc, qty):
        return asyncio.run(
            judge_level_delivery(
                shop=shop,
                role=role,
                inventory_item_id=item,
                location_id=loc,
                available=qty,
                version=Version(now, "e"),
                versions=versions,
                writes=net.writes,
            )
        )

    assert judge(PARENT, "parent", P_ITEM, P_LOC1, 8) is LevelDecision.ECHO
    assert judge(CHILD_B, "child", CHILD_ITEMS[CHILD_B], B_LOC1, 8) is LevelDecision.ECHO
    assert judge(PARENT, "parent", P_ITEM, P_LOC1, 5) is LevelDecision.FAN_OUT  # someone else changed it


def test_random_sales_then_fan_out_converge_every_store():
    rng = random.Random(7)
    net = make_net(20)
    maps = {s: link_map(s) for s in net.children}
    for n in range(15):
        shop = rng.choice(list(net.children))
        apply(net, shop, "orders/create", order(shop, n + 1, qty=rng.randint(1, 2)))
        asyncio.run(
            fan_out_level(
                merchant(), net.parent, net.children, maps, net.writes, net.audit, P_ITEM, P_LOC1, f"job:{n}"
            )
        )
    levels = {
        s: st_.levels[(CHILD_ITEMS[s], loc)]
        for (s, st_), loc in zip(net.children.items(), (A_LOC1, B_LOC1, C_LOC1), strict=True)
    }
    assert set(levels.values()) == {net.level}


class SellingParent(MemoryStore):
    """A parent that sells on its own (POS) between our read and our adjust, `sales` times."""

    def __init__(self, shop, sales):
        super().__init__(shop)
        self.sales = sales

    async def adjust_level(self, item, location, delta, **kw):
        if self.sales:
            self.sales -= 1
            self.levels[(item, location)] -= 1
            self._note((item, location))
        return await super().adjust_level(item, location, delta, **kw)


def test_the_parent_selling_the_last_unit_itself_meanwhile_still_never_goes_below_zero():
    net = make_net(1)
    net.parent = SellingParent(PARENT, sales=1)
    net.parent.levels[(P_ITEM, P_LOC1)] = 1
    (out,) = apply(net, CHILD_A, "orders/create", order(CHILD_A, 1))
    assert net.level == 0 and net.parent.min_level_seen[(P_ITEM, P_LOC1)] == 0
    assert (out.applied_delta, out.oversold) == (0, 1)
    entry = next(iter(net.ledger.entries.values()))
    assert entry.plan_no == 1


def test_a_parent_that_keeps_moving_makes_the_sale_retry_later():
    net = make_net(10)
    net.parent = SellingParent(PARENT, sales=10)
    net.parent.levels[(P_ITEM, P_LOC1)] = 10
    with pytest.raises(StaleRetriesExhausted):
        apply(net, CHILD_A, "orders/create", order(CHILD_A, 1))
    net.parent.sales = 0
    apply(net, CHILD_A, "orders/create", order(CHILD_A, 1))  # the job's retry
    assert net.level == 10 - 4 - 1  # four POS sales happened during the four attempts, then ours


class CountingStore(MemoryStore):
    def __init__(self, shop):
        super().__init__(shop)
        self.reads = 0

    async def read_level(self, inventory_item_id, location_id):
        self.reads += 1
        return await super().read_level(inventory_item_id, location_id)


def test_a_fan_out_expects_the_last_written_level_instead_of_reading_each_child():
    writes, audit = MemoryWriteRecords(), MemoryAudit()
    store = CountingStore(CHILD_B)
    store.levels[("i", "l")] = 10
    first = asyncio.run(push_level(store, writes, audit, "i", "l", 7, "job:1", guess_from_last_write=True))
    assert (first.result, first.before, store.reads) == (
        PushResult.SET,
        10,
        1,
    )  # nothing written before: read
    second = asyncio.run(push_level(store, writes, audit, "i", "l", 6, "job:2", guess_from_last_write=True))
    assert (second.result, second.before, second.attempts) == (PushResult.SET, 7, 1)
    assert store.reads == 1  # the guess (our last write, 7) was right: no read
    assert store.calls[-1] == ("inventorySetQuantities", ("i", "l", 6, 7))
    assert audit.records[-1].before == {"available": 7}


def test_a_wrong_guess_writes_nothing_then_reads_and_sets_the_true_level():
    writes, audit = MemoryWriteRecords(), MemoryAudit()
    store = CountingStore(CHILD_B)
    store.levels[("i", "l")] = 10
    asyncio.run(push_level(store, writes, audit, "i", "l", 7, "job:1", guess_from_last_write=True))
    store.levels[("i", "l")] = 5  # the child sold two units since our write
    out = asyncio.run(push_level(store, writes, audit, "i", "l", 4, "job:2", guess_from_last_write=True))
    assert (out.result, out.before, out.attempts) == (PushResult.SET, 5, 2)
    assert store.levels[("i", "l")] == 4 and store.min_level_seen[("i", "l")] == 4
    assert [c[1][3] for c in store.calls[-2:]] == [7, 5]  # the guess was refused, the re-read value won
    assert audit.records[-1].before == {"available": 5}
    # The guess equal to the target proves nothing about the store: it is read.
    store.levels[("i", "l")] = 9
    out = asyncio.run(push_level(store, writes, audit, "i", "l", 4, "job:3", guess_from_last_write=True))
    assert (out.result, out.before) == (PushResult.SET, 9) and store.levels[("i", "l")] == 4


def test_the_seller_is_read_first_while_its_siblings_are_set_from_the_last_write():
    net = make_net(10)
    locs = {CHILD_A: A_LOC1, CHILD_B: B_LOC1, CHILD_C: C_LOC1}
    net.children = {s: CountingStore(s) for s in locs}
    for shop, store in net.children.items():
        store.levels[(CHILD_ITEMS[shop], locs[shop])] = 10
    maps = {s: link_map(s) for s in net.children}
    net.parent.levels[(P_ITEM, P_LOC1)] = 8
    asyncio.run(
        fan_out_level(
            merchant(), net.parent, net.children, maps, net.writes, net.audit, P_ITEM, P_LOC1, "job:1"
        )
    )
    reads = {s: st.reads for s, st in net.children.items()}
    calls = {s: len(st.calls) for s, st in net.children.items()}
    net.parent.levels[(P_ITEM, P_LOC1)] = 7  # a sale on child A moved the parent, and child A itself
    net.children[CHILD_A].levels[(CHILD_ITEMS[CHILD_A], A_LOC1)] = 7
    out = asyncio.run(
        fan_out_level(
            merchant(),
            net.parent,
            net.children,
            maps,
            net.writes,
            net.audit,
            P_ITEM,
            P_LOC1,
            "job:2",
            moved={CHILD_A},
        )
    )
    assert {o.shop: (o.result, o.attempts) for o in out} == {
        CHILD_A: (PushResult.UNCHANGED, 1),
        CHILD_B: (PushResult.SET, 1),
        CHILD_C: (PushResult.SET, 1),
    }
    assert net.children[CHILD_A].reads == reads[CHILD_A] + 1  # the seller: read, no wasted write
    assert len(net.children[CHILD_A].calls) == calls[CHILD_A]
    for shop in (CHILD_B, CHILD_C):
        assert net.children[shop].reads == reads[shop]  # siblings: set straight from the last write
        assert net.children[shop].levels[(CHILD_ITEMS[shop], locs[shop])] == 7
