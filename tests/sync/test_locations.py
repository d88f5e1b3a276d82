"""The location map proposed by name, and what is wrong with a configured one (domain rules of
`storesync network locations`)."""

from __future__ import annotations

from storesync.sync.domain.locations import StoreLocation, mapping_problems, propose_mapping

P = "parent.myshopify.com"
C = "child.myshopify.com"


def loc(n: int, name: str, active: bool = True) -> StoreLocation:
    return StoreLocation(f"gid://shopify/Location/{n}", name, active)


def test_equal_names_are_paired_ignoring_case_and_spaces_and_nothing_else_is_guessed() -> None:
    parent = [loc(1, "Shop"), loc(2, "Warehouse"), loc(3, "Outlet"), loc(4, "Old depot", active=False)]
    child = [
        loc(11, "  shop "),
        loc(12, "WAREHOUSE"),
        loc(13, "Outlet"),
        loc(14, "outlet"),
        loc(15, "Pop-up"),
    ]
    proposal = propose_mapping(parent, C, child)
    assert proposal.pairs == {
        "gid://shopify/Location/1": "gid://shopify/Location/11",
        "gid://shopify/Location/2": "gid://shopify/Location/12",
    }
    assert proposal.notes == [
        f"{C} has 2 locations named 'Outlet': pick one",
        "parent location 'Old depot' is deactivated: not mapped",
        f"{C} location 'Outlet' mirrors no parent location (its stock is not synced)",
        f"{C} location 'outlet' mirrors no parent location (its stock is not synced)",
        f"{C} location 'Pop-up' mirrors no parent location (its stock is not synced)",
    ]
    names = {x.id: x.name for x in parent + child}
    assert proposal.toml(names)[-1] == (
        'location_map = { "gid://shopify/Location/1" = "gid://shopify/Location/11", '
        '"gid://shopify/Location/2" = "gid://shopify/Location/12" }'
    )


def test_an_inactive_child_location_is_never_proposed() -> None:
    proposal = propose_mapping([loc(1, "Shop")], C, [loc(11, "Shop", active=False)])
    assert proposal.pairs == {} and proposal.notes == [f"{C} has no active location named 'Shop'"]


def test_mapped_locations_gone_or_deactivated_are_problems_once_each_unread_stores_are_not_judged() -> None:
    maps = {
        C: {
            "gid://shopify/Location/1": "gid://shopify/Location/11",
            "gid://shopify/Location/2": "gid://shopify/Location/99",
        },
        "unread.myshopify.com": {"gid://shopify/Location/1": "gid://shopify/Location/77"},
    }
    locations = {P: [loc(1, "Shop", active=False), loc(2, "Warehouse")], C: [loc(11, "Shop")]}
    problems = mapping_problems(P, maps, locations)
    assert [(p.shop, p.location_id, p.problem) for p in problems] == [
        (P, "gid://shopify/Location/1", "inactive"),
        (C, "gid://shopify/Location/99", "gone"),
    ]
    assert problems[1].describe() == f"{C}: mapped location gid://shopify/Location/99 no longer exists"
