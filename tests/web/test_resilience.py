"""The database slow, saturated, restarted or behind PgBouncer: 503 fast, then recovery, nothing lost."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import psutil
import psycopg
import pytest
from pydantic import SecretStr

from storesync.config import Settings
from storesync.db.embedded import EmbeddedPostgres
from storesync.db.migrate import migrate
from tests.web.conftest import CHILD, ROOT_DIR, counts, serving, webhook

START_DETACHED = """
import sys
from pathlib import Path
from storesync.db.embedded import EmbeddedPostgres
print(EmbeddedPostgres(Path(sys.argv[1])).start(detached=True), flush=True)
"""


def _start_detached(pgdata: Path) -> str:
    """Start a dedicated embedded server from another process (so this one can stop and start it)."""
    proc = subprocess.run(
        [sys.executable, "-c", START_DETACHED, str(pgdata)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip().splitlines()[-1]


async def test_saturated_or_slow_database_answers_503_well_within_shopifys_5_seconds(db) -> None:
    settings = db.settings.model_copy(
        update={"pool_max_size": 1, "pool_timeout": 0.5, "statement_timeout_ms": 1000}
    )
    deliveries = [webhook("orders/create", {"id": n}, shop=CHILD) for n in range(2)]
    with serving(settings) as s, db.connect() as locker:
        # Someone holds the table: the first request blocks inside its transaction until the
        # statement timeout; the second finds the only connection taken and waits for the pool.
        locker.execute("LOCK TABLE webhook_deliveries IN EXCLUSIVE MODE")
        async with httpx.AsyncClient(timeout=10) as client:
            started = time.monotonic()
            first = asyncio.ensure_future(
                client.post(s.webhook_url, content=deliveries[0][1], headers=deliveries[0][0])
            )
            await asyncio.sleep(0.1)
            second = await client.post(s.webhook_url, content=deliveries[1][1], headers=deliveries[1][0])
            first = await first
            elapsed = time.monotonic() - started
            assert (first.status_code, first.json()["reason"]) == (503, "statement_timeout")
            assert (second.status_code, second.json()["reason"]) == (503, "pool_exhausted")
            assert elapsed < 3
            metrics = (await client.get(s.ops_url + "/metrics")).text
            for reason in ("statement_timeout", "pool_exhausted"):
                assert f'storesync_webhook_unavailable_total{{reason="{reason}"}} 1.0' in metrics
            locker.rollback()
            # Shopify retries: now both are recorded.
            for headers, raw in deliveries:
                assert (await client.post(s.webhook_url, content=raw, headers=headers)).status_code == 200
    with db.connect() as conn:
        assert counts(conn) == (2, 2)


def test_request_budget_bounds_a_stuck_database_even_without_a_statement_timeout(db) -> None:
    settings = db.settings.model_copy(update={"statement_timeout_ms": 0})
    with serving(settings, request_budget_s=0.5) as s, db.connect() as locker:
        locker.execute("LOCK TABLE webhook_deliveries IN EXCLUSIVE MODE")
        headers, raw = webhook()
        started = time.monotonic()
        r = httpx.post(s.webhook_url, content=raw, headers=headers, timeout=10)
        assert (r.status_code, r.json()["reason"]) == (503, "timeout")
        assert time.monotonic() - started < 2
        locker.rollback()
        assert httpx.post(s.webhook_url, content=raw, headers=headers, timeout=10).status_code == 200
    with db.connect() as conn:
        assert counts(conn) == (1, 1)


@pytest.mark.slow
async def test_postgres_restart_during_traffic_gives_503s_then_recovers_with_nothing_lost() -> None:
    # Not under pytest's tmp_path: pytest resets its root to mode 0700 whenever another test
    # session starts, and the embedded server runs as an unprivileged user that must reach pgdata.
    pgdata = ROOT_DIR / ".storesync" / f"test-web-restart-{uuid.uuid4().hex[:8]}"
    dsn = _start_detached(pgdata)
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            migrate(conn)
        settings = Settings.load(
            database_url=SecretStr(dsn), pool_min_size=0, pool_max_size=4, pool_timeout=0.5, connect_timeout=2
        )
        sent: list[str] = []
        statuses: list[int] = []
        slowest = 0.0
        stop_sending = asyncio.Event()

        async def sender(client: httpx.AsyncClient, url: str) -> None:
            nonlocal slowest
            while not stop_sending.is_set():
                webhook_id = str(uuid.uuid4())
                headers, raw = webhook("orders/create", {"id": webhook_id}, shop=CHILD, webhook_id=webhook_id)
                while True:  # like Shopify: retry until answered 200
                    started = time.monotonic()
                    r = await client.post(url, content=raw, headers=headers)
                    slowest = max(slowest, time.monotonic() - started)
                    statuses.append(r.status_code)
                    if r.status_code == 200:
                        sent.append(webhook_id)
                        break
                    assert r.status_code == 503, r.text
                    await asyncio.sleep(0.05)

        with serving(settings, readiness_cache_s=0) as s:
            async with httpx.AsyncClient(timeout=10) as client:
                senders = [asyncio.ensure_future(sender(client, s.webhook_url)) for _ in range(4)]
                await asyncio.sleep(0.5)
                before = len(sent)
                await asyncio.to_thread(EmbeddedPostgres(pgdata).stop)
                await asyncio.sleep(0.5)
                down = await client.get(s.url + "/readyz")
                await asyncio.to_thread(_start_detached, pgdata)
                restarted = time.monotonic()
                # Recovery: new deliveries are accepted again within a bounded time.
                while len(sent) < before + 40 and time.monotonic() - restarted < 30:
                    await asyncio.sleep(0.1)
                recovered_after = time.monotonic() - restarted
                stop_sending.set()
                await asyncio.wait_for(asyncio.gather(*senders), 20)
                up = await client.get(s.url + "/readyz")
        assert before > 0
        assert down.status_code == 503 and up.status_code == 200
        assert 503 in statuses and set(statuses) <= {200, 503}
        assert recovered_after < 30
        assert slowest < 5
        with psycopg.connect(dsn) as conn:
            recorded = [r[0] for r in conn.execute("SELECT webhook_id FROM webhook_deliveries")]
            jobs = [r[0] for r in conn.execute("SELECT payload->>'delivery_id' FROM jobs")]
        assert (
            sorted(recorded) == sorted(sent) == sorted(jobs)
        )  # each exactly once: nothing lost, nothing doubled
    finally:
        EmbeddedPostgres(pgdata).stop()
        shutil.rmtree(pgdata, ignore_errors=True)


async def test_pooled_path_through_pgbouncer_transaction_mode(db, pgbouncer_dsn) -> None:
    settings = Settings.load(
        database_url=SecretStr(pgbouncer_dsn),
        database_direct_url=SecretStr(db.dsn),
        pool_min_size=0,
        pool_max_size=8,
    )
    deliveries = [webhook("orders/create", {"id": n}, shop=CHILD) for n in range(40)]
    with serving(settings) as s:
        async with httpx.AsyncClient(timeout=20, limits=httpx.Limits(max_connections=20)) as client:
            # Each delivery twice, concurrently: far past psycopg's prepare threshold, with
            # transactions multiplexed over PgBouncer's few server connections.
            replies = await asyncio.gather(
                *(client.post(s.webhook_url, content=raw, headers=headers) for headers, raw in deliveries * 2)
            )
            ready = await client.get(s.url + "/readyz")
    assert [r.status_code for r in replies] == [200] * 80
    assert sorted(r.json()["outcome"] for r in replies).count("duplicate") == 40
    assert ready.status_code == 200, ready.text
    with db.connect() as conn:
        assert counts(conn) == (40, 40)


def _signal_server(pgdata: Path, sig: signal.Signals) -> None:
    pid = EmbeddedPostgres(pgdata).status().pid
    assert pid, "the dedicated server is not running"
    postmaster = psutil.Process(pid)
    for proc in [postmaster, *postmaster.children(recursive=True)]:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.send_signal(sig)


@pytest.mark.slow
async def test_frozen_postgres_is_answered_503_within_the_budget_then_recovers() -> None:
    """A server that accepts nothing and answers nothing (SIGSTOP: like a network partition):
    neither the webhook nor /readyz may wait on it past their budgets."""
    pgdata = ROOT_DIR / ".storesync" / f"test-web-freeze-{uuid.uuid4().hex[:8]}"
    dsn = _start_detached(pgdata)
    frozen = False
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            migrate(conn)
        settings = Settings.load(
            database_url=SecretStr(dsn), pool_min_size=0, pool_max_size=4, pool_timeout=0.5, connect_timeout=2
        )
        deliveries = [webhook("orders/create", {"id": n}, shop=CHILD) for n in range(4)]
        with serving(settings, request_budget_s=1.0, readiness_timeout_s=1.0) as s:
            async with httpx.AsyncClient(timeout=15) as client:
                headers, raw = deliveries[0]
                assert (await client.post(s.webhook_url, content=raw, headers=headers)).status_code == 200
                await asyncio.to_thread(_signal_server, pgdata, signal.SIGSTOP)
                frozen = True
                started = time.monotonic()
                replies = await asyncio.gather(
                    *(
                        client.post(s.webhook_url, content=raw, headers=headers)
                        for headers, raw in deliveries[1:]
                    )
                )
                ready = await client.get(s.url + "/readyz")
                elapsed = time.monotonic() - started
                assert [r.status_code for r in replies] == [503] * 3
                assert ready.status_code == 503
                assert elapsed < 3.5  # 1 s budget each, concurrently, plus 1 s for /readyz
                await asyncio.to_thread(_signal_server, pgdata, signal.SIGCONT)
                frozen = False
                pending, deadline = deliveries[1:], time.monotonic() + 20
                while pending and time.monotonic() < deadline:  # Shopify retries
                    answers = [
                        await client.post(s.webhook_url, content=raw, headers=headers)
                        for headers, raw in pending
                    ]
                    pending = [d for d, r in zip(pending, answers, strict=True) if r.status_code != 200]
                    await asyncio.sleep(0.1)
                assert not pending
        with psycopg.connect(dsn) as conn:
            assert counts(conn) == (4, 4)
    finally:
        if frozen:
            _signal_server(pgdata, signal.SIGCONT)
        EmbeddedPostgres(pgdata).stop()
        shutil.rmtree(pgdata, ignore_errors=True)
