"""Operator views of the Admin API side: can we reach each store, and what is its budget."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import psycopg

from storesync.commerce import budget_sql as sql
from storesync.commerce.budget import LocalBudget
from storesync.commerce.client import AdminClient
from storesync.commerce.errors import CommerceError
from storesync.config import NetworkConfig, StoreConfig


@dataclass(frozen=True)
class StoreCheck:
    merchant: str
    shop: str
    ok: bool
    detail: str  # shop name and bucket, or the error


async def check_stores(network: NetworkConfig, *, timeout: float = 10.0) -> list[StoreCheck]:
    """One ShopInfo call per configured store, all at once."""
    budget = LocalBudget()

    async def one(merchant: str, store: StoreConfig) -> StoreCheck:
        async with AdminClient(
            store, budget=budget, timeout=timeout, max_attempts=2, backoff_base=0.2
        ) as client:
            try:
                result = await client.execute("ShopInfo", {"locationsFirst": 50})
            except CommerceError as err:
                return StoreCheck(merchant, store.shop, False, f"{type(err).__name__}: {err}")
        shop = result["shop"]
        status = result.cost.throttle if result.cost else None
        bucket = (
            (
                f"bucket {status.currently_available:.0f}/{status.maximum_available:.0f} points, "
                f"{status.restore_rate:.0f}/s"
            )
            if status
            else "no cost data"
        )
        detail = f"{shop['name']} ({len(result['locations']['nodes'])} locations, {bucket})"
        if shop["myshopifyDomain"] != store.shop:
            return StoreCheck(merchant, store.shop, False, f"the URL answers as {shop['myshopifyDomain']}")
        return StoreCheck(merchant, store.shop, True, detail)

    return list(await asyncio.gather(*(one(m.id, s) for m in network.merchants for s in m.stores)))


def list_budgets(conn: psycopg.Connection) -> list[tuple[Any, ...]]:
    return conn.execute(sql.LIST_BUDGETS).fetchall()
