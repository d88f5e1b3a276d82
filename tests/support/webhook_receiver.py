"""A real HTTP webhook receiver for tests: records raw bodies and headers, answers as scripted.

    with running_receiver() as rx:
        rx.script("/hooks", 500, 500, 200)      # then 200 forever
        rx.script("/slow", ("hang", 0.6), 200)  # first answer only after 0.6 s
        ... deliver to rx.url("/hooks") ...
        await rx.wait_for(3, timeout=5)

`serve_app(app)` serves any ASGI app with uvicorn on 127.0.0.1:<ephemeral> in a thread.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

Answer = int | tuple[str, float]


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]  # lower-case names
    body: bytes
    answered: int  # status the receiver chose (a hang is recorded as 200 after the hang)
    at: float  # time.monotonic() on arrival


@contextmanager
def serve_app(app, *, graceful_s: float = 1.0) -> Iterator[str]:
    """Serve `app` on a loopback ephemeral port in a background thread; yields the base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app, log_level="warning", lifespan="auto", access_log=False, timeout_graceful_shutdown=graceful_s
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, daemon=True, name=f"uvicorn-{port}"
    )
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("test server did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=graceful_s + 5)
        sock.close()


class WebhookReceiver:
    def __init__(self) -> None:
        self.base_url = ""
        self._lock = threading.Lock()
        self._received: list[Received] = []
        self._scripts: dict[str, deque[Answer]] = {}
        self._default: dict[str, Answer] = {}

    def url(self, path: str = "/hooks") -> str:
        return self.base_url + path

    def script(self, path: str, *answers: Answer, then: Answer = 200) -> None:
        """Answer the next requests to `path` with these (status or ("hang", seconds)), then `then`."""
        with self._lock:
            self._scripts[path] = deque(answers)
            self._default[path] = then

    @property
    def received(self) -> list[Received]:
        with self._lock:
            return list(self._received)

    def on(self, path: str) -> list[Received]:
        return [r for r in self.received if r.path == path]

    async def wait_for(self, count: int, *, timeout: float = 5.0, path: str | None = None) -> list[Received]:
        """Wait (without blocking the event loop) until `count` requests arrived."""
        deadline = time.monotonic() + timeout
        while True:
            got = self.on(path) if path else self.received
            if len(got) >= count:
                return got
            if time.monotonic() > deadline:
                raise TimeoutError(f"expected {count} requests, got {len(got)}")
            await asyncio.sleep(0.01)

    async def _handle(self, request: Request) -> Response:
        body = await request.body()
        path = request.url.path
        with self._lock:
            queue = self._scripts.get(path)
            answer = queue.popleft() if queue else self._default.get(path, 200)
        arrived = time.monotonic()
        if isinstance(answer, tuple):
            _, seconds = answer
            with self._lock:
                self._received.append(
                    Received(path, {k.lower(): v for k, v in request.headers.items()}, body, 200, arrived)
                )
            await asyncio.sleep(seconds)
            return Response(b"late", status_code=200)
        with self._lock:
            self._received.append(
                Received(path, {k.lower(): v for k, v in request.headers.items()}, body, answer, arrived)
            )
        return Response(b"ok" if 200 <= answer < 300 else b"no", status_code=answer)

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/{rest:path}", self._handle, methods=["POST"])])


@contextmanager
def running_receiver() -> Iterator[WebhookReceiver]:
    rx = WebhookReceiver()
    with serve_app(rx.app()) as base_url:
        rx.base_url = base_url
        yield rx
