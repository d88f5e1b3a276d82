"""Collection objects end to end (emulator over HTTP, web tier, worker processes, real Postgres):
a parent collection created, renamed or deleted reaches every child; a child's edit of a synced
collection is reverted without an echo loop; a child's own collection is never touched.
"""

from __future__ import annotations

import pytest

from storesync.demo.harness import running_system
from tests.e2e.helpers import WAIT, sql
from tests.e2e.helpers import settle as _settle

pytestmark = pytest.mark.timeout(180)


CREATE = """mutation($input: CollectionInput!) { collectionCreate(input: $input) {
  collection { id handle } userErrors { field message } } }"""
UPDATE = """mutation($input: CollectionInput!) { collectionUpdate(input: $input) {
  collection { id } userErrors { field message } } }"""
DELETE = """mutation($id: ID!) { collectionDelete(input: {id: $id}) { deletedCollectionId userErrors { message } } }"""


@pytest.fixture(scope="module")
def system(module_layout):
    with running_system(
        module_layout.database_url,
        direct_url=module_layout.direct_url,
        children=2,
        products=4,
        workers=2,
        collections=2,
        subscribe="cli",
        plan="plus",
        extra_env={"STORESYNC_SYNC_RECONCILE_EVERY_S": "3600"},
    ) as system:
        system.cli("backfill", check=True)
        yield system


def settle(system) -> None:
    """Every delivery handled and no job left, delayed ones included (the child debounce)."""
    _settle(system, delayed_too=True)


def mutate(system, shop: str, query: str, variables: dict, field: str) -> dict:
    res = system.graphql(shop, query, variables)
    data = (res.get("data") or {}).get(field) or {}
    assert not res.get("errors") and not data.get("userErrors"), res
    return data


def collection(system, shop: str, handle: str) -> dict | None:
    return next((c for c in system.snapshot(shop)["collections"] if c["handle"] == handle), None)


def member_handles(system, shop: str, collection_gid: str) -> set[str]:
    return {
        p["handle"]
        for p in system.snapshot(shop)["products"]
        if collection_gid in (p.get("collections") or [])
    }


def writes(system, shop: str, collection_gid: str) -> int:
    return sql(
        system,
        "SELECT count(*) FROM sync_audit WHERE shop = %(s)s AND object_id = %(o)s "
        "AND action LIKE 'collection_%%'",
        {"s": shop, "o": collection_gid},
    )[0][0]


def test_a_parent_collection_created_renamed_and_deleted_follows_in_every_child(system) -> None:
    p1 = system.product_by_handle(system.parent, "demo-product-1")["admin_graphql_api_id"]
    mutate(
        system,
        system.parent,
        CREATE,
        {
            "input": {
                "title": "Rain gear",
                "handle": "rain-gear",
                "descriptionHtml": "<p>Stay dry</p>",
                "sortOrder": "ALPHA_ASC",
                "seo": {"title": "Rain", "description": "Jackets for the rain"},
                "products": [p1],
                "image": {"src": "https://images.example.com/rain-gear.jpg", "altText": "Rain gear"},
            }
        },
        "collectionCreate",
    )
    system.wait_until(
        lambda: all(collection(system, c, "rain-gear") for c in system.children),
        WAIT,
        message="every child has the collection",
    )
    for child in system.children:
        copy = collection(system, child, "rain-gear")
        assert (copy["title"], copy["body_html"], copy["sort_order"]) == (
            "Rain gear",
            "<p>Stay dry</p>",
            "alpha-asc",
        )
        assert copy["image"]["alt"] == "Rain gear" and copy["image"]["src"].split("?")[0].endswith(
            "/rain-gear.jpg"
        )
        # the member's copy joins it (through its product job)
        system.wait_until(
            lambda c=child, g=copy["admin_graphql_api_id"]: (
                member_handles(system, c, g) == {"demo-product-1"}
            ),
            WAIT,
            message="the member's copy joined",
        )
    links = sql(
        system,
        "SELECT child_shop, matched_by FROM sync_links WHERE kind = 'collection' AND parent_id = "
        "%(p)s ORDER BY child_shop",
        {"p": collection(system, system.parent, "rain-gear")["admin_graphql_api_id"]},
    )
    assert links == [(c, "created") for c in sorted(system.children)]

    parent_gid = collection(system, system.parent, "rain-gear")["admin_graphql_api_id"]
    mutate(
        system,
        system.parent,
        UPDATE,
        {"input": {"id": parent_gid, "title": "Rain and wind"}},
        "collectionUpdate",
    )
    system.wait_until(
        lambda: all(collection(system, c, "rain-gear")["title"] == "Rain and wind" for c in system.children),
        WAIT,
        message="every child renamed",
    )
    settle(system)
    # one create and one update per child: the children's collections/update for our own
    # writes (echoes) wrote nothing
    for child in system.children:
        assert writes(system, child, collection(system, child, "rain-gear")["admin_graphql_api_id"]) == 2

    mutate(system, system.parent, DELETE, {"id": parent_gid}, "collectionDelete")
    system.wait_until(
        lambda: all(collection(system, c, "rain-gear") is None for c in system.children),
        WAIT,
        message="deleted in every child",
    )
    # the link goes right after the child's collection (a crash in between deletes it again)
    system.wait_until(
        lambda: (
            sql(system, "SELECT count(*) FROM sync_links WHERE parent_id = %(p)s", {"p": parent_gid})
            == [(0,)]
        ),
        WAIT,
        message="links forgotten",
    )


def test_a_child_rename_of_a_synced_collection_is_reverted_once_and_child_only_collections_survive(
    system,
) -> None:
    child, sibling = system.children
    synced = collection(system, system.parent, "outerwear") or collection(
        system, system.parent, "new-arrivals"
    )
    handle = synced["handle"]
    # The parent describes it: every child's copy is written, and its link records what was
    # written (the backfill created the copies before collections were synced objects).
    mutate(
        system,
        system.parent,
        UPDATE,
        {"input": {"id": synced["admin_graphql_api_id"], "descriptionHtml": "<p>Coats</p>"}},
        "collectionUpdate",
    )
    system.wait_until(
        lambda: all(collection(system, c, handle)["body_html"] == "<p>Coats</p>" for c in system.children),
        WAIT,
        message="description everywhere",
    )
    settle(system)
    copy = collection(system, child, handle)
    own = mutate(
        system,
        child,
        CREATE,
        {"input": {"title": "Child picks", "handle": "child-picks"}},
        "collectionCreate",
    )["collection"]
    settle(system)
    before = writes(system, child, copy["admin_graphql_api_id"])
    mutate(
        system,
        child,
        UPDATE,
        {"input": {"id": copy["admin_graphql_api_id"], "title": "Renamed in the child"}},
        "collectionUpdate",
    )
    mutate(
        system,
        child,
        UPDATE,
        {"input": {"id": own["id"], "title": "Child picks, edited"}},
        "collectionUpdate",
    )
    system.wait_until(
        lambda: collection(system, child, handle)["title"] == synced["title"],
        WAIT,
        message="child rename reverted",
    )
    settle(system)
    assert (
        writes(system, child, copy["admin_graphql_api_id"]) == before + 1
    )  # the revert, and no echo after it
    reverted = sql(
        system,
        "SELECT before, after FROM sync_audit WHERE shop = %(s)s AND action = 'revert_child_edit' "
        "AND object_id = %(o)s",
        {"s": child, "o": copy["admin_graphql_api_id"]},
    )
    assert reverted == [("Renamed in the child", synced["title"])]
    # the child's own collection: not synced, not reverted, not created in the sibling
    assert collection(system, child, "child-picks")["title"] == "Child picks, edited"
    assert collection(system, sibling, "child-picks") is None
    assert writes(system, child, own["id"]) == 0

    # a parent delete removes the linked copy only
    mutate(system, system.parent, DELETE, {"id": synced["admin_graphql_api_id"]}, "collectionDelete")
    system.wait_until(lambda: collection(system, child, handle) is None, WAIT, message="linked copy deleted")
    assert collection(system, child, "child-picks") is not None


def test_a_collection_change_whose_webhooks_were_lost_is_repaired_by_reconciliation(system) -> None:
    synced = collection(system, system.parent, "new-arrivals") or collection(
        system, system.parent, "outerwear"
    )
    settle(system)
    system.set_faults(webhooks={"drop_p": 1.0})
    try:
        mutate(
            system,
            system.parent,
            UPDATE,
            {"input": {"id": synced["admin_graphql_api_id"], "title": "Renamed while webhooks were lost"}},
            "collectionUpdate",
        )
        system.drain_webhooks(WAIT)
    finally:
        system.set_faults()
    settle(system)
    assert all(
        collection(system, c, synced["handle"])["title"] != "Renamed while webhooks were lost"
        for c in system.children
    )
    done = system.cli("reconcile", timeout=120)
    out = " ".join(done.stdout.split())
    assert done.returncode == 0 and "sync_collection" in out and "Renamed while webhooks were lost" in out, (
        out
    )
    assert all(
        collection(system, c, synced["handle"])["title"] == "Renamed while webhooks were lost"
        for c in system.children
    )
    again = system.cli("reconcile", timeout=120)
    assert "0 fixed" in " ".join(again.stdout.split()), again.stdout


def test_a_parent_smart_collection_reaches_every_child_with_its_rules_and_fills_by_them(system) -> None:
    rules = {
        "appliedDisjunctively": False,
        "rules": [{"column": "TAG", "relation": "EQUALS", "condition": "winter"}],
    }
    mutate(
        system,
        system.parent,
        CREATE,
        {"input": {"title": "Winter picks", "handle": "winter-picks", "ruleSet": rules}},
        "collectionCreate",
    )
    read = """query($q: String!) { collections(first: 1, query: $q) { nodes { id
      ruleSet { appliedDisjunctively rules { column relation condition } } products(first: 50) { nodes { handle } } } } }"""

    def smart(shop: str) -> dict | None:
        nodes = system.graphql(shop, read, {"q": "handle:'winter-picks'"})["data"]["collections"]["nodes"]
        return nodes[0] if nodes else None

    system.wait_until(lambda: all(smart(c) for c in system.children), WAIT, message="every child has it")
    parent = smart(system.parent)
    assert parent["products"]["nodes"], "the demo catalog has winter products"
    for child in system.children:
        copy = smart(child)
        assert copy["ruleSet"] == rules
        # its members are the child's own copies that match the rule (every parent product is copied)
        assert sorted(n["handle"] for n in copy["products"]["nodes"]) == sorted(
            n["handle"] for n in parent["products"]["nodes"]
        )
    settle(system)
    assert not sql(system, "SELECT kind, errors FROM jobs WHERE state = 'dead'")


def test_a_childs_own_smart_collection_keeps_its_members_through_parent_edits(system) -> None:
    """A child's own smart collection holds copies by its rules; product jobs must not list it in
    productSet (Shopify refuses manual members in a smart collection) nor drop the product from it."""
    child = system.children[1]
    rules = {
        "appliedDisjunctively": False,
        "rules": [{"column": "TAG", "relation": "EQUALS", "condition": "winter"}],
    }
    mine = mutate(
        system,
        child,
        CREATE,
        {"input": {"title": "Our winter", "handle": "our-winter", "ruleSet": rules}},
        "collectionCreate",
    )["collection"]["id"]
    read = """query($id: ID!) { collection(id: $id) { products(first: 50) { nodes { handle } } } }"""
    members = [
        n["handle"]
        for n in system.graphql(child, read, {"id": mine})["data"]["collection"]["products"]["nodes"]
    ]
    assert members, "the demo catalog has winter products"
    handle = members[0]
    settle(system)
    system.edit_parent_product(handle, title="Renamed with a child smart collection")
    system.wait_until(
        lambda: system.product_by_handle(child, handle)["title"] == "Renamed with a child smart collection",
        WAIT,
        message="the child's copy renamed",
    )
    settle(system)
    assert not sql(system, "SELECT kind, errors FROM jobs WHERE state = 'dead'")
    after = [
        n["handle"]
        for n in system.graphql(child, read, {"id": mine})["data"]["collection"]["products"]["nodes"]
    ]
    assert handle in after
    assert collection(system, child, "our-winter") is not None  # child-only: never deleted or renamed
