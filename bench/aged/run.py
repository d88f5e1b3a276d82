"""bench/aged: do ingestion and the queue's claim cost the same after a year of traffic as on day
one? Both are measured on an empty database, then again, in the same run and database, with 10
million old webhook deliveries and 10 million old finished jobs in place (generated in SQL with
generate_series: a year of ~0.3 deliveries/s per merchant, never committed anywhere as data).

- ingest, database path: the web tier's group-commit batcher and transaction (`record_deliveries`
  through `DeliveryBatcher`, as bench/ingest's ceiling phase), 64 concurrent callers;
- ingest, HTTP: `storesync serve` (2 uvicorn workers) driven by 64 keep-alive senders (bench/ingest's
  max phase), signed deliveries;
- claim: 20,000 queued no-op jobs over 20 merchants claimed (the real fair claim, 100 a claim)
  and completed by 2 connections, as fast as they go.

Per phase: the rate, and the CPU per delivery or job (Postgres backends of the bench database,
plus the Python side), which moves less than rates on a shared machine. Goal (issue 16): with
the old rows in place, within 10% of the empty database.

    .venv/bin/python bench/aged/run.py [--old-rows 10000000] [--seconds 10]

The database is DATABASE_URL's server when set, else the embedded server in
.storesync/bench-pgdata; the bench database (storesync_bench_aged) is dropped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
import psycopg

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "src"))

from storesync.config import NetworkConfig
from storesync.queue import JobSpec, enqueue_many
from storesync.queue import queries as q
from storesync.queue.claim import claim_batch_sync
from storesync.queue.config import QueueSettings

BENCH_DB = "storesync_bench_aged"
GOAL = 0.10


def _ingest_bench():
    """bench/ingest/run.py as a module: its phases are the ones measured here."""
    spec = importlib.util.spec_from_file_location("ingest_bench", ROOT / "bench" / "ingest" / "run.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


ingest = _ingest_bench()


# --------------------------------------------------------------------------- a year of old rows

# old_deliveries: deliveries received a year ago, ~200-byte bodies, half orders, half products.
OLD_DELIVERIES = """
INSERT INTO webhook_deliveries
    (webhook_id, shop_domain, merchant_id, topic, event_id, triggered_at, api_version, received_at,
     payload, status)
SELECT 'old-' || g, 'bench-' || (g %% 4) || '-' || (g %% 3) || '.myshopify.com', 'm' || (g %% 4),
       CASE WHEN g %% 2 = 0 THEN 'orders/create' ELSE 'products/update' END,
       'old-event-' || g, t, '2026-10', t, convert_to(repeat('x', 200), 'UTF8'), 'accepted'
FROM (SELECT g, now() - interval '400 days' + g * interval '3 ms' AS t
      FROM generate_series(%(start)s::bigint, %(stop)s::bigint) g) rows
"""

# old_jobs: the jobs those deliveries made, succeeded long ago.
OLD_JOBS = """
INSERT INTO jobs (kind, payload, group_key, lane, state, attempt, run_at, created_at, started_at, finished_at)
SELECT CASE WHEN g %% 2 = 0 THEN 'webhook.orders_create' ELSE 'webhook.products_update' END,
       jsonb_build_object('delivery_id', 'old-' || g, 'shop', 'bench-' || (g %% 4) || '.myshopify.com'),
       'm' || (g %% 4), 0, 'succeeded', 1, t, t, t, t + interval '20 ms'
FROM (SELECT g, now() - interval '400 days' + g * interval '3 ms' AS t
      FROM generate_series(%(start)s::bigint, %(stop)s::bigint) g) rows
"""


def add_old_rows(dsn: str, n: int, chunk: int = 1_000_000) -> float:
    """n old deliveries and n old succeeded jobs, then VACUUM ANALYZE; returns the seconds taken."""
    t = time.monotonic()
    with psycopg.connect(dsn, autocommit=True) as conn:
        for start in range(1, n + 1, chunk):
            stop = min(n, start + chunk - 1)
            for statement in (OLD_DELIVERIES, OLD_JOBS):
                conn.execute(statement, {"start": start, "stop": stop})
            print(f"  {stop:,} old deliveries and jobs", file=sys.stderr, flush=True)
        conn.execute("VACUUM ANALYZE webhook_deliveries")
        conn.execute("VACUUM ANALYZE jobs")
    return time.monotonic() - t


# --------------------------------------------------------------------------- the claim


def claim_phase(dsn: str, jobs: int = 20_000, merchants: int = 20, connections: int = 2) -> dict:
    """`jobs` no-op jobs claimed (the queue's fair claim, 100 a claim) and completed as fast as
    `connections` connections go: jobs/s and Postgres CPU µs per job."""
    with psycopg.connect(dsn) as conn:
        # the ingest phases' webhook jobs (no worker runs them here) are not part of the claim
        conn.execute("UPDATE jobs SET state = 'cancelled', finished_at = now() WHERE state = 'queued'")
        enqueue_many(conn, [JobSpec("bench.noop", {}, group=f"m{i % merchants}") for i in range(jobs)])
        conn.commit()
        conn.execute("ANALYZE jobs")
        conn.commit()
    qs = QueueSettings()
    done = [0]
    lock = threading.Lock()

    def loop(worker: str) -> None:
        with psycopg.connect(dsn, autocommit=True) as conn:
            while True:
                rows = claim_batch_sync(conn, qs, worker, 100)
                if rows is None:
                    continue
                if not rows:
                    return
                conn.execute(
                    q.COMPLETE_JOBS,
                    {"ids": [r[0] for r in rows], "attempts": [r[5] for r in rows], "worker": worker},
                )
                with lock:
                    done[0] += len(rows)

    meter = ingest.CpuMeter(postgres=ingest.postgres_pids(dsn))
    threads = [threading.Thread(target=loop, args=(f"bench-{i}",)) for i in range(connections)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    # the backends serving the claim loops, once they are connected
    time.sleep(0.2)
    meter.groups["postgres"] = ingest.postgres_pids(dsn)
    meter.start["postgres"] = ingest.cpu_seconds(meter.groups["postgres"])
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    return {"jobs": done[0], "jobs_per_s": done[0] / elapsed, **meter.per_request_us(done[0])}


# --------------------------------------------------------------------------- ingest


def ingest_phases(dsn: str, stores, config: Path, seconds: float) -> dict:
    out = {
        "ingest_db": asyncio.run(ingest.ceiling(dsn, stores, 64, 8, 16, seconds)),
    }
    port = ingest.free_port()
    server = ingest.start_server(dsn, config, port, 2, 8)
    try:
        reqs = ingest.requests(stores, int(8000 * seconds) + 4000, port)
        asyncio.run(ingest.closed_loop(port, reqs[:2000], 64, 2.0))  # warm up
        pids = [server.pid] + [c.pid for c in psutil.Process(server.pid).children(recursive=True)]
        meter = ingest.CpuMeter(server=pids, postgres=ingest.postgres_pids(dsn))
        out["ingest_http"] = asyncio.run(ingest.closed_loop(port, reqs[2000:], 64, seconds))
        out["ingest_http"].update(meter.per_request_us(out["ingest_http"]["requests"]))
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(30)
    return out


def measure(dsn: str, stores, config: Path, seconds: float) -> dict:
    out = ingest_phases(dsn, stores, config, seconds)
    out["claim"] = claim_phase(dsn)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--old-rows", type=int, default=10_000_000, help="old deliveries, and old jobs")
    ap.add_argument("--seconds", type=float, default=10.0, help="length of each ingest phase")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if args.old_rows > 50_000_000:
        ap.error("--old-rows <= 50,000,000")
    load_before = os.getloadavg()[0]
    dsn, admin_dsn, embedded = ingest.database(BENCH_DB)
    toml, stores = ingest.network_toml()
    try:
        with tempfile.TemporaryDirectory(prefix="bench-aged-") as tmp:
            config = Path(tmp) / "storesync.toml"
            config.write_text(toml)
            NetworkConfig.load(config)
            print("empty database", file=sys.stderr, flush=True)
            empty = measure(dsn, stores, config, args.seconds)
            print(json.dumps(empty), file=sys.stderr, flush=True)
            print(f"adding {args.old_rows:,} old deliveries and jobs", file=sys.stderr, flush=True)
            fill_s = add_old_rows(dsn, args.old_rows)
            with psycopg.connect(dsn) as conn:
                sizes = conn.execute(
                    "SELECT pg_size_pretty(pg_total_relation_size('webhook_deliveries')), "
                    "pg_size_pretty(pg_total_relation_size('jobs'))"
                ).fetchone()
            aged = measure(dsn, stores, config, args.seconds)
            print(json.dumps(aged), file=sys.stderr, flush=True)
    finally:
        with psycopg.connect(admin_dsn, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {BENCH_DB} WITH (FORCE)")
        del embedded
    results = {"empty": empty, "aged": aged, "old_rows": args.old_rows, "fill_s": fill_s, "sizes": sizes}
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    print(
        f"aged tables: {args.old_rows:,} old deliveries ({sizes[0]}) and jobs ({sizes[1]}) added in "
        f"{fill_s:.0f} s; load average before {load_before:.1f}, after {os.getloadavg()[0]:.1f}"
    )
    print()
    print("| phase | measure | empty | with old rows | change |")
    print("|---|---|---:|---:|---:|")
    rows = [
        ("ingest, database path (batcher, 64 callers)", "ingest_db", "accepted_per_s", "deliveries/s"),
        (
            "ingest, database path (batcher, 64 callers)",
            "ingest_db",
            "postgres_cpu_us",
            "Postgres CPU µs/delivery",
        ),
        ("ingest, HTTP (2 workers, 64 senders)", "ingest_http", "accepted_per_s", "deliveries/s"),
        (
            "ingest, HTTP (2 workers, 64 senders)",
            "ingest_http",
            "postgres_cpu_us",
            "Postgres CPU µs/delivery",
        ),
        ("ingest, HTTP (2 workers, 64 senders)", "ingest_http", "server_cpu_us", "server CPU µs/delivery"),
        ("claim + complete (2 connections)", "claim", "jobs_per_s", "jobs/s"),
        ("claim + complete (2 connections)", "claim", "postgres_cpu_us", "Postgres CPU µs/job"),
    ]
    for label, phase, key, unit in rows:
        a, b = empty[phase][key], aged[phase][key]
        print(f"| {label} | {unit} | {a:,.0f} | {b:,.0f} | {(b - a) / a * 100:+.1f}% |")
    print()
    print(f"goal: with the old rows, within {GOAL * 100:.0f}% of the empty database")
    return 0


if __name__ == "__main__":
    sys.exit(main())
