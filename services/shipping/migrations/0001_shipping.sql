-- Shipments: one per order and idempotency key. Address and items are the order's copy, as JSON.
CREATE TABLE shipments (
    id              TEXT PRIMARY KEY,
    order_id        TEXT NOT NULL,
    user_id         TEXT NOT NULL,
    status          TEXT NOT NULL,
    carrier         TEXT NOT NULL,
    tracking_number TEXT NOT NULL UNIQUE,
    address         TEXT NOT NULL,
    items           TEXT NOT NULL,
    idempotency_key TEXT NOT NULL UNIQUE,
    request_hash    TEXT NOT NULL,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL
);

CREATE INDEX shipments_by_order ON shipments (order_id);
CREATE INDEX shipments_by_status ON shipments (status, updated_at);

-- Every status a shipment went through.
CREATE TABLE tracking_events (
    shipment_id TEXT NOT NULL REFERENCES shipments (id),
    position    BIGINT NOT NULL,
    status      TEXT NOT NULL,
    at          BIGINT NOT NULL,
    PRIMARY KEY (shipment_id, position)
);
