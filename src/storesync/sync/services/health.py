"""The network's sync health, store by store, and what needs a human: one read of what the
database holds (stores, the queue's work per store, recent dead letters, last writes, the last
reconcile, the shared rate-limit buckets), a constant number of queries whatever the number of
stores, judged by `domain/health.py`. The dashboard's overview, `storesync status` and the ops
listener's store gauges all read it here."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import psycopg

from storesync.commerce.tools import list_budgets_async
from storesync.queue import ops as queue_ops
from storesync.sync.adapters.postgres import (
    last_writes,
    latest_reconcile_runs,
    linked_children,
    stores_status,
)
from storesync.sync.domain.health import (
    TARGET_KEYS,
    Attention,
    Bucket,
    DeadJob,
    ReconcileSummary,
    StoreFacts,
    StoreHealth,
    StoreState,
    StoreWork,
    classify,
    dead_job_attention,
    job_targets,
    paused_attention,
    replay_warning,
)

# Workers that heartbeated within this long count as running.
LIVE_WORKER_S = 60.0


@dataclass
class NetworkHealth:
    stores: list[StoreHealth]
    attention: list[Attention]
    live_workers: int
    at: datetime
    dead_jobs: list[DeadJob] = field(default_factory=list)

    def by_state(self, state: StoreState) -> list[StoreHealth]:
        return [s for s in self.stores if s.state is state]

    @property
    def all_in_step(self) -> bool:
        return bool(self.stores) and all(s.state is StoreState.IN_STEP for s in self.stores)


@dataclass(frozen=True)
class Topology:
    """Each merchant's parent and children as the stores table has them."""

    parents: dict[str, str]
    children: dict[str, list[str]]
    merchant_of: dict[str, str]

    @classmethod
    def of(cls, stores: Sequence[dict[str, Any]]) -> Topology:
        parents: dict[str, str] = {}
        children: dict[str, list[str]] = {}
        for s in stores:
            if s["role"] == "parent":
                parents[s["merchant_id"]] = s["shop_domain"]
            else:
                children.setdefault(s["merchant_id"], []).append(s["shop_domain"])
        return cls(parents, children, {s["shop_domain"]: s["merchant_id"] for s in stores})

    def targets(
        self, group: str, kind: str, keyed: dict[str, Any], parked_for: str | None
    ) -> tuple[str, ...]:
        if parked_for:
            return (parked_for,)
        return job_targets(kind, keyed, self.parents.get(group), self.children.get(group, []))


def _summary(at: datetime, entry: dict[str, Any] | None) -> ReconcileSummary | None:
    if not isinstance(entry, dict):
        return None
    return ReconcileSummary(
        at=at,
        found=int(entry.get("found") or 0),
        repaired=int(entry.get("repaired") or 0),
        left=int(entry.get("left") or 0),
        skipped=entry.get("skipped"),
        kinds={str(k): int(v) for k, v in (entry.get("kinds") or {}).items()},
    )


async def network_health(
    conn: psycopg.AsyncConnection,
    *,
    behind_after_s: float,
    failing_within_s: float,
    dead_shown: int = 20,
    now: datetime | None = None,
) -> NetworkHealth:
    """Every store's health and what needs a human, on the caller's connection and transaction
    (which bounds the reads with its statement timeout)."""
    stores = await stores_status(conn)
    topology = Topology.of(stores)
    work = {s["shop_domain"]: StoreWork() for s in stores}
    for w in await queue_ops.work_by_payload(conn, TARGET_KEYS, dead_within_s=failing_within_s):
        for shop in topology.targets(w.group, w.kind, w.keyed, w.parked_for):
            if shop in work:
                work[shop].add(
                    w.kind,
                    active=w.active,
                    oldest_active=w.oldest_active,
                    parked=w.parked,
                    parked_since=w.parked_since,
                    dead=w.dead,
                    last_dead_at=w.last_dead_at,
                )
    written = await last_writes(conn, list(work))
    runs = await latest_reconcile_runs(conn)
    buckets = {
        shop: Bucket(float(capacity), float(rate), float(available), int(waiting))
        for shop, capacity, rate, available, _at, waiting in await list_budgets_async(conn)
    }
    now = now or datetime.now(UTC)
    health = []
    for s in stores:
        shop, merchant = s["shop_domain"], s["merchant_id"]
        run_at, per_store = runs.get(merchant, (None, {}))
        facts = StoreFacts(
            merchant_id=merchant,
            merchant_name=s["merchant_name"] or merchant,
            shop=shop,
            role=s["role"],
            status=s["status"],
            status_reason=s["status_reason"],
            paused_at=s["paused_at"],
            work=work[shop],
            last_write_at=written.get(shop),
            reconcile=_summary(run_at, per_store.get(shop)) if run_at else None,
            bucket=buckets.get(shop),
        )
        health.append(classify(facts, now, behind_after_s=behind_after_s))

    paused = {s["shop_domain"]: s["status_reason"] or "paused" for s in stores if s["status"] == "paused"}
    attention = [paused_attention(shop, reason) for shop, reason in paused.items()]
    dead = [
        DeadJob(
            id=row["id"],
            kind=row["kind"],
            group=row["group_key"],
            targets=topology.targets(
                row["group_key"],
                row["kind"],
                {k: row["payload"].get(k) for k in TARGET_KEYS if isinstance(row["payload"], dict)},
                row["payload"].get("parked_for") if isinstance(row["payload"], dict) else None,
            ),
            error_type=row["last_error_type"] or "error",
            message=(row["last_error"] or "")[:300],
            retryable=bool(row["last_retryable"]),
            source=str(row["payload"].get("shop") or "")
            if isinstance(row["payload"], dict) and row["kind"].startswith("webhook.")
            else "",
        )
        for row in await queue_ops.recent_dead_jobs(conn, within_s=failing_within_s, limit=dead_shown)
    ]
    attention += dead_job_attention(dead, paused)
    # The last reconcile found children not linked yet: still so now? (a backfill may have run since)
    unlinked = [
        h.shop for h in health if h.facts.reconcile and "not linked" in (h.facts.reconcile.skipped or "")
    ]
    still_unlinked = set(unlinked) - (await linked_children(conn, unlinked) if unlinked else set())
    for h in health:
        run = h.facts.reconcile
        if h.shop in still_unlinked and h.state is not StoreState.PAUSED:
            attention.append(
                Attention(
                    "warning",
                    f"{h.shop} is not linked to its parent yet: nothing syncs to it",
                    "Link what it already sells and copy the rest",
                    f"storesync backfill --child {h.shop}",
                    shop=h.shop,
                )
            )
        elif run and run.left and h.state is not StoreState.PAUSED:
            attention.append(
                Attention(
                    "warning",
                    f"{h.shop}: the last reconcile could not repair {run.left} differences",
                    "See what and why (nothing is changed)",
                    f"storesync reconcile --dry-run --merchant {h.facts.merchant_id}",
                    shop=h.shop,
                )
            )
    live = [w for w in await queue_ops.worker_heartbeats(conn) if w["state"] != "stopped"]
    live_workers = sum(1 for w in live if w["heartbeat_age_s"] <= LIVE_WORKER_S)
    if stores and not live_workers:
        attention.insert(
            0,
            Attention(
                "error",
                "No worker is running: nothing is being synced",
                "Start one (or more) on any machine with the same settings",
                "storesync worker",
            ),
        )
    return NetworkHealth(health, attention, live_workers, now, dead)


def why_replay_fails(job: dict[str, Any], stores: Sequence[dict[str, Any]]) -> str | None:
    """Why replaying `job` (a `queue.ops.show_job` row) would fail or be parked again, judged
    against the stores (`stores_status` rows): a store it writes still paused, or a permanent
    last error. None when nothing says so."""
    topology = Topology.of(stores)
    payload: dict[str, Any] = job["payload"] if isinstance(job.get("payload"), dict) else {}
    targets = topology.targets(
        job["group_key"], job["kind"], {k: payload.get(k) for k in TARGET_KEYS}, payload.get("parked_for")
    )
    paused = {s["shop_domain"]: s["status_reason"] or "paused" for s in stores if s["status"] == "paused"}
    errors = [e for e in job.get("errors") or [] if isinstance(e, dict) and e.get("error") != "Replayed"]
    return replay_warning(
        state=job["state"], targets=targets, paused=paused, last_error=errors[-1] if errors else None
    )
