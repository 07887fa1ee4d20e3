-- The checkout saga of each order: where it is, what its steps produced, and who is running it.
-- It is written before and after every step, so a restarted service resumes where it stopped.
CREATE TABLE sagas (
    id              TEXT PRIMARY KEY,
    order_id        TEXT NOT NULL UNIQUE REFERENCES orders (id),
    user_id         TEXT NOT NULL,
    -- A payment-method token from the payments service; never a card number.
    payment_method  TEXT NOT NULL,
    from_cart       BIGINT NOT NULL,
    status          TEXT NOT NULL,
    step            TEXT,
    reservation_id  TEXT,
    committed       BIGINT NOT NULL,
    charge_id       TEXT,
    shipment_id     TEXT,
    reason          TEXT,
    by_customer     BIGINT NOT NULL,
    attempts        BIGINT NOT NULL,
    next_attempt_at BIGINT NOT NULL,
    deadline_at     BIGINT NOT NULL,
    last_error      TEXT,
    -- Bumped by every write, so two writers cannot both move the saga from the same state.
    version         BIGINT NOT NULL,
    -- The instance running the saga, until when; another may take over after that.
    lease_owner     TEXT,
    lease_until     BIGINT NOT NULL,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    finished_at     BIGINT
);

CREATE INDEX sagas_due ON sagas (status, next_attempt_at);

-- Every attempt at every step: written as started before the call and finished after it.
CREATE TABLE saga_steps (
    saga_id     TEXT NOT NULL REFERENCES sagas (id),
    position    BIGINT NOT NULL,
    step        TEXT NOT NULL,
    attempt     BIGINT NOT NULL,
    outcome     TEXT NOT NULL,
    detail      TEXT,
    started_at  BIGINT NOT NULL,
    finished_at BIGINT,
    PRIMARY KEY (saga_id, position)
);
