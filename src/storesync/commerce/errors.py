"""Typed outcomes of an Admin API call: the commerce client's own exception hierarchy. Every
error says whether a retry can help (`retryable`) and, when the store said, after how long
(`retry_after`, seconds). Network faults always end as retryable, so nothing is lost. The sync
jobs map these to the queue's retry / dead letter in one place (`sync/jobs/errors.py`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


class CommerceError(Exception):
    """Base of every error the commerce client raises."""

    retryable: bool = False
    retry_after: float | None = None
    shop: str | None = None
    operation: str | None = None


class RetryableCommerceError(CommerceError):
    """A retry can help: the same call later (after `retry_after` seconds when known)."""

    retryable = True

    def __init__(
        self,
        message: str,
        *,
        retry_after: float | None = None,
        shop: str | None = None,
        operation: str | None = None,
    ) -> None:
        super().__init__(message)
        if retry_after is not None and retry_after < 0:
            raise ValueError(f"retry_after must be >= 0, got {retry_after}")
        self.retry_after = retry_after
        self.shop, self.operation = shop, operation


class PermanentCommerceError(CommerceError):
    """A retry of the same call cannot help."""

    retryable = False

    def __init__(self, message: str, *, shop: str | None = None, operation: str | None = None) -> None:
        super().__init__(message)
        self.shop, self.operation = shop, operation


# ------------------------------------------------------------------ transport and rate limit


class ApiUnavailableError(RetryableCommerceError):
    """5xx, 429 or network faults persisted through the client's bounded retries."""


class ThrottledError(RetryableCommerceError):
    """Still THROTTLED after the client's bounded waits, or the wait for budget would exceed
    the caller's limit: retry the job after `retry_after` seconds."""


class BudgetBusy(ThrottledError):
    """The store's bucket cannot pay for the call within the wait its caller allows
    (`client.CallPolicy.max_wait`); nothing was sent. `retry_after`: when it will."""


class StoreUnauthorized(RetryableCommerceError):
    """The store refuses the app as a whole: HTTP 401 (token revoked, app uninstalled), 403
    (scope missing), 402 (store frozen) or 423 (store locked); `status` says which. The sync
    jobs pause the store; retrying later (once resolved) is what helps, not now."""

    def __init__(
        self, message: str, *, status: int, shop: str | None = None, operation: str | None = None
    ) -> None:
        super().__init__(message, retry_after=300.0, shop=shop, operation=operation)
        self.status = status

    @property
    def pause_reason(self) -> str:
        """What the store is paused with (`storesync status`, the dashboard)."""
        return f"HTTP {self.status}: {self}"


class CredentialsRejected(StoreUnauthorized):
    """The store's credentials failed for good: the token endpoint refused the client
    credentials or the refresh token (`invalid_client`, `invalid_grant`), or the store was never
    connected. The store is paused with the reason; a new token needs the merchant or operator."""

    def __init__(self, message: str, *, shop: str | None = None, operation: str | None = None) -> None:
        super().__init__(message, status=401, shop=shop, operation=operation)

    @property
    def pause_reason(self) -> str:
        return f"credentials refused: {self}"


class AccessDenied(StoreUnauthorized):
    """ACCESS_DENIED: the app lacks an access scope the call needs (`required_access`, as
    Shopify words it). The store is paused until the merchant grants it."""

    def __init__(
        self,
        message: str,
        *,
        required_access: str | None,
        shop: str | None = None,
        operation: str | None = None,
    ) -> None:
        super().__init__(message, status=403, shop=shop, operation=operation)
        self.required_access = required_access

    @property
    def pause_reason(self) -> str:
        return f"missing access scope ({self.required_access or 'see message'}): {self}"


class MaxCostExceededError(PermanentCommerceError):
    """One query may request at most 1,000 points: the caller must split the work (the paginator
    halves its page size). Retrying the same query cannot help."""

    def __init__(
        self,
        message: str,
        *,
        requested: float | None,
        limit: float,
        shop: str | None = None,
        operation: str | None = None,
    ) -> None:
        super().__init__(message, shop=shop, operation=operation)
        self.requested, self.limit = requested, limit


class GraphQLQueryError(PermanentCommerceError):
    """The API rejected the document or its variables (a bug on our side)."""

    def __init__(
        self,
        message: str,
        *,
        errors: list[dict[str, Any]],
        shop: str | None = None,
        operation: str | None = None,
    ) -> None:
        super().__init__(message, shop=shop, operation=operation)
        self.errors = errors


# ------------------------------------------------------------------ userErrors


@dataclass(frozen=True)
class UserError:
    message: str
    field: tuple[str, ...] | None = None
    code: str | None = None

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> UserError:
        f = raw.get("field")
        return cls(message=str(raw.get("message", "")), field=tuple(f) if f else None, code=raw.get("code"))


class UserErrorsMixin:
    user_errors: tuple[UserError, ...] = ()

    @property
    def codes(self) -> set[str]:
        return {e.code for e in self.user_errors if e.code}


def _describe(operation: str, errors: tuple[UserError, ...]) -> str:
    parts = [
        f"{e.code or 'ERROR'}: {e.message}" + (f" ({'.'.join(e.field)})" if e.field else "") for e in errors
    ]
    return f"{operation} returned userErrors: " + "; ".join(parts)


class UserInputError(UserErrorsMixin, PermanentCommerceError):
    """The store refused the input (validation, limits). Retrying the same input cannot help."""


class NotFoundError(UserInputError):
    """A product, variant, inventory item or location we named does not exist (any more) on the
    store, or the item is not stocked there: the sync layer re-links or recreates, no retry."""


class HandleTakenError(UserInputError):
    """The handle belongs to another product on the store (link it instead of creating)."""


class IdempotencyKeyReuseError(UserInputError):
    """The idempotency key cannot be used again (https://shopify.dev/docs/api/usage/implementing-idempotency)."""


class IdempotencyAttemptFailed(IdempotencyKeyReuseError):
    """IDEMPOTENCY_PREVIOUS_ATTEMPT_FAILED: the key's first attempt failed (nothing applied) and
    the key is spent: send the same change again under a new key."""


class IdempotencyKeyMismatch(IdempotencyKeyReuseError):
    """IDEMPOTENCY_KEY_PARAMETER_MISMATCH: the key was used with other parameters. The engine
    derives keys from what it sends, so this is a bug to look at, never retried blindly."""


class StaleQuantityError(UserErrorsMixin, RetryableCommerceError):
    """CHANGE_FROM_QUANTITY_STALE: the store's quantity moved since we read it. Re-read the level
    and compute again; the job retry does exactly that."""


class TransientUserError(UserErrorsMixin, RetryableCommerceError):
    """The store asks to try again (a concurrent request with the same idempotency key, a job
    error inside productSet)."""


_STALE = {"CHANGE_FROM_QUANTITY_STALE", "COMPARE_QUANTITY_STALE"}
_TRANSIENT = {"IDEMPOTENCY_CONCURRENT_REQUEST", "JOB_ERROR"}
_NOT_FOUND = {
    "PRODUCT_DOES_NOT_EXIST",
    "PRODUCT_VARIANT_DOES_NOT_EXIST",
    "INVALID_INVENTORY_ITEM",
    "INVALID_LOCATION",
    "ITEM_NOT_STOCKED_AT_LOCATION",
    "NOT_FOUND",
    "PRODUCT_NOT_FOUND",
}
_HANDLE = {"HANDLE_NOT_UNIQUE"}
_IDEMPOTENCY = {"IDEMPOTENCY_KEY_PARAMETER_MISMATCH", "IDEMPOTENCY_PREVIOUS_ATTEMPT_FAILED"}


def user_errors_error(operation: str, raw: list[dict[str, Any]], *, shop: str | None = None) -> CommerceError:
    """The typed error for a mutation payload's non-empty `userErrors`. Stale beats the other
    codes (re-reading may clear them too); a mix otherwise counts as the permanent one."""
    errors = tuple(UserError.from_json(r) for r in raw)
    codes = {e.code for e in errors if e.code}
    message = _describe(operation, errors)
    cls: type
    if codes & _STALE:
        err: CommerceError = StaleQuantityError(message, retry_after=0.0, shop=shop, operation=operation)
    elif codes and codes <= _TRANSIENT:
        err = TransientUserError(message, retry_after=1.0, shop=shop, operation=operation)
    else:
        if codes & _NOT_FOUND:
            cls = NotFoundError
        elif codes & _HANDLE:
            cls = HandleTakenError
        elif "IDEMPOTENCY_PREVIOUS_ATTEMPT_FAILED" in codes:
            cls = IdempotencyAttemptFailed
        elif codes & _IDEMPOTENCY:
            cls = IdempotencyKeyMismatch
        else:
            cls = UserInputError
        err = cls(message, shop=shop, operation=operation)
    err.user_errors = errors  # type: ignore[attr-defined]
    return err
