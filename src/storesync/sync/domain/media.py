"""Product media: the parent's images copied to each child with their alt text and order, first
(parent precedence); media a child added itself kept after them unless its rules say remove.

Shopify's files model (https://shopify.dev/docs/apps/build/product-merchandising/products-and-collections/manage-media):
media are files, processed asynchronously (UPLOADED, PROCESSING, then READY or FAILED); a
productSet `files` list makes the product's media exactly that list, in order, a file given by
`id` kept, one given by `originalSource` uploaded anew
(https://shopify.dev/docs/api/admin-graphql/2026-10/input-objects/FileSetInput). So every
write lists the child's media by id and uploads only what the child lacks: each parent media
is linked to the child media made from it (`LinkKind.MEDIA`, its `synced_view` the source, alt
and number of uploads), and a re-sync never uploads the same parent media twice unless its copy
FAILED. A FAILED copy is uploaded again, at most `MAX_UPLOADS` times in all; then it is left
as it is and reported. Only READY images of the parent are copied (a video or 3D model is not;
an image still processing is copied by a later sync).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from storesync.sync.domain.catalog_rules import ChildMedia
from storesync.sync.domain.model import Link, LinkKind, LinkMap, MatchedBy, Media, Product

MAX_UPLOADS = 3  # uploads of one parent media into one child, the first included


def uploads(link: Link) -> int:
    return int((link.synced_view or {}).get("uploads") or 1)


def gave_up(link: Link, media: Media) -> bool:
    """A copy that FAILED as often as it may: left as it is (and reported), not uploaded again."""
    return media.status == "FAILED" and uploads(link) >= MAX_UPLOADS


def expected_media(parent: Product) -> list[list[str]]:
    """The parent's copyable media, in order, as a child should show them: [parent media id, alt]."""
    return [[m.id, m.alt or ""] for m in parent.media if m.copyable]


def actual_media(child: Product, links: LinkMap) -> list[list[str]]:
    """The child's media copied from the parent's, in order, in parent ids: a FAILED copy that
    will be uploaded again is missing; one given up on counts as there (it is reported)."""
    out = []
    for m in child.media:
        link = links.link_up(LinkKind.MEDIA, m.id)
        if link is None or (m.status == "FAILED" and not gave_up(link, m)):
            continue
        out.append([link.parent_id, m.alt or ""])
    return out


@dataclass(frozen=True)
class MediaPlan:
    """The productSet `files` that make the child's media right (None: nothing to write), the
    parent media uploaded by it (in `files` order among the uploads), the links to drop (child
    media no longer the parent's), and the copies given up on (parent id, child id)."""

    files: list[dict[str, Any]] | None
    uploaded: list[tuple[Media, int]] = field(default_factory=list)  # (parent media, its upload number)
    dropped: list[str] = field(default_factory=list)  # parent media ids whose links go
    given_up: list[tuple[str, str]] = field(default_factory=list)


def plan_media(parent: Product, child: Product | None, links: LinkMap, child_media: ChildMedia) -> MediaPlan:
    """What to send for the child's media so it shows the parent's, then (kept) its own."""
    have = {m.id: m for m in (child.media if child else ())}
    wanted = [m for m in parent.media if m.copyable]
    wanted_ids = {m.id for m in wanted}
    files: list[dict[str, Any]] = []
    uploaded: list[tuple[Media, int]] = []
    given_up: list[tuple[str, str]] = []
    for pm in wanted:
        link = links.link_down(LinkKind.MEDIA, pm.id)
        cm = have.get(link.child_id) if link else None
        if link is not None and cm is not None and (cm.status != "FAILED" or gave_up(link, cm)):
            files.append({"id": cm.id, "alt": pm.alt or ""})
            if cm.status == "FAILED":
                given_up.append((pm.id, cm.id))
        else:
            files.append({"originalSource": pm.source, "alt": pm.alt or "", "contentType": "IMAGE"})
            # the upload number counts the FAILED copies of it; one deleted in the child starts again
            again = link is not None and cm is not None and cm.status == "FAILED"
            uploaded.append((pm, uploads(link) + 1 if again and link is not None else 1))
    own = [m for m in (child.media if child else ()) if links.link_up(LinkKind.MEDIA, m.id) is None]
    if child_media is ChildMedia.KEEP:
        files += [{"id": m.id} for m in own]
    stale = [
        lk.parent_id
        for lk in (links.media_links_of(parent.id) if parent.id else ())
        if lk.parent_id not in wanted_ids or lk.child_id not in have
    ]
    linked_shown = [
        m.id for m in (child.media if child else ()) if links.link_up(LinkKind.MEDIA, m.id) is not None
    ]
    needed = (
        bool(uploaded)
        or (child_media is ChildMedia.REMOVE and bool(own))
        or expected_media(parent) != (actual_media(child, links) if child else [])
        or any(m not in {f.get("id") for f in files} for m in linked_shown)
    )
    return MediaPlan(files if needed else None, uploaded, stale, given_up)


def media_links(
    shop: str,
    parent: Product,
    child_product_id: str,
    plan: MediaPlan,
    written_ids: list[str],
) -> list[Link]:
    """The media links after `plan.files` was written: the store answered the product's media
    ids in `files` order, so the uploads are the ids at their positions."""
    if len(written_ids) != len(plan.files or ()):
        raise ValueError(
            f"{shop}: the product has {len(written_ids)} media after a write of {len(plan.files or ())}"
        )
    out = []
    uploads_left = list(plan.uploaded)
    for f, media_id in zip(plan.files or (), written_ids, strict=True):
        if "originalSource" not in f:
            continue
        pm, number = uploads_left.pop(0)
        out.append(
            Link(
                LinkKind.MEDIA,
                shop,
                pm.id,
                media_id,
                MatchedBy.CREATED,
                parent_product_id=parent.id,
                child_product_id=child_product_id,
                synced_view={
                    "source": pm.source,
                    "alt": pm.alt or "",
                    "uploads": number,
                },
            )
        )
    return out
