"""What the services are given: the process's stores and settings (`Runtime`, built by
`sync/runtime.py`) and one job's storage (`adapters.postgres.Storage`)."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from psycopg_pool import AsyncConnectionPool

from storesync.commerce.clients import StoreClients
from storesync.config import NetworkConfig
from storesync.sync.adapters.shopify import ShopifyCatalogScan, ShopifyCollections, ShopifyStoreAPI
from storesync.sync.domain.catalog import SyncPolicy
from storesync.sync.domain.model import StoreRef
from storesync.sync.domain.network import MerchantNetwork, Network
from storesync.sync.settings import SyncSettings


class Runtime(Protocol):
    """The stores of the configured network, their clients and policies (`runtime.SyncRuntime`)."""

    config: NetworkConfig
    network: Network
    sync_settings: SyncSettings
    clients: StoreClients
    pool: AsyncConnectionPool  # the pooled path: storage connections

    def merchant(self, merchant_id: str) -> MerchantNetwork: ...

    def of_shop(self, shop: str) -> tuple[MerchantNetwork, StoreRef]: ...

    def policy(self, merchant_id: str) -> SyncPolicy: ...

    def api(self, shop: str) -> ShopifyStoreAPI: ...

    def apis(self, net: MerchantNetwork) -> dict[str, ShopifyStoreAPI]: ...

    def scans(
        self, net: MerchantNetwork, *, updated_since: datetime | None = None
    ) -> dict[str, ShopifyCatalogScan]: ...

    def collections(self, shop: str) -> ShopifyCollections: ...
