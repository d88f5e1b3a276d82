"""Settings of the web tier (`STORESYNC_WEB_*`), next to the process-wide `Settings`."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field
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
    # Seconds each readiness check may take.
    readiness_timeout_s: Annotated[float, Field(gt=0)] = 2.0
    # Seconds the install callback waits for Shopify's token endpoint (the code exchange).
    oauth_timeout_s: Annotated[float, Field(gt=0, le=60)] = 10.0
