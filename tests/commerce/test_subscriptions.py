"""Webhook subscriptions reconciled against the emulator."""

from __future__ import annotations

from storesync.commerce.subscriptions import reconcile_subscriptions, topic_enum
from tests.commerce.test_client_emulator import SHOP, client_for, running_emulator

URL = "https://sync.example.com/webhooks/shopify"


def listed(emu) -> list[tuple[str, str]]:
    body = emu.graphql(
        SHOP,
        "{ webhookSubscriptions(first: 50) { nodes { topic endpoint { "
        "... on WebhookHttpEndpoint { callbackUrl } } } } }",
    )
    return sorted(
        (n["topic"], n["endpoint"]["callbackUrl"]) for n in body["data"]["webhookSubscriptions"]["nodes"]
    )


def test_topic_names_map_to_the_graphql_enum():
    assert topic_enum("orders/create") == "ORDERS_CREATE"
    assert topic_enum("inventory_levels/update") == "INVENTORY_LEVELS_UPDATE"


async def test_subscriptions_end_exactly_as_wanted_and_a_second_run_changes_nothing():
    with running_emulator(stores=[SHOP]) as emu:
        async with client_for(emu) as client:
            for topic, url in (
                ("PRODUCTS_UPDATE", URL),
                ("COLLECTIONS_DELETE", URL),
                ("ORDERS_CREATE", "https://old.example.com/wh"),
            ):
                await client.execute(
                    "WebhookSubscriptionCreate",
                    {"topic": topic, "webhookSubscription": {"callbackUrl": url, "format": "JSON"}},
                )
            topics = ["products/update", "orders/create", "inventory_levels/update", "app/uninstalled"]
            first = await reconcile_subscriptions(client, URL, topics)
            assert first.kept == ["PRODUCTS_UPDATE"]
            assert sorted(first.created) == ["INVENTORY_LEVELS_UPDATE", "ORDERS_CREATE"]
            assert len(first.deleted) == 2  # the dropped topic and the old URL
            assert set(first.failed) == {"APP_UNINSTALLED"}  # this emulator does not offer it
            assert listed(emu) == sorted(
                [("INVENTORY_LEVELS_UPDATE", URL), ("ORDERS_CREATE", URL), ("PRODUCTS_UPDATE", URL)]
            )
            second = await reconcile_subscriptions(client, URL, topics)
            assert not second.created and not second.deleted and len(second.kept) == 3
