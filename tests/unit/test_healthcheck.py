"""`python -m storesync.healthcheck`: what containers and service managers run to ask if a
process is healthy (stdlib only; the worker's file is tested with a real worker in
tests/queue/test_worker.py, the web check against `storesync serve` in tests/deploy)."""

from __future__ import annotations

import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from storesync.healthcheck import check_web, check_worker, main, web_url, write_heartbeat_file


def test_web_url_reads_the_tiers_own_host_and_port():
    assert web_url({}) == "http://127.0.0.1:8080/healthz"
    assert web_url({"STORESYNC_WEB_HOST": "0.0.0.0", "STORESYNC_WEB_PORT": "9000"}) == (
        "http://127.0.0.1:9000/healthz"
    )
    assert web_url({"STORESYNC_WEB_HOST": "10.1.2.3"}) == "http://10.1.2.3:8080/healthz"
    assert web_url({"STORESYNC_WEB_HOST": "::"}) == "http://127.0.0.1:8080/healthz"
    assert web_url({"STORESYNC_WEB_HOST": "::1"}) == "http://[::1]:8080/healthz"


@pytest.fixture
def http_status():
    """A loopback server answering every GET with the status in `state['status']`."""
    state = {"status": 200}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(state["status"])
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state["url"] = f"http://127.0.0.1:{server.server_address[1]}/healthz"
    yield state
    server.shutdown()
    server.server_close()


def test_web_check_passes_on_200_only(http_status):
    assert check_web(http_status["url"]) is None
    http_status["status"] = 503
    assert "answered 503" in check_web(http_status["url"])
    port = int(http_status["url"].rsplit(":", 1)[1].split("/")[0])
    assert main(["web", "--url", http_status["url"]]) == 1
    http_status["status"] = 200
    assert main(["web", "--url", http_status["url"]]) == 0
    env_port = {"STORESYNC_WEB_HOST": "0.0.0.0", "STORESYNC_WEB_PORT": str(port)}
    assert check_web(web_url(env_port)) is None


def test_web_check_fails_when_nothing_listens():
    assert check_web("http://127.0.0.1:9/healthz", timeout_s=1) is not None


def test_worker_check_wants_a_fresh_file(tmp_path):
    path = tmp_path / "worker.health"
    assert "no heartbeat file" in check_worker(path)
    write_heartbeat_file(path, {"state": "running"})
    assert check_worker(path, max_age_s=30) is None
    old = time.time() - 60
    os.utime(path, (old, old))
    assert "60s ago" in check_worker(path, max_age_s=30)
    assert [p.name for p in tmp_path.iterdir()] == ["worker.health"]  # no temporary left behind


def test_worker_check_takes_the_path_from_the_workers_environment(tmp_path, monkeypatch):
    path = tmp_path / "worker.health"
    monkeypatch.setenv("STORESYNC_QUEUE_HEALTH_FILE", str(path))
    assert main(["worker"]) == 1
    write_heartbeat_file(path, {"state": "running"})
    assert main(["worker"]) == 0
    monkeypatch.delenv("STORESYNC_QUEUE_HEALTH_FILE")
    with pytest.raises(SystemExit):
        main(["worker"])
