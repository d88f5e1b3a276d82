"""What the whole-system benches (flashsale, reconcile) measure the same way: CPU seconds per
process of a `running_system` and of the bench's embedded PostgreSQL, the emulator's per-store
usage (requests, THROTTLED answers, points charged), percentiles, the machine's load."""

from __future__ import annotations

import contextlib
import math
import os
from pathlib import Path
from typing import Any

import psutil


def process_cpu(pid: int) -> float:
    """CPU seconds of one process so far, its reaped children included."""
    t = psutil.Process(pid).cpu_times()
    return t.user + t.system + t.children_user + t.children_system


def postgres_cpu(pgdata: Path) -> float:
    """CPU seconds of the PostgreSQL server of `pgdata` so far: the postmaster with the backends it
    reaped, plus the live ones (only this server's: other servers on the machine do not count)."""
    pid_file = Path(pgdata) / "postmaster.pid"
    try:
        pid = int(pid_file.read_text().split()[0])
        master = psutil.Process(pid)
    except (OSError, ValueError, IndexError, psutil.Error):
        return math.nan
    total = process_cpu(pid)
    for child in master.children():
        with contextlib.suppress(psutil.Error):
            t = child.cpu_times()
            total += t.user + t.system
    return total


def system_cpu(system: Any, pgdata: Path) -> dict[str, float]:
    """CPU seconds so far of each process of a `running_system` (by name) and of Postgres."""
    out: dict[str, float] = {}
    for p in system.processes.processes:
        with contextlib.suppress(psutil.Error):
            out[p.name] = out.get(p.name, 0.0) + process_cpu(p.pid)
    out["postgres"] = postgres_cpu(pgdata)
    return out


def delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {k: after.get(k, 0.0) - before.get(k, 0.0) for k in after}


def usage(system: Any) -> dict[str, dict[str, float]]:
    """shop -> the emulator's usage counters (requests, throttled, points) and its bucket now."""
    out = {}
    for shop in system.shops:
        got = system.emulator.throttle(shop)
        out[shop] = {**got["usage"], **got["throttleStatus"]}
    return out


def buckets_full(system: Any, share: float = 0.95) -> bool:
    return all(u["currentlyAvailable"] >= share * u["maximumAvailable"] for u in usage(system).values())


def pct(values: list[float], q: float) -> float:
    """The q-quantile (nearest rank) of `values`; NaN when empty."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def load() -> float:
    return os.getloadavg()[0]
