"""Per-minute counts for the operator's charts (`ops_minute_counts`, migration 0016).

Every process adds to them without touching the table on a hot path: increments are summed in
memory (`MinuteCounts.add`, or `CounterDeltas` reading the process's Prometheus counters) and
added with one upsert every few seconds (`flush_counts`): the web tier adds the webhooks it
received per store, each worker its job outcomes and its Admin API calls per store and outcome.
The dashboard reads sums per time bucket (`series_buckets`); retention drops rows older than
`KEEP_S` (the charts show a day at most). A process that dies loses its last few seconds.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import psycopg

SERIES_WEBHOOKS = "webhooks"  # key: the store that sent them
SERIES_JOBS = "jobs"  # key: the outcome (succeeded, retried, dead, released, lost)
SERIES_API_CALLS = "api_calls"  # key: "<shop> <outcome>" (ok, throttled, http_429, ...)

KEEP_S = 2 * 86400

# add_counts: add increments to their minutes (rows in key order: two processes adding to the
# same minutes lock them in the same order and cannot deadlock).
ADD_COUNTS = """
INSERT INTO ops_minute_counts (series, minute, key, value)
SELECT s, m, k, v
FROM unnest(%(series)s::text[], %(minute)s::timestamptz[], %(key)s::text[], %(value)s::float8[]) AS u(s, m, k, v)
ORDER BY s, m, k
ON CONFLICT (series, minute, key) DO UPDATE SET value = ops_minute_counts.value + EXCLUDED.value
"""

# series_buckets: one series summed per key into buckets of `bucket_s` seconds since `since`.
SERIES_BUCKETS = """
SELECT date_bin(make_interval(secs => %(bucket_s)s), minute, %(origin)s) AS at, key, sum(value) AS value
FROM ops_minute_counts
WHERE series = %(series)s AND minute >= %(since)s
GROUP BY 1, 2
ORDER BY 1, 2
"""

# count_old_counts / prune_counts: rows older than the cutoff, deleted a batch at a time.
COUNT_OLD_COUNTS = "SELECT count(*) FROM ops_minute_counts WHERE minute < %(before)s"
PRUNE_COUNTS = """
DELETE FROM ops_minute_counts WHERE ctid IN (
    SELECT ctid FROM ops_minute_counts WHERE minute < %(before)s ORDER BY minute LIMIT %(limit)s
)
"""


def minute_of(at: datetime) -> datetime:
    return at.replace(second=0, microsecond=0)


class MinuteCounts:
    """Increments waiting to be added to `ops_minute_counts` (thread-safe: the ops listener's
    thread and the event loop may both add)."""

    def __init__(self) -> None:
        self._pending: dict[tuple[str, datetime, str], float] = {}
        self._lock = threading.Lock()

    def add(self, series: str, key: str = "", n: float = 1.0, at: datetime | None = None) -> None:
        if not n:
            return
        slot = (series, minute_of(at or datetime.now(UTC)), key)
        with self._lock:
            self._pending[slot] = self._pending.get(slot, 0.0) + n

    def take(self) -> dict[tuple[str, datetime, str], float]:
        with self._lock:
            taken, self._pending = self._pending, {}
        return taken

    def give_back(self, rows: Mapping[tuple[str, datetime, str], float]) -> None:
        """Increments a failed flush took: added again, for the next flush."""
        with self._lock:
            for slot, n in rows.items():
                self._pending[slot] = self._pending.get(slot, 0.0) + n


def _params(rows: Mapping[tuple[str, datetime, str], float]) -> dict[str, list[Any]]:
    ordered = sorted(rows.items())
    return {
        "series": [s for (s, _m, _k), _v in ordered],
        "minute": [m for (_s, m, _k), _v in ordered],
        "key": [k for (_s, _m, k), _v in ordered],
        "value": [v for _slot, v in ordered],
    }


async def flush_counts(conn: psycopg.AsyncConnection[Any], counts: MinuteCounts) -> int:
    """Add what `counts` holds (one statement, autocommit or the caller's transaction); on a
    failure the increments are kept for the next flush and the error raised. How many rows."""
    rows = counts.take()
    if not rows:
        return 0
    try:
        await conn.execute(ADD_COUNTS, _params(rows))
    except BaseException:
        counts.give_back(rows)
        raise
    return len(rows)


@dataclass(frozen=True)
class Bucket:
    at: datetime
    key: str
    value: float


async def series_buckets(
    conn: psycopg.AsyncConnection[Any], series: str, *, since: datetime, bucket_s: int
) -> list[Bucket]:
    """`series` summed per key and bucket (aligned on `since`), oldest first."""
    cur = await conn.execute(
        SERIES_BUCKETS,
        {"series": series, "since": minute_of(since), "bucket_s": bucket_s, "origin": minute_of(since)},
    )
    return [Bucket(at, key, float(value)) for at, key, value in await cur.fetchall()]


async def count_old_counts(conn: psycopg.AsyncConnection[Any], before: datetime) -> int:
    cur = await conn.execute(COUNT_OLD_COUNTS, {"before": before})
    row = await cur.fetchone()
    return int(row[0]) if row else 0


async def prune_counts(conn: psycopg.AsyncConnection[Any], before: datetime, limit: int) -> int:
    cur = await conn.execute(PRUNE_COUNTS, {"before": before, "limit": limit})
    return cur.rowcount


def keep_since(now: datetime | None = None) -> datetime:
    return (now or datetime.now(UTC)) - timedelta(seconds=KEEP_S)


# --------------------------------------------------------------------------- from counters


class _Collector(Protocol):
    def collect(self) -> Iterable[Any]: ...


@dataclass(frozen=True)
class CounterSeries:
    """The increments of one Prometheus counter family recorded as a series, keyed by the
    values of `labels` (joined by a space)."""

    metric: str  # the family name, without `_total`
    series: str
    labels: Sequence[str]


class CounterDeltas:
    """Adds the increase of selected counters of a registry since the last call to a
    `MinuteCounts` (the first call counts from 0: the process's counters start there)."""

    def __init__(self, registry: _Collector, specs: Sequence[CounterSeries]) -> None:
        self.registry = registry
        self.specs = {s.metric: s for s in specs}
        self._last: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}

    def collect_into(self, counts: MinuteCounts, at: datetime | None = None) -> None:
        for family in self.registry.collect():
            spec = self.specs.get(family.name)
            if spec is None:
                continue
            for sample in family.samples:
                if not sample.name.endswith("_total"):
                    continue
                ident = (family.name, tuple(sorted(sample.labels.items())))
                before = self._last.get(ident, 0.0)
                self._last[ident] = sample.value
                delta = sample.value - before if sample.value >= before else sample.value
                key = " ".join(sample.labels.get(label, "") for label in spec.labels)
                counts.add(spec.series, key, delta, at)
