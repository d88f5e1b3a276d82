"""Shopify global ids (`gid://shopify/<Type>/<number>`) as the emulator makes and reads them."""

from __future__ import annotations

import re
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
