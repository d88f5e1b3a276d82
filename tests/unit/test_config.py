"""Invalid configuration fails fast, names the key, and never shows a secret."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from storesync.config import ConfigError, NetworkConfig, Settings

VALID = """
[[merchants]]
id = "acme"
name = "Acme"

[merchants.parent]
shop = "acme-parent.myshopify.com"
admin_api_url = "http://127.0.0.1:8081/stores/acme-parent.myshopify.com/admin/api/2026-10/graphql.json"
access_token = "shpat_parent_token_value"
webhook_secrets = ["new-secret-value", "old-secret-value"]

[[merchants.children]]
shop = "acme-eu.myshopify.com"
admin_api_url = "http://127.0.0.1:8081/stores/acme-eu.myshopify.com/admin/api/2026-10/graphql.json"
access_token = "shpat_child_token_value"
webhook_secrets = ["child-secret-value"]
location_map = { "gid://shopify/Location/1" = "gid://shopify/Location/11" }
"""


def _error_for(text: str) -> str:
    with pytest.raises(ConfigError) as info:
        NetworkConfig.from_toml_text(text)
    return str(info.value)


def test_valid_network_parses_with_parent_and_children() -> None:
    net = NetworkConfig.from_toml_text(VALID)
    merchant, store = net.store("acme-eu.myshopify.com")
    assert merchant.id == "acme" and store.location_map == {
        "gid://shopify/Location/1": "gid://shopify/Location/11"
    }
    assert [s.shop for s in merchant.stores] == ["acme-parent.myshopify.com", "acme-eu.myshopify.com"]
    assert net.store("unknown.myshopify.com") is None


def test_secrets_never_appear_in_repr_or_str() -> None:
    net = NetworkConfig.from_toml_text(VALID)
    shown = repr(net) + str(net) + repr(net.merchants[0].parent)
    for secret in ("shpat_parent_token_value", "new-secret-value", "old-secret-value", "child-secret-value"):
        assert secret not in shown


def test_bad_shop_domain_names_the_key() -> None:
    msg = _error_for(VALID.replace('shop = "acme-eu.myshopify.com"', 'shop = "acme-eu.example.com"'))
    assert "merchants[0].children[0].shop" in msg
    assert "not a shop domain" in msg


def test_missing_parent_names_the_key() -> None:
    text = (
        VALID.split("[merchants.parent]")[0]
        + "[[merchants.children]]"
        + VALID.split("[[merchants.children]]")[1]
    )
    msg = _error_for(text)
    assert "merchants[0].parent: Field required" in msg


def test_empty_secret_list_and_bad_location_gid_are_reported() -> None:
    msg = _error_for(VALID.replace('webhook_secrets = ["child-secret-value"]', "webhook_secrets = []"))
    assert "merchants[0].children[0]" in msg and "webhook_secrets must list" in msg
    msg = _error_for(VALID.replace('"gid://shopify/Location/11"', '"11"'))
    assert "merchants[0].children[0].location_map" in msg and "'11' is not a location gid" in msg


def test_the_same_shop_twice_is_rejected() -> None:
    msg = _error_for(VALID.replace("acme-eu.myshopify.com", "acme-parent.myshopify.com"))
    assert "shop 'acme-parent.myshopify.com' appears in merchant 'acme' and 'acme'" in msg


def test_unknown_key_is_rejected_not_ignored() -> None:
    msg = _error_for(VALID.replace('name = "Acme"', 'name = "Acme"\nparnet = 1'))
    assert "merchants[0].parnet: Extra inputs are not permitted" in msg


def test_broken_toml_says_so() -> None:
    assert "not valid TOML" in _error_for("[[merchants]\nid=")


def test_environment_errors_name_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STORESYNC_POOL_MAX_SIZE", "zero")
    with pytest.raises(ConfigError, match=r"pool_max_size: Input should be a valid integer"):
        Settings.load()
    monkeypatch.setenv("STORESYNC_POOL_MAX_SIZE", "2")
    monkeypatch.setenv("STORESYNC_POOL_MIN_SIZE", "5")
    with pytest.raises(
        ConfigError, match=r"STORESYNC_POOL_MIN_SIZE \(5\) exceeds STORESYNC_POOL_MAX_SIZE \(2\)"
    ):
        Settings.load()


def test_database_url_is_secret_and_direct_defaults_to_pooled(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://app:hunter2@pgbouncer:6432/storesync")
    settings = Settings.load()
    assert "hunter2" not in repr(settings)
    assert settings.direct_dsn == settings.pooled_dsn
    monkeypatch.setenv("DATABASE_DIRECT_URL", "postgresql://app:hunter2@postgres:5432/storesync")
    assert Settings.load().direct_dsn.endswith("@postgres:5432/storesync")


def test_prepared_statements_follow_whether_the_pooled_path_is_also_the_direct_one() -> None:
    one = SecretStr("postgresql://app@db:5432/storesync")
    bouncer = SecretStr("postgresql://app@pgbouncer:6432/storesync")
    assert Settings.load(database_url=one).pooled_prepare_threshold == 5
    assert Settings.load(database_url=bouncer, database_direct_url=one).pooled_prepare_threshold is None
    assert (
        Settings.load(
            database_url=bouncer, database_direct_url=one, db_prepared_statements="on"
        ).pooled_prepare_threshold
        == 5
    )
    assert Settings.load(database_url=one, db_prepared_statements="off").pooled_prepare_threshold is None


def test_a_bad_prepared_statements_value_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STORESYNC_DB_PREPARED_STATEMENTS", "sometimes")
    with pytest.raises(ConfigError, match="db_prepared_statements"):
        Settings.load()
