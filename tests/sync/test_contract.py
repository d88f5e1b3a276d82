"""One contract for the storage ports: the same cases run against the Postgres adapters
(`storesync.sync.adapters.postgres`) and the tests' fakes (`tests.fakes`), so a test written
against a fake proves what the real adapter does. Last-write-wins has one home, the Postgres
guard (`PgAppliedVersions.advance`): its cases are here, and the fake must agree with it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import psycopg
import pytest

from storesync.db.pools import POOLED_CONNECTION_KWARGS
from storesync.sync.adapters.postgres import Storage
from storesync.sync.domain.audit import AuditRecord
from storesync.sync.domain.conflicts import Version
from storesync.sync.domain.inventory import EntryKind, EntryStatus, LedgerEntry, LedgerKey
from storesync.sync.domain.model import Link, LinkKind, MatchedBy, WriteRecord
from storesync.sync.domain.saga import SagaState, StepSpec, StepStatus
from tests.fakes import (
    MemoryAppliedVersions,
    MemoryAudit,
    MemoryLedger,
    MemoryLinks,
    MemoryStepLog,
    MemoryStockAccounts,
    MemoryWriteRecords,
)
from tests.sync.builders import CHILD_A, CHILD_B, P_LOC1
from tests.sync.test_inventory import P_ITEM

T0 = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


@pytest.fixture(params=["postgres", "fake"])
async def storage(request) -> AsyncIterator[object]:
    """The storage ports: on a real, migrated database, or the fakes."""
    if request.param == "fake":
        writes = MemoryWriteRecords()
        accounts = MemoryStockAccounts()
        yield SimpleNamespace(
            links=MemoryLinks(writes),
            ledger=MemoryLedger(accounts),
            accounts=accounts,
            writes=writes,
            versions=MemoryAppliedVersions(),
            steps=MemoryStepLog(),
            audit=MemoryAudit(),
        )
        return
    db = request.getfixturevalue("db")
    async with await psycopg.AsyncConnection.connect(
        db.dsn, **{**POOLED_CONNECTION_KWARGS, "autocommit": True}
    ) as conn:
        yield Storage(conn)


# --------------------------------------------------------------------------- links


async def test_links_round_trip_and_keep_their_synced_view(storage):
    repo = storage.links
    variant = Link(
        LinkKind.VARIANT,
        CHILD_A,
        "gid://shopify/ProductVariant/1",
        "gid://shopify/ProductVariant/9",
        MatchedBy.SKU,
        "gid://shopify/Product/1",
        "gid://shopify/Product/8",
        "gid://shopify/InventoryItem/1",
        "gid://shopify/InventoryItem/9",
    )
    product = Link(
        LinkKind.PRODUCT,
        CHILD_A,
        "gid://shopify/Product/1",
        "gid://shopify/Product/8",
        MatchedBy.SKU,
        synced_view={"title": "Tee", "variants": {"a": {"price": "1.00"}}},
    )
    assert await repo.save_links([variant, product]) == 2
    # a later write without a view (and another matched_by) keeps the view and how it was first matched
    await repo.save_links(
        [
            Link(
                LinkKind.PRODUCT,
                CHILD_A,
                "gid://shopify/Product/1",
                "gid://shopify/Product/8",
                MatchedBy.CREATED,
            )
        ]
    )
    lm = await repo.link_map(CHILD_A)
    assert lm.link_down(LinkKind.PRODUCT, "gid://shopify/Product/1").synced_view == product.synced_view
    assert lm.link_down(LinkKind.PRODUCT, "gid://shopify/Product/1").matched_by is MatchedBy.SKU
    assert lm.link_down(LinkKind.VARIANT, variant.parent_id) == variant
    assert lm.parent_item_for_child_variant(variant.child_id) == "gid://shopify/InventoryItem/1"
    assert [lk.child_shop for lk in await repo.links_down(LinkKind.VARIANT, variant.parent_id)] == [CHILD_A]
    assert await repo.links_for_parent_item("gid://shopify/InventoryItem/1") == [variant]
    await repo.set_synced_view(CHILD_A, "gid://shopify/Product/1", {"title": "New"})
    assert (await repo.link_map(CHILD_A)).link_down(LinkKind.PRODUCT, product.parent_id).synced_view == {
        "title": "New"
    }
    await repo.delete_link(CHILD_A, LinkKind.VARIANT, variant.parent_id)
    assert (await repo.link_map(CHILD_A)).child_id(LinkKind.VARIANT, variant.parent_id) is None


async def test_a_webhook_reads_only_the_links_it_names(storage):
    """`child_links`: the links of some of a child's products, variants, inventory items (and its
    collection links when asked), not its whole map."""
    repo = storage.links
    await repo.save_links(
        [
            Link(LinkKind.PRODUCT, CHILD_A, "p1", "cp1", MatchedBy.SKU),
            Link(LinkKind.PRODUCT, CHILD_A, "p2", "cp2", MatchedBy.SKU),
            Link(LinkKind.VARIANT, CHILD_A, "v1", "cv1", MatchedBy.SKU, "p1", "cp1", "i1", "ci1"),
            Link(LinkKind.VARIANT, CHILD_A, "v2", "cv2", MatchedBy.SKU, "p2", "cp2", "i2", "ci2"),
            Link(LinkKind.COLLECTION, CHILD_A, "c1", "cc1", MatchedBy.HANDLE),
            Link(LinkKind.PRODUCT, CHILD_B, "p1", "cp1", MatchedBy.SKU),
        ]
    )

    def ids(lm):
        return sorted((lk.kind, lk.child_id) for lk in lm.links)

    assert ids(await repo.child_links(CHILD_A, products=["cp1"])) == [(LinkKind.PRODUCT, "cp1")]
    assert ids(await repo.child_links(CHILD_A, variants=["cv2"], items=["ci2", "ci1"])) == [
        (LinkKind.VARIANT, "cv1"),
        (LinkKind.VARIANT, "cv2"),
    ]
    assert ids(await repo.child_links(CHILD_A, collections=True)) == [(LinkKind.COLLECTION, "cc1")]
    assert ids(await repo.child_links(CHILD_B)) == []
    assert [lk.child_id for lk in await repo.links_of(CHILD_A, LinkKind.PRODUCT, parent_ids=["p2"])] == [
        "cp2"
    ]
    assert [lk.parent_id for lk in await repo.links_of(CHILD_A, LinkKind.COLLECTION, child_ids=["cc1"])] == [
        "c1"
    ]


# --------------------------------------------------------------------------- the ledger


def entry(delta=-1, line="gid://shopify/LineItem/1") -> LedgerEntry:
    return LedgerEntry(
        LedgerKey(CHILD_A, line, EntryKind.SALE), "gid://shopify/Order/1", P_ITEM, P_LOC1, delta, "delivery:1"
    )


async def test_ledger_entries_move_claimed_planned_applied_once(storage):
    ledger = storage.ledger
    stored, created = await ledger.claim(entry())
    assert created and stored.status is EntryStatus.CLAIMED
    again, created = await ledger.claim(entry())
    assert not created and again == stored
    with pytest.raises(ValueError, match="different content"):
        await ledger.claim(entry(delta=-5))
    first = await ledger.plan(stored.key, -1, 0, 0)
    other = await ledger.plan(stored.key, -1, 0, 4)  # a second planner gets the first plan
    assert (first.applied_delta, other.expected_after, other.plan_no) == (-1, 0, 0)
    # the compare-and-set lost: a new plan replaces plan 0, once
    planned = await ledger.plan(stored.key, 0, 1, 0, replan_of=0)
    late = await ledger.plan(stored.key, -1, 0, 9, replan_of=0)
    assert (planned.plan_no, planned.applied_delta, late) == (1, 0, planned)
    assert planned.idempotency_key != first.idempotency_key
    assert await ledger.unfinished(P_ITEM, P_LOC1) == [planned]
    assert await ledger.mark_applied(stored.key, 0)
    assert not await ledger.mark_applied(stored.key, 0)
    assert await ledger.backlog(P_ITEM, P_LOC1) == 1
    assert await ledger.unfinished(P_ITEM, P_LOC1) == []
    restock = LedgerEntry(
        LedgerKey(CHILD_A, "gid://shopify/LineItem/1", EntryKind.RESTOCK, "r1"),
        "gid://shopify/Order/1",
        P_ITEM,
        P_LOC1,
        1,
        "delivery:2",
    )
    await ledger.claim(restock)
    assert await ledger.restocked(CHILD_A, "gid://shopify/LineItem/1") == 1
    assert (await ledger.get(restock.key)).status is EntryStatus.CLAIMED


async def test_a_counter_counts_each_unit_of_a_line_once_and_the_account_follows_it(storage):
    """Top-ups of a line's units sold: a duplicate returns the entry already claimed, a lower
    count claims nothing, a higher one claims only the units not counted; each new entry moves
    the stock account of the child level it happened at (kept for a child under policy report)."""
    ledger, accounts = storage.ledger, storage.accounts
    await accounts.open(CHILD_A, "ci", "cl", 10)
    sale = LedgerEntry(
        LedgerKey(CHILD_A, "gid://shopify/LineItem/5", EntryKind.SALE),
        "gid://shopify/Order/5",
        P_ITEM,
        P_LOC1,
        -1,
        "delivery:1",
        child_item_id="ci",
        child_location_id="cl",
    )
    two = await ledger.claim_top_up(sale, 2)
    assert (two.key.ref, two.requested_delta) == ("2", -2)
    assert await ledger.claim_top_up(sale, 2) == two
    assert await ledger.claim_top_up(sale, 1) is None
    three = await ledger.claim_top_up(sale, 3)
    assert (three.key.ref, three.requested_delta) == ("3", -1)
    assert (await accounts.get(CHILD_A, "ci", "cl")).expected == 7
    rows = await ledger.order_entries(CHILD_A, "gid://shopify/Order/5")
    assert sorted((r.ref, r.requested_delta, r.child_location_id) for r in rows) == [
        ("2", -2, "cl"),
        ("3", -1, "cl"),
    ]
    assert (await ledger.orders_entries(CHILD_A, ["gid://shopify/Order/5", "none"]))["none"] == []
    # a write storesync makes there: recorded before, settled after
    await accounts.begin_write(CHILD_A, "ci", "cl", 7, 9, "k1")
    assert (await accounts.get(CHILD_A, "ci", "cl")).pending.to == 9
    await accounts.end_write(CHILD_A, "ci", "cl", "k1", landed=True)
    await accounts.begin_write(CHILD_A, "ci", "cl", 9, 4, "k2")
    await accounts.end_write(CHILD_A, "ci", "cl", "k2", landed=False)
    account = await accounts.get(CHILD_A, "ci", "cl")
    assert (account.expected, account.pending) == (9, None)
    assert await accounts.take_move(CHILD_A, "ci", "cl", 1, 3)
    assert not await accounts.take_move(CHILD_A, "ci", "cl", 1, 3)
    assert (await accounts.open(CHILD_A, "ci", "cl", 0)).expected == 12  # opened already


# --------------------------------------------------------------------------- write records, versions, audit


async def test_write_records_and_applied_versions(storage):
    writes, versions = storage.writes, storage.versions
    for s, q in ((0, 5), (2, 4), (1, 6)):
        await writes.record_write(WriteRecord(CHILD_A, "i", "l", q, T0 + timedelta(seconds=s), "job:1"))
    recent = await writes.recent_writes(CHILD_A, "i", "l", T0 + timedelta(seconds=1))
    assert [r.quantity for r in recent] == [4, 6]
    newest = await writes.recent_writes(CHILD_A, "i", "l", T0, limit=1)  # a fan-out's guess
    assert [r.quantity for r in newest] == [4]
    assert await writes.prune(T0 + timedelta(seconds=1)) == 1
    assert await versions.advance(CHILD_A, "i", "l", T0, "b")
    assert await versions.advance(CHILD_A, "i", "l", T0, "b")  # the same event again
    assert not await versions.advance(CHILD_A, "i", "l", T0, "a")  # older tiebreak: stale
    assert not await versions.advance(CHILD_A, "i", "l", T0 - timedelta(seconds=1), "z")
    assert await versions.advance(CHILD_A, "i", "l", T0 + timedelta(seconds=1), "a")
    assert await versions.current(CHILD_A, "i", "l") == (T0 + timedelta(seconds=1), "a")
    assert await versions.current(CHILD_A, "i", "x") is None
    # a copy's levels that moved after it wrote them (to fan out once it is linked)
    await versions.advance(CHILD_A, "j", "l", T0 - timedelta(seconds=5), "a")
    levels = [("i", "l"), ("j", "l"), ("i", "x")]
    assert await versions.moved_since(CHILD_A, levels, T0) == [("i", "l")]
    assert await versions.moved_since(CHILD_A, levels, T0 - timedelta(seconds=9)) == [
        ("i", "l"),
        ("j", "l"),
    ]
    assert await versions.moved_since(CHILD_B, levels, T0 - timedelta(seconds=9)) == []
    assert await versions.moved_since(CHILD_A, [], T0) == []


async def test_batched_reads_and_advances_answer_as_one_by_one(storage):
    """The batched siblings a batch of level webhooks is judged with at ingest: write records of
    several levels (each its own since), versions advanced as if one by one in the given order
    (a level given twice: the second judged after the first), the parent items of child items."""
    writes, versions = storage.writes, storage.versions
    for item, s, q in (("i", 0, 5), ("i", 2, 4), ("j", 1, 7)):
        await writes.record_write(WriteRecord(CHILD_A, item, "l", q, T0 + timedelta(seconds=s), "job:1"))
    found = await writes.recent_writes_of_levels(
        [
            (CHILD_A, "i", "l", T0 + timedelta(seconds=1)),
            (CHILD_A, "k", "l", T0),
            (CHILD_A, "i", "l", T0),
            (CHILD_B, "j", "l", T0),
            (CHILD_A, "j", "l", T0),
        ]
    )
    assert [[r.quantity for r in rs] for rs in found] == [[4], [], [4, 5], [], [7]]
    assert await writes.recent_writes_of_levels([]) == []

    await versions.advance(CHILD_A, "i", "l", T0, "b")
    one = timedelta(seconds=1)
    answers = await versions.advance_many(
        [
            (CHILD_A, "i", "l", T0 - one, "z"),  # older than the applied one: stale
            (CHILD_A, "j", "l", T0 + one, "a"),  # new level
            (CHILD_A, "j", "l", T0, "a"),  # older than the one just before it: stale
            (CHILD_A, "i", "l", T0 + one, "a"),  # newer than the applied one
            (CHILD_A, "j", "l", T0 + one, "a"),  # the same version again: goes through
        ]
    )
    assert answers == [False, True, False, True, True]
    assert await versions.current(CHILD_A, "i", "l") == (T0 + one, "a")
    assert await versions.current(CHILD_A, "j", "l") == (T0 + one, "a")
    assert await versions.advance_many([]) == []

    await storage.links.save_links(
        [
            Link(LinkKind.VARIANT, CHILD_A, "v1", "cv1", MatchedBy.SKU, "p1", "cp1", "i1", "ci1"),
            Link(LinkKind.VARIANT, CHILD_B, "v1", "cv1", MatchedBy.SKU, "p1", "cp1", "i1", "cbi1"),
            Link(LinkKind.PRODUCT, CHILD_A, "p1", "cp1", MatchedBy.SKU),
        ]
    )
    asked = [(CHILD_A, "ci1"), (CHILD_A, "cbi1"), (CHILD_B, "cbi1"), (CHILD_B, "ci9")]
    assert await storage.links.parent_items_of(asked) == {(CHILD_A, "ci1"): "i1", (CHILD_B, "cbi1"): "i1"}
    assert await storage.links.parent_items_of([]) == {}


# --------------------------------------------------------------------------- last write wins


async def test_older_deliveries_are_stale_and_equal_ones_are_not(storage):
    """The version guard: an older version than the one applied is refused (stale); the same
    version again goes through (the same event: harmless); ties are broken by the tiebreak."""
    v = storage.versions

    async def advance(version: Version, item: str = "i") -> bool:
        return await v.advance(CHILD_A, item, "l", version.at, version.tiebreak)

    assert await advance(Version(T0 + timedelta(seconds=1)))
    assert not await advance(Version(T0))  # older than the applied one: stale
    assert await advance(Version(T0 + timedelta(seconds=1)))  # the same event again: goes through
    assert await advance(Version(T0), "j")  # nothing applied yet: not stale
    assert await advance(Version(T0 + timedelta(seconds=2)), "j")  # newer: not stale
    assert await advance(Version(T0, "b"), "k")
    assert not await advance(Version(T0, "a"), "k")  # ties are broken the same way everywhere


async def test_last_write_wins_among_competing_absolute_sets_whatever_their_order(storage):
    """Of competing absolute sets (version, quantity), the one applied last in version order wins,
    whatever order they are delivered in."""
    sets = [(Version(T0 + timedelta(seconds=s), f"e{s}"), q) for s, q in [(3, 7), (1, 9), (2, 4)]]
    for item, order in (("i1", sets), ("i2", list(reversed(sets)))):
        kept = None
        for version, quantity in order:
            if await storage.versions.advance(CHILD_A, item, "l", version.at, version.tiebreak):
                kept = quantity
        assert kept == 7
        assert await storage.versions.current(CHILD_A, item, "l") == (T0 + timedelta(seconds=3), "e3")


async def test_audit_trail_is_queryable_by_store_object_and_cause(storage):
    audit = storage.audit
    for n in range(3):
        await audit.record(
            AuditRecord(
                CHILD_A if n < 2 else CHILD_B,
                "product",
                f"p{n % 2}",
                "product_set",
                {"title": "a"},
                {"title": "b", "n": n},
                f"job:{n}",
                T0 + timedelta(seconds=n),
            )
        )
    assert [r.after["n"] for r in await audit.query(shop=CHILD_A)] == [1, 0]
    assert [r.after["n"] for r in await audit.query(object_id="p0")] == [2, 0]
    (one,) = await audit.query(cause="job:1")
    assert (one.shop, one.before, one.at) == (CHILD_A, {"title": "a"}, T0 + timedelta(seconds=1))
    assert len(await audit.query(limit=2)) == 2


# --------------------------------------------------------------------------- saga step log


async def test_the_step_log_creates_once_starts_each_step_once_and_lists_what_is_unfinished(storage):
    log = storage.steps
    steps = [StepSpec("create", "a", {"n": 1}), StepSpec("levels", "b", {})]
    first = await log.create("copy:s:p1", "copy_product", CHILD_A, "job:1", steps)
    again = await log.create("copy:s:p1", "copy_product", CHILD_A, "job:2", steps[:1])
    assert (
        (again.cause, len(again.steps), again.state)
        == ("job:1", 2, SagaState.RUNNING)
        == (
            first.cause,
            len(first.steps),
            first.state,
        )
    )
    assert await log.step_started("copy:s:p1", 0, {"undo": 1})
    assert not await log.step_started("copy:s:p1", 0, {"undo": 2})  # another executor got there first
    await log.step_refused("copy:s:p1", 0)  # it did nothing: pending again, no undo
    loaded = await log.load("copy:s:p1")
    assert (loaded.steps[0].status, loaded.steps[0].undo) == (StepStatus.PENDING, None)
    assert await log.step_started("copy:s:p1", 0, {"undo": 3})
    await log.step_done("copy:s:p1", 0, {"child_product_id": "x"})
    await log.create("copy:s:p2", "copy_product", CHILD_B, "job:3", steps)
    await log.set_state("copy:s:p2", SagaState.COMPENSATED, "boom")
    loaded = await log.load("copy:s:p1")
    assert [(s.status, s.result) for s in loaded.steps] == [
        (StepStatus.DONE, {"child_product_id": "x"}),
        (StepStatus.PENDING, None),
    ]
    assert await log.unfinished() == ["copy:s:p1"]
    assert await log.unfinished_sagas() == [("copy:s:p1", CHILD_A)]
    assert await log.states("copy_product") == {
        "copy:s:p1": SagaState.RUNNING,
        "copy:s:p2": SagaState.COMPENSATED,
    }
    assert await log.load("copy:s:nope") is None
