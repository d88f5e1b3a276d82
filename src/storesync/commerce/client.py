"""Async Admin GraphQL client for one store.

`execute` estimates the call's cost, reserves it from the store's shared budget (waiting only
`(requested - available) / restoreRate`), sends, and settles the budget with the answer's
`extensions.cost`. Faults are retried inside the call, boundedly:

- The budget (`CallPolicy`, per task): a background call (backfill, reconciliation) leaves the
  bottom quarter of the bucket to live sync and is granted a short wait at a time (it never
  holds points far ahead of live calls); a call that cannot be paid for within the task's
  `max_wait` raises `BudgetBusy` before sending (a job then goes back to the queue, due when
  the bucket will hold the points, instead of holding a worker slot).
- THROTTLED in a 200 body: the model is corrected from throttleStatus and the call waits for
  exactly the missing points, then resends (`max_throttled` times, then `ThrottledError`).
- HTTP 429: waits `Retry-After`; 5xx, timeouts and connection errors: exponential backoff with
  jitter. After `max_attempts` tries: `ApiUnavailableError` (retryable: the caller's job retries,
  so a network fault never loses work). Mutations that must not apply twice carry
  `@idempotent(key:)`, so those retries replay instead of re-applying.
- 401: the token provider (commerce/credentials.py) refreshes the token once and the call is
  resent; a second 401, or 402/403/423: `StoreUnauthorized` (the store refuses the app, not this
  call). ACCESS_DENIED (a scope missing): `AccessDenied`, a `StoreUnauthorized` too: the sync
  layer pauses the store with the reason. MAX_COST_EXCEEDED: `MaxCostExceededError` (split the
  work; `pages` halves its page size). Other GraphQL errors: `GraphQLQueryError`.
- Non-empty `userErrors` in a mutation payload: the typed error from `errors.user_errors_error`.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import math
import random
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import httpx

from storesync.commerce import metrics
from storesync.commerce.budget import Budget, LocalBudget, Reservation
from storesync.commerce.credentials import StaticToken, TokenProvider
from storesync.commerce.errors import (
    AccessDenied,
    ApiUnavailableError,
    BudgetBusy,
    CredentialsRejected,
    GraphQLQueryError,
    MaxCostExceededError,
    StoreUnauthorized,
    ThrottledError,
    user_errors_error,
)
from storesync.commerce.operations import IDEMPOTENCY_VARIABLE, Operation, get_operation
from storesync.commerce.throttle import MAX_QUERY_COST, CostEstimator, QueryCost, ThrottleStatus
from storesync.config import StoreConfig
from storesync.logs import get_logger

log = get_logger("storesync.commerce")

# Namespace of the deterministic idempotency keys (any fixed UUID; never change it).
_IDEMPOTENCY_NAMESPACE = uuid.UUID("6f0c7f0e-5b7c-4a7e-9a51-3c1f2d7e8a40")

# One estimator per process: what the server reported for an operation holds for every store.
DEFAULT_ESTIMATOR = CostEstimator()
# Without a shared budget, every client of this process shares this one (per store inside).
PROCESS_BUDGET = LocalBudget()


# A background call waits for budget this long at a time, then asks again: it never holds points
# reserved far ahead, which live calls reserving meanwhile would have to wait behind.
BACKGROUND_SLICE_S = 1.0


@dataclass(frozen=True)
class CallPolicy:
    """How the calls of the current task may use their store's budget. `background`
    (backfill, reconciliation): leave `keep_share` of the bucket to live sync. `max_wait`: the
    longest a call may wait for budget before `BudgetBusy` (None: the client's own limit)."""

    background: bool = False
    max_wait: float | None = None
    keep_share: float = 0.25


LIVE = CallPolicy()
CALL_POLICY: contextvars.ContextVar[CallPolicy | None] = contextvars.ContextVar(
    "storesync_call_policy", default=None
)


@contextlib.contextmanager
def call_policy(policy: CallPolicy) -> Iterator[None]:
    """Run the block's calls (and the tasks it starts) under `policy`."""
    token = CALL_POLICY.set(policy)
    try:
        yield
    finally:
        CALL_POLICY.reset(token)


def idempotency_key(job_id: int | str, step: str, *parts: object) -> str:
    """The `@idempotent` key of one step of one job: the same on every retry of that job, so the
    store replays the first result instead of applying twice. Put in `parts` whatever makes it a
    different operation (e.g. the `changeFromQuantity` read for this attempt): Shopify rejects a
    key reused with different variables."""
    name = ":".join(["storesync", str(job_id), step, *(str(p) for p in parts)])
    return str(uuid.uuid5(_IDEMPOTENCY_NAMESPACE, name))


@dataclass(frozen=True)
class Result:
    operation: str
    data: dict[str, Any]
    cost: QueryCost | None
    attempts: int

    def __getitem__(self, key: str) -> Any:
        return self.data[key]


# How long a task waits before trying again a call that needs more points than the store's
# bucket holds (Shopify lowered its limits for a while): each try is answered THROTTLED at no
# charge, and refreshes what the engine knows of the bucket.
ABOVE_BUCKET_RETRY_S = 30.0


@dataclass
class ClientStats:
    """What this client did; tests and the throttle bench read it."""

    requests: int = 0
    throttled: int = 0
    http_429: int = 0
    server_errors: int = 0
    network_errors: int = 0
    points_charged: float = 0.0
    waited_s: float = 0.0
    by_status: dict[int, int] = field(default_factory=dict)
    # The store's last throttleStatus and when (epoch seconds) it arrived.
    last_status: ThrottleStatus | None = None
    last_status_at: float | None = None


@dataclass(frozen=True)
class Page:
    nodes: list[dict[str, Any]]
    end_cursor: str | None
    has_next_page: bool
    page_size: int


class AdminClient:
    def __init__(
        self,
        store: StoreConfig,
        *,
        budget: Budget | None = None,
        http: httpx.AsyncClient | None = None,
        timeout: float = 10.0,
        max_attempts: int = 5,
        max_throttled: int = 8,
        backoff_base: float = 0.5,
        backoff_cap: float = 30.0,
        max_budget_wait: float = 60.0,
        estimator: CostEstimator | None = None,
        rng: random.Random | None = None,
        tokens: TokenProvider | None = None,
    ) -> None:
        self.store = store
        self.shop = store.shop
        static = store.static_token
        if tokens is None and static is None:
            raise CredentialsRejected(
                f"{store.shop} uses {store.credential_kind}: the client needs its token provider",
                shop=store.shop,
            )
        self.tokens: TokenProvider = tokens or StaticToken(static.get_secret_value())  # type: ignore[union-attr]
        self.budget: Budget = budget if budget is not None else PROCESS_BUDGET
        self._own_http = http is None
        self.http = http or httpx.AsyncClient(timeout=timeout)
        self.timeout = timeout
        self.max_attempts = max_attempts
        self.max_throttled = max_throttled
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.max_budget_wait = max_budget_wait
        self.estimator = estimator or DEFAULT_ESTIMATOR
        self.rng = rng or random.Random()
        self.stats = ClientStats()

    async def __aenter__(self) -> AdminClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._own_http:
            await self.http.aclose()

    # ------------------------------------------------------------------ execute

    def backoff(self, attempt: int) -> float:
        """Exponential backoff with jitter: half fixed, half random, capped."""
        ceiling = min(self.backoff_cap, self.backoff_base * 2 ** (attempt - 1))
        return float(ceiling / 2 + self.rng.uniform(0, ceiling / 2))

    async def execute(
        self,
        operation: str | Operation,
        variables: Mapping[str, Any] | None = None,
        *,
        idempotency_key: str | None = None,
        raise_user_errors: bool = True,
    ) -> Result:
        op = get_operation(operation)
        variables = dict(variables or {})
        if op.needs_idempotency_key:
            if not idempotency_key:
                raise ValueError(f"{op.name} needs an idempotency key (see commerce.client.idempotency_key)")
            variables[IDEMPOTENCY_VARIABLE] = idempotency_key
        elif idempotency_key is not None:
            raise ValueError(f"{op.name} does not take an idempotency key")
        body = {"query": op.text, "variables": variables, "operationName": op.name}
        ctx = {"shop": self.shop, "operation": op.name}

        failures = throttled = 0
        reauthorized = False  # one token refresh per call, after a 401
        while True:
            estimate = self.estimator.estimate(op, variables)
            if op.kind == "query" and estimate > MAX_QUERY_COST:
                raise MaxCostExceededError(
                    f"{op.name} would request ~{estimate:.0f} points, over the {MAX_QUERY_COST:.0f} limit",
                    requested=estimate,
                    limit=MAX_QUERY_COST,
                    **ctx,
                )
            # The token first: obtaining it may fail (or wait for another process's refresh),
            # and a reservation must never be left unsettled.
            token = await self.tokens.current()
            reservation = await self._reserve(estimate, ctx)
            if reservation.wait > 0:
                self.stats.waited_s += reservation.wait
                metrics.BUDGET_WAIT.labels(self.shop).inc(reservation.wait)
                await asyncio.sleep(reservation.wait)

            outcome = await self._send(op, body, reservation, variables, token)
            if isinstance(outcome, Result):
                result = replace(outcome, attempts=failures + throttled + 1)
                break
            kind, delay, detail = outcome
            if kind == "unauthorized":
                if reauthorized or not await self.tokens.after_unauthorized(detail):
                    raise StoreUnauthorized(
                        f"{self.shop} answered HTTP 401: {_STORE_REFUSES[401]}", status=401, **ctx
                    )
                reauthorized = True
                continue
            if kind == "throttled":
                throttled += 1
                status = self.stats.last_status
                if status is not None and 0 < status.maximum_available < estimate:
                    # The bucket holds less than the call needs (its limits were lowered): no
                    # wait makes it fit, so the task is told to come back later (a job is
                    # deferred, its attempt not counted) instead of burning its attempts.
                    raise BudgetBusy(
                        f"{self.shop}: {op.name} needs ~{estimate:.0f} points, more than its bucket "
                        f"holds now ({status.maximum_available:.0f})",
                        retry_after=ABOVE_BUCKET_RETRY_S,
                        **ctx,
                    )
                if throttled > self.max_throttled:
                    raise ThrottledError(
                        f"{op.name} on {self.shop}: still THROTTLED after {throttled} tries",
                        retry_after=1.0,
                        **ctx,
                    )
                continue  # the next reservation waits exactly for the missing points
            failures += 1
            if failures >= self.max_attempts:
                raise ApiUnavailableError(
                    f"{op.name} on {self.shop}: {detail} ({failures} attempts)", retry_after=delay, **ctx
                )
            wait = delay if delay is not None else self.backoff(failures)
            log.info("admin_api_retry", **ctx, reason=detail, attempt=failures, wait_s=round(wait, 3))
            await asyncio.sleep(wait)

        if raise_user_errors and op.kind == "mutation":
            for payload in result.data.values():
                if isinstance(payload, Mapping) and payload.get("userErrors"):
                    raise user_errors_error(op.name, payload["userErrors"], shop=self.shop)
        return result

    async def _reserve(self, estimate: float, ctx: dict[str, Any]) -> Reservation:
        """The call's points from the budget, under the task's `CallPolicy`; `BudgetBusy` when
        they cannot be had within the wait it allows."""
        policy = CALL_POLICY.get() or LIVE
        limit = (
            self.max_budget_wait if policy.max_wait is None else min(policy.max_wait, self.max_budget_wait)
        )
        keep = policy.keep_share if policy.background else 0.0
        waited = 0.0
        while True:
            # A background call asks for a short wait at a time (see BACKGROUND_SLICE_S).
            ask = min(limit - waited, BACKGROUND_SLICE_S) if policy.background else limit - waited
            reservation = await self.budget.reserve(
                self.shop, estimate, max_wait=max(ask, 0.0), keep_share=keep
            )
            if reservation.granted:
                return reservation
            if not policy.background or waited + reservation.wait > limit:
                raise BudgetBusy(
                    f"{self.shop}: budget busy for {reservation.wait:.1f}s (limit {limit:.1f}s)",
                    retry_after=reservation.wait,
                    **ctx,
                )
            pause = max(0.05, reservation.wait - BACKGROUND_SLICE_S)
            self.stats.waited_s += pause
            waited += pause
            await asyncio.sleep(pause)

    async def _send(
        self,
        op: Operation,
        body: dict[str, Any],
        reservation: Reservation,
        variables: Mapping[str, Any],
        token: str,
    ) -> Result | tuple[str, float | None, str]:
        """One HTTP exchange. A Result, or (kind, forced delay, description) of a retryable fault.
        The reservation is always settled."""
        outcome = "error"
        try:
            result = await self._exchange(op, body, reservation, variables, token)
            outcome = (
                "ok"
                if isinstance(result, Result)
                else {
                    "network": "network_error",
                    "http_429": "http_429",
                    "server": "server_error",
                    "throttled": "throttled",
                    "unauthorized": "unauthorized",
                }[result[0]]
            )
            return result
        except StoreUnauthorized:
            outcome = "unauthorized"
            raise
        finally:
            metrics.CALLS.labels(self.shop, outcome).inc()

    async def _exchange(
        self,
        op: Operation,
        body: dict[str, Any],
        reservation: Reservation,
        variables: Mapping[str, Any],
        token: str,
    ) -> Result | tuple[str, float | None, str]:
        headers = {
            "X-Shopify-Access-Token": token,
            "Content-Type": "application/json",
            "Accept": "application/json",
        }
        self.stats.requests += 1
        try:
            resp = await self.http.post(
                self.store.admin_api_url, json=body, headers=headers, timeout=self.timeout
            )
        except (httpx.TimeoutException, httpx.TransportError) as err:
            self.stats.network_errors += 1
            # A lost answer may still have executed: keep its points reserved (charged unknown).
            await self.budget.settle(reservation, charged=None, status=None)
            return ("network", None, f"{type(err).__name__}: {err}")
        self.stats.by_status[resp.status_code] = self.stats.by_status.get(resp.status_code, 0) + 1
        ctx = {"shop": self.shop, "operation": op.name}

        if resp.status_code == 401:
            await self.budget.settle(reservation, charged=0, status=None)
            return ("unauthorized", None, token)  # the caller refreshes the token once
        if resp.status_code in _STORE_REFUSES:
            await self.budget.settle(reservation, charged=0, status=None)
            raise StoreUnauthorized(
                f"{self.shop} answered HTTP {resp.status_code}: {_STORE_REFUSES[resp.status_code]}",
                status=resp.status_code,
                **ctx,
            )
        if resp.status_code == 429:
            self.stats.http_429 += 1
            await self.budget.settle(reservation, charged=0, status=None)
            return ("http_429", _retry_after(resp.headers.get("Retry-After")), "HTTP 429")

        payload: Any = None
        with contextlib.suppress(ValueError):
            payload = resp.json()
        cost = QueryCost.from_extensions(payload.get("extensions")) if isinstance(payload, dict) else None
        errors = payload.get("errors") if isinstance(payload, dict) else None
        codes = _error_codes(errors)
        status = cost.throttle if cost else None
        if status is not None:
            self.stats.last_status, self.stats.last_status_at = status, time.time()

        if (
            resp.status_code >= 500
            or (not isinstance(payload, dict) and resp.status_code < 400)
            or "INTERNAL_SERVER_ERROR" in codes
        ):
            self.stats.server_errors += 1
            await self.budget.settle(reservation, charged=0, status=status)
            return ("server", _retry_after(resp.headers.get("Retry-After")), f"HTTP {resp.status_code}")
        if "THROTTLED" in codes:
            self.stats.throttled += 1
            if cost and cost.requested:
                self.estimator.learn(op, variables, cost.requested)
            await self.budget.settle(reservation, charged=0, status=status)
            return ("throttled", None, "THROTTLED")

        if cost and cost.requested:
            self.estimator.learn(op, variables, cost.requested)
        if "ACCESS_DENIED" in codes:
            await self.budget.settle(reservation, charged=0, status=status)
            raise AccessDenied(
                f"{op.name} on {self.shop}: {_messages(errors)}",
                required_access=_required_access(errors),
                **ctx,
            )
        if "MAX_COST_EXCEEDED" in codes:  # refused before execution: nothing charged
            await self.budget.settle(reservation, charged=0, status=status)
            raise MaxCostExceededError(
                f"{op.name} on {self.shop}: {_messages(errors)}",
                requested=cost.requested if cost else None,
                limit=MAX_QUERY_COST,
                **ctx,
            )
        charged = cost.actual if cost and cost.actual is not None else (cost.requested if cost else None)
        await self.budget.settle(reservation, charged=charged, status=status)
        if charged:
            self.stats.points_charged += charged
            metrics.POINTS.labels(self.shop).inc(charged)

        if resp.status_code >= 400 or errors:
            raise GraphQLQueryError(
                f"{op.name} on {self.shop} failed (HTTP {resp.status_code}): {_messages(errors)}",
                errors=errors if isinstance(errors, list) else [],
                **ctx,
            )
        data = payload.get("data")
        if not isinstance(data, dict):
            self.stats.server_errors += 1
            return ("server", None, "response without data")
        return Result(op.name, data, cost, attempts=0)

    # ------------------------------------------------------------------ pagination

    @property
    def largest_call_cost(self) -> float:
        """The most points one call may request: Shopify's 1,000-point query limit, or less when
        the store's bucket holds less (`maximumAvailable` of its last answer). "Shopify may
        temporarily reduce API rate limits" (https://shopify.dev/docs/api/usage/limits): a
        page sized for the query limit could then never be paid for."""
        status = self.stats.last_status
        if status is None or status.maximum_available <= 0:
            return MAX_QUERY_COST
        return min(MAX_QUERY_COST, status.maximum_available)

    async def pages(
        self,
        operation: str | Operation,
        variables: Mapping[str, Any] | None = None,
        *,
        connection: str,
        page_size: int = 50,
        after: str | None = None,
    ) -> AsyncIterator[Page]:
        """Every page of the connection at dotted path `connection` (e.g. "products"), following
        `pageInfo.endCursor` from `after`. The page size starts at the largest that fits the
        1,000-point query limit (or the store's smaller bucket: `largest_call_cost`) and halves
        whenever the server says MAX_COST_EXCEEDED."""
        op = get_operation(operation)
        variables = dict(variables or {})
        size = self.estimator.largest_page(op, variables, page_size, limit=self.largest_call_cost)
        while True:
            try:
                result = await self.execute(op, {**variables, "first": size, "after": after})
            except MaxCostExceededError:
                if size <= 1:
                    raise
                size = max(1, size // 2)
                continue
            conn: Any = result.data
            for part in connection.split("."):
                conn = conn.get(part) if isinstance(conn, Mapping) else None
            if conn is None:  # the parent object is gone (e.g. product deleted meanwhile)
                return
            info = conn.get("pageInfo") or {}
            nodes = conn.get("nodes")
            if nodes is None:
                nodes = [edge["node"] for edge in conn.get("edges", [])]
            has_next = bool(info.get("hasNextPage"))
            yield Page(nodes, info.get("endCursor"), has_next, size)
            if not has_next or not info.get("endCursor"):
                return
            after = info["endCursor"]

    async def nodes(
        self,
        operation: str | Operation,
        variables: Mapping[str, Any] | None = None,
        *,
        connection: str,
        page_size: int = 50,
    ) -> AsyncIterator[dict[str, Any]]:
        """Every node of a connection, page after page."""
        async for page in self.pages(operation, variables, connection=connection, page_size=page_size):
            for node in page.nodes:
                yield node


# HTTP statuses by which a store refuses the app as a whole (not this call): the sync layer pauses it.
_STORE_REFUSES = {
    401: "the access token is not accepted (revoked, or the app was uninstalled)",
    402: "the store is frozen (unpaid plan)",
    403: "the app lacks access (scope not granted or merchant approval missing)",
    423: "the store is locked",
}


def _retry_after(value: str | None) -> float | None:
    try:
        seconds = float(value) if value is not None else None
    except ValueError:
        return None
    return seconds if seconds is not None and math.isfinite(seconds) and seconds >= 0 else None


def _error_codes(errors: Any) -> set[str]:
    codes: set[str] = set()
    if isinstance(errors, list):
        for e in errors:
            ext = e.get("extensions") if isinstance(e, dict) else None
            if isinstance(ext, dict) and isinstance(ext.get("code"), str):
                codes.add(ext["code"])
    return codes


def _required_access(errors: Any) -> str | None:
    """Shopify's `requiredAccess` of the first ACCESS_DENIED error (e.g. "`write_inventory`
    access scope."), without its markup."""
    for e in errors if isinstance(errors, list) else ():
        ext = e.get("extensions") if isinstance(e, dict) else None
        if isinstance(ext, dict) and ext.get("code") == "ACCESS_DENIED" and ext.get("requiredAccess"):
            return str(ext["requiredAccess"]).replace("`", "").strip().rstrip(".")
    return None


def _messages(errors: Any) -> str:
    if isinstance(errors, list):
        return "; ".join(str(e.get("message", e)) if isinstance(e, dict) else str(e) for e in errors)
    return "no error details"
