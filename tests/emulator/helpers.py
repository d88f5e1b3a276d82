"""Small helpers shared by the emulator-core tests (GraphQL over real HTTP)."""

from __future__ import annotations

from pathlib import Path

OPERATIONS = Path(__file__).resolve().parents[2] / "src" / "storesync" / "commerce" / "operations"
PARENT = "parent.myshopify.com"
CHILD = "child-a.myshopify.com"


def gql(emu, shop: str, query: str, variables: dict | None = None) -> dict:
    """`data` of a GraphQL call that must not fail with top-level errors."""
    body = emu.graphql(shop, query, variables)
    assert "errors" not in body, body["errors"]
    return body["data"]


def gql_errors(emu, shop: str, query: str, variables: dict | None = None) -> list[dict]:
    body = emu.graphql(shop, query, variables)
    assert body.get("errors"), f"expected errors, got {body}"
    return body["errors"]


def first_product(emu, shop: str = PARENT) -> dict:
    """The first seeded product with its variants, inventory items and the first location."""
    data = gql(
        emu,
        shop,
        """{
      products(first: 1) { nodes { id handle title updatedAt
        variants(first: 10) { nodes { id sku price inventoryItem { id } } } } }
      locations(first: 5) { nodes { id name } }
    }""",
    )
    product = data["products"]["nodes"][0]
    product["location"] = data["locations"]["nodes"][0]["id"]
    return product


def available(emu, shop: str, item_id: str, location_id: str) -> dict:
    data = gql(
        emu,
        shop,
        """query($i: ID!, $l: ID!) { inventoryItem(id: $i) { inventoryLevel(locationId: $l) {
        quantities(names: ["available", "on_hand", "committed"]) { name quantity } } } }""",
        {"i": item_id, "l": location_id},
    )
    return {q["name"]: q["quantity"] for q in data["inventoryItem"]["inventoryLevel"]["quantities"]}
