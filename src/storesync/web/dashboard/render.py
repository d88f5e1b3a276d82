"""What the templates show: formatting, and redaction so secrets are never rendered."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

from storesync.queue.enqueue import Lane

REDACTED = "[redacted]"
# Keys whose values are never shown, wherever they appear in a payload or error record.
SECRET_KEY_RE = re.compile(
    r"(token|secret|passw|authori[sz]ation|api[_-]?key|hmac|cookie|credential|private[_-]?key|dsn)", re.I
)
# Credentials embedded in URLs (postgresql://user:password@host, https://key:pass@shop...).
URL_CREDENTIALS_RE = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<user>[^:/@\s]*):[^@/\s]*@", re.I)
# Rendered payloads are cut here: a page must stay readable and cheap.
MAX_RENDERED_CHARS = 200_000

LANE_NAMES = {lane.value: lane.name.lower() for lane in Lane}


def redact(value: Any) -> Any:
    """A copy of `value` with secret-looking keys' values replaced and URL passwords masked."""
    if isinstance(value, dict):
        return {
            k: (REDACTED if isinstance(k, str) and SECRET_KEY_RE.search(k) else redact(v))
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [redact(v) for v in value]
    if isinstance(value, str):
        return redact_text(value)
    return value


def redact_text(text: str | None) -> str:
    if not text:
        return ""
    return URL_CREDENTIALS_RE.sub(lambda m: f"{m['scheme']}{m['user']}:{REDACTED}@", text)


def pretty_json(value: Any) -> str:
    text = json.dumps(redact(value), indent=2, sort_keys=True, default=str, ensure_ascii=False)
    if len(text) > MAX_RENDERED_CHARS:
        return text[:MAX_RENDERED_CHARS] + f"\n… cut at {MAX_RENDERED_CHARS} characters"
    return text


def raw_body_text(body: bytes | None, total_bytes: int) -> tuple[str, bool]:
    """A delivery's raw body for display: pretty, redacted JSON when it parses, else the text
    (undecodable bytes shown as U+FFFD). The bool says whether it was JSON."""
    if body is None:
        return "", False
    try:
        parsed = json.loads(body) if len(body) == total_bytes else None
    except (ValueError, UnicodeDecodeError):
        parsed = None
    if parsed is not None:
        return pretty_json(parsed), True
    text = redact_text(bytes(body).decode("utf-8", errors="replace"))
    if total_bytes > len(body):
        text += f"\n… first {len(body)} of {total_bytes} bytes"
    return text, False


def age(seconds: float | None) -> str:
    """'45s', '3m 07s', '2h 05m', '3d 4h' — or '—' when there is nothing to measure."""
    if seconds is None:
        return "—"
    s = max(0, int(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h {(s % 3600) // 60:02d}m"
    return f"{s // 86400}d {(s % 86400) // 3600}h"


def timestamp(value: datetime | str | None) -> str:
    if value is None:
        return "—"
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return str(value)
    if value.tzinfo is not None:
        value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%d %H:%M:%S") + "Z"


def since(value: datetime | None, now: datetime) -> str:
    if value is None:
        return "—"
    return age((now - value).total_seconds())


def lane_name(lane: int | None) -> str:
    return LANE_NAMES.get(lane, str(lane)) if lane is not None else "—"


def audit_entry(row: dict) -> dict:
    """An audit row as shown: before/after redacted and pretty, the cause split for linking."""
    cause = row.get("cause") or ""
    kind, _, ref = cause.partition(":")
    return {
        **row,
        "before_text": pretty_json(row.get("before")) if row.get("before") is not None else "",
        "after_text": pretty_json(row.get("after")) if row.get("after") is not None else "",
        "cause_kind": kind if ref else "",
        "cause_ref": ref,
        "detail": redact_text(row.get("detail")),
    }
