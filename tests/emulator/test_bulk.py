"""Bulk query operations over real HTTP: JSONL in Shopify's flattened shape, status steps,
one running query per shop, faults."""

from __future__ import annotations

import json

import httpx

from tests.emulator.helpers import PARENT, gql

RUN = """mutation($q: String!) { bulkOperationRunQuery(query: $q) {
  bulkOperation { id status type } userErrors { field message code } } }"""
CURRENT = """{ currentBulkOperation { id status errorCode objectCount rootObjectCount fileSize url } }"""
CATALOG = """{ products { edges { node { id title
  variants { edges { node { id sku inventoryItem { id } } } }
  collections { edges { node { id handle } } } } } } }"""


def run(emu, query: str, shop: str = PARENT) -> dict:
    return gql(emu, shop, RUN, {"q": query})["bulkOperationRunQuery"]


def finish(emu, shop: str = PARENT) -> tuple[list[str], dict]:
    """Poll currentBulkOperation to a final status: (statuses seen, final operation)."""
    seen = []
    for _ in range(10):
        op = gql(emu, shop, CURRENT)["currentBulkOperation"]
        seen.append(op["status"])
        if op["status"] not in ("CREATED", "RUNNING"):
            return seen, op
    raise AssertionError(f"bulk operation never finished: {seen}")


def lines(url: str) -> list[dict]:
    resp = httpx.get(url, timeout=10)
    resp.raise_for_status()
    return [json.loads(line) for line in resp.text.splitlines()]


def test_bulk_query_goes_created_running_completed_and_serves_every_product_flattened(emulator):
    emulator.seed(PARENT, products=300, variants_per_product=2)  # more than one page of 250
    coll = gql(
        emulator,
        PARENT,
        """mutation($p: [ID!]) { collectionCreate(input: {title: "Sale", products: $p}) {
        collection { id } userErrors { message } } }""",
        {
            "p": [
                gql(emulator, PARENT, "{ products(first: 1) { nodes { id } } }")["products"]["nodes"][0]["id"]
            ]
        },
    )
    coll_id = coll["collectionCreate"]["collection"]["id"]

    started = run(emulator, CATALOG)
    assert started["userErrors"] == []
    assert started["bulkOperation"]["status"] == "CREATED" and started["bulkOperation"]["type"] == "QUERY"
    seen, op = finish(emulator)
    assert seen == ["RUNNING", "COMPLETED"]
    assert op["id"] == started["bulkOperation"]["id"] and op["errorCode"] is None

    objects = lines(op["url"])
    products = [o for o in objects if "__parentId" not in o]
    variants = [o for o in objects if o["id"].startswith("gid://shopify/ProductVariant/")]
    collections = [o for o in objects if o["id"].startswith("gid://shopify/Collection/")]
    assert len(products) == 300 and len(variants) == 600 and len(collections) == 1
    assert op["rootObjectCount"] == "300" and op["objectCount"] == str(len(objects))
    assert int(op["fileSize"]) == len(httpx.get(op["url"]).content)
    # each child comes after its parent, points at it, keeps inline objects, loses its connections
    position = {o["id"]: i for i, o in enumerate(objects)}
    for child in variants + collections:
        assert position[child["__parentId"]] < position[child["id"]]
    assert all("variants" not in p and "collections" not in p for p in products)
    assert variants[0]["inventoryItem"]["id"].startswith("gid://shopify/InventoryItem/")
    assert collections[0] == {"id": coll_id, "handle": "sale", "__parentId": products[0]["id"]}


def test_node_lookup_observes_the_bulk_operation_too(emulator):
    emulator.seed(PARENT, products=2)
    op_id = run(emulator, "{ products { nodes { id } } }")["bulkOperation"]["id"]
    node = """query($id: ID!) { node(id: $id) { ... on BulkOperation { id status url } } }"""
    assert gql(emulator, PARENT, node, {"id": op_id})["node"]["status"] == "RUNNING"
    done = gql(emulator, PARENT, node, {"id": op_id})["node"]
    assert done["status"] == "COMPLETED"
    assert [o["id"] for o in lines(done["url"])] == [
        p["id"] for p in gql(emulator, PARENT, "{ products(first: 5) { nodes { id } } }")["products"]["nodes"]
    ]


def test_a_sixth_bulk_query_while_five_run_is_refused_with_operation_in_progress(emulator):
    emulator.seed(PARENT, products=1)
    for _ in range(5):  # 2026-01+: five at a time per shop
        assert run(emulator, "{ products { nodes { id } } }")["userErrors"] == []
    refused = run(emulator, "{ products { nodes { id } } }")
    assert refused["bulkOperation"] is None
    assert refused["userErrors"][0]["code"] == "OPERATION_IN_PROGRESS"
    finish(emulator)
    assert run(emulator, "{ products { nodes { id } } }")["userErrors"] == []
    # another shop is not affected by this one's running query
    assert run(emulator, "{ products { nodes { id } } }", shop="child-a.myshopify.com")["userErrors"] == []


def test_invalid_bulk_queries_are_user_errors_and_start_nothing(emulator):
    for query in (
        "{ shop { name } }",
        "{ products { nodes { nope } } }",
        "not graphql",
        "{ products { nodes { title variants { nodes { id } } } } }",
    ):
        out = run(emulator, query)
        assert out["bulkOperation"] is None and out["userErrors"][0]["code"] == "INVALID", (query, out)
        assert out["userErrors"][0]["field"] == ["query"]
    assert gql(emulator, PARENT, CURRENT)["currentBulkOperation"] is None


def test_a_bulk_fault_ends_the_next_operation_failed_without_a_url(emulator):
    emulator.seed(PARENT, products=1)
    emulator.set_bulk_fault(PARENT, "FAILED", "TIMEOUT")
    run(emulator, "{ products { nodes { id } } }")
    seen, op = finish(emulator)
    assert seen[-1] == "FAILED" and op["errorCode"] == "TIMEOUT" and op["url"] is None
    # one-shot: the next operation completes
    run(emulator, "{ products { nodes { id } } }")
    assert finish(emulator)[1]["status"] == "COMPLETED"


def test_run_query_costs_ten_points_like_other_mutations(emulator):
    body = emulator.graphql(
        PARENT,
        'mutation { bulkOperationRunQuery(query: "{ products { nodes { id } } }") '
        "{ userErrors { message } } }",
    )
    other = emulator.graphql(
        PARENT,
        'mutation { webhookSubscriptionDelete(id: "gid://shopify/WebhookSubscription/1") '
        "{ userErrors { message } } }",
    )
    # 10 for the mutation plus the payload's selected objects, the same as any other mutation
    assert (
        body["extensions"]["cost"]["requestedQueryCost"] == other["extensions"]["cost"]["requestedQueryCost"]
    )
    assert 10 <= body["extensions"]["cost"]["requestedQueryCost"] <= 11
