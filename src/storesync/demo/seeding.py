"""What the demo's stores hold before storesync arrives, and its configuration: a deterministic
parent catalog with variants, manual collections and stock at two locations; children that may
already sell the parent's first products (same SKUs: linking finds them); `storesync.toml` with
location maps by location name; the webhook subscriptions an app's configuration declares."""

from __future__ import annotations

import json
import random
from collections.abc import Mapping, Sequence

from storesync.demo.processes import SystemStartError
from storesync.emulator.control_client import EmulatorControl, EmulatorControlError

LOCATION_NAMES = ("Shop location", "Warehouse")


MERCHANT_ID = "demo"


ADJECTIVES = ("Alpine", "Breezy", "Cedar", "Dune", "Ember", "Fjord", "Granite", "Harbor", "Indigo", "Juniper")


NOUNS = ("Jacket", "Tee", "Hoodie", "Cap", "Tote", "Scarf", "Sock", "Beanie", "Vest", "Short")


COLLECTIONS = ("New arrivals", "Outerwear", "Basics", "Accessories", "Sale")


SIZE_SETS = (["S", "M", "L"], ["S", "M"], ["One size"])


def demo_catalog(
    products: int, locations: Sequence[str], seed: int = 7, stock: tuple[int, int] = (5, 40)
) -> list[dict]:
    """A deterministic parent catalog: 1-3 variants per product, stock (a number in the range
    `stock`) at every location."""
    rng = random.Random(seed)
    catalog = []
    for n in range(1, products + 1):
        title = f"{ADJECTIVES[n % len(ADJECTIVES)]} {NOUNS[(n // len(ADJECTIVES)) % len(NOUNS)]} {n}"
        sizes = SIZE_SETS[n % len(SIZE_SETS)]
        variants = []
        for size in sizes:
            sku = f"DEMO-{n:03d}-{size.replace(' ', '').upper()}"
            variants.append(
                {
                    "sku": sku,
                    "barcode": f"0{n:05d}{sizes.index(size):02d}",
                    "price": f"{19 + n % 40}.00",
                    "options": {"Size": size},
                    "available": {loc: rng.randint(*stock) for loc in locations},
                }
            )
        catalog.append(
            {
                "title": title,
                "handle": f"demo-product-{n}",
                "vendor": "Northwind",
                "product_type": NOUNS[(n // len(ADJECTIVES)) % len(NOUNS)],
                "tags": sorted({"demo", rng.choice(("summer", "winter", "all-season"))}),
                "description_html": f"<p>{title}: made to last.</p>",
                "variants": variants,
            }
        )
    return catalog


def _toml_str(value: str) -> str:
    return json.dumps(value)  # a JSON string is a valid TOML basic string


def _toml_value(value: object) -> str:
    """A string, number, boolean or list of them as TOML (JSON's forms of these are TOML's)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return json.dumps(value)


# The Dev Dashboard app the demo's stores share (a new merchant's setup: one app of the
# merchant's own organization, installed on each of its stores, tokens by client credentials).
DEMO_APP = "storesync"


DEMO_CLIENT_ID = "storesync-demo-app"


def network_toml(
    emulator_url: str,
    stores: list[dict],
    locations: dict[str, dict[str, str]],
    parent: str,
    children: list[str],
    *,
    app_secret: str | None = None,
    install: Sequence[str] = (),
    redirect_uri: str | None = None,
    merchant_sync: dict | None = None,
    child_catalog: dict[str, dict] | None = None,
    child_settings: Mapping[str, Mapping[str, str]] | None = None,
) -> str:
    """storesync.toml for the emulator's stores: with `app_secret`, every store connects by the
    client credentials grant of one app (those in `install` by its authorization code grant, the
    install flow returning to `redirect_uri`); without, by the store's static token.
    `merchant_sync`: the merchant's `[merchants.sync]` keys; `child_catalog`: shop -> that child's
    catalog rules;
    `child_settings`: more keys of a child's table (shop -> key -> value, a string), e.g. its
    `stock_changes`."""
    info = {s["shop"]: s for s in stores}

    def store_block(header: str, shop: str) -> list[str]:
        s = info[shop]
        lines = [
            header,
            f"shop = {_toml_str(shop)}",
            f"admin_api_url = {_toml_str(emulator_url + s['graphql_path'])}",
        ]
        if app_secret is not None:
            kind = "authorization_code" if shop in install else "client_credentials"
            lines.append(f'credentials = {{ kind = "{kind}", app = {_toml_str(DEMO_APP)} }}')
        else:
            lines += [
                f"access_token = {_toml_str(s['token'])}",
                f"webhook_secrets = [{_toml_str(s['webhook_secret'])}]",
            ]
        if shop != parent:
            pairs = ", ".join(
                f"{_toml_str(locations[parent][name])} = {_toml_str(gid)}"
                for name, gid in locations[shop].items()
                if name in locations[parent]
            )
            lines.append(f"location_map = {{ {pairs} }}")
            rules = (child_catalog or {}).get(shop)
            if rules:
                lines.append(
                    "catalog = { " + ", ".join(f"{k} = {_toml_value(v)}" for k, v in rules.items()) + " }"
                )
            lines += [
                f"{key} = {_toml_str(value)}" for key, value in (child_settings or {}).get(shop, {}).items()
            ]
        return [*lines, ""]

    out = ["# Written by storesync.demo.harness for the emulator's stores.", ""]
    if app_secret is not None:
        out += [
            f"[apps.{DEMO_APP}]",
            f"client_id = {_toml_str(DEMO_CLIENT_ID)}",
            f"client_secrets = [{_toml_str(app_secret)}]",
            *([f"redirect_uri = {_toml_str(redirect_uri)}"] if redirect_uri else []),
            "",
        ]
    out += [
        "[[merchants]]",
        f"id = {_toml_str(MERCHANT_ID)}",
        'name = "Demo merchant"',
        "",
    ]
    if merchant_sync:
        out += ["[merchants.sync]", *(f"{k} = {_toml_value(v)}" for k, v in merchant_sync.items()), ""]
    out += store_block("[merchants.parent]", parent)
    for child in children:
        out += store_block("[[merchants.children]]", child)
    return "\n".join(out)


# The metafield namespace the demo's products carry and its merchant syncs (`metafield_namespaces`).
DEMO_NAMESPACE = "specs"


def seed_stores(
    emu: EmulatorControl,
    parent: str,
    children: list[str],
    products: int,
    child_overlap: int,
    collections: int,
    overlap_stock: int | None,
    stock: tuple[int, int] = (5, 40),
    *,
    catalog_extras: bool = False,
) -> dict[str, dict[str, str]]:
    """Seed the stores (no webhooks yet); returns shop -> location name -> gid. `catalog_extras`:
    every third parent product also gets media, metafields (of `DEMO_NAMESPACE` and of a
    namespace the parent keeps to itself) and its variants' selling and inventory item fields."""
    try:
        locations = _seed_stores(
            emu, parent, children, products, child_overlap, collections, overlap_stock, stock
        )
        if catalog_extras:
            enrich_catalog(emu, parent)
        return locations
    except EmulatorControlError as err:
        raise SystemStartError(f"seeding: {err}") from None


def enrich_catalog(emu: EmulatorControl, shop: str, every: int = 3) -> None:
    """Media, metafields and variant fields on every `every`-th product of `shop`, as a merchant
    adds them in the admin."""
    text = "single_line_text_field"
    for n, product in enumerate(sorted(emu.snapshot(shop)["products"], key=lambda p: p["id"]), 1):
        if n % every:
            continue
        handle = product["handle"]
        emu.edit_product(
            shop,
            product["admin_graphql_api_id"],
            media=[
                {
                    "src": f"https://images.example.com/demo/{handle}-front.jpg",
                    "alt": f"{product['title']}, front",
                },
                {
                    "src": f"https://images.example.com/demo/{handle}-back.jpg",
                    "alt": f"{product['title']}, back",
                },
            ],
            metafields=[
                {"namespace": DEMO_NAMESPACE, "key": "material", "type": text, "value": "recycled wool"},
                {"namespace": "parent_notes", "key": "buyer", "type": text, "value": "ask Dana"},
            ],
            variants=[
                {
                    "id": v["admin_graphql_api_id"],
                    "metafields": [
                        {"namespace": DEMO_NAMESPACE, "key": "fit", "type": text, "value": f"fit {i}"}
                    ],
                    "inventory_policy": "continue" if i == 0 else "deny",
                    "cost": f"{4 + i}.50",
                    "harmonized_system_code": "620193",
                    "country_code_of_origin": "PT",
                    "weight": 0.4 + i / 10,
                    "weight_unit": "KILOGRAMS",
                }
                for i, v in enumerate(product["variants"])
            ],
        )


def _seed_stores(
    emu: EmulatorControl,
    parent: str,
    children: list[str],
    products: int,
    child_overlap: int,
    collections: int,
    overlap_stock: int | None,
    stock: tuple[int, int],
) -> dict[str, dict[str, str]]:
    locations: dict[str, dict[str, str]] = {}
    for shop in [parent, *children]:
        emu.seed(shop, 0, locations=list(LOCATION_NAMES))
        snap = emu.snapshot(shop)
        locations[shop] = {loc["name"]: loc["id"] for loc in snap["locations"]}
    catalog = demo_catalog(products, LOCATION_NAMES, stock=stock)
    parent_catalog = [
        {
            **p,
            "variants": [
                {**v, "available": {locations[parent][n]: q for n, q in v["available"].items()}}
                for v in p["variants"]
            ],
        }
        for p in catalog
    ]
    created = emu.seed(parent, 0, catalog=parent_catalog)
    product_ids: list[str] = created["products"]
    # Manual collections in the parent; product n belongs to collection n % k (and "Sale" if n % 7 == 0).
    # Each is published on every sales channel, as a merchant's are (one made through the API is
    # on none until published).
    names = COLLECTIONS[:collections]
    channels = [{"publicationId": p["id"]} for p in emu.snapshot(parent)["publications"]]
    for ci, title in enumerate(names):
        members = [
            pid
            for n, pid in enumerate(product_ids, 1)
            if n % len(names) == ci or (title == "Sale" and n % 7 == 0)
        ]
        # A manual collection (2026-10): one conditions source whose selections are its members,
        # created with the first 250 (Shopify's limit per call) and the rest added by updates.
        res = emu.graphql(
            parent,
            "mutation($c: CollectionCreateInput!) { collectionCreate(collection: $c) "
            "{ collection { id sources { id } } userErrors { field message } } }",
            {
                "c": {
                    "title": title,
                    "sources": [
                        {
                            "source": {
                                "title": title,
                                "inclusion": {"selections": [{"productId": pid} for pid in members[:250]]},
                            }
                        }
                    ],
                }
            },
        )
        data = (res.get("data") or {}).get("collectionCreate") or {}
        if res.get("errors") or data.get("userErrors") or not data.get("collection"):
            raise SystemStartError(f"seeding: collectionCreate {title!r}: {res}")
        coll = data["collection"]
        res = emu.graphql(
            parent,
            "mutation($id: ID!, $p: [PublicationInput!]!) { publishablePublish(id: $id, input: $p) "
            "{ userErrors { field message } } }",
            {"id": coll["id"], "p": channels},
        )
        if res.get("errors") or (res.get("data") or {}).get("publishablePublish", {}).get("userErrors"):
            raise SystemStartError(f"seeding: publishing {title!r}: {res}")
        for start in range(250, len(members), 250):
            more = [{"productId": pid} for pid in members[start : start + 250]]
            res = emu.graphql(
                parent,
                "mutation($c: CollectionUpdateInput!) { collectionUpdate(collection: $c) "
                "{ userErrors { field message } } }",
                {
                    "c": {
                        "id": coll["id"],
                        "sourcesToUpdate": [
                            {
                                "condition": {
                                    "id": coll["sources"][0]["id"],
                                    "inclusion": {"selectionsToAdd": more},
                                }
                            }
                        ],
                    }
                },
            )
            if res.get("errors") or (res.get("data") or {}).get("collectionUpdate", {}).get("userErrors"):
                raise SystemStartError(f"seeding: collectionUpdate {title!r}: {res}")
    # Children may already sell some of the parent's products (same SKUs, stale stock): linking finds them.
    for child in children:
        overlap = [
            {
                **p,
                "variants": [
                    {
                        **v,
                        "available": {
                            locations[child][n]: q if overlap_stock is None else overlap_stock
                            for n, q in v["available"].items()
                        },
                    }
                    for v in p["variants"]
                ],
            }
            for p in catalog[:child_overlap]
        ]
        if overlap:
            emu.seed(child, 0, catalog=overlap)
    return locations


def subscribe_stores(
    emu: EmulatorControl, shops: list[str], topics: Sequence[str], callback_url: str
) -> list[str]:
    """Subscribe every shop to every topic the emulator emits; returns the topics it does not."""
    unknown: list[str] = []
    for shop in shops:
        for topic in topics:
            if topic in unknown:
                continue
            try:
                emu.subscribe(shop, topic, callback_url)
            except EmulatorControlError as err:
                if "unknown webhook topic" not in str(err):
                    raise SystemStartError(f"subscribing {shop} to {topic}: {err}") from None
                unknown.append(topic)
    return unknown


def generate_encryption_key() -> str:
    from cryptography.fernet import Fernet

    return Fernet.generate_key().decode()
