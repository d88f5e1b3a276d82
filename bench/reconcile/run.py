"""bench/reconcile: reconciliation of a large catalog, on the whole system (emulator, web tier, 2
workers, embedded Postgres): 1 parent and 3 children with 10,000 linked products (~20,000 SKUs,
stock at two locations), every store on the standard plan (2,000-point bucket, 100 points/s).

Drift is injected while the stores' webhooks are dropped (missed webhooks): 1% of the parent's
products renamed and 1% of its levels (at the sale location) changed, so every child misses both.
Then the periodic pass (`sync.reconcile`, as the scheduler enqueues it) runs, while live sales go on
in the children (--sales-rate, default 2/s, round robin, a random SKU each). Measured per pass:

- time to repair: from enqueueing the pass to the moment its repair jobs are all done, the stores
  then confirmed equal (every child = the parent, on their snapshots);
- points: what each store's bucket was charged during that time (the emulator's count), minus
  what the live sales alone cost over the same time (their rate measured just before the pass);
- live-sale lag during the pass (sale -> parent and every sibling updated), p50 / p99.

Passes: `incremental` (the products updated since the previous pass, every level; the periodic
job's usual pass) and `full` (every product: the first pass of a day). A first full pass right
after linking records what each child shows (no repairs) and is timed too.

    .venv/bin/python bench/reconcile/run.py [--products 10000] [--children 3] [--drift 0.01]
    .venv/bin/python bench/reconcile/run.py --quick      # 1,000 products

Goal (issue 16): the drift repaired within 10 minutes on standard plans, live-sale lag p99 < 2 s.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))

import psycopg

from common import metrics
from common.database import fresh_database
from common.flash import LevelLog, Load, place_sales, read_catalog, sale_lags
from storesync.config import Settings
from storesync.db import database_settings
from storesync.demo.harness import running_system
from storesync.demo.seeding import MERCHANT_ID
from storesync.queue import enqueue
from storesync.sync.adapters.jobqueue import job_spec
from storesync.sync.domain.routing import reconcile_job

BENCH_DATABASE = "storesync_bench_reconcile"
STOCK = 10_000
GOAL_S = 600.0


def inject_drift(system, catalog, share: float, seed: int, tag: str) -> dict:
    """Rename `share` of the parent's products and change `share` of its levels at the sale
    location while every webhook is dropped: no child hears of it."""
    rng = random.Random(seed)
    parent = system.snapshot(system.parent)
    products = parent["products"]
    renamed = rng.sample(products, max(1, int(len(products) * share)))
    skus = rng.sample(catalog.skus, max(1, int(len(catalog.skus) * share)))
    system.set_faults(webhooks={"drop_p": 1.0})
    try:
        for p in renamed:
            system.emulator.edit_product(
                system.parent, p["admin_graphql_api_id"], title=f"{p['title']} ({tag})"
            )
        for sku in skus:
            item = catalog.item[(system.parent, sku)]
            system.emulator.set_inventory(system.parent, item, catalog.location[system.parent], STOCK // 2)
        system.drain_webhooks(30)
    finally:
        system.set_faults()
    return {"products": len(renamed), "levels": len(skus), "skus": skus}


def run_pass(
    system,
    dsn: str,
    catalog,
    log: LevelLog,
    levels: dict,
    *,
    full: bool,
    rate: float,
    cap: float,
    drifted: frozenset[str] = frozenset(),
) -> dict:
    """One periodic pass with live sales going on; `levels` (sku -> level) is kept current. The
    lag is over sales of SKUs whose level did not drift (a drifted one waits for its repair)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        if full:
            # reconciliation_passes: forget the last full pass, so this one is full
            conn.execute("UPDATE sync_reconcile_passes SET full_at = NULL")
        # Live sales alone first: their points per second, to tell the pass's own points apart.
        use0 = metrics.usage(system)
        baseline_s = 15.0
        place_sales(system, catalog, rate, baseline_s, seed=7)
        use1 = metrics.usage(system)
        baseline = {s: (use1[s]["points"] - use0[s]["points"]) / baseline_s for s in system.shops}
        log.poll()
        system.wait_until(lambda: system.jobs_pending() == 0, timeout=60, interval=0.5, message="queue idle")
        log.poll()
        before = {sku: log.current[(system.parent, sku)] for sku in catalog.skus}
        load = Load()
        stop = threading.Event()

        def sell() -> None:
            i = 0
            while not stop.is_set():
                chunk = place_sales(system, catalog, rate, 5.0, seed=100 + i)
                load.sales += chunk.sales
                i += 1

        seller = threading.Thread(target=sell, daemon=True)
        use_start = metrics.usage(system)
        started = time.time()
        with conn.transaction():
            job = enqueue(conn, job_spec(reconcile_job(MERCHANT_ID), MERCHANT_ID))
        seller.start()
        done_s = None
        causes: list[str] = []
        while time.time() - started < cap:
            # pass_jobs: the pass is two jobs, sync.reconcile (the sales half) then
            # sync.reconcile_levels (catalog and levels), which enqueues itself again while the
            # sale jobs it waits for run; each tags its repairs with its own cause.
            chain = conn.execute(
                "SELECT id, state FROM jobs WHERE id = %s OR (kind = 'sync.reconcile_levels' AND id > %s "
                "AND payload->>'merchant_id' = %s) ORDER BY id",
                (job.job_id, job.job_id, MERCHANT_ID),
            ).fetchall()
            if any(state == "dead" for _, state in chain):
                errors = conn.execute(
                    "SELECT kind, errors FROM jobs WHERE id = ANY(%s) AND state = 'dead'",
                    ([i for i, _ in chain],),
                ).fetchall()
                raise SystemExit(f"a job of the reconcile pass died: {errors}")
            causes = [f"reconcile:job:{i}" for i, _ in chain]
            # repair_jobs_left: the pass's repairs not done yet (its jobs carry its causes)
            left = conn.execute(
                "SELECT count(*) FROM jobs WHERE payload->>'cause' = ANY(%s) AND state IN ('queued', 'running')",
                (causes,),
            ).fetchone()[0]
            levels_done = len(chain) > 1 and all(state == "succeeded" for _, state in chain)
            if levels_done and left == 0:
                done_s = time.time() - started
                break
            time.sleep(0.5)
        use_end = metrics.usage(system)
        stop.set()
        seller.join()
        repairs = conn.execute(
            "SELECT kind, count(*) FROM jobs WHERE payload->>'cause' = ANY(%s) GROUP BY kind ORDER BY kind",
            (causes,),
        ).fetchall()
        elapsed = time.time() - started
    system.wait_until(lambda: system.jobs_pending() == 0, timeout=120, interval=0.5, message="queue idle")
    time.sleep(1.0)
    log.poll()
    ok = sorted((s for s in load.sales if s.ok), key=lambda s: s.at)
    lags, unpropagated = sale_lags(system, log, [s for s in ok if s.sku not in drifted], before)
    for s in ok:
        before[s.sku] -= 1
    levels.update(before)
    spent = {
        shop: use_end[shop]["points"] - use_start[shop]["points"] - baseline[shop] * elapsed
        for shop in system.shops
    }
    agree = system.compare().agree
    return {
        "pass": "full" if full else "incremental",
        "repaired_s": done_s,
        "repair_jobs": dict(repairs),
        "points": {shop: round(v) for shop, v in spent.items()},
        # what each store's points went to during the pass (live sales included), by operation
        "points_by_operation": {
            shop: {
                op: row[1] - use_start[shop]["by_operation"].get(op, [0, 0])[1]
                for op, row in sorted(use_end[shop]["by_operation"].items())
                if row[1] > use_start[shop]["by_operation"].get(op, [0, 0])[1]
            }
            for shop in system.shops
        },
        "live_sales": len(ok),
        "lag_p50_s": metrics.pct(lags, 0.5),
        "lag_p99_s": metrics.pct(lags, 0.99),
        "unpropagated": unpropagated,
        "stores_equal": agree,
        "load_after": metrics.load(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--products", type=int, default=10_000)
    parser.add_argument("--children", type=int, default=3)
    parser.add_argument("--drift", type=float, default=0.01, help="share of products and of levels [0.01]")
    parser.add_argument("--sales-rate", type=float, default=2.0, help="live sales/s during the passes [2]")
    parser.add_argument("--cap", type=float, default=900.0, help="seconds a pass may take [900]")
    parser.add_argument("--quick", action="store_true", help="1,000 products")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--workdir", type=Path, help="keep the processes' logs there")
    parser.add_argument("--log-level", default="warning", help="the processes' log level [warning]")
    args = parser.parse_args()
    if args.quick:
        args.products = 1000
    if args.products > 20_000 or args.cap > 1800:
        parser.error("the bench must stay bounded: --products <= 20000, --cap <= 1800")

    settings = Settings.load().model_copy(update={"embedded_database": BENCH_DATABASE})
    if settings.pooled_dsn is not None:
        raise SystemExit("bench/reconcile creates its own database: run it with DATABASE_URL unset")
    out: dict = {"products": args.products, "children": args.children, "load_before": metrics.load()}
    with database_settings(settings) as settings:
        dsn = settings.pooled_dsn
        assert dsn
        fresh_database(dsn, BENCH_DATABASE)
        with running_system(
            dsn,
            children=args.children,
            products=args.products,
            workers=2,
            plan="plus",  # linking 10,000 products is not what is measured
            child_overlap=args.products,
            overlap_stock=None,
            stock=(STOCK, STOCK),
            collections=0,
            extra_env={"STORESYNC_SYNC_RECONCILE_EVERY_S": "86400"},
            log_level=args.log_level,
            start_timeout=300,
            workdir=args.workdir,
        ) as system:
            t = time.time()
            system.cli("link", check=True, timeout=1200)
            out["link_s"] = time.time() - t
            for shop in system.shops:
                system.set_plan(shop, "standard")
            catalog = read_catalog(system)
            out["skus"] = len(catalog.skus)
            log, levels = LevelLog.started(system, catalog)
            system.wait_until(
                lambda: metrics.buckets_full(system), timeout=60, interval=0.5, message="buckets full"
            )
            print("first full pass (records what each child shows)", file=sys.stderr, flush=True)
            out["passes"] = [
                run_pass(system, dsn, catalog, log, levels, full=True, rate=args.sales_rate, cap=args.cap)
            ]
            for i, full in enumerate((False, True)):
                system.wait_until(
                    lambda: metrics.buckets_full(system), timeout=60, interval=0.5, message="buckets full"
                )
                out["drift"] = inject_drift(system, catalog, args.drift, seed=i, tag=f"drift {i}")
                print(
                    f"drift injected: {out['drift']['products']} products renamed, "
                    f"{out['drift']['levels']} levels changed; {'full' if full else 'incremental'} pass",
                    file=sys.stderr,
                    flush=True,
                )
                drift = out["drift"]
                result = run_pass(
                    system,
                    dsn,
                    catalog,
                    log,
                    levels,
                    full=full,
                    rate=args.sales_rate,
                    cap=args.cap,
                    drifted=frozenset(drift.pop("skus")),
                )
                result["drift"] = drift
                print(json.dumps(result), file=sys.stderr, flush=True)
                out["passes"].append(result)
    out["load_after"] = metrics.load()
    if args.json:
        print(json.dumps(out, indent=2))
        return
    print(
        f"reconcile: 1 parent + {out['children']} children, {out['products']:,} products ({out['skus']:,} SKUs), "
        f"standard plan, live sales {args.sales_rate:g}/s; link took {out['link_s']:.0f} s (Plus, not measured); "
        f"load average before {out['load_before']:.1f}, after {out['load_after']:.1f}"
    )
    print()
    print(
        "| pass | drift injected | repair jobs | time to repair | points (parent / each child) | live-sale lag p50 / p99 | stores equal |"
    )
    print("|---|---|---|---:|---|---|---|")
    for i, p in enumerate(out["passes"]):
        drift = p.get("drift")
        what = (
            "none (first pass after linking)"
            if i == 0
            else f"{drift['products']} products renamed, {drift['levels']} levels changed"
        )
        jobs = ", ".join(f"{k} {n}" for k, n in p["repair_jobs"].items()) or "-"
        t = f"{p['repaired_s']:.0f} s" if p["repaired_s"] is not None else f"> {args.cap:g} s"
        pts = " / ".join(f"{v:,}" for v in p["points"].values())
        lag = f"{p['lag_p50_s']:.2f} / {p['lag_p99_s']:.2f} s" if not math.isnan(p["lag_p99_s"]) else "-"
        print(
            f"| {p['pass']} | {what} | {jobs} | {t} | {pts} | {lag} | {'yes' if p['stores_equal'] else 'NO'} |"
        )
    print()
    print(f"goal: drift repaired within {GOAL_S / 60:.0f} min on standard plans, live-sale lag p99 < 2 s")


if __name__ == "__main__":
    main()
