"""Bulk queries: read a whole catalog in one background operation instead of hundreds of pages.

`bulkOperationRunQuery` costs one mutation (10 points) whatever the catalog's size, and Shopify
runs the query outside the rate limit; the result is a JSONL file, one object per line, each
nested connection's nodes on lines of their own after their parent with `__parentId`. It pays
for an initial full sync of a large catalog: paging costs ~50 points per product against the
parent's bucket, a bulk read costs ~10 plus one small poll per `poll_interval`. For a handful
of products the pages are faster (no polling round trips).

Shopify runs up to five of an app's bulk queries per shop at a time (API 2026-01 and later):
`BulkOperationInProgress` (retryable) says the shop's slots are taken (by ours, or by runs whose
starter died). FAILED with INTERNAL_SERVER_ERROR or TIMEOUT and
CANCELED / EXPIRED are retryable; ACCESS_DENIED is permanent; a poll past `timeout` raises
`BulkOperationTimeout` (retryable; the operation may still finish and block the next start
until it does). The operation is polled by its id (`bulkOperations(query: "id:<n>")`, Admin API
2026-10; `currentBulkOperation` is deprecated); an id the store no longer lists is
`BulkOperationFailed` with status "MISSING" (retryable).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterable, Mapping
from functools import cache
from importlib import resources
from typing import Any

import httpx
import structlog

from storesync.commerce.client import AdminClient
from storesync.commerce.errors import (
    ApiUnavailableError,
    PermanentCommerceError,
    RetryableCommerceError,
    UserError,
    user_errors_error,
)

log = structlog.get_logger("storesync.commerce.bulk")

FINAL_STATUSES = frozenset({"COMPLETED", "FAILED", "CANCELED", "EXPIRED"})


class BulkOperationInProgress(RetryableCommerceError):
    """The shop runs as many bulk queries as it allows (OPERATION_IN_PROGRESS, LIMIT_REACHED):
    retry once one ends."""


class BulkOperationFailed(RetryableCommerceError):
    """The operation ended FAILED (INTERNAL_SERVER_ERROR, TIMEOUT), CANCELED or EXPIRED."""

    def __init__(self, message: str, *, status: str, error_code: str | None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.status = status
        self.error_code = error_code


class BulkOperationDenied(PermanentCommerceError):
    """FAILED with ACCESS_DENIED: the token lacks a scope the query needs; retrying cannot help."""


class BulkOperationTimeout(RetryableCommerceError):
    """The operation did not end within the caller's timeout."""


@cache
def bulk_query_text(name: str) -> str:
    """A bulk query document from `commerce/bulk_queries/<name>.graphql`."""
    return (
        resources.files("storesync.commerce").joinpath("bulk_queries", f"{name}.graphql").read_text("utf-8")
    )


async def start_bulk_query(client: AdminClient, query: str) -> str:
    """Start `query` as the shop's bulk query: its BulkOperation id."""
    ctx = {"shop": client.shop, "operation": "BulkOperationRunQuery"}
    result = await client.execute("BulkOperationRunQuery", {"query": query}, raise_user_errors=False)
    payload = result["bulkOperationRunQuery"]
    errors = payload["userErrors"]
    if errors:
        # Five bulk queries at a time per shop (2026-01+): a sixth is refused, with a code the
        # docs do not name (https://shopify.dev/docs/api/usage/bulk-operations/queries).
        if any(e.get("code") in ("OPERATION_IN_PROGRESS", "LIMIT_REACHED") for e in errors):
            err = BulkOperationInProgress(
                f"{client.shop}: a bulk query is already running ({errors[0]['message']})",
                retry_after=5.0,
                **ctx,
            )
            err.user_errors = tuple(UserError.from_json(e) for e in errors)  # type: ignore[attr-defined]
            raise err
        raise user_errors_error("BulkOperationRunQuery", errors, shop=client.shop)
    return str(payload["bulkOperation"]["id"])


async def wait_for_bulk_operation(
    client: AdminClient, operation_id: str, *, poll_interval: float = 1.0, timeout: float = 600.0
) -> dict[str, Any]:
    """Poll the operation (`bulkOperations` filtered by its id) until it ends: the COMPLETED
    operation's fields."""
    ctx = {"shop": client.shop, "operation": "BulkOperationStatus"}
    deadline = time.monotonic() + timeout
    numeric = operation_id.rsplit("/", 1)[-1]
    while True:
        nodes = (await client.execute("BulkOperationStatus", {"query": f"id:{numeric}"}))["bulkOperations"][
            "nodes"
        ]
        op = nodes[0] if nodes else None
        if op is None or op["id"] != operation_id:
            raise BulkOperationFailed(
                f"{client.shop}: bulk operation {operation_id} is not listed by the store",
                status="MISSING",
                error_code=None,
                retry_after=poll_interval,
                **ctx,
            )
        status = op["status"]
        if status == "COMPLETED":
            return dict(op)
        if status in FINAL_STATUSES:
            message = f"{client.shop}: bulk operation {operation_id} ended {status} ({op.get('errorCode')})"
            if op.get("errorCode") == "ACCESS_DENIED":
                raise BulkOperationDenied(message, **ctx)
            raise BulkOperationFailed(
                message, status=status, error_code=op.get("errorCode"), retry_after=poll_interval, **ctx
            )
        if time.monotonic() + poll_interval > deadline:
            raise BulkOperationTimeout(
                f"{client.shop}: bulk operation {operation_id} still {status} after {timeout:.0f}s",
                retry_after=poll_interval,
                **ctx,
            )
        await asyncio.sleep(poll_interval)


async def wait_for_running_queries(
    client: AdminClient, *, poll_interval: float = 1.0, timeout: float = 60.0
) -> None:
    """Until none of the app's bulk queries on the shop is CREATED or RUNNING (`bulkOperations`
    filtered by `status:` and `operation_type:`,
    https://shopify.dev/docs/api/admin-graphql/2026-10/queries/bulkOperations): what a caller
    refused with OPERATION_IN_PROGRESS waits for, e.g. an operation whose starter was killed
    before it read the result, which nobody else will wait for. `BulkOperationTimeout` past
    `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        running = [
            node
            for status in ("created", "running")
            for node in (
                await client.execute(
                    "BulkOperationStatus", {"query": f"status:{status} operation_type:query"}
                )
            )["bulkOperations"]["nodes"]
        ]
        if not running:
            return
        if time.monotonic() + poll_interval > deadline:
            raise BulkOperationTimeout(
                f"{client.shop}: bulk query {running[0]['id']} still {running[0]['status']} after {timeout:.0f}s",
                retry_after=poll_interval,
                shop=client.shop,
                operation="BulkOperationStatus",
            )
        await asyncio.sleep(poll_interval)


async def download_lines(
    url: str | None, *, shop: str, timeout: float = 60.0
) -> AsyncIterator[dict[str, Any]]:
    """The objects of a result file, in file order. The URL is signed and off the Admin API's
    host: no access token goes with it."""
    if url is None:  # COMPLETED with no url: the query matched nothing
        return
    try:
        async with httpx.AsyncClient(timeout=timeout) as http, http.stream("GET", url) as resp:
            if resp.status_code != 200:
                raise ApiUnavailableError(
                    f"{shop}: bulk result download answered {resp.status_code}",
                    shop=shop,
                    operation="BulkDownload",
                )
            async for line in resp.aiter_lines():
                if line.strip():
                    yield json.loads(line)
    except httpx.HTTPError as err:
        raise ApiUnavailableError(
            f"{shop}: bulk result download failed: {err!r}", shop=shop, operation="BulkDownload"
        ) from err


async def bulk_query(
    client: AdminClient, query: str, *, poll_interval: float = 1.0, timeout: float = 600.0
) -> AsyncIterator[dict[str, Any]]:
    """Run `query` as a bulk query and yield its JSONL objects as Shopify wrote them (flattened,
    children with `__parentId`); `reassemble` nests them back."""
    operation_id = await start_bulk_query(client, query)
    op = await wait_for_bulk_operation(client, operation_id, poll_interval=poll_interval, timeout=timeout)
    log.info(
        "bulk_query_completed",
        shop=client.shop,
        operation_id=operation_id,
        objects=op["objectCount"],
        roots=op["rootObjectCount"],
        bytes=op["fileSize"],
    )
    async for obj in download_lines(op["url"], shop=client.shop):
        yield obj


def _gid_type(value: str) -> str:
    return value.split("/")[3] if value.startswith("gid://shopify/") else ""


def reassemble(objects: Iterable[Mapping[str, Any]], children: Mapping[str, str]) -> list[dict[str, Any]]:
    """Roots with their children nested back: a child (with `__parentId`) goes to its parent's
    (a root's, or another child's: a second level of nesting)
    `children[<child's gid type>]` as `{"nodes": [...], "pageInfo": {"hasNextPage": False}}`,
    the shape a paged read has once complete. Children of an unlisted type are an error (the
    query and the mapping disagree); a parent that is not in the file too."""
    by_id: dict[str, dict[str, Any]] = {}
    roots: list[dict[str, Any]] = []
    for raw in objects:
        obj = {k: v for k, v in raw.items() if k != "__parentId"}
        for key in children.values():
            obj.setdefault(key, {"nodes": [], "pageInfo": {"hasNextPage": False, "endCursor": None}})
        if "id" in obj:
            by_id[obj["id"]] = obj
        parent_id = raw.get("__parentId")
        if parent_id is None:
            roots.append(obj)
            continue
        child_key = children.get(_gid_type(obj.get("id", "")))
        parent = by_id.get(parent_id)
        if child_key is None or parent is None:
            raise ValueError(f"bulk result line {raw!r}: unknown child type or parent {parent_id}")
        for k in children.values():  # a child's own lists only when lines of its own fill them
            obj.pop(k, None)
        empty = {"nodes": [], "pageInfo": {"hasNextPage": False, "endCursor": None}}
        parent.setdefault(child_key, empty)["nodes"].append(obj)
    return roots
