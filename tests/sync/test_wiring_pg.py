"""The wiring's own Postgres side: saga resumption at worker start, paused stores and their
parked jobs, encrypted credentials written by `network apply`."""

from __future__ import annotations

import asyncio

import psycopg
import pytest

from storesync.config import NetworkConfig
from storesync.db.credentials import ENCRYPTION_KEY_ENV, generate_key, load_cipher
from storesync.db.credentials_sql import static_tokens
from storesync.db.network_sql import apply_network
from storesync.queue.enqueue import JobSpec, Lane
from storesync.sync.adapters.jobqueue import park
from storesync.sync.adapters.postgres import PgStepLog, Storage, pause_store, paused_among
from storesync.sync.domain.network import Network
from storesync.sync.domain.routing import JOB_COPY_PRODUCT
from storesync.sync.domain.saga import SagaState, StepSpec
from storesync.sync.runtime import network_with_credentials
from storesync.sync.services.copies import resume_unfinished_sagas
from storesync.sync.services.stores import resume_store

NETWORK = NetworkConfig.model_validate(
    {
        "merchants": [
            {
                "id": "acme",
                "parent": {
                    "shop": "parent.myshopify.com",
                    "access_token": "shpat_parent",
                    "admin_api_url": "http://127.0.0.1:1/stores/parent.myshopify.com/admin/api/2026-10/graphql.json",
                    "webhook_secrets": ["s1"],
                },
                "children": [
                    {
                        "shop": "child-a.myshopify.com",
                        "access_token": "shpat_child",
                        "admin_api_url": "http://127.0.0.1:1/stores/child-a.myshopify.com/admin/api/2026-10/graphql.json",
                        "webhook_secrets": ["s2"],
                        "location_map": {"gid://shopify/Location/1": "gid://shopify/Location/2"},
                    }
                ],
            }
        ]
    }
)


@pytest.fixture
def applied(db, monkeypatch):
    key = generate_key()
    monkeypatch.setenv(ENCRYPTION_KEY_ENV, key)
    with db.connect() as conn:
        apply_network(conn, NETWORK, load_cipher())
        conn.commit()
    return db


def test_network_apply_stores_tokens_encrypted_and_workers_read_them_back(applied) -> None:
    with applied.connect(autocommit=True) as conn:
        blobs = conn.execute(
            "SELECT c.access_token_encrypted, s.location_map, c.kind FROM stores s "
            "JOIN store_credentials c USING (shop_domain) ORDER BY shop_domain"
        ).fetchall()
        assert all(b and "shpat" not in b and kind == "static" for b, _, kind in blobs)
        assert blobs[0][1] == {"gid://shopify/Location/1": "gid://shopify/Location/2"}
        assert static_tokens(conn, load_cipher())["child-a.myshopify.com"][1] == "shpat_child"
        # The file the worker reads may carry an older token: the stored one wins.
        data = NETWORK.model_dump(mode="json")
        data["merchants"][0]["parent"]["access_token"] = "shpat_older"
        net = network_with_credentials(NetworkConfig.model_validate(data), conn)
        assert net.store("parent.myshopify.com")[1].access_token.get_secret_value() == "shpat_parent"


def test_workers_refuse_stored_tokens_without_the_key(applied, monkeypatch) -> None:
    monkeypatch.delenv(ENCRYPTION_KEY_ENV)
    with applied.connect(autocommit=True) as conn, pytest.raises(Exception, match=ENCRYPTION_KEY_ENV):
        network_with_credentials(NETWORK, conn)


def test_unfinished_sagas_get_one_resume_job_each_at_worker_start(applied) -> None:
    async def make() -> None:
        async with await psycopg.AsyncConnection.connect(applied.dsn, autocommit=True) as conn:
            log = PgStepLog(conn)
            for saga_id, state in (
                ("copy:child-a.myshopify.com:p1", SagaState.RUNNING),
                ("copy:child-a.myshopify.com:p2", SagaState.COMPENSATING),
                ("copy:child-a.myshopify.com:p3", SagaState.COMPLETED),
            ):
                await log.create(
                    saga_id, "copy_product", "child-a.myshopify.com", "test", [StepSpec("a", "a", {})]
                )
                await log.set_state(saga_id, state)

    async def resume() -> int:
        async with await psycopg.AsyncConnection.connect(applied.dsn, autocommit=True) as conn:
            return await resume_unfinished_sagas(Storage(conn), Network.from_config(NETWORK), 5)

    asyncio.run(make())
    assert asyncio.run(resume()) == 2
    assert asyncio.run(resume()) == 2  # a second start collapses into the queued jobs
    with applied.connect(autocommit=True) as conn:
        jobs = conn.execute(
            "SELECT kind, lock_key, group_key, payload->>'saga_id' FROM jobs ORDER BY id"
        ).fetchall()
    assert jobs == [
        (JOB_COPY_PRODUCT, "saga:copy:child-a.myshopify.com:p1", "acme", "copy:child-a.myshopify.com:p1"),
        (JOB_COPY_PRODUCT, "saga:copy:child-a.myshopify.com:p2", "acme", "copy:child-a.myshopify.com:p2"),
    ]


def test_parked_jobs_of_a_paused_store_run_at_once_when_it_is_resumed(applied) -> None:
    shop = "child-a.myshopify.com"

    async def pause_and_park() -> None:
        async with await psycopg.AsyncConnection.connect(applied.dsn, autocommit=True) as conn:
            assert await pause_store(conn, shop, "HTTP 401: token revoked")
            assert not await pause_store(conn, shop, "again")  # the first reason is kept
            assert await paused_among(conn, [shop, "parent.myshopify.com"]) == {
                shop: "HTTP 401: token revoked"
            }
            await park(
                conn,
                JobSpec(
                    "sync.product_to_child",
                    {"child_shop": shop},
                    group="acme",
                    lane=Lane.CATALOG,
                    lock_key="product:x",
                ),
                shop=shop,
                delay_s=600,
            )

    asyncio.run(pause_and_park())
    with applied.connect(autocommit=True) as conn:
        waiting = "SELECT count(*) FROM jobs WHERE state = 'queued' AND run_at > now() AND payload->>'parked_for' = %s"
        assert conn.execute(waiting, (shop,)).fetchone() == (1,)
        assert resume_store(conn, shop) == 1
        assert conn.execute(waiting, (shop,)).fetchone() == (0,)
        assert conn.execute(
            "SELECT status, status_reason FROM stores WHERE shop_domain = %s", (shop,)
        ).fetchone() == ("active", None)
        assert resume_store(conn, "unknown.myshopify.com") is None
