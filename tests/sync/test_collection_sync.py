"""Collection objects (`sync.domain.collections`, `sync.services.collections`): parent precedence for a collection's own fields, links
by handle, child edits reverted, child-only collections untouched, memberships left to product
jobs; routing of the collection webhooks."""

import asyncio
import itertools
from dataclasses import replace

import pytest

from storesync.queue.payloads import encode
from storesync.sync.domain.catalog import CatalogBlocked, ChangeCause
from storesync.sync.domain.collections import (
    CollectionAction,
    collection_view,
    membership_resyncs,
    plan_child_collection,
)
from storesync.sync.domain.echoes import collection_shows_last_write
from storesync.sync.domain.model import Collection, CollectionCondition, Link, LinkKind, MatchedBy
from storesync.sync.domain.reconcile import ReconcileReport, RepairKind, diff_collections
from storesync.sync.domain.routing import JOB_COLLECTION_TO_CHILD, route_collection_webhook
from storesync.sync.services.collections import sync_collection_to_child
from storesync.sync.services.reconcile import apply_repairs
from tests.fakes import MemoryAudit, MemoryLinks
from tests.sync.builders import CHILD_A, CHILD_B, CHILD_C, PARENT, merchant

_ids = itertools.count(500)
SALE_TAG = CollectionCondition("productTag", "TAGGED_WITH", ("sale",), "ANY")


def run(coro):
    return asyncio.run(coro)


class FakeCollections:
    """A store's collections as Shopify keeps them (handles unique, members by product id)."""

    def __init__(self, shop: str) -> None:
        self.shop = shop
        self.collections: dict[str, Collection] = {}
        self.calls: list[str] = []

    def add(self, c: Collection) -> Collection:
        c = replace(c, id=c.id or f"gid://shopify/Collection/{next(_ids)}", product_ids=c.product_ids or ())
        self.collections[c.id] = c
        return c

    async def read_collection(self, collection_id, *, with_products=False):
        c = self.collections.get(collection_id)
        return c if c is None or with_products else replace(c, product_ids=None)

    async def all_collections(self):
        for c in list(self.collections.values()):
            yield replace(c, product_ids=None)

    async def find_collection_by_handle(self, handle):
        return next(
            (replace(c, product_ids=None) for c in self.collections.values() if c.handle == handle), None
        )

    def _apply(self, c: Collection, inp: dict) -> Collection:
        seo = inp.get("seo") or {}
        sources = inp.get("sources") or inp.get("sourcesToCreate")
        inclusion = sources[0]["source"]["inclusion"] if sources else None
        return replace(
            c,
            title=inp.get("title", c.title),
            handle=inp.get("handle", c.handle),
            description_html=inp.get("descriptionHtml", c.description_html),
            sort_order=inp.get("sortOrder", c.sort_order),
            seo_title=seo.get("title", c.seo_title),
            seo_description=seo.get("description", c.seo_description),
            conditions=c.conditions
            if inclusion is None
            else tuple(
                CollectionCondition(kind, spec["relation"], tuple(spec["values"]), spec["matchType"])
                for cond in inclusion["conditions"]
                for kind, spec in cond.items()
            ),
            disjunctive=c.disjunctive if inclusion is None else inclusion["matchType"] == "ANY",
        )

    async def create_collection(self, inp):
        self.calls.append("create")
        assert all(c.handle != inp["handle"] for c in self.collections.values()), "handle taken"
        return self.add(self._apply(Collection(None, inp["handle"]), inp))

    async def update_collection(self, collection_id, inp):
        self.calls.append("update")
        c = self._apply(self.collections[collection_id], inp)
        self.collections[collection_id] = c
        return c

    async def delete_collection(self, collection_id):
        self.calls.append("delete")
        self.collections.pop(collection_id, None)


class Links(MemoryLinks):
    async def links_of(self, child_shop, kind, *, parent_ids=(), child_ids=()):
        return [
            lk
            for (s, k, _), lk in sorted(self.rows.items())
            if s == child_shop and k is kind and (lk.parent_id in parent_ids or lk.child_id in child_ids)
        ]


class World:
    def __init__(self) -> None:
        self.parent, self.child = FakeCollections(PARENT), FakeCollections(CHILD_A)
        self.links, self.audit = Links(), MemoryAudit()
        self.pc = self.parent.add(
            Collection(
                None, "outerwear", "Outerwear", "<p>coats</p>", "ALPHA_ASC", "Outer", "Coats and jackets"
            )
        )

    async def sync(self):
        return await sync_collection_to_child(
            self.parent, self.child, self.pc.id, self.links, self.audit, "job:1"
        )

    def link(self) -> Link | None:
        return self.links.rows.get((CHILD_A, LinkKind.COLLECTION, self.pc.id))

    def child_copy(self) -> Collection:
        return self.child.collections[self.link().child_id]

    def edit_parent(self, **changes) -> None:
        self.pc = self.parent.collections[self.pc.id] = replace(self.pc, **changes)


def test_a_parent_collection_is_created_in_the_child_with_its_synced_fields_and_linked():
    w = World()
    out = run(w.sync())
    assert out.action is CollectionAction.CREATED
    copy = w.child_copy()
    assert collection_view(copy) == collection_view(w.pc)
    assert w.link().matched_by is MatchedBy.CREATED and w.link().synced_view == collection_view(w.pc)
    assert run(w.sync()).action is CollectionAction.UNCHANGED and w.child.calls == ["create"]


def test_a_child_collection_of_the_same_handle_is_adopted_not_duplicated():
    w = World()
    own = w.child.add(Collection(None, "outerwear", "Jackets"))
    out = run(w.sync())
    assert out.action is CollectionAction.UPDATED and w.child.calls == ["update"]
    assert w.link().child_id == own.id and w.link().matched_by is MatchedBy.HANDLE
    assert w.child_copy().title == "Outerwear"
    assert [c.cause for c in out.plan.changes] == [ChangeCause.DRIFT] * len(out.plan.changes)


def test_a_parent_rename_is_applied_and_a_child_edit_is_reverted_and_audited():
    w = World()
    run(w.sync())
    w.edit_parent(title="Coats")
    out = run(w.sync())
    assert w.child_copy().title == "Coats" and [c.cause for c in out.plan.changes] == [
        ChangeCause.PARENT_CHANGED
    ]
    cid = w.link().child_id
    w.child.collections[cid] = replace(w.child.collections[cid], title="Child title", sort_order="MANUAL")
    assert not collection_shows_last_write(w.child.collections[cid], w.link())
    out = run(w.sync())
    assert {c.field: c.cause for c in out.plan.changes} == {
        "title": ChangeCause.CHILD_EDIT_REVERTED,
        "sort_order": ChangeCause.CHILD_EDIT_REVERTED,
    }
    assert (w.child_copy().title, w.child_copy().sort_order) == ("Coats", "ALPHA_ASC")
    assert collection_shows_last_write(w.child_copy(), w.link())  # its own collections/update is an echo
    reverts = [r for r in w.audit.records if r.action == "revert_child_edit"]
    assert [(r.before, r.after) for r in reverts] == [("MANUAL", "ALPHA_ASC"), ("Child title", "Coats")]


def test_a_parent_delete_removes_only_the_linked_collection_and_child_only_ones_stay():
    w = World()
    run(w.sync())
    own = w.child.add(Collection(None, "child-picks", "Child picks"))
    copy_id = w.link().child_id
    del w.parent.collections[w.pc.id]
    out = run(w.sync())
    assert out.action is CollectionAction.DELETED and copy_id not in w.child.collections
    assert w.link() is None and own.id in w.child.collections
    assert run(w.sync()).action is CollectionAction.NOTHING  # again: nothing linked, nothing done
    assert w.child.calls.count("delete") == 1


def test_a_linked_collection_deleted_in_the_child_is_made_again():
    w = World()
    run(w.sync())
    del w.child.collections[w.link().child_id]
    assert run(w.sync()).action is CollectionAction.CREATED
    assert w.child_copy().handle == "outerwear"


def test_a_child_collection_linked_to_another_parent_collection_is_not_taken_over():
    w = World()
    other = w.child.add(Collection(None, "outerwear", "Outerwear"))
    run(
        w.links.save_links(
            [Link(LinkKind.COLLECTION, CHILD_A, "gid://shopify/Collection/1", other.id, MatchedBy.HANDLE)]
        )
    )
    with pytest.raises(CatalogBlocked, match="linked to another parent collection"):
        run(w.sync())
    assert w.child.calls == []


def test_images_compare_by_file_name_and_a_child_image_the_parent_lacks_is_removed():
    from storesync.sync.domain.model import Image

    parent = Collection(
        "gid://shopify/Collection/1", "sale", "Sale", image=Image("https://a.example/x/sale.png?v=1", "S")
    )
    child = replace(
        parent, id="gid://shopify/Collection/2", image=Image("https://cdn.example/y/sale.png?v=9", "S")
    )
    assert plan_child_collection(parent, child, CHILD_A, None).noop
    plan = plan_child_collection(replace(parent, image=None), child, CHILD_A, None)
    assert [c.field for c in plan.changes] == ["image"] and plan.input["image"] is None


def test_a_smart_collection_cannot_be_written_over_a_manual_one():
    parent = Collection("gid://shopify/Collection/1", "sale", "Sale", conditions=(SALE_TAG,))
    plan = plan_child_collection(
        parent, Collection("gid://shopify/Collection/2", "sale", "Sale"), CHILD_A, None
    )
    assert plan.blocked and "smart in the parent but manual" in plan.blocked
    created = plan_child_collection(parent, None, CHILD_A, None)
    assert created.input["sources"] == [
        {
            "source": {
                "title": "Sale",
                "targetType": "PRODUCTS",
                "inclusion": {
                    "matchType": "ALL",
                    "conditions": [
                        {"productTag": {"matchType": "ANY", "relation": "TAGGED_WITH", "values": ["sale"]}}
                    ],
                },
            }
        }
    ]
    # A new condition in the parent replaces the child's source in the same update.
    child = replace(parent, id="gid://shopify/Collection/2", source_id="gid://shopify/CollectionSource/9")
    moved = replace(
        parent, conditions=(CollectionCondition("productTag", "TAGGED_WITH", ("clearance",), "ANY"),)
    )
    update = plan_child_collection(moved, child, CHILD_A, None)
    assert update.input["sourcesToDelete"] == ["gid://shopify/CollectionSource/9"]
    assert update.input["sourcesToCreate"][0]["source"]["inclusion"]["conditions"][0]["productTag"][
        "values"
    ] == ["clearance"]
    assert "sourcesToCreate" not in plan_child_collection(parent, child, CHILD_A, None).input


def test_a_condition_on_store_specific_ids_blocks_the_collection():
    parent = Collection(
        "gid://shopify/Collection/1",
        "shoes",
        "Shoes",
        conditions=(CollectionCondition("productCategory", "EQUALS"),),
    )
    plan = plan_child_collection(parent, None, CHILD_A, None)
    assert plan.blocked and "productCategory" in plan.blocked


def test_products_in_the_wrong_place_for_a_manual_collection_are_named_for_a_resync():
    links = [Link(LinkKind.PRODUCT, CHILD_A, f"P{n}", f"C{n}", MatchedBy.SKU) for n in (1, 2, 3)]
    parent = Collection("p", "h", product_ids=("P1", "P2", "P9"))  # P9: not in the child
    # C2 is missing from the child's collection, C3 must leave it, X (child-only) stays.
    assert membership_resyncs(parent, ["C1", "C3", "X"], links) == ["P2", "P3"]
    smart = replace(parent, conditions=(CollectionCondition("productTag", "TAGGED_WITH", ("x",), "ANY"),))
    assert membership_resyncs(smart, [], links) == []


def test_the_collection_job_names_the_members_whose_copies_must_join():
    w = World()
    w.edit_parent(product_ids=("gid://shopify/Product/1", "gid://shopify/Product/2"))
    run(
        w.links.save_links(
            [
                Link(
                    LinkKind.PRODUCT,
                    CHILD_A,
                    "gid://shopify/Product/1",
                    "gid://shopify/Product/11",
                    MatchedBy.SKU,
                )
            ]
        )
    )
    out = run(w.sync())
    assert out.resync_products == ("gid://shopify/Product/1",)  # product 2 has no copy yet: its own job


def test_collection_webhooks_route_parent_events_to_every_child_and_child_events_to_linked_ones():
    m = merchant()
    routed = route_collection_webhook(m, PARENT, "collections/update", {"id": 5}, None, "delivery:1")
    key = "collection:{}:gid://shopify/Collection/5"
    assert [(j.kind, j.singleton_key, j.lock_key) for j in routed.jobs] == [
        (JOB_COLLECTION_TO_CHILD, key.format(s), key.format(s)) for s in (CHILD_A, CHILD_B, CHILD_C)
    ]
    link = Link(
        LinkKind.COLLECTION,
        CHILD_A,
        "gid://shopify/Collection/5",
        "gid://shopify/Collection/50",
        MatchedBy.CREATED,
    )
    (job,) = route_collection_webhook(m, CHILD_A, "collections/update", {"id": 50}, link, "d").jobs
    assert encode(job.payload) == {  # the payload as the queue stores it
        "parent_collection_id": "gid://shopify/Collection/5",
        "child_shop": CHILD_A,
        "cause": "d",
    }
    assert route_collection_webhook(m, CHILD_A, "collections/update", {"id": 51}, None, "d").ignored
    assert route_collection_webhook(m, CHILD_A, "collections/create", {"id": 50}, link, "d").ignored
    assert route_collection_webhook(m, CHILD_A, "collections/delete", {"id": 50}, link, "d").jobs


async def _reconcile(w: World, *, repair: bool) -> ReconcileReport:
    report = ReconcileReport()
    parent = [c async for c in w.parent.all_collections()]
    child = {CHILD_A: [c async for c in w.child.all_collections()]}
    diff_collections(parent, child, {CHILD_A: await w.links.link_map(CHILD_A)}, report)
    if repair:
        fixed, left = await apply_repairs(
            report.repairs,
            parent_store=w.parent,
            stores={},
            links_repo=w.links,
            writes=None,
            audit=w.audit,
            policy=None,
            cause="reconcile:test",
            collection_stores={PARENT: w.parent, CHILD_A: w.child},
        )
        assert (fixed, left) == (report.repairs, [])
    return report


def test_reconciliation_creates_reverts_and_deletes_linked_collections_and_leaves_child_only_ones():
    w = World()
    gone = w.parent.add(Collection(None, "gone-soon", "Gone soon"))
    own = w.child.add(Collection(None, "child-picks", "Child picks"))
    report = run(_reconcile(w, repair=True))
    assert sorted(r.reason for r in report.repairs) == ["not in the child yet"] * 2
    assert report.collections_checked == 2
    assert run(_reconcile(w, repair=False)).in_sync

    cid = w.link().child_id
    w.child.collections[cid] = replace(w.child.collections[cid], title="Edited while we were down")
    del w.parent.collections[gone.id]
    report = run(_reconcile(w, repair=True))
    assert sorted(r.kind for r in report.repairs) == [
        RepairKind.DELETE_COLLECTION,
        RepairKind.SYNC_COLLECTION,
    ]
    (sync,) = [r for r in report.repairs if r.kind is RepairKind.SYNC_COLLECTION]
    assert [(c.field, c.cause) for c in sync.changes] == [("title", ChangeCause.CHILD_EDIT_REVERTED)]
    assert w.child_copy().title == "Outerwear" and own.id in w.child.collections
    assert [c.handle for c in w.child.collections.values()] == ["child-picks", "outerwear"]
    assert run(_reconcile(w, repair=False)).in_sync


def test_memberships_of_linked_smart_collections_are_left_to_each_stores_rules():
    from storesync.sync.domain.catalog import SyncPolicy, expected_view, plan_child_product
    from storesync.sync.domain.model import LinkMap
    from tests.sync.builders import tee

    smart_view = collection_view(Collection("x", "sale", "Sale", conditions=(SALE_TAG,)))
    links = LinkMap(
        CHILD_A,
        [
            Link(
                LinkKind.COLLECTION,
                CHILD_A,
                "gid://shopify/Collection/1",
                "gid://shopify/Collection/11",
                MatchedBy.CREATED,
                synced_view=collection_view(Collection("y", "basics", "Basics")),
            ),
            Link(
                LinkKind.COLLECTION,
                CHILD_A,
                "gid://shopify/Collection/2",
                "gid://shopify/Collection/12",
                MatchedBy.CREATED,
                synced_view=smart_view,
            ),
        ],
    )
    parent = replace(
        tee(),
        id="gid://shopify/Product/1",
        collections=("gid://shopify/Collection/1", "gid://shopify/Collection/2"),
    )
    assert expected_view(parent, SyncPolicy(), links)["collections"] == ["gid://shopify/Collection/1"]
    child = replace(
        tee(),
        id="gid://shopify/Product/9",
        collections=("gid://shopify/Collection/12", "gid://shopify/Collection/13"),
    )  # 13: child's own
    plan = plan_child_product(parent, child, links, SyncPolicy())
    assert plan.input["collections"] == ["gid://shopify/Collection/11", "gid://shopify/Collection/13"]
    assert plan_child_product(parent, None, links, SyncPolicy()).input["collections"] == [
        "gid://shopify/Collection/11"
    ]
