"""A process's Admin API clients: one per configured store, sharing one HTTP connection pool,
(given a pooled-path pool) the Postgres rate-limit budget every process shares, and (given a
token store) the tokens every process shares."""

from __future__ import annotations

from typing import Any

import httpx
from psycopg_pool import AsyncConnectionPool

from storesync.commerce.budget import PostgresBudget
from storesync.commerce.client import AdminClient
from storesync.commerce.credentials import NetworkTokens, TokenStore
from storesync.config import NetworkConfig


class StoreClients:
    """A worker process's Admin API clients: one per configured store, sharing one HTTP
    connection pool, (given a pooled-path pool) the Postgres budget every process shares, and
    (given a token store) the tokens every process shares."""

    def __init__(
        self,
        network: NetworkConfig,
        *,
        pool: AsyncConnectionPool | None = None,
        timeout: float = 10.0,
        token_store: TokenStore | None = None,
        **client_options: Any,
    ) -> None:
        self.network = network
        self.budget = PostgresBudget(pool) if pool is not None else None
        self.http = httpx.AsyncClient(timeout=timeout, limits=httpx.Limits(max_keepalive_connections=20))
        self.tokens = NetworkTokens(network, token_store, self.http, timeout=timeout)
        self.timeout = timeout
        self.client_options = client_options
        self._clients: dict[str, AdminClient] = {}

    def client(self, shop: str) -> AdminClient:
        if shop not in self._clients:
            found = self.network.store(shop)
            if found is None:
                raise LookupError(f"{shop} is not a configured store (storesync.toml)")
            self._clients[shop] = AdminClient(
                found[1],
                budget=self.budget,
                http=self.http,
                timeout=self.timeout,
                tokens=self.tokens.for_store(found[1]),
                **self.client_options,
            )
        return self._clients[shop]

    async def aclose(self) -> None:
        await self.http.aclose()

    async def __aenter__(self) -> StoreClients:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
