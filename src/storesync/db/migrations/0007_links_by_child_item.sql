-- 0007: a child's level webhook finds its variant link by the child's inventory item
-- (runtime.child_links). Without this index that lookup read every link of the child store
-- (thousands in a large catalog: ~0.5 ms per level webhook during a bulk copy).
CREATE INDEX sync_links_by_child_item ON sync_links (child_shop, child_inventory_item_id)
    WHERE child_inventory_item_id IS NOT NULL;
