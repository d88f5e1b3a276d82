"""Product media as Shopify's files model has it: image files of the store, referenced by products.

- A file is created from an external `originalSource` URL (productSet `files`, fileCreate) and
  processed asynchronously: UPLOADED, then PROCESSING, then READY (or FAILED)
  (https://shopify.dev/docs/apps/build/product-merchandising/products-and-collections/manage-media:
  "Files are processed asynchronously. You poll the fileStatus field until it's READY").
  Here the status follows the time since creation, on the emulator's time scale (Shopify-like
  1 s uploading + 2 s processing, shrunk like the webhook retries), or the wall-clock durations
  a test sets through the control API.
- Each creation is a new file: the same `originalSource` sent twice makes two media, since the
  API dedupes by file id, not by URL ("Upload a file once ... get a unique file ID, then
  reference that ID from multiple products", same page). A client re-sending a product's media
  must reference the existing files by `id`.
- The emulator never downloads anything: a source a test marks unreachable (or a random
  fraction, seeded) ends FAILED with a MediaError (`IMAGE_DOWNLOAD_FAILURE`,
  `IMAGE_PROCESSING_FAILURE`); image media carry no MediaWarnings (their codes are 3D models').
- A READY image is served from the store's CDN under the source's file name, as Shopify
  re-hosts it.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from storesync.emulator.ids import ActionError, gid, now_iso, parse_gid

if TYPE_CHECKING:
    from storesync.emulator.state import Product, StoreState

# Unscaled seconds a new file spends UPLOADED, then PROCESSING.
UPLOADED_S = 1.0
PROCESSING_S = 2.0
CONTENT_TYPES = ("IMAGE",)  # FileContentType / MediaContentType the emulator processes


@dataclass
class MediaFaults:
    """Sources whose media end FAILED: the unreachable ones (download failure) and a seeded
    random fraction of the others (processing failure)."""

    unreachable: set[str] = field(default_factory=set)
    fail_p: float = 0.0
    seed: int | None = None

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    def decide(self, source: str) -> str | None:
        if source in self.unreachable:
            return "IMAGE_DOWNLOAD_FAILURE"
        if self.fail_p and self._rng.random() < self.fail_p:
            return "IMAGE_PROCESSING_FAILURE"
        return None


FAILURE_MESSAGES = {
    "IMAGE_DOWNLOAD_FAILURE": "Image could not be downloaded from the source URL.",
    "IMAGE_PROCESSING_FAILURE": "Image could not be processed.",
}


@dataclass(eq=False)
class MediaImage:
    id: int
    original_source: str
    alt: str | None
    filename: str
    fail_code: str | None
    uploaded_s: float  # wall seconds spent UPLOADED, then PROCESSING
    processing_s: float
    started: float = field(default_factory=time.monotonic)
    created_at: str = field(default_factory=now_iso)
    updated_at: str = field(default_factory=now_iso)
    TYPE_NAME = "MediaImage"

    @property
    def gid(self) -> str:
        return gid("MediaImage", self.id)

    @property
    def status(self) -> str:
        """MediaStatus: UPLOADED, PROCESSING, then READY or FAILED. An unreachable source fails
        when its download would have ended; a processing failure when processing ends."""
        elapsed = time.monotonic() - self.started
        if elapsed < self.uploaded_s:
            return "UPLOADED"
        if self.fail_code == "IMAGE_DOWNLOAD_FAILURE":
            return "FAILED"
        if elapsed < self.uploaded_s + self.processing_s:
            return "PROCESSING"
        return "FAILED" if self.fail_code else "READY"

    def url(self, store: StoreState) -> str:
        return f"https://cdn.shopify.com/s/files/1/{store.id}/files/{self.filename}?v={self.id}"

    def errors(self) -> list[dict]:
        if self.status != "FAILED" or self.fail_code is None:
            return []
        return [
            {
                "code": self.fail_code,
                "message": FAILURE_MESSAGES[self.fail_code],
                "details": f"source: {self.original_source}",
            }
        ]


def source_error(source: object) -> str | None:
    """Why a source cannot be fetched at all (refused on input, before any file exists)."""
    if not isinstance(source, str) or not source.strip():
        return "originalSource can't be blank"
    if not source.startswith(("https://", "http://")):
        return "originalSource must be an http(s) URL"
    return None


def create_file(store: StoreState, source: str, alt: str | None, filename: str | None = None) -> MediaImage:
    """A new image file of the store (not yet on any product)."""
    name = filename or source.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1] or "image"
    timing = store.media_timing
    scale = store.emulator.time_scale
    faults: MediaFaults | None = store.media_faults
    media = MediaImage(
        id=store.next_id(),
        original_source=source,
        alt=alt,
        filename=name,
        fail_code=faults.decide(source) if faults is not None else None,
        uploaded_s=timing[0] if timing else UPLOADED_S * scale,
        processing_s=timing[1] if timing else PROCESSING_S * scale,
    )
    store.files[media.id] = media
    store.objects[media.id] = media
    return media


def product_media(store: StoreState, product: Product) -> list[MediaImage]:
    return [store.files[m] for m in product.media_ids if m in store.files]


def delete_file(store: StoreState, media_id: int) -> list[int]:
    """Remove a file and every product's reference to it; the products that referenced it."""
    store.files.pop(media_id, None)
    store.objects.pop(media_id, None)
    touched = []
    for product in store.products.values():
        if media_id in product.media_ids:
            product.media_ids.remove(media_id)
            touched.append(product.id)
    return touched


def file_set_problems(store: StoreState, files: list[dict]) -> list[tuple[int, str, str]]:
    """productSet `files`: each an existing file by `id`, or a new one from `originalSource`;
    (index, field, why) of each that is not."""
    problems = []
    for i, f in enumerate(files):
        if f.get("id") is not None:
            mid = parse_gid(f["id"], "MediaImage")
            if mid is None or mid not in store.files:
                problems.append((i, "id", "File does not exist"))
        elif source_error(f.get("originalSource")):
            problems.append((i, "originalSource", source_error(f.get("originalSource")) or ""))
        elif f.get("contentType") not in (None, *CONTENT_TYPES):
            problems.append((i, "contentType", "The emulator processes images only"))
    return problems


def apply_file_set(store: StoreState, product: Product, files: list[dict]) -> None:
    """productSet's `files` is a list field: the product's media become exactly these, in this
    order; a file given by `id` is kept (its alt updated when given), one given by
    `originalSource` is a new file, even for a URL the product already has
    (https://shopify.dev/docs/api/admin-graphql/2026-10/input-objects/FileSetInput; list
    fields: https://shopify.dev/docs/api/admin-graphql/2026-10/mutations/productSet)."""
    ids: list[int] = []
    for f in files:
        if f.get("id") is not None:
            m = store.files[parse_gid(f["id"], "MediaImage") or 0]
            if "alt" in f:
                m.alt = f["alt"]
                m.updated_at = now_iso()
        else:
            m = create_file(store, f["originalSource"], f.get("alt"), f.get("filename"))
        if m.id not in ids:
            ids.append(m.id)
    product.media_ids = ids


def merchant_gallery(store: StoreState, product: Product, entries: list[dict]) -> list[int]:
    """A merchant's gallery edit in the admin: `[{"id", "alt"?}]` keeps a file of the product,
    `[{"src", "alt"?}]` uploads a new one; files left out leave the product."""
    current = set(product.media_ids)
    for i, e in enumerate(entries):
        if e.get("id") is not None:
            mid = parse_gid(e["id"], "MediaImage") or (e["id"] if isinstance(e["id"], int) else None)
            if mid not in current:
                raise ActionError(f"media[{i}].id is not a media of product {product.id}")
        elif source_error(e.get("src")):
            raise ActionError(f"media[{i}]: {source_error(e.get('src'))}")
    out = []
    for e in entries:
        if e.get("id") is not None:
            mid = parse_gid(e["id"], "MediaImage") or e["id"]
            if "alt" in e:
                store.files[mid].alt = e["alt"]
                store.files[mid].updated_at = now_iso()
            out.append(mid)
        else:
            out.append(create_file(store, e["src"], e.get("alt")).id)
    return out
