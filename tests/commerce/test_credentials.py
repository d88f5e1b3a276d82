"""Tokens by grant (commerce/credentials.py) against the emulator's OAuth endpoints and a real
Postgres: shared by processes, one refresh at a time, ahead of expiry and once after a 401,
rotating refresh tokens that survive a lost answer."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from storesync.commerce.budget import LocalBudget
from storesync.commerce.client import AdminClient
from storesync.commerce.credentials import GrantTokens, PgTokenStore
from storesync.commerce.errors import CredentialsRejected
from storesync.commerce.oauth import authorization_code_form, request_token
from storesync.config import NetworkConfig
from storesync.db.credentials import ENCRYPTION_KEY_ENV, generate_key, load_cipher
from storesync.db.network_sql import apply_network
from storesync.db.pools import async_pooled_pool
from tests.support.emulator import running_emulator

SHOP, CHILD = "parent.myshopify.com", "child-a.myshopify.com"


def network(emu, kind: str = "client_credentials", secret: str | None = None) -> NetworkConfig:
    def store(shop: str) -> dict:
        return {
            "shop": shop,
            "admin_api_url": emu.graphql_url(shop),
            "credentials": {"kind": kind, "app": shop.split(".")[0]},
        }

    return NetworkConfig.model_validate(
        {
            "apps": {
                shop.split(".")[0]: {
                    "client_id": emu.client_id(shop),
                    "client_secrets": [secret or emu.client_secret(shop)],
                    "redirect_uri": "https://sync.example.com/auth/callback",
                }
                for shop in (SHOP, CHILD)
            },
            "merchants": [{"id": "acme", "parent": store(SHOP), "children": [store(CHILD)]}],
        }
    )


@pytest.fixture
def key(monkeypatch):
    monkeypatch.setenv(ENCRYPTION_KEY_ENV, generate_key())


def applied(db, net: NetworkConfig) -> None:
    with db.connect() as conn:
        apply_network(conn, net, load_cipher())
        conn.commit()


async def pool_of(db, max_size: int = 2):
    pool = async_pooled_pool(db.settings, name="tokens-test", min_size=0, max_size=max_size)
    await pool.open(wait=True)
    return pool


def provider(net: NetworkConfig, shop: str, store, http, **options) -> GrantTokens:
    cfg = net.store(shop)[1]
    app = net.app_of(cfg)
    return GrantTokens(
        shop,
        cfg.shop_url,
        cfg.credential_kind,
        app.client_id,
        app.client_secrets[0].get_secret_value(),
        store,
        http,
        **options,
    )


def requests(emu, shop: str, grant: str) -> list[dict]:
    return [r for r in emu.oauth(shop)["requests"] if r["grant_type"] == grant]


async def test_client_credentials_are_shared_refreshed_ahead_of_expiry_and_once_after_a_401(db, key):
    # 24-hour tokens last 2 s here; a fifth of that ahead of expiry is 0.4 s.
    with running_emulator(stores=[SHOP, CHILD], token_time_scale=2.4e-5) as emu:
        net = network(emu)
        applied(db, net)
        pool = await pool_of(db)
        try:
            async with httpx.AsyncClient() as http:
                one = provider(net, SHOP, PgTokenStore(pool, load_cipher()), http)
                first = await one.current()
                with db.connect() as conn:
                    blob = conn.execute(
                        "SELECT access_token_encrypted FROM store_credentials WHERE shop_domain = %s", [SHOP]
                    ).fetchone()[0]
                assert first.startswith("shpat_") and first not in blob
                # Another process finds the stored token: no token request.
                other = provider(net, SHOP, PgTokenStore(pool, load_cipher()), http)
                assert await other.current() == first and len(requests(emu, SHOP, "client_credentials")) == 1
                await asyncio.sleep(1.7)  # inside the refresh-ahead margin, before expiry
                second = await other.current()
                assert second != first and len(requests(emu, SHOP, "client_credentials")) == 2
                # The token refused (e.g. the app's tokens revoked): one refresh, the call goes through.
                emu.revoke_tokens(SHOP)
                cfg = net.store(SHOP)[1]
                async with AdminClient(cfg, budget=LocalBudget(), http=http, tokens=one) as client:
                    result = await client.execute("AppAccessScopes")
                assert result["currentAppInstallation"]["accessScopes"]
                assert len(requests(emu, SHOP, "client_credentials")) == 3
        finally:
            await pool.close()


async def test_one_refresh_at_a_time_across_processes_through_pgbouncer(db, key, pgbouncer_dsn):
    """Six processes (a pool each) need the same store's first token at once, through PgBouncer
    in transaction mode: one token request; the others wait on the row lock and take its token."""
    from pydantic import SecretStr

    from storesync.config import Settings

    bounced = Settings.load(database_url=SecretStr(pgbouncer_dsn), database_direct_url=SecretStr(db.dsn))
    with running_emulator(stores=[SHOP, CHILD]) as emu:
        net = network(emu)
        applied(db, net)
        pools = []
        for _ in range(6):
            pool = async_pooled_pool(bounced, name="tokens-bounced", min_size=0, max_size=1)
            await pool.open(wait=True)
            pools.append(pool)
        try:
            async with httpx.AsyncClient() as http:
                providers = [provider(net, SHOP, PgTokenStore(p, load_cipher()), http) for p in pools]
                tokens = await asyncio.gather(*(p.current() for p in providers))
            assert len(set(tokens)) == 1
            assert len(requests(emu, SHOP, "client_credentials")) == 1  # no stampede
        finally:
            for p in pools:
                await p.close()


async def test_refused_client_credentials_say_why_and_are_remembered(db, key):
    with running_emulator(stores=[SHOP, CHILD]) as emu:
        net = network(emu, secret="shpss_wrong")
        applied(db, net)
        pool = await pool_of(db)
        try:
            async with httpx.AsyncClient() as http:
                with pytest.raises(CredentialsRejected, match="Client authentication failed") as err:
                    await provider(net, SHOP, PgTokenStore(pool, load_cipher()), http).current()
            assert err.value.pause_reason.startswith("credentials refused: client_credentials")
            with db.connect() as conn:
                failure = conn.execute(
                    "SELECT failure FROM store_credentials WHERE shop_domain = %s", [SHOP]
                ).fetchone()
            assert "Client authentication failed" in failure[0]
        finally:
            await pool.close()


async def test_refresh_tokens_rotate_and_a_refresh_answer_lost_in_transit_recovers(db, key):
    # Offline tokens of 60 minutes last 1.8 s here.
    with running_emulator(stores=[SHOP, CHILD], token_time_scale=5e-4) as emu:
        net = network(emu, "authorization_code")
        applied(db, net)
        cfg = net.store(SHOP)[1]
        pool = await pool_of(db)
        try:
            async with httpx.AsyncClient() as http:
                store = PgTokenStore(pool, load_cipher())
                tokens = provider(net, SHOP, store, http)
                with pytest.raises(CredentialsRejected, match="not connected yet"):
                    await tokens.current()
                # The merchant approves (the emulator's authorize), the code is exchanged.
                approve = await http.get(
                    f"{cfg.shop_url}/admin/oauth/authorize",
                    params={
                        "client_id": emu.client_id(SHOP),
                        "scope": "write_products",
                        "redirect_uri": "https://sync.example.com/cb",
                        "state": "s",
                    },
                )
                code = httpx.URL(approve.headers["location"]).params["code"]
                grant = await request_token(
                    http,
                    cfg.shop_url,
                    authorization_code_form(emu.client_id(SHOP), emu.client_secret(SHOP), code),
                )
                async with store.locked(SHOP) as slot:
                    await slot.save(grant, previous_refresh_token=None)
                assert (
                    grant.refresh_token and 1.5 < (grant.expires_at - grant.obtained_at).total_seconds() < 2.1
                )
                assert await tokens.current() == grant.access_token

                emu.configure_app(SHOP, lose_answers=1)  # the next refresh is processed, its answer lost
                await asyncio.sleep(1.7)
                refreshed = await tokens.current()
                assert refreshed != grant.access_token
                seen = requests(emu, SHOP, "refresh_token")
                assert [r.get("lost", False) for r in seen] == [True, False]  # asked again with the same one
                row = await store.load(SHOP)
                assert (
                    row.previous_refresh_token == grant.refresh_token
                    and row.refresh_token != grant.refresh_token
                )
                async with AdminClient(cfg, budget=LocalBudget(), http=http, tokens=tokens) as client:
                    await client.execute("AppAccessScopes")

                await asyncio.sleep(1.7)
                await tokens.current()  # uses the stored replacement: the first one is retired now
                states = [r["state"] for r in emu.oauth(SHOP)["refresh_tokens"]]
                assert states == ["retired", "retired", "active", "active"], states
                row = await store.load(SHOP)
                assert row.previous_refresh_token != grant.refresh_token
        finally:
            await pool.close()
