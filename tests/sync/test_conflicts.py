import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from storesync.sync.conflicts import (
    LevelDecision,
    Version,
    classify_level_change,
    is_echo,
    is_stale,
    judge_level_delivery,
    winner,
)
from storesync.sync.memory import MemoryAppliedVersions, MemoryWriteRecords
from storesync.sync.ports import WriteRecord

T0 = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
ITEM, LOC, SHOP = "gid://shopify/InventoryItem/1", "gid://shopify/Location/1", "child-a.myshopify.com"


def w(q: int, seconds: float) -> WriteRecord:
    return WriteRecord(SHOP, ITEM, LOC, q, T0 + timedelta(seconds=seconds), "job:1")


def test_older_deliveries_are_stale_and_equal_ones_are_not():
    assert is_stale(Version(T0), Version(T0 + timedelta(seconds=1)))
    assert not is_stale(Version(T0), Version(T0))  # the same event again: harmless, goes through
    assert not is_stale(Version(T0 + timedelta(seconds=1)), Version(T0))
    assert not is_stale(Version(T0), None)
    assert is_stale(Version(T0, "a"), Version(T0, "b"))  # ties are broken the same way everywhere


def test_versions_need_aware_timestamps():
    with pytest.raises(ValueError):
        Version(datetime(2026, 1, 1))


def test_last_write_wins_among_competing_absolute_sets_whatever_their_order():
    sets = [(Version(T0 + timedelta(seconds=s), f"e{s}"), q) for s, q in [(3, 7), (1, 9), (2, 4)]]
    assert winner(sets)[1] == 7
    assert winner(list(reversed(sets)))[1] == 7


def test_a_webhook_reporting_our_newest_write_is_an_echo():
    assert is_echo(5, T0 + timedelta(seconds=1), [w(5, 0)])
    assert is_echo(5, T0, [w(5, 2)])  # our clock a little behind Shopify's
    assert not is_echo(5, T0 + timedelta(hours=1), [w(5, 0)])  # outside the window
    assert not is_echo(6, T0 + timedelta(seconds=1), [w(5, 0)])


def test_an_external_change_back_to_an_earlier_written_value_is_not_an_echo():
    # we wrote 5, then 4; someone sets 5 again: the newest write is 4, so 5 is a real change
    assert not is_echo(5, T0 + timedelta(seconds=3), [w(5, 0), w(4, 1)])


def test_classification_of_level_changes():
    args = dict(observed_quantity=3, version=Version(T0), applied=None, writes=[])
    assert classify_level_change(role="parent", **args) is LevelDecision.FAN_OUT
    assert classify_level_change(role="child", **args) is LevelDecision.REASSERT
    assert classify_level_change(role="child", **{**args, "writes": [w(3, 0)]}) is LevelDecision.ECHO
    assert (
        classify_level_change(role="parent", **{**args, "applied": Version(T0 + timedelta(seconds=1))})
        is LevelDecision.STALE
    )


def test_deliveries_out_of_order_keep_the_newest_and_drop_the_older():
    versions, writes = MemoryAppliedVersions(), MemoryWriteRecords()

    async def judge(seconds: int, qty: int):
        return await judge_level_delivery(
            shop=SHOP,
            role="child",
            inventory_item_id=ITEM,
            location_id=LOC,
            available=qty,
            version=Version(T0 + timedelta(seconds=seconds), f"e{seconds}"),
            versions=versions,
            writes=writes,
        )

    async def go():
        assert await judge(5, 2) is LevelDecision.REASSERT
        assert await judge(3, 9) is LevelDecision.STALE  # delivered late
        assert await judge(5, 2) is LevelDecision.REASSERT  # duplicate of the applied one: idempotent
        await writes.record_write(w(1, 6))
        assert await judge(7, 1) is LevelDecision.ECHO
        assert await versions.current(SHOP, ITEM, LOC) == (T0 + timedelta(seconds=7), "e7")

    asyncio.run(go())


def test_delivery_versions_come_from_the_signed_updated_at_refined_by_a_bounded_triggered_at():
    from storesync.sync.conflicts import version_of_delivery

    body = {"updated_at": "2026-11-25T13:00:00+01:00"}  # = T0, whole seconds as Shopify signs it
    refused: list[int] = []

    def count() -> None:
        refused.append(1)

    v = version_of_delivery({"delivery_id": "d1", "body": body}, count)
    assert v == Version(T0, "d1")
    # The unsigned header refines the signed second when it lies just after it...
    v = version_of_delivery(
        {"triggered_at": "2026-11-25T12:00:00.25Z", "event_id": "e1", "body": body}, count
    )
    assert v == Version(T0 + timedelta(milliseconds=250), "e1") and refused == []
    # ...but a replay with a far-future (or far-past) header gets the signed time, and is counted.
    for forged in ("2030-01-01T00:00:00Z", "2026-11-25T11:59:00Z"):
        v = version_of_delivery({"triggered_at": forged, "event_id": "e2", "body": body}, count)
        assert v == Version(T0, "e2")
    assert len(refused) == 2
    with pytest.raises(ValueError, match="no updated_at"):
        version_of_delivery({"triggered_at": "2026-11-25T12:00:00Z", "body": {}})
    with pytest.raises(ValueError, match="timezone"):
        version_of_delivery({"body": {"updated_at": "2026-11-25T12:00:00"}})


def test_level_webhook_bodies_parse_with_clear_errors():
    from storesync.sync.conflicts import level_from_webhook

    r = level_from_webhook(
        {"inventory_item_id": 5, "location_id": "gid://shopify/Location/2", "available": 3}
    )
    assert (r.inventory_item_id, r.location_id, r.available) == (
        "gid://shopify/InventoryItem/5",
        "gid://shopify/Location/2",
        3,
    )
    with pytest.raises(ValueError, match="available"):
        level_from_webhook({"inventory_item_id": 5, "location_id": 2, "available": None})
    with pytest.raises(ValueError, match="Location id"):
        level_from_webhook({"inventory_item_id": 5, "available": 1})
