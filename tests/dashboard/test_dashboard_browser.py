"""The dashboard in a real headless Chromium against the real web app and Postgres."""

from __future__ import annotations

import asyncio
import re
from concurrent.futures import ThreadPoolExecutor

import psycopg

from storesync.queue.enqueue import Lane
from storesync.sync.adapters.postgres import PgAudit
from storesync.sync.domain.audit import AuditRecord
from tests.dashboard.conftest import sign_in

SCREENSHOT = "/tmp/dashboard.png"


def test_overview_shows_seeded_stores_queue_depth_oldest_age_and_workers(serve_dashboard, page):
    with serve_dashboard() as dash:
        for _ in range(3):
            dash.enqueue("webhook.orders_create", "acme", Lane.INVENTORY)
        catalog = [dash.enqueue("webhook.products_update", "acme", Lane.CATALOG) for _ in range(2)]
        dash.enqueue("sync.backfill", "bolt", Lane.BACKFILL)
        dash.bury(catalog[0])
        # The oldest due acme job became due 7 minutes ago: the overview shows that wait.
        dash.sql(
            "UPDATE jobs SET run_at = now() - interval '7 minutes' WHERE id = "
            "(SELECT min(id) FROM jobs WHERE group_key = 'acme' AND state = 'queued')"
        )
        dash.sql(
            "UPDATE stores SET status = 'paused', status_reason = 'app uninstalled' "
            "WHERE shop_domain = 'bolt-outlet.myshopify.com'"
        )
        dash.heartbeat("worker-1")

        sign_in(page, dash)

        stores = page.locator("#stores")
        for shop in (
            "acme-hq.myshopify.com",
            "acme-east.myshopify.com",
            "acme-west.myshopify.com",
            "bolt-hq.myshopify.com",
            "bolt-outlet.myshopify.com",
        ):
            assert stores.locator(f"tr[data-shop='{shop}']").count() == 1
        assert "Acme Outfitters" in stores.inner_text()
        paused = stores.locator("tr[data-shop='bolt-outlet.myshopify.com']").inner_text()
        assert "paused" in paused and "app uninstalled" in paused
        assert (
            stores.locator("tr[data-shop='acme-hq.myshopify.com']").get_attribute("data-state") == "in step"
        )

        depth = page.locator("#queue-depth")

        def cell(lane: str, state: str) -> str:
            return depth.locator(f"tr[data-lane='{lane}'] td[data-state='{state}']").inner_text().strip()

        assert cell("inventory", "queued") == "3"
        assert cell("catalog", "queued") == "1"
        assert cell("catalog", "dead") == "1"
        assert cell("backfill", "queued") == "1"
        assert cell("inventory", "dead") == "0"
        assert depth.locator("tfoot th[data-state='queued']").inner_text().strip() == "5"

        acme = page.locator("#merchant-queue tr[data-merchant='acme']").inner_text()
        assert re.search(r"\b7m \d\ds\b", acme), acme  # oldest due job waiting ~7 minutes
        assert page.locator("#workers").inner_text().count("worker-1") == 1

        # Secrets from storesync.toml and the operator token never reach the page.
        html = page.content()
        assert dash.token not in html
        assert "shpat_dashboard_test_access_token" not in html

        page.screenshot(path=SCREENSHOT, full_page=True)


def test_replay_button_on_a_dead_job_requeues_it(serve_dashboard, page):
    with serve_dashboard() as dash:
        job_id = dash.enqueue(
            "webhook.products_update", "acme", payload={"delivery_id": "d-1", "body": {"id": 7}}
        )
        dash.bury(job_id, "product not found", attempts=3)

        sign_in(page, dash, "/failures")
        row = page.locator(f"#dead-jobs tr[data-job='{job_id}']")
        assert "product not found (attempt 3)" in row.inner_text()
        row.locator("a").first.click()
        page.wait_for_url(f"{dash.url}/jobs/{job_id}")
        assert page.locator("#errors tbody tr").count() == 3
        assert page.locator("#job-state").inner_text() == "dead"

        page.click("#replay")  # confirm() is accepted by the fixture
        page.wait_for_url(re.compile(rf"/jobs/{job_id}\?notice=replayed$"))
        assert page.locator("#job-state").inner_text() == "queued"
        assert "queued again" in page.locator(".notice").inner_text()

        state, attempt, errors = dash.sql("SELECT state, attempt, errors FROM jobs WHERE id = %s", (job_id,))[
            0
        ]
        assert (state, attempt) == ("queued", 0)
        assert errors[-1]["message"] == "replayed by an operator" and len(errors) == 4
        # A queued job offers cancel, not replay.
        assert page.locator("#replay").count() == 0 and page.locator("#cancel").count() == 1


def test_audit_page_filters_by_store_object_and_cause_and_pages(serve_dashboard, page):
    with serve_dashboard(page_size=2) as dash:

        async def record() -> None:
            async with await psycopg.AsyncConnection.connect(dash.db.dsn) as conn:
                audit = PgAudit(conn)
                for n, (shop, obj, cause) in enumerate(
                    [
                        ("acme-east.myshopify.com", "gid://shopify/Product/1", "job:11"),
                        ("acme-west.myshopify.com", "gid://shopify/Product/1", "job:11"),
                        ("acme-east.myshopify.com", "gid://shopify/InventoryLevel/9", "delivery:wh-77"),
                        ("acme-east.myshopify.com", "gid://shopify/Product/2", "job:12"),
                        ("bolt-outlet.myshopify.com", "gid://shopify/Product/5", "job:13"),
                    ]
                ):
                    await audit.record(
                        AuditRecord(
                            shop=shop,
                            object_type="product",
                            object_id=obj,
                            action=f"product_set_{n}",
                            before={"title": "old"},
                            after={"title": f"new {n}", "api_token": "must-not-show"},
                            cause=cause,
                        )
                    )

        # In its own thread: playwright's sync API owns an event loop in this one.
        with ThreadPoolExecutor(1) as pool:
            pool.submit(asyncio.run, record()).result(timeout=10)

        sign_in(page, dash, "/audit")
        # Newest first, two per page.
        assert page.locator("#audit tbody tr").count() == 2
        assert "product_set_4" in page.locator("#audit tbody tr").first.inner_text()

        page.select_option("select[name=shop]", "acme-east.myshopify.com")
        page.click("form.filters button[type=submit]")
        page.wait_for_url(re.compile(r"shop=acme-east"))
        rows = page.locator("#audit tbody tr")
        assert [rows.nth(i).locator("code").nth(1).inner_text() for i in range(rows.count())] == [
            "product_set_3",
            "product_set_2",
        ]
        page.click("a[rel=next]")
        page.wait_for_url(re.compile(r"before=\d+"))
        assert page.locator("#audit tbody tr").count() == 1
        assert "product_set_0" in page.locator("#audit tbody").inner_text()
        assert page.locator("a[rel=next]").count() == 0

        page.goto(dash.url + "/audit")
        page.fill("input[name=object]", "gid://shopify/Product/1")
        page.click("form.filters button[type=submit]")
        page.wait_for_url(re.compile(r"object=gid"))
        body = page.locator("#audit tbody").inner_text()
        assert "product_set_0" in body and "product_set_1" in body and "product_set_3" not in body

        page.goto(dash.url + "/audit")
        page.fill("input[name=cause]", "delivery:wh-77")
        page.click("form.filters button[type=submit]")
        page.wait_for_url(re.compile(r"cause=delivery"))
        assert page.locator("#audit tbody tr").count() == 1
        assert "product_set_2" in page.locator("#audit tbody").inner_text()
        assert "must-not-show" not in page.content()


def test_signing_in_from_a_deep_link_returns_to_it_and_wrong_token_is_refused(serve_dashboard, page):
    with serve_dashboard() as dash:
        response = page.goto(dash.url + "/queue?state=dead")
        assert response.status == 401
        assert page.locator("#jobs").count() == 0
        page.fill("input[name=token]", "not-the-operator-token")
        page.click("button[type=submit]")
        assert "not the operator token" in page.locator(".notice.error").inner_text()
        page.fill("input[name=token]", dash.token)
        page.click("button[type=submit]")
        page.wait_for_url(dash.url + "/queue?state=dead")
        assert page.locator("select[name=state]").input_value() == "dead"
