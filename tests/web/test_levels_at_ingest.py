"""Level webhooks judged at ingest (docs/decisions/0055), over real HTTP on a real database: an
echo of the engine's own write is recorded without a job and advances its level's version; a
copy of it and an older echo are still refused; anything else gets its job with the version left
for the worker; a child level of an item linked to nothing gets no job; a failed judgement
loses nothing (every delivery gets its job); the setting off gives every delivery its job."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import httpx
import psycopg

from storesync.sync.adapters.postgres import Storage
from storesync.sync.domain.model import Link, LinkKind, MatchedBy, WriteRecord
from tests.web.conftest import CHILD, PARENT, serving, webhook

ITEM, LOCATION = "gid://shopify/InventoryItem/11", "gid://shopify/Location/1"
CHILD_ITEM, CHILD_LOCATION = "gid://shopify/InventoryItem/91", "gid://shopify/Location/9"
WRITTEN = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)


def remember(dsn: str, writes: list[WriteRecord], links: list[Link] = ()) -> None:
    """What the engine records before its own writes (its write records) and its links."""

    async def run() -> None:
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
            st = Storage(conn)
            await st.links.save_links(list(links))
            await st.writes.record_writes(writes)

    asyncio.run(run())


def level(shop: str, available: int, after_s: float, *, item: str = ITEM, location: str = LOCATION, **kw):
    """A signed inventory_levels/update reporting `available`, `after_s` seconds after WRITTEN."""
    at = WRITTEN + timedelta(seconds=after_s)
    body = {
        "inventory_item_id": int(item.rsplit("/", 1)[1]),
        "location_id": int(location.rsplit("/", 1)[1]),
        "available": available,
        "updated_at": at.isoformat(),
    }
    return webhook(
        "inventory_levels/update", body, shop=shop, **{"X-Shopify-Triggered-At": at.isoformat()}, **kw
    )


def post(served, delivery) -> dict:
    headers, raw = delivery
    response = httpx.post(served.webhook_url, content=raw, headers=headers, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


def level_jobs(conn: psycopg.Connection) -> int:
    return conn.execute(
        "SELECT count(*) FROM jobs WHERE kind = 'webhook.inventory_levels_update'"
    ).fetchone()[0]


def applied(conn: psycopg.Connection, shop: str = PARENT, item: str = ITEM) -> datetime | None:
    row = conn.execute(
        "SELECT applied_at FROM sync_applied_versions WHERE shop = %s AND inventory_item_id = %s",
        (shop, item),
    ).fetchone()
    return row[0] if row else None


def test_an_echo_gets_no_job_and_its_copy_and_older_echoes_are_still_refused(db) -> None:
    remember(
        db.dsn,
        [
            WriteRecord(PARENT, ITEM, LOCATION, 7, WRITTEN, "job:1"),
            WriteRecord(CHILD, CHILD_ITEM, CHILD_LOCATION, 7, WRITTEN, "job:1"),
        ],
        [Link(LinkKind.VARIANT, CHILD, "v1", "cv1", MatchedBy.SKU, "p1", "cp1", ITEM, CHILD_ITEM)],
    )
    with serving(db.settings) as served, psycopg.connect(db.dsn, autocommit=True) as conn:
        echo = level(PARENT, 7, 2, webhook_id="echo-1")
        assert post(served, echo) == {"status": 200, "message": "recorded", "outcome": "echo"}
        assert applied(conn) == WRITTEN + timedelta(seconds=2)  # the version advanced at ingest
        assert post(served, echo)["outcome"] == "duplicate"
        assert post(served, level(PARENT, 7, 1))["outcome"] == "stale"  # an older echo
        # The child's own echo (a linked item), and a level of a child item linked to nothing.
        assert post(served, level(CHILD, 7, 2, item=CHILD_ITEM, location=CHILD_LOCATION))["outcome"] == "echo"
        assert post(served, level(CHILD, 3, 2, item="gid://shopify/InventoryItem/5"))["outcome"] == "unlinked"
        assert level_jobs(conn) == 0

        # Anything else is left to its job, its version untouched (the worker's advance judges it):
        # an older change (the worker finds it stale) and a newer one (the worker fans it out).
        older = post(served, level(PARENT, 3, 1))
        newer = post(served, level(PARENT, 3, 4))
        assert older["outcome"] == newer["outcome"] == "accepted" and older["job_id"] and newer["job_id"]
        assert applied(conn) == WRITTEN + timedelta(seconds=2)
        assert level_jobs(conn) == 2

        statuses = dict(
            conn.execute(
                "SELECT status, count(*) FROM webhook_deliveries WHERE topic = 'inventory_levels/update' "
                "GROUP BY status"
            ).fetchall()
        )
        assert statuses == {"echo": 2, "stale": 1, "unlinked": 1, "accepted": 2}
        metrics = httpx.get(served.ops_url + "/metrics", timeout=10).text
        assert 'storesync_webhook_judged_at_ingest_total{outcome="echo"} 2.0' in metrics
        assert 'storesync_webhook_judged_at_ingest_total{outcome="stale"} 1.0' in metrics
        assert 'storesync_webhook_judged_at_ingest_total{outcome="unlinked"} 1.0' in metrics


def test_a_failed_judgement_loses_nothing_and_the_setting_off_judges_nothing(db) -> None:
    remember(db.dsn, [WriteRecord(PARENT, ITEM, LOCATION, 7, WRITTEN, "job:1")])
    with psycopg.connect(db.dsn, autocommit=True) as conn:
        with serving(db.settings, echoes_at_ingest=False) as served:
            assert post(served, level(PARENT, 7, 2))["outcome"] == "accepted"
            assert level_jobs(conn) == 1 and applied(conn) is None
        # The write records unreadable: the judgement fails, the batch is recorded without it.
        conn.execute("ALTER TABLE sync_write_records RENAME TO sync_write_records_away")
        try:
            with serving(db.settings) as served:
                answer = post(served, level(PARENT, 7, 3))
                assert answer["outcome"] == "accepted" and answer["job_id"]
                metrics = httpx.get(served.ops_url + "/metrics", timeout=10).text
                assert "storesync_webhook_levels_not_judged_total 1.0" in metrics
        finally:
            conn.execute("ALTER TABLE sync_write_records_away RENAME TO sync_write_records")
        assert level_jobs(conn) == 2 and applied(conn) is None
