"""The stock account of a child whose own moves are reported (policy report): it follows every
order movement claimed there and every write storesync makes there, including one whose answer
was lost, so the child's level minus `expected` is exactly its own moves."""

from __future__ import annotations

import asyncio

import pytest

from storesync.sync.domain.orders import order_event_from_webhook
from storesync.sync.services.sales import SaleContext, apply_order_event, push_level
from tests.fakes import MemoryAudit, MemoryLedger, MemoryStockAccounts, MemoryStore, MemoryWriteRecords
from tests.sync.builders import A_LOC1, CHILD_A, P_LOC1, PARENT, merchant
from tests.sync.test_inventory import CHILD_ITEMS, P_ITEM, link_map, order

ITEM = CHILD_ITEMS[CHILD_A]


class LosesAnswers(MemoryStore):
    """A store whose next write lands but whose answer never comes back (a timeout)."""

    lose_next = False

    async def set_level(self, *args, **kwargs):
        result = await super().set_level(*args, **kwargs)
        if self.lose_next:
            self.lose_next = False
            raise TimeoutError("answer lost")
        return result


def setup(level: int = 10):
    accounts = MemoryStockAccounts()
    ledger = MemoryLedger(accounts)
    parent, child = MemoryStore(PARENT), LosesAnswers(CHILD_A)
    parent.levels[(P_ITEM, P_LOC1)] = level
    child.levels[(ITEM, A_LOC1)] = level
    writes, audit = MemoryWriteRecords(), MemoryAudit()
    ctx = SaleContext(merchant(), link_map(CHILD_A), ledger, parent, writes, audit)
    return accounts, ctx, child, writes, audit


def own_move(accounts: MemoryStockAccounts, child: MemoryStore) -> int:
    account = asyncio.run(accounts.get(CHILD_A, ITEM, A_LOC1))
    return child.levels[(ITEM, A_LOC1)] - account.expected


def push(child, writes, audit, accounts, target: int) -> None:
    asyncio.run(push_level(child, writes, audit, ITEM, A_LOC1, target, "job:1", accounts=accounts))


def test_sales_writes_and_a_lost_answer_leave_only_the_childs_own_moves():
    accounts, ctx, child, writes, audit = setup()
    push(child, writes, audit, accounts, 10)  # found in step: the account opens at 10
    assert own_move(accounts, child) == 0
    # the child sells 2 (Shopify moves its level; the order is applied through the ledger)
    child.levels[(ITEM, A_LOC1)] -= 2
    asyncio.run(
        apply_order_event(
            ctx, order_event_from_webhook(CHILD_A, "orders/create", order(CHILD_A, 1, qty=2)), "d"
        )
    )
    assert own_move(accounts, child) == 0
    # a sibling's sale: storesync sets the child to the parent's 7
    push(child, writes, audit, accounts, 7)
    assert own_move(accounts, child) == 0
    # a delivery of 5 received by hand
    child.levels[(ITEM, A_LOC1)] += 5
    assert own_move(accounts, child) == 5
    # a write whose answer is lost is settled by sending it again under its key
    child.lose_next = True
    with pytest.raises(TimeoutError):
        push(child, writes, audit, accounts, 3)
    assert asyncio.run(accounts.get(CHILD_A, ITEM, A_LOC1)).pending is not None
    push(child, writes, audit, accounts, 3)
    assert asyncio.run(accounts.get(CHILD_A, ITEM, A_LOC1)).pending is None
    # the write overwrote the delivery before it was reported: the account still has it to report
    assert child.levels[(ITEM, A_LOC1)] == 3 and own_move(accounts, child) == 5


def test_a_move_taken_once_is_not_taken_again():
    accounts, _ctx, child, writes, audit = setup()
    push(child, writes, audit, accounts, 10)
    child.levels[(ITEM, A_LOC1)] += 4
    assert asyncio.run(accounts.take_move(CHILD_A, ITEM, A_LOC1, 1, 4))
    assert not asyncio.run(accounts.take_move(CHILD_A, ITEM, A_LOC1, 1, 4))
    assert own_move(accounts, child) == 0
