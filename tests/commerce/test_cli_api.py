"""`storesync api check` and `storesync api budget`, as an operator runs them (subprocesses)."""

from __future__ import annotations

import os
import subprocess
import sys

from storesync.commerce.budget import PostgresBudget
from storesync.commerce.throttle import ThrottleStatus
from storesync.db.pools import async_pooled_pool
from tests.commerce.test_client_emulator import ROOT
from tests.support.emulator import running_emulator

PARENT, CHILD = "parent.myshopify.com", "child-a.myshopify.com"


def run_cli(*args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "storesync", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "200", **env},
    )


def write_network(tmp_path, emu, *, child_token: str | None = None) -> dict:
    """storesync.toml for a parent and one child on the emulator; the env that points at it."""
    toml = tmp_path / "storesync.toml"
    toml.write_text(f"""
[[merchants]]
id = "acme"
[merchants.parent]
shop = "{PARENT}"
admin_api_url = "{emu.graphql_url(PARENT)}"
access_token = "{emu.token(PARENT)}"
webhook_secrets = ["s"]
[[merchants.children]]
shop = "{CHILD}"
admin_api_url = "{emu.graphql_url(CHILD)}"
access_token = "{child_token or emu.token(CHILD)}"
webhook_secrets = ["s"]
""")
    return {"STORESYNC_CONFIG_FILE": str(toml)}


def test_api_check_reports_each_store_and_fails_on_a_refused_token(tmp_path):
    with running_emulator(stores=[PARENT, CHILD]) as emu:
        out = run_cli("api", "check", env=write_network(tmp_path, emu, child_token="shpat_revoked"))
    assert out.returncode == 1, out.stderr
    lines = out.stdout.splitlines()
    parent_line = next(line for line in lines if PARENT in line)
    child_line = next(line for line in lines if CHILD in line)
    assert "yes" in parent_line and "2000 points" in parent_line
    assert "no" in child_line and "StoreUnauthorized" in child_line


async def test_api_budget_lists_the_shared_buckets(db):
    pool = async_pooled_pool(db.settings, name="cli-test", min_size=0, max_size=2)
    await pool.open(wait=True)
    try:
        budget = PostgresBudget(pool)
        r = await budget.reserve(PARENT, 100)
        await budget.settle(r, charged=100, status=ThrottleStatus(4000, 1500, 200))
    finally:
        await pool.close()
    out = run_cli("api", "budget", env={"DATABASE_URL": db.dsn})
    assert out.returncode == 0, out.stderr
    line = next(line for line in out.stdout.splitlines() if PARENT in line)
    assert "4000" in line and "200" in line
