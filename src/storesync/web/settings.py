"""Settings of the web tier (`STORESYNC_WEB_*`), next to the process-wide `Settings`."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import SettingsConfigDict

from storesync.config import EnvironmentSettings

MIB = 1024 * 1024


class WebSettings(EnvironmentSettings):
    model_config = SettingsConfigDict(env_prefix="STORESYNC_WEB_", extra="ignore", frozen=True)

    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)] = 8080
    workers: Annotated[int, Field(ge=1, le=64)] = 1
    # Shopify's payloads are far below this; anything larger is refused (413) unread.
    max_body_bytes: Annotated[int, Field(ge=1)] = MIB
    # Seconds a webhook may spend on the database before we answer 503. Shopify gives us 5 s
    # in total and retries a 503, so this stays well below that.
    request_budget_s: Annotated[float, Field(gt=0, le=4.5)] = 3.0
    # Group commit: deliveries that arrive while this many transactions are in flight share the
    # next one, at most batch_max to a transaction (batch_max=1: one transaction per delivery).
    batches_in_flight: Annotated[int, Field(ge=1, le=64)] = 4
    batch_max: Annotated[int, Field(ge=1, le=1000)] = 64
    # inventory_levels/update deliveries are judged in the transaction that records them: one that
    # only reports the engine's own write (an echo) gets no job (docs/decisions/0055); false:
    # every one gets its job and the worker judges it (kept for comparison: bench/flashsale).
    echoes_at_ingest: bool = True
    # Webhook requests one process handles at once; more get 503 + Retry-After at once, before
    # their body is read (bounds memory: at most this many bodies of max_body_bytes).
    max_concurrent: Annotated[int, Field(ge=1, le=100_000)] = 256
    # Seconds the body may take to arrive once the headers are in (a slow sender gets 408).
    body_timeout_s: Annotated[float, Field(gt=0, le=30)] = 2.0
    # Seconds each readiness check may take.
    readiness_timeout_s: Annotated[float, Field(gt=0)] = 2.0
    # Seconds the install callback waits for Shopify's token endpoint (the code exchange).
    oauth_timeout_s: Annotated[float, Field(gt=0, le=60)] = 10.0
    # Seconds a readiness result is reused (a flood of probes costs one check per period).
    readiness_cache_s: Annotated[float, Field(ge=0)] = 2.0
    # Seconds between additions of the webhooks received to the charts' per-minute counts (a
    # process that dies loses at most this much of them).
    minute_counts_flush_s: Annotated[float, Field(gt=0, le=60)] = 5.0

    # The operations listener: /metrics, detailed /readyz and /healthz, apart from the webhook
    # port and its pool. Loopback by default; port 0: off.
    ops_host: str = "127.0.0.1"
    ops_port: Annotated[int, Field(ge=0, le=65535)] = 9464
    # Bearer token the ops listener requires; mandatory when ops_host is not a loopback address.
    ops_token: SecretStr | None = None
    # Seconds the queue's database gauges are reused between scrapes, and the statement timeout
    # (ms) of the ops listener's own queries.
    ops_cache_s: Annotated[float, Field(ge=0)] = 5.0
    ops_statement_timeout_ms: Annotated[int, Field(ge=1)] = 1000

    @field_validator("ops_token")
    @classmethod
    def _token_long_enough(cls, v: SecretStr | None) -> SecretStr | None:
        if v is None or v.get_secret_value() == "":
            return None
        if len(v.get_secret_value().strip()) < 16:
            raise ValueError("must be at least 16 characters (e.g. `openssl rand -hex 32`)")
        return v
