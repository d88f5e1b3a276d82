"""Server-side prepared statements on the pooled path: used where the path keeps them, never
for the claim (whose generic plan would go stale as the queue fills)."""

from __future__ import annotations

from psycopg.conninfo import make_conninfo
from pydantic import SecretStr

from storesync.config import Settings
from storesync.db.pools import pooled_pool
from storesync.queue.claim import claim_batch_sync
from storesync.queue.config import QueueSettings

PREPARED = "SELECT statement FROM pg_prepared_statements"


def _pool(dsn: str, **settings: object):
    return pooled_pool(
        Settings.load(database_url=SecretStr(dsn), pool_min_size=0, pool_max_size=1, **settings)
    )


def test_one_url_for_both_paths_prepares_a_statement_after_its_fifth_run(db) -> None:
    with _pool(db.dsn) as pool, pool.connection() as conn:
        for _ in range(6):
            conn.execute("SELECT count(*) FROM schema_migrations").fetchone()
        statements = [s for (s,) in conn.execute(PREPARED).fetchall()]
    assert any("schema_migrations" in s for s in statements)


def test_prepared_statements_off_never_prepares(db) -> None:
    with _pool(db.dsn, db_prepared_statements="off") as pool, pool.connection() as conn:
        for _ in range(10):
            conn.execute("SELECT count(*) FROM schema_migrations").fetchone()
        assert conn.execute(PREPARED).fetchall() == []


def test_the_claim_is_never_run_with_a_generic_plan(db) -> None:
    """Prepared or not, the claim is planned for its parameters and the table as it is now: a
    generic plan made on an empty queue stays cached when it fills (hundreds of ms a claim)."""
    qs = QueueSettings()
    with _pool(db.dsn) as pool, pool.connection() as conn:
        for _ in range(10):
            assert claim_batch_sync(conn, qs, "w1", 10) == []
            conn.commit()
        claims = conn.execute(
            "SELECT generic_plans, custom_plans FROM pg_prepared_statements "
            "WHERE statement LIKE '%%WITH RECURSIVE active%%'"
        ).fetchall()
    assert claims and all(generic == 0 and custom > 0 for generic, custom in claims)


def test_prepared_statements_are_planned_afresh_and_the_urls_own_options_stay(db) -> None:
    """A generic plan made while a table is nearly empty would stay cached as it fills."""
    with _pool(db.dsn) as pool, pool.connection() as conn:
        assert conn.execute("SHOW plan_cache_mode").fetchone() == ("force_custom_plan",)
    with _pool(make_conninfo(db.dsn, options="-c statement_timeout=1234")) as pool, pool.connection() as conn:
        assert conn.execute("SHOW plan_cache_mode").fetchone() == ("force_custom_plan",)
        assert conn.execute("SHOW statement_timeout").fetchone() == ("1234ms",)
