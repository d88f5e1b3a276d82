"""The emulator's OAuth: tokens issued as Shopify issues them, and the app's access scopes.

Routes (same URL scheme as the GraphQL endpoint, so a client that rewrites `https://{shop}` to
`{emulator}/stores/{shop}` reaches them):
  POST /stores/{shop}/admin/oauth/access_token   form or JSON body; `grant_type`
       client_credentials  (client_id, client_secret) -> 24 h token
       authorization_code  (client_id, client_secret, code[, expiring=1]; no grant_type also
                            means this) -> an offline token; with expiring=1 it lasts 60 min and
                            comes with a refresh token (90 days)
       refresh_token       (client_id, client_secret, refresh_token) -> a new pair
  GET  /stores/{shop}/admin/oauth/authorize      the merchant approves at once: 302 to the
       redirect_uri with code, hmac, host, shop, state, timestamp
Control (tests, demo):
  GET  /_emulator/stores/{shop}/oauth            the app, its scopes, the tokens issued and the
                                                 refresh tokens' states, the token requests seen
  PUT  /_emulator/stores/{shop}/oauth            {"scopes"?, "client_id"?, "client_secret"?,
                                                  "client_credentials"?: bool, "redirect_urls"?,
                                                  "lose_answers"?: n}  (the next n token answers
                                                  are processed, then lost: HTTP 502)
  POST /_emulator/stores/{shop}/oauth/revoke     every issued token and refresh token stops working

Shopify's behaviour modelled here (see docs/emulator.md for the pages):
- lifetimes: client credentials 86399 s, expiring offline tokens 3600 s, refresh tokens 90 days,
  all multiplied by the token time scale so tests cross an expiry in seconds; `expires_in` says
  the scaled value. An expired or revoked token gets the Admin API's 401.
- a refresh rotates the refresh token; the one used stays valid until its replacement is first
  used (then it, and any other replacement it produced, are retired).
- an authorization code is single use and short-lived; the callback's hmac is the hex
  HMAC-SHA256 of the other parameters sorted and form-encoded, keyed by the client secret.
- the access scopes are the installation's: write_X implies read_X; a store's scopes can be
  changed through the control API (a merchant's app version without a scope).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

CLIENT_CREDENTIALS_TTL_S = 86399
EXPIRING_OFFLINE_TTL_S = 3600
REFRESH_TOKEN_TTL_S = 90 * 86400
CODE_TTL_S = 600
# The scopes an installation has unless told otherwise: every scope the emulator enforces.
DEFAULT_SCOPES = (
    "read_products",
    "write_products",
    "read_inventory",
    "write_inventory",
    "read_locations",
    "read_orders",
    "write_orders",
    "read_publications",
    "write_publications",
    "write_files",
    "read_returns",
    "read_merchant_managed_fulfillment_orders",
)


def implied_scopes(scopes: Iterable[str]) -> frozenset[str]:
    out = set(scopes)
    out |= {"read_" + s.removeprefix("write_") for s in out if s.startswith("write_")}
    return frozenset(out)


@dataclass
class IssuedToken:
    kind: str  # client_credentials | authorization_code
    expires_at: float | None  # monotonic; None: never
    scopes: tuple[str, ...]
    revoked: bool = False


@dataclass
class RefreshToken:
    value: str
    parent: str | None  # the refresh token this one replaced
    expires_at: float
    used: bool = False
    retired: bool = False


@dataclass
class Installation:
    """The app installed on one store: its credentials, its grant and what it issued."""

    shop: str
    client_id: str
    client_secret: str
    scopes: set[str]
    client_credentials: bool = True  # an app of the store's own organization
    redirect_urls: list[str] | None = None  # None: any http(s) URL is allowed
    tokens: dict[str, IssuedToken] = field(default_factory=dict)
    codes: dict[str, tuple[float, bool]] = field(default_factory=dict)  # code -> (expires_at, used)
    refresh_tokens: dict[str, RefreshToken] = field(default_factory=dict)
    lose_answers: int = 0
    requests: list[dict] = field(default_factory=list)  # grant_type and outcome of each token request


class OAuthServer:
    def __init__(self, *, time_scale: float = 1.0, clock: Callable[[], float] = time.monotonic) -> None:
        if time_scale <= 0:
            raise ValueError("time_scale must be > 0")
        self.time_scale, self.clock = time_scale, clock
        self.installations: dict[str, Installation] = {}

    def install(
        self, shop: str, client_id: str, client_secret: str, scopes: Iterable[str] | None = None
    ) -> Installation:
        inst = Installation(shop, client_id, client_secret, set(DEFAULT_SCOPES if scopes is None else scopes))
        self.installations[shop] = inst
        return inst

    def ttl(self, seconds: float) -> int:
        """A lifetime on the emulator's time scale, in whole seconds as `expires_in` says it."""
        return max(1, round(seconds * self.time_scale))

    # ------------------------------------------------------------------ Admin API side

    def token_valid(self, shop: str, token: str | None) -> bool:
        inst = self.installations.get(shop)
        issued = inst.tokens.get(token or "") if inst else None
        if issued is None or issued.revoked:
            return False
        return issued.expires_at is None or self.clock() < issued.expires_at

    def granted(self, shop: str) -> frozenset[str]:
        inst = self.installations.get(shop)
        return implied_scopes(inst.scopes) if inst else frozenset()

    def access_scopes(self, shop: str) -> list[str]:
        """As `currentAppInstallation.accessScopes` lists them (what was granted)."""
        inst = self.installations.get(shop)
        return sorted(inst.scopes) if inst else []

    # ------------------------------------------------------------------ token endpoint

    def _issue(self, inst: Installation, kind: str, ttl_s: float | None) -> tuple[str, dict]:
        token = "shpat_" + secrets.token_hex(16)
        expires_in = self.ttl(ttl_s) if ttl_s is not None else None
        inst.tokens[token] = IssuedToken(
            kind, None if expires_in is None else self.clock() + expires_in, tuple(sorted(inst.scopes))
        )
        body: dict[str, Any] = {"access_token": token, "scope": ",".join(sorted(inst.scopes))}
        if expires_in is not None:
            body["expires_in"] = expires_in
        return token, body

    def _new_refresh(self, inst: Installation, parent: str | None) -> dict:
        value = "shprt_" + secrets.token_hex(16)
        ttl = self.ttl(REFRESH_TOKEN_TTL_S)
        inst.refresh_tokens[value] = RefreshToken(value, parent, self.clock() + ttl)
        return {"refresh_token": value, "refresh_token_expires_in": ttl}

    def token_request(self, shop: str, form: dict[str, str]) -> tuple[int, dict]:
        """(HTTP status, JSON body) of one token request."""
        inst = self.installations.get(shop)
        if inst is None:
            return 404, {"errors": "Not Found"}
        grant = form.get("grant_type") or ("authorization_code" if "code" in form else "")
        status, body = self._grant(inst, grant, form)
        inst.requests.append({"grant_type": grant, "status": status, "error": body.get("error")})
        return status, body

    def _grant(self, inst: Installation, grant: str, form: dict[str, str]) -> tuple[int, dict]:
        if form.get("client_id") != inst.client_id or not hmac.compare_digest(
            form.get("client_secret", ""), inst.client_secret
        ):
            return 401, {"error": "invalid_client", "error_description": "Client authentication failed."}
        now = self.clock()
        if grant == "client_credentials":
            if not inst.client_credentials:
                return 400, {
                    "error": "unauthorized_client",
                    "error_description": "The client credentials grant is only available to apps of "
                    "the store's own organization.",
                }
            return 200, self._issue(inst, "client_credentials", CLIENT_CREDENTIALS_TTL_S)[1]
        if grant == "authorization_code":
            code = form.get("code", "")
            entry = inst.codes.get(code)
            if entry is None or entry[1] or now >= entry[0]:
                return 400, {
                    "error": "invalid_grant",
                    "error_description": "The authorization code is invalid, expired or already used.",
                }
            inst.codes[code] = (entry[0], True)
            if form.get("expiring") == "1":
                _, body = self._issue(inst, "authorization_code", EXPIRING_OFFLINE_TTL_S)
                return 200, {**body, **self._new_refresh(inst, None)}
            return 200, self._issue(inst, "authorization_code", None)[1]
        if grant == "refresh_token":
            rt = inst.refresh_tokens.get(form.get("refresh_token", ""))
            if rt is None or rt.retired or now >= rt.expires_at:
                return 400, {
                    "error": "invalid_grant",
                    "error_description": "Token has been expired or revoked.",
                }
            if rt.parent is not None:
                # Its replacement is used now: the one it replaced is retired, and so is every
                # other replacement that one produced (answers the app never kept).
                parent = inst.refresh_tokens.get(rt.parent)
                if parent is not None:
                    parent.retired = True
                for other in inst.refresh_tokens.values():
                    if other.parent == rt.parent and other is not rt:
                        other.retired = True
            rt.used = True
            _, body = self._issue(inst, "authorization_code", EXPIRING_OFFLINE_TTL_S)
            return 200, {**body, **self._new_refresh(inst, rt.value)}
        return 400, {"error": "unsupported_grant_type", "error_description": f"grant_type {grant!r}"}

    # ------------------------------------------------------------------ authorize

    def authorize(self, shop: str, query: dict[str, str]) -> tuple[int, str]:
        """(HTTP status, Location or error text) of the merchant approving the app at once."""
        inst = self.installations.get(shop)
        if inst is None:
            return 404, "Not Found"
        if query.get("client_id") != inst.client_id:
            return 400, "Oauth error invalid_request: The client_id is not valid for this store"
        redirect = query.get("redirect_uri", "")
        parts = urlsplit(redirect)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            return 400, "Oauth error invalid_request: The redirect_uri is missing or not an http(s) URL"
        if inst.redirect_urls is not None and redirect not in inst.redirect_urls:
            return 400, "Oauth error invalid_request: The redirect_uri is not whitelisted"
        requested = [s.strip() for s in query.get("scope", "").split(",") if s.strip()]
        if requested:  # the merchant grants what the app asks for (all or nothing)
            inst.scopes = set(requested)
        code = secrets.token_hex(16)
        inst.codes[code] = (self.clock() + self.ttl(CODE_TTL_S), False)
        store_name = shop.split(".", 1)[0]
        params = {
            "code": code,
            "host": base64.urlsafe_b64encode(f"admin.shopify.com/store/{store_name}".encode())
            .decode()
            .rstrip("="),
            "shop": shop,
            "state": query.get("state", ""),
            "timestamp": str(int(time.time())),
        }
        params["hmac"] = callback_hmac(params, inst.client_secret)
        sep = "&" if parts.query else "?"
        return 302, f"{redirect}{sep}{urlencode(params)}"

    def revoke(self, shop: str) -> None:
        inst = self.installations[shop]
        for t in inst.tokens.values():
            t.revoked = True
        for r in inst.refresh_tokens.values():
            r.retired = True

    def describe(self, shop: str) -> dict:
        inst = self.installations[shop]
        now = self.clock()
        return {
            "shop": shop,
            "client_id": inst.client_id,
            "scopes": sorted(inst.scopes),
            "client_credentials": inst.client_credentials,
            "access_tokens": [
                {
                    "kind": t.kind,
                    "valid": not t.revoked and (t.expires_at is None or now < t.expires_at),
                    "expires_in_s": None if t.expires_at is None else round(t.expires_at - now, 3),
                }
                for t in inst.tokens.values()
            ],
            "refresh_tokens": [
                {
                    "state": "retired" if r.retired else ("expired" if now >= r.expires_at else "active"),
                    "used": r.used,
                    "replaces_another": r.parent is not None,
                }
                for r in inst.refresh_tokens.values()
            ],
            "requests": list(inst.requests),
        }


def callback_hmac(params: dict[str, str], secret: str) -> str:
    """Shopify's signature of a redirect's query: hex HMAC-SHA256 of the parameters but `hmac`,
    sorted by name and form-encoded, keyed by the app's client secret."""
    message = urlencode(sorted((k, v) for k, v in params.items() if k != "hmac"), quote_via=quote)
    return hmac.new(secret.encode(), message.encode(), hashlib.sha256).hexdigest()


# --------------------------------------------------------------------------- routes


def _json(body: Any, status: int = 200) -> JSONResponse:
    return JSONResponse(body, status_code=status)


def oauth_routes(server: OAuthServer) -> list[Route]:
    async def access_token(request: Request) -> Response:
        shop = request.path_params["shop"]
        raw = await request.body()
        if request.headers.get("content-type", "").startswith("application/json"):
            try:
                body = json.loads(raw or b"{}")
            except ValueError:
                return _json({"error": "invalid_request", "error_description": "body is not JSON"}, 400)
            form = {k: str(v) for k, v in body.items()} if isinstance(body, dict) else {}
        else:
            form = dict(parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True))
        status, answer = server.token_request(shop, form)
        inst = server.installations.get(shop)
        if inst is not None and inst.lose_answers > 0:
            inst.lose_answers -= 1  # processed; the answer never reaches the client
            inst.requests[-1]["lost"] = True
            return Response("<html><body>502 Bad Gateway</body></html>", 502, media_type="text/html")
        return _json(answer, status)

    async def authorize(request: Request) -> Response:
        status, where = server.authorize(request.path_params["shop"], dict(request.query_params))
        if status == 302:
            return RedirectResponse(where, status_code=302)
        return Response(where, status_code=status, media_type="text/plain")

    def _inst(request: Request) -> Installation | None:
        return server.installations.get(request.path_params["shop"])

    async def describe(request: Request) -> Response:
        if _inst(request) is None:
            return _json({"error": f"unknown shop {request.path_params['shop']!r}"}, 404)
        return _json(server.describe(request.path_params["shop"]))

    async def configure(request: Request) -> Response:
        inst = _inst(request)
        if inst is None:
            return _json({"error": f"unknown shop {request.path_params['shop']!r}"}, 404)
        try:
            body = json.loads(await request.body() or b"{}")
        except ValueError as err:
            return _json({"error": f"body is not valid JSON: {err}"}, 400)
        if not isinstance(body, dict):
            return _json({"error": "body must be a JSON object"}, 422)
        unknown = set(body) - {
            "scopes",
            "client_id",
            "client_secret",
            "client_credentials",
            "redirect_urls",
            "lose_answers",
        }
        if unknown:
            return _json({"error": f"unknown fields {sorted(unknown)}"}, 422)
        scopes = body.get("scopes", list(inst.scopes))
        lose = body.get("lose_answers", inst.lose_answers)
        redirects = body.get("redirect_urls", inst.redirect_urls)
        if not isinstance(scopes, list) or not all(isinstance(s, str) for s in scopes):
            return _json({"error": "scopes must be a list of scope handles"}, 422)
        if not isinstance(lose, int) or isinstance(lose, bool) or lose < 0:
            return _json({"error": "lose_answers must be an integer >= 0"}, 422)
        if redirects is not None and not isinstance(redirects, list):
            return _json({"error": "redirect_urls must be a list or null"}, 422)
        for key in ("client_id", "client_secret"):
            if key in body and (not isinstance(body[key], str) or not body[key]):
                return _json({"error": f"{key} must be a non-empty string"}, 422)
        inst.scopes, inst.lose_answers, inst.redirect_urls = set(scopes), lose, redirects
        inst.client_id = body.get("client_id", inst.client_id)
        inst.client_secret = body.get("client_secret", inst.client_secret)
        inst.client_credentials = bool(body.get("client_credentials", inst.client_credentials))
        return _json(server.describe(inst.shop))

    async def revoke(request: Request) -> Response:
        if _inst(request) is None:
            return _json({"error": f"unknown shop {request.path_params['shop']!r}"}, 404)
        server.revoke(request.path_params["shop"])
        return _json(server.describe(request.path_params["shop"]))

    return [
        Route("/stores/{shop}/admin/oauth/access_token", access_token, methods=["POST"]),
        Route("/stores/{shop}/admin/oauth/authorize", authorize, methods=["GET"]),
        Route("/_emulator/stores/{shop}/oauth", describe, methods=["GET"]),
        Route("/_emulator/stores/{shop}/oauth", configure, methods=["PUT"]),
        Route("/_emulator/stores/{shop}/oauth/revoke", revoke, methods=["POST"]),
    ]


def default_client_id(shop: str) -> str:
    return "emulator-app-" + shop.split(".", 1)[0]


def encode_scopes(scopes: Iterable[str]) -> str:
    return quote(",".join(scopes))
