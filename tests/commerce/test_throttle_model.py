"""The leaky-bucket model's arithmetic (pure: no clock, no I/O)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from storesync.commerce.operations import get_operation
from storesync.commerce.throttle import (
    BucketState,
    CostEstimator,
    QueryCost,
    ThrottleStatus,
    settle_state,
    static_cost,
    wait_seconds,
)

STANDARD = BucketState(capacity=2000, restore_rate=100, available=2000, at=0.0)


def test_wait_is_missing_points_over_restore_rate():
    assert wait_seconds(requested=150, available=100, restore_rate=100) == pytest.approx(0.5)
    assert wait_seconds(requested=50, available=100, restore_rate=100) == 0.0
    assert wait_seconds(requested=10, available=-40, restore_rate=50) == pytest.approx(1.0)


def test_level_restores_at_rate_and_stops_at_capacity():
    s = BucketState(2000, 100, 500, at=10.0)
    assert s.level(10.0) == 500
    assert s.level(12.5) == pytest.approx(750)
    assert s.level(100.0) == 2000
    assert s.level(5.0) == 500  # a clock that went backwards restores nothing


def test_reserve_takes_points_and_waits_only_for_what_is_missing():
    s = BucketState(2000, 100, 30, at=0.0)
    g = s.reserve(50, now=0.0)
    assert g.granted and g.wait == pytest.approx(0.2)
    assert g.state.available == pytest.approx(-20)
    # the next caller queues behind: it waits for its own points plus the 20 owed
    g2 = g.state.reserve(10, now=0.0)
    assert g2.wait == pytest.approx(0.3)


def test_a_call_estimated_above_the_buckets_capacity_goes_once_the_bucket_is_full():
    """A bucket smaller than a page was sized for (Shopify may lower a store's limits): the call
    waits for a full bucket, never forever (found as a flush deferred every 4 s for minutes)."""
    small = BucketState(capacity=200, restore_rate=10, available=200, at=0.0)
    g = small.reserve(229, now=0.0, max_wait=2.0)
    assert g.granted and g.wait == 0.0
    g = BucketState(capacity=200, restore_rate=10, available=150, at=0.0).reserve(229, now=0.0)
    assert g.granted and g.wait == pytest.approx(5.0)


def test_reserve_margin_keeps_slack_in_the_bucket():
    g = BucketState(2000, 100, 100, at=0.0).reserve(100, now=0.0, margin=20)
    assert g.wait == pytest.approx(0.2)


def test_reserve_refuses_without_taking_when_the_wait_exceeds_the_limit():
    s = BucketState(2000, 100, 0, at=0.0)
    g = s.reserve(1000, now=0.0, max_wait=5)
    assert not g.granted and g.wait == pytest.approx(10)
    assert g.state.available == 0


def test_refund_gives_back_down_to_actual_cost_and_caps_at_capacity():
    s = BucketState(2000, 100, 1000, at=0.0)
    after = settle_state(s, 0.0, reserved=300, charged=120, status=None, waiting_others=0)
    assert after.available == pytest.approx(1180)
    full = settle_state(
        BucketState(2000, 100, 1990, 0.0), 0.0, reserved=300, charged=0, status=None, waiting_others=0
    )
    assert full.available == 2000


def test_unknown_charge_keeps_the_reservation_spent():
    s = BucketState(2000, 100, 1000, at=0.0)
    assert settle_state(s, 1.0, reserved=50, charged=None, status=None, waiting_others=0).available == 1100


def test_throttle_status_corrects_the_model_minus_what_others_have_pending():
    s = BucketState(2000, 100, 1500, at=0.0)  # we believed 1500
    status = ThrottleStatus(maximum_available=4000, currently_available=700, restore_rate=200)
    after = settle_state(s, 2.0, reserved=10, charged=10, status=status, waiting_others=30)
    assert (after.capacity, after.restore_rate) == (4000, 200)  # a plan change is adopted
    assert after.available == pytest.approx(670)
    assert after.at == 2.0
    # and upwards: a model that was too pessimistic catches up with the server
    low = BucketState(2000, 100, -500, at=0.0)
    up = low.observe(ThrottleStatus(2000, 1900, 100), now=0.0)
    assert up.available == 1900


def test_cost_extensions_parse_and_reject_garbage():
    ext = {
        "cost": {
            "requestedQueryCost": 12,
            "actualQueryCost": 11,
            "throttleStatus": {"maximumAvailable": 2000.0, "currentlyAvailable": 1989, "restoreRate": 100.0},
        }
    }
    cost = QueryCost.from_extensions(ext)
    assert cost == QueryCost(12, 11, ThrottleStatus(2000, 1989, 100))
    assert QueryCost.from_extensions(None) is None
    bad = QueryCost.from_extensions(
        {"cost": {"requestedQueryCost": "x", "throttleStatus": {"restoreRate": 0}}}
    )
    assert bad == QueryCost(None, None, None)


def test_static_cost_follows_shopify_rules():
    page = get_operation("ProductsPage")
    sizes = {"variantsFirst": 10, "collectionsFirst": 5, "metafieldsFirst": 5, "mediaFirst": 5}
    one = static_cost(page, {**sizes, "first": 1})
    two = static_cost(page, {**sizes, "first": 2})
    # connection: 2 + first x (one product: itself, seo, options(+values), and its connections)
    # (each variant: itself, its selected options, its inventory item with its unit cost,
    # measurement and weight;
    # each collection: itself, its sources, their inclusion and its conditions; each media:
    # itself and a MediaImage's image)
    per_product = 1 + 1 + 2 + (2 + 10 * 6) + (2 + 5 * 4) + (2 + 5) + (2 + 5 * 2)
    assert one == 2 + per_product and two - one == per_product
    # mutations: 10 plus the objects the payload selects
    assert static_cost(get_operation("ProductDelete")) == 11
    levels = get_operation("InventoryLevels")
    assert static_cost(levels, {"inventoryItemIds": ["a"] * 4, "locationsFirst": 3}) == 4 * (1 + 2 + 3 * 3)


def test_estimator_learns_the_server_ratio_and_sizes_pages_under_the_limit():
    est = CostEstimator()
    page = get_operation("ProductsPage")
    sizes = {"variantsFirst": 25, "collectionsFirst": 10, "metafieldsFirst": 10, "mediaFirst": 10}
    n = est.largest_page(page, sizes, 50)
    assert est.estimate(page, {**sizes, "first": n}) <= 1000 < est.estimate(page, {**sizes, "first": n + 1})
    est.learn(page, {**sizes, "first": n}, requested=2 * static_cost(page, {**sizes, "first": n}))
    assert est.largest_page(page, sizes, 50) < n
    assert est.estimate(get_operation("ProductDelete")) == 11  # other operations are unaffected


@given(
    costs=st.lists(st.floats(min_value=1, max_value=500), min_size=1, max_size=40),
    start=st.floats(min_value=-2000, max_value=2000),
)
def test_reservations_in_a_row_never_overspend_the_bucket(costs, start):
    """However many callers reserve at once, each is told to wait until the points it takes have
    been restored: at each caller's send time, the bucket (with nothing else charged) holds it."""
    state = BucketState(2000, 100, start, at=0.0)
    spent = 0.0
    for cost in costs:
        g = state.reserve(cost, now=0.0)
        spent += cost
        state = g.state
        # points restored by the send time, plus what was there, cover everything granted so far
        assert min(2000, start) + g.wait * 100 >= spent - 1e-6
        assert g.wait >= 0


@given(
    workers=st.integers(min_value=1, max_value=6),
    costs=st.lists(st.integers(min_value=5, max_value=60), min_size=30, max_size=120),
    seed=st.integers(min_value=0, max_value=10_000),
)
@settings(max_examples=60, deadline=None)
def test_simulated_workers_sharing_the_model_are_never_throttled(workers, costs, seed):
    """Discrete-event simulation: `workers` callers drain a backlog through one shared model
    against a Shopify-like bucket (500 points, 100/s) with random network latencies. The model
    starts wrong (it believes a full standard bucket; the store's is empty), so the first calls
    are THROTTLED; from the first answers on, with a margin covering what the model cannot see
    (the others' calls already on the wire), no call is THROTTLED again, and the restore rate
    is used within a few percent."""
    import heapq
    import random

    rng = random.Random(seed)
    capacity, rate = 500.0, 100.0
    server = {"level": 0.0, "at": 0.0}
    max_latency = 0.03  # each way
    margin = (workers - 1) * max(costs) + 1  # what the model cannot see: the others' calls on the wire
    model = BucketState.standard(0.0)
    waiting: dict[int, tuple[float, float]] = {}  # reservation -> (cost, send time)
    backlog = list(costs)
    events: list[tuple[float, int, str, tuple]] = []
    seq = 0
    throttled = 0
    charged = 0.0

    def push(t: float, kind: str, data: tuple) -> None:
        nonlocal seq
        seq += 1
        heapq.heappush(events, (t, seq, kind, data))

    def reserve(now: float) -> None:
        nonlocal model, seq
        if not backlog:
            return
        cost = backlog.pop(0)
        grant = model.reserve(cost, now, margin=margin)
        model = grant.state
        seq += 1
        waiting[seq] = (cost, now + grant.wait)
        push(now + grant.wait + rng.uniform(0.001, max_latency), "arrive", (seq, cost))

    for _ in range(workers):
        reserve(0.0)
    end = 0.0
    while events:
        now, _, kind, data = heapq.heappop(events)
        if kind == "arrive":  # the server takes the points or throttles, as Shopify does
            rid, cost = data
            server["level"] = min(capacity, server["level"] + (now - server["at"]) * rate)
            server["at"] = now
            ok = server["level"] >= cost
            if ok:
                server["level"] -= cost
            status = ThrottleStatus(capacity, math.floor(server["level"]), rate)
            push(now + rng.uniform(0.001, max_latency), "answer", (rid, cost, ok, status))
        else:
            rid, cost, ok, status = data
            waiting.pop(rid)
            others = sum(c for c, send_at in waiting.values() if send_at > now)
            model = settle_state(
                model, now, reserved=cost, charged=cost if ok else 0, status=status, waiting_others=others
            )
            if ok:
                charged += cost
                end = now
            else:
                throttled += 1
                backlog.insert(0, cost)
            reserve(now)
    assert throttled <= workers  # the first calls only
    assert charged == sum(costs)
    # everything was paid by restores at (nearly) the restore rate (the margin stays in the
    # bucket: its level at the end is not counted as used)
    if sum(costs) > 2 * capacity:
        level_end = min(capacity, server["level"] + (end - server["at"]) * rate)
        assert (charged + level_end) / (end * rate) > 0.95


def test_reserve_keep_leaves_points_for_others_and_never_asks_for_more_than_the_bucket():
    s = BucketState(2000, 100, 600, at=0.0)
    assert s.reserve(50, now=0.0, keep=500).wait == 0.0
    assert s.reserve(150, now=0.0, keep=500).wait == pytest.approx(0.5)
    # keep near the capacity: the call still only waits until a full bucket pays for it
    assert s.reserve(100, now=0.0, keep=5000).wait == pytest.approx((2000 - 600) / 100)
