"""A client of the emulator's control API (`/_emulator/...`) and its GraphQL endpoints.

One place that knows the control API's paths and bodies, used by the test handle
(`tests/support/emulator.py`), the demo harness and the benchmarks. Ids may be given as gids or
as their numeric tails.
"""

from __future__ import annotations

from typing import Any

import httpx

from storesync.emulator.app import DEFAULT_API_VERSION


def numeric_id(gid_or_id: int | str) -> str:
    return str(gid_or_id).rsplit("/", 1)[-1]


class EmulatorControlError(RuntimeError):
    """The emulator answered a control or GraphQL call with an HTTP error."""


class EmulatorControl:
    """Calls on a running emulator at `base_url`; `control` is the underlying httpx client."""

    def __init__(self, base_url: str, *, timeout: float = 10.0, control_token: str | None = None) -> None:
        self.base_url = base_url
        headers = {"Authorization": f"Bearer {control_token}"} if control_token else {}
        self.control = httpx.Client(base_url=base_url, timeout=timeout, trust_env=False, headers=headers)
        self._stores: dict[str, dict] | None = None

    def close(self) -> None:
        self.control.close()

    def _ok(self, resp: httpx.Response) -> Any:
        if resp.status_code >= 400:
            raise EmulatorControlError(
                f"{resp.request.method} {resp.request.url.path}: {resp.status_code} {resp.text}"
            )
        return resp.json()

    # ------------------------------------------------------------------ stores and their secrets

    def stores(self) -> list[dict]:
        """Every store the emulator serves: shop, token, webhook secret, plan."""
        return self._ok(self.control.get("/_emulator/stores"))["stores"]

    def _store_info(self, shop: str) -> dict:
        if self._stores is None or shop not in self._stores:
            self._stores = {s["shop"]: s for s in self.stores()}
        return self._stores[shop]

    @property
    def shops(self) -> list[str]:
        return [s["shop"] for s in self.stores()]

    def graphql_url(self, shop: str, version: str = DEFAULT_API_VERSION) -> str:
        return f"{self.base_url}/stores/{shop}/admin/api/{version}/graphql.json"

    def token(self, shop: str) -> str:
        return self._store_info(shop)["token"]

    def webhook_secret(self, shop: str) -> str:
        return self._store_info(shop)["webhook_secret"]

    def headers(self, shop: str) -> dict[str, str]:
        return {"X-Shopify-Access-Token": self.token(shop), "Content-Type": "application/json"}

    def graphql(self, shop: str, query: str, variables: dict | None = None) -> dict:
        """POST a GraphQL document to `shop`; the parsed JSON body (errors included)."""
        return self._ok(
            self.control.post(
                self.graphql_url(shop),
                json={"query": query, "variables": variables or {}},
                headers=self.headers(shop),
            )
        )

    # ------------------------------------------------------------------ state

    def snapshot(self, shop: str) -> dict:
        return self._ok(self.control.get(f"/_emulator/stores/{shop}/snapshot"))

    def seed(self, shop: str, products: int = 3, **options: Any) -> dict:
        return self._ok(
            self.control.post(f"/_emulator/stores/{shop}/seed", json={"products": products, **options})
        )

    def place_order(self, shop: str, line_items: list[dict], location_id: str | None = None) -> dict:
        """A customer order (orders/create and inventory_levels/update follow): routed to the
        store's locations, or a point-of-sale order at `location_id`. Answers the orders/create
        payload plus `webhooks` ({topic: [webhook ids]})."""
        body: dict[str, Any] = {"line_items": line_items}
        if location_id is not None:
            body["location_id"] = location_id
        return self._ok(self.control.post(f"/_emulator/stores/{shop}/orders", json=body))

    def cancel_order(self, shop: str, order_id: int | str, restock: bool = True) -> dict:
        return self._ok(
            self.control.post(
                f"/_emulator/stores/{shop}/orders/{numeric_id(order_id)}/cancel", json={"restock": restock}
            )
        )

    def refund_order(
        self, shop: str, order_id: int | str, line_items: list[dict], note: str | None = None
    ) -> dict:
        """A merchant's refund: line_items [{line_item_id, quantity, restock_type: return | cancel |
        no_restock, location_id?}]; answers the refunds/create payload and its `webhooks`."""
        return self._ok(
            self.control.post(
                f"/_emulator/stores/{shop}/orders/{numeric_id(order_id)}/refunds",
                json={"line_items": line_items, "note": note},
            )
        )

    def fulfill_order(self, shop: str, order_id: int | str) -> dict:
        """Ship every open fulfillment order of the order."""
        return self._ok(self.control.post(f"/_emulator/stores/{shop}/orders/{numeric_id(order_id)}/fulfill"))

    def return_order(
        self,
        shop: str,
        order_id: int | str,
        line_items: list[dict],
        *,
        process: bool = True,
        restock: bool = True,
        location_id: str | None = None,
        refund: bool = True,
    ) -> dict:
        """A return of fulfilled units [{line_item_id, quantity}], processed at once unless
        `process` is false (then `process_return`)."""
        body: dict[str, Any] = {
            "line_items": line_items,
            "process": process,
            "restock": restock,
            "refund": refund,
        }
        if location_id is not None:
            body["location_id"] = location_id
        return self._ok(
            self.control.post(f"/_emulator/stores/{shop}/orders/{numeric_id(order_id)}/returns", json=body)
        )

    def process_return(
        self,
        shop: str,
        return_id: int | str,
        *,
        restock: bool = True,
        location_id: str | None = None,
        refund: bool = True,
    ) -> dict:
        body: dict[str, Any] = {"restock": restock, "refund": refund}
        if location_id is not None:
            body["location_id"] = location_id
        return self._ok(
            self.control.post(f"/_emulator/stores/{shop}/returns/{numeric_id(return_id)}/process", json=body)
        )

    def edit_order(
        self,
        shop: str,
        order_id: int | str,
        changes: list[dict] | None = None,
        additions: list[dict] | None = None,
        *,
        restock: bool = True,
    ) -> dict:
        """An order edit: changes [{line_item_id, quantity (the new quantity)}], additions
        [{variant_id, quantity}]; answers the orders/edited payload and its `webhooks`."""
        return self._ok(
            self.control.post(
                f"/_emulator/stores/{shop}/orders/{numeric_id(order_id)}/edit",
                json={"changes": changes or [], "additions": additions or [], "restock": restock},
            )
        )

    def add_location(
        self, shop: str, name: str, *, address: dict | None = None, fulfills_online_orders: bool = True
    ) -> dict:
        """A new location, last in the fulfillment priority order."""
        return self._ok(
            self.control.post(
                f"/_emulator/stores/{shop}/locations",
                json={
                    "name": name,
                    "address": address or {},
                    "fulfills_online_orders": fulfills_online_orders,
                },
            )
        )

    def deactivate_location(
        self, shop: str, location_id: str, destination_location_id: str | None = None
    ) -> dict:
        body = {"destination_location_id": destination_location_id} if destination_location_id else {}
        return self._ok(
            self.control.post(
                f"/_emulator/stores/{shop}/locations/{numeric_id(location_id)}/deactivate", json=body
            )
        )

    def activate_location(self, shop: str, location_id: str) -> dict:
        return self._ok(
            self.control.post(f"/_emulator/stores/{shop}/locations/{numeric_id(location_id)}/activate")
        )

    def add_publication(self, shop: str, name: str) -> dict:
        """A sales channel of the store (by its catalog's title)."""
        return self._ok(self.control.post(f"/_emulator/stores/{shop}/publications", json={"name": name}))

    def set_media(
        self,
        shop: str,
        *,
        unreachable: list[str] | None = None,
        fail_p: float = 0.0,
        seed: int | None = None,
        uploaded_s: float | None = None,
        processing_s: float | None = None,
    ) -> dict:
        """Media faults (sources that end FAILED) and, optionally, wall-clock processing times."""
        body: dict[str, Any] = {"unreachable": unreachable or [], "fail_p": fail_p, "seed": seed}
        if uploaded_s is not None or processing_s is not None:
            body |= {"uploaded_s": uploaded_s or 0.0, "processing_s": processing_s or 0.0}
        return self._ok(self.control.put(f"/_emulator/stores/{shop}/media", json=body))

    def set_inventory(self, shop: str, inventory_item_id: str, location_id: str, available: int) -> dict:
        """A merchant's inventory edit in the admin."""
        return self._ok(
            self.control.post(
                f"/_emulator/stores/{shop}/inventory",
                json={
                    "inventory_item_id": inventory_item_id,
                    "location_id": location_id,
                    "available": available,
                },
            )
        )

    def edit_product(self, shop: str, product_id: str, **changes: Any) -> dict:
        """A merchant's product edit in the admin (products/update follows)."""
        return self._ok(
            self.control.patch(f"/_emulator/stores/{shop}/products/{numeric_id(product_id)}", json=changes)
        )

    # ------------------------------------------------------------------ behaviour

    def set_plan(
        self,
        shop: str,
        plan: str = "standard",
        *,
        bucket_size: float | None = None,
        restore_rate: float | None = None,
    ) -> dict:
        """Change the store's plan; the overrides give e.g. a small bucket that throttles quickly."""
        body: dict[str, Any] = {"plan": plan}
        if bucket_size is not None:
            body["bucket_size"] = bucket_size
        if restore_rate is not None:
            body["restore_rate"] = restore_rate
        return self._ok(self.control.put(f"/_emulator/stores/{shop}/plan", json=body))

    def throttle(self, shop: str) -> dict:
        """The store's throttleStatus and `usage`: requests answered, THROTTLED ones, points charged."""
        return self._ok(self.control.get(f"/_emulator/stores/{shop}/throttle"))

    def level_changes(self, after: int = 0) -> tuple[list[list], int]:
        """Level changes announced after seq `after`: ([seq, shop, item gid, location gid,
        available, epoch seconds], ...) and the last seq returned (`after` when none)."""
        got = self._ok(self.control.get("/_emulator/inventory/changes", params={"after": after}))
        return got["changes"], got["last"]

    def set_bulk_fault(self, shop: str, status: str | None = "FAILED", error_code: str | None = None) -> dict:
        """Make the shop's next bulk operation end with `status` (None clears the fault)."""
        body: dict[str, Any] = {"status": status}
        if error_code is not None:
            body["error_code"] = error_code
        return self._ok(self.control.put(f"/_emulator/stores/{shop}/bulk_fault", json=body))

    def set_faults(self, graphql: dict | None = None, webhooks: dict | None = None) -> dict:
        return self._ok(
            self.control.put("/_emulator/faults", json={"graphql": graphql or {}, "webhooks": webhooks or {}})
        )

    # ------------------------------------------------------------------ the app: OAuth and scopes

    def oauth(self, shop: str) -> dict:
        """The app on `shop`: client id, scopes, tokens issued, refresh tokens' states, requests."""
        return self._ok(self.control.get(f"/_emulator/stores/{shop}/oauth"))

    def configure_app(self, shop: str, **fields: Any) -> dict:
        """Change the app on `shop`: scopes, client_id, client_secret, client_credentials,
        redirect_urls, lose_answers (the next n token answers are processed, then lost)."""
        self._stores = None
        return self._ok(self.control.put(f"/_emulator/stores/{shop}/oauth", json=fields))

    def revoke_tokens(self, shop: str) -> dict:
        """Every token and refresh token issued for `shop` stops working."""
        return self._ok(self.control.post(f"/_emulator/stores/{shop}/oauth/revoke"))

    def client_id(self, shop: str) -> str:
        return self._store_info(shop)["client_id"]

    def client_secret(self, shop: str) -> str:
        return self._store_info(shop)["client_secret"]

    def shop_url(self, shop: str) -> str:
        """`https://{shop}` as the emulator serves it (the OAuth endpoints live below it)."""
        return f"{self.base_url}/stores/{shop}"

    # ------------------------------------------------------------------ webhooks

    def subscribe(self, shop: str, topic: str, callback_url: str) -> dict:
        """A webhook subscription declared in config (Shopify never removes those)."""
        return self._ok(
            self.control.post(
                "/_emulator/webhooks/subscriptions",
                json={"shop": shop, "topic": topic, "callback_url": callback_url},
            )
        )

    def subscriptions(self, shop: str | None = None) -> list[dict]:
        params = {"shop": shop} if shop else {}
        return self._ok(self.control.get("/_emulator/webhooks/subscriptions", params=params))["subscriptions"]

    def deliveries(self, **filters: str) -> list[dict]:
        return self._ok(self.control.get("/_emulator/webhooks/deliveries", params=filters))["deliveries"]

    def drain(self, timeout: float = 10.0) -> bool:
        """Wait until every pending webhook delivery is done (held reorders released)."""
        return self._ok(self.control.post("/_emulator/webhooks/drain", params={"timeout": timeout}))[
            "drained"
        ]
