"""The sync engine end to end: the commerce emulator over HTTP, the web tier (uvicorn), two
worker processes and real Postgres, through the demo harness. One system serves the module
(one parent, three children, linked and backfilled by the CLI); each test works on its own
product, so the tests do not depend on their order.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest

from storesync.demo.comparison import catalog_view, inventory_view
from storesync.demo.harness import running_system
from storesync.demo.seeding import LOCATION_NAMES
from tests.e2e.helpers import WAIT, post_webhook, settle, sql

pytestmark = pytest.mark.timeout(240)

SHOP_LOCATION = LOCATION_NAMES[0]


@pytest.fixture(scope="module")
def system(module_layout):
    # Plus plan: a large rate-limit bucket keeps the backfill from being throttle-bound (pacing is
    # tested with the commerce client); subscriptions through `storesync webhooks sync`.
    with running_system(
        module_layout.database_url,
        direct_url=module_layout.direct_url,
        children=3,
        products=10,
        workers=2,
        collections=3,
        subscribe="cli",
        plan="plus",
        extra_env={"STORESYNC_SYNC_RECONCILE_EVERY_S": "3600", "STORESYNC_SYNC_LINK_PENDING_AFTER_S": "1"},
    ) as system:
        done = system.cli("backfill", check=True)
        assert "30 products copied, 0 rolled back" in " ".join(done.stdout.split()), done.stdout
        assert system.compare().agree, system.compare().problems()
        yield system


# --------------------------------------------------------------------------- helpers


def sku(n: int, size: str) -> str:
    return f"DEMO-{n:03d}-{size}"


def first_sku(system, n: int) -> str:
    return next(v["sku"] for v in system.product_by_handle(system.parent, f"demo-product-{n}")["variants"])


def level(system, shop: str, the_sku: str) -> int | None:
    return system.level(shop, the_sku, SHOP_LOCATION)


def title(system, shop: str, n: int) -> str:
    return system.product_by_handle(shop, f"demo-product-{n}")["title"]


def dead_jobs(system) -> list[tuple]:
    return sql(system, "SELECT kind, errors->-1->>'message' FROM jobs WHERE state = 'dead'")


# --------------------------------------------------------------------------- catalog


def test_backfill_makes_the_missing_collections_through_the_collection_sync(system) -> None:
    """Collections the backfill creates in a child carry the parent's fields and are linked with
    the view written (so collection jobs and reconciliation find nothing to redo)."""
    rows = sql(
        system,
        "SELECT child_shop, parent_id, matched_by, synced_view FROM sync_links "
        "WHERE kind = 'collection' ORDER BY 1, 2",
    )
    assert len(rows) == 3 * 3
    assert all(matched_by == "created" and view and view.get("handle") for _, _, matched_by, view in rows), (
        rows
    )
    parent = {c["handle"]: c["title"] for c in system.snapshot(system.parent)["collections"]}
    for child in system.children:
        assert {c["handle"]: c["title"] for c in system.snapshot(child)["collections"]} == parent


def test_parent_edit_fans_out_to_every_child(system) -> None:
    system.edit_parent_product("demo-product-1", title="Breezy Jacket, relaunched", tags="demo,relaunch")
    system.wait_until(
        lambda: all(title(system, c, 1) == "Breezy Jacket, relaunched" for c in system.children),
        WAIT,
        message="every child shows the new title",
    )
    parent_view = catalog_view(system.snapshot(system.parent))["demo-product-1"]
    for child in system.children:
        assert catalog_view(system.snapshot(child))["demo-product-1"] == parent_view


def test_product_new_to_the_children_is_created_in_each_with_its_stock(system) -> None:
    parent_locations = system.locations[system.parent]
    system.emulator.seed(
        system.parent,
        0,
        catalog=[
            {
                "title": "Late addition",
                "handle": "late-addition",
                "vendor": "Northwind",
                "variants": [
                    {
                        "sku": "LATE-S",
                        "price": "8.00",
                        "options": {"Size": "S"},
                        "available": {
                            parent_locations[n]: q for n, q in zip(LOCATION_NAMES, (6, 2), strict=False)
                        },
                    },
                    {
                        "sku": "LATE-M",
                        "price": "8.00",
                        "options": {"Size": "M"},
                        "available": {
                            parent_locations[n]: q for n, q in zip(LOCATION_NAMES, (4, 1), strict=False)
                        },
                    },
                ],
            }
        ],
    )
    system.edit_parent_product("late-addition", title="Late addition, now live")  # products/update
    system.wait_until(
        lambda: all(
            system.level(c, "LATE-S", LOCATION_NAMES[0]) == 6
            and system.level(c, "LATE-M", LOCATION_NAMES[1]) == 1
            for c in system.children
        ),
        WAIT,
        message="every child has the product and its stock",
    )
    parent_view = catalog_view(system.snapshot(system.parent))["late-addition"]
    system.wait_until(  # the copy's last step, publishing, may come a moment after its stock
        lambda: all(
            catalog_view(system.snapshot(c))["late-addition"] == parent_view for c in system.children
        ),
        WAIT,
        message="every child has the product as the parent has it",
    )


def test_edit_made_in_a_child_to_a_synced_field_is_reverted(system) -> None:
    child = system.children[2]
    original = title(system, system.parent, 5)
    system.edit_product(child, "demo-product-5", title="Edited in the child", vendor="Someone else")
    system.wait_until(lambda: title(system, child, 5) == original, WAIT, message="child edit reverted")
    product = system.product_by_handle(child, "demo-product-5")
    assert product["vendor"] == system.product_by_handle(system.parent, "demo-product-5")["vendor"]

    def reverted() -> bool:  # recorded right after the write that the title shows
        rows = sql(
            system,
            "SELECT before, after FROM sync_audit WHERE shop = %(shop)s AND action = 'revert_child_edit'",
            {"shop": child},
        )
        return any(b == "Edited in the child" and a == original for b, a in rows)

    system.wait_until(reverted, WAIT, message="the revert is in the audit trail")


def test_child_only_variant_survives_a_parent_update(system) -> None:
    child = system.children[0]
    product = system.product_by_handle(child, "demo-product-6")
    pid = product["admin_graphql_api_id"]
    options = product["options"][0]
    existing = [
        {
            "id": v["admin_graphql_api_id"],
            "optionValues": [{"optionName": options["name"], "name": v["option1"]}],
        }
        for v in product["variants"]
    ]
    res = system.graphql(
        child,
        """
        mutation($id: ID!, $input: ProductSetInput!) {
          productSet(identifier: {id: $id}, input: $input) { product { id } userErrors { field message } }
        }""",
        {
            "id": pid,
            "input": {
                "productOptions": [
                    {
                        "name": options["name"],
                        "values": [{"name": v} for v in [*options["values"], "Child exclusive"]],
                    }
                ],
                "variants": [
                    *existing,
                    {
                        "optionValues": [{"optionName": options["name"], "name": "Child exclusive"}],
                        "sku": "CHILD-ONLY-6",
                        "price": "99.00",
                    },
                ],
            },
        },
    )
    assert not res.get("errors") and not res["data"]["productSet"]["userErrors"], res
    settle(system)
    system.edit_parent_product("demo-product-6", title="Parent renamed 6")
    system.wait_until(lambda: title(system, child, 6) == "Parent renamed 6", WAIT, message="child renamed")
    settle(system)
    skus = {v["sku"] for v in system.product_by_handle(child, "demo-product-6")["variants"]}
    assert "CHILD-ONLY-6" in skus
    parent_skus = {v["sku"] for v in system.product_by_handle(system.parent, "demo-product-6")["variants"]}
    assert parent_skus < skus


# --------------------------------------------------------------------------- inventory


def test_child_sale_reaches_the_parent_and_every_sibling(system) -> None:
    the_sku = first_sku(system, 2)
    before = level(system, system.parent, the_sku)
    seller, *siblings = system.children
    system.place_order(seller, the_sku, quantity=2)
    system.wait_until(lambda: level(system, system.parent, the_sku) == before - 2, WAIT, message="parent -2")
    system.wait_until(
        lambda: all(level(system, s, the_sku) == before - 2 for s in siblings),
        WAIT,
        message="siblings follow the parent",
    )
    settle(system)
    assert level(system, seller, the_sku) == before - 2
    assert level(system, system.parent, the_sku) == before - 2  # the echoes of our own writes wrote nothing


def test_same_sale_delivered_five_times_out_of_order_applies_once(system) -> None:
    the_sku = first_sku(system, 3)
    seller = system.children[1]
    before = level(system, system.parent, the_sku)
    order = system.place_order(seller, the_sku, quantity=1)
    now = datetime.now(UTC)
    # Four more deliveries of the same sale: other order topics carrying the same lines, with
    # triggered-at times before and after the first, sent newest first.
    for topic, age in [
        ("orders/create", -2),
        ("orders/updated", 5),
        ("orders/create", 10),
        ("orders/updated", 20),
    ]:
        assert (
            post_webhook(system, seller, topic, order, triggered_at=now - timedelta(seconds=age)).status_code
            == 200
        )
    system.wait_until(lambda: level(system, system.parent, the_sku) == before - 1, WAIT, message="parent -1")
    settle(system)
    time.sleep(0.5)
    settle(system)
    assert level(system, system.parent, the_sku) == before - 1
    assert all(level(system, c, the_sku) == before - 1 for c in system.children)
    entries = sql(
        system,
        "SELECT count(*), sum(applied_delta) FROM sync_inventory_ledger WHERE child_shop = %(s)s "
        "AND order_id = %(o)s",
        {"s": seller, "o": order["admin_graphql_api_id"]},
    )
    assert entries == [(1, -1)]
    handled = sql(
        system,
        "SELECT count(*) FROM jobs WHERE kind LIKE 'webhook.orders_%%' AND state = 'succeeded' "
        "AND payload->'body'->>'id' = %(o)s",
        {"o": str(order["id"])},
    )
    assert handled[0][0] == 5  # every delivery was handled, and applied nothing twice


def test_two_children_selling_the_last_unit_leave_the_parent_at_zero(system) -> None:
    the_sku = first_sku(system, 4)
    system.set_inventory(system.parent, the_sku, 1, SHOP_LOCATION)
    system.wait_until(
        lambda: all(level(system, c, the_sku) == 1 for c in system.children),
        WAIT,
        message="every child shows the last unit",
    )
    settle(system)
    seen: list[int] = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            value = level(system, system.parent, the_sku)
            if value is not None:
                seen.append(value)
            time.sleep(0.02)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        buyers = [
            threading.Thread(target=system.place_order, args=(c, the_sku, 1)) for c in system.children[:2]
        ]
        for b in buyers:
            b.start()
        for b in buyers:
            b.join()
        item = f"gid://shopify/InventoryItem/{system.variant_by_sku(system.parent, the_sku)['inventory_item_id']}"
        system.wait_until(
            lambda: (
                sql(
                    system,
                    "SELECT count(*) FROM sync_inventory_ledger WHERE parent_item_id = %(i)s "
                    "AND kind = 'sale' AND status = 'applied'",
                    {"i": item},
                )[0][0]
                == 2
            ),
            WAIT,
            message="both sales applied",
        )
        settle(system)
    finally:
        stop.set()
        watcher.join()
    assert level(system, system.parent, the_sku) == 0
    assert min(seen) >= 0, seen
    applied = sql(
        system,
        "SELECT applied_delta FROM sync_inventory_ledger WHERE parent_item_id = %(i)s "
        "AND kind = 'sale' ORDER BY applied_delta",
        {"i": item},
    )
    assert applied == [(-1,), (0,)]  # the first sale took the unit; the second is owed (oversold)
    assert sql(
        system, "SELECT oversold FROM sync_inventory_backlog WHERE parent_item_id = %(i)s", {"i": item}
    ) == [(1,)]
    assert all(level(system, c, the_sku) == 0 for c in system.children[1:] + system.children[:1])


def test_a_level_webhook_replayed_with_a_far_future_triggered_at_cannot_shadow_real_updates(system) -> None:
    """X-Shopify-Triggered-At is not signed: a captured, signed `inventory_levels/update` re-sent
    with a new webhook id and a timestamp a year ahead is ordered by its signed `updated_at`."""
    the_sku = first_sku(system, 9)
    item = system.variant_by_sku(system.parent, the_sku)["inventory_item_id"]
    location = system.locations[system.parent][SHOP_LOCATION].rsplit("/", 1)[1]
    now = datetime.now(UTC)
    replayed = {
        "inventory_item_id": int(item),
        "location_id": int(location),
        "available": level(system, system.parent, the_sku),
        "updated_at": (now - timedelta(seconds=30)).isoformat(),
    }
    sent = post_webhook(
        system, system.parent, "inventory_levels/update", replayed, triggered_at=now + timedelta(days=365)
    )
    assert sent.status_code == 200
    settle(system)
    system.set_inventory(system.parent, the_sku, 42)  # a real change, after the replay
    system.wait_until(
        lambda: all(level(system, c, the_sku) == 42 for c in system.children),
        WAIT,
        message="the children follow the real update",
    )


def test_an_order_pruned_from_the_ledger_is_not_applied_again_by_a_late_webhook(system) -> None:
    the_sku = first_sku(system, 10)
    seller = system.children[2]
    before = level(system, system.parent, the_sku)
    order = system.place_order(seller, the_sku, quantity=1)
    system.wait_until(lambda: level(system, system.parent, the_sku) == before - 1, WAIT, message="parent -1")
    settle(system)
    # Past the ledger's retention (aged by hand): `storesync prune` removes the order's entries and
    # remembers the order.
    params = {"s": seller, "o": order["admin_graphql_api_id"]}
    sql(
        system,
        "UPDATE sync_inventory_ledger SET applied_at = now() - interval '500 days' "
        "WHERE child_shop = %(s)s AND order_id = %(o)s RETURNING 1",
        params,
    )
    system.cli("prune", check=True)
    entries = "SELECT count(*) FROM sync_inventory_ledger WHERE child_shop = %(s)s AND order_id = %(o)s"
    assert sql(system, entries, params) == [(0,)]
    remembered = (
        "SELECT count(*) FROM sync_ledger_pruned_orders WHERE child_shop = %(s)s AND order_id = %(o)s"
    )
    assert sql(system, remembered, params) == [(1,)]
    # Shopify still sends webhooks about old orders (an edit, a fulfilment): not a new sale.
    late = post_webhook(system, seller, "orders/updated", order, triggered_at=datetime.now(UTC))
    assert late.status_code == 200
    settle(system)
    time.sleep(0.5)
    settle(system)
    # Nothing claimed again (the emulator would also replay a re-sent @idempotent adjust, which
    # real Shopify forgets after a while: the ledger is what must not apply it twice).
    assert sql(system, entries, params) == [(0,)]
    sales = "SELECT count(*) FROM jobs WHERE kind = 'sync.sale' AND payload->'event'->>'order_id' = %(o)s"
    assert sql(system, sales, params) == [(1,)]
    assert level(system, system.parent, the_sku) == before - 1
    assert all(level(system, c, the_sku) == before - 1 for c in system.children)


# --------------------------------------------------------------------------- repairs and failures


def test_dropped_webhook_is_repaired_by_reconciliation(system) -> None:
    the_sku = first_sku(system, 7)
    system.set_faults(webhooks={"drop_p": 1.0})
    try:
        system.edit_parent_product("demo-product-7", title="Renamed while webhooks were lost")
        system.set_inventory(system.parent, the_sku, 3, SHOP_LOCATION)
        system.drain_webhooks(WAIT)
    finally:
        system.set_faults()
    settle(system)
    assert all(title(system, c, 7) != "Renamed while webhooks were lost" for c in system.children)
    assert all(level(system, c, the_sku) != 3 for c in system.children)
    # A dry run reports the drift and changes nothing (exit 1: something differs).
    dry = system.cli("reconcile", "--dry-run", timeout=120)
    out = " ".join(dry.stdout.split())
    assert dry.returncode == 1, dry.stdout + dry.stderr
    assert "would repair" in out and "Renamed while webhooks were lost" in out and "parent says 3" in out, out
    assert "dry run: nothing changed" in out and "reconciling" not in dry.stdout  # progress is stderr
    assert all(title(system, c, 7) != "Renamed while webhooks were lost" for c in system.children)
    assert all(level(system, c, the_sku) != 3 for c in system.children)
    done = system.cli("reconcile", timeout=120)
    out = " ".join(done.stdout.split())
    assert done.returncode == 0, done.stdout + done.stderr
    assert "fixed" in out and "Renamed while webhooks were lost" in out and "parent says 3" in out, out
    for c in system.children:
        assert title(system, c, 7) == "Renamed while webhooks were lost"
        assert level(system, c, the_sku) == 3
    again = system.cli("reconcile", timeout=120)
    assert "0 fixed" in " ".join(again.stdout.split()), again.stdout


def test_a_copy_whose_write_fails_is_rolled_back_and_every_store_left_as_before(system) -> None:
    """The copy saga's one write (productSet with stock and memberships) fails for good: the
    saga compensates (deleting whatever the create may have made), nothing changes anywhere,
    and a rerun copies the product."""
    child = system.children[2]
    parent_locations = system.locations[system.parent]
    system.emulator.seed(
        system.parent,
        0,
        catalog=[
            {
                "title": "Saga product",
                "handle": "saga-product",
                "vendor": "Northwind",
                "variants": [
                    {
                        "sku": "SAGA-1",
                        "price": "5.00",
                        "options": {"Size": "S"},
                        "available": {parent_locations[n]: 7 for n in LOCATION_NAMES},
                    }
                ],
            }
        ],
    )
    snapshots = {s: system.snapshot(s) for s in system.shops}
    system.set_faults(graphql={"fail_nth": {"productSet": {"n": 1, "shop": child}}})
    try:
        env = {**system.env, "STORESYNC_SYNC_ADMIN_MAX_ATTEMPTS": "1"}
        done = subprocess.run(
            [sys.executable, "-m", "storesync", "backfill", "--child", child],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        system.set_faults()
    out = " ".join(done.stdout.split())
    assert done.returncode == 1 and "0 products copied, 1 rolled back" in out, done.stdout + done.stderr
    settle(system)
    for shop, before in snapshots.items():
        after = system.snapshot(shop)
        assert catalog_view(after) == catalog_view(before), shop
        assert inventory_view(after) == inventory_view(before), shop
    states = sql(system, "SELECT state FROM sync_sagas WHERE id LIKE %(id)s", {"id": f"copy:{child}:%"})
    assert ("compensated",) in states
    audit = sql(
        system, "SELECT action FROM sync_audit WHERE shop = %(s)s AND action LIKE 'saga_%%'", {"s": child}
    )
    assert ("saga_compensated",) in audit
    # Nothing was lost: running the backfill again copies the product.
    again = system.cli("backfill", "--child", child, timeout=120)
    assert "1 products copied" in " ".join(again.stdout.split()), again.stdout + again.stderr
    assert system.product_by_handle(child, "saga-product")["title"] == "Saga product"
    assert level(system, child, "SAGA-1") == 7
    system.cli("backfill", check=True, timeout=120)  # leave every parent product in every child


def test_backfill_killed_midway_resumes_without_duplicates(system) -> None:
    child = system.children[0]
    parent_locations = system.locations[system.parent]
    system.emulator.seed(
        system.parent,
        0,
        catalog=[
            {
                "title": f"Crash product {n}",
                "handle": f"crash-product-{n}",
                "variants": [
                    {
                        "sku": f"CRASH-{n}",
                        "price": "3.00",
                        "options": {"Size": "S"},
                        "available": {parent_locations[SHOP_LOCATION]: n},
                    }
                ],
            }
            for n in range(1, 13)
        ],
    )
    run = system.start_cli("backfill-killed", "backfill", "--child", child, "--concurrency", "1")
    done_sagas = "SELECT count(*) FROM sync_sagas WHERE id LIKE %(id)s AND state = 'completed'"
    pattern = {"id": f"copy:{child}:%"}
    before = sql(system, done_sagas, pattern)[0][0]
    system.wait_until(
        lambda: sql(system, done_sagas, pattern)[0][0] >= before + 2, WAIT, message="2 copies done"
    )
    os.killpg(run.pid, signal.SIGKILL)  # a crash: no cleanup, maybe mid-saga
    run.popen.wait(timeout=10)
    assert run.popen.returncode == -signal.SIGKILL
    again = system.cli("backfill", "--child", child, timeout=120)
    assert again.returncode == 0, again.stdout + again.stderr
    settle(system)  # the jobs the copies' webhooks caused
    snap = system.snapshot(child)
    handles = [p["handle"] for p in snap["products"]]
    for n in range(1, 13):
        assert handles.count(f"crash-product-{n}") == 1, handles
    try:
        system.wait_until(
            lambda: all(level(system, child, f"CRASH-{n}") == n for n in range(1, 13)),
            WAIT,
            message="every copy has the parent's stock",
        )
    except TimeoutError:
        wrong = {
            n: level(system, child, f"CRASH-{n}")
            for n in range(1, 13)
            if level(system, child, f"CRASH-{n}") != n
        }
        steps = sql(
            system,
            "SELECT s.id, s.state, st.name, st.status, st.undo, st.result FROM sync_sagas s "
            "JOIN sync_saga_steps st ON st.saga_id = s.id WHERE s.id LIKE %(p)s ORDER BY s.created_at, st.idx",
            {"p": f"copy:{child}:%"},
        )
        raise AssertionError(  # noqa: B904 - the report replaces the timeout
            f"levels {wrong}; run 1: {run.log_tail(40)}; run 2: {again.stdout}; sagas: {steps[-40:]}"
        )
    assert sql(system, "SELECT count(*) FROM sync_sagas WHERE state IN ('running', 'compensating')") == [(0,)]
    system.cli("backfill", check=True, timeout=120)  # leave every parent product in every child


def test_uninstalled_app_pauses_the_store_and_its_jobs_wait_until_resumed(system) -> None:
    paused = system.children[1]
    others = [c for c in system.children if c != paused]
    assert (
        post_webhook(
            system, paused, "app/uninstalled", {"id": 1, "domain": paused}, triggered_at=datetime.now(UTC)
        ).status_code
        == 200
    )
    system.wait_until(
        lambda: (
            sql(system, "SELECT status FROM stores WHERE shop_domain = %(s)s", {"s": paused}) == [("paused",)]
        ),
        WAIT,
        message="store paused",
    )
    try:
        system.edit_parent_product("demo-product-8", title="While one store was paused")
        system.wait_until(
            lambda: all(title(system, c, 8) == "While one store was paused" for c in others),
            WAIT,
            message="active children updated",
        )
        system.wait_until(
            lambda: (
                sql(
                    system,
                    "SELECT count(*) FROM jobs WHERE state = 'queued' AND payload->>'parked_for' = %(s)s",
                    {"s": paused},
                )[0][0]
                >= 1
            ),
            WAIT,
            message="the paused store's job parked",
        )
        assert title(system, paused, 8) != "While one store was paused"
        status = system.cli("status", env={"COLUMNS": "200"}).stdout
        assert "paused" in status and "app uninstalled" in " ".join(status.split())
    finally:
        resumed = system.cli("network", "resume", paused)
    assert resumed.returncode == 0 and "parked jobs due now" in resumed.stdout, (
        resumed.stdout + resumed.stderr
    )
    system.wait_until(
        lambda: title(system, paused, 8) == "While one store was paused",
        WAIT,
        message="paused store caught up after resume",
    )
    assert not [j for j in dead_jobs(system) if "parked" in (j[1] or "")]


def test_a_missing_scope_pauses_the_store_with_the_reason_and_api_check_reports_it(system) -> None:
    """A child whose app lost write_inventory refuses the fan-out (ACCESS_DENIED): the child is
    paused with that reason and its job parked, never dead-lettered; `storesync api check` names
    the missing scope. Granted again and resumed, the child catches up."""
    child = system.children[2]
    granted = system.emulator.oauth(child)["scopes"]
    system.emulator.configure_app(
        child, scopes=[s for s in granted if s != "write_inventory"] + ["read_inventory"]
    )
    the_sku = first_sku(system, 9)
    try:
        system.set_inventory(system.parent, the_sku, 41)
        system.wait_until(
            lambda: (
                sql(
                    system, "SELECT status, status_reason FROM stores WHERE shop_domain = %(s)s", {"s": child}
                )[0][0]
                == "paused"
            ),
            WAIT,
            message="store paused for its missing scope",
        )
        reason = sql(system, "SELECT status_reason FROM stores WHERE shop_domain = %(s)s", {"s": child})[0][0]
        assert "missing access scope (write_inventory" in reason, reason
        system.wait_until(
            lambda: all(level(system, c, the_sku) == 41 for c in system.children if c != child),
            WAIT,
            message="the other children follow",
        )
        check = system.cli("api", "check", env={"COLUMNS": "250"})
        out = " ".join(check.stdout.split())
        assert check.returncode == 1, check.stdout + check.stderr
        line = next(line for line in check.stdout.splitlines() if child in line)
        assert "missing write_inventory" in " ".join(line.split()) and "client_credentials" in line, out
        assert not [j for j in dead_jobs(system) if child in (j[1] or "")]
    finally:
        system.emulator.configure_app(child, scopes=granted)
        resumed = system.cli("network", "resume", child)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    system.wait_until(lambda: level(system, child, the_sku) == 41, WAIT, message="the child caught up")


# --------------------------------------------------------------------------- operator commands


def test_webhooks_sync_is_idempotent_and_removes_stale_subscriptions(system) -> None:
    stale = system.graphql(
        system.children[0],
        """
        mutation { webhookSubscriptionCreate(topic: ORDERS_CREATE, webhookSubscription:
          {callbackUrl: "https://old.example.com/hooks", format: JSON}) { userErrors { message } } }""",
    )
    assert not stale.get("errors") and not stale["data"]["webhookSubscriptionCreate"]["userErrors"], stale
    done = system.cli("webhooks", "sync")
    out = " ".join(done.stdout.split())
    assert done.returncode == 0, done.stdout + done.stderr
    assert (
        f"{system.children[0]}: kept" in out
        and "deleted ORDERS_CREATE -> https://old.example.com/hooks" in out
    )
    again = " ".join(system.cli("webhooks", "sync", check=True).stdout.split())
    for shop in system.shops:
        assert f"{shop}: kept" in again
    assert "created 0, deleted 0" in again and "created 1" not in again and "deleted 1" not in again


def test_link_dry_run_reports_duplicates_and_missing_skus_and_stores_nothing(system) -> None:
    child = system.children[0]
    system.emulator.seed(
        child,
        0,
        catalog=[
            {"title": "Twin one", "handle": "twin-one", "variants": [{"sku": "TWIN-SKU"}]},
            {"title": "Twin two", "handle": "twin-two", "variants": [{"sku": "TWIN-SKU"}]},
            {"title": "No sku", "handle": "no-sku", "variants": [{"sku": ""}]},
        ],
    )
    links_before = sql(system, "SELECT count(*) FROM sync_links")
    done = system.cli("link", "--dry-run", "--details")
    out = " ".join(done.stdout.split())
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"{child}: already sells" in out, out
    assert re.search(r"missing: \d+ products \(\d+ variants\) the backfill will copy into it", out), out
    assert "its own: 3 products only it sells, left as they are" in out, out
    assert "needs a look: 1 SKUs or barcodes used twice" in out and "1 variants without a SKU" in out, out
    assert "duplicate sku 'TWIN-SKU' in child" in out and "missing SKU in child" in out, out
    assert "dry run: nothing stored" in out
    assert sql(system, "SELECT count(*) FROM sync_links") == links_before


def test_access_tokens_are_encrypted_at_rest_and_workers_need_the_key(system) -> None:
    """The stores connect by client credentials (the demo's setup): the app's secret and the
    tokens the workers obtained are stored encrypted."""
    rows = sql(
        system,
        "SELECT kind, client_secret_encrypted, access_token_encrypted FROM store_credentials ORDER BY shop_domain",
    )
    assert len(rows) == 4 and all(kind == "client_credentials" for kind, _, _ in rows)
    assert all(secret and "shpss" not in secret for _, secret, _ in rows)
    assert all(token is None or "shpat" not in token for _, _, token in rows)
    assert any(token for _, _, token in rows)  # the workers have fetched tokens by now
    env = {k: v for k, v in system.env.items() if k != "STORESYNC_ENCRYPTION_KEY"}
    done = subprocess.run(
        [sys.executable, "-m", "storesync", "worker"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2 and "STORESYNC_ENCRYPTION_KEY is not set" in " ".join(done.stderr.split())


# --------------------------------------------------------------------------- copies linked later


def _unsubscribe(system, shop: str, *topics: str) -> None:
    """Remove `shop`'s subscriptions to `topics` (the webhooks are never sent: as if every
    delivery of them were lost). `storesync webhooks sync` puts them back."""
    subs = system.graphql(shop, "{ webhookSubscriptions(first: 50) { nodes { id topic } } }")
    for topic in topics:
        [sub_id] = [n["id"] for n in subs["data"]["webhookSubscriptions"]["nodes"] if n["topic"] == topic]
        gone = system.graphql(
            shop,
            "mutation($id: ID!) { webhookSubscriptionDelete(id: $id) { userErrors { message } } }",
            {"id": sub_id},
        )
        assert not gone.get("errors") and not gone["data"]["webhookSubscriptionDelete"]["userErrors"], gone


def _seed_parent_product(system, handle: str, skus: tuple[str, str], stock: tuple[int, int]) -> str:
    """A parent product no child has yet (seeded: no webhook); its gid."""
    locs = system.locations[system.parent]
    system.emulator.seed(
        system.parent,
        0,
        catalog=[
            {
                "title": handle.replace("-", " ").title(),
                "handle": handle,
                "vendor": "Northwind",
                "variants": [
                    {
                        "sku": s,
                        "price": "9.00",
                        "options": {"Size": size},
                        "available": {locs[LOCATION_NAMES[0]]: q, locs[LOCATION_NAMES[1]]: 1},
                    }
                    for s, size, q in zip(skus, ("S", "M"), stock, strict=False)
                ],
            }
        ],
    )
    return f"gid://shopify/Product/{system.product_by_handle(system.parent, handle)['id']}"


def _pending_copies(system, shop: str) -> int:
    return sql(
        system,
        "SELECT count(*) FROM sync_links WHERE child_shop = %(s)s AND pending IS NOT NULL",
        {"s": shop},
    )[0][0]


def _variant_links(system, shop: str, parent_product_id: str) -> int:
    return sql(
        system,
        "SELECT count(*) FROM sync_links WHERE kind = 'variant' AND child_shop = %(s)s "
        "AND parent_product_id = %(p)s",
        {"s": shop, "p": parent_product_id},
    )[0][0]


def _copy_left_pending(system, child: str, handle: str, skus: tuple[str, str], stock: tuple[int, int]) -> str:
    """A new parent product copied into `child` by a backfill whose link job is an hour away, the
    child sending no products/create: the copy is left with its variants pending. Its gid."""
    pid = _seed_parent_product(system, handle, skus, stock)
    done = system.cli(
        "backfill", "--child", child, check=True, env={"STORESYNC_SYNC_LINK_PENDING_AFTER_S": "3600"}
    )
    assert "1 products copied" in " ".join(done.stdout.split()), done.stdout
    settle(system)
    assert _pending_copies(system, child) == 1 and _variant_links(system, child, pid) == 0
    return pid


def test_a_sale_of_a_copy_whose_variants_are_not_linked_yet_still_reaches_the_parent(system) -> None:
    """A copy's productSet answer names the product only; its variants are linked from the
    child's products/create, or by a job a while after the backfill. Here neither has come yet
    (no webhook, the job an hour away): a sale of the copy links it by reading the product, and
    reaches the parent all the same."""
    child = system.children[0]
    # publishing the copy makes the child send products/update, whose job would link it: lost too
    _unsubscribe(system, child, "PRODUCTS_CREATE", "PRODUCTS_UPDATE")
    try:
        pid = _copy_left_pending(system, child, "linked-later", ("LATER-S", "LATER-M"), (7, 3))
        status = " ".join(system.cli("status", check=True, env={"COLUMNS": "200"}).stdout.split())
        assert "1 copies not linked yet" in status, status
        assert level(system, child, "LATER-S") == 7
        system.place_order(child, sku="LATER-S", quantity=2)
        system.wait_until(
            lambda: level(system, system.parent, "LATER-S") == 5, WAIT, message="the sale reached the parent"
        )
        assert _pending_copies(system, child) == 0 and _variant_links(system, child, pid) == 2
        settle(system)
        assert dead_jobs(system) == []
    finally:
        system.cli("webhooks", "sync", check=True)
    sql(
        system, "DELETE FROM jobs WHERE kind = 'sync.link_pending_copies' AND state = 'queued' RETURNING id"
    )  # an hour away
    system.cli("backfill", check=True, timeout=120)  # every child has it, linked by its webhook
    settle(system)
    system.wait_until(
        lambda: [_pending_copies(system, c) for c in system.children] == [0] * len(system.children),
        WAIT,
        message="every copy linked",
    )
    system.wait_until(
        lambda: all(level(system, c, "LATER-S") == 5 for c in system.children),
        WAIT,
        message="every child has the copy at the parent's level",
    )


def test_a_backfill_links_the_copies_whose_create_webhook_never_came(system) -> None:
    """...with a job a little after it ends (`STORESYNC_SYNC_LINK_PENDING_AFTER_S`, 1 s here): the
    backfill does not wait for the webhooks."""
    child = system.children[1]
    # publishing the copy makes the child send products/update, whose job would link it: lost too
    _unsubscribe(system, child, "PRODUCTS_CREATE", "PRODUCTS_UPDATE")
    try:
        pid = _seed_parent_product(system, "linked-by-backfill", ("BACKLINK-S", "BACKLINK-M"), (4, 2))
        done = system.cli("backfill", "--child", child, check=True, timeout=120)
        assert "1 products copied" in " ".join(done.stdout.split()), done.stdout
        system.wait_until(
            lambda: _pending_copies(system, child) == 0, WAIT, message="the copy linked by the job"
        )
        assert _variant_links(system, child, pid) == 2
        # Linked, so a parent stock move reaches it.
        system.set_inventory(system.parent, "BACKLINK-M", 6)
        system.wait_until(
            lambda: level(system, child, "BACKLINK-M") == 6, WAIT, message="the move reached the copy"
        )
    finally:
        system.cli("webhooks", "sync", check=True)
    system.cli("backfill", check=True, timeout=120)


def test_a_parent_stock_move_made_before_a_copy_is_linked_reaches_it_when_a_product_job_links_it(
    system,
) -> None:
    """A parent level that moves while a copy's variants are pending finds no link to fan out to.
    Whichever path links the copy fans it out then: here a product job (a parent edit), with
    no create webhook and the backfill's link job an hour away."""
    child = system.children[2]
    # publishing the copy makes the child send products/update, whose job would link it: lost too
    _unsubscribe(system, child, "PRODUCTS_CREATE", "PRODUCTS_UPDATE")
    try:
        pid = _copy_left_pending(system, child, "moved-while-pending", ("MOVED-S", "MOVED-M"), (5, 8))
        assert level(system, child, "MOVED-M") == 8
        system.set_inventory(system.parent, "MOVED-M", 3)
        settle(system)
        assert level(system, child, "MOVED-M") == 8  # nothing linked to fan out to yet
        system.edit_parent_product("moved-while-pending", title="Moved While Pending, renamed")
        system.wait_until(
            lambda: _pending_copies(system, child) == 0, WAIT, message="the product job linked the copy"
        )
        assert _variant_links(system, child, pid) == 2
        system.wait_until(
            lambda: level(system, child, "MOVED-M") == 3,
            WAIT,
            message="the move made while the copy was pending reached it",
        )
        settle(system)
        assert dead_jobs(system) == []
    finally:
        system.cli("webhooks", "sync", check=True)
    sql(
        system, "DELETE FROM jobs WHERE kind = 'sync.link_pending_copies' AND state = 'queued' RETURNING id"
    )  # an hour away
    system.cli("backfill", check=True, timeout=120)


def test_a_copy_whose_create_webhook_is_lost_is_linked_from_the_update_its_publishing_sends(
    system,
) -> None:
    """Publishing a copy (its saga's last step) makes the child send products/update, while the
    copy's variants are still pending: that payload links them (no store read, no product job),
    and the copy's stock then moves as any other: a sale of it reaches the parent."""
    child = system.children[0]
    _unsubscribe(system, child, "PRODUCTS_CREATE")
    since = sql(system, "SELECT now()")[0][0]
    try:
        pid = _seed_parent_product(system, "linked-by-update", ("BYUPD-S", "BYUPD-M"), (6, 4))
        done = system.cli(
            "backfill", "--child", child, check=True, env={"STORESYNC_SYNC_LINK_PENDING_AFTER_S": "3600"}
        )
        assert "1 products copied" in " ".join(done.stdout.split()), done.stdout
        system.wait_until(
            lambda: _pending_copies(system, child) == 0, WAIT, message="the copy linked by its update"
        )
        assert _variant_links(system, child, pid) == 2
        settle(system)
        product_jobs = sql(
            system,
            "SELECT count(*) FROM jobs WHERE kind = 'sync.product_to_child' AND created_at > %(t)s "
            "AND payload->>'child_shop' = %(c)s",
            {"t": since, "c": child},
        )
        assert product_jobs == [(0,)]  # linked by the webhook job itself
        assert level(system, child, "BYUPD-S") == 6  # the copy's own stock, not set back
        system.place_order(child, sku="BYUPD-S", quantity=2)
        system.wait_until(
            lambda: level(system, system.parent, "BYUPD-S") == 4, WAIT, message="the sale reached the parent"
        )
        settle(system)
        assert level(system, child, "BYUPD-S") == 4 and dead_jobs(system) == []
    finally:
        system.cli("webhooks", "sync", check=True)
    sql(
        system, "DELETE FROM jobs WHERE kind = 'sync.link_pending_copies' AND state = 'queued' RETURNING id"
    )  # an hour away
    system.cli("backfill", check=True, timeout=120)


def test_a_failure_in_the_third_step_of_a_saga_leaves_every_store_as_before(system) -> None:
    """The three-step copy (create -> collections -> levels; sagas logged by earlier versions
    run it) fails for good at its third step, the first stock write: the saga compensates in
    reverse, the product the first step made is deleted, and every store is as before."""
    import asyncio

    import psycopg

    from storesync.sync.adapters.postgres import PgStepLog
    from storesync.sync.domain.saga import copy_product_steps

    child = system.children[1]
    pid = _seed_parent_product(system, "three-steps", ("THREE-S", "THREE-M"), (5, 2))
    saga_id = f"copy:{child}:{pid}"

    async def log_three_step_saga() -> None:
        async with await psycopg.AsyncConnection.connect(system.env["DATABASE_URL"], autocommit=True) as conn:
            await PgStepLog(conn).create(
                saga_id,
                "copy_product",
                child,
                "test:three-steps",
                copy_product_steps(pid, child, stock_in_create=False),
            )

    asyncio.run(log_three_step_saga())
    snapshots = {s: system.snapshot(s) for s in system.shops}
    system.set_faults(graphql={"fail_nth": {"inventorySetQuantities": {"n": 1, "shop": child}}})
    try:
        done = system.cli(
            "backfill", "--child", child, timeout=120, env={"STORESYNC_SYNC_ADMIN_MAX_ATTEMPTS": "1"}
        )
    finally:
        system.set_faults()
    assert done.returncode == 1 and "0 products copied, 1 rolled back" in " ".join(done.stdout.split()), (
        done.stdout + done.stderr
    )
    steps = sql(
        system,
        "SELECT name, status FROM sync_saga_steps WHERE saga_id = %(id)s ORDER BY idx",
        {"id": saga_id},
    )
    assert steps == [("create", "compensated"), ("collections", "compensated"), ("levels", "compensated")]
    assert sql(system, "SELECT state FROM sync_sagas WHERE id = %(id)s", {"id": saga_id}) == [
        ("compensated",)
    ]
    settle(system)
    for shop, before in snapshots.items():
        after = system.snapshot(shop)
        assert catalog_view(after) == catalog_view(before), shop
        assert inventory_view(after) == inventory_view(before), shop
    system.cli("backfill", check=True, timeout=120)  # a new (one-step) saga copies it everywhere
    assert level(system, child, "THREE-S") == 5
