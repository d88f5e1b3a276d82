"""Shopify's own Admin API 2026-10 introspection schema, for the contract tests.

The file is reference data kept beside the repository, never in it: `<parent of the repository>/
shared/shopify/admin_schema_2026-10.json.gz` (a git worktree counts from its main repository;
`SHOPIFY_SCHEMA_DIR` overrides). Where it is absent (a user's own clone) the contract tests skip
with a message naming the path; under `CI=true` they fail instead, so CI never passes without them.
"""

from __future__ import annotations

import gzip
import json
import os
from collections.abc import Iterator, Mapping
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from graphql import (
    DocumentNode,
    GraphQLInputObjectType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLSchema,
    TypeInfo,
    TypeInfoVisitor,
    Visitor,
    build_client_schema,
    get_named_type,
    visit,
)

from storesync.api_version import ADMIN_API_VERSION

REPO = Path(__file__).resolve().parents[2]
SCHEMA_FILE_NAME = f"admin_schema_{ADMIN_API_VERSION}.json.gz"


def _main_repository(repo: Path) -> Path:
    """The main working tree of `repo` (itself unless `repo` is a linked git worktree)."""
    dot_git = repo / ".git"
    if dot_git.is_file():  # a worktree: "gitdir: <main>/.git/worktrees/<name>"
        gitdir = Path(dot_git.read_text().split(":", 1)[1].strip())
        common = gitdir / "commondir"
        if common.exists():
            return (gitdir / common.read_text().strip()).resolve().parent
    return repo


def schema_dir() -> Path:
    """Where the shared schema is looked for (the first candidate that exists, else the first)."""
    override = os.environ.get("SHOPIFY_SCHEMA_DIR")
    if override:
        return Path(override)
    candidates = [REPO.parent / "shared" / "shopify", _main_repository(REPO).parent / "shared" / "shopify"]
    return next((c for c in candidates if (c / SCHEMA_FILE_NAME).exists()), candidates[0])


def schema_file() -> Path:
    return schema_dir() / SCHEMA_FILE_NAME


def require_schema_file() -> Path:
    """The schema file; skips the test where it is absent (fails under CI=true)."""
    path = schema_file()
    if not path.exists():
        message = f"Shopify's Admin API schema is not at {path} (see /work/shared/shopify/README.md)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message + "; CI=true: the contract tests must run")
        pytest.skip(message)
    return path


@cache
def introspection() -> dict:
    with gzip.open(require_schema_file(), "rt", encoding="utf-8") as f:
        return json.load(f)


@cache
def admin_schema() -> GraphQLSchema:
    """The real 2026-10 Admin API schema (graphql-core)."""
    schema = build_client_schema(introspection()["data"])
    # Shopify's schema breaks one of graphql-core's own rules about deprecated interface fields.
    schema._validation_errors = []
    return schema


def offline_scopes() -> list[dict]:
    """Shopify's published access requirements per type and field (same file, `offline_scopes`)."""
    return introspection()["offline_scopes"]["items"]


# --------------------------------------------------------------------------- deprecations


class _DeprecatedUses(Visitor):
    def __init__(self, type_info: TypeInfo, found: list[str]) -> None:
        super().__init__()
        self.type_info, self.found = type_info, found

    def enter_field(self, node, *_):
        field, parent = self.type_info.get_field_def(), self.type_info.get_parent_type()
        if field is not None and field.deprecation_reason:
            self.found.append(f"field {parent}.{node.name.value} ({field.deprecation_reason})")

    def enter_argument(self, node, *_):
        arg = self.type_info.get_argument()
        if arg is not None and arg.deprecation_reason:
            self.found.append(f"argument {node.name.value} ({arg.deprecation_reason})")

    def enter_object_field(self, node, *_):
        # An input object's field written inline in the document.
        parent = self.type_info.get_parent_input_type()
        named = get_named_type(parent) if parent is not None else None
        if isinstance(named, GraphQLInputObjectType):
            f = named.fields.get(node.name.value)
            if f is not None and f.deprecation_reason:
                self.found.append(f"input field {named.name}.{node.name.value} ({f.deprecation_reason})")

    def enter_enum_value(self, node, *_):
        enum = get_named_type(self.type_info.get_input_type())
        value = getattr(enum, "values", {}).get(node.value)
        if value is not None and value.deprecation_reason:
            self.found.append(f"enum value {enum}.{node.value} ({value.deprecation_reason})")


def deprecated_in_document(schema: GraphQLSchema, document: DocumentNode) -> list[str]:
    """Every deprecated field, argument, inline input field and enum value `document` uses."""
    type_info = TypeInfo(schema)
    found: list[str] = []
    visit(document, TypeInfoVisitor(type_info, _DeprecatedUses(type_info, found)))
    return found


def deprecated_in_value(type_: Any, value: Any, path: str = "") -> Iterator[str]:
    """Every deprecated input field or enum value inside a variable's `value` of type `type_`."""
    if value is None:
        return
    if isinstance(type_, GraphQLNonNull):
        yield from deprecated_in_value(type_.of_type, value, path)
    elif isinstance(type_, GraphQLList):
        for i, item in enumerate(value if isinstance(value, list) else [value]):
            yield from deprecated_in_value(type_.of_type, item, f"{path}[{i}]")
    elif isinstance(type_, GraphQLInputObjectType) and isinstance(value, Mapping):
        for key, item in value.items():
            f = type_.fields.get(key)
            if f is None:
                continue  # coercion reports unknown fields
            if f.deprecation_reason:
                yield f"input field {type_.name}.{key} at {path or '$'} ({f.deprecation_reason})"
            yield from deprecated_in_value(f.type, item, f"{path}.{key}")
    elif hasattr(type_, "values") and isinstance(value, str):
        v = type_.values.get(value)
        if v is not None and v.deprecation_reason:
            yield f"enum value {type_.name}.{value} at {path or '$'} ({v.deprecation_reason})"
