-- Failed logins, for throttling password guessing and credential stuffing: one row per failure,
-- by account (the SHA-256 of the normalized email, so a password typed into the email field is
-- not kept) and by client address. Rows older than the throttling window are deleted as new
-- ones come; a successful login clears its account's rows.
CREATE TABLE login_failures (
    id        TEXT PRIMARY KEY,
    account   TEXT NOT NULL,
    address   TEXT NOT NULL,
    failed_at BIGINT NOT NULL
);

CREATE INDEX login_failures_account ON login_failures (account, failed_at);
CREATE INDEX login_failures_address ON login_failures (address, failed_at);
