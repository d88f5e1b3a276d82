"""Container and service-manager health checks: `python -m storesync.healthcheck web|worker`.

A health check runs every few seconds in every container, so this module imports the standard
library only (about 50 ms a run; `storesync --help` takes 0.4 s) and reads the same
environment as the process it checks, so a port or path is never written down twice:

- `web`: GET /healthz on STORESYNC_WEB_HOST:STORESYNC_WEB_PORT (loopback when the tier binds
  every address) answers 200.
- `worker`: the heartbeat file (`storesync worker --health-file`, STORESYNC_QUEUE_HEALTH_FILE)
  was written within `--max-age` seconds. The worker writes it after each heartbeat it
  recorded in the database (every lease/3 s, at most 5 s) and removes it when it stops, so a
  fresh file means the process, its event loop and its pooled database path all work.

Exit 0 when healthy, 1 with the reason on stderr otherwise (Docker's HEALTHCHECK contract).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path

HEALTH_FILE_ENV = "STORESYNC_QUEUE_HEALTH_FILE"
DEFAULT_MAX_AGE_S = 30.0
WILDCARD_HOSTS = ("", "0.0.0.0", "::", "[::]")


def write_heartbeat_file(path: Path, heartbeat: dict) -> None:
    """Replace `path` with the heartbeat as JSON (atomically: a reader never sees half a file)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps({**heartbeat, "written_at": time.time()}), encoding="utf-8")
    os.replace(tmp, path)


def remove_heartbeat_file(path: Path) -> None:
    path.unlink(missing_ok=True)


def check_worker(path: Path, max_age_s: float = DEFAULT_MAX_AGE_S, now: float | None = None) -> str | None:
    """None if the heartbeat file is fresh, else why not."""
    try:
        age = (time.time() if now is None else now) - path.stat().st_mtime
    except FileNotFoundError:
        return f"no heartbeat file at {path} (worker not started, stopped, or without --health-file)"
    if age > max_age_s:
        return (
            f"last heartbeat {age:.0f}s ago (more than {max_age_s:g}s): worker stuck or database unreachable"
        )
    return None


def web_url(environ: Mapping[str, str] = os.environ) -> str:
    host = environ.get("STORESYNC_WEB_HOST", "127.0.0.1").strip()
    if host in WILDCARD_HOSTS:
        host = "127.0.0.1"
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    port = environ.get("STORESYNC_WEB_PORT", "8080").strip() or "8080"
    return f"http://{host}:{port}/healthz"


def check_web(url: str, timeout_s: float = 3.0) -> str | None:
    """None if `url` answers 200, else why not."""
    try:
        # No proxy: the check is about this container's own process.
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(url, timeout=timeout_s) as resp:
            status = resp.status
    except urllib.error.HTTPError as err:
        status = err.code
    except (OSError, ValueError) as err:
        return f"{url}: {err}"
    return None if status == 200 else f"{url} answered {status}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m storesync.healthcheck", description="Exit 0 if the process is healthy."
    )
    sub = parser.add_subparsers(dest="tier", required=True)
    web = sub.add_parser("web", help="GET /healthz of the web tier in this container")
    web.add_argument("--url", help="default: from STORESYNC_WEB_HOST and STORESYNC_WEB_PORT")
    web.add_argument("--timeout", type=float, default=3.0)
    worker = sub.add_parser("worker", help="the worker's heartbeat file is fresh")
    worker.add_argument("--file", type=Path, help=f"default: ${HEALTH_FILE_ENV}")
    worker.add_argument("--max-age", type=float, default=DEFAULT_MAX_AGE_S, help="seconds [30]")
    args = parser.parse_args(argv)
    if args.tier == "web":
        problem = check_web(args.url or web_url(), args.timeout)
    else:
        path = args.file or (Path(os.environ[HEALTH_FILE_ENV]) if os.environ.get(HEALTH_FILE_ENV) else None)
        if path is None:
            parser.error(f"worker: give --file or set {HEALTH_FILE_ENV}")
        problem = check_worker(path, args.max_age)
    if problem:
        print(f"unhealthy: {problem}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
