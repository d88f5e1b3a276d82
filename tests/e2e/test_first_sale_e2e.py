"""The first sale after linking, end to end (emulator over HTTP, web tier, worker processes, real
Postgres): `storesync link` remembers each product as its scan read it, so the products/update
every store sends for the first stock move of a product is known as one without reading the
product back (before, each store read it once: a freshly linked 10,000-product catalog paid a
product read per store on the first sale of each product). Edits of products never sold since
the link still reach the children and a child's own edit is still reverted.
"""

from __future__ import annotations

import pytest

from storesync.demo.harness import running_system
from storesync.demo.seeding import LOCATION_NAMES
from tests.e2e.helpers import WAIT, requests_by_operation, sql
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
        child_overlap=3,  # every child already sells the parent's products: linked by SKU
        overlap_stock=None,
        collections=0,
        catalog_extras=True,  # media and metafields: the digests compare the media too
        plan="plus",
        extra_env={"STORESYNC_SYNC_RECONCILE_EVERY_S": "3600"},
    ) as system:
        system.cli("link", check=True)
        yield system


def settle(system) -> None:
    _settle(system, delayed_too=True)


def product_updates_handled(system, since) -> dict[str, int]:
    """shop -> products/update jobs its deliveries started since `since`."""
    return dict(
        sql(
            system,
            "SELECT payload->>'shop', count(*) FROM jobs WHERE kind = 'webhook.products_update' "
            "AND created_at > %(t)s GROUP BY 1",
            {"t": since},
        )
    )


def test_the_first_sale_after_linking_reads_no_product_in_any_store(system) -> None:
    seller = system.children[0]
    the_sku = system.product_by_handle(system.parent, "demo-product-1")["variants"][0]["sku"]
    settle(system)
    remembered = sql(system, "SELECT shop, count(*) FROM sync_product_payloads GROUP BY 1")
    assert dict(remembered) == {shop: 3 for shop in system.shops}
    since = sql(system, "SELECT now()")[0][0]
    before = requests_by_operation(system)
    level = system.level(system.parent, the_sku, LOCATION_NAMES[0])
    system.place_order(seller, the_sku, quantity=1)
    try:
        # What is judged is the reads, not how fast (the first sale of a system just started, on
        # a machine running another suite's system too, has taken over 20 s).
        system.wait_until(
            lambda: all(system.level(s, the_sku, LOCATION_NAMES[0]) == level - 1 for s in system.shops),
            3 * WAIT,
            message="the sale reached every store",
        )
    except TimeoutError:
        levels = {s: system.level(s, the_sku, LOCATION_NAMES[0]) for s in system.shops}
        jobs = sql(
            system,
            "SELECT kind, state, count(*) FROM jobs WHERE created_at > %(t)s GROUP BY 1, 2",
            {"t": since},
        )
        raise AssertionError(f"expected {level - 1} everywhere: {levels}; jobs {jobs}") from None
    settle(system)
    # Every store did report the stock move as a products/update (the test would pass vacuously
    # otherwise) ...
    assert set(product_updates_handled(system, since)) == set(system.shops)
    # ... and none of them was read back.
    after = requests_by_operation(system)
    for shop in system.shops:
        reads = after[shop].get("ProductById", 0) - before[shop].get("ProductById", 0)
        assert reads == 0, (shop, after[shop])


def test_edits_of_products_never_sold_since_linking_still_sync(system) -> None:
    """A remembered read is compared like a payload: a products/update that shows an edit (not
    only stock) is read and synced as before."""
    settle(system)
    system.edit_parent_product("demo-product-2", title="Renamed after linking")
    system.wait_until(
        lambda: all(
            system.product_by_handle(c, "demo-product-2")["title"] == "Renamed after linking"
            for c in system.children
        ),
        WAIT,
        message="every child renamed",
    )
    child = system.children[1]
    original = system.product_by_handle(child, "demo-product-3")["title"]
    system.edit_product(child, "demo-product-3", title="Edited in the child")
    system.wait_until(
        lambda: system.product_by_handle(child, "demo-product-3")["title"] == original,
        WAIT,
        message="the child's edit reverted",
    )


def test_a_reconcile_pass_remembers_what_it_read(system) -> None:
    """Reconciliation reads every product too: it remembers them like a link (products whose
    payloads were never kept, or were pruned, need no read on their next stock move)."""
    settle(system)
    sql(system, "DELETE FROM sync_product_payloads RETURNING 1")
    system.cli("reconcile", check=True)
    remembered = dict(sql(system, "SELECT shop, count(*) FROM sync_product_payloads GROUP BY 1"))
    assert remembered == {shop: 3 for shop in system.shops}
    settle(system)
    # demo-product-2: no media (the children's copies of demo-product-3 get theirs from this
    # pass, and their media's processing sends products/update that are read, rightly, later)
    the_sku = system.product_by_handle(system.parent, "demo-product-2")["variants"][0]["sku"]
    before = requests_by_operation(system)
    level = system.level(system.parent, the_sku, LOCATION_NAMES[1])
    system.place_order(system.children[1], the_sku, quantity=1, location=LOCATION_NAMES[1])
    system.wait_until(
        lambda: all(system.level(s, the_sku, LOCATION_NAMES[1]) == level - 1 for s in system.shops),
        WAIT,
        message="the sale reached every store",
    )
    settle(system)
    after = requests_by_operation(system)
    reads = {s: after[s].get("ProductById", 0) - before[s].get("ProductById", 0) for s in system.shops}
    assert reads == {s: 0 for s in system.shops}
