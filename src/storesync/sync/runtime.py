"""What a worker process needs to run sync jobs: the network (from storesync.toml, with the
access tokens `storesync network apply` stored encrypted), one Admin API client per store
sharing the Postgres rate-limit budget, each merchant's sync policy, and per-job storage
adapters on an autocommit connection of the pooled path.

Paused stores. A store whose app was uninstalled (`app/uninstalled`) or whose token is refused
(401/403/402/423 -> `StoreUnauthorized`) is set `status = 'paused'` with the reason. A job that
would call a paused store does not fail or retry: it is *parked* - re-enqueued unchanged, tagged
`parked_for = <shop>`, due `STORESYNC_SYNC_PAUSE_RECHECK_S` later (10 min) - and re-parked while
the store stays paused. `storesync network resume SHOP` makes it active and its parked jobs due
at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated

import psycopg
from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from storesync.commerce.store_api import ShopifyStoreAPI, StoreClients
from storesync.config import EnvironmentSettings, NetworkConfig, Settings
from storesync.db import network_sql
from storesync.logs import get_logger
from storesync.queue.enqueue import JobSpec, Lane, enqueue_async
from storesync.sync.catalog import SyncPolicy
from storesync.sync.model import LinkMap
from storesync.sync.network import MerchantNetwork, Network
from storesync.sync.shopify_adapter import ShopifyCatalogScan, SyncStoreAPI
from storesync.sync.store_pg import PgAppliedVersions, PgAudit, PgLedger, PgLinks, PgStepLog, PgWriteRecords

log = get_logger("storesync.sync")


class SyncSettings(EnvironmentSettings):
    """Sync wiring knobs (`STORESYNC_SYNC_*`)."""

    model_config = SettingsConfigDict(env_prefix="STORESYNC_SYNC_", extra="ignore", frozen=True)

    # Periodic reconciliation of every merchant (seconds).
    reconcile_every_s: Annotated[float, Field(gt=0)] = 900.0
    # How often `sync.prune` deletes what is past its retention (seconds; `storesync.retention`).
    prune_every_s: Annotated[float, Field(gt=0)] = 3600.0
    # A parked job of a paused store looks again after this long (seconds).
    pause_recheck_s: Annotated[float, Field(gt=0)] = 600.0
    # Attempts of one Admin API call inside a job (5xx, network) before the job itself retries.
    admin_max_attempts: Annotated[int, Field(ge=1, le=20)] = 5
    # Attempts of a copy-product (backfill) job; a step still failing on the last one compensates.
    backfill_max_attempts: Annotated[int, Field(ge=1, le=50)] = 5
    # After a backfill, its copies whose variants are still not linked (their products/create
    # webhook lost) are read and linked by a job this much later (seconds).
    link_pending_after_s: Annotated[float, Field(ge=0)] = 30.0


def network_with_credentials(cfg: NetworkConfig, conn: psycopg.Connection) -> NetworkConfig:
    """`cfg` with each static store's API URL and token taken from the database where `network
    apply` stored them (decrypted with STORESYNC_ENCRYPTION_KEY; ConfigError naming it if
    missing). The other stores' tokens are issued: `token_store` reads them when needed."""
    from storesync.db import credentials_sql

    if not credentials_sql.has_credentials(conn):
        return cfg
    from storesync.db.credentials import load_cipher

    creds = credentials_sql.static_tokens(conn, load_cipher())

    def store(s):
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
    with psycopg.connect(
        settings.pooled_dsn, prepare_threshold=None, autocommit=True, connect_timeout=settings.connect_timeout
    ) as conn:
        return network_with_credentials(cfg, conn)


def token_store(config: NetworkConfig, pool):
    """The shared token store when a store's tokens are issued by a grant (None: all static)."""
    if pool is None or all(s.credential_kind == "static" for m in config.merchants for s in m.stores):
        return None
    from storesync.commerce.credentials import PgTokenStore
    from storesync.db.credentials import load_cipher

    return PgTokenStore(pool, load_cipher())


@dataclass
class Storage:
    """The domain's storage ports on one autocommit connection (each call commits by itself)."""

    conn: psycopg.AsyncConnection

    def __post_init__(self) -> None:
        self.links = PgLinks(self.conn)
        self.ledger = PgLedger(self.conn)
        self.writes = PgWriteRecords(self.conn)
        self.versions = PgAppliedVersions(self.conn)
        self.steps = PgStepLog(self.conn)
        self.audit = PgAudit(self.conn)


class SerializedStorage:
    """Write records and audit of one `Storage` shared by concurrent tasks: their statements
    take turns on the one connection while the tasks' store calls overlap."""

    def __init__(self, st: Storage) -> None:
        self._st = st
        self._lock = asyncio.Lock()
        self.writes = _Locked(st.writes, self._lock)
        self.audit = _Locked(st.audit, self._lock)


class _Locked:
    def __init__(self, target, lock: asyncio.Lock) -> None:
        self._target, self._lock = target, lock

    def __getattr__(self, name: str):
        method = getattr(self._target, name)

        async def call(*args, **kwargs):
            async with self._lock:
                return await method(*args, **kwargs)

        return call


class StorePaused(Exception):
    """A job needs a paused store; it is parked, not failed."""

    def __init__(self, shop: str, reason: str) -> None:
        super().__init__(f"{shop} is paused: {reason}")
        self.shop, self.reason = shop, reason


class SyncRuntime:
    def __init__(
        self,
        settings: Settings,
        config: NetworkConfig,
        *,
        pool=None,
        budget_pool=None,
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

    def of_shop(self, shop: str):
        return self.network.of_shop(shop)

    def policy(self, merchant_id: str) -> SyncPolicy:
        return self.policies[merchant_id]

    def api(self, shop: str) -> SyncStoreAPI:
        if shop not in self._apis:
            self._apis[shop] = SyncStoreAPI(self.clients.client(shop))
        return self._apis[shop]

    def apis(self, net: MerchantNetwork) -> dict[str, ShopifyStoreAPI]:
        return {s.shop: self.api(s.shop) for s in net.stores}

    def scans(self, net: MerchantNetwork) -> dict[str, ShopifyCatalogScan]:
        return {s.shop: ShopifyCatalogScan(self.api(s.shop)) for s in net.stores}

    async def aclose(self) -> None:
        await self.clients.aclose()
        if self.budget_pool is not None and self.budget_pool is not self.pool:
            await self.budget_pool.close()


@asynccontextmanager
async def job_storage(pool) -> AsyncIterator[Storage]:
    async with pool.connection() as conn:
        await conn.set_autocommit(True)
        try:
            yield Storage(conn)
        finally:
            if not conn.closed:
                await conn.set_autocommit(False)


async def child_links(
    conn: psycopg.AsyncConnection,
    child_shop: str,
    *,
    products: Iterable[str] = (),
    variants: Iterable[str] = (),
    items: Iterable[str] = (),
    collections: bool = False,
) -> LinkMap:
    """The links of `child_shop` for these child products, variants and inventory items only
    (and its collection links if `collections`): a webhook needs a handful, not the whole map
    (thousands of rows in a large catalog)."""
    from psycopg.rows import dict_row

    from storesync.sync.store_pg import _link
    from storesync.sync.wiring_sql import CHILD_LINKS_SUBSET

    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            CHILD_LINKS_SUBSET,
            {
                "child_shop": child_shop,
                "products": list(products),
                "variants": list(variants),
                "items": list(items),
                "collections": collections,
            },
        )
        return LinkMap(child_shop, [_link(r) for r in await cur.fetchall()])


# --------------------------------------------------------------------------- paused stores


async def paused_among(conn: psycopg.AsyncConnection, shops: Iterable[str]) -> dict[str, str]:
    cur = await conn.execute(network_sql.PAUSED_STORES, {"shops": list(shops)})
    return {shop: reason or "paused" for shop, reason in await cur.fetchall()}


async def pause_store(conn: psycopg.AsyncConnection, shop: str, reason: str) -> bool:
    cur = await conn.execute(network_sql.PAUSE_STORE, {"shop": shop, "reason": reason})
    paused = await cur.fetchone() is not None
    if paused:
        log.warning("store paused", shop=shop, reason=reason)
    return paused


async def park_job(
    conn: psycopg.AsyncConnection,
    *,
    kind: str,
    payload: dict,
    group: str,
    lane: Lane,
    lock_key: str | None,
    shop: str,
    delay_s: float,
) -> int:
    """Re-enqueue a job unchanged (tagged `parked_for`) to run again after `delay_s`."""
    spec = JobSpec(
        kind,
        {**payload, "parked_for": shop},
        group=group,
        lane=lane,
        lock_key=lock_key,
        run_at=datetime.now(UTC) + timedelta(seconds=delay_s),
    )
    async with conn.transaction():
        enq = await enqueue_async(conn, spec)
    log.info("job parked", kind=kind, shop=shop, job_id=enq.job_id, delay_s=delay_s)
    return enq.job_id


# --------------------------------------------------------------------------- per process

_RUNTIME: SyncRuntime | None = None
_RUNTIME_LOCK = asyncio.Lock()


async def process_runtime(settings: Settings, pool) -> SyncRuntime:
    """This worker process's runtime, built on first use."""
    global _RUNTIME
    async with _RUNTIME_LOCK:
        if _RUNTIME is None:
            from storesync.db.pools import async_pooled_pool

            config = await asyncio.to_thread(load_network_config, settings)
            budget_pool = async_pooled_pool(settings, name="storesync-budget", min_size=1, max_size=4)
            await budget_pool.open(wait=False)
            _RUNTIME = SyncRuntime(settings, config, pool=pool, budget_pool=budget_pool)
        return _RUNTIME
