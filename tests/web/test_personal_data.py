"""Order, refund and shop bodies are cut to an allow-list: no personal data stays, and sync reads
exactly the same event from what is kept as from what Shopify sent."""

from __future__ import annotations

import json

import pytest

from storesync.sync.domain.orders import order_event_from_webhook
from storesync.web.personal_data import minimised, spec_of

CUSTOMER = {"id": 1, "email": "jon@example.com", "first_name": "Jon", "last_name": "Snow", "phone": "+1555"}
ADDRESS = {"name": "Jon Snow", "address1": "1 Castle Black", "city": "North", "phone": "+1555"}
LINE = {
    "id": 466157049,
    "admin_graphql_api_id": "gid://shopify/LineItem/466157049",
    "variant_id": 39072856,
    "product_id": 632910392,
    "sku": "IPOD-342-N",
    "title": "IPod Nano",
    "quantity": 3,
    "current_quantity": 3,
    "fulfillable_quantity": 3,
    "properties": [{"name": "engraving", "value": "For Jon"}],
    "origin_location": ADDRESS,
    "tax_lines": [{"title": "VAT", "price": "1.00"}],
}
CUSTOM_LINE = {**LINE, "id": 5, "variant_id": None, "product_id": None, "quantity": 1}
REFUND = {
    "id": 509562969,
    "order_id": 450789469,
    "created_at": "2026-11-25T12:00:00-05:00",
    "note": "Jon's parcel came back",
    "user_id": 548380009,
    "restock": True,
    "refund_line_items": [
        {
            "id": 104689539,
            "line_item_id": 466157049,
            "quantity": 1,
            "restock_type": "return",
            "line_item": LINE,
        },
        {
            "id": 104689540,
            "line_item_id": 5,
            "quantity": 1,
            "restock_type": "no_restock",
            "line_item": CUSTOM_LINE,
        },
    ],
    "transactions": [
        {"id": 1, "receipt": {"card": "4242"}, "payment_details": {"credit_card_number": "•••• 4242"}}
    ],
}
ORDER = {
    "id": 450789469,
    "admin_graphql_api_id": "gid://shopify/Order/450789469",
    "name": "#1001",
    "email": "jon@example.com",
    "contact_email": "jon@example.com",
    "phone": "+1555",
    "browser_ip": "203.0.113.7",
    "client_details": {"browser_ip": "203.0.113.7", "user_agent": "Mozilla/5.0"},
    "customer": CUSTOMER,
    "billing_address": ADDRESS,
    "shipping_address": ADDRESS,
    "note": "Leave it with Jon's neighbour",
    "note_attributes": [{"name": "gift", "value": "Jon"}],
    "location_id": 24826418,
    "created_at": "2026-11-25T11:00:00-05:00",
    "updated_at": "2026-11-25T12:00:00-05:00",
    "cancelled_at": None,
    "line_items": [LINE, CUSTOM_LINE],
    "refunds": [REFUND],
    "shipping_lines": [{"title": "Express", "phone": "+1555"}],
    "fulfillments": [{"id": 1, "tracking_number": "1Z", "destination": ADDRESS}],
    "customer_locale": "en",
    "landing_site": "/?ref=jon",
}
SHOP = {
    "id": 548380009,
    "domain": "shop.example",
    "myshopify_domain": "child.myshopify.com",
    "email": "owner@example.com",
    "shop_owner": "Jon Snow",
    "phone": "+1555",
    "address1": "1 Castle Black",
    "customer_email": "help@example.com",
}
PERSONAL = (
    "jon",
    "snow",
    "castle",
    "555",
    "203.0.113",
    "mozilla",
    "neighbour",
    "4242",
    "owner@",
    "help@",
    "ref=",
)


@pytest.mark.parametrize(
    ("topic", "body"), [("orders/create", ORDER), ("orders/updated", ORDER), ("refunds/create", REFUND)]
)
def test_sync_reads_the_same_event_from_the_minimised_body(topic, body) -> None:
    kept = minimised(body, spec_of(topic))
    assert order_event_from_webhook("child.myshopify.com", topic, kept) == order_event_from_webhook(
        "child.myshopify.com", topic, body
    )
    assert order_event_from_webhook("child.myshopify.com", topic, kept).restocks  # not trivially empty


@pytest.mark.parametrize(
    ("topic", "body"), [("orders/create", ORDER), ("refunds/create", REFUND), ("app/uninstalled", SHOP)]
)
def test_no_personal_data_is_kept(topic, body) -> None:
    text = json.dumps(minimised(body, spec_of(topic))).lower()
    assert [p for p in PERSONAL if p in text] == []


def test_only_scalars_stay_under_a_listed_key_and_other_topics_are_kept_as_sent() -> None:
    sneaky = {"id": {"email": "jon@example.com"}, "location_id": [1], "name": "#1", "line_items": "x"}
    assert minimised(sneaky, spec_of("orders/create")) == {"name": "#1"}
    assert spec_of("products/update") is None and spec_of("inventory_levels/update") is None
