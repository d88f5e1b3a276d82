"""Prometheus counters of the Admin API client, in the default registry (the worker's
`--metrics-port` serves it)."""

from __future__ import annotations

from prometheus_client import Counter

CALLS = Counter(
    "storesync_admin_api_calls",
    "Admin API HTTP exchanges by store and outcome (ok, throttled, "
    "http_429, server_error, network_error, unauthorized, error).",
    ["shop", "outcome"],
)
POINTS = Counter(
    "storesync_admin_api_points", "Rate-limit points the store charged (actualQueryCost).", ["shop"]
)
BUDGET_WAIT = Counter(
    "storesync_admin_api_budget_wait_seconds", "Seconds calls waited for their store's bucket.", ["shop"]
)
