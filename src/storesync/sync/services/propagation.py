"""How far source changes have travelled: a change is settled once nothing has been written for
it for a moment and no job carrying its cause is left; its propagation time is then final."""

from __future__ import annotations

from storesync.sync.adapters.jobqueue import pending_causes
from storesync.sync.adapters.postgres import Storage


async def settle_changes(st: Storage, *, quiet_s: float) -> list[tuple[str, float | None]]:
    """Settle the quiet changes without pending work: (merchant, seconds from the change to its
    last store written, None when nothing was written) of each."""
    candidates = await st.changes.unsettled(quiet_s)
    if not candidates:
        return []
    pending = await pending_causes(st.conn)
    return await st.changes.settle([c for c in candidates if c not in pending])
