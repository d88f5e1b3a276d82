"""Access tokens for the Admin client: one provider per store, of the store's credential kind.

- `StaticToken`: a legacy custom app's token, as configured; a 401 pauses the store.
- `GrantTokens`: `client_credentials` or `authorization_code`. The token lives in Postgres
  (`store_credentials`, encrypted) so every process shares it, and in memory per process. It is
  refreshed ahead of expiry (a fifth of its lifetime, at most 5 minutes before) and once after a
  401. One refresh at a time across all processes: the refresher holds the store's row lock
  (`SELECT ... FOR UPDATE`, one transaction on the pooled path) while it asks Shopify; a process
  that needed the same refresh waits on that lock and then finds the new token instead of asking
  again. Inside a process, one task per store goes to the database at a time.

Refresh tokens (authorization_code). Shopify rotates the refresh token on every refresh and keeps
the one used valid until its replacement is first used. The new pair is written in the same
transaction as the lock, together with the refresh token it came from (`previous`); the old one
is forgotten only once its replacement has been used. So an answer lost in transit (timeout,
connection reset) leaves the stored refresh token as it was and the next attempt uses it again;
a stored refresh token Shopify refuses is retried once with the previous one.

Errors: refused credentials (`invalid_client`, `invalid_grant`, a store never connected) raise
`CredentialsRejected` (the sync layer pauses the store with the reason, never dead-letters its
jobs); an unreachable token endpoint raises `ApiUnavailableError` (the job retries).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import httpx
import psycopg
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from storesync.commerce.errors import ApiUnavailableError, CredentialsRejected
from storesync.commerce.oauth import (
    TokenEndpointUnavailable,
    TokenGrant,
    TokenRefused,
    client_credentials_form,
    refresh_token_form,
    request_token,
)
from storesync.config import NetworkConfig, StoreConfig
from storesync.db import credentials_sql as sql
from storesync.db.credentials import TokenCipher
from storesync.logs import get_logger

log = get_logger("storesync.commerce.credentials")

Clock = Callable[[], datetime]


def utcnow() -> datetime:
    return datetime.now(UTC)


class TokenProvider(Protocol):
    kind: str

    async def current(self) -> str:
        """A token to send now (obtained or refreshed first if needed)."""
        ...

    async def after_unauthorized(self, rejected: str) -> bool:
        """The store answered 401 to `rejected`: True once a different token is available (the
        caller resends once), False if there is none to try."""
        ...


class StaticToken:
    kind = "static"

    def __init__(self, token: str) -> None:
        self._token = token

    async def current(self) -> str:
        return self._token

    async def after_unauthorized(self, rejected: str) -> bool:
        return False


# --------------------------------------------------------------------------- storage port


@dataclass(frozen=True)
class StoredCredentials:
    """A store's `store_credentials` row, decrypted."""

    kind: str
    client_id: str | None
    access_token: str | None
    expires_at: datetime | None
    obtained_at: datetime | None
    scopes: tuple[str, ...]
    refresh_token: str | None
    refresh_token_expires_at: datetime | None
    previous_refresh_token: str | None
    failure: str | None


class LockedCredentials(Protocol):
    row: StoredCredentials | None

    async def save(self, grant: TokenGrant, *, previous_refresh_token: str | None) -> None: ...

    async def fail(self, reason: str) -> None: ...


class TokenStore(Protocol):
    async def load(self, shop: str) -> StoredCredentials | None: ...

    def locked(self, shop: str) -> AbstractAsyncContextManager[LockedCredentials]:
        """The row locked until the block exits (its writes commit then)."""
        ...


class PgTokenStore:
    """`store_credentials` on the pooled path (each call one short transaction; a refresh holds
    its row lock and one connection for the duration of one token request)."""

    def __init__(
        self, pool: AsyncConnectionPool, cipher: TokenCipher, *, lock_timeout_s: float = 30.0
    ) -> None:
        self.pool, self.cipher, self.lock_timeout_s = pool, cipher, lock_timeout_s

    def _row(self, shop: str, raw: dict[str, Any] | None) -> StoredCredentials | None:
        if raw is None:
            return None

        def dec(blob: str | None) -> str | None:
            return self.cipher.decrypt(blob, shop=shop) if blob else None

        return StoredCredentials(
            kind=raw["kind"],
            client_id=raw["client_id"],
            access_token=dec(raw["access_token_encrypted"]),
            expires_at=raw["access_token_expires_at"],
            obtained_at=raw["access_token_obtained_at"],
            scopes=tuple(s for s in (raw["scopes"] or "").split(",") if s),
            refresh_token=dec(raw["refresh_token_encrypted"]),
            refresh_token_expires_at=raw["refresh_token_expires_at"],
            previous_refresh_token=dec(raw["previous_refresh_token_encrypted"]),
            failure=raw["failure"],
        )

    async def load(self, shop: str) -> StoredCredentials | None:
        async with self.pool.connection() as conn, conn.transaction():
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(sql.CREDENTIALS_ROW, {"shop": shop})
            return self._row(shop, await cur.fetchone())

    @asynccontextmanager
    async def locked(self, shop: str) -> AsyncIterator[LockedCredentials]:
        async with self.pool.connection() as conn, conn.transaction():
            # SET LOCAL: transaction-scoped, so PgBouncer in transaction mode is fine.
            await conn.execute(f"SET LOCAL lock_timeout = '{int(self.lock_timeout_s * 1000)}ms'")
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(sql.LOCK_CREDENTIALS_ROW, {"shop": shop})
            yield _PgLocked(self, conn, shop, self._row(shop, await cur.fetchone()))


class _PgLocked:
    def __init__(
        self,
        store: PgTokenStore,
        conn: psycopg.AsyncConnection[Any],
        shop: str,
        row: StoredCredentials | None,
    ) -> None:
        self._store, self._conn, self._shop, self.row = store, conn, shop, row

    async def save(self, grant: TokenGrant, *, previous_refresh_token: str | None) -> None:
        enc = self._store.cipher.encrypt
        assert self.row is not None
        await self._conn.execute(
            sql.SAVE_TOKEN,
            {
                "shop": self._shop,
                "kind": self.row.kind,
                "access_token": enc(grant.access_token),
                "expires_at": grant.expires_at,
                "obtained_at": grant.obtained_at,
                "scopes": ",".join(grant.scopes),
                "refresh_token": enc(grant.refresh_token) if grant.refresh_token else None,
                "refresh_expires_at": grant.refresh_token_expires_at,
                "previous_refresh_token": enc(previous_refresh_token) if previous_refresh_token else None,
            },
        )

    async def fail(self, reason: str) -> None:
        await self._conn.execute(sql.SAVE_FAILURE, {"shop": self._shop, "failure": reason})


# --------------------------------------------------------------------------- grants


@dataclass(frozen=True)
class _Token:
    value: str
    expires_at: datetime | None
    obtained_at: datetime | None


class GrantTokens:
    """Tokens of one store obtained by a grant (`client_credentials` or `authorization_code`)."""

    def __init__(
        self,
        shop: str,
        shop_url: str,
        kind: str,
        client_id: str,
        client_secret: str,
        store: TokenStore,
        http: httpx.AsyncClient,
        *,
        timeout: float = 10.0,
        refresh_ahead_s: float = 300.0,
        refresh_ahead_fraction: float = 0.2,
        attempts: int = 3,
        backoff_s: float = 0.5,
        clock: Clock = utcnow,
    ) -> None:
        if kind not in ("client_credentials", "authorization_code"):
            raise ValueError(f"no grant of kind {kind!r}")
        self.shop, self.shop_url, self.kind = shop, shop_url, kind
        self.client_id, self._secret = client_id, client_secret
        self.store, self.http, self.timeout = store, http, timeout
        self.refresh_ahead_s, self.refresh_ahead_fraction = refresh_ahead_s, refresh_ahead_fraction
        self.attempts, self.backoff_s, self.clock = attempts, backoff_s, clock
        self._cached: _Token | None = None
        self._lock = asyncio.Lock()
        self.refreshes = 0  # token requests this process made (tests and logs)

    # ------------------------------------------------------------------ freshness

    def _usable(self, token: _Token | None) -> bool:
        """Not due for a refresh: valid beyond the refresh-ahead margin."""
        if token is None:
            return False
        if token.expires_at is None:
            return True
        lifetime = (token.expires_at - token.obtained_at).total_seconds() if token.obtained_at else 86400.0
        ahead = min(self.refresh_ahead_s, max(lifetime, 0.0) * self.refresh_ahead_fraction)
        return self.clock() < token.expires_at - timedelta(seconds=ahead)

    @staticmethod
    def _of(row: StoredCredentials | None) -> _Token | None:
        if row is None or not row.access_token:
            return None
        return _Token(row.access_token, row.expires_at, row.obtained_at)

    # ------------------------------------------------------------------ provider

    async def current(self) -> str:
        token = self._cached
        if self._usable(token):
            return token.value  # type: ignore[union-attr]
        async with self._lock:
            if self._usable(self._cached):
                return self._cached.value  # type: ignore[union-attr]
            stored = self._of(await self.store.load(self.shop))
            if self._usable(stored):
                self._cached = stored
                return stored.value  # type: ignore[union-attr]
            return await self._refresh(rejected=None)

    async def after_unauthorized(self, rejected: str) -> bool:
        async with self._lock:
            if self._cached is not None and self._cached.value != rejected and self._usable(self._cached):
                return True
            stored = self._of(await self.store.load(self.shop))
            if stored is not None and stored.value != rejected and self._usable(stored):
                self._cached = stored
                return True
            log.info("access token refused; refreshing", shop=self.shop, kind=self.kind)
            await self._refresh(rejected=rejected)
            return True

    async def _refresh(self, *, rejected: str | None) -> str:
        try:
            return await self._refresh_locked(rejected=rejected)
        except psycopg.errors.LockNotAvailable:
            raise ApiUnavailableError(
                f"{self.shop}: another process holds the token refresh for too long",
                retry_after=5.0,
                shop=self.shop,
            ) from None

    async def _refresh_locked(self, *, rejected: str | None) -> str:
        refused: str | None = None
        async with self.store.locked(self.shop) as slot:
            row = slot.row
            if row is None:
                raise CredentialsRejected(
                    f"{self.shop} has no stored credentials: run `storesync network apply`", shop=self.shop
                )
            if row.kind != self.kind or row.client_id != self.client_id:
                raise CredentialsRejected(
                    f"{self.shop}: the stored credentials ({row.kind}, client {row.client_id}) are not the "
                    f"configured ones ({self.kind}, client {self.client_id}): run `storesync network apply`",
                    shop=self.shop,
                )
            stored = self._of(row)
            if stored is not None and stored.value != rejected and self._usable(stored):
                self._cached = stored  # another process refreshed while we waited for the lock
                return stored.value
            try:
                grant, used_refresh = await self._obtain(row)
            except TokenRefused as err:
                refused = f"{self.kind} for {self.shop}: {err}"
                await slot.fail(refused)  # committed with the lock's transaction
            else:
                await slot.save(grant, previous_refresh_token=used_refresh)
        if refused is not None:
            log.warning("credentials refused", shop=self.shop, kind=self.kind, reason=refused)
            raise CredentialsRejected(refused, shop=self.shop)
        self._cached = _Token(grant.access_token, grant.expires_at, grant.obtained_at)
        log.info(
            "access token obtained",
            shop=self.shop,
            kind=self.kind,
            expires_in_s=round((grant.expires_at - grant.obtained_at).total_seconds(), 1)
            if grant.expires_at
            else None,
            rotated_refresh_token=bool(grant.refresh_token),
        )
        return grant.access_token

    async def _obtain(self, row: StoredCredentials) -> tuple[TokenGrant, str | None]:
        """(the new grant, the refresh token it was obtained with)."""
        if self.kind == "client_credentials":
            return await self._ask(client_credentials_form(self.client_id, self._secret)), None
        if not row.refresh_token:
            raise TokenRefused(
                f"not connected yet: run `storesync stores connect {self.shop}` and have the merchant "
                "approve the app",
                error="not_connected",
                status=0,
            )
        try:
            grant = await self._ask(refresh_token_form(self.client_id, self._secret, row.refresh_token))
            used = row.refresh_token
        except TokenRefused as err:
            previous = row.previous_refresh_token
            if err.error != "invalid_grant" or not previous or previous == row.refresh_token:
                raise
            # The stored refresh token is refused; the one it came from is still valid until its
            # replacement is first used (Shopify keeps it for that).
            log.warning("refresh token refused; retrying with the previous one", shop=self.shop)
            grant = await self._ask(refresh_token_form(self.client_id, self._secret, previous))
            used = previous
        if grant.refresh_token is None:  # no rotation: keep using the same refresh token
            grant = replace(grant, refresh_token=used, refresh_token_expires_at=row.refresh_token_expires_at)
            return grant, row.previous_refresh_token
        return grant, used

    async def _ask(self, form: dict[str, str]) -> TokenGrant:
        """The token request, retried on network faults and 5xx: a lost answer is asked again
        with the same form (a refresh token stays valid until its replacement is used)."""
        for attempt in range(1, self.attempts + 1):
            self.refreshes += 1
            try:
                return await request_token(self.http, self.shop_url, form, timeout=self.timeout)
            except TokenEndpointUnavailable as err:
                if attempt == self.attempts:
                    raise ApiUnavailableError(
                        f"{self.shop}: no token ({err}; {attempt} attempts)", retry_after=5.0, shop=self.shop
                    ) from None
                wait = self.backoff_s * 2 ** (attempt - 1)
                log.info("token request retried", shop=self.shop, reason=str(err), wait_s=round(wait, 2))
                await asyncio.sleep(wait / 2 + random.uniform(0, wait / 2))
        raise AssertionError("unreachable")


# --------------------------------------------------------------------------- per network


class NetworkTokens:
    """Each configured store's token provider: static stores their configured token, the others
    a `GrantTokens` sharing one token store (Postgres) and one HTTP client."""

    def __init__(
        self, network: NetworkConfig, store: TokenStore | None, http: httpx.AsyncClient, **options: Any
    ) -> None:
        self.network, self.store, self.http, self.options = network, store, http, options
        self._providers: dict[str, TokenProvider] = {}

    def for_store(self, cfg: StoreConfig) -> TokenProvider:
        if cfg.shop not in self._providers:
            self._providers[cfg.shop] = self._make(cfg)
        return self._providers[cfg.shop]

    def _make(self, cfg: StoreConfig) -> TokenProvider:
        token = cfg.static_token
        if cfg.credential_kind == "static" and token is not None:
            return StaticToken(token.get_secret_value())
        app = self.network.app_of(cfg)
        if app is None:
            raise CredentialsRejected(f"{cfg.shop}: no app configured for its credentials", shop=cfg.shop)
        if self.store is None:
            raise CredentialsRejected(
                f"{cfg.shop} uses {cfg.credential_kind}: its tokens live in the database, which this "
                "command has no connection to",
                shop=cfg.shop,
            )
        return GrantTokens(
            cfg.shop,
            cfg.shop_url,
            cfg.credential_kind,
            app.client_id,
            app.client_secrets[0].get_secret_value(),
            self.store,
            self.http,
            **self.options,
        )
