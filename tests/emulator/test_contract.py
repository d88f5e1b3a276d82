"""The emulator's SDL is a strict subset of Shopify's Admin API 2026-10 (Shopify's own
introspection schema, `tests/support/shopify_schema.py`), with no allowlist, uses nothing 2026-10
deprecates beyond the older uses listed, and every GraphQL
document the engine sends validates against it.
"""

from __future__ import annotations

from functools import cache

import pytest
from graphql import (
    GraphQLEnumType,
    GraphQLInputObjectType,
    GraphQLInterfaceType,
    GraphQLObjectType,
    GraphQLScalarType,
    GraphQLSchema,
    GraphQLUnionType,
    build_schema,
    parse,
    validate,
)

from storesync.commerce.operations import all_operations
from storesync.emulator.resolvers import load_sdl
from tests.support.shopify_schema import admin_schema

# Fields, arguments and enum values the emulator serves although 2026-10 deprecates them, because
# the engine still uses them (README: "Deprecated in 2026-10 and still used by the engine
# today"). Anything added to the SDL must not be deprecated: this list only shrinks.
DEPRECATED_IN_USE = {
    "field Collection.ruleSet",
    "field InventoryItem.variant",
    "arg Mutation.collectionCreate(input)",
    "arg Mutation.collectionUpdate(input)",
    "field Mutation.collectionAddProducts",
    "field Mutation.collectionRemoveProducts",
    "field ProductSetInput.id",
    "arg QueryRoot.webhookSubscriptions(callbackUrl)",
    "field QueryRoot.currentBulkOperation",
    "field ShopPlan.displayName",
    "field WebhookSubscription.endpoint",
    "field WebhookSubscription.callbackUrl",
    "field WebhookSubscriptionInput.callbackUrl",
}


def reference_schema() -> GraphQLSchema:
    return admin_schema()


BUILTIN_DIRECTIVES = {"include", "skip", "deprecated", "specifiedBy", "oneOf"}


@cache
def emulator_schema() -> GraphQLSchema:
    return build_schema(load_sdl())


def differences(ours: GraphQLSchema, real: GraphQLSchema) -> list[str]:
    """Every type, field, argument, input field, enum value or directive of `ours` that is
    missing from `real`, has another type there, or is deprecated in one and not the other (the
    emulator marks what 2026-10 deprecates, so its own checks can see deprecated uses)."""
    found: list[str] = []

    def deprecation(what: str, mine, theirs) -> None:
        if bool(mine.deprecation_reason) != bool(theirs.deprecation_reason):
            found.append(f"deprecation {what}: {mine.deprecation_reason!r} vs {theirs.deprecation_reason!r}")

    for name, t in ours.type_map.items():
        if name.startswith("__"):
            continue
        r = real.get_type(name)
        if name in ("QueryRoot", "Mutation"):
            r = real.query_type if name == "QueryRoot" else real.mutation_type
        if r is None:
            found.append(f"type {name}")
            continue
        if type(t) is not type(r):
            found.append(f"kind {name}: {type(t).__name__} vs {type(r).__name__}")
            continue
        if isinstance(t, GraphQLEnumType):
            found += [f"enum {name}.{v}" for v in t.values if v not in r.values]
            for v, value in t.values.items():
                if v in r.values:
                    deprecation(f"{name}.{v}", value, r.values[v])
        elif isinstance(t, GraphQLUnionType):
            real_members = {m.name for m in r.types}
            found += [f"union {name} member {m.name}" for m in t.types if m.name not in real_members]
        elif isinstance(t, (GraphQLObjectType, GraphQLInterfaceType, GraphQLInputObjectType)):
            for fname, f in t.fields.items():
                rf = r.fields.get(fname)
                if rf is None:
                    found.append(f"field {name}.{fname}")
                    continue
                if str(f.type) != str(rf.type):
                    found.append(f"field type {name}.{fname}: {f.type} vs {rf.type}")
                deprecation(f"{name}.{fname}", f, rf)
                for aname, a in getattr(f, "args", {}).items():
                    ra = rf.args.get(aname)
                    if ra is None:
                        found.append(f"arg {name}.{fname}({aname})")
                    elif str(a.type) != str(ra.type):
                        found.append(f"arg type {name}.{fname}({aname}): {a.type} vs {ra.type}")
                    else:
                        deprecation(f"{name}.{fname}({aname})", a, ra)
            if not isinstance(t, GraphQLInputObjectType):
                real_ifaces = {i.name for i in r.interfaces}
                found += [
                    f"interface {name} implements {i.name}" for i in t.interfaces if i.name not in real_ifaces
                ]
        elif not isinstance(t, GraphQLScalarType):
            found.append(f"unchecked kind {name}")
    real_directives = {d.name for d in real.directives}
    found += [
        f"directive @{d.name}"
        for d in ours.directives
        if d.name not in BUILTIN_DIRECTIVES and d.name not in real_directives
    ]
    return found


def deprecated_uses(ours: GraphQLSchema, real: GraphQLSchema) -> set[str]:
    """Every field, argument, input field and enum value of `ours` that `real` deprecates."""
    found: set[str] = set()
    for name, t in ours.type_map.items():
        if name.startswith("__"):
            continue
        r = (
            real.query_type
            if name == "QueryRoot"
            else real.mutation_type
            if name == "Mutation"
            else real.get_type(name)
        )
        if r is None or type(t) is not type(r):
            continue
        if isinstance(t, GraphQLEnumType):
            found |= {
                f"enum {name}.{v}" for v in t.values if v in r.values and r.values[v].deprecation_reason
            }
        elif hasattr(t, "fields"):
            for fname, f in t.fields.items():
                rf = r.fields.get(fname)
                if rf is None:
                    continue
                if rf.deprecation_reason:
                    found.add(f"field {name}.{fname}")
                for aname in getattr(f, "args", {}):
                    ra = rf.args.get(aname)
                    if ra is not None and ra.deprecation_reason:
                        found.add(f"arg {name}.{fname}({aname})")
    return found


def test_emulator_sdl_is_a_subset_of_the_real_admin_api():
    extra = differences(emulator_schema(), reference_schema())
    assert extra == [], "not in Shopify's 2026-10 schema:\n" + "\n".join(extra)


def test_emulator_sdl_adds_nothing_deprecated_in_2026_10():
    used = deprecated_uses(emulator_schema(), reference_schema())
    assert sorted(used - DEPRECATED_IN_USE) == [], "deprecated in 2026-10: use the replacement"
    assert used >= DEPRECATED_IN_USE, (
        f"no longer used, drop from the list: {sorted(DEPRECATED_IN_USE - used)}"
    )


def test_deprecation_check_catches_a_deprecated_field():
    sdl = load_sdl().replace(
        "  mediaCount: Count\n", "  mediaCount: Count\n  images(first: Int): ImageConnection!\n", 1
    )
    sdl += "\ntype ImageConnection {\n  nodes: [Image!]!\n}\n"
    assert "field Product.images" in deprecated_uses(build_schema(sdl), reference_schema())


def test_contract_check_catches_a_wrong_type_and_an_invented_field():
    sdl = load_sdl().replace(
        "  title: String!\n  handle: String!", "  title: String\n  handle: String!\n  madeUp: Int", 1
    )
    assert sdl != load_sdl()
    found = differences(build_schema(sdl), reference_schema())
    assert any(d.startswith("field type Product.title") for d in found)
    assert "field Product.madeUp" in found


@pytest.mark.parametrize(
    "op", sorted(all_operations().values(), key=lambda op: op.stem), ids=lambda op: f"{op.stem}.graphql"
)
def test_every_engine_operation_validates_against_the_emulator_schema(op):
    # The text as the client sends it: the operation and the shared fragments it spreads.
    errors = validate(emulator_schema(), parse(op.text))
    assert not errors, f"{op.stem}.graphql: " + "; ".join(e.message for e in errors)


def test_the_emulators_access_scopes_are_shopifys_for_everything_it_serves():
    """emulator/scopes.py holds, for every type and field of the emulator's SDL, exactly the
    scopes Shopify publishes for it (the `offline_scopes` shipped with the 2026-10 schema)."""
    from storesync.emulator.scopes import FIELD_ACCESS, TYPE_ACCESS
    from tests.support.shopify_schema import offline_scopes

    published_types, published_fields = {}, {}
    for item in offline_scopes():
        if item["offlineScopes"]:
            if item["type"] == "type":
                published_types[item["typeName"]] = frozenset(item["offlineScopes"])
            else:
                published_fields[(item["typeName"], item["fieldName"])] = frozenset(item["offlineScopes"])
    ours = emulator_schema()
    served_types = {n for n in ours.type_map if not n.startswith("__")}
    served_fields = {
        (name, f)
        for name, t in ours.type_map.items()
        if isinstance(t, (GraphQLObjectType, GraphQLInterfaceType))
        for f in t.fields
    }
    assert {n: s for n, s in published_types.items() if n in served_types} == TYPE_ACCESS
    assert {k: s for k, s in published_fields.items() if k in served_fields} == FIELD_ACCESS
