"""`ShopifyCollections`, the collection port over the Admin client, against the emulator: what
`sync_collection_to_child` relies on (reads with members, lookup by handle, create, update,
delete of one already gone)."""

from __future__ import annotations

import pytest

from storesync.sync.adapters.shopify import ShopifyCollections
from storesync.sync.domain.collections import collection_input, collection_view
from storesync.sync.domain.model import Collection, Image
from tests.commerce.test_client_emulator import SHOP, client_for, running_emulator


@pytest.fixture
def emu():
    with running_emulator(stores=[SHOP]) as handle:
        yield handle


async def test_collections_round_trip_through_the_admin_api(emu):
    emu.seed(SHOP, products=3)
    async with client_for(emu) as client:
        store = ShopifyCollections(client)
        wanted = Collection(
            None,
            "outerwear",
            "Outerwear",
            "<p>coats</p>",
            "ALPHA_ASC",
            "Outer",
            "Coats",
            Image("https://example.com/images/coats.jpg", "Coats"),
        )
        created = await store.create_collection(collection_input(wanted))
        assert created.id and created.handle == "outerwear"
        read = await store.read_collection(created.id)
        assert (
            collection_view(read) == collection_view(wanted)
            and read.conditions is None
            and read.product_ids is None
        )
        assert read.image.source.startswith("https://cdn.shopify.com/")  # served from the store's own CDN
        assert (await store.find_collection_by_handle("outerwear")).id == created.id
        assert await store.find_collection_by_handle("outer") is None  # exact handles only

        products = [p["admin_graphql_api_id"] for p in emu.snapshot(SHOP)["products"]]
        source = (await store.read_collection(created.id)).source_id
        res = emu.graphql(
            SHOP,
            "mutation($c: CollectionUpdateInput!) { collectionUpdate(collection: $c) { userErrors { message } } }",
            {
                "c": {
                    "id": created.id,
                    "sourcesToUpdate": [
                        {
                            "condition": {
                                "id": source,
                                "inclusion": {"selectionsToAdd": [{"productId": p} for p in products[:2]]},
                            }
                        }
                    ],
                }
            },
        )
        assert res["data"]["collectionUpdate"]["userErrors"] == []
        assert (await store.read_collection(created.id, with_products=True)).product_ids == tuple(
            products[:2]
        )

        await store.update_collection(
            created.id, {**collection_input(wanted), "title": "Coats", "image": None}
        )
        updated = await store.read_collection(created.id)
        assert updated.title == "Coats" and updated.image is None
        await store.delete_collection(created.id)
        assert await store.read_collection(created.id) is None
        await store.delete_collection(created.id)  # already gone: not an error
