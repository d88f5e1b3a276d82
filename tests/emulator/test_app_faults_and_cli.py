"""The emulator app applies the configured GraphQL faults, and `storesync emulator` serves it
from a real subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.emulator.helpers import PARENT, gql

ROOT = Path(__file__).resolve().parents[2]
CREATE = 'mutation { collectionCreate(input: {title: "C"}) { collection { id } userErrors { field } } }'


def test_fail_nth_mutation_fails_once_without_executing(emulator):
    emulator.set_faults(graphql={"fail_nth": {"collectionCreate": 2}})
    first = httpx.post(emulator.graphql_url(PARENT), headers=emulator.headers(PARENT), json={"query": CREATE})
    second = httpx.post(
        emulator.graphql_url(PARENT), headers=emulator.headers(PARENT), json={"query": CREATE}
    )
    third = httpx.post(emulator.graphql_url(PARENT), headers=emulator.headers(PARENT), json={"query": CREATE})
    assert [first.status_code, second.status_code, third.status_code] == [200, 500, 200]
    assert second.json()["errors"][0]["extensions"]["code"] == "INTERNAL_SERVER_ERROR"
    assert len(emulator.snapshot(PARENT)["collections"]) == 2


def test_5xx_fault_and_its_removal(emulator):
    emulator.set_faults(graphql={"error_5xx_p": 1.0, "seed": 1})
    resp = httpx.post(
        emulator.graphql_url(PARENT), headers=emulator.headers(PARENT), json={"query": "{ shop { id } }"}
    )
    assert resp.status_code in (502, 503)
    emulator.set_faults()
    assert gql(emulator, PARENT, "{ shop { id } }")["shop"]["id"]


def test_added_latency_delays_the_answer(emulator):
    emulator.set_faults(graphql={"latency_s": 0.3})
    t0 = time.monotonic()
    gql(emulator, PARENT, "{ shop { id } }")
    assert time.monotonic() - t0 >= 0.3


def test_unknown_shop_and_bad_version_and_bad_body(emulator):
    url = emulator.graphql_url(PARENT)
    h = emulator.headers(PARENT)
    assert (
        httpx.post(
            url.replace(PARENT, "nope.myshopify.com"), headers=h, json={"query": "{ shop { id } }"}
        ).status_code
        == 404
    )
    assert (
        httpx.post(url.replace("2026-10", "latest"), headers=h, json={"query": "{ shop { id } }"}).status_code
        == 404
    )
    assert httpx.post(url, headers=h, content=b"not json").status_code == 400
    assert httpx.post(url, json={"query": "{ shop { id } }"}).status_code == 401


NETWORK = """
[[merchants]]
id = "acme"
[merchants.parent]
shop = "acme-parent.myshopify.com"
admin_api_url = "http://127.0.0.1:1/stores/acme-parent.myshopify.com/admin/api/2026-10/graphql.json"
access_token = "shpat_from_config"
webhook_secrets = ["secret-from-config"]
"""


def test_cli_serves_stores_and_prints_schema(tmp_path):
    (tmp_path / "storesync.toml").write_text(NETWORK)
    env = {**os.environ, "STORESYNC_CONFIG_FILE": str(tmp_path / "storesync.toml")}
    exe = [sys.executable, "-m", "storesync"]
    sdl = subprocess.run(
        [*exe, "emulator", "--print-schema"],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
        cwd=tmp_path,
    )
    assert sdl.returncode == 0 and "type Mutation" in sdl.stdout and "@idempotent" in sdl.stdout
    proc = subprocess.Popen(
        [
            *exe,
            "emulator",
            "--port",
            "0",
            "--store",
            PARENT,
            "--store",
            "child-a.myshopify.com",
            "--seed-products",
            "2",
            "--from-config",  # storesync.toml is read only when asked
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    try:
        lines = [proc.stdout.readline() for _ in range(4)]
        served = {line.split()[0]: line.split() for line in lines[:3]}
        assert set(served) == {"acme-parent.myshopify.com", PARENT, "child-a.myshopify.com"}, lines
        assert served["acme-parent.myshopify.com"][2] == "token=shpat_from_config"
        url, token = served[PARENT][1], served[PARENT][2].removeprefix("token=")
        resp = httpx.post(
            url,
            headers={"X-Shopify-Access-Token": token},
            json={"query": "{ productsCount { count } }"},
            timeout=10,
        )
        assert resp.json()["data"]["productsCount"]["count"] == 2
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_cli_never_reads_storesync_toml_unless_asked(tmp_path):
    (tmp_path / "storesync.toml").write_text(NETWORK)
    env = {**os.environ, "STORESYNC_CONFIG_FILE": str(tmp_path / "storesync.toml")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "storesync", "emulator", "--port", "0", "--store", PARENT],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    try:
        lines = [proc.stdout.readline() for _ in range(2)]
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert lines[0].split()[0] == PARENT and lines[1].startswith("control API:"), lines
    assert "shpat_from_config" not in "".join(lines)


def test_cli_refuses_to_serve_off_loopback_without_a_control_token(tmp_path):
    env = {**os.environ, "STORESYNC_CONFIG_FILE": os.devnull, "COLUMNS": "200"}
    env.pop("STORESYNC_EMULATOR_CONTROL_TOKEN", None)
    for extra in ([], ["--control-token", "short"]):
        out = subprocess.run(
            [sys.executable, "-m", "storesync", "emulator", "--host", "0.0.0.0", "--store", PARENT, *extra],
            capture_output=True,
            text=True,
            env=env,
            timeout=30,
            cwd=tmp_path,
        )
        assert out.returncode == 2, out
        assert ("without a control token" if not extra else "at least 16 characters") in out.stderr


def test_control_api_requires_its_token_when_one_is_set():
    from tests.support.emulator import running_emulator

    token = "control-" + "t" * 24
    with running_emulator([PARENT], control_token=token) as emu:
        base = emu.base_url
        assert httpx.get(base + "/_emulator/stores", timeout=10).status_code == 401
        wrong = httpx.get(
            base + "/_emulator/stores", headers={"Authorization": "Bearer " + "x" * 32}, timeout=10
        )
        assert wrong.status_code == 401 and "token" not in wrong.json().get("stores", [{}])[0]
        right = httpx.get(
            base + "/_emulator/stores", headers={"Authorization": f"Bearer {token}"}, timeout=10
        )
        assert right.status_code == 200 and right.json()["stores"][0]["shop"] == PARENT
        # The Admin API itself still answers to each store's own access token.
        store_token = right.json()["stores"][0]["token"]
        reply = httpx.post(
            emu.graphql_url(PARENT),
            headers={"X-Shopify-Access-Token": store_token},
            json={"query": "{ shop { id } }"},
            timeout=10,
        )
        assert reply.status_code == 200 and reply.json()["data"]["shop"]["id"]


def test_cli_rejects_a_bad_store_domain(tmp_path):
    env = {**os.environ, "STORESYNC_CONFIG_FILE": str(tmp_path / "absent.toml")}
    out = subprocess.run(
        [sys.executable, "-m", "storesync", "emulator", "--store", "not a shop"],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
        cwd=tmp_path,
    )
    assert out.returncode == 2 and "not a shop domain" in out.stderr


def test_running_emulator_in_a_subprocess_serves_the_same_handle_api():
    from tests.support.emulator import running_emulator

    with running_emulator([PARENT, "child-a.myshopify.com"], in_subprocess=True, seed_products=1) as emu:
        assert emu.app is None
        assert emu.token(PARENT) == "shpat_emulator_parent"
        assert gql(emu, PARENT, "{ productsCount { count } }")["productsCount"]["count"] == 1
        assert emu.snapshot("child-a.myshopify.com")["shop"] == "child-a.myshopify.com"


def test_control_api_answers_bad_bodies_with_4xx(emulator):
    base = f"/_emulator/stores/{PARENT}"
    for method, path, body in [
        ("post", f"{base}/orders", {"line_items": ["not an object"]}),
        ("post", f"{base}/orders", {"line_items": [{"variant_id": 5, "quantity": "two"}]}),
        ("post", f"{base}/inventory", {"inventory_item_id": "x", "location_id": 1, "available": 1}),
        ("post", f"{base}/inventory", {"available": True}),
        ("put", f"{base}/plan", {"plan": "enterprise"}),
        ("post", f"{base}/seed", {"products": -1}),
        ("post", f"{base}/seed", {"catalog": "nope"}),
        ("patch", f"{base}/products/123", {"title": "x"}),
        ("post", "/_emulator/stores", {"shop": PARENT}),
    ]:
        resp = emulator.control.request(method.upper(), path, json=body)
        assert 400 <= resp.status_code < 500, (path, body, resp.status_code, resp.text)
        assert resp.json()["error"]
    resp = emulator.control.post(f"{base}/orders", content=b"{not json")
    assert resp.status_code == 400
