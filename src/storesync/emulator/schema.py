"""schema.graphql with every part's resolvers attached: the schema the emulator executes."""

from __future__ import annotations

from graphql import GraphQLSchema, build_schema

from storesync.emulator import resolvers, resolvers_catalog, resolvers_orders


def build_emulator_schema() -> GraphQLSchema:
    schema = build_schema(resolvers.load_sdl())
    for part in (resolvers.RESOLVERS, resolvers_catalog.RESOLVERS, resolvers_orders.RESOLVERS):
        for type_name, fields in part.items():
            gql_type = schema.get_type(type_name)
            for field_name, fn in fields.items():
                gql_type.fields[field_name].resolve = fn  # type: ignore[union-attr]
    type_resolvers = {
        "Node": resolvers.resolve_node_type,
        **{
            abstract: lambda value, _info, _type: value["__typename"]
            for abstract in (
                "WebhookSubscriptionEndpoint",
                "CollectionSource",
                "CollectionSourceInclusionCondition",
            )
        },
        **resolvers_catalog.TYPE_RESOLVERS,
        **resolvers_orders.TYPE_RESOLVERS,
    }
    for type_name, fn in type_resolvers.items():
        schema.get_type(type_name).resolve_type = fn  # type: ignore[union-attr]
    return schema
