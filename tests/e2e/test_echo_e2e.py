"""Echo suppression of the child's products/update webhooks, end to end (emulator over HTTP, web
tier, worker processes, real Postgres): Shopify sends products/update for every stock move and for
our own writes; while the child shows what the engine last wrote, no product job follows, and a
real edit in the child is still reverted.
"""

from __future__ import annotations

import pytest

from storesync.demo.harness import running_system
from storesync.demo.seeding import LOCATION_NAMES
from tests.e2e.helpers import WAIT, post_webhook, sql
from tests.e2e.helpers import settle as _settle

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def system(module_layout):
    with running_system(
        module_layout.database_url,
        direct_url=module_layout.direct_url,
        children=2,
        products=3,
        workers=2,
        collections=2,
        subscribe="cli",
        plan="plus",
        extra_env={"STORESYNC_SYNC_RECONCILE_EVERY_S": "3600"},
    ) as system:
        system.cli("backfill", check=True)
        yield system


def settle(system) -> None:
    """Every delivery handled and no job left, delayed ones included (the child debounce)."""
    _settle(system, delayed_too=True)


def child_product_jobs(system, child: str, since) -> int:
    return sql(
        system,
        "SELECT count(*) FROM jobs WHERE kind = 'sync.product_to_child' AND created_at > %(t)s "
        "AND payload->>'child_shop' = %(c)s AND payload->>'only_if_linked' = 'true'",
        {"t": since, "c": child},
    )[0][0]


def test_stock_moves_in_a_child_cause_no_product_job_and_a_child_edit_is_still_reverted(system) -> None:
    seller = system.children[0]
    product = system.product_by_handle(system.parent, "demo-product-1")
    the_sku = product["variants"][0]["sku"]
    settle(system)
    since = sql(system, "SELECT now()")[0][0]
    before = system.level(system.parent, the_sku, LOCATION_NAMES[0])
    system.place_order(seller, the_sku, quantity=1)
    system.wait_until(
        lambda: all(
            system.level(s, the_sku, LOCATION_NAMES[0]) == before - 1
            for s in [system.parent, *system.children]
        ),
        WAIT,
        message="the sale reached every store",
    )
    settle(system)
    handled = sql(
        system,
        "SELECT count(*) FROM jobs WHERE kind = 'webhook.products_update' AND created_at > %(t)s "
        "AND payload->>'shop' = ANY(%(c)s)",
        {"t": since, "c": list(system.children)},
    )[0][0]
    assert handled >= 2  # the children did report the stock moves as product updates
    assert sum(child_product_jobs(system, c, since) for c in system.children) == 0

    original = product["title"]
    system.edit_product(seller, "demo-product-1", title="Edited in the child")
    system.wait_until(
        lambda: system.product_by_handle(seller, "demo-product-1")["title"] == original,
        WAIT,
        message="child edit reverted",
    )
    assert child_product_jobs(system, seller, since) >= 1


def parent_caused_product_jobs(system, since) -> list[tuple]:
    """(child, state) of the product jobs the parent's product webhooks started since `since`."""
    return sql(
        system,
        "SELECT payload->>'child_shop', state FROM jobs WHERE kind = 'sync.product_to_child' "
        "AND created_at > %(t)s AND NOT (payload->>'only_if_linked')::boolean ORDER BY id",
        {"t": since},
    )


def test_parent_stock_moves_start_no_product_job_and_a_parent_edit_still_reaches_every_child(system) -> None:
    product = system.product_by_handle(system.parent, "demo-product-2")
    the_sku = product["variants"][0]["sku"]
    settle(system)
    since = sql(system, "SELECT now()")[0][0]
    level = system.level(system.parent, the_sku, LOCATION_NAMES[0])
    system.set_inventory(system.parent, the_sku, level + 3, LOCATION_NAMES[0])  # the merchant restocks
    system.place_order(system.children[0], the_sku, quantity=1)  # a sale moves the parent's stock too
    system.wait_until(
        lambda: all(
            system.level(s, the_sku, LOCATION_NAMES[0]) == level + 2
            for s in [system.parent, *system.children]
        ),
        WAIT,
        message="stock everywhere",
    )
    settle(system)
    parent_updates = sql(
        system,
        "SELECT count(*) FROM jobs WHERE kind = 'webhook.products_update' "
        "AND created_at > %(t)s AND payload->>'shop' = %(p)s",
        {"t": since, "p": system.parent},
    )[0][0]
    assert parent_updates >= 1  # the parent did report its stock moves as product updates
    assert parent_caused_product_jobs(system, since) == []

    system.edit_parent_product("demo-product-2", title="Relaunched 2")
    system.wait_until(
        lambda: all(
            system.product_by_handle(c, "demo-product-2")["title"] == "Relaunched 2" for c in system.children
        ),
        WAIT,
        message="every child renamed",
    )
    assert sorted(c for c, _ in parent_caused_product_jobs(system, since)) == sorted(system.children)


def test_a_product_job_that_never_ran_leaves_its_child_behind_until_reconciliation_finds_it(system) -> None:
    """The lagging child's product job is cancelled; a stock move of the parent is judged from its
    payload alone (docs/decisions/0051: no read, no job), so the child stays behind until a
    reconciliation pass compares it with what it was last given."""
    from datetime import UTC, datetime

    lagging, other = system.children
    product = system.product_by_handle(system.parent, "demo-product-3")
    the_sku = product["variants"][0]["sku"]
    settle(system)
    # The lagging child is paused, so its product job is parked; an operator cancels it: the
    # edit never reaches that child through its own job.
    assert (
        post_webhook(
            system, lagging, "app/uninstalled", {"id": 1, "domain": lagging}, triggered_at=datetime.now(UTC)
        ).status_code
        == 200
    )
    system.wait_until(
        lambda: (
            sql(system, "SELECT status FROM stores WHERE shop_domain = %(s)s", {"s": lagging})
            == [("paused",)]
        ),
        WAIT,
        message="store paused",
    )
    parked = (
        "SELECT id FROM jobs WHERE state = 'queued' AND kind = 'sync.product_to_child' "
        "AND payload->>'parked_for' = %(s)s"
    )
    try:
        system.edit_parent_product("demo-product-3", title="Renamed while one child was away")
        system.wait_until(
            lambda: (
                system.product_by_handle(other, "demo-product-3")["title"]
                == "Renamed while one child was away"
            ),
            WAIT,
            message="the other child renamed",
        )
        system.wait_until(
            lambda: sql(system, parked, {"s": lagging}), WAIT, message="the lagging child's job parked"
        )
        ids = [str(r[0]) for r in sql(system, parked, {"s": lagging})]
        system.cli("jobs", "cancel", *ids, check=True)
    finally:
        system.cli("network", "resume", lagging, check=True)
    settle(system)
    assert system.product_by_handle(lagging, "demo-product-3")["title"] != "Renamed while one child was away"
    level = system.level(system.parent, the_sku, LOCATION_NAMES[0])
    system.set_inventory(system.parent, the_sku, level + 1, LOCATION_NAMES[0])
    system.wait_until(
        lambda: system.level(lagging, the_sku, LOCATION_NAMES[0]) == level + 1, WAIT, message="stock moved"
    )
    settle(system)
    assert system.product_by_handle(lagging, "demo-product-3")["title"] != "Renamed while one child was away"
    system.cli("reconcile", check=True, timeout=120)
    system.wait_until(
        lambda: (
            system.product_by_handle(lagging, "demo-product-3")["title"] == "Renamed while one child was away"
        ),
        WAIT,
        message="the lagging child caught up",
    )


def test_a_childs_products_create_is_handled_without_reading_any_store(system) -> None:
    """A product new in a child is our own copy or a child-only product: nothing to revert, so its
    products/create costs no Admin API call (during a backfill it was one read per copy). Proved
    with every Admin API call failing meanwhile: the webhook job still succeeds at once."""
    from datetime import UTC, datetime

    child = system.children[0]
    copy = system.product_by_handle(child, "demo-product-1")  # our copy, linked by the backfill
    settle(system)
    since = sql(system, "SELECT now()")[0][0]
    system.set_faults(graphql={"error_5xx_p": 1.0})
    try:
        body = {
            "id": copy["id"],
            "admin_graphql_api_id": f"gid://shopify/Product/{copy['id']}",
            "title": copy["title"],
            "handle": "demo-product-1",
        }
        assert (
            post_webhook(system, child, "products/create", body, triggered_at=datetime.now(UTC)).status_code
            == 200
        )
        system.wait_until(
            lambda: (
                sql(
                    system,
                    "SELECT state, attempt FROM jobs WHERE kind = 'webhook.products_create' "
                    "AND created_at > %(t)s",
                    {"t": since},
                )
                == [("succeeded", 1)]
            ),
            WAIT,
            message="the products/create job done at its first attempt",
        )
    finally:
        system.set_faults()
    assert child_product_jobs(system, child, since) == 0


def parent_level_reads(system) -> int:
    """Level reads the parent has answered so far (`InventoryLevelAtLocation`, `InventoryLevels`:
    the emulator's count)."""
    usage = system.emulator.throttle(system.parent)["usage"]["by_operation"]
    return sum(usage.get(op, [0])[0] for op in ("InventoryLevelAtLocation", "InventoryLevels"))


def test_a_childs_own_level_move_is_set_back_without_reading_the_parent(system) -> None:
    """A count by hand in a child is set back to the parent's level as the engine knows it (a
    sale's adjust left it remembered): the parent's level did not move, so it is not read."""
    seller, counted = system.children
    the_sku = system.product_by_handle(system.parent, "demo-product-2")["variants"][0]["sku"]
    settle(system)
    before = system.level(system.parent, the_sku, LOCATION_NAMES[0])
    system.place_order(seller, the_sku, quantity=1)  # its adjust leaves the parent's level known
    system.wait_until(
        lambda: all(system.level(s, the_sku, LOCATION_NAMES[0]) == before - 1 for s in system.shops),
        WAIT,
        message="the sale reached every store",
    )
    settle(system)
    parent_level = before - 1
    reads = parent_level_reads(system)
    system.set_inventory(counted, the_sku, parent_level + 7, LOCATION_NAMES[0])
    system.wait_until(
        lambda: system.level(counted, the_sku, LOCATION_NAMES[0]) == parent_level,
        WAIT,
        message="the child's own move set back to the parent's level",
    )
    settle(system)
    assert parent_level_reads(system) - reads == 0
    assert system.level(system.parent, the_sku, LOCATION_NAMES[0]) == parent_level


def level_deliveries(system, since) -> dict[str, dict[str, int]]:
    """Per store, its inventory_levels/update deliveries since `since` by status."""
    found: dict[str, dict[str, int]] = {}
    for shop, status, n in sql(
        system,
        "SELECT shop_domain, status, count(*) FROM webhook_deliveries WHERE topic = 'inventory_levels/update' "
        "AND received_at > %(t)s GROUP BY 1, 2",
        {"t": since},
    ):
        found.setdefault(shop, {})[status] = n
    return found


def level_jobs(system, since) -> dict[str, list[str]]:
    """Per store, the states of the level webhook jobs its deliveries started since `since`."""
    found: dict[str, list[str]] = {}
    for shop, state in sql(
        system,
        "SELECT payload->>'shop', state FROM jobs WHERE kind = 'webhook.inventory_levels_update' "
        "AND created_at > %(t)s ORDER BY id",
        {"t": since},
    ):
        found.setdefault(shop, []).append(state)
    return found


def test_level_echoes_of_our_writes_get_no_job_and_real_moves_still_do(system) -> None:
    """A sale's level echoes (the parent's from our adjust, every child's from our sets) are
    judged at ingest: recorded as `echo`, no job (docs/decisions/0055). The seller's own move, a
    merchant's change in the parent and a count by hand in a child each get one job, which
    fans out or sets back as before; an older copy of a level change is still refused as stale."""
    from datetime import UTC, datetime, timedelta

    seller, sibling = system.children
    the_sku = system.product_by_handle(system.parent, "demo-product-1")["variants"][0]["sku"]
    stores = [system.parent, *system.children]
    settle(system)
    since = sql(system, "SELECT now()")[0][0]
    before = system.level(system.parent, the_sku, LOCATION_NAMES[0])
    system.place_order(seller, the_sku, quantity=1)
    system.wait_until(
        lambda: all(system.level(s, the_sku, LOCATION_NAMES[0]) == before - 1 for s in stores),
        WAIT,
        message="the sale reached every store",
    )
    settle(system)
    deliveries, jobs = level_deliveries(system, since), level_jobs(system, since)
    # Our own writes came back as webhooks, and none of them started a job.
    assert deliveries[system.parent] == {"echo": 1}
    assert deliveries[sibling] == {"echo": 1}
    assert system.parent not in jobs and sibling not in jobs
    # The seller's own move (the sale) is not our write: one job, done.
    assert deliveries[seller].get("accepted") == 1
    assert jobs[seller] == ["succeeded"]

    # A merchant's change in the parent: one job, fanned out to every child (whose echoes of
    # our sets get none).
    since = sql(system, "SELECT now()")[0][0]
    system.set_inventory(system.parent, the_sku, before + 5, LOCATION_NAMES[0])
    system.wait_until(
        lambda: all(system.level(s, the_sku, LOCATION_NAMES[0]) == before + 5 for s in stores),
        WAIT,
        message="the parent's change reached every child",
    )
    settle(system)
    deliveries, jobs = level_deliveries(system, since), level_jobs(system, since)
    assert deliveries[system.parent] == {"accepted": 1} and jobs == {system.parent: ["succeeded"]}
    assert deliveries[seller] == deliveries[sibling] == {"echo": 1}

    # An older copy of that change (not an echo: it goes to its job) is refused as stale there:
    # nothing follows from it, every store keeps the newer level.
    body, at = sql(
        system,
        "SELECT convert_from(payload, 'UTF8')::jsonb, triggered_at FROM webhook_deliveries "
        "WHERE shop_domain = %(s)s AND topic = 'inventory_levels/update' AND received_at > %(t)s",
        {"s": system.parent, "t": since},
    )[0]
    older = (at or datetime.now(UTC)) - timedelta(seconds=30)
    stale = {**body, "available": before + 40, "updated_at": older.isoformat()}
    answer = post_webhook(system, system.parent, "inventory_levels/update", stale, triggered_at=older).json()
    assert answer["outcome"] == "accepted"
    settle(system)
    delivery = sql(
        system, "SELECT payload->>'delivery_id', state FROM jobs WHERE id = %(j)s", {"j": answer["job_id"]}
    )
    assert delivery[0][1] == "succeeded"
    assert sql(
        system,
        "SELECT count(*) FROM jobs WHERE payload::text LIKE %(d)s AND id <> %(j)s",
        {"d": f"%{delivery[0][0]}%", "j": answer["job_id"]},
    ) == [(0,)]
    assert all(system.level(s, the_sku, LOCATION_NAMES[0]) == before + 5 for s in stores)

    # A count by hand in a child: one job, set back to the parent's level.
    since = sql(system, "SELECT now()")[0][0]
    system.set_inventory(sibling, the_sku, before + 9, LOCATION_NAMES[0])
    system.wait_until(
        lambda: system.level(sibling, the_sku, LOCATION_NAMES[0]) == before + 5,
        WAIT,
        message="the child's own move set back",
    )
    settle(system)
    deliveries, jobs = level_deliveries(system, since), level_jobs(system, since)
    assert deliveries[sibling] == {"accepted": 1, "echo": 1}  # its move, then our set's echo
    assert jobs == {sibling: ["succeeded"]}
    assert system.parent not in deliveries
