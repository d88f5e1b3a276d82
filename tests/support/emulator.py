"""The commerce emulator on a loopback ephemeral port, for tests.

    with running_emulator(stores=["parent.myshopify.com", "child-a.myshopify.com"]) as emu:
        httpx.post(emu.graphql_url("parent.myshopify.com"), headers=emu.headers("parent.myshopify.com"), ...)

uvicorn serves the app in a background thread of the test process (starts in well under a
second), or with `in_subprocess=True` in a `storesync emulator` process of its own. Talk to
it over HTTP only: the control API (`emu.control`, an httpx.Client) places
orders, seeds catalogs, sets faults and reads snapshots.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
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
    """`app` is the in-process EmulatorApp, or None when the emulator runs in a subprocess."""

    def __init__(self, app: EmulatorApp | None, base_url: str) -> None:
        self.app = app
        self.base_url = base_url
        self.control = httpx.Client(base_url=base_url, timeout=10.0, trust_env=False)
        self._stores: dict[str, dict] | None = None

    # ------------------------------------------------------------------ addresses and secrets

    def _store_info(self, shop: str) -> dict:
        if self._stores is None or shop not in self._stores:
            listed = self._ok(self.control.get("/_emulator/stores"))["stores"]
            self._stores = {s["shop"]: s for s in listed}
        return self._stores[shop]

    def graphql_url(self, shop: str, version: str = DEFAULT_API_VERSION) -> str:
        return f"{self.base_url}/stores/{shop}/admin/api/{version}/graphql.json"

    def token(self, shop: str) -> str:
        return self._store_info(shop)["token"]

    def webhook_secret(self, shop: str) -> str:
        return self._store_info(shop)["webhook_secret"]

    def headers(self, shop: str) -> dict[str, str]:
        return {"X-Shopify-Access-Token": self.token(shop), "Content-Type": "application/json"}

    @property
    def shops(self) -> list[str]:
        return [s["shop"] for s in self._ok(self.control.get("/_emulator/stores"))["stores"]]

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
                     in_subprocess: bool = False, **options: Any) -> Iterator[EmulatorHandle]:
    """Serve a fresh emulator on 127.0.0.1:<ephemeral> for the duration of the block.

    `options` go to EmulatorApp (seed_products, require_idempotency, throttle_http_429,
    webhook_faults, graphql_faults). `time_scale` defaults to 0.001 so webhook retries take
    seconds, not hours. `in_subprocess=True` runs `storesync emulator` in its own process (its
    own core and GIL: for tests and benchmarks that load the engine in this process)."""
    if in_subprocess:
        with _subprocess_emulator(stores, time_scale, **options) as handle:
            yield handle
        return
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


@contextmanager
def _subprocess_emulator(stores, time_scale: float, *, seed_products: int = 0, require_idempotency: bool = True,
                         throttle_http_429: bool = False, webhook_faults: Any = None,
                         graphql_faults: Any = None) -> Iterator[EmulatorHandle]:
    specs = [s if isinstance(s, StoreSpec) else StoreSpec(s) for s in stores]
    if any(s.token or s.webhook_secret or s.plan != "standard" for s in specs):
        raise ValueError("in_subprocess serves --store domains only (set plans via handle.set_plan)")
    cmd = [sys.executable, "-m", "storesync", "emulator", "--port", "0", "--time-scale", str(time_scale),
           "--seed-products", str(seed_products)]
    for s in specs:
        cmd += ["--store", s.shop]
    if throttle_http_429:
        cmd.append("--throttle-429")
    if not require_idempotency:
        cmd.append("--no-idempotency-required")
    env = {**os.environ, "STORESYNC_CONFIG_FILE": os.devnull}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline() for _ in range(len(specs) + 1)]
        if not lines[-1].startswith("control API:"):
            proc.kill()
            raise RuntimeError(f"the emulator did not start: {lines} {proc.stderr.read() if proc.stderr else ''}")
        base_url = lines[-1].split()[-1].removesuffix("/_emulator/stores")
        handle = EmulatorHandle(None, base_url)
        if webhook_faults is not None or graphql_faults is not None:
            handle._ok(handle.control.put("/_emulator/faults", json={
                "graphql": graphql_faults.model_dump() if graphql_faults is not None else {},
                "webhooks": webhook_faults.model_dump() if webhook_faults is not None else {}}))
        try:
            yield handle
        finally:
            handle.control.close()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
