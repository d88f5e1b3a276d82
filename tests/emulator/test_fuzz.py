"""Any type-correct input to any served mutation or query answers data, userErrors or a GraphQL
error, never a crash: random inputs built from the SDL's own input types, over real HTTP."""

from __future__ import annotations

import itertools

from graphql import (
    GraphQLEnumType,
    GraphQLInputObjectType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLScalarType,
    build_schema,
    get_named_type,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from storesync.emulator.resolvers import load_sdl
from tests.emulator.helpers import PARENT, first_product
from tests.support.emulator import running_emulator

SCHEMA = build_schema(load_sdl())
MUTATIONS = sorted(SCHEMA.mutation_type.fields)
QUERIES = sorted(SCHEMA.query_type.fields)


def values_for(type_, known_ids: list[str], depth: int = 0):
    """A strategy of values of a GraphQL input type (non-null honoured, nullable may be None)."""
    if isinstance(type_, GraphQLNonNull):
        return _non_null_values(type_.of_type, known_ids, depth)
    inner = _non_null_values(type_, known_ids, depth)
    return st.one_of(st.none(), inner) if depth > 0 else inner


def _non_null_values(type_, known_ids, depth):
    if isinstance(type_, GraphQLList):
        return st.lists(values_for(type_.of_type, known_ids, depth + 1), max_size=3)
    if isinstance(type_, GraphQLEnumType):
        return st.sampled_from(list(type_.values))
    if isinstance(type_, GraphQLInputObjectType):
        if depth > 3:
            return st.just({})
        fields = {name: values_for(f.type, known_ids, depth + 1) for name, f in type_.fields.items()}
        required = {n: s for n, s in fields.items() if isinstance(type_.fields[n].type, GraphQLNonNull)}
        optional = {n: s for n, s in fields.items() if n not in required}
        return st.fixed_dictionaries(required, optional=optional)
    assert isinstance(type_, GraphQLScalarType)
    name = type_.name
    if name == "Int":
        return st.integers(-5, 300)
    if name == "Boolean":
        return st.booleans()
    if name == "ID":
        return st.one_of(st.sampled_from(known_ids), st.just("gid://shopify/Product/1"), st.just("nope"))
    if name in ("Money", "Decimal"):
        return st.sampled_from(["1", "2.50", "-1", "abc", "0"])
    if name == "DateTime":
        return st.sampled_from(["2024-01-01T00:00:00Z", "bad"])
    return st.one_of(
        st.sampled_from(
            [
                "",
                "available",
                "on_hand",
                "correction",
                "Size",
                "S",
                "sku:PARENT-1-S",
                "http://127.0.0.1:9/hook",
                "product-1",
            ]
        ),
        st.text(max_size=8),
    )


def operation_text(root: str, name: str, key: str = "k") -> tuple[str, dict]:
    field = (SCHEMA.mutation_type if root == "mutation" else SCHEMA.query_type).fields[name]
    var_defs = ", ".join(f"${a}: {arg.type}" for a, arg in field.args.items())
    args = ", ".join(f"{a}: ${a}" for a in field.args)
    named = get_named_type(field.type)
    selection = (
        "{ __typename }"
        if not hasattr(named, "fields")
        else "{ __typename " + ("userErrors { field message } }" if "userErrors" in named.fields else "}")
    )
    if hasattr(named, "types"):  # union
        selection = "{ __typename }"
    directive = f' @idempotent(key: "{key}")' if name.startswith("inventory") and root == "mutation" else ""
    head = f"{root} Fuzz({var_defs})" if var_defs else f"{root} Fuzz"
    return f"{head} {{ {name}{('(' + args + ')') if args else ''}{directive} {selection} }}", dict(field.args)


def test_random_inputs_never_crash_the_emulator():
    with running_emulator([PARENT], seed_products=2) as emu:
        emu.set_plan(PARENT, "plus", bucket_size=1e9, restore_rate=1e9)
        p = first_product(emu)
        known = [
            p["id"],
            p["location"],
            p["variants"]["nodes"][0]["id"],
            p["variants"]["nodes"][0]["inventoryItem"]["id"],
        ]
        ops = [("mutation", m) for m in MUTATIONS] + [("query", q) for q in QUERIES]
        keys = itertools.count()

        @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        @given(st.sampled_from(ops), st.data())
        def check(op, data):
            text, args = operation_text(*op, key=f"fuzz-{next(keys)}")
            variables = {a: data.draw(values_for(arg.type, known), label=a) for a, arg in args.items()}
            resp = emu.control.post(
                emu.graphql_url(PARENT),
                json={"query": text, "variables": variables},
                headers=emu.headers(PARENT),
            )
            assert resp.status_code == 200, resp.text
            body = resp.json()
            assert "data" in body or body.get("errors"), body
            assert "INTERNAL_SERVER_ERROR" not in resp.text, (text, variables, body)

        check()
        health = emu.control.get("/_emulator/health").json()
        assert health["internal_error_count"] == 0, health["internal_errors"]
