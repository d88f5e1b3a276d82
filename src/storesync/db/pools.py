"""The two connection paths.

Pooled (`DATABASE_URL`): web requests and job work. It may point at PgBouncer in transaction
mode, so everything sent on it must be transaction-scoped: no SET outside a transaction (use
SET LOCAL), no LISTEN, no session-level advisory locks (use `pg_advisory_xact_lock`), and
server-side prepared statements only where `Settings.pooled_prepare_threshold` says the path
keeps them (`pooled_connection_kwargs`).

Direct (`DATABASE_DIRECT_URL`, defaulting to `DATABASE_URL`): a plain connection to Postgres
for what needs a session: LISTEN/NOTIFY, session advisory locks (migrations, the scheduler's
leadership) and migrations themselves.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import AsyncConnectionPool, ConnectionPool

from storesync.config import ConfigError, Settings

# psycopg prepares a statement after it ran 5 times; PgBouncer in transaction mode (before
# 1.21) would then route the EXECUTE to a server connection that never saw the PREPARE. These
# never prepare: for connections whose settings are not at hand (tests, tools).
POOLED_CONNECTION_KWARGS: dict[str, Any] = {"prepare_threshold": None, "autocommit": False}

# set_local_statement_timeout: bound every statement of the current transaction, in milliseconds
# (SET LOCAL, so PgBouncer-safe: it ends with the transaction). Parameter: the timeout as text.
SET_LOCAL_STATEMENT_TIMEOUT = "SELECT set_config('statement_timeout', %s, true)"


# A prepared statement is planned for its parameters every time (parsing is what preparing
# saves), never with a generic plan: a generic plan made while a table was nearly empty (the
# links of a backfill's first seconds) read every row once it had thousands (1.9 ms a lookup
# instead of 0.05), until autovacuum's next ANALYZE replaced it.
CUSTOM_PLANS_OPTION = "-c plan_cache_mode=force_custom_plan"


def pooled_connection_kwargs(settings: Settings, **overrides: Any) -> dict[str, Any]:
    """psycopg connection options for the pooled path: prepared statements when the settings
    say the path keeps them (`Settings.db_prepared_statements`), planned afresh each time when
    the path is Postgres itself (`auto`; behind PgBouncer a startup option is not passed on,
    and the claim sets it for its own transaction)."""
    kwargs: dict[str, Any] = {
        **POOLED_CONNECTION_KWARGS,
        "prepare_threshold": settings.pooled_prepare_threshold,
        "connect_timeout": settings.connect_timeout,
    }
    if settings.pooled_prepare_threshold is not None and settings.db_prepared_statements == "auto":
        given = conninfo_to_dict(settings.pooled_dsn or "").get("options")  # the URL's own stay
        kwargs["options"] = f"{given} {CUSTOM_PLANS_OPTION}" if given else CUSTOM_PLANS_OPTION
    return {**kwargs, **overrides}


def _require(dsn: str | None, what: str) -> str:
    if not dsn:
        raise ConfigError(f"{what} is not set (and no embedded database was started)")
    return dsn


def _pool_args(settings: Settings, name: str, min_size: int | None, max_size: int | None) -> dict[str, Any]:
    max_size = max_size or settings.pool_max_size
    return {
        "conninfo": _require(settings.pooled_dsn, "DATABASE_URL"),
        "name": name,
        "min_size": min(settings.pool_min_size if min_size is None else min_size, max_size),
        "max_size": max_size,
        "timeout": settings.pool_timeout,
        "kwargs": pooled_connection_kwargs(settings),
        "open": False,
    }


def pooled_pool(
    settings: Settings,
    *,
    name: str = "storesync",
    min_size: int | None = None,
    max_size: int | None = None,
    check_on_checkout: bool = False,
) -> ConnectionPool:
    """A closed pool on the pooled path; open it with `pool.open(wait=True)` or `with pool:`."""
    args = _pool_args(settings, name, min_size, max_size)
    if check_on_checkout:
        args["check"] = ConnectionPool.check_connection
    return ConnectionPool(**args)


def async_pooled_pool(
    settings: Settings,
    *,
    name: str = "storesync",
    min_size: int | None = None,
    max_size: int | None = None,
    check_on_checkout: bool = False,
) -> AsyncConnectionPool:
    """The asyncio twin of `pooled_pool`; open it with `await pool.open(wait=True)`."""
    args = _pool_args(settings, name, min_size, max_size)
    if check_on_checkout:
        args["check"] = AsyncConnectionPool.check_connection
    return AsyncConnectionPool(**args)


def connect_pooled(settings: Settings, *, autocommit: bool = True) -> psycopg.Connection:
    """One session on the pooled path, outside any pool (PgBouncer-safe: no prepared statements)."""
    return psycopg.connect(
        _require(settings.pooled_dsn, "DATABASE_URL"),
        prepare_threshold=None,
        autocommit=autocommit,
        connect_timeout=settings.connect_timeout,
    )


async def async_connect_pooled(settings: Settings, *, autocommit: bool = True) -> psycopg.AsyncConnection:
    """The asyncio twin of `connect_pooled`."""
    return await psycopg.AsyncConnection.connect(
        _require(settings.pooled_dsn, "DATABASE_URL"),
        prepare_threshold=None,
        autocommit=autocommit,
        connect_timeout=settings.connect_timeout,
    )


def connect_direct(settings: Settings, *, autocommit: bool = True) -> psycopg.Connection:
    """A session on the direct path (LISTEN, session advisory locks, migrations)."""
    return psycopg.connect(
        _require(settings.direct_dsn, "DATABASE_DIRECT_URL"),
        autocommit=autocommit,
        connect_timeout=settings.connect_timeout,
    )


async def async_connect_direct(settings: Settings, *, autocommit: bool = True) -> psycopg.AsyncConnection:
    return await psycopg.AsyncConnection.connect(
        _require(settings.direct_dsn, "DATABASE_DIRECT_URL"),
        autocommit=autocommit,
        connect_timeout=settings.connect_timeout,
    )
