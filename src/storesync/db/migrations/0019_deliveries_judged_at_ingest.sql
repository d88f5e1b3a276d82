-- 0019 level deliveries judged at ingest (docs/decisions/0055): an inventory_levels/update that
-- only reports the engine's own write is recorded without a job, its status saying why:
-- echo: the engine's own newest write (its version advanced at ingest);
-- stale: such an echo older than the version already applied to its level;
-- unlinked: a child's level of an item linked to nothing.
-- The new check only widens the old one, so existing rows need no scan (NOT VALID: every new or
-- updated row is still checked; validating would read the whole table under this migration's lock).
ALTER TABLE webhook_deliveries DROP CONSTRAINT webhook_deliveries_status_check;
ALTER TABLE webhook_deliveries ADD CONSTRAINT webhook_deliveries_status_check
    CHECK (status IN ('accepted', 'unparseable', 'ignored', 'echo', 'stale', 'unlinked')) NOT VALID;
