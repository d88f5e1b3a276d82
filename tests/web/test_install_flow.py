"""The install flow of a store that connects by the authorization code grant, end to end over
HTTP: our /auth/install -> the emulator's authorize -> our /auth/callback -> the tokens stored
encrypted -> API calls work -> the refresh rotates them. Forged, foreign, mis-stated or
replayed callbacks are refused and store nothing. A child connected this way in a running
system then has a parent's edit synced into it."""

from __future__ import annotations

import asyncio
import time
from urllib.parse import urlencode

import httpx

from storesync.commerce.budget import LocalBudget
from storesync.commerce.client import AdminClient
from storesync.commerce.credentials import NetworkTokens, PgTokenStore
from storesync.commerce.oauth import sign_callback
from storesync.commerce.scopes import NEEDED_SCOPES, missing_scopes
from storesync.config import NetworkConfig
from storesync.db.credentials import ENCRYPTION_KEY_ENV, generate_key, load_cipher
from storesync.db.network_sql import apply_network
from storesync.db.pools import async_pooled_pool
from storesync.demo.harness import running_system
from tests.support.emulator import running_emulator
from tests.web.conftest import serving

SHOP = "client-store.myshopify.com"


def network(emu, redirect_uri: str) -> NetworkConfig:
    return NetworkConfig.model_validate(
        {
            "apps": {
                "agency": {
                    "client_id": emu.client_id(SHOP),
                    "client_secrets": [emu.client_secret(SHOP)],
                    "redirect_uri": redirect_uri,
                }
            },
            "merchants": [
                {
                    "id": "client",
                    "parent": {
                        "shop": SHOP,
                        "admin_api_url": emu.graphql_url(SHOP),
                        "credentials": {"kind": "authorization_code", "app": "agency"},
                    },
                }
            ],
        }
    )


def stored(db) -> tuple:
    with db.connect() as conn:
        return conn.execute(
            "SELECT access_token_encrypted, refresh_token_encrypted, scopes FROM store_credentials "
            "WHERE shop_domain = %s",
            [SHOP],
        ).fetchone()


def signed_callback(url: str, secret: str, **params: str) -> str:
    params = {"code": "c0de", "host": "aG9zdA", "timestamp": str(int(time.time())), **params}
    params["hmac"] = sign_callback(list(params.items()), secret)
    return f"{url}/auth/callback?{urlencode(params)}"


def test_install_callback_tokens_refresh_and_every_refused_callback(db, monkeypatch):
    monkeypatch.setenv(ENCRYPTION_KEY_ENV, generate_key())
    # Expiring offline tokens of 60 minutes last 4 s here (expires_in: whole seconds).
    with running_emulator(stores=[SHOP], token_time_scale=1e-3) as emu, serving(db.settings) as web:
        net = network(emu, f"{web.url}/auth/callback")
        web.app.state.network = net
        with db.connect() as conn:
            apply_network(conn, net, load_cipher())
            conn.commit()
        secret = emu.client_secret(SHOP)
        http = httpx.Client(timeout=10, trust_env=False)

        start = http.get(f"{web.url}/auth/install", params={"shop": SHOP})
        assert start.status_code == 302
        authorize = httpx.URL(start.headers["location"])
        assert authorize.path == f"/stores/{SHOP}/admin/oauth/authorize"
        assert authorize.params["scope"].split(",") == list(NEEDED_SCOPES)
        assert authorize.params["redirect_uri"] == f"{web.url}/auth/callback"
        back = http.get(authorize)  # the merchant approves
        assert back.status_code == 302
        callback = back.headers["location"]
        query = dict(httpx.URL(callback).params)
        assert set(query) == {"code", "hmac", "host", "shop", "state", "timestamp"}

        # Refused before anything is stored, each saying why.
        refusals = {
            "forged hmac": callback.replace(f"hmac={query['hmac']}", "hmac=" + "0" * 64),
            "wrong state": signed_callback(web.url, secret, shop=SHOP, state="1.2.forged.mac"),
            "foreign shop": signed_callback(web.url, secret, shop="evil.example.com", state=query["state"]),
            "stale timestamp": signed_callback(
                web.url, secret, shop=SHOP, state=query["state"], timestamp=str(int(time.time()) - 3600)
            ),
        }
        expected = {
            "forged hmac": "hmac does not match",
            "wrong state": "not one storesync issued",
            "foreign shop": "is not a shop domain",
            "stale timestamp": "timestamp is missing or too far",
        }
        for what, url in refusals.items():
            answer = http.get(url)
            assert answer.status_code == 400, what
            assert expected[what] in answer.text and "Nothing was stored" in answer.text, (what, answer.text)
            assert stored(db)[:2] == (None, None), what

        done = http.get(callback)
        assert done.status_code == 200, done.text
        assert "storesync is connected" in done.text
        token_blob, refresh_blob, scopes = stored(db)
        assert token_blob and refresh_blob and "shpat" not in token_blob and "shprt" not in refresh_blob
        assert missing_scopes(scopes.split(",")) == []

        replayed = http.get(callback)
        assert replayed.status_code == 400 and "already used (replayed)" in replayed.text
        assert stored(db) == (token_blob, refresh_blob, scopes)
        metrics = http.get(f"{web.ops_url}/metrics").text
        assert 'storesync_oauth_callbacks_total{outcome="connected"} 1.0' in metrics
        assert 'storesync_oauth_callbacks_total{outcome="replayed"} 1.0' in metrics
        http.close()

        async def use_and_refresh() -> None:
            pool = async_pooled_pool(db.settings, name="install-test", min_size=0, max_size=2)
            await pool.open(wait=True)
            try:
                async with httpx.AsyncClient() as client_http:
                    tokens = NetworkTokens(net, PgTokenStore(pool, load_cipher()), client_http)
                    cfg = net.store(SHOP)[1]
                    async with AdminClient(
                        cfg, budget=LocalBudget(), http=client_http, tokens=tokens.for_store(cfg)
                    ) as client:
                        await client.execute("ShopInfo", {"locationsFirst": 5})
                        await asyncio.sleep(3.5)  # into the refresh-ahead margin of a 4 s token
                        await client.execute("ShopInfo", {"locationsFirst": 5})
            finally:
                await pool.close()

        asyncio.run(use_and_refresh())
        after = stored(db)
        assert after[0] != token_blob and after[1] != refresh_blob  # rotated
        assert [r["grant_type"] for r in emu.oauth(SHOP)["requests"]] == [
            "authorization_code",
            "refresh_token",
        ]


def test_a_child_connected_by_the_install_flow_has_a_parent_edit_synced_into_it(db):
    child = "child-a.myshopify.com"
    # The app is not of the child's organization: no client credentials grant, only the install.
    with running_system(
        db.dsn, children=1, products=2, child_overlap=2, collections=0, workers=1, install=[child]
    ) as system:
        link = system.cli("stores", "connect", child, check=True).stdout.split()[-1]
        with httpx.Client(timeout=10, trust_env=False, follow_redirects=True) as http:
            done = http.get(link)  # /auth/install -> the store's authorize -> /auth/callback
        assert done.status_code == 200 and "storesync is connected" in done.text, done.text
        system.cli("link", check=True)
        system.edit_parent_product("demo-product-1", title="Installed and in step")
        system.wait_until(
            lambda: system.product_by_handle(child, "demo-product-1")["title"] == "Installed and in step",
            30,
            message="the parent's edit in the installed child",
        )
        grants = [r["grant_type"] for r in system.emulator.oauth(child)["requests"]]
        assert grants[0] == "authorization_code" and "client_credentials" not in grants, grants


def test_stores_connect_prints_the_install_link_or_says_why_not(tmp_path):
    import os
    import subprocess
    import sys

    config = tmp_path / "storesync.toml"
    config.write_text(
        """
[apps.agency]
client_id = "abc"
client_secrets = ["s"]
redirect_uri = "https://sync.example.com/auth/callback"
[[merchants]]
id = "m"
[merchants.parent]
shop = "client-store.myshopify.com"
credentials = { kind = "authorization_code", app = "agency" }
[[merchants.children]]
shop = "own-store.myshopify.com"
credentials = { kind = "client_credentials", app = "agency" }
"""
    )
    env = {**os.environ, "STORESYNC_CONFIG_FILE": str(config), "COLUMNS": "200"}

    def connect(shop: str) -> subprocess.CompletedProcess:
        cmd = [sys.executable, "-m", "storesync", "stores", "connect", shop]
        return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)

    ok = connect(SHOP)
    assert ok.returncode == 0, ok.stderr
    assert "https://sync.example.com/auth/install?shop=client-store.myshopify.com" in ok.stdout
    own = connect("own-store.myshopify.com")
    assert own.returncode == 1 and "connects with client_credentials" in " ".join(own.stderr.split())
    unknown = connect("nobody.myshopify.com")
    assert unknown.returncode == 2 and "not a store of storesync.toml" in " ".join(unknown.stderr.split())
