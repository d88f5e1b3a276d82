-- 0004 api budget: one Shopify rate-limit bucket per store, shared by every worker process on
-- every machine. A caller locks its store's row for a few milliseconds (SELECT ... FOR UPDATE in
-- a short transaction on the pooled path), takes the points it needs and learns how long to wait;
-- the answer's throttleStatus corrects the row. Times are the database's clock, so machines with
-- skewed clocks still agree.

CREATE TABLE api_budgets (
    shop_domain  text PRIMARY KEY,
    capacity     double precision NOT NULL CHECK (capacity > 0),
    restore_rate double precision NOT NULL CHECK (restore_rate > 0),
    -- Points at observed_at. Negative while granted reservations wait for their turn.
    available    double precision NOT NULL,
    observed_at  timestamptz NOT NULL
);

-- Points granted and not yet answered. Until send_at (grant time + its wait) the call has not
-- reached the store, so the server's currentlyAvailable cannot include it: a correction from
-- throttleStatus subtracts the reservations still waiting. A process that dies mid-call leaves
-- its row until expires_at; then it is swept.
CREATE TABLE api_budget_reservations (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    shop_domain text NOT NULL REFERENCES api_budgets (shop_domain) ON DELETE CASCADE,
    cost        double precision NOT NULL CHECK (cost >= 0),
    send_at     timestamptz NOT NULL,
    expires_at  timestamptz NOT NULL
);

CREATE INDEX api_budget_reservations_shop ON api_budget_reservations (shop_domain, expires_at);
