"""bench/chaos: the whole system under every fault at once, then judged by the stores' own records.

The production layout of docs/operations.md (`DATABASE_URL` through a real PgBouncer in
transaction mode, `DATABASE_DIRECT_URL` straight to Postgres), the emulator with 1 parent and 5
children (linked: every child already sells the parent's products), the web tier and workers as
separate processes (demo harness). For `--duration` seconds (600):

- load: POS sales in every child at both locations; cancellations with restock; refunds with
  restock (unfulfilled units: restock type cancel; shipped ones: return); returns of shipped
  units processed with restock; parent edits (title, tags); new parent products;
- faults, all at once: 20% duplicate webhooks, reordering, 1% dropped, 5% GraphQL 5xx, timeouts
  (the answer lost after the write landed), 429s and small rate-limit buckets; a worker
  SIGKILLed every ~10 s and replaced; the web tier, PgBouncer and Postgres restarted now and then.

Then the faults stop, the deliveries and the queue drain, `storesync reconcile` runs, and the check
reads every store's snapshot: for every SKU and location, parent = start - sold + restocked
(counted from the children's own orders, refunds and returns: what the stores accepted); every
child equals the parent (levels and synced catalog); no dead job; every order line sold once in
the ledger. Exit status 1 on any lost unit, double-applied sale, divergent level, catalog
difference or dead job.

    .venv/bin/python bench/chaos/run.py [--duration 600] [--seed 1] [--drop-p 0.01] [--json]

Postgres: a dedicated embedded server in .storesync/chaos-pgdata (restarted by the run), or
with DATABASE_URL set, that server and `--postgres-restart-command` (a shell command that
restarts it, e.g. "pg_ctlcluster 16 main restart"); the run creates and uses its own database.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import signal
import sys
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "src"))

import httpx
import psycopg

from storesync.demo.comparison import catalog_view, compare_snapshots, inventory_view, stock_moves
from storesync.demo.harness import RunningSystem, running_system
from storesync.demo.processes import SystemStartError
from storesync.demo.seeding import LOCATION_NAMES
from storesync.emulator.control_client import EmulatorControl, EmulatorControlError
from tests.support.pgbouncer import PgBouncer
from tests.support.postgres import CommandPostgres, DedicatedPostgres, PgServer, RestartablePostgres

DATABASE = "storesync_chaos"
PGDATA = ROOT / ".storesync" / "chaos-pgdata"

PRODUCT_SET = """mutation($input: ProductSetInput!) { productSet(input: $input, synchronous: true) {
  product { id } userErrors { field message } } }"""


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- what the run did


@dataclass
class Activity:
    sales: int = 0
    units_sold: int = 0
    sales_refused: int = 0  # the store refused the order (not enough stock): nothing was sold
    cancels: int = 0
    refunds: int = 0
    returns: int = 0
    edits: int = 0
    new_products: int = 0
    worker_kills: int = 0
    web_restarts: int = 0
    postgres_restarts: int = 0
    pgbouncer_restarts: int = 0
    unexpected_exits: list[str] = field(default_factory=list)
    refused_to_start: int = 0  # a process started while the database was down (exit 2)
    action_errors: Counter = field(default_factory=Counter)
    # webhook id -> (shop, what caused it), from the control actions' answers
    caused: dict[str, tuple[str, str]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def note(self, shop: str, what: str, answer: dict) -> None:
        with self.lock:
            for ids in (answer.get("webhooks") or {}).values():
                for wid in ids:
                    self.caused[wid] = (shop, what)


@dataclass
class PlacedOrder:
    shop: str
    order_id: str
    lines: list[dict]  # [{id, quantity}]
    state: str = "open"  # open, fulfilled, closed (cancelled, refunded in full or returned)


# --------------------------------------------------------------------------- load


class Load(threading.Thread):
    """Customers and merchants: `rate` actions per second, drawn from a seeded RNG."""

    def __init__(self, system: RunningSystem, activity: Activity, rng: random.Random, rate: float) -> None:
        super().__init__(name="load", daemon=True)
        self.system = system
        self.activity = activity
        self.rng = rng
        self.rate = rate
        self.stop = threading.Event()
        self.control = EmulatorControl(system.emulator_url, timeout=60.0)
        self.orders: list[PlacedOrder] = []
        self.fulfilled: list[PlacedOrder] = []
        self.new_levels: dict[tuple[str, str], int] = {}  # (sku, location name) -> start
        self.variants: dict[str, dict[str, str]] = {}  # child -> sku -> variant gid
        self.handles: list[str] = []
        self.product_ids: dict[str, str] = {}
        self.new_count = 0
        self.edits = 0
        self._refresh_variants()

    def _refresh_variants(self) -> None:
        for child in self.system.children:
            snap = self.control.snapshot(child)
            self.variants[child] = {
                v["sku"]: v["admin_graphql_api_id"]
                for p in snap["products"]
                for v in p.get("variants") or []
                if v.get("sku")
            }
        parent = self.control.snapshot(self.system.parent)
        self.product_ids = {p["handle"]: p["admin_graphql_api_id"] for p in parent["products"]}
        self.handles = sorted(self.product_ids)

    def run(self) -> None:
        actions = [
            (self.sale, 70),
            (self.cancel, 7),
            (self.refund, 6),
            (self.return_, 6),
            (self.edit, 8),
            (self.new_product, 1),
        ]
        funcs, weights = zip(*actions, strict=True)
        next_at = time.monotonic()
        last_refresh = time.monotonic()
        while not self.stop.is_set():
            action = self.rng.choices(funcs, weights)[0]
            try:
                action()
            except EmulatorControlError as err:
                with self.activity.lock:
                    self.activity.action_errors[f"{action.__name__}: {str(err)[:80]}"] += 1
            if self.new_count and time.monotonic() - last_refresh > 30:
                last_refresh = time.monotonic()
                self._refresh_variants()  # new products copied to the children become sellable
            next_at += self.rng.expovariate(self.rate)
            self.stop.wait(max(0.0, next_at - time.monotonic()))

    def sale(self) -> None:
        child = self.rng.choice(self.system.children)
        sku = self.rng.choice(sorted(self.variants[child]))
        location = self.rng.choice(LOCATION_NAMES)
        quantity = self.rng.choice((1, 1, 1, 2))
        try:
            answer = self.control.place_order(
                child,
                [{"variant_id": self.variants[child][sku], "quantity": quantity}],
                self.system.locations[child][location],
            )
        except EmulatorControlError as err:
            if "available" in str(err):
                self.activity.sales_refused += 1
                return
            raise
        self.activity.note(child, f"sale {answer['admin_graphql_api_id']}", answer)
        self.activity.sales += 1
        self.activity.units_sold += quantity
        self.orders.append(
            PlacedOrder(
                child,
                answer["admin_graphql_api_id"],
                [{"id": li["id"], "quantity": li["quantity"]} for li in answer["line_items"]],
            )
        )

    def _pick(self, pool: list[PlacedOrder]) -> PlacedOrder | None:
        open_ = [o for o in pool[-200:] if o.state in ("open", "fulfilled")]
        return self.rng.choice(open_) if open_ else None

    def cancel(self) -> None:
        order = self._pick([o for o in self.orders if o.state == "open"])
        if order is None:
            return
        answer = self.control.cancel_order(order.shop, order.order_id, restock=True)
        order.state = "closed"
        self.activity.note(order.shop, f"cancel {order.order_id}", answer)
        self.activity.cancels += 1

    def refund(self) -> None:
        """Units back to stock with a refund: unfulfilled ones (restock type cancel) or, for a
        shipped order, returned ones (restock type return)."""
        order = self._pick(self.orders)
        if order is None:
            return
        line = order.lines[0]
        kind = "return" if order.state == "fulfilled" else "cancel"
        answer = self.control.refund_order(
            order.shop,
            order.order_id,
            [{"line_item_id": line["id"], "quantity": line["quantity"], "restock_type": kind}],
        )
        order.state = "closed"
        self.activity.note(order.shop, f"refund {order.order_id}", answer)
        self.activity.refunds += 1

    def return_(self) -> None:
        """A shipped order comes back: fulfilled, then a return processed with restock."""
        order = self._pick([o for o in self.orders if o.state == "open"])
        if order is None:
            return
        self.activity.note(
            order.shop, f"fulfil {order.order_id}", self.control.fulfill_order(order.shop, order.order_id)
        )
        order.state = "fulfilled"
        if self.rng.random() < 0.5:
            return  # shipped and kept (a later refund may take it back with restock type return)
        answer = self.control.return_order(
            order.shop,
            order.order_id,
            [{"line_item_id": li["id"], "quantity": li["quantity"]} for li in order.lines],
            process=True,
            restock=True,
        )
        order.state = "closed"
        self.activity.note(order.shop, f"return {order.order_id}", answer)
        self.activity.returns += 1

    def edit(self) -> None:
        handle = self.rng.choice(self.handles)
        self.edits += 1
        changes = {"title": f"{handle.replace('-', ' ').title()} rev {self.edits}"}
        if self.rng.random() < 0.3:
            changes["tags"] = f"chaos,rev-{self.edits % 5}"
        answer = self.control.edit_product(self.system.parent, self.product_ids[handle], **changes)
        self.activity.note(self.system.parent, f"edit {handle}", answer)
        self.activity.edits += 1

    def new_product(self) -> None:
        """A merchant adds a product in the parent's admin (productSet: products/create)."""
        if self.new_count >= 20:
            return
        self.new_count += 1
        n = self.new_count
        handle = f"chaos-new-{n}"
        locs = self.system.locations[self.system.parent]
        stock = {name: 300 + 10 * n + i for i, name in enumerate(LOCATION_NAMES)}
        variables = {
            "input": {
                "title": f"Chaos new {n}",
                "handle": handle,
                "vendor": "Northwind",
                "productOptions": [{"name": "Size", "values": [{"name": "S"}, {"name": "M"}]}],
                "variants": [
                    {
                        "optionValues": [{"optionName": "Size", "name": size}],
                        "sku": f"CHAOS-{n:02d}-{size}",
                        "price": "12.00",
                        "inventoryQuantities": [
                            {"locationId": locs[name], "name": "available", "quantity": q}
                            for name, q in stock.items()
                        ],
                    }
                    for size in ("S", "M")
                ],
            }
        }
        for attempt in range(8):  # the merchant's admin retries what Shopify answered 5xx or 429
            try:
                res = self.control.graphql(self.system.parent, PRODUCT_SET, variables)
            except EmulatorControlError:
                time.sleep(0.5 * (attempt + 1))
                continue
            if res.get("errors"):
                time.sleep(0.5 * (attempt + 1))
                continue
            if res["data"]["productSet"]["userErrors"]:
                raise EmulatorControlError(f"productSet: {res['data']['productSet']['userErrors']}")
            for size in ("S", "M"):
                for name, q in stock.items():
                    self.new_levels[(f"CHAOS-{n:02d}-{size}", name)] = q
            self.product_ids[handle] = res["data"]["productSet"]["product"]["id"]
            self.handles.append(handle)
            self.activity.new_products += 1
            return
        raise EmulatorControlError(f"productSet {handle}: still failing after 8 attempts")


# --------------------------------------------------------------------------- process faults


@dataclass
class Schedule:
    """When each restart happens (seconds from the start of the load)."""

    worker_every: float
    web: list[float]
    pgbouncer: list[float]
    postgres: list[float]

    @classmethod
    def for_duration(cls, duration: float, worker_every: float) -> Schedule:
        def times(period: float, first_fraction: float) -> list[float]:
            first = min(period, duration * first_fraction)
            out, t = [], first
            while t < duration - 5:
                out.append(t)
                t += period
            return out

        return cls(worker_every, times(100, 0.35), times(120, 0.2), times(150, 0.55))


class Monkey(threading.Thread):
    """Kills and restarts processes on the schedule; as a service manager would, it restarts a
    process that exited on its own (counted: that is a finding)."""

    def __init__(
        self,
        system: RunningSystem,
        postgres: RestartablePostgres,
        bouncer: PgBouncer,
        activity: Activity,
        schedule: Schedule,
        rng: random.Random,
    ) -> None:
        super().__init__(name="monkey", daemon=True)
        self.system, self.postgres, self.bouncer = system, postgres, bouncer
        self.activity, self.schedule, self.rng = activity, schedule, rng
        self.stop = threading.Event()
        self.errors: list[str] = []

    def run(self) -> None:
        started = time.monotonic()
        pending = sorted(
            [(t, "web") for t in self.schedule.web]
            + [(t, "pgbouncer") for t in self.schedule.pgbouncer]
            + [(t, "postgres") for t in self.schedule.postgres]
        )
        next_kill = self.schedule.worker_every * self.rng.uniform(0.7, 1.3)
        web_signal = signal.SIGTERM
        while not self.stop.wait(0.25):
            now = time.monotonic() - started
            try:
                self.supervise()
                if now >= next_kill:
                    next_kill = now + self.schedule.worker_every * self.rng.uniform(0.7, 1.3)
                    victim = self.rng.choice(self.system.workers)
                    self.system.replace_worker(victim, signal.SIGKILL)
                    self.activity.worker_kills += 1
                while pending and pending[0][0] <= now:
                    _, what = pending.pop(0)
                    log(f"restarting {what}")
                    if what == "web":
                        self.restart_web(web_signal)
                        web_signal = signal.SIGKILL if web_signal == signal.SIGTERM else signal.SIGTERM
                        self.activity.web_restarts += 1
                    elif what == "pgbouncer":
                        self.bouncer.restart(down_s=0.5)
                        self.activity.pgbouncer_restarts += 1
                    else:
                        self.postgres.restart(down_s=1.0)
                        self.activity.postgres_restarts += 1
            except Exception as err:  # recorded and reported; the run goes on
                self.errors.append(f"{type(err).__name__}: {str(err)[:300]}")
                log(f"monkey: {self.errors[-1]}")

    def restart_web(self, sig: int) -> None:
        try:
            self.system.restart_web(sig, down_s=1.0)
        except SystemStartError:
            # A process exited while the web tier came back: the web tier itself or a worker
            # replaced meanwhile, started while Postgres restarted (exit 2 by design). Do what the
            # service manager does until /readyz answers; supervise() counts what exited and why.
            deadline = time.monotonic() + 90
            while not self.web_ready():
                if time.monotonic() > deadline:
                    raise
                self.supervise()
                time.sleep(0.5)

    def web_ready(self) -> bool:
        try:
            return httpx.get(f"{self.system.web_url}/readyz", timeout=2, trust_env=False).status_code == 200
        except httpx.HTTPError:
            return False

    def supervise(self) -> None:
        """What a service manager does (deploy/systemd: Restart=always, RestartSec=2s): start again a
        process that exited. One that refused to start because the database was unreachable
        (exit 2, as documented) is expected while Postgres restarts; any other exit is a finding."""
        for proc in list(self.system.processes.processes):
            if proc.service and not proc.alive():
                code = proc.popen.returncode
                if code == 2 and "cannot reach the database" in proc.log_tail(5):
                    self.activity.refused_to_start += 1
                else:
                    self.activity.unexpected_exits.append(
                        f"{proc.name} exited {code}: {proc.log_tail(3)[-300:]}"
                    )
                    log(f"{proc.name} exited on its own ({code}): restarting it")
                time.sleep(2.0)
                self.system.processes.restart(proc)
        if not self.bouncer.running:
            self.activity.unexpected_exits.append("pgbouncer exited")
            self.bouncer.start()


# --------------------------------------------------------------------------- settling and checking


def unsettled(system: RunningSystem) -> int:
    """Jobs running, due, retrying (waiting out a backoff) or due within 15 s; parked ones aside."""
    with psycopg.connect(system.direct_url or system.database_url, autocommit=True) as conn:
        return conn.execute(
            "SELECT count(*) FROM jobs WHERE payload->>'parked_for' IS NULL AND (state = 'running' "
            "OR (state = 'queued' AND (attempt > 0 OR run_at <= now() + interval '15 seconds')))"
        ).fetchone()[0]


def unsettled_kinds(system: RunningSystem) -> dict[str, int]:
    with psycopg.connect(system.direct_url or system.database_url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT kind || ' ' || state || CASE WHEN run_at > now() THEN ' later' ELSE '' END, count(*) "
            "FROM jobs WHERE payload->>'parked_for' IS NULL AND (state = 'running' "
            "OR (state = 'queued' AND (attempt > 0 OR run_at <= now() + interval '15 seconds'))) "
            "GROUP BY 1 ORDER BY 2 DESC LIMIT 4"
        ).fetchall()
    return dict(rows)


def settle(system: RunningSystem, timeout: float) -> float:
    """Every delivery handled and the queue quiet; the seconds it took."""
    started = time.monotonic()
    deadline = started + timeout
    quiet_since = None
    next_log = started + 10
    while time.monotonic() < deadline:
        if time.monotonic() > next_log:
            next_log += 10
            retrying = Counter(
                (d["last_error"] or "")[:50] for d in system.emulator.deliveries(status="retrying")
            )
            log(f"settling: {unsettled_kinds(system)}; deliveries retrying: {dict(retrying.most_common(3))}")
        drained = system.emulator.drain(min(20.0, max(1.0, deadline - time.monotonic())))
        if drained and unsettled(system) == 0:
            quiet_since = quiet_since or time.monotonic()
            if time.monotonic() - quiet_since > 3:
                return time.monotonic() - started
        else:
            quiet_since = None
        time.sleep(0.5)
    with psycopg.connect(system.direct_url or system.database_url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT kind, state, attempt, count(*), max(errors->-1->>'message') FROM jobs "
            "WHERE state IN ('queued', 'running') GROUP BY 1, 2, 3 ORDER BY 4 DESC LIMIT 10"
        ).fetchall()
    raise NotSettled(f"not settled within {timeout:g} s: {unsettled(system)} jobs left: {rows}")


class NotSettled(Exception):
    """The queue did not drain in time: the check still runs (and fails), saying so."""


def deliveries_by_status(control: EmulatorControl, status: str) -> list[dict]:
    return control.deliveries(status=status)


@dataclass
class Check:
    levels_checked: int = 0
    lost_units: int = 0  # |parent - (start - sold + restocked)| summed over levels
    parent_too_high: int = 0  # a sale not applied (or a restock applied twice)
    parent_too_low: int = 0  # a sale applied twice (or a restock not applied)
    parent_levels_off: list[str] = field(default_factory=list)
    sale_lines: int = 0
    sale_lines_missing: list[str] = field(default_factory=list)  # order lines not in the ledger
    missing_with_dropped_create: int = 0  # ...of which the orders/create was never delivered
    # Units the stores restocked that no applied ledger restock covers (per level, summed).
    restocks_missing: int = 0
    double_applied_sales: list[str] = field(default_factory=list)
    unfinished_ledger: int = 0
    divergent_levels: list[str] = field(default_factory=list)  # child != parent
    catalogs_differ: list[str] = field(default_factory=list)
    dead_jobs: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not (
            self.lost_units
            or self.sale_lines_missing
            or self.double_applied_sales
            or self.unfinished_ledger
            or self.divergent_levels
            or self.catalogs_differ
            or self.dead_jobs
        )


def check(
    system: RunningSystem, start: dict[tuple[str, str], int], new_levels: dict, dropped_orders: set[str]
) -> Check:
    out = Check()
    parent = system.snapshot(system.parent)
    children = {c: system.snapshot(c) for c in system.children}
    expected = {**start, **new_levels}
    sold: Counter = Counter()
    restocked: Counter = Counter()
    sale_lines: dict[tuple[str, str], tuple[str, str, int, str]] = {}
    for child, snap in children.items():
        moves = stock_moves(snap)
        sold.update(moves.sold)
        restocked.update(moves.restocked)
        order_of = {
            f"gid://shopify/LineItem/{li['id']}": o["admin_graphql_api_id"]
            for o in snap["orders"]
            for li in o["line_items"]
        }
        for line, (sku, loc, qty) in moves.sale_lines.items():
            sale_lines[(child, line)] = (sku, loc, qty, order_of[line])
    actual = inventory_view(parent)
    for key, start_level in sorted(expected.items()):
        want = start_level - sold[key] + restocked[key]
        have = actual.get(key)
        out.levels_checked += 1
        if have != want:
            diff = (have or 0) - want
            out.lost_units += abs(diff)
            if diff > 0:
                out.parent_too_high += diff
            else:
                out.parent_too_low += -diff
            out.parent_levels_off.append(
                f"{key[0]}@{key[1]}: parent {have}, start {start_level} - sold {sold[key]} "
                f"+ restocked {restocked[key]} = {want}"
            )
    comparison = compare_snapshots(parent, children)
    for row in comparison.rows:
        out.divergent_levels += [f"{row.shop}: {m}" for m in row.inventory_mismatches]
        if not row.catalog_matches:
            p_view = catalog_view(parent)
            c_view = catalog_view(children[row.shop])
            differ = [h for h in p_view if c_view.get(h) != p_view[h]]
            out.catalogs_differ.append(f"{row.shop}: {len(differ)} products differ, e.g. {differ[:3]}")
    with psycopg.connect(system.direct_url or system.database_url, autocommit=True) as conn:
        ledger = {
            (shop, line): (n, applied)
            for shop, line, n, applied in conn.execute(
                "SELECT child_shop, order_line_id, count(*), count(*) FILTER (WHERE status = 'applied') "
                "FROM sync_inventory_ledger WHERE kind = 'sale' GROUP BY 1, 2"
            )
        }
        ledger_restocked = {
            (item, location): units
            for item, location, units in conn.execute(
                "SELECT parent_item_id, parent_location_id, sum(applied_delta) FROM sync_inventory_ledger "
                "WHERE kind = 'restock' AND status = 'applied' GROUP BY 1, 2"
            )
        }
        out.unfinished_ledger = conn.execute(
            "SELECT count(*) FROM sync_inventory_ledger WHERE status <> 'applied'"
        ).fetchone()[0]
        out.dead_jobs = [
            f"{kind}: {(msg or '')[:160]}"
            for kind, msg in conn.execute(
                "SELECT kind, errors->-1->>'message' FROM jobs WHERE state = 'dead' ORDER BY id"
            )
        ]
    names = {loc["id"]: loc["name"] for loc in parent["locations"]}
    level_keys = {
        (lvl["inventory_item_id"], lvl["location_id"]): (lvl["sku"], names.get(lvl["location_id"]))
        for lvl in parent["inventory_levels"]
    }
    by_sku = {level_keys[k]: units for k, units in ledger_restocked.items() if k in level_keys}
    out.restocks_missing = sum(max(0, units - by_sku.get(key, 0)) for key, units in restocked.items())
    out.sale_lines = len(sale_lines)
    for (child, line), (sku, loc, qty, order) in sorted(sale_lines.items()):
        n, applied = ledger.get((child, line), (0, 0))
        if applied == 0:
            out.sale_lines_missing.append(f"{child} {line} ({sku}@{loc} x{qty}, {order})")
            if order in dropped_orders:
                out.missing_with_dropped_create += 1
        elif n > 1 or applied > 1:
            out.double_applied_sales.append(f"{child} {line}: {n} ledger entries")
    return out


# --------------------------------------------------------------------------- the run


def fresh_database(server: PgServer) -> None:
    with psycopg.connect(server.dsn("postgres"), autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{DATABASE}"')


def open_postgres(args) -> tuple[RestartablePostgres, DedicatedPostgres | None]:
    url = os.environ.get("DATABASE_URL")
    if url:
        if not args.postgres_restart_command:
            raise SystemExit(
                "with DATABASE_URL set, give --postgres-restart-command (a shell command that restarts "
                "that server): the chaos run restarts Postgres"
            )
        return CommandPostgres(url, args.postgres_restart_command), None
    dedicated = DedicatedPostgres(PGDATA, {"fsync": "off", "full_page_writes": "off"})
    dedicated.start()
    return dedicated, dedicated


def run(args) -> dict:
    rng = random.Random(args.seed)
    load_before = os.getloadavg()
    log("starting Postgres")
    postgres, dedicated = open_postgres(args)
    bouncer = None
    try:
        fresh_database(postgres.address)
        bouncer = PgBouncer(
            postgres.address.host,
            postgres.address.port,
            postgres.address.user,
            postgres.address.password,
            pool_size=20,
        )
        bouncer.start()
        direct = postgres.address.dsn(DATABASE)
        log("starting the system")
        with running_system(
            bouncer.dsn(DATABASE),
            direct_url=direct,
            children=args.children,
            products=args.products,
            workers=args.workers,
            collections=0,
            child_overlap=args.products,
            overlap_stock=None,
            stock=(300, 500),
            time_scale=args.time_scale,
            token_time_scale=args.token_lifetime / 86400,  # client credentials tokens last 24 h
            extra_env={"STORESYNC_POOL_MAX_SIZE": "12"},
            workdir=Path(args.workdir) if args.workdir else None,
            on_step=lambda s: log(f"harness: {s}"),
        ) as system:
            return chaos(args, system, postgres, bouncer, rng, load_before)
    finally:
        if bouncer is not None:
            bouncer.close()
        if dedicated is not None:
            dedicated.close()


def chaos(args, system: RunningSystem, postgres, bouncer: PgBouncer, rng: random.Random, load_before) -> dict:
    system.cli("link", check=True, timeout=120)
    system.wait_until(lambda: system.compare().agree, timeout=60, interval=0.5, message="linked stores agree")
    start = inventory_view(system.snapshot(system.parent))
    activity = Activity()
    control = system.emulator
    faults = {
        "webhooks": {
            "duplicate_p": args.duplicate_p,
            "reorder_p": args.reorder_p,
            "drop_p": args.drop_p,
            "delay_max_s": 0.3,
            "seed": args.seed,
        },
        "graphql": {
            "error_5xx_p": args.error_5xx_p,
            "timeout_p": args.timeout_p,
            "timeout_hang_s": 11.0,  # past the engine's 10 s client timeout: the answer is lost
            "http_429_p": args.http_429_p,
            "seed": args.seed,
        },
    }
    control.set_faults(**faults)
    for shop in system.shops:  # throttling: buckets that run dry under the load
        control.set_plan(shop, "standard", bucket_size=200, restore_rate=100)
    load = Load(system, activity, random.Random(rng.random()), args.rate)
    monkey = Monkey(
        system,
        postgres,
        bouncer,
        activity,
        Schedule.for_duration(args.duration, args.kill_every),
        random.Random(rng.random()),
    )
    dropped: dict[str, dict] = {}
    failed: dict[str, dict] = {}
    log(f"chaos for {args.duration:g}s")
    started = time.monotonic()
    load.start()
    monkey.start()
    try:
        while time.monotonic() - started < args.duration:
            time.sleep(min(10.0, max(0.1, args.duration - (time.monotonic() - started))))
            with contextlib.suppress(EmulatorControlError, OSError):
                for d in deliveries_by_status(control, "dropped"):
                    dropped[d["webhook_id"]] = d
            log(
                f"{time.monotonic() - started:.0f}s: {activity.sales} sales, {activity.cancels} cancels, "
                f"{activity.refunds} refunds, {activity.returns} returns, {activity.edits} edits, "
                f"{activity.worker_kills} kills, {len(dropped)} dropped"
            )
    finally:
        load.stop.set()
        monkey.stop.set()
        load.join(60)
        monkey.join(120)
    chaos_s = time.monotonic() - started
    log("faults off; settling")
    control.set_faults()
    for shop in system.shops:
        control.set_plan(shop, "standard")
    monkey.supervise()
    not_settled = None
    reconcile_exit, reconcile_tail, settle_s, reconcile_s = None, [], args.settle_timeout, 0.0
    try:
        settle_s = settle(system, args.settle_timeout)
    except NotSettled as err:  # judged as it is, without reconcile: a failure, reported as one
        not_settled = str(err)
        log(not_settled)
    for d in deliveries_by_status(control, "dropped"):
        dropped[d["webhook_id"]] = d
    for d in deliveries_by_status(control, "failed"):
        failed[d["webhook_id"]] = d
    if not_settled is None:
        log("storesync reconcile")
        reconcile_started = time.monotonic()
        done = system.cli("reconcile", timeout=args.settle_timeout)
        reconcile_s = time.monotonic() - reconcile_started
        reconcile_exit, reconcile_tail = done.returncode, done.stdout.strip().splitlines()[-8:]
        try:
            settle(system, args.settle_timeout)
        except NotSettled as err:
            not_settled = f"after reconcile: {err}"
            log(not_settled)
    lost_deliveries = {**dropped, **failed}
    dropped_orders = {
        activity.caused[w][1].split(" ", 1)[1]
        for w, d in lost_deliveries.items()
        if d["topic"] == "orders/create" and w in activity.caused
    }
    result = check(system, start, load.new_levels, dropped_orders)
    return {
        "args": vars(args),
        "load_before": load_before,
        "load_after": os.getloadavg(),
        "chaos_s": chaos_s,
        "settle_s": settle_s,
        "reconcile_s": reconcile_s,
        "reconcile_exit": reconcile_exit,
        "reconcile_tail": reconcile_tail,
        "not_settled": not_settled,
        "activity": {
            f.name: getattr(activity, f.name) for f in fields(activity) if f.name not in ("caused", "lock")
        },
        "deliveries_lost": Counter(d["topic"] for d in lost_deliveries.values()),
        "deliveries_dropped": len(dropped),
        "deliveries_failed": len(failed),
        "monkey_errors": monkey.errors,
        "check": asdict(result),
        "passed": result.passed and not monkey.errors and not activity.unexpected_exits and not not_settled,
    }


def report(r: dict) -> None:
    a, c = r["activity"], r["check"]
    print(
        f"chaos run: {r['args']['duration']:g} s, seed {r['args']['seed']}, {r['args']['children']} children, "
        f"{r['args']['products']} products, {r['args']['workers']} workers; load average (1 min) "
        f"{r['load_before'][0]:.1f} before, {r['load_after'][0]:.1f} after, on {os.cpu_count()} CPUs"
    )
    print(
        f"did: {a['sales']} sales ({a['units_sold']} units, {a['sales_refused']} refused by the store), "
        f"{a['cancels']} cancels, {a['refunds']} refunds, {a['returns']} returns, {a['edits']} parent edits, "
        f"{a['new_products']} new products; {a['worker_kills']} workers SIGKILLed, {a['web_restarts']} web "
        f"restarts, {a['pgbouncer_restarts']} PgBouncer restarts, {a['postgres_restarts']} Postgres restarts "
        f"({a['refused_to_start']} process starts refused while the database was unreachable, then retried)"
    )
    lost = ", ".join(f"{t} {n}" for t, n in sorted(r["deliveries_lost"].items())) or "none"
    print(
        f"webhooks never delivered: {r['deliveries_dropped']} dropped, {r['deliveries_failed']} failed "
        f"every retry ({lost})"
    )
    if r["not_settled"]:
        print(f"NOT SETTLED ({r['not_settled'][:300]})")
    if r["reconcile_exit"] is not None:
        print(
            f"settled {r['settle_s']:.0f} s after the faults stopped; `storesync reconcile` took "
            f"{r['reconcile_s']:.0f} s (exit {r['reconcile_exit']}): {' | '.join(r['reconcile_tail'][-3:])}"
        )
    print()
    print("| check | result |")
    print("|---|---|")
    print(
        f"| lost units (parent vs start - sold + restocked, {c['levels_checked']} levels) | "
        f"{c['lost_units']} (parent too high {c['parent_too_high']}, too low {c['parent_too_low']}) |"
    )
    print(
        f"| sale lines not in the ledger ({c['sale_lines']} sold) | {len(c['sale_lines_missing'])} "
        f"({c['missing_with_dropped_create']} with their orders/create never delivered) |"
    )
    print(f"| restocked units no applied ledger restock covers | {c['restocks_missing']} |")
    print(f"| double-applied sales (ledger) | {len(c['double_applied_sales'])} |")
    print(f"| ledger entries not applied | {c['unfinished_ledger']} |")
    print(f"| divergent child levels | {len(c['divergent_levels'])} |")
    print(f"| children whose catalog differs | {len(c['catalogs_differ'])} |")
    print(f"| dead jobs | {len(c['dead_jobs'])} |")
    print(f"| processes that exited on their own | {len(a['unexpected_exits'])} |")
    for title, items in (
        ("parent levels off", c["parent_levels_off"]),
        ("sale lines missing", c["sale_lines_missing"]),
        ("double-applied", c["double_applied_sales"]),
        ("divergent", c["divergent_levels"]),
        ("catalogs", c["catalogs_differ"]),
        ("dead jobs", c["dead_jobs"]),
        ("exited on their own", a["unexpected_exits"]),
        ("harness errors", r["monkey_errors"]),
        ("load errors", [f"{k} x{n}" for k, n in a["action_errors"].items()]),
    ):
        if items:
            print(f"\n{title} ({len(items)}):")
            for item in items[:15]:
                print(f"  {item}")
    print("\nPASSED" if r["passed"] else "\nFAILED")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=600.0, help="seconds of chaos [600]")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--children", type=int, default=5)
    parser.add_argument("--products", type=int, default=20)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--rate", type=float, default=3.0, help="customer and merchant actions per second")
    parser.add_argument("--kill-every", type=float, default=10.0, help="seconds between worker SIGKILLs")
    parser.add_argument("--duplicate-p", type=float, default=0.2)
    parser.add_argument("--reorder-p", type=float, default=0.1)
    parser.add_argument("--drop-p", type=float, default=0.01)
    parser.add_argument("--error-5xx-p", type=float, default=0.05)
    parser.add_argument("--timeout-p", type=float, default=0.01)
    parser.add_argument("--http-429-p", type=float, default=0.02)
    parser.add_argument(
        "--time-scale",
        type=float,
        default=0.01,
        help="the emulator's time scale: Shopify's 4 hours of webhook retries last 144 s at 0.01",
    )
    parser.add_argument(
        "--token-lifetime",
        type=float,
        default=120.0,
        help="seconds an issued access token lasts (Shopify: 24 h), so tokens expire during the run",
    )
    parser.add_argument(
        "--settle-timeout", type=float, default=900.0, help="seconds to drain once the faults stop [900]"
    )
    parser.add_argument("--postgres-restart-command", help="with DATABASE_URL: how to restart that server")
    parser.add_argument("--json", action="store_true", help="the whole result as JSON on stdout")
    parser.add_argument("--result-file", help="also write the whole result as JSON to this file")
    parser.add_argument("--workdir", help="keep the processes' logs and storesync.toml here")
    args = parser.parse_args()
    if args.duration > 3600:
        parser.error("--duration is at most 3600 s")
    result = run(args)
    if args.result_file:
        Path(args.result_file).write_text(json.dumps(result, indent=2, default=list), encoding="utf-8")
    if args.json:
        print(json.dumps(result, indent=2, default=list))
    else:
        report(result)
    raise SystemExit(0 if result["passed"] else 1)


if __name__ == "__main__":
    main()
