-- Who the customers are, as far as emails go: built from users.user.registered.
CREATE TABLE customers (
    user_id    TEXT PRIMARY KEY,
    email      TEXT NOT NULL,
    name       TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);

-- Every email, from the event that asked for it (one email per event: event_id is unique) to
-- its delivery. Rendered when sent, so it greets the customer by the name known then.
CREATE TABLE emails (
    id              TEXT PRIMARY KEY,
    event_id        TEXT NOT NULL UNIQUE,
    kind            TEXT NOT NULL,
    user_id         TEXT NOT NULL,
    data            TEXT NOT NULL,
    status          TEXT NOT NULL,
    to_address      TEXT,
    subject         TEXT,
    body            TEXT,
    attempts        BIGINT NOT NULL,
    next_attempt_at BIGINT NOT NULL,
    last_error      TEXT,
    created_at      BIGINT NOT NULL,
    sent_at         BIGINT
);

CREATE INDEX emails_due ON emails (status, next_attempt_at);
CREATE INDEX emails_by_address ON emails (to_address, created_at);
