"""GraphQL fault policy, its config forms (JSON, --fault flags) and `respond_with` over real HTTP."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from storesync.emulator.faults import (
    FaultFlagError,
    FaultsConfig,
    GraphQLFaults,
    GraphQLFaultsConfig,
    load_faults_json,
    parse_fault_flags,
    respond_with,
)
from storesync.emulator.webhooks import DeliveryFaults
from tests.support.webhook_receiver import serve_app

PARENT = "parent.myshopify.com"
CHILD = "child-a.myshopify.com"


def kinds(faults: GraphQLFaults, calls: list[list[str]], shop: str | None = None) -> list[str | None]:
    out = []
    for fields in calls:
        inj = faults.decide(fields, shop=shop)
        out.append(inj.kind if inj else None)
    return out


# --------------------------------------------------------------------------- fail_nth


def test_fail_nth_fails_exactly_the_nth_call_of_that_mutation():
    faults = GraphQLFaults(fail_nth={"productSet": 3})
    calls = [
        ["productSet"],
        ["products"],
        ["productSet"],
        ["inventorySetQuantities"],
        ["productSet"],
        ["productSet"],
    ]
    assert kinds(faults, calls) == [None, None, None, None, "fail_nth", None]
    assert faults.calls("productSet") == 4 and faults.calls("products") == 1
    assert faults.fired == [("productSet", 3, None)]


def test_fail_nth_default_is_an_internal_error_500_that_executes_nothing():
    faults = GraphQLFaults(fail_nth={"inventorySetQuantities": 1})
    inj = faults.decide(["inventorySetQuantities"])
    assert inj is not None and not inj.executes
    assert inj.status == 500 and inj.field_name == "inventorySetQuantities"
    body = json.loads(inj.body)
    assert "data" not in body
    assert body["errors"][0]["extensions"]["code"] == "INTERNAL_SERVER_ERROR"


def test_fail_nth_graphql_error_mode_answers_200_with_errors():
    faults = GraphQLFaults(fail_nth={"productSet": {"n": 1, "mode": "graphql_error"}})
    inj = faults.decide(["productSet"])
    assert inj is not None and inj.status == 200
    assert json.loads(inj.body)["errors"][0]["extensions"]["code"] == "INTERNAL_SERVER_ERROR"


def test_fail_nth_can_count_on_one_shop_only():
    faults = GraphQLFaults(fail_nth={"productSet": {"n": 2, "shop": CHILD}})
    assert kinds(faults, [["productSet"]] * 3, shop=PARENT) == [None, None, None]
    assert kinds(faults, [["productSet"]] * 3, shop=CHILD) == [None, "fail_nth", None]


def test_fail_nth_counts_a_request_with_two_mutations_once_each():
    faults = GraphQLFaults(fail_nth={"collectionAddProducts": 2})
    assert kinds(faults, [["collectionCreate", "collectionAddProducts"], ["collectionAddProducts"]]) == [
        None,
        "fail_nth",
    ]


def test_reconfiguring_restarts_the_counts():
    faults = GraphQLFaults(fail_nth={"productSet": 2})
    assert kinds(faults, [["productSet"]] * 2) == [None, "fail_nth"]
    faults.configure(GraphQLFaultsConfig(fail_nth={"productSet": 2}))
    assert faults.calls("productSet") == 0
    assert kinds(faults, [["productSet"]] * 2) == [None, "fail_nth"]


# --------------------------------------------------------------------------- random faults


def test_no_faults_configured_means_no_injection():
    faults = GraphQLFaults()
    assert kinds(faults, [["products"], ["productSet"]] * 50) == [None] * 100


def test_seeded_faults_repeat_and_follow_their_probabilities():
    cfg = GraphQLFaultsConfig(error_5xx_p=0.2, http_429_p=0.1, timeout_p=0.1, seed=11)
    calls = [["products"]] * 2000
    first, second = kinds(GraphQLFaults(cfg), calls), kinds(GraphQLFaults(cfg), calls)
    assert first == second
    assert kinds(GraphQLFaults(cfg.model_copy(update={"seed": 12})), calls) != first
    n = len(calls)
    share = {k: first.count(k) / n for k in ("http_429", "http_503", "http_502", "timeout", None)}
    assert 0.07 < share["http_429"] < 0.13
    assert 0.07 < share["http_503"] < 0.13 and 0.07 < share["http_502"] < 0.13  # 0.9 * 0.2, split in two
    assert 0.05 < share["timeout"] < 0.1  # 0.9 * 0.8 * 0.1
    assert share[None] > 0.5


def test_every_injection_carries_the_added_latency():
    faults = GraphQLFaults(latency_s=0.25, error_5xx_p=0.5, http_429_p=0.2, seed=1)
    injections = [faults.decide(["products"]) for _ in range(200)]
    assert all(i is not None and i.delay_s == pytest.approx(0.25) for i in injections)
    assert {i.kind for i in injections} >= {"latency", "http_503", "http_502", "http_429"}


def test_429_says_when_to_retry_and_502_is_an_html_proxy_page():
    inj = GraphQLFaults(http_429_p=1.0, retry_after_s=2.0).decide(["products"])
    assert inj is not None and inj.status == 429 and inj.headers["Retry-After"] == "2.0"
    inj = GraphQLFaults(error_5xx_p=1.0, seed=0)
    seen = {i.status: i for i in (inj.decide(["products"]) for _ in range(50))}
    assert set(seen) == {502, 503}
    assert seen[502].headers["Content-Type"].startswith("text/html")
    assert json.loads(seen[503].body)["errors"][0]["message"] == "Service Unavailable"


def test_timeout_modes():
    lost = GraphQLFaults(timeout_p=1.0, timeout_hang_s=3.0).decide(["productSet"])
    assert lost is not None and lost.kind == "timeout" and lost.executes and lost.delay_after_s == 3.0
    no_exec = GraphQLFaults(timeout_p=1.0, timeout_hang_s=3.0, timeout_mode="no_execute").decide(
        ["productSet"]
    )
    assert no_exec is not None and not no_exec.executes and no_exec.status == 504 and no_exec.delay_s == 3.0


# --------------------------------------------------------------------------- respond_with over HTTP


@pytest.fixture
def faulty_app() -> Iterator[tuple[str, GraphQLFaults, list[str]]]:
    """A stand-in GraphQL endpoint: it records each executed mutation, then answers data."""
    faults = GraphQLFaults()
    executed: list[str] = []

    async def graphql(request: Request):
        field_name = (await request.json())["field"]

        async def execute():
            executed.append(field_name)
            return JSONResponse({"data": {field_name: {"userErrors": []}}})

        return await respond_with(faults.decide([field_name], shop=request.path_params["shop"]), execute)

    app = Starlette(routes=[Route("/stores/{shop}/graphql.json", graphql, methods=["POST"])])
    with serve_app(app) as base_url:
        yield base_url, faults, executed


async def test_lost_response_timeout_executes_the_write_but_the_client_times_out(faulty_app):
    base_url, faults, executed = faulty_app
    faults.configure(GraphQLFaultsConfig(timeout_p=1.0, timeout_hang_s=0.6))
    url = f"{base_url}/stores/{PARENT}/graphql.json"
    async with httpx.AsyncClient(timeout=0.2, trust_env=False) as client:
        with pytest.raises(httpx.ReadTimeout):
            await client.post(url, json={"field": "inventorySetQuantities"})
        for _ in range(100):
            if executed:
                break
            await asyncio.sleep(0.01)
    assert executed == ["inventorySetQuantities"]


async def test_fail_nth_over_http_answers_500_and_executes_nothing(faulty_app):
    base_url, faults, executed = faulty_app
    faults.configure(GraphQLFaultsConfig(fail_nth={"productSet": 2}, latency_s=0.01))
    url = f"{base_url}/stores/{PARENT}/graphql.json"
    async with httpx.AsyncClient(timeout=5, trust_env=False) as client:
        statuses = [(await client.post(url, json={"field": "productSet"})).status_code for _ in range(3)]
        faults.configure(GraphQLFaultsConfig(http_429_p=1.0, retry_after_s=1.5))
        r429 = await client.post(url, json={"field": "productSet"})
    assert statuses == [200, 500, 200]
    assert executed == ["productSet", "productSet"]
    assert r429.status_code == 429 and r429.headers["retry-after"] == "1.5"


# --------------------------------------------------------------------------- config forms


def test_fault_flags_build_a_validated_config():
    cfg = parse_fault_flags(
        [
            "graphql.error_5xx_p=0.1",
            "graphql.fail_nth.productSet=3",
            "graphql.timeout_mode=no_execute",
            "webhooks.duplicate_p=0.2",
            "webhooks.seed=7",
        ]
    )
    assert cfg.graphql.error_5xx_p == 0.1 and cfg.graphql.fail_nth["productSet"].n == 3
    assert cfg.graphql.timeout_mode == "no_execute"
    assert cfg.webhooks == DeliveryFaults(duplicate_p=0.2, seed=7)
    assert parse_fault_flags([]) == FaultsConfig()


@pytest.mark.parametrize(
    ("flag", "message"),
    [
        ("graphql.error_5xx_p", "SECTION.KEY=VALUE"),
        ("database.drop_p=1", "SECTION.KEY=VALUE"),
        ("webhooks.explode_p=1", "unknown key"),
        ("webhooks.drop_p=1.5", "less than or equal to 1"),
        ("graphql.latency_s=soon", "valid number"),
        ("graphql.fail_nth.productSet=third", "integer"),
        ("graphql.fail_nth.productSet=0", "greater than or equal to 1"),
    ],
)
def test_bad_fault_flags_are_rejected_with_the_reason(flag, message):
    with pytest.raises(FaultFlagError, match=message):
        parse_fault_flags([flag])


def test_faults_json_round_trips_and_rejects_unknown_keys():
    cfg = FaultsConfig(
        graphql=GraphQLFaultsConfig(latency_s=0.05, fail_nth={"productDelete": 2}),
        webhooks=DeliveryFaults(reorder_p=0.5, seed=3),
    )
    assert load_faults_json(cfg.model_dump_json()) == cfg
    assert (
        load_faults_json('{"graphql": {"fail_nth": {"productSet": 4}}}').graphql.fail_nth["productSet"].n == 4
    )
    with pytest.raises(FaultFlagError, match="drop_probability"):
        load_faults_json('{"webhooks": {"drop_probability": 1}}')
    with pytest.raises(FaultFlagError, match="invalid faults JSON"):
        load_faults_json("{not json")
