"""The chaos run, 60 seconds of it (`bench/chaos/run.py --duration 60`; the 10-minute run and its
results: docs/reliability.md). The whole system in the production layout (PgBouncer in
transaction mode + direct URL), 1 parent and 5 children, sales, cancellations, refunds and
returns with restock, parent edits and new products, under every fault at once: duplicate,
reordered and dropped webhooks, GraphQL 5xx, timeouts and throttling, a worker SIGKILLed every
~10 s, the web tier, PgBouncer and Postgres restarted. Then reconcile, and the stores' own
records must show nothing lost, nothing applied twice, every child equal to the parent and no
dead job."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.chaos, pytest.mark.slow, pytest.mark.timeout(420)]


def test_sixty_seconds_of_every_fault_at_once_lose_nothing(tmp_path: Path) -> None:
    result_file = tmp_path / "result.json"
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "chaos" / "run.py"),
            "--duration",
            "60",
            "--rate",
            "1.5",
            "--settle-timeout",
            "180",
            "--result-file",
            str(result_file),
        ],
        capture_output=True,
        text=True,
        timeout=400,
    )
    report = f"{done.stdout}\n{done.stderr[-4000:]}"
    assert result_file.exists(), report
    result = json.loads(result_file.read_text())
    did, check = result["activity"], result["check"]
    # It did what it says: every kind of load and every fault happened.
    assert did["sales"] >= 40 and did["cancels"] and did["refunds"] and did["edits"], report
    assert did["worker_kills"] >= 4, report
    assert (did["web_restarts"], did["pgbouncer_restarts"], did["postgres_restarts"]) == (1, 1, 1), report
    # ...and lost nothing.
    assert check["lost_units"] == 0, report
    assert check["sale_lines_missing"] == [] and check["double_applied_sales"] == [], report
    assert check["divergent_levels"] == [] and check["catalogs_differ"] == [], report
    assert check["dead_jobs"] == [], report
    assert done.returncode == 0, report
