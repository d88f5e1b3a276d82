"""The commerce emulator on a loopback ephemeral port, for tests.

    with running_emulator(stores=["parent.myshopify.com", "child-a.myshopify.com"]) as emu:
        httpx.post(emu.graphql_url("parent.myshopify.com"), headers=emu.headers("parent.myshopify.com"), ...)

uvicorn serves the app in a background thread of the test process (starts in well under a
second), or with `in_subprocess=True` in a `storesync emulator` process of its own. Talk to
it over HTTP only: the control API (`emu.control`, an httpx.Client) places
orders, seeds catalogs, sets faults and reads snapshots.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn

from storesync.emulator.app import EmulatorApp, StoreSpec
from storesync.emulator.control_client import EmulatorControl

DEFAULT_STORES = (
    "parent.myshopify.com",
    "child-a.myshopify.com",
    "child-b.myshopify.com",
    "child-c.myshopify.com",
)


class EmulatorHandle(EmulatorControl):
    """`app` is the in-process EmulatorApp, or None when the emulator runs in a subprocess."""

    def __init__(self, app: EmulatorApp | None, base_url: str) -> None:
        super().__init__(base_url)
        self.app = app


def _free_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


@contextmanager
def running_emulator(
    stores: list[str | StoreSpec] | tuple = DEFAULT_STORES,
    *,
    time_scale: float = 0.001,
    in_subprocess: bool = False,
    **options: Any,
) -> Iterator[EmulatorHandle]:
    """Serve a fresh emulator on 127.0.0.1:<ephemeral> for the duration of the block.

    `options` go to EmulatorApp (seed_products, require_idempotency, throttle_http_429,
    webhook_faults, graphql_faults, token_time_scale). `time_scale` defaults to 0.001 so webhook retries take
    seconds, not hours. `in_subprocess=True` runs `storesync emulator` in its own process (its
    own core and GIL: for tests and benchmarks that load the engine in this process)."""
    if in_subprocess:
        with _subprocess_emulator(stores, time_scale, **options) as handle:
            yield handle
        return
    app = EmulatorApp(stores, time_scale=time_scale, **options)
    sock = _free_socket()
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", lifespan="on", access_log=False)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="emulator", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the emulator did not start")
        time.sleep(0.005)
    handle = EmulatorHandle(app, f"http://127.0.0.1:{port}")
    try:
        yield handle
    finally:
        handle.control.close()
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


@contextmanager
def _subprocess_emulator(
    stores,
    time_scale: float,
    *,
    seed_products: int = 0,
    require_idempotency: bool = True,
    throttle_http_429: bool = False,
    webhook_faults: Any = None,
    graphql_faults: Any = None,
    token_time_scale: float | None = None,
) -> Iterator[EmulatorHandle]:
    specs = [s if isinstance(s, StoreSpec) else StoreSpec(s) for s in stores]
    if any(s.token or s.webhook_secret or s.plan != "standard" for s in specs):
        raise ValueError("in_subprocess serves --store domains only (set plans via handle.set_plan)")
    cmd = [
        sys.executable,
        "-m",
        "storesync",
        "emulator",
        "--port",
        "0",
        "--time-scale",
        str(time_scale),
        "--seed-products",
        str(seed_products),
    ]
    for s in specs:
        cmd += ["--store", s.shop]
    if throttle_http_429:
        cmd.append("--throttle-429")
    if token_time_scale is not None:
        cmd += ["--token-time-scale", str(token_time_scale)]
    if not require_idempotency:
        cmd.append("--no-idempotency-required")
    env = {**os.environ, "STORESYNC_CONFIG_FILE": os.devnull}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline() for _ in range(len(specs) + 1)]
        if not lines[-1].startswith("control API:"):
            proc.kill()
            raise RuntimeError(
                f"the emulator did not start: {lines} {proc.stderr.read() if proc.stderr else ''}"
            )
        base_url = lines[-1].split()[-1].removesuffix("/_emulator/stores")
        handle = EmulatorHandle(None, base_url)
        if webhook_faults is not None or graphql_faults is not None:
            handle._ok(
                handle.control.put(
                    "/_emulator/faults",
                    json={
                        "graphql": graphql_faults.model_dump() if graphql_faults is not None else {},
                        "webhooks": webhook_faults.model_dump() if webhook_faults is not None else {},
                    },
                )
            )
        try:
            yield handle
        finally:
            handle.control.close()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
