-- One row per trace: lists and pruning read these, never the spans. Counts and bounds are
-- merged by conditional updates as spans arrive, in any order and from any process.
CREATE TABLE traces (
    trace_id       TEXT PRIMARY KEY,
    root_service   TEXT NOT NULL,
    root_name      TEXT NOT NULL,
    has_root       BIGINT NOT NULL,  -- 1 once the span without a parent has arrived
    start_nanos    BIGINT NOT NULL,
    end_nanos      BIGINT NOT NULL,
    duration_nanos BIGINT NOT NULL,
    span_count     BIGINT NOT NULL,
    error_count    BIGINT NOT NULL,
    received_at    BIGINT NOT NULL   -- ms of the first span's arrival: the age bound counts from it
);

CREATE INDEX traces_by_received ON traces (received_at);
CREATE INDEX traces_by_duration ON traces (duration_nanos);

-- The services that recorded spans in a trace.
CREATE TABLE trace_services (
    trace_id TEXT NOT NULL,
    service  TEXT NOT NULL,
    PRIMARY KEY (trace_id, service)
);

-- Every span, as the JSON the read API serves (contracts::traces::Span).
CREATE TABLE spans (
    trace_id    TEXT NOT NULL,
    span_id     TEXT NOT NULL,
    start_nanos BIGINT NOT NULL,
    body        TEXT NOT NULL,
    PRIMARY KEY (trace_id, span_id)
);
