"""The emulator's SDL is a faithful subset of Shopify's Admin API (2025-01 introspection), and
every GraphQL document the engine sends validates against it.

Post-2025-01 changes the engine targets are the only differences, listed in ALLOWLIST.
"""

from __future__ import annotations

import gzip
import json
from functools import cache
from pathlib import Path

import pytest
from graphql import (
    GraphQLEnumType,
    GraphQLInputObjectType,
    GraphQLInterfaceType,
    GraphQLObjectType,
    GraphQLScalarType,
    GraphQLSchema,
    GraphQLUnionType,
    build_client_schema,
    build_schema,
    parse,
    validate,
)

from storesync.commerce.operations import all_operations
from storesync.emulator.resolvers import load_sdl

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = Path("/work/shared/shopify/admin_schema_2025-01.json.gz")

# Post-2025-01 API changes (see /work/shared/shopify/README.md); nothing else may differ.
ALLOWLIST = {
    "type ProductSetIdentifiers",  # 2025-04
    "arg Mutation.productSet(identifier)",  # 2025-04
    "field InventoryQuantityInput.changeFromQuantity",  # 2026-01/04
    "field InventoryChangeInput.changeFromQuantity",  # 2026-01/04
    "enum InventorySetQuantitiesUserErrorCode.CHANGE_FROM_QUANTITY_STALE",  # 2026-01/04
    "enum InventoryAdjustQuantitiesUserErrorCode.CHANGE_FROM_QUANTITY_STALE",  # 2026-01/04
    "directive @idempotent",  # 2026-04
}
BUILTIN_DIRECTIVES = {"include", "skip", "deprecated", "specifiedBy", "oneOf"}


@cache
def reference_schema() -> GraphQLSchema:
    data = json.loads(gzip.decompress(REFERENCE.read_bytes()))
    schema = build_client_schema(data.get("data", data))
    schema._validation_errors = []  # Shopify's schema breaks one of graphql-core's own rules
    return schema


@cache
def emulator_schema() -> GraphQLSchema:
    return build_schema(load_sdl())


def differences(ours: GraphQLSchema, real: GraphQLSchema) -> list[str]:
    """Every type, field, argument, input field, enum value or directive of `ours` that is
    missing from `real` or has another type there."""
    found: list[str] = []
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
                for aname, a in getattr(f, "args", {}).items():
                    ra = rf.args.get(aname)
                    if ra is None:
                        found.append(f"arg {name}.{fname}({aname})")
                    elif str(a.type) != str(ra.type):
                        found.append(f"arg type {name}.{fname}({aname}): {a.type} vs {ra.type}")
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


def test_emulator_sdl_is_a_subset_of_the_real_admin_api_except_the_allowlist():
    extra = sorted(set(differences(emulator_schema(), reference_schema())) - ALLOWLIST)
    assert extra == [], "not in Shopify's 2025-01 schema (and not allowlisted):\n" + "\n".join(extra)


def test_allowlist_has_no_stale_entries():
    # An entry that is no longer a difference should be removed, so the list stays honest.
    assert set(differences(emulator_schema(), reference_schema())) >= ALLOWLIST


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
