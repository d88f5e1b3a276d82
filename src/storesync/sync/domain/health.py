"""Each store's sync health, what needs a human, and whether a replay would fail again: plain
rules over facts the services gather (`services/health.py`).

A store is, first match wins:
- **paused**: the store refuses the app or was paused (its jobs are parked);
- **failing**: jobs that write it died within the failing window (dead letters to replay);
- **behind**: work for it has waited longer than `behind_after_s` (the oldest unapplied change);
- **in step**: none of that.

Whom a job is for comes from its kind and payload (`job_targets`): a catalog job writes its child,
a sale writes the parent, a fan-out writes every child (or those it names), a parent's webhook
leads to writes in every child and a child's order to writes in the parent.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from storesync.sync.domain import routing
from storesync.sync.domain.audit import delivery_cause
from storesync.sync.domain.topics import TOPICS, Family

# The payload keys that say whom a job is for (read by `job_targets`).
TARGET_KEYS = ["child_shop", "shop", "only"]

# A webhook's source change time is its X-Shopify-Triggered-At when that lies within this window
# before the delivery was received (it is not signed; a clock far off is not believed).
TRIGGERED_AT_WINDOW = timedelta(hours=1)
TRIGGERED_AT_SKEW = timedelta(seconds=5)

_WEBHOOK_FAMILY = {t.job_kind: t.family for t in TOPICS}
# Jobs that write the child store their payload names.
_CHILD_JOBS = frozenset(
    {
        routing.JOB_PRODUCT_TO_CHILD,
        routing.JOB_COLLECTION_TO_CHILD,
        routing.JOB_COPY_PRODUCT,
        routing.JOB_LINK_PENDING_COPIES,
    }
)


class StoreState(StrEnum):
    IN_STEP = "in step"
    BEHIND = "behind"
    PAUSED = "paused"
    FAILING = "failing"


def parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


def source_change_time(triggered_at: str | None, received_at: str | None, fallback: datetime) -> datetime:
    """When a webhook's change happened in its store: X-Shopify-Triggered-At when plausible (not
    after the delivery arrived, nor more than an hour before), else when it was received."""
    received = parse_time(received_at) or fallback
    triggered = parse_time(triggered_at)
    if triggered is not None and received - TRIGGERED_AT_WINDOW <= triggered <= received + TRIGGERED_AT_SKEW:
        return min(triggered, received)
    return received


@dataclass(frozen=True)
class SourceChange:
    """A source store's change whose jobs and writes carry `change` as their cause."""

    change: str
    merchant_id: str
    source_shop: str
    topic: str
    changed_at: datetime


def webhook_change(
    delivery_id: str,
    merchant_id: str,
    shop: str,
    topic: str,
    triggered_at: str | None,
    received_at: str | None,
    now: datetime,
) -> SourceChange:
    return SourceChange(
        delivery_cause(delivery_id),
        merchant_id,
        shop,
        topic,
        source_change_time(triggered_at, received_at, now),
    )


def job_targets(
    kind: str, keyed: Mapping[str, Any], parent: str | None, children: Sequence[str]
) -> tuple[str, ...]:
    """The stores a job (of `kind`, with these payload values, of a merchant with this parent and
    these children) will write."""
    child = keyed.get("child_shop")
    if kind in _CHILD_JOBS and isinstance(child, str):
        return (child,)
    if kind == routing.JOB_SALE:
        return (parent,) if parent else ()
    if kind == routing.JOB_FAN_OUT_LEVEL:
        only = keyed.get("only")
        if isinstance(only, list) and only:
            return tuple(s for s in only if isinstance(s, str))
        return tuple(children)
    family = _WEBHOOK_FAMILY.get(kind)
    source = keyed.get("shop")
    if family is None or not isinstance(source, str):
        return ()
    if family in (Family.NOT_SYNCED, Family.UNINSTALLED):
        return ()
    if source == parent:
        return tuple(children)
    if family is Family.ORDER:
        return (parent,) if parent else ()
    return (source,)  # a child's own edit or stock move: set back in that child


# --------------------------------------------------------------------------- facts


@dataclass
class StoreWork:
    """The queue's work for one store."""

    active: int = 0  # running, due, or waiting out a retry's backoff
    oldest_active: datetime | None = None
    parked: int = 0
    parked_since: datetime | None = None
    dead: int = 0
    last_dead_at: datetime | None = None
    kinds: Counter[str] = field(default_factory=Counter)  # active and parked jobs by kind

    def add(
        self,
        kind: str,
        *,
        active: int,
        oldest_active: datetime | None,
        parked: int,
        parked_since: datetime | None,
        dead: int,
        last_dead_at: datetime | None,
    ) -> None:
        self.active += active
        self.oldest_active = _earliest(self.oldest_active, oldest_active)
        self.parked += parked
        self.parked_since = _earliest(self.parked_since, parked_since)
        self.dead += dead
        self.last_dead_at = _latest(self.last_dead_at, last_dead_at)
        if active or parked:
            self.kinds[kind] += active + parked

    @property
    def oldest_unapplied(self) -> datetime | None:
        return _earliest(self.oldest_active, self.parked_since)


def _earliest(a: datetime | None, b: datetime | None) -> datetime | None:
    return b if a is None else a if b is None else min(a, b)


def _latest(a: datetime | None, b: datetime | None) -> datetime | None:
    return b if a is None else a if b is None else max(a, b)


@dataclass(frozen=True)
class Bucket:
    """The store's rate-limit bucket as the workers share it (`commerce/budget.py`)."""

    capacity: float
    restore_rate: float
    available: float  # points now (negative while granted calls wait for their turn)
    waiting: int  # calls granted and not answered yet

    @property
    def share(self) -> float:
        return max(0.0, min(1.0, self.available / self.capacity)) if self.capacity else 0.0


@dataclass(frozen=True)
class ReconcileSummary:
    """What the last reconcile of the store's merchant found and did for this store."""

    at: datetime
    found: int
    repaired: int
    left: int
    skipped: str | None
    kinds: Mapping[str, int]
    dry_run: bool = False

    def describe(self) -> str:
        if self.skipped:
            return f"skipped: {self.skipped}"
        if not self.found:
            return "nothing to repair"
        kinds = ", ".join(f"{n} {k.replace('_', ' ')}" for k, n in sorted(self.kinds.items()))
        done = "would repair" if self.dry_run else f"repaired {self.repaired}"
        left = f", {self.left} not repaired" if self.left else ""
        return f"{done} of {self.found} ({kinds}){left}"


@dataclass(frozen=True)
class StoreFacts:
    merchant_id: str
    merchant_name: str
    shop: str
    role: str  # parent | child
    status: str  # active | paused
    status_reason: str | None
    paused_at: datetime | None
    work: StoreWork
    last_write_at: datetime | None = None
    reconcile: ReconcileSummary | None = None
    bucket: Bucket | None = None


@dataclass(frozen=True)
class StoreHealth:
    facts: StoreFacts
    state: StoreState
    lag_s: float  # age of the oldest unapplied change (0 when none)
    why: str

    @property
    def shop(self) -> str:
        return self.facts.shop


def classify(facts: StoreFacts, now: datetime, *, behind_after_s: float) -> StoreHealth:
    work = facts.work
    oldest = work.oldest_unapplied
    lag_s = max(0.0, (now - oldest).total_seconds()) if oldest else 0.0
    if facts.status == "paused":
        parked = f"; {work.parked} jobs parked until it is resumed" if work.parked else ""
        return StoreHealth(facts, StoreState.PAUSED, lag_s, f"{facts.status_reason or 'paused'}{parked}")
    if work.dead:
        kinds = "jobs" if work.dead > 1 else "job"
        return StoreHealth(facts, StoreState.FAILING, lag_s, f"{work.dead} dead {kinds} to look at")
    if work.active and lag_s > behind_after_s:
        pending = ", ".join(f"{n} {k}" for k, n in work.kinds.most_common(3))
        return StoreHealth(facts, StoreState.BEHIND, lag_s, f"{work.active} jobs waiting ({pending})")
    return StoreHealth(facts, StoreState.IN_STEP, 0.0 if not work.active else lag_s, "")


# --------------------------------------------------------------------------- what needs a human


@dataclass(frozen=True)
class Attention:
    """One thing that needs a human: what is wrong and the next step (a command when one does it)."""

    severity: str  # "error" | "warning"
    title: str
    next_step: str
    command: str = ""
    shop: str = ""
    job_ids: tuple[int, ...] = ()


def resume_step(shop: str, reason: str | None) -> tuple[str, str]:
    """What to do about a paused store before resuming it, and the resume command."""
    why = (reason or "").lower()
    command = f"storesync network resume {shop}"
    if "uninstalled" in why:
        step = "Reinstall the app on the store, then resume it"
    elif "missing access scope" in why or "access_denied" in why:
        step = "Grant the missing scopes (the app's new version, approved by the merchant), then resume it"
    elif "credentials refused" in why or "not connected" in why:
        step = (
            "Fix the store's credentials in storesync.toml, run `storesync network apply` and restart "
            "the workers, then resume it"
        )
    elif "402" in why or "frozen" in why:
        step = "The store is frozen in Shopify (unpaid bill): once it is open again, resume it"
    elif "423" in why or "locked" in why:
        step = "Shopify has locked the store: once it is unlocked, resume it"
    elif "401" in why or "403" in why or "refus" in why:
        step = "Check the app is still installed and its token valid (`storesync api check`), then resume it"
    else:
        step = "Fix the cause, then resume it"
    return step + "; `storesync reconcile` afterwards repairs what changed meanwhile", command


def paused_attention(shop: str, reason: str | None) -> Attention:
    step, command = resume_step(shop, reason)
    return Attention("error", f"{shop} paused: {reason or 'paused'}", step, command, shop=shop)


@dataclass(frozen=True)
class DeadJob:
    id: int
    kind: str
    group: str
    targets: tuple[str, ...]
    error_type: str
    message: str
    retryable: bool
    source: str = ""  # a webhook job's store (whose event it was)

    def what(self, count: int) -> str:
        """'an orders/create from child-a.myshopify.com', '3 sync.product_to_child jobs' ..."""
        topic = next((t.name for t in TOPICS if t.job_kind == self.kind), None)
        if topic:
            sender = f" from {self.source}" if self.source else ""
            if count > 1:
                return f"{count} {topic} webhooks{sender}"
            article = "an" if topic[0] in "aeiou" else "a"
            return f"{article} {topic} webhook{sender} (job {self.id})"
        return f"{count} {self.kind} jobs" if count > 1 else f"{self.kind} job {self.id}"


def dead_job_attention(jobs: Sequence[DeadJob], paused: Mapping[str, str]) -> list[Attention]:
    """The dead jobs grouped by kind and error: what failed and the replay command (or, when a
    store they write is paused, that resuming comes first)."""
    groups: dict[tuple[str, str], list[DeadJob]] = {}
    for job in jobs:
        groups.setdefault((job.kind, job.error_type), []).append(job)
    out = []
    for (kind, error_type), found in groups.items():
        first = found[0]
        stores = sorted({s for j in found for s in j.targets})
        where = f" for {', '.join(stores)}" if stores else ""
        verb = "could not be applied" if first.source else "died"
        title = f"{first.what(len(found))} {verb}{where}: {error_type}: {first.message}"
        command = (
            f"storesync jobs retry {first.id}"
            if len(found) == 1
            else f"storesync jobs retry --all-dead --kind {kind}"
        )
        blocked = [s for s in stores if s in paused]
        if blocked:
            step = f"{', '.join(blocked)} is paused: resume it first, or the replay is parked again"
        elif not first.retryable:
            step = (
                "The error is permanent: fix its cause (see the job), then replay; replaying without "
                "a fix fails the same way"
            )
        else:
            step = "It used all its attempts; once the cause is gone, replay it"
        out.append(
            Attention(
                "error",
                title,
                step,
                command,
                shop=stores[0] if stores else "",
                job_ids=tuple(j.id for j in found),
            )
        )
    return out


def replay_warning(
    *, state: str, targets: Sequence[str], paused: Mapping[str, str], last_error: Mapping[str, Any] | None
) -> str | None:
    """Why replaying this job would fail (or park) again, or None when nothing says it would."""
    if state not in ("dead", "cancelled"):
        return None
    blocked = [s for s in targets if s in paused]
    if blocked:
        shop = blocked[0]
        return (
            f"{shop} is still paused ({paused[shop]}): the replay would only be parked again. "
            f"Resume it first: storesync network resume {shop}"
        )
    if last_error and last_error.get("retryable") is False and last_error.get("error") != "Replayed":
        return (
            f"Its last error was permanent ({last_error.get('error')}: "
            f"{str(last_error.get('message') or '')[:200]}): the replay fails the same way unless "
            "that cause was fixed."
        )
    return None


# --------------------------------------------------------------------------- names and links


def store_handle(shop: str) -> str:
    return shop.removesuffix(".myshopify.com")


def admin_url(shop: str, gid: str | None = None) -> str:
    """The Shopify admin page of a store (or of one product, order or location in it), in the
    unified admin's form admin.shopify.com/store/<store>/<resource>/<id>
    (https://shopify.dev/changelog/updates-required-for-embedded-apps-to-work-on-the-new-shopify-admin-domain)."""
    base = f"https://admin.shopify.com/store/{store_handle(shop)}"
    if not gid:
        return base
    kind, _, number = gid.removeprefix("gid://shopify/").partition("/")
    path = {
        "Product": "products",
        "Order": "orders",
        "Location": "settings/locations",
        "Collection": "collections",
    }
    return f"{base}/{path[kind]}/{number}" if kind in path and number.isdigit() else base
