"""The commerce emulator on a loopback ephemeral port, for tests.

    with running_emulator(stores=["parent.myshopify.com", "child-a.myshopify.com"]) as emu:
        httpx.post(emu.graphql_url("parent.myshopify.com"), headers=emu.headers("parent.myshopify.com"), ...)

uvicorn serves the app in a background thread of the test process (starts in well under a
second). Talk to it over HTTP only: the control API (`emu.control`, an httpx.Client) places
orders, seeds catalogs, sets faults and reads snapshots.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import uvicorn

from storesync.emulator.app import DEFAULT_API_VERSION, EmulatorApp, StoreSpec

DEFAULT_STORES = ("parent.myshopify.com", "child-a.myshopify.com", "child-b.myshopify.com", "child-c.myshopify.com")


class EmulatorHandle:
    def __init__(self, app: EmulatorApp, base_url: str) -> None:
        self.app = app
        self.base_url = base_url
        self.control = httpx.Client(base_url=base_url, timeout=10.0, trust_env=False)

    # ------------------------------------------------------------------ addresses and secrets

    def graphql_url(self, shop: str, version: str = DEFAULT_API_VERSION) -> str:
        return f"{self.base_url}/stores/{shop}/admin/api/{version}/graphql.json"

    def token(self, shop: str) -> str:
        return self.app.emulator.stores[shop].token

    def webhook_secret(self, shop: str) -> str:
        return self.app.emulator.stores[shop].app_secret

    def headers(self, shop: str) -> dict[str, str]:
        return {"X-Shopify-Access-Token": self.token(shop), "Content-Type": "application/json"}

    @property
    def shops(self) -> list[str]:
        return list(self.app.emulator.stores)

    # ------------------------------------------------------------------ control API shortcuts

    def _ok(self, resp: httpx.Response) -> Any:
        if resp.status_code >= 400:
            raise AssertionError(f"{resp.request.method} {resp.request.url.path}: {resp.status_code} {resp.text}")
        return resp.json()

    def graphql(self, shop: str, query: str, variables: dict | None = None) -> dict:
        """POST a GraphQL document to `shop`; the parsed JSON body (errors included)."""
        resp = self.control.post(self.graphql_url(shop), json={"query": query, "variables": variables or {}},
                                 headers=self.headers(shop))
        return self._ok(resp)

    def snapshot(self, shop: str) -> dict:
        return self._ok(self.control.get(f"/_emulator/stores/{shop}/snapshot"))

    def seed(self, shop: str, products: int = 3, **options: Any) -> dict:
        return self._ok(self.control.post(f"/_emulator/stores/{shop}/seed", json={"products": products, **options}))

    def place_order(self, shop: str, line_items: list[dict], location_id: str | None = None) -> dict:
        body: dict[str, Any] = {"line_items": line_items}
        if location_id is not None:
            body["location_id"] = location_id
        return self._ok(self.control.post(f"/_emulator/stores/{shop}/orders", json=body))

    def cancel_order(self, shop: str, order_id: int | str, restock: bool = True) -> dict:
        return self._ok(self.control.post(f"/_emulator/stores/{shop}/orders/{order_id}/cancel",
                                          json={"restock": restock}))

    def set_inventory(self, shop: str, inventory_item_id: str, location_id: str, available: int) -> dict:
        return self._ok(self.control.post(f"/_emulator/stores/{shop}/inventory", json={
            "inventory_item_id": inventory_item_id, "location_id": location_id, "available": available}))

    def edit_product(self, shop: str, product_id: str, **changes: Any) -> dict:
        return self._ok(self.control.patch(f"/_emulator/stores/{shop}/products/{product_id.rsplit('/', 1)[-1]}",
                                           json=changes))

    def set_plan(self, shop: str, plan: str = "standard", *, bucket_size: float | None = None,
                 restore_rate: float | None = None) -> dict:
        """Change the store's plan; the overrides give a small bucket that throttles quickly."""
        body: dict[str, Any] = {"plan": plan}
        if bucket_size is not None:
            body["bucket_size"] = bucket_size
        if restore_rate is not None:
            body["restore_rate"] = restore_rate
        return self._ok(self.control.put(f"/_emulator/stores/{shop}/plan", json=body))

    def set_faults(self, graphql: dict | None = None, webhooks: dict | None = None) -> dict:
        return self._ok(self.control.put("/_emulator/faults", json={"graphql": graphql or {},
                                                                     "webhooks": webhooks or {}}))

    def subscribe(self, shop: str, topic: str, callback_url: str) -> dict:
        """A webhook subscription declared in config (Shopify never removes those)."""
        return self._ok(self.control.post("/_emulator/webhooks/subscriptions", json={
            "shop": shop, "topic": topic, "callback_url": callback_url}))

    def deliveries(self, **filters: str) -> list[dict]:
        return self._ok(self.control.get("/_emulator/webhooks/deliveries", params=filters))["deliveries"]

    def drain(self, timeout: float = 10.0) -> bool:
        return self._ok(self.control.post("/_emulator/webhooks/drain", params={"timeout": timeout}))["drained"]


def _free_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


@contextmanager
def running_emulator(stores: list[str | StoreSpec] | tuple = DEFAULT_STORES, *, time_scale: float = 0.001,
                     **options: Any) -> Iterator[EmulatorHandle]:
    """Serve a fresh emulator on 127.0.0.1:<ephemeral> for the duration of the block.

    `options` go to EmulatorApp (seed_products, require_idempotency, throttle_http_429,
    webhook_faults, graphql_faults). `time_scale` defaults to 0.001 so webhook retries take
    seconds, not hours."""
    app = EmulatorApp(stores, time_scale=time_scale, **options)
    sock = _free_socket()
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", lifespan="on", access_log=False)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="emulator", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the emulator did not start")
        time.sleep(0.005)
    handle = EmulatorHandle(app, f"http://127.0.0.1:{port}")
    try:
        yield handle
    finally:
        handle.control.close()
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
