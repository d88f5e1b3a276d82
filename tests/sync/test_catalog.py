from dataclasses import replace
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from storesync.config import SyncedField
from storesync.sync.domain.catalog import (
    ALL_FIELDS,
    CatalogBlocked,
    ChangeCause,
    NeedsCopy,
    PriceRule,
    Rounding,
    SyncPolicy,
    actual_view,
    expected_view,
    plan_child_product,
)
from storesync.sync.domain.catalog_rules import CatalogRules, ChildMedia, OnParentDelete
from storesync.sync.domain.model import Link, LinkKind, MatchedBy, Metafield, Option, Product, VariantDetails
from storesync.sync.services.catalog import sync_product_to_child
from tests.fakes import MemoryArchivedCopies, MemoryAttention, MemoryAudit, MemoryLinks, MemoryStore
from tests.sync.builders import CHILD_A, PARENT, tee, variant
from tests.sync.sagas import copy_now

CAUSE = "job:1"


def run(coro):
    import asyncio

    return asyncio.run(coro)


class World:
    """A parent and one child in memory, with links and audit, synced through the real domain code."""

    def __init__(self, policy: SyncPolicy | None = None, product: Product | None = None):
        self.parent, self.child = MemoryStore(PARENT), MemoryStore(CHILD_A)
        self.links, self.audit = MemoryLinks(), MemoryAudit()
        self.policy = policy or SyncPolicy()
        self.pp = self.parent.add_product(product or tee())

    async def sync(self):
        """One product job: the copy saga when the child has no copy yet, else a re-sync."""
        try:
            return await sync_product_to_child(
                self.parent, self.child, self.pp.id, self.links, self.policy, self.audit, CAUSE
            )
        except NeedsCopy:
            await copy_now(
                {PARENT: self.parent, CHILD_A: self.child},
                self.links,
                self.policy,
                self.audit,
                self.pp.id,
                CHILD_A,
            )
            return None

    async def child_product(self) -> Product:
        lm = await self.links.link_map(CHILD_A)
        return self.child.products[lm.child_id(LinkKind.PRODUCT, self.pp.id)]

    async def edit_child(self, **input):
        cp = await self.child_product()
        return await self.child.product_set(input, product_id=cp.id)

    async def edit_parent(self, **input):
        self.pp = await self.parent.product_set(input, product_id=self.pp.id)

    async def add_child_only_variant(self, size="XL", price="99.00", metafields=()):
        cp = await self.child_product()
        keep = [
            {
                "id": v.id,
                "optionValues": [{"optionName": n, "name": x} for n, x in v.option_values],
                "price": str(v.price),
                "inventoryItem": {"sku": v.sku},
            }
            for v in cp.variants
        ]
        new = {
            "optionValues": [{"optionName": "Size", "name": size}],
            "price": price,
            "inventoryItem": {"sku": f"CHILD-{size}"},
            "metafields": [
                {"namespace": m.namespace, "key": m.key, "type": m.type, "value": m.value} for m in metafields
            ],
        }
        values = [*cp.options[0].values, size]
        cp = await self.child.product_set(
            {
                "variants": [*keep, new],
                "productOptions": [{"name": "Size", "values": [{"name": v} for v in values]}],
            },
            product_id=cp.id,
        )
        return next(v for v in cp.variants if v.sku == f"CHILD-{size}")


# --------------------------------------------------------------------------- price rules


def test_price_rule_applies_markup_then_rounding():
    assert PriceRule(Decimal(20)).apply(Decimal("10.00")) == Decimal("12.00")
    assert PriceRule(Decimal("12.5")).apply(Decimal("9.99")) == Decimal("11.24")
    assert PriceRule(Decimal(20), Rounding.WHOLE).apply(Decimal("10.40")) == Decimal("12.00")
    assert PriceRule(Decimal(0), Rounding.NINETY_NINE).apply(Decimal("10.20")) == Decimal("10.99")
    assert PriceRule(Decimal(0), Rounding.NINETY_NINE).apply(Decimal("11.00")) == Decimal("10.99")
    assert PriceRule().apply(None) is None
    with pytest.raises(ValueError):
        PriceRule(Decimal(-100))


def test_options_and_variants_are_synced_together():
    with pytest.raises(ValueError, match="together"):
        SyncPolicy(frozenset({SyncedField.OPTIONS, SyncedField.TITLE}))


# --------------------------------------------------------------------------- create and update


def test_a_missing_child_product_is_copied_by_the_saga_with_links_to_every_variant_and_item():
    w = World(SyncPolicy(price_rules={CHILD_A: PriceRule(Decimal(10))}))
    with pytest.raises(NeedsCopy):  # never a productSet upsert by handle
        run(sync_product_to_child(w.parent, w.child, w.pp.id, w.links, w.policy, w.audit, CAUSE))
    run(w.sync())
    cp = run(w.child_product())
    assert (cp.title, cp.handle, cp.vendor, cp.tags) == ("Tee", "tee", "Acme", ("cotton", "summer"))
    assert sorted(v.price for v in cp.variants) == [Decimal("11.00"), Decimal("11.00")]
    lm = run(w.links.link_map(CHILD_A))
    for pv in w.pp.variants:
        cv = cp.variant(lm.child_id(LinkKind.VARIANT, pv.id))
        assert cv is not None and cv.sku == pv.sku
        assert lm.child_item(pv.inventory_item_id) == cv.inventory_item_id
    plan = run(w.sync())
    assert plan.noop and lm.link_down(LinkKind.PRODUCT, w.pp.id).synced_view == plan.expected
    assert [r.action for r in w.audit.records][:2] == ["product_create", "saga_completed"]


def test_in_sync_product_is_not_written_again():
    w = World()
    run(w.sync())
    calls = len(w.child.calls)
    plan = run(w.sync())
    assert plan.noop and len(w.child.calls) == calls


def test_a_child_only_variant_with_its_metafields_survives_a_parent_update():
    w = World()
    run(w.sync())
    mf = Metafield("custom", "fabric", "single_line_text_field", "linen")
    xl = run(w.add_child_only_variant(metafields=(mf,)))
    run(w.edit_parent(title="Tee v2"))
    plan = run(w.sync())
    assert plan.kept_child_variants == (xl.id,)
    carried = next(v for v in plan.input["variants"] if v.get("id") == xl.id)
    assert (
        carried["inventoryItem"] == {"sku": "CHILD-XL"} and carried["price"] == "99.00"
    )  # as the child has it
    cp = run(w.child_product())
    assert cp.title == "Tee v2"
    kept = cp.variant(xl.id)
    assert kept is not None and kept.price == Decimal("99.00") and kept.metafields == (mf,)
    assert "XL" in cp.options[0].values


def test_child_product_metafields_and_child_only_collections_survive():
    w = World()
    w.parent.products[w.pp.id] = w.pp = replace(w.pp, collections=("gid://shopify/Collection/1",))
    run(
        w.links.save_links(
            [
                Link(
                    LinkKind.COLLECTION,
                    CHILD_A,
                    "gid://shopify/Collection/1",
                    "gid://shopify/Collection/501",
                    MatchedBy.HANDLE,
                )
            ]
        )
    )
    run(w.sync())
    mf = {"namespace": "custom", "key": "care", "type": "single_line_text_field", "value": "cold wash"}
    run(
        w.edit_child(
            metafields=[mf], collections=["gid://shopify/Collection/501", "gid://shopify/Collection/777"]
        )
    )
    run(w.edit_parent(title="Tee v3", collections=[]))  # the parent leaves collection 1
    run(w.sync())
    cp = run(w.child_product())
    assert cp.metafields == (Metafield("custom", "care", "single_line_text_field", "cold wash"),)
    assert cp.collections == ("gid://shopify/Collection/777",)  # child-only kept, synced membership removed


def test_a_child_edit_to_a_synced_field_is_reverted_and_recorded():
    w = World()
    run(w.sync())
    run(w.edit_child(title="My own title", tags=["sale"]))
    plan = run(w.sync())
    assert {c.field: c.cause for c in plan.changes} == {
        "title": ChangeCause.CHILD_EDIT_REVERTED,
        "tags": ChangeCause.CHILD_EDIT_REVERTED,
    }
    cp = run(w.child_product())
    assert cp.title == "Tee" and cp.tags == ("cotton", "summer")
    reverts = [r for r in w.audit.records if r.action == "revert_child_edit"]
    assert sorted((r.detail.split(":")[1].strip().split()[-1], r.before, r.after) for r in reverts) == [
        ("tags", ["sale"], ["cotton", "summer"]),
        ("title", "My own title", "Tee"),
    ]
    assert all(r.cause == CAUSE for r in reverts)


def test_a_parent_change_is_not_reported_as_a_child_edit():
    w = World()
    run(w.sync())
    run(w.edit_parent(vendor="Acme Two"))
    plan = run(w.sync())
    assert [(c.field, c.cause) for c in plan.changes] == [("vendor", ChangeCause.PARENT_CHANGED)]
    assert plan.reverted == ()


def test_without_a_record_of_the_last_write_a_difference_is_drift():
    w = World()
    run(w.sync())
    run(w.edit_child(title="Changed"))
    lm = run(w.links.link_map(CHILD_A))
    lm.links[:] = [replace(lk, synced_view=None) for lk in lm.links]
    plan = plan_child_product(w.pp, run(w.child_product()), type(lm)(CHILD_A, lm.links), w.policy)
    assert [(c.field, c.cause) for c in plan.changes] == [("title", ChangeCause.DRIFT)]


def test_a_variant_deleted_in_the_parent_is_deleted_in_the_child_but_child_only_ones_stay():
    w = World()
    run(w.sync())
    xl = run(w.add_child_only_variant())
    keep = w.pp.variants[0]
    run(
        w.edit_parent(
            variants=[
                {
                    "id": keep.id,
                    "optionValues": [{"optionName": "Size", "name": "S"}],
                    "price": "10.00",
                    "inventoryItem": {"sku": keep.sku},
                }
            ],
            productOptions=[{"name": "Size", "values": [{"name": "S"}]}],
        )
    )
    plan = run(w.sync())
    assert len(plan.removed_variants) == 1
    cp = run(w.child_product())
    assert sorted(v.sku for v in cp.variants) == ["CHILD-XL", "TEE-S"]
    assert cp.variant(xl.id) is not None


def test_a_plan_that_would_delete_a_child_only_variant_is_blocked_and_writes_nothing():
    w = World()
    run(w.sync())
    run(w.add_child_only_variant())
    # The parent adds a second option: the child-only variant has no value for it.
    run(
        w.edit_parent(
            productOptions=[
                {"name": "Size", "values": [{"name": "S"}, {"name": "M"}]},
                {"name": "Color", "values": [{"name": "Red"}]},
            ],
            variants=[
                {
                    "id": v.id,
                    "optionValues": [
                        {"optionName": "Size", "name": dict(v.option_values)["Size"]},
                        {"optionName": "Color", "name": "Red"},
                    ],
                    "price": "10.00",
                    "inventoryItem": {"sku": v.sku},
                }
                for v in w.pp.variants
            ],
        )
    )
    calls = len(w.child.calls)
    with pytest.raises(CatalogBlocked, match="would delete it"):
        run(w.sync())
    assert len(w.child.calls) == calls
    assert w.audit.records[-1].action == "product_set_blocked"


def test_fields_outside_the_policy_stay_as_the_child_has_them():
    w = World(SyncPolicy(ALL_FIELDS - {SyncedField.VENDOR, SyncedField.TAGS}))
    run(w.sync())
    run(w.edit_child(vendor="Local vendor", tags=["local"]))
    run(w.edit_parent(title="New title"))
    run(w.sync())
    cp = run(w.child_product())
    assert (cp.title, cp.vendor, cp.tags) == ("New title", "Local vendor", ("local",))


@pytest.mark.parametrize(
    ("rule", "status", "kept"),
    [
        (OnParentDelete.ARCHIVE, "ARCHIVED", True),
        (OnParentDelete.DELETE, None, False),
        (OnParentDelete.LEAVE, "ACTIVE", True),
    ],
)
def test_a_parent_product_deleted_archives_deletes_or_leaves_the_copy_as_the_child_says(rule, status, kept):
    w = World(SyncPolicy(child_catalog={CHILD_A: CatalogRules(on_parent_delete=rule)}))
    archived = MemoryArchivedCopies()
    run(w.sync())
    cp = run(w.child_product())
    del w.parent.products[w.pp.id]
    result = run(
        sync_product_to_child(
            w.parent, w.child, w.pp.id, w.links, w.policy, w.audit, CAUSE, archived=archived
        )
    )
    assert result is None
    assert (cp.id in w.child.products) is kept
    if kept:
        assert w.child.products[cp.id].status == status
    lm = run(w.links.link_map(CHILD_A))
    assert lm.links == []  # product and variant links gone
    assert bool(archived.rows) is (rule is OnParentDelete.ARCHIVE)
    assert (
        w.audit.records[-1].action
        == {
            OnParentDelete.ARCHIVE: "product_archive",
            OnParentDelete.DELETE: "product_delete",
            OnParentDelete.LEAVE: "product_unlink",
        }[rule]
    )


def test_a_product_the_child_had_before_it_was_linked_is_never_deleted_only_unlinked_and_reported():
    w = World(SyncPolicy(catalog=CatalogRules(on_parent_delete=OnParentDelete.DELETE)))
    own = w.child.add_product(tee())  # the child sold it before storesync: `storesync link` matched it
    run(
        w.links.save_links(
            [
                Link(LinkKind.PRODUCT, CHILD_A, w.pp.id, own.id, MatchedBy.SKU),
                *(
                    Link(
                        LinkKind.VARIANT,
                        CHILD_A,
                        pv.id,
                        cv.id,
                        MatchedBy.SKU,
                        parent_product_id=w.pp.id,
                        child_product_id=own.id,
                    )
                    for pv, cv in zip(w.pp.variants, own.variants, strict=True)
                ),
            ]
        )
    )
    attention = MemoryAttention()
    del w.parent.products[w.pp.id]
    run(
        sync_product_to_child(
            w.parent, w.child, w.pp.id, w.links, w.policy, w.audit, CAUSE, attention=attention
        )
    )
    assert w.child.products[own.id] == own  # untouched
    assert run(w.links.link_map(CHILD_A)).links == []
    (item,) = run(attention.open_items())
    assert item.kind == "own_product_unlinked" and own.id in item.detail
    assert ("productDelete", own.id) not in w.child.calls


# --------------------------------------------------------------------------- metafields


def test_a_parent_edit_keeps_the_childs_own_product_and_variant_metafields_and_sends_none():
    """Regression: the variant write sent `metafields: []` for every variant, wiping the
    child's own variant metafields (productSet replaces a given list wholesale)."""
    w = World()
    run(w.sync())
    cp = run(w.child_product())
    mine = Metafield("custom", "fit", "single_line_text_field", "slim")
    run(
        w.child.set_metafields(
            [
                {"ownerId": v.id, "namespace": "custom", "key": "fit", "type": mine.type, "value": "slim"}
                for v in cp.variants
            ]
        )
    )
    run(
        w.child.set_metafields(
            [{"ownerId": cp.id, "namespace": "custom", "key": "care", "type": mine.type, "value": "cold"}]
        )
    )
    run(w.edit_parent(title="Tee v2"))
    plan = run(w.sync())
    assert "metafields" not in plan.input and all("metafields" not in v for v in plan.input["variants"])
    after = run(w.child_product())
    assert after.title == "Tee v2"
    assert all(v.metafields == (mine,) for v in after.variants)
    assert after.metafields == (Metafield("custom", "care", mine.type, "cold"),)


def test_synced_namespaces_follow_the_parent_by_metafields_set_and_delete_and_others_stay():
    w = World(SyncPolicy(metafield_namespaces=frozenset({"specs"})))
    t = "single_line_text_field"
    pv = w.pp.variants[0]
    w.parent.products[w.pp.id] = w.pp = replace(
        w.pp,
        metafields=(Metafield("specs", "material", t, "cotton"), Metafield("parent_only", "x", t, "1")),
        variants=(replace(pv, metafields=(Metafield("specs", "gsm", t, "180"),)), *w.pp.variants[1:]),
    )
    run(w.sync())  # the create carries them
    cp = run(w.child_product())
    assert cp.metafields == (Metafield("specs", "material", t, "cotton"),)
    lm = run(w.links.link_map(CHILD_A))
    assert cp.variant(lm.child_id(LinkKind.VARIANT, pv.id)).metafields == (
        Metafield("specs", "gsm", t, "180"),
    )
    # the child adds its own; the parent changes one synced value and drops another
    run(
        w.child.set_metafields(
            [{"ownerId": cp.id, "namespace": "custom", "key": "care", "type": t, "value": "cold"}]
        )
    )
    w.parent.products[w.pp.id] = w.pp = replace(
        w.pp,
        metafields=(Metafield("specs", "material", t, "linen"),),
        variants=(replace(w.pp.variants[0], metafields=()), *w.pp.variants[1:]),
    )
    plan = run(w.sync())
    assert not plan.product_changes and "metafields" not in plan.input  # no productSet needed
    assert [c[0] for c in w.child.calls[-2:]] == ["metafieldsSet", "metafieldsDelete"]
    cp = run(w.child_product())
    assert set(cp.metafields) == {
        Metafield("specs", "material", t, "linen"),
        Metafield("custom", "care", t, "cold"),
    }
    assert cp.variant(lm.child_id(LinkKind.VARIANT, pv.id)).metafields == ()
    assert run(w.sync()).noop


# --------------------------------------------------------------------------- media


@pytest.mark.parametrize("child_media", [ChildMedia.KEEP, ChildMedia.REMOVE])
def test_media_follow_the_parent_in_order_and_the_childs_own_are_kept_or_removed(child_media):
    w = World(SyncPolicy(child_catalog={CHILD_A: CatalogRules(child_media=child_media)}))
    run(w.edit_parent(files=[{"originalSource": f"https://cdn.example/{n}.jpg", "alt": n} for n in "ab"]))
    run(w.sync())
    cp = run(w.child_product())
    run(
        w.child.set_media(cp.id, [*({"id": m.id} for m in cp.media), {"originalSource": "https://own/x.jpg"}])
    )
    w.child.calls.clear()
    # The parent reorders its pictures and changes an alt text: no picture is uploaded again.
    a, b = w.pp.media
    run(w.edit_parent(files=[{"id": b.id, "alt": "b, new"}, {"id": a.id}]))
    run(w.sync())
    cp = run(w.child_product())
    shown = [(m.source, m.alt) for m in cp.media]
    parents = [("https://cdn.example/b.jpg", "b, new"), ("https://cdn.example/a.jpg", "a")]
    assert shown == ([*parents, ("https://own/x.jpg", "")] if child_media is ChildMedia.KEEP else parents)
    uploads = [
        f for op, arg in w.child.calls if op == "productSetMedia" for f in arg[1] if "originalSource" in f
    ]
    assert uploads == []
    w.child.calls.clear()
    assert run(w.sync()).noop and not any(op == "productSetMedia" for op, _ in w.child.calls)


# --------------------------------------------------------------------------- variant fields


def test_variant_and_inventory_item_fields_follow_the_parent_and_prices_the_childs_rule():
    w = World(SyncPolicy(price_rules={CHILD_A: PriceRule(Decimal(50))}))
    run(w.sync())
    details = VariantDetails(
        "CONTINUE", False, True, False, Decimal("3.10"), "610910", "PT", ("0.25", "KILOGRAMS")
    )
    w.parent.products[w.pp.id] = w.pp = replace(
        w.pp,
        variants=tuple(replace(v, details=details, compare_at_price=Decimal("12.00")) for v in w.pp.variants),
    )
    run(w.sync())
    cp = run(w.child_product())
    assert all(v.details == details for v in cp.variants)
    assert all(v.price == Decimal("15.00") for v in cp.variants)  # 10.00 + 50 %
    assert all(v.compare_at_price == Decimal("18.00") for v in cp.variants)  # 12.00 + 50 %


# --------------------------------------------------------------------------- invariants (hypothesis)

SIZES = ["XS", "S", "M", "L", "XL", "XXL", "3XL", "4XL"]
prices = st.decimals(min_value=Decimal("0.01"), max_value=Decimal("999"), places=2)
texts = st.text(alphabet="abcdefgh ", min_size=1, max_size=8)


@st.composite
def scenarios(draw):
    sizes = draw(st.lists(st.sampled_from(SIZES), min_size=1, max_size=4, unique=True))
    parent_sizes = sizes[: draw(st.integers(1, len(sizes)))]
    child_only = [s for s in sizes if s not in parent_sizes]
    parent = Product(
        id=None,
        handle="p",
        title=draw(texts),
        vendor=draw(texts),
        tags=tuple(draw(st.lists(texts, max_size=3))),
        options=(Option("Size", tuple(parent_sizes)),),
        variants=tuple(variant(f"SKU-{s}", ("Size", s), price=str(draw(prices))) for s in parent_sizes),
    )
    markup = draw(st.decimals(min_value=Decimal(-50), max_value=Decimal(200), places=1))
    rounding = draw(st.sampled_from(list(Rounding)))
    child_mfs = draw(st.lists(texts, max_size=3, unique=True))
    edits = draw(
        st.fixed_dictionaries(
            {}, optional={"title": texts, "tags": st.lists(texts, max_size=2), "vendor": texts}
        )
    )
    new_parent_title = draw(st.one_of(st.none(), texts))
    dropped = draw(st.one_of(st.none(), st.sampled_from(parent_sizes)))
    return parent, PriceRule(markup, rounding), child_only, child_mfs, edits, new_parent_title, dropped


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_merge_keeps_child_owned_data_and_makes_synced_fields_equal_the_parents(scenario):
    parent, rule, child_only, child_mfs, edits, new_title, dropped = scenario
    w = World(SyncPolicy(price_rules={CHILD_A: rule}), product=parent)

    async def go():
        await w.sync()
        extra = []
        for s in child_only:
            extra.append(await w.add_child_only_variant(size=s, price="5.00"))
        mfs = [
            {
                "namespace": "c",
                "key": k.replace(" ", "_") or "k",
                "type": "single_line_text_field",
                "value": k,
            }
            for k in child_mfs
        ]
        await w.edit_child(metafields=mfs, **{k: v for k, v in edits.items()})
        child_before = await w.child_product()
        if new_title is not None:
            await w.edit_parent(title=new_title)
        if dropped is not None and len(w.pp.variants) > 1:
            left = [v for v in w.pp.variants if dict(v.option_values)["Size"] != dropped]
            await w.edit_parent(
                variants=[
                    {
                        "id": v.id,
                        "optionValues": [{"optionName": "Size", "name": dict(v.option_values)["Size"]}],
                        "price": str(v.price),
                        "inventoryItem": {"sku": v.sku},
                    }
                    for v in left
                ],
                productOptions=[
                    {"name": "Size", "values": [{"name": dict(v.option_values)["Size"]} for v in left]}
                ],
            )
        await w.sync()
        child = await w.child_product()
        links = await w.links.link_map(CHILD_A)
        # child-owned data survives
        for v in extra:
            kept = child.variant(v.id)
            assert kept is not None and kept.price == Decimal("5.00") and kept.sku == v.sku
        assert child.metafields == child_before.metafields
        # synced fields equal the parent's (through the price rule)
        assert actual_view(child, w.policy, links) == expected_view(w.pp, w.policy, links)
        # and a second pass has nothing to do
        again = plan_child_product(w.pp, child, links, w.policy)
        assert again.noop, again.changes

    run(go())


def test_images_are_compared_by_file_name_not_by_each_stores_cdn_url():
    from storesync.sync.domain.catalog import image_key

    assert image_key("https://cdn.shopify.com/s/files/1/0001/files/Tee.jpg?v=123") == "tee.jpg"
    assert image_key("https://parent.example/img/tee.jpg") == "tee.jpg"


def test_removed_variants_lose_their_links():
    w = World()
    run(w.sync())
    gone = w.pp.variants[1]
    keep = w.pp.variants[0]
    run(
        w.edit_parent(
            variants=[
                {
                    "id": keep.id,
                    "optionValues": [{"optionName": "Size", "name": "S"}],
                    "price": "10.00",
                    "inventoryItem": {"sku": keep.sku},
                }
            ],
            productOptions=[{"name": "Size", "values": [{"name": "S"}]}],
        )
    )
    run(w.sync())
    lm = run(w.links.link_map(CHILD_A))
    assert lm.child_id(LinkKind.VARIANT, gone.id) is None and lm.child_id(LinkKind.VARIANT, keep.id)


def test_policy_from_configuration_with_clear_errors():
    p = SyncPolicy.from_mapping(
        {
            "fields": ["title", "options", "variants"],
            "price_rules": {CHILD_A: {"markup_percent": "15", "rounding": "whole"}},
        }
    )
    assert p.synced == {SyncedField.TITLE, SyncedField.OPTIONS, SyncedField.VARIANTS}
    assert p.price_rule(CHILD_A) == PriceRule(Decimal(15), Rounding.WHOLE)
    assert p.price_rule("other.myshopify.com") == PriceRule()
    with pytest.raises(ValueError, match="unknown fields"):
        SyncPolicy.from_mapping({"fields": ["title", "colour"]})
    with pytest.raises(ValueError, match="price rule for"):
        SyncPolicy.from_mapping({"price_rules": {CHILD_A: {"rounding": "sometimes"}}})
    with pytest.raises(ValueError, match="unknown keys"):
        SyncPolicy.from_mapping({"field": []})
