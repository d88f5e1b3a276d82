"""What storesync may do to a child's catalog beyond parent precedence, per merchant and child
(`[merchants.sync]` and a child's `catalog` block in storesync.toml): what a parent delete does
to the copy, what a handle a child's own product already has does to a new copy, what a copy's
failed later step does, the media a child added itself, the sales channels copies go on.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

from storesync.sync.domain.model import Link, MatchedBy


class OnParentDelete(StrEnum):
    ARCHIVE = "archive"  # the copy's status becomes ARCHIVED (hidden from every channel, kept)
    DELETE = "delete"
    LEAVE = "leave"  # the copy stays as it is, unlinked


class OnHandleConflict(StrEnum):
    REPORT = "report"  # nothing written; a conflict recorded (status, dashboard, audit)
    COPY_WITH_SUFFIX = "copy_with_suffix"  # the copy made under `<handle>-<suffix>`


class OnCopyStepFailure(StrEnum):
    COMPENSATE = "compensate"  # the copy's earlier steps undone (the product deleted)
    KEEP_AND_REPORT = "keep_and_report"  # the product kept; the failed step recorded


class ChildMedia(StrEnum):
    KEEP = "keep"  # after the parent's media
    REMOVE = "remove"


class DeleteAction(StrEnum):
    """What a parent product's deletion does to one child's counterpart."""

    ARCHIVE = "archive"
    DELETE = "delete"
    LEAVE = "leave"
    # The child had the product before it was linked (matched by SKU, barcode or handle): it is
    # never deleted nor archived; the link is dropped and the merchant told.
    UNLINK_OWN = "unlink_own"


@dataclass(frozen=True)
class CatalogRules:
    on_parent_delete: OnParentDelete = OnParentDelete.ARCHIVE
    on_handle_conflict: OnHandleConflict = OnHandleConflict.REPORT
    handle_suffix: str = "copy"
    on_copy_step_failure: OnCopyStepFailure = OnCopyStepFailure.COMPENSATE
    child_media: ChildMedia = ChildMedia.KEEP
    # Publication names copies are published to; None: the parent's product's (or collection's).
    channels: tuple[str, ...] | None = None

    def with_overrides(self, data: Mapping[str, Any]) -> CatalogRules:
        """These rules with the keys of `data` (configuration values) set; a bad value raises
        ValueError naming it."""
        known = {
            "on_parent_delete": OnParentDelete,
            "on_handle_conflict": OnHandleConflict,
            "on_copy_step_failure": OnCopyStepFailure,
            "child_media": ChildMedia,
        }
        changes: dict[str, Any] = {}
        for key, value in data.items():
            if key in known:
                try:
                    changes[key] = known[key](value)
                except ValueError:
                    allowed = [m.value for m in known[key]]
                    raise ValueError(
                        f"catalog rules: {key} must be one of {allowed}, not {value!r}"
                    ) from None
            elif key == "handle_suffix":
                if not isinstance(value, str) or not value.strip():
                    raise ValueError("catalog rules: handle_suffix must be a non-empty text")
                changes[key] = value.strip()
            elif key == "channels":
                if value is not None and (
                    not isinstance(value, list | tuple) or not all(isinstance(c, str) and c for c in value)
                ):
                    raise ValueError("catalog rules: channels must be a list of channel names")
                changes[key] = None if value is None else tuple(value)
            else:
                raise ValueError(f"catalog rules: unknown key {key!r}")
        return replace(self, **changes)


def parent_delete_action(link: Link, rules: CatalogRules) -> DeleteAction:
    """What happens to the child's product when its parent product is deleted: a product the
    child had before it was linked is never deleted; a copy storesync made follows the rules."""
    if link.matched_by is not MatchedBy.CREATED:
        return DeleteAction.UNLINK_OWN
    return DeleteAction(rules.on_parent_delete.value)


def suffixed_handle(handle: str, suffix: str, attempt: int = 1) -> str:
    """The handle of a copy whose parent's handle is a child's own product's:
    `<handle>-<suffix>`, then `<handle>-<suffix>-2`, ... (Shopify handles are at most 255)."""
    tail = f"-{suffix}" if attempt <= 1 else f"-{suffix}-{attempt}"
    return handle[: 255 - len(tail)] + tail
