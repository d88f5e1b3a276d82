"""Emulator throughput: simple mutations and queries per second over real HTTP, next to two
ceilings measured in the same run:

- in-process: the same GraphQL call (document cache, cost, execution, refund) without HTTP;
- bare HTTP: uvicorn + Starlette answering a fixed JSON body, the HTTP stack's own limit.

The emulator serves from one uvicorn process (one core for Python; `--pin` puts it on CPU 0 and
the load generator on CPU 1); the load comes from
`--clients` concurrent keep-alive connections from a minimal asyncio HTTP/1.1 client in this
process (httpx would cost more CPU than the server it measures). Each figure is the best of
`--rounds` runs of `--seconds` each. Usage:

    .venv/bin/python bench/emulator/run.py [--seconds 4] [--clients 8] [--rounds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
SHOP = "bench.myshopify.com"
PIN = False  # --pin

ADJUST = """mutation Adjust($input: InventoryAdjustQuantitiesInput!, $key: String!) {
  inventoryAdjustQuantities(input: $input) @idempotent(key: $key) {
    inventoryAdjustmentGroup { id } userErrors { field message code } } }"""
QUERY = "{ products(first: 10) { nodes { id handle variants(first: 2) { nodes { id sku } } } } }"

BARE_SERVER = r"""
import socket, sys, uvicorn
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route
BODY = b'{"data":{"ok":true}}'
async def ok(request):
    await request.body()
    return Response(BODY, media_type="application/json")
app = Starlette(routes=[Route("/graphql.json", ok, methods=["POST"])])
sock = socket.socket(); sock.bind(("127.0.0.1", 0)); sock.listen(2048)
print(f"http://127.0.0.1:{sock.getsockname()[1]}", flush=True)
uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False)).run(sockets=[sock])
"""


def pin(pid: int, cpu: int) -> None:
    """With --pin: server on one CPU, load generator on another (cleaner on an idle machine;
    worse on a shared, loaded one, where the scheduler balances better)."""
    if PIN and hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) >= 2:
        os.sched_setaffinity(pid, {cpu})


def start(cmd: list[str]) -> tuple[subprocess.Popen, list[str]]:
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={**os.environ, "STORESYNC_CONFIG_FILE": "/nonexistent.toml"},
    )
    assert proc.stdout is not None
    pin(proc.pid, 0)
    return proc, [proc.stdout.readline().strip() for _ in range(2 if "emulator" in cmd else 1)]


async def load(url: str, make_body, headers: dict, seconds: float, clients: int) -> tuple[float, int]:
    """Requests per second with `clients` concurrent keep-alive connections; counts answers
    with errors. A minimal HTTP/1.1 client on asyncio streams, so the load generator costs far
    less CPU than the server it measures (httpx would be the bottleneck on 2 cores)."""
    parsed = httpx.URL(url)
    counter = itertools.count()
    done = 0
    bad = 0
    deadline = time.monotonic() + seconds
    extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())

    async def worker() -> None:
        nonlocal done, bad
        reader, writer = await asyncio.open_connection(parsed.host, parsed.port)
        try:
            while time.monotonic() < deadline:
                body = json.dumps(make_body(next(counter))).encode()
                writer.write(
                    f"POST {parsed.raw_path.decode()} HTTP/1.1\r\nHost: {parsed.host}\r\n"
                    f"Content-Type: application/json\r\n{extra}Content-Length: {len(body)}\r\n\r\n".encode()
                    + body
                )
                head = await reader.readuntil(b"\r\n\r\n")
                status = int(head.split(b" ", 2)[1])
                length = next(
                    int(line.split(b":", 1)[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                )
                answer = json.loads(await reader.readexactly(length))
                if status != 200 or answer.get("errors") or _user_errors(answer):
                    bad += 1
                done += 1
        finally:
            writer.close()

    t0 = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(clients)))
    return done / (time.monotonic() - t0), bad


def _user_errors(body: dict) -> list:
    data = body.get("data") or {}
    payload = data.get("inventoryAdjustQuantities") or {}
    return payload.get("userErrors") or []


def adjust_body(item: str, location: str):
    def make(n: int) -> dict:
        return {
            "query": ADJUST,
            "variables": {
                "key": f"bench-{n}-{time.monotonic_ns()}",
                "input": {
                    "reason": "correction",
                    "name": "available",
                    "changes": [
                        {"inventoryItemId": item, "locationId": location, "delta": 1 if n % 2 else -1}
                    ],
                },
            },
        }

    return make


def in_process(seconds: float) -> tuple[float, float]:
    """(mutations/s, queries/s) through EmulatorApp.call, no HTTP."""
    sys.path.insert(0, str(ROOT / "src"))
    from storesync.emulator.app import EmulatorApp

    app = EmulatorApp([SHOP], seed_products=10)
    app.set_plan(SHOP, "plus", bucket_size=1e12, restore_rate=1e12)
    store = app.emulator.stores[SHOP]
    variant = next(iter(store.variants.values()))
    item = f"gid://shopify/InventoryItem/{variant.inventory_item_id}"
    location = f"gid://shopify/Location/{next(iter(store.locations))}"
    make = adjust_body(item, location)
    rates = []
    for query_or_mut in ("mutation", "query"):
        n = 0
        t0 = time.monotonic()
        deadline = t0 + seconds
        while time.monotonic() < deadline:
            if query_or_mut == "mutation":
                body = make(n)
                status, out, _ = app.call(SHOP, body["query"], body["variables"])
                assert status == 200 and not out.get("errors") and not _user_errors(out), out
            else:
                status, out, _ = app.call(SHOP, QUERY)
                assert status == 200 and not out.get("errors"), out
            n += 1
        rates.append(n / (time.monotonic() - t0))
    return rates[0], rates[1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--pin", action="store_true", help="pin server and load generator to CPUs 0 and 1")
    args = ap.parse_args()
    global PIN
    PIN = args.pin

    pin(0, 0)
    mut_ceiling, query_ceiling = in_process(args.seconds)  # on the server's CPU, like the server
    pin(0, 1)

    bare, (bare_url,) = start([sys.executable, "-c", BARE_SERVER])
    try:
        bare_rate = max(
            asyncio.run(
                load(bare_url + "/graphql.json", lambda n: {"query": "{ x }"}, {}, args.seconds, args.clients)
            )[0]
            for _ in range(args.rounds)
        )
    finally:
        bare.terminate()
        bare.wait(10)

    emu, lines = start(
        [
            sys.executable,
            "-m",
            "storesync",
            "emulator",
            "--port",
            "0",
            "--store",
            SHOP,
            "--seed-products",
            "10",
        ]
    )
    try:
        url, token = lines[0].split()[1], lines[0].split()[2].removeprefix("token=")
        base = url.split("/stores/")[0]
        httpx.put(
            f"{base}/_emulator/stores/{SHOP}/plan",
            json={"plan": "plus", "bucket_size": 1e12, "restore_rate": 1e12},
        ).raise_for_status()
        snap = httpx.get(f"{base}/_emulator/stores/{SHOP}/snapshot").json()
        level = snap["inventory_levels"][0]
        headers = {"X-Shopify-Access-Token": token}
        make = adjust_body(level["inventory_item_id"], level["location_id"])
        mut = [asyncio.run(load(url, make, headers, args.seconds, args.clients)) for _ in range(args.rounds)]
        qry = [
            asyncio.run(load(url, lambda n: {"query": QUERY}, headers, args.seconds, args.clients))
            for _ in range(args.rounds)
        ]
    finally:
        emu.terminate()
        emu.wait(10)
    bad = sum(b for _, b in mut + qry)
    mut_rate = max(r for r, _ in mut)
    qry_rate = max(r for r, _ in qry)

    rows = [
        ("inventoryAdjustQuantities @idempotent, over HTTP", mut_rate, mut_ceiling),
        ("products(first: 10) with variants, over HTTP", qry_rate, query_ceiling),
        ("bare uvicorn + Starlette JSON POST (HTTP ceiling)", bare_rate, None),
    ]
    print(
        f"emulator throughput: {args.clients} clients, best of {args.rounds} x {args.seconds:.0f} s, "
        f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}"
    )
    print("| workload | emulator req/s | in-process ceiling (no HTTP) req/s | emulator / ceiling |")
    print("|---|---:|---:|---:|")
    for name, rate, ceiling in rows:
        ratio = f"{rate / ceiling:.0%}" if ceiling else "-"
        print(f"| {name} | {rate:,.0f} | {f'{ceiling:,.0f}' if ceiling else '-'} | {ratio} |")
    if bad:
        print(f"ERROR: {bad} answers carried errors")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
