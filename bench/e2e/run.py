"""bench/e2e: the whole system (emulator, web tier, 2 workers; separate processes) end to end.

1. Propagation, on the emulator without throttle pressure (Plus plan: 20,000-point buckets):
   one parent and 10 children whose catalogs are already linked (same SKUs, same stock).
   - parent edit -> all 10 children updated: from just before the merchant's edit to the last
     child's write (the emulator's `X-Shopify-Triggered-At` of that child's products/update);
   - child sale -> parent and 9 siblings updated: from just before the order to the last of the
     parent's and the siblings' inventory_levels/update.
   Each iteration is also checked on the stores' snapshots (title / levels equal everywhere).
   Goals: p50 < 300 ms and p99 < 1 s.
2. Initial sync of PRODUCTS parent products to 5 empty children (`storesync backfill`) on the
   plan given (default standard: 2,000-point bucket, 100 points/s per store), against the cost
   bound: the least time the rate limit allows. Each child store has its own bucket, so the
   bound is per child: (products x the cost of one minimal productSet that creates a product
   with its variants, stock and collections - the bucket's initial points) / restore rate, the
   cost from the emulator's cost model. Goal: within 1.2x of the bound. The run is capped at
   `--sync-cap` seconds; if the copy is not finished, the rate so far projects the total.

    .venv/bin/python bench/e2e/run.py [--quick] [--only propagation|initial-sync]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "src"))

import psycopg

from storesync.config import Settings
from storesync.db import database_settings
from storesync.demo.harness import running_system

BENCH_DATABASE = "storesync_bench_e2e"
MINIMAL_PRODUCT_SET = (
    "mutation($input: ProductSetInput!) { productSet(input: $input, synchronous: true) "
    "{ product { id } userErrors { field message } } }"
)


def fresh_database(dsn: str) -> None:
    maintenance = psycopg.conninfo.make_conninfo(dsn, dbname="postgres")
    with psycopg.connect(maintenance, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{BENCH_DATABASE}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{BENCH_DATABASE}"')


def ts(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def first_writes(system, topic: str, shops: set[str], since: float) -> dict[str, float]:
    """shop -> the earliest `topic` webhook it emitted at or after `since` (epoch seconds)."""
    out: dict[str, float] = {}
    for d in system.deliveries(topic=topic):
        if d["shop"] in shops and not d.get("duplicate"):
            t = ts(d["triggered_at"])
            if t >= since and t < out.get(d["shop"], float("inf")):
                out[d["shop"]] = t
    return out


def wait_propagated(
    system, topic: str, shops: set[str], since: float, check, timeout: float, what: str
) -> float:
    """Seconds from `since` to the last of `shops`' first `topic` webhook after it, once `check()`
    confirms the stores' state. Polls the delivery log (cheap); snapshots only to confirm."""
    deadline = time.monotonic() + timeout
    while True:
        writes = first_writes(system, topic, shops, since)
        if len(writes) == len(shops) and check():
            return max(writes.values()) - since
        if time.monotonic() > deadline:
            raise SystemExit(
                f"{what}: not propagated within {timeout}s ({len(writes)}/{len(shops)} stores wrote)"
            )
        time.sleep(0.02 if len(writes) < len(shops) else 0.2)


def measure_edits(system, n: int, budget_s: float) -> list[float]:
    latencies: list[float] = []
    handles = [f"demo-product-{i}" for i in range(1, 6)]
    started = time.monotonic()
    for i in range(n):
        if time.monotonic() - started > budget_s:
            break
        handle = handles[i % len(handles)]
        title = f"Edited {handle} rev {i}"
        t0 = time.time()
        system.edit_parent_product(handle, title=title)
        latencies.append(
            wait_propagated(
                system,
                "products/update",
                set(system.children),
                t0,
                lambda: all(system.product_by_handle(c, handle)["title"] == title for c in system.children),  # noqa: B023 - called within the iteration
                15.0,
                f"edit {i}",
            )
        )
        time.sleep(0.2)  # let the echoes settle before the next edit
    return latencies


def measure_sales(system, n: int, budget_s: float) -> list[float]:
    latencies: list[float] = []
    parent_snapshot = system.snapshot(system.parent)
    skus = sorted({v["sku"] for p in parent_snapshot["products"] for v in p["variants"]})
    started = time.monotonic()
    for i in range(n):
        if time.monotonic() - started > budget_s:
            break
        child = system.children[i % len(system.children)]
        sku = skus[i % len(skus)]
        want = system.level(system.parent, sku) - 1
        targets = {system.parent, *(c for c in system.children if c != child)}
        t0 = time.time()
        system.place_order(child, sku=sku, quantity=1)
        latencies.append(
            wait_propagated(
                system,
                "inventory_levels/update",
                targets,
                t0,
                lambda: all(system.level(shop, sku) == want for shop in [system.parent, *system.children]),  # noqa: B023 - called within the iteration
                15.0,
                f"sale {i} of {sku} in {child}",
            )
        )
        time.sleep(0.2)
    return latencies


def job_breakdown(dsn: str, since: float) -> list[dict]:
    """Per job kind since `since`: how many, median wait in the queue and median run time (ms)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute(
            # job_timings: queue wait and run time per kind of the jobs created in the window
            "SELECT kind, count(*), "
            "percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM started_at - created_at)) * 1000, "
            "percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM finished_at - started_at)) * 1000 "
            "FROM jobs WHERE created_at >= to_timestamp(%s) AND finished_at IS NOT NULL "
            "GROUP BY kind ORDER BY count(*) DESC",
            (since,),
        ).fetchall()
    return [{"kind": k, "jobs": n, "wait_ms": w, "run_ms": r} for k, n, w, r in rows]


def cpu_seconds_of(pid: int) -> float:
    import psutil

    t = psutil.Process(pid).cpu_times()
    return t.user + t.system + t.children_user + t.children_system


def cpu_seconds(system) -> dict[str, float]:
    """CPU seconds used so far by each process of the system (its reaped children included) and
    by every PostgreSQL process on the machine (the bench's database is the only busy one)."""
    import psutil

    out: dict[str, float] = {}
    for p in system.processes.processes:
        with contextlib.suppress(psutil.Error):
            out[p.name] = out.get(p.name, 0.0) + cpu_seconds_of(p.pid)
    postgres = 0.0
    for proc in psutil.process_iter(["name"]):
        if proc.info["name"] in ("postgres", "postmaster"):
            with contextlib.suppress(psutil.Error):
                t = proc.cpu_times()
                postgres += (
                    t.user
                    + t.system
                    + (
                        t.children_user + t.children_system
                        if proc.ppid() == 1 or proc.parent().name() != "postgres"
                        else 0
                    )
                )
    out["postgres"] = postgres
    return out


def cpu_delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {k: after.get(k, 0.0) - before.get(k, 0.0) for k in after}


def product_set_floor(system, shop: str) -> int:
    """Points one minimal productSet creating a product (variants with stock, collections) costs,
    as the emulator charges it (measured with a real call on a scratch product, then deleted)."""
    loc = system.locations[shop]["Shop location"]
    variables = {
        "input": {
            "title": "cost probe",
            "handle": "cost-probe",
            "productOptions": [{"name": "Size", "values": [{"name": "S"}, {"name": "M"}]}],
            "variants": [
                {
                    "optionValues": [{"optionName": "Size", "name": s}],
                    "sku": f"PROBE-{s}",
                    "price": "1.00",
                    "inventoryQuantities": [{"locationId": loc, "name": "available", "quantity": 5}],
                }
                for s in ("S", "M")
            ],
        }
    }
    res = system.graphql(shop, MINIMAL_PRODUCT_SET, variables)
    if res.get("errors") or res["data"]["productSet"]["userErrors"]:
        raise SystemExit(f"cost probe failed: {res}")
    cost = res["extensions"]["cost"]["actualQueryCost"]
    pid = res["data"]["productSet"]["product"]["id"]
    system.graphql(
        shop, "mutation($id: ID!) { productDelete(input: {id: $id}) { deletedProductId } }", {"id": pid}
    )
    return int(cost)


def publish_floor(system, shop: str) -> int:
    """Points one publishablePublish costs (a copy of a product that is on sales channels is
    published on the child's: an API-made product is on none), measured with a real call on a
    scratch product, then deleted."""
    res = system.graphql(
        shop, MINIMAL_PRODUCT_SET, {"input": {"title": "publish probe", "handle": "publish-probe"}}
    )
    pid = res["data"]["productSet"]["product"]["id"]
    pubs = system.graphql(shop, "{ publications(first: 1) { nodes { id } } }")["data"]["publications"][
        "nodes"
    ]
    res = system.graphql(
        shop,
        "mutation($id: ID!, $p: [PublicationInput!]!) { publishablePublish(id: $id, input: $p) "
        "{ userErrors { field message } } }",
        {"id": pid, "p": [{"publicationId": pubs[0]["id"]}]},
    )
    if res.get("errors") or res["data"]["publishablePublish"]["userErrors"]:
        raise SystemExit(f"publish probe failed: {res}")
    system.graphql(
        shop, "mutation($id: ID!) { productDelete(input: {id: $id}) { deletedProductId } }", {"id": pid}
    )
    return int(res["extensions"]["cost"]["actualQueryCost"])


def initial_sync(dsn: str, products: int, children: int, plan: str, cap: float, concurrency: int) -> dict:
    from storesync.emulator.state import PLANS

    bucket, rate = PLANS[plan]
    with running_system(
        dsn, children=children, products=products, workers=2, plan=plan, collections=5
    ) as system:
        floor = product_set_floor(system, system.children[0])
        publish = publish_floor(system, system.children[0])
        time.sleep(bucket / rate if floor * 4 > bucket else 0.5)  # the probes' points back first
        bound = max(0.0, (products * floor - bucket) / rate)
        # A copy also publishes (the parent's products are on channels): the least it can cost.
        bound_published = max(0.0, (products * (floor + publish) - bucket) / rate)
        total = products * children
        cpu_before, ops_before = cpu_seconds(system), by_operation(system)
        started = time.monotonic()
        backfill = system.start_cli(
            "backfill",
            "backfill",
            "--concurrency",
            str(concurrency),
            env={"STORESYNC_POOL_MAX_SIZE": str(concurrency * children + 6)},
        )
        copied = 0
        first_copy_s = last_copy_s = None
        backfill_cpu = 0.0
        # Progress from the sagas the backfill completed (one cheap query), not from snapshots
        # of the children: serializing 5 growing catalogs twice a second loads the emulator
        # that serves the measured calls. The stores themselves are compared at the end.
        with psycopg.connect(dsn, autocommit=True) as conn:
            while time.monotonic() - started < cap:
                # completed_copies: copy sagas finished so far
                copied = conn.execute(
                    "SELECT count(*) FROM sync_sagas WHERE state = 'completed' AND id LIKE 'copy:%'"
                ).fetchone()[0]
                if copied and first_copy_s is None:
                    first_copy_s = time.monotonic() - started
                if copied >= total and last_copy_s is None:
                    last_copy_s = time.monotonic() - started
                with contextlib.suppress(Exception):  # the backfill's CPU, known until it exits
                    backfill_cpu = cpu_seconds_of(backfill.pid)
                if not backfill.alive():
                    if backfill.popen.returncode != 0:
                        raise SystemExit(
                            f"storesync backfill exited {backfill.popen.returncode}:\n{backfill.log_tail()}"
                        )
                    break
                time.sleep(0.2)
        elapsed = time.monotonic() - started
        caught_up_s = None
        if not backfill.alive():
            # The stores are synced; the workers may still be behind on the copies' webhooks
            # (linking each copy's variants): how long until nothing is pending or due.
            with psycopg.connect(dsn, autocommit=True) as conn:
                while time.monotonic() - started < elapsed + 60:
                    # backlog: copies not linked yet, and webhook jobs due
                    left = conn.execute(
                        "SELECT (SELECT count(*) FROM sync_links WHERE pending IS NOT NULL) + "
                        "(SELECT count(*) FROM jobs WHERE state IN ('queued', 'running') "
                        "AND run_at <= now() AND kind LIKE 'webhook.%')"
                    ).fetchone()[0]
                    if left == 0:
                        caught_up_s = time.monotonic() - started
                        break
                    time.sleep(0.2)
        cpu = cpu_delta(cpu_before, cpu_seconds(system))
        ops_after = by_operation(system)
        cpu["backfill"] = backfill_cpu
        if not backfill.alive():
            copied = sum(len(system.snapshot(c)["products"]) for c in system.children)
        finished = copied >= total and not backfill.alive()
        agree = system.compare().agree if finished else None
    # Not finished: the time to the first copy (linking, collections) plus the rest at the rate since.
    if finished:
        projected = elapsed
    elif copied and first_copy_s is not None and elapsed > first_copy_s:
        projected = first_copy_s + total * (elapsed - first_copy_s) / copied
    else:
        projected = float("inf")
    return {
        "products": products,
        "children": children,
        "plan": plan,
        "bucket": bucket,
        "restore_rate": rate,
        "floor_points": floor,
        "publish_points": publish,
        "bound_s": bound,
        "bound_published_s": bound_published,
        "ratio_published": projected / bound_published if bound_published else float("inf"),
        "elapsed_s": elapsed,
        "copied": copied,
        "total": total,
        "finished": finished,
        "agree": agree,
        "projected_s": projected,
        "first_copy_s": first_copy_s,
        "last_copy_s": last_copy_s,
        "caught_up_s": caught_up_s,
        "ratio": projected / bound if bound else float("inf"),
        "cpu_ms_per_copy": {k: round(v * 1000 / max(copied, 1), 1) for k, v in sorted(cpu.items())},
        # per product copied into each child (the copies made so far, when capped)
        "child_by_operation": per_product(
            ops_before, ops_after, list(system.children), max(1, copied // children)
        ),
        "parent_by_operation": per_product(
            ops_before, ops_after, [system.parent], max(1, copied // children)
        ),
    }


def by_operation(system) -> dict[str, dict[str, list[int]]]:
    """shop -> operation -> [requests, points] the emulator charged so far."""
    return {s: system.emulator.throttle(s)["usage"]["by_operation"] for s in system.shops}


def per_product(before: dict, after: dict, shops: list[str], products: int) -> dict[str, dict[str, float]]:
    """operation -> requests and points per product between two `by_operation` reads,
    averaged over `shops`, most points first."""
    out: dict[str, dict[str, float]] = {}
    for shop in shops:
        for op, (n, points) in after[shop].items():
            n0, p0 = before[shop].get(op, [0, 0])
            if n > n0:
                row = out.setdefault(op, {"requests": 0.0, "points": 0.0})
                row["requests"] += (n - n0) / products / len(shops)
                row["points"] += (points - p0) / products / len(shops)
    return dict(sorted(out.items(), key=lambda kv: -kv[1]["points"]))


def print_by_operation(label: str, ops: dict[str, dict[str, float]]) -> None:
    print(
        f"  {label}: "
        + "; ".join(
            f"{op} {row['points']:.1f} points / {row['requests']:.2f} requests" for op, row in ops.items()
        )
    )


def points_per_copy(dsn: str, products: int) -> dict:
    """Points each store's bucket pays for a whole backfill of `products` products into 5 empty
    children, the workers' handling of the stores' webhooks included: every bucket is made huge
    and (nearly) not restoring, so what it lost is what was spent."""
    huge = 1_000_000
    with running_system(
        dsn, children=5, products=products, workers=2, plan="standard", collections=5
    ) as system:
        for rate in (huge, 0.001):  # fill the huge buckets, then stop them restoring
            for shop in system.shops:
                system.emulator.set_plan(shop, "standard", bucket_size=huge, restore_rate=rate)
            time.sleep(1.5 if rate == huge else 0)

        def available() -> dict[str, float]:
            return {
                s: system.emulator.control.get(f"/_emulator/stores/{s}/throttle").json()["throttleStatus"][
                    "currentlyAvailable"
                ]
                for s in system.shops
            }

        before, ops_before = available(), by_operation(system)
        system.cli("backfill", check=True, timeout=120)
        with psycopg.connect(dsn, autocommit=True) as conn:

            def jobs_left() -> int:
                # due_jobs: webhook and sync jobs not finished yet (periodic ones wait for later)
                return conn.execute(
                    "SELECT count(*) FROM jobs WHERE state IN ('queued', 'running') AND run_at <= now()"
                ).fetchone()[0]

            time.sleep(2)  # the last webhooks reach the web tier
            system.wait_until(lambda: jobs_left() == 0, timeout=60, interval=0.5, message="webhook jobs done")
        after, ops_after = available(), by_operation(system)
    spent = {s: before[s] - after[s] for s in before}
    return {
        "products": products,
        "parent": spent[system.parent] / products,
        "child": sum(spent[c] for c in system.children) / len(system.children) / products,
        "parent_by_operation": per_product(ops_before, ops_after, [system.parent], products),
        "child_by_operation": per_product(ops_before, ops_after, list(system.children), products),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="fewer iterations and 200 products (≈ 1.5 min)")
    parser.add_argument("--edits", type=int, help="parent edits measured [30, at most 50 s; quick 8]")
    parser.add_argument("--sales", type=int, help="child sales measured [30, at most 50 s; quick 8]")
    parser.add_argument(
        "--sync-products", type=int, help="parent products copied to 5 children [1000; quick 200]"
    )
    parser.add_argument("--sync-plan", default="standard", choices=["standard", "advanced", "plus"])
    parser.add_argument("--sync-cap", type=float, help="seconds the initial sync may run [150; quick 60]")
    parser.add_argument(
        "--concurrency", type=int, default=4, help="backfill: products copied at once per child"
    )
    parser.add_argument(
        "--only",
        choices=["propagation", "initial-sync", "points"],
        help="run one part of the bench; points: the points a backfill of 100 products costs "
        "each store per product, workers included (not part of a full run)",
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    edits = args.edits or (8 if args.quick else 30)
    sales = args.sales or (8 if args.quick else 30)
    sync_products = args.sync_products or (200 if args.quick else 1000)
    cap = args.sync_cap or (60.0 if args.quick else 150.0)
    if cap > 150 or edits > 200 or sales > 200:
        parser.error("the bench must stay bounded: --sync-cap <= 150, --edits/--sales <= 200")

    settings = Settings.load().model_copy(update={"embedded_database": BENCH_DATABASE})
    embedded = settings.pooled_dsn is None
    results: dict = {"load_before": os.getloadavg()[0]}
    with database_settings(settings) as settings:
        dsn = settings.pooled_dsn
        assert dsn
        if not embedded:
            raise SystemExit(
                "bench/e2e creates its own databases: run it with DATABASE_URL unset (embedded server)"
            )
        if args.only == "points":
            fresh_database(dsn)
            results["points"] = points_per_copy(dsn, 100)
        if args.only in (None, "propagation"):
            measure_propagation(dsn, edits, sales, results)
        if args.only in (None, "initial-sync"):
            fresh_database(dsn)
            results["sync"] = initial_sync(dsn, sync_products, 5, args.sync_plan, cap, args.concurrency)
    results["load_after"] = os.getloadavg()[0]
    print_results(args, results)


def measure_propagation(dsn: str, edits: int, sales: int, results: dict) -> None:
    fresh_database(dsn)
    with running_system(
        dsn,
        children=10,
        products=20,
        workers=2,
        plan="plus",
        child_overlap=20,
        overlap_stock=None,
        collections=0,
    ) as system:
        system.cli("link", check=True)
        system.wait_until(lambda: system.compare().agree, timeout=30, message="linked stores agree")
        t = time.time()
        results["edit"] = measure_edits(system, edits, budget_s=50)
        results["edit_jobs"] = job_breakdown(dsn, t)
        print(f"edits: {[round(x * 1000) for x in results['edit']]} ms", file=sys.stderr, flush=True)
        t = time.time()
        results["sale"] = measure_sales(system, sales, budget_s=50)
        results["sale_jobs"] = job_breakdown(dsn, t)
        print(f"sales: {[round(x * 1000) for x in results['sale']]} ms", file=sys.stderr, flush=True)


def print_results(args, results: dict) -> None:
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(
        f"load average (1 min) before/after: {results['load_before']:.1f} / {results['load_after']:.1f} on "
        f"{os.cpu_count()} CPUs"
    )
    if "edit" in results:
        print_propagation(results)
    if "sync" in results:
        print_initial_sync(results["sync"])
    if "points" in results:
        p = results["points"]
        print(
            f"backfill of {p['products']} products into 5 children: {p['child']:.1f} points per product on each "
            f"child's bucket, {p['parent']:.1f} on the parent's (the engine's calls and the workers' webhook jobs)"
        )
        for store in ("child", "parent"):
            print_by_operation(f"{store} (per product)", p[f"{store}_by_operation"])


def print_propagation(results: dict) -> None:
    print("| propagation (Plus plan, 1 parent + 10 children, 2 workers) | n | p50 | p99 | max | goal |")
    print("|---|---:|---:|---:|---:|---|")
    for key, label in (
        ("edit", "parent edit -> all 10 children updated"),
        ("sale", "child sale -> parent + 9 siblings updated"),
    ):
        xs = [x * 1000 for x in results[key]]
        print(
            f"| {label} | {len(xs)} | {pct(xs, 0.5):.0f} ms | {pct(xs, 0.99):.0f} ms | {max(xs):.0f} ms | "
            f"p50 < 300 ms, p99 < 1 s |"
        )
    for key, label in (("edit_jobs", "parent edits"), ("sale_jobs", "child sales")):
        print(
            f"jobs run for the {label}: "
            + "; ".join(
                f"{j['kind']} x{j['jobs']} (wait p50 {j['wait_ms']:.0f} ms, run p50 {j['run_ms']:.0f} ms)"
                for j in results[key]
            )
        )


def print_initial_sync(s: dict) -> None:
    first = "no copy yet" if s["first_copy_s"] is None else f"first copy after {s['first_copy_s']:.0f} s"
    state = (
        "finished"
        if s["finished"]
        else f"capped at {s['elapsed_s']:.0f} s: {s['copied']}/{s['total']} copied, "
        f"{first}, projected {s['projected_s']:.0f} s"
    )
    print()
    print("| initial sync | plan | cost bound | storesync | ratio | goal |")
    print("|---|---|---:|---:|---:|---|")
    print(
        f"| {s['products']} products -> {s['children']} children | {s['plan']} ({s['bucket']:.0f} points, "
        f"{s['restore_rate']:.0f}/s per store; minimal productSet {s['floor_points']} points) | "
        f"{s['bound_s']:.0f} s | {s['elapsed_s']:.0f} s ({state}) | {s['ratio']:.1f}x | <= 1.2x |"
    )
    print(
        f"cost bound with the publish each copy needs ({s['floor_points']} + {s['publish_points']} points per "
        f"copy): {s['bound_published_s']:.0f} s; ratio {s['ratio_published']:.2f}x"
    )
    if s["finished"]:
        last = f"{s['last_copy_s']:.0f}" if s.get("last_copy_s") is not None else "?"
        caught = f"{s['caught_up_s']:.0f} s" if s.get("caught_up_s") is not None else "not within 60 s"
        print(
            f"first copy after {s['first_copy_s']:.1f} s, last copy after {last} s, backfill done after "
            f"{s['elapsed_s']:.0f} s (parent levels read again); workers done with the copies' webhooks "
            f"(every copy's variants linked) after {caught}"
        )
    cpu = s["cpu_ms_per_copy"]
    print(
        f"CPU per copy: {sum(cpu.values()):.0f} ms ("
        + ", ".join(f"{k} {v:.0f}" for k, v in cpu.items())
        + ")"
    )
    print("points per product copied, by operation:")
    print_by_operation("each child", s["child_by_operation"])
    print_by_operation("parent", s["parent_by_operation"])
    if s["finished"] and not s["agree"]:
        print("WARNING: the children do not agree with the parent after the initial sync")


if __name__ == "__main__":
    main()
