"""Retention against a real, migrated database: every table keeps exactly what it should, in
small batches; an order leaves the ledger whole and is remembered; `storesync prune --dry-run`."""

from __future__ import annotations

import os
import subprocess
import sys

import psycopg

from storesync.db.pools import POOLED_CONNECTION_KWARGS
from storesync.queue.config import QueueSettings
from storesync.retention import RetentionSettings, prune
from storesync.sync.adapters.postgres import order_pruned

OLD, NEW = "now() - interval '500 days'", "now() - interval '1 hour'"


def _seed(conn: psycopg.Connection) -> None:
    for n, (status, age) in enumerate(
        [("accepted", OLD), ("accepted", NEW), ("unparseable", OLD), ("ignored", OLD), ("ignored", NEW)]
    ):
        conn.execute(
            "INSERT INTO webhook_deliveries (webhook_id, shop_domain, merchant_id, topic, payload, status,"
            f" received_at) VALUES (%s, 's.myshopify.com', 'm', 't', '', %s, {age})",
            (f"wh-{n}", status),
        )
    for n, age in enumerate([OLD, OLD, OLD, NEW]):
        conn.execute(
            "INSERT INTO sync_audit (at, shop, object_type, object_id, action, cause)"
            f" VALUES ({age}, 's', 'product', %s, 'update', 'c')",
            (f"p{n}",),
        )
    for saga, state, age in [
        ("done-old", "completed", OLD),
        ("undone-old", "compensated", OLD),
        ("done-new", "completed", NEW),
        ("stuck-old", "stuck", OLD),
        ("running-old", "running", OLD),
    ]:
        conn.execute(
            "INSERT INTO sync_sagas (id, kind, shop, cause, state, updated_at)"
            f" VALUES (%s, 'copy_product', 's', 'c', %s, {age})",
            (saga, state),
        )
        conn.execute(
            "INSERT INTO sync_saga_steps (saga_id, idx, name, action) VALUES (%s, 0, 'create', 'product_set')",
            (saga,),
        )
    # Order A: every entry applied long ago -> pruned whole and remembered. Order B: one entry
    # old, one recent (a restock) -> kept whole. Order C: old but never finished -> kept.
    for order, line, kind, status, age in [
        ("A", "a1", "sale", "applied", OLD),
        ("A", "a2", "sale", "applied", OLD),
        ("B", "b1", "sale", "applied", OLD),
        ("B", "b1", "restock", "applied", NEW),
        ("C", "c1", "sale", "claimed", OLD),
    ]:
        applied = status == "applied"
        conn.execute(
            "INSERT INTO sync_inventory_ledger (child_shop, order_line_id, kind, ref, order_id, parent_item_id,"
            " parent_location_id, requested_delta, status, applied_delta, backlog_after, expected_after,"
            f" cause, created_at, applied_at) VALUES ('child.myshopify.com', %s, %s, %s, %s, 'i', 'l', -1, %s,"
            f" %s, %s, %s, 'c', {age}, {age if applied else 'NULL'})",
            (line, kind, "r1" if kind == "restock" else "", order, status)
            + ((-1, 0, 5) if applied else (None, None, None)),
        )
    for n, age in enumerate([OLD, OLD, NEW]):
        conn.execute(
            "INSERT INTO sync_write_records (shop, inventory_item_id, location_id, quantity, written_at, cause)"
            f" VALUES ('s', %s, 'l', 1, {age}, 'c')",
            (f"i{n}",),
        )
    for n, age in enumerate([OLD, NEW]):
        conn.execute(
            "INSERT INTO sync_changes (change, merchant_id, source_shop, topic, changed_at)"
            f" VALUES (%s, 'm', 's', 'products/update', {age})",
            (f"delivery:ch{n}",),
        )
        conn.execute(
            "INSERT INTO sync_reconcile_runs (merchant_id, cause, started_at, finished_at)"
            f" VALUES ('m', %s, {age}, {age})",
            (f"run{n}",),
        )
        conn.execute(
            "INSERT INTO ops_minute_counts (series, minute, key, value)"
            f" VALUES ('jobs', date_trunc('minute', {age}), %s, 1)",
            (f"k{n}",),
        )
    for state, age in [("succeeded", OLD), ("succeeded", NEW), ("dead", OLD), ("dead", NEW)]:
        conn.execute(
            "INSERT INTO jobs (kind, group_key, state, finished_at) VALUES ('k', 'g', %s, " + age + ")",
            (state,),
        )


def _left(conn: psycopg.Connection) -> dict[str, list]:
    def col(sql: str) -> list:
        return sorted(r[0] for r in conn.execute(sql))

    return {
        "deliveries": col("SELECT webhook_id FROM webhook_deliveries"),
        "audit": col("SELECT object_id FROM sync_audit"),
        "sagas": col("SELECT id FROM sync_sagas"),
        "steps": col("SELECT saga_id FROM sync_saga_steps"),
        "ledger": col("SELECT order_line_id || ':' || kind FROM sync_inventory_ledger"),
        "writes": col("SELECT inventory_item_id FROM sync_write_records"),
        "jobs": col("SELECT state || ':' || (finished_at > now() - interval '1 day') FROM jobs"),
        "changes": col("SELECT change FROM sync_changes"),
        "runs": col("SELECT cause FROM sync_reconcile_runs"),
        "counts": col("SELECT key FROM ops_minute_counts"),
    }


async def test_prune_keeps_exactly_what_retention_says_in_small_batches(db) -> None:
    with db.connect(autocommit=True) as conn:
        _seed(conn)
        before = _left(conn)
    retention = RetentionSettings.load(batch=1)  # one row per statement: every batch boundary
    queue = QueueSettings.load()
    async with await psycopg.AsyncConnection.connect(
        db.dsn, **{**POOLED_CONNECTION_KWARGS, "autocommit": True}
    ) as conn:
        dry = await prune(conn, settings=retention, queue=queue, dry_run=True)
        with db.connect() as check:
            assert _left(check) == before  # the dry run deleted nothing
        progress: list[tuple[str, int]] = []
        done = await prune(
            conn, settings=retention, queue=queue, progress=lambda t, n: progress.append((t, n))
        )
        assert await order_pruned(conn, "child.myshopify.com", "A")
        assert not await order_pruned(conn, "child.myshopify.com", "B")
        again = await prune(conn, settings=retention, queue=queue)
    assert {t.table: t.old_rows for t in dry} == {
        "webhook_deliveries": 3,
        "jobs (finished)": 1,
        "jobs (dead)": 1,
        "sync_audit": 3,
        "sync_sagas (finished)": 2,
        "sync_inventory_ledger": 3,  # an upper bound: order B's old entry stays with its order
        "sync_write_records": 2,
        "sync_changes": 1,
        "sync_reconcile_runs": 1,
        "ops_minute_counts": 1,
    }
    with db.connect() as conn:
        left = _left(conn)
    assert left == {
        "deliveries": ["wh-1", "wh-4"],
        "audit": ["p3"],
        "sagas": ["done-new", "running-old", "stuck-old"],
        "steps": ["done-new", "running-old", "stuck-old"],
        "ledger": ["b1:restock", "b1:sale", "c1:sale"],
        "writes": ["i2"],
        "jobs": ["dead:true", "succeeded:true"],
        "changes": ["delivery:ch1"],
        "runs": ["run1"],
        "counts": ["k1"],
    }
    assert {t.table: t.deleted for t in done} == {
        "webhook_deliveries": 3,
        "jobs (finished)": 1,
        "jobs (dead)": 1,
        "sync_audit": 3,
        "sync_sagas (finished)": 2,
        "sync_inventory_ledger": 2,
        "sync_write_records": 2,
        "sync_changes": 1,
        "sync_reconcile_runs": 1,
        "ops_minute_counts": 1,
    }
    assert ("sync_audit", 3) in progress and ("sync_audit", 1) in progress  # reported batch by batch
    assert all(t.deleted == 0 for t in again)


def test_prune_dry_run_from_the_command_line(db) -> None:
    with db.connect(autocommit=True) as conn:
        _seed(conn)
    env = {**os.environ, "DATABASE_URL": db.dsn, "COLUMNS": "200", "STORESYNC_CONFIG_FILE": os.devnull}
    env.pop("DATABASE_DIRECT_URL", None)
    shown = subprocess.run(
        [sys.executable, "-m", "storesync", "prune", "--dry-run"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert shown.returncode == 0, shown.stderr
    assert "dry run: nothing deleted" in shown.stdout
    assert "sync_inventory_ledger" in shown.stdout and "400 days" in shown.stdout
    with db.connect() as conn:
        assert conn.execute("SELECT count(*) FROM sync_audit").fetchone()[0] == 4
