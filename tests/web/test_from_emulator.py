"""The emulator's webhook sender (an independent implementation of Shopify's delivery side)
delivering to the real web tier: signatures, headers and duplicates as Shopify sends them."""

from __future__ import annotations

import httpx

from storesync.config import NetworkConfig
from tests.support.emulator import running_emulator
from tests.web.conftest import serving

PARENT, CHILD = "parent.myshopify.com", "child-a.myshopify.com"


def test_emulator_deliveries_with_duplicates_are_recorded_once_each(db) -> None:
    with running_emulator(stores=[PARENT, CHILD]) as emu:
        network = NetworkConfig.model_validate(
            {
                "merchants": [
                    {
                        "id": "acme",
                        "parent": {
                            "shop": PARENT,
                            "admin_api_url": emu.graphql_url(PARENT),
                            "access_token": emu.token(PARENT),
                            "webhook_secrets": [emu.webhook_secret(PARENT)],
                        },
                        "children": [
                            {
                                "shop": CHILD,
                                "admin_api_url": emu.graphql_url(CHILD),
                                "access_token": emu.token(CHILD),
                                "webhook_secrets": [emu.webhook_secret(CHILD)],
                            }
                        ],
                    }
                ]
            }
        )
        with serving(db.settings, network) as s:
            emu.subscribe(PARENT, "products/update", s.webhook_url)
            emu.subscribe(CHILD, "orders/create", s.webhook_url)
            emu.set_faults(webhooks={"duplicate_p": 1.0, "seed": 7})  # every webhook delivered twice
            product_gid = emu.seed(PARENT, products=1)["products"][0]
            emu.seed(CHILD, products=1)
            emu.edit_product(PARENT, product_gid, title="Renamed by the merchant")
            child_variant = emu.snapshot(CHILD)["products"][0]["variants"][0]["id"]
            emu.place_order(CHILD, [{"variant_id": child_variant, "quantity": 1}])
            assert emu.drain(timeout=15)
            sent = emu.deliveries()
            readyz = httpx.get(s.url + "/readyz", timeout=10)
    assert readyz.status_code == 200
    ids = {d["webhook_id"] for d in sent}
    assert len(ids) >= 2 and len(sent) >= 2 * len(ids)  # each id sent at least twice
    assert {(d["status"], d["last_status_code"]) for d in sent} == {("delivered", 200)}
    with db.connect() as conn:
        rows = conn.execute("SELECT webhook_id, topic, status FROM webhook_deliveries ORDER BY id").fetchall()
        jobs = conn.execute("SELECT kind, payload->>'delivery_id' FROM jobs ORDER BY id").fetchall()
    assert {r[0] for r in rows} == ids and len(rows) == len(ids)
    assert {r[1] for r in rows} == {"products/update", "orders/create"}
    assert all(r[2] == "accepted" for r in rows)
    assert {k for k, _ in jobs} == {"webhook.products_update", "webhook.orders_create"}
    assert {d for _, d in jobs} <= ids
