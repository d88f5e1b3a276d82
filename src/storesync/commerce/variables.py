"""Builders for the variables of the mutations whose inputs carry post-2025-01 fields, so every
caller sends the same shape (the document test coerces their output against the target schema)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

# (inventory item gid, location gid, new quantity, quantity we believe the store has now or None)
SetQuantity = tuple[str, str, int, int | None]
# (inventory item gid, location gid, delta) or (..., delta, quantity we believe the store has now)
Change = tuple[str, str, int] | tuple[str, str, int, int | None]


def set_quantities_input(
    quantities: Iterable[SetQuantity],
    *,
    reason: str,
    name: str = "available",
    reference_document_uri: str | None = None,
) -> dict[str, Any]:
    """`InventorySetQuantitiesInput`. Since 2026-04 every quantity must carry `changeFromQuantity`:
    the quantity we read (compare-and-set; a mismatch is `StaleQuantityError`), or an explicit
    null to opt out of the check."""
    input_: dict[str, Any] = {
        "name": name,
        "reason": reason,
        "quantities": [
            {
                "inventoryItemId": item,
                "locationId": location,
                "quantity": quantity,
                "changeFromQuantity": change_from,
            }
            for item, location, quantity, change_from in quantities
        ],
    }
    if reference_document_uri:
        input_["referenceDocumentUri"] = reference_document_uri
    return input_


def adjust_quantities_input(
    changes: Iterable[Change],
    *,
    reason: str,
    name: str = "available",
    reference_document_uri: str | None = None,
) -> dict[str, Any]:
    """`InventoryAdjustQuantitiesInput`. A delta commutes with concurrent sales, so by default it
    opts out of compare-and-set (explicit null `changeFromQuantity`); give a 4th element to make
    it conditional. The idempotency key stops it applying twice."""
    input_: dict[str, Any] = {
        "name": name,
        "reason": reason,
        "changes": [
            {
                "inventoryItemId": c[0],
                "locationId": c[1],
                "delta": c[2],
                "changeFromQuantity": c[3] if len(c) > 3 else None,
            }
            for c in changes
        ],
    }
    if reference_document_uri:
        input_["referenceDocumentUri"] = reference_document_uri
    return input_
