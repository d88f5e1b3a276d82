"""Who syncs with whom: per merchant one parent, N children, and each child's location map.

Built from `storesync.config.NetworkConfig` (secrets stay there; this holds none).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from storesync.config import MerchantConfig, NetworkConfig
from storesync.sync.domain.model import StoreRef


class UnknownStore(LookupError):
    """A shop domain this network does not serve (e.g. a webhook from an unconfigured store)."""


# What happens to a child's own stock move (a delivery received, a count): `revert` sets the
# child back to the parent's level (the child follows the parent); `report` makes it a delta on
# the parent, which then reaches the siblings (a child with a stockroom of its own).
StockPolicy = Literal["revert", "report"]


@dataclass(frozen=True)
class MerchantNetwork:
    merchant_id: str
    parent: StoreRef
    children: tuple[StoreRef, ...]
    # child shop -> {parent location gid: child location gid}
    location_maps: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    # child shop -> its stock policy (absent: revert)
    stock_policies: Mapping[str, StockPolicy] = field(default_factory=dict)

    @classmethod
    def from_config(cls, m: MerchantConfig) -> MerchantNetwork:
        return cls(
            merchant_id=m.id,
            parent=StoreRef(m.parent.shop, "parent", m.id),
            children=tuple(StoreRef(c.shop, "child", m.id) for c in m.children),
            location_maps={c.shop: dict(c.location_map) for c in m.children},
            stock_policies={c.shop: c.stock_changes for c in m.children},
        )

    def stock_policy(self, child_shop: str) -> StockPolicy:
        return self.stock_policies.get(child_shop, "revert")

    @property
    def stores(self) -> tuple[StoreRef, ...]:
        return (self.parent, *self.children)

    def child(self, shop: str) -> StoreRef:
        for c in self.children:
            if c.shop == shop:
                return c
        raise UnknownStore(f"{shop} is not a child of merchant {self.merchant_id}")

    def siblings(self, child_shop: str) -> tuple[StoreRef, ...]:
        self.child(child_shop)
        return tuple(c for c in self.children if c.shop != child_shop)

    def child_location(self, child_shop: str, parent_location: str) -> str | None:
        """The child's location that mirrors `parent_location`, or None if it mirrors none."""
        return self.location_maps.get(child_shop, {}).get(parent_location)

    def parent_location(self, child_shop: str, child_location: str) -> str | None:
        for p, c in self.location_maps.get(child_shop, {}).items():
            if c == child_location:
                return p
        return None


@dataclass(frozen=True)
class Network:
    merchants: tuple[MerchantNetwork, ...]

    @classmethod
    def from_config(cls, cfg: NetworkConfig) -> Network:
        return cls(tuple(MerchantNetwork.from_config(m) for m in cfg.merchants))

    def merchant(self, merchant_id: str) -> MerchantNetwork:
        for m in self.merchants:
            if m.merchant_id == merchant_id:
                return m
        raise UnknownStore(f"no merchant {merchant_id!r}")

    def of_shop(self, shop: str) -> tuple[MerchantNetwork, StoreRef]:
        for m in self.merchants:
            for s in m.stores:
                if s.shop == shop:
                    return m, s
        raise UnknownStore(f"{shop} is not part of the configured network")
