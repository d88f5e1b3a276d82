"""What a failure means: the classification of every error a sync use case can meet. The jobs map
it to the queue (`sync/jobs/errors.py`: retry, park, dead letter); the copy saga to compensation
(`copies.run_copy_saga`)."""

from __future__ import annotations

from storesync.commerce.errors import CommerceError, PermanentCommerceError, StoreUnauthorized
from storesync.sync.domain.catalog import CatalogError
from storesync.sync.domain.inventory import InventoryError, StaleRetriesExhausted
from storesync.sync.domain.network import UnknownStore
from storesync.sync.domain.saga import HandleNotYetFree, PermanentStepError, SagaConflict

# Bad input, or a write that would destroy data: retrying cannot help.
PERMANENT = (
    PermanentCommerceError,
    InventoryError,
    CatalogError,
    PermanentStepError,
    ValueError,
    KeyError,
    UnknownStore,
)
# A race lost to another writer (a compare-and-set, a saga moved by a duplicate job, a handle
# another product's job has still to free): retry later.
RACE_LOST = (StaleRetriesExhausted, SagaConflict, HandleNotYetFree)


def is_permanent(exc: BaseException) -> bool:
    return isinstance(exc, PERMANENT)


def refused_store(exc: BaseException) -> StoreUnauthorized | None:
    """The store refuses the app as a whole (revoked token, uninstalled, frozen): it is paused."""
    return exc if isinstance(exc, StoreUnauthorized) else None


def undoes_copy(exc: BaseException, *, final_attempt: bool) -> bool:
    """Whether a failed step of a copy saga compensates the steps done: a permanent failure, or a
    store still failing on the last attempt. A store refusing the app does not (it is paused; the
    saga resumes once it is back), nor does our own infrastructure failing (database, pool): the
    saga stays resumable."""
    if isinstance(exc, StoreUnauthorized):
        return False
    if is_permanent(exc):
        return True
    return final_attempt and isinstance(exc, CommerceError)
