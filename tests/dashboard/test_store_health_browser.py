"""Store health in a real headless Chromium, on the whole system running (the emulator's parent
and three children, the web tier, a worker, real Postgres): the overview's stores in step, then
one falling behind under a throttled bucket and catching up, a paused child and a dead job in
the banner with their next steps, the charts with data, one product across the four stores, a
phone-width screen. One system serves the module; the tests run in file order (each leaves the
network in step, or says what it left)."""

from __future__ import annotations

import re
import secrets
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import psycopg
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from storesync.demo.harness import running_system
from storesync.queue.enqueue import JobSpec, Lane, enqueue
from tests.e2e.helpers import post_webhook, settle, sql

pytestmark = pytest.mark.timeout(240)

TOKEN = "op-" + secrets.token_hex(16)
OPS_TOKEN = "ops-" + secrets.token_hex(16)
OPERATIONS_MD = Path(__file__).resolve().parents[2] / "docs" / "operations.md"
SHOTS = "/tmp/dashboard-health-{}.png"


@pytest.fixture(scope="module")
def system(module_db):
    with running_system(
        module_db.dsn,
        children=3,
        products=6,
        child_overlap=2,
        collections=1,
        workers=1,
        worker_concurrency=8,
        plan="plus",
        extra_env={
            "STORESYNC_DASHBOARD_TOKEN": TOKEN,
            "STORESYNC_DASHBOARD_PLAIN_HTTP_LOOPBACK": "true",
            "STORESYNC_WEB_OPS_TOKEN": OPS_TOKEN,
            "STORESYNC_WEB_OPS_CACHE_S": "0",
            "STORESYNC_SYNC_BEHIND_AFTER_S": "2",
            "STORESYNC_SYNC_SETTLE_EVERY_S": "0.5",
            "STORESYNC_SYNC_SETTLE_QUIET_S": "0.2",
            "STORESYNC_SYNC_RECONCILE_EVERY_S": "3600",
            "STORESYNC_SYNC_PAUSE_RECHECK_S": "3600",
            # The charts' per-minute counts: the web tier adds its own every 0.5 s, the worker at
            # each heartbeat (lease / 3: 2 s) instead of every 5 s.
            "STORESYNC_WEB_MINUTE_COUNTS_FLUSH_S": "0.5",
            "STORESYNC_QUEUE_LEASE_SECONDS": "6",
        },
    ) as system:
        system.cli("link", check=True)
        system.cli("backfill", check=True)
        system.cli("reconcile", check=True)
        settle(system)
        assert system.compare().agree, system.compare().problems()
        yield system


@pytest.fixture
def dash(system, browser):
    context = browser.new_context(viewport={"width": 1300, "height": 1000})
    context.set_default_timeout(10_000)
    page = context.new_page()
    page.on("dialog", lambda dialog: dialog.accept())
    page.dash_url = system.web_url + "/dashboard"  # type: ignore[attr-defined]
    response = page.goto(page.dash_url + "/")  # type: ignore[attr-defined]
    assert response.status == 401
    page.fill("input[name=token]", TOKEN)
    page.click("button[type=submit]")
    page.wait_for_url(page.dash_url + "/")  # type: ignore[attr-defined]
    try:
        yield page
    finally:
        context.close()


def store_state(page, shop: str) -> str:
    return page.locator(f"#stores tr[data-shop='{shop}']").get_attribute("data-state") or ""


def wait_for_state(page, shop: str, state: str, timeout: float = 30.0) -> None:
    """Reload the overview until `shop` shows `state`."""
    deadline = time.monotonic() + timeout
    while True:
        page.goto(page.dash_url + "/")
        if store_state(page, shop) == state:
            return
        if time.monotonic() > deadline:
            row = page.locator(f"#stores tr[data-shop='{shop}']").inner_text()
            raise AssertionError(f"{shop} is not {state!r} after {timeout:g}s: {row}")
        time.sleep(0.5)


def counted(system, series: str) -> bool:
    """The charts' per-minute counts hold rows of `series`."""
    return bool(sql(system, "SELECT 1 FROM ops_minute_counts WHERE series = %(s)s LIMIT 1", {"s": series}))


def wait_for_worker_flush(system) -> None:
    """Until the worker has added its counts so far to the charts' per-minute series: it does so
    right after each heartbeat, so two heartbeats from now."""
    (now,) = sql(system, "SELECT now()")[0]

    def heartbeat_after(at):
        rows = sql(
            system,
            "SELECT max(heartbeat_at) FROM queue_workers WHERE state = 'running' AND heartbeat_at > %(at)s",
            {"at": at},
        )
        return rows[0][0]

    first = system.wait_until(lambda: heartbeat_after(now), 20, message="a worker heartbeat")
    system.wait_until(lambda: heartbeat_after(first), 20, message="the worker's counts flushed")


def changes_settled(system) -> bool:
    return sql(system, "SELECT count(*) FROM sync_changes WHERE settled_at IS NULL")[0][0] == 0


def test_every_store_in_step_with_charts_of_the_traffic(system, dash) -> None:
    child = system.children[0]
    sku = system.snapshot(child)["products"][0]["variants"][0]["sku"]
    before = system.level(system.parent, sku)
    system.place_order(child, sku=sku, quantity=1)
    system.edit_parent_product("demo-product-3", title="Alpine Jacket 3 (relaunch)")
    system.wait_until(lambda: system.level(system.parent, sku) == before - 1, 20, message="sale applied")
    settle(system)
    system.wait_until(lambda: system.compare().agree, 20, message="children follow")
    system.wait_until(lambda: changes_settled(system), 20, message="changes settled")
    wait_for_worker_flush(system)
    system.wait_until(lambda: counted(system, "webhooks"), 20, message="the web tier's counts flushed")

    dash.goto(dash.dash_url + "/")
    for shop in system.shops:
        assert store_state(dash, shop) == "in step", dash.locator("#stores").inner_text()
    assert dash.locator("#attention").count() == 0
    assert "Every store is in step" in dash.locator("#all-in-step").inner_text()
    parent_row = dash.locator(f"#stores tr[data-shop='{system.parent}']").inner_text()
    assert "ago" in parent_row  # the sale was written to the parent
    child_row = dash.locator(f"#stores tr[data-shop='{system.children[1]}']").inner_text()
    # The reconcile after the backfill: the copies the child already sold had stale stock.
    assert re.search(r"\d+s ago: repaired \d+ of \d+ \(.*set inventory", child_row), child_row
    assert "points" in child_row  # its rate-limit bucket

    for chart in ("chart-webhooks", "chart-latency", "chart-jobs"):
        figure = dash.locator(f"#{chart}")
        assert figure.get_attribute("data-has-data") == "yes", chart
        assert float(figure.locator("svg").get_attribute("data-total")) > 0, chart
    assert dash.locator("#chart-jobs svg rect.ok").count() > 0  # succeeded jobs, stacked
    assert dash.locator("#chart-latency svg polyline, #chart-latency svg circle").count() >= 2  # p50, p99
    dash.click("#charts a:text('day')")
    dash.wait_for_url(re.compile(r"range=day"))
    assert dash.locator("#chart-webhooks").get_attribute("data-has-data") == "yes"
    dash.screenshot(path=SHOTS.format("overview"), full_page=True)


def test_one_product_across_the_four_stores(system, dash) -> None:
    parent_product = system.product_by_handle(system.parent, "demo-product-3")
    sku = parent_product["variants"][0]["sku"]
    dash.fill("form.search input[name=q]", sku)
    dash.click("form.search button[type=submit]")
    dash.wait_for_url(re.compile(r"/products/[a-z0-9_-]+/\d+$"))  # one hit: straight to its page
    assert dash.locator("#product-title").inner_text() == "Alpine Jacket 3 (relaunch)"
    cards = dash.locator("#product-stores section.store")
    assert cards.count() == 4
    for shop in system.shops:
        card = dash.locator(f"#product-stores section.store[data-shop='{shop}']")
        assert card.get_attribute("data-state") == "in-step", card.inner_text()
        text = card.inner_text()
        assert "shop location" in text.lower() and "warehouse" in text.lower()  # location names, not ids
        assert sku in text
        link = card.locator("a.admin").first.get_attribute("href")
        assert re.fullmatch(
            rf"https://admin\.shopify\.com/store/{shop.removesuffix('.myshopify.com')}/products/\d+", link
        ), link
        expected = system.level(shop, sku)
        assert (
            card.locator(f"tr[data-sku='{sku}'] td[data-location='Shop location']")
            .inner_text()
            .startswith(str(expected))
        )
    dash.screenshot(path=SHOTS.format("product"), full_page=True)
    # The children's last change is the parent's edit, named by its cause.
    child_card = dash.locator(f"#product-stores section.store[data-shop='{system.children[1]}']")
    last = child_card.locator(".last-change").inner_text()
    assert "products/update from parent.myshopify.com" in last, last

    dash.goto(dash.dash_url + "/products?q=no-such-sku-anywhere")
    assert dash.locator("#no-hits").count() == 1

    # By handle, and by a child's order (its name, as the merchant sees it): the same page.
    order = system.place_order(system.children[0], sku=sku, quantity=1)
    for query in ("demo-product-3", order["name"]):
        dash.goto(dash.dash_url + "/")
        dash.fill("form.search input[name=q]", query)
        dash.click("form.search button[type=submit]")
        dash.wait_for_url(re.compile(r"/products/[a-z0-9_-]+/\d+$"))
        assert dash.locator("#product-title").inner_text() == "Alpine Jacket 3 (relaunch)", query
    settle(system)
    system.wait_until(lambda: system.compare().agree, 20, message="the sale reaches every store")


def test_a_throttled_store_falls_behind_then_catches_up(system, dash) -> None:
    slow = system.children[1]
    # A small bucket that refills slowly: the child's writes wait for points. Meanwhile some
    # calls are answered 429 (as Shopify does when other apps share the store's limit). A plan
    # change keeps what is available up to the new size, so the first one empties the bucket:
    # the edits below must wait for it to refill, however fast the machine.
    system.set_plan(slow, bucket_size=1, restore_rate=25)
    system.set_plan(slow, bucket_size=300, restore_rate=25)
    system.set_faults(graphql={"http_429_p": 0.2})
    try:
        for n in (1, 2, 4):
            system.edit_parent_product(f"demo-product-{n}", tags=f"throttle-{n}")
        wait_for_state(dash, slow, "behind", timeout=30)
        row = dash.locator(f"#stores tr[data-shop='{slow}']").inner_text()
        assert "oldest unapplied change" in row and "pending" in row, row
        assert "/ 300 points" in row, row  # the small bucket it waits on
        wait_for_state(dash, slow, "in step", timeout=90)  # as the bucket refills
        # "In step" is true of the store itself: it holds every edit as soon as it says so
        # (a write waiting out a retry's backoff is still work for it, not in step).
        snapshot = system.snapshot(slow)
        tags = {n: system.product_by_handle(slow, f"demo-product-{n}", snapshot)["tags"] for n in (1, 2, 4)}
        assert all(f"throttle-{n}" in str(t) for n, t in tags.items()), tags
    finally:
        system.set_faults()
        system.set_plan(slow, "plus")
    settle(system)
    system.wait_until(lambda: system.compare().agree, 30, message="children follow")
    wait_for_worker_flush(system)
    dash.goto(dash.dash_url + "/")
    throttled = dash.locator("#chart-throttled")
    assert throttled.get_attribute("data-has-data") == "yes", throttled.inner_text()
    assert slow.removesuffix(".myshopify.com") in throttled.inner_text()  # per store, by name


def test_a_paused_child_and_a_dead_job_in_the_banner_with_next_steps(system, dash) -> None:
    paused, other = system.children[2], system.children[0]
    post_webhook(
        system, paused, "app/uninstalled", {"id": 1, "domain": paused}, triggered_at=datetime.now(UTC)
    )
    system.wait_until(
        lambda: (
            sql(system, "SELECT status FROM stores WHERE shop_domain = %(s)s", {"s": paused})[0][0]
            == "paused"
        ),
        20,
        message="store paused",
    )
    # An order webhook that cannot be applied (a line without a valid quantity): dead at once.
    bad = post_webhook(
        system,
        other,
        "orders/create",
        {"id": 990001, "name": "#9001", "line_items": [{"id": 1, "variant_id": 5, "quantity": "two"}]},
        triggered_at=datetime.now(UTC),
    )
    assert bad.status_code == 200
    system.wait_until(
        lambda: sql(system, "SELECT count(*) FROM jobs WHERE state = 'dead'")[0][0] >= 1,
        20,
        message="dead job",
    )
    # A copy job for the paused child that had used its attempts before the pause.
    with psycopg.connect(system.env["DATABASE_URL"]) as conn:
        stuck = enqueue(
            conn,
            JobSpec(
                "sync.product_to_child",
                {"parent_product_id": "gid://shopify/Product/1", "child_shop": paused, "cause": "test"},
                group=system.network.merchants[0].id,
                lane=Lane.CATALOG,
                run_at=datetime(2100, 1, 1, tzinfo=UTC),
            ),
        ).job_id
        conn.execute(
            "UPDATE jobs SET state = 'dead', finished_at = now(), errors = %s::jsonb WHERE id = %s",
            (
                '[{"attempt": 10, "error": "RetryableError", "message": "HTTP 503 from the store", '
                '"retryable": true}]',
                stuck,
            ),
        )

    dash.goto(dash.dash_url + "/")
    assert store_state(dash, paused) == "paused"
    banner = dash.locator("#attention")
    paused_item = banner.locator(f"li[data-shop='{paused}']").first
    text = paused_item.inner_text()
    assert f"{paused} paused: app uninstalled" in text
    assert "Reinstall the app" in text and f"storesync network resume {paused}" in text
    dead_items = banner.locator("li[data-jobs]")
    assert dead_items.count() == 2
    all_dead = dead_items.all_inner_texts()
    order_item = next(t for t in all_dead if f"orders/create webhook from {other} (job" in t)
    assert "could not be applied for parent.myshopify.com" in order_item
    assert "quantity" in order_item and "storesync jobs retry" in order_item
    assert "permanent" in order_item  # fix the cause first
    copy_item = next(t for t in all_dead if "sync.product_to_child" in t)
    assert f"{paused} is paused: resume it first" in copy_item

    # The job's page says why a replay would not help yet.
    dash.goto(f"{dash.dash_url}/jobs/{stuck}")
    warning = dash.locator("#replay-warning").inner_text()
    assert f"{paused} is still paused" in warning and "storesync network resume" in warning

    system.cli("network", "resume", paused, check=True)
    dash.goto(f"{dash.dash_url}/jobs/{stuck}")
    assert dash.locator("#replay-warning").count() == 0  # nothing says it would fail now
    dash.goto(dash.dash_url + "/")
    assert dash.locator(f"#attention li[data-shop='{paused}']:not([data-jobs])").count() == 0
    assert store_state(dash, paused) == "failing"  # its dead job is still there to replay
    dash.screenshot(path=SHOTS.format("attention"), full_page=True)


def scrape(system) -> dict[str, object]:
    reply = httpx.get(
        system.ops_url + "/metrics",
        headers={"Authorization": f"Bearer {OPS_TOKEN}"},
        timeout=10,
        trust_env=False,
    )
    assert reply.status_code == 200
    return {f.name: f for f in text_string_to_metric_families(reply.text)}


def test_one_protected_scrape_has_every_store_and_worker_and_the_alert_rules_metrics(system) -> None:
    assert httpx.get(system.ops_url + "/metrics", timeout=10, trust_env=False).status_code == 401
    families = scrape(system)
    samples = {s.name: s for f in families.values() for s in f.samples}

    def series(name: str) -> dict[str, float]:
        return {
            s.labels.get("shop", ""): s.value for f in families.values() for s in f.samples if s.name == name
        }

    # Every store has its gauges, 0 rather than absent.
    for name in ("storesync_store_paused", "storesync_store_lag_seconds", "storesync_store_pending_jobs"):
        assert set(series(name)) == set(system.shops), name
    assert series("storesync_store_paused") == dict.fromkeys(system.shops, 0.0)
    states = [s for s in families["storesync_store_state"].samples if s.value == 1]
    assert sorted(s.labels["shop"] for s in states) == sorted(system.shops)
    # Each store's bucket; the last reconcile per store and merchant.
    assert all(v > 0 for v in series("storesync_store_api_points_available").values())
    assert set(series("storesync_reconcile_drift_repaired")) == set(system.shops)
    assert families["storesync_reconcile_last_run_timestamp_seconds"].samples[0].value > time.time() - 3600
    # Deliveries per store, from the web tier.
    by_shop = {s.labels["shop"] for s in families["storesync_webhook_deliveries_by_shop"].samples}
    assert by_shop >= set(system.children)
    # The worker's own metrics, published with its heartbeat, labelled with it.
    jobs = [s for s in families["storesync_worker_jobs"].samples if s.labels.get("outcome") == "succeeded"]
    assert jobs and all(s.labels["worker"] for s in jobs)
    calls = [s for s in families["storesync_admin_api_calls"].samples if s.name.endswith("_total")]
    assert {s.labels["shop"] for s in calls} == set(system.shops)
    propagation = [
        s for s in families["storesync_sync_propagation_seconds"].samples if s.name.endswith("_count")
    ]
    assert propagation and sum(s.value for s in propagation) >= 1  # settled changes, observed

    # docs/operations.md's alert rules name only metrics that exist here.
    text = OPERATIONS_MD.read_text(encoding="utf-8")
    block = text[text.index("### Alerts") :]
    rules_yaml = block[
        block.index("```yaml") + len("```yaml") : block.index("```", block.index("```yaml") + 7)
    ]
    rules = yaml.safe_load(rules_yaml)["groups"][0]["rules"]
    assert len(rules) >= 10 and all(r["alert"] and r["expr"] for r in rules)
    named = {m for r in rules for m in re.findall(r"storesync_[a-z0-9_]+", str(r["expr"]))}
    suffixes = ("_bucket", "_count", "_sum", "_total", "_created")

    def exported(name: str) -> bool:
        base = next((name[: -len(x)] for x in suffixes if name.endswith(x)), name)
        return name in samples or name in families or base in families

    missing = sorted(m for m in named if not exported(m))
    assert not missing, f"alert rules name metrics that are not exported: {missing}"


def test_phone_width_has_no_horizontal_overflow(system, browser) -> None:
    context = browser.new_context(viewport={"width": 420, "height": 900}, is_mobile=True)
    page = context.new_page()
    try:
        base = system.web_url + "/dashboard"
        page.goto(base + "/")
        page.fill("input[name=token]", TOKEN)
        page.click("button[type=submit]")
        page.wait_for_url(base + "/")
        sku = system.product_by_handle(system.parent, "demo-product-3")["variants"][0]["sku"]
        for path in ("/", f"/products?q={sku}", "/failures", "/queue"):
            page.goto(base + path)
            widths = page.evaluate(
                "() => ({doc: document.documentElement.scrollWidth, main: document.querySelector('main').scrollWidth,"
                " view: window.innerWidth})"
            )
            assert widths["doc"] <= widths["view"] and widths["main"] <= widths["view"], (path, widths)
        page.screenshot(path=SHOTS.format("phone"), full_page=True)
    finally:
        context.close()
