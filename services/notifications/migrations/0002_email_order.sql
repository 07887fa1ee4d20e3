-- The order an email is about (its event's `order_id`), so an operator, or a chaos run
-- checking that every confirmed order got exactly one confirmation, can ask for one order's
-- emails. Emails queued before this column existed have none.
ALTER TABLE emails ADD COLUMN order_id TEXT;

CREATE INDEX emails_by_order ON emails (order_id, created_at);
