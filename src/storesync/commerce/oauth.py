"""Shopify's OAuth endpoints, as the engine and the web tier's install flow call them.

- Token endpoint `POST {shop_url}/admin/oauth/access_token` (form-encoded) for the three grants
  storesync uses: `client_credentials` (an app of the merchant's own organization; the token lasts
  24 hours), `authorization_code` with `expiring=1` (an expiring offline token of 60 minutes and
  a refresh token) and `refresh_token` (a new pair; Shopify rotates the refresh token on every
  refresh and keeps the previous one valid until the new one is first used). The answer carries
  `access_token`, `scope`, `expires_in`, `refresh_token`, `refresh_token_expires_in`.
  https://shopify.dev/docs/apps/build/authentication-authorization/access-tokens/client-credentials-grant
  https://shopify.dev/docs/apps/build/authentication-authorization/access-tokens/authorization-code-grant
  https://shopify.dev/docs/apps/build/authentication-authorization/access-tokens/offline-access-tokens
  https://shopify.dev/changelog/more-resilient-refreshes-for-expiring-offline-access-tokens
- The install redirect `GET {shop_url}/admin/oauth/authorize` and the callback's verification:
  Shopify's `hmac` is the hex HMAC-SHA256, keyed by the client secret, of the other query
  parameters sorted by name and form-encoded; the `timestamp` must be recent; the `state` must
  be one we issued (signed here, short-lived) for that same shop.

`shop_url` is the store's Admin API URL before `/admin/api/`: `https://{shop}`, or an emulator's
`http://host/stores/{shop}`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote, urlencode

import httpx

from storesync.config import SHOP_DOMAIN_RE

# The clock skew a callback's timestamp may have (Shopify's own app libraries allow 90 s).
CALLBACK_TIMESTAMP_TOLERANCE_S = 90
# How long an install's signed state is honoured: the merchant approves within minutes.
STATE_TTL_S = 600
_STATE_CONTEXT = b"storesync-oauth-state\x00"


# --------------------------------------------------------------------------- token endpoint


@dataclass(frozen=True)
class TokenGrant:
    """A token endpoint's answer."""

    access_token: str
    scopes: tuple[str, ...]
    obtained_at: datetime
    expires_at: datetime | None  # None: the token does not expire
    refresh_token: str | None = None
    refresh_token_expires_at: datetime | None = None

    @classmethod
    def from_answer(cls, body: dict[str, Any], now: datetime) -> TokenGrant:
        token = body.get("access_token")
        if not isinstance(token, str) or not token:
            raise ValueError("the answer has no access_token")

        def after(seconds: Any) -> datetime | None:
            return now + timedelta(seconds=float(seconds)) if isinstance(seconds, (int, float)) else None

        scope = body.get("scope") or ""
        return cls(
            access_token=token,
            scopes=tuple(s.strip() for s in str(scope).split(",") if s.strip()),
            obtained_at=now,
            expires_at=after(body.get("expires_in")),
            refresh_token=body.get("refresh_token") or None,
            refresh_token_expires_at=after(body.get("refresh_token_expires_in")),
        )


class TokenRequestError(Exception):
    """The token endpoint did not issue a token."""


class TokenRefused(TokenRequestError):
    """Shopify refused the credentials, code or refresh token (`invalid_client`,
    `invalid_grant`, ...): asking again with the same cannot help."""

    def __init__(self, message: str, *, error: str | None, status: int) -> None:
        super().__init__(message)
        self.error, self.status = error, status


class TokenEndpointUnavailable(TokenRequestError):
    """Network fault, timeout, 429 or 5xx: the request may or may not have been processed;
    asking again (with the same refresh token) is what helps."""


def token_endpoint(shop_url: str) -> str:
    return f"{shop_url}/admin/oauth/access_token"


async def request_token(
    http: httpx.AsyncClient, shop_url: str, form: dict[str, str], *, timeout: float = 10.0
) -> TokenGrant:
    """One call of the token endpoint; `TokenRefused` or `TokenEndpointUnavailable` otherwise."""
    now = datetime.now(UTC)
    try:
        resp = await http.post(
            token_endpoint(shop_url), data=form, headers={"Accept": "application/json"}, timeout=timeout
        )
    except (httpx.TimeoutException, httpx.TransportError) as err:
        raise TokenEndpointUnavailable(f"token endpoint: {type(err).__name__}: {err}") from None
    if resp.status_code == 429 or resp.status_code >= 500:
        raise TokenEndpointUnavailable(f"token endpoint answered HTTP {resp.status_code}")
    try:
        body = resp.json()
    except ValueError:
        body = None
    if resp.status_code >= 400 or not isinstance(body, dict) or "access_token" not in body:
        error = body.get("error") if isinstance(body, dict) else None
        detail = (body.get("error_description") or error or "") if isinstance(body, dict) else resp.text[:200]
        if isinstance(detail, dict):  # some refusals put the reason under `errors`
            detail = "; ".join(f"{k}: {v}" for k, v in detail.items())
        if isinstance(body, dict) and body.get("errors") and not detail:
            detail = str(body["errors"])
        raise TokenRefused(
            f"token endpoint refused (HTTP {resp.status_code}): {detail or 'no reason given'}",
            error=error if isinstance(error, str) else None,
            status=resp.status_code,
        )
    return TokenGrant.from_answer(body, now)


def client_credentials_form(client_id: str, client_secret: str) -> dict[str, str]:
    return {"grant_type": "client_credentials", "client_id": client_id, "client_secret": client_secret}


def authorization_code_form(client_id: str, client_secret: str, code: str) -> dict[str, str]:
    """The code exchange asking for an expiring offline token and its refresh token."""
    return {"client_id": client_id, "client_secret": client_secret, "code": code, "expiring": "1"}


def refresh_token_form(client_id: str, client_secret: str, refresh_token: str) -> dict[str, str]:
    return {
        "grant_type": "refresh_token",
        "client_id": client_id,
        "client_secret": client_secret,
        "refresh_token": refresh_token,
    }


# --------------------------------------------------------------------------- install flow


def authorize_url(shop_url: str, client_id: str, scopes: Iterable[str], redirect_uri: str, state: str) -> str:
    """Where the merchant approves the app (offline access: no `grant_options[]`)."""
    query = urlencode(
        {"client_id": client_id, "scope": ",".join(scopes), "redirect_uri": redirect_uri, "state": state}
    )
    return f"{shop_url}/admin/oauth/authorize?{query}"


def callback_message(params: Sequence[tuple[str, str]]) -> str:
    """What Shopify signs: every parameter but `hmac` (and the legacy `signature`), sorted by
    name, form-encoded; a repeated name counts once with its values joined by commas."""
    merged: dict[str, list[str]] = {}
    for k, v in params:
        if k not in ("hmac", "signature"):
            merged.setdefault(k, []).append(v)
    return urlencode(sorted((k, ",".join(v)) for k, v in merged.items()), quote_via=quote)


def sign_callback(params: Sequence[tuple[str, str]], client_secret: str) -> str:
    return hmac.new(client_secret.encode(), callback_message(params).encode(), hashlib.sha256).hexdigest()


def callback_hmac_matches(params: Sequence[tuple[str, str]], client_secrets: Iterable[str]) -> bool:
    """Shopify's `hmac` verifies under one of the app's secrets (old and new during a rotation);
    compared in constant time."""
    given = [v for k, v in params if k == "hmac"]
    if len(given) != 1:
        return False
    return any(hmac.compare_digest(sign_callback(params, s), given[0].lower()) for s in client_secrets)


def timestamp_is_fresh(value: str | None, *, now: float | None = None) -> bool:
    try:
        ts = int(value or "")
    except ValueError:
        return False
    return abs((now if now is not None else time.time()) - ts) <= CALLBACK_TIMESTAMP_TOLERANCE_S


def is_shop_domain(shop: str | None) -> bool:
    return bool(shop) and SHOP_DOMAIN_RE.match(shop or "") is not None


@dataclass(frozen=True)
class InstallState:
    shop: str
    nonce: str
    issued_at: int


def issue_state(shop: str, key: str, *, now: float | None = None) -> str:
    """A `state` for the install redirect: nonce, shop and time, signed with `key` (the app's
    client secret, never sent anywhere) so the callback can tell it is ours and for this shop."""
    nonce = secrets.token_urlsafe(18)
    body = f"{nonce}.{int(now if now is not None else time.time())}.{shop}"
    return f"{body}.{_state_mac(body, key)}"


def _state_mac(body: str, key: str) -> str:
    mac = hmac.new(key.encode(), _STATE_CONTEXT + body.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).decode().rstrip("=")


def read_state(state: str | None, keys: Iterable[str], *, now: float | None = None) -> InstallState:
    """The state's contents if one of `keys` signed it and it is not older than STATE_TTL_S;
    ValueError saying why otherwise."""
    parts = (state or "").rsplit(".", 1)
    if len(parts) != 2:
        raise ValueError("the state is not one storesync issued")
    body, mac = parts
    if not any(hmac.compare_digest(_state_mac(body, k), mac) for k in keys):
        raise ValueError("the state is not one storesync issued (bad signature)")
    nonce, issued, shop = body.split(".", 2)
    age = (now if now is not None else time.time()) - int(issued)
    if age > STATE_TTL_S or age < -CALLBACK_TIMESTAMP_TOLERANCE_S:
        raise ValueError(
            f"the state expired ({int(age)} s old; an install must finish within {STATE_TTL_S} s)"
        )
    return InstallState(shop=shop, nonce=nonce, issued_at=int(issued))
