-- Cards registered with the processor, as tokens. The card number never reaches this table:
-- only what may be shown (brand, last four digits, expiry) and the processor's own reference.
CREATE TABLE payment_methods (
    id            TEXT PRIMARY KEY,
    user_id       TEXT NOT NULL,
    brand         TEXT NOT NULL,
    last4         TEXT NOT NULL,
    exp_month     BIGINT NOT NULL,
    exp_year      BIGINT NOT NULL,
    processor_ref TEXT NOT NULL,
    created_at    BIGINT NOT NULL
);

CREATE INDEX payment_methods_by_user ON payment_methods (user_id, created_at);
