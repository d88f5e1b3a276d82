"""Smart collections in the emulator (Admin API 2026-10): a conditions source instead of listed
members; membership computed from the products on every read; manual membership of a smart
collection refused, as Shopify does. The deprecated `ruleSet` shows the same conditions."""

from __future__ import annotations

from tests.emulator.helpers import OPERATIONS, PARENT, gql

CREATE = """mutation($c: CollectionCreateInput!) { collectionCreate(collection: $c) {
  collection { id ruleSet { appliedDisjunctively rules { column relation condition } }
    sources { id ... on CollectionConditionsSource { inclusion { matchType conditions { id
      ... on CollectionSourceInclusionConditionProductTag { matchType tagRelation: relation values }
      ... on CollectionSourceInclusionConditionProductVendor { vendorRelation: relation values } } } } } }
  userErrors { field message } } }"""
LEGACY_CREATE = """mutation($input: CollectionInput!) { collectionCreate(input: $input) {
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


def source(match: str, *conditions: dict) -> dict:
    return {"source": {"title": "Rules", "inclusion": {"matchType": match, "conditions": list(conditions)}}}


TAGGED_SALE = {"productTag": {"matchType": "ANY", "relation": "TAGGED_WITH", "values": ["Sale"]}}
VENDOR_NORTH = {"productVendor": {"matchType": "ANY", "relation": "STARTS_WITH", "values": ["north"]}}


def test_a_smart_collection_takes_the_products_its_conditions_match_as_they_change(emulator):
    emulator.seed(PARENT, products=3)
    products = gql(emulator, PARENT, "{ products(first: 3) { nodes { id handle } } }")["products"]["nodes"]
    edit(emulator, products[0]["id"], tags=["sale", "summer"])
    edit(emulator, products[1]["id"], tags=["winter"], vendor="Northwind")
    created = gql(
        emulator,
        PARENT,
        CREATE,
        {"c": {"title": "Sale", "sources": [source("ANY", TAGGED_SALE, VENDOR_NORTH)]}},
    )["collectionCreate"]
    assert created["userErrors"] == []
    coll = created["collection"]
    inclusion = coll["sources"][0]["inclusion"]
    assert inclusion["matchType"] == "ANY"
    assert [c.get("tagRelation") or c.get("vendorRelation") for c in inclusion["conditions"]] == [
        "TAGGED_WITH",
        "STARTS_WITH",
    ]
    # The deprecated view of the same conditions: one rule each.
    assert coll["ruleSet"] == {
        "appliedDisjunctively": True,
        "rules": [
            {"column": "TAG", "relation": "EQUALS", "condition": "Sale"},
            {"column": "VENDOR", "relation": "STARTS_WITH", "condition": "north"},
        ],
    }
    assert members(emulator, coll["id"]) == [products[0]["handle"], products[1]["handle"]]
    edit(emulator, products[0]["id"], tags=["summer"])  # leaves by its conditions
    assert members(emulator, coll["id"]) == [products[1]["handle"]]
    in_it = gql(
        emulator,
        PARENT,
        "query($id: ID!) { product(id: $id) { collections(first: 5) { nodes { id } } } }",
        {"id": products[1]["id"]},
    )["product"]["collections"]["nodes"]
    assert in_it == [{"id": coll["id"]}]
    # The source replaced: all conditions (conjunctive), the vendor alone is not enough now.
    winter_over_100 = source(
        "ALL",
        {"productTag": {"matchType": "ANY", "relation": "TAGGED_WITH", "values": ["winter"]}},
        {"variantPrice": {"relation": "GREATER_THAN", "value": {"amount": "100", "currencyCode": "USD"}}},
    )
    upd = gql(
        emulator,
        PARENT,
        (OPERATIONS / "collection_update.graphql").read_text(),
        {
            "collection": {
                "id": coll["id"],
                "sourcesToDelete": [coll["sources"][0]["id"]],
                "sourcesToCreate": [winter_over_100],
            }
        },
    )["collectionUpdate"]
    assert upd["userErrors"] == []
    assert members(emulator, coll["id"]) == []
    assert (
        next(c for c in emulator.snapshot(PARENT)["collections"] if c["admin_graphql_api_id"] == coll["id"])[
            "products"
        ]
        == []
    )


def test_manual_membership_of_a_smart_collection_and_unknown_conditions_are_refused(emulator):
    emulator.seed(PARENT, products=1)
    pid = gql(emulator, PARENT, "{ products(first: 1) { nodes { id } } }")["products"]["nodes"][0]["id"]
    title_x = {"productTitle": {"matchType": "ANY", "relation": "CONTAINS", "values": ["x"]}}
    smart = gql(emulator, PARENT, CREATE, {"c": {"title": "Smart", "sources": [source("ALL", title_x)]}})
    cid = smart["collectionCreate"]["collection"]["id"]
    put = gql(emulator, PARENT, PRODUCT_SET, {"id": pid, "input": {"collections": [cid]}})["productSet"]
    assert put["userErrors"][0]["field"] == ["input", "collections", "0"]
    rules = {
        "appliedDisjunctively": False,
        "rules": [{"column": "TITLE", "relation": "CONTAINS", "condition": "x"}],
    }
    both = gql(
        emulator, PARENT, LEGACY_CREATE, {"input": {"title": "Both", "products": [pid], "ruleSet": rules}}
    )
    assert both["collectionCreate"]["userErrors"][0]["field"] == ["products"]
    weight = gql(
        emulator,
        PARENT,
        LEGACY_CREATE,
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
    tagless = gql(
        emulator,
        PARENT,
        CREATE,
        {
            "c": {
                "title": "Tagless",
                "sources": [
                    source(
                        "ALL", {"productTag": {"matchType": "ANY", "relation": "TAGGED_WITH", "values": []}}
                    )
                ],
            }
        },
    )["collectionCreate"]
    assert tagless["collection"] is None and "at least one value" in tagless["userErrors"][0]["message"]
