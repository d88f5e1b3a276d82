"""The emulator as an ASGI app: Shopify's Admin GraphQL endpoint per store, and a control API.

GraphQL: `POST /stores/{shop}/admin/api/{version}/graphql.json` with `X-Shopify-Access-Token`
(the store's static token, or one the OAuth endpoints issued and that has not expired: oauth.py).
Each request: auth (401), fault policy (faults.py), parse + validate (cached per query text),
cost check against the store's leaky bucket (THROTTLED / MAX_COST_EXCEEDED), execution,
refund of requested minus actual cost, then the webhooks the writes caused are handed to the
sender. Every answer with a GraphQL body carries `extensions.cost`.

Control API (JSON), for tests, the demo and the CLI:
  GET    /_emulator/health                          resolver crashes (emulator bugs) seen so far
  GET    /_emulator/stores                          stores with their tokens and secrets
  POST   /_emulator/stores                          {"shop", "token"?, "webhook_secret"?, "plan"?,
                                                     "client_id"?, "scopes"?}
  POST   /_emulator/stores/{shop}/seed              {"products": N, "locations": [names], "variants_per_product",
                                                     "quantity", "sku_prefix", "catalog": [explicit products]}
  POST   /_emulator/stores/{shop}/locations         {"name", "address"?: {...}, "fulfills_online_orders"?}
  POST   /_emulator/stores/{shop}/locations/{id}/deactivate {"destination_location_id"?}: stock moves there
  POST   /_emulator/stores/{shop}/locations/{id}/activate
  POST   /_emulator/stores/{shop}/publications      {"name"}: a sales channel of the store
  POST   /_emulator/stores/{shop}/orders            {"line_items": [{"variant_id", "quantity"}], "location_id"?}:
                                                    routed to fulfillment orders (location_id: a POS sale there)
  POST   /_emulator/stores/{shop}/orders/{id}/cancel {"restock": true, "reason"?}: a refund of type cancel
  POST   /_emulator/stores/{shop}/orders/{id}/refunds {"line_items": [{"line_item_id", "quantity",
                                                    "restock_type": "return|cancel|no_restock", "location_id"?}], "note"?}
  POST   /_emulator/stores/{shop}/orders/{id}/fulfill  ship every open fulfillment order
  POST   /_emulator/stores/{shop}/orders/{id}/returns {"line_items": [{"line_item_id", "quantity"}],
                                                    "process"?: true, "restock"?: true, "location_id"?, "refund"?: true}
  POST   /_emulator/stores/{shop}/returns/{id}/process {"restock"?: true, "location_id"?, "refund"?: true}
  POST   /_emulator/stores/{shop}/orders/{id}/edit  {"changes": [{"line_item_id", "quantity"}],
                                                    "additions": [{"variant_id", "quantity"}], "restock"?: true}
  PUT    /_emulator/stores/{shop}/media             {"unreachable"?: [urls], "fail_p"?, "seed"?,
                                                    "uploaded_s"?, "processing_s"?}: media faults and timing
  PUT    /_emulator/stores/{shop}/plan              {"plan": "standard" | "advanced" | "plus",
                                                     "bucket_size"?, "restore_rate"?}
  GET    /_emulator/stores/{shop}/snapshot          the store's full state
  GET    /_emulator/stores/{shop}/throttle          the bucket's throttleStatus, and the calls answered so
                                                    far: requests, THROTTLED answers, points charged
  GET    /_emulator/inventory/changes?after=N       the level log: [seq, shop, item gid, location gid,
                                                    available, epoch seconds] of each inventory_levels/update
                                                    event after seq N (at most 50,000 per answer; benchmarks)
  POST   /_emulator/stores/{shop}/inventory         {"inventory_item_id", "location_id", "available"}: merchant edit
  PATCH  /_emulator/stores/{shop}/products/{id}     {"title"?, "tags"?, "variants": [{"id", "price"}]...}: merchant edit
  PUT    /_emulator/stores/{shop}/bulk_fault        {"status": "FAILED" | "CANCELED" | "EXPIRED", "error_code"?}:
                                                    the next bulk operation ends so (null status clears)
  GET    /_emulator/bulk/{shop}/{id}.jsonl          a completed bulk operation's result (its `url`)
  + faults, webhook deliveries and subscriptions (control_webhooks.py)
  + the OAuth endpoints, the app's scopes and issued tokens (oauth.py)
Access scopes are enforced per store (scopes.py): a field or mutation the app may not access
answers Shopify's ACCESS_DENIED error.
Ids in bodies may be gids or numbers. Bad input answers 4xx with {"error": ...} and changes nothing.
Every action that emits webhooks answers with `"webhooks": {topic: [X-Shopify-Webhook-Id, ...]}`
(one id per subscription delivered to), so a test can tie a delivery to the action that caused it.
With a control token (`storesync emulator --control-token`, required off loopback) every control
call must carry `Authorization: Bearer <token>`: the control API hands out every store's token and
webhook secret. Bulk results stay open, as Shopify's pre-signed result URLs are. Tokens are
compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import structlog
from graphql import (
    DocumentNode,
    ExecutionResult,
    GraphQLError,
    GraphQLFormattedError,
    OperationDefinitionNode,
    execute,
    get_operation_ast,
    parse,
    validate,
)
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from storesync.api_version import ADMIN_API_VERSION
from storesync.emulator import orders, payloads
from storesync.emulator.bulk import FAULT_STATUSES
from storesync.emulator.control_webhooks import control_routes
from storesync.emulator.cost import MAX_QUERY_COST, LeakyBucket, query_costs
from storesync.emulator.faults import GraphQLFaults, GraphQLFaultsConfig, respond_with
from storesync.emulator.ids import gid, parse_gid
from storesync.emulator.media import MediaFaults
from storesync.emulator.oauth import OAuthServer, default_client_id, oauth_routes
from storesync.emulator.resolvers import RequestContext, default_resolver
from storesync.emulator.schema import build_emulator_schema
from storesync.emulator.scopes import needs_guard, scope_guard
from storesync.emulator.state import PLANS, ActionError, Emulator, Event, StoreState
from storesync.emulator.webhooks import DeliveryFaults, SubscriptionStore, WebhookSender

log = structlog.get_logger("storesync.emulator")

API_VERSION_RE = re.compile(r"^(\d{4}-\d{2}|unstable)$")
DEFAULT_API_VERSION = ADMIN_API_VERSION


@dataclass(frozen=True)
class StoreSpec:
    shop: str
    token: str | None = None
    # The app's client secret: it signs webhooks and OAuth redirects and authenticates token requests.
    webhook_secret: str | None = None
    plan: str = "standard"
    client_id: str | None = None
    scopes: tuple[str, ...] | None = None  # None: every scope the emulator enforces


# Level changes the level log keeps (a 60 s flash sale at 100 sales/s on 11 stores: ~70,000).
LEVEL_LOG_LIMIT = 2_000_000


@dataclass
class StoreUsage:
    """GraphQL calls one store answered: all of them, the THROTTLED ones, points charged."""

    requests: int = 0
    throttled: int = 0
    points: int = 0
    by_operation: dict[str, list[int]] = field(default_factory=dict)  # name -> [requests, points]

    def charge(self, operation: str, points: int) -> None:
        self.points += points
        row = self.by_operation.setdefault(operation, [0, 0])
        row[0] += 1
        row[1] += points


# Shopify's limit on any array given as input (https://shopify.dev/docs/api/usage/limits#input-limits).
MAX_INPUT_ARRAY = 250


def _largest_input_array(value: Any) -> int:
    """The length of the longest list anywhere in `value` (a request's variables)."""
    if isinstance(value, list):
        return max([len(value), *(_largest_input_array(v) for v in value)])
    if isinstance(value, dict):
        return max((_largest_input_array(v) for v in value.values()), default=0)
    return 0


def _json(body: Any, status: int = 200, headers: dict | None = None) -> Response:
    return Response(
        json.dumps(body, separators=(",", ":")),
        status_code=status,
        headers=headers,
        media_type="application/json; charset=utf-8",
    )


class EmulatorApp:
    """Every store, its bucket, the webhook sender and the fault policy, behind one ASGI app."""

    def __init__(
        self,
        stores: Iterable[StoreSpec | str],
        *,
        time_scale: float = 1.0,
        seed_products: int = 0,
        seed_only: Iterable[str] | None = None,
        require_idempotency: bool = True,
        throttle_http_429: bool = False,
        webhook_faults: DeliveryFaults | None = None,
        graphql_faults: GraphQLFaultsConfig | None = None,
        token_time_scale: float | None = None,
        control_token: str | None = None,
    ) -> None:
        self.emulator = Emulator(time_scale)
        self._control_digest = hashlib.sha256(control_token.encode()).digest() if control_token else None
        # Token lifetimes run on the time scale too (or their own), so tests cross an expiry in seconds.
        self.oauth = OAuthServer(time_scale=token_time_scale or time_scale)
        self.buckets: dict[str, LeakyBucket] = {}
        # What each store answered (observation for benchmarks; Shopify shows none of it).
        self.usage: dict[str, StoreUsage] = {}
        # Every level change announced (inventory_levels/update), newest last, for benchmarks that
        # time propagation without reading the webhook log.
        self.level_log: deque[tuple[int, str, str, str, int, float]] = deque(maxlen=LEVEL_LOG_LIMIT)
        self._level_seq = 0
        self.require_idempotency = require_idempotency
        # Shopify answers throttled calls with HTTP 200 and a THROTTLED error; some gateways
        # answer 429 + Retry-After instead. Clients must handle both.
        self.throttle_http_429 = throttle_http_429
        self.subscriptions = SubscriptionStore()
        self.sender = WebhookSender(
            self._app_secret, time_scale, webhook_faults, subscriptions=self.subscriptions
        )
        self.faults = GraphQLFaults(graphql_faults)
        self.schema = build_emulator_schema()
        # Resolver crashes (emulator bugs), newest last; GET /_emulator/health reports them.
        self.internal_errors: list[str] = []
        self._documents: OrderedDict[str, tuple[DocumentNode | None, list[GraphQLFormattedError]]] = (
            OrderedDict()
        )
        for spec in stores:
            self.add_store(spec if isinstance(spec, StoreSpec) else StoreSpec(spec))
        if seed_products:
            only = set(seed_only or ())
            for store in self.emulator.stores.values():
                if not only or store.shop in only:
                    store.seed(products=seed_products)
        self.asgi = Starlette(routes=self._routes(), lifespan=self._lifespan)

    async def __call__(self, scope, receive, send) -> None:
        if (
            self._control_digest is not None
            and scope["type"] == "http"
            and scope["path"].startswith("/_emulator/")
            and not scope["path"].startswith("/_emulator/bulk/")
            and not self._control_token_given(Request(scope).headers.get("authorization", ""))
        ):
            await _json({"error": "the control API needs its token (Authorization: Bearer ...)"}, 401)(
                scope, receive, send
            )
            return
        await self.asgi(scope, receive, send)

    def _control_token_given(self, header: str) -> bool:
        given = header[7:].strip() if header[:7].lower() == "bearer " else ""
        assert self._control_digest is not None
        return hmac.compare_digest(hashlib.sha256(given.encode()).digest(), self._control_digest)

    @asynccontextmanager
    async def _lifespan(self, _app):
        await self.sender.start()
        try:
            yield
        finally:
            await self.sender.stop()

    def _app_secret(self, shop: str) -> str:
        # The app's client secret signs webhooks (rotated through the OAuth control API too).
        return self.oauth.installations[shop].client_secret

    def add_store(self, spec: StoreSpec) -> StoreState:
        store = self.emulator.add_store(spec.shop, spec.token, spec.webhook_secret, spec.plan)
        self.buckets[spec.shop] = LeakyBucket(*PLANS[spec.plan])
        self.usage[spec.shop] = StoreUsage()
        self.oauth.install(
            spec.shop, spec.client_id or default_client_id(spec.shop), store.app_secret, spec.scopes
        )
        return store

    def set_plan(
        self, shop: str, plan: str, bucket_size: float | None = None, restore_rate: float | None = None
    ) -> None:
        """A plan change; `bucket_size`/`restore_rate` override the plan's limits (tests use a
        small bucket to reach throttling quickly)."""
        if plan not in PLANS:
            raise ActionError(f"unknown plan {plan!r} (one of {', '.join(PLANS)})")
        size, rate = PLANS[plan]
        size = size if bucket_size is None else float(bucket_size)
        rate = rate if restore_rate is None else float(restore_rate)
        if size <= 0 or rate <= 0:
            raise ActionError("bucket_size and restore_rate must be > 0")
        self.emulator.stores[shop].plan = plan
        self.buckets[shop].set_limits(size, rate)

    def emit(self, shop: str, events: list[Event]) -> dict[str, list[str]]:
        """Hand events to the sender: one event id per event, shared by all its deliveries.
        Returns the webhook ids of the deliveries, by topic."""
        ids: dict[str, list[str]] = {}
        for ev in events:
            if ev.topic == "inventory_levels/update":
                self._log_level(shop, ev.payload)
            sent = self.sender.emit_nowait(shop, ev.topic, ev.payload, event_id=str(uuid.uuid4()))
            ids.setdefault(ev.topic, []).extend(sent)
        return ids

    def _log_level(self, shop: str, payload: dict) -> None:
        self._level_seq += 1
        self.level_log.append(
            (
                self._level_seq,
                shop,
                gid("InventoryItem", payload["inventory_item_id"]),
                gid("Location", payload["location_id"]),
                payload["available"],
                time.time(),
            )
        )

    def level_changes(self, after: int, limit: int = 50_000) -> list[tuple[int, str, str, str, int, float]]:
        """The level log after seq `after`, oldest first (at most `limit` rows)."""
        first = self.level_log[0][0] if self.level_log else 0
        start = max(0, after + 1 - first)
        return [self.level_log[i] for i in range(start, min(len(self.level_log), start + limit))]

    # ------------------------------------------------------------------ GraphQL

    def _document(self, query: str) -> tuple[DocumentNode | None, list[GraphQLFormattedError]]:
        """Parsed and validated document (cached by text): (document, errors)."""
        cached = self._documents.get(query)
        if cached is not None:
            self._documents.move_to_end(query)
            return cached
        try:
            doc = parse(query)
            errors = [e.formatted for e in validate(self.schema, doc)]
        except GraphQLError as err:
            doc, errors = None, [err.formatted]
        result = (doc if not errors else None, errors)
        self._documents[query] = result
        if len(self._documents) > 512:
            self._documents.popitem(last=False)
        return result

    def _cost_extension(self, shop: str, requested: int | None, actual: int | None) -> dict:
        return {
            "cost": {
                "requestedQueryCost": requested,
                "actualQueryCost": actual,
                "throttleStatus": self.buckets[shop].status(),
            }
        }

    async def graphql(self, request: Request) -> Response:
        shop = request.path_params["shop"]
        if not API_VERSION_RE.match(request.path_params["version"]):
            return _json({"errors": "Not Found"}, 404)
        store = self.emulator.stores.get(shop)
        if store is None:
            return _json({"errors": "Not Found"}, 404)
        given = request.headers.get("x-shopify-access-token") or ""
        if not hmac.compare_digest(given.encode(), store.token.encode()) and not self.oauth.token_valid(
            shop, given
        ):
            return _json(
                {"errors": "[API] Invalid API key or access token (unrecognized login or wrong password)"},
                401,
            )
        try:
            body = json.loads(await request.body())
            query = body["query"]
            variables = body.get("variables") or {}
            operation_name = body.get("operationName")
            if not isinstance(query, str) or not isinstance(variables, dict):
                raise ValueError
        except (ValueError, KeyError, TypeError):
            return _json({"errors": {"query": "Required parameter missing or invalid"}}, 400)

        doc, errors = self._document(query)
        if doc is None:
            return _json({"errors": errors, "extensions": self._cost_extension(shop, 0, 0)})
        operation = get_operation_ast(doc, operation_name)
        if operation is None:
            return _json(
                {
                    "errors": [{"message": "An operation name is required"}],
                    "extensions": self._cost_extension(shop, 0, 0),
                }
            )
        field_names = [s.name.value for s in operation.selection_set.selections if hasattr(s, "name")]
        injection = self.faults.decide(field_names, shop=shop)

        async def run() -> Response:
            status, out, headers = self.run_operation(
                store,
                doc,
                operation,
                variables,
                operation_name,
                base_url=str(request.base_url).rstrip("/"),
                idempotency_fault=injection.idempotency_fault if injection else None,
            )
            return _json(out, status, headers)

        return await respond_with(injection, run)

    def call(
        self, shop: str, query: str, variables: dict | None = None, operation_name: str | None = None
    ) -> tuple[int, dict, dict | None]:
        """One GraphQL call without HTTP (auth and faults skipped): (status, body, headers).
        The benchmark's ceiling; must run on the app's event loop thread if webhooks are due."""
        store = self.emulator.stores[shop]
        doc, errors = self._document(query)
        if doc is None:
            return 200, {"errors": errors, "extensions": self._cost_extension(shop, 0, 0)}, None
        operation = get_operation_ast(doc, operation_name)
        assert operation is not None
        return self.run_operation(store, doc, operation, variables or {}, operation_name)

    def run_operation(
        self,
        store: StoreState,
        doc: DocumentNode,
        operation: OperationDefinitionNode,
        variables: dict,
        operation_name: str | None,
        base_url: str = "",
        idempotency_fault: str | None = None,
    ) -> tuple[int, dict, dict | None]:
        """Cost check, execution, refund and webhooks of one validated operation."""
        shop = store.shop
        bucket = self.buckets[shop]
        oversized = _largest_input_array(variables)
        if oversized > MAX_INPUT_ARRAY:
            # https://shopify.dev/docs/api/usage/limits#input-limits: "Input arguments that accept
            # an array have a maximum size of 250 for all APIs. Requests return an error if an
            # input array exceeds 250 items." The error's wording and code are not documented;
            # this one is ours. Nothing is executed or charged.
            message = f"The input array size of {oversized} is greater than the maximum allowed of {MAX_INPUT_ARRAY}."
            return (
                200,
                {
                    "errors": [{"message": message, "extensions": {"code": "MAX_INPUT_SIZE_EXCEEDED"}}],
                    "extensions": self._cost_extension(shop, 0, 0),
                },
                None,
            )
        requested, actual_of = query_costs(self.schema, doc, operation, variables)
        if requested > MAX_QUERY_COST:
            message = (
                f"Query cost is {requested}, which exceeds the single query max cost limit "
                f"({MAX_QUERY_COST})."
            )
            return (
                200,
                {
                    "errors": [
                        {
                            "message": message,
                            "extensions": {
                                "code": "MAX_COST_EXCEEDED",
                                "cost": requested,
                                "maxCost": MAX_QUERY_COST,
                            },
                        }
                    ],
                    "extensions": self._cost_extension(shop, requested, None),
                },
                None,
            )
        usage = self.usage[shop]
        usage.requests += 1
        if not bucket.try_take(requested):
            usage.throttled += 1
            body = {
                "errors": [
                    {
                        "message": "Throttled",
                        "extensions": {
                            "code": "THROTTLED",
                            "documentation": "https://shopify.dev/api/usage/rate-limits",
                        },
                    }
                ],
                "extensions": self._cost_extension(shop, requested, None),
            }
            if self.throttle_http_429:
                retry_after = max(1, int(bucket.seconds_until(requested) + 0.999))
                return 429, body, {"Retry-After": str(retry_after)}
            return 200, body, None
        context = RequestContext(
            store=store,
            subscriptions=self.subscriptions,
            require_idempotency=self.require_idempotency,
            base_url=base_url,
            access_scopes=tuple(self.oauth.access_scopes(shop)),
            idempotency_fault=idempotency_fault,
        )
        granted = self.oauth.granted(shop)
        result = execute(
            self.schema,
            doc,
            context_value=context,
            variable_values=variables,
            operation_name=operation_name,
            field_resolver=default_resolver,
            middleware=[scope_guard(granted)] if needs_guard(granted) else None,
        )
        assert isinstance(result, ExecutionResult), "resolvers are synchronous"
        actual = min(actual_of(result.data), requested)
        bucket.refund(requested - actual)
        usage.charge(operation.name.value if operation.name else operation.operation.value, actual)
        self.emit(shop, context.events)
        out: dict[str, Any] = {}
        if result.errors:
            out["errors"] = [self._error(e, shop) for e in result.errors]
        if result.data is not None or not result.errors:
            out["data"] = result.data
        out["extensions"] = self._cost_extension(shop, requested, actual)
        return 200, out, None

    def _error(self, err: GraphQLError, shop: str) -> GraphQLFormattedError | dict[str, Any]:
        """A resolver's GraphQLError as is; anything else is an emulator bug: answered like
        Shopify's internal error, logged, and counted (tests assert there are none)."""
        original = err.original_error
        if original is None or isinstance(original, GraphQLError):
            return err.formatted
        self.internal_errors.append(f"{type(original).__name__}: {original} at {err.path}")
        log.error(
            "emulator_internal_error", shop=shop, path=err.path, error=repr(original), exc_info=original
        )
        return {
            "message": "Internal error. Looks like something went wrong on our end.",
            "path": err.path,
            "extensions": {"code": "INTERNAL_SERVER_ERROR"},
        }

    # ------------------------------------------------------------------ control API

    def _store(self, request: Request) -> StoreState:
        store = self.emulator.stores.get(request.path_params["shop"])
        if store is None:
            raise ActionError(f"unknown shop {request.path_params['shop']!r}")
        return store

    def store_info(self, store: StoreState) -> dict:
        inst = self.oauth.installations[store.shop]
        return {
            "shop": store.shop,
            "token": store.token,
            "webhook_secret": store.app_secret,
            "client_id": inst.client_id,
            "client_secret": inst.client_secret,
            "scopes": sorted(inst.scopes),
            "plan": store.plan,
            "graphql_path": f"/stores/{store.shop}/admin/api/{DEFAULT_API_VERSION}/graphql.json",
        }

    def _routes(self) -> list[Route]:
        def action(fn, status: int = 200):
            async def endpoint(request: Request) -> Response:
                try:
                    raw = await request.body()
                    body = json.loads(raw) if raw else {}
                    if not isinstance(body, dict):
                        raise ActionError("body must be a JSON object")
                    result = fn(request, body)
                except json.JSONDecodeError as err:
                    return _json({"error": f"body is not valid JSON: {err}"}, 400)
                except ActionError as err:
                    code = 404 if str(err).startswith(("unknown shop", "no ")) else 422
                    return _json({"error": str(err)}, code)
                except (KeyError, TypeError, ValueError, AttributeError) as err:
                    return _json({"error": f"invalid request: {err!r}"}, 422)
                return _json(result, status)

            return endpoint

        def num_id(value: Any, type_name: str) -> int:
            if isinstance(value, int) and not isinstance(value, bool):
                return value
            if isinstance(value, str) and value.isdigit():
                return int(value)
            parsed = parse_gid(value, type_name)
            if parsed is None:
                raise ActionError(f"{value!r} is not a {type_name} id")
            return parsed

        def health(request, body):
            return {
                "stores": len(self.emulator.stores),
                "internal_errors": self.internal_errors[-20:],
                "internal_error_count": len(self.internal_errors),
            }

        def list_stores(request, body):
            return {"stores": [self.store_info(s) for s in self.emulator.stores.values()]}

        def add_store(request, body):
            scopes = body.get("scopes")
            if scopes is not None and (
                not isinstance(scopes, list) or not all(isinstance(x, str) for x in scopes)
            ):
                raise ActionError("scopes must be a list of scope handles")
            spec = StoreSpec(
                body["shop"],
                body.get("token"),
                body.get("webhook_secret"),
                body.get("plan", "standard"),
                body.get("client_id"),
                tuple(scopes) if scopes is not None else None,
            )
            if spec.shop in self.emulator.stores:
                raise ActionError(f"store {spec.shop} exists")
            if spec.plan not in PLANS:
                raise ActionError(f"unknown plan {spec.plan!r}")
            return self.store_info(self.add_store(spec))

        def seed(request, body):
            store = self._store(request)
            n = body.get("products", 0)
            if not isinstance(n, int) or n < 0 or n > 100_000:
                raise ActionError("products must be an integer 0..100000")
            catalog = body.get("catalog")
            if catalog is not None and not isinstance(catalog, list):
                raise ActionError("catalog must be a list of products")
            out = store.seed(
                products=n,
                locations=body.get("locations"),
                variants_per_product=int(body.get("variants_per_product", 2)),
                quantity=int(body.get("quantity", 10)),
                prefix=body.get("sku_prefix"),
            )
            if catalog:
                out["products"] += store.seed_catalog(catalog)
            return out

        def add_location(request, body):
            store = self._store(request)
            address = body.get("address") or {}
            if not isinstance(address, dict):
                raise ActionError("address must be an object")
            loc = store.add_location(
                str(body["name"]),
                address=address,
                fulfills_online_orders=bool(body.get("fulfills_online_orders", True)),
            )
            hooks = self.emit(store.shop, [store.location_event("locations/create", loc)])
            return {"id": gid("Location", loc.id), "name": loc.name, "webhooks": hooks}

        def deactivate_location(request, body):
            store = self._store(request)
            dest = body.get("destination_location_id")
            events = store.deactivate_location(
                num_id(request.path_params["location_id"], "Location"),
                num_id(dest, "Location") if dest is not None else None,
            )
            return events[0].payload | {"webhooks": self.emit(store.shop, events)}

        def activate_location(request, body):
            store = self._store(request)
            events = store.activate_location(num_id(request.path_params["location_id"], "Location"))
            return events[0].payload | {"webhooks": self.emit(store.shop, events)}

        def add_publication(request, body):
            store = self._store(request)
            name = str(body.get("name") or "").strip()
            if not name:
                raise ActionError("name is required")
            if any(p.name == name for p in store.publications.values()):
                raise ActionError(f"{store.shop} has a publication named {name!r}")
            pub = store.add_publication(name)
            return {"id": gid("Publication", pub.id), "name": pub.name}

        def order_id(request) -> int:
            return num_id(request.path_params["order_id"], "Order")

        def place_order(request, body):
            store = self._store(request)
            items = body.get("line_items")
            if not isinstance(items, list) or not items:
                raise ActionError("line_items must be a non-empty list")
            loc = num_id(body["location_id"], "Location") if body.get("location_id") is not None else None
            _order, events = orders.place_order(store, items, loc, email=body.get("email"))
            return events[0].payload | {"webhooks": self.emit(store.shop, events)}

        def cancel_order(request, body):
            store = self._store(request)
            _order, events = orders.cancel_order(
                store,
                order_id(request),
                restock=bool(body.get("restock", True)),
                reason=body.get("reason", "customer"),
            )
            return events[0].payload | {"webhooks": self.emit(store.shop, events)}

        def refund_order(request, body):
            store = self._store(request)
            lines = body.get("line_items")
            if not isinstance(lines, list):
                raise ActionError("line_items must be a list")
            _refund, events = orders.refund_order(store, order_id(request), lines, note=body.get("note"))
            return events[0].payload | {"webhooks": self.emit(store.shop, events)}

        def fulfill_order(request, body):
            store = self._store(request)
            events = orders.fulfill_order(store, order_id(request))
            return events[0].payload | {"webhooks": self.emit(store.shop, events)}

        def create_return(request, body):
            store = self._store(request)
            lines = body.get("line_items")
            if not isinstance(lines, list):
                raise ActionError("line_items must be a list")
            loc = body.get("location_id")
            ret, events = orders.create_return(store, order_id(request), lines)
            if body.get("process", True):
                events += orders.process_return(
                    store,
                    ret.id,
                    restock=bool(body.get("restock", True)),
                    location_id=num_id(loc, "Location") if loc is not None else None,
                    refund=bool(body.get("refund", True)),
                )
            out = payloads.return_(store, store.orders[ret.order_id], ret)
            return out | {"webhooks": self.emit(store.shop, events)}

        def process_return(request, body):
            store = self._store(request)
            loc = body.get("location_id")
            rid = num_id(request.path_params["return_id"], "Return")
            events = orders.process_return(
                store,
                rid,
                restock=bool(body.get("restock", True)),
                location_id=num_id(loc, "Location") if loc is not None else None,
                refund=bool(body.get("refund", True)),
            )
            ret = store.objects[rid]
            out = payloads.return_(store, store.orders[ret.order_id], ret)
            return out | {"webhooks": self.emit(store.shop, events)}

        def edit_order(request, body):
            store = self._store(request)
            changes, additions = body.get("changes") or [], body.get("additions") or []
            if not isinstance(changes, list) or not isinstance(additions, list):
                raise ActionError("changes and additions must be lists")
            _edit, events = orders.edit_order(
                store, order_id(request), changes, additions, restock=bool(body.get("restock", True))
            )
            return events[0].payload | {"webhooks": self.emit(store.shop, events)}

        def media_faults(request, body):
            store = self._store(request)
            unreachable = body.get("unreachable") or []
            fail_p = float(body.get("fail_p", 0.0))
            if not isinstance(unreachable, list) or not 0.0 <= fail_p <= 1.0:
                raise ActionError("unreachable must be a list of URLs and fail_p a probability")
            store.media_faults = MediaFaults(set(map(str, unreachable)), fail_p, body.get("seed"))
            if body.get("uploaded_s") is not None or body.get("processing_s") is not None:
                timing = (float(body.get("uploaded_s", 0.0)), float(body.get("processing_s", 0.0)))
                if min(timing) < 0:
                    raise ActionError("uploaded_s and processing_s must be >= 0")
                store.media_timing = timing
            return {
                "shop": store.shop,
                "unreachable": sorted(store.media_faults.unreachable),
                "fail_p": fail_p,
                "timing": store.media_timing,
            }

        def set_plan(request, body):
            store = self._store(request)
            self.set_plan(
                store.shop, body.get("plan", store.plan), body.get("bucket_size"), body.get("restore_rate")
            )
            return {
                "shop": store.shop,
                "plan": store.plan,
                "throttleStatus": self.buckets[store.shop].status(),
            }

        def snapshot(request, body):
            return self._store(request).snapshot()

        def throttle(request, body):
            store = self._store(request)
            usage = self.usage[store.shop]
            return {
                "plan": store.plan,
                "throttleStatus": self.buckets[store.shop].status(),
                "usage": {
                    "requests": usage.requests,
                    "throttled": usage.throttled,
                    "points": usage.points,
                    "by_operation": usage.by_operation,
                },
            }

        def inventory_changes(request, body):
            after = int(request.query_params.get("after", "0"))
            rows = self.level_changes(after)
            return {"changes": rows, "last": rows[-1][0] if rows else after}

        def set_inventory(request, body):
            store = self._store(request)
            available = body["available"]
            if not isinstance(available, int) or isinstance(available, bool):
                raise ActionError("available must be an integer")
            events = store.merchant_set_inventory(
                num_id(body["inventory_item_id"], "InventoryItem"),
                num_id(body["location_id"], "Location"),
                available,
            )
            return {"events": [e.topic for e in events], "webhooks": self.emit(store.shop, events)}

        def edit_product(request, body):
            store = self._store(request)
            events = store.merchant_edit_product(num_id(request.path_params["product_id"], "Product"), body)
            return events[0].payload | {"webhooks": self.emit(store.shop, events)}

        def bulk_fault(request, body):
            store = self._store(request)
            status = body.get("status")
            if status is None:
                store.bulk_fault = None
            elif status not in FAULT_STATUSES:
                raise ActionError(f"status must be one of {', '.join(sorted(FAULT_STATUSES))} or null")
            else:
                code = body.get("error_code", "INTERNAL_SERVER_ERROR" if status == "FAILED" else None)
                if code not in (None, "ACCESS_DENIED", "INTERNAL_SERVER_ERROR", "TIMEOUT"):
                    raise ActionError(
                        "error_code must be ACCESS_DENIED, INTERNAL_SERVER_ERROR, TIMEOUT or null"
                    )
                store.bulk_fault = (status, code)
            return {"shop": store.shop, "bulk_fault": store.bulk_fault}

        async def bulk_result(request: Request) -> Response:
            store = self.emulator.stores.get(request.path_params["shop"])
            op_id = request.path_params["op_id"]
            op = store.bulk_operations.get(int(op_id)) if store is not None and op_id.isdigit() else None
            if op is None or op.status != "COMPLETED":
                return _json({"error": "no such bulk operation result"}, 404)
            return Response(op.body, media_type="application/jsonl")

        return [
            Route("/stores/{shop}/admin/api/{version}/graphql.json", self.graphql, methods=["POST"]),
            Route("/_emulator/stores/{shop}/bulk_fault", action(bulk_fault), methods=["PUT"]),
            Route("/_emulator/bulk/{shop}/{op_id}.jsonl", bulk_result, methods=["GET"]),
            Route("/_emulator/health", action(health), methods=["GET"]),
            Route("/_emulator/stores", action(list_stores), methods=["GET"]),
            Route("/_emulator/stores", action(add_store, 201), methods=["POST"]),
            Route("/_emulator/stores/{shop}/seed", action(seed), methods=["POST"]),
            Route("/_emulator/stores/{shop}/locations", action(add_location, 201), methods=["POST"]),
            Route(
                "/_emulator/stores/{shop}/locations/{location_id}/deactivate",
                action(deactivate_location),
                methods=["POST"],
            ),
            Route(
                "/_emulator/stores/{shop}/locations/{location_id}/activate",
                action(activate_location),
                methods=["POST"],
            ),
            Route("/_emulator/stores/{shop}/publications", action(add_publication, 201), methods=["POST"]),
            Route("/_emulator/stores/{shop}/media", action(media_faults), methods=["PUT"]),
            Route("/_emulator/stores/{shop}/orders", action(place_order, 201), methods=["POST"]),
            Route(
                "/_emulator/stores/{shop}/orders/{order_id}/cancel", action(cancel_order), methods=["POST"]
            ),
            Route(
                "/_emulator/stores/{shop}/orders/{order_id}/refunds",
                action(refund_order, 201),
                methods=["POST"],
            ),
            Route(
                "/_emulator/stores/{shop}/orders/{order_id}/fulfill", action(fulfill_order), methods=["POST"]
            ),
            Route(
                "/_emulator/stores/{shop}/orders/{order_id}/returns",
                action(create_return, 201),
                methods=["POST"],
            ),
            Route(
                "/_emulator/stores/{shop}/returns/{return_id}/process",
                action(process_return),
                methods=["POST"],
            ),
            Route("/_emulator/stores/{shop}/orders/{order_id}/edit", action(edit_order), methods=["POST"]),
            Route("/_emulator/stores/{shop}/plan", action(set_plan), methods=["PUT"]),
            Route("/_emulator/stores/{shop}/snapshot", action(snapshot), methods=["GET"]),
            Route("/_emulator/stores/{shop}/throttle", action(throttle), methods=["GET"]),
            Route("/_emulator/inventory/changes", action(inventory_changes), methods=["GET"]),
            Route("/_emulator/stores/{shop}/inventory", action(set_inventory), methods=["POST"]),
            Route("/_emulator/stores/{shop}/products/{product_id}", action(edit_product), methods=["PATCH"]),
            *oauth_routes(self.oauth),
            *control_routes(
                self.sender,
                self.subscriptions,
                self.faults,
                shop_exists=lambda shop: shop in self.emulator.stores,
            ),
        ]


def create_app(stores: Iterable[StoreSpec | str], **options: Any) -> EmulatorApp:
    return EmulatorApp(stores, **options)
