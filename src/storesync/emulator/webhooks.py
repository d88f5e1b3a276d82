"""The emulator's webhook side: subscriptions per shop and a background sender.

Delivery follows Shopify's documented behaviour: the payload is serialised once and signed
(base64 HMAC-SHA256 of the raw body, keyed by the app's client secret); a delivery succeeds on
any 2xx answered within 5 s (1 s to connect); otherwise it is retried with exponential backoff,
8 attempts over about 4 hours, always with the original body and to the callback URL the
subscription had when the event was triggered. A subscription created through the Admin API
is removed after its deliveries keep failing. `time_scale` shrinks every one of those durations
(0.001 turns 4 hours into 14 s) so tests do not wait hours.

`DeliveryFaults` adds what a real network does on a bad day: duplicates (same webhook id
twice), reordering (a delivery held back until later ones went out), delays and drops (a
webhook that never arrives). Its random choices come from a seeded RNG, drawn in `emit` order,
so a run is reproducible.
"""

from __future__ import annotations

import asyncio
import base64
import builtins
import contextlib
import hashlib
import hmac
import itertools
import json
import random
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import aiohttp
import httpx
import structlog
from pydantic import BaseModel, ConfigDict, Field

from storesync.api_version import ADMIN_API_VERSION

log = structlog.get_logger("storesync.emulator.webhooks")

# The version the webhooks say they follow (the app's webhooks API version): storesync's own.
DEFAULT_API_VERSION = ADMIN_API_VERSION

# GraphQL `WebhookSubscriptionTopic` enum value -> REST topic (header `X-Shopify-Topic`).
TOPIC_REST_BY_ENUM: dict[str, str] = {
    "PRODUCTS_CREATE": "products/create",
    "PRODUCTS_UPDATE": "products/update",
    "PRODUCTS_DELETE": "products/delete",
    "INVENTORY_LEVELS_UPDATE": "inventory_levels/update",
    "INVENTORY_LEVELS_CONNECT": "inventory_levels/connect",
    "INVENTORY_LEVELS_DISCONNECT": "inventory_levels/disconnect",
    "INVENTORY_ITEMS_CREATE": "inventory_items/create",
    "INVENTORY_ITEMS_UPDATE": "inventory_items/update",
    "INVENTORY_ITEMS_DELETE": "inventory_items/delete",
    "ORDERS_CREATE": "orders/create",
    "ORDERS_CANCELLED": "orders/cancelled",
    "ORDERS_UPDATED": "orders/updated",
    "ORDERS_EDITED": "orders/edited",
    "ORDERS_FULFILLED": "orders/fulfilled",
    "ORDERS_PARTIALLY_FULFILLED": "orders/partially_fulfilled",
    "REFUNDS_CREATE": "refunds/create",
    "FULFILLMENT_ORDERS_ORDER_ROUTING_COMPLETE": "fulfillment_orders/order_routing_complete",
    "RETURNS_APPROVE": "returns/approve",
    "RETURNS_PROCESS": "returns/process",
    "RETURNS_CLOSE": "returns/close",
    "REVERSE_FULFILLMENT_ORDERS_DISPOSE": "reverse_fulfillment_orders/dispose",
    "LOCATIONS_CREATE": "locations/create",
    "LOCATIONS_ACTIVATE": "locations/activate",
    "LOCATIONS_DEACTIVATE": "locations/deactivate",
    "COLLECTIONS_CREATE": "collections/create",
    "COLLECTIONS_UPDATE": "collections/update",
    "COLLECTIONS_DELETE": "collections/delete",
    "APP_UNINSTALLED": "app/uninstalled",
    "SHOP_UPDATE": "shop/update",
}
TOPIC_ENUM_BY_REST: dict[str, str] = {rest: enum for enum, rest in TOPIC_REST_BY_ENUM.items()}

# Seconds between attempt k and k+1 (unscaled): doubling gaps summing to 4 hours over 8 attempts.
_FOUR_HOURS_S = 4 * 3600.0
DEFAULT_MAX_ATTEMPTS = 8


def retry_schedule(
    max_attempts: int = DEFAULT_MAX_ATTEMPTS, total_s: float = _FOUR_HOURS_S
) -> tuple[float, ...]:
    """Gaps before retries 2..max_attempts, doubling each time, summing to `total_s`."""
    gaps = max_attempts - 1
    if gaps <= 0:
        return ()
    first = total_s / (2**gaps - 1)
    return tuple(first * 2**k for k in range(gaps))


class UnknownTopicError(ValueError):
    """A topic that is neither a known GraphQL enum value nor a known REST topic."""


def rest_topic(topic: str) -> str:
    """`PRODUCTS_UPDATE` or `products/update` -> `products/update`."""
    if topic in TOPIC_ENUM_BY_REST:
        return topic
    if topic in TOPIC_REST_BY_ENUM:
        return TOPIC_REST_BY_ENUM[topic]
    raise UnknownTopicError(f"unknown webhook topic {topic!r}")


def enum_topic(topic: str) -> str:
    """`products/update` or `PRODUCTS_UPDATE` -> `PRODUCTS_UPDATE`."""
    return TOPIC_ENUM_BY_REST[rest_topic(topic)]


def sign(body: bytes, secret: str) -> str:
    """Shopify's `X-Shopify-Hmac-Sha256`: base64 of HMAC-SHA256(secret, raw body)."""
    return base64.b64encode(hmac.new(secret.encode("utf-8"), body, hashlib.sha256).digest()).decode("ascii")


def _now_iso() -> str:
    # Shopify sends e.g. 2024-08-13T15:45:05.123456Z.
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# --------------------------------------------------------------------------- subscriptions


@dataclass(frozen=True)
class Subscription:
    id: str  # gid://shopify/WebhookSubscription/N
    shop: str
    topic: str  # REST form, products/update
    callback_url: str
    format: Literal["JSON"] = "JSON"
    # "api": created by webhookSubscriptionCreate (Shopify removes these after repeated
    # failures); "config": declared in the app's config (never removed automatically).
    source: Literal["api", "config"] = "api"
    created_at: str = field(default_factory=_now_iso)

    @property
    def topic_enum(self) -> str:
        return TOPIC_ENUM_BY_REST[self.topic]

    @property
    def legacy_id(self) -> int:
        return int(self.id.rsplit("/", 1)[1])

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "shop": self.shop,
            "topic": self.topic_enum,
            "rest_topic": self.topic,
            "callback_url": self.callback_url,
            "format": self.format,
            "source": self.source,
            "created_at": self.created_at,
        }


class SubscriptionStore:
    """Webhook subscriptions of every shop in the emulator. Ids are global, like Shopify's.

    Thread-safe: the GraphQL app, the control API and tests may read it from different threads.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._by_id: dict[str, Subscription] = {}
        # Removed subscriptions with why, for the control API and tests.
        self._removed: list[tuple[Subscription, str]] = []

    def add(
        self,
        shop: str,
        topic: str,
        callback_url: str,
        *,
        format: str = "JSON",
        source: Literal["api", "config"] = "api",
    ) -> Subscription:
        """A new subscription. Raises UnknownTopicError or ValueError on bad input."""
        rest = rest_topic(topic)
        if format != "JSON":
            raise ValueError(f"format {format!r} is not supported (only JSON)")
        try:
            parsed = httpx.URL(callback_url)
        except httpx.InvalidURL as err:  # raised for control characters and the like
            raise ValueError(f"callback URL {callback_url!r} is not a URL: {err}") from None
        if parsed.scheme not in ("http", "https") or not parsed.host:
            raise ValueError(f"callback URL {callback_url!r} must be an absolute http(s) URL")
        with self._lock:
            sub = Subscription(
                id=f"gid://shopify/WebhookSubscription/{next(self._ids)}",
                shop=shop,
                topic=rest,
                callback_url=callback_url,
                source=source,
            )
            self._by_id[sub.id] = sub
        return sub

    def remove(
        self, subscription_id: str, *, shop: str | None = None, reason: str = "deleted"
    ) -> Subscription | None:
        """Remove and return the subscription, or None if absent (or of another shop)."""
        with self._lock:
            sub = self._by_id.get(subscription_id)
            if sub is None or (shop is not None and sub.shop != shop):
                return None
            del self._by_id[subscription_id]
            self._removed.append((sub, reason))
            return sub

    def get(self, subscription_id: str) -> Subscription | None:
        with self._lock:
            return self._by_id.get(subscription_id)

    def list(self, shop: str | None = None, topic: str | None = None) -> list[Subscription]:
        """Subscriptions in creation order, optionally of one shop and/or one topic (either form)."""
        rest = rest_topic(topic) if topic is not None else None
        with self._lock:
            subs = list(self._by_id.values())
        return [s for s in subs if (shop is None or s.shop == shop) and (rest is None or s.topic == rest)]

    def removed(self) -> builtins.list[tuple[Subscription, str]]:
        with self._lock:
            return list(self._removed)


# --------------------------------------------------------------------------- faults


Probability = Annotated[float, Field(ge=0.0, le=1.0)]


class DeliveryFaults(BaseModel):
    """What goes wrong with deliveries, on purpose. All zero: a perfect network.

    `delay_max_s` is wall-clock seconds (not scaled by time_scale): each delivery waits a
    uniform random 0..delay_max_s before its first attempt.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    duplicate_p: Probability = 0.0  # the same webhook (same id, same body) delivered twice
    reorder_p: Probability = 0.0  # held back until a later delivery to the same shop went out
    delay_max_s: Annotated[float, Field(ge=0.0, le=3600.0)] = 0.0
    drop_p: Probability = 0.0  # never delivered at all: a missed webhook
    seed: int | None = None
    # Longest wall-clock time a reordered delivery waits for a later one before going anyway.
    reorder_window_s: Annotated[float, Field(gt=0.0, le=3600.0)] = 2.0

    def __init__(
        self,
        duplicate_p: float = 0.0,
        reorder_p: float = 0.0,
        delay_max_s: float = 0.0,
        drop_p: float = 0.0,
        seed: int | None = None,
        **kwargs: Any,
    ) -> None:
        # Positional order, as the control API serves it.
        super().__init__(
            duplicate_p=duplicate_p,
            reorder_p=reorder_p,
            delay_max_s=delay_max_s,
            drop_p=drop_p,
            seed=seed,
            **kwargs,
        )


@dataclass(frozen=True)
class _Plan:
    """What the faults decided for one delivery, drawn when it is emitted."""

    drop: bool = False
    duplicate: bool = False
    reorder: bool = False
    delay_s: float = 0.0
    duplicate_delay_s: float = 0.0


# --------------------------------------------------------------------------- delivery log


Status = Literal["pending", "held", "retrying", "delivered", "failed", "dropped", "cancelled"]


@dataclass
class Delivery:
    """One delivery (a webhook id to one subscription) and its attempts. A duplicate sent by
    the faults is a second Delivery with the same webhook id and `duplicate=True`."""

    seq: int
    webhook_id: str
    event_id: str
    shop: str
    topic: str
    subscription_id: str
    callback_url: str
    triggered_at: str
    body: bytes = field(repr=False)
    headers: dict[str, str] = field(repr=False)
    duplicate: bool = False
    reordered: bool = False
    status: Status = "pending"
    attempts: int = 0
    last_error: str | None = None
    last_status_code: int | None = None
    delivered_at: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "id": self.webhook_id,
            "webhook_id": self.webhook_id,
            "event_id": self.event_id,
            "shop": self.shop,
            "topic": self.topic,
            "subscription_id": self.subscription_id,
            "callback_url": self.callback_url,
            "triggered_at": self.triggered_at,
            "duplicate": self.duplicate,
            "reordered": self.reordered,
            "status": self.status,
            "attempts": self.attempts,
            "last_error": self.last_error,
            "last_status_code": self.last_status_code,
            "delivered_at": self.delivered_at,
        }


_FINAL: frozenset[str] = frozenset({"delivered", "failed", "dropped", "cancelled"})


# --------------------------------------------------------------------------- sender


# Deliveries posted at once (the rest wait their turn, off the HTTP pool), and the pool's size.
SENDING_AT_ONCE = 32


class WebhookSender:
    """Fans each `emit` out to the shop's subscriptions and delivers in background tasks.

    Lives on one event loop (the emulator app's): call `start()` from it (or let the first
    `emit` do so) and `stop()` before the loop ends.
    """

    def __init__(
        self,
        app_secret_for: Callable[[str], str],
        time_scale: float = 1.0,
        faults: DeliveryFaults | None = None,
        *,
        subscriptions: SubscriptionStore | None = None,
        api_version: str = DEFAULT_API_VERSION,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        response_timeout_s: float = 5.0,
        connect_timeout_s: float = 1.0,
        # Scaled timeouts never go below this: loopback HTTP needs a few ms to answer at all.
        min_timeout_s: float = 0.2,
        # Consecutive deliveries that exhausted all attempts before an "api" subscription is
        # removed (Shopify: after 8 consecutive failures, i.e. one fully failed delivery).
        remove_after_failed_deliveries: int = 1,
        log_limit: int = 20_000,
    ) -> None:
        if time_scale <= 0:
            raise ValueError("time_scale must be > 0")
        if max_attempts < 1:
            raise ValueError("max_attempts must be >= 1")
        self.app_secret_for = app_secret_for
        self.time_scale = time_scale
        self.subscriptions = subscriptions if subscriptions is not None else SubscriptionStore()
        self.api_version = api_version
        self.max_attempts = max_attempts
        self.retry_gaps_s = retry_schedule(max_attempts)
        self.response_timeout_s = max(response_timeout_s * time_scale, min_timeout_s)
        self.connect_timeout_s = max(connect_timeout_s * time_scale, min_timeout_s)
        self.remove_after_failed_deliveries = remove_after_failed_deliveries
        self._log_limit = log_limit
        self._faults = faults or DeliveryFaults()
        self._rng = random.Random(self._faults.seed)
        # aiohttp, not httpx, for the deliveries: measured on loopback, httpx spent 0.8-1.7 ms of
        # CPU per POST (its pool checks every connection on each request and response), aiohttp
        # 0.1-0.2 ms; sending a bulk copy's webhooks was two thirds of the emulator's CPU.
        self._client: aiohttp.ClientSession | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._log: OrderedDict[int, Delivery] = OrderedDict()
        self._log_lock = threading.Lock()
        self._seq = itertools.count(1)
        self._failed_in_a_row: dict[str, int] = {}
        # Reordering: held deliveries per shop wait for a later delivery of that shop to go out.
        self._release: dict[str, asyncio.Event] = {}
        self._stopped = False
        # Deliveries in flight at once. httpx's pool scans every waiting request on each
        # connection event, so a backlog of thousands (a bulk copy's webhooks) queued in the pool
        # itself costs quadratic CPU; they wait here instead, like Shopify's own send queue.
        self._sending = asyncio.Semaphore(SENDING_AT_ONCE)

    # ----------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        if self._client is None:
            # Waiting for a free connection is our congestion, not the receiver's slowness: only
            # connecting and the answer count against the receiver (sock_connect, sock_read).
            timeout = aiohttp.ClientTimeout(
                total=None, sock_connect=self.connect_timeout_s, sock_read=self.response_timeout_s
            )
            # trust_env=False: never route deliveries through a proxy from the environment.
            self._client = aiohttp.ClientSession(
                timeout=timeout,
                trust_env=False,
                auto_decompress=False,
                connector=aiohttp.TCPConnector(limit=SENDING_AT_ONCE, ttl_dns_cache=None),
            )
        self._stopped = False

    async def stop(self) -> None:
        """Cancel what is still pending (recorded as `cancelled`) and close the HTTP client."""
        self._stopped = True
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        if self._client is not None:
            await self._client.close()
            self._client = None

    # ----------------------------------------------------------------- faults

    @property
    def faults(self) -> DeliveryFaults:
        return self._faults

    def set_faults(self, faults: DeliveryFaults) -> None:
        """Replace the faults; the RNG restarts from the new seed (reproducible runs)."""
        self._faults = faults
        self._rng = random.Random(faults.seed)

    def _plan(self) -> _Plan:
        f = self._faults
        if not (f.drop_p or f.duplicate_p or f.reorder_p or f.delay_max_s):
            return _Plan()
        rng = self._rng
        # Always draw the same number of values so one fault's setting does not shift another's.
        drop, dup, reorder, delay, dup_delay = (rng.random() for _ in range(5))
        return _Plan(
            drop=drop < f.drop_p,
            duplicate=dup < f.duplicate_p,
            reorder=reorder < f.reorder_p,
            delay_s=delay * f.delay_max_s,
            duplicate_delay_s=dup_delay * max(f.delay_max_s, 0.05),
        )

    # ----------------------------------------------------------------- emit

    async def emit(
        self, shop: str, topic: str, payload: dict[str, Any], *, event_id: str | None = None
    ) -> list[str]:
        """Queue deliveries of `payload` to every subscription of `shop` for `topic`; returns
        their webhook ids at once (delivery happens in the background)."""
        return self.emit_nowait(shop, topic, payload, event_id=event_id)

    def emit_nowait(
        self, shop: str, topic: str, payload: dict[str, Any], *, event_id: str | None = None
    ) -> list[str]:
        """`emit` for synchronous callers running on the sender's event loop (e.g. resolvers)."""
        rest = rest_topic(topic)
        subs = self.subscriptions.list(shop=shop, topic=rest)
        if not subs:
            return []
        if self._stopped:
            raise RuntimeError("WebhookSender is stopped")
        loop = asyncio.get_running_loop()
        # Serialised once: every delivery and retry sends these exact bytes.
        body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        hmac_b64 = sign(body, self.app_secret_for(shop))
        event_id = event_id or str(uuid.uuid4())
        triggered_at = _now_iso()
        webhook_ids: list[str] = []
        for sub in subs:
            webhook_id = str(uuid.uuid4())
            headers = {
                "Content-Type": "application/json",
                "User-Agent": "Shopify-Captain-Hook",
                "X-Shopify-Topic": rest,
                "X-Shopify-Hmac-Sha256": hmac_b64,
                "X-Shopify-Shop-Domain": shop,
                "X-Shopify-API-Version": self.api_version,
                "X-Shopify-Webhook-Id": webhook_id,
                "X-Shopify-Event-Id": event_id,
                "X-Shopify-Triggered-At": triggered_at,
            }
            plan = self._plan()
            # A duplicate is the same delivery (same webhook id, body and headers) sent again.
            same = {
                "webhook_id": webhook_id,
                "event_id": event_id,
                "shop": shop,
                "topic": rest,
                "subscription_id": sub.id,
                "callback_url": sub.callback_url,
                "triggered_at": triggered_at,
                "body": body,
                "headers": headers,
            }
            delivery = self._record(**same, reordered=plan.reorder)
            webhook_ids.append(webhook_id)
            if plan.drop:
                delivery.status = "dropped"
                log.info("webhook_dropped", shop=shop, topic=rest, webhook_id=webhook_id)
                continue
            self._spawn(loop, self._deliver(delivery, plan.delay_s, hold=plan.reorder))
            if plan.duplicate:
                copy = self._record(**same, duplicate=True)
                self._spawn(loop, self._deliver(copy, plan.delay_s + plan.duplicate_delay_s, hold=False))
        return webhook_ids

    def _record(self, **fields: Any) -> Delivery:
        delivery = Delivery(seq=next(self._seq), **fields)
        with self._log_lock:
            self._log[delivery.seq] = delivery
            while len(self._log) > self._log_limit:
                oldest_seq, oldest = next(iter(self._log.items()))
                if oldest.status not in _FINAL:
                    break
                del self._log[oldest_seq]
        return delivery

    def _spawn(self, loop: asyncio.AbstractEventLoop, coro: Any) -> None:
        task = loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ----------------------------------------------------------------- delivery

    async def _deliver(self, d: Delivery, delay_s: float, *, hold: bool) -> None:
        try:
            if self._client is None:
                await self.start()
            if delay_s > 0:
                await asyncio.sleep(delay_s)
            if hold:
                d.status = "held"
                event = self._release.setdefault(d.shop, asyncio.Event())
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(event.wait(), self._faults.reorder_window_s)
            await self._attempts(d, releases_held=not hold)
        except asyncio.CancelledError:
            if d.status not in _FINAL:
                d.status = "cancelled"
            raise

    def _release_held(self, shop: str) -> None:
        event = self._release.pop(shop, None)
        if event is not None:
            event.set()

    async def _attempts(self, d: Delivery, *, releases_held: bool) -> None:
        assert self._client is not None
        for attempt in range(1, self.max_attempts + 1):
            d.attempts = attempt
            d.status = "pending" if attempt == 1 else "retrying"
            try:
                async with (
                    self._sending,
                    self._client.post(
                        d.callback_url, data=d.body, headers=d.headers, allow_redirects=False
                    ) as resp,
                ):
                    await resp.read()
                d.last_status_code = resp.status
                if 200 <= resp.status < 300:
                    if releases_held:
                        self._release_held(d.shop)
                    d.status = "delivered"
                    d.last_error = None
                    d.delivered_at = _now_iso()
                    self._failed_in_a_row.pop(d.subscription_id, None)
                    return
                d.last_error = f"HTTP {resp.status}"
            except TimeoutError as err:  # aiohttp's connect and read timeouts are TimeoutErrors
                d.last_error = f"timeout ({type(err).__name__})"
            except aiohttp.ClientConnectorError as err:  # nothing accepted the connection
                d.last_error = f"ConnectError: {err}"
            except aiohttp.ClientError as err:
                d.last_error = f"{type(err).__name__}: {err}"
            if releases_held and attempt == 1:
                # This later delivery's first attempt is over: held ones may go now.
                self._release_held(d.shop)
            if attempt < self.max_attempts:
                d.status = "retrying"
                await asyncio.sleep(self.retry_gaps_s[attempt - 1] * self.time_scale)
        d.status = "failed"
        log.warning(
            "webhook_failed",
            shop=d.shop,
            topic=d.topic,
            webhook_id=d.webhook_id,
            attempts=d.attempts,
            error=d.last_error,
        )
        self._after_failed_delivery(d)

    def _after_failed_delivery(self, d: Delivery) -> None:
        count = self._failed_in_a_row.get(d.subscription_id, 0) + 1
        self._failed_in_a_row[d.subscription_id] = count
        sub = self.subscriptions.get(d.subscription_id)
        if sub is not None and sub.source == "api" and count >= self.remove_after_failed_deliveries:
            self.subscriptions.remove(
                sub.id, reason=f"removed after {count} failed deliveries: {d.last_error}"
            )
            log.warning(
                "webhook_subscription_removed", shop=sub.shop, subscription_id=sub.id, topic=sub.topic
            )

    # ----------------------------------------------------------------- observation

    def deliveries(
        self, *, shop: str | None = None, topic: str | None = None, status: str | None = None
    ) -> list[Delivery]:
        """The delivery log in emit order (snapshots are live objects: read, don't mutate)."""
        rest = rest_topic(topic) if topic is not None else None
        with self._log_lock:
            items = list(self._log.values())
        return [
            d
            for d in items
            if (shop is None or d.shop == shop)
            and (rest is None or d.topic == rest)
            and (status is None or d.status == status)
        ]

    @property
    def pending(self) -> int:
        return len(self._tasks)

    async def drain(self, timeout: float = 10.0) -> bool:
        """Wait until every delivery has finished (held ones are released first).
        True if nothing is pending, False if `timeout` seconds passed first."""
        deadline = time.monotonic() + timeout
        while self._tasks:
            for shop in list(self._release):
                self._release_held(shop)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            await asyncio.wait(list(self._tasks), timeout=min(remaining, 0.05))
        return True


def delivery_dicts(deliveries: Iterable[Delivery]) -> list[dict[str, Any]]:
    return [d.as_dict() for d in deliveries]
