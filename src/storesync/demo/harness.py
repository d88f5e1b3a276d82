"""The whole system on one machine, as separate OS processes, for the demo, e2e tests and bench.

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

On exit, an exception, Ctrl-C or SIGTERM: workers, then the web tier, then the emulator get
SIGTERM, and whatever is still alive after `stop_timeout` gets SIGKILL (whole group). If this
process dies without cleanup (SIGKILL), the kernel sends each child SIGTERM (PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import json
import os
import random
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from storesync.api_version import ADMIN_API_VERSION
from storesync.config import NetworkConfig
from storesync.db.embedded import own_signals
from storesync.emulator.control_client import EmulatorControl, EmulatorControlError

LOCATION_NAMES = ("Shop location", "Warehouse")
MERCHANT_ID = "demo"


class SystemStartError(RuntimeError):
    """A part of the system did not start or stopped unexpectedly; the message says which and
    ends with the tail of its log."""


# --------------------------------------------------------------------------- processes


def _set_parent_death_signal() -> None:
    """In the child between fork and exec: SIGTERM when the parent dies (Linux only)."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


@dataclass
class ManagedProcess:
    name: str
    popen: subprocess.Popen
    log_path: Path
    service: bool = True  # runs until stopped (a service exiting is a failure); False: a command

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


class ProcessSet:
    """Processes started in their own groups, stopped in reverse order of start."""

    def __init__(self, log_dir: Path, env: dict[str, str]) -> None:
        self.log_dir = log_dir
        self.env = env
        self.processes: list[ManagedProcess] = []

    def start(
        self, name: str, args: Sequence[str], *, env: dict[str, str] | None = None, service: bool = True
    ) -> ManagedProcess:
        log_path = self.log_dir / f"{name}.log"
        log = open(log_path, "ab")  # noqa: SIM115 - the child holds it; closed below after the fork
        try:
            popen = subprocess.Popen(
                [sys.executable, "-m", "storesync", *args],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env or self.env,
                start_new_session=True,
                preexec_fn=_set_parent_death_signal if sys.platform == "linux" else None,
            )
        finally:
            log.close()
        proc = ManagedProcess(name, popen, log_path, service)
        self.processes.append(proc)
        return proc

    def check_alive(self) -> None:
        for p in self.processes:
            if p.service and not p.alive():
                raise SystemStartError(
                    f"{p.name} (pid {p.pid}) exited with {p.popen.returncode}:\n{p.log_tail()}"
                )

    @staticmethod
    def _signal(proc: ManagedProcess, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)

    def stop_all(self, timeout: float) -> None:
        """Stop in dependency order: workers and commands first (they drain against the web tier,
        the emulator and Postgres), then the web tier, then the emulator. Each tier gets SIGTERM
        at once; what is alive at the deadline gets SIGKILL, and so does what is left in each
        process group (children the process may have started)."""
        deadline = time.monotonic() + timeout
        tiers = [
            [p for p in self.processes if p.name not in ("web", "emulator")],
            [p for p in self.processes if p.name == "web"],
            [p for p in self.processes if p.name == "emulator"],
        ]
        for tier in tiers:
            for proc in tier:
                if proc.alive():
                    self._signal(proc, signal.SIGTERM)
            for proc in tier:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.popen.wait(timeout=max(0.1, deadline - time.monotonic()))
                self._signal(proc, signal.SIGKILL)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.popen.wait(timeout=5)


# --------------------------------------------------------------------------- catalog


ADJECTIVES = ("Alpine", "Breezy", "Cedar", "Dune", "Ember", "Fjord", "Granite", "Harbor", "Indigo", "Juniper")
NOUNS = ("Jacket", "Tee", "Hoodie", "Cap", "Tote", "Scarf", "Sock", "Beanie", "Vest", "Short")
COLLECTIONS = ("New arrivals", "Outerwear", "Basics", "Accessories", "Sale")
SIZE_SETS = (["S", "M", "L"], ["S", "M"], ["One size"])


def demo_catalog(products: int, locations: Sequence[str], seed: int = 7) -> list[dict]:
    """A deterministic parent catalog: 1-3 variants per product, stock at every location."""
    rng = random.Random(seed)
    catalog = []
    for n in range(1, products + 1):
        title = f"{ADJECTIVES[n % len(ADJECTIVES)]} {NOUNS[(n // len(ADJECTIVES)) % len(NOUNS)]} {n}"
        sizes = SIZE_SETS[n % len(SIZE_SETS)]
        variants = []
        for size in sizes:
            sku = f"DEMO-{n:03d}-{size.replace(' ', '').upper()}"
            variants.append(
                {
                    "sku": sku,
                    "barcode": f"0{n:05d}{sizes.index(size):02d}",
                    "price": f"{19 + n % 40}.00",
                    "options": {"Size": size},
                    "available": {loc: rng.randint(5, 40) for loc in locations},
                }
            )
        catalog.append(
            {
                "title": title,
                "handle": f"demo-product-{n}",
                "vendor": "Northwind",
                "product_type": NOUNS[(n // len(ADJECTIVES)) % len(NOUNS)],
                "tags": sorted({"demo", rng.choice(("summer", "winter", "all-season"))}),
                "description_html": f"<p>{title}: made to last.</p>",
                "variants": variants,
            }
        )
    return catalog


# --------------------------------------------------------------------------- comparison


SYNCED_PRODUCT_FIELDS = ("title", "body_html", "vendor", "product_type", "status")


def _product_view(product: dict, collection_handles: dict[str, str]) -> dict:
    """The synced fields of one product of an emulator snapshot (REST shape), without store ids:
    collections by handle, variants by SKU."""
    view: dict[str, Any] = {k: product.get(k) for k in SYNCED_PRODUCT_FIELDS}
    tags = product.get("tags") or ""
    view["tags"] = sorted(
        t.strip() for t in (tags.split(",") if isinstance(tags, str) else tags) if t.strip()
    )
    view["options"] = [[o.get("name"), list(o.get("values") or [])] for o in product.get("options") or []]
    view["variants"] = sorted(
        [
            str(v.get("sku")),
            str(v.get("barcode")),
            str(v.get("price")),
            [v.get("option1"), v.get("option2"), v.get("option3")],
        ]
        for v in product.get("variants") or []
    )
    view["collections"] = sorted(str(collection_handles.get(c, c)) for c in product.get("collections") or [])
    return view


def catalog_view(snapshot: dict) -> dict[str, dict]:
    """handle -> synced fields, for every product of a store."""
    handles = {c["admin_graphql_api_id"]: c["handle"] for c in snapshot.get("collections") or []}
    return {p["handle"]: _product_view(p, handles) for p in snapshot.get("products") or []}


def inventory_view(snapshot: dict) -> dict[tuple[str, str], int]:
    """(sku, location name) -> available, for every tracked item with a SKU."""
    names = {loc["id"]: loc["name"] for loc in snapshot.get("locations") or []}
    return {
        (lvl["sku"], names.get(lvl["location_id"], lvl["location_id"])): int(lvl.get("available", 0))
        for lvl in snapshot.get("inventory_levels") or []
        if lvl.get("sku")
    }


def view_hash(view: Any) -> str:
    return hashlib.sha256(json.dumps(view, sort_keys=True, default=str).encode()).hexdigest()[:12]


@dataclass
class StoreRow:
    shop: str
    role: str
    products: int
    catalog_hash: str
    units: int  # available units over all items and locations
    catalog_matches: bool
    inventory_mismatches: list[str]  # "SKU@location: parent 5, here 4"

    @property
    def agrees(self) -> bool:
        return self.catalog_matches and not self.inventory_mismatches


@dataclass
class Comparison:
    rows: list[StoreRow]

    @property
    def agree(self) -> bool:
        return all(r.agrees for r in self.rows)

    def problems(self) -> list[str]:
        out = []
        for r in self.rows:
            if not r.catalog_matches:
                out.append(f"{r.shop}: catalog hash {r.catalog_hash} differs from the parent's")
            out += [f"{r.shop}: {m}" for m in r.inventory_mismatches[:10]]
        return out


def compare_snapshots(parent: dict, children: dict[str, dict]) -> Comparison:
    """Every child against the parent: the synced fields of the parent's products (matched by
    handle; child-only products are the child's own business) and available stock per SKU and
    location name (the location map pairs locations of the same name)."""
    p_catalog, p_levels = catalog_view(parent), inventory_view(parent)
    rows = [
        StoreRow(
            parent["shop"], "parent", len(p_catalog), view_hash(p_catalog), sum(p_levels.values()), True, []
        )
    ]
    for shop, snap in children.items():
        c_catalog, c_levels = catalog_view(snap), inventory_view(snap)
        mirrored = {h: c_catalog.get(h) for h in p_catalog}
        mismatches = [
            f"{sku}@{loc}: parent {want}, here {c_levels.get((sku, loc), 'missing')}"
            for (sku, loc), want in sorted(p_levels.items())
            if c_levels.get((sku, loc)) != want
        ]
        units = sum(c_levels.get(k, 0) for k in p_levels)
        rows.append(
            StoreRow(
                shop,
                "child",
                sum(1 for v in mirrored.values() if v is not None),
                view_hash(mirrored),
                units,
                mirrored == p_catalog,
                mismatches,
            )
        )
    return Comparison(rows)


# --------------------------------------------------------------------------- the running system


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
        import psycopg

        from storesync.queue.ops import list_jobs

        with psycopg.connect(self.env["DATABASE_URL"], autocommit=True) as conn:
            return list_jobs(conn, state="dead", limit=limit)

    def jobs_pending(self) -> int:
        """Jobs running or due now (any kind)."""
        import psycopg

        with psycopg.connect(self.env["DATABASE_URL"], autocommit=True) as conn:
            # jobs_due_or_running: periodic jobs waiting for their time do not count.
            row = conn.execute(
                "SELECT count(*) FROM jobs WHERE state = 'running' OR (state = 'queued' AND run_at <= now())"
            ).fetchone()
        return int(row[0]) if row else 0

    def compare(self) -> Comparison:
        return compare_snapshots(self.snapshot(self.parent), {c: self.snapshot(c) for c in self.children})


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for(
    predicate: Callable[[], Any],
    timeout: float,
    what: str,
    processes: ProcessSet,
    proc: ManagedProcess | None = None,
) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(httpx.HTTPError, OSError):
            result = predicate()
            if result:
                return result
        processes.check_alive()
        if time.monotonic() > deadline:
            tail = f"\n{proc.log_tail()}" if proc else ""
            raise SystemStartError(f"{what} not ready within {timeout:g}s{tail}")
        time.sleep(0.05)


def _toml_str(value: str) -> str:
    return json.dumps(value)  # a JSON string is a valid TOML basic string


# The Dev Dashboard app the demo's stores share (a new merchant's setup: one app of the
# merchant's own organization, installed on each of its stores, tokens by client credentials).
DEMO_APP = "storesync"
DEMO_CLIENT_ID = "storesync-demo-app"


def network_toml(
    emulator_url: str,
    stores: list[dict],
    locations: dict[str, dict[str, str]],
    parent: str,
    children: list[str],
    *,
    app_secret: str | None = None,
) -> str:
    """storesync.toml for the emulator's stores: with `app_secret`, every store connects by the
    client credentials grant of one app; without, by the store's static token."""
    info = {s["shop"]: s for s in stores}

    def store_block(header: str, shop: str) -> list[str]:
        s = info[shop]
        lines = [
            header,
            f"shop = {_toml_str(shop)}",
            f"admin_api_url = {_toml_str(emulator_url + s['graphql_path'])}",
        ]
        if app_secret is not None:
            lines.append(f'credentials = {{ kind = "client_credentials", app = {_toml_str(DEMO_APP)} }}')
        else:
            lines += [
                f"access_token = {_toml_str(s['token'])}",
                f"webhook_secrets = [{_toml_str(s['webhook_secret'])}]",
            ]
        if shop != parent:
            pairs = ", ".join(
                f"{_toml_str(locations[parent][name])} = {_toml_str(gid)}"
                for name, gid in locations[shop].items()
                if name in locations[parent]
            )
            lines.append(f"location_map = {{ {pairs} }}")
        return [*lines, ""]

    out = ["# Written by storesync.demo.harness for the emulator's stores.", ""]
    if app_secret is not None:
        out += [
            f"[apps.{DEMO_APP}]",
            f"client_id = {_toml_str(DEMO_CLIENT_ID)}",
            f"client_secrets = [{_toml_str(app_secret)}]",
            "",
        ]
    out += [
        "[[merchants]]",
        f"id = {_toml_str(MERCHANT_ID)}",
        'name = "Demo merchant"',
        "",
    ]
    out += store_block("[merchants.parent]", parent)
    for child in children:
        out += store_block("[[merchants.children]]", child)
    return "\n".join(out)


def _seed(
    emu: EmulatorControl,
    parent: str,
    children: list[str],
    products: int,
    child_overlap: int,
    collections: int,
    overlap_stock: int | None,
) -> dict[str, dict[str, str]]:
    """Seed the stores (no webhooks yet); returns shop -> location name -> gid."""
    try:
        return _seed_stores(emu, parent, children, products, child_overlap, collections, overlap_stock)
    except EmulatorControlError as err:
        raise SystemStartError(f"seeding: {err}") from None


def _seed_stores(
    emu: EmulatorControl,
    parent: str,
    children: list[str],
    products: int,
    child_overlap: int,
    collections: int,
    overlap_stock: int | None,
) -> dict[str, dict[str, str]]:
    locations: dict[str, dict[str, str]] = {}
    for shop in [parent, *children]:
        emu.seed(shop, 0, locations=list(LOCATION_NAMES))
        snap = emu.snapshot(shop)
        locations[shop] = {loc["name"]: loc["id"] for loc in snap["locations"]}
    catalog = demo_catalog(products, LOCATION_NAMES)
    parent_catalog = [
        {
            **p,
            "variants": [
                {**v, "available": {locations[parent][n]: q for n, q in v["available"].items()}}
                for v in p["variants"]
            ],
        }
        for p in catalog
    ]
    created = emu.seed(parent, 0, catalog=parent_catalog)
    product_ids: list[str] = created["products"]
    # Manual collections in the parent; product n belongs to collection n % k (and "Sale" if n % 7 == 0).
    names = COLLECTIONS[:collections]
    for ci, title in enumerate(names):
        members = [
            pid
            for n, pid in enumerate(product_ids, 1)
            if n % len(names) == ci or (title == "Sale" and n % 7 == 0)
        ]
        # A manual collection (2026-10): one conditions source whose selections are its members,
        # created with the first 250 (Shopify's limit per call) and the rest added by updates.
        res = emu.graphql(
            parent,
            "mutation($c: CollectionCreateInput!) { collectionCreate(collection: $c) "
            "{ collection { id sources { id } } userErrors { field message } } }",
            {
                "c": {
                    "title": title,
                    "sources": [
                        {
                            "source": {
                                "title": title,
                                "inclusion": {"selections": [{"productId": pid} for pid in members[:250]]},
                            }
                        }
                    ],
                }
            },
        )
        data = (res.get("data") or {}).get("collectionCreate") or {}
        if res.get("errors") or data.get("userErrors") or not data.get("collection"):
            raise SystemStartError(f"seeding: collectionCreate {title!r}: {res}")
        coll = data["collection"]
        for start in range(250, len(members), 250):
            more = [{"productId": pid} for pid in members[start : start + 250]]
            res = emu.graphql(
                parent,
                "mutation($c: CollectionUpdateInput!) { collectionUpdate(collection: $c) "
                "{ userErrors { field message } } }",
                {
                    "c": {
                        "id": coll["id"],
                        "sourcesToUpdate": [
                            {
                                "condition": {
                                    "id": coll["sources"][0]["id"],
                                    "inclusion": {"selectionsToAdd": more},
                                }
                            }
                        ],
                    }
                },
            )
            if res.get("errors") or (res.get("data") or {}).get("collectionUpdate", {}).get("userErrors"):
                raise SystemStartError(f"seeding: collectionUpdate {title!r}: {res}")
    # Children may already sell some of the parent's products (same SKUs, stale stock): linking finds them.
    for child in children:
        overlap = [
            {
                **p,
                "variants": [
                    {
                        **v,
                        "available": {
                            locations[child][n]: q if overlap_stock is None else overlap_stock
                            for n, q in v["available"].items()
                        },
                    }
                    for v in p["variants"]
                ],
            }
            for p in catalog[:child_overlap]
        ]
        if overlap:
            emu.seed(child, 0, catalog=overlap)
    return locations


def _subscribe(emu: EmulatorControl, shops: list[str], topics: Sequence[str], callback_url: str) -> list[str]:
    """Subscribe every shop to every topic the emulator emits; returns the topics it does not."""
    unknown: list[str] = []
    for shop in shops:
        for topic in topics:
            if topic in unknown:
                continue
            try:
                emu.subscribe(shop, topic, callback_url)
            except EmulatorControlError as err:
                if "unknown webhook topic" not in str(err):
                    raise SystemStartError(f"subscribing {shop} to {topic}: {err}") from None
                unknown.append(topic)
    return unknown


def _live_worker_pids(dsn: str) -> set[int]:
    import psycopg

    with psycopg.connect(dsn, autocommit=True, connect_timeout=5) as conn:
        rows = conn.execute(
            "SELECT pid FROM queue_workers WHERE state <> 'stopped' "
            "AND heartbeat_at > now() - interval '30 seconds'"
        ).fetchall()
    return {int(r[0]) for r in rows}


def generate_encryption_key() -> str:
    from cryptography.fernet import Fernet

    return Fernet.generate_key().decode()


@contextlib.contextmanager
def running_system(
    database_url: str,
    *,
    children: int = 3,
    products: int = 50,
    workers: int = 2,
    worker_concurrency: int = 10,
    child_overlap: int = 0,
    overlap_stock: int | None = 3,
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
) -> Iterator[RunningSystem]:
    """Start the emulator, web tier and workers against `database_url` (migrated here if it is
    behind); yield a `RunningSystem`; stop every process on the way out.

    child_overlap: each child already sells the parent's first N products (same SKUs, handles and
    fields, no collections), with `overlap_stock` units per level (None: the parent's levels).
    emulator_options: extra `storesync emulator` flags, e.g. ["--fault", "webhooks.duplicate_p=0.5"].
    subscribe: "control" declares the subscriptions through the emulator's control API (as an
    app's config would), "cli" runs `storesync webhooks sync`, "none" leaves them to the caller.
    workers=0 starts no worker (the caller runs jobs itself).
    credentials: "client_credentials" (one app installed on every store, tokens fetched by the
    engine, as a new merchant connects today) or "static" (each store's legacy token).
    token_time_scale: the emulator's issued tokens' lifetime factor (default: time_scale)."""
    if credentials not in ("client_credentials", "static"):
        raise ValueError(f"credentials must be client_credentials or static, not {credentials!r}")
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

            def control_line() -> str | None:
                for line in emulator.log_path.read_text(errors="replace").splitlines():
                    if line.startswith("control API:"):
                        return line.split()[-1].removesuffix("/_emulator/stores")
                return None

            emulator_url = _wait_for(control_line, start_timeout, "the emulator", processes, emulator)
            control = EmulatorControl(emulator_url, timeout=30.0)
            stores = control.stores()

            step("seed")
            locations = _seed(
                control, parent, child_shops, products, child_overlap, collections, overlap_stock
            )
            app_secret = None
            if credentials == "client_credentials":
                app_secret = "shpss_" + secrets.token_hex(16)
                for shop in shops:  # the one app, installed on every store of the network
                    control.configure_app(shop, client_id=DEMO_CLIENT_ID, client_secret=app_secret)
            config_file.write_text(
                network_toml(emulator_url, stores, locations, parent, child_shops, app_secret=app_secret),
                encoding="utf-8",
            )
            network = NetworkConfig.load(config_file)

            step("migrate")
            port = _free_port()
            web_url = f"http://127.0.0.1:{port}"
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
            )
            system.cli("migrate", check=True, timeout=start_timeout)
            system.cli("network", "apply", check=True, timeout=start_timeout)

            step("web")
            ops_port = _free_port()
            system.ops_url = f"http://127.0.0.1:{ops_port}"
            web = processes.start(
                "web", ["serve", "--host", "127.0.0.1", "--port", str(port), "--ops-port", str(ops_port)]
            )
            _wait_for(
                lambda: httpx.get(f"{web_url}/readyz", timeout=2, trust_env=False).status_code == 200,
                start_timeout,
                "the web tier (/readyz)",
                processes,
                web,
            )

            step("workers")
            started = [
                processes.start(f"worker-{i + 1}", ["worker", "--concurrency", str(worker_concurrency)])
                for i in range(workers)
            ]
            if started:
                _wait_for(
                    lambda: {p.pid for p in started} <= _live_worker_pids(database_url),
                    start_timeout,
                    f"{workers} worker heartbeats",
                    processes,
                    started[0],
                )

            step("subscribe")
            if subscribe == "control":
                from storesync.web.topics import HANDLED_TOPICS

                system.unsubscribed_topics = _subscribe(
                    control, shops, list(topics or HANDLED_TOPICS), system.webhook_url
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


def pid_alive(pid: int) -> bool:
    """True if `pid` is a live (non-zombie) process."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        return state not in ("Z", "X")
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True


__all__ = [
    "Comparison",
    "RunningSystem",
    "StoreRow",
    "SystemStartError",
    "compare_snapshots",
    "demo_catalog",
    "pid_alive",
    "running_system",
]
