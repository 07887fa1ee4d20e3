-- Who the order is for, as the users service knew them when it was placed (name and email at
-- that moment; a later profile change does not rewrite past orders). Empty for older orders and
-- for orders placed while the users service could not be asked.
ALTER TABLE orders ADD COLUMN customer_name TEXT;
ALTER TABLE orders ADD COLUMN customer_email TEXT;
