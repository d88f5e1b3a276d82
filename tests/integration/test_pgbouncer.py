"""The pooled path works through a real PgBouncer in transaction mode."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import psycopg
from pydantic import SecretStr

from storesync.config import Settings
from storesync.db.migrate import ensure_at_head
from storesync.db.network_sql import list_stores
from storesync.db.pools import async_pooled_pool, pooled_pool


def test_pooled_path_runs_repeated_statements_through_pgbouncer_transaction_mode(pgbouncer_dsn, db) -> None:
    settings = Settings.load(
        database_url=SecretStr(pgbouncer_dsn),
        database_direct_url=SecretStr(db.dsn),
        pool_min_size=0,
        pool_max_size=8,
    )
    # Many client connections multiplexed onto few server connections; each statement repeats far
    # past psycopg's prepare threshold, which would fail ("prepared statement does not exist")
    # if the pooled path prepared statements.
    with pooled_pool(settings) as pool:

        def work(i: int) -> int:
            total = 0
            for _ in range(20):
                with pool.connection() as conn:
                    ensure_at_head(conn)
                    list_stores(conn)
                    total += conn.execute("SELECT %s::int", (i,)).fetchone()[0]
            return total

        with ThreadPoolExecutor(8) as ex:
            assert sorted(ex.map(work, range(8))) == [i * 20 for i in range(8)]


def test_fixture_pgbouncer_really_multiplexes_sessions(db) -> None:
    """Guards the test above: with one server connection, two open client sessions share it,
    which only transaction pooling allows (session pooling would block the second client)."""
    from tests.support.pgbouncer import run_pgbouncer

    s = db.server
    with run_pgbouncer(s.host, s.port, s.user, s.password, db.name, pool_size=1) as dsn:
        a = psycopg.connect(dsn, autocommit=True, prepare_threshold=None)
        b = psycopg.connect(dsn, autocommit=True, prepare_threshold=None)
        try:
            pid_a = a.execute("SELECT pg_backend_pid()").fetchone()[0]
            pid_b = b.execute("SELECT pg_backend_pid()").fetchone()[0]
            assert pid_a == pid_b
        finally:
            a.close()
            b.close()


async def test_async_pool_through_pgbouncer(pgbouncer_dsn, db) -> None:
    # A separate direct path says the pooled one may be PgBouncer in transaction mode: the pool
    # then never prepares (more than 5 runs of one statement below).
    settings = Settings.load(
        database_url=SecretStr(pgbouncer_dsn),
        database_direct_url=SecretStr(db.dsn),
        pool_min_size=0,
        pool_max_size=4,
    )
    assert settings.pooled_prepare_threshold is None
    async with async_pooled_pool(settings) as pool:
        for _ in range(10):
            async with pool.connection() as conn:
                cur = await conn.execute("SELECT count(*) FROM schema_migrations")
                assert (await cur.fetchone())[0] >= 1
