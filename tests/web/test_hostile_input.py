"""A property test of POST /webhooks/shopify over real HTTP: whatever the bytes, JSON and headers,
no 5xx while the database is up, a row only for a correctly signed delivery, one per webhook id."""

from __future__ import annotations

import json
import uuid

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from storesync.sync.domain.topics import BY_NAME as HANDLED_TOPICS
from storesync.web.ingest import sign
from tests.web.conftest import CHILD, PARENT, SECRETS, serving
from tests.web.test_webhooks import HOSTILE_BODIES

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


def _nested(depth: int, core: bytes) -> bytes:
    return b'{"a": ' + b"[" * depth + core + b"]" * depth + b"}"


bodies = st.one_of(
    st.binary(max_size=300),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.dictionaries(st.text(max_size=8), json_values, max_size=5).map(lambda d: json.dumps(d).encode()),
    st.sampled_from(list(HOSTILE_BODIES.values())),
    st.builds(_nested, st.integers(0, 3000), st.sampled_from([b'"\\u0000"', b'"\\ud800"', b"1e999", b"1"])),
    st.builds(
        lambda order_id, qty, text: json.dumps(
            {"id": order_id, "line_items": [{"id": 1, "variant_id": 2, "quantity": qty}], "note": text}
        ).encode(),
        st.integers(),
        st.integers(),
        st.text(max_size=10),
    ),
)
# Header text as it can travel in HTTP/1.1 (latin-1, no line breaks, no surrounding blanks).
header_text = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"), max_size=40
).map(str.strip)
KNOWN_SHOPS = [PARENT, CHILD]
VALID_IDS = [f"wh-{n}" for n in range(6)]  # few: the same id comes back with other bodies


@st.composite
def deliveries(draw):
    """(headers, body, webhook id, whether it is a correctly signed delivery with valid headers).
    Two in three are genuine Shopify deliveries of arbitrary bodies; the rest get any headers."""
    body = draw(bodies)
    genuine = draw(st.sampled_from([True, True, False]))
    if genuine:
        shop = draw(st.sampled_from(KNOWN_SHOPS))
        signing = "right"
        topic = draw(st.sampled_from([*HANDLED_TOPICS, "customers/create"]))
        webhook_id = draw(st.sampled_from(VALID_IDS) | st.just("fresh"))
    else:
        shop = draw(st.sampled_from([*KNOWN_SHOPS, "stranger.myshopify.com", ""]) | header_text)
        signing = draw(st.sampled_from(["other_secret", "garbage", "missing", "right"]))
        topic = draw(st.sampled_from([*HANDLED_TOPICS, "", "Not A Topic", "orders"]) | header_text)
        webhook_id = draw(st.sampled_from([*VALID_IDS, "fresh", "", "has space", "x" * 300]))
    if webhook_id == "fresh":
        webhook_id = str(uuid.uuid4())
    headers = {"Content-Type": "application/json"}
    if shop:
        headers["X-Shopify-Shop-Domain"] = shop
    if signing == "right" and shop in KNOWN_SHOPS:
        headers["X-Shopify-Hmac-Sha256"] = sign(SECRETS[shop][0], body)
    elif signing == "other_secret":
        headers["X-Shopify-Hmac-Sha256"] = sign("not-the-secret", body)
    elif signing == "garbage":
        headers["X-Shopify-Hmac-Sha256"] = draw(header_text)
    if topic:
        headers["X-Shopify-Topic"] = topic
    if webhook_id:
        headers["X-Shopify-Webhook-Id"] = webhook_id
    for name in ("X-Shopify-Triggered-At", "X-Shopify-Event-Id", "X-Shopify-API-Version"):
        value = draw(st.none() | st.just("2026-11-25T17:00:00.123456789Z") | header_text)
        if value is not None:
            headers[name] = value
    # A tampered request may happen to be a valid one too (signed, known shop, valid headers).
    signed = genuine or (
        signing == "right"
        and shop in KNOWN_SHOPS
        and topic in HANDLED_TOPICS
        and webhook_id not in ("", "has space", "x" * 300)
    )
    return headers, body, webhook_id, signed


def test_no_body_or_header_gets_a_5xx_and_only_signed_deliveries_leave_one_row_each(db) -> None:
    recorded: set[str] = set()  # webhook ids of correctly signed deliveries sent so far

    with serving(db.settings) as s, httpx.Client(timeout=20) as client:

        @settings(
            max_examples=200,
            deadline=5000,  # ms per request: a loaded 2-core machine
            database=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        )
        @given(deliveries())
        def post(delivery) -> None:
            headers, body, webhook_id, signed = delivery
            raw_headers = {k: v.encode("latin-1") for k, v in headers.items()}
            r = client.post(s.webhook_url, content=body, headers=raw_headers)
            assert r.status_code < 500, (r.status_code, r.text, headers, body[:80])
            if signed:
                assert r.status_code == 200, r.text
                expected = "duplicate" if webhook_id in recorded else None
                assert expected is None or r.json()["outcome"] == expected
                recorded.add(webhook_id)
            else:
                assert r.status_code == 401, (r.text, headers)

        post()
    with db.connect() as conn:
        rows = [r[0] for r in conn.execute("SELECT webhook_id FROM webhook_deliveries")]
        jobs = [r[0] for r in conn.execute("SELECT payload->>'delivery_id' FROM jobs")]
    assert sorted(rows) == sorted(recorded)  # one row per correctly signed webhook id, no other
    assert len(jobs) == len(set(jobs)) and set(jobs) <= recorded
