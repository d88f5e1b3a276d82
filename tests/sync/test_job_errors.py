"""The one mapping of a sync job's failures to the queue's outcomes (`jobs/errors.queue_error`)."""

from __future__ import annotations

from storesync.commerce.errors import ApiUnavailableError, BudgetBusy
from storesync.queue.handlers import Deferred, RetryableError
from storesync.sync.jobs.errors import queue_error


def test_a_busy_bucket_defers_the_job_until_it_can_pay_and_other_store_faults_retry():
    deferred = queue_error(BudgetBusy("busy", retry_after=3.5, shop="a.myshopify.com"))
    assert isinstance(deferred, Deferred) and deferred.delay == 3.5
    retried = queue_error(ApiUnavailableError("down", retry_after=2.0))
    assert isinstance(retried, RetryableError) and retried.retry_after == 2.0
