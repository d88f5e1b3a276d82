"""The emulator's token endpoint and authorize redirect (emulator/oauth.py), over HTTP."""

from __future__ import annotations

import time

import httpx

from tests.emulator.helpers import PARENT
from tests.support.emulator import running_emulator


def test_tokens_expire_codes_are_single_use_and_credentials_are_checked():
    with running_emulator(stores=[PARENT], token_time_scale=1e-5) as emu:  # 24 h -> 1 s
        endpoint = f"{emu.shop_url(PARENT)}/admin/oauth/access_token"
        creds = {"client_id": emu.client_id(PARENT), "client_secret": emu.client_secret(PARENT)}
        answer = httpx.post(endpoint, data={"grant_type": "client_credentials", **creds}).json()
        assert set(answer) == {"access_token", "scope", "expires_in"} and answer["expires_in"] == 1
        query = {"query": "{ shop { id } }"}
        headers = {"X-Shopify-Access-Token": answer["access_token"]}
        assert httpx.post(emu.graphql_url(PARENT), json=query, headers=headers).status_code == 200
        time.sleep(1.1)
        expired = httpx.post(emu.graphql_url(PARENT), json=query, headers=headers)
        assert expired.status_code == 401 and "Invalid API key or access token" in expired.text

        wrong = httpx.post(endpoint, data={"grant_type": "client_credentials", **creds, "client_secret": "x"})
        assert wrong.status_code == 401 and wrong.json()["error"] == "invalid_client"

        redirect = httpx.get(
            f"{emu.shop_url(PARENT)}/admin/oauth/authorize",
            params={
                "client_id": creds["client_id"],
                "scope": "read_products",
                "redirect_uri": "https://a.example/cb",
                "state": "s1",
            },
        )
        assert redirect.status_code == 302
        code = httpx.URL(redirect.headers["location"]).params["code"]
        exchange = {**creds, "code": code, "expiring": "1"}
        first = httpx.post(endpoint, data=exchange).json()
        assert {"access_token", "scope", "expires_in", "refresh_token", "refresh_token_expires_in"} <= set(
            first
        )
        assert first["scope"] == "read_products"
        again = httpx.post(endpoint, data=exchange)
        assert again.status_code == 400 and again.json()["error"] == "invalid_grant"
        emu.revoke_tokens(PARENT)
        refresh = {**creds, "grant_type": "refresh_token", "refresh_token": first["refresh_token"]}
        assert httpx.post(endpoint, data=refresh).json()["error"] == "invalid_grant"
