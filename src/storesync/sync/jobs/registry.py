"""The sync engine's job handlers, `{kind: handler}` with each kind's payload type, built once at
start-up and given to the worker (`storesync worker` composes it: `runtime.worker_registry`).

Every handler runs through `_run`: it is handed a `Job` (the queue's context, the settings, the
process's runtime) and its typed payload, and whatever it raises is mapped to the queue's
outcomes in one place (`errors.queue_error`). Its Admin API calls run under the lane's
`commerce.client.CallPolicy`: backfill-lane jobs are background calls. The webhook topics' handlers come from the topic
table (`domain/topics.py`); the periodic jobs are declared here too.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from storesync.commerce.client import CallPolicy, call_policy
from storesync.queue import Lane
from storesync.queue.builtin import registry as builtin
from storesync.queue.handlers import HandlerRegistry, JobContext
from storesync.sync.domain import routing
from storesync.sync.domain.payloads import (
    AdjustJob,
    ChildStockJob,
    CollectionJob,
    CopyJob,
    FanOutJob,
    LinkPendingJob,
    NoPayload,
    ProductJob,
    PushJob,
    ReconcileJob,
    ReconcileLevelsJob,
    SaleJob,
    WebhookJob,
)
from storesync.sync.domain.topics import TOPICS, Family
from storesync.sync.jobs import catalog, copies, inventory, maintenance, webhooks
from storesync.sync.jobs.context import Job, RuntimeFor
from storesync.sync.jobs.errors import queue_error
from storesync.sync.settings import SyncSettings

SYSTEM_GROUP = "storesync"  # fairness group of network-wide periodic jobs

SyncHandler = Callable[[Job, Any], Awaitable[None]]

WEBHOOK_HANDLERS: dict[Family, SyncHandler] = {
    Family.PRODUCT: webhooks.product_webhook,
    Family.COLLECTION: webhooks.collection_webhook,
    Family.ORDER: webhooks.order_webhook,
    Family.LEVEL: webhooks.level_webhook,
    Family.LEVEL_CONNECTION: webhooks.level_connection_webhook,
    Family.LOCATION: webhooks.location_webhook,
    Family.UNINSTALLED: webhooks.app_uninstalled,
    Family.NOT_SYNCED: webhooks.not_synced_webhook,
}

SYNC_HANDLERS: dict[str, tuple[SyncHandler, type]] = {
    routing.JOB_PRODUCT_TO_CHILD: (catalog.product_to_child, ProductJob),
    routing.JOB_COLLECTION_TO_CHILD: (catalog.collection_to_child, CollectionJob),
    routing.JOB_SALE: (inventory.sale, SaleJob),
    routing.JOB_FAN_OUT_LEVEL: (inventory.fan_out, FanOutJob),
    routing.JOB_PUSH_LEVELS: (inventory.push_levels, PushJob),
    routing.JOB_ADJUST_PARENT: (inventory.adjust_parent, AdjustJob),
    routing.JOB_CHILD_STOCK: (inventory.child_stock, ChildStockJob),
    routing.JOB_COPY_PRODUCT: (copies.copy_product, CopyJob),
    routing.JOB_LINK_PENDING_COPIES: (copies.link_pending_copies, LinkPendingJob),
    routing.JOB_RECONCILE_ALL: (maintenance.reconcile_all, NoPayload),
    routing.JOB_RECONCILE: (maintenance.reconcile, ReconcileJob),
    routing.JOB_SETTLE_CHANGES: (maintenance.settle, NoPayload),
    routing.JOB_RECONCILE_LEVELS: (maintenance.reconcile_levels, ReconcileLevelsJob),
}


# A pass reads whole stores before it repairs anything: sent back to the queue, it reads them all
# again, so it waits for budget longer than a job of one product or level (`pass_budget_wait_s`).
PASS_KINDS = frozenset({routing.JOB_RECONCILE, routing.JOB_RECONCILE_LEVELS})


def job_call_policy(kind: str, lane: Lane, settings: SyncSettings) -> CallPolicy:
    """How a job's Admin API calls may use their store's budget: backfill-lane jobs (copies,
    reconciliation) leave the bottom of each bucket to live sync, and a call that cannot be paid
    for within the wait sends the job back to the queue (`errors.queue_error`: deferred), so a
    throttled store never holds a worker slot for long, except a pass's (`PASS_KINDS`)."""
    wait = settings.pass_budget_wait_s if kind in PASS_KINDS else settings.job_budget_wait_s
    return CallPolicy(background=lane is Lane.BACKFILL, max_wait=wait)


def build_registry(settings: SyncSettings, runtime_for: RuntimeFor) -> HandlerRegistry:
    """The worker's registry: the queue's built-in handlers and the sync engine's."""
    registry = builtin.merged(HandlerRegistry())

    def add(kind: str, handler: SyncHandler, payload: type) -> None:
        async def run(ctx: JobContext) -> None:
            try:
                with call_policy(job_call_policy(kind, ctx.lane, settings)):
                    await handler(Job(ctx, settings, runtime_for), ctx.payload)
            except Exception as exc:
                mapped = queue_error(exc)
                if mapped is exc:
                    raise
                raise mapped from exc

        run.__name__ = run.__qualname__ = handler.__name__
        registry.add(kind, run, payload=payload)

    for topic in TOPICS:
        add(topic.job_kind, WEBHOOK_HANDLERS[topic.family], WebhookJob)
    for kind, (handler, payload) in SYNC_HANDLERS.items():
        add(kind, handler, payload)
    registry.schedule(
        "sync.reconcile",
        routing.JOB_RECONCILE_ALL,
        every_seconds=settings.reconcile_every_s,
        group=SYSTEM_GROUP,
    )
    registry.schedule(
        routing.JOB_SETTLE_CHANGES,
        routing.JOB_SETTLE_CHANGES,
        every_seconds=settings.settle_every_s,
        group=SYSTEM_GROUP,
    )
    return registry
