"""bench/throttle: how much of a store's rate limit the commerce client really uses.

Two worker processes drain a backlog of inventory mutations (inventoryAdjustQuantities, each
with its own idempotency key) against one emulated standard-plan store (2,000-point bucket,
100 points/s) for `--seconds`, sharing the store's budget through Postgres. In the same run and
emulator, two naive worker processes (send; on THROTTLED sleep 1 s) do the same against a second
standard-plan store.

Figures per client:
- restore rate used = (points charged - points drawn from the initial full bucket) / (restore
  rate x active seconds): 100% means no restored point was left unused;
- throttled = THROTTLED answers / requests sent.
Goal: >= 95% of the restore rate with < 1% throttled.

    .venv/bin/python bench/throttle/run.py [--seconds 60]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import psycopg

from storesync.config import Settings
from storesync.db import database_settings
from storesync.db.migrate import migrate
from storesync.db.pools import connect_direct
from tests.support.emulator import running_emulator

SMART, NAIVE = "bench-smart.myshopify.com", "bench-naive.myshopify.com"
BENCH_DATABASE = "storesync_bench_throttle"


def spawn(
    emu, shop: str, mode: str, worker: str, seconds: float, dsn: str | None, run: str
) -> subprocess.Popen:
    level = emu.snapshot(shop)["inventory_levels"][0]
    cmd = [
        sys.executable,
        "-m",
        "tests.commerce.adjust_worker",
        "--url",
        emu.graphql_url(shop),
        "--token",
        emu.token(shop),
        "--shop",
        shop,
        "--item",
        level["inventory_item_id"],
        "--location",
        level["location_id"],
        "--mode",
        mode,
        "--seconds",
        str(seconds),
        "--worker",
        worker,
        "--run",
        run,
    ]
    if dsn:
        cmd += ["--dsn", dsn]
    return subprocess.Popen(
        cmd,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


def summarise(name: str, results: list[dict], capacity: float, rate: float) -> dict:
    start = min(r["started"] for r in results)
    end = max(r["ended"] for r in results)
    last = max((r for r in results if r["last_at"]), key=lambda r: r["last_at"])
    # the bucket's level at the end, restored from its last report to the end of the window
    level_end = min(capacity, last["last_available"] + (end - last["last_at"]) * rate)
    points = sum(r["points"] for r in results)
    requests = sum(r["requests"] for r in results)
    throttled = sum(r["throttled"] + r["http_429"] for r in results)
    seconds = end - start
    used = (points - (capacity - level_end)) / (rate * seconds)
    return {
        "client": name,
        "seconds": seconds,
        "mutations": sum(r["done"] for r in results),
        "requests": requests,
        "throttled": throttled,
        "throttled_pct": 100.0 * throttled / max(1, requests),
        "points": points,
        "restore_used_pct": 100.0 * used,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=60.0, help="how long the workers run (default 60)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes per client (default 2)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    if not 1 <= args.seconds <= 150:
        parser.error("--seconds must be within 1..150 (the bench must stay bounded)")

    settings = Settings.load().model_copy(update={"embedded_database": BENCH_DATABASE})
    embedded = settings.pooled_dsn is None
    with database_settings(settings) as settings, running_emulator(stores=[SMART, NAIVE]) as emu:
        if embedded:  # a fresh database of the bench's own on the embedded server
            maintenance = psycopg.conninfo.make_conninfo(settings.pooled_dsn, dbname="postgres")
            with psycopg.connect(maintenance, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{BENCH_DATABASE}" WITH (FORCE)')
                admin.execute(f'CREATE DATABASE "{BENCH_DATABASE}"')
        with connect_direct(settings) as conn:
            migrate(conn)
            conn.execute("DELETE FROM api_budgets WHERE shop_domain = ANY(%s)", ([SMART, NAIVE],))
        for shop in (SMART, NAIVE):
            emu.seed(shop, products=1)
        capacity, rate = 2000.0, 100.0
        for shop in (SMART, NAIVE):
            status = emu.control.get(f"/_emulator/stores/{shop}/throttle").json()["throttleStatus"]
            assert status["currentlyAvailable"] == capacity and status["restoreRate"] == rate, status
        run = f"bench-{int(time.time())}"
        dsn = settings.pooled_dsn
        procs = {
            name: [
                spawn(emu, shop, mode, f"{name}{w}", args.seconds, dsn if mode == "smart" else None, run)
                for w in range(args.workers)
            ]
            for name, shop, mode in (("smart", SMART, "smart"), ("naive", NAIVE, "naive"))
        }
        results: dict[str, list[dict]] = {}
        for name, ps in procs.items():
            results[name] = []
            for p in ps:
                out, err = p.communicate(timeout=args.seconds + 60)
                if p.returncode != 0:
                    raise SystemExit(f"{name} worker failed:\n{err}")
                results[name].append(json.loads(out.strip().splitlines()[-1]))
        # every mutation landed exactly once on each store
        for name, shop in (("smart", SMART), ("naive", NAIVE)):
            level = emu.snapshot(shop)["inventory_levels"][0]
            done = sum(r["done"] for r in results[name])
            assert level["available"] == 10 + done, (name, level["available"], done)

    rows = [
        summarise("storesync (PostgresBudget)", results["smart"], capacity, rate),
        summarise("naive (sleep 1 s on THROTTLED)", results["naive"], capacity, rate),
    ]
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(
        f"{args.workers} worker processes per client, one standard-plan store each "
        f"({capacity:.0f} points, {rate:.0f}/s), inventoryAdjustQuantities backlog, {args.seconds:.0f} s"
    )
    print("| client | restore rate used | throttled / requests | mutations | points charged |")
    print("|---|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['client']} | {r['restore_used_pct']:.1f}% | {r['throttled']} / {r['requests']} "
            f"({r['throttled_pct']:.2f}%) | {r['mutations']} | {r['points']:.0f} |"
        )


if __name__ == "__main__":
    main()
