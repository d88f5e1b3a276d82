"""The job a recorded delivery becomes: its topic's row of the topic table (`sync/domain/topics.py`)
gives the kind, the lane and whether a burst collapses; the group is the merchant, for fairness
between tenants; the payload is a `WebhookJob`."""

from __future__ import annotations

from datetime import UTC, datetime

from storesync.queue.enqueue import JobSpec, Lane
from storesync.sync.domain.payloads import WebhookJob
from storesync.sync.domain.topics import BY_NAME, Family


def handled(topic: str) -> bool:
    """Whether storesync handles this topic (its deliveries become jobs)."""
    return topic in BY_NAME


def reports_a_level(topic: str) -> bool:
    """Whether a handled topic reports one inventory level (`inventory_levels/update`): what the
    web tier may judge at ingest (docs/decisions/0055)."""
    return BY_NAME[topic].family is Family.LEVEL


def job_spec(
    *,
    topic: str,
    shop: str,
    merchant_id: str,
    webhook_id: str,
    event_id: str | None,
    triggered_at: str | None,
    api_version: str | None,
    body: dict,
    received_at: datetime | None = None,
) -> JobSpec | None:
    """The job for a parsed delivery, or None when storesync does not handle the topic."""
    rule = BY_NAME.get(topic)
    if rule is None:
        return None
    singleton_key = lock_key = None
    resource_id = body.get("id")
    if rule.resource and isinstance(resource_id, (int, str)) and not isinstance(resource_id, bool):
        # Keyed by shop: the same product id in two stores is two different products.
        lock_key = f"{rule.resource}:{shop}:{resource_id}"
        if rule.collapse:
            singleton_key = lock_key
    return JobSpec(
        kind=rule.job_kind,
        payload=WebhookJob(
            delivery_id=webhook_id,
            shop=shop,
            topic=topic,
            body=body,
            event_id=event_id,
            triggered_at=triggered_at,
            api_version=api_version,
            received_at=(received_at or datetime.now(UTC)).isoformat(),
        ),
        group=merchant_id,
        lane=Lane[rule.lane.upper()],
        singleton_key=singleton_key,
        lock_key=lock_key,
    )
