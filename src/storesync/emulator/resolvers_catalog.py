"""Resolvers for the catalog's newer pieces: metafieldsSet / metafieldsDelete, media and files,
sales channels (publications), inventory item fields and the activation of inventory at a
location. Shopify's behaviour for each is cited where it is coded; media.py and state.py hold
the model.
"""

from __future__ import annotations

import json
from typing import Any

from storesync.emulator import media as media_model
from storesync.emulator import payloads
from storesync.emulator.ids import gid, gid_type, parse_gid
from storesync.emulator.media import MediaImage
from storesync.emulator.metafields import value_error
from storesync.emulator.resolvers import (
    connection,
    ctx,
    idempotent,
    parse_id,
    q_shop,
    store_of,
    user_error,
)
from storesync.emulator.state import (
    Collection,
    Event,
    InventoryItem,
    InventoryLevel,
    Location,
    Metafield,
    Product,
    Publication,
    StoreState,
    Variant,
    apply_item_input,
    item_input_problems,
    now_iso,
)

MAX_METAFIELDS_SET = 25  # "Allows a maximum of 25 metafields to be set at a time"

# --------------------------------------------------------------------------- metafields


def _owner(store: StoreState, owner_id: str) -> Product | Variant | Collection | None:
    kind = gid_type(owner_id)
    num = parse_gid(owner_id)
    table: dict[str, dict[int, Any]] = {
        "Product": store.products,
        "ProductVariant": store.variants,
        "Collection": store.collections,
    }
    if kind not in table or num is None:
        return None
    found: Product | Variant | Collection | None = table[kind].get(num)
    return found


def mf_owner_type(m: Metafield, info) -> str:
    store = store_of(info)
    for kind, table in (("PRODUCT", store.products), ("PRODUCTVARIANT", store.variants)):
        if any(m in owner.metafields for owner in table.values()):
            return kind
    return "COLLECTION"


def mf_json_value(m: Metafield, _info) -> Any:
    """jsonValue: the value as JSON (numbers and booleans typed, JSON types parsed)."""
    if m.type == "boolean":
        return m.value == "true"
    if m.type == "number_integer":
        return int(m.value)
    if m.type.startswith("list.") or m.type in (
        "json",
        "money",
        "rating",
        "weight",
        "volume",
        "dimension",
        "link",
    ):
        try:
            return json.loads(m.value)
        except ValueError:
            return m.value
    return m.value


def m_metafields_set(_root, info, metafields: list[dict]) -> dict:
    """Sets metafields on products, variants and collections: created or updated by owner,
    namespace and key; atomic (any error changes nothing); at most 25; `compareDigest` makes a
    write conditional on the value read (STALE_OBJECT otherwise)
    (https://shopify.dev/docs/api/admin-graphql/2026-10/mutations/metafieldsSet)."""
    store = store_of(info)
    errors: list[dict] = []

    def err(i: int | None, path: list, message: str, code: str) -> None:
        errors.append({**user_error(path, message, code), "elementIndex": i})

    if len(metafields) > MAX_METAFIELDS_SET:
        err(
            None,
            ["metafields"],
            f"Exceeded the maximum metafields input limit of {MAX_METAFIELDS_SET}.",
            "LESS_THAN_OR_EQUAL_TO",
        )
    plan: list[tuple[Product | Variant | Collection, Metafield | None, dict]] = []
    for i, mf in enumerate(metafields):
        path = ["metafields", str(i)]
        owner = _owner(store, mf["ownerId"]) if gid_type(mf["ownerId"]) else None
        if owner is None:
            err(i, [*path, "ownerId"], "Owner does not exist.", "INVALID")
            continue
        ns = mf.get("namespace") or "$app"
        existing = next((m for m in owner.metafields if m.namespace == ns and m.key == mf["key"]), None)
        type_name = mf.get("type") or (existing.type if existing else None)
        if not mf["key"].strip():
            err(i, [*path, "key"], "Key can't be blank.", "BLANK")
        if len(mf["key"]) > 64 or len(ns) > 255:
            err(i, [*path, "key"], "Key is too long.", "TOO_LONG")
        if type_name is None:
            err(i, [*path, "type"], "Type can't be blank.", "BLANK")
        else:
            why = value_error(type_name, mf["value"])
            if why:
                code = "INVALID_TYPE" if "not a valid metafield type" in why else "INVALID_VALUE"
                err(i, [*path, "type" if code == "INVALID_TYPE" else "value"], why, code)
        if "compareDigest" in mf:
            want = mf["compareDigest"]
            have = existing.compare_digest if existing else None
            if want != have:
                err(
                    i,
                    [*path, "compareDigest"],
                    "The resource has been updated since it was loaded.",
                    "STALE_OBJECT",
                )
        plan.append((owner, existing, {**mf, "namespace": ns, "type": type_name}))
    if errors:
        return {"metafields": None, "userErrors": errors}
    out = []
    for owner, existing, mf in plan:
        if existing is None:
            existing = Metafield(store.next_id(), mf["namespace"], mf["key"], mf["value"], mf["type"])
            owner.metafields.append(existing)
        else:
            existing.value, existing.type = mf["value"], mf["type"]
            existing.updated_at = now_iso()
        out.append(existing)
    return {"metafields": out, "userErrors": []}


def m_metafields_delete(_root, info, metafields: list[dict]) -> dict:
    """Deletes by owner, namespace and key; one that doesn't exist answers null in its place
    (https://shopify.dev/docs/api/admin-graphql/2026-10/mutations/metafieldsDelete)."""
    store = store_of(info)
    deleted: list[dict | None] = []
    for mf in metafields:
        owner = _owner(store, mf["ownerId"]) if gid_type(mf["ownerId"]) else None
        found = (
            next((m for m in owner.metafields if m.namespace == mf["namespace"] and m.key == mf["key"]), None)
            if owner is not None
            else None
        )
        if owner is None or found is None:
            deleted.append(None)
            continue
        owner.metafields.remove(found)
        deleted.append({"ownerId": mf["ownerId"], "namespace": found.namespace, "key": found.key})
    return {"deletedMetafields": deleted, "userErrors": []}


# --------------------------------------------------------------------------- media and files


def _image(store: StoreState, m: MediaImage) -> dict | None:
    if m.status != "READY":
        return None  # Shopify serves the image once processed
    return {
        "id": gid("ImageSource", m.id),
        "altText": m.alt,
        "url": m.url(store),
        "width": 2048,
        "height": 2048,
    }


MEDIA_IMAGE_FIELDS = {
    "id": lambda m, _i: m.gid,
    "status": lambda m, _i: m.status,
    "fileStatus": lambda m, _i: m.status,
    "mediaContentType": lambda m, _i: "IMAGE",
    "mediaErrors": lambda m, _i: m.errors(),
    "fileErrors": lambda m, _i: m.errors(),
    "mediaWarnings": lambda m, _i: [],
    "mimeType": lambda m, _i: "image/jpeg" if m.filename.lower().endswith((".jpg", ".jpeg")) else "image/png",
    "image": lambda m, info: _image(store_of(info), m),
    "preview": lambda m, info: {"image": _image(store_of(info), m), "status": m.status},
    "originalSource": lambda m, _i: {"url": m.original_source, "fileSize": None},
}


def p_media(p: Product, info, **args) -> dict:
    items = media_model.product_media(store_of(info), p)
    if args.get("sortKey") == "ID":
        return connection(items, args)
    order = {m.id: i for i, m in enumerate(items)}
    return connection(items, args, lambda m: (order[m.id], m.id))


def p_media_count(p: Product, info) -> dict:
    return {"count": len(media_model.product_media(store_of(info), p)), "precision": "EXACT"}


def p_featured_media(p: Product, info) -> MediaImage | None:
    items = media_model.product_media(store_of(info), p)
    return items[0] if items else None


def q_files(_root, info, **args) -> dict:
    return connection(list(store_of(info).files.values()), args)


def m_file_create(_root, info, files: list[dict]) -> dict:
    """New files from external URLs, processed asynchronously
    (https://shopify.dev/docs/api/admin-graphql/2026-10/mutations/fileCreate)."""
    store = store_of(info)
    errors = []
    for i, f in enumerate(files):
        why = media_model.source_error(f["originalSource"])
        if why:
            errors.append(user_error(["files", str(i), "originalSource"], why, "INVALID_IMAGE_SOURCE_URL"))
        elif f.get("contentType") not in (None, *media_model.CONTENT_TYPES):
            errors.append(
                user_error(["files", str(i), "contentType"], "The emulator processes images only", "INVALID")
            )
    if errors:
        return {"files": None, "userErrors": errors}
    made = [
        media_model.create_file(store, f["originalSource"], f.get("alt"), f.get("filename")) for f in files
    ]
    return {"files": made, "userErrors": []}


def m_file_update(_root, info, files: list[dict]) -> dict:
    """Alt text and product references of files: `referencesToAdd` appends the file to the
    products' media, `referencesToRemove` takes it out of their galleries. "Files must be in
    ready state before they can be updated" (NON_READY_STATE)
    (https://shopify.dev/docs/api/admin-graphql/2026-10/mutations/fileUpdate)."""
    store = store_of(info)
    errors = []
    plan = []
    for i, f in enumerate(files):
        path = ["files", str(i)]
        mid = parse_id(f["id"], "MediaImage")
        m = store.files.get(mid) if mid else None
        if m is None:
            errors.append(user_error([*path, "id"], "File does not exist.", "FILE_DOES_NOT_EXIST"))
            continue
        if m.status != "READY":
            errors.append(user_error([*path, "id"], "Non-ready files can't be updated.", "NON_READY_STATE"))
        targets: dict[str, Any] = {}
        for key in ("referencesToAdd", "referencesToRemove"):
            for ref in f.get(key) or []:
                if gid_type(ref) != "Product":
                    errors.append(
                        user_error(
                            [*path, key], "Only products can be referenced.", "UNSUPPORTED_FILE_REFERENCE"
                        )
                    )
                    continue
                product = store.products.get(parse_gid(ref) or -1)
                if product is None:
                    errors.append(
                        user_error(
                            [*path, key],
                            "Reference target does not exist.",
                            "REFERENCE_TARGET_DOES_NOT_EXIST",
                        )
                    )
                targets.setdefault(key, []).append(product)
        plan.append((m, f, targets))
    if errors:
        return {"files": None, "userErrors": errors}
    touched: list[Product] = []
    for m, f, targets in plan:
        if "alt" in f:
            m.alt = f["alt"]
        for product in targets.get("referencesToAdd", []):
            if m.id not in product.media_ids:
                product.media_ids.append(m.id)
                touched.append(product)
        for product in targets.get("referencesToRemove", []):
            if m.id in product.media_ids:
                product.media_ids.remove(m.id)
                touched.append(product)
        m.updated_at = now_iso()
    _product_updates(info, touched)
    return {"files": [m for m, _f, _t in plan], "userErrors": []}


def m_file_delete(_root, info, fileIds: list[str]) -> dict:
    """Deletes files and every reference to them
    (https://shopify.dev/docs/api/admin-graphql/2026-10/mutations/fileDelete)."""
    store = store_of(info)
    errors = []
    ids = []
    for i, fid in enumerate(fileIds):
        mid = parse_id(fid, "MediaImage")
        if mid is None or mid not in store.files:
            errors.append(user_error(["fileIds", str(i)], "File does not exist.", "FILE_DOES_NOT_EXIST"))
        ids.append(mid)
    if errors:
        return {"deletedFileIds": None, "userErrors": errors}
    touched = []
    for mid in ids:
        touched += [store.products[p] for p in media_model.delete_file(store, mid)]  # type: ignore[arg-type]
    _product_updates(info, touched)
    return {"deletedFileIds": [gid("MediaImage", mid) for mid in ids], "userErrors": []}  # type: ignore[arg-type]


def m_product_reorder_media(_root, info, id: str, moves: list[dict]) -> dict:
    """Moves evaluated in order, each to a zero-based position; the others keep their relative
    order (https://shopify.dev/docs/api/admin-graphql/2026-10/mutations/productReorderMedia).
    Applied at once: the job it returns is already done."""
    from storesync.emulator.state import Job

    store = store_of(info)
    pid = parse_id(id, "Product")
    product = store.products.get(pid) if pid else None
    if product is None:
        return {
            "job": None,
            "mediaUserErrors": [user_error(["id"], "Product does not exist", "PRODUCT_DOES_NOT_EXIST")],
        }
    errors = []
    for i, mv in enumerate(moves):
        mid = parse_id(mv["id"], "MediaImage")
        if mid is None or mid not in product.media_ids:
            errors.append(
                user_error(
                    ["moves", str(i), "id"],
                    "Media does not exist on product",
                    "MEDIA_DOES_NOT_EXIST_ON_PRODUCT",
                )
            )
        elif int(mv["newPosition"]) < 0:
            errors.append(user_error(["moves", str(i), "newPosition"], "Position is invalid", "INVALID"))
    if errors:
        return {"job": None, "mediaUserErrors": errors}
    order = list(product.media_ids)
    for mv in moves:
        mid = parse_gid(mv["id"], "MediaImage") or 0
        order.remove(mid)
        order.insert(min(int(mv["newPosition"]), len(order)), mid)
    product.media_ids = order
    job = Job(store.next_id(), done=True)
    store.jobs[job.id] = job
    _product_updates(info, [product])
    return {"job": job, "mediaUserErrors": []}


def _product_updates(info, products: list[Product]) -> None:
    store = store_of(info)
    for product in dict.fromkeys(products):
        product.updated_at = now_iso()
        ctx(info).events.append(store.product_event("products/update", product))


# --------------------------------------------------------------------------- sales channels


def q_publications(_root, info, **args) -> dict:
    pubs = list(store_of(info).publications.values())
    if args.get("catalogType") not in (None, "APP"):
        pubs = []  # every publication here is a sales channel app's
    return connection(pubs, args)


def q_publication(_root, info, id: str) -> Publication | None:
    num = parse_id(id, "Publication")
    return store_of(info).publications.get(num) if num else None


def pub_catalog(pub: Publication, _info) -> dict:
    return {
        "__typename": "AppCatalog",
        "id": gid("AppCatalog", pub.catalog_id),
        "title": pub.name,
        "status": "ACTIVE",
    }


def pub_products(pub: Publication, info, **args) -> dict:
    return connection([p for p in store_of(info).products.values() if pub.id in p.publications], args)


def pub_collections(pub: Publication, info, **args) -> dict:
    return connection([c for c in store_of(info).collections.values() if pub.id in c.publications], args)


def pub_has_collection(pub: Publication, info, id: str) -> bool:
    cid = parse_id(id, "Collection")
    coll = store_of(info).collections.get(cid) if cid else None
    return coll is not None and pub.id in coll.publications


def r_published_on(resource: Product | Collection, info, publicationId: str) -> bool:
    num = parse_id(publicationId, "Publication")
    return num is not None and num in resource.publications


def r_publications(resource: Product | Collection, info, **args) -> dict:
    """resourcePublicationsV2: the channels it is published on (onlyPublished defaults to true;
    an unpublished resource has no ResourcePublicationV2 at all)."""
    store = store_of(info)
    pubs = [store.publications[p] for p in resource.publications if p in store.publications]
    rows = [
        {
            "isPublished": True,
            "publication": pub,
            "publishDate": resource.publications[pub.id],
            "publishable": resource,
        }
        for pub in pubs
    ]
    if args.get("catalogType") not in (None, "APP"):
        rows = []
    return connection(rows, args, lambda r: (r["publication"].id,))


def r_publications_count(resource: Product | Collection, info, onlyPublished: bool | None = None) -> dict:
    return {"count": len(resource.publications), "precision": "EXACT"}


def r_unpublished(resource: Product | Collection, info, **args) -> dict:
    return connection(
        [p for p in store_of(info).publications.values() if p.id not in resource.publications], args
    )


def _publishable(info, id: str) -> Product | Collection | None:
    store = store_of(info)
    kind = gid_type(id)
    if kind is None:
        parse_id(id, "Product")  # raises Shopify's invalid-id error
    num = parse_gid(id)
    if kind == "Product":
        return store.products.get(num)  # type: ignore[arg-type]
    if kind == "Collection":
        return store.collections.get(num)  # type: ignore[arg-type]
    return None


def _publication_inputs(info, input: list[dict]) -> tuple[list[int], list[dict]]:
    store = store_of(info)
    ids, errors = [], []
    for i, p in enumerate(input):
        num = parse_gid(p.get("publicationId"), "Publication") if p.get("publicationId") else None
        if num is None or num not in store.publications:
            errors.append(user_error(["input", str(i), "publicationId"], "Publication does not exist"))
        else:
            ids.append(num)
    return ids, errors


def m_publishable_publish(_root, info, id: str, input: list[dict]) -> dict:
    """Publishes a product or collection on publications (scope write_publications). An API-made
    product or collection is on no channel until then
    (https://shopify.dev/docs/api/admin-graphql/2026-10/mutations/publishablePublish). A product
    must be ACTIVE to be visible on a channel, but may be published in any status. Only online
    store channels take a future publishDate."""
    store = store_of(info)
    resource = _publishable(info, id)
    if resource is None:
        return {
            "publishable": None,
            "shop": q_shop(None, info),
            "userErrors": [user_error(["id"], "Resource does not exist")],
        }
    ids, errors = _publication_inputs(info, input)
    for i, p in enumerate(input):
        num = parse_gid(p.get("publicationId"), "Publication")
        pub = store.publications.get(num) if num else None
        if p.get("publishDate") and pub is not None and not pub.supports_future_publishing:
            errors.append(
                user_error(["input", str(i), "publishDate"], f"{pub.name} doesn't support future publishing")
            )
    if errors:
        return {"publishable": None, "shop": q_shop(None, info), "userErrors": errors}
    when = next((p["publishDate"] for p in input if p.get("publishDate")), None)
    if store.publish(resource, ids, when):
        _publish_event(info, resource)
    return {"publishable": resource, "shop": q_shop(None, info), "userErrors": []}


def m_publishable_unpublish(_root, info, id: str, input: list[dict]) -> dict:
    store = store_of(info)
    resource = _publishable(info, id)
    if resource is None:
        return {
            "publishable": None,
            "shop": q_shop(None, info),
            "userErrors": [user_error(["id"], "Resource does not exist")],
        }
    ids, errors = _publication_inputs(info, input)
    if errors:
        return {"publishable": None, "shop": q_shop(None, info), "userErrors": errors}
    if store.unpublish(resource, ids):
        _publish_event(info, resource)
    return {"publishable": resource, "shop": q_shop(None, info), "userErrors": []}


def _publish_event(info, resource: Product | Collection) -> None:
    """The resource's published_at / published_scope changed: its update webhook follows."""
    store = store_of(info)
    resource.updated_at = now_iso()
    if isinstance(resource, Product):
        ctx(info).events.append(store.product_event("products/update", resource))
    else:
        ctx(info).events.append(store.collection_event("collections/update", resource))


def resolve_publishable_type(obj: Any, _info, _type) -> str:
    return "Product" if isinstance(obj, Product) else "Collection"


# --------------------------------------------------------------------------- inventory items


def item_event(store: StoreState, item: InventoryItem) -> Event:
    return Event("inventory_items/update", payloads.inventory_item(store, item))


def m_inventory_item_update(_root, info, id: str, input: dict) -> dict:
    store = store_of(info)
    iid = parse_id(id, "InventoryItem")
    item = store.items.get(iid) if iid else None
    if item is None:
        return {"inventoryItem": None, "userErrors": [user_error(["id"], "Inventory item does not exist")]}
    errors = [user_error(["input", *path], why) for path, why in item_input_problems(input)]
    if errors:
        return {"inventoryItem": None, "userErrors": errors}
    if apply_item_input(item, input):
        ctx(info).events.append(item_event(store, item))
    return {"inventoryItem": item, "userErrors": []}


def ii_unit_cost(item: InventoryItem, info) -> dict | None:
    return (
        {"amount": item.unit_cost, "currencyCode": store_of(info).currency}
        if item.unit_cost is not None
        else None
    )


def ii_measurement(item: InventoryItem, _info) -> dict:
    return {
        "id": gid("InventoryItemMeasurement", item.id),
        "weight": {"unit": item.weight_unit, "value": item.weight_value},
    }


# --------------------------------------------------------------------------- inventory at locations


def m_inventory_activate(_root, info, inventoryItemId: str, locationId: str, **args) -> dict:
    return idempotent(
        info,
        {"inventoryItemId": inventoryItemId, "locationId": locationId, **args},
        lambda: _inventory_activate(
            info, inventoryItemId, locationId, args.get("available"), args.get("onHand")
        ),
    )


def _inventory_activate(
    info, item_gid: str, location_gid: str, available: int | None, on_hand: int | None
) -> dict:
    """Stocks an item at a location by creating its inventory level, with available / on hand
    quantities (default zero); inventory_levels/connect follows
    (https://shopify.dev/docs/api/admin-graphql/2026-10/mutations/inventoryActivate). An item
    already stocked there is left as it is."""
    store = store_of(info)
    iid, lid = parse_id(item_gid, "InventoryItem"), parse_id(location_gid, "Location")
    item = store.items.get(iid) if iid else None
    loc = store.locations.get(lid) if lid else None
    errors = []
    if item is None:
        errors.append(user_error(["inventoryItemId"], "Inventory item does not exist"))
    if loc is None or not loc.is_active:
        errors.append(user_error(["locationId"], "Location does not exist or is not active"))
    for name, value in (("available", available), ("onHand", on_hand)):
        if value is not None and value < 0:
            errors.append(user_error([name], f"{name} can't be negative"))
    if available is not None and on_hand is not None and available > on_hand:
        errors.append(user_error(["available"], "available can't be more than onHand"))
    if errors:
        return {"inventoryLevel": None, "userErrors": errors}
    assert item is not None and loc is not None
    existing = store.levels.get((item.id, loc.id))
    if existing is not None:
        return {"inventoryLevel": existing, "userErrors": []}
    lvl = store.ensure_level(item.id, loc.id)
    store.inactive_levels.pop((item.id, loc.id), None)
    if on_hand is not None:
        store.set_quantity(lvl, "on_hand", on_hand)  # all of it available...
    if available is not None:
        # ...unless available says less: the rest of on hand is held back (reserved), so
        # on_hand stays the sum of its parts
        rest = (on_hand if on_hand is not None else available) - available
        store.set_quantity(lvl, "available", available)
        store.set_quantity(lvl, "reserved", rest)
    ctx(info).events.append(Event("inventory_levels/connect", payloads.inventory_level(lvl, store.timezone)))
    return {"inventoryLevel": lvl, "userErrors": []}


def m_inventory_deactivate(_root, info, inventoryLevelId: str) -> dict:
    """Removes an item's quantities from a location and stops stocking it there
    (https://shopify.dev/docs/api/admin-graphql/2026-10/mutations/inventoryDeactivate);
    inventory_levels/disconnect follows. Refused while units there are committed to orders
    (InventoryLevel.canDeactivate), and for an item's last location."""
    store = store_of(info)
    num = parse_id(inventoryLevelId.split("?", 1)[0], "InventoryLevel")
    lvl = next((x for x in store.levels.values() if x.id == num), None)
    if lvl is None:
        return {"userErrors": [user_error(["inventoryLevelId"], "Inventory level does not exist")]}
    if lvl.quantities["committed"] > 0:
        return {
            "userErrors": [
                user_error(["inventoryLevelId"], "Inventory is committed to orders at this location")
            ]
        }
    if len(store.levels_by_item.get(lvl.item_id, [])) <= 1:
        return {
            "userErrors": [
                user_error(["inventoryLevelId"], "An item must be stocked at one location at least")
            ]
        }
    del store.levels[(lvl.item_id, lvl.location_id)]
    store.levels_by_item[lvl.item_id].remove(lvl)
    events = ctx(info).events
    events.append(
        Event(
            "inventory_levels/disconnect", payloads.inventory_level_disconnected(lvl.item_id, lvl.location_id)
        )
    )
    item = store.items.get(lvl.item_id)
    variant = store.variants.get(item.variant_id) if item else None
    if variant is not None:
        events.append(store.product_event("products/update", store.products[variant.product_id]))
    return {"userErrors": []}


def lvl_is_active(lvl: InventoryLevel, info) -> bool:
    return (lvl.item_id, lvl.location_id) in store_of(info).levels


def lvl_can_deactivate(lvl: InventoryLevel, info) -> bool:
    return lvl.quantities["committed"] == 0 and len(store_of(info).levels_by_item.get(lvl.item_id, [])) > 1


def loc_address(loc: Location, _info) -> dict:
    a = loc.address
    formatted = [x for x in (a.get("address1"), a.get("city"), a.get("zip"), a.get("country")) if x]
    return {
        "address1": a.get("address1"),
        "address2": a.get("address2"),
        "city": a.get("city"),
        "province": a.get("province"),
        "provinceCode": a.get("province_code"),
        "country": a.get("country"),
        "countryCode": a.get("country_code"),
        "zip": a.get("zip"),
        "phone": a.get("phone"),
        "formatted": formatted,
    }


def loc_has_active_inventory(loc: Location, info) -> bool:
    return loc.is_active and bool(store_of(info).location_levels(loc.id))


# --------------------------------------------------------------------------- registration

RESOLVERS: dict[str, dict[str, Any]] = {
    "QueryRoot": {"publications": q_publications, "publication": q_publication, "files": q_files},
    "Mutation": {
        "metafieldsSet": m_metafields_set,
        "metafieldsDelete": m_metafields_delete,
        "publishablePublish": m_publishable_publish,
        "publishableUnpublish": m_publishable_unpublish,
        "fileCreate": m_file_create,
        "fileUpdate": m_file_update,
        "fileDelete": m_file_delete,
        "productReorderMedia": m_product_reorder_media,
        "inventoryItemUpdate": m_inventory_item_update,
        "inventoryActivate": m_inventory_activate,
        "inventoryDeactivate": m_inventory_deactivate,
    },
    "Metafield": {
        "ownerType": mf_owner_type,
        "jsonValue": mf_json_value,
        "compareDigest": lambda m, _i: m.compare_digest,
    },
    "MediaImage": MEDIA_IMAGE_FIELDS,
    "Product": {
        "media": p_media,
        "mediaCount": p_media_count,
        "featuredMedia": p_featured_media,
        "publishedOnPublication": r_published_on,
        "resourcePublicationsV2": r_publications,
        "resourcePublicationsCount": r_publications_count,
        "unpublishedPublications": r_unpublished,
    },
    "Collection": {
        "publishedOnPublication": r_published_on,
        "resourcePublicationsV2": r_publications,
        "resourcePublicationsCount": r_publications_count,
        "unpublishedPublications": r_unpublished,
    },
    "Publication": {
        "catalog": pub_catalog,
        "products": pub_products,
        "collections": pub_collections,
        "hasCollection": pub_has_collection,
        "autoPublish": lambda p, _i: p.auto_publish,
        "supportsFuturePublishing": lambda p, _i: p.supports_future_publishing,
    },
    "InventoryItem": {"unitCost": ii_unit_cost, "measurement": ii_measurement},
    "InventoryLevel": {"isActive": lvl_is_active, "canDeactivate": lvl_can_deactivate},
    "Location": {
        "address": loc_address,
        "fulfillsOnlineOrders": lambda loc, _i: loc.fulfills_online_orders,
        "activatable": lambda loc, _i: not loc.is_active,
        "deactivatable": lambda loc, _i: loc.is_active,
        "hasActiveInventory": loc_has_active_inventory,
        "isFulfillmentService": lambda loc, _i: False,
    },
}

# Interfaces and unions of this part: the GraphQL type of a value.
TYPE_RESOLVERS = {
    "Publishable": resolve_publishable_type,
    "Media": lambda obj, _info, _type: "MediaImage",
    "File": lambda obj, _info, _type: "MediaImage",
    "Catalog": lambda obj, _info, _type: obj["__typename"],
}
