"""Property: whatever the parent edits, the children edit and sell, in any order, with product
jobs run after some steps only (webhooks lost, then a reconcile-like round), every child ends
equal to the parent on the synced fields, unchanged on everything it owns, and the stock
identity holds (parent = start - sold + restocked, every child showing the parent's level).

The real services run (the copy saga, `sync_product_to_child`, `apply_order_event`,
`fan_out_level`); only the stores are the in-memory fakes of `tests/fakes.py`, which follow
Shopify's semantics for what is exercised here (productSet lists, metafieldsSet/Delete,
productSet files, levels by compare-and-set). A whole-system run per example would take seconds
each; the e2e tests (`tests/e2e/test_catalog_e2e.py`) hold the same rules over HTTP.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field, replace
from decimal import Decimal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from storesync.sync.domain.catalog import SyncPolicy
from storesync.sync.domain.model import LinkKind, Media, Metafield, Product, VariantDetails
from storesync.sync.domain.orders import OrderEvent, RestockLine, SaleLine
from storesync.sync.services.catalog import sync_product_to_child
from storesync.sync.services.sales import SaleContext, apply_order_event, fan_out_level
from tests.fakes import (
    MemoryAttention,
    MemoryAudit,
    MemoryLedger,
    MemoryLinks,
    MemoryStore,
    MemoryWriteRecords,
)
from tests.sync.builders import A_LOC1, B_LOC1, CHILD_A, CHILD_B, P_LOC1, PARENT, merchant, tee
from tests.sync.sagas import copy_now

NS = "specs"
T = "single_line_text_field"
START = 30
CHILDREN = {CHILD_A: A_LOC1, CHILD_B: B_LOC1}
POLICY = SyncPolicy(metafield_namespaces=frozenset({NS}))

texts = st.text(alphabet="abcdefgh", min_size=1, max_size=6)
child = st.sampled_from(sorted(CHILDREN))
variant = st.integers(0, 1)
steps = st.one_of(
    st.tuples(st.just("parent_title"), texts),
    st.tuples(st.just("parent_price"), variant, st.integers(100, 9999)),
    st.tuples(st.just("parent_specs"), st.none() | texts),
    st.tuples(st.just("parent_variant_specs"), variant, st.none() | texts),
    st.tuples(st.just("parent_media_alt"), st.integers(0, 1), texts),
    st.tuples(st.just("parent_media_add"), texts),
    st.tuples(st.just("parent_cost"), variant, st.integers(1, 999)),
    st.tuples(st.just("child_title"), child, texts),
    st.tuples(st.just("child_metafield"), child, texts, texts),
    st.tuples(st.just("child_variant_metafield"), child, variant, texts),
    st.tuples(st.just("child_media"), child, texts),
    st.tuples(st.just("sale"), child, variant, st.integers(1, 3)),
    st.tuples(st.just("restock"), child),
)


def run(coro):
    return asyncio.run(coro)


@dataclass
class World:
    parent: MemoryStore = field(default_factory=lambda: MemoryStore(PARENT))
    children: dict[str, MemoryStore] = field(default_factory=lambda: {s: MemoryStore(s) for s in CHILDREN})
    links: MemoryLinks = field(default_factory=MemoryLinks)
    audit: MemoryAudit = field(default_factory=MemoryAudit)
    ledger: MemoryLedger = field(default_factory=MemoryLedger)
    writes: MemoryWriteRecords = field(default_factory=MemoryWriteRecords)
    attention: MemoryAttention = field(default_factory=MemoryAttention)
    pid: str = ""
    # what each child owns, as it set it: product metafields, variant metafields, media
    own_metafields: dict[str, dict[str, str]] = field(default_factory=dict)
    own_variant_metafields: dict[str, dict[int, str]] = field(default_factory=dict)
    own_media: dict[str, list[tuple[str, str]]] = field(default_factory=dict)  # (id, alt)
    sold: dict[int, int] = field(default_factory=dict)  # variant index -> units
    restocked: dict[int, int] = field(default_factory=dict)
    orders: list[tuple[str, int, int, str]] = field(default_factory=list)  # (child, variant, qty, line)

    @property
    def pp(self) -> Product:
        return self.parent.products[self.pid]

    def edit_parent(self, **changes) -> None:
        self.parent.products[self.pid] = replace(self.pp, **changes)

    async def copy_of(self, shop: str) -> Product:
        lm = await self.links.link_map(shop)
        return self.children[shop].products[lm.child_id(LinkKind.PRODUCT, self.pid) or ""]

    async def child_variant(self, shop: str, index: int) -> tuple[str, str]:
        """(child variant id, child inventory item) of the parent's variant `index`."""
        lm = await self.links.link_map(shop)
        pv = self.pp.variants[index]
        link = lm.link_down(LinkKind.VARIANT, pv.id or "")
        assert link is not None
        return link.child_id, link.child_inventory_item_id or ""

    async def sync(self, shop: str) -> None:
        """A product job for this child (the real service)."""
        await sync_product_to_child(
            self.parent,
            self.children[shop],
            self.pid,
            self.links,
            POLICY,
            self.audit,
            "job",
            attention=self.attention,
        )

    async def fan_out(self, item: str, moved: str, cause: str) -> None:
        await fan_out_level(
            merchant(),
            self.parent,
            self.children,
            {s: await self.links.link_map(s) for s in CHILDREN},
            self.writes,
            self.audit,
            item,
            P_LOC1,
            cause,  # each job's own: the writes' idempotency keys derive from it
            moved=[moved],
        )

    async def sell(self, shop: str, index: int, qty: int, line: str, restock: bool = False) -> None:
        """A child's order (the child's own level moves as Shopify moves it), then the engine:
        the ledger applies it to the parent, the parent's level fans out."""
        cv, citem = await self.child_variant(shop, index)
        loc = CHILDREN[shop]
        store = self.children[shop]
        store.levels[(citem, loc)] += qty if restock else -qty
        event = OrderEvent(
            shop,
            f"gid://shopify/Order/{line}",
            (SaleLine(line, cv, qty, child_location_id=loc),),
            (RestockLine(line, f"{line}-r", qty),) if restock else (),
            loc,
        )
        ctx = SaleContext(
            merchant(), await self.links.link_map(shop), self.ledger, self.parent, self.writes, self.audit
        )
        cause = f"order:{line}:{'restock' if restock else 'sale'}"
        await apply_order_event(ctx, event, cause)
        await self.fan_out(self.pp.variants[index].inventory_item_id or "", shop, cause)


async def setup() -> World:
    w = World()
    media = (
        Media("gid://shopify/MediaImage/1", "https://cdn.example/p/front.jpg", "front"),
        Media("gid://shopify/MediaImage/2", "https://cdn.example/p/back.jpg", "back"),
    )
    details = VariantDetails("DENY", True, True, True, Decimal("2.00"), "610910", "PT", ("0.3", "KILOGRAMS"))
    product = w.parent.add_product(
        replace(
            tee(),
            media=media,
            metafields=(Metafield(NS, "material", T, "wool"), Metafield("parent_notes", "buyer", T, "Dana")),
        )
    )
    variants = tuple(
        replace(v, details=details, metafields=(Metafield(NS, "gsm", T, str(180 + i)),))
        for i, v in enumerate(product.variants)
    )
    w.parent.products[product.id] = replace(product, variants=variants)
    w.pid = product.id or ""
    for v in variants:
        w.parent.levels[(v.inventory_item_id, P_LOC1)] = START
    for shop in CHILDREN:
        await copy_now({PARENT: w.parent, shop: w.children[shop]}, w.links, POLICY, w.audit, w.pid, shop)
        w.own_metafields[shop], w.own_variant_metafields[shop], w.own_media[shop] = {}, {}, []
    return w


async def apply_step(w: World, step: tuple, n: int) -> list[str]:
    """One step; the children whose copy a webhook would re-sync."""
    kind = step[0]
    pp = w.pp
    if kind == "parent_title":
        w.edit_parent(title=step[1])
    elif kind == "parent_price":
        _k, i, cents = step
        vs = list(pp.variants)
        vs[i] = replace(vs[i], price=(Decimal(cents) / 100).quantize(Decimal("0.01")))
        w.edit_parent(variants=tuple(vs))
    elif kind == "parent_specs":
        others = tuple(m for m in pp.metafields if m.namespace != NS)
        w.edit_parent(metafields=others + ((Metafield(NS, "material", T, step[1]),) if step[1] else ()))
    elif kind == "parent_variant_specs":
        _k, i, value = step
        vs = list(pp.variants)
        vs[i] = replace(vs[i], metafields=(Metafield(NS, "gsm", T, value),) if value else ())
        w.edit_parent(variants=tuple(vs))
    elif kind == "parent_media_alt":
        _k, i, alt = step
        media = list(pp.media)
        if i < len(media):
            media[i] = replace(media[i], alt=alt)
        w.edit_parent(media=tuple(media))
    elif kind == "parent_media_add":
        w.edit_parent(
            media=(
                *pp.media,
                Media(f"gid://shopify/MediaImage/p{n}", f"https://cdn.example/p/{n}.jpg", step[1]),
            )
        )
    elif kind == "parent_cost":
        _k, i, cents = step
        vs = list(pp.variants)
        vs[i] = replace(
            vs[i], details=replace(vs[i].details, cost=(Decimal(cents) / 100).quantize(Decimal("0.01")))
        )
        w.edit_parent(variants=tuple(vs))
    elif kind == "child_title":
        _k, shop, title = step
        cp = await w.copy_of(shop)
        await w.children[shop].update_product_fields(cp.id or "", {"title": title})
        return [shop]
    elif kind == "child_metafield":
        _k, shop, key, value = step
        cp = await w.copy_of(shop)
        await w.children[shop].set_metafields(
            [{"ownerId": cp.id, "namespace": "custom", "key": key, "type": T, "value": value}]
        )
        w.own_metafields[shop][key] = value
        return [shop]
    elif kind == "child_variant_metafield":
        _k, shop, i, value = step
        cv, _item = await w.child_variant(shop, i)
        await w.children[shop].set_metafields(
            [{"ownerId": cv, "namespace": "custom", "key": "fit", "type": T, "value": value}]
        )
        w.own_variant_metafields[shop][i] = value
        return [shop]
    elif kind == "child_media":
        _k, shop, alt = step
        cp = await w.copy_of(shop)
        files = [{"id": m.id} for m in cp.media] + [
            {"originalSource": f"https://cdn.example/{shop}/{n}.jpg", "alt": alt}
        ]
        ids = await w.children[shop].set_media(cp.id or "", files)
        w.own_media[shop].append((ids[-1], alt))
        return [shop]
    elif kind == "sale":
        _k, shop, i, qty = step
        line = f"line-{n}"
        await w.sell(shop, i, qty, line)
        w.sold[i] = w.sold.get(i, 0) + qty
        w.orders.append((shop, i, qty, line))
        return []
    elif kind == "restock":
        mine = [o for o in w.orders if o[0] == step[1]]
        if mine:
            shop, i, qty, line = mine[-1]
            w.orders.remove(mine[-1])
            await w.sell(shop, i, qty, line, restock=True)
            w.restocked[i] = w.restocked.get(i, 0) + qty
        return []
    return sorted(CHILDREN)  # a parent change: every child's job


def synced(p: Product, parent_media_sources: list[str]) -> dict:
    """What follows the parent, read straight from a store's product (no engine code)."""
    return {
        "title": p.title,
        "vendor": p.vendor,
        "tags": sorted(p.tags),
        "specs": sorted((m.key, m.value) for m in p.metafields if m.namespace == NS),
        "variants": sorted(
            (
                v.sku,
                str(v.price),
                v.details,
                sorted((m.key, m.value) for m in v.metafields if m.namespace == NS),
            )
            for v in p.variants
        ),
        "media": [(m.source, m.alt) for m in p.media if m.source in parent_media_sources],
    }


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(script=st.lists(st.tuples(steps, st.booleans()), min_size=1, max_size=10))
def test_children_follow_the_parent_keep_their_own_data_and_stock_adds_up(script):
    async def scenario() -> None:
        w = await setup()
        for n, (step, delivered) in enumerate(script):
            for shop in await apply_step(w, step, n):
                if delivered:  # else the webhook is lost: the final round (reconcile) finds it
                    await w.sync(shop)
        for shop in CHILDREN:  # the reconcile round
            await w.sync(shop)
            await w.sync(shop)  # and nothing left to do after it
        parent_media = [m.source or "" for m in w.pp.media]
        for shop, store in w.children.items():
            cp = await w.copy_of(shop)
            assert synced(cp, parent_media) == synced(w.pp, parent_media), shop
            # the parent's media first, in order; then the child's own, as it left them
            assert [m.source for m in cp.media[: len(parent_media)]] == parent_media
            assert [(m.id, m.alt) for m in cp.media[len(parent_media) :]] == w.own_media[shop]
            assert {m.key: m.value for m in cp.metafields if m.namespace == "custom"} == w.own_metafields[
                shop
            ]
            assert not [m for m in cp.metafields if m.namespace == "parent_notes"]
            for i, value in w.own_variant_metafields[shop].items():
                cv, _item = await w.child_variant(shop, i)
                assert [m.value for m in cp.variant(cv).metafields if m.namespace == "custom"] == [value]
            plan = await sync_product_to_child(w.parent, store, w.pid, w.links, POLICY, w.audit, "check")
            assert plan is not None and plan.noop
        for i, pv in enumerate(w.pp.variants):
            level = w.parent.levels[(pv.inventory_item_id, P_LOC1)]
            assert level == START - w.sold.get(i, 0) + w.restocked.get(i, 0)
            for shop, loc in CHILDREN.items():
                _cv, item = await w.child_variant(shop, i)
                assert w.children[shop].levels[(item, loc)] == level
        assert not w.attention.items

    run(scenario())
