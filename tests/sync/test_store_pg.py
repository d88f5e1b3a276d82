"""The Postgres adapters of the sync domain against a real, migrated database."""

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import psycopg
import pytest
from pydantic import SecretStr

from storesync.config import Settings
from storesync.db.pools import POOLED_CONNECTION_KWARGS, async_pooled_pool
from storesync.sync.adapters.postgres import (
    PgAudit,
    PgLedger,
    PgLinks,
    PgStepLog,
    PgWriteRecords,
)
from storesync.sync.domain.model import Link, LinkKind, MatchedBy
from storesync.sync.domain.orders import order_event_from_webhook
from storesync.sync.domain.saga import SagaState, StepStatus, copy_product_steps
from storesync.sync.services.copies import copy_product_actions
from storesync.sync.services.sagas import SagaExecutor
from storesync.sync.services.sales import SaleContext, apply_order_event
from tests.fakes import MemoryStore
from tests.sync.builders import CHILD_A, CHILD_B, P_LOC1, PARENT, merchant
from tests.sync.sagas import copy_world, link_collection
from tests.sync.test_inventory import P_ITEM, link_map, order
from tests.sync.test_saga import Recorder, steps

T0 = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


async def connect(db) -> psycopg.AsyncConnection:
    return await psycopg.AsyncConnection.connect(db.dsn, **{**POOLED_CONNECTION_KWARGS, "autocommit": True})


# --------------------------------------------------------------------------- links


async def test_a_pending_copy_is_linked_once_with_its_echo_records_even_by_two_completers_at_once(db):
    from storesync.sync.domain.model import Variant
    from storesync.sync.services.copies import link_pending_copy

    pending = {
        "written_at": T0.isoformat(),
        "cause": "job:7",
        "variants": [
            {
                "parent_variant_id": "gid://shopify/ProductVariant/1",
                "parent_item_id": "gid://shopify/InventoryItem/1",
                "options": [["Size", "S"]],
                "sku": "T-S",
                "levels": [["gid://shopify/Location/11", 4]],
            }
        ],
    }
    product = Link(
        LinkKind.PRODUCT,
        CHILD_A,
        "gid://shopify/Product/1",
        "gid://shopify/Product/8",
        MatchedBy.CREATED,
        synced_view={"title": "Tee"},
        pending=pending,
    )
    child_variants = [
        Variant(
            "gid://shopify/ProductVariant/9",
            (("Size", "S"),),
            Decimal("1"),
            sku="T-S",
            inventory_item_id="gid://shopify/InventoryItem/9",
        )
    ]
    async with await connect(db) as a, await connect(db) as b:
        await PgLinks(a).save_links([product])
        assert [lk.pending for lk in await PgLinks(a).pending_links(CHILD_A)] == [pending]
        results = await asyncio.gather(
            link_pending_copy(PgLinks(a), product, child_variants),
            link_pending_copy(PgLinks(b), product, child_variants),
        )
        assert sorted(r is None for r in results) == [False, True]  # one linked it, the other found it done
        lm = await PgLinks(a).link_map(CHILD_A)
        assert lm.link_down(LinkKind.PRODUCT, product.parent_id).pending is None
        assert lm.link_down(LinkKind.PRODUCT, product.parent_id).synced_view == {"title": "Tee"}
        assert lm.child_item("gid://shopify/InventoryItem/1") == "gid://shopify/InventoryItem/9"
        assert await PgLinks(a).pending_links(CHILD_A) == []
        writes = await PgWriteRecords(a).recent_writes(
            CHILD_A, "gid://shopify/InventoryItem/9", "gid://shopify/Location/11", T0 - timedelta(seconds=1)
        )
        assert [(w.quantity, w.written_at, w.cause) for w in writes] == [(4, T0, "job:7")]


async def test_one_child_object_cannot_be_linked_to_two_parent_objects(db):
    async with await connect(db) as conn:
        repo = PgLinks(conn)
        await repo.save_links(
            [
                Link(
                    LinkKind.PRODUCT,
                    CHILD_A,
                    "gid://shopify/Product/1",
                    "gid://shopify/Product/8",
                    MatchedBy.SKU,
                )
            ]
        )
        with pytest.raises(psycopg.errors.UniqueViolation):
            await repo.save_links(
                [
                    Link(
                        LinkKind.PRODUCT,
                        CHILD_A,
                        "gid://shopify/Product/2",
                        "gid://shopify/Product/8",
                        MatchedBy.HANDLE,
                    )
                ]
            )
        assert len((await repo.link_map(CHILD_A)).links) == 1


# --------------------------------------------------------------------------- ledger


class CountingStore(MemoryStore):
    """The parent, counting adjustments that really changed its level (not idempotent replays)."""

    def __init__(self, shop):
        super().__init__(shop)
        self.real_adjusts = 0

    async def adjust_level(
        self, item, location, delta, *, idempotency_key, change_from=None, reason="correction"
    ):
        replay = idempotency_key in self._replays
        out = await super().adjust_level(
            item, location, delta, idempotency_key=idempotency_key, change_from=change_from, reason=reason
        )
        await asyncio.sleep(0.01)  # a network round trip, so that attempts overlap
        self.real_adjusts += 0 if replay else 1
        return out


async def test_ledger_applies_a_sale_once_under_concurrent_attempts(db):
    parent = CountingStore(PARENT)
    parent.levels[(P_ITEM, P_LOC1)] = 10
    event = order_event_from_webhook(CHILD_A, "orders/create", order(CHILD_A, 1, qty=3))
    conns = [await connect(db) for _ in range(8)]
    try:

        async def attempt(conn):
            ctx = SaleContext(
                merchant(), link_map(CHILD_A), PgLedger(conn), parent, PgWriteRecords(conn), PgAudit(conn)
            )
            return await apply_order_event(ctx, event, "delivery:dup")

        results = await asyncio.gather(*(attempt(c) for c in conns))
    finally:
        for c in conns:
            await c.close()
    assert parent.levels[(P_ITEM, P_LOC1)] == 7 and parent.real_adjusts == 1
    async with await connect(db) as conn:
        rows = await (
            await conn.execute("SELECT status, applied_delta FROM sync_inventory_ledger")
        ).fetchall()
        audits = await PgAudit(conn).query(cause="delivery:dup")
    assert rows == [("applied", -3)]
    assert len(audits) == 1  # exactly one attempt marked it applied
    assert {r[0].applied_delta for r in results} == {-3}


async def test_ledger_through_pgbouncer_transaction_mode(pgbouncer_dsn, db):
    """The adapters hold no session state: the whole sale path works through PgBouncer."""
    settings = Settings.load(
        database_url=SecretStr(pgbouncer_dsn),
        database_direct_url=SecretStr(db.dsn),
        pool_min_size=0,
        pool_max_size=2,
    )
    parent = MemoryStore(PARENT)
    parent.levels[(P_ITEM, P_LOC1)] = 5
    async with async_pooled_pool(settings) as pool:
        for n in range(3):
            async with pool.connection() as conn:
                await conn.set_autocommit(True)
                ctx = SaleContext(
                    merchant(), link_map(CHILD_B), PgLedger(conn), parent, PgWriteRecords(conn), PgAudit(conn)
                )
                await apply_order_event(
                    ctx, order_event_from_webhook(CHILD_B, "orders/create", order(CHILD_B, n + 1)), "d"
                )
                await apply_order_event(
                    ctx, order_event_from_webhook(CHILD_B, "orders/create", order(CHILD_B, n + 1)), "d"
                )
    assert parent.levels[(P_ITEM, P_LOC1)] == 2


# --------------------------------------------------------------------------- write records, versions, audit


# --------------------------------------------------------------------------- saga log


async def test_saga_log_survives_a_crash_and_a_new_executor_resumes_it(db):
    journal = []
    conn = await connect(db)
    log = PgStepLog(conn)

    class CheckUndoDurable(Recorder):
        async def run(self, params, ctx):
            saga = await PgStepLog(conn).load(ctx.saga_id)
            assert saga.steps[params["n"]].undo == {"undo": params["n"]}  # recorded before running
            self.journal.append(("run", params["n"]))
            if params.get("crash") and self.crash_run:
                self.crash_run -= 1
                raise ConnectionError("worker died")
            return {"n": params["n"]}

    with pytest.raises(ConnectionError):
        await SagaExecutor(log, {"rec": CheckUndoDurable(journal, None, crash_run=1)}).start(
            "saga-1", "demo", CHILD_A, "job:7", steps(3, crash=1)
        )
    await conn.close()  # the process is gone

    async with await connect(db) as conn2:
        log2 = PgStepLog(conn2)
        saga = await log2.load("saga-1")
        assert saga.state is SagaState.RUNNING
        assert [s.status for s in saga.steps] == [StepStatus.DONE, StepStatus.STARTED, StepStatus.PENDING]
        conn = conn2  # CheckUndoDurable reads through the live connection
        done, failed = await SagaExecutor(log2, {"rec": CheckUndoDurable(journal, None)}).resume_all()
        assert failed == [] and [s.state for s in done] == [SagaState.COMPLETED]
        assert journal == [("run", 0), ("run", 1), ("run", 1), ("run", 2)]
        assert await log2.unfinished() == []


async def test_compensation_interrupted_by_a_crash_finishes_after_restart(db):
    deps, pp = copy_world()
    await link_collection(deps)
    # step 3 fails for good; the first executor dies while undoing step 2
    from tests.sync.sagas import FailingLevels

    deps.stores[CHILD_A] = FailingLevels(CHILD_A)
    actions = copy_product_actions(deps)

    class DiesWhileUndoing:
        def __init__(self, inner):
            self.inner = inner

        async def prepare(self, params, ctx):
            return await self.inner.prepare(params, ctx)

        async def run(self, params, ctx):
            return await self.inner.run(params, ctx)

        async def undo(self, undo, ctx):
            raise ConnectionError("worker died while compensating")

    conn = await connect(db)
    with pytest.raises(ConnectionError):
        await SagaExecutor(
            PgStepLog(conn),
            {**actions, "set_child_collections": DiesWhileUndoing(actions["set_child_collections"])},
            PgAudit(conn),
        ).start("copy-1", "copy_product", CHILD_A, "job:9", copy_product_steps(pp.id, CHILD_A))
    await conn.close()
    assert deps.stores[CHILD_A].products  # half done: the product exists in the child

    async with await connect(db) as conn2:
        saga = await PgStepLog(conn2).load("copy-1")
        assert saga.state is SagaState.COMPENSATING
        saga = await SagaExecutor(PgStepLog(conn2), actions, PgAudit(conn2)).run("copy-1")
        assert saga.state is SagaState.COMPENSATED
        assert deps.stores[CHILD_A].products == {} and deps.stores[CHILD_A].levels == {}
        assert [r.action for r in await PgAudit(conn2).query(cause="job:9")] == ["saga_compensated"]
        assert "product_delete" in [r.action for r in deps.audit.records]


async def test_product_payload_digests_are_swapped_newest_first_and_an_older_one_is_not_kept(db):
    from storesync.sync.adapters.postgres import PgProductPayloads
    from storesync.sync.domain.echoes import ProductDigest

    conn = await connect(db)
    payloads = PgProductPayloads(conn)
    first, second = ProductDigest(T0, "f", "s1"), ProductDigest(T0 + timedelta(seconds=1), "f", "s2")
    assert await payloads.swap(CHILD_A, "gid://shopify/Product/1", first) is None
    assert await payloads.swap(CHILD_A, "gid://shopify/Product/1", second) == first
    assert await payloads.swap(CHILD_A, "gid://shopify/Product/1", first) == second  # older: not kept
    assert await payloads.swap(CHILD_A, "gid://shopify/Product/1", second) == second
    assert await payloads.swap(CHILD_B, "gid://shopify/Product/1", second) is None  # per store
    published = ProductDigest(T0 + timedelta(seconds=2), "f", "s2", "p1")  # its publication kept too
    assert await payloads.swap(CHILD_A, "gid://shopify/Product/1", published) == second
    assert await payloads.swap(CHILD_A, "gid://shopify/Product/1", published) == published
    await conn.close()


async def test_products_as_read_are_remembered_unless_a_payload_at_least_as_new_is(db):
    from storesync.sync.adapters.postgres import PgProductPayloads
    from storesync.sync.domain.echoes import ProductDigest

    conn = await connect(db)
    payloads = PgProductPayloads(conn)
    payloads.REMEMBER_BATCH = 2  # several statements for one scan
    one, two, three = (f"gid://shopify/Product/{n}" for n in (1, 2, 3))
    payload = ProductDigest(T0 + timedelta(seconds=1), "f", "s1", "p1")
    assert await payloads.swap(CHILD_A, one, payload) is None
    assert await payloads.swap(CHILD_A, two, payload) is None
    read = ProductDigest(T0 + timedelta(seconds=1), "f", "s-read")  # as new as the payload of 1
    newer = ProductDigest(T0 + timedelta(seconds=2), "f2", "s2")
    kept = await payloads.remember_read(CHILD_A, [(one, read), (two, newer), (three, read)])
    assert kept == 2  # 2 (older payload) and 3 (none): 1's payload is as new and knows more
    assert await payloads.swap(CHILD_A, one, payload) == payload
    assert await payloads.swap(CHILD_A, two, payload) == newer
    assert await payloads.swap(CHILD_A, three, read) == read
    assert await payloads.remember_read(CHILD_B, []) == 0
    await conn.close()
