"""What every module of the emulator shares: Shopify global ids (`gid://shopify/<Type>/<number>`)
as it makes and reads them, its timestamps, and the error of an action it refuses."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any


def gid(type_name: str, num: int) -> str:
    return f"gid://shopify/{type_name}/{num}"


_GID_RE = re.compile(r"^gid://shopify/([A-Za-z]+)/(\d+)(?:\?.*)?$")


def parse_gid(value: Any, type_name: str | None = None) -> int | None:
    """The numeric id of a gid (of `type_name` if given), or None if it is not one."""
    if not isinstance(value, str):
        return None
    m = _GID_RE.match(value)
    if not m or (type_name is not None and m.group(1) != type_name):
        return None
    return int(m.group(2))


def gid_type(value: str) -> str | None:
    m = _GID_RE.match(value) if isinstance(value, str) else None
    return m.group(1) if m else None


def now_iso() -> str:
    """Now as Shopify writes timestamps: UTC, whole seconds."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class ActionError(ValueError):
    """A control-API action that cannot be done (unknown variant, not enough stock...)."""
