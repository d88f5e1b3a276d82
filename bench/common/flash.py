"""What the whole-system benches share for placing sales and timing their propagation: the
stores' catalogs by SKU, the emulator's level log read incrementally, an open-loop sale generator,
and the lag of each sale (sale -> the parent and every sibling showing at most what it leaves)."""

from __future__ import annotations

import bisect
import math
import random
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field

import httpx

from storesync.demo.comparison import inventory_view
from storesync.demo.seeding import LOCATION_NAMES

SALE_LOCATION = LOCATION_NAMES[0]


# --------------------------------------------------------------------------- the stores


@dataclass
class Catalog:
    """SKUs, and per store the inventory item of each SKU at the sale location."""

    skus: list[str]
    item: dict[tuple[str, str], str]  # (shop, sku) -> inventory item gid
    sku_of: dict[tuple[str, str], str]  # (shop, item gid) -> sku
    variant: dict[tuple[str, str], str]  # (child, sku) -> variant gid
    location: dict[str, str]  # shop -> gid of the sale location


def read_catalog(system) -> Catalog:
    item, sku_of, variant = {}, {}, {}
    skus: set[str] = set()
    for shop in system.shops:
        for p in system.snapshot(shop)["products"]:
            for v in p["variants"]:
                iid = f"gid://shopify/InventoryItem/{v['inventory_item_id']}"
                item[(shop, v["sku"])] = iid
                sku_of[(shop, iid)] = v["sku"]
                variant[(shop, v["sku"])] = f"gid://shopify/ProductVariant/{v['id']}"
                if shop == system.parent:
                    skus.add(v["sku"])
    location = {shop: system.locations[shop][SALE_LOCATION] for shop in system.shops}
    return Catalog(sorted(skus), item, sku_of, variant, location)


class LevelLog:
    """The emulator's level log, read incrementally: per (shop, sku) at the sale location, the
    levels each store announced and when, and the latest."""

    def __init__(self, system, catalog: Catalog) -> None:
        self.system = system
        self.catalog = catalog
        self.after = 0
        self.times: dict[tuple[str, str], list[float]] = defaultdict(list)
        self.levels: dict[tuple[str, str], list[int]] = defaultdict(list)
        self.current: dict[tuple[str, str], int] = {}

    @classmethod
    def started(cls, system, catalog: Catalog) -> tuple[LevelLog, dict[str, int]]:
        """A log read up to now, with every store's current level of each SKU from its snapshot
        (the log only holds changes); and the parent's level per SKU."""
        log = cls(system, catalog)
        log.poll()
        for shop in system.shops:
            levels = inventory_view(system.snapshot(shop))  # once per store: 20,000 SKUs at scale
            for sku in catalog.skus:
                log.current[(shop, sku)] = levels.get((sku, LOCATION_NAMES[0]))
        return log, {sku: log.current[(system.parent, sku)] for sku in catalog.skus}

    def poll(self) -> None:
        while True:
            rows, self.after = self.system.emulator.level_changes(self.after)
            for _seq, shop, item, location, available, at in rows:
                if location != self.catalog.location.get(shop):
                    continue
                sku = self.catalog.sku_of.get((shop, item))
                if sku is None:
                    continue
                self.times[(shop, sku)].append(at)
                self.levels[(shop, sku)].append(available)
                self.current[(shop, sku)] = available
            if len(rows) < 50_000:
                return

    def first_at_or_below(self, shop: str, sku: str, level: int, since: float) -> float | None:
        """When the store first announced `level` or less for the SKU at or after `since`."""
        times, levels = self.times[(shop, sku)], self.levels[(shop, sku)]
        for i in range(bisect.bisect_left(times, since), len(times)):
            if levels[i] <= level:
                return times[i]
        return None


# --------------------------------------------------------------------------- the load


@dataclass
class Sale:
    at: float
    child: str
    sku: str
    ok: bool


@dataclass
class Load:
    sales: list[Sale] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    started: float = 0.0
    ended: float = 0.0


def place_sales(system, catalog: Catalog, rate: float, seconds: float, seed: int, threads: int = 8) -> Load:
    """Open loop: sale i is due at start + i / rate (sent late, never skipped, if behind)."""
    total = int(rate * seconds)
    rng = random.Random(seed)
    plan = [(system.children[i % len(system.children)], rng.choice(catalog.skus)) for i in range(total)]
    load = Load()
    lock = threading.Lock()
    next_index = [0]
    start = time.time() + 0.2

    def worker() -> None:
        with httpx.Client(base_url=system.emulator_url, timeout=30.0, trust_env=False) as http:
            while True:
                with lock:
                    i = next_index[0]
                    next_index[0] += 1
                if i >= total:
                    return
                due = start + i / rate
                wait = due - time.time()
                if wait > 0:
                    time.sleep(wait)
                child, sku = plan[i]
                body = {
                    "line_items": [{"variant_id": catalog.variant[(child, sku)], "quantity": 1}],
                    "location_id": catalog.location[child],
                }
                at = time.time()
                try:
                    resp = http.post(f"/_emulator/stores/{child}/orders", json=body)
                    ok = resp.status_code == 201
                    if not ok:
                        with lock:
                            load.errors.append(f"{resp.status_code} {resp.text[:200]}")
                except httpx.HTTPError as err:
                    ok = False
                    with lock:
                        load.errors.append(repr(err))
                with lock:
                    load.sales.append(Sale(at, child, sku, ok))

    load.started = start
    pool = [threading.Thread(target=worker, daemon=True) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    load.ended = time.time()
    load.sales.sort(key=lambda s: s.at)
    return load


# --------------------------------------------------------------------------- lags


def sale_lags(system, log: LevelLog, sales: list[Sale], levels: dict[str, int]) -> tuple[list[float], int]:
    """Seconds from each sale to the moment the parent and every sibling showed a level at or
    below what it leaves (`levels`: every store's level per SKU before the first of `sales`, all
    placed in time order); and how many never did."""
    lags: list[float] = []
    unpropagated = 0
    count: dict[str, int] = defaultdict(int)
    for s in sales:
        count[s.sku] += 1
        threshold = levels[s.sku] - count[s.sku]
        worst = 0.0
        for shop in [system.parent, *system.children]:
            if shop == s.child:
                continue
            seen = log.first_at_or_below(shop, s.sku, threshold, s.at - 1.0)
            if seen is None:
                worst = math.inf
                break
            worst = max(worst, seen - s.at)
        if math.isinf(worst):
            unpropagated += 1
        else:
            lags.append(worst)
    return lags, unpropagated
