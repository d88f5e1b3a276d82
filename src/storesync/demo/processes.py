"""The system's OS processes: started in their own process groups (so a terminal's Ctrl-C reaches
only the harness, which then stops them in order), stopped in dependency order (workers and
commands, then the web tier, then the emulator: SIGTERM, then SIGKILL at the deadline). If the
harness dies without cleanup (SIGKILL), the kernel sends each child SIGTERM (PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx


class SystemStartError(RuntimeError):
    """A part of the system did not start or stopped unexpectedly; the message says which and
    ends with the tail of its log."""


def _set_parent_death_signal() -> None:
    """In the child between fork and exec: SIGTERM when the parent dies (Linux only)."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


class _Spawner:
    """Starts every child from one thread that lives as long as this process. PR_SET_PDEATHSIG
    fires when the *thread* that forked the child ends, not the process: a process started from
    a short-lived thread (a chaos run replacing a killed worker) would get SIGTERM as soon as
    that thread finished."""

    def __init__(self) -> None:
        self._requests: queue.Queue[tuple[Future, dict[str, Any]]] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def popen(self, **kwargs: Any) -> subprocess.Popen:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._serve, name="process-spawner", daemon=True)
                self._thread.start()
        done: Future[subprocess.Popen] = Future()
        self._requests.put((done, kwargs))
        return done.result()

    def _serve(self) -> None:
        while True:
            done, kwargs = self._requests.get()
            try:
                done.set_result(subprocess.Popen(**kwargs))
            except BaseException as err:  # handed to the caller
                done.set_exception(err)


_SPAWNER = _Spawner()


@dataclass
class ManagedProcess:
    name: str
    popen: subprocess.Popen
    log_path: Path
    service: bool = True  # runs until stopped (a service exiting is a failure); False: a command
    args: tuple[str, ...] = ()  # `storesync ARGS`, to start it again
    env: dict[str, str] | None = None

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


class ProcessSet:
    """Processes started in their own groups, stopped in reverse order of start."""

    def __init__(self, log_dir: Path, env: dict[str, str]) -> None:
        self.log_dir = log_dir
        self.env = env
        self.processes: list[ManagedProcess] = []

    def start(
        self, name: str, args: Sequence[str], *, env: dict[str, str] | None = None, service: bool = True
    ) -> ManagedProcess:
        log_path = self.log_dir / f"{name}.log"
        log = open(log_path, "ab")  # noqa: SIM115 - the child holds it; closed below after the fork
        try:
            popen = _SPAWNER.popen(
                args=[sys.executable, "-m", "storesync", *args],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env or self.env,
                start_new_session=True,
                preexec_fn=_set_parent_death_signal if sys.platform == "linux" else None,
            )
        finally:
            log.close()
        proc = ManagedProcess(name, popen, log_path, service, tuple(args), env)
        self.processes.append(proc)
        return proc

    def kill(self, proc: ManagedProcess, sig: int = signal.SIGKILL, timeout: float = 10.0) -> int | None:
        """Signal `proc`'s whole group (SIGKILL: a crash, no cleanup; SIGTERM: a graceful stop),
        wait for it (SIGKILL at `timeout`) and forget it, so its exit is no failure of the set.
        Returns its exit code."""
        self._signal(proc, sig)
        try:
            proc.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self._signal(proc, signal.SIGKILL)
            proc.popen.wait(timeout=5)
        self._signal(proc, signal.SIGKILL)  # whatever it started and left behind
        if proc in self.processes:
            self.processes.remove(proc)
        return proc.popen.returncode

    def restart(self, proc: ManagedProcess, sig: int = signal.SIGKILL) -> ManagedProcess:
        """`kill` then start the same command again (same name, arguments, environment; its log
        continues in the same file)."""
        self.kill(proc, sig)
        return self.start(proc.name, proc.args, env=proc.env, service=proc.service)

    def wait_command(self, proc: ManagedProcess, timeout: float) -> None:
        """Wait for a command (`service=False`) to exit 0 and forget it; SystemStartError with
        its log tail if it fails or is still running at `timeout` (then killed)."""
        try:
            code = proc.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill(proc)
            raise SystemStartError(
                f"storesync {' '.join(proc.args)} did not finish within {timeout:g}s:\n{proc.log_tail()}"
            ) from None
        if proc in self.processes:
            self.processes.remove(proc)
        if code != 0:
            raise SystemStartError(f"storesync {' '.join(proc.args)} exited {code}:\n{proc.log_tail()}")

    def check_alive(self) -> None:
        for p in self.processes:
            if p.service and not p.alive():
                raise SystemStartError(
                    f"{p.name} (pid {p.pid}) exited with {p.popen.returncode}:\n{p.log_tail()}"
                )

    @staticmethod
    def _signal(proc: ManagedProcess, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)

    def stop_all(self, timeout: float) -> None:
        """Stop in dependency order: workers and commands first (they drain against the web tier,
        the emulator and Postgres), then the web tier, then the emulator. Each tier gets SIGTERM
        at once; what is alive at the deadline gets SIGKILL, and so does what is left in each
        process group (children the process may have started)."""
        deadline = time.monotonic() + timeout
        tiers = [
            [p for p in self.processes if p.name not in ("web", "emulator")],
            [p for p in self.processes if p.name == "web"],
            [p for p in self.processes if p.name == "emulator"],
        ]
        for tier in tiers:
            for proc in tier:
                if proc.alive():
                    self._signal(proc, signal.SIGTERM)
            for proc in tier:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.popen.wait(timeout=max(0.1, deadline - time.monotonic()))
                self._signal(proc, signal.SIGKILL)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.popen.wait(timeout=5)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(
    predicate: Callable[[], Any],
    timeout: float,
    what: str,
    processes: ProcessSet,
    proc: ManagedProcess | None = None,
) -> Any:
    """Poll `predicate` until it returns something truthy (returned; HTTP and OS errors count as
    not yet); SystemStartError naming `what`, with `proc`'s log tail, after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(httpx.HTTPError, OSError):
            result = predicate()
            if result:
                return result
        processes.check_alive()
        if time.monotonic() > deadline:
            tail = f"\n{proc.log_tail()}" if proc else ""
            raise SystemStartError(f"{what} not ready within {timeout:g}s{tail}")
        time.sleep(0.05)


def pid_alive(pid: int) -> bool:
    """True if `pid` is a live (non-zombie) process."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        return state not in ("Z", "X")
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True
