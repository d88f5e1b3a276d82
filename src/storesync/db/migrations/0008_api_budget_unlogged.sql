-- 0008: the rate-limit buckets are soft state, written twice per Admin API call (a reservation,
-- then its settlement). UNLOGGED: no WAL for them, so those commits wait for no WAL flush. A
-- crash empties both tables; the next call makes its store's row again (standard plan) and the
-- first answer's throttleStatus corrects it, as it does after any drift.
-- The foreign key goes: its check read the bucket row again on every reservation, and nothing
-- deletes a bucket (a reservation of a store without one is swept when it expires).
ALTER TABLE api_budget_reservations DROP CONSTRAINT api_budget_reservations_shop_domain_fkey;
ALTER TABLE api_budget_reservations SET UNLOGGED;
ALTER TABLE api_budgets SET UNLOGGED;
