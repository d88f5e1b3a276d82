"""Sales channels: what storesync makes in a child (a copy, a collection) is published on the
child's channels, since a product or collection made through the Admin API is on none
(https://shopify.dev/docs/api/admin-graphql/2026-10/mutations/publishablePublish). Which
channels: the child's `channels` rule, else those the parent's product or collection is on,
matched by name (the title of the publication's catalog)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

from storesync.commerce.errors import CommerceError, StoreUnauthorized
from storesync.logs import get_logger
from storesync.sync.adapters.postgres import Storage
from storesync.sync.domain.audit import AuditRecord
from storesync.sync.domain.network import MerchantNetwork
from storesync.sync.domain.ports import StoreAPI
from storesync.sync.services.context import Runtime

log = get_logger("storesync.sync.channels")


async def channels_for(
    parent: StoreAPI, child: StoreAPI, parent_resource_id: str, configured: Sequence[str] | None
) -> tuple[list[str], dict[str, str]]:
    """The channel names a copy goes on (the configured ones, else the parent resource's) and,
    of those, the child's publication ids by name."""
    names = list(configured) if configured is not None else await parent.channels_of(parent_resource_id)
    publications = await child.publications() if names else {}
    return names, {n: publications[n] for n in names if n in publications}


def collection_publisher(
    rt: Runtime,
    st: Storage,
    net: MerchantNetwork,
    child_shop: str,
    parent_collection_id: str,
    cause: str,
    *,
    parent: StoreAPI | None = None,
) -> Callable[[str], Awaitable[None]]:
    """What publishes a collection storesync just made in `child_shop`. A refusal is reported
    (`storesync status`, the dashboard), never the collection sync's failure. `parent`: the
    parent as the caller reads it (a backfill's, whose answers every child shares)."""

    async def publish(child_collection_id: str) -> None:
        rules = rt.policy(net.merchant_id).rules(child_shop)
        child = rt.api(child_shop)
        try:
            names, ids = await channels_for(
                parent or rt.api(net.parent.shop), child, parent_collection_id, rules.channels
            )
            missing = sorted(set(names) - set(ids))
            if missing:
                await st.attention.report(
                    child_shop,
                    "channel_missing",
                    ",".join(missing),
                    f"{child_shop} has no sales channel named {', '.join(map(repr, missing))}: what "
                    "storesync makes there is not published on it (set this child's `channels`)",
                )
            if not ids:
                return  # the parent's is on no channel (or none the child has): nothing to do
            await child.publish(child_collection_id, list(ids.values()))
        except CommerceError as err:
            if isinstance(err, StoreUnauthorized):
                raise
            why = f"collection {child_collection_id} not published on {child_shop}'s channels: {err}"
            log.warning(
                "collection not published", shop=child_shop, collection=child_collection_id, error=str(err)
            )
            await st.attention.report(child_shop, "copy_step_failed", parent_collection_id, why)
            await st.audit.record(
                AuditRecord(
                    child_shop,
                    "collection",
                    child_collection_id,
                    "publish_failed",
                    None,
                    None,
                    cause,
                    detail=why,
                )
            )
            return
        await st.audit.record(
            AuditRecord(
                child_shop,
                "collection",
                child_collection_id,
                "publish",
                None,
                {"channels": sorted(ids)},
                cause,
                detail="" if len(ids) == len(names) else f"no channel named {sorted(set(names) - set(ids))}",
            )
        )

    return publish
