"""`storesync serve`: the web tier under uvicorn, one process or several workers, and the
operations listener (`ops.py`) in a thread of this process."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from typing import Any

import uvicorn

from storesync.config import NetworkConfig, Settings
from storesync.web.app import NotServing, check_database, create_app
from storesync.web.ops import OpsListenerRefused, check_ops_settings, start_ops_listener
from storesync.web.settings import WebSettings


def _multiprocess_metrics_dir() -> None:
    """Workers share metrics through files (prometheus_client multiprocess mode); the directory
    must exist and be empty before they start, and is removed when the server exits."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return
    directory = tempfile.mkdtemp(prefix="storesync-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory
    atexit.register(shutil.rmtree, directory, ignore_errors=True)


def serve(settings: Settings, network: NetworkConfig, web: WebSettings) -> None:
    """Check the database, then serve until SIGINT/SIGTERM. Raises NotServing when it must not."""
    try:
        check_ops_settings(web)
    except OpsListenerRefused as err:
        raise NotServing(str(err)) from None
    check_database(settings)  # fail here, with the reason, before any worker starts
    common: dict[str, Any] = {
        "host": web.host,
        "port": web.port,
        "log_level": settings.log_level,
        # Keep to the process's logging (storesync.logs: one format, on stderr).
        "log_config": None,
        "access_log": False,
        "timeout_graceful_shutdown": 10,
        "proxy_headers": True,
    }
    if web.workers == 1:
        app = create_app(settings, network, web)
        ops = start_ops_listener(lambda: settings, web, app.state.metrics, settings.log_level)
        try:
            uvicorn.run(app, **common)
        finally:
            if ops is not None:
                ops.stop()
        return
    # Several workers each build their app from the environment: hand them the settings this
    # process resolved (an embedded server's DSN, the config file, command-line overrides).
    _multiprocess_metrics_dir()
    os.environ["DATABASE_URL"] = settings.pooled_dsn or ""
    if settings.database_direct_url is not None:
        os.environ["DATABASE_DIRECT_URL"] = settings.direct_dsn or ""
    os.environ["STORESYNC_CONFIG_FILE"] = str(settings.config_file)
    os.environ["STORESYNC_WEB_HOST"], os.environ["STORESYNC_WEB_PORT"] = web.host, str(web.port)
    # The ops listener stays in this (supervising) process and reads the workers' metric files.
    ops = start_ops_listener(lambda: settings, web, None, settings.log_level)
    try:
        uvicorn.run("storesync.web.app:app_from_environment", factory=True, workers=web.workers, **common)
    finally:
        if ops is not None:
            ops.stop()


__all__ = ["NotServing", "serve"]
