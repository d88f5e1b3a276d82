from storesync.sync.domain.linking import match_catalogs
from storesync.sync.domain.model import LinkKind, LinkMap, MatchedBy
from tests.fakes import MemoryStore
from tests.sync.builders import CHILD_A, tee, variant


def _stores(parent_products, child_products):
    p, c = MemoryStore("p"), MemoryStore(CHILD_A)
    return [p.add_product(x) for x in parent_products], [c.add_product(x) for x in child_products]


def test_variants_match_by_sku_first():
    (pp,), (cp,) = _stores([tee()], [tee(handle="other-handle")])
    report = match_catalogs([pp], [cp], CHILD_A)
    assert [(m.parent.sku, m.child.sku, m.matched_by) for m in report.matches] == [
        ("TEE-M", "TEE-M", MatchedBy.SKU),
        ("TEE-S", "TEE-S", MatchedBy.SKU),
    ]
    links = LinkMap(CHILD_A, report.links())
    assert links.child_id(LinkKind.PRODUCT, pp.id) == cp.id
    for pv in pp.variants:
        cv = next(v for v in cp.variants if v.sku == pv.sku)
        assert links.child_id(LinkKind.VARIANT, pv.id) == cv.id
        assert links.child_item(pv.inventory_item_id) == cv.inventory_item_id
        assert links.parent_item_for_child_variant(cv.id) == pv.inventory_item_id


def test_barcode_matches_when_skus_differ_and_handle_when_both_are_missing():
    parent = tee(skus=("A-S", "A-M"))
    parent = parent.__class__(
        **{
            **parent.__dict__,
            "variants": (variant("A-S", ("Size", "S"), barcode="111"), variant(None, ("Size", "M"))),
        }
    )
    child = tee(skus=("B-S", "B-M"))
    child = child.__class__(
        **{
            **child.__dict__,
            "variants": (variant("B-S", ("Size", "S"), barcode="111"), variant(None, ("Size", "M"))),
        }
    )
    (pp,), (cp,) = _stores([parent], [child])
    report = match_catalogs([pp], [cp], CHILD_A)
    assert sorted((dict(m.parent.option_key)["Size"], m.matched_by) for m in report.matches) == [
        ("M", MatchedBy.HANDLE),
        ("S", MatchedBy.BARCODE),
    ]
    assert ("parent", pp.variants[1].id) in report.missing_sku
    assert ("child", cp.variants[1].id) in report.missing_sku


def test_duplicate_skus_are_reported_and_never_matched():
    dup_parent = tee(handle="a", skus=("X-S", "Y-M"))
    dup_parent2 = tee(handle="b", skus=("X-S", "Z-M"))  # X-S twice in the parent
    child = tee(handle="c", skus=("X-S", "Q-M"))
    pps, (cp,) = _stores([dup_parent, dup_parent2], [child])
    report = match_catalogs(pps, [cp], CHILD_A)
    assert [(d.side, d.key, d.value, len(d.variant_ids)) for d in report.duplicates] == [
        ("parent", "sku", "X-S", 2)
    ]
    assert report.matches == []
    assert cp.variants[0].id in report.unmatched_child
    assert any("duplicate sku 'X-S'" in line for line in report.lines())


def test_product_whose_variants_match_two_products_is_a_conflict_not_a_guess():
    parent = tee(handle="tee", skus=("T-S", "T-M"))
    child1 = tee(handle="tee-small", skus=("T-S",))
    child2 = tee(handle="tee-medium", skus=("T-M",))
    (pp,), cps = _stores([parent], [child1, child2])
    report = match_catalogs([pp], cps, CHILD_A)
    assert [(c.side, c.product_id) for c in report.conflicts] == [("parent", pp.id)]
    assert report.matches == [] and report.links() == []
    assert sorted(report.unmatched_parent) == sorted(v.id for v in pp.variants)


def test_unmatched_variants_on_both_sides_are_listed():
    (pp,), (cp,) = _stores([tee(skus=("T-S", "T-M"))], [tee(skus=("T-S", "T-L"))])
    report = match_catalogs([pp], [cp], CHILD_A)
    assert report.counts()["matched"] == 1
    assert report.unmatched_parent == [pp.variants[1].id]
    assert report.unmatched_child == [cp.variants[1].id]


def test_linking_a_network_stores_links_unless_it_is_a_dry_run():
    import asyncio

    from storesync.sync.domain.model import Collection
    from storesync.sync.services.stores import link_network
    from tests.fakes import MemoryLinks
    from tests.sync.builders import CHILD_B, CHILD_C, PARENT, merchant

    stores = {s: MemoryStore(s) for s in (PARENT, CHILD_A, CHILD_B, CHILD_C)}
    pp = stores[PARENT].add_product(tee())
    stores[PARENT].add_collection(Collection(None, "summer"))
    stores[CHILD_A].add_product(tee())
    stores[CHILD_A].add_collection(Collection(None, "summer"))
    repo = MemoryLinks()
    reports = asyncio.run(link_network(merchant(), stores, None))
    assert [r.counts()["matched"] for r in reports] == [2, 0, 0]
    assert [r.counts()["collections_missing"] for r in reports] == [0, 1, 1]
    assert repo.rows == {}
    asyncio.run(link_network(merchant(), stores, repo))
    lm = asyncio.run(repo.link_map(CHILD_A))
    assert (
        lm.child_id(LinkKind.PRODUCT, pp.id)
        and len([lk for lk in lm.links if lk.kind is LinkKind.COLLECTION]) == 1
    )


def test_linking_records_the_view_of_a_child_already_in_step_and_not_of_one_that_differs():
    """A child linked by SKU that already shows the parent's synced fields is stored with that
    view, as if the engine had written it: the product's first stock move then starts no
    product job for it. One that differs keeps no view, so its first event syncs it."""
    import asyncio
    from dataclasses import replace

    from storesync.sync.domain.catalog import SyncPolicy, expected_view
    from storesync.sync.services.stores import link_network
    from tests.fakes import MemoryLinks
    from tests.sync.builders import CHILD_B, CHILD_C, PARENT, merchant

    stores = {s: MemoryStore(s) for s in (PARENT, CHILD_A, CHILD_B, CHILD_C)}
    pp = stores[PARENT].add_product(tee())
    stores[CHILD_A].add_product(tee())
    stores[CHILD_B].add_product(replace(tee(), title="Renamed in the child"))
    repo = MemoryLinks()
    asyncio.run(link_network(merchant(), stores, repo, SyncPolicy()))
    in_step = asyncio.run(repo.link_map(CHILD_A))
    assert in_step.link_down(LinkKind.PRODUCT, pp.id).synced_view == expected_view(pp, SyncPolicy(), in_step)
    differs = asyncio.run(repo.link_map(CHILD_B))
    assert (
        differs.child_id(LinkKind.PRODUCT, pp.id)
        and differs.link_down(LinkKind.PRODUCT, pp.id).synced_view is None
    )


def test_a_link_map_finds_a_parent_products_media_links_by_lookup():
    """`plan_media` asks for one product's media links per product: a lookup, not a scan of
    every link of the child (quadratic when reconciling a 10,000-product catalog)."""
    from storesync.sync.domain.model import Link

    def media(n: int, product: str) -> Link:
        return Link(
            LinkKind.MEDIA,
            CHILD_A,
            f"gid://shopify/MediaImage/{n}",
            f"gid://shopify/MediaImage/{100 + n}",
            MatchedBy.CREATED,
            parent_product_id=product,
        )

    links = LinkMap(CHILD_A, [media(1, "gid://shopify/Product/1"), media(2, "gid://shopify/Product/2")])
    links.add(media(3, "gid://shopify/Product/1"))
    assert [lk.parent_id for lk in links.media_links_of("gid://shopify/Product/1")] == [
        "gid://shopify/MediaImage/1",
        "gid://shopify/MediaImage/3",
    ]
    assert links.media_links_of("gid://shopify/Product/3") == []
