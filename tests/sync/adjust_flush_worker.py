"""A process that runs the parent's flush of coalesced sale deltas once (`services/adjusts.py`),
for the test that kills it mid-batch. Prints "done" when the flush returns.

    python -m tests.sync.adjust_flush_worker --dsn DSN --url URL --token T --parent SHOP --child SHOP
"""

from __future__ import annotations

import argparse
import asyncio

import psycopg
from pydantic import SecretStr

from storesync.commerce.budget import LocalBudget
from storesync.commerce.client import AdminClient
from storesync.config import StoreConfig
from storesync.db.pools import POOLED_CONNECTION_KWARGS
from storesync.sync.adapters.postgres import Storage
from storesync.sync.adapters.shopify import ShopifyStoreAPI
from storesync.sync.domain.model import StoreRef
from storesync.sync.domain.network import MerchantNetwork
from storesync.sync.services import adjusts


class ParentRuntime:
    """The little of `services.context.Runtime` the parent's flush uses: the parent's store."""

    def __init__(self, api: ShopifyStoreAPI) -> None:
        self._api = api

    def api(self, shop: str) -> ShopifyStoreAPI:
        assert shop == self._api.shop, shop
        return self._api


def network(parent: str, children: list[str], location_maps: dict | None = None) -> MerchantNetwork:
    return MerchantNetwork(
        "m",
        StoreRef(parent, "parent", "m"),
        tuple(StoreRef(c, "child", "m") for c in children),
        location_maps=location_maps or {},
    )


async def main(args: argparse.Namespace) -> None:
    store = StoreConfig(
        shop=args.parent,
        admin_api_url=args.url,
        access_token=SecretStr(args.token),
        webhook_secrets=[SecretStr("unused")],
    )
    async with (
        AdminClient(store, budget=LocalBudget(), timeout=120.0, max_attempts=1) as client,
        await psycopg.AsyncConnection.connect(
            args.dsn, **{**POOLED_CONNECTION_KWARGS, "autocommit": True}
        ) as conn,
    ):
        await adjusts.flush(
            ParentRuntime(ShopifyStoreAPI(client)), Storage(conn), network(args.parent, [args.child])
        )
    print("done", flush=True)


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    for name in ("dsn", "url", "token", "parent", "child"):
        p.add_argument(f"--{name}", required=True)
    asyncio.run(main(p.parse_args()))
