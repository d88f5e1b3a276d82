"""Every document the engine sends validates against Shopify's published 2025-01 Admin schema,
patched by ONE explicit allowlist for the newer-version features the engine targets."""

from __future__ import annotations

import copy
import gzip
import json
from functools import cache
from pathlib import Path

import pytest
from graphql import (
    GraphQLSchema,
    build_client_schema,
    parse,
    validate,
)
from graphql.execution.values import get_variable_values

from storesync.commerce.operations import (
    OperationError,
    _parse,
    all_fragments,
    all_operations,
    camel_to_snake,
)
from storesync.commerce.throttle import static_cost
from storesync.commerce.variables import adjust_quantities_input, set_quantities_input

SCHEMA_FILE = Path("/work/shared/shopify/admin_schema_2025-01.json.gz")
OPERATIONS_DIR = Path(__file__).resolve().parents[2] / "src" / "storesync" / "commerce" / "operations"


def _named(name: str) -> dict:
    return {
        "kind": "SCALAR" if name in ("ID", "String", "Int", "Boolean") else "INPUT_OBJECT",
        "name": name,
        "ofType": None,
    }


def _non_null(t: dict) -> dict:
    return {"kind": "NON_NULL", "name": None, "ofType": t}


def _input_value(name: str, type_: dict, description: str) -> dict:
    return {
        "name": name,
        "description": description,
        "type": type_,
        "defaultValue": None,
        "isDeprecated": False,
        "deprecationReason": None,
    }


# ---- THE allowlist: what API versions after 2025-01 changed that the engine relies on. ----
def _patch_post_2025_01(data: dict) -> dict:
    schema = data["data"]["__schema"]
    types = {t["name"]: t for t in schema["types"]}
    # 2025-04: productSet(identifier: ProductSetIdentifiers) upserts by id, handle or customId.
    schema["types"].append(
        {
            "kind": "INPUT_OBJECT",
            "name": "ProductSetIdentifiers",
            "description": "allowlist: 2025-04",
            "fields": None,
            "interfaces": None,
            "enumValues": None,
            "possibleTypes": None,
            "inputFields": [
                _input_value("id", _named("ID"), ""),
                _input_value("handle", _named("String"), ""),
                _input_value("customId", _named("UniqueMetafieldValueInput"), ""),
            ],
        }
    )
    product_set = next(f for f in types["Mutation"]["fields"] if f["name"] == "productSet")
    product_set["args"].append(_input_value("identifier", _named("ProductSetIdentifiers"), "allowlist"))
    # 2026-04: changeFromQuantity (compare-and-set) replaces compareQuantity / ignoreCompareQuantity.
    for type_name in ("InventoryQuantityInput", "InventoryChangeInput"):
        fields = types[type_name]["inputFields"]
        fields[:] = [f for f in fields if f["name"] != "compareQuantity"]
        fields.append(_input_value("changeFromQuantity", _named("Int"), "allowlist: 2026-04"))
    set_input = types["InventorySetQuantitiesInput"]["inputFields"]
    set_input[:] = [f for f in set_input if f["name"] != "ignoreCompareQuantity"]
    # 2026-04: @idempotent(key: String!) on the inventory mutations.
    schema["directives"].append(
        {
            "name": "idempotent",
            "description": "allowlist: 2026-04",
            "isRepeatable": False,
            "locations": ["FIELD"],
            "args": [_input_value("key", _non_null(_named("String")), "")],
        }
    )
    return data


@cache
def _introspection() -> dict:
    with gzip.open(SCHEMA_FILE, "rt", encoding="utf-8") as f:
        return json.load(f)


def _build(data: dict) -> GraphQLSchema:
    schema = build_client_schema(data["data"])
    # Shopify's schema breaks a graphql-core rule about deprecated interface fields (see README).
    schema._validation_errors = []
    return schema


@cache
def published_schema() -> GraphQLSchema:
    return _build(_introspection())


@cache
def target_schema() -> GraphQLSchema:
    return _build(_patch_post_2025_01(copy.deepcopy(_introspection())))


OPERATIONS = sorted(all_operations().values(), key=lambda op: op.name)


def test_every_operation_file_is_loaded_and_named_after_its_operation():
    files = sorted(p.stem for p in OPERATIONS_DIR.glob("*.graphql"))
    assert files == sorted(op.stem for op in OPERATIONS)
    for op in OPERATIONS:
        assert camel_to_snake(op.name) == op.stem


@pytest.mark.parametrize("op", OPERATIONS, ids=lambda op: op.name)
def test_operation_validates_against_the_target_schema(op):
    errors = validate(target_schema(), op.document)
    assert not errors, "\n".join(e.message for e in errors)


@pytest.mark.parametrize("op", OPERATIONS, ids=lambda op: op.name)
def test_operation_needs_the_allowlist_only_for_the_listed_changes(op):
    """Against the unpatched 2025-01 schema, the only complaints are the allowlisted features."""
    allowed = (
        "Unknown directive '@idempotent'",
        "Unknown argument 'identifier' on field 'Mutation.productSet'",
        "Unknown type 'ProductSetIdentifiers'",
    )
    errors = [e.message for e in validate(published_schema(), op.document)]
    assert all(msg.startswith(allowed) for msg in errors), errors


def test_inventory_mutations_declare_an_idempotency_key():
    for name in ("InventorySetQuantities", "InventoryAdjustQuantities"):
        op = all_operations()[name]
        assert op.needs_idempotency_key
        assert "@idempotent(key: $idempotencyKey)" in op.text


def test_product_set_upserts_by_identifier_synchronously():
    op = all_operations()["ProductSet"]
    assert "identifier: $identifier" in op.text and "synchronous: true" in op.text


def _coerce(op_name: str, variables: dict) -> dict:
    op = all_operations()[op_name]
    result = get_variable_values(target_schema(), op.definition.variable_definitions, variables)
    assert not isinstance(result, list), [e.message for e in result]
    return result.coerced


def test_set_quantities_variables_carry_change_from_quantity_per_quantity():
    input_ = set_quantities_input(
        [
            ("gid://shopify/InventoryItem/1", "gid://shopify/Location/1", 7, 5),
            ("gid://shopify/InventoryItem/2", "gid://shopify/Location/1", 3, None),
        ],
        reason="correction",
        reference_document_uri="storesync://job/1",
    )
    coerced = _coerce("InventorySetQuantities", {"input": input_, "idempotencyKey": "k"})
    quantities = coerced["input"]["quantities"]
    assert [q["changeFromQuantity"] for q in quantities] == [5, None]
    assert coerced["input"]["name"] == "available"


def test_set_quantities_variables_are_rejected_by_the_published_schema():
    """The allowlist is needed: 2025-01 has no changeFromQuantity (so the check above can fail)."""
    op = all_operations()["InventorySetQuantities"]
    input_ = set_quantities_input(
        [("gid://shopify/InventoryItem/1", "gid://shopify/Location/1", 7, 5)], reason="correction"
    )
    result = get_variable_values(
        published_schema(), op.definition.variable_definitions, {"input": input_, "idempotencyKey": "k"}
    )
    assert isinstance(result, list) and "changeFromQuantity" in result[0].message


def test_adjust_quantities_variables_coerce():
    input_ = adjust_quantities_input(
        [("gid://shopify/InventoryItem/1", "gid://shopify/Location/1", -2)],
        reason="correction",
    )
    coerced = _coerce("InventoryAdjustQuantities", {"input": input_, "idempotencyKey": "k"})
    assert coerced["input"]["changes"][0]["delta"] == -2


# --------------------------------------------------------------------------- shared fragments


def test_every_shared_fragment_is_used_and_sent_with_the_operations_that_spread_it():
    fragments = all_fragments()
    assert fragments, "operations/fragments/ holds the shared selections"
    for name in fragments:
        users = [op for op in OPERATIONS if f"...{name}" in op.text]
        assert users, f"fragment {name} is spread by no operation"
        for op in users:
            assert op.text.count(f"fragment {name} on") == 1
            assert set(op.fragments) >= {name}


def test_operations_reading_products_share_one_selection():
    # The four documents that read a whole product spread the same fragment instead of
    # repeating its ~65 lines; what they select is therefore the same by construction.
    for name in ("ProductById", "ProductByHandle", "ProductsPage", "ProductSet"):
        assert "...ProductSyncFields" in all_operations()[name].text


def test_a_spread_costs_what_its_fields_cost_inline():
    fragment = {"Fields": ("fragment Fields on Product { id variants(first: $n) { nodes { id } } }", None)}
    fragment["Fields"] = (fragment["Fields"][0], parse(fragment["Fields"][0]).definitions[0])
    spread = _parse(
        "spread_probe", 'query SpreadProbe($n: Int!) { product(id: "1") { ...Fields } }', fragment
    )
    inline = _parse(
        "inline_probe",
        'query InlineProbe($n: Int!) { product(id: "1") { id variants(first: $n) { nodes { id } } } }',
    )
    assert static_cost(spread, {"n": 7}) == static_cost(inline, {"n": 7}) == 1 + 2 + 7 * 1


def test_an_unknown_fragment_or_a_fragment_in_an_operation_file_is_refused():
    with pytest.raises(OperationError, match="unknown fragment 'Nope'"):
        _parse("unknown_probe", 'query UnknownProbe { product(id: "1") { ...Nope } }', {})
    with pytest.raises(OperationError, match="exactly one operation"):
        _parse(
            "inline_def_probe",
            'query InlineDefProbe { product(id: "1") { ...F } } fragment F on Product { id }',
        )
