"""Sync knobs from the environment (`STORESYNC_SYNC_*`)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from storesync.config import EnvironmentSettings


class SyncSettings(EnvironmentSettings):
    """Sync wiring knobs (`STORESYNC_SYNC_*`)."""

    model_config = SettingsConfigDict(env_prefix="STORESYNC_SYNC_", extra="ignore", frozen=True)

    # Periodic reconciliation of every merchant (seconds): incremental (the products updated since
    # the last pass, every level), and full (every product) when the last full pass is older than
    # `reconcile_full_every_s`.
    reconcile_every_s: Annotated[float, Field(gt=0)] = 900.0
    reconcile_full_every_s: Annotated[float, Field(gt=0)] = 86400.0
    # How often `sync.prune` deletes what is past its retention (seconds; `storesync.retention`).
    prune_every_s: Annotated[float, Field(gt=0)] = 3600.0
    # A child's level moved with no write of ours explaining it: it is set back (policy revert) or
    # checked for a move of its own (policy report) this long after, so that the order webhook of
    # a sale, which moved it, is applied first (seconds).
    reassert_delay_s: Annotated[float, Field(ge=0)] = 5.0
    # A parked job of a paused store looks again after this long (seconds).
    pause_recheck_s: Annotated[float, Field(gt=0)] = 600.0
    # Level writes to a child wait for its flush and go out together (one inventorySetQuantities
    # per call for every waiting level; `services/pushes.py`), and sale deltas wait for the
    # parent's flush (one inventoryAdjustQuantities per batch of order lines; `services/adjusts.py`);
    # false: one call per item and store, one per order line (the path before coalescing, kept for
    # comparison: bench/flashsale's naive mode).
    coalesce_writes: bool = True
    # The longest a job's Admin API call waits for its store's rate-limit budget; beyond it the
    # job goes back to the queue, due when the bucket will hold the points (seconds).
    job_budget_wait_s: Annotated[float, Field(ge=0)] = 2.0
    # The same for a reconciliation pass (`sync.reconcile`, `sync.reconcile_levels`): it waits
    # longer, in short background slices that leave the bottom of the bucket to live sync,
    # because a pass sent back to the queue starts again from its bulk reads (minutes at 10,000
    # products): while live sales kept a store's bucket low, one that deferred never finished.
    pass_budget_wait_s: Annotated[float, Field(ge=0)] = 60.0
    # Attempts of one Admin API call inside a job (5xx, network) before the job itself retries.
    admin_max_attempts: Annotated[int, Field(ge=1, le=20)] = 5
    # Attempts of a copy-product (backfill) job; a step still failing on the last one compensates.
    backfill_max_attempts: Annotated[int, Field(ge=1, le=50)] = 5
    # After a backfill, its copies whose variants are still not linked (their products/create
    # webhook lost) are read and linked by a job this much later (seconds).
    link_pending_after_s: Annotated[float, Field(ge=0)] = 30.0
    # How often `sync.settle_changes` settles the source changes whose work is done, observing how
    # long each took to reach its last store (seconds), and how long a change must have been
    # quiet (nothing written) before it is looked at.
    settle_every_s: Annotated[float, Field(gt=0)] = 30.0
    settle_quiet_s: Annotated[float, Field(ge=0)] = 2.0
    # Store health (the dashboard, `storesync status`, the ops listener's store gauges): a store
    # whose oldest unapplied change is older than this is "behind" (seconds) ...
    behind_after_s: Annotated[float, Field(ge=0)] = 30.0
    # ... and one whose jobs died within this window is "failing" (seconds; dead jobs are kept
    # longer, for replay: docs/reliability.md).
    failing_within_s: Annotated[float, Field(gt=0)] = 86400.0
    # Media uploaded to a child are looked at again this long after (seconds): the store
    # processes them asynchronously and says nothing when one ends FAILED.
    media_check_after_s: Annotated[float, Field(ge=0)] = 60.0
