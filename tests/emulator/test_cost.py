"""Calculated query cost, refunds to actual cost, throttling and recovery, over real HTTP."""

from __future__ import annotations

import time

import httpx

from tests.emulator.helpers import PARENT, first_product, gql
from tests.support.emulator import running_emulator

IDS = "query($n: Int!) { products(first: $n) { nodes { id } } }"


def cost_of(body: dict) -> dict:
    return body["extensions"]["cost"]


def test_connection_cost_scales_with_first_and_is_refunded_to_actual(emulator):
    emulator.seed(PARENT, products=3)
    body = emulator.graphql(PARENT, IDS, {"n": 50})
    cost = cost_of(body)
    assert cost["requestedQueryCost"] == 2 + 50
    assert cost["actualQueryCost"] == 2 + 3
    # Charged the actual cost, not the requested one (restoring at 100/s adds < 1 point here).
    assert 2000 - 5 - 1 <= cost["throttleStatus"]["currentlyAvailable"] <= 2000 - 5 + 1
    nested = emulator.graphql(
        PARENT, "{ products(first: 10) { nodes { id variants(first: 5) { nodes { id } } } } }"
    )
    assert cost_of(nested)["requestedQueryCost"] == 2 + 10 * (1 + 2 + 5)
    assert cost_of(nested)["actualQueryCost"] == 2 + 3 * (1 + 2 + 2)


def test_mutation_costs_ten_plus_its_payload_objects(emulator):
    body = emulator.graphql(
        PARENT,
        'mutation { collectionCreate(input: {title: "C"}) { collection { id } userErrors { field } } }',
    )
    assert body["data"]["collectionCreate"]["collection"]["id"]
    assert cost_of(body)["requestedQueryCost"] == 10 + 1 + 1
    assert cost_of(body)["actualQueryCost"] == 10 + 1


def test_query_above_1000_points_is_refused_uncharged(emulator):
    body = emulator.graphql(
        PARENT, "{ products(first: 250) { nodes { id variants(first: 10) { nodes { id } } } } }"
    )
    assert "data" not in body
    err = body["errors"][0]
    assert err["extensions"]["code"] == "MAX_COST_EXCEEDED" and err["extensions"]["maxCost"] == 1000
    assert cost_of(body)["requestedQueryCost"] > 1000
    assert cost_of(body)["throttleStatus"]["currentlyAvailable"] == 2000


def drain_until_throttled(emu, n: int) -> dict:
    for _ in range(50):
        body = emu.graphql(PARENT, IDS, {"n": n})
        if "errors" in body:
            return body
    raise AssertionError("never throttled")


def test_throttled_call_gets_the_throttled_body_then_recovers(emulator):
    emulator.seed(PARENT, products=100, variants_per_product=1)
    emulator.set_plan(PARENT, bucket_size=300, restore_rate=200)
    throttled = drain_until_throttled(emulator, 100)
    assert "data" not in throttled
    assert throttled["errors"][0]["extensions"]["code"] == "THROTTLED"
    status = cost_of(throttled)["throttleStatus"]
    assert status["maximumAvailable"] == 300.0 and status["restoreRate"] == 200.0
    assert status["currentlyAvailable"] < cost_of(throttled)["requestedQueryCost"] == 102
    # Waiting what the bucket says is enough: (requested - available) / restoreRate.
    time.sleep((102 - status["currentlyAvailable"]) / 200 + 0.05)
    assert "errors" not in emulator.graphql(PARENT, IDS, {"n": 100})


def test_throttling_can_answer_http_429_with_retry_after():
    with running_emulator([PARENT], throttle_http_429=True, seed_products=60) as emu:
        emu.set_plan(PARENT, bucket_size=200, restore_rate=10)
        for _ in range(10):
            resp = httpx.post(
                emu.graphql_url(PARENT),
                headers=emu.headers(PARENT),
                json={"query": IDS, "variables": {"n": 60}},
            )
            if resp.status_code == 429:
                break
        assert resp.status_code == 429
        assert int(resp.headers["Retry-After"]) >= 1
        assert resp.json()["errors"][0]["extensions"]["code"] == "THROTTLED"


def test_plan_change_sets_bucket_size_and_restore_rate(emulator):
    out = emulator.set_plan(PARENT, "advanced")
    assert (
        out["throttleStatus"]["maximumAvailable"] == 4000.0 and out["throttleStatus"]["restoreRate"] == 200.0
    )
    body = emulator.graphql(PARENT, "{ shop { plan { displayName shopifyPlus } } }")
    assert body["data"]["shop"]["plan"] == {"displayName": "Advanced", "shopifyPlus": False}
    emulator.set_plan(PARENT, "plus")
    status = cost_of(emulator.graphql(PARENT, "{ shop { id } }"))["throttleStatus"]
    assert status["maximumAvailable"] == 20000.0 and status["restoreRate"] == 1000.0
    # Buckets are per store.
    other = cost_of(emulator.graphql("child-a.myshopify.com", "{ shop { id } }"))["throttleStatus"]
    assert other["maximumAvailable"] == 2000.0


def test_each_store_has_its_own_bucket(emulator):
    emulator.seed(PARENT, products=100, variants_per_product=1)
    emulator.set_plan(PARENT, bucket_size=300, restore_rate=1)
    drain_until_throttled(emulator, 100)
    assert gql(emulator, "child-a.myshopify.com", "{ shop { id } }")["shop"]["id"]


def test_usage_counts_calls_throttled_answers_and_points_and_the_level_log_times_changes(emulator):
    """The observation benchmarks read: per store its calls, THROTTLED answers and points charged
    (per operation), and every inventory_levels/update event in order."""
    emulator.seed(PARENT, products=2, variants_per_product=1)
    product = first_product(emulator)
    _, after = emulator.level_changes()
    before = emulator.throttle(PARENT)["usage"]
    body = emulator.graphql(PARENT, "query Ids($n: Int!) { products(first: $n) { nodes { id } } }", {"n": 5})
    item = product["variants"]["nodes"][0]["inventoryItem"]["id"]
    emulator.set_inventory(PARENT, item, product["location"], 7)
    usage = emulator.throttle(PARENT)["usage"]
    assert usage["requests"] == before["requests"] + 1 and usage["throttled"] == before["throttled"]
    charged = cost_of(body)["actualQueryCost"]
    assert usage["points"] == before["points"] + charged
    assert usage["by_operation"]["Ids"] == [1, charged]
    changes, last = emulator.level_changes(after)
    assert [(c[1], c[2], c[3], c[4]) for c in changes] == [(PARENT, item, product["location"], 7)]
    assert last == changes[-1][0] and emulator.level_changes(last)[0] == []
