"""The whole system on one machine, as separate OS processes, for the demo, e2e tests and bench.
The parts it composes: `processes.py` (starting and stopping them), `seeding.py` (the stores'
catalog and storesync.toml), `comparison.py` (every child against the parent).

    with running_system(dsn, children=3, products=50, workers=2) as system:
        order = system.place_order(system.children[0], sku="DEMO-001-S", quantity=1)
        system.wait_until(lambda: system.level(system.parent, "DEMO-001-S") == before - 1, timeout=10)

What runs (each in its own process group, so a terminal's Ctrl-C reaches only this process,
which then stops them in order): the commerce emulator (`storesync emulator`: one parent and N
children), the web tier (`storesync serve` on a loopback ephemeral port) and N workers
(`storesync worker`). The emulator is seeded before any webhook subscription exists (the stores
as they were before storesync arrived): the parent gets a catalog with variants, manual
collections and stock at two locations; each child gets two locations and, optionally, the
first `child_overlap` products with the same SKUs (for linking). storesync.toml (with location
maps by location name) is written to a temp dir; every process gets the same environment
(`system.env`), which `system.cli(...)` uses too.

The production layout (docs/operations.md): pass PgBouncer's URL as `database_url` and
Postgres's as `direct_url` (tests/support/postgres.py starts both). Faults a chaos run needs:
`system.replace_worker()` (SIGKILL a worker, start another), `system.restart_web()`; Postgres
and PgBouncer restarts are the caller's (tests/support).

On exit, an exception, Ctrl-C or SIGTERM: workers, then the web tier, then the emulator get
SIGTERM, and whatever is still alive after `stop_timeout` gets SIGKILL (whole group). If this
process dies without cleanup (SIGKILL), the kernel sends each child SIGTERM (PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg

from storesync.api_version import ADMIN_API_VERSION
from storesync.config import NetworkConfig
from storesync.db.embedded import own_signals
from storesync.demo.comparison import Comparison, compare_snapshots, inventory_view
from storesync.demo.processes import ManagedProcess, ProcessSet, free_port, wait_for
from storesync.demo.seeding import (
    DEMO_CLIENT_ID,
    LOCATION_NAMES,
    generate_encryption_key,
    network_toml,
    seed_stores,
    subscribe_stores,
)
from storesync.emulator.control_client import EmulatorControl
from storesync.queue import ops as queue_ops
from storesync.sync.domain.topics import TOPICS


@dataclass
class RunningSystem:
    """What `running_system` yields. `env` is every process's environment (use it for CLI runs)."""

    emulator_url: str
    web_url: str
    parent: str
    children: list[str]
    network: NetworkConfig
    config_file: Path
    env: dict[str, str]
    emulator: EmulatorControl
    processes: ProcessSet
    workdir: Path
    locations: dict[str, dict[str, str]] = field(default_factory=dict)  # shop -> location name -> gid
    # Topics storesync handles that the emulator never emits (not subscribed).
    unsubscribed_topics: list[str] = field(default_factory=list)
    # The web tier's operations listener (/metrics, detailed /readyz).
    ops_url: str = ""
    # DATABASE_DIRECT_URL when the pooled path is separate (PgBouncer), else None.
    direct_url: str | None = None

    # ------------------------------------------------------------------ addresses

    @property
    def webhook_url(self) -> str:
        return f"{self.web_url}/webhooks/shopify"

    @property
    def shops(self) -> list[str]:
        return [self.parent, *self.children]

    def graphql_url(self, shop: str) -> str:
        return self.emulator.graphql_url(shop, ADMIN_API_VERSION)

    def pids(self) -> list[int]:
        return [p.pid for p in self.processes.processes]

    @property
    def database_url(self) -> str:
        return self.env["DATABASE_URL"]

    # ------------------------------------------------------------------ processes

    def process(self, name: str) -> ManagedProcess:
        found = [p for p in self.processes.processes if p.name == name]
        if not found:
            raise KeyError(f"no running process named {name!r}")
        return found[-1]

    @property
    def workers(self) -> list[ManagedProcess]:
        return [p for p in self.processes.processes if p.name.startswith("worker-")]

    def replace_worker(
        self, worker: ManagedProcess | None = None, sig: int = signal.SIGKILL, *, wait: bool = False
    ) -> ManagedProcess:
        """Kill a worker (the first one unless named; SIGKILL: a crash, no cleanup, its jobs
        left running until their leases expire) and start another in its place (same name and
        log). `wait`: until the new one's heartbeat is in the database."""
        worker = worker or self.workers[0]
        fresh = self.processes.restart(worker, sig)
        if wait:
            self.wait_until(
                lambda: fresh.pid in _live_worker_pids(self.database_url),
                60,
                interval=0.2,
                message=f"{fresh.name}'s heartbeat",
            )
        return fresh

    def restart_web(
        self, sig: int = signal.SIGTERM, *, down_s: float = 0.0, timeout: float = 60.0
    ) -> ManagedProcess:
        """Stop the web tier (SIGTERM: graceful; SIGKILL: a crash), stay down `down_s` seconds
        (Shopify retries what it could not deliver), start it again on the same ports and wait
        for /readyz."""
        web = self.process("web")
        self.processes.kill(web, sig)
        if down_s > 0:
            time.sleep(down_s)
        fresh = self.processes.start(web.name, web.args, env=web.env)
        wait_for(
            lambda: httpx.get(f"{self.web_url}/readyz", timeout=2, trust_env=False).status_code == 200,
            timeout,
            "the web tier (/readyz) after its restart",
            self.processes,
            fresh,
        )
        return fresh

    # ------------------------------------------------------------------ waiting

    def wait_until(
        self,
        predicate: Callable[[], Any],
        timeout: float,
        *,
        interval: float = 0.05,
        message: str = "condition",
    ) -> Any:
        """Poll `predicate` until it returns something truthy (returned); TimeoutError after
        `timeout` s. Fails at once if a process of the system died."""
        deadline = time.monotonic() + timeout
        while True:
            result = predicate()
            if result:
                return result
            self.processes.check_alive()
            if time.monotonic() > deadline:
                raise TimeoutError(f"{message} not reached within {timeout:g}s")
            time.sleep(interval)

    # ------------------------------------------------------------------ control API

    @property
    def control(self) -> httpx.Client:
        return self.emulator.control

    def graphql(self, shop: str, query: str, variables: dict | None = None) -> dict:
        return self.emulator.graphql(shop, query, variables)

    def snapshot(self, shop: str) -> dict:
        return self.emulator.snapshot(shop)

    def variant_by_sku(self, shop: str, sku: str, snapshot: dict | None = None) -> dict:
        snap = snapshot or self.snapshot(shop)
        for p in snap["products"]:
            for v in p.get("variants") or []:
                if v.get("sku") == sku:
                    return v
        raise KeyError(f"no variant with SKU {sku!r} in {shop}")

    def product_by_handle(self, shop: str, handle: str, snapshot: dict | None = None) -> dict:
        snap = snapshot or self.snapshot(shop)
        for p in snap["products"]:
            if p.get("handle") == handle:
                return p
        raise KeyError(f"no product {handle!r} in {shop}")

    def level(
        self, shop: str, sku: str, location: str = LOCATION_NAMES[0], snapshot: dict | None = None
    ) -> int | None:
        """`available` of the SKU at the named location, or None if the store lacks it."""
        return inventory_view(snapshot or self.snapshot(shop)).get((sku, location))

    def place_order(
        self,
        child: str,
        sku: str | None = None,
        quantity: int = 1,
        *,
        variant_id: str | None = None,
        location: str = LOCATION_NAMES[0],
        line_items: list[dict] | None = None,
    ) -> dict:
        """A customer order in `child` (orders/create and inventory_levels/update follow)."""
        if line_items is None:
            if variant_id is None:
                if sku is None:
                    raise ValueError("place_order needs sku, variant_id or line_items")
                variant_id = f"gid://shopify/ProductVariant/{self.variant_by_sku(child, sku)['id']}"
            line_items = [{"variant_id": variant_id, "quantity": quantity}]
        return self.emulator.place_order(child, line_items, self.locations[child][location])

    def cancel_order(self, shop: str, order_id: int | str, restock: bool = True) -> dict:
        return self.emulator.cancel_order(shop, order_id, restock)

    def edit_product(self, shop: str, handle_or_id: str, **changes: Any) -> dict:
        """A merchant's edit in the admin (products/update follows)."""
        pid = handle_or_id
        if not str(pid).startswith("gid://") and not str(pid).isdigit():
            pid = self.product_by_handle(shop, handle_or_id)["admin_graphql_api_id"]
        return self.emulator.edit_product(shop, str(pid), **changes)

    def edit_parent_product(self, handle_or_id: str, **changes: Any) -> dict:
        return self.edit_product(self.parent, handle_or_id, **changes)

    def set_inventory(self, shop: str, sku: str, available: int, location: str = LOCATION_NAMES[0]) -> dict:
        item = self.variant_by_sku(shop, sku)["inventory_item_id"]
        return self.emulator.set_inventory(shop, item, self.locations[shop][location], available)

    def set_faults(self, graphql: dict | None = None, webhooks: dict | None = None) -> dict:
        return self.emulator.set_faults(graphql, webhooks)

    def set_plan(
        self,
        shop: str,
        plan: str = "standard",
        *,
        bucket_size: float | None = None,
        restore_rate: float | None = None,
    ) -> dict:
        return self.emulator.set_plan(shop, plan, bucket_size=bucket_size, restore_rate=restore_rate)

    def deliveries(self, **filters: str) -> list[dict]:
        return self.emulator.deliveries(**filters)

    def drain_webhooks(self, timeout: float = 10.0) -> bool:
        return self.emulator.drain(timeout)

    # ------------------------------------------------------------------ the engine

    def cli(
        self, *args: str, timeout: float = 120.0, check: bool = False, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess:
        """Run `storesync ARGS` with the system's environment (plus `env`); output captured as text."""
        done = subprocess.run(
            [sys.executable, "-m", "storesync", *args],
            env={**self.env, **(env or {})},
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
        if check and done.returncode != 0:
            raise RuntimeError(
                f"storesync {' '.join(args)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
            )
        return done

    def start_cli(self, name: str, *args: str, env: dict[str, str] | None = None) -> ManagedProcess:
        """`storesync ARGS` in the background, in its own group, stopped with the system;
        its output goes to `<workdir>/<name>.log`. `env` adds to the system's environment."""
        return self.processes.start(name, args, env={**self.env, **(env or {})}, service=False)

    def dead_jobs(self, limit: int = 10) -> list[dict]:
        """Dead-lettered jobs, newest first (kind, last_error, ...)."""
        with psycopg.connect(self.env["DATABASE_URL"], autocommit=True) as conn:
            return queue_ops.list_jobs(conn, state="dead", limit=limit)

    def jobs_pending(self) -> int:
        """Jobs running or due now (any kind; periodic jobs waiting for their time do not count)."""
        with psycopg.connect(self.env["DATABASE_URL"], autocommit=True) as conn:
            return queue_ops.count_due_or_running(conn)

    def compare(self) -> Comparison:
        """Every child against the parent (`comparison.compare_snapshots`), with the merchant's
        synced metafield namespaces and each child's configured sales channels."""
        found = self.network.store(self.parent)
        namespaces: list[str] = []
        channels: dict[str, list[str]] = {}
        if found is not None:
            merchant = found[0]
            namespaces = list(merchant.sync.metafield_namespaces)
            for child in merchant.children:
                own = child.catalog.channels if child.catalog is not None else None
                configured = own if own is not None else merchant.sync.channels
                if configured is not None:
                    channels[child.shop] = configured
        return compare_snapshots(
            self.snapshot(self.parent),
            {c: self.snapshot(c) for c in self.children},
            namespaces=namespaces,
            channels=channels,
        )


def _live_worker_pids(dsn: str) -> set[int]:
    with psycopg.connect(dsn, autocommit=True, connect_timeout=5) as conn:
        return {w.pid for w in queue_ops.live_workers(conn, within_seconds=30.0)}


@contextlib.contextmanager
def running_system(
    database_url: str,
    *,
    direct_url: str | None = None,
    children: int = 3,
    products: int = 50,
    workers: int = 2,
    worker_concurrency: int = 10,
    child_overlap: int = 0,
    overlap_stock: int | None = 3,
    stock: tuple[int, int] = (5, 40),
    collections: int = 5,
    emulator_options: Sequence[str] = (),
    plan: str = "standard",
    time_scale: float = 0.001,
    subscribe: str = "control",
    topics: Sequence[str] | None = None,
    extra_env: dict[str, str] | None = None,
    start_timeout: float = 60.0,
    stop_timeout: float = 10.0,
    log_level: str = "info",
    workdir: Path | None = None,
    on_step: Callable[[str], None] | None = None,
    credentials: str = "client_credentials",
    token_time_scale: float | None = None,
    install: Sequence[str] = (),
    merchant_sync: dict | None = None,
    child_catalog: dict[str, dict] | None = None,
    catalog_extras: bool = False,
    child_settings: Mapping[str, Mapping[str, str]] | None = None,
) -> Iterator[RunningSystem]:
    """Start the emulator, web tier and workers against `database_url` (migrated here if it is
    behind); yield a `RunningSystem`; stop every process on the way out.

    direct_url: `DATABASE_DIRECT_URL` for every process, with `database_url` then PgBouncer in
    transaction mode (the production layout of docs/operations.md); None: one URL for both paths.

    child_overlap: each child already sells the parent's first N products (same SKUs, handles and
    fields, no collections), with `overlap_stock` units per level (None: the parent's levels).
    stock: the range the parent's levels are drawn from.
    emulator_options: extra `storesync emulator` flags, e.g. ["--fault", "webhooks.duplicate_p=0.5"].
    subscribe: "control" declares the subscriptions through the emulator's control API (as an
    app's config would), "cli" runs `storesync webhooks sync`, "none" leaves them to the caller.
    workers=0 starts no worker (the caller runs jobs itself).
    credentials: "client_credentials" (one app installed on every store, tokens fetched by the
    engine, as a new merchant connects today) or "static" (each store's legacy token).
    token_time_scale: the emulator's issued tokens' lifetime factor (default: time_scale).
    install: stores (with client_credentials) whose app is not of their own organization: they
    connect by its authorization code grant, which the caller starts at `system.web_url +
    "/auth/install?shop=..."` before their jobs run (until then they are not connected).
    merchant_sync: `[merchants.sync]` settings (fields, metafield_namespaces, catalog rules);
    child_catalog: child shop -> its own catalog rules (docs/sync.md); catalog_extras: every third
    parent product with media, metafields and variant fields (`seeding.enrich_catalog`).
    child_settings: more keys of a child's storesync.toml table, e.g.
    {"child-b.myshopify.com": {"stock_changes": "report"}}."""
    if credentials not in ("client_credentials", "static"):
        raise ValueError(f"credentials must be client_credentials or static, not {credentials!r}")
    if install and credentials != "client_credentials":
        raise ValueError("install needs credentials='client_credentials' (the stores share one app)")
    step = on_step or (lambda _msg: None)
    shops = ["parent.myshopify.com"] + [
        f"child-{chr(ord('a') + i)}.myshopify.com" if i < 26 else f"child-{i}.myshopify.com"
        for i in range(children)
    ]
    parent, child_shops = shops[0], shops[1:]
    tmp = tempfile.TemporaryDirectory(prefix="storesync-system-") if workdir is None else None
    root = Path(tmp.name) if tmp else Path(workdir)  # type: ignore[arg-type]
    root.mkdir(parents=True, exist_ok=True)
    config_file = root / "storesync.toml"
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("STORESYNC_", "DATABASE_", "PROMETHEUS_MULTIPROC"))
    }
    env.update(
        {
            "DATABASE_URL": database_url,
            **({"DATABASE_DIRECT_URL": direct_url} if direct_url else {}),
            "STORESYNC_CONFIG_FILE": str(config_file),
            "STORESYNC_ENCRYPTION_KEY": generate_encryption_key(),
            "STORESYNC_LOG_LEVEL": log_level,
            "STORESYNC_LOG_FORMAT": "json",
            "STORESYNC_QUEUE_POLL_INTERVAL": "0.2",
            "STORESYNC_QUEUE_SCHEDULER_INTERVAL": "0.5",
            "STORESYNC_QUEUE_DRAIN_TIMEOUT": str(max(1.0, stop_timeout - 3)),
            "STORESYNC_QUEUE_BACKOFF_BASE": "0.2",
            "STORESYNC_QUEUE_BACKOFF_CAP": "5",
            # The backfill's link job for copies whose create webhook is late (30 s in production,
            # where Shopify's deliveries can lag): the emulator's come within a second.
            "STORESYNC_SYNC_LINK_PENDING_AFTER_S": "2",
            # Media uploaded to a child are looked at again (a FAILED one uploaded again): the
            # emulator processes them in milliseconds at its time scale.
            "STORESYNC_SYNC_MEDIA_CHECK_AFTER_S": "1",
            "PYTHONUNBUFFERED": "1",
        }
    )
    for k, v in (extra_env or {}).items():
        env[k] = v
    processes = ProcessSet(root, env)
    control = None
    try:
        with own_signals():
            step("emulator")
            emu_env = {**env, "STORESYNC_CONFIG_FILE": os.devnull}
            emulator = processes.start(
                "emulator",
                [
                    "emulator",
                    "--port",
                    "0",
                    "--time-scale",
                    str(time_scale),
                    "--plan",
                    plan,
                    *(["--token-time-scale", str(token_time_scale)] if token_time_scale else []),
                    *[a for s in shops for a in ("--store", s)],
                    *emulator_options,
                ],
                env=emu_env,
            )
            # The schema does not depend on the stores: it is migrated while the emulator starts
            # and is seeded (awaited at the "migrate" step).
            migrating = processes.start("migrate", ["migrate"], service=False)

            def control_line() -> str | None:
                for line in emulator.log_path.read_text(errors="replace").splitlines():
                    if line.startswith("control API:"):
                        return line.split()[-1].removesuffix("/_emulator/stores")
                return None

            emulator_url = wait_for(control_line, start_timeout, "the emulator", processes, emulator)
            control = EmulatorControl(emulator_url, timeout=30.0)
            stores = control.stores()

            step("seed")
            locations = seed_stores(
                control,
                parent,
                child_shops,
                products,
                child_overlap,
                collections,
                overlap_stock,
                stock,
                catalog_extras=catalog_extras,
            )
            app_secret = None
            port = free_port()
            web_url = f"http://127.0.0.1:{port}"
            if credentials == "client_credentials":
                app_secret = "shpss_" + secrets.token_hex(16)
                for shop in shops:  # the one app, installed on every store of the network
                    control.configure_app(
                        shop,
                        client_id=DEMO_CLIENT_ID,
                        client_secret=app_secret,
                        client_credentials=shop not in install,
                        **({"redirect_urls": [f"{web_url}/auth/callback"]} if shop in install else {}),
                    )
            config_file.write_text(
                network_toml(
                    emulator_url,
                    stores,
                    locations,
                    parent,
                    child_shops,
                    app_secret=app_secret,
                    install=install,
                    redirect_uri=f"{web_url}/auth/callback" if install else None,
                    merchant_sync=merchant_sync,
                    child_catalog=child_catalog,
                    child_settings=child_settings,
                ),
                encoding="utf-8",
            )
            network = NetworkConfig.load(config_file)

            step("migrate")
            env["STORESYNC_PUBLIC_WEBHOOK_URL"] = f"{web_url}/webhooks/shopify"
            system = RunningSystem(
                emulator_url,
                web_url,
                parent,
                child_shops,
                network,
                config_file,
                env,
                control,
                processes,
                root,
                locations,
                direct_url=direct_url,
            )
            processes.wait_command(migrating, start_timeout)
            system.cli("network", "apply", check=True, timeout=start_timeout)

            step("web")
            ops_port = free_port()
            system.ops_url = f"http://127.0.0.1:{ops_port}"
            web = processes.start(
                "web", ["serve", "--host", "127.0.0.1", "--port", str(port), "--ops-port", str(ops_port)]
            )
            # The workers need neither the web tier nor each other: they start while it does.
            started = [
                processes.start(f"worker-{i + 1}", ["worker", "--concurrency", str(worker_concurrency)])
                for i in range(workers)
            ]
            wait_for(
                lambda: httpx.get(f"{web_url}/readyz", timeout=2, trust_env=False).status_code == 200,
                start_timeout,
                "the web tier (/readyz)",
                processes,
                web,
            )

            step("workers")
            if started:
                wait_for(
                    lambda: {p.pid for p in started} <= _live_worker_pids(database_url),
                    start_timeout,
                    f"{workers} worker heartbeats",
                    processes,
                    started[0],
                )

            step("subscribe")
            if subscribe == "control":
                system.unsubscribed_topics = subscribe_stores(
                    control, shops, list(topics or [t.name for t in TOPICS]), system.webhook_url
                )
            elif subscribe == "cli":
                system.cli("webhooks", "sync", check=True, timeout=start_timeout)
            elif subscribe != "none":
                raise ValueError(f"subscribe must be control, cli or none, not {subscribe!r}")
            step("ready")
            yield system
    finally:
        step("stopping")
        processes.stop_all(stop_timeout)
        if control is not None:
            control.close()
        if tmp is not None:
            tmp.cleanup()
