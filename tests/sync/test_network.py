from dataclasses import replace

import pytest

from storesync.sync.domain.network import Network, UnknownStore
from tests.sync.builders import (
    A_LOC1,
    A_LOC2,
    CHILD_A,
    CHILD_B,
    CHILD_C,
    P_LOC1,
    P_LOC2,
    PARENT,
    merchant,
    network_config,
)


def test_network_is_built_from_the_configured_merchants():
    net = Network.from_config(network_config())
    m, store = net.of_shop(CHILD_B)
    assert m.merchant_id == "acme" and store.role == "child"
    assert net.of_shop(PARENT)[1].role == "parent"
    assert [c.shop for c in m.children] == [CHILD_A, CHILD_B, CHILD_C]


def test_unknown_shop_is_a_clear_error():
    with pytest.raises(UnknownStore, match="not part of the configured network"):
        Network.from_config(network_config()).of_shop("stranger.myshopify.com")
    with pytest.raises(UnknownStore):
        merchant().child(PARENT)


def test_locations_map_both_ways_per_child():
    m = merchant()
    assert m.child_location(CHILD_A, P_LOC2) == A_LOC2
    assert m.child_location(CHILD_B, P_LOC2) is None  # child-b mirrors only location 1
    assert m.parent_location(CHILD_A, A_LOC1) == P_LOC1


def test_each_child_has_a_stock_policy_revert_unless_it_says_report():
    m = merchant()
    assert m.stock_policy(CHILD_A) == "revert"
    assert replace(m, stock_policies={CHILD_A: "report"}).stock_policy(CHILD_A) == "report"


def test_siblings_exclude_the_selling_child():
    assert [s.shop for s in merchant().siblings(CHILD_A)] == [CHILD_B, CHILD_C]
