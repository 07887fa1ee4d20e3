//! Integration tests of the telemetry service on port 0 with its own database: OTLP in, JSON
//! out, and the bounds kept.

mod traces;
