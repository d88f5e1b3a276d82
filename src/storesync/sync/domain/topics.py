"""The webhook topics storesync handles: one table that drives ingestion (which deliveries become
jobs, in which lane, collapsing how), subscriptions (which store subscribes to what) and the
handler each topic's job runs (`sync/jobs/registry.py`).

Kind: `webhook.<topic with / replaced by _>`. Lane: sales and stock move first (inventory),
catalog changes after (catalog). A burst of updates to one product or collection collapses into
one waiting job (singleton key): its handler reads the current state anyway. Orders and
inventory levels never collapse: each one is a distinct delta that must be applied.

Subscriptions: the parent's catalog (products, collections) and stock flow down; a child's
sales, restocks, order edits and returns flow up, and its edits (products, linked collections)
and own stock moves are reverted or reported (its stock policy). Every store's locations being
deactivated or reactivated, and an item connected to or disconnected from a location, tell
which levels storesync must not write.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

from storesync.sync.domain.model import Role


class Family(StrEnum):
    """Which handler a topic's job runs."""

    PRODUCT = "product"
    COLLECTION = "collection"
    ORDER = "order"
    LEVEL = "level"
    LEVEL_CONNECTION = "level_connection"  # inventory_levels/connect|disconnect
    LOCATION = "location"  # locations/activate|deactivate (a location is deactivated before it is deleted)
    UNINSTALLED = "uninstalled"
    NOT_SYNCED = "not_synced"  # recorded by the web tier, nothing to do


BOTH: frozenset[Role] = frozenset({"parent", "child"})
CHILD: frozenset[Role] = frozenset({"child"})
NONE: frozenset[Role] = frozenset()


@dataclass(frozen=True)
class Topic:
    name: str  # Shopify's topic, e.g. "orders/create"
    family: Family
    lane: Literal["inventory", "catalog"]
    subscribed_by: frozenset[Role]
    resource: str | None = None  # names the singleton / lock keys (None: neither)
    collapse: bool = False  # a burst collapses into one waiting job
    # The REST resource the body is when it carries personal data ("order", "refund", "shop"):
    # the web tier keeps only an allow-list of it (`web/personal_data.py`). None: kept as sent.
    personal: Literal["order", "refund", "shop", "order_edit", "return", "disposition"] | None = None

    @property
    def job_kind(self) -> str:
        return "webhook." + self.name.replace("/", "_")


TOPICS: tuple[Topic, ...] = (
    Topic("orders/create", Family.ORDER, "inventory", CHILD, personal="order"),
    Topic("orders/cancelled", Family.ORDER, "inventory", CHILD, personal="order"),
    Topic("orders/updated", Family.ORDER, "inventory", CHILD, personal="order"),
    Topic("refunds/create", Family.ORDER, "inventory", CHILD, personal="refund"),  # restocks give stock back
    # Units an edit removed or added (the order is read: the body says what, not where).
    Topic("orders/edited", Family.ORDER, "inventory", CHILD, personal="order_edit"),
    # A return's units restocked (the order and its returns are read: the dispositions' ids).
    Topic("returns/process", Family.ORDER, "inventory", CHILD, personal="return"),
    Topic("reverse_fulfillment_orders/dispose", Family.ORDER, "inventory", CHILD, personal="disposition"),
    Topic("inventory_levels/update", Family.LEVEL, "inventory", BOTH),
    Topic("inventory_levels/connect", Family.LEVEL_CONNECTION, "inventory", BOTH),
    Topic("inventory_levels/disconnect", Family.LEVEL_CONNECTION, "inventory", BOTH),
    Topic("locations/activate", Family.LOCATION, "inventory", BOTH),
    Topic("locations/deactivate", Family.LOCATION, "inventory", BOTH),
    Topic("products/create", Family.PRODUCT, "catalog", BOTH, "product"),
    Topic("products/update", Family.PRODUCT, "catalog", BOTH, "product", collapse=True),
    Topic("products/delete", Family.PRODUCT, "catalog", BOTH, "product"),
    Topic("collections/create", Family.COLLECTION, "catalog", BOTH, "collection"),
    Topic("collections/update", Family.COLLECTION, "catalog", BOTH, "collection", collapse=True),
    Topic("collections/delete", Family.COLLECTION, "catalog", BOTH, "collection"),
    Topic("app/uninstalled", Family.UNINSTALLED, "inventory", BOTH, personal="shop"),  # pause at once
)

BY_NAME: dict[str, Topic] = {t.name: t for t in TOPICS}


def subscriptions(role: Role) -> list[str]:
    """The topics a store of this role subscribes to, in table order."""
    return [t.name for t in TOPICS if role in t.subscribed_by]
