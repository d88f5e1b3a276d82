"""The composition root: what a process needs to run the sync engine, built in one place.

- `SyncRuntime`: the network (from storesync.toml, with the access tokens `storesync network
  apply` stored encrypted), one Admin API client per store sharing the Postgres rate-limit budget,
  each merchant's sync policy, the store adapters (`adapters/shopify.py`);
- `ProcessRuntime`: a worker's runtime, built on its first job on the worker's pooled path;
- `worker_registry`: the job handlers' registry a worker is given (`jobs/registry.py`), and
  `resume_sagas_at_start`: the unfinished sagas re-enqueued as jobs;
- `cli_runtime`: a runtime for one operator command (`storesync link|backfill|reconcile|webhooks`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime

import psycopg
from psycopg_pool import AsyncConnectionPool
from pydantic import SecretStr

from storesync.commerce.clients import StoreClients
from storesync.commerce.credentials import PgTokenStore
from storesync.config import NetworkConfig, Settings, StoreConfig
from storesync.db import credentials_sql
from storesync.db.credentials import load_cipher
from storesync.db.pools import async_connect_pooled, async_pooled_pool, connect_pooled
from storesync.queue.handlers import HandlerRegistry, JobContext
from storesync.sync.adapters.postgres import Storage
from storesync.sync.adapters.shopify import (
    BulkCatalogScan,
    ShopifyCatalogScan,
    ShopifyCollections,
    ShopifyStoreAPI,
    sync_store_api,
)
from storesync.sync.domain.catalog import SyncPolicy
from storesync.sync.domain.model import StoreRef
from storesync.sync.domain.network import MerchantNetwork, Network
from storesync.sync.jobs.registry import build_registry
from storesync.sync.services.context import Runtime
from storesync.sync.services.copies import resume_unfinished_sagas
from storesync.sync.settings import SyncSettings


def network_with_credentials(cfg: NetworkConfig, conn: psycopg.Connection) -> NetworkConfig:
    """`cfg` with each static store's API URL and token taken from the database where `network
    apply` stored them (decrypted with STORESYNC_ENCRYPTION_KEY; ConfigError naming it if
    missing). The other stores' tokens are issued: `token_store` reads them when needed."""
    if not credentials_sql.has_credentials(conn):
        return cfg
    creds = credentials_sql.static_tokens(conn, load_cipher())

    def store(s: StoreConfig) -> StoreConfig:
        if s.shop not in creds or s.credential_kind != "static":
            return s
        url, token = creds[s.shop]
        return s.model_copy(
            update={
                "admin_api_url": url or s.admin_api_url,
                "access_token": SecretStr(token),
                "credentials": None,
            }
        )

    return cfg.model_copy(
        update={
            "merchants": [
                m.model_copy(update={"parent": store(m.parent), "children": [store(c) for c in m.children]})
                for m in cfg.merchants
            ]
        }
    )


def load_network_config(settings: Settings) -> NetworkConfig:
    cfg = NetworkConfig.load(settings.config_file)
    with connect_pooled(settings) as conn:
        return network_with_credentials(cfg, conn)


def token_store(config: NetworkConfig, pool: AsyncConnectionPool | None) -> PgTokenStore | None:
    """The shared token store when a store's tokens are issued by a grant (None: all static)."""
    if pool is None or all(s.credential_kind == "static" for m in config.merchants for s in m.stores):
        return None
    return PgTokenStore(pool, load_cipher())


class SyncRuntime:
    """`services.context.Runtime` for a process: the stores of the configured network."""

    def __init__(
        self,
        settings: Settings,
        config: NetworkConfig,
        *,
        pool: AsyncConnectionPool,
        budget_pool: AsyncConnectionPool | None = None,
        sync_settings: SyncSettings | None = None,
    ) -> None:
        self.settings = settings
        self.sync_settings = sync_settings or SyncSettings.load()
        self.config = config
        self.pool = pool  # pooled path: per-job storage connections
        # The shared rate-limit budget's short statements. A pool of their own: a job holds a
        # storage connection while its API calls reserve budget, so one shared pool could be
        # drained by jobs that each wait for one more connection.
        self.budget_pool = budget_pool or pool
        self.network = Network.from_config(config)
        self.clients = StoreClients(
            config,
            pool=self.budget_pool,
            max_attempts=self.sync_settings.admin_max_attempts,
            token_store=token_store(config, self.budget_pool),
        )
        self.policies = {m.id: SyncPolicy.from_mapping(m.sync_policy_mapping()) for m in config.merchants}
        self._apis: dict[str, ShopifyStoreAPI] = {}

    def merchant(self, merchant_id: str) -> MerchantNetwork:
        return self.network.merchant(merchant_id)

    def of_shop(self, shop: str) -> tuple[MerchantNetwork, StoreRef]:
        return self.network.of_shop(shop)

    def policy(self, merchant_id: str) -> SyncPolicy:
        return self.policies[merchant_id]

    def api(self, shop: str) -> ShopifyStoreAPI:
        if shop not in self._apis:
            net, _ = self.network.of_shop(shop)
            self._apis[shop] = sync_store_api(
                self.clients.client(shop),
                metafield_namespaces=self.policies[net.merchant_id].metafield_namespaces,
            )
        return self._apis[shop]

    def apis(self, net: MerchantNetwork) -> dict[str, ShopifyStoreAPI]:
        return {s.shop: self.api(s.shop) for s in net.stores}

    def scans(
        self, net: MerchantNetwork, *, updated_since: datetime | None = None
    ) -> dict[str, ShopifyCatalogScan]:
        """Whole-store reads by bulk query (paged when a store's bulk query is unavailable);
        `updated_since`: only the products updated since then (levels: all)."""
        return {s.shop: BulkCatalogScan(self.api(s.shop), updated_since=updated_since) for s in net.stores}

    def collections(self, shop: str) -> ShopifyCollections:
        return ShopifyCollections(self.clients.client(shop))

    async def aclose(self) -> None:
        await self.clients.aclose()
        if self.budget_pool is not self.pool:
            await self.budget_pool.close()


class ProcessRuntime:
    """A worker process's runtime, built on its first job (on the worker's pooled path, which
    exists once the worker runs) and kept for the process's life."""

    def __init__(self, settings: Settings, sync_settings: SyncSettings | None = None) -> None:
        self.settings = settings
        self.sync_settings = sync_settings
        self._runtime: SyncRuntime | None = None
        self._lock = asyncio.Lock()

    async def get(self, ctx: JobContext) -> Runtime:
        async with self._lock:
            if self._runtime is None:
                config = await asyncio.to_thread(load_network_config, self.settings)
                budget_pool = async_pooled_pool(
                    self.settings, name="storesync-budget", min_size=1, max_size=4
                )
                await budget_pool.open(wait=False)
                self._runtime = SyncRuntime(
                    self.settings,
                    config,
                    pool=ctx.pool,
                    budget_pool=budget_pool,
                    sync_settings=self.sync_settings,
                )
            return self._runtime


def worker_registry(settings: Settings) -> HandlerRegistry:
    """The registry `storesync worker` runs: every sync job kind, on this process's runtime."""
    sync_settings = SyncSettings.load()
    return build_registry(sync_settings, ProcessRuntime(settings, sync_settings).get)


async def resume_sagas_at_start(settings: Settings, network_cfg: NetworkConfig, *, limit: int = 1000) -> int:
    """At worker start: one resume job per unfinished saga (`services.copies.resume_unfinished_sagas`),
    on the pooled path."""
    async with await async_connect_pooled(settings) as conn:
        return await resume_unfinished_sagas(
            Storage(conn),
            Network.from_config(network_cfg),
            SyncSettings.load().backfill_max_attempts,
            limit=limit,
        )


@asynccontextmanager
async def cli_runtime(
    settings: Settings, *, sync_settings: SyncSettings | None = None, max_connections: int = 24
) -> AsyncIterator[SyncRuntime]:
    """A runtime for a command: its own small pool (budget and sync tables) and API clients."""
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per API call drowns the report
    pool = async_pooled_pool(
        settings, name="storesync-cli", min_size=1, max_size=max(max_connections, settings.pool_max_size)
    )
    await pool.open(wait=True, timeout=settings.connect_timeout * 2)
    try:
        config = await asyncio.to_thread(load_network_config, settings)
        rt = SyncRuntime(settings, config, pool=pool, sync_settings=sync_settings)
        try:
            yield rt
        finally:
            await rt.aclose()
    finally:
        await pool.close()
