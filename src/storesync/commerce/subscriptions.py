"""Make a store's webhook subscriptions exactly what storesync needs: each wanted topic once, to
our callback URL, in JSON. Subscriptions an app can list are its own, so the others (old URLs,
dropped topics, duplicates) are deleted unless asked to keep them."""

from __future__ import annotations

from dataclasses import dataclass, field

from storesync.commerce.client import AdminClient
from storesync.commerce.errors import CommerceError


def topic_enum(topic: str) -> str:
    """`orders/create` -> `ORDERS_CREATE` (the GraphQL WebhookSubscriptionTopic)."""
    return topic.replace("/", "_").upper()


@dataclass
class SubscriptionChanges:
    kept: list[str] = field(default_factory=list)  # topics already subscribed as wanted
    created: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)  # "TOPIC -> url" of what was removed
    failed: dict[str, str] = field(default_factory=dict)  # topic -> why (e.g. not offered by the store)


async def reconcile_subscriptions(
    client: AdminClient, callback_url: str, topics: list[str], *, keep_others: bool = False
) -> SubscriptionChanges:
    want = list(dict.fromkeys(topic_enum(t) for t in topics))
    existing = [
        node
        async for node in client.nodes(
            "WebhookSubscriptions", {}, connection="webhookSubscriptions", page_size=100
        )
    ]
    changes = SubscriptionChanges()
    have: set[str] = set()
    for sub in existing:
        url = sub.get("uri")
        if (
            sub["topic"] in want
            and url == callback_url
            and sub["topic"] not in have
            and sub["format"] == "JSON"
        ):
            have.add(sub["topic"])
            changes.kept.append(sub["topic"])
        elif not keep_others or (sub["topic"] in have and url == callback_url):
            await client.execute("WebhookSubscriptionDelete", {"id": sub["id"]})
            changes.deleted.append(f"{sub['topic']} -> {url}")
    for topic in want:
        if topic in have:
            continue
        try:
            await client.execute(
                "WebhookSubscriptionCreate",
                {"topic": topic, "webhookSubscription": {"uri": callback_url, "format": "JSON"}},
            )
        except CommerceError as err:
            if err.retryable:
                raise
            changes.failed[topic] = str(err)
        else:
            changes.created.append(topic)
    return changes
