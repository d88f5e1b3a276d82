"""bench/flashsale: a flash sale across a network, on the whole system (emulator, web tier, 2
workers as separate processes, embedded Postgres): 1 parent and 10 children, every store on the
standard plan (2,000-point bucket, 100 points/s), 200 SKUs linked by SKU in every child.

Single-unit sales are placed in the children (round robin, a random SKU each) at rising
offered rates, each held for --seconds; after each rate the bench waits until every store
agrees again (the drain) and the buckets are full before the next. Per rate:

- lag: from just before the order was placed to the moment the parent and every sibling showed a
  level at or below what this sale leaves (start - sales of that SKU placed up to it), from the
  emulator's level log (each inventory_levels/update event as the store made it); p50 / p99;
- drain: from the end of the load until every store agrees (parent = start - sold per SKU,
  every child = the parent), read from the level log, then confirmed on the stores' snapshots;
- points per sale per child: points each child's bucket was charged (the emulator's own count)
  during the rate and its drain, over the sales; the parent's likewise;
- THROTTLED share: THROTTLED answers / GraphQL requests, over every store;
- CPU ms per sale by process (emulator, web tier, workers, Postgres: only this server's); the
  engine = web + workers + Postgres;
- whether every store ended equal with the stock identity intact (parent = start - sold).

Modes, each on a fresh system: `naive` (STORESYNC_SYNC_COALESCE_WRITES=false: one write per
item and store, as before coalescing), `coalesced` (the default engine) and `worker-echoes` (the
default engine with STORESYNC_WEB_ECHOES_AT_INGEST=false: every level echo gets a job, as before
decision 0055; not run unless named). A rate whose drain
does not finish within --drain-cap seconds is not sustained: the higher rates are skipped. The
highest sustained rate = the highest rate that drained within 5 s with every store equal.

    .venv/bin/python bench/flashsale/run.py [--rates 5,20,50,100] [--seconds 60] [--modes naive,coalesced]
    .venv/bin/python bench/flashsale/run.py --quick      # rates 5,20 for 15 s, coalesced only

Goals (issue 16), at 50 sales/s: lag p99 < 2 s, drain < 5 s, < 1 % THROTTLED, every store equal,
<= 2 points per sale per child, engine CPU <= 15 ms per sale.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))


from common import metrics
from common.database import fresh_database
from common.flash import Catalog, LevelLog, place_sales, read_catalog, sale_lags
from storesync.config import Settings
from storesync.db import database_settings
from storesync.demo.comparison import inventory_view
from storesync.demo.harness import running_system
from storesync.demo.seeding import LOCATION_NAMES

BENCH_DATABASE = "storesync_bench_flashsale"
STOCK = 100_000  # units per level: no SKU sells out during the bench
GOAL_RATE = 50.0


# --------------------------------------------------------------------------- one rate


def settled(log: LevelLog, system, catalog: Catalog, expected: dict[str, int]) -> bool:
    """Every store shows, per SKU, the parent's expected level (start - sold)."""
    for sku, want in expected.items():
        for shop in system.shops:
            if log.current.get((shop, sku)) != want:
                return False
    return True


def run_rate(
    system,
    catalog: Catalog,
    log: LevelLog,
    pgdata: Path,
    levels: dict[str, int],
    rate: float,
    seconds: float,
    drain_cap: float,
    seed: int,
) -> dict:
    """One offered rate; `levels` (sku -> every store's level) is updated to what it leaves."""
    log.poll()
    use0, cpu0 = metrics.usage(system), metrics.system_cpu(system, pgdata)
    load = place_sales(system, catalog, rate, seconds, seed)
    ok = [s for s in load.sales if s.ok]
    expected = dict(levels)
    for s in ok:
        expected[s.sku] -= 1
    drain_s = None
    deadline = load.ended + drain_cap
    while time.time() < deadline:
        log.poll()
        if settled(log, system, catalog, expected):
            drain_s = time.time() - load.ended
            break
        time.sleep(0.1)
    cpu1, use1 = metrics.system_cpu(system, pgdata), metrics.usage(system)
    log.poll()
    lags, unpropagated = sale_lags(system, log, ok, levels)
    comparison = system.compare()
    parent_levels = inventory_view(system.snapshot(system.parent))
    identity = all(parent_levels.get((sku, LOCATION_NAMES[0])) == want for sku, want in expected.items())
    levels.update(expected)
    sales = max(len(ok), 1)
    cpu = metrics.delta(cpu0, cpu1)
    spent = {shop: use1[shop]["points"] - use0[shop]["points"] for shop in system.shops}
    requests = sum(use1[s]["requests"] - use0[s]["requests"] for s in system.shops)
    throttled = sum(use1[s]["throttled"] - use0[s]["throttled"] for s in system.shops)
    engine = sum(v for k, v in cpu.items() if is_engine(k))
    return {
        "rate": rate,
        "seconds": seconds,
        "sales": len(ok),
        "failed_orders": len(load.sales) - len(ok),
        "achieved_rate": len(ok) / max(load.ended - load.started, 1e-9),
        "lag_p50_s": metrics.pct(lags, 0.5),
        "lag_p99_s": metrics.pct(lags, 0.99),
        "lag_max_s": max(lags) if lags else math.nan,
        "unpropagated": unpropagated,
        "drain_s": drain_s,
        "points_per_sale_child": sum(spent[c] for c in system.children) / len(system.children) / sales,
        "points_per_sale_parent": spent[system.parent] / sales,
        "requests": requests,
        "throttled": throttled,
        "throttled_share": throttled / max(requests, 1),
        "cpu_ms_per_sale": {k: round(v * 1000 / sales, 2) for k, v in sorted(cpu.items())},
        "engine_cpu_ms_per_sale": engine * 1000 / sales,
        "points_per_sale_by_operation": {
            "child": operations(use0, use1, system.children, sales * len(system.children)),
            "parent": operations(use0, use1, [system.parent], sales),
        },
        "stores_equal": comparison.agree,
        "identity": identity,
        "load_after": metrics.load(),
    }


def is_engine(process: str) -> bool:
    return process in ("web", "postgres") or process.startswith("worker")


def operations(before: dict, after: dict, shops: list[str], per: int) -> dict[str, float]:
    """Points charged per operation on `shops` between two usage readings, over `per`."""
    out: dict[str, float] = defaultdict(float)
    for shop in shops:
        for name, (_n, points) in after[shop]["by_operation"].items():
            out[name] += points - before[shop]["by_operation"].get(name, [0, 0])[1]
    return {k: round(v / max(per, 1), 2) for k, v in sorted(out.items(), key=lambda kv: -kv[1]) if v}


def idle_cpu(system, pgdata: Path, seconds: float) -> dict[str, float]:
    """CPU seconds per second of each process with nothing to do (pollers, heartbeats)."""
    before = metrics.system_cpu(system, pgdata)
    time.sleep(seconds)
    return {
        k: round(v / seconds, 4) for k, v in metrics.delta(before, metrics.system_cpu(system, pgdata)).items()
    }


# Each mode's settings (on a fresh system each).
MODES: dict[str, dict[str, str]] = {
    "naive": {"STORESYNC_SYNC_COALESCE_WRITES": "false"},
    "coalesced": {"STORESYNC_SYNC_COALESCE_WRITES": "true"},
    "worker-echoes": {"STORESYNC_SYNC_COALESCE_WRITES": "true", "STORESYNC_WEB_ECHOES_AT_INGEST": "false"},
}


def run_mode(dsn: str, pgdata: Path, mode: str, args) -> dict:
    fresh_database(dsn, BENCH_DATABASE)
    env = MODES[mode]
    products = args.products
    out: dict = {"mode": mode, "rates": [], "load_before": metrics.load()}
    with running_system(
        dsn,
        children=args.children,
        products=products,
        workers=2,
        plan="standard",
        child_overlap=products,
        overlap_stock=None,
        stock=(STOCK, STOCK),
        collections=0,
        extra_env=env,
        log_level=args.log_level,
    ) as system:
        system.cli("link", check=True, timeout=300)
        system.wait_until(lambda: system.compare().agree, timeout=120, message="linked stores agree")
        catalog = read_catalog(system)
        out["skus"] = len(catalog.skus)
        log, levels = LevelLog.started(system, catalog)
        system.wait_until(lambda: system.jobs_pending() == 0, timeout=120, interval=0.5, message="queue idle")
        out["idle_cpu_s_per_s"] = idle_cpu(system, pgdata, 10.0)
        for i, rate in enumerate(args.rates):
            system.wait_until(
                lambda: system.jobs_pending() == 0, timeout=120, interval=0.5, message="queue idle"
            )
            system.wait_until(
                lambda: metrics.buckets_full(system), timeout=60, interval=0.5, message="buckets full"
            )
            print(
                f"[{mode}] {rate:g} sales/s for {args.seconds:g} s (load {metrics.load():.1f})",
                file=sys.stderr,
                flush=True,
            )
            result = run_rate(
                system, catalog, log, pgdata, levels, rate, args.seconds, args.drain_cap, seed=i
            )
            print(f"[{mode}] {json.dumps(result)}", file=sys.stderr, flush=True)
            out["rates"].append(result)
            if result["drain_s"] is None:
                print(
                    f"[{mode}] not drained within {args.drain_cap:g} s: higher rates skipped", file=sys.stderr
                )
                break
    sustained = [
        r["rate"]
        for r in out["rates"]
        if r["drain_s"] is not None and r["drain_s"] < 5 and r["stores_equal"] and r["identity"]
    ]
    out["highest_sustained"] = max(sustained) if sustained else None
    return out


# --------------------------------------------------------------------------- report


def fmt(v, spec: str = ".2f", unit: str = "") -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if isinstance(v, float) and math.isinf(v):
        return "inf"
    return f"{v:{spec}}{unit}"


def print_results(results: list[dict], args) -> None:
    print(
        f"flash sale: 1 parent + {args.children} children, standard plan, {results[0].get('skus', '?')} SKUs, "
        f"{args.seconds:g} s per rate, 2 workers; load average before {results[0]['load_before']:.1f}"
    )
    print()
    print(
        "| mode | offered/s | achieved/s | lag p50 | lag p99 | drain | points/sale/child | points/sale parent "
        "| THROTTLED | engine CPU ms/sale | CPU ms/sale by process | equal, parent = start - sold |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|")
    for res in results:
        for r in res["rates"]:
            cpu = ", ".join(f"{k} {v:.1f}" for k, v in r["cpu_ms_per_sale"].items())
            drain = fmt(r["drain_s"], ".1f", " s") if r["drain_s"] is not None else f"> {args.drain_cap:g} s"
            lost = f" ({r['unpropagated']} not propagated)" if r["unpropagated"] else ""
            print(
                f"| {res['mode']} | {r['rate']:g} | {r['achieved_rate']:.1f} | {fmt(r['lag_p50_s'], '.2f', ' s')} | "
                f"{fmt(r['lag_p99_s'], '.2f', ' s')}{lost} | {drain} | {r['points_per_sale_child']:.1f} | "
                f"{r['points_per_sale_parent']:.1f} | {r['throttled_share'] * 100:.1f}% | "
                f"{r['engine_cpu_ms_per_sale']:.1f} | {cpu} | "
                f"{'yes' if r['stores_equal'] else 'NO'}, {'yes' if r['identity'] else 'NO'} |"
            )
    print()
    for res in results:
        idle = res.get("idle_cpu_s_per_s", {})
        engine_idle = sum(v for k, v in idle.items() if is_engine(k))
        print(
            f"{res['mode']}: idle engine CPU {engine_idle * 1000:.0f} ms per second ("
            + ", ".join(f"{k} {v * 1000:.0f}" for k, v in idle.items())
            + ")"
        )
        for r in res["rates"]:
            ops = r["points_per_sale_by_operation"]
            print(
                f"{res['mode']} {r['rate']:g}/s points per sale by operation: child "
                + ", ".join(f"{k} {v}" for k, v in ops["child"].items())
                + "; parent "
                + ", ".join(f"{k} {v}" for k, v in ops["parent"].items())
            )
    print()
    for res in results:
        print(f"{res['mode']}: highest sustained rate {fmt(res['highest_sustained'], 'g', ' sales/s')}")
    print(
        f"goals at {GOAL_RATE:g} sales/s: lag p99 < 2 s, drain < 5 s, < 1% THROTTLED, every store equal, "
        "<= 2 points per sale per child, engine CPU <= 15 ms per sale"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rates", default="5,20,50,100", help="offered sales/s, rising [5,20,50,100]")
    parser.add_argument("--seconds", type=float, default=60.0, help="seconds of load per rate [60]")
    parser.add_argument(
        "--modes", default="naive,coalesced", help="naive, coalesced and/or worker-echoes [naive,coalesced]"
    )
    parser.add_argument("--children", type=int, default=10)
    parser.add_argument("--products", type=int, default=100, help="parent products (100: 200 SKUs)")
    parser.add_argument("--drain-cap", type=float, default=60.0, help="seconds a drain may take [60]")
    parser.add_argument("--log-level", default="info", help="the engine's log level [info]")
    parser.add_argument("--quick", action="store_true", help="rates 5,20 for 15 s, coalesced only")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.rates, args.seconds, args.modes = "5,20", 15.0, "coalesced"
    args.rates = [float(r) for r in str(args.rates).split(",")]
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if not set(modes) <= set(MODES):
        parser.error(f"--modes: some of {', '.join(MODES)}")
    if args.seconds > 120 or max(args.rates) > 400:
        parser.error("the bench must stay bounded: --seconds <= 120, rates <= 400/s")

    settings = Settings.load().model_copy(update={"embedded_database": BENCH_DATABASE})
    if settings.pooled_dsn is not None:
        raise SystemExit("bench/flashsale creates its own database: run it with DATABASE_URL unset")
    results = []
    with database_settings(settings) as settings:
        dsn = settings.pooled_dsn
        assert dsn
        for mode in modes:
            results.append(run_mode(dsn, settings.pgdata, mode, args))
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        print_results(results, args)


if __name__ == "__main__":
    main()
