"""The stores as the product page reads them: the sync engine's runtime (`sync/runtime.py`) built
once per web process on first use, on the web tier's pool (the shared rate-limit budget's short
statements). It needs the stores' credentials as a worker does: static tokens stored by `network
apply` are decrypted with STORESYNC_ENCRYPTION_KEY, issued tokens come from the database; without
the key the page says so and the rest of the dashboard works."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from psycopg_pool import AsyncConnectionPool

from storesync.config import ConfigError, NetworkConfig, Settings
from storesync.logs import get_logger
from storesync.sync.runtime import SyncRuntime, load_network_config

log = get_logger("storesync.web.dashboard")


class LiveUnavailable(Exception):
    """The stores cannot be read from this process; the message says why and what to set."""


class LiveStores:
    def __init__(
        self,
        settings: Settings,
        network: Callable[[], NetworkConfig | None],
        pool: Callable[[], AsyncConnectionPool | None],
    ) -> None:
        self.settings = settings
        self.network = network
        self.pool = pool
        self._runtime: SyncRuntime | None = None
        self._lock = asyncio.Lock()

    async def runtime(self) -> SyncRuntime:
        if self._runtime is not None:
            return self._runtime
        async with self._lock:
            if self._runtime is not None:
                return self._runtime
            pool = self.pool()
            if pool is None or self.network() is None:
                raise LiveUnavailable("the web tier has not started its database pool or network yet")
            try:
                config = await asyncio.to_thread(load_network_config, self.settings)
            except ConfigError as err:
                log.warning("dashboard_live_stores_unavailable", reason=str(err))
                raise LiveUnavailable(
                    f"the stores cannot be read from the web tier: {err} (the product page reads them "
                    "with the same credentials as the workers)"
                ) from None
            self._runtime = SyncRuntime(self.settings, config, pool=pool)
            return self._runtime

    async def aclose(self) -> None:
        if self._runtime is not None:
            await self._runtime.aclose()
            self._runtime = None
