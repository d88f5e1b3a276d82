"""`collection_sync.CollectionStore` over the commerce client (a real store or the emulator):
conversions between the Admin API's JSON and `model.Collection`, nothing else. Commerce errors
keep their retryable/permanent class; a collection already gone reads as None and deletes as done."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

from storesync.commerce.client import AdminClient
from storesync.commerce.errors import NotFoundError, UserInputError
from storesync.sync.model import Collection, CollectionCondition, Image

MEMBERS_FIRST = 250  # members read with the collection; the rest is paged


_CONDITION_TYPE = "CollectionSourceInclusionCondition"


def condition_from_json(raw: Mapping[str, Any]) -> CollectionCondition:
    """A condition as `CollectionSyncFields` reads it; its kind from its type name
    (CollectionSourceInclusionConditionProductTag -> productTag), its relation and value under
    the kind's aliases (`productTagRelation`, `variantPriceValue`)."""
    suffix = str(raw.get("__typename", "")).removeprefix(_CONDITION_TYPE)
    kind = suffix[:1].lower() + suffix[1:]
    value = raw.get(f"{kind}Value")
    if "values" in raw:
        values = tuple(str(v) for v in raw.get("values") or ())
    elif isinstance(value, Mapping):  # MoneyV2
        values = (str(value["amount"]),)
    else:
        values = () if value is None else (str(value),)
    return CollectionCondition(
        kind=kind,
        relation=str(raw.get(f"{kind}Relation") or ""),
        values=values,
        match_type=raw.get("matchType"),
        currency=value.get("currencyCode") if isinstance(value, Mapping) else None,
    )


def conditions_source(raw: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The collection's conditions source that has conditions (a smart collection), if any."""
    for source in raw.get("sources") or ():
        if source.get("__typename") == "CollectionConditionsSource" and (source.get("inclusion") or {}).get(
            "conditions"
        ):
            return source
    return None


def _first_source(raw: Mapping[str, Any]) -> Mapping[str, Any] | None:
    return next(iter(raw.get("sources") or ()), None)


def collection_from_json(raw: Mapping[str, Any], product_ids: list[str] | None = None) -> Collection:
    seo = raw.get("seo") or {}
    source = conditions_source(raw)
    inclusion = (source or {}).get("inclusion") or {}
    image = raw.get("image")
    return Collection(
        id=raw["id"],
        handle=raw["handle"],
        title=raw.get("title") or "",
        description_html=raw.get("descriptionHtml") or "",
        sort_order=raw.get("sortOrder") or "MANUAL",
        seo_title=seo.get("title"),
        seo_description=seo.get("description"),
        conditions=None
        if source is None
        else tuple(condition_from_json(c) for c in inclusion.get("conditions") or ()),
        disjunctive=inclusion.get("matchType") == "ANY",
        source_id=(source or _first_source(raw) or {}).get("id"),
        image=Image(image["url"], image.get("altText") or "") if image else None,
        product_ids=None if product_ids is None else tuple(product_ids),
    )


def _gone(err: UserInputError) -> bool:
    return isinstance(err, NotFoundError) or any(
        "does not exist" in e.message.lower() for e in err.user_errors
    )


class ShopifyCollections:
    """One store's collections, through `client` (its budget, retries and typed errors)."""

    def __init__(self, client: AdminClient) -> None:
        self.client = client
        self.shop = client.shop

    async def read_collection(self, collection_id: str, *, with_products: bool = False) -> Collection | None:
        result = await self.client.execute(
            "CollectionById",
            {"id": collection_id, "withProducts": with_products, "productsFirst": MEMBERS_FIRST},
        )
        raw = result["collection"]
        if raw is None:
            return None
        members = None
        if with_products:
            conn = raw["products"]
            members = [n["id"] for n in conn["nodes"]]
            info = conn.get("pageInfo") or {}
            if info.get("hasNextPage"):
                async for page in self.client.pages(
                    "CollectionProductsPage",
                    {"id": collection_id},
                    connection="collection.products",
                    page_size=MEMBERS_FIRST,
                    after=info.get("endCursor"),
                ):
                    members += [n["id"] for n in page.nodes]
        return collection_from_json(raw, members)

    async def all_collections(self) -> AsyncIterator[Collection]:
        """Every collection of the store, without members (reconciliation)."""
        async for node in self.client.nodes("CollectionsPage", {}, connection="collections", page_size=100):
            yield collection_from_json(node)

    async def find_collection_by_handle(self, handle: str) -> Collection | None:
        result = await self.client.execute("CollectionsByHandle", {"query": f"handle:'{handle}'"})
        return next(
            (collection_from_json(n) for n in result["collections"]["nodes"] if n["handle"] == handle), None
        )

    async def create_collection(self, input: dict[str, Any]) -> Collection:
        result = await self.client.execute("CollectionCreate", {"collection": input})
        return self._written(result["collectionCreate"]["collection"], input)

    async def update_collection(self, collection_id: str, input: dict[str, Any]) -> Collection:
        result = await self.client.execute("CollectionUpdate", {"collection": {**input, "id": collection_id}})
        return self._written(result["collectionUpdate"]["collection"], input)

    async def delete_collection(self, collection_id: str) -> None:
        try:
            await self.client.execute("CollectionDelete", {"id": collection_id})
        except UserInputError as err:
            if not _gone(err):
                raise

    @staticmethod
    def _written(raw: Mapping[str, Any], input: Mapping[str, Any]) -> Collection:
        """The collection as written: its id and handle from the answer, the rest from the input."""
        seo = input.get("seo") or {}
        return Collection(
            id=raw["id"],
            handle=raw["handle"],
            title=input.get("title") or "",
            description_html=input.get("descriptionHtml") or "",
            sort_order=input.get("sortOrder") or "MANUAL",
            seo_title=seo.get("title"),
            seo_description=seo.get("description"),
        )
