import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from storesync.sync.domain.conflicts import LevelDecision, Version, classify_level_change
from storesync.sync.domain.echoes import is_echo
from storesync.sync.domain.model import WriteRecord
from storesync.sync.services.sales import judge_level_delivery
from tests.fakes import MemoryAppliedVersions, MemoryWriteRecords

T0 = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
ITEM, LOC, SHOP = "gid://shopify/InventoryItem/1", "gid://shopify/Location/1", "child-a.myshopify.com"


def w(q: int, seconds: float) -> WriteRecord:
    return WriteRecord(SHOP, ITEM, LOC, q, T0 + timedelta(seconds=seconds), "job:1")


def test_versions_need_aware_timestamps():
    with pytest.raises(ValueError):
        Version(datetime(2026, 1, 1))


def test_a_webhook_reporting_our_newest_write_is_an_echo():
    assert is_echo(5, T0 + timedelta(seconds=1), [w(5, 0)])
    assert is_echo(5, T0, [w(5, 2)])  # our clock a little behind Shopify's
    assert not is_echo(5, T0 + timedelta(hours=1), [w(5, 0)])  # outside the window
    assert not is_echo(6, T0 + timedelta(seconds=1), [w(5, 0)])


def test_an_external_change_back_to_an_earlier_written_value_is_not_an_echo():
    # we wrote 5, then 4; someone sets 5 again: the newest write is 4, so 5 is a real change
    assert not is_echo(5, T0 + timedelta(seconds=3), [w(5, 0), w(4, 1)])


def test_classification_of_level_changes():
    args = dict(observed_quantity=3, version=Version(T0), writes=[])
    assert classify_level_change(role="parent", **args) is LevelDecision.FAN_OUT
    assert classify_level_change(role="child", **args) is LevelDecision.REASSERT
    assert classify_level_change(role="child", **{**args, "writes": [w(3, 0)]}) is LevelDecision.ECHO
    # Stale: decided by the version guard (the one last-write-wins: see test_contract.py).
    versions = MemoryAppliedVersions()
    assert asyncio.run(versions.advance(SHOP, ITEM, LOC, T0 + timedelta(seconds=1), ""))

    async def judge() -> LevelDecision:
        return await judge_level_delivery(
            shop=SHOP,
            role="parent",
            inventory_item_id=ITEM,
            location_id=LOC,
            available=3,
            version=Version(T0),
            versions=versions,
            writes=MemoryWriteRecords(),
        )

    assert asyncio.run(judge()) is LevelDecision.STALE


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
    from storesync.sync.domain.conflicts import version_of_delivery

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
    from storesync.sync.domain.conflicts import level_from_webhook

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
