"""Operator sign-in for the dashboard: the operator token, a signed session cookie, CSRF tokens.

The operator proves they hold `STORESYNC_DASHBOARD_TOKEN` once (sign-in form, or an
`Authorization: Bearer` header for scripts); the browser then carries a session cookie
`<issued>.<nonce>.<mac>`, MACed with the token, so the cookie is never the token itself and
rotating the token ends every session. Each form that changes something carries a CSRF token
MACed from the session's nonce; the cookie is also HttpOnly and SameSite=Strict.
All comparisons are constant time. The token is never logged, rendered or put in a URL.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

from starlette.requests import Request

COOKIE_NAME = "storesync_dashboard"


def _mac(key: str, message: str) -> str:
    digest = hmac.new(key.encode(), message.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def token_matches(given: str | None, token: str) -> bool:
    """True when `given` is the operator token (constant time, whatever its length)."""
    if not given:
        return False
    # Compare digests so the length of the real token does not leak either.
    return hmac.compare_digest(
        hashlib.sha256(given.strip().encode()).digest(), hashlib.sha256(token.encode()).digest()
    )


@dataclass(frozen=True)
class Session:
    nonce: str
    issued_at: int
    via_bearer: bool = False

    def csrf_token(self, token: str) -> str:
        return _mac(token, f"csrf:{self.nonce}")

    def csrf_ok(self, token: str, given: str | None) -> bool:
        # A bearer caller is a script, not a browser carrying ambient credentials: no CSRF risk.
        if self.via_bearer:
            return True
        return given is not None and hmac.compare_digest(self.csrf_token(token).encode(), given.encode())


def new_session_cookie(token: str, now: float | None = None) -> str:
    issued = int(now if now is not None else time.time())
    nonce = secrets.token_urlsafe(18)
    return f"{issued}.{nonce}.{_mac(token, f'session:{issued}.{nonce}')}"


def session_from_cookie(
    value: str | None, token: str, max_age_s: float, now: float | None = None
) -> Session | None:
    """The session a cookie proves, or None (absent, forged, signed with an old token, expired)."""
    if not value:
        return None
    parts = value.split(".")
    if len(parts) != 3 or not parts[0].isdigit():
        return None
    issued, nonce, mac = int(parts[0]), parts[1], parts[2]
    if not hmac.compare_digest(_mac(token, f"session:{issued}.{nonce}").encode(), mac.encode()):
        return None
    now = now if now is not None else time.time()
    if not (issued - 60 <= now <= issued + max_age_s):
        return None
    return Session(nonce=nonce, issued_at=issued)


def session_of(request: Request, token: str, max_age_s: float) -> Session | None:
    """The caller's session: a valid cookie, or a bearer header holding the token."""
    header = request.headers.get("authorization", "")
    if header[:7].lower() == "bearer ":
        return (
            Session(nonce="bearer", issued_at=int(time.time()), via_bearer=True)
            if token_matches(header[7:], token)
            else None
        )
    return session_from_cookie(request.cookies.get(COOKIE_NAME), token, max_age_s)


def safe_next(base: str, candidate: str | None) -> str:
    """Where to go after sign-in: only a path inside the dashboard (no open redirect)."""
    if (
        candidate
        and candidate.startswith(base + "/")
        and not candidate.startswith("//")
        and "\\" not in candidate
        and "://" not in candidate
    ):
        return candidate
    return base + "/"
