"""Which webhook topics storesync handles, and the job each one becomes.

Kind: `webhook.<topic with / replaced by _>` (INTERFACES.md). Lane: sales and stock move first
(INVENTORY), catalog changes after (CATALOG). Group: the merchant, for fairness between tenants.
A burst of updates to one product or collection collapses into one waiting job (singleton key):
its handler reads the current state anyway. Orders and inventory levels never collapse: each one
is a distinct delta that must be applied.
"""

from __future__ import annotations

from dataclasses import dataclass

from storesync.queue.enqueue import JobSpec, Lane


@dataclass(frozen=True)
class TopicRule:
    lane: Lane
    # Resource name for singleton / lock keys (None: neither).
    resource: str | None = None
    # Collapse a burst of these into one waiting job.
    collapse: bool = False


HANDLED_TOPICS: dict[str, TopicRule] = {
    "orders/create": TopicRule(Lane.INVENTORY),
    "orders/cancelled": TopicRule(Lane.INVENTORY),
    "orders/updated": TopicRule(Lane.INVENTORY),
    "refunds/create": TopicRule(Lane.INVENTORY),  # restocks give stock back
    "inventory_levels/update": TopicRule(Lane.INVENTORY),
    "inventory_levels/connect": TopicRule(Lane.INVENTORY),
    "inventory_levels/disconnect": TopicRule(Lane.INVENTORY),
    "products/create": TopicRule(Lane.CATALOG, "product"),
    "products/update": TopicRule(Lane.CATALOG, "product", collapse=True),
    "products/delete": TopicRule(Lane.CATALOG, "product"),
    "collections/create": TopicRule(Lane.CATALOG, "collection"),
    "collections/update": TopicRule(Lane.CATALOG, "collection", collapse=True),
    "collections/delete": TopicRule(Lane.CATALOG, "collection"),
    "app/uninstalled": TopicRule(Lane.INVENTORY),  # pause the store's work at once
}


def job_kind(topic: str) -> str:
    return "webhook." + topic.replace("/", "_")


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
) -> JobSpec | None:
    """The job for a parsed delivery, or None when storesync does not handle the topic."""
    rule = HANDLED_TOPICS.get(topic)
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
        kind=job_kind(topic),
        payload={
            "delivery_id": webhook_id,
            "shop": shop,
            "topic": topic,
            "event_id": event_id,
            "triggered_at": triggered_at,
            "api_version": api_version,
            "body": body,
        },
        group=merchant_id,
        lane=rule.lane,
        singleton_key=singleton_key,
        lock_key=lock_key,
    )
