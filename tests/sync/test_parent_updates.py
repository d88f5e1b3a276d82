"""A parent products/update starts product jobs only for children left behind
(`routing.children_behind`): judged on the parent as read now against what each child was last
given (the product link's synced_view), so stock moves start none and lost work is found again."""

import asyncio
from decimal import Decimal

import pytest

from storesync.sync.domain.catalog import PriceRule, SyncPolicy
from storesync.sync.domain.echoes import children_behind
from storesync.sync.domain.model import Collection, Link, LinkKind, MatchedBy
from storesync.sync.domain.routing import JOB_PRODUCT_TO_CHILD, route_parent_product_update
from tests.fakes import MemoryAudit, MemoryLinks, MemoryStore
from tests.sync.builders import CHILD_A, CHILD_B, CHILD_C, PARENT, merchant, tee
from tests.sync.sagas import sync_or_copy

CHILDREN = (CHILD_A, CHILD_B, CHILD_C)


def run(coro):
    return asyncio.run(coro)


class Network:
    def __init__(self, policy: SyncPolicy | None = None) -> None:
        self.net = merchant()
        self.policy = policy or SyncPolicy()
        self.parent = MemoryStore(PARENT)
        self.children = {s: MemoryStore(s) for s in CHILDREN}
        self.links, self.audit = MemoryLinks(), MemoryAudit()
        self.product = self.parent.add_product(tee())

    async def sync(self, *shops: str) -> None:
        for shop in shops or CHILDREN:
            await sync_or_copy(
                self.parent, self.children[shop], self.product.id, self.links, self.policy, self.audit
            )

    async def edit_parent(self, **input) -> None:
        self.product = await self.parent.product_set(input, product_id=self.product.id)

    def behind(self) -> list[str]:
        links = [
            lk
            for lk in self.links.rows.values()
            if (lk.kind is LinkKind.PRODUCT and lk.parent_id == self.product.id)
            or (lk.kind is LinkKind.COLLECTION and lk.parent_id in self.product.collections)
        ]
        return children_behind(self.net, self.parent.products[self.product.id], links, self.policy)


def test_an_update_that_changed_no_synced_field_leaves_no_child_behind_and_routes_no_job():
    w = Network(SyncPolicy(price_rules={CHILD_B: PriceRule(Decimal(25))}))
    run(w.sync())
    assert w.behind() == []
    # what a stock move looks like to the webhook: the parent as read now, nothing synced changed
    routed = route_parent_product_update(
        w.net,
        w.product.id,
        w.parent.products[w.product.id],
        list(w.links.rows.values()),
        w.policy,
        "delivery:1",
    )
    assert routed.jobs == [] and routed.ignored


def test_a_real_parent_edit_routes_one_job_per_child():
    w = Network()
    run(w.sync())
    run(w.edit_parent(title="Tee, relaunched"))
    routed = route_parent_product_update(
        w.net,
        w.product.id,
        w.parent.products[w.product.id],
        list(w.links.rows.values()),
        w.policy,
        "delivery:2",
    )
    assert [(j.kind, j.payload.child_shop, j.singleton_key) for j in routed.jobs] == [
        (JOB_PRODUCT_TO_CHILD, s, f"product:{s}:{w.product.id}") for s in CHILDREN
    ]
    run(w.sync())
    assert w.behind() == []


def test_a_child_whose_product_job_failed_stays_behind_for_the_next_identical_update():
    w = Network()
    run(w.sync())
    run(w.edit_parent(title="Renamed"))

    async def refuse(*_a, **_k):
        raise ConnectionError("child down")

    w.children[CHILD_B].product_set = refuse  # B's job fails (and may die): nothing recorded for it
    run(w.sync(CHILD_A, CHILD_C))
    with pytest.raises(ConnectionError):
        run(w.sync(CHILD_B))
    # The next delivery (say the stock move of a sale) finds the parent unchanged since the edit:
    # B is still behind, A and C are not.
    assert w.behind() == [CHILD_B]


def test_a_parent_that_is_gone_sends_every_child_a_job_and_unlinked_children_are_behind():
    w = Network()
    run(w.sync(CHILD_A))
    assert w.behind() == [CHILD_B, CHILD_C]  # never given the product: their jobs create it
    routed = route_parent_product_update(w.net, w.product.id, None, [], w.policy, "delivery:3")
    assert [j.payload.child_shop for j in routed.jobs] == list(CHILDREN)


def test_a_product_found_in_sync_without_a_record_is_recorded_so_it_is_not_asked_again():
    w = Network()
    run(w.sync(CHILD_A))
    link = w.links.rows[(CHILD_A, LinkKind.PRODUCT, w.product.id)]
    w.links.rows[(CHILD_A, LinkKind.PRODUCT, w.product.id)] = Link(**{**link.__dict__, "synced_view": None})
    assert CHILD_A in w.behind()  # as after `storesync link` matched it by SKU
    calls = len(w.children[CHILD_A].calls)
    run(w.sync(CHILD_A))
    assert len(w.children[CHILD_A].calls) == calls  # nothing written: it already matched
    assert CHILD_A not in w.behind()


def test_a_collection_linked_in_a_child_later_puts_that_child_behind():
    w = Network()
    coll = w.parent.add_collection(Collection(None, "sale", "Sale"))
    run(w.edit_parent(collections=[coll.id]))
    run(w.sync())
    assert w.behind() == []
    child_coll = w.children[CHILD_C].add_collection(Collection(None, "sale", "Sale"))
    run(w.links.save_links([Link(LinkKind.COLLECTION, CHILD_C, coll.id, child_coll.id, MatchedBy.CREATED)]))
    assert w.behind() == [CHILD_C]  # its copy must join the collection
    run(w.sync(CHILD_C))
    assert w.behind() == []
    assert w.children[CHILD_C].products[
        w.links.rows[(CHILD_C, LinkKind.PRODUCT, w.product.id)].child_id
    ].collections == (child_coll.id,)


# --------------------------------------------------------------------------- stock moves


SOLD_AT = "2026-11-25T12:00:01-05:00"


def payload(
    title="Tee", stock=(5, 7), at="2026-11-25T12:00:00-05:00", published_at=None, scope="web"
) -> dict:
    """A products/update body as Shopify sends it (REST form); SEO is not in it."""
    return {
        "id": 1,
        "title": title,
        "updated_at": at,
        "published_at": published_at,
        "published_scope": scope,
        "variants": [
            {"id": i + 10, "price": "9.00", "sku": f"T-{i}", "inventory_quantity": q, "updated_at": at}
            for i, q in enumerate(stock)
        ],
    }


def test_a_products_update_that_differs_from_the_last_only_in_stock_is_a_stock_move():
    from storesync.sync.domain.echoes import is_stock_move, product_digest

    first = product_digest(payload())
    sold = product_digest(payload(stock=(4, 7), at=SOLD_AT))
    assert is_stock_move(first, sold)
    # nothing seen before, an edit alongside the stock, the same stock (e.g. an SEO edit, which
    # the payload does not show), or an older payload: read from the store as before
    assert not is_stock_move(None, sold)
    assert not is_stock_move(first, product_digest(payload(title="New", stock=(4, 7), at=SOLD_AT)))
    assert not is_stock_move(sold, product_digest(payload(stock=(4, 7), at="2026-11-25T12:00:02-05:00")))
    assert not is_stock_move(sold, first)


def test_a_products_update_that_differs_from_the_last_only_in_its_publication_is_a_publish():
    """A copy's own publishing (its saga's last step) makes the child send products/update
    showing only that; channels are never synced after a copy is made, so it needs nothing."""
    from storesync.sync.domain.echoes import (
        ProductDigest,
        is_publication_change,
        is_stock_move,
        product_digest,
    )

    created = product_digest(payload())  # the products/create payload: on no channel yet
    published = product_digest(payload(at=SOLD_AT, published_at=SOLD_AT, scope="global"))
    assert is_publication_change(created, published)
    assert not is_stock_move(created, published)
    # an edit or a stock move alongside it, nothing seen before, an older payload, the same
    # publication (e.g. an SEO edit), or a digest recorded without its publication: read
    assert not is_publication_change(
        created, product_digest(payload(title="New", at=SOLD_AT, published_at=SOLD_AT))
    )
    assert not is_publication_change(
        created, product_digest(payload(stock=(4, 7), at=SOLD_AT, published_at=SOLD_AT))
    )
    assert not is_publication_change(None, published)
    assert not is_publication_change(published, created)
    assert not is_publication_change(
        published,
        product_digest(payload(at="2026-11-25T12:00:02-05:00", published_at=SOLD_AT, scope="global")),
    )
    old = ProductDigest(created.updated_at, created.fields, created.stock)
    assert not is_publication_change(old, published)


def full_payload(
    *, title="Tee", stock=(5, 7), at="2026-11-25T12:00:00-05:00", policy="deny", alt="Front"
) -> dict:
    """A products/update body with every field the digests compare, as Shopify writes them:
    numeric ids, comma-separated tags, lower-case enums, prices as text."""
    return {
        "id": 1,
        "admin_graphql_api_id": "gid://shopify/Product/1",
        "title": title,
        "body_html": "<p>Soft</p>",
        "vendor": "Acme",
        "product_type": "Shirts",
        "handle": "tee",
        "status": "active",
        "tags": "summer, cotton",
        "template_suffix": None,
        "updated_at": at,
        "published_at": "2026-11-01T00:00:00-05:00",
        "published_scope": "global",
        "options": [{"id": 9, "product_id": 1, "name": "Size", "position": 1, "values": ["S", "M"]}],
        "variants": [
            {
                "id": 10 + i,
                "admin_graphql_api_id": f"gid://shopify/ProductVariant/{10 + i}",
                "title": size,
                "price": "9.00",
                "compare_at_price": "12.00" if i else None,
                "sku": f"T-{size}",
                "barcode": None,
                "option1": size,
                "option2": None,
                "option3": None,
                "inventory_policy": policy,
                "taxable": True,
                "inventory_quantity": q,
                "old_inventory_quantity": q,
                "updated_at": at,
            }
            for i, (size, q) in enumerate(zip(("S", "M"), stock, strict=True))
        ],
        "media": [
            {
                "id": 30,
                "admin_graphql_api_id": "gid://shopify/MediaImage/30",
                "alt": alt,
                "status": "ready",
                "media_content_type": "IMAGE",
            }
        ],
    }


def read_tee(*, stock=(5, 7), at="2026-11-25T17:00:00+00:00"):
    """The same product as a read (GraphQL form: gids, tag lists, upper-case enums, Decimals)."""
    from datetime import datetime

    from storesync.sync.domain.model import Media, Option, Product, Variant, VariantDetails

    return Product(
        id="gid://shopify/Product/1",
        handle="tee",
        title="Tee",
        description_html="<p>Soft</p>",
        vendor="Acme",
        product_type="Shirts",
        tags=("cotton", "summer"),
        status="ACTIVE",
        options=(Option("Size", ("S", "M")),),
        variants=tuple(
            Variant(
                id=f"gid://shopify/ProductVariant/{10 + i}",
                option_values=(("Size", size),),
                price=Decimal("9"),
                sku=f"T-{size}",
                compare_at_price=Decimal("12.0") if i else None,
                inventory_item_id=f"gid://shopify/InventoryItem/{20 + i}",
                details=VariantDetails(inventory_policy="DENY", taxable=True),
                inventory_quantity=q,
            )
            for i, (size, q) in enumerate(zip(("S", "M"), stock, strict=True))
        ),
        media=(Media("gid://shopify/MediaImage/30", "https://cdn.example/tee.jpg", "Front"),),
        updated_at=datetime.fromisoformat(at),
    )


def test_a_product_as_read_stands_for_the_payload_showing_it_so_a_first_stock_move_needs_no_read():
    """`storesync link`, backfill and reconcile remember each product as read: the first
    products/update after it is judged like any other (stock only: a stock move; anything else
    in the payload changed: read as before)."""
    from dataclasses import replace

    from storesync.sync.domain.echoes import is_stock_move, product_digest, read_product_digest

    read = read_product_digest(read_tee())
    assert read is not None
    same = product_digest(full_payload())
    assert (read.updated_at, read.fields, read.stock) == (same.updated_at, same.fields, same.stock)
    assert read.publication == ""  # a read does not show it: never judged a publish
    assert is_stock_move(read, product_digest(full_payload(stock=(4, 7), at=SOLD_AT)))
    for edited in (
        full_payload(title="New", stock=(4, 7), at=SOLD_AT),
        full_payload(policy="continue", stock=(4, 7), at=SOLD_AT),
        full_payload(alt="Back", stock=(4, 7), at=SOLD_AT),
        full_payload(at=SOLD_AT),  # the same stock: an edit the payload cannot show (SEO)
    ):
        assert not is_stock_move(read, product_digest(edited))
    # A read without a variant's stock, or without the product's time, is not remembered.
    tee = read_tee()
    assert (
        read_product_digest(replace(tee, variants=(replace(tee.variants[0], inventory_quantity=None),)))
        is None
    )
    assert read_product_digest(replace(tee, updated_at=None)) is None
