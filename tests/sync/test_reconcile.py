import asyncio
from dataclasses import dataclass, replace

from storesync.sync.domain.catalog import ChangeCause, SyncPolicy, actual_view, expected_view, same_view
from storesync.sync.domain.model import LinkKind
from storesync.sync.domain.reconcile import (
    ReconcileReport,
    RepairKind,
    diff_catalog,
    diff_inventory,
)
from storesync.sync.services.reconcile import apply_repairs
from tests.fakes import MemoryAudit, MemoryLinks, MemoryStore, MemoryWriteRecords
from tests.sync.builders import (
    A_LOC2,
    C_LOC1,
    CHILD_A,
    CHILD_B,
    CHILD_C,
    P_LOC1,
    P_LOC2,
    PARENT,
    merchant,
    tee,
)
from tests.sync.sagas import copy_now, sync_or_copy

CHILDREN = (CHILD_A, CHILD_B, CHILD_C)


class Fleet:
    def __init__(self):
        self.parent = MemoryStore(PARENT)
        self.children = {s: MemoryStore(s) for s in CHILDREN}
        self.links, self.audit, self.writes = MemoryLinks(), MemoryAudit(), MemoryWriteRecords()
        self.policy = SyncPolicy()
        self.products = [
            self.parent.add_product(tee(handle=f"tee-{i}", skus=(f"T{i}-S", f"T{i}-M"))) for i in range(3)
        ]
        for p in self.products:
            for v in p.variants:
                self.parent.levels[(v.inventory_item_id, P_LOC1)] = 7
                self.parent.levels[(v.inventory_item_id, P_LOC2)] = 3

    async def sync_all(self):
        for store in self.children.values():
            for p in self.products:
                await sync_or_copy(self.parent, store, p.id, self.links, self.policy, self.audit, "job:0")
        maps = await self.maps()
        for shop, store in self.children.items():
            for link in maps[shop].links:
                if link.kind is LinkKind.VARIANT:
                    for ploc, cloc in merchant().location_maps[shop].items():
                        store.levels[(link.child_inventory_item_id, cloc)] = self.parent.levels[
                            (link.parent_inventory_item_id, ploc)
                        ]

    async def maps(self):
        return {s: await self.links.link_map(s) for s in CHILDREN}

    async def report(self) -> ReconcileReport:
        report = ReconcileReport()
        maps = await self.maps()
        self.products = list(self.parent.products.values())
        diff_catalog(
            self.products,
            {s: list(c.products.values()) for s, c in self.children.items()},
            maps,
            self.policy,
            report,
        )
        diff_inventory(
            merchant(),
            dict(self.parent.levels),
            {s: dict(c.levels) for s, c in self.children.items()},
            maps,
            report,
        )
        return report


@dataclass(frozen=True)
class StoreAgreement:
    shop: str
    agrees: bool


def catalog_hashes(parent_shop, parent_products, child_products, link_maps, policy) -> list[StoreAgreement]:
    """One row per store: whether every parent product's copy shows the synced fields the parent
    implies for it (the rule reconciliation repairs by: `catalog.expected_view` vs `actual_view`)."""
    rows = [StoreAgreement(parent_shop, True)]
    for shop, products in child_products.items():
        links = link_maps[shop]
        by_id = {p.id: p for p in products}
        agrees = True
        for p in parent_products:
            child = by_id.get(links.child_id(LinkKind.PRODUCT, p.id))
            if child is None or not same_view(
                actual_view(child, policy, links), expected_view(p, policy, links)
            ):
                agrees = False
        rows.append(StoreAgreement(shop, agrees))
    return rows


def test_synced_stores_need_no_repair_and_their_hashes_agree():
    f = Fleet()
    asyncio.run(f.sync_all())
    report = asyncio.run(f.report())
    assert report.in_sync and report.products_checked == 9 and report.levels_checked == 6 * 4
    maps = asyncio.run(f.maps())
    rows = catalog_hashes(
        PARENT, f.products, {s: list(c.products.values()) for s, c in f.children.items()}, maps, f.policy
    )
    assert [r.shop for r in rows] == [PARENT, *CHILDREN] and all(r.agrees for r in rows)


def test_a_dropped_webhook_is_found_and_repaired():
    f = Fleet()
    asyncio.run(f.sync_all())
    p = f.products[1]
    f.parent.products[p.id] = replace(p, title="Renamed while the webhook was lost")
    v = p.variants[0]
    f.parent.levels[(v.inventory_item_id, P_LOC1)] = 2
    f.children[CHILD_C].levels[next(k for k in f.children[CHILD_C].levels if k[1] == C_LOC1)] += 5
    report = asyncio.run(f.report())
    kinds = sorted((r.kind, r.child_shop) for r in report.repairs)
    assert kinds.count((RepairKind.RESYNC_PRODUCT, CHILD_A)) == 1
    assert (
        sum(1 for k, _ in kinds if k is RepairKind.SET_INVENTORY) == 4
    )  # item in A, B, C; plus C's own drift
    resync = next(r for r in report.repairs if r.kind is RepairKind.RESYNC_PRODUCT)
    assert [(c.field, c.cause) for c in resync.changes] == [("title", ChangeCause.PARENT_CHANGED)]
    assert "Renamed" in resync.describe()
    maps = asyncio.run(f.maps())
    rows = catalog_hashes(
        PARENT, f.products, {s: list(c.products.values()) for s, c in f.children.items()}, maps, f.policy
    )
    assert [r.agrees for r in rows] == [True, False, False, False]
    fixed, left = asyncio.run(
        apply_repairs(
            report.repairs,
            parent_store=f.parent,
            stores=f.children,
            links_repo=f.links,
            writes=f.writes,
            audit=f.audit,
            policy=f.policy,
            cause="reconcile:1",
        )
    )
    assert len(fixed) == len(report.repairs) and left == []
    assert asyncio.run(f.report()).in_sync


def test_missing_and_orphaned_child_products_are_reported():
    f = Fleet()
    asyncio.run(f.sync_all())
    maps = asyncio.run(f.maps())
    gone = maps[CHILD_B].child_id(LinkKind.PRODUCT, f.products[0].id)
    del f.children[CHILD_B].products[gone]
    del f.parent.products[f.products[2].id]
    report = asyncio.run(f.report())
    by_kind = {(r.kind, r.child_shop) for r in report.repairs}
    assert (RepairKind.CREATE_PRODUCT, CHILD_B) in by_kind

    async def copy(shop: str, pid: str) -> None:  # the copy saga, as reconcile runs it
        await copy_now({PARENT: f.parent, shop: f.children[shop]}, f.links, f.policy, f.audit, pid, shop)

    assert {(RepairKind.DELETE_PRODUCT, s) for s in CHILDREN} <= by_kind
    asyncio.run(
        apply_repairs(
            report.repairs,
            parent_store=f.parent,
            stores=f.children,
            links_repo=f.links,
            writes=f.writes,
            audit=f.audit,
            policy=f.policy,
            cause="reconcile:2",
            copy_product=copy,
        )
    )
    assert not [r for r in asyncio.run(f.report()).repairs if r.kind is not RepairKind.SET_INVENTORY]
    # the parent's deleted product: each copy archived (the default), kept, no longer linked
    for child in f.children.values():
        assert [p.status for p in child.products.values() if p.handle == "tee-2"] == ["ARCHIVED"]


def test_a_negative_parent_level_is_expected_as_zero_in_children():
    f = Fleet()
    asyncio.run(f.sync_all())
    item = f.products[0].variants[0].inventory_item_id
    f.parent.levels[(item, P_LOC2)] = -4
    report = asyncio.run(f.report())
    (r,) = report.repairs
    assert (r.child_shop, r.location_id, r.expected, r.actual) == (CHILD_A, A_LOC2, 0, 3)


def test_reconcile_network_reads_every_store_and_finds_the_same_repairs():
    from storesync.sync.services.reconcile import reconcile_network

    f = Fleet()
    asyncio.run(f.sync_all())
    scans = {PARENT: f.parent, **f.children}
    assert asyncio.run(reconcile_network(merchant(), scans, f.links, f.policy)).in_sync
    p = f.products[0]
    f.parent.products[p.id] = replace(p, vendor="Other")
    report = asyncio.run(reconcile_network(merchant(), scans, f.links, f.policy))
    assert sorted(r.child_shop for r in report.repairs) == sorted(CHILDREN)
    assert report.levels_checked == 24


def test_an_incremental_pass_compares_only_what_changed_against_what_each_child_was_last_given():
    from storesync.sync.domain.reconcile import diff_changed_products
    from storesync.sync.domain.routing import JOB_FAN_OUT_LEVEL, JOB_PRODUCT_TO_CHILD, repair_job

    f = Fleet()
    asyncio.run(f.sync_all())
    maps = asyncio.run(f.maps())
    renamed = replace(f.products[1], title="Renamed while the webhook was lost")
    child_copy = f.children[CHILD_B].products[maps[CHILD_B].child_id(LinkKind.PRODUCT, f.products[2].id)]
    edited = replace(child_copy, vendor="Edited in the child")
    unchanged_copy = f.children[CHILD_C].products[maps[CHILD_C].child_id(LinkKind.PRODUCT, f.products[0].id)]
    report = ReconcileReport()
    # products[1] changed in the parent; B's copy of products[2] was edited; C's copy of
    # products[0] was updated (a stock move) without changing a synced field
    diff_changed_products([renamed], {CHILD_B: [edited], CHILD_C: [unchanged_copy]}, maps, f.policy, report)
    assert sorted((r.child_shop, r.parent_id) for r in report.repairs) == sorted(
        [(s, f.products[1].id) for s in CHILDREN] + [(CHILD_B, f.products[2].id)]
    )
    assert {r.kind for r in report.repairs} == {RepairKind.RESYNC_PRODUCT}
    # each repair is the live-sync job that makes it, after live sync (backfill lane)
    job = repair_job(report.repairs[0], "reconcile:1")
    assert job is not None and job.kind == JOB_PRODUCT_TO_CHILD and job.lane == "backfill"
    full = asyncio.run(f.report())
    assert full.in_sync
    f.parent.levels[(f.products[0].variants[0].inventory_item_id, P_LOC1)] = 1
    level_repair = next(r for r in asyncio.run(f.report()).repairs if r.kind is RepairKind.SET_INVENTORY)
    job = repair_job(level_repair, "reconcile:1")
    assert (
        job is not None and job.kind == JOB_FAN_OUT_LEVEL and job.payload.only == (level_repair.child_shop,)
    )
    assert job.payload.parent_location == P_LOC1
