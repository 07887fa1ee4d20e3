-- The chassis's event tables, in every database of a service that publishes or consumes events.
-- Applied by their own migrator (table `_bazaar_events_migrations`), beside the service's own.

-- Events written in the same transaction as the state change they announce.
CREATE TABLE event_outbox (
    position     BIGINT PRIMARY KEY,
    id           TEXT NOT NULL UNIQUE,
    kind         TEXT NOT NULL,
    version      BIGINT NOT NULL,
    occurred_at  BIGINT NOT NULL,
    source       TEXT NOT NULL,
    traceparent  TEXT,
    request_id   TEXT,
    data         TEXT NOT NULL,
    -- When the relay handed it to the broker (the nats transport); NULL until then.
    published_at BIGINT
);

CREATE INDEX event_outbox_unpublished ON event_outbox (published_at, position);
CREATE INDEX event_outbox_by_time ON event_outbox (occurred_at);

-- The last position handed out. Publishing takes the next one under this row's lock, so events
-- become visible in position order and a feed reader never skips one committed late.
CREATE TABLE event_outbox_head (
    singleton BIGINT PRIMARY KEY,
    position  BIGINT NOT NULL
);

INSERT INTO event_outbox_head (singleton, position) VALUES (1, 0);

-- How far a consumer has read a producer's feed; moved in the handler's transaction.
CREATE TABLE event_cursors (
    consumer   TEXT NOT NULL,
    producer   TEXT NOT NULL,
    position   BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (consumer, producer)
);

-- Events a consumer has handled (the nats transport), written in the handler's transaction, so
-- a redelivery is dropped.
CREATE TABLE event_inbox (
    consumer   TEXT NOT NULL,
    event_id   TEXT NOT NULL,
    handled_at BIGINT NOT NULL,
    PRIMARY KEY (consumer, event_id)
);

-- Events a handler failed on again and again, kept for inspection and replay.
CREATE TABLE event_dead_letters (
    id          TEXT PRIMARY KEY,
    consumer    TEXT NOT NULL,
    event_id    TEXT NOT NULL,
    kind        TEXT NOT NULL,
    source      TEXT NOT NULL,
    envelope    TEXT NOT NULL,
    error       TEXT NOT NULL,
    attempts    BIGINT NOT NULL,
    dead_at     BIGINT NOT NULL,
    replayed_at BIGINT
);

CREATE INDEX event_dead_letters_by_time ON event_dead_letters (dead_at);
