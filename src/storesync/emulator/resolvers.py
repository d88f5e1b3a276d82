"""Resolvers for schema.graphql: reads of the store state and the mutations Shopify serves.

Mutations validate all input first and change nothing when any userError is found (Shopify's
field paths and codes); events are collected in the request context and sent by the app once
the operation has run. Malformed ids and missing `first`/`last` are top-level GraphQL errors,
as with Shopify; nothing here may raise anything else (a bug would be a 500).
"""

from __future__ import annotations

import base64
import dataclasses
import json
import re
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any, cast

from graphql import GraphQLError, get_directive_values

from storesync.emulator import payloads
from storesync.emulator.bulk import (
    BULK_EXECUTION,
    BulkOperation,
    BulkQueryInvalid,
    run_bulk_query,
)
from storesync.emulator.ids import gid, gid_type, parse_gid
from storesync.emulator.media import apply_file_set, file_set_problems
from storesync.emulator.metafields import value_error as metafield_value_error
from storesync.emulator.state import (
    CONDITION_KINDS,
    AdjustmentGroup,
    Collection,
    Condition,
    Event,
    InventoryChange,
    InventoryItem,
    InventoryLevel,
    Job,
    Location,
    Metafield,
    OptionValue,
    Product,
    ProductOption,
    ProductSetOperation,
    StoreState,
    Variant,
    apply_item_input,
    condition_error,
    condition_to_rules,
    handleize,
    item_input_problems,
    money,
    now_iso,
    rule_error,
    rule_to_condition,
)
from storesync.emulator.webhooks import Subscription, SubscriptionStore, enum_topic

SCHEMA_PATH = Path(__file__).with_name("schema.graphql")
MAX_PAGE = 250
MAX_QUANTITY = 1_000_000_000
INVENTORY_REASONS = frozenset(
    {
        "correction",
        "cycle_count_available",
        "damaged",
        "movement_created",
        "movement_updated",
        "movement_received",
        "movement_canceled",
        "other",
        "promotion",
        "quality_control",
        "received",
        "reservation_created",
        "reservation_deleted",
        "reservation_updated",
        "restock",
        "safety_stock",
        "shrinkage",
    }
)
SETTABLE_NAMES = ("available", "on_hand")


@dataclass
class RequestContext:
    store: StoreState
    subscriptions: SubscriptionStore
    require_idempotency: bool = True
    events: list[Event] = field(default_factory=list)
    # scheme://host:port of the request, for URLs the emulator serves (bulk results)
    base_url: str = ""
    # The access scopes granted to the app on this store (emulator/oauth.py), as listed.
    access_scopes: tuple[str, ...] = ()
    # A fault the idempotency check answers for this request (faults.py, fail_nth modes).
    idempotency_fault: str | None = None


# --------------------------------------------------------------------------- helpers


TYPE_NAMES = {
    Product: "Product",
    Variant: "ProductVariant",
    InventoryItem: "InventoryItem",
    InventoryLevel: "InventoryLevel",
    Location: "Location",
    Collection: "Collection",
    Subscription: "WebhookSubscription",
    Metafield: "Metafield",
    AdjustmentGroup: "InventoryAdjustmentGroup",
    ProductSetOperation: "ProductSetOperation",
    ProductOption: "ProductOption",
    OptionValue: "ProductOptionValue",
    Job: "Job",
    BulkOperation: "BulkOperation",
}


def type_name_of(obj: Any) -> str:
    """The GraphQL type of a model object: its class's TYPE_NAME, or the table above."""
    return getattr(obj, "TYPE_NAME", None) or TYPE_NAMES[type(obj)]


@cache
def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def default_resolver(obj: Any, info, **_args: Any) -> Any:
    name = info.field_name
    if isinstance(obj, dict):
        return obj.get(name)
    if name == "id":
        if isinstance(obj, InventoryLevel):
            return obj.gid
        if isinstance(obj.id, str):
            return obj.id
        return gid(type_name_of(obj), obj.id)
    if name == "legacyResourceId":
        return str(obj.legacy_id if isinstance(obj, Subscription) else obj.id)
    return getattr(obj, _snake(name), None)


def ctx(info) -> RequestContext:
    return info.context


def store_of(info) -> StoreState:
    return info.context.store


def user_error(field_path: list | None, message: str, code: str | None = None) -> dict:
    return {
        "field": [str(p) for p in field_path] if field_path is not None else None,
        "message": message,
        "code": code,
    }


def parse_id(value: str, type_name: str) -> int | None:
    """The numeric id of a gid of `type_name`; None for a gid of another type; a GraphQL error
    for something that is not a gid at all (Shopify: "Invalid global id")."""
    if gid_type(value) is None:
        raise GraphQLError(
            f"Invalid global id '{value}'", extensions={"code": "argumentLiteralsIncompatible"}
        )
    return parse_gid(value, type_name)


def _encode_cursor(key: tuple) -> str:
    return base64.urlsafe_b64encode(json.dumps(list(key)).encode()).decode()


def _decode_cursor(cursor: str) -> tuple:
    try:
        return tuple(json.loads(base64.urlsafe_b64decode(cursor.encode())))
    except Exception:
        raise GraphQLError(f"Invalid cursor '{cursor}'", extensions={"code": "BAD_REQUEST"}) from None


def connection(items: list, args: dict, sort_key=lambda x: (x.id,)) -> dict:
    """A Relay connection over `items` (sorted by `sort_key`), Shopify's pagination rules."""
    first, last = args.get("first"), args.get("last")
    if BULK_EXECUTION.get():
        # bulk queries read every item; Shopify ignores page arguments there
        first, last, args = len(items), None, {"reverse": args.get("reverse")}
    elif first is None and last is None:
        raise GraphQLError("you must provide one of first or last", extensions={"code": "BAD_REQUEST"})
    for name, n in (("first", first), ("last", last)):
        if n is not None and (n < 0 or n > MAX_PAGE) and not BULK_EXECUTION.get():
            raise GraphQLError(
                f"The value of '{name}' must be between 0 and {MAX_PAGE}.", extensions={"code": "BAD_REQUEST"}
            )
    reverse = bool(args.get("reverse"))
    keyed = sorted(((tuple(sort_key(x)), x) for x in items), key=lambda kx: kx[0], reverse=reverse)
    keys = [k for k, _ in keyed]

    def beyond(k: tuple, c: tuple) -> bool:
        return k < c if reverse else k > c

    lo, hi = 0, len(keyed)
    if args.get("after"):
        c = _decode_cursor(args["after"])
        lo = next((i for i, k in enumerate(keys) if beyond(k, c)), len(keys))
    if args.get("before"):
        c = _decode_cursor(args["before"])
        hi = next((i for i, k in enumerate(keys) if not beyond(c, k)), len(keys))
        hi = max(hi, lo)
    start, end = lo, hi
    if first is not None:
        end = min(end, start + first)
    if last is not None:
        start = max(start, end - last)
    page = keyed[start:end]
    edges = [{"cursor": _encode_cursor(k), "node": x} for k, x in page]
    return {
        "edges": edges,
        "nodes": [x for _, x in page],
        "pageInfo": {
            "hasNextPage": end < len(keyed),
            "hasPreviousPage": start > 0,
            "startCursor": edges[0]["cursor"] if edges else None,
            "endCursor": edges[-1]["cursor"] if edges else None,
        },
    }


# --------------------------------------------------------------------------- search syntax

_TERM = re.compile(r'(?P<neg>-)?(?:(?P<field>[a-z_]+):(?P<op>>=|<=|>|<)?)?(?P<val>"[^"]*"|\'[^\']*\'|\S+)')


def parse_search(query: str | None) -> list[tuple[str | None, str, str, bool]]:
    """Shopify search syntax, the part apps use: `field:value`, `field:>value`, quoted values,
    `-field:value`, bare words, AND (implicit). Returns (field, op, value, negated) terms."""
    terms = []
    for m in _TERM.finditer(query or ""):
        val = m.group("val")
        if m.group("field") is None and val in ("AND", "and"):
            continue
        if len(val) >= 2 and val[0] == val[-1] and val[0] in "\"'":
            val = val[1:-1]
        terms.append((m.group("field"), m.group("op") or "=", val, bool(m.group("neg"))))
    return terms


def _parse_time(value: str) -> datetime | None:
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if dt.tzinfo is None:
        from datetime import UTC

        dt = dt.replace(tzinfo=UTC)
    return dt


def _compare(actual: Any, op: str, wanted: Any) -> bool:
    if actual is None or wanted is None:
        return False
    return {
        "=": actual == wanted,
        ">": actual > wanted,
        ">=": actual >= wanted,
        "<": actual < wanted,
        "<=": actual <= wanted,
    }[op]


def _text_match(actual: str | None, wanted: str) -> bool:
    if actual is None:
        return False
    if wanted.endswith("*"):
        return actual.lower().startswith(wanted[:-1].lower())
    return actual.lower() == wanted.lower()


def matches(obj: Any, terms: list, fields: dict) -> bool:
    """Whether `obj` satisfies every term; `fields` maps a search field to a getter returning a
    value or a list of values (any may match). Unknown fields are ignored, as Shopify does."""
    for fname, op, val, neg in terms:
        getter = fields.get("_default") if fname is None else fields.get(fname)
        if getter is None:
            continue
        got = getter(obj)
        values = got if isinstance(got, list) else [got]
        if fname in ("updated_at", "created_at"):
            wanted = _parse_time(val)
            ok = any(_compare(_parse_time(v) if v else None, op, wanted) for v in values)
        elif fname == "id":
            try:
                wanted_id = int(val.rsplit("/", 1)[-1])
            except ValueError:
                wanted_id = None
            ok = any(_compare(v, op, wanted_id) for v in values)
        elif fname is None:
            ok = any(v is not None and val.lower() in v.lower() for v in values)
        else:
            ok = any(_text_match(v if v is None else str(v), val) for v in values)
        if ok == neg:
            return False
    return True


def product_search_fields(store: StoreState) -> dict:
    return {
        "_default": lambda p: p.title,
        "title": lambda p: p.title,
        "handle": lambda p: p.handle,
        "sku": lambda p: [store.items[v.inventory_item_id].sku for v in store.product_variants(p)],
        "barcode": lambda p: [v.barcode for v in store.product_variants(p)],
        "updated_at": lambda p: p.updated_at,
        "created_at": lambda p: p.created_at,
        "status": lambda p: p.status,
        "vendor": lambda p: p.vendor,
        "product_type": lambda p: p.product_type,
        "tag": lambda p: list(p.tags),
        "id": lambda p: p.id,
    }


# --------------------------------------------------------------------------- queries


def q_shop(_root, info) -> dict:
    s = store_of(info)
    return {
        "id": gid("Shop", s.id),
        "name": s.name,
        "email": f"owner@{s.shop}",
        "myshopifyDomain": s.shop,
        "currencyCode": s.currency,
        "ianaTimezone": s.timezone,
        "createdAt": s.created_at,
        "updatedAt": s.created_at,
        "url": f"https://{s.shop}",
        "plan": {
            "displayName": {"standard": "Basic", "advanced": "Advanced", "plus": "Shopify Plus"}[s.plan],
            "partnerDevelopment": False,
            "shopifyPlus": s.plan == "plus",
        },
    }


_PRODUCT_SORT = {
    "ID": lambda p: (p.id,),
    "TITLE": lambda p: (p.title.lower(), p.id),
    "UPDATED_AT": lambda p: (p.updated_at, p.id),
    "CREATED_AT": lambda p: (p.created_at, p.id),
}


def q_products(_root, info, **args) -> dict:
    store = store_of(info)
    terms = parse_search(args.get("query"))
    fields = product_search_fields(store)
    items = [p for p in store.products.values() if matches(p, terms, fields)]
    return connection(items, args, _PRODUCT_SORT[args.get("sortKey") or "ID"])


def q_product(_root, info, id: str) -> Product | None:
    pid = parse_id(id, "Product")
    return store_of(info).products.get(pid) if pid else None


def q_product_by_identifier(_root, info, identifier: dict) -> Product | None:
    store = store_of(info)
    if identifier.get("id") is not None:
        pid = parse_id(identifier["id"], "Product")
        return store.products.get(pid) if pid else None
    if identifier.get("handle") is not None:
        return store.product_by_handle(identifier["handle"])
    raise GraphQLError("identifier must specify one of id or handle", extensions={"code": "BAD_REQUEST"})


def q_product_variant(_root, info, id: str) -> Variant | None:
    vid = parse_id(id, "ProductVariant")
    return store_of(info).variants.get(vid) if vid else None


def q_product_variants(_root, info, **args) -> dict:
    store = store_of(info)
    terms = parse_search(args.get("query"))
    fields = {
        "_default": lambda v: store.products[v.product_id].title,
        "sku": lambda v: store.items[v.inventory_item_id].sku,
        "barcode": lambda v: v.barcode,
        "product_id": lambda v: str(v.product_id),
        "updated_at": lambda v: v.updated_at,
        "id": lambda v: v.id,
    }
    return connection([v for v in store.variants.values() if matches(v, terms, fields)], args)


def q_products_count(_root, info, query: str | None = None) -> dict:
    store = store_of(info)
    terms = parse_search(query)
    fields = product_search_fields(store)
    return {
        "count": sum(1 for p in store.products.values() if matches(p, terms, fields)),
        "precision": "EXACT",
    }


def q_inventory_item(_root, info, id: str) -> InventoryItem | None:
    iid = parse_id(id, "InventoryItem")
    return store_of(info).items.get(iid) if iid else None


def q_inventory_items(_root, info, **args) -> dict:
    store = store_of(info)
    terms = parse_search(args.get("query"))
    fields = {
        "sku": lambda i: i.sku,
        "id": lambda i: i.id,
        "updated_at": lambda i: i.updated_at,
        "_default": lambda i: i.sku,
    }
    return connection([i for i in store.items.values() if matches(i, terms, fields)], args)


def q_locations(_root, info, **args) -> dict:
    store = store_of(info)
    items = [loc for loc in store.locations.values() if loc.is_active or args.get("includeInactive")]
    terms = parse_search(args.get("query"))
    fields = {"name": lambda loc: loc.name, "id": lambda loc: loc.id, "_default": lambda loc: loc.name}
    return connection([loc for loc in items if matches(loc, terms, fields)], args)


def q_location(_root, info, id: str | None = None) -> Location | None:
    store = store_of(info)
    if id is None:
        active = store.active_locations()
        return active[0] if active else None
    lid = parse_id(id, "Location")
    return store.locations.get(lid) if lid else None


def q_collections(_root, info, **args) -> dict:
    store = store_of(info)
    terms = parse_search(args.get("query"))
    fields = {
        "_default": lambda c: c.title,
        "title": lambda c: c.title,
        "handle": lambda c: c.handle,
        "updated_at": lambda c: c.updated_at,
        "id": lambda c: c.id,
        "collection_type": lambda c: "smart" if c.smart else "custom",
    }
    sort = {
        "ID": lambda c: (c.id,),
        "TITLE": lambda c: (c.title.lower(), c.id),
        "UPDATED_AT": lambda c: (c.updated_at, c.id),
    }[args.get("sortKey") or "ID"]
    return connection([c for c in store.collections.values() if matches(c, terms, fields)], args, sort)


def q_collection(_root, info, id: str) -> Collection | None:
    cid = parse_id(id, "Collection")
    return store_of(info).collections.get(cid) if cid else None


def q_webhook_subscriptions(_root, info, **args) -> dict:
    c = ctx(info)
    subs = c.subscriptions.list(shop=c.store.shop)
    if args.get("topics"):
        subs = [s for s in subs if s.topic_enum in args["topics"]]
    if args.get("callbackUrl") or args.get("uri"):
        subs = [s for s in subs if s.callback_url == (args.get("uri") or args["callbackUrl"])]
    if args.get("format"):
        subs = [s for s in subs if s.format == args["format"]]
    return connection(subs, args, lambda s: (s.legacy_id,))


def q_webhook_subscription(_root, info, id: str) -> Subscription | None:
    parse_id(id, "WebhookSubscription")
    sub = ctx(info).subscriptions.get(id)
    return sub if sub is not None and sub.shop == store_of(info).shop else None


def lookup_node(info, value: str) -> Any:
    store = store_of(info)
    type_name = gid_type(value)
    if type_name is None:
        raise GraphQLError(
            f"Invalid global id '{value}'", extensions={"code": "argumentLiteralsIncompatible"}
        )
    num = parse_gid(value)
    assert num is not None  # gid_type matched, so the gid has a number
    if type_name == "InventoryLevel":
        m = re.search(r"inventory_item_id=(\d+)", value)
        lvl = next((lv for lv in store.levels.values() if lv.id == num), None)
        return lvl if lvl is not None and (m is None or int(m.group(1)) == lvl.item_id) else None
    if type_name == "BulkOperation":
        op = store.bulk_operations.get(num)
        if op is not None:
            op.advance()
        return op
    if type_name == "WebhookSubscription":
        sub = ctx(info).subscriptions.get(f"gid://shopify/WebhookSubscription/{num}")
        return sub if sub is not None and sub.shop == store.shop else None
    tables: dict[str, dict[int, Any]] = {
        "Product": store.products,
        "ProductVariant": store.variants,
        "InventoryItem": store.items,
        "Location": store.locations,
        "Collection": store.collections,
        "InventoryAdjustmentGroup": store.groups,
        "ProductSetOperation": store.operations,
        "Order": store.orders,
        "Publication": store.publications,
    }
    table = tables.get(type_name)
    if table is not None:
        return table.get(num)
    # orders' parts and media (store.objects): any id, of the type asked for
    obj = store.objects.get(num)
    return obj if obj is not None and type_name_of(obj) == type_name else None


def q_node(_root, info, id: str) -> Any:
    return lookup_node(info, id)


def q_nodes(_root, info, ids: list[str]) -> list:
    if len(ids) > MAX_PAGE:
        raise GraphQLError(
            f"The value of 'ids' must contain at most {MAX_PAGE} ids.", extensions={"code": "BAD_REQUEST"}
        )
    return [lookup_node(info, i) for i in ids]


def resolve_node_type(obj: Any, _info, _type) -> str:
    return type_name_of(obj)


# --------------------------------------------------------------------------- object fields


def _metafield(owner, _info, key: str, namespace: str | None = None) -> Metafield | None:
    return next(
        (m for m in owner.metafields if m.key == key and (namespace is None or m.namespace == namespace)),
        None,
    )


def _metafields(owner, _info, **args) -> dict:
    items = [
        m
        for m in owner.metafields
        if (args.get("namespace") is None or m.namespace == args["namespace"])
        and (args.get("keys") is None or f"{m.namespace}.{m.key}" in args["keys"])
    ]
    return connection(items, args)


def _seo(obj, _info) -> dict:
    return {"title": obj.seo_title, "description": obj.seo_description}


def p_variants(p: Product, info, **args) -> dict:
    return connection(store_of(info).product_variants(p), args, lambda v: (v.position, v.id))


def p_collections(p: Product, info, **args) -> dict:
    return connection(store_of(info).product_collections(p.id), args)


def p_options(p: Product, _info, first: int | None = None) -> list:
    return p.options[:first] if first is not None else p.options


def p_in_collection(p: Product, info, id: str) -> bool:
    cid = parse_id(id, "Collection")
    coll = store_of(info).collections.get(cid) if cid else None
    return coll is not None and store_of(info).in_collection(p.id, coll)


def p_total_inventory(p: Product, info) -> int:
    store = store_of(info)
    return sum(store.variant_available(v) for v in store.product_variants(p))


def p_tracks_inventory(p: Product, info) -> bool:
    store = store_of(info)
    return any(store.items[v.inventory_item_id].tracked for v in store.product_variants(p))


def p_has_only_default_variant(p: Product, _info) -> bool:
    return len(p.options) == 1 and p.options[0].name == "Title" and len(p.variant_ids) == 1


def p_variants_count(p: Product, _info) -> dict:
    return {"count": len(p.variant_ids), "precision": "EXACT"}


def v_sku(v: Variant, info) -> str | None:
    return store_of(info).items[v.inventory_item_id].sku


def v_inventory_quantity(v: Variant, info) -> int:
    return store_of(info).variant_available(v)


def v_available_for_sale(v: Variant, info) -> bool:
    return v.inventory_policy == "CONTINUE" or store_of(info).variant_available(v) > 0


def v_display_name(v: Variant, info) -> str:
    return f"{store_of(info).products[v.product_id].title} - {v.title}"


def v_selected_options(v: Variant, info) -> list:
    product = store_of(info).products[v.product_id]
    out = []
    for name, value in v.selected:
        opt = next((o for o in product.options if o.name == name), None)
        ov = next((x for x in opt.values if x.name == value), None) if opt else None
        out.append({"name": name, "value": value, "optionValue": ov or OptionValue(0, value)})
    return out


def ov_has_variants(ov: OptionValue, info) -> bool:
    store = store_of(info)
    return any(value == ov.name for v in store.variants.values() for _n, value in v.selected)


def po_values(o: ProductOption, _info) -> list[str]:
    return [v.name for v in o.values]


def po_option_values(o: ProductOption, _info) -> list:
    return o.values


def ii_variant(i: InventoryItem, info) -> Variant:
    return store_of(info).variants[i.variant_id]


def ii_inventory_level(
    i: InventoryItem, info, locationId: str, includeInactive: bool | None = None
) -> InventoryLevel | None:
    store = store_of(info)
    lid = parse_id(locationId, "Location")
    if lid is None:
        return None
    found = store.levels.get((i.id, lid))
    return found or (store.inactive_levels.get((i.id, lid)) if includeInactive else None)


def ii_inventory_levels(i: InventoryItem, info, includeInactive: bool | None = None, **args) -> dict:
    store = store_of(info)
    levels = store.item_levels(i.id)
    if includeInactive:
        levels += [lvl for (item, _loc), lvl in store.inactive_levels.items() if item == i.id]
    return connection(levels, args)


def lvl_item(lvl: InventoryLevel, info) -> InventoryItem:
    return store_of(info).items[lvl.item_id]


def lvl_location(lvl: InventoryLevel, info) -> Location:
    return store_of(info).locations[lvl.location_id]


def lvl_quantities(lvl: InventoryLevel, _info, names: list[str]) -> list[dict]:
    bad = [n for n in names if n not in lvl.quantities]
    if bad:
        raise GraphQLError(f"Invalid quantity name(s): {', '.join(bad)}", extensions={"code": "BAD_REQUEST"})
    return [
        {
            "id": f"gid://shopify/InventoryQuantity/{lvl.id}?inventory_item_id={lvl.item_id}&name={n}",
            "name": n,
            "quantity": lvl.quantities[n],
            "updatedAt": lvl.updated_at,
        }
        for n in names
    ]


def loc_inventory_level(
    loc: Location, info, inventoryItemId: str, includeInactive: bool | None = None
) -> InventoryLevel | None:
    store = store_of(info)
    iid = parse_id(inventoryItemId, "InventoryItem")
    if iid is None:
        return None
    found = store.levels.get((iid, loc.id))
    return found or (store.inactive_levels.get((iid, loc.id)) if includeInactive else None)


def loc_inventory_levels(loc: Location, info, includeInactive: bool | None = None, **args) -> dict:
    store = store_of(info)
    levels = store.location_levels(loc.id)
    if includeInactive:
        levels += [lvl for (_item, lid), lvl in store.inactive_levels.items() if lid == loc.id]
    return connection(levels, args)


def c_products(c: Collection, info, **args) -> dict:
    store = store_of(info)
    members = store.collection_members(c)
    order = {pid: i for i, pid in enumerate(members)}
    return connection([store.products[p] for p in members], args, lambda p: (order[p.id], p.id))


def c_products_count(c: Collection, info) -> dict:
    return {"count": len(store_of(info).collection_members(c)), "precision": "EXACT"}


def c_has_product(c: Collection, info, id: str) -> bool:
    pid = parse_id(id, "Product")
    return pid is not None and store_of(info).in_collection(pid, c)


def c_image(c: Collection, _info) -> dict | None:
    if c.image_url is None:
        return None
    return {"id": gid("CollectionImage", c.id), "altText": c.image_alt, "url": c.image_url}


def c_rule_set(c: Collection, _info) -> dict | None:
    """The deprecated view of a smart collection's conditions (one rule per condition value)."""
    if not c.smart:
        return None
    rules = [r for cond in c.conditions for r in condition_to_rules(cond)]
    return {
        "appliedDisjunctively": c.disjunctive,
        "rules": [{"column": col, "relation": rel, "condition": value} for col, rel, value in rules],
    }


def _condition_json(cond: Condition) -> dict:
    value_kind, type_name, _ = CONDITION_KINDS[cond.kind]
    out: dict[str, Any] = {
        "__typename": type_name,
        "id": gid("CollectionSourceCondition", cond.id),
        "relation": cond.relation,
    }
    if value_kind in ("tag", "text"):
        out["matchType"], out["values"] = cond.match_type, list(cond.values)
    elif value_kind == "money":
        out["value"] = {"amount": cond.values[0], "currencyCode": cond.currency} if cond.values else None
    else:
        out["value"] = int(float(cond.values[0]))
    return out


def c_sources(c: Collection, _info) -> list[dict]:
    """The collection's one conditions source (none once deleted)."""
    if c.source_id is None:
        return []
    return [
        {
            "__typename": "CollectionConditionsSource",
            "id": gid("CollectionSource", c.source_id),
            "title": c.source_title or c.title,
            "description": None,
            "targetType": "PRODUCTS",
            "shareable": False,
            "inclusion": {
                "matchType": c.match_type if c.smart else None,
                "conditions": [_condition_json(cond) for cond in c.conditions],
                "_collection": c,
            },
        }
    ]


def inclusion_selections(inclusion: dict, info, **args) -> dict:
    store = store_of(info)
    coll: Collection = inclusion["_collection"]
    products = [store.products[p] for p in coll.product_ids if p in store.products]
    order = {p: i for i, p in enumerate(coll.product_ids)}
    conn = connection(products, args, sort_key=lambda p: (order[p.id],))
    for key in ("nodes",):
        conn[key] = [{"product": p, "variantIds": None} for p in conn[key]]
    conn["edges"] = [
        {"cursor": e["cursor"], "node": {"product": e["node"], "variantIds": None}} for e in conn["edges"]
    ]
    return conn


def ws_topic(s: Subscription, _info) -> str:
    return s.topic_enum


def ws_endpoint(s: Subscription, _info) -> dict:
    return {"__typename": "WebhookHttpEndpoint", "callbackUrl": s.callback_url}


def g_changes(g: AdjustmentGroup, _info, inventoryItemIds=None, locationIds=None, quantityNames=None) -> list:
    out = []
    for ch in g.changes:
        if inventoryItemIds is not None and gid("InventoryItem", ch.item_id) not in inventoryItemIds:
            continue
        if locationIds is not None and gid("Location", ch.location_id) not in locationIds:
            continue
        if quantityNames is not None and ch.name not in quantityNames:
            continue
        out.append(ch)
    return out


def ch_item(ch: InventoryChange, info) -> InventoryItem | None:
    return store_of(info).items.get(ch.item_id)


def ch_location(ch: InventoryChange, info) -> Location | None:
    return store_of(info).locations.get(ch.location_id)


def op_product(op: ProductSetOperation, info) -> Product | None:
    return store_of(info).products.get(op.product_id) if op.product_id else None


# --------------------------------------------------------------------------- idempotency


# https://shopify.dev/docs/api/usage/implementing-idempotency: a key seen before replays the first
# result; with other arguments it is IDEMPOTENCY_KEY_PARAMETER_MISMATCH; a key whose first attempt
# failed is spent (IDEMPOTENCY_PREVIOUS_ATTEMPT_FAILED: "retry with a new idempotency key"); a key
# whose request is still in progress gets IDEMPOTENCY_CONCURRENT_REQUEST ("try again").
IDEMPOTENCY_MESSAGES = {
    "IDEMPOTENCY_CONCURRENT_REQUEST": "This request is currently in progress, please try again.",
    "IDEMPOTENCY_KEY_PARAMETER_MISMATCH": "The same idempotency key cannot be used with different operation parameters.",
    "IDEMPOTENCY_PREVIOUS_ATTEMPT_FAILED": "A previous request with this idempotency key failed. Retry with a new idempotency key.",
}


def _idempotency_refusal(code: str) -> dict:
    return {
        "inventoryAdjustmentGroup": None,
        "userErrors": [user_error(None, IDEMPOTENCY_MESSAGES[code], code)],
    }


def idempotent(info, args: dict, run) -> Any:
    """Run a mutation under the @idempotent directive (see IDEMPOTENCY_MESSAGES)."""
    c = ctx(info)
    directive = info.schema.get_directive("idempotent")
    values = get_directive_values(directive, info.field_nodes[0], info.variable_values) if directive else None
    key = (values or {}).get("key")
    if key is None:
        if c.require_idempotency:
            raise GraphQLError(
                f"The @idempotent directive is required for {info.field_name} (API version 2026-04 and later).",
                extensions={"code": "BAD_REQUEST"},
            )
        return run()
    fingerprint = json.dumps(args, sort_keys=True, default=str)
    if c.idempotency_fault == "idempotency_concurrent":
        return _idempotency_refusal("IDEMPOTENCY_CONCURRENT_REQUEST")
    seen = c.store.idempotency.get(key)
    if seen is not None:
        field_name, seen_fingerprint, result = seen
        if field_name != info.field_name or seen_fingerprint != fingerprint:
            return _idempotency_refusal("IDEMPOTENCY_KEY_PARAMETER_MISMATCH")
        if result is None or result.get("userErrors"):
            return _idempotency_refusal("IDEMPOTENCY_PREVIOUS_ATTEMPT_FAILED")
        return result
    if c.idempotency_fault == "attempt_failed":
        c.store.idempotency[key] = (info.field_name, fingerprint, None)
        raise GraphQLError(
            "Internal error. Looks like something went wrong on our end.",
            extensions={"code": "INTERNAL_SERVER_ERROR"},
        )
    result = run()
    c.store.idempotency[key] = (info.field_name, fingerprint, result)
    return result


# --------------------------------------------------------------------------- mutations: inventory


def _inventory_target(
    store: StoreState, path: list, item_gid: str, location_gid: str, errors: list, codes: dict
) -> InventoryLevel | None:
    iid = parse_gid(item_gid, "InventoryItem")
    lid = parse_gid(location_gid, "Location")
    if iid is None or iid not in store.items:
        errors.append(
            user_error(
                [*path, "inventoryItemId"], "The specified inventory item could not be found.", codes["item"]
            )
        )
        return None
    if lid is None or lid not in store.locations or not store.locations[lid].is_active:
        # A deactivated location takes no quantity change: its levels are inactive (read only
        # with includeInactive) and 2026-10's inventory error codes have no other code for it
        # than INVALID_LOCATION "The specified location could not be found"
        # (https://shopify.dev/docs/api/admin-graphql/2026-10/enums/InventorySetQuantitiesUserErrorCode).
        errors.append(
            user_error([*path, "locationId"], "The specified location could not be found.", codes["location"])
        )
        return None
    # 2026-10: quantities can be changed at any location; an item not stocked there is stocked
    # (https://shopify.dev/changelog/removal-of-itemnotstockedatlocation-error).
    return store.ensure_level(iid, lid)


def _check_reason(inp: dict, errors: list) -> None:
    if inp["reason"] not in INVENTORY_REASONS:
        errors.append(user_error(["input", "reason"], "The specified reason is invalid.", "INVALID_REASON"))


def _apply_changes(
    store: StoreState, name: str, targets: list[tuple[InventoryLevel, int, str | None]], inp: dict
) -> tuple[AdjustmentGroup | None, list[InventoryLevel]]:
    """Apply (level, new value of `name`) pairs; the adjustment group lists each quantity name
    that moved (setting available moves on_hand too, and the other way round)."""
    changes: list[InventoryChange] = []
    touched: list[InventoryLevel] = []
    for lvl, value, ledger in targets:
        delta = store.set_quantity(lvl, name, value)
        if delta == 0:
            continue
        other = "on_hand" if name == "available" else "available"
        changes.append(
            InventoryChange(name, delta, lvl.quantities[name], lvl.item_id, lvl.location_id, ledger)
        )
        changes.append(
            InventoryChange(other, delta, lvl.quantities[other], lvl.item_id, lvl.location_id, ledger)
        )
        touched.append(lvl)
    if not changes:
        return None, []
    group = AdjustmentGroup(store.next_id(), inp["reason"], inp.get("referenceDocumentUri"), changes)
    store.groups[group.id] = group
    return group, touched


def m_inventory_set_quantities(_root, info, input: dict) -> dict:
    return idempotent(info, {"input": input}, lambda: _inventory_set_quantities(info, input))


def _inventory_set_quantities(info, inp: dict) -> dict:
    store = store_of(info)
    errors: list[dict] = []
    _check_reason(inp, errors)
    if inp["name"] not in SETTABLE_NAMES:
        errors.append(
            user_error(
                ["input", "name"],
                "The quantity name must be either 'available' or 'on_hand'.",
                "INVALID_NAME",
            )
        )
    targets: list[tuple[InventoryLevel, int, str | None]] = []
    seen: set[tuple[int, int]] = set()
    for i, q in enumerate(inp["quantities"]):
        path = ["input", "quantities", i]
        lvl = _inventory_target(
            store,
            path,
            q["inventoryItemId"],
            q["locationId"],
            errors,
            {"item": "INVALID_INVENTORY_ITEM", "location": "INVALID_LOCATION"},
        )
        if q["quantity"] < 0:
            errors.append(
                user_error(
                    [*path, "quantity"], "The quantity can't be negative.", "INVALID_QUANTITY_NEGATIVE"
                )
            )
        elif q["quantity"] > MAX_QUANTITY:
            errors.append(
                user_error([*path, "quantity"], "The quantity is too high.", "INVALID_QUANTITY_TOO_HIGH")
            )
        if lvl is None:
            continue
        if (lvl.item_id, lvl.location_id) in seen:
            errors.append(
                user_error(
                    path,
                    "The combination of inventoryItemId and locationId must be unique.",
                    "NO_DUPLICATE_INVENTORY_ITEM_ID_GROUP_ID_PAIR",
                )
            )
            continue
        seen.add((lvl.item_id, lvl.location_id))
        if "changeFromQuantity" not in q:
            errors.append(
                user_error(
                    [*path, "changeFromQuantity"],
                    "changeFromQuantity is required; pass null to skip the check.",
                    "COMPARE_QUANTITY_REQUIRED",
                )
            )
        elif (
            q["changeFromQuantity"] is not None
            and inp["name"] in SETTABLE_NAMES
            and q["changeFromQuantity"] != lvl.quantities[inp["name"]]
        ):
            errors.append(
                user_error(
                    [*path, "changeFromQuantity"],
                    f"The quantity changed since changeFromQuantity was read: it is {lvl.quantities[inp['name']]}, "
                    f"not {q['changeFromQuantity']}.",
                    "CHANGE_FROM_QUANTITY_STALE",
                )
            )
        targets.append((lvl, q["quantity"], None))
    if errors:
        return {"inventoryAdjustmentGroup": None, "userErrors": errors}
    group, touched = _apply_changes(store, inp["name"], targets, inp)
    ctx(info).events.extend(store.inventory_events(touched))
    return {"inventoryAdjustmentGroup": group, "userErrors": []}


def m_inventory_adjust_quantities(_root, info, input: dict) -> dict:
    return idempotent(info, {"input": input}, lambda: _inventory_adjust_quantities(info, input))


def _inventory_adjust_quantities(info, inp: dict) -> dict:
    store = store_of(info)
    errors: list[dict] = []
    _check_reason(inp, errors)
    if inp["name"] not in SETTABLE_NAMES:
        errors.append(
            user_error(
                ["input", "name"],
                "The quantity name must be either 'available' or 'on_hand'.",
                "INVALID_QUANTITY_NAME",
            )
        )
    # Several changes to one level add up; the compare applies to the value before the first.
    planned: dict[tuple[int, int], int] = {}
    levels: dict[tuple[int, int], InventoryLevel] = {}
    ledgers: dict[tuple[int, int], str | None] = {}
    for i, ch in enumerate(inp["changes"]):
        path = ["input", "changes", i]
        lvl = _inventory_target(
            store,
            path,
            ch["inventoryItemId"],
            ch["locationId"],
            errors,
            {"item": "INVALID_INVENTORY_ITEM", "location": "INVALID_LOCATION"},
        )
        if lvl is None or inp["name"] not in SETTABLE_NAMES:
            continue
        key = (lvl.item_id, lvl.location_id)
        current = planned.get(key, lvl.quantities[inp["name"]])
        cfq = ch.get("changeFromQuantity")
        if cfq is not None and cfq != current:
            errors.append(
                user_error(
                    [*path, "changeFromQuantity"],
                    f"The quantity changed since changeFromQuantity was read: it is {current}, not {cfq}.",
                    "CHANGE_FROM_QUANTITY_STALE",
                )
            )
            continue
        after = current + ch["delta"]
        if abs(after) > MAX_QUANTITY:
            errors.append(
                user_error(
                    [*path, "delta"],
                    "The resulting quantity is out of range.",
                    "INVALID_QUANTITY_TOO_HIGH" if after > 0 else "INVALID_QUANTITY_TOO_LOW",
                )
            )
            continue
        planned[key] = after
        levels[key] = lvl
        ledgers[key] = ch.get("ledgerDocumentUri")
    if errors:
        return {"inventoryAdjustmentGroup": None, "userErrors": errors}
    targets = [(levels[k], v, ledgers[k]) for k, v in planned.items()]
    group, touched = _apply_changes(store, inp["name"], targets, inp)
    ctx(info).events.extend(store.inventory_events(touched))
    return {"inventoryAdjustmentGroup": group, "userErrors": []}


# --------------------------------------------------------------------------- mutations: products


def _metafield_errors(
    metafields: list[dict] | None, path: list, code: str | None, known: set[int] | None = None
) -> list[dict]:
    """A metafield names an existing one by id (of the owner's, when `known` lists them), or
    gives namespace, key, type and value; a value must be one its type accepts
    (https://shopify.dev/docs/apps/build/custom-data/metafields/list-of-data-types)."""
    errors = []
    for j, mf in enumerate(metafields or []):
        if mf.get("type") and mf.get("value") is not None:
            why = metafield_value_error(mf["type"], mf["value"])
            if why:
                errors.append(user_error([*path, j, "value"], why, code))
        if mf.get("id") is not None:
            mid = parse_gid(mf["id"], "Metafield")
            if mid is None or (known is not None and mid not in known):
                errors.append(user_error([*path, j, "id"], "Metafield does not exist", code))
            continue
        for k in ("namespace", "key", "type", "value"):
            if not mf.get(k):
                errors.append(user_error([*path, j, k], f"{k} can't be blank", code))
    return errors


def _replace_metafields(store: StoreState, existing: list[Metafield], given: list[dict]) -> list[Metafield]:
    """Wholesale: the given metafields, keeping ids of ones that match by id or namespace+key."""
    out = []
    by_id: dict[int | None, Metafield] = {m.id: m for m in existing}
    by_key: dict[tuple[Any, Any], Metafield] = {(m.namespace, m.key): m for m in existing}
    for mf in given:
        old = (
            by_id.get(parse_gid(mf.get("id"), "Metafield"))
            if mf.get("id")
            else by_key.get((mf.get("namespace"), mf.get("key")))
        )
        if old is not None:
            for attr in ("namespace", "key", "value", "type"):
                if mf.get(attr) is not None:
                    setattr(old, attr, mf[attr])
            old.updated_at = now_iso()
            out.append(old)
        else:
            out.append(Metafield(store.next_id(), mf["namespace"], mf["key"], mf["value"], mf["type"]))
    return out


def _upsert_metafields(store: StoreState, existing: list[Metafield], given: list[dict]) -> list[Metafield]:
    merged = _replace_metafields(store, existing, given)
    kept = {id(m) for m in merged}
    return [m for m in existing if id(m) not in kept] + merged


def m_product_set(
    _root, info, input: dict, synchronous: bool | None = None, identifier: dict | None = None
) -> dict:
    store = store_of(info)

    def fail(errors: list[dict]) -> dict:
        return {"product": None, "productSetOperation": None, "userErrors": errors}

    product: Product | None = None
    if identifier is not None:
        if identifier.get("id") is not None:
            pid = parse_id(identifier["id"], "Product")
            product = store.products.get(pid) if pid else None
            if product is None:
                return fail(
                    [user_error(["identifier", "id"], "Product does not exist", "PRODUCT_DOES_NOT_EXIST")]
                )
        elif identifier.get("handle") is not None:
            product = store.product_by_handle(identifier["handle"])
        else:
            return fail([user_error(["identifier"], "Specify one of id or handle", "INVALID_INPUT")])
    if input.get("id") is not None:
        pid = parse_id(input["id"], "Product")
        by_id = store.products.get(pid) if pid else None
        if by_id is None:
            return fail([user_error(["input", "id"], "Product does not exist", "PRODUCT_DOES_NOT_EXIST")])
        if product is not None and product is not by_id:
            return fail(
                [user_error(["input", "id"], "The id does not match the identifier", "INVALID_INPUT")]
            )
        product = by_id
    creating = product is None
    errors: list[dict] = []

    handle = input.get("handle")
    if handle is None and creating and identifier and identifier.get("handle"):
        handle = identifier["handle"]
    if handle is not None:
        owner = store.product_by_handle(handle)
        if not handle.strip():
            errors.append(user_error(["input", "handle"], "Handle can't be blank", "INVALID_INPUT"))
        elif owner is not None and owner is not product:
            errors.append(
                user_error(
                    ["input", "handle"],
                    f"Handle '{handle}' already in use. Please provide a new handle.",
                    "HANDLE_NOT_UNIQUE",
                )
            )
    if creating and not (input.get("title") or "").strip():
        errors.append(user_error(["input", "title"], "Title can't be blank", "INVALID_INPUT"))
    if "title" in input and not creating and not (input.get("title") or "").strip():
        errors.append(user_error(["input", "title"], "Title can't be blank", "INVALID_INPUT"))

    # Options: given ones replace the product's; otherwise the existing ones stay.
    opt_input = input.get("productOptions")
    var_input = input.get("variants")
    if opt_input is not None:
        names = [o.get("name") for o in opt_input]
        for j, o in enumerate(opt_input):
            if not o.get("name"):
                errors.append(
                    user_error(
                        ["input", "productOptions", j, "name"], "Option name can't be blank", "INVALID_INPUT"
                    )
                )
            elif names.count(o["name"]) > 1:
                errors.append(
                    user_error(
                        ["input", "productOptions", j, "name"],
                        f"Duplicated option name '{o['name']}'",
                        "DUPLICATED_OPTION_NAME",
                    )
                )
            values = [v.get("name") for v in (o.get("values") or [])]
            if not values:
                errors.append(
                    user_error(
                        ["input", "productOptions", j, "values"],
                        "Option values are missing",
                        "OPTION_VALUES_MISSING",
                    )
                )
            if len(set(values)) != len(values):
                errors.append(
                    user_error(
                        ["input", "productOptions", j, "values"],
                        "Duplicated option value",
                        "DUPLICATED_OPTION_VALUE",
                    )
                )
        option_values = {o.get("name"): [v.get("name") for v in (o.get("values") or [])] for o in opt_input}
    elif var_input is not None and creating:
        errors.append(
            user_error(
                ["input", "productOptions"],
                "Product options input is required when updating variants",
                "PRODUCT_OPTIONS_INPUT_MISSING",
            )
        )
        option_values = {}
    elif product is not None:
        option_values = {o.name: [v.name for v in o.values] for o in product.options}
    else:
        option_values = {}
    if opt_input is not None and var_input is None and creating:
        errors.append(
            user_error(
                ["input", "variants"],
                "Variants input is required when product options are given",
                "VARIANTS_INPUT_MISSING",
            )
        )
    if (
        opt_input is not None
        and var_input is None
        and product is not None
        and any(
            set(dict(v.selected)) != set(option_values)
            or any(val not in option_values.get(n, ()) for n, val in v.selected)
            for v in store.product_variants(product)
        )
    ):
        errors.append(
            user_error(
                ["input", "variants"],
                "Variants must be given when the product options change under them",
                "VARIANTS_INPUT_MISSING",
            )
        )
    if var_input is not None and not var_input:
        errors.append(
            user_error(
                ["input", "variants"], "A product needs at least one variant", "VARIANTS_INPUT_MISSING"
            )
        )

    combos: set[tuple] = set()
    seen_variant_ids: set[str] = set()
    for i, v in enumerate(var_input or []):
        path = ["input", "variants", i]
        if v.get("id") is not None and v["id"] in seen_variant_ids:
            errors.append(user_error([*path, "id"], "The variant is listed twice", "INVALID_VARIANT"))
        elif v.get("id") is not None:
            seen_variant_ids.add(v["id"])
            vid = parse_id(v["id"], "ProductVariant")
            existing = store.variants.get(vid) if vid else None
            if existing is None or product is None or existing.product_id != product.id:
                errors.append(
                    user_error(
                        [*path, "id"], "Product variant does not exist", "PRODUCT_VARIANT_DOES_NOT_EXIST"
                    )
                )
        if "price" in v and v["price"] is not None and money(v["price"]) is None:
            errors.append(user_error([*path, "price"], "Price must be a number >= 0", "INVALID_VARIANT"))
        if v.get("compareAtPrice") is not None and money(v["compareAtPrice"]) is None:
            errors.append(
                user_error(
                    [*path, "compareAtPrice"], "Compare at price must be a number >= 0", "INVALID_VARIANT"
                )
            )
        chosen: dict[str, str] = {}
        for j, ov in enumerate(v.get("optionValues") or []):
            oname, vname = ov.get("optionName"), ov.get("name")
            if oname not in option_values:
                errors.append(
                    user_error(
                        [*path, "optionValues", j, "optionName"],
                        f"Option '{oname}' does not exist",
                        "OPTION_DOES_NOT_EXIST",
                    )
                )
            elif vname not in option_values[oname]:
                errors.append(
                    user_error(
                        [*path, "optionValues", j, "name"],
                        f"Option value '{vname}' does not exist on option '{oname}'",
                        "OPTION_VALUE_DOES_NOT_EXIST",
                    )
                )
            else:
                chosen[oname] = vname
        if (
            option_values
            and set(chosen) != set(option_values)
            and not any(e["field"] and e["field"][:3] == [str(p) for p in path] for e in errors)
        ):
            errors.append(
                user_error([*path, "optionValues"], "Every option needs a value", "OPTION_VALUES_MISSING")
            )
        combo = tuple(chosen.get(n) for n in option_values)
        if combo in combos:
            errors.append(
                user_error(
                    path, f"The variant '{' / '.join(map(str, combo))}' already exists", "INVALID_VARIANT"
                )
            )
        combos.add(combo)
        for j, q in enumerate(v.get("inventoryQuantities") or []):
            lid = parse_gid(q["locationId"], "Location")
            if lid is None or lid not in store.locations:
                errors.append(
                    user_error(
                        [*path, "inventoryQuantities", j, "locationId"],
                        "Location does not exist",
                        "INVALID_INPUT",
                    )
                )
            if q["name"] not in SETTABLE_NAMES:
                errors.append(
                    user_error(
                        [*path, "inventoryQuantities", j, "name"],
                        "Quantity name must be 'available' or 'on_hand'",
                        "INVALID_INPUT",
                    )
                )
            if q["quantity"] < 0:
                errors.append(
                    user_error(
                        [*path, "inventoryQuantities", j, "quantity"],
                        "Quantity can't be negative",
                        "INVALID_INPUT",
                    )
                )
        errors += _metafield_errors(v.get("metafields"), [*path, "metafields"], "INVALID_METAFIELD")
        errors += [
            user_error([*path, "inventoryItem", *field_path], why, "INVALID_VARIANT")
            for field_path, why in item_input_problems(v.get("inventoryItem") or {})
        ]
    errors += _metafield_errors(input.get("metafields"), ["input", "metafields"], "INVALID_METAFIELD")
    errors += [
        user_error(["input", "files", i, field_name], why, "INVALID_INPUT")
        for i, field_name, why in file_set_problems(store, input.get("files") or [])
    ]
    coll_ids = []
    for k, cg in enumerate(input.get("collections") or []):
        cid = parse_gid(cg, "Collection")
        if cid is None or cid not in store.collections:
            errors.append(
                user_error(["input", "collections", k], "Collection does not exist", "INVALID_INPUT")
            )
        elif store.collections[cid].smart:
            # Smart collections take their members from their rules (Shopify refuses manual
            # membership of a smart collection, e.g. collectionAddProducts, REST collects).
            errors.append(
                user_error(
                    ["input", "collections", k],
                    "Can't manually add products to a smart collection",
                    "INVALID_INPUT",
                )
            )
        else:
            coll_ids.append(cid)
    if errors:
        return fail(errors)

    # ---- apply
    now = now_iso()
    if creating:
        product = Product(
            id=store.next_id(),
            title=input["title"],
            handle=handle or store.unique_handle(handleize(input["title"])),
        )
        store.products[product.id] = product
    assert product is not None
    for key, attr in (
        ("title", "title"),
        ("descriptionHtml", "description_html"),
        ("vendor", "vendor"),
        ("productType", "product_type"),
        ("templateSuffix", "template_suffix"),
    ):
        if key in input:
            setattr(product, attr, input[key] if input[key] is not None or attr == "template_suffix" else "")
    if handle is not None:
        product.handle = handle
    if input.get("status") is not None:
        product.status = input["status"]
    if "tags" in input:
        product.tags = list(input["tags"] or [])
    if input.get("seo") is not None:
        product.seo_title = input["seo"].get("title", product.seo_title)
        product.seo_description = input["seo"].get("description", product.seo_description)

    if opt_input is not None:
        old_opts = {o.name: o for o in product.options}
        new_opts = []
        for pos, o in enumerate(opt_input, 1):
            old = old_opts.get(o["name"])
            old_vals = {v.name: v for v in old.values} if old else {}
            values = [old_vals.get(v["name"]) or OptionValue(store.next_id(), v["name"]) for v in o["values"]]
            new_opts.append(
                ProductOption(old.id if old else store.next_id(), o["name"], o.get("position") or pos, values)
            )
        product.options = new_opts
    touched_levels: list[InventoryLevel] = []
    # inventory_items/create|update|delete follow product writes that make, change or drop items
    new_items: list[InventoryItem] = []
    changed_items: list[InventoryItem] = []
    gone_items: list[int] = []
    if var_input is not None:
        keep: list[int] = []
        for pos, v in enumerate(var_input, 1):
            selected = [(ov["optionName"], ov["name"]) for ov in (v.get("optionValues") or [])]
            order = {o.name: i for i, o in enumerate(product.options)}
            selected.sort(key=lambda s: order.get(s[0], 99))
            sku = v.get("sku", (v.get("inventoryItem") or {}).get("sku"))
            if v.get("id") is not None:
                variant = store.variants[cast(int, parse_gid(v["id"], "ProductVariant"))]
                item = store.items[variant.inventory_item_id]
                if ("sku" in v or "sku" in (v.get("inventoryItem") or {})) and item.sku != sku:
                    item.sku = sku
                    changed_items.append(item)
            else:
                variant = store.new_variant(product, sku=sku)
                item = store.items[variant.inventory_item_id]
                new_items.append(item)
            variant.selected = selected
            variant.position = v.get("position") or pos
            if v.get("price") is not None:
                variant.price = cast(str, money(v["price"]))  # validated before
            if "compareAtPrice" in v:
                variant.compare_at_price = (
                    money(v["compareAtPrice"]) if v["compareAtPrice"] is not None else None
                )
            for key, attr in (
                ("barcode", "barcode"),
                ("inventoryPolicy", "inventory_policy"),
                ("taxable", "taxable"),
            ):
                if key in v and (v[key] is not None or attr == "barcode"):
                    setattr(variant, attr, v[key])
            if apply_item_input(
                item, {k: x for k, x in (v.get("inventoryItem") or {}).items() if k != "sku"}
            ):
                changed_items.append(item)
            if v.get("metafields") is not None:
                variant.metafields = _replace_metafields(store, variant.metafields, v["metafields"])
            for q in v.get("inventoryQuantities") or []:
                lvl = store.ensure_level(item.id, cast(int, parse_gid(q["locationId"], "Location")))
                if store.set_quantity(lvl, q["name"], q["quantity"]) and lvl not in touched_levels:
                    touched_levels.append(lvl)
            variant.updated_at = item.updated_at = now
            keep.append(variant.id)
        for vid in product.variant_ids:
            if vid not in keep:
                gone_items.append(store.variants[vid].inventory_item_id)
                store.delete_variant(vid)
        product.variant_ids = keep
    elif creating:
        product.options = [
            ProductOption(store.next_id(), "Title", 1, [OptionValue(store.next_id(), "Default Title")])
        ]
        variant = store.new_variant(product, selected=[("Title", "Default Title")])
        product.variant_ids = [variant.id]
        new_items.append(store.items[variant.inventory_item_id])
    if input.get("metafields") is not None:
        product.metafields = _replace_metafields(store, product.metafields, input["metafields"])
    if input.get("files") is not None:
        apply_file_set(store, product, input["files"])
    if input.get("collections") is not None:
        for coll in store.collections.values():
            if coll.id in coll_ids and product.id not in coll.product_ids:
                coll.product_ids.append(product.id)
            elif coll.id not in coll_ids and product.id in coll.product_ids:
                coll.product_ids.remove(product.id)
    product.updated_at = now

    events = ctx(info).events
    events.append(store.product_event("products/create" if creating else "products/update", product))
    events.extend(
        Event("inventory_levels/update", payloads.inventory_level(lvl, store.timezone))
        for lvl in touched_levels
    )
    events.extend(Event("inventory_items/create", payloads.inventory_item(store, i)) for i in new_items)
    events.extend(
        Event("inventory_items/update", payloads.inventory_item(store, i))
        for i in dict.fromkeys(changed_items)
        if i not in new_items
    )
    events.extend(Event("inventory_items/delete", payloads.inventory_item_deleted(i)) for i in gone_items)
    if synchronous is False:
        op = ProductSetOperation(store.next_id(), "COMPLETE", product.id, [])
        store.operations[op.id] = op
        return {"product": None, "productSetOperation": op, "userErrors": []}
    return {"product": product, "productSetOperation": None, "userErrors": []}


def m_product_delete(_root, info, input: dict, synchronous: bool | None = None) -> dict:
    store = store_of(info)
    pid = parse_id(input["id"], "Product")
    items = (
        [v.inventory_item_id for v in store.product_variants(store.products[pid])]
        if pid in store.products
        else []
    )
    product = store.delete_product(pid) if pid else None
    if product is None:
        return {"deletedProductId": None, "userErrors": [user_error(["id"], "Product does not exist")]}
    ctx(info).events.append(Event("products/delete", payloads.product_deleted(product.id)))
    ctx(info).events.extend(
        Event("inventory_items/delete", payloads.inventory_item_deleted(i)) for i in items
    )
    return {"deletedProductId": gid("Product", product.id), "userErrors": []}


def m_product_variants_bulk_update(
    _root, info, productId: str, variants: list[dict], allowPartialUpdates: bool | None = None
) -> dict:
    store = store_of(info)
    pid = parse_id(productId, "Product")
    product = store.products.get(pid) if pid else None
    if product is None:
        return {
            "product": None,
            "productVariants": None,
            "userErrors": [user_error(["productId"], "Product does not exist", "PRODUCT_DOES_NOT_EXIST")],
        }
    errors: list[dict] = []
    ok: list[tuple[Variant, dict]] = []
    option_values = {o.name: [v.name for v in o.values] for o in product.options}
    for i, v in enumerate(variants):
        path = ["variants", str(i)]
        before = len(errors)
        if v.get("id") is None:
            errors.append(
                user_error(
                    [*path, "id"], "Product variant is missing ID attribute", "PRODUCT_VARIANT_ID_MISSING"
                )
            )
            continue
        vid = parse_id(v["id"], "ProductVariant")
        variant = store.variants.get(vid) if vid else None
        if variant is None:
            errors.append(
                user_error([*path, "id"], "Product variant does not exist", "PRODUCT_VARIANT_DOES_NOT_EXIST")
            )
            continue
        if variant.product_id != product.id:
            errors.append(
                user_error(
                    [*path, "id"], "Product variant is not for this product", "MUST_BE_FOR_THIS_PRODUCT"
                )
            )
            continue
        for key in ("price", "compareAtPrice"):
            if v.get(key) is not None and money(v[key]) is None:
                code = "NEGATIVE_PRICE_VALUE" if str(v[key]).strip().startswith("-") else "INVALID_INPUT"
                errors.append(user_error([*path, key], f"{key} must be a number >= 0", code))
        for j, ov in enumerate(v.get("optionValues") or []):
            if ov.get("optionName") not in option_values:
                errors.append(
                    user_error(
                        [*path, "optionValues", str(j), "optionName"],
                        "Option does not exist",
                        "OPTION_DOES_NOT_EXIST",
                    )
                )
        errors += _metafield_errors(v.get("metafields"), [*path, "metafields"], "INVALID_INPUT")
        errors += [
            user_error([*path, "inventoryItem", *field_path], why, "INVALID_INPUT")
            for field_path, why in item_input_problems(v.get("inventoryItem") or {})
        ]
        if len(errors) == before:
            ok.append((variant, v))
    if errors and not allowPartialUpdates:
        return {"product": None, "productVariants": None, "userErrors": errors}
    now = now_iso()
    for variant, v in ok:
        item = store.items[variant.inventory_item_id]
        if v.get("price") is not None:
            variant.price = cast(str, money(v["price"]))  # validated before
        if "compareAtPrice" in v:
            variant.compare_at_price = money(v["compareAtPrice"]) if v["compareAtPrice"] is not None else None
        if "barcode" in v:
            variant.barcode = v["barcode"]
        if v.get("inventoryPolicy") is not None:
            variant.inventory_policy = v["inventoryPolicy"]
        if v.get("taxable") is not None:
            variant.taxable = v["taxable"]
        if apply_item_input(item, v.get("inventoryItem") or {}):
            ctx(info).events.append(Event("inventory_items/update", payloads.inventory_item(store, item)))
        for ov in v.get("optionValues") or []:
            opt = next(o for o in product.options if o.name == ov["optionName"])
            if ov.get("name") and ov["name"] not in [x.name for x in opt.values]:
                opt.values.append(OptionValue(store.next_id(), ov["name"]))
            variant.selected = [
                (n, ov["name"] if n == ov["optionName"] else val) for n, val in variant.selected
            ]
        if v.get("metafields") is not None:
            variant.metafields = _upsert_metafields(store, variant.metafields, v["metafields"])
        variant.updated_at = item.updated_at = now
    if ok:
        product.updated_at = now
        ctx(info).events.append(store.product_event("products/update", product))
    return {"product": product, "productVariants": [variant for variant, _ in ok], "userErrors": errors}


# --------------------------------------------------------------------------- mutations: collections


def _collection_input_errors(
    store: StoreState, inp: dict, creating: bool, coll: Collection | None = None
) -> tuple[list[dict], list[int]]:
    errors = []
    if creating and not (inp.get("title") or "").strip():
        errors.append(user_error(["title"], "Title can't be blank"))
    if not creating and "title" in inp and not (inp.get("title") or "").strip():
        errors.append(user_error(["title"], "Title can't be blank"))
    product_ids = []
    for k, pg in enumerate(inp.get("products") or []):
        pid = parse_gid(pg, "Product")
        if pid is None or pid not in store.products:
            errors.append(user_error(["products", k], "Product does not exist"))
        else:
            product_ids.append(pid)
    known = {m.id for m in coll.metafields} if coll is not None else set()
    errors += _metafield_errors(inp.get("metafields"), ["metafields"], None, known)
    rule_set = inp.get("ruleSet")
    if rule_set is not None:
        if inp.get("products"):
            errors.append(user_error(["products"], "Can't manually add products to a smart collection"))
        for k, rule in enumerate(rule_set.get("rules") or []):
            why = rule_error(rule["column"], rule["relation"], rule["condition"])
            if why:
                errors.append(user_error(["ruleSet", "rules", k], why))
    return errors, product_ids


def _apply_collection_input(store: StoreState, coll: Collection, inp: dict) -> None:
    for key, attr in (
        ("title", "title"),
        ("descriptionHtml", "description_html"),
        ("templateSuffix", "template_suffix"),
    ):
        if key in inp:
            setattr(
                coll, attr, inp[key] if inp[key] is not None else ("" if attr != "template_suffix" else None)
            )
    if inp.get("sortOrder") is not None:
        coll.sort_order = inp["sortOrder"]
    if inp.get("seo") is not None:
        coll.seo_title = inp["seo"].get("title", coll.seo_title)
        coll.seo_description = inp["seo"].get("description", coll.seo_description)
    if inp.get("metafields") is not None:
        coll.metafields = _upsert_metafields(store, coll.metafields, inp["metafields"])
    if "image" in inp:
        image = inp["image"]
        if image is None:  # removes the image
            coll.image_url = coll.image_alt = None
        else:
            if image.get("src"):
                name = image["src"].split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1]
                coll.image_url = (
                    f"https://cdn.shopify.com/s/files/1/{store.id}/collections/{name}?v={store.next_id()}"
                )
            if "altText" in image:
                coll.image_alt = image["altText"]
    coll.updated_at = now_iso()


# 2026-10: `collection:` (CollectionCreateInput / CollectionUpdateInput, membership by sources)
# replaces the deprecated `input:` (CollectionInput, ruleSet and products); given both, Shopify
# uses `collection`. https://shopify.dev/docs/api/admin-graphql/2026-10/mutations/collectionCreate


def _conditions_from_input(
    store: StoreState, raw: list[dict] | None, path: list, errors: list
) -> list[Condition]:
    out = []
    for k, entry in enumerate(raw or []):
        ((kind, spec),) = entry.items()  # @oneOf: exactly one kind per condition
        value_kind = CONDITION_KINDS.get(kind, ("", "", frozenset()))[0]
        if value_kind in ("tag", "text"):
            values = [str(v) for v in spec.get("values") or []]
        else:
            value = spec.get("value")
            values = [] if value is None else [str(value["amount"] if isinstance(value, dict) else value)]
        why = condition_error(kind, spec.get("relation", ""), values)
        if why:
            errors.append(user_error([*path, k], why))
            continue
        currency = spec["value"].get("currencyCode") if value_kind == "money" and spec.get("value") else None
        out.append(
            Condition(
                store.next_id(), kind, spec["relation"], values, spec.get("matchType") or "ANY", currency
            )
        )
    return out


def _selections(store: StoreState, raw: list[dict] | None, path: list, errors: list) -> list[int]:
    pids = []
    for k, sel in enumerate(raw or []):
        pid = parse_gid(sel.get("productId"), "Product")
        if pid is None or pid not in store.products:
            errors.append(user_error([*path, k, "productId"], "Product does not exist"))
        elif sel.get("variantIds"):
            errors.append(
                user_error([*path, k, "variantIds"], "The emulator's sources target products, not variants")
            )
        else:
            pids.append(pid)
    return pids


def _new_source(store: StoreState, coll: Collection, source: dict, path: list, errors: list) -> None:
    """Give `coll` the conditions source described by CollectionCreateConditionsSourceInput."""
    if (source.get("targetType") or "PRODUCTS") != "PRODUCTS":
        errors.append(user_error([*path, "targetType"], "The emulator's sources target products"))
        return
    inclusion = source.get("inclusion") or {}
    conditions = _conditions_from_input(
        store, inclusion.get("conditions"), [*path, "inclusion", "conditions"], errors
    )
    selections = _selections(store, inclusion.get("selections"), [*path, "inclusion", "selections"], errors)
    if errors:
        return
    coll.source_id, coll.source_title = store.next_id(), source.get("title") or coll.title
    coll.conditions, coll.match_type = conditions, inclusion.get("matchType") or "ALL"
    coll.product_ids = list(dict.fromkeys(selections))


def _sources_input(
    store: StoreState, coll: Collection, sources: list[dict] | None, path: list, errors: list
) -> None:
    if not sources:
        return
    if len(sources) > 1:
        errors.append(user_error(path, "The emulator keeps one source per collection"))
        return
    if "source" not in sources[0]:
        errors.append(user_error([*path, 0], "The emulator supports conditions sources only"))
        return
    _new_source(store, coll, sources[0]["source"], [*path, 0, "source"], errors)


def m_collection_create(_root, info, input: dict | None = None, collection: dict | None = None) -> dict:
    store = store_of(info)
    legacy = collection is None
    inp = input if legacy else collection
    if inp is None:
        return {"collection": None, "userErrors": [user_error(["collection"], "collection is required")]}
    own = inp if legacy else {k: v for k, v in inp.items() if k != "sources"}
    errors, product_ids = _collection_input_errors(store, own, creating=True)
    if errors:
        return {"collection": None, "userErrors": errors}
    taken = {c.handle for c in store.collections.values()}
    coll = Collection(
        store.next_id(),
        inp["title"],
        store.unique_handle(inp.get("handle") or handleize(inp["title"]), taken=taken),
    )
    coll.source_id = store.next_id()
    if legacy:
        coll.product_ids = list(dict.fromkeys(product_ids))
        if inp.get("ruleSet") is not None:
            _apply_rule_set(store, coll, inp["ruleSet"])
    else:
        _sources_input(store, coll, inp.get("sources"), ["collection", "sources"], errors)
        if errors:
            return {"collection": None, "userErrors": errors}
    _apply_collection_input(store, coll, inp)
    store.collections[coll.id] = coll
    ctx(info).events.append(store.collection_event("collections/create", coll))
    return {"collection": coll, "userErrors": []}


def _apply_rule_set(store: StoreState, coll: Collection, rule_set: dict) -> None:
    conditions = [
        rule_to_condition(store.next_id(), r["column"], r["relation"], r["condition"], store.currency)
        for r in rule_set.get("rules") or []
    ]
    coll.conditions = [c for c in conditions if c is not None]
    coll.match_type = "ANY" if rule_set["appliedDisjunctively"] else "ALL"


def _find_collection(info, value: str | None) -> Collection | None:
    if value is None:
        return None
    cid = parse_id(value, "Collection")
    return store_of(info).collections.get(cid) if cid else None


def m_collection_update(_root, info, input: dict | None = None, collection: dict | None = None) -> dict:
    if collection is not None:
        return _collection_update(info, collection)
    if input is None:
        return {
            "collection": None,
            "job": None,
            "userErrors": [user_error(["collection"], "collection is required")],
        }
    store = store_of(info)
    coll = _find_collection(info, input.get("id"))
    if coll is None:
        return {
            "collection": None,
            "job": None,
            "userErrors": [user_error(["id"], "Collection does not exist")],
        }
    errors, _ = _collection_input_errors(store, input, creating=False, coll=coll)
    if input.get("products") is not None:
        # Shopify: `products` is only valid with collectionCreate; membership changes go
        # through collectionAddProducts / collectionRemoveProducts.
        errors.append(
            user_error(
                ["products"],
                "Products can only be set when the collection is created; use "
                "collectionAddProducts or collectionRemoveProducts",
            )
        )
    if input.get("ruleSet") is not None and not coll.smart:
        errors.append(user_error(["ruleSet"], "A custom collection can't be changed into a smart collection"))
    if input.get("handle") is not None and any(
        c.handle == input["handle"] and c is not coll for c in store.collections.values()
    ):
        errors.append(user_error(["handle"], f"Handle '{input['handle']}' has already been taken"))
    if errors:
        return {"collection": None, "job": None, "userErrors": errors}
    if input.get("handle") is not None:
        coll.handle = input["handle"]
    if input.get("ruleSet") is not None:
        _apply_rule_set(store, coll, input["ruleSet"])
    _apply_collection_input(store, coll, input)
    ctx(info).events.append(store.collection_event("collections/update", coll))
    return {"collection": coll, "job": None, "userErrors": []}


def _collection_update(info, inp: dict) -> dict:
    """collectionUpdate(collection: CollectionUpdateInput): own fields, and sources deleted,
    created or updated (conditions and selections), in that order."""
    store = store_of(info)
    coll = _find_collection(info, inp.get("id"))
    if coll is None:
        return {
            "collection": None,
            "job": None,
            "userErrors": [user_error(["collection", "id"], "Collection does not exist")],
        }
    own = {k: v for k, v in inp.items() if not k.startswith("sources")}
    errors, _ = _collection_input_errors(store, own, creating=False, coll=coll)
    if inp.get("handle") is not None and any(
        c.handle == inp["handle"] and c is not coll for c in store.collections.values()
    ):
        errors.append(
            user_error(["collection", "handle"], f"Handle '{inp['handle']}' has already been taken")
        )
    source_gid = gid("CollectionSource", coll.source_id) if coll.source_id is not None else None
    for k, sid in enumerate(inp.get("sourcesToDelete") or []):
        if sid != source_gid:
            errors.append(user_error(["collection", "sourcesToDelete", k], "Source does not exist"))
    updates = inp.get("sourcesToUpdate") or []
    for k, upd in enumerate(updates):
        if (
            "condition" not in upd
            or upd["condition"].get("id") != source_gid
            or source_gid in (inp.get("sourcesToDelete") or [])
        ):
            errors.append(user_error(["collection", "sourcesToUpdate", k], "Source does not exist"))
    if errors:
        return {"collection": None, "job": None, "userErrors": errors}
    # Work on a copy: a user error anywhere leaves the collection as it was.
    staged = dataclasses.replace(coll, conditions=list(coll.conditions), product_ids=list(coll.product_ids))
    if inp.get("sourcesToDelete"):
        staged.source_id, staged.source_title, staged.conditions, staged.product_ids = None, None, [], []
    if inp.get("sourcesToCreate"):
        if staged.source_id is not None:
            errors.append(
                user_error(["collection", "sourcesToCreate"], "The emulator keeps one source per collection")
            )
        else:
            _sources_input(store, staged, inp["sourcesToCreate"], ["collection", "sourcesToCreate"], errors)
    for k, upd in enumerate(updates):
        cond = upd["condition"]
        path = ["collection", "sourcesToUpdate", k, "condition", "inclusion"]
        inclusion = cond.get("inclusion") or {}
        drop = set(inclusion.get("conditionsToDelete") or [])
        known = {gid("CollectionSourceCondition", c.id) for c in staged.conditions}
        for j, cid in enumerate(sorted(drop - known)):
            errors.append(user_error([*path, "conditionsToDelete", j], f"Condition {cid} does not exist"))
        added = _conditions_from_input(
            store, inclusion.get("conditionsToCreate"), [*path, "conditionsToCreate"], errors
        )
        staged.conditions = [
            c for c in staged.conditions if gid("CollectionSourceCondition", c.id) not in drop
        ] + added
        if inclusion.get("matchType"):
            staged.match_type = inclusion["matchType"]
        for pid in _selections(store, inclusion.get("selectionsToAdd"), [*path, "selectionsToAdd"], errors):
            if pid not in staged.product_ids:
                staged.product_ids.append(pid)
        gone = set(
            _selections(store, inclusion.get("selectionsToRemove"), [*path, "selectionsToRemove"], errors)
        )
        staged.product_ids = [p for p in staged.product_ids if p not in gone]
        if cond.get("title"):
            staged.source_title = cond["title"]
    if errors:
        return {"collection": None, "job": None, "userErrors": errors}
    coll.source_id, coll.source_title = staged.source_id, staged.source_title
    coll.conditions, coll.match_type, coll.product_ids = (
        staged.conditions,
        staged.match_type,
        staged.product_ids,
    )
    if inp.get("handle") is not None:
        coll.handle = inp["handle"]
    _apply_collection_input(store, coll, own)
    ctx(info).events.append(store.collection_event("collections/update", coll))
    return {"collection": coll, "job": None, "userErrors": []}


def m_collection_delete(_root, info, input: dict) -> dict:
    store = store_of(info)
    coll = _find_collection(info, input["id"])
    if coll is None:
        return {"deletedCollectionId": None, "userErrors": [user_error(["id"], "Collection does not exist")]}
    del store.collections[coll.id]
    ctx(info).events.append(Event("collections/delete", payloads.collection_deleted(coll.id)))
    return {"deletedCollectionId": gid("Collection", coll.id), "userErrors": []}


def _membership_input(
    info, id: str, productIds: list[str]
) -> tuple[Collection | None, list[int], list[dict]]:
    store = store_of(info)
    coll = _find_collection(info, id)
    if coll is None:
        return None, [], [user_error(["id"], "Collection does not exist")]
    if coll.smart:
        return None, [], [user_error(["id"], "Can't manually add products to a smart collection")]
    pids, errors = [], []
    for k, pg in enumerate(productIds):
        pid = parse_id(pg, "Product")
        if pid is None or pid not in store.products:
            errors.append(user_error(["productIds", k], "Product does not exist"))
        else:
            pids.append(pid)
    if len(productIds) > 250:
        errors.append(user_error(["productIds"], "Too many product ids (at most 250)"))
    return coll, pids, errors


def m_collection_add_products(_root, info, id: str, productIds: list[str]) -> dict:
    coll, pids, errors = _membership_input(info, id, productIds)
    if errors:
        return {"collection": None, "userErrors": errors}
    assert coll is not None  # no errors, so the collection was found
    added = [p for p in dict.fromkeys(pids) if p not in coll.product_ids]
    if added:
        coll.product_ids.extend(added)
        coll.updated_at = now_iso()
        ctx(info).events.append(store_of(info).collection_event("collections/update", coll))
    return {"collection": coll, "userErrors": []}


def m_collection_remove_products(_root, info, id: str, productIds: list[str]) -> dict:
    coll, pids, errors = _membership_input(info, id, productIds)
    if errors:
        return {"job": None, "userErrors": errors}
    assert coll is not None  # no errors, so the collection was found
    removed = [p for p in pids if p in coll.product_ids]
    for p in removed:
        coll.product_ids.remove(p)
    if removed:
        coll.updated_at = now_iso()
        ctx(info).events.append(store_of(info).collection_event("collections/update", coll))
    store = store_of(info)
    job = Job(store.next_id(), done=True)  # applied at once: the job is already done
    store.jobs[job.id] = job
    return {"job": job, "userErrors": []}


# --------------------------------------------------------------------------- mutations: webhooks


def m_webhook_subscription_create(_root, info, topic: str, webhookSubscription: dict) -> dict:
    c = ctx(info)
    # `uri` (2026-10) or the deprecated `callbackUrl`; HTTPS endpoints only in the emulator.
    field_name = "uri" if webhookSubscription.get("uri") is not None else "callbackUrl"
    url = webhookSubscription.get(field_name)
    fmt = webhookSubscription.get("format") or "JSON"
    path = ["webhookSubscription", field_name]
    if not url:
        return {"webhookSubscription": None, "userErrors": [user_error(path, "Address can't be blank")]}
    if any(s.callback_url == url for s in c.subscriptions.list(shop=c.store.shop, topic=topic)):
        return {
            "webhookSubscription": None,
            "userErrors": [user_error(path, "Address for this topic has already been taken")],
        }
    if fmt != "JSON":
        return {
            "webhookSubscription": None,
            "userErrors": [user_error(["webhookSubscription", "format"], "Format XML is not supported")],
        }
    try:
        sub = c.subscriptions.add(c.store.shop, enum_topic(topic), url, format=fmt, source="api")
    except ValueError:
        return {"webhookSubscription": None, "userErrors": [user_error(path, "Address is invalid")]}
    return {"webhookSubscription": sub, "userErrors": []}


def m_webhook_subscription_delete(_root, info, id: str) -> dict:
    c = ctx(info)
    parse_id(id, "WebhookSubscription")
    removed = c.subscriptions.remove(id, shop=c.store.shop, reason="webhookSubscriptionDelete")
    if removed is None:
        return {
            "deletedWebhookSubscriptionId": None,
            "userErrors": [user_error(["id"], "Webhook subscription does not exist")],
        }
    return {"deletedWebhookSubscriptionId": id, "userErrors": []}


# --------------------------------------------------------------------------- bulk operations


_BULK_FILTER = re.compile(r"^(id|status|operation_type):(\S+)$")


def q_bulk_operations(_root, info, **args) -> dict:
    """The app's bulk operations, newest first unless `reverse`; `query` filters by `id:N`,
    `status:running|completed|...` and `operation_type:query|mutation` (terms ANDed). Reading
    an operation moves it one step on, as currentBulkOperation does."""
    ops = list(store_of(info).bulk_operations.values())
    for term in (args.get("query") or "").split():
        m = _BULK_FILTER.match(term)
        if m is None:
            raise GraphQLError(f"Invalid search term {term!r}", extensions={"code": "BAD_REQUEST"})
        key, value = m.groups()
        if key == "id":
            wanted = parse_id(value, "BulkOperation") if not value.isdigit() else int(value)
            ops = [op for op in ops if op.id == wanted]
        elif key == "status":
            ops = [op for op in ops if op.status.lower() == value.lower()]
        else:
            ops = [op for op in ops if op.type.lower() == value.lower()]
    key = (
        (lambda o: (o.completed_at or "", o.id))
        if args.get("sortKey") == "COMPLETED_AT"
        else (lambda o: (o.id,))
    )
    # newest first by default: a connection over the reversed order
    page = connection(ops, {**args, "reverse": not args.get("reverse")}, sort_key=key)
    for op in page["nodes"]:
        op.advance()
    return page


def q_current_bulk_operation(_root, info, type: str = "QUERY") -> BulkOperation | None:
    """The shop's latest bulk operation of `type`; reading it moves it one step on."""
    ops = [op for op in store_of(info).bulk_operations.values() if op.type == (type or "QUERY")]
    if not ops:
        return None
    op = max(ops, key=lambda o: o.id)
    op.advance()
    return op


# "In API versions 2026-01 and higher, you can run up to five bulk query operations at a time per
# shop" (https://shopify.dev/docs/api/usage/bulk-operations/queries). What a sixth gets is not
# documented; the emulator answers OPERATION_IN_PROGRESS, the code of the one-at-a-time limit
# before 2026-01, and the client retries LIMIT_REACHED the same way.
BULK_QUERIES_AT_A_TIME = 5


def m_bulk_operation_run_query(_root, info, query: str) -> dict:
    store = store_of(info)
    running = sum(1 for op in store.bulk_operations.values() if op.running and op.type == "QUERY")
    if running >= BULK_QUERIES_AT_A_TIME:
        return {
            "bulkOperation": None,
            "userErrors": [
                user_error(
                    None,
                    f"{running} bulk query operations for this app and shop are already in progress.",
                    "OPERATION_IN_PROGRESS",
                )
            ],
        }
    context = RequestContext(
        store=store, subscriptions=ctx(info).subscriptions, require_idempotency=ctx(info).require_idempotency
    )
    try:
        lines, roots = run_bulk_query(info.schema, query, context, default_resolver)
    except BulkQueryInvalid as err:
        return {"bulkOperation": None, "userErrors": [user_error(["query"], str(err), "INVALID")]}
    op = BulkOperation(store.next_id(), store.shop, query, lines, roots, fault=store.bulk_fault)
    store.bulk_fault = None
    store.bulk_operations[op.id] = op
    return {"bulkOperation": op, "userErrors": []}


def _bulk_url(op: BulkOperation, info) -> str | None:
    if op.status != "COMPLETED" or not op.lines:
        return None
    return f"{ctx(info).base_url}/_emulator/bulk/{op.shop}/{op.id}.jsonl"


_BULK_FIELDS = {
    "url": _bulk_url,
    "partialDataUrl": lambda op, _i: None,
    "errorCode": lambda op, _i: op.error_code,
    "objectCount": lambda op, _i: str(len(op.lines) if op.status == "COMPLETED" else 0),
    "rootObjectCount": lambda op, _i: str(op.root_object_count if op.status == "COMPLETED" else 0),
    "fileSize": lambda op, _i: str(len(op.body)) if op.status == "COMPLETED" and op.lines else None,
}


# --------------------------------------------------------------------------- schema


def q_current_app_installation(_root, info) -> dict:
    c = ctx(info)
    return {
        "id": gid("AppInstallation", c.store.id),
        "accessScopes": [{"handle": h, "description": h.replace("_", " ")} for h in c.access_scopes],
    }


RESOLVERS: dict[str, dict[str, Any]] = {
    "QueryRoot": {
        "currentAppInstallation": q_current_app_installation,
        "shop": q_shop,
        "products": q_products,
        "product": q_product,
        "productByIdentifier": q_product_by_identifier,
        "productVariant": q_product_variant,
        "productVariants": q_product_variants,
        "productsCount": q_products_count,
        "inventoryItem": q_inventory_item,
        "inventoryItems": q_inventory_items,
        "locations": q_locations,
        "location": q_location,
        "collections": q_collections,
        "collection": q_collection,
        "webhookSubscriptions": q_webhook_subscriptions,
        "webhookSubscription": q_webhook_subscription,
        "node": q_node,
        "nodes": q_nodes,
        "currentBulkOperation": q_current_bulk_operation,
        "bulkOperations": q_bulk_operations,
    },
    "Mutation": {
        "productSet": m_product_set,
        "productDelete": m_product_delete,
        "productVariantsBulkUpdate": m_product_variants_bulk_update,
        "inventorySetQuantities": m_inventory_set_quantities,
        "inventoryAdjustQuantities": m_inventory_adjust_quantities,
        "collectionCreate": m_collection_create,
        "collectionUpdate": m_collection_update,
        "collectionDelete": m_collection_delete,
        "collectionAddProducts": m_collection_add_products,
        "collectionRemoveProducts": m_collection_remove_products,
        "webhookSubscriptionCreate": m_webhook_subscription_create,
        "webhookSubscriptionDelete": m_webhook_subscription_delete,
        "bulkOperationRunQuery": m_bulk_operation_run_query,
    },
    "Product": {
        "variants": p_variants,
        "collections": p_collections,
        "options": p_options,
        "inCollection": p_in_collection,
        "totalInventory": p_total_inventory,
        "tracksInventory": p_tracks_inventory,
        "hasOnlyDefaultVariant": p_has_only_default_variant,
        "variantsCount": p_variants_count,
        "metafield": _metafield,
        "metafields": _metafields,
        "seo": _seo,
    },
    "ProductVariant": {
        "sku": v_sku,
        "inventoryQuantity": v_inventory_quantity,
        "availableForSale": v_available_for_sale,
        "displayName": v_display_name,
        "selectedOptions": v_selected_options,
        "inventoryItem": lambda v, info: store_of(info).items[v.inventory_item_id],
        "product": lambda v, info: store_of(info).products[v.product_id],
        "metafield": _metafield,
        "metafields": _metafields,
    },
    "ProductOption": {"values": po_values, "optionValues": po_option_values},
    "ProductOptionValue": {"hasVariants": ov_has_variants},
    "InventoryItem": {
        "variant": ii_variant,
        "inventoryLevel": ii_inventory_level,
        "inventoryLevels": ii_inventory_levels,
    },
    "InventoryLevel": {"item": lvl_item, "location": lvl_location, "quantities": lvl_quantities},
    "Location": {
        "inventoryLevel": loc_inventory_level,
        "inventoryLevels": loc_inventory_levels,
        "shipsInventory": lambda loc, _i: True,
    },
    "Collection": {
        "products": c_products,
        "productsCount": c_products_count,
        "hasProduct": c_has_product,
        "metafield": _metafield,
        "metafields": _metafields,
        "seo": _seo,
        "ruleSet": c_rule_set,
        "sources": c_sources,
        "image": c_image,
    },
    "CollectionSourceInclusion": {"selections": inclusion_selections},
    "WebhookSubscription": {
        "topic": ws_topic,
        "endpoint": ws_endpoint,
        "uri": lambda s, _i: s.callback_url,
        "callbackUrl": lambda s, _i: s.callback_url,
        "includeFields": lambda s, _i: [],
        "filter": lambda s, _i: None,
        "updatedAt": lambda s, _i: s.created_at,
    },
    "InventoryAdjustmentGroup": {"changes": g_changes},
    "InventoryChange": {"item": ch_item, "location": ch_location},
    "ProductSetOperation": {"product": op_product},
    "BulkOperation": _BULK_FIELDS,
}


def load_sdl() -> str:
    return SCHEMA_PATH.read_text(encoding="utf-8")
