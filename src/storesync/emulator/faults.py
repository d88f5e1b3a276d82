"""Fault injection for the emulator's GraphQL endpoint, and the config of every fault set.

`GraphQLFaults.decide(field_names, shop=...)` is called by the app once per request with the
root field names of the operation it is about to run; it answers an `Injection` (or None for
"serve normally"). `respond_with` applies an Injection around the app's own handler.

Decision order for one request (each drawn from one seeded RNG, so runs are reproducible):
1. `http_429_p`: HTTP 429 with `Retry-After` (nothing executed).
2. `error_5xx_p`: HTTP 503 (JSON body) or 502 (an HTML proxy page), half and half (nothing executed).
3. `fail_nth`: the Nth request carrying mutation X (counted per mutation field name from the
   moment the faults were configured, every request counts, including ones that got another
   fault) fails once, without executing. Default mode `internal_error`: HTTP 500 with Shopify's
   `INTERNAL_SERVER_ERROR` GraphQL error body; mode `graphql_error`: the same body with HTTP 200;
   mode `user_error`: HTTP 200 with the mutation's payload carrying one userError (the store
   refused it, e.g. a channel that will not take the product), its other fields null.
   Two modes for an `@idempotent` mutation: `idempotency_concurrent` answers the payload's
   IDEMPOTENCY_CONCURRENT_REQUEST (a request with the same key is still in progress); and
   `attempt_failed` makes this attempt fail inside Shopify (INTERNAL_SERVER_ERROR, nothing
   applied) so its key is spent: the next request with it gets IDEMPOTENCY_PREVIOUS_ATTEMPT_FAILED.
4. `timeout_p`: the client waits longer than its timeout. Mode `lost_response` (default):
   the operation executes, then the answer is held `timeout_hang_s` - the write landed but the
   client never heard, which is what idempotency keys are for. Mode `no_execute`: held
   `timeout_hang_s`, then HTTP 504, nothing executed.
`latency_s` is added before every call, faulted or not.
"""

from __future__ import annotations

import asyncio
import json
import random
import threading
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from storesync.emulator.webhooks import DeliveryFaults

Probability = Annotated[float, Field(ge=0.0, le=1.0)]


class FailNth(BaseModel):
    """Fail the `n`th call (1-based) of one mutation, optionally only on one shop."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    n: Annotated[int, Field(ge=1)]
    mode: Literal[
        "internal_error", "graphql_error", "user_error", "idempotency_concurrent", "attempt_failed"
    ] = "internal_error"
    shop: str | None = None


class GraphQLFaultsConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    error_5xx_p: Probability = 0.0
    timeout_p: Probability = 0.0
    timeout_hang_s: Annotated[float, Field(ge=0.0, le=600.0)] = 10.0
    timeout_mode: Literal["lost_response", "no_execute"] = "lost_response"
    latency_s: Annotated[float, Field(ge=0.0, le=60.0)] = 0.0
    http_429_p: Probability = 0.0
    retry_after_s: Annotated[float, Field(ge=0.0, le=3600.0)] = 1.0
    # mutation field name -> n, or the full FailNth form.
    fail_nth: dict[str, FailNth] = Field(default_factory=dict)
    seed: int | None = None

    @field_validator("fail_nth", mode="before")
    @classmethod
    def _shorthand(cls, v: Any) -> Any:
        if isinstance(v, dict):
            return {
                k: ({"n": n} if isinstance(n, int) and not isinstance(n, bool) else n) for k, n in v.items()
            }
        return v


class FaultsConfig(BaseModel):
    """Body of `PUT /_emulator/faults`. A section left out is reset to "no faults"."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    graphql: GraphQLFaultsConfig = Field(default_factory=GraphQLFaultsConfig)
    webhooks: DeliveryFaults = Field(default_factory=DeliveryFaults)


# --------------------------------------------------------------------------- injection


@dataclass(frozen=True)
class Injection:
    """What to do to one request.

    `delay_s`: sleep before handling. If `status` is set, answer it (with `body`, `headers`)
    without executing the operation; else execute normally, then sleep `delay_after_s`.
    """

    kind: Literal["latency", "http_429", "http_503", "http_502", "fail_nth", "timeout"]
    delay_s: float = 0.0
    delay_after_s: float = 0.0
    status: int | None = None
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    field_name: str | None = None  # fail_nth: the mutation that failed
    # fail_nth on an @idempotent mutation: "idempotency_concurrent" or "attempt_failed" (executes
    # through the idempotency check, which answers the fault).
    idempotency_fault: str | None = None

    @property
    def executes(self) -> bool:
        return self.status is None


def _json(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def _internal_error_body() -> bytes:
    request_id = str(uuid.uuid4())
    return _json(
        {
            "errors": [
                {
                    "message": "Internal error. Looks like something went wrong on our end.\n"
                    f"Request ID: {request_id} (include this in support requests).",
                    "extensions": {"code": "INTERNAL_SERVER_ERROR", "requestId": request_id},
                }
            ]
        }
    )


_JSON = {"Content-Type": "application/json; charset=utf-8"}
_BAD_GATEWAY_HTML = (
    b"<html><head><title>502 Bad Gateway</title></head><body><h1>502 Bad Gateway</h1></body></html>"
)


class GraphQLFaults:
    """Per-request fault policy. Pure: no I/O; thread-safe; reproducible with a seed."""

    def __init__(self, config: GraphQLFaultsConfig | None = None, **kwargs: Any) -> None:
        self._lock = threading.Lock()
        self.configure(config if config is not None else GraphQLFaultsConfig(**kwargs))

    @property
    def config(self) -> GraphQLFaultsConfig:
        return self._config

    def configure(self, config: GraphQLFaultsConfig) -> None:
        """Replace the policy; the RNG restarts from the seed and the fail_nth counts from 0."""
        with self._lock:
            self._config = config
            self._rng = random.Random(config.seed)
            self._calls: dict[tuple[str, str | None], int] = {}
            self.fired: list[tuple[str, int, str | None]] = []  # fail_nth that fired: (field, n, shop)

    def calls(self, field_name: str, shop: str | None = None) -> int:
        """Requests seen carrying `field_name` (on `shop`, or on every shop if None)."""
        with self._lock:
            return self._calls.get((field_name, shop), 0)

    def decide(self, operation_field_names: Iterable[str], *, shop: str | None = None) -> Injection | None:
        c = self._config
        names = list(dict.fromkeys(operation_field_names))
        with self._lock:
            nth_hit: tuple[str, FailNth] | None = None
            for name in names:
                self._calls[(name, None)] = self._calls.get((name, None), 0) + 1
                if shop is not None:
                    self._calls[(name, shop)] = self._calls.get((name, shop), 0) + 1
                spec = c.fail_nth.get(name)
                if spec is None or nth_hit is not None or (spec.shop is not None and spec.shop != shop):
                    continue
                if self._calls[(name, spec.shop)] == spec.n:
                    nth_hit = (name, spec)
                    self.fired.append((name, spec.n, spec.shop))
            # Always draw the same values so changing one probability does not reshuffle others.
            r429, r5xx, which5xx, rtimeout = (self._rng.random() for _ in range(4))

        latency = c.latency_s
        if r429 < c.http_429_p:
            body = _json(
                {
                    "errors": "Exceeded 2 calls per second for api client. Reduce request rates to resume uninterrupted service."
                }
            )
            return Injection(
                "http_429", delay_s=latency, status=429, body=body,
                headers={**_JSON, "Retry-After": f"{c.retry_after_s:.1f}"},
            )  # fmt: skip
        if r5xx < c.error_5xx_p:
            if which5xx < 0.5:
                body = _json(
                    {
                        "errors": [
                            {"message": "Service Unavailable", "extensions": {"code": "SERVICE_UNAVAILABLE"}}
                        ]
                    }
                )
                return Injection("http_503", delay_s=latency, status=503, body=body, headers=dict(_JSON))
            return Injection(
                "http_502", delay_s=latency, status=502, body=_BAD_GATEWAY_HTML,
                headers={"Content-Type": "text/html; charset=utf-8"},
            )  # fmt: skip
        if nth_hit is not None:
            name, spec = nth_hit
            if spec.mode in ("idempotency_concurrent", "attempt_failed"):
                return Injection("fail_nth", delay_s=latency, field_name=name, idempotency_fault=spec.mode)
            if spec.mode == "user_error":
                refused = {"field": None, "message": f"{name} refused (fault injection)", "code": None}
                body = _json({"data": {name: {"userErrors": [refused]}}})
                return Injection(
                    "fail_nth", delay_s=latency, status=200, body=body, headers=dict(_JSON), field_name=name
                )
            status = 500 if spec.mode == "internal_error" else 200
            return Injection(
                "fail_nth", delay_s=latency, status=status, body=_internal_error_body(),
                headers=dict(_JSON), field_name=name,
            )  # fmt: skip
        if rtimeout < c.timeout_p:
            if c.timeout_mode == "lost_response":
                return Injection("timeout", delay_s=latency, delay_after_s=c.timeout_hang_s)
            body = _json({"errors": [{"message": "Gateway Timeout"}]})
            return Injection(
                "timeout", delay_s=latency + c.timeout_hang_s, status=504, body=body, headers=dict(_JSON)
            )
        if latency > 0:
            return Injection("latency", delay_s=latency)
        return None


async def respond_with(injection: Injection | None, execute: Callable[[], Awaitable[Any]]) -> Any:
    """Apply `injection` around the app's handler: returns a Starlette Response.

    `execute` runs the operation and returns the Response to send.
    """
    from starlette.responses import Response

    if injection is None:
        return await execute()
    if injection.delay_s > 0:
        await asyncio.sleep(injection.delay_s)
    if injection.status is not None:
        return Response(injection.body, status_code=injection.status, headers=injection.headers)
    response = await execute()
    if injection.delay_after_s > 0:
        await asyncio.sleep(injection.delay_after_s)
    return response


# --------------------------------------------------------------------------- CLI flags

FAULT_FLAG_HELP = (
    "A fault, as SECTION.KEY=VALUE (repeatable): graphql.error_5xx_p=0.1, graphql.timeout_p=0.05, "
    "graphql.latency_s=0.02, graphql.http_429_p=0.1, graphql.fail_nth.productSet=3, graphql.seed=7, "
    "webhooks.duplicate_p=0.2, webhooks.reorder_p=0.2, webhooks.delay_max_s=1, webhooks.drop_p=0.05, "
    "webhooks.seed=7"
)


class FaultFlagError(ValueError):
    """A --fault flag that cannot be used; the message says which and why."""


def parse_fault_flags(flags: Iterable[str], base: FaultsConfig | None = None) -> FaultsConfig:
    """`--fault` values (SECTION.KEY=VALUE) applied over `base`, validated as a FaultsConfig.

    For typer: `fault: Annotated[list[str] | None, typer.Option("--fault", help=FAULT_FLAG_HELP)] = None`
    then `faults = parse_fault_flags(fault or [])` (catch FaultFlagError -> `fail(str(err))`).
    """
    data: dict[str, Any] = (base or FaultsConfig()).model_dump()
    for flag in flags:
        key, sep, raw = flag.partition("=")
        parts = key.strip().split(".")
        if not sep or len(parts) < 2 or parts[0] not in ("graphql", "webhooks"):
            raise FaultFlagError(
                f"--fault {flag!r}: expected SECTION.KEY=VALUE with SECTION graphql or webhooks"
            )
        section = data[parts[0]]
        if parts[0] == "graphql" and parts[1] == "fail_nth":
            if len(parts) != 3:
                raise FaultFlagError(f"--fault {flag!r}: expected graphql.fail_nth.<mutation>=<n>")
            try:
                section["fail_nth"][parts[2]] = {"n": int(raw)}
            except ValueError:
                raise FaultFlagError(f"--fault {flag!r}: n must be an integer") from None
            continue
        if len(parts) != 2:
            raise FaultFlagError(f"--fault {flag!r}: unknown key {key!r}")
        if parts[1] not in section:
            raise FaultFlagError(
                f"--fault {flag!r}: unknown key {key!r}; known: {', '.join(sorted(section))}"
            )
        section[parts[1]] = None if raw.strip().lower() in ("none", "null", "") else raw.strip()
    try:
        return FaultsConfig.model_validate(data)
    except ValidationError as err:
        msgs = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
            for e in err.errors(include_url=False, include_input=False)
        )
        raise FaultFlagError(f"invalid --fault: {msgs}") from None


def load_faults_json(text: str) -> FaultsConfig:
    """A FaultsConfig from JSON text (a `--faults-file`), with a readable error."""
    try:
        return FaultsConfig.model_validate_json(text)
    except ValidationError as err:
        msgs = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '(root)'}: {e['msg']}"
            for e in err.errors(include_url=False, include_input=False)
        )
        raise FaultFlagError(f"invalid faults JSON: {msgs}") from None
