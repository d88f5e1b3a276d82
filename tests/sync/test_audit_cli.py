"""`storesync audit`: the audit trail as an operator queries it (real Postgres, real process)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import psycopg

from storesync.sync.adapters.postgres import PgAudit
from storesync.sync.domain.audit import AuditRecord


def _record_trail(dsn: str) -> None:
    t0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
    records = [
        AuditRecord(
            "child-a.myshopify.com",
            "product",
            "gid://shopify/Product/1",
            "product_set",
            {"title": "Old"},
            {"title": "New"},
            "delivery:d-1",
            at=t0,
        ),
        AuditRecord(
            "child-b.myshopify.com",
            "product",
            "gid://shopify/Product/1",
            "product_set",
            {"title": "Old"},
            {"title": "New"},
            "delivery:d-1",
            at=t0 + timedelta(seconds=1),
        ),
        AuditRecord(
            "parent.myshopify.com",
            "inventory_level",
            "gid://shopify/InventoryItem/7",
            "inventory_adjust",
            {"available": 5},
            {"available": 4},
            "job:42",
            at=t0 + timedelta(seconds=2),
            detail="sale on child-a",
        ),
    ]

    async def write():
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
            for rec in records:
                await PgAudit(conn).record(rec)

    asyncio.run(write())


def _audit(dsn: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "DATABASE_URL": dsn, "STORESYNC_LOG_LEVEL": "warning", "COLUMNS": "200"}
    env.pop("DATABASE_DIRECT_URL", None)
    return subprocess.run(
        [sys.executable, "-m", "storesync", "audit", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_audit_lists_writes_newest_first_and_filters_by_store_object_and_cause(db):
    _record_trail(db.dsn)

    everything = _audit(db.dsn, "--json")
    assert everything.returncode == 0, everything.stderr
    rows = [json.loads(line) for line in everything.stdout.splitlines()]
    assert [r["shop"] for r in rows] == [
        "parent.myshopify.com",
        "child-b.myshopify.com",
        "child-a.myshopify.com",
    ]
    assert rows[0]["before"] == {"available": 5} and rows[0]["after"] == {"available": 4}
    assert rows[0]["cause"] == "job:42" and rows[0]["detail"] == "sale on child-a"

    by_cause = [
        json.loads(x) for x in _audit(db.dsn, "--json", "--cause", "delivery:d-1").stdout.splitlines()
    ]
    assert {r["shop"] for r in by_cause} == {"child-a.myshopify.com", "child-b.myshopify.com"}
    by_store = [
        json.loads(x)
        for x in _audit(db.dsn, "--json", "--store", "child-a.myshopify.com").stdout.splitlines()
    ]
    assert [r["after"] for r in by_store] == [{"title": "New"}]
    by_object = _audit(db.dsn, "--json", "--object", "gid://shopify/InventoryItem/7").stdout.splitlines()
    assert len(by_object) == 1
    assert _audit(db.dsn, "--json", "--limit", "2").stdout.count("\n") == 2

    table = _audit(db.dsn, "--store", "parent.myshopify.com")
    assert table.returncode == 0, table.stderr
    assert (
        "1 audit entries" in table.stdout and "inventory_adjust" in table.stdout and "job:42" in table.stdout
    )


def test_audit_rejects_a_bad_limit_with_a_clear_error(db):
    bad = _audit(db.dsn, "--limit", "0")
    assert bad.returncode == 2
    assert "--limit" in bad.stderr


def test_store_data_that_looks_like_rich_markup_is_printed_as_it_is(db):
    """A product titled `[/x]` once crashed `storesync audit` (rich read it as a closing tag)."""

    async def write():
        async with await psycopg.AsyncConnection.connect(db.dsn, autocommit=True) as conn:
            await PgAudit(conn).record(
                AuditRecord(
                    "child-a.myshopify.com",
                    "product",
                    "[bold]gid://shopify/Product/9",
                    "product_set",
                    {"title": "[/x]"},
                    {"title": "[red]New[/red] [/]"},
                    "delivery:[/x]",
                )
            )

    asyncio.run(write())
    table = _audit(db.dsn)
    assert table.returncode == 0, table.stderr
    for shown in ("[bold]gid://shopify/Product/9", '"[/x]"', "[red]New[/red] [/]", "delivery:[/x]"):
        assert shown in table.stdout, shown
    # Other commands print store data the same way: an unknown store named like markup.
    resumed = subprocess.run(
        [sys.executable, "-m", "storesync", "network", "resume", "[/x]"],
        env={**os.environ, "DATABASE_URL": db.dsn, "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert resumed.returncode == 1 and "no store '[/x]'" in resumed.stderr, resumed.stderr
