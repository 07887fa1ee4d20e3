-- The registry's key-value store (traffic policies, fault rules). Instances are not stored:
-- they re-register on their next heartbeat if the registry restarts.
CREATE TABLE kv (
    key          TEXT PRIMARY KEY,
    value        TEXT NOT NULL,
    create_index BIGINT NOT NULL,
    modify_index BIGINT NOT NULL
);
