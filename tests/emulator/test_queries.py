"""Reads: pagination, search syntax, node lookups and Shopify's errors for bad arguments."""

from __future__ import annotations

from tests.emulator.helpers import OPERATIONS, PARENT, first_product, gql, gql_errors

PAGE = """query($first: Int, $after: String, $last: Int, $before: String, $reverse: Boolean) {
  products(first: $first, after: $after, last: $last, before: $before, reverse: $reverse) {
    nodes { handle } pageInfo { hasNextPage hasPreviousPage startCursor endCursor } } }"""


def test_products_paginate_forward_and_backward_with_cursors(emulator):
    emulator.seed(PARENT, products=5)
    p1 = gql(emulator, PARENT, PAGE, {"first": 2})["products"]
    assert [n["handle"] for n in p1["nodes"]] == ["product-1", "product-2"]
    assert p1["pageInfo"]["hasNextPage"] and not p1["pageInfo"]["hasPreviousPage"]
    p2 = gql(emulator, PARENT, PAGE, {"first": 2, "after": p1["pageInfo"]["endCursor"]})["products"]
    assert [n["handle"] for n in p2["nodes"]] == ["product-3", "product-4"]
    assert p2["pageInfo"]["hasNextPage"] and p2["pageInfo"]["hasPreviousPage"]
    p3 = gql(emulator, PARENT, PAGE, {"first": 2, "after": p2["pageInfo"]["endCursor"]})["products"]
    assert [n["handle"] for n in p3["nodes"]] == ["product-5"] and not p3["pageInfo"]["hasNextPage"]
    back = gql(emulator, PARENT, PAGE, {"last": 2, "before": p3["pageInfo"]["startCursor"]})["products"]
    assert [n["handle"] for n in back["nodes"]] == ["product-3", "product-4"]
    rev = gql(emulator, PARENT, PAGE, {"first": 1, "reverse": True})["products"]
    assert [n["handle"] for n in rev["nodes"]] == ["product-5"]


def test_connection_without_first_or_last_or_above_250_is_an_error(emulator):
    errors = gql_errors(emulator, PARENT, "{ products { nodes { id } } }")
    assert "first or last" in errors[0]["message"]
    errors = gql_errors(emulator, PARENT, "{ products(first: 251) { nodes { id } } }")
    assert "250" in errors[0]["message"]


def test_search_by_sku_handle_and_updated_at(emulator):
    emulator.seed(PARENT, products=3)
    q = "query($q: String!) { products(first: 10, query: $q) { nodes { handle } } }"
    assert gql(emulator, PARENT, q, {"q": "sku:PARENT-2-M"})["products"]["nodes"] == [{"handle": "product-2"}]
    assert gql(emulator, PARENT, q, {"q": "handle:product-3"})["products"]["nodes"] == [
        {"handle": "product-3"}
    ]
    assert gql(emulator, PARENT, q, {"q": 'sku:"NOPE-1"'})["products"]["nodes"] == []
    assert len(gql(emulator, PARENT, q, {"q": "updated_at:>2000-01-01T00:00:00Z"})["products"]["nodes"]) == 3
    assert gql(emulator, PARENT, q, {"q": "updated_at:>2999-01-01T00:00:00Z"})["products"]["nodes"] == []
    assert gql(emulator, PARENT, q, {"q": "handle:product-1 sku:PARENT-2-S"})["products"]["nodes"] == []


def test_node_and_nodes_resolve_each_type_and_unknown_ids_to_null(emulator):
    emulator.seed(PARENT, products=1)
    p = first_product(emulator)
    item = p["variants"]["nodes"][0]["inventoryItem"]["id"]
    data = gql(
        emulator,
        PARENT,
        """query($ids: [ID!]!) { nodes(ids: $ids) { __typename id } }""",
        {
            "ids": [
                p["id"],
                p["variants"]["nodes"][0]["id"],
                item,
                p["location"],
                "gid://shopify/Product/999999",
            ]
        },
    )
    assert [n and n["__typename"] for n in data["nodes"]] == [
        "Product",
        "ProductVariant",
        "InventoryItem",
        "Location",
        None,
    ]
    errors = gql_errors(emulator, PARENT, '{ node(id: "not-a-gid") { id } }')
    assert "Invalid global id" in errors[0]["message"]


def test_ids_of_one_store_do_not_resolve_in_another(emulator):
    emulator.seed(PARENT, products=1)
    p = first_product(emulator)
    data = gql(
        emulator, "child-a.myshopify.com", "query($id: ID!) { product(id: $id) { id } }", {"id": p["id"]}
    )
    assert data["product"] is None


def test_engine_inventory_levels_operation_reads_quantities(emulator):
    emulator.seed(PARENT, products=1, quantity=7)
    p = first_product(emulator)
    items = [v["inventoryItem"]["id"] for v in p["variants"]["nodes"]]
    data = gql(
        emulator,
        PARENT,
        (OPERATIONS / "inventory_levels.graphql").read_text(),
        {"inventoryItemIds": items, "locationsFirst": 5},
    )
    level = data["nodes"][0]["inventoryLevels"]["nodes"][0]
    assert level["location"]["id"] == p["location"]
    assert {q["name"]: q["quantity"] for q in level["quantities"]} == {
        "available": 7,
        "on_hand": 7,
        "committed": 0,
    }


def test_product_by_identifier_and_counts(emulator):
    emulator.seed(PARENT, products=2)
    data = gql(
        emulator,
        PARENT,
        """{ productByIdentifier(identifier: {handle: "product-2"}) { handle
        variantsCount { count } hasOnlyDefaultVariant totalInventory }
        productsCount(query: "sku:PARENT-1-S") { count precision } }""",
    )
    assert data["productByIdentifier"] == {
        "handle": "product-2",
        "variantsCount": {"count": 2},
        "hasOnlyDefaultVariant": False,
        "totalInventory": 20,
    }
    assert data["productsCount"] == {"count": 1, "precision": "EXACT"}


def test_invalid_quantity_name_is_an_error_not_a_crash(emulator):
    emulator.seed(PARENT, products=1)
    p = first_product(emulator)
    body = emulator.graphql(
        PARENT,
        """query($i: ID!) { inventoryItem(id: $i) { inventoryLevels(first: 1) {
        nodes { quantities(names: ["bogus"]) { quantity } } } } }""",
        {"i": p["variants"]["nodes"][0]["inventoryItem"]["id"]},
    )
    assert "bogus" in body["errors"][0]["message"]


def test_syntax_and_validation_errors_answer_200_with_errors_and_cost(emulator):
    body = emulator.graphql(PARENT, "{ shop { nope } }")
    assert "nope" in body["errors"][0]["message"] and "cost" in body["extensions"]
    body = emulator.graphql(PARENT, "{ shop { ")
    assert body["errors"] and "data" not in body
