"""A worker process that drains a backlog of inventory adjustments against one store, for the
two-process tests and bench/throttle. Prints one JSON line of what it did.

    python -m tests.commerce.adjust_worker --url URL --token T --shop S --item GID --location GID
        --mode smart|naive [--dsn DSN] [--count N | --seconds S] --worker W
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

import httpx
from pydantic import SecretStr

from storesync.commerce.budget import LocalBudget, PostgresBudget
from storesync.commerce.client import AdminClient, idempotency_key
from storesync.commerce.operations import get_operation
from storesync.commerce.variables import adjust_quantities_input
from storesync.config import Settings, StoreConfig
from storesync.db.pools import async_pooled_pool


def _variables(args, i: int) -> tuple[dict, str]:
    input_ = adjust_quantities_input(
        [(args.item, args.location, 1)],
        reason="correction",
        reference_document_uri=f"storesync://bench/{args.worker}/{i}",
    )
    return {"input": input_}, idempotency_key(f"{args.run}-{args.worker}", "adjust", i)


def _more(args, i: int, deadline: float) -> bool:
    return (args.count is None or i < args.count) and time.monotonic() < deadline


async def smart(args) -> dict:
    store = StoreConfig(
        shop=args.shop,
        admin_api_url=args.url,
        access_token=SecretStr(args.token),
        webhook_secrets=[SecretStr("unused")],
    )
    pool = None
    if args.dsn:
        pool = async_pooled_pool(
            Settings.load(database_url=SecretStr(args.dsn)), name="adjust-worker", min_size=1, max_size=2
        )
        await pool.open(wait=True)
        budget = PostgresBudget(pool, margin=args.margin)
    else:
        budget = LocalBudget(margin=args.margin)
    deadline = time.monotonic() + args.seconds
    done = 0
    started = time.time()
    try:
        async with AdminClient(store, budget=budget, backoff_base=0.05, backoff_cap=0.5) as client:
            while _more(args, done, deadline):
                variables, key = _variables(args, done)
                await client.execute("InventoryAdjustQuantities", variables, idempotency_key=key)
                done += 1
            s = client.stats
            return {
                "worker": args.worker,
                "done": done,
                "requests": s.requests,
                "throttled": s.throttled,
                "http_429": s.http_429,
                "server_errors": s.server_errors,
                "points": s.points_charged,
                "started": started,
                "ended": time.time(),
                "last_available": s.last_status.currently_available if s.last_status else None,
                "last_at": s.last_status_at,
            }
    finally:
        if pool is not None:
            await pool.close()


async def naive(args) -> dict:
    """Send; on THROTTLED sleep 1 s and resend. What many clients do."""
    op = get_operation("InventoryAdjustQuantities")
    deadline = time.monotonic() + args.seconds
    done = requests = throttled = 0
    points = 0.0
    last_available = last_at = None
    started = time.time()
    headers = {"X-Shopify-Access-Token": args.token}
    async with httpx.AsyncClient(timeout=10) as http:
        while _more(args, done, deadline):
            variables, key = _variables(args, done)
            body = {"query": op.text, "variables": {**variables, "idempotencyKey": key}}
            requests += 1
            resp = (await http.post(args.url, json=body, headers=headers)).json()
            status = ((resp.get("extensions") or {}).get("cost") or {}).get("throttleStatus")
            if status:
                last_available, last_at = status["currentlyAvailable"], time.time()
            if any((e.get("extensions") or {}).get("code") == "THROTTLED" for e in resp.get("errors") or []):
                throttled += 1
                await asyncio.sleep(1.0)
                continue
            points += ((resp.get("extensions") or {}).get("cost") or {}).get("actualQueryCost") or 0
            done += 1
    return {
        "worker": args.worker,
        "done": done,
        "requests": requests,
        "throttled": throttled,
        "http_429": 0,
        "server_errors": 0,
        "points": points,
        "started": started,
        "ended": time.time(),
        "last_available": last_available,
        "last_at": last_at,
    }


def main() -> None:
    p = argparse.ArgumentParser()
    for name in ("url", "token", "shop", "item", "location", "worker"):
        p.add_argument(f"--{name}", required=True)
    p.add_argument("--mode", choices=("smart", "naive"), default="smart")
    p.add_argument("--dsn")
    p.add_argument("--run", default="run")
    p.add_argument("--count", type=int)
    p.add_argument("--seconds", type=float, default=3600.0)
    p.add_argument("--margin", type=float, default=20.0)
    args = p.parse_args()
    stats = asyncio.run(smart(args) if args.mode == "smart" else naive(args))
    print(json.dumps(stats), flush=True)


if __name__ == "__main__":
    main()
