"""The catalog's newer pieces over HTTP: product and variant metafields (productSet wholesale,
metafieldsSet / metafieldsDelete), variant and inventory item fields and their webhooks, sales
channels (publications), product media and its processing, archival and deletion."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest

from tests.emulator.helpers import PARENT, gql
from tests.support.webhook_receiver import WebhookReceiver, running_receiver

PRODUCT_SET = """mutation($input: ProductSetInput!, $identifier: ProductSetIdentifiers) {
  productSet(input: $input, identifier: $identifier, synchronous: true) {
    product { id variants(first: 5) { nodes { id } } media(first: 10) { nodes { id } } }
    userErrors { field message code } } }"""

OPTIONS = [{"name": "Size", "values": [{"name": "S"}, {"name": "M"}]}]


def variant(size: str, **fields) -> dict:
    return {"optionValues": [{"optionName": "Size", "name": size}], **fields}


def product_set(emu, input: dict, identifier: dict | None = None) -> dict:
    out = gql(emu, PARENT, PRODUCT_SET, {"input": input, "identifier": identifier})["productSet"]
    assert out["userErrors"] == [], out["userErrors"]
    return out["product"]


@pytest.fixture
def rx() -> Iterator[WebhookReceiver]:
    with running_receiver() as receiver:
        yield receiver


def hooks(rx: WebhookReceiver, topic: str, count: int, timeout: float = 5.0) -> list[dict]:
    deadline = time.monotonic() + timeout
    while True:
        got = [json.loads(r.body) for r in rx.received if r.headers["x-shopify-topic"] == topic]
        if len(got) >= count or time.monotonic() > deadline:
            assert len(got) >= count, (topic, len(got))
            return got
        time.sleep(0.01)


def test_metafields_of_products_and_variants_are_replaced_wholesale_or_set_one_by_one(emulator):
    mf = [
        {"namespace": "spec", "key": "fabric", "type": "single_line_text_field", "value": "cotton"},
        {"namespace": "spec", "key": "gsm", "type": "number_integer", "value": "180"},
    ]
    p = product_set(
        emulator,
        {
            "title": "Tee",
            "productOptions": OPTIONS,
            "metafields": mf,
            "variants": [variant("S", metafields=mf), variant("M")],
        },
    )
    v = p["variants"]["nodes"][0]["id"]
    # productSet's metafields is a list field: what it leaves out is deleted, on the product and
    # on each variant given metafields; a variant given without them keeps its own
    product_set(
        emulator,
        {
            "metafields": mf[1:],
            "variants": [
                variant("S", id=v, metafields=mf[:1]),
                variant("M", id=p["variants"]["nodes"][1]["id"]),
            ],
        },
        {"id": p["id"]},
    )
    read = """query($p: ID!, $v: ID!) { product(id: $p) { metafields(first: 10) { nodes { key value } }
      gsm: metafield(namespace: "spec", key: "gsm") { value jsonValue ownerType compareDigest } }
      productVariant(id: $v) { metafields(first: 10) { nodes { key } } } }"""
    data = gql(emulator, PARENT, read, {"p": p["id"], "v": v})
    assert [n["key"] for n in data["product"]["metafields"]["nodes"]] == ["gsm"]
    assert data["product"]["gsm"]["jsonValue"] == 180 and data["product"]["gsm"]["ownerType"] == "PRODUCT"
    assert [n["key"] for n in data["productVariant"]["metafields"]["nodes"]] == ["fabric"]
    bad = gql(
        emulator,
        PARENT,
        PRODUCT_SET,
        {"input": {"metafields": [{**mf[1], "value": "heavy"}]}, "identifier": {"id": p["id"]}},
    )
    assert bad["productSet"]["userErrors"][0]["code"] == "INVALID_METAFIELD"
    # metafieldsSet: created or updated by owner+namespace+key, atomic, compare-and-set by digest
    set_mf = """mutation($m: [MetafieldsSetInput!]!) { metafieldsSet(metafields: $m) {
      metafields { key value ownerType } userErrors { code elementIndex field } } }"""
    digest = data["product"]["gsm"]["compareDigest"]
    stale = gql(
        emulator,
        PARENT,
        set_mf,
        {
            "m": [
                {
                    "ownerId": v,
                    "namespace": "care",
                    "key": "wash",
                    "type": "single_line_text_field",
                    "value": "cold",
                },
                {
                    "ownerId": p["id"],
                    "namespace": "spec",
                    "key": "gsm",
                    "value": "200",
                    "compareDigest": "0" * 64,
                },
            ]
        },
    )["metafieldsSet"]
    assert (
        stale["metafields"] is None
        and stale["userErrors"][0]["code"] == "STALE_OBJECT"
        and stale["userErrors"][0]["elementIndex"] == 1
    )
    ok = gql(
        emulator,
        PARENT,
        set_mf,
        {
            "m": [
                {
                    "ownerId": v,
                    "namespace": "care",
                    "key": "wash",
                    "type": "single_line_text_field",
                    "value": "cold",
                },
                {
                    "ownerId": p["id"],
                    "namespace": "spec",
                    "key": "gsm",
                    "value": "200",
                    "compareDigest": digest,
                },
            ]
        },
    )["metafieldsSet"]
    assert ok["userErrors"] == [] and [(m["key"], m["value"], m["ownerType"]) for m in ok["metafields"]] == [
        ("wash", "cold", "PRODUCTVARIANT"),
        ("gsm", "200", "PRODUCT"),
    ]
    gone = gql(
        emulator,
        PARENT,
        """mutation($m: [MetafieldIdentifierInput!]!) { metafieldsDelete(metafields: $m) {
      deletedMetafields { key } userErrors { message } } }""",
        {
            "m": [
                {"ownerId": v, "namespace": "care", "key": "wash"},
                {"ownerId": v, "namespace": "care", "key": "nope"},
            ]
        },
    )
    assert gone["metafieldsDelete"]["deletedMetafields"] == [{"key": "wash"}, None]


def test_variant_and_inventory_item_fields_are_written_read_and_announced(emulator, rx):
    for topic in ("PRODUCTS_UPDATE", "INVENTORY_ITEMS_UPDATE", "INVENTORY_ITEMS_CREATE"):
        emulator.subscribe(PARENT, topic, rx.url("/hooks"))
    item_in = {
        "cost": "4.5",
        "harmonizedSystemCode": "610910",
        "countryCodeOfOrigin": "PT",
        "requiresShipping": False,
        "measurement": {"weight": {"unit": "GRAMS", "value": 180.0}},
    }
    p = product_set(
        emulator,
        {
            "title": "Tee",
            "productOptions": [{"name": "Size", "values": [{"name": "S"}]}],
            "variants": [variant("S", inventoryPolicy="CONTINUE", taxable=False, inventoryItem=item_in)],
        },
    )
    v = p["variants"]["nodes"][0]["id"]
    read = """query($v: ID!) { productVariant(id: $v) { inventoryPolicy taxable inventoryItem { tracked requiresShipping
      unitCost { amount currencyCode } harmonizedSystemCode countryCodeOfOrigin measurement { weight { unit value } } } } }"""
    got = gql(emulator, PARENT, read, {"v": v})["productVariant"]
    assert got == {
        "inventoryPolicy": "CONTINUE",
        "taxable": False,
        "inventoryItem": {
            "tracked": True,
            "requiresShipping": False,
            "unitCost": {"amount": "4.50", "currencyCode": "USD"},
            "harmonizedSystemCode": "610910",
            "countryCodeOfOrigin": "PT",
            "measurement": {"weight": {"unit": "GRAMS", "value": 180.0}},
        },
    }
    bulk = gql(
        emulator,
        PARENT,
        """mutation($p: ID!, $v: [ProductVariantsBulkInput!]!) { productVariantsBulkUpdate(productId: $p, variants: $v) {
      userErrors { field code } } }""",
        {
            "p": p["id"],
            "v": [
                {
                    "id": v,
                    "inventoryItem": {
                        "measurement": {"weight": {"unit": "KILOGRAMS", "value": 0.2}},
                        "harmonizedSystemCode": "61",
                    },
                }
            ],
        },
    )
    assert bulk["productVariantsBulkUpdate"]["userErrors"][0]["field"][-1] == "harmonizedSystemCode"
    gql(
        emulator,
        PARENT,
        """mutation($p: ID!, $v: [ProductVariantsBulkInput!]!) { productVariantsBulkUpdate(productId: $p, variants: $v) {
      userErrors { field } } }""",
        {
            "p": p["id"],
            "v": [
                {"id": v, "inventoryItem": {"measurement": {"weight": {"unit": "KILOGRAMS", "value": 0.2}}}}
            ],
        },
    )
    created = hooks(rx, "inventory_items/create", 1)[0]
    assert (created["cost"], created["harmonized_system_code"], created["requires_shipping"]) == (
        "4.50",
        "610910",
        False,
    )
    updated = hooks(rx, "inventory_items/update", 1)[0]
    assert (updated["weight_value"], updated["weight_unit"]) == (0.2, "kg")
    # the product webhook's variants carry policy and tax, not the inventory item's fields
    # (removed from product webhooks since 2024-07)
    pv = hooks(rx, "products/update", 1)[-1]["variants"][0]
    assert pv["inventory_policy"] == "continue" and pv["taxable"] is False
    assert not {"grams", "weight", "weight_unit", "requires_shipping", "inventory_management"} & set(pv)
    # a merchant's admin edit of the same fields answers the webhook ids it caused
    edit = emulator.edit_product(
        PARENT,
        p["id"],
        variants=[{"id": v, "weight": 0.3, "cost": "5"}],
        metafields=[{"namespace": "spec", "key": "fit", "type": "single_line_text_field", "value": "slim"}],
    )
    assert (
        len(edit["webhooks"]["inventory_items/update"]) == 1 and len(edit["webhooks"]["products/update"]) == 1
    )


def test_api_created_products_and_collections_are_on_no_channel_until_published(emulator):
    pubs = gql(
        emulator,
        PARENT,
        "{ publications(first: 10) { nodes { id supportsFuturePublishing catalog { title status } } } }",
    )
    by_name = {n["catalog"]["title"]: n for n in pubs["publications"]["nodes"]}
    assert (
        set(by_name) == {"Online Store", "Point of Sale"}
        and by_name["Online Store"]["supportsFuturePublishing"]
    )
    online, pos = by_name["Online Store"]["id"], by_name["Point of Sale"]["id"]
    seeded = emulator.seed(PARENT, 1)["products"][0]  # as a merchant makes it in the admin
    made = product_set(emulator, {"title": "Copy"})["id"]
    read = """query($id: ID!, $pub: ID!) { product(id: $id) { publishedAt publishedOnPublication(publicationId: $pub)
      resourcePublicationsV2(first: 5) { nodes { isPublished publication { catalog { title } } } } } }"""
    assert (
        gql(emulator, PARENT, read, {"id": seeded, "pub": pos})["product"]["publishedOnPublication"] is True
    )
    before = gql(emulator, PARENT, read, {"id": made, "pub": online})["product"]
    assert before == {
        "publishedAt": None,
        "publishedOnPublication": False,
        "resourcePublicationsV2": {"nodes": []},
    }
    publish = """mutation($id: ID!, $input: [PublicationInput!]!, $pub: ID!) {
      publishablePublish(id: $id, input: $input) {
      publishable { ... on Product { publishedOnPublication(publicationId: $pub) } ... on Collection { id } }
      userErrors { field message } } }"""
    out = gql(
        emulator,
        PARENT,
        publish,
        {"id": made, "pub": online, "input": [{"publicationId": online}, {"publicationId": pos}]},
    )
    assert out["publishablePublish"] == {"publishable": {"publishedOnPublication": True}, "userErrors": []}
    after = gql(emulator, PARENT, read, {"id": made, "pub": online})["product"]
    assert after["publishedAt"] and len(after["resourcePublicationsV2"]["nodes"]) == 2
    gql(
        emulator,
        PARENT,
        """mutation($id: ID!, $p: ID!) { publishableUnpublish(id: $id, input: [{publicationId: $p}]) {
      userErrors { message } } }""",
        {"id": made, "p": online},
    )
    assert gql(emulator, PARENT, read, {"id": made, "pub": online})["product"]["publishedAt"] is None
    coll = gql(
        emulator,
        PARENT,
        """mutation($pub: ID!) { collectionCreate(input: {title: "New"}) {
          collection { id publishedOnPublication(publicationId: $pub) } } }""",
        {"pub": online},
    )
    assert coll["collectionCreate"]["collection"]["publishedOnPublication"] is False
    wrong = gql(
        emulator,
        PARENT,
        publish,
        {"id": made, "pub": online, "input": [{"publicationId": "gid://shopify/Publication/1"}]},
    )
    assert wrong["publishablePublish"]["userErrors"][0]["field"] == ["input", "0", "publicationId"]


MEDIA = """query($id: ID!) { product(id: $id) { mediaCount { count } media(first: 10) { nodes {
  id alt status mediaContentType preview { status image { url } }
  ... on MediaImage { image { url altText } mediaErrors { code } mediaWarnings { code } } } } } }"""


def media_of(emu, pid: str) -> list[dict]:
    return gql(emu, PARENT, MEDIA, {"id": pid})["product"]["media"]["nodes"]


def wait_for(emu, pid: str, status: set[str], timeout: float = 5.0) -> list[dict]:
    deadline = time.monotonic() + timeout
    while True:
        nodes = media_of(emu, pid)
        if {n["status"] for n in nodes} <= status or time.monotonic() > deadline:
            return nodes
        time.sleep(0.02)


def test_media_is_processed_then_ready_failed_sources_fail_and_resending_a_url_makes_new_media(emulator, rx):
    emulator.subscribe(PARENT, "PRODUCTS_UPDATE", rx.url("/hooks"))
    emulator.set_media(
        PARENT, unreachable=["https://img.example.com/broken.jpg"], uploaded_s=0.2, processing_s=0.2
    )
    files = [
        {"originalSource": "https://img.example.com/front.jpg", "alt": "Front", "contentType": "IMAGE"},
        {"originalSource": "https://img.example.com/back.jpg", "alt": "Back", "contentType": "IMAGE"},
    ]
    p = product_set(emulator, {"title": "Poster", "files": files})
    first = media_of(emulator, p["id"])
    assert [(n["alt"], n["status"], n["image"]) for n in first] == [
        ("Front", "UPLOADED", None),
        ("Back", "UPLOADED", None),
    ]
    ready = wait_for(emulator, p["id"], {"READY"})
    assert [n["status"] for n in ready] == ["READY", "READY"]
    assert (
        ready[0]["image"]["url"].split("?")[0].endswith("/front.jpg")
        and ready[0]["image"]["altText"] == "Front"
    )
    assert ready[0]["mediaContentType"] == "IMAGE" and ready[0]["preview"]["status"] == "READY"
    ids = [n["id"] for n in ready]
    # by id the files are kept; the same URLs again are new media (the product's old ones go)
    kept = product_set(
        emulator, {"files": [{"id": ids[1]}, {"id": ids[0], "alt": "Front side"}]}, {"id": p["id"]}
    )
    assert [n["id"] for n in kept["media"]["nodes"]] == [ids[1], ids[0]]
    again = product_set(emulator, {"files": files}, {"id": p["id"]})
    assert len(again["media"]["nodes"]) == 2 and not {n["id"] for n in again["media"]["nodes"]} & set(ids)
    new_ids = [n["id"] for n in wait_for(emulator, p["id"], {"READY"})]
    moved = gql(
        emulator,
        PARENT,
        """mutation($id: ID!, $m: [MoveInput!]!) { productReorderMedia(id: $id, moves: $m) {
      job { done } mediaUserErrors { code } } }""",
        {"id": p["id"], "m": [{"id": new_ids[1], "newPosition": "0"}]},
    )
    assert moved["productReorderMedia"] == {"job": {"done": True}, "mediaUserErrors": []}
    assert [n["id"] for n in media_of(emulator, p["id"])] == [new_ids[1], new_ids[0]]
    removed = gql(
        emulator,
        PARENT,
        """mutation($f: [FileUpdateInput!]!) { fileUpdate(files: $f) { userErrors { code } } }""",
        {"f": [{"id": new_ids[1], "referencesToRemove": [p["id"]]}]},
    )
    assert removed["fileUpdate"]["userErrors"] == [] and [n["id"] for n in media_of(emulator, p["id"])] == [
        new_ids[0]
    ]
    # products/update follows each media change; delivery order is not promised, so look for the
    # one announcing the gallery as it ends (READY images only, in order, on the store's CDN)
    deadline = time.monotonic() + 5
    while not any(
        [i["alt"] for i in u["images"]] == ["Front"] and len(u["media"]) == 1
        for u in hooks(rx, "products/update", 1)
    ):
        assert time.monotonic() < deadline, "no products/update with the final gallery"
        time.sleep(0.02)
    # an unreachable source fails with a download error; the product's other media are fine
    broken = product_set(
        emulator,
        {"title": "Broken", "files": [files[0], {"originalSource": "https://img.example.com/broken.jpg"}]},
    )
    done = wait_for(emulator, broken["id"], {"READY", "FAILED"})
    assert [(n["status"], n["mediaErrors"]) for n in done] == [
        ("READY", []),
        ("FAILED", [{"code": "IMAGE_DOWNLOAD_FAILURE"}]),
    ]
    assert done[1]["mediaWarnings"] == [] and done[1]["image"] is None


def test_archived_status_and_deletion(emulator, rx):
    for topic in ("PRODUCTS_UPDATE", "PRODUCTS_DELETE", "INVENTORY_ITEMS_DELETE"):
        emulator.subscribe(PARENT, topic, rx.url("/hooks"))
    p = product_set(emulator, {"title": "Old"})
    product_set(emulator, {"status": "ARCHIVED"}, {"id": p["id"]})
    assert hooks(rx, "products/update", 1)[0]["status"] == "archived"
    archived = gql(
        emulator, PARENT, 'query { products(first: 5, query: "status:archived") { nodes { id status } } }'
    )
    assert archived["products"]["nodes"] == [{"id": p["id"], "status": "ARCHIVED"}]
    out = gql(
        emulator,
        PARENT,
        "mutation($id: ID!) { productDelete(input: {id: $id}) { deletedProductId } }",
        {"id": p["id"]},
    )
    assert out["productDelete"]["deletedProductId"] == p["id"]
    assert hooks(rx, "products/delete", 1)[0]["id"] == int(p["id"].rsplit("/", 1)[1])
    assert hooks(rx, "inventory_items/delete", 1)[0]["admin_graphql_api_id"].startswith(
        "gid://shopify/InventoryItem/"
    )
    assert (
        gql(emulator, PARENT, "query($id: ID!) { product(id: $id) { id } }", {"id": p["id"]})["product"]
        is None
    )


def test_publishing_needs_write_publications(emulator):
    made = product_set(emulator, {"title": "Copy"})["id"]
    online = gql(emulator, PARENT, "{ publications(first: 1) { nodes { id } } }")["publications"]["nodes"][0][
        "id"
    ]
    emulator.configure_app(PARENT, scopes=["read_products", "write_products"])
    body = emulator.graphql(
        PARENT,
        """mutation($id: ID!, $p: ID!) { publishablePublish(id: $id, input: [{publicationId: $p}]) {
        userErrors { message } } }""",
        {"id": made, "p": online},
    )
    assert body["data"] == {"publishablePublish": None}
    assert body["errors"][0]["extensions"]["requiredAccess"] == "`write_publications` access scope."
