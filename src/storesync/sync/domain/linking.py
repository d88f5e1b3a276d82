"""Linking existing catalogs: which child variant is which parent variant.

Variants match by SKU, then barcode, then handle (same product handle and the same option
values). A key shared by two variants on one side is ambiguous: it is reported as a duplicate
and never used to match, so nothing is guessed. Variants without a SKU are reported (they are
the top cause of sync failures) but may still match by barcode or handle. Products are linked
through their variants; a product whose variants match variants of two different products on
the other side is reported as a conflict and left unlinked. This is what
`storesync link --dry-run` prints; without --dry-run the links are stored (`services/stores.py`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from storesync.sync.domain.catalog import SyncPolicy, actual_view, expected_view, same_view
from storesync.sync.domain.model import Collection, Link, LinkKind, LinkMap, MatchedBy, Product, Variant


@dataclass(frozen=True)
class VariantRef:
    product_id: str
    handle: str
    variant_id: str
    sku: str | None
    barcode: str | None
    option_key: tuple[tuple[str, str], ...]
    inventory_item_id: str | None

    @classmethod
    def of(cls, p: Product, v: Variant) -> VariantRef:
        if p.id is None or v.id is None:
            raise ValueError("linking needs stored products and variants (with ids)")
        return cls(
            p.id,
            p.handle,
            v.id,
            (v.sku or "").strip() or None,
            (v.barcode or "").strip() or None,
            v.option_key,
            v.inventory_item_id,
        )


@dataclass(frozen=True)
class VariantMatch:
    parent: VariantRef
    child: VariantRef
    matched_by: MatchedBy


@dataclass(frozen=True)
class Duplicate:
    side: str  # "parent" or "child"
    key: str  # "sku" or "barcode"
    value: str
    variant_ids: tuple[str, ...]


@dataclass(frozen=True)
class ProductConflict:
    side: str  # the side whose product's variants point at several products on the other side
    product_id: str
    other_product_ids: tuple[str, ...]


@dataclass
class LinkReport:
    child_shop: str
    matches: list[VariantMatch] = field(default_factory=list)
    duplicates: list[Duplicate] = field(default_factory=list)
    missing_sku: list[tuple[str, str]] = field(default_factory=list)  # (side, variant id)
    conflicts: list[ProductConflict] = field(default_factory=list)
    unmatched_parent: list[str] = field(default_factory=list)  # to be created in the child
    unmatched_child: list[str] = field(default_factory=list)  # child-only: left alone
    collection_links: list[Link] = field(default_factory=list)
    missing_collections: list[str] = field(default_factory=list)  # parent collections the child lacks
    # Products: the parent's and the child's, and those none of whose variants matched.
    parent_products: int = 0
    child_products: int = 0
    unmatched_parent_products: list[str] = field(default_factory=list)  # copied by the backfill
    unmatched_child_products: list[str] = field(default_factory=list)  # the child's own: left alone

    def counts(self) -> dict[str, int]:
        by: defaultdict[str, int] = defaultdict(int)
        for m in self.matches:
            by[f"matched_by_{m.matched_by}"] += 1
        return {
            "matched": len(self.matches),
            **by,
            "duplicates": len(self.duplicates),
            "missing_sku": len(self.missing_sku),
            "conflicts": len(self.conflicts),
            "unmatched_parent": len(self.unmatched_parent),
            "unmatched_child": len(self.unmatched_child),
            "collections_linked": len(self.collection_links),
            "collections_missing": len(self.missing_collections),
        }

    def links(self) -> list[Link]:
        out: list[Link] = list(self.collection_links)
        seen_products: set[str] = set()
        for m in self.matches:
            if m.parent.product_id not in seen_products:
                seen_products.add(m.parent.product_id)
                out.append(
                    Link(
                        LinkKind.PRODUCT,
                        self.child_shop,
                        m.parent.product_id,
                        m.child.product_id,
                        m.matched_by,
                    )
                )
            out.append(
                Link(
                    LinkKind.VARIANT,
                    self.child_shop,
                    m.parent.variant_id,
                    m.child.variant_id,
                    m.matched_by,
                    parent_product_id=m.parent.product_id,
                    child_product_id=m.child.product_id,
                    parent_inventory_item_id=m.parent.inventory_item_id,
                    child_inventory_item_id=m.child.inventory_item_id,
                )
            )
        return out

    def summary(self) -> list[str]:
        """What linking means for the child, in a merchant's words: products and variants it
        already sells (matched), what the backfill will copy, what stays the child's own, and
        what needs a person (then each problem on its own line: `lines()`)."""
        products = len({m.parent.product_id for m in self.matches})
        how: defaultdict[str, int] = defaultdict(int)
        for m in self.matches:
            how[str(m.matched_by)] += 1
        by = ", ".join(
            f"{n} by {'the same ' + k.upper() if k == 'sku' else k}" for k, n in sorted(how.items())
        )
        parent_variants = len(self.matches) + len(self.unmatched_parent)
        out = [
            f"{self.child_shop}: already sells {products} of the parent's {self.parent_products} products "
            f"({len(self.matches)} of {parent_variants} variants matched{': ' + by if by else ''})",
            f"  missing: {len(self.unmatched_parent_products)} products "
            f"({len(self.unmatched_parent)} variants) the backfill will copy into it",
        ]
        if self.unmatched_child_products:
            out.append(
                f"  its own: {len(self.unmatched_child_products)} products only it sells, left as they are"
            )
        if self.collection_links or self.missing_collections:
            out.append(
                f"  collections: {len(self.collection_links)} matched, {len(self.missing_collections)} to copy"
            )
        attention = len(self.duplicates) + len(self.conflicts) + len(self.missing_sku)
        if attention:
            out.append(
                f"  needs a look: {len(self.duplicates)} SKUs or barcodes used twice, {len(self.conflicts)} "
                f"products matching several, {len(self.missing_sku)} variants without a SKU"
            )
        return out

    def lines(self) -> list[str]:
        """A human-readable report (the CLI prints it)."""
        out = [f"{self.child_shop}: " + ", ".join(f"{k} {v}" for k, v in self.counts().items())]
        out += [
            f"  duplicate {d.key} {d.value!r} in {d.side}: {', '.join(d.variant_ids)}"
            for d in self.duplicates
        ]
        out += [f"  missing SKU in {side}: {vid}" for side, vid in self.missing_sku]
        out += [
            f"  conflict: {c.side} product {c.product_id} matches {', '.join(c.other_product_ids)}"
            for c in self.conflicts
        ]
        return out


def _refs(products: Iterable[Product]) -> list[VariantRef]:
    return [VariantRef.of(p, v) for p in products for v in p.variants]


def _index(
    refs: Sequence[VariantRef], attr: str
) -> tuple[dict[str, VariantRef], dict[str, list[VariantRef]]]:
    groups: dict[str, list[VariantRef]] = defaultdict(list)
    for r in refs:
        value = getattr(r, attr)
        if value:
            groups[value].append(r)
    unique = {k: g[0] for k, g in groups.items() if len(g) == 1}
    dups = {k: g for k, g in groups.items() if len(g) > 1}
    return unique, dups


def match_catalogs(parent: Iterable[Product], child: Iterable[Product], child_shop: str) -> LinkReport:
    report = LinkReport(child_shop)
    prefs, crefs = _refs(parent), _refs(child)
    report.missing_sku = [("parent", r.variant_id) for r in prefs if not r.sku] + [
        ("child", r.variant_id) for r in crefs if not r.sku
    ]
    matched_p: set[str] = set()
    matched_c: set[str] = set()
    matches: list[VariantMatch] = []
    for attr, how in (("sku", MatchedBy.SKU), ("barcode", MatchedBy.BARCODE)):
        p_unique, p_dups = _index(prefs, attr)
        c_unique, c_dups = _index(crefs, attr)
        for side, dups in (("parent", p_dups), ("child", c_dups)):
            for value, group in sorted(dups.items()):
                report.duplicates.append(Duplicate(side, attr, value, tuple(r.variant_id for r in group)))
        for value, pr in sorted(p_unique.items()):
            cr = c_unique.get(value)
            if cr and pr.variant_id not in matched_p and cr.variant_id not in matched_c:
                matches.append(VariantMatch(pr, cr, how))
                matched_p.add(pr.variant_id)
                matched_c.add(cr.variant_id)
    # Handle: same product handle, same option values.
    c_by_handle: dict[tuple[str, tuple[Any, ...]], VariantRef] = {
        (r.handle, r.option_key): r for r in crefs if r.variant_id not in matched_c
    }
    for pr in prefs:
        if pr.variant_id in matched_p:
            continue
        cr = c_by_handle.get((pr.handle, pr.option_key))
        if cr and cr.variant_id not in matched_c:
            matches.append(VariantMatch(pr, cr, MatchedBy.HANDLE))
            matched_p.add(pr.variant_id)
            matched_c.add(cr.variant_id)
    # Products: each side's product must map to exactly one product on the other side.
    p_to_c: dict[str, set[str]] = defaultdict(set)
    c_to_p: dict[str, set[str]] = defaultdict(set)
    for m in matches:
        p_to_c[m.parent.product_id].add(m.child.product_id)
        c_to_p[m.child.product_id].add(m.parent.product_id)
    bad_p = {p for p, cs in p_to_c.items() if len(cs) > 1}
    bad_c = {c for c, ps in c_to_p.items() if len(ps) > 1}
    report.conflicts = [ProductConflict("parent", p, tuple(sorted(p_to_c[p]))) for p in sorted(bad_p)] + [
        ProductConflict("child", c, tuple(sorted(c_to_p[c]))) for c in sorted(bad_c)
    ]
    report.matches = [
        m for m in matches if m.parent.product_id not in bad_p and m.child.product_id not in bad_c
    ]
    linked_p = {m.parent.variant_id for m in report.matches}
    linked_c = {m.child.variant_id for m in report.matches}
    report.unmatched_parent = [r.variant_id for r in prefs if r.variant_id not in linked_p]
    report.unmatched_child = [r.variant_id for r in crefs if r.variant_id not in linked_c]
    matched_products_p = {m.parent.product_id for m in report.matches}
    matched_products_c = {m.child.product_id for m in report.matches}
    report.parent_products = len({r.product_id for r in prefs})
    report.child_products = len({r.product_id for r in crefs})
    report.unmatched_parent_products = sorted({r.product_id for r in prefs} - matched_products_p)
    report.unmatched_child_products = sorted({r.product_id for r in crefs} - matched_products_c)
    return report


def match_collections(
    parent: Iterable[Collection], child: Iterable[Collection], child_shop: str
) -> tuple[list[Link], list[str]]:
    """Collections link by handle (unique per store in Shopify). Returns the links and the parent
    collections the child lacks (a backfill creates them before syncing memberships)."""
    by_handle = {c.handle: c for c in child if c.id}
    links, missing = [], []
    for pc in parent:
        if pc.id is None:
            continue
        cc = by_handle.get(pc.handle)
        if cc is None:
            missing.append(pc.id)
        else:
            links.append(Link(LinkKind.COLLECTION, child_shop, pc.id, cc.id or "", MatchedBy.HANDLE))
    return links, missing


def with_views_already_in_step(
    links: list[Link], parents: Sequence[Product], children: Sequence[Product], policy: SyncPolicy, shop: str
) -> list[Link]:
    """`links` with the synced view of each product link whose child already shows the parent's
    synced fields, as if the engine had written it (`Link.synced_view`): the first stock move of
    the product then finds the child in step (`echoes.children_behind`) instead of starting a
    product job per child that reads both stores to find nothing to do."""
    link_map = LinkMap(shop, list(links))
    parent_by_id = {p.id: p for p in parents}
    child_by_id = {p.id: p for p in children}
    out = []
    for lk in links:
        parent, mine = parent_by_id.get(lk.parent_id), child_by_id.get(lk.child_id)
        if lk.kind is LinkKind.PRODUCT and parent is not None and mine is not None:
            expected = expected_view(parent, policy, link_map)
            if same_view(actual_view(mine, policy, link_map), expected):
                lk = replace(lk, synced_view=expected)
        out.append(lk)
    return out
