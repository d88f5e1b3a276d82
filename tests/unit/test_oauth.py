"""The install flow's checks (commerce/oauth.py) and the credentials' configuration."""

from __future__ import annotations

import time
from urllib.parse import parse_qsl

import pytest

from storesync.commerce.oauth import (
    CALLBACK_TIMESTAMP_TOLERANCE_S,
    STATE_TTL_S,
    TokenGrant,
    callback_hmac_matches,
    is_shop_domain,
    issue_state,
    read_state,
    timestamp_is_fresh,
)
from storesync.commerce.scopes import missing_scopes
from storesync.config import ConfigError, NetworkConfig

# Shopify's own worked example of the callback signature (secret "hush"), as its docs and every
# Shopify OAuth library carry it: our check must accept it as is.
SHOPIFY_EXAMPLE = (
    "code=0907a61c0c8d55e99db179b68161bc00&hmac=700e2dadb827fcc8609e9d5ce208b2e9cdaab9df07390d2cbca10d7c328fc4bf"
    "&shop=some-shop.myshopify.com&state=0.6784241404160823&timestamp=1337178173"
)


def test_the_callback_hmac_is_shopifys_and_any_change_breaks_it():
    params = parse_qsl(SHOPIFY_EXAMPLE)
    assert callback_hmac_matches(params, ["hush"])
    assert callback_hmac_matches(params, ["new-secret", "hush"])  # during a rotation
    assert not callback_hmac_matches(params, ["other"])
    tampered = [(k, "evil.myshopify.com" if k == "shop" else v) for k, v in params]
    assert not callback_hmac_matches(tampered, ["hush"])
    assert not callback_hmac_matches([(k, v) for k, v in params if k != "hmac"], ["hush"])
    assert not callback_hmac_matches([*params, ("hmac", "00")], ["hush"])  # two hmacs


def test_the_state_is_ours_for_one_shop_and_short_lived():
    now = time.time()
    state = issue_state("acme.myshopify.com", "secret", now=now)
    assert read_state(state, ["secret"], now=now + 5).shop == "acme.myshopify.com"
    assert (
        read_state(state, ["new", "secret"], now=now).nonce
        != read_state(issue_state("acme.myshopify.com", "secret", now=now), ["secret"], now=now).nonce
    )
    with pytest.raises(ValueError, match="bad signature"):
        read_state(state, ["other"], now=now)
    with pytest.raises(ValueError, match="bad signature"):
        read_state(state.replace("acme", "evil"), ["secret"], now=now)
    with pytest.raises(ValueError, match="expired"):
        read_state(state, ["secret"], now=now + STATE_TTL_S + 1)
    with pytest.raises(ValueError, match="not one storesync issued"):
        read_state(None, ["secret"])


def test_timestamps_and_shop_domains():
    now = time.time()
    assert timestamp_is_fresh(str(int(now)), now=now)
    assert not timestamp_is_fresh(str(int(now) - CALLBACK_TIMESTAMP_TOLERANCE_S - 5), now=now)
    assert not timestamp_is_fresh("soon", now=now)
    assert is_shop_domain("acme-eu.myshopify.com")
    for bad in ("acme.example.com", "-acme.myshopify.com", "acme.myshopify.com.evil.io", "", None):
        assert not is_shop_domain(bad)


def test_a_token_answer_in_shopifys_fields():
    from datetime import UTC, datetime

    now = datetime(2026, 11, 25, tzinfo=UTC)
    grant = TokenGrant.from_answer(
        {
            "access_token": "shpat_x",
            "scope": "write_products,read_orders",
            "expires_in": 3600,
            "refresh_token": "shprt_y",
            "refresh_token_expires_in": 7776000,
        },
        now,
    )
    assert grant.scopes == ("write_products", "read_orders")
    assert (grant.expires_at - now).total_seconds() == 3600 and grant.refresh_token == "shprt_y"
    assert TokenGrant.from_answer({"access_token": "shpat_static", "scope": ""}, now).expires_at is None


def test_write_scopes_imply_read_scopes():
    rest = ["read_orders", "read_locations", "read_returns", "read_merchant_managed_fulfillment_orders"]
    granted = ["write_products", "write_inventory", *rest, "write_publications"]
    assert missing_scopes(granted) == []
    assert missing_scopes(["read_products", *granted[1:]]) == ["write_products"]
    assert missing_scopes(granted[:-1]) == ["write_publications"]


APPS = """
[apps.network]
client_id = "abc123"
client_secrets = ["shpss_new", "shpss_old"]
redirect_uri = "https://sync.example.com/auth/callback"

[[merchants]]
id = "acme"
[merchants.parent]
shop = "acme.myshopify.com"
credentials = { kind = "client_credentials", app = "network" }
[[merchants.children]]
shop = "client-eu.myshopify.com"
credentials = { kind = "authorization_code", app = "network" }
[[merchants.children]]
shop = "legacy.myshopify.com"
credentials = { kind = "static", access_token = "shpat_legacy" }
webhook_secrets = ["legacy-secret"]
"""


def test_credentials_per_store_with_one_app_for_the_network():
    net = NetworkConfig.from_toml_text(APPS)
    parent, eu, legacy = net.merchants[0].stores
    assert (parent.credential_kind, eu.credential_kind, legacy.credential_kind) == (
        "client_credentials",
        "authorization_code",
        "static",
    )
    # The app's secrets verify the stores' webhooks; the URL defaults to the version we speak.
    assert [s.get_secret_value() for s in parent.webhook_secrets] == ["shpss_new", "shpss_old"]
    assert parent.admin_api_url == "https://acme.myshopify.com/admin/api/2026-10/graphql.json"
    assert parent.shop_url == "https://acme.myshopify.com"
    assert net.app_of(eu).client_id == "abc123" and net.app_of(legacy) is None
    assert legacy.static_token.get_secret_value() == "shpat_legacy"
    assert "shpss_new" not in repr(net) and "shpat_legacy" not in repr(net)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            ('app = "network" }\n[[merchants.children]]', 'app = "nope" }\n[[merchants.children]]'),
            "'nope' is not under [apps]",
        ),
        (('redirect_uri = "https://sync.example.com/auth/callback"\n', ""), "redirect_uri is needed"),
        (
            (
                'shop = "acme.myshopify.com"\n',
                'shop = "acme.myshopify.com"\nadmin_api_url = "https://acme.myshopify.com/admin/api/2025-01/graphql.json"\n',
            ),
            "names Admin API version 2025-01; storesync speaks 2026-10",
        ),
        (('credentials = { kind = "static", access_token = "shpat_legacy" }\n', ""), "set credentials"),
    ],
)
def test_credential_mistakes_name_what_is_wrong(change, message):
    with pytest.raises(ConfigError) as info:
        NetworkConfig.from_toml_text(APPS.replace(*change))
    assert message in str(info.value)
