"""Every document the engine sends validates against Shopify's own Admin API 2026-10 schema
(`tests/support/shopify_schema.py`), with nothing tolerated, and uses no field, argument, input
field or enum value that 2026-10 deprecates - including the input fields the engine fills
through variables."""

from __future__ import annotations

from pathlib import Path

import pytest
from graphql import GraphQLSchema, parse, validate
from graphql.execution.values import get_variable_values
from graphql.utilities import type_from_ast

from storesync.commerce.bulk import bulk_query_text
from storesync.commerce.operations import (
    OperationError,
    _parse,
    all_fragments,
    all_operations,
    camel_to_snake,
)
from storesync.commerce.throttle import static_cost
from storesync.commerce.variables import adjust_quantities_input, set_quantities_input
from tests.support.shopify_schema import admin_schema, deprecated_in_document, deprecated_in_value

OPERATIONS_DIR = Path(__file__).resolve().parents[2] / "src" / "storesync" / "commerce" / "operations"
BULK_QUERIES = ("products", "inventory_levels")


def target_schema() -> GraphQLSchema:
    return admin_schema()


OPERATIONS = sorted(all_operations().values(), key=lambda op: op.name)


def test_every_operation_file_is_loaded_and_named_after_its_operation():
    files = sorted(p.stem for p in OPERATIONS_DIR.glob("*.graphql"))
    assert files == sorted(op.stem for op in OPERATIONS)
    for op in OPERATIONS:
        assert camel_to_snake(op.name) == op.stem


@pytest.mark.parametrize("op", OPERATIONS, ids=lambda op: op.name)
def test_operation_validates_against_the_2026_10_schema(op):
    errors = validate(target_schema(), op.document)
    assert not errors, "\n".join(e.message for e in errors)


@pytest.mark.parametrize("op", OPERATIONS, ids=lambda op: op.name)
def test_operation_uses_nothing_2026_10_deprecates(op):
    assert deprecated_in_document(target_schema(), op.document) == []


@pytest.mark.parametrize("name", BULK_QUERIES)
def test_bulk_queries_validate_and_use_nothing_deprecated(name):
    document = parse(bulk_query_text(name))
    assert [e.message for e in validate(target_schema(), document)] == []
    assert deprecated_in_document(target_schema(), document) == []


def test_the_deprecation_check_sees_fields_arguments_and_input_fields():
    document = parse(
        "query { collections(first: 1) { nodes { ruleSet { appliedDisjunctively } } } "
        "currentBulkOperation { id } }"
    )
    found = deprecated_in_document(target_schema(), document)
    assert any("Collection.ruleSet" in f for f in found) and any("currentBulkOperation" in f for f in found)
    sub = target_schema().get_type("WebhookSubscriptionInput")
    assert list(deprecated_in_value(sub, {"callbackUrl": "https://x"})) != []
    assert list(deprecated_in_value(sub, {"uri": "https://x"})) == []


def test_inventory_mutations_declare_an_idempotency_key():
    for name in ("InventorySetQuantities", "InventoryAdjustQuantities"):
        op = all_operations()[name]
        assert op.needs_idempotency_key
        assert "@idempotent(key: $idempotencyKey)" in op.text


def test_product_set_upserts_by_identifier_synchronously():
    op = all_operations()["ProductSet"]
    assert "identifier: $identifier" in op.text and "synchronous: true" in op.text


def _coerce(op_name: str, variables: dict) -> dict:
    """The variables as 2026-10 coerces them; fails on an invalid or a deprecated input value."""
    op = all_operations()[op_name]
    result = get_variable_values(target_schema(), op.definition.variable_definitions, variables)
    assert not isinstance(result, list), [e.message for e in result]
    for definition in op.definition.variable_definitions:
        name = definition.variable.name.value
        type_ = type_from_ast(target_schema(), definition.type)
        assert list(deprecated_in_value(type_, variables.get(name), f"${name}")) == []
    return result.coerced


def test_collection_inputs_the_engine_builds_are_2026_10_inputs():
    from storesync.sync.domain.collections import collection_input, plan_child_collection
    from storesync.sync.domain.model import Collection, CollectionCondition, Image

    smart = Collection(
        "gid://shopify/Collection/1",
        "sale",
        "Sale",
        image=Image("https://example.com/sale.jpg", "Sale"),
        conditions=(
            CollectionCondition("productTag", "TAGGED_WITH", ("sale",), "ANY"),
            CollectionCondition("variantPrice", "LESS_THAN", ("20.00",), None, "USD"),
            CollectionCondition("variantInventory", "GREATER_THAN", ("0",)),
        ),
        disjunctive=True,
    )
    _coerce("CollectionCreate", {"collection": collection_input(smart)})
    child = Collection(
        "gid://shopify/Collection/2",
        "sale",
        "Old",
        conditions=(),
        source_id="gid://shopify/CollectionSource/3",
    )
    plan = plan_child_collection(smart, child, "child.myshopify.com", None)
    assert "sourcesToCreate" in plan.input
    _coerce("CollectionUpdate", {"collection": plan.input})


def test_webhook_subscription_input_uses_uri():
    import inspect

    from storesync.commerce import subscriptions

    assert '"uri": callback_url' in inspect.getsource(subscriptions.reconcile_subscriptions)
    _coerce(
        "WebhookSubscriptionCreate",
        {
            "topic": "PRODUCTS_UPDATE",
            "webhookSubscription": {"uri": "https://x.example/webhooks", "format": "JSON"},
        },
    )


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
