"""Operator sign-in for the dashboard: the operator token, a signed session cookie, CSRF tokens.

The operator proves they hold `STORESYNC_DASHBOARD_TOKEN` once (sign-in form, or an
`Authorization: Bearer` header for scripts); the browser then carries a session cookie
`<issued>.<nonce>.<mac>`, MACed with the token, so the cookie is never the token itself and
rotating the token ends every session. Each form that changes something carries a CSRF token
MACed from the session's nonce; the cookie is also HttpOnly, SameSite=Strict and Secure (unless
the operator explicitly allows plain http on loopback). Signing out revokes the session's nonce
in the database, so a copied cookie dies with it. Failed sign-ins are limited per client.
A cookie is parsed strictly: anything but the exact shape we issue is no session (never an error).
All comparisons are constant time. The token is never logged, rendered or put in a URL.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import time
from collections import OrderedDict, deque
from dataclasses import dataclass

from starlette.requests import Request

COOKIE_NAME = "storesync_dashboard"
# `<issued: unix seconds>.<nonce: 18 random bytes>.<mac: SHA-256>`, both in unpadded base64url.
_COOKIE_RE = re.compile(r"([0-9]{1,12})\.([A-Za-z0-9_-]{24})\.([A-Za-z0-9_-]{43})")


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
    shape = _COOKIE_RE.fullmatch(value)
    if shape is None:
        return None
    issued, nonce, mac = int(shape[1]), shape[2], shape[3]
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


class SignInLimiter:
    """Failed sign-ins per client: after `attempts` failures within `window_s`, that client is
    refused (429) until the oldest of them leaves the window. Per process, bounded in memory
    (the least recently seen clients are forgotten first)."""

    def __init__(self, attempts: int, window_s: float = 60.0, max_clients: int = 10_000) -> None:
        self.attempts = attempts
        self.window_s = window_s
        self.max_clients = max_clients
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def _recent(self, client: str, now: float) -> deque[float]:
        failures = self._failures.get(client)
        if failures is None:
            return deque()
        while failures and failures[0] <= now - self.window_s:
            failures.popleft()
        return failures

    def retry_after(self, client: str, now: float | None = None) -> int:
        """Seconds until this client may try again (0: now)."""
        now = time.monotonic() if now is None else now
        failures = self._recent(client, now)
        if len(failures) < self.attempts:
            return 0
        return max(1, int(failures[0] + self.window_s - now + 0.999))

    def failed(self, client: str, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        failures = self._recent(client, now)
        failures.append(now)
        self._failures[client] = failures
        self._failures.move_to_end(client)
        while len(self._failures) > self.max_clients:
            self._failures.popitem(last=False)
