"""Operator views of the Admin API side: can we reach each store with its credentials, does the
app have the scopes storesync needs, and what is each store's budget."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx
import psycopg

from storesync.commerce import budget_sql as sql
from storesync.commerce.budget import LocalBudget
from storesync.commerce.client import AdminClient
from storesync.commerce.credentials import NetworkTokens, TokenStore
from storesync.commerce.errors import CommerceError
from storesync.commerce.scopes import missing_scopes
from storesync.config import NetworkConfig, StoreConfig


@dataclass(frozen=True)
class StoreCheck:
    merchant: str
    shop: str
    ok: bool
    detail: str  # shop name and bucket, or the error
    kind: str = "static"
    token_expires_at: datetime | None = None  # None: does not expire, or no token
    scopes: tuple[str, ...] | None = None  # as granted (None: not read)
    missing: list[str] = field(default_factory=list)
    locations: dict[str, str] = field(default_factory=dict)  # location gid -> name (active ones)


async def check_stores(
    network: NetworkConfig, *, token_store: TokenStore | None = None, timeout: float = 10.0
) -> list[StoreCheck]:
    """Per configured store, all at once: a token (obtained or refreshed as the workers would),
    the app's access scopes against the ones storesync needs, then one ShopInfo call."""
    budget = LocalBudget()
    async with httpx.AsyncClient(timeout=timeout) as http:
        tokens = NetworkTokens(network, token_store, http, timeout=timeout, attempts=2)

        async def one(merchant: str, store: StoreConfig) -> StoreCheck:
            base: dict[str, Any] = {"merchant": merchant, "shop": store.shop, "kind": store.credential_kind}
            scopes: tuple[str, ...] | None = None
            try:
                client = AdminClient(
                    store,
                    budget=budget,
                    http=http,
                    timeout=timeout,
                    max_attempts=2,
                    backoff_base=0.2,
                    tokens=tokens.for_store(store),
                )
                granted = await client.execute("AppAccessScopes")
                scopes = tuple(s["handle"] for s in granted["currentAppInstallation"]["accessScopes"])
                result = await client.execute("ShopInfo", {"locationsFirst": 50})
            except CommerceError as err:
                return StoreCheck(
                    **base,
                    ok=False,
                    detail=f"{type(err).__name__}: {err}",
                    token_expires_at=await _expiry(token_store, store),
                    scopes=scopes,
                    missing=missing_scopes(scopes) if scopes is not None else [],
                )
            expires = await _expiry(token_store, store)
            missing = missing_scopes(scopes)
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
                detail, ok = f"the URL answers as {shop['myshopifyDomain']}", False
            else:
                ok = not missing
            locations = {
                loc["id"]: loc["name"] for loc in result["locations"]["nodes"] if loc.get("isActive", True)
            }
            return StoreCheck(
                **base,
                ok=ok,
                detail=detail,
                token_expires_at=expires,
                scopes=scopes,
                missing=missing,
                locations=locations,
            )

        return list(await asyncio.gather(*(one(m.id, s) for m in network.merchants for s in m.stores)))


async def _expiry(token_store: TokenStore | None, store: StoreConfig) -> datetime | None:
    if token_store is None or store.credential_kind == "static":
        return None
    row = await token_store.load(store.shop)
    return row.expires_at if row is not None else None


def list_budgets(conn: psycopg.Connection) -> list[tuple[Any, ...]]:
    return conn.execute(sql.LIST_BUDGETS).fetchall()


async def list_budgets_async(conn: psycopg.AsyncConnection[Any]) -> list[tuple[Any, ...]]:
    """(shop, capacity, restore rate, points now, observed at, calls waiting) per store."""
    cur = await conn.execute(sql.LIST_BUDGETS)
    return await cur.fetchall()
