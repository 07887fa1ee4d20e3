-- The read model, built from orders.order.confirmed (and undone by orders.order.cancelled).

-- What each confirmed order bought: one row per order and product.
CREATE TABLE purchases (
    order_id TEXT NOT NULL,
    sku      TEXT NOT NULL,
    user_id  TEXT NOT NULL,
    PRIMARY KEY (order_id, sku)
);

CREATE INDEX purchases_by_user ON purchases (user_id);
CREATE INDEX purchases_by_sku ON purchases (sku);

-- How many orders bought both `sku` and `other` (both directions are stored).
CREATE TABLE bought_together (
    sku    TEXT NOT NULL,
    other  TEXT NOT NULL,
    orders BIGINT NOT NULL,
    PRIMARY KEY (sku, other)
);

-- Product names as the orders knew them, to show with recommendations.
CREATE TABLE products (
    sku  TEXT PRIMARY KEY,
    name TEXT NOT NULL
);
