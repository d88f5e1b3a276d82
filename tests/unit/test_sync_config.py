"""Sync policy per merchant, price rules per child, and the encryption key: bad values fail
fast with the key named."""

from __future__ import annotations

from decimal import Decimal

import pytest

from storesync.config import ConfigError, NetworkConfig, SyncedField
from storesync.db.credentials import ENCRYPTION_KEY_ENV, generate_key, load_cipher
from storesync.sync.domain.catalog import Rounding, SyncPolicy

BASE = """
[[merchants]]
id = "acme"
{merchant_extra}

[merchants.parent]
shop = "acme-parent.myshopify.com"
admin_api_url = "http://127.0.0.1:8081/stores/acme-parent.myshopify.com/admin/api/2026-10/graphql.json"
access_token = "shpat_parent_token_value"
webhook_secrets = ["parent-secret"]
{parent_extra}

[[merchants.children]]
shop = "acme-eu.myshopify.com"
admin_api_url = "http://127.0.0.1:8081/stores/acme-eu.myshopify.com/admin/api/2026-10/graphql.json"
access_token = "shpat_child_token_value"
webhook_secrets = ["child-secret"]
{child_extra}
"""


def _net(merchant_extra: str = "", parent_extra: str = "", child_extra: str = "") -> NetworkConfig:
    return NetworkConfig.from_toml_text(
        BASE.format(merchant_extra=merchant_extra, parent_extra=parent_extra, child_extra=child_extra)
    )


def _error(**parts: str) -> str:
    with pytest.raises(ConfigError) as info:
        _net(**parts)
    return str(info.value)


def test_policy_defaults_to_every_field_and_same_prices() -> None:
    m = _net().merchants[0]
    policy = SyncPolicy.from_mapping(m.sync_policy_mapping())
    assert policy.synced == frozenset(SyncedField)
    assert policy.price_rule("acme-eu.myshopify.com").apply(Decimal("10.00")) == Decimal("10.00")


def test_child_price_rule_and_field_subset_reach_the_domain_policy() -> None:
    m = _net(
        merchant_extra='sync = { fields = ["title", "tags", "options", "variants"] }',
        child_extra='price_rule = { markup_percent = 10, rounding = "ninety_nine" }',
    ).merchants[0]
    policy = SyncPolicy.from_mapping(m.sync_policy_mapping())
    assert policy.synced == {SyncedField.TITLE, SyncedField.TAGS, SyncedField.OPTIONS, SyncedField.VARIANTS}
    rule = policy.price_rule("acme-eu.myshopify.com")
    assert rule.rounding is Rounding.NINETY_NINE and rule.apply(Decimal("10.00")) == Decimal("10.99")


def test_unknown_synced_field_is_named_with_the_known_ones() -> None:
    msg = _error(merchant_extra='sync = { fields = ["title", "colour"] }')
    assert "merchants[0].sync.fields" in msg and "'colour'" in msg and "'vendor'" in msg


def test_options_without_variants_is_refused() -> None:
    msg = _error(merchant_extra='sync = { fields = ["options"] }')
    assert "options" in msg and "variants" in msg and "together" in msg


def test_markup_at_or_below_minus_100_percent_is_refused() -> None:
    msg = _error(child_extra="price_rule = { markup_percent = -100 }")
    assert "merchants[0].children[0].price_rule.markup_percent" in msg and "above -100" in msg


def test_unknown_rounding_is_refused() -> None:
    msg = _error(child_extra='price_rule = { rounding = "nearest_five" }')
    assert "price_rule.rounding" in msg and "ninety_nine" in msg


def test_parent_price_rule_is_refused() -> None:
    msg = _error(parent_extra="price_rule = { markup_percent = 5 }")
    assert "children only" in msg


def test_missing_encryption_key_is_an_error_naming_the_variable() -> None:
    with pytest.raises(ConfigError, match=ENCRYPTION_KEY_ENV):
        load_cipher({})


def test_malformed_encryption_key_is_an_error_naming_the_variable() -> None:
    with pytest.raises(ConfigError, match=f"{ENCRYPTION_KEY_ENV}: key #1 is not a Fernet key"):
        load_cipher({ENCRYPTION_KEY_ENV: "not-a-key"})


def test_rotated_keys_decrypt_tokens_encrypted_with_the_old_key() -> None:
    old, new = generate_key(), generate_key()
    blob = load_cipher({ENCRYPTION_KEY_ENV: old}).encrypt("shpat_secret")
    assert "shpat_secret" not in blob
    rotated = load_cipher({ENCRYPTION_KEY_ENV: f"{new},{old}"})
    assert rotated.decrypt(blob) == "shpat_secret"
    with pytest.raises(ConfigError, match="cannot be decrypted"):
        load_cipher({ENCRYPTION_KEY_ENV: new}).decrypt(blob, shop="a.myshopify.com")


def test_catalog_rules_per_merchant_with_a_childs_own_over_them() -> None:
    from storesync.sync.domain.catalog_rules import ChildMedia, OnHandleConflict, OnParentDelete

    m = _net(
        merchant_extra='[merchants.sync]\nmetafield_namespaces = ["specs"]\non_parent_delete = "delete"\n'
        'on_handle_conflict = "copy_with_suffix"',
        child_extra='catalog = { on_parent_delete = "leave", channels = ["Point of Sale"] }',
    ).merchants[0]
    policy = SyncPolicy.from_mapping(m.sync_policy_mapping())
    assert policy.metafield_namespaces == frozenset({"specs"})
    eu = policy.rules("acme-eu.myshopify.com")
    assert (eu.on_parent_delete, eu.on_handle_conflict, eu.channels) == (
        OnParentDelete.LEAVE,
        OnHandleConflict.COPY_WITH_SUFFIX,  # the merchant's
        ("Point of Sale",),
    )
    other = policy.rules("acme-other.myshopify.com")
    assert (other.on_parent_delete, other.child_media, other.handle_suffix) == (
        OnParentDelete.DELETE,
        ChildMedia.KEEP,
        "acme-parent",  # the parent shop's name by default
    )
    assert (
        SyncPolicy.from_mapping(_net().merchants[0].sync_policy_mapping()).metafield_namespaces == frozenset()
    )


@pytest.mark.parametrize(
    ("parts", "named"),
    [
        ({"merchant_extra": '[merchants.sync]\non_parent_delete = "burn"'}, "on_parent_delete"),
        ({"child_extra": 'catalog = { child_media = "shred" }'}, "child_media"),
        ({"merchant_extra": '[merchants.sync]\nmetafield_namespaces = ["a b"]'}, "metafield_namespaces"),
        ({"parent_extra": 'catalog = { on_parent_delete = "leave" }'}, "children only"),
        ({"child_extra": 'catalog = { handle_suffix = "Not OK!" }'}, "handle_suffix"),
    ],
)
def test_a_bad_catalog_rule_names_its_key(parts: dict, named: str) -> None:
    assert named in _error(**parts)
