"""Stock where Shopify moved it, end to end over HTTP (emulator, web tier, two workers, Postgres):
sales at the location order routing assigned, cancels, refunds, returns and edits given back
once, a child's own stock moves under both policies (child-b reports them, child-a follows the
parent), a deactivated mapped location, and a reconciliation applying what dropped webhooks
never said. Judged by the stores' own snapshots: the parent is start - sold + restocked (+ what
child-b reported) per item and location, and every child equals the parent.
"""

from __future__ import annotations

import pytest

from storesync.demo.comparison import inventory_view
from storesync.demo.harness import running_system
from storesync.demo.seeding import LOCATION_NAMES
from tests.e2e.helpers import WAIT, settle, sql

pytestmark = pytest.mark.timeout(240)

SHOP, WAREHOUSE = LOCATION_NAMES
REVERT, REPORT = "child-a.myshopify.com", "child-b.myshopify.com"


@pytest.fixture(scope="module")
def system(module_layout):
    with running_system(
        module_layout.database_url,
        direct_url=module_layout.direct_url,
        children=2,
        products=8,
        workers=2,
        collections=0,
        subscribe="cli",
        plan="plus",
        child_settings={REPORT: {"stock_changes": "report"}},
        # The emulator's order webhooks come within a moment: a child's move is looked at 1 s later.
        extra_env={"STORESYNC_SYNC_RECONCILE_EVERY_S": "3600", "STORESYNC_SYNC_REASSERT_DELAY_S": "1"},
    ) as system:
        system.cli("backfill", check=True)
        settle(system)
        yield system


# --------------------------------------------------------------------------- helpers


def sku(system, n: int) -> str:
    return next(v["sku"] for v in system.product_by_handle(system.parent, f"demo-product-{n}")["variants"])


def levels(system, the_sku: str) -> dict[str, dict[str, int | None]]:
    """Every store's level of the SKU per location, from the stores' own snapshots."""
    out = {}
    for shop in system.shops:
        view = inventory_view(system.snapshot(shop))
        out[shop] = {loc: view.get((the_sku, loc)) for loc in LOCATION_NAMES}
    return out


def in_step(system, the_sku: str, parent: dict[str, int]) -> bool:
    now = levels(system, the_sku)
    return all(now[shop] == parent for shop in system.shops)


def wait_in_step(system, the_sku: str, parent: dict[str, int]) -> None:
    """Until the parent holds `parent` and every child equals it, then the queue is idle and it
    still holds (no late job undoes it)."""
    system.wait_until(lambda: in_step(system, the_sku, parent), WAIT, message=f"{the_sku} at {parent}")
    settle(system, delayed_too=True)
    assert levels(system, the_sku) == {shop: parent for shop in system.shops}


def variant(system, shop: str, the_sku: str) -> str:
    return f"gid://shopify/ProductVariant/{system.variant_by_sku(shop, the_sku)['id']}"


def online_order(system, shop: str, the_sku: str, quantity: int) -> dict:
    """A web order: Shopify's routing picks the location."""
    return system.emulator.place_order(
        shop, [{"variant_id": variant(system, shop, the_sku), "quantity": quantity}]
    )


def line_id(order: dict) -> int:
    return order["line_items"][0]["id"]


def dead_jobs(system) -> list[tuple]:
    return sql(system, "SELECT kind, errors->-1->>'message' FROM jobs WHERE state = 'dead'")


# --------------------------------------------------------------------------- sales and restocks


def test_a_web_sale_draws_from_the_location_order_routing_assigned(system) -> None:
    """The first location has none left, so Shopify routes the order to the second: the parent's
    Warehouse pays for it, not its shop."""
    the_sku = sku(system, 1)
    system.set_inventory(system.parent, the_sku, 0, SHOP)
    start = {SHOP: 0, WAREHOUSE: levels(system, the_sku)[system.parent][WAREHOUSE]}
    wait_in_step(system, the_sku, start)
    online_order(system, REVERT, the_sku, 2)
    wait_in_step(system, the_sku, {SHOP: 0, WAREHOUSE: start[WAREHOUSE] - 2})


@pytest.mark.parametrize("child", [REPORT, REVERT])
def test_a_cancel_with_restock_gives_every_unit_back_once(system, child) -> None:
    """Shopify cancels with restock as a refund of restock type cancel, listed in orders/cancelled
    and sent again as refunds/create: one restock, in every store. In the child that reports its
    own moves its orders are not taken for moves of its own; in the one that follows the parent,
    its level going back up is not set back (the units are not lost there either)."""
    the_sku = sku(system, 2)
    start = levels(system, the_sku)[system.parent]
    order = online_order(system, child, the_sku, 2)
    wait_in_step(system, the_sku, {**start, SHOP: start[SHOP] - 2})
    system.cancel_order(child, order["id"], restock=True)
    wait_in_step(system, the_sku, start)
    restocks = sql(
        system,
        "SELECT kind, sum(requested_delta) FROM sync_inventory_ledger WHERE order_id = %(o)s GROUP BY kind",
        {"o": order["admin_graphql_api_id"]},
    )
    assert sorted(restocks) == [("restock", 2), ("sale", -2)]
    assert not sql(system, "SELECT 1 FROM sync_inventory_ledger WHERE kind = 'manual'")


def test_a_refund_restocks_at_the_location_it_names(system) -> None:
    the_sku = sku(system, 3)
    start = levels(system, the_sku)[system.parent]
    order = system.place_order(REVERT, the_sku, 2, location=SHOP)
    system.emulator.fulfill_order(REVERT, order["id"])
    system.emulator.refund_order(
        REVERT,
        order["id"],
        [
            {
                "line_item_id": line_id(order),
                "quantity": 1,
                "restock_type": "return",
                "location_id": system.locations[REVERT][WAREHOUSE],
            }
        ],
    )
    wait_in_step(system, the_sku, {SHOP: start[SHOP] - 2, WAREHOUSE: start[WAREHOUSE] + 1})


def test_a_return_restocks_where_its_units_were_disposed(system) -> None:
    """Processing a return restocks each unit where its disposition says; the refund it issues
    has no_restock lines and gives back nothing more."""
    the_sku = sku(system, 4)
    start = levels(system, the_sku)[system.parent]
    order = system.place_order(REPORT, the_sku, 2, location=SHOP)
    system.emulator.fulfill_order(REPORT, order["id"])
    system.emulator.return_order(
        REPORT,
        order["id"],
        [{"line_item_id": line_id(order), "quantity": 1}],
        location_id=system.locations[REPORT][WAREHOUSE],
    )
    wait_in_step(system, the_sku, {SHOP: start[SHOP] - 2, WAREHOUSE: start[WAREHOUSE] + 1})
    kinds = sql(
        system,
        "SELECT kind, ref FROM sync_inventory_ledger WHERE order_id = %(o)s AND kind = 'restock'",
        {"o": order["admin_graphql_api_id"]},
    )
    assert [k for k, _ in kinds] == ["restock"] and "Disposition" in kinds[0][1]


def test_order_edits_removing_and_adding_units_move_the_parent_once_each(system) -> None:
    the_sku, added_sku = sku(system, 5), sku(system, 3)
    start, added_start = levels(system, the_sku)[system.parent], levels(system, added_sku)[system.parent]
    order = system.place_order(REVERT, the_sku, 3, location=SHOP)
    system.emulator.edit_order(REVERT, order["id"], changes=[{"line_item_id": line_id(order), "quantity": 2}])
    wait_in_step(system, the_sku, {**start, SHOP: start[SHOP] - 2})
    # a later edit: the line grows back to 4 and a new line sells another item
    system.emulator.edit_order(
        REVERT,
        order["id"],
        changes=[{"line_item_id": line_id(order), "quantity": 4}],
        additions=[{"variant_id": variant(system, REVERT, added_sku), "quantity": 1}],
    )
    wait_in_step(system, the_sku, {**start, SHOP: start[SHOP] - 4})
    sold = sum(added_start.values()) - 1
    system.wait_until(
        lambda: sum(levels(system, added_sku)[system.parent].values()) == sold, WAIT, message="addition sold"
    )
    wait_in_step(system, added_sku, levels(system, added_sku)[system.parent])


# --------------------------------------------------------------------------- a child's own stock moves


def test_a_childs_own_move_is_set_back_under_revert_and_reported_under_report(system) -> None:
    the_sku = sku(system, 6)
    start = levels(system, the_sku)[system.parent]
    # child-a (revert): a count by hand is set back to the parent's level
    system.set_inventory(REVERT, the_sku, start[SHOP] + 5, SHOP)
    wait_in_step(system, the_sku, start)
    # child-b (report): a delivery received becomes a delta on the parent, then reaches child-a
    system.set_inventory(REPORT, the_sku, start[SHOP] + 4, SHOP)
    wait_in_step(system, the_sku, {**start, SHOP: start[SHOP] + 4})
    reported = sql(
        system,
        "SELECT requested_delta, status FROM sync_inventory_ledger WHERE kind = 'manual' AND child_shop = %(s)s",
        {"s": REPORT},
    )
    assert reported == [(4, "applied")]
    assert sql(
        system,
        "SELECT count(*) FROM sync_audit WHERE action = 'saga_completed' AND object_id LIKE 'report:%%'",
    ) == [(1,)]


def test_a_report_whose_sibling_write_fails_for_good_is_compensated(system) -> None:
    """child-a's Warehouse is deactivated while its webhook is lost, so storesync still maps it:
    child-b's reported move reaches the parent, child-a's write fails for good (the location is
    gone), and the saga takes the parent write back, sets child-b back and says so in the audit."""
    the_sku = sku(system, 7)
    start = levels(system, the_sku)[system.parent]
    a_warehouse = system.locations[REVERT][WAREHOUSE]
    system.set_faults(webhooks={"drop_p": 1.0})
    try:
        system.emulator.deactivate_location(REVERT, a_warehouse, system.locations[REVERT][SHOP])
        system.drain_webhooks(WAIT)
    finally:
        system.set_faults()
    try:
        system.set_inventory(REPORT, the_sku, start[WAREHOUSE] + 3, WAREHOUSE)
        system.wait_until(
            lambda: sql(system, "SELECT 1 FROM sync_audit WHERE action = 'stock_report_compensated'"),
            WAIT,
            message="the report compensated",
        )
        settle(system, delayed_too=True)
        now = levels(system, the_sku)
        assert now[system.parent] == start and now[REPORT] == start
        assert sql(
            system,
            "SELECT sum(requested_delta) FROM sync_inventory_ledger WHERE kind = 'manual' AND child_item_id "
            "= %(i)s",
            {
                "i": f"gid://shopify/InventoryItem/{system.variant_by_sku(REPORT, the_sku)['inventory_item_id']}"
            },
        ) == [(0,)]
    finally:
        system.emulator.activate_location(REVERT, a_warehouse)
    # active again (its webhook delivered): the merchant is reconciled, child-a's levels set again
    wait_in_step(system, the_sku, start)


def test_a_deactivated_mapped_location_is_reported_and_not_written(system) -> None:
    the_sku = sku(system, 8)
    start = levels(system, the_sku)[system.parent]
    a_warehouse = system.locations[REVERT][WAREHOUSE]
    system.emulator.deactivate_location(REVERT, a_warehouse, system.locations[REVERT][SHOP])
    system.wait_until(
        lambda: sql(system, "SELECT 1 FROM sync_audit WHERE action = 'location_deactivated'"),
        WAIT,
        message="deactivation audited",
    )
    try:
        system.set_inventory(system.parent, the_sku, start[WAREHOUSE] - 1, WAREHOUSE)
        system.wait_until(
            lambda: levels(system, the_sku)[REPORT][WAREHOUSE] == start[WAREHOUSE] - 1,
            WAIT,
            message="child-b set",
        )
        settle(system, delayed_too=True)
        assert levels(system, the_sku)[REVERT][WAREHOUSE] is None  # deactivated: not written, not failing
        assert dead_jobs(system) == []
        status = " ".join(system.cli("status", check=True).stdout.split())
        assert "deactivated" in status
        listing = system.cli("network", "locations")
        out = " ".join(listing.stdout.split())
        assert listing.returncode == 1 and f"{a_warehouse} is deactivated" in out, out
        # the mapping proposed by name: child-b's Warehouse mirrors the parent's
        assert (
            f'"{system.locations[system.parent][WAREHOUSE]}" = "{system.locations[REPORT][WAREHOUSE]}"' in out
        )
    finally:
        system.emulator.activate_location(REVERT, a_warehouse)
    wait_in_step(system, the_sku, {**start, WAREHOUSE: start[WAREHOUSE] - 1})


def test_an_item_disconnected_from_a_mapped_location_is_not_written_there_until_stocked_again(system) -> None:
    """A merchant stops stocking an item at child-a's Shop (inventoryDeactivate, then
    inventory_levels/disconnect): recorded and audited, the parent's changes reach child-b and
    skip that level without a failing job; stocked again (inventory_levels/connect), it is set
    from the parent."""
    the_sku = sku(system, 4)
    start = levels(system, the_sku)[system.parent]
    item = f"gid://shopify/InventoryItem/{system.variant_by_sku(REVERT, the_sku)['inventory_item_id']}"
    a_shop = system.locations[REVERT][SHOP]
    level = system.emulator.graphql(
        REVERT,
        "query($i: ID!, $l: ID!) { inventoryItem(id: $i) { inventoryLevel(locationId: $l) { id } } }",
        {"i": item, "l": a_shop},
    )["data"]["inventoryItem"]["inventoryLevel"]["id"]
    off = system.emulator.graphql(
        REVERT,
        "mutation($id: ID!) { inventoryDeactivate(inventoryLevelId: $id) { userErrors { message } } }",
        {"id": level},
    )
    assert off["data"]["inventoryDeactivate"]["userErrors"] == [], off
    system.wait_until(
        lambda: sql(system, "SELECT 1 FROM sync_audit WHERE action = 'level_disconnected'"),
        WAIT,
        message="disconnect audited",
    )
    system.set_inventory(system.parent, the_sku, start[SHOP] - 3, SHOP)
    system.wait_until(
        lambda: levels(system, the_sku)[REPORT][SHOP] == start[SHOP] - 3, WAIT, message="child-b set"
    )
    settle(system, delayed_too=True)
    assert levels(system, the_sku)[REVERT] == {SHOP: None, WAREHOUSE: start[WAREHOUSE]}
    assert dead_jobs(system) == []
    assert "disconnected" in " ".join(system.cli("status", check=True).stdout.split())
    on = system.emulator.graphql(
        REVERT,
        """mutation($i: ID!, $l: ID!) { inventoryActivate(inventoryItemId: $i, locationId: $l, available: 50)
        @idempotent(key: "stock-e2e-reconnect") { userErrors { message } } }""",
        {"i": item, "l": a_shop},
    )
    assert on["data"]["inventoryActivate"]["userErrors"] == [], on
    wait_in_step(system, the_sku, {**start, SHOP: start[SHOP] - 3})


# --------------------------------------------------------------------------- reconciling what was sold


def test_a_sale_and_a_refund_whose_webhooks_were_dropped_are_applied_once_by_reconcile(system) -> None:
    the_sku = sku(system, 1)
    start = levels(system, the_sku)[system.parent]
    system.set_faults(webhooks={"drop_p": 1.0})
    try:
        order = system.place_order(REVERT, the_sku, 2, location=WAREHOUSE)
        refund = system.emulator.refund_order(
            REVERT, order["id"], [{"line_item_id": line_id(order), "quantity": 1, "restock_type": "cancel"}]
        )
        system.drain_webhooks(WAIT)
    finally:
        system.set_faults()
    dropped = {d["webhook_id"] for d in system.deliveries() if d.get("status") == "dropped"}
    assert set(order["webhooks"]["orders/create"]) <= dropped
    assert set(refund["webhooks"]["refunds/create"]) <= dropped
    settle(system, delayed_too=True)
    assert levels(system, the_sku)[system.parent] == start  # nothing reached the parent
    done = system.cli("reconcile", timeout=180)
    out = " ".join(done.stdout.split())
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 with movements it lacked" in out and order["admin_graphql_api_id"] in out, out
    wait_in_step(system, the_sku, {**start, WAREHOUSE: start[WAREHOUSE] - 1})
    # the pass is incremental: child-a's checkpoint is now past the order (the next pass reads
    # from there, less its overlap)
    [(moved,)] = sql(
        system,
        "SELECT checkpoint > %(at)s::timestamptz FROM sync_order_checkpoints WHERE child_shop = %(s)s",
        {"s": REVERT, "at": order["created_at"]},
    )
    assert moved
    again = " ".join(system.cli("reconcile", timeout=180, check=True).stdout.split())
    assert "0 with movements it lacked" in again and "0 fixed" in again, again
    assert levels(system, the_sku)[system.parent] == {**start, WAREHOUSE: start[WAREHOUSE] - 1}


def orders_bulk_queries(system, shop: str) -> list[dict]:
    """The store's bulk queries whose root is `orders` (Shopify's record of them)."""
    found = system.emulator.graphql(
        shop, "{ bulkOperations(first: 250) { nodes { id status query rootObjectCount } } }"
    )["data"]["bulkOperations"]["nodes"]
    return [op for op in found if "BulkChildOrders" in op["query"]]


def test_the_orders_pass_reads_by_bulk_query_and_a_second_pass_over_the_overlap_applies_nothing(
    system,
) -> None:
    """A sale and a refund with restock whose webhooks were dropped: the orders pass reads the
    child's orders by one bulk query (no page of orders), applies both once; the next pass reads
    them again (they are within its overlap) and applies nothing."""
    the_sku = sku(system, 2)
    start = levels(system, the_sku)[system.parent]
    system.set_faults(webhooks={"drop_p": 1.0})
    try:
        order = system.place_order(REPORT, the_sku, 3, location=SHOP)
        system.emulator.refund_order(
            REPORT, order["id"], [{"line_item_id": line_id(order), "quantity": 2, "restock_type": "cancel"}]
        )
        system.drain_webhooks(WAIT)
    finally:
        system.set_faults()
    settle(system, delayed_too=True)
    bulk_before = len(orders_bulk_queries(system, REPORT))
    paged_before = system.emulator.throttle(REPORT)["usage"]["by_operation"].get("ChildOrdersPage")
    done = system.cli("reconcile", timeout=180)
    out = " ".join(done.stdout.split())
    assert done.returncode == 0, done.stdout + done.stderr
    assert order["admin_graphql_api_id"] in out and "orders NOT compared" not in out, out
    wait_in_step(system, the_sku, {**start, SHOP: start[SHOP] - 1})
    ops = orders_bulk_queries(system, REPORT)
    assert len(ops) == bulk_before + 1 and ops[0]["status"] == "COMPLETED", ops
    assert "updated_at:>=" in ops[0]["query"] and int(ops[0]["rootObjectCount"]) >= 1, ops[0]
    assert system.emulator.throttle(REPORT)["usage"]["by_operation"].get("ChildOrdersPage") == paged_before
    again = " ".join(system.cli("reconcile", timeout=180, check=True).stdout.split())
    assert "0 with movements it lacked" in again and "0 fixed" in again, again
    assert len(orders_bulk_queries(system, REPORT)) == bulk_before + 2  # the overlap, read once more
    settle(system, delayed_too=True)
    assert levels(system, the_sku) == {shop: {**start, SHOP: start[SHOP] - 1} for shop in system.shops}
    assert dead_jobs(system) == []


def test_a_level_no_order_explains_is_reported_by_reconcile_and_handled_by_the_childs_policy(system) -> None:
    """Two moves whose webhooks were dropped: child-a's count (revert: set back to the parent's
    level) and child-b's delivery (report: a delta on the parent, then every child follows)."""
    the_sku = sku(system, 6)
    start = levels(system, the_sku)[system.parent]
    system.set_faults(webhooks={"drop_p": 1.0})
    try:
        system.set_inventory(REVERT, the_sku, start[SHOP] + 7, SHOP)
        system.set_inventory(REPORT, the_sku, start[WAREHOUSE] + 2, WAREHOUSE)
        system.drain_webhooks(WAIT)
    finally:
        system.set_faults()
    settle(system, delayed_too=True)
    done = system.cli("reconcile", timeout=180)
    out = " ".join(done.stdout.split())
    assert done.returncode == 0, done.stdout + done.stderr
    assert out.count("no order explains") == 2, out
    assert "set back to the parent's level (stock_changes = revert)" in out, out
    assert "handed to its stock policy, report" in out, out
    wait_in_step(system, the_sku, {**start, WAREHOUSE: start[WAREHOUSE] + 2})
    again = " ".join(system.cli("reconcile", timeout=180, check=True).stdout.split())
    assert "no order explains" not in again and "0 fixed" in again, again
