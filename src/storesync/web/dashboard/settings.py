"""Settings of the operator dashboard (`STORESYNC_DASHBOARD_*`)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import SettingsConfigDict

from storesync.config import EnvironmentSettings

MIN_TOKEN_CHARS = 16


class DashboardSettings(EnvironmentSettings):
    model_config = SettingsConfigDict(env_prefix="STORESYNC_DASHBOARD_", extra="ignore", frozen=True)

    # The operator token. Unset: the dashboard answers 503 "disabled" on every page (it never
    # serves unauthenticated, not even on loopback: a reverse proxy would make every caller local).
    token: SecretStr | None = None
    # Hours a sign-in lasts; changing the token signs everyone out at once.
    session_hours: Annotated[float, Field(gt=0, le=24 * 30)] = 12.0
    # Rows per page on the queue, failures and audit pages.
    page_size: Annotated[int, Field(ge=1, le=500)] = 50
    # Milliseconds each dashboard read may run (SET LOCAL): a heavy page never holds the pool.
    statement_timeout_ms: Annotated[int, Field(ge=0)] = 3000
    # Pooled connections the dashboard may hold at once (per web process): the pool is shared
    # with webhook ingestion, which must never wait behind operators refreshing pages.
    max_concurrent_reads: Annotated[int, Field(ge=1)] = 2
    # Failed sign-ins a client may make per minute (per web process) before it is refused (429).
    sign_in_attempts_per_minute: Annotated[int, Field(ge=1, le=1000)] = 5
    # The session cookie is always `Secure`, except over plain http between loopback addresses
    # when this is true (a dashboard on a developer's machine, or the demo); never in production.
    plain_http_loopback: bool = False

    @field_validator("token")
    @classmethod
    def _long_enough(cls, v: SecretStr | None) -> SecretStr | None:
        if v is None or v.get_secret_value() == "":
            return None  # an empty variable means "unset": disabled, not "any token"
        if len(v.get_secret_value().strip()) < MIN_TOKEN_CHARS:
            raise ValueError(f"must be at least {MIN_TOKEN_CHARS} characters (e.g. `openssl rand -hex 32`)")
        return v

    @property
    def enabled(self) -> bool:
        return self.token is not None
