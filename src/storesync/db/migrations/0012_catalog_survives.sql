-- 0012 catalog: media links, what needs the merchant's attention, and the copies storesync
-- archived (docs/sync.md, "What storesync touches").

-- A parent product's media and the child media copied from it are linked like products.
ALTER TABLE sync_links DROP CONSTRAINT sync_links_kind_check;
ALTER TABLE sync_links ADD CONSTRAINT sync_links_kind_check
    CHECK (kind IN ('product', 'variant', 'collection', 'media'));
-- a product's media links (a product job reads them with the product)
CREATE INDEX sync_links_media_by_child_product ON sync_links (child_shop, child_product_id)
    WHERE kind = 'media';

-- What storesync did not do and the merchant should know: a handle a child's own product has,
-- a product of the child's own unlinked because its parent product was deleted, a media that
-- kept failing, a copy's step that failed for good and was kept. One open row per (shop,
-- kind, subject); a later report of it updates that row; resolved rows stay for the record.
CREATE TABLE sync_attention (
    id          bigserial PRIMARY KEY,
    shop        text NOT NULL,
    kind        text NOT NULL,
    subject     text NOT NULL,          -- what it is about, e.g. the parent product's gid
    detail      text NOT NULL,
    first_at    timestamptz NOT NULL DEFAULT now(),
    last_at     timestamptz NOT NULL DEFAULT now(),
    times       integer NOT NULL DEFAULT 1,
    resolved_at timestamptz
);
CREATE UNIQUE INDEX sync_attention_open ON sync_attention (shop, kind, subject) WHERE resolved_at IS NULL;
CREATE INDEX sync_attention_recent ON sync_attention (last_at DESC) WHERE resolved_at IS NULL;

-- Copies storesync archived (their parent product was deleted): their handle is ours to move
-- aside when a new parent product wants it.
CREATE TABLE sync_archived_copies (
    child_shop        text NOT NULL,
    child_product_id  text NOT NULL,
    handle            text NOT NULL,
    parent_product_id text NOT NULL,
    archived_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (child_shop, child_product_id)
);
CREATE INDEX sync_archived_copies_by_handle ON sync_archived_copies (child_shop, handle);
