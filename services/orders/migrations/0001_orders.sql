-- Orders with their own copy of what was bought: an order line is not a catalog product, so
-- later price or name changes in the catalog never change an order.
CREATE TABLE orders (
    id                TEXT PRIMARY KEY,
    user_id           TEXT NOT NULL,
    status            TEXT NOT NULL,
    currency          TEXT NOT NULL,
    total_minor       BIGINT NOT NULL,
    ship_name         TEXT NOT NULL,
    ship_line1        TEXT NOT NULL,
    ship_line2        TEXT,
    ship_city         TEXT NOT NULL,
    ship_postal_code  TEXT NOT NULL,
    ship_country      TEXT NOT NULL,
    reservation_id    TEXT,
    cancel_reason     TEXT,
    idempotency_key   TEXT,
    request_hash      TEXT,
    created_at        BIGINT NOT NULL,
    updated_at        BIGINT NOT NULL,
    UNIQUE (user_id, idempotency_key)
);

CREATE INDEX orders_by_user ON orders (user_id, created_at, id);
CREATE INDEX orders_by_time ON orders (created_at, id);

CREATE TABLE order_lines (
    order_id         TEXT NOT NULL REFERENCES orders (id),
    position         BIGINT NOT NULL,
    sku              TEXT NOT NULL,
    name             TEXT NOT NULL,
    unit_price_minor BIGINT NOT NULL,
    quantity         BIGINT NOT NULL CHECK (quantity > 0),
    line_total_minor BIGINT NOT NULL,
    PRIMARY KEY (order_id, position)
);

-- Every status an order went through, with when and why.
CREATE TABLE order_status_history (
    order_id TEXT NOT NULL REFERENCES orders (id),
    position BIGINT NOT NULL,
    status   TEXT NOT NULL,
    reason   TEXT NOT NULL,
    at       BIGINT NOT NULL,
    PRIMARY KEY (order_id, position)
);
