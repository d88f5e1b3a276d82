"""The productSet inputs the catalog plans are valid `ProductSetInput` values of Shopify's own
2026-10 schema, with no deprecated input field."""

import asyncio
from dataclasses import replace
from decimal import Decimal

import pytest
from graphql.utilities import validate_input_value

from storesync.sync.domain.catalog import SyncPolicy, plan_child_product, unchanged_input
from storesync.sync.domain.catalog_rules import ChildMedia
from storesync.sync.domain.media import plan_media
from storesync.sync.domain.model import LinkMap, Media, Metafield, VariantDetails
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
    details = VariantDetails(
        "CONTINUE", False, True, True, Decimal("2.50"), "610910", "PT", ("0.2", "KILOGRAMS")
    )
    parent = replace(
        tee(),
        media=(Media("gid://shopify/MediaImage/1", "https://img.example/tee.jpg", "Tee"),),
        metafields=(mf,),
        variants=(
            replace(variant("TEE-S", ("Size", "S"), barcode="123", metafields=(mf,)), details=details),
            variant("TEE-M", ("Size", "M")),
        ),
    )
    policy = SyncPolicy(metafield_namespaces=frozenset({"custom"}))
    create = plan_child_product(MemoryStore("p").add_product(parent), None, LinkMap(CHILD_A), policy)
    assert create.input["metafields"] and _valid(product_set_input, create.input) == []
    media = plan_media(parent, None, LinkMap(CHILD_A), ChildMedia.KEEP)
    assert media.files and _valid(product_set_input, {"files": media.files}) == []

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
