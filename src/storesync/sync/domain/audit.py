"""Audit trail records: every write the engine makes, and every saga outcome."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class AuditRecord:
    shop: str
    object_type: str  # "product", "inventory_level", "saga", ...
    object_id: str
    action: str  # "product_set", "inventory_set", "inventory_adjust", "revert_child_edit", "saga_compensated", ...
    before: Any  # JSON-serialisable
    after: Any
    cause: str  # "delivery:<id>" or "job:<id>" or "reconcile:<run>"
    at: datetime = field(default_factory=_now)
    detail: str = ""

    def __post_init__(self) -> None:
        if not self.cause:
            raise ValueError("an audit record needs a cause (delivery id or job id)")
        # Fail at the call site, not in the adapter, when something is not JSON.
        json.dumps(self.before, default=str)
        json.dumps(self.after, default=str)


def delivery_cause(delivery_id: str) -> str:
    return f"delivery:{delivery_id}"


def job_cause(job_id: int | str) -> str:
    return f"job:{job_id}"
