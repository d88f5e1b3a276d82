"""The productSet inputs the catalog plans are valid `ProductSetInput` values of Shopify's own
2026-10 schema, with no deprecated input field."""

import asyncio
from dataclasses import replace

import pytest
from graphql.utilities import validate_input_value

from storesync.sync.domain.catalog import SyncPolicy, plan_child_product, unchanged_input
from storesync.sync.domain.model import Image, LinkMap, Metafield
from tests.fakes import MemoryStore
from tests.support.shopify_schema import admin_schema, deprecated_in_value
from tests.sync.builders import CHILD_A, tee, variant
from tests.sync.test_catalog import World


@pytest.fixture(scope="module")
def product_set_input():
    return admin_schema().type_map["ProductSetInput"]


def _valid(type_, value):
    errors = list(deprecated_in_value(type_, value))
    validate_input_value(
        value, type_, lambda error, path: errors.append(f"{'.'.join(map(str, path))}: {error.message}")
    )
    return errors


def test_plans_for_create_and_update_are_valid_product_set_inputs(product_set_input):
    mf = Metafield("custom", "fabric", "single_line_text_field", "linen")
    parent = replace(
        tee(),
        images=(Image("https://img.example/tee.jpg", "Tee"),),
        variants=(
            variant("TEE-S", ("Size", "S"), barcode="123", metafields=(mf,)),
            variant("TEE-M", ("Size", "M")),
        ),
    )
    create = plan_child_product(MemoryStore("p").add_product(parent), None, LinkMap(CHILD_A), SyncPolicy())
    assert _valid(product_set_input, create.input) == []

    w = World()
    asyncio.run(w.sync())
    asyncio.run(w.add_child_only_variant(metafields=(mf,)))
    asyncio.run(
        w.edit_child(
            title="edited", metafields=[{"namespace": "c", "key": "k", "type": "json", "value": "{}"}]
        )
    )
    child = asyncio.run(w.child_product())
    update = plan_child_product(w.pp, child, asyncio.run(w.links.link_map(CHILD_A)), w.policy)
    assert update.input["variants"] and _valid(product_set_input, update.input) == []
    assert _valid(product_set_input, unchanged_input(child)) == []


def test_the_contract_check_catches_a_wrong_input(product_set_input):
    assert _valid(product_set_input, {"title": "x", "variants": [{"sku_code": "nope"}]})
