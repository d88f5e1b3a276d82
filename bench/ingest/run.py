"""Webhook ingestion throughput and latency, next to its ceiling measured in the same run.

    .venv/bin/python bench/ingest/run.py [--workers 2] [--seconds 10] [--connections 64]

1. ceiling: the insert-and-enqueue transaction issued straight from Python through the same
   group-commit batcher as the server (`DeliveryBatcher` -> `record_deliveries`), by as many
   concurrent callers as there are HTTP senders (no HTTP, no HMAC, no JSON).
2. max: `storesync serve` (uvicorn, N workers) driven by concurrent keep-alive senders for
   --seconds; accepted webhooks/s and latency percentiles.
3. paced: an open-loop arrival rate of half the goal (750/s) and of half the measured max;
   latency is measured from each request's scheduled send time (no coordinated omission).

Every request is a distinct, correctly signed delivery (orders/create and products/update on a
12-store network), so each accepted one is a delivery row plus a job. The database is
DATABASE_URL's when set, else a dedicated embedded server in .storesync/bench-pgdata. The load
generator runs on the same machine as the server, so it takes a share of the same cores.
Bounded: about 60-90 s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import psutil
import psycopg
from pydantic import SecretStr

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "src"))

from storesync.config import NetworkConfig, Settings
from storesync.db.migrate import migrate
from storesync.db.pools import async_pooled_pool
from storesync.web.batcher import DeliveryBatcher
from storesync.web.ingest import ACCEPTED, Delivery, sign
from storesync.web.topics import job_spec

GOAL_RATE = 1500
BENCH_DB = "storesync_bench_ingest"


# --------------------------------------------------------------------------- setup


def network_toml(merchants: int = 4, children: int = 2) -> tuple[str, list[tuple[str, str, str]]]:
    """A network and its (merchant, shop, secret) triples."""
    lines, stores = [], []
    for m in range(merchants):
        lines.append(f'[[merchants]]\nid = "m{m}"\n')
        for c in range(children + 1):
            shop, secret = f"bench-{m}-{c}.myshopify.com", f"secret-{m}-{c}"
            table = "[merchants.parent]" if c == 0 else "[[merchants.children]]"
            lines.append(
                f'{table}\nshop = "{shop}"\n'
                f'admin_api_url = "http://127.0.0.1:1/{shop}/admin/api/2026-10/graphql.json"\n'
                f'access_token = "t"\nwebhook_secrets = ["{secret}"]\n'
            )
            stores.append((f"m{m}", shop, secret))
    return "\n".join(lines), stores


def database(name: str = BENCH_DB) -> tuple[str, str, object | None]:
    """A DSN to an empty, migrated bench database `name`, the server's maintenance DSN, and the
    embedded server handle (if any). bench/aged uses it too."""
    url = os.environ.get("DATABASE_URL")
    embedded = None
    if url:
        admin_dsn = url
    else:
        from storesync.db.embedded import EmbeddedPostgres

        embedded = EmbeddedPostgres(ROOT / ".storesync" / "bench-pgdata", "postgres")
        admin_dsn = embedded.start()
    with psycopg.connect(admin_dsn, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.execute(f"CREATE DATABASE {name}")
    params = psycopg.conninfo.conninfo_to_dict(admin_dsn)
    params["dbname"] = name
    dsn = psycopg.conninfo.make_conninfo(**params)
    with psycopg.connect(dsn, autocommit=True) as conn:
        migrate(conn)
    return dsn, admin_dsn, embedded


def requests(stores, n: int, port: int) -> list[bytes]:
    """n distinct signed HTTP/1.1 requests (half orders/create, half products/update)."""
    out = []
    for i in range(n):
        _merchant, shop, secret = stores[i % len(stores)]
        topic = "orders/create" if i % 2 == 0 else "products/update"
        body = json.dumps(
            {
                "id": 10**8 + i,
                "name": f"#{i}",
                "line_items": [{"variant_id": 1000 + i % 97, "quantity": 1}],
                "title": "Bench product",
                "updated_at": "2026-11-25T12:00:00Z",
            }
        ).encode()
        head = (
            f"POST /webhooks/shopify HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            f"X-Shopify-Topic: {topic}\r\nX-Shopify-Shop-Domain: {shop}\r\n"
            f"X-Shopify-Hmac-Sha256: {sign(secret, body)}\r\nX-Shopify-Webhook-Id: {uuid.uuid4()}\r\n"
            f"X-Shopify-Event-Id: {uuid.uuid4()}\r\nX-Shopify-API-Version: 2026-10\r\n"
            f"X-Shopify-Triggered-At: 2026-11-25T12:00:00.000000000Z\r\n\r\n"
        )
        out.append(head.encode() + body)
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(dsn: str, config: Path, port: int, workers: int, pool_max: int) -> subprocess.Popen:
    env = {
        **os.environ,
        "DATABASE_URL": dsn,
        "STORESYNC_CONFIG_FILE": str(config),
        "STORESYNC_LOG_LEVEL": "warning",
        "STORESYNC_POOL_MAX_SIZE": str(pool_max),
        "STORESYNC_POOL_MIN_SIZE": str(pool_max),
    }
    env.pop("DATABASE_DIRECT_URL", None)
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "storesync", "serve", "--port", str(port), "--workers", str(workers)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"storesync serve exited: {proc.stderr.read().decode()[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(b"GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n")
                if s.recv(64).startswith(b"HTTP/1.1 200"):
                    return proc
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit("storesync serve did not become ready in 60 s")


# --------------------------------------------------------------------------- CPU accounting


def postgres_pids(dsn: str) -> list[int]:
    """The backends serving the bench database (the server may be shared with other databases,
    so its background processes - WAL writer, checkpointer - are left out)."""
    with psycopg.connect(dsn) as conn:
        return [
            r[0]
            for r in conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        ]


def cpu_seconds(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            t = psutil.Process(pid).cpu_times()
            total += t.user + t.system
        except psutil.Error:
            pass
    return total


class CpuMeter:
    """CPU seconds spent by groups of processes over a phase: on a machine shared with other
    work, CPU per request is a steadier figure than requests per second."""

    def __init__(self, **groups: list[int]) -> None:
        self.groups = groups
        self.start = {name: cpu_seconds(pids) for name, pids in groups.items()}

    def per_request_us(self, requests: int) -> dict[str, float]:
        return {
            f"{name}_cpu_us": round((cpu_seconds(pids) - self.start[name]) / max(requests, 1) * 1e6)
            for name, pids in self.groups.items()
        }


# --------------------------------------------------------------------------- HTTP load


class Conn:
    """A minimal keep-alive HTTP/1.1 client connection: far cheaper than a general client, so
    the load generator steals less CPU from the server it measures."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int) -> Conn:
        return cls(*await asyncio.open_connection("127.0.0.1", port))

    async def send(self, request: bytes) -> int:
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        lower = head.lower()
        i = lower.find(b"content-length:")
        length = int(lower[i + 15 : lower.find(b"\r\n", i)]) if i >= 0 else 0
        await self.reader.readexactly(length)
        return status

    def close(self) -> None:
        self.writer.close()


def summary(latencies: list[float], accepted: int, statuses: dict[int, int], seconds: float) -> dict:
    lat = sorted(latencies)

    def pct(p: float) -> float:
        return round(lat[min(len(lat) - 1, int(p * len(lat)))] * 1000, 2) if lat else float("nan")

    return {
        "accepted_per_s": round(accepted / seconds, 1),
        "requests": len(lat),
        "p50_ms": pct(0.50),
        "p99_ms": pct(0.99),
        "max_ms": round(lat[-1] * 1000, 2) if lat else float("nan"),
        "statuses": statuses,
    }


async def closed_loop(port: int, reqs: list[bytes], connections: int, seconds: float) -> dict:
    """As fast as it goes: each connection sends its next request when the last one is answered."""
    it = iter(reqs)
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    deadline = time.perf_counter() + seconds

    async def run() -> None:
        conn = await Conn.open(port)
        try:
            for req in it:
                if time.perf_counter() >= deadline:
                    break
                t = time.perf_counter()
                st = await conn.send(req)
                latencies.append(time.perf_counter() - t)
                statuses[st] = statuses.get(st, 0) + 1
        finally:
            conn.close()

    started = time.perf_counter()
    await asyncio.gather(*(run() for _ in range(connections)))
    elapsed = time.perf_counter() - started
    return summary(latencies, statuses.get(200, 0), statuses, elapsed)


async def open_loop(port: int, reqs: list[bytes], rate: float, seconds: float, connections: int = 64) -> dict:
    """Requests arrive at `rate`/s whatever the server does; latency counts from the scheduled
    send time, so a stalled server shows up as latency instead of as fewer requests."""
    n = min(len(reqs), int(rate * seconds))
    idle: asyncio.Queue[Conn] = asyncio.Queue()
    for _ in range(connections):
        idle.put_nowait(await Conn.open(port))
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    start = time.perf_counter() + 0.05

    async def one(i: int) -> None:
        scheduled = start + i / rate
        conn = await idle.get()
        st = await conn.send(reqs[i])
        latencies.append(time.perf_counter() - scheduled)
        statuses[st] = statuses.get(st, 0) + 1
        idle.put_nowait(conn)

    tasks = []
    for i in range(n):
        delay = start + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.ensure_future(one(i)))
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - start
    while not idle.empty():
        idle.get_nowait().close()
    return summary(latencies, statuses.get(200, 0), statuses, elapsed)


# --------------------------------------------------------------------------- ceiling


async def ceiling(dsn: str, stores, callers: int, in_flight: int, pool_size: int, seconds: float) -> dict:
    """The web tier's database path without HTTP: `callers` concurrent deliveries through the same
    group-commit batcher and transaction (`DeliveryBatcher` -> `record_deliveries`)."""
    settings = Settings.load(database_url=SecretStr(dsn), pool_min_size=pool_size, pool_max_size=pool_size)
    latencies: list[float] = []
    counter = iter(range(10**9))
    deadline = time.perf_counter() + seconds

    def delivery(i: int) -> Delivery:
        merchant, shop, _secret = stores[i % len(stores)]
        topic = "orders/create" if i % 2 == 0 else "products/update"
        body = {
            "id": 2 * 10**8 + i,
            "name": f"#{i}",
            "line_items": [{"variant_id": 1000 + i % 97, "quantity": 1}],
            "title": "Bench product",
            "updated_at": "2026-11-25T12:00:00Z",
        }
        webhook_id = str(uuid.uuid4())
        return Delivery(
            webhook_id=webhook_id,
            shop=shop,
            merchant_id=merchant,
            topic=topic,
            event_id=str(uuid.uuid4()),
            triggered_at=None,
            api_version="2026-10",
            payload=json.dumps(body).encode(),
            status=ACCEPTED,
            job=job_spec(
                topic=topic,
                shop=shop,
                merchant_id=merchant,
                webhook_id=webhook_id,
                event_id=None,
                triggered_at=None,
                api_version="2026-10",
                body=body,
            ),
        )

    async with async_pooled_pool(settings, name="bench-ceiling") as pool:
        await pool.wait()
        batcher = DeliveryBatcher(
            pool, statement_timeout_ms=settings.statement_timeout_ms, max_in_flight=in_flight
        )

        async def run() -> None:
            while time.perf_counter() < deadline:
                d = delivery(next(counter))
                t = time.perf_counter()
                await batcher.record(d)
                latencies.append(time.perf_counter() - t)

        meter = CpuMeter(python=[os.getpid()], postgres=postgres_pids(dsn))
        started = time.perf_counter()
        await asyncio.gather(*(run() for _ in range(callers)))
        elapsed = time.perf_counter() - started
        cpu = meter.per_request_us(len(latencies))
    return {**summary(latencies, len(latencies), {200: len(latencies)}, elapsed), **cpu}


# --------------------------------------------------------------------------- main


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workers", type=int, default=2, help="uvicorn workers (default 2: one per core)")
    ap.add_argument("--seconds", type=float, default=10.0, help="length of each measured phase")
    ap.add_argument("--connections", type=int, default=64, help="concurrent senders in the max phase")
    ap.add_argument("--pool", type=int, default=8, help="pooled-path connections per worker")
    args = ap.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass

    t0 = time.monotonic()
    loadavg = os.getloadavg()
    dsn, _admin_dsn, embedded = database()
    toml, stores = network_toml()
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        config = Path(tmp) / "storesync.toml"
        config.write_text(toml)
        NetworkConfig.load(config)  # fail here on a bad generated config

        results["ceiling"] = asyncio.run(
            ceiling(dsn, stores, args.connections, args.workers * 4, args.workers * args.pool, args.seconds)
        )
        print("ceiling (record_delivery straight from Python):", results["ceiling"], flush=True)

        port = free_port()
        server = start_server(dsn, config, port, args.workers, args.pool)
        try:
            reqs = requests(stores, int(12000 * args.seconds) + 20000, port)
            asyncio.run(closed_loop(port, reqs[:2000], args.connections, 2.0))  # warm up
            server_pids = [server.pid] + [c.pid for c in psutil.Process(server.pid).children(recursive=True)]
            meter = CpuMeter(server=server_pids, postgres=postgres_pids(dsn), sender=[os.getpid()])
            results["max"] = asyncio.run(closed_loop(port, reqs[2000:], args.connections, args.seconds))
            results["max"].update(meter.per_request_us(results["max"]["requests"]))
            print("max (HTTP, closed loop):", results["max"], flush=True)
            offset = 2000 + results["max"]["requests"]
            for name, rate in (
                ("paced_goal_half", GOAL_RATE / 2),
                ("paced_measured_half", results["max"]["accepted_per_s"] / 2),
            ):
                part = reqs[offset:]
                results[name] = asyncio.run(open_loop(port, part, rate, args.seconds))
                results[name]["rate"] = round(rate, 1)
                offset += results[name]["requests"]
                print(f"{name} ({rate:.0f}/s offered, open loop):", results[name], flush=True)
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(30)
    with psycopg.connect(dsn) as conn:
        deliveries, jobs = conn.execute(
            "SELECT (SELECT count(*) FROM webhook_deliveries), (SELECT count(*) FROM jobs)"
        ).fetchone()
    accepted_http = sum(r["statuses"].get(200, 0) for k, r in results.items() if k != "ceiling") + 2000
    ratio = results["max"]["accepted_per_s"] / results["ceiling"]["accepted_per_s"]
    print()
    print(
        f"## ingest ({args.workers} uvicorn workers, {args.connections} senders, {args.seconds:g}s phases, "
        f"load average before start {loadavg[0]:.2f}, cores {os.cpu_count()})"
    )
    print("| phase | offered | accepted/s | p50 ms | p99 ms | max ms | non-200 | CPU µs per request |")
    print("|---|---|---|---|---|---|---|---|")
    for name, r in results.items():
        offered = f"{r['rate']:.0f}/s" if "rate" in r else "closed loop"
        non200 = sum(v for k, v in r["statuses"].items() if k != 200)
        cpu = ", ".join(f"{k.removesuffix('_cpu_us')} {v}" for k, v in r.items() if k.endswith("_cpu_us"))
        print(
            f"| {name} | {offered} | {r['accepted_per_s']:.0f} | {r['p50_ms']} | {r['p99_ms']} | {r['max_ms']} "
            f"| {non200} | {cpu or '-'} |"
        )
    m = results["max"]
    if m.get("postgres_cpu_us"):
        own = m["server_cpu_us"] + m["postgres_cpu_us"]
        print(
            f"CPU-bound capacity on {os.cpu_count()} idle cores: ~{os.cpu_count() * 1e6 / own:.0f}/s "
            f"(server + Postgres), ~{os.cpu_count() * 1e6 / (own + m['sender_cpu_us']):.0f}/s with this "
            "sender on the same cores"
        )
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    print(
        f"HTTP max / ceiling = {ratio:.2f}; rows: {deliveries} deliveries, {jobs} jobs "
        f"(expected >= {accepted_http} from HTTP + ceiling's {results['ceiling']['requests']}); "
        f"took {time.monotonic() - t0:.0f}s"
    )
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / "ingest.json").write_text(json.dumps(results, indent=2))
    del embedded  # the embedded server stops when this process exits
    return 0


if __name__ == "__main__":
    sys.exit(main())
