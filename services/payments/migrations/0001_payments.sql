-- Charges, including declined attempts (so a repeated request gets the same answer). Card
-- numbers are never stored: only the brand and the last four digits.
CREATE TABLE charges (
    id              TEXT PRIMARY KEY,
    order_id        TEXT NOT NULL,
    user_id         TEXT NOT NULL,
    amount_minor    BIGINT NOT NULL CHECK (amount_minor > 0),
    currency        TEXT NOT NULL,
    card_brand      TEXT NOT NULL,
    card_last4      TEXT NOT NULL,
    status          TEXT NOT NULL,
    decline_reason  TEXT,
    idempotency_key TEXT NOT NULL UNIQUE,
    request_hash    TEXT NOT NULL,
    created_at      BIGINT NOT NULL
);

CREATE INDEX charges_by_order ON charges (order_id);

CREATE TABLE refunds (
    id              TEXT PRIMARY KEY,
    charge_id       TEXT NOT NULL REFERENCES charges (id),
    amount_minor    BIGINT NOT NULL CHECK (amount_minor > 0),
    idempotency_key TEXT NOT NULL UNIQUE,
    request_hash    TEXT NOT NULL,
    created_at      BIGINT NOT NULL
);

-- Every movement of money, signed: charges positive, refunds negative. The net per order is
-- always SUM(amount_minor).
CREATE TABLE ledger (
    id           TEXT PRIMARY KEY,
    order_id     TEXT NOT NULL,
    charge_id    TEXT NOT NULL,
    kind         TEXT NOT NULL,
    amount_minor BIGINT NOT NULL,
    currency     TEXT NOT NULL,
    at           BIGINT NOT NULL
);

CREATE INDEX ledger_by_order ON ledger (order_id);
