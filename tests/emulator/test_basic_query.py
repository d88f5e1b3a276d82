"""The emulator fixture serves a GraphQL query over real HTTP with Shopify's auth and cost."""

import httpx


def test_shop_query_answers_with_cost_extension(emulator):
    shop = "parent.myshopify.com"
    resp = httpx.post(
        emulator.graphql_url(shop),
        headers=emulator.headers(shop),
        json={"query": "{ shop { myshopifyDomain } }"},
    )
    assert resp.status_code == 200
    body = resp.json()
    assert body["data"]["shop"]["myshopifyDomain"] == shop
    cost = body["extensions"]["cost"]
    assert cost["requestedQueryCost"] == 1 and cost["actualQueryCost"] == 1
    assert cost["throttleStatus"]["maximumAvailable"] == 2000.0


def test_wrong_token_is_401(emulator):
    resp = httpx.post(
        emulator.graphql_url("child-a.myshopify.com"),
        headers={"X-Shopify-Access-Token": emulator.token("parent.myshopify.com")},
        json={"query": "{ shop { id } }"},
    )
    assert resp.status_code == 401
