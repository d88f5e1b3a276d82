"""The install flow of stores that connect by the authorization code grant.

`GET /auth/install?shop=X` (the URL `storesync stores connect X` prints) redirects the merchant to
`https://X/admin/oauth/authorize` with the scopes storesync needs (commerce/scopes.py), a signed
short-lived `state` and the app's redirect URI. Shopify sends the merchant back to
`GET /auth/callback?code&hmac&host&shop&state&timestamp`, which is verified before anything is
stored, in this order: the shop is a myshopify.com domain and a store of this network that
connects this way; Shopify's `hmac` of the query matches the app's client secret; the
`timestamp` is recent; the `state` is one we signed for this shop and has not been used before.
Then the code is exchanged for an expiring offline token and its refresh token (`expiring=1`),
stored encrypted. A refused callback stores nothing and says why (HTTP 400).
https://shopify.dev/docs/apps/build/authentication-authorization/access-tokens/authorization-code-grant
"""

from __future__ import annotations

import html
from urllib.parse import urlencode, urljoin

import httpx
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from storesync.commerce.credentials import PgTokenStore
from storesync.commerce.oauth import (
    TokenRequestError,
    authorization_code_form,
    authorize_url,
    callback_hmac_matches,
    is_shop_domain,
    issue_state,
    read_state,
    request_token,
    timestamp_is_fresh,
)
from storesync.commerce.scopes import NEEDED_SCOPES, missing_scopes
from storesync.config import AppConfig, ConfigError, StoreConfig
from storesync.db import credentials_sql
from storesync.db.credentials import load_cipher
from storesync.logs import get_logger
from storesync.web.settings import WebSettings

log = get_logger("storesync.web.auth")


class Refused(Exception):
    def __init__(self, outcome: str, reason: str, status: int = 400) -> None:
        super().__init__(reason)
        self.outcome, self.reason, self.status = outcome, reason, status


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(
        f"<!doctype html><html><head><meta charset=utf-8><title>{html.escape(title)}</title></head>"
        f"<body><h1>{html.escape(title)}</h1><p>{body}</p></body></html>",
        status_code=status,
    )


def _refused(err: Refused) -> HTMLResponse:
    return _page(
        "storesync refused this request",
        f"{html.escape(err.reason)}. Nothing was stored; start the install again from "
        "<code>storesync stores connect</code>'s link.",
        err.status,
    )


def _install_store(request: Request, shop: str | None) -> tuple[StoreConfig, AppConfig]:
    """The store and app the request is about, or Refused saying why."""
    if not is_shop_domain(shop):
        raise Refused("foreign_shop", f"{shop!r} is not a shop domain like 'name.myshopify.com'")
    network = request.app.state.network
    found = network.store((shop or "").lower())
    if found is None:
        raise Refused("unknown_shop", f"{shop} is not a store of this network (storesync.toml)", 404)
    store = found[1]
    if store.credential_kind != "authorization_code":
        raise Refused(
            "not_authorization_code", f"{shop} connects with {store.credential_kind}, not by the install flow"
        )
    return store, network.app_of(store)


async def install(request: Request) -> Response:
    try:
        store, app = _install_store(request, request.query_params.get("shop"))
    except Refused as err:
        return _refused(err)
    state = issue_state(store.shop, app.client_secrets[0].get_secret_value())
    assert app.redirect_uri is not None  # the network config requires it for this grant
    target = authorize_url(store.shop_url, app.client_id, NEEDED_SCOPES, app.redirect_uri, state)
    log.info("install_redirect", shop=store.shop)
    return RedirectResponse(target, status_code=302)


async def callback(request: Request) -> Response:
    metrics = request.app.state.metrics
    try:
        store, scopes = await _callback(request)
    except Refused as err:
        metrics.oauth_callbacks.labels(err.outcome).inc()
        log.warning("install_callback_refused", outcome=err.outcome, reason=err.reason)
        return _refused(err)
    metrics.oauth_callbacks.labels("connected").inc()
    missing = missing_scopes(scopes)
    note = (
        f" Missing access scopes: {html.escape(', '.join(missing))} (storesync api check says which are needed)."
        if missing
        else ""
    )
    log.info("install_connected", shop=store.shop, scopes=",".join(scopes), missing=",".join(missing))
    return _page(
        "storesync is connected",
        f"{html.escape(store.shop)} granted {html.escape(', '.join(scopes) or 'no scopes')}.{note}",
    )


async def _callback(request: Request) -> tuple[StoreConfig, tuple[str, ...]]:
    params = list(request.query_params.multi_items())
    query = dict(params)
    store, app = _install_store(request, query.get("shop"))
    secrets = [s.get_secret_value() for s in app.client_secrets]
    if not callback_hmac_matches(params, secrets):
        raise Refused(
            "bad_hmac", "the hmac does not match: this request was not signed by Shopify for our app"
        )
    if not timestamp_is_fresh(query.get("timestamp")):
        raise Refused("stale_timestamp", "the timestamp is missing or too far from now")
    try:
        state = read_state(query.get("state"), secrets)
    except ValueError as err:
        raise Refused("bad_state", str(err)) from None
    if state.shop != store.shop:
        raise Refused("bad_state", f"the state was issued for {state.shop}, not {store.shop}")
    code = query.get("code")
    if not code:
        raise Refused("no_code", "the callback carries no authorization code")

    pool = request.app.state.pool
    if pool is None:
        raise Refused("unavailable", "the web tier has no database connection", 503)
    try:
        cipher = load_cipher()
    except ConfigError as err:
        raise Refused("unavailable", str(err), 503) from None
    web: WebSettings = request.app.state.web_settings
    async with pool.connection() as conn, conn.transaction():
        await conn.execute(credentials_sql.PRUNE_STATES, {"older_than_s": 24 * 3600})
        cur = await conn.execute(credentials_sql.USE_STATE, {"nonce": state.nonce, "shop": store.shop})
        if await cur.fetchone() is None:
            raise Refused("replayed", "this callback was already used (replayed)")
    tokens = PgTokenStore(pool, cipher)
    async with tokens.locked(store.shop) as slot:
        if slot.row is None or slot.row.kind != "authorization_code" or slot.row.client_id != app.client_id:
            raise Refused(
                "not_applied",
                f"{store.shop}'s credentials are not stored yet: run `storesync network apply`",
                409,
            )
        async with httpx.AsyncClient(timeout=web.oauth_timeout_s) as http:
            try:
                grant = await request_token(
                    http,
                    store.shop_url,
                    authorization_code_form(app.client_id, secrets[0], code),
                    timeout=web.oauth_timeout_s,
                )
            except TokenRequestError as err:
                raise Refused("exchange_failed", f"Shopify did not exchange the code: {err}", 502) from None
        await slot.save(grant, previous_refresh_token=None)
    return store, grant.scopes


def install_url(redirect_uri: str, shop: str) -> str:
    """`GET /auth/install?shop=` on the web tier that serves `redirect_uri` (our /auth/callback):
    the link `storesync stores connect` prints."""
    if redirect_uri.endswith("/auth/callback"):
        path = redirect_uri.removesuffix("/auth/callback") + "/auth/install"
    else:
        path = urljoin(redirect_uri, "/auth/install")
    return f"{path}?{urlencode({'shop': shop})}"


def auth_routes() -> list[Route]:
    return [
        Route("/auth/install", install, methods=["GET"]),
        Route("/auth/callback", callback, methods=["GET"]),
    ]
