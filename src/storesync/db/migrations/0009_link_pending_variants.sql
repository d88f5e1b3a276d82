-- 0009: a copy's product link is saved from productSet's answer, which selects only the product
-- id (the least the create costs: 11 points instead of 17 for a 2-variant product). Its
-- variants are linked when their ids arrive: from the child's products/create webhook (free),
-- or from any read of that child product (a product job, a sale's lookup, the backfill's last
-- scan, reconciliation). Until then `pending` holds what linking them needs: per variant the
-- parent variant and inventory item, its option values and SKU, and the stock the copy wrote
-- (for the echo records); NULL once they are linked.
ALTER TABLE sync_links ADD COLUMN pending jsonb;
CREATE INDEX sync_links_pending ON sync_links (child_shop) WHERE pending IS NOT NULL;
