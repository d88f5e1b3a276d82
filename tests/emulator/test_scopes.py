"""Access scopes enforced per store (emulator/scopes.py), as Shopify refuses what the app may not
touch: the field is null and the error is ACCESS_DENIED with the scope it needs."""

from __future__ import annotations

from tests.emulator.helpers import OPERATIONS, PARENT, first_product


def test_a_mutation_or_field_without_its_scope_is_refused_as_shopify_refuses_it(emulator):
    emulator.seed(PARENT, products=1, quantity=10)
    p = first_product(emulator)
    item = p["variants"]["nodes"][0]["inventoryItem"]["id"]
    emulator.configure_app(PARENT, scopes=["read_products", "write_products"])
    change = {"inventoryItemId": item, "locationId": p["location"], "quantity": 3, "changeFromQuantity": 10}
    body = emulator.graphql(
        PARENT,
        (OPERATIONS / "inventory_set_quantities.graphql").read_text(),
        {
            "input": {"reason": "correction", "name": "available", "quantities": [change]},
            "idempotencyKey": "k",
        },
    )
    assert body["data"] == {"inventorySetQuantities": None}
    [error] = body["errors"]
    assert error["path"] == ["inventorySetQuantities"]
    assert error["message"] == (
        "Access denied for inventorySetQuantities field. Required access: `write_inventory` access scope."
    )
    assert error["extensions"] == {
        "code": "ACCESS_DENIED",
        "documentation": "https://shopify.dev/api/usage/access-scopes",
        "requiredAccess": "`write_inventory` access scope.",
    }
    assert "cost" in body["extensions"]
    # A read: the product is readable, its stock is not.
    read = emulator.graphql(
        PARENT,
        "query($id: ID!) { inventoryItem(id: $id) { id inventoryLevels(first: 1) { nodes { id } } } }",
        {"id": item},
    )
    assert read["data"]["inventoryItem"] is None  # the non-null connection's null reaches its parent
    assert read["errors"][0]["path"] == ["inventoryItem", "inventoryLevels"]
    assert read["errors"][0]["extensions"]["code"] == "ACCESS_DENIED"
    # What needs no scope still answers, and lists what is granted.
    scopes = emulator.graphql(PARENT, "{ currentAppInstallation { accessScopes { handle } } }")
    assert [s["handle"] for s in scopes["data"]["currentAppInstallation"]["accessScopes"]] == [
        "read_products",
        "write_products",
    ]
