"""Where a store's rate-limit bucket lives: in this process (`LocalBudget`) or in Postgres,
shared by every worker process on every machine (`PostgresBudget`).

Both apply the same arithmetic (`throttle.BucketState`): a caller reserves the points its call
will request, sleeps the wait it was told, sends, and settles with what the response said.

Why a reservation row in Postgres rather than only adaptive feedback from throttleStatus: with
feedback alone, N processes each see the bucket as it was before the others' calls in flight and
all spend it, so they collide (THROTTLED) in proportion to N; they back off and then leave the
bucket idle. A shared row lets each caller know the others' reservations before sending, so the
store's bucket is spent to the point without waiting on each other's failures. The row is locked
for a few milliseconds per call (~10 calls/s on a standard plan), which Postgres does easily.
"""

from __future__ import annotations

import itertools
import math
import time
from dataclasses import dataclass
from typing import Protocol

from psycopg_pool import AsyncConnectionPool

from storesync.commerce import budget_sql as sql
from storesync.commerce.throttle import (
    STANDARD_CAPACITY,
    STANDARD_RESTORE_RATE,
    BucketState,
    ThrottleStatus,
    settle_state,
)


# Points kept in the bucket for what the model cannot see (a call sent by another process in the
# few milliseconds before the server answered ours). It costs no throughput under a backlog: the
# bucket just runs at this level instead of zero.
DEFAULT_MARGIN = 10.0


@dataclass(frozen=True)
class Reservation:
    """Points granted to one call. `granted=False`: the wait would exceed the caller's limit and
    nothing was taken."""

    id: int
    shop: str
    cost: float
    wait: float
    granted: bool = True


class Budget(Protocol):
    async def reserve(self, shop: str, cost: float, *, max_wait: float = math.inf) -> Reservation: ...

    async def settle(self, reservation: Reservation, *, charged: float | None,
                     status: ThrottleStatus | None) -> None:
        """`charged`: points the server charged (actualQueryCost; 0 if throttled or not executed;
        None if unknown). `status`: the response's throttleStatus, if any."""


class LocalBudget:
    """One process's view. Across processes without a database it still converges from
    throttleStatus, but processes cannot see each other's in-flight calls."""

    def __init__(self, *, margin: float = DEFAULT_MARGIN, clock=time.monotonic) -> None:
        self.margin = margin
        self._clock = clock
        self._states: dict[str, BucketState] = {}
        self._pending: dict[str, dict[int, tuple[float, float]]] = {}  # id -> (cost, send_at)
        self._ids = itertools.count(1)

    def state(self, shop: str) -> BucketState:
        if shop not in self._states:
            self._states[shop] = BucketState.standard(self._clock())
        return self._states[shop]

    async def reserve(self, shop: str, cost: float, *, max_wait: float = math.inf) -> Reservation:
        grant = self.state(shop).reserve(cost, self._clock(), margin=self.margin, max_wait=max_wait)
        self._states[shop] = grant.state
        if not grant.granted:
            return Reservation(0, shop, cost, grant.wait, granted=False)
        rid = next(self._ids)
        self._pending.setdefault(shop, {})[rid] = (cost, self._clock() + grant.wait)
        return Reservation(rid, shop, cost, grant.wait)

    async def settle(self, reservation: Reservation, *, charged: float | None,
                     status: ThrottleStatus | None) -> None:
        pending = self._pending.setdefault(reservation.shop, {})
        pending.pop(reservation.id, None)
        now = self._clock()
        self._states[reservation.shop] = settle_state(
            self.state(reservation.shop), now, reserved=reservation.cost, charged=charged, status=status,
            waiting_others=sum(cost for cost, send_at in pending.values() if send_at > now),
        )


class PostgresBudget:
    """The bucket of each store in `api_budgets`, locked per call in a short transaction on the
    pooled path (PgBouncer transaction mode safe)."""

    def __init__(self, pool: AsyncConnectionPool, *, margin: float = DEFAULT_MARGIN,
                 reservation_ttl: float = 120.0) -> None:
        self.pool = pool
        self.margin = margin
        # A reservation not settled within its wait + this is presumed dead (its process crashed).
        self.reservation_ttl = reservation_ttl

    @staticmethod
    async def _lock(conn, shop: str) -> tuple[BucketState, float]:
        cur = await conn.execute(sql.LOCK_BUDGET, {"shop": shop})
        row = await cur.fetchone()
        if row is None:
            await conn.execute(sql.ENSURE_BUDGET, {"shop": shop, "capacity": STANDARD_CAPACITY,
                                                   "restore_rate": STANDARD_RESTORE_RATE})
            cur = await conn.execute(sql.LOCK_BUDGET, {"shop": shop})
            row = await cur.fetchone()
        capacity, rate, available, at, now = row
        return BucketState(capacity, rate, available, at), now

    @staticmethod
    async def _write(conn, shop: str, state: BucketState) -> None:
        await conn.execute(sql.UPDATE_BUDGET, {"shop": shop, "capacity": state.capacity,
                                               "restore_rate": state.restore_rate,
                                               "available": state.available, "at": state.at})

    async def reserve(self, shop: str, cost: float, *, max_wait: float = math.inf) -> Reservation:
        async with self.pool.connection() as conn, conn.transaction():
            state, now = await self._lock(conn, shop)
            grant = state.reserve(cost, now, margin=self.margin, max_wait=max_wait)
            if not grant.granted:
                return Reservation(0, shop, cost, grant.wait, granted=False)
            await self._write(conn, shop, grant.state)
            cur = await conn.execute(sql.INSERT_RESERVATION, {
                "shop": shop, "cost": cost, "send_at": now + grant.wait,
                "expires_at": now + grant.wait + self.reservation_ttl})
            (rid,) = await cur.fetchone()
        return Reservation(rid, shop, cost, grant.wait)

    async def settle(self, reservation: Reservation, *, charged: float | None,
                     status: ThrottleStatus | None) -> None:
        shop = reservation.shop
        async with self.pool.connection() as conn, conn.transaction():
            state, now = await self._lock(conn, shop)
            await conn.execute(sql.RELEASE_RESERVATION, {"id": reservation.id, "shop": shop})
            waiting = 0.0
            if status is not None:
                cur = await conn.execute(sql.WAITING_POINTS, {"shop": shop})
                (waiting,) = await cur.fetchone()
            await self._write(conn, shop, settle_state(
                state, now, reserved=reservation.cost, charged=charged, status=status, waiting_others=waiting))
