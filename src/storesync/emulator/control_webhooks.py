"""Control API routes for webhooks and faults (mounted by the emulator app under `/_emulator/`).

GET    /_emulator/faults                      -> {"graphql": {...}, "webhooks": {...}}
PUT    /_emulator/faults                      body FaultsConfig (a section left out resets to none)
GET    /_emulator/webhooks/deliveries         ?shop=&topic=&status= -> {"deliveries": [...]}
POST   /_emulator/webhooks/drain              ?timeout=10 -> {"drained": bool, "pending": n}
GET    /_emulator/webhooks/subscriptions      ?shop=&topic= -> {"subscriptions": [...], "removed": [...]}
POST   /_emulator/webhooks/subscriptions      {"shop", "topic", "callback_url", "format"?, "source"?} -> 201
DELETE /_emulator/webhooks/subscriptions/{id} (the numeric id or the full gid) -> 200 / 404
Bad input answers 400/422 with {"error": ...}; nothing is changed then.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from storesync.emulator.faults import FaultsConfig, GraphQLFaults
from storesync.emulator.webhooks import SubscriptionStore, UnknownTopicError, WebhookSender, delivery_dicts


class NewSubscription(BaseModel):
    model_config = ConfigDict(extra="forbid")

    shop: str
    topic: str
    callback_url: str
    format: Literal["JSON"] = "JSON"
    source: Literal["api", "config"] = "config"


def _error(status: int, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": message, **extra}, status_code=status)


def _validation_details(err: ValidationError) -> list[dict[str, str]]:
    return [
        {"loc": ".".join(str(p) for p in e["loc"]), "msg": e["msg"]}
        for e in err.errors(include_url=False, include_input=False)
    ]


async def _json_body(request: Request) -> Any:
    raw = await request.body()
    try:
        return json.loads(raw or b"null")
    except ValueError as err:
        raise _BadRequest(f"body is not valid JSON: {err}") from None


class _BadRequest(Exception):
    pass


def control_routes(
    sender: WebhookSender,
    subscriptions: SubscriptionStore | None,
    graphql_faults: GraphQLFaults,
    *,
    shop_exists: Callable[[str], bool] | None = None,
) -> list[Route]:
    """Starlette routes; `subscriptions` defaults to the sender's store. `shop_exists`, if
    given, makes subscription creation for an unknown shop a 404."""
    subs = subscriptions if subscriptions is not None else sender.subscriptions

    def faults_view() -> dict[str, Any]:
        return {"graphql": graphql_faults.config.model_dump(), "webhooks": sender.faults.model_dump()}

    async def get_faults(request: Request) -> JSONResponse:
        return JSONResponse(faults_view())

    async def put_faults(request: Request) -> JSONResponse:
        try:
            body = await _json_body(request)
            config = FaultsConfig.model_validate(body if body is not None else {})
        except _BadRequest as err:
            return _error(400, str(err))
        except ValidationError as err:
            return _error(422, "invalid faults", details=_validation_details(err))
        graphql_faults.configure(config.graphql)
        sender.set_faults(config.webhooks)
        return JSONResponse(faults_view())

    async def get_deliveries(request: Request) -> JSONResponse:
        q = request.query_params
        try:
            found = sender.deliveries(shop=q.get("shop"), topic=q.get("topic"), status=q.get("status"))
        except UnknownTopicError as err:
            return _error(400, str(err))
        return JSONResponse({"deliveries": delivery_dicts(found), "pending": sender.pending})

    async def post_drain(request: Request) -> JSONResponse:
        try:
            timeout = float(request.query_params.get("timeout", "10"))
        except ValueError:
            return _error(400, "timeout must be a number of seconds")
        if not 0 <= timeout <= 600:
            return _error(400, "timeout must be between 0 and 600 seconds")
        drained = await sender.drain(timeout)
        return JSONResponse({"drained": drained, "pending": sender.pending})

    async def get_subscriptions(request: Request) -> JSONResponse:
        q = request.query_params
        try:
            found = subs.list(shop=q.get("shop"), topic=q.get("topic"))
        except UnknownTopicError as err:
            return _error(400, str(err))
        removed = [{**s.as_dict(), "reason": reason} for s, reason in subs.removed()]
        return JSONResponse({"subscriptions": [s.as_dict() for s in found], "removed": removed})

    async def post_subscription(request: Request) -> JSONResponse:
        try:
            spec = NewSubscription.model_validate(await _json_body(request))
        except _BadRequest as err:
            return _error(400, str(err))
        except ValidationError as err:
            return _error(422, "invalid subscription", details=_validation_details(err))
        if shop_exists is not None and not shop_exists(spec.shop):
            return _error(404, f"unknown shop {spec.shop!r}")
        try:
            sub = subs.add(spec.shop, spec.topic, spec.callback_url, format=spec.format, source=spec.source)
        except ValueError as err:  # includes UnknownTopicError
            return _error(422, str(err))
        return JSONResponse(sub.as_dict(), status_code=201)

    async def delete_subscription(request: Request) -> JSONResponse:
        ident = request.path_params["ident"]
        gid = ident if ident.startswith("gid://") else f"gid://shopify/WebhookSubscription/{ident}"
        removed = subs.remove(gid, reason="deleted via control API")
        if removed is None:
            return _error(404, f"no subscription {gid}")
        return JSONResponse(removed.as_dict())

    return [
        Route("/_emulator/faults", get_faults, methods=["GET"]),
        Route("/_emulator/faults", put_faults, methods=["PUT"]),
        Route("/_emulator/webhooks/deliveries", get_deliveries, methods=["GET"]),
        Route("/_emulator/webhooks/drain", post_drain, methods=["POST"]),
        Route("/_emulator/webhooks/subscriptions", get_subscriptions, methods=["GET"]),
        Route("/_emulator/webhooks/subscriptions", post_subscription, methods=["POST"]),
        Route("/_emulator/webhooks/subscriptions/{ident:path}", delete_subscription, methods=["DELETE"]),
    ]
