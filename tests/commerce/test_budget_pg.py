"""The per-store budget shared through Postgres (migration 0004), on the pooled path."""

from __future__ import annotations

import asyncio
import itertools

import pytest
from pydantic import SecretStr

from storesync.commerce.budget import PostgresBudget
from storesync.commerce.budget_sql import BUDGET_ROW
from storesync.commerce.throttle import ThrottleStatus
from storesync.config import Settings
from storesync.db.pools import async_pooled_pool

SHOP = "budget-test.myshopify.com"


@pytest.fixture
async def pool(db):
    p = async_pooled_pool(db.settings, name="budget-test", min_size=0, max_size=8)
    await p.open(wait=True)
    try:
        yield p
    finally:
        await p.close()


async def test_first_use_creates_a_standard_bucket_and_grants_at_once(pool, db):
    budget = PostgresBudget(pool, margin=0)
    r = await budget.reserve(SHOP, 1500)
    assert r.granted and r.wait == 0
    with db.connect() as conn:
        capacity, rate, available, _ = conn.execute(BUDGET_ROW, {"shop": SHOP}).fetchone()
    assert (capacity, rate) == (2000, 100)
    assert available == pytest.approx(500, abs=1)


async def test_concurrent_reservations_from_many_connections_queue_without_overspending(pool, db):
    """Twenty callers at once on eight connections: the row lock serialises them, so their send
    times form a queue spaced by exactly cost / restore rate: each is paid for once, none twice."""
    budget = PostgresBudget(pool, margin=0)
    await budget.reserve(SHOP, 2000)  # empty the bucket
    grants = await asyncio.gather(*(budget.reserve(SHOP, 10) for _ in range(20)))
    assert all(g.granted and g.wait > 0 for g in grants)
    with db.connect() as conn:
        send_times = [
            row[0]
            for row in conn.execute(
                "SELECT extract(epoch FROM send_at)::float8 FROM api_budget_reservations "
                "WHERE cost = 10 ORDER BY send_at"
            ).fetchall()
        ]
    assert len(send_times) == 20
    gaps = [b - a for a, b in itertools.pairwise(send_times)]
    assert gaps == pytest.approx([0.1] * 19, abs=1e-3)


async def test_settle_adopts_throttle_status_minus_reservations_still_waiting(pool, db):
    """The server's currentlyAvailable already includes calls that went out, but not the ones
    still waiting for their turn: only those are subtracted."""
    budget = PostgresBudget(pool, margin=0)
    await budget.reserve(SHOP, 1000)  # sent at once: the server has seen it
    mine = await budget.reserve(SHOP, 10)
    waiting = await budget.reserve(SHOP, 1500)  # 990 left: waits ~5 s before going out
    assert waiting.wait == pytest.approx(5.1, abs=0.1)
    await budget.settle(mine, charged=10, status=ThrottleStatus(4000, 1000, 200))
    with db.connect() as conn:
        capacity, rate, available, _ = conn.execute(BUDGET_ROW, {"shop": SHOP}).fetchone()
    assert (capacity, rate) == (4000, 200)
    assert available == pytest.approx(1000 - 1500, abs=2)


async def test_refused_reservation_takes_nothing(pool, db):
    budget = PostgresBudget(pool, margin=0)
    await budget.reserve(SHOP, 2000)
    r = await budget.reserve(SHOP, 1000, max_wait=1.0)
    assert not r.granted and r.wait == pytest.approx(10, abs=0.1)
    with db.connect() as conn:
        available = conn.execute(BUDGET_ROW, {"shop": SHOP}).fetchone()[2]
    assert available > -1


async def test_expired_reservations_of_dead_callers_stop_counting(pool, db):
    budget = PostgresBudget(pool, reservation_ttl=0.0)
    await budget.reserve(SHOP, 500)  # never settled: its process "died"
    mine = await budget.reserve(SHOP, 10)
    await asyncio.sleep(0.05)
    await budget.settle(mine, charged=10, status=ThrottleStatus(2000, 1200, 100))
    with db.connect() as conn:
        available = conn.execute(BUDGET_ROW, {"shop": SHOP}).fetchone()[2]
        left = conn.execute("SELECT count(*) FROM api_budget_reservations").fetchone()[0]
    assert available == pytest.approx(1200, abs=2)
    assert left == 0


@pytest.mark.pgbouncer
async def test_budget_runs_through_pgbouncer_transaction_mode(pgbouncer_dsn, db):
    settings = Settings.load(
        database_url=SecretStr(pgbouncer_dsn),
        database_direct_url=SecretStr(db.dsn),
        pool_min_size=0,
        pool_max_size=4,
    )
    p = async_pooled_pool(settings, name="budget-bouncer")
    await p.open(wait=True)
    try:
        budget = PostgresBudget(p, margin=0)
        grants = [await budget.reserve(SHOP, 500) for _ in range(6)]  # > 5: prepared statements would break
        for g in grants:
            await budget.settle(g, charged=500, status=None)
        assert [g.wait for g in grants[:4]] == [0, 0, 0, 0]
        assert grants[5].wait == pytest.approx(10, abs=0.2)
    finally:
        await p.close()
