"""Each mutation's success path and its userErrors (Shopify's field paths and codes)."""

from __future__ import annotations

import pytest

from storesync.commerce.operations import get_operation
from storesync.sync.adapters.shopify import PRODUCT_LIST_SIZES
from tests.emulator.helpers import (
    OPERATIONS,
    PARENT,
    available,
    first_product,
    gql,
    gql_errors,
)

# The engine's own document, its shared fragment appended, as the client sends it.
PRODUCT_SET = get_operation("ProductSet").text

READ_PRODUCT = """query($id: ID!) { product(id: $id) { title vendor handle tags
  options { name values } variants(first: 10) { nodes { id sku price selectedOptions { name value } } }
  metafields(first: 10) { nodes { namespace key value } } collections(first: 5) { nodes { id } } } }"""


def shirt_input(**overrides) -> dict:
    base = {
        "title": "Shirt",
        "vendor": "Acme",
        "tags": ["summer"],
        "productOptions": [{"name": "Size", "values": [{"name": "S"}, {"name": "M"}]}],
        "variants": [
            {"optionValues": [{"optionName": "Size", "name": "S"}], "sku": "SH-S", "price": "10"},
            {"optionValues": [{"optionName": "Size", "name": "M"}], "sku": "SH-M", "price": "12.5"},
        ],
        "metafields": [
            {"namespace": "custom", "key": "fabric", "type": "single_line_text_field", "value": "cotton"}
        ],
    }
    base.update(overrides)
    return base


def product_set(emu, input: dict, identifier: dict | None = None) -> dict:
    return gql(emu, PARENT, PRODUCT_SET, {"input": input, "identifier": identifier, **PRODUCT_LIST_SIZES})[
        "productSet"
    ]


# --------------------------------------------------------------------------- productSet


def test_product_set_creates_a_product_with_options_variants_and_metafields(emulator):
    out = product_set(emulator, shirt_input())
    assert out["userErrors"] == []
    pid = out["product"]["id"]
    assert out["product"]["handle"] == "shirt"
    assert [v["sku"] for v in out["product"]["variants"]["nodes"]] == ["SH-S", "SH-M"]
    p = gql(emulator, PARENT, READ_PRODUCT, {"id": pid})["product"]
    assert p["options"] == [{"name": "Size", "values": ["S", "M"]}]
    assert [v["price"] for v in p["variants"]["nodes"]] == ["10.00", "12.50"]
    assert p["metafields"]["nodes"] == [{"namespace": "custom", "key": "fabric", "value": "cotton"}]


def test_product_set_replaces_list_fields_wholesale_and_keeps_omitted_scalars(emulator):
    created = product_set(emulator, shirt_input())["product"]
    small = created["variants"]["nodes"][0]
    out = product_set(
        emulator,
        {
            "productOptions": [{"name": "Size", "values": [{"name": "S"}, {"name": "L"}]}],
            "variants": [
                {
                    "id": small["id"],
                    "optionValues": [{"optionName": "Size", "name": "S"}],
                    "sku": "SH-S",
                    "price": "11",
                },
                {"optionValues": [{"optionName": "Size", "name": "L"}], "sku": "SH-L", "price": "14"},
            ],
            "metafields": [],
        },
        identifier={"id": created["id"]},
    )
    assert out["userErrors"] == []
    variants = out["product"]["variants"]["nodes"]
    assert [v["sku"] for v in variants] == ["SH-S", "SH-L"]
    # A variant given by id keeps its id and inventory item; the one left out is gone.
    assert variants[0]["id"] == small["id"]
    assert variants[0]["inventoryItem"]["id"] == small["inventoryItem"]["id"]
    p = gql(emulator, PARENT, READ_PRODUCT, {"id": created["id"]})["product"]
    assert (
        p["title"] == "Shirt" and p["vendor"] == "Acme" and p["tags"] == ["summer"]
    )  # scalars left out stay
    assert p["metafields"]["nodes"] == []
    gone = gql(
        emulator,
        PARENT,
        "query($id: ID!) { productVariant(id: $id) { id } }",
        {"id": created["variants"]["nodes"][1]["id"]},
    )
    assert gone["productVariant"] is None


def test_product_set_identifier_handle_upserts(emulator):
    first = product_set(emulator, shirt_input(), identifier={"handle": "tee"})
    assert first["product"]["handle"] == "tee"
    again = product_set(emulator, {"title": "Tee"}, identifier={"handle": "tee"})
    assert again["userErrors"] == [] and again["product"]["id"] == first["product"]["id"]
    count = gql(emulator, PARENT, '{ productsCount(query: "handle:tee") { count } }')
    assert count["productsCount"]["count"] == 1


def test_product_set_collections_are_replaced(emulator):
    c1 = gql(emulator, PARENT, 'mutation { collectionCreate(input: {title: "A"}) { collection { id } } }')
    c2 = gql(emulator, PARENT, 'mutation { collectionCreate(input: {title: "B"}) { collection { id } } }')
    ids = [c1["collectionCreate"]["collection"]["id"], c2["collectionCreate"]["collection"]["id"]]
    pid = product_set(emulator, shirt_input(collections=ids))["product"]["id"]
    product_set(emulator, {"collections": [ids[1]]}, identifier={"id": pid})
    p = gql(emulator, PARENT, READ_PRODUCT, {"id": pid})["product"]
    assert p["collections"]["nodes"] == [{"id": ids[1]}]


@pytest.mark.parametrize(
    ("input", "identifier", "field", "code"),
    [
        (
            {"title": "X"},
            {"id": "gid://shopify/Product/424242"},
            ["identifier", "id"],
            "PRODUCT_DOES_NOT_EXIST",
        ),
        ({"vendor": "no title"}, None, ["input", "title"], "INVALID_INPUT"),
        (
            {"title": "X", "variants": [{"optionValues": [{"optionName": "Size", "name": "S"}]}]},
            None,
            ["input", "productOptions"],
            "PRODUCT_OPTIONS_INPUT_MISSING",
        ),
        (
            shirt_input(variants=[{"optionValues": [{"optionName": "Colour", "name": "Red"}]}]),
            None,
            ["input", "variants", "0", "optionValues", "0", "optionName"],
            "OPTION_DOES_NOT_EXIST",
        ),
        (
            shirt_input(variants=[{"optionValues": [{"optionName": "Size", "name": "XL"}]}]),
            None,
            ["input", "variants", "0", "optionValues", "0", "name"],
            "OPTION_VALUE_DOES_NOT_EXIST",
        ),
        (
            shirt_input(variants=[{"optionValues": [{"optionName": "Size", "name": "S"}], "price": "-1"}]),
            None,
            ["input", "variants", "0", "price"],
            "INVALID_VARIANT",
        ),
        (
            shirt_input(
                variants=[
                    {
                        "id": "gid://shopify/ProductVariant/5",
                        "optionValues": [{"optionName": "Size", "name": "S"}],
                    }
                ]
            ),
            None,
            ["input", "variants", "0", "id"],
            "PRODUCT_VARIANT_DOES_NOT_EXIST",
        ),
        (
            shirt_input(productOptions=[{"name": "Size", "values": [{"name": "S"}, {"name": "S"}]}]),
            None,
            ["input", "productOptions", "0", "values"],
            "DUPLICATED_OPTION_VALUE",
        ),
        (
            shirt_input(metafields=[{"namespace": "custom", "key": "k", "value": "v"}]),
            None,
            ["input", "metafields", "0", "type"],
            "INVALID_METAFIELD",
        ),
    ],
)
def test_product_set_user_errors_change_nothing(emulator, input, identifier, field, code):
    out = product_set(emulator, input, identifier)
    assert out["product"] is None
    assert {"field": field, "code": code} in [
        {"field": e["field"], "code": e["code"]} for e in out["userErrors"]
    ]
    assert emulator.snapshot(PARENT)["products"] == []


def test_product_set_refuses_options_that_orphan_existing_variants_or_no_variants(emulator):
    pid = product_set(emulator, shirt_input())["product"]["id"]
    out = product_set(
        emulator,
        {"productOptions": [{"name": "Colour", "values": [{"name": "Red"}]}]},
        identifier={"id": pid},
    )
    assert [(e["field"], e["code"]) for e in out["userErrors"]] == [
        (["input", "variants"], "VARIANTS_INPUT_MISSING")
    ]
    out = product_set(emulator, {"variants": []}, identifier={"id": pid})
    assert out["userErrors"][0]["code"] == "VARIANTS_INPUT_MISSING"
    p = gql(emulator, PARENT, READ_PRODUCT, {"id": pid})["product"]
    assert p["options"] == [{"name": "Size", "values": ["S", "M"]}] and len(p["variants"]["nodes"]) == 2


def test_product_set_refuses_a_variant_listed_twice(emulator):
    created = product_set(emulator, shirt_input())["product"]
    small = created["variants"]["nodes"][0]["id"]
    out = product_set(
        emulator,
        {
            "variants": [
                {"id": small, "optionValues": [{"optionName": "Size", "name": "S"}]},
                {"id": small, "optionValues": [{"optionName": "Size", "name": "M"}]},
            ]
        },
        identifier={"id": created["id"]},
    )
    assert [(e["field"], e["code"]) for e in out["userErrors"]] == [
        (["input", "variants", "1", "id"], "INVALID_VARIANT")
    ]


def test_product_set_rejects_a_handle_owned_by_another_product(emulator):
    product_set(emulator, shirt_input(handle="taken"))
    out = product_set(emulator, {"title": "Other", "handle": "taken"})
    assert out["userErrors"][0]["code"] == "HANDLE_NOT_UNIQUE"
    assert out["userErrors"][0]["field"] == ["input", "handle"]


def test_product_set_asynchronous_returns_an_operation(emulator):
    out = gql(
        emulator,
        PARENT,
        """mutation { productSet(synchronous: false, input: {title: "Async"}) {
        product { id } productSetOperation { id status product { title } } userErrors { code } } }""",
    )["productSet"]
    assert out["product"] is None
    assert out["productSetOperation"]["status"] == "COMPLETE"
    assert out["productSetOperation"]["product"]["title"] == "Async"


# --------------------------------------------------------------------------- productDelete


def test_product_delete_removes_the_product_and_its_inventory(emulator):
    emulator.seed(PARENT, products=1)
    p = first_product(emulator)
    out = gql(emulator, PARENT, (OPERATIONS / "product_delete.graphql").read_text(), {"id": p["id"]})
    assert out["productDelete"] == {"deletedProductId": p["id"], "userErrors": []}
    snap = emulator.snapshot(PARENT)
    assert snap["products"] == [] and snap["inventory_levels"] == []
    again = gql(emulator, PARENT, (OPERATIONS / "product_delete.graphql").read_text(), {"id": p["id"]})
    assert again["productDelete"]["deletedProductId"] is None
    assert again["productDelete"]["userErrors"][0]["field"] == ["id"]


# --------------------------------------------------------------------------- productVariantsBulkUpdate

BULK = (OPERATIONS / "product_variants_bulk_update.graphql").read_text()


def test_variants_bulk_update_changes_only_given_fields(emulator):
    emulator.seed(PARENT, products=1)
    p = first_product(emulator)
    v = p["variants"]["nodes"][0]
    out = gql(
        emulator,
        PARENT,
        BULK,
        {"productId": p["id"], "variants": [{"id": v["id"], "price": "99.5", "barcode": "123"}]},
    )["productVariantsBulkUpdate"]
    assert out["userErrors"] == []
    assert out["productVariants"] == [
        {"id": v["id"], "sku": v["sku"], "price": "99.50", "compareAtPrice": None, "barcode": "123"}
    ]


@pytest.mark.parametrize(
    ("variant", "field", "code"),
    [
        ({"price": "1"}, ["variants", "0", "id"], "PRODUCT_VARIANT_ID_MISSING"),
        (
            {"id": "gid://shopify/ProductVariant/424242"},
            ["variants", "0", "id"],
            "PRODUCT_VARIANT_DOES_NOT_EXIST",
        ),
        ({"id": "SELF", "price": "-3"}, ["variants", "0", "price"], "NEGATIVE_PRICE_VALUE"),
    ],
)
def test_variants_bulk_update_user_errors(emulator, variant, field, code):
    emulator.seed(PARENT, products=1)
    p = first_product(emulator)
    if variant.get("id") == "SELF":
        variant = {**variant, "id": p["variants"]["nodes"][0]["id"]}
    out = gql(emulator, PARENT, BULK, {"productId": p["id"], "variants": [variant]})[
        "productVariantsBulkUpdate"
    ]
    assert out["productVariants"] is None
    assert [(e["field"], e["code"]) for e in out["userErrors"]] == [(field, code)]
    missing = gql(emulator, PARENT, BULK, {"productId": "gid://shopify/Product/1", "variants": []})
    assert missing["productVariantsBulkUpdate"]["userErrors"][0]["code"] == "PRODUCT_DOES_NOT_EXIST"


def test_variants_bulk_update_of_another_products_variant_is_refused(emulator):
    emulator.seed(PARENT, products=2)
    data = gql(
        emulator, PARENT, "{ products(first: 2) { nodes { id variants(first: 1) { nodes { id } } } } }"
    )
    a, b = data["products"]["nodes"]
    out = gql(
        emulator,
        PARENT,
        BULK,
        {"productId": a["id"], "variants": [{"id": b["variants"]["nodes"][0]["id"], "price": "1"}]},
    )["productVariantsBulkUpdate"]
    assert out["userErrors"][0]["code"] == "MUST_BE_FOR_THIS_PRODUCT"


# --------------------------------------------------------------------------- inventory

# The emulator's answer in full (the engine's own documents select only the errors).
_GROUP = """
    inventoryAdjustmentGroup {
      id
      reason
      changes { name delta quantityAfterChange item { id } location { id } }
    }
    userErrors { field message code }
"""
SET = (
    "mutation InventorySetQuantities($input: InventorySetQuantitiesInput!, $idempotencyKey: String!) {"
    " inventorySetQuantities(input: $input) @idempotent(key: $idempotencyKey) {" + _GROUP + "} }"
)
ADJUST = (
    "mutation InventoryAdjustQuantities($input: InventoryAdjustQuantitiesInput!, $idempotencyKey: String!) {"
    " inventoryAdjustQuantities(input: $input) @idempotent(key: $idempotencyKey) {" + _GROUP + "} }"
)


def set_input(item: str, location: str, quantity: int, change_from, name: str = "available") -> dict:
    q = {"inventoryItemId": item, "locationId": location, "quantity": quantity}
    if change_from != "omit":
        q["changeFromQuantity"] = change_from
    return {"reason": "correction", "name": name, "quantities": [q]}


def test_inventory_set_quantities_compare_and_set(emulator):
    emulator.seed(PARENT, products=1, quantity=10)
    p = first_product(emulator)
    item = p["variants"]["nodes"][0]["inventoryItem"]["id"]
    out = gql(emulator, PARENT, SET, {"input": set_input(item, p["location"], 7, 10), "idempotencyKey": "k1"})
    group = out["inventorySetQuantities"]["inventoryAdjustmentGroup"]
    assert out["inventorySetQuantities"]["userErrors"] == []
    assert {(c["name"], c["delta"], c["quantityAfterChange"]) for c in group["changes"]} == {
        ("available", -3, 7),
        ("on_hand", -3, 7),
    }
    assert available(emulator, PARENT, item, p["location"]) == {"available": 7, "on_hand": 7, "committed": 0}

    stale = gql(
        emulator, PARENT, SET, {"input": set_input(item, p["location"], 5, 10), "idempotencyKey": "k2"}
    )
    errors = stale["inventorySetQuantities"]["userErrors"]
    assert [(e["field"], e["code"]) for e in errors] == [
        (["input", "quantities", "0", "changeFromQuantity"], "CHANGE_FROM_QUANTITY_STALE")
    ]
    assert available(emulator, PARENT, item, p["location"])["available"] == 7

    unchecked = gql(
        emulator, PARENT, SET, {"input": set_input(item, p["location"], 4, None), "idempotencyKey": "k3"}
    )
    assert unchecked["inventorySetQuantities"]["userErrors"] == []
    assert available(emulator, PARENT, item, p["location"])["available"] == 4


def test_inventory_set_quantities_on_hand_moves_available(emulator):
    emulator.seed(PARENT, products=1, quantity=10)
    p = first_product(emulator)
    item = p["variants"]["nodes"][0]["inventoryItem"]["id"]
    gql(
        emulator,
        PARENT,
        SET,
        {"input": set_input(item, p["location"], 15, 10, name="on_hand"), "idempotencyKey": "oh"},
    )
    assert available(emulator, PARENT, item, p["location"]) == {
        "available": 15,
        "on_hand": 15,
        "committed": 0,
    }


def test_idempotency_key_replays_the_first_result_without_applying_again(emulator):
    emulator.seed(PARENT, products=1, quantity=10)
    p = first_product(emulator)
    item = p["variants"]["nodes"][0]["inventoryItem"]["id"]
    adjust = {
        "reason": "correction",
        "name": "available",
        "changes": [{"inventoryItemId": item, "locationId": p["location"], "delta": -2}],
    }
    first = gql(emulator, PARENT, ADJUST, {"input": adjust, "idempotencyKey": "sale-1"})
    again = gql(emulator, PARENT, ADJUST, {"input": adjust, "idempotencyKey": "sale-1"})
    assert again == first
    assert available(emulator, PARENT, item, p["location"])["available"] == 8
    other = gql(
        emulator,
        PARENT,
        ADJUST,
        {"input": {**adjust, "changes": [{**adjust["changes"][0], "delta": -5}]}, "idempotencyKey": "sale-1"},
    )["inventoryAdjustQuantities"]
    assert [e["code"] for e in other["userErrors"]] == ["IDEMPOTENCY_KEY_PARAMETER_MISMATCH"]
    assert available(emulator, PARENT, item, p["location"])["available"] == 8


def test_a_key_whose_first_attempt_failed_cannot_be_reused(emulator):
    """A stale compare-and-set fails the attempt: its key is spent (Shopify: "retry with a new
    idempotency key"); a new key applies once."""
    emulator.seed(PARENT, products=1, quantity=10)
    p = first_product(emulator)
    item = p["variants"]["nodes"][0]["inventoryItem"]["id"]
    change = {"inventoryItemId": item, "locationId": p["location"], "delta": -2, "changeFromQuantity": 9}
    adjust = {"reason": "correction", "name": "available", "changes": [change]}
    stale = gql(emulator, PARENT, ADJUST, {"input": adjust, "idempotencyKey": "k"})[
        "inventoryAdjustQuantities"
    ]
    assert [e["code"] for e in stale["userErrors"]] == ["CHANGE_FROM_QUANTITY_STALE"]
    fixed = {**adjust, "changes": [{**change, "changeFromQuantity": 10}]}
    again = gql(emulator, PARENT, ADJUST, {"input": adjust, "idempotencyKey": "k"})[
        "inventoryAdjustQuantities"
    ]
    assert [e["code"] for e in again["userErrors"]] == ["IDEMPOTENCY_PREVIOUS_ATTEMPT_FAILED"]
    ok = gql(emulator, PARENT, ADJUST, {"input": fixed, "idempotencyKey": "k2"})["inventoryAdjustQuantities"]
    assert ok["userErrors"] == []
    assert available(emulator, PARENT, item, p["location"])["available"] == 8


def test_inventory_mutations_require_the_idempotent_directive(emulator):
    emulator.seed(PARENT, products=1)
    p = first_product(emulator)
    item = p["variants"]["nodes"][0]["inventoryItem"]["id"]
    errors = gql_errors(
        emulator,
        PARENT,
        """mutation($input: InventorySetQuantitiesInput!) {
        inventorySetQuantities(input: $input) { userErrors { code } } }""",
        {"input": set_input(item, p["location"], 1, None)},
    )
    assert "@idempotent" in errors[0]["message"]
    assert available(emulator, PARENT, item, p["location"])["available"] == 10


def test_inventory_set_quantities_user_errors(emulator):
    emulator.seed(PARENT, products=1)
    p = first_product(emulator)
    item = p["variants"]["nodes"][0]["inventoryItem"]["id"]
    loc = p["location"]
    cases = [
        ({**set_input(item, loc, 1, None), "reason": "whim"}, ["input", "reason"], "INVALID_REASON"),
        (set_input(item, loc, 1, None, name="committed"), ["input", "name"], "INVALID_NAME"),
        (
            set_input("gid://shopify/InventoryItem/1", loc, 1, None),
            ["input", "quantities", "0", "inventoryItemId"],
            "INVALID_INVENTORY_ITEM",
        ),
        (
            set_input(item, "gid://shopify/Location/1", 1, None),
            ["input", "quantities", "0", "locationId"],
            "INVALID_LOCATION",
        ),
        (
            set_input(item, loc, -1, None),
            ["input", "quantities", "0", "quantity"],
            "INVALID_QUANTITY_NEGATIVE",
        ),
        (
            set_input(item, loc, 1, "omit"),
            ["input", "quantities", "0", "changeFromQuantity"],
            "COMPARE_QUANTITY_REQUIRED",
        ),
    ]
    for n, (inp, field, code) in enumerate(cases):
        out = gql(emulator, PARENT, SET, {"input": inp, "idempotencyKey": f"bad-{n}"})[
            "inventorySetQuantities"
        ]
        assert out["inventoryAdjustmentGroup"] is None
        assert (field, code) in [(e["field"], e["code"]) for e in out["userErrors"]], (n, out)
    dup = {
        "reason": "correction",
        "name": "available",
        "quantities": [
            {"inventoryItemId": item, "locationId": loc, "quantity": 1, "changeFromQuantity": None}
        ]
        * 2,
    }
    out = gql(emulator, PARENT, SET, {"input": dup, "idempotencyKey": "dup"})["inventorySetQuantities"]
    assert out["userErrors"][0]["code"] == "NO_DUPLICATE_INVENTORY_ITEM_ID_GROUP_ID_PAIR"
    assert available(emulator, PARENT, item, loc)["available"] == 10


def test_inventory_adjust_quantities_with_change_from_quantity(emulator):
    emulator.seed(PARENT, products=1, quantity=10)
    p = first_product(emulator)
    item = p["variants"]["nodes"][0]["inventoryItem"]["id"]
    change = {"inventoryItemId": item, "locationId": p["location"], "delta": -4, "changeFromQuantity": 10}
    inp = {"reason": "correction", "name": "available", "changes": [change]}
    ok = gql(emulator, PARENT, ADJUST, {"input": inp, "idempotencyKey": "a1"})["inventoryAdjustQuantities"]
    assert ok["userErrors"] == [] and ok["inventoryAdjustmentGroup"]["reason"] == "correction"
    stale = gql(emulator, PARENT, ADJUST, {"input": inp, "idempotencyKey": "a2"})["inventoryAdjustQuantities"]
    assert stale["userErrors"][0]["code"] == "CHANGE_FROM_QUANTITY_STALE"
    bad = gql(emulator, PARENT, ADJUST, {"input": {**inp, "name": "incoming"}, "idempotencyKey": "a3"})
    assert bad["inventoryAdjustQuantities"]["userErrors"][0]["code"] == "INVALID_QUANTITY_NAME"
    assert available(emulator, PARENT, item, p["location"])["available"] == 6


# --------------------------------------------------------------------------- collections


def test_collection_lifecycle_with_membership(emulator):
    emulator.seed(PARENT, products=2)
    pids = [
        n["id"] for n in gql(emulator, PARENT, "{ products(first: 2) { nodes { id } } }")["products"]["nodes"]
    ]
    created = gql(
        emulator,
        PARENT,
        (OPERATIONS / "collection_create.graphql").read_text(),
        {
            "collection": {
                "title": "Summer Sale",
                "sources": [
                    {"source": {"title": "Picks", "inclusion": {"selections": [{"productId": pids[0]}]}}}
                ],
            }
        },
    )["collectionCreate"]
    assert created["userErrors"] == [] and created["collection"]["handle"] == "summer-sale"
    cid = created["collection"]["id"]
    source = gql(emulator, PARENT, "query($id: ID!) { collection(id: $id) { sources { id } } }", {"id": cid})
    sid = source["collection"]["sources"][0]["id"]
    # The deprecated collectionAddProducts is still served (and adds to the same selections).
    add = gql(emulator, PARENT, LEGACY_ADD, {"id": cid, "productIds": pids})["collectionAddProducts"]
    assert add["userErrors"] == []
    members = (
        "query($id: ID!) { collection(id: $id) { title productsCount { count } "
        "products(first: 5) { nodes { id } } } }"
    )
    assert gql(emulator, PARENT, members, {"id": cid})["collection"]["productsCount"]["count"] == 2
    upd = gql(
        emulator,
        PARENT,
        (OPERATIONS / "collection_update.graphql").read_text(),
        {
            "collection": {
                "id": cid,
                "title": "Winter",
                "sourcesToUpdate": [
                    {"condition": {"id": sid, "inclusion": {"selectionsToRemove": [{"productId": pids[0]}]}}}
                ],
            }
        },
    )["collectionUpdate"]
    assert upd["userErrors"] == []
    c = gql(emulator, PARENT, members, {"id": cid})["collection"]
    assert c["title"] == "Winter" and c["products"]["nodes"] == [{"id": pids[1]}]
    deleted = gql(emulator, PARENT, (OPERATIONS / "collection_delete.graphql").read_text(), {"id": cid})
    assert deleted["collectionDelete"] == {"deletedCollectionId": cid, "userErrors": []}
    assert gql(emulator, PARENT, members, {"id": cid})["collection"] is None


LEGACY_ADD = """mutation($id: ID!, $productIds: [ID!]!) { collectionAddProducts(id: $id, productIds: $productIds) {
  collection { id } userErrors { field message } } }"""
LEGACY_REMOVE = """mutation($id: ID!, $productIds: [ID!]!) { collectionRemoveProducts(id: $id, productIds: $productIds) {
  job { id done } userErrors { field message } } }"""
LEGACY_UPDATE = """mutation($input: CollectionInput!) { collectionUpdate(input: $input) {
  collection { id } userErrors { field message } } }"""


def test_collection_user_errors(emulator):
    missing = "gid://shopify/Collection/424242"
    out = gql(
        emulator,
        PARENT,
        'mutation { collectionCreate(input: {title: ""}) { collection { id } '
        "userErrors { field message } } }",
    )["collectionCreate"]
    assert out["collection"] is None and out["userErrors"][0]["field"] == ["title"]
    update = (OPERATIONS / "collection_update.graphql").read_text()
    for query, variables, field in [
        (update, {"collection": {"id": missing, "title": "x"}}, ["collection", "id"]),
        (LEGACY_UPDATE, {"input": {"id": missing, "title": "x"}}, ["id"]),
        ((OPERATIONS / "collection_delete.graphql").read_text(), {"id": missing}, ["id"]),
        (LEGACY_ADD, {"id": missing, "productIds": []}, ["id"]),
        (LEGACY_REMOVE, {"id": missing, "productIds": []}, ["id"]),
    ]:
        body = gql(emulator, PARENT, query, variables)
        payload = next(iter(body.values()))
        assert payload["userErrors"][0]["field"] == field, query
    c = gql(emulator, PARENT, 'mutation { collectionCreate(collection: {title: "C"}) { collection { id } } }')
    cid = c["collectionCreate"]["collection"]["id"]
    out = gql(emulator, PARENT, LEGACY_ADD, {"id": cid, "productIds": ["gid://shopify/Product/424242"]})
    assert out["collectionAddProducts"]["userErrors"][0]["field"] == ["productIds", "0"]
    upd = gql(emulator, PARENT, LEGACY_UPDATE, {"input": {"id": cid, "products": []}})
    assert upd["collectionUpdate"]["userErrors"][0]["field"] == ["products"]
    wrong_source = gql(
        emulator,
        PARENT,
        update,
        {"collection": {"id": cid, "sourcesToDelete": ["gid://shopify/CollectionSource/1"]}},
    )
    assert wrong_source["collectionUpdate"]["userErrors"][0]["field"] == [
        "collection",
        "sourcesToDelete",
        "0",
    ]


# --------------------------------------------------------------------------- webhook subscriptions


def test_webhook_subscription_create_list_delete(emulator):
    create = (OPERATIONS / "webhook_subscription_create.graphql").read_text()
    sub = {"uri": "https://engine.example/webhooks", "format": "JSON"}
    out = gql(emulator, PARENT, create, {"topic": "PRODUCTS_UPDATE", "webhookSubscription": sub})
    created = out["webhookSubscriptionCreate"]
    assert created["userErrors"] == [] and created["webhookSubscription"]["topic"] == "PRODUCTS_UPDATE"
    dup = gql(emulator, PARENT, create, {"topic": "PRODUCTS_UPDATE", "webhookSubscription": sub})
    assert dup["webhookSubscriptionCreate"]["userErrors"][0]["field"] == ["webhookSubscription", "uri"]
    blank = gql(emulator, PARENT, create, {"topic": "PRODUCTS_UPDATE", "webhookSubscription": {"uri": "x"}})
    assert blank["webhookSubscriptionCreate"]["userErrors"][0]["message"] == "Address is invalid"
    control = gql(
        emulator, PARENT, create, {"topic": "PRODUCTS_UPDATE", "webhookSubscription": {"uri": "\x1f"}}
    )
    assert control["webhookSubscriptionCreate"]["userErrors"][0]["message"] == "Address is invalid"
    listed = gql(emulator, PARENT, (OPERATIONS / "webhook_subscriptions.graphql").read_text(), {"first": 10})
    nodes = listed["webhookSubscriptions"]["nodes"]
    assert [(n["topic"], n["uri"]) for n in nodes] == [("PRODUCTS_UPDATE", sub["uri"])]
    # Another store sees none of them.
    other = gql(
        emulator,
        "child-a.myshopify.com",
        (OPERATIONS / "webhook_subscriptions.graphql").read_text(),
        {"first": 10},
    )
    assert other["webhookSubscriptions"]["nodes"] == []
    delete = (OPERATIONS / "webhook_subscription_delete.graphql").read_text()
    sid = created["webhookSubscription"]["id"]
    deleted = gql(emulator, PARENT, delete, {"id": sid})["webhookSubscriptionDelete"]
    assert deleted["deletedWebhookSubscriptionId"] == sid
    again = gql(emulator, PARENT, delete, {"id": sid})["webhookSubscriptionDelete"]
    assert again["deletedWebhookSubscriptionId"] is None and again["userErrors"][0]["field"] == ["id"]


def test_idempotency_can_be_optional_as_before_2026_04():
    from tests.support.emulator import running_emulator

    with running_emulator([PARENT], require_idempotency=False, seed_products=1) as emu:
        p = first_product(emu)
        item = p["variants"]["nodes"][0]["inventoryItem"]["id"]
        out = gql(
            emu,
            PARENT,
            """mutation($input: InventorySetQuantitiesInput!) {
            inventorySetQuantities(input: $input) { userErrors { code } } }""",
            {"input": set_input(item, p["location"], 3, None)},
        )
        assert out["inventorySetQuantities"]["userErrors"] == []
        assert available(emu, PARENT, item, p["location"])["available"] == 3


def test_inventory_level_gid_resolves_as_a_node(emulator):
    emulator.seed(PARENT, products=1)
    p = first_product(emulator)
    item = p["variants"]["nodes"][0]["inventoryItem"]["id"]
    level = gql(
        emulator,
        PARENT,
        """query($i: ID!) { inventoryItem(id: $i) { inventoryLevels(first: 1) {
        nodes { id } } } }""",
        {"i": item},
    )["inventoryItem"]["inventoryLevels"]["nodes"][0]["id"]
    assert level.startswith("gid://shopify/InventoryLevel/") and "?inventory_item_id=" in level
    node = gql(
        emulator,
        PARENT,
        "query($id: ID!) { node(id: $id) { ... on InventoryLevel { item { id } } } }",
        {"id": level},
    )["node"]
    assert node == {"item": {"id": item}}


def test_a_stale_quantity_fails_its_whole_set_and_names_itself_and_input_arrays_stop_at_250(emulator):
    """inventorySetQuantities is one change: with one stale quantity nothing is set, and the
    error's field names the quantity ("the mutation fails with a CHANGE_FROM_QUANTITY_STALE
    error": https://shopify.dev/docs/api/admin-graphql/latest/mutations/inventorySetQuantities).
    Any input array over 250 items is refused (https://shopify.dev/docs/api/usage/limits#input-limits)."""
    emulator.seed(PARENT, products=3, variants_per_product=1, quantity=10)
    data = gql(
        emulator, PARENT, "{ inventoryItems(first: 3) { nodes { id } } locations(first: 1) { nodes { id } } }"
    )
    items = [n["id"] for n in data["inventoryItems"]["nodes"]]
    loc = data["locations"]["nodes"][0]["id"]
    quantities = [
        {"inventoryItemId": item, "locationId": loc, "quantity": 5, "changeFromQuantity": 10 if i != 1 else 9}
        for i, item in enumerate(items)
    ]
    inp = {"reason": "correction", "name": "available", "quantities": quantities}
    out = gql(emulator, PARENT, SET, {"input": inp, "idempotencyKey": "batch-1"})["inventorySetQuantities"]
    assert out["inventoryAdjustmentGroup"] is None
    assert [(e["field"], e["code"]) for e in out["userErrors"]] == [
        (["input", "quantities", "1", "changeFromQuantity"], "CHANGE_FROM_QUANTITY_STALE")
    ]
    assert [available(emulator, PARENT, i, loc)["available"] for i in items] == [10, 10, 10]
    # the batch mates, sent again under a new key, land
    inp["quantities"] = [quantities[0], quantities[2]]
    ok = gql(emulator, PARENT, SET, {"input": inp, "idempotencyKey": "batch-2"})["inventorySetQuantities"]
    assert ok["userErrors"] == []
    assert [available(emulator, PARENT, i, loc)["available"] for i in items] == [5, 10, 5]
    inp["quantities"] = [quantities[0]] * 251
    body = emulator.graphql(PARENT, SET, {"input": inp, "idempotencyKey": "batch-3"})
    assert "data" not in body and body["errors"][0]["extensions"]["code"] == "MAX_INPUT_SIZE_EXCEEDED"
