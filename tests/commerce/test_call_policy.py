"""Who may spend a store's bucket, and how long a call may wait for it (`CallPolicy`): decided
before anything is sent, so no store is needed (the client's URL answers nothing)."""

from __future__ import annotations

import time

import pytest
from pydantic import SecretStr

from storesync.commerce.budget import LocalBudget
from storesync.commerce.client import AdminClient, CallPolicy, call_policy
from storesync.commerce.errors import BudgetBusy
from storesync.config import StoreConfig

SHOP = "parent.myshopify.com"


async def drained_client(available: float) -> tuple[AdminClient, LocalBudget]:
    """A client whose store's bucket (standard: 2,000 points) holds `available` points: the rest
    was granted to calls before it."""
    budget = LocalBudget(margin=0)
    await budget.reserve(SHOP, 2000 - available)
    store = StoreConfig(
        shop=SHOP,
        admin_api_url="http://127.0.0.1:9/admin/api/2026-10/graphql.json",
        access_token=SecretStr("t"),
        webhook_secrets=[SecretStr("s")],
    )
    return AdminClient(store, budget=budget, max_attempts=1, timeout=0.2), budget


async def test_a_call_that_cannot_be_paid_for_within_its_wait_is_refused_unsent():
    client, budget = await drained_client(-1000)  # 10 s of restore owed to calls already granted
    with call_policy(CallPolicy(max_wait=2.0)), pytest.raises(BudgetBusy) as refused:
        await client.execute("ShopInfo", {"locationsFirst": 5})
    assert 5.0 < refused.value.retry_after <= 10.5
    assert client.stats.requests == 0
    assert budget.state(SHOP).level(time.monotonic()) < -900  # nothing was taken


async def test_a_background_call_leaves_the_bottom_quarter_of_the_bucket_to_live_calls():
    client, budget = await drained_client(200)  # a tenth of the bucket: enough for a live call
    with call_policy(CallPolicy(background=True, max_wait=0.5)), pytest.raises(BudgetBusy) as refused:
        await client.execute("ShopInfo", {"locationsFirst": 5})
    # it waits for the bucket to hold its cost above the 500 points kept for live sync
    assert refused.value.retry_after > 2.0
    live = await budget.reserve(SHOP, 10, max_wait=0.5)
    assert live.granted and live.wait == 0.0


async def test_a_reconciliation_pass_waits_for_the_budget_a_product_job_would_be_deferred_for():
    """A pass sent back to the queue reads whole stores again: with live sales keeping the
    bucket low it never finished (bench/reconcile at 10,000 products). Its calls wait, in
    background slices, where another backfill job's are deferred."""
    from storesync.queue import Lane
    from storesync.sync.domain import routing
    from storesync.sync.jobs.registry import job_call_policy
    from storesync.sync.settings import SyncSettings

    settings = SyncSettings(job_budget_wait_s=0.5, pass_budget_wait_s=8.0)
    copy = job_call_policy(routing.JOB_COPY_PRODUCT, Lane.BACKFILL, settings)
    live = job_call_policy(routing.JOB_SALE, Lane.INVENTORY, settings)
    assert copy.background and not live.background and copy.max_wait == live.max_wait == 0.5

    client, _ = await drained_client(300)  # ~3 s of restore before a background call may go
    with call_policy(copy), pytest.raises(BudgetBusy):
        await client.execute("ShopInfo", {"locationsFirst": 5})
    for kind in (routing.JOB_RECONCILE, routing.JOB_RECONCILE_LEVELS):
        client, _ = await drained_client(300)
        started = time.monotonic()
        # paid for, then sent (nothing answers there)
        with call_policy(job_call_policy(kind, Lane.BACKFILL, settings)), pytest.raises(Exception) as sent:
            await client.execute("ShopInfo", {"locationsFirst": 5})
        assert not isinstance(sent.value, BudgetBusy) and client.stats.requests == 1
        assert time.monotonic() - started > 1.0  # it waited for the bucket, under the live share
