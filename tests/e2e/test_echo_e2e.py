"""Echo suppression of the child's products/update webhooks, end to end (emulator over HTTP, web
tier, worker processes, real Postgres): Shopify sends products/update for every stock move and for
our own writes; while the child shows what the engine last wrote, no product job follows, and a
real edit in the child is still reverted.
"""

from __future__ import annotations

import time

import psycopg
import pytest

from storesync.demo.harness import LOCATION_NAMES, running_system

pytestmark = pytest.mark.timeout(180)

WAIT = 20.0


@pytest.fixture(scope="module")
def system(module_db):
    with running_system(module_db.dsn, children=2, products=3, workers=2, collections=2, subscribe="cli",
                        plan="plus", extra_env={"STORESYNC_SYNC_RECONCILE_EVERY_S": "3600"}) as system:
        system.cli("backfill", check=True)
        yield system


def sql(system, query: str, params: dict | None = None) -> list[tuple]:
    with psycopg.connect(system.env["DATABASE_URL"], autocommit=True) as conn:
        return conn.execute(query, params or {}).fetchall()


def settle(system) -> None:
    """Every delivery handled and no job left, delayed ones included (the child debounce)."""
    system.drain_webhooks(WAIT)
    system.wait_until(lambda: sql(system, "SELECT count(*) FROM jobs WHERE state IN ('running', 'queued') "
                                          "AND payload->>'parked_for' IS NULL")[0][0] == 0,
                      WAIT, message="queue empty")


def child_product_jobs(system, child: str, since) -> int:
    return sql(system, "SELECT count(*) FROM jobs WHERE kind = 'sync.product_to_child' AND created_at > %(t)s "
                       "AND payload->>'child_shop' = %(c)s AND payload->>'only_if_linked' = 'true'",
               {"t": since, "c": child})[0][0]


def test_stock_moves_in_a_child_cause_no_product_job_and_a_child_edit_is_still_reverted(system) -> None:
    seller = system.children[0]
    product = system.product_by_handle(system.parent, "demo-product-1")
    the_sku = product["variants"][0]["sku"]
    settle(system)
    since = sql(system, "SELECT now()")[0][0]
    before = system.level(system.parent, the_sku, LOCATION_NAMES[0])
    system.place_order(seller, the_sku, quantity=1)
    system.wait_until(lambda: all(system.level(s, the_sku, LOCATION_NAMES[0]) == before - 1 for s in [system.parent, *system.children]),
                      WAIT, message="the sale reached every store")
    settle(system)
    handled = sql(system, "SELECT count(*) FROM jobs WHERE kind = 'webhook.products_update' AND created_at > %(t)s "
                          "AND payload->>'shop' = ANY(%(c)s)", {"t": since, "c": list(system.children)})[0][0]
    assert handled >= 2  # the children did report the stock moves as product updates
    assert sum(child_product_jobs(system, c, since) for c in system.children) == 0

    original = product["title"]
    system.edit_product(seller, "demo-product-1", title="Edited in the child")
    system.wait_until(lambda: system.product_by_handle(seller, "demo-product-1")["title"] == original, WAIT,
                      message="child edit reverted")
    assert child_product_jobs(system, seller, since) >= 1
