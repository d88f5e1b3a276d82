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
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import psycopg
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
    async def reserve(
        self, shop: str, cost: float, *, max_wait: float = math.inf, keep_share: float = 0.0
    ) -> Reservation:
        """Points for one call, granted with the wait until the bucket holds them. `keep_share`:
        the share of the bucket's capacity the call must leave in it (a background call's)."""

    async def settle(
        self, reservation: Reservation, *, charged: float | None, status: ThrottleStatus | None
    ) -> None:
        """`charged`: points the server charged (actualQueryCost; 0 if throttled or not executed;
        None if unknown). `status`: the response's throttleStatus, if any."""


class LocalBudget:
    """One process's view. Across processes without a database it still converges from
    throttleStatus, but processes cannot see each other's in-flight calls."""

    def __init__(
        self, *, margin: float = DEFAULT_MARGIN, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.margin = margin
        self._clock = clock
        self._states: dict[str, BucketState] = {}
        self._pending: dict[str, dict[int, tuple[float, float]]] = {}  # id -> (cost, send_at)
        self._ids = itertools.count(1)

    def state(self, shop: str) -> BucketState:
        if shop not in self._states:
            self._states[shop] = BucketState.standard(self._clock())
        return self._states[shop]

    async def reserve(
        self, shop: str, cost: float, *, max_wait: float = math.inf, keep_share: float = 0.0
    ) -> Reservation:
        state = self.state(shop)
        grant = state.reserve(
            cost, self._clock(), margin=self.margin, max_wait=max_wait, keep=keep_share * state.capacity
        )
        self._states[shop] = grant.state
        if not grant.granted:
            return Reservation(0, shop, cost, grant.wait, granted=False)
        rid = next(self._ids)
        self._pending.setdefault(shop, {})[rid] = (cost, self._clock() + grant.wait)
        return Reservation(rid, shop, cost, grant.wait)

    async def settle(
        self, reservation: Reservation, *, charged: float | None, status: ThrottleStatus | None
    ) -> None:
        pending = self._pending.setdefault(reservation.shop, {})
        pending.pop(reservation.id, None)
        now = self._clock()
        self._states[reservation.shop] = settle_state(
            self.state(reservation.shop),
            now,
            reserved=reservation.cost,
            charged=charged,
            status=status,
            waiting_others=sum(cost for cost, send_at in pending.values() if send_at > now),
        )


class PostgresBudget:
    """The bucket of each store in `api_budgets`, locked per call in a short transaction on the
    pooled path (PgBouncer transaction mode safe)."""

    def __init__(
        self, pool: AsyncConnectionPool, *, margin: float = DEFAULT_MARGIN, reservation_ttl: float = 120.0
    ) -> None:
        self.pool = pool
        self.margin = margin
        # A reservation not settled within its wait + this is presumed dead (its process crashed).
        self.reservation_ttl = reservation_ttl

    @staticmethod
    async def _locked_row(
        conn: psycopg.AsyncConnection[Any], statement: str, params: dict[str, Any]
    ) -> tuple[Any, ...]:
        """Run a statement that locks the store's bucket row and returns it; make the row first
        if the store has none yet (first call, or the unlogged table emptied by a crash)."""
        cur = await conn.execute(statement, params)
        row = await cur.fetchone()
        if row is None:
            await conn.execute(
                sql.ENSURE_BUDGET,
                {
                    "shop": params["shop"],
                    "capacity": STANDARD_CAPACITY,
                    "restore_rate": STANDARD_RESTORE_RATE,
                },
            )
            cur = await conn.execute(statement, params)
            row = await cur.fetchone()
        if row is None:
            raise RuntimeError(f"no budget row for {params['shop']}")
        return tuple(row)

    async def reserve(
        self, shop: str, cost: float, *, max_wait: float = math.inf, keep_share: float = 0.0
    ) -> Reservation:
        async with self.pool.connection() as conn, conn.transaction():
            capacity, rate, available, at, now = await self._locked_row(conn, sql.LOCK_BUDGET, {"shop": shop})
            grant = BucketState(capacity, rate, available, at).reserve(
                cost, now, margin=self.margin, max_wait=max_wait, keep=keep_share * capacity
            )
            if not grant.granted:
                return Reservation(0, shop, cost, grant.wait, granted=False)
            state = grant.state
            cur = await conn.execute(
                sql.GRANT_RESERVATION,
                {
                    "shop": shop,
                    "capacity": state.capacity,
                    "restore_rate": state.restore_rate,
                    "available": state.available,
                    "at": state.at,
                    "cost": cost,
                    "send_at": now + grant.wait,
                    "expires_at": now + grant.wait + self.reservation_ttl,
                },
            )
            granted = await cur.fetchone()
            assert granted is not None
            (rid,) = granted
        return Reservation(rid, shop, cost, grant.wait)

    async def settle(
        self, reservation: Reservation, *, charged: float | None, status: ThrottleStatus | None
    ) -> None:
        shop = reservation.shop
        async with self.pool.connection() as conn, conn.transaction():
            capacity, rate, available, at, now, waiting = await self._locked_row(
                conn, sql.SETTLE_LOCK, {"shop": shop, "id": reservation.id}
            )
            state = settle_state(
                BucketState(capacity, rate, available, at),
                now,
                reserved=reservation.cost,
                charged=charged,
                status=status,
                waiting_others=waiting if status is not None else 0.0,
            )
            await conn.execute(
                sql.UPDATE_BUDGET,
                {
                    "shop": shop,
                    "capacity": state.capacity,
                    "restore_rate": state.restore_rate,
                    "available": state.available,
                    "at": state.at,
                },
            )
