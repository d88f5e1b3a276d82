"""The one mapping of a sync job's failures to the queue's outcomes.

- a store that refuses the app (`StoreUnauthorized`: revoked token, uninstalled, frozen) is
  paused with the reason, and the job parked, not failed (`guarded`);
- a job that needs a paused store is parked: re-enqueued unchanged, tagged for that store, due
  `STORESYNC_SYNC_PAUSE_RECHECK_S` later (10 min), re-parked while the store stays paused;
  `storesync network resume SHOP` makes it due at once;
- bad input, or a write that would destroy data (`services/failures.py`): dead letter now
  (`PermanentError`);
- a store whose rate-limit bucket cannot pay for the next call soon (`BudgetBusy`): the job
  goes back to the queue, due when it can, without spending an attempt (`Deferred`), so a
  throttled store never holds a worker slot another store's job could use;
- a lost race (a compare-and-set that kept losing, a saga moved by a duplicate job), a store
  fault that a retry can fix: retry, after the store's `retry_after` when it gave one;
- anything else (our own infrastructure: the database, the pool): the queue retries it with
  backoff.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable

from storesync.commerce.errors import BudgetBusy, CommerceError
from storesync.queue.handlers import Deferred, JobContext, PermanentError, RetryableError
from storesync.sync.adapters.jobqueue import park
from storesync.sync.adapters.postgres import Storage, pause_store, paused_among
from storesync.sync.services.failures import RACE_LOST, is_permanent, refused_store


def queue_error(exc: BaseException) -> BaseException:
    """The queue's view of `exc`: `PermanentError` (dead letter), `RetryableError` (retry, maybe
    after a delay), `Deferred` (again later, the attempt not spent), or `exc` itself (the queue retries any other error with backoff)."""
    if isinstance(exc, (PermanentError, RetryableError, Deferred)):
        return exc
    if isinstance(exc, BudgetBusy):
        return Deferred(str(exc), delay=exc.retry_after or 1.0)
    if isinstance(exc, RACE_LOST):
        return RetryableError(str(exc))
    if is_permanent(exc):
        return PermanentError(f"{type(exc).__name__}: {exc}")
    if isinstance(exc, CommerceError) and exc.retryable:
        return RetryableError(f"{type(exc).__name__}: {exc}", retry_after=exc.retry_after)
    return exc


async def guarded(
    ctx: JobContext,
    st: Storage,
    shops: Iterable[str],
    work: Callable[[], Awaitable[None]],
    *,
    pause_recheck_s: float,
) -> None:
    """Run `work` unless one of `shops` is paused; a store refusing the app pauses it. Either way
    the job is parked, not failed. Other errors propagate (the registry maps them)."""
    shops = list(shops)
    paused = await paused_among(st.conn, shops)
    shop = next(iter(paused), None)
    if shop is None:
        try:
            await work()
            return
        except Exception as exc:
            refused = refused_store(exc)
            if refused is None:
                raise
            shop = refused.shop or shops[0]
            await pause_store(st.conn, shop, refused.pause_reason)
    await park(st.conn, ctx.again(), shop=shop, delay_s=pause_recheck_s, since=ctx.parked_since)
