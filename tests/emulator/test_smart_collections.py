"""Smart collections in the emulator: rules (`ruleSet`) instead of members; membership computed
from the products on every read; manual membership refused, as Shopify does."""

from __future__ import annotations

from tests.emulator.helpers import OPERATIONS, PARENT, gql

SMART = """mutation($input: CollectionInput!) { collectionCreate(input: $input) {
  collection { id ruleSet { appliedDisjunctively rules { column relation condition } } }
  userErrors { field message } } }"""
PRODUCT_SET = """mutation($id: ID!, $input: ProductSetInput!) { productSet(identifier: {id: $id}, input: $input) {
  product { id } userErrors { field message } } }"""
MEMBERS = """query($id: ID!) { collection(id: $id) { productsCount { count } products(first: 10) { nodes { handle } } } }"""


def edit(emulator, product_id: str, **fields) -> None:
    out = gql(emulator, PARENT, PRODUCT_SET, {"id": product_id, "input": fields})["productSet"]
    assert out["userErrors"] == [], out


def members(emulator, cid: str) -> list[str]:
    return [
        n["handle"] for n in gql(emulator, PARENT, MEMBERS, {"id": cid})["collection"]["products"]["nodes"]
    ]


def test_a_smart_collection_takes_the_products_its_rules_match_as_they_change(emulator):
    emulator.seed(PARENT, products=3)
    products = gql(emulator, PARENT, "{ products(first: 3) { nodes { id handle } } }")["products"]["nodes"]
    edit(emulator, products[0]["id"], tags=["sale", "summer"])
    edit(emulator, products[1]["id"], tags=["winter"], vendor="Northwind")
    created = gql(
        emulator,
        PARENT,
        SMART,
        {
            "input": {
                "title": "Sale",
                "ruleSet": {
                    "appliedDisjunctively": True,
                    "rules": [
                        {"column": "TAG", "relation": "EQUALS", "condition": "Sale"},
                        {"column": "VENDOR", "relation": "STARTS_WITH", "condition": "north"},
                    ],
                },
            }
        },
    )
    coll = created["collectionCreate"]["collection"]
    assert coll["ruleSet"] == {
        "appliedDisjunctively": True,
        "rules": [
            {"column": "TAG", "relation": "EQUALS", "condition": "Sale"},
            {"column": "VENDOR", "relation": "STARTS_WITH", "condition": "north"},
        ],
    }
    assert members(emulator, coll["id"]) == [products[0]["handle"], products[1]["handle"]]
    edit(emulator, products[0]["id"], tags=["summer"])  # leaves by its rules
    assert members(emulator, coll["id"]) == [products[1]["handle"]]
    in_it = gql(
        emulator,
        PARENT,
        "query($id: ID!) { product(id: $id) { collections(first: 5) { nodes { id } } } }",
        {"id": products[1]["id"]},
    )["product"]["collections"]["nodes"]
    assert in_it == [{"id": coll["id"]}]
    # all rules (conjunctive): the vendor alone is not enough now
    gql(
        emulator,
        PARENT,
        (OPERATIONS / "collection_update.graphql").read_text(),
        {
            "input": {
                "id": coll["id"],
                "ruleSet": {
                    "appliedDisjunctively": False,
                    "rules": [
                        {"column": "TAG", "relation": "EQUALS", "condition": "winter"},
                        {"column": "VARIANT_PRICE", "relation": "GREATER_THAN", "condition": "100"},
                    ],
                },
            }
        },
    )
    assert members(emulator, coll["id"]) == []
    assert (
        next(c for c in emulator.snapshot(PARENT)["collections"] if c["admin_graphql_api_id"] == coll["id"])[
            "products"
        ]
        == []
    )


def test_manual_membership_of_a_smart_collection_and_converting_a_custom_one_are_refused(emulator):
    emulator.seed(PARENT, products=1)
    pid = gql(emulator, PARENT, "{ products(first: 1) { nodes { id } } }")["products"]["nodes"][0]["id"]
    rules = {
        "appliedDisjunctively": False,
        "rules": [{"column": "TITLE", "relation": "CONTAINS", "condition": "x"}],
    }
    smart = gql(emulator, PARENT, SMART, {"input": {"title": "Smart", "ruleSet": rules}})["collectionCreate"]
    cid = smart["collection"]["id"]
    add = gql(
        emulator,
        PARENT,
        (OPERATIONS / "collection_add_products.graphql").read_text(),
        {"id": cid, "productIds": [pid]},
    )["collectionAddProducts"]
    assert "smart collection" in add["userErrors"][0]["message"]
    put = gql(emulator, PARENT, PRODUCT_SET, {"id": pid, "input": {"collections": [cid]}})["productSet"]
    assert put["userErrors"][0]["field"] == ["input", "collections", "0"]
    both = gql(emulator, PARENT, SMART, {"input": {"title": "Both", "products": [pid], "ruleSet": rules}})
    assert both["collectionCreate"]["userErrors"][0]["field"] == ["products"]
    custom = gql(emulator, PARENT, SMART, {"input": {"title": "Custom"}})["collectionCreate"]["collection"]
    assert custom["ruleSet"] is None
    upd = gql(
        emulator,
        PARENT,
        (OPERATIONS / "collection_update.graphql").read_text(),
        {"input": {"id": custom["id"], "ruleSet": rules}},
    )["collectionUpdate"]
    assert upd["userErrors"][0]["field"] == ["ruleSet"]
    weight = gql(
        emulator,
        PARENT,
        SMART,
        {
            "input": {
                "title": "Heavy",
                "ruleSet": {
                    "appliedDisjunctively": False,
                    "rules": [{"column": "VARIANT_WEIGHT", "relation": "GREATER_THAN", "condition": "1"}],
                },
            }
        },
    )
    assert "does not evaluate" in weight["collectionCreate"]["userErrors"][0]["message"]
